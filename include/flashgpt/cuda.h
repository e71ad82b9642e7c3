/* flashgpt CUDA path (fg_cuda_*): every reference operation on an NVIDIA GPU
 * in fp32, and the decoder with weights and KV cache in device memory.
 *
 * Conventions:
 *  - the same argument order as the fg_ref_* function of the same name, with
 *    device pointers and a trailing cudaStream_t (0: the legacy default
 *    stream). Work is enqueued on that stream; errors in arguments are found
 *    before anything is enqueued, launch errors are checked right after
 *    each launch; results are ready after fg_cuda_synchronize(stream);
 *  - failures of CUDA or cuBLAS calls return FG_ERR_CUDA with the CUDA error
 *    text in fg_last_error(); no usable GPU (or a build without CUDA) is a
 *    clear FG_ERR_CUDA / FG_ERR_UNSUPPORTED, never a crash;
 *  - tolerance against the reference: docs/contract.md §32 (fp32).
 * This header needs no CUDA header: cudaStream_t is declared here exactly as
 * the CUDA runtime declares it. The functions themselves, with their
 * comments, are listed in flashgpt/cuda_api.h, which this header expands
 * into declarations. */
#ifndef FLASHGPT_CUDA_H
#define FLASHGPT_CUDA_H

#include "flashgpt/decoder.h"
#include "flashgpt/dtype.h"
#include "flashgpt/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *cudaStream_t;

/* Objects of the GPU decoder (functions in cuda_api.h): weights in device
 * memory, a runner that executes them on a stream, and a KV cache. */
typedef struct fg_cuda_weights fg_cuda_weights;
typedef struct fg_cuda_runner fg_cuda_runner;
typedef struct fg_cuda_kv_cache fg_cuda_kv_cache;

/* Every entry point, declared from the list that also makes the no-CUDA
 * stubs. */
#define FG_CUDA_FN(fallback, ret, name, params) ret name params;
#include "flashgpt/cuda_api.h"
#undef FG_CUDA_FN

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_CUDA_H */
