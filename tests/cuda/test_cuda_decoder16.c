/* The GPU decoder in bf16 and f16 (fg_cuda_weights_create_typed) against
 * the exact CPU reference run on the same weights rounded to the element
 * type: GPT-2 (MHA, GQA + RoPE, MQA + RoPE, learned positions) and Llama
 * (GQA / MQA, tied and untied; Llama-3 scaled RoPE; a Qwen2-style q|k|v
 * bias with a sliding window from layer 1; a Mistral-style window of 5
 * keys in every layer, smaller than the 7-token prompt), a prefill, decode
 * steps and a chunk, the logits and every layer's cached keys and values
 * after each call.
 *
 * Bound: the 16-bit rule (docs/contract.md §32, fgi_assert_16bit_rule):
 * the error against the exact reference at most twice the naive 16-bit
 * decoder's (fgi_ref_forward_naive16: every op boundary rounded, as a
 * framework running the model in the type), relative L2 <= 2e-2. The
 * naive decoder runs on its own cache, so its error compounds over the
 * calls as a framework's would. One-token steps must have replayed the
 * captured decode graph. Argument tests (dtype mismatch, bad dtype,
 * head_dim without a 16-bit kernel) need no device.
 * FG_TEST_QUICK=1 keeps three models and shorter call sequences. */
#include "fixture.h"
#include "gpu_support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define L2_16 2e-2

static void ok(fg_status st, const char *what)
{
    cr_assert(st == FG_OK, "%s: %s: %s (seed %llu)", what, fg_status_str(st),
              fg_last_error(), (unsigned long long)fgi_test_seed());
}

typedef struct {
    const char *name;
    fg_config cfg;
    int untied;
    int qkv_bias; /* Llama with a q|k|v bias (Qwen2) */
} decoder_case;

enum { MAX_CASES = 12 };

static int make_cases(decoder_case *cases)
{
    /* Llama-3's rope_scaling with an original context whose wavelengths
     * split d 32's frequencies into kept, blended and divided ones */
    fg_config scaled = fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64);
    scaled.rope_scaling = FG_ROPE_LLAMA3;
    scaled.rope_factor = 8.0;
    scaled.rope_low_freq_factor = 1.0;
    scaled.rope_high_freq_factor = 4.0;
    scaled.rope_original_ctx = 64;
    fg_config qwen = fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64);
    qwen.sliding_window = 6;
    qwen.window_first_layer = 1; /* max_window_layers: layer 0 sees everything */
    fg_config mistral = fgi_test_llama_config(2, 256, 8, 2, 344, 0, 257, 64);
    mistral.sliding_window = 5; /* below the 7-token prompt */
    int n = 0;
    cases[n++] = (decoder_case){"gpt2 MHA, learned positions, d 32",
                                fgi_test_gpt2_config(2, 64, 2, 2, 0, 0, 101, 40), 0, 0};
    cases[n++] = (decoder_case){"gpt2 GQA 4/2 + RoPE, d 32",
                                fgi_test_gpt2_config(2, 128, 4, 2, 1, 0, 97, 40), 0, 0};
    cases[n++] = (decoder_case){"gpt2 MQA + RoPE, d 32",
                                fgi_test_gpt2_config(2, 128, 4, 1, 1, 0, 89, 40), 0, 0};
    cases[n++] = (decoder_case){"llama GQA 4/2, tied, d 32",
                                fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64), 0, 0};
    cases[n++] = (decoder_case){"llama GQA 8/2, untied, d 32",
                                fgi_test_llama_config(2, 256, 8, 2, 344, 0, 257, 64), 1, 0};
    cases[n++] = (decoder_case){"llama MQA, untied, d 64",
                                fgi_test_llama_config(2, 256, 4, 1, 300, 0, 97, 64), 1, 0};
    cases[n++] = (decoder_case){"llama GQA 4/2, llama3 scaled RoPE, d 32", scaled, 0, 0};
    cases[n++] = (decoder_case){"qwen2 q|k|v bias, window 6 from layer 1, d 32", qwen, 1, 1};
    cases[n++] = (decoder_case){"mistral GQA 8/2, window 5, d 32", mistral, 1, 0};
    if (fgi_test_quick()) {
        static const int keep[] = {0, 2, 4, 6, 7, 8};
        n = (int)(sizeof keep / sizeof *keep);
        for (int k = 0; k < n; k++) cases[k] = cases[keep[k]];
    }
    return n;
}

/* Relative L2 of got against ref over n values, with no NaN / inf. */
static void expect_l2(const float *got, const float *ref, size_t n, const char *what)
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
    cr_assert(rel <= L2_16, "%s: relative L2 %.3g > %.3g (seed %llu)", what, rel, L2_16,
              (unsigned long long)fgi_test_seed());
}

static void expect_cache(fg_dtype dtype, const fg_cuda_kv_cache *cache, const fg_kv_cache *ref,
                         const fg_kv_cache *naive, const char *what)
{
    const int n_kv = ref->n_kv_head, d = ref->head_dim, cap = ref->capacity;
    const int gcap = fg_cuda_kv_cache_capacity(cache);
    const size_t n = (size_t)n_kv * gcap * d;
    float *k = fgi_buf_nan(n), *v = fgi_buf_nan(n);
    for (int l = 0; l < ref->n_layer; l++) {
        ok(fgi_cuda_kv_cache_read(cache, l, k, v), what);
        const size_t rows = (size_t)ref->layers[l].len * d;
        for (int g = 0; g < n_kv; g++) {
            char w[300];
            snprintf(w, sizeof w, "%s: keys of layer %d, kv head %d", what, l, g);
            fgi_assert_16bit_rule(dtype, k + (size_t)g * gcap * d,
                                  ref->layers[l].k + (size_t)g * cap * d,
                                  naive->layers[l].k + (size_t)g * cap * d, rows, w);
            snprintf(w, sizeof w, "%s: values of layer %d, kv head %d", what, l, g);
            fgi_assert_16bit_rule(dtype, v + (size_t)g * gcap * d,
                                  ref->layers[l].v + (size_t)g * cap * d,
                                  naive->layers[l].v + (size_t)g * cap * d, rows, w);
        }
    }
    fgi_buf_free(k), fgi_buf_free(v);
}

static void run_case(const decoder_case *c, fg_dtype dtype, fgi_rng *rng, const int *chunks,
                     int n_chunks)
{
    const fg_config *cfg = &c->cfg;
    const int V = cfg->vocab_size, capacity = 30;
    fgi_test_model tm;
    fgi_test_model_init(&tm, cfg, rng, c->untied);
    float *qkv_bias[8] = {0};
    cr_assert(cfg->n_layer <= 8);
    for (int l = 0; c->qkv_bias && l < cfg->n_layer; l++) {
        qkv_bias[l] = fgi_buf_normal(rng, (size_t)fg_config_qkv_width(cfg), 0.3);
        tm.layers[l].c_attn_b = qkv_bias[l];
    }
    fgi_test_model_round(&tm, dtype);
    fg_kv_cache *ref_cache, *naive_cache;
    fg_cuda_weights *weights;
    fg_cuda_runner *runner;
    fg_cuda_kv_cache *cache;
    ok(fg_kv_cache_create(&ref_cache, cfg, capacity), "reference cache");
    ok(fg_kv_cache_create(&naive_cache, cfg, capacity), "naive cache");
    ok(fg_cuda_weights_create_typed(&weights, cfg, &tm.w, dtype), c->name);
    cr_assert_eq(fg_cuda_weights_dtype(weights), dtype);
    ok(fg_cuda_runner_create(&runner, weights, 8, 0), c->name);
    ok(fg_cuda_kv_cache_create_typed(&cache, cfg->n_layer, cfg->n_kv_head,
                                     fg_config_head_dim(cfg), capacity, dtype),
       c->name);
    cr_assert_eq(fg_cuda_kv_cache_dtype(cache), dtype);
    for (int k = 0; k < n_chunks; k++) {
        const int T = chunks[k], last_only = k % 2 == 1;
        const size_t n = (size_t)(last_only ? 1 : T) * V;
        int ids[64];
        fgi_test_random_ids(ids, T, V, rng);
        float *ref = fgi_buf_nan(n), *got = fgi_buf_nan(n);
        float *naive = fgi_buf_nan((size_t)T * V);
        char what[240];
        snprintf(what, sizeof what, "%s, %s: call %d (T %d after %d cached)", c->name,
                 fg_dtype_name(dtype), k, T, fg_cuda_kv_cache_len(cache, 0));
        if (last_only) {
            ok(fg_ref_forward_last(ref, cfg, &tm.w, ref_cache, ids, T), "reference");
            ok(fg_cuda_forward_last(got, runner, cache, ids, T), what);
        } else {
            ok(fg_ref_forward(ref, NULL, cfg, &tm.w, ref_cache, ids, T), "reference");
            ok(fg_cuda_forward(got, NULL, runner, cache, ids, T), what);
        }
        ok(fgi_ref_forward_naive16(dtype, naive, cfg, &tm.w, naive_cache, ids, T), "naive");
        fgi_assert_guard(got, n, what);
        /* forward_last: the naive decoder's last row */
        fgi_assert_16bit_rule(dtype, got, ref, naive + ((size_t)T * V - n), n, what);
        expect_l2(got, ref, n, what);
        cr_assert_eq(fg_cuda_kv_cache_len(cache, 0), ref_cache->layers[0].len, "%s", what);
        expect_cache(dtype, cache, ref_cache, naive_cache, what);
        fgi_buf_free(ref), fgi_buf_free(got), fgi_buf_free(naive);
    }
    /* every one-token forward_last is a replay of the captured step (the
     * split-KV decode kernel reading its key count from the device) */
    long long steps = 0;
    for (int k = 1; k < n_chunks; k += 2) steps += chunks[k] == 1;
    cr_assert_eq(fgi_cuda_kv_cache_graph_steps(cache), steps, "%s, %s: %lld graph steps of %lld",
                 c->name, fg_dtype_name(dtype), fgi_cuda_kv_cache_graph_steps(cache), steps);
    fg_cuda_kv_cache_destroy(cache);
    fg_cuda_runner_destroy(runner);
    fg_cuda_weights_destroy(weights);
    fg_kv_cache_destroy(ref_cache);
    fg_kv_cache_destroy(naive_cache);
    fgi_test_model_free(&tm);
    for (int l = 0; l < 8; l++) fgi_buf_free(qkv_bias[l]);
}

Test(cuda_decoder16, prefill_and_steps_within_16bit_bound)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(1601);
    decoder_case cases[MAX_CASES];
    const int n_cases = make_cases(cases);
    const int chunks[] = {7, 1, 1, 1, 3, 1, 8, 1}, quick_chunks[] = {7, 1, 3, 1};
    const fg_dtype types[] = {FG_DTYPE_BF16, FG_DTYPE_F16};
    for (int i = 0; i < n_cases; i++)
        for (int t = 0; t < 2; t++) {
            if (fgi_test_quick())
                run_case(&cases[i], types[t], &rng, quick_chunks, 4);
            else
                run_case(&cases[i], types[t], &rng, chunks, (int)(sizeof chunks / sizeof *chunks));
        }
}

/* Refusals need no device: they come before any. */
Test(cuda_decoder16, refuses_bad_dtype_and_head_dim)
{
    fgi_rng rng = fgi_rng_make(1602);
    fg_config cfg = fgi_test_gpt2_config(1, 64, 4, 4, 0, 0, 50, 16); /* head_dim 16 */
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 0);
    fg_cuda_weights *w = NULL;
    fg_status st = fg_cuda_weights_create_typed(&w, &cfg, &tm.w, FG_DTYPE_BF16);
    /* without CUDA the stub's FG_ERR_UNSUPPORTED, with it the head_dim's */
    cr_assert(st == FG_ERR_UNSUPPORTED && w == NULL, "head_dim 16 in bf16: %s",
              fg_last_error());
    fgi_expect_refused(fg_cuda_weights_create_typed(&w, &cfg, &tm.w, (fg_dtype)7), "dtype");
    cr_assert(w == NULL);
    fg_cuda_kv_cache *cache = NULL;
    fgi_expect_refused(fg_cuda_kv_cache_create_typed(&cache, 1, 1, 32, 8, (fg_dtype)-1),
                       "dtype");
    cr_assert(cache == NULL);
    fgi_test_model_free(&tm);
}

/* A runner never reads a cache of another element type. */
Test(cuda_decoder16, refuses_cache_of_other_type)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(1603);
    fg_config cfg = fgi_test_gpt2_config(1, 64, 2, 2, 0, 0, 50, 16);
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 0);
    fg_cuda_weights *w;
    fg_cuda_runner *r;
    fg_cuda_kv_cache *cache;
    ok(fg_cuda_weights_create_typed(&w, &cfg, &tm.w, FG_DTYPE_BF16), "weights");
    ok(fg_cuda_runner_create(&r, w, 4, 0), "runner");
    ok(fg_cuda_kv_cache_create_typed(&cache, 1, 2, 32, 8, FG_DTYPE_F16), "cache");
    int ids[2] = {1, 2};
    float *logits = fgi_buf_nan((size_t)2 * cfg.vocab_size);
    fgi_expect_refused(fg_cuda_forward(logits, NULL, r, cache, ids, 2), "holds f16");
    cr_assert_eq(fg_cuda_kv_cache_len(cache, 0), 0);
    fgi_buf_free(logits);
    fg_cuda_kv_cache_destroy(cache);
    fg_cuda_runner_destroy(r);
    fg_cuda_weights_destroy(w);
    fgi_test_model_free(&tm);
}

/* fg_cuda_block on a 16-bit runner (what verify --layers runs): the fp32
 * residual stream in and out, each layer fed the reference's input, within
 * the 16-bit ceiling of the exact block on the same rounded weights. */
Test(cuda_decoder16, block_fed_reference_input_within_bound)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(1604);
    const fg_config cfg = fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64);
    const int T = 6, C = cfg.n_embd;
    const size_t n = (size_t)T * C;
    fgi_test_model tm;
    fgi_test_model_init(&tm, &cfg, &rng, 0);
    fgi_test_model_round(&tm, FG_DTYPE_BF16);
    fg_cuda_weights *w;
    fg_cuda_runner *r;
    fg_cuda_kv_cache *cache;
    fg_kv_cache *ref_cache;
    ok(fg_cuda_weights_create_typed(&w, &cfg, &tm.w, FG_DTYPE_BF16), "weights");
    ok(fg_cuda_runner_create(&r, w, T, 0), "runner");
    ok(fg_cuda_kv_cache_create_typed(&cache, cfg.n_layer, cfg.n_kv_head, fg_config_head_dim(&cfg),
                                     T, FG_DTYPE_BF16),
       "cache");
    ok(fg_kv_cache_create(&ref_cache, &cfg, T), "reference cache");
    float *x = fgi_buf_normal(&rng, n, 1.0), *ref = fgi_buf_nan(n);
    float *dev = fgi_dev_poisoned(n), *out = fgi_dev_poisoned(n);
    /* the attention layer's x and out are fp32 rows: fp32 weights only */
    fgi_assert_status(fg_cuda_attention_layer(out, dev, T, r, cache, 0), FG_ERR_UNSUPPORTED,
                      "fp32 weights only");
    cr_assert_eq(fg_cuda_kv_cache_len(cache, 0), 0);
    for (int l = 0; l < cfg.n_layer; l++) {
        memcpy(ref, x, sizeof(float) * n);
        ok(fg_ref_block(ref, T, &cfg, &tm.w.layers[l], ref_cache, l), "reference block");
        ok(fg_cuda_upload(dev, x, sizeof(float) * n), "upload");
        ok(fg_cuda_block(dev, T, r, cache, l), "block");
        float *got = fgi_dev_download(dev, n);
        char what[80];
        snprintf(what, sizeof what, "bf16 block, layer %d", l);
        expect_l2(got, ref, n, what);
        fgi_buf_free(got);
        memcpy(x, ref, sizeof(float) * n);
    }
    fgi_dev_free(dev), fgi_dev_free(out);
    fgi_buf_free(x), fgi_buf_free(ref);
    fg_kv_cache_destroy(ref_cache);
    fg_cuda_kv_cache_destroy(cache);
    fg_cuda_runner_destroy(r);
    fg_cuda_weights_destroy(w);
    fgi_test_model_free(&tm);
}

/* Weights generated on the card (the bench presets too large for a host
 * copy): deterministic for a seed, different for another, finite logits
 * in every type and family; a session made on them runs. */
Test(cuda_decoder16, random_device_weights_are_deterministic)
{
    fgi_require_gpu();
    const fg_config cfgs[] = {fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 32),
                              fgi_test_gpt2_config(2, 64, 2, 2, 0, 0, 101, 32)};
    const fg_dtype types[] = {FG_DTYPE_F32, FG_DTYPE_BF16, FG_DTYPE_F16};
    const int ids[3] = {1, 7, 30};
    for (int c = 0; c < 2; c++)
        for (int t = 0; t < 3; t++) {
            const fg_config *cfg = &cfgs[c];
            const size_t V = (size_t)cfg->vocab_size;
            float *out[3];
            for (int run = 0; run < 3; run++) { /* seeds 5, 5, 6 */
                fg_cuda_weights *w;
                fg_cuda_runner *r;
                fg_cuda_kv_cache *cache;
                ok(fg_cuda_weights_create_random(&w, cfg, types[t], run < 2 ? 5 : 6), "random");
                cr_assert_eq(fg_cuda_weights_dtype(w), types[t]);
                ok(fg_cuda_runner_create(&r, w, 4, 0), "runner");
                ok(fg_cuda_kv_cache_create_typed(&cache, cfg->n_layer, cfg->n_kv_head,
                                                 fg_config_head_dim(cfg), 8, types[t]),
                   "cache");
                out[run] = fgi_buf_nan(V);
                ok(fg_cuda_forward_last(out[run], r, cache, ids, 3), "forward");
                for (size_t i = 0; i < V; i++)
                    cr_assert(isfinite(out[run][i]), "%s: logit %zu is %g",
                              fg_dtype_name(types[t]), i, out[run][i]);
                fg_cuda_kv_cache_destroy(cache);
                fg_cuda_runner_destroy(r);
                fg_cuda_weights_destroy(w);
            }
            fgi_assert_same(out[0], out[1], sizeof(float) * V, "the same seed");
            cr_assert(memcmp(out[0], out[2], sizeof(float) * V) != 0, "another seed differs");
            for (int run = 0; run < 3; run++) fgi_buf_free(out[run]);
        }
    fg_session *s;
    ok(fg_session_create_random(&s, &cfgs[0], 8, FG_DTYPE_BF16, 1), "random session");
    cr_assert_eq(fg_session_dtype(s), FG_DTYPE_BF16);
    const int one = 3;
    ok(fg_session_forward(s, &one, 1, NULL), "session forward");
    cr_assert_not_null(fg_session_logits(s));
    fg_session_destroy(s);
}

/* fg_cuda_block_probe (verify --layers' per-operation errors) in 16 bits:
 * every operation's output in order and shape, the block's output the
 * same as fg_cuda_block's within the 16-bit ceiling of the exact block,
 * and the cache appended once; a NULL probe is refused before any work. */
typedef struct {
    char ops[20][16];
    int rows[20], cols[20], n;
    float *last; /* residual_2 */
} probe_log;

static void log_probe(void *user, const char *op, const float *values, int rows, int cols)
{
    probe_log *p = user;
    cr_assert(p->n < 20, "too many probe points");
    snprintf(p->ops[p->n], sizeof p->ops[0], "%s", op);
    p->rows[p->n] = rows;
    p->cols[p->n++] = cols;
    for (int i = 0; i < rows * cols; i++)
        cr_assert(isfinite(values[i]), "%s: value %d is %g", op, i, values[i]);
    if (strcmp(op, "residual_2") == 0) {
        fgi_buf_free(p->last);
        p->last = fgi_buf_copy(values, (size_t)rows * cols);
    }
}

Test(cuda_decoder16, block_probe_reports_every_operation)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(1605);
    const fg_config cfgs[] = {fgi_test_llama_config(2, 128, 4, 2, 200, 0, 131, 64),
                              fgi_test_gpt2_config(2, 128, 4, 2, 1, 0, 97, 40)};
    static const char *llama_ops[] = {"attn_norm", "qkv", "q_rope", "k_cache", "v_cache",
                                      "attention", "attn_proj", "residual", "ffn_norm",
                                      "gate_up", "activation", "down", "residual_2"};
    static const char *gpt2_ops[] = {"attn_norm", "qkv", "q_rope", "k_cache", "v_cache",
                                     "attention", "attn_proj", "residual", "ffn_norm",
                                     "up_gelu", "down", "residual_2"};
    for (int c = 0; c < 2; c++) {
        const fg_config *cfg = &cfgs[c];
        const int T = 6, C = cfg->n_embd, llama = cfg->arch == FG_ARCH_LLAMA;
        const size_t n = (size_t)T * C;
        fgi_test_model tm;
        fgi_test_model_init(&tm, cfg, &rng, 0);
        fgi_test_model_round(&tm, FG_DTYPE_BF16);
        fg_cuda_weights *w;
        fg_cuda_runner *r;
        fg_cuda_kv_cache *cache;
        fg_kv_cache *ref_cache;
        ok(fg_cuda_weights_create_typed(&w, cfg, &tm.w, FG_DTYPE_BF16), "weights");
        ok(fg_cuda_runner_create(&r, w, T, 0), "runner");
        ok(fg_cuda_kv_cache_create_typed(&cache, cfg->n_layer, cfg->n_kv_head,
                                         fg_config_head_dim(cfg), T, FG_DTYPE_BF16),
           "cache");
        ok(fg_kv_cache_create(&ref_cache, cfg, T), "reference cache");
        float *x = fgi_buf_normal(&rng, n, 1.0), *ref = fgi_buf_copy(x, n);
        float *dev = fgi_dev_upload(x, n);
        probe_log log;
        memset(&log, 0, sizeof log);
        fgi_expect_refused(fg_cuda_block_probe(dev, T, r, cache, 0, NULL, &log), "'probe'");
        cr_assert_eq(fg_cuda_kv_cache_len(cache, 0), 0);
        ok(fg_cuda_block_probe(dev, T, r, cache, 0, log_probe, &log), "probe");
        cr_assert_eq(fg_cuda_kv_cache_len(cache, 0), T);
        const char **want = llama ? llama_ops : gpt2_ops;
        const int n_want = llama ? 13 : 12;
        cr_assert_eq(log.n, n_want, "%d probe points", log.n);
        for (int i = 0; i < n_want; i++) {
            cr_assert_str_eq(log.ops[i], want[i]);
            cr_assert_eq(log.rows[i], T, "%s rows", want[i]);
        }
        ok(fg_ref_block(ref, T, cfg, &tm.w.layers[0], ref_cache, 0), "reference block");
        float *got = fgi_dev_download(dev, n);
        fgi_assert_same(got, log.last, sizeof(float) * n, "residual_2 is the block's output");
        expect_l2(got, ref, n, llama ? "probed llama block" : "probed gpt2 block");
        fgi_buf_free(got), fgi_buf_free(log.last);
        fgi_dev_free(dev);
        fgi_buf_free(x), fgi_buf_free(ref);
        fg_kv_cache_destroy(ref_cache);
        fg_cuda_kv_cache_destroy(cache);
        fg_cuda_runner_destroy(r);
        fg_cuda_weights_destroy(w);
        fgi_test_model_free(&tm);
    }
}
