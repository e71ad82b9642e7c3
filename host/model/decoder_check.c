/* Argument checks of the decoder calls, shared by the CPU reference
 * (host/ref/ref_decoder.c) and the GPU decoder (cuda/engine/decoder.cu) so
 * that both refuse the same inputs with the same messages. Each path checks
 * its own objects first (config and host weights, or the CUDA runner) and
 * describes its cache as an fgi_cache_shape; everything else is here. */
#include "check.h"
#include "config_internal.h"

/* The cache must match cfg and have room for T more tokens in `layer` (in
 * every layer, all holding the same count, when layer < 0). */
static fg_status check_cache(const char *fn, const fg_config *c, const fgi_cache_shape *cache,
                             int layer, int T)
{
    FGI_TRY(fgi_check_ptr(fn, "cache", cache));
    const int head_dim = fg_config_head_dim(c);
    if (cache->n_layer != c->n_layer || cache->n_kv_head != c->n_kv_head ||
        cache->head_dim != head_dim || cache->lens == NULL)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: cache (n_layer %d, n_kv_head %d, head_dim %d) does not "
                       "match the config (n_layer %d, n_kv_head %d, head_dim %d)",
                       fn, cache->n_layer, cache->n_kv_head, cache->head_dim, c->n_layer,
                       c->n_kv_head, head_dim);
    if (layer >= c->n_layer)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'layer' must be < n_layer (%d) (got %d)", fn,
                       c->n_layer, layer);
    const int first = layer < 0 ? 0 : layer, last = layer < 0 ? c->n_layer - 1 : layer;
    const char *base = (const char *)cache->lens;
    const int len = *(const int *)(base + (size_t)first * cache->len_stride);
    for (int l = first; l <= last; l++) {
        const int len_l = *(const int *)(base + (size_t)l * cache->len_stride);
        if (len_l != len || len < 0)
            return fgi_fail(FG_ERR_INVALID_ARG,
                           "%s: cache layers hold different token counts "
                           "(layer 0: %d, layer %d: %d)",
                           fn, len, l, len_l);
    }
    if ((long long)len + T > cache->capacity)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: KV cache capacity exceeded: %d cached + %d new tokens "
                       "> capacity %d",
                       fn, len, T, cache->capacity);
    return FG_OK;
}

static fg_status check_tokens(const char *fn, int T, int max_tokens)
{
    FGI_TRY(fgi_check_min(fn, "T", T, 1));
    if (max_tokens > 0 && T > max_tokens)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'T' must be <= max_tokens (%d) (got %d)", fn,
                       max_tokens, T);
    return FG_OK;
}

fg_status fgi_check_layer_call(const char *fn, const fg_config *cfg, const float *out,
                               const float *x, int T, int max_tokens,
                               const fgi_cache_shape *cache, int layer)
{
    size_t elems;
    FGI_TRY(fgi_check_ptr(fn, "x", x)); /* first: the blocks pass x as out too */
    FGI_TRY(fgi_check_ptr(fn, "out", out));
    FGI_TRY(check_tokens(fn, T, max_tokens));
    FGI_TRY(fgi_check_elems(fn, "x (T*n_embd)", &elems, 2, (long long)T,
                          (long long)cfg->n_embd));
    if (out != x)
        FGI_TRY(fgi_check_disjoint(fn, "out", out, elems * sizeof(float), "x", x,
                                 elems * sizeof(float)));
    FGI_TRY(fgi_check_min(fn, "layer", layer, 0));
    return check_cache(fn, cfg, cache, layer, T);
}

fg_status fgi_check_forward_call(const char *fn, const fg_config *cfg, int has_wpe,
                                 const float *logits, const float *probs, int logit_rows,
                                 const int *ids, int T, int max_tokens,
                                 const fgi_cache_shape *cache)
{
    size_t elems;
    FGI_TRY(fgi_check_ptr(fn, "logits", logits));
    FGI_TRY(fgi_check_ptr(fn, "ids", ids));
    FGI_TRY(check_tokens(fn, T, max_tokens));
    FGI_TRY(fgi_check_elems(fn, "logits (T*vocab_size)", &elems, 2, (long long)logit_rows,
                          (long long)cfg->vocab_size));
    if (probs != NULL && probs != logits)
        FGI_TRY(fgi_check_disjoint(fn, "probs", probs, elems * sizeof(float), "logits", logits,
                                 elems * sizeof(float)));
    FGI_TRY(check_cache(fn, cfg, cache, -1, T));
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= cfg->vocab_size)
            return fgi_fail(FG_ERR_INVALID_ARG,
                           "%s: ids[%d] = %d is outside the vocabulary [0, %d)", fn, t, ids[t],
                           cfg->vocab_size);
    const long long end = (long long)cache->lens[0] + T;
    if (has_wpe && end > cfg->n_ctx)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: position %lld is past the position table (n_ctx %d)", fn, end - 1,
                       cfg->n_ctx);
    return FG_OK;
}
