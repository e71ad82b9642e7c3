/* The typed attention entry points (flashgpt/cuda_api.h): fg_cuda_attention
 * / _flash / mha / gqa / gqa_lse _typed.
 *
 * Conventions: FG_DTYPE_F32 calls the fp32 function of the same name
 * unchanged (its kernels, checks and messages); bf16 / f16 are validated
 * here with the same rules as fp32 (byte sizes of the element type for the
 * overlap checks) and run on the 16-bit tensor-core kernel
 * (attention_mma16.cu). Every check happens before anything is enqueued. */
#include "attention_kernels.cuh"
#include "check.h"
#include "validate.h"

namespace {

/* dtype must be an element type; FG_OK and *is16 say which path. */
fg_status check_dtype(const char *fn, fg_dtype dtype, bool *is16)
{
    if (dtype != FG_DTYPE_F32 && dtype != FG_DTYPE_BF16 && dtype != FG_DTYPE_F16)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'dtype' is not an element type (%d)", fn,
                       (int)dtype);
    *is16 = dtype != FG_DTYPE_F32;
    return FG_OK;
}

/* fgi_check_attention for 2-byte elements (and lse, fp32, when given). */
fg_status check16(const char *fn, const void *out, const float *lse, bool want_lse,
                  const void *q, const void *k, const void *v, int n_q_head, int n_kv_head,
                  int q_len, int kv_len, int head_dim)
{
    size_t q_elems, kv_elems;
    FGI_TRY(fgi_check_ptr(fn, "out", out));
    if (want_lse) FGI_TRY(fgi_check_ptr(fn, "lse", lse));
    FGI_TRY(fgi_check_ptr(fn, "q", q));
    FGI_TRY(fgi_check_ptr(fn, "k", k));
    FGI_TRY(fgi_check_ptr(fn, "v", v));
    FGI_TRY(fgi_check_min(fn, "n_q_head", n_q_head, 1));
    FGI_TRY(fgi_check_min(fn, "n_kv_head", n_kv_head, 1));
    if (n_q_head % n_kv_head != 0)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: n_q_head (%d) must be a multiple of n_kv_head (%d)",
                       fn, n_q_head, n_kv_head);
    FGI_TRY(fgi_check_attention_dims(fn, q_len, kv_len, head_dim));
    FGI_TRY(fgi_check_elems(fn, "q (n_q_head*q_len*head_dim)", &q_elems, 3, (long long)n_q_head,
                           (long long)q_len, (long long)head_dim));
    FGI_TRY(fgi_check_elems(fn, "k (n_kv_head*kv_len*head_dim)", &kv_elems, 3,
                           (long long)n_kv_head, (long long)kv_len, (long long)head_dim));
    const size_t q_bytes = 2 * q_elems, kv_bytes = 2 * kv_elems;
    FGI_TRY(fgi_check_disjoint(fn, "out", out, q_bytes, "q", q, q_bytes));
    FGI_TRY(fgi_check_disjoint(fn, "out", out, q_bytes, "k", k, kv_bytes));
    FGI_TRY(fgi_check_disjoint(fn, "out", out, q_bytes, "v", v, kv_bytes));
    if (want_lse) {
        const size_t lse_bytes = sizeof(float) * (size_t)n_q_head * (size_t)q_len;
        FGI_TRY(fgi_check_disjoint(fn, "lse", lse, lse_bytes, "out", out, q_bytes));
        FGI_TRY(fgi_check_disjoint(fn, "lse", lse, lse_bytes, "q", q, q_bytes));
        FGI_TRY(fgi_check_disjoint(fn, "lse", lse, lse_bytes, "k", k, kv_bytes));
        FGI_TRY(fgi_check_disjoint(fn, "lse", lse, lse_bytes, "v", v, kv_bytes));
    }
    return FG_OK;
}

/* Validated 16-bit call on contiguous (heads, rows, head_dim) tensors. */
fg_status run16(const char *fn, fg_dtype dtype, void *out, float *lse, const void *q,
                const void *k, const void *v, int n_q_head, int n_kv_head, int q_len,
                int kv_len, int head_dim, cudaStream_t stream)
{
    fgi_attention16_args a = {};
    a.dtype = dtype;
    a.out = out;
    a.out_head_stride = (long long)q_len * head_dim;
    a.out_row_stride = head_dim;
    a.lse = lse;
    a.q = q;
    a.q_head_stride = (long long)q_len * head_dim;
    a.q_row_stride = head_dim;
    a.k = k;
    a.v = v;
    a.kv_head_stride = (long long)kv_len * head_dim;
    a.n_q_head = n_q_head;
    a.n_kv_head = n_kv_head;
    a.q_len = q_len;
    a.kv_len = kv_len;
    a.head_dim = head_dim;
    return fgi_cuda_attention16(fn, &a, stream);
}

} // namespace

extern "C" fg_status fg_cuda_attention_typed(fg_dtype dtype, void *out, const void *q,
                                             const void *k, const void *v, int q_len, int kv_len,
                                             int head_dim, cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_attention_typed";
    bool is16 = false;
    FGI_TRY(check_dtype(fn, dtype, &is16));
    if (!is16)
        return fg_cuda_attention(static_cast<float *>(out), static_cast<const float *>(q),
                                 static_cast<const float *>(k), static_cast<const float *>(v),
                                 q_len, kv_len, head_dim, stream);
    FGI_TRY(check16(fn, out, nullptr, false, q, k, v, 1, 1, q_len, kv_len, head_dim));
    return run16(fn, dtype, out, nullptr, q, k, v, 1, 1, q_len, kv_len, head_dim, stream);
}

extern "C" fg_status fg_cuda_attention_flash_typed(fg_dtype dtype, void *out, const void *q,
                                                   const void *k, const void *v, int q_len,
                                                   int kv_len, int head_dim, int block_size,
                                                   cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_attention_flash_typed";
    bool is16 = false;
    FGI_TRY(check_dtype(fn, dtype, &is16));
    if (!is16)
        return fg_cuda_attention_flash(static_cast<float *>(out), static_cast<const float *>(q),
                                       static_cast<const float *>(k),
                                       static_cast<const float *>(v), q_len, kv_len, head_dim,
                                       block_size, stream);
    FGI_TRY(fgi_check_min(fn, "block_size", block_size, 1));
    FGI_TRY(check16(fn, out, nullptr, false, q, k, v, 1, 1, q_len, kv_len, head_dim));
    return run16(fn, dtype, out, nullptr, q, k, v, 1, 1, q_len, kv_len, head_dim, stream);
}

extern "C" fg_status fg_cuda_mha_typed(fg_dtype dtype, void *out, const void *q, const void *k,
                                       const void *v, int n_head, int q_len, int kv_len,
                                       int head_dim, cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_mha_typed";
    bool is16 = false;
    FGI_TRY(check_dtype(fn, dtype, &is16));
    if (!is16)
        return fg_cuda_mha(static_cast<float *>(out), static_cast<const float *>(q),
                           static_cast<const float *>(k), static_cast<const float *>(v), n_head,
                           q_len, kv_len, head_dim, stream);
    FGI_TRY(check16(fn, out, nullptr, false, q, k, v, n_head, n_head, q_len, kv_len, head_dim));
    return run16(fn, dtype, out, nullptr, q, k, v, n_head, n_head, q_len, kv_len, head_dim,
                 stream);
}

extern "C" fg_status fg_cuda_gqa_typed(fg_dtype dtype, void *out, const void *q, const void *k,
                                       const void *v, int n_q_head, int n_kv_head, int q_len,
                                       int kv_len, int head_dim, cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_gqa_typed";
    bool is16 = false;
    FGI_TRY(check_dtype(fn, dtype, &is16));
    if (!is16)
        return fg_cuda_gqa(static_cast<float *>(out), static_cast<const float *>(q),
                           static_cast<const float *>(k), static_cast<const float *>(v), n_q_head,
                           n_kv_head, q_len, kv_len, head_dim, stream);
    FGI_TRY(check16(fn, out, nullptr, false, q, k, v, n_q_head, n_kv_head, q_len, kv_len,
                    head_dim));
    return run16(fn, dtype, out, nullptr, q, k, v, n_q_head, n_kv_head, q_len, kv_len, head_dim,
                 stream);
}

extern "C" fg_status fg_cuda_gqa_lse_typed(fg_dtype dtype, void *out, float *lse, const void *q,
                                           const void *k, const void *v, int n_q_head,
                                           int n_kv_head, int q_len, int kv_len, int head_dim,
                                           cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_gqa_lse_typed";
    bool is16 = false;
    FGI_TRY(check_dtype(fn, dtype, &is16));
    if (!is16)
        return fg_cuda_gqa_lse(static_cast<float *>(out), lse, static_cast<const float *>(q),
                               static_cast<const float *>(k), static_cast<const float *>(v),
                               n_q_head, n_kv_head, q_len, kv_len, head_dim, stream);
    FGI_TRY(check16(fn, out, lse, true, q, k, v, n_q_head, n_kv_head, q_len, kv_len, head_dim));
    return run16(fn, dtype, out, lse, q, k, v, n_q_head, n_kv_head, q_len, kv_len, head_dim,
                 stream);
}
