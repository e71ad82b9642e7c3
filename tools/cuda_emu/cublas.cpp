/* fgi_emu cuBLAS: handles and SGEMM on the CPU.
 *
 * cublasSgemm follows cuBLAS exactly in what it computes and refuses:
 * column-major C (m, n) = alpha * op(A) (m, k) * op(B) (k, n) + beta * C,
 * op N, T or C (C is T for real data); m, n, k >= 0, lda >= max(1, rows of
 * A as stored), likewise ldb and ldc >= max(1, m), else
 * CUBLAS_STATUS_INVALID_VALUE; with beta == 0, C is not read (it may hold
 * NaN); with m or n == 0 nothing happens. Every matrix it touches must lie
 * inside a live device allocation (an overrun stops the run: on a GPU it
 * would read or write out of bounds). The arithmetic is naive fp32 with the
 * k-sum in order; CUBLAS_TF32_TENSOR_OP_MATH rounds A and B to TF32 (10-bit
 * mantissa) first, as tensor cores do, so a handle left in TF32 mode fails
 * fp32 tolerances here as it would on the GPU. Pointer mode host or device.
 *
 * On a handle whose stream captures, a call is checked and recorded as a
 * graph node (graph.cpp): like cuBLAS, it keeps the math mode and the host
 * scalars alpha / beta of the call (device-mode scalars and the matrices are
 * read at replay). */
#include "emu_internal.h"
#include "fake/cublas_v2.h"

#include <stdlib.h>

#include <memory>
#include <set>
#include <vector>

struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math;
    cublasPointerMode_t pointer_mode;
};

namespace {

using namespace fgi_emu;

std::set<cublasHandle_t> &handles()
{
    static std::set<cublasHandle_t> h;
    return h;
}

bool valid(cublasHandle_t h) { return h != nullptr && handles().count(h) > 0; }

float to_tf32(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, 4);
    if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + 0x1000u) & 0xffffe000u;
    memcpy(&x, &bits, 4);
    return x;
}

/* The matrix stored as (rows, cols) column-major with leading dimension ld
 * must lie in one live allocation. */
void require_matrix(const char *name, const float *p, int rows, int cols, int ld)
{
    const size_t floats = (size_t)(cols - 1) * (size_t)ld + (size_t)rows;
    if (!device_range_ok(p, floats * sizeof(float), "cublasSgemm", name)) {
        note("cublasSgemm: matrix %s (%d x %d, ld %d) is not inside device memory: on a GPU "
             "this reads or writes out of bounds",
             name, rows, cols, ld);
        abort();
    }
}

/* One SGEMM with everything it depends on at its call. */
struct sgemm_call {
    cublasOperation_t transa, transb;
    int m, n, k;
    float alpha_value, beta_value; /* pointer mode host: read at the call */
    const float *alpha, *beta;     /* pointer mode device: read when it runs */
    const float *A;
    int lda;
    const float *B;
    int ldb;
    float *C;
    int ldc;
    cublasMath_t math;
    cublasPointerMode_t pointer_mode;
};

/* The device memory the call touches (alpha = 0 or k = 0: A and B are not
 * read; device-mode alpha is unknown before it runs, so A and B count). */
void require_operands(const sgemm_call &c, bool alpha_known)
{
    const bool ta = c.transa != CUBLAS_OP_N, tb = c.transb != CUBLAS_OP_N;
    if (c.pointer_mode == CUBLAS_POINTER_MODE_DEVICE) {
        require_matrix("alpha", c.alpha, 1, 1, 1);
        require_matrix("beta", c.beta, 1, 1, 1);
    }
    const bool use_ab = c.k > 0 && (!alpha_known || c.alpha_value != 0.0f);
    if (use_ab) {
        require_matrix("A", c.A, ta ? c.k : c.m, ta ? c.m : c.k, c.lda);
        require_matrix("B", c.B, tb ? c.n : c.k, tb ? c.k : c.n, c.ldb);
    }
    require_matrix("C", c.C, c.m, c.n, c.ldc);
}

void run_sgemm(const sgemm_call &call)
{
    sgemm_call c = call;
    if (c.pointer_mode == CUBLAS_POINTER_MODE_DEVICE) {
        require_matrix("alpha", c.alpha, 1, 1, 1);
        require_matrix("beta", c.beta, 1, 1, 1);
        c.alpha_value = *c.alpha;
        c.beta_value = *c.beta;
    }
    require_operands(c, true);
    const int m = c.m, n = c.n, k = c.k, lda = c.lda, ldb = c.ldb;
    const float *A = c.A, *B = c.B;
    const bool ta = c.transa != CUBLAS_OP_N, tb = c.transb != CUBLAS_OP_N;
    const float a_scale = c.alpha_value, c_scale = c.beta_value;
    const bool use_ab = k > 0 && a_scale != 0.0f;
    const bool tf32 = (c.math & 0x0f) == CUBLAS_TF32_TENSOR_OP_MATH;
    auto a_at = [&](int i, int l) {
        const float v = ta ? A[(size_t)i * lda + l] : A[(size_t)l * lda + i];
        return tf32 ? to_tf32(v) : v;
    };
    auto b_at = [&](int l, int j) {
        const float v = tb ? B[(size_t)l * ldb + j] : B[(size_t)j * ldb + l];
        return tf32 ? to_tf32(v) : v;
    };
    std::vector<float> acc((size_t)m);
    for (int j = 0; j < n; j++) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        if (use_ab && !ta && !tf32) {
            for (int l = 0; l < k; l++) { /* column axpy: contiguous in A */
                const float b = b_at(l, j), *a = A + (size_t)l * lda;
                for (int i = 0; i < m; i++) acc[(size_t)i] = fmaf(a[i], b, acc[(size_t)i]);
            }
        } else if (use_ab) {
            for (int i = 0; i < m; i++) {
                float s = 0.0f;
                for (int l = 0; l < k; l++) s = fmaf(a_at(i, l), b_at(l, j), s);
                acc[(size_t)i] = s;
            }
        }
        float *col = c.C + (size_t)j * c.ldc;
        for (int i = 0; i < m; i++)
            col[i] = a_scale * acc[(size_t)i] + (c_scale == 0.0f ? 0.0f : c_scale * col[i]);
    }
}

} // namespace

extern "C" {

cublasStatus_t cublasCreate(cublasHandle_t *handle)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = nullptr;
    if (!device_present()) return CUBLAS_STATUS_NOT_INITIALIZED;
    cublasHandle_t h = new cublasContext{nullptr, CUBLAS_DEFAULT_MATH, CUBLAS_POINTER_MODE_HOST};
    handles().insert(h);
    *handle = h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    handles().erase(handle);
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!valid_stream(stream)) return CUBLAS_STATUS_INVALID_VALUE;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t *stream)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (stream == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *stream = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    const int base = (int)mode & ~(int)CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
    if (base < 0 || base > 3) return CUBLAS_STATUS_INVALID_VALUE;
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t *mode)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->math;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode(cublasHandle_t handle, cublasPointerMode_t mode)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE)
        return CUBLAS_STATUS_INVALID_VALUE;
    handle->pointer_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetPointerMode(cublasHandle_t handle, cublasPointerMode_t *mode)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->pointer_mode;
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusName(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

const char *cublasGetStatusString(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
    }
    return "unknown error";
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float *alpha,
                           const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    auto op_ok = [](cublasOperation_t op) {
        return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
    };
    const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    const int a_rows = ta ? k : m, b_rows = tb ? n : k; /* as stored */
    auto at_least = [](int ld, int rows) { return ld >= (rows > 1 ? rows : 1); };
    if (!op_ok(transa) || !op_ok(transb) || m < 0 || n < 0 || k < 0 || !at_least(lda, a_rows) ||
        !at_least(ldb, b_rows) || !at_least(ldc, m) || alpha == nullptr || beta == nullptr)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!valid_stream(handle->stream)) return CUBLAS_STATUS_EXECUTION_FAILED;
    bool record = false;
    if (capture_gate("cublasSgemm", handle->stream, &record) != cudaSuccess)
        return CUBLAS_STATUS_EXECUTION_FAILED; /* its kernel launch would fail */
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    sgemm_call call = {transa, transb, m, n, k, 0.0f, 0.0f, alpha, beta, A, lda, B, ldb, C, ldc,
                       handle->math, handle->pointer_mode};
    const bool host_scalars = handle->pointer_mode == CUBLAS_POINTER_MODE_HOST;
    if (host_scalars) call.alpha_value = *alpha, call.beta_value = *beta;
    if (!record) {
        run_sgemm(call);
        return CUBLAS_STATUS_SUCCESS;
    }
    require_operands(call, host_scalars);
    auto node = std::make_shared<const sgemm_call>(call);
    capture_record(handle->stream, [node](cudaStream_t) {
        run_sgemm(*node);
        return cudaSuccess;
    });
    return CUBLAS_STATUS_SUCCESS;
}

} // extern "C"
