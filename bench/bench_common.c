/* Helpers shared by the benchmarks (see bench_common.h). */
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>

int bench_check(fg_status st, const char *what)
{
    if (st != FG_OK) fprintf(stderr, "bench: %s: %s\n", what, fg_last_error());
    return st == FG_OK;
}

int bench_check_cuda(cudaError_t err, const char *what)
{
    if (err != cudaSuccess) fprintf(stderr, "bench: %s: %s\n", what, cudaGetErrorString(err));
    return err == cudaSuccess;
}

static int compare_floats(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double bench_median(float *values, int n)
{
    qsort(values, (size_t)n, sizeof(float), compare_floats);
    return n % 2 ? values[n / 2] : 0.5 * ((double)values[n / 2 - 1] + values[n / 2]);
}

void bench_fill_random(float *x, size_t n, double scale, unsigned long long *state)
{
    for (size_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
        const double u = (double)(*state >> 11) * 0x1.0p-53;
        x[i] = (float)(scale * (2.0 * u - 1.0));
    }
}

int bench_copy_bandwidth(size_t bytes, int runs, double *ms, double *gbps)
{
    void *src = NULL, *dst = NULL;
    cudaEvent_t start = NULL, stop = NULL;
    float *times = calloc((size_t)runs, sizeof(float));
    int ok = times != NULL && runs > 0 && bytes > 0;
    ok = ok && bench_check(fg_cuda_malloc(&src, bytes), "malloc copy source") &&
         bench_check(fg_cuda_malloc(&dst, bytes), "malloc copy destination") &&
         bench_check(fg_cuda_memset(src, 1, bytes), "memset copy source") &&
         bench_check_cuda(cudaEventCreate(&start), "event") &&
         bench_check_cuda(cudaEventCreate(&stop), "event");
    for (int r = -3; ok && r < runs; r++) { /* three warm-up copies */
        ok = bench_check_cuda(cudaEventRecord(start, NULL), "record") &&
             bench_check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, NULL),
                              "copy") &&
             bench_check_cuda(cudaEventRecord(stop, NULL), "record") &&
             bench_check_cuda(cudaEventSynchronize(stop), "synchronize");
        float t = 0.0f;
        if (ok && r >= 0) ok = bench_check_cuda(cudaEventElapsedTime(&t, start, stop), "elapsed");
        if (ok && r >= 0) times[r] = t;
    }
    if (ok) {
        *ms = bench_median(times, runs);
        *gbps = 2.0 * (double)bytes / (*ms * 1e-3) / 1e9;
    }
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    fg_cuda_free(src), fg_cuda_free(dst);
    free(times);
    return ok;
}
