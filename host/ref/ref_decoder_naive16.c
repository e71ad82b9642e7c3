/* The naive 16-bit decoder (flashgpt/decoder.h, fgi_ref_forward_naive16):
 * the forward pass of host/ref/ref_decoder.c as a framework running the
 * model in bf16 / f16 computes it, the yardstick of the 16-bit rule
 * (docs/contract.md §32) for the GPU decoder.
 *
 * Built from the naive ops of host/ref/ref_naive16.c, one after the other,
 * each result rounded at its boundary; unlike the GPU decoder the residual
 * stream is rounded too (x = round(x + sublayer)), as a framework keeping
 * every tensor in the type does. The cache is an ordinary fg_kv_cache
 * holding rounded keys and values. Heads are split into (n_head, T, d)
 * copies for the naive RoPE and attention: speed does not matter here. */
#include "check.h"
#include "config_internal.h"
#include "flashgpt/decoder.h"
#include "flashgpt/ops.h"
#include "ref_internal.h"

#include <stdlib.h>
#include <string.h>

/* Scratch of one call, one allocation: sizes in floats. */
typedef struct {
    float *x, *h, *qkv, *q, *k, *v, *kc, *vc, *att, *merged, *delta;
    int *pos;
    void *block;
} naive_ws;

static fg_status ws_create(const char *fn, naive_ws *ws, const fg_config *c, int T, int kv)
{
    const size_t C = (size_t)c->n_embd, d = (size_t)fg_config_head_dim(c);
    const size_t H = (size_t)c->n_head, KV = (size_t)c->n_kv_head;
    const size_t W = (size_t)fg_config_qkv_width(c), t = (size_t)T;
    const size_t sizes[] = {t * C, t * C, t * W, H * t * d, KV * t * d, KV * t * d,
                            KV * (size_t)kv * d, KV * (size_t)kv * d, H * t * d, t * H * d,
                            t * C};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) total += sizes[i];
    FGI_TRY(fgi_alloc(fn, &ws->block, total * sizeof(float) + t * sizeof(int), 1));
    float **dst[] = {&ws->x, &ws->h, &ws->qkv, &ws->q, &ws->k, &ws->v, &ws->kc, &ws->vc,
                     &ws->att, &ws->merged, &ws->delta};
    float *p = ws->block;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        *dst[i] = p;
        p += sizes[i];
    }
    ws->pos = (int *)p;
    return FG_OK;
}

static void round_all(fg_dtype dtype, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = fg_dtype_round(dtype, x[i]);
}

static fg_status norm16(fg_dtype dtype, const fg_config *c, float *y, const float *x,
                        const float *g, const float *b, int T)
{
    if (c->arch == FG_ARCH_LLAMA)
        return fg_ref_rms_norm_naive16(dtype, y, x, g, T, c->n_embd, c->norm_eps);
    return fg_ref_layer_norm_naive16(dtype, y, x, g, b, T, c->n_embd, c->norm_eps);
}

/* x (T, C) += attention of norm_1(x) at positions L .. L+T-1, rounded. */
static fg_status attention16(fg_dtype dtype, const fg_config *c, int layer,
                             const fg_layer_weights *lw, fg_kv_layer *cl, int capacity, int T,
                             naive_ws *ws)
{
    const int C = c->n_embd, d = fg_config_head_dim(c), H = c->n_head, KV = c->n_kv_head;
    const int W = fg_config_qkv_width(c), L = cl->len, n = L + T;
    FGI_TRY(norm16(dtype, c, ws->h, ws->x, lw->ln_1_g, lw->ln_1_b, T));
    FGI_TRY(fg_ref_linear_naive16(dtype, ws->qkv, ws->h, lw->c_attn_w, lw->c_attn_b, T, C, W));
    /* (T, [q | k | v]) into (heads, T, d) copies */
    for (int t = 0; t < T; t++) {
        const float *row = ws->qkv + (size_t)t * W;
        for (int h = 0; h < H; h++)
            memcpy(ws->q + ((size_t)h * T + t) * d, row + (size_t)h * d, sizeof(float) * d);
        for (int h = 0; h < KV; h++) {
            memcpy(ws->k + ((size_t)h * T + t) * d, row + (size_t)(H + h) * d, sizeof(float) * d);
            memcpy(ws->v + ((size_t)h * T + t) * d, row + (size_t)(H + KV + h) * d,
                   sizeof(float) * d);
        }
        ws->pos[t] = L + t;
    }
    if (c->use_rope) {
        FGI_TRY(fgi_ref_rope_cfg_naive16(dtype, ws->q, H, T, d, ws->pos, c));
        FGI_TRY(fgi_ref_rope_cfg_naive16(dtype, ws->k, KV, T, d, ws->pos, c));
    }
    /* append to the cache, then gather the n visible keys contiguously */
    for (int h = 0; h < KV; h++)
        for (int t = 0; t < T; t++) {
            memcpy(cl->k + ((size_t)h * capacity + L + t) * d, ws->k + ((size_t)h * T + t) * d,
                   sizeof(float) * d);
            memcpy(cl->v + ((size_t)h * capacity + L + t) * d, ws->v + ((size_t)h * T + t) * d,
                   sizeof(float) * d);
        }
    for (int h = 0; h < KV; h++) {
        memcpy(ws->kc + (size_t)h * n * d, cl->k + (size_t)h * capacity * d,
               sizeof(float) * (size_t)n * d);
        memcpy(ws->vc + (size_t)h * n * d, cl->v + (size_t)h * capacity * d,
               sizeof(float) * (size_t)n * d);
    }
    FGI_TRY(fgi_ref_gqa_window_naive16(dtype, ws->att, ws->q, ws->kc, ws->vc, H, KV, T, n, d,
                                       fg_config_layer_window(c, layer)));
    FGI_TRY(fg_ref_merge_heads_naive16(dtype, ws->merged, ws->att, H, T, d));
    FGI_TRY(fg_ref_linear_naive16(dtype, ws->delta, ws->merged, lw->c_proj_w, lw->c_proj_b, T,
                                  H * d, C));
    for (size_t i = 0; i < (size_t)T * C; i++)
        ws->x[i] = fg_dtype_round(dtype, ws->x[i] + ws->delta[i]);
    cl->len = n;
    return FG_OK;
}

/* x (T, C) += MLP of norm_2(x), rounded. */
static fg_status mlp16(fg_dtype dtype, const fg_config *c, const fg_layer_weights *lw, int T,
                       naive_ws *ws)
{
    const int C = c->n_embd, I = c->n_inner;
    FGI_TRY(norm16(dtype, c, ws->h, ws->x, lw->ln_2_g, lw->ln_2_b, T));
    if (c->arch == FG_ARCH_LLAMA)
        FGI_TRY(fg_ref_swiglu_ffn_naive16(dtype, ws->delta, ws->h, lw->fc_w, lw->up_w,
                                          lw->mlp_proj_w, T, C, I));
    else
        FGI_TRY(fg_ref_ffn_naive16(dtype, ws->delta, ws->h, lw->fc_w, lw->fc_b, lw->mlp_proj_w,
                                   lw->mlp_proj_b, T, C, I));
    for (size_t i = 0; i < (size_t)T * C; i++)
        ws->x[i] = fg_dtype_round(dtype, ws->x[i] + ws->delta[i]);
    return FG_OK;
}

fg_status fgi_ref_forward_naive16(fg_dtype dtype, float *logits, const fg_config *cfg,
                                 const fg_weights *w, fg_kv_cache *cache, const int *ids, int T)
{
    static const char fn[] = "fgi_ref_forward_naive16";
    if (dtype != FG_DTYPE_BF16 && dtype != FG_DTYPE_F16)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'dtype' must be bf16 or f16 (%d)", fn,
                        (int)dtype);
    FGI_TRY(fgi_check_config(fn, cfg));
    FGI_TRY(fgi_check_weights(fn, cfg, w));
    fgi_cache_shape shape = {0};
    if (cache != NULL) {
        shape.n_layer = cache->n_layer;
        shape.n_kv_head = cache->n_kv_head;
        shape.head_dim = cache->head_dim;
        shape.capacity = cache->capacity;
        shape.lens = cache->layers ? &cache->layers[0].len : NULL;
        shape.len_stride = sizeof cache->layers[0];
    }
    FGI_TRY(fgi_check_forward_call(fn, cfg, w->wpe != NULL, logits, NULL, T, ids, T, 0,
                                   cache != NULL ? &shape : NULL));
    const int L = cache->layers[0].len, C = cfg->n_embd, V = cfg->vocab_size;
    naive_ws ws;
    FGI_TRY(ws_create(fn, &ws, cfg, T, L + T));
    fg_status st = FG_OK;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i++) {
            const float tok = w->wte[(size_t)ids[t] * C + i];
            const float pos = w->wpe ? w->wpe[(size_t)(L + t) * C + i] : 0.0f;
            ws.x[(size_t)t * C + i] = fg_dtype_round(dtype, tok + pos);
        }
    for (int l = 0; l < cfg->n_layer && st == FG_OK; l++) {
        st = attention16(dtype, cfg, l, &w->layers[l], &cache->layers[l], cache->capacity, T,
                         &ws);
        if (st == FG_OK) st = mlp16(dtype, cfg, &w->layers[l], T, &ws);
    }
    if (st == FG_OK) st = norm16(dtype, cfg, ws.h, ws.x, w->ln_f_g, w->ln_f_b, T);
    if (st == FG_OK) {
        /* the classifier: lm_head (V, C) or the tied wte (V, C), x W^T */
        const float *cls = w->lm_head ? w->lm_head : w->wte;
        for (int t = 0; t < T; t++)
            for (int v = 0; v < V; v++) {
                float acc = 0.0f;
                for (int i = 0; i < C; i++)
                    acc += ws.h[(size_t)t * C + i] * cls[(size_t)v * C + i];
                logits[(size_t)t * V + v] = acc;
            }
        round_all(dtype, logits, (size_t)T * V);
    }
    free(ws.block);
    return st;
}
