/* Sessions: prefill + decode on the exact reference device equal the
 * reference forward, on the fast CPU device they match it at the fp32
 * tolerance (docs/contract.md §32); context limits; device choice; thread counts. */
#include "fixture.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static fg_config cfg_small(void)
{
    fg_config c = fg_config_llama(2, 32, 4, 2, 48, 37, 12);
    return c;
}

static void prefill_and_decode(fg_device device, double atol, double rtol, double l2)
{
    fgi_rng rng = fgi_rng_make(70);
    fg_config cfg = cfg_small();
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 1);
    int ids[9];
    fgi_test_random_ids(ids, 9, cfg.vocab_size, &rng);
    fg_kv_cache *cache;
    cr_assert_eq(fg_kv_cache_create(&cache, &cfg, 9), FG_OK);
    float *expect = fgi_buf_nan((size_t)9 * cfg.vocab_size);
    cr_assert_eq(fg_ref_forward(expect, NULL, &cfg, &m.w, cache, ids, 9), FG_OK);

    fg_session *s;
    cr_assert_eq(fg_session_create(&s, &cfg, &m.w, device, 9), FG_OK, "%s", fg_last_error());
    cr_assert_null(fg_session_logits(s));
    cr_assert_eq(fg_session_device(s), device);
    cr_assert_eq(fg_session_capacity(s), 9);
    float *all = fgi_buf_nan((size_t)6 * cfg.vocab_size);
    cr_assert_eq(fg_session_forward(s, ids, 6, all), FG_OK, "%s", fg_last_error());
    fgi_assert_close(all, expect, (size_t)6 * cfg.vocab_size, atol, rtol, l2, "prefill logits");
    fgi_assert_same(fg_session_logits(s), all + 5 * cfg.vocab_size, sizeof(float) * cfg.vocab_size,
                   "last row kept");
    for (int t = 6; t < 9; t++) {
        cr_assert_eq(fg_session_forward(s, ids + t, 1, NULL), FG_OK);
        fgi_assert_close(fg_session_logits(s), expect + (size_t)t * cfg.vocab_size, cfg.vocab_size,
                        atol, rtol, l2, "decode step logits");
    }
    cr_assert_eq(fg_session_len(s), 9);
    /* the context is full: a clear error, nothing changes */
    fgi_assert_status(fg_session_forward(s, ids, 1, NULL), FG_ERR_INVALID_ARG, "context full");
    cr_assert_eq(fg_session_len(s), 9);
    cr_assert_eq(fg_session_reset(s), FG_OK);
    cr_assert_eq(fg_session_len(s), 0);
    cr_assert_null(fg_session_logits(s));
    cr_assert_eq(fg_session_forward(s, ids, 9, NULL), FG_OK, "full context after a reset");
    fgi_assert_close(fg_session_logits(s), expect + (size_t)8 * cfg.vocab_size, cfg.vocab_size, atol,
                    rtol, l2, "last-row-only prefill");
    fg_session_destroy(s);
    fg_kv_cache_destroy(cache);
    fgi_buf_free(expect), fgi_buf_free(all);
    fgi_test_model_free(&m);
}

Test(session, prefill_and_decode_match_reference) { prefill_and_decode(FG_DEVICE_REF, 1e-5, 1e-5, 1e-6); }

/* the fast CPU path: fp32 tolerance (docs/contract.md §32) */
Test(session, fast_cpu_prefill_and_decode_match_reference)
{
    prefill_and_decode(FG_DEVICE_CPU, 1e-4, 1e-4, 1e-5);
}

Test(session, threads)
{
    fgi_rng rng = fgi_rng_make(72);
    fg_config cfg = cfg_small();
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 0);
    fg_session *s;
    cr_assert_eq(fg_session_create(&s, &cfg, &m.w, FG_DEVICE_CPU, 0), FG_OK, "%s", fg_last_error());
    cr_assert_geq(fg_session_threads(s), 1, "one thread per online core");
    cr_assert_eq(fg_session_set_threads(s, 3), FG_OK, "%s", fg_last_error());
    cr_assert_eq(fg_session_threads(s), 3);
    fgi_assert_status(fg_session_set_threads(s, -1), FG_ERR_INVALID_ARG, "n_threads");
    fgi_assert_status(fg_session_set_threads(NULL, 1), FG_ERR_INVALID_ARG, "'session'");
    cr_assert_eq(fg_session_threads(s), 3);
    fg_session_destroy(s);
    cr_assert_eq(fg_session_create(&s, &cfg, &m.w, FG_DEVICE_REF, 0), FG_OK, "%s", fg_last_error());
    cr_assert_eq(fg_session_set_threads(s, 4), FG_OK, "other devices accept and ignore it");
    cr_assert_eq(fg_session_threads(s), 1);
    fgi_assert_status(fg_session_set_threads(s, -1), FG_ERR_INVALID_ARG, "n_threads");
    fg_session_destroy(s);
    fgi_test_model_free(&m);
}

Test(session, device_choice_and_bad_input)
{
    fg_device d = FG_DEVICE_CPU;
    cr_assert_eq(fg_device_parse("cuda", &d), FG_OK);
    cr_assert_eq(d, FG_DEVICE_CUDA);
    cr_assert_eq(fg_device_parse("auto", &d), FG_OK);
    cr_assert_eq(d, FG_DEVICE_AUTO);
    fgi_assert_status(fg_device_parse("gpu", &d), FG_ERR_INVALID_ARG, "unknown device 'gpu'");
    cr_assert_str_eq(fg_device_name(FG_DEVICE_CPU), "cpu");
    cr_assert_eq(fg_device_parse("ref", &d), FG_OK);
    cr_assert_eq(d, FG_DEVICE_REF);
    cr_assert_str_eq(fg_device_name(FG_DEVICE_REF), "ref");
    cr_assert_eq(fg_device_parse("cpu", &d), FG_OK);
    cr_assert_eq(d, FG_DEVICE_CPU);

    fgi_rng rng = fgi_rng_make(71);
    fg_config cfg = cfg_small();
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 0);
    fg_session *s = NULL;
    fgi_assert_status(fg_session_create(&s, &cfg, &m.w, FG_DEVICE_CPU, 13), FG_ERR_INVALID_ARG,
                     "ctx must be in 0 .. 12");
    fgi_assert_status(fg_session_create(&s, &cfg, NULL, FG_DEVICE_CPU, 0), FG_ERR_INVALID_ARG,
                     "'weights' is NULL");
    fgi_assert_status(fg_session_create(&s, &cfg, &m.w, (fg_device)9, 0), FG_ERR_INVALID_ARG,
                     "unknown device");
    cr_assert_null(s);
    cr_assert_eq(fg_session_create(&s, &cfg, &m.w, FG_DEVICE_AUTO, 0), FG_OK, "%s", fg_last_error());
    cr_assert_eq(fg_session_capacity(s), cfg.n_ctx, "ctx 0 means the model's context");
    cr_assert_eq(fg_session_device(s), fg_cuda_available() ? FG_DEVICE_CUDA : FG_DEVICE_CPU);
    int bad[2] = {1, cfg.vocab_size};
    fgi_assert_status(fg_session_forward(s, bad, 2, NULL), FG_ERR_INVALID_ARG, "outside the vocabulary");
    cr_assert_eq(fg_session_len(s), 0);
    fgi_assert_status(fg_session_forward(s, bad, 0, NULL), FG_ERR_INVALID_ARG, "'T'");
    fg_session_destroy(s);
    /* element types: f32 everywhere, 16-bit only on the cuda device */
    fg_dtype dt;
    cr_assert_eq(fg_session_dtype_parse("auto", &dt), FG_OK);
    cr_assert_eq(dt, FG_DTYPE_AUTO);
    cr_assert_eq(fg_session_dtype_parse("bf16", &dt), FG_OK);
    cr_assert_eq(dt, FG_DTYPE_BF16);
    fgi_assert_status(fg_session_dtype_parse("f64", &dt), FG_ERR_INVALID_ARG, "f64");
    fgi_assert_status(fg_session_create_typed(&s, &cfg, &m.w, FG_DEVICE_CPU, 0, FG_DTYPE_BF16),
                     FG_ERR_UNSUPPORTED, "cuda device only");
    cr_assert_null(s);
    fgi_assert_status(fg_session_create_typed(&s, &cfg, &m.w, FG_DEVICE_REF, 0, FG_DTYPE_F16),
                     FG_ERR_UNSUPPORTED, "cuda device only");
    fgi_assert_status(fg_session_create_typed(&s, &cfg, &m.w, FG_DEVICE_CPU, 0, (fg_dtype)5),
                     FG_ERR_INVALID_ARG, "unknown dtype");
    cr_assert_null(s);
    cr_assert_eq(fg_session_create_typed(&s, &cfg, &m.w, FG_DEVICE_CPU, 0, FG_DTYPE_AUTO), FG_OK,
                 "%s", fg_last_error());
    cr_assert_eq(fg_session_dtype(s), FG_DTYPE_F32, "auto on the CPU: the f32 path");
    fg_session_destroy(s);
    cr_assert_eq(fg_session_create(&s, &cfg, &m.w, FG_DEVICE_AUTO, 0), FG_OK, "%s", fg_last_error());
    cr_assert_eq(fg_session_dtype(s), FG_DTYPE_F32, "fg_session_create is f32 on every device");
    fg_session_destroy(s);
    s = NULL;
    if (!fg_cuda_available()) {
        fg_status st = fg_session_create(&s, &cfg, &m.w, FG_DEVICE_CUDA, 0);
        cr_assert(st == FG_ERR_CUDA || st == FG_ERR_UNSUPPORTED, "cuda without a GPU: %s",
                  fg_status_str(st));
        cr_assert_null(s);
    }
    fgi_test_model_free(&m);
}

/* The logits (total, vocab) of a GPU session of dtype created with ctx
 * (0: it starts small and grows), fed ids as a prompt of `prefill` tokens
 * then one by one. */
/* Every logit row of a prefill of `prefill` ids, then single steps up to
 * `total`, from a fresh (or reset) session. */
static float *session_run(fg_session *s, int vocab, const int *ids, int prefill, int total)
{
    float *out = fgi_buf_nan((size_t)total * vocab);
    cr_assert_eq(fg_session_forward(s, ids, prefill, out), FG_OK, "%s", fg_last_error());
    for (int t = prefill; t < total; t++)
        cr_assert_eq(fg_session_forward(s, ids + t, 1, out + (size_t)t * vocab), FG_OK, "%s",
                     fg_last_error());
    return out;
}

static float *gpu_run(const fg_config *cfg, const fg_weights *w, fg_dtype dtype, int ctx,
                      const int *ids, int prefill, int total)
{
    fg_session *s;
    cr_assert_eq(fg_session_create_typed(&s, cfg, w, FG_DEVICE_CUDA, ctx, dtype), FG_OK, "%s",
                 fg_last_error());
    float *out = session_run(s, cfg->vocab_size, ids, prefill, total);
    fg_session_destroy(s);
    return out;
}

static size_t device_free_bytes(void)
{
    size_t free_bytes = 0, total = 0;
    cr_assert_eq(fg_cuda_memory_info(&free_bytes, &total), FG_OK, "%s", fg_last_error());
    cr_assert(free_bytes <= total);
    return free_bytes;
}

/* One device and type: a session sharing base's weights gives bitwise the
 * logits of a session of its own, while base runs another sequence, and
 * goes on after base is destroyed (the weights live while one reader does);
 * on the card it costs its cache and activations, not a second copy of the
 * weights, and everything is given back once both are gone. */
static void check_sharing(const fg_config *cfg, const fg_weights *w, fg_device device,
                          fg_dtype dtype, const int *ids, const int *other, int total)
{
    const int V = cfg->vocab_size, gpu = device == FG_DEVICE_CUDA;
    char what[96];
    snprintf(what, sizeof what, "session sharing weights on %s in %s", fg_device_name(device),
             fg_dtype_name(dtype));
    fg_session *alone, *base, *shared;
    cr_assert_eq(fg_session_create_typed(&alone, cfg, w, device, 0, dtype), FG_OK, "%s",
                 fg_last_error());
    float *want = session_run(alone, V, ids, 5, total);
    fg_session_destroy(alone);

    const size_t free_start = gpu ? device_free_bytes() : 0;
    cr_assert_eq(fg_session_create_typed(&base, cfg, w, device, 0, dtype), FG_OK, "%s",
                 fg_last_error());
    const size_t free_base = gpu ? device_free_bytes() : 0;
    cr_assert_eq(fg_session_create_sharing(&shared, base, 0), FG_OK, "%s: %s", what,
                 fg_last_error());
    cr_assert_eq(fg_session_device(shared), device, "%s", what);
    cr_assert_eq(fg_session_dtype(shared), dtype, "%s", what);
    cr_assert_eq(fg_session_capacity(shared), cfg->n_ctx, "%s", what);
    if (gpu) {
        size_t weights, cache, act;
        cr_assert_eq(fg_session_device_memory(shared, &weights, &cache, &act), FG_OK);
        const size_t used = free_base - device_free_bytes();
        cr_assert(weights > 0 && used <= cache + act,
                  "%s: it took %zu bytes of the card (weights %zu, cache %zu, activations %zu)",
                  what, used, weights, cache, act);
    }
    /* base runs another sequence between the shared session's calls */
    float *base_out = session_run(base, V, other, 3, 4);
    float *got = session_run(shared, V, ids, 5, total);
    fgi_assert_same(got, want, sizeof(float) * (size_t)total * V, what);
    fg_session_destroy(base);
    fgi_buf_free(got);
    cr_assert_eq(fg_session_reset(shared), FG_OK);
    got = session_run(shared, V, ids, 5, total);
    fgi_assert_same(got, want, sizeof(float) * (size_t)total * V, what);
    fg_session_destroy(shared);
    if (gpu)
        cr_assert_eq(device_free_bytes(), free_start, "%s: the card's memory given back", what);
    fgi_buf_free(got), fgi_buf_free(want), fgi_buf_free(base_out);
}

/* A server's sessions share one copy of the model (fg_session_create_sharing). */
Test(session, sessions_share_one_copy_of_the_weights)
{
    fgi_rng rng = fgi_rng_make(75);
    fg_config cfg = fg_config_llama(2, 64, 4, 2, 160, 500, 24);
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 1);
    enum { TOTAL = 12 };
    int ids[TOTAL], other[4];
    fgi_test_random_ids(ids, TOTAL, cfg.vocab_size, &rng);
    fgi_test_random_ids(other, 4, cfg.vocab_size, &rng);
    check_sharing(&cfg, &m.w, FG_DEVICE_REF, FG_DTYPE_F32, ids, other, TOTAL);
    check_sharing(&cfg, &m.w, FG_DEVICE_CPU, FG_DTYPE_F32, ids, other, TOTAL);
    if (fg_cuda_available()) {
        const fg_dtype dtypes[] = {FG_DTYPE_F32, FG_DTYPE_BF16, FG_DTYPE_F16};
        for (int d = 0; d < 3; d++)
            if (dtypes[d] == FG_DTYPE_F32 || fg_cuda_decoder_dtype_supported(&cfg, dtypes[d]))
                check_sharing(&cfg, &m.w, FG_DEVICE_CUDA, dtypes[d], ids, other, TOTAL);
    }
    fg_session *s = NULL;
    fgi_assert_status(fg_session_create_sharing(&s, NULL, 0), FG_ERR_INVALID_ARG, "'base'");
    cr_assert_null(s);
    fg_session *base;
    cr_assert_eq(fg_session_create(&base, &cfg, &m.w, FG_DEVICE_CPU, 4), FG_OK);
    fgi_assert_status(fg_session_create_sharing(&s, base, 25), FG_ERR_INVALID_ARG,
                      "ctx must be in 0 .. 24");
    cr_assert_null(s);
    fgi_assert_status(fg_session_create_sharing(NULL, base, 0), FG_ERR_INVALID_ARG, "'session'");
    fg_session_destroy(base);
    fgi_test_model_free(&m);
}

/* A session created with ctx 0 takes up to the model's context but holds
 * only what it has been given: a config claiming 16 million positions
 * costs a small cache, grown (keeping every cached token) as tokens come.
 * On the CPU the grown session's logits are bitwise those of a session
 * sized for the whole run; on a GPU they match the CPU's within the fp32
 * tolerance of docs/contract.md §32 and are bitwise those of a GPU session
 * created large enough (the device cache is copied on the card, never
 * recomputed; gpu_cache_growth_is_bitwise covers the 16-bit types). */
Test(session, cache_grows_as_tokens_arrive)
{
    fgi_rng rng = fgi_rng_make(72);
    fg_config cfg = fg_config_llama(2, 32, 4, 2, 48, 37, 1 << 24);
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 1);
    enum { PREFILL = 40, STEPS = 60, TOTAL = PREFILL + STEPS };
    int ids[TOTAL];
    fgi_test_random_ids(ids, TOTAL, cfg.vocab_size, &rng);
    const size_t per_token = 2 * sizeof(float) * 2 * 2 * 8; /* K+V, layers, kv heads, head_dim */

    /* the reference: a CPU session sized for the run at once */
    fg_session *ref;
    cr_assert_eq(fg_session_create(&ref, &cfg, &m.w, FG_DEVICE_CPU, TOTAL), FG_OK, "%s",
                 fg_last_error());
    cr_assert_eq(fg_session_cache_bytes(ref), per_token * TOTAL);
    float *want = fgi_buf_nan((size_t)TOTAL * cfg.vocab_size);
    cr_assert_eq(fg_session_forward(ref, ids, PREFILL, want), FG_OK);
    for (int t = PREFILL; t < TOTAL; t++)
        cr_assert_eq(fg_session_forward(ref, ids + t, 1, want + (size_t)t * cfg.vocab_size), FG_OK);

    const fg_device devices[] = {FG_DEVICE_CPU, FG_DEVICE_CUDA};
    for (int d = 0; d < 2; d++) {
        if (devices[d] == FG_DEVICE_CUDA && !fg_cuda_available()) continue;
        fg_session *s;
        cr_assert_eq(fg_session_create(&s, &cfg, &m.w, devices[d], 0), FG_OK, "%s", fg_last_error());
        cr_assert_eq(fg_session_capacity(s), cfg.n_ctx, "ctx 0 takes the model's context");
        cr_assert_leq(fg_session_cache_bytes(s), per_token * 64, "starts small (%zu bytes)",
                      fg_session_cache_bytes(s));
        float *got = fgi_buf_nan((size_t)TOTAL * cfg.vocab_size);
        cr_assert_eq(fg_session_forward(s, ids, PREFILL, got), FG_OK, "%s", fg_last_error());
        for (int t = PREFILL; t < TOTAL; t++)
            cr_assert_eq(fg_session_forward(s, ids + t, 1, got + (size_t)t * cfg.vocab_size), FG_OK,
                         "%s", fg_last_error());
        const size_t bytes = fg_session_cache_bytes(s);
        cr_assert(bytes >= per_token * TOTAL && bytes <= per_token * 2 * TOTAL,
                  "grew to what was needed (%zu bytes)", bytes);
        if (devices[d] == FG_DEVICE_CPU) {
            fgi_assert_same(got, want, sizeof(float) * TOTAL * cfg.vocab_size, "grown CPU session");
        } else {
            fgi_assert_close(got, want, (size_t)TOTAL * cfg.vocab_size, 1e-4, 1e-4, 1e-5,
                             "grown GPU session");
            float *large = gpu_run(&cfg, &m.w, FG_DTYPE_F32, TOTAL, ids, PREFILL, TOTAL);
            fgi_assert_same(got, large, sizeof(float) * TOTAL * cfg.vocab_size,
                            "grown GPU session against one created large enough");
            fgi_buf_free(large);
        }
        /* reserve: ahead of time, never past the capacity, never shrinking */
        cr_assert_eq(fg_session_reserve(s, 300), FG_OK, "%s", fg_last_error());
        cr_assert_eq(fg_session_cache_bytes(s), per_token * 300);
        cr_assert_eq(fg_session_reserve(s, 10), FG_OK);
        cr_assert_eq(fg_session_cache_bytes(s), per_token * 300);
        fgi_assert_status(fg_session_reserve(s, 0), FG_ERR_INVALID_ARG, "tokens must be in 1 ..");
        cr_assert_eq(fg_session_len(s), TOTAL, "the tokens survive");
        /* a bad id is refused before the cache grows for it */
        cr_assert_eq(fg_session_reset(s), FG_OK);
        int bad[400];
        for (int i = 0; i < 400; i++) bad[i] = i == 399 ? cfg.vocab_size : 1;
        fgi_assert_status(fg_session_forward(s, bad, 400, NULL), FG_ERR_INVALID_ARG, "ids[399]");
        cr_assert_eq(fg_session_cache_bytes(s), per_token * 300, "no growth for a refused request");
        fg_session_destroy(s);
        fgi_buf_free(got);
    }
    fg_session *fixed;
    cr_assert_eq(fg_session_create(&fixed, &cfg, &m.w, FG_DEVICE_CPU, 20), FG_OK);
    fgi_assert_status(fg_session_reserve(fixed, 21), FG_ERR_INVALID_ARG, "capacity (got 21)");
    fg_session_destroy(fixed);
    fg_session_destroy(ref);
    fgi_buf_free(want);
    fgi_test_model_free(&m);
}

/* A GPU session's cache grows by a copy on the card: in every element type
 * its logits are bitwise those of a session created large enough (64 -> 128
 * tokens, a prompt and single steps on both sides; the attention split
 * plans follow the capacity, so both end at the same one, 128, which keeps
 * them equal); and the last logits survive a growth asked for by
 * fg_session_reserve alone (they lived in the runner it replaces). */
Test(session, gpu_cache_growth_is_bitwise)
{
    if (!fg_cuda_available()) cr_skip_test("no GPU (or emulator) in this build");
    fgi_rng rng = fgi_rng_make(74);
    fg_config cfg = fg_config_llama(2, 32, 4, 2, 48, 37, 1 << 12);
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 1);
    enum { PREFILL = 50, TOTAL = 128 };
    int ids[TOTAL];
    fgi_test_random_ids(ids, TOTAL, cfg.vocab_size, &rng);
    const fg_dtype dtypes[] = {FG_DTYPE_F32, FG_DTYPE_BF16, FG_DTYPE_F16};
    for (int d = 0; d < 3; d++) {
        if (dtypes[d] != FG_DTYPE_F32 && !fg_cuda_decoder_dtype_supported(&cfg, dtypes[d]))
            continue;
        char what[80];
        snprintf(what, sizeof what, "grown %s GPU session", fg_dtype_name(dtypes[d]));
        float *grown = gpu_run(&cfg, &m.w, dtypes[d], 0, ids, PREFILL, TOTAL);
        float *large = gpu_run(&cfg, &m.w, dtypes[d], TOTAL, ids, PREFILL, TOTAL);
        fgi_assert_same(grown, large, sizeof(float) * TOTAL * cfg.vocab_size, what);
        fgi_buf_free(grown), fgi_buf_free(large);
    }
    /* the last logits, left on the card by a step, across a reserve that
     * replaces the runner holding them: those of a session of the same
     * size that did not grow */
    float *last[2];
    for (int k = 0; k < 2; k++) {
        fg_session *s;
        cr_assert_eq(fg_session_create(&s, &cfg, &m.w, FG_DEVICE_CUDA, k ? 64 : 0), FG_OK, "%s",
                     fg_last_error());
        cr_assert_eq(fg_session_forward(s, ids, PREFILL, NULL), FG_OK, "%s", fg_last_error());
        cr_assert_eq(fg_session_forward(s, ids + PREFILL, 1, NULL), FG_OK, "%s", fg_last_error());
        if (k == 0) {
            cr_assert_eq(fg_session_reserve(s, 1000), FG_OK, "%s", fg_last_error());
            cr_assert_eq(fg_session_cache_bytes(s), 2 * sizeof(float) * 2 * 2 * 8 * 1000);
        }
        const float *logits = fg_session_logits(s);
        cr_assert_not_null(logits, "%s", fg_last_error());
        last[k] = fgi_buf_nan((size_t)cfg.vocab_size);
        memcpy(last[k], logits, sizeof(float) * cfg.vocab_size);
        fg_session_destroy(s);
    }
    fgi_assert_same(last[0], last[1], sizeof(float) * cfg.vocab_size,
                    "last logits across a growth by fg_session_reserve");
    fgi_buf_free(last[0]), fgi_buf_free(last[1]);
    fgi_test_model_free(&m);
}

/* fg_session_sample draws what fg_sampler_sample draws from the session's
 * logits, id for id over a generated continuation, for greedy and every
 * kind of sampled setting; on the CUDA device the draw runs on the card
 * from logits that never left it, continuing the same sampler stream. */
static void sample_matches_host_sampler(fg_device device)
{
    fgi_rng rng = fgi_rng_make(72);
    fg_config cfg = cfg_small();
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 1);
    const fg_sampler_config settings[4] = {
        {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 1},
        {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = fgi_rng_next(&rng)},
        {.temperature = 0.8f, .top_k = 5, .top_p = 1.0f, .seed = fgi_rng_next(&rng)},
        {.temperature = 1.3f, .top_k = 0, .top_p = 0.7f, .seed = fgi_rng_next(&rng)},
    };
    for (int k = 0; k < 4; k++) {
        fg_session *a, *b;
        fg_sampler *sa, *sb;
        cr_assert_eq(fg_session_create(&a, &cfg, &m.w, device, 12), FG_OK, "%s", fg_last_error());
        cr_assert_eq(fg_session_create(&b, &cfg, &m.w, device, 12), FG_OK, "%s", fg_last_error());
        cr_assert_eq(fg_sampler_create(&sa, cfg.vocab_size, &settings[k]), FG_OK);
        cr_assert_eq(fg_sampler_create(&sb, cfg.vocab_size, &settings[k]), FG_OK);
        int t = -1;
        fgi_assert_status(fg_session_sample(a, sa, &t), FG_ERR_INVALID_ARG, "no logits yet");
        int ids[3];
        fgi_test_random_ids(ids, 3, cfg.vocab_size, &rng);
        cr_assert_eq(fg_session_forward(a, ids, 3, NULL), FG_OK, "%s", fg_last_error());
        cr_assert_eq(fg_session_forward(b, ids, 3, NULL), FG_OK, "%s", fg_last_error());
        for (int step = 0; step < 9; step++) {
            int ta = -1, tb = -2;
            cr_assert_eq(fg_session_sample(a, sa, &ta), FG_OK, "%s", fg_last_error());
            cr_assert_eq(fg_sampler_sample(sb, fg_session_logits(b), &tb), FG_OK);
            cr_assert_eq(ta, tb, "%s, setting %d, step %d: %d vs %d (seed %llu)",
                         fg_device_name(device), k, step, ta, tb,
                         (unsigned long long)fgi_test_seed());
            cr_assert_eq(fg_session_forward(a, &ta, 1, NULL), FG_OK, "%s", fg_last_error());
            cr_assert_eq(fg_session_forward(b, &tb, 1, NULL), FG_OK, "%s", fg_last_error());
        }
        fg_sampler *wrong;
        cr_assert_eq(fg_sampler_create(&wrong, cfg.vocab_size + 1, &settings[k]), FG_OK);
        fgi_assert_status(fg_session_sample(a, wrong, &t), FG_ERR_INVALID_ARG, "vocabulary");
        fgi_assert_status(fg_session_sample(a, sa, NULL), FG_ERR_INVALID_ARG, "'token'");
        fg_sampler_destroy(wrong), fg_sampler_destroy(sa), fg_sampler_destroy(sb);
        fg_session_destroy(a), fg_session_destroy(b);
    }
    fgi_test_model_free(&m);
}

Test(session, sample_matches_host_sampler_ref) { sample_matches_host_sampler(FG_DEVICE_REF); }
Test(session, sample_matches_host_sampler_cpu) { sample_matches_host_sampler(FG_DEVICE_CPU); }
Test(session, sample_matches_host_sampler_gpu)
{
    if (!fg_cuda_available()) cr_skip_test("no usable CUDA device: GPU test skipped");
    sample_matches_host_sampler(FG_DEVICE_CUDA);
}

/* A CUDA session that grows its cache after a GPU draw (ctx 0: the first
 * allocation is 64 of 100 tokens) draws again from the new runner's
 * logits, the id the host sampler takes from them; the host's waits for
 * the device are counted and only grow (0 on the reference device). */
Test(session, gpu_draws_survive_growth_and_count_device_waits)
{
    if (!fg_cuda_available()) cr_skip_test("no usable CUDA device: GPU test skipped");
    fgi_rng rng = fgi_rng_make(73);
    fg_config cfg = fg_config_llama(2, 32, 4, 2, 48, 37, 100);
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 1);
    fg_session *s, *ref;
    fg_sampler *greedy, *host;
    const fg_sampler_config g = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 1};
    cr_assert_eq(fg_session_create(&s, &cfg, &m.w, FG_DEVICE_CUDA, 0), FG_OK, "%s", fg_last_error());
    cr_assert_eq(fg_session_create(&ref, &cfg, &m.w, FG_DEVICE_REF, 0), FG_OK, "%s", fg_last_error());
    cr_assert_eq(fg_sampler_create(&greedy, cfg.vocab_size, &g), FG_OK);
    cr_assert_eq(fg_sampler_create(&host, cfg.vocab_size, &g), FG_OK);
    cr_assert_eq(fg_session_device_wait_ns(NULL), 0);
    int ids[60];
    fgi_test_random_ids(ids, 60, cfg.vocab_size, &rng);
    cr_assert_eq(fg_session_forward(s, ids, 60, NULL), FG_OK, "%s", fg_last_error());
    cr_assert_eq(fg_session_forward(ref, ids, 3, NULL), FG_OK, "%s", fg_last_error());
    long long waited = fg_session_device_wait_ns(s);
    cr_assert(waited > 0, "a forward waits for the device");
    for (int step = 0; step < 8; step++) { /* the cache grows at token 65 */
        int t = -1, want = -2;
        cr_assert_eq(fg_session_sample(s, greedy, &t), FG_OK, "step %d: %s", step, fg_last_error());
        cr_assert_eq(fg_sampler_sample(host, fg_session_logits(s), &want), FG_OK);
        cr_assert_eq(t, want, "step %d: %d vs %d", step, t, want);
        cr_assert_eq(fg_session_forward(s, &t, 1, NULL), FG_OK, "%s", fg_last_error());
        const long long now = fg_session_device_wait_ns(s);
        cr_assert(now > waited, "step %d: the waits only grow (%lld, %lld)", step, now, waited);
        waited = now;
    }
    cr_assert_eq(fg_session_device_wait_ns(ref), 0);
    fg_sampler_destroy(greedy), fg_sampler_destroy(host);
    fg_session_destroy(s), fg_session_destroy(ref);
    fgi_test_model_free(&m);
}

/* A 16-bit session (auto on a card that runs bf16) against the exact
 * reference on the same rounded weights: a prefill and greedy steps drawn
 * on the GPU, the logits of every step within the 16-bit rule's ceiling
 * (relative L2 <= 2e-2, docs/contract.md §32). */
Test(session, auto_dtype_on_gpu_is_16bit_within_bound)
{
    if (!fg_cuda_available()) cr_skip_test("no usable CUDA device: GPU test skipped");
    fgi_rng rng = fgi_rng_make(77);
    fg_config cfg = fg_config_llama(2, 128, 4, 2, 96, 53, 24); /* head_dim 32 */
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 0);
    fg_session *g = NULL, *ref = NULL;
    cr_assert_eq(fg_session_create_typed(&g, &cfg, &m.w, FG_DEVICE_CUDA, 0, FG_DTYPE_AUTO), FG_OK,
                 "%s", fg_last_error());
    const fg_dtype dt = fg_session_dtype(g);
    if (!fg_cuda_decoder_dtype_supported(&cfg, FG_DTYPE_BF16)) {
        fg_session_destroy(g);
        fgi_test_model_free(&m);
        cr_skip_test("the card runs no bf16");
    }
    cr_assert_eq(dt, FG_DTYPE_BF16, "auto on a bf16 card: bf16 (got %s)", fg_dtype_name(dt));
    /* {k, v} x 2 bytes x 2 layers x 2 kv heads x head_dim 32 x 24 tokens */
    cr_assert_eq(fg_session_cache_bytes(g), (size_t)2 * 2 * 2 * 2 * 32 * 24,
                 "two bytes per cached element: %zu", fg_session_cache_bytes(g));
    fg_session_destroy(g);
    fgi_test_model_round(&m, FG_DTYPE_BF16); /* the weights the GPU will hold */
    cr_assert_eq(fg_session_create_typed(&g, &cfg, &m.w, FG_DEVICE_CUDA, 0, FG_DTYPE_BF16), FG_OK,
                 "%s", fg_last_error());
    cr_assert_eq(fg_session_create(&ref, &cfg, &m.w, FG_DEVICE_REF, 0), FG_OK);
    int ids[5];
    fgi_test_random_ids(ids, 5, cfg.vocab_size, &rng);
    cr_assert_eq(fg_session_forward(g, ids, 5, NULL), FG_OK, "%s", fg_last_error());
    cr_assert_eq(fg_session_forward(ref, ids, 5, NULL), FG_OK);
    fg_sampler_config sc = fg_sampler_defaults();
    sc.temperature = 0.0f;
    fg_sampler *greedy;
    cr_assert_eq(fg_sampler_create(&greedy, cfg.vocab_size, &sc), FG_OK);
    for (int step = 0; step < 8; step++) {
        const float *a = fg_session_logits(g), *b = fg_session_logits(ref);
        cr_assert(a != NULL && b != NULL);
        double num = 0, den = 0;
        for (int i = 0; i < cfg.vocab_size; i++) {
            cr_assert(isfinite(a[i]));
            num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
            den += (double)b[i] * b[i];
        }
        cr_assert(sqrt(num / den) <= 2e-2, "step %d: relative L2 %.3g (seed %llu)", step,
                  sqrt(num / den), (unsigned long long)fgi_test_seed());
        int t = -1;
        cr_assert_eq(fg_session_sample(g, greedy, &t), FG_OK, "%s", fg_last_error());
        cr_assert_eq(fg_session_forward(g, &t, 1, NULL), FG_OK, "%s", fg_last_error());
        cr_assert_eq(fg_session_forward(ref, &t, 1, NULL), FG_OK);
    }
    fg_sampler_destroy(greedy);
    fg_session_destroy(g), fg_session_destroy(ref);
    fgi_test_model_free(&m);
}
