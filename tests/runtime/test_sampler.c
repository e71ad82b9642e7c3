/* Token sampling: greedy, temperature, top-k, top-p, reproducibility. */
#include "internal.h"
#include "support.h"

#include <math.h>
#include <stdlib.h>

static fg_sampler *make(int vocab, float temperature, int top_k, float top_p, uint64_t seed)
{
    fg_sampler_config c = {.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = seed};
    fg_sampler *s = NULL;
    cr_assert_eq(fg_sampler_create(&s, vocab, &c), FG_OK, "%s", fg_last_error());
    return s;
}

static int draw(fg_sampler *s, const float *logits)
{
    int t = -1;
    cr_assert_eq(fg_sampler_sample(s, logits, &t), FG_OK, "%s", fg_last_error());
    return t;
}

Test(sampler, greedy_is_argmax_lowest_id_on_ties)
{
    fgi_rng rng = fgi_rng_make(60);
    float *logits = fgi_buf_normal(&rng, 100, 3.0);
    int best = 0;
    for (int i = 1; i < 100; i++) if (logits[i] > logits[best]) best = i;
    fg_sampler *s = make(100, 0.0f, 0, 1.0f, fgi_rng_next(&rng));
    for (int i = 0; i < 5; i++) cr_assert_eq(draw(s, logits), best);
    const float tie[4] = {1.0f, 3.0f, -INFINITY, 3.0f};
    fg_sampler *t = make(4, 0.0f, 0, 1.0f, 1);
    cr_assert_eq(draw(t, tie), 1);
    fg_sampler_destroy(s), fg_sampler_destroy(t), fgi_buf_free(logits);
}

Test(sampler, same_seed_same_draws_other_seed_other_draws)
{
    fgi_rng rng = fgi_rng_make(61);
    float *logits = fgi_buf_normal(&rng, 50, 0.5);
    const uint64_t seed = fgi_rng_next(&rng);
    fg_sampler *a = make(50, 1.0f, 0, 1.0f, seed), *b = make(50, 1.0f, 0, 1.0f, seed);
    fg_sampler *c = make(50, 1.0f, 0, 1.0f, seed + 1);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        int x = draw(a, logits), y = draw(b, logits), z = draw(c, logits);
        cr_assert_eq(x, y, "draw %d differs under the same seed", i);
        differ += (x != z);
    }
    cr_assert(differ > 100, "another seed gives other draws (%d of 200 differ)", differ);
    fg_sampler_destroy(a), fg_sampler_destroy(b), fg_sampler_destroy(c), fgi_buf_free(logits);
}

/* Frequencies follow softmax(logits / T). */
Test(sampler, temperature_frequencies)
{
    fgi_rng rng = fgi_rng_make(62);
    const int V = 6, n = 40000;
    float *logits = fgi_buf_normal(&rng, V, 1.0);
    const float temps[2] = {0.7f, 2.0f};
    for (int k = 0; k < 2; k++) {
        fg_sampler *s = make(V, temps[k], 0, 1.0f, fgi_rng_next(&rng));
        int counts[6] = {0};
        for (int i = 0; i < n; i++) counts[draw(s, logits)]++;
        double z = 0;
        for (int i = 0; i < V; i++) z += exp(logits[i] / temps[k]);
        for (int i = 0; i < V; i++) {
            double p = exp(logits[i] / temps[k]) / z, f = (double)counts[i] / n;
            double sd = sqrt(p * (1 - p) / n);
            cr_assert(fabs(f - p) < 5 * sd + 1e-4, "T=%g id %d: frequency %g, probability %g (seed %llu)",
                      (double)temps[k], i, f, p, (unsigned long long)fgi_test_seed());
        }
        fg_sampler_destroy(s);
    }
    fgi_buf_free(logits);
}

static int rank_of(const float *logits, int V, int id)
{
    int r = 0;
    for (int i = 0; i < V; i++) r += logits[i] > logits[id] || (logits[i] == logits[id] && i < id);
    return r;
}

Test(sampler, top_k_keeps_the_k_most_likely)
{
    fgi_rng rng = fgi_rng_make(63);
    const int V = 40;
    float *logits = fgi_buf_normal(&rng, V, 1.0);
    for (int k = 1; k <= 5; k++) {
        fg_sampler *s = make(V, 1.5f, k, 1.0f, fgi_rng_next(&rng));
        int seen[40] = {0};
        for (int i = 0; i < 3000; i++) {
            int t = draw(s, logits);
            cr_assert(rank_of(logits, V, t) < k, "top_k %d drew id %d of rank %d", k, t,
                      rank_of(logits, V, t));
            seen[t] = 1;
        }
        int distinct = 0;
        for (int i = 0; i < V; i++) distinct += seen[i];
        cr_assert_eq(distinct, k, "all %d kept ids are drawn", k);
        fg_sampler_destroy(s);
    }
    fgi_buf_free(logits);
}

/* Nucleus: the smallest prefix (by probability) reaching top_p. */
Test(sampler, top_p_keeps_the_nucleus)
{
    const float logits[5] = {2.0f, 1.0f, 0.0f, -1.0f, 3.0f};
    double z = 0, p[5];
    for (int i = 0; i < 5; i++) z += exp(logits[i]);
    for (int i = 0; i < 5; i++) p[i] = exp(logits[i]) / z;
    /* order by probability: ids 4, 0, 1, 2, 3 */
    const int order[5] = {4, 0, 1, 2, 3};
    const float top_ps[4] = {0.5f, 0.9f, 0.97f, 1.0f};
    for (int k = 0; k < 4; k++) {
        int keep = 0;
        double cum = 0;
        while (keep < 5 && (cum < top_ps[k] || keep == 0)) cum += p[order[keep++]];
        fg_sampler *s = make(5, 1.0f, 0, top_ps[k], 1234 + k);
        int seen[5] = {0};
        for (int i = 0; i < 4000; i++) seen[draw(s, logits)] = 1;
        for (int r = 0; r < 5; r++)
            cr_assert_eq(seen[order[r]], r < keep, "top_p %g: id %d (rank %d) drawn=%d, nucleus %d",
                         (double)top_ps[k], order[r], r, seen[order[r]], keep);
        fg_sampler_destroy(s);
    }
}

Test(sampler, bad_input)
{
    fg_sampler *s = NULL;
    fg_sampler_config c = fg_sampler_defaults();
    fgi_assert_status(fg_sampler_create(&s, 0, &c), FG_ERR_INVALID_ARG, "'vocab_size'");
    c.temperature = -1.0f;
    fgi_assert_status(fg_sampler_create(&s, 4, &c), FG_ERR_INVALID_ARG, "temperature");
    c = fg_sampler_defaults(), c.top_p = 0.0f;
    fgi_assert_status(fg_sampler_create(&s, 4, &c), FG_ERR_INVALID_ARG, "top_p");
    c.top_p = 1.5f;
    fgi_assert_status(fg_sampler_create(&s, 4, &c), FG_ERR_INVALID_ARG, "top_p");
    fgi_assert_status(fg_sampler_create(&s, 4, NULL), FG_ERR_INVALID_ARG, "'cfg' is NULL");
    cr_assert_null(s);
    s = make(3, 1.0f, 0, 1.0f, 7);
    int t = 99;
    const float nan_row[3] = {0.0f, NAN, 1.0f}, inf_row[3] = {-INFINITY, -INFINITY, -INFINITY};
    const float ok_row[3] = {-INFINITY, 0.5f, -INFINITY};
    fgi_assert_status(fg_sampler_sample(s, nan_row, &t), FG_ERR_INVALID_ARG, "logits[1]");
    fgi_assert_status(fg_sampler_sample(s, inf_row, &t), FG_ERR_INVALID_ARG, "-inf");
    fgi_assert_status(fg_sampler_sample(s, NULL, &t), FG_ERR_INVALID_ARG, "'logits' is NULL");
    cr_assert_eq(t, 99, "token untouched on failure");
    for (int i = 0; i < 50; i++) cr_assert_eq(draw(s, ok_row), 1, "-inf ids are never drawn");
    fg_sampler_destroy(s);
    fg_sampler_destroy(NULL);
}

/* The integer weights (sample_fixed.h) against exp: 2^40 for the top, the
 * relative error below 1.1e-5 wherever the weight is large enough to carry
 * it (>= 2^20), monotone in the logit, 0 beyond 41 doublings and for -inf. */
Test(sampler, integer_weights_follow_exp)
{
    fgi_sample_tables t;
    fgi_sample_tables_init(&t);
    fgi_rng rng = fgi_rng_make(64);
    const float temps[3] = {0.3f, 1.0f, 1.7f};
    for (int k = 0; k < 3; k++) {
        const double scale = fgi_sample_scale(temps[k]);
        const float top = (float)(10.0 * fgi_rng_normal(&rng));
        cr_assert_eq(fgi_sample_weight(&t, top, top, scale), 1ull << 40);
        cr_assert_eq(fgi_sample_weight(&t, -INFINITY, top, scale), 0);
        float prev_l = top;
        uint64_t prev_w = 1ull << 40;
        for (int i = 0; i < 20000; i++) {
            const float l = prev_l - (float)(0.002 * fgi_rng_uniform(&rng));
            const uint64_t w = fgi_sample_weight(&t, l, top, scale);
            cr_assert(w <= prev_w, "weights fall with the logit");
            const double exact = ldexp(exp(((double)l - top) / temps[k]), 40);
            if (exact >= 0x1p20)
                cr_assert(fabs((double)w - exact) <= 1.1e-5 * exact,
                          "T %g, l - top %g: weight %llu, exp %.17g", (double)temps[k],
                          (double)l - top, (unsigned long long)w, exact);
            prev_l = l, prev_w = w;
        }
        const float far = top - 42.0f * 0.6931472f * temps[k];
        cr_assert_eq(fgi_sample_weight(&t, far, top, scale), 0);
    }
}

Test(sampler, vocabulary_limit)
{
    fg_sampler *s = NULL;
    fg_sampler_config c = fg_sampler_defaults();
    fgi_assert_status(fg_sampler_create(&s, (1 << 23) + 1, &c), FG_ERR_INVALID_ARG, "limit");
    cr_assert_eq(fg_sampler_create(&s, 1 << 23, &c), FG_OK, "%s", fg_last_error());
    fg_sampler_destroy(s);
}
