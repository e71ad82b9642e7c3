/* flashgpt continuous batching: many generation requests over one model,
 * advanced together, one batched forward per step, their keys and values
 * in a paged KV cache (fixed-size blocks from one pool, returned the moment
 * a request ends).
 *
 * A step (fg_scheduler_step):
 *  1. takes in the requests submitted since the last step and applies the
 *     cancellations asked for (a cancelled request leaves now and frees its
 *     blocks);
 *  2. gives every running request that is decoding its one token, then
 *     spends what is left of the step's token budget (step_tokens) on
 *     prompt chunks: first of running requests still in their prompt, then
 *     of waiting requests it admits in arrival order (at most max_seqs
 *     run), so that long prompts are prefilled in pieces between the decode
 *     steps of the running streams instead of stalling them;
 *  3. when the pool has no block for a running request's next token, the
 *     most recently admitted other request is preempted: its blocks are
 *     freed and it waits at the head of the queue, to be recomputed from
 *     its prompt and the tokens it has generated (which it keeps; nothing is
 *     sent twice). New requests wait while blocks are short. Nothing
 *     crashes, no sequence sees another's keys;
 *  4. (prefix sharing) a request admitted starts from the full blocks that
 *     a running request filled with the same tokens (shared by reference
 *     counts, never written again), computing only the rest;
 *  5. runs one forward over all scheduled tokens, samples the next token
 *     of every request that reached the end of its known tokens (each with
 *     its own sampler and seed), and reports it (on_token), or ends the
 *     request (on_finish) at a stop id, max_tokens or a full context.
 *
 * Batch invariance: the forward computes every sequence's rows in an order
 * fixed by that sequence alone (no reduction that depends on the batch, see
 * host/runtime/kv_paged.h), so a request's tokens are the same bits alone or
 * among any others, in any arrival order, chunked or preempted and
 * recomputed; with a seed, sampled output is reproducible too.
 *
 * Threads: fg_scheduler_submit, fg_scheduler_cancel, fg_scheduler_stats and
 * fg_scheduler_wait may be called from any thread at any time (a mutex
 * guards the incoming queue and the counters); fg_scheduler_step from one
 * thread at a time (a second concurrent call is refused). Callbacks run on
 * the stepping thread with no lock held: they may submit and cancel, but
 * must not step or destroy.
 *
 * Devices: the exact reference (FG_DEVICE_REF), the fast CPU path
 * (FG_DEVICE_CPU; AUTO means CPU here) and the GPU (FG_DEVICE_CUDA: the
 * pool lives on the device, block_size a multiple of 16 and head_dim a
 * multiple of 4 up to 256, else FG_ERR_UNSUPPORTED; a build without CUDA
 * refuses it with FG_ERR_UNSUPPORTED). dtype: the CPU devices compute in
 * f32 (AUTO or F32; a 16-bit dtype there is FG_ERR_UNSUPPORTED); on the GPU
 * F32, BF16 or F16 (weights, KV pool and activations in that type, the
 * residual stream, statistics and logits fp32, as a 16-bit session), AUTO
 * being bf16 where fg_cuda_decoder_dtype_supported allows it, else f16,
 * else f32 (fg_scheduler_stats.dtype says which). Batch invariance holds
 * in every dtype.
 *
 * Weights: fg_scheduler_create takes fp32 host weights; a loaded model is
 * better served with fg_scheduler_create_model, whose GPU path uploads
 * the checkpoint's tensors straight from the model's mapping (no fp32 host
 * copy of a 16-bit checkpoint; docs/contract.md §21a, §22). */
#ifndef FLASHGPT_SCHEDULER_H
#define FLASHGPT_SCHEDULER_H

#include "flashgpt/decoder.h"
#include "flashgpt/generate.h"
#include "flashgpt/loader.h"
#include "flashgpt/sampler.h"
#include "flashgpt/session.h"
#include "flashgpt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    fg_device device;  /* REF, CPU or CUDA (AUTO: CPU) */
    int n_threads;     /* CPU: 0 = one per online core, else 1 .. 1024 */
    int ctx;           /* most tokens of one request (prompt + generated),
                          1 .. cfg->n_ctx; 0: cfg->n_ctx */
    int block_size;    /* tokens per KV block, 1 .. 4096 */
    int n_blocks;      /* blocks in the pool, >= 1; 0: enough for max_seqs
                          requests of ctx tokens each */
    int max_seqs;      /* requests running at once, 1 .. 4096 */
    int step_tokens;   /* token budget of one step, >= max_seqs (every running
                          request decodes each step) */
    int prefix_sharing; /* nonzero: a request starts from the full blocks of a
                           running request with the same token prefix */
    fg_dtype dtype;    /* AUTO, F32, BF16 or F16 (see Devices above) */
} fg_scheduler_config;

/* device AUTO, every core, ctx 0, blocks of 16 tokens, n_blocks 0,
 * max_seqs 32, step_tokens 256, prefix sharing on, dtype AUTO */
fg_scheduler_config fg_scheduler_defaults(void);

/* A generated token of request id, and the logits (vocab) it was drawn
 * from, valid during the call only (for log-probabilities; tests compare
 * their bits). Return 0 to go on, nonzero to cancel the request (it then
 * ends with FG_STOP_CANCELLED). */
typedef int (*fg_request_token_fn)(void *user, uint64_t id, int token, const float *logits);

/* The end of request id, exactly once per accepted request and after its
 * last token: why (FG_STOP_EOS for a stop id, which is not passed on;
 * FG_STOP_MAX_TOKENS; FG_STOP_CONTEXT_FULL when ctx tokens are reached;
 * FG_STOP_CANCELLED; FG_STOP_NONE when its tokens could not be sampled,
 * e.g. non-finite logits), its prompt length and the tokens passed to
 * on_token. The scheduler never uses user again afterwards. */
typedef void (*fg_request_finish_fn)(void *user, uint64_t id, fg_stop_reason reason,
                                     int n_prompt, int n_generated);

typedef struct {
    const int *prompt;            /* n_prompt ids (copied) */
    int n_prompt;                 /* 1 .. ctx */
    fg_sampler_config sampling;   /* temperature 0: greedy */
    int max_tokens;               /* >= 1 */
    const int *stop_ids;          /* n_stop_ids ids that end it (copied; NULL when 0) */
    int n_stop_ids;               /* 0 .. 1024 */
    fg_request_token_fn on_token; /* may be NULL */
    fg_request_finish_fn on_finish; /* may be NULL */
    void *user;
} fg_request;

typedef struct fg_scheduler fg_scheduler;

/* cfg and w must outlive the scheduler. Allocates the pool, the packed
 * weights (CPU) and the per-step buffers at once. */
fg_status fg_scheduler_create(fg_scheduler **sched, const fg_config *cfg,
                              const fg_weights *w, const fg_scheduler_config *opts);

/* The same over a loaded model (fg_model_load; it must outlive the
 * scheduler), for serving a checkpoint without an fp32 host copy: on the
 * GPU the weights go to the card straight from the model's checkpoint
 * mapping (fg_cuda_weights_create_model), in every dtype, so the model's
 * fp32 weights are never made; the CPU devices compute from
 * fg_model_weights (widened on the first use). The options are checked
 * before anything is widened or allocated; errors as fg_scheduler_create,
 * a NULL model FG_ERR_INVALID_ARG. */
fg_status fg_scheduler_create_model(fg_scheduler **sched, const fg_model *model,
                                    const fg_scheduler_config *opts);

/* Ends every request still there with FG_STOP_CANCELLED (on_finish on the
 * calling thread), then frees everything. No step may be running. NULL is
 * a no-op. */
void fg_scheduler_destroy(fg_scheduler *sched);

/* Queues a request (validated now: ids in the vocabulary, lengths, the
 * sampling configuration); *id (>= 1, never reused) names it. It starts at
 * the next step. */
fg_status fg_scheduler_submit(fg_scheduler *sched, const fg_request *req, uint64_t *id);

/* Asks for request id to end with FG_STOP_CANCELLED at the next step
 * boundary (its blocks are freed then). FG_OK when it was still there,
 * FG_ERR_INVALID_ARG for an id that never was or has already finished. */
fg_status fg_scheduler_cancel(fg_scheduler *sched, uint64_t id);

/* One step (see above). *busy (may be NULL) gets the requests still
 * waiting or running after it: 0 means idle. An error of the forward pass
 * leaves every request where it was (the step can be retried). */
fg_status fg_scheduler_step(fg_scheduler *sched, int *busy);

/* Blocks until there is work (requests waiting, running or submitted) or
 * timeout_ms passes (0: just look; < 0: wait without limit); *busy gets
 * whether there is. For the stepping thread of a server. */
fg_status fg_scheduler_wait(fg_scheduler *sched, int timeout_ms, int *busy);

typedef struct {
    int running, waiting;   /* requests (submitted ones not yet taken in count as waiting) */
    int blocks_total, blocks_used, block_size;
    int ctx;                /* the most tokens of one request */
    uint64_t steps, preemptions;
    uint64_t forwarded_tokens; /* tokens forwarded: prompts, recomputation and the
                                  generated tokens fed back */
    uint64_t generated_tokens; /* tokens passed to on_token */
    uint64_t shared_tokens;    /* prompt tokens taken from shared blocks, not computed */
    uint64_t finished;         /* requests ended, any reason */
    fg_dtype dtype;            /* what the forward computes in (AUTO resolved) */
} fg_scheduler_stats;

fg_status fg_scheduler_stats_get(fg_scheduler *sched, fg_scheduler_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_SCHEDULER_H */
