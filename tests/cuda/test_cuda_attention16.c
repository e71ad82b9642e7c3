/* 16-bit GPU attention (fg_cuda_*_typed with bf16 / f16, the tensor-core
 * kernel cuda/attention/attention_mma16.cu) under the 16-bit rule
 * (docs/contract.md §32): inputs drawn in fp32 and rounded to the type; the
 * exact reference is fg_ref_gqa on the widened inputs, the naive one
 * fg_ref_gqa_naive16; lse (fp32) against the log-sum-exp in double with the
 * fp32 tolerances.
 *
 * Families (each case in both types): single head, flash with block sizes,
 * MHA, GQA/MQA, GQA with lse; >= 50 random shapes each in full mode (every
 * head_dim 32..256, q_len 1 to past the 64-row query tile, kv_len from
 * q_len to q_len + 3000), fewer and smaller with FG_TEST_QUICK=1 (the
 * emulated mma is slow). A deterministic causal-shift sweep around the key
 * tiles (64 keys; 32 at head_dim 256) and the 64-row query tile; sliding
 * windows through the internal entry; f32 through _typed is the fp32
 * function bit for bit; argument checks. Outputs are NaN-poisoned 16-bit
 * buffers followed by a guard region. */
#include "attention_shapes.h"
#include "gpu_support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* lse: the fp32 tolerances of docs/contract.md §32 (it is an fp32 result
 * of exact 16-bit products). */
#define LSE_ATOL 1e-4
#define LSE_RTOL 1e-4
#define LSE_REL_L2 1e-5

static const fg_dtype dtypes[] = {FG_DTYPE_BF16, FG_DTYPE_F16};
static const int head_dims[] = {32, 64, 80, 96, 128, 256};
#define N_HEAD_DIMS ((int)(sizeof head_dims / sizeof head_dims[0]))
/* around the 64-row query tile and the 32 / 64-key tiles */
static const int lengths[] = {1, 2, 3, 17, 31, 33, 63, 64, 65, 127, 129, 200};
#define N_LENGTHS ((int)(sizeof lengths / sizeof lengths[0]))

static int n_cases(void) { return fgi_test_quick() ? 4 : 50; }

/* Bound on n_q * q_len * kv_len * head_dim per case (the references and,
 * emulated, the mma work). */
static double case_budget(void) { return fgi_test_quick() ? 4e5 : 3e7; }

typedef fgi_attention_shape shape;

/* Nonzero: the sm_90a kernel's head dims only (64, 128 alternating). */
static int sm90_dims_only = 0;

/* Case c of a family (tests/support/attention_shapes.h): this file's head
 * dims (or the sm_90a kernel's) and lengths, ratio query heads per KV head
 * (0: MQA, 2..6 query heads), within case_budget. */
static shape make_shape(fgi_rng *r, int c, int ratio)
{
    static const int sm90_dims[] = {64, 128};
    const fgi_attention_space space = {sm90_dims_only ? sm90_dims : head_dims,
                                       sm90_dims_only ? 2 : N_HEAD_DIMS, lengths, N_LENGTHS, 6,
                                       case_budget()};
    return fgi_attention_make_shape(r, c, ratio, &space);
}

static void describe(char *buf, size_t len, const char *family, int c, shape s, fg_dtype dt)
{
    snprintf(buf, len,
             "%s %s case %d (n_q_head %d, n_kv_head %d, q_len %d, kv_len %d, head_dim %d)",
             family, fg_dtype_name(dt), c, s.n_q, s.n_kv, s.q_len, s.kv_len, s.d);
}

/* Floats that hold n 16-bit elements. */
static size_t floats_for(size_t n) { return (n + 1) / 2; }

/* Device copy of n 16-bit elements (fgi_dev_upload: guard after it). */
static void *upload16(fg_dtype dt, const float *values, size_t n)
{
    float *packed = fgi_buf_nan(floats_for(n));
    cr_assert_eq(fg_dtype_from_f32(dt, packed, values, n), FG_OK, "%s", fg_last_error());
    void *dev = fgi_dev_upload(packed, floats_for(n));
    fgi_buf_free(packed);
    return dev;
}

/* n 16-bit elements of all-ones bits (NaN in bf16 and f16; an odd n leaves
 * one poisoned element before the guard, checked by download16). */
static void *poisoned16(size_t n)
{
    float *bits = fgi_buf_nan(floats_for(n));
    memset(bits, 0xff, sizeof(float) * floats_for(n));
    void *dev = fgi_dev_upload(bits, floats_for(n));
    fgi_buf_free(bits);
    return dev;
}

/* Guard intact (and the pad element of an odd n untouched); the n elements
 * widened to float. */
static float *download16(fg_dtype dt, const void *dev, size_t n, const char *what)
{
    fgi_dev_assert_guard(dev, floats_for(n), what);
    float *packed = fgi_dev_download(dev, floats_for(n));
    if (n % 2) {
        uint16_t pad;
        memcpy(&pad, (const char *)packed + 2 * n, sizeof pad);
        cr_assert(pad == 0xffffu, "%s: wrote past the output (seed %llu)", what,
                  (unsigned long long)fgi_test_seed());
    }
    float *got = fgi_buf_nan(n);
    cr_assert_eq(fg_dtype_to_f32(dt, got, packed, n), FG_OK, "%s", fg_last_error());
    fgi_buf_free(packed);
    return got;
}

/* Inputs: q (n_q, q_len, d), k, v (n_kv, kv_len, d), drawn in fp32, rounded
 * to dt; host floats hold the rounded values. */
typedef struct {
    fg_dtype dt;
    size_t nq, nkv;
    float *q, *k, *v;
    void *dq, *dk, *dv;
} inputs;

static void round_in_place(fg_dtype dt, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = fg_dtype_round(dt, x[i]);
}

static void inputs_make(inputs *in, fgi_rng *r, shape s, fg_dtype dt, double scale)
{
    in->dt = dt;
    in->nq = (size_t)s.n_q * s.q_len * s.d;
    in->nkv = (size_t)s.n_kv * s.kv_len * s.d;
    in->q = fgi_buf_normal(r, in->nq, scale);
    in->k = fgi_buf_normal(r, in->nkv, scale);
    in->v = fgi_buf_normal(r, in->nkv, 1.0);
    round_in_place(dt, in->q, in->nq);
    round_in_place(dt, in->k, in->nkv);
    round_in_place(dt, in->v, in->nkv);
    in->dq = upload16(dt, in->q, in->nq);
    in->dk = upload16(dt, in->k, in->nkv);
    in->dv = upload16(dt, in->v, in->nkv);
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

/* Exact and naive references, and the rule. */
static void expect_rule(const inputs *in, shape s, const void *dev_out, const char *what)
{
    float *exact = fgi_buf_nan(in->nq), *naive = fgi_buf_nan(in->nq);
    cr_assert_eq(fg_ref_gqa(exact, in->q, in->k, in->v, s.n_q, s.n_kv, s.q_len, s.kv_len, s.d),
                 FG_OK, "%s", fg_last_error());
    cr_assert_eq(fg_ref_gqa_naive16(in->dt, naive, in->q, in->k, in->v, s.n_q, s.n_kv, s.q_len,
                                    s.kv_len, s.d),
                 FG_OK, "%s", fg_last_error());
    float *got = download16(in->dt, dev_out, in->nq, what);
    fgi_assert_16bit_rule(in->dt, got, exact, naive, in->nq, what);
    fgi_buf_free(got), fgi_buf_free(exact), fgi_buf_free(naive);
}

/* Attention with an optional sliding window (0: none), one query row, in
 * double (exact) or rounded to dt at every op boundary as
 * fg_ref_gqa_naive16 does (naive). Also the row's natural-log lse. */
static void window_row(const inputs *in, shape s, int window, int naive, int h, int i,
                       float *out, float *lse, double *p)
{
    const int group = s.n_q / s.n_kv, d = s.d;
    const int last = i + s.kv_len - s.q_len;
    const int first = window > 0 && last - window + 1 > 0 ? last - window + 1 : 0;
    const float *q = in->q + ((size_t)h * s.q_len + i) * d;
    const float *k = in->k + (size_t)(h / group) * s.kv_len * d;
    const float *v = in->v + (size_t)(h / group) * s.kv_len * d;
    const double scale = 1.0 / sqrt((double)d);
    double big = -INFINITY, sum = 0.0;
    for (int j = first; j <= last; j++) {
        double dot = 0.0;
        if (naive) {
            float acc = 0.0f;
            for (int c = 0; c < d; c++) acc += q[c] * k[(size_t)j * d + c];
            dot = fg_dtype_round(in->dt, fg_dtype_round(in->dt, acc) * (float)scale);
        } else {
            for (int c = 0; c < d; c++) dot += (double)q[c] * k[(size_t)j * d + c];
            dot *= scale;
        }
        p[j] = dot;
        big = dot > big ? dot : big;
    }
    for (int j = first; j <= last; j++) sum += (p[j] = exp(p[j] - big));
    if (lse) *lse = (float)(big + log(sum));
    for (int j = first; j <= last; j++)
        p[j] = naive ? fg_dtype_round(in->dt, (float)(p[j] / sum)) : p[j] / sum;
    for (int c = 0; c < d; c++) {
        double acc = 0.0;
        for (int j = first; j <= last; j++) acc += p[j] * v[(size_t)j * d + c];
        out[c] = naive ? fg_dtype_round(in->dt, (float)acc) : (float)acc;
    }
}

/* (n_q, q_len, d) outputs and (n_q, q_len) lse (may be NULL) of window_row. */
static void window_ref(const inputs *in, shape s, int window, int naive, float *out, float *lse)
{
    double *p = malloc(sizeof(double) * (size_t)s.kv_len);
    cr_assert(p != NULL);
    for (int h = 0; h < s.n_q; h++)
        for (int i = 0; i < s.q_len; i++)
            window_row(in, s, window, naive, h, i, out + ((size_t)h * s.q_len + i) * s.d,
                       lse ? lse + (size_t)h * s.q_len + i : NULL, p);
    free(p);
}

static void expect_lse(const inputs *in, shape s, int window, const float *dev_lse,
                       const char *what)
{
    const size_t rows = (size_t)s.n_q * s.q_len;
    float *ref = fgi_buf_nan(rows), *scratch = fgi_buf_nan(in->nq);
    window_ref(in, s, window, 0, scratch, ref);
    char w[300];
    snprintf(w, sizeof w, "%s lse", what);
    fgi_dev_assert_guard(dev_lse, rows, w);
    float *got = fgi_dev_download(dev_lse, rows);
    fgi_assert_close(got, ref, rows, LSE_ATOL, LSE_RTOL, LSE_REL_L2, w);
    fgi_buf_free(got), fgi_buf_free(ref), fgi_buf_free(scratch);
}

/* The internal entry (strides of contiguous tensors) with a window. */
static fg_status run_internal(const inputs *in, shape s, void *out, float *lse, int window)
{
#ifdef FG_HAVE_CUDA
    fgi_attention16_args a;
    memset(&a, 0, sizeof a);
    a.dtype = in->dt;
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
    a.window = window;
    return fgi_cuda_attention16("test", &a, NULL);
#else
    (void)in, (void)s, (void)out, (void)lse, (void)window;
    return FG_ERR_UNSUPPORTED;
#endif
}

/* Families ------------------------------------------------------------------ */

typedef enum { FAM_SINGLE, FAM_FLASH, FAM_MHA, FAM_GQA, FAM_LSE } family;

/* n cases of a family; scale: the spread of q and k (scores ~ scale^2). */
static void run_family_n(family fam, unsigned seed, const char *name, int n, double scale)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(seed);
    const int ratios[] = {1, 2, 4, 8, 0};
    for (int c = 0; c < n; c++) {
        shape s = make_shape(&rng, c, fam == FAM_GQA || fam == FAM_LSE ? ratios[c % 5] : 1);
        if (fam == FAM_SINGLE || fam == FAM_FLASH) s.n_q = s.n_kv = 1;
        const int block = fgi_rng_int(&rng, 1, 130);
        for (int ti = 0; ti < 2; ti++) {
            const fg_dtype dt = dtypes[ti];
            char what[260];
            describe(what, sizeof what, name, c, s, dt);
            if (fam == FAM_FLASH)
                snprintf(what + strlen(what), sizeof what - strlen(what), " block_size %d", block);
            inputs in;
            inputs_make(&in, &rng, s, dt, scale);
            const size_t rows = (size_t)s.n_q * s.q_len;
            void *out = poisoned16(in.nq);
            float *lse = fam == FAM_LSE ? fgi_dev_poisoned(rows) : NULL;
            fg_status st;
            switch (fam) {
            case FAM_SINGLE:
                st = fg_cuda_attention_typed(dt, out, in.dq, in.dk, in.dv, s.q_len, s.kv_len, s.d,
                                             NULL);
                break;
            case FAM_FLASH:
                st = fg_cuda_attention_flash_typed(dt, out, in.dq, in.dk, in.dv, s.q_len,
                                                   s.kv_len, s.d, block, NULL);
                break;
            case FAM_MHA:
                st = fg_cuda_mha_typed(dt, out, in.dq, in.dk, in.dv, s.n_q, s.q_len, s.kv_len, s.d,
                                       NULL);
                break;
            case FAM_GQA:
                st = fg_cuda_gqa_typed(dt, out, in.dq, in.dk, in.dv, s.n_q, s.n_kv, s.q_len,
                                       s.kv_len, s.d, NULL);
                break;
            default:
                st = fg_cuda_gqa_lse_typed(dt, out, lse, in.dq, in.dk, in.dv, s.n_q, s.n_kv,
                                           s.q_len, s.kv_len, s.d, NULL);
                break;
            }
            expect_ok(st, what);
            expect_rule(&in, s, out, what);
            if (lse) expect_lse(&in, s, 0, lse, what);
            fgi_dev_free(out), fgi_dev_free(lse), inputs_free(&in);
        }
    }
}

static void run_family(family fam, unsigned seed, const char *name)
{
    run_family_n(fam, seed, name, n_cases(), 1.0);
}

Test(cuda_attention16, single_head_random_shapes) { run_family(FAM_SINGLE, 201, "attention"); }
Test(cuda_attention16, flash_random_block_sizes) { run_family(FAM_FLASH, 202, "flash"); }
Test(cuda_attention16, mha_random_shapes) { run_family(FAM_MHA, 203, "mha"); }
Test(cuda_attention16, gqa_and_mqa_random_shapes) { run_family(FAM_GQA, 204, "gqa"); }
Test(cuda_attention16, gqa_lse_random_shapes) { run_family(FAM_LSE, 205, "gqa_lse"); }

/* The kernels forced (fgi_attention16_set_kernel): the sm_80 kernel on
 * every head_dim (on Hopper, and in the emulator, which reports 9.0, the
 * automatic choice sends 64 and 128 to the sm_90a kernel), and the sm_90a
 * kernel (attention_sm90.cu: 128-row query blocks, 128-key tiles) on the
 * same families at head_dim 64 and 128, where the device runs it (it
 * skips elsewhere: a card without sm_90a).
 * force_kernel: 0 automatic, 1 sm_80, 2 sm_90a; returns 0 where the sm_90a
 * kernel was asked for and cannot run here, or the run pins the sm_80
 * kernel (FG_ATTENTION16_KERNEL=sm80: scripts/gpu-check sets it when its
 * first probe of the sm_90a kernel on a card fails or hangs). */
static int force_kernel(int which)
{
#ifdef FG_HAVE_CUDA
    fgi_attention16_set_kernel(which);
    const char *pin = getenv("FG_ATTENTION16_KERNEL");
    if (which == 2 && pin != NULL && strcmp(pin, "sm80") == 0) return 0;
    return which != 2 || fgi_attention16_pick(64) == 2;
#else
    (void)which;
    return 1;
#endif
}

Test(cuda_attention16, sm80_kernel_forced)
{
    fgi_require_gpu();
    force_kernel(1);
    run_family(FAM_MHA, 221, "sm80 mha");
    run_family(FAM_LSE, 222, "sm80 gqa_lse");
    force_kernel(0);
}

Test(cuda_attention16, sm90_kernel_random_shapes)
{
    fgi_require_gpu();
    if (!force_kernel(2)) {
        force_kernel(0);
        cr_skip_test("the sm_90a kernel cannot run here (no sm_90a device or code) or "
                     "FG_ATTENTION16_KERNEL=sm80 pins the sm_80 kernel");
    }
    sm90_dims_only = 1;
    run_family(FAM_SINGLE, 231, "sm90 attention");
    run_family(FAM_MHA, 232, "sm90 mha");
    run_family(FAM_GQA, 233, "sm90 gqa");
    run_family(FAM_LSE, 234, "sm90 gqa_lse");
    run_family_n(FAM_LSE, 235, "sm90 large scores", fgi_test_quick() ? 2 : 12, 5.0);
    sm90_dims_only = 0;
    force_kernel(0);
}

/* The automatic pick's self-check (fgi_attention16_sm90_trusted): on a
 * device that runs the sm_90a kernel (the emulator reports 9.0), the first
 * automatic call at a (dtype, head_dim) compares the two kernels; they
 * agree here, and the call then ran the sm_90a kernel (its output is not
 * the sm_80 kernel's, bit for bit, on this shape). With the Hopper output
 * perturbed in the comparison the verdict is a disagreement, and automatic
 * calls give the sm_80 kernel's bits. */
Test(cuda_attention16, sm90_self_check_guards_the_automatic_pick)
{
    fgi_require_gpu();
#ifdef FG_HAVE_CUDA
    if (!force_kernel(2)) {
        force_kernel(0);
        cr_skip_test("the automatic pick never takes the sm_90a kernel here (no sm_90a device "
                     "or code, or FG_ATTENTION16_KERNEL=sm80)");
    }
    fgi_rng rng = fgi_rng_make(240);
    const shape s = {2, 1, 150, 230, 64};
    for (int di = 0; di < 2; di++) {
        const fg_dtype dt = dtypes[di];
        char what[96];
        snprintf(what, sizeof what, "%s self-check", fg_dtype_name(dt));
        inputs in;
        inputs_make(&in, &rng, s, dt, 1.0);
        const size_t bytes = in.nq;
        void *o80 = poisoned16(bytes), *o90 = poisoned16(bytes), *oauto = poisoned16(bytes);
        force_kernel(1);
        expect_ok(run_internal(&in, s, o80, NULL, 0), what);
        force_kernel(2);
        expect_ok(run_internal(&in, s, o90, NULL, 0), what);
        float *r80 = download16(dt, o80, bytes, what), *r90 = download16(dt, o90, bytes, what);
        /* the two kernels sum in different orders: their bits tell which ran */
        cr_assert(memcmp(r80, r90, sizeof(float) * bytes) != 0,
                  "%s: the kernels gave the same bits; the test cannot tell them apart", what);

        force_kernel(0);
        fgi_attention16_selfcheck_reset(0.0);
        double rel = -1.0;
        cr_assert_eq(fgi_attention16_selfcheck_state(dt, 64, &rel), 0, "%s: not run yet", what);
        expect_ok(run_internal(&in, s, oauto, NULL, 0), what);
        cr_assert_eq(fgi_attention16_selfcheck_state(dt, 64, &rel), 1,
                     "%s: the kernels disagreed (relative L2 %g)", what, rel);
        cr_assert(rel >= 0.0 && rel <= 2e-2, "%s: relative L2 %g", what, rel);
        float *ra = download16(dt, oauto, bytes, what);
        fgi_assert_same(ra, r90, sizeof(float) * bytes, "trusted: the sm_90a kernel ran");
        fgi_buf_free(ra);

        fgi_attention16_selfcheck_reset(1.0); /* the Hopper output off by 1 in the check */
        expect_ok(run_internal(&in, s, oauto, NULL, 0), what);
        cr_assert_eq(fgi_attention16_selfcheck_state(dt, 64, &rel), -1,
                     "%s: a perturbed Hopper output passed (relative L2 %g)", what, rel);
        cr_assert(rel > 2e-2, "%s: relative L2 %g", what, rel);
        ra = download16(dt, oauto, bytes, what);
        fgi_assert_same(ra, r80, sizeof(float) * bytes, "distrusted: the sm_80 kernel ran");
        cr_assert_eq(fgi_attention16_selfcheck_state(dt, 128, NULL), 0,
                     "%s: head_dim 128 has its own verdict", what);
        fgi_buf_free(ra);
        fgi_attention16_selfcheck_reset(0.0);
        fgi_buf_free(r80), fgi_buf_free(r90);
        fgi_dev_free(o80), fgi_dev_free(o90), fgi_dev_free(oauto);
        inputs_free(&in);
    }
#endif
}

/* Scores in the tens (q, k ~ N(0, 5^2): exp would overflow without the
 * running max; a single key often takes almost all the weight), with lse. */
Test(cuda_attention16, large_scores_with_lse)
{
    run_family_n(FAM_LSE, 212, "large scores", fgi_test_quick() ? 2 : 12, 5.0);
}

/* Causal diagonal, deterministically: a tile skip or mask one key off is
 * wrong only when the shift (kv_len - q_len) sits at a key tile edge, so
 * shifts tile-2, tile-1, tile, tile+1, 2 tile-2 for both key tiles (64 at
 * head_dim 64, 32 at 256) and the sm_90a kernel's 128 (head_dim 64, 128;
 * whichever kernel the device picks runs them), query rows on one side (3)
 * and both sides (63, 66; 127, 130) of the query tile; GQA (two query heads on one KV head), with
 * lse. The same in quick and full mode. */
Test(cuda_attention16, causal_diagonal_sweep_around_tiles)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(206);
    static const struct {
        int d, tile;
    } configs[] = {{64, 64}, {256, 32}, {64, 128}, {128, 128}}; /* 128: the sm_90a tiles */
    for (size_t ci = 0; ci < sizeof configs / sizeof configs[0]; ci++) {
        const int T = configs[ci].tile;
        /* around the 64-row query tile (sm_80), the 128-row block (sm_90a) */
        const int q_lens[] = {3, T == 128 ? 127 : 63, T == 128 ? 130 : 66};
        const int shifts[] = {T - 2, T - 1, T, T + 1, 2 * T - 2};
        for (int si = 0; si < 5; si++)
            for (int qi = 0; qi < 3; qi++) {
                const fg_dtype dt = dtypes[(si + qi) % 2];
                const shape s = {2, 1, q_lens[qi], q_lens[qi] + shifts[si], configs[ci].d};
                char what[260];
                describe(what, sizeof what, "causal diagonal", (int)ci, s, dt);
                snprintf(what + strlen(what), sizeof what - strlen(what), " key tile %d, shift %d",
                         T, shifts[si]);
                inputs in;
                inputs_make(&in, &rng, s, dt, 1.0);
                void *out = poisoned16(in.nq);
                float *lse = fgi_dev_poisoned((size_t)s.n_q * s.q_len);
                expect_ok(fg_cuda_gqa_lse_typed(dt, out, lse, in.dq, in.dk, in.dv, s.n_q, s.n_kv,
                                                s.q_len, s.kv_len, s.d, NULL),
                          what);
                expect_rule(&in, s, out, what);
                expect_lse(&in, s, 0, lse, what);
                fgi_dev_free(out), fgi_dev_free(lse), inputs_free(&in);
            }
    }
}

/* Sliding windows (internal entry; the public API gains the window
 * elsewhere): windows below, at and above the key tile (1, tile - 1, tile,
 * tile + 1, random) so that tiles wholly before the window are skipped and
 * the window edge crosses tiles; GQA; against window references in double
 * and naive 16-bit; lse. */
Test(cuda_attention16, sliding_window)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(207);
    const int n = fgi_test_quick() ? 4 : 20;
    for (int c = 0; c < n; c++) {
        shape s;
        s.d = c % 2 ? 64 : head_dims[c % N_HEAD_DIMS];
        s.n_kv = fgi_rng_int(&rng, 1, 2);
        s.n_q = s.n_kv * fgi_rng_int(&rng, 1, 2);
        s.q_len = fgi_rng_int(&rng, 1, fgi_test_quick() ? 70 : 150);
        s.kv_len = s.q_len + fgi_rng_int(&rng, 0, fgi_test_quick() ? 60 : 300);
        const int T = s.d > 128 ? 32 : 64;
        const int windows[] = {1, T - 1, T, T + 1, fgi_rng_int(&rng, 2, 3 * T)};
        const int window = windows[c % 5];
        const fg_dtype dt = dtypes[c % 2];
        char what[260];
        describe(what, sizeof what, "window", c, s, dt);
        snprintf(what + strlen(what), sizeof what - strlen(what), " window %d", window);
        inputs in;
        inputs_make(&in, &rng, s, dt, 1.0);
        const size_t rows = (size_t)s.n_q * s.q_len;
        void *out = poisoned16(in.nq);
        float *lse = fgi_dev_poisoned(rows);
        expect_ok(run_internal(&in, s, out, lse, window), what);
        float *exact = fgi_buf_nan(in.nq), *naive = fgi_buf_nan(in.nq);
        window_ref(&in, s, window, 0, exact, NULL);
        window_ref(&in, s, window, 1, naive, NULL);
        float *got = download16(dt, out, in.nq, what);
        fgi_assert_16bit_rule(dt, got, exact, naive, in.nq, what);
        expect_lse(&in, s, window, lse, what);
        fgi_buf_free(got), fgi_buf_free(exact), fgi_buf_free(naive);
        fgi_dev_free(out), fgi_dev_free(lse), inputs_free(&in);
    }
}

/* The decoder's layout through the internal entry: q read out of a fused
 * q|k|v projection (row stride (n_q + 2 n_kv) d, head stride d), K/V in a
 * cache with room for more keys (head stride capacity d), each head
 * written into its columns of a merged (q_len, n_q d) output; head_dim 64
 * (Q in registers) and 256 (Q parked in shared memory), both types. */
Test(cuda_attention16, strided_decoder_layout)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(211);
    const int n = fgi_test_quick() ? 2 : 8;
    for (int c = 0; c < n; c++) {
        shape s;
        s.d = c % 2 ? 256 : 64;
        s.n_kv = fgi_rng_int(&rng, 1, 2);
        s.n_q = s.n_kv * fgi_rng_int(&rng, 1, 3);
        s.q_len = fgi_rng_int(&rng, 1, fgi_test_quick() ? 40 : 130);
        s.kv_len = s.q_len + fgi_rng_int(&rng, 0, 40);
        const fg_dtype dt = dtypes[(c / 2) % 2];
        const int capacity = s.kv_len + fgi_rng_int(&rng, 1, 20);
        const int width = (s.n_q + 2 * s.n_kv) * s.d; /* fused projection row */
        char what[260];
        describe(what, sizeof what, "strided", c, s, dt);
        inputs in;
        inputs_make(&in, &rng, s, dt, 1.0);
        /* host images of the strided buffers: NaN outside the used parts */
        const size_t n_proj = (size_t)s.q_len * width, n_cache = (size_t)s.n_kv * capacity * s.d;
        float *proj = fgi_buf_nan(n_proj), *kc = fgi_buf_nan(n_cache), *vc = fgi_buf_nan(n_cache);
        for (int h = 0; h < s.n_q; h++)
            for (int i = 0; i < s.q_len; i++)
                memcpy(proj + (size_t)i * width + (size_t)h * s.d,
                       in.q + ((size_t)h * s.q_len + i) * s.d, sizeof(float) * s.d);
        for (int g = 0; g < s.n_kv; g++) {
            memcpy(kc + (size_t)g * capacity * s.d, in.k + (size_t)g * s.kv_len * s.d,
                   sizeof(float) * s.kv_len * s.d);
            memcpy(vc + (size_t)g * capacity * s.d, in.v + (size_t)g * s.kv_len * s.d,
                   sizeof(float) * s.kv_len * s.d);
        }
        void *dproj = upload16(dt, proj, n_proj), *dk = upload16(dt, kc, n_cache);
        void *dv = upload16(dt, vc, n_cache), *out = poisoned16(in.nq);
        float *lse = fgi_dev_poisoned((size_t)s.n_q * s.q_len);
#ifdef FG_HAVE_CUDA
        fgi_attention16_args a;
        memset(&a, 0, sizeof a);
        a.dtype = dt;
        a.out = out, a.out_head_stride = s.d, a.out_row_stride = (long long)s.n_q * s.d;
        a.lse = lse;
        a.q = dproj, a.q_head_stride = s.d, a.q_row_stride = width;
        a.k = dk, a.v = dv, a.kv_head_stride = (long long)capacity * s.d;
        a.n_q_head = s.n_q, a.n_kv_head = s.n_kv, a.q_len = s.q_len, a.kv_len = s.kv_len;
        a.head_dim = s.d;
        expect_ok(fgi_cuda_attention16("test", &a, NULL), what);
#endif
        /* merged (q_len, n_q, d) back to (n_q, q_len, d) */
        float *merged = download16(dt, out, in.nq, what), *got = fgi_buf_nan(in.nq);
        for (int h = 0; h < s.n_q; h++)
            for (int i = 0; i < s.q_len; i++)
                memcpy(got + ((size_t)h * s.q_len + i) * s.d,
                       merged + ((size_t)i * s.n_q + h) * s.d, sizeof(float) * s.d);
        float *exact = fgi_buf_nan(in.nq), *naive = fgi_buf_nan(in.nq);
        cr_assert_eq(fg_ref_gqa(exact, in.q, in.k, in.v, s.n_q, s.n_kv, s.q_len, s.kv_len, s.d),
                     FG_OK);
        cr_assert_eq(fg_ref_gqa_naive16(dt, naive, in.q, in.k, in.v, s.n_q, s.n_kv, s.q_len,
                                        s.kv_len, s.d),
                     FG_OK);
        fgi_assert_16bit_rule(dt, got, exact, naive, in.nq, what);
        expect_lse(&in, s, 0, lse, what);
        fgi_buf_free(proj), fgi_buf_free(kc), fgi_buf_free(vc), fgi_buf_free(merged);
        fgi_buf_free(got), fgi_buf_free(exact), fgi_buf_free(naive);
        fgi_dev_free(dproj), fgi_dev_free(dk), fgi_dev_free(dv), fgi_dev_free(out);
        fgi_dev_free(lse), inputs_free(&in);
    }
}

/* The window's reference itself: with window >= kv_len it is plain causal
 * attention, equal to fg_ref_gqa (so the window tests stand on the same
 * ground as the others). CPU only. */
Test(cuda_attention16, window_reference_without_window_is_fg_ref_gqa)
{
    fgi_rng rng = fgi_rng_make(208);
    const shape s = {4, 2, 9, 20, 16};
    inputs in;
    memset(&in, 0, sizeof in);
    in.dt = FG_DTYPE_BF16;
    in.nq = (size_t)s.n_q * s.q_len * s.d;
    in.nkv = (size_t)s.n_kv * s.kv_len * s.d;
    in.q = fgi_buf_normal(&rng, in.nq, 1.0);
    in.k = fgi_buf_normal(&rng, in.nkv, 1.0);
    in.v = fgi_buf_normal(&rng, in.nkv, 1.0);
    float *a = fgi_buf_nan(in.nq), *b = fgi_buf_nan(in.nq), *c = fgi_buf_nan(in.nq);
    window_ref(&in, s, 0, 0, a, NULL);
    window_ref(&in, s, s.kv_len, 0, b, NULL);
    cr_assert_eq(fg_ref_gqa(c, in.q, in.k, in.v, s.n_q, s.n_kv, s.q_len, s.kv_len, s.d), FG_OK);
    fgi_assert_close(a, c, in.nq, 1e-6, 1e-6, 1e-7, "window 0 vs fg_ref_gqa");
    fgi_assert_close(b, c, in.nq, 1e-6, 1e-6, 1e-7, "window kv_len vs fg_ref_gqa");
    window_ref(&in, s, 0, 1, a, NULL);
    cr_assert_eq(fg_ref_gqa_naive16(in.dt, c, in.q, in.k, in.v, s.n_q, s.n_kv, s.q_len, s.kv_len,
                                    s.d),
                 FG_OK);
    fgi_assert_close(a, c, in.nq, 1e-2, 1e-2, 1e-2, "naive window 0 vs fg_ref_gqa_naive16");
    fgi_buf_free(a), fgi_buf_free(b), fgi_buf_free(c);
    fgi_buf_free(in.q), fgi_buf_free(in.k), fgi_buf_free(in.v);
}

/* FG_DTYPE_F32 through every _typed function is the fp32 function: the
 * same bits. */
Test(cuda_attention16, f32_typed_is_the_fp32_function)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(209);
    const int n = fgi_test_quick() ? 2 : 6;
    for (int c = 0; c < n; c++) {
        shape s = make_shape(&rng, c, 2);
        const size_t nq = (size_t)s.n_q * s.q_len * s.d, nkv = (size_t)s.n_kv * s.kv_len * s.d;
        const size_t rows = (size_t)s.n_q * s.q_len;
        float *q = fgi_buf_normal(&rng, nq, 1.0), *k = fgi_buf_normal(&rng, nkv, 1.0);
        float *v = fgi_buf_normal(&rng, nkv, 1.0);
        float *dq = fgi_dev_upload(q, nq), *dk = fgi_dev_upload(k, nkv), *dv = fgi_dev_upload(v, nkv);
        float *o1 = fgi_dev_poisoned(nq), *o2 = fgi_dev_poisoned(nq);
        float *l1 = fgi_dev_poisoned(rows), *l2 = fgi_dev_poisoned(rows);
        char what[260];
        describe(what, sizeof what, "f32 typed", c, s, FG_DTYPE_F32);
        for (int f = 0; f < 5; f++) {
            fg_status a, b;
            switch (f) {
            case 0:
                a = fg_cuda_attention(o1, dq, dk, dv, s.q_len, s.kv_len, s.d, NULL);
                b = fg_cuda_attention_typed(FG_DTYPE_F32, o2, dq, dk, dv, s.q_len, s.kv_len, s.d,
                                            NULL);
                break;
            case 1:
                a = fg_cuda_attention_flash(o1, dq, dk, dv, s.q_len, s.kv_len, s.d, 32, NULL);
                b = fg_cuda_attention_flash_typed(FG_DTYPE_F32, o2, dq, dk, dv, s.q_len, s.kv_len,
                                                  s.d, 32, NULL);
                break;
            case 2:
                a = fg_cuda_mha(o1, dq, dk, dv, s.n_kv, s.q_len, s.kv_len, s.d, NULL);
                b = fg_cuda_mha_typed(FG_DTYPE_F32, o2, dq, dk, dv, s.n_kv, s.q_len, s.kv_len, s.d,
                                      NULL);
                break;
            case 3:
                a = fg_cuda_gqa(o1, dq, dk, dv, s.n_q, s.n_kv, s.q_len, s.kv_len, s.d, NULL);
                b = fg_cuda_gqa_typed(FG_DTYPE_F32, o2, dq, dk, dv, s.n_q, s.n_kv, s.q_len,
                                      s.kv_len, s.d, NULL);
                break;
            default:
                a = fg_cuda_gqa_lse(o1, l1, dq, dk, dv, s.n_q, s.n_kv, s.q_len, s.kv_len, s.d, NULL);
                b = fg_cuda_gqa_lse_typed(FG_DTYPE_F32, o2, l2, dq, dk, dv, s.n_q, s.n_kv, s.q_len,
                                          s.kv_len, s.d, NULL);
                break;
            }
            expect_ok(a, what);
            expect_ok(b, what);
            /* single-head forms write only the first head */
            const size_t n_out = f < 2 ? (size_t)s.q_len * s.d : f == 2 ? nq / 2 : nq;
            float *g1 = fgi_dev_download(o1, n_out), *g2 = fgi_dev_download(o2, n_out);
            fgi_assert_same(g2, g1, sizeof(float) * n_out, what);
            fgi_buf_free(g1), fgi_buf_free(g2);
            if (f == 4) {
                g1 = fgi_dev_download(l1, rows), g2 = fgi_dev_download(l2, rows);
                fgi_assert_same(g2, g1, sizeof(float) * rows, what);
                fgi_buf_free(g1), fgi_buf_free(g2);
            }
        }
        fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v);
        fgi_dev_free(dq), fgi_dev_free(dk), fgi_dev_free(dv);
        fgi_dev_free(o1), fgi_dev_free(o2), fgi_dev_free(l1), fgi_dev_free(l2);
    }
}

/* Argument checking ---------------------------------------------------------- */

Test(cuda_attention16, bad_arguments_are_refused)
{
    /* Host buffers: a refused call must never dereference them. */
    static _Alignas(16) uint16_t q[64], k[64], v[64], out[64];
    static float lse[16];
    const fg_dtype bf = FG_DTYPE_BF16, h = FG_DTYPE_F16;
    fgi_expect_refused(fg_cuda_attention_typed((fg_dtype)7, out, q, k, v, 2, 2, 8, NULL), "dtype");
    fgi_expect_refused(fg_cuda_gqa_typed((fg_dtype)-1, out, q, k, v, 2, 1, 2, 2, 8, NULL), "dtype");
    fgi_expect_refused(fg_cuda_attention_typed(bf, NULL, q, k, v, 2, 2, 8, NULL), "'out' is NULL");
    fgi_expect_refused(fg_cuda_attention_typed(h, out, NULL, k, v, 2, 2, 8, NULL), "'q' is NULL");
    fgi_expect_refused(fg_cuda_attention_typed(bf, out, q, NULL, v, 2, 2, 8, NULL), "'k' is NULL");
    fgi_expect_refused(fg_cuda_attention_typed(h, out, q, k, NULL, 2, 2, 8, NULL), "'v' is NULL");
    fgi_expect_refused(fg_cuda_attention_typed(bf, out, q, k, v, 0, 2, 8, NULL), "'q_len'");
    fgi_expect_refused(fg_cuda_attention_typed(h, out, q, k, v, 3, 2, 8, NULL),
                       "'kv_len' must be >= q_len");
    fgi_expect_refused(fg_cuda_attention_typed(bf, out, q, k, v, 2, 2, 0, NULL), "'head_dim'");
    fgi_expect_refused(fg_cuda_attention_typed(h, out, q, k, v, 1 << 30, 1 << 30, 1 << 30, NULL),
                       "overflow");
    /* overlaps measured in 2-byte elements: out 16 elements, q right after
     * them is fine, one element earlier overlaps */
    fgi_expect_refused(fg_cuda_attention_typed(bf, out, out + 15, k, v, 2, 2, 8, NULL), "overlap");
    fgi_expect_refused(fg_cuda_attention_typed(h, out + 16, q, k, out + 31, 2, 2, 8, NULL),
                       "overlap");
    fgi_expect_refused(fg_cuda_attention_flash_typed(bf, out, q, k, v, 2, 2, 8, 0, NULL),
                       "'block_size'");
    fgi_expect_refused(fg_cuda_attention_flash_typed(h, out, q, k, v, 2, 1, 8, 8, NULL), "'kv_len'");
    fgi_expect_refused(fg_cuda_mha_typed(bf, out, q, k, v, 0, 2, 2, 8, NULL), "'n_q_head'");
    fgi_expect_refused(fg_cuda_mha_typed(h, out, q, k, v, 2, 2, 2, -1, NULL), "'head_dim'");
    fgi_expect_refused(fg_cuda_gqa_typed(bf, out, q, k, v, 3, 2, 2, 2, 8, NULL),
                       "multiple of n_kv_head");
    fgi_expect_refused(fg_cuda_gqa_typed(h, out, q, k, v, 2, 0, 2, 2, 8, NULL), "'n_kv_head'");
    fgi_expect_refused(fg_cuda_gqa_lse_typed(bf, out, NULL, q, k, v, 2, 1, 2, 2, 8, NULL),
                       "'lse' is NULL");
    fgi_expect_refused(fg_cuda_gqa_lse_typed(h, out, (float *)(out + 30), q, k, v, 2, 1, 2, 2, 8,
                                             NULL),
                       "overlap");
    fgi_expect_refused(fg_cuda_gqa_lse_typed(bf, out, (float *)(q + 2), q, k, v, 2, 1, 2, 2, 8,
                                             NULL),
                       "overlap");
    fgi_expect_refused(fg_cuda_gqa_lse_typed(h, out, lse, q, k, v, 2, 1, 3, 2, 8, NULL), "'kv_len'");
    /* f32 through _typed keeps the fp32 checks (4-byte elements) */
    fgi_expect_refused(fg_cuda_attention_typed(FG_DTYPE_F32, out, out + 30, k, v, 2, 2, 8, NULL),
                       "overlap");
}

/* Valid arguments on a machine without a GPU: a clear error, not a crash. */
Test(cuda_attention16, no_device_is_a_clear_error)
{
    if (fg_cuda_available()) cr_skip_test("a GPU is present: this checks the no-GPU path");
    /* head_dim 32: a shape the 16-bit kernel serves */
    static _Alignas(16) uint16_t q[128], k[128], v[128], out[128];
    static float lse[16];
    fgi_expect_no_device(fg_cuda_gqa_lse_typed(FG_DTYPE_BF16, out, lse, q, k, v, 2, 1, 2, 3, 32,
                                               NULL));
    for (int i = 0; i < 128; i++) cr_assert(out[i] == 0, "output written without a device");
}

/* On the device: refused and unsupported calls (head_dim without a 16-bit
 * kernel, misaligned tensors) leave the output exactly as it was. */
Test(cuda_attention16, refused_and_unsupported_calls_write_nothing)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(210);
    const shape s = {4, 2, 5, 9, 64};
    inputs in;
    inputs_make(&in, &rng, s, FG_DTYPE_BF16, 1.0);
    void *out = poisoned16(in.nq + 8);
    float *lse = fgi_dev_poisoned(20);
    const fg_dtype bf = FG_DTYPE_BF16;
    fgi_assert_status(fg_cuda_gqa_lse_typed(bf, out, lse, in.dq, in.dk, in.dv, 4, 2, 5, 4, 64, NULL),
                      FG_ERR_INVALID_ARG, "'kv_len'");
    fgi_assert_status(fg_cuda_gqa_lse_typed(bf, out, lse, in.dq, in.dk, in.dv, 4, 3, 5, 9, 64, NULL),
                      FG_ERR_INVALID_ARG, "multiple");
    /* head_dim 40 (no 16-bit kernel; the sizes fit the buffers) */
    fgi_assert_status(fg_cuda_gqa_lse_typed(bf, out, lse, in.dq, in.dk, in.dv, 4, 2, 5, 9, 40, NULL),
                      FG_ERR_UNSUPPORTED, "head_dim 40");
    /* out one element (2 bytes) off 16-byte alignment */
    fgi_assert_status(fg_cuda_gqa_typed(FG_DTYPE_F16, (uint16_t *)out + 1, in.dq, in.dk, in.dv, 4,
                                        2, 5, 9, 64, NULL),
                      FG_ERR_UNSUPPORTED, "aligned");
    cr_assert_eq(fg_cuda_synchronize(NULL), FG_OK);
    float *after = fgi_dev_download(out, floats_for(in.nq + 8));
    for (size_t i = 0; i < floats_for(in.nq + 8); i++) {
        uint32_t bits;
        memcpy(&bits, &after[i], sizeof bits);
        cr_assert(bits == 0xffffffffu, "output written by a refused call at %zu", i);
    }
    float *after_lse = fgi_dev_download(lse, 20);
    for (int i = 0; i < 20; i++) cr_assert(isnan(after_lse[i]), "lse written by a refused call");
    fgi_buf_free(after), fgi_buf_free(after_lse);
    fgi_dev_free(out), fgi_dev_free(lse), inputs_free(&in);
}
