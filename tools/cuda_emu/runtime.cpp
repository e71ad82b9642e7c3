/* fg_emu host API: the device (an H100-like description), errors, copies and
 * memsets (checked against the device allocations), streams and events.
 *
 * All work is synchronous: a kernel or copy is complete when its call
 * returns, so stream order always holds and events time host work. Streams
 * and events are still real handles, checked on every use (a destroyed or
 * made-up handle is cudaErrorInvalidResourceHandle). Errors are recorded as
 * the thread's "last error" as the CUDA runtime does; misuse that a real GPU
 * would answer with an error code (a range past an allocation, a host
 * pointer given as device memory, a double free) is also described on
 * stderr. FG_EMU_NO_GPU=1 makes the emulated machine have no device. */
#include "emu_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <chrono>
#include <set>

namespace fg_emu {

std::recursive_mutex &api_lock()
{
    static std::recursive_mutex m;
    return m;
}

void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fg_emu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

long env_long(const char *name, long fallback)
{
    const char *v = getenv(name);
    if (v == nullptr || *v == '\0') return fallback;
    char *end = nullptr;
    const long x = strtol(v, &end, 0);
    return end != v ? x : fallback;
}

bool device_present() { return env_long("FG_EMU_NO_GPU", 0) == 0; }

int sm_count()
{
    static const int n = (int)env_long("FG_EMU_SMS", 132);
    return n > 0 ? n : 132;
}

namespace {

thread_local cudaError_t last_error = cudaSuccess;

struct event_state {
    unsigned flags;
    bool recorded;
    std::chrono::steady_clock::time_point at;
};

std::set<cudaStream_t> &streams()
{
    static std::set<cudaStream_t> s;
    return s;
}

std::set<cudaEvent_t> &events()
{
    static std::set<cudaEvent_t> s;
    return s;
}

bool valid_event(cudaEvent_t e) { return e != nullptr && events().count(e) > 0; }

event_state *state_of(cudaEvent_t e) { return reinterpret_cast<event_state *>(e); }

/* Whether p is device memory (for cudaMemcpyDefault). */
bool is_device(const void *p) { return classify_pointer(p) != host_pointer; }

/* Checks both sides of a copy of `bytes` bytes for `kind`. */
cudaError_t check_copy(const char *fn, void *dst, const void *src, size_t bytes,
                       cudaMemcpyKind kind)
{
    if ((int)kind < 0 || (int)kind > 4) {
        note("%s: invalid cudaMemcpyKind %d", fn, (int)kind);
        return cudaErrorInvalidMemcpyDirection;
    }
    if (kind == cudaMemcpyDefault)
        kind = is_device(src) ? (is_device(dst) ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
                              : (is_device(dst) ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
    const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (dst_dev ? !device_range_ok(dst, bytes, fn, "destination")
                : classify_pointer(dst) != host_pointer) {
        if (!dst_dev)
            note("%s: destination %p is device memory, but the copy's kind says host", fn, dst);
        return cudaErrorInvalidValue;
    }
    if (src_dev ? !device_range_ok(src, bytes, fn, "source")
                : classify_pointer(src) != host_pointer) {
        if (!src_dev)
            note("%s: source %p is device memory, but the copy's kind says host", fn, src);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

} // namespace

cudaError_t record_error(cudaError_t err)
{
    if (err != cudaSuccess) last_error = err;
    return err;
}

bool valid_stream(cudaStream_t s)
{
    return s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread ||
           streams().count(s) > 0;
}

} // namespace fg_emu

using namespace fg_emu;

/* Every API function: lock, check for a device, run, record the error. */
#define EMU_API_BEGIN                                                                              \
    std::lock_guard<std::recursive_mutex> emu_lock_(api_lock());                                   \
    if (!device_present()) return record_error(cudaErrorNoDevice)
#define EMU_STREAM_CHECK(fn, s)                                                                    \
    do {                                                                                           \
        if (!valid_stream(s)) {                                                                    \
            note("%s: invalid stream handle %p", fn, (void *)(s));                                 \
            return record_error(cudaErrorInvalidResourceHandle);                                   \
        }                                                                                          \
    } while (0)

extern "C" {

/* Device --------------------------------------------------------------------------- */

cudaError_t cudaGetDeviceCount(int *count)
{
    if (count == nullptr) return record_error(cudaErrorInvalidValue);
    *count = 0;
    EMU_API_BEGIN;
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device)
{
    EMU_API_BEGIN;
    if (device == nullptr) return record_error(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    EMU_API_BEGIN;
    return device == 0 ? cudaSuccess : record_error(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device)
{
    EMU_API_BEGIN;
    if (prop == nullptr) return record_error(cudaErrorInvalidValue);
    if (device != 0) return record_error(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "NVIDIA H100 (fg_emu CPU emulation)");
    prop->totalGlobalMem = device_bytes_total();
    prop->sharedMemPerBlock = kSharedPerBlockDefault;
    prop->regsPerBlock = 65536;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = 1024, prop->maxThreadsDim[1] = 1024, prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 0x7fffffff, prop->maxGridSize[1] = 65535, prop->maxGridSize[2] = 65535;
    prop->totalConstMem = 65536;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = sm_count();
    prop->l2CacheSize = 50 << 20;
    prop->maxThreadsPerMultiProcessor = 2048;
    prop->sharedMemPerMultiprocessor = kSharedPerSM;
    prop->sharedMemPerBlockOptin = kSharedPerBlockOptin;
    prop->memoryBusWidth = 5120;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device)
{
    EMU_API_BEGIN;
    if (value == nullptr) return record_error(cudaErrorInvalidValue);
    if (device != 0) return record_error(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)kSharedPerBlockDefault; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = sm_count(); break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = (int)kSharedPerSM; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)kSharedPerBlockOptin; break;
    case cudaDevAttrMemoryPoolsSupported: *value = 1; break;
    default:
        note("cudaDeviceGetAttribute: attribute %d is not emulated", (int)attr);
        return record_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    EMU_API_BEGIN;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    EMU_API_BEGIN;
    if (free_bytes == nullptr || total_bytes == nullptr) return record_error(cudaErrorInvalidValue);
    *total_bytes = device_bytes_total();
    *free_bytes = device_bytes_total() - device_bytes_used();
    return cudaSuccess;
}

/* Memory ------------------------------------------------------------------------------ */

cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
    EMU_API_BEGIN;
    return record_error(device_alloc(ptr, bytes, "cudaMalloc"));
}

cudaError_t cudaFree(void *ptr)
{
    EMU_API_BEGIN;
    return record_error(device_free(ptr, "cudaFree"));
}

cudaError_t cudaMallocAsync(void **ptr, size_t bytes, cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaMallocAsync", stream);
    return record_error(device_alloc(ptr, bytes, "cudaMallocAsync"));
}

cudaError_t cudaFreeAsync(void *ptr, cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaFreeAsync", stream);
    return record_error(device_free(ptr, "cudaFreeAsync"));
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    EMU_API_BEGIN;
    if (bytes == 0) return cudaSuccess;
    if (dst == nullptr || src == nullptr) return record_error(cudaErrorInvalidValue);
    const cudaError_t err = check_copy("cudaMemcpy", dst, src, bytes, kind);
    if (err != cudaSuccess) return record_error(err);
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaMemcpyAsync", stream);
    if (bytes == 0) return cudaSuccess;
    if (dst == nullptr || src == nullptr) return record_error(cudaErrorInvalidValue);
    const cudaError_t err = check_copy("cudaMemcpyAsync", dst, src, bytes, kind);
    if (err != cudaSuccess) return record_error(err);
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind, cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaMemcpy2D", stream);
    if (width == 0 || height == 0) return cudaSuccess;
    if (dst == nullptr || src == nullptr) return record_error(cudaErrorInvalidValue);
    if (width > dpitch || width > spitch) {
        note("cudaMemcpy2D: width %zu is larger than a pitch (dpitch %zu, spitch %zu)", width,
             dpitch, spitch);
        return record_error(cudaErrorInvalidPitchValue);
    }
    if (height > 1 &&
        (dpitch > SIZE_MAX / 2 / (height - 1) || spitch > SIZE_MAX / 2 / (height - 1)))
        return record_error(cudaErrorInvalidValue);
    /* each side spans (height - 1) pitches and one last row */
    const size_t dst_span = (height - 1) * dpitch + width, src_span = (height - 1) * spitch + width;
    cudaError_t err = check_copy("cudaMemcpy2D", dst, src, 0, kind);
    if (err == cudaSuccess &&
        (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) &&
        !device_range_ok(dst, dst_span, "cudaMemcpy2D", "destination rows"))
        err = cudaErrorInvalidValue;
    if (err == cudaSuccess &&
        (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice) &&
        !device_range_ok(src, src_span, "cudaMemcpy2D", "source rows"))
        err = cudaErrorInvalidValue;
    if (err != cudaSuccess) return record_error(err);
    for (size_t r = 0; r < height; r++)
        memmove(static_cast<char *>(dst) + r * dpitch, static_cast<const char *>(src) + r * spitch,
                width);
    return cudaSuccess;
}

cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                         size_t height, cudaMemcpyKind kind)
{
    return cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, nullptr);
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaMemset", stream);
    if (bytes == 0) return cudaSuccess;
    if (!device_range_ok(dst, bytes, "cudaMemset", "destination"))
        return record_error(cudaErrorInvalidValue);
    memset(dst, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *dst, int value, size_t bytes)
{
    return cudaMemsetAsync(dst, value, bytes, nullptr);
}

/* Streams ------------------------------------------------------------------------------- */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags)
{
    EMU_API_BEGIN;
    if (stream == nullptr || flags > cudaStreamNonBlocking)
        return record_error(cudaErrorInvalidValue);
    /* a unique address that is never dereferenced */
    cudaStream_t s = reinterpret_cast<cudaStream_t>(new char[1]);
    streams().insert(s);
    *stream = s;
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    EMU_API_BEGIN;
    if (streams().erase(stream) == 0) {
        note("cudaStreamDestroy: %p is not a live stream", (void *)stream);
        return record_error(cudaErrorInvalidResourceHandle);
    }
    delete[] reinterpret_cast<char *>(stream);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaStreamSynchronize", stream);
    return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaStreamQuery", stream);
    return cudaSuccess;
}

/* Events --------------------------------------------------------------------------------- */

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    EMU_API_BEGIN;
    if (event == nullptr || flags > 0x0f) return record_error(cudaErrorInvalidValue);
    event_state *e = new event_state{flags, false, {}};
    cudaEvent_t handle = reinterpret_cast<cudaEvent_t>(e);
    events().insert(handle);
    *event = handle;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, 0); }

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    EMU_API_BEGIN;
    if (events().erase(event) == 0) {
        note("cudaEventDestroy: %p is not a live event", (void *)event);
        return record_error(cudaErrorInvalidResourceHandle);
    }
    delete state_of(event);
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaEventRecord", stream);
    if (!valid_event(event)) return record_error(cudaErrorInvalidResourceHandle);
    state_of(event)->recorded = true;
    state_of(event)->at = std::chrono::steady_clock::now();
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    EMU_API_BEGIN;
    return valid_event(event) ? cudaSuccess : record_error(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventQuery(cudaEvent_t event)
{
    EMU_API_BEGIN;
    return valid_event(event) ? cudaSuccess : record_error(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    EMU_API_BEGIN;
    if (ms == nullptr) return record_error(cudaErrorInvalidValue);
    if (!valid_event(start) || !valid_event(end))
        return record_error(cudaErrorInvalidResourceHandle);
    const event_state *a = state_of(start), *b = state_of(end);
    if ((a->flags | b->flags) & cudaEventDisableTiming)
        return record_error(cudaErrorInvalidResourceHandle);
    if (!a->recorded || !b->recorded) return record_error(cudaErrorInvalidResourceHandle);
    *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
    return cudaSuccess;
}

/* Errors ------------------------------------------------------------------------------------ */

cudaError_t cudaGetLastError(void)
{
    const cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

const char *cudaGetErrorName(cudaError_t error)
{
    switch (error) {
#define NAME(e)                                                                                    \
    case e: return #e;
        NAME(cudaSuccess)
        NAME(cudaErrorInvalidValue)
        NAME(cudaErrorMemoryAllocation)
        NAME(cudaErrorInitializationError)
        NAME(cudaErrorInvalidConfiguration)
        NAME(cudaErrorInvalidPitchValue)
        NAME(cudaErrorInvalidDevicePointer)
        NAME(cudaErrorInvalidMemcpyDirection)
        NAME(cudaErrorNoDevice)
        NAME(cudaErrorInvalidDevice)
        NAME(cudaErrorInvalidResourceHandle)
        NAME(cudaErrorNotReady)
        NAME(cudaErrorIllegalAddress)
        NAME(cudaErrorLaunchOutOfResources)
        NAME(cudaErrorLaunchFailure)
        NAME(cudaErrorNotSupported)
#undef NAME
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidPitchValue: return "invalid pitch argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    }
    return "unrecognized error code";
}

} // extern "C"
