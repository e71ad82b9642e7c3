/* Decoder (docs/contract.md §16-§18): attention layer with KV cache, block, forward; both
 * model families; prefill vs incremental; flash vs dense; bad input. */
#include "fixture.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { VOCAB = 53, CTX = 40 };

static fg_config gpt2_cfg(void) { return fg_config_gpt2(2, 32, 4, VOCAB, CTX); }

static fg_config gpt2_gqa_rope_cfg(void)
{
    fg_config c = fg_config_gpt2(2, 48, 6, VOCAB, CTX);
    c.n_kv_head = 2;
    c.use_rope = 1;
    c.rope_base = 500.0;
    c.n_inner = 70; /* any width works */
    return c;
}

static fg_config llama_cfg(void) { return fg_config_llama(3, 32, 8, 2, 56, VOCAB, CTX); }

static float *run_forward(const fgi_test_model *m, fg_kv_cache *cache, const int *ids, int T)
{
    float *logits = fgi_buf_nan((size_t)T * m->cfg.vocab_size);
    fg_status st = fg_ref_forward(logits, NULL, &m->cfg, &m->w, cache, ids, T);
    cr_assert_eq(st, FG_OK, "fg_ref_forward: %s", fg_last_error());
    fgi_assert_guard(logits, (size_t)T * m->cfg.vocab_size, "logits");
    return logits;
}

/* Feeds ids in chunks of the given sizes and returns all logits (T, V). */
static float *run_chunked(const fgi_test_model *m, const int *ids, const int *chunks, int n_chunks)
{
    int T = 0;
    for (int i = 0; i < n_chunks; i++) T += chunks[i];
    const size_t V = (size_t)m->cfg.vocab_size;
    float *all = fgi_buf_nan((size_t)T * V);
    fg_kv_cache *cache;
    cr_assert_eq(fg_kv_cache_create(&cache, &m->cfg, T), FG_OK);
    for (int i = 0, at = 0; i < n_chunks; at += chunks[i++]) {
        float *part = run_forward(m, cache, ids + at, chunks[i]);
        memcpy(all + (size_t)at * V, part, sizeof(float) * chunks[i] * V);
        fgi_buf_free(part);
        cr_assert_eq(cache->layers[m->cfg.n_layer - 1].len, at + chunks[i]);
    }
    fg_kv_cache_destroy(cache);
    return all;
}

static void check_prefill_equals_incremental(fg_config cfg, int untied, uint64_t stream)
{
    fgi_rng rng = fgi_rng_make(stream);
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, untied);
    const int T = 13;
    int ids[13], ones[13], chunks[4] = {4, 1, 6, 2};
    fgi_test_random_ids(ids, T, cfg.vocab_size, &rng);
    for (int i = 0; i < T; i++) ones[i] = 1;
    float *prefill = run_chunked(&m, ids, &T, 1);
    float *single = run_chunked(&m, ids, ones, T);
    float *mixed = run_chunked(&m, ids, chunks, 4);
    const size_t n = (size_t)T * cfg.vocab_size;
    fgi_assert_close(single, prefill, n, 1e-5, 1e-5, 1e-6, "one token at a time vs prefill");
    fgi_assert_close(mixed, prefill, n, 1e-5, 1e-5, 1e-6, "chunks 4+1+6+2 vs prefill");
    /* logits must depend on the input: a different last token changes them */
    ids[T - 1] = (ids[T - 1] + 1) % cfg.vocab_size;
    float *other = run_chunked(&m, ids, &T, 1);
    cr_assert(memcmp(other, prefill, sizeof(float) * (n - cfg.vocab_size)) == 0,
              "earlier rows cannot see the last token");
    cr_assert(fgi_max_abs_diff(other + n - cfg.vocab_size, prefill + n - cfg.vocab_size,
                              cfg.vocab_size) > 1e-4, "the last row sees its token");
    fgi_buf_free(prefill), fgi_buf_free(single), fgi_buf_free(mixed), fgi_buf_free(other);
    fgi_test_model_free(&m);
}

Test(decoder, gpt2_prefill_equals_incremental) { check_prefill_equals_incremental(gpt2_cfg(), 0, 40); }
Test(decoder, gpt2_gqa_rope_prefill_equals_incremental)
{
    check_prefill_equals_incremental(gpt2_gqa_rope_cfg(), 0, 41);
}
Test(decoder, llama_prefill_equals_incremental) { check_prefill_equals_incremental(llama_cfg(), 0, 42); }
Test(decoder, llama_untied_prefill_equals_incremental)
{
    check_prefill_equals_incremental(llama_cfg(), 1, 43);
}
Test(decoder, flash_prefill_equals_incremental)
{
    fg_config c = gpt2_gqa_rope_cfg();
    c.use_flash = 1;
    c.flash_block = 3;
    check_prefill_equals_incremental(c, 0, 44);
}

Test(decoder, window_prefill_equals_incremental)
{
    fg_config c = llama_cfg();
    c.sliding_window = 4;
    c.window_first_layer = 1;
    check_prefill_equals_incremental(c, 1, 57);
    c.use_flash = 1;
    c.flash_block = 3;
    c.window_first_layer = 0;
    check_prefill_equals_incremental(c, 0, 58);
}

/* A window that covers every key is no window, bit for bit; a shorter one
 * changes exactly the rows past it (rows p < W see every key either way),
 * and only from the first windowed layer on. */
Test(decoder, window_of_the_context_is_no_window)
{
    fgi_rng rng = fgi_rng_make(59);
    fg_config c = llama_cfg();
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 0);
    const int T = 17, chunks[2] = {11, 6};
    const size_t V = VOCAB;
    int ids[17];
    fgi_test_random_ids(ids, T, VOCAB, &rng);
    float *none = run_chunked(&m, ids, chunks, 2);
    const int wide[] = {T, T + 1, CTX, 1 << 30};
    for (int i = 0; i < 4; i++) {
        m.cfg.sliding_window = wide[i];
        m.cfg.window_first_layer = i % 2;
        float *w = run_chunked(&m, ids, chunks, 2);
        fgi_assert_same(w, none, sizeof(float) * T * V, "window >= context vs none");
        fgi_buf_free(w);
    }
    m.cfg.sliding_window = 5;
    m.cfg.window_first_layer = 0;
    float *w = run_chunked(&m, ids, chunks, 2);
    fgi_assert_same(w, none, sizeof(float) * 5 * V, "rows inside the window");
    for (int t = 5; t < T; t++)
        cr_assert(fgi_max_abs_diff(w + t * V, none + t * V, V) > 1e-6,
                  "row %d is past the window and must change", t);
    fgi_buf_free(w);
    m.cfg.window_first_layer = c.n_layer; /* no layer has it */
    w = run_chunked(&m, ids, chunks, 2);
    fgi_assert_same(w, none, sizeof(float) * T * V, "window from a layer past the last");
    fgi_buf_free(w), fgi_buf_free(none);
    fgi_test_model_free(&m);
}

Test(decoder, flash_on_and_off_agree)
{
    const fg_config bases[] = {gpt2_cfg(), gpt2_gqa_rope_cfg(), llama_cfg()};
    fgi_rng rng = fgi_rng_make(45);
    for (int b = 0; b < 3; b++) {
        fgi_test_model m;
        fgi_test_model_init(&m, &bases[b], &rng, 0);
        const int T = 17, chunks[2] = {11, 6};
        int ids[17];
        fgi_test_random_ids(ids, T, VOCAB, &rng);
        float *dense = run_chunked(&m, ids, chunks, 2);
        const int blocks[] = {1, 2, 5, 16, 17, 64};
        for (int i = 0; i < 6; i++) {
            m.cfg.use_flash = 1;
            m.cfg.flash_block = blocks[i];
            float *flash = run_chunked(&m, ids, chunks, 2);
            fgi_assert_close(flash, dense, (size_t)T * VOCAB, 1e-5, 1e-5, 1e-6, "flash vs dense");
            fgi_buf_free(flash);
        }
        fgi_buf_free(dense);
        fgi_test_model_free(&m);
    }
}

Test(decoder, probs_are_softmax_of_logits)
{
    fgi_rng rng = fgi_rng_make(46);
    fg_config cfg = llama_cfg();
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 1);
    const int T = 5;
    int ids[5];
    fgi_test_random_ids(ids, T, VOCAB, &rng);
    fg_kv_cache *cache;
    cr_assert_eq(fg_kv_cache_create(&cache, &cfg, 8), FG_OK);
    float *logits = fgi_buf_nan((size_t)T * VOCAB), *probs = fgi_buf_nan((size_t)T * VOCAB);
    float *expect = fgi_buf_nan((size_t)T * VOCAB);
    cr_assert_eq(fg_ref_forward(logits, probs, &cfg, &m.w, cache, ids, T), FG_OK);
    cr_assert_eq(fg_ref_softmax(expect, logits, T, VOCAB, 1), FG_OK);
    fgi_assert_same(probs, expect, sizeof(float) * T * VOCAB, "probs");
    fgi_assert_guard(probs, (size_t)T * VOCAB, "probs");
    /* after a reset the same tokens give the same logits */
    float *again = fgi_buf_nan((size_t)T * VOCAB);
    cr_assert_eq(fg_kv_cache_reset(cache), FG_OK);
    cr_assert_eq(fg_ref_forward(again, NULL, &cfg, &m.w, cache, ids, T), FG_OK);
    fgi_assert_same(again, logits, sizeof(float) * T * VOCAB, "logits after reset");
    fg_kv_cache_destroy(cache);
    fgi_buf_free(logits), fgi_buf_free(probs), fgi_buf_free(expect), fgi_buf_free(again);
    fgi_test_model_free(&m);
}

/* docs/contract.md §16 rebuilt from the public operations: linear, split heads, RoPE at
 * positions L.., GQA over the whole history, merge heads, linear. */
static void check_layer_against_ops(fg_config cfg, uint64_t stream)
{
    fgi_rng rng = fgi_rng_make(stream);
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 0);
    const int C = cfg.n_embd, nh = cfg.n_head, nkv = cfg.n_kv_head, d = fg_config_head_dim(&cfg);
    const int qkv_w = fg_config_qkv_width(&cfg), steps[3] = {5, 1, 3}, total = 9;
    const fg_layer_weights *lw = &m.layers[1];
    fg_kv_cache *cache;
    cr_assert_eq(fg_kv_cache_create(&cache, &cfg, total), FG_OK);
    float *k_hist = fgi_buf_nan((size_t)nkv * total * d), *v_hist = fgi_buf_nan((size_t)nkv * total * d);
    for (int s = 0, L = 0; s < 3; L += steps[s++]) {
        const int T = steps[s], kv_len = L + T;
        float *x = fgi_buf_normal(&rng, (size_t)T * C, 1.0), *out = fgi_buf_nan((size_t)T * C);
        cr_assert_eq(fg_ref_attention_layer(out, x, T, &cfg, lw, cache, 1), FG_OK, "%s",
                     fg_last_error());
        cr_assert_eq(cache->layers[1].len, kv_len);
        cr_assert_eq(cache->layers[0].len, 0, "other layers untouched");

        float *qkv = fgi_buf_nan((size_t)T * qkv_w), *qh = fgi_buf_nan((size_t)nh * T * d);
        float *kh = fgi_buf_nan((size_t)nkv * T * d), *vh = fgi_buf_nan((size_t)nkv * T * d);
        cr_assert_eq(fg_ref_linear(qkv, x, lw->c_attn_w, lw->c_attn_b, T, C, qkv_w), FG_OK);
        float *q_part = fgi_buf_nan((size_t)T * nh * d), *k_part = fgi_buf_nan((size_t)T * nkv * d);
        float *v_part = fgi_buf_nan((size_t)T * nkv * d);
        for (int t = 0; t < T; t++) {
            memcpy(q_part + (size_t)t * nh * d, qkv + (size_t)t * qkv_w, sizeof(float) * nh * d);
            memcpy(k_part + (size_t)t * nkv * d, qkv + (size_t)t * qkv_w + nh * d, sizeof(float) * nkv * d);
            memcpy(v_part + (size_t)t * nkv * d, qkv + (size_t)t * qkv_w + (nh + nkv) * d,
                   sizeof(float) * nkv * d);
        }
        cr_assert_eq(fg_ref_split_heads(qh, q_part, T, nh, d), FG_OK);
        cr_assert_eq(fg_ref_split_heads(kh, k_part, T, nkv, d), FG_OK);
        cr_assert_eq(fg_ref_split_heads(vh, v_part, T, nkv, d), FG_OK);
        if (cfg.use_rope) {
            int *pos = malloc(sizeof(int) * T);
            for (int t = 0; t < T; t++) pos[t] = L + t;
            cr_assert_eq(fg_ref_rope(qh, nh, T, d, pos, cfg.rope_base), FG_OK);
            cr_assert_eq(fg_ref_rope(kh, nkv, T, d, pos, cfg.rope_base), FG_OK);
            free(pos);
        }
        /* append to the history (n_kv, total, d) and compare with the cache */
        for (int g = 0; g < nkv; g++)
            for (int t = 0; t < T; t++) {
                memcpy(k_hist + ((size_t)g * total + L + t) * d, kh + ((size_t)g * T + t) * d, sizeof(float) * d);
                memcpy(v_hist + ((size_t)g * total + L + t) * d, vh + ((size_t)g * T + t) * d, sizeof(float) * d);
            }
        for (int g = 0; g < nkv; g++) {
            const size_t off = (size_t)g * total * d;
            fgi_assert_close(cache->layers[1].k + off, k_hist + off, (size_t)kv_len * d, 1e-6, 1e-6, 0,
                            "cached (rotated) keys");
            fgi_assert_same(cache->layers[1].v + off, v_hist + off, sizeof(float) * kv_len * d,
                           "cached values");
        }
        float *kc = fgi_buf_nan((size_t)nkv * kv_len * d), *vc = fgi_buf_nan((size_t)nkv * kv_len * d);
        for (int g = 0; g < nkv; g++) {
            memcpy(kc + (size_t)g * kv_len * d, k_hist + (size_t)g * total * d, sizeof(float) * kv_len * d);
            memcpy(vc + (size_t)g * kv_len * d, v_hist + (size_t)g * total * d, sizeof(float) * kv_len * d);
        }
        float *att = fgi_buf_nan((size_t)nh * T * d), *merged = fgi_buf_nan((size_t)T * nh * d);
        float *expect = fgi_buf_nan((size_t)T * C);
        cr_assert_eq(fg_ref_gqa_window(att, qh, kc, vc, nh, nkv, T, kv_len, d,
                                       fg_config_layer_window(&cfg, 1)), FG_OK);
        cr_assert_eq(fg_ref_merge_heads(merged, att, nh, T, d), FG_OK);
        cr_assert_eq(fg_ref_linear(expect, merged, lw->c_proj_w, lw->c_proj_b, T, nh * d, C), FG_OK);
        fgi_assert_close(out, expect, (size_t)T * C, 1e-5, 1e-5, 1e-6, "attention layer vs ops");
        fgi_buf_free(x), fgi_buf_free(out), fgi_buf_free(qkv), fgi_buf_free(qh), fgi_buf_free(kh);
        fgi_buf_free(vh), fgi_buf_free(q_part), fgi_buf_free(k_part), fgi_buf_free(v_part);
        fgi_buf_free(kc), fgi_buf_free(vc), fgi_buf_free(att), fgi_buf_free(merged), fgi_buf_free(expect);
    }
    fgi_buf_free(k_hist), fgi_buf_free(v_hist);
    fg_kv_cache_destroy(cache);
    fgi_test_model_free(&m);
}

Test(attention_layer, equals_public_ops_mha) { check_layer_against_ops(gpt2_cfg(), 47); }
Test(attention_layer, equals_public_ops_gqa_rope) { check_layer_against_ops(gpt2_gqa_rope_cfg(), 48); }
Test(attention_layer, equals_public_ops_llama) { check_layer_against_ops(llama_cfg(), 49); }

/* A sliding window on layer 1 (from window_first_layer 1), and one that
 * starts after it (layer 1 then has none). */
static fg_config llama_window_cfg(int window, int first)
{
    fg_config c = llama_cfg();
    c.sliding_window = window;
    c.window_first_layer = first;
    return c;
}

/* head_dim set apart from n_embd / n_head (Hugging Face "head_dim"):
 * wider and narrower heads than the hidden size implies. */
static fg_config llama_head_dim_cfg(int head_dim)
{
    fg_config c = llama_cfg();
    c.head_dim = head_dim;
    return c;
}

Test(attention_layer, equals_public_ops_llama_head_dim)
{
    check_layer_against_ops(llama_head_dim_cfg(6), 60);
    check_layer_against_ops(llama_head_dim_cfg(2), 61);
}

Test(decoder, head_dim_prefill_equals_incremental)
{
    check_prefill_equals_incremental(llama_head_dim_cfg(10), 1, 62);
    fg_config c = gpt2_gqa_rope_cfg();
    c.head_dim = 4; /* n_embd 48 / 6 heads would be 8 */
    check_prefill_equals_incremental(c, 0, 63);
}

Test(attention_layer, equals_public_ops_llama_window)
{
    check_layer_against_ops(llama_window_cfg(3, 1), 55);
    check_layer_against_ops(llama_window_cfg(2, 2), 56);
}

/* docs/contract.md §17 rebuilt: x += attention(norm_1(x)); x += mlp(norm_2(x)). */
static void check_block_against_ops(fg_config cfg, uint64_t stream)
{
    fgi_rng rng = fgi_rng_make(stream);
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 0);
    const int T = 6, C = cfg.n_embd, I = cfg.n_inner;
    const size_t n = (size_t)T * C;
    const fg_layer_weights *lw = &m.layers[0];
    fg_kv_cache *c1, *c2;
    cr_assert_eq(fg_kv_cache_create(&c1, &cfg, T), FG_OK);
    cr_assert_eq(fg_kv_cache_create(&c2, &cfg, T), FG_OK);
    float *x = fgi_buf_normal(&rng, n, 1.0), *expect = fgi_buf_copy(x, n);
    float *h = fgi_buf_nan(n), *delta = fgi_buf_nan(n);
    cr_assert_eq(fg_ref_block(x, T, &cfg, lw, c1, 0), FG_OK, "%s", fg_last_error());
    const int llama = cfg.arch == FG_ARCH_LLAMA;
    if (llama) cr_assert_eq(fg_ref_rms_norm(h, expect, lw->ln_1_g, T, C, cfg.norm_eps), FG_OK);
    else cr_assert_eq(fg_ref_layer_norm(h, expect, lw->ln_1_g, lw->ln_1_b, T, C, cfg.norm_eps), FG_OK);
    cr_assert_eq(fg_ref_attention_layer(delta, h, T, &cfg, lw, c2, 0), FG_OK);
    for (size_t i = 0; i < n; i++) expect[i] += delta[i];
    if (llama) {
        cr_assert_eq(fg_ref_rms_norm(h, expect, lw->ln_2_g, T, C, cfg.norm_eps), FG_OK);
        cr_assert_eq(fg_ref_swiglu_ffn(delta, h, lw->fc_w, lw->up_w, lw->mlp_proj_w, T, C, I), FG_OK);
    } else {
        cr_assert_eq(fg_ref_layer_norm(h, expect, lw->ln_2_g, lw->ln_2_b, T, C, cfg.norm_eps), FG_OK);
        cr_assert_eq(fg_ref_ffn(delta, h, lw->fc_w, lw->fc_b, lw->mlp_proj_w, lw->mlp_proj_b, T, C, I),
                     FG_OK);
    }
    for (size_t i = 0; i < n; i++) expect[i] += delta[i];
    fgi_assert_close(x, expect, n, 1e-5, 1e-5, 1e-6, "block vs ops");
    fgi_buf_free(x), fgi_buf_free(expect), fgi_buf_free(h), fgi_buf_free(delta);
    fg_kv_cache_destroy(c1), fg_kv_cache_destroy(c2);
    fgi_test_model_free(&m);
}

Test(block, equals_public_ops_gpt2) { check_block_against_ops(gpt2_gqa_rope_cfg(), 50); }
Test(block, equals_public_ops_llama) { check_block_against_ops(llama_cfg(), 51); }

/* docs/contract.md §18 rebuilt: embeddings (+ positions), blocks, final norm, classifier. */
static void check_forward_against_blocks(fg_config cfg, int untied, uint64_t stream)
{
    fgi_rng rng = fgi_rng_make(stream);
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, untied);
    const int T = 7, C = cfg.n_embd, L0 = 3;
    const size_t V = (size_t)cfg.vocab_size;
    int ids[10];
    fgi_test_random_ids(ids, L0 + T, cfg.vocab_size, &rng);
    fg_kv_cache *c1, *c2;
    cr_assert_eq(fg_kv_cache_create(&c1, &cfg, L0 + T), FG_OK);
    cr_assert_eq(fg_kv_cache_create(&c2, &cfg, L0 + T), FG_OK);
    float *first = run_forward(&m, c1, ids, L0), *logits = run_forward(&m, c1, ids + L0, T);
    for (int phase = 0; phase < 2; phase++) {
        const int n_tok = phase ? T : L0, start = phase ? L0 : 0;
        float *x = fgi_buf_nan((size_t)n_tok * C);
        for (int t = 0; t < n_tok; t++)
            for (int i = 0; i < C; i++)
                x[t * C + i] = m.w.wte[(size_t)ids[start + t] * C + i] +
                               (m.w.wpe ? m.w.wpe[(size_t)(start + t) * C + i] : 0.0f);
        for (int l = 0; l < cfg.n_layer; l++)
            cr_assert_eq(fg_ref_block(x, n_tok, &cfg, &m.layers[l], c2, l), FG_OK);
        if (!phase) {
            fgi_buf_free(x);
            continue;
        }
        float *h = fgi_buf_nan((size_t)T * C), *cls_t = fgi_buf_nan((size_t)C * V);
        float *expect = fgi_buf_nan((size_t)T * V);
        const float *cls = m.w.lm_head ? m.w.lm_head : m.w.wte;
        if (cfg.arch == FG_ARCH_LLAMA)
            cr_assert_eq(fg_ref_rms_norm(h, x, m.w.ln_f_g, T, C, cfg.norm_eps), FG_OK);
        else
            cr_assert_eq(fg_ref_layer_norm(h, x, m.w.ln_f_g, m.w.ln_f_b, T, C, cfg.norm_eps), FG_OK);
        for (size_t v = 0; v < V; v++)
            for (int i = 0; i < C; i++) cls_t[(size_t)i * V + v] = cls[v * C + i];
        cr_assert_eq(fg_ref_linear(expect, h, cls_t, NULL, T, C, (int)V), FG_OK);
        fgi_assert_close(logits, expect, (size_t)T * V, 1e-5, 1e-5, 1e-6, "forward vs blocks");
        fgi_buf_free(x), fgi_buf_free(h), fgi_buf_free(cls_t), fgi_buf_free(expect);
    }
    fgi_buf_free(first), fgi_buf_free(logits);
    fg_kv_cache_destroy(c1), fg_kv_cache_destroy(c2);
    fgi_test_model_free(&m);
}

Test(forward, equals_blocks_gpt2_wpe) { check_forward_against_blocks(gpt2_cfg(), 0, 52); }
Test(forward, equals_blocks_gpt2_rope) { check_forward_against_blocks(gpt2_gqa_rope_cfg(), 0, 53); }
Test(forward, equals_blocks_llama_untied) { check_forward_against_blocks(llama_cfg(), 1, 54); }

/* ---- bad input: right code, outputs and cache untouched ------------------ */

typedef struct {
    fgi_test_model m;
    fg_kv_cache *cache;
    float *cache_copy, *logits, *logits_copy;
    int lens[8];
    size_t cache_floats;
} bad_fixture;

static void bad_setup(bad_fixture *f, fg_config cfg, uint64_t stream)
{
    fgi_rng rng = fgi_rng_make(stream);
    fgi_test_model_init(&f->m, &cfg, &rng, 0);
    cr_assert_eq(fg_kv_cache_create(&f->cache, &cfg, 8), FG_OK);
    int ids[5];
    fgi_test_random_ids(ids, 5, cfg.vocab_size, &rng);
    float *l = run_forward(&f->m, f->cache, ids, 5); /* 5 of 8 slots used */
    fgi_buf_free(l);
    f->cache_floats = (size_t)2 * cfg.n_layer * cfg.n_kv_head * 8 * fg_config_head_dim(&cfg);
    f->cache_copy = fgi_buf_copy(f->cache->layers[0].k, f->cache_floats);
    for (int i = 0; i < cfg.n_layer; i++) f->lens[i] = f->cache->layers[i].len;
    f->logits = fgi_buf_normal(&rng, (size_t)8 * cfg.vocab_size, 1.0);
    f->logits_copy = fgi_buf_copy(f->logits, (size_t)8 * cfg.vocab_size);
}

static void bad_check_untouched(bad_fixture *f)
{
    fgi_assert_same(f->cache->layers[0].k, f->cache_copy, sizeof(float) * f->cache_floats, "cache");
    for (int i = 0; i < f->m.cfg.n_layer; i++) cr_assert_eq(f->cache->layers[i].len, f->lens[i]);
    fgi_assert_same(f->logits, f->logits_copy, sizeof(float) * 8 * f->m.cfg.vocab_size, "logits");
}

static void bad_teardown(bad_fixture *f)
{
    fg_kv_cache_destroy(f->cache);
    fgi_buf_free(f->cache_copy), fgi_buf_free(f->logits), fgi_buf_free(f->logits_copy);
    fgi_test_model_free(&f->m);
}

Test(forward_bad_input, every_class_refused_with_cache_untouched)
{
    bad_fixture f;
    bad_setup(&f, gpt2_gqa_rope_cfg(), 55);
    const fg_status E = FG_ERR_INVALID_ARG;
    fg_config c = f.m.cfg;
    const fg_weights *w = &f.m.w;
    int ids[4] = {1, 2, 3, 4}, bad_ids[2] = {1, VOCAB}, neg_ids[2] = {-1, 0};

    fgi_assert_status(fg_ref_forward(NULL, NULL, &c, w, f.cache, ids, 1), E, "'logits' is NULL");
    fgi_assert_status(fg_ref_forward(f.logits, NULL, NULL, w, f.cache, ids, 1), E, "'config' is NULL");
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, NULL, f.cache, ids, 1), E, "'weights' is NULL");
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, w, NULL, ids, 1), E, "'cache' is NULL");
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, w, f.cache, NULL, 1), E, "'ids' is NULL");
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, w, f.cache, ids, 0), E, "'T'");
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, w, f.cache, bad_ids, 2), E, "ids[1] = 53");
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, w, f.cache, neg_ids, 2), E, "ids[0] = -1");
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, w, f.cache, ids, 4), E, "capacity exceeded");
    fgi_assert_status(fg_ref_forward(f.logits, f.logits + 1, &c, w, f.cache, ids, 1), E, "overlap");
    bad_check_untouched(&f);

    /* configuration classes */
    fg_config k = c;
    k.n_embd = 50; /* 50 % 6 */
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "multiple of config.n_head");
    k = c, k.head_dim = -2;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "config.head_dim");
    k = c, k.head_dim = 7; /* odd with RoPE */
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "even head_dim");
    k = c, k.n_kv_head = 4; /* 6 % 4 */
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "multiple of config.n_kv_head");
    k = c, k.n_embd = 42, k.n_head = 6, k.n_kv_head = 6; /* head_dim 7 with RoPE */
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "even head_dim");
    k = c, k.use_flash = 1, k.flash_block = 0;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "flash_block");
    k = c, k.n_layer = 0;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "n_layer");
    k = c, k.sliding_window = -1;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "sliding_window");
    k = c, k.sliding_window = 2, k.window_first_layer = -1;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "window_first_layer");
    k = c, k.vocab_size = -5;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "vocab_size");
    k = c, k.arch = (fg_arch)7;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "arch");
    k = c, k.rope_base = -1.0;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "rope_base");
    k = c, k.norm_eps = NAN;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "norm_eps");
    k = c, k.vocab_size = 1 << 30, k.n_embd = 1 << 30, k.n_head = 1, k.n_kv_head = 1;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "overflow");
    k = c, k.n_kv_head = 3; /* valid config, but not the cache's */
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &k, w, f.cache, ids, 1), E, "does not match");
    bad_check_untouched(&f);

    /* weights classes */
    fg_weights ww = *w;
    fg_layer_weights layers[2] = {f.m.layers[0], f.m.layers[1]};
    ww.layers = layers;
    layers[1].c_attn_w = NULL;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, &ww, f.cache, ids, 1), E,
                     "weights.layers[1].c_attn_w is NULL");
    layers[1] = f.m.layers[1], layers[0].up_w = layers[0].fc_w;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, &ww, f.cache, ids, 1), E, "up_w must be NULL");
    layers[0] = f.m.layers[0], ww.wte = NULL;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, &ww, f.cache, ids, 1), E, "weights.wte is NULL");
    bad_check_untouched(&f);

    /* layers holding different token counts */
    f.cache->layers[1].len--;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, w, f.cache, ids, 1), E, "different token counts");
    f.cache->layers[1].len++;
    bad_check_untouched(&f);
    bad_teardown(&f);
}

Test(forward_bad_input, position_table_and_family_rules)
{
    bad_fixture f;
    fg_config c = gpt2_cfg();
    c.n_ctx = 6; /* 5 tokens cached: position 5 is the last the table has */
    bad_setup(&f, c, 56);
    int ids[3] = {1, 2, 3};
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, &f.m.w, f.cache, ids, 2), FG_ERR_INVALID_ARG,
                     "past the position table");
    bad_check_untouched(&f);
    fg_weights w = f.m.w;
    w.wpe = NULL;
    fgi_assert_status(fg_ref_forward(f.logits, NULL, &c, &w, f.cache, ids, 1), FG_ERR_INVALID_ARG,
                     "weights.wpe is NULL");
    float *l = run_forward(&f.m, f.cache, ids, 1); /* position 5 still fits */
    fgi_buf_free(l);
    bad_teardown(&f);

    fg_config lc = llama_cfg();
    lc.use_rope = 0;
    fgi_assert_status(fg_config_validate(&lc), FG_ERR_INVALID_ARG, "use_rope must be 1");
    fgi_rng rng = fgi_rng_make(57);
    fgi_test_model lm;
    lc.use_rope = 1;
    fgi_test_model_init(&lm, &lc, &rng, 0);
    fg_weights lw = lm.w;
    lw.wpe = lm.w.wte;
    fgi_assert_status(fg_weights_validate(&lc, &lw), FG_ERR_INVALID_ARG, "wpe must be NULL");
    lw = lm.w;
    lw.ln_f_b = lm.w.ln_f_g;
    fgi_assert_status(fg_weights_validate(&lc, &lw), FG_ERR_INVALID_ARG, "ln_f_b must be NULL");
    cr_assert_eq(fg_weights_validate(&lc, &lm.w), FG_OK);
    fgi_test_model_free(&lm);
}

Test(layer_bad_input, refused_without_touching_the_cache)
{
    bad_fixture f;
    bad_setup(&f, llama_cfg(), 58);
    fg_config c = f.m.cfg;
    const int C = c.n_embd;
    fgi_rng rng = fgi_rng_make(59);
    float *x = fgi_buf_normal(&rng, (size_t)4 * C, 1.0), *out = fgi_buf_normal(&rng, (size_t)4 * C, 1.0);
    float *out_copy = fgi_buf_copy(out, (size_t)4 * C);
    const fg_status E = FG_ERR_INVALID_ARG;
    const fg_layer_weights *lw = &f.m.layers[0];
    fgi_assert_status(fg_ref_attention_layer(out, x, 4, &c, lw, f.cache, 0), E, "capacity exceeded");
    fgi_assert_status(fg_ref_attention_layer(out, x, 1, &c, lw, f.cache, 3), E, "'layer' must be < n_layer");
    fgi_assert_status(fg_ref_attention_layer(out, x, 1, &c, lw, f.cache, -1), E, "'layer'");
    fgi_assert_status(fg_ref_attention_layer(out, x, 1, &c, NULL, f.cache, 0), E, "'layer weights' is NULL");
    fgi_assert_status(fg_ref_attention_layer(out, out + 1, 1, &c, lw, f.cache, 0), E, "overlap");
    fgi_assert_status(fg_ref_attention_layer(out, x, -2, &c, lw, f.cache, 0), E, "'T'");
    fgi_assert_status(fg_ref_block(x, 4, &c, lw, f.cache, 0), E, "capacity exceeded");
    fgi_assert_status(fg_ref_block(NULL, 1, &c, lw, f.cache, 0), E, "'x' is NULL");
    fgi_assert_same(out, out_copy, sizeof(float) * 4 * C, "out after refused calls");
    bad_check_untouched(&f);
    fgi_buf_free(x), fgi_buf_free(out), fgi_buf_free(out_copy);
    bad_teardown(&f);
}

Test(kv_cache, create_validates_and_reset_forgets)
{
    fg_config c = gpt2_cfg();
    fg_kv_cache *cache = (fg_kv_cache *)&c; /* must be set to NULL on failure */
    fgi_assert_status(fg_kv_cache_create(&cache, &c, 0), FG_ERR_INVALID_ARG, "'capacity'");
    cr_assert_null(cache);
    fgi_assert_status(fg_kv_cache_create(NULL, &c, 4), FG_ERR_INVALID_ARG, "'cache' is NULL");
    fgi_assert_status(fg_kv_cache_create(&cache, NULL, 4), FG_ERR_INVALID_ARG, "'config' is NULL");
    c.n_kv_head = 3;
    fgi_assert_status(fg_kv_cache_create(&cache, &c, 4), FG_ERR_INVALID_ARG, "n_kv_head");
    c = gpt2_cfg();
    c.n_layer = 1 << 20, c.n_embd = 1 << 20, c.n_head = 1, c.n_kv_head = 1;
    fgi_assert_status(fg_kv_cache_create(&cache, &c, 1 << 20), FG_ERR_INVALID_ARG, "overflow");
    c = gpt2_cfg();
    cr_assert_eq(fg_kv_cache_create(&cache, &c, 4), FG_OK);
    cr_assert_eq(cache->capacity, 4);
    cr_assert_eq(cache->head_dim, 8);
    for (int l = 0; l < c.n_layer; l++) cr_assert_eq(cache->layers[l].len, 0);
    cache->layers[0].len = 3, cache->layers[1].len = 3;
    cr_assert_eq(fg_kv_cache_reset(cache), FG_OK);
    cr_assert_eq(cache->layers[0].len + cache->layers[1].len, 0);
    fgi_assert_status(fg_kv_cache_reset(NULL), FG_ERR_INVALID_ARG, "'cache' is NULL");
    fg_kv_cache_destroy(cache);
    fg_kv_cache_destroy(NULL);
}
