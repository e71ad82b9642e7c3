/* Random in-memory models (see fixture.h). */
#include "fixture.h"

#include <math.h>
#include <stdlib.h>

static const float *tensor(fgi_test_model *m, fgi_rng *rng, size_t n, double mean,
                           double scale)
{
    float *p = fgi_buf_normal(rng, n, scale);
    for (size_t i = 0; i < n; i++) p[i] += (float)mean;
    m->tensors = realloc(m->tensors, sizeof(float *) * (size_t)(m->n_tensors + 1));
    cr_assert(m->tensors != NULL);
    m->tensors[m->n_tensors++] = p;
    return p;
}

void fgi_test_model_init(fgi_test_model *m, const fg_config *cfg, fgi_rng *rng,
                        int untied)
{
    const size_t C = (size_t)cfg->n_embd, I = (size_t)cfg->n_inner;
    const size_t qkv = (size_t)fg_config_qkv_width(cfg);
    const size_t att = (size_t)cfg->n_head * (size_t)fg_config_head_dim(cfg);
    const int gpt2 = cfg->arch == FG_ARCH_GPT2;
    const double proj = 1.0 / sqrt((double)C);
    *m = (fgi_test_model){.cfg = *cfg};
    m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    cr_assert(m->layers != NULL);

    m->w.wte = tensor(m, rng, (size_t)cfg->vocab_size * C, 0.0, 0.5);
    if (gpt2 && !cfg->use_rope) m->w.wpe = tensor(m, rng, (size_t)cfg->n_ctx * C, 0.0, 0.2);
    for (int l = 0; l < cfg->n_layer; l++) {
        fg_layer_weights *lw = &m->layers[l];
        lw->ln_1_g = tensor(m, rng, C, 1.0, 0.1);
        lw->c_attn_w = tensor(m, rng, C * qkv, 0.0, proj);
        lw->c_proj_w = tensor(m, rng, att * C, 0.0, proj);
        lw->ln_2_g = tensor(m, rng, C, 1.0, 0.1);
        lw->fc_w = tensor(m, rng, C * I, 0.0, proj);
        lw->mlp_proj_w = tensor(m, rng, I * C, 0.0, 1.0 / sqrt((double)I));
        if (gpt2) {
            lw->ln_1_b = tensor(m, rng, C, 0.0, 0.1);
            lw->c_attn_b = tensor(m, rng, qkv, 0.0, 0.1);
            lw->c_proj_b = tensor(m, rng, C, 0.0, 0.1);
            lw->ln_2_b = tensor(m, rng, C, 0.0, 0.1);
            lw->fc_b = tensor(m, rng, I, 0.0, 0.1);
            lw->mlp_proj_b = tensor(m, rng, C, 0.0, 0.1);
        } else {
            lw->up_w = tensor(m, rng, C * I, 0.0, proj);
        }
    }
    m->w.layers = m->layers;
    m->w.ln_f_g = tensor(m, rng, C, 1.0, 0.1);
    if (gpt2) m->w.ln_f_b = tensor(m, rng, C, 0.0, 0.1);
    if (untied) m->w.lm_head = tensor(m, rng, (size_t)cfg->vocab_size * C, 0.0, 0.5);
}

void fgi_test_model_free(fgi_test_model *m)
{
    for (int i = 0; i < m->n_tensors; i++) fgi_buf_free(m->tensors[i]);
    free(m->tensors);
    free(m->layers);
    *m = (fgi_test_model){0};
}

static void round_tensor(fg_dtype dtype, const float *t, size_t n)
{
    float *p = (float *)t; /* the fixture owns these buffers, writable */
    if (p == NULL) return;
    for (size_t i = 0; i < n; i++) p[i] = fg_dtype_round(dtype, p[i]);
}

void fgi_test_model_round(fgi_test_model *tm, fg_dtype dtype)
{
    const fg_config *c = &tm->cfg;
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner, V = (size_t)c->vocab_size;
    const size_t W = (size_t)fg_config_qkv_width(c);
    fg_weights *w = &tm->w;
    round_tensor(dtype, w->wte, V * C);
    round_tensor(dtype, w->wpe, (size_t)c->n_ctx * C);
    round_tensor(dtype, w->ln_f_g, C);
    round_tensor(dtype, w->ln_f_b, C);
    round_tensor(dtype, w->lm_head, V * C);
    for (int l = 0; l < c->n_layer; l++) {
        const fg_layer_weights *L = &w->layers[l];
        round_tensor(dtype, L->ln_1_g, C);
        round_tensor(dtype, L->ln_1_b, C);
        round_tensor(dtype, L->c_attn_w, C * W);
        round_tensor(dtype, L->c_attn_b, W);
        round_tensor(dtype, L->c_proj_w, C * C);
        round_tensor(dtype, L->c_proj_b, C);
        round_tensor(dtype, L->ln_2_g, C);
        round_tensor(dtype, L->ln_2_b, C);
        round_tensor(dtype, L->fc_w, C * I);
        round_tensor(dtype, L->up_w, C * I);
        round_tensor(dtype, L->fc_b, I);
        round_tensor(dtype, L->mlp_proj_w, I * C);
        round_tensor(dtype, L->mlp_proj_b, C);
    }
}

void fgi_test_random_ids(int *ids, int n, int vocab, fgi_rng *rng)
{
    for (int i = 0; i < n; i++) ids[i] = fgi_rng_int(rng, 0, vocab - 1);
}

fg_config fgi_test_gpt2_config(int n_layer, int n_embd, int n_head, int n_kv_head, int rope,
                               int flash_block, int vocab, int n_ctx)
{
    fg_config c = fg_config_gpt2(n_layer, n_embd, n_head, vocab, n_ctx);
    c.n_kv_head = n_kv_head;
    c.use_rope = rope;
    c.use_flash = flash_block > 0;
    if (flash_block > 0) c.flash_block = flash_block;
    return c;
}

fg_config fgi_test_llama_config(int n_layer, int n_embd, int n_head, int n_kv_head, int n_inner,
                                int flash_block, int vocab, int n_ctx)
{
    fg_config c = fg_config_llama(n_layer, n_embd, n_head, n_kv_head, n_inner, vocab, n_ctx);
    c.use_flash = flash_block > 0;
    if (flash_block > 0) c.flash_block = flash_block;
    return c;
}
