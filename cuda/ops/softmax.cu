/* CUDA softmax over the middle axis of (outer, n, inner), and the causal mask
 * (docs/contract.md §4, §5).
 *
 * Semantics are those of host/ref/ref_softmax.c: max-shifted; -inf entries get 0;
 * a slice that is all -inf gives zeros; when the maximum is +inf the +inf
 * entries share the probability equally and the rest get 0. y == x allowed
 * (each element is read and written by the same thread).
 * Design: contiguous rows (inner == 1) get one block per row: a block max,
 * a block sum of expf(x - max), then a write pass, all in fp32 with
 * warp-shuffle reductions; strided slices (inner > 1) get one thread per
 * slice, so neighbouring threads read neighbouring addresses. Element type:
 * x and y hold T (cuda/common/dtype.cuh: float, bf16, f16); the max, the
 * sum and every exponential are fp32, and each output is rounded once. */
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "ops_internal.h"
#include "reduce.cuh"
#include "validate.h"

#include <math.h>

namespace {

/* One slice of n values at `stride`, walked by `step` cooperating threads
 * starting at `first`; `reduce_*` combine the partials of the cooperating
 * threads (identity for a single thread). */
template <typename T, typename MaxAll, typename SumAll, typename CountAll>
__device__ void softmax_slice(T *y, const T *x, int n, long long stride, int first, int step,
                              MaxAll max_all, SumAll sum_all, CountAll count_all)
{
    float m = -INFINITY;
    for (int j = first; j < n; j += step) m = fmaxf(m, fgi_load1(x + j * stride));
    m = max_all(m);
    if (m == INFINITY || m == -INFINITY) {
        int top = 0;
        for (int j = first; j < n; j += step) top += (fgi_load1(x + j * stride) == m);
        top = count_all(top);
        const float share = (m == INFINITY) ? 1.0f / (float)top : 0.0f;
        for (int j = first; j < n; j += step)
            fgi_store1(y + j * stride, (fgi_load1(x + j * stride) == m) ? share : 0.0f);
        return;
    }
    float s = 0.0f;
    for (int j = first; j < n; j += step) s += expf(fgi_load1(x + j * stride) - m);
    s = sum_all(s);
    for (int j = first; j < n; j += step)
        fgi_store1(y + j * stride, expf(fgi_load1(x + j * stride) - m) / s);
}

/* x, y (rows, n): block r handles row r. */
template <typename T>
__global__ void softmax_rows_kernel(T *y, const T *x, int n)
{
    __shared__ float fscratch[32];
    __shared__ int iscratch[32];
    const long long row = blockIdx.x;
    softmax_slice(
        y + row * n, x + row * n, n, 1, threadIdx.x, blockDim.x,
        [&](float v) { return fgi_block_reduce(v, -INFINITY, fgi_max_op(), fscratch); },
        [&](float v) { return fgi_block_reduce(v, 0.0f, fgi_sum_op(), fscratch); },
        [&](int v) { return fgi_block_reduce(v, 0, fgi_sum_op(), iscratch); });
}

/* x, y (outer, n, inner): thread s handles slice (s / inner, s % inner). */
template <typename T>
__global__ void softmax_strided_kernel(T *y, const T *x, long long outer, int n,
                                       long long inner)
{
    const long long slices = outer * inner;
    for (long long s = blockIdx.x * (long long)blockDim.x + threadIdx.x; s < slices;
         s += (long long)gridDim.x * blockDim.x) {
        const long long base = (s / inner) * n * inner + s % inner;
        softmax_slice(
            y + base, x + base, n, inner, 0, 1, [](float v) { return v; },
            [](float v) { return v; }, [](int v) { return v; });
    }
}

} // namespace

extern "C" fg_status fgi_cuda_softmax_typed(const char *fn, fg_dtype dtype, void *y,
                                            const void *x, long long outer, int n,
                                            long long inner, cudaStream_t stream)
{
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        T *yt = static_cast<T *>(y);
        const T *xt = static_cast<const T *>(x);
        if (inner == 1 && outer <= 0x7fffffffLL) {
            const int threads = fgi_row_threads(n, 8);
            softmax_rows_kernel<T><<<(unsigned)outer, threads, 0, stream>>>(yt, xt, n);
            FGI_CUDA_LAUNCHED(fn, "softmax_rows_kernel");
            return FG_OK;
        }
        const int threads = 256;
        softmax_strided_kernel<T><<<fgi_grid_blocks(outer * inner, threads), threads, 0,
                                    stream>>>(yt, xt, outer, n, inner);
        FGI_CUDA_LAUNCHED(fn, "softmax_strided_kernel");
        return FG_OK;
    });
}

extern "C" fg_status fgi_cuda_softmax(const char *fn, float *y, const float *x,
                                      long long outer, int n, long long inner,
                                      cudaStream_t stream)
{
    return fgi_cuda_softmax_typed(fn, FG_DTYPE_F32, y, x, outer, n, inner, stream);
}

static fg_status softmax(const char *fn, fg_dtype dtype, void *y, const void *x, int outer,
                         int n, int inner, cudaStream_t stream)
{
    FGI_TRY(fgi_with_dtype(fn, dtype, [](auto) { return FG_OK; }));
    FGI_TRY(fgi_check_softmax_sized(fn, fg_dtype_size(dtype), y, x, outer, n, inner));
    FGI_TRY(fgi_cuda_check_device(fn));
    return fgi_cuda_softmax_typed(fn, dtype, y, x, outer, n, inner, stream);
}

extern "C" fg_status fg_cuda_softmax_typed(fg_dtype dtype, void *y, const void *x, int outer,
                                           int n, int inner, cudaStream_t stream)
{
    return softmax("fg_cuda_softmax_typed", dtype, y, x, outer, n, inner, stream);
}

extern "C" fg_status fg_cuda_softmax(float *y, const float *x, int outer, int n,
                                     int inner, cudaStream_t stream)
{
    return softmax("fg_cuda_softmax", FG_DTYPE_F32, y, x, outer, n, inner, stream);
}

namespace {

/* mask (q_len, kv_len): 1 where key j is masked for query i (j > i + shift). */
__global__ void causal_mask_kernel(uint8_t *mask, int q_len, int kv_len)
{
    const long long total = (long long)q_len * kv_len, shift = (long long)kv_len - q_len;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const long long i = e / kv_len, j = e % kv_len;
        mask[e] = (uint8_t)(j > i + shift);
    }
}

} // namespace

extern "C" fg_status fg_cuda_causal_mask(uint8_t *mask, int q_len, int kv_len,
                                         cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_causal_mask";
    FGI_TRY(fgi_check_causal_mask(fn, mask, q_len, kv_len));
    FGI_TRY(fgi_cuda_check_device(fn));
    const int threads = 256;
    causal_mask_kernel<<<fgi_grid_blocks((long long)q_len * kv_len, threads), threads,
                         0, stream>>>(mask, q_len, kv_len);
    FGI_CUDA_LAUNCHED(fn, "causal_mask_kernel");
    return FG_OK;
}
