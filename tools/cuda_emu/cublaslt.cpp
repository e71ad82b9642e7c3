/* fgi_emu cuBLASLt: handles, descriptors and cublasLtMatmul on the CPU.
 *
 * What is modelled: column-major D (m, n) = epilogue(alpha op(A) (m, k)
 * op(B) (k, n) + beta C + bias) with A, B in one type and C, D in one type
 * among CUDA_R_32F, CUDA_R_16BF and CUDA_R_16F (A/B 16-bit with C/D 16-bit
 * or fp32; all fp32), CUBLAS_COMPUTE_32F and an fp32 scale type only. The
 * k-sum is a sequential fp32 fused multiply-add chain over exactly widened
 * A and B (a fixed order, as one thread of a GEMM kernel; a real kernel's
 * order differs, within fp32 rounding); alpha, beta C (C widened, not read
 * when beta is 0), the bias (m, in D's type, broadcast over columns) and
 * GELU (the tanh approximation cuBLASLt documents) are applied in fp32, and
 * D is rounded to its type once, at the end, as cuBLASLt's epilogue does.
 * Epilogues DEFAULT, BIAS, GELU, GELU_BIAS; transa / transb N or T; column
 * order only (others are CUBLAS_STATUS_NOT_SUPPORTED). Checks: handles and
 * descriptors are live, dimensions agree (op(A) m x k, op(B) k x n, C and
 * D m x n, ld >= rows) or CUBLAS_STATUS_INVALID_VALUE; every matrix, the
 * bias and the workspace lie in device memory (else the run stops, as an
 * out-of-bounds access would); an algorithm from the heuristic remembers
 * the minimum alignments of its preference and refuses operands that are
 * less aligned (CUBLAS_STATUS_INVALID_VALUE); a stream that captures
 * records the call (graph.cpp), keeping the host alpha / beta of the call
 * and reading the matrices at replay. Pointer mode host only. */
#include "emu_internal.h"
#include "fake/cublasLt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <memory>
#include <set>
#include <vector>

extern "C" uint16_t fgi_f32_to_bf16(float f);
extern "C" uint16_t fgi_f32_to_f16(float f);
extern "C" float fgi_f16_to_f32(uint16_t h);

struct cublasLtContext {
    int unused;
};
struct cublasLtMatmulDescOpaque_t {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    cublasOperation_t transa, transb;
    cublasLtEpilogue_t epilogue;
    const void *bias;
};
struct cublasLtMatrixLayoutOpaque_t {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
    cublasLtOrder_t order;
};
struct cublasLtMatmulPreferenceOpaque_t {
    size_t max_workspace;
    uint32_t align[4]; /* A, B, C, D */
};

namespace {

using namespace fgi_emu;

const uint64_t kAlgoTag = 0x666769656d754c74ULL; /* marks an algorithm of this emulator */

template <typename P>
std::set<P> &live()
{
    static std::set<P> s;
    return s;
}
template <typename P>
bool is_live(P p)
{
    return p != nullptr && live<P>().count(p) > 0;
}

size_t type_size(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }
bool known_type(cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; }

float load(cudaDataType_t t, const void *p, size_t i)
{
    if (t == CUDA_R_32F) return static_cast<const float *>(p)[i];
    const uint16_t h = static_cast<const uint16_t *>(p)[i];
    if (t == CUDA_R_16F) return fgi_f16_to_f32(h);
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void store(cudaDataType_t t, void *p, size_t i, float v)
{
    if (t == CUDA_R_32F)
        static_cast<float *>(p)[i] = v;
    else
        static_cast<uint16_t *>(p)[i] = t == CUDA_R_16F ? fgi_f32_to_f16(v) : fgi_f32_to_bf16(v);
}

float gelu_tanh(float x)
{
    return 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
}

/* One matmul with everything it depends on at its call. */
struct lt_call {
    cublasLtMatmulDescOpaque_t op;
    cublasLtMatrixLayoutOpaque_t a, b, c, d;
    float alpha, beta;
    const void *A, *B, *C;
    void *D;
    int m, n, k;
};

/* The matrix (rows, cols, ld) of layout l at p must lie in one live
 * allocation. */
void require_matrix(const char *name, const void *p, const cublasLtMatrixLayoutOpaque_t &l)
{
    const size_t elems = (size_t)(l.cols - 1) * (size_t)l.ld + (size_t)l.rows;
    if (!device_range_ok(p, elems * type_size(l.type), "cublasLtMatmul", name)) {
        note("cublasLtMatmul: matrix %s (%llu x %llu, ld %lld) is not inside device memory: on "
             "a GPU this reads or writes out of bounds",
             name, (unsigned long long)l.rows, (unsigned long long)l.cols, (long long)l.ld);
        abort();
    }
}

void require_operands(const lt_call &c)
{
    if (c.k > 0 && c.alpha != 0.0f) {
        require_matrix("A", c.A, c.a);
        require_matrix("B", c.B, c.b);
    }
    if (c.beta != 0.0f) require_matrix("C", c.C, c.c);
    require_matrix("D", c.D, c.d);
    if (c.op.bias != nullptr &&
        !device_range_ok(c.op.bias, (size_t)c.m * type_size(c.d.type), "cublasLtMatmul",
                         "bias")) {
        note("cublasLtMatmul: the bias (%d elements) is not inside device memory", c.m);
        abort();
    }
}

void run(const lt_call &c)
{
    require_operands(c);
    const bool ta = c.op.transa != CUBLAS_OP_N, tb = c.op.transb != CUBLAS_OP_N;
    const bool use_ab = c.k > 0 && c.alpha != 0.0f;
    const bool has_bias =
        c.op.epilogue == CUBLASLT_EPILOGUE_BIAS || c.op.epilogue == CUBLASLT_EPILOGUE_GELU_BIAS;
    const bool gelu =
        c.op.epilogue == CUBLASLT_EPILOGUE_GELU || c.op.epilogue == CUBLASLT_EPILOGUE_GELU_BIAS;
    const size_t lda = (size_t)c.a.ld, ldb = (size_t)c.b.ld;
    for (int j = 0; j < c.n; j++) {
        for (int i = 0; i < c.m; i++) {
            float s = 0.0f;
            if (use_ab)
                for (int l = 0; l < c.k; l++) {
                    const size_t ai = ta ? (size_t)i * lda + l : (size_t)l * lda + i;
                    const size_t bi = tb ? (size_t)l * ldb + j : (size_t)j * ldb + l;
                    s = fmaf(load(c.a.type, c.A, ai), load(c.b.type, c.B, bi), s);
                }
            float v = c.alpha * s;
            if (c.beta != 0.0f) v += c.beta * load(c.c.type, c.C, (size_t)j * c.c.ld + i);
            if (has_bias) v += load(c.d.type, c.op.bias, (size_t)i);
            if (gelu) v = gelu_tanh(v);
            store(c.d.type, c.D, (size_t)j * c.d.ld + i, v);
        }
    }
}

/* CUBLAS_STATUS_SUCCESS when the emulator (and cuBLASLt) computes this
 * problem; NOT_SUPPORTED for a combination it does not, INVALID_VALUE for
 * dimensions that disagree. */
cublasStatus_t check_problem(const cublasLtMatmulDescOpaque_t *op,
                             const cublasLtMatrixLayoutOpaque_t *a,
                             const cublasLtMatrixLayoutOpaque_t *b,
                             const cublasLtMatrixLayoutOpaque_t *c,
                             const cublasLtMatrixLayoutOpaque_t *d)
{
    if (op->compute != CUBLAS_COMPUTE_32F || op->scale != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (a->order != CUBLASLT_ORDER_COL || b->order != CUBLASLT_ORDER_COL ||
        c->order != CUBLASLT_ORDER_COL || d->order != CUBLASLT_ORDER_COL)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (a->type != b->type || c->type != d->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (a->type == CUDA_R_32F && d->type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (a->type != CUDA_R_32F && d->type != a->type && d->type != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    switch (op->epilogue) {
    case CUBLASLT_EPILOGUE_DEFAULT:
    case CUBLASLT_EPILOGUE_GELU: break;
    case CUBLASLT_EPILOGUE_BIAS:
    case CUBLASLT_EPILOGUE_GELU_BIAS:
        if (op->bias == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
        break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    const bool ta = op->transa != CUBLAS_OP_N, tb = op->transb != CUBLAS_OP_N;
    const uint64_t m = d->rows, n = d->cols;
    const uint64_t am = ta ? a->cols : a->rows, ak = ta ? a->rows : a->cols;
    const uint64_t bk = tb ? b->cols : b->rows, bn = tb ? b->rows : b->cols;
    if (am != m || bn != n || ak != bk || c->rows != m || c->cols != n)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m > 0x7fffffffULL || n > 0x7fffffffULL || ak > 0x7fffffffULL)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}

bool layout_ok(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld)
{
    (void)cols;
    return known_type(type) && ld >= (int64_t)(rows > 1 ? rows : 1);
}

} // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = nullptr;
    if (!device_present()) return CUBLAS_STATUS_NOT_INITIALIZED;
    cublasLtHandle_t h = new cublasLtContext{0};
    live<cublasLtHandle_t>().insert(h);
    *handle = h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!is_live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    live<cublasLtHandle_t>().erase(handle);
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc,
                                        cublasComputeType_t compute_type,
                                        cudaDataType_t scale_type)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (desc == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *desc = nullptr;
    if (!known_type(scale_type)) return CUBLAS_STATUS_INVALID_VALUE;
    cublasLtMatmulDesc_t d = new cublasLtMatmulDescOpaque_t{
        compute_type, scale_type, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, nullptr};
    live<cublasLtMatmulDesc_t>().insert(d);
    *desc = d;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!is_live(desc)) return CUBLAS_STATUS_INVALID_VALUE;
    live<cublasLtMatmulDesc_t>().erase(desc);
    delete desc;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!is_live(desc) || buf == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    auto get = [&](auto *dst) {
        if (size != sizeof *dst) return false;
        memcpy(dst, buf, size);
        return true;
    };
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
        int32_t op;
        if (!get(&op) || (op != CUBLAS_OP_N && op != CUBLAS_OP_T))
            return CUBLAS_STATUS_INVALID_VALUE;
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? desc->transa : desc->transb) = (cublasOperation_t)op;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
        uint32_t e;
        if (!get(&e)) return CUBLAS_STATUS_INVALID_VALUE;
        desc->epilogue = (cublasLtEpilogue_t)e;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: {
        const void *p;
        if (!get(&p)) return CUBLAS_STATUS_INVALID_VALUE;
        desc->bias = p;
        return CUBLAS_STATUS_SUCCESS;
    }
    default: return CUBLAS_STATUS_NOT_SUPPORTED; /* not modelled */
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType_t type,
                                          uint64_t rows, uint64_t cols, int64_t ld)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (layout == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *layout = nullptr;
    if (!layout_ok(type, rows, cols, ld)) return CUBLAS_STATUS_INVALID_VALUE;
    cublasLtMatrixLayout_t l =
        new cublasLtMatrixLayoutOpaque_t{type, rows, cols, ld, CUBLASLT_ORDER_COL};
    live<cublasLtMatrixLayout_t>().insert(l);
    *layout = l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!is_live(layout)) return CUBLAS_STATUS_INVALID_VALUE;
    live<cublasLtMatrixLayout_t>().erase(layout);
    delete layout;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout,
                                                cublasLtMatrixLayoutAttribute_t attr,
                                                const void *buf, size_t size)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!is_live(layout) || buf == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    cublasLtMatrixLayoutOpaque_t l = *layout;
    if (attr == CUBLASLT_MATRIX_LAYOUT_ORDER && size == sizeof(int32_t)) {
        int32_t o;
        memcpy(&o, buf, size);
        l.order = (cublasLtOrder_t)o;
    } else if (attr == CUBLASLT_MATRIX_LAYOUT_TYPE && size == sizeof(uint32_t)) {
        uint32_t t;
        memcpy(&t, buf, size);
        l.type = (cudaDataType_t)t;
    } else if ((attr == CUBLASLT_MATRIX_LAYOUT_ROWS || attr == CUBLASLT_MATRIX_LAYOUT_COLS) &&
               size == sizeof(uint64_t)) {
        memcpy(attr == CUBLASLT_MATRIX_LAYOUT_ROWS ? &l.rows : &l.cols, buf, size);
    } else if (attr == CUBLASLT_MATRIX_LAYOUT_LD && size == sizeof(int64_t)) {
        memcpy(&l.ld, buf, size);
    } else if (attr == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT && size == sizeof(int32_t)) {
        int32_t count;
        memcpy(&count, buf, size);
        return count == 1 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
    } else {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!layout_ok(l.type, l.rows, l.cols, l.ld)) return CUBLAS_STATUS_INVALID_VALUE;
    *layout = l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (pref == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    cublasLtMatmulPreference_t p = new cublasLtMatmulPreferenceOpaque_t{0, {256, 256, 256, 256}};
    live<cublasLtMatmulPreference_t>().insert(p);
    *pref = p;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!is_live(pref)) return CUBLAS_STATUS_INVALID_VALUE;
    live<cublasLtMatmulPreference_t>().erase(pref);
    delete pref;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t size)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!is_live(pref) || buf == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && size == sizeof(uint64_t)) {
        uint64_t v;
        memcpy(&v, buf, size);
        pref->max_workspace = (size_t)v;
        return CUBLAS_STATUS_SUCCESS;
    }
    if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES &&
        attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES && size == sizeof(uint32_t)) {
        uint32_t v;
        memcpy(&v, buf, size);
        if (v == 0 || (v & (v - 1)) != 0) return CUBLAS_STATUS_INVALID_VALUE;
        pref->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = v;
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t handle, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a,
    cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
    cublasLtMatmulPreference_t pref, int requested, cublasLtMatmulHeuristicResult_t results[],
    int *returned)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!is_live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!is_live(op) || !is_live(a) || !is_live(b) || !is_live(c) || !is_live(d) ||
        !is_live(pref) || requested < 1 || results == nullptr || returned == nullptr)
        return CUBLAS_STATUS_INVALID_VALUE;
    *returned = 0;
    const cublasStatus_t st = check_problem(op, a, b, c, d);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    /* One algorithm: it needs no workspace and remembers the alignments it
     * was chosen for (the real ones are specialised for them). */
    cublasLtMatmulHeuristicResult_t r;
    memset(&r, 0, sizeof r);
    r.algo.data[0] = kAlgoTag;
    for (int i = 0; i < 4; i++) r.algo.data[1 + i] = pref->align[i];
    r.workspaceSize = 0;
    r.state = CUBLAS_STATUS_SUCCESS;
    r.wavesCount = 1.0f;
    results[0] = r;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t op,
                              const void *alpha, const void *A, cublasLtMatrixLayout_t adesc,
                              const void *B, cublasLtMatrixLayout_t bdesc, const void *beta,
                              const void *C, cublasLtMatrixLayout_t cdesc, void *D,
                              cublasLtMatrixLayout_t ddesc, const cublasLtMatmulAlgo_t *algo,
                              void *workspace, size_t workspace_bytes, cudaStream_t stream)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!is_live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!is_live(op) || !is_live(adesc) || !is_live(bdesc) || !is_live(cdesc) ||
        !is_live(ddesc) || alpha == nullptr || beta == nullptr)
        return CUBLAS_STATUS_INVALID_VALUE;
    const cublasStatus_t st = check_problem(op, adesc, bdesc, cdesc, ddesc);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (algo != nullptr) {
        if (algo->data[0] != kAlgoTag) return CUBLAS_STATUS_INVALID_VALUE;
        const void *ptrs[4] = {A, B, C, D};
        static const char names[] = "ABCD";
        for (int i = 0; i < 4; i++)
            if (reinterpret_cast<uintptr_t>(ptrs[i]) % algo->data[1 + i] != 0) {
                note("cublasLtMatmul: %c is less aligned than the %llu bytes its algorithm was "
                     "chosen for",
                     names[i], (unsigned long long)algo->data[1 + i]);
                return CUBLAS_STATUS_INVALID_VALUE;
            }
    }
    if (workspace_bytes > 0 &&
        !device_range_ok(workspace, workspace_bytes, "cublasLtMatmul", "workspace"))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!valid_stream(stream)) return CUBLAS_STATUS_EXECUTION_FAILED;
    bool record = false;
    if (capture_gate("cublasLtMatmul", stream, &record) != cudaSuccess)
        return CUBLAS_STATUS_EXECUTION_FAILED;
    lt_call call;
    call.op = *op;
    call.a = *adesc;
    call.b = *bdesc;
    call.c = *cdesc;
    call.d = *ddesc;
    call.alpha = *static_cast<const float *>(alpha);
    call.beta = *static_cast<const float *>(beta);
    call.A = A;
    call.B = B;
    call.C = C;
    call.D = D;
    call.m = (int)ddesc->rows;
    call.n = (int)ddesc->cols;
    call.k = (int)(op->transa != CUBLAS_OP_N ? adesc->rows : adesc->cols);
    if (call.m == 0 || call.n == 0) return CUBLAS_STATUS_SUCCESS;
    if (!record) {
        run(call);
        return CUBLAS_STATUS_SUCCESS;
    }
    require_operands(call);
    auto node = std::make_shared<const lt_call>(call);
    capture_record(stream, [node](cudaStream_t) {
        run(*node);
        return cudaSuccess;
    });
    return CUBLAS_STATUS_SUCCESS;
}

} // extern "C"
