/* fgi_emu CUDA graphs: stream capture, instantiation and replay.
 *
 * While a stream captures, the work enqueued on it (kernel launches, async
 * copies and memsets, event records, cuBLAS calls on a handle bound to it) is
 * checked as at a direct call and recorded as a node instead of run: kernel
 * arguments by value, copy pointers as pointers (their bytes are read at
 * replay). cudaStreamEndCapture turns the nodes into a graph,
 * cudaGraphInstantiate copies them into an executable graph (which shares
 * nothing mutable with the graph, so either may be destroyed first), and
 * cudaGraphLaunch replays them in order on its stream, each with the checks
 * of a direct call, synchronously like all emulated work. What a GPU refuses
 * during capture is refused here with the same error codes, and invalidates
 * the capture as there: see capture_unsafe_gate and the README. */
#include "emu_internal.h"


#include <map>
#include <memory>
#include <set>
#include <thread>
#include <vector>

using fgi_emu::graph_node;
using node_list = std::vector<graph_node>;

struct CUgraph_st {
    node_list nodes;
};
/* Launching an exec inside a capture records a node that shares its list. */
struct CUgraphExec_st {
    std::shared_ptr<const node_list> nodes;
};

namespace fgi_emu {
namespace {

struct capture {
    cudaStreamCaptureMode mode;
    std::thread::id thread;
    bool invalidated;
    node_list nodes;
};

/* Graphs and execs still alive at exit are freed (and counted). */
template <typename T> struct registry {
    const char *what;
    std::set<T *> live;
    ~registry()
    {
        if (!live.empty() && env_long("FG_EMU_REPORT_LEAKS", 1) != 0)
            note("%zu %s never destroyed", live.size(), what);
        for (T *p : live) delete p;
    }
};

std::map<cudaStream_t, capture> &captures()
{
    static std::map<cudaStream_t, capture> c;
    return c;
}

registry<CUgraph_st> &graphs()
{
    static registry<CUgraph_st> r{"CUDA graph(s) (cudaGraphDestroy)", {}};
    return r;
}

registry<CUgraphExec_st> &execs()
{
    static registry<CUgraphExec_st> r{"executable CUDA graph(s) (cudaGraphExecDestroy)", {}};
    return r;
}

/* The calling thread's capture interaction mode
 * (cudaThreadExchangeStreamCaptureMode; Global unless changed). */
cudaStreamCaptureMode &thread_mode()
{
    static thread_local cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
    return mode;
}

/* The CUDA runtime's rule for potentially unsafe calls: a thread in Relaxed
 * mode may make them; otherwise a capture of the calling thread that was not
 * begun Relaxed forbids them, and in Global thread mode so does any other
 * thread's Global capture. */
bool forbids_unsafe(const capture &c)
{
    const bool own = c.thread == std::this_thread::get_id();
    switch (thread_mode()) {
    case cudaStreamCaptureModeRelaxed: return false;
    case cudaStreamCaptureModeThreadLocal: return own && c.mode != cudaStreamCaptureModeRelaxed;
    default:
        return own ? c.mode != cudaStreamCaptureModeRelaxed : c.mode == cudaStreamCaptureModeGlobal;
    }
}

bool valid_mode(cudaStreamCaptureMode mode)
{
    return mode == cudaStreamCaptureModeGlobal || mode == cudaStreamCaptureModeThreadLocal ||
           mode == cudaStreamCaptureModeRelaxed;
}

cudaError_t replay(const node_list &nodes, cudaStream_t stream)
{
    for (const graph_node &node : nodes) {
        const cudaError_t err = node(stream);
        if (err != cudaSuccess) return err;
    }
    return cudaSuccess;
}

} // namespace

bool stream_capturing(cudaStream_t stream) { return captures().count(stream) > 0; }

cudaError_t capture_gate(const char *fn, cudaStream_t stream, bool *record)
{
    *record = false;
    auto it = captures().find(stream);
    if (it != captures().end()) {
        if (it->second.invalidated) {
            note("%s: the capture on stream %p was invalidated by an earlier error; end it with "
                 "cudaStreamEndCapture",
                 fn, (void *)stream);
            return cudaErrorStreamCaptureInvalidated;
        }
        *record = true;
        return cudaSuccess;
    }
    if (!is_legacy_stream(stream)) return cudaSuccess;
    bool implicit = false;
    for (auto &[s, c] : captures())
        if (stream_blocks_legacy(s)) implicit = c.invalidated = true;
    if (implicit)
        note("%s: work on the legacy stream while a blocking stream captures (it would depend "
             "on the capture); the capture is invalidated",
             fn);
    return implicit ? cudaErrorStreamCaptureImplicit : cudaSuccess;
}

void capture_record(cudaStream_t stream, graph_node node)
{
    captures().at(stream).nodes.push_back(std::move(node));
}

cudaError_t capture_unsafe_gate(const char *fn)
{
    bool forbidden = false;
    for (auto &[s, c] : captures())
        if (forbids_unsafe(c)) forbidden = c.invalidated = true;
    if (forbidden)
        note("%s is not permitted while a stream captures (in Global or ThreadLocal mode); the "
             "capture is invalidated",
             fn);
    return forbidden ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}

cudaError_t capture_stream_gate(const char *fn, cudaStream_t stream)
{
    auto it = captures().find(stream);
    if (it == captures().end()) return cudaSuccess;
    it->second.invalidated = true;
    note("%s on capturing stream %p is not permitted; the capture is invalidated", fn,
         (void *)stream);
    return cudaErrorStreamCaptureUnsupported;
}

cudaError_t capture_device_sync_gate(const char *fn)
{
    if (captures().empty()) return cudaSuccess;
    for (auto &[s, c] : captures()) c.invalidated = true;
    note("%s while a stream captures is not permitted; the capture is invalidated", fn);
    return cudaErrorStreamCaptureUnsupported;
}

} // namespace fgi_emu

using namespace fgi_emu;


extern "C" {

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode)
{
    EMU_API_BEGIN;
    EMU_STREAM_CHECK("cudaStreamBeginCapture", stream);
    if (!valid_mode(mode)) {
        note("cudaStreamBeginCapture: invalid capture mode %d", (int)mode);
        return record_error(cudaErrorInvalidValue);
    }
    if (is_legacy_stream(stream)) {
        note("cudaStreamBeginCapture: the legacy stream cannot be captured");
        return record_error(cudaErrorStreamCaptureUnsupported);
    }
    if (stream_capturing(stream)) {
        note("cudaStreamBeginCapture: stream %p is already capturing", (void *)stream);
        return record_error(cudaErrorIllegalState);
    }
    captures()[stream] = capture{mode, std::this_thread::get_id(), false, {}};
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph)
{
    EMU_API_BEGIN;
    if (graph == nullptr) return record_error(cudaErrorInvalidValue);
    EMU_STREAM_CHECK("cudaStreamEndCapture", stream);
    auto it = captures().find(stream);
    if (it == captures().end()) {
        note("cudaStreamEndCapture: stream %p is not capturing", (void *)stream);
        return record_error(cudaErrorIllegalState);
    }
    if (it->second.mode != cudaStreamCaptureModeRelaxed &&
        it->second.thread != std::this_thread::get_id()) {
        note("cudaStreamEndCapture: the capture was begun on another thread (not Relaxed mode)");
        return record_error(cudaErrorStreamCaptureWrongThread);
    }
    const bool invalidated = it->second.invalidated;
    node_list nodes = std::move(it->second.nodes);
    captures().erase(it);
    *graph = nullptr;
    if (invalidated) return record_error(cudaErrorStreamCaptureInvalidated);
    CUgraph_st *g = new CUgraph_st{std::move(nodes)};
    graphs().live.insert(g);
    *graph = g;
    return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode *mode)
{
    EMU_API_BEGIN;
    if (mode == nullptr || !valid_mode(*mode)) {
        note("cudaThreadExchangeStreamCaptureMode: %s", mode ? "invalid mode" : "NULL mode");
        return record_error(cudaErrorInvalidValue);
    }
    std::swap(*mode, thread_mode());
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status)
{
    EMU_API_BEGIN;
    if (status == nullptr) return record_error(cudaErrorInvalidValue);
    EMU_STREAM_CHECK("cudaStreamIsCapturing", stream);
    if (is_legacy_stream(stream))
        for (const auto &[s, c] : captures())
            if (stream_blocks_legacy(s)) return record_error(cudaErrorStreamCaptureImplicit);
    auto it = captures().find(stream);
    *status = it == captures().end() ? cudaStreamCaptureStatusNone
              : it->second.invalidated ? cudaStreamCaptureStatusInvalidated
                                       : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags)
{
    EMU_API_BEGIN;
    if (exec == nullptr || graphs().live.count(graph) == 0) {
        note("cudaGraphInstantiate: %s", exec == nullptr ? "exec pointer is NULL"
                                                         : "graph is not a live cudaGraph_t");
        return record_error(cudaErrorInvalidValue);
    }
    const unsigned long long known =
        cudaGraphInstantiateFlagAutoFreeOnLaunch | cudaGraphInstantiateFlagUpload |
        cudaGraphInstantiateFlagDeviceLaunch | cudaGraphInstantiateFlagUseNodePriority;
    if ((flags & ~known) != 0) {
        note("cudaGraphInstantiate: unknown flags 0x%llx", flags);
        return record_error(cudaErrorInvalidValue);
    }
    CUgraphExec_st *e = new CUgraphExec_st{std::make_shared<const node_list>(graph->nodes)};
    execs().live.insert(e);
    *exec = e;
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream)
{
    EMU_API_BEGIN;
    if (execs().live.count(exec) == 0) {
        note("cudaGraphLaunch: %p is not a live cudaGraphExec_t", (void *)exec);
        return record_error(cudaErrorInvalidValue);
    }
    EMU_STREAM_CHECK("cudaGraphLaunch", stream);
    bool record = false;
    const cudaError_t err = capture_gate("cudaGraphLaunch", stream, &record);
    if (err != cudaSuccess) return record_error(err);
    std::shared_ptr<const node_list> nodes = exec->nodes;
    if (record) { /* a child graph: it replays the exec's nodes as they are now */
        capture_record(stream, [nodes](cudaStream_t s) { return replay(*nodes, s); });
        return cudaSuccess;
    }
    return record_error(replay(*nodes, stream));
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    EMU_API_BEGIN;
    if (graphs().live.erase(graph) == 0) {
        note("cudaGraphDestroy: %p is not a live cudaGraph_t", (void *)graph);
        return record_error(cudaErrorInvalidValue);
    }
    delete graph;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec)
{
    EMU_API_BEGIN;
    if (execs().live.erase(exec) == 0) {
        note("cudaGraphExecDestroy: %p is not a live cudaGraphExec_t", (void *)exec);
        return record_error(cudaErrorInvalidValue);
    }
    delete exec;
    return cudaSuccess;
}

} // extern "C"
