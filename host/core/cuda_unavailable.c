/* The fg_cuda_* entry points of a build without the CUDA toolkit: each one
 * reports FG_ERR_UNSUPPORTED, fg_cuda_available() is 0, destroy functions
 * accept NULL. Programs and tests link the same API either way. */
#ifndef FG_HAVE_CUDA
#include "check.h"
#include "flashgpt/cuda.h"
#include "../../cuda/engine/decoder_internal.h"

#pragma GCC diagnostic ignored "-Wunused-parameter"

static fg_status no_cuda(const char *fn)
{
    return fgi_fail(FG_ERR_UNSUPPORTED,
                   "%s: this flashgpt was built without CUDA (no toolkit found, "
                   "or -DFG_CUDA=OFF)",
                   fn);
}

#define UNAVAILABLE(name, params) \
    fg_status name params { return no_cuda(#name); }

int fg_cuda_available(void) { return 0; }
long long fgi_cuda_kv_cache_graph_steps(const fg_cuda_kv_cache *cache) { return 0; }
UNAVAILABLE(fg_cuda_device_info, (char *name, size_t name_len, int *sm_count, size_t *total_bytes))
UNAVAILABLE(fg_cuda_malloc, (void **ptr, size_t bytes))
fg_status fg_cuda_free(void *ptr) { return ptr ? no_cuda("fg_cuda_free") : FG_OK; }
UNAVAILABLE(fg_cuda_upload, (void *dst, const void *src, size_t bytes))
UNAVAILABLE(fg_cuda_download, (void *dst, const void *src, size_t bytes))
UNAVAILABLE(fg_cuda_memset, (void *dst, int byte, size_t bytes))
UNAVAILABLE(fg_cuda_synchronize, (cudaStream_t stream))
UNAVAILABLE(fg_cuda_softmax, (float *y, const float *x, int outer, int n, int inner, cudaStream_t s))
UNAVAILABLE(fg_cuda_causal_mask, (uint8_t *mask, int q_len, int kv_len, cudaStream_t s))
UNAVAILABLE(fg_cuda_attention, (float *out, const float *q, const float *k, const float *v,
                                int q_len, int kv_len, int head_dim, cudaStream_t s))
UNAVAILABLE(fg_cuda_attention_flash, (float *out, const float *q, const float *k, const float *v,
                                      int q_len, int kv_len, int head_dim, int block_size,
                                      cudaStream_t s))
UNAVAILABLE(fg_cuda_split_heads, (float *out, const float *x, int seq, int n_head, int head_dim,
                                  cudaStream_t s))
UNAVAILABLE(fg_cuda_merge_heads, (float *out, const float *x, int n_head, int seq, int head_dim,
                                  cudaStream_t s))
UNAVAILABLE(fg_cuda_mha, (float *out, const float *q, const float *k, const float *v, int n_head,
                          int q_len, int kv_len, int head_dim, cudaStream_t s))
UNAVAILABLE(fg_cuda_gqa, (float *out, const float *q, const float *k, const float *v, int n_q_head,
                          int n_kv_head, int q_len, int kv_len, int head_dim, cudaStream_t s))
UNAVAILABLE(fg_cuda_gqa_lse, (float *out, float *lse, const float *q, const float *k,
                              const float *v, int n_q_head, int n_kv_head, int q_len, int kv_len,
                              int head_dim, cudaStream_t s))
UNAVAILABLE(fg_cuda_rope, (float *x, int n_head, int seq, int head_dim, const int *pos, double base,
                           cudaStream_t s))
UNAVAILABLE(fg_cuda_linear, (float *y, const float *x, const float *w, const float *b, int rows,
                             int in, int out, cudaStream_t s))
UNAVAILABLE(fg_cuda_gelu, (float *y, const float *x, int n, cudaStream_t s))
UNAVAILABLE(fg_cuda_bias_gelu, (float *y, const float *x, const float *b, int rows, int cols,
                                cudaStream_t s))
UNAVAILABLE(fg_cuda_layer_norm, (float *y, const float *x, const float *g, const float *b, int rows,
                                 int cols, float eps, cudaStream_t s))
UNAVAILABLE(fg_cuda_add_layer_norm, (float *y, float *x, const float *delta, const float *g,
                                     const float *b, int rows, int cols, float eps, cudaStream_t s))
UNAVAILABLE(fg_cuda_ffn, (float *y, const float *x, const float *w_fc, const float *b_fc,
                          const float *w_proj, const float *b_proj, int rows, int hidden, int inner,
                          cudaStream_t s))
UNAVAILABLE(fg_cuda_rms_norm, (float *y, const float *x, const float *g, int rows, int cols,
                               float eps, cudaStream_t s))
UNAVAILABLE(fg_cuda_silu_mul, (float *y, const float *gate, const float *up, int n, cudaStream_t s))
UNAVAILABLE(fg_cuda_swiglu_ffn, (float *y, const float *x, const float *w_gate, const float *w_up,
                                 const float *w_down, int rows, int hidden, int inner,
                                 cudaStream_t s))
UNAVAILABLE(fg_cuda_model_create, (fg_cuda_model **model, const fg_config *cfg, const fg_weights *w,
                                   int max_tokens, cudaStream_t stream))
void fg_cuda_model_destroy(fg_cuda_model *model) {}
const fg_config *fg_cuda_model_config(const fg_cuda_model *model) { return NULL; }
UNAVAILABLE(fg_cuda_kv_cache_create, (fg_cuda_kv_cache **cache, const fg_config *cfg, int capacity))
void fg_cuda_kv_cache_destroy(fg_cuda_kv_cache *cache) {}
UNAVAILABLE(fg_cuda_kv_cache_reset, (fg_cuda_kv_cache *cache))
int fg_cuda_kv_cache_len(const fg_cuda_kv_cache *cache, int layer) { return -1; }
int fg_cuda_kv_cache_capacity(const fg_cuda_kv_cache *cache) { return -1; }
UNAVAILABLE(fg_cuda_attention_layer, (float *out, const float *x, int T, fg_cuda_model *model,
                                      fg_cuda_kv_cache *cache, int layer))
UNAVAILABLE(fg_cuda_block, (float *x, int T, fg_cuda_model *model, fg_cuda_kv_cache *cache,
                            int layer))
UNAVAILABLE(fg_cuda_forward, (float *logits, float *probs, fg_cuda_model *model,
                              fg_cuda_kv_cache *cache, const int *ids, int T))
UNAVAILABLE(fg_cuda_forward_last, (float *logits, fg_cuda_model *model, fg_cuda_kv_cache *cache,
                                   const int *ids, int T))
#else
/* ISO C forbids an empty translation unit. */
typedef int fgi_cuda_unavailable_unused;
#endif /* FG_HAVE_CUDA */
