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

/* KV cache token counts (CPU and GPU caches): every layer in lens[first ..
 * last] (stride_bytes apart) holds lens[first] >= 0 tokens, and T more fit
 * in capacity. */
fg_status fgi_check_cache_lens(const char *fn, const int *lens, size_t stride_bytes, int first,
                               int last, int T, int capacity);
fg_status fgi_check_layer_weights(const char *fn, const fg_config *cfg,
                                  const fg_layer_weights *lw, int layer);
fg_status fgi_check_weights(const char *fn, const fg_config *cfg,
                            const fg_weights *w);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_HOST_MODEL_INTERNAL_H */
