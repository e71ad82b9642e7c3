/* flashgpt CPU reference operations (fg_ref_*).
 *
 * The exact, readable definition of every operation; the CUDA path and the
 * tests are held to it. Conventions (docs/contract.md §2, §3):
 *  - contiguous row-major fp32; shapes in the comments;
 *  - reductions (dot products, sums, means, variances) accumulate in double,
 *    RoPE angles are computed in double;
 *  - attention is causal with bottom-right alignment: with
 *    shift = kv_len - q_len, query i sees keys j <= i + shift; masked keys are
 *    skipped (probability exactly 0), and 1 <= q_len <= kv_len is required;
 *    scores are scaled by 1/sqrt(head_dim);
 *  - on bad arguments a function returns FG_ERR_INVALID_ARG, sets
 *    fg_last_error() and writes nothing; outputs must not overlap inputs
 *    unless a function says in-place use is allowed. */
#ifndef FLASHGPT_OPS_H
#define FLASHGPT_OPS_H

#include "flashgpt/dtype.h"
#include "flashgpt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Softmax over the middle axis of x viewed as (outer, n, inner); last axis:
 * inner = 1. Max-shifted; -inf entries get 0, an all -inf slice gives zeros.
 * y == x (in place) is allowed. */
fg_status fg_ref_softmax(float *y, const float *x, int outer, int n, int inner);

/* mask (q_len, kv_len): 1 where key j is masked for query i (j > i + shift). */
fg_status fg_ref_causal_mask(uint8_t *mask, int q_len, int kv_len);

/* Single-head causal attention.
 * q (q_len, head_dim), k v (kv_len, head_dim) -> out (q_len, head_dim). */
fg_status fg_ref_attention(float *out, const float *q, const float *k,
                           const float *v, int q_len, int kv_len, int head_dim);

/* The same result with keys/values streamed in blocks of block_size (>= 1)
 * keeping a running max, running sum and unnormalised accumulator per row. */
fg_status fg_ref_attention_flash(float *out, const float *q, const float *k,
                                 const float *v, int q_len, int kv_len,
                                 int head_dim, int block_size);

/* x (seq, n_head*head_dim) -> out (n_head, seq, head_dim); head h takes
 * columns [h*head_dim, (h+1)*head_dim). */
fg_status fg_ref_split_heads(float *out, const float *x, int seq, int n_head,
                             int head_dim);

/* The inverse: x (n_head, seq, head_dim) -> out (seq, n_head*head_dim). */
fg_status fg_ref_merge_heads(float *out, const float *x, int n_head, int seq,
                             int head_dim);

/* Per-head causal attention. q (n_head, q_len, d), k v (n_head, kv_len, d)
 * -> out (n_head, q_len, d). */
fg_status fg_ref_mha(float *out, const float *q, const float *k, const float *v,
                     int n_head, int q_len, int kv_len, int head_dim);

/* Grouped-query attention: query head h reads kv head h / (n_q_head /
 * n_kv_head). q (n_q_head, q_len, d), k v (n_kv_head, kv_len, d)
 * -> out (n_q_head, q_len, d). n_q_head % n_kv_head == 0. */
fg_status fg_ref_gqa(float *out, const float *q, const float *k, const float *v,
                     int n_q_head, int n_kv_head, int q_len, int kv_len,
                     int head_dim);

/* fg_ref_gqa with a sliding window: query row i (absolute position
 * p = i + kv_len - q_len) sees only keys j with p - window < j <= p, its
 * last `window` keys itself included (transformers' sliding_window mask).
 * window 0: no window (== fg_ref_gqa); window >= kv_len changes nothing. */
fg_status fg_ref_gqa_window(float *out, const float *q, const float *k,
                            const float *v, int n_q_head, int n_kv_head,
                            int q_len, int kv_len, int head_dim, int window);

/* RoPE in place on x (n_head, seq, head_dim), interleaved pairs: pair j
 * (dims 2j, 2j+1) at position p turns by theta = p * base^(-2j/head_dim):
 * (a, b) -> (a cos - b sin, b cos + a sin). pos: seq absolute positions
 * (>= 0), shared by all heads. head_dim even, base > 0. */
fg_status fg_ref_rope(float *x, int n_head, int seq, int head_dim,
                      const int *pos, double base);

/* y (rows, out) = x (rows, in) @ w (in, out) + b (out); b may be NULL. */
fg_status fg_ref_linear(float *y, const float *x, const float *w, const float *b,
                        int rows, int in, int out);

/* GELU, tanh form 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))), n elements.
 * y == x allowed. */
fg_status fg_ref_gelu(float *y, const float *x, int n);

/* LayerNorm over the last axis with biased variance:
 * y = g * (x - mean) / sqrt(var + eps) + b. x y (rows, cols), g b (cols).
 * y == x allowed. eps >= 0 (GPT-2 uses 1e-5). */
fg_status fg_ref_layer_norm(float *y, const float *x, const float *g,
                            const float *b, int rows, int cols, float eps);

/* GPT-2 MLP: y = linear(gelu(linear(x, w_fc, b_fc)), w_proj, b_proj).
 * x y (rows, hidden), w_fc (hidden, inner), w_proj (inner, hidden);
 * biases may be NULL. */
fg_status fg_ref_ffn(float *y, const float *x, const float *w_fc,
                     const float *b_fc, const float *w_proj,
                     const float *b_proj, int rows, int hidden, int inner);

/* Llama family ---------------------------------------------------------- */

/* RMSNorm: y = g * x / sqrt(mean(x^2) + eps). x y (rows, cols), g (cols).
 * y == x allowed. */
fg_status fg_ref_rms_norm(float *y, const float *x, const float *g, int rows,
                          int cols, float eps);

/* y = silu(gate) * up elementwise, silu(a) = a / (1 + exp(-a)); n elements.
 * y may equal gate or up. */
fg_status fg_ref_silu_mul(float *y, const float *gate, const float *up, int n);

/* SwiGLU MLP: y = (silu(x @ w_gate) * (x @ w_up)) @ w_down.
 * x y (rows, hidden), w_gate w_up (hidden, inner), w_down (inner, hidden). */
fg_status fg_ref_swiglu_ffn(float *y, const float *x, const float *w_gate,
                            const float *w_up, const float *w_down, int rows,
                            int hidden, int inner);

/* Naive 16-bit references (docs/contract.md §32, the 16-bit rule) --------
 *
 * The baseline a 16-bit GPU result is measured against: the same
 * computation done "naively in the 16-bit type", as a framework running the
 * model in bf16/f16 would: every op's result rounded to dtype (bf16 or f16,
 * round to nearest even) at its boundary, products accumulated in fp32
 * inside an op. Inputs and outputs are float arrays holding values of dtype
 * (inputs are expected to be rounded already; outputs are rounded). Same
 * shapes and argument checks as the exact function of the same name;
 * FG_ERR_INVALID_ARG for a dtype other than bf16 / f16. */

/* fg_ref_gqa in 16-bit: s = round(q . k) (fp32 dot), s = round(s / sqrt(d)),
 * p = round(softmax(s)) (softmax in fp32 over the visible keys), out =
 * round(sum p v) (fp32 sum). */
fg_status fg_ref_gqa_naive16(fg_dtype dtype, float *out, const float *q, const float *k,
                             const float *v, int n_q_head, int n_kv_head, int q_len,
                             int kv_len, int head_dim);

/* The other ops (x, y... as in the exact function of the same name):
 *  softmax: round(softmax(x)), statistics in fp32;
 *  split / merge heads: the copy itself (nothing to round);
 *  rope: cos and sin of the exact angle rounded to dtype, every product and
 *    the sum / difference rounded: round(round(a round(cos)) -
 *    round(b round(sin)));
 *  linear: round(x . w) (fp32 dot in index order), then round(. + b);
 *  gelu: round(gelu(x)) (fp32 tanh form); bias_gelu: round(gelu(round(x +
 *    b))), b (cols) or NULL, x y (rows, cols);
 *  layer_norm / rms_norm: x fp32 (the residual stream), mean and variance
 *    in fp32, n = round(normalised x), y = round(round(n g) + b);
 *  silu_mul: round(round(silu(gate)) up);
 *  ffn / swiglu_ffn: the naive linear and activation above, one after the
 *    other (every intermediate tensor rounded). */
fg_status fg_ref_softmax_naive16(fg_dtype dtype, float *y, const float *x, int outer, int n,
                                 int inner);
fg_status fg_ref_split_heads_naive16(fg_dtype dtype, float *out, const float *x, int seq,
                                     int n_head, int head_dim);
fg_status fg_ref_merge_heads_naive16(fg_dtype dtype, float *out, const float *x, int n_head,
                                     int seq, int head_dim);
fg_status fg_ref_rope_naive16(fg_dtype dtype, float *x, int n_head, int seq, int head_dim,
                              const int *pos, double base);
fg_status fg_ref_linear_naive16(fg_dtype dtype, float *y, const float *x, const float *w,
                                const float *b, int rows, int in, int out);
fg_status fg_ref_gelu_naive16(fg_dtype dtype, float *y, const float *x, int n);
fg_status fg_ref_bias_gelu_naive16(fg_dtype dtype, float *y, const float *x, const float *b,
                                   int rows, int cols);
fg_status fg_ref_layer_norm_naive16(fg_dtype dtype, float *y, const float *x, const float *g,
                                    const float *b, int rows, int cols, float eps);
fg_status fg_ref_rms_norm_naive16(fg_dtype dtype, float *y, const float *x, const float *g,
                                  int rows, int cols, float eps);
fg_status fg_ref_silu_mul_naive16(fg_dtype dtype, float *y, const float *gate, const float *up,
                                  int n);
fg_status fg_ref_ffn_naive16(fg_dtype dtype, float *y, const float *x, const float *w_fc,
                             const float *b_fc, const float *w_proj, const float *b_proj,
                             int rows, int hidden, int inner);
fg_status fg_ref_swiglu_ffn_naive16(fg_dtype dtype, float *y, const float *x,
                                    const float *w_gate, const float *w_up, const float *w_down,
                                    int rows, int hidden, int inner);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_OPS_H */
