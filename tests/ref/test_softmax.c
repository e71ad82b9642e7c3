/* Softmax over any axis and the causal mask (docs/contract.md §4, §5). */
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

Test(softmax, hand_computed_row)
{
    const float x[3] = {1.0f, 2.0f, 3.0f};
    float y[3];
    const double z = exp(1.0) + exp(2.0) + exp(3.0);
    const float expect[3] = {(float)(exp(1.0) / z), (float)(exp(2.0) / z),
                             (float)(exp(3.0) / z)};
    cr_assert_eq(fg_ref_softmax(y, x, 1, 3, 1), FG_OK);
    fgi_assert_close(y, expect, 3, 1e-7, 1e-6, 0, "softmax [1,2,3]");
}

Test(softmax, rows_sum_to_one_on_every_axis)
{
    fgi_rng rng = fgi_rng_make(1);
    for (int trial = 0; trial < 40; trial++) {
        int outer = fgi_rng_int(&rng, 1, 5), n = fgi_rng_int(&rng, 1, 40),
            inner = fgi_rng_int(&rng, 1, 6);
        size_t total = (size_t)outer * n * inner;
        float *x = fgi_buf_normal(&rng, total, 5.0), *y = fgi_buf_nan(total);
        cr_assert_eq(fg_ref_softmax(y, x, outer, n, inner), FG_OK);
        fgi_assert_guard(y, total, "softmax output");
        for (int o = 0; o < outer; o++)
            for (int i = 0; i < inner; i++) {
                double sum = 0.0;
                for (int j = 0; j < n; j++) {
                    float p = y[((size_t)o * n + j) * inner + i];
                    cr_assert(p >= 0.0f && p <= 1.0f);
                    sum += p;
                }
                cr_assert(fabs(sum - 1.0) < 1e-5, "slice sums to %.9g (seed %llu)", sum,
                          (unsigned long long)fgi_test_seed());
            }
        fgi_buf_free(x);
        fgi_buf_free(y);
    }
}

/* Softmax over the middle axis of (A, B, C) equals transposing that axis to
 * the end, taking last-axis softmax, and transposing back. */
Test(softmax, middle_axis_matches_transposed_last_axis)
{
    fgi_rng rng = fgi_rng_make(2);
    const int A = 3, B = 7, C = 5;
    const size_t n = (size_t)A * B * C;
    float *x = fgi_buf_normal(&rng, n, 3.0), *y = fgi_buf_nan(n);
    float *xt = fgi_buf_nan(n), *yt = fgi_buf_nan(n), *back = fgi_buf_nan(n);
    for (int a = 0; a < A; a++)
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++) xt[((size_t)a * C + c) * B + b] = x[((size_t)a * B + b) * C + c];
    cr_assert_eq(fg_ref_softmax(y, x, A, B, C), FG_OK);
    cr_assert_eq(fg_ref_softmax(yt, xt, A * C, B, 1), FG_OK);
    for (int a = 0; a < A; a++)
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++) back[((size_t)a * B + b) * C + c] = yt[((size_t)a * C + c) * B + b];
    fgi_assert_same(y, back, n * sizeof(float), "axis-1 softmax vs transposed");
    fgi_buf_free(x), fgi_buf_free(y), fgi_buf_free(xt), fgi_buf_free(yt), fgi_buf_free(back);
}

Test(softmax, shift_invariant)
{
    fgi_rng rng = fgi_rng_make(3);
    const int rows = 6, n = 33;
    float *x = fgi_buf_normal(&rng, (size_t)rows * n, 2.0);
    float *xs = fgi_buf_copy(x, (size_t)rows * n);
    float *y = fgi_buf_nan((size_t)rows * n), *ys = fgi_buf_nan((size_t)rows * n);
    for (int r = 0; r < rows; r++) {
        float c = (float)(100.0 * fgi_rng_normal(&rng));
        for (int j = 0; j < n; j++) xs[r * n + j] = x[r * n + j] + c;
    }
    cr_assert_eq(fg_ref_softmax(y, x, rows, n, 1), FG_OK);
    cr_assert_eq(fg_ref_softmax(ys, xs, rows, n, 1), FG_OK);
    /* x + c is rounded to float, so the shifted inputs differ by up to an ulp
     * of c: allow that much relative change in each probability. */
    fgi_assert_close(ys, y, (size_t)rows * n, 1e-6, 1e-4, 0, "softmax(x + c) vs softmax(x)");
    fgi_buf_free(x), fgi_buf_free(xs), fgi_buf_free(y), fgi_buf_free(ys);
}

Test(softmax, large_magnitudes_stay_finite)
{
    float x[2 * 4] = {1000, 1000, 1000, 1000, -1000, -1000, -1000, -1000};
    float y[8];
    cr_assert_eq(fg_ref_softmax(y, x, 2, 4, 1), FG_OK);
    for (int i = 0; i < 8; i++) cr_assert_float_eq(y[i], 0.25f, 1e-7, "y[%d] = %g", i, y[i]);
    float z[3] = {1000, 0, -1000}, p[3];
    cr_assert_eq(fg_ref_softmax(p, z, 1, 3, 1), FG_OK);
    cr_assert_float_eq(p[0], 1.0f, 1e-7);
    cr_assert(p[1] >= 0.0f && p[1] < 1e-30f && p[2] == 0.0f);
}

Test(softmax, infinities)
{
    float x[4] = {-INFINITY, 0.0f, -INFINITY, 0.0f}, y[4];
    cr_assert_eq(fg_ref_softmax(y, x, 1, 4, 1), FG_OK);
    cr_assert(y[0] == 0.0f && y[2] == 0.0f && y[1] == 0.5f && y[3] == 0.5f);
    float all[3] = {-INFINITY, -INFINITY, -INFINITY}, z[3] = {7, 7, 7};
    cr_assert_eq(fg_ref_softmax(z, all, 1, 3, 1), FG_OK);
    cr_assert(z[0] == 0.0f && z[1] == 0.0f && z[2] == 0.0f, "an all -inf slice gives zeros");
    float pinf[3] = {INFINITY, 1.0f, INFINITY}, w[3];
    cr_assert_eq(fg_ref_softmax(w, pinf, 1, 3, 1), FG_OK);
    cr_assert(w[0] == 0.5f && w[1] == 0.0f && w[2] == 0.5f);
}

Test(softmax, in_place_equals_out_of_place)
{
    fgi_rng rng = fgi_rng_make(4);
    const size_t n = 4 * 9 * 3;
    float *x = fgi_buf_normal(&rng, n, 4.0), *y = fgi_buf_nan(n);
    cr_assert_eq(fg_ref_softmax(y, x, 4, 9, 3), FG_OK);
    cr_assert_eq(fg_ref_softmax(x, x, 4, 9, 3), FG_OK);
    fgi_assert_same(x, y, n * sizeof(float), "in-place softmax");
    fgi_buf_free(x), fgi_buf_free(y);
}

Test(softmax, bad_arguments_write_nothing)
{
    fgi_rng rng = fgi_rng_make(5);
    float *x = fgi_buf_normal(&rng, 64, 1.0), *y = fgi_buf_normal(&rng, 64, 1.0);
    float *before = fgi_buf_copy(y, 64);
    fgi_assert_status(fg_ref_softmax(NULL, x, 1, 4, 1), FG_ERR_INVALID_ARG, "'y' is NULL");
    fgi_assert_status(fg_ref_softmax(y, NULL, 1, 4, 1), FG_ERR_INVALID_ARG, "'x' is NULL");
    fgi_assert_status(fg_ref_softmax(y, x, 0, 4, 1), FG_ERR_INVALID_ARG, "'outer'");
    fgi_assert_status(fg_ref_softmax(y, x, 1, -4, 1), FG_ERR_INVALID_ARG, "'n'");
    fgi_assert_status(fg_ref_softmax(y, x, 1, 4, 0), FG_ERR_INVALID_ARG, "'inner'");
    fgi_assert_status(fg_ref_softmax(y, x, 1 << 30, 1 << 30, 1 << 30), FG_ERR_INVALID_ARG,
                     "overflow");
    fgi_assert_status(fg_ref_softmax(y + 1, y, 2, 8, 1), FG_ERR_INVALID_ARG, "overlap");
    fgi_assert_same(y, before, 64 * sizeof(float), "output after refused calls");
    fgi_buf_free(x), fgi_buf_free(y), fgi_buf_free(before);
}

Test(causal_mask, counts_and_alignment)
{
    const int shapes[][2] = {{5, 5}, {1, 1}, {1, 9}, {3, 5}, {4, 200}, {17, 17}, {2, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int q = shapes[s][0], kv = shapes[s][1];
        uint8_t *m = malloc((size_t)q * kv);
        memset(m, 0xAA, (size_t)q * kv);
        cr_assert_eq(fg_ref_causal_mask(m, q, kv), FG_OK);
        long masked = 0;
        for (int i = 0; i < q; i++) {
            int row = 0;
            for (int j = 0; j < kv; j++) {
                cr_assert(m[i * kv + j] <= 1);
                row += m[i * kv + j];
                /* masked keys form a suffix of the row */
                if (j > 0) cr_assert(m[i * kv + j] >= m[i * kv + j - 1]);
            }
            cr_assert_eq(row, q - 1 - i, "row %d of (%d, %d) masks %d keys", i, q, kv, row);
            masked += row;
        }
        cr_assert_eq(masked, (long)q * (q - 1) / 2);
        /* the last query sees every key */
        for (int j = 0; j < kv; j++) cr_assert_eq(m[(q - 1) * kv + j], 0);
        free(m);
    }
}

Test(causal_mask, square_is_strict_upper_triangle)
{
    uint8_t m[16];
    cr_assert_eq(fg_ref_causal_mask(m, 4, 4), FG_OK);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) cr_assert_eq(m[i * 4 + j], j > i);
}

Test(causal_mask, bad_arguments_write_nothing)
{
    uint8_t m[8];
    memset(m, 7, sizeof m);
    fgi_assert_status(fg_ref_causal_mask(NULL, 2, 2), FG_ERR_INVALID_ARG, "'mask' is NULL");
    fgi_assert_status(fg_ref_causal_mask(m, 0, 2), FG_ERR_INVALID_ARG, "'q_len'");
    fgi_assert_status(fg_ref_causal_mask(m, 3, 2), FG_ERR_INVALID_ARG, "'kv_len' must be >= q_len");
    fgi_assert_status(fg_ref_causal_mask(m, 1 << 30, 1 << 30), FG_ERR_INVALID_ARG, "overflow");
    for (int i = 0; i < 8; i++) cr_assert_eq(m[i], 7);
}
