/* Attention family (docs/contract.md §6, §8, §9, §7, §10): single head, streamed (flash),
 * split/merge heads, MHA and GQA. */
#include "support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int q_len, kv_len, d;
} shape;

/* q_len == kv_len, q_len == 1, kv_len >> q_len, odd sizes */
static const shape shapes[] = {{1, 1, 4},  {5, 5, 8},   {1, 17, 16}, {3, 40, 8},
                               {7, 23, 16}, {12, 12, 3}, {2, 129, 5}, {16, 33, 32}};

Test(attention, single_key_returns_its_value)
{
    fgi_rng rng = fgi_rng_make(10);
    float *q = fgi_buf_normal(&rng, 8, 1.0), *k = fgi_buf_normal(&rng, 8, 1.0);
    float *v = fgi_buf_normal(&rng, 8, 1.0), *out = fgi_buf_nan(8);
    cr_assert_eq(fg_ref_attention(out, q, k, v, 1, 1, 8), FG_OK);
    fgi_assert_same(out, v, 8 * sizeof(float), "attention over one key");
    fgi_assert_guard(out, 8, "out");
    fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v), fgi_buf_free(out);
}

/* q_len = kv_len = 2, head_dim 2, worked by hand: query 0 sees key 0 only;
 * query 1 mixes both values with softmax weights of its two scores. */
Test(attention, hand_computed_two_tokens)
{
    const float q[4] = {1.0f, 0.5f, -1.0f, 2.0f};
    const float k[4] = {0.5f, 1.0f, 2.0f, -0.5f};
    const float v[4] = {1.0f, 2.0f, 3.0f, -4.0f};
    float out[4];
    cr_assert_eq(fg_ref_attention(out, q, k, v, 2, 2, 2), FG_OK);
    const double s = 1.0 / sqrt(2.0);
    const double s10 = (-1.0 * 0.5 + 2.0 * 1.0) * s, s11 = (-1.0 * 2.0 + 2.0 * -0.5) * s;
    const double p0 = exp(s10) / (exp(s10) + exp(s11)), p1 = 1.0 - p0;
    const float expect[4] = {1.0f, 2.0f, (float)(p0 * 1.0 + p1 * 3.0),
                             (float)(p0 * 2.0 + p1 * -4.0)};
    fgi_assert_close(out, expect, 4, 1e-7, 1e-6, 0, "two-token attention");
}

/* Each output is a convex combination of the visible values only: changing a
 * masked key or value must not change it. */
Test(attention, masked_keys_have_no_influence)
{
    fgi_rng rng = fgi_rng_make(11);
    const int q_len = 4, kv_len = 9, d = 8, shift = kv_len - q_len;
    float *q = fgi_buf_normal(&rng, (size_t)q_len * d, 1.0);
    float *k = fgi_buf_normal(&rng, (size_t)kv_len * d, 1.0);
    float *v = fgi_buf_normal(&rng, (size_t)kv_len * d, 1.0);
    float *out = fgi_buf_nan((size_t)q_len * d), *out2 = fgi_buf_nan((size_t)q_len * d);
    cr_assert_eq(fg_ref_attention(out, q, k, v, q_len, kv_len, d), FG_OK);
    /* the last key is visible only to the last query */
    for (int c = 0; c < d; c++) {
        k[(kv_len - 1) * d + c] = 1e3f * (float)fgi_rng_normal(&rng);
        v[(kv_len - 1) * d + c] = 1e3f * (float)fgi_rng_normal(&rng);
    }
    cr_assert_eq(fg_ref_attention(out2, q, k, v, q_len, kv_len, d), FG_OK);
    fgi_assert_same(out2, out, sizeof(float) * (size_t)(q_len - 1) * d,
                   "rows that cannot see the changed key");
    cr_assert(memcmp(out2 + (q_len - 1) * d, out + (q_len - 1) * d, sizeof(float) * d) != 0,
              "the last row sees every key (shift %d)", shift);
    fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v), fgi_buf_free(out), fgi_buf_free(out2);
}

/* KV-cache consistency: the last m queries of a full causal attention equal
 * attention of those m queries alone over all keys (bottom-right alignment). */
Test(attention, suffix_of_queries_matches_full_attention)
{
    fgi_rng rng = fgi_rng_make(12);
    const int n = 21, d = 16;
    float *q = fgi_buf_normal(&rng, (size_t)n * d, 1.0), *k = fgi_buf_normal(&rng, (size_t)n * d, 1.0);
    float *v = fgi_buf_normal(&rng, (size_t)n * d, 1.0), *full = fgi_buf_nan((size_t)n * d);
    cr_assert_eq(fg_ref_attention(full, q, k, v, n, n, d), FG_OK);
    for (int m = 1; m <= n; m++) {
        float *part = fgi_buf_nan((size_t)m * d);
        cr_assert_eq(fg_ref_attention(part, q + (size_t)(n - m) * d, k, v, m, n, d), FG_OK);
        fgi_assert_close(part, full + (size_t)(n - m) * d, (size_t)m * d, 1e-6, 1e-6, 0,
                        "suffix queries");
        fgi_buf_free(part);
    }
    fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v), fgi_buf_free(full);
}

Test(attention, outputs_lie_within_visible_values)
{
    fgi_rng rng = fgi_rng_make(13);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape sh = shapes[s];
        float *q = fgi_buf_normal(&rng, (size_t)sh.q_len * sh.d, 2.0);
        float *k = fgi_buf_normal(&rng, (size_t)sh.kv_len * sh.d, 2.0);
        float *v = fgi_buf_normal(&rng, (size_t)sh.kv_len * sh.d, 1.0);
        float *out = fgi_buf_nan((size_t)sh.q_len * sh.d);
        cr_assert_eq(fg_ref_attention(out, q, k, v, sh.q_len, sh.kv_len, sh.d), FG_OK);
        for (int i = 0; i < sh.q_len; i++)
            for (int c = 0; c < sh.d; c++) {
                float lo = INFINITY, hi = -INFINITY;
                for (int j = 0; j <= i + sh.kv_len - sh.q_len; j++) {
                    lo = fminf(lo, v[j * sh.d + c]);
                    hi = fmaxf(hi, v[j * sh.d + c]);
                }
                float o = out[i * sh.d + c];
                cr_assert(o >= lo - 1e-6f && o <= hi + 1e-6f, "out[%d][%d] = %g outside [%g, %g]", i,
                          c, o, lo, hi);
            }
        fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v), fgi_buf_free(out);
    }
}

Test(attention_flash, equals_dense_for_every_block_size)
{
    fgi_rng rng = fgi_rng_make(14);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape sh = shapes[s];
        const size_t nq = (size_t)sh.q_len * sh.d, nkv = (size_t)sh.kv_len * sh.d;
        float *q = fgi_buf_normal(&rng, nq, 3.0), *k = fgi_buf_normal(&rng, nkv, 3.0);
        float *v = fgi_buf_normal(&rng, nkv, 1.0), *dense = fgi_buf_nan(nq);
        cr_assert_eq(fg_ref_attention(dense, q, k, v, sh.q_len, sh.kv_len, sh.d), FG_OK);
        for (int block = 1; block <= sh.kv_len + 1; block++) {
            float *flash = fgi_buf_nan(nq);
            cr_assert_eq(fg_ref_attention_flash(flash, q, k, v, sh.q_len, sh.kv_len, sh.d, block),
                         FG_OK);
            fgi_assert_guard(flash, nq, "flash out");
            fgi_assert_close(flash, dense, nq, 1e-6, 1e-6, 1e-6, "flash vs dense");
            fgi_buf_free(flash);
        }
        fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v), fgi_buf_free(dense);
    }
}

/* The reference's online-softmax state (ref_softmax_state.h): the states of
 * two disjoint parts of a row's keys, merged, give the state and the
 * accumulator of one pass over all of them, for every split point (the
 * algebra of the GPU's split-KV merge). */
Test(softmax_state, merged_parts_equal_one_pass)
{
    enum { N = 37, D = 3 };
    fgi_rng rng = fgi_rng_make(15);
    float *sc = fgi_buf_normal(&rng, N, 4.0), *v = fgi_buf_normal(&rng, (size_t)N * D, 1.0);
    double p[N], whole_acc[D] = {0.0};
    for (int j = 0; j < N; j++) p[j] = sc[j];
    fgi_ref_softmax whole = fgi_ref_softmax_init();
    fgi_ref_softmax_update(&whole, p, N);
    for (int j = 0; j < N; j++)
        for (int c = 0; c < D; c++) whole_acc[c] += p[j] * v[j * D + c];
    for (int split = 0; split <= N; split++) {
        fgi_ref_softmax part[2] = {fgi_ref_softmax_init(), fgi_ref_softmax_init()};
        double acc[2][D] = {{0.0}};
        for (int h = 0; h < 2; h++) {
            const int lo = h ? split : 0, hi = h ? N : split;
            if (hi == lo) continue; /* an empty part stays the initial state */
            for (int j = lo; j < hi; j++) p[j] = sc[j];
            fgi_ref_softmax_update(&part[h], p + lo, hi - lo);
            for (int j = lo; j < hi; j++)
                for (int c = 0; c < D; c++) acc[h][c] += p[j] * v[j * D + c];
        }
        double wa, wb;
        fgi_ref_softmax_merge(&part[0], &part[1], &wa, &wb);
        cr_assert_eq(part[0].max, whole.max, "split %d: max", split);
        cr_assert(fabs(part[0].sum - whole.sum) <= 1e-12 * whole.sum,
                  "split %d: sum %.17g vs %.17g", split, part[0].sum, whole.sum);
        for (int c = 0; c < D; c++) {
            const double got = acc[0][c] * wa + acc[1][c] * wb;
            cr_assert(fabs(got - whole_acc[c]) <= 1e-12 * (1.0 + fabs(whole_acc[c])),
                      "split %d, dim %d: %.17g vs %.17g", split, c, got, whole_acc[c]);
        }
    }
    fgi_buf_free(sc), fgi_buf_free(v);
}

Test(heads, split_places_columns_and_merge_inverts)
{
    fgi_rng rng = fgi_rng_make(15);
    for (int trial = 0; trial < 20; trial++) {
        const int seq = fgi_rng_int(&rng, 1, 9), nh = fgi_rng_int(&rng, 1, 6), d = fgi_rng_int(&rng, 1, 7);
        const size_t n = (size_t)seq * nh * d;
        float *x = fgi_buf_normal(&rng, n, 1.0), *s = fgi_buf_nan(n), *m = fgi_buf_nan(n);
        cr_assert_eq(fg_ref_split_heads(s, x, seq, nh, d), FG_OK);
        for (int h = 0; h < nh; h++)
            for (int t = 0; t < seq; t++)
                for (int c = 0; c < d; c++)
                    cr_assert_eq(s[((size_t)h * seq + t) * d + c], x[(size_t)t * nh * d + h * d + c]);
        cr_assert_eq(fg_ref_merge_heads(m, s, nh, seq, d), FG_OK);
        fgi_assert_same(m, x, n * sizeof(float), "merge(split(x))");
        fgi_assert_guard(s, n, "split"), fgi_assert_guard(m, n, "merge");
        fgi_buf_free(x), fgi_buf_free(s), fgi_buf_free(m);
    }
}

Test(mha, each_head_is_single_head_attention)
{
    fgi_rng rng = fgi_rng_make(16);
    const int nh = 3, q_len = 5, kv_len = 11, d = 8;
    const size_t hq = (size_t)q_len * d, hk = (size_t)kv_len * d;
    float *q = fgi_buf_normal(&rng, nh * hq, 1.0), *k = fgi_buf_normal(&rng, nh * hk, 1.0);
    float *v = fgi_buf_normal(&rng, nh * hk, 1.0), *out = fgi_buf_nan(nh * hq);
    float *one = fgi_buf_nan(hq);
    cr_assert_eq(fg_ref_mha(out, q, k, v, nh, q_len, kv_len, d), FG_OK);
    for (int h = 0; h < nh; h++) {
        cr_assert_eq(fg_ref_attention(one, q + h * hq, k + h * hk, v + h * hk, q_len, kv_len, d), FG_OK);
        fgi_assert_same(out + h * hq, one, hq * sizeof(float), "head of MHA");
    }
    fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v), fgi_buf_free(out), fgi_buf_free(one);
}

Test(gqa, equal_heads_is_mha)
{
    fgi_rng rng = fgi_rng_make(17);
    const int nh = 4, q_len = 3, kv_len = 7, d = 16;
    const size_t nq = (size_t)nh * q_len * d, nk = (size_t)nh * kv_len * d;
    float *q = fgi_buf_normal(&rng, nq, 1.0), *k = fgi_buf_normal(&rng, nk, 1.0);
    float *v = fgi_buf_normal(&rng, nk, 1.0), *a = fgi_buf_nan(nq), *b = fgi_buf_nan(nq);
    cr_assert_eq(fg_ref_gqa(a, q, k, v, nh, nh, q_len, kv_len, d), FG_OK);
    cr_assert_eq(fg_ref_mha(b, q, k, v, nh, q_len, kv_len, d), FG_OK);
    fgi_assert_same(a, b, nq * sizeof(float), "GQA(n_kv = n_q) vs MHA");
    fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v), fgi_buf_free(a), fgi_buf_free(b);
}

/* GQA with n_kv heads equals MHA on K/V where each kv head is repeated for
 * its group of query heads; n_kv = 1 is MQA. */
Test(gqa, equals_mha_on_repeated_kv)
{
    fgi_rng rng = fgi_rng_make(18);
    const int n_q = 8, kv_options[] = {1, 2, 4, 8};
    for (int o = 0; o < 4; o++) {
        const int n_kv = kv_options[o], group = n_q / n_kv;
        const int q_len = fgi_rng_int(&rng, 1, 6), kv_len = q_len + fgi_rng_int(&rng, 0, 12),
                  d = 2 * fgi_rng_int(&rng, 1, 8);
        const size_t hk = (size_t)kv_len * d, nq = (size_t)n_q * q_len * d;
        float *q = fgi_buf_normal(&rng, nq, 1.0);
        float *k = fgi_buf_normal(&rng, n_kv * hk, 1.0), *v = fgi_buf_normal(&rng, n_kv * hk, 1.0);
        float *k_rep = fgi_buf_nan(n_q * hk), *v_rep = fgi_buf_nan(n_q * hk);
        for (int h = 0; h < n_q; h++) {
            memcpy(k_rep + h * hk, k + (h / group) * hk, hk * sizeof(float));
            memcpy(v_rep + h * hk, v + (h / group) * hk, hk * sizeof(float));
        }
        float *a = fgi_buf_nan(nq), *b = fgi_buf_nan(nq);
        cr_assert_eq(fg_ref_gqa(a, q, k, v, n_q, n_kv, q_len, kv_len, d), FG_OK);
        cr_assert_eq(fg_ref_mha(b, q, k_rep, v_rep, n_q, q_len, kv_len, d), FG_OK);
        fgi_assert_same(a, b, nq * sizeof(float), "GQA vs MHA on repeated K/V");
        fgi_assert_guard(a, nq, "gqa out");
        fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v), fgi_buf_free(k_rep), fgi_buf_free(v_rep);
        fgi_buf_free(a), fgi_buf_free(b);
    }
}

Test(attention, bad_arguments_write_nothing)
{
    fgi_rng rng = fgi_rng_make(19);
    const size_t n = 256;
    float *q = fgi_buf_normal(&rng, n, 1.0), *k = fgi_buf_normal(&rng, n, 1.0);
    float *v = fgi_buf_normal(&rng, n, 1.0), *out = fgi_buf_normal(&rng, n, 1.0);
    float *before = fgi_buf_copy(out, n);
    const fg_status E = FG_ERR_INVALID_ARG;
    fgi_assert_status(fg_ref_attention(NULL, q, k, v, 2, 2, 4), E, "'out' is NULL");
    fgi_assert_status(fg_ref_attention(out, NULL, k, v, 2, 2, 4), E, "'q' is NULL");
    fgi_assert_status(fg_ref_attention(out, q, NULL, v, 2, 2, 4), E, "'k' is NULL");
    fgi_assert_status(fg_ref_attention(out, q, k, NULL, 2, 2, 4), E, "'v' is NULL");
    fgi_assert_status(fg_ref_attention(out, q, k, v, 0, 2, 4), E, "'q_len'");
    fgi_assert_status(fg_ref_attention(out, q, k, v, 3, 2, 4), E, "'kv_len' must be >= q_len");
    fgi_assert_status(fg_ref_attention(out, q, k, v, 2, 2, 0), E, "'head_dim'");
    fgi_assert_status(fg_ref_attention(out, q, k, v, 1 << 30, 1 << 30, 1 << 30), E, "overflow");
    fgi_assert_status(fg_ref_attention(q, q, k, v, 2, 2, 4), E, "overlap");
    fgi_assert_status(fg_ref_attention_flash(out, q, k, v, 2, 2, 4, 0), E, "'block_size'");
    fgi_assert_status(fg_ref_attention_flash(out, q, k, v, 2, 1, 4, 4), E, "'kv_len'");
    fgi_assert_status(fg_ref_mha(out, q, k, v, 0, 2, 2, 4), E, "'n_q_head'");
    fgi_assert_status(fg_ref_gqa(out, q, k, v, 6, 4, 2, 2, 4), E, "multiple of n_kv_head");
    fgi_assert_status(fg_ref_gqa(out, q, k, v, 4, 0, 2, 2, 4), E, "'n_kv_head'");
    fgi_assert_status(fg_ref_gqa(out, q, k, v, 4, 2, 2, 2, -1), E, "'head_dim'");
    fgi_assert_status(fg_ref_gqa_window(out, q, k, v, 2, 1, 2, 2, 4, -1), E, "'window'");
    fgi_assert_status(fg_ref_gqa_window(out, q, k, v, 2, 3, 2, 2, 4, 1), E, "multiple");
    fgi_assert_status(fg_ref_split_heads(out, q, 4, 0, 4), E, "'n_head'");
    fgi_assert_status(fg_ref_split_heads(out, NULL, 4, 2, 4), E, "'x' is NULL");
    fgi_assert_status(fg_ref_merge_heads(out, out + 1, 2, 4, 4), E, "overlap");
    fgi_assert_status(fg_ref_merge_heads(out, q, 2, 0, 4), E, "'seq'");
    fgi_assert_same(out, before, n * sizeof(float), "out after refused calls");
    fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v), fgi_buf_free(out), fgi_buf_free(before);
}

/* The naive 16-bit GQA (the yardstick of the 16-bit rule): its outputs are
 * values of the type, it stays within the rule's 2e-2 of the exact GQA on
 * the same rounded inputs, is not exact (it does round), and refuses f32. */
Test(attention, naive16_gqa_rounds_every_boundary)
{
    fgi_rng rng = fgi_rng_make(0x16a);
    const fg_dtype types[] = {FG_DTYPE_BF16, FG_DTYPE_F16};
    int rounded = 0;
    for (int t = 0; t < 2; t++)
        for (int iter = 0; iter < 6; iter++) {
            const int n_kv = fgi_rng_int(&rng, 1, 2), n_q = n_kv * fgi_rng_int(&rng, 1, 3);
            const int d = 8 * fgi_rng_int(&rng, 1, 8), q_len = fgi_rng_int(&rng, 1, 9);
            const int kv_len = q_len + fgi_rng_int(&rng, 0, 40);
            const size_t nq = (size_t)n_q * q_len * d, nk = (size_t)n_kv * kv_len * d;
            float *q = fgi_buf_normal(&rng, nq, 1.0), *k = fgi_buf_normal(&rng, nk, 1.0);
            float *v = fgi_buf_normal(&rng, nk, 1.0);
            float *exact = fgi_buf_nan(nq), *naive = fgi_buf_nan(nq);
            for (size_t i = 0; i < nq; i++) q[i] = fg_dtype_round(types[t], q[i]);
            for (size_t i = 0; i < nk; i++) k[i] = fg_dtype_round(types[t], k[i]);
            for (size_t i = 0; i < nk; i++) v[i] = fg_dtype_round(types[t], v[i]);
            cr_assert_eq(fg_ref_gqa(exact, q, k, v, n_q, n_kv, q_len, kv_len, d), FG_OK);
            cr_assert_eq(fg_ref_gqa_naive16(types[t], naive, q, k, v, n_q, n_kv, q_len, kv_len, d),
                         FG_OK, "%s", fg_last_error());
            for (size_t i = 0; i < nq; i++)
                cr_assert_eq(naive[i], fg_dtype_round(types[t], naive[i]), "not rounded at %zu", i);
            const double e = fgi_rel_l2(naive, exact, nq);
            cr_assert(e <= 2e-2, "%s: relative L2 %.3g (seed %llu)", fg_dtype_name(types[t]), e,
                      (unsigned long long)fgi_test_seed());
            rounded += e > 0.0; /* a tiny case can round exactly; not all of them */
            fgi_assert_guard(naive, nq, "naive16 out");
            fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v), fgi_buf_free(exact),
                fgi_buf_free(naive);
        }
    cr_assert(rounded >= 6, "only %d of 12 cases differ from the exact result (seed %llu)",
              rounded, (unsigned long long)fgi_test_seed());
    float x[64];
    fgi_assert_status(fg_ref_gqa_naive16(FG_DTYPE_F32, x, x, x, x, 1, 1, 1, 1, 8),
                      FG_ERR_INVALID_ARG, "bf16 or f16");
    fgi_assert_status(fg_ref_gqa_naive16(FG_DTYPE_BF16, x, x, x, x, 2, 3, 1, 1, 8),
                      FG_ERR_INVALID_ARG, NULL);
}

/* Sliding window (docs/contract.md §10): against a naive softmax over a
 * full (q_len, kv_len) score matrix with masked scores set to -inf, for
 * windows from 1 past kv_len, MHA and GQA; and the window's two limits:
 * W >= kv_len is plain causal attention bit for bit, W = 1 returns each
 * row's own value. */
Test(gqa_window, equals_naive_masked_softmax)
{
    fgi_rng rng = fgi_rng_make(20);
    for (int trial = 0; trial < 24; trial++) {
        const int n_kv = fgi_rng_int(&rng, 1, 2), n_q = n_kv * fgi_rng_int(&rng, 1, 3);
        const int q_len = fgi_rng_int(&rng, 1, 9), kv_len = q_len + fgi_rng_int(&rng, 0, 14);
        const int d = fgi_rng_int(&rng, 1, 12), window = fgi_rng_int(&rng, 1, kv_len + 2);
        const size_t nq = (size_t)n_q * q_len * d, nk = (size_t)n_kv * kv_len * d;
        float *q = fgi_buf_normal(&rng, nq, 1.0), *k = fgi_buf_normal(&rng, nk, 1.0);
        float *v = fgi_buf_normal(&rng, nk, 1.0), *out = fgi_buf_nan(nq), *want = fgi_buf_nan(nq);
        double *score = malloc(sizeof(double) * (size_t)kv_len);
        for (int h = 0; h < n_q; h++) {
            const int g = h / (n_q / n_kv);
            for (int i = 0; i < q_len; i++) {
                const int p = i + kv_len - q_len; /* absolute position */
                const float *qi = q + ((size_t)h * q_len + i) * d;
                double max = -INFINITY, sum = 0.0;
                for (int j = 0; j < kv_len; j++) {
                    double s = 0.0;
                    for (int c = 0; c < d; c++) s += (double)qi[c] * k[((size_t)g * kv_len + j) * d + c];
                    score[j] = j <= p && j > p - window ? s / sqrt((double)d) : -INFINITY;
                    if (score[j] > max) max = score[j];
                }
                for (int j = 0; j < kv_len; j++) sum += score[j] == -INFINITY ? 0.0 : exp(score[j] - max);
                for (int c = 0; c < d; c++) {
                    double acc = 0.0;
                    for (int j = 0; j < kv_len; j++)
                        if (score[j] != -INFINITY)
                            acc += exp(score[j] - max) * v[((size_t)g * kv_len + j) * d + c];
                    want[((size_t)h * q_len + i) * d + c] = (float)(acc / sum);
                }
            }
        }
        cr_assert_eq(fg_ref_gqa_window(out, q, k, v, n_q, n_kv, q_len, kv_len, d, window), FG_OK);
        fgi_assert_guard(out, nq, "windowed gqa out");
        fgi_assert_close(out, want, nq, 1e-6, 1e-6, 0, "window vs naive masked softmax");
        if (window >= kv_len) { /* no key is cut: exactly fg_ref_gqa */
            float *plain = fgi_buf_nan(nq);
            cr_assert_eq(fg_ref_gqa(plain, q, k, v, n_q, n_kv, q_len, kv_len, d), FG_OK);
            fgi_assert_same(out, plain, nq * sizeof(float), "window >= kv_len vs no window");
            fgi_buf_free(plain);
        }
        cr_assert_eq(fg_ref_gqa_window(out, q, k, v, n_q, n_kv, q_len, kv_len, d, 0), FG_OK);
        float *plain = fgi_buf_nan(nq);
        cr_assert_eq(fg_ref_gqa(plain, q, k, v, n_q, n_kv, q_len, kv_len, d), FG_OK);
        fgi_assert_same(out, plain, nq * sizeof(float), "window 0 vs no window");
        cr_assert_eq(fg_ref_gqa_window(out, q, k, v, n_q, n_kv, q_len, kv_len, d, 1), FG_OK);
        for (int h = 0; h < n_q; h++)
            for (int i = 0; i < q_len; i++)
                fgi_assert_same(out + ((size_t)h * q_len + i) * d,
                                v + ((size_t)(h / (n_q / n_kv)) * kv_len + i + kv_len - q_len) * d,
                                sizeof(float) * (size_t)d, "window 1: the row's own value");
        free(score);
        fgi_buf_free(plain), fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v);
        fgi_buf_free(out), fgi_buf_free(want);
    }
}

/* Keys that left the window have no influence: changing the first key
 * changes only the rows that still see it. */
Test(gqa_window, keys_outside_the_window_have_no_influence)
{
    fgi_rng rng = fgi_rng_make(21);
    const int q_len = 6, kv_len = 10, d = 8, window = 5;
    float *q = fgi_buf_normal(&rng, (size_t)q_len * d, 1.0);
    float *k = fgi_buf_normal(&rng, (size_t)kv_len * d, 1.0);
    float *v = fgi_buf_normal(&rng, (size_t)kv_len * d, 1.0);
    float *a = fgi_buf_nan((size_t)q_len * d), *b = fgi_buf_nan((size_t)q_len * d);
    cr_assert_eq(fg_ref_gqa_window(a, q, k, v, 1, 1, q_len, kv_len, d, window), FG_OK);
    for (int c = 0; c < d; c++) k[c] = 1e3f, v[c] = -1e3f; /* key 0 */
    cr_assert_eq(fg_ref_gqa_window(b, q, k, v, 1, 1, q_len, kv_len, d, window), FG_OK);
    /* row i is at position i + 4; it sees key 0 only while i + 4 < window */
    cr_assert(memcmp(a, b, sizeof(float) * d) != 0, "row 0 (position 4) sees key 0");
    fgi_assert_same(a + d, b + d, sizeof(float) * (size_t)(q_len - 1) * d,
                    "rows whose window has moved past key 0");
    fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v), fgi_buf_free(a), fgi_buf_free(b);
}
