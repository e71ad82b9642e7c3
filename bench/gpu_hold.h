/* Benchmark aid (bench/gpu_hold.cu): keeps a stream busy for a while so that
 * the work queued behind it starts back to back. */
#ifndef FLASHGPT_BENCH_GPU_HOLD_H
#define FLASHGPT_BENCH_GPU_HOLD_H

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Enqueues a one-thread kernel that spins for `microseconds` of the GPU's
 * global timer; returns the launch's error. */
cudaError_t bench_gpu_hold(unsigned microseconds, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_BENCH_GPU_HOLD_H */
