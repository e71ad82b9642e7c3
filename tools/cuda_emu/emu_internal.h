/* fgi_emu internals shared by the emulator's translation units (memory.cpp,
 * runtime.cpp, scheduler.cpp, cublas.cpp). Not included by emulated code. */
#ifndef FG_EMU_INTERNAL_H
#define FG_EMU_INTERNAL_H

#include "fake/cuda_runtime.h"

#include <cstdarg>
#include <functional>
#include <mutex>

#if defined(__SANITIZE_ADDRESS__)
#define FG_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FG_EMU_ASAN 1
#endif
#endif
#ifndef FG_EMU_ASAN
#define FG_EMU_ASAN 0
#endif

#if FG_EMU_ASAN
#include <sanitizer/asan_interface.h>
#define FG_EMU_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define FG_EMU_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define FG_EMU_POISON(p, n) ((void)(p), (void)(n))
#define FG_EMU_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace fgi_emu {

/* Every entry point of the emulated runtime holds this lock: the emulator
 * itself is single-threaded (kernels run on the calling thread). */
std::recursive_mutex &api_lock();

/* A line "fgi_emu: ..." on stderr (for misuse that is also reported as an
 * error code, so the caller sees both). */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same line with `prefix` after "fgi_emu: " (fault reports share it). */
void vnote(const char *prefix, const char *fmt, va_list ap);

/* Environment knobs, read once. */
long env_long(const char *name, long fallback);

/* Device ---------------------------------------------------------------------- */
bool device_present(); /* false with FG_EMU_NO_GPU=1 */
int sm_count();
constexpr size_t kSharedPerBlockDefault = 48 * 1024;
constexpr size_t kSharedPerBlockOptin = 227 * 1024;
constexpr size_t kSharedPerSM = 228 * 1024;

/* Streams ----------------------------------------------------------------------- */
bool valid_stream(cudaStream_t stream);
bool is_legacy_stream(cudaStream_t stream); /* 0 or cudaStreamLegacy */
/* Whether the legacy stream waits for it (not cudaStreamNonBlocking). */
bool stream_blocks_legacy(cudaStream_t stream);

/* Stream capture (graph.cpp) ------------------------------------------------------ */
/* One recorded operation; it re-checks and runs its work on the stream the
 * graph is launched in. */
using graph_node = std::function<cudaError_t(cudaStream_t)>;
/* Gate for work enqueued on `stream`: sets *record when the stream captures
 * (record the work with capture_record, do not run it); fails with
 * cudaErrorStreamCaptureInvalidated on an invalidated capture and with
 * cudaErrorStreamCaptureImplicit for legacy-stream work while a blocking
 * stream captures (that invalidates the capture, as on a GPU). */
cudaError_t capture_gate(const char *fn, cudaStream_t stream, bool *record);
void capture_record(cudaStream_t stream, graph_node node);
/* Gate for "potentially unsafe" calls (cudaMalloc, cudaFree, synchronous
 * copies and memsets, synchronizations): cudaErrorStreamCaptureUnsupported
 * while a capture forbids them (any Global-mode capture, or a ThreadLocal /
 * Global one of this thread); the forbidding captures are invalidated. */
cudaError_t capture_unsafe_gate(const char *fn);
/* Gate for calls never allowed on a capturing stream (synchronize, query,
 * stream-ordered allocation): cudaErrorStreamCaptureUnsupported, and the
 * capture is invalidated. */
cudaError_t capture_stream_gate(const char *fn, cudaStream_t stream);
/* cudaDeviceSynchronize waits for every stream: refused during any capture. */
cudaError_t capture_device_sync_gate(const char *fn);
bool stream_capturing(cudaStream_t stream); /* active or invalidated */

/* Device memory (memory.cpp) --------------------------------------------------------- */
cudaError_t device_alloc(void **ptr, size_t bytes, const char *fn);
cudaError_t device_free(void *ptr, const char *fn);
/* True when [p, p + bytes) lies inside one live allocation; otherwise, with
 * `fn` and `what` naming the call and the argument, notes why. */
bool device_range_ok(const void *p, size_t bytes, const char *fn, const char *what);
/* Checks every live allocation's guard zones; `when` names the moment. */
void check_all_guards(const char *when);
size_t device_bytes_total();
size_t device_bytes_used();

/* Scheduler (scheduler.cpp) ------------------------------------------------------------- */
bool in_kernel();
/* For sm90.cpp: waiting for an event (an mbarrier phase, a named barrier):
 * block_on parks the running thread until wake(key); a warpgroup
 * collective runs fn once with the 128 threads' args when all of them have
 * arrived. The hooks: a block starts (n threads), a thread exits, the block
 * ends (its checks). The shared window: shared address a is
 * shared_window() + a. */
void block_on(const void *key, const char *what, const char *file, int line);
void wake(const void *key);
void warpgroup_collective(void (*fn)(void *const *args), void *arg, const char *what,
                          const char *file, int line);
int current_thread();
int block_thread_count();
unsigned char *shared_window();
bool shared_range_ok(const void *p, size_t bytes);
void sm90_block_begin(int n);
void sm90_thread_exit(int linear);
void sm90_block_end();

} // namespace fgi_emu

/* Every API function: lock, check for a device, run, record the error
 * (after `using namespace fgi_emu`). */
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

#endif /* FG_EMU_INTERNAL_H */
