/* Naive 16-bit references (flashgpt/ops.h, "Naive 16-bit references";
 * docs/contract.md §32).
 *
 * What: each op computed as a framework running in bf16 / f16 computes it,
 * so that the error of that computation against the exact reference is the
 * yardstick of the 16-bit rule. Conventions: values of dtype travel in
 * float arrays; every op boundary rounds with fg_dtype_round; sums inside
 * an op are fp32 in index order (a fixed, simple order, not a clever one). */
#include "flashgpt/decoder.h"
#include "flashgpt/ops.h"
#include "ref_internal.h"
#include "validate.h"

#include <math.h>
#include <stdlib.h>

/* FG_ERR_INVALID_ARG unless dtype is a 16-bit type. */
static fg_status check_dtype16(const char *fn, fg_dtype dtype)
{
    if (dtype == FG_DTYPE_BF16 || dtype == FG_DTYPE_F16) return FG_OK;
    return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'dtype' must be bf16 or f16, not %s (%d)",
                    fn, fg_dtype_name(dtype), (int)dtype);
}

/* Causal GQA; with window >= 1 a query sees only its last `window` keys. */
static fg_status gqa16(const char *fn, fg_dtype dtype, float *out, const float *q,
                       const float *k, const float *v, int n_q_head, int n_kv_head, int q_len,
                       int kv_len, int head_dim, int window)
{
    FGI_TRY(check_dtype16(fn, dtype));
    FGI_TRY(fgi_check_min(fn, "window", window, 0));
    FGI_TRY(fgi_check_attention(fn, out, q, k, v, n_q_head, n_kv_head, q_len, kv_len,
                                head_dim));
    float *p;
    FGI_TRY(fgi_alloc(fn, (void **)&p, (size_t)kv_len, sizeof(float)));
    const float scale = (float)(1.0 / sqrt((double)head_dim));
    const int group = n_q_head / n_kv_head, shift = kv_len - q_len, d = head_dim;
    for (int h = 0; h < n_q_head; h++) {
        const float *kh = k + (size_t)(h / group) * kv_len * d;
        const float *vh = v + (size_t)(h / group) * kv_len * d;
        for (int i = 0; i < q_len; i++) {
            const float *qi = q + ((size_t)h * q_len + i) * d;
            const int visible = i + shift + 1; /* bottom-right causal */
            const int first = window > 0 && visible > window ? visible - window : 0;
            float max = -INFINITY, sum = 0.0f;
            for (int j = first; j < visible; j++) {
                float s = 0.0f;
                for (int c = 0; c < d; c++) s += qi[c] * kh[(size_t)j * d + c];
                p[j] = fg_dtype_round(dtype, fg_dtype_round(dtype, s) * scale);
                max = fmaxf(max, p[j]);
            }
            for (int j = first; j < visible; j++) {
                p[j] = expf(p[j] - max);
                sum += p[j];
            }
            for (int j = first; j < visible; j++) p[j] = fg_dtype_round(dtype, p[j] / sum);
            float *oi = out + ((size_t)h * q_len + i) * d;
            for (int c = 0; c < d; c++) {
                float acc = 0.0f;
                for (int j = first; j < visible; j++) acc += p[j] * vh[(size_t)j * d + c];
                oi[c] = fg_dtype_round(dtype, acc);
            }
        }
    }
    free(p);
    return FG_OK;
}

fg_status fg_ref_gqa_naive16(fg_dtype dtype, float *out, const float *q, const float *k,
                             const float *v, int n_q_head, int n_kv_head, int q_len,
                             int kv_len, int head_dim)
{
    return gqa16("fg_ref_gqa_naive16", dtype, out, q, k, v, n_q_head, n_kv_head, q_len, kv_len,
                 head_dim, 0);
}

fg_status fgi_ref_gqa_window_naive16(fg_dtype dtype, float *out, const float *q, const float *k,
                                     const float *v, int n_q_head, int n_kv_head, int q_len,
                                     int kv_len, int head_dim, int window)
{
    return gqa16("fgi_ref_gqa_window_naive16", dtype, out, q, k, v, n_q_head, n_kv_head, q_len,
                 kv_len, head_dim, window);
}

/* The tanh GELU and SiLU of the exact reference, in fp32 (a framework's
 * activation kernels widen 16-bit inputs to fp32 and round the result). */
static float gelu_f32(float x)
{
    const float z = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(z));
}

static float silu_f32(float a) { return a / (1.0f + expf(-a)); }

fg_status fg_ref_softmax_naive16(fg_dtype dtype, float *y, const float *x, int outer, int n,
                                 int inner)
{
    static const char fn[] = "fg_ref_softmax_naive16";
    FGI_TRY(check_dtype16(fn, dtype));
    FGI_TRY(fgi_check_softmax(fn, y, x, outer, n, inner));
    FGI_TRY(fg_ref_softmax(y, x, outer, n, inner));
    const size_t total = (size_t)outer * (size_t)n * (size_t)inner;
    for (size_t i = 0; i < total; i++) y[i] = fg_dtype_round(dtype, y[i]);
    return FG_OK;
}

fg_status fg_ref_split_heads_naive16(fg_dtype dtype, float *out, const float *x, int seq,
                                     int n_head, int head_dim)
{
    FGI_TRY(check_dtype16("fg_ref_split_heads_naive16", dtype));
    return fg_ref_split_heads(out, x, seq, n_head, head_dim); /* a copy: nothing to round */
}

fg_status fg_ref_merge_heads_naive16(fg_dtype dtype, float *out, const float *x, int n_head,
                                     int seq, int head_dim)
{
    FGI_TRY(check_dtype16("fg_ref_merge_heads_naive16", dtype));
    return fg_ref_merge_heads(out, x, n_head, seq, head_dim);
}

/* RoPE with the inverse frequencies of cfg (scaled RoPE) or, for a NULL
 * cfg, base^(-2j/d), each angle as the exact reference takes it. */
static fg_status rope16(const char *fn, fg_dtype dtype, float *x, int n_head, int seq,
                        int head_dim, const int *pos, double base, const fg_config *cfg)
{
    FGI_TRY(check_dtype16(fn, dtype));
    FGI_TRY(fgi_check_rope(fn, x, n_head, seq, head_dim, pos, base));
    FGI_TRY(fgi_check_positions(fn, pos, seq));
    for (int h = 0; h < n_head; h++)
        for (int t = 0; t < seq; t++) {
            float *row = x + ((size_t)h * seq + t) * head_dim;
            for (int j = 0; j < head_dim / 2; j++) {
                /* the angle as the exact reference takes it; cos and sin
                 * tables stored in dtype */
                const double theta =
                    cfg != NULL ? (double)pos[t] * fg_config_rope_inv_freq(cfg, j)
                                : pos[t] * pow(base, -2.0 * j / (double)head_dim);
                const float c = fg_dtype_round(dtype, (float)cos(theta));
                const float s = fg_dtype_round(dtype, (float)sin(theta));
                const float a = row[2 * j], b = row[2 * j + 1];
                const float ac = fg_dtype_round(dtype, a * c), bs = fg_dtype_round(dtype, b * s);
                const float bc = fg_dtype_round(dtype, b * c), as = fg_dtype_round(dtype, a * s);
                row[2 * j] = fg_dtype_round(dtype, ac - bs);
                row[2 * j + 1] = fg_dtype_round(dtype, bc + as);
            }
        }
    return FG_OK;
}

fg_status fg_ref_rope_naive16(fg_dtype dtype, float *x, int n_head, int seq, int head_dim,
                              const int *pos, double base)
{
    return rope16("fg_ref_rope_naive16", dtype, x, n_head, seq, head_dim, pos, base, NULL);
}

fg_status fgi_ref_rope_cfg_naive16(fg_dtype dtype, float *x, int n_head, int seq,
                                   int head_dim, const int *pos, const fg_config *cfg)
{
    return rope16("fgi_ref_rope_cfg_naive16", dtype, x, n_head, seq, head_dim, pos,
                  cfg->rope_base, cfg);
}

/* y = round(round(x w) + b): the matmul's result is stored, then the bias
 * is added as a second op. */
static void linear16(fg_dtype dtype, float *y, const float *x, const float *w, const float *b,
                     int rows, int in, int out)
{
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            float acc = 0.0f;
            for (int i = 0; i < in; i++) acc += x[(size_t)r * in + i] * w[(size_t)i * out + o];
            float v = fg_dtype_round(dtype, acc);
            if (b) v = fg_dtype_round(dtype, v + b[o]);
            y[(size_t)r * out + o] = v;
        }
}

fg_status fg_ref_linear_naive16(fg_dtype dtype, float *y, const float *x, const float *w,
                                const float *b, int rows, int in, int out)
{
    static const char fn[] = "fg_ref_linear_naive16";
    FGI_TRY(check_dtype16(fn, dtype));
    FGI_TRY(fgi_check_linear(fn, y, x, w, rows, in, out));
    linear16(dtype, y, x, w, b, rows, in, out);
    return FG_OK;
}

fg_status fg_ref_gelu_naive16(fg_dtype dtype, float *y, const float *x, int n)
{
    static const char fn[] = "fg_ref_gelu_naive16";
    FGI_TRY(check_dtype16(fn, dtype));
    FGI_TRY(fgi_check_elementwise(fn, y, "x", x, n));
    for (int i = 0; i < n; i++) y[i] = fg_dtype_round(dtype, gelu_f32(x[i]));
    return FG_OK;
}

fg_status fg_ref_bias_gelu_naive16(fg_dtype dtype, float *y, const float *x, const float *b,
                                   int rows, int cols)
{
    static const char fn[] = "fg_ref_bias_gelu_naive16";
    FGI_TRY(check_dtype16(fn, dtype));
    size_t elems;
    FGI_TRY(fgi_check_ptr(fn, "y", y));
    FGI_TRY(fgi_check_ptr(fn, "x", x));
    FGI_TRY(fgi_check_min(fn, "rows", rows, 1));
    FGI_TRY(fgi_check_min(fn, "cols", cols, 1));
    FGI_TRY(fgi_check_elems(fn, "x (rows*cols)", &elems, 2, (long long)rows, (long long)cols));
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            const size_t e = (size_t)r * cols + c;
            const float v = b ? fg_dtype_round(dtype, x[e] + b[c]) : x[e];
            y[e] = fg_dtype_round(dtype, gelu_f32(v));
        }
    return FG_OK;
}

/* The norms: x is fp32 (the residual stream); statistics in fp32, the
 * normalised row rounded, then each affine op rounded. */
static void norm16(fg_dtype dtype, float *y, const float *x, const float *g, const float *b,
                   int rows, int cols, float eps, int rms)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        float *yr = y + (size_t)r * cols;
        float mean = 0.0f, ss = 0.0f;
        if (!rms) {
            for (int c = 0; c < cols; c++) mean += xr[c];
            mean /= (float)cols;
        }
        for (int c = 0; c < cols; c++) ss += (xr[c] - mean) * (xr[c] - mean);
        const float inv = 1.0f / sqrtf(ss / (float)cols + eps);
        for (int c = 0; c < cols; c++) {
            const float n = fg_dtype_round(dtype, (xr[c] - mean) * inv);
            float v = fg_dtype_round(dtype, n * g[c]);
            if (b) v = fg_dtype_round(dtype, v + b[c]);
            yr[c] = v;
        }
    }
}

fg_status fg_ref_layer_norm_naive16(fg_dtype dtype, float *y, const float *x, const float *g,
                                    const float *b, int rows, int cols, float eps)
{
    static const char fn[] = "fg_ref_layer_norm_naive16";
    FGI_TRY(check_dtype16(fn, dtype));
    FGI_TRY(fgi_check_rowwise(fn, y, x, g, rows, cols, eps));
    norm16(dtype, y, x, g, b, rows, cols, eps, 0);
    return FG_OK;
}

fg_status fg_ref_rms_norm_naive16(fg_dtype dtype, float *y, const float *x, const float *g,
                                  int rows, int cols, float eps)
{
    static const char fn[] = "fg_ref_rms_norm_naive16";
    FGI_TRY(check_dtype16(fn, dtype));
    FGI_TRY(fgi_check_rowwise(fn, y, x, g, rows, cols, eps));
    norm16(dtype, y, x, g, NULL, rows, cols, eps, 1);
    return FG_OK;
}

fg_status fg_ref_silu_mul_naive16(fg_dtype dtype, float *y, const float *gate, const float *up,
                                  int n)
{
    static const char fn[] = "fg_ref_silu_mul_naive16";
    FGI_TRY(check_dtype16(fn, dtype));
    FGI_TRY(fgi_check_elementwise(fn, y, "gate", gate, n));
    FGI_TRY(fgi_check_elementwise(fn, y, "up", up, n));
    for (int i = 0; i < n; i++)
        y[i] = fg_dtype_round(dtype, fg_dtype_round(dtype, silu_f32(gate[i])) * up[i]);
    return FG_OK;
}

fg_status fg_ref_ffn_naive16(fg_dtype dtype, float *y, const float *x, const float *w_fc,
                             const float *b_fc, const float *w_proj, const float *b_proj,
                             int rows, int hidden, int inner)
{
    static const char fn[] = "fg_ref_ffn_naive16";
    FGI_TRY(check_dtype16(fn, dtype));
    FGI_TRY(fgi_check_ffn(fn, y, x, w_fc, w_proj, rows, hidden, inner));
    float *h;
    FGI_TRY(fgi_alloc(fn, (void **)&h, (size_t)rows * (size_t)inner, sizeof(float)));
    linear16(dtype, h, x, w_fc, b_fc, rows, hidden, inner);
    for (size_t i = 0; i < (size_t)rows * (size_t)inner; i++)
        h[i] = fg_dtype_round(dtype, gelu_f32(h[i]));
    linear16(dtype, y, h, w_proj, b_proj, rows, inner, hidden);
    free(h);
    return FG_OK;
}

fg_status fg_ref_swiglu_ffn_naive16(fg_dtype dtype, float *y, const float *x,
                                    const float *w_gate, const float *w_up, const float *w_down,
                                    int rows, int hidden, int inner)
{
    static const char fn[] = "fg_ref_swiglu_ffn_naive16";
    FGI_TRY(check_dtype16(fn, dtype));
    FGI_TRY(fgi_check_swiglu(fn, y, x, w_gate, w_up, w_down, rows, hidden, inner));
    const size_t n = (size_t)rows * (size_t)inner;
    float *g;
    FGI_TRY(fgi_alloc(fn, (void **)&g, 2 * n, sizeof(float)));
    float *u = g + n;
    linear16(dtype, g, x, w_gate, NULL, rows, hidden, inner);
    linear16(dtype, u, x, w_up, NULL, rows, hidden, inner);
    for (size_t i = 0; i < n; i++)
        g[i] = fg_dtype_round(dtype, fg_dtype_round(dtype, silu_f32(g[i])) * u[i]);
    linear16(dtype, y, g, w_down, NULL, rows, inner, hidden);
    free(g);
    return FG_OK;
}
