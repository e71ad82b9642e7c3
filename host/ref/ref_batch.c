/* CPU reference: the batched forward over a paged KV cache (issue 15; see
 * host/runtime/kv_paged.h). The rows of every sequence go through each
 * linear layer together, every row with the reference's own per-row code
 * (fgi_linear, the norms, the MLPs: nothing in them looks at other rows);
 * attention runs per (sequence, head) on that sequence's keys, copied out of
 * its blocks into a contiguous (kv_len, head_dim) scratch so that
 * fgi_attend_head sums exactly as fg_ref_forward does. Slow and exact: what
 * the fast paths are held to. */
#include "check.h"
#include "config_internal.h"
#include "kv_paged.h"
#include "ref_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    float *x, *h, *delta, *qkv, *att, *mlp; /* (N, C) x3, (N, qkv), (N, nh*d), (N, 2*inner) */
    float *keys, *vals;                     /* (max_kv, d) gathered keys / values */
    double *acc, *attention;
    void *block;
} batch_ws;

static fg_status ws_create(const char *fn, batch_ws *ws, const fg_config *c, int N, int max_kv)
{
    const int d = fg_config_head_dim(c), qkv_w = fg_config_qkv_width(c);
    int n_acc = qkv_w > c->n_embd ? qkv_w : c->n_embd;
    if (c->n_inner > n_acc) n_acc = c->n_inner;
    size_t row, floats, kv;
    FGI_TRY(fgi_check_elems(fn, "workspace row", &row, 1,
                            3LL * c->n_embd + qkv_w + (long long)c->n_head * d +
                                2LL * c->n_inner));
    FGI_TRY(fgi_check_elems(fn, "workspace", &floats, 2, (long long)row, (long long)N));
    FGI_TRY(fgi_check_elems(fn, "gathered keys", &kv, 3, 2LL, (long long)max_kv, (long long)d));
    const size_t doubles = (size_t)n_acc + fgi_attend_scratch(max_kv, d);
    double *block;
    FGI_TRY(fgi_alloc(fn, (void **)&block, doubles + (floats + kv + 1) / 2, sizeof(double)));
    const size_t n = (size_t)N, C = (size_t)c->n_embd;
    ws->block = block;
    ws->acc = block;
    ws->attention = block + n_acc;
    ws->x = (float *)(block + doubles);
    ws->h = ws->x + n * C;
    ws->delta = ws->h + n * C;
    ws->qkv = ws->delta + n * C;
    ws->att = ws->qkv + n * qkv_w;
    ws->mlp = ws->att + n * c->n_head * d;
    ws->keys = ws->mlp + n * 2 * c->n_inner;
    ws->vals = ws->keys + (size_t)max_kv * d;
    return FG_OK;
}

static void norm_rows(float *y, const float *x, const float *g, const float *b, int rows,
                      const fg_config *c)
{
    const size_t C = (size_t)c->n_embd;
    for (size_t t = 0; t < (size_t)rows; t++) {
        if (c->arch == FG_ARCH_LLAMA)
            fgi_rms_norm_row(y + t * C, x + t * C, g, (int)C, c->norm_eps);
        else
            fgi_layer_norm_row(y + t * C, x + t * C, g, b, (int)C, c->norm_eps);
    }
}

/* The slot of token t of a sequence in layer l, kv head g. */
static size_t slot(const fgi_kv_pool *p, const int32_t *blocks, int l, int g, int t)
{
    const int bs = p->block_size;
    return (size_t)l * p->layer_stride + (size_t)blocks[t / bs] * p->block_stride +
           (size_t)g * p->head_stride + (size_t)(t % bs) * (size_t)p->head_dim;
}

static void attention(const fg_config *c, const fg_layer_weights *lw, fgi_kv_pool *p, int l,
                      const fgi_batch_seq *seqs, int n_seqs, int N, batch_ws *ws)
{
    const int C = c->n_embd, nh = c->n_head, nkv = c->n_kv_head, d = fg_config_head_dim(c);
    const int qkv_w = fg_config_qkv_width(c), group = nh / nkv;
    const int block = c->use_flash ? c->flash_block : 0;
    fgi_linear(ws->qkv, ws->h, lw->c_attn_w, lw->c_attn_b, N, C, qkv_w, ws->acc);
    int row0 = 0;
    for (int s = 0; s < n_seqs; s++) {
        const fgi_batch_seq *q = &seqs[s];
        for (int t = 0; t < q->n_tokens; t++) {
            float *row = ws->qkv + (size_t)(row0 + t) * qkv_w;
            const int pos = q->start + t;
            for (int h = 0; h < nh && c->use_rope; h++)
                fgi_rope_vector_cfg(row + (size_t)h * d, pos, c);
            for (int g = 0; g < nkv; g++) {
                float *k = p->k + slot(p, q->blocks, l, g, pos);
                memcpy(k, row + (size_t)(nh + g) * d, sizeof(float) * d);
                memcpy(p->v + slot(p, q->blocks, l, g, pos), row + (size_t)(nh + nkv + g) * d,
                       sizeof(float) * d);
                if (c->use_rope) fgi_rope_vector_cfg(k, pos, c);
            }
        }
        const int kv_len = q->start + q->n_tokens;
        for (int g = 0; g < nkv; g++) {
            for (int t = 0; t < kv_len; t++) {
                const size_t at = slot(p, q->blocks, l, g, t);
                memcpy(ws->keys + (size_t)t * d, p->k + at, sizeof(float) * d);
                memcpy(ws->vals + (size_t)t * d, p->v + at, sizeof(float) * d);
            }
            for (int h = g * group; h < (g + 1) * group; h++)
                fgi_attend_head(ws->att + (size_t)row0 * nh * d + (size_t)h * d, (size_t)nh * d,
                                ws->qkv + (size_t)row0 * qkv_w + (size_t)h * d, (size_t)qkv_w,
                                ws->keys, ws->vals, q->n_tokens, kv_len, d, block,
                                fg_config_layer_window(c, l), ws->attention);
        }
        row0 += q->n_tokens;
    }
    fgi_linear(ws->delta, ws->att, lw->c_proj_w, lw->c_proj_b, N, nh * d, C, ws->acc);
}

static void add_rows(float *x, const float *delta, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] += delta[i];
}

fg_status fgi_ref_forward_batch(const char *fn, const fg_config *cfg, const fg_weights *w,
                                fgi_kv_pool *pool, const fgi_batch_seq *seqs, int n_seqs)
{
    int N, max_kv = 1;
    FGI_TRY(fgi_check_config(fn, cfg));
    FGI_TRY(fgi_check_weights(fn, cfg, w));
    FGI_TRY(fgi_batch_check(fn, cfg, pool, seqs, n_seqs, cfg->n_ctx, &N));
    for (int s = 0; s < n_seqs; s++)
        if (seqs[s].start + seqs[s].n_tokens > max_kv) max_kv = seqs[s].start + seqs[s].n_tokens;
    batch_ws ws;
    FGI_TRY(ws_create(fn, &ws, cfg, N, max_kv));

    const size_t C = (size_t)cfg->n_embd, V = (size_t)cfg->vocab_size;
    for (int s = 0, r = 0; s < n_seqs; s++)
        for (int t = 0; t < seqs[s].n_tokens; t++, r++) {
            const int pos = seqs[s].start + t;
            const float *tok = w->wte + (size_t)seqs[s].ids[t] * C;
            const float *pe = w->wpe ? w->wpe + (size_t)pos * C : NULL;
            for (size_t i = 0; i < C; i++) ws.x[r * C + i] = tok[i] + (pe ? pe[i] : 0.0f);
        }
    for (int l = 0; l < cfg->n_layer; l++) {
        const fg_layer_weights *lw = &w->layers[l];
        norm_rows(ws.h, ws.x, lw->ln_1_g, lw->ln_1_b, N, cfg);
        attention(cfg, lw, pool, l, seqs, n_seqs, N, &ws);
        add_rows(ws.x, ws.delta, (size_t)N * C);
        norm_rows(ws.h, ws.x, lw->ln_2_g, lw->ln_2_b, N, cfg);
        if (cfg->arch == FG_ARCH_LLAMA)
            fgi_swiglu_mlp(ws.delta, ws.h, lw->fc_w, lw->up_w, lw->mlp_proj_w, N, (int)C,
                           cfg->n_inner, ws.mlp, ws.acc);
        else
            fgi_gelu_mlp(ws.delta, ws.h, lw->fc_w, lw->fc_b, lw->mlp_proj_w, lw->mlp_proj_b, N,
                         (int)C, cfg->n_inner, ws.mlp, ws.acc);
        add_rows(ws.x, ws.delta, (size_t)N * C);
    }
    const float *head = w->lm_head ? w->lm_head : w->wte;
    for (int s = 0, r0 = 0; s < n_seqs; r0 += seqs[s].n_tokens, s++) {
        const fgi_batch_seq *q = &seqs[s];
        if (q->logits == NULL) continue;
        const int rows = q->all_logits ? q->n_tokens : 1;
        const float *first = ws.x + (size_t)(r0 + q->n_tokens - rows) * C;
        norm_rows(ws.h, first, w->ln_f_g, w->ln_f_b, rows, cfg);
        fgi_linear_transposed(q->logits, ws.h, head, rows, (int)C, (int)V);
    }
    free(ws.block);
    return FG_OK;
}
