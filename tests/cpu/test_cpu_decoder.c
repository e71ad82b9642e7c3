/* The fast CPU decoder (host/cpu) against the exact reference decoder
 * (docs/contract.md §16-§18), like tests/cuda/test_cuda_decoder.c holds the GPU: the same
 * random in-memory model on both paths, prefill then decode steps and short
 * chunks, logits compared at the fp32 tolerance (docs/contract.md §32) after every call.
 * Fixed cases cover both families (GPT-2 with learned positions or RoPE,
 * MHA / GQA / MQA, flash on; Llama tied and untied) and random ones draw
 * shapes (head dims that are not multiples of the 16-float panel, vocab and
 * widths that leave partial panels). Every kernel variant this machine runs
 * (generic, AVX2, AVX-512) is tested, on 1 to 4 threads, and the tile edge
 * cases (rows that do not fill a micro-tile) by prefills of every length
 * up to 19. Refused inputs leave the cache unchanged. */
#include "fixture.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATOL 1e-4
#define RTOL 1e-4
#define L2 1e-5

static void ok(fg_status st, const char *what)
{
    cr_assert(st == FG_OK, "%s: %s: %s (seed %llu)", what, fg_status_str(st), fg_last_error(),
              (unsigned long long)fgi_test_seed());
}

typedef struct {
    char name[96];
    fg_config cfg;
    int untied;
} decoder_case;

static int make_cases(decoder_case *cases, fgi_rng *rng)
{
    int n = 0;
#define ADD(label, config, un)                                                             \
    do {                                                                                   \
        snprintf(cases[n].name, sizeof cases[n].name, "%s", label);                        \
        cases[n].cfg = config;                                                             \
        cases[n++].untied = un;                                                            \
    } while (0)
    ADD("gpt2 MHA, learned positions, d 32", fgi_test_gpt2_config(2, 64, 2, 2, 0, 0, 101, 40), 0);
    ADD("gpt2 GQA 4/2 + RoPE, d 32", fgi_test_gpt2_config(2, 128, 4, 2, 1, 0, 97, 40), 0);
    ADD("gpt2 MQA + RoPE, flash block 7, d 20", fgi_test_gpt2_config(2, 80, 4, 1, 1, 7, 89, 40), 0);
    ADD("gpt2 MHA, d 80", fgi_test_gpt2_config(1, 160, 2, 2, 0, 0, 79, 40), 0);
    ADD("llama GQA 4/2, tied, d 32", fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64), 0);
    ADD("llama GQA 6/2, untied, d 48", fgi_test_llama_config(2, 288, 6, 2, 344, 0, 257, 64), 1);
    ADD("llama MQA, untied, d 8", fgi_test_llama_config(3, 32, 4, 1, 48, 0, 37, 64), 1);
    /* scaled RoPE: Llama 3.1's factors with original context 32, so that
     * at d 32 pair 0 is kept, pair 1 blended and the rest divided; and
     * linear with factor 2.5 */
    fg_config scaled = fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64);
    scaled.rope_base = 500000.0;
    scaled.rope_scaling = FG_ROPE_LLAMA3;
    scaled.rope_factor = 8.0;
    scaled.rope_low_freq_factor = 1.0;
    scaled.rope_high_freq_factor = 4.0;
    scaled.rope_original_ctx = 32;
    ADD("llama3-scaled RoPE, d 32", scaled, 1);
    scaled.rope_scaling = FG_ROPE_LINEAR;
    scaled.rope_factor = 2.5;
    ADD("linear-scaled RoPE, d 32", scaled, 0);
    /* sliding windows: on layers 1.. only, and on every layer with flash */
    fg_config win = fgi_test_llama_config(3, 128, 4, 2, 200, 0, 131, 64);
    win.sliding_window = 5;
    win.window_first_layer = 1;
    ADD("llama window 5 from layer 1, d 32", win, 1);
    win = fgi_test_gpt2_config(2, 80, 4, 1, 1, 7, 89, 40);
    win.sliding_window = 3;
    ADD("gpt2 MQA + RoPE, window 3, flash block 7, d 20", win, 0);
    /* head_dim set apart from n_embd / n_head (wider heads, narrower) */
    fg_config hd = fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64);
    hd.head_dim = 48;
    ADD("llama GQA 4/2, head_dim 48 (C 128), d 48", hd, 1);
    hd = fgi_test_gpt2_config(2, 80, 4, 1, 1, 0, 89, 40);
    hd.head_dim = 12;
    ADD("gpt2 MQA + RoPE, head_dim 12 (C 80)", hd, 0);
    /* random shapes of both families */
    for (int k = 0; k < 4; k++) {
        const int llama_family = k % 2, n_head = fgi_rng_int(rng, 1, 6);
        const int divisors[] = {1, 2, 3, 6}, n_kv = fgi_rng_int(rng, 0, 3);
        const int kv = n_head % divisors[n_kv] == 0 ? n_head / divisors[n_kv] : n_head;
        const int d = 2 * fgi_rng_int(rng, 1, 28), C = n_head * d;
        const int layers = fgi_rng_int(rng, 1, 2), vocab = fgi_rng_int(rng, 20, 150);
        char label[96];
        if (llama_family) {
            const int inner = fgi_rng_int(rng, 1, 3 * C + 8);
            snprintf(label, sizeof label, "random llama L%d C%d h%d/%d inner %d vocab %d",
                     layers, C, n_head, kv, inner, vocab);
            ADD(label, fgi_test_llama_config(layers, C, n_head, kv, inner, 0, vocab, 48), k == 3);
        } else {
            const int rope = fgi_rng_int(rng, 0, 1);
            snprintf(label, sizeof label, "random gpt2 L%d C%d h%d/%d rope %d vocab %d", layers,
                     C, n_head, kv, rope, vocab);
            ADD(label, fgi_test_gpt2_config(layers, C, n_head, kv, rope, 0, vocab, 48), 0);
        }
    }
#undef ADD
    return n;
}

/* The kernel variants this build and machine run. */
static int isas(fgi_cpu_isa *out)
{
    int n = 0;
    const fgi_cpu_isa all[] = {FGI_CPU_ISA_GENERIC, FGI_CPU_ISA_AVX2, FGI_CPU_ISA_AVX512};
    for (int i = 0; i < 3; i++)
        if (fgi_cpu_kernels_for(all[i]) != NULL) out[n++] = all[i];
    cr_assert(n >= 1 && out[0] == FGI_CPU_ISA_GENERIC, "the generic kernels always exist");
    return n;
}

/* Runs the chunks through both decoders, comparing every call; odd calls
 * (and every call when last_only) ask for the last row's logits only. */
static void compare_forwards(const decoder_case *c, fgi_rng *rng, const int *chunks,
                             int n_chunks, int capacity, int threads, fgi_cpu_isa isa,
                             int last_only)
{
    const fg_config *cfg = &c->cfg;
    const int V = cfg->vocab_size;
    fgi_test_model tm;
    fgi_test_model_init(&tm, cfg, rng, c->untied);
    fg_kv_cache *ref_cache;
    fgi_cpu_runner *runner;
    char what[300];
    snprintf(what, sizeof what, "%s, %d threads, isa %d", c->name, threads, (int)isa);
    ok(fg_kv_cache_create(&ref_cache, cfg, capacity), "reference cache");
    ok(fgi_cpu_runner_create("test", &runner, cfg, &tm.w, capacity, threads, isa), what);
    cr_assert_eq(fgi_cpu_runner_threads(runner), threads);
    for (int k = 0; k < n_chunks; k++) {
        const int T = chunks[k], last = last_only || k % 2 == 1;
        const size_t n = (size_t)(last ? 1 : T) * V;
        int ids[64];
        fgi_test_random_ids(ids, T, V, rng);
        float *ref = fgi_buf_nan(n), *got = fgi_buf_nan(n);
        char call[400];
        snprintf(call, sizeof call, "%s: call %d (T %d after %d cached, %s) (seed %llu)", what, k,
                 T, fgi_cpu_runner_len(runner), last ? "last row" : "all rows",
                 (unsigned long long)fgi_test_seed());
        if (last)
            ok(fg_ref_forward_last(ref, cfg, &tm.w, ref_cache, ids, T), "reference");
        else
            ok(fg_ref_forward(ref, NULL, cfg, &tm.w, ref_cache, ids, T), "reference");
        ok(fgi_cpu_forward(runner, got, last ? 1 : T, ids, T), call);
        fgi_assert_guard(got, n, call);
        fgi_assert_close(got, ref, n, ATOL, RTOL, L2, call);
        cr_assert_eq(fgi_cpu_runner_len(runner), ref_cache->layers[0].len, "%s: length", call);
        fgi_buf_free(ref), fgi_buf_free(got);
    }
    fgi_cpu_runner_destroy(runner);
    fg_kv_cache_destroy(ref_cache);
    fgi_test_model_free(&tm);
}

Test(cpu_decoder, prefill_then_decode_matches_reference)
{
    fgi_rng rng = fgi_rng_make(301);
    decoder_case cases[24];
    fgi_cpu_isa isa[3];
    const int n_cases = make_cases(cases, &rng), n_isa = isas(isa);
    const int chunks[] = {7, 1, 1, 1, 1, 3, 1, 8};
    for (int i = 0; i < n_cases; i++)
        for (int a = 0; a < n_isa; a++)
            compare_forwards(&cases[i], &rng, chunks, (int)(sizeof chunks / sizeof *chunks), 30,
                             1 + (i + a) % 4, isa[a], 0);
}

/* One token per call from the start, and a long prefill, on every thread
 * count from 1 to 4. */
Test(cpu_decoder, single_tokens_and_long_prefill_on_1_to_4_threads)
{
    fgi_rng rng = fgi_rng_make(302);
    decoder_case cases[24];
    fgi_cpu_isa isa[3];
    const int n_cases = make_cases(cases, &rng), n_isa = isas(isa);
    const int singles[] = {1, 1, 1, 1, 1, 1};
    const int long_prefill[] = {37, 1, 2};
    for (int threads = 1; threads <= 4; threads++)
        for (int i = threads % 2; i < n_cases; i += 2) {
            const fgi_cpu_isa a = isa[(i + threads) % n_isa];
            compare_forwards(&cases[i], &rng, singles, 6, 6, threads, a, 1);
            compare_forwards(&cases[i], &rng, long_prefill, 3, 40, threads, a, 0);
        }
}

/* Prefills of 1 .. 19 tokens: every remainder of the row tiles (2, 4 and 8
 * rows) and the single-row path. */
Test(cpu_decoder, every_tile_remainder)
{
    fgi_rng rng = fgi_rng_make(303);
    fgi_cpu_isa isa[3];
    const int n_isa = isas(isa);
    decoder_case c = {"llama, partial panels", fgi_test_llama_config(1, 72, 3, 1, 40, 0, 53, 24), 1};
    for (int a = 0; a < n_isa; a++)
        for (int T = 1; T <= 19; T++) compare_forwards(&c, &rng, &T, 1, 20, 2, isa[a], 0);
}

/* Prefilling T tokens at once and feeding them one at a time agree. */
Test(cpu_decoder, prefill_equals_incremental)
{
    fgi_rng rng = fgi_rng_make(304);
    decoder_case cases[24];
    const int n_cases = make_cases(cases, &rng);
    for (int i = 0; i < n_cases; i++) {
        const fg_config *cfg = &cases[i].cfg;
        const int T = 9, V = cfg->vocab_size;
        fgi_test_model tm;
        fgi_test_model_init(&tm, cfg, &rng, cases[i].untied);
        fgi_cpu_runner *all, *one;
        ok(fgi_cpu_runner_create("test", &all, cfg, &tm.w, T, 2, FGI_CPU_ISA_AUTO), cases[i].name);
        ok(fgi_cpu_runner_create("test", &one, cfg, &tm.w, T, 3, FGI_CPU_ISA_AUTO), cases[i].name);
        int ids[9];
        fgi_test_random_ids(ids, T, V, &rng);
        float *prefill = fgi_buf_nan((size_t)T * V), *step = fgi_buf_nan((size_t)T * V);
        ok(fgi_cpu_forward(all, prefill, T, ids, T), cases[i].name);
        for (int t = 0; t < T; t++)
            ok(fgi_cpu_forward(one, step + (size_t)t * V, 1, ids + t, 1), cases[i].name);
        char what[200];
        snprintf(what, sizeof what, "%.96s: prefill vs one token at a time", cases[i].name);
        fgi_assert_close(step, prefill, (size_t)T * V, ATOL, RTOL, L2, what);
        fgi_buf_free(prefill), fgi_buf_free(step);
        fgi_cpu_runner_destroy(all), fgi_cpu_runner_destroy(one);
        fgi_test_model_free(&tm);
    }
}

/* A window of at least the context is no window, bit for bit: the same
 * keys in the same order. */
Test(cpu_decoder, window_of_the_context_is_no_window)
{
    fgi_rng rng = fgi_rng_make(305);
    fg_config cfg = fgi_test_llama_config(2, 96, 4, 2, 100, 0, 71, 32);
    const int T = 12, V = cfg.vocab_size, chunks[3] = {7, 1, 4};
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 0);
    int ids[12];
    fgi_test_random_ids(ids, T, V, &rng);
    float *want = NULL;
    const int windows[] = {0, T, 1000};
    for (int w = 0; w < 3; w++) {
        fg_config c = cfg;
        c.sliding_window = windows[w];
        fgi_cpu_runner *r;
        ok(fgi_cpu_runner_create("test", &r, &c, &tm.w, T, 2, FGI_CPU_ISA_AUTO), "runner");
        float *got = fgi_buf_nan((size_t)T * V);
        for (int k = 0, at = 0; k < 3; at += chunks[k++])
            ok(fgi_cpu_forward(r, got + (size_t)at * V, chunks[k], ids + at, chunks[k]), "forward");
        if (want == NULL) want = got;
        else {
            fgi_assert_same(got, want, sizeof(float) * (size_t)T * V, "window >= context vs none");
            fgi_buf_free(got);
        }
        fgi_cpu_runner_destroy(r);
    }
    fgi_buf_free(want);
    fgi_test_model_free(&tm);
}

/* Changing the thread count between calls keeps the cache and the results. */
Test(cpu_decoder, thread_count_changes_between_calls)
{
    fgi_rng rng = fgi_rng_make(305);
    const fg_config cfg = fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64);
    const int V = cfg.vocab_size;
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 0);
    fg_kv_cache *ref_cache;
    fgi_cpu_runner *r;
    ok(fg_kv_cache_create(&ref_cache, &cfg, 20), "cache");
    ok(fgi_cpu_runner_create("test", &r, &cfg, &tm.w, 20, 1, FGI_CPU_ISA_AUTO), "runner");
    const int threads[] = {1, 4, 2, 3, 0};
    for (int k = 0; k < 5; k++) {
        ok(fgi_cpu_runner_set_threads(r, threads[k]), "set threads");
        cr_assert_eq(fgi_cpu_runner_threads(r), threads[k] ? threads[k] : fgi_cpu_online_cores());
        int ids[3];
        fgi_test_random_ids(ids, 3, V, &rng);
        float *ref = fgi_buf_nan((size_t)3 * V), *got = fgi_buf_nan((size_t)3 * V);
        ok(fg_ref_forward(ref, NULL, &cfg, &tm.w, ref_cache, ids, 3), "reference");
        ok(fgi_cpu_forward(r, got, 3, ids, 3), "fast path");
        fgi_assert_close(got, ref, (size_t)3 * V, ATOL, RTOL, L2, "after a thread change");
        fgi_buf_free(ref), fgi_buf_free(got);
    }
    fgi_assert_status(fgi_cpu_runner_set_threads(r, -1), FG_ERR_INVALID_ARG, "n_threads");
    fgi_assert_status(fgi_cpu_runner_set_threads(r, 1025), FG_ERR_INVALID_ARG, "n_threads");
    fgi_cpu_runner_destroy(r);
    fg_kv_cache_destroy(ref_cache);
    fgi_test_model_free(&tm);
}

/* Refused calls write nothing and leave the cache as it was: the next
 * call still matches the reference. */
Test(cpu_decoder, refused_inputs_leave_the_cache_unchanged)
{
    fgi_rng rng = fgi_rng_make(306);
    const fg_config cfg = fgi_test_gpt2_config(2, 64, 2, 2, 0, 0, 101, 12);
    const int V = cfg.vocab_size;
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 0);
    fgi_cpu_runner *r;
    ok(fgi_cpu_runner_create("test", &r, &cfg, &tm.w, 12, 2, FGI_CPU_ISA_AUTO), "runner");
    fg_kv_cache *ref_cache;
    ok(fg_kv_cache_create(&ref_cache, &cfg, 12), "cache");
    int ids[12];
    fgi_test_random_ids(ids, 12, V, &rng);
    float *got = fgi_buf_nan((size_t)12 * V), *ref = fgi_buf_nan((size_t)12 * V);
    ok(fgi_cpu_forward(r, got, 5, ids, 5), "prefill");
    ok(fg_ref_forward(ref, NULL, &cfg, &tm.w, ref_cache, ids, 5), "reference");
    int bad[2] = {3, V};
    fgi_assert_status(fgi_cpu_forward(r, got, 2, bad, 2), FG_ERR_INVALID_ARG, "outside the vocabulary");
    bad[1] = -1;
    fgi_assert_status(fgi_cpu_forward(r, got, 2, bad, 2), FG_ERR_INVALID_ARG, "outside the vocabulary");
    fgi_assert_status(fgi_cpu_forward(r, got, 8, ids, 8), FG_ERR_INVALID_ARG, "context full");
    fgi_assert_status(fgi_cpu_forward(r, got, 1, ids, 0), FG_ERR_INVALID_ARG, "'T'");
    fgi_assert_status(fgi_cpu_forward(r, got, 2, ids, 3), FG_ERR_INVALID_ARG, "logit rows");
    fgi_assert_status(fgi_cpu_forward(r, NULL, 1, ids, 1), FG_ERR_INVALID_ARG, "'logits'");
    fgi_assert_status(fgi_cpu_forward(r, got, 1, NULL, 1), FG_ERR_INVALID_ARG, "'ids'");
    cr_assert_eq(fgi_cpu_runner_len(r), 5);
    ok(fgi_cpu_forward(r, got, 7, ids + 5, 7), "the rest");
    ok(fg_ref_forward(ref, NULL, &cfg, &tm.w, ref_cache, ids + 5, 7), "reference");
    fgi_assert_close(got, ref, (size_t)7 * V, ATOL, RTOL, L2, "after refused calls");
    fgi_cpu_runner_reset(r);
    cr_assert_eq(fgi_cpu_runner_len(r), 0);
    fgi_buf_free(got), fgi_buf_free(ref);
    fg_kv_cache_destroy(ref_cache);
    fgi_cpu_runner_destroy(r);
    fgi_test_model_free(&tm);
}

Test(cpu_decoder, bad_creation_arguments)
{
    fgi_rng rng = fgi_rng_make(307);
    const fg_config cfg = fgi_test_llama_config(1, 32, 4, 2, 48, 0, 37, 12);
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 0);
    fgi_cpu_runner *r = (fgi_cpu_runner *)&tm;
    fgi_assert_status(fgi_cpu_runner_create("f", &r, &cfg, &tm.w, 0, 1, FGI_CPU_ISA_AUTO),
                      FG_ERR_INVALID_ARG, "capacity");
    cr_assert_null(r);
    fgi_assert_status(fgi_cpu_runner_create("f", &r, &cfg, &tm.w, 13, 1, FGI_CPU_ISA_AUTO),
                      FG_ERR_INVALID_ARG, "capacity");
    fgi_assert_status(fgi_cpu_runner_create("f", &r, &cfg, &tm.w, 4, -2, FGI_CPU_ISA_AUTO),
                      FG_ERR_INVALID_ARG, "n_threads");
    fgi_assert_status(fgi_cpu_runner_create("f", &r, &cfg, NULL, 4, 1, FGI_CPU_ISA_AUTO),
                      FG_ERR_INVALID_ARG, "weights");
    fgi_assert_status(fgi_cpu_runner_create("f", &r, NULL, &tm.w, 4, 1, FGI_CPU_ISA_AUTO),
                      FG_ERR_INVALID_ARG, "config");
    fg_config bad = cfg;
    bad.n_kv_head = 3;
    fgi_assert_status(fgi_cpu_runner_create("f", &r, &bad, &tm.w, 4, 1, FGI_CPU_ISA_AUTO),
                      FG_ERR_INVALID_ARG, "n_kv_head");
    fgi_assert_status(fgi_cpu_runner_create("f", &r, &cfg, &tm.w, 4, 1, (fgi_cpu_isa)7),
                      FG_ERR_UNSUPPORTED, "instruction set");
    cr_assert_null(r);
    fgi_test_model_free(&tm);
}
