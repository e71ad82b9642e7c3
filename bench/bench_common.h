/* Helpers shared by the benchmarks (bench_attention, bench_linear): status
 * checks that print what failed, the median of timings, a cheap fill, and
 * the GPU hold (bench/gpu_hold.cu) that keeps a stream busy so that the
 * work queued behind it starts back to back. The device copy bandwidth
 * that memory-bound results are reported against is the library's own
 * fg_cuda_copy_bandwidth (flashgpt/cuda_api.h), the one `flashgpt bench`
 * prints too. */
#ifndef FLASHGPT_BENCH_COMMON_H
#define FLASHGPT_BENCH_COMMON_H

#include "flashgpt/flashgpt.h"

#include <cuda_runtime.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when st is FG_OK; else prints "bench: what: <last error>" and gives 0. */
int bench_check(fg_status st, const char *what);

/* The same for a CUDA runtime result. */
int bench_check_cuda(cudaError_t err, const char *what);

/* The median of values[0 .. n-1] (n >= 1); sorts them in place. */
double bench_median(float *values, int n);

/* Uniform values in [-scale, scale) from a 64-bit LCG advanced in *state:
 * enough for timing, and the same on every run. */
void bench_fill_random(float *x, size_t n, double scale, unsigned long long *state);

/* Enqueues a one-thread kernel that spins for `microseconds` of the GPU's
 * global timer; returns the launch's error. */
cudaError_t bench_gpu_hold(unsigned microseconds, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_BENCH_COMMON_H */
