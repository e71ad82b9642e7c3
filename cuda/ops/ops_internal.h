/* Internal launchers of the CUDA path (prefix fgi_cuda_), shared by the
 * public fg_cuda_* entry points and the GPU decoder (cuda/engine/decoder.cu).
 *
 * Callers validate arguments first: these functions only enqueue work on
 * `stream`, check each launch, and return FG_ERR_CUDA with the CUDA / cuBLAS
 * error text on failure. `fn` is the public function being served and
 * starts every message. Sizes are element counts; matrices are row-major.
 * Element types: the *_typed launchers take an fg_dtype and `void *`
 * tensors holding it (flashgpt/cuda.h's convention; a dtype outside the
 * enum is FG_ERR_INVALID_ARG); the fp32 ones are them with FG_DTYPE_F32. */
#ifndef FLASHGPT_CUDA_OPS_INTERNAL_H
#define FLASHGPT_CUDA_OPS_INTERNAL_H

#include "flashgpt/cuda.h"

#include <cublasLt.h>
#include <cublas_v2.h>

#ifdef __cplusplus
extern "C" {
#endif

/* FG_OK when a CUDA device can be used; else FG_ERR_CUDA "no CUDA device". */
fg_status fgi_cuda_check_device(const char *fn);

/* A cuBLAS handle bound to `stream`, fp32 math without TF32 or other
 * reduced-precision shortcuts. Destroy it with cublasDestroy. */
fg_status fgi_cuda_blas_create(const char *fn, cublasHandle_t *handle,
                               cudaStream_t stream);

typedef enum { FGI_ACT_NONE = 0, FGI_ACT_GELU = 1 } fgi_activation;

/* The small-row GEMV path (cuda/ops/gemv.cu) serves 1 .. FGI_GEMV_MAX_ROWS rows
 * with an untransposed w. Its workspace: FGI_GEMV_WORKSPACE_BYTES of device
 * memory whose first 4096 bytes (ticket counters) are zeroed once when it
 * is allocated; every call leaves them zero again. Its partials hold 1024
 * fp32 (tile, slice) blocks of the largest row count, as many as the
 * counters. A row's result does not depend on how many rows share the call
 * (a fixed summation order; batch invariance). */
#define FGI_GEMV_MAX_ROWS 8
#define FGI_GEMV_WORKSPACE_BYTES (4096 + 4 * 1024 * 128 * FGI_GEMV_MAX_ROWS)
#define FGI_GEMV_COUNTER_BYTES 4096

/* What a linear layer runs with: a cuBLAS handle bound to the stream, and
 * the GEMV workspace (NULL: always cuBLAS) with the device's SM count. */
typedef struct {
    cublasHandle_t blas;
    void *gemv_ws;
    int sm_count;
    int gemv_slices; /* 0: the automatic split of `in`; > 0: forced (benchmarks) */
    cublasLtHandle_t blaslt; /* 16-bit GEMMs; NULL: made and freed per call */
} fgi_linear_ctx;

/* y (rows, out) = act(x (rows, in) @ W + b) (b (out) or NULL). W is
 * w (in, out) when w_transposed is 0, and w^T with w (out, in) when it is 1
 * (the tied classifier). y must not overlap x. Few rows go to the GEMV
 * kernel when ctx has its workspace; the rest to cuBLAS SGEMM. */
fg_status fgi_cuda_linear_layer(const char *fn, const fgi_linear_ctx *ctx, float *y,
                                const float *x, const float *w, const float *b, int rows,
                                int in, int out, int w_transposed, fgi_activation act,
                                cudaStream_t stream);

/* The same for dtype tensors y, x, w, b: fp32 is the SGEMM path above;
 * 16-bit rows beyond the GEMV go to cuBLASLt (fp32 accumulation and
 * scale, the bias and GELU as its epilogues). */
fg_status fgi_cuda_linear_layer_typed(const char *fn, fg_dtype dtype, const fgi_linear_ctx *ctx,
                                      void *y, const void *x, const void *w, const void *b,
                                      int rows, int in, int out, int w_transposed,
                                      fgi_activation act, cudaStream_t stream);

/* dtype x and w (no bias, no activation) into an fp32 y (rows, out):
 * 16-bit goes to cuBLASLt with its fp32 output, fp32 is the layer above. */
fg_status fgi_cuda_linear_layer_f32out(const char *fn, fg_dtype dtype, const fgi_linear_ctx *ctx,
                                       float *y, const void *x, const void *w, int rows, int in,
                                       int out, int w_transposed, cudaStream_t stream);

/* The GEMV path itself (fgi_cuda_gemv_applies says when it may be used). */
int fgi_cuda_gemv_applies(int rows, int w_transposed);
fg_status fgi_cuda_gemv(const char *fn, const fgi_linear_ctx *ctx, float *y,
                        const float *x, const float *w, const float *b, int rows,
                        int in, int out, fgi_activation act, cudaStream_t stream);
fg_status fgi_cuda_gemv_typed(const char *fn, fg_dtype dtype, const fgi_linear_ctx *ctx,
                              void *y, const void *x, const void *w, const void *b, int rows,
                              int in, int out, fgi_activation act, cudaStream_t stream);

/* The 16-bit decode step's GEMV with a neighbour fused (bf16 / f16, one
 * row, untransposed w, either a norm or a residual; the plain GEMV's
 * summation order):
 *  - norm (or NULL): the prologue. x is not read; the product's input is
 *    round_T(norm(norm->x) * g (+ b)), norm->x the fp32 residual stream
 *    (rows, in), LayerNorm or RMSNorm as fgi_cuda_norm computes it, so the
 *    normalised 16-bit h and the norm's launch disappear;
 *  - resid (or NULL): the epilogue. y is not written; resid (rows, out,
 *    fp32) += round_T(x w) (+ b), the residual add of fgi_cuda_norm with a
 *    stored delta (act must be none).
 * y_f32 (with a norm only): y is fp32 and gets act(sum + b) unrounded, what
 * cuBLASLt's fp32-output GEMM gives (Llama's gate|up, which silu * up then
 * reads in fp32). */
typedef struct {
    const float *x;    /* (rows, in) fp32 */
    const void *g, *b; /* (in) dtype; b: LayerNorm's, or NULL */
    float eps;
    int rms;
} fgi_gemv_norm;
fg_status fgi_cuda_gemv_fused(const char *fn, fg_dtype dtype, const fgi_linear_ctx *ctx,
                              void *y, int y_f32, const void *x, const fgi_gemv_norm *norm,
                              float *resid, const void *w, const void *b, int rows, int in,
                              int out, fgi_activation act, cudaStream_t stream);

/* The 16-bit decode step's classifier (bf16 / f16, one row): y (out, fp32)
 * = round_T(norm(norm->x) * g (+ b)) w_t^T (+ b), w_t (out, in) row-major
 * (the embedding matrix a tied classifier reads transposed), fp32 sums
 * unrounded: the final norm, its stored h and cuBLASLt's fp32-output GEMM
 * in one launch. in <= FGI_GEMV_T_MAX_IN (the normalised row lives in
 * shared memory); deterministic (a fixed order per output). */
#define FGI_GEMV_T_MAX_IN 16384
fg_status fgi_cuda_gemv_t_normed(const char *fn, fg_dtype dtype, const fgi_linear_ctx *ctx,
                                 float *y, const fgi_gemv_norm *norm, const void *w_t,
                                 const void *b, int in, int out, cudaStream_t stream);

/* cudaStreamSynchronize(stream), adding the time the host waited in it to
 * *wait_ns: what a decode step's host-time measurement leaves out (the
 * clock reads cost tens of nanoseconds, nothing next to the wait). */
fg_status fgi_cuda_sync_timed(const char *fn, cudaStream_t stream, long long *wait_ns);

/* The current device's multiprocessor count. */
fg_status fgi_cuda_sm_count(const char *fn, int *sm_count);

/* Softmax over the middle axis of (outer, n, inner); y == x allowed. */
fg_status fgi_cuda_softmax(const char *fn, float *y, const float *x,
                           long long outer, int n, long long inner,
                           cudaStream_t stream);
fg_status fgi_cuda_softmax_typed(const char *fn, fg_dtype dtype, void *y, const void *x,
                                 long long outer, int n, long long inner,
                                 cudaStream_t stream);

/* Row-wise LayerNorm (rms = 0) or RMSNorm (rms = 1) of x (rows, cols),
 * optionally fused with the residual add before it:
 *   if delta: x += delta + delta_bias   (delta_bias (cols) may be NULL)
 *   y = norm(x) * g + b                 (b may be NULL; ignored for RMSNorm)
 * y == x allowed (fp32 only); delta must not overlap x or y. x is fp32
 * whatever the type; y, delta, delta_bias, g and b hold the dtype of
 * fgi_cuda_norm_typed (fp32 for fgi_cuda_norm). */
typedef struct {
    void *y;
    float *x;
    const void *delta, *delta_bias;
    const void *g, *b;
    long long rows;
    int cols;
    float eps;
    int rms;
} fgi_norm_args;
fg_status fgi_cuda_norm(const char *fn, const fgi_norm_args *a,
                        cudaStream_t stream);
fg_status fgi_cuda_norm_typed(const char *fn, fg_dtype dtype, const fgi_norm_args *a,
                              cudaStream_t stream);
/* A decoder's norm between sublayers: that of cfg's family (LayerNorm with
 * b for GPT-2, RMSNorm for Llama, b ignored) over rows of n_embd with the
 * model's eps, after the optional residual add, in dtype (fp32 included). */
fg_status fgi_cuda_model_norm(const char *fn, fg_dtype dtype, const fg_config *cfg, void *y,
                              float *x, const void *delta, const void *delta_bias, const void *g,
                              const void *b, long long rows, cudaStream_t stream);

/* x (rows, cols) += delta (rows, cols) + b (cols); b may be NULL. */
fg_status fgi_cuda_add_rows(const char *fn, float *x, const float *delta,
                            const float *b, long long rows, int cols,
                            cudaStream_t stream);
/* The same with delta and b of dtype; x stays fp32. */
fg_status fgi_cuda_add_rows_typed(const char *fn, fg_dtype dtype, float *x, const void *delta,
                                  const void *b, long long rows, int cols,
                                  cudaStream_t stream);

/* y (rows, cols) = gelu(x + b) with b (cols) or NULL; y == x allowed. */
fg_status fgi_cuda_bias_gelu(const char *fn, float *y, const float *x,
                             const float *b, long long rows, int cols,
                             cudaStream_t stream);
fg_status fgi_cuda_bias_gelu_typed(const char *fn, fg_dtype dtype, void *y, const void *x,
                                   const void *b, long long rows, int cols,
                                   cudaStream_t stream);

/* y (rows, cols, contiguous) = silu(gate) * up, where row r of gate and up
 * starts at r * in_row_stride (so both can be halves of one fused
 * (rows, 2*cols) projection). y may equal gate or up when in_row_stride
 * equals cols. */
fg_status fgi_cuda_silu_mul_rows(const char *fn, float *y, const float *gate,
                                 const float *up, long long rows, int cols,
                                 long long in_row_stride, cudaStream_t stream);
fg_status fgi_cuda_silu_mul_rows_typed(const char *fn, fg_dtype dtype, void *y,
                                       const void *gate, const void *up, long long rows,
                                       int cols, long long in_row_stride,
                                       cudaStream_t stream);
/* The same from fp32 gate and up (a GEMM's fp32 output) into a dtype y. */
fg_status fgi_cuda_silu_mul_rows_f32in(const char *fn, fg_dtype dtype, void *y,
                                       const float *gate, const float *up, long long rows,
                                       int cols, long long in_row_stride,
                                       cudaStream_t stream);

/* The decoder's "bias + RoPE + append to cache" step on the fused projection
 * qkv (T, [q | k | v]) of width (n_head + 2*n_kv_head)*head_dim: adds the
 * q|k|v bias (may be NULL), rotates q in place and k (when use_rope, with
 * rope_inv_freq's frequencies when given) for
 * positions pos0 .. pos0+T-1, and writes k and v into the cache rows
 * pos0 .. pos0+T-1 of k_cache / v_cache (n_kv_head, capacity, head_dim).
 * qkv, bias and the caches hold the dtype of fgi_cuda_qkv_rope_append_typed
 * (fp32 for fgi_cuda_qkv_rope_append); the rotation is computed in double
 * from the widened biased values and rounded once on store. */
typedef struct {
    void *qkv;
    const void *bias;
    void *k_cache, *v_cache;
    int T, n_head, n_kv_head, head_dim, capacity, pos0;
    const int *pos0_dev; /* device int read at run time instead of pos0, or NULL */
    int use_rope;
    double rope_base;
    /* Device table of the head_dim/2 inverse frequencies (scaled RoPE,
     * fg_config_rope_inv_freq), or NULL: base^(-2j/head_dim) from rope_base. */
    const double *rope_inv_freq;
} fgi_qkv_append_args;
fg_status fgi_cuda_qkv_rope_append(const char *fn, const fgi_qkv_append_args *a,
                                   cudaStream_t stream);
fg_status fgi_cuda_qkv_rope_append_typed(const char *fn, fg_dtype dtype,
                                         const fgi_qkv_append_args *a, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_CUDA_OPS_INTERNAL_H */
