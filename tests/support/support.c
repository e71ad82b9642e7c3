/* Test support implementation (see support.h). */
#define _POSIX_C_SOURCE 200809L
#include "support.h"

#include <criterion/hooks.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GUARD_FLOATS 64
static const uint32_t guard_pattern = 0x7fc0dead; /* a NaN nobody computes */

uint64_t fgi_test_seed(void)
{
    static uint64_t seed;
    static int have_seed;
    if (!have_seed) {
        const char *env = getenv("FG_TEST_SEED");
        if (env && *env) {
            seed = strtoull(env, NULL, 0);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            seed = ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^
                   ((uint64_t)getpid() << 32);
        }
        have_seed = 1;
    }
    return seed;
}

/* Once per test executable, in Criterion's runner before any test starts:
 * the seed of this run, printed, and put in the environment so that every
 * test process (Criterion runs each test in its own) draws from the same
 * one; a failing run (CI included) is then replayed by one FG_TEST_SEED. */
ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    const unsigned long long seed = (unsigned long long)fgi_test_seed();
    char text[32];
    snprintf(text, sizeof text, "%llu", seed);
    if (setenv("FG_TEST_SEED", text, 1) != 0) perror("setenv FG_TEST_SEED");
    fprintf(stderr, "test seed %llu (FG_TEST_SEED=%llu replays it)\n", seed, seed);
}

fgi_rng fgi_rng_make(uint64_t stream)
{
    fgi_rng r = {fgi_test_seed() ^ (stream * 0x9e3779b97f4a7c15ULL)};
    fgi_rng_next(&r);
    return r;
}

uint64_t fgi_rng_next(fgi_rng *r)
{ /* splitmix64 */
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double fgi_rng_uniform(fgi_rng *r) { return (double)(fgi_rng_next(r) >> 11) * 0x1.0p-53; }

double fgi_rng_normal(fgi_rng *r)
{
    double u1 = fgi_rng_uniform(r), u2 = fgi_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int fgi_rng_int(fgi_rng *r, int lo, int hi)
{
    return lo + (int)(fgi_rng_next(r) % (uint64_t)((long long)hi - lo + 1));
}

static float *buf_alloc(size_t n)
{
    float *p = malloc(sizeof(float) * (n + GUARD_FLOATS));
    cr_assert(p != NULL, "test allocation of %zu floats failed", n);
    for (size_t i = 0; i < GUARD_FLOATS; i++) memcpy(p + n + i, &guard_pattern, 4);
    return p;
}

float *fgi_buf_normal(fgi_rng *r, size_t n, double scale)
{
    float *p = buf_alloc(n);
    for (size_t i = 0; i < n; i++) p[i] = (float)(scale * fgi_rng_normal(r));
    return p;
}

float *fgi_buf_nan(size_t n)
{
    float *p = buf_alloc(n);
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

float *fgi_buf_copy(const float *src, size_t n)
{
    float *p = buf_alloc(n);
    memcpy(p, src, sizeof(float) * n);
    return p;
}

void fgi_buf_free(float *p) { free(p); }

void fgi_assert_guard(const float *p, size_t n, const char *what)
{
    for (size_t i = 0; i < GUARD_FLOATS; i++)
        cr_assert(memcmp(p + n + i, &guard_pattern, 4) == 0,
                  "%s: guard region overwritten at element %zu past the end (seed %llu)",
                  what, i, (unsigned long long)fgi_test_seed());
}

double fgi_rel_l2(const float *got, const float *ref, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

double fgi_max_abs_diff(const float *got, const float *ref, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

void fgi_assert_close(const float *got, const float *ref, size_t n, double atol,
                     double rtol, double l2, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)got[i] - ref[i]);
        int ok = isfinite(ref[i]) ? (isfinite(got[i]) && diff <= atol + rtol * fabs(ref[i]))
                                  : (memcmp(&got[i], &ref[i], 4) == 0 || (isnan(got[i]) && isnan(ref[i])));
        cr_assert(ok, "%s: element %zu is %.9g, expected %.9g (|diff| %.3g > %.3g) (seed %llu)",
                  what, i, (double)got[i], (double)ref[i], diff,
                  atol + rtol * fabs(ref[i]), (unsigned long long)fgi_test_seed());
    }
    if (l2 > 0.0) {
        double e = fgi_rel_l2(got, ref, n);
        cr_assert(e <= l2, "%s: relative L2 error %.3g > %.3g (seed %llu)", what, e, l2,
                  (unsigned long long)fgi_test_seed());
    }
}

void fgi_assert_16bit_rule(fg_dtype dtype, const float *got, const float *exact,
                           const float *naive, size_t n, const char *what)
{
    cr_assert(dtype == FG_DTYPE_BF16 || dtype == FG_DTYPE_F16, "%s: not a 16-bit type", what);
    double naive_err = 0.0, max_exact = 0.0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(isfinite(exact[i]), "%s: the reference is not finite at %zu (seed %llu)", what,
                  i, (unsigned long long)fgi_test_seed());
        naive_err = fmax(naive_err, fabs((double)naive[i] - exact[i]));
        max_exact = fmax(max_exact, fabs((double)exact[i]));
    }
    /* one ulp at max |exact|: 2^(exponent - mantissa bits) */
    const int mantissa_bits = dtype == FG_DTYPE_BF16 ? 7 : 10;
    const double ulp = max_exact > 0.0 ? ldexp(1.0, ilogb(max_exact) - mantissa_bits) : 0.0;
    const double bound = fmax(2.0 * naive_err, ulp);
    for (size_t i = 0; i < n; i++) {
        const double diff = fabs((double)got[i] - exact[i]);
        cr_assert(isfinite(got[i]) && diff <= bound,
                  "%s (%s): element %zu is %.9g, expected %.9g (|diff| %.3g > %.3g = max(2 x "
                  "naive %s error %.3g, 1 ulp %.3g)) (seed %llu)",
                  what, fg_dtype_name(dtype), i, (double)got[i], (double)exact[i], diff, bound,
                  fg_dtype_name(dtype), naive_err, ulp, (unsigned long long)fgi_test_seed());
    }
    const double e = fgi_rel_l2(got, exact, n);
    cr_assert(e <= 2e-2, "%s (%s): relative L2 error %.3g > 2e-2 (seed %llu)", what,
              fg_dtype_name(dtype), e, (unsigned long long)fgi_test_seed());
}

void fgi_assert_same(const void *a, const void *b, size_t bytes, const char *what)
{
    cr_assert(memcmp(a, b, bytes) == 0, "%s: contents changed (seed %llu)", what,
              (unsigned long long)fgi_test_seed());
}

void fgi_assert_status(fg_status status, fg_status expected, const char *needle)
{
    cr_assert(status == expected, "status %d (%s), expected %d (%s); message: %s",
              (int)status, fg_status_str(status), (int)expected,
              fg_status_str(expected), fg_last_error());
    if (expected != FG_OK && needle != NULL)
        cr_assert(strstr(fg_last_error(), needle) != NULL,
                  "message \"%s\" does not mention \"%s\"", fg_last_error(), needle);
}

const char *fgi_model_path(const char *relative)
{
    static char path[4096];
    const char *dir = getenv("FG_MODELS_DIR");
    if (dir == NULL || *dir == '\0') dir = FG_MODELS_DIR;
    snprintf(path, sizeof path, "%s/%s", dir, relative);
    return access(path, R_OK) == 0 ? path : NULL;
}
