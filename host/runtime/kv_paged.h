/* Paged KV cache (issue 15): keys and values of many sequences in one pool
 * of fixed-size blocks, a block table per sequence, and the description of
 * one batched forward that the reference, the fast CPU path and (later) the
 * GPU all read the same way.
 *
 * Layout, chosen so that a GPU kernel can read it as it is:
 *  - one pool for all layers: k and v are each one allocation of shape
 *    (n_layer, n_blocks, n_kv_head, block_size, head_dim) fp32;
 *  - a block id is an int32 in [0, n_blocks) and names the same slots in
 *    every layer, so a sequence has ONE block table for all its layers;
 *  - token t of a sequence sits in block table[t / block_size], slot
 *    t % block_size: for layer l and kv head g its key is at
 *    k + l * layer_stride + id * block_stride + g * head_stride + slot * head_dim
 *    (block_stride = n_kv_head * block_size * head_dim, head_stride =
 *    block_size * head_dim, layer_stride = n_blocks * block_stride), so one
 *    head's keys of one block are a contiguous (block_size, head_dim) tile;
 *  - keys are stored already rotated when RoPE is on (as fg_kv_cache).
 * The allocator hands out block ids from a stack of free ids with a
 * reference count per block (a block shared by several sequences, e.g. a
 * common prompt prefix, is freed when its last holder lets go); running out
 * is a clean FG_ERR_OOM that changes nothing, and a release of a free block
 * is refused, so a bug in a caller cannot hand one block to two holders.
 * Not thread-safe: one owner (the scheduler's stepping thread) uses it. */
#ifndef FLASHGPT_HOST_KV_PAGED_H
#define FLASHGPT_HOST_KV_PAGED_H

#include "flashgpt/decoder.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FGI_KV_MAX_BLOCK_SIZE 4096

typedef struct fgi_kv_pool {
    int n_layer, n_kv_head, head_dim, block_size, n_blocks;
    size_t head_stride;  /* block_size * head_dim */
    size_t block_stride; /* n_kv_head * head_stride */
    size_t layer_stride; /* n_blocks * block_stride */
    float *k, *v;        /* (n_layer, n_blocks, n_kv_head, block_size, head_dim) */
    int32_t *refs;       /* (n_blocks) holders of each block; 0: free */
    int32_t *free_ids;   /* (n_blocks) stack of free ids, n_free on it */
    int n_free;
} fgi_kv_pool;

/* A pool of n_blocks blocks of block_size tokens (1 .. FGI_KV_MAX_BLOCK_SIZE)
 * for the layers, kv heads and head_dim of cfg. */
fg_status fgi_kv_pool_create(const char *fn, fgi_kv_pool **pool, const fg_config *cfg,
                             int n_blocks, int block_size);
void fgi_kv_pool_destroy(fgi_kv_pool *pool); /* NULL is a no-op */

int fgi_kv_pool_free_blocks(const fgi_kv_pool *pool);
int fgi_kv_pool_used_blocks(const fgi_kv_pool *pool);

/* n free blocks into ids (reference count 1 each), all or nothing: fewer
 * than n free is FG_ERR_OOM with the pool unchanged. */
fg_status fgi_kv_pool_alloc(const char *fn, fgi_kv_pool *pool, int n, int32_t *ids);
/* One more holder of an allocated block (prefix sharing). */
fg_status fgi_kv_pool_retain(const char *fn, fgi_kv_pool *pool, int32_t id);
/* One holder fewer; the block is free again when none is left. A free or
 * out-of-range id is FG_ERR_INVALID_ARG with the pool unchanged. */
fg_status fgi_kv_pool_release(const char *fn, fgi_kv_pool *pool, int32_t id);

/* One sequence's view of the pool: its block table and how many of its
 * tokens are cached. The table has room for max_blocks ids, allocated once. */
typedef struct {
    int32_t *blocks; /* (max_blocks) logical block -> pool block id */
    int n_blocks;    /* ids held */
    int max_blocks;
    int len;         /* tokens whose keys and values are in the blocks */
} fgi_kv_seq;

/* A table for up to max_tokens tokens of pool's block size. */
fg_status fgi_kv_seq_init(const char *fn, fgi_kv_seq *seq, const fgi_kv_pool *pool,
                          int max_tokens);
void fgi_kv_seq_free(fgi_kv_seq *seq); /* the table itself; release first */
/* Blocks needed beyond those held to hold `tokens` tokens (0 if none). */
int fgi_kv_seq_blocks_needed(const fgi_kv_seq *seq, const fgi_kv_pool *pool, int tokens);
/* Holds enough blocks for `tokens` tokens, all or nothing (FG_ERR_OOM when
 * the pool is short, FG_ERR_INVALID_ARG past the table). */
fg_status fgi_kv_seq_reserve(const char *fn, fgi_kv_seq *seq, fgi_kv_pool *pool, int tokens);
/* Returns every block to the pool; len becomes 0. */
void fgi_kv_seq_release(fgi_kv_seq *seq, fgi_kv_pool *pool);

/* One sequence of a batched forward. Its n_tokens new tokens take positions
 * start .. start+n_tokens-1 (start = tokens already cached); their keys and
 * values are written into the blocks of `blocks` (a table covering
 * start+n_tokens tokens, whose written blocks have one holder). logits:
 * NULL for none (a prompt chunk that is not the last), else (1, vocab) for
 * the last new token, or (n_tokens, vocab) with all_logits. n_prompt: the
 * sequence's prompt length (>= 0): the GPU computes the attention of new
 * tokens at positions below it with the paged prefill kernel, one launch
 * per chunk, and of the others (decode steps, generated tokens recomputed
 * after a preemption) with the decode kernel, so the path of a position,
 * hence its bits, is the same however the sequence is scheduled; 0: every
 * row a decode row. The CPU paths compute every row alike and ignore it. */
typedef struct fgi_batch_seq {
    const int *ids;
    int n_tokens;
    int start;
    const int32_t *blocks;
    int n_blocks;     /* entries of blocks, >= ceil((start + n_tokens) / block_size) */
    float *logits;
    int all_logits;
    int n_prompt;
} fgi_batch_seq;

/* The checks every batched forward makes first: pool and seqs present,
 * n_seqs >= 1, each sequence with 1 .. n_tokens ids in the vocabulary,
 * start >= 0, start + n_tokens <= max_tokens, n_prompt >= 0, a table long enough whose ids
 * are allocated blocks, no shared block written, and *rows gets the total
 * of new tokens. */
fg_status fgi_batch_check(const char *fn, const fg_config *cfg, const fgi_kv_pool *pool,
                          const fgi_batch_seq *seqs, int n_seqs, int max_tokens,
                          int *rows);

/* The reference's batched forward (host/ref/ref_batch.c): every row as
 * fg_ref_forward computes it (double accumulation, the configuration's
 * dense or flash order), the keys gathered from the blocks, so a
 * sequence's logits are bit for bit those of fg_ref_forward over the same
 * tokens, whatever shares its batch and however its prompt was chunked.
 * max_tokens: cfg->n_ctx. On error nothing is written but key / value
 * slots past each sequence's start. cfg and w are checked. */
fg_status fgi_ref_forward_batch(const char *fn, const fg_config *cfg, const fg_weights *w,
                                fgi_kv_pool *pool, const fgi_batch_seq *seqs, int n_seqs);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_HOST_KV_PAGED_H */
