/* The serving engine (host/serve/engine.h): the text release (stop strings,
 * UTF-8 hold-back) against a plain re-statement of its rule on random
 * texts cut at random places, and the sessions engine on stories260K:
 * requests arriving in random order, some cancelled at random points, each
 * finished request's text equal to fg_generate serving it alone; the queue
 * bound; shutdown. Any engine plugged in behind engine.h should pass the
 * engine cases unchanged. */
#define _POSIX_C_SOURCE 200809L
#include "serve_support.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- text release ------------------------------------------------------------------- */

/* Pieces of text pushed in order; returns what was released in all (out,
 * malloc'd) and whether a stop string matched. */
static int release_all(const char *text, const size_t *cuts, int n_cuts, const char *const *stop,
                       int n_stop, char **out, size_t *out_len, int check_utf8)
{
    fgi_text_release r;
    cr_assert_eq(fgi_text_release_init(&r, stop, n_stop), FG_OK);
    const size_t n = strlen(text);
    char *acc = malloc(n + 1);
    size_t len = 0, at = 0;
    int stopped = 0;
    for (int c = 0; c <= n_cuts && !stopped; c++) {
        const size_t end = c < n_cuts ? cuts[c] : n;
        const char *o;
        size_t ol;
        stopped = fgi_text_release_push(&r, text + at, end - at, &o, &ol);
        cr_assert_geq(stopped, 0);
        /* a release never ends inside a character, except where a stop
         * string (cut from the text at any byte) begins */
        if (check_utf8 && !stopped && ol > 0) {
            size_t k = ol;
            int back = 0;
            while (k > 0 && ((unsigned char)o[k - 1] & 0xC0) == 0x80) k--, back++;
            cr_assert(k > 0, "a release starts with a continuation byte");
            const unsigned char lead = (unsigned char)o[k - 1];
            const int need = lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : 4;
            cr_assert_eq(back + 1, need, "a release ends inside a UTF-8 character");
        }
        memcpy(acc + len, o, ol);
        len += ol;
        at = end;
    }
    if (!stopped) {
        const char *o;
        size_t ol;
        fgi_text_release_flush(&r, &o, &ol);
        memcpy(acc + len, o, ol);
        len += ol;
    }
    fgi_text_release_free(&r);
    *out = acc;
    *out_len = len;
    return stopped;
}

/* The rule restated: after each piece, the earliest-starting stop string
 * that is complete in the text so far ends the text there. */
static size_t expected_end(const char *text, const size_t *cuts, int n_cuts,
                           const char *const *stop, int n_stop, int *stopped)
{
    const size_t n = strlen(text);
    for (int c = 0; c <= n_cuts; c++) {
        const size_t end = c < n_cuts ? cuts[c] : n;
        size_t best = (size_t)-1;
        for (int s = 0; s < n_stop; s++) {
            const size_t sl = strlen(stop[s]);
            for (size_t i = 0; i + sl <= end; i++)
                if (memcmp(text + i, stop[s], sl) == 0) {
                    if (i < best) best = i;
                    break;
                }
        }
        if (best != (size_t)-1) {
            *stopped = 1;
            return best;
        }
    }
    *stopped = 0;
    return n;
}

Test(serve_text, random_texts_cuts_and_stop_strings)
{
    fgi_rng rng = fgi_rng_make(1);
    static const char *const ALPHABET[] = {"a", "b", "c", " ", "\xC3\xA9", "\xE2\x82\xAC",
                                           "\xF0\x9D\x84\x9E"}; /* é € 𝄞 */
    for (int trial = 0; trial < 2000; trial++) {
        char text[256] = "";
        const int symbols = fgi_rng_int(&rng, 0, 40);
        for (int i = 0; i < symbols; i++) strcat(text, ALPHABET[fgi_rng_int(&rng, 0, 6)]);
        const size_t n = strlen(text);
        /* stop strings: substrings of the text (any bytes) or random ones */
        char stops[FGI_ENGINE_MAX_STOP][16];
        const char *stop[FGI_ENGINE_MAX_STOP];
        const int n_stop = fgi_rng_int(&rng, 0, FGI_ENGINE_MAX_STOP);
        for (int s = 0; s < n_stop; s++) {
            size_t sl = (size_t)fgi_rng_int(&rng, 1, 6);
            if (n >= sl && fgi_rng_int(&rng, 0, 3) > 0) {
                const size_t at = (size_t)fgi_rng_int(&rng, 0, (int)(n - sl));
                memcpy(stops[s], text + at, sl);
            } else {
                for (size_t i = 0; i < sl; i++) stops[s][i] = "abc "[fgi_rng_int(&rng, 0, 3)];
            }
            stops[s][sl] = '\0';
            stop[s] = stops[s];
        }
        size_t cuts[64];
        int n_cuts = 0;
        for (size_t at = 0; n > 0 && n_cuts < 64;) {
            at += (size_t)fgi_rng_int(&rng, 0, 5);
            if (at >= n) break;
            cuts[n_cuts++] = at;
        }
        char *got;
        size_t got_len;
        const int stopped = release_all(text, cuts, n_cuts, stop, n_stop, &got, &got_len, 1);
        int want_stopped;
        const size_t want = expected_end(text, cuts, n_cuts, stop, n_stop, &want_stopped);
        cr_assert_eq(stopped, want_stopped, "trial %d, text '%s': stopped %d, expected %d", trial,
                     text, stopped, want_stopped);
        cr_assert_eq(got_len, want, "trial %d, text '%s': released %zu bytes, expected %zu", trial,
                     text, got_len, want);
        cr_assert(memcmp(got, text, want) == 0, "trial %d: released text differs", trial);
        free(got);
    }
}

Test(serve_text, invalid_arguments)
{
    fgi_text_release r;
    const char *empty[] = {""};
    cr_assert_eq(fgi_text_release_init(&r, empty, 1), FG_ERR_INVALID_ARG);
    cr_assert_eq(fgi_text_release_init(&r, NULL, 1), FG_ERR_INVALID_ARG);
    cr_assert_eq(fgi_text_release_init(&r, NULL, FGI_ENGINE_MAX_STOP + 1), FG_ERR_INVALID_ARG);
    char longer[FGI_ENGINE_STOP_MAX_LEN + 2];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    const char *too_long[] = {longer};
    cr_assert_eq(fgi_text_release_init(&r, too_long, 1), FG_ERR_INVALID_ARG);
    /* a bad byte is released, not held forever */
    cr_assert_eq(fgi_text_release_init(&r, NULL, 0), FG_OK);
    const char *o;
    size_t ol;
    cr_assert_eq(fgi_text_release_push(&r, "a\x80", 2, &o, &ol), 0);
    cr_assert_eq(ol, 2);
    cr_assert_eq(fgi_text_release_push(&r, "\xE2\x82", 2, &o, &ol), 0);
    cr_assert_eq(ol, 0, "half a character is held");
    cr_assert_eq(fgi_text_release_push(&r, "\xAC", 1, &o, &ol), 0);
    cr_assert_eq(ol, 3);
    fgi_text_release_free(&r);
}

/* --- the sessions engine on stories260K ------------------------------------------------ */

static fgi_engine *make_engine(const fgi_stories *s, int max_batch, int max_waiting, int delay_ms)
{
    fgi_sessions_options o = {FG_DEVICE_CPU, 0, max_batch, max_waiting, 1, delay_ms, FG_DTYPE_F32, NULL};
    fgi_engine *e = NULL;
    cr_assert_eq(fgi_engine_create_sessions(&e, fg_model_config(s->model), fg_model_weights(s->model),
                                            s->tok, &o), FG_OK);
    return e;
}

enum { N_REQ = 24 };

Test(serve_engine, random_arrivals_and_cancellations_match_requests_alone)
{
    fgi_stories s;
    if (!fgi_stories_load(&s)) cr_skip_test("stories260K not found under FG_MODELS_DIR");
    fgi_rng rng = fgi_rng_make(2);
    fgi_serve_job specs[N_REQ];
    fgi_serve_sink refs[N_REQ];
    fg_generate_result gr[N_REQ];
    fgi_serve_random_jobs(specs, N_REQ, &rng);
    for (int i = 0; i < N_REQ; i++)
        fgi_serve_reference(&s, FG_DEVICE_CPU, 0, &specs[i], &refs[i], &gr[i]);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int n_done = 0;
    fgi_engine *e = make_engine(&s, fgi_rng_int(&rng, 1, 4), N_REQ, 0);
    fgi_serve_result *res = calloc(N_REQ, sizeof *res);
    uint64_t ids[N_REQ];
    int order[N_REQ], cancel_by_id[N_REQ];
    for (int i = 0; i < N_REQ; i++) order[i] = i;
    for (int i = N_REQ - 1; i > 0; i--) { /* a random arrival order */
        const int k = fgi_rng_int(&rng, 0, i), t = order[i];
        order[i] = order[k];
        order[k] = t;
    }
    for (int o = 0; o < N_REQ; o++) {
        const int i = order[o];
        res[i].mu = &mu;
        res[i].cv = &cv;
        res[i].n_done = &n_done;
        res[i].index_ok = 1;
        /* a quarter cancelled by their callback, a few through the engine */
        res[i].cancel_after = fgi_rng_int(&rng, 0, 3) == 0 ? fgi_rng_int(&rng, 1, 10) : -1;
        cancel_by_id[i] = res[i].cancel_after < 0 && fgi_rng_int(&rng, 0, 7) == 0;
        int n_ids;
        int *prompt = fgi_stories_encode(&s, specs[i].prompt, &n_ids);
        fgi_engine_request q = {prompt, n_ids, specs[i].max_tokens, specs[i].sc, NULL, 0, 0,
                                fgi_serve_on_piece, fgi_serve_on_finish, &res[i]};
        cr_assert_eq(fgi_engine_submit(e, &q, &ids[i]), FGI_SUBMIT_OK);
        free(prompt); /* the engine copied it */
        if (cancel_by_id[i]) fgi_engine_cancel(e, ids[i]);
    }
    fgi_serve_wait_done(&mu, &cv, &n_done, N_REQ);
    for (int i = 0; i < N_REQ; i++) {
        const fgi_serve_result *r = &res[i];
        cr_assert_eq(r->finishes, 1, "request %d finished %d times", i, r->finishes);
        cr_assert(r->index_ok, "request %d: piece indexes out of order", i);
        /* the callback cancels at its cancel_after-th token, if there is one */
        const int cancelled_early = r->cancel_after >= 0 && r->cancel_after <= gr[i].n_generated;
        if (cancel_by_id[i]) {
            cr_assert(r->final.reason == FGI_FINISH_CANCELLED, "request %d", i);
            continue;
        }
        if (cancelled_early) {
            cr_assert_eq(r->final.reason, FGI_FINISH_CANCELLED, "request %d", i);
            cr_assert_eq(r->n_pieces, r->cancel_after, "request %d", i);
            cr_assert(memcmp(r->text, refs[i].text, r->len) == 0, "request %d: text before the cancel", i);
            continue;
        }
        cr_assert_eq(r->final.reason, gr[i].stop == FG_STOP_EOS ? FGI_FINISH_STOP : FGI_FINISH_LENGTH,
                     "request %d: reason %d, fg_generate stop %d", i, r->final.reason, gr[i].stop);
        cr_assert_eq(r->final.completion_tokens, gr[i].n_generated, "request %d", i);
        cr_assert_eq(r->final.prompt_tokens, gr[i].n_prompt, "request %d", i);
        cr_assert_eq(r->len, refs[i].len, "request %d: %zu bytes, alone %zu", i, r->len, refs[i].len);
        cr_assert(memcmp(r->text, refs[i].text, r->len) == 0, "request %d: text differs from alone", i);
    }
    fgi_serve_assert_idle(e);
    fgi_engine_cancel(e, ids[0]); /* finished: a no-op */
    fgi_engine_destroy(e);
    free(res);
    fgi_stories_free(&s);
}

Test(serve_engine, queue_bound_and_shutdown_cancel)
{
    fgi_stories s;
    if (!fgi_stories_load(&s)) cr_skip_test("stories260K not found under FG_MODELS_DIR");
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int n_done = 0;
    /* slowed: 20 ms a turn keeps the first request running */
    fgi_engine *e = make_engine(&s, 1, 1, 20);
    fgi_serve_result res[3] = {0};
    int n_ids;
    int *prompt = fgi_stories_encode(&s, "Once upon a time", &n_ids);
    fg_sampler_config greedy = fg_sampler_defaults();
    greedy.temperature = 0;
    uint64_t id;
    for (int i = 0; i < 3; i++) {
        res[i] = (fgi_serve_result){.mu = &mu, .cv = &cv, .n_done = &n_done, .cancel_after = -1};
        fgi_engine_request q = {prompt, n_ids, 200, greedy, NULL, 0, 1, fgi_serve_on_piece, fgi_serve_on_finish, &res[i]};
        cr_assert_eq(fgi_engine_submit(e, &q, &id), i < 2 ? FGI_SUBMIT_OK : FGI_SUBMIT_QUEUE_FULL,
                     "request %d", i);
    }
    /* invalid requests are refused without a callback */
    fgi_engine_request bad = {prompt, 0, 5, greedy, NULL, 0, 0, fgi_serve_on_piece, fgi_serve_on_finish, &res[2]};
    cr_assert_eq(fgi_engine_submit(e, &bad, &id), FGI_SUBMIT_INVALID);
    bad.n_prompt = n_ids;
    bad.max_tokens = 0;
    cr_assert_eq(fgi_engine_submit(e, &bad, &id), FGI_SUBMIT_INVALID);
    const int out_of_vocab[] = {1, 100000};
    bad = (fgi_engine_request){out_of_vocab, 2, 5, greedy, NULL, 0, 0, fgi_serve_on_piece, fgi_serve_on_finish, &res[2]};
    cr_assert_eq(fgi_engine_submit(e, &bad, &id), FGI_SUBMIT_INVALID);
    fgi_engine_shutdown(e, 1);
    cr_assert_eq(n_done, 2, "shutdown returns after every fgi_serve_on_finish");
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(res[i].finishes, 1);
        cr_assert_eq(res[i].final.reason, FGI_FINISH_CANCELLED, "request %d", i);
    }
    cr_assert_eq(res[2].finishes, 0);
    fgi_engine_request q = {prompt, n_ids, 5, greedy, NULL, 0, 0, fgi_serve_on_piece, fgi_serve_on_finish, &res[2]};
    cr_assert_eq(fgi_engine_submit(e, &q, &id), FGI_SUBMIT_SHUTDOWN);
    fgi_serve_assert_idle(e);
    fgi_engine_destroy(e);
    free(prompt);
    fgi_stories_free(&s);
}

Test(serve_engine, stop_strings_end_the_text)
{
    fgi_stories s;
    if (!fgi_stories_load(&s)) cr_skip_test("stories260K not found under FG_MODELS_DIR");
    fgi_serve_job spec = {"Once upon a time", 50, fg_sampler_defaults(), NULL};
    spec.sc.temperature = 0;
    fgi_serve_sink ref;
    fg_generate_result gr;
    fgi_serve_reference(&s, FG_DEVICE_CPU, 0, &spec, &ref, &gr);
    cr_assert_gt(ref.len, 30);
    char stop[5];
    memcpy(stop, ref.text + 20, 4);
    stop[4] = '\0';
    const char *stops[] = {"\x01never", stop};
    const size_t want = (size_t)(strstr(ref.text, stop) - ref.text);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int n_done = 0;
    fgi_engine *e = make_engine(&s, 2, 4, 0);
    fgi_serve_result r = {.mu = &mu, .cv = &cv, .n_done = &n_done, .cancel_after = -1, .index_ok = 1};
    int n_ids;
    int *prompt = fgi_stories_encode(&s, spec.prompt, &n_ids);
    fgi_engine_request q = {prompt, n_ids, 50, spec.sc, stops, 2, 0, fgi_serve_on_piece, fgi_serve_on_finish, &r};
    uint64_t id;
    cr_assert_eq(fgi_engine_submit(e, &q, &id), FGI_SUBMIT_OK);
    fgi_serve_wait_done(&mu, &cv, &n_done, 1);
    cr_assert_eq(r.final.reason, FGI_FINISH_STOP);
    cr_assert_eq(r.len, want, "released %zu bytes, the stop string starts at %zu", r.len, want);
    cr_assert(memcmp(r.text, ref.text, want) == 0);
    cr_assert_lt(r.final.completion_tokens, gr.n_generated);
    fgi_serve_assert_idle(e);
    fgi_engine_destroy(e);
    free(prompt);
    fgi_stories_free(&s);
}
