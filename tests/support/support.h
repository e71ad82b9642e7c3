/* Test support: a seeded random generator (fresh seed per run, printed in
 * every failure message; FG_TEST_SEED=<n> replays a run), buffers with a
 * guard region, and comparisons with the SPEC tolerances. */
#ifndef FLASHGPT_TESTS_SUPPORT_H
#define FLASHGPT_TESTS_SUPPORT_H

#include "flashgpt/flashgpt.h"

#include <criterion/criterion.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t state;
} fg_rng;

/* The run's seed: $FG_TEST_SEED if set, else drawn from the clock once. */
uint64_t fg_test_seed(void);
/* A generator for one stream of draws; `stream` separates tests. */
fg_rng fg_rng_make(uint64_t stream);
uint64_t fg_rng_next(fg_rng *r);
double fg_rng_uniform(fg_rng *r);             /* [0, 1) */
double fg_rng_normal(fg_rng *r);              /* N(0, 1) */
int fg_rng_int(fg_rng *r, int lo, int hi);    /* [lo, hi] */

/* Host buffers of n floats followed by a guard region; free with fg_buf_free. */
float *fg_buf_normal(fg_rng *r, size_t n, double scale);
float *fg_buf_nan(size_t n);
float *fg_buf_copy(const float *src, size_t n);
void fg_buf_free(float *p);
/* Asserts the guard region after the n floats of p still holds its pattern. */
void fg_assert_guard(const float *p, size_t n, const char *what);

double fg_rel_l2(const float *got, const float *ref, size_t n);
double fg_max_abs_diff(const float *got, const float *ref, size_t n);

/* Asserts |got - ref| <= atol + rtol*|ref| elementwise, no NaN/inf where ref is
 * finite, and (when l2 > 0) relative L2 error <= l2. */
void fg_assert_close(const float *got, const float *ref, size_t n, double atol,
                     double rtol, double l2, const char *what);

/* Asserts two buffers are bitwise identical. */
void fg_assert_same(const void *a, const void *b, size_t bytes, const char *what);

/* Asserts `status == expected` and, for failures, that fg_last_error()
 * mentions `needle`. */
void fg_assert_status(fg_status status, fg_status expected, const char *needle);

/* Path to a file under ../shared/models (FG_MODELS_DIR overrides); NULL
 * when it does not exist. Returns a static buffer. */
const char *fg_model_path(const char *relative);

#endif /* FLASHGPT_TESTS_SUPPORT_H */
