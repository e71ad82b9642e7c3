/* The sessions engine (engine.h): one worker thread owns max_batch public
 * fg_session objects (one request each) and advances the running requests
 * round-robin, one token per turn, so that concurrent streams interleave;
 * further requests wait in a bounded FIFO. Every callback runs on the
 * worker; other threads only queue work, set cancel flags and read
 * counters under the engine's mutex. The model runs outside the mutex.
 * KV blocks are a bookkeeping view for /metrics: a session's tokens in
 * blocks of FGI_SESSIONS_BLOCK tokens (the sessions own their caches). */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { FGI_SESSIONS_BLOCK = 16 };

typedef struct sreq {
    struct sreq *next; /* in the waiting FIFO */
    uint64_t id;
    int *prompt;
    int n_prompt, max_tokens, ignore_eos;
    fg_sampler_config sampling;
    fgi_text_release text;
    fgi_on_piece on_piece;
    fgi_on_finish on_finish;
    void *user;
    int cancelled; /* under the mutex */
    /* worker only: */
    fg_sampler *sampler;
    int n_generated, prev, started;
} sreq;

typedef struct {
    fg_session *session;
    sreq *req;   /* NULL when free */
    int n_tokens; /* the session's length, mirrored under the mutex for stats */
} slot;

typedef struct {
    fgi_engine base;
    const fg_config *cfg;
    const fg_tokenizer *tok;
    int max_batch, max_waiting, blocks_per_slot, turn_delay_ms;
    slot *slots;
    pthread_mutex_t mu;
    pthread_cond_t work;     /* the worker waits for requests */
    pthread_cond_t idle;     /* shutdown waits for the last request to end */
    sreq *head, *tail;       /* waiting FIFO */
    int n_waiting, n_running;
    int accepting, quit, shut_down, thread_started;
    uint64_t next_id, finished;
    pthread_t worker;
} sessions_engine;

static void sreq_free(sreq *r)
{
    if (r == NULL) return;
    fg_sampler_destroy(r->sampler);
    fgi_text_release_free(&r->text);
    free(r->prompt);
    free(r);
}

/* Releases the held text, frees the request's session (s: its slot, NULL
 * for one that never ran), reports, frees. The counters are updated first,
 * so that whoever on_finish wakes sees the request gone from the stats.
 * Worker thread, mutex not held. */
static void finish(sessions_engine *e, slot *s, sreq *r, fgi_finish_reason reason,
                   const char *message)
{
    if (reason != FGI_FINISH_CANCELLED && reason != FGI_FINISH_ERROR) {
        const char *rest;
        size_t n;
        fgi_text_release_flush(&r->text, &rest, &n);
        if (n > 0) {
            fgi_engine_piece p = {-1, rest, n, r->n_generated};
            (void)r->on_piece(r->user, &p); /* the end either way */
        }
    }
    pthread_mutex_lock(&e->mu);
    if (s != NULL) {
        s->req = NULL;
        s->n_tokens = 0;
        e->n_running--;
    }
    e->finished++;
    pthread_mutex_unlock(&e->mu);
    fgi_engine_final f = {reason, r->n_prompt, r->n_generated, message};
    r->on_finish(r->user, &f);
    sreq_free(r);
}

static fgi_submit_status submit(fgi_engine *base, const fgi_engine_request *q, uint64_t *id)
{
    sessions_engine *e = (sessions_engine *)base;
    if (q->prompt == NULL || q->n_prompt < 1 || q->n_prompt >= base->context ||
        q->max_tokens < 1 || q->on_piece == NULL || q->on_finish == NULL ||
        q->n_stop < 0 || q->n_stop > FGI_ENGINE_MAX_STOP)
        return FGI_SUBMIT_INVALID;
    for (int i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= base->vocab_size) return FGI_SUBMIT_INVALID;
    sreq *r = calloc(1, sizeof *r);
    if (r == NULL) return FGI_SUBMIT_NO_MEMORY;
    r->prompt = malloc((size_t)q->n_prompt * sizeof *r->prompt);
    if (r->prompt == NULL) {
        free(r);
        return FGI_SUBMIT_NO_MEMORY;
    }
    memcpy(r->prompt, q->prompt, (size_t)q->n_prompt * sizeof *r->prompt);
    r->n_prompt = q->n_prompt;
    r->max_tokens = q->max_tokens;
    r->ignore_eos = q->ignore_eos;
    r->sampling = q->sampling;
    r->on_piece = q->on_piece;
    r->on_finish = q->on_finish;
    r->user = q->user;
    const fg_status st = fgi_text_release_init(&r->text, q->stop, q->n_stop);
    if (st == FG_OK) (void)fg_sampler_create(&r->sampler, base->vocab_size, &q->sampling);
    if (st != FG_OK || r->sampler == NULL) {
        sreq_free(r);
        return st == FG_ERR_OOM ? FGI_SUBMIT_NO_MEMORY : FGI_SUBMIT_INVALID;
    }
    pthread_mutex_lock(&e->mu);
    fgi_submit_status out = FGI_SUBMIT_OK;
    if (!e->accepting)
        out = FGI_SUBMIT_SHUTDOWN;
    /* a free session takes it at once: only the excess over them waits */
    else if (e->n_waiting + e->n_running >= e->max_batch + e->max_waiting)
        out = FGI_SUBMIT_QUEUE_FULL;
    if (out == FGI_SUBMIT_OK) {
        r->id = *id = ++e->next_id;
        if (e->tail != NULL) e->tail->next = r;
        else e->head = r;
        e->tail = r;
        e->n_waiting++;
        pthread_cond_signal(&e->work);
    }
    pthread_mutex_unlock(&e->mu);
    if (out != FGI_SUBMIT_OK) sreq_free(r);
    return out;
}

static void cancel(fgi_engine *base, uint64_t id)
{
    sessions_engine *e = (sessions_engine *)base;
    pthread_mutex_lock(&e->mu);
    for (sreq *r = e->head; r != NULL; r = r->next)
        if (r->id == id) r->cancelled = 1;
    for (int i = 0; i < e->max_batch; i++)
        if (e->slots[i].req != NULL && e->slots[i].req->id == id) e->slots[i].req->cancelled = 1;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
}

static void stats(fgi_engine *base, fgi_engine_stats *out)
{
    sessions_engine *e = (sessions_engine *)base;
    pthread_mutex_lock(&e->mu);
    out->running = e->n_running;
    out->waiting = e->n_waiting;
    out->kv_block_tokens = FGI_SESSIONS_BLOCK;
    out->kv_blocks_total = e->max_batch * e->blocks_per_slot;
    out->kv_blocks_used = 0;
    for (int i = 0; i < e->max_batch; i++)
        if (e->slots[i].req != NULL)
            out->kv_blocks_used += (e->slots[i].n_tokens + FGI_SESSIONS_BLOCK - 1) / FGI_SESSIONS_BLOCK;
    out->finished = e->finished;
    pthread_mutex_unlock(&e->mu);
}

/* One turn of the request in slot s: the prefill on its first turn, then
 * one token. Returns 1 when the request ended (reported and freed). */
static int step(sessions_engine *e, slot *s)
{
    sreq *r = s->req;
    char msg[256];
    if (!r->started) {
        r->started = 1;
        r->prev = r->prompt[r->n_prompt - 1];
        if (fg_session_reset(s->session) != FG_OK ||
            fg_session_forward(s->session, r->prompt, r->n_prompt, NULL) != FG_OK) {
            snprintf(msg, sizeof msg, "prefill failed: %s", fg_last_error());
            finish(e, s, r, FGI_FINISH_ERROR, msg);
            return 1;
        }
        pthread_mutex_lock(&e->mu);
        s->n_tokens = r->n_prompt;
        pthread_mutex_unlock(&e->mu);
        return 0;
    }
    int id = -1;
    if (fg_sampler_sample(r->sampler, fg_session_logits(s->session), &id) != FG_OK) {
        snprintf(msg, sizeof msg, "sampling failed: %s", fg_last_error());
        finish(e, s, r, FGI_FINISH_ERROR, msg);
        return 1;
    }
    if (!r->ignore_eos && (id == fg_tokenizer_eos(e->tok) || id == fg_tokenizer_bos(e->tok))) {
        finish(e, s, r, FGI_FINISH_STOP, NULL);
        return 1;
    }
    const char *bytes = NULL, *out = NULL;
    size_t len = 0, out_len = 0;
    if (fg_tokenizer_piece(e->tok, r->prev, id, &bytes, &len) != FG_OK) len = 0;
    const int stopped = fgi_text_release_push(&r->text, bytes, len, &out, &out_len);
    if (stopped < 0) {
        finish(e, s, r, FGI_FINISH_ERROR, "out of memory");
        return 1;
    }
    fgi_engine_piece p = {id, out, out_len, r->n_generated};
    r->n_generated++;
    r->prev = id;
    if (r->on_piece(r->user, &p) != 0) {
        finish(e, s, r, FGI_FINISH_CANCELLED, NULL);
        return 1;
    }
    if (stopped) {
        finish(e, s, r, FGI_FINISH_STOP, NULL);
        return 1;
    }
    if (r->n_generated >= r->max_tokens ||
        fg_session_len(s->session) >= fg_session_capacity(s->session)) {
        finish(e, s, r, FGI_FINISH_LENGTH, NULL);
        return 1;
    }
    if (fg_session_forward(s->session, &id, 1, NULL) != FG_OK) {
        snprintf(msg, sizeof msg, "decode step failed: %s", fg_last_error());
        finish(e, s, r, FGI_FINISH_ERROR, msg);
        return 1;
    }
    pthread_mutex_lock(&e->mu);
    s->n_tokens++;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

static void *worker(void *arg)
{
    sessions_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        /* cancelled waiting requests leave the queue */
        sreq *dead = NULL;
        for (sreq **pp = &e->head; *pp != NULL;) {
            sreq *r = *pp;
            if (r->cancelled) {
                *pp = r->next;
                r->next = dead;
                dead = r;
                e->n_waiting--;
            } else {
                pp = &r->next;
            }
        }
        e->tail = NULL;
        for (sreq *r = e->head; r != NULL; r = r->next) e->tail = r;
        /* waiting requests take free sessions, in arrival order */
        for (int i = 0; i < e->max_batch && e->head != NULL; i++)
            if (e->slots[i].req == NULL) {
                sreq *r = e->head;
                e->head = r->next;
                if (e->head == NULL) e->tail = NULL;
                r->next = NULL;
                e->n_waiting--;
                e->n_running++;
                e->slots[i].req = r;
                e->slots[i].n_tokens = 0;
            }
        if (dead != NULL) {
            pthread_mutex_unlock(&e->mu);
            while (dead != NULL) {
                sreq *next = dead->next;
                finish(e, NULL, dead, FGI_FINISH_CANCELLED, NULL);
                dead = next;
            }
            pthread_mutex_lock(&e->mu);
            continue;
        }
        if (e->n_running == 0 && e->n_waiting == 0) {
            pthread_cond_broadcast(&e->idle);
            if (e->quit) break;
            pthread_cond_wait(&e->work, &e->mu);
            continue;
        }
        /* one turn for every running request */
        for (int i = 0; i < e->max_batch; i++) {
            slot *s = &e->slots[i];
            if (s->req == NULL) continue;
            sreq *r = s->req;
            const int cancelled = r->cancelled;
            pthread_mutex_unlock(&e->mu);
            if (cancelled) finish(e, s, r, FGI_FINISH_CANCELLED, NULL);
            else (void)step(e, s);
            pthread_mutex_lock(&e->mu);
        }
        if (e->turn_delay_ms > 0) {
            pthread_mutex_unlock(&e->mu);
            struct timespec pause = {e->turn_delay_ms / 1000, (long)(e->turn_delay_ms % 1000) * 1000000L};
            nanosleep(&pause, NULL);
            pthread_mutex_lock(&e->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static void shutdown_engine(fgi_engine *base, int cancel_running)
{
    sessions_engine *e = (sessions_engine *)base;
    pthread_mutex_lock(&e->mu);
    e->accepting = 0;
    if (e->shut_down) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    if (cancel_running) {
        for (sreq *r = e->head; r != NULL; r = r->next) r->cancelled = 1;
        for (int i = 0; i < e->max_batch; i++)
            if (e->slots[i].req != NULL) e->slots[i].req->cancelled = 1;
    }
    e->quit = 1;
    e->shut_down = 1;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
    if (e->thread_started) pthread_join(e->worker, NULL);
    e->thread_started = 0;
}

static void destroy(fgi_engine *base)
{
    sessions_engine *e = (sessions_engine *)base;
    shutdown_engine(base, 1);
    for (int i = 0; i < e->max_batch; i++) fg_session_destroy(e->slots[i].session);
    free(e->slots);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->work);
    pthread_cond_destroy(&e->idle);
    free(e);
}

static const fgi_engine_ops SESSIONS_OPS = {submit, cancel, stats, shutdown_engine, destroy};

const fg_session *fgi_engine_sessions_first(const fgi_engine *base, int *n_sessions)
{
    if (base == NULL || base->ops != &SESSIONS_OPS) return NULL;
    const sessions_engine *e = (const sessions_engine *)base;
    if (n_sessions != NULL) *n_sessions = e->max_batch;
    return e->slots[0].session;
}

fg_status fgi_engine_create_sessions(fgi_engine **out, const fg_config *cfg,
                                     const fg_weights *w, const fg_tokenizer *tok,
                                     const fgi_sessions_options *opt)
{
    if (out == NULL) return FG_ERR_INVALID_ARG;
    *out = NULL;
    if (cfg == NULL || tok == NULL || opt == NULL || (w == NULL && opt->model == NULL) ||
        opt->max_batch < 1 ||
        opt->max_batch > 4096 || opt->max_waiting < 0 || opt->max_waiting > 1000000 ||
        opt->ctx < 0 || opt->ctx > cfg->n_ctx || opt->n_threads < 0 || cfg->n_ctx < 2 ||
        opt->turn_delay_ms < 0 || opt->turn_delay_ms > 10000)
        return FG_ERR_INVALID_ARG;
    sessions_engine *e = calloc(1, sizeof *e);
    if (e == NULL) return FG_ERR_OOM;
    e->slots = calloc((size_t)opt->max_batch, sizeof *e->slots);
    if (e->slots == NULL) {
        free(e);
        return FG_ERR_OOM;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work, NULL);
    pthread_cond_init(&e->idle, NULL);
    e->base.ops = &SESSIONS_OPS;
    e->base.context = opt->ctx ? opt->ctx : cfg->n_ctx;
    e->base.vocab_size = cfg->vocab_size;
    e->cfg = cfg;
    e->tok = tok;
    e->max_batch = opt->max_batch;
    e->max_waiting = opt->max_waiting;
    e->turn_delay_ms = opt->turn_delay_ms;
    e->blocks_per_slot = (e->base.context + FGI_SESSIONS_BLOCK - 1) / FGI_SESSIONS_BLOCK;
    e->accepting = 1;
    fg_status st = FG_OK;
    /* a fixed cache per session: memory stays flat however requests come;
     * one copy of the weights, which the first session makes and the others
     * read (on a GPU, max_batch copies of an 8B model would not fit) */
    for (int i = 0; i < opt->max_batch && st == FG_OK; i++) {
        fg_session **made = &e->slots[i].session;
        if (i > 0)
            st = fg_session_create_sharing(made, e->slots[0].session, e->base.context);
        else if (opt->model != NULL)
            st = fg_session_create_model(made, opt->model, opt->device, e->base.context,
                                         opt->dtype);
        else
            st = fg_session_create_typed(made, cfg, w, opt->device, e->base.context, opt->dtype);
        if (st == FG_OK) st = fg_session_set_threads(*made, opt->n_threads);
    }
    if (st == FG_OK) {
        if (pthread_create(&e->worker, NULL, worker, e) != 0) st = FG_ERR_OOM;
        else e->thread_started = 1;
    }
    if (st != FG_OK) {
        e->shut_down = 1;
        destroy(&e->base);
        return st;
    }
    *out = &e->base;
    return FG_OK;
}
