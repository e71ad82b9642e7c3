/* Hugging Face checkpoint folders: config.json + model.safetensors, or
 * model.safetensors.index.json and its shards, for model_type "gpt2" and
 * the Llama architecture ("llama", "mistral", "qwen2").
 *
 * The configuration is parsed with cJSON and every value range-checked
 * before anything is sized from it. The files are mapped; one
 * family-specific walk then checks every tensor (present, dtype
 * convertible, shape exactly as the configuration implies) and records
 * where it lies in the mapping and where it goes in the layout below. No
 * tensor byte is read at load: the model widens the table into fp32 on
 * first use, or converts it straight to the card (loader.c), so it is
 * never larger than the tensors the file really holds. A sharded
 * checkpoint is the same walk over several files (every shard header
 * parsed and checked against the index first).
 *
 * Layout conversions (see decoder.h for the target layout):
 *  - GPT-2 Conv1D weights are already (in, out); c_attn is already [q|k|v].
 *  - Llama nn.Linear weights are (out, in): transposed; q, k, v fill the
 *    column blocks of the fused c_attn_w; o/gate/up/down transposed.
 *  - Llama q_proj and k_proj rows are stored for half-split rotary: within a
 *    head, feature j is rotated with feature j + d/2. Our RoPE rotates the
 *    pairs (2j, 2j+1) at the same frequency index j, so each head's rows are
 *    reordered (new 2j <- old j, new 2j+1 <- old j + d/2). The same reorder
 *    of q and k leaves every q.k product unchanged and turns the half-split
 *    rotation into the interleaved one, so attention is exactly preserved;
 *    v and the output projection are untouched. */
#define _POSIX_C_SOURCE 200809L
#include "input.h"
#include "loader_internal.h"
#include "config_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CONFIG_BYTES ((uint64_t)1 << 20)
#define MAX_SIZE (1 << 24)  /* widths, vocabulary, context */
#define MAX_COUNT (1 << 16) /* layers, heads */

/* config.json ------------------------------------------------------------------ */

typedef struct {
    const char *fn, *file;
    const cJSON *root;
} config_source;

/* Absent and null both mean "not given". */
static const cJSON *config_key(const config_source *s, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->root, key);
    return cJSON_IsNull(v) ? NULL : v;
}

static void describe(const cJSON *v, char *buf, size_t size)
{
    if (cJSON_IsNumber(v)) snprintf(buf, size, "%.17g", v->valuedouble);
    else if (cJSON_IsString(v))
        snprintf(buf, size, "\"%s\"",
                 fgi_quote_bytes((char[200]){0}, 200, v->valuestring, strlen(v->valuestring)));
    else if (cJSON_IsBool(v)) snprintf(buf, size, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else snprintf(buf, size, "%s", cJSON_IsArray(v) ? "an array" : "an object");
}

static fg_status missing_key(const config_source *s, const char *key)
{
    return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file, "missing key \"%s\"", key);
}

/* An integer in [1, max]; fallback < 1 means the key is required. */
static fg_status get_int(const config_source *s, const char *key, long long fallback,
                         long long max, int *out)
{
    const cJSON *v = config_key(s, key);
    char got[64];
    if (v == NULL) {
        if (fallback < 1) return missing_key(s, key);
        *out = (int)fallback;
        return FG_OK;
    }
    if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
        v->valuedouble >= 1.0 && v->valuedouble <= (double)max) {
        *out = (int)v->valuedouble;
        return FG_OK;
    }
    describe(v, got, sizeof got);
    return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                          "\"%s\" must be an integer in [1, %lld] (got %s)", key, max,
                          got);
}

/* A number in [lo, hi] (lo excluded when open_lo). */
static fg_status get_number(const config_source *s, const char *key, double fallback,
                            double lo, int open_lo, double hi, double *out)
{
    const cJSON *v = config_key(s, key);
    char got[64];
    if (v == NULL) {
        *out = fallback;
        return FG_OK;
    }
    if (cJSON_IsNumber(v) && (open_lo ? v->valuedouble > lo : v->valuedouble >= lo) &&
        v->valuedouble <= hi) {
        *out = v->valuedouble;
        return FG_OK;
    }
    describe(v, got, sizeof got);
    return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                          "\"%s\" must be a number in %c%g, %g] (got %s)", key,
                          open_lo ? '(' : '[', lo, hi, got);
}

/* true / false (or 0 / 1). */
static fg_status get_flag(const config_source *s, const char *key, int fallback,
                          int *out)
{
    const cJSON *v = config_key(s, key);
    char got[64];
    if (v == NULL) {
        *out = fallback;
        return FG_OK;
    }
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return FG_OK;
    }
    if (cJSON_IsNumber(v) && (v->valuedouble == 0.0 || v->valuedouble == 1.0)) {
        *out = v->valuedouble == 1.0;
        return FG_OK;
    }
    describe(v, got, sizeof got);
    return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                          "\"%s\" must be true or false (got %s)", key, got);
}

/* NULL when absent; a non-string is malformed. */
static fg_status get_string(const config_source *s, const char *key, const char **out)
{
    const cJSON *v = config_key(s, key);
    *out = NULL;
    if (v == NULL) return FG_OK;
    if (!cJSON_IsString(v))
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file, "\"%s\" must be a string",
                              key);
    *out = v->valuestring;
    return FG_OK;
}

/* The value of an optional string key must be one of `allowed` (NULL-ended). */
static fg_status require_one_of(const config_source *s, const char *key,
                                const char *const *allowed)
{
    const char *value;
    FGI_TRY(get_string(s, key, &value));
    if (value == NULL) return FG_OK;
    for (size_t i = 0; allowed[i] != NULL; i++)
        if (strcmp(value, allowed[i]) == 0) return FG_OK;
    return fgi_file_error(FG_ERR_UNSUPPORTED, s->fn, s->file,
                          "\"%s\": \"%s\" is not supported (supported: %s)", key,
                          fgi_quote_bytes((char[200]){0}, 200, value, strlen(value)),
                          allowed[0]);
}

static fg_status parse_gpt2(const config_source *s, fgi_hf_config *out)
{
    static const char *const gelu_tanh[] = {"gelu_new", "gelu_pytorch_tanh",
                                            "gelu_fast", NULL};
    fg_config *c = &out->cfg;
    int n_layer, n_head, n_embd, vocab, n_ctx, flag;
    double eps, base;
    FGI_TRY(get_int(s, "n_layer", 0, MAX_COUNT, &n_layer));
    FGI_TRY(get_int(s, "n_head", 0, MAX_COUNT, &n_head));
    FGI_TRY(get_int(s, "n_embd", 0, MAX_SIZE, &n_embd));
    FGI_TRY(get_int(s, "vocab_size", 0, MAX_SIZE, &vocab));
    /* older configs call the context n_ctx */
    FGI_TRY(get_int(s, config_key(s, "n_positions") || !config_key(s, "n_ctx")
                          ? "n_positions" : "n_ctx",
                   0, MAX_SIZE, &n_ctx));
    *c = fg_config_gpt2(n_layer, n_embd, n_head, vocab, n_ctx);
    FGI_TRY(get_int(s, "n_inner", 4LL * n_embd, MAX_SIZE, &c->n_inner));
    FGI_TRY(get_number(s, "layer_norm_epsilon", 1e-5, 0.0, 0, 1.0, &eps));
    c->norm_eps = (float)eps;
    FGI_TRY(get_int(s, "n_kv_head", n_head, MAX_COUNT, &c->n_kv_head));
    FGI_TRY(get_flag(s, "use_rope", 0, &c->use_rope));
    FGI_TRY(get_number(s, "rope_base", 10000.0, 0.0, 1, 1e12, &base));
    c->rope_base = base;
    FGI_TRY(require_one_of(s, "activation_function", gelu_tanh));
    /* attention variants this engine does not compute */
    FGI_TRY(get_flag(s, "scale_attn_weights", 1, &flag));
    if (!flag)
        return fgi_file_error(FG_ERR_UNSUPPORTED, s->fn, s->file,
                              "\"scale_attn_weights\": false is not supported");
    FGI_TRY(get_flag(s, "scale_attn_by_inverse_layer_idx", 0, &flag));
    if (flag)
        return fgi_file_error(FG_ERR_UNSUPPORTED, s->fn, s->file,
                              "\"scale_attn_by_inverse_layer_idx\" is not supported");
    out->tied = 1;
    return FG_OK;
}

/* RoPE settings: transformers <= 4 writes "rope_theta" (and "rope_scaling"
 * for scaled variants); transformers 5 writes "rope_parameters"
 * {rope_theta, rope_type, ...}. Both are read, and when both give a theta,
 * or both a scaling, they must agree. Rope types "default", "linear" and
 * "llama3" are computed (fg_config_rope_inv_freq); any other type, and any
 * key the type does not use, would change (or pretend to change) the
 * angles, so it is refused with the key named rather than ignored. */
typedef struct {
    int has_theta;
    double theta;
    fg_rope_scaling type;
    double factor, low, high;
    int original;
    unsigned seen; /* KEY_* bits of the keys given */
} rope_spec;

enum { KEY_FACTOR = 1, KEY_LOW = 2, KEY_HIGH = 4, KEY_ORIGINAL = 8 };

static const struct {
    const char *name;
    unsigned bit;
} rope_keys[] = {{"factor", KEY_FACTOR}, {"low_freq_factor", KEY_LOW},
                 {"high_freq_factor", KEY_HIGH},
                 {"original_max_position_embeddings", KEY_ORIGINAL}};

static fg_status rope_value(const config_source *s, const char *key, const cJSON *item,
                            rope_spec *r)
{
    const char *name = item->string;
    char got[64];
    for (size_t k = 0; k < sizeof rope_keys / sizeof rope_keys[0]; k++) {
        if (strcmp(name, rope_keys[k].name) != 0) continue;
        const double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
        const int original = rope_keys[k].bit == KEY_ORIGINAL;
        if (!(v > 0.0 && v <= 1e12) || (original && (v != floor(v) || v > MAX_SIZE))) {
            describe(item, got, sizeof got);
            return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                                  "\"%s.%s\" must be a%s number in (0, %g] (got %s)", key,
                                  name, original ? "n integer" : "",
                                  original ? (double)MAX_SIZE : 1e12, got);
        }
        r->seen |= rope_keys[k].bit;
        if (rope_keys[k].bit == KEY_FACTOR) r->factor = v;
        if (rope_keys[k].bit == KEY_LOW) r->low = v;
        if (rope_keys[k].bit == KEY_HIGH) r->high = v;
        if (original) r->original = (int)v;
        return FG_OK;
    }
    return fgi_file_error(FG_ERR_UNSUPPORTED, s->fn, s->file,
                          "\"%s.%s\" is not supported (it changes the RoPE angles)", key,
                          FGI_QUOTE(name));
}

static fg_status rope_object(const config_source *s, const char *key, rope_spec *r)
{
    const cJSON *obj = config_key(s, key), *item;
    int typed = 0;
    *r = (rope_spec){0};
    if (obj == NULL) return FG_OK;
    if (!cJSON_IsObject(obj))
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file, "\"%s\" must be an object",
                              key);
    cJSON_ArrayForEach(item, obj)
    {
        const char *name = item->string;
        char got[64];
        if (cJSON_IsNull(item)) continue;
        if (strcmp(name, "rope_type") == 0 || strcmp(name, "type") == 0) {
            const char *v = cJSON_IsString(item) ? item->valuestring : "";
            const fg_rope_scaling before = r->type;
            if (strcmp(v, "default") == 0) r->type = FG_ROPE_DEFAULT;
            else if (strcmp(v, "linear") == 0) r->type = FG_ROPE_LINEAR;
            else if (strcmp(v, "llama3") == 0) r->type = FG_ROPE_LLAMA3;
            else {
                describe(item, got, sizeof got);
                return fgi_file_error(FG_ERR_UNSUPPORTED, s->fn, s->file,
                                      "\"%s.%s\": %s is not supported (supported: "
                                      "\"default\", \"linear\", \"llama3\")", key,
                                      FGI_QUOTE(name), got);
            }
            /* "type" (older) and "rope_type" may both be there: one type */
            if (typed && r->type != before)
                return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                                      "\"%s.type\" and \"%s.rope_type\" disagree", key, key);
            typed = 1;
            continue;
        }
        if (strcmp(name, "rope_theta") == 0) {
            if (!cJSON_IsNumber(item) || !(item->valuedouble > 0.0) ||
                !(item->valuedouble <= 1e12)) {
                describe(item, got, sizeof got);
                return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                                      "\"%s.rope_theta\" must be a number in (0, 1e+12] "
                                      "(got %s)", key, got);
            }
            r->theta = item->valuedouble;
            r->has_theta = 1;
            continue;
        }
        FGI_TRY(rope_value(s, key, item, r));
    }
    /* exactly the keys the type uses */
    const unsigned want = r->type == FG_ROPE_LINEAR   ? KEY_FACTOR
                          : r->type == FG_ROPE_LLAMA3 ? KEY_FACTOR | KEY_LOW | KEY_HIGH |
                                                            KEY_ORIGINAL
                                                      : 0u;
    const char *type = r->type == FG_ROPE_LINEAR   ? "linear"
                       : r->type == FG_ROPE_LLAMA3 ? "llama3" : "default";
    for (size_t k = 0; k < sizeof rope_keys / sizeof rope_keys[0]; k++) {
        const unsigned bit = rope_keys[k].bit;
        if ((r->seen & bit) && !(want & bit))
            return fgi_file_error(FG_ERR_UNSUPPORTED, s->fn, s->file,
                                  "\"%s.%s\" is not used by rope type \"%s\"", key,
                                  rope_keys[k].name, type);
        if (!(r->seen & bit) && (want & bit))
            return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                                  "\"%s\" of rope type \"%s\" needs \"%s\"", key, type,
                                  rope_keys[k].name);
    }
    if (r->type != FG_ROPE_DEFAULT && !(r->factor >= 1.0))
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                              "\"%s.factor\" must be >= 1 (got %.17g)", key, r->factor);
    if (r->type == FG_ROPE_LLAMA3 && !(r->high > r->low))
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                              "\"%s.high_freq_factor\" (%.17g) must be greater than "
                              "\"%s.low_freq_factor\" (%.17g)", key, r->high, key, r->low);
    return FG_OK;
}

static int same_scaling(const rope_spec *a, const rope_spec *b)
{
    return a->type == b->type && a->factor == b->factor && a->low == b->low &&
           a->high == b->high && a->original == b->original;
}

static fg_status parse_rope(const config_source *s, fg_config *c)
{
    double top = 10000.0; /* set by get_number; initialised for -O3's flow analysis */
    rope_spec v4, v5;
    FGI_TRY(get_number(s, "rope_theta", 10000.0, 0.0, 1, 1e12, &top));
    FGI_TRY(rope_object(s, "rope_scaling", &v4));
    FGI_TRY(rope_object(s, "rope_parameters", &v5));
    /* every theta given must be the same one */
    const struct {
        const char *key;
        int has;
        double theta;
    } thetas[] = {{"rope_theta", config_key(s, "rope_theta") != NULL, top},
                  {"rope_scaling.rope_theta", v4.has_theta, v4.theta},
                  {"rope_parameters.rope_theta", v5.has_theta, v5.theta}};
    double theta = top;
    const char *from = NULL;
    for (size_t i = 0; i < 3; i++) {
        if (!thetas[i].has) continue;
        if (from != NULL && thetas[i].theta != theta)
            return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                                  "\"%s\" (%.17g) and \"%s\" (%.17g) disagree", from,
                                  theta, thetas[i].key, thetas[i].theta);
        from = thetas[i].key;
        theta = thetas[i].theta;
    }
    if (v4.type != FG_ROPE_DEFAULT && v5.type != FG_ROPE_DEFAULT && !same_scaling(&v4, &v5))
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                              "\"rope_scaling\" and \"rope_parameters\" disagree");
    const rope_spec *r = v5.type != FG_ROPE_DEFAULT ? &v5 : &v4;
    c->rope_base = theta;
    c->rope_scaling = r->type;
    c->rope_factor = r->factor;
    c->rope_low_freq_factor = r->low;
    c->rope_high_freq_factor = r->high;
    c->rope_original_ctx = r->original;
    return FG_OK;
}

/* A key that must be absent, null or false: set, it changes the math in a
 * way this engine does not compute. */
static fg_status refuse_if_true(const config_source *s, const char *key, const char *why)
{
    int flag;
    FGI_TRY(get_flag(s, key, 0, &flag));
    if (flag)
        return fgi_file_error(FG_ERR_UNSUPPORTED, s->fn, s->file,
                              "\"%s\": true is not supported (%s)", key, why);
    return FG_OK;
}

/* transformers 5's per-layer "layer_types": -1 when absent, else the index
 * of the first "sliding_attention" layer (n_layer when there is none). Only
 * full-attention layers followed by sliding ones can be represented
 * (fg_config's window_first_layer), and only where the family reads the
 * list (allow_sliding: Qwen2); anything else is refused with the key named. */
static fg_status layer_types(const config_source *s, int n_layer, int allow_sliding,
                             int *first_sliding)
{
    const cJSON *types = config_key(s, "layer_types"), *item;
    int i = 0;
    *first_sliding = -1;
    if (types == NULL) return FG_OK;
    if (!cJSON_IsArray(types))
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                              "\"layer_types\" must be an array");
    *first_sliding = n_layer;
    cJSON_ArrayForEach(item, types)
    {
        const int full = cJSON_IsString(item) && strcmp(item->valuestring, "full_attention") == 0;
        const int sliding =
            cJSON_IsString(item) && strcmp(item->valuestring, "sliding_attention") == 0;
        if (full && *first_sliding == n_layer) {
            i++;
            continue;
        }
        if (sliding && allow_sliding && cJSON_GetArraySize(types) == n_layer) {
            if (*first_sliding == n_layer) *first_sliding = i;
            i++;
            continue;
        }
        char got[64];
        describe(item, got, sizeof got);
        return fgi_file_error(FG_ERR_UNSUPPORTED, s->fn, s->file,
                              "\"layer_types\": %s at layer %d is not supported (%s)", got, i,
                              allow_sliding ? "full_attention layers, then sliding_attention "
                                              "ones, one entry per layer"
                                            : "only \"full_attention\"");
    }
    return FG_OK;
}

/* "sliding_window": a window W >= 1, or null (none). Absent, the family's
 * default (transformers: 4096 for Mistral and Qwen2, none for Llama). */
static fg_status window_size(const config_source *s, int fallback, int *window)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->root, "sliding_window");
    *window = 0;
    if (v == NULL) {
        *window = fallback;
        return FG_OK;
    }
    if (cJSON_IsNull(v)) return FG_OK;
    return get_int(s, "sliding_window", 0, 0x7fffffff, window);
}

/* The attention window of model_type llama, mistral and qwen2, as
 * transformers reads it: Mistral applies "sliding_window" to every layer;
 * Qwen2 only with "use_sliding_window" true, and then only to the layers
 * from "max_window_layers" on (or the "sliding_attention" entries of
 * "layer_types"); Llama has no window, so a "sliding_window" below the
 * context is refused there rather than ignored. */
static fg_status parse_window(const config_source *s, const char *type, fg_config *c)
{
    int window = 0, first_sliding, use = 0, max_window_layers = 28;
    const int qwen2 = strcmp(type, "qwen2") == 0, mistral = strcmp(type, "mistral") == 0;
    FGI_TRY(layer_types(s, c->n_layer, qwen2, &first_sliding));
    if (mistral || qwen2) FGI_TRY(window_size(s, 4096, &window));
    if (qwen2) {
        FGI_TRY(get_flag(s, "use_sliding_window", 0, &use));
        if (!use) window = 0;
        const cJSON *mwl = config_key(s, "max_window_layers"); /* 0 allowed */
        if (mwl != NULL && cJSON_IsNumber(mwl) && mwl->valuedouble == 0.0)
            max_window_layers = 0;
        else
            FGI_TRY(get_int(s, "max_window_layers", 28, MAX_COUNT, &max_window_layers));
        if (window == 0 && first_sliding >= 0 && first_sliding < c->n_layer)
            return fgi_file_error(FG_ERR_UNSUPPORTED, s->fn, s->file,
                                  "\"layer_types\" names sliding_attention layers but there "
                                  "is no window (\"use_sliding_window\" false or "
                                  "\"sliding_window\" null); not supported");
        c->window_first_layer = first_sliding >= 0 ? first_sliding : max_window_layers;
    }
    if (!mistral && !qwen2 && config_key(s, "sliding_window") != NULL) {
        FGI_TRY(get_int(s, "sliding_window", 0, 0x7fffffff, &window));
        if (window < c->n_ctx)
            return fgi_file_error(FG_ERR_UNSUPPORTED, s->fn, s->file,
                                  "\"sliding_window\" %d is smaller than "
                                  "max_position_embeddings %d; model_type \"llama\" has no "
                                  "sliding-window attention", window, c->n_ctx);
        window = 0;
    }
    c->sliding_window = window;
    if (window == 0 || c->window_first_layer >= c->n_layer)
        c->sliding_window = c->window_first_layer = 0; /* no layer has a window */
    return FG_OK;
}

/* model_type llama, mistral and qwen2: one architecture (RMSNorm, RoPE,
 * GQA, SwiGLU). Qwen2 adds biases on q, k and v (always present). */
static fg_status parse_llama(const config_source *s, const char *type, fgi_hf_config *out)
{
    static const char *const silu[] = {"silu", NULL};
    const int qwen2 = strcmp(type, "qwen2") == 0;
    fg_config *c = &out->cfg;
    int n_layer, n_head, n_kv, n_embd, n_inner, vocab, n_ctx, head_dim;
    double eps;
    FGI_TRY(get_int(s, "num_hidden_layers", 0, MAX_COUNT, &n_layer));
    FGI_TRY(get_int(s, "num_attention_heads", 0, MAX_COUNT, &n_head));
    FGI_TRY(get_int(s, "num_key_value_heads", n_head, MAX_COUNT, &n_kv));
    FGI_TRY(get_int(s, "hidden_size", 0, MAX_SIZE, &n_embd));
    FGI_TRY(get_int(s, "intermediate_size", 0, MAX_SIZE, &n_inner));
    FGI_TRY(get_int(s, "vocab_size", 0, MAX_SIZE, &vocab));
    FGI_TRY(get_int(s, "max_position_embeddings", 2048, MAX_SIZE, &n_ctx));
    *c = fg_config_llama(n_layer, n_embd, n_head, n_kv, n_inner, vocab, n_ctx);
    FGI_TRY(get_number(s, "rms_norm_eps", 1e-6, 0.0, 0, 1.0, &eps));
    c->norm_eps = (float)eps;
    FGI_TRY(parse_rope(s, c));
    /* transformers' default differs: Llama and Mistral untied, Qwen2 tied */
    FGI_TRY(get_flag(s, "tie_word_embeddings", qwen2, &out->tied));
    FGI_TRY(require_one_of(s, "hidden_act", silu));
    /* Llama's attention_bias also adds an o_proj bias, which the layer has
     * no slot for; Qwen2 always has q/k/v biases and no such key. */
    FGI_TRY(refuse_if_true(s, "attention_bias", "biases on the attention projections"));
    FGI_TRY(refuse_if_true(s, "mlp_bias", "biases on the MLP projections"));
    out->qkv_bias = qwen2;
    FGI_TRY(parse_window(s, type, c));
    /* Mistral-style: heads narrower or wider than hidden_size / heads
     * (q, k, v and o_proj's input are n_head * head_dim wide) */
    if (config_key(s, "head_dim") == NULL) return FG_OK;
    FGI_TRY(get_int(s, "head_dim", 0, MAX_SIZE, &head_dim));
    c->head_dim = head_dim;
    return FG_OK;
}

fg_status fgi_hf_config_parse(fgi_hf_config *out, const char *fn, const char *file,
                              const char *json, size_t len)
{
    config_source s = {fn, file, NULL};
    const char *type, *end = NULL;
    char *text;
    *out = (fgi_hf_config){0};
    if (len > MAX_CONFIG_BYTES)
        return fgi_file_error(FG_ERR_FORMAT, fn, file, "is %zu bytes, over the %llu-byte "
                              "limit for a config", len,
                              (unsigned long long)MAX_CONFIG_BYTES);
    if (memchr(json, '\0', len) != NULL)
        return fgi_file_error(FG_ERR_FORMAT, fn, file, "contains a NUL byte");
    FGI_TRY(fgi_alloc(fn, (void **)&text, len + 1, 1));
    memcpy(text, json, len);
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    s.root = root;
    fg_status st = FG_OK;
    if (root == NULL)
        st = fgi_file_error(FG_ERR_FORMAT, fn, file, "not valid JSON (near byte %zu)",
                            end != NULL && end >= text ? (size_t)(end - text) : 0);
    else if (!cJSON_IsObject(root))
        st = fgi_file_error(FG_ERR_FORMAT, fn, file, "not a JSON object");
    if (st == FG_OK) st = get_string(&s, "model_type", &type);
    if (st == FG_OK && type == NULL) st = missing_key(&s, "model_type");
    if (st == FG_OK) {
        if (strcmp(type, "gpt2") == 0) st = parse_gpt2(&s, out);
        else if (strcmp(type, "llama") == 0 || strcmp(type, "mistral") == 0 ||
                 strcmp(type, "qwen2") == 0)
            st = parse_llama(&s, type, out);
        else
            st = fgi_file_error(FG_ERR_UNSUPPORTED, fn, file,
                                "model_type \"%s\" is not supported (gpt2, llama, "
                                "mistral, qwen2)",
                                fgi_quote_bytes((char[200]){0}, 200, type, strlen(type)));
    }
    if (st == FG_OK && fgi_check_config(fn, &out->cfg) != FG_OK)
        st = fgi_config_format_error(fn, file);
    cJSON_Delete(root);
    free(text);
    if (st != FG_OK) *out = (fgi_hf_config){0};
    return st;
}

/* Tensors --------------------------------------------------------------------------- */

/* The checkpoint: one safetensors file, or the shards of an index; `file`
 * names it in messages about the model as a whole (a missing tensor). No
 * tensor name is in two shards (checked when the shards are opened). */
typedef struct {
    const char *fn, *file;
    size_t n_shards;
    const fgi_reader *r;    /* n_shards readers */
    const fgi_st_header *h; /* their headers */
    fgi_source_part *sources; /* every tensor the model uses, where it goes */
    size_t n_sources, cap_sources;
    int layer;                /* of the tensors being walked; -1: model-wide */
    char name[256];
} loading;

/* Where a stored tensor goes: a slot of the layout, and the placement of
 * fgi_source_part (col_off, stride, transpose, RoPE row order). */
typedef struct {
    fgi_slot slot;
    size_t col_off, stride;
    int transpose, rope_head_dim;
} destination;

static const char *tensor_name(loading *ld, const char *fmt, ...) FGI_PRINTF(2, 3);
static const char *tensor_name(loading *ld, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->name, sizeof ld->name, fmt, ap);
    va_end(ap);
    return ld->name;
}

static void format_shape(char *buf, size_t size, const int64_t *shape, int n_dims)
{
    size_t at = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < n_dims && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%lld", i ? ", " : "",
                               (long long)shape[i]);
    if (at < size) snprintf(buf + at, size - at, "]");
}

static int same_shape(const fgi_st_tensor *t, const int64_t *shape, int n_dims)
{
    if (t->n_dims != n_dims) return 0;
    for (int i = 0; i < n_dims; i++)
        if (t->shape[i] != shape[i]) return 0;
    return 1;
}

/* The tensor called `name` in any shard, and which shard holds it. */
static fgi_st_tensor *find_tensor(const loading *ld, const char *name, size_t *shard)
{
    for (size_t i = 0; i < ld->n_shards; i++) {
        fgi_st_tensor *t = fgi_safetensors_find(&ld->h[i], name);
        if (t != NULL) {
            if (shard != NULL) *shard = i;
            return t;
        }
    }
    return NULL;
}

/* `file`: the shard holding t */
static fg_status check_shape(const loading *ld, const char *file, const fgi_st_tensor *t,
                             const int64_t *shape, int n_dims)
{
    char got[128], want[128];
    if (same_shape(t, shape, n_dims)) return FG_OK;
    format_shape(got, sizeof got, t->shape, t->n_dims);
    format_shape(want, sizeof want, shape, n_dims);
    return fgi_file_error(FG_ERR_FORMAT, ld->fn, file,
                          "tensor '%s' has shape %s, expected %s", FGI_QUOTE(t->name), got,
                          want);
}

/* One tensor, read as (rows, cols). Its stored shape is [rows, cols], or
 * [rows * cols] for a vector. Checked, marked used and recorded: nothing is
 * read here (the model converts from the mapping when asked). */
static fg_status tensor(loading *ld, const char *name, int vector, size_t rows,
                        size_t cols, destination to)
{
    size_t shard = 0;
    fgi_st_tensor *t = find_tensor(ld, name, &shard);
    const fgi_reader *r = &ld->r[shard];
    fgi_dtype dtype;
    if (t == NULL)
        return fgi_file_error(FG_ERR_FORMAT, ld->fn, ld->file,
                              "missing tensor '%s'", name);
    FGI_TRY(fgi_safetensors_dtype(t, ld->fn, r->name, &dtype));
    const int64_t matrix[2] = {(int64_t)rows, (int64_t)cols};
    const int64_t flat[1] = {(int64_t)(rows * cols)};
    FGI_TRY(check_shape(ld, r->name, t, vector ? flat : matrix, vector ? 1 : 2));
    t->used = 1;
    if (ld->n_sources == ld->cap_sources) {
        const size_t cap = ld->cap_sources ? 2 * ld->cap_sources : 64;
        fgi_source_part *grown = realloc(ld->sources, cap * sizeof *grown);
        if (grown == NULL)
            return fgi_fail(FG_ERR_OOM, "%s: cannot allocate the tensor table", ld->fn);
        ld->sources = grown;
        ld->cap_sources = cap;
    }
    ld->sources[ld->n_sources++] = (fgi_source_part){
        .src = r->mem + ld->h[shard].data_start + t->begin, .dtype = dtype, .rows = rows,
        .cols = cols, .slot = to.slot, .layer = to.slot >= FGI_SLOT_FIRST_LAYER ? ld->layer : -1,
        .col_off = to.col_off, .stride = to.stride, .transpose = to.transpose,
        .rope_head_dim = to.rope_head_dim};
    return FG_OK;
}

static destination copy_to(fgi_slot slot, size_t cols)
{
    return (destination){slot, 0, cols, 0, 0};
}

/* A stored (out, in) matrix into the columns from col_off of an (in, stride) one. */
static destination transpose_to(fgi_slot slot, size_t col_off, size_t stride, int rope_head_dim)
{
    return (destination){slot, col_off, stride, 1, rope_head_dim};
}

static fg_status gpt2_tensors(loading *ld, const fg_config *c, const char *pre,
                              const fgi_model_parts *parts)
{
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner, V = (size_t)c->vocab_size;
    const size_t qkv = (size_t)fg_config_qkv_width(c);
    ld->layer = -1;
    FGI_TRY(tensor(ld, tensor_name(ld, "%swte.weight", pre), 0, V, C, copy_to(FGI_SLOT_WTE, C)));
    if (parts->wpe)
        FGI_TRY(tensor(ld, tensor_name(ld, "%swpe.weight", pre), 0, (size_t)c->n_ctx, C,
                      copy_to(FGI_SLOT_WPE, C)));
    for (int l = 0; l < c->n_layer; l++) {
        ld->layer = l;
#define LAYER(suffix) tensor_name(ld, "%sh.%d." suffix, pre, l)
        FGI_TRY(tensor(ld, LAYER("ln_1.weight"), 1, 1, C, copy_to(FGI_SLOT_LN_1_G, C)));
        FGI_TRY(tensor(ld, LAYER("ln_1.bias"), 1, 1, C, copy_to(FGI_SLOT_LN_1_B, C)));
        FGI_TRY(tensor(ld, LAYER("attn.c_attn.weight"), 0, C, qkv,
                      copy_to(FGI_SLOT_C_ATTN_W, qkv)));
        FGI_TRY(tensor(ld, LAYER("attn.c_attn.bias"), 1, 1, qkv, copy_to(FGI_SLOT_C_ATTN_B, qkv)));
        FGI_TRY(tensor(ld, LAYER("attn.c_proj.weight"), 0, C, C, copy_to(FGI_SLOT_C_PROJ_W, C)));
        FGI_TRY(tensor(ld, LAYER("attn.c_proj.bias"), 1, 1, C, copy_to(FGI_SLOT_C_PROJ_B, C)));
        FGI_TRY(tensor(ld, LAYER("ln_2.weight"), 1, 1, C, copy_to(FGI_SLOT_LN_2_G, C)));
        FGI_TRY(tensor(ld, LAYER("ln_2.bias"), 1, 1, C, copy_to(FGI_SLOT_LN_2_B, C)));
        FGI_TRY(tensor(ld, LAYER("mlp.c_fc.weight"), 0, C, I, copy_to(FGI_SLOT_FC_W, I)));
        FGI_TRY(tensor(ld, LAYER("mlp.c_fc.bias"), 1, 1, I, copy_to(FGI_SLOT_FC_B, I)));
        FGI_TRY(tensor(ld, LAYER("mlp.c_proj.weight"), 0, I, C,
                      copy_to(FGI_SLOT_MLP_PROJ_W, C)));
        FGI_TRY(tensor(ld, LAYER("mlp.c_proj.bias"), 1, 1, C, copy_to(FGI_SLOT_MLP_PROJ_B, C)));
#undef LAYER
    }
    ld->layer = -1;
    FGI_TRY(tensor(ld, tensor_name(ld, "%sln_f.weight", pre), 1, 1, C,
                  copy_to(FGI_SLOT_LN_F_G, C)));
    return tensor(ld, tensor_name(ld, "%sln_f.bias", pre), 1, 1, C, copy_to(FGI_SLOT_LN_F_B, C));
}

static fg_status llama_tensors(loading *ld, const fg_config *c,
                               const fgi_model_parts *parts)
{
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner, V = (size_t)c->vocab_size;
    const int d = fg_config_head_dim(c);
    const size_t nq = (size_t)c->n_head * d, nkv = (size_t)c->n_kv_head * d;
    const size_t qkv = (size_t)fg_config_qkv_width(c);
    ld->layer = -1;
    FGI_TRY(tensor(ld, "model.embed_tokens.weight", 0, V, C, copy_to(FGI_SLOT_WTE, C)));
    for (int l = 0; l < c->n_layer; l++) {
        ld->layer = l;
#define LAYER(suffix) tensor_name(ld, "model.layers.%d." suffix, l)
        FGI_TRY(tensor(ld, LAYER("input_layernorm.weight"), 1, 1, C,
                      copy_to(FGI_SLOT_LN_1_G, C)));
        FGI_TRY(tensor(ld, LAYER("self_attn.q_proj.weight"), 0, nq, C,
                      transpose_to(FGI_SLOT_C_ATTN_W, 0, qkv, d)));
        FGI_TRY(tensor(ld, LAYER("self_attn.k_proj.weight"), 0, nkv, C,
                      transpose_to(FGI_SLOT_C_ATTN_W, nq, qkv, d)));
        FGI_TRY(tensor(ld, LAYER("self_attn.v_proj.weight"), 0, nkv, C,
                      transpose_to(FGI_SLOT_C_ATTN_W, nq + nkv, qkv, 0)));
        if (parts->qkv_bias) {
            /* a bias is a column of rows: permuted like the weight's rows */
            const destination q = {FGI_SLOT_C_ATTN_B, 0, 1, 0, d};
            const destination k = {FGI_SLOT_C_ATTN_B, nq, 1, 0, d};
            const destination v = {FGI_SLOT_C_ATTN_B, nq + nkv, 1, 0, 0};
            FGI_TRY(tensor(ld, LAYER("self_attn.q_proj.bias"), 1, nq, 1, q));
            FGI_TRY(tensor(ld, LAYER("self_attn.k_proj.bias"), 1, nkv, 1, k));
            FGI_TRY(tensor(ld, LAYER("self_attn.v_proj.bias"), 1, nkv, 1, v));
        }
        FGI_TRY(tensor(ld, LAYER("self_attn.o_proj.weight"), 0, C, nq,
                      transpose_to(FGI_SLOT_C_PROJ_W, 0, C, 0)));
        FGI_TRY(tensor(ld, LAYER("post_attention_layernorm.weight"), 1, 1, C,
                      copy_to(FGI_SLOT_LN_2_G, C)));
        FGI_TRY(tensor(ld, LAYER("mlp.gate_proj.weight"), 0, I, C,
                      transpose_to(FGI_SLOT_FC_W, 0, I, 0)));
        FGI_TRY(tensor(ld, LAYER("mlp.up_proj.weight"), 0, I, C,
                      transpose_to(FGI_SLOT_UP_W, 0, I, 0)));
        FGI_TRY(tensor(ld, LAYER("mlp.down_proj.weight"), 0, C, I,
                      transpose_to(FGI_SLOT_MLP_PROJ_W, 0, C, 0)));
#undef LAYER
    }
    ld->layer = -1;
    FGI_TRY(tensor(ld, "model.norm.weight", 1, 1, C, copy_to(FGI_SLOT_LN_F_G, C)));
    if (parts->lm_head)
        FGI_TRY(tensor(ld, "lm_head.weight", 0, V, C, copy_to(FGI_SLOT_LM_HEAD, C)));
    return FG_OK;
}

/* name == head + decimal digits + tail */
static int is_layer_buffer(const char *name, const char *head, const char *tail)
{
    const size_t n = strlen(head);
    if (strncmp(name, head, n) != 0) return 0;
    const char *p = name + n, *digits = p;
    while (*p >= '0' && *p <= '9') p++;
    return p > digits && strcmp(p, tail) == 0;
}

/* Tensors the model does not need: buffers that carry no weights, and a
 * classifier copy when the classifier is tied. Anything else unused would
 * change what the model computes, so it is refused. */
static fg_status check_unused_shard(const loading *ld, const fgi_hf_config *hc,
                                    const char *head, size_t s)
{
    const fg_config *c = &hc->cfg;
    const int64_t classifier[2] = {c->vocab_size, c->n_embd};
    for (size_t i = 0; i < ld->h[s].n_tensors; i++) {
        const fgi_st_tensor *t = &ld->h[s].tensors[i];
        if (t->used) continue;
        if (strcmp(t->name, "lm_head.weight") == 0 && hc->tied) {
            FGI_TRY(check_shape(ld, ld->r[s].name, t, classifier, 2));
            continue;
        }
        if (c->arch == FG_ARCH_GPT2 && (is_layer_buffer(t->name, head, ".attn.bias") ||
                                        is_layer_buffer(t->name, head, ".attn.masked_bias")))
            continue;
        if (c->arch == FG_ARCH_LLAMA &&
            is_layer_buffer(t->name, "model.layers.", ".self_attn.rotary_emb.inv_freq"))
            continue;
        return fgi_file_error(FG_ERR_UNSUPPORTED, ld->fn, ld->r[s].name,
                              "tensor '%s' is not used by the %s loader (an unsupported "
                              "variant?)", FGI_QUOTE(t->name),
                              c->arch == FG_ARCH_GPT2 ? "gpt2" : "llama");
    }
    return FG_OK;
}

static fg_status check_unused(const loading *ld, const fgi_hf_config *hc,
                              const char *pre)
{
    char head[64];
    snprintf(head, sizeof head, "%sh.", pre);
    for (size_t s = 0; s < ld->n_shards; s++) FGI_TRY(check_unused_shard(ld, hc, head, s));
    return FG_OK;
}

static fg_status walk(loading *ld, const fgi_hf_config *hc, const char *pre,
                      const fgi_model_parts *parts)
{
    if (hc->cfg.arch == FG_ARCH_GPT2) return gpt2_tensors(ld, &hc->cfg, pre, parts);
    return llama_tensors(ld, &hc->cfg, parts);
}

/* ld: fn, file and the shards; the rest is filled here. */
static fg_status load_tensors(fg_model **model, const fgi_hf_config *hc, loading ld)
{
    const char *fn = ld.fn;
    const fg_config *c = &hc->cfg;
    const int gpt2 = c->arch == FG_ARCH_GPT2;
    const char *pre = gpt2 && find_tensor(&ld, "transformer.wte.weight", NULL)
                          ? "transformer." : "";
    char wpe[32];
    snprintf(wpe, sizeof wpe, "%swpe.weight", pre);
    const fgi_model_parts parts = {
        .wpe = gpt2 && (!c->use_rope || find_tensor(&ld, wpe, NULL) != NULL),
        .biases = gpt2,
        /* Qwen2 always has them; a Llama file may carry them */
        .qkv_bias = gpt2 || hc->qkv_bias ||
                    find_tensor(&ld, "model.layers.0.self_attn.q_proj.bias", NULL),
        .lm_head = !hc->tied,
    };
    fg_status st = walk(&ld, hc, pre, &parts);
    if (st == FG_OK) st = check_unused(&ld, hc, pre);
    if (st != FG_OK) {
        free(ld.sources);
        return st;
    }
    /* a progress callback sees the file read now (the disk reads the
     * upload or widening would do later) */
    for (size_t s = 0; s < ld.n_shards; s++)
        if (ld.r[s].progress != NULL && ld.r[s].progress->fn != NULL) fgi_reader_prefault(&ld.r[s]);
    return fgi_model_alloc_lazy(fn, model, c, &parts, ld.sources, ld.n_sources, NULL, 0);
}

fg_status fgi_hf_load(fg_model **model, const char *fn, const fgi_hf_config *config,
                      const fgi_reader *st)
{
    fgi_st_header h;
    *model = NULL;
    FGI_TRY(fgi_safetensors_open(&h, st));
    const loading ld = {.fn = fn, .file = st->name, .n_shards = 1, .r = st, .h = &h};
    fg_status status = load_tensors(model, config, ld);
    fgi_safetensors_free(&h);
    return status;
}

/* Sharded checkpoints ----------------------------------------------------------------
 *
 * model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor:
 * shard file}}. The index and the shards must agree exactly: every tensor
 * of the index is in the shard it names, every tensor of every shard is in
 * the index under that shard (so no tensor is in two shards), and no tensor
 * is listed twice. A shard must be a plain file name: the index cannot
 * make the loader open anything outside the folder. */

#define MAX_INDEX_BYTES ((uint64_t)64 << 20)
#define MAX_SHARDS 65536

typedef struct {
    const char *name; /* points into the parsed JSON */
    size_t shard;
} index_entry;

typedef struct {
    cJSON *root;
    const char **files; /* distinct shard names, in order of first mention */
    size_t n_files;
    index_entry *entries; /* sorted by name */
    size_t n_entries;
} shard_index;

static void index_free(shard_index *x)
{
    cJSON_Delete(x->root);
    free(x->files);
    free(x->entries);
    *x = (shard_index){0};
}

static int by_entry_name(const void *a, const void *b)
{
    return strcmp(((const index_entry *)a)->name, ((const index_entry *)b)->name);
}

static const index_entry *index_find(const shard_index *x, const char *name)
{
    const index_entry key = {name, 0};
    return x->n_entries ? bsearch(&key, x->entries, x->n_entries, sizeof key, by_entry_name)
                        : NULL;
}

static fg_status index_entries(shard_index *x, const char *fn, const char *path,
                               const cJSON *map)
{
    const cJSON *item;
    size_t n = 0;
    cJSON_ArrayForEach(item, map) n++;
    if (n == 0) return fgi_file_error(FG_ERR_FORMAT, fn, path, "\"weight_map\" is empty");
    FGI_TRY(fgi_alloc(fn, (void **)&x->entries, n, sizeof *x->entries));
    FGI_TRY(fgi_alloc(fn, (void **)&x->files, n, sizeof *x->files));
    cJSON_ArrayForEach(item, map)
    {
        const char *file = cJSON_IsString(item) ? item->valuestring : NULL;
        if (file == NULL)
            return fgi_file_error(FG_ERR_FORMAT, fn, path,
                                  "\"weight_map\" entry '%s' is not a file name string",
                                  FGI_QUOTE(item->string));
        if (file[0] == '\0' || strchr(file, '/') != NULL || strcmp(file, ".") == 0 ||
            strcmp(file, "..") == 0)
            return fgi_file_error(FG_ERR_FORMAT, fn, path,
                                  "tensor '%s' is mapped to '%s', which is not a file "
                                  "in the checkpoint's folder", FGI_QUOTE(item->string),
                                  FGI_QUOTE(file));
        size_t f = 0;
        while (f < x->n_files && strcmp(x->files[f], file) != 0) f++;
        if (f == x->n_files) {
            if (x->n_files == MAX_SHARDS)
                return fgi_file_error(FG_ERR_FORMAT, fn, path, "names more than %d shards",
                                      MAX_SHARDS);
            x->files[x->n_files++] = file;
        }
        x->entries[x->n_entries++] = (index_entry){item->string, f};
    }
    qsort(x->entries, x->n_entries, sizeof *x->entries, by_entry_name);
    for (size_t i = 1; i < x->n_entries; i++)
        if (strcmp(x->entries[i - 1].name, x->entries[i].name) == 0)
            return fgi_file_error(FG_ERR_FORMAT, fn, path,
                                  "tensor '%s' is listed twice in \"weight_map\"",
                                  FGI_QUOTE(x->entries[i].name));
    return FG_OK;
}

/* The index text (len bytes, need not end in NUL). */
static fg_status parse_index(shard_index *x, const char *fn, const char *path,
                             const char *json, size_t len)
{
    const char *end = NULL;
    char *text;
    *x = (shard_index){0};
    if (len > MAX_INDEX_BYTES)
        return fgi_file_error(FG_ERR_FORMAT, fn, path, "is %zu bytes, over the %llu-byte "
                              "limit for a safetensors index", len,
                              (unsigned long long)MAX_INDEX_BYTES);
    if (memchr(json, '\0', len) != NULL)
        return fgi_file_error(FG_ERR_FORMAT, fn, path, "contains a NUL byte");
    FGI_TRY(fgi_alloc(fn, (void **)&text, len + 1, 1));
    memcpy(text, json, len);
    fg_status st = FG_OK;
    x->root = cJSON_ParseWithOpts(text, &end, 1);
    if (x->root == NULL)
        st = fgi_file_error(FG_ERR_FORMAT, fn, path, "not valid JSON (near byte %zu)",
                            end != NULL && end >= text ? (size_t)(end - text) : 0);
    const cJSON *map = st == FG_OK ? cJSON_GetObjectItemCaseSensitive(x->root, "weight_map")
                                   : NULL;
    if (st == FG_OK && !cJSON_IsObject(map))
        st = fgi_file_error(FG_ERR_FORMAT, fn, path, "needs a \"weight_map\" object");
    if (st == FG_OK) st = index_entries(x, fn, path, map);
    free(text);
    if (st != FG_OK) index_free(x);
    return st;
}

fg_status fgi_hf_index_parse(const char *fn, const char *file, const char *json, size_t len,
                             size_t *n_shards, size_t *n_tensors)
{
    shard_index x;
    FGI_TRY(parse_index(&x, fn, file, json, len));
    *n_shards = x.n_files;
    *n_tensors = x.n_entries;
    index_free(&x);
    return FG_OK;
}

static fg_status read_index(shard_index *x, const char *fn, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    *x = (shard_index){0};
    FGI_TRY(fgi_load_input(fn, path, MAX_INDEX_BYTES, "a safetensors index", &text, &len));
    fg_status st = parse_index(x, fn, path, text, len);
    free(text);
    return st;
}

/* Index and shards agree exactly (see above). */
static fg_status check_shards(const shard_index *x, const char *fn, const char *path,
                              const fgi_reader *r, const fgi_st_header *h)
{
    for (size_t s = 0; s < x->n_files; s++)
        for (size_t i = 0; i < h[s].n_tensors; i++) {
            const char *name = h[s].tensors[i].name;
            const index_entry *e = index_find(x, name);
            if (e == NULL)
                return fgi_file_error(FG_ERR_FORMAT, fn, r[s].name,
                                      "tensor '%s' is not in the index", FGI_QUOTE(name));
            if (e->shard != s)
                return fgi_file_error(FG_ERR_FORMAT, fn, r[s].name,
                                      "tensor '%s' is also here, but the index maps it "
                                      "to '%s'", FGI_QUOTE(name),
                                      FGI_QUOTE(x->files[e->shard]));
        }
    for (size_t i = 0; i < x->n_entries; i++)
        if (fgi_safetensors_find(&h[x->entries[i].shard], x->entries[i].name) == NULL)
            return fgi_file_error(FG_ERR_FORMAT, fn, path,
                                  "maps tensor '%s' to '%s', which does not hold it",
                                  FGI_QUOTE(x->entries[i].name),
                                  FGI_QUOTE(x->files[x->entries[i].shard]));
    return FG_OK;
}

static fg_status join(const char *fn, const char *dir, const char *file, char **out);

static fg_status load_sharded(fg_model **model, const char *fn, const fgi_hf_config *hc,
                              const char *dir, const char *index_path,
                              fgi_progress *progress)
{
    shard_index x;
    FGI_TRY(read_index(&x, fn, index_path));
    char **paths = NULL;
    fgi_reader *r = NULL;
    fgi_st_header *h = NULL;
    size_t opened = 0, parsed = 0;
    uint64_t total = 0;
    fg_status st = fgi_alloc(fn, (void **)&paths, x.n_files, sizeof *paths);
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&r, x.n_files, sizeof *r);
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&h, x.n_files, sizeof *h);
    for (size_t s = 0; st == FG_OK && s < x.n_files; s++) {
        st = join(fn, dir, x.files[s], &paths[s]);
        if (st == FG_OK) st = fgi_reader_open(&r[s], fn, paths[s]);
        if (st != FG_OK) break;
        opened++;
        r[s].progress = progress;
        total += r[s].size;
        st = fgi_safetensors_open(&h[s], &r[s]);
        if (st == FG_OK) parsed++;
    }
    if (st == FG_OK) st = check_shards(&x, fn, index_path, r, h);
    if (st == FG_OK) {
        fgi_progress_begin(progress, total);
        const loading ld = {.fn = fn, .file = index_path, .n_shards = x.n_files, .r = r,
                            .h = h};
        st = load_tensors(model, hc, ld);
        if (st == FG_OK) st = fgi_model_adopt(fn, model, r, x.n_files);
        if (st == FG_OK) fgi_progress_finish(progress);
    }
    for (size_t s = 0; s < parsed; s++) fgi_safetensors_free(&h[s]);
    for (size_t s = 0; s < opened; s++) fgi_reader_close(&r[s]);
    for (size_t s = 0; paths != NULL && s < x.n_files; s++) free(paths[s]);
    free(paths);
    free(r);
    free(h);
    index_free(&x);
    return st;
}

/* The folder ----------------------------------------------------------------------- */

static fg_status join(const char *fn, const char *dir, const char *file, char **out)
{
    const size_t a = strlen(dir), b = strlen(file);
    FGI_TRY(fgi_alloc(fn, (void **)out, a + b + 2, 1));
    snprintf(*out, a + b + 2, "%s/%s", dir, file);
    return FG_OK;
}

static fg_status read_config(fgi_hf_config *hc, const char *fn, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    FGI_TRY(fgi_load_input(fn, path, MAX_CONFIG_BYTES, "a config", &text, &len));
    fg_status st = fgi_hf_config_parse(hc, fn, path, text, len);
    free(text);
    return st;
}

static fg_status load_folder(fg_model **model, const char *fn, const char *dir,
                             const char *config_path, const char *weights_path,
                             const char *index_path, fgi_progress *progress)
{
    fgi_hf_config hc;
    fgi_reader r;
    FGI_TRY(read_config(&hc, fn, config_path));
    /* one file when there is one (as transformers prefers), else the shards */
    if (access(weights_path, F_OK) != 0 && access(index_path, F_OK) == 0)
        return load_sharded(model, fn, &hc, dir, index_path, progress);
    FGI_TRY(fgi_reader_open(&r, fn, weights_path));
    r.progress = progress;
    fgi_progress_begin(progress, r.size);
    fg_status st = fgi_hf_load(model, fn, &hc, &r);
    if (st == FG_OK) st = fgi_model_adopt(fn, model, &r, 1);
    fgi_reader_close(&r);
    if (st == FG_OK) fgi_progress_finish(progress);
    return st;
}

fg_status fgi_hf_load_folder(fg_model **model, const char *fn, const char *dir,
                             fgi_progress *progress)
{
    char *config = NULL, *weights = NULL, *index = NULL;
    fg_status st = join(fn, dir, "config.json", &config);
    if (st == FG_OK) st = join(fn, dir, "model.safetensors", &weights);
    if (st == FG_OK) st = join(fn, dir, "model.safetensors.index.json", &index);
    if (st == FG_OK) st = load_folder(model, fn, dir, config, weights, index, progress);
    free(config);
    free(weights);
    free(index);
    return st;
}

fg_status fg_model_load_hf(fg_model **model, const char *dir)
{
    static const char fn[] = "fg_model_load_hf";
    FGI_TRY(fgi_check_ptr(fn, "model", model));
    *model = NULL;
    FGI_TRY(fgi_check_ptr(fn, "dir", dir));
    return fgi_hf_load_folder(model, fn, dir, NULL);
}
