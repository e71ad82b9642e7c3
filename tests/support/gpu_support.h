/* GPU test support through the public fg_cuda_* memory API (so GPU tests
 * compile in every build): skipping without a device, device buffers with a
 * guard region after them, outputs poisoned with NaN. */
#ifndef FLASHGPT_TESTS_GPU_SUPPORT_H
#define FLASHGPT_TESTS_GPU_SUPPORT_H

#include "support.h"

/* Skips the current test, visibly, when no usable GPU is present. */
void fgi_require_gpu(void);

/* FG_TEST_QUICK set (and not "0"): GPU tests run fewer, smaller cases (the
 * compute-sanitizer runs of scripts/gpu-check, the emulated CI stage). */
int fgi_test_quick(void);

/* A call refused for its arguments: FG_ERR_INVALID_ARG naming `needle` in a
 * CUDA build (arguments are checked before any device access), and
 * FG_ERR_UNSUPPORTED ("without CUDA") in a build without CUDA. */
void fgi_expect_refused(fg_status status, const char *needle);

/* A valid call with no usable device: FG_ERR_CUDA ("no CUDA device") in a
 * CUDA build, FG_ERR_UNSUPPORTED ("without CUDA") without CUDA. */
void fgi_expect_no_device(fg_status status);

/* Device copy of n host floats, followed by a guard region. */
float *fgi_dev_upload(const float *host, size_t n);
/* Device buffer of n floats filled with NaN, followed by a guard region. */
float *fgi_dev_poisoned(size_t n);
/* Device copy of n host ints (no guard). */
int *fgi_dev_upload_ints(const int *host, size_t n);
/* Host copy (fgi_buf_* buffer, free with fgi_buf_free) of n device floats. */
float *fgi_dev_download(const float *dev, size_t n);
/* Asserts the guard region after the n device floats is intact. */
void fgi_dev_assert_guard(const float *dev, size_t n, const char *what);
void fgi_dev_free(void *dev);

#endif /* FLASHGPT_TESTS_GPU_SUPPORT_H */
