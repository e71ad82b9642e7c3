/* The CPU reference against golden vectors from an independent NumPy
 * implementation (tests/ref/golden/gen_golden.py, float64). */
#include "golden/golden_data.h"
#include "support.h"

#include <math.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
/* fp32 results of double-accumulated math against float64 NumPy */
#define CHECK(got, ref, what) fgi_assert_close(got, ref, N(ref), 1e-6, 1e-5, 1e-6, what)

Test(golden, softmax_both_axes)
{
    float y[N(golden_softmax_x)];
    cr_assert_eq(fg_ref_softmax(y, golden_softmax_x, 3, 5, 4), FG_OK);
    CHECK(y, golden_softmax_axis1, "softmax axis 1");
    cr_assert_eq(fg_ref_softmax(y, golden_softmax_x, 15, 4, 1), FG_OK);
    CHECK(y, golden_softmax_axis2, "softmax axis 2");
}

Test(golden, attention_dense_and_every_flash_block)
{
    float out[N(golden_attention_out)];
    cr_assert_eq(fg_ref_attention(out, golden_attention_q, golden_attention_k, golden_attention_v, 4, 9, 8), FG_OK);
    CHECK(out, golden_attention_out, "attention");
    for (int block = 1; block <= 10; block++) {
        memset(out, 0xff, sizeof out);
        cr_assert_eq(fg_ref_attention_flash(out, golden_attention_q, golden_attention_k, golden_attention_v, 4, 9, 8,
                                            block), FG_OK);
        CHECK(out, golden_attention_out, "flash attention");
    }
}

Test(golden, mha_and_gqa)
{
    float mha[N(golden_mha_out)], gqa[N(golden_gqa_out)];
    cr_assert_eq(fg_ref_mha(mha, golden_mha_q, golden_mha_k, golden_mha_v, 3, 5, 5, 8), FG_OK);
    CHECK(mha, golden_mha_out, "mha");
    cr_assert_eq(fg_ref_gqa(gqa, golden_gqa_q, golden_gqa_k, golden_gqa_v, 8, 2, 3, 7, 16), FG_OK);
    CHECK(gqa, golden_gqa_out, "gqa");
}

Test(golden, rope_large_positions)
{
    float x[N(golden_rope_x)];
    memcpy(x, golden_rope_x, sizeof x);
    cr_assert_eq(fg_ref_rope(x, 2, 3, 16, golden_rope_pos, 10000.0), FG_OK);
    CHECK(x, golden_rope_out_base10000, "rope base 10000");
    memcpy(x, golden_rope_x, sizeof x);
    cr_assert_eq(fg_ref_rope(x, 2, 3, 16, golden_rope_pos, 500.0), FG_OK);
    CHECK(x, golden_rope_out_base500, "rope base 500");
}

Test(golden, linear_gelu_layer_norm_ffn)
{
    float lin[N(golden_linear_out)], gel[N(golden_gelu_out)], ln[N(golden_ln_out)];
    float ffn[N(golden_ffn_out)];
    cr_assert_eq(fg_ref_linear(lin, golden_linear_x, golden_linear_w, golden_linear_b, 3, 7, 5), FG_OK);
    CHECK(lin, golden_linear_out, "linear");
    cr_assert_eq(fg_ref_gelu(gel, golden_gelu_x, (int)N(golden_gelu_x)), FG_OK);
    CHECK(gel, golden_gelu_out, "gelu");
    cr_assert_eq(fg_ref_layer_norm(ln, golden_ln_x, golden_ln_g, golden_ln_b, 4, 10, 1e-5f), FG_OK);
    CHECK(ln, golden_ln_out, "layer_norm");
    cr_assert_eq(fg_ref_ffn(ffn, golden_ffn_x, golden_ffn_w_fc, golden_ffn_b_fc, golden_ffn_w_proj,
                            golden_ffn_b_proj, 3, 8, 32), FG_OK);
    CHECK(ffn, golden_ffn_out, "ffn");
}

Test(golden, rms_norm_and_swiglu)
{
    float rms[N(golden_rms_out)], sw[N(golden_swiglu_out)];
    cr_assert_eq(fg_ref_rms_norm(rms, golden_rms_x, golden_rms_g, 3, 12, 1e-5f), FG_OK);
    CHECK(rms, golden_rms_out, "rms_norm");
    cr_assert_eq(fg_ref_swiglu_ffn(sw, golden_swiglu_x, golden_swiglu_w_gate, golden_swiglu_w_up,
                                   golden_swiglu_w_down, 2, 8, 20), FG_OK);
    CHECK(sw, golden_swiglu_out, "swiglu");
}

/* Points layer l's weights into the stacked (n_layer, ...) golden arrays. */
#define LAYER_PTR(prefix, name, l) (golden_##prefix##_layers_##name + (size_t)(l) * (N(golden_##prefix##_layers_##name) / n_layer))

/* Runs the prefill in one call and one token at a time. */
static void check_model(const fg_config *cfg, const fg_weights *w, const int *ids, int T,
                        const float *expect, size_t n_expect, const char *what)
{
    fg_kv_cache *cache;
    cr_assert_eq(fg_kv_cache_create(&cache, cfg, T), FG_OK, "%s", fg_last_error());
    float *logits = fgi_buf_nan(n_expect);
    cr_assert_eq(fg_ref_forward(logits, NULL, cfg, w, cache, ids, T), FG_OK, "%s", fg_last_error());
    fgi_assert_close(logits, expect, n_expect, 1e-5, 1e-5, 1e-6, what);
    cr_assert_eq(fg_kv_cache_reset(cache), FG_OK);
    const size_t V = (size_t)cfg->vocab_size;
    for (int t = 0; t < T; t++)
        cr_assert_eq(fg_ref_forward(logits + t * V, NULL, cfg, w, cache, ids + t, 1), FG_OK);
    fgi_assert_close(logits, expect, n_expect, 1e-5, 1e-5, 1e-6, what);
    fgi_buf_free(logits);
    fg_kv_cache_destroy(cache);
}

Test(golden, gpt2_gqa_rope_decoder)
{
    const int n_layer = GOLDEN_GPT2_N_LAYER;
    fg_config cfg = fg_config_gpt2(n_layer, GOLDEN_GPT2_N_EMBD, GOLDEN_GPT2_N_HEAD, GOLDEN_GPT2_VOCAB,
                                   GOLDEN_GPT2_N_CTX);
    cfg.n_kv_head = GOLDEN_GPT2_N_KV_HEAD;
    cfg.n_inner = GOLDEN_GPT2_N_INNER;
    cfg.use_rope = GOLDEN_GPT2_USE_ROPE;
    cfg.rope_base = GOLDEN_GPT2_ROPE_BASE;
    fg_layer_weights layers[GOLDEN_GPT2_N_LAYER];
    for (int l = 0; l < n_layer; l++)
        layers[l] = (fg_layer_weights){
            .ln_1_g = LAYER_PTR(gpt2, ln_1_g, l), .ln_1_b = LAYER_PTR(gpt2, ln_1_b, l),
            .c_attn_w = LAYER_PTR(gpt2, c_attn_w, l), .c_attn_b = LAYER_PTR(gpt2, c_attn_b, l),
            .c_proj_w = LAYER_PTR(gpt2, c_proj_w, l), .c_proj_b = LAYER_PTR(gpt2, c_proj_b, l),
            .ln_2_g = LAYER_PTR(gpt2, ln_2_g, l), .ln_2_b = LAYER_PTR(gpt2, ln_2_b, l),
            .fc_w = LAYER_PTR(gpt2, fc_w, l), .fc_b = LAYER_PTR(gpt2, fc_b, l),
            .mlp_proj_w = LAYER_PTR(gpt2, mlp_proj_w, l), .mlp_proj_b = LAYER_PTR(gpt2, mlp_proj_b, l)};
    const fg_weights w = {.wte = golden_gpt2_wte, .wpe = golden_gpt2_wpe, .layers = layers,
                          .ln_f_g = golden_gpt2_ln_f_g, .ln_f_b = golden_gpt2_ln_f_b};
    check_model(&cfg, &w, golden_gpt2_ids, GOLDEN_GPT2_T, golden_gpt2_logits, N(golden_gpt2_logits),
                "gpt2 decoder logits");
}

Test(golden, llama_mqa_untied_decoder)
{
    const int n_layer = GOLDEN_LLAMA_N_LAYER;
    fg_config cfg = fg_config_llama(n_layer, GOLDEN_LLAMA_N_EMBD, GOLDEN_LLAMA_N_HEAD,
                                    GOLDEN_LLAMA_N_KV_HEAD, GOLDEN_LLAMA_N_INNER, GOLDEN_LLAMA_VOCAB,
                                    GOLDEN_LLAMA_N_CTX);
    cfg.rope_base = GOLDEN_LLAMA_ROPE_BASE;
    fg_layer_weights layers[GOLDEN_LLAMA_N_LAYER];
    for (int l = 0; l < n_layer; l++)
        layers[l] = (fg_layer_weights){
            .ln_1_g = LAYER_PTR(llama, ln_1_g, l), .c_attn_w = LAYER_PTR(llama, c_attn_w, l),
            .c_proj_w = LAYER_PTR(llama, c_proj_w, l), .ln_2_g = LAYER_PTR(llama, ln_2_g, l),
            .fc_w = LAYER_PTR(llama, fc_w, l), .up_w = LAYER_PTR(llama, up_w, l),
            .mlp_proj_w = LAYER_PTR(llama, mlp_proj_w, l)};
    const fg_weights w = {.wte = golden_llama_wte, .layers = layers, .ln_f_g = golden_llama_ln_f_g,
                          .lm_head = golden_llama_lm_head};
    check_model(&cfg, &w, golden_llama_ids, GOLDEN_LLAMA_T, golden_llama_logits,
                N(golden_llama_logits), "llama decoder logits");
}
