/* Rotary position embedding (docs/contract.md §11). */
#include "support.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double dot(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

Test(rope, position_zero_is_identity)
{
    fgi_rng rng = fgi_rng_make(20);
    const int nh = 3, seq = 4, d = 16;
    const size_t n = (size_t)nh * seq * d;
    float *x = fgi_buf_normal(&rng, n, 1.0), *orig = fgi_buf_copy(x, n);
    const int pos[4] = {0, 0, 0, 0};
    cr_assert_eq(fg_ref_rope(x, nh, seq, d, pos, 10000.0), FG_OK);
    fgi_assert_same(x, orig, n * sizeof(float), "rope at position 0");
    fgi_buf_free(x), fgi_buf_free(orig);
}

/* head_dim 4, base 10000, position 3: pair 0 turns by 3 rad, pair 1 by
 * 3 * 10000^(-1/2) = 0.03 rad. */
Test(rope, hand_computed_rotation)
{
    float x[4] = {1.0f, 2.0f, -0.5f, 0.25f};
    const int pos[1] = {3};
    cr_assert_eq(fg_ref_rope(x, 1, 1, 4, pos, 10000.0), FG_OK);
    const double t0 = 3.0, t1 = 0.03;
    const float expect[4] = {(float)(1.0 * cos(t0) - 2.0 * sin(t0)),
                             (float)(2.0 * cos(t0) + 1.0 * sin(t0)),
                             (float)(-0.5 * cos(t1) - 0.25 * sin(t1)),
                             (float)(0.25 * cos(t1) + -0.5 * sin(t1))};
    fgi_assert_close(x, expect, 4, 1e-7, 1e-6, 0, "rope d=4 p=3");
}

Test(rope, keeps_each_pair_norm)
{
    fgi_rng rng = fgi_rng_make(21);
    const int nh = 2, seq = 6, d = 32;
    const size_t n = (size_t)nh * seq * d;
    float *x = fgi_buf_normal(&rng, n, 1.0), *orig = fgi_buf_copy(x, n);
    int pos[6];
    for (int t = 0; t < seq; t++) pos[t] = fgi_rng_int(&rng, 0, 100000);
    cr_assert_eq(fg_ref_rope(x, nh, seq, d, pos, 10000.0), FG_OK);
    for (size_t i = 0; i < n; i += 2) {
        double before = hypot(orig[i], orig[i + 1]), after = hypot(x[i], x[i + 1]);
        cr_assert(fabs(after - before) <= 1e-6 * (1.0 + before), "pair %zu: |%g| -> |%g|", i / 2,
                  before, after);
    }
    fgi_buf_free(x), fgi_buf_free(orig);
}

/* <R(p) q, R(s) k> depends only on p - s, for positions up to 100000. */
Test(rope, dot_product_depends_only_on_relative_position)
{
    fgi_rng rng = fgi_rng_make(22);
    const int d = 64;
    for (int trial = 0; trial < 50; trial++) {
        float *q = fgi_buf_normal(&rng, (size_t)d, 1.0), *k = fgi_buf_normal(&rng, (size_t)d, 1.0);
        const int p = fgi_rng_int(&rng, 0, 100000), s = fgi_rng_int(&rng, 0, 100000);
        const int lo = p < s ? p : s, shift = fgi_rng_int(&rng, -lo, 100000 - (p > s ? p : s));
        float *q1 = fgi_buf_copy(q, d), *k1 = fgi_buf_copy(k, d);
        float *q2 = fgi_buf_copy(q, d), *k2 = fgi_buf_copy(k, d);
        const int p1[1] = {p}, s1[1] = {s}, p2[1] = {p + shift}, s2[1] = {s + shift};
        cr_assert_eq(fg_ref_rope(q1, 1, 1, d, p1, 10000.0), FG_OK);
        cr_assert_eq(fg_ref_rope(k1, 1, 1, d, s1, 10000.0), FG_OK);
        cr_assert_eq(fg_ref_rope(q2, 1, 1, d, p2, 10000.0), FG_OK);
        cr_assert_eq(fg_ref_rope(k2, 1, 1, d, s2, 10000.0), FG_OK);
        const double a = dot(q1, k1, d), b = dot(q2, k2, d);
        const double scale = sqrt(dot(q, q, d) * dot(k, k, d));
        cr_assert(fabs(a - b) <= 1e-6 * scale,
                  "<R(%d)q, R(%d)k> = %.9g but shifted by %d: %.9g (seed %llu)", p, s, a, shift,
                  b, (unsigned long long)fgi_test_seed());
        fgi_buf_free(q), fgi_buf_free(k), fgi_buf_free(q1), fgi_buf_free(k1), fgi_buf_free(q2),
            fgi_buf_free(k2);
    }
}

/* Heads share positions; each sequence row uses its own. */
Test(rope, rows_use_their_own_positions)
{
    fgi_rng rng = fgi_rng_make(23);
    const int nh = 3, seq = 5, d = 8;
    const size_t n = (size_t)nh * seq * d;
    float *x = fgi_buf_normal(&rng, n, 1.0), *one = fgi_buf_nan(d);
    float *orig = fgi_buf_copy(x, n);
    int pos[5];
    for (int t = 0; t < seq; t++) pos[t] = fgi_rng_int(&rng, 0, 5000);
    cr_assert_eq(fg_ref_rope(x, nh, seq, d, pos, 500.0), FG_OK);
    for (int h = 0; h < nh; h++)
        for (int t = 0; t < seq; t++) {
            memcpy(one, orig + ((size_t)h * seq + t) * d, sizeof(float) * d);
            cr_assert_eq(fg_ref_rope(one, 1, 1, d, &pos[t], 500.0), FG_OK);
            fgi_assert_same(one, x + ((size_t)h * seq + t) * d, sizeof(float) * d, "row");
        }
    fgi_buf_free(x), fgi_buf_free(one), fgi_buf_free(orig);
}

Test(rope, bad_arguments_write_nothing)
{
    fgi_rng rng = fgi_rng_make(24);
    float *x = fgi_buf_normal(&rng, 64, 1.0), *before = fgi_buf_copy(x, 64);
    const int pos[4] = {0, 1, 2, 3}, neg[4] = {0, 1, -2, 3};
    const fg_status E = FG_ERR_INVALID_ARG;
    fgi_assert_status(fg_ref_rope(NULL, 1, 4, 4, pos, 1e4), E, "'x' is NULL");
    fgi_assert_status(fg_ref_rope(x, 1, 4, 4, NULL, 1e4), E, "'pos' is NULL");
    fgi_assert_status(fg_ref_rope(x, 1, 4, 5, pos, 1e4), E, "'head_dim' must be even");
    fgi_assert_status(fg_ref_rope(x, 1, 4, 4, neg, 1e4), E, "'pos[2]'");
    fgi_assert_status(fg_ref_rope(x, 0, 4, 4, pos, 1e4), E, "'n_head'");
    fgi_assert_status(fg_ref_rope(x, 1, 0, 4, pos, 1e4), E, "'seq'");
    fgi_assert_status(fg_ref_rope(x, 1, 4, 4, pos, 0.0), E, "'base'");
    fgi_assert_status(fg_ref_rope(x, 1, 4, 4, pos, NAN), E, "'base'");
    fgi_assert_status(fg_ref_rope(x, 1 << 30, 4, 1 << 30, pos, 1e4), E, "overflow");
    fgi_assert_same(x, before, 64 * sizeof(float), "x after refused calls");
    fgi_buf_free(x), fgi_buf_free(before);
}
