/* Shared helpers of the CUDA path: error checking that turns every CUDA /
 * cuBLAS failure into FG_ERR_CUDA with the error text in fg_last_error(),
 * and small device utilities. Included by the .cu files in cuda/ only. */
#ifndef FLASHGPT_CUDA_COMMON_CUH
#define FLASHGPT_CUDA_COMMON_CUH

#include "check.h"
#include "flashgpt/cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

/* Returns FG_ERR_CUDA from the enclosing function when `call` fails. The
 * runtime also records the error as "last error"; it is cleared here so that
 * the next FGI_CUDA_LAUNCHED does not report it a second time. */
#define FGI_CUDA_TRY(fn, call)                                                   \
    do {                                                                        \
        cudaError_t fgi_cuda_err_ = (call);                                      \
        if (fgi_cuda_err_ != cudaSuccess) {                                      \
            (void)cudaGetLastError();                                           \
            return fgi_fail(FG_ERR_CUDA, "%s: %s failed: %s (%s)", (fn), #call,  \
                           cudaGetErrorString(fgi_cuda_err_),                    \
                           cudaGetErrorName(fgi_cuda_err_));                     \
        }                                                                       \
    } while (0)

/* Checks the launch just made (bad configuration, missing device code...). */
#define FGI_CUDA_LAUNCHED(fn, kernel_name)                                       \
    do {                                                                        \
        cudaError_t fgi_cuda_err_ = cudaGetLastError();                          \
        if (fgi_cuda_err_ != cudaSuccess)                                        \
            return fgi_fail(FG_ERR_CUDA, "%s: launch of %s failed: %s", (fn),    \
                           (kernel_name), cudaGetErrorString(fgi_cuda_err_));    \
    } while (0)

#define FGI_CUBLAS_TRY(fn, call)                                                 \
    do {                                                                        \
        cublasStatus_t fgi_blas_st_ = (call);                                    \
        if (fgi_blas_st_ != CUBLAS_STATUS_SUCCESS)                               \
            return fgi_fail(FG_ERR_CUDA, "%s: %s failed: %s", (fn), #call,       \
                           cublasGetStatusString(fgi_blas_st_));                 \
    } while (0)

static inline unsigned fgi_ceil_div(long long a, long long b)
{
    return (unsigned)((a + b - 1) / b);
}

#endif /* FLASHGPT_CUDA_COMMON_CUH */
