/* The GPU sampler against the CPU sampler: the same ids, draw for draw, for
 * the same configuration, seed and logits (host/runtime/sample_fixed.h),
 * over random vocabularies (single ids, odd sizes, Llama 3's 128256 in full
 * mode), logit scales that leave most ids with zero weight or none,
 * -inf ids, tied logits, every temperature / top-k / top-p combination
 * kind; refused logits leave the random stream where it was, as on the CPU;
 * argument checks and the no-device error. */
#include "gpu_support.h"
#include "support.h"

#include <math.h>
#include <stdlib.h>

static void ok(fg_status st, const char *what)
{
    cr_assert_eq(st, FG_OK, "%s: %s (seed %llu)", what, fg_last_error(),
                 (unsigned long long)fgi_test_seed());
}

/* Random logits: normal at `scale`, some -inf, some copies of others. */
static float *make_logits(fgi_rng *rng, int V, double scale)
{
    float *l = fgi_buf_normal(rng, (size_t)V, scale);
    const int specials = V / 7;
    for (int i = 0; i < specials; i++) {
        const int at = fgi_rng_int(rng, 0, V - 1), from = fgi_rng_int(rng, 0, V - 1);
        l[at] = fgi_rng_int(rng, 0, 3) == 0 ? -INFINITY : l[from];
    }
    return l;
}

Test(cuda_sample, same_ids_as_the_cpu_sampler)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(0x5a3);
    const int cases = fgi_test_quick() ? 12 : 60;
    const float temps[4] = {0.0f, 0.3f, 1.0f, 2.5f};
    const float top_ps[4] = {1.0f, 0.9f, 0.5f, 0.01f};
    const double scales[4] = {0.5, 3.0, 30.0, 1e-3};
    for (int c = 0; c < cases; c++) {
        int V = c % 5 == 0 ? fgi_rng_int(&rng, 1, 4) : fgi_rng_int(&rng, 5, 3000);
        if (c == 7) V = fgi_test_quick() ? 9000 : 128256;
        fg_sampler_config cfg = fg_sampler_defaults();
        cfg.temperature = temps[c % 4];
        cfg.top_p = top_ps[(c / 4) % 4];
        const int k_kind = fgi_rng_int(&rng, 0, 3);
        cfg.top_k = k_kind == 0 ? 0 : k_kind == 1 ? 1 : k_kind == 2 ? fgi_rng_int(&rng, 1, V) : V + 3;
        cfg.seed = fgi_rng_next(&rng);
        float *logits = make_logits(&rng, V, scales[(c / 2) % 4]);
        logits[fgi_rng_int(&rng, 0, V - 1)] = 0.5f; /* at least one finite logit */
        if (V >= 2 && (cfg.temperature == 0.0f || c % 3 == 0)) {
            /* the largest logit at two ids, the higher one in a later
             * thread's share or the same: the lower id wins */
            float top = -INFINITY;
            for (int i = 0; i < V; i++) top = fmaxf(top, logits[i]);
            const int a = fgi_rng_int(&rng, 0, V - 2), b = fgi_rng_int(&rng, a + 1, V - 1);
            logits[a] = logits[b] = top + 1.0f;
        }
        fg_sampler *cpu = NULL;
        fg_cuda_sampler *gpu = NULL;
        ok(fg_sampler_create(&cpu, V, &cfg), "fg_sampler_create");
        ok(fg_cuda_sampler_create(&gpu, V, &cfg), "fg_cuda_sampler_create");
        float *d_logits = fgi_dev_upload(logits, (size_t)V);
        for (int draw = 0; draw < 12; draw++) {
            int want = -1, got = -2;
            ok(fg_sampler_sample(cpu, logits, &want), "fg_sampler_sample");
            ok(fg_cuda_sampler_draw(gpu, d_logits, NULL, &got, NULL), "fg_cuda_sampler_draw");
            cr_assert_eq(got, want,
                         "case %d (V %d, T %g, top_k %d, top_p %g), draw %d: GPU id %d, CPU id "
                         "%d (seed %llu)",
                         c, V, (double)cfg.temperature, cfg.top_k, (double)cfg.top_p, draw, got,
                         want, (unsigned long long)fgi_test_seed());
        }
        fgi_dev_assert_guard(d_logits, (size_t)V, "logits");
        fgi_dev_free(d_logits);
        fg_cuda_sampler_destroy(gpu);
        fg_sampler_destroy(cpu);
        fgi_buf_free(logits);
    }
}

/* NaN, +inf and all -inf are refused on both, and neither advances its
 * random stream: the next good draw still agrees. */
Test(cuda_sample, refused_logits_leave_the_stream_alone)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(0x5a4);
    const int V = 300;
    fg_sampler_config cfg = fg_sampler_defaults();
    cfg.seed = fgi_rng_next(&rng);
    float *good = make_logits(&rng, V, 1.0);
    good[3] = 1.0f;
    float *bad[3] = {fgi_buf_copy(good, V), fgi_buf_copy(good, V), fgi_buf_copy(good, V)};
    bad[0][17] = NAN, bad[1][V - 1] = INFINITY;
    for (int i = 0; i < V; i++) bad[2][i] = -INFINITY;
    fg_sampler *cpu = NULL;
    fg_cuda_sampler *gpu = NULL;
    ok(fg_sampler_create(&cpu, V, &cfg), "fg_sampler_create");
    ok(fg_cuda_sampler_create(&gpu, V, &cfg), "fg_cuda_sampler_create");
    float *d_good = fgi_dev_upload(good, V);
    for (int b = 0; b < 3; b++) {
        float *d_bad = fgi_dev_upload(bad[b], V);
        int t = 7;
        fgi_assert_status(fg_cuda_sampler_draw(gpu, d_bad, NULL, &t, NULL), FG_ERR_INVALID_ARG,
                          "NaN or +inf");
        cr_assert_eq(t, 7, "no partial write");
        cr_assert_neq(fg_sampler_sample(cpu, bad[b], &t), FG_OK);
        int want = -1, got = -2;
        ok(fg_sampler_sample(cpu, good, &want), "cpu");
        ok(fg_cuda_sampler_draw(gpu, d_good, NULL, &got, NULL), "gpu");
        cr_assert_eq(got, want, "after refused logits %d", b);
        fgi_dev_free(d_bad);
        fgi_buf_free(bad[b]);
    }
    fgi_dev_free(d_good);
    fg_cuda_sampler_destroy(gpu);
    fg_sampler_destroy(cpu);
    fgi_buf_free(good);
}

Test(cuda_sample, argument_checks)
{
    fg_cuda_sampler *s = (fg_cuda_sampler *)(uintptr_t)1;
    fg_sampler_config cfg = fg_sampler_defaults();
    fgi_expect_refused(fg_cuda_sampler_create(NULL, 10, &cfg), "'sampler'");
    fgi_expect_refused(fg_cuda_sampler_create(&s, 0, &cfg), "'vocab_size'");
    fgi_expect_refused(fg_cuda_sampler_create(&s, 10, NULL), "'cfg'");
    cfg.top_p = 0.0f;
    fgi_expect_refused(fg_cuda_sampler_create(&s, 10, &cfg), "top_p");
    cfg = fg_sampler_defaults(), cfg.temperature = NAN;
    fgi_expect_refused(fg_cuda_sampler_create(&s, 10, &cfg), "temperature");
    int t = 0;
    float x = 0.0f;
    fgi_expect_refused(fg_cuda_sampler_sample(NULL, &x, &t, NULL), "'sampler'");
    fgi_expect_refused(fg_cuda_sampler_draw(NULL, &x, NULL, &t, NULL), "'sampler'");
    fgi_expect_refused(fg_cuda_sampler_draw(NULL, &x, NULL, NULL, NULL), "'token'");
    fg_cuda_sampler_destroy(NULL);
    const float *dev = NULL;
    const int id = 1;
    fgi_expect_refused(fg_cuda_forward_last_on_device(NULL, NULL, NULL, &id, 1), "'logits_dev'");
    fgi_expect_refused(fg_cuda_forward_last_on_device(&dev, NULL, NULL, &id, 1), "'runner'");
    cr_assert_null(dev);
}

Test(cuda_sample, no_device)
{
    if (fg_cuda_available()) cr_skip_test("a device is present: the no-device path is not reachable");
    fg_cuda_sampler *s = NULL;
    fg_sampler_config cfg = fg_sampler_defaults();
    fgi_expect_no_device(fg_cuda_sampler_create(&s, 10, &cfg));
    cr_assert_null(s);
}
