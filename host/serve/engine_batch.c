/* The batching engine (engine.h) over the continuous-batching scheduler
 * (flashgpt/scheduler.h): one worker thread steps the scheduler, whose
 * batched forward advances every running request at once over a paged KV
 * cache; HTTP threads submit and cancel through the scheduler's own
 * thread-safe calls. This file only translates: token ids into released
 * text (stop strings, UTF-8 hold-back: fgi_text_release), the tokenizer's
 * EOS / BOS into the scheduler's stop ids, and the scheduler's end reasons
 * into engine.h's.
 *
 * Locks: the engine's mutex guards its list of live requests and counters;
 * submit holds it across fg_scheduler_submit (engine mutex, then the
 * scheduler's), and callbacks, which run on the worker without the
 * scheduler's mutex, take only the engine's: no cycle. */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct batch_engine batch_engine;

typedef struct breq {
    struct breq *next, *prev; /* live list, under the engine's mutex */
    batch_engine *e;
    uint64_t id;
    fgi_text_release text;
    fgi_on_piece on_piece;
    fgi_on_finish on_finish;
    void *user;
    int prev_token, n_generated, stopped; /* worker only */
} breq;

struct batch_engine {
    fgi_engine base;
    const fg_tokenizer *tok;
    fg_scheduler *sched;
    int max_batch, max_waiting, step_delay_ms;
    pthread_mutex_t mu;
    breq *live;
    int n_live;
    int accepting, quit, shut_down, thread_started;
    uint64_t finished;
    pthread_t worker;
};

static void breq_free(breq *r)
{
    if (r == NULL) return;
    fgi_text_release_free(&r->text);
    free(r);
}

/* The scheduler's per-token callback: the token's text through the stop
 * strings to the client. Nonzero (cancel) when the client wants no more or
 * a stop string matched (then the end is reported as a stop). */
static int on_token(void *user, uint64_t id, int token, const float *logits)
{
    breq *r = user;
    (void)id, (void)logits;
    const char *bytes = NULL, *out = NULL;
    size_t len = 0, out_len = 0;
    if (fg_tokenizer_piece(r->e->tok, r->prev_token, token, &bytes, &len) != FG_OK) len = 0;
    const int stopped = fgi_text_release_push(&r->text, bytes, len, &out, &out_len);
    if (stopped < 0) {
        r->stopped = -1; /* out of memory: an error */
        return 1;
    }
    fgi_engine_piece p = {token, out, out_len, r->n_generated};
    r->n_generated++;
    r->prev_token = token;
    if (r->on_piece(r->user, &p) != 0) return 1;
    if (stopped) {
        r->stopped = 1;
        return 1;
    }
    return 0;
}

static void on_finish(void *user, uint64_t id, fg_stop_reason reason, int n_prompt,
                      int n_generated)
{
    breq *r = user;
    batch_engine *e = r->e;
    (void)id;
    fgi_finish_reason why = FGI_FINISH_ERROR;
    const char *message = NULL;
    switch (reason) {
    case FG_STOP_EOS:
    case FG_STOP_STRING: why = FGI_FINISH_STOP; break;
    case FG_STOP_MAX_TOKENS:
    case FG_STOP_CONTEXT_FULL: why = FGI_FINISH_LENGTH; break;
    case FG_STOP_CANCELLED:
        why = r->stopped > 0 ? FGI_FINISH_STOP : FGI_FINISH_CANCELLED;
        if (r->stopped < 0) why = FGI_FINISH_ERROR, message = "out of memory";
        break;
    case FG_STOP_NONE: why = FGI_FINISH_ERROR, message = "sampling failed"; break;
    }
    if (why == FGI_FINISH_STOP || why == FGI_FINISH_LENGTH) {
        const char *rest;
        size_t n;
        fgi_text_release_flush(&r->text, &rest, &n);
        if (n > 0) {
            fgi_engine_piece p = {-1, rest, n, r->n_generated};
            (void)r->on_piece(r->user, &p); /* the end either way */
        }
    }
    fgi_engine_final f = {why, n_prompt, n_generated, message};
    r->on_finish(r->user, &f);
    pthread_mutex_lock(&e->mu);
    if (r->prev) r->prev->next = r->next;
    else e->live = r->next;
    if (r->next) r->next->prev = r->prev;
    e->n_live--;
    e->finished++;
    pthread_mutex_unlock(&e->mu);
    breq_free(r);
}

static fgi_submit_status submit(fgi_engine *base, const fgi_engine_request *q, uint64_t *id)
{
    batch_engine *e = (batch_engine *)base;
    if (q->prompt == NULL || q->n_prompt < 1 || q->n_prompt >= base->context ||
        q->max_tokens < 1 || q->on_piece == NULL || q->on_finish == NULL || q->n_stop < 0 ||
        q->n_stop > FGI_ENGINE_MAX_STOP)
        return FGI_SUBMIT_INVALID;
    for (int i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= base->vocab_size) return FGI_SUBMIT_INVALID;
    /* a bad sampling configuration is refused before the queue is looked at */
    fg_sampler *check = NULL;
    fg_status st = fg_sampler_create(&check, base->vocab_size, &q->sampling);
    fg_sampler_destroy(check);
    if (st != FG_OK) return st == FG_ERR_OOM ? FGI_SUBMIT_NO_MEMORY : FGI_SUBMIT_INVALID;
    breq *r = calloc(1, sizeof *r);
    if (r == NULL) return FGI_SUBMIT_NO_MEMORY;
    st = fgi_text_release_init(&r->text, q->stop, q->n_stop);
    if (st != FG_OK) {
        free(r);
        return st == FG_ERR_OOM ? FGI_SUBMIT_NO_MEMORY : FGI_SUBMIT_INVALID;
    }
    r->e = e;
    r->on_piece = q->on_piece;
    r->on_finish = q->on_finish;
    r->user = q->user;
    r->prev_token = q->prompt[q->n_prompt - 1];
    int stop_ids[2], n_stop = 0;
    if (!q->ignore_eos) {
        const int eos = fg_tokenizer_eos(e->tok), bos = fg_tokenizer_bos(e->tok);
        if (eos >= 0) stop_ids[n_stop++] = eos;
        if (bos >= 0 && bos != eos) stop_ids[n_stop++] = bos;
    }
    fg_request sq = {.prompt = q->prompt, .n_prompt = q->n_prompt, .sampling = q->sampling,
                     .max_tokens = q->max_tokens, .stop_ids = n_stop ? stop_ids : NULL,
                     .n_stop_ids = n_stop, .on_token = on_token, .on_finish = on_finish,
                     .user = r};
    fgi_submit_status out = FGI_SUBMIT_OK;
    pthread_mutex_lock(&e->mu);
    if (!e->accepting) {
        out = FGI_SUBMIT_SHUTDOWN;
    } else if (e->n_live >= e->max_batch + e->max_waiting) {
        out = FGI_SUBMIT_QUEUE_FULL;
    } else {
        st = fg_scheduler_submit(e->sched, &sq, &r->id);
        if (st != FG_OK) {
            out = st == FG_ERR_OOM ? FGI_SUBMIT_NO_MEMORY : FGI_SUBMIT_INVALID;
        } else {
            /* on the live list before the worker can end it: its on_finish
             * waits for this mutex */
            r->next = e->live;
            if (e->live) e->live->prev = r;
            e->live = r;
            e->n_live++;
            *id = r->id;
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (out != FGI_SUBMIT_OK) breq_free(r);
    return out;
}

static void cancel(fgi_engine *base, uint64_t id)
{
    batch_engine *e = (batch_engine *)base;
    /* an unknown or finished id is a no-op: its error is not the caller's */
    if (fg_scheduler_cancel(e->sched, id) != FG_OK) fg_clear_error();
}

static void stats(fgi_engine *base, fgi_engine_stats *out)
{
    batch_engine *e = (batch_engine *)base;
    fg_scheduler_stats st;
    if (fg_scheduler_stats_get(e->sched, &st) != FG_OK) memset(&st, 0, sizeof st);
    out->running = st.running;
    out->waiting = st.waiting;
    out->kv_blocks_used = st.blocks_used;
    out->kv_blocks_total = st.blocks_total;
    out->kv_block_tokens = st.block_size;
    pthread_mutex_lock(&e->mu);
    out->finished = e->finished;
    pthread_mutex_unlock(&e->mu);
}

static void *worker(void *arg)
{
    batch_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        const int done = e->quit && e->n_live == 0;
        pthread_mutex_unlock(&e->mu);
        if (done) break;
        int busy = 0;
        /* a bounded wait, so that a shutdown is seen without a signal */
        if (fg_scheduler_wait(e->sched, 50, &busy) != FG_OK || !busy) continue;
        /* a failed step (out of memory) leaves every request in place:
         * retry after a pause rather than spin */
        const int failed = fg_scheduler_step(e->sched, NULL) != FG_OK;
        if (failed || e->step_delay_ms > 0) {
            const int ms = failed ? 10 : e->step_delay_ms;
            struct timespec pause = {ms / 1000, (long)(ms % 1000) * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
    return NULL;
}

static void shutdown_engine(fgi_engine *base, int cancel_running)
{
    batch_engine *e = (batch_engine *)base;
    pthread_mutex_lock(&e->mu);
    e->accepting = 0;
    if (e->shut_down) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    if (cancel_running)
        for (breq *r = e->live; r != NULL; r = r->next)
            if (fg_scheduler_cancel(e->sched, r->id) != FG_OK) fg_clear_error();
    e->quit = 1;
    e->shut_down = 1;
    pthread_mutex_unlock(&e->mu);
    if (e->thread_started) pthread_join(e->worker, NULL);
    e->thread_started = 0;
}

static void destroy(fgi_engine *base)
{
    batch_engine *e = (batch_engine *)base;
    shutdown_engine(base, 1);
    fg_scheduler_destroy(e->sched); /* ends nothing: the worker left it idle */
    pthread_mutex_destroy(&e->mu);
    free(e);
}

static const fgi_engine_ops BATCH_OPS = {submit, cancel, stats, shutdown_engine, destroy};

fg_status fgi_engine_create_batch(fgi_engine **out, const fg_config *cfg, const fg_weights *w,
                                  const fg_tokenizer *tok, const fgi_batch_options *opt)
{
    if (out == NULL) return FG_ERR_INVALID_ARG;
    *out = NULL;
    if (cfg == NULL || tok == NULL || opt == NULL || (w == NULL && opt->model == NULL) ||
        (opt->model != NULL && fg_model_config(opt->model) != cfg) || opt->max_batch < 1 ||
        opt->max_batch > 4096 || opt->max_waiting < 0 || opt->max_waiting > 1000000 ||
        opt->ctx < 0 || opt->ctx == 1 || opt->ctx > cfg->n_ctx || cfg->n_ctx < 2 ||
        opt->step_delay_ms < 0 || opt->step_delay_ms > 10000)
        return FG_ERR_INVALID_ARG;
    fg_scheduler_config sc = fg_scheduler_defaults();
    sc.device = opt->device;
    sc.n_threads = opt->n_threads;
    sc.ctx = opt->ctx;
    if (opt->block_size > 0) sc.block_size = opt->block_size;
    sc.n_blocks = opt->n_blocks;
    sc.max_seqs = opt->max_batch;
    sc.dtype = opt->dtype;
    sc.step_tokens = opt->step_tokens > 0 ? opt->step_tokens
                                          : (opt->max_batch > 256 ? opt->max_batch : 256);
    batch_engine *e = calloc(1, sizeof *e);
    if (e == NULL) return FG_ERR_OOM;
    fg_status st = opt->model != NULL ? fg_scheduler_create_model(&e->sched, opt->model, &sc)
                                      : fg_scheduler_create(&e->sched, cfg, w, &sc);
    if (st != FG_OK) {
        free(e);
        return st;
    }
    fg_scheduler_stats ss;
    (void)fg_scheduler_stats_get(e->sched, &ss);
    if (ss.ctx < 2) { /* a pool too small for a prompt and one token */
        fg_scheduler_destroy(e->sched);
        free(e);
        return FG_ERR_INVALID_ARG;
    }
    pthread_mutex_init(&e->mu, NULL);
    e->base.ops = &BATCH_OPS;
    e->base.context = ss.ctx;
    e->base.vocab_size = cfg->vocab_size;
    e->tok = tok;
    e->max_batch = opt->max_batch;
    e->max_waiting = opt->max_waiting;
    e->step_delay_ms = opt->step_delay_ms;
    e->accepting = 1;
    if (pthread_create(&e->worker, NULL, worker, e) != 0) {
        fg_scheduler_destroy(e->sched);
        pthread_mutex_destroy(&e->mu);
        free(e);
        return FG_ERR_OOM;
    }
    e->thread_started = 1;
    *out = &e->base;
    return FG_OK;
}
