/* Test support: a seeded random generator (fresh seed per run, printed in
 * every failure message; FG_TEST_SEED=<n> replays a run), buffers with a
 * guard region, and comparisons with the tolerances of docs/contract.md §32. */
#ifndef FLASHGPT_TESTS_SUPPORT_H
#define FLASHGPT_TESTS_SUPPORT_H

#include "flashgpt/flashgpt.h"

#include <criterion/criterion.h>
#include <stddef.h>
#include <stdint.h>

/* A hang guard for one test: `Test(suite, name, FGI_TIMEOUT(20))`.
 * Criterion's .timeout arms a watchdog thread whose 48-byte request the
 * runner sometimes never frees (a LeakSanitizer report from inside
 * libcriterion failed a sanitized CI run), so sanitized builds leave hangs
 * to ctest's TIMEOUT, which CMakeLists.txt sets on every test there. */
#ifdef FG_TEST_SANITIZED
#define FGI_TIMEOUT(seconds) .timeout = 0
#else
#define FGI_TIMEOUT(seconds) .timeout = (seconds)
#endif

typedef struct {
    uint64_t state;
} fgi_rng;

/* The run's seed: $FG_TEST_SEED if set, else drawn from the clock once. */
uint64_t fgi_test_seed(void);
/* A generator for one stream of draws; `stream` separates tests. */
fgi_rng fgi_rng_make(uint64_t stream);
uint64_t fgi_rng_next(fgi_rng *r);
double fgi_rng_uniform(fgi_rng *r);             /* [0, 1) */
double fgi_rng_normal(fgi_rng *r);              /* N(0, 1) */
int fgi_rng_int(fgi_rng *r, int lo, int hi);    /* [lo, hi] */

/* Host buffers of n floats followed by a guard region; free with fgi_buf_free. */
float *fgi_buf_normal(fgi_rng *r, size_t n, double scale);
float *fgi_buf_nan(size_t n);
float *fgi_buf_copy(const float *src, size_t n);
void fgi_buf_free(float *p);
/* Asserts the guard region after the n floats of p still holds its pattern. */
void fgi_assert_guard(const float *p, size_t n, const char *what);

double fgi_rel_l2(const float *got, const float *ref, size_t n);
double fgi_max_abs_diff(const float *got, const float *ref, size_t n);

/* Asserts |got - ref| <= atol + rtol*|ref| elementwise, no NaN/inf where ref is
 * finite, and (when l2 > 0) relative L2 error <= l2. */
void fgi_assert_close(const float *got, const float *ref, size_t n, double atol,
                     double rtol, double l2, const char *what);

/* The 16-bit rule (docs/contract.md §32) for a result of dtype widened to
 * float: got against exact (the CPU reference from the same 16-bit inputs)
 * may be off by at most twice as much as naive (the same computation
 * rounded to dtype at every op boundary, the fg_ref_*_naive16 functions),
 * max |got - exact| <= 2 max |naive - exact|, with the bound never below one
 * ulp of dtype at max |exact| (the rounding of the stored result alone);
 * relative L2 of got at most 2e-2; no NaN/inf where exact is finite. */
void fgi_assert_16bit_rule(fg_dtype dtype, const float *got, const float *exact,
                           const float *naive, size_t n, const char *what);

/* Asserts two buffers are bitwise identical. */
void fgi_assert_same(const void *a, const void *b, size_t bytes, const char *what);

/* Asserts `status == expected` and, for failures, that fg_last_error()
 * mentions `needle`. */
void fgi_assert_status(fg_status status, fg_status expected, const char *needle);

/* Path to a file under the models folder: the repository's models/ (the
 * FG_MODELS_DIR variable, of CMake or of the environment, overrides); NULL
 * when it does not exist. Returns a static buffer. */
const char *fgi_model_path(const char *relative);

#endif /* FLASHGPT_TESTS_SUPPORT_H */
