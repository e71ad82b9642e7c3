/* CPU reference: linear, GELU, LayerNorm, the GPT-2 MLP, and the Llama
 * family's RMSNorm, SiLU-multiply and SwiGLU MLP (docs/contract.md §12-§14).
 *
 * Weights are (in, out): y = x @ w + b. Norms use the biased variance (mean
 * of squares about the mean) computed in two passes in double; GELU is the
 * tanh form GPT-2 was trained with. */
#include "validate.h"
#include "flashgpt/ops.h"
#include "ref_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* 0.5 * (1 + tanh(z)) == 1 / (1 + exp(-2z)): the same function without the
 * cancellation of 1 + tanh(z) in the far negative tail. */
double fgi_gelu(double x)
{
    const double k = 0.7978845608028654; /* sqrt(2/pi) */
    const double z = k * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * z));
}

double fgi_silu(double x) { return x / (1.0 + exp(-x)); }

void fgi_layer_norm_row(float *y, const float *x, const float *g,
                        const float *b, int cols, float eps)
{
    double mean = 0.0, var = 0.0;
    for (int c = 0; c < cols; c++) mean += x[c];
    mean /= cols;
    for (int c = 0; c < cols; c++) var += ((double)x[c] - mean) * ((double)x[c] - mean);
    var /= cols;
    const double inv_std = 1.0 / sqrt(var + (double)eps);
    for (int c = 0; c < cols; c++) {
        double norm = ((double)x[c] - mean) * inv_std;
        y[c] = (float)(g[c] * norm + (b ? b[c] : 0.0));
    }
}

void fgi_rms_norm_row(float *y, const float *x, const float *g, int cols,
                      float eps)
{
    double ms = 0.0;
    for (int c = 0; c < cols; c++) ms += (double)x[c] * x[c];
    const double inv_rms = 1.0 / sqrt(ms / cols + (double)eps);
    for (int c = 0; c < cols; c++) y[c] = (float)(g[c] * (x[c] * inv_rms));
}

void fgi_linear(float *y, const float *x, const float *w, const float *b,
                int rows, int in, int out, double *acc)
{
    for (size_t r = 0; r < (size_t)rows; r++) {
        const float *xr = x + r * in;
        for (int o = 0; o < out; o++) acc[o] = b ? b[o] : 0.0;
        for (size_t i = 0; i < (size_t)in; i++) {
            const double xi = xr[i];
            const float *wi = w + i * out;
            for (int o = 0; o < out; o++) acc[o] += xi * wi[o];
        }
        float *yr = y + r * out;
        for (int o = 0; o < out; o++) yr[o] = (float)acc[o];
    }
}

void fgi_linear_transposed(float *y, const float *x, const float *wt, int rows,
                           int in, int out)
{
    for (size_t r = 0; r < (size_t)rows; r++) {
        const float *xr = x + r * in;
        for (size_t o = 0; o < (size_t)out; o++) {
            const float *wo = wt + o * in;
            double s = 0.0;
            for (int i = 0; i < in; i++) s += (double)xr[i] * wo[i];
            y[r * out + o] = (float)s;
        }
    }
}

void fgi_gelu_mlp(float *y, const float *x, const float *w_fc, const float *b_fc,
                  const float *w_proj, const float *b_proj, int rows, int hidden,
                  int inner, float *h, double *acc)
{
    const size_t n = (size_t)rows * inner;
    fgi_linear(h, x, w_fc, b_fc, rows, hidden, inner, acc);
    for (size_t i = 0; i < n; i++) h[i] = (float)fgi_gelu(h[i]);
    fgi_linear(y, h, w_proj, b_proj, rows, inner, hidden, acc);
}

void fgi_swiglu_mlp(float *y, const float *x, const float *w_gate,
                    const float *w_up, const float *w_down, int rows, int hidden,
                    int inner, float *h, double *acc)
{
    const size_t n = (size_t)rows * inner;
    float *gate = h, *up = h + n;
    fgi_linear(gate, x, w_gate, NULL, rows, hidden, inner, acc);
    fgi_linear(up, x, w_up, NULL, rows, hidden, inner, acc);
    for (size_t i = 0; i < n; i++) gate[i] = (float)(fgi_silu(gate[i]) * up[i]);
    fgi_linear(y, gate, w_down, NULL, rows, inner, hidden, acc);
}

fg_status fg_ref_linear(float *y, const float *x, const float *w, const float *b,
                        int rows, int in, int out)
{
    static const char fn[] = "fg_ref_linear";
    FGI_TRY(fgi_check_linear(fn, y, x, w, rows, in, out));
    double *acc;
    FGI_TRY(fgi_alloc(fn, (void **)&acc, (size_t)out, sizeof(double)));
    fgi_linear(y, x, w, b, rows, in, out, acc);
    free(acc);
    return FG_OK;
}

fg_status fg_ref_gelu(float *y, const float *x, int n)
{
    FGI_TRY(fgi_check_elementwise("fg_ref_gelu", y, "x", x, n));
    for (int i = 0; i < n; i++) y[i] = (float)fgi_gelu(x[i]);
    return FG_OK;
}

fg_status fg_ref_silu_mul(float *y, const float *gate, const float *up, int n)
{
    static const char fn[] = "fg_ref_silu_mul";
    FGI_TRY(fgi_check_elementwise(fn, y, "gate", gate, n));
    FGI_TRY(fgi_check_elementwise(fn, y, "up", up, n));
    for (int i = 0; i < n; i++) y[i] = (float)(fgi_silu(gate[i]) * up[i]);
    return FG_OK;
}

fg_status fg_ref_layer_norm(float *y, const float *x, const float *g,
                            const float *b, int rows, int cols, float eps)
{
    FGI_TRY(fgi_check_rowwise("fg_ref_layer_norm", y, x, g, rows, cols, eps));
    for (size_t r = 0; r < (size_t)rows; r++)
        fgi_layer_norm_row(y + r * cols, x + r * cols, g, b, cols, eps);
    return FG_OK;
}

fg_status fg_ref_rms_norm(float *y, const float *x, const float *g, int rows,
                          int cols, float eps)
{
    FGI_TRY(fgi_check_rowwise("fg_ref_rms_norm", y, x, g, rows, cols, eps));
    for (size_t r = 0; r < (size_t)rows; r++)
        fgi_rms_norm_row(y + r * cols, x + r * cols, g, cols, eps);
    return FG_OK;
}

/* Workspace for an MLP: the (rows, inner) hidden activations (two of them for
 * SwiGLU) and one linear accumulator. */
static fg_status mlp_workspace(const char *fn, float **hidden, int n_hidden,
                               double **acc, int rows, int hidden_dim, int inner)
{
    size_t h_elems;
    FGI_TRY(fgi_check_elems(fn, "hidden activations (rows*inner)", &h_elems, 3,
                          (long long)rows, (long long)inner, (long long)n_hidden));
    FGI_TRY(fgi_alloc(fn, (void **)hidden, h_elems, sizeof(float)));
    fg_status st = fgi_alloc(fn, (void **)acc,
                            (size_t)(inner > hidden_dim ? inner : hidden_dim),
                            sizeof(double));
    if (st != FG_OK) free(*hidden);
    return st;
}

fg_status fg_ref_ffn(float *y, const float *x, const float *w_fc,
                     const float *b_fc, const float *w_proj,
                     const float *b_proj, int rows, int hidden, int inner)
{
    static const char fn[] = "fg_ref_ffn";
    FGI_TRY(fgi_check_ffn(fn, y, x, w_fc, w_proj, rows, hidden, inner));
    float *h;
    double *acc;
    FGI_TRY(mlp_workspace(fn, &h, 1, &acc, rows, hidden, inner));
    fgi_gelu_mlp(y, x, w_fc, b_fc, w_proj, b_proj, rows, hidden, inner, h, acc);
    free(acc);
    free(h);
    return FG_OK;
}

fg_status fg_ref_swiglu_ffn(float *y, const float *x, const float *w_gate,
                            const float *w_up, const float *w_down, int rows,
                            int hidden, int inner)
{
    static const char fn[] = "fg_ref_swiglu_ffn";
    FGI_TRY(fgi_check_swiglu(fn, y, x, w_gate, w_up, w_down, rows, hidden, inner));
    float *h;
    double *acc;
    FGI_TRY(mlp_workspace(fn, &h, 2, &acc, rows, hidden, inner));
    fgi_swiglu_mlp(y, x, w_gate, w_up, w_down, rows, hidden, inner, h, acc);
    free(acc);
    free(h);
    return FG_OK;
}
