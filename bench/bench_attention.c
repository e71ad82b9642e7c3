/* Attention benchmark: causal prefill and GQA decode through the same entry
 * the decoder uses (fgi_cuda_attention with a preallocated workspace).
 *
 * Method: CUDA events around each call, a few warm-up calls, the median of
 * --runs calls (default 30, at least 20); the inputs rotate among enough
 * buffer sets to exceed 4x a 50 MB L2, so no run starts with its K/V cached.
 * Each call is queued behind a short GPU hold (bench/gpu_hold.cu, --hold-us,
 * default 1000; 0: none), so the events time the GPU's work and not the
 * host's planning and launch latency, as a captured decode step runs; the
 * automatic line also gives call_ms, the median of a call on an idle stream
 * (the old method, host included), and a warning line counts calls whose
 * enqueueing outlasted the hold.
 * Output, one line per case (stable, machine-readable, read by
 * bench/sdpa_peer.py):
 *   prefill B=8 H=16 S=1024 D=64 ms=0.1234 tflops=12.34 call_ms=0.1300
 *   decode B=1 Hq=32 Hkv=8 D=128 kv=4096 ms=0.0123 gbps=1234.5 call_ms=0.0200
 * prefill counts 4*B*H*S^2*D flops halved for causal; decode counts the K and
 * V bytes read, 2*B*Hkv*kv*D*4. Numbers go to stdout (and --out FILE), never
 * to a test verdict.
 * --sweep adds, per case, lines "sweep kernel=K splits=N tile=T <case> ..."
 * (or lanes=L for the decode kernel's lanes per key; splits=0: automatic)
 * for a grid of forced kernels, split counts, key tiles and lane counts
 * (tuning data; the automatic choice is the plain line).
 * --case N runs only the N-th case of the table (1-based), for a profiler.
 * --dtype f32|bf16|f16 (default f32) is the element type of q, k, v and
 * out: bf16 / f16 prefill runs the 16-bit tensor-core kernel
 * (fgi_cuda_attention16; --sweep adds nothing there, it has one
 * configuration); decode cases in a 16-bit type are listed as skipped
 * until a 16-bit decode path is timed here. --kernel auto|sm80|sm90
 * (default: as FG_ATTENTION16_KERNEL says, else auto) picks the 16-bit
 * prefill kernel: the sm_80 mma.sync one or
 * the sm_90a wgmma/TMA one (head_dim 64 and 128 on Hopper; auto takes it
 * there), to compare the two in one build; the header line says which runs
 * ("kernel16 d64=sm90 d128=sm90"). Every table run first prints
 * the card's device-to-device copy bandwidth (fg_cuda_copy_bandwidth, 1 GiB:
 *   copy bytes=1073741824 ms=0.4321 gbps=4970.1
 * ), the line memory-bound results are compared against.
 *
 * Sweeps for charts (issue 19; bench/plot.py draws them), run instead of the
 * table: --sweep-prefill times causal prefill at S = 512 .. 16384 (H 16, the
 * batch keeping B*S = 16384 tokens) at D 64 and 128; --sweep-decode times
 * GQA decode (32/8 heads, D 128) at kv = 1k .. 128k, batch 1 and 8;
 * --ceilings measures the card's lines for those charts: cuBLAS SGEMM on
 * 8192-square fp32 matrices (TFLOP/s, no TF32) and a device-to-device copy
 * of 1 GiB (GB/s counting the read and the write). The same points are in
 * bench/sdpa_peer.py. --csv FILE appends one row per point (header when the
 * file is new): date, card, --commit, peer version ("-" for ours), sweep,
 * implementation, dtype, shape, ms, value, unit. --tiny shrinks every sweep
 * to a few small points, to prove the code path on the CUDA emulator.
 *
 * Batched decode (fg_cuda_decode_attention's entry, after the table, in
 * --dtype f32|bf16|f16; the table's fp32 decode rows run in f32 only): GQA
 * 32/8 heads, D 128, batch 1 and 8 at kv 4096 and 32768, and batch 8 with
 * key counts 4096, 8192, .. 32768 in one call. GB/s counts the K and V
 * bytes read (2*Hkv*D*element size*the key counts); every decode line also
 * gives copy_pct, its GB/s as a percentage of a 1 GiB device-to-device
 * copy measured at the start of the same run (the "ceiling copy" line;
 * not with --case). Lines:
 *   decode dtype=bf16 B=8 Hq=32 Hkv=8 D=128 kv=4096 ms=0.1 gbps=1.0 copy_pct=1.0
 *   decode dtype=bf16 B=8 Hq=32 Hkv=8 D=128 kv=mixed4096-32768 ms=...
 * With --tiny the table gives way to two emulator-sized batched cases.
 * Usage: bench_attention [--runs N] [--out FILE] [--only prefill|decode]
 *                        [--case N] [--hold-us N] [--sweep] [--dtype T]
 *                        [--sweep-prefill] [--sweep-decode] [--ceilings]
 *                        [--csv FILE] [--commit ID] [--tiny]
 *                        [--dtype f32|bf16|f16] [--kernel auto|sm80|sm90] */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "flashgpt/flashgpt.h"
#include "../cuda/attention/attention_internal.h"
#include "bench_common.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROTATE_BYTES ((size_t)200 << 20) /* 4x the H100's 50 MB L2 */
#define MAX_SETS 16
#define MAX_TOTAL_BYTES ((size_t)24 << 30)
#define WARMUP 3
#define MAX_TUNES 24 /* configurations per case (case_tunings) */
#define DEFAULT_HOLD_US 1000

typedef struct {
    const char *kind; /* "prefill" or "decode" */
    int B, Hq, Hkv, S, kv, D;
} bench_case;

static const bench_case cases[] = {
    {"prefill", 8, 16, 16, 1024, 1024, 64},
    {"prefill", 4, 16, 16, 4096, 4096, 64},
    {"prefill", 2, 16, 16, 8192, 8192, 128},
    {"prefill", 4, 32, 32, 4096, 4096, 128},
    {"decode", 1, 32, 8, 1, 4096, 128},
    {"decode", 8, 32, 8, 1, 4096, 128},
    {"decode", 1, 32, 8, 1, 32768, 128},
    {"decode", 8, 32, 8, 1, 32768, 128},
};

/* Element type of the timed tensors (--dtype): f32 through the fp32
 * kernels' entry, bf16 / f16 through the 16-bit one. */
static fg_dtype bench_dtype = FG_DTYPE_F32;

/* The dtype as the CSV column and header write it (fp32 as before). */
/* The 16-bit prefill kernel at head_dim d for the run's type (bf16 when it
 * is fp32): with the automatic pick on a Hopper card, the sm_90a kernel's
 * self-check runs here, so the header says what the rows below ran. */
static const char *kernel16_name(int d, char *buf, size_t len)
{
    const fg_dtype dt = bench_dtype == FG_DTYPE_F32 ? FG_DTYPE_BF16 : bench_dtype;
    if (fgi_attention16_pick(d) != 2) return "sm80";
    double rel = 0.0;
    const bool trusted = fgi_attention16_sm90_trusted("bench_attention", dt, d, NULL);
    const int state = fgi_attention16_selfcheck_state(dt, d, &rel);
    if (state == 0) snprintf(buf, len, trusted ? "sm90 (forced)" : "sm80 (sm90 self-check not run)");
    else snprintf(buf, len, "%s (sm90 self-check %s: rel_l2 %.2g)", trusted ? "sm90" : "sm80",
                  state == 1 ? "agreed" : "FAILED", rel);
    return buf;
}

static const char *dtype_label(void)
{
    return bench_dtype == FG_DTYPE_F32 ? "fp32" : fg_dtype_name(bench_dtype);
}

/* Whether this case is timed in bench_dtype: every case in f32; in a 16-bit
 * type prefill only (the 16-bit decode path is timed elsewhere). */
static int case_runs_in_dtype(const bench_case *c)
{
    return bench_dtype == FG_DTYPE_F32 || strcmp(c->kind, "prefill") == 0;
}

/* Device tensors of bench_dtype elements. */
typedef struct {
    void *q, *k, *v, *out;
} buffer_set;

/* A forced configuration; all zero: the automatic choice. */
typedef struct {
    fgi_attention_kernel kernel;
    int n_splits, block_size, decode_lanes;
} bench_tuning;

/* The buffers of one case: rotated input sets and the split workspace. */
typedef struct {
    const buffer_set *sets;
    int n_sets;
    void *workspace;
    size_t ws_bytes;
} case_buffers;

/* How calls are timed: events around each call; hold_us > 0 queues a GPU
 * hold (bench/gpu_hold.cu) before the start event, so the events time the
 * GPU's work alone; hold_us == 0 times a call on an idle stream, the host's
 * planning and the launch latency included. */
typedef struct {
    cudaEvent_t start, stop;
    float *times; /* runs entries */
    int runs;
    unsigned hold_us;
    int exposed; /* calls whose enqueueing outlasted the hold */
} call_timer;

static double host_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

/* Median milliseconds of one configuration over the rotated buffer sets, or
 * a negative value when the call fails (the reason is on stderr). */
static double time_tuning(const bench_case *c, const bench_tuning *tune, const case_buffers *buf,
                          call_timer *timer)
{
    const int n_q = c->B * c->Hq, n_kv = c->B * c->Hkv; /* batch folds into heads */
    int ok = 1;
    for (int r = -WARMUP; ok && r < timer->runs; r++) {
        const buffer_set *b = &buf->sets[(r + WARMUP) % buf->n_sets];
        if (bench_dtype != FG_DTYPE_F32) {
            /* the 16-bit kernel: one configuration, contiguous tensors */
            fgi_attention16_args a16;
            memset(&a16, 0, sizeof a16);
            a16.dtype = bench_dtype;
            a16.out = b->out, a16.out_head_stride = (long long)c->S * c->D;
            a16.out_row_stride = c->D;
            a16.q = b->q, a16.q_head_stride = (long long)c->S * c->D, a16.q_row_stride = c->D;
            a16.k = b->k, a16.v = b->v, a16.kv_head_stride = (long long)c->kv * c->D;
            a16.n_q_head = n_q, a16.n_kv_head = n_kv, a16.q_len = c->S, a16.kv_len = c->kv;
            a16.head_dim = c->D;
            const double enqueue_start = host_us();
            ok = (timer->hold_us == 0 ||
                  bench_check_cuda(bench_gpu_hold(timer->hold_us, NULL), "hold")) &&
                 bench_check_cuda(cudaEventRecord(timer->start, NULL), "record") &&
                 bench_check(fgi_cuda_attention16("bench_attention", &a16, NULL), "attention") &&
                 bench_check_cuda(cudaEventRecord(timer->stop, NULL), "record");
            if (ok && timer->hold_us > 0 && r >= 0 && host_us() - enqueue_start >= timer->hold_us)
                timer->exposed++;
            ok = ok && bench_check_cuda(cudaEventSynchronize(timer->stop), "synchronize");
            float ms = 0.0f;
            if (ok && r >= 0)
                ok = bench_check_cuda(cudaEventElapsedTime(&ms, timer->start, timer->stop),
                                      "elapsed");
            if (ok && r >= 0) timer->times[r] = ms;
            continue;
        }
        fgi_attention_args a;
        memset(&a, 0, sizeof a);
        a.out = b->out, a.out_head_stride = (long long)c->S * c->D, a.out_row_stride = c->D;
        a.q = b->q, a.q_head_stride = (long long)c->S * c->D, a.q_row_stride = c->D;
        a.k = b->k, a.v = b->v, a.kv_head_stride = (long long)c->kv * c->D;
        a.n_q_head = n_q, a.n_kv_head = n_kv, a.q_len = c->S, a.kv_len = c->kv;
        a.head_dim = c->D;
        a.block_size = tune->block_size;
        fgi_attention_tuning t = {tune->kernel, tune->n_splits, FGI_ATTENTION_AUTO, 0,
                                  tune->decode_lanes};
        const double enqueue_start = host_us();
        ok = (timer->hold_us == 0 || bench_check_cuda(bench_gpu_hold(timer->hold_us, NULL), "hold")) &&
             bench_check_cuda(cudaEventRecord(timer->start, NULL), "record") &&
             bench_check(fgi_cuda_attention_tuned("bench_attention", &a, &t, buf->workspace,
                                            buf->ws_bytes, NULL),
                   "attention") &&
             bench_check_cuda(cudaEventRecord(timer->stop, NULL), "record");
        if (ok && timer->hold_us > 0 && r >= 0 && host_us() - enqueue_start >= timer->hold_us)
            timer->exposed++;
        ok = ok && bench_check_cuda(cudaEventSynchronize(timer->stop), "synchronize");
        float ms = 0.0f;
        if (ok && r >= 0)
            ok = bench_check_cuda(cudaEventElapsedTime(&ms, timer->start, timer->stop), "elapsed");
        if (ok && r >= 0) timer->times[r] = ms;
    }
    if (ok) {
        /* A finite first output row, or the timing means nothing. */
        float first[8], raw[8];
        ok = bench_check(fg_cuda_download(raw, buf->sets[0].out, 8 * fg_dtype_size(bench_dtype)),
                         "download") &&
             bench_check(fg_dtype_to_f32(bench_dtype, first, raw, 8), "widen");
        for (int i = 0; ok && i < 8; i++)
            if (!(first[i] == first[i]) || first[i] > 1e30f || first[i] < -1e30f) {
                fprintf(stderr, "bench_attention: non-finite output\n");
                ok = 0;
            }
    }
    if (!ok) return -1.0;
    return bench_median(timer->times, timer->runs);
}

/* What one case measured: per configuration, the median milliseconds of the
 * GPU's work (negative where a call failed); for the first (automatic) one
 * also the median of a call on an idle stream; and the calls whose
 * enqueueing outlasted the hold (their host time leaked into the number). */
typedef struct {
    double medians[MAX_TUNES];
    double idle_call_ms;
    int exposed;
} case_times;

/* Times one case under each of n_tunes configurations (one set of buffers
 * for all). Returns 0 when the buffers could not be set up. */
static int time_case(const bench_case *c, const bench_tuning *tunes, int n_tunes, int runs,
                     unsigned hold_us, case_times *out)
{
    const int n_q = c->B * c->Hq, n_kv = c->B * c->Hkv;
    const size_t q_elems = (size_t)n_q * c->S * c->D, kv_elems = (size_t)n_kv * c->kv * c->D;
    const size_t elem = fg_dtype_size(bench_dtype);
    const size_t set_bytes = elem * (2 * q_elems + 2 * kv_elems);
    int n_sets = (int)((ROTATE_BYTES + set_bytes - 1) / set_bytes);
    if (n_sets < 2) n_sets = 2;
    if (n_sets > MAX_SETS) n_sets = MAX_SETS;
    while (n_sets > 1 && (size_t)n_sets * set_bytes > MAX_TOTAL_BYTES) n_sets--;

    buffer_set sets[MAX_SETS];
    memset(sets, 0, sizeof sets);
    float *host_q = malloc(sizeof(float) * q_elems), *host_kv = malloc(sizeof(float) * kv_elems);
    void *typed_q = malloc(elem * q_elems), *typed_kv = malloc(elem * kv_elems);
    void *workspace = NULL;
    cudaEvent_t start = NULL, stop = NULL;
    float *times = calloc((size_t)runs, sizeof(float));
    int ok = host_q != NULL && host_kv != NULL && typed_q != NULL && typed_kv != NULL &&
             times != NULL;
    unsigned long long state = 0x5eedULL;
    if (ok) {
        bench_fill_random(host_q, q_elems, 2.0, &state);
        bench_fill_random(host_kv, kv_elems, 2.0, &state);
        ok = bench_check(fg_dtype_from_f32(bench_dtype, typed_q, host_q, q_elems), "narrow q") &&
             bench_check(fg_dtype_from_f32(bench_dtype, typed_kv, host_kv, kv_elems), "narrow kv");
    }
    for (int s = 0; ok && s < n_sets; s++) {
        ok = bench_check(fg_cuda_malloc(&sets[s].q, elem * q_elems), "malloc q") &&
             bench_check(fg_cuda_malloc(&sets[s].out, elem * q_elems), "malloc out") &&
             bench_check(fg_cuda_malloc(&sets[s].k, elem * kv_elems), "malloc k") &&
             bench_check(fg_cuda_malloc(&sets[s].v, elem * kv_elems), "malloc v") &&
             bench_check(fg_cuda_upload(sets[s].q, typed_q, elem * q_elems), "upload q") &&
             bench_check(fg_cuda_upload(sets[s].k, typed_kv, elem * kv_elems), "upload k") &&
             bench_check(fg_cuda_upload(sets[s].v, typed_kv, elem * kv_elems), "upload v");
    }
    const size_t ws_bytes = fgi_cuda_attention_workspace_bound(n_q, c->S, c->kv, c->D);
    if (ok && ws_bytes > 0)
        ok = bench_check(fg_cuda_malloc(&workspace, ws_bytes), "malloc workspace") &&
             bench_check(fg_cuda_memset(workspace, 0, ws_bytes), "zero workspace");
    ok = ok && bench_check_cuda(cudaEventCreate(&start), "event") && bench_check_cuda(cudaEventCreate(&stop), "event");
    const case_buffers buf = {sets, n_sets, workspace, ws_bytes};
    call_timer timer = {start, stop, times, runs, hold_us, 0};
    for (int i = 0; i < n_tunes; i++)
        out->medians[i] = ok ? time_tuning(c, &tunes[i], &buf, &timer) : -1.0;
    out->exposed = timer.exposed;
    timer.hold_us = 0;
    out->idle_call_ms = ok && hold_us > 0 ? time_tuning(c, &tunes[0], &buf, &timer) : -1.0;
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    for (int s = 0; s < n_sets; s++) {
        fg_cuda_free(sets[s].q), fg_cuda_free(sets[s].k);
        fg_cuda_free(sets[s].v), fg_cuda_free(sets[s].out);
    }
    fg_cuda_free(workspace);
    free(host_q), free(host_kv), free(typed_q), free(typed_kv), free(times);
    return ok;
}

/* GB/s of the run's device-to-device copy (0: not measured): decode lines
 * give their GB/s as a percentage of it. */
static double copy_gbps;

/* printf to stdout and, when open, to the --out file. */
static void print_both(FILE *file, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
    if (file) {
        va_start(ap, fmt);
        vfprintf(file, fmt, ap);
        va_end(ap);
        fflush(file);
    }
}

/* One result line (stdout and the --out file); suffix (may be empty) goes
 * after the rate. */
static void report(FILE *file, const char *prefix, const bench_case *c, double ms,
                   const char *suffix)
{
    if (strcmp(c->kind, "prefill") == 0) {
        const double flops = 4.0 * c->B * c->Hq * (double)c->S * c->S * c->D / 2.0;
        print_both(file, "%sprefill B=%d H=%d S=%d D=%d ms=%.4f tflops=%.2f%s\n", prefix, c->B,
                   c->Hq, c->S, c->D, ms, flops / (ms * 1e-3) / 1e12, suffix);
    } else {
        const double bytes = 2.0 * c->B * c->Hkv * (double)c->kv * c->D * fg_dtype_size(bench_dtype);
        const double gbps = bytes / (ms * 1e-3) / 1e9;
        char pct[32] = "";
        if (copy_gbps > 0) snprintf(pct, sizeof pct, " copy_pct=%.1f", 100.0 * gbps / copy_gbps);
        print_both(file, "%sdecode B=%d Hq=%d Hkv=%d D=%d kv=%d ms=%.4f gbps=%.1f%s%s\n", prefix,
                   c->B, c->Hq, c->Hkv, c->D, c->kv, ms, gbps, pct, suffix);
    }
}

/* The configurations timed for one case: the automatic choice first, then
 * with --sweep a tuning grid (prefill: the FFMA tiled kernel at each key
 * tile and the 3xTF32 tensor-core kernel; decode: the decode kernel at each
 * split count, then 8 and 16 lanes per key at a few). Returns the count. */
static int case_tunings(const bench_case *c, int sweep, bench_tuning *tunes)
{
    static const int tiles[] = {16, 32, 64};
    static const int splits[] = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128};
    static const int lane_splits[] = {0, 16, 32, 48}; /* 0: the automatic count */
    int n = 0;
    tunes[n++] = (bench_tuning){FGI_ATTENTION_AUTO, 0, 0, 0};
    if (!sweep || bench_dtype != FG_DTYPE_F32) return n;
    if (strcmp(c->kind, "prefill") == 0) {
        for (int i = 0; i < 3; i++) tunes[n++] = (bench_tuning){FGI_ATTENTION_TILED, 0, tiles[i], 0};
        for (int i = 1; i < 3; i++) tunes[n++] = (bench_tuning){FGI_ATTENTION_MMA, 0, tiles[i], 0};
    } else {
        for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++)
            tunes[n++] = (bench_tuning){FGI_ATTENTION_DECODE, splits[i], 0, 0};
        for (int lanes = 8; lanes <= 16; lanes += 8)
            for (size_t i = 0; i < sizeof lane_splits / sizeof lane_splits[0]; i++)
                tunes[n++] = (bench_tuning){FGI_ATTENTION_DECODE, lane_splits[i], 0, lanes};
    }
    return n;
}

static void report_tuning(FILE *file, const bench_case *c, const bench_tuning *t, double ms,
                          const char *suffix)
{
    static const char *names[] = {"auto", "tiled", "decode", "generic", "mma"};
    char prefix[96] = "";
    if (t->kernel != FGI_ATTENTION_AUTO && t->decode_lanes != 0)
        snprintf(prefix, sizeof prefix, "sweep kernel=%s splits=%d lanes=%d ", names[t->kernel],
                 t->n_splits, t->decode_lanes);
    else if (t->kernel != FGI_ATTENTION_AUTO)
        snprintf(prefix, sizeof prefix, "sweep kernel=%s splits=%d tile=%d ", names[t->kernel],
                 t->n_splits, t->block_size);
    report(file, prefix, c, ms, suffix);
}

/* Batched decode ------------------------------------------------------------ */

/* One batched decode case: key counts all at capacity, or (mixed) sequence
 * b at capacity*(b+1)/B. bench/sdpa_peer.py holds the same list. */
typedef struct {
    int B, Hq, Hkv, D, capacity, mixed;
} batch_case;

static const batch_case batch_cases[] = {
    {1, 32, 8, 128, 4096, 0},  {8, 32, 8, 128, 4096, 0},  {1, 32, 8, 128, 32768, 0},
    {8, 32, 8, 128, 32768, 0}, {8, 32, 8, 128, 32768, 1},
};
static const batch_case tiny_batch_cases[] = {{1, 4, 2, 32, 64, 0}, {3, 4, 2, 32, 256, 1}};

static int batch_len(const batch_case *c, int b)
{
    return c->mixed ? (int)((long long)c->capacity * (b + 1) / c->B) : c->capacity;
}

/* Device tensors of one rotated set. */
typedef struct {
    void *q, *k, *v, *out;
} batch_set;

/* Fills n elements of dtype at dev with a repeated block of random values
 * (timing needs no more than finite, varied data). */
static int fill_device(void *dev, fg_dtype dtype, size_t n, unsigned long long *state)
{
    enum { BLOCK = 1 << 20 };
    const size_t es = fg_dtype_size(dtype);
    float *host = malloc(sizeof(float) * BLOCK);
    void *staged = malloc(es * BLOCK);
    int ok = host != NULL && staged != NULL;
    if (ok) bench_fill_random(host, BLOCK, 2.0, state);
    ok = ok && bench_check(fg_dtype_from_f32(dtype, staged, host, BLOCK), "convert");
    for (size_t at = 0; ok && at < n; at += BLOCK) {
        const size_t len = n - at < BLOCK ? n - at : BLOCK;
        ok = bench_check(fg_cuda_upload((char *)dev + es * at, staged, es * len), "upload");
    }
    free(host), free(staged);
    return ok;
}

/* Median milliseconds of one batched case in dtype (negative: failed, the
 * reason on stderr), with the method of time_tuning. */
static double time_batch_case(const batch_case *c, fg_dtype dtype, int runs, unsigned hold_us)
{
    const size_t es = fg_dtype_size(dtype);
    const size_t q_elems = (size_t)c->B * c->Hq * c->D;
    const size_t kv_elems = (size_t)c->B * c->Hkv * c->capacity * c->D;
    const size_t set_bytes = es * (2 * q_elems + 2 * kv_elems);
    int n_sets = (int)((ROTATE_BYTES + set_bytes - 1) / set_bytes);
    if (n_sets < 2) n_sets = 2;
    if (n_sets > MAX_SETS) n_sets = MAX_SETS;
    while (n_sets > 1 && (size_t)n_sets * set_bytes > MAX_TOTAL_BYTES) n_sets--;
    batch_set sets[MAX_SETS];
    memset(sets, 0, sizeof sets);
    int lens[64];
    for (int b = 0; b < c->B && b < 64; b++) lens[b] = batch_len(c, b);
    int *d_lens = NULL;
    void *workspace = NULL;
    size_t ws_bytes = 0;
    cudaEvent_t start = NULL, stop = NULL;
    float *times = calloc((size_t)runs, sizeof(float));
    unsigned long long state = 0xdec0deULL;
    int ok = times != NULL && c->B <= 64 &&
             bench_check(fg_cuda_malloc((void **)&d_lens, sizeof(int) * c->B), "malloc lens") &&
             bench_check(fg_cuda_upload(d_lens, lens, sizeof(int) * c->B), "upload lens");
    for (int s = 0; ok && s < n_sets; s++)
        ok = bench_check(fg_cuda_malloc(&sets[s].q, es * q_elems), "malloc q") &&
             bench_check(fg_cuda_malloc(&sets[s].out, es * q_elems), "malloc out") &&
             bench_check(fg_cuda_malloc(&sets[s].k, es * kv_elems), "malloc k") &&
             bench_check(fg_cuda_malloc(&sets[s].v, es * kv_elems), "malloc v") &&
             fill_device(sets[s].q, dtype, q_elems, &state) &&
             fill_device(sets[s].k, dtype, kv_elems, &state) &&
             fill_device(sets[s].v, dtype, kv_elems, &state);
    fgi_decode_args a = {.dtype = dtype, .batch = c->B, .n_q_head = c->Hq, .n_kv_head = c->Hkv,
                         .head_dim = c->D, .capacity = c->capacity};
    if (ok) {
        a.out = sets[0].out, a.q = sets[0].q, a.k_cache = sets[0].k, a.v_cache = sets[0].v;
        a.kv_lens = d_lens;
        ws_bytes = fgi_cuda_decode_workspace_bytes(&a);
        if (ws_bytes > 0)
            ok = bench_check(fg_cuda_malloc(&workspace, ws_bytes), "malloc workspace") &&
                 bench_check(fg_cuda_memset(workspace, 0, ws_bytes), "zero workspace");
        ok = ok && bench_check_cuda(cudaEventCreate(&start), "event") &&
             bench_check_cuda(cudaEventCreate(&stop), "event");
    }
    int exposed = 0;
    for (int r = -WARMUP; ok && r < runs; r++) {
        const batch_set *b = &sets[(r + WARMUP) % n_sets];
        a.out = b->out, a.q = b->q, a.k_cache = b->k, a.v_cache = b->v;
        const double enqueue_start = host_us();
        ok = (hold_us == 0 || bench_check_cuda(bench_gpu_hold(hold_us, NULL), "hold")) &&
             bench_check_cuda(cudaEventRecord(start, NULL), "record") &&
             bench_check(fgi_cuda_decode_attention("bench_attention", &a, workspace, ws_bytes,
                                                   NULL, NULL),
                         "decode attention") &&
             bench_check_cuda(cudaEventRecord(stop, NULL), "record");
        if (ok && hold_us > 0 && r >= 0 && host_us() - enqueue_start >= hold_us) exposed++;
        ok = ok && bench_check_cuda(cudaEventSynchronize(stop), "synchronize");
        float ms = 0.0f;
        if (ok && r >= 0) ok = bench_check_cuda(cudaEventElapsedTime(&ms, start, stop), "elapsed");
        if (ok && r >= 0) times[r] = ms;
    }
    if (ok && exposed > 0)
        fprintf(stderr, "bench_attention: %d calls took longer to enqueue than the hold\n",
                exposed);
    if (ok) {
        /* a finite first output row, or the timing means nothing */
        unsigned char raw[8 * 4];
        float first[8];
        ok = bench_check(fg_cuda_download(raw, sets[0].out, es * 8), "download") &&
             bench_check(fg_dtype_to_f32(dtype, first, raw, 8), "convert");
        for (int i = 0; ok && i < 8; i++)
            if (!(first[i] == first[i]) || first[i] > 1e30f || first[i] < -1e30f) {
                fprintf(stderr, "bench_attention: non-finite decode output\n");
                ok = 0;
            }
    }
    const double ms = ok ? bench_median(times, runs) : -1.0;
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    for (int s = 0; s < n_sets; s++) {
        fg_cuda_free(sets[s].q), fg_cuda_free(sets[s].k);
        fg_cuda_free(sets[s].v), fg_cuda_free(sets[s].out);
    }
    fg_cuda_free(workspace), fg_cuda_free(d_lens);
    free(times);
    return ms;
}

/* Times every batched case in dtype, one line each. Returns 0 if any failed. */
static int run_batch_decode(fg_dtype dtype, int tiny, int runs, unsigned hold_us, FILE *file)
{
    const batch_case *list = tiny ? tiny_batch_cases : batch_cases;
    const int n = tiny ? (int)(sizeof tiny_batch_cases / sizeof tiny_batch_cases[0])
                       : (int)(sizeof batch_cases / sizeof batch_cases[0]);
    int all_ok = 1;
    for (int i = 0; i < n; i++) {
        const batch_case *c = &list[i];
        char kv[48];
        double keys = 0;
        for (int b = 0; b < c->B; b++) keys += batch_len(c, b);
        if (c->mixed)
            snprintf(kv, sizeof kv, "mixed%d-%d", batch_len(c, 0), batch_len(c, c->B - 1));
        else
            snprintf(kv, sizeof kv, "%d", c->capacity);
        const double ms = time_batch_case(c, dtype, runs, hold_us);
        if (ms < 0) {
            printf("decode dtype=%s B=%d kv=%s failed\n", fg_dtype_name(dtype), c->B, kv);
            all_ok = 0;
            continue;
        }
        const double gbps =
            2.0 * c->Hkv * c->D * (double)fg_dtype_size(dtype) * keys / (ms * 1e-3) / 1e9;
        char pct[32] = "";
        if (copy_gbps > 0) snprintf(pct, sizeof pct, " copy_pct=%.1f", 100.0 * gbps / copy_gbps);
        print_both(file, "decode dtype=%s B=%d Hq=%d Hkv=%d D=%d kv=%s ms=%.4f gbps=%.1f%s\n",
                   fg_dtype_name(dtype), c->B, c->Hq, c->Hkv, c->D, kv, ms, gbps, pct);
    }
    return all_ok;
}

/* Sweep points (issue 19); bench/sdpa_peer.py holds the same lists. */
static const int sweep_seqs[] = {512, 1024, 2048, 4096, 8192, 16384};
static const int sweep_kvs[] = {1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072};
static const int tiny_lens[] = {16, 32};
#define SWEEP_PREFILL_TOKENS 16384 /* B*S per prefill point */

/* The sweep's cases, in order: prefill (kind 'p') or decode ('d'); tiny:
 * a few emulator-sized points. Returns the count (at most max). */
static int sweep_cases(char kind, int tiny, bench_case *out, int max)
{
    int n = 0;
    const int *lens = kind == 'p' ? sweep_seqs : sweep_kvs;
    int n_lens = kind == 'p' ? (int)(sizeof sweep_seqs / sizeof sweep_seqs[0])
                             : (int)(sizeof sweep_kvs / sizeof sweep_kvs[0]);
    if (tiny) lens = tiny_lens, n_lens = 2;
    for (int outer = 0; outer < 2; outer++)
        for (int i = 0; i < n_lens && n < max; i++) {
            const int len = lens[i];
            if (kind == 'p') {
                const int D = outer == 0 ? 64 : 128;
                const int H = tiny ? 2 : 16;
                const int B = tiny ? 1 : (len >= SWEEP_PREFILL_TOKENS ? 1 : SWEEP_PREFILL_TOKENS / len);
                out[n++] = (bench_case){"prefill", B, H, H, len, len, D};
            } else {
                const int B = outer == 0 ? 1 : 8;
                out[n++] = tiny ? (bench_case){"decode", B, 4, 2, 1, len, 32}
                                : (bench_case){"decode", B, 32, 8, 1, len, 128};
            }
        }
    return n;
}

/* Where --csv rows go, and what every row carries. */
typedef struct {
    FILE *file;
    char date[32], card[256];
    const char *commit;
} csv_sink;

static void csv_row(const csv_sink *csv, const char *sweep, const bench_case *c, double ms,
                    double value, const char *unit)
{
    if (!csv->file) return;
    /* card names hold no commas or quotes (nvidia-smi style), so no quoting */
    if (c)
        fprintf(csv->file, "%s,%s,%s,-,%s,flashgpt,%s,%d,%d,%d,%d,%d,%d,%.5f,%.6g,%s\n",
                csv->date, csv->card, csv->commit, sweep, dtype_label(), c->B, c->Hq, c->Hkv,
                c->S, c->kv, c->D, ms, value, unit);
    else
        fprintf(csv->file, "%s,%s,%s,-,%s,%s,%s,,,,,,,%.5f,%.6g,%s\n", csv->date, csv->card,
                csv->commit, sweep,
                strcmp(sweep, "ceiling_gemm") != 0 ? "cudaMemcpy"
                : bench_dtype == FG_DTYPE_F32     ? "cublas"
                                                  : "cublaslt",
                strcmp(sweep, "ceiling_gemm") == 0 ? dtype_label() : "fp32", ms, value, unit);
    fflush(csv->file);
}

/* The card's ceilings for the sweep charts: the n x n x n matrix product
 * in bench_dtype — cuBLAS SGEMM for fp32 (fp32 inputs and math; the default
 * math mode, so no TF32), for bf16 / f16 the project's cuBLASLt GEMM
 * (fg_cuda_linear_typed: 16-bit operands, fp32 accumulation), which is
 * what a 16-bit prefill is measured against — and a device-to-device copy
 * of copy_bytes (fg_cuda_copy_bandwidth: GB/s = 2 * bytes / time, each byte
 * is read and written). Median of runs (at least 20), CUDA events around
 * each call. Returns 0 on a failure (reported on stderr). */
static int measure_ceilings(int n, size_t copy_bytes, int runs, FILE *out, const csv_sink *csv)
{
    const size_t mat = (size_t)n * n, es = fg_dtype_size(bench_dtype);
    void *a = NULL, *b = NULL, *c = NULL;
    cublasHandle_t blas = NULL;
    cudaEvent_t start = NULL, stop = NULL;
    float *times = calloc((size_t)runs, sizeof(float));
    float *host = malloc(sizeof(float) * mat);
    void *typed = malloc(es * mat); /* host in bench_dtype */
    int ok = times != NULL && host != NULL && typed != NULL;
    unsigned long long state = 0xc0ffeeULL;
    if (ok) bench_fill_random(host, mat, 1.0, &state);
    ok = ok && bench_check(fg_dtype_from_f32(bench_dtype, typed, host, mat), "narrow") &&
         bench_check(fg_cuda_malloc(&a, es * mat), "malloc a") &&
         bench_check(fg_cuda_malloc(&b, es * mat), "malloc b") &&
         bench_check(fg_cuda_malloc(&c, es * mat), "malloc c") &&
         bench_check(fg_cuda_upload(a, typed, es * mat), "upload a") &&
         bench_check(fg_cuda_upload(b, typed, es * mat), "upload b") &&
         bench_check_cuda(cudaEventCreate(&start), "event") &&
         bench_check_cuda(cudaEventCreate(&stop), "event");
    if (ok && cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "bench_attention: cublasCreate failed\n");
        ok = 0;
    }
    const float one = 1.0f, zero = 0.0f;
    for (int r = -WARMUP; ok && r < runs; r++) {
        ok = bench_check_cuda(cudaEventRecord(start, NULL), "record");
        if (ok && bench_dtype == FG_DTYPE_F32 &&
            cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, b, n, &zero, c,
                        n) != CUBLAS_STATUS_SUCCESS) {
            fprintf(stderr, "bench_attention: cublasSgemm failed\n");
            ok = 0;
        }
        if (ok && bench_dtype != FG_DTYPE_F32)
            ok = bench_check(fg_cuda_linear_typed(bench_dtype, c, a, b, NULL, n, n, n, NULL),
                             "16-bit GEMM");
        ok = ok && bench_check_cuda(cudaEventRecord(stop, NULL), "record") &&
             bench_check_cuda(cudaEventSynchronize(stop), "synchronize");
        float ms = 0.0f;
        if (ok && r >= 0) ok = bench_check_cuda(cudaEventElapsedTime(&ms, start, stop), "elapsed");
        if (ok && r >= 0) times[r] = ms;
    }
    const double ms = ok ? bench_median(times, runs) : 0.0;
    if (ok) {
        /* a finite product, or the timing means nothing */
        unsigned char raw[8 * sizeof(float)];
        float first[8];
        ok = bench_check(fg_cuda_download(raw, c, 8 * es), "download") &&
             bench_check(fg_dtype_to_f32(bench_dtype, first, raw, 8), "widen");
        for (int i = 0; ok && i < 8; i++)
            if (!(first[i] == first[i]) || first[i] > 1e30f || first[i] < -1e30f) {
                fprintf(stderr, "bench_attention: non-finite GEMM output\n");
                ok = 0;
            }
        const double tflops = 2.0 * n * (double)n * n / (ms * 1e-3) / 1e12;
        if (ok)
            print_both(out, "ceiling gemm dtype=%s n=%d ms=%.4f tflops=%.2f\n", dtype_label(), n,
                       ms, tflops);
        if (ok) csv_row(csv, "ceiling_gemm", NULL, ms, tflops, "TFLOP/s");
    }
    double gbps = 0.0;
    if (ok && bench_check(fg_cuda_copy_bandwidth(copy_bytes, runs, &gbps), "copy bandwidth")) {
        const double copy_ms = 2.0 * (double)copy_bytes / (gbps * 1e9) * 1e3; /* the median */
        print_both(out, "ceiling copy bytes=%zu ms=%.4f gbps=%.1f\n", copy_bytes, copy_ms, gbps);
        csv_row(csv, "ceiling_copy", NULL, copy_ms, gbps, "GB/s");
    } else {
        ok = 0;
    }
    if (blas) cublasDestroy(blas);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    fg_cuda_free(a), fg_cuda_free(b), fg_cuda_free(c);
    free(times), free(host), free(typed);
    return ok;
}

/* Runs one sweep (kind 'p' or 'd') through the automatic configuration;
 * one plain result line and one CSV row per point. Returns 0 if any point
 * failed. */
static int run_sweep(char kind, int tiny, int runs, unsigned hold_us, FILE *out,
                     const csv_sink *csv)
{
    bench_case points[32];
    const int n = sweep_cases(kind, tiny, points, 32);
    int all_ok = 1;
    for (int i = 0; i < n; i++) {
        const bench_case *c = &points[i];
        double ms = -1.0;
        case_times times = {0};
        if (case_runs_in_dtype(c)) {
            bench_tuning automatic = {FGI_ATTENTION_AUTO, 0, 0, 0};
            if (time_case(c, &automatic, 1, runs, hold_us, &times)) ms = times.medians[0];
        } else { /* 16-bit decode: the split-KV kernel over a 16-bit cache */
            const batch_case bc = {c->B, c->Hq, c->Hkv, c->D, c->kv, 0};
            ms = time_batch_case(&bc, bench_dtype, runs, hold_us);
        }
        if (ms < 0) {
            printf("%s dtype=%s B=%d S=%d kv=%d failed\n", c->kind, dtype_label(), c->B, c->S,
                   c->kv);
            all_ok = 0;
            continue;
        }
        report(out, "", c, ms, "");
        if (kind == 'p')
            csv_row(csv, "prefill", c, ms,
                    4.0 * c->B * c->Hq * (double)c->S * c->S * c->D / 2.0 / (ms * 1e-3) / 1e12,
                    "TFLOP/s");
        else
            csv_row(csv, "decode", c, ms,
                    2.0 * c->B * c->Hkv * (double)c->kv * c->D * fg_dtype_size(bench_dtype) /
                        (ms * 1e-3) / 1e9,
                    "GB/s");
        if (times.exposed > 0)
            print_both(out, "# warning: %d calls took longer to enqueue than the hold\n",
                       times.exposed);
    }
    return all_ok;
}

int main(int argc, char **argv)
{
    int kernel16 = -1; /* --kernel: 0 auto, 1 sm80, 2 sm90; -1 as the environment says */
    int runs = 30;
    const char *out_path = NULL, *only = NULL;
    int sweep = 0, only_case = 0, sweep_prefill = 0, sweep_decode = 0, ceilings = 0, tiny = 0;
    const char *csv_path = NULL, *commit = "unknown";
    long hold_us = DEFAULT_HOLD_US;
    const int n_cases = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out_path = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) only_case = atoi(argv[++i]);
        else if (strcmp(argv[i], "--hold-us") == 0 && i + 1 < argc) hold_us = atol(argv[++i]);
        else if (strcmp(argv[i], "--sweep") == 0) sweep = 1;
        else if (strcmp(argv[i], "--sweep-prefill") == 0) sweep_prefill = 1;
        else if (strcmp(argv[i], "--sweep-decode") == 0) sweep_decode = 1;
        else if (strcmp(argv[i], "--ceilings") == 0) ceilings = 1;
        else if (strcmp(argv[i], "--tiny") == 0) tiny = 1;
        else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc) csv_path = argv[++i];
        else if (strcmp(argv[i], "--commit") == 0 && i + 1 < argc) commit = argv[++i];
        else if (strcmp(argv[i], "--kernel") == 0 && i + 1 < argc) {
            const char *k = argv[++i];
            kernel16 = strcmp(k, "auto") == 0 ? 0 : strcmp(k, "sm80") == 0 ? 1
                     : strcmp(k, "sm90") == 0 ? 2 : -1;
            if (kernel16 < 0) {
                fprintf(stderr, "bench_attention: --kernel must be auto, sm80 or sm90\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) {
            if (fg_dtype_parse(argv[++i], &bench_dtype) != FG_OK) {
                fprintf(stderr, "bench_attention: --dtype: %s\n", fg_last_error());
                return 2;
            }
        } else {
            fprintf(stderr,
                    "usage: %s [--runs N (>= 20)] [--out FILE] [--only prefill|decode] "
                    "[--case 1..%d] [--hold-us N] [--sweep] [--sweep-prefill] [--sweep-decode] "
                    "[--ceilings] [--csv FILE] [--commit ID] [--tiny] [--dtype f32|bf16|f16] "
                    "[--kernel auto|sm80|sm90]\n",
                    argv[0], n_cases);
            return 2;
        }
    }
    if (only_case < 0 || only_case > n_cases) {
        fprintf(stderr, "bench_attention: --case must be 1 to %d\n", n_cases);
        return 2;
    }
    if (hold_us < 0 || hold_us > 100000) {
        fprintf(stderr, "bench_attention: --hold-us must be 0 to 100000\n");
        return 2;
    }
    if (runs < 20) {
        fprintf(stderr, "bench_attention: --runs must be at least 20\n");
        return 2;
    }
    if (!fg_cuda_available()) {
        fprintf(stderr, "bench_attention: no usable CUDA device\n");
        return 1;
    }
    char name[256] = "";
    int sms = 0;
    size_t total = 0;
    if (!bench_check(fg_cuda_device_info(name, sizeof name, &sms, &total), "device info")) return 1;
    if (kernel16 >= 0) fgi_attention16_set_kernel(kernel16);
    if (kernel16 == 2 && fgi_attention16_pick(64) != 2) {
        fprintf(stderr, "bench_attention: --kernel sm90: this device or build cannot run the "
                        "sm_90a kernel (compute capability 9.0 and code for sm_90a needed)\n");
        return 1;
    }
    FILE *file = out_path ? fopen(out_path, "w") : NULL;
    if (out_path && !file) {
        fprintf(stderr, "bench_attention: cannot write %s\n", out_path);
        return 1;
    }
    char date[32];
    const time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M", gmtime(&now));
    print_both(file, "# bench_attention %s UTC, %s (%d SMs), %s, median of %d runs, ", date,
               name, sms, dtype_label(), runs);
    char k64[96], k128[96];
    print_both(file, "kernel16 d64=%s d128=%s, ", kernel16_name(64, k64, sizeof k64),
               kernel16_name(128, k128, sizeof k128));
    if (hold_us > 0)
        print_both(file, "GPU time (each call queued behind a %ld us hold); call_ms: a call on an "
                         "idle stream, host planning and launch latency included\n", hold_us);
    else
        print_both(file, "each call on an idle stream (host planning and launch latency "
                         "included)\n");
    if (sweep_prefill || sweep_decode || ceilings) {
        /* the chart sweeps replace the table */
        csv_sink csv = {NULL, "", "", commit};
        strftime(csv.date, sizeof csv.date, "%Y-%m-%dT%H:%MZ", gmtime(&now));
        for (size_t k = 0; k < sizeof csv.card - 1 && name[k]; k++)
            csv.card[k] = name[k] == ',' ? ' ' : name[k];
        for (const char *p = commit; *p; p++)
            if (*p == ',' || *p == '\n') {
                fprintf(stderr, "bench_attention: --commit must not hold commas or newlines\n");
                if (file) fclose(file);
                return 2;
            }
        if (csv_path) {
            csv.file = fopen(csv_path, "a");
            if (!csv.file) {
                fprintf(stderr, "bench_attention: cannot append to %s\n", csv_path);
                if (file) fclose(file);
                return 1;
            }
            if (ftell(csv.file) == 0)
                fprintf(csv.file, "date,card,commit,peer_version,sweep,impl,dtype,B,Hq,Hkv,S,kv,D,"
                                  "ms,value,unit\n");
        }
        int ok = 1;
        if (ceilings)
            ok = measure_ceilings(tiny ? 64 : 8192, tiny ? ((size_t)1 << 20) : ((size_t)1 << 30),
                                  runs, file, &csv) && ok;
        if (sweep_prefill) ok = run_sweep('p', tiny, runs, (unsigned)hold_us, file, &csv) && ok;
        if (sweep_decode) ok = run_sweep('d', tiny, runs, (unsigned)hold_us, file, &csv) && ok;
        if (csv.file) fclose(csv.file);
        if (file) fclose(file);
        return ok ? 0 : 1;
    }
    int failed = 0;
    double copy_ms = 0.0;
    const size_t copy_bytes = tiny ? ((size_t)1 << 20) : ((size_t)1 << 30);
    /* the copy that GB/s rows are a percentage of, in this run */
    if (bench_check(fg_cuda_copy_bandwidth(copy_bytes, runs, &copy_gbps), "copy bandwidth")) {
        copy_ms = 2.0 * (double)copy_bytes / (copy_gbps * 1e9) * 1e3; /* the median copy */
        print_both(file, "copy bytes=%zu ms=%.4f gbps=%.1f\n", copy_bytes, copy_ms, copy_gbps);
    } else {
        copy_gbps = 0, failed = 1;
    }
    const int decode_rows = !only || strcmp(only, "decode") == 0;
    for (int i = 0; i < n_cases; i++) {
        if (only && strcmp(only, cases[i].kind) != 0) continue;
        if (only_case && i + 1 != only_case) continue;
        /* --tiny: no table; the table's decode rows are the fp32 path, 16-bit
         * decode is timed by the batched rows below */
        if (tiny || !case_runs_in_dtype(&cases[i])) continue;
        bench_tuning tunes[MAX_TUNES];
        case_times times;
        const int n = case_tunings(&cases[i], sweep, tunes);
        if (!time_case(&cases[i], tunes, n, runs, (unsigned)hold_us, &times) ||
            times.medians[0] < 0) {
            failed = 1;
            printf("%s B=%d failed\n", cases[i].kind, cases[i].B);
            continue;
        }
        char call[48] = "";
        if (hold_us > 0 && times.idle_call_ms >= 0)
            snprintf(call, sizeof call, " call_ms=%.4f", times.idle_call_ms);
        for (int t = 0; t < n; t++)
            if (times.medians[t] >= 0)
                report_tuning(file, &cases[i], &tunes[t], times.medians[t], t == 0 ? call : "");
        if (times.exposed > 0)
            print_both(file, "# warning: %d calls of this case took longer to enqueue than the "
                             "%ld us hold; their host time is in the numbers above\n",
                       times.exposed, hold_us);
    }
    if (decode_rows && !only_case)
        failed |= !run_batch_decode(bench_dtype, tiny, runs, (unsigned)hold_us, file);
    if (file) fclose(file);
    return failed;
}
