/* Paged KV cache: the block pool, per-sequence block tables and the checks of
 * a batched forward (see kv_paged.h for the layout).
 *
 * The free list is a stack of ids, so allocation and release are O(1) and
 * the ids a sequence gets do not depend on anything but the order of calls
 * (tests replay it). Every operation checks before it changes anything. */
#include "check.h"
#include "kv_paged.h"

#include <stdlib.h>
#include <string.h>

fg_status fgi_kv_pool_create(const char *fn, fgi_kv_pool **pool, const fg_config *cfg,
                             int n_blocks, int block_size)
{
    FGI_TRY(fgi_check_ptr(fn, "pool", pool));
    *pool = NULL;
    FGI_TRY(fgi_check_ptr(fn, "cfg", cfg));
    FGI_TRY(fg_config_validate(cfg));
    FGI_TRY(fgi_check_min(fn, "n_blocks", n_blocks, 1));
    if (block_size < 1 || block_size > FGI_KV_MAX_BLOCK_SIZE)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: argument 'block_size' must be in 1 .. %d (got %d)", fn,
                        FGI_KV_MAX_BLOCK_SIZE, block_size);
    const int d = fg_config_head_dim(cfg);
    size_t n;
    FGI_TRY(fgi_check_elems(fn, "KV pool (n_layer*n_blocks*n_kv_head*block_size*head_dim)", &n,
                            5, (long long)cfg->n_layer, (long long)n_blocks,
                            (long long)cfg->n_kv_head, (long long)block_size, (long long)d));
    fgi_kv_pool *p;
    FGI_TRY(fgi_alloc(fn, (void **)&p, 1, sizeof *p));
    memset(p, 0, sizeof *p);
    fg_status st = fgi_alloc(fn, (void **)&p->k, n, sizeof(float));
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&p->v, n, sizeof(float));
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&p->refs, (size_t)n_blocks, sizeof(int32_t));
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&p->free_ids, (size_t)n_blocks, sizeof(int32_t));
    if (st != FG_OK) {
        fgi_kv_pool_destroy(p);
        return st;
    }
    p->n_layer = cfg->n_layer;
    p->n_kv_head = cfg->n_kv_head;
    p->head_dim = d;
    p->block_size = block_size;
    p->n_blocks = n_blocks;
    p->head_stride = (size_t)block_size * (size_t)d;
    p->block_stride = (size_t)cfg->n_kv_head * p->head_stride;
    p->layer_stride = (size_t)n_blocks * p->block_stride;
    memset(p->refs, 0, sizeof(int32_t) * (size_t)n_blocks);
    /* the stack pops id 0 first */
    for (int i = 0; i < n_blocks; i++) p->free_ids[i] = n_blocks - 1 - i;
    p->n_free = n_blocks;
    *pool = p;
    return FG_OK;
}

void fgi_kv_pool_destroy(fgi_kv_pool *pool)
{
    if (pool == NULL) return;
    free(pool->k);
    free(pool->v);
    free(pool->refs);
    free(pool->free_ids);
    free(pool);
}

int fgi_kv_pool_free_blocks(const fgi_kv_pool *pool) { return pool->n_free; }
int fgi_kv_pool_used_blocks(const fgi_kv_pool *pool) { return pool->n_blocks - pool->n_free; }

fg_status fgi_kv_pool_alloc(const char *fn, fgi_kv_pool *pool, int n, int32_t *ids)
{
    FGI_TRY(fgi_check_min(fn, "n", n, 0));
    if (n > 0) FGI_TRY(fgi_check_ptr(fn, "ids", ids));
    if (n > pool->n_free)
        return fgi_fail(FG_ERR_OOM, "%s: out of KV blocks (%d wanted, %d of %d free)", fn, n,
                        pool->n_free, pool->n_blocks);
    for (int i = 0; i < n; i++) {
        const int32_t id = pool->free_ids[--pool->n_free];
        pool->refs[id] = 1;
        ids[i] = id;
    }
    return FG_OK;
}

static fg_status check_held(const char *fn, const fgi_kv_pool *pool, int32_t id)
{
    if (id < 0 || id >= pool->n_blocks)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: block id %d is outside the pool [0, %d)", fn,
                        (int)id, pool->n_blocks);
    if (pool->refs[id] <= 0)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: block %d is not allocated", fn, (int)id);
    return FG_OK;
}

fg_status fgi_kv_pool_retain(const char *fn, fgi_kv_pool *pool, int32_t id)
{
    FGI_TRY(check_held(fn, pool, id));
    if (pool->refs[id] == INT32_MAX)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: block %d has too many holders", fn, (int)id);
    pool->refs[id]++;
    return FG_OK;
}

fg_status fgi_kv_pool_release(const char *fn, fgi_kv_pool *pool, int32_t id)
{
    FGI_TRY(check_held(fn, pool, id));
    if (--pool->refs[id] == 0) pool->free_ids[pool->n_free++] = id;
    return FG_OK;
}

fg_status fgi_kv_seq_init(const char *fn, fgi_kv_seq *seq, const fgi_kv_pool *pool,
                          int max_tokens)
{
    FGI_TRY(fgi_check_ptr(fn, "seq", seq));
    memset(seq, 0, sizeof *seq);
    FGI_TRY(fgi_check_min(fn, "max_tokens", max_tokens, 1));
    const int max_blocks = (int)(((long long)max_tokens + pool->block_size - 1) / pool->block_size);
    FGI_TRY(fgi_alloc(fn, (void **)&seq->blocks, (size_t)max_blocks, sizeof(int32_t)));
    seq->max_blocks = max_blocks;
    return FG_OK;
}

void fgi_kv_seq_free(fgi_kv_seq *seq)
{
    if (seq == NULL) return;
    free(seq->blocks);
    memset(seq, 0, sizeof *seq);
}

int fgi_kv_seq_blocks_needed(const fgi_kv_seq *seq, const fgi_kv_pool *pool, int tokens)
{
    const long long want = ((long long)tokens + pool->block_size - 1) / pool->block_size;
    return want > seq->n_blocks ? (int)(want - seq->n_blocks) : 0;
}

fg_status fgi_kv_seq_reserve(const char *fn, fgi_kv_seq *seq, fgi_kv_pool *pool, int tokens)
{
    const int more = fgi_kv_seq_blocks_needed(seq, pool, tokens);
    if (more == 0) return FG_OK;
    if (seq->n_blocks + more > seq->max_blocks)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: %d tokens do not fit the block table (%d blocks of %d)", fn, tokens,
                        seq->max_blocks, pool->block_size);
    FGI_TRY(fgi_kv_pool_alloc(fn, pool, more, seq->blocks + seq->n_blocks));
    seq->n_blocks += more;
    return FG_OK;
}

void fgi_kv_seq_release(fgi_kv_seq *seq, fgi_kv_pool *pool)
{
    /* last block first, so that a sequence that comes back gets the same ids */
    while (seq->n_blocks > 0) {
        const fg_status st = fgi_kv_pool_release("fgi_kv_seq_release", pool,
                                                 seq->blocks[--seq->n_blocks]);
        (void)st; /* the table only holds ids the pool gave it */
    }
    seq->len = 0;
}

fg_status fgi_batch_check(const char *fn, const fg_config *cfg, const fgi_kv_pool *pool,
                          const fgi_batch_seq *seqs, int n_seqs, int max_tokens, int *rows)
{
    FGI_TRY(fgi_check_ptr(fn, "pool", pool));
    FGI_TRY(fgi_check_ptr(fn, "seqs", seqs));
    FGI_TRY(fgi_check_min(fn, "n_seqs", n_seqs, 1));
    const int d = fg_config_head_dim(cfg);
    if (pool->n_layer != cfg->n_layer || pool->n_kv_head != cfg->n_kv_head ||
        pool->head_dim != d)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: the KV pool (%d layers, %d kv heads, head_dim %d) does not match "
                        "the model (%d, %d, %d)",
                        fn, pool->n_layer, pool->n_kv_head, pool->head_dim, cfg->n_layer,
                        cfg->n_kv_head, d);
    long long total = 0;
    for (int s = 0; s < n_seqs; s++) {
        const fgi_batch_seq *q = &seqs[s];
        if (q->ids == NULL || q->n_tokens < 1 || q->start < 0 || q->n_prompt < 0 ||
            (long long)q->start + q->n_tokens > max_tokens)
            return fgi_fail(FG_ERR_INVALID_ARG,
                            "%s: sequence %d: %d new tokens from position %d (ids %s, "
                            "n_prompt %d) do not fit 1 .. %d tokens",
                            fn, s, q->n_tokens, q->start, q->ids ? "given" : "NULL",
                            q->n_prompt, max_tokens);
        for (int t = 0; t < q->n_tokens; t++)
            if (q->ids[t] < 0 || q->ids[t] >= cfg->vocab_size)
                return fgi_fail(FG_ERR_INVALID_ARG,
                                "%s: sequence %d: ids[%d] = %d is outside the vocabulary "
                                "[0, %d)",
                                fn, s, t, q->ids[t], cfg->vocab_size);
        const int bs = pool->block_size;
        const int need = (int)(((long long)q->start + q->n_tokens + bs - 1) / bs);
        if (q->blocks == NULL || q->n_blocks < need)
            return fgi_fail(FG_ERR_INVALID_ARG,
                            "%s: sequence %d: its block table has %d of the %d blocks its "
                            "%d tokens need",
                            fn, s, q->blocks ? q->n_blocks : 0, need, q->start + q->n_tokens);
        for (int b = 0; b < need; b++) {
            const int32_t id = q->blocks[b];
            if (id < 0 || id >= pool->n_blocks || pool->refs[id] <= 0)
                return fgi_fail(FG_ERR_INVALID_ARG,
                                "%s: sequence %d: block table entry %d (%d) is not an "
                                "allocated block",
                                fn, s, b, (int)id);
            /* blocks that receive new keys must be this sequence's alone */
            if (b >= q->start / bs && pool->refs[id] != 1)
                return fgi_fail(FG_ERR_INVALID_ARG,
                                "%s: sequence %d: block %d is shared (%d holders) but would be "
                                "written",
                                fn, s, (int)id, (int)pool->refs[id]);
        }
        total += q->n_tokens;
        if (total > (1 << 24))
            return fgi_fail(FG_ERR_INVALID_ARG, "%s: more than %d tokens in one batch", fn,
                            1 << 24);
    }
    if (rows) *rows = (int)total;
    return FG_OK;
}
