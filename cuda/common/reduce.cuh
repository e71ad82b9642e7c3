/* Warp and block reductions, the one copy every kernel uses (row kernels:
 * softmax, norms; attention: row max / sum over the lanes that share a row).
 *
 * A warp reduction over `width` lanes (a power of two <= 32) combines each
 * aligned group of `width` lanes and leaves the group's result in every lane
 * of it; every lane of the warp must call it (full-mask shuffles). The
 * butterfly order is fixed (offsets width/2, ..., 1), so a result does not
 * depend on which lane computes it.
 *
 * A block reduction leaves the result in every thread. It needs blockDim.x to
 * be a multiple of 32 (at most 1024) and a 32-entry __shared__ scratch array,
 * and it ends with a barrier so the scratch can be reused at once. Every
 * thread of the block must call it (it contains __syncthreads). */
#ifndef FLASHGPT_CUDA_REDUCE_CUH
#define FLASHGPT_CUDA_REDUCE_CUH

#include <cuda_runtime.h>

struct fgi_sum_op {
    template <typename T>
    __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

/* fmaxf ignores NaN, like the reference's `x > max` scan. */
struct fgi_max_op {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <int width = 32, typename T, typename Op>
__device__ __forceinline__ T fgi_warp_reduce(T v, Op op)
{
    static_assert(width >= 1 && width <= 32 && (width & (width - 1)) == 0,
                  "a warp reduction spans a power of two of lanes, at most 32");
#pragma unroll
    for (int offset = width / 2; offset > 0; offset >>= 1)
        v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

/* Sum / max over aligned groups of `width` lanes. */
template <int width = 32>
__device__ __forceinline__ float fgi_warp_sum(float v)
{
    return fgi_warp_reduce<width>(v, fgi_sum_op());
}

template <int width = 32>
__device__ __forceinline__ float fgi_warp_max(float v)
{
    return fgi_warp_reduce<width>(v, fgi_max_op());
}

template <typename T, typename Op>
__device__ inline T fgi_block_reduce(T v, T identity, Op op, T *scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int n_warps = (blockDim.x + 31) >> 5;
    v = fgi_warp_reduce(v, op);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        T w = lane < n_warps ? scratch[lane] : identity;
        w = fgi_warp_reduce(w, op);
        if (lane == 0) scratch[0] = w;
    }
    __syncthreads();
    const T result = scratch[0];
    __syncthreads(); /* everyone has read scratch[0] before it is reused */
    return result;
}

/* Threads for a row kernel: about `per_thread` elements each, whole warps,
 * between 32 and 1024. */
static inline int fgi_row_threads(long long cols, int per_thread)
{
    long long t = (cols + per_thread - 1) / per_thread;
    t = (t + 31) / 32 * 32;
    if (t < 32) t = 32;
    if (t > 1024) t = 1024;
    return (int)t;
}

/* Blocks for a grid-stride loop over n elements with `threads` per block. */
static inline unsigned fgi_grid_blocks(long long n, int threads)
{
    long long b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > (1LL << 20)) b = 1LL << 20; /* the loop covers the rest */
    return (unsigned)b;
}

#endif /* FLASHGPT_CUDA_REDUCE_CUH */
