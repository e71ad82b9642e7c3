/* fgi_emu host API: the device (an H100-like description), errors, copies and
 * memsets (checked against the device allocations), streams and events.
 *
 * All work is synchronous: a kernel or copy is complete when its call
 * returns, so stream order always holds and events time host work. Streams
 * and events are still real handles, checked on every use (a destroyed or
 * made-up handle is cudaErrorInvalidResourceHandle). Errors are recorded as
 * the thread's "last error" as the CUDA runtime does; misuse that a real GPU
 * would answer with an error code (a range past an allocation, a host
 * pointer given as device memory, a double free) is also described on
 * stderr. FG_EMU_NO_GPU=1 makes the emulated machine have no device.
 *
 * Stream capture (graph.cpp) hooks in here: work on a capturing stream is
 * checked and recorded instead of run, and what a capture forbids fails with
 * the CUDA error codes (each call says which gate it passes). */
#include "emu_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <chrono>
#include <map>
#include <set>

namespace fgi_emu {

std::recursive_mutex &api_lock()
{
    static std::recursive_mutex m;
    return m;
}

void vnote(const char *prefix, const char *fmt, va_list ap)
{
    fprintf(stderr, "fgi_emu: %s", prefix);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote("", fmt, ap);
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

/* The emulated card is an sm_90; FG_EMU_CC_MAJOR=7 makes it claim an older
 * one, so that refusals of what needs sm_80 can be tested. */
static int cc_major() { return (int)env_long("FG_EMU_CC_MAJOR", 9); }

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
    bool captured; /* last recorded in a capture: unusable until recorded outside */
    std::chrono::steady_clock::time_point at;
};

/* Live streams and their creation flags. */
std::map<cudaStream_t, unsigned> &streams()
{
    static std::map<cudaStream_t, unsigned> s;
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

/* The checks and the work of each copy and memset, without the capture
 * gates: direct calls and graph replays both end here. */
cudaError_t copy_now(const char *fn, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    if (bytes == 0) return cudaSuccess;
    if (dst == nullptr || src == nullptr) return cudaErrorInvalidValue;
    const cudaError_t err = check_copy(fn, dst, src, bytes, kind);
    if (err == cudaSuccess) memmove(dst, src, bytes);
    return err;
}

struct copy_2d {
    void *dst;
    size_t dpitch;
    const void *src;
    size_t spitch, width, height;
    cudaMemcpyKind kind;
};

cudaError_t check_copy_2d(const char *fn, const copy_2d &c)
{
    if (c.dst == nullptr || c.src == nullptr) return cudaErrorInvalidValue;
    if (c.width > c.dpitch || c.width > c.spitch) {
        note("%s: width %zu is larger than a pitch (dpitch %zu, spitch %zu)", fn, c.width,
             c.dpitch, c.spitch);
        return cudaErrorInvalidPitchValue;
    }
    const size_t h = c.height;
    if (h > 1 && (c.dpitch > SIZE_MAX / 2 / (h - 1) || c.spitch > SIZE_MAX / 2 / (h - 1)))
        return cudaErrorInvalidValue;
    /* each side spans (height - 1) pitches and one last row */
    const size_t dst_span = (h - 1) * c.dpitch + c.width, src_span = (h - 1) * c.spitch + c.width;
    cudaError_t err = check_copy(fn, c.dst, c.src, 0, c.kind);
    if (err == cudaSuccess &&
        (c.kind == cudaMemcpyHostToDevice || c.kind == cudaMemcpyDeviceToDevice) &&
        !device_range_ok(c.dst, dst_span, fn, "destination rows"))
        err = cudaErrorInvalidValue;
    if (err == cudaSuccess &&
        (c.kind == cudaMemcpyDeviceToHost || c.kind == cudaMemcpyDeviceToDevice) &&
        !device_range_ok(c.src, src_span, fn, "source rows"))
        err = cudaErrorInvalidValue;
    return err;
}

cudaError_t copy_2d_now(const char *fn, const copy_2d &c)
{
    if (c.width == 0 || c.height == 0) return cudaSuccess;
    const cudaError_t err = check_copy_2d(fn, c);
    if (err != cudaSuccess) return err;
    for (size_t r = 0; r < c.height; r++)
        memmove(static_cast<char *>(c.dst) + r * c.dpitch,
                static_cast<const char *>(c.src) + r * c.spitch, c.width);
    return cudaSuccess;
}

cudaError_t memset_now(const char *fn, void *dst, int value, size_t bytes)
{
    if (bytes == 0) return cudaSuccess;
    if (!device_range_ok(dst, bytes, fn, "destination")) return cudaErrorInvalidValue;
    memset(dst, value, bytes);
    return cudaSuccess;
}

void event_record_now(cudaEvent_t e)
{
    state_of(e)->recorded = true;
    state_of(e)->captured = false;
    state_of(e)->at = std::chrono::steady_clock::now();
}

/* Events last recorded in a capture cannot be waited for or timed. */
cudaError_t check_not_captured(const char *fn, cudaEvent_t e)
{
    if (!state_of(e)->captured) return cudaSuccess;
    note("%s: event %p was last recorded in a stream capture", fn, (void *)e);
    return cudaErrorCapturedEvent;
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

bool is_legacy_stream(cudaStream_t s) { return s == nullptr || s == cudaStreamLegacy; }

bool stream_blocks_legacy(cudaStream_t s)
{
    if (s == cudaStreamPerThread) return true;
    auto it = streams().find(s);
    return it != streams().end() && (it->second & cudaStreamNonBlocking) == 0;
}

} // namespace fgi_emu

using namespace fgi_emu;

/* Returns the error of a failed capture gate. */
#define EMU_GATE(call)                                                                             \
    do {                                                                                           \
        const cudaError_t gate_err_ = (call);                                                      \
        if (gate_err_ != cudaSuccess) return record_error(gate_err_);                              \
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
    snprintf(prop->name, sizeof prop->name, "NVIDIA H100 (fgi_emu CPU emulation)");
    prop->totalGlobalMem = device_bytes_total();
    prop->sharedMemPerBlock = kSharedPerBlockDefault;
    prop->regsPerBlock = 65536;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = 1024, prop->maxThreadsDim[1] = 1024, prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 0x7fffffff, prop->maxGridSize[1] = 65535, prop->maxGridSize[2] = 65535;
    prop->totalConstMem = 65536;
    prop->major = cc_major();
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
    case cudaDevAttrComputeCapabilityMajor: *value = cc_major(); break;
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
    EMU_GATE(capture_device_sync_gate("cudaDeviceSynchronize"));
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
    EMU_GATE(capture_unsafe_gate("cudaMalloc"));
    return record_error(device_alloc(ptr, bytes, "cudaMalloc"));
}

cudaError_t cudaFree(void *ptr)
{
    EMU_API_BEGIN;
    EMU_GATE(capture_unsafe_gate("cudaFree"));
    return record_error(device_free(ptr, "cudaFree"));
}

/* Graph memory nodes are not emulated: stream-ordered allocation on a
 * capturing stream is refused (a GPU would allow it). */
cudaError_t cudaMallocAsync(void **ptr, size_t bytes, cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaMallocAsync", stream);
    EMU_GATE(capture_stream_gate("cudaMallocAsync (graph memory nodes are not emulated)", stream));
    bool record = false;
    EMU_GATE(capture_gate("cudaMallocAsync", stream, &record));
    return record_error(device_alloc(ptr, bytes, "cudaMallocAsync"));
}

cudaError_t cudaFreeAsync(void *ptr, cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaFreeAsync", stream);
    EMU_GATE(capture_stream_gate("cudaFreeAsync (graph memory nodes are not emulated)", stream));
    bool record = false;
    EMU_GATE(capture_gate("cudaFreeAsync", stream, &record));
    return record_error(device_free(ptr, "cudaFreeAsync"));
}

/* Synchronous copies and memsets run on the legacy stream. */
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    EMU_API_BEGIN;
    EMU_GATE(capture_unsafe_gate("cudaMemcpy"));
    bool record = false;
    EMU_GATE(capture_gate("cudaMemcpy", nullptr, &record));
    return record_error(copy_now("cudaMemcpy", dst, src, bytes, kind));
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaMemcpyAsync", stream);
    bool record = false;
    EMU_GATE(capture_gate("cudaMemcpyAsync", stream, &record));
    if (!record) return record_error(copy_now("cudaMemcpyAsync", dst, src, bytes, kind));
    if (bytes == 0) return cudaSuccess;
    if (dst == nullptr || src == nullptr) return record_error(cudaErrorInvalidValue);
    EMU_GATE(check_copy("cudaMemcpyAsync", dst, src, bytes, kind));
    capture_record(stream, [=](cudaStream_t) {
        return copy_now("cudaMemcpyAsync (graph replay)", dst, src, bytes, kind);
    });
    return cudaSuccess;
}

cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind, cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaMemcpy2D", stream);
    bool record = false;
    EMU_GATE(capture_gate("cudaMemcpy2DAsync", stream, &record));
    const copy_2d c = {dst, dpitch, src, spitch, width, height, kind};
    if (!record) return record_error(copy_2d_now("cudaMemcpy2D", c));
    if (width == 0 || height == 0) return cudaSuccess;
    EMU_GATE(check_copy_2d("cudaMemcpy2DAsync", c));
    capture_record(stream, [c](cudaStream_t) {
        return copy_2d_now("cudaMemcpy2DAsync (graph replay)", c);
    });
    return cudaSuccess;
}

cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                         size_t height, cudaMemcpyKind kind)
{
    EMU_API_BEGIN;
    EMU_GATE(capture_unsafe_gate("cudaMemcpy2D"));
    return cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, nullptr);
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaMemset", stream);
    bool record = false;
    EMU_GATE(capture_gate("cudaMemsetAsync", stream, &record));
    if (!record) return record_error(memset_now("cudaMemset", dst, value, bytes));
    if (bytes == 0) return cudaSuccess;
    if (!device_range_ok(dst, bytes, "cudaMemsetAsync", "destination"))
        return record_error(cudaErrorInvalidValue);
    capture_record(stream, [=](cudaStream_t) {
        return memset_now("cudaMemsetAsync (graph replay)", dst, value, bytes);
    });
    return cudaSuccess;
}

cudaError_t cudaMemset(void *dst, int value, size_t bytes)
{
    EMU_API_BEGIN;
    EMU_GATE(capture_unsafe_gate("cudaMemset"));
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
    streams()[s] = flags;
    *stream = s;
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    EMU_API_BEGIN;
    if (streams().count(stream) == 0) {
        note("cudaStreamDestroy: %p is not a live stream", (void *)stream);
        return record_error(cudaErrorInvalidResourceHandle);
    }
    if (stream_capturing(stream)) {
        note("cudaStreamDestroy: stream %p is capturing; end the capture first", (void *)stream);
        return record_error(cudaErrorIllegalState);
    }
    streams().erase(stream);
    delete[] reinterpret_cast<char *>(stream);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaStreamSynchronize", stream);
    EMU_GATE(capture_stream_gate("cudaStreamSynchronize", stream));
    EMU_GATE(capture_unsafe_gate("cudaStreamSynchronize"));
    bool record = false;
    EMU_GATE(capture_gate("cudaStreamSynchronize", stream, &record));
    return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t stream)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaStreamQuery", stream);
    EMU_GATE(capture_stream_gate("cudaStreamQuery", stream));
    EMU_GATE(capture_unsafe_gate("cudaStreamQuery"));
    bool record = false;
    EMU_GATE(capture_gate("cudaStreamQuery", stream, &record));
    return cudaSuccess;
}

/* Events --------------------------------------------------------------------------------- */

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    EMU_API_BEGIN;
    if (event == nullptr || flags > 0x0f) return record_error(cudaErrorInvalidValue);
    event_state *e = new event_state{flags, false, false, {}};
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
    bool record = false;
    EMU_GATE(capture_gate("cudaEventRecord", stream, &record));
    if (!record) {
        event_record_now(event);
        return cudaSuccess;
    }
    state_of(event)->captured = true;
    capture_record(stream, [event](cudaStream_t) {
        if (!valid_event(event)) {
            note("cudaEventRecord (graph replay): event %p was destroyed", (void *)event);
            return cudaErrorInvalidResourceHandle;
        }
        event_record_now(event);
        return cudaSuccess;
    });
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    EMU_API_BEGIN;
    if (!valid_event(event)) return record_error(cudaErrorInvalidResourceHandle);
    EMU_GATE(check_not_captured("cudaEventSynchronize", event));
    EMU_GATE(capture_unsafe_gate("cudaEventSynchronize"));
    return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event)
{
    EMU_API_BEGIN;
    if (!valid_event(event)) return record_error(cudaErrorInvalidResourceHandle);
    EMU_GATE(check_not_captured("cudaEventQuery", event));
    EMU_GATE(capture_unsafe_gate("cudaEventQuery"));
    return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    EMU_API_BEGIN;
    if (ms == nullptr) return record_error(cudaErrorInvalidValue);
    if (!valid_event(start) || !valid_event(end))
        return record_error(cudaErrorInvalidResourceHandle);
    const event_state *a = state_of(start), *b = state_of(end);
    EMU_GATE(check_not_captured("cudaEventElapsedTime", start));
    EMU_GATE(check_not_captured("cudaEventElapsedTime", end));
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
        NAME(cudaErrorIllegalState)
        NAME(cudaErrorNotReady)
        NAME(cudaErrorIllegalAddress)
        NAME(cudaErrorLaunchOutOfResources)
        NAME(cudaErrorLaunchFailure)
        NAME(cudaErrorNotSupported)
        NAME(cudaErrorStreamCaptureUnsupported)
        NAME(cudaErrorStreamCaptureInvalidated)
        NAME(cudaErrorStreamCaptureImplicit)
        NAME(cudaErrorCapturedEvent)
        NAME(cudaErrorStreamCaptureWrongThread)
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
    case cudaErrorIllegalState: return "the resource is not in a state that permits the call";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
        return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit:
        return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorCapturedEvent:
        return "operation not permitted on an event last recorded in a capturing stream";
    case cudaErrorStreamCaptureWrongThread:
        return "capture sequence was begun on a different thread (not in relaxed mode)";
    }
    return "unrecognized error code";
}

} // extern "C"
