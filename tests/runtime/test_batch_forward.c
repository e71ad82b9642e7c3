/* The batched forward over a paged KV cache (issue 15), on the reference and
 * the fast CPU path: several sequences advance together in random chunks
 * (prefill pieces and single decode tokens mixed in one call, in random
 * order, with random block sizes and scattered block ids), and every row's
 * logits must be
 *  - on the reference, bit for bit fg_ref_forward's over the same tokens;
 *  - on the fast CPU path, bit for bit the single-sequence runner's prefill
 *    of the same tokens (both run every GEMM on the multi-row tile), on
 *    every kernel variant and thread count, and within the fp32 tolerance
 *    of docs/contract.md §32 of the reference.
 * Since each sequence's result is compared with its own single-sequence
 * run, it cannot depend on which sequences shared its calls, where it sat
 * in them or how its prompt was cut: batch invariance. Refused batches
 * (bad ids, short tables, free or shared blocks) change nothing.
 * The GPU (cuda/engine/batch.cu, blocks of 16 or 32 tokens; prompt rows,
 * those below a random n_prompt, through the paged prefill kernel, the
 * rest through the decode kernel): every row
 * within the fp32 tolerance of the reference (bf16 / f16: the 16-bit rule
 * against it and the naive 16-bit decoder), and every sequence's rows bit
 * for bit those of the same sequence run alone with another chunking
 * (decode-only calls replay a captured graph per row count). */
#include "fixture.h"
#include "gpu_support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATOL 1e-4
#define RTOL 1e-4
#define L2 1e-5

#define MAX_SEQS 6
#define MAX_LEN 40

static void ok(fg_status st, const char *what)
{
    cr_assert(st == FG_OK, "%s: %s: %s (seed %llu)", what, fg_status_str(st), fg_last_error(),
              (unsigned long long)fgi_test_seed());
}

typedef struct {
    char name[96];
    fg_config cfg;
    int untied;
} fwd_case;

static int make_cases(fwd_case *cases, fgi_rng *rng)
{
    int n = 0;
#define ADD(label, config, un)                                                             \
    do {                                                                                   \
        snprintf(cases[n].name, sizeof cases[n].name, "%s", label);                        \
        cases[n].cfg = config;                                                             \
        cases[n++].untied = un;                                                            \
    } while (0)
    ADD("gpt2 MHA, learned positions", fgi_test_gpt2_config(2, 64, 2, 2, 0, 0, 101, 48), 0);
    ADD("gpt2 GQA 4/2 + RoPE", fgi_test_gpt2_config(2, 128, 4, 2, 1, 0, 97, 48), 0);
    ADD("gpt2 MQA + RoPE, flash block 7", fgi_test_gpt2_config(2, 80, 4, 1, 1, 7, 89, 48), 0);
    ADD("llama GQA 4/2, tied", fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64), 0);
    ADD("llama MQA, untied, flash 5", fgi_test_llama_config(3, 32, 4, 1, 48, 5, 37, 64), 1);
    {
        const int n_head = fgi_rng_int(rng, 1, 6), kv = n_head % 2 == 0 ? n_head / 2 : n_head;
        const int d = 2 * fgi_rng_int(rng, 1, 20), C = n_head * d;
        char label[96];
        snprintf(label, sizeof label, "random llama C%d h%d/%d", C, n_head, kv);
        ADD(label, fgi_test_llama_config(2, C, n_head, kv, fgi_rng_int(rng, 1, 2 * C), 0,
                                         fgi_rng_int(rng, 20, 150), 48),
            1);
    }
#undef ADD
    return n;
}

typedef struct {
    int ids[MAX_LEN];
    int len;        /* tokens in all */
    int n_prompt;   /* fgi_batch_seq.n_prompt: positions below it take the GPU's prefill */
    int done;       /* tokens forwarded */
    fgi_kv_seq kv;
    float *logits;  /* (len, vocab) batched result, row by row */
} seq_state;

/* A pool whose free list is shuffled: allocate everything, release in a
 * random order, so that tables hold scattered ids. */
static fgi_kv_pool *scattered_pool(const fg_config *cfg, int n_blocks, int bs, fgi_rng *rng)
{
    fgi_kv_pool *pool;
    ok(fgi_kv_pool_create("test", &pool, cfg, n_blocks, bs), "pool");
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n_blocks);
    cr_assert_not_null(ids);
    ok(fgi_kv_pool_alloc("test", pool, n_blocks, ids), "alloc all");
    for (int i = n_blocks - 1; i > 0; i--) {
        const int j = fgi_rng_int(rng, 0, i);
        const int32_t t = ids[i];
        ids[i] = ids[j];
        ids[j] = t;
    }
    for (int i = 0; i < n_blocks; i++) ok(fgi_kv_pool_release("test", pool, ids[i]), "release");
    free(ids);
    return pool;
}

typedef enum { ON_REF, ON_CPU, ON_GPU } path;

static long long g_graph_steps; /* GPU steps replayed from a captured graph */

/* Runs the sequences through one path in random steps; seqs[i].logits gets
 * every row. */
static void run_batched(const fwd_case *c, const fgi_test_model *tm, seq_state *seqs, int n,
                        path where, fgi_cpu_isa isa, int threads, fgi_rng *rng, fg_dtype dtype)
{
    const fg_config *cfg = &c->cfg;
    const int V = cfg->vocab_size;
    const int bs = where == ON_GPU ? 16 * fgi_rng_int(rng, 1, 2) : fgi_rng_int(rng, 1, 9);
    fgi_kv_pool *pool = scattered_pool(cfg, n * ((MAX_LEN + bs - 1) / bs) + 3, bs, rng);
    fgi_cpu_batch *batch = NULL;
    fgi_cuda_batch *gpu = NULL;
    if (where == ON_CPU)
        ok(fgi_cpu_batch_create("test", &batch, cfg, &tm->w, MAX_LEN, threads, isa), "batch");
    if (where == ON_GPU)
        ok(fgi_cuda_batch_create_typed("test", &gpu, cfg, &tm->w, pool, MAX_LEN,
                                       MAX_SEQS * MAX_LEN, dtype),
           "gpu batch");
    for (int i = 0; i < n; i++) {
        ok(fgi_kv_seq_init("test", &seqs[i].kv, pool, MAX_LEN), "seq");
        seqs[i].done = 0;
        seqs[i].logits = fgi_buf_nan((size_t)seqs[i].len * V);
    }
    for (;;) {
        fgi_batch_seq call[MAX_SEQS];
        int order[MAX_SEQS], m = 0;
        for (int i = 0; i < n; i++)
            if (seqs[i].done < seqs[i].len && fgi_rng_int(rng, 0, 3) > 0) order[m++] = i;
        if (m == 0) {
            int left = 0;
            for (int i = 0; i < n; i++) left += seqs[i].done < seqs[i].len;
            if (left == 0) break;
            continue;
        }
        for (int i = m - 1; i > 0; i--) {
            const int j = fgi_rng_int(rng, 0, i), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (int k = 0; k < m; k++) {
            seq_state *s = &seqs[order[k]];
            const int left = s->len - s->done;
            /* single tokens (decode) half the time, else a random chunk */
            const int T = fgi_rng_int(rng, 0, 1) ? 1 : fgi_rng_int(rng, 1, left);
            ok(fgi_kv_seq_reserve("test", &s->kv, pool, s->done + T), "reserve");
            call[k] = (fgi_batch_seq){.ids = s->ids + s->done, .n_tokens = T, .start = s->done,
                                      .blocks = s->kv.blocks, .n_blocks = s->kv.n_blocks,
                                      .logits = s->logits + (size_t)s->done * V,
                                      .all_logits = 1, .n_prompt = s->n_prompt};
        }
        if (where == ON_REF)
            ok(fgi_ref_forward_batch("test", cfg, &tm->w, pool, call, m), c->name);
        else if (where == ON_GPU)
            ok(fgi_cuda_batch_forward("test", gpu, pool, call, m), c->name);
        else
            ok(fgi_cpu_batch_forward("test", batch, pool, call, m), c->name);
        for (int k = 0; k < m; k++) seqs[order[k]].done += call[k].n_tokens;
    }
    for (int i = 0; i < n; i++) {
        fgi_kv_seq_release(&seqs[i].kv, pool);
        fgi_kv_seq_free(&seqs[i].kv);
    }
    cr_assert_eq(fgi_kv_pool_used_blocks(pool), 0, "every block returned");
    fgi_cpu_batch_destroy(batch);
    g_graph_steps += fgi_cuda_batch_graph_steps(gpu);
    fgi_cuda_batch_destroy(gpu);
    fgi_kv_pool_destroy(pool);
}

static void make_seqs(seq_state *seqs, int n, int vocab, fgi_rng *rng)
{
    for (int i = 0; i < n; i++) {
        seqs[i].len = fgi_rng_int(rng, 2, MAX_LEN);
        /* all prompt, all decode rows, or a prompt and then generated tokens */
        const int kind = fgi_rng_int(rng, 0, 3);
        seqs[i].n_prompt = kind == 0 ? 0 : kind == 1 ? seqs[i].len : fgi_rng_int(rng, 1, seqs[i].len);
        fgi_test_random_ids(seqs[i].ids, seqs[i].len, vocab, rng);
    }
}

static void free_logits(seq_state *seqs, int n)
{
    for (int i = 0; i < n; i++) fgi_buf_free(seqs[i].logits);
}

Test(batch_forward, ref_rows_equal_the_single_sequence_reference)
{
    fgi_rng rng = fgi_rng_make(1);
    fwd_case cases[8];
    const int n_cases = make_cases(cases, &rng);
    for (int ci = 0; ci < n_cases; ci++) {
        const fwd_case *c = &cases[ci];
        const int V = c->cfg.vocab_size, n = fgi_rng_int(&rng, 1, MAX_SEQS);
        fgi_test_model tm;
        fgi_test_model_init(&tm, &c->cfg, &rng, c->untied);
        seq_state seqs[MAX_SEQS];
        make_seqs(seqs, n, V, &rng);
        run_batched(c, &tm, seqs, n, ON_REF, FGI_CPU_ISA_AUTO, 1, &rng, FG_DTYPE_F32);
        for (int i = 0; i < n; i++) {
            fg_kv_cache *cache;
            ok(fg_kv_cache_create(&cache, &c->cfg, MAX_LEN), "cache");
            float *want = fgi_buf_nan((size_t)seqs[i].len * V);
            ok(fg_ref_forward(want, NULL, &c->cfg, &tm.w, cache, seqs[i].ids, seqs[i].len),
               "single");
            char what[300];
            snprintf(what, sizeof what, "%.96s: sequence %d of %d (%d tokens)", c->name, i, n,
                     seqs[i].len);
            fgi_assert_same(seqs[i].logits, want, sizeof(float) * (size_t)seqs[i].len * V, what);
            fgi_buf_free(want);
            fg_kv_cache_destroy(cache);
        }
        free_logits(seqs, n);
        fgi_test_model_free(&tm);
    }
}

Test(batch_forward, cpu_rows_equal_the_single_sequence_prefill_and_the_reference)
{
    fgi_rng rng = fgi_rng_make(2);
    fwd_case cases[8];
    const int n_cases = make_cases(cases, &rng);
    const fgi_cpu_isa all[] = {FGI_CPU_ISA_GENERIC, FGI_CPU_ISA_AVX2, FGI_CPU_ISA_AVX512};
    for (int ci = 0; ci < n_cases; ci++)
        for (int ii = 0; ii < 3; ii++) {
            if (fgi_cpu_kernels_for(all[ii]) == NULL) continue;
            const fwd_case *c = &cases[ci];
            const int V = c->cfg.vocab_size, n = fgi_rng_int(&rng, 1, MAX_SEQS);
            const int threads = fgi_rng_int(&rng, 1, 4);
            fgi_test_model tm;
            fgi_test_model_init(&tm, &c->cfg, &rng, c->untied);
            seq_state seqs[MAX_SEQS];
            make_seqs(seqs, n, V, &rng);
            run_batched(c, &tm, seqs, n, ON_CPU, all[ii], threads, &rng, FG_DTYPE_F32);
            for (int i = 0; i < n; i++) {
                const size_t nv = (size_t)seqs[i].len * V;
                char what[300];
                snprintf(what, sizeof what, "%.96s, isa %d, %d threads: sequence %d of %d (%d tokens)",
                         c->name, ii, threads, i, n, seqs[i].len);
                fgi_cpu_runner *runner;
                ok(fgi_cpu_runner_create("test", &runner, &c->cfg, &tm.w, MAX_LEN,
                                         fgi_rng_int(&rng, 1, 3), all[ii]),
                   "runner");
                float *want = fgi_buf_nan(nv), *ref = fgi_buf_nan(nv);
                ok(fgi_cpu_forward(runner, want, seqs[i].len, seqs[i].ids, seqs[i].len),
                   "single");
                fgi_assert_same(seqs[i].logits, want, sizeof(float) * nv, what);
                fg_kv_cache *cache;
                ok(fg_kv_cache_create(&cache, &c->cfg, MAX_LEN), "cache");
                ok(fg_ref_forward(ref, NULL, &c->cfg, &tm.w, cache, seqs[i].ids, seqs[i].len),
                   "reference");
                fgi_assert_close(seqs[i].logits, ref, nv, ATOL, RTOL, L2, what);
                fg_kv_cache_destroy(cache);
                fgi_buf_free(want), fgi_buf_free(ref);
                fgi_cpu_runner_destroy(runner);
            }
            free_logits(seqs, n);
            fgi_test_model_free(&tm);
        }
}

Test(batch_forward, gpu_rows_are_close_to_the_reference_and_batch_invariant)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(5);
    fwd_case cases[9];
    int n_cases = make_cases(cases, &rng);
    /* a sliding window on the later layers: the decode kernel's window */
    cases[n_cases] = cases[3];
    snprintf(cases[n_cases].name, sizeof cases[n_cases].name, "%s", "llama GQA, window 5 from layer 1");
    cases[n_cases].cfg.sliding_window = 5;
    cases[n_cases].cfg.window_first_layer = 1;
    n_cases++;
    for (int ci = 0; ci < n_cases; ci++) {
        const fwd_case *c = &cases[ci];
        const int d = fg_config_head_dim(&c->cfg);
        if (d % 4 != 0) continue; /* the fp32 decode kernel's granule (create refuses it) */
        const int V = c->cfg.vocab_size, n = fgi_rng_int(&rng, 2, MAX_SEQS);
        fgi_test_model tm;
        fgi_test_model_init(&tm, &c->cfg, &rng, c->untied);
        seq_state seqs[MAX_SEQS];
        make_seqs(seqs, n, V, &rng);
        run_batched(c, &tm, seqs, n, ON_GPU, FGI_CPU_ISA_AUTO, 1, &rng, FG_DTYPE_F32);
        for (int i = 0; i < n; i++) {
            const size_t nv = (size_t)seqs[i].len * V;
            char what[300];
            snprintf(what, sizeof what, "%.96s: GPU sequence %d of %d (%d tokens)", c->name, i,
                     n, seqs[i].len);
            fg_kv_cache *cache;
            ok(fg_kv_cache_create(&cache, &c->cfg, MAX_LEN), "cache");
            float *ref = fgi_buf_nan(nv);
            ok(fg_ref_forward(ref, NULL, &c->cfg, &tm.w, cache, seqs[i].ids, seqs[i].len),
               "reference");
            fgi_assert_close(seqs[i].logits, ref, nv, ATOL, RTOL, L2, what);
            /* alone, chunked anew, in other blocks: the same bits */
            seq_state alone = seqs[i];
            run_batched(c, &tm, &alone, 1, ON_GPU, FGI_CPU_ISA_AUTO, 1, &rng, FG_DTYPE_F32);
            fgi_assert_same(alone.logits, seqs[i].logits, sizeof(float) * nv, what);
            fgi_buf_free(alone.logits);
            fgi_buf_free(ref);
            fg_kv_cache_destroy(cache);
        }
        free_logits(seqs, n);
        fgi_test_model_free(&tm);
    }
    /* decode-only steps (every sequence of a call one token) went through
     * captured graphs, and their bits were held to the uncaptured runs */
    cr_assert_gt(g_graph_steps, 0, "no step replayed a graph (seed %llu)",
                 (unsigned long long)fgi_test_seed());
}

/* Relative L2 of got against ref at most the 16-bit rule's 2e-2, every
 * value finite. */
static void expect_l2_16(const float *got, const float *ref, size_t n, const char *what)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(isfinite(got[i]), "%s: element %zu is %g (seed %llu)", what, i, got[i],
                  (unsigned long long)fgi_test_seed());
        const double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    cr_assert(rel <= 2e-2, "%s: relative L2 %.3g > 2e-2 (seed %llu)", what, rel,
              (unsigned long long)fgi_test_seed());
}

/* The GPU batched forward in bf16 and f16: every row held to the 16-bit
 * rule (docs/contract.md §32) against the exact reference on the rounded
 * weights, with the naive 16-bit decoder (every op boundary rounded) as the
 * yardstick, and every sequence's rows the same bits alone, chunked anew
 * and in other blocks as among the others. Models with a head_dim of the
 * 16-bit kernels; a sliding window too, held to the rule's relative L2
 * only (the naive decoder has no window). */
Test(batch_forward, gpu16_rows_follow_the_16bit_rule_and_are_batch_invariant)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(6);
    fwd_case cases[6];
    int n_cases = 0;
#define ADD(label, config, un)                                                             \
    do {                                                                                   \
        snprintf(cases[n_cases].name, sizeof cases[n_cases].name, "%s", label);            \
        cases[n_cases].cfg = config;                                                       \
        cases[n_cases++].untied = un;                                                      \
    } while (0)
    ADD("gpt2 MHA d32, learned positions", fgi_test_gpt2_config(2, 64, 2, 2, 0, 0, 101, 48), 0);
    ADD("gpt2 GQA 4/2 d32 + RoPE", fgi_test_gpt2_config(2, 128, 4, 2, 1, 0, 97, 48), 1);
    ADD("llama GQA 4/2 d32, tied", fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64), 0);
    ADD("llama MQA d64, untied", fgi_test_llama_config(1, 128, 2, 1, 96, 0, 67, 64), 1);
    cases[n_cases] = cases[2];
    snprintf(cases[n_cases].name, sizeof cases[n_cases].name, "%s",
             "llama GQA d32, window 5 from layer 1");
    cases[n_cases].cfg.sliding_window = 5;
    cases[n_cases++].cfg.window_first_layer = 1;
#undef ADD
    const fg_dtype types[] = {FG_DTYPE_BF16, FG_DTYPE_F16};
    for (int ti = 0; ti < 2; ti++)
        for (int ci = 0; ci < n_cases; ci++) {
            const fg_dtype dt = types[ti];
            const fwd_case *c = &cases[ci];
            const int V = c->cfg.vocab_size, n = fgi_rng_int(&rng, 2, MAX_SEQS);
            fgi_test_model tm;
            fgi_test_model_init(&tm, &c->cfg, &rng, c->untied);
            fgi_test_model_round(&tm, dt);
            seq_state seqs[MAX_SEQS];
            make_seqs(seqs, n, V, &rng);
            run_batched(c, &tm, seqs, n, ON_GPU, FGI_CPU_ISA_AUTO, 1, &rng, dt);
            for (int i = 0; i < n; i++) {
                const size_t nv = (size_t)seqs[i].len * V;
                char what[300];
                snprintf(what, sizeof what, "%.96s, %s: GPU sequence %d of %d (%d tokens)",
                         c->name, fg_dtype_name(dt), i, n, seqs[i].len);
                fg_kv_cache *cache, *naive_cache;
                ok(fg_kv_cache_create(&cache, &c->cfg, MAX_LEN), "cache");
                ok(fg_kv_cache_create(&naive_cache, &c->cfg, MAX_LEN), "naive cache");
                float *ref = fgi_buf_nan(nv), *naive = fgi_buf_nan(nv);
                ok(fg_ref_forward(ref, NULL, &c->cfg, &tm.w, cache, seqs[i].ids, seqs[i].len),
                   "reference");
                if (c->cfg.sliding_window > 0) {
                    expect_l2_16(seqs[i].logits, ref, nv, what);
                } else {
                    ok(fgi_ref_forward_naive16(dt, naive, &c->cfg, &tm.w, naive_cache,
                                               seqs[i].ids, seqs[i].len),
                       "naive 16-bit");
                    fgi_assert_16bit_rule(dt, seqs[i].logits, ref, naive, nv, what);
                }
                seq_state alone = seqs[i];
                run_batched(c, &tm, &alone, 1, ON_GPU, FGI_CPU_ISA_AUTO, 1, &rng, dt);
                fgi_assert_same(alone.logits, seqs[i].logits, sizeof(float) * nv, what);
                fgi_buf_free(alone.logits);
                fgi_buf_free(ref), fgi_buf_free(naive);
                fg_kv_cache_destroy(cache);
                fg_kv_cache_destroy(naive_cache);
            }
            free_logits(seqs, n);
            fgi_test_model_free(&tm);
        }
}

/* One step of three whole prompts of 70, 150 and 5 tokens: the one paged
 * prefill launch sizes its grid for the longest chunk (three query tiles of
 * 64 rows), so the shorter chunks' surplus blocks must do nothing (they
 * would sit on the rows before their chunk's). In fp32, bf16 and f16, every
 * sequence's rows must be the bits of the same prompt forwarded alone, and
 * close to the reference (fp32: its tolerance; 16-bit: the rule's relative
 * L2, on the rounded weights). (The random tests' prompts stay below one
 * query tile.) */
#define LONG_LEN 150
Test(batch_forward, gpu_chunks_shorter_than_the_longest_leave_other_rows_alone)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(8);
    const fg_config cfg = fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, LONG_LEN);
    const int V = cfg.vocab_size, bs = 16, n = 3;
    const int lens[3] = {70, LONG_LEN, 5};
    const int max_blocks = (LONG_LEN + bs - 1) / bs;
    const fg_dtype types[] = {FG_DTYPE_F32, FG_DTYPE_BF16, FG_DTYPE_F16};
    for (int ti = 0; ti < 3; ti++) {
        const fg_dtype dt = types[ti];
        fgi_test_model tm;
        fgi_test_model_init(&tm, &cfg, &rng, 0);
        if (dt != FG_DTYPE_F32) fgi_test_model_round(&tm, dt);
        int ids[3][LONG_LEN];
        float *together[3], *alone[3];
        for (int run = 0; run <= n; run++) { /* run 0: all three; run 1 + i: sequence i */
            fgi_kv_pool *pool = scattered_pool(&cfg, n * max_blocks + 3, bs, &rng);
            fgi_cuda_batch *gpu = NULL;
            ok(fgi_cuda_batch_create_typed("test", &gpu, &cfg, &tm.w, pool, LONG_LEN,
                                           2 * LONG_LEN, dt),
               "gpu batch");
            fgi_kv_seq kv[3];
            fgi_batch_seq call[3];
            int m = 0;
            for (int i = 0; i < n; i++) {
                if (run != 0 && run != 1 + i) continue;
                if (run == 0) {
                    fgi_test_random_ids(ids[i], lens[i], V, &rng);
                    together[i] = fgi_buf_nan((size_t)lens[i] * V);
                } else {
                    alone[i] = fgi_buf_nan((size_t)lens[i] * V);
                }
                ok(fgi_kv_seq_init("test", &kv[m], pool, LONG_LEN), "seq");
                ok(fgi_kv_seq_reserve("test", &kv[m], pool, lens[i]), "reserve");
                call[m] = (fgi_batch_seq){.ids = ids[i], .n_tokens = lens[i], .start = 0,
                                          .blocks = kv[m].blocks, .n_blocks = kv[m].n_blocks,
                                          .logits = run == 0 ? together[i] : alone[i],
                                          .all_logits = 1, .n_prompt = lens[i]};
                m++;
            }
            ok(fgi_cuda_batch_forward("test", gpu, pool, call, m), "forward");
            for (int k = 0; k < m; k++) {
                fgi_kv_seq_release(&kv[k], pool);
                fgi_kv_seq_free(&kv[k]);
            }
            fgi_cuda_batch_destroy(gpu);
            fgi_kv_pool_destroy(pool);
        }
        for (int i = 0; i < n; i++) {
            const size_t nv = (size_t)lens[i] * V;
            char what[160];
            snprintf(what, sizeof what, "%s: prompt %d of %d tokens beside %d and %d",
                     fg_dtype_name(dt), i, lens[i], lens[(i + 1) % n], lens[(i + 2) % n]);
            fgi_assert_same(alone[i], together[i], sizeof(float) * nv, what);
            fg_kv_cache *cache;
            ok(fg_kv_cache_create(&cache, &cfg, LONG_LEN), "cache");
            float *ref = fgi_buf_nan(nv);
            ok(fg_ref_forward(ref, NULL, &cfg, &tm.w, cache, ids[i], lens[i]), "reference");
            if (dt == FG_DTYPE_F32)
                fgi_assert_close(together[i], ref, nv, ATOL, RTOL, L2, what);
            else
                expect_l2_16(together[i], ref, nv, what);
            fgi_buf_free(ref);
            fg_kv_cache_destroy(cache);
            fgi_buf_free(alone[i]);
            fgi_buf_free(together[i]);
        }
        fgi_test_model_free(&tm);
    }
}

/* The 16-bit batch refuses what it cannot run: a head_dim without a
 * 16-bit kernel, a dtype that is not one. */
Test(batch_forward, gpu16_refusals)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(7);
    const fg_config cfg = fgi_test_llama_config(1, 32, 4, 2, 48, 0, 37, 64); /* head_dim 8 */
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 0);
    fgi_kv_pool *pool;
    ok(fgi_kv_pool_create("test", &pool, &cfg, 4, 16), "pool");
    fgi_cuda_batch *gpu = NULL;
    fgi_assert_status(fgi_cuda_batch_create_typed("test", &gpu, &cfg, &tm.w, pool, 32, 8,
                                                  FG_DTYPE_BF16),
                      FG_ERR_UNSUPPORTED, "head_dim");
    cr_assert_null(gpu);
    fgi_assert_status(fgi_cuda_batch_create_typed("test", &gpu, &cfg, &tm.w, pool, 32, 8,
                                                  FG_DTYPE_AUTO),
                      FG_ERR_INVALID_ARG, "dtype");
    cr_assert_null(gpu);
    fgi_kv_pool_destroy(pool);
    fgi_test_model_free(&tm);
}

/* A decode row of the batched CPU path (a lone row on the tile) against the
 * single-sequence decode step (panel_row: another summation order): equal
 * within the fp32 tolerance, not necessarily in bits. */
Test(batch_forward, cpu_decode_rows_are_close_to_single_decode_steps)
{
    fgi_rng rng = fgi_rng_make(3);
    const fg_config cfg = fgi_test_llama_config(2, 96, 4, 2, 160, 0, 113, 64);
    const int V = cfg.vocab_size, len = 12;
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 1);
    int ids[12];
    fgi_test_random_ids(ids, len, V, &rng);
    fgi_kv_pool *pool = scattered_pool(&cfg, 8, 4, &rng);
    fgi_cpu_batch *batch;
    fgi_cpu_runner *runner;
    ok(fgi_cpu_batch_create("test", &batch, &cfg, &tm.w, 64, 2, FGI_CPU_ISA_AUTO), "batch");
    ok(fgi_cpu_runner_create("test", &runner, &cfg, &tm.w, 64, 2, FGI_CPU_ISA_AUTO), "runner");
    fgi_kv_seq kv;
    ok(fgi_kv_seq_init("test", &kv, pool, 64), "seq");
    float *got = fgi_buf_nan((size_t)V), *want = fgi_buf_nan((size_t)V);
    for (int t = 0; t < len; t++) {
        ok(fgi_kv_seq_reserve("test", &kv, pool, t + 1), "reserve");
        fgi_batch_seq one = {ids + t, 1, t, kv.blocks, kv.n_blocks, got, 0, 0};
        ok(fgi_cpu_batch_forward("test", batch, pool, &one, 1), "batched step");
        ok(fgi_cpu_forward(runner, want, 1, ids + t, 1), "single step");
        fgi_assert_close(got, want, (size_t)V, ATOL, RTOL, L2, "decode step");
    }
    fgi_buf_free(got), fgi_buf_free(want);
    fgi_kv_seq_release(&kv, pool);
    fgi_kv_seq_free(&kv);
    fgi_cpu_runner_destroy(runner);
    fgi_cpu_batch_destroy(batch);
    fgi_kv_pool_destroy(pool);
    fgi_test_model_free(&tm);
}

/* Refused batches: the message names the problem, no logits are written. */
Test(batch_forward, refuses_bad_batches)
{
    fgi_rng rng = fgi_rng_make(4);
    const fg_config cfg = fgi_test_gpt2_config(1, 32, 2, 2, 0, 0, 50, 16);
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 0);
    fgi_kv_pool *pool;
    ok(fgi_kv_pool_create("test", &pool, &cfg, 4, 4), "pool");
    fgi_cpu_batch *batch;
    ok(fgi_cpu_batch_create("test", &batch, &cfg, &tm.w, 16, 1, FGI_CPU_ISA_AUTO), "batch");
    int32_t blocks[4];
    ok(fgi_kv_pool_alloc("test", pool, 2, blocks), "alloc");
    blocks[2] = 3; /* never allocated */
    int ids[8] = {1, 2, 3, 4, 5, 6, 7, 49};
    float *logits = fgi_buf_nan(50);
    const fgi_batch_seq good = {ids, 8, 0, blocks, 2, logits, 0, 8};
    struct {
        fgi_batch_seq s;
        const char *needle;
    } bad[] = {
        {{ids, 0, 0, blocks, 2, logits, 0, 0}, "new tokens"},
        {{NULL, 1, 0, blocks, 2, logits, 0, 0}, "ids NULL"},
        {{ids, 8, 9, blocks, 3, logits, 0, 0}, "do not fit"},
        {{ids, 8, 0, blocks, 1, logits, 0, 0}, "block table has 1 of the 2"},
        {{ids, 8, 4, blocks, 3, logits, 0, 0}, "not an allocated block"},
        {{ids, 1, -1, blocks, 2, logits, 0, 0}, "position -1"},
        {{ids, 1, 0, blocks, 2, logits, 0, -1}, "n_prompt -1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fgi_assert_status(fgi_cpu_batch_forward("test", batch, pool, &bad[i].s, 1),
                          FG_ERR_INVALID_ARG, bad[i].needle);
        fgi_assert_status(fgi_ref_forward_batch("test", &cfg, &tm.w, pool, &bad[i].s, 1),
                          FG_ERR_INVALID_ARG, bad[i].needle);
    }
    ids[7] = 50;
    fgi_assert_status(fgi_cpu_batch_forward("test", batch, pool, &good, 1), FG_ERR_INVALID_ARG,
                      "outside the vocabulary");
    ids[7] = 49;
    fgi_assert_status(fgi_cpu_batch_forward("test", batch, pool, &good, 0), FG_ERR_INVALID_ARG,
                      "n_seqs");
    ok(fgi_kv_pool_retain("test", pool, blocks[1]), "share");
    fgi_assert_status(fgi_cpu_batch_forward("test", batch, pool, &good, 1), FG_ERR_INVALID_ARG,
                      "shared");
    for (int i = 0; i < 50; i++) cr_assert(logits[i] != logits[i], "no logits written");
    ok(fgi_kv_pool_release("test", pool, blocks[1]), "unshare");
    ok(fgi_cpu_batch_forward("test", batch, pool, &good, 1), "the good batch");
    fgi_buf_free(logits);
    fgi_cpu_batch_destroy(batch);
    fgi_kv_pool_destroy(pool);
    fgi_test_model_free(&tm);
}
