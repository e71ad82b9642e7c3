/* CUDA elementwise operations: GELU, bias + GELU, SiLU-multiply and the
 * residual add (docs/contract.md §12-§14).
 *
 * GELU (tanh form) and SiLU come from activation.cuh. Biases are
 * (cols) vectors broadcast over rows. In place (y == x) is allowed.
 * Element type: tensors hold T (cuda/common/dtype.cuh; only float is
 * instantiated), converted to fp32 on load and rounded back on store.
 * Design: grid-stride loops, one element per thread per step, 64-bit
 * indices; bias + GELU and SiLU-multiply read their inputs once and write
 * once, which is all a memory-bound elementwise pass can do. */
#include "activation.cuh"
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "ops_internal.h"
#include "reduce.cuh"
#include "validate.h"

namespace {

#define GRID_STRIDE(e, total)                                                   \
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x;        \
         e < (total); e += (long long)gridDim.x * blockDim.x)

template <typename T>
__global__ void bias_gelu_kernel(T *y, const T *x, const T *b, long long rows, int cols)
{
    GRID_STRIDE(e, rows * cols)
    {
        const float v = b ? fgi_load1(x + e) + fgi_load1(b + e % cols) : fgi_load1(x + e);
        fgi_store1(y + e, fgi_gelu(v));
    }
}

template <typename T>
__global__ void silu_mul_kernel(T *y, const T *gate, const T *up, long long rows, int cols,
                                long long in_row_stride)
{
    GRID_STRIDE(e, rows * cols)
    {
        const long long in = (e / cols) * in_row_stride + e % cols;
        fgi_store1(y + e, fgi_silu(fgi_load1(gate + in)) * fgi_load1(up + in));
    }
}

template <typename T>
__global__ void add_rows_kernel(T *x, const T *delta, const T *b, long long rows, int cols)
{
    GRID_STRIDE(e, rows * cols)
    {
        fgi_store1(x + e, fgi_load1(x + e) + (b ? fgi_load1(delta + e) + fgi_load1(b + e % cols)
                                                : fgi_load1(delta + e)));
    }
}

static const int kThreads = 256;

} // namespace

extern "C" fg_status fgi_cuda_bias_gelu(const char *fn, float *y, const float *x,
                                        const float *b, long long rows, int cols,
                                        cudaStream_t stream)
{
    bias_gelu_kernel<float><<<fgi_grid_blocks(rows * cols, kThreads), kThreads, 0, stream>>>(
        y, x, b, rows, cols);
    FGI_CUDA_LAUNCHED(fn, "bias_gelu_kernel");
    return FG_OK;
}

extern "C" fg_status fgi_cuda_silu_mul_rows(const char *fn, float *y, const float *gate,
                                            const float *up, long long rows, int cols,
                                            long long in_row_stride, cudaStream_t stream)
{
    silu_mul_kernel<float><<<fgi_grid_blocks(rows * cols, kThreads), kThreads, 0, stream>>>(
        y, gate, up, rows, cols, in_row_stride);
    FGI_CUDA_LAUNCHED(fn, "silu_mul_kernel");
    return FG_OK;
}

extern "C" fg_status fgi_cuda_add_rows(const char *fn, float *x, const float *delta,
                                       const float *b, long long rows, int cols,
                                       cudaStream_t stream)
{
    add_rows_kernel<float><<<fgi_grid_blocks(rows * cols, kThreads), kThreads, 0, stream>>>(
        x, delta, b, rows, cols);
    FGI_CUDA_LAUNCHED(fn, "add_rows_kernel");
    return FG_OK;
}

extern "C" fg_status fg_cuda_gelu(float *y, const float *x, int n, cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_gelu";
    FGI_TRY(fgi_check_elementwise(fn, y, "x", x, n));
    FGI_TRY(fgi_cuda_check_device(fn));
    return fgi_cuda_bias_gelu(fn, y, x, NULL, 1, n, stream);
}

/* b may be NULL; y == x allowed; b must not overlap y. */
extern "C" fg_status fg_cuda_bias_gelu(float *y, const float *x, const float *b, int rows,
                                       int cols, cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_bias_gelu";
    size_t elems;
    FGI_TRY(fgi_check_ptr(fn, "y", y));
    FGI_TRY(fgi_check_ptr(fn, "x", x));
    FGI_TRY(fgi_check_min(fn, "rows", rows, 1));
    FGI_TRY(fgi_check_min(fn, "cols", cols, 1));
    FGI_TRY(fgi_check_elems(fn, "x (rows*cols)", &elems, 2, (long long)rows,
                          (long long)cols));
    const size_t bytes = sizeof(float) * elems;
    if (y != x) FGI_TRY(fgi_check_disjoint(fn, "y", y, bytes, "x", x, bytes));
    if (b != NULL)
        FGI_TRY(fgi_check_disjoint(fn, "y", y, bytes, "b", b, sizeof(float) * (size_t)cols));
    FGI_TRY(fgi_cuda_check_device(fn));
    return fgi_cuda_bias_gelu(fn, y, x, b, rows, cols, stream);
}

extern "C" fg_status fg_cuda_silu_mul(float *y, const float *gate, const float *up, int n,
                                      cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_silu_mul";
    FGI_TRY(fgi_check_elementwise(fn, y, "gate", gate, n));
    FGI_TRY(fgi_check_elementwise(fn, y, "up", up, n));
    FGI_TRY(fgi_cuda_check_device(fn));
    return fgi_cuda_silu_mul_rows(fn, y, gate, up, 1, n, n, stream);
}
