/* Model configuration, weights validation and the host KV cache.
 *
 * Validation is shared: fgi_check_config / fgi_check_weights take the name of
 * the public function they run for, so a message names what the user called.
 * The KV cache is one allocation: the struct, its layer table, then per layer
 * k and v blocks of (n_kv_head, capacity, head_dim). */
#include "check.h"
#include "flashgpt/decoder.h"
#include "config_internal.h"

#include <math.h>
#include <stdlib.h>

fg_config fg_config_gpt2(int n_layer, int n_embd, int n_head, int vocab_size,
                         int n_ctx)
{
    fg_config c = {
        .arch = FG_ARCH_GPT2, .n_layer = n_layer, .n_embd = n_embd,
        .n_head = n_head, .n_kv_head = n_head, .n_inner = 4 * n_embd,
        .vocab_size = vocab_size, .n_ctx = n_ctx, .norm_eps = 1e-5f,
        .use_rope = 0, .rope_base = 10000.0, .use_flash = 0, .flash_block = 128,
    };
    return c;
}

fg_config fg_config_llama(int n_layer, int n_embd, int n_head, int n_kv_head,
                          int n_inner, int vocab_size, int n_ctx)
{
    fg_config c = {
        .arch = FG_ARCH_LLAMA, .n_layer = n_layer, .n_embd = n_embd,
        .n_head = n_head, .n_kv_head = n_kv_head, .n_inner = n_inner,
        .vocab_size = vocab_size, .n_ctx = n_ctx, .norm_eps = 1e-5f,
        .use_rope = 1, .rope_base = 10000.0, .use_flash = 0, .flash_block = 128,
    };
    return c;
}

static fg_status check_field_min(const char *fn, const char *field, int value,
                                 int min)
{
    if (value < min)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: config.%s must be >= %d (got %d)", fn, field, min, value);
    return FG_OK;
}

static fg_status check_flag(const char *fn, const char *field, int value)
{
    if (value != 0 && value != 1)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: config.%s must be 0 or 1 (got %d)",
                       fn, field, value);
    return FG_OK;
}

static fg_status check_rope_scaling(const char *fn, const fg_config *c)
{
    const int type = (int)c->rope_scaling;
    if (type == FG_ROPE_DEFAULT) return FG_OK;
    if (type != FG_ROPE_LINEAR && type != FG_ROPE_LLAMA3)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: config.rope_scaling is unknown (got %d)",
                        fn, type);
    if (!(c->rope_factor >= 1.0) || !isfinite(c->rope_factor))
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: config.rope_factor must be finite and >= 1 (got %g)", fn,
                        c->rope_factor);
    if (type == FG_ROPE_LINEAR) return FG_OK;
    if (!(c->rope_low_freq_factor > 0.0) ||
        !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
        !isfinite(c->rope_high_freq_factor))
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: config.rope_low_freq_factor and rope_high_freq_factor must "
                        "be finite with 0 < low < high (got %g, %g)", fn,
                        c->rope_low_freq_factor, c->rope_high_freq_factor);
    return check_field_min(fn, "rope_original_ctx", c->rope_original_ctx, 1);
}

fg_status fgi_check_config(const char *fn, const fg_config *c)
{
    size_t elems;
    FGI_TRY(fgi_check_ptr(fn, "config", c));
    if (c->arch != FG_ARCH_GPT2 && c->arch != FG_ARCH_LLAMA)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: config.arch is unknown (got %d)",
                       fn, (int)c->arch);
    FGI_TRY(check_field_min(fn, "n_layer", c->n_layer, 1));
    FGI_TRY(check_field_min(fn, "n_embd", c->n_embd, 1));
    FGI_TRY(check_field_min(fn, "n_head", c->n_head, 1));
    FGI_TRY(check_field_min(fn, "n_kv_head", c->n_kv_head, 1));
    FGI_TRY(check_field_min(fn, "n_inner", c->n_inner, 1));
    FGI_TRY(check_field_min(fn, "vocab_size", c->vocab_size, 1));
    FGI_TRY(check_field_min(fn, "n_ctx", c->n_ctx, 1));
    FGI_TRY(check_flag(fn, "use_rope", c->use_rope));
    FGI_TRY(check_flag(fn, "use_flash", c->use_flash));
    FGI_TRY(check_field_min(fn, "head_dim", c->head_dim, 0));
    if (c->head_dim == 0 && c->n_embd % c->n_head != 0)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: config.n_embd (%d) must be a multiple of config.n_head (%d) "
                       "unless config.head_dim is set",
                       fn, c->n_embd, c->n_head);
    if (c->n_head % c->n_kv_head != 0)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: config.n_head (%d) must be a multiple of config.n_kv_head (%d)",
                       fn, c->n_head, c->n_kv_head);
    if (!(c->norm_eps >= 0.0f) || !isfinite(c->norm_eps))
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: config.norm_eps must be finite and >= 0 (got %g)", fn,
                       (double)c->norm_eps);
    if (c->arch == FG_ARCH_LLAMA && !c->use_rope)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: config.use_rope must be 1 for the llama family", fn);
    if (c->use_rope) {
        int head_dim = fg_config_head_dim(c);
        if (head_dim % 2 != 0)
            return fgi_fail(FG_ERR_INVALID_ARG,
                           "%s: RoPE needs an even head_dim (%s = %d)", fn,
                           c->head_dim ? "config.head_dim" : "n_embd / n_head", head_dim);
        if (!(c->rope_base > 0.0) || !isfinite(c->rope_base))
            return fgi_fail(FG_ERR_INVALID_ARG,
                           "%s: config.rope_base must be finite and > 0 (got %g)", fn,
                           c->rope_base);
    }
    if (c->use_rope) FGI_TRY(check_rope_scaling(fn, c));
    if (c->use_flash) FGI_TRY(check_field_min(fn, "flash_block", c->flash_block, 1));
    FGI_TRY(check_field_min(fn, "sliding_window", c->sliding_window, 0));
    FGI_TRY(check_field_min(fn, "window_first_layer", c->window_first_layer, 0));
    /* The largest matrices must be addressable, and the q|k|v width an int. */
    FGI_TRY(fgi_check_elems(fn, "q|k|v projection width", &elems, 2,
                          (long long)c->n_head + 2LL * c->n_kv_head,
                          (long long)fg_config_head_dim(c)));
    if (elems > (size_t)0x7fffffff)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: q|k|v projection width %zu overflows an int",
                       fn, elems);
    FGI_TRY(fgi_check_elems(fn, "c_attn_w", &elems, 2, (long long)c->n_embd,
                          (long long)fg_config_qkv_width(c)));
    FGI_TRY(fgi_check_elems(fn, "c_proj_w (n_head*head_dim*n_embd)", &elems, 3,
                          (long long)c->n_head, (long long)fg_config_head_dim(c),
                          (long long)c->n_embd));
    FGI_TRY(fgi_check_elems(fn, "wte (vocab_size*n_embd)", &elems, 2,
                          (long long)c->vocab_size, (long long)c->n_embd));
    FGI_TRY(fgi_check_elems(fn, "wpe (n_ctx*n_embd)", &elems, 2,
                          (long long)c->n_ctx, (long long)c->n_embd));
    return fgi_check_elems(fn, "fc_w (n_embd*n_inner)", &elems, 3,
                          (long long)c->n_embd, (long long)c->n_inner, 2LL);
}

fg_status fg_config_validate(const fg_config *cfg)
{
    return fgi_check_config("fg_config_validate", cfg);
}

/* transformers' _compute_llama3_parameters, per frequency: by wavelength
 * 2*pi/inv against the original context, short wavelengths (below
 * ctx/high) keep their frequency, long ones (above ctx/low) are divided by
 * the factor, and those between blend the two linearly in ctx/wavelen. */
double fg_config_rope_inv_freq(const fg_config *c, int j)
{
    if (c == NULL || c->n_head < 1 || j < 0 || j >= fg_config_head_dim(c) / 2) return 0.0;
    const int d = fg_config_head_dim(c);
    const double inv = pow(c->rope_base, -2.0 * j / (double)d);
    if (c->rope_scaling == FG_ROPE_LINEAR) return inv / c->rope_factor;
    if (c->rope_scaling != FG_ROPE_LLAMA3) return inv;
    const double ctx = (double)c->rope_original_ctx, pi = 3.14159265358979323846;
    const double wavelen = 2.0 * pi / inv;
    if (wavelen < ctx / c->rope_high_freq_factor) return inv;
    if (wavelen > ctx / c->rope_low_freq_factor) return inv / c->rope_factor;
    const double smooth = (ctx / wavelen - c->rope_low_freq_factor) /
                          (c->rope_high_freq_factor - c->rope_low_freq_factor);
    return (1.0 - smooth) * inv / c->rope_factor + smooth * inv;
}

int fg_config_qkv_width(const fg_config *cfg)
{
    if (cfg == NULL || cfg->n_head < 1) return 0;
    return (cfg->n_head + 2 * cfg->n_kv_head) * fg_config_head_dim(cfg);
}

int fg_config_head_dim(const fg_config *cfg)
{
    if (cfg == NULL || cfg->n_head < 1) return 0;
    return cfg->head_dim > 0 ? cfg->head_dim : cfg->n_embd / cfg->n_head;
}

int fg_config_layer_window(const fg_config *cfg, int layer)
{
    if (cfg == NULL || cfg->sliding_window <= 0 || layer < cfg->window_first_layer) return 0;
    return cfg->sliding_window;
}

enum presence { REQUIRED, OPTIONAL, ABSENT };

/* Checks one weights pointer against the family's rule; layer < 0 names a
 * model-level tensor. */
static fg_status check_presence(const char *fn, const char *what, int layer,
                                const void *p, enum presence rule)
{
    const char *problem = NULL;
    if (rule == REQUIRED && p == NULL) problem = "is NULL";
    if (rule == ABSENT && p != NULL) problem = "must be NULL for this model family";
    if (problem == NULL) return FG_OK;
    if (layer < 0)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: weights.%s %s", fn, what, problem);
    return fgi_fail(FG_ERR_INVALID_ARG, "%s: weights.layers[%d].%s %s", fn, layer,
                   what, problem);
}

fg_status fgi_check_layer_weights(const char *fn, const fg_config *c,
                                  const fg_layer_weights *lw, int layer)
{
    /* GPT-2 biases may be NULL (zero); the Llama family has none, except an
     * optional q|k|v bias (as some Llama-style models carry). */
    const int gpt2 = c->arch == FG_ARCH_GPT2;
    const enum presence bias = gpt2 ? OPTIONAL : ABSENT;
    FGI_TRY(fgi_check_ptr(fn, "layer weights", lw));
    FGI_TRY(check_presence(fn, "ln_1_g", layer, lw->ln_1_g, REQUIRED));
    FGI_TRY(check_presence(fn, "ln_1_b", layer, lw->ln_1_b, bias));
    FGI_TRY(check_presence(fn, "c_attn_w", layer, lw->c_attn_w, REQUIRED));
    FGI_TRY(check_presence(fn, "c_proj_w", layer, lw->c_proj_w, REQUIRED));
    FGI_TRY(check_presence(fn, "c_proj_b", layer, lw->c_proj_b, bias));
    FGI_TRY(check_presence(fn, "ln_2_g", layer, lw->ln_2_g, REQUIRED));
    FGI_TRY(check_presence(fn, "ln_2_b", layer, lw->ln_2_b, bias));
    FGI_TRY(check_presence(fn, "fc_w", layer, lw->fc_w, REQUIRED));
    FGI_TRY(check_presence(fn, "fc_b", layer, lw->fc_b, bias));
    FGI_TRY(check_presence(fn, "up_w", layer, lw->up_w, gpt2 ? ABSENT : REQUIRED));
    FGI_TRY(check_presence(fn, "mlp_proj_w", layer, lw->mlp_proj_w, REQUIRED));
    return check_presence(fn, "mlp_proj_b", layer, lw->mlp_proj_b, bias);
}

fg_status fgi_check_weights(const char *fn, const fg_config *c, const fg_weights *w)
{
    const int gpt2 = c->arch == FG_ARCH_GPT2;
    FGI_TRY(fgi_check_ptr(fn, "weights", w));
    FGI_TRY(check_presence(fn, "wte", -1, w->wte, REQUIRED));
    /* GPT-2 needs its position table unless RoPE supplies positions. */
    FGI_TRY(check_presence(fn, "wpe", -1, w->wpe,
                          !gpt2 ? ABSENT : c->use_rope ? OPTIONAL : REQUIRED));
    FGI_TRY(check_presence(fn, "layers", -1, w->layers, REQUIRED));
    FGI_TRY(check_presence(fn, "ln_f_g", -1, w->ln_f_g, REQUIRED));
    FGI_TRY(check_presence(fn, "ln_f_b", -1, w->ln_f_b, gpt2 ? OPTIONAL : ABSENT));
    for (int l = 0; l < c->n_layer; l++)
        FGI_TRY(fgi_check_layer_weights(fn, c, &w->layers[l], l));
    return FG_OK;
}

fg_status fg_weights_validate(const fg_config *cfg, const fg_weights *w)
{
    static const char fn[] = "fg_weights_validate";
    FGI_TRY(fgi_check_config(fn, cfg));
    return fgi_check_weights(fn, cfg, w);
}

fg_status fg_kv_cache_create(fg_kv_cache **cache, const fg_config *cfg,
                             int capacity)
{
    static const char fn[] = "fg_kv_cache_create";
    size_t per_layer, all;
    FGI_TRY(fgi_check_ptr(fn, "cache", cache));
    *cache = NULL;
    FGI_TRY(fgi_check_config(fn, cfg));
    FGI_TRY(fgi_check_min(fn, "capacity", capacity, 1));
    const int head_dim = fg_config_head_dim(cfg);
    FGI_TRY(fgi_check_elems(fn, "one layer's keys (n_kv_head*capacity*head_dim)",
                          &per_layer, 3, (long long)cfg->n_kv_head,
                          (long long)capacity, (long long)head_dim));
    FGI_TRY(fgi_check_elems(fn, "the cache (2*n_layer*n_kv_head*capacity*head_dim)",
                          &all, 2, (long long)per_layer, 2LL * cfg->n_layer));

    const size_t header = sizeof(fg_kv_cache) + sizeof(fg_kv_layer) * (size_t)cfg->n_layer;
    const size_t header_floats = (header + sizeof(float) - 1) / sizeof(float);
    float *block;
    FGI_TRY(fgi_alloc(fn, (void **)&block, header_floats + all, sizeof(float)));

    fg_kv_cache *c = (fg_kv_cache *)(void *)block;
    c->n_layer = cfg->n_layer;
    c->n_kv_head = cfg->n_kv_head;
    c->head_dim = head_dim;
    c->capacity = capacity;
    c->layers = (fg_kv_layer *)(c + 1);
    float *data = block + header_floats;
    for (int l = 0; l < c->n_layer; l++) {
        c->layers[l].k = data + (size_t)(2 * l) * per_layer;
        c->layers[l].v = data + (size_t)(2 * l + 1) * per_layer;
        c->layers[l].len = 0;
    }
    *cache = c;
    return FG_OK;
}

void fg_kv_cache_destroy(fg_kv_cache *cache) { free(cache); }

fg_status fg_kv_cache_reset(fg_kv_cache *cache)
{
    FGI_TRY(fgi_check_ptr("fg_kv_cache_reset", "cache", cache));
    for (int l = 0; l < cache->n_layer; l++) cache->layers[l].len = 0;
    return FG_OK;
}
