/* Internal queries of the GPU decoder (cuda/engine/decoder.cu), for tests,
 * and the cache copy a growing session uses (host/runtime/session.c).
 * Plain C. Like the public API (flashgpt/cuda_api.h) they come from a list,
 * FGI_CUDA_INTERNAL_API, that host/core/cuda_unavailable.c also expands into
 * the stubs of a build without CUDA (each answers 0). */
#ifndef FLASHGPT_CUDA_DECODER_INTERNAL_H
#define FLASHGPT_CUDA_DECODER_INTERNAL_H

#include "flashgpt/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(fallback, return type, name, (parameters)), as in flashgpt/cuda_api.h.
 * fgi_cuda_kv_cache_graph_steps: decode steps (fg_cuda_forward_last with
 * T = 1) that this cache has run through a captured CUDA graph, on any
 * runner, since it was created; 0 for NULL.
 * fgi_cuda_runner_graph_captures: decode-step graphs this runner has
 * captured since it was created (one per cache while it keeps them); 0 for
 * NULL.
 * fgi_cuda_kv_cache_read: copies layer `layer` of sequence 0 of the cache,
 * keys into k and values into v (host, each (n_kv_head, capacity,
 * head_dim) floats, rows past the cached length as the device holds them),
 * after the device has finished all work; so tests can hold what fused
 * kernels leave in the cache to the reference, not only the logits (a key
 * rotated to the wrong position leaves every score unchanged).
 * fgi_cuda_kv_cache_copy: copies every cached token of src (each layer's
 * and sequence's keys and values, with their lengths) into dst, a cache of
 * the same shape and type with at least their length of capacity, after
 * the device has finished all work; the bits are src's, so decoding goes
 * on in dst exactly as it would have in src. dst is unchanged on an error.
 * fgi_cuda_set_upload_stage_bytes: the host buffer a model's upload
 * (fg_cuda_weights_create_model) stages its bands through, in bytes (0:
 * the default, 2^21 elements; any size holds at least one row); returns the
 * previous setting. So tests can make a small model's slots take many
 * bands. */
#define FGI_CUDA_INTERNAL_API(X) \
    X(ZERO, long long, fgi_cuda_kv_cache_graph_steps, (const fg_cuda_kv_cache *cache)) \
    X(ZERO, long long, fgi_cuda_runner_graph_captures, (const fg_cuda_runner *runner)) \
    X(STATUS, fg_status, fgi_cuda_kv_cache_read, \
      (const fg_cuda_kv_cache *cache, int layer, float *k, float *v)) \
    X(STATUS, fg_status, fgi_cuda_kv_cache_copy, \
      (fg_cuda_kv_cache *dst, const fg_cuda_kv_cache *src)) \
    X(ZERO, size_t, fgi_cuda_set_upload_stage_bytes, (size_t bytes))

#define FGI_CUDA_DECLARE(fallback, ret, name, params) ret name params;
FGI_CUDA_INTERNAL_API(FGI_CUDA_DECLARE)
#undef FGI_CUDA_DECLARE

/* The device tensors of fg_cuda_weights (all of its dtype; NULL where the
 * host had NULL), for the batched forward (cuda/engine/batch.cu), which
 * reuses this upload for 16-bit weights. Only CUDA builds call these (no
 * stubs): Llama's fc_w is [w1 | w3] (C, 2*n_inner), as the decoder's. */
typedef struct {
    fg_dtype dtype;
    const void *wte, *wpe, *ln_f_g, *ln_f_b, *classifier;
    const double *rope_inv_freq;
} fgi_cuda_model_tensors;
typedef struct {
    const void *ln_1_g, *ln_1_b, *c_attn_w, *c_attn_b, *c_proj_w, *c_proj_b;
    const void *ln_2_g, *ln_2_b, *fc_w, *fc_b, *mlp_proj_w, *mlp_proj_b;
} fgi_cuda_layer_tensors;
void fgi_cuda_weights_tensors(const fg_cuda_weights *w, fgi_cuda_model_tensors *m);
void fgi_cuda_weights_layer_tensors(const fg_cuda_weights *w, int layer,
                                    fgi_cuda_layer_tensors *t);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_CUDA_DECODER_INTERNAL_H */
