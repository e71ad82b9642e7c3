/* CUDA rotary position embedding (docs/contract.md §11), standalone and fused into the
 * decoder's "q|k|v bias + RoPE + append to the KV cache" step.
 *
 * Interleaved pairs: pair j = (x[2j], x[2j+1]) at absolute position p turns
 * by theta = p * base^(-2j/head_dim) (the fused kernel: or p * a scaled
 * model's inverse frequency from a table, docs/contract.md §14). The angle, its sine and cosine and the
 * rotation are computed in double, as in host/ref/ref_rope.c: in fp32, p * inv_freq
 * at p = 100000 would already be off by about 0.004 rad.
 * Design: one thread per pair (per head, token and pair index); the fused
 * kernel walks the whole (T, [q | k | v]) projection, rotating q in place and
 * writing rotated k and plain v straight into their cache rows. Element
 * type: x, qkv, its bias and the caches hold T (cuda/common/dtype.cuh:
 * float, bf16, f16); angles and rotation stay in double for every T (as
 * precise as fp32's), the biased value is fp32, and the result is rounded
 * to fp32 and then to T on store. */
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "ops_internal.h"
#include "reduce.cuh"
#include "rope.cuh"
#include "validate.h"

#include <stdlib.h>

namespace {

/* x (n_head, seq, head_dim) in place; pos (seq) on the device. */
template <typename T>
__global__ void rope_kernel(T *x, long long n_rows, int seq, int head_dim, const int *pos,
                            double base)
{
    const int half = head_dim / 2;
    const long long pairs = n_rows * half;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < pairs;
         e += (long long)gridDim.x * blockDim.x) {
        const long long row = e / half;
        const int pair = (int)(e % half);
        T *v = x + row * head_dim + 2 * pair;
        fgi_rotate_pair(v, v + 1, pos[row % seq], pair, head_dim, base);
    }
}

} // namespace

/* The positions are checked on the host (they must be >= 0) before any
 * launch: this standalone op pays a device-to-host copy and a stream
 * synchronisation for that. The decoder computes its positions itself and
 * uses the fused kernel below instead. */
static fg_status rope(const char *fn, fg_dtype dtype, void *x, int n_head, int seq, int head_dim,
                      const int *pos, double base, cudaStream_t stream)
{
    FGI_TRY(fgi_with_dtype(fn, dtype, [](auto) { return FG_OK; }));
    FGI_TRY(fgi_check_rope(fn, (const float *)x, n_head, seq, head_dim, pos, base));
    FGI_TRY(fgi_cuda_check_device(fn));
    int *host_pos;
    FGI_TRY(fgi_alloc(fn, (void **)&host_pos, (size_t)seq, sizeof(int)));
    cudaError_t err = cudaMemcpyAsync(host_pos, pos, sizeof(int) * (size_t)seq,
                                      cudaMemcpyDeviceToHost, stream);
    if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        free(host_pos);
        return fgi_fail(FG_ERR_CUDA, "%s: copying 'pos' to the host failed: %s", fn,
                       cudaGetErrorString(err));
    }
    fg_status st = fgi_check_positions(fn, host_pos, seq);
    free(host_pos);
    if (st != FG_OK) return st;

    const long long rows = (long long)n_head * seq;
    const int threads = 256;
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        rope_kernel<T><<<fgi_grid_blocks(rows * (head_dim / 2), threads), threads, 0, stream>>>(
            static_cast<T *>(x), rows, seq, head_dim, pos, base);
        FGI_CUDA_LAUNCHED(fn, "rope_kernel");
        return FG_OK;
    });
}

extern "C" fg_status fg_cuda_rope_typed(fg_dtype dtype, void *x, int n_head, int seq,
                                        int head_dim, const int *pos, double base,
                                        cudaStream_t stream)
{
    return rope("fg_cuda_rope_typed", dtype, x, n_head, seq, head_dim, pos, base, stream);
}

extern "C" fg_status fg_cuda_rope(float *x, int n_head, int seq, int head_dim,
                                  const int *pos, double base, cudaStream_t stream)
{
    return rope("fg_cuda_rope", FG_DTYPE_F32, x, n_head, seq, head_dim, pos, base, stream);
}

namespace {

/* fgi_qkv_append_args for element type T (the same fields, in the same
 * order). */
template <typename T>
struct qkv_append_view {
    T *qkv;
    const T *bias;
    T *k_cache, *v_cache;
    int tokens, n_head, n_kv_head, head_dim, capacity, pos0; /* tokens: fgi_qkv_append_args::T */
    const int *pos0_dev;
    int use_rope;
    double rope_base;
    const double *rope_inv_freq;
};

/* qkv (T, heads*head_dim) with heads = n_head + 2*n_kv_head. One thread per
 * (token, head, pair); an odd head_dim (possible without RoPE) leaves a last
 * "pair" of one element. */
template <typename T>
__global__ void qkv_rope_append_kernel(qkv_append_view<T> a)
{
    const int heads = a.n_head + 2 * a.n_kv_head, pairs = (a.head_dim + 1) / 2;
    const long long width = (long long)heads * a.head_dim;
    const long long total = (long long)a.tokens * heads * pairs;
    const int pos0 = a.pos0_dev != nullptr ? *a.pos0_dev : a.pos0;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const int pair = (int)(e % pairs);
        const int head = (int)((e / pairs) % heads);
        const long long t = e / ((long long)pairs * heads);
        const long long col = (long long)head * a.head_dim + 2 * pair;
        const bool has_second = 2 * pair + 1 < a.head_dim;
        T *row = a.qkv + t * width;
        float v0 = fgi_load1(row + col), v1 = has_second ? fgi_load1(row + col + 1) : 0.0f;
        if (a.bias) {
            v0 += fgi_load1(a.bias + col);
            if (has_second) v1 += fgi_load1(a.bias + col + 1);
        }
        const long long pos = (long long)pos0 + t;
        const bool is_q = head < a.n_head, is_k = !is_q && head < a.n_head + a.n_kv_head;
        if (a.use_rope && (is_q || is_k))
            fgi_rotate_pair(&v0, &v1, pos, pair, a.head_dim, a.rope_base, a.rope_inv_freq);
        T *dst;
        if (is_q) {
            dst = row + col;
        } else {
            const int g = is_k ? head - a.n_head : head - a.n_head - a.n_kv_head;
            T *cache = is_k ? a.k_cache : a.v_cache;
            dst = cache + ((long long)g * a.capacity + pos) * a.head_dim + 2 * pair;
        }
        fgi_store1(dst, v0);
        if (has_second) fgi_store1(dst + 1, v1);
    }
}

} // namespace

extern "C" fg_status fgi_cuda_qkv_rope_append_typed(const char *fn, fg_dtype dtype,
                                                    const fgi_qkv_append_args *a,
                                                    cudaStream_t stream)
{
    const long long heads = a->n_head + 2LL * a->n_kv_head;
    const long long total = (long long)a->T * heads * ((a->head_dim + 1) / 2);
    const int threads = 256;
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        const qkv_append_view<T> v = {static_cast<T *>(a->qkv),
                                      static_cast<const T *>(a->bias),
                                      static_cast<T *>(a->k_cache),
                                      static_cast<T *>(a->v_cache),
                                      a->T,
                                      a->n_head,
                                      a->n_kv_head,
                                      a->head_dim,
                                      a->capacity,
                                      a->pos0,
                                      a->pos0_dev,
                                      a->use_rope,
                                      a->rope_base,
                                      a->rope_inv_freq};
        qkv_rope_append_kernel<T><<<fgi_grid_blocks(total, threads), threads, 0, stream>>>(v);
        FGI_CUDA_LAUNCHED(fn, "qkv_rope_append_kernel");
        return FG_OK;
    });
}

extern "C" fg_status fgi_cuda_qkv_rope_append(const char *fn, const fgi_qkv_append_args *a,
                                              cudaStream_t stream)
{
    return fgi_cuda_qkv_rope_append_typed(fn, FG_DTYPE_F32, a, stream);
}
