/* The serving engine tests' shared harness (see serve_support.h). */
#define _POSIX_C_SOURCE 200809L
#include "serve_support.h"

#include <stdlib.h>
#include <string.h>

int fgi_serve_on_piece(void *user, const fgi_engine_piece *p)
{
    fgi_serve_result *r = user;
    pthread_mutex_lock(r->mu);
    cr_assert_lt(r->len + p->len, sizeof r->text);
    memcpy(r->text + r->len, p->text, p->len);
    r->len += p->len;
    if (p->token >= 0) {
        if (p->index != r->n_pieces) r->index_ok = 0;
        r->n_pieces++;
    }
    const int stop = r->cancel_after >= 0 && r->n_pieces >= r->cancel_after;
    pthread_mutex_unlock(r->mu);
    return stop;
}

void fgi_serve_on_finish(void *user, const fgi_engine_final *f)
{
    fgi_serve_result *r = user;
    pthread_mutex_lock(r->mu);
    r->finishes++;
    r->final = *f;
    r->final.message = NULL;
    (*r->n_done)++;
    pthread_cond_broadcast(r->cv);
    pthread_mutex_unlock(r->mu);
}

void fgi_serve_wait_done(pthread_mutex_t *mu, pthread_cond_t *cv, const int *n_done, int want)
{
    pthread_mutex_lock(mu);
    while (*n_done < want) pthread_cond_wait(cv, mu);
    pthread_mutex_unlock(mu);
}

void fgi_serve_assert_idle(fgi_engine *e)
{
    fgi_engine_stats st;
    fgi_engine_stats_get(e, &st);
    cr_assert_eq(st.running, 0);
    cr_assert_eq(st.waiting, 0);
    cr_assert_eq(st.kv_blocks_used, 0, "KV blocks still in use: %d", st.kv_blocks_used);
    cr_assert_gt(st.kv_blocks_total, 0);
}

int fgi_stories_load(fgi_stories *s)
{
    const char *path = fgi_model_path("stories260K/stories260K.bin");
    if (path == NULL) return 0;
    cr_assert_eq(fg_model_load(&s->model, path), FG_OK);
    cr_assert_eq(fg_tokenizer_load_for_model(&s->tok, path, NULL,
                                             fg_model_config(s->model)->vocab_size),
                 FG_OK);
    return 1;
}

void fgi_stories_free(fgi_stories *s)
{
    fg_tokenizer_destroy(s->tok);
    fg_model_destroy(s->model);
}

int *fgi_stories_encode(const fgi_stories *s, const char *prompt, int *n)
{
    const fg_config *cfg = fg_model_config(s->model);
    cr_assert_eq(fg_prompt_encode(s->tok, cfg, prompt, strlen(prompt), NULL, 0, n),
                 FG_ERR_INVALID_ARG);
    int *ids = malloc((size_t)*n * sizeof *ids);
    cr_assert_not_null(ids);
    cr_assert_eq(fg_prompt_encode(s->tok, cfg, prompt, strlen(prompt), ids, *n, n), FG_OK);
    return ids;
}

void fgi_serve_random_jobs(fgi_serve_job *jobs, int n, fgi_rng *rng)
{
    static const char *const PROMPTS[] = {"Once upon a time", "The little dog", "Lily and Tom",
                                          "The sun was", "One day"};
    for (int i = 0; i < n; i++) {
        jobs[i].prompt = PROMPTS[fgi_rng_int(rng, 0, 4)];
        jobs[i].max_tokens = fgi_rng_int(rng, 1, 60);
        jobs[i].sc = fg_sampler_defaults();
        jobs[i].sc.temperature = fgi_rng_int(rng, 0, 1) ? 0.0f : 0.9f;
        jobs[i].sc.top_k = fgi_rng_int(rng, 0, 20);
        jobs[i].sc.seed = fgi_rng_next(rng);
        jobs[i].stop = NULL;
    }
}

static int collect(void *user, int id, const char *piece, size_t n)
{
    (void)id;
    fgi_serve_sink *k = user;
    cr_assert_lt(k->len + n, sizeof k->text);
    memcpy(k->text + k->len, piece, n);
    k->len += n;
    return 0;
}

void fgi_serve_reference(const fgi_stories *s, fg_device device, int ctx, const fgi_serve_job *j,
                         fgi_serve_sink *out, fg_generate_result *gr)
{
    const fg_config *cfg = fg_model_config(s->model);
    fg_session *session;
    fg_sampler *sampler;
    cr_assert_eq(fg_session_create(&session, cfg, fg_model_weights(s->model), device, ctx), FG_OK,
                 "%s", fg_last_error());
    cr_assert_eq(fg_session_set_threads(session, 1), FG_OK); /* a no-op on the reference */
    cr_assert_eq(fg_sampler_create(&sampler, cfg->vocab_size, &j->sc), FG_OK);
    fg_generate_config gc = fg_generate_defaults();
    gc.max_new_tokens = j->max_tokens;
    gc.on_token = collect;
    gc.user = out;
    out->len = 0;
    cr_assert_eq(fg_generate_text(session, cfg, s->tok, sampler, j->prompt, strlen(j->prompt), &gc,
                                  gr),
                 FG_OK);
    fg_sampler_destroy(sampler);
    fg_session_destroy(session);
}
