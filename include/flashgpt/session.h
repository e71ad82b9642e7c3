/* flashgpt decoding session: a model's configuration and weights, a KV cache
 * of fixed capacity on one device, and the logits of the last token.
 *
 * Generation = one batched forward over the prompt (prefill), then one
 * forward per new token (decode). Devices:
 *  - CUDA: the GPU; weights uploaded once at creation, cache in device memory;
 *  - CPU: the fast CPU path (fp32, threads, weights repacked once at
 *    creation: a second copy of them in host memory), held to the reference
 *    at the fp32 tolerance of docs/contract.md §32;
 *  - REF: the exact CPU reference (fg_ref_forward: double accumulation,
 *    strict order), slow, what tests compare against;
 *  - AUTO: CUDA when a GPU is usable (fg_cuda_available()), else CPU. */
#ifndef FLASHGPT_SESSION_H
#define FLASHGPT_SESSION_H

#include "flashgpt/decoder.h"
#include "flashgpt/dtype.h"
#include "flashgpt/loader.h"
#include "flashgpt/sampler.h"
#include "flashgpt/status.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FG_DEVICE_AUTO = 0,
    FG_DEVICE_CPU = 1, /* fast CPU path */
    FG_DEVICE_CUDA = 2,
    FG_DEVICE_REF = 3, /* exact CPU reference */
} fg_device;

/* "auto", "cpu", "cuda" or "ref" */
fg_status fg_device_parse(const char *name, fg_device *device);
const char *fg_device_name(fg_device device);

typedef struct fg_session fg_session;

/* ctx: the most tokens the session takes, 1 .. cfg->n_ctx, with a cache of
 * that size allocated at once; 0: up to cfg->n_ctx tokens, with a cache that
 * starts small and grows as tokens arrive (fg_session_reserve sizes it
 * ahead). cfg and w must stay valid for the session's life. Device CUDA without a usable GPU
 * is an error (FG_ERR_CUDA or FG_ERR_UNSUPPORTED), AUTO then falls back to
 * the CPU. The CPU device starts with one thread per online core. */
fg_status fg_session_create(fg_session **session, const fg_config *cfg,
                            const fg_weights *w, fg_device device, int ctx);
/* Element types: fg_session_create runs fp32 everywhere. This runs the
 * model with weights, activations and KV cache in dtype (the residual
 * stream, statistics and logits stay fp32; docs/contract.md §32):
 *  - FG_DTYPE_F32 on every device;
 *  - FG_DTYPE_BF16 / FG_DTYPE_F16 on the CUDA device only, where the card
 *    and the model's head_dim allow it (fg_cuda_decoder_dtype_supported);
 *  - FG_DTYPE_AUTO: on the CUDA device bf16, else f16, else f32 (whichever
 *    the card and model run first); on the CPU and REF devices f32 (the
 *    reference).
 * A type the chosen device cannot run is FG_ERR_UNSUPPORTED, before
 * anything is allocated. The weights stay fp32 on the host (w): the GPU
 * copy is converted while uploading. */
#define FG_DTYPE_AUTO ((fg_dtype)-1)
fg_status fg_session_create_typed(fg_session **session, const fg_config *cfg,
                                  const fg_weights *w, fg_device device, int ctx,
                                  fg_dtype dtype);
/* A cuda session whose weights are generated on the card from seed
 * (fg_cuda_weights_create_random): for benchmarks of shapes whose fp32 host
 * weights would not fit. No host weights exist, so nothing can be checked
 * against the reference; ctx and dtype as above. */
fg_status fg_session_create_random(fg_session **session, const fg_config *cfg, int ctx,
                                   fg_dtype dtype, uint64_t seed);
/* A session of a loaded model (flashgpt/loader.h), as
 * fg_session_create_typed with its configuration and weights, except that
 * the CUDA device takes the weights from the model's checkpoint mapping
 * (fg_cuda_weights_create_model): a GPU run never makes the fp32 host copy
 * of a 16-bit checkpoint. The CPU and REF devices widen the model
 * (fg_model_weights) after the device and type are settled, so a refused
 * type costs nothing. The model must outlive the session. */
fg_status fg_session_create_model(fg_session **session, const fg_model *model,
                                  fg_device device, int ctx, fg_dtype dtype);
/* A session of base's model on base's device and type that reads base's
 * weights instead of a copy of its own: on the CUDA device the weights
 * uploaded once, on the CPU device the packed ones (the REF device computes
 * from the caller's host weights either way). Many sessions of one model,
 * a server's, then cost one copy of the weights plus a cache each. ctx as
 * fg_session_create; the CPU device starts with base's thread count. The
 * shared weights are freed with the last session reading them, whichever
 * order they are destroyed in; base's configuration, host weights or model
 * must outlive them all, as they must outlive base. */
fg_status fg_session_create_sharing(fg_session **session, const fg_session *base, int ctx);
/* Device memory a session uses at its peak (its cache at full capacity):
 * the weights (in full, also when shared with other sessions), the KV
 * cache and the runner's activation buffers and workspaces, in bytes; all 0
 * on the CPU and REF devices. */
fg_status fg_session_device_memory(const fg_session *session, size_t *weights, size_t *cache,
                                   size_t *activations);
/* "auto" (FG_DTYPE_AUTO) or one of fg_dtype_parse's names. */
fg_status fg_session_dtype_parse(const char *text, fg_dtype *dtype);
void fg_session_destroy(fg_session *session); /* NULL is a no-op */
/* The element type the session runs in (FG_DTYPE_F32 for NULL). */
fg_dtype fg_session_dtype(const fg_session *session);

fg_device fg_session_device(const fg_session *session); /* CPU, CUDA or REF */
int fg_session_len(const fg_session *session);          /* tokens so far */
int fg_session_capacity(const fg_session *session);
fg_status fg_session_reset(fg_session *session);        /* forget all tokens */

/* Grows the cache to hold `tokens` tokens (1 .. the capacity) without further
 * growth; the cached tokens are kept. A no-op when it is already that large;
 * on failure the session is unchanged. */
fg_status fg_session_reserve(fg_session *session, int tokens);
/* Bytes of KV cache the session holds now (keys and values, every layer). */
size_t fg_session_cache_bytes(const fg_session *session);
/* Nanoseconds the host has spent inside this session's calls waiting for
 * the CUDA device (the forwards' and GPU draws' synchronizes); 0 on other
 * devices and for NULL. A call's host time is its clock time minus the
 * growth of this count (flashgpt bench's host time per decode step). */
long long fg_session_device_wait_ns(const fg_session *session);

/* Appends the T tokens ids to the session. all_logits, when not NULL, gets
 * the (T, vocab) logits of every new token; the last token's logits are
 * kept either way (fg_session_logits). Running past the capacity is
 * FG_ERR_INVALID_ARG ("context full") with the session unchanged. */
fg_status fg_session_forward(fg_session *session, const int *ids, int T,
                             float *all_logits);

/* Threads of the CPU device: n_threads >= 1, or 0 for one per online core
 * (at most 1024). Other devices accept and ignore it. */
fg_status fg_session_set_threads(fg_session *session, int n_threads);
int fg_session_threads(const fg_session *session); /* 1 on other devices */

/* Logits (vocab) of the last token forwarded; NULL before the first. On
 * the CUDA device they stay on the card after a forward without
 * all_logits and are copied here on the first call (NULL, with
 * fg_last_error, if that copy fails). */
const float *fg_session_logits(const fg_session *session);

/* Draws the next token from the last logits with `sampler` (made for the
 * model's vocabulary): the id fg_sampler_sample would draw from them, on
 * every device, advancing the sampler's stream the same way. On the CUDA
 * device the draw runs on the card, so only the id crosses to the host.
 * FG_ERR_INVALID_ARG before the first forward. */
fg_status fg_session_sample(fg_session *session, fg_sampler *sampler, int *token);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_SESSION_H */
