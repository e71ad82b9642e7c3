/* GPU test support (see gpu_support.h). */
#include "gpu_support.h"

#include <stdlib.h>
#include <string.h>

#define GUARD_FLOATS 64
static const uint32_t dev_guard_pattern = 0x7fc0beef;

void fgi_require_gpu(void)
{
    if (!fg_cuda_available())
        cr_skip_test("no usable CUDA device (or a build without CUDA): GPU test skipped");
}

void fgi_expect_refused(fg_status status, const char *needle)
{
#ifdef FG_HAVE_CUDA
    fgi_assert_status(status, FG_ERR_INVALID_ARG, needle);
#else
    (void)needle;
    fgi_assert_status(status, FG_ERR_UNSUPPORTED, "without CUDA");
#endif
}

void fgi_expect_no_device(fg_status status)
{
#ifdef FG_HAVE_CUDA
    fgi_assert_status(status, FG_ERR_CUDA, "no CUDA device");
#else
    fgi_assert_status(status, FG_ERR_UNSUPPORTED, "without CUDA");
#endif
}

static void check(fg_status st, const char *what)
{
    cr_assert(st == FG_OK, "%s: %s: %s", what, fg_status_str(st), fg_last_error());
}

static float *dev_alloc_guarded(size_t n)
{
    void *p = NULL;
    check(fg_cuda_malloc(&p, sizeof(float) * (n + GUARD_FLOATS)), "fg_cuda_malloc");
    float guard[GUARD_FLOATS];
    for (int i = 0; i < GUARD_FLOATS; i++) memcpy(&guard[i], &dev_guard_pattern, 4);
    check(fg_cuda_upload((float *)p + n, guard, sizeof guard), "upload guard");
    return p;
}

float *fgi_dev_upload(const float *host, size_t n)
{
    float *d = dev_alloc_guarded(n);
    check(fg_cuda_upload(d, host, sizeof(float) * n), "fg_cuda_upload");
    return d;
}

float *fgi_dev_poisoned(size_t n)
{
    float *d = dev_alloc_guarded(n);
    check(fg_cuda_memset(d, 0xff, sizeof(float) * n), "fg_cuda_memset"); /* 0xffffffff: NaN */
    return d;
}

int *fgi_dev_upload_ints(const int *host, size_t n)
{
    void *p = NULL;
    check(fg_cuda_malloc(&p, sizeof(int) * (n ? n : 1)), "fg_cuda_malloc");
    check(fg_cuda_upload(p, host, sizeof(int) * n), "fg_cuda_upload");
    return p;
}

float *fgi_dev_download(const float *dev, size_t n)
{
    float *h = fgi_buf_nan(n);
    check(fg_cuda_download(h, dev, sizeof(float) * n), "fg_cuda_download");
    return h;
}

void fgi_dev_assert_guard(const float *dev, size_t n, const char *what)
{
    uint32_t guard[GUARD_FLOATS];
    check(fg_cuda_download(guard, dev + n, sizeof guard), "download guard");
    for (int i = 0; i < GUARD_FLOATS; i++)
        cr_assert(guard[i] == dev_guard_pattern,
                  "%s: device guard overwritten %d elements past the end (seed %llu)",
                  what, i, (unsigned long long)fgi_test_seed());
}

void fgi_dev_free(void *dev) { check(fg_cuda_free(dev), "fg_cuda_free"); }

int fgi_test_quick(void)
{
    const char *env = getenv("FG_TEST_QUICK");
    return env != NULL && *env != '\0' && strcmp(env, "0") != 0;
}
