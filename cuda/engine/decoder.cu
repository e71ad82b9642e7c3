/* The decoder on the GPU (SPEC 10-12): attention layer with KV cache,
 * pre-norm block and forward pass, GPT-2 and Llama families, with exactly the
 * semantics of host/ref_decoder.c.
 *
 * Conventions: the model holds the configuration, every weight in one device
 * allocation (uploaded once; Llama's w1 and w3 fused side by side into one
 * (C, 2*n_inner) matrix so gate and up are one GEMM), a cuBLAS handle bound
 * to the model's stream, and activation buffers for max_tokens tokens; the
 * cache holds per layer k and v (n_kv_head, capacity, head_dim) in device
 * memory and the token counts on the host. Every argument (ids, capacity,
 * positions, T <= max_tokens, cache shape) is checked before anything is
 * enqueued, so a refused call changes nothing; token counts grow only once
 * all of a call's work has been enqueued without error. No allocation per
 * token (the attention workspace grows only when a cache with a larger
 * capacity than any seen before is used).
 * Design per layer: q|k|v GEMM; one kernel adds the q|k|v bias, rotates q in
 * place and appends rotated k and v to the cache; attention reads q with
 * strides straight from the projection and writes each head into its
 * columns of the merged buffer; output GEMM; one kernel does the residual
 * add (with the projection bias) and the next norm; the MLP likewise ends
 * in the fused add + norm of the following layer (or the final norm).
 * Linear layers go through fgi_cuda_linear_layer: cuBLAS SGEMM for prefill,
 * the GEMV kernel for a decode step's single row (its epilogue also adds
 * GPT-2's c_fc bias and applies GELU, so that pass is not a launch).
 * Decode steps (fg_cuda_forward_last with T = 1): about ten launches per
 * layer cost more host time than the GPU needs for them, so the step is
 * captured once per (model, cache) as a CUDA graph whose kernels read the
 * token, its position and the key count from the cache's device step
 * record; each step then copies those three ints in, replays the graph and
 * copies the logits out. Where capture fails, the step runs uncaptured. */
#include "attention_internal.h"
#include "cuda_common.cuh"
#include "decoder_internal.h"
#include "config_internal.h"
#include "ops_internal.h"
#include "reduce.cuh"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Device pointers of one layer's weights (NULL where the host had NULL). */
typedef struct {
    const float *ln_1_g, *ln_1_b, *c_attn_w, *c_attn_b, *c_proj_w, *c_proj_b;
    const float *ln_2_g, *ln_2_b;
    const float *fc_w;  /* GPT-2 (C, n_inner); Llama [w1 | w3] (C, 2*n_inner) */
    const float *fc_b, *mlp_proj_w, *mlp_proj_b;
} layer_weights;

struct fg_cuda_model {
    fg_config cfg;
    int max_tokens, head_dim, qkv_width;
    cudaStream_t stream;
    fgi_linear_ctx lin; /* cuBLAS handle bound to the stream; GEMV workspace */
    float *weights; /* one device block holding every tensor */
    layer_weights *layers; /* host array of n_layer */
    const float *wte, *wpe, *ln_f_g, *ln_f_b, *classifier;
    float *activations; /* one device block holding the buffers below */
    float *x;      /* (max_tokens, C) residual stream */
    float *h;      /* (max_tokens, C) normalised sublayer input */
    float *delta;  /* (max_tokens, C) sublayer output before its bias */
    float *qkv;    /* (max_tokens, qkv_width) */
    float *att;    /* (max_tokens, n_head*head_dim) merged head outputs */
    float *mlp;    /* GPT-2 (max_tokens, n_inner); Llama (max_tokens, 2*n_inner) gate|up */
    float *mlp_act; /* Llama (max_tokens, n_inner) silu(gate) * up; GPT-2 unused */
    float *logits; /* (max_tokens, vocab) */
    int *ids;      /* (max_tokens) */
    void *attention_ws; /* attention workspace, sized for attention_ws_kv keys */
    size_t attention_ws_bytes;
    int attention_ws_kv;
    const fg_cuda_kv_cache *graph_cache; /* the cache whose graph was captured last */
    cudaStream_t capture_stream; /* private, for capture: the legacy stream 0 cannot be captured */
};

struct fg_cuda_kv_cache {
    int n_layer, n_kv_head, head_dim, capacity;
    size_t layer_floats; /* n_kv_head * capacity * head_dim */
    float *data; /* device: layer l keys at 2l*layer_floats, values at (2l+1)* */
    int *len;    /* host (n_layer) */
    int *step;   /* device (3): token id, position, key count of a graph step */
    /* The captured decode step, valid while graph_model->graph_cache is this
     * cache and the model's attention workspace is graph_ws. */
    cudaGraphExec_t graph;
    const fg_cuda_model *graph_model;
    const void *graph_ws;
    int graph_unavailable; /* capture failed once: run steps uncaptured */
    long long graph_steps; /* steps replayed through the graph */
};

static float *cache_k(const fg_cuda_kv_cache *c, int layer)
{
    return c->data + (size_t)(2 * layer) * c->layer_floats;
}
static float *cache_v(const fg_cuda_kv_cache *c, int layer)
{
    return c->data + (size_t)(2 * layer + 1) * c->layer_floats;
}

static fg_status cuda_alloc(const char *fn, void **p, size_t bytes, const char *what)
{
    *p = NULL;
    cudaError_t err = cudaMalloc(p, bytes);
    if (err == cudaSuccess) return FG_OK;
    *p = NULL;
    (void)cudaGetLastError();
    return fgi_fail(err == cudaErrorMemoryAllocation ? FG_ERR_OOM : FG_ERR_CUDA,
                   "%s: allocating %zu bytes of device memory for %s failed: %s", fn,
                   bytes, what, cudaGetErrorString(err));
}

/* Weights upload ------------------------------------------------------------ */

/* Places tensors in one device block. With base == NULL it only counts. */
typedef struct {
    const char *fn;
    float *base;
    size_t used; /* floats, each tensor aligned to 64 floats (256 bytes) */
} arena;

static fg_status arena_take(arena *a, size_t n, size_t *offset)
{
    const size_t limit = (size_t)PTRDIFF_MAX / sizeof(float) / 2;
    const size_t rounded = (n + 63) / 64 * 64;
    if (rounded > limit || a->used > limit - rounded)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the weights are too large (more than %zu floats)",
                       a->fn, limit);
    *offset = a->used;
    a->used += rounded;
    return FG_OK;
}

static fg_status put(arena *a, const float **dst, const float *src, size_t n)
{
    size_t off = 0;
    *dst = NULL;
    if (src == NULL) return FG_OK;
    FGI_TRY(arena_take(a, n, &off));
    if (a->base == NULL) return FG_OK;
    FGI_CUDA_TRY(a->fn, cudaMemcpy(a->base + off, src, sizeof(float) * n,
                                  cudaMemcpyHostToDevice));
    *dst = a->base + off;
    return FG_OK;
}

/* [gate | up] side by side: row i = gate row i, then up row i. */
static fg_status put_side_by_side(arena *a, const float **dst, const float *gate,
                                  const float *up, size_t rows, size_t cols)
{
    size_t off = 0;
    *dst = NULL;
    FGI_TRY(arena_take(a, 2 * rows * cols, &off));
    if (a->base == NULL) return FG_OK;
    const size_t row_bytes = sizeof(float) * cols;
    float *base = a->base + off;
    FGI_CUDA_TRY(a->fn, cudaMemcpy2D(base, 2 * row_bytes, gate, row_bytes, row_bytes, rows,
                                    cudaMemcpyHostToDevice));
    FGI_CUDA_TRY(a->fn, cudaMemcpy2D(base + cols, 2 * row_bytes, up, row_bytes, row_bytes,
                                    rows, cudaMemcpyHostToDevice));
    *dst = base;
    return FG_OK;
}

static fg_status place_weights(arena *a, fg_cuda_model *m, const fg_weights *w)
{
    const fg_config *c = &m->cfg;
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner, V = (size_t)c->vocab_size;
    const size_t W = (size_t)m->qkv_width, A = (size_t)c->n_head * m->head_dim;
    FGI_TRY(put(a, &m->wte, w->wte, V * C));
    FGI_TRY(put(a, &m->wpe, w->wpe, (size_t)c->n_ctx * C));
    FGI_TRY(put(a, &m->ln_f_g, w->ln_f_g, C));
    FGI_TRY(put(a, &m->ln_f_b, w->ln_f_b, C));
    FGI_TRY(put(a, &m->classifier, w->lm_head, V * C));
    if (w->lm_head == NULL) m->classifier = m->wte;
    for (int l = 0; l < c->n_layer; l++) {
        const fg_layer_weights *src = &w->layers[l];
        layer_weights *dst = &m->layers[l];
        FGI_TRY(put(a, &dst->ln_1_g, src->ln_1_g, C));
        FGI_TRY(put(a, &dst->ln_1_b, src->ln_1_b, C));
        FGI_TRY(put(a, &dst->c_attn_w, src->c_attn_w, C * W));
        FGI_TRY(put(a, &dst->c_attn_b, src->c_attn_b, W));
        FGI_TRY(put(a, &dst->c_proj_w, src->c_proj_w, A * C));
        FGI_TRY(put(a, &dst->c_proj_b, src->c_proj_b, C));
        FGI_TRY(put(a, &dst->ln_2_g, src->ln_2_g, C));
        FGI_TRY(put(a, &dst->ln_2_b, src->ln_2_b, C));
        if (c->arch == FG_ARCH_LLAMA)
            FGI_TRY(put_side_by_side(a, &dst->fc_w, src->fc_w, src->up_w, C, I));
        else
            FGI_TRY(put(a, &dst->fc_w, src->fc_w, C * I));
        FGI_TRY(put(a, &dst->fc_b, src->fc_b, I));
        FGI_TRY(put(a, &dst->mlp_proj_w, src->mlp_proj_w, I * C));
        FGI_TRY(put(a, &dst->mlp_proj_b, src->mlp_proj_b, C));
    }
    return FG_OK;
}

static fg_status upload_weights(const char *fn, fg_cuda_model *m, const fg_weights *w)
{
    arena a = {fn, NULL, 0};
    FGI_TRY(place_weights(&a, m, w)); /* counting pass */
    FGI_TRY(cuda_alloc(fn, (void **)&m->weights, sizeof(float) * a.used, "the weights"));
    a.base = m->weights;
    a.used = 0;
    return place_weights(&a, m, w);
}

/* Activations and workspace --------------------------------------------------- */

static fg_status carve(const char *fn, float **dst, float **next, size_t *total, int rows,
                       long long cols, const char *what)
{
    size_t n;
    FGI_TRY(fgi_check_elems(fn, what, &n, 2, (long long)rows, cols));
    n = (n + 63) / 64 * 64;
    if (next != NULL) {
        *dst = *next;
        *next += n;
    }
    *total += n;
    return FG_OK;
}

/* Lays out (or, with base == NULL, sizes) the activation buffers. */
static fg_status layout_activations(const char *fn, fg_cuda_model *m, float *base,
                                    size_t *total)
{
    const fg_config *c = &m->cfg;
    const int T = m->max_tokens;
    const int llama = c->arch == FG_ARCH_LLAMA;
    float *next = base, **cursor = base ? &next : NULL;
    *total = 0;
    FGI_TRY(carve(fn, &m->x, cursor, total, T, c->n_embd, "activations x (max_tokens*n_embd)"));
    FGI_TRY(carve(fn, &m->h, cursor, total, T, c->n_embd, "activations h"));
    FGI_TRY(carve(fn, &m->delta, cursor, total, T, c->n_embd, "activations delta"));
    FGI_TRY(carve(fn, &m->qkv, cursor, total, T, m->qkv_width, "q|k|v (max_tokens*qkv_width)"));
    FGI_TRY(carve(fn, &m->att, cursor, total, T, (long long)c->n_head * m->head_dim,
                 "attention output"));
    FGI_TRY(carve(fn, &m->mlp, cursor, total, T, (llama ? 2LL : 1LL) * c->n_inner,
                 "MLP activations"));
    FGI_TRY(carve(fn, &m->mlp_act, cursor, total, T, llama ? c->n_inner : 0,
                 "SwiGLU product"));
    FGI_TRY(carve(fn, &m->logits, cursor, total, T, c->vocab_size,
                 "logits (max_tokens*vocab_size)"));
    const size_t limit = (size_t)PTRDIFF_MAX / sizeof(float) / 2;
    if (*total > limit)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: activation buffers for max_tokens %d are too large (%zu floats)",
                       fn, T, *total);
    return FG_OK;
}

/* Makes the attention workspace cover caches of up to `capacity` tokens. */
static fg_status ensure_attention_workspace(const char *fn, fg_cuda_model *m, int capacity)
{
    if (m->attention_ws != NULL && capacity <= m->attention_ws_kv) return FG_OK;
    const int kv = capacity > m->attention_ws_kv ? capacity : m->attention_ws_kv;
    size_t bytes = fgi_cuda_attention_workspace_bound(m->cfg.n_head, m->max_tokens, kv,
                                                      m->head_dim);
    if (bytes < 256) bytes = 256; /* never NULL: NULL asks the kernel to allocate */
    if (m->attention_ws != NULL && bytes <= m->attention_ws_bytes) {
        m->attention_ws_kv = kv;
        return FG_OK;
    }
    void *p;
    FGI_TRY(cuda_alloc(fn, &p, bytes, "the attention workspace"));
    const cudaError_t zeroed = cudaMemset(p, 0, bytes); /* the workspace contract */
    if (zeroed != cudaSuccess) {
        (void)cudaGetLastError();
        cudaFree(p);
        return fgi_fail(FG_ERR_CUDA, "%s: cudaMemset of the attention workspace failed: %s", fn,
                       cudaGetErrorString(zeroed));
    }
    if (m->attention_ws != NULL) {
        cudaError_t err = cudaStreamSynchronize(m->stream); /* old one may be in use */
        if (err != cudaSuccess) {
            (void)cudaGetLastError();
            cudaFree(p);
            return fgi_fail(FG_ERR_CUDA, "%s: cudaStreamSynchronize failed: %s", fn,
                           cudaGetErrorString(err));
        }
        cudaFree(m->attention_ws);
    }
    m->attention_ws = p;
    m->attention_ws_bytes = bytes;
    m->attention_ws_kv = kv;
    return FG_OK;
}

/* Model ------------------------------------------------------------------------ */

extern "C" void fg_cuda_model_destroy(fg_cuda_model *m)
{
    if (m == NULL) return;
    if (m->lin.blas) cublasDestroy(m->lin.blas);
    if (m->capture_stream) cudaStreamDestroy(m->capture_stream);
    if (m->weights) cudaFree(m->weights);
    if (m->activations) cudaFree(m->activations);
    if (m->ids) cudaFree(m->ids);
    if (m->attention_ws) cudaFree(m->attention_ws);
    if (m->lin.gemv_ws) cudaFree(m->lin.gemv_ws);
    (void)cudaGetLastError();
    free(m->layers);
    free(m);
}

static fg_status model_init(const char *fn, fg_cuda_model *m, const fg_weights *w)
{
    size_t total;
    FGI_TRY(fgi_alloc(fn, (void **)&m->layers, (size_t)m->cfg.n_layer, sizeof(layer_weights)));
    FGI_TRY(layout_activations(fn, m, NULL, &total));
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_TRY(fgi_cuda_blas_create(fn, &m->lin.blas, m->stream));
    FGI_TRY(fgi_cuda_sm_count(fn, &m->lin.sm_count));
    FGI_TRY(cuda_alloc(fn, &m->lin.gemv_ws, FGI_GEMV_WORKSPACE_BYTES, "the GEMV workspace"));
    FGI_CUDA_TRY(fn, cudaMemset(m->lin.gemv_ws, 0, FGI_GEMV_COUNTER_BYTES));
    FGI_TRY(upload_weights(fn, m, w));
    FGI_TRY(cuda_alloc(fn, (void **)&m->activations, sizeof(float) * total, "activations"));
    FGI_TRY(layout_activations(fn, m, m->activations, &total));
    FGI_TRY(cuda_alloc(fn, (void **)&m->ids, sizeof(int) * (size_t)m->max_tokens, "token ids"));
    /* sized for max_tokens keys now, grown to a cache's capacity when one is
     * used: sizing it for n_ctx reserved memory for positions a config only
     * claims (millions of them) */
    return ensure_attention_workspace(fn, m, m->max_tokens);
}

extern "C" fg_status fg_cuda_model_create(fg_cuda_model **model, const fg_config *cfg,
                                          const fg_weights *w, int max_tokens,
                                          cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_model_create";
    FGI_TRY(fgi_check_ptr(fn, "model", model));
    *model = NULL;
    FGI_TRY(fgi_check_config(fn, cfg));
    FGI_TRY(fgi_check_weights(fn, cfg, w));
    FGI_TRY(fgi_check_min(fn, "max_tokens", max_tokens, 1));
    if (cfg->arch == FG_ARCH_LLAMA && cfg->n_inner > 0x7fffffff / 2)
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: config.n_inner %d is too large for the fused gate|up GEMM", fn,
                       cfg->n_inner);
    fg_cuda_model *m;
    FGI_TRY(fgi_alloc(fn, (void **)&m, 1, sizeof *m));
    m->cfg = *cfg;
    m->max_tokens = max_tokens;
    m->head_dim = cfg->n_embd / cfg->n_head;
    m->qkv_width = fg_config_qkv_width(cfg);
    m->stream = stream;
    fg_status st = model_init(fn, m, w);
    if (st != FG_OK) {
        fg_cuda_model_destroy(m);
        return st;
    }
    *model = m;
    return FG_OK;
}

extern "C" const fg_config *fg_cuda_model_config(const fg_cuda_model *model)
{
    return model ? &model->cfg : NULL;
}

/* KV cache ---------------------------------------------------------------------- */

extern "C" void fg_cuda_kv_cache_destroy(fg_cuda_kv_cache *cache)
{
    if (cache == NULL) return;
    if (cache->graph) cudaGraphExecDestroy(cache->graph);
    if (cache->data) cudaFree(cache->data);
    if (cache->step) cudaFree(cache->step);
    (void)cudaGetLastError();
    free(cache->len);
    free(cache);
}

extern "C" fg_status fg_cuda_kv_cache_create(fg_cuda_kv_cache **cache, const fg_config *cfg,
                                             int capacity)
{
    static const char fn[] = "fg_cuda_kv_cache_create";
    size_t per_layer, all;
    FGI_TRY(fgi_check_ptr(fn, "cache", cache));
    *cache = NULL;
    FGI_TRY(fgi_check_config(fn, cfg));
    FGI_TRY(fgi_check_min(fn, "capacity", capacity, 1));
    const int head_dim = cfg->n_embd / cfg->n_head;
    FGI_TRY(fgi_check_elems(fn, "one layer's keys (n_kv_head*capacity*head_dim)", &per_layer,
                          3, (long long)cfg->n_kv_head, (long long)capacity,
                          (long long)head_dim));
    FGI_TRY(fgi_check_elems(fn, "the cache (2*n_layer*n_kv_head*capacity*head_dim)", &all, 2,
                          (long long)per_layer, 2LL * cfg->n_layer));
    FGI_TRY(fgi_cuda_check_device(fn));
    fg_cuda_kv_cache *c;
    FGI_TRY(fgi_alloc(fn, (void **)&c, 1, sizeof *c));
    c->n_layer = cfg->n_layer;
    c->n_kv_head = cfg->n_kv_head;
    c->head_dim = head_dim;
    c->capacity = capacity;
    c->layer_floats = per_layer;
    fg_status st = fgi_alloc(fn, (void **)&c->len, (size_t)cfg->n_layer, sizeof(int));
    if (st == FG_OK) st = cuda_alloc(fn, (void **)&c->data, sizeof(float) * all, "the KV cache");
    if (st == FG_OK) st = cuda_alloc(fn, (void **)&c->step, 3 * sizeof(int), "the step record");
    if (st != FG_OK) {
        fg_cuda_kv_cache_destroy(c);
        return st;
    }
    *cache = c;
    return FG_OK;
}

extern "C" long long fgi_cuda_kv_cache_graph_steps(const fg_cuda_kv_cache *cache)
{
    return cache != NULL ? cache->graph_steps : 0;
}

extern "C" fg_status fg_cuda_kv_cache_reset(fg_cuda_kv_cache *cache)
{
    FGI_TRY(fgi_check_ptr("fg_cuda_kv_cache_reset", "cache", cache));
    for (int l = 0; l < cache->n_layer; l++) cache->len[l] = 0;
    return FG_OK;
}

extern "C" int fg_cuda_kv_cache_len(const fg_cuda_kv_cache *cache, int layer)
{
    if (cache == NULL || layer < 0 || layer >= cache->n_layer) return -1;
    return cache->len[layer];
}

extern "C" int fg_cuda_kv_cache_capacity(const fg_cuda_kv_cache *cache)
{
    return cache ? cache->capacity : -1;
}

/* Validation (mirrors host/ref_decoder.c) ------------------------------------- */

/* The cache must match the model and have room for T more tokens in `layer`
 * (in every layer, all holding the same count, when layer < 0). */
static fg_status check_cache(const char *fn, const fg_cuda_model *m,
                             const fg_cuda_kv_cache *cache, int layer, int T)
{
    const fg_config *c = &m->cfg;
    FGI_TRY(fgi_check_ptr(fn, "cache", cache));
    if (cache->n_layer != c->n_layer || cache->n_kv_head != c->n_kv_head ||
        cache->head_dim != m->head_dim)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: cache (n_layer %d, n_kv_head %d, head_dim %d) does not "
                       "match the model (n_layer %d, n_kv_head %d, head_dim %d)",
                       fn, cache->n_layer, cache->n_kv_head, cache->head_dim, c->n_layer,
                       c->n_kv_head, m->head_dim);
    if (layer >= c->n_layer)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'layer' must be < n_layer (%d) (got %d)", fn,
                       c->n_layer, layer);
    const int first = layer < 0 ? 0 : layer, last = layer < 0 ? c->n_layer - 1 : layer;
    return fgi_check_cache_lens(fn, cache->len, sizeof(int), first, last, T, cache->capacity);
}

static fg_status check_tokens(const char *fn, const fg_cuda_model *m, int T)
{
    FGI_TRY(fgi_check_min(fn, "T", T, 1));
    if (T > m->max_tokens)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'T' must be <= the model's max_tokens (%d) (got %d)",
                       fn, m->max_tokens, T);
    return FG_OK;
}

/* Device activations in/out of a layer or block (T, C); out may equal x. */
static fg_status check_layer_call(const char *fn, const float *out, const float *x, int T,
                                  const fg_cuda_model *m, const fg_cuda_kv_cache *cache,
                                  int layer)
{
    size_t elems;
    FGI_TRY(fgi_check_ptr(fn, "model", m));
    FGI_TRY(fgi_check_ptr(fn, "x", x)); /* first: fg_cuda_block passes x as out too */
    FGI_TRY(fgi_check_ptr(fn, "out", out));
    FGI_TRY(check_tokens(fn, m, T));
    FGI_TRY(fgi_check_elems(fn, "x (T*n_embd)", &elems, 2, (long long)T,
                          (long long)m->cfg.n_embd));
    if (out != x)
        FGI_TRY(fgi_check_disjoint(fn, "out", out, elems * sizeof(float), "x", x,
                                 elems * sizeof(float)));
    FGI_TRY(fgi_check_min(fn, "layer", layer, 0));
    return check_cache(fn, m, cache, layer, T);
}

/* logit_rows: T (fg_cuda_forward) or 1 (fg_cuda_forward_last). */
static fg_status check_forward(const char *fn, const float *logits, const float *probs,
                               int logit_rows, const fg_cuda_model *m,
                               const fg_cuda_kv_cache *cache, const int *ids, int T)
{
    size_t elems;
    FGI_TRY(fgi_check_ptr(fn, "model", m));
    const fg_config *c = &m->cfg;
    FGI_TRY(fgi_check_ptr(fn, "logits", logits));
    FGI_TRY(fgi_check_ptr(fn, "ids", ids));
    FGI_TRY(check_tokens(fn, m, T));
    FGI_TRY(fgi_check_elems(fn, "logits (T*vocab_size)", &elems, 2, (long long)logit_rows,
                          (long long)c->vocab_size));
    if (probs != NULL && probs != logits)
        FGI_TRY(fgi_check_disjoint(fn, "probs", probs, elems * sizeof(float), "logits",
                                 logits, elems * sizeof(float)));
    FGI_TRY(check_cache(fn, m, cache, -1, T));
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            return fgi_fail(FG_ERR_INVALID_ARG,
                           "%s: ids[%d] = %d is outside the vocabulary [0, %d)", fn, t,
                           ids[t], c->vocab_size);
    const long long end = (long long)cache->len[0] + T;
    if (m->wpe != NULL && end > c->n_ctx)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: position %lld is past the position table (n_ctx %d)", fn,
                       end - 1, c->n_ctx);
    return FG_OK;
}

/* The layer pipeline ------------------------------------------------------------ */

static fg_status norm_rows(const char *fn, fg_cuda_model *m, float *y, float *x,
                           const float *delta, const float *delta_bias, const float *g,
                           const float *b, int T)
{
    fgi_norm_args a;
    a.y = y;
    a.x = x;
    a.delta = delta;
    a.delta_bias = delta_bias;
    a.g = g;
    a.b = b;
    a.rows = T;
    a.cols = m->cfg.n_embd;
    a.eps = m->cfg.norm_eps;
    a.rms = m->cfg.arch == FG_ARCH_LLAMA;
    return fgi_cuda_norm(fn, &a, m->stream);
}

/* out (T, C) = attention of the normalised input x_in (T, C) at positions
 * L .. L+T-1, appending k and v to the cache; the c_proj bias is added only
 * with proj_bias (the block adds it in its fused residual add instead).
 * With a device step record (T = 1) the position and key count are read
 * from it at run time and L is ignored. */
static fg_status attention_sublayer(const char *fn, fg_cuda_model *m, fg_cuda_kv_cache *cache,
                                    int layer, int L, int T, const float *x_in, float *out,
                                    int proj_bias, const int *step)
{
    const fg_config *c = &m->cfg;
    const layer_weights *lw = &m->layers[layer];
    const int C = c->n_embd, d = m->head_dim, W = m->qkv_width;
    FGI_TRY(fgi_cuda_linear_layer(fn, &m->lin, m->qkv, x_in, lw->c_attn_w, NULL, T, C, W, 0,
                                 FGI_ACT_NONE, m->stream));

    fgi_qkv_append_args qa;
    qa.qkv = m->qkv;
    qa.bias = lw->c_attn_b;
    qa.k_cache = cache_k(cache, layer);
    qa.v_cache = cache_v(cache, layer);
    qa.T = T;
    qa.n_head = c->n_head;
    qa.n_kv_head = c->n_kv_head;
    qa.head_dim = d;
    qa.capacity = cache->capacity;
    qa.pos0 = L;
    qa.pos0_dev = step != NULL ? step + 1 : NULL;
    qa.use_rope = c->use_rope;
    qa.rope_base = c->rope_base;
    FGI_TRY(fgi_cuda_qkv_rope_append(fn, &qa, m->stream));

    fgi_attention_args aa;
    memset(&aa, 0, sizeof aa);
    aa.out = m->att;
    aa.out_head_stride = d;
    aa.out_row_stride = (long long)c->n_head * d;
    aa.lse = NULL;
    aa.q = m->qkv; /* q heads are the first n_head*d columns of each row */
    aa.q_head_stride = d;
    aa.q_row_stride = W;
    aa.k = qa.k_cache;
    aa.v = qa.v_cache;
    aa.kv_head_stride = (long long)cache->capacity * d;
    aa.n_q_head = c->n_head;
    aa.n_kv_head = c->n_kv_head;
    aa.q_len = T;
    aa.kv_len = step != NULL ? cache->capacity : L + T; /* with step: the plan's bound */
    aa.kv_len_dev = step != NULL ? step + 2 : NULL;
    aa.head_dim = d;
    aa.block_size = c->use_flash ? c->flash_block : 0;
    FGI_TRY(fgi_cuda_attention(fn, &aa, m->attention_ws, m->attention_ws_bytes, m->stream));

    return fgi_cuda_linear_layer(fn, &m->lin, out, m->att, lw->c_proj_w,
                                 proj_bias ? lw->c_proj_b : NULL, T, c->n_head * d, C, 0,
                                 FGI_ACT_NONE, m->stream);
}

/* m->delta (T, C) = MLP of m->h without the output bias. */
static fg_status mlp_sublayer(const char *fn, fg_cuda_model *m, int layer, int T)
{
    const fg_config *c = &m->cfg;
    const layer_weights *lw = &m->layers[layer];
    const int C = c->n_embd, I = c->n_inner;
    if (c->arch == FG_ARCH_LLAMA) {
        float *gate_up = m->mlp; /* (T, 2I): [gate | up] per row */
        float *act = m->mlp_act; /* (T, I) */
        FGI_TRY(fgi_cuda_linear_layer(fn, &m->lin, gate_up, m->h, lw->fc_w, NULL, T, C, 2 * I,
                                     0, FGI_ACT_NONE, m->stream));
        FGI_TRY(fgi_cuda_silu_mul_rows(fn, act, gate_up, gate_up + I, T, I, 2LL * I,
                                      m->stream));
        return fgi_cuda_linear_layer(fn, &m->lin, m->delta, act, lw->mlp_proj_w, NULL, T, I, C,
                                     0, FGI_ACT_NONE, m->stream);
    }
    FGI_TRY(fgi_cuda_linear_layer(fn, &m->lin, m->mlp, m->h, lw->fc_w, lw->fc_b, T, C, I, 0,
                                 FGI_ACT_GELU, m->stream));
    return fgi_cuda_linear_layer(fn, &m->lin, m->delta, m->mlp, lw->mlp_proj_w, NULL, T, I, C,
                                 0, FGI_ACT_NONE, m->stream);
}

/* One pre-norm block on x (T, C), with m->h already holding norm_1(x). With
 * next_g the final residual add is fused with the next norm into m->h
 * (the next layer's norm_1 or the final norm); without it x is just updated. */
static fg_status layer_forward(const char *fn, fg_cuda_model *m, fg_cuda_kv_cache *cache,
                               int layer, int L, int T, float *x, const float *next_g,
                               const float *next_b, const int *step)
{
    const layer_weights *lw = &m->layers[layer];
    FGI_TRY(attention_sublayer(fn, m, cache, layer, L, T, m->h, m->delta, 0, step));
    FGI_TRY(norm_rows(fn, m, m->h, x, m->delta, lw->c_proj_b, lw->ln_2_g, lw->ln_2_b, T));
    FGI_TRY(mlp_sublayer(fn, m, layer, T));
    if (next_g != NULL)
        return norm_rows(fn, m, m->h, x, m->delta, lw->mlp_proj_b, next_g, next_b, T);
    return fgi_cuda_add_rows(fn, x, m->delta, lw->mlp_proj_b, T, m->cfg.n_embd, m->stream);
}

/* Public layer, block and forward ---------------------------------------------- */

extern "C" fg_status fg_cuda_attention_layer(float *out, const float *x, int T,
                                             fg_cuda_model *model, fg_cuda_kv_cache *cache,
                                             int layer)
{
    static const char fn[] = "fg_cuda_attention_layer";
    FGI_TRY(check_layer_call(fn, out, x, T, model, cache, layer));
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_TRY(ensure_attention_workspace(fn, model, cache->capacity));
    const int L = cache->len[layer];
    FGI_TRY(attention_sublayer(fn, model, cache, layer, L, T, x, out, 1, NULL));
    cache->len[layer] = L + T;
    return FG_OK;
}

extern "C" fg_status fg_cuda_block(float *x, int T, fg_cuda_model *model,
                                   fg_cuda_kv_cache *cache, int layer)
{
    static const char fn[] = "fg_cuda_block";
    FGI_TRY(check_layer_call(fn, x, x, T, model, cache, layer));
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_TRY(ensure_attention_workspace(fn, model, cache->capacity));
    const layer_weights *lw = &model->layers[layer];
    const int L = cache->len[layer];
    FGI_TRY(norm_rows(fn, model, model->h, x, NULL, NULL, lw->ln_1_g, lw->ln_1_b, T));
    FGI_TRY(layer_forward(fn, model, cache, layer, L, T, x, NULL, NULL, NULL));
    cache->len[layer] = L + T;
    return FG_OK;
}

namespace {

/* x (T, C) = wte[ids] + wpe[pos0 + t] (wpe may be NULL); pos_dev, when set,
 * holds pos0 in device memory. */
__global__ void embed_kernel(float *x, const int *ids, const float *wte, const float *wpe,
                             int T, int C, int pos0, const int *pos_dev)
{
    const long long total = (long long)T * C;
    const int p0 = pos_dev != nullptr ? *pos_dev : pos0;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const long long t = e / C, i = e % C;
        const float tok = wte[(long long)ids[t] * C + i];
        x[e] = tok + (wpe ? wpe[(p0 + t) * C + i] : 0.0f);
    }
}

} // namespace

/* Enqueues the device work of a forward over T tokens at position L, logits
 * for the last logit_rows rows into m->logits: token ids from ids_dev. With
 * a device step record (T = 1, a graph capture) the token is step[0] and
 * the position step[1]; L is then ignored. */
static fg_status enqueue_forward(const char *fn, fg_cuda_model *m, fg_cuda_kv_cache *cache,
                                 const int *ids_dev, int L, int T, int logit_rows,
                                 const int *step)
{
    const fg_config *c = &m->cfg;
    const int C = c->n_embd, V = c->vocab_size;
    const int threads = 256;
    embed_kernel<<<fgi_grid_blocks((long long)T * C, threads), threads, 0, m->stream>>>(
        m->x, step != NULL ? step : ids_dev, m->wte, m->wpe, T, C, L,
        step != NULL ? step + 1 : NULL);
    FGI_CUDA_LAUNCHED(fn, "embed_kernel");
    FGI_TRY(norm_rows(fn, m, m->h, m->x, NULL, NULL, m->layers[0].ln_1_g,
                     m->layers[0].ln_1_b, T));
    for (int l = 0; l < c->n_layer; l++) {
        const int last = l + 1 == c->n_layer;
        const float *next_g = last ? m->ln_f_g : m->layers[l + 1].ln_1_g;
        const float *next_b = last ? m->ln_f_b : m->layers[l + 1].ln_1_b;
        FGI_TRY(layer_forward(fn, m, cache, l, L, T, m->x, next_g, next_b, step));
    }
    /* every row of m->h is ln_f(x); only the last logit_rows go to the classifier */
    const float *last = m->h + (size_t)(T - logit_rows) * C;
    return fgi_cuda_linear_layer(fn, &m->lin, m->logits, last, m->classifier, NULL, logit_rows,
                                 C, V, 1, FGI_ACT_NONE, m->stream);
}

/* Runs the whole forward for validated arguments, with logits for the last
 * logit_rows tokens (T or 1), and waits for it. */
static fg_status forward(const char *fn, float *logits, float *probs, int logit_rows,
                         fg_cuda_model *m, fg_cuda_kv_cache *cache, const int *ids, int T)
{
    const size_t logit_bytes = sizeof(float) * (size_t)logit_rows * (size_t)m->cfg.vocab_size;
    FGI_CUDA_TRY(fn, cudaMemcpyAsync(m->ids, ids, sizeof(int) * (size_t)T,
                                    cudaMemcpyHostToDevice, m->stream));
    FGI_TRY(enqueue_forward(fn, m, cache, m->ids, cache->len[0], T, logit_rows, NULL));
    FGI_CUDA_TRY(fn, cudaMemcpyAsync(logits, m->logits, logit_bytes, cudaMemcpyDeviceToHost,
                                    m->stream));
    if (probs != NULL) {
        FGI_TRY(fgi_cuda_softmax(fn, m->logits, m->logits, logit_rows, m->cfg.vocab_size, 1,
                                m->stream));
        FGI_CUDA_TRY(fn, cudaMemcpyAsync(probs, m->logits, logit_bytes,
                                        cudaMemcpyDeviceToHost, m->stream));
    }
    FGI_CUDA_TRY(fn, cudaStreamSynchronize(m->stream));
    return FG_OK;
}

/* Decode-step graph --------------------------------------------------------------- */

static int graph_is_current(const fg_cuda_model *m, const fg_cuda_kv_cache *cache)
{
    return cache->graph != NULL && cache->graph_model == m && m->graph_cache == cache &&
           cache->graph_ws == m->attention_ws;
}

/* Captures the one-token step of (m, cache) into cache->graph, on the
 * model's private capture stream (the graph is launched on m->stream). A
 * failure (a kernel that cannot read its key count from the device, a
 * library that refuses capture) leaves no graph and clears the CUDA error
 * state; the caller then runs the step uncaptured. */
static fg_status capture_step(const char *fn, fg_cuda_model *m, fg_cuda_kv_cache *cache)
{
    if (cache->graph != NULL) {
        cudaGraphExecDestroy(cache->graph);
        cache->graph = NULL;
    }
    if (m->capture_stream == NULL)
        FGI_CUDA_TRY(fn, cudaStreamCreateWithFlags(&m->capture_stream, cudaStreamNonBlocking));
    FGI_CUBLAS_TRY(fn, cublasSetStream(m->lin.blas, m->capture_stream));
    const cudaStream_t user_stream = m->stream;
    m->stream = m->capture_stream; /* every enqueue below reads m->stream */
    cudaGraph_t graph = NULL;
    cudaError_t err = cudaStreamBeginCapture(m->stream, cudaStreamCaptureModeThreadLocal);
    fg_status st = FG_OK;
    if (err == cudaSuccess) {
        st = enqueue_forward(fn, m, cache, NULL, 0, 1, 1, cache->step);
        err = cudaStreamEndCapture(m->stream, &graph);
    }
    m->stream = user_stream;
    const cublasStatus_t restored = cublasSetStream(m->lin.blas, user_stream);
    if (restored != CUBLAS_STATUS_SUCCESS) {
        if (graph != NULL) cudaGraphDestroy(graph);
        (void)cudaGetLastError();
        return fgi_fail(FG_ERR_CUDA, "%s: cublasSetStream failed: %s", fn,
                       cublasGetStatusString(restored));
    }
    if (st == FG_OK && err == cudaSuccess) err = cudaGraphInstantiate(&cache->graph, graph, 0);
    if (graph != NULL) cudaGraphDestroy(graph);
    if (st != FG_OK || err != cudaSuccess) {
        (void)cudaGetLastError();
        cache->graph = NULL;
        return st != FG_OK ? st
                           : fgi_fail(FG_ERR_CUDA, "%s: capturing the decode step failed: %s", fn,
                                     cudaGetErrorString(err));
    }
    cache->graph_model = m;
    cache->graph_ws = m->attention_ws;
    m->graph_cache = cache;
    return FG_OK;
}

/* One decode step through the graph; FG_ERR_UNSUPPORTED (nothing enqueued)
 * when this (model, cache) cannot be captured. */
static fg_status graph_step(const char *fn, float *logits, fg_cuda_model *m,
                            fg_cuda_kv_cache *cache, int id)
{
    if (cache->graph_unavailable) return FG_ERR_UNSUPPORTED;
    if (!graph_is_current(m, cache) && capture_step(fn, m, cache) != FG_OK) {
        cache->graph_unavailable = 1;
        return FG_ERR_UNSUPPORTED;
    }
    const int L = cache->len[0];
    const int step[3] = {id, L, L + 1};
    FGI_CUDA_TRY(fn, cudaMemcpyAsync(cache->step, step, sizeof step, cudaMemcpyHostToDevice,
                                    m->stream));
    FGI_CUDA_TRY(fn, cudaGraphLaunch(cache->graph, m->stream));
    cache->graph_steps++;
    FGI_CUDA_TRY(fn, cudaMemcpyAsync(logits, m->logits, sizeof(float) * (size_t)m->cfg.vocab_size,
                                    cudaMemcpyDeviceToHost, m->stream));
    FGI_CUDA_TRY(fn, cudaStreamSynchronize(m->stream));
    return FG_OK;
}

/* Argument errors are found before anything is enqueued and change nothing.
 * A CUDA failure part-way leaves the token counts unchanged, but logits may
 * have been partly written by then. */
static fg_status checked_forward(const char *fn, float *logits, float *probs,
                                 int last_only, fg_cuda_model *model,
                                 fg_cuda_kv_cache *cache, const int *ids, int T)
{
    const int logit_rows = last_only ? 1 : T;
    FGI_TRY(check_forward(fn, logits, probs, logit_rows, model, cache, ids, T));
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_TRY(ensure_attention_workspace(fn, model, cache->capacity));
    fg_status st = FG_ERR_UNSUPPORTED;
    if (last_only && T == 1) st = graph_step(fn, logits, model, cache, ids[0]);
    if (st == FG_ERR_UNSUPPORTED) st = forward(fn, logits, probs, logit_rows, model, cache, ids, T);
    FGI_TRY(st);
    for (int l = 0; l < cache->n_layer; l++) cache->len[l] += T;
    return FG_OK;
}

extern "C" fg_status fg_cuda_forward(float *logits, float *probs, fg_cuda_model *model,
                                     fg_cuda_kv_cache *cache, const int *ids, int T)
{
    return checked_forward("fg_cuda_forward", logits, probs, 0, model, cache, ids, T);
}

/* Only the last token's logits (vocab): the classifier GEMM and the copy
 * back shrink from T rows to one, which is what generation needs. */
extern "C" fg_status fg_cuda_forward_last(float *logits, fg_cuda_model *model,
                                          fg_cuda_kv_cache *cache, const int *ids, int T)
{
    return checked_forward("fg_cuda_forward_last", logits, NULL, 1, model, cache, ids, T);
}
