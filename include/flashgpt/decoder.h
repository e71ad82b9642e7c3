/* flashgpt model description, weights, KV cache and the CPU reference
 * decoder (docs/contract.md §16-§18).
 *
 * Two families share one configuration and one weights layout:
 *  - GPT-2: learned wpe (optional with use_rope), LayerNorm, GELU MLP,
 *    biases, tied classifier; plus the seed's options n_kv_head (GQA),
 *    use_rope / rope_base, use_flash / flash_block;
 *  - Llama: no wpe, RoPE, GQA, RMSNorm, SwiGLU MLP, no norm biases, tied or
 *    separate classifier.
 * Matrices are stored (in, out) so that y = x @ w; the classifier is
 * (vocab, C) and logits = x @ classifier^T. The weights struct only points at
 * memory the caller owns (loaders fill it; tests build it in memory). */
#ifndef FLASHGPT_DECODER_H
#define FLASHGPT_DECODER_H

#include "flashgpt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { FG_ARCH_GPT2 = 0, FG_ARCH_LLAMA = 1 } fg_arch;

/* RoPE frequency scaling, as Hugging Face's rope_type (docs/contract.md
 * §14): none, "linear" (every inverse frequency divided by rope_factor) or
 * "llama3" (low frequencies divided by rope_factor, high ones kept, a
 * smooth blend between, by wavelength against rope_original_ctx). */
typedef enum {
    FG_ROPE_DEFAULT = 0,
    FG_ROPE_LINEAR = 1,
    FG_ROPE_LLAMA3 = 2
} fg_rope_scaling;

typedef struct {
    fg_arch arch;
    int n_layer;
    int n_embd;      /* hidden size C */
    int n_head;      /* query heads; head_dim: fg_config_head_dim */
    int n_kv_head;   /* key/value heads: n_head is MHA, 1 is MQA */
    int n_inner;     /* MLP width (GPT-2: 4 * n_embd) */
    int vocab_size;
    int n_ctx;       /* positions the model was trained for (rows of wpe) */
    float norm_eps;  /* LayerNorm / RMSNorm epsilon */
    int use_rope;    /* rotate q and k (Llama: must be 1) */
    double rope_base;
    int use_flash;   /* 0: dense attention; 1: keys streamed in blocks */
    int flash_block; /* key block size when use_flash (>= 1) */
    /* RoPE scaling (0 / unused with FG_ROPE_DEFAULT); every path computes
     * it (fg_config_rope_inv_freq) */
    fg_rope_scaling rope_scaling;
    double rope_factor;           /* linear, llama3: >= 1 */
    double rope_low_freq_factor;  /* llama3: 0 < low < high */
    double rope_high_freq_factor; /* llama3 */
    int rope_original_ctx;        /* llama3: original_max_position_embeddings */
    /* Sliding-window attention (docs/contract.md §10): with W =
     * sliding_window >= 1, the query at absolute position p sees only keys
     * j with p - W < j <= p (the last W, itself included), in every layer
     * l >= window_first_layer (Qwen2's max_window_layers; 0: all layers).
     * 0: no window; a window of at least the context changes nothing. */
    int sliding_window;
    int window_first_layer;
    /* Width of one head; 0 (the default): n_embd / n_head, which must then
     * divide. Set (Hugging Face "head_dim"), q and the attention output
     * are n_head * head_dim wide whatever n_embd, and c_proj_w is
     * (n_head * head_dim, n_embd). */
    int head_dim;
} fg_config;

/* A GPT-2 configuration with the usual defaults (n_kv_head = n_head,
 * n_inner = 4 * n_embd, eps 1e-5, rope off with base 10000, dense
 * attention with flash_block 128). */
fg_config fg_config_gpt2(int n_layer, int n_embd, int n_head, int vocab_size,
                         int n_ctx);

/* A Llama configuration (RoPE base 10000, eps 1e-5, dense attention). */
fg_config fg_config_llama(int n_layer, int n_embd, int n_head, int n_kv_head,
                          int n_inner, int vocab_size, int n_ctx);

/* Checks every field and their relations (n_embd % n_head unless head_dim
 * is set, n_head % n_kv_head, even head_dim with RoPE, windows >= 0, ...). */
fg_status fg_config_validate(const fg_config *cfg);

/* RoPE inverse frequency of pair j (0 <= j < head_dim/2), in double:
 * base^(-2j/head_dim), then scaled as cfg->rope_scaling says. The
 * reference and the fast CPU path both rotate by pos * this. 0 for a
 * NULL cfg or j out of range. */
double fg_config_rope_inv_freq(const fg_config *cfg, int j);

/* Width of the fused q|k|v projection: (n_head + 2 * n_kv_head) * head_dim. */
int fg_config_qkv_width(const fg_config *cfg);

/* The width of one head: cfg->head_dim when set (> 0), else n_embd /
 * n_head (0 for a NULL cfg or n_head < 1). */
int fg_config_head_dim(const fg_config *cfg);

/* The attention window of layer `layer`: cfg->sliding_window when it
 * applies to that layer, else 0 (no window; also for a NULL cfg). */
int fg_config_layer_window(const fg_config *cfg, int layer);

/* One layer. Shapes with C = n_embd, d = head_dim. Biases may be NULL (zero). */
typedef struct {
    const float *ln_1_g, *ln_1_b;   /* (C) norm before attention; Llama: b NULL */
    const float *c_attn_w;          /* (C, (n_head + 2*n_kv_head)*d): [q | k | v] */
    const float *c_attn_b;          /* ((n_head + 2*n_kv_head)*d) */
    const float *c_proj_w;          /* (n_head*d, C) attention output */
    const float *c_proj_b;          /* (C) */
    const float *ln_2_g, *ln_2_b;   /* (C) norm before the MLP; Llama: b NULL */
    const float *fc_w, *fc_b;       /* (C, n_inner) GPT-2 c_fc; Llama w1 (gate) */
    const float *up_w;              /* (C, n_inner) Llama w3 (up); GPT-2: NULL */
    const float *mlp_proj_w;        /* (n_inner, C) GPT-2 mlp.c_proj; Llama w2 */
    const float *mlp_proj_b;        /* (C) */
} fg_layer_weights;

typedef struct {
    const float *wte;               /* (vocab, C) token embeddings */
    const float *wpe;               /* (n_ctx, C); NULL allowed with RoPE */
    const fg_layer_weights *layers; /* n_layer entries */
    const float *ln_f_g, *ln_f_b;   /* (C) final norm; Llama: b NULL */
    const float *lm_head;           /* (vocab, C); NULL: tied to wte */
} fg_weights;

/* Checks that every pointer the configuration needs is present and that
 * pointers the family cannot use (e.g. a Llama wpe) are NULL. */
fg_status fg_weights_validate(const fg_config *cfg, const fg_weights *w);

/* Per-layer key/value cache of fixed capacity (host memory). Keys are stored
 * already rotated when RoPE is on. */
typedef struct {
    float *k;  /* (n_kv_head, capacity, head_dim) */
    float *v;  /* (n_kv_head, capacity, head_dim) */
    int len;   /* tokens cached in this layer */
} fg_kv_layer;

typedef struct {
    int n_layer, n_kv_head, head_dim, capacity;
    fg_kv_layer *layers; /* n_layer entries */
} fg_kv_cache;

/* Allocates a cache for `capacity` tokens (all layers, len 0). */
fg_status fg_kv_cache_create(fg_kv_cache **cache, const fg_config *cfg,
                             int capacity);
void fg_kv_cache_destroy(fg_kv_cache *cache); /* NULL is a no-op */
fg_status fg_kv_cache_reset(fg_kv_cache *cache); /* forget every token */

/* docs/contract.md §16. Attention layer with KV cache: out (T, C) from the normalised
 * input x (T, C). The T new tokens take positions L .. L+T-1 with
 * L = cache->layers[layer].len; their (rotated) k and v are appended and
 * that layer's len grows by T. Fails without touching the cache when
 * L + T > capacity. */
fg_status fg_ref_attention_layer(float *out, const float *x, int T,
                                 const fg_config *cfg,
                                 const fg_layer_weights *lw,
                                 fg_kv_cache *cache, int layer);

/* docs/contract.md §17. Pre-norm block in place on x (T, C):
 * x += attention(norm_1(x)); x += mlp(norm_2(x)). */
fg_status fg_ref_block(float *x, int T, const fg_config *cfg,
                       const fg_layer_weights *lw, fg_kv_cache *cache,
                       int layer);

/* docs/contract.md §18. Decoder forward: appends the T tokens `ids` to every layer of the
 * cache (all layers must hold the same number of tokens) and writes
 * logits (T, vocab); probs (T, vocab) = softmax(logits) when not NULL.
 * On any error nothing is written and the cache is unchanged. */
fg_status fg_ref_forward(float *logits, float *probs, const fg_config *cfg,
                         const fg_weights *w, fg_kv_cache *cache,
                         const int *ids, int T);

/* fg_ref_forward computing only the last token's logits (vocab): what
 * generation needs, without the classifier cost of the other T-1 rows. */
fg_status fg_ref_forward_last(float *logits, const fg_config *cfg,
                              const fg_weights *w, fg_kv_cache *cache,
                              const int *ids, int T);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_DECODER_H */
