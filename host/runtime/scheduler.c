/* Continuous batching over a paged KV cache (flashgpt/scheduler.h).
 *
 * Requests live in three places: `incoming` (submitted, guarded by the
 * mutex), `waiting` (a deque only the stepping thread touches; preempted
 * requests go back to its front) and `running` (an array in admission
 * order, oldest first). Every live request is also on the mutex-guarded
 * `live` list, which is what fg_scheduler_cancel searches: it only sets a
 * flag that the next step reads under the mutex, so the stepping thread
 * never has a list changed under it.
 *
 * A request keeps all its tokens (prompt, then each generated token once
 * sampled); kv.len of them are in the cache, the rest are what the next
 * steps forward. Preemption just releases the blocks (kv.len = 0): the
 * tokens stay, so recomputation is a longer prefill, and since the forward
 * is batch-invariant the recomputed logits are the same bits. For the same
 * reason a request may start from blocks that another request filled with
 * the same token prefix (prefix sharing, by reference counts). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "config_internal.h"
#include "../../cuda/engine/batch_internal.h"
#include "cpu_internal.h"
#include "flashgpt/cuda.h"
#include "flashgpt/scheduler.h"
#include "kv_paged.h"
#include "loader_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct request {
    uint64_t id;
    int *tokens;    /* prompt, then generated ids; cap entries */
    int n_tokens, cap, n_prompt, n_generated, max_tokens;
    int *stop_ids;
    int n_stop;
    fg_sampler *sampler;
    fgi_kv_seq kv;
    fg_request_token_fn on_token;
    fg_request_finish_fn on_finish;
    void *user;
    int cancel;     /* asked for (under the mutex) */
    int chunk;      /* tokens scheduled in this step */
    struct request *next, *prev;           /* incoming or waiting */
    struct request *live_next, *live_prev; /* live list (under the mutex) */
} request;

typedef struct {
    request *head, *tail;
    int n;
} queue;

struct fg_scheduler {
    fg_config cfg;
    const fg_weights *w;  /* fp32 host weights; NULL on CUDA from a model */
    const fg_model *model; /* fg_scheduler_create_model on CUDA: the upload reads it */
    fg_device device;
    fg_dtype dtype;       /* resolved: F32 unless CUDA */
    fgi_cpu_batch *cpu;   /* CPU device */
    fgi_cuda_batch *gpu;  /* CUDA device: weights, device pool, step buffers */
    fgi_kv_pool *pool;
    int ctx, seq_cap, max_seqs, step_tokens;
    float *logits;        /* (max_seqs, vocab) */
    fgi_batch_seq *batch; /* (max_seqs) */
    request **running;    /* (max_seqs) admission order */
    int n_running;
    queue waiting;        /* stepping thread only */
    /* prefix sharing (stepping thread only): full blocks registered under
     * (parent block, their tokens), chained per hash bucket */
    int sharing;
    int32_t *blk_parent, *blk_next, *bucket; /* (n_blocks) (n_blocks) (n_buckets) */
    int *blk_tokens;                         /* (n_blocks, block_size) */
    unsigned char *blk_registered;           /* (n_blocks) */
    int n_buckets;                           /* a power of two */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    queue incoming;       /* under mu */
    request *live;        /* under mu */
    uint64_t next_id;
    int stepping;
    fg_scheduler_stats stats; /* under mu */
};

/* ---- small pieces ------------------------------------------------------------- */

fg_scheduler_config fg_scheduler_defaults(void)
{
    fg_scheduler_config c = {.device = FG_DEVICE_AUTO, .n_threads = 0, .ctx = 0,
                             .block_size = 16, .n_blocks = 0, .max_seqs = 32,
                             .step_tokens = 256, .prefix_sharing = 1,
                             .dtype = FG_DTYPE_AUTO};
    return c;
}

static void push_back(queue *q, request *r)
{
    r->next = NULL;
    r->prev = q->tail;
    if (q->tail) q->tail->next = r;
    else q->head = r;
    q->tail = r;
    q->n++;
}

static void push_front(queue *q, request *r)
{
    r->prev = NULL;
    r->next = q->head;
    if (q->head) q->head->prev = r;
    else q->tail = r;
    q->head = r;
    q->n++;
}

static void unlink_req(queue *q, request *r)
{
    if (r->prev) r->prev->next = r->next;
    else q->head = r->next;
    if (r->next) r->next->prev = r->prev;
    else q->tail = r->prev;
    r->next = r->prev = NULL;
    q->n--;
}

static void request_free(request *r)
{
    if (r == NULL) return;
    free(r->tokens);
    free(r->stop_ids);
    fg_sampler_destroy(r->sampler);
    fgi_kv_seq_free(&r->kv);
    free(r);
}

static int is_stop(const request *r, int token)
{
    for (int i = 0; i < r->n_stop; i++)
        if (r->stop_ids[i] == token) return 1;
    return 0;
}

/* ---- prefix sharing ---------------------------------------------------------------- */
/* A full block is registered under its parent (the block before it in the
 * table that filled it; -1 for a first block) and its block_size tokens, so
 * that a chain of matches from block 0 means the same token prefix, hence
 * (batch invariance) the same keys and values. A holder of a block holds
 * its parent too, so a parent id is never reused while a child is
 * registered; a block is unregistered when its last holder lets go. */

static uint32_t block_key(const fg_scheduler *s, int32_t parent, const int *tokens)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uint32_t)parent;
    for (int i = 0; i < s->pool->block_size; i++)
        h = (h ^ (uint64_t)(uint32_t)tokens[i]) * 1099511628211ULL;
    return (uint32_t)(h ^ (h >> 32)) & (uint32_t)(s->n_buckets - 1);
}

static int32_t find_block(const fg_scheduler *s, int32_t parent, const int *tokens)
{
    const size_t bs = (size_t)s->pool->block_size;
    for (int32_t id = s->bucket[block_key(s, parent, tokens)]; id >= 0; id = s->blk_next[id])
        if (s->blk_parent[id] == parent &&
            memcmp(s->blk_tokens + (size_t)id * bs, tokens, sizeof(int) * bs) == 0)
            return id;
    return -1;
}

static void register_block(fg_scheduler *s, int32_t id, int32_t parent, const int *tokens)
{
    if (s->blk_registered[id] || find_block(s, parent, tokens) >= 0) return;
    const size_t bs = (size_t)s->pool->block_size;
    const uint32_t k = block_key(s, parent, tokens);
    memcpy(s->blk_tokens + (size_t)id * bs, tokens, sizeof(int) * bs);
    s->blk_parent[id] = parent;
    s->blk_next[id] = s->bucket[k];
    s->bucket[k] = id;
    s->blk_registered[id] = 1;
}

static void unregister_block(fg_scheduler *s, int32_t id)
{
    if (!s->blk_registered[id]) return;
    const size_t bs = (size_t)s->pool->block_size;
    int32_t *link = &s->bucket[block_key(s, s->blk_parent[id], s->blk_tokens + (size_t)id * bs)];
    while (*link != id) link = &s->blk_next[*link];
    *link = s->blk_next[id];
    s->blk_registered[id] = 0;
}

/* fgi_kv_seq_release that unregisters the blocks it frees. */
static void release_kv(fg_scheduler *s, fgi_kv_seq *kv)
{
    if (s->sharing)
        for (int b = 0; b < kv->n_blocks; b++)
            if (s->pool->refs[kv->blocks[b]] == 1) unregister_block(s, kv->blocks[b]);
    fgi_kv_seq_release(kv, s->pool);
}

/* Registers the blocks of r that its last chunk filled (from token `from`). */
static void register_filled(fg_scheduler *s, request *r, int from)
{
    const int bs = s->pool->block_size;
    /* on the GPU a position's bits depend on its path (the prefill kernel
     * below n_prompt, the decode kernel after it, kv_paged.h): only blocks
     * of prompt positions are offered there, so a request that takes one
     * gets the bits it would compute itself */
    const int end = s->device == FG_DEVICE_CUDA && r->n_prompt < r->kv.len ? r->n_prompt
                                                                           : r->kv.len;
    for (int b = from / bs; (b + 1) * bs <= end; b++)
        register_block(s, r->kv.blocks[b], b == 0 ? -1 : r->kv.blocks[b - 1],
                       r->tokens + (size_t)b * bs);
}

/* Takes the registered blocks that hold a prefix of r's tokens (all but
 * its last token, which must be computed for its logits); returns the
 * tokens they hold. r holds no block. */
static int match_prefix(fg_scheduler *s, request *r)
{
    const int bs = s->pool->block_size;
    int32_t parent = -1;
    int b = 0;
    for (; s->sharing && (b + 1) * bs <= r->n_tokens - 1 && b < r->kv.max_blocks; b++) {
        const int32_t id = find_block(s, parent, r->tokens + (size_t)b * bs);
        if (id < 0 || fgi_kv_pool_retain("fg_scheduler_step", s->pool, id) != FG_OK) break;
        r->kv.blocks[b] = id;
        parent = id;
    }
    r->kv.n_blocks = b;
    r->kv.len = b * bs;
    return b * bs;
}

/* Counters of the stepping thread's lists, published under the mutex. */
static void publish(fg_scheduler *s)
{
    s->stats.running = s->n_running;
    s->stats.waiting = s->waiting.n + s->incoming.n;
    s->stats.blocks_used = fgi_kv_pool_used_blocks(s->pool);
}

/* Ends r, which is on no queue and not in running: frees its blocks,
 * forgets it, then reports, so that statistics read from on_finish (or
 * after it) no longer count it. */
static void finish(fg_scheduler *s, request *r, fg_stop_reason reason)
{
    release_kv(s, &r->kv);
    pthread_mutex_lock(&s->mu);
    if (r->live_prev) r->live_prev->live_next = r->live_next;
    else s->live = r->live_next;
    if (r->live_next) r->live_next->live_prev = r->live_prev;
    s->stats.finished++;
    publish(s);
    pthread_mutex_unlock(&s->mu);
    if (r->on_finish) r->on_finish(r->user, r->id, reason, r->n_prompt, r->n_generated);
    request_free(r);
}

static void remove_running(fg_scheduler *s, int i)
{
    memmove(s->running + i, s->running + i + 1, sizeof(request *) * (size_t)(s->n_running - i - 1));
    s->n_running--;
}

/* ---- create / destroy ---------------------------------------------------------- */

static fg_status check_opts(const char *fn, const fg_config *cfg, const fg_scheduler_config *o)
{
    if (o->device != FG_DEVICE_AUTO && o->device != FG_DEVICE_CPU && o->device != FG_DEVICE_REF &&
        o->device != FG_DEVICE_CUDA) {
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: unknown device %d", fn, (int)o->device);
    }
    if (o->n_threads < 0 || o->n_threads > 1024)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: option 'n_threads' must be in 0 .. 1024 (got %d)", fn, o->n_threads);
    if (o->ctx < 0 || o->ctx > cfg->n_ctx)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: option 'ctx' must be in 0 .. %d (got %d)", fn,
                        cfg->n_ctx, o->ctx);
    if (o->block_size < 1 || o->block_size > FGI_KV_MAX_BLOCK_SIZE)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: option 'block_size' must be in 1 .. %d (got %d)", fn,
                        FGI_KV_MAX_BLOCK_SIZE, o->block_size);
    if (o->max_seqs < 1 || o->max_seqs > 4096)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: option 'max_seqs' must be in 1 .. 4096 (got %d)", fn, o->max_seqs);
    if (o->n_blocks < 0)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: option 'n_blocks' must be >= 0 (got %d)", fn,
                        o->n_blocks);
    if (o->dtype != FG_DTYPE_AUTO && o->dtype != FG_DTYPE_F32 && o->dtype != FG_DTYPE_BF16 &&
        o->dtype != FG_DTYPE_F16)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: option 'dtype' is not auto, f32, bf16 or f16 (%d)",
                        fn, (int)o->dtype);
    if (o->device != FG_DEVICE_CUDA && o->dtype != FG_DTYPE_AUTO && o->dtype != FG_DTYPE_F32)
        return fgi_fail(FG_ERR_UNSUPPORTED,
                        "%s: dtype %s runs on the cuda device only; the %s device computes in "
                        "f32 (use --dtype f32 or auto)", fn, fg_dtype_name(o->dtype),
                        fg_device_name(o->device == FG_DEVICE_AUTO ? FG_DEVICE_CPU : o->device));
    if (o->step_tokens < o->max_seqs || o->step_tokens > (1 << 20))
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: option 'step_tokens' must be in max_seqs (%d) .. %d (got %d)", fn,
                        o->max_seqs, 1 << 20, o->step_tokens);
    return FG_OK;
}

static fg_status sched_init(const char *fn, fg_scheduler *s, const fg_scheduler_config *o)
{
    const fg_config *cfg = &s->cfg;
    const int bs = o->block_size;
    long long n_blocks = o->n_blocks;
    if (n_blocks == 0) n_blocks = (long long)o->max_seqs * ((s->ctx + bs - 1) / bs);
    if (n_blocks > INT32_MAX)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: %lld KV blocks are too many", fn, n_blocks);
    FGI_TRY(fgi_kv_pool_create(fn, &s->pool, cfg, (int)n_blocks, bs));
    const long long pool_tokens = n_blocks * bs;
    s->seq_cap = pool_tokens < s->ctx ? (int)pool_tokens : s->ctx;
    size_t n;
    FGI_TRY(fgi_check_elems(fn, "logits (max_seqs*vocab)", &n, 2, (long long)o->max_seqs,
                            (long long)cfg->vocab_size));
    FGI_TRY(fgi_alloc(fn, (void **)&s->logits, n, sizeof(float)));
    FGI_TRY(fgi_alloc(fn, (void **)&s->batch, (size_t)o->max_seqs, sizeof *s->batch));
    FGI_TRY(fgi_alloc(fn, (void **)&s->running, (size_t)o->max_seqs, sizeof *s->running));
    s->sharing = o->prefix_sharing != 0;
    if (s->sharing) {
        const size_t nb = (size_t)n_blocks;
        s->n_buckets = 1;
        while ((size_t)s->n_buckets < 2 * nb && s->n_buckets < (1 << 30)) s->n_buckets *= 2;
        FGI_TRY(fgi_check_elems(fn, "prefix tokens (n_blocks*block_size)", &n, 2,
                                (long long)n_blocks, (long long)bs));
        FGI_TRY(fgi_alloc(fn, (void **)&s->blk_tokens, n, sizeof(int)));
        FGI_TRY(fgi_alloc(fn, (void **)&s->blk_parent, nb, sizeof(int32_t)));
        FGI_TRY(fgi_alloc(fn, (void **)&s->blk_next, nb, sizeof(int32_t)));
        FGI_TRY(fgi_alloc(fn, (void **)&s->blk_registered, nb, 1));
        FGI_TRY(fgi_alloc(fn, (void **)&s->bucket, (size_t)s->n_buckets, sizeof(int32_t)));
        memset(s->blk_registered, 0, nb);
        for (int i = 0; i < s->n_buckets; i++) s->bucket[i] = -1;
    }
    if (s->device == FG_DEVICE_CPU)
        FGI_TRY(fgi_cpu_batch_create(fn, &s->cpu, cfg, s->w, s->ctx, o->n_threads,
                                     FGI_CPU_ISA_AUTO));
    if (s->device == FG_DEVICE_CUDA && s->model != NULL)
        FGI_TRY(fgi_cuda_batch_create_model(fn, &s->gpu, s->model, s->pool, s->ctx,
                                            s->step_tokens, s->dtype));
    else if (s->device == FG_DEVICE_CUDA)
        FGI_TRY(fgi_cuda_batch_create_typed(fn, &s->gpu, cfg, s->w, s->pool, s->ctx,
                                            s->step_tokens, s->dtype));
    return FG_OK;
}

static void sched_free(fg_scheduler *s)
{
    fgi_cpu_batch_destroy(s->cpu);
    fgi_cuda_batch_destroy(s->gpu);
    fgi_kv_pool_destroy(s->pool);
    free(s->logits);
    free(s->batch);
    free(s->running);
    free(s->blk_tokens), free(s->blk_parent), free(s->blk_next);
    free(s->blk_registered), free(s->bucket);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* The scheduler over w, or over model's device upload (model not NULL,
 * CUDA only); the arguments are checked. */
static fg_status sched_create(const char *fn, fg_scheduler **sched, const fg_config *cfg,
                              const fg_weights *w, const fg_model *model,
                              const fg_scheduler_config *opts)
{
    fg_scheduler *s;
    FGI_TRY(fgi_alloc(fn, (void **)&s, 1, sizeof *s));
    memset(s, 0, sizeof *s);
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return fgi_fail(FG_ERR_OOM, "%s: cannot create a mutex", fn);
    }
    if (pthread_cond_init(&s->cv, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return fgi_fail(FG_ERR_OOM, "%s: cannot create a condition variable", fn);
    }
    s->cfg = *cfg;
    s->w = w;
    s->model = model;
    s->device = opts->device == FG_DEVICE_REF || opts->device == FG_DEVICE_CUDA ? opts->device
                                                                               : FG_DEVICE_CPU;
    s->ctx = opts->ctx ? opts->ctx : cfg->n_ctx;
    /* AUTO on the GPU: 16-bit where the card and head_dim allow (as a session) */
    s->dtype = opts->dtype == FG_DTYPE_AUTO ? FG_DTYPE_F32 : opts->dtype;
    if (s->device == FG_DEVICE_CUDA && opts->dtype == FG_DTYPE_AUTO)
        s->dtype = fg_cuda_decoder_dtype_supported(cfg, FG_DTYPE_BF16)  ? FG_DTYPE_BF16
                   : fg_cuda_decoder_dtype_supported(cfg, FG_DTYPE_F16) ? FG_DTYPE_F16
                                                                        : FG_DTYPE_F32;
    s->max_seqs = opts->max_seqs;
    s->step_tokens = opts->step_tokens;
    s->next_id = 1;
    fg_status st = sched_init(fn, s, opts);
    if (st != FG_OK) {
        sched_free(s);
        return st;
    }
    s->stats.blocks_total = s->pool->n_blocks;
    s->stats.block_size = s->pool->block_size;
    s->stats.dtype = s->dtype;
    s->stats.ctx = s->seq_cap;
    *sched = s;
    return FG_OK;
}

fg_status fg_scheduler_create(fg_scheduler **sched, const fg_config *cfg, const fg_weights *w,
                              const fg_scheduler_config *opts)
{
    static const char fn[] = "fg_scheduler_create";
    FGI_TRY(fgi_check_ptr(fn, "sched", sched));
    *sched = NULL;
    FGI_TRY(fgi_check_ptr(fn, "opts", opts));
    FGI_TRY(fgi_check_config(fn, cfg));
    FGI_TRY(fgi_check_weights(fn, cfg, w));
    FGI_TRY(check_opts(fn, cfg, opts));
    return sched_create(fn, sched, cfg, w, NULL, opts);
}

fg_status fg_scheduler_create_model(fg_scheduler **sched, const fg_model *model,
                                    const fg_scheduler_config *opts)
{
    static const char fn[] = "fg_scheduler_create_model";
    FGI_TRY(fgi_check_ptr(fn, "sched", sched));
    *sched = NULL;
    FGI_TRY(fgi_check_ptr(fn, "opts", opts));
    FGI_TRY(fgi_check_ptr(fn, "model", model));
    const fg_config *cfg = fg_model_config(model);
    /* every refusal of the options comes before the widening below */
    FGI_TRY(check_opts(fn, cfg, opts));
    if (opts->device == FG_DEVICE_CUDA) return sched_create(fn, sched, cfg, NULL, model, opts);
    /* the CPU devices compute from the fp32 weights: widened here, once */
    const fg_weights *w;
    FGI_TRY(fgi_model_widen(fn, model, &w));
    return sched_create(fn, sched, cfg, w, NULL, opts);
}

void fg_scheduler_destroy(fg_scheduler *s)
{
    if (s == NULL) return;
    pthread_mutex_lock(&s->mu);
    while (s->incoming.head) {
        request *r = s->incoming.head;
        unlink_req(&s->incoming, r);
        push_back(&s->waiting, r);
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    while (s->n_running > 0) {
        request *r = s->running[s->n_running - 1];
        remove_running(s, s->n_running - 1);
        finish(s, r, FG_STOP_CANCELLED);
    }
    while (s->waiting.head) {
        request *r = s->waiting.head;
        unlink_req(&s->waiting, r);
        finish(s, r, FG_STOP_CANCELLED);
    }
    sched_free(s);
}

/* ---- submit / cancel / stats / wait ------------------------------------------- */

static fg_status check_request(const char *fn, const fg_scheduler *s, const fg_request *q)
{
    FGI_TRY(fgi_check_ptr(fn, "req", q));
    FGI_TRY(fgi_check_ptr(fn, "req->prompt", q->prompt));
    if (q->n_prompt < 1 || q->n_prompt > s->seq_cap)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: the prompt must have 1 .. %d tokens (the context) (got %d)", fn,
                        s->seq_cap, q->n_prompt);
    for (int i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= s->cfg.vocab_size)
            return fgi_fail(FG_ERR_INVALID_ARG,
                            "%s: prompt[%d] = %d is outside the vocabulary [0, %d)", fn, i,
                            q->prompt[i], s->cfg.vocab_size);
    FGI_TRY(fgi_check_min(fn, "req->max_tokens", q->max_tokens, 1));
    if (q->n_stop_ids < 0 || q->n_stop_ids > 1024)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: argument 'req->n_stop_ids' must be in 0 .. 1024 (got %d)", fn,
                        q->n_stop_ids);
    if (q->n_stop_ids > 0) FGI_TRY(fgi_check_ptr(fn, "req->stop_ids", q->stop_ids));
    return FG_OK;
}

fg_status fg_scheduler_submit(fg_scheduler *s, const fg_request *q, uint64_t *id)
{
    static const char fn[] = "fg_scheduler_submit";
    FGI_TRY(fgi_check_ptr(fn, "sched", s));
    FGI_TRY(fgi_check_ptr(fn, "id", id));
    FGI_TRY(check_request(fn, s, q));
    request *r;
    FGI_TRY(fgi_alloc(fn, (void **)&r, 1, sizeof *r));
    memset(r, 0, sizeof *r);
    const long long want = (long long)q->n_prompt + q->max_tokens;
    r->cap = want < s->seq_cap ? (int)want : s->seq_cap;
    fg_status st = fg_sampler_create(&r->sampler, s->cfg.vocab_size, &q->sampling);
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&r->tokens, (size_t)r->cap, sizeof(int));
    if (st == FG_OK && q->n_stop_ids > 0)
        st = fgi_alloc(fn, (void **)&r->stop_ids, (size_t)q->n_stop_ids, sizeof(int));
    if (st == FG_OK) st = fgi_kv_seq_init(fn, &r->kv, s->pool, r->cap);
    if (st != FG_OK) {
        request_free(r);
        return st;
    }
    memcpy(r->tokens, q->prompt, sizeof(int) * (size_t)q->n_prompt);
    if (q->n_stop_ids > 0) memcpy(r->stop_ids, q->stop_ids, sizeof(int) * (size_t)q->n_stop_ids);
    r->n_tokens = r->n_prompt = q->n_prompt;
    r->n_stop = q->n_stop_ids;
    r->max_tokens = q->max_tokens;
    r->on_token = q->on_token;
    r->on_finish = q->on_finish;
    r->user = q->user;
    pthread_mutex_lock(&s->mu);
    r->id = s->next_id++;
    push_back(&s->incoming, r);
    r->live_next = s->live;
    if (s->live) s->live->live_prev = r;
    s->live = r;
    s->stats.waiting++;
    *id = r->id;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return FG_OK;
}

fg_status fg_scheduler_cancel(fg_scheduler *s, uint64_t id)
{
    static const char fn[] = "fg_scheduler_cancel";
    FGI_TRY(fgi_check_ptr(fn, "sched", s));
    pthread_mutex_lock(&s->mu);
    request *r = s->live;
    while (r && r->id != id) r = r->live_next;
    if (r) {
        r->cancel = 1;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (r == NULL)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: no request %llu (never submitted, or finished)",
                        fn, (unsigned long long)id);
    return FG_OK;
}

fg_status fg_scheduler_stats_get(fg_scheduler *s, fg_scheduler_stats *stats)
{
    static const char fn[] = "fg_scheduler_stats_get";
    FGI_TRY(fgi_check_ptr(fn, "sched", s));
    FGI_TRY(fgi_check_ptr(fn, "stats", stats));
    pthread_mutex_lock(&s->mu);
    *stats = s->stats;
    pthread_mutex_unlock(&s->mu);
    return FG_OK;
}

fg_status fg_scheduler_wait(fg_scheduler *s, int timeout_ms, int *busy)
{
    static const char fn[] = "fg_scheduler_wait";
    FGI_TRY(fgi_check_ptr(fn, "sched", s));
    FGI_TRY(fgi_check_ptr(fn, "busy", busy));
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    if (timeout_ms > 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    for (;;) {
        *busy = s->stats.running + s->stats.waiting > 0;
        if (*busy || timeout_ms == 0) break;
        if (timeout_ms < 0) pthread_cond_wait(&s->cv, &s->mu);
        else if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT) {
            *busy = s->stats.running + s->stats.waiting > 0;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return FG_OK;
}

/* ---- the step --------------------------------------------------------------------- */

/* Frees the blocks of running[i] and puts it at the head of the queue, to
 * be recomputed. The caller holds the mutex (the counter is published). */
static void preempt(fg_scheduler *s, int i, int *budget)
{
    request *r = s->running[i];
    *budget += r->chunk;
    r->chunk = 0;
    release_kv(s, &r->kv);
    remove_running(s, i);
    push_front(&s->waiting, r);
    s->stats.preemptions++;
}

/* The tokens of running[i] that fit the blocks it holds and the free ones. */
static int fitting(const fg_scheduler *s, const request *r)
{
    const long long room =
        (long long)(r->kv.n_blocks + fgi_kv_pool_free_blocks(s->pool)) * s->pool->block_size -
        r->kv.len;
    return room > 0 ? (int)(room < (1 << 30) ? room : (1 << 30)) : 0;
}

/* Schedules running[i] for up to `want` tokens, as many as the blocks
 * allow; when fewer than `need` fit, newer requests are preempted first
 * (from the newest), since the oldest must always be able to move. Returns
 * 0 when running[i] was itself preempted (it was the newest), else 1. */
static int schedule_running(fg_scheduler *s, int i, int want, int need, int *budget)
{
    request *r = s->running[i];
    while (fitting(s, r) < need && s->n_running - 1 > i) {
        pthread_mutex_lock(&s->mu);
        preempt(s, s->n_running - 1, budget);
        pthread_mutex_unlock(&s->mu);
    }
    int chunk = want < fitting(s, r) ? want : fitting(s, r);
    if (chunk == 0) {
        if (i > 0) { /* the newest cannot move: it waits, recomputed later */
            pthread_mutex_lock(&s->mu);
            preempt(s, i, budget);
            pthread_mutex_unlock(&s->mu);
            return 0;
        }
        return 1; /* the oldest always fits (seq_cap <= the pool); defensive */
    }
    if (fgi_kv_seq_reserve("fg_scheduler_step", &r->kv, s->pool, r->kv.len + chunk) != FG_OK)
        return 1; /* cannot happen: fitting() counted the blocks */
    r->chunk = chunk;
    *budget -= chunk;
    return 1;
}

/* Applies cancellations and takes in the submitted requests. */
static void intake(fg_scheduler *s)
{
    request *cancelled = NULL;
    pthread_mutex_lock(&s->mu);
    while (s->incoming.head) {
        request *r = s->incoming.head;
        unlink_req(&s->incoming, r);
        push_back(&s->waiting, r);
    }
    for (int i = s->n_running - 1; i >= 0; i--)
        if (s->running[i]->cancel) {
            request *r = s->running[i];
            remove_running(s, i);
            r->next = cancelled;
            cancelled = r;
        }
    for (request *r = s->waiting.head, *nx; r; r = nx) {
        nx = r->next;
        if (r->cancel) {
            unlink_req(&s->waiting, r);
            r->next = cancelled;
            cancelled = r;
        }
    }
    pthread_mutex_unlock(&s->mu);
    while (cancelled) {
        request *r = cancelled;
        cancelled = r->next;
        finish(s, r, FG_STOP_CANCELLED);
    }
}

/* After the forward: the next token of r, whose logits are at `logits`. */
static void advance(fg_scheduler *s, int i, const float *logits, int *removed)
{
    request *r = s->running[i];
    int token;
    fg_stop_reason end = FG_STOP_NONE;
    int done = 0;
    if (fg_sampler_sample(r->sampler, logits, &token) != FG_OK) {
        done = 1; /* FG_STOP_NONE: the logits could not be sampled */
    } else if (is_stop(r, token)) {
        end = FG_STOP_EOS, done = 1;
    } else {
        r->n_generated++;
        pthread_mutex_lock(&s->mu);
        s->stats.generated_tokens++;
        pthread_mutex_unlock(&s->mu);
        if (r->on_token && r->on_token(r->user, r->id, token, logits) != 0)
            end = FG_STOP_CANCELLED, done = 1;
        else if (r->n_generated >= r->max_tokens)
            end = FG_STOP_MAX_TOKENS, done = 1;
        else if (r->n_tokens >= s->seq_cap)
            end = FG_STOP_CONTEXT_FULL, done = 1;
        else
            r->tokens[r->n_tokens++] = token;
    }
    if (done) {
        remove_running(s, i);
        *removed = 1;
        finish(s, r, end);
    }
}

fg_status fg_scheduler_step(fg_scheduler *s, int *busy)
{
    static const char fn[] = "fg_scheduler_step";
    FGI_TRY(fgi_check_ptr(fn, "sched", s));
    pthread_mutex_lock(&s->mu);
    const int already = s->stepping;
    s->stepping = 1;
    pthread_mutex_unlock(&s->mu);
    if (already)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: another thread is stepping this scheduler", fn);

    intake(s);
    int budget = s->step_tokens;
    long long shared_tokens = 0;
    for (int i = 0; i < s->n_running; i++) s->running[i]->chunk = 0;
    /* decodes first, oldest first, so that running streams keep flowing */
    for (int i = 0; i < s->n_running; i++) {
        request *r = s->running[i];
        if (r->n_tokens - r->kv.len == 1 && !schedule_running(s, i, 1, 1, &budget)) i--;
    }
    /* then the prompt chunks of running requests */
    for (int i = 0; i < s->n_running && budget > 0; i++) {
        request *r = s->running[i];
        const int left = r->n_tokens - r->kv.len;
        if (r->chunk > 0 || left <= 1) continue;
        /* a chunk as large as the blocks allow; preempt only to move at all */
        if (!schedule_running(s, i, left < budget ? left : budget, 1, &budget)) i--;
    }
    /* then new (or preempted) requests, in order, while blocks allow */
    while (s->waiting.head && s->n_running < s->max_seqs && budget > 0) {
        request *r = s->waiting.head;
        const int shared = match_prefix(s, r);
        const int left = r->n_tokens - r->kv.len;
        int chunk = left < budget ? left : budget;
        const int room = fgi_kv_pool_free_blocks(s->pool) * s->pool->block_size;
        if (chunk > room) chunk = room;
        if (chunk == 0) { /* it waits for blocks; so do those behind it */
            release_kv(s, &r->kv);
            break;
        }
        shared_tokens += shared;
        pthread_mutex_lock(&s->mu);
        unlink_req(&s->waiting, r);
        pthread_mutex_unlock(&s->mu);
        s->running[s->n_running++] = r;
        if (fgi_kv_seq_reserve(fn, &r->kv, s->pool, r->kv.len + chunk) != FG_OK) chunk = 0;
        r->chunk = chunk;
        budget -= chunk;
    }

    /* one forward over everything scheduled */
    const int V = s->cfg.vocab_size;
    int n = 0;
    long long forwarded = 0;
    for (int i = 0; i < s->n_running; i++) {
        request *r = s->running[i];
        if (r->chunk == 0) continue;
        const int last = r->kv.len + r->chunk == r->n_tokens;
        s->batch[n++] = (fgi_batch_seq){.ids = r->tokens + r->kv.len, .n_tokens = r->chunk,
                                        .start = r->kv.len, .blocks = r->kv.blocks,
                                        .n_blocks = r->kv.n_blocks,
                                        .logits = last ? s->logits + (size_t)i * V : NULL,
                                        .n_prompt = r->n_prompt};
        forwarded += r->chunk;
    }
    fg_status st = FG_OK;
    if (n > 0)
        st = s->device == FG_DEVICE_REF
                 ? fgi_ref_forward_batch(fn, &s->cfg, s->w, s->pool, s->batch, n)
             : s->device == FG_DEVICE_CUDA
                 ? fgi_cuda_batch_forward(fn, s->gpu, s->pool, s->batch, n)
                 : fgi_cpu_batch_forward(fn, s->cpu, s->pool, s->batch, n);
    if (st == FG_OK) {
        /* logits sit at the request's running index of the schedule; walk it
         * from the end so that removals do not move the ones still to come */
        for (int i = 0; i < s->n_running; i++) {
            request *r = s->running[i];
            if (r->chunk == 0) continue;
            r->kv.len += r->chunk;
            if (s->sharing) register_filled(s, r, r->kv.len - r->chunk);
        }
        for (int i = s->n_running - 1; i >= 0; i--) {
            request *r = s->running[i];
            const int sampled = r->chunk > 0 && r->kv.len == r->n_tokens;
            r->chunk = 0;
            int removed = 0;
            if (sampled) advance(s, i, s->logits + (size_t)i * V, &removed);
        }
    }
    pthread_mutex_lock(&s->mu);
    if (st == FG_OK) {
        s->stats.steps++;
        s->stats.forwarded_tokens += (uint64_t)forwarded;
        s->stats.shared_tokens += (uint64_t)shared_tokens;
    }
    publish(s);
    if (busy) *busy = s->stats.running + s->stats.waiting;
    s->stepping = 0;
    pthread_mutex_unlock(&s->mu);
    return st;
}
