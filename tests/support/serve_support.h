/* The harness both serving engine tests share (tests/serve/test_serve_engine.c,
 * the sessions engine, and test_serve_engine_batch.c, the batching engine):
 * a request's result filled by the engine's callbacks, stories260K loaded
 * with its tokenizer, random requests, fg_generate serving one request
 * alone (what the engine's output is held to), and the engine's idle state.
 *
 * Conventions: every callback takes the result's mutex; on_finish counts
 * *n_done and signals the condition that fgi_serve_wait_done waits on.
 * Linked into the test_serve* executables only (they link host/serve). */
#ifndef FLASHGPT_TESTS_SERVE_SUPPORT_H
#define FLASHGPT_TESTS_SERVE_SUPPORT_H

#include "engine.h"
#include "support.h"

#include <pthread.h>
#include <stddef.h>

/* One request's stream as the engine delivered it. */
typedef struct {
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *n_done;
    char text[4096];
    size_t len;
    int n_pieces, finishes, cancel_after; /* cancel_after < 0: never */
    fgi_engine_final final;
    int index_ok; /* set to 1 before submitting; 0 once a piece came out of order */
} fgi_serve_result;

/* The engine's callbacks, user = an fgi_serve_result: on_piece appends the
 * text and asks to stop at the cancel_after-th token; on_finish keeps the
 * final state (message dropped) and wakes fgi_serve_wait_done. */
int fgi_serve_on_piece(void *user, const fgi_engine_piece *p);
void fgi_serve_on_finish(void *user, const fgi_engine_final *f);

/* Blocks until *n_done reaches want. */
void fgi_serve_wait_done(pthread_mutex_t *mu, pthread_cond_t *cv, const int *n_done, int want);

/* Nothing running, waiting or holding a KV block; some blocks exist. */
void fgi_serve_assert_idle(fgi_engine *e);

/* stories260K and its tokenizer. */
typedef struct {
    fg_model *model;
    fg_tokenizer *tok;
} fgi_stories;

/* 0 when the model is not under FG_MODELS_DIR (the caller skips). */
int fgi_stories_load(fgi_stories *s);
void fgi_stories_free(fgi_stories *s);

/* The prompt's ids (malloc'd), *n of them. */
int *fgi_stories_encode(const fgi_stories *s, const char *prompt, int *n);

/* A request: prompt, token budget, sampler, one stop string or NULL. */
typedef struct {
    const char *prompt;
    int max_tokens;
    fg_sampler_config sc;
    const char *stop;
} fgi_serve_job;

/* n random requests: one of five prompts, 1..60 tokens, greedy or
 * temperature 0.9, top-k 0..20, a fresh seed; no stop string. */
void fgi_serve_random_jobs(fgi_serve_job *jobs, int n, fgi_rng *rng);

/* What fg_generate_text gives for the job served alone (its stop string
 * not applied) in a session on device with ctx (one thread): text and
 * result. */
typedef struct {
    char text[4096];
    size_t len;
} fgi_serve_sink;

void fgi_serve_reference(const fgi_stories *s, fg_device device, int ctx, const fgi_serve_job *j,
                         fgi_serve_sink *out, fg_generate_result *gr);

#endif /* FLASHGPT_TESTS_SERVE_SUPPORT_H */
