/* The continuous-batching scheduler (flashgpt/scheduler.h) on stories260K
 * and small random models, on the reference and the fast CPU path:
 *  - batch invariance: every request's tokens (greedy and seeded sampling),
 *    and the bits of the logits each was drawn from, among 31 others
 *    arriving at random steps in random orders, equal those it gets alone;
 *  - block exhaustion: with a pool too small for the load, requests wait
 *    and running ones are preempted and recomputed, and still produce the
 *    same tokens; every block is back in the pool at the end;
 *  - prefix sharing: requests with common prompt prefixes share blocks and
 *    still produce the same tokens and logit bits;
 *  - cancellations (through the API, from a callback, while waiting or
 *    running) end a request at once, exactly once, without touching others;
 *  - stop ids, max_tokens and a full context end requests as documented,
 *    the same tokens as fg_generate on the reference;
 *  - submit / cancel from other threads while one thread steps;
 *  - bad options and requests are refused with a message.
 * The GPU (FG_DEVICE_CUDA, cuda/engine/batch.cu) runs the invariance,
 * exhaustion and cancellation tests too, on blocks of 16 tokens (its
 * granule), fewer requests alone with FG_TEST_QUICK; the invariance test
 * also in bf16 and f16 on a random Llama of head_dim 32. */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "gpu_support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REQ 40
#define MAX_OUT 128

static void ok(fg_status st, const char *what)
{
    cr_assert(st == FG_OK, "%s: %s: %s (seed %llu)", what, fg_status_str(st), fg_last_error(),
              (unsigned long long)fgi_test_seed());
}

/* ---- what a test asks and what it gets back ---------------------------------------- */

typedef struct {
    int prompt[256];
    int n_prompt;
    fg_sampler_config sampling;
    int max_tokens;
    int stop_ids[2];
    int n_stop;
    int arrive;        /* the step it is submitted before */
    int cancel_at;     /* step before which fg_scheduler_cancel is called; -1: never */
    int cancel_after;  /* on_token returns 1 after this many tokens; -1: never */
} req_spec;

typedef struct {
    int tokens[MAX_OUT];
    uint64_t logit_hash[MAX_OUT]; /* of each token's logits' bits */
    int n;
    int finished;      /* on_finish calls */
    fg_stop_reason reason;
    int n_prompt, n_generated;
    uint64_t id;
    const req_spec *spec;
    pthread_mutex_t *mu; /* for the threaded test; NULL otherwise */
} req_out;

/* FNV-1a of the bytes: equal logits give equal hashes, and a difference in
 * any bit changes it (up to collisions) */
static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static int g_vocab; /* of the model the current test runs */

static int on_token(void *user, uint64_t id, int token, const float *logits)
{
    req_out *o = user;
    if (o->mu) pthread_mutex_lock(o->mu);
    cr_assert_eq(id, o->id);
    cr_assert_eq(o->finished, 0, "a token after the end");
    cr_assert_lt(o->n, MAX_OUT);
    cr_assert_not_null(logits);
    o->logit_hash[o->n] = hash_bytes(logits, sizeof(float) * (size_t)g_vocab);
    o->tokens[o->n++] = token;
    const int stop = o->spec->cancel_after >= 0 && o->n >= o->spec->cancel_after;
    if (o->mu) pthread_mutex_unlock(o->mu);
    return stop;
}

static void on_finish(void *user, uint64_t id, fg_stop_reason reason, int n_prompt,
                      int n_generated)
{
    req_out *o = user;
    if (o->mu) pthread_mutex_lock(o->mu);
    cr_assert_eq(id, o->id);
    o->finished++;
    o->reason = reason;
    o->n_prompt = n_prompt;
    o->n_generated = n_generated;
    if (o->mu) pthread_mutex_unlock(o->mu);
}

static fg_request make_request(const req_spec *sp, req_out *o)
{
    fg_request q = {.prompt = sp->prompt, .n_prompt = sp->n_prompt, .sampling = sp->sampling,
                    .max_tokens = sp->max_tokens, .stop_ids = sp->n_stop ? sp->stop_ids : NULL,
                    .n_stop_ids = sp->n_stop, .on_token = on_token, .on_finish = on_finish,
                    .user = o};
    return q;
}

/* Runs the requests to the end on a fresh scheduler, each submitted before
 * its arrival step in the order given; returns the scheduler's statistics. */
static fg_scheduler_stats run(const fg_config *cfg, const fg_weights *w,
                              const fg_scheduler_config *opts, const req_spec *specs, int n,
                              req_out *outs)
{
    fg_scheduler *s;
    ok(fg_scheduler_create(&s, cfg, w, opts), "create");
    g_vocab = cfg->vocab_size;
    memset(outs, 0, sizeof *outs * (size_t)n);
    for (int i = 0; i < n; i++) outs[i].spec = &specs[i];
    int submitted = 0, busy = 1;
    for (int step = 0; step < 100000; step++) {
        for (int i = 0; i < n; i++) {
            if (specs[i].arrive == step) {
                fg_request q = make_request(&specs[i], &outs[i]);
                ok(fg_scheduler_submit(s, &q, &outs[i].id), "submit");
                submitted++;
            }
            if (specs[i].cancel_at == step && outs[i].id != 0) {
                const fg_status st = fg_scheduler_cancel(s, outs[i].id);
                cr_assert(st == FG_OK || outs[i].finished, "cancel of a live request");
            }
        }
        ok(fg_scheduler_step(s, &busy), "step");
        if (busy == 0 && submitted == n) break;
    }
    cr_assert_eq(busy, 0, "the scheduler never became idle");
    fg_scheduler_stats st;
    ok(fg_scheduler_stats_get(s, &st), "stats");
    cr_assert_eq(st.blocks_used, 0, "every block returned (%d in use)", st.blocks_used);
    cr_assert_eq(st.running + st.waiting, 0);
    cr_assert_eq(st.finished, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(outs[i].finished, 1, "request %d finished %d times", i, outs[i].finished);
        cr_assert_eq(outs[i].n_generated, outs[i].n);
        cr_assert_eq(outs[i].n_prompt, specs[i].n_prompt);
    }
    fg_scheduler_destroy(s);
    return st;
}

/* ---- models ---------------------------------------------------------------------------- */

static fg_model *stories(void)
{
    const char *path = fgi_model_path("stories260K/stories260K.bin");
    if (path == NULL) cr_skip_test("stories260K not found under FG_MODELS_DIR");
    fg_model *m;
    ok(fg_model_load(&m, path), "load stories260K");
    return m;
}

/* n requests with random prompts (BOS first), lengths and sampling; a
 * quarter greedy, the rest seeded with top-k / top-p. */
static void random_specs(req_spec *specs, int n, int vocab, int max_prompt, int max_out,
                         int max_arrive, fgi_rng *rng)
{
    for (int i = 0; i < n; i++) {
        req_spec *sp = &specs[i];
        memset(sp, 0, sizeof *sp);
        sp->n_prompt = fgi_rng_int(rng, 1, max_prompt);
        sp->prompt[0] = 1;
        for (int t = 1; t < sp->n_prompt; t++) sp->prompt[t] = fgi_rng_int(rng, 3, vocab - 1);
        sp->sampling = fg_sampler_defaults();
        if (fgi_rng_int(rng, 0, 3) == 0) {
            sp->sampling.temperature = 0.0f;
        } else {
            sp->sampling.temperature = (float)(0.5 + fgi_rng_uniform(rng));
            sp->sampling.top_k = fgi_rng_int(rng, 0, 40);
            sp->sampling.top_p = fgi_rng_int(rng, 0, 1) ? 1.0f : 0.9f;
            sp->sampling.seed = fgi_rng_next(rng);
        }
        sp->max_tokens = fgi_rng_int(rng, 1, max_out);
        sp->arrive = fgi_rng_int(rng, 0, max_arrive);
        sp->cancel_at = sp->cancel_after = -1;
    }
}

static void assert_same_tokens(const req_out *a, const req_out *b, const char *what, int i)
{
    char msg[200];
    snprintf(msg, sizeof msg, "%s: request %d (%d vs %d tokens, reasons %d / %d)", what, i, a->n,
             b->n, (int)a->reason, (int)b->reason);
    cr_assert_eq(a->n, b->n, "%s (seed %llu)", msg, (unsigned long long)fgi_test_seed());
    cr_assert_eq(a->reason, b->reason, "%s (seed %llu)", msg, (unsigned long long)fgi_test_seed());
    fgi_assert_same(a->tokens, b->tokens, sizeof(int) * (size_t)a->n, msg);
    fgi_assert_same(a->logit_hash, b->logit_hash, sizeof(uint64_t) * (size_t)a->n, msg);
}

/* Alone vs among 31 others with random arrivals; then the same 32 in a
 * shuffled order on a pool that forces waiting and preemption. */
static void invariance_on(const fg_config *cfg, const fg_weights *w, fg_device device,
                          fg_dtype dtype, int max_out, fgi_rng *rng_in)
{
    fgi_rng rng = *rng_in;
    enum { N = 32 };
    static req_spec specs[N], alone_spec;
    static req_out outs[N], outs2[N], alone;
    random_specs(specs, N, cfg->vocab_size, 60, max_out, 12, &rng);
    fg_scheduler_config opts = fg_scheduler_defaults();
    opts.device = device;
    opts.dtype = dtype;
    opts.n_threads = fgi_rng_int(&rng, 1, 3);
    opts.ctx = 256;
    const int cuda = device == FG_DEVICE_CUDA;
    opts.block_size = cuda ? fgi_rng_int(&rng, 1, 2) * 16 : fgi_rng_int(&rng, 1, 4) * 4;
    opts.step_tokens = fgi_rng_int(&rng, 32, 96); /* prompts go in chunks */
    const fg_scheduler_stats busy = run(cfg, w, &opts, specs, N, outs);
    cr_assert_gt(busy.steps, 1);
    cr_assert_eq(busy.dtype, dtype == FG_DTYPE_AUTO ? FG_DTYPE_F32 : dtype,
                 "the forward ran in %s", fg_dtype_name(busy.dtype));

    /* every request alone (a few on the slow reference) */
    const int few = device == FG_DEVICE_REF || (cuda && fgi_test_quick());
    const int n_alone = few ? 4 : N;
    for (int k = 0; k < n_alone; k++) {
        const int i = few ? fgi_rng_int(&rng, 0, N - 1) : k;
        alone_spec = specs[i];
        alone_spec.arrive = 0;
        run(cfg, w, &opts, &alone_spec, 1, &alone);
        assert_same_tokens(&outs[i], &alone, "among 31 others vs alone", i);
    }

    /* shuffled arrivals, small blocks and a pool that holds about a quarter
     * of the load: waiting, preemption, recomputation. Short outputs (quick
     * mode) may all fit that pool; then it shrinks, down to what the
     * largest request needs alone, until something is preempted. */
    for (int i = 0; i < N; i++) specs[i].arrive = fgi_rng_int(&rng, 0, 30);
    opts.block_size = cuda ? 16 : 4;
    opts.max_seqs = fgi_rng_int(&rng, 8, 32);
    opts.step_tokens = opts.max_seqs + fgi_rng_int(&rng, 0, 64);
    opts.n_threads = fgi_rng_int(&rng, 1, 3);
    int need = 1; /* blocks of the largest request */
    for (int i = 0; i < N; i++) {
        const int blocks = (specs[i].n_prompt + specs[i].max_tokens + opts.block_size - 1) /
                           opts.block_size;
        if (blocks > need) need = blocks;
    }
    fg_scheduler_stats tight;
    for (int blocks = cuda ? 15 : 60;; blocks = blocks * 2 / 3 > need ? blocks * 2 / 3 : need) {
        opts.n_blocks = blocks > need ? blocks : need;
        tight = run(cfg, w, &opts, specs, N, outs2);
        for (int i = 0; i < N; i++) assert_same_tokens(&outs[i], &outs2[i], "tight pool", i);
        if (tight.preemptions > 0 || opts.n_blocks == need) break;
    }
    cr_assert_gt(tight.preemptions, 0, "a pool of %d blocks preempted nothing (seed %llu)",
                 opts.n_blocks, (unsigned long long)fgi_test_seed());
}

static void invariance(fg_device device, int max_out, uint64_t stream)
{
    fgi_rng rng = fgi_rng_make(stream);
    fg_model *m = stories();
    /* AUTO: fp32 for stories260K everywhere (head_dim 8 has no 16-bit kernel) */
    invariance_on(fg_model_config(m), fg_model_weights(m), device, FG_DEVICE_CUDA == device
                  ? FG_DTYPE_AUTO : FG_DTYPE_F32, max_out, &rng);
    fg_model_destroy(m);
}

/* bf16 and f16 on the GPU: a random Llama of head_dim 32 (the 16-bit
 * kernels' smallest), alone vs among 31 others and through preemption. */
static void invariance16(fg_dtype dtype, uint64_t stream)
{
    fgi_rng rng = fgi_rng_make(stream);
    const fg_config cfg = fgi_test_llama_config(2, 64, 2, 1, 96, 0, 67, 256);
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 1);
    fgi_test_model_round(&tm, dtype);
    invariance_on(&cfg, &tm.w, FG_DEVICE_CUDA, dtype, fgi_test_quick() ? 12 : 60, &rng);
    fgi_test_model_free(&tm);
}

Test(scheduler, batch_invariance_on_cpu) { invariance(FG_DEVICE_CPU, 100, 1); }
Test(scheduler, batch_invariance_on_ref) { invariance(FG_DEVICE_REF, 24, 2); }
Test(scheduler, batch_invariance_on_cuda)
{
    fgi_require_gpu();
    invariance(FG_DEVICE_CUDA, fgi_test_quick() ? 16 : 100, 5);
}
Test(scheduler, batch_invariance_on_cuda_bf16)
{
    fgi_require_gpu();
    invariance16(FG_DTYPE_BF16, 11);
}
Test(scheduler, batch_invariance_on_cuda_f16)
{
    fgi_require_gpu();
    invariance16(FG_DTYPE_F16, 12);
}

/* Requests with a common prompt prefix (a "system prompt" and a few
 * shared openings) share the blocks that hold it: the same tokens and
 * logit bits as without sharing, less prompt computed, every block back at
 * the end, on a roomy pool and on one tight enough to preempt. */
Test(scheduler, prefix_sharing_changes_nothing_but_the_work)
{
    fgi_rng rng = fgi_rng_make(7);
    fg_model *m = stories();
    const fg_config *cfg = fg_model_config(m);
    const fg_weights *w = fg_model_weights(m);
    enum { N = 24 };
    static req_spec specs[N];
    static req_out on[N], off[N];
    random_specs(specs, N, cfg->vocab_size, 20, 40, 0, &rng);
    int common[64], openings[3][16];
    common[0] = 1;
    for (int t = 1; t < 64; t++) common[t] = fgi_rng_int(&rng, 3, cfg->vocab_size - 1);
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < 16; t++) openings[k][t] = fgi_rng_int(&rng, 3, cfg->vocab_size - 1);
    for (int i = 0; i < N; i++) {
        req_spec *sp = &specs[i];
        const int n_common = fgi_rng_int(&rng, 1, 64), k = fgi_rng_int(&rng, 0, 2);
        int prompt[256], n = 0;
        for (int t = 0; t < n_common; t++) prompt[n++] = common[t];
        for (int t = 0; t < 16 && fgi_rng_int(&rng, 0, 4) > 0; t++) prompt[n++] = openings[k][t];
        for (int t = 0; t < sp->n_prompt && n < 200; t++) prompt[n++] = sp->prompt[t];
        memcpy(sp->prompt, prompt, sizeof(int) * (size_t)n);
        sp->n_prompt = n;
        sp->arrive = fgi_rng_int(&rng, 0, 40);
    }
    for (int pool = 0; pool < 2; pool++) {
        fg_scheduler_config opts = fg_scheduler_defaults();
        opts.device = FG_DEVICE_CPU;
        opts.n_threads = fgi_rng_int(&rng, 1, 2);
        opts.ctx = 256;
        opts.block_size = fgi_rng_int(&rng, 1, 8);
        opts.n_blocks = pool == 0 ? 0 : 300 / opts.block_size;
        opts.max_seqs = 16;
        opts.step_tokens = fgi_rng_int(&rng, 16, 64);
        opts.prefix_sharing = 0;
        const fg_scheduler_stats st_off = run(cfg, w, &opts, specs, N, off);
        cr_assert_eq(st_off.shared_tokens, 0u);
        opts.prefix_sharing = 1;
        const fg_scheduler_stats st_on = run(cfg, w, &opts, specs, N, on);
        for (int i = 0; i < N; i++) assert_same_tokens(&on[i], &off[i], "sharing on vs off", i);
        cr_assert_gt(st_on.shared_tokens, 0u, "nothing was shared (seed %llu)",
                     (unsigned long long)fgi_test_seed());
        if (pool == 0) /* nothing preempted: exactly the shared tokens are saved */
            cr_assert_eq(st_on.forwarded_tokens + st_on.shared_tokens, st_off.forwarded_tokens);
    }
    fg_model_destroy(m);
}

/* The same long prompt arriving once per step while the first copies are
 * still being prefilled in chunks that end inside blocks: only blocks
 * whose keys are all computed may be shared (sharing one still being
 * written would corrupt it, or be refused by the forward). */
Test(scheduler, prefix_sharing_only_of_computed_blocks)
{
    fgi_rng rng = fgi_rng_make(8);
    fg_model *m = stories();
    const fg_config *cfg = fg_model_config(m);
    enum { N = 8 };
    static req_spec specs[N];
    static req_out on[N], off[N];
    random_specs(specs, N, cfg->vocab_size, 1, 20, 0, &rng);
    for (int i = 0; i < N; i++) {
        specs[i].n_prompt = 90;
        for (int t = 1; t < 90; t++) specs[i].prompt[t] = (7 * t + 3) % (cfg->vocab_size - 3) + 3;
        specs[i].arrive = i;
    }
    fg_scheduler_config opts = fg_scheduler_defaults();
    opts.device = FG_DEVICE_CPU;
    opts.n_threads = 1;
    opts.ctx = 128;
    opts.block_size = 4;
    opts.max_seqs = N;
    opts.step_tokens = 13; /* chunks end inside blocks */
    opts.prefix_sharing = 0;
    run(cfg, fg_model_weights(m), &opts, specs, N, off);
    opts.prefix_sharing = 1;
    const fg_scheduler_stats st = run(cfg, fg_model_weights(m), &opts, specs, N, on);
    for (int i = 0; i < N; i++) assert_same_tokens(&on[i], &off[i], "sharing on vs off", i);
    cr_assert_gt(st.shared_tokens, 0u);
    fg_model_destroy(m);
}

/* The scheduler's greedy tokens are a plain fg_session's on the reference
 * (both compute fg_ref_forward's bits), with fg_generate's stop rules: a
 * stop id ends without being passed on, max_tokens, and a full context
 * after the token that could not be fed back. */
Test(scheduler, ends_like_a_session_on_ref)
{
    fg_model *m = stories();
    const fg_config *cfg = fg_model_config(m);
    const fg_weights *w = fg_model_weights(m);
    enum { CTX = 40 };
    fg_session *sess;
    fg_sampler *greedy;
    fg_sampler_config sc = fg_sampler_defaults();
    sc.temperature = 0.0f;
    ok(fg_session_create(&sess, cfg, w, FG_DEVICE_REF, CTX), "session");
    ok(fg_sampler_create(&greedy, cfg->vocab_size, &sc), "sampler");
    req_spec sp = {.prompt = {1, 403, 407}, .n_prompt = 3, .sampling = sc, .max_tokens = 100,
                   .cancel_at = -1, .cancel_after = -1};
    int want[CTX + 1], n_want = 0;
    uint64_t want_hash[CTX + 1];
    ok(fg_session_forward(sess, sp.prompt, 3, NULL), "prefill");
    for (;;) {
        ok(fg_sampler_sample(greedy, fg_session_logits(sess), &want[n_want]), "sample");
        want_hash[n_want] =
            hash_bytes(fg_session_logits(sess), sizeof(float) * (size_t)cfg->vocab_size);
        if (fg_session_len(sess) == CTX) break;
        ok(fg_session_forward(sess, &want[n_want++], 1, NULL), "decode");
    }
    n_want++;
    fg_scheduler_config opts = fg_scheduler_defaults();
    opts.device = FG_DEVICE_REF;
    opts.ctx = CTX;
    req_out out, out2;
    run(cfg, w, &opts, &sp, 1, &out);
    cr_assert_eq(out.reason, FG_STOP_CONTEXT_FULL);
    cr_assert_eq(out.n, CTX - 3 + 1);
    cr_assert_eq(n_want, out.n);
    fgi_assert_same(out.tokens, want, sizeof(int) * (size_t)n_want, "greedy tokens");
    fgi_assert_same(out.logit_hash, want_hash, sizeof(uint64_t) * (size_t)n_want,
                    "the bits of every token's logits");

    /* a stop id that occurs: ends before its first occurrence */
    req_spec stop = sp;
    stop.stop_ids[0] = out.tokens[5];
    stop.stop_ids[1] = cfg->vocab_size - 1;
    stop.n_stop = 2;
    run(cfg, w, &opts, &stop, 1, &out2);
    cr_assert_eq(out2.reason, FG_STOP_EOS);
    int first = 0;
    while (out.tokens[first] != out.tokens[5] && out.tokens[first] != cfg->vocab_size - 1) first++;
    cr_assert_eq(out2.n, first);
    fgi_assert_same(out2.tokens, out.tokens, sizeof(int) * (size_t)first, "stop id prefix");
    req_spec few = sp;
    few.max_tokens = 7;
    run(cfg, w, &opts, &few, 1, &out2);
    cr_assert_eq(out2.reason, FG_STOP_MAX_TOKENS);
    cr_assert_eq(out2.n, 7);
    fgi_assert_same(out2.tokens, out.tokens, sizeof(int) * 7, "max_tokens prefix");
    fg_sampler_destroy(greedy);
    fg_session_destroy(sess);
    fg_model_destroy(m);
}

/* Cancellations at random steps, through the API and from on_token; the
 * others are untouched. */
static void cancellations(fg_device device, uint64_t stream)
{
    const int cuda = device == FG_DEVICE_CUDA;
    fgi_rng rng = fgi_rng_make(stream);
    fg_model *m = stories();
    const fg_config *cfg = fg_model_config(m);
    const fg_weights *w = fg_model_weights(m);
    enum { N = 24 };
    static req_spec specs[N];
    static req_out outs[N], ref[N];
    random_specs(specs, N, cfg->vocab_size, 40, 60, 10, &rng);
    fg_scheduler_config opts = fg_scheduler_defaults();
    opts.device = device;
    opts.n_threads = 2;
    opts.ctx = 128;
    opts.block_size = cuda ? 16 : 8;
    opts.n_blocks = cuda ? 40 : 80;
    opts.max_seqs = 12;
    opts.step_tokens = 48;
    run(cfg, w, &opts, specs, N, ref);
    int cancelled = 0;
    for (int i = 0; i < N; i++) {
        const int kind = fgi_rng_int(&rng, 0, 2);
        if (kind == 0) specs[i].cancel_at = specs[i].arrive + fgi_rng_int(&rng, 0, 20);
        if (kind == 1) specs[i].cancel_after = fgi_rng_int(&rng, 1, 10);
    }
    specs[0].cancel_at = specs[0].arrive; /* before it ever ran */
    specs[0].cancel_after = -1;
    run(cfg, w, &opts, specs, N, outs);
    for (int i = 0; i < N; i++) {
        const req_spec *sp = &specs[i];
        if (outs[i].reason == FG_STOP_CANCELLED) {
            cancelled++;
            cr_assert(sp->cancel_at >= 0 || sp->cancel_after >= 0);
            cr_assert_leq(outs[i].n, ref[i].n);
            fgi_assert_same(outs[i].tokens, ref[i].tokens, sizeof(int) * (size_t)outs[i].n,
                            "tokens before the cancellation");
            fgi_assert_same(outs[i].logit_hash, ref[i].logit_hash,
                            sizeof(uint64_t) * (size_t)outs[i].n, "logits before it");
            if (sp->cancel_after >= 0) cr_assert_eq(outs[i].n, sp->cancel_after);
        } else {
            assert_same_tokens(&outs[i], &ref[i], "not cancelled", i);
        }
    }
    cr_assert_eq(outs[0].reason, FG_STOP_CANCELLED);
    cr_assert_eq(outs[0].n, 0);
    cr_assert_gt(cancelled, 1);
    fg_model_destroy(m);
}

Test(scheduler, cancellations) { cancellations(FG_DEVICE_CPU, 3); }
Test(scheduler, cancellations_on_cuda)
{
    fgi_require_gpu();
    cancellations(FG_DEVICE_CUDA, 6);
}

/* A small random model (tests/support/fixture), GPT-2 with learned
 * positions: the scheduler is not tied to one family. Tight pool, tiny
 * blocks, prompts up to the whole context. */
Test(scheduler, random_gpt2_model_tight_pool)
{
    fgi_rng rng = fgi_rng_make(4);
    const fg_config cfg = fgi_test_gpt2_config(2, 64, 4, 2, 0, 0, 97, 48);
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 0);
    enum { N = 16 };
    static req_spec specs[N];
    static req_out a[N], b[N];
    random_specs(specs, N, cfg.vocab_size, 48, 40, 8, &rng);
    fg_scheduler_config opts = fg_scheduler_defaults();
    opts.device = FG_DEVICE_CPU;
    opts.n_threads = 1;
    opts.block_size = 3;
    opts.n_blocks = 17; /* 51 tokens: one full context at a time */
    opts.max_seqs = 4;
    opts.step_tokens = 8;
    const fg_scheduler_stats st = run(&cfg, &tm.w, &opts, specs, N, a);
    cr_assert_eq(st.ctx, 48);
    opts.n_blocks = 0; /* roomy */
    opts.max_seqs = 16;
    opts.step_tokens = 500;
    run(&cfg, &tm.w, &opts, specs, N, b);
    for (int i = 0; i < N; i++) {
        assert_same_tokens(&a[i], &b[i], "tight vs roomy", i);
        cr_assert(a[i].reason == FG_STOP_MAX_TOKENS || a[i].reason == FG_STOP_CONTEXT_FULL);
    }
    fgi_test_model_free(&tm);
}

/* ---- threads ---------------------------------------------------------------------------- */

typedef struct {
    fg_scheduler *s;
    req_spec *specs;
    req_out *outs;
    int from, to;
    pthread_mutex_t *mu;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    for (int i = c->from; i < c->to; i++) {
        pthread_mutex_lock(c->mu);
        c->outs[i].spec = &c->specs[i];
        c->outs[i].mu = c->mu;
        fg_request q = make_request(&c->specs[i], &c->outs[i]);
        /* the id is written before any callback can read it: the lock is
         * held across the submit */
        const fg_status st = fg_scheduler_submit(c->s, &q, &c->outs[i].id);
        pthread_mutex_unlock(c->mu);
        if (st != FG_OK) return (void *)1;
        if (c->specs[i].cancel_at >= 0) fg_scheduler_cancel(c->s, c->outs[i].id);
    }
    return NULL;
}

Test(scheduler, submit_and_cancel_from_other_threads)
{
    fgi_rng rng = fgi_rng_make(5);
    fg_model *m = stories();
    const fg_config *cfg = fg_model_config(m);
    enum { N = 32, THREADS = 4 };
    static req_spec specs[N];
    static req_out outs[N];
    memset(outs, 0, sizeof outs);
    random_specs(specs, N, cfg->vocab_size, 30, 30, 0, &rng);
    for (int i = 0; i < N; i++) specs[i].cancel_at = fgi_rng_int(&rng, 0, 3) == 0 ? 0 : -1;
    fg_scheduler_config opts = fg_scheduler_defaults();
    opts.device = FG_DEVICE_CPU;
    opts.n_threads = 1;
    opts.ctx = 128;
    opts.n_blocks = 40;
    opts.block_size = 8;
    fg_scheduler *s;
    ok(fg_scheduler_create(&s, cfg, fg_model_weights(m), &opts), "create");
    g_vocab = cfg->vocab_size;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    client clients[THREADS];
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        clients[t] = (client){s, specs, outs, t * N / THREADS, (t + 1) * N / THREADS, &mu};
        cr_assert_eq(pthread_create(&th[t], NULL, client_main, &clients[t]), 0);
    }
    /* step until every request has finished */
    for (int spins = 0; spins < 1000000; spins++) {
        int busy, done = 0;
        ok(fg_scheduler_wait(s, 10, &busy), "wait");
        if (busy) ok(fg_scheduler_step(s, NULL), "step");
        pthread_mutex_lock(&mu);
        for (int i = 0; i < N; i++) done += outs[i].finished;
        pthread_mutex_unlock(&mu);
        if (done == N) break;
    }
    for (int t = 0; t < THREADS; t++) {
        void *rv;
        pthread_join(th[t], &rv);
        cr_assert_null(rv, "a client's submit failed");
    }
    fg_scheduler_stats st;
    ok(fg_scheduler_stats_get(s, &st), "stats");
    cr_assert_eq(st.blocks_used, 0);
    cr_assert_eq(st.finished, (uint64_t)N);
    int busy = 1;
    ok(fg_scheduler_wait(s, 0, &busy), "wait");
    cr_assert_eq(busy, 0);
    fg_scheduler_destroy(s);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(outs[i].finished, 1);
        if (specs[i].cancel_at < 0) cr_assert_neq(outs[i].reason, FG_STOP_CANCELLED);
    }
    fg_model_destroy(m);
}

/* destroy ends what is left, once each, as cancelled */
Test(scheduler, destroy_cancels_what_is_left)
{
    fgi_rng rng = fgi_rng_make(6);
    fg_model *m = stories();
    const fg_config *cfg = fg_model_config(m);
    enum { N = 6 };
    static req_spec specs[N];
    static req_out outs[N];
    memset(outs, 0, sizeof outs);
    random_specs(specs, N, cfg->vocab_size, 20, 50, 0, &rng);
    fg_scheduler_config opts = fg_scheduler_defaults();
    opts.device = FG_DEVICE_CPU;
    opts.n_threads = 1;
    opts.max_seqs = 3;
    fg_scheduler *s;
    ok(fg_scheduler_create(&s, cfg, fg_model_weights(m), &opts), "create");
    g_vocab = cfg->vocab_size;
    for (int i = 0; i < N; i++) {
        specs[i].max_tokens = 50;
        outs[i].spec = &specs[i];
        fg_request q = make_request(&specs[i], &outs[i]);
        ok(fg_scheduler_submit(s, &q, &outs[i].id), "submit");
    }
    ok(fg_scheduler_step(s, NULL), "step");
    ok(fg_scheduler_step(s, NULL), "step");
    fg_scheduler_destroy(s);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(outs[i].finished, 1);
        cr_assert_eq(outs[i].reason, FG_STOP_CANCELLED);
    }
    fg_model_destroy(m);
}

Test(scheduler, refuses_bad_arguments)
{
    fg_model *m = stories();
    const fg_config *cfg = fg_model_config(m);
    const fg_weights *w = fg_model_weights(m);
    fg_scheduler *s = NULL;
    fg_scheduler_config opts = fg_scheduler_defaults();
    fgi_assert_status(fg_scheduler_create(NULL, cfg, w, &opts), FG_ERR_INVALID_ARG, "sched");
    fgi_assert_status(fg_scheduler_create(&s, cfg, w, NULL), FG_ERR_INVALID_ARG, "opts");
    fgi_assert_status(fg_scheduler_create(&s, NULL, w, &opts), FG_ERR_INVALID_ARG, "config");
    struct {
        fg_scheduler_config o;
        fg_status st;
        const char *needle;
    } bad[10];
    for (int i = 0; i < 10; i++) bad[i].o = opts, bad[i].st = FG_ERR_INVALID_ARG;
    /* the GPU reads blocks of a multiple of 16 tokens; a build without CUDA
     * refuses the device itself; both before any device access */
    bad[0].o.device = FG_DEVICE_CUDA, bad[0].o.block_size = 4, bad[0].st = FG_ERR_UNSUPPORTED,
    bad[0].needle = "CUDA";
    bad[1].o.ctx = cfg->n_ctx + 1, bad[1].needle = "'ctx'";
    bad[2].o.block_size = 0, bad[2].needle = "'block_size'";
    bad[3].o.max_seqs = 0, bad[3].needle = "'max_seqs'";
    bad[4].o.step_tokens = opts.max_seqs - 1, bad[4].needle = "'step_tokens'";
    bad[5].o.n_blocks = -1, bad[5].needle = "'n_blocks'";
    bad[6].o.n_threads = -1, bad[6].needle = "'n_threads'";
    bad[7].o.device = (fg_device)99, bad[7].needle = "unknown device";
    /* 16-bit runs on the GPU only */
    bad[8].o.device = FG_DEVICE_CPU, bad[8].o.dtype = FG_DTYPE_BF16, bad[8].st = FG_ERR_UNSUPPORTED,
    bad[8].needle = "cuda device only";
    bad[9].o.dtype = (fg_dtype)77, bad[9].needle = "'dtype'";
    for (int i = 0; i < 10; i++) {
        fgi_assert_status(fg_scheduler_create(&s, cfg, w, &bad[i].o), bad[i].st, bad[i].needle);
        cr_assert_null(s);
    }
    opts.ctx = 32;
    opts.n_threads = 1;
    ok(fg_scheduler_create(&s, cfg, w, &opts), "create");
    g_vocab = cfg->vocab_size;
    int prompt[40] = {1, 2, 3};
    req_spec sp = {.n_prompt = 3, .max_tokens = 5, .cancel_at = -1, .cancel_after = -1};
    req_out o;
    memset(&o, 0, sizeof o);
    o.spec = &sp;
    fg_request good = {.prompt = prompt, .n_prompt = 3, .sampling = fg_sampler_defaults(),
                       .max_tokens = 5, .on_token = on_token, .on_finish = on_finish, .user = &o};
    uint64_t id = 0;
    fg_request q = good;
    fgi_assert_status(fg_scheduler_submit(NULL, &q, &id), FG_ERR_INVALID_ARG, "sched");
    fgi_assert_status(fg_scheduler_submit(s, NULL, &id), FG_ERR_INVALID_ARG, "req");
    fgi_assert_status(fg_scheduler_submit(s, &q, NULL), FG_ERR_INVALID_ARG, "id");
    q.n_prompt = 0;
    fgi_assert_status(fg_scheduler_submit(s, &q, &id), FG_ERR_INVALID_ARG, "1 .. 32 tokens");
    q.n_prompt = 33;
    fgi_assert_status(fg_scheduler_submit(s, &q, &id), FG_ERR_INVALID_ARG, "1 .. 32 tokens");
    q = good, q.prompt = NULL;
    fgi_assert_status(fg_scheduler_submit(s, &q, &id), FG_ERR_INVALID_ARG, "prompt");
    q = good, prompt[1] = cfg->vocab_size;
    fgi_assert_status(fg_scheduler_submit(s, &q, &id), FG_ERR_INVALID_ARG, "prompt[1]");
    prompt[1] = -1;
    fgi_assert_status(fg_scheduler_submit(s, &q, &id), FG_ERR_INVALID_ARG, "prompt[1]");
    prompt[1] = 2;
    q.max_tokens = 0;
    fgi_assert_status(fg_scheduler_submit(s, &q, &id), FG_ERR_INVALID_ARG, "max_tokens");
    q = good, q.n_stop_ids = 2;
    fgi_assert_status(fg_scheduler_submit(s, &q, &id), FG_ERR_INVALID_ARG, "stop_ids");
    q = good, q.sampling.temperature = -1.0f;
    fgi_assert_status(fg_scheduler_submit(s, &q, &id), FG_ERR_INVALID_ARG, "temperature");
    cr_assert_eq(id, 0u, "no id for a refused request");
    fgi_assert_status(fg_scheduler_cancel(s, 12345), FG_ERR_INVALID_ARG, "no request 12345");
    fgi_assert_status(fg_scheduler_step(NULL, NULL), FG_ERR_INVALID_ARG, "sched");
    fg_scheduler_stats st;
    fgi_assert_status(fg_scheduler_stats_get(s, NULL), FG_ERR_INVALID_ARG, "stats");
    ok(fg_scheduler_stats_get(s, &st), "stats");
    cr_assert_eq(st.waiting + st.running, 0, "refused requests leave no trace");
    ok(fg_scheduler_submit(s, &good, &id), "the good request");
    cr_assert_eq(id, 1u);
    o.id = id;
    int busy = 1;
    while (busy) ok(fg_scheduler_step(s, &busy), "step");
    cr_assert_eq(o.finished, 1);
    fgi_assert_status(fg_scheduler_cancel(s, id), FG_ERR_INVALID_ARG, "finished");
    fg_scheduler_destroy(s);
    fg_scheduler_destroy(NULL);
    fg_model_destroy(m);
}
