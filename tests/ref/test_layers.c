/* Linear, GELU, LayerNorm, the GPT-2 MLP (docs/contract.md §12) and the Llama family's
 * RMSNorm, SiLU-multiply and SwiGLU MLP. */
#include "support.h"

#include <math.h>
#include <stdlib.h>

/* x (2, 3) @ w (3, 2) + b, worked by hand. */
Test(linear, hand_computed)
{
    const float x[6] = {1, 2, 3, -1, 0.5f, 2};
    const float w[6] = {1, -1, 0.5f, 2, -2, 1};
    const float b[2] = {0.25f, -0.5f};
    const float expect[4] = {1 * 1 + 2 * 0.5f + 3 * -2 + 0.25f, 1 * -1 + 2 * 2 + 3 * 1 - 0.5f,
                             -1 * 1 + 0.5f * 0.5f + 2 * -2 + 0.25f,
                             -1 * -1 + 0.5f * 2 + 2 * 1 - 0.5f};
    float y[4];
    cr_assert_eq(fg_ref_linear(y, x, w, b, 2, 3, 2), FG_OK);
    fgi_assert_close(y, expect, 4, 1e-7, 1e-7, 0, "linear");
}

/* Linear in x and the bias adds to every row. */
Test(linear, linearity_and_bias)
{
    fgi_rng rng = fgi_rng_make(30);
    for (int trial = 0; trial < 10; trial++) {
        const int rows = fgi_rng_int(&rng, 1, 7), in = fgi_rng_int(&rng, 1, 40),
                  out = fgi_rng_int(&rng, 1, 30);
        const size_t nx = (size_t)rows * in, ny = (size_t)rows * out;
        float *x1 = fgi_buf_normal(&rng, nx, 1.0), *x2 = fgi_buf_normal(&rng, nx, 1.0);
        float *w = fgi_buf_normal(&rng, (size_t)in * out, 1.0), *b = fgi_buf_normal(&rng, out, 1.0);
        float *sum = fgi_buf_nan(nx);
        for (size_t i = 0; i < nx; i++) sum[i] = x1[i] + 2.0f * x2[i];
        float *y1 = fgi_buf_nan(ny), *y2 = fgi_buf_nan(ny), *ys = fgi_buf_nan(ny), *yb = fgi_buf_nan(ny);
        cr_assert_eq(fg_ref_linear(y1, x1, w, NULL, rows, in, out), FG_OK);
        cr_assert_eq(fg_ref_linear(y2, x2, w, NULL, rows, in, out), FG_OK);
        cr_assert_eq(fg_ref_linear(ys, sum, w, NULL, rows, in, out), FG_OK);
        cr_assert_eq(fg_ref_linear(yb, x1, w, b, rows, in, out), FG_OK);
        float *expect = fgi_buf_nan(ny), *expect_b = fgi_buf_nan(ny);
        for (size_t i = 0; i < ny; i++) {
            expect[i] = y1[i] + 2.0f * y2[i];
            expect_b[i] = y1[i] + b[i % out];
        }
        fgi_assert_close(ys, expect, ny, 1e-4, 1e-5, 0, "linear(x1 + 2 x2)");
        fgi_assert_close(yb, expect_b, ny, 1e-5, 1e-6, 0, "linear with bias");
        fgi_assert_guard(yb, ny, "y");
        fgi_buf_free(x1), fgi_buf_free(x2), fgi_buf_free(w), fgi_buf_free(b), fgi_buf_free(sum);
        fgi_buf_free(y1), fgi_buf_free(y2), fgi_buf_free(ys), fgi_buf_free(yb);
        fgi_buf_free(expect), fgi_buf_free(expect_b);
    }
}

/* Known values of the tanh-form GELU. */
Test(gelu, known_points)
{
    const float x[7] = {0.0f, 1.0f, -1.0f, 2.0f, -3.0f, 10.0f, -10.0f};
    const float expect[7] = {0.0f, 0.841191990f, -0.158808010f, 1.954597694f, -0.003637392f,
                             10.0f, -0.0f};
    float y[7];
    cr_assert_eq(fg_ref_gelu(y, x, 7), FG_OK);
    fgi_assert_close(y, expect, 7, 1e-7, 1e-6, 0, "gelu");
    /* far negative tail, where 1 + tanh(z) cancels in double: the value from
     * the tanh form evaluated with 50-digit decimals */
    const float tail_x = -8.0f, tail_expect = -3.107782937501111e-21f;
    float tail_y;
    cr_assert_eq(fg_ref_gelu(&tail_y, &tail_x, 1), FG_OK);
    fgi_assert_close(&tail_y, &tail_expect, 1, 0.0, 1e-6, 0, "gelu(-8)");
    cr_assert_eq(fg_ref_gelu((float *)x, x, 7), FG_OK, "in place allowed");
    fgi_assert_same(x, y, sizeof y, "in-place gelu");
}

Test(layer_norm, zero_mean_unit_variance_before_affine)
{
    fgi_rng rng = fgi_rng_make(31);
    const int rows = 9, cols = 77;
    const size_t n = (size_t)rows * cols;
    float *x = fgi_buf_normal(&rng, n, 3.0), *y = fgi_buf_nan(n);
    for (size_t i = 0; i < n; i++) x[i] += 5.0f; /* off-centre input */
    float *ones = fgi_buf_nan(cols), *zeros = fgi_buf_nan(cols);
    for (int c = 0; c < cols; c++) ones[c] = 1.0f, zeros[c] = 0.0f;
    cr_assert_eq(fg_ref_layer_norm(y, x, ones, zeros, rows, cols, 0.0f), FG_OK);
    for (int r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        for (int c = 0; c < cols; c++) mean += y[r * cols + c];
        mean /= cols;
        for (int c = 0; c < cols; c++) var += (y[r * cols + c] - mean) * (y[r * cols + c] - mean);
        var /= cols;
        cr_assert(fabs(mean) < 1e-6 && fabs(var - 1.0) < 1e-5, "row %d: mean %g var %g", r, mean, var);
    }
    /* the affine step: g * norm + b, and b = NULL means no bias */
    float *g = fgi_buf_normal(&rng, cols, 1.0), *b = fgi_buf_normal(&rng, cols, 1.0);
    float *ya = fgi_buf_nan(n), *yn = fgi_buf_nan(n), *expect = fgi_buf_nan(n), *expect_n = fgi_buf_nan(n);
    cr_assert_eq(fg_ref_layer_norm(ya, x, g, b, rows, cols, 0.0f), FG_OK);
    cr_assert_eq(fg_ref_layer_norm(yn, x, g, NULL, rows, cols, 0.0f), FG_OK);
    for (size_t i = 0; i < n; i++) {
        expect[i] = g[i % cols] * y[i] + b[i % cols];
        expect_n[i] = g[i % cols] * y[i];
    }
    fgi_assert_close(ya, expect, n, 1e-6, 1e-6, 0, "layer_norm affine");
    fgi_assert_close(yn, expect_n, n, 1e-6, 1e-6, 0, "layer_norm without bias");
    fgi_buf_free(x), fgi_buf_free(y), fgi_buf_free(ones), fgi_buf_free(zeros), fgi_buf_free(g);
    fgi_buf_free(b), fgi_buf_free(ya), fgi_buf_free(yn), fgi_buf_free(expect), fgi_buf_free(expect_n);
}

/* Hand case: row [1, 2, 3, 6] has mean 3 and biased variance 3.5. */
Test(layer_norm, hand_computed_with_eps)
{
    const float x[4] = {1, 2, 3, 6}, g[4] = {1, 2, 1, 1}, b[4] = {0, 0, 1, 0};
    const double inv = 1.0 / sqrt(3.5 + 1e-5);
    const float expect[4] = {(float)(-2 * inv), (float)(2 * -1 * inv), (float)(0 + 1),
                             (float)(3 * inv)};
    float y[4];
    cr_assert_eq(fg_ref_layer_norm(y, x, g, b, 1, 4, 1e-5f), FG_OK);
    fgi_assert_close(y, expect, 4, 1e-7, 1e-6, 0, "layer_norm [1,2,3,6]");
}

Test(ffn, equals_linear_gelu_linear)
{
    fgi_rng rng = fgi_rng_make(32);
    const int rows = 5, hidden = 24, inner = 4 * 24;
    float *x = fgi_buf_normal(&rng, (size_t)rows * hidden, 1.0);
    float *w1 = fgi_buf_normal(&rng, (size_t)hidden * inner, 0.2), *b1 = fgi_buf_normal(&rng, inner, 0.1);
    float *w2 = fgi_buf_normal(&rng, (size_t)inner * hidden, 0.1), *b2 = fgi_buf_normal(&rng, hidden, 0.1);
    float *h = fgi_buf_nan((size_t)rows * inner), *expect = fgi_buf_nan((size_t)rows * hidden);
    float *y = fgi_buf_nan((size_t)rows * hidden);
    cr_assert_eq(fg_ref_linear(h, x, w1, b1, rows, hidden, inner), FG_OK);
    cr_assert_eq(fg_ref_gelu(h, h, rows * inner), FG_OK);
    cr_assert_eq(fg_ref_linear(expect, h, w2, b2, rows, inner, hidden), FG_OK);
    cr_assert_eq(fg_ref_ffn(y, x, w1, b1, w2, b2, rows, hidden, inner), FG_OK);
    fgi_assert_same(y, expect, sizeof(float) * rows * hidden, "ffn vs composition");
    fgi_assert_guard(y, (size_t)rows * hidden, "ffn out");
    fgi_buf_free(x), fgi_buf_free(w1), fgi_buf_free(b1), fgi_buf_free(w2), fgi_buf_free(b2);
    fgi_buf_free(h), fgi_buf_free(expect), fgi_buf_free(y);
}

Test(rms_norm, unit_mean_square_and_hand_case)
{
    fgi_rng rng = fgi_rng_make(33);
    const int rows = 4, cols = 50;
    const size_t n = (size_t)rows * cols;
    float *x = fgi_buf_normal(&rng, n, 4.0), *y = fgi_buf_nan(n), *g = fgi_buf_nan(cols);
    for (int c = 0; c < cols; c++) g[c] = 1.0f;
    cr_assert_eq(fg_ref_rms_norm(y, x, g, rows, cols, 0.0f), FG_OK);
    for (int r = 0; r < rows; r++) {
        double ms = 0;
        for (int c = 0; c < cols; c++) ms += (double)y[r * cols + c] * y[r * cols + c];
        cr_assert(fabs(ms / cols - 1.0) < 1e-5, "row %d mean square %g", r, ms / cols);
    }
    const float hx[2] = {3, 4}, hg[2] = {2, 1};
    const double inv = 1.0 / sqrt(12.5 + 1e-6);
    const float expect[2] = {(float)(2 * 3 * inv), (float)(4 * inv)};
    float hy[2];
    cr_assert_eq(fg_ref_rms_norm(hy, hx, hg, 1, 2, 1e-6f), FG_OK);
    fgi_assert_close(hy, expect, 2, 1e-7, 1e-6, 0, "rms_norm [3,4]");
    fgi_buf_free(x), fgi_buf_free(y), fgi_buf_free(g);
}

Test(silu_mul, known_points)
{
    const float gate[4] = {0.0f, 1.0f, -2.0f, 20.0f}, up[4] = {5.0f, 2.0f, 3.0f, 0.5f};
    /* silu(1) = 1 / (1 + e^-1) = 0.7310585786; silu(-2) = -2 / (1 + e^2) */
    const float expect[4] = {0.0f, 2.0f * 0.731058579f, 3.0f * -0.238405844f,
                             (float)(0.5 * 20.0 / (1.0 + exp(-20.0)))};
    float y[4];
    cr_assert_eq(fg_ref_silu_mul(y, gate, up, 4), FG_OK);
    fgi_assert_close(y, expect, 4, 1e-7, 1e-6, 0, "silu_mul");
}

Test(swiglu, equals_composition)
{
    fgi_rng rng = fgi_rng_make(34);
    const int rows = 3, hidden = 16, inner = 40;
    float *x = fgi_buf_normal(&rng, (size_t)rows * hidden, 1.0);
    float *wg = fgi_buf_normal(&rng, (size_t)hidden * inner, 0.3);
    float *wu = fgi_buf_normal(&rng, (size_t)hidden * inner, 0.3);
    float *wd = fgi_buf_normal(&rng, (size_t)inner * hidden, 0.2);
    float *gate = fgi_buf_nan((size_t)rows * inner), *up = fgi_buf_nan((size_t)rows * inner);
    float *expect = fgi_buf_nan((size_t)rows * hidden), *y = fgi_buf_nan((size_t)rows * hidden);
    cr_assert_eq(fg_ref_linear(gate, x, wg, NULL, rows, hidden, inner), FG_OK);
    cr_assert_eq(fg_ref_linear(up, x, wu, NULL, rows, hidden, inner), FG_OK);
    cr_assert_eq(fg_ref_silu_mul(gate, gate, up, rows * inner), FG_OK);
    cr_assert_eq(fg_ref_linear(expect, gate, wd, NULL, rows, inner, hidden), FG_OK);
    cr_assert_eq(fg_ref_swiglu_ffn(y, x, wg, wu, wd, rows, hidden, inner), FG_OK);
    fgi_assert_same(y, expect, sizeof(float) * rows * hidden, "swiglu vs composition");
    fgi_buf_free(x), fgi_buf_free(wg), fgi_buf_free(wu), fgi_buf_free(wd), fgi_buf_free(gate);
    fgi_buf_free(up), fgi_buf_free(expect), fgi_buf_free(y);
}

Test(layers, bad_arguments_write_nothing)
{
    fgi_rng rng = fgi_rng_make(35);
    const size_t n = 256;
    float *x = fgi_buf_normal(&rng, n, 1.0), *w = fgi_buf_normal(&rng, n, 1.0);
    float *w2 = fgi_buf_normal(&rng, n, 1.0), *y = fgi_buf_normal(&rng, n, 1.0);
    float *before = fgi_buf_copy(y, n);
    const fg_status E = FG_ERR_INVALID_ARG;
    fgi_assert_status(fg_ref_linear(y, x, NULL, NULL, 2, 4, 4), E, "'w' is NULL");
    fgi_assert_status(fg_ref_linear(y, x, w, NULL, 0, 4, 4), E, "'rows'");
    fgi_assert_status(fg_ref_linear(y, x, w, NULL, 2, 0, 4), E, "'in'");
    fgi_assert_status(fg_ref_linear(y, x, w, NULL, 2, 4, -1), E, "'out'");
    fgi_assert_status(fg_ref_linear(y, y + 2, w, NULL, 2, 4, 4), E, "overlap");
    fgi_assert_status(fg_ref_linear(y, x, y, NULL, 2, 4, 4), E, "overlap");
    fgi_assert_status(fg_ref_linear(y, x, w, NULL, 1 << 30, 1 << 30, 4), E, "overflow");
    fgi_assert_status(fg_ref_gelu(y, x, 0), E, "'n'");
    fgi_assert_status(fg_ref_gelu(y, y + 1, 8), E, "overlap");
    fgi_assert_status(fg_ref_layer_norm(y, x, NULL, NULL, 2, 4, 1e-5f), E, "'g' is NULL");
    fgi_assert_status(fg_ref_layer_norm(y, x, w, NULL, 2, 4, -1.0f), E, "'eps'");
    fgi_assert_status(fg_ref_layer_norm(y, x, w, NULL, 2, 0, 1e-5f), E, "'cols'");
    fgi_assert_status(fg_ref_rms_norm(y, x, w, 0, 4, 1e-5f), E, "'rows'");
    fgi_assert_status(fg_ref_rms_norm(y, x, w, 2, 4, NAN), E, "'eps'");
    fgi_assert_status(fg_ref_ffn(y, x, w, NULL, NULL, NULL, 2, 4, 8), E, "'w_proj' is NULL");
    fgi_assert_status(fg_ref_ffn(y, x, w, NULL, w2, NULL, 2, 4, 0), E, "'inner'");
    fgi_assert_status(fg_ref_ffn(y, x, w, NULL, w2, NULL, 1 << 30, 1 << 30, 4), E, "overflow");
    fgi_assert_status(fg_ref_silu_mul(y, x, NULL, 4), E, "'up' is NULL");
    fgi_assert_status(fg_ref_swiglu_ffn(y, x, w, w2, NULL, 2, 4, 4), E, "'w_down' is NULL");
    fgi_assert_status(fg_ref_swiglu_ffn(y, x, w, w2, y, 2, 4, 4), E, "overlap");
    fgi_assert_same(y, before, n * sizeof(float), "y after refused calls");
    fgi_buf_free(x), fgi_buf_free(w), fgi_buf_free(w2), fgi_buf_free(y), fgi_buf_free(before);
}
