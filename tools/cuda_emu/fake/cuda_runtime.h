/* fgi_emu: the CUDA runtime API and device language, emulated on the CPU.
 *
 * Included instead of the toolkit's cuda_runtime.h when flashgpt is built
 * with -DFG_CUDA_EMU=ON (a testing aid, never for production; see
 * tools/cuda_emu/README.md). It covers what flashgpt's cuda/ sources use:
 *  - host API: devices, device memory (host memory with guard zones and a
 *    quarantine for freed blocks), copies, streams and events (all work is
 *    synchronous), errors, function attributes, kernel launches, CUDA graphs
 *    made by stream capture (recorded, then replayed at cudaGraphLaunch);
 *  - device language: every CUDA thread is a fiber; __syncthreads, __syncwarp
 *    and warp shuffles are rendezvous points checked for divergence; shared
 *    memory is per block and starts as NaN.
 * Two constructs cannot be expressed with macros: `kernel<<<...>>>(...)` and
 * `__shared__` declarations. tools/cuda_emu/translate.cmake rewrites them
 * (line for line) before compilation; see the README. */
#ifndef FG_EMU_CUDA_RUNTIME_H
#define FG_EMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Host API types (values as in the CUDA 12/13 headers) -------------------------- */

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidPitchValue = 12,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalState = 401,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureImplicit = 906,
    cudaErrorCapturedEvent = 907,
    cudaErrorStreamCaptureWrongThread = 908
} cudaError_t;

typedef enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
} cudaMemcpyKind;

typedef enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
    cudaDevAttrMemoryPoolsSupported = 115
} cudaDeviceAttr;

typedef enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9
} cudaFuncAttribute;

#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02

/* The fields flashgpt (and typical callers) read. */
typedef struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    size_t totalConstMem;
    int major;
    int minor;
    int multiProcessorCount;
    int l2CacheSize;
    int maxThreadsPerMultiProcessor;
    size_t sharedMemPerMultiprocessor;
    size_t sharedMemPerBlockOptin;
    int memoryBusWidth;
} cudaDeviceProp;

typedef struct uint3 {
    unsigned x, y, z;
} uint3;

#ifdef __cplusplus
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
#else
typedef struct dim3 {
    unsigned x, y, z;
} dim3;
#endif

typedef struct cudaLaunchConfig_t {
    dim3 gridDim;
    dim3 blockDim;
    size_t dynamicSmemBytes;
    cudaStream_t stream;
    void *attrs; /* launch attributes are not emulated: numAttrs must be 0 */
    unsigned int numAttrs;
} cudaLaunchConfig_t;

/* CUDA graphs made by stream capture (tools/cuda_emu/graph.cpp). */
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;

typedef enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2
} cudaStreamCaptureMode;

typedef enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2
} cudaStreamCaptureStatus;

typedef enum cudaGraphInstantiateFlags {
    cudaGraphInstantiateFlagAutoFreeOnLaunch = 1,
    cudaGraphInstantiateFlagUpload = 2,
    cudaGraphInstantiateFlagDeviceLaunch = 4,
    cudaGraphInstantiateFlagUseNodePriority = 8
} cudaGraphInstantiateFlags;

/* Host API functions ------------------------------------------------------------- */

#ifdef __cplusplus
#define FG_EMU_DEFAULT_ZERO = 0 /* a default argument, as the toolkit's headers give */
#else
#define FG_EMU_DEFAULT_ZERO
#endif

#ifdef __cplusplus
extern "C" {
#endif
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);

cudaError_t cudaMalloc(void **ptr, size_t bytes);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocAsync(void **ptr, size_t bytes, cudaStream_t stream);
cudaError_t cudaFreeAsync(void *ptr, cudaStream_t stream);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                         size_t height, cudaMemcpyKind kind);
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream);
cudaError_t cudaMemset(void *dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream);

cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);

cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status);
cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode *mode);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags FG_EMU_DEFAULT_ZERO);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t error);
const char *cudaGetErrorName(cudaError_t error);
#ifdef __cplusplus
}
#endif

/* Device language (C++ only) -------------------------------------------------------- */
#ifdef __cplusplus

#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __constant__
#define __align__(n) alignas(n)
#define __grid_constant__
/* translate.cmake turns every __shared__ declaration into the forms below;
 * one it could not parse stops the build here. */
#define __shared__ fgi_emu_untranslated_shared_declaration

struct alignas(8) float2 {
    float x, y;
};
struct float3 {
    float x, y, z;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) int2 {
    int x, y;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(16) double2 {
    double x, y;
};
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float3 make_float3(float x, float y, float z) { return {x, y, z}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return {x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
static inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }

/* The built-in index variables: the scheduler keeps threadIdx equal to the
 * running fiber's index (they are plain globals, so an opaque call such as a
 * barrier makes the compiler reload them). */
static constexpr int warpSize = 32;
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

namespace fgi_emu {

/* Reports a fault in emulated device code (with the block and thread) and
 * aborts: the emulator's equivalent of a device-side error. */
[[noreturn]] void fault(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Barriers and warp collectives (scheduler.cpp). */
void sync_threads(const char *file, int line);
void sync_warp(unsigned mask, const char *file, int line);
enum warp_collective {
    shfl_idx,
    shfl_up,
    shfl_down,
    shfl_xor,
    vote_ballot,
    vote_any,
    vote_all,
    warp_barrier /* __syncwarp */
};
uint64_t warp_collective_op(warp_collective kind, unsigned mask, uint64_t value, int arg, int width,
                            const char *file, int line);
unsigned active_mask();

/* Shared memory of the running block (scheduler.cpp). */
void *dynamic_shared_base();
void *static_shared_alloc(const void *tag, size_t bytes, size_t align);
template <typename T> inline T *dynamic_shared() { return static_cast<T *>(dynamic_shared_base()); }
template <typename T> inline T &static_shared(const void *tag)
{
    return *static_cast<T *>(static_shared_alloc(tag, sizeof(T), alignof(T)));
}

/* cp.async (cuda_pipeline.h). */
void async_copy(void *dst_shared, const void *src_global, size_t bytes, size_t zfill);
void async_commit();
void async_wait_prior(size_t groups);

/* Hopper (sm_90a) pieces for cuda/attention/sm90_primitives.cuh (sm90.cpp).
 * Shared addresses are offsets in the block's shared window (1024-aligned,
 * so swizzle patterns follow the same address bits as on the GPU).
 * Named barriers 1-15: `count` threads (a multiple of 32) arrive, those
 * that wait go on when the last arrives. mbarriers: init with an arrival
 * count, arrive (optionally announcing expected transaction bytes), the
 * phase completes when all arrivals and all announced bytes are in; wait
 * blocks until the phase of the given parity has completed. */
void named_barrier(int id, int count, bool wait, const char *file, int line);
void mbar_init(void *bar, unsigned count, const char *file, int line);
void mbar_arrive(void *bar, unsigned expect_tx_bytes, const char *file, int line);
bool mbar_test(const void *bar, unsigned parity, const char *file, int line);
void mbar_wait(const void *bar, unsigned parity, const char *file, int line);
unsigned shared_address(const void *p, const char *file, int line);

/* A tiled tensor map as cuTensorMapEncodeTiled would make it (the emulated
 * encode keeps the parameters; 128 bytes, 64-aligned like CUtensorMap).
 * strides[i]: bytes between consecutive indices of dimension i + 1. */
struct alignas(64) tensor_map {
    uint32_t magic;
    int32_t elem_bytes, rank, swizzle; /* swizzle: 0 or the span in bytes (32, 64, 128) */
    const void *base;
    uint64_t dims[5];
    uint64_t strides[5];
    uint32_t box[5];
    uint32_t pad;
};
/* 0 on success; otherwise 1 (CUDA_ERROR_INVALID_VALUE) with a note. */
int tensor_map_encode(tensor_map *map, int elem_bytes, int rank, const void *base,
                      const uint64_t *dims, const uint64_t *strides, const uint32_t *box,
                      int swizzle);
/* cp.async.bulk.tensor.Nd.shared::cluster.global.mbarrier::complete_tx::bytes */
void tma_load(void *dst, const tensor_map *map, const int *coords, void *bar, const char *file,
              int line);

/* wgmma.mma_async m64nNk16, f32 += bf16 / f16 (a warpgroup collective). a:
 * this thread's 4 A registers, or null for A from desc_a. d: its n/2
 * accumulators, undefined (NaN here) until the wgmma_wait covering it. */
struct wgmma_op {
    int n, bf16;
    const uint32_t *a;
    uint64_t desc_a, desc_b;
    int tnsp_a, tnsp_b, scale_d;
    float *d;
};
void wgmma(const wgmma_op &op, const char *file, int line);
void wgmma_commit();
void wgmma_wait(int pending);

/* Device memory checks (memory.cpp). */
void check_global_read(const void *p, size_t bytes, size_t align, const char *what);
enum pointer_kind { host_pointer, device_pointer, freed_pointer };
pointer_kind classify_pointer(const void *p);

/* Launches (scheduler.cpp). */
struct launch_config {
    const char *name;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
};
/* A kernel with its arguments, held by value: a captured launch keeps it
 * until the graph is destroyed, so later changes of the caller's variables
 * do not reach the replay (as with CUDA's kernel nodes). */
struct kernel_call {
    virtual ~kernel_call() = default;
    virtual const void *kernel() const = 0;
    virtual void check_arguments(const launch_config &cfg) const = 0;
    virtual void run_thread() const = 0; /* one CUDA thread */
};
/* Checks the launch and runs the grid now, or records it when cfg.stream is
 * capturing. */
cudaError_t launch(const launch_config &cfg, std::shared_ptr<const kernel_call> call);
cudaError_t set_dynamic_smem_limit(const void *kernel, int bytes);
cudaError_t occupancy(int *blocks, const void *kernel, int block_size, size_t smem);
void check_kernel_argument(const launch_config &cfg, int index, const void *p);
/* Makes `err` the last error (unless it is cudaSuccess) and returns it. */
cudaError_t record_error(cudaError_t err);

template <typename T> inline void check_argument(const launch_config &cfg, int index, const T &v)
{
    if constexpr (std::is_pointer_v<T> && !std::is_function_v<std::remove_pointer_t<T>>)
        check_kernel_argument(cfg, index, static_cast<const void *>(v));
    else
        (void)cfg, (void)index, (void)v;
}

/* The arguments converted to the kernel's parameter types (as a launch
 * does); every thread gets its own copy of them. */
template <typename... P> struct bound_kernel final : kernel_call {
    void (*fn)(P...);
    std::tuple<std::decay_t<P>...> params;
    template <typename... A>
    explicit bound_kernel(void (*f)(P...), A &&...args) : fn(f), params(std::forward<A>(args)...)
    {
    }
    const void *kernel() const override { return reinterpret_cast<const void *>(fn); }
    void check_arguments(const launch_config &cfg) const override
    {
        std::apply(
            [&](const auto &...v) {
                int i = 0;
                (check_argument(cfg, i++, v), ...);
                (void)i;
            },
            params);
    }
    void run_thread() const override { std::apply(fn, params); }
};

template <typename... P, typename... A>
cudaError_t launch_kernel(const launch_config &cfg, void (*kernel)(P...), A &&...args)
{
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong argument count");
    return launch(cfg, std::make_shared<bound_kernel<P...>>(kernel, std::forward<A>(args)...));
}

/* The translated form of `kernel<<<grid, block, smem, stream>>>(args...)`:
 *   kernel << kernel_config(name, grid, block, smem, stream) >> launch_args(args...) */
inline launch_config kernel_config(const char *name, dim3 grid, dim3 block, size_t smem = 0,
                                   cudaStream_t stream = 0)
{
    return launch_config{name, grid, block, smem, stream};
}

template <typename... P> struct configured_kernel {
    void (*kernel)(P...);
    launch_config cfg;
};
template <typename... P>
inline configured_kernel<P...> operator<<(void (*kernel)(P...), const launch_config &cfg)
{
    return {kernel, cfg};
}
template <typename... A> struct launch_arguments {
    std::tuple<A...> values;
};
template <typename... A> inline launch_arguments<A &&...> launch_args(A &&...args)
{
    return {std::forward_as_tuple(std::forward<A>(args)...)};
}
template <typename... P, typename... A>
inline void operator>>(const configured_kernel<P...> &k, launch_arguments<A...> &&a)
{
    /* a <<<>>> launch reports only through cudaGetLastError */
    std::apply(
        [&](auto &&...v) { (void)launch_kernel(k.cfg, k.kernel, std::forward<decltype(v)>(v)...); },
        std::move(a.values));
}

} // namespace fgi_emu

/* __shared__ T name[dims]; (block scope) -> one object per block. */
#define FG_EMU_STATIC_SHARED(type, name, dims)                                                     \
    static const char fgi_emu_tag_##name = 0;                                                       \
    type(&name) dims = fgi_emu::static_shared<type dims>(&fgi_emu_tag_##name)

#define __syncthreads() fgi_emu::sync_threads(__FILE__, __LINE__)
#define __syncwarp(...) fgi_emu::sync_warp(fgi_emu_mask_or_full(__VA_ARGS__), __FILE__, __LINE__)
static inline unsigned fgi_emu_mask_or_full() { return 0xffffffffu; }
static inline unsigned fgi_emu_mask_or_full(unsigned mask) { return mask; }
static inline void __threadfence() {}
static inline void __threadfence_block() {}
static inline unsigned __activemask() { return fgi_emu::active_mask(); }

namespace fgi_emu {
template <typename T> inline uint64_t to_bits(T v)
{
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                  "shuffle of an unsupported type");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    return bits;
}
template <typename T> inline T from_bits(uint64_t bits)
{
    T v;
    memcpy(&v, &bits, sizeof v);
    return v;
}
template <typename T>
inline T shuffle(warp_collective kind, unsigned mask, T v, int arg, int width, const char *file,
                 int line)
{
    return from_bits<T>(warp_collective_op(kind, mask, to_bits(v), arg, width, file, line));
}
} // namespace fgi_emu

#define __shfl_sync(mask, v, ...)                                                                  \
    fgi_emu::shuffle(fgi_emu::shfl_idx, mask, v, FG_EMU_SHFL_ARGS(__VA_ARGS__))
#define __shfl_up_sync(mask, v, ...)                                                               \
    fgi_emu::shuffle(fgi_emu::shfl_up, mask, v, FG_EMU_SHFL_ARGS(__VA_ARGS__))
#define __shfl_down_sync(mask, v, ...)                                                             \
    fgi_emu::shuffle(fgi_emu::shfl_down, mask, v, FG_EMU_SHFL_ARGS(__VA_ARGS__))
#define __shfl_xor_sync(mask, v, ...)                                                              \
    fgi_emu::shuffle(fgi_emu::shfl_xor, mask, v, FG_EMU_SHFL_ARGS(__VA_ARGS__))
/* (arg) or (arg, width), then the call site */
#define FG_EMU_SHFL_ARGS(...)                                                                      \
    FG_EMU_SHFL_PICK(__VA_ARGS__, FG_EMU_SHFL_W, FG_EMU_SHFL_1)(__VA_ARGS__)
#define FG_EMU_SHFL_PICK(a, b, name, ...) name
#define FG_EMU_SHFL_1(arg) (arg), 32, __FILE__, __LINE__
#define FG_EMU_SHFL_W(arg, width) (arg), (width), __FILE__, __LINE__
#define __ballot_sync(mask, pred)                                                                  \
    ((unsigned)fgi_emu::warp_collective_op(fgi_emu::vote_ballot, mask, (pred) ? 1 : 0, 0, 32,        \
                                          __FILE__, __LINE__))
#define __any_sync(mask, pred)                                                                     \
    ((int)fgi_emu::warp_collective_op(fgi_emu::vote_any, mask, (pred) ? 1 : 0, 0, 32, __FILE__,      \
                                     __LINE__))
#define __all_sync(mask, pred)                                                                     \
    ((int)fgi_emu::warp_collective_op(fgi_emu::vote_all, mask, (pred) ? 1 : 0, 0, 32, __FILE__,      \
                                     __LINE__))

/* Read-only global loads: checked against the live device allocations. */
template <typename T> static inline T __ldg(const T *p)
{
    fgi_emu::check_global_read(p, sizeof(T), alignof(T), "__ldg");
    return *p;
}

/* Loads cached in L2 only (written by other blocks of the same launch). */
template <typename T> static inline T __ldcg(const T *p)
{
    fgi_emu::check_global_read(p, sizeof(T), alignof(T), "__ldcg");
    return *p;
}

/* Atomics: fibers never run at the same time, so plain read-modify-writes. */
template <typename T> static inline T atomicAdd(T *p, T v)
{
    T old = *p;
    *p = old + v;
    return old;
}
template <typename T> static inline T atomicSub(T *p, T v)
{
    T old = *p;
    *p = old - v;
    return old;
}
template <typename T> static inline T atomicExch(T *p, T v)
{
    T old = *p;
    *p = v;
    return old;
}
template <typename T> static inline T atomicMax(T *p, T v)
{
    T old = *p;
    if (v > old) *p = v;
    return old;
}
template <typename T> static inline T atomicMin(T *p, T v)
{
    T old = *p;
    if (v < old) *p = v;
    return old;
}
template <typename T> static inline T atomicCAS(T *p, T cmp, T v)
{
    T old = *p;
    if (old == cmp) *p = v;
    return old;
}

/* min / max for any pair of arithmetic types, with the usual conversions. */
template <typename A, typename B,
          typename = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
static inline std::common_type_t<A, B> min(A a, B b)
{
    return b < a ? b : a;
}
template <typename A, typename B,
          typename = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
static inline std::common_type_t<A, B> max(A a, B b)
{
    return a < b ? b : a;
}

/* Math intrinsics. The accurate functions (expf, exp2f, sqrtf, ...) are the C
 * library's, which are at least as accurate as CUDA's; the fast __ forms are
 * computed the way the hardware approximates them (through exp2 / log2). */
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float __fdividef(float a, float b) { return a / b; }
/* glibc declares its own __expf, __logf... (exact ones): macros take the names. */
#define __expf fgi_emu_fast_expf
#define __exp10f fgi_emu_fast_exp10f
#define __logf fgi_emu_fast_logf
#define __log2f fgi_emu_fast_log2f
#define __powf fgi_emu_fast_powf
#define __sinf fgi_emu_fast_sinf
#define __cosf fgi_emu_fast_cosf
#define __tanf fgi_emu_fast_tanf
#define __sincosf fgi_emu_fast_sincosf
static inline float fgi_emu_fast_expf(float x) { return exp2f(x * 1.4426950408889634f); }
static inline float fgi_emu_fast_exp10f(float x) { return exp2f(x * 3.3219280948873623f); }
static inline float fgi_emu_fast_logf(float x) { return log2f(x) * 0.6931471805599453f; }
static inline float fgi_emu_fast_log2f(float x) { return log2f(x); }
static inline float fgi_emu_fast_powf(float a, float b) { return exp2f(b * log2f(a)); }
static inline float fgi_emu_fast_sinf(float x) { return sinf(x); }
static inline float fgi_emu_fast_cosf(float x) { return cosf(x); }
static inline float fgi_emu_fast_tanf(float x) { return tanf(x); }
static inline void fgi_emu_fast_sincosf(float x, float *s, float *c) { *s = sinf(x), *c = cosf(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __int_as_float(int v)
{
    float f;
    memcpy(&f, &v, 4);
    return f;
}
static inline int __float_as_int(float f)
{
    int v;
    memcpy(&v, &f, 4);
    return v;
}
static inline float __uint_as_float(unsigned v)
{
    float f;
    memcpy(&f, &v, 4);
    return f;
}
static inline unsigned __float_as_uint(float f)
{
    unsigned v;
    memcpy(&v, &f, 4);
    return v;
}
static inline int __popc(unsigned v) { return __builtin_popcount(v); }
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b)
{
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
static inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
static inline int __ffs(int v) { return __builtin_ffs(v); }
static inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz((unsigned)v); }

/* Host-side C++ API templates. */
template <typename T>
static inline cudaError_t cudaFuncSetAttribute(T *kernel, cudaFuncAttribute attr, int value)
{
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
        return fgi_emu::record_error(attr == cudaFuncAttributePreferredSharedMemoryCarveout
                                        ? cudaSuccess
                                        : cudaErrorInvalidValue);
    return fgi_emu::set_dynamic_smem_limit(reinterpret_cast<const void *>(kernel), value);
}

template <typename T>
static inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *blocks, T *kernel,
                                                                        int block_size,
                                                                        size_t dynamic_smem)
{
    return fgi_emu::occupancy(blocks, reinterpret_cast<const void *>(kernel), block_size,
                             dynamic_smem);
}

template <typename... P, typename... A>
static inline cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t *config, void (*kernel)(P...),
                                             A &&...args)
{
    if (config == nullptr || config->numAttrs != 0)
        return fgi_emu::record_error(cudaErrorInvalidValue);
    const fgi_emu::launch_config cfg = {"(cudaLaunchKernelEx)", config->gridDim, config->blockDim,
                                       config->dynamicSmemBytes, config->stream};
    return fgi_emu::launch_kernel(cfg, kernel, std::forward<A>(args)...);
}

#endif /* __cplusplus */
#endif /* FG_EMU_CUDA_RUNTIME_H */
