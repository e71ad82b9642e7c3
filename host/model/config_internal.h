/* Shared validation of model configurations, weights and caches; `fn` is the
 * public function the check runs for and starts every message. */
#ifndef FLASHGPT_HOST_MODEL_INTERNAL_H
#define FLASHGPT_HOST_MODEL_INTERNAL_H

#include "flashgpt/decoder.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

fg_status fgi_check_config(const char *fn, const fg_config *cfg);

/* What the decoder-call checks need of a KV cache, host (fg_kv_cache) or
 * device (fg_cuda_kv_cache): its shape and its per-layer token counts,
 * layer l's at byte offset l * len_stride from lens (lens NULL: a cache
 * without layers, which matches no configuration). */
typedef struct {
    int n_layer, n_kv_head, head_dim, capacity;
    const int *lens;
    size_t len_stride;
} fgi_cache_shape;

/* Checks of fg_ref_attention_layer / fg_ref_block and their fg_cuda_*
 * twins, after the caller has checked its own objects (config and weights,
 * or the runner): x then out (T, n_embd) (out may equal x, else they must
 * not overlap), 1 <= T (and T <= max_tokens when max_tokens > 0),
 * 0 <= layer < n_layer, a cache (NULL: refused) shaped like cfg with room
 * for T more tokens in `layer`. */
fg_status fgi_check_layer_call(const char *fn, const fg_config *cfg, const float *out,
                               const float *x, int T, int max_tokens,
                               const fgi_cache_shape *cache, int layer);

/* Checks of fg_ref_forward(_last) / fg_cuda_forward(_last), likewise after
 * the caller's own: logits (logit_rows, vocab) and probs (NULL, equal, or
 * not overlapping), ids (T) inside the vocabulary, 1 <= T (<= max_tokens
 * when > 0), every cache layer holding the same count L with room for T
 * more, and with a position table (has_wpe) positions up to L+T-1 < n_ctx. */
fg_status fgi_check_forward_call(const char *fn, const fg_config *cfg, int has_wpe,
                                 const float *logits, const float *probs, int logit_rows,
                                 const int *ids, int T, int max_tokens,
                                 const fgi_cache_shape *cache);
fg_status fgi_check_layer_weights(const char *fn, const fg_config *cfg,
                                  const fg_layer_weights *lw, int layer);
fg_status fgi_check_weights(const char *fn, const fg_config *cfg,
                            const fg_weights *w);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_HOST_MODEL_INTERNAL_H */
