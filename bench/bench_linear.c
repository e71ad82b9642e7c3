/* Linear-layer benchmark at decode shapes (one to eight rows): the GEMV kernel
 * (cuda/ops/gemv.cu) against cuBLAS SGEMM, through the entry the decoder uses
 * (fgi_cuda_linear_layer); then, in bf16 and f16, the GEMV against cuBLASLt
 * at the Llama-3.2-1B and Llama-3.1-8B decode shapes with 1 .. 8 rows (the
 * rows a few sequences decoding together give; and one prefill GEMM each),
 * through fgi_cuda_linear_layer_typed.
 *
 * Method: a chain of CHAIN back-to-back calls, each on the next of enough
 * weight copies to exceed 4x a 50 MB L2 (so every call streams its weights
 * from memory, as in a decode step), queued behind a 1 ms GPU hold
 * (bench/gpu_hold.cu) so CUDA events time the GPU's work and the gaps
 * between dependent kernels, not the host's launches. The median of --runs
 * chains (default 20), divided by CHAIN. GB/s counts the weight bytes.
 * Output, one line per (case, path), numbers to stdout only:
 *   linear rows=1 in=768 out=2304 act=none path=gemv slices=0 us=3.210 gbps=2205.3
 * (slices=0: the automatic plan). --sweep adds forced slice counts. The
 * 16-bit lines carry dtype= and, for the memory-bound decode rows, the
 * weight stream as a percentage of a device-to-device copy measured in the
 * same run (copy GB/s = 2 x bytes / time: each byte read and written):
 *   copy bytes=268435456 us=... gbps=...
 *   linear16 dtype=bf16 model=llama8b rows=1 in=4096 out=6144 path=gemv us=... gbps=... pct_copy=...
 * Last, per 16-bit type, the decode step's classifier at the Llama-3
 * vocabulary (128256 x C, transposed, fp32 logits): the transposed GEMV
 * with the final RMSNorm in its prologue (fgi_cuda_gemv_t_normed, what the
 * fused step runs) against the norm kernel + cuBLASLt's fp32-output GEMM
 * (what it ran before), both from the fp32 residual row:
 *   linear16 dtype=bf16 model=llama1b rows=1 in=2048 out=128256 path=classifier_gemv_t ...
 * Usage: bench_linear [--runs N] [--sweep] [--dtype all|f32|bf16|f16] */
#include "flashgpt/flashgpt.h"
#include "../cuda/ops/ops_internal.h"
#include "bench_common.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROTATE_BYTES ((size_t)200 << 20)
#define MAX_SETS 96
#define CHAIN 32
#define HOLD_US 1000

typedef struct {
    int rows, in, out;
    fgi_activation act;
    const char *model; /* 16-bit cases: the model the shape comes from */
} linear_case;

static const linear_case cases[] = {
    /* GPT-2 small (124M): c_attn, c_proj, c_fc + GELU, mlp c_proj */
    {1, 768, 2304, FGI_ACT_NONE, NULL},
    {1, 768, 768, FGI_ACT_NONE, NULL},
    {1, 768, 3072, FGI_ACT_GELU, NULL},
    {1, 3072, 768, FGI_ACT_NONE, NULL},
    /* Llama-3.2-1B shapes: q|k|v, o, gate|up, down */
    {1, 2048, 3072, FGI_ACT_NONE, NULL},
    {1, 2048, 2048, FGI_ACT_NONE, NULL},
    {1, 2048, 16384, FGI_ACT_NONE, NULL},
    {1, 8192, 2048, FGI_ACT_NONE, NULL},
    /* four and eight rows */
    {4, 768, 3072, FGI_ACT_GELU, NULL},
    {8, 768, 3072, FGI_ACT_GELU, NULL},
};

/* 16-bit decode shapes (q|k|v, o, gate|up, down), each with 1 .. 8 rows
 * (main loops over the rows), then one prefill GEMM per model (cuBLASLt
 * only). */
static const linear_case decode16[] = {
    {1, 2048, 3072, FGI_ACT_NONE, "llama1b"},  {1, 2048, 2048, FGI_ACT_NONE, "llama1b"},
    {1, 2048, 16384, FGI_ACT_NONE, "llama1b"}, {1, 8192, 2048, FGI_ACT_NONE, "llama1b"},
    {1, 4096, 6144, FGI_ACT_NONE, "llama8b"},  {1, 4096, 4096, FGI_ACT_NONE, "llama8b"},
    {1, 4096, 28672, FGI_ACT_NONE, "llama8b"}, {1, 14336, 4096, FGI_ACT_NONE, "llama8b"},
};
static const linear_case prefill16[] = {
    {512, 2048, 16384, FGI_ACT_NONE, "llama1b"}, {512, 4096, 28672, FGI_ACT_NONE, "llama8b"},
};
/* classifiers: in = C, out = the vocabulary, w stored (out, in) */
static const linear_case classifier16[] = {
    {1, 2048, 128256, FGI_ACT_NONE, "llama1b"}, {1, 4096, 128256, FGI_ACT_NONE, "llama8b"},
};

typedef enum {
    PATH_LINEAR,          /* fgi_cuda_linear_layer(_typed) */
    PATH_CLASSIFIER_GEMV, /* fgi_cuda_gemv_t_normed */
    PATH_CLASSIFIER_BLAS, /* fgi_cuda_norm_typed + fgi_cuda_linear_layer_f32out */
} bench_path;

typedef struct {
    void *x, *y, *b;
    void *w[MAX_SETS];
    int n_sets;
    float *resid, *logits; /* classifier paths: the fp32 row and logits */
    void *g;               /* classifier paths: the norm's gain */
    cudaEvent_t start, stop;
} case_buffers;

/* One call of path on weight copy w. */
static int call_path(bench_path path, const linear_case *c, const case_buffers *buf,
                     const fgi_linear_ctx *ctx, fg_dtype dtype, const void *w)
{
    static const char fn[] = "bench_linear";
    if (path == PATH_CLASSIFIER_GEMV) {
        const fgi_gemv_norm n = {buf->resid, buf->g, NULL, 1e-5f, 1};
        return bench_check(fgi_cuda_gemv_t_normed(fn, dtype, ctx, buf->logits, &n, w, NULL, c->in,
                                                  c->out, NULL),
                           "classifier gemv");
    }
    if (path == PATH_CLASSIFIER_BLAS) {
        fgi_norm_args a;
        memset(&a, 0, sizeof a);
        a.y = buf->x; /* h = norm(resid) in dtype */
        a.x = buf->resid;
        a.g = buf->g;
        a.rows = c->rows;
        a.cols = c->in;
        a.eps = 1e-5f;
        a.rms = 1;
        return bench_check(fgi_cuda_norm_typed(fn, dtype, &a, NULL), "norm") &&
               bench_check(fgi_cuda_linear_layer_f32out(fn, dtype, ctx, buf->logits, buf->x, w,
                                                        c->rows, c->in, c->out, 1, NULL),
                           "classifier gemm");
    }
    return bench_check(dtype == FG_DTYPE_F32 /* the decoder's fp32 entry, as before */
                           ? fgi_cuda_linear_layer(fn, ctx, buf->y, buf->x, w, buf->b, c->rows,
                                                   c->in, c->out, 0, c->act, NULL)
                           : fgi_cuda_linear_layer_typed(fn, dtype, ctx, buf->y, buf->x, w, buf->b,
                                                         c->rows, c->in, c->out, 0, c->act, NULL),
                       "linear");
}

/* Median microseconds per call of one path, or a negative value on failure. */
static double time_path(const linear_case *c, const case_buffers *buf, const fgi_linear_ctx *ctx,
                        fg_dtype dtype, int runs, float *times, bench_path path)
{
    int ok = 1, next = 0;
    for (int r = -2; ok && r < runs; r++) { /* two warm-up chains */
        ok = bench_check_cuda(bench_gpu_hold(HOLD_US, NULL), "hold") &&
             bench_check_cuda(cudaEventRecord(buf->start, NULL), "record");
        for (int i = 0; ok && i < CHAIN; i++, next = (next + 1) % buf->n_sets)
            ok = call_path(path, c, buf, ctx, dtype, buf->w[next]);
        ok = ok && bench_check_cuda(cudaEventRecord(buf->stop, NULL), "record") &&
             bench_check_cuda(cudaEventSynchronize(buf->stop), "synchronize");
        float ms = 0.0f;
        if (ok && r >= 0) ok = bench_check_cuda(cudaEventElapsedTime(&ms, buf->start, buf->stop), "elapsed");
        if (ok && r >= 0) times[r] = ms * 1000.0f / CHAIN;
    }
    if (!ok) return -1.0;
    return bench_median(times, runs);
}

static void report(const linear_case *c, const char *path, int slices, double us)
{
    const double bytes = sizeof(float) * (double)c->in * c->out;
    printf("linear rows=%d in=%d out=%d act=%s path=%s slices=%d us=%.3f gbps=%.1f\n", c->rows,
           c->in, c->out, c->act == FGI_ACT_GELU ? "gelu" : "none", path, slices, us,
           us > 0 ? bytes / (us * 1e-6) / 1e9 : 0.0);
    fflush(stdout);
}

/* n random values stored as dtype in device memory. */
static void *device_random(fg_dtype dtype, size_t n, unsigned long long *state, int *ok)
{
    const size_t es = fg_dtype_size(dtype);
    float *host = malloc(sizeof(float) * n);
    void *packed = malloc(es * n), *dev = NULL;
    *ok = *ok && host != NULL && packed != NULL;
    if (*ok) bench_fill_random(host, n, 0.5, state);
    *ok = *ok && bench_check(fg_dtype_from_f32(dtype, packed, host, n), "convert") &&
          bench_check(fg_cuda_malloc(&dev, es * n), "malloc") &&
          bench_check(fg_cuda_upload(dev, packed, es * n), "upload");
    free(host), free(packed);
    return dev;
}

/* GB/s of a device-to-device copy of `bytes` (each byte read and written,
 * fg_cuda_copy_bandwidth), printed as the copy line with the median time
 * it implies; negative on failure. */
static double copy_gbps(size_t bytes, int runs)
{
    double gbps = -1.0;
    if (!bench_check(fg_cuda_copy_bandwidth(bytes, runs, &gbps), "copy bandwidth")) return -1.0;
    const double ms = 2.0 * (double)bytes / (gbps * 1e9) * 1e3;
    printf("copy bytes=%zu us=%.3f gbps=%.1f\n", bytes, ms * 1e3, gbps);
    fflush(stdout);
    return gbps;
}

static void report16(const linear_case *c, fg_dtype dtype, const char *path, double us,
                     double copy)
{
    const double bytes = (double)fg_dtype_size(dtype) * c->in * c->out;
    const double gbps = us > 0 ? bytes / (us * 1e-6) / 1e9 : 0.0;
    printf("linear16 dtype=%s model=%s rows=%d in=%d out=%d path=%s us=%.3f gbps=%.1f",
           fg_dtype_name(dtype), c->model, c->rows, c->in, c->out, path, us, gbps);
    if (c->rows <= FGI_GEMV_MAX_ROWS && copy > 0) printf(" pct_copy=%.1f", 100.0 * gbps / copy);
    printf("\n");
    fflush(stdout);
}

/* One case in dtype: fp32 prints the historical lines (GEMV, SGEMM, the
 * --sweep); 16-bit prints the GEMV (decode rows) and cuBLASLt lines, or
 * with classifier the two classifier paths. */
static int run_case(const linear_case *c, fg_dtype dtype, const fgi_linear_ctx *gemv,
                    const fgi_linear_ctx *blas, int runs, int sweep, double copy, int classifier)
{
    case_buffers buf;
    memset(&buf, 0, sizeof buf);
    const size_t es = fg_dtype_size(dtype), w_elems = (size_t)c->in * c->out;
    buf.n_sets = (int)((ROTATE_BYTES + es * w_elems - 1) / (es * w_elems));
    if (buf.n_sets > MAX_SETS) buf.n_sets = MAX_SETS;
    unsigned long long state = 0x11ea7ULL;
    int ok = 1;
    buf.x = device_random(dtype, (size_t)c->rows * c->in, &state, &ok);
    buf.b = device_random(dtype, (size_t)c->out, &state, &ok);
    buf.w[0] = device_random(dtype, w_elems, &state, &ok);
    ok = ok && bench_check(fg_cuda_malloc(&buf.y, es * c->rows * c->out), "malloc y");
    for (int s = 1; ok && s < buf.n_sets; s++)
        ok = bench_check(fg_cuda_malloc(&buf.w[s], es * w_elems), "malloc w") &&
             bench_check_cuda(cudaMemcpy(buf.w[s], buf.w[0], es * w_elems,
                                   cudaMemcpyDeviceToDevice), "copy w");
    if (ok && classifier) {
        unsigned long long s2 = 0x5eedULL;
        float *host = malloc(sizeof(float) * (size_t)c->in);
        ok = host != NULL;
        if (ok) bench_fill_random(host, (size_t)c->in, 1.0, &s2);
        ok = ok && bench_check(fg_cuda_malloc((void **)&buf.resid, sizeof(float) * c->in), "malloc") &&
             bench_check(fg_cuda_upload(buf.resid, host, sizeof(float) * c->in), "upload") &&
             bench_check(fg_cuda_malloc((void **)&buf.logits, sizeof(float) * c->out), "malloc");
        free(host);
        buf.g = device_random(dtype, (size_t)c->in, &state, &ok);
    }
    ok = ok && bench_check_cuda(cudaEventCreate(&buf.start), "event") &&
         bench_check_cuda(cudaEventCreate(&buf.stop), "event");
    float *times = calloc((size_t)runs, sizeof(float));
    ok = ok && times != NULL;
    if (ok && classifier) {
        report16(c, dtype, "classifier_gemv_t",
                 time_path(c, &buf, gemv, dtype, runs, times, PATH_CLASSIFIER_GEMV), copy);
        report16(c, dtype, "classifier_norm_cublaslt",
                 time_path(c, &buf, blas, dtype, runs, times, PATH_CLASSIFIER_BLAS), copy);
    } else if (ok && dtype != FG_DTYPE_F32) {
        if (c->rows <= FGI_GEMV_MAX_ROWS)
            report16(c, dtype, "gemv",
                     time_path(c, &buf, gemv, dtype, runs, times, PATH_LINEAR), copy);
        report16(c, dtype, "cublaslt", time_path(c, &buf, blas, dtype, runs, times, PATH_LINEAR),
                 copy);
    } else if (ok) {
        report(c, "gemv", 0, time_path(c, &buf, gemv, dtype, runs, times, PATH_LINEAR));
        report(c, "cublas", 0, time_path(c, &buf, blas, dtype, runs, times, PATH_LINEAR));
        static const int slices[] = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64};
        for (size_t i = 0; sweep && i < sizeof slices / sizeof slices[0]; i++) {
            fgi_linear_ctx forced = *gemv;
            forced.gemv_slices = slices[i];
            report(c, "gemv", slices[i],
                   time_path(c, &buf, &forced, dtype, runs, times, PATH_LINEAR));
        }
    }
    free(times);
    fg_cuda_free(buf.resid), fg_cuda_free(buf.logits), fg_cuda_free(buf.g);
    if (buf.start) cudaEventDestroy(buf.start);
    if (buf.stop) cudaEventDestroy(buf.stop);
    fg_cuda_free(buf.x), fg_cuda_free(buf.y), fg_cuda_free(buf.b);
    for (int s = 0; s < buf.n_sets; s++) fg_cuda_free(buf.w[s]);
    return ok;
}

int main(int argc, char **argv)
{
    int runs = 20, sweep = 0;
    const char *which = "all";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--sweep") == 0) sweep = 1;
        else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) which = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--runs N (>= 1)] [--sweep] [--dtype all|f32|bf16|f16]\n",
                    argv[0]);
            return 2;
        }
    }
    fg_dtype only = FG_DTYPE_F32;
    const int all = strcmp(which, "all") == 0;
    if (!all && fg_dtype_parse(which, &only) != FG_OK) {
        fprintf(stderr, "bench_linear: --dtype: %s\n", fg_last_error());
        return 2;
    }
    if (runs < 1) runs = 1;
    char name[256];
    int sm_count = 0;
    size_t total = 0;
    if (!bench_check(fg_cuda_device_info(name, sizeof name, &sm_count, &total), "device")) return 1;
    printf("# bench_linear %s (%d SMs), %s, median of %d chains of %d calls, GPU time\n", name,
           sm_count, which, runs, CHAIN);
    fgi_linear_ctx gemv = {NULL, NULL, sm_count, 0, NULL}, blas;
    int ok = bench_check(fgi_cuda_blas_create("bench_linear", &gemv.blas, NULL), "cuBLAS") &&
             bench_check(fg_cuda_malloc(&gemv.gemv_ws, FGI_GEMV_WORKSPACE_BYTES), "workspace") &&
             bench_check(fg_cuda_memset(gemv.gemv_ws, 0, FGI_GEMV_COUNTER_BYTES), "zero counters");
    if (ok && cublasLtCreate(&gemv.blaslt) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "bench_linear: cublasLtCreate failed\n");
        ok = 0;
    }
    blas = gemv;
    blas.gemv_ws = NULL;
    if (all || only == FG_DTYPE_F32)
        for (size_t i = 0; ok && i < sizeof cases / sizeof cases[0]; i++)
            ok = run_case(&cases[i], FG_DTYPE_F32, &gemv, &blas, runs, sweep, -1.0, 0);
    const double copy =
        ok && (all || only != FG_DTYPE_F32) ? copy_gbps((size_t)256 << 20, runs) : -1.0;
    static const fg_dtype types16[] = {FG_DTYPE_BF16, FG_DTYPE_F16};
    for (size_t t = 0; ok && t < 2; t++) {
        if (!all && only != types16[t]) continue;
        for (size_t i = 0; ok && i < sizeof decode16 / sizeof decode16[0]; i++)
            for (int rows = 1; ok && rows <= FGI_GEMV_MAX_ROWS; rows++) {
                linear_case c = decode16[i];
                c.rows = rows;
                ok = run_case(&c, types16[t], &gemv, &blas, runs, 0, copy, 0);
            }
        for (size_t i = 0; ok && i < sizeof prefill16 / sizeof prefill16[0]; i++)
            ok = run_case(&prefill16[i], types16[t], &gemv, &blas, runs, 0, copy, 0);
        for (size_t i = 0; ok && i < sizeof classifier16 / sizeof classifier16[0]; i++)
            ok = run_case(&classifier16[i], types16[t], &gemv, &blas, runs, 0, copy, 1);
    }
    fg_cuda_free(gemv.gemv_ws);
    if (gemv.blas) cublasDestroy(gemv.blas);
    if (gemv.blaslt) cublasLtDestroy(gemv.blaslt);
    return ok ? 0 : 1;
}
