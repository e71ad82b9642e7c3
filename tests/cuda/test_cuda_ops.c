/* GPU vs CPU reference for every non-attention operation of the CUDA path:
 * softmax and causal mask, RoPE, split/merge heads, LayerNorm / RMSNorm /
 * fused add + LayerNorm, GELU / bias + GELU / SiLU-multiply, linear, GELU MLP
 * and SwiGLU MLP; the decoder's fused q|k|v bias + RoPE + cache append
 * kernel against the reference ops it replaces, cache contents included;
 * plus argument checking and the no-device error.
 *
 * GPU tests call fgi_require_gpu() first and show as skipped without a GPU.
 * Each draws at least 50 random shapes (odd sizes, single rows, long rows),
 * fresh inputs per run (seed in every failure message), poisons outputs with
 * NaN, checks the guard region after every output, and compares with the
 * fg_ref_* result at the fp32 tolerance (docs/contract.md §32). Inputs are scaled like real
 * activations (weights ~ 1/sqrt(fan_in)) so outputs are O(1).
 *
 * FG_TEST_QUICK=1 (scripts/gpu-check's compute-sanitizer runs, the emulated
 * CI stage) runs 10 trials per test instead, which still visits every
 * `trial % k` special case below (k <= 10), with the largest sizes capped.
 *
 * Bad-argument tests need no device and run in every build: a CUDA build
 * (with or without a GPU) validates first and returns FG_ERR_INVALID_ARG;
 * a build without CUDA returns FG_ERR_UNSUPPORTED from every entry point. */
#include "gpu_support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATOL 1e-4
#define RTOL 1e-4
#define L2 1e-5

/* Trials of a test: `full` normally, 10 in quick mode. */
static int trials(int full) { return fgi_test_quick() ? 10 : full; }

/* A size limit: `full` normally, `quick` in quick mode. */
static int size_max(int full, int quick) { return fgi_test_quick() ? quick : full; }

static void ok(fg_status st, const char *what)
{
    cr_assert(st == FG_OK, "%s: %s: %s (seed %llu)", what, fg_status_str(st),
              fg_last_error(), (unsigned long long)fgi_test_seed());
}

/* Waits for the GPU, then checks dev's guard and compares n floats to ref. */
static void expect_device_close(const float *dev, const float *ref, size_t n,
                                const char *what)
{
    ok(fg_cuda_synchronize(0), what);
    float *got = fgi_dev_download(dev, n);
    fgi_dev_assert_guard(dev, n, what);
    fgi_assert_close(got, ref, n, ATOL, RTOL, L2, what);
    fgi_buf_free(got);
}

static void expect_device_same(const float *dev, const float *ref, size_t n,
                               const char *what)
{
    ok(fg_cuda_synchronize(0), what);
    float *got = fgi_dev_download(dev, n);
    fgi_dev_assert_guard(dev, n, what);
    fgi_assert_same(got, ref, n * sizeof(float), what);
    fgi_buf_free(got);
}

/* A length that is often awkward: 1, just around a power of two, or random. */
static int awkward_len(fgi_rng *r, int max)
{
    static const int specials[] = {1, 2, 3, 31, 32, 33, 127, 255, 257, 1023, 1025};
    int pick = fgi_rng_int(r, 0, 3);
    if (pick == 0) {
        int v = specials[fgi_rng_int(r, 0, (int)(sizeof specials / sizeof *specials) - 1)];
        return v <= max ? v : max;
    }
    return fgi_rng_int(r, 1, max);
}

/* Softmax and causal mask ------------------------------------------------------- */

Test(cuda_softmax, random_shapes_match_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(101);
    for (int trial = 0; trial < trials(64); trial++) {
        int outer, n, inner;
        switch (trial % 4) {
        case 0: /* last axis, many rows */
            outer = awkward_len(&rng, size_max(300, 40)), n = awkward_len(&rng, 3000), inner = 1;
            break;
        case 1: /* a middle axis */
            outer = awkward_len(&rng, 6), n = awkward_len(&rng, 400),
            inner = fgi_rng_int(&rng, 2, 70);
            break;
        case 2: /* one long row, like a vocabulary */
            outer = fgi_rng_int(&rng, 1, 3), n = fgi_rng_int(&rng, 20000, 70000), inner = 1;
            break;
        default: /* first axis of a small tensor */
            outer = 1, n = awkward_len(&rng, 50), inner = awkward_len(&rng, 2000);
            break;
        }
        const size_t total = (size_t)outer * n * inner;
        const double scale = trial % 8 == 3 ? 1000.0 : 4.0;
        float *x = fgi_buf_normal(&rng, total, scale), *ref = fgi_buf_nan(total);
        ok(fg_ref_softmax(ref, x, outer, n, inner), "reference softmax");
        const int in_place = trial % 5 == 2;
        float *dx = fgi_dev_upload(x, total), *dy = in_place ? dx : fgi_dev_poisoned(total);
        char what[160];
        snprintf(what, sizeof what, "softmax (%d, %d, %d)%s, trial %d", outer, n, inner,
                 in_place ? " in place" : "", trial);
        ok(fg_cuda_softmax(dy, dx, outer, n, inner, 0), what);
        expect_device_close(dy, ref, total, what);
        if (!in_place) fgi_dev_free(dy);
        fgi_dev_free(dx);
        fgi_buf_free(x), fgi_buf_free(ref);
    }
}

/* Rows of +-1000, -inf entries, all -inf slices and +inf entries, through
 * both kernels (contiguous rows and strided slices). */
Test(cuda_softmax, extreme_values_match_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(102);
    for (int trial = 0; trial < trials(50); trial++) {
        const int outer = fgi_rng_int(&rng, 1, 8), n = awkward_len(&rng, 600);
        const int inner = trial % 2 ? 1 : fgi_rng_int(&rng, 2, 9);
        const size_t total = (size_t)outer * n * inner;
        float *x = fgi_buf_normal(&rng, total, 3.0), *ref = fgi_buf_nan(total);
        for (int o = 0; o < outer; o++)
            for (int i = 0; i < inner; i++) {
                const int kind = fgi_rng_int(&rng, 0, 4);
                for (int j = 0; j < n; j++) {
                    float *v = &x[((size_t)o * n + j) * inner + i];
                    if (kind == 0) *v = (j % 2 ? 1000.0f : -1000.0f);
                    if (kind == 1 && fgi_rng_int(&rng, 0, 2) == 0) *v = -INFINITY;
                    if (kind == 2) *v = -INFINITY;
                    if (kind == 3 && fgi_rng_int(&rng, 0, 3) == 0) *v = INFINITY;
                }
            }
        ok(fg_ref_softmax(ref, x, outer, n, inner), "reference softmax");
        float *dx = fgi_dev_upload(x, total), *dy = fgi_dev_poisoned(total);
        char what[160];
        snprintf(what, sizeof what, "softmax with +-1000/+-inf (%d, %d, %d), trial %d",
                 outer, n, inner, trial);
        ok(fg_cuda_softmax(dy, dx, outer, n, inner, 0), what);
        expect_device_close(dy, ref, total, what);
        fgi_dev_free(dy), fgi_dev_free(dx);
        fgi_buf_free(x), fgi_buf_free(ref);
    }
}

Test(cuda_causal_mask, random_shapes_match_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(103);
    for (int trial = 0; trial < trials(50); trial++) {
        const int q = awkward_len(&rng, 300);
        const int kv = trial % 3 == 0 ? q : q + awkward_len(&rng, 2000) - 1;
        const size_t bytes = (size_t)q * kv, floats = (bytes + 3) / 4;
        uint8_t *ref = malloc(bytes), *got = malloc(floats * 4);
        cr_assert(ref && got);
        ok(fg_ref_causal_mask(ref, q, kv), "reference mask");
        float *dm = fgi_dev_poisoned(floats); /* every byte 0xff */
        char what[96];
        snprintf(what, sizeof what, "causal mask (%d, %d)", q, kv);
        ok(fg_cuda_causal_mask((uint8_t *)dm, q, kv, 0), what);
        ok(fg_cuda_synchronize(0), what);
        ok(fg_cuda_download(got, dm, floats * 4), what);
        fgi_dev_assert_guard(dm, floats, what);
        fgi_assert_same(got, ref, bytes, what);
        for (size_t b = bytes; b < floats * 4; b++)
            cr_assert(got[b] == 0xff, "%s: wrote past the end (byte %zu)", what, b);
        fgi_dev_free(dm);
        free(ref), free(got);
    }
}

/* RoPE --------------------------------------------------------------------------- */

Test(cuda_rope, random_shapes_and_large_positions_match_reference)
{
    fgi_require_gpu();
    static const double bases[] = {10000.0, 500000.0, 1000000.0, 100.0, 2.5};
    fgi_rng rng = fgi_rng_make(104);
    for (int trial = 0; trial < trials(60); trial++) {
        const int n_head = fgi_rng_int(&rng, 1, 9), seq = awkward_len(&rng, 60);
        const int head_dim = trial % 6 == 0 ? 2 : 2 * fgi_rng_int(&rng, 1, 128);
        const double base = bases[fgi_rng_int(&rng, 0, 4)];
        const size_t total = (size_t)n_head * seq * head_dim;
        int *pos = malloc(sizeof(int) * (size_t)seq);
        cr_assert(pos);
        const int start = fgi_rng_int(&rng, 0, 100000 - seq);
        for (int t = 0; t < seq; t++)
            pos[t] = trial % 2 ? start + t : fgi_rng_int(&rng, 0, 100000);
        pos[0] = trial % 3 == 0 ? 100000 : pos[0];
        float *x = fgi_buf_normal(&rng, total, 1.5), *ref = fgi_buf_copy(x, total);
        ok(fg_ref_rope(ref, n_head, seq, head_dim, pos, base), "reference rope");
        float *dx = fgi_dev_upload(x, total);
        int *dpos = fgi_dev_upload_ints(pos, (size_t)seq);
        char what[160];
        snprintf(what, sizeof what, "rope (%d, %d, %d) base %g, trial %d", n_head, seq,
                 head_dim, base, trial);
        ok(fg_cuda_rope(dx, n_head, seq, head_dim, dpos, base, 0), what);
        expect_device_close(dx, ref, total, what);
        fgi_dev_free(dx), fgi_dev_free(dpos);
        fgi_buf_free(x), fgi_buf_free(ref);
        free(pos);
    }
}

/* The decoder's fused "q|k|v bias + RoPE + append" kernel against the
 * reference ops it replaces: q (bias added, rotated by fg_ref_rope) in place
 * in the projection, rotated k and plain v in cache rows pos0 .. pos0+T-1,
 * and every other cache row as it was. RoPE scores depend only on relative
 * position, so a kernel rotating q and k one position too far passes every
 * logit check; only what it stores shows it. With and without bias and
 * RoPE, the position from the host or from a device int (graph replays),
 * odd head dims without RoPE. */
Test(cuda_fused, qkv_rope_append_matches_reference_ops)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(120);
    for (int trial = 0; trial < trials(60); trial++) {
        const int use_rope = trial % 4 != 3, with_bias = trial % 3 != 1, dev_pos = trial % 2;
        const int n_kv = fgi_rng_int(&rng, 1, 3), n_head = n_kv * fgi_rng_int(&rng, 1, 3);
        const int d = use_rope ? 2 * fgi_rng_int(&rng, 1, 40) : fgi_rng_int(&rng, 1, 80);
        const int T = fgi_rng_int(&rng, 1, 9), cap = T + fgi_rng_int(&rng, 0, 40);
        const int pos0 = fgi_rng_int(&rng, 0, cap - T);
        const double base = trial % 5 == 0 ? 500000.0 : 10000.0;
        const int heads = n_head + 2 * n_kv, width = heads * d;
        const size_t n_qkv = (size_t)T * width, n_cache = (size_t)n_kv * cap * d;
        float *qkv = fgi_buf_normal(&rng, n_qkv, 1.0), *bias = fgi_buf_normal(&rng, width, 0.5);
        float *kc = fgi_buf_normal(&rng, n_cache, 1.0), *vc = fgi_buf_normal(&rng, n_cache, 1.0);

        /* Reference: bias, then (n_head, T, d) and (n_kv, T, d) blocks of q
         * and k rotated by fg_ref_rope at positions pos0 .. pos0+T-1. */
        float *ref_qkv = fgi_buf_copy(qkv, n_qkv);
        float *ref_k = fgi_buf_copy(kc, n_cache), *ref_v = fgi_buf_copy(vc, n_cache);
        float *full = fgi_buf_copy(qkv, n_qkv);
        if (with_bias)
            for (int t = 0; t < T; t++)
                for (int c = 0; c < width; c++) full[(size_t)t * width + c] += bias[c];
        float *qh = fgi_buf_nan((size_t)n_head * T * d), *kh = fgi_buf_nan((size_t)n_kv * T * d);
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < n_head; h++)
                memcpy(qh + ((size_t)h * T + t) * d, full + (size_t)t * width + (size_t)h * d,
                       sizeof(float) * d);
            for (int g = 0; g < n_kv; g++)
                memcpy(kh + ((size_t)g * T + t) * d,
                       full + (size_t)t * width + (size_t)(n_head + g) * d, sizeof(float) * d);
        }
        if (use_rope) {
            int pos[16];
            for (int t = 0; t < T; t++) pos[t] = pos0 + t;
            ok(fg_ref_rope(qh, n_head, T, d, pos, base), "reference rope of q");
            ok(fg_ref_rope(kh, n_kv, T, d, pos, base), "reference rope of k");
        }
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < n_head; h++)
                memcpy(ref_qkv + (size_t)t * width + (size_t)h * d, qh + ((size_t)h * T + t) * d,
                       sizeof(float) * d);
            for (int g = 0; g < n_kv; g++) {
                const size_t row = ((size_t)g * cap + pos0 + t) * d;
                memcpy(ref_k + row, kh + ((size_t)g * T + t) * d, sizeof(float) * d);
                memcpy(ref_v + row, full + (size_t)t * width + (size_t)(n_head + n_kv + g) * d,
                       sizeof(float) * d);
            }
        }

        float *dqkv = fgi_dev_upload(qkv, n_qkv), *dbias = fgi_dev_upload(bias, (size_t)width);
        float *dk = fgi_dev_upload(kc, n_cache), *dv = fgi_dev_upload(vc, n_cache);
        int *dpos0 = fgi_dev_upload_ints(&pos0, 1);
        char what[200];
        snprintf(what, sizeof what,
                 "qkv rope append (T %d, n_head %d, n_kv_head %d, head_dim %d, capacity %d, "
                 "pos0 %d%s%s%s), trial %d",
                 T, n_head, n_kv, d, cap, pos0, use_rope ? ", rope" : "",
                 with_bias ? ", bias" : "", dev_pos ? ", device pos0" : "", trial);
#ifdef FG_HAVE_CUDA
        const fgi_qkv_append_args a = {dqkv, with_bias ? dbias : NULL, dk, dv, T, n_head, n_kv, d,
                                       cap, dev_pos ? -1 : pos0, dev_pos ? dpos0 : NULL,
                                       use_rope, base, NULL};
        ok(fgi_cuda_qkv_rope_append("test", &a, 0), what);
#endif
        /* q columns of the projection; k and v columns are the kernel's
         * scratch (not part of what it promises). */
        ok(fg_cuda_synchronize(0), what);
        float *got = fgi_dev_download(dqkv, n_qkv);
        for (int t = 0; t < T; t++) {
            char w[260];
            snprintf(w, sizeof w, "%s: q of token %d", what, t);
            fgi_assert_close(got + (size_t)t * width, ref_qkv + (size_t)t * width,
                             (size_t)n_head * d, ATOL, RTOL, L2, w);
        }
        char w[260];
        snprintf(w, sizeof w, "%s: k cache", what);
        expect_device_close(dk, ref_k, n_cache, w);
        snprintf(w, sizeof w, "%s: v cache", what);
        expect_device_close(dv, ref_v, n_cache, w);
        fgi_buf_free(got), fgi_buf_free(qh), fgi_buf_free(kh), fgi_buf_free(full);
        fgi_buf_free(qkv), fgi_buf_free(bias), fgi_buf_free(kc), fgi_buf_free(vc);
        fgi_buf_free(ref_qkv), fgi_buf_free(ref_k), fgi_buf_free(ref_v);
        fgi_dev_free(dqkv), fgi_dev_free(dbias), fgi_dev_free(dk), fgi_dev_free(dv);
        fgi_dev_free(dpos0);
    }
}

Test(cuda_rope, negative_position_is_refused_before_any_write)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(105);
    const int n_head = 3, seq = 5, d = 8;
    const size_t total = (size_t)n_head * seq * d;
    int pos[5] = {0, 7, 3, -2, 9};
    float *x = fgi_buf_normal(&rng, total, 1.0);
    float *dx = fgi_dev_upload(x, total);
    int *dpos = fgi_dev_upload_ints(pos, 5);
    fgi_assert_status(fg_cuda_rope(dx, n_head, seq, d, dpos, 10000.0, 0), FG_ERR_INVALID_ARG,
                     "pos[3]");
    expect_device_same(dx, x, total, "x after a refused rope");
    fgi_dev_free(dx), fgi_dev_free(dpos);
    fgi_buf_free(x);
}

/* Split / merge heads ------------------------------------------------------------ */

Test(cuda_layout, split_and_merge_match_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(106);
    for (int trial = 0; trial < trials(100); trial++) {
        const int seq = awkward_len(&rng, 200), n_head = fgi_rng_int(&rng, 1, 16);
        const int d = trial % 7 == 0 ? 1 : awkward_len(&rng, 130);
        const size_t total = (size_t)seq * n_head * d;
        const int split = trial % 2 == 0;
        float *x = fgi_buf_normal(&rng, total, 1.0), *ref = fgi_buf_nan(total);
        float *dx = fgi_dev_upload(x, total), *dy = fgi_dev_poisoned(total);
        char what[128];
        snprintf(what, sizeof what, "%s heads (seq %d, n_head %d, d %d)",
                 split ? "split" : "merge", seq, n_head, d);
        if (split) {
            ok(fg_ref_split_heads(ref, x, seq, n_head, d), "reference split");
            ok(fg_cuda_split_heads(dy, dx, seq, n_head, d, 0), what);
        } else {
            ok(fg_ref_merge_heads(ref, x, n_head, seq, d), "reference merge");
            ok(fg_cuda_merge_heads(dy, dx, n_head, seq, d, 0), what);
        }
        expect_device_same(dy, ref, total, what); /* a pure copy: bit-exact */
        fgi_dev_free(dx), fgi_dev_free(dy);
        fgi_buf_free(x), fgi_buf_free(ref);
    }
}

/* Norms ----------------------------------------------------------------------------- */

/* cols: tiny, odd, around warp and block sizes, the kernel's shared-memory
 * row limit (12000) and beyond it. */
static int norm_cols(fgi_rng *r)
{
    static const int specials[] = {1, 2, 5, 31, 33, 768, 1000, 4097, 8192,
                                   8193, 12000, 12001, 12288, 20000};
    if (fgi_rng_int(r, 0, 1) == 0)
        return specials[fgi_rng_int(r, 0, (int)(sizeof specials / sizeof *specials) - 1)];
    return fgi_rng_int(r, 1, 3000);
}

static float norm_eps(fgi_rng *r)
{
    static const float eps[] = {1e-5f, 1e-6f, 1e-3f};
    return eps[fgi_rng_int(r, 0, 2)];
}

/* x (rows, cols) ~ offset + scale * N(0, 1), offset and scale per row. */
static float *norm_input(fgi_rng *r, int rows, int cols)
{
    float *x = fgi_buf_normal(r, (size_t)rows * cols, 1.0);
    for (int i = 0; i < rows; i++) {
        const double offset = fgi_rng_int(r, 0, 2) ? 0.0 : 40.0 * fgi_rng_normal(r);
        const double scale = 0.2 + 4.0 * fgi_rng_uniform(r);
        for (int j = 0; j < cols; j++) {
            float *v = &x[(size_t)i * cols + j];
            *v = (float)(offset + scale * *v);
        }
    }
    return x;
}

static float *gain(fgi_rng *r, int cols)
{
    float *g = fgi_buf_normal(r, (size_t)cols, 0.3);
    for (int j = 0; j < cols; j++) g[j] += 1.0f;
    return g;
}

Test(cuda_norm, layer_norm_matches_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(107);
    for (int trial = 0; trial < trials(60); trial++) {
        const int rows = trial % 5 == 0 ? 1 : awkward_len(&rng, 64), cols = norm_cols(&rng);
        const float eps = norm_eps(&rng);
        const size_t total = (size_t)rows * cols;
        const int with_bias = trial % 3 != 0, in_place = trial % 4 == 1;
        float *x = norm_input(&rng, rows, cols), *g = gain(&rng, cols);
        float *b = fgi_buf_normal(&rng, (size_t)cols, 0.5), *ref = fgi_buf_nan(total);
        ok(fg_ref_layer_norm(ref, x, g, with_bias ? b : NULL, rows, cols, eps), "reference");
        float *dx = fgi_dev_upload(x, total), *dg = fgi_dev_upload(g, (size_t)cols);
        float *db = fgi_dev_upload(b, (size_t)cols);
        float *dy = in_place ? dx : fgi_dev_poisoned(total);
        char what[160];
        snprintf(what, sizeof what, "layer_norm (%d, %d) eps %g%s%s", rows, cols,
                 (double)eps, with_bias ? "" : " no bias", in_place ? " in place" : "");
        ok(fg_cuda_layer_norm(dy, dx, dg, with_bias ? db : NULL, rows, cols, eps, 0), what);
        expect_device_close(dy, ref, total, what);
        if (!in_place) fgi_dev_free(dy);
        fgi_dev_free(dx), fgi_dev_free(dg), fgi_dev_free(db);
        fgi_buf_free(x), fgi_buf_free(g), fgi_buf_free(b), fgi_buf_free(ref);
    }
}

Test(cuda_norm, rms_norm_matches_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(108);
    for (int trial = 0; trial < trials(60); trial++) {
        const int rows = trial % 5 == 0 ? 1 : awkward_len(&rng, 64), cols = norm_cols(&rng);
        const float eps = norm_eps(&rng);
        const size_t total = (size_t)rows * cols;
        const int in_place = trial % 4 == 1;
        float *x = norm_input(&rng, rows, cols), *g = gain(&rng, cols);
        float *ref = fgi_buf_nan(total);
        ok(fg_ref_rms_norm(ref, x, g, rows, cols, eps), "reference");
        float *dx = fgi_dev_upload(x, total), *dg = fgi_dev_upload(g, (size_t)cols);
        float *dy = in_place ? dx : fgi_dev_poisoned(total);
        char what[160];
        snprintf(what, sizeof what, "rms_norm (%d, %d) eps %g%s", rows, cols, (double)eps,
                 in_place ? " in place" : "");
        ok(fg_cuda_rms_norm(dy, dx, dg, rows, cols, eps, 0), what);
        expect_device_close(dy, ref, total, what);
        if (!in_place) fgi_dev_free(dy);
        fgi_dev_free(dx), fgi_dev_free(dg);
        fgi_buf_free(x), fgi_buf_free(g), fgi_buf_free(ref);
    }
}

/* x += delta must be the plain fp32 sum (bit-exact), y = LayerNorm(x). */
Test(cuda_norm, add_layer_norm_matches_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(109);
    for (int trial = 0; trial < trials(60); trial++) {
        const int rows = trial % 5 == 0 ? 1 : awkward_len(&rng, 64), cols = norm_cols(&rng);
        const float eps = norm_eps(&rng);
        const size_t total = (size_t)rows * cols;
        const int with_bias = trial % 3 != 0, in_place = trial % 4 == 1;
        float *x = norm_input(&rng, rows, cols), *delta = fgi_buf_normal(&rng, total, 2.0);
        float *g = gain(&rng, cols), *b = fgi_buf_normal(&rng, (size_t)cols, 0.5);
        float *sum = fgi_buf_nan(total), *ref = fgi_buf_nan(total);
        for (size_t i = 0; i < total; i++) sum[i] = x[i] + delta[i];
        ok(fg_ref_layer_norm(ref, sum, g, with_bias ? b : NULL, rows, cols, eps), "reference");
        float *dx = fgi_dev_upload(x, total), *dd = fgi_dev_upload(delta, total);
        float *dg = fgi_dev_upload(g, (size_t)cols), *db = fgi_dev_upload(b, (size_t)cols);
        float *dy = in_place ? dx : fgi_dev_poisoned(total);
        char what[160];
        snprintf(what, sizeof what, "add_layer_norm (%d, %d) eps %g%s%s", rows, cols,
                 (double)eps, with_bias ? "" : " no bias", in_place ? " y == x" : "");
        ok(fg_cuda_add_layer_norm(dy, dx, dd, dg, with_bias ? db : NULL, rows, cols, eps, 0),
           what);
        expect_device_close(dy, ref, total, what);
        if (!in_place) {
            char what_x[200];
            snprintf(what_x, sizeof what_x, "%s: updated x", what);
            expect_device_same(dx, sum, total, what_x);
            fgi_dev_free(dy);
        }
        fgi_dev_free(dx), fgi_dev_free(dd), fgi_dev_free(dg), fgi_dev_free(db);
        fgi_buf_free(x), fgi_buf_free(delta), fgi_buf_free(g), fgi_buf_free(b);
        fgi_buf_free(sum), fgi_buf_free(ref);
    }
}

/* Elementwise ---------------------------------------------------------------------- */

/* Mostly N(0, 2); every 17th value from index 1 on large (+-5 .. +-60) to
 * reach the tails. Not index 0: a one-element input far in GELU's negative
 * tail (x < -6, output < 1e-10) leaves the relative L2 check measuring that
 * tiny value alone, and no fp32 GELU (nor the double tanh-form reference,
 * whose 1 + tanh cancels there) is accurate to 1e-5 relative there. */
static float *activation_input(fgi_rng *r, size_t n)
{
    float *x = fgi_buf_normal(r, n, 2.0);
    for (size_t i = 1; i < n; i += 17) x[i] = (float)(x[i] * (2.5 + 10.0 * fgi_rng_uniform(r)));
    return x;
}

Test(cuda_elementwise, gelu_matches_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(110);
    for (int trial = 0; trial < trials(50); trial++) {
        const int n = trial % 4 == 0 ? fgi_rng_int(&rng, 100000, size_max(1500000, 200000))
                                      : awkward_len(&rng, 5000);
        const int in_place = trial % 3 == 1;
        float *x = activation_input(&rng, (size_t)n), *ref = fgi_buf_nan((size_t)n);
        ok(fg_ref_gelu(ref, x, n), "reference");
        float *dx = fgi_dev_upload(x, (size_t)n), *dy = in_place ? dx : fgi_dev_poisoned((size_t)n);
        char what[96];
        snprintf(what, sizeof what, "gelu n %d%s", n, in_place ? " in place" : "");
        ok(fg_cuda_gelu(dy, dx, n, 0), what);
        expect_device_close(dy, ref, (size_t)n, what);
        if (!in_place) fgi_dev_free(dy);
        fgi_dev_free(dx);
        fgi_buf_free(x), fgi_buf_free(ref);
    }
}

Test(cuda_elementwise, bias_gelu_matches_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(111);
    for (int trial = 0; trial < trials(50); trial++) {
        const int rows = awkward_len(&rng, 80), cols = awkward_len(&rng, 4000);
        const size_t total = (size_t)rows * cols;
        const int with_bias = trial % 4 != 0, in_place = trial % 3 == 1;
        float *x = activation_input(&rng, total), *b = fgi_buf_normal(&rng, (size_t)cols, 1.0);
        float *sum = fgi_buf_copy(x, total), *ref = fgi_buf_nan(total);
        for (size_t i = 0; with_bias && i < total; i++) sum[i] = x[i] + b[i % (size_t)cols];
        ok(fg_ref_gelu(ref, sum, (int)total), "reference");
        float *dx = fgi_dev_upload(x, total), *db = fgi_dev_upload(b, (size_t)cols);
        float *dy = in_place ? dx : fgi_dev_poisoned(total);
        char what[128];
        snprintf(what, sizeof what, "bias_gelu (%d, %d)%s%s", rows, cols,
                 with_bias ? "" : " no bias", in_place ? " in place" : "");
        ok(fg_cuda_bias_gelu(dy, dx, with_bias ? db : NULL, rows, cols, 0), what);
        expect_device_close(dy, ref, total, what);
        if (!in_place) fgi_dev_free(dy);
        fgi_dev_free(dx), fgi_dev_free(db);
        fgi_buf_free(x), fgi_buf_free(b), fgi_buf_free(sum), fgi_buf_free(ref);
    }
}

Test(cuda_elementwise, silu_mul_matches_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(112);
    for (int trial = 0; trial < trials(50); trial++) {
        const int n = trial % 4 == 0 ? fgi_rng_int(&rng, 100000, size_max(1500000, 200000))
                                      : awkward_len(&rng, 5000);
        const int mode = trial % 3; /* 0: separate output, 1: y == gate, 2: y == up */
        float *gate = activation_input(&rng, (size_t)n), *up = fgi_buf_normal(&rng, (size_t)n, 1.5);
        float *ref = fgi_buf_nan((size_t)n);
        ok(fg_ref_silu_mul(ref, gate, up, n), "reference");
        float *dg = fgi_dev_upload(gate, (size_t)n), *du = fgi_dev_upload(up, (size_t)n);
        float *dy = mode == 1 ? dg : mode == 2 ? du : fgi_dev_poisoned((size_t)n);
        char what[96];
        snprintf(what, sizeof what, "silu_mul n %d mode %d", n, mode);
        ok(fg_cuda_silu_mul(dy, dg, du, n, 0), what);
        expect_device_close(dy, ref, (size_t)n, what);
        if (mode == 0) fgi_dev_free(dy);
        fgi_dev_free(dg), fgi_dev_free(du);
        fgi_buf_free(gate), fgi_buf_free(up), fgi_buf_free(ref);
    }
}

/* Linear and MLPs ------------------------------------------------------------------ */

/* One random linear layer on the GPU against the reference; with
 * repeat_bitwise a second identical call must give the same bits. */
static void check_linear(fgi_rng *rng, int rows, int in, int out, int with_bias,
                         int repeat_bitwise)
{
    const size_t nx = (size_t)rows * in, nw = (size_t)in * out, ny = (size_t)rows * out;
    float *x = fgi_buf_normal(rng, nx, 1.0);
    float *w = fgi_buf_normal(rng, nw, 1.0 / sqrt((double)in));
    float *b = fgi_buf_normal(rng, (size_t)out, 0.5), *ref = fgi_buf_nan(ny);
    ok(fg_ref_linear(ref, x, w, with_bias ? b : NULL, rows, in, out), "reference");
    float *dx = fgi_dev_upload(x, nx), *dw = fgi_dev_upload(w, nw);
    float *db = fgi_dev_upload(b, (size_t)out), *dy = fgi_dev_poisoned(ny);
    char what[128];
    snprintf(what, sizeof what, "linear rows %d in %d out %d%s", rows, in, out,
             with_bias ? "" : " no bias");
    ok(fg_cuda_linear(dy, dx, dw, with_bias ? db : NULL, rows, in, out, 0), what);
    expect_device_close(dy, ref, ny, what);
    if (repeat_bitwise) {
        float *first = fgi_dev_download(dy, ny);
        fgi_dev_free(dy);
        dy = fgi_dev_poisoned(ny);
        ok(fg_cuda_linear(dy, dx, dw, with_bias ? db : NULL, rows, in, out, 0), what);
        ok(fg_cuda_synchronize(0), what);
        float *second = fgi_dev_download(dy, ny);
        fgi_assert_same(first, second, sizeof(float) * ny, what);
        fgi_buf_free(first), fgi_buf_free(second);
    }
    fgi_dev_free(dx), fgi_dev_free(dw), fgi_dev_free(db), fgi_dev_free(dy);
    fgi_buf_free(x), fgi_buf_free(w), fgi_buf_free(b), fgi_buf_free(ref);
}

Test(cuda_linear, random_shapes_match_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(113);
    for (int trial = 0; trial < trials(60); trial++) {
        int rows = awkward_len(&rng, 70), in = awkward_len(&rng, 700), out = awkward_len(&rng, 700);
        if (trial % 10 == 0) rows = 1, in = 4096, out = fgi_rng_int(&rng, 1000, size_max(3000, 1500));
        if (trial % 10 == 5) rows = fgi_rng_int(&rng, 200, size_max(400, 250));
        check_linear(&rng, rows, in, out, trial % 3 != 0, 0);
    }
}

/* One to eight rows take the GEMV kernel (split over `in`, partials summed by
 * each column tile's last block): wide and narrow `in` (one slice or many),
 * `out` a multiple of 4 (vector loads) or not, tails of the 128-column tile.
 * A second identical call must give the same bits: the sum order is fixed.
 * (That each call leaves the tile counters at zero is checked where two
 * GEMVs share a workspace: the FFN tests and the GPU decoder's tests.) */
Test(cuda_linear, few_rows_match_reference_and_repeat_bitwise)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(117);
    for (int trial = 0; trial < trials(60); trial++) {
        const int rows = 1 + trial % 8;
        const int in = trial % 3 == 0 ? fgi_rng_int(&rng, 1, 70)
                                      : fgi_rng_int(&rng, 500, size_max(4096, 1500));
        int out = trial % 5 == 0 ? awkward_len(&rng, 1100) : 4 * fgi_rng_int(&rng, 1, 700);
        if (trial % 7 == 0) out = 128 * fgi_rng_int(&rng, 1, 12);
        check_linear(&rng, rows, in, out, trial % 4 != 3, 1);
    }
}

Test(cuda_linear, gelu_ffn_matches_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(114);
    for (int trial = 0; trial < trials(50); trial++) {
        const int rows = awkward_len(&rng, 40), hidden = awkward_len(&rng, 300);
        const int inner = trial % 2 ? 4 * hidden : awkward_len(&rng, 700);
        const int with_bias = trial % 3 != 0;
        const size_t nx = (size_t)rows * hidden, nfc = (size_t)hidden * inner;
        float *x = fgi_buf_normal(&rng, nx, 1.0);
        float *w_fc = fgi_buf_normal(&rng, nfc, 1.0 / sqrt((double)hidden));
        float *w_proj = fgi_buf_normal(&rng, nfc, 1.0 / sqrt((double)inner));
        float *b_fc = fgi_buf_normal(&rng, (size_t)inner, 0.3);
        float *b_proj = fgi_buf_normal(&rng, (size_t)hidden, 0.3), *ref = fgi_buf_nan(nx);
        ok(fg_ref_ffn(ref, x, w_fc, with_bias ? b_fc : NULL, w_proj, with_bias ? b_proj : NULL,
                      rows, hidden, inner),
           "reference");
        float *dx = fgi_dev_upload(x, nx), *dfc = fgi_dev_upload(w_fc, nfc);
        float *dproj = fgi_dev_upload(w_proj, nfc), *dbfc = fgi_dev_upload(b_fc, (size_t)inner);
        float *dbproj = fgi_dev_upload(b_proj, (size_t)hidden), *dy = fgi_dev_poisoned(nx);
        char what[128];
        snprintf(what, sizeof what, "ffn rows %d hidden %d inner %d%s", rows, hidden, inner,
                 with_bias ? "" : " no bias");
        ok(fg_cuda_ffn(dy, dx, dfc, with_bias ? dbfc : NULL, dproj, with_bias ? dbproj : NULL,
                       rows, hidden, inner, 0),
           what);
        expect_device_close(dy, ref, nx, what);
        fgi_dev_free(dx), fgi_dev_free(dfc), fgi_dev_free(dproj), fgi_dev_free(dbfc);
        fgi_dev_free(dbproj), fgi_dev_free(dy);
        fgi_buf_free(x), fgi_buf_free(w_fc), fgi_buf_free(w_proj), fgi_buf_free(b_fc);
        fgi_buf_free(b_proj), fgi_buf_free(ref);
    }
}

Test(cuda_linear, swiglu_ffn_matches_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(115);
    for (int trial = 0; trial < trials(50); trial++) {
        const int rows = awkward_len(&rng, 40), hidden = awkward_len(&rng, 300);
        const int inner = awkward_len(&rng, 800);
        const size_t nx = (size_t)rows * hidden, nw = (size_t)hidden * inner;
        float *x = fgi_buf_normal(&rng, nx, 1.0);
        float *w_gate = fgi_buf_normal(&rng, nw, 1.0 / sqrt((double)hidden));
        float *w_up = fgi_buf_normal(&rng, nw, 1.0 / sqrt((double)hidden));
        float *w_down = fgi_buf_normal(&rng, nw, 1.0 / sqrt((double)inner));
        float *ref = fgi_buf_nan(nx);
        ok(fg_ref_swiglu_ffn(ref, x, w_gate, w_up, w_down, rows, hidden, inner), "reference");
        float *dx = fgi_dev_upload(x, nx), *dg = fgi_dev_upload(w_gate, nw);
        float *du = fgi_dev_upload(w_up, nw), *dd = fgi_dev_upload(w_down, nw);
        float *dy = fgi_dev_poisoned(nx);
        char what[128];
        snprintf(what, sizeof what, "swiglu_ffn rows %d hidden %d inner %d", rows, hidden, inner);
        ok(fg_cuda_swiglu_ffn(dy, dx, dg, du, dd, rows, hidden, inner, 0), what);
        expect_device_close(dy, ref, nx, what);
        fgi_dev_free(dx), fgi_dev_free(dg), fgi_dev_free(du), fgi_dev_free(dd), fgi_dev_free(dy);
        fgi_buf_free(x), fgi_buf_free(w_gate), fgi_buf_free(w_up), fgi_buf_free(w_down);
        fgi_buf_free(ref);
    }
}

/* Argument checking (no device needed) --------------------------------------------- */

/* Host buffers stand in for device pointers: a refused call never touches
 * them, which the tests check. */
Test(cuda_args, bad_arguments_are_refused_and_write_nothing)
{
    fgi_rng rng = fgi_rng_make(116);
    const size_t n = 256;
    float *a = fgi_buf_normal(&rng, n, 1.0), *b = fgi_buf_normal(&rng, n, 1.0);
    float *c = fgi_buf_normal(&rng, n, 1.0), *d = fgi_buf_normal(&rng, n, 1.0);
    float *a0 = fgi_buf_copy(a, n), *b0 = fgi_buf_copy(b, n);
    float *c0 = fgi_buf_copy(c, n), *d0 = fgi_buf_copy(d, n);
    int pos[4] = {0, 1, 2, 3};
    uint8_t mask[16];
    memset(mask, 7, sizeof mask);

    fgi_expect_refused(fg_cuda_softmax(NULL, a, 1, 4, 1, 0), "'y' is NULL");
    fgi_expect_refused(fg_cuda_softmax(b, a, 1, 0, 1, 0), "'n'");
    fgi_expect_refused(fg_cuda_softmax(b, a, 1 << 30, 1 << 30, 1 << 30, 0), "overflow");
    fgi_expect_refused(fg_cuda_softmax(a + 1, a, 2, 8, 1, 0), "overlap");
    fgi_expect_refused(fg_cuda_causal_mask(mask, 3, 2, 0), "'kv_len' must be >= q_len");
    fgi_expect_refused(fg_cuda_causal_mask(NULL, 2, 2, 0), "'mask' is NULL");
    fgi_expect_refused(fg_cuda_rope(a, 1, 4, 3, pos, 10000.0, 0), "even");
    fgi_expect_refused(fg_cuda_rope(a, 1, 4, 4, NULL, 10000.0, 0), "'pos' is NULL");
    fgi_expect_refused(fg_cuda_rope(a, 1, 4, 4, pos, -1.0, 0), "'base'");
    fgi_expect_refused(fg_cuda_rope(a, 0, 4, 4, pos, 10000.0, 0), "'n_head'");
    fgi_expect_refused(fg_cuda_split_heads(b, NULL, 2, 2, 2, 0), "'x' is NULL");
    fgi_expect_refused(fg_cuda_merge_heads(b, a, 2, 0, 2, 0), "'seq'");
    fgi_expect_refused(fg_cuda_split_heads(a + 2, a, 2, 2, 2, 0), "overlap");
    fgi_expect_refused(fg_cuda_linear(b, a, c, NULL, 2, 0, 3, 0), "'in'");
    fgi_expect_refused(fg_cuda_linear(b, a, NULL, NULL, 2, 3, 3, 0), "'w' is NULL");
    fgi_expect_refused(fg_cuda_linear(b, a, c, NULL, 1 << 30, 1 << 30, 4, 0), "overflow");
    fgi_expect_refused(fg_cuda_linear(a, a, c, NULL, 2, 3, 3, 0), "overlap");
    fgi_expect_refused(fg_cuda_gelu(b, a, 0, 0), "'n'");
    fgi_expect_refused(fg_cuda_bias_gelu(b, a, c, 0, 4, 0), "'rows'");
    fgi_expect_refused(fg_cuda_bias_gelu(b, a, c, 2, -1, 0), "'cols'");
    fgi_expect_refused(fg_cuda_bias_gelu(b, a, b + 1, 2, 4, 0), "overlap");
    fgi_expect_refused(fg_cuda_silu_mul(b, a, NULL, 4, 0), "'up' is NULL");
    fgi_expect_refused(fg_cuda_layer_norm(b, a, c, d, 2, 4, -1.0f, 0), "'eps'");
    fgi_expect_refused(fg_cuda_layer_norm(b, a, NULL, d, 2, 4, 1e-5f, 0), "'g' is NULL");
    fgi_expect_refused(fg_cuda_layer_norm(b, a, c, d, 2, 0, 1e-5f, 0), "'cols'");
    fgi_expect_refused(fg_cuda_rms_norm(b, a, c, 0, 4, 1e-5f, 0), "'rows'");
    fgi_expect_refused(fg_cuda_rms_norm(b, a, c, 2, 4, NAN, 0), "'eps'");
    fgi_expect_refused(fg_cuda_add_layer_norm(b, a, NULL, c, d, 2, 4, 1e-5f, 0), "'delta' is NULL");
    fgi_expect_refused(fg_cuda_add_layer_norm(b, a, a + 4, c, d, 2, 4, 1e-5f, 0), "overlap");
    fgi_expect_refused(fg_cuda_ffn(b, a, c, NULL, d, NULL, 2, 4, 0, 0), "'inner'");
    fgi_expect_refused(fg_cuda_ffn(b, a, NULL, NULL, d, NULL, 2, 4, 4, 0), "'w_fc' is NULL");
    fgi_expect_refused(fg_cuda_swiglu_ffn(b, a, c, NULL, d, 2, 4, 4, 0), "'w_up' is NULL");
    fgi_expect_refused(fg_cuda_swiglu_ffn(b, a, c, c, d, 2, 0, 4, 0), "'hidden'");

    fgi_assert_same(a, a0, n * sizeof(float), "a after refused calls");
    fgi_assert_same(b, b0, n * sizeof(float), "b after refused calls");
    fgi_assert_same(c, c0, n * sizeof(float), "c after refused calls");
    fgi_assert_same(d, d0, n * sizeof(float), "d after refused calls");
    for (int i = 0; i < 16; i++) cr_assert_eq(mask[i], 7);
    fgi_buf_free(a), fgi_buf_free(b), fgi_buf_free(c), fgi_buf_free(d);
    fgi_buf_free(a0), fgi_buf_free(b0), fgi_buf_free(c0), fgi_buf_free(d0);
}

Test(cuda_args, memory_functions_check_their_arguments)
{
    void *p = (void *)0x1;
    float host[4] = {1, 2, 3, 4};
    char name[8];
    int sms = -1;
    size_t bytes = 7;
    fgi_expect_refused(fg_cuda_malloc(NULL, 16), "'ptr' is NULL");
    fgi_expect_refused(fg_cuda_malloc(&p, 0), "'bytes'");
#ifdef FG_HAVE_CUDA
    cr_assert(p == NULL, "fg_cuda_malloc clears *ptr on failure");
#endif
    fgi_expect_refused(fg_cuda_upload(NULL, host, 16), "'dst_device' is NULL");
    fgi_expect_refused(fg_cuda_download(host, NULL, 16), "'src_device' is NULL");
    fgi_expect_refused(fg_cuda_memset(NULL, 0, 16), "'dst_device' is NULL");
    fgi_expect_refused(fg_cuda_memset(host, 300, 16), "'byte'");
    fgi_expect_refused(fg_cuda_device_info(NULL, 8, &sms, &bytes), "'name' is NULL");
    fgi_expect_refused(fg_cuda_device_info(name, 0, &sms, &bytes), "'name_len'");
    fgi_expect_refused(fg_cuda_device_info(name, 8, NULL, &bytes), "'sm_count' is NULL");
    cr_assert(sms == -1 && bytes == 7, "refused device_info wrote its outputs");
    cr_assert(host[0] == 1 && host[3] == 4);
    fgi_assert_status(fg_cuda_free(NULL), FG_OK, NULL);
}

/* Without a usable device every operation reports it (after its argument
 * checks), with a clear message and no crash. */
Test(cuda_args, no_device_is_a_clear_error)
{
    if (fg_cuda_available()) cr_skip_test("a GPU is present: the no-device path is not reachable");
    float a[64] = {1}, b[64] = {2}, c[64] = {3};
    int pos[4] = {0, 1, 2, 3};
    void *p = NULL;
    fgi_expect_no_device(fg_cuda_malloc(&p, 64));
    cr_assert(p == NULL);
    fgi_expect_no_device(fg_cuda_upload(a, b, 16));
    fgi_expect_no_device(fg_cuda_synchronize(0));
    fgi_expect_no_device(fg_cuda_softmax(b, a, 1, 4, 1, 0));
    fgi_expect_no_device(fg_cuda_rope(a, 1, 4, 4, pos, 10000.0, 0));
    fgi_expect_no_device(fg_cuda_layer_norm(b, a, c, NULL, 2, 4, 1e-5f, 0));
    fgi_expect_no_device(fg_cuda_linear(b, a, c, NULL, 2, 4, 4, 0));
    fgi_expect_no_device(fg_cuda_gelu(b, a, 4, 0));
    fgi_expect_no_device(fg_cuda_split_heads(b, a, 2, 2, 2, 0));
    cr_assert(a[0] == 1 && b[0] == 2 && c[0] == 3, "nothing was written");
}
