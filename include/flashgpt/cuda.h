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
 *  - tolerance against the reference: docs/contract.md §32 (fp32, and the
 *    16-bit rule for bf16 / f16).
 *
 * Element types (the typed-op convention): every operation fg_cuda_X on
 * float data has a twin fg_cuda_X_typed(fg_dtype dtype, <X's arguments>)
 * listed next to it. Every tensor that X stores in its element type becomes
 * `void *` / `const void *` holding dtype elements (FG_DTYPE_F32, BF16 or
 * F16); tensors that are fp32 whatever the type keep `float *`: the
 * residual stream x that the norms read and that the fused residual add
 * updates in place. Integer tensors (positions, the causal mask, which has
 * no float data and so no typed twin) are unchanged. fg_cuda_X(...) is
 * exactly fg_cuda_X_typed(FG_DTYPE_F32, ...). Whatever dtype is, the
 * arithmetic is fp32: elements are widened on load and rounded to nearest
 * even on store; products are accumulated in fp32; softmax statistics,
 * norms' mean and variance are fp32 and RoPE angles are computed in double
 * as for fp32. A dtype outside fg_dtype is FG_ERR_INVALID_ARG; the other
 * checks are those of fp32, with overlap judged in bytes of the element
 * type. Device pointers must be aligned to their element size (cudaMalloc
 * gives 256 bytes); faster vector paths are taken when a tensor is 16-byte
 * aligned, never required.
 * This header needs no CUDA header: cudaStream_t is declared here exactly as
 * the CUDA runtime declares it. The functions themselves, with their
 * comments, are listed in flashgpt/cuda_api.h, which this header expands
 * into declarations. */
#ifndef FLASHGPT_CUDA_H
#define FLASHGPT_CUDA_H

#include "flashgpt/decoder.h"
#include "flashgpt/dtype.h"
#include "flashgpt/loader.h"
#include "flashgpt/sampler.h"
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
/* The GPU sampler (fg_sampler's draws on device logits). */
typedef struct fg_cuda_sampler fg_cuda_sampler;
/* What fg_cuda_block_probe calls after each operation of the block: op
 * names it, values (rows, cols, row-major, widened to fp32, host memory
 * valid during the call) is its output. */
typedef void (*fg_cuda_probe_fn)(void *user, const char *op, const float *values, int rows,
                                 int cols);

/* Every entry point, declared from the list that also makes the no-CUDA
 * stubs. */
#define FG_CUDA_FN(fallback, ret, name, params) ret name params;
#include "flashgpt/cuda_api.h"
#undef FG_CUDA_FN

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_CUDA_H */
