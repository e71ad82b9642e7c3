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
 * the decoder keeps both and calls fgi_cuda_linear_layer.
 * Element types: fp32 is the SGEMM path above, unchanged. bf16 / f16 rows
 * past the GEMV run one cuBLASLt matmul (A, B, D in the 16-bit type,
 * CUBLAS_COMPUTE_32F: fp32 products and sums, fp32 alpha) with the bias,
 * and GELU, as its epilogue (CUBLASLT_EPILOGUE_BIAS / GELU_BIAS), so y is
 * rounded to 16 bits once, after the bias and activation. */
#include "cuda_common.cuh"
#include "dtype.cuh"
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

namespace {

/* The cuBLASLt element type of T. */
template <typename T>
constexpr cudaDataType_t lt_type()
{
    return std::is_same<T, __half>::value ? CUDA_R_16F
           : std::is_same<T, __nv_bfloat16>::value ? CUDA_R_16BF
                                                   : CUDA_R_32F;
}

/* The largest power of two up to 256 that divides p's address: cuBLASLt
 * assumes 256-byte aligned operands unless told otherwise, and the typed
 * ops accept any element-aligned pointer. */
uint32_t alignment_of(const void *p)
{
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    uint32_t al = 256;
    while (al > 1 && a % al != 0) al /= 2;
    return al;
}

/* Every descriptor of one cuBLASLt matmul, freed on every path. */
struct lt_call {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t a = NULL, b = NULL, d = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtHandle_t own = NULL; /* made for this call when the ctx has none */
    ~lt_call()
    {
        if (pref) (void)cublasLtMatmulPreferenceDestroy(pref);
        if (d) (void)cublasLtMatrixLayoutDestroy(d);
        if (b) (void)cublasLtMatrixLayoutDestroy(b);
        if (a) (void)cublasLtMatrixLayoutDestroy(a);
        if (op) (void)cublasLtMatmulDescDestroy(op);
        if (own) (void)cublasLtDestroy(own);
    }
};

/* Column-major, as SGEMM above: y^T (out, rows) = op(A) (out, in) x^T (in,
 * rows), A = w read as (out, in) with ld out, or w^T (w (out, in) read as
 * (in, out), ld in, op T). */
template <typename T, typename Y = T>
fg_status lt_linear(const char *fn, cublasLtHandle_t handle, Y *y, const T *x, const T *w,
                    const Y *b, int rows, int in, int out, int w_transposed, fgi_activation act,
                    cudaStream_t stream)
{
    constexpr cudaDataType_t type = lt_type<T>(), y_type = lt_type<Y>();
    lt_call c;
    if (handle == NULL) {
        FGI_CUBLAS_TRY(fn, cublasLtCreate(&c.own));
        handle = c.own;
    }
    const cublasOperation_t ta = w_transposed ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    const bool gelu = act == FGI_ACT_GELU;
    const cublasLtEpilogue_t epi = b ? (gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                     : (gelu ? CUBLASLT_EPILOGUE_GELU : CUBLASLT_EPILOGUE_DEFAULT);
    FGI_CUBLAS_TRY(fn, cublasLtMatmulDescCreate(&c.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    FGI_CUBLAS_TRY(fn, cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                                      sizeof ta));
    FGI_CUBLAS_TRY(fn, cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                                      sizeof tb));
    FGI_CUBLAS_TRY(fn, cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                      sizeof epi));
    if (b != NULL)
        FGI_CUBLAS_TRY(fn, cublasLtMatmulDescSetAttribute(
                               c.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b));
    const int a_rows = w_transposed ? in : out, a_cols = w_transposed ? out : in;
    FGI_CUBLAS_TRY(fn, cublasLtMatrixLayoutCreate(&c.a, type, a_rows, a_cols, a_rows));
    FGI_CUBLAS_TRY(fn, cublasLtMatrixLayoutCreate(&c.b, type, in, rows, in));
    FGI_CUBLAS_TRY(fn, cublasLtMatrixLayoutCreate(&c.d, y_type, out, rows, out));
    FGI_CUBLAS_TRY(fn, cublasLtMatmulPreferenceCreate(&c.pref));
    const size_t no_workspace = 0;
    FGI_CUBLAS_TRY(fn, cublasLtMatmulPreferenceSetAttribute(
                           c.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &no_workspace,
                           sizeof no_workspace));
    const uint32_t al_a = alignment_of(w), al_b = alignment_of(x), al_d = alignment_of(y);
    FGI_CUBLAS_TRY(fn, cublasLtMatmulPreferenceSetAttribute(
                           c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    FGI_CUBLAS_TRY(fn, cublasLtMatmulPreferenceSetAttribute(
                           c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    FGI_CUBLAS_TRY(fn, cublasLtMatmulPreferenceSetAttribute(
                           c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof al_d));
    FGI_CUBLAS_TRY(fn, cublasLtMatmulPreferenceSetAttribute(
                           c.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof al_d));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    FGI_CUBLAS_TRY(fn, cublasLtMatmulAlgoGetHeuristic(handle, c.op, c.a, c.b, c.d, c.d, c.pref, 1,
                                                      &heur, &found));
    if (found < 1)
        return fgi_fail(FG_ERR_CUDA, "%s: cuBLASLt has no algorithm for a %s GEMM (%d x %d x %d)",
                        fn, fg_dtype_name(fgi_elem<T>::dtype), rows, in, out);
    const float one = 1.0f, zero = 0.0f;
    FGI_CUBLAS_TRY(fn, cublasLtMatmul(handle, c.op, &one, w, c.a, x, c.b, &zero, y, c.d, y, c.d,
                                      &heur.algo, NULL, 0, stream));
    return FG_OK;
}

} // namespace

extern "C" fg_status fgi_cuda_linear_layer_typed(const char *fn, fg_dtype dtype,
                                                 const fgi_linear_ctx *ctx, void *y,
                                                 const void *x, const void *w, const void *b,
                                                 int rows, int in, int out, int w_transposed,
                                                 fgi_activation act, cudaStream_t stream)
{
    if (ctx->gemv_ws != NULL && fgi_cuda_gemv_applies(rows, w_transposed))
        return fgi_cuda_gemv_typed(fn, dtype, ctx, y, x, w, b, rows, in, out, act, stream);
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_same<T, float>::value)
            return blas_linear(fn, ctx->blas, static_cast<float *>(y),
                               static_cast<const float *>(x), static_cast<const float *>(w),
                               static_cast<const float *>(b), rows, in, out, w_transposed, act,
                               stream);
        else
            return lt_linear<T>(fn, ctx->blaslt, static_cast<T *>(y), static_cast<const T *>(x),
                                static_cast<const T *>(w), static_cast<const T *>(b), rows, in,
                                out, w_transposed, act, stream);
    });
}

/* 16-bit x and w into an fp32 y: cuBLASLt's fp32 D (the decoder's logits
 * and Llama's gate|up, which are never rounded to the element type); fp32
 * is fgi_cuda_linear_layer. */
extern "C" fg_status fgi_cuda_linear_layer_f32out(const char *fn, fg_dtype dtype,
                                                  const fgi_linear_ctx *ctx, float *y,
                                                  const void *x, const void *w, int rows,
                                                  int in, int out, int w_transposed,
                                                  cudaStream_t stream)
{
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_same<T, float>::value)
            return fgi_cuda_linear_layer(fn, ctx, y, static_cast<const float *>(x),
                                         static_cast<const float *>(w), NULL, rows, in, out,
                                         w_transposed, FGI_ACT_NONE, stream);
        else
            return lt_linear<T, float>(fn, ctx->blaslt, y, static_cast<const T *>(x),
                                       static_cast<const T *>(w), NULL, rows, in, out,
                                       w_transposed, FGI_ACT_NONE, stream);
    });
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
    fgi_linear_ctx ctx = {NULL, NULL, 0, 0, NULL};
    void *scratch = NULL;
    void *block = NULL;
    cudaStream_t stream = 0;
    ~standalone_call()
    {
        if (block && cudaFreeAsync(block, stream) != cudaSuccess) (void)cudaGetLastError();
        if (ctx.blas) (void)cublasDestroy(ctx.blas);
        if (ctx.blaslt) (void)cublasLtDestroy(ctx.blaslt);
    }
    /* fp32 gets a cuBLAS handle, 16-bit types a cuBLASLt one. */
    fg_status begin(const char *fn, cudaStream_t s, size_t scratch_bytes, int rows,
                    fg_dtype dtype = FG_DTYPE_F32)
    {
        stream = s;
        FGI_TRY(fgi_cuda_check_device(fn));
        if (dtype == FG_DTYPE_F32)
            FGI_TRY(fgi_cuda_blas_create(fn, &ctx.blas, s));
        else
            FGI_CUBLAS_TRY(fn, cublasLtCreate(&ctx.blaslt));
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

/* FG_ERR_INVALID_ARG unless dtype is in the enum; its element size. */
static fg_status elem_size(const char *fn, fg_dtype dtype, size_t *es)
{
    FGI_TRY(fgi_with_dtype(fn, dtype, [](auto) { return FG_OK; }));
    *es = fg_dtype_size(dtype);
    return FG_OK;
}

static fg_status linear(const char *fn, fg_dtype dtype, void *y, const void *x, const void *w,
                        const void *b, int rows, int in, int out, cudaStream_t stream)
{
    size_t es;
    FGI_TRY(elem_size(fn, dtype, &es));
    FGI_TRY(fgi_check_linear_sized(fn, es, y, x, w, rows, in, out));
    standalone_call call;
    FGI_TRY(call.begin(fn, stream, 0, rows, dtype));
    return fgi_cuda_linear_layer_typed(fn, dtype, &call.ctx, y, x, w, b, rows, in, out, 0,
                                       FGI_ACT_NONE, stream);
}

extern "C" fg_status fg_cuda_linear_typed(fg_dtype dtype, void *y, const void *x, const void *w,
                                          const void *b, int rows, int in, int out,
                                          cudaStream_t stream)
{
    return linear("fg_cuda_linear_typed", dtype, y, x, w, b, rows, in, out, stream);
}

extern "C" fg_status fg_cuda_linear(float *y, const float *x, const float *w,
                                    const float *b, int rows, int in, int out,
                                    cudaStream_t stream)
{
    return linear("fg_cuda_linear", FG_DTYPE_F32, y, x, w, b, rows, in, out, stream);
}

/* h = gelu(x w_fc + b_fc) in dtype (rounded, as it is stored), then
 * y = h w_proj + b_proj. */
static fg_status ffn(const char *fn, fg_dtype dtype, void *y, const void *x, const void *w_fc,
                     const void *b_fc, const void *w_proj, const void *b_proj, int rows,
                     int hidden, int inner, cudaStream_t stream)
{
    size_t es;
    FGI_TRY(elem_size(fn, dtype, &es));
    FGI_TRY(fgi_check_ffn_sized(fn, es, y, x, w_fc, w_proj, rows, hidden, inner));
    standalone_call call;
    FGI_TRY(call.begin(fn, stream, es * (size_t)rows * (size_t)inner, rows, dtype));
    void *h = call.scratch; /* (rows, inner) */
    FGI_TRY(fgi_cuda_linear_layer_typed(fn, dtype, &call.ctx, h, x, w_fc, b_fc, rows, hidden,
                                        inner, 0, FGI_ACT_GELU, stream));
    return fgi_cuda_linear_layer_typed(fn, dtype, &call.ctx, y, h, w_proj, b_proj, rows, inner,
                                       hidden, 0, FGI_ACT_NONE, stream);
}

extern "C" fg_status fg_cuda_ffn_typed(fg_dtype dtype, void *y, const void *x, const void *w_fc,
                                       const void *b_fc, const void *w_proj, const void *b_proj,
                                       int rows, int hidden, int inner, cudaStream_t stream)
{
    return ffn("fg_cuda_ffn_typed", dtype, y, x, w_fc, b_fc, w_proj, b_proj, rows, hidden, inner,
               stream);
}

extern "C" fg_status fg_cuda_ffn(float *y, const float *x, const float *w_fc,
                                 const float *b_fc, const float *w_proj,
                                 const float *b_proj, int rows, int hidden, int inner,
                                 cudaStream_t stream)
{
    return ffn("fg_cuda_ffn", FG_DTYPE_F32, y, x, w_fc, b_fc, w_proj, b_proj, rows, hidden, inner,
               stream);
}

/* fp32: gate and up (fp32), act = silu(gate) up in place of gate, y =
 * act w_down. 16-bit: gate and up come out of cuBLASLt in fp32 (its fp32 D)
 * and only act is rounded before w_down: rounding gate and up as well would
 * make this chain the naive one, one rounding for another, and the 16-bit
 * rule measures the result against twice the naive error. */
static fg_status swiglu(const char *fn, fg_dtype dtype, void *y, const void *x,
                        const void *w_gate, const void *w_up, const void *w_down, int rows,
                        int hidden, int inner, cudaStream_t stream)
{
    size_t es;
    FGI_TRY(elem_size(fn, dtype, &es));
    FGI_TRY(fgi_check_swiglu_sized(fn, es, y, x, w_gate, w_up, w_down, rows, hidden, inner));
    const size_t n = (size_t)rows * (size_t)inner;
    standalone_call call;
    if (dtype == FG_DTYPE_F32) {
        FGI_TRY(call.begin(fn, stream, 2 * sizeof(float) * n, rows));
        float *gate = (float *)call.scratch, *up = gate + n; /* (rows, inner) each */
        FGI_TRY(fgi_cuda_linear_layer(fn, &call.ctx, gate, (const float *)x,
                                      (const float *)w_gate, NULL, rows, hidden, inner, 0,
                                      FGI_ACT_NONE, stream));
        FGI_TRY(fgi_cuda_linear_layer(fn, &call.ctx, up, (const float *)x, (const float *)w_up,
                                      NULL, rows, hidden, inner, 0, FGI_ACT_NONE, stream));
        FGI_TRY(fgi_cuda_silu_mul_rows(fn, gate, gate, up, rows, inner, inner, stream));
        return fgi_cuda_linear_layer(fn, &call.ctx, (float *)y, gate, (const float *)w_down,
                                     NULL, rows, inner, hidden, 0, FGI_ACT_NONE, stream);
    }
    /* each part 256-byte aligned: cuBLASLt's fast kernels want 16-byte
     * aligned operands, and the alignment preference is the pointer's */
    const size_t part = (sizeof(float) * n + 255) / 256 * 256;
    FGI_TRY(call.begin(fn, stream, 2 * part + es * n, rows, dtype));
    float *gate = (float *)call.scratch;                             /* (rows, inner) fp32 */
    float *up = (float *)((char *)call.scratch + part);              /* (rows, inner) fp32 */
    void *act = (char *)call.scratch + 2 * part;                     /* (rows, inner) dtype */
    const fg_status st = fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        const fg_status g = lt_linear<T, float>(fn, call.ctx.blaslt, gate,
                                                static_cast<const T *>(x),
                                                static_cast<const T *>(w_gate), NULL, rows,
                                                hidden, inner, 0, FGI_ACT_NONE, stream);
        if (g != FG_OK) return g;
        return lt_linear<T, float>(fn, call.ctx.blaslt, up, static_cast<const T *>(x),
                                   static_cast<const T *>(w_up), NULL, rows, hidden, inner, 0,
                                   FGI_ACT_NONE, stream);
    });
    if (st != FG_OK) return st;
    FGI_TRY(fgi_cuda_silu_mul_rows_f32in(fn, dtype, act, gate, up, rows, inner, inner, stream));
    return fgi_cuda_linear_layer_typed(fn, dtype, &call.ctx, y, act, w_down, NULL, rows, inner,
                                       hidden, 0, FGI_ACT_NONE, stream);
}

extern "C" fg_status fg_cuda_swiglu_ffn_typed(fg_dtype dtype, void *y, const void *x,
                                              const void *w_gate, const void *w_up,
                                              const void *w_down, int rows, int hidden,
                                              int inner, cudaStream_t stream)
{
    return swiglu("fg_cuda_swiglu_ffn_typed", dtype, y, x, w_gate, w_up, w_down, rows, hidden,
                  inner, stream);
}

extern "C" fg_status fg_cuda_swiglu_ffn(float *y, const float *x, const float *w_gate,
                                        const float *w_up, const float *w_down, int rows,
                                        int hidden, int inner, cudaStream_t stream)
{
    return swiglu("fg_cuda_swiglu_ffn", FG_DTYPE_F32, y, x, w_gate, w_up, w_down, rows, hidden,
                  inner, stream);
}
