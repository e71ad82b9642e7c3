/* GPU attention (cuda/attention*.cu) against the CPU reference: single-head,
 * flash (every key tile), MHA, GQA/MQA, log-sum-exp, split-KV against one
 * pass for each kernel family, the tensor-core (3xTF32) kernel forced on
 * its head dims and with each key tile, the decoder's strided layout (fused
 * q|k|v projection, KV cache, merged output), a deterministic sweep of the
 * causal shift and of the sliding window's lower edge around every key
 * tile of every forced kernel, and argument checking.
 *
 * Every family runs at least 50 random shapes covering q_len = 1,
 * q_len = kv_len and kv_len >> q_len, lengths that are not tile multiples
 * and every head_dim with a fast path plus odd ones. Inputs are fresh draws
 * (seed in every message), outputs start as NaN and end in a guard region.
 * FG_TEST_QUICK=1 runs fewer, smaller shapes (for compute-sanitizer).
 * GPU tests skip visibly without a device; argument tests run everywhere:
 * a CUDA build refuses bad input with FG_ERR_INVALID_ARG before touching
 * a device, a CPU-only build answers FG_ERR_UNSUPPORTED. */
#include "attention_shapes.h"
#include "gpu_support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* tolerances of docs/contract.md §32 for fp32 GPU vs CPU reference. */
#define ATOL 1e-4
#define RTOL 1e-4
#define REL_L2 1e-5

/* Head dims: every tiled fast path, then ones only the decode (multiples
 * of 4) or generic kernels serve. */
static const int head_dims[] = {32, 64, 80, 96, 128, 256, 8, 40, 72, 16, 12, 3, 17};
#define N_HEAD_DIMS ((int)(sizeof head_dims / sizeof head_dims[0]))
/* Query lengths around every tile size (16, 32, 64 keys; 32, 64 rows). */
static const int lengths[] = {1, 2, 3, 17, 31, 33, 63, 64, 65, 127, 129, 200, 1000};
#define N_LENGTHS ((int)(sizeof lengths / sizeof lengths[0]))

static int n_cases(void) { return fgi_test_quick() ? 6 : 50; }

/* Upper bound on n_q_head * q_len * kv_len * head_dim per case, which keeps
 * the double-precision reference cheap. */
static double case_budget(void) { return fgi_test_quick() ? 2e6 : 3e7; }

typedef fgi_attention_shape shape;

/* Case c of a family (tests/support/attention_shapes.h): this file's head
 * dims and lengths, ratio query heads per KV head (0: MQA, 2..8 query
 * heads), within case_budget. */
static shape make_shape(fgi_rng *r, int c, int ratio)
{
    const fgi_attention_space space = {head_dims, N_HEAD_DIMS, lengths, N_LENGTHS, 8,
                                       case_budget()};
    return fgi_attention_make_shape(r, c, ratio, &space);
}

static void describe(char *buf, size_t len, const char *family, int c, shape s)
{
    snprintf(buf, len, "%s case %d (n_q_head %d, n_kv_head %d, q_len %d, kv_len %d, head_dim %d)",
             family, c, s.n_q, s.n_kv, s.q_len, s.kv_len, s.d);
}

/* Random q (n_q, q_len, d), k and v (n_kv, kv_len, d) on host and device. */
typedef struct {
    size_t nq, nkv;
    float *q, *k, *v;    /* host */
    float *dq, *dk, *dv; /* device */
} inputs;

static void inputs_make(inputs *in, fgi_rng *r, shape s, double scale)
{
    in->nq = (size_t)s.n_q * s.q_len * s.d;
    in->nkv = (size_t)s.n_kv * s.kv_len * s.d;
    in->q = fgi_buf_normal(r, in->nq, scale);
    in->k = fgi_buf_normal(r, in->nkv, scale);
    in->v = fgi_buf_normal(r, in->nkv, 1.0);
    in->dq = fgi_dev_upload(in->q, in->nq);
    in->dk = fgi_dev_upload(in->k, in->nkv);
    in->dv = fgi_dev_upload(in->v, in->nkv);
}

static void inputs_free(inputs *in)
{
    fgi_buf_free(in->q), fgi_buf_free(in->k), fgi_buf_free(in->v);
    fgi_dev_free(in->dq), fgi_dev_free(in->dk), fgi_dev_free(in->dv);
}

static void expect_ok(fg_status st, const char *what)
{
    cr_assert(st == FG_OK, "%s: %s: %s (seed %llu)", what, fg_status_str(st), fg_last_error(),
              (unsigned long long)fgi_test_seed());
    st = fg_cuda_synchronize(NULL);
    cr_assert(st == FG_OK, "%s: synchronize: %s (seed %llu)", what, fg_last_error(),
              (unsigned long long)fgi_test_seed());
}

/* Guard intact, then every element within tolerance (docs/contract.md §32) of ref. */
static void expect_close_dev(const float *dev, const float *ref, size_t n, const char *what)
{
    fgi_dev_assert_guard(dev, n, what);
    float *got = fgi_dev_download(dev, n);
    fgi_assert_close(got, ref, n, ATOL, RTOL, REL_L2, what);
    fgi_buf_free(got);
}

/* The internal entry with a kernel / split request; what actually ran is
 * returned in *t. CPU-only builds have no GPU kernels to ask for. */
static fg_status run_tuned(const fgi_attention_args *a, fgi_attention_tuning *t, void *ws,
                           size_t ws_bytes)
{
#ifdef FG_HAVE_CUDA
    return fgi_cuda_attention_tuned("test", a, t, ws, ws_bytes, NULL);
#else
    (void)a, (void)t, (void)ws, (void)ws_bytes;
    return FG_ERR_UNSUPPORTED;
#endif
}

/* Contiguous (heads, rows, d) arguments for the internal entry. */
static fgi_attention_args contiguous_args(float *out, float *lse, const inputs *in, shape s)
{
    fgi_attention_args a;
    memset(&a, 0, sizeof a);
    a.out = out;
    a.out_head_stride = (long long)s.q_len * s.d;
    a.out_row_stride = s.d;
    a.lse = lse;
    a.q = in->dq;
    a.q_head_stride = (long long)s.q_len * s.d;
    a.q_row_stride = s.d;
    a.k = in->dk;
    a.v = in->dv;
    a.kv_head_stride = (long long)s.kv_len * s.d;
    a.n_q_head = s.n_q;
    a.n_kv_head = s.n_kv;
    a.q_len = s.q_len;
    a.kv_len = s.kv_len;
    a.head_dim = s.d;
    return a;
}

/* Natural-log log-sum-exp of the scaled scores of every query row, in
 * double, straight from the definition: (n_q, q_len). */
static float *reference_lse_window(const inputs *in, shape s, int window)
{
    float *lse = fgi_buf_nan((size_t)s.n_q * s.q_len);
    double *scores = malloc(sizeof(double) * (size_t)s.kv_len);
    cr_assert(scores != NULL);
    const int group = s.n_q / s.n_kv, shift = s.kv_len - s.q_len;
    const double scale = 1.0 / sqrt((double)s.d);
    for (int h = 0; h < s.n_q; h++)
        for (int i = 0; i < s.q_len; i++) {
            const float *q = in->q + ((size_t)h * s.q_len + i) * s.d;
            const float *k = in->k + (size_t)(h / group) * s.kv_len * s.d;
            double big = -INFINITY, sum = 0.0;
            /* keys [first, i + shift]: the causal prefix or its window */
            const int first = window > 0 && i + shift + 1 > window ? i + shift + 1 - window : 0;
            for (int j = first; j <= i + shift; j++) {
                double dot = 0.0;
                for (int e = 0; e < s.d; e++) dot += (double)q[e] * k[(size_t)j * s.d + e];
                scores[j] = dot * scale;
                if (scores[j] > big) big = scores[j];
            }
            for (int j = first; j <= i + shift; j++) sum += exp(scores[j] - big);
            lse[(size_t)h * s.q_len + i] = (float)(big + log(sum));
        }
    free(scores);
    return lse;
}

static float *reference_lse(const inputs *in, shape s) { return reference_lse_window(in, s, 0); }

static float *reference_gqa_window(const inputs *in, shape s, int window)
{
    float *ref = fgi_buf_nan(in->nq);
    cr_assert_eq(fg_ref_gqa_window(ref, in->q, in->k, in->v, s.n_q, s.n_kv, s.q_len, s.kv_len,
                                   s.d, window),
                 FG_OK, "%s", fg_last_error());
    return ref;
}

static float *reference_gqa(const inputs *in, shape s)
{
    float *ref = fgi_buf_nan(in->nq);
    cr_assert_eq(fg_ref_gqa(ref, in->q, in->k, in->v, s.n_q, s.n_kv, s.q_len, s.kv_len, s.d),
                 FG_OK, "%s", fg_last_error());
    return ref;
}

/* Families ------------------------------------------------------------------ */

Test(cuda_attention, single_head_random_shapes)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(101);
    for (int c = 0; c < n_cases(); c++) {
        shape s = make_shape(&rng, c, 1);
        s.n_q = s.n_kv = 1;
        char what[200];
        describe(what, sizeof what, "fg_cuda_attention", c, s);
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        float *out = fgi_dev_poisoned(in.nq), *ref = fgi_buf_nan(in.nq);
        cr_assert_eq(fg_ref_attention(ref, in.q, in.k, in.v, s.q_len, s.kv_len, s.d), FG_OK);
        expect_ok(fg_cuda_attention(out, in.dq, in.dk, in.dv, s.q_len, s.kv_len, s.d, NULL), what);
        expect_close_dev(out, ref, in.nq, what);
        fgi_dev_free(out), fgi_buf_free(ref), inputs_free(&in);
    }
}

/* Every block size maps to some key tile (1..15 -> 16, 16..31 -> 16,
 * 32..63 -> 32, >= 64 -> 64); the result must match the streamed
 * reference with the same block size, whichever tile serves it. */
Test(cuda_attention, flash_every_block_size)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(102);
    const int fixed_blocks[] = {1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000};
    const int n_fixed = (int)(sizeof fixed_blocks / sizeof fixed_blocks[0]);
    for (int c = 0; c < n_cases(); c++) {
        shape s = make_shape(&rng, c, 1);
        s.n_q = s.n_kv = 1;
        const int block = c < n_fixed ? fixed_blocks[c] : fgi_rng_int(&rng, 1, s.kv_len + 1);
        char what[240];
        describe(what, sizeof what, "fg_cuda_attention_flash", c, s);
        snprintf(what + strlen(what), sizeof what - strlen(what), " block_size %d", block);
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        float *out = fgi_dev_poisoned(in.nq), *ref = fgi_buf_nan(in.nq);
        cr_assert_eq(fg_ref_attention_flash(ref, in.q, in.k, in.v, s.q_len, s.kv_len, s.d, block),
                     FG_OK);
        expect_ok(fg_cuda_attention_flash(out, in.dq, in.dk, in.dv, s.q_len, s.kv_len, s.d, block,
                                          NULL),
                  what);
        expect_close_dev(out, ref, in.nq, what);
        fgi_dev_free(out), fgi_buf_free(ref), inputs_free(&in);
    }
}

Test(cuda_attention, mha_random_shapes)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(103);
    for (int c = 0; c < n_cases(); c++) {
        const shape s = make_shape(&rng, c, 1);
        char what[200];
        describe(what, sizeof what, "fg_cuda_mha", c, s);
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        float *out = fgi_dev_poisoned(in.nq), *ref = fgi_buf_nan(in.nq);
        cr_assert_eq(fg_ref_mha(ref, in.q, in.k, in.v, s.n_q, s.q_len, s.kv_len, s.d), FG_OK);
        expect_ok(fg_cuda_mha(out, in.dq, in.dk, in.dv, s.n_q, s.q_len, s.kv_len, s.d, NULL), what);
        expect_close_dev(out, ref, in.nq, what);
        fgi_dev_free(out), fgi_buf_free(ref), inputs_free(&in);
    }
}

/* Group ratios 1, 2, 4, 8 and MQA (one KV head for every query head). */
Test(cuda_attention, gqa_and_mqa_random_shapes)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(104);
    const int ratios[] = {1, 2, 4, 8, 0};
    for (int c = 0; c < n_cases(); c++) {
        const shape s = make_shape(&rng, c, ratios[c % 5]);
        char what[200];
        describe(what, sizeof what, "fg_cuda_gqa", c, s);
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        float *out = fgi_dev_poisoned(in.nq), *ref = reference_gqa(&in, s);
        expect_ok(fg_cuda_gqa(out, in.dq, in.dk, in.dv, s.n_q, s.n_kv, s.q_len, s.kv_len, s.d, NULL),
                  what);
        expect_close_dev(out, ref, in.nq, what);
        fgi_dev_free(out), fgi_buf_free(ref), inputs_free(&in);
    }
}

/* fg_cuda_gqa_window on random shapes: windows from 1 to past kv_len,
 * whatever kernel the dispatcher picks. */
Test(cuda_attention, gqa_window_random_shapes)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(118);
    const int ratios[] = {1, 2, 4, 8, 0};
    for (int c = 0; c < n_cases(); c++) {
        const shape s = make_shape(&rng, c, ratios[c % 5]);
        const int window = fgi_rng_int(&rng, 1, s.kv_len + 3);
        char what[200];
        describe(what, sizeof what, "fg_cuda_gqa_window", c, s);
        snprintf(what + strlen(what), sizeof what - strlen(what), " window %d", window);
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        float *out = fgi_dev_poisoned(in.nq), *ref = reference_gqa_window(&in, s, window);
        expect_ok(fg_cuda_gqa_window(out, in.dq, in.dk, in.dv, s.n_q, s.n_kv, s.q_len, s.kv_len,
                                     s.d, window, NULL),
                  what);
        expect_close_dev(out, ref, in.nq, what);
        fgi_dev_free(out), fgi_buf_free(ref), inputs_free(&in);
    }
}

Test(cuda_attention, gqa_lse_matches_double_log_sum_exp)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(105);
    const int ratios[] = {4, 1, 8, 0, 2};
    for (int c = 0; c < n_cases(); c++) {
        const shape s = make_shape(&rng, c, ratios[c % 5]);
        char what[200], what_lse[220];
        describe(what, sizeof what, "fg_cuda_gqa_lse", c, s);
        snprintf(what_lse, sizeof what_lse, "%s lse", what);
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        const size_t n_rows = (size_t)s.n_q * s.q_len;
        float *out = fgi_dev_poisoned(in.nq), *lse = fgi_dev_poisoned(n_rows);
        float *ref = reference_gqa(&in, s), *ref_lse = reference_lse(&in, s);
        expect_ok(fg_cuda_gqa_lse(out, lse, in.dq, in.dk, in.dv, s.n_q, s.n_kv, s.q_len, s.kv_len,
                                  s.d, NULL),
                  what);
        expect_close_dev(out, ref, in.nq, what);
        expect_close_dev(lse, ref_lse, n_rows, what_lse);
        fgi_dev_free(out), fgi_dev_free(lse), fgi_buf_free(ref), fgi_buf_free(ref_lse);
        inputs_free(&in);
    }
}

/* Each kernel family that can serve a shape runs in one pass and with the
 * keys split across blocks; both must match the reference (output and
 * lse), and the split must really have happened. */
/* Runs one forced (kernel, splits) request into fresh poisoned outputs and
 * checks what ran, the output and the lse; `what` gets " lse" appended. */
static void run_forced(const inputs *in, shape s, fgi_attention_kernel kernel, int want,
                       int lanes, const float *ref, const float *ref_lse, char *what)
{
    const size_t n_rows = (size_t)s.n_q * s.q_len;
    float *out = fgi_dev_poisoned(in->nq), *lse = fgi_dev_poisoned(n_rows);
    fgi_attention_args a = contiguous_args(out, lse, in, s);
    fgi_attention_tuning t = {kernel, want, FGI_ATTENTION_AUTO, 0, lanes};
    expect_ok(run_tuned(&a, &t, NULL, 0), what);
    cr_assert_eq(t.used_kernel, kernel, "%s: ran kernel %d", what, (int)t.used_kernel);
    if (want == 1)
        cr_assert_eq(t.used_splits, 1, "%s: ran %d splits", what, t.used_splits);
    else if (s.kv_len > 64 && 2 * n_rows <= 16384)
        cr_assert(t.used_splits >= 2, "%s: ran %d splits", what, t.used_splits);
    expect_close_dev(out, ref, in->nq, what);
    strcat(what, " lse");
    expect_close_dev(lse, ref_lse, n_rows, what);
    fgi_dev_free(out), fgi_dev_free(lse);
}

Test(cuda_attention, split_kv_matches_one_pass_for_every_kernel)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(106);
    const int ratios[] = {1, 4, 0, 2, 8};
    for (int c = 0; c < n_cases(); c++) {
        const shape s = make_shape(&rng, c, ratios[c % 5]);
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        float *ref = reference_gqa(&in, s), *ref_lse = reference_lse(&in, s);
        const fgi_attention_kernel kernels[] = {FGI_ATTENTION_TILED, FGI_ATTENTION_DECODE,
                                                FGI_ATTENTION_GENERIC, FGI_ATTENTION_MMA};
        const int fast = s.d == 32 || s.d == 64 || s.d == 80 || s.d == 96 || s.d == 128 || s.d == 256;
        const int can[] = {fast, s.d % 4 == 0 && s.d <= 256, 1, fast && s.d != 256};
        for (int kk = 0; kk < 4; kk++) {
            if (!can[kk]) continue;
            for (int split = 0; split < 2; split++) {
                char what[260];
                describe(what, sizeof what, "split-KV", c, s);
                const int want = split ? fgi_rng_int(&rng, 2, 9) : 1;
                snprintf(what + strlen(what), sizeof what - strlen(what), " kernel %d, %d splits",
                         (int)kernels[kk], want);
                run_forced(&in, s, kernels[kk], want, 0, ref, ref_lse, what);
            }
        }
        fgi_buf_free(ref), fgi_buf_free(ref_lse), inputs_free(&in);
    }
}

/* The tensor-core (3xTF32) kernel forced on its head dims (32, 64, 80, 96,
 * 128) across the length patterns (q_len = 1, q_len = kv_len, a few extra
 * keys, kv_len >> q_len; lengths off the 64-row / 32- and 64-key tiles),
 * GQA ratios 1, 2, 4, 8 and MQA, one pass and forced splits, with lse: held
 * to the fp32 tolerances, which plain (1x) TF32 would miss by about 10x.
 * Prefill shapes (more than 16 rows per KV head) pick it by themselves. */
Test(cuda_attention, mma_kernel_random_shapes)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(113);
    const int ratios[] = {1, 2, 4, 8, 0};
    for (int c = 0; c < n_cases(); c++) {
        /* Case index whose head_dims entry is mma dim c % 5 (entries 0..4),
         * with the length pattern still cycling. */
        const int cm = (c / 5) * N_HEAD_DIMS + c % 5;
        const shape s = make_shape(&rng, cm, ratios[(c + c / 5) % 5]);
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        float *ref = reference_gqa(&in, s), *ref_lse = reference_lse(&in, s);
        for (int split = 0; split < 2; split++) {
            char what[260];
            describe(what, sizeof what, "mma", c, s);
            const int want = split ? fgi_rng_int(&rng, 2, 9) : 1;
            snprintf(what + strlen(what), sizeof what - strlen(what), ", %d splits", want);
            run_forced(&in, s, FGI_ATTENTION_MMA, want, 0, ref, ref_lse, what);
        }
        if ((long long)(s.n_q / s.n_kv) * s.q_len > 16) {
            char what[220];
            describe(what, sizeof what, "auto prefill", c, s);
            float *out = fgi_dev_poisoned(in.nq);
            fgi_attention_args a = contiguous_args(out, NULL, &in, s);
            fgi_attention_tuning t = {FGI_ATTENTION_AUTO, 0, FGI_ATTENTION_AUTO, 0, 0};
            expect_ok(run_tuned(&a, &t, NULL, 0), what);
            cr_assert_eq(t.used_kernel, FGI_ATTENTION_MMA, "%s: ran kernel %d", what,
                         (int)t.used_kernel);
            expect_close_dev(out, ref, in.nq, what);
            fgi_dev_free(out);
        }
        fgi_buf_free(ref), fgi_buf_free(ref_lse), inputs_free(&in);
    }
}

/* A length off both mma key tiles (32, 64) and the 64-row query tile. */
static int length_off_tiles(fgi_rng *r, int lo, int hi)
{
    int n = fgi_rng_int(r, lo, hi);
    while (n % 32 == 0) n = fgi_rng_int(r, lo, hi);
    return n;
}

/* The mma kernel with each key tile forced through block_size (32 -> 32,
 * 64 -> 64, and a random request: 0 is the default tile, below 32 the
 * smallest, otherwise the largest tile not above it) on every mma head_dim,
 * GQA, lengths off the tiles, one pass and forced splits (whose key ranges
 * are whole tiles), with lse. */
Test(cuda_attention, mma_kernel_every_key_tile)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(114);
    static const int mma_dims[] = {32, 64, 80, 96, 128};
    const int n = fgi_test_quick() ? 5 : 15;
    for (int c = 0; c < n; c++) {
        shape s;
        s.d = mma_dims[c % 5];
        s.n_kv = fgi_rng_int(&rng, 1, 2);
        s.n_q = s.n_kv * fgi_rng_int(&rng, 1, 3);
        s.q_len = length_off_tiles(&rng, 17, fgi_test_quick() ? 100 : 200);
        s.kv_len = s.q_len + length_off_tiles(&rng, 1, c % 2 ? 300 : 90);
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        const size_t n_rows = (size_t)s.n_q * s.q_len;
        float *ref = reference_gqa(&in, s), *ref_lse = reference_lse(&in, s);
        const int requests[] = {32, 64, c % 3 == 0 ? 0 : fgi_rng_int(&rng, 1, 130)};
        for (int r = 0; r < 3; r++) {
            const int want = r == (c % 3) ? fgi_rng_int(&rng, 2, 5) : 1;
            char what[260];
            describe(what, sizeof what, "mma key tile", c, s);
            snprintf(what + strlen(what), sizeof what - strlen(what), ", block_size %d, %d splits",
                     requests[r], want);
            float *out = fgi_dev_poisoned(in.nq), *lse = fgi_dev_poisoned(n_rows);
            fgi_attention_args a = contiguous_args(out, lse, &in, s);
            a.block_size = requests[r];
            fgi_attention_tuning t = {FGI_ATTENTION_MMA, want, FGI_ATTENTION_AUTO, 0, 0};
            expect_ok(run_tuned(&a, &t, NULL, 0), what);
            cr_assert_eq(t.used_kernel, FGI_ATTENTION_MMA, "%s: ran kernel %d", what,
                         (int)t.used_kernel);
            if (want == 1) cr_assert_eq(t.used_splits, 1, "%s: ran %d splits", what, t.used_splits);
            expect_close_dev(out, ref, in.nq, what);
            strcat(what, " lse");
            expect_close_dev(lse, ref_lse, n_rows, what);
            fgi_dev_free(out), fgi_dev_free(lse);
        }
        fgi_buf_free(ref), fgi_buf_free(ref_lse), inputs_free(&in);
    }
}

/* Long-context decode shapes pick the decode kernel and split the keys by
 * themselves when the KV heads alone would leave most of the GPU idle. */
Test(cuda_attention, decode_splits_automatically)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(107);
    char name[64];
    int sm_count = 0;
    size_t total = 0;
    cr_assert_eq(fg_cuda_device_info(name, sizeof name, &sm_count, &total), FG_OK, "%s",
                 fg_last_error());
    const int n = fgi_test_quick() ? 3 : 12;
    for (int c = 0; c < n; c++) {
        shape s;
        s.d = (const int[]){128, 64, 96, 256, 40, 8}[c % 6];
        s.n_kv = fgi_rng_int(&rng, 1, 2);
        s.n_q = s.n_kv * (const int[]){4, 1, 8, 2}[c % 4];
        s.q_len = fgi_rng_int(&rng, 1, 2);
        s.kv_len = fgi_test_quick() ? fgi_rng_int(&rng, 200, 600) : fgi_rng_int(&rng, 1500, 5000);
        char what[220];
        describe(what, sizeof what, "auto decode", c, s);
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        float *out = fgi_dev_poisoned(in.nq), *ref = reference_gqa(&in, s);
        fgi_attention_args a = contiguous_args(out, NULL, &in, s);
        fgi_attention_tuning t = {FGI_ATTENTION_AUTO, 0, FGI_ATTENTION_AUTO, 0, 0};
        expect_ok(run_tuned(&a, &t, NULL, 0), what);
        cr_assert_eq(t.used_kernel, FGI_ATTENTION_DECODE, "%s: ran kernel %d", what,
                     (int)t.used_kernel);
        /* blocks per split: KV heads x row chunks (at most 4 chunks here);
         * automatic decode splits keep at least 128 keys each */
        if (sm_count > 4 * s.n_kv && s.kv_len >= 256)
            cr_assert(t.used_splits >= 2, "%s: %d SMs but %d splits", what, sm_count, t.used_splits);
        expect_close_dev(out, ref, in.nq, what);
        fgi_dev_free(out), fgi_buf_free(ref), inputs_free(&in);
    }
}

/* Scores that climb along the keys (every query positive, every key
 * shifted up in proportion to its index): the decode kernel raises its
 * running maxima again and again inside each split, the path that random
 * scores take only near the start. Forced decode kernel with 8 and 16
 * lanes per key, one split and several, output and log-sum-exp against
 * the reference. */
Test(cuda_attention, decode_rising_scores)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(115);
    const int n = fgi_test_quick() ? 4 : 12;
    for (int c = 0; c < n; c++) {
        shape s;
        s.d = (const int[]){128, 64, 256, 80}[c % 4];
        s.n_kv = fgi_rng_int(&rng, 1, 2);
        s.n_q = s.n_kv * (const int[]){4, 8, 1, 2}[(c / 4 + c) % 4];
        s.q_len = fgi_rng_int(&rng, 1, 2);
        s.kv_len = fgi_rng_int(&rng, 300, fgi_test_quick() ? 700 : 2500);
        char what[240];
        describe(what, sizeof what, "rising decode", c, s);
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        /* score(j) - score(0) ~ rise * j natural-log units (q . 1 ~ 0.8 d):
         * 20-60 in all, several times the kernel's rescale slack (8 log2
         * units, 5.5 here) yet small enough that fp32 scores keep the
         * reference and the kernel within tolerance (docs/contract.md §32) of each other (at
         * |score| ~ 450 both drift apart by more than 1e-5). */
        const double rise = (20.0 + 40.0 * fgi_rng_uniform(&rng)) / s.kv_len;
        for (size_t e = 0; e < in.nq; e++) in.q[e] = fabsf(in.q[e]);
        for (int h = 0; h < s.n_kv; h++)
            for (int j = 0; j < s.kv_len; j++)
                for (int e = 0; e < s.d; e++)
                    in.k[((size_t)h * s.kv_len + j) * s.d + e] +=
                        (float)(rise * j / (0.8 * sqrt((double)s.d)));
        fgi_dev_free(in.dq), fgi_dev_free(in.dk);
        in.dq = fgi_dev_upload(in.q, in.nq);
        in.dk = fgi_dev_upload(in.k, in.nkv);
        float *ref = reference_gqa(&in, s), *ref_lse = reference_lse(&in, s);
        const size_t len = strlen(what);
        for (int lanes = 8; lanes <= 16; lanes += 8) {
            if (lanes == 8 && s.d > 128) continue; /* 16 lanes only there */
            for (int want = 1; want <= 8; want += 7) {
                snprintf(what + len, sizeof what - len, ", %d lanes per key, %d split(s)", lanes,
                         want);
                run_forced(&in, s, FGI_ATTENTION_DECODE, want, lanes, ref, ref_lse, what);
            }
        }
        fgi_buf_free(ref), fgi_buf_free(ref_lse), inputs_free(&in);
    }
}

/* The decoder's layout: q read from the fused (T, [q | k | v]) projection,
 * k and v from a (n_kv, capacity, d) cache holding more rows than kv_len,
 * output written into merged (T, n_q*d) columns, workspace from the caller
 * (sized by fgi_cuda_attention_workspace_bound). Inputs stay unchanged. */
Test(cuda_attention, strided_decoder_layout)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(108);
    const int ratios[] = {2, 1, 4, 0, 8};
    for (int c = 0; c < n_cases(); c++) {
        const shape s = make_shape(&rng, c, ratios[c % 5]);
        const int T = s.q_len, d = s.d, cap = s.kv_len + fgi_rng_int(&rng, 0, 40);
        const size_t width = (size_t)(s.n_q + 2 * s.n_kv) * d;
        const size_t n_proj = (size_t)T * width, n_cache = (size_t)s.n_kv * cap * d;
        const size_t n_out = (size_t)T * s.n_q * d, n_rows = (size_t)s.n_q * T;
        char what[220];
        describe(what, sizeof what, "strided", c, s);
        float *proj = fgi_buf_normal(&rng, n_proj, 1.0);
        float *kc = fgi_buf_normal(&rng, n_cache, 1.0), *vc = fgi_buf_normal(&rng, n_cache, 1.0);
        float *dproj = fgi_dev_upload(proj, n_proj), *dk = fgi_dev_upload(kc, n_cache);
        float *dv = fgi_dev_upload(vc, n_cache);
        float *out = fgi_dev_poisoned(n_out), *lse = fgi_dev_poisoned(n_rows);

        /* Contiguous copies for the reference, then merge its heads. */
        inputs in = {(size_t)s.n_q * T * d, (size_t)s.n_kv * s.kv_len * d, NULL, NULL, NULL,
                     NULL, NULL, NULL};
        in.q = fgi_buf_nan(in.nq), in.k = fgi_buf_nan(in.nkv), in.v = fgi_buf_nan(in.nkv);
        for (int h = 0; h < s.n_q; h++)
            for (int i = 0; i < T; i++)
                memcpy(in.q + ((size_t)h * T + i) * d, proj + (size_t)i * width + (size_t)h * d,
                       sizeof(float) * d);
        for (int g = 0; g < s.n_kv; g++) {
            memcpy(in.k + (size_t)g * s.kv_len * d, kc + (size_t)g * cap * d,
                   sizeof(float) * s.kv_len * d);
            memcpy(in.v + (size_t)g * s.kv_len * d, vc + (size_t)g * cap * d,
                   sizeof(float) * s.kv_len * d);
        }
        float *ref_heads = reference_gqa(&in, s), *ref_lse = reference_lse(&in, s);
        float *ref = fgi_buf_nan(n_out);
        for (int h = 0; h < s.n_q; h++)
            for (int i = 0; i < T; i++)
                memcpy(ref + ((size_t)i * s.n_q + h) * d, ref_heads + ((size_t)h * T + i) * d,
                       sizeof(float) * d);

        fgi_attention_args a;
        memset(&a, 0, sizeof a);
        a.out = out, a.out_head_stride = d, a.out_row_stride = (long long)s.n_q * d;
        a.lse = lse;
        a.q = dproj, a.q_head_stride = d, a.q_row_stride = (long long)width;
        a.k = dk, a.v = dv, a.kv_head_stride = (long long)cap * d;
        a.n_q_head = s.n_q, a.n_kv_head = s.n_kv, a.q_len = T, a.kv_len = s.kv_len;
        a.head_dim = d;
        a.block_size = c % 3 == 0 ? 0 : fgi_rng_int(&rng, 1, 80);
#ifdef FG_HAVE_CUDA
        const size_t ws_bytes = fgi_cuda_attention_workspace_bound(s.n_q, T, cap, d);
#else
        const size_t ws_bytes = 0;
#endif
        void *ws = NULL;
        if (ws_bytes > 0) { /* zero-filled once, as the workspace contract asks */
            cr_assert_eq(fg_cuda_malloc(&ws, ws_bytes), FG_OK);
            cr_assert_eq(fg_cuda_memset(ws, 0, ws_bytes), FG_OK);
        }
        /* Alternate automatic splits with a forced split into the workspace. */
        fgi_attention_tuning t = {FGI_ATTENTION_AUTO, c % 2 ? 0 : fgi_rng_int(&rng, 2, 6),
                                  FGI_ATTENTION_AUTO, 0, 0};
        expect_ok(run_tuned(&a, &t, ws, ws_bytes), what);
        expect_close_dev(out, ref, n_out, what);
        char what_lse[300];
        snprintf(what_lse, sizeof what_lse, "%s lse", what);
        expect_close_dev(lse, ref_lse, n_rows, what_lse);

        /* The same workspace again into fresh poisoned outputs: the decode
         * kernel's merge counters must have been left at zero. */
        float *out2 = fgi_dev_poisoned(n_out), *lse2 = fgi_dev_poisoned(n_rows);
        a.out = out2, a.lse = lse2;
        strcat(what, " (workspace reused)");
        expect_ok(run_tuned(&a, &t, ws, ws_bytes), what);
        expect_close_dev(out2, ref, n_out, what);
        strcat(what, " lse");
        expect_close_dev(lse2, ref_lse, n_rows, what);
        fgi_dev_free(out2), fgi_dev_free(lse2);

        float *proj_after = fgi_dev_download(dproj, n_proj), *k_after = fgi_dev_download(dk, n_cache);
        float *v_after = fgi_dev_download(dv, n_cache);
        fgi_assert_same(proj_after, proj, sizeof(float) * n_proj, "q|k|v projection after attention");
        fgi_assert_same(k_after, kc, sizeof(float) * n_cache, "k cache after attention");
        fgi_assert_same(v_after, vc, sizeof(float) * n_cache, "v cache after attention");
        fgi_buf_free(proj_after), fgi_buf_free(k_after), fgi_buf_free(v_after);

        if (ws) fgi_dev_free(ws);
        fgi_buf_free(ref), fgi_buf_free(ref_heads), fgi_buf_free(ref_lse);
        fgi_buf_free(in.q), fgi_buf_free(in.k), fgi_buf_free(in.v);
        fgi_buf_free(proj), fgi_buf_free(kc), fgi_buf_free(vc);
        fgi_dev_free(dproj), fgi_dev_free(dk), fgi_dev_free(dv), fgi_dev_free(out), fgi_dev_free(lse);
    }
}

/* Pointers one float off 16-byte alignment cannot use the vector kernels;
 * the result must not change. */
Test(cuda_attention, unaligned_pointers)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(109);
    const int n = fgi_test_quick() ? 4 : 12;
    for (int c = 0; c < n; c++) {
        shape s = make_shape(&rng, c, c % 2 ? 2 : 1);
        char what[200];
        describe(what, sizeof what, "unaligned", c, s);
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        float *ref = reference_gqa(&in, s);
        float *q1 = fgi_buf_nan(in.nq + 1), *k1 = fgi_buf_nan(in.nkv + 1), *v1 = fgi_buf_nan(in.nkv + 1);
        memcpy(q1 + 1, in.q, sizeof(float) * in.nq);
        memcpy(k1 + 1, in.k, sizeof(float) * in.nkv);
        memcpy(v1 + 1, in.v, sizeof(float) * in.nkv);
        float *dq = fgi_dev_upload(q1, in.nq + 1), *dk = fgi_dev_upload(k1, in.nkv + 1);
        float *dv = fgi_dev_upload(v1, in.nkv + 1), *out = fgi_dev_poisoned(in.nq + 1);
        expect_ok(fg_cuda_gqa(out + 1, dq + 1, dk + 1, dv + 1, s.n_q, s.n_kv, s.q_len, s.kv_len,
                              s.d, NULL),
                  what);
        expect_close_dev(out + 1, ref, in.nq, what);
        float *first = fgi_dev_download(out, 1);
        cr_assert(isnan(first[0]), "%s: wrote before the output", what);
        fgi_buf_free(first);
        fgi_buf_free(q1), fgi_buf_free(k1), fgi_buf_free(v1), fgi_buf_free(ref);
        fgi_dev_free(dq), fgi_dev_free(dk), fgi_dev_free(dv), fgi_dev_free(out);
        inputs_free(&in);
    }
}

/* Scores in the hundreds (exp would overflow without the running max):
 * every output row stays finite and inside the range of the values it
 * averages, and lse lies in [max score, max score + log(keys seen)]. */
Test(cuda_attention, large_scores_stay_finite)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(110);
    const int n = fgi_test_quick() ? 4 : 12;
    for (int c = 0; c < n; c++) {
        shape s = make_shape(&rng, c, c % 3 ? 4 : 1);
        char what[200];
        describe(what, sizeof what, "large scores", c, s);
        inputs in;
        inputs_make(&in, &rng, s, 12.0); /* scores ~ N(0, 144^2) */
        const size_t n_rows = (size_t)s.n_q * s.q_len;
        float *out = fgi_dev_poisoned(in.nq), *lse = fgi_dev_poisoned(n_rows);
        expect_ok(fg_cuda_gqa_lse(out, lse, in.dq, in.dk, in.dv, s.n_q, s.n_kv, s.q_len, s.kv_len,
                                  s.d, NULL),
                  what);
        float *got = fgi_dev_download(out, in.nq), *got_lse = fgi_dev_download(lse, n_rows);
        const int group = s.n_q / s.n_kv, shift = s.kv_len - s.q_len;
        const double scale = 1.0 / sqrt((double)s.d);
        for (int h = 0; h < s.n_q; h++)
            for (int i = 0; i < s.q_len; i++) {
                const float *q = in.q + ((size_t)h * s.q_len + i) * s.d;
                const size_t kv0 = (size_t)(h / group) * s.kv_len * s.d;
                double big = -INFINITY;
                for (int j = 0; j <= i + shift; j++) {
                    double dot = 0.0;
                    for (int e = 0; e < s.d; e++) dot += (double)q[e] * in.k[kv0 + (size_t)j * s.d + e];
                    if (dot * scale > big) big = dot * scale;
                }
                const double l = got_lse[(size_t)h * s.q_len + i];
                cr_assert(isfinite(l) && l >= big - 1e-5 * fabs(big) - 1e-3 &&
                              l <= big + log(i + shift + 1.0) + 1e-5 * fabs(big) + 1e-3,
                          "%s: lse of row (%d, %d) is %g, max score %g (seed %llu)", what, h, i, l,
                          big, (unsigned long long)fgi_test_seed());
                for (int e = 0; e < s.d; e++) {
                    double lo = INFINITY, hi = -INFINITY;
                    for (int j = 0; j <= i + shift; j++) {
                        const double x = in.v[kv0 + (size_t)j * s.d + e];
                        lo = x < lo ? x : lo, hi = x > hi ? x : hi;
                    }
                    const double o = got[((size_t)h * s.q_len + i) * s.d + e];
                    cr_assert(isfinite(o) && o >= lo - 1e-5 && o <= hi + 1e-5,
                              "%s: out (%d, %d, %d) = %g outside [%g, %g] (seed %llu)", what, h, i,
                              e, o, lo, hi, (unsigned long long)fgi_test_seed());
                }
            }
        fgi_buf_free(got), fgi_buf_free(got_lse);
        fgi_dev_free(out), fgi_dev_free(lse), inputs_free(&in);
    }
}

/* Argument checking ---------------------------------------------------------- */

Test(cuda_attention, bad_arguments_are_refused)
{
    /* Host buffers: a refused call must never dereference them. */
    static float q[64], k[64], v[64], out[64], lse[16];
    fgi_expect_refused(fg_cuda_attention(NULL, q, k, v, 2, 2, 4, NULL), "'out' is NULL");
    fgi_expect_refused(fg_cuda_attention(out, NULL, k, v, 2, 2, 4, NULL), "'q' is NULL");
    fgi_expect_refused(fg_cuda_attention(out, q, NULL, v, 2, 2, 4, NULL), "'k' is NULL");
    fgi_expect_refused(fg_cuda_attention(out, q, k, NULL, 2, 2, 4, NULL), "'v' is NULL");
    fgi_expect_refused(fg_cuda_attention(out, q, k, v, 0, 2, 4, NULL), "'q_len'");
    fgi_expect_refused(fg_cuda_attention(out, q, k, v, 3, 2, 4, NULL), "'kv_len' must be >= q_len");
    fgi_expect_refused(fg_cuda_attention(out, q, k, v, 2, 2, 0, NULL), "'head_dim'");
    fgi_expect_refused(fg_cuda_attention(out, q, k, v, 1 << 30, 1 << 30, 1 << 30, NULL), "overflow");
    fgi_expect_refused(fg_cuda_attention(q, q, k, v, 2, 2, 4, NULL), "overlap");
    fgi_expect_refused(fg_cuda_attention(out, q, k, out + 4, 2, 2, 4, NULL), "overlap");
    fgi_expect_refused(fg_cuda_attention_flash(out, q, k, v, 2, 2, 4, 0, NULL), "'block_size'");
    fgi_expect_refused(fg_cuda_attention_flash(out, q, k, v, 2, 2, 4, -3, NULL), "'block_size'");
    fgi_expect_refused(fg_cuda_attention_flash(out, q, k, v, 2, 1, 4, 8, NULL), "'kv_len'");
    fgi_expect_refused(fg_cuda_mha(out, q, k, v, 0, 2, 2, 4, NULL), "'n_q_head'");
    fgi_expect_refused(fg_cuda_mha(out, q, k, v, 2, 2, 2, -1, NULL), "'head_dim'");
    fgi_expect_refused(fg_cuda_gqa(out, q, k, v, 3, 2, 2, 2, 4, NULL), "multiple of n_kv_head");
    fgi_expect_refused(fg_cuda_gqa(out, q, k, v, 2, 0, 2, 2, 4, NULL), "'n_kv_head'");
    fgi_expect_refused(fg_cuda_gqa_lse(out, NULL, q, k, v, 2, 1, 2, 2, 4, NULL), "'lse' is NULL");
    fgi_expect_refused(fg_cuda_gqa_lse(out, out + 2, q, k, v, 2, 1, 2, 2, 4, NULL), "overlap");
    fgi_expect_refused(fg_cuda_gqa_lse(out, q + 1, q, k, v, 2, 1, 2, 2, 4, NULL), "overlap");
    fgi_expect_refused(fg_cuda_gqa_lse(out, lse, q, k, v, 2, 1, 3, 2, 4, NULL), "'kv_len'");
    fgi_expect_refused(fg_cuda_gqa_window(out, q, k, v, 2, 1, 2, 2, 4, -1, NULL), "'window'");
    fgi_expect_refused(fg_cuda_gqa_window(out, q, k, v, 3, 2, 2, 2, 4, 1, NULL), "multiple");
}

/* Valid arguments on a machine without a GPU: a clear error, not a crash. */
Test(cuda_attention, no_device_is_a_clear_error)
{
    if (fg_cuda_available()) cr_skip_test("a GPU is present: this checks the no-GPU path");
    static float q[64], k[64], v[64], out[64], lse[16];
    fgi_expect_no_device(fg_cuda_gqa_lse(out, lse, q, k, v, 2, 1, 2, 3, 4, NULL));
    for (int i = 0; i < 64; i++) cr_assert(out[i] == 0.0f, "output written without a device");
}

/* On the device, a refused call leaves the output exactly as it was. */
Test(cuda_attention, refused_calls_write_nothing)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(111);
    const shape s = {4, 2, 5, 9, 64};
    inputs in;
    inputs_make(&in, &rng, s, 1.0);
    float *before = fgi_buf_normal(&rng, in.nq, 1.0), *before_lse = fgi_buf_normal(&rng, 20, 1.0);
    float *out = fgi_dev_upload(before, in.nq), *lse = fgi_dev_upload(before_lse, 20);
    fgi_assert_status(fg_cuda_gqa_lse(out, lse, in.dq, in.dk, in.dv, 4, 2, 5, 4, 64, NULL),
                     FG_ERR_INVALID_ARG, "'kv_len'");
    fgi_assert_status(fg_cuda_gqa_lse(out, lse, in.dq, in.dk, in.dv, 4, 3, 5, 9, 64, NULL),
                     FG_ERR_INVALID_ARG, "multiple");
    fgi_assert_status(fg_cuda_attention_flash(out, in.dq, in.dk, in.dv, 5, 9, 64, 0, NULL),
                     FG_ERR_INVALID_ARG, "'block_size'");
    fgi_assert_status(fg_cuda_mha(out, in.dq, in.dk, out, 2, 5, 9, 64, NULL), FG_ERR_INVALID_ARG,
                     "overlap");
    cr_assert_eq(fg_cuda_synchronize(NULL), FG_OK);
    float *after = fgi_dev_download(out, in.nq), *after_lse = fgi_dev_download(lse, 20);
    fgi_assert_same(after, before, sizeof(float) * in.nq, "output after refused calls");
    fgi_assert_same(after_lse, before_lse, sizeof(float) * 20, "lse after refused calls");
    fgi_buf_free(before), fgi_buf_free(before_lse), fgi_buf_free(after), fgi_buf_free(after_lse);
    fgi_dev_free(out), fgi_dev_free(lse), inputs_free(&in);
}

/* A kernel that cannot serve the arguments is refused, not run. */
/* Lanes-per-key requests the decode kernel has no instantiation for, or
 * made of another kernel, are refused before anything is written. */
Test(cuda_attention, decode_lanes_request_that_cannot_serve_is_unsupported)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(116);
    const struct {
        shape s;
        fgi_attention_kernel kernel;
        int lanes;
    } bad[] = {
        {{4, 1, 1, 40, 256}, FGI_ATTENTION_DECODE, 8}, /* 8 lanes: head_dim <= 128 only */
        {{4, 1, 1, 40, 64}, FGI_ATTENTION_DECODE, 12},
        {{4, 1, 1, 40, 64}, FGI_ATTENTION_DECODE, 32},
        {{2, 2, 40, 40, 64}, FGI_ATTENTION_MMA, 16}, /* not a decode kernel */
    };
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        char what[200];
        describe(what, sizeof what, "lanes request", (int)c, bad[c].s);
        inputs in;
        inputs_make(&in, &rng, bad[c].s, 1.0);
        float *out = fgi_dev_poisoned(in.nq);
        fgi_attention_args a = contiguous_args(out, NULL, &in, bad[c].s);
        fgi_attention_tuning t = {bad[c].kernel, 0, FGI_ATTENTION_AUTO, 0, bad[c].lanes};
        cr_log_info("%s: %d lanes per key", what, bad[c].lanes);
        fgi_assert_status(run_tuned(&a, &t, NULL, 0), FG_ERR_UNSUPPORTED, "lanes per key");
        cr_assert_eq(fg_cuda_synchronize(NULL), FG_OK);
        float *got = fgi_dev_download(out, in.nq);
        for (size_t i = 0; i < in.nq; i++) cr_assert(isnan(got[i]), "%s: wrote output", what);
        fgi_buf_free(got), fgi_dev_free(out), inputs_free(&in);
    }
}

Test(cuda_attention, forced_kernel_that_cannot_serve_is_unsupported)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(112);
    const shape s = {2, 1, 3, 7, 17}; /* head_dim 17: neither tiled nor decode */
    inputs in;
    inputs_make(&in, &rng, s, 1.0);
    float *out = fgi_dev_poisoned(in.nq);
    fgi_attention_args a = contiguous_args(out, NULL, &in, s);
    fgi_attention_tuning t = {FGI_ATTENTION_TILED, 0, FGI_ATTENTION_AUTO, 0, 0};
    fgi_assert_status(run_tuned(&a, &t, NULL, 0), FG_ERR_UNSUPPORTED, "head_dim 17");
    t.kernel = FGI_ATTENTION_DECODE;
    fgi_assert_status(run_tuned(&a, &t, NULL, 0), FG_ERR_UNSUPPORTED, "head_dim 17");
    t.kernel = FGI_ATTENTION_MMA;
    fgi_assert_status(run_tuned(&a, &t, NULL, 0), FG_ERR_UNSUPPORTED, "head_dim 17");
    cr_assert_eq(fg_cuda_synchronize(NULL), FG_OK);
    float *got = fgi_dev_download(out, in.nq);
    for (size_t i = 0; i < in.nq; i++) cr_assert(isnan(got[i]), "refused kernel wrote output");
    fgi_buf_free(got), fgi_dev_free(out), inputs_free(&in);
}

/* Causal diagonal, deterministically: a kernel that skips or masks a key
 * tile by testing "wholly above the diagonal" one key off is wrong only when
 * the causal shift (kv_len - q_len) is two less than a multiple of the key
 * tile (one key either side it is invisible), so random shapes hit it by
 * chance. Every forced kernel with every key tile it has (tiled 16, 32, 64;
 * mma 32, 64; decode's 16-key ring stage and 32-key split granule; generic's
 * 32-key chunk) runs shifts tile-2, tile-1, tile, tile+1 and 2*tile-2, with
 * a few query rows (3) and with rows on both sides of the 64-row query tile
 * edge (66), in one pass and in three splits (whose edges are whole tiles
 * too). Cheap shapes (head_dim 32, two query heads on one KV head) keep the
 * emulated quick run short; the sweep is the same in quick and full mode. */
Test(cuda_attention, causal_diagonal_sweep_every_kernel_and_tile)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(117);
    static const struct {
        fgi_attention_kernel kernel;
        int tile; /* key tile (block_size request) or the kernel's key granule */
        int block_size;
    } configs[] = {
        {FGI_ATTENTION_TILED, 16, 16}, {FGI_ATTENTION_TILED, 32, 32},
        {FGI_ATTENTION_TILED, 64, 64}, {FGI_ATTENTION_MMA, 32, 32},
        {FGI_ATTENTION_MMA, 64, 64},   {FGI_ATTENTION_DECODE, 16, 0},
        {FGI_ATTENTION_DECODE, 32, 0}, {FGI_ATTENTION_GENERIC, 32, 0},
    };
    static const int q_lens[] = {3, 66};
    for (size_t ci = 0; ci < sizeof configs / sizeof configs[0]; ci++) {
        const int T = configs[ci].tile;
        const int shifts[] = {T - 2, T - 1, T, T + 1, 2 * T - 2};
        for (int si = 0; si < 5; si++)
            for (int qi = 0; qi < 2; qi++) {
                shape s = {2, 1, q_lens[qi], q_lens[qi] + shifts[si], 32};
                inputs in;
                inputs_make(&in, &rng, s, 1.0);
                float *ref = reference_gqa(&in, s), *ref_lse = reference_lse(&in, s);
                for (int split = 0; split < 2; split++) {
                    const int want = split ? 3 : 1;
                    char what[260];
                    describe(what, sizeof what, "causal diagonal", (int)ci, s);
                    snprintf(what + strlen(what), sizeof what - strlen(what),
                             " kernel %d, tile %d, shift %d, %d splits",
                             (int)configs[ci].kernel, T, shifts[si], want);
                    const size_t n_rows = (size_t)s.n_q * s.q_len;
                    float *out = fgi_dev_poisoned(in.nq), *lse = fgi_dev_poisoned(n_rows);
                    fgi_attention_args a = contiguous_args(out, lse, &in, s);
                    a.block_size = configs[ci].block_size;
                    fgi_attention_tuning t = {configs[ci].kernel, want, FGI_ATTENTION_AUTO, 0, 0};
                    expect_ok(run_tuned(&a, &t, NULL, 0), what);
                    cr_assert_eq(t.used_kernel, configs[ci].kernel, "%s: ran kernel %d", what,
                                 (int)t.used_kernel);
                    if (want == 1)
                        cr_assert_eq(t.used_splits, 1, "%s: ran %d splits", what, t.used_splits);
                    expect_close_dev(out, ref, in.nq, what);
                    strcat(what, " lse");
                    expect_close_dev(lse, ref_lse, n_rows, what);
                    fgi_dev_free(out), fgi_dev_free(lse);
                }
                fgi_buf_free(ref), fgi_buf_free(ref_lse), inputs_free(&in);
            }
    }
}

/* The decode kernel with a window much shorter than kv_len: its split plan
 * shares out only the keys the window reaches (window + q_len - 1, plus 15
 * for its first key rounded down to a 16-key stage), not kv_len, so the
 * split count is bounded by the window: automatic (128-key minimum per
 * split) and forced (32-key granule). Output and lse against the window's
 * reference. */
Test(cuda_attention, decode_short_window_splits_are_bounded_by_the_window)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(127);
    static const int windows[] = {1, 20, 64, 150};
    for (int c = 0; c < (fgi_test_quick() ? 4 : 8); c++) {
        const int n_kv = 1 + c % 2;
        shape s = {2 * n_kv, n_kv, 1 + c % 3, fgi_test_quick() ? 2048 : 8192, c % 2 ? 64 : 128};
        const int window = windows[c % 4];
        inputs in;
        inputs_make(&in, &rng, s, 1.0);
        float *ref = reference_gqa_window(&in, s, window);
        float *ref_lse = reference_lse_window(&in, s, window);
        const long long reach = (long long)window + s.q_len - 1 + 15;
        const int keys = reach < s.kv_len ? (int)reach : s.kv_len;
        for (int forced = 0; forced < 2; forced++) {
            const int want = forced ? 64 : 0;
            const int bound = forced ? (keys + 31) / 32 : keys / 128 > 1 ? keys / 128 : 1;
            char what[260];
            describe(what, sizeof what, "decode short window", c, s);
            snprintf(what + strlen(what), sizeof what - strlen(what), " window %d, %s", window,
                     forced ? "64 splits asked" : "automatic");
            const size_t n_rows = (size_t)s.n_q * s.q_len;
            float *out = fgi_dev_poisoned(in.nq), *lse = fgi_dev_poisoned(n_rows);
            fgi_attention_args a = contiguous_args(out, lse, &in, s);
            a.window = window;
            fgi_attention_tuning t = {FGI_ATTENTION_DECODE, want, FGI_ATTENTION_AUTO, 0, 0};
            expect_ok(run_tuned(&a, &t, NULL, 0), what);
            cr_assert_eq(t.used_kernel, FGI_ATTENTION_DECODE, "%s: ran kernel %d", what,
                         (int)t.used_kernel);
            cr_assert(t.used_splits >= 1 && t.used_splits <= bound,
                      "%s: %d splits, at most %d expected", what, t.used_splits, bound);
            expect_close_dev(out, ref, in.nq, what);
            strcat(what, " lse");
            expect_close_dev(lse, ref_lse, n_rows, what);
            fgi_dev_free(out), fgi_dev_free(lse);
        }
        fgi_buf_free(ref), fgi_buf_free(ref_lse), inputs_free(&in);
    }
}

/* The sliding window's lower edge, deterministically, like the causal
 * diagonal above: every forced kernel and key tile runs windows tile-2,
 * tile-1, tile, tile+1 and 2*tile-2, each at two causal shifts (tile-2 and
 * 2*tile+1, so that the window cuts keys), with 3 query rows and with 66
 * (whose lower edges then cross every key tile edge of the range, and the
 * 64-row query tile edge), in one pass and in three splits (split edges
 * are whole tiles, so the edge meets them too). Output and lse against the
 * double-precision reference of the window. */
Test(cuda_attention, window_edge_sweep_every_kernel_and_tile)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(119);
    static const struct {
        fgi_attention_kernel kernel;
        int tile; /* key tile (block_size request) or the kernel's key granule */
        int block_size;
    } configs[] = {
        {FGI_ATTENTION_TILED, 16, 16}, {FGI_ATTENTION_TILED, 32, 32},
        {FGI_ATTENTION_TILED, 64, 64}, {FGI_ATTENTION_MMA, 32, 32},
        {FGI_ATTENTION_MMA, 64, 64},   {FGI_ATTENTION_DECODE, 16, 0},
        {FGI_ATTENTION_DECODE, 32, 0}, {FGI_ATTENTION_GENERIC, 32, 0},
    };
    static const int q_lens[] = {3, 66};
    for (size_t ci = 0; ci < sizeof configs / sizeof configs[0]; ci++) {
        const int T = configs[ci].tile;
        const int windows[] = {T - 2, T - 1, T, T + 1, 2 * T - 2}, shifts[] = {T - 2, 2 * T + 1};
        for (int wi = 0; wi < 5; wi++)
            for (int si = 0; si < 2; si++)
                for (int qi = 0; qi < 2; qi++) {
                    shape s = {2, 1, q_lens[qi], q_lens[qi] + shifts[si], 32};
                    const int window = windows[wi];
                    inputs in;
                    inputs_make(&in, &rng, s, 1.0);
                    float *ref = reference_gqa_window(&in, s, window);
                    float *ref_lse = reference_lse_window(&in, s, window);
                    for (int split = 0; split < 2; split++) {
                        const int want = split ? 3 : 1;
                        char what[260];
                        describe(what, sizeof what, "window edge", (int)ci, s);
                        snprintf(what + strlen(what), sizeof what - strlen(what),
                                 " kernel %d, tile %d, window %d, %d splits",
                                 (int)configs[ci].kernel, T, window, want);
                        const size_t n_rows = (size_t)s.n_q * s.q_len;
                        float *out = fgi_dev_poisoned(in.nq), *lse = fgi_dev_poisoned(n_rows);
                        fgi_attention_args a = contiguous_args(out, lse, &in, s);
                        a.block_size = configs[ci].block_size;
                        a.window = window;
                        fgi_attention_tuning t = {configs[ci].kernel, want, FGI_ATTENTION_AUTO, 0,
                                                  0};
                        expect_ok(run_tuned(&a, &t, NULL, 0), what);
                        cr_assert_eq(t.used_kernel, configs[ci].kernel, "%s: ran kernel %d",
                                     what, (int)t.used_kernel);
                        if (want == 1)
                            cr_assert_eq(t.used_splits, 1, "%s: ran %d splits", what,
                                         t.used_splits);
                        expect_close_dev(out, ref, in.nq, what);
                        strcat(what, " lse");
                        expect_close_dev(lse, ref_lse, n_rows, what);
                        fgi_dev_free(out), fgi_dev_free(lse);
                    }
                    fgi_buf_free(ref), fgi_buf_free(ref_lse), inputs_free(&in);
                }
    }
}
