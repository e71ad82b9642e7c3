/* Unchecked building blocks of the CPU reference (prefix fgi_), shared by the
 * public fg_ref_* operations and the reference decoder so that both compute
 * exactly the same thing. Callers validate arguments first. Every reduction
 * accumulates in double. */
#ifndef FLASHGPT_HOST_REF_INTERNAL_H
#define FLASHGPT_HOST_REF_INTERNAL_H

#include "flashgpt/decoder.h"
#include "flashgpt/dtype.h"

#include <stddef.h>

double fgi_gelu(double x);
double fgi_silu(double x);

/* Softmax of the n values x[0], x[stride], ... into y at the same stride
 * (y == x allowed). */
void fgi_softmax_slice(float *y, const float *x, int n, size_t stride);

/* RoPE of one head vector (head_dim values) at absolute position pos. */
void fgi_rope_vector(float *x, int head_dim, int pos, double base);
/* The same with the configuration's (possibly scaled) inverse frequencies,
 * head_dim = fg_config_head_dim(c). */
void fgi_rope_vector_cfg(float *x, int pos, const fg_config *c);

void fgi_layer_norm_row(float *y, const float *x, const float *g,
                        const float *b, int cols, float eps);
void fgi_rms_norm_row(float *y, const float *x, const float *g, int cols,
                      float eps);

/* y (rows, out) = x (rows, in) @ w (in, out) + b; acc: `out` doubles. */
void fgi_linear(float *y, const float *x, const float *w, const float *b,
                int rows, int in, int out, double *acc);

/* y (rows, out) = x (rows, in) @ wt^T with wt (out, in) (the classifier). */
void fgi_linear_transposed(float *y, const float *x, const float *wt, int rows,
                           int in, int out);

/* GPT-2 MLP y = gelu(x @ w_fc + b_fc) @ w_proj + b_proj and the SwiGLU MLP
 * y = (silu(x @ w_gate) * (x @ w_up)) @ w_down; GELU biases may be NULL. h: rows*inner floats (GELU) or 2*rows*inner (SwiGLU); acc:
 * max(hidden, inner) doubles. */
void fgi_gelu_mlp(float *y, const float *x, const float *w_fc, const float *b_fc,
                  const float *w_proj, const float *b_proj, int rows, int hidden,
                  int inner, float *h, double *acc);
void fgi_swiglu_mlp(float *y, const float *x, const float *w_gate,
                    const float *w_up, const float *w_down, int rows, int hidden,
                    int inner, float *h, double *acc);

/* One head of causal attention (bottom-right aligned). Query row i is at
 * q + i*q_stride, its output at out + i*out_stride; k and v are contiguous
 * (kv_len, head_dim). block_size 0 computes dense attention, >= 1 streams the
 * keys in blocks with an online softmax. window >= 1: row i sees only its
 * last `window` keys (0: all). scratch: kv_len + head_dim doubles (see
 * fgi_attend_scratch). */
void fgi_attend_head(float *out, size_t out_stride, const float *q,
                     size_t q_stride, const float *k, const float *v,
                     int q_len, int kv_len, int head_dim, int block_size,
                     int window, double *scratch);
size_t fgi_attend_scratch(int kv_len, int head_dim);

/* The naive 16-bit decoder (host/ref/ref_decoder_naive16.c), the yardstick
 * of the 16-bit rule for the GPU decoder: fg_ref_forward's semantics with
 * every op boundary, the residual stream included, rounded to dtype (bf16
 * or f16) by the naive ops of flashgpt/ops.h; logits (T, vocab) rounded
 * too. cache: an ordinary fg_kv_cache, its keys and values rounded. The
 * arguments are checked as fg_ref_forward's; scaled RoPE, sliding windows
 * and a q|k|v bias (Qwen2) as the exact decoder has them. A test
 * reference: a failure part-way may leave layers of the cache written. */
fg_status fgi_ref_forward_naive16(fg_dtype dtype, float *logits, const fg_config *cfg,
                                  const fg_weights *w, fg_kv_cache *cache, const int *ids, int T);

/* The naive ops the decoder above needs beyond flashgpt/ops.h's
 * (host/ref/ref_naive16.c): fg_ref_rope_naive16 with cfg's inverse
 * frequencies (scaled RoPE, fg_config_rope_inv_freq), and
 * fg_ref_gqa_naive16 where each query sees only its last `window` keys
 * (window >= 1; 0: no window). */
fg_status fgi_ref_rope_cfg_naive16(fg_dtype dtype, float *x, int n_head, int seq,
                                   int head_dim, const int *pos, const fg_config *cfg);
fg_status fgi_ref_gqa_window_naive16(fg_dtype dtype, float *out, const float *q, const float *k,
                                     const float *v, int n_q_head, int n_kv_head, int q_len,
                                     int kv_len, int head_dim, int window);

#endif /* FLASHGPT_HOST_REF_INTERNAL_H */
