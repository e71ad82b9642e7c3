/* CUDA linear layers and MLPs through cuBLAS (docs/contract.md §12-§14).
 *
 * Row-major y (rows, out) = x (rows, in) @ w (in, out) + b. cuBLAS is
 * column-major, where a row-major (r, c) buffer reads as its (c, r)
 * transpose, so y^T = w^T x^T is one column-major SGEMM with the operands
 * swapped and no copies; the classifier's w^T with w (out, in) is the same
 * call with op(A) = A^T. A bias is broadcast into y first and the GEMM then
 * accumulates into it (beta = 1). Math mode is CUBLAS_DEFAULT_MATH, which
 * for fp32 never drops to TF32, so results stay within the fp32 tolerance.
 * Design: up to FGI_GEMV_MAX_ROWS rows run on the GEMV kernel (cuda/ops/gemv.cu),
 * the rest on cuBLAS SGEMM; the only kernel here is the bias broadcast.
 * The standalone fg_cuda_linear / ffn / swiglu_ffn have no place to keep a
 * cuBLAS handle or workspace (the library has no globals), so each call
 * makes and frees them (slow: a convenience path for tests and one-off use);
 * the decoder keeps both and calls fgi_cuda_linear_layer. Element type: f32
 * only here (SGEMM); the GEMV and the bias broadcast are templated on it. */
#include "cuda_common.cuh"
#include "ops_internal.h"
#include "reduce.cuh"
#include "validate.h"

extern "C" fg_status fgi_cuda_blas_create(const char *fn, cublasHandle_t *handle,
                                          cudaStream_t stream)
{
    cublasHandle_t h = NULL;
    *handle = NULL;
    FGI_CUBLAS_TRY(fn, cublasCreate(&h));
    cublasStatus_t st = cublasSetStream(h, stream);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    if (st != CUBLAS_STATUS_SUCCESS) {
        cublasDestroy(h);
        return fgi_fail(FG_ERR_CUDA, "%s: configuring the cuBLAS handle failed: %s", fn,
                       cublasGetStatusString(st));
    }
    *handle = h;
    return FG_OK;
}

namespace {

/* y (rows, cols): every row = b (cols); a copy of elements of type T. */
template <typename T>
__global__ void broadcast_rows_kernel(T *y, const T *b, long long rows, int cols)
{
    const long long total = rows * cols;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x)
        y[e] = b[e % cols];
}

} // namespace

/* cuBLAS: the bias is broadcast into y first and the GEMM accumulates into
 * it; with an activation the GEMM writes y and one bias + activation pass
 * follows. */
static fg_status blas_linear(const char *fn, cublasHandle_t handle, float *y, const float *x,
                             const float *w, const float *b, int rows, int in, int out,
                             int w_transposed, fgi_activation act, cudaStream_t stream)
{
    const float one = 1.0f, zero = 0.0f;
    const int accumulate = b != NULL && act == FGI_ACT_NONE;
    if (accumulate) {
        const int threads = 256;
        broadcast_rows_kernel<float><<<fgi_grid_blocks((long long)rows * out, threads), threads,
                                0, stream>>>(y, b, rows, out);
        FGI_CUDA_LAUNCHED(fn, "broadcast_rows_kernel");
    }
    /* column-major: y^T (out, rows) = op(A) (out, in) * x^T (in, rows) */
    FGI_CUBLAS_TRY(fn, cublasSgemm(handle, w_transposed ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  CUBLAS_OP_N, out, rows, in, &one, w,
                                  w_transposed ? in : out, x, in, accumulate ? &one : &zero,
                                  y, out));
    if (act == FGI_ACT_GELU) FGI_TRY(fgi_cuda_bias_gelu(fn, y, y, b, rows, out, stream));
    return FG_OK;
}

extern "C" fg_status fgi_cuda_linear_layer(const char *fn, const fgi_linear_ctx *ctx, float *y,
                                           const float *x, const float *w, const float *b,
                                           int rows, int in, int out, int w_transposed,
                                           fgi_activation act, cudaStream_t stream)
{
    if (ctx->gemv_ws != NULL && fgi_cuda_gemv_applies(rows, w_transposed))
        return fgi_cuda_gemv(fn, ctx, y, x, w, b, rows, in, out, act, stream);
    return blas_linear(fn, ctx->blas, y, x, w, b, rows, in, out, w_transposed, act, stream);
}

namespace {

/* Resources of one standalone call, released on every path: a cuBLAS
 * handle and one stream-ordered allocation holding the caller's scratch
 * and, where the GEMV path serves these rows, its workspace. */
struct standalone_call {
    fgi_linear_ctx ctx = {NULL, NULL, 0, 0};
    void *scratch = NULL;
    void *block = NULL;
    cudaStream_t stream = 0;
    ~standalone_call()
    {
        if (block && cudaFreeAsync(block, stream) != cudaSuccess) (void)cudaGetLastError();
        if (ctx.blas) (void)cublasDestroy(ctx.blas);
    }
    fg_status begin(const char *fn, cudaStream_t s, size_t scratch_bytes, int rows)
    {
        stream = s;
        FGI_TRY(fgi_cuda_check_device(fn));
        FGI_TRY(fgi_cuda_blas_create(fn, &ctx.blas, s));
        const int gemv = fgi_cuda_gemv_applies(rows, 0);
        const size_t scratch_rounded = (scratch_bytes + 255) / 256 * 256;
        const size_t bytes = scratch_rounded + (gemv ? FGI_GEMV_WORKSPACE_BYTES : 0);
        if (bytes == 0) return FG_OK;
        cudaError_t err = cudaMallocAsync(&block, bytes, s);
        if (err != cudaSuccess) {
            block = NULL;
            (void)cudaGetLastError();
            return fgi_fail(err == cudaErrorMemoryAllocation ? FG_ERR_OOM : FG_ERR_CUDA,
                           "%s: %zu bytes of device scratch: %s", fn, bytes,
                           cudaGetErrorString(err));
        }
        if (scratch_bytes > 0) scratch = block;
        if (gemv) {
            ctx.gemv_ws = static_cast<char *>(block) + scratch_rounded;
            FGI_CUDA_TRY(fn, cudaMemsetAsync(ctx.gemv_ws, 0, FGI_GEMV_COUNTER_BYTES, s));
            FGI_TRY(fgi_cuda_sm_count(fn, &ctx.sm_count));
        }
        return FG_OK;
    }
};

} // namespace

extern "C" fg_status fg_cuda_linear(float *y, const float *x, const float *w,
                                    const float *b, int rows, int in, int out,
                                    cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_linear";
    FGI_TRY(fgi_check_linear(fn, y, x, w, rows, in, out));
    standalone_call call;
    FGI_TRY(call.begin(fn, stream, 0, rows));
    return fgi_cuda_linear_layer(fn, &call.ctx, y, x, w, b, rows, in, out, 0, FGI_ACT_NONE,
                                 stream);
}

extern "C" fg_status fg_cuda_ffn(float *y, const float *x, const float *w_fc,
                                 const float *b_fc, const float *w_proj,
                                 const float *b_proj, int rows, int hidden, int inner,
                                 cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_ffn";
    FGI_TRY(fgi_check_ffn(fn, y, x, w_fc, w_proj, rows, hidden, inner));
    standalone_call call;
    FGI_TRY(call.begin(fn, stream, sizeof(float) * (size_t)rows * (size_t)inner, rows));
    float *h = (float *)call.scratch; /* (rows, inner) */
    FGI_TRY(fgi_cuda_linear_layer(fn, &call.ctx, h, x, w_fc, b_fc, rows, hidden, inner, 0,
                                 FGI_ACT_GELU, stream));
    return fgi_cuda_linear_layer(fn, &call.ctx, y, h, w_proj, b_proj, rows, inner, hidden, 0,
                                 FGI_ACT_NONE, stream);
}

extern "C" fg_status fg_cuda_swiglu_ffn(float *y, const float *x, const float *w_gate,
                                        const float *w_up, const float *w_down, int rows,
                                        int hidden, int inner, cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_swiglu_ffn";
    FGI_TRY(fgi_check_swiglu(fn, y, x, w_gate, w_up, w_down, rows, hidden, inner));
    const size_t n = (size_t)rows * (size_t)inner;
    standalone_call call;
    FGI_TRY(call.begin(fn, stream, 2 * sizeof(float) * n, rows));
    float *gate = (float *)call.scratch, *up = gate + n; /* (rows, inner) each */
    FGI_TRY(fgi_cuda_linear_layer(fn, &call.ctx, gate, x, w_gate, NULL, rows, hidden, inner, 0,
                                 FGI_ACT_NONE, stream));
    FGI_TRY(fgi_cuda_linear_layer(fn, &call.ctx, up, x, w_up, NULL, rows, hidden, inner, 0,
                                 FGI_ACT_NONE, stream));
    FGI_TRY(fgi_cuda_silu_mul_rows(fn, gate, gate, up, rows, inner, inner, stream));
    return fgi_cuda_linear_layer(fn, &call.ctx, y, gate, w_down, NULL, rows, inner, hidden, 0,
                                 FGI_ACT_NONE, stream);
}
