/* The batched GPU forward (fp32, bf16, f16) over the paged KV cache (cuda/engine/batch.cu),
 * for the continuous-batching scheduler (host/runtime/scheduler.c). Plain C.
 * Like FGI_CUDA_INTERNAL_API the entries come from a list that
 * host/core/cuda_unavailable.c expands into the stubs of a build without
 * CUDA (FG_ERR_UNSUPPORTED, or nothing). */
#ifndef FLASHGPT_CUDA_BATCH_INTERNAL_H
#define FLASHGPT_CUDA_BATCH_INTERNAL_H

#include "flashgpt/decoder.h"
#include "flashgpt/dtype.h"
#include "flashgpt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct fgi_kv_pool;
struct fg_model;
struct fgi_batch_seq;
typedef struct fgi_cuda_batch fgi_cuda_batch;

/* fgi_cuda_batch_create: uploads the weights of cfg once, a device pool
 * mirroring `pool` (same n_blocks, block_size and layout, kv_paged.h;
 * block_size a multiple of 16, the paged decode kernel's granule), and
 * buffers for steps of up to max_rows new tokens of sequences of up to
 * max_tokens tokens.
 * fgi_cuda_batch_forward: the batched forward of fgi_ref_forward_batch on
 * the GPU: keys and values go into the device pool at the block ids of each
 * sequence's table (the host pool keeps only the ids and counts), logits
 * come back into each sequence's host logits. A decode step (every
 * sequence one token, with its logits) replays a CUDA graph captured once
 * per row count (or runs uncaptured where capture fails).
 * fgi_cuda_batch_create_typed: the same in dtype (F32, BF16 or F16; not
 * AUTO): 16-bit weights (the decoder's upload, fg_cuda_weights), device
 * pool and activations, with the residual stream, norm statistics,
 * softmax and logits in fp32 as the 16-bit decoder; FG_ERR_UNSUPPORTED
 * where fg_cuda_decoder_dtype_supported says no. fgi_cuda_batch_create is
 * it with F32.
 * fgi_cuda_batch_create_model: the same with the weights of a loaded model
 * (which must outlive the batch) uploaded by fg_cuda_weights_create_model
 * straight from its checkpoint mapping, in every dtype: the model's fp32
 * host weights are never made (fp32 then reads the decoder's layout, Llama's
 * gate|up fused).
 * fgi_cuda_batch_graph_steps: steps replayed from a graph (test hook); 0
 * for NULL. */
#define FGI_CUDA_BATCH_API(X) \
    X(STATUS, fg_status, fgi_cuda_batch_create, \
      (const char *fn, fgi_cuda_batch **batch, const fg_config *cfg, const fg_weights *w, \
       const struct fgi_kv_pool *pool, int max_tokens, int max_rows)) \
    X(STATUS, fg_status, fgi_cuda_batch_create_typed, \
      (const char *fn, fgi_cuda_batch **batch, const fg_config *cfg, const fg_weights *w, \
       const struct fgi_kv_pool *pool, int max_tokens, int max_rows, fg_dtype dtype)) \
    X(STATUS, fg_status, fgi_cuda_batch_create_model, \
      (const char *fn, fgi_cuda_batch **batch, const struct fg_model *model, \
       const struct fgi_kv_pool *pool, int max_tokens, int max_rows, fg_dtype dtype)) \
    X(VOID, void, fgi_cuda_batch_destroy, (fgi_cuda_batch *batch)) \
    X(STATUS, fg_status, fgi_cuda_batch_forward, \
      (const char *fn, fgi_cuda_batch *batch, struct fgi_kv_pool *pool, \
       const struct fgi_batch_seq *seqs, int n_seqs)) \
    X(ZERO, long long, fgi_cuda_batch_graph_steps, (const fgi_cuda_batch *batch))

#define FGI_CUDA_DECLARE(fallback, ret, name, params) ret name params;
FGI_CUDA_BATCH_API(FGI_CUDA_DECLARE)
#undef FGI_CUDA_DECLARE

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_CUDA_BATCH_INTERNAL_H */
