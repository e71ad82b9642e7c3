/* Linear-layer benchmark at decode shapes (one to four rows): the GEMV kernel
 * (cuda/ops/gemv.cu) against cuBLAS SGEMM, through the entry the decoder uses
 * (fgi_cuda_linear_layer).
 *
 * Method: a chain of CHAIN back-to-back calls, each on the next of enough
 * weight copies to exceed 4x a 50 MB L2 (so every call streams its weights
 * from memory, as in a decode step), queued behind a 1 ms GPU hold
 * (bench/gpu_hold.cu) so CUDA events time the GPU's work and the gaps
 * between dependent kernels, not the host's launches. The median of --runs
 * chains (default 20), divided by CHAIN. GB/s counts the weight bytes.
 * Output, one line per (case, path), numbers to stdout only:
 *   linear rows=1 in=768 out=2304 act=none path=gemv slices=0 us=3.210 gbps=2205.3
 * (slices=0: the automatic plan). --sweep adds forced slice counts.
 * Usage: bench_linear [--runs N] [--sweep] */
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
} linear_case;

static const linear_case cases[] = {
    /* GPT-2 small (124M): c_attn, c_proj, c_fc + GELU, mlp c_proj */
    {1, 768, 2304, FGI_ACT_NONE},
    {1, 768, 768, FGI_ACT_NONE},
    {1, 768, 3072, FGI_ACT_GELU},
    {1, 3072, 768, FGI_ACT_NONE},
    /* Llama-3.2-1B shapes: q|k|v, o, gate|up, down */
    {1, 2048, 3072, FGI_ACT_NONE},
    {1, 2048, 2048, FGI_ACT_NONE},
    {1, 2048, 16384, FGI_ACT_NONE},
    {1, 8192, 2048, FGI_ACT_NONE},
    /* four rows */
    {4, 768, 3072, FGI_ACT_GELU},
};

typedef struct {
    float *x, *y, *b;
    float *w[MAX_SETS];
    int n_sets;
    cudaEvent_t start, stop;
} case_buffers;

/* Median microseconds per call of one path, or a negative value on failure. */
static double time_path(const linear_case *c, const case_buffers *buf, const fgi_linear_ctx *ctx,
                        int runs, float *times)
{
    int ok = 1, next = 0;
    for (int r = -2; ok && r < runs; r++) { /* two warm-up chains */
        ok = bench_check_cuda(bench_gpu_hold(HOLD_US, NULL), "hold") &&
             bench_check_cuda(cudaEventRecord(buf->start, NULL), "record");
        for (int i = 0; ok && i < CHAIN; i++, next = (next + 1) % buf->n_sets)
            ok = bench_check(fgi_cuda_linear_layer("bench_linear", ctx, buf->y, buf->x, buf->w[next],
                                             buf->b, c->rows, c->in, c->out, 0, c->act, NULL),
                       "linear");
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

static float *device_random(size_t n, unsigned long long *state, int *ok)
{
    float *host = malloc(sizeof(float) * n), *dev = NULL;
    *ok = *ok && host != NULL;
    if (*ok) bench_fill_random(host, n, 0.5, state);
    *ok = *ok && bench_check(fg_cuda_malloc((void **)&dev, sizeof(float) * n), "malloc") &&
          bench_check(fg_cuda_upload(dev, host, sizeof(float) * n), "upload");
    free(host);
    return dev;
}

static int run_case(const linear_case *c, const fgi_linear_ctx *gemv, const fgi_linear_ctx *blas,
                    int runs, int sweep)
{
    case_buffers buf;
    memset(&buf, 0, sizeof buf);
    const size_t w_elems = (size_t)c->in * c->out;
    buf.n_sets = (int)((ROTATE_BYTES + sizeof(float) * w_elems - 1) / (sizeof(float) * w_elems));
    if (buf.n_sets > MAX_SETS) buf.n_sets = MAX_SETS;
    unsigned long long state = 0x11ea7ULL;
    int ok = 1;
    buf.x = device_random((size_t)c->rows * c->in, &state, &ok);
    buf.b = device_random((size_t)c->out, &state, &ok);
    buf.w[0] = device_random(w_elems, &state, &ok);
    ok = ok && bench_check(fg_cuda_malloc((void **)&buf.y, sizeof(float) * c->rows * c->out), "malloc y");
    for (int s = 1; ok && s < buf.n_sets; s++)
        ok = bench_check(fg_cuda_malloc((void **)&buf.w[s], sizeof(float) * w_elems), "malloc w") &&
             bench_check_cuda(cudaMemcpy(buf.w[s], buf.w[0], sizeof(float) * w_elems,
                                   cudaMemcpyDeviceToDevice), "copy w");
    ok = ok && bench_check_cuda(cudaEventCreate(&buf.start), "event") &&
         bench_check_cuda(cudaEventCreate(&buf.stop), "event");
    float *times = calloc((size_t)runs, sizeof(float));
    ok = ok && times != NULL;
    if (ok) {
        report(c, "gemv", 0, time_path(c, &buf, gemv, runs, times));
        report(c, "cublas", 0, time_path(c, &buf, blas, runs, times));
        static const int slices[] = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64};
        for (size_t i = 0; sweep && i < sizeof slices / sizeof slices[0]; i++) {
            fgi_linear_ctx forced = *gemv;
            forced.gemv_slices = slices[i];
            report(c, "gemv", slices[i], time_path(c, &buf, &forced, runs, times));
        }
    }
    free(times);
    if (buf.start) cudaEventDestroy(buf.start);
    if (buf.stop) cudaEventDestroy(buf.stop);
    fg_cuda_free(buf.x), fg_cuda_free(buf.y), fg_cuda_free(buf.b);
    for (int s = 0; s < buf.n_sets; s++) fg_cuda_free(buf.w[s]);
    return ok;
}

int main(int argc, char **argv)
{
    int runs = 20, sweep = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--sweep") == 0) sweep = 1;
        else {
            fprintf(stderr, "usage: %s [--runs N (>= 1)] [--sweep]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1) runs = 1;
    char name[256];
    int sm_count = 0;
    size_t total = 0;
    if (!bench_check(fg_cuda_device_info(name, sizeof name, &sm_count, &total), "device")) return 1;
    printf("# bench_linear %s (%d SMs), fp32, median of %d chains of %d calls, GPU time\n", name,
           sm_count, runs, CHAIN);
    fgi_linear_ctx gemv = {NULL, NULL, sm_count, 0, NULL}, blas;
    int ok = bench_check(fgi_cuda_blas_create("bench_linear", &gemv.blas, NULL), "cuBLAS") &&
             bench_check(fg_cuda_malloc(&gemv.gemv_ws, FGI_GEMV_WORKSPACE_BYTES), "workspace") &&
             bench_check(fg_cuda_memset(gemv.gemv_ws, 0, FGI_GEMV_COUNTER_BYTES), "zero counters");
    blas = gemv;
    blas.gemv_ws = NULL;
    for (size_t i = 0; ok && i < sizeof cases / sizeof cases[0]; i++)
        ok = run_case(&cases[i], &gemv, &blas, runs, sweep);
    fg_cuda_free(gemv.gemv_ws);
    if (gemv.blas) cublasDestroy(gemv.blas);
    return ok ? 0 : 1;
}
