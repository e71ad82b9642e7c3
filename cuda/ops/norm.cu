/* CUDA LayerNorm and RMSNorm over the last axis, alone or fused with the
 * residual add before them (docs/contract.md §12-§14).
 *
 * LayerNorm: y = g * (x - mean) / sqrt(var + eps) + b with the biased
 * variance; RMSNorm: y = g * x / sqrt(mean(x^2) + eps). The fused form first
 * does x += delta (+ bias), stores the new x, and normalises it. y == x is
 * allowed. Sums are fp32; LayerNorm centres every value on the row's first
 * element before summing, then takes the variance in a second pass around
 * the mean, so a large common offset costs no precision.
 * Design: one block per row, a thread per element up to 1024 columns; the
 * row is read from global memory once into
 * shared memory (rows up to 12000 floats; longer rows are re-read from
 * global), block reductions use warp shuffles, and the affine is applied in
 * the final write pass. Element type: x, y, delta, its bias, g and b hold T
 * (cuda/common/dtype.cuh; only float is instantiated); sums and the row
 * cache are fp32. */
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "ops_internal.h"
#include "reduce.cuh"
#include "validate.h"

/* Rows cached in dynamic shared memory: static + dynamic shared memory must
 * stay within the 48 KiB a launch gets without opting in. */
#define NORM_SMEM_FLOATS 12000

namespace {

/* fgi_norm_args for element type T (the same fields, in the same order). */
template <typename T>
struct norm_view {
    T *y;
    float *x;
    const T *delta, *delta_bias;
    const T *g, *b;
    long long rows;
    int cols;
    float eps;
    int rms;
};

/* CACHE: the row lives in shared memory after the first pass. */
template <typename T, bool RMS, bool CACHE>
__global__ void norm_kernel(norm_view<T> a)
{
    extern __shared__ float row_cache[];
    __shared__ float scratch[32];
    const long long r = blockIdx.x;
    const int cols = a.cols;
    float *x = a.x + r * cols;
    T *y = a.y + r * cols;
    const T *delta = a.delta ? a.delta + r * cols : NULL;

    /* The value of element j after the (optional) residual add. */
    auto input = [&](int j) {
        float v = fgi_load1(x + j);
        if (delta)
            v += a.delta_bias ? fgi_load1(delta + j) + fgi_load1(a.delta_bias + j)
                              : fgi_load1(delta + j);
        return v;
    };
    /* LayerNorm's shift: every thread reads element 0 before anyone writes x. */
    const float shift = RMS ? 0.0f : input(0);
    if (delta) __syncthreads();

    float acc = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float v = input(j);
        if (delta) fgi_store1(x + j, v);
        if (CACHE) row_cache[j] = v;
        acc += RMS ? v * v : v - shift;
    }
    acc = fgi_block_reduce(acc, 0.0f, fgi_sum_op(), scratch);
    /* Later passes read back only elements this thread wrote (or x itself). */
    auto value = [&](int j) { return CACHE ? row_cache[j] : fgi_load1(x + j); };

    if (RMS) {
        const float inv_rms = 1.0f / sqrtf(acc / (float)cols + a.eps);
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            fgi_store1(y + j, fgi_load1(a.g + j) * (value(j) * inv_rms));
        return;
    }
    const float centred_mean = acc / (float)cols; /* mean - shift */
    float ss = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float d = (value(j) - shift) - centred_mean;
        ss += d * d;
    }
    ss = fgi_block_reduce(ss, 0.0f, fgi_sum_op(), scratch);
    const float inv_std = 1.0f / sqrtf(ss / (float)cols + a.eps);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float norm = ((value(j) - shift) - centred_mean) * inv_std;
        fgi_store1(y + j, fgi_load1(a.g + j) * norm + (a.b ? fgi_load1(a.b + j) : 0.0f));
    }
}

template <typename T, bool RMS>
fg_status launch_norm(const char *fn, const norm_view<T> &a, cudaStream_t stream)
{
    /* An element per thread up to 1024 columns: each pass is then one round
     * of independent loads, not a chain of dependent ones (the residual
     * store into x keeps the compiler from hoisting the next loads). At one
     * row per decode step, the chain was the kernel's whole time. */
    const int threads = fgi_row_threads(a.cols, 1);
    if (a.cols <= NORM_SMEM_FLOATS) {
        norm_kernel<T, RMS, true><<<(unsigned)a.rows, threads,
                                    sizeof(float) * (size_t)a.cols, stream>>>(a);
    } else {
        norm_kernel<T, RMS, false><<<(unsigned)a.rows, threads, 0, stream>>>(a);
    }
    FGI_CUDA_LAUNCHED(fn, "norm_kernel");
    return FG_OK;
}

} // namespace

extern "C" fg_status fgi_cuda_norm_typed(const char *fn, fg_dtype dtype, const fgi_norm_args *a,
                                         cudaStream_t stream)
{
    if (a->rows > 0x7fffffffLL)
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: more than 2^31-1 rows (got %lld)", fn,
                       a->rows);
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        const norm_view<T> v = {static_cast<T *>(a->y),
                                a->x,
                                static_cast<const T *>(a->delta),
                                static_cast<const T *>(a->delta_bias),
                                static_cast<const T *>(a->g),
                                static_cast<const T *>(a->b),
                                a->rows,
                                a->cols,
                                a->eps,
                                a->rms};
        return a->rms ? launch_norm<T, true>(fn, v, stream) : launch_norm<T, false>(fn, v, stream);
    });
}

extern "C" fg_status fgi_cuda_norm(const char *fn, const fgi_norm_args *a,
                                   cudaStream_t stream)
{
    return fgi_cuda_norm_typed(fn, FG_DTYPE_F32, a, stream);
}

static fgi_norm_args norm_args(void *y, float *x, const void *delta, const void *delta_bias,
                               const void *g, const void *b, long long rows, int cols, float eps,
                               int rms)
{
    fgi_norm_args a;
    a.y = y;
    a.x = x;
    a.delta = delta;
    a.delta_bias = delta_bias;
    a.g = g;
    a.b = b;
    a.rows = rows;
    a.cols = cols;
    a.eps = eps;
    a.rms = rms;
    return a;
}

extern "C" fg_status fgi_cuda_model_norm(const char *fn, fg_dtype dtype, const fg_config *cfg,
                                         void *y, float *x, const void *delta,
                                         const void *delta_bias, const void *g, const void *b,
                                         long long rows, cudaStream_t stream)
{
    const int rms = cfg->arch == FG_ARCH_LLAMA;
    const fgi_norm_args a = norm_args(y, x, delta, delta_bias, g, rms ? NULL : b, rows,
                                      cfg->n_embd, cfg->norm_eps, rms);
    return fgi_cuda_norm_typed(fn, dtype, &a, stream);
}

static fg_status norm(const char *fn, fg_dtype dtype, void *y, float *x, const void *delta,
                      const void *g, const void *b, int rows, int cols, float eps, int rms,
                      cudaStream_t stream)
{
    FGI_TRY(fgi_cuda_check_device(fn));
    const fgi_norm_args a = norm_args(y, x, delta, NULL, g, b, rows, cols, eps, rms);
    return fgi_cuda_norm_typed(fn, dtype, &a, stream);
}

/* FG_ERR_INVALID_ARG unless dtype is in the enum (before any other check,
 * so the element size of the overlap checks is known). */
static fg_status check_dtype(const char *fn, fg_dtype dtype)
{
    return fgi_with_dtype(fn, dtype, [](auto) { return FG_OK; });
}

/* The public norms: fp32 and typed share these, each naming itself. The
 * fused residual add's delta (rows, cols) must not overlap x or y (y == x
 * is allowed for fp32). */
static fg_status norm_entry(const char *fn, fg_dtype dtype, void *y, float *x, int add,
                            const void *delta, const void *g, const void *b, int rows, int cols,
                            float eps, int rms, cudaStream_t stream)
{
    FGI_TRY(check_dtype(fn, dtype));
    const size_t es = fg_dtype_size(dtype);
    FGI_TRY(fgi_check_rowwise_sized(fn, es, y, sizeof(float), x, g, rows, cols, eps));
    if (add) {
        FGI_TRY(fgi_check_ptr(fn, "delta", delta));
        const size_t n = (size_t)rows * (size_t)cols;
        FGI_TRY(fgi_check_disjoint(fn, "delta", delta, es * n, "x", x, sizeof(float) * n));
        FGI_TRY(fgi_check_disjoint(fn, "delta", delta, es * n, "y", y, es * n));
    }
    return norm(fn, dtype, y, x, delta, g, b, rows, cols, eps, rms, stream);
}

/* x is only read by the plain norms: the kernel writes x only when a delta
 * is given. */
extern "C" fg_status fg_cuda_layer_norm_typed(fg_dtype dtype, void *y, const float *x,
                                              const void *g, const void *b, int rows, int cols,
                                              float eps, cudaStream_t stream)
{
    return norm_entry("fg_cuda_layer_norm_typed", dtype, y, (float *)x, 0, NULL, g, b, rows, cols,
                      eps, 0, stream);
}

extern "C" fg_status fg_cuda_layer_norm(float *y, const float *x, const float *g,
                                        const float *b, int rows, int cols, float eps,
                                        cudaStream_t stream)
{
    return norm_entry("fg_cuda_layer_norm", FG_DTYPE_F32, y, (float *)x, 0, NULL, g, b, rows, cols,
                      eps, 0, stream);
}

extern "C" fg_status fg_cuda_rms_norm_typed(fg_dtype dtype, void *y, const float *x,
                                            const void *g, int rows, int cols, float eps,
                                            cudaStream_t stream)
{
    return norm_entry("fg_cuda_rms_norm_typed", dtype, y, (float *)x, 0, NULL, g, NULL, rows, cols,
                      eps, 1, stream);
}

extern "C" fg_status fg_cuda_rms_norm(float *y, const float *x, const float *g, int rows,
                                      int cols, float eps, cudaStream_t stream)
{
    return norm_entry("fg_cuda_rms_norm", FG_DTYPE_F32, y, (float *)x, 0, NULL, g, NULL, rows, cols,
                      eps, 1, stream);
}

extern "C" fg_status fg_cuda_add_layer_norm_typed(fg_dtype dtype, void *y, float *x,
                                                  const void *delta, const void *g,
                                                  const void *b, int rows, int cols, float eps,
                                                  cudaStream_t stream)
{
    return norm_entry("fg_cuda_add_layer_norm_typed", dtype, y, x, 1, delta, g, b, rows, cols, eps,
                      0, stream);
}

extern "C" fg_status fg_cuda_add_layer_norm(float *y, float *x, const float *delta,
                                            const float *g, const float *b, int rows,
                                            int cols, float eps, cudaStream_t stream)
{
    return norm_entry("fg_cuda_add_layer_norm", FG_DTYPE_F32, y, x, 1, delta, g, b, rows, cols, eps,
                      0, stream);
}

extern "C" fg_status fg_cuda_add_rms_norm_typed(fg_dtype dtype, void *y, float *x,
                                                const void *delta, const void *g, int rows,
                                                int cols, float eps, cudaStream_t stream)
{
    return norm_entry("fg_cuda_add_rms_norm_typed", dtype, y, x, 1, delta, g, NULL, rows, cols, eps,
                      1, stream);
}

extern "C" fg_status fg_cuda_add_rms_norm(float *y, float *x, const float *delta,
                                          const float *g, int rows, int cols, float eps,
                                          cudaStream_t stream)
{
    return norm_entry("fg_cuda_add_rms_norm", FG_DTYPE_F32, y, x, 1, delta, g, NULL, rows, cols,
                      eps, 1, stream);
}
