/* Argument validation shared by fg_ref_* and fg_cuda_* (see validate.h). */
#include "validate.h"

#include <math.h>

fg_status fgi_check_softmax(const char *fn, const float *y, const float *x,
                            int outer, int n, int inner)
{
    return fgi_check_softmax_sized(fn, sizeof(float), y, x, outer, n, inner);
}

fg_status fgi_check_softmax_sized(const char *fn, size_t es, const void *y, const void *x,
                                  int outer, int n, int inner)
{
    size_t elems;
    FGI_TRY(fgi_check_ptr(fn, "y", y));
    FGI_TRY(fgi_check_ptr(fn, "x", x));
    FGI_TRY(fgi_check_min(fn, "outer", outer, 1));
    FGI_TRY(fgi_check_min(fn, "n", n, 1));
    FGI_TRY(fgi_check_min(fn, "inner", inner, 1));
    FGI_TRY(fgi_check_elems(fn, "x (outer*n*inner)", &elems, 3, (long long)outer,
                          (long long)n, (long long)inner));
    if (y == x) return FG_OK;
    return fgi_check_disjoint(fn, "y", y, es * elems, "x", x, es * elems);
}

fg_status fgi_check_causal_mask(const char *fn, const uint8_t *mask, int q_len,
                                int kv_len)
{
    size_t elems;
    FGI_TRY(fgi_check_ptr(fn, "mask", mask));
    FGI_TRY(fgi_check_attention_dims(fn, q_len, kv_len, 1));
    return fgi_check_elems(fn, "mask (q_len*kv_len)", &elems, 2, (long long)q_len,
                          (long long)kv_len);
}

fg_status fgi_check_attention(const char *fn, const float *out, const float *q,
                              const float *k, const float *v, int n_q_head,
                              int n_kv_head, int q_len, int kv_len, int head_dim)
{
    return fgi_check_attention_sized(fn, sizeof(float), out, q, k, v, n_q_head, n_kv_head,
                                     q_len, kv_len, head_dim);
}

fg_status fgi_check_attention_sized(const char *fn, size_t es, const void *out, const void *q,
                                    const void *k, const void *v, int n_q_head, int n_kv_head,
                                    int q_len, int kv_len, int head_dim)
{
    size_t q_elems, kv_elems;
    FGI_TRY(fgi_check_ptr(fn, "out", out));
    FGI_TRY(fgi_check_ptr(fn, "q", q));
    FGI_TRY(fgi_check_ptr(fn, "k", k));
    FGI_TRY(fgi_check_ptr(fn, "v", v));
    FGI_TRY(fgi_check_min(fn, "n_q_head", n_q_head, 1));
    FGI_TRY(fgi_check_min(fn, "n_kv_head", n_kv_head, 1));
    if (n_q_head % n_kv_head != 0)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: n_q_head (%d) must be a multiple of n_kv_head (%d)",
                       fn, n_q_head, n_kv_head);
    FGI_TRY(fgi_check_attention_dims(fn, q_len, kv_len, head_dim));
    FGI_TRY(fgi_check_elems(fn, "q (n_q_head*q_len*head_dim)", &q_elems, 3,
                          (long long)n_q_head, (long long)q_len, (long long)head_dim));
    FGI_TRY(fgi_check_elems(fn, "k (n_kv_head*kv_len*head_dim)", &kv_elems, 3,
                          (long long)n_kv_head, (long long)kv_len,
                          (long long)head_dim));
    FGI_TRY(fgi_check_disjoint(fn, "out", out, es * q_elems, "q", q, es * q_elems));
    FGI_TRY(fgi_check_disjoint(fn, "out", out, es * q_elems, "k", k, es * kv_elems));
    return fgi_check_disjoint(fn, "out", out, es * q_elems, "v", v, es * kv_elems);
}

fg_status fgi_check_swap_heads(const char *fn, const float *out, const float *x,
                               int a, int b, int head_dim, const char *a_name,
                               const char *b_name)
{
    return fgi_check_swap_heads_sized(fn, sizeof(float), out, x, a, b, head_dim, a_name,
                                      b_name);
}

fg_status fgi_check_swap_heads_sized(const char *fn, size_t es, const void *out, const void *x,
                                     int a, int b, int head_dim, const char *a_name,
                                     const char *b_name)
{
    size_t elems;
    FGI_TRY(fgi_check_ptr(fn, "out", out));
    FGI_TRY(fgi_check_ptr(fn, "x", x));
    FGI_TRY(fgi_check_min(fn, a_name, a, 1));
    FGI_TRY(fgi_check_min(fn, b_name, b, 1));
    FGI_TRY(fgi_check_min(fn, "head_dim", head_dim, 1));
    FGI_TRY(fgi_check_elems(fn, "x", &elems, 3, (long long)a, (long long)b,
                          (long long)head_dim));
    return fgi_check_disjoint(fn, "out", out, es * elems, "x", x, es * elems);
}

fg_status fgi_check_rope(const char *fn, const float *x, int n_head, int seq,
                         int head_dim, const int *pos, double base)
{
    size_t elems;
    FGI_TRY(fgi_check_ptr(fn, "x", x));
    FGI_TRY(fgi_check_ptr(fn, "pos", pos));
    FGI_TRY(fgi_check_min(fn, "n_head", n_head, 1));
    FGI_TRY(fgi_check_min(fn, "seq", seq, 1));
    FGI_TRY(fgi_check_min(fn, "head_dim", head_dim, 2));
    if (head_dim % 2 != 0)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'head_dim' must be even (got %d)", fn, head_dim);
    if (!(base > 0.0) || !isfinite(base))
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'base' must be finite and > 0 (got %g)", fn, base);
    return fgi_check_elems(fn, "x (n_head*seq*head_dim)", &elems, 3,
                          (long long)n_head, (long long)seq, (long long)head_dim);
}

fg_status fgi_check_positions(const char *fn, const int *pos, int seq)
{
    for (int t = 0; t < seq; t++)
        if (pos[t] < 0)
            return fgi_fail(FG_ERR_INVALID_ARG,
                           "%s: argument 'pos[%d]' must be >= 0 (got %d)", fn, t,
                           pos[t]);
    return FG_OK;
}

/* y (rows, y_cols) computed from x (rows, x_cols); *y_elems = rows*y_cols. */
static fg_status check_rows_io(const char *fn, size_t es, const void *y, const void *x,
                               int rows, int x_cols, int y_cols, size_t *y_elems)
{
    size_t x_elems;
    FGI_TRY(fgi_check_ptr(fn, "y", y));
    FGI_TRY(fgi_check_ptr(fn, "x", x));
    FGI_TRY(fgi_check_min(fn, "rows", rows, 1));
    FGI_TRY(fgi_check_elems(fn, "x", &x_elems, 2, (long long)rows, (long long)x_cols));
    FGI_TRY(fgi_check_elems(fn, "y", y_elems, 2, (long long)rows, (long long)y_cols));
    return fgi_check_disjoint(fn, "y", y, es * *y_elems, "x", x, es * x_elems);
}

/* A weight w (in, out) that must not overlap the output y. */
static fg_status check_weight(const char *fn, size_t es, const char *name, const void *w,
                              int in, int out, const void *y, size_t y_elems)
{
    size_t w_elems;
    FGI_TRY(fgi_check_ptr(fn, name, w));
    FGI_TRY(fgi_check_elems(fn, name, &w_elems, 2, (long long)in, (long long)out));
    return fgi_check_disjoint(fn, "y", y, es * y_elems, name, w, es * w_elems);
}

fg_status fgi_check_linear(const char *fn, const float *y, const float *x,
                           const float *w, int rows, int in, int out)
{
    return fgi_check_linear_sized(fn, sizeof(float), y, x, w, rows, in, out);
}

fg_status fgi_check_linear_sized(const char *fn, size_t es, const void *y, const void *x,
                                 const void *w, int rows, int in, int out)
{
    size_t y_elems;
    FGI_TRY(fgi_check_min(fn, "in", in, 1));
    FGI_TRY(fgi_check_min(fn, "out", out, 1));
    FGI_TRY(check_rows_io(fn, es, y, x, rows, in, out, &y_elems));
    return check_weight(fn, es, "w", w, in, out, y, y_elems);
}

fg_status fgi_check_elementwise(const char *fn, const float *y, const char *x_name,
                                const float *x, int n)
{
    return fgi_check_elementwise_sized(fn, sizeof(float), y, x_name, x, n);
}

fg_status fgi_check_elementwise_sized(const char *fn, size_t es, const void *y,
                                      const char *x_name, const void *x, int n)
{
    FGI_TRY(fgi_check_ptr(fn, "y", y));
    FGI_TRY(fgi_check_ptr(fn, x_name, x));
    FGI_TRY(fgi_check_min(fn, "n", n, 1));
    if (y == x) return FG_OK;
    return fgi_check_disjoint(fn, "y", y, es * (size_t)n, x_name, x, es * (size_t)n);
}

fg_status fgi_check_rowwise(const char *fn, const float *y, const float *x,
                            const float *g, int rows, int cols, float eps)
{
    return fgi_check_rowwise_sized(fn, sizeof(float), y, sizeof(float), x, g, rows, cols, eps);
}

fg_status fgi_check_rowwise_sized(const char *fn, size_t y_es, const void *y, size_t x_es,
                                  const void *x, const void *g, int rows, int cols, float eps)
{
    size_t elems;
    FGI_TRY(fgi_check_ptr(fn, "y", y));
    FGI_TRY(fgi_check_ptr(fn, "x", x));
    FGI_TRY(fgi_check_ptr(fn, "g", g));
    FGI_TRY(fgi_check_min(fn, "rows", rows, 1));
    FGI_TRY(fgi_check_min(fn, "cols", cols, 1));
    if (!(eps >= 0.0f) || !isfinite(eps))
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'eps' must be finite and >= 0 (got %g)", fn,
                       (double)eps);
    FGI_TRY(fgi_check_elems(fn, "x (rows*cols)", &elems, 2, (long long)rows,
                          (long long)cols));
    if (y == x && y_es == x_es) return FG_OK;
    return fgi_check_disjoint(fn, "y", y, y_es * elems, "x", x, x_es * elems);
}

static fg_status check_mlp_io(const char *fn, size_t es, const void *y, const void *x,
                              int rows, int hidden, int inner, size_t *y_elems)
{
    size_t h_elems;
    FGI_TRY(fgi_check_min(fn, "hidden", hidden, 1));
    FGI_TRY(fgi_check_min(fn, "inner", inner, 1));
    FGI_TRY(check_rows_io(fn, es, y, x, rows, hidden, hidden, y_elems));
    /* the hidden activations, twice for SwiGLU */
    return fgi_check_elems(fn, "hidden activations (2*rows*inner)", &h_elems, 3,
                          (long long)rows, (long long)inner, 2LL);
}

fg_status fgi_check_ffn(const char *fn, const float *y, const float *x,
                        const float *w_fc, const float *w_proj, int rows,
                        int hidden, int inner)
{
    return fgi_check_ffn_sized(fn, sizeof(float), y, x, w_fc, w_proj, rows, hidden, inner);
}

fg_status fgi_check_ffn_sized(const char *fn, size_t es, const void *y, const void *x,
                              const void *w_fc, const void *w_proj, int rows, int hidden,
                              int inner)
{
    size_t y_elems;
    FGI_TRY(check_mlp_io(fn, es, y, x, rows, hidden, inner, &y_elems));
    FGI_TRY(check_weight(fn, es, "w_fc", w_fc, hidden, inner, y, y_elems));
    return check_weight(fn, es, "w_proj", w_proj, inner, hidden, y, y_elems);
}

fg_status fgi_check_swiglu(const char *fn, const float *y, const float *x,
                           const float *w_gate, const float *w_up,
                           const float *w_down, int rows, int hidden, int inner)
{
    return fgi_check_swiglu_sized(fn, sizeof(float), y, x, w_gate, w_up, w_down, rows, hidden,
                                  inner);
}

fg_status fgi_check_swiglu_sized(const char *fn, size_t es, const void *y, const void *x,
                                 const void *w_gate, const void *w_up, const void *w_down,
                                 int rows, int hidden, int inner)
{
    size_t y_elems;
    FGI_TRY(check_mlp_io(fn, es, y, x, rows, hidden, inner, &y_elems));
    FGI_TRY(check_weight(fn, es, "w_gate", w_gate, hidden, inner, y, y_elems));
    FGI_TRY(check_weight(fn, es, "w_up", w_up, hidden, inner, y, y_elems));
    return check_weight(fn, es, "w_down", w_down, inner, hidden, y, y_elems);
}
