/* fgi_emu kernel execution: blocks one after another, the threads of a block
 * as fibers, barriers and warp collectives as rendezvous points.
 *
 * A thread runs until it reaches __syncthreads, a warp collective or its
 * end. Between two block barriers the warps run one after another, each as
 * far as it gets (FG_EMU_SCHEDULE=warp, the default: a warp racing ahead of
 * the others exposes a missing __syncthreads), or every thread advances one
 * step per round (FG_EMU_SCHEDULE=lockstep). Warps, lanes and blocks take
 * turns in the order FG_EMU_ORDER picks: forward, reverse or random (lanes
 * and warps reshuffled at every step, blocks walked with a random stride).
 * A warp group is released when all its members have arrived, the block
 * barrier when every thread waits there. What the hardware leaves undefined
 * stops the run with a report (fault): __syncthreads reached at different
 * places or after some threads exited, a collective whose mask leaves out
 * the caller or that reads a lane not taking part, a deadlock.
 *
 * Shared memory is one arena per block, refilled with NaN bytes for every
 * block: dynamic shared memory at its base, static __shared__ objects after
 * it, guard zones around both, checked after every block. cp.async copies
 * poison their destination when issued and land at the wait covering them.
 * Fibers switch with _setjmp/_longjmp (no system call), annotated for
 * AddressSanitizer. FG_EMU_TRACE=1 prints every launch. */
#undef _FORTIFY_SOURCE /* __longjmp_chk refuses to jump between stacks */
#include "emu_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#if FG_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;

namespace fgi_emu {
namespace {

/* at_event: waiting for an mbarrier phase or a named barrier (sm90.cpp),
 * at_group: at a warpgroup collective (wgmma). */
enum class run_state { unstarted, runnable, at_barrier, at_warp, at_event, at_group, done };

struct pending_copy {
    void *dst;
    const void *src;
    size_t bytes, zfill;
    long group;
};

struct fiber;

struct emu_thread {
    uint3 tid;
    int linear;
    run_state state;
    fiber *f;
    const char *file; /* where it waits */
    int line;
    warp_collective op; /* at_warp: which one (warp_barrier: __syncwarp) */
    unsigned mask;
    uint64_t value, result;
    int arg, width;
    std::vector<pending_copy> copies;
    long commits;
    const void *key;  /* at_event: what it waits for */
    const char *what; /* at_event / at_group: its name, for reports */
    void (*group_fn)(void *const *args); /* at_group: run once all 128 arrived */
    void *group_arg;
};

struct fiber {
    char *stack_lo = nullptr;
    size_t stack_size = 0;
    ucontext_t uc;
    jmp_buf jb;
    bool started = false;
    emu_thread *t = nullptr;
};

/* Scheduler state (one launch at a time, under the API lock). */
fiber main_fiber;
fiber *running = &main_fiber;
/* Every fiber ever made (kept for the next block), and the idle ones. */
struct fiber_pool {
    std::vector<fiber *> all, idle;
    ~fiber_pool()
    {
        const size_t page = (size_t)sysconf(_SC_PAGESIZE);
        for (fiber *f : all) {
            munmap(f->stack_lo - page, f->stack_size + page);
            delete f;
        }
    }
} fibers;
std::vector<emu_thread> threads;
emu_thread *cur = nullptr;
const kernel_call *body_call = nullptr;
const launch_config *cur_cfg = nullptr;
unsigned long launch_serial = 0;
bool in_launch = false;
std::map<const void *, int> dynamic_smem_limits;

/* A kernel's dynamic shared memory limit: its attribute, else 48 KiB. */
size_t dynamic_smem_limit(const void *kernel)
{
    auto limit = dynamic_smem_limits.find(kernel);
    return limit != dynamic_smem_limits.end() ? (size_t)limit->second : kSharedPerBlockDefault;
}

std::mt19937 rng;
#if FG_EMU_ASAN
const void *main_stack_bottom = nullptr;
size_t main_stack_size = 0;
#endif

enum class order_kind { forward, reverse, random };

order_kind run_order()
{
    static const order_kind k = [] {
        const char *v = getenv("FG_EMU_ORDER");
        if (v && strcmp(v, "reverse") == 0) return order_kind::reverse;
        if (v && strcmp(v, "random") == 0) return order_kind::random;
        if (v && *v && strcmp(v, "forward") != 0)
            note("FG_EMU_ORDER=%s is not forward, reverse or random: using forward", v);
        return order_kind::forward;
    }();
    return k;
}

size_t stack_bytes()
{
    static const size_t kb = (size_t)env_long("FG_EMU_STACK_KB", FG_EMU_ASAN ? 1024 : 256);
    return kb << 10;
}

/* Shared memory --------------------------------------------------------------------- */

constexpr size_t kSharedFront = 1024; /* guard before the dynamic part */
constexpr size_t kSharedGuard = 256;  /* after the dynamic part and after each static */
constexpr size_t kArenaBytes = kSharedFront + kSharedPerBlockOptin + 64 * 1024;
alignas(1024) unsigned char arena[kArenaBytes];

struct static_object {
    const void *tag;
    size_t offset, bytes;
};
struct {
    size_t dynamic_bytes; /* requested at launch */
    size_t next;          /* first free offset */
    size_t static_bytes;  /* sum of the static objects */
    size_t limit;         /* static + dynamic may not exceed it */
    std::vector<static_object> statics;
} shared;

unsigned char *dynamic_base() { return arena + kSharedFront; }

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

void reset_shared()
{
    shared.next = kSharedFront + round_up(shared.dynamic_bytes, 16) + kSharedGuard;
    shared.static_bytes = 0;
    shared.statics.clear();
    memset(arena, 0xff, shared.next);
    FG_EMU_POISON(arena, kArenaBytes);
    FG_EMU_UNPOISON(dynamic_base(), shared.dynamic_bytes);
}

bool fill_intact(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0xff) return false;
    return true;
}

void check_shared_guards()
{
    FG_EMU_UNPOISON(arena, kArenaBytes);
    const size_t dyn_end = kSharedFront + shared.dynamic_bytes;
    const size_t guard_end = kSharedFront + round_up(shared.dynamic_bytes, 16) + kSharedGuard;
    if (!fill_intact(arena, kSharedFront))
        fault("shared memory written before the start of the dynamic shared memory");
    if (!fill_intact(arena + dyn_end, guard_end - dyn_end))
        fault("shared memory written past the end of the %zu bytes of dynamic shared memory "
              "requested at launch",
              shared.dynamic_bytes);
    for (const static_object &s : shared.statics)
        if (!fill_intact(arena + s.offset + s.bytes, kSharedGuard))
            fault("shared memory written past the end of a %zu-byte __shared__ object", s.bytes);
}

bool in_shared(const void *p, size_t bytes)
{
    const unsigned char *c = static_cast<const unsigned char *>(p);
    if (c >= dynamic_base() && c + bytes <= dynamic_base() + shared.dynamic_bytes) return true;
    for (const static_object &s : shared.statics)
        if (c >= arena + s.offset && c + bytes <= arena + s.offset + s.bytes) return true;
    return false;
}

/* Fibers ------------------------------------------------------------------------------- */

void fiber_entry();

/* Apart, because getcontext returns twice (like setjmp). */
__attribute__((noinline)) void make_context(fiber *f)
{
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack_lo;
    f->uc.uc_stack.ss_size = f->stack_size;
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, fiber_entry, 0);
}

fiber *take_fiber()
{
    if (!fibers.idle.empty()) {
        fiber *f = fibers.idle.back();
        fibers.idle.pop_back();
        return f;
    }
    fiber *f = new fiber;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    f->stack_size = stack_bytes();
    void *mem = mmap(nullptr, f->stack_size + page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
        note("cannot map a %zu-byte fiber stack", f->stack_size);
        abort();
    }
    mprotect(mem, page, PROT_NONE); /* a stack overflow faults instead of corrupting */
    fibers.all.push_back(f);
    f->stack_lo = static_cast<char *>(mem) + page;
    make_context(f);
    return f;
}

/* Leaves the running fiber for `to`; returns when something switches back.
 * A fiber is entered the first time with setcontext, afterwards (like the
 * way back) with _longjmp; AddressSanitizer is told about every change of
 * stack, so it keeps checking the fiber stacks correctly. */
__attribute__((noinline)) void switch_to(fiber *to)
{
    fiber *from = running;
    running = to;
    cur = to->t;
    threadIdx = cur ? cur->tid : uint3{0, 0, 0};
#if FG_EMU_ASAN
    void *fake_stack = nullptr;
    if (to == &main_fiber)
        __sanitizer_start_switch_fiber(&fake_stack, main_stack_bottom, main_stack_size);
    else
        __sanitizer_start_switch_fiber(&fake_stack, to->stack_lo, to->stack_size);
#endif
    if (_setjmp(from->jb) == 0) {
        if (!to->started) {
            to->started = true;
            setcontext(&to->uc);
        }
        _longjmp(to->jb, 1);
    }
#if FG_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

void land_copies(emu_thread *t, long below_group)
{
    size_t keep = 0;
    for (size_t i = 0; i < t->copies.size(); i++) {
        const pending_copy &c = t->copies[i];
        if (c.group < below_group) {
            memcpy(c.dst, c.src, c.bytes - c.zfill);
            memset(static_cast<char *>(c.dst) + (c.bytes - c.zfill), 0, c.zfill);
        } else {
            t->copies[keep++] = c;
        }
    }
    t->copies.resize(keep);
}

/* Every fiber runs this forever: one CUDA thread after another. */
void fiber_entry()
{
#if FG_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &main_stack_bottom, &main_stack_size);
#endif
    for (;;) {
        emu_thread *t = running->t;
        body_call->run_thread();
        land_copies(t, 1L << 62); /* copies still in flight land, unread */
        sm90_thread_exit(t->linear);
        t->state = run_state::done;
        switch_to(&main_fiber);
    }
}

/* Waits (in a fiber) until the scheduler releases this thread. */
void block_here(run_state s, const char *file, int line)
{
    if (cur == nullptr) {
        note("a device-side barrier or warp collective was called outside a kernel (%s:%d)", file,
             line);
        abort();
    }
    cur->state = s;
    cur->file = file;
    cur->line = line;
    switch_to(&main_fiber);
}

/* Warp groups ---------------------------------------------------------------------------- */

const char *op_name(warp_collective op)
{
    switch (op) {
    case warp_barrier: return "__syncwarp";
    case shfl_idx: return "__shfl_sync";
    case shfl_up: return "__shfl_up_sync";
    case shfl_down: return "__shfl_down_sync";
    case shfl_xor: return "__shfl_xor_sync";
    case vote_ballot: return "__ballot_sync";
    case vote_any: return "__any_sync";
    case vote_all: return "__all_sync";
    }
    return "?";
}

/* The lane a shuffle of lane `lane` reads (itself when out of its segment). */
int shuffle_source(const emu_thread &t, int lane)
{
    const int w = t.width, seg = lane & ~(w - 1);
    switch (t.op) {
    case shfl_idx: return seg + (t.arg & (w - 1));
    case shfl_up: return (lane - seg) >= t.arg ? lane - t.arg : lane;
    case shfl_down: return (lane - seg) + t.arg < w ? lane + t.arg : lane;
    case shfl_xor: {
        const int src = lane ^ t.arg;
        return src >= seg + w ? lane : src;
    }
    default: return lane;
    }
}

/* Releases, in warp w, every group whose non-exited members all wait at a
 * warp op with the same mask and kind. */
bool release_warp(int w, int n)
{
    emu_thread *lanes = &threads[(size_t)w * 32];
    const int count = n - w * 32 < 32 ? n - w * 32 : 32;
    bool released = false;
    for (int l = 0; l < count; l++) {
        emu_thread &t = lanes[l];
        if (t.state != run_state::at_warp) continue;
        const unsigned m = t.mask;
        bool ready = true;
        for (int p = 0; p < count && ready; p++) {
            if (!(m >> p & 1) || lanes[p].state == run_state::done) continue;
            ready =
                lanes[p].state == run_state::at_warp && lanes[p].mask == m && lanes[p].op == t.op;
        }
        if (!ready) continue;
        unsigned votes = 0;
        for (int p = 0; p < count; p++)
            if (m >> p & 1 && lanes[p].state == run_state::at_warp && lanes[p].value != 0)
                votes |= 1u << p;
        for (int p = 0; p < count; p++) {
            emu_thread &q = lanes[p];
            if (!(m >> p & 1) || q.state != run_state::at_warp) continue;
            if (q.op == vote_ballot) q.result = votes;
            if (q.op == vote_any) q.result = votes != 0;
            if (q.op == vote_all) {
                unsigned members = 0;
                for (int r = 0; r < count; r++)
                    if (m >> r & 1 && lanes[r].state == run_state::at_warp) members |= 1u << r;
                q.result = votes == members;
            }
            if (q.op >= shfl_idx && q.op <= shfl_xor) {
                const int src = shuffle_source(q, p);
                if (src != p &&
                    (src >= count || !(m >> src & 1) || lanes[src].state != run_state::at_warp)) {
                    cur = &q;
                    fault("%s at %s:%d (mask 0x%08x) reads lane %d, which %s", op_name(q.op),
                          q.file, q.line, m, src,
                          src >= count      ? "does not exist (partial warp)"
                          : !(m >> src & 1) ? "is not in the mask"
                                            : "has exited");
                }
                q.result = lanes[src].value;
            }
        }
        for (int p = 0; p < count; p++)
            if (m >> p & 1 && lanes[p].state == run_state::at_warp)
                lanes[p].state = run_state::runnable;
        released = true;
    }
    return released;
}

/* Releases __syncthreads once every thread waits there. */
bool release_barrier(int n, int done)
{
    int waiting = 0;
    const emu_thread *first = nullptr;
    for (const emu_thread &t : threads) {
        if (t.state != run_state::at_barrier) continue;
        waiting++;
        if (!first) first = &t;
    }
    if (waiting == 0 || waiting + done < n) return false;
    if (done > 0) {
        cur = const_cast<emu_thread *>(first);
        fault("__syncthreads at %s:%d is waited for by %d threads while %d threads of the block "
              "have exited (undefined behaviour: every thread must reach it)",
              first->file, first->line, waiting, done);
    }
    for (const emu_thread &t : threads)
        if (t.file != first->file || t.line != first->line) {
            cur = const_cast<emu_thread *>(&t);
            fault("threads wait at different __syncthreads: %s:%d (thread %u) and %s:%d "
                  "(thread %u)",
                  first->file, first->line, first->tid.x, t.file, t.line, t.tid.x);
        }
    for (emu_thread &t : threads) t.state = run_state::runnable;
    return true;
}

/* Releases every warpgroup (128 consecutive threads) whose threads all wait
 * at the same warpgroup collective: its function runs once with the 128
 * arguments (in thread order), then the threads go on. A member that has
 * exited or waits at another collective while the rest are there is
 * undefined behaviour on the GPU (.sync.aligned): reported. */
bool release_groups(int n)
{
    bool released = false;
    for (int g = 0; g * 128 < n; g++) {
        emu_thread *m = &threads[(size_t)g * 128];
        const int count = n - g * 128 < 128 ? n - g * 128 : 128;
        int at = 0, done = 0;
        const emu_thread *first = nullptr;
        for (int i = 0; i < count; i++) {
            if (m[i].state == run_state::at_group) {
                at++;
                if (!first) first = &m[i];
            }
            if (m[i].state == run_state::done) done++;
        }
        if (at == 0) continue;
        if (count < 128) {
            cur = const_cast<emu_thread *>(first);
            fault("%s at %s:%d: warpgroup %d has only %d threads (a warpgroup collective needs "
                  "128: make the block a multiple of 128 threads)",
                  first->what, first->file, first->line, g, count);
        }
        if (at + done < 128) continue;
        if (done > 0) {
            cur = const_cast<emu_thread *>(first);
            fault("%s at %s:%d is waited for by %d threads of warpgroup %d while %d have exited "
                  "(every thread of the warpgroup must execute it)",
                  first->what, first->file, first->line, at, g, done);
        }
        for (int i = 0; i < 128; i++)
            if (m[i].file != first->file || m[i].line != first->line ||
                m[i].group_fn != first->group_fn) {
                cur = &m[i];
                fault("threads of warpgroup %d wait at different warpgroup collectives: %s at "
                      "%s:%d (thread %d) and %s at %s:%d (thread %d)",
                      g, first->what, first->file, first->line, first->linear, m[i].what,
                      m[i].file, m[i].line, m[i].linear);
            }
        void *args[128];
        for (int i = 0; i < 128; i++) args[i] = m[i].group_arg;
        first->group_fn(args);
        for (int i = 0; i < 128; i++) m[i].state = run_state::runnable;
        released = true;
    }
    return released;
}

[[noreturn]] void deadlock(int n)
{
    fprintf(stderr, "fgi_emu: deadlock in kernel %s: no thread of block (%u,%u,%u) can go on\n",
            cur_cfg->name, blockIdx.x, blockIdx.y, blockIdx.z);
    int shown = 0;
    for (int i = 0; i < n && shown < 12; i++) {
        const emu_thread &t = threads[i];
        if (t.state == run_state::done) continue;
        const bool warp = t.state == run_state::at_warp;
        const bool other = t.state == run_state::at_event || t.state == run_state::at_group;
        fprintf(stderr, "fgi_emu:   thread %d (lane %d): %s%s at %s:%d", i, i % 32,
                warp ? op_name(t.op) : other ? t.what : "__syncthreads", "", t.file, t.line);
        if (warp) fprintf(stderr, " mask 0x%08x", t.mask);
        fputc('\n', stderr);
        shown++;
    }
    cur = nullptr;
    fault("deadlock: divergent barrier or warp collective");
}

/* 0 .. n-1 in the order FG_EMU_ORDER asks for (random: a fresh shuffle). */
const std::vector<int> &ordered(int n, std::vector<int> &buf)
{
    buf.resize((size_t)n);
    std::iota(buf.begin(), buf.end(), 0);
    if (run_order() == order_kind::reverse) std::reverse(buf.begin(), buf.end());
    if (run_order() == order_kind::random) std::shuffle(buf.begin(), buf.end(), rng);
    return buf;
}

/* Runs each runnable thread of [first, first + count) once, in order; the
 * finished ones give their fiber back. Returns whether any thread ran. */
bool run_threads(int first, int count, int &done)
{
    static std::vector<int> buf;
    bool ran = false;
    for (int k : ordered(count, buf)) {
        emu_thread &t = threads[(size_t)(first + k)];
        if (t.state == run_state::unstarted) {
            t.f = take_fiber();
            t.f->t = &t;
            t.state = run_state::runnable;
        }
        if (t.state != run_state::runnable) continue;
        switch_to(t.f);
        ran = true;
        if (t.state == run_state::done) {
            t.f->t = nullptr;
            fibers.idle.push_back(t.f);
            t.f = nullptr;
            done++;
        }
    }
    cur = nullptr;
    threadIdx = {0, 0, 0};
    return ran;
}

/* FG_EMU_SCHEDULE=warp (default): between two block barriers, one warp runs
 * as far as it can (through its warp collectives) before the next starts,
 * so a warp that races ahead of another is modelled; lockstep: every thread
 * advances one step (to its next barrier or collective) per round. */
bool lockstep_schedule()
{
    static const bool lockstep = [] {
        const char *v = getenv("FG_EMU_SCHEDULE");
        if (v && *v && strcmp(v, "lockstep") != 0 && strcmp(v, "warp") != 0)
            note("FG_EMU_SCHEDULE=%s is not warp or lockstep: using warp", v);
        return v && strcmp(v, "lockstep") == 0;
    }();
    return lockstep;
}

void run_block(int n)
{
    for (int i = 0; i < n; i++) {
        emu_thread &t = threads[(size_t)i];
        t.tid = {(unsigned)i % blockDim.x, (unsigned)i / blockDim.x % blockDim.y,
                 (unsigned)i / (blockDim.x * blockDim.y)};
        t.linear = i;
        t.state = run_state::unstarted;
        t.f = nullptr;
        t.file = "";
        t.line = 0;
        t.copies.clear();
        t.commits = 0;
        t.key = nullptr;
        t.what = "";
        t.group_fn = nullptr;
        t.group_arg = nullptr;
    }
    reset_shared();
    sm90_block_begin(n);
    const int warps = (n + 31) / 32;
    std::vector<int> warp_buf;
    int done = 0;
    for (;;) {
        bool progress = false;
        if (lockstep_schedule()) {
            progress = run_threads(0, n, done);
            for (int w = 0; w < warps; w++) progress = release_warp(w, n) || progress;
            progress = release_groups(n) || progress;
        } else {
            for (int w : ordered(warps, warp_buf)) {
                const int count = n - w * 32 < 32 ? n - w * 32 : 32;
                for (;;) {
                    const bool ran = run_threads(w * 32, count, done);
                    const bool released = release_warp(w, n);
                    progress = progress || ran || released;
                    if (!released) break;
                }
            }
            progress = release_groups(n) || progress;
        }
        if (done == n) break;
        progress = release_barrier(n, done) || progress;
        if (!progress) deadlock(n);
    }
    sm90_block_end();
    check_shared_guards();
}

/* Block number b of the grid in the order FG_EMU_ORDER asks for. */
struct block_walk {
    unsigned long long total, start = 0, stride = 1;
    explicit block_walk(unsigned long long n) : total(n)
    {
        if (run_order() == order_kind::random && n > 1) {
            start = rng() % n;
            do stride = 1 + rng() % n;
            while (std::gcd(stride, n) != 1);
        }
    }
    unsigned long long at(unsigned long long i) const
    {
        if (run_order() == order_kind::reverse) return total - 1 - i;
        return (unsigned long long)((start + (unsigned __int128)i * stride) % total);
    }
};

} // namespace

bool in_kernel() { return cur != nullptr; }

void fault(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote("device fault: ", fmt, ap);
    va_end(ap);
    if (in_launch)
        fprintf(stderr,
                "fgi_emu:   in kernel %s (launch #%lu, grid (%u,%u,%u), block (%u,%u,%u)), "
                "block (%u,%u,%u)",
                cur_cfg->name, launch_serial, gridDim.x, gridDim.y, gridDim.z, blockDim.x,
                blockDim.y, blockDim.z, blockIdx.x, blockIdx.y, blockIdx.z);
    if (in_launch && cur)
        fprintf(stderr, ", thread (%u,%u,%u)", cur->tid.x, cur->tid.y, cur->tid.z);
    if (in_launch) fputc('\n', stderr);
    fflush(stderr);
    abort();
}

/* Device-side entry points ---------------------------------------------------------------- */

void sync_threads(const char *file, int line) { block_here(run_state::at_barrier, file, line); }

void sync_warp(unsigned mask, const char *file, int line)
{
    (void)warp_collective_op(warp_barrier, mask, 0, 0, 32, file, line);
}

uint64_t warp_collective_op(warp_collective kind, unsigned mask, uint64_t value, int arg, int width,
                            const char *file, int line)
{
    if (cur == nullptr) block_here(run_state::at_warp, file, line); /* reports */
    const int lane = cur->linear % 32;
    if (!(mask >> lane & 1))
        fault("%s at %s:%d: lane %d calls it with mask 0x%08x, which does not include it",
              op_name(kind), file, line, lane, mask);
    if (width < 1 || width > 32 || (width & (width - 1)) != 0)
        fault("%s at %s:%d: width %d is not a power of two up to 32", op_name(kind), file, line,
              width);
    cur->op = kind;
    cur->mask = mask;
    cur->value = value;
    cur->arg = arg;
    cur->width = width;
    block_here(run_state::at_warp, file, line);
    return cur->result;
}

unsigned active_mask()
{
    if (cur == nullptr) return 0;
    const int w = cur->linear / 32, n = (int)threads.size();
    unsigned m = 0;
    for (int l = 0; l < 32 && w * 32 + l < n; l++)
        if (threads[(size_t)w * 32 + l].state != run_state::done) m |= 1u << l;
    return m;
}

void block_on(const void *key, const char *what, const char *file, int line)
{
    if (cur == nullptr) block_here(run_state::at_event, file, line); /* reports */
    cur->key = key;
    cur->what = what;
    block_here(run_state::at_event, file, line);
}

void wake(const void *key)
{
    for (emu_thread &t : threads)
        if (t.state == run_state::at_event && t.key == key) t.state = run_state::runnable;
}

void warpgroup_collective(void (*fn)(void *const *args), void *arg, const char *what,
                          const char *file, int line)
{
    if (cur == nullptr) block_here(run_state::at_group, file, line); /* reports */
    cur->group_fn = fn;
    cur->group_arg = arg;
    cur->what = what;
    block_here(run_state::at_group, file, line);
}

int current_thread()
{
    if (cur == nullptr) fault("device-side Hopper operation outside a kernel");
    return cur->linear;
}

int block_thread_count() { return (int)threads.size(); }

unsigned char *shared_window() { return arena; }

bool shared_range_ok(const void *p, size_t bytes) { return in_shared(p, bytes); }

void *dynamic_shared_base()
{
    if (cur == nullptr) fault("dynamic shared memory used outside a kernel");
    return dynamic_base();
}

void *static_shared_alloc(const void *tag, size_t bytes, size_t align)
{
    if (cur == nullptr) fault("a __shared__ object used outside a kernel");
    for (const static_object &s : shared.statics)
        if (s.tag == tag) return arena + s.offset;
    const size_t offset = round_up(shared.next, align < 16 ? 16 : align);
    if (shared.static_bytes + bytes + shared.dynamic_bytes > shared.limit ||
        offset + bytes + kSharedGuard > kArenaBytes)
        fault("%zu bytes of static __shared__ objects plus %zu bytes of dynamic shared memory "
              "exceed the %zu bytes this launch may use (the launch would fail)",
              shared.static_bytes + bytes, shared.dynamic_bytes, shared.limit);
    FG_EMU_UNPOISON(arena + offset, bytes + kSharedGuard);
    memset(arena + offset, 0xff, bytes + kSharedGuard);
    FG_EMU_POISON(arena + offset + bytes, kSharedGuard);
    shared.statics.push_back({tag, offset, bytes});
    shared.static_bytes += bytes;
    shared.next = offset + bytes + kSharedGuard;
    return arena + offset;
}

void async_copy(void *dst, const void *src, size_t bytes, size_t zfill)
{
    if (cur == nullptr) fault("__pipeline_memcpy_async outside a kernel");
    if (bytes != 4 && bytes != 8 && bytes != 16)
        fault("__pipeline_memcpy_async of %zu bytes (must be 4, 8 or 16)", bytes);
    if (zfill > bytes) fault("__pipeline_memcpy_async: zfill %zu > size %zu", zfill, bytes);
    if ((uintptr_t)dst % bytes != 0)
        fault("__pipeline_memcpy_async: destination %p not aligned to %zu bytes", dst, bytes);
    if (!in_shared(dst, bytes))
        fault("__pipeline_memcpy_async: destination %p (%zu bytes) is not inside this block's "
              "shared memory",
              dst, bytes);
    if (bytes > zfill)
        check_global_read(src, bytes - zfill, bytes, "__pipeline_memcpy_async source");
    memset(dst, 0xff, bytes); /* undefined until the wait: NaN */
    cur->copies.push_back({dst, src, bytes, zfill, cur->commits});
}

void async_commit()
{
    if (cur == nullptr) fault("__pipeline_commit outside a kernel");
    cur->commits++;
}

void async_wait_prior(size_t groups)
{
    if (cur == nullptr) fault("__pipeline_wait_prior outside a kernel");
    land_copies(cur, cur->commits - (long)groups);
}

/* Launches ------------------------------------------------------------------------------------ */

cudaError_t set_dynamic_smem_limit(const void *kernel, int bytes)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!device_present()) return record_error(cudaErrorNoDevice);
    if (kernel == nullptr) return record_error(cudaErrorInvalidValue); /* real: invalid function */
    if (bytes < 0 || (size_t)bytes > kSharedPerBlockOptin) {
        note("cudaFuncSetAttribute: MaxDynamicSharedMemorySize %d is outside [0, %zu]", bytes,
             kSharedPerBlockOptin);
        return record_error(cudaErrorInvalidValue);
    }
    dynamic_smem_limits[kernel] = bytes;
    return cudaSuccess;
}

/* Resident blocks per SM by threads (2048) and shared memory (the bytes
 * plus 1 KiB reserved per block) only: registers are not modelled. */
cudaError_t occupancy(int *blocks, const void *kernel, int block_size, size_t smem)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (!device_present()) return record_error(cudaErrorNoDevice);
    if (blocks == nullptr || kernel == nullptr || block_size < 1 || block_size > 1024)
        return record_error(cudaErrorInvalidValue);
    if (smem > dynamic_smem_limit(kernel)) {
        *blocks = 0;
        return cudaSuccess;
    }
    const size_t by_smem = kSharedPerSM / (smem + 1024);
    const size_t by_threads = 2048 / (size_t)block_size;
    *blocks = (int)std::min<size_t>({by_smem, by_threads, 32});
    return cudaSuccess;
}

void check_kernel_argument(const launch_config &cfg, int index, const void *p)
{
    if (p == nullptr) return;
    const pointer_kind k = classify_pointer(p);
    if (k == device_pointer) return;
    note("kernel %s: argument %d (%p) %s", cfg.name, index, p,
         k == freed_pointer ? "points into freed device memory" : "is not device memory");
    abort();
}

namespace {

/* The checks of a launch (as the GPU answers them at the launch call). */
cudaError_t check_launch(const launch_config &cfg, const void *kernel)
{
    if (!valid_stream(cfg.stream)) {
        note("launch of %s: invalid stream handle %p", cfg.name, (void *)cfg.stream);
        return cudaErrorInvalidResourceHandle;
    }
    const dim3 g = cfg.grid, b = cfg.block;
    const unsigned long long n = (unsigned long long)b.x * b.y * b.z;
    if (b.x < 1 || b.y < 1 || b.z < 1 || b.x > 1024 || b.y > 1024 || b.z > 64 || n > 1024 ||
        g.x < 1 || g.y < 1 || g.z < 1 || g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) {
        note("launch of %s: invalid configuration: grid (%u,%u,%u), block (%u,%u,%u)", cfg.name,
             g.x, g.y, g.z, b.x, b.y, b.z);
        return cudaErrorInvalidConfiguration;
    }
    const size_t dyn_limit = dynamic_smem_limit(kernel);
    if (cfg.smem > dyn_limit) {
        note("launch of %s: %zu bytes of dynamic shared memory > the kernel's limit of %zu "
             "(cudaFuncAttributeMaxDynamicSharedMemorySize)",
             cfg.name, cfg.smem, dyn_limit);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

/* Checks the launch and its arguments, then runs every block. */
cudaError_t run_launch(const launch_config &cfg, const kernel_call &call)
{
    const void *kernel = call.kernel();
    const cudaError_t err = check_launch(cfg, kernel);
    if (err != cudaSuccess) return err;
    call.check_arguments(cfg);
    static const bool trace = env_long("FG_EMU_TRACE", 0) != 0;
    static const bool seeded = [] {
        rng.seed((unsigned)env_long("FG_EMU_SEED", 12345));
        return true;
    }();
    (void)seeded;
    const dim3 g = cfg.grid, b = cfg.block;
    const unsigned long long n = (unsigned long long)b.x * b.y * b.z;
    launch_serial++;
    if (trace)
        fprintf(stderr, "fgi_emu: launch #%lu %s grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n",
                launch_serial, cfg.name, g.x, g.y, g.z, b.x, b.y, b.z, cfg.smem);

    in_launch = true;
    main_fiber.started = true; /* the host thread: always resumed by _longjmp */
    cur_cfg = &cfg;
    body_call = &call;
    blockDim = b;
    gridDim = g;
    shared.dynamic_bytes = cfg.smem;
    shared.limit = dynamic_smem_limits.count(kernel) ? kSharedPerBlockOptin : kSharedPerBlockDefault;
    threads.resize((size_t)n);
    const unsigned long long blocks = (unsigned long long)g.x * g.y * g.z;
    const block_walk walk(blocks);
    for (unsigned long long i = 0; i < blocks; i++) {
        const unsigned long long id = walk.at(i);
        blockIdx = {(unsigned)(id % g.x), (unsigned)(id / g.x % g.y), (unsigned)(id / g.x / g.y)};
        run_block((int)n);
    }
    FG_EMU_UNPOISON(arena, kArenaBytes);
    in_launch = false;
    cur_cfg = nullptr;
    body_call = nullptr;
    char when[160];
    snprintf(when, sizeof when, "after kernel %s (launch #%lu)", cfg.name, launch_serial);
    check_all_guards(when);
    return cudaSuccess;
}

} // namespace

cudaError_t launch(const launch_config &cfg, std::shared_ptr<const kernel_call> call)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    if (in_launch) fault("a kernel launch from device code (dynamic parallelism) is not emulated");
    if (!device_present()) return record_error(cudaErrorNoDevice);
    if (!valid_stream(cfg.stream)) return record_error(check_launch(cfg, call->kernel()));
    bool record = false;
    cudaError_t err = capture_gate(cfg.name, cfg.stream, &record);
    if (err != cudaSuccess) return record_error(err);
    if (!record) return record_error(run_launch(cfg, *call));
    /* a kernel node: checked now as a launch is, and again at every replay */
    err = check_launch(cfg, call->kernel());
    if (err != cudaSuccess) return record_error(err);
    call->check_arguments(cfg);
    capture_record(cfg.stream, [cfg, call](cudaStream_t stream) {
        launch_config at = cfg;
        at.stream = stream;
        return run_launch(at, *call);
    });
    return cudaSuccess;
}

} // namespace fgi_emu
