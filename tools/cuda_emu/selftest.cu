/* fgi_emu self-test: what the emulator promises in README.md, checked on small
 * kernels written for it. Built and registered with CTest only in a
 * -DFG_CUDA_EMU=ON build (translated like the sources in cuda/).
 *
 * Results are compared with what the CUDA programming guide defines
 * (computed here from the formulas, lane by lane); the misuse cases run in a
 * forked child and must end in SIGABRT with the expected "fgi_emu:" report.
 * Exit status 0 when everything holds; every failure is printed. */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include "mma_f16.cuh" /* cuda/attention, translated next to this file */
#include "sm90_primitives.cuh"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

static int failures = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "selftest: FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

template <typename T> static T *device_array(size_t n)
{
    void *p = nullptr;
    if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) abort();
    return static_cast<T *>(p);
}

template <typename T> static std::vector<T> download(const T *d, size_t n)
{
    std::vector<T> h(n);
    if (cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess) abort();
    return h;
}

/* Warp collectives ------------------------------------------------------------------- */

/* out (n, 6): idx with width 8, up 3 with width 16, down 5, xor 6, ballot,
 * any/all packed; lanes take part as `mask` says (others write -1). */
__global__ void collectives_kernel(int *out, unsigned mask)
{
    const int lane = threadIdx.x % 32;
    int *o = out + 6 * threadIdx.x;
    if (!(mask >> lane & 1)) {
        for (int k = 0; k < 6; k++) o[k] = -1;
        return;
    }
    const int v = 100 + (int)threadIdx.x;
    o[0] = __shfl_sync(mask, v, lane + 3, 8);
    o[1] = __shfl_up_sync(mask, v, 3, 16);
    o[2] = __shfl_down_sync(mask, v, 5, 8);
    o[3] = __shfl_xor_sync(mask, v, 6);
    o[4] = (int)__ballot_sync(mask, lane % 3 == 0);
    o[5] = __any_sync(mask, lane == 4) * 2 + __all_sync(mask, lane < 40);
}

static void test_collectives()
{
    /* a full warp, and a block of 40 threads whose second warp has 8 lanes */
    for (int n : {32, 40}) {
        int *d = device_array<int>(6 * (size_t)n);
        collectives_kernel<<<1, n>>>(d, n == 32 ? 0xffffffffu : 0xffu);
        CHECK(cudaGetLastError() == cudaSuccess, "launch");
        const std::vector<int> h = download(d, 6 * (size_t)n);
        for (int t = n == 32 ? 0 : 32; t < n; t++) {
            const int lane = t % 32, warp0 = t - lane, v = 100 + t;
            const int members = n == 32 ? 32 : 8;
            auto value = [&](int l) { return 100 + warp0 + l; };
            const int *o = &h[6 * (size_t)t];
            CHECK(o[0] == value((lane & ~7) + (lane + 3) % 8), "shfl idx lane %d: %d", lane, o[0]);
            CHECK(o[1] == (lane % 16 >= 3 ? value(lane - 3) : v), "shfl up lane %d: %d", lane,
                  o[1]);
            CHECK(o[2] == (lane % 8 + 5 < 8 ? value(lane + 5) : v), "shfl down lane %d: %d", lane,
                  o[2]);
            if ((lane ^ 6) < members) CHECK(o[3] == value(lane ^ 6), "shfl xor lane %d", lane);
            unsigned ballot = 0;
            for (int l = 0; l < members; l++)
                if (l % 3 == 0) ballot |= 1u << l;
            CHECK((unsigned)o[4] == ballot, "ballot lane %d: %x", lane, o[4]);
            CHECK(o[5] == 2 * (members > 4) + 1, "any/all lane %d: %d", lane, o[5]);
        }
        cudaFree(d);
    }
}

/* Shared memory --------------------------------------------------------------------- */

/* out (blocks, 3): NaN seen before the first write, the block's own value
 * after the barrier, the dynamic shared memory's first word (NaN). */
__global__ void shared_kernel(float *out)
{
    __shared__ float cell[4];
    extern __shared__ float dyn[];
    const bool was_nan = isnan(cell[threadIdx.x % 4]);
    __syncthreads();
    if (threadIdx.x == 0) cell[0] = (float)blockIdx.x;
    __syncthreads();
    if (threadIdx.x == 0) {
        out[3 * blockIdx.x] = was_nan ? 1.0f : 0.0f;
        out[3 * blockIdx.x + 1] = cell[0];
        out[3 * blockIdx.x + 2] = dyn[0];
    }
}

__global__ void empty_kernel(float *) {}

static void test_shared()
{
    float *d = device_array<float>(3 * 5);
    shared_kernel<<<5, 64, 256>>>(d);
    CHECK(cudaGetLastError() == cudaSuccess, "launch");
    const std::vector<float> h = download(d, 15);
    for (int b = 0; b < 5; b++) {
        CHECK(h[3 * b] == 1.0f, "block %d: static shared memory did not start as NaN", b);
        CHECK(h[3 * b + 1] == (float)b, "block %d: static shared object not per block", b);
        CHECK(isnan(h[3 * b + 2]), "block %d: dynamic shared memory did not start as NaN", b);
    }
    /* the 48 KiB default, the opt-in attribute, its 227 KiB ceiling */
    empty_kernel<<<1, 32, 49 * 1024>>>(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue, "49 KiB without opting in must fail");
    CHECK(cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               100 * 1024) == cudaSuccess,
          "opt in");
    empty_kernel<<<1, 32, 99 * 1024>>>(d);
    CHECK(cudaGetLastError() == cudaSuccess, "99 KiB after opting in to 100 KiB");
    CHECK(cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               228 * 1024) == cudaErrorInvalidValue,
          "above 227 KiB");
    (void)cudaGetLastError();
    /* occupancy by shared memory (227 KiB / (99 + 1) KiB) and by threads */
    int blocks = -1;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, empty_kernel, 128, 99 * 1024) ==
                  cudaSuccess &&
              blocks == 2,
          "occupancy at 99 KiB: %d blocks", blocks);
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, empty_kernel, 1024, 0) ==
                  cudaSuccess &&
              blocks == 2,
          "occupancy at 1024 threads: %d blocks", blocks);
    empty_kernel<<<1, 1025>>>(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "1025 threads per block");
    empty_kernel<<<dim3(1, 65536), 32>>>(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid y 65536");
    cudaFree(d);
}

/* out (32): a 16-byte cp.async per lane whose last 4 bytes are zero-filled;
 * out[0] also records whether the destination read NaN before the wait. */
__global__ void async_kernel(float *out, const float *in)
{
    extern __shared__ float4 tile[];
    float *t = reinterpret_cast<float *>(tile);
    __pipeline_memcpy_async(t + 4 * threadIdx.x, in + 4 * threadIdx.x, 16, 4);
    __pipeline_commit();
    const bool pending_nan = isnan(t[4 * threadIdx.x]);
    __pipeline_wait_prior(0);
    out[threadIdx.x] = t[4 * threadIdx.x] + t[4 * threadIdx.x + 2] + t[4 * threadIdx.x + 3];
    if (threadIdx.x == 0 && !pending_nan) out[0] = -1.0f;
}

static void test_async_copy()
{
    std::vector<float> host(128);
    for (int i = 0; i < 128; i++) host[(size_t)i] = (float)i;
    float *in = device_array<float>(128), *out = device_array<float>(32);
    cudaMemcpy(in, host.data(), sizeof(float) * 128, cudaMemcpyHostToDevice);
    async_kernel<<<1, 32, 512>>>(out, in);
    CHECK(cudaGetLastError() == cudaSuccess, "launch");
    const std::vector<float> h = download(out, 32);
    CHECK(h[0] != -1.0f, "cp.async destination readable before the wait");
    for (int l = 0; l < 32; l++)
        CHECK(h[(size_t)l] == (float)(4 * l) + (float)(4 * l + 2) + 0.0f, "lane %d: %g", l,
              h[(size_t)l]);
    cudaFree(in), cudaFree(out);
}

/* 16-bit tensor-core emulation (cuda/attention/mma_f16.cuh) ------------------------- */

/* One warp: d (16 x 8, row-major) = c + a (16 x 16, row-major) * b (16 x 8,
 * row-major, [k][n]), operands as 16-bit bit patterns, fragments built lane
 * by lane from the PTX layout. */
template <typename T>
__global__ void mma16_kernel(float *d, const uint16_t *a, const uint16_t *b, const float *c)
{
    const int lane = (int)threadIdx.x, g = lane / 4, t = lane % 4;
    const auto pair = [](uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); };
    const uint32_t fa[4] = {pair(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]),
                            pair(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]),
                            pair(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]),
                            pair(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9])};
    const uint32_t fb[2] = {pair(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]),
                            pair(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g])};
    float acc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t],
                    c[(g + 8) * 8 + 2 * t + 1]};
    fgi_mma_f16<T>(acc, fa, fb);
    d[g * 8 + 2 * t] = acc[0], d[g * 8 + 2 * t + 1] = acc[1];
    d[(g + 8) * 8 + 2 * t] = acc[2], d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

template <typename T> static uint16_t bits16(float x);
template <> uint16_t bits16<__nv_bfloat16>(float x) { return __bfloat16_as_ushort(__float2bfloat16(x)); }
template <> uint16_t bits16<__half>(float x) { return __half_as_ushort(__float2half(x)); }
template <typename T> static float value16(uint16_t b);
template <> float value16<__nv_bfloat16>(uint16_t b) { return __bfloat162float(__ushort_as_bfloat16(b)); }
template <> float value16<__half>(uint16_t b) { return __half2float(__ushort_as_half(b)); }

/* Against the plain product in double: exactly where every partial sum is
 * representable (small integers), and within fp32 summation error for
 * random values (both signs, magnitudes spread over 2^-6 .. 2^6). */
template <typename T> static void test_mma16_type(const char *name)
{
    uint16_t *da = device_array<uint16_t>(256), *db = device_array<uint16_t>(128);
    float *dc = device_array<float>(128), *dd = device_array<float>(128);
    unsigned seed = 12345u;
    const auto rnd = [&seed]() {
        seed = seed * 1664525u + 1013904223u;
        return (double)(seed >> 8) / 16777216.0;
    };
    for (int integers = 1; integers >= 0; integers--) {
        std::vector<uint16_t> a(256), b(128);
        std::vector<float> c(128);
        for (auto &x : a)
            x = bits16<T>(integers ? (float)(int)(rnd() * 17 - 8)
                                   : (float)((rnd() - 0.5) * ldexp(1.0, (int)(rnd() * 12) - 6)));
        for (auto &x : b)
            x = bits16<T>(integers ? (float)(int)(rnd() * 17 - 8) : (float)(rnd() * 4 - 2));
        for (auto &x : c) x = integers ? (float)(int)(rnd() * 100 - 50) : (float)(rnd() * 2 - 1);
        cudaMemcpy(da, a.data(), 512, cudaMemcpyHostToDevice);
        cudaMemcpy(db, b.data(), 256, cudaMemcpyHostToDevice);
        cudaMemcpy(dc, c.data(), 512, cudaMemcpyHostToDevice);
        mma16_kernel<T><<<1, 32>>>(dd, da, db, dc);
        CHECK(cudaGetLastError() == cudaSuccess, "launch");
        const std::vector<float> d = download(dd, 128);
        for (int i = 0; i < 16; i++)
            for (int n = 0; n < 8; n++) {
                double want = c[(size_t)(i * 8 + n)], mag = fabs(want);
                for (int k = 0; k < 16; k++) {
                    const double p = (double)value16<T>(a[(size_t)(i * 16 + k)]) *
                                     value16<T>(b[(size_t)(k * 8 + n)]);
                    want += p, mag += fabs(p);
                }
                const double got = d[(size_t)(i * 8 + n)];
                const double tol = integers ? 0.0 : 17 * mag * ldexp(1.0, -24);
                CHECK(fabs(got - want) <= tol, "%s mma m16n8k16 (%d, %d): %.9g, want %.9g (%s)",
                      name, i, n, got, want, integers ? "integers" : "random");
            }
    }
    cudaFree(da), cudaFree(db), cudaFree(dc), cudaFree(dd);
}

/* ldmatrix.x4 (plain and .trans) on a 16 x 16 tile with a padded pitch:
 * lane l addresses row l % 8 of matrix l / 8 (rows 8 (m & 1).., columns
 * 8 (m >> 1)..); out (32 lanes, 4 registers) for each mode. */
constexpr int kLdPitch = 24;
__global__ void ldmatrix_kernel(uint32_t *out, const uint16_t *in)
{
    __shared__ uint16_t tile[16 * kLdPitch];
    const int lane = (int)threadIdx.x;
    for (int i = lane; i < 16 * kLdPitch; i += 32) tile[i] = in[i];
    __syncwarp();
    const int m = lane / 8, r = lane % 8;
    const uint16_t *row = tile + (8 * (m & 1) + r) * kLdPitch + 8 * (m >> 1);
    uint32_t plain[4], trans[4];
    fgi_ldmatrix_x4<false>(plain, row);
    fgi_ldmatrix_x4<true>(trans, row);
    for (int j = 0; j < 4; j++) out[lane * 8 + j] = plain[j], out[lane * 8 + 4 + j] = trans[j];
}

static void test_ldmatrix()
{
    std::vector<uint16_t> in(16 * kLdPitch);
    for (size_t i = 0; i < in.size(); i++) in[i] = (uint16_t)(1000 + 7 * i);
    uint16_t *din = device_array<uint16_t>(in.size());
    uint32_t *dout = device_array<uint32_t>(256);
    cudaMemcpy(din, in.data(), 2 * in.size(), cudaMemcpyHostToDevice);
    ldmatrix_kernel<<<1, 32>>>(dout, din);
    CHECK(cudaGetLastError() == cudaSuccess, "launch");
    const std::vector<uint32_t> out = download(dout, 256);
    const auto at = [&in](int j, int row, int col) {
        return (uint32_t)in[(size_t)((8 * (j & 1) + row) * kLdPitch + 8 * (j >> 1) + col)];
    };
    for (int l = 0; l < 32; l++)
        for (int j = 0; j < 4; j++) {
            const uint32_t plain = at(j, l / 4, 2 * (l % 4)) | at(j, l / 4, 2 * (l % 4) + 1) << 16;
            const uint32_t trans = at(j, 2 * (l % 4), l / 4) | at(j, 2 * (l % 4) + 1, l / 4) << 16;
            CHECK(out[(size_t)(l * 8 + j)] == plain, "ldmatrix.x4 lane %d reg %d: %08x, want %08x",
                  l, j, out[(size_t)(l * 8 + j)], plain);
            CHECK(out[(size_t)(l * 8 + 4 + j)] == trans,
                  "ldmatrix.x4.trans lane %d reg %d: %08x, want %08x", l, j,
                  out[(size_t)(l * 8 + 4 + j)], trans);
        }
    cudaFree(din), cudaFree(dout);
}

static void test_mma16()
{
    test_mma16_type<__nv_bfloat16>("bf16");
    test_mma16_type<__half>("f16");
    test_ldmatrix();
}

__global__ void count_kernel(int *counter) { atomicAdd(counter, 1); }

static void test_atomics_and_blocks()
{
    int *c = device_array<int>(1);
    cudaMemset(c, 0, sizeof(int));
    count_kernel<<<dim3(3, 2, 2), dim3(8, 2, 3)>>>(c);
    CHECK(download(c, 1)[0] == 12 * 48, "atomicAdd over 12 blocks of 48 threads: %d",
          download(c, 1)[0]);
    cudaFree(c);
}

/* Host API ---------------------------------------------------------------------------- */

static void test_host_api()
{
    int n = 0, value = 0;
    CHECK(cudaGetDeviceCount(&n) == cudaSuccess && n == 1, "one device");
    CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) ==
                  cudaSuccess &&
              value == 227 * 1024,
          "opt-in shared memory %d", value);
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0) == cudaSuccess && prop.multiProcessorCount > 0 &&
              prop.major == 9,
          "properties");

    char *d = device_array<char>(100);
    char host[200] = {0};
    CHECK(cudaMemcpy(d, host, 101, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy past the end of the allocation");
    CHECK(cudaGetLastError() == cudaErrorInvalidValue, "recorded as the last error");
    CHECK(cudaGetLastError() == cudaSuccess, "and cleared by reading it");
    CHECK(cudaMemcpy(host, d, 10, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "host destination with kind HostToDevice");
    CHECK(cudaMemcpy2D(d, 10, host, 20, 11, 3, cudaMemcpyHostToDevice) ==
              cudaErrorInvalidPitchValue,
          "width above a pitch");
    CHECK(cudaMemset(d + 50, 0, 51) == cudaErrorInvalidValue, "memset past the end");
    CHECK(cudaFree(host) == cudaErrorInvalidValue, "free of host memory");
    CHECK(cudaFree(d) == cudaSuccess, "free");
    CHECK(cudaFree(d) == cudaErrorInvalidValue, "double free");
    CHECK(cudaMemcpy(host, d, 10, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
          "copy from freed memory");
    (void)cudaGetLastError();

    cudaStream_t s = nullptr;
    cudaEvent_t a = nullptr, b = nullptr;
    float ms = -1.0f;
    CHECK(cudaStreamCreate(&s) == cudaSuccess, "stream");
    CHECK(cudaEventCreate(&a) == cudaSuccess && cudaEventCreate(&b) == cudaSuccess, "events");
    CHECK(cudaEventElapsedTime(&ms, a, b) == cudaErrorInvalidResourceHandle,
          "elapsed time of events never recorded");
    CHECK(cudaEventRecord(a, s) == cudaSuccess && cudaEventRecord(b, s) == cudaSuccess &&
              cudaEventSynchronize(b) == cudaSuccess &&
              cudaEventElapsedTime(&ms, a, b) == cudaSuccess && ms >= 0.0f,
          "event timing");
    CHECK(cudaStreamDestroy(s) == cudaSuccess, "destroy");
    CHECK(cudaStreamSynchronize(s) == cudaErrorInvalidResourceHandle, "destroyed stream");
    cudaEventDestroy(a), cudaEventDestroy(b);
    (void)cudaGetLastError();

    setenv("FG_EMU_NO_GPU", "1", 1);
    CHECK(cudaGetDeviceCount(&n) == cudaErrorNoDevice && n == 0, "FG_EMU_NO_GPU");
    unsetenv("FG_EMU_NO_GPU");
    (void)cudaGetLastError();
}

/* cuBLAS ------------------------------------------------------------------------------- */

static void test_sgemm()
{
    cublasHandle_t h;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "create");
    const int m = 5, n = 3, k = 4, ld = 7; /* column-major with padding rows */
    std::vector<float> A(ld * 7), B(ld * 7), C(ld * n);
    for (size_t i = 0; i < A.size(); i++) A[i] = (float)((i * 7) % 11) - 5.0f;
    for (size_t i = 0; i < B.size(); i++) B[i] = (float)((i * 5) % 13) * 0.25f - 1.0f;
    for (size_t i = 0; i < C.size(); i++) C[i] = (float)i * 0.5f;
    float *dA = device_array<float>(A.size()), *dB = device_array<float>(B.size());
    float *dC = device_array<float>(C.size());
    cudaMemcpy(dA, A.data(), A.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, B.data(), B.size() * 4, cudaMemcpyHostToDevice);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (float beta : {0.0f, 0.5f}) {
                std::vector<float> c0 = C;
                if (beta == 0.0f) /* C is not read: NaN there must not matter */
                    for (float &x : c0) x = NAN;
                cudaMemcpy(dC, c0.data(), C.size() * 4, cudaMemcpyHostToDevice);
                const float alpha = 1.5f;
                CHECK(cublasSgemm(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  m, n, k, &alpha, dA, ld, dB, ld, &beta, dC,
                                  ld) == CUBLAS_STATUS_SUCCESS,
                      "sgemm");
                const std::vector<float> got = download(dC, C.size());
                for (int j = 0; j < n; j++)
                    for (int i = 0; i < m; i++) {
                        double s = 0.0;
                        for (int l = 0; l < k; l++)
                            s += (double)(ta ? A[(size_t)i * ld + l] : A[(size_t)l * ld + i]) *
                                 (tb ? B[(size_t)l * ld + j] : B[(size_t)j * ld + l]);
                        const double want =
                            alpha * s + (beta == 0.0f ? 0.0 : beta * C[(size_t)j * ld + i]);
                        CHECK(fabs(got[(size_t)j * ld + i] - want) <= 1e-5 * (1.0 + fabs(want)),
                              "op %d%d beta %g at (%d, %d): %g, want %g", ta, tb, beta, i, j,
                              got[(size_t)j * ld + i], want);
                    }
                CHECK(got[(size_t)m] == c0[(size_t)m] ||
                          (isnan(got[(size_t)m]) && isnan(c0[(size_t)m])),
                      "row padding of C written");
            }
    const float one = 1.0f;
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, dA, m - 1, dB, ld, &one, dC,
                      ld) == CUBLAS_STATUS_INVALID_VALUE,
          "lda < m");
    CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, dA, k - 1, dB, ld, &one, dC,
                      ld) == CUBLAS_STATUS_INVALID_VALUE,
          "lda < k for op T");
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, -1, n, k, &one, dA, ld, dB, ld, &one, dC, ld) ==
              CUBLAS_STATUS_INVALID_VALUE,
          "m < 0");

    /* TF32 rounds the inputs: 1 + 2^-12 times 1 is no longer exact */
    const float x = 1.0f + 1.0f / 4096.0f, zero = 0.0f;
    cudaMemcpy(dA, &x, 4, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, &one, 4, cudaMemcpyHostToDevice);
    cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, dA, 1, dB, 1, &zero, dC, 1);
    CHECK(download(dC, 1)[0] == x, "fp32 GEMM exact");
    CHECK(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH) == CUBLAS_STATUS_SUCCESS, "tf32");
    cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, dA, 1, dB, 1, &zero, dC, 1);
    CHECK(download(dC, 1)[0] == 1.0f, "TF32 GEMM rounds to 10 mantissa bits");
    CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS, "destroy");
    CHECK(cublasDestroy(h) == CUBLAS_STATUS_NOT_INITIALIZED, "destroy twice");
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
}

/* cuBLASLt ------------------------------------------------------------------------------ */

/* Values of type t as stored (bf16 / f16 bits or fp32), from and to float. */
static std::vector<uint16_t> to16(cudaDataType_t t, const std::vector<float> &v)
{
    std::vector<uint16_t> r(v.size());
    for (size_t i = 0; i < v.size(); i++) {
        if (t == CUDA_R_16BF) {
            const __nv_bfloat16 h = __float2bfloat16(v[i]);
            memcpy(&r[i], &h, 2);
        } else {
            const __half h = __float2half(v[i]);
            memcpy(&r[i], &h, 2);
        }
    }
    return r;
}

static float from16(cudaDataType_t t, uint16_t bits)
{
    if (t == CUDA_R_16BF) {
        __nv_bfloat16 h;
        memcpy(&h, &bits, 2);
        return __bfloat162float(h);
    }
    __half h;
    memcpy(&h, &bits, 2);
    return __half2float(h);
}

static float round_to(cudaDataType_t t, float v)
{
    return t == CUDA_R_32F ? v : from16(t, to16(t, std::vector<float>{v})[0]);
}

static void *upload_as(cudaDataType_t t, const std::vector<float> &v)
{
    const size_t es = t == CUDA_R_32F ? 4 : 2;
    void *d = nullptr;
    if (cudaMalloc(&d, v.size() * es) != cudaSuccess) abort();
    if (t == CUDA_R_32F)
        cudaMemcpy(d, v.data(), v.size() * 4, cudaMemcpyHostToDevice);
    else
        cudaMemcpy(d, to16(t, v).data(), v.size() * 2, cudaMemcpyHostToDevice);
    return d;
}

static std::vector<float> download_as(cudaDataType_t t, const void *d, size_t n)
{
    std::vector<float> r(n);
    if (t == CUDA_R_32F) return download(static_cast<const float *>(d), n);
    const std::vector<uint16_t> b = download(static_cast<const uint16_t *>(d), n);
    for (size_t i = 0; i < n; i++) r[i] = from16(t, b[i]);
    return r;
}

/* One matmul with descriptors made for it; the status of cublasLtMatmul
 * (or of the first call that fails). */
struct lt_problem {
    cudaDataType_t ab, cd;
    int ta, tb, m, n, k, lda, ldb, ldc;
    cublasLtEpilogue_t epi;
    const void *bias;
};

static cublasStatus_t lt_run(cublasLtHandle_t h, const lt_problem &p, float alpha, float beta,
                             const void *A, const void *B, const void *C, void *D,
                             cudaStream_t stream, bool use_heuristic = true)
{
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    cublasStatus_t st = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const cublasOperation_t ta = p.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = p.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    auto then = [&](cublasStatus_t next) {
        if (st == CUBLAS_STATUS_SUCCESS) st = next;
    };
    then(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    then(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    then(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &p.epi, sizeof p.epi));
    if (p.bias)
        then(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias,
                                            sizeof p.bias));
    then(cublasLtMatrixLayoutCreate(&a, p.ab, p.ta ? p.k : p.m, p.ta ? p.m : p.k, p.lda));
    then(cublasLtMatrixLayoutCreate(&b, p.ab, p.tb ? p.n : p.k, p.tb ? p.k : p.n, p.ldb));
    then(cublasLtMatrixLayoutCreate(&c, p.cd, p.m, p.n, p.ldc));
    then(cublasLtMatmulPreferenceCreate(&pref));
    cublasLtMatmulHeuristicResult_t r;
    int found = 0;
    if (use_heuristic) {
        then(cublasLtMatmulAlgoGetHeuristic(h, op, a, b, c, c, pref, 1, &r, &found));
        if (st == CUBLAS_STATUS_SUCCESS && found != 1) st = CUBLAS_STATUS_NOT_SUPPORTED;
    }
    then(cublasLtMatmul(h, op, &alpha, A, a, B, b, &beta, C, c, D, c,
                        use_heuristic ? &r.algo : nullptr, nullptr, 0, stream));
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
    return st;
}

static void test_cublaslt()
{
    cublasLtHandle_t h;
    CHECK(cublasLtCreate(&h) == CUBLAS_STATUS_SUCCESS, "create");
    const int m = 5, n = 3, k = 4, ld = 7; /* column-major with padding rows */
    std::vector<float> A(ld * 7), B(ld * 7), C(ld * n), bias(m);
    for (size_t i = 0; i < A.size(); i++) A[i] = (float)((i * 7) % 11) * 0.375f - 1.75f;
    for (size_t i = 0; i < B.size(); i++) B[i] = (float)((i * 5) % 13) * 0.25f - 1.0f;
    for (size_t i = 0; i < C.size(); i++) C[i] = (float)i * 0.125f;
    for (int i = 0; i < m; i++) bias[(size_t)i] = 0.5f * (float)i - 1.0f;
    const cudaDataType_t types[3][2] = {
        {CUDA_R_16BF, CUDA_R_16BF}, {CUDA_R_16F, CUDA_R_16F}, {CUDA_R_16BF, CUDA_R_32F}};
    const cublasLtEpilogue_t epis[4] = {CUBLASLT_EPILOGUE_DEFAULT, CUBLASLT_EPILOGUE_BIAS,
                                        CUBLASLT_EPILOGUE_GELU, CUBLASLT_EPILOGUE_GELU_BIAS};
    for (const auto &tt : types) {
        const cudaDataType_t ab = tt[0], cd = tt[1];
        void *dA = upload_as(ab, A), *dB = upload_as(ab, B), *dbias = upload_as(cd, bias);
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int e = 0; e < 4; e++)
                    for (float beta : {0.0f, 0.5f}) {
                        std::vector<float> c0 = C;
                        if (beta == 0.0f)
                            for (float &x : c0) x = NAN; /* C is not read */
                        void *dC = upload_as(cd, c0);
                        const bool has_bias = e % 2 == 1, gelu = e >= 2;
                        const lt_problem p = {ab, cd, ta, tb, m, n, k, ld, ld, ld, epis[e],
                                              has_bias ? dbias : nullptr};
                        const float alpha = 1.5f;
                        CHECK(lt_run(h, p, alpha, beta, dA, dB, dC, dC, 0) ==
                                  CUBLAS_STATUS_SUCCESS,
                              "matmul");
                        const std::vector<float> got = download_as(cd, dC, C.size());
                        for (int j = 0; j < n; j++)
                            for (int i = 0; i < m; i++) {
                                double s = 0.0;
                                for (int l = 0; l < k; l++) {
                                    const float a = round_to(ab, ta ? A[(size_t)i * ld + l]
                                                                    : A[(size_t)l * ld + i]);
                                    const float b = round_to(ab, tb ? B[(size_t)l * ld + j]
                                                                    : B[(size_t)j * ld + l]);
                                    s += (double)a * b;
                                }
                                double want = alpha * s;
                                if (beta != 0.0f)
                                    want += beta * (double)round_to(cd, C[(size_t)j * ld + i]);
                                if (has_bias) want += round_to(cd, bias[(size_t)i]);
                                if (gelu)
                                    want = 0.5 * want *
                                           (1.0 + tanh(0.7978845608028654 *
                                                       (want + 0.044715 * want * want * want)));
                                /* D's own rounding (and fp32 for fp32 D) */
                                const double tol = cd == CUDA_R_32F     ? 1e-5
                                                   : ab == CUDA_R_16BF ? 8e-3
                                                                       : 1e-3;
                                CHECK(fabs(got[(size_t)j * ld + i] - want) <=
                                          tol * (1.0 + fabs(want)),
                                      "types %d/%d op %d%d epilogue %d beta %g at (%d, %d): %g, "
                                      "want %g",
                                      (int)ab, (int)cd, ta, tb, (int)epis[e], beta, i, j,
                                      got[(size_t)j * ld + i], want);
                            }
                        CHECK(got[(size_t)m] == round_to(cd, c0[(size_t)m]) ||
                                  (isnan(got[(size_t)m]) && isnan(c0[(size_t)m])),
                              "row padding of D written");
                        cudaFree(dC);
                    }
        cudaFree(dA), cudaFree(dB), cudaFree(dbias);
    }

    /* The bias is added in fp32 before D is rounded: (1 + 2^-4)^2 = 1 + 2^-3
     * + 2^-8 is a bf16 tie that rounds down to even; 2^-10 more rounds up. */
    {
        const float a = 1.0625f, tiny = 1.0f / 1024.0f;
        void *dA = upload_as(CUDA_R_16BF, {a}), *dB = upload_as(CUDA_R_16BF, {a});
        void *dbias = upload_as(CUDA_R_16BF, {tiny}), *dD = upload_as(CUDA_R_16BF, {NAN});
        const lt_problem p = {CUDA_R_16BF, CUDA_R_16BF, 0, 0, 1, 1, 1, 1, 1, 1,
                              CUBLASLT_EPILOGUE_DEFAULT, nullptr};
        CHECK(lt_run(h, p, 1.0f, 0.0f, dA, dB, dD, dD, 0) == CUBLAS_STATUS_SUCCESS, "1x1");
        CHECK(download_as(CUDA_R_16BF, dD, 1)[0] == 1.125f, "tie to even: %g",
              download_as(CUDA_R_16BF, dD, 1)[0]);
        lt_problem q = p;
        q.epi = CUBLASLT_EPILOGUE_BIAS;
        q.bias = dbias;
        CHECK(lt_run(h, q, 1.0f, 0.0f, dA, dB, dD, dD, 0) == CUBLAS_STATUS_SUCCESS, "1x1 bias");
        CHECK(download_as(CUDA_R_16BF, dD, 1)[0] == 1.1328125f,
              "the bias is added before rounding: %g", download_as(CUDA_R_16BF, dD, 1)[0]);

        /* what cuBLASLt refuses */
        lt_problem bad = p;
        bad.epi = CUBLASLT_EPILOGUE_BIAS; /* no bias pointer */
        CHECK(lt_run(h, bad, 1.0f, 0.0f, dA, dB, dD, dD, 0) == CUBLAS_STATUS_INVALID_VALUE,
              "bias epilogue without a bias");
        bad = p;
        bad.cd = CUDA_R_16F; /* bf16 A/B with f16 D */
        CHECK(lt_run(h, bad, 1.0f, 0.0f, dA, dB, dD, dD, 0) == CUBLAS_STATUS_NOT_SUPPORTED,
              "mixed 16-bit types");
        bad = p;
        bad.ldc = 0;
        CHECK(lt_run(h, bad, 1.0f, 0.0f, dA, dB, dD, dD, 0) == CUBLAS_STATUS_INVALID_VALUE,
              "ld < rows");
        cublasLtMatrixLayout_t l = nullptr;
        const int32_t row_order = CUBLASLT_ORDER_ROW;
        CHECK(cublasLtMatrixLayoutCreate(&l, CUDA_R_16BF, 2, 2, 2) == CUBLAS_STATUS_SUCCESS &&
                  cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_ORDER, &row_order,
                                                   sizeof row_order) == CUBLAS_STATUS_SUCCESS,
              "row order is stored");
        cublasLtMatrixLayoutDestroy(l);
        cublasLtMatmulDesc_t op16 = nullptr;
        cublasLtMatrixLayout_t la = nullptr;
        cublasLtMatmulPreference_t pref = nullptr;
        cublasLtMatmulHeuristicResult_t r;
        int found = -1;
        cublasLtMatmulDescCreate(&op16, CUBLAS_COMPUTE_16F, CUDA_R_16F);
        cublasLtMatrixLayoutCreate(&la, CUDA_R_16F, 1, 1, 1);
        cublasLtMatmulPreferenceCreate(&pref);
        CHECK(cublasLtMatmulAlgoGetHeuristic(h, op16, la, la, la, la, pref, 1, &r, &found) ==
                      CUBLAS_STATUS_NOT_SUPPORTED &&
                  found == 0,
              "16-bit accumulation is not modelled");
        cublasLtMatmulPreferenceDestroy(pref), cublasLtMatrixLayoutDestroy(la);
        cublasLtMatmulDescDestroy(op16);
        cudaFree(dA), cudaFree(dB), cudaFree(dbias), cudaFree(dD);
    }

    /* An algorithm chosen for 256-byte alignment refuses a less aligned operand. */
    {
        void *dA = upload_as(CUDA_R_16F, std::vector<float>(8, 1.0f));
        void *dD = upload_as(CUDA_R_16F, std::vector<float>(8, 0.0f));
        const lt_problem p = {CUDA_R_16F, CUDA_R_16F, 0, 0, 2, 2, 2, 2, 2, 2,
                              CUBLASLT_EPILOGUE_DEFAULT, nullptr};
        CHECK(lt_run(h, p, 1.0f, 0.0f, (uint16_t *)dA + 2, dA, dD, dD, 0) ==
                  CUBLAS_STATUS_INVALID_VALUE,
              "A 4 bytes past a 256-byte boundary");
        CHECK(lt_run(h, p, 1.0f, 0.0f, (uint16_t *)dA + 2, dA, dD, dD, 0, false) ==
                  CUBLAS_STATUS_SUCCESS,
              "without an algorithm cuBLASLt picks one for the pointers it gets");
        cudaFree(dA), cudaFree(dD);
    }

    /* Stream capture: recorded with the call's alpha, the matrices read at replay. */
    {
        cudaStream_t s = nullptr;
        cudaGraph_t g = nullptr;
        cudaGraphExec_t ex = nullptr;
        cudaStreamCreate(&s);
        void *dA = upload_as(CUDA_R_16BF, {2.0f}), *dB = upload_as(CUDA_R_16BF, {3.0f});
        void *dD = upload_as(CUDA_R_16BF, {NAN});
        const lt_problem p = {CUDA_R_16BF, CUDA_R_16BF, 0, 0, 1, 1, 1, 1, 1, 1,
                              CUBLASLT_EPILOGUE_DEFAULT, nullptr};
        CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess, "capture");
        CHECK(lt_run(h, p, 0.5f, 0.0f, dA, dB, dD, dD, s) == CUBLAS_STATUS_SUCCESS,
              "captured matmul");
        CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess, "end capture");
        CHECK(std::isnan(download_as(CUDA_R_16BF, dD, 1)[0]), "a captured matmul does not run");
        CHECK(cudaGraphInstantiate(&ex, g, 0) == cudaSuccess, "instantiate");
        cudaMemcpy(dA, to16(CUDA_R_16BF, {4.0f}).data(), 2, cudaMemcpyHostToDevice);
        CHECK(cudaGraphLaunch(ex, s) == cudaSuccess && cudaStreamSynchronize(s) == cudaSuccess,
              "replay");
        CHECK(download_as(CUDA_R_16BF, dD, 1)[0] == 6.0f, "replay: 0.5 x 4 x 3, got %g",
              download_as(CUDA_R_16BF, dD, 1)[0]);
        cudaGraphExecDestroy(ex), cudaGraphDestroy(g), cudaStreamDestroy(s);
        cudaFree(dA), cudaFree(dB), cudaFree(dD);
    }
    CHECK(cublasLtDestroy(h) == CUBLAS_STATUS_SUCCESS, "destroy");
    CHECK(cublasLtDestroy(h) == CUBLAS_STATUS_NOT_INITIALIZED, "destroy twice");
}

/* CUDA graphs (stream capture) ----------------------------------------------------------- */

/* y (n) = a * x + b */
__global__ void axpb_kernel(float *y, const float *x, float a, float b, int n)
{
    const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) y[i] = a * x[i] + b;
}

static cudaStreamCaptureStatus capture_status(cudaStream_t s)
{
    cudaStreamCaptureStatus st = (cudaStreamCaptureStatus)-1;
    if (cudaStreamIsCapturing(s, &st) != cudaSuccess) return (cudaStreamCaptureStatus)-1;
    return st;
}

static bool all_nan(const std::vector<float> &v)
{
    for (float x : v)
        if (!isnan(x)) return false;
    return true;
}

static float byte_pattern_float(unsigned char b)
{
    const uint32_t bits = 0x01010101u * b;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Capture a copy in, a kernel, a memset, an SGEMM and a copy out; nothing
 * runs at capture; replays follow the input data, with the kernel's and
 * SGEMM's host arguments as they were at capture. */
static void test_graph_capture_and_replay()
{
    const int n = 70, m = 3, k = 10; /* Y (k, cols) column-major, cols = n / k = 7 */
    const int cols = n / k;
    cudaStream_t s = nullptr;
    CHECK(cudaStreamCreate(&s) == cudaSuccess, "stream");
    cublasHandle_t h = nullptr;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS && cublasSetStream(h, s) == CUBLAS_STATUS_SUCCESS,
          "cublas on the stream");
    float *dx = device_array<float>(n), *dy = device_array<float>(n);
    float *dz = device_array<float>(n), *dA = device_array<float>((size_t)m * k);
    float *dC = device_array<float>((size_t)m * cols), *dw = device_array<float>(n);
    std::vector<float> A((size_t)m * k);
    for (size_t i = 0; i < A.size(); i++) A[i] = 0.25f * (float)((i * 5) % 7) - 0.5f;
    cudaMemcpy(dA, A.data(), A.size() * 4, cudaMemcpyHostToDevice);
    std::vector<float> host_in((size_t)n, NAN), host_out((size_t)m * cols, NAN);

    CHECK(capture_status(s) == cudaStreamCaptureStatusNone, "not capturing yet");
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin capture");
    CHECK(capture_status(s) == cudaStreamCaptureStatusActive, "capturing");
    float scale = 2.0f, shift = 1.0f, alpha = 0.5f, beta = 0.0f;
    const unsigned char fill = 0x3f;
    CHECK(cudaMemcpyAsync(dx, host_in.data(), n * 4, cudaMemcpyHostToDevice, s) == cudaSuccess,
          "captured copy in");
    axpb_kernel<<<(n + 31) / 32, 32, 0, s>>>(dy, dx, scale, shift, n);
    CHECK(cudaGetLastError() == cudaSuccess, "captured launch");
    CHECK(cudaMemsetAsync(dz, fill, n * 4, s) == cudaSuccess, "captured memset");
    float ex_scale = 3.0f; /* w = 3 y - 2, through cudaLaunchKernelEx */
    cudaLaunchConfig_t lc = {};
    lc.gridDim = dim3((n + 63) / 64), lc.blockDim = dim3(64), lc.stream = s;
    CHECK(cudaLaunchKernelEx(&lc, axpb_kernel, dw, dy, ex_scale, -2.0f, n) == cudaSuccess,
          "captured cudaLaunchKernelEx");
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, cols, k, &alpha, dA, m, dy, k, &beta, dC,
                      m) == CUBLAS_STATUS_SUCCESS,
          "captured sgemm");
    CHECK(cudaMemcpyAsync(host_out.data(), dC, host_out.size() * 4, cudaMemcpyDeviceToHost, s) ==
              cudaSuccess,
          "captured copy out");
    /* a captured copy with a bad range fails at the call and leaves the capture usable */
    CHECK(cudaMemcpyAsync(dx, host_in.data(), (n + 1) * 4, cudaMemcpyHostToDevice, s) ==
              cudaErrorInvalidValue,
          "captured copy past the end");
    (void)cudaGetLastError();
    CHECK(capture_status(s) == cudaStreamCaptureStatusActive, "still capturing after an arg error");
    /* arguments were taken by value: later changes must not reach the replay */
    scale = 100.0f, shift = -100.0f, alpha = 100.0f, ex_scale = 100.0f;
    cudaGraph_t g = nullptr;
    CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess && g != nullptr, "end capture");
    CHECK(capture_status(s) == cudaStreamCaptureStatusNone, "capture ended");

    CHECK(all_nan(download(dx, n)) && all_nan(download(dy, n)) && all_nan(download(dz, n)) &&
              all_nan(download(dw, n)) &&
              all_nan(download(dC, (size_t)m * cols)) && all_nan(host_out),
          "work ran at capture time");

    cudaGraphExec_t e = nullptr;
    CHECK(cudaGraphInstantiate(&e, g, 0) == cudaSuccess && e != nullptr, "instantiate");
    CHECK(cudaGraphDestroy(g) == cudaSuccess, "graph destroyed before the exec");
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < n; i++) host_in[(size_t)i] = (float)((i * (3 + round)) % 11) - 4.5f;
        std::fill(host_out.begin(), host_out.end(), NAN);
        CHECK(cudaGraphLaunch(e, s) == cudaSuccess, "launch round %d", round);
        CHECK(cudaStreamSynchronize(s) == cudaSuccess, "sync");
        const std::vector<float> y = download(dy, n), z = download(dz, n), w = download(dw, n);
        for (int i = 0; i < n; i++) {
            CHECK(y[(size_t)i] == 2.0f * host_in[(size_t)i] + 1.0f, "round %d y[%d] = %g", round,
                  i, y[(size_t)i]);
            CHECK(w[(size_t)i] == 3.0f * y[(size_t)i] - 2.0f, "round %d w[%d] = %g", round, i,
                  w[(size_t)i]);
            CHECK(z[(size_t)i] == byte_pattern_float(fill), "round %d memset z[%d]", round, i);
        }
        for (int j = 0; j < cols; j++)
            for (int i = 0; i < m; i++) {
                double want = 0.0;
                for (int l = 0; l < k; l++)
                    want += (double)A[(size_t)l * m + i] *
                            (2.0 * host_in[(size_t)j * k + l] + 1.0);
                want *= 0.5;
                const float got = host_out[(size_t)j * m + i];
                CHECK(fabs(got - want) <= 1e-5 * (1.0 + fabs(want)),
                      "round %d C(%d, %d) = %g, want %g", round, i, j, got, want);
            }
    }

    /* an exec launched inside another capture becomes part of that graph */
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin outer");
    CHECK(cudaGraphLaunch(e, s) == cudaSuccess, "graph launch captured");
    CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess, "end outer");
    cudaGraphExec_t outer = nullptr;
    CHECK(cudaGraphInstantiate(&outer, g, 0) == cudaSuccess, "instantiate outer");
    CHECK(cudaGraphExecDestroy(e) == cudaSuccess, "inner exec destroyed first");
    for (int i = 0; i < n; i++) host_in[(size_t)i] = (float)(i % 5) + 0.25f;
    CHECK(cudaGraphLaunch(outer, s) == cudaSuccess, "outer launch");
    const std::vector<float> y = download(dy, n);
    for (int i = 0; i < n; i++)
        CHECK(y[(size_t)i] == 2.0f * host_in[(size_t)i] + 1.0f, "nested y[%d] = %g", i,
              y[(size_t)i]);
    CHECK(cudaGraphExecDestroy(outer) == cudaSuccess && cudaGraphDestroy(g) == cudaSuccess,
          "destroy outer");

    cublasDestroy(h);
    cudaFree(dx), cudaFree(dy), cudaFree(dz), cudaFree(dA), cudaFree(dC), cudaFree(dw);
    cudaStreamDestroy(s);
}

/* Begins a capture on s, makes `call` (which must fail with `want`), and
 * checks that the capture is invalidated: further work on s is refused and
 * EndCapture returns cudaErrorStreamCaptureInvalidated with a NULL graph. */
template <typename F>
static void expect_invalidating(const char *what, cudaStream_t s, cudaStreamCaptureMode mode,
                                cudaError_t want, F call)
{
    float *d = device_array<float>(4);
    CHECK(cudaStreamBeginCapture(s, mode) == cudaSuccess, "%s: begin", what);
    const cudaError_t got = call();
    CHECK(got == want, "%s: got %s, want %s", what, cudaGetErrorName(got), cudaGetErrorName(want));
    CHECK(cudaGetLastError() == want, "%s: not the last error", what);
    CHECK(capture_status(s) == cudaStreamCaptureStatusInvalidated, "%s: capture not invalidated",
          what);
    CHECK(cudaMemsetAsync(d, 0, 16, s) == cudaErrorStreamCaptureInvalidated,
          "%s: work accepted on an invalidated capture", what);
    cudaGraph_t g = reinterpret_cast<cudaGraph_t>(&g);
    CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated && g == nullptr,
          "%s: EndCapture of an invalidated capture", what);
    CHECK(capture_status(s) == cudaStreamCaptureStatusNone, "%s: capture not ended", what);
    (void)cudaGetLastError();
    cudaFree(d);
}

static void test_graph_capture_rules()
{
    cudaStream_t s = nullptr, quiet = nullptr;
    cudaEvent_t ev = nullptr;
    CHECK(cudaStreamCreate(&s) == cudaSuccess, "stream");
    CHECK(cudaStreamCreateWithFlags(&quiet, cudaStreamNonBlocking) == cudaSuccess, "stream");
    CHECK(cudaEventCreate(&ev) == cudaSuccess, "event");
    float *d = device_array<float>(16);
    std::vector<float> host(16, 3.0f);

    expect_invalidating("cudaMalloc", s, cudaStreamCaptureModeGlobal,
                        cudaErrorStreamCaptureUnsupported, [] {
                            void *p = nullptr;
                            return cudaMalloc(&p, 64);
                        });
    expect_invalidating("synchronous cudaMemcpy", s, cudaStreamCaptureModeGlobal,
                        cudaErrorStreamCaptureUnsupported, [&] {
                            return cudaMemcpy(d, host.data(), 64, cudaMemcpyHostToDevice);
                        });
    CHECK(all_nan(download(d, 16)), "the refused cudaMemcpy copied");
    expect_invalidating("cudaMemset", s, cudaStreamCaptureModeGlobal,
                        cudaErrorStreamCaptureUnsupported, [&] { return cudaMemset(d, 0, 64); });
    expect_invalidating("cudaFree", s, cudaStreamCaptureModeGlobal,
                        cudaErrorStreamCaptureUnsupported, [&] { return cudaFree(d); });
    expect_invalidating("cudaStreamSynchronize of the capturing stream", s,
                        cudaStreamCaptureModeRelaxed, cudaErrorStreamCaptureUnsupported,
                        [&] { return cudaStreamSynchronize(s); });
    expect_invalidating("cudaStreamSynchronize of another stream", s, cudaStreamCaptureModeGlobal,
                        cudaErrorStreamCaptureUnsupported,
                        [&] { return cudaStreamSynchronize(quiet); });
    expect_invalidating("cudaDeviceSynchronize", s, cudaStreamCaptureModeRelaxed,
                        cudaErrorStreamCaptureUnsupported, [] { return cudaDeviceSynchronize(); });
    expect_invalidating("cudaEventSynchronize", s, cudaStreamCaptureModeGlobal,
                        cudaErrorStreamCaptureUnsupported, [&] { return cudaEventSynchronize(ev); });
    expect_invalidating("cudaMallocAsync on the capturing stream", s, cudaStreamCaptureModeRelaxed,
                        cudaErrorStreamCaptureUnsupported, [&] {
                            void *p = nullptr;
                            return cudaMallocAsync(&p, 64, s);
                        });
    expect_invalidating("a launch on the legacy stream", s, cudaStreamCaptureModeRelaxed,
                        cudaErrorStreamCaptureImplicit, [&] {
                            axpb_kernel<<<1, 16>>>(d, d, 1.0f, 0.0f, 16);
                            return cudaPeekAtLastError();
                        });
    CHECK(all_nan(download(d, 16)), "the refused legacy-stream launch ran");

    /* Relaxed mode permits the unsafe calls; a non-blocking stream's capture
     * does not involve the legacy stream. */
    CHECK(cudaStreamBeginCapture(quiet, cudaStreamCaptureModeRelaxed) == cudaSuccess, "relaxed");
    void *p = nullptr;
    CHECK(cudaMalloc(&p, 64) == cudaSuccess && cudaFree(p) == cudaSuccess, "relaxed: cudaMalloc");
    CHECK(cudaMemcpy(d, host.data(), 64, cudaMemcpyHostToDevice) == cudaSuccess,
          "relaxed, non-blocking: cudaMemcpy on the legacy stream");
    CHECK(download(d, 16)[0] == 3.0f, "relaxed: the synchronous copy ran");
    cudaGraph_t g = nullptr;
    CHECK(capture_status(quiet) == cudaStreamCaptureStatusActive, "relaxed capture intact");
    CHECK(cudaStreamEndCapture(quiet, &g) == cudaSuccess && cudaGraphDestroy(g) == cudaSuccess,
          "relaxed end");

    /* ThreadLocal: another thread's unsafe calls are its own business. */
    CHECK(cudaStreamBeginCapture(quiet, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "local");
    cudaError_t other = (cudaError_t)-1;
    std::thread([&] {
        void *q = nullptr;
        other = cudaMalloc(&q, 64);
        if (other == cudaSuccess) other = cudaFree(q);
    }).join();
    CHECK(other == cudaSuccess, "thread-local capture blocked another thread: %s",
          cudaGetErrorName(other));
    CHECK(cudaMalloc(&p, 64) == cudaErrorStreamCaptureUnsupported, "own thread, thread-local");
    CHECK(cudaStreamEndCapture(quiet, &g) == cudaErrorStreamCaptureInvalidated, "local end");
    /* A thread switched to Relaxed (cudaThreadExchangeStreamCaptureMode) may
     * make unsafe calls during its own capture; switching back restores. */
    CHECK(cudaStreamBeginCapture(quiet, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "local");
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    CHECK(cudaThreadExchangeStreamCaptureMode(&mode) == cudaSuccess &&
              mode == cudaStreamCaptureModeGlobal,
          "exchange: the thread's mode was not Global");
    CHECK(cudaMalloc(&p, 64) == cudaSuccess && cudaFree(p) == cudaSuccess,
          "relaxed thread: cudaMalloc during its capture");
    CHECK(cudaThreadExchangeStreamCaptureMode(&mode) == cudaSuccess &&
              mode == cudaStreamCaptureModeRelaxed,
          "exchange back");
    CHECK(capture_status(quiet) == cudaStreamCaptureStatusActive, "relaxed calls kept the capture");
    CHECK(cudaMalloc(&p, 64) == cudaErrorStreamCaptureUnsupported, "mode restored");
    CHECK(cudaStreamEndCapture(quiet, &g) == cudaErrorStreamCaptureInvalidated, "local end");
    /* Global: EndCapture belongs to the capturing thread */
    CHECK(cudaStreamBeginCapture(quiet, cudaStreamCaptureModeGlobal) == cudaSuccess, "global");
    std::thread([&] { other = cudaStreamEndCapture(quiet, &g); }).join();
    CHECK(other == cudaErrorStreamCaptureWrongThread, "EndCapture from another thread: %s",
          cudaGetErrorName(other));
    CHECK(cudaStreamEndCapture(quiet, &g) == cudaSuccess && cudaGraphDestroy(g) == cudaSuccess,
          "global end");

    /* An event recorded in a capture cannot be waited for until a replay records it. */
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin");
    CHECK(cudaEventRecord(ev, s) == cudaSuccess, "captured event record");
    CHECK(cudaEventQuery(ev) == cudaErrorCapturedEvent, "query of a captured event");
    CHECK(capture_status(s) == cudaStreamCaptureStatusActive, "captured-event query invalidated");
    CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess, "end");
    CHECK(cudaEventSynchronize(ev) == cudaErrorCapturedEvent, "sync of a captured event");
    cudaGraphExec_t e = nullptr;
    CHECK(cudaGraphInstantiate(&e, g, 0) == cudaSuccess && cudaGraphLaunch(e, s) == cudaSuccess,
          "event graph");
    CHECK(cudaEventSynchronize(ev) == cudaSuccess, "event recorded by the replay");
    cudaGraphExecDestroy(e), cudaGraphDestroy(g);
    (void)cudaGetLastError();

    cudaFree(d);
    cudaEventDestroy(ev);
    cudaStreamDestroy(s), cudaStreamDestroy(quiet);
}

static void test_graph_misuse_codes()
{
    cudaStream_t s = nullptr, dead = nullptr;
    CHECK(cudaStreamCreate(&s) == cudaSuccess && cudaStreamCreate(&dead) == cudaSuccess, "streams");
    CHECK(cudaStreamDestroy(dead) == cudaSuccess, "destroy");
    cudaGraph_t g = nullptr;
    cudaGraphExec_t e = nullptr;
    cudaStreamCaptureStatus st;

    CHECK(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal) ==
              cudaErrorStreamCaptureUnsupported,
          "capture of the legacy stream");
    CHECK(cudaStreamBeginCapture(cudaStreamLegacy, cudaStreamCaptureModeGlobal) ==
              cudaErrorStreamCaptureUnsupported,
          "capture of cudaStreamLegacy");
    CHECK(cudaStreamBeginCapture(s, (cudaStreamCaptureMode)7) == cudaErrorInvalidValue, "mode 7");
    CHECK(cudaStreamBeginCapture(dead, cudaStreamCaptureModeGlobal) ==
              cudaErrorInvalidResourceHandle,
          "destroyed stream");
    CHECK(cudaStreamEndCapture(s, &g) == cudaErrorIllegalState, "end without a capture");
    CHECK(cudaGetLastError() == cudaErrorIllegalState, "recorded as the last error");
    CHECK(cudaStreamIsCapturing(s, nullptr) == cudaErrorInvalidValue, "NULL status");

    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin");
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaErrorIllegalState,
          "begin twice");
    CHECK(cudaStreamIsCapturing(nullptr, &st) == cudaErrorStreamCaptureImplicit,
          "legacy stream query while a blocking stream captures");
    CHECK(capture_status(s) == cudaStreamCaptureStatusActive, "the query does not invalidate");
    CHECK(cudaStreamDestroy(s) == cudaErrorIllegalState, "destroy of a capturing stream");
    CHECK(cudaStreamEndCapture(s, nullptr) == cudaErrorInvalidValue, "NULL graph pointer");
    CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess && g != nullptr, "empty capture");
    (void)cudaGetLastError();

    CHECK(cudaGraphInstantiate(nullptr, g, 0) == cudaErrorInvalidValue, "NULL exec pointer");
    CHECK(cudaGraphInstantiate(&e, nullptr, 0) == cudaErrorInvalidValue, "NULL graph");
    CHECK(cudaGraphInstantiate(&e, g, 1ull << 20) == cudaErrorInvalidValue, "unknown flag");
    CHECK(cudaGraphInstantiate(&e, g) == cudaSuccess, "instantiate an empty graph");
    CHECK(cudaGraphLaunch(e, s) == cudaSuccess, "launch an empty graph");
    CHECK(cudaGraphLaunch(e, dead) == cudaErrorInvalidResourceHandle, "launch on a dead stream");
    CHECK(cudaGraphLaunch(nullptr, s) == cudaErrorInvalidValue, "launch of NULL");
    CHECK(cudaGraphDestroy(g) == cudaSuccess, "destroy graph");
    CHECK(cudaGraphDestroy(g) == cudaErrorInvalidValue, "destroy graph twice");
    CHECK(cudaGraphInstantiate(&e, g, 0) == cudaErrorInvalidValue, "instantiate a destroyed graph");
    CHECK(cudaGraphExecDestroy(e) == cudaSuccess, "destroy exec");
    CHECK(cudaGraphExecDestroy(e) == cudaErrorInvalidValue, "destroy exec twice");
    CHECK(cudaGraphLaunch(e, s) == cudaErrorInvalidValue, "launch of a destroyed exec");
    CHECK(strcmp(cudaGetErrorName(cudaErrorStreamCaptureInvalidated),
                 "cudaErrorStreamCaptureInvalidated") == 0 &&
              (int)cudaErrorStreamCaptureUnsupported == 900 &&
              (int)cudaErrorStreamCaptureInvalidated == 901 && (int)cudaErrorIllegalState == 401,
          "error names and values");

    /* cuBLAS on an invalidated capture fails like its kernel launch would */
    cublasHandle_t h = nullptr;
    float *d = device_array<float>(4);
    const float one = 1.0f;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS && cublasSetStream(h, s) == CUBLAS_STATUS_SUCCESS,
          "cublas");
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin");
    CHECK(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported, "sync in capture");
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, d, 1, d, 1, &one, d, 1) ==
              CUBLAS_STATUS_EXECUTION_FAILED,
          "sgemm on an invalidated capture");
    CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated, "end");
    (void)cudaGetLastError();
    cublasDestroy(h);
    cudaFree(d);
    cudaStreamDestroy(s);
}

/* Misuse: each case runs in a child that must abort with the report -------------------- */

__global__ void divergent_barrier_kernel()
{
    if (threadIdx.x < 32)
        __syncthreads();
    else
        __syncthreads();
}

__global__ void exited_barrier_kernel()
{
    if (threadIdx.x >= 32) return;
    __syncthreads();
}

__global__ void shuffle_outside_mask_kernel(int *out)
{
    if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0xffffu, 1, 20);
}

__global__ void deadlock_kernel()
{
    if (threadIdx.x < 16)
        __syncwarp();
    else
        __syncthreads();
}

__global__ void write_kernel(float *p, int at) { p[at] = 1.0f; }

__global__ void ldg_kernel(float *out, const float *p, int at) { out[0] = __ldg(p + at); }

__global__ void async_to_global_kernel(float *dst, const float *src)
{
    __pipeline_memcpy_async(dst, src, 16);
}

__global__ void big_static_kernel(float *out)
{
    __shared__ float big[13000]; /* 52 KB > 48 KiB */
    big[threadIdx.x] = 1.0f;
    out[0] = big[0];
}


/* Hopper: wgmma, TMA, mbarriers, named barriers ------------------------------------- */

/* Byte offset of element (r, c) of a tile of 128-byte rows (64 16-bit
 * elements) in the 128B swizzle (CU_TENSOR_MAP_SWIZZLE_128B, wgmma layout
 * type 1) from a 1024-aligned base: 16-byte chunk c / 8 of row r lands at
 * chunk (c / 8) ^ (r % 8). Written out here independently of the emulator. */
static int swz128(int r, int c) { return r * 128 + (((c / 8) ^ (r % 8)) * 16) + (c % 8) * 2; }

/* D (64 x 64) = A (64 x 64) B^T with A and B (64 x 64, K contiguous)
 * stored 128B-swizzled, four k16 steps (start address + 32 bytes each);
 * out: D per the accumulator layout, then nan_before_wait per thread. */
template <typename T>
__global__ void wgmma_ss_kernel(float *out, const uint16_t *a, const uint16_t *b)
{
    extern __shared__ uint16_t wg_smem[];
    unsigned char *base = reinterpret_cast<unsigned char *>(wg_smem);
    for (int i = (int)threadIdx.x; i < 64 * 64; i += 128) {
        const int r = i / 64, c = i % 64;
        memcpy(base + swz128(r, c), &a[i], 2);
        memcpy(base + 8192 + swz128(r, c), &b[i], 2);
    }
    __syncthreads();
    float d[32];
    fgi_wgmma_fence();
    for (int kk = 0; kk < 4; kk++)
        fgi_wgmma_ss<T, 64, 0>(d, fgi_wgmma_desc(base + 32 * kk, 16, 1024, true),
                               fgi_wgmma_desc(base + 8192 + 32 * kk, 16, 1024, true), kk > 0);
    fgi_wgmma_commit();
    const bool nan_before_wait = d[0] != d[0];
    fgi_wgmma_wait<0>();
    const int w = (int)threadIdx.x / 32, g = (int)threadIdx.x % 32 / 4, t = (int)threadIdx.x % 4;
    for (int j = 0; j < 8; j++)
        for (int e = 0; e < 4; e++)
            out[(16 * w + g + 8 * (e / 2)) * 64 + 8 * j + 2 * t + (e & 1)] = d[4 * j + e];
    out[64 * 64 + threadIdx.x] = nan_before_wait ? 1.0f : 0.0f;
}

/* D (64 x 128) = A (64 x 16, from registers: the m16n8k16 A fragment of
 * each warp's 16 rows) B (16 x 128) with B MN-major (N contiguous):
 * two 64-column blocks LBO = 2048 bytes apart, 8-row K groups SBO = 1024
 * apart, 128B-swizzled, the transpose bit set. */
template <typename T>
__global__ void wgmma_rs_kernel(float *out, const uint16_t *a, const uint16_t *b)
{
    extern __shared__ uint16_t wg_smem[];
    unsigned char *base = reinterpret_cast<unsigned char *>(wg_smem);
    for (int i = (int)threadIdx.x; i < 16 * 128; i += 128) {
        const int k = i / 128, n = i % 128;
        memcpy(base + (n / 64) * 2048 + swz128(k, n % 64), &b[i], 2);
    }
    __syncthreads();
    const int w = (int)threadIdx.x / 32, g = (int)threadIdx.x % 32 / 4, t = (int)threadIdx.x % 4;
    const auto pair = [&](int r, int k) {
        return (uint32_t)a[r * 16 + k] | (uint32_t)a[r * 16 + k + 1] << 16;
    };
    const uint32_t frag[4] = {pair(16 * w + g, 2 * t), pair(16 * w + g + 8, 2 * t),
                              pair(16 * w + g, 2 * t + 8), pair(16 * w + g + 8, 2 * t + 8)};
    float d[64];
    for (int i = 0; i < 64; i++) d[i] = 1.0f; /* scale_d = 1: D = 1 + A B */
    fgi_wgmma_fence();
    fgi_wgmma_rs<T, 128, 1>(d, frag, fgi_wgmma_desc(base, 2048, 1024, true), 1);
    fgi_wgmma_commit();
    fgi_wgmma_wait<0>();
    for (int j = 0; j < 16; j++)
        for (int e = 0; e < 4; e++)
            out[(16 * w + g + 8 * (e / 2)) * 128 + 8 * j + 2 * t + (e & 1)] = d[4 * j + e];
}

template <typename T> static void test_wgmma_type(const char *name)
{
    const bool bf16 = std::is_same<T, __nv_bfloat16>::value;
    std::vector<uint16_t> a(64 * 64), b(64 * 128);
    std::vector<float> av(a.size()), bv(b.size());
    unsigned x = 12345;
    for (size_t i = 0; i < b.size(); i++) {
        x = x * 1103515245u + 12345u;
        const float v = (float)((int)(x >> 16 & 63) - 32) / 16.0f; /* exact in both types */
        const uint16_t h = bf16 ? __bfloat16_as_ushort(__float2bfloat16(v))
                                : __half_as_ushort(__float2half(v));
        if (i < a.size()) a[i] = h, av[i] = v;
        x = x * 1103515245u + 12345u;
        const float u = (float)((int)(x >> 16 & 63) - 32) / 8.0f;
        b[i] = bf16 ? __bfloat16_as_ushort(__float2bfloat16(u)) : __half_as_ushort(__float2half(u));
        bv[i] = u;
    }
    uint16_t *da = device_array<uint16_t>(a.size()), *db = device_array<uint16_t>(b.size());
    float *dout = device_array<float>(64 * 128 + 128);
    cudaMemcpy(da, a.data(), 2 * a.size(), cudaMemcpyHostToDevice);
    cudaMemcpy(db, b.data(), 2 * b.size(), cudaMemcpyHostToDevice);

    wgmma_ss_kernel<T><<<1, 128, 16384>>>(dout, da, db);
    CHECK(cudaGetLastError() == cudaSuccess, "wgmma ss launch");
    std::vector<float> out = download(dout, 64 * 64 + 128);
    for (int m = 0; m < 64; m++)
        for (int n = 0; n < 64; n++) {
            double want = 0; /* small integers / 128: exact in fp32 */
            for (int k = 0; k < 64; k++) want += (double)av[(size_t)(m * 64 + k)] * bv[(size_t)(n * 64 + k)];
            CHECK(out[(size_t)(m * 64 + n)] == (float)want, "%s wgmma ss (%d, %d): %g, want %g",
                  name, m, n, out[(size_t)(m * 64 + n)], want);
        }
    for (int i = 0; i < 128; i++)
        CHECK(out[(size_t)(64 * 64 + i)] == 1.0f, "%s wgmma: thread %d read a number before the "
              "wait", name, i);

    /* A: the first 64 x 16 of a (as 64 rows of 16); B (16 x 128): b */
    wgmma_rs_kernel<T><<<1, 128, 4096>>>(dout, da, db);
    CHECK(cudaGetLastError() == cudaSuccess, "wgmma rs launch");
    out = download(dout, 64 * 128);
    for (int m = 0; m < 64; m++)
        for (int n = 0; n < 128; n++) {
            double want = 1;
            for (int k = 0; k < 16; k++) want += (double)av[(size_t)(m * 16 + k)] * bv[(size_t)(k * 128 + n)];
            CHECK(out[(size_t)(m * 128 + n)] == (float)want, "%s wgmma rs tnsp (%d, %d): %g, want %g",
                  name, m, n, out[(size_t)(m * 128 + n)], want);
        }
    cudaFree(da), cudaFree(db), cudaFree(dout);
}

/* TMA: box (64, 32, 1) of a (64, 40, 2) tensor at (0, 20, 1) with the
 * 128B swizzle (rows 40.. outside: zeros), then, on the same barrier's
 * next phase, box (8, 4, 1) at (8, 2, 0) without swizzle. out: the shared
 * bytes of both. */
__global__ void tma_kernel(uint16_t *out, const __grid_constant__ fgi_tmap sw,
                           const __grid_constant__ fgi_tmap plain)
{
    extern __shared__ uint16_t tma_smem[];
    __shared__ uint64_t bar[1];
    if (threadIdx.x == 0) fgi_mbar_init(bar, 1);
    __syncthreads();
    if (threadIdx.x == 0) {
        fgi_mbar_arrive_tx(bar, 64 * 32 * 2);
        fgi_tma_load_3d(tma_smem, &sw, bar, 0, 20, 1);
    }
    fgi_mbar_wait(bar, 0);
    for (int i = (int)threadIdx.x; i < 64 * 32; i += (int)blockDim.x) out[i] = tma_smem[i];
    __syncthreads();
    if (threadIdx.x == 0) {
        fgi_tma_load_3d(tma_smem + 64 * 32, &plain, bar, 8, 2, 0); /* before the arrive: fine */
        fgi_mbar_arrive_tx(bar, 8 * 4 * 2);
    }
    fgi_mbar_wait(bar, 1);
    for (int i = (int)threadIdx.x; i < 32; i += (int)blockDim.x) out[64 * 32 + i] = tma_smem[64 * 32 + i];
}

static void test_tma()
{
    std::vector<uint16_t> g(64 * 40 * 2);
    for (size_t i = 0; i < g.size(); i++) g[i] = (uint16_t)(i + 1);
    uint16_t *dg = device_array<uint16_t>(g.size()), *dout = device_array<uint16_t>(64 * 32 + 32);
    cudaMemcpy(dg, g.data(), 2 * g.size(), cudaMemcpyHostToDevice);
    fgi_tmap sw, plain;
    const uint64_t dims[3] = {64, 40, 2}, strides[2] = {128, 64 * 40 * 2};
    const uint32_t box_sw[3] = {64, 32, 1}, box_plain[3] = {8, 4, 1};
    CHECK(fgi_tma_encode16(&sw, 3, dg, dims, strides, box_sw, true, true) == 0, "encode");
    CHECK(fgi_tma_encode16(&plain, 3, dg, dims, strides, box_plain, false, true) == 0, "encode");
    tma_kernel<<<1, 64, 64 * 32 * 2 + 64>>>(dout, sw, plain);
    CHECK(cudaGetLastError() == cudaSuccess, "tma launch");
    const std::vector<uint16_t> out = download(dout, 64 * 32 + 32);
    for (int r = 0; r < 32; r++)
        for (int c = 0; c < 64; c++) {
            const int row = 20 + r;
            const uint16_t want = row < 40 ? g[(size_t)((64 * 40) + row * 64 + c)] : 0;
            const uint16_t got = out[(size_t)(swz128(r, c) / 2)];
            CHECK(got == want, "TMA 128B swizzle (%d, %d): %u, want %u", r, c, got, want);
        }
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 8; c++)
            CHECK(out[(size_t)(64 * 32 + r * 8 + c)] == g[(size_t)((2 + r) * 64 + 8 + c)],
                  "TMA plain (%d, %d)", r, c);
    /* the driver's refusals */
    const uint32_t box_wide[3] = {128, 8, 1};
    CHECK(fgi_tma_encode16(&sw, 3, dg + 1, dims, strides, box_sw, true, true) != 0,
          "misaligned base accepted");
    CHECK(fgi_tma_encode16(&sw, 3, dg, dims, strides, box_wide, true, true) != 0,
          "128B swizzle with a 256-byte box row accepted");
    cudaFree(dg), cudaFree(dout);
}

/* Named barriers: warpgroup 0 writes, then arrives; warpgroup 1 waits on
 * the same barrier (256 threads) and reads. A reverse warp order runs the
 * readers first: without the barrier they would read NaN. */
__global__ void named_barrier_kernel(float *out)
{
    __shared__ float vals[128];
    if (threadIdx.x < 128) {
        vals[threadIdx.x] = (float)threadIdx.x;
        fgi_named_arrive(3, 256);
    } else {
        fgi_named_sync(3, 256);
        out[threadIdx.x - 128] = vals[255 - threadIdx.x];
    }
}

static void test_hopper()
{
    test_wgmma_type<__nv_bfloat16>("bf16");
    test_wgmma_type<__half>("f16");
    test_tma();
    float *d = device_array<float>(128);
    named_barrier_kernel<<<1, 256>>>(d);
    CHECK(cudaGetLastError() == cudaSuccess, "named barrier launch");
    const std::vector<float> out = download(d, 128);
    for (int i = 0; i < 128; i++)
        CHECK(out[(size_t)i] == (float)(127 - i), "named barrier: %d: %g", i, out[(size_t)i]);
    cudaFree(d);
}

__global__ void named_count_kernel()
{
    fgi_named_sync(2, threadIdx.x < 32 ? 64 : 128); /* 128 needs warp 0 too */
}

__global__ void mbar_never_kernel()
{
    __shared__ uint64_t bar[1];
    if (threadIdx.x == 0) fgi_mbar_init(bar, 2);
    __syncthreads();
    fgi_mbar_arrive(bar);
    if (threadIdx.x == 0) fgi_mbar_wait(bar, 1); /* phase 1 never completes */
    fgi_mbar_wait(bar, 0);
}

__global__ void tma_overflow_kernel(const __grid_constant__ fgi_tmap m)
{
    extern __shared__ uint16_t tma_smem[];
    __shared__ uint64_t bar[1];
    fgi_mbar_init(bar, 1);
    fgi_mbar_arrive_tx(bar, 16); /* the box is 64 bytes */
    fgi_tma_load_3d(tma_smem, &m, bar, 0, 0, 0);
}

__global__ void wgmma_partial_kernel(int exit_warp)
{
    extern __shared__ uint16_t wg_smem[];
    if ((int)threadIdx.x / 32 == exit_warp) return;
    float d[32];
    const uint64_t desc = fgi_wgmma_desc(wg_smem, 16, 1024, true);
    fgi_wgmma_ss<__nv_bfloat16, 64, 0>(d, desc, desc, 0);
    fgi_wgmma_commit();
    fgi_wgmma_wait<0>();
}

static void misuse(const char *what, const char *expected, void (*body)());
static void test_hopper_misuse()
{
    misuse("named barrier with two counts", "used with count", [] { named_count_kernel<<<1, 128>>>(); });
    misuse("mbarrier phase that never completes", "deadlock", [] { mbar_never_kernel<<<1, 32>>>(); });
    misuse("TMA bytes past expect_tx", "more were delivered", [] {
        uint16_t *g = device_array<uint16_t>(64);
        fgi_tmap m;
        const uint64_t dims[3] = {32, 1, 1}, strides[2] = {64, 64};
        const uint32_t box[3] = {32, 1, 1};
        fgi_tma_encode16(&m, 3, g, dims, strides, box, false, true);
        tma_overflow_kernel<<<1, 1, 128>>>(m);
    });
    misuse("wgmma in a 96-thread block", "has only", [] { wgmma_partial_kernel<<<1, 96, 16384>>>(-1); });
    misuse("wgmma after a warp exited", "have exited", [] { wgmma_partial_kernel<<<1, 128, 16384>>>(3); });
}

static void misuse(const char *what, const char *expected, void (*body)())
{
    int fds[2];
    if (pipe(fds) != 0) abort();
    fflush(stdout), fflush(stderr);
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        setenv("FG_EMU_REPORT_LEAKS", "0", 1);
        body();
        _exit(0); /* no fault: the parent reports it */
    }
    close(fds[1]);
    std::string text;
    char buf[512];
    ssize_t got;
    while ((got = read(fds[0], buf, sizeof buf)) > 0) text.append(buf, (size_t)got);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
#if defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer may see a bad access first and end the run itself */
    if (text.find("ERROR: AddressSanitizer") != std::string::npos) return;
#endif
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: the run did not abort", what);
    CHECK(text.find(expected) != std::string::npos, "%s: report lacks \"%s\":\n%s", what, expected,
          text.c_str());
}

static void test_misuse()
{
    misuse("divergent __syncthreads", "different __syncthreads",
           [] { divergent_barrier_kernel<<<1, 64>>>(); });
    misuse("__syncthreads after an exit", "have exited",
           [] { exited_barrier_kernel<<<1, 64>>>(); });
    misuse("shuffle from a lane outside the mask", "is not in the mask", [] {
        int *d = device_array<int>(32);
        shuffle_outside_mask_kernel<<<1, 32>>>(d);
    });
    misuse("deadlock", "deadlock", [] { deadlock_kernel<<<1, 64>>>(); });
    misuse("host pointer as kernel argument", "is not device memory", [] {
        static float host[4];
        write_kernel<<<1, 1>>>(host, 0);
    });
    misuse("freed pointer as kernel argument", "freed device memory", [] {
        float *d = device_array<float>(4);
        cudaFree(d);
        write_kernel<<<1, 1>>>(d, 0);
    });
    misuse("write past an allocation", "written past its end", [] {
        float *d = device_array<float>(10);
        write_kernel<<<1, 1>>>(d, 12);
    });
    misuse("__ldg past an allocation", "past the end of device allocation", [] {
        float *d = device_array<float>(10);
        ldg_kernel<<<1, 1>>>(d, d, 10);
    });
    misuse("cp.async into global memory", "not inside this block's shared memory", [] {
        float *d = device_array<float>(8);
        async_to_global_kernel<<<1, 1>>>(d, d + 4);
    });
    misuse("static shared memory above 48 KiB", "exceed", [] {
        float *d = device_array<float>(1);
        big_static_kernel<<<1, 32>>>(d);
    });
    misuse("cublasLtMatmul past an allocation", "not inside device memory", [] {
        cublasLtHandle_t h = nullptr;
        cublasLtCreate(&h);
        void *d = upload_as(CUDA_R_16BF, std::vector<float>(6, 1.0f));
        const lt_problem p = {CUDA_R_16BF, CUDA_R_16BF, 0, 0, 2, 2, 2, 2, 2, 2,
                              CUBLASLT_EPILOGUE_DEFAULT, nullptr};
        lt_run(h, p, 1.0f, 0.0f, d, d, d, d, 0, false); /* D needs 4 elements at d */
        lt_run(h, p, 1.0f, 0.0f, d, (uint16_t *)d + 4, d, d, 0, false); /* B: 2 past the end */
    });
    /* a replayed kernel node gets the checks of a direct launch */
    misuse("graph replay with a kernel argument freed after capture", "freed device memory", [] {
        cudaStream_t s = nullptr;
        cudaGraph_t g = nullptr;
        cudaGraphExec_t e = nullptr;
        float *d = device_array<float>(4);
        cudaStreamCreate(&s);
        cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
        write_kernel<<<1, 1, 0, s>>>(d, 0);
        cudaStreamEndCapture(s, &g);
        cudaGraphInstantiate(&e, g, 0);
        cudaFree(d);
        cudaGraphLaunch(e, s);
    });
    misuse("graph replay writing past an allocation", "written past its end", [] {
        cudaStream_t s = nullptr;
        cudaGraph_t g = nullptr;
        cudaGraphExec_t e = nullptr;
        float *d = device_array<float>(10);
        cudaStreamCreate(&s);
        cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
        write_kernel<<<1, 1, 0, s>>>(d, 12);
        if (cudaStreamEndCapture(s, &g) != cudaSuccess) return;
        cudaGraphInstantiate(&e, g, 0);
        cudaGraphLaunch(e, s);
    });
}

int main()
{
    test_collectives();
    test_shared();
    test_async_copy();
    test_mma16();
    test_atomics_and_blocks();
    test_host_api();
    test_sgemm();
    test_cublaslt();
    test_graph_capture_and_replay();
    test_graph_capture_rules();
    test_graph_misuse_codes();
    test_misuse();
    test_hopper();
    test_hopper_misuse();
    if (failures) {
        fprintf(stderr, "selftest: %d check(s) failed\n", failures);
        return 1;
    }
    printf("fgi_emu selftest: all checks passed\n");
    return 0;
}
