/* CUDA split / merge of attention heads (docs/contract.md §8): pure layout changes.
 *
 * split: x (seq, n_head*head_dim) -> out (n_head, seq, head_dim), head h
 * taking columns [h*head_dim, (h+1)*head_dim); merge is the inverse. The GPU
 * decoder never needs them: it reads q in place from its fused projection
 * and writes each head straight into its columns of the merged output.
 * Design: both are the same (a, b, d) -> (b, a, d) swap of the two outer
 * axes; one thread per output element, so writes are coalesced and reads
 * come in contiguous runs of head_dim elements. A pure copy: the kernel is
 * templated on the element type T (float, bf16, f16) and never converts,
 * so a 16-bit result is bit-exact. */
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "ops_internal.h"
#include "reduce.cuh"
#include "validate.h"

namespace {

/* x (a, b, d) -> out (b, a, d). */
template <typename T>
__global__ void swap_outer_axes_kernel(T *__restrict__ out, const T *__restrict__ x, int a,
                                       int b, int d)
{
    const long long total = (long long)a * b * d;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const long long k = e % d, rest = e / d;  /* out index (jb, ia, k) */
        const long long ia = rest % a, jb = rest / a;
        out[e] = x[(ia * b + jb) * d + k];
    }
}

static fg_status swap_outer_axes(const char *fn, fg_dtype dtype, void *out, const void *x,
                                 int a, int b, int d, cudaStream_t stream)
{
    const int threads = 256;
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        swap_outer_axes_kernel<T><<<fgi_grid_blocks((long long)a * b * d, threads), threads, 0,
                                    stream>>>(static_cast<T *>(out), static_cast<const T *>(x),
                                              a, b, d);
        FGI_CUDA_LAUNCHED(fn, "swap_outer_axes_kernel");
        return FG_OK;
    });
}

/* split (a = seq, b = n_head) and merge (a = n_head, b = seq). */
static fg_status swap_heads(const char *fn, fg_dtype dtype, void *out, const void *x, int a,
                            int b, int head_dim, const char *a_name, const char *b_name,
                            cudaStream_t stream)
{
    FGI_TRY(fgi_with_dtype(fn, dtype, [](auto) { return FG_OK; }));
    FGI_TRY(fgi_check_swap_heads_sized(fn, fg_dtype_size(dtype), out, x, a, b, head_dim, a_name,
                                       b_name));
    FGI_TRY(fgi_cuda_check_device(fn));
    return swap_outer_axes(fn, dtype, out, x, a, b, head_dim, stream);
}

} // namespace

extern "C" fg_status fg_cuda_split_heads_typed(fg_dtype dtype, void *out, const void *x,
                                               int seq, int n_head, int head_dim,
                                               cudaStream_t stream)
{
    return swap_heads("fg_cuda_split_heads_typed", dtype, out, x, seq, n_head, head_dim, "seq",
                      "n_head", stream);
}

extern "C" fg_status fg_cuda_split_heads(float *out, const float *x, int seq, int n_head,
                                         int head_dim, cudaStream_t stream)
{
    return swap_heads("fg_cuda_split_heads", FG_DTYPE_F32, out, x, seq, n_head, head_dim, "seq",
                      "n_head", stream);
}

extern "C" fg_status fg_cuda_merge_heads_typed(fg_dtype dtype, void *out, const void *x,
                                               int n_head, int seq, int head_dim,
                                               cudaStream_t stream)
{
    return swap_heads("fg_cuda_merge_heads_typed", dtype, out, x, n_head, seq, head_dim,
                      "n_head", "seq", stream);
}

extern "C" fg_status fg_cuda_merge_heads(float *out, const float *x, int n_head, int seq,
                                         int head_dim, cudaStream_t stream)
{
    return swap_heads("fg_cuda_merge_heads", FG_DTYPE_F32, out, x, n_head, seq, head_dim,
                      "n_head", "seq", stream);
}
