/* bench_gpu_hold for the CUDA emulator build (-DFG_CUDA_EMU=ON).
 *
 * The emulator runs all work synchronously on the CPU, so there is no queue
 * for a hold to keep busy, and gpu_hold.cu's spin reads a PTX timer the
 * emulator cannot translate. This build of the benchmark only proves its
 * code paths (bench_attention --tiny); its numbers mean nothing. */
#include "bench_common.h"

cudaError_t bench_gpu_hold(unsigned microseconds, cudaStream_t stream)
{
    (void)microseconds, (void)stream;
    return cudaSuccess;
}
