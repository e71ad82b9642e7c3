/* CUDA elementwise operations: GELU, bias + GELU, SiLU-multiply and the
 * residual add (docs/contract.md §12-§14).
 *
 * GELU (tanh form) and SiLU come from activation.cuh. Biases are
 * (cols) vectors broadcast over rows. In place (y == x) is allowed.
 * Element type: tensors hold T (cuda/common/dtype.cuh: float, bf16, f16),
 * converted to fp32 on load and rounded back once on store; the residual
 * add keeps x in fp32 and reads a T delta and bias.
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

/* In: the type of gate and up (T, or fp32 from a GEMM's fp32 output). */
template <typename T, typename In = T>
__global__ void silu_mul_kernel(T *y, const In *gate, const In *up, long long rows, int cols,
                                long long in_row_stride)
{
    GRID_STRIDE(e, rows * cols)
    {
        const long long in = (e / cols) * in_row_stride + e % cols;
        fgi_store1(y + e, fgi_silu(fgi_load1(gate + in)) * fgi_load1(up + in));
    }
}

template <typename T>
__global__ void add_rows_kernel(float *x, const T *delta, const T *b, long long rows, int cols)
{
    GRID_STRIDE(e, rows * cols)
    {
        fgi_store1(x + e, fgi_load1(x + e) + (b ? fgi_load1(delta + e) + fgi_load1(b + e % cols)
                                                : fgi_load1(delta + e)));
    }
}

static const int kThreads = 256;

} // namespace

extern "C" fg_status fgi_cuda_bias_gelu_typed(const char *fn, fg_dtype dtype, void *y,
                                              const void *x, const void *b, long long rows,
                                              int cols, cudaStream_t stream)
{
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        bias_gelu_kernel<T><<<fgi_grid_blocks(rows * cols, kThreads), kThreads, 0, stream>>>(
            static_cast<T *>(y), static_cast<const T *>(x), static_cast<const T *>(b), rows,
            cols);
        FGI_CUDA_LAUNCHED(fn, "bias_gelu_kernel");
        return FG_OK;
    });
}

extern "C" fg_status fgi_cuda_silu_mul_rows_typed(const char *fn, fg_dtype dtype, void *y,
                                                  const void *gate, const void *up,
                                                  long long rows, int cols,
                                                  long long in_row_stride, cudaStream_t stream)
{
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        silu_mul_kernel<T><<<fgi_grid_blocks(rows * cols, kThreads), kThreads, 0, stream>>>(
            static_cast<T *>(y), static_cast<const T *>(gate), static_cast<const T *>(up), rows,
            cols, in_row_stride);
        FGI_CUDA_LAUNCHED(fn, "silu_mul_kernel");
        return FG_OK;
    });
}

extern "C" fg_status fgi_cuda_silu_mul_rows_f32in(const char *fn, fg_dtype dtype, void *y,
                                                  const float *gate, const float *up,
                                                  long long rows, int cols,
                                                  long long in_row_stride, cudaStream_t stream)
{
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        silu_mul_kernel<T, float><<<fgi_grid_blocks(rows * cols, kThreads), kThreads, 0,
                                    stream>>>(static_cast<T *>(y), gate, up, rows, cols,
                                              in_row_stride);
        FGI_CUDA_LAUNCHED(fn, "silu_mul_kernel");
        return FG_OK;
    });
}

extern "C" fg_status fgi_cuda_add_rows_typed(const char *fn, fg_dtype dtype, float *x,
                                             const void *delta, const void *b, long long rows,
                                             int cols, cudaStream_t stream)
{
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        add_rows_kernel<T><<<fgi_grid_blocks(rows * cols, kThreads), kThreads, 0, stream>>>(
            x, static_cast<const T *>(delta), static_cast<const T *>(b), rows, cols);
        FGI_CUDA_LAUNCHED(fn, "add_rows_kernel");
        return FG_OK;
    });
}

extern "C" fg_status fgi_cuda_bias_gelu(const char *fn, float *y, const float *x,
                                        const float *b, long long rows, int cols,
                                        cudaStream_t stream)
{
    return fgi_cuda_bias_gelu_typed(fn, FG_DTYPE_F32, y, x, b, rows, cols, stream);
}

extern "C" fg_status fgi_cuda_silu_mul_rows(const char *fn, float *y, const float *gate,
                                            const float *up, long long rows, int cols,
                                            long long in_row_stride, cudaStream_t stream)
{
    return fgi_cuda_silu_mul_rows_typed(fn, FG_DTYPE_F32, y, gate, up, rows, cols, in_row_stride,
                                        stream);
}

extern "C" fg_status fgi_cuda_add_rows(const char *fn, float *x, const float *delta,
                                       const float *b, long long rows, int cols,
                                       cudaStream_t stream)
{
    return fgi_cuda_add_rows_typed(fn, FG_DTYPE_F32, x, delta, b, rows, cols, stream);
}

/* FG_ERR_INVALID_ARG unless dtype is in the enum; its element size. */
static fg_status elem_size(const char *fn, fg_dtype dtype, size_t *es)
{
    FGI_TRY(fgi_with_dtype(fn, dtype, [](auto) { return FG_OK; }));
    *es = fg_dtype_size(dtype);
    return FG_OK;
}

static fg_status gelu(const char *fn, fg_dtype dtype, void *y, const void *x, int n,
                      cudaStream_t stream)
{
    size_t es;
    FGI_TRY(elem_size(fn, dtype, &es));
    FGI_TRY(fgi_check_elementwise_sized(fn, es, y, "x", x, n));
    FGI_TRY(fgi_cuda_check_device(fn));
    return fgi_cuda_bias_gelu_typed(fn, dtype, y, x, NULL, 1, n, stream);
}

extern "C" fg_status fg_cuda_gelu_typed(fg_dtype dtype, void *y, const void *x, int n,
                                        cudaStream_t stream)
{
    return gelu("fg_cuda_gelu_typed", dtype, y, x, n, stream);
}

extern "C" fg_status fg_cuda_gelu(float *y, const float *x, int n, cudaStream_t stream)
{
    return gelu("fg_cuda_gelu", FG_DTYPE_F32, y, x, n, stream);
}

/* b may be NULL; y == x allowed; b must not overlap y. */
static fg_status bias_gelu(const char *fn, fg_dtype dtype, void *y, const void *x, const void *b,
                           int rows, int cols, cudaStream_t stream)
{
    size_t elems, es;
    FGI_TRY(elem_size(fn, dtype, &es));
    FGI_TRY(fgi_check_ptr(fn, "y", y));
    FGI_TRY(fgi_check_ptr(fn, "x", x));
    FGI_TRY(fgi_check_min(fn, "rows", rows, 1));
    FGI_TRY(fgi_check_min(fn, "cols", cols, 1));
    FGI_TRY(fgi_check_elems(fn, "x (rows*cols)", &elems, 2, (long long)rows,
                          (long long)cols));
    const size_t bytes = es * elems;
    if (y != x) FGI_TRY(fgi_check_disjoint(fn, "y", y, bytes, "x", x, bytes));
    if (b != NULL) FGI_TRY(fgi_check_disjoint(fn, "y", y, bytes, "b", b, es * (size_t)cols));
    FGI_TRY(fgi_cuda_check_device(fn));
    return fgi_cuda_bias_gelu_typed(fn, dtype, y, x, b, rows, cols, stream);
}

extern "C" fg_status fg_cuda_bias_gelu_typed(fg_dtype dtype, void *y, const void *x,
                                             const void *b, int rows, int cols,
                                             cudaStream_t stream)
{
    return bias_gelu("fg_cuda_bias_gelu_typed", dtype, y, x, b, rows, cols, stream);
}

extern "C" fg_status fg_cuda_bias_gelu(float *y, const float *x, const float *b, int rows,
                                       int cols, cudaStream_t stream)
{
    return bias_gelu("fg_cuda_bias_gelu", FG_DTYPE_F32, y, x, b, rows, cols, stream);
}

static fg_status silu_mul(const char *fn, fg_dtype dtype, void *y, const void *gate,
                          const void *up, int n, cudaStream_t stream)
{
    size_t es;
    FGI_TRY(elem_size(fn, dtype, &es));
    FGI_TRY(fgi_check_elementwise_sized(fn, es, y, "gate", gate, n));
    FGI_TRY(fgi_check_elementwise_sized(fn, es, y, "up", up, n));
    FGI_TRY(fgi_cuda_check_device(fn));
    return fgi_cuda_silu_mul_rows_typed(fn, dtype, y, gate, up, 1, n, n, stream);
}

extern "C" fg_status fg_cuda_silu_mul_typed(fg_dtype dtype, void *y, const void *gate,
                                            const void *up, int n, cudaStream_t stream)
{
    return silu_mul("fg_cuda_silu_mul_typed", dtype, y, gate, up, n, stream);
}

extern "C" fg_status fg_cuda_silu_mul(float *y, const float *gate, const float *up, int n,
                                      cudaStream_t stream)
{
    return silu_mul("fg_cuda_silu_mul", FG_DTYPE_F32, y, gate, up, n, stream);
}
