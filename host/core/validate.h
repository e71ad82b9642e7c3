/* Argument validation of every operation, shared by the CPU reference and
 * the CUDA path so that both refuse exactly the same inputs with the same
 * messages. `fn` is the public function being called. Pointers are only
 * checked for NULL and for overlap (host and device pointers share one
 * address space), never dereferenced. */
#ifndef FLASHGPT_HOST_VALIDATE_H
#define FLASHGPT_HOST_VALIDATE_H

#include "check.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y (outer, n, inner) from x; y == x allowed. */
fg_status fgi_check_softmax(const char *fn, const float *y, const float *x,
                            int outer, int n, int inner);
fg_status fgi_check_causal_mask(const char *fn, const uint8_t *mask, int q_len,
                                int kv_len);
/* out (n_q_head, q_len, d) from q and k, v (n_kv_head, kv_len, d). */
fg_status fgi_check_attention(const char *fn, const float *out, const float *q,
                              const float *k, const float *v, int n_q_head,
                              int n_kv_head, int q_len, int kv_len, int head_dim);
/* out (b, a, d) from x (a, b, d). */
fg_status fgi_check_swap_heads(const char *fn, const float *out, const float *x,
                               int a, int b, int head_dim, const char *a_name,
                               const char *b_name);
/* x (n_head, seq, head_dim), even head_dim, finite base > 0, pos not NULL. */
fg_status fgi_check_rope(const char *fn, const float *x, int n_head, int seq,
                         int head_dim, const int *pos, double base);
/* Every one of the seq host positions is >= 0. */
fg_status fgi_check_positions(const char *fn, const int *pos, int seq);
/* y (rows, out) = x (rows, in) @ w (in, out). */
fg_status fgi_check_linear(const char *fn, const float *y, const float *x,
                           const float *w, int rows, int in, int out);
/* n elements; y == x allowed. */
fg_status fgi_check_elementwise(const char *fn, const float *y, const char *x_name,
                                const float *x, int n);
/* Row-wise norm of x (rows, cols) with gain g (cols); y == x allowed. */
fg_status fgi_check_rowwise(const char *fn, const float *y, const float *x,
                            const float *g, int rows, int cols, float eps);
/* GELU MLP: w_fc (hidden, inner), w_proj (inner, hidden). */
fg_status fgi_check_ffn(const char *fn, const float *y, const float *x,
                        const float *w_fc, const float *w_proj, int rows,
                        int hidden, int inner);
/* SwiGLU MLP: w_gate w_up (hidden, inner), w_down (inner, hidden). */
fg_status fgi_check_swiglu(const char *fn, const float *y, const float *x,
                           const float *w_gate, const float *w_up,
                           const float *w_down, int rows, int hidden, int inner);

/* The same checks for elements of es bytes (the typed CUDA ops,
 * flashgpt/cuda.h): overlap is judged on es * elements. The fp32 functions
 * above are these with es = sizeof(float). rowwise: y and x may differ in
 * size (a 16-bit y from an fp32 x), and y == x is allowed only when they
 * do not. */
fg_status fgi_check_softmax_sized(const char *fn, size_t es, const void *y, const void *x,
                                  int outer, int n, int inner);
fg_status fgi_check_attention_sized(const char *fn, size_t es, const void *out, const void *q,
                                    const void *k, const void *v, int n_q_head, int n_kv_head,
                                    int q_len, int kv_len, int head_dim);
fg_status fgi_check_swap_heads_sized(const char *fn, size_t es, const void *out, const void *x,
                                     int a, int b, int head_dim, const char *a_name,
                                     const char *b_name);
fg_status fgi_check_linear_sized(const char *fn, size_t es, const void *y, const void *x,
                                 const void *w, int rows, int in, int out);
fg_status fgi_check_elementwise_sized(const char *fn, size_t es, const void *y,
                                      const char *x_name, const void *x, int n);
fg_status fgi_check_rowwise_sized(const char *fn, size_t y_es, const void *y, size_t x_es,
                                  const void *x, const void *g, int rows, int cols, float eps);
fg_status fgi_check_ffn_sized(const char *fn, size_t es, const void *y, const void *x,
                              const void *w_fc, const void *w_proj, int rows, int hidden,
                              int inner);
fg_status fgi_check_swiglu_sized(const char *fn, size_t es, const void *y, const void *x,
                                 const void *w_gate, const void *w_up, const void *w_down,
                                 int rows, int hidden, int inner);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_HOST_VALIDATE_H */
