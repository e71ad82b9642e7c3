/* Paged prefill attention (issue 15): the prefill kernels reading K and V
 * through a block table (fgi_attention_args / fgi_attention16_args
 * .block_table), as the batched GPU forward's prompt chunks do: fp32 (the
 * 3xTF32 mma kernel, fgi_cuda_attention) and bf16 / f16 (the mma16 kernel,
 * fgi_cuda_attention16).
 *
 * Every case builds a pool of shuffled blocks (the table's ids in random
 * order, spare blocks and every unused slot NaN, so that a wrong block or
 * slot poisons the row), scatters the keys and values of a contiguous
 * cache into it and holds the paged result
 *  - without a window, to the contiguous kernel's bit for bit (the same
 *    key tiles from key 0, unsplit);
 *  - to the reference: fp32 within the tolerance of docs/contract.md §32,
 *    16-bit under the 16-bit rule (exact and naive window references);
 *  - cut into 1-3 chunks of query rows (each with its own key count, as
 *    the scheduler cuts a prompt), every row the same bits as in one
 *    launch: a row's result depends on its own keys only.
 * >= 50 random shapes per type (every head_dim of the kernel, GQA / MQA,
 * windows, block sizes 16 .. 64 and odd ones); FG_TEST_QUICK=1 fewer and
 * smaller. Outputs are NaN-poisoned buffers with a guard after them. */
#include "gpu_support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATOL 1e-4
#define RTOL 1e-4
#define REL_L2 1e-5

typedef struct {
    int n_q, n_kv, q_len, kv_len, d, window, bs, key_tile;
} pshape;

static int n_cases(void) { return fgi_test_quick() ? 6 : 50; }

static void expect_ok(fg_status st, const char *what)
{
    cr_assert(st == FG_OK, "%s: %s: %s (seed %llu)", what, fg_status_str(st), fg_last_error(),
              (unsigned long long)fgi_test_seed());
    st = fg_cuda_synchronize(NULL);
    cr_assert(st == FG_OK, "%s: synchronize: %s (seed %llu)", what, fg_last_error(),
              (unsigned long long)fgi_test_seed());
}

static pshape make_pshape(fgi_rng *r, fg_dtype dt, int c)
{
    static const int d32[] = {32, 64, 80, 96, 128};
    static const int d16[] = {32, 64, 80, 96, 128, 256};
    static const int sizes[] = {16, 32, 64, 16, 48, 8, 5};
    pshape s;
    s.d = dt == FG_DTYPE_F32 ? d32[c % 5] : d16[c % 6];
    const int group = fgi_rng_int(r, 1, 3);
    s.n_kv = fgi_rng_int(r, 1, 2);
    s.n_q = s.n_kv * (fgi_rng_int(r, 0, 3) == 0 ? 1 : group);
    const int quick = fgi_test_quick();
    s.q_len = fgi_rng_int(r, 1, quick ? 70 : 150);
    s.kv_len = s.q_len + (fgi_rng_int(r, 0, 2) == 0 ? 0 : fgi_rng_int(r, 1, quick ? 90 : 400));
    s.window = fgi_rng_int(r, 0, 2) == 0 ? fgi_rng_int(r, 1, s.kv_len + 10) : 0;
    s.bs = sizes[fgi_rng_int(r, 0, 6)];
    s.key_tile = fgi_rng_int(r, 0, 1) ? 32 : 64;
    return s;
}

static void describe(char *buf, size_t len, int c, pshape s, fg_dtype dt)
{
    snprintf(buf, len,
             "paged %s case %d: n_q %d n_kv %d q_len %d kv_len %d d %d window %d block %d "
             "tile %d",
             fg_dtype_name(dt), c, s.n_q, s.n_kv, s.q_len, s.kv_len, s.d, s.window, s.bs,
             s.key_tile);
}

/* Elements as the device holds them: fp32 floats or packed 16-bit. */
static size_t floats_for(fg_dtype dt, size_t n) { return dt == FG_DTYPE_F32 ? n : (n + 1) / 2; }

static void *upload_as(fg_dtype dt, const float *values, size_t n)
{
    if (dt == FG_DTYPE_F32) return fgi_dev_upload(values, n);
    float *packed = fgi_buf_nan(floats_for(dt, n));
    cr_assert_eq(fg_dtype_from_f32(dt, packed, values, n), FG_OK, "%s", fg_last_error());
    void *dev = fgi_dev_upload(packed, floats_for(dt, n));
    fgi_buf_free(packed);
    return dev;
}

/* n elements of NaN bits in dt, with a guard after them. */
static void *poisoned_as(fg_dtype dt, size_t n)
{
    float *bits = fgi_buf_nan(floats_for(dt, n));
    memset(bits, 0xff, sizeof(float) * floats_for(dt, n));
    void *dev = fgi_dev_upload(bits, floats_for(dt, n));
    fgi_buf_free(bits);
    return dev;
}

static float *download_as(fg_dtype dt, const void *dev, size_t n, const char *what)
{
    fgi_dev_assert_guard(dev, floats_for(dt, n), what);
    float *packed = fgi_dev_download(dev, floats_for(dt, n));
    if (dt == FG_DTYPE_F32) return packed;
    float *got = fgi_buf_nan(n);
    cr_assert_eq(fg_dtype_to_f32(dt, got, packed, n), FG_OK, "%s", fg_last_error());
    fgi_buf_free(packed);
    return got;
}

/* One row of windowed attention rounded at every op boundary, as
 * fg_ref_gqa_naive16 does without a window: the 16-bit rule's yardstick. */
static void naive_row(fg_dtype dt, const float *q, const float *k, const float *v, pshape s,
                      int i, float *out, double *p)
{
    const int d = s.d, last = i + s.kv_len - s.q_len;
    const int first = s.window > 0 && last - s.window + 1 > 0 ? last - s.window + 1 : 0;
    const float scale = (float)(1.0 / sqrt((double)d));
    double big = -INFINITY, sum = 0.0;
    for (int j = first; j <= last; j++) {
        float acc = 0.0f;
        for (int c = 0; c < d; c++) acc += q[c] * k[(size_t)j * d + c];
        p[j] = fg_dtype_round(dt, fg_dtype_round(dt, acc) * scale);
        big = p[j] > big ? p[j] : big;
    }
    for (int j = first; j <= last; j++) sum += (p[j] = exp(p[j] - big));
    for (int j = first; j <= last; j++) p[j] = fg_dtype_round(dt, (float)(p[j] / sum));
    for (int c = 0; c < d; c++) {
        double acc = 0.0;
        for (int j = first; j <= last; j++) acc += p[j] * v[(size_t)j * d + c];
        out[c] = fg_dtype_round(dt, (float)acc);
    }
}

/* The call on (q rows [r0, r1) of) the case: contiguous K/V, or the pool
 * through the table. out: (n_q, q_len, d) of dt, rows r0.. written. */
typedef struct {
    fg_dtype dt;
    pshape s;
    void *dq, *dk, *dv;       /* contiguous q (n_q, q_len, d), k, v (n_kv, kv_len, d) */
    void *pk, *pv;            /* pools (n_blocks, n_kv, bs, d) */
    int *dtable;
} call_inputs;

static fg_status run(const call_inputs *in, void *out, int paged, int r0, int r1)
{
#ifdef FG_HAVE_CUDA
    const pshape s = in->s;
    const size_t es = fg_dtype_size(in->dt);
    const size_t row0 = (size_t)r0 * s.d * es;
    const int q_len = r1 - r0, kv_len = s.kv_len - s.q_len + r1;
    const void *k = paged ? in->pk : in->dk, *v = paged ? in->pv : in->dv;
    const long long head_stride = paged ? (long long)s.bs * s.d : (long long)s.kv_len * s.d;
    if (in->dt == FG_DTYPE_F32) {
        fgi_attention_args a;
        memset(&a, 0, sizeof a);
        a.out = (float *)((char *)out + row0);
        a.out_head_stride = (long long)s.q_len * s.d, a.out_row_stride = s.d;
        a.q = (const float *)((const char *)in->dq + row0);
        a.q_head_stride = (long long)s.q_len * s.d, a.q_row_stride = s.d;
        a.k = k, a.v = v, a.kv_head_stride = head_stride;
        a.n_q_head = s.n_q, a.n_kv_head = s.n_kv, a.q_len = q_len, a.kv_len = kv_len;
        a.head_dim = s.d, a.window = s.window, a.block_size = s.key_tile;
        if (paged) {
            a.block_table = in->dtable;
            a.kv_block_size = s.bs;
            a.kv_block_stride = (long long)s.n_kv * s.bs * s.d;
        }
        /* the contiguous mma kernel unsplit: the paged call's arithmetic */
        fgi_attention_tuning t;
        memset(&t, 0, sizeof t);
        t.kernel = FGI_ATTENTION_MMA;
        t.n_splits = 1;
        const fg_status st = fgi_cuda_attention_tuned("test", &a, &t, NULL, 0, NULL);
        if (st == FG_OK) cr_assert_eq(t.used_splits, 1);
        return st;
    }
    fgi_attention16_args a;
    memset(&a, 0, sizeof a);
    a.dtype = in->dt;
    a.out = (char *)out + row0;
    a.out_head_stride = (long long)s.q_len * s.d, a.out_row_stride = s.d;
    a.q = (const char *)in->dq + row0;
    a.q_head_stride = (long long)s.q_len * s.d, a.q_row_stride = s.d;
    a.k = k, a.v = v, a.kv_head_stride = head_stride;
    a.n_q_head = s.n_q, a.n_kv_head = s.n_kv, a.q_len = q_len, a.kv_len = kv_len;
    a.head_dim = s.d, a.window = s.window;
    if (paged) {
        a.block_table = in->dtable;
        a.kv_block_size = s.bs;
        a.kv_block_stride = (long long)s.n_kv * s.bs * s.d;
    }
    /* the sm_80 kernel for both, contiguous too: paged calls never take the
     * Hopper kernel, which compute capability 9.0 (the emulator's too)
     * would pick for a contiguous head_dim 64 / 128 call */
    fgi_attention16_set_kernel(1);
    const fg_status st = fgi_cuda_attention16("test", &a, NULL);
    fgi_attention16_set_kernel(0);
    return st;
#else
    (void)in, (void)out, (void)paged, (void)r0, (void)r1;
    return FG_ERR_UNSUPPORTED;
#endif
}

/* fixed: a shape and cut points instead of random ones (NULL: random) */
static void run_case(fg_dtype dt, fgi_rng *r, int c, const pshape *fixed, const int *fixed_cuts)
{
    const pshape s = fixed ? *fixed : make_pshape(r, dt, c);
    char what[256];
    describe(what, sizeof what, c, s, dt);
    const size_t nq = (size_t)s.n_q * s.q_len * s.d, nkv = (size_t)s.n_kv * s.kv_len * s.d;
    float *q = fgi_buf_normal(r, nq, 1.0), *k = fgi_buf_normal(r, nkv, 1.0);
    float *v = fgi_buf_normal(r, nkv, 1.0);
    for (size_t i = 0; i < nq; i++) q[i] = fg_dtype_round(dt, q[i]);
    for (size_t i = 0; i < nkv; i++) k[i] = fg_dtype_round(dt, k[i]), v[i] = fg_dtype_round(dt, v[i]);

    /* the pool: the table's blocks in shuffled order among spare ones */
    const int used = (s.kv_len + s.bs - 1) / s.bs, n_blocks = used + fgi_rng_int(r, 1, 4);
    int *perm = malloc(sizeof(int) * (size_t)n_blocks);
    cr_assert_not_null(perm);
    for (int b = 0; b < n_blocks; b++) perm[b] = b;
    for (int b = n_blocks - 1; b > 0; b--) {
        const int j = fgi_rng_int(r, 0, b), t = perm[b];
        perm[b] = perm[j];
        perm[j] = t;
    }
    const size_t block = (size_t)s.n_kv * s.bs * s.d, npool = (size_t)n_blocks * block;
    float *pk = fgi_buf_nan(npool), *pv = fgi_buf_nan(npool);
    for (int g = 0; g < s.n_kv; g++)
        for (int j = 0; j < s.kv_len; j++) {
            const size_t at = (size_t)perm[j / s.bs] * block + ((size_t)g * s.bs + j % s.bs) * s.d;
            memcpy(pk + at, k + ((size_t)g * s.kv_len + j) * s.d, sizeof(float) * s.d);
            memcpy(pv + at, v + ((size_t)g * s.kv_len + j) * s.d, sizeof(float) * s.d);
        }
    call_inputs in = {dt, s, upload_as(dt, q, nq), upload_as(dt, k, nkv), upload_as(dt, v, nkv),
                      upload_as(dt, pk, npool), upload_as(dt, pv, npool),
                      fgi_dev_upload_ints(perm, (size_t)used)};

    void *out_c = poisoned_as(dt, nq), *out_p = poisoned_as(dt, nq), *out_k = poisoned_as(dt, nq);
    expect_ok(run(&in, out_c, 0, 0, s.q_len), what);
    expect_ok(run(&in, out_p, 1, 0, s.q_len), what);
    /* the same rows in chunks, each with the key count of its last row */
    int cuts[4] = {0, 0, 0, s.q_len}, n_cuts = 2;
    if (fixed_cuts) {
        memcpy(cuts, fixed_cuts, sizeof cuts);
        n_cuts = 4;
    } else if (s.q_len > 2) {
        cuts[1] = fgi_rng_int(r, 1, s.q_len - 1);
        cuts[2] = fgi_rng_int(r, cuts[1], s.q_len - 1);
        n_cuts = 4;
    } else {
        cuts[1] = s.q_len;
    }
    for (int i = 0; i + 1 < n_cuts; i++)
        if (cuts[i + 1] > cuts[i]) expect_ok(run(&in, out_k, 1, cuts[i], cuts[i + 1]), what);

    float *got_c = download_as(dt, out_c, nq, what), *got_p = download_as(dt, out_p, nq, what);
    float *got_k = download_as(dt, out_k, nq, what);
    char msg[300];
    snprintf(msg, sizeof msg, "%s: chunked vs one launch", what);
    fgi_assert_same(got_k, got_p, sizeof(float) * nq, msg);
    if (s.window == 0) {
        snprintf(msg, sizeof msg, "%s: paged vs contiguous", what);
        fgi_assert_same(got_p, got_c, sizeof(float) * nq, msg);
    }
    float *exact = fgi_buf_nan(nq);
    cr_assert_eq(fg_ref_gqa_window(exact, q, k, v, s.n_q, s.n_kv, s.q_len, s.kv_len, s.d,
                                   s.window),
                 FG_OK, "%s", fg_last_error());
    if (dt == FG_DTYPE_F32) {
        fgi_assert_close(got_p, exact, nq, ATOL, RTOL, REL_L2, what);
    } else {
        float *naive = fgi_buf_nan(nq);
        double *p = malloc(sizeof(double) * (size_t)s.kv_len);
        cr_assert_not_null(p);
        const int group = s.n_q / s.n_kv;
        for (int h = 0; h < s.n_q; h++)
            for (int i = 0; i < s.q_len; i++)
                naive_row(dt, q + ((size_t)h * s.q_len + i) * s.d,
                          k + (size_t)(h / group) * s.kv_len * s.d,
                          v + (size_t)(h / group) * s.kv_len * s.d, s, i,
                          naive + ((size_t)h * s.q_len + i) * s.d, p);
        fgi_assert_16bit_rule(dt, got_p, exact, naive, nq, what);
        free(p);
        fgi_buf_free(naive);
    }
    fgi_buf_free(exact), fgi_buf_free(got_c), fgi_buf_free(got_p), fgi_buf_free(got_k);
    fgi_dev_free(out_c), fgi_dev_free(out_p), fgi_dev_free(out_k);
    fgi_dev_free(in.dq), fgi_dev_free(in.dk), fgi_dev_free(in.dv);
    fgi_dev_free(in.pk), fgi_dev_free(in.pv), fgi_dev_free(in.dtable);
    fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(v), fgi_buf_free(pk), fgi_buf_free(pv);
    free(perm);
}

static void run_type(fg_dtype dt, uint64_t stream)
{
    fgi_require_gpu();
    fgi_rng r = fgi_rng_make(stream);
    /* a window longer than a key tile, cut so that each chunk's first row
     * starts its window at another offset within a tile than in one
     * launch: key tiles anchored at the window start would group the
     * keys differently (and so round differently) per chunk */
    const pshape windowed = {2, 1, 100, 300, 64, 150, 16, 64};
    const int cuts[4] = {0, 37, 71, 100};
    run_case(dt, &r, -1, &windowed, cuts);
    for (int c = 0; c < n_cases(); c++) run_case(dt, &r, c, NULL, NULL);
}

Test(cuda_attention_paged, f32_mma) { run_type(FG_DTYPE_F32, 1); }
Test(cuda_attention_paged, bf16_mma16) { run_type(FG_DTYPE_BF16, 2); }
Test(cuda_attention_paged, f16_mma16) { run_type(FG_DTYPE_F16, 3); }

/* A block table where the fp32 mma kernel cannot run (a head_dim without
 * it, the decode kernel asked for) is refused, nothing written. */
Test(cuda_attention_paged, refusals)
{
    fgi_require_gpu();
#ifdef FG_HAVE_CUDA
    float *buf = fgi_dev_poisoned(4096);
    int *table = fgi_dev_upload_ints((const int[]){0}, 1);
    fgi_attention_args a;
    memset(&a, 0, sizeof a);
    a.out = buf, a.q = buf, a.k = buf, a.v = buf;
    a.out_head_stride = a.q_head_stride = a.kv_head_stride = 16 * 24;
    a.out_row_stride = a.q_row_stride = 24;
    a.n_q_head = a.n_kv_head = 1, a.q_len = a.kv_len = 4, a.head_dim = 24;
    a.block_table = table, a.kv_block_size = 16, a.kv_block_stride = 16 * 24;
    fgi_assert_status(fgi_cuda_attention("test", &a, NULL, 0, NULL), FG_ERR_UNSUPPORTED,
                      "block table");
    a.head_dim = 32, a.out_row_stride = a.q_row_stride = 32;
    fgi_attention_tuning t;
    memset(&t, 0, sizeof t);
    t.kernel = FGI_ATTENTION_DECODE;
    fgi_assert_status(fgi_cuda_attention_tuned("test", &a, &t, NULL, 0, NULL), FG_ERR_UNSUPPORTED,
                      "block table");
    float *host = fgi_dev_download(buf, 4096);
    for (int i = 0; i < 4096; i++) cr_assert(host[i] != host[i], "nothing written");
    fgi_buf_free(host);
    fgi_dev_free(buf), fgi_dev_free(table);
#endif
}
