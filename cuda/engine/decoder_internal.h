/* Internal queries of the GPU decoder (cuda/decoder.cu), for tests. Plain C;
 * a build without CUDA answers 0 (host/cuda_unavailable.c). */
#ifndef FLASHGPT_CUDA_DECODER_INTERNAL_H
#define FLASHGPT_CUDA_DECODER_INTERNAL_H

#include "flashgpt/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Decode steps (fg_cuda_forward_last with T = 1) that this cache has run
 * through its captured CUDA graph since it was created; 0 for NULL. */
long long fgi_cuda_kv_cache_graph_steps(const fg_cuda_kv_cache *cache);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_CUDA_DECODER_INTERNAL_H */
