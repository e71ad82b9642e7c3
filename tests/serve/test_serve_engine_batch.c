/* The batching engine (host/serve/engine_batch.c, engine.h) on stories260K:
 *  - on the reference (the engine made from the model, as serve makes it),
 *    requests arriving in random order, some cancelled by
 *    their callback or through the engine, each finished one's text, count
 *    and end equal to fg_generate serving it alone on the reference (the
 *    batched forward computes fg_ref_forward's bits);
 *  - on the fast CPU path, 24 requests submitted from 4 threads at once,
 *    each text equal to the engine serving that request alone, with a pool
 *    small enough that requests wait and are preempted;
 *  - stop strings end the text before them with reason stop;
 *  - the queue bound (429), refused requests, shutdown that cancels and
 *    shutdown that lets requests finish; no KV block in use at the end. */
#define _POSIX_C_SOURCE 200809L
#include "serve_support.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fgi_engine *make_engine(const fgi_stories *s, fg_device device, int max_batch,
                               int max_waiting, int n_blocks, int delay_ms)
{
    fgi_batch_options o = {.device = device, .ctx = 256, .max_batch = max_batch,
                           .max_waiting = max_waiting, .n_threads = 1, .block_size = 8,
                           .n_blocks = n_blocks, .step_tokens = 0, .step_delay_ms = delay_ms};
    fgi_engine *e = NULL;
    /* the reference engine is made from the model (serve's way), the CPU
     * one from its weights */
    if (device == FG_DEVICE_REF) o.model = s->model;
    cr_assert_eq(fgi_engine_create_batch(&e, fg_model_config(s->model),
                                         device == FG_DEVICE_REF ? NULL
                                                                 : fg_model_weights(s->model),
                                         s->tok, &o),
                 FG_OK, "%s", fg_last_error());
    return e;
}

/* The shared idle checks, and this engine's block size. */
static void assert_idle(fgi_engine *e)
{
    fgi_serve_assert_idle(e);
    fgi_engine_stats st;
    fgi_engine_stats_get(e, &st);
    cr_assert_eq(st.kv_block_tokens, 8);
}

static fgi_engine_request request_for(const fgi_stories *s, const fgi_serve_job *j,
                                      fgi_serve_result *r, int **ids)
{
    static const char *stop[1];
    int n;
    *ids = fgi_stories_encode(s, j->prompt, &n);
    stop[0] = j->stop;
    fgi_engine_request q = {*ids, n, j->max_tokens, j->sc, j->stop ? stop : NULL, j->stop ? 1 : 0,
                            0, fgi_serve_on_piece, fgi_serve_on_finish, r};
    return q;
}

enum { N_REF = 16 };

Test(serve_engine_batch, ref_random_arrivals_and_cancellations_match_fg_generate)
{
    fgi_stories s;
    if (!fgi_stories_load(&s)) cr_skip_test("stories260K not found under FG_MODELS_DIR");
    fgi_rng rng = fgi_rng_make(1);
    fgi_serve_job jobs[N_REF];
    fgi_serve_sink refs[N_REF];
    fg_generate_result gr[N_REF];
    fgi_serve_random_jobs(jobs, N_REF, &rng);
    for (int i = 0; i < N_REF; i++)
        fgi_serve_reference(&s, FG_DEVICE_REF, 256, &jobs[i], &refs[i], &gr[i]);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int n_done = 0;
    fgi_engine *e = make_engine(&s, FG_DEVICE_REF, fgi_rng_int(&rng, 1, 8), N_REF, 0, 0);
    fgi_serve_result *res = calloc(N_REF, sizeof *res);
    uint64_t ids[N_REF];
    int by_id[N_REF];
    for (int i = 0; i < N_REF; i++) {
        res[i] = (fgi_serve_result){.mu = &mu, .cv = &cv, .n_done = &n_done, .index_ok = 1};
        res[i].cancel_after = fgi_rng_int(&rng, 0, 3) == 0 ? fgi_rng_int(&rng, 1, 10) : -1;
        by_id[i] = res[i].cancel_after < 0 && fgi_rng_int(&rng, 0, 5) == 0;
        int *prompt;
        fgi_engine_request q = request_for(&s, &jobs[i], &res[i], &prompt);
        cr_assert_eq(fgi_engine_submit(e, &q, &ids[i]), FGI_SUBMIT_OK);
        free(prompt); /* the engine copied it */
        if (by_id[i]) fgi_engine_cancel(e, ids[i]);
    }
    fgi_serve_wait_done(&mu, &cv, &n_done, N_REF);
    for (int i = 0; i < N_REF; i++) {
        const fgi_serve_result *r = &res[i];
        cr_assert_eq(r->finishes, 1, "request %d finished %d times", i, r->finishes);
        cr_assert(r->index_ok, "request %d: piece indexes out of order", i);
        cr_assert(memcmp(r->text, refs[i].text, r->len) == 0, "request %d: text differs", i);
        if (by_id[i]) {
            /* it may have finished before the cancel arrived */
            if (r->final.reason == FGI_FINISH_CANCELLED) continue;
        } else if (r->cancel_after >= 0 && r->cancel_after <= gr[i].n_generated) {
            cr_assert_eq(r->final.reason, FGI_FINISH_CANCELLED, "request %d", i);
            cr_assert_eq(r->n_pieces, r->cancel_after, "request %d", i);
            continue;
        }
        cr_assert_eq(r->final.reason,
                     gr[i].stop == FG_STOP_EOS ? FGI_FINISH_STOP : FGI_FINISH_LENGTH,
                     "request %d: reason %d, fg_generate stop %d", i, r->final.reason, gr[i].stop);
        cr_assert_eq(r->final.completion_tokens, gr[i].n_generated, "request %d", i);
        cr_assert_eq(r->final.prompt_tokens, gr[i].n_prompt, "request %d", i);
        cr_assert_eq(r->len, refs[i].len, "request %d: %zu bytes, alone %zu", i, r->len,
                     refs[i].len);
    }
    assert_idle(e);
    fgi_engine_cancel(e, ids[0]); /* finished: a no-op */
    fgi_engine_destroy(e);
    free(res);
    fgi_stories_free(&s);
}

/* --- CPU: concurrent submits vs the same engine serving each alone -------------------- */

enum { N_CPU = 24, CLIENTS = 4 };

typedef struct {
    fgi_engine *e;
    const fgi_stories *s;
    const fgi_serve_job *jobs;
    fgi_serve_result *res;
    int from, to;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    for (int i = c->from; i < c->to; i++) {
        int *prompt;
        uint64_t id;
        fgi_engine_request q = request_for(c->s, &c->jobs[i], &c->res[i], &prompt);
        const fgi_submit_status st = fgi_engine_submit(c->e, &q, &id);
        free(prompt);
        if (st != FGI_SUBMIT_OK) return (void *)1;
    }
    return NULL;
}

Test(serve_engine_batch, cpu_concurrent_clients_match_requests_alone)
{
    fgi_stories s;
    if (!fgi_stories_load(&s)) cr_skip_test("stories260K not found under FG_MODELS_DIR");
    fgi_rng rng = fgi_rng_make(2);
    static fgi_serve_job jobs[N_CPU];
    fgi_serve_random_jobs(jobs, N_CPU, &rng);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int n_done = 0;
    static fgi_serve_result alone[N_CPU], res[N_CPU];
    /* alone: one request at a time on an engine of its own shape */
    fgi_engine *e = make_engine(&s, FG_DEVICE_CPU, 1, N_CPU, 0, 0);
    for (int i = 0; i < N_CPU; i++) {
        alone[i] = (fgi_serve_result){.mu = &mu, .cv = &cv, .n_done = &n_done, .index_ok = 1,
                            .cancel_after = -1};
        int *prompt;
        uint64_t id;
        fgi_engine_request q = request_for(&s, &jobs[i], &alone[i], &prompt);
        cr_assert_eq(fgi_engine_submit(e, &q, &id), FGI_SUBMIT_OK);
        free(prompt);
        fgi_serve_wait_done(&mu, &cv, &n_done, i + 1);
    }
    assert_idle(e);
    fgi_engine_destroy(e);
    /* together, from 4 threads, on a pool of 20 blocks of 8 tokens */
    n_done = 0;
    e = make_engine(&s, FG_DEVICE_CPU, 16, N_CPU, 20, 0);
    for (int i = 0; i < N_CPU; i++)
        res[i] = (fgi_serve_result){.mu = &mu, .cv = &cv, .n_done = &n_done, .index_ok = 1,
                          .cancel_after = -1};
    client clients[CLIENTS];
    pthread_t th[CLIENTS];
    for (int t = 0; t < CLIENTS; t++) {
        clients[t] = (client){e, &s, jobs, res, t * N_CPU / CLIENTS, (t + 1) * N_CPU / CLIENTS};
        cr_assert_eq(pthread_create(&th[t], NULL, client_main, &clients[t]), 0);
    }
    for (int t = 0; t < CLIENTS; t++) {
        void *rv;
        pthread_join(th[t], &rv);
        cr_assert_null(rv, "a submit was refused");
    }
    fgi_serve_wait_done(&mu, &cv, &n_done, N_CPU);
    for (int i = 0; i < N_CPU; i++) {
        cr_assert_eq(res[i].finishes, 1);
        cr_assert_eq(res[i].final.reason, alone[i].final.reason, "request %d", i);
        cr_assert_eq(res[i].final.completion_tokens, alone[i].final.completion_tokens,
                     "request %d", i);
        cr_assert_eq(res[i].len, alone[i].len, "request %d: %zu bytes, alone %zu", i, res[i].len,
                     alone[i].len);
        cr_assert(memcmp(res[i].text, alone[i].text, res[i].len) == 0, "request %d: text", i);
    }
    assert_idle(e);
    fgi_engine_destroy(e);
    fgi_stories_free(&s);
}

Test(serve_engine_batch, stop_strings)
{
    fgi_stories s;
    if (!fgi_stories_load(&s)) cr_skip_test("stories260K not found under FG_MODELS_DIR");
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int n_done = 0;
    fgi_engine *e = make_engine(&s, FG_DEVICE_CPU, 4, 4, 0, 0);
    fgi_serve_job j = {"Once upon a time", 60, fg_sampler_defaults(), NULL};
    j.sc.temperature = 0.0f;
    fgi_serve_result full = {.mu = &mu, .cv = &cv, .n_done = &n_done, .index_ok = 1, .cancel_after = -1};
    int *prompt;
    uint64_t id;
    fgi_engine_request q = request_for(&s, &j, &full, &prompt);
    cr_assert_eq(fgi_engine_submit(e, &q, &id), FGI_SUBMIT_OK);
    free(prompt);
    fgi_serve_wait_done(&mu, &cv, &n_done, 1);
    cr_assert_gt(full.len, 20);
    /* a stop string from the middle of that text */
    char stop[8];
    memcpy(stop, full.text + full.len / 2, 5);
    stop[5] = '\0';
    const char *at = strstr(full.text, stop);
    cr_assert_not_null(at);
    j.stop = stop;
    fgi_serve_result cut = {.mu = &mu, .cv = &cv, .n_done = &n_done, .index_ok = 1, .cancel_after = -1};
    q = request_for(&s, &j, &cut, &prompt);
    cr_assert_eq(fgi_engine_submit(e, &q, &id), FGI_SUBMIT_OK);
    free(prompt);
    fgi_serve_wait_done(&mu, &cv, &n_done, 2);
    cr_assert_eq(cut.final.reason, FGI_FINISH_STOP);
    cr_assert_eq(cut.len, (size_t)(at - full.text), "text up to the stop string");
    cr_assert(memcmp(cut.text, full.text, cut.len) == 0);
    assert_idle(e);
    fgi_engine_destroy(e);
    fgi_stories_free(&s);
}

Test(serve_engine_batch, queue_bound_refusals_and_shutdown)
{
    fgi_stories s;
    if (!fgi_stories_load(&s)) cr_skip_test("stories260K not found under FG_MODELS_DIR");
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int n_done = 0;
    fgi_batch_options bad = {.device = FG_DEVICE_CPU, .max_batch = 0, .n_threads = 1};
    fgi_engine *e = NULL;
    const fg_config *cfg = fg_model_config(s.model);
    cr_assert_eq(fgi_engine_create_batch(&e, cfg, fg_model_weights(s.model), s.tok, &bad),
                 FG_ERR_INVALID_ARG);
    bad.max_batch = 2;
    /* neither weights nor a model, or a model of another config */
    cr_assert_eq(fgi_engine_create_batch(&e, cfg, NULL, s.tok, &bad), FG_ERR_INVALID_ARG);
    fg_config other = *cfg;
    bad.model = s.model;
    cr_assert_eq(fgi_engine_create_batch(&e, &other, NULL, s.tok, &bad), FG_ERR_INVALID_ARG);
    bad.model = NULL;
    cr_assert_null(e);
    bad.ctx = cfg->n_ctx + 1;
    cr_assert_eq(fgi_engine_create_batch(&e, cfg, fg_model_weights(s.model), s.tok, &bad),
                 FG_ERR_INVALID_ARG);
    /* the GPU reads KV blocks of a multiple of 16 tokens (a build without
     * CUDA refuses the device itself) */
    bad.ctx = 0, bad.device = FG_DEVICE_CUDA, bad.block_size = 4;
    cr_assert_eq(fgi_engine_create_batch(&e, cfg, fg_model_weights(s.model), s.tok, &bad),
                 FG_ERR_UNSUPPORTED);
    cr_assert_null(e);

    /* slowed: 20 ms a step keeps the first requests running */
    e = make_engine(&s, FG_DEVICE_CPU, 1, 1, 0, 20);
    fgi_serve_result res[4];
    int n_ids;
    int *prompt = fgi_stories_encode(&s, "Once upon a time", &n_ids);
    fg_sampler_config greedy = fg_sampler_defaults();
    greedy.temperature = 0;
    uint64_t id;
    for (int i = 0; i < 3; i++) {
        res[i] = (fgi_serve_result){.mu = &mu, .cv = &cv, .n_done = &n_done, .cancel_after = -1};
        fgi_engine_request q = {prompt, n_ids, 200, greedy, NULL, 0, 1, fgi_serve_on_piece, fgi_serve_on_finish,
                                &res[i]};
        cr_assert_eq(fgi_engine_submit(e, &q, &id), i < 2 ? FGI_SUBMIT_OK : FGI_SUBMIT_QUEUE_FULL,
                     "request %d", i);
    }
    fgi_engine_request q = {prompt, 0, 5, greedy, NULL, 0, 0, fgi_serve_on_piece, fgi_serve_on_finish, &res[3]};
    cr_assert_eq(fgi_engine_submit(e, &q, &id), FGI_SUBMIT_INVALID);
    q.n_prompt = n_ids, q.max_tokens = 0;
    cr_assert_eq(fgi_engine_submit(e, &q, &id), FGI_SUBMIT_INVALID);
    const int out_of_vocab[] = {1, 100000};
    q = (fgi_engine_request){out_of_vocab, 2, 5, greedy, NULL, 0, 0, fgi_serve_on_piece, fgi_serve_on_finish, &res[3]};
    cr_assert_eq(fgi_engine_submit(e, &q, &id), FGI_SUBMIT_INVALID);
    int *too_long = calloc(256, sizeof(int));
    q = (fgi_engine_request){too_long, 256, 5, greedy, NULL, 0, 0, fgi_serve_on_piece, fgi_serve_on_finish, &res[3]};
    cr_assert_eq(fgi_engine_submit(e, &q, &id), FGI_SUBMIT_INVALID, "no room for a token");
    free(too_long);
    q = (fgi_engine_request){prompt, n_ids, 5, greedy, NULL, 0, 0, fgi_serve_on_piece, fgi_serve_on_finish, &res[3]};
    q.sampling.top_p = 2.0f;
    cr_assert_eq(fgi_engine_submit(e, &q, &id), FGI_SUBMIT_INVALID);
    fgi_engine_shutdown(e, 1);
    cr_assert_eq(n_done, 2, "shutdown returns after every fgi_serve_on_finish");
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(res[i].finishes, 1);
        cr_assert_eq(res[i].final.reason, FGI_FINISH_CANCELLED, "request %d", i);
    }
    cr_assert_eq(res[2].finishes, 0);
    q.sampling.top_p = 1.0f;
    cr_assert_eq(fgi_engine_submit(e, &q, &id), FGI_SUBMIT_SHUTDOWN);
    assert_idle(e);
    fgi_engine_destroy(e);

    /* shutdown without cancelling: what was accepted finishes */
    n_done = 0;
    e = make_engine(&s, FG_DEVICE_CPU, 2, 4, 0, 0);
    for (int i = 0; i < 4; i++) {
        res[i] = (fgi_serve_result){.mu = &mu, .cv = &cv, .n_done = &n_done, .cancel_after = -1};
        q = (fgi_engine_request){prompt, n_ids, 10, greedy, NULL, 0, 1, fgi_serve_on_piece, fgi_serve_on_finish,
                                 &res[i]};
        cr_assert_eq(fgi_engine_submit(e, &q, &id), FGI_SUBMIT_OK);
    }
    fgi_engine_shutdown(e, 0);
    cr_assert_eq(n_done, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(res[i].final.reason, FGI_FINISH_LENGTH);
        cr_assert_eq(res[i].final.completion_tokens, 10);
    }
    assert_idle(e);
    fgi_engine_destroy(e);
    free(prompt);
    fgi_stories_free(&s);
}
