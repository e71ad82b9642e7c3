/* The GPU decoder against the CPU reference decoder (docs/contract.md §16-§18): the same
 * random in-memory model (tests/support/fixture.h) on both paths, a prefill then
 * decode steps and a short chunk, logits and probabilities compared at the
 * fp32 tolerance (docs/contract.md §32) after every call; GPT-2 with and without GQA, RoPE and
 * flash attention, Llama with GQA / MQA, tied and untied; the standalone
 * attention layer and block; fg_cuda_forward_last; refused inputs leave
 * the cache unchanged; runners sharing one weights object, caches taking
 * turns on one runner (one graph capture each) and caches created after
 * one was destroyed. After every call the device KV cache is read back
 * and held to the reference cache (what the fused bias + RoPE + append
 * kernel stored, which the logits alone cannot show).
 *
 * GPU tests call fgi_require_gpu() first and show as skipped without a GPU.
 * Argument tests need no device and run in every build: FG_ERR_INVALID_ARG
 * from a CUDA build (with or without a GPU), FG_ERR_UNSUPPORTED from a build
 * without CUDA. Head dims are ones the attention kernels support (32, 64,
 * 80, 96, 128).
 *
 * FG_TEST_QUICK=1 (scripts/gpu-check's compute-sanitizer runs, the emulated
 * CI stage) keeps 5 of the 10 models (both families, MHA / GQA / MQA,
 * learned positions and RoPE, flash tiles 7, 32 and 64, tied and untied,
 * d 32 to 128) and shorter call sequences. */
#include "fixture.h"
#include "gpu_support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATOL 1e-4
#define RTOL 1e-4
#define L2 1e-5

static void ok(fg_status st, const char *what)
{
    cr_assert(st == FG_OK, "%s: %s: %s (seed %llu)", what, fg_status_str(st),
              fg_last_error(), (unsigned long long)fgi_test_seed());
}

/* A cache shaped for cfg. */
static fg_status cache_create(fg_cuda_kv_cache **cache, const fg_config *cfg, int capacity)
{
    return fg_cuda_kv_cache_create(cache, cfg->n_layer, cfg->n_kv_head, fg_config_head_dim(cfg),
                                   capacity);
}

/* Weights uploaded and one runner on the legacy stream. */
static void open_runner(fg_cuda_weights **weights, fg_cuda_runner **runner, const fg_config *cfg,
                        const fg_weights *w, int max_tokens, const char *what)
{
    ok(fg_cuda_weights_create(weights, cfg, w), what);
    ok(fg_cuda_runner_create(runner, *weights, max_tokens, 0), what);
}

static void close_runner(fg_cuda_weights *weights, fg_cuda_runner *runner)
{
    fg_cuda_runner_destroy(runner);
    fg_cuda_weights_destroy(weights);
}

typedef struct {
    const char *name;
    fg_config cfg;
    int untied;
} decoder_case;

static int make_cases(decoder_case *cases)
{
    int n = 0;
    cases[n++] = (decoder_case){"gpt2 MHA, learned positions, d 32",
                                fgi_test_gpt2_config(2, 64, 2, 2, 0, 0, 101, 40), 0};
    cases[n++] = (decoder_case){"gpt2 GQA 4/2 + RoPE, d 32", fgi_test_gpt2_config(2, 128, 4, 2, 1, 0, 97, 40), 0};
    cases[n++] = (decoder_case){"gpt2 MHA, flash block 16, d 64",
                                fgi_test_gpt2_config(2, 128, 2, 2, 0, 16, 113, 40), 0};
    cases[n++] = (decoder_case){"gpt2 MQA + RoPE, flash block 7, d 32",
                                fgi_test_gpt2_config(2, 128, 4, 1, 1, 7, 89, 40), 0};
    cases[n++] = (decoder_case){"gpt2 GQA 2/1 + RoPE, flash block 64, d 128",
                                fgi_test_gpt2_config(2, 256, 2, 1, 1, 64, 131, 40), 0};
    cases[n++] = (decoder_case){"gpt2 MHA, d 80", fgi_test_gpt2_config(2, 160, 2, 2, 0, 0, 79, 40), 0};
    cases[n++] = (decoder_case){"llama GQA 4/2, tied, d 32",
                                fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64), 0};
    cases[n++] = (decoder_case){"llama GQA 8/2, untied, d 32",
                                fgi_test_llama_config(2, 256, 8, 2, 344, 0, 257, 64), 1};
    cases[n++] = (decoder_case){"llama MQA, untied, d 64", fgi_test_llama_config(3, 256, 4, 1, 300, 0, 97, 64), 1};
    cases[n++] = (decoder_case){"llama GQA 2/1, flash block 32, d 96",
                                fgi_test_llama_config(2, 192, 2, 1, 500, 32, 103, 64), 0};
    /* sliding windows: a short one from layer 1 on (Qwen2's layout), and
     * one whose lower edge crosses key tiles and decode splits */
    fg_config win = fgi_test_llama_config(3, 128, 4, 2, 200, 0, 131, 64);
    win.sliding_window = 5;
    win.window_first_layer = 1;
    cases[n++] = (decoder_case){"llama GQA 4/2, window 5 from layer 1, d 32", win, 1};
    win = fgi_test_gpt2_config(2, 128, 4, 1, 1, 16, 89, 64);
    win.sliding_window = 40;
    cases[n++] = (decoder_case){"gpt2 MQA + RoPE, window 40, flash block 16, d 32", win, 0};
    /* scaled RoPE (the inverse frequencies uploaded as a table): Llama
     * 3.1's factors with original context 32, so that at d 32 pair 0 is
     * kept, pair 1 blended and the rest divided; and linear, factor 2.5 */
    fg_config scaled = fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64);
    scaled.rope_base = 500000.0;
    scaled.rope_scaling = FG_ROPE_LLAMA3;
    scaled.rope_factor = 8.0;
    scaled.rope_low_freq_factor = 1.0;
    scaled.rope_high_freq_factor = 4.0;
    scaled.rope_original_ctx = 32;
    cases[n++] = (decoder_case){"llama3-scaled RoPE, d 32", scaled, 1};
    scaled.rope_scaling = FG_ROPE_LINEAR;
    scaled.rope_factor = 2.5;
    cases[n++] = (decoder_case){"linear-scaled RoPE, d 32", scaled, 0};
    /* head_dim set apart from n_embd / n_head: 48-wide heads on C 128
     * (decode and generic kernels), 64-wide on C 96 (the mma kernel) */
    fg_config hd = fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64);
    hd.head_dim = 48;
    cases[n++] = (decoder_case){"llama GQA 4/2, head_dim 48 (C 128)", hd, 1};
    hd = fgi_test_gpt2_config(2, 96, 2, 1, 1, 0, 89, 64);
    hd.head_dim = 64;
    cases[n++] = (decoder_case){"gpt2 GQA 2/1 + RoPE, head_dim 64 (C 96)", hd, 0};
    if (fgi_test_quick()) {
        static const int keep[] = {0, 3, 4, 7, 9, 10, 11, 12, 14}; /* increasing: copies never clobber */
        n = (int)(sizeof keep / sizeof *keep);
        for (int k = 0; k < n; k++) cases[k] = cases[keep[k]];
    }
    return n;
}

/* What the fused "bias + RoPE + append" kernel left in every layer of the
 * device cache, held to the reference cache row by row (the cached tokens
 * of each KV head; rows past them are not part of the contract). The
 * logits alone cannot see a key rotated one position too far together
 * with its query (scores depend on relative position only), and any other
 * reader of the cache would get it wrong. */
static void expect_cache_matches(const fg_cuda_kv_cache *cache, const fg_kv_cache *ref_cache,
                                 const char *what)
{
    /* The two caches may differ in capacity (the row stride of a kv head). */
    const int n_kv = ref_cache->n_kv_head, d = ref_cache->head_dim, cap = ref_cache->capacity;
    const int gcap = fg_cuda_kv_cache_capacity(cache);
    const size_t n = (size_t)n_kv * gcap * d;
    float *k = fgi_buf_nan(n), *v = fgi_buf_nan(n);
    for (int l = 0; l < ref_cache->n_layer; l++) {
        ok(fgi_cuda_kv_cache_read(cache, l, k, v), what);
        const int len = ref_cache->layers[l].len;
        for (int g = 0; g < n_kv; g++) {
            const size_t at = (size_t)g * gcap * d, ref_at = (size_t)g * cap * d;
            const size_t rows = (size_t)len * d;
            char w[300];
            snprintf(w, sizeof w, "%s: cached keys of layer %d, kv head %d", what, l, g);
            fgi_assert_close(k + at, ref_cache->layers[l].k + ref_at, rows, ATOL, RTOL, L2, w);
            snprintf(w, sizeof w, "%s: cached values of layer %d, kv head %d", what, l, g);
            fgi_assert_close(v + at, ref_cache->layers[l].v + ref_at, rows, ATOL, RTOL, L2, w);
        }
    }
    fgi_buf_free(k), fgi_buf_free(v);
}

/* Runs the chunks (token counts) through both decoders, comparing every
 * call; with last_only through fg_*_forward_last (the last row's logits). */
static void compare_forwards(const decoder_case *c, fgi_rng *rng, const int *chunks,
                             int n_chunks, int max_tokens, int capacity, int last_only)
{
    const fg_config *cfg = &c->cfg;
    const int V = cfg->vocab_size;
    fgi_test_model tm;
    fgi_test_model_init(&tm, cfg, rng, c->untied);
    fg_kv_cache *ref_cache;
    fg_cuda_weights *weights;
    fg_cuda_runner *runner;
    fg_cuda_kv_cache *cache;
    ok(fg_kv_cache_create(&ref_cache, cfg, capacity), "reference cache");
    open_runner(&weights, &runner, cfg, &tm.w, max_tokens, c->name);
    ok(cache_create(&cache, cfg, capacity), c->name);
    cr_assert_eq(fg_cuda_kv_cache_capacity(cache), capacity);
    for (int k = 0; k < n_chunks; k++) {
        const int T = chunks[k], with_probs = !last_only && k % 2 == 0;
        const size_t n = (size_t)(last_only ? 1 : T) * V;
        int ids[64];
        fgi_test_random_ids(ids, T, V, rng);
        float *ref_logits = fgi_buf_nan(n), *ref_probs = fgi_buf_nan(n);
        float *logits = fgi_buf_nan(n), *probs = fgi_buf_nan(n);
        char what[200];
        snprintf(what, sizeof what, "%s: %s call %d (T %d after %d cached)", c->name,
                 last_only ? "forward_last" : "forward", k, T, fg_cuda_kv_cache_len(cache, 0));
        if (last_only) {
            ok(fg_ref_forward_last(ref_logits, cfg, &tm.w, ref_cache, ids, T), "reference");
            ok(fg_cuda_forward_last(logits, runner, cache, ids, T), what);
        } else {
            ok(fg_ref_forward(ref_logits, ref_probs, cfg, &tm.w, ref_cache, ids, T), "reference");
            ok(fg_cuda_forward(logits, with_probs ? probs : NULL, runner, cache, ids, T), what);
        }
        fgi_assert_guard(logits, n, what);
        fgi_assert_guard(probs, n, what);
        fgi_assert_close(logits, ref_logits, n, ATOL, RTOL, L2, what);
        if (with_probs) {
            /* probs = softmax(logits), held to the reference softmax of the GPU's own
             * logits: with |logits| ~ 20, an fp32 logit error of 1e-6 relative (checked
             * above) alone moves the probabilities by up to ~1e-5 relative L2. */
            char what_p[240];
            snprintf(what_p, sizeof what_p, "%s: probs", what);
            ok(fg_ref_softmax(ref_probs, logits, T, V, 1), "reference softmax");
            fgi_assert_close(probs, ref_probs, n, ATOL, RTOL, L2, what_p);
        }
        for (int l = 0; l < cfg->n_layer; l++)
            cr_assert_eq(fg_cuda_kv_cache_len(cache, l), ref_cache->layers[l].len,
                         "%s: layer %d holds %d tokens, reference %d", what, l,
                         fg_cuda_kv_cache_len(cache, l), ref_cache->layers[l].len);
        expect_cache_matches(cache, ref_cache, what);
        fgi_buf_free(ref_logits), fgi_buf_free(ref_probs), fgi_buf_free(logits), fgi_buf_free(probs);
    }
    fg_cuda_kv_cache_destroy(cache);
    close_runner(weights, runner);
    fg_kv_cache_destroy(ref_cache);
    fgi_test_model_free(&tm);
}

Test(cuda_decoder, prefill_then_decode_matches_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(201);
    decoder_case cases[24];
    const int n_cases = make_cases(cases);
    const int chunks[] = {7, 1, 1, 1, 1, 3, 1, 8}, quick_chunks[] = {7, 1, 3, 1};
    for (int i = 0; i < n_cases; i++) {
        if (fgi_test_quick())
            compare_forwards(&cases[i], &rng, quick_chunks, 4, 8, 30, 0);
        else
            compare_forwards(&cases[i], &rng, chunks, (int)(sizeof chunks / sizeof *chunks), 8,
                             30, 0);
    }
}

Test(cuda_decoder, forward_last_matches_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(208);
    decoder_case cases[24];
    const int n_cases = make_cases(cases);
    const int chunks[] = {6, 1, 1, 4, 1};
    const int n_chunks = fgi_test_quick() ? 3 : (int)(sizeof chunks / sizeof *chunks);
    for (int i = 0; i < n_cases; i++)
        compare_forwards(&cases[i], &rng, chunks, n_chunks, 6, 20, 1);
}

/* T tokens through fg_*_forward_last on both paths (T = 1: a decode step,
 * which the GPU runs through its graph), the last row's logits compared. */
static void forward_last_both(const decoder_case *c, const fgi_test_model *tm,
                              fg_kv_cache *ref_cache, fg_cuda_runner *runner,
                              fg_cuda_kv_cache *cache, fgi_rng *rng, int T, const char *label)
{
    const int V = c->cfg.vocab_size;
    int ids[64];
    cr_assert(T <= 64);
    fgi_test_random_ids(ids, T, V, rng);
    float *ref = fgi_buf_nan((size_t)V), *got = fgi_buf_nan((size_t)V);
    char what[200];
    snprintf(what, sizeof what, "%s: %s, %d tokens at position %d", c->name, label, T,
             fg_cuda_kv_cache_len(cache, 0));
    ok(fg_ref_forward_last(ref, &c->cfg, &tm->w, ref_cache, ids, T), "reference");
    ok(fg_cuda_forward_last(got, runner, cache, ids, T), what);
    fgi_assert_guard(got, (size_t)V, what);
    fgi_assert_close(got, ref, (size_t)V, ATOL, RTOL, L2, what);
    expect_cache_matches(cache, ref_cache, what);
    fgi_buf_free(ref), fgi_buf_free(got);
}

/* Decode steps replay a captured CUDA graph whose kernels read the token,
 * position and key count from device memory: every step must still match
 * the reference as the key count grows past split boundaries, with two
 * caches taking turns on one runner (each keeps its own graph) and after a
 * reset. Where the decode kernel serves the shape (head_dim % 4 == 0, group
 * <= 16: every case here) the steps must really have gone through it. */
Test(cuda_decoder, decode_steps_through_the_graph_match_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(209);
    decoder_case cases[24];
    const int n_cases = make_cases(cases);
    for (int i = 0; i < n_cases; i++) {
        /* 80 positions at least, so that the steps cross the 32- and 64-key
         * split edges and reach a third split in quick mode too: a long
         * prefill (58 tokens) there, then steps from 59 to 67 keys. */
        decoder_case cc = cases[i];
        if (cc.cfg.n_ctx < 80) cc.cfg.n_ctx = 80;
        const decoder_case *c = &cc;
        /* Positions stay below n_ctx; a 512-token cache makes the captured
         * plan split the keys in four (at least 128 keys each at capture),
         * which at run time are 32-key multiples: 3 non-empty splits at 65
         * keys and more (merged by the decode kernel's counters, which
         * every replay must leave at zero). */
        const int cap = 512, steps = fgi_test_quick() ? 6 : c->cfg.n_ctx - 8;
        const int prefill = fgi_test_quick() ? 58 : 3;
        fgi_test_model tm;
        fgi_test_model_init(&tm, &c->cfg, &rng, c->untied);
        fg_kv_cache *ref_a, *ref_b;
        fg_cuda_weights *weights;
        fg_cuda_runner *runner;
        fg_cuda_kv_cache *a, *b;
        ok(fg_kv_cache_create(&ref_a, &c->cfg, cap), "reference cache");
        ok(fg_kv_cache_create(&ref_b, &c->cfg, cap), "reference cache");
        open_runner(&weights, &runner, &c->cfg, &tm.w, prefill, c->name);
        ok(cache_create(&a, &c->cfg, cap), c->name);
        ok(cache_create(&b, &c->cfg, cap / 2), c->name);

        forward_last_both(c, &tm, ref_a, runner, a, &rng, prefill, "cache A prefill");
        for (int k = 0; k < steps; k++)
            forward_last_both(c, &tm, ref_a, runner, a, &rng, 1, "cache A");
        forward_last_both(c, &tm, ref_b, runner, b, &rng, 2, "cache B prefill");
        for (int k = 0; k < 3; k++) {
            forward_last_both(c, &tm, ref_b, runner, b, &rng, 1, "cache B");
            forward_last_both(c, &tm, ref_a, runner, a, &rng, 1, "cache A again");
        }
        ok(fg_cuda_kv_cache_reset(a), "reset");
        ok(fg_kv_cache_reset(ref_a), "reference reset");
        for (int k = 0; k < 2; k++)
            forward_last_both(c, &tm, ref_a, runner, a, &rng, 1, "cache A after reset");

        /* cache A: the steps, 3 turns, and the one-token prefill and step after the reset */
        cr_assert_eq(fgi_cuda_kv_cache_graph_steps(a), steps + 5,
                     "%s: %lld of %d steps of cache A ran through the graph", c->name,
                     fgi_cuda_kv_cache_graph_steps(a), steps + 5);
        cr_assert_eq(fgi_cuda_kv_cache_graph_steps(b), 3, "%s: cache B's graph steps", c->name);
        fg_cuda_kv_cache_destroy(a), fg_cuda_kv_cache_destroy(b);
        close_runner(weights, runner);
        fg_kv_cache_destroy(ref_a), fg_kv_cache_destroy(ref_b);
        fgi_test_model_free(&tm);
    }
}

/* One token per call from the start, and one long prefill (T = max_tokens). */
Test(cuda_decoder, single_tokens_and_long_prefill_match_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(202);
    decoder_case cases[24];
    const int n_cases = make_cases(cases);
    const int singles[] = {1, 1, 1, 1, 1, 1};
    const int long_prefill[] = {37, 1, 2};
    for (int i = 0; i < n_cases; i += 2)
        compare_forwards(&cases[i], &rng, singles, fgi_test_quick() ? 3 : 6, 4, 6, 0);
    for (int i = 1; i < n_cases; i += 2)
        compare_forwards(&cases[i], &rng, long_prefill, 3, 37, 40, 0);
}

/* Prefilling T tokens at once and feeding them one at a time agree on the GPU. */
Test(cuda_decoder, prefill_equals_incremental)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(203);
    decoder_case cases[24];
    const int n_cases = make_cases(cases);
    for (int i = 0; i < n_cases; i++) {
        const fg_config *cfg = &cases[i].cfg;
        const int T = 9, V = cfg->vocab_size;
        fgi_test_model tm;
        fgi_test_model_init(&tm, cfg, &rng, cases[i].untied);
        fg_cuda_weights *weights;
        fg_cuda_runner *runner;
        fg_cuda_kv_cache *all, *one;
        open_runner(&weights, &runner, cfg, &tm.w, T, cases[i].name);
        ok(cache_create(&all, cfg, T), "cache");
        ok(cache_create(&one, cfg, T), "cache");
        int ids[9];
        fgi_test_random_ids(ids, T, V, &rng);
        float *prefill = fgi_buf_nan((size_t)T * V), *step = fgi_buf_nan((size_t)T * V);
        ok(fg_cuda_forward(prefill, NULL, runner, all, ids, T), cases[i].name);
        for (int t = 0; t < T; t++)
            ok(fg_cuda_forward(step + (size_t)t * V, NULL, runner, one, ids + t, 1),
               cases[i].name);
        char what[160];
        snprintf(what, sizeof what, "%s: prefill vs one token at a time", cases[i].name);
        fgi_assert_close(step, prefill, (size_t)T * V, ATOL, RTOL, L2, what);
        fgi_buf_free(prefill), fgi_buf_free(step);
        fg_cuda_kv_cache_destroy(all), fg_cuda_kv_cache_destroy(one);
        close_runner(weights, runner);
        fgi_test_model_free(&tm);
    }
}

/* The standalone attention layer and block on device activations, against
 * fg_ref_attention_layer / fg_ref_block, over several calls per layer. */
Test(cuda_decoder, attention_layer_and_block_match_reference)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(204);
    decoder_case cases[24];
    const int n_cases = make_cases(cases);
    const int chunks[] = {5, 1, 3, 1};
    for (int i = 0; i < n_cases; i++) {
        const fg_config *cfg = &cases[i].cfg;
        const int C = cfg->n_embd, layer = cfg->n_layer - 1;
        fgi_test_model tm;
        fgi_test_model_init(&tm, cfg, &rng, cases[i].untied);
        fg_kv_cache *ref_cache;
        fg_cuda_weights *weights;
        fg_cuda_runner *runner;
        fg_cuda_kv_cache *cache;
        ok(fg_kv_cache_create(&ref_cache, cfg, 12), "reference cache");
        open_runner(&weights, &runner, cfg, &tm.w, 5, cases[i].name);
        ok(cache_create(&cache, cfg, 12), "cache");
        for (int k = 0; k < 4; k++) {
            const int T = chunks[k], block = k % 2 == 1;
            const size_t n = (size_t)T * C;
            float *x = fgi_buf_normal(&rng, n, 1.0), *ref = fgi_buf_copy(x, n);
            float *dx = fgi_dev_upload(x, n);
            char what[200];
            snprintf(what, sizeof what, "%s: %s, layer %d, call %d (T %d)", cases[i].name,
                     block ? "block" : "attention layer", layer, k, T);
            if (block) {
                ok(fg_ref_block(ref, T, cfg, &tm.layers[layer], ref_cache, layer), "reference");
                ok(fg_cuda_block(dx, T, runner, cache, layer), what);
                ok(fg_cuda_synchronize(0), what);
                float *got = fgi_dev_download(dx, n);
                fgi_dev_assert_guard(dx, n, what);
                fgi_assert_close(got, ref, n, ATOL, RTOL, L2, what);
                fgi_buf_free(got);
            } else {
                float *dout = fgi_dev_poisoned(n);
                ok(fg_ref_attention_layer(ref, x, T, cfg, &tm.layers[layer], ref_cache, layer),
                   "reference");
                ok(fg_cuda_attention_layer(dout, dx, T, runner, cache, layer), what);
                ok(fg_cuda_synchronize(0), what);
                float *got = fgi_dev_download(dout, n);
                fgi_dev_assert_guard(dout, n, what);
                fgi_assert_close(got, ref, n, ATOL, RTOL, L2, what);
                fgi_buf_free(got);
                fgi_dev_free(dout);
            }
            cr_assert_eq(fg_cuda_kv_cache_len(cache, layer), ref_cache->layers[layer].len, "%s",
                         what);
            cr_assert_eq(fg_cuda_kv_cache_len(cache, 0), layer == 0 ? ref_cache->layers[0].len : 0,
                         "%s: only the given layer grows", what);
            fgi_dev_free(dx);
            fgi_buf_free(x), fgi_buf_free(ref);
        }
        fg_cuda_kv_cache_destroy(cache);
        close_runner(weights, runner);
        fg_kv_cache_destroy(ref_cache);
        fgi_test_model_free(&tm);
    }
}

/* Asserts every layer of the cache holds `len` tokens. */
static void expect_lengths(const fg_cuda_kv_cache *cache, int n_layer, int len, const char *what)
{
    for (int l = 0; l < n_layer; l++)
        cr_assert_eq(fg_cuda_kv_cache_len(cache, l), len, "%s: layer %d holds %d tokens, not %d",
                     what, l, fg_cuda_kv_cache_len(cache, l), len);
}

/* Every bad-input class is refused, writes nothing and leaves the cache as
 * it was; later calls still agree with the reference. */
Test(cuda_decoder, refused_inputs_leave_the_cache_unchanged)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(205);
    const fg_config cfg = fgi_test_gpt2_config(2, 64, 2, 2, 0, 0, 53, 12);
    const int V = cfg.vocab_size, max_tokens = 6;
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 0);
    fg_kv_cache *ref_cache;
    fg_cuda_weights *weights;
    fg_cuda_runner *runner;
    fg_cuda_kv_cache *cache, *other;
    ok(fg_kv_cache_create(&ref_cache, &cfg, 16), "reference cache");
    open_runner(&weights, &runner, &cfg, &tm.w, max_tokens, "runner");
    ok(cache_create(&cache, &cfg, 16), "cache");
    fg_config other_cfg = cfg;
    other_cfg.n_layer = 3;
    ok(cache_create(&other, &other_cfg, 16), "mismatched cache");

    int ids[8];
    float *logits = fgi_buf_normal(&rng, (size_t)8 * V, 1.0), *ref = fgi_buf_nan((size_t)8 * V);
    float *before = fgi_buf_copy(logits, (size_t)8 * V);
    fgi_test_random_ids(ids, 8, V, &rng);
    float *act = fgi_buf_normal(&rng, (size_t)8 * cfg.n_embd, 1.0);
    float *dx = fgi_dev_upload(act, (size_t)8 * cfg.n_embd);

    /* 4 tokens cached, then the refusals */
    ok(fg_ref_forward(ref, NULL, &cfg, &tm.w, ref_cache, ids, 4), "reference");
    ok(fg_cuda_forward(logits, NULL, runner, cache, ids, 4), "prefill");
    fgi_assert_close(logits, ref, (size_t)4 * V, ATOL, RTOL, L2, "prefill");
    memcpy(before, logits, sizeof(float) * 8 * (size_t)V);

    ids[1] = V;
    fgi_assert_status(fg_cuda_forward(logits, NULL, runner, cache, ids, 3), FG_ERR_INVALID_ARG,
                     "outside the vocabulary");
    ids[1] = -1;
    fgi_assert_status(fg_cuda_forward(logits, NULL, runner, cache, ids, 3), FG_ERR_INVALID_ARG,
                     "ids[1] = -1");
    fgi_test_random_ids(ids, 8, V, &rng);
    fgi_assert_status(fg_cuda_forward(logits, NULL, runner, cache, ids, max_tokens + 1),
                     FG_ERR_INVALID_ARG, "max_tokens");
    fgi_assert_status(fg_cuda_forward(logits, NULL, runner, cache, ids, 0), FG_ERR_INVALID_ARG, "'T'");
    fgi_assert_status(fg_cuda_forward(NULL, NULL, runner, cache, ids, 2), FG_ERR_INVALID_ARG,
                     "'logits' is NULL");
    fgi_assert_status(fg_cuda_forward(logits, NULL, runner, cache, NULL, 2), FG_ERR_INVALID_ARG,
                     "'ids' is NULL");
    fgi_assert_status(fg_cuda_forward(logits, logits + 1, runner, cache, ids, 2),
                     FG_ERR_INVALID_ARG, "overlap");
    fgi_assert_status(fg_cuda_forward(logits, NULL, runner, NULL, ids, 2), FG_ERR_INVALID_ARG,
                     "'cache' is NULL");
    fgi_assert_status(fg_cuda_forward(logits, NULL, runner, other, ids, 2), FG_ERR_INVALID_ARG,
                     "does not match");
    fgi_assert_status(fg_cuda_forward_last(NULL, runner, cache, ids, 2), FG_ERR_INVALID_ARG,
                     "'logits' is NULL");
    fgi_assert_status(fg_cuda_forward_last(logits, runner, cache, ids, max_tokens + 1),
                     FG_ERR_INVALID_ARG, "max_tokens");
    fgi_assert_status(fg_cuda_attention_layer(dx, dx, 2, runner, cache, 2), FG_ERR_INVALID_ARG,
                     "'layer' must be < n_layer");
    fgi_assert_status(fg_cuda_attention_layer(dx, dx, 2, runner, cache, -1), FG_ERR_INVALID_ARG,
                     "'layer'");
    fgi_assert_status(fg_cuda_block(dx, max_tokens + 1, runner, cache, 0), FG_ERR_INVALID_ARG,
                     "max_tokens");
    fgi_assert_status(fg_cuda_block(NULL, 2, runner, cache, 0), FG_ERR_INVALID_ARG, "'x' is NULL");
    fgi_assert_status(fg_cuda_attention_layer(dx + 1, dx, 2, runner, cache, 0), FG_ERR_INVALID_ARG,
                     "overlap");
    expect_lengths(cache, cfg.n_layer, 4, "after refused calls");
    expect_lengths(other, other_cfg.n_layer, 0, "the mismatched cache");
    fgi_assert_same(logits, before, sizeof(float) * 8 * (size_t)V, "logits after refused calls");

    /* positions 4..9 are in the table; 10..12 would pass n_ctx = 12 */
    ok(fg_ref_forward(ref, NULL, &cfg, &tm.w, ref_cache, ids, 6), "reference");
    ok(fg_cuda_forward(logits, NULL, runner, cache, ids, 6), "after refusals");
    fgi_assert_close(logits, ref, (size_t)6 * V, ATOL, RTOL, L2, "forward after refused calls");
    memcpy(before, logits, sizeof(float) * 8 * (size_t)V);
    fgi_assert_status(fg_cuda_forward(logits, NULL, runner, cache, ids, 3), FG_ERR_INVALID_ARG,
                     "past the position table");
    expect_lengths(cache, cfg.n_layer, 10, "after a refused position");
    fgi_assert_same(logits, before, sizeof(float) * 8 * (size_t)V, "logits after refused position");

    /* capacity: a RoPE model has no position table, so only the cache limits it */
    fg_config rope_cfg = fgi_test_gpt2_config(2, 64, 2, 1, 1, 0, 53, 12);
    fgi_test_model rope_tm;
    fgi_test_model_init(&rope_tm, &rope_cfg, &rng, 0);
    fg_cuda_weights *rope_weights;
    fg_cuda_runner *rope_runner;
    fg_cuda_kv_cache *small;
    open_runner(&rope_weights, &rope_runner, &rope_cfg, &rope_tm.w, max_tokens, "rope runner");
    ok(cache_create(&small, &rope_cfg, 6), "small cache");
    ok(fg_cuda_forward(logits, NULL, rope_runner, small, ids, 4), "rope prefill");
    fgi_assert_status(fg_cuda_forward(logits, NULL, rope_runner, small, ids, 3), FG_ERR_INVALID_ARG,
                     "capacity exceeded");
    fgi_assert_status(fg_cuda_block(dx, 3, rope_runner, small, 1), FG_ERR_INVALID_ARG,
                     "capacity exceeded");
    expect_lengths(small, rope_cfg.n_layer, 4, "after a refused append");
    ok(fg_cuda_forward(logits, NULL, rope_runner, small, ids, 2), "filling the cache exactly");
    expect_lengths(small, rope_cfg.n_layer, 6, "full cache");
    ok(fg_cuda_kv_cache_reset(small), "reset");
    expect_lengths(small, rope_cfg.n_layer, 0, "after reset");

    fgi_dev_free(dx);
    fg_cuda_kv_cache_destroy(small);
    close_runner(rope_weights, rope_runner);
    fgi_test_model_free(&rope_tm);
    fg_cuda_kv_cache_destroy(other);
    fg_cuda_kv_cache_destroy(cache);
    close_runner(weights, runner);
    fg_kv_cache_destroy(ref_cache);
    fgi_test_model_free(&tm);
    fgi_buf_free(logits), fgi_buf_free(ref), fgi_buf_free(before), fgi_buf_free(act);
}

/* Weights, runners and caches as separate objects ------------------------------ */

/* fg_cuda_forward_last of `ids` (T) into a fresh poisoned buffer (vocab). */
static float *last_logits(fg_cuda_runner *runner, fg_cuda_kv_cache *cache, const int *ids, int T,
                          int V, const char *what)
{
    float *out = fgi_buf_nan((size_t)V);
    ok(fg_cuda_forward_last(out, runner, cache, ids, T), what);
    fgi_assert_guard(out, (size_t)V, what);
    return out;
}

/* Two runners reading one weights object, used in turn, compute exactly
 * what a runner with weights of its own computes (same kernels, same
 * inputs: bit for bit), prefill and graph steps alike; and the reference
 * agrees within tolerance. */
Test(cuda_decoder, runners_sharing_weights_match_a_lone_runner_bit_for_bit)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(210);
    decoder_case cases[24];
    const int n_cases = make_cases(cases);
    for (int i = 0; i < n_cases; i++) {
        const decoder_case *c = &cases[i];
        const int V = c->cfg.vocab_size, cap = 16, steps = fgi_test_quick() ? 3 : 6;
        fgi_test_model tm;
        fgi_test_model_init(&tm, &c->cfg, &rng, c->untied);
        fg_cuda_weights *shared, *own;
        fg_cuda_runner *r1, *r2, *lone;
        fg_cuda_kv_cache *c1, *c2, *c0;
        fg_kv_cache *ref_cache;
        ok(fg_kv_cache_create(&ref_cache, &c->cfg, cap), "reference cache");
        open_runner(&own, &lone, &c->cfg, &tm.w, 5, c->name);
        ok(fg_cuda_weights_create(&shared, &c->cfg, &tm.w), c->name);
        ok(fg_cuda_runner_create(&r1, shared, 5, 0), c->name);
        ok(fg_cuda_runner_create(&r2, shared, 5, 0), c->name);
        cr_assert(fg_cuda_weights_config(shared) != NULL &&
                  fg_cuda_weights_config(shared)->n_layer == c->cfg.n_layer);
        ok(cache_create(&c0, &c->cfg, cap), c->name);
        ok(cache_create(&c1, &c->cfg, cap), c->name);
        ok(cache_create(&c2, &c->cfg, cap), c->name);
        for (int k = 0; k <= steps; k++) {
            const int T = k == 0 ? 5 : 1;
            int ids[5];
            fgi_test_random_ids(ids, T, V, &rng);
            char what[200];
            snprintf(what, sizeof what, "%s: call %d (T %d)", c->name, k, T);
            float *want = last_logits(lone, c0, ids, T, V, what);
            float *got1 = last_logits(r1, c1, ids, T, V, what);
            float *got2 = last_logits(r2, c2, ids, T, V, what);
            float *ref = fgi_buf_nan((size_t)V);
            ok(fg_ref_forward_last(ref, &c->cfg, &tm.w, ref_cache, ids, T), "reference");
            fgi_assert_close(want, ref, (size_t)V, ATOL, RTOL, L2, what);
            fgi_assert_same(got1, want, sizeof(float) * (size_t)V, what);
            fgi_assert_same(got2, want, sizeof(float) * (size_t)V, what);
            fgi_buf_free(want), fgi_buf_free(got1), fgi_buf_free(got2), fgi_buf_free(ref);
        }
        cr_assert_eq(fgi_cuda_kv_cache_graph_steps(c1), steps, "%s: graph steps of runner 1",
                     c->name);
        cr_assert_eq(fgi_cuda_kv_cache_graph_steps(c2), steps, "%s: graph steps of runner 2",
                     c->name);
        fg_cuda_kv_cache_destroy(c0), fg_cuda_kv_cache_destroy(c1), fg_cuda_kv_cache_destroy(c2);
        fg_cuda_runner_destroy(r1), fg_cuda_runner_destroy(r2);
        fg_cuda_weights_destroy(shared);
        close_runner(own, lone);
        fg_kv_cache_destroy(ref_cache);
        fgi_test_model_free(&tm);
    }
}

/* Two caches taking turns on one runner: each is captured once (the runner
 * keeps both graphs), and every step equals, bit for bit, the same step on
 * a runner that only ever sees that cache. Refused calls in between (a
 * cache of another shape, a bad token) capture nothing and change nothing. */
Test(cuda_decoder, alternating_caches_keep_their_graphs)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(211);
    decoder_case cases[24];
    const int n_cases = make_cases(cases);
    for (int i = 0; i < n_cases; i++) {
        const decoder_case *c = &cases[i];
        const int V = c->cfg.vocab_size, turns = fgi_test_quick() ? 3 : 8;
        fgi_test_model tm;
        fgi_test_model_init(&tm, &c->cfg, &rng, c->untied);
        fg_cuda_weights *weights;
        fg_cuda_runner *shared, *alone_a, *alone_b;
        fg_cuda_kv_cache *a, *b, *solo_a, *solo_b, *odd;
        open_runner(&weights, &shared, &c->cfg, &tm.w, 4, c->name);
        ok(fg_cuda_runner_create(&alone_a, weights, 4, 0), c->name);
        ok(fg_cuda_runner_create(&alone_b, weights, 4, 0), c->name);
        ok(cache_create(&a, &c->cfg, 24), c->name);
        ok(cache_create(&solo_a, &c->cfg, 24), c->name);
        ok(cache_create(&b, &c->cfg, 12), c->name); /* another capacity: another plan */
        ok(cache_create(&solo_b, &c->cfg, 12), c->name);
        ok(fg_cuda_kv_cache_create(&odd, c->cfg.n_layer + 1, c->cfg.n_kv_head,
                                   fg_config_head_dim(&c->cfg), 12),
           c->name);
        for (int k = 0; k <= turns; k++) {
            const int T = k == 0 ? 3 : 1;
            for (int which = 0; which < 2; which++) {
                fg_cuda_kv_cache *cache = which ? b : a, *solo = which ? solo_b : solo_a;
                fg_cuda_runner *alone = which ? alone_b : alone_a;
                int ids[3];
                fgi_test_random_ids(ids, T, V, &rng);
                char what[200];
                snprintf(what, sizeof what, "%s: cache %c, turn %d (T %d)", c->name,
                         which ? 'B' : 'A', k, T);
                float *want = last_logits(alone, solo, ids, T, V, what);
                float *got = last_logits(shared, cache, ids, T, V, what);
                fgi_assert_same(got, want, sizeof(float) * (size_t)V, what);
                fgi_buf_free(want), fgi_buf_free(got);
            }
            /* refusals: nothing captured, no token counted */
            const long long captures = fgi_cuda_runner_graph_captures(shared);
            const int len_a = fg_cuda_kv_cache_len(a, 0);
            float *logits = fgi_buf_nan((size_t)V);
            int bad = V;
            fgi_assert_status(fg_cuda_forward_last(logits, shared, odd, &bad, 1),
                              FG_ERR_INVALID_ARG, "does not match");
            fgi_assert_status(fg_cuda_forward_last(logits, shared, a, &bad, 1),
                              FG_ERR_INVALID_ARG, "outside the vocabulary");
            fgi_assert_guard(logits, (size_t)V, "logits of refused calls");
            for (size_t j = 0; j < (size_t)V; j++)
                cr_assert(logits[j] != logits[j], "%s: a refused call wrote logits", c->name);
            cr_assert_eq(fgi_cuda_runner_graph_captures(shared), captures,
                         "%s: a refused call captured", c->name);
            cr_assert_eq(fg_cuda_kv_cache_len(a, 0), len_a);
            expect_lengths(odd, c->cfg.n_layer + 1, 0, "the mismatched cache");
            fgi_buf_free(logits);
        }
        cr_assert_eq(fgi_cuda_runner_graph_captures(shared), 2,
                     "%s: %lld captures for two caches taking %d turns", c->name,
                     fgi_cuda_runner_graph_captures(shared), turns);
        cr_assert_eq(fgi_cuda_runner_graph_captures(alone_a), 1, "%s", c->name);
        cr_assert_eq(fgi_cuda_kv_cache_graph_steps(a), turns, "%s", c->name);
        cr_assert_eq(fgi_cuda_kv_cache_graph_steps(b), turns, "%s", c->name);
        fg_cuda_kv_cache_destroy(a), fg_cuda_kv_cache_destroy(b), fg_cuda_kv_cache_destroy(odd);
        fg_cuda_kv_cache_destroy(solo_a), fg_cuda_kv_cache_destroy(solo_b);
        fg_cuda_runner_destroy(alone_a), fg_cuda_runner_destroy(alone_b);
        close_runner(weights, shared);
        fgi_test_model_free(&tm);
    }
}

/* A cache destroyed after its graph was captured, then new caches (which
 * may well reuse its memory, at another capacity): their steps capture
 * their own graphs and agree with the reference. More caches than the
 * runner keeps graphs for, in turn, also stay correct. */
Test(cuda_decoder, new_caches_never_replay_a_destroyed_cache_graph)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(212);
    decoder_case cases[24];
    const int n_cases = make_cases(cases);
    for (int i = 0; i < n_cases; i += fgi_test_quick() ? 2 : 1) {
        const decoder_case *c = &cases[i];
        enum { N = 6 }; /* more caches than a runner keeps graphs for */
        fgi_test_model tm;
        fgi_test_model_init(&tm, &c->cfg, &rng, c->untied);
        fg_cuda_weights *weights;
        fg_cuda_runner *runner;
        fg_cuda_kv_cache *old;
        fg_kv_cache *ref_old;
        open_runner(&weights, &runner, &c->cfg, &tm.w, 4, c->name);
        ok(cache_create(&old, &c->cfg, 20), c->name);
        ok(fg_kv_cache_create(&ref_old, &c->cfg, 20), "reference cache");
        forward_last_both(c, &tm, ref_old, runner, old, &rng, 2, "doomed cache prefill");
        for (int k = 0; k < 2; k++)
            forward_last_both(c, &tm, ref_old, runner, old, &rng, 1, "doomed cache");
        cr_assert_eq(fgi_cuda_runner_graph_captures(runner), 1, "%s", c->name);
        fg_cuda_kv_cache_destroy(old);
        fg_kv_cache_destroy(ref_old);

        fg_cuda_kv_cache *caches[N];
        fg_kv_cache *refs[N];
        for (int j = 0; j < N; j++) {
            const int cap = j % 2 ? 20 : 9;
            ok(cache_create(&caches[j], &c->cfg, cap), c->name);
            ok(fg_kv_cache_create(&refs[j], &c->cfg, cap), "reference cache");
            forward_last_both(c, &tm, refs[j], runner, caches[j], &rng, 1, "new cache");
        }
        cr_assert_eq(fgi_cuda_runner_graph_captures(runner), 1 + N,
                     "%s: each new cache captures its own graph", c->name);
        for (int round = 0; round < 2; round++)
            for (int j = 0; j < N; j++)
                forward_last_both(c, &tm, refs[j], runner, caches[j], &rng, 1,
                                  "caches in turn");
        for (int j = 0; j < N; j++)
            cr_assert_eq(fgi_cuda_kv_cache_graph_steps(caches[j]), 3, "%s: cache %d", c->name, j);
        for (int j = 0; j < N; j++) fg_cuda_kv_cache_destroy(caches[j]), fg_kv_cache_destroy(refs[j]);
        close_runner(weights, runner);
        fgi_test_model_free(&tm);
    }
}

/* Argument checks that need no device ------------------------------------------- */

Test(cuda_decoder_args, bad_arguments_are_refused)
{
    fgi_rng rng = fgi_rng_make(206);
    const fg_config cfg = fgi_test_gpt2_config(2, 64, 2, 2, 0, 0, 53, 12);
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 0);
    fg_cuda_weights *weights = NULL;
    fg_cuda_runner *runner = NULL;
    fg_cuda_kv_cache *cache = NULL;
    float logits[64], x[64];
    int ids[2] = {1, 2};

    fgi_expect_refused(fg_cuda_weights_create(NULL, &cfg, &tm.w), "'weights' is NULL");
    fgi_expect_refused(fg_cuda_weights_create(&weights, NULL, &tm.w), "'config' is NULL");
    fg_config bad = cfg;
    bad.n_head = 0;
    fgi_expect_refused(fg_cuda_weights_create(&weights, &bad, &tm.w), "config.n_head");
    bad = cfg;
    bad.n_kv_head = 3;
    fgi_expect_refused(fg_cuda_weights_create(&weights, &bad, &tm.w), "n_kv_head");
    fgi_expect_refused(fg_cuda_weights_create(&weights, &cfg, NULL), "'weights' is NULL");
    const float *saved = tm.layers[1].c_attn_w;
    tm.layers[1].c_attn_w = NULL;
    fgi_expect_refused(fg_cuda_weights_create(&weights, &cfg, &tm.w), "layers[1].c_attn_w is NULL");
    tm.layers[1].c_attn_w = saved;
    cr_assert(weights == NULL, "a refused create leaves *weights NULL");
    fgi_expect_refused(fg_cuda_runner_create(NULL, weights, 4, 0), "'runner' is NULL");
    fgi_expect_refused(fg_cuda_runner_create(&runner, NULL, 4, 0), "'weights' is NULL");
    cr_assert(runner == NULL, "a refused create leaves *runner NULL");

    fgi_expect_refused(fg_cuda_kv_cache_create(NULL, 2, 2, 32, 8), "'cache' is NULL");
    fgi_expect_refused(fg_cuda_kv_cache_create(&cache, 2, 2, 32, 0), "'capacity'");
    fgi_expect_refused(fg_cuda_kv_cache_create(&cache, 0, 2, 32, 8), "'n_layer'");
    fgi_expect_refused(fg_cuda_kv_cache_create(&cache, 2, 0, 32, 8), "'n_kv_head'");
    fgi_expect_refused(fg_cuda_kv_cache_create(&cache, 2, 2, -1, 8), "'head_dim'");
    fgi_expect_refused(fg_cuda_kv_cache_create(&cache, 2, 1 << 20, 1 << 30, 1 << 20),
                       "overflows");
    cr_assert(cache == NULL);
    fgi_expect_refused(fg_cuda_kv_cache_reset(NULL), "'cache' is NULL");
    fgi_expect_refused(fg_cuda_forward(logits, NULL, NULL, cache, ids, 2), "'runner' is NULL");
    fgi_expect_refused(fg_cuda_forward_last(logits, NULL, cache, ids, 2), "'runner' is NULL");
    fgi_expect_refused(fg_cuda_attention_layer(x, x, 2, NULL, cache, 0), "'runner' is NULL");
    fgi_expect_refused(fg_cuda_block(x, 2, NULL, cache, 0), "'runner' is NULL");

    cr_assert_eq(fg_cuda_kv_cache_len(NULL, 0), -1);
    cr_assert_eq(fg_cuda_kv_cache_capacity(NULL), -1);
    cr_assert(fg_cuda_weights_config(NULL) == NULL);
    fg_cuda_runner_destroy(NULL);
    fg_cuda_weights_destroy(NULL);
    fg_cuda_kv_cache_destroy(NULL);
    fgi_test_model_free(&tm);
}

Test(cuda_decoder_args, no_device_is_a_clear_error)
{
    if (fg_cuda_available()) cr_skip_test("a GPU is present: the no-device path is not reachable");
    fgi_rng rng = fgi_rng_make(207);
    const fg_config cfg = fgi_test_llama_config(2, 64, 2, 1, 96, 0, 53, 12);
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 1);
    fg_cuda_weights *weights = NULL;
    fg_cuda_kv_cache *cache = NULL;
    fgi_expect_no_device(fg_cuda_weights_create(&weights, &cfg, &tm.w));
    fgi_expect_no_device(cache_create(&cache, &cfg, 8));
    cr_assert(weights == NULL && cache == NULL);
    fgi_test_model_free(&tm);
}
