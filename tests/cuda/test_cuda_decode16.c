/* Batched decode attention (fg_cuda_decode_attention / _typed, cuda/attention/
 * attention_decode_batch.cu) in f32, bf16 and f16 against the CPU reference:
 * batches of 1..9 sequences of different key counts, GQA / MQA / MHA, head
 * dims with and without a fast path, key counts around the 16-key stage,
 * the 32-key split granule and the 128-key split minimum, 1 and capacity,
 * sliding windows; batch invariance bit for bit; a paged cache (block
 * tables into a pool) against the contiguous one; argument checking.
 *
 * Each sequence's exact reference is fg_ref_gqa with one query row against
 * its visible keys (the window's), on the 16-bit inputs widened; 16-bit
 * results are held to the 16-bit rule (fgi_assert_16bit_rule, naive =
 * fg_ref_gqa_naive16), f32 ones to the fp32 tolerances (docs/contract.md
 * §32). Cache rows a sequence must not read (past its count, before its
 * window) hold NaN, so reading one shows; outputs start as NaN and end in a
 * guard region. FG_TEST_QUICK=1 runs fewer, smaller cases. */
#include "gpu_support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATOL 1e-4
#define RTOL 1e-4
#define REL_L2 1e-5
#define MAX_BATCH 32

static const fg_dtype dtypes[] = {FG_DTYPE_F32, FG_DTYPE_BF16, FG_DTYPE_F16};
#define N_DTYPES 3
/* Head dims: every fast-path size, then small ones (16-bit: multiples of 8). */
static const int dims16[] = {64, 128, 80, 96, 256, 8, 16, 24, 40, 56, 128, 64};
static const int dims32[] = {64, 128, 80, 96, 256, 4, 12, 20, 36, 8, 128, 64};
#define N_DIMS ((int)(sizeof dims16 / sizeof dims16[0]))
/* The kernel's edges: 16-key stages, 32-key split granule, 128-key split
 * minimum; key counts at t-2, t-1, t, t+1 and 2t-2 of each. */
static const int tiles[] = {16, 32, 128};

static int n_cases(void) { return fgi_test_quick() ? 3 : 50; }
/* Upper bound on batch * n_q_head * capacity * head_dim per case. */
static double case_budget(void) { return fgi_test_quick() ? 4e5 : 3e7; }

typedef struct {
    fg_dtype dt;
    int batch, n_q, n_kv, d, capacity, window;
    int lens[MAX_BATCH];
} dcase;

static void check_ok(fg_status st, const char *what)
{
    cr_assert(st == FG_OK, "%s: %s: %s (seed %llu)", what, fg_status_str(st), fg_last_error(),
              (unsigned long long)fgi_test_seed());
}

static void describe(char *buf, size_t len, const char *family, int c, const dcase *k)
{
    int at = snprintf(buf, len,
                      "%s case %d (%s, batch %d, n_q_head %d, n_kv_head %d, head_dim %d, "
                      "capacity %d, window %d, lens",
                      family, c, fg_dtype_name(k->dt), k->batch, k->n_q, k->n_kv, k->d,
                      k->capacity, k->window);
    for (int b = 0; b < k->batch && at > 0 && (size_t)at < len; b++)
        at += snprintf(buf + at, len - (size_t)at, " %d", k->lens[b]);
    if (at > 0 && (size_t)at < len) snprintf(buf + at, len - (size_t)at, ")");
}

/* A key count near a kernel edge, 1, the capacity or anything up to it. */
static int pick_len(fgi_rng *r, int capacity)
{
    int n;
    switch (fgi_rng_int(r, 0, 5)) {
    case 0: n = 1; break;
    case 1: n = capacity; break;
    case 2: n = fgi_rng_int(r, 1, capacity); break;
    default: {
        const int t = tiles[fgi_rng_int(r, 0, 2)];
        const int near[] = {t - 2, t - 1, t, t + 1, 2 * t - 2};
        n = near[fgi_rng_int(r, 0, 4)];
    }
    }
    return n < 1 ? 1 : n > capacity ? capacity : n;
}

static dcase make_case(fgi_rng *r, int c, fg_dtype dt)
{
    dcase k;
    memset(&k, 0, sizeof k);
    k.dt = dt;
    k.d = (dt == FG_DTYPE_F32 ? dims32 : dims16)[c % N_DIMS];
    k.batch = fgi_rng_int(r, 1, 9);
    switch (c % 3) {
    case 0: /* GQA */
        k.n_kv = fgi_rng_int(r, 1, 3);
        k.n_q = k.n_kv * fgi_rng_int(r, 2, 8);
        break;
    case 1: /* MQA */
        k.n_kv = 1;
        k.n_q = fgi_rng_int(r, 2, 8);
        break;
    default: /* MHA */
        k.n_kv = k.n_q = fgi_rng_int(r, 1, 4);
        break;
    }
    k.capacity = fgi_rng_int(r, 0, 3) == 0 ? fgi_rng_int(r, 1, 40) : fgi_rng_int(r, 100, 1200);
    while ((double)k.batch * k.n_q * k.capacity * k.d > case_budget()) {
        if (k.capacity > 300)
            k.capacity /= 2;
        else if (k.batch > 2)
            k.batch--;
        else if (k.n_q > k.n_kv)
            k.n_q -= k.n_kv; /* fewer query heads per KV head */
        else if (k.n_kv > 1)
            k.n_kv--, k.n_q = k.n_kv;
        else
            k.capacity = (k.capacity + 1) / 2;
    }
    for (int b = 0; b < k.batch; b++) k.lens[b] = pick_len(r, k.capacity);
    if (fgi_rng_int(r, 0, 1)) {
        const int w[] = {1, 2, 15, 16, 17, 33, 130};
        k.window = fgi_rng_int(r, 0, 2) ? w[fgi_rng_int(r, 0, 6)]
                                        : fgi_rng_int(r, 1, k.capacity + 10);
    }
    return k;
}

/* First visible key of a sequence with n keys. */
static int first_key(const dcase *k, int n)
{
    return k->window > 0 && n > k->window ? n - k->window : 0;
}

/* Host inputs of a case: fp32 draws rounded to the case's type; the cache
 * rows no query may read are NaN. q (batch, n_q, d), k / v (batch, n_kv,
 * capacity, d). */
typedef struct {
    size_t nq, nkv;
    float *q, *k, *v;
} host_in;

static void host_make(host_in *in, fgi_rng *r, const dcase *k)
{
    in->nq = (size_t)k->batch * k->n_q * k->d;
    in->nkv = (size_t)k->batch * k->n_kv * k->capacity * k->d;
    in->q = fgi_buf_normal(r, in->nq, 1.0);
    in->k = fgi_buf_normal(r, in->nkv, 1.0);
    in->v = fgi_buf_normal(r, in->nkv, 1.0);
    for (size_t i = 0; i < in->nq; i++) in->q[i] = fg_dtype_round(k->dt, in->q[i]);
    for (int b = 0; b < k->batch; b++)
        for (int g = 0; g < k->n_kv; g++)
            for (int j = 0; j < k->capacity; j++) {
                const size_t row = (((size_t)b * k->n_kv + g) * k->capacity + j) * k->d;
                const int hidden = j < first_key(k, k->lens[b]) || j >= k->lens[b];
                for (int e = 0; e < k->d; e++) {
                    in->k[row + e] = hidden ? NAN : fg_dtype_round(k->dt, in->k[row + e]);
                    in->v[row + e] = hidden ? NAN : fg_dtype_round(k->dt, in->v[row + e]);
                }
            }
}

static void host_free(host_in *in)
{
    fgi_buf_free(in->q), fgi_buf_free(in->k), fgi_buf_free(in->v);
}

/* Floats a device copy of n elements of dt takes (head dims keep it whole). */
static size_t dev_floats(fg_dtype dt, size_t n) { return n * fg_dtype_size(dt) / sizeof(float); }

/* Device copy, in dt, of n host floats (already representable in dt). */
static void *dev_upload_as(fg_dtype dt, const float *host, size_t n)
{
    float *stored = fgi_buf_nan(dev_floats(dt, n) + 1);
    check_ok(fg_dtype_from_f32(dt, stored, host, n), "fg_dtype_from_f32");
    void *d = fgi_dev_upload(stored, dev_floats(dt, n));
    fgi_buf_free(stored);
    return d;
}

/* n elements of dt on the device, widened into a new host buffer. */
static float *dev_download_as(fg_dtype dt, const void *dev, size_t n)
{
    float *raw = fgi_dev_download(dev, dev_floats(dt, n));
    float *wide = fgi_buf_nan(n);
    check_ok(fg_dtype_to_f32(dt, wide, raw, n), "fg_dtype_to_f32");
    fgi_buf_free(raw);
    return wide;
}

/* The references of every sequence: exact (fg_ref_gqa) and, for 16-bit,
 * naive (fg_ref_gqa_naive16), each (batch, n_q, d). */
static void reference(const dcase *k, const host_in *in, float *exact, float *naive)
{
    const size_t qs = (size_t)k->n_q * k->d;
    float *kw = fgi_buf_nan((size_t)k->n_kv * k->capacity * k->d);
    float *vw = fgi_buf_nan((size_t)k->n_kv * k->capacity * k->d);
    for (int b = 0; b < k->batch; b++) {
        const int n = k->lens[b], f = first_key(k, n), vis = n - f;
        for (int g = 0; g < k->n_kv; g++) {
            const size_t src = (((size_t)b * k->n_kv + g) * k->capacity + f) * k->d;
            memcpy(kw + (size_t)g * vis * k->d, in->k + src, sizeof(float) * vis * k->d);
            memcpy(vw + (size_t)g * vis * k->d, in->v + src, sizeof(float) * vis * k->d);
        }
        check_ok(fg_ref_gqa(exact + b * qs, in->q + b * qs, kw, vw, k->n_q, k->n_kv, 1, vis, k->d),
                 "fg_ref_gqa");
        if (naive != NULL)
            check_ok(fg_ref_gqa_naive16(k->dt, naive + b * qs, in->q + b * qs, kw, vw, k->n_q,
                                        k->n_kv, 1, vis, k->d),
                     "fg_ref_gqa_naive16");
    }
    fgi_buf_free(kw), fgi_buf_free(vw);
}

/* Device copies of a case's inputs. */
typedef struct {
    void *q, *k, *v, *out;
    int *lens;
} dev_in;

static dev_in dev_make(const dcase *k, const host_in *in)
{
    dev_in d;
    d.q = dev_upload_as(k->dt, in->q, in->nq);
    d.k = dev_upload_as(k->dt, in->k, in->nkv);
    d.v = dev_upload_as(k->dt, in->v, in->nkv);
    d.out = fgi_dev_poisoned(dev_floats(k->dt, in->nq)); /* 0xff bytes: NaN in every type */
    d.lens = fgi_dev_upload_ints(k->lens, (size_t)k->batch);
    return d;
}

static void dev_free(dev_in *d)
{
    fgi_dev_free(d->q), fgi_dev_free(d->k), fgi_dev_free(d->v), fgi_dev_free(d->out);
    fgi_dev_free(d->lens);
}

static fg_status run_public(const dcase *k, const dev_in *d)
{
    if (k->dt == FG_DTYPE_F32)
        return fg_cuda_decode_attention(d->out, d->q, d->k, d->v, d->lens, k->batch, k->n_q,
                                        k->n_kv, k->d, k->capacity, k->window, NULL);
    return fg_cuda_decode_attention_typed(k->dt, d->out, d->q, d->k, d->v, d->lens, k->batch,
                                          k->n_q, k->n_kv, k->d, k->capacity, k->window, NULL);
}

#ifdef FG_HAVE_CUDA
/* The internal entry with a split request and a workspace (CUDA builds). */
static fg_status run_internal(const dcase *k, const dev_in *d, int n_splits, void *ws,
                              size_t ws_bytes, int *used)
{
    const fgi_decode_args a = {.dtype = k->dt,       .out = d->out,      .q = d->q,
                               .k_cache = d->k,      .v_cache = d->v,    .kv_lens = d->lens,
                               .batch = k->batch,    .n_q_head = k->n_q, .n_kv_head = k->n_kv,
                               .head_dim = k->d,     .capacity = k->capacity,
                               .window = k->window,  .n_splits = n_splits};
    return fgi_cuda_decode_attention("test", &a, ws, ws_bytes, used, NULL);
}
#endif

/* The output against the references, by the rule of its type. */
static void expect_matches(const dcase *k, const dev_in *d, const float *exact, const float *naive,
                           size_t n, const char *what)
{
    fgi_dev_assert_guard(d->out, dev_floats(k->dt, n), what);
    float *got = dev_download_as(k->dt, d->out, n);
    if (k->dt == FG_DTYPE_F32)
        fgi_assert_close(got, exact, n, ATOL, RTOL, REL_L2, what);
    else
        fgi_assert_16bit_rule(k->dt, got, exact, naive, n, what);
    fgi_buf_free(got);
}

static void random_cases(fg_dtype dt, uint64_t stream)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(stream);
    for (int c = 0; c < n_cases(); c++) {
        const dcase k = make_case(&rng, c, dt);
        char what[512];
        describe(what, sizeof what, "decode", c, &k);
        host_in in;
        host_make(&in, &rng, &k);
        float *exact = fgi_buf_nan(in.nq), *naive = dt == FG_DTYPE_F32 ? NULL : fgi_buf_nan(in.nq);
        reference(&k, &in, exact, naive);
        dev_in d = dev_make(&k, &in);
        fg_status st = run_public(&k, &d);
        check_ok(st, what);
        check_ok(fg_cuda_synchronize(NULL), what);
        expect_matches(&k, &d, exact, naive, in.nq, what);
        dev_free(&d), host_free(&in), fgi_buf_free(exact), fgi_buf_free(naive);
    }
}

Test(cuda_decode16, f32_random_batches) { random_cases(FG_DTYPE_F32, 1601); }
Test(cuda_decode16, bf16_random_batches) { random_cases(FG_DTYPE_BF16, 1602); }
Test(cuda_decode16, f16_random_batches) { random_cases(FG_DTYPE_F16, 1603); }

#ifdef FG_HAVE_CUDA
/* Runs k with `want` forced splits and a workspace with room for one
 * sequence's partials, never the whole batch (so a split batch goes in
 * launches of one sequence each), and waits; a workspace too small even
 * for one is refused first, nothing written. Returns the splits that ran. */
static int run_one_sequence_room(const dcase *k, const dev_in *d, int want, const char *what)
{
    const fgi_decode_args a1 = {.dtype = k->dt,    .out = d->out,      .q = d->q,
                                .k_cache = d->k,   .v_cache = d->v,    .kv_lens = d->lens,
                                .batch = 1,        .n_q_head = k->n_q, .n_kv_head = k->n_kv,
                                .head_dim = k->d,  .capacity = k->capacity,
                                .window = k->window, .n_splits = want};
    const size_t one = fgi_cuda_decode_workspace_bytes(&a1) + 64;
    void *ws = NULL;
    check_ok(fg_cuda_malloc(&ws, one), "workspace");
    check_ok(fg_cuda_memset(ws, 0, one), "workspace zero-fill");
    if (one > 100 + 64)
        fgi_assert_status(run_internal(k, d, want, ws, 100, NULL), FG_ERR_INVALID_ARG,
                          "workspace");
    int used = 0;
    check_ok(run_internal(k, d, want, ws, one, &used), what);
    check_ok(fg_cuda_synchronize(NULL), what);
    fgi_dev_free(ws);
    return used;
}
#endif

/* Forced split counts (1, a few, more than the keys allow) and a workspace
 * that holds one sequence at a time: the same references. */
Test(cuda_decode16, forced_splits_and_small_workspaces)
{
    fgi_require_gpu();
#ifndef FG_HAVE_CUDA
    cr_skip_test("the internal entry needs a CUDA build");
#else
    fgi_rng rng = fgi_rng_make(1604);
    const int splits[] = {1, 2, 3, 7, 40};
    for (int c = 0; c < (fgi_test_quick() ? 3 : 12); c++) {
        const fg_dtype dt = dtypes[c % N_DTYPES];
        dcase k = make_case(&rng, c * 5 + 2, dt);
        char what[512];
        describe(what, sizeof what, "forced splits", c, &k);
        host_in in;
        host_make(&in, &rng, &k);
        float *exact = fgi_buf_nan(in.nq), *naive = dt == FG_DTYPE_F32 ? NULL : fgi_buf_nan(in.nq);
        reference(&k, &in, exact, naive);
        dev_in d = dev_make(&k, &in);
        const int want = splits[c % 5];
        const int used = run_one_sequence_room(&k, &d, want, what);
        cr_assert(used >= 1 && used <= want, "%s: %d splits ran for %d asked", what, used, want);
        expect_matches(&k, &d, exact, naive, in.nq, what);
        dev_free(&d), host_free(&in), fgi_buf_free(exact), fgi_buf_free(naive);
    }
#endif
}

/* A batch split into launches of one sequence each (forced splits and a
 * workspace with room for one): every launch reads its own sequences' key
 * counts, shifted with its first sequence (lengths all different, so a
 * launch reading another's count gives a wrong row). The random cases
 * above rarely reach this path in quick mode (a mutant survived there). */
Test(cuda_decode16, one_launch_per_sequence_reads_its_own_counts)
{
    fgi_require_gpu();
#ifndef FG_HAVE_CUDA
    cr_skip_test("the internal entry needs a CUDA build");
#else
    fgi_rng rng = fgi_rng_make(1608);
    for (int t = 0; t < N_DTYPES; t++) {
        dcase k;
        memset(&k, 0, sizeof k);
        k.dt = dtypes[t];
        k.batch = 3, k.n_q = 2, k.n_kv = 1, k.d = 64, k.capacity = 200;
        k.lens[0] = 200, k.lens[1] = 37, k.lens[2] = 121;
        char what[512];
        describe(what, sizeof what, "one sequence per launch", t, &k);
        host_in in;
        host_make(&in, &rng, &k);
        float *exact = fgi_buf_nan(in.nq), *naive = k.dt == FG_DTYPE_F32 ? NULL : fgi_buf_nan(in.nq);
        reference(&k, &in, exact, naive);
        dev_in d = dev_make(&k, &in);
        const int used = run_one_sequence_room(&k, &d, 4, what);
        cr_assert(used > 1, "%s: %d split ran: the batch went in one launch", what, used);
        expect_matches(&k, &d, exact, naive, in.nq, what);
        dev_free(&d), host_free(&in), fgi_buf_free(exact), fgi_buf_free(naive);
    }
#endif
}

/* A window much shorter than the cache: the plan shares out only the keys
 * one sequence's window reaches (window + 15 at most: its first key rounds
 * down to a 16-key stage), not the capacity, so the split count is bounded
 * by the window: automatic (128-key minimum per split) and forced (32-key
 * granule). Results against the references either way. */
Test(cuda_decode16, short_window_splits_are_bounded_by_the_window)
{
    fgi_require_gpu();
#ifndef FG_HAVE_CUDA
    cr_skip_test("the internal entry needs a CUDA build");
#else
    fgi_rng rng = fgi_rng_make(1609);
    const int windows[] = {1, 17, 40, 130, 200};
    for (int c = 0; c < (fgi_test_quick() ? 3 : 10); c++) {
        dcase k;
        memset(&k, 0, sizeof k);
        k.dt = dtypes[c % N_DTYPES];
        k.d = (k.dt == FG_DTYPE_F32 ? dims32 : dims16)[c % 5]; /* the fast-path sizes */
        k.batch = 2, k.n_kv = 1 + c % 2, k.n_q = 2 * k.n_kv;
        k.window = windows[c % 5];
        k.capacity = (int)(case_budget() / ((double)k.batch * k.n_q * k.d));
        if (k.capacity > 4096) k.capacity = 4096;
        cr_assert(k.capacity >= 3 * k.window, "case %d: capacity %d for window %d", c,
                  k.capacity, k.window);
        k.lens[0] = k.capacity;
        k.lens[1] = fgi_rng_int(&rng, k.window, k.capacity);
        char what[512];
        describe(what, sizeof what, "short window", c, &k);
        host_in in;
        host_make(&in, &rng, &k);
        float *exact = fgi_buf_nan(in.nq), *naive = k.dt == FG_DTYPE_F32 ? NULL : fgi_buf_nan(in.nq);
        reference(&k, &in, exact, naive);
        dev_in d = dev_make(&k, &in);
        const int keys = k.window + 15 < k.capacity ? k.window + 15 : k.capacity;
        for (int forced = 0; forced < 2; forced++) {
            const int want = forced ? 64 : 0;
            const int bound = forced ? (keys + 31) / 32 : keys / 128 > 1 ? keys / 128 : 1;
            int used = 0;
            if (forced) { /* a fresh poisoned output: the second run must write it all */
                fgi_dev_free(d.out);
                d.out = fgi_dev_poisoned(dev_floats(k.dt, in.nq));
            }
            check_ok(run_internal(&k, &d, want, NULL, 0, &used), what);
            check_ok(fg_cuda_synchronize(NULL), what);
            cr_assert(used >= 1 && used <= bound,
                      "%s: %d splits (%s) for a window of %d keys, at most %d expected", what, used,
                      forced ? "64 asked" : "automatic", k.window, bound);
            expect_matches(&k, &d, exact, naive, in.nq, what);
        }
        dev_free(&d), host_free(&in), fgi_buf_free(exact), fgi_buf_free(naive);
    }
#endif
}

/* Key counts outside 1..capacity are clamped into it: 0 and -5 read as 1,
 * capacity + 7 as capacity, bit for bit. */
Test(cuda_decode16, key_counts_are_clamped)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(1605);
    for (int t = 0; t < N_DTYPES; t++) {
        dcase k;
        memset(&k, 0, sizeof k);
        k.dt = dtypes[t];
        k.batch = 3, k.n_q = 4, k.n_kv = 2, k.d = 64, k.capacity = 70;
        k.lens[0] = 1, k.lens[1] = 1, k.lens[2] = 70;
        host_in in;
        host_make(&in, &rng, &k);
        dev_in d = dev_make(&k, &in);
        check_ok(run_public(&k, &d), "in range");
        check_ok(fg_cuda_synchronize(NULL), "in range");
        float *want = fgi_dev_download(d.out, dev_floats(k.dt, in.nq));
        const int odd[] = {0, -5, 77};
        int *lens = fgi_dev_upload_ints(odd, 3);
        fgi_dev_free(d.lens);
        d.lens = lens;
        check_ok(fg_cuda_memset(d.out, 0xff, sizeof(float) * dev_floats(k.dt, in.nq)), "poison");
        check_ok(run_public(&k, &d), "clamped");
        check_ok(fg_cuda_synchronize(NULL), "clamped");
        float *got = fgi_dev_download(d.out, dev_floats(k.dt, in.nq));
        fgi_assert_same(got, want, sizeof(float) * dev_floats(k.dt, in.nq), "clamped key counts");
        fgi_buf_free(got), fgi_buf_free(want);
        dev_free(&d), host_free(&in);
    }
}

/* Batch invariance: one sequence alone, then at slots 0, 13 and 31 of a
 * batch of 32 with other random sequences: the same bits each time (and
 * with a workspace that runs the batch one sequence per launch). */
Test(cuda_decode16, batch_invariance_bit_for_bit)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(1606);
    const int quick = fgi_test_quick();
    for (int t = 0; t < N_DTYPES; t++) {
        dcase big;
        memset(&big, 0, sizeof big);
        big.dt = dtypes[t];
        big.batch = MAX_BATCH;
        big.n_q = quick ? 4 : 32, big.n_kv = quick ? 2 : 8;
        big.d = quick ? 64 : 128;
        big.capacity = quick ? 300 : 1500;
        big.window = t == 1 ? 100 : 0;
        for (int b = 0; b < MAX_BATCH; b++) big.lens[b] = fgi_rng_int(&rng, 1, big.capacity);
        const int target_len = fgi_rng_int(&rng, big.capacity / 2, big.capacity);
        dcase one = big;
        one.batch = 1;
        one.lens[0] = target_len;
        host_in in1;
        host_make(&in1, &rng, &one);
        dev_in d1 = dev_make(&one, &in1);
        char what[512];
        describe(what, sizeof what, "alone", t, &one);
        check_ok(run_public(&one, &d1), what);
        check_ok(fg_cuda_synchronize(NULL), what);
        const size_t seq_floats = dev_floats(big.dt, (size_t)big.n_q * big.d);
        float *alone = fgi_dev_download(d1.out, seq_floats);
        /* and right: the reference rule holds for the lone sequence too */
        float *exact = fgi_buf_nan(in1.nq);
        float *naive = big.dt == FG_DTYPE_F32 ? NULL : fgi_buf_nan(in1.nq);
        reference(&one, &in1, exact, naive);
        expect_matches(&one, &d1, exact, naive, in1.nq, what);
        fgi_buf_free(exact), fgi_buf_free(naive);

        const int slots[] = {0, 13, 31};
        for (int s = 0; s < 3; s++) {
            const int at = slots[s];
            big.lens[at] = target_len;
            host_in in;
            host_make(&in, &rng, &big);
            const size_t qs = (size_t)big.n_q * big.d, ks = (size_t)big.n_kv * big.capacity * big.d;
            memcpy(in.q + at * qs, in1.q, sizeof(float) * qs);
            memcpy(in.k + at * ks, in1.k, sizeof(float) * ks);
            memcpy(in.v + at * ks, in1.v, sizeof(float) * ks);
            dev_in d = dev_make(&big, &in);
            describe(what, sizeof what, "in a batch", at, &big);
            check_ok(run_public(&big, &d), what);
            check_ok(fg_cuda_synchronize(NULL), what);
            float *got = fgi_dev_download(d.out, dev_floats(big.dt, in.nq));
            fgi_assert_same(got + at * seq_floats, alone, sizeof(float) * seq_floats, what);
            fgi_buf_free(got);
#ifdef FG_HAVE_CUDA
            /* one sequence per launch: a workspace with room for one */
            const size_t ws_bytes = fgi_cuda_decode_workspace_bytes(&(fgi_decode_args){
                .dtype = big.dt, .out = d.out, .q = d.q, .k_cache = d.k, .v_cache = d.v,
                .kv_lens = d.lens, .batch = 1, .n_q_head = big.n_q, .n_kv_head = big.n_kv,
                .head_dim = big.d, .capacity = big.capacity, .window = big.window});
            if (ws_bytes > 0) {
                void *ws = NULL;
                check_ok(fg_cuda_malloc(&ws, ws_bytes), "workspace");
                check_ok(fg_cuda_memset(ws, 0, ws_bytes), "workspace zero-fill");
                check_ok(fg_cuda_memset(d.out, 0xff, sizeof(float) * dev_floats(big.dt, in.nq)),
                         "poison");
                check_ok(run_internal(&big, &d, 0, ws, ws_bytes, NULL), what);
                check_ok(fg_cuda_synchronize(NULL), what);
                got = fgi_dev_download(d.out, dev_floats(big.dt, in.nq));
                fgi_assert_same(got + at * seq_floats, alone, sizeof(float) * seq_floats, what);
                fgi_buf_free(got);
                fgi_dev_free(ws);
            }
#endif
            dev_free(&d), host_free(&in);
        }
        fgi_buf_free(alone);
        dev_free(&d1), host_free(&in1);
    }
}

/* Paged cache: the same sequences scattered over shuffled blocks of a pool
 * (block sizes 16 to 64), with spare blocks all NaN and the table entries of
 * blocks without a visible key garbage, give bit for bit the contiguous
 * cache's result at the same capacity (max_blocks * block_size). */
Test(cuda_decode16, paged_cache_matches_contiguous)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(1608);
    const int sizes[] = {16, 32, 48, 64};
    for (int c = 0; c < (fgi_test_quick() ? 3 : 24); c++) {
        const fg_dtype dt = dtypes[c % N_DTYPES];
        dcase k = make_case(&rng, c, dt);
        const int bs = sizes[fgi_rng_int(&rng, 0, 3)];
        const int max_blocks = (k.capacity + bs - 1) / bs;
        k.capacity = max_blocks * bs; /* the key counts stay below it */
        char what[512];
        describe(what, sizeof what, "paged", c, &k);
        host_in in;
        host_make(&in, &rng, &k);
        dev_in d = dev_make(&k, &in);
        check_ok(run_public(&k, &d), what);
        check_ok(fg_cuda_synchronize(NULL), what);
        float *exact = fgi_buf_nan(in.nq), *naive = dt == FG_DTYPE_F32 ? NULL : fgi_buf_nan(in.nq);
        reference(&k, &in, exact, naive);
        expect_matches(&k, &d, exact, naive, in.nq, what);
        float *dense = fgi_dev_download(d.out, dev_floats(dt, in.nq));

        /* the pool: every (sequence, block) a shuffled id, three spares */
        const int n_blocks = k.batch * max_blocks + 3;
        const size_t block_elems = (size_t)k.n_kv * bs * k.d;
        int *ids = malloc(sizeof(int) * (size_t)n_blocks);
        int *table = malloc(sizeof(int) * (size_t)k.batch * max_blocks);
        cr_assert(ids != NULL && table != NULL);
        for (int i = 0; i < n_blocks; i++) ids[i] = i;
        for (int i = n_blocks - 1; i > 0; i--) {
            const int j = fgi_rng_int(&rng, 0, i), t = ids[i];
            ids[i] = ids[j], ids[j] = t;
        }
        float *kp = fgi_buf_nan((size_t)n_blocks * block_elems);
        float *vp = fgi_buf_nan((size_t)n_blocks * block_elems);
        for (int b = 0; b < k.batch; b++)
            for (int page = 0; page < max_blocks; page++) {
                const int id = ids[b * max_blocks + page];
                const int seen =
                    page * bs < k.lens[b] && (page + 1) * bs > first_key(&k, k.lens[b]);
                table[b * max_blocks + page] = seen ? id : fgi_rng_int(&rng, -5, n_blocks + 5);
                for (int g = 0; g < k.n_kv; g++) {
                    const size_t src =
                        (((size_t)b * k.n_kv + g) * k.capacity + (size_t)page * bs) * k.d;
                    const size_t dst = ((size_t)id * k.n_kv + g) * bs * k.d;
                    memcpy(kp + dst, in.k + src, sizeof(float) * bs * k.d);
                    memcpy(vp + dst, in.v + src, sizeof(float) * bs * k.d);
                }
            }
        void *dkp = dev_upload_as(dt, kp, (size_t)n_blocks * block_elems);
        void *dvp = dev_upload_as(dt, vp, (size_t)n_blocks * block_elems);
        int *dtable = fgi_dev_upload_ints(table, (size_t)k.batch * max_blocks);
        check_ok(fg_cuda_memset(d.out, 0xff, sizeof(float) * dev_floats(dt, in.nq)), "poison");
        check_ok(fg_cuda_decode_attention_paged(dt, d.out, d.q, dkp, dvp, n_blocks, bs, dtable,
                                                max_blocks, d.lens, k.batch, k.n_q, k.n_kv, k.d,
                                                k.window, NULL),
                 what);
        check_ok(fg_cuda_synchronize(NULL), what);
        fgi_dev_assert_guard(d.out, dev_floats(dt, in.nq), what);
        float *paged = fgi_dev_download(d.out, dev_floats(dt, in.nq));
        fgi_assert_same(paged, dense, sizeof(float) * dev_floats(dt, in.nq), what);
        fgi_buf_free(paged), fgi_buf_free(dense), fgi_buf_free(kp), fgi_buf_free(vp);
        fgi_dev_free(dkp), fgi_dev_free(dvp), fgi_dev_free(dtable);
        free(ids), free(table);
        dev_free(&d), host_free(&in), fgi_buf_free(exact), fgi_buf_free(naive);
    }
}

/* Argument checking ---------------------------------------------------------- */

Test(cuda_decode16, bad_arguments_are_refused)
{
    /* Host buffers: a refused call must never dereference them. */
    static _Alignas(16) float q[64], k[256], v[256], out[64];
    static int lens[2];
    const fg_dtype bf = FG_DTYPE_BF16;
    fgi_expect_refused(fg_cuda_decode_attention(NULL, q, k, v, lens, 1, 2, 1, 8, 4, 0, NULL),
                       "'out' is NULL");
    fgi_expect_refused(fg_cuda_decode_attention(out, NULL, k, v, lens, 1, 2, 1, 8, 4, 0, NULL),
                       "'q' is NULL");
    fgi_expect_refused(fg_cuda_decode_attention(out, q, NULL, v, lens, 1, 2, 1, 8, 4, 0, NULL),
                       "'k_cache' is NULL");
    fgi_expect_refused(fg_cuda_decode_attention(out, q, k, NULL, lens, 1, 2, 1, 8, 4, 0, NULL),
                       "'v_cache' is NULL");
    fgi_expect_refused(fg_cuda_decode_attention(out, q, k, v, NULL, 1, 2, 1, 8, 4, 0, NULL),
                       "'kv_lens' is NULL");
    fgi_expect_refused(fg_cuda_decode_attention(out, q, k, v, lens, 0, 2, 1, 8, 4, 0, NULL),
                       "'batch'");
    fgi_expect_refused(fg_cuda_decode_attention(out, q, k, v, lens, 1, 0, 1, 8, 4, 0, NULL),
                       "'n_q_head'");
    fgi_expect_refused(fg_cuda_decode_attention(out, q, k, v, lens, 1, 3, 2, 8, 4, 0, NULL),
                       "multiple of n_kv_head");
    fgi_expect_refused(fg_cuda_decode_attention(out, q, k, v, lens, 1, 2, 1, 0, 4, 0, NULL),
                       "'head_dim'");
    fgi_expect_refused(fg_cuda_decode_attention(out, q, k, v, lens, 1, 2, 1, 8, 0, 0, NULL),
                       "'capacity'");
    fgi_expect_refused(fg_cuda_decode_attention(out, q, k, v, lens, 1, 2, 1, 8, 4, -1, NULL),
                       "'window'");
    fgi_expect_refused(fg_cuda_decode_attention(out, q, k, v, lens, 1 << 30, 1 << 30, 1, 8, 4, 0,
                                                NULL),
                       "overflow");
    fgi_expect_refused(fg_cuda_decode_attention(out, out, k, v, lens, 1, 2, 1, 8, 4, 0, NULL),
                       "overlap");
    fgi_expect_refused(fg_cuda_decode_attention(out, q, k, out + 4, lens, 1, 2, 1, 8, 4, 0, NULL),
                       "overlap");
    fgi_expect_refused(fg_cuda_decode_attention(out, q + 1, k, v, lens, 1, 2, 1, 8, 4, 0, NULL),
                       "16-byte aligned");
    fgi_expect_refused(fg_cuda_decode_attention_typed((fg_dtype)7, out, q, k, v, lens, 1, 2, 1, 8,
                                                      4, 0, NULL),
                       "'dtype'");
    fgi_expect_refused(fg_cuda_decode_attention_typed(bf, out, q, k, NULL, lens, 1, 2, 1, 8, 4, 0,
                                                      NULL),
                       "'v_cache' is NULL");
    fgi_expect_refused(fg_cuda_decode_attention_typed(bf, out, q, (char *)k + 2, v, lens, 1, 2, 1,
                                                      8, 4, 0, NULL),
                       "16-byte aligned");
    static int table[4];
    fgi_expect_refused(fg_cuda_decode_attention_paged(bf, out, q, k, v, 4, 16, NULL, 2, lens, 1,
                                                      2, 1, 8, 0, NULL),
                       "'block_tables' is NULL");
    fgi_expect_refused(fg_cuda_decode_attention_paged(bf, out, q, k, v, 4, 24, table, 2, lens, 1,
                                                      2, 1, 8, 0, NULL),
                       "multiple of 16");
    fgi_expect_refused(fg_cuda_decode_attention_paged(bf, out, q, k, v, 0, 16, table, 2, lens, 1,
                                                      2, 1, 8, 0, NULL),
                       "'n_blocks'");
    fgi_expect_refused(fg_cuda_decode_attention_paged(bf, out, q, k, v, 4, 16, table, 0, lens, 1,
                                                      2, 1, 8, 0, NULL),
                       "'max_blocks'");
    fgi_expect_refused(fg_cuda_decode_attention_paged(bf, out, q, k, v, 4, 16, (int *)out, 2,
                                                      lens, 1, 2, 1, 8, 0, NULL),
                       "overlap");
    fgi_expect_refused(fg_cuda_decode_attention_paged(bf, out, q, k, v, 4, 16, table, 2, lens, 1,
                                                      2, 1, 8, -4, NULL),
                       "'window'");
    /* no kernel for these head dims: unsupported, before any device access */
#ifdef FG_HAVE_CUDA
    fgi_assert_status(fg_cuda_decode_attention_typed(bf, out, q, k, v, lens, 1, 2, 1, 12, 4, 0,
                                                     NULL),
                      FG_ERR_UNSUPPORTED, "head_dim 12");
    fgi_assert_status(fg_cuda_decode_attention(out, q, k, v, lens, 1, 1, 1, 6, 4, 0, NULL),
                      FG_ERR_UNSUPPORTED, "head_dim 6");
    fgi_assert_status(fg_cuda_decode_attention(out, q, k, v, lens, 1, 1, 1, 260, 1, 0, NULL),
                      FG_ERR_UNSUPPORTED, "head_dim 260");
#endif
    for (int i = 0; i < 64; i++) cr_assert(out[i] == 0.0f, "output written by a refused call");
}

/* Valid arguments on a machine without a GPU: a clear error, not a crash. */
Test(cuda_decode16, no_device_is_a_clear_error)
{
    if (fg_cuda_available()) cr_skip_test("a GPU is present: this checks the no-GPU path");
    static _Alignas(16) float q[64], k[256], v[256], out[64];
    static int lens[2] = {3, 4};
    fgi_expect_no_device(fg_cuda_decode_attention(out, q, k, v, lens, 2, 2, 1, 8, 4, 0, NULL));
    fgi_expect_no_device(fg_cuda_decode_attention_typed(FG_DTYPE_F16, out, q, k, v, lens, 2, 2, 1,
                                                        8, 4, 2, NULL));
    static int table[4] = {0, 1, 2, 3};
    fgi_expect_no_device(fg_cuda_decode_attention_paged(FG_DTYPE_BF16, out, q, k, v, 4, 16, table,
                                                        2, lens, 2, 2, 1, 8, 0, NULL));
    for (int i = 0; i < 64; i++) cr_assert(out[i] == 0.0f, "output written without a device");
}

/* On the device, a refused call leaves the output exactly as it was. */
Test(cuda_decode16, refused_calls_write_nothing)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(1607);
    dcase k;
    memset(&k, 0, sizeof k);
    k.dt = FG_DTYPE_BF16, k.batch = 2, k.n_q = 4, k.n_kv = 2, k.d = 64, k.capacity = 20;
    k.lens[0] = 5, k.lens[1] = 20;
    host_in in;
    host_make(&in, &rng, &k);
    dev_in d = dev_make(&k, &in);
    float *before = fgi_dev_download(d.out, dev_floats(k.dt, in.nq));
    fgi_assert_status(fg_cuda_decode_attention_typed(k.dt, d.out, d.q, d.k, d.v, d.lens, 2, 4, 2,
                                                     64, 20, -2, NULL),
                      FG_ERR_INVALID_ARG, "'window'");
    fgi_assert_status(fg_cuda_decode_attention_typed(k.dt, d.out, d.q, d.k, d.v, d.lens, 2, 4, 2,
                                                     60, 20, 0, NULL),
                      FG_ERR_UNSUPPORTED, "head_dim");
    check_ok(fg_cuda_synchronize(NULL), "synchronize");
    float *after = fgi_dev_download(d.out, dev_floats(k.dt, in.nq));
    fgi_assert_same(after, before, sizeof(float) * dev_floats(k.dt, in.nq), "refused call output");
    fgi_buf_free(before), fgi_buf_free(after);
    dev_free(&d), host_free(&in);
}
