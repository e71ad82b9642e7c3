/* CPU reference decoder: attention layer with KV cache, pre-norm block and
 * the forward pass (docs/contract.md §16-§18), for the GPT-2 and Llama families.
 *
 * q, k, v are read straight out of the fused projection (T, [q | k | v]) and
 * each head's output is written straight into its columns of the merged
 * (T, n_head*d) buffer, so no split/merge copies are made. New keys are
 * rotated (RoPE) before they are cached; cached keys are never rotated again.
 * All scratch memory is taken before anything is written, so a call either
 * completes or fails with outputs and cache untouched. */
#include "check.h"
#include "flashgpt/decoder.h"
#include "flashgpt/ops.h"
#include "config_internal.h"
#include "ref_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    float *x;      /* (T, C) residual stream (forward only) */
    float *h;      /* (T, C) normalised sublayer input */
    float *delta;  /* (T, C) sublayer output */
    float *qkv;    /* (T, qkv_width) */
    float *att;    /* (T, n_head*d) merged head outputs */
    float *mlp;    /* (T, n_inner), twice for SwiGLU */
    double *acc;   /* one linear output row */
    double *attention;  /* attention scratch for kv_len keys */
    void *block;
} workspace;

static int max3(int a, int b, int c)
{
    int m = a > b ? a : b;
    return m > c ? m : c;
}

static fg_status workspace_create(const char *fn, workspace *ws,
                                  const fg_config *c, int T, int kv_len)
{
    const int d = fg_config_head_dim(c), qkv_w = fg_config_qkv_width(c);
    const size_t n_acc = (size_t)max3(qkv_w, c->n_embd, c->n_inner);
    const size_t n_attention = fgi_attend_scratch(kv_len, d);
    size_t row_floats, floats;
    /* per token: x, h, delta (3C), qkv, att (n_head*d), mlp (2*n_inner) */
    FGI_TRY(fgi_check_elems(fn, "workspace row", &row_floats, 1,
                          3LL * c->n_embd + qkv_w + (long long)c->n_head * d +
                              2LL * c->n_inner));
    FGI_TRY(fgi_check_elems(fn, "workspace", &floats, 2, (long long)row_floats,
                          (long long)T));
    const size_t doubles = n_acc + n_attention;
    double *block;
    FGI_TRY(fgi_alloc(fn, (void **)&block, doubles + (floats + 1) / 2, sizeof(double)));

    const size_t tc = (size_t)T * c->n_embd;
    ws->block = block;
    ws->acc = block;
    ws->attention = block + n_acc;
    ws->x = (float *)(block + doubles);
    ws->h = ws->x + tc;
    ws->delta = ws->h + tc;
    ws->qkv = ws->delta + tc;
    ws->att = ws->qkv + (size_t)T * qkv_w;
    ws->mlp = ws->att + (size_t)T * c->n_head * d;
    return FG_OK;
}

/* The shared checks' view of a host cache (NULL for NULL). */
static const fgi_cache_shape *cache_shape(fgi_cache_shape *shape, const fg_kv_cache *cache)
{
    if (cache == NULL) return NULL;
    shape->n_layer = cache->n_layer;
    shape->n_kv_head = cache->n_kv_head;
    shape->head_dim = cache->head_dim;
    shape->capacity = cache->capacity;
    shape->lens = cache->layers ? &cache->layers[0].len : NULL;
    shape->len_stride = sizeof cache->layers[0];
    return shape;
}

static void attention_layer(float *out, const float *x, int T, const fg_config *c,
                            const fg_layer_weights *lw, fg_kv_cache *cache,
                            int layer, workspace *ws)
{
    const int C = c->n_embd, nh = c->n_head, nkv = c->n_kv_head, d = fg_config_head_dim(c);
    const int qkv_w = fg_config_qkv_width(c), cap = cache->capacity;
    fg_kv_layer *kl = &cache->layers[layer];
    const int L = kl->len, kv_len = L + T;

    fgi_linear(ws->qkv, x, lw->c_attn_w, lw->c_attn_b, T, C, qkv_w, ws->acc);
    for (int t = 0; t < T; t++) {
        float *row = ws->qkv + (size_t)t * qkv_w;
        for (int h = 0; h < nh && c->use_rope; h++)
            fgi_rope_vector_cfg(row + (size_t)h * d, L + t, c);
        for (int g = 0; g < nkv; g++) {
            const size_t slot = ((size_t)g * cap + (size_t)(L + t)) * d;
            memcpy(kl->k + slot, row + (size_t)(nh + g) * d, sizeof(float) * d);
            memcpy(kl->v + slot, row + (size_t)(nh + nkv + g) * d, sizeof(float) * d);
            if (c->use_rope) fgi_rope_vector_cfg(kl->k + slot, L + t, c);
        }
    }
    const int group = nh / nkv, block = c->use_flash ? c->flash_block : 0;
    const int window = fg_config_layer_window(c, layer);
    for (int h = 0; h < nh; h++) {
        const size_t kv_head = (size_t)(h / group) * cap * d;
        fgi_attend_head(ws->att + (size_t)h * d, (size_t)nh * d,
                        ws->qkv + (size_t)h * d, (size_t)qkv_w, kl->k + kv_head,
                        kl->v + kv_head, T, kv_len, d, block, window, ws->attention);
    }
    fgi_linear(out, ws->att, lw->c_proj_w, lw->c_proj_b, T, nh * d, C, ws->acc);
    kl->len = kv_len;
}

static void norm_rows(float *y, const float *x, const float *g, const float *b,
                      int T, const fg_config *c)
{
    const size_t C = (size_t)c->n_embd;
    for (size_t t = 0; t < (size_t)T; t++) {
        if (c->arch == FG_ARCH_LLAMA)
            fgi_rms_norm_row(y + t * C, x + t * C, g, (int)C, c->norm_eps);
        else
            fgi_layer_norm_row(y + t * C, x + t * C, g, b, (int)C, c->norm_eps);
    }
}

static void add_rows(float *x, const float *delta, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] += delta[i];
}

static void block_forward(float *x, int T, const fg_config *c,
                          const fg_layer_weights *lw, fg_kv_cache *cache,
                          int layer, workspace *ws)
{
    const int C = c->n_embd;
    const size_t n = (size_t)T * C;
    norm_rows(ws->h, x, lw->ln_1_g, lw->ln_1_b, T, c);
    attention_layer(ws->delta, ws->h, T, c, lw, cache, layer, ws);
    add_rows(x, ws->delta, n);
    norm_rows(ws->h, x, lw->ln_2_g, lw->ln_2_b, T, c);
    if (c->arch == FG_ARCH_LLAMA)
        fgi_swiglu_mlp(ws->delta, ws->h, lw->fc_w, lw->up_w, lw->mlp_proj_w, T, C,
                       c->n_inner, ws->mlp, ws->acc);
    else
        fgi_gelu_mlp(ws->delta, ws->h, lw->fc_w, lw->fc_b, lw->mlp_proj_w,
                     lw->mlp_proj_b, T, C, c->n_inner, ws->mlp, ws->acc);
    add_rows(x, ws->delta, n);
}

/* Checks shared by the layer and the block. */
static fg_status check_layer_call(const char *fn, const float *out, const float *x,
                                  int T, const fg_config *c,
                                  const fg_layer_weights *lw,
                                  const fg_kv_cache *cache, int layer)
{
    fgi_cache_shape shape;
    FGI_TRY(fgi_check_config(fn, c));
    FGI_TRY(fgi_check_layer_weights(fn, c, lw, layer));
    return fgi_check_layer_call(fn, c, out, x, T, 0, cache_shape(&shape, cache), layer);
}

fg_status fg_ref_attention_layer(float *out, const float *x, int T,
                                 const fg_config *cfg,
                                 const fg_layer_weights *lw,
                                 fg_kv_cache *cache, int layer)
{
    static const char fn[] = "fg_ref_attention_layer";
    workspace ws;
    FGI_TRY(check_layer_call(fn, out, x, T, cfg, lw, cache, layer));
    FGI_TRY(workspace_create(fn, &ws, cfg, T, cache->layers[layer].len + T));
    attention_layer(out, x, T, cfg, lw, cache, layer, &ws);
    free(ws.block);
    return FG_OK;
}

fg_status fg_ref_block(float *x, int T, const fg_config *cfg,
                       const fg_layer_weights *lw, fg_kv_cache *cache, int layer)
{
    static const char fn[] = "fg_ref_block";
    workspace ws;
    FGI_TRY(check_layer_call(fn, x, x, T, cfg, lw, cache, layer));
    FGI_TRY(workspace_create(fn, &ws, cfg, T, cache->layers[layer].len + T));
    block_forward(x, T, cfg, lw, cache, layer, &ws);
    free(ws.block);
    return FG_OK;
}

static fg_status check_forward(const char *fn, const float *logits,
                               const float *probs, int logit_rows,
                               const fg_config *c, const fg_weights *w,
                               const fg_kv_cache *cache, const int *ids, int T)
{
    fgi_cache_shape shape;
    FGI_TRY(fgi_check_config(fn, c));
    FGI_TRY(fgi_check_weights(fn, c, w));
    return fgi_check_forward_call(fn, c, w->wpe != NULL, logits, probs, logit_rows, ids, T, 0,
                                  cache_shape(&shape, cache));
}

/* The forward pass; logits for the last logit_rows tokens (T or 1). */
static fg_status forward(const char *fn, float *logits, float *probs,
                         int logit_rows, const fg_config *cfg, const fg_weights *w,
                         fg_kv_cache *cache, const int *ids, int T)
{
    workspace ws;
    FGI_TRY(check_forward(fn, logits, probs, logit_rows, cfg, w, cache, ids, T));
    const int L = cache->layers[0].len;
    FGI_TRY(workspace_create(fn, &ws, cfg, T, L + T));

    const size_t C = (size_t)cfg->n_embd, V = (size_t)cfg->vocab_size;
    for (size_t t = 0; t < (size_t)T; t++) {
        const float *tok = w->wte + (size_t)ids[t] * C;
        const float *pos = w->wpe ? w->wpe + (L + t) * C : NULL;
        for (size_t i = 0; i < C; i++) ws.x[t * C + i] = tok[i] + (pos ? pos[i] : 0.0f);
    }
    for (int l = 0; l < cfg->n_layer; l++)
        block_forward(ws.x, T, cfg, &w->layers[l], cache, l, &ws);
    const float *last = ws.x + (size_t)(T - logit_rows) * C;
    norm_rows(ws.h, last, w->ln_f_g, w->ln_f_b, logit_rows, cfg);
    fgi_linear_transposed(logits, ws.h, w->lm_head ? w->lm_head : w->wte, logit_rows,
                          (int)C, (int)V);
    if (probs != NULL)
        for (size_t t = 0; t < (size_t)logit_rows; t++)
            fgi_softmax_slice(probs + t * V, logits + t * V, (int)V, 1);
    free(ws.block);
    return FG_OK;
}

fg_status fg_ref_forward(float *logits, float *probs, const fg_config *cfg,
                         const fg_weights *w, fg_kv_cache *cache,
                         const int *ids, int T)
{
    return forward("fg_ref_forward", logits, probs, T, cfg, w, cache, ids, T);
}

fg_status fg_ref_forward_last(float *logits, const fg_config *cfg,
                              const fg_weights *w, fg_kv_cache *cache,
                              const int *ids, int T)
{
    return forward("fg_ref_forward_last", logits, NULL, 1, cfg, w, cache, ids, T);
}
