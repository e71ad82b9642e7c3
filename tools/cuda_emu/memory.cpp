/* fgi_emu device memory: host memory laid out so that misuse shows.
 *
 * Every allocation is [front guard | user bytes | back guard], the user
 * pointer 256-byte aligned as cudaMalloc's. New memory and the guards are
 * filled with 0xff bytes (NaN as float), so reading memory nobody wrote gives
 * NaN. The guards are checked after every kernel, on free and at exit; a
 * freed block is refilled with 0xff and kept in a quarantine (default 256
 * MiB, FG_EMU_QUARANTINE_MB) so that a stale pointer neither reaches new data
 * nor goes unnoticed: kernel arguments, copies and __ldg / cp.async reads
 * into it are faults, and a write into it is found when it leaves the
 * quarantine. Under AddressSanitizer the guards and freed blocks are also
 * poisoned, so any access to them is reported where it happens. */
#include "emu_internal.h"

#include <stdio.h>
#include <stdlib.h>

#include <deque>
#include <map>

namespace fgi_emu {
namespace {

constexpr size_t kAlign = 256;
constexpr size_t kFrontGuard = 256;
constexpr size_t kBackGuardMin = 256;
constexpr unsigned char kFill = 0xff;

struct block {
    char *raw;
    size_t raw_bytes;
    char *user;
    size_t bytes;
    unsigned long serial; /* allocation number, for messages */
    bool freed;
};

struct registry {
    std::map<uintptr_t, block> blocks; /* live and quarantined, by user address */
    std::deque<uintptr_t> quarantine;  /* oldest first */
    size_t quarantine_bytes = 0;
    size_t live_bytes = 0;
    size_t live_count = 0;
    size_t peak_live = 0; /* most live_bytes since the last reset */
    size_t held = 0;      /* host bytes of live and quarantined blocks, guards included */
    size_t peak_held = 0;
    unsigned long serial = 0;
    const block *last_hit = nullptr; /* fast path of check_global_read */
    ~registry();
};

registry &reg()
{
    static registry r;
    return r;
}

size_t limit_bytes()
{
    static const size_t mb = (size_t)env_long("FG_EMU_DEVICE_MB", 8192);
    return mb << 20;
}

size_t quarantine_limit()
{
    static const size_t mb = (size_t)env_long("FG_EMU_QUARANTINE_MB", 256);
    return mb << 20;
}

/* The block whose user range [user, user + bytes] holds p (the end
 * included, so that an end pointer belongs to its block), or NULL. */
const block *find(const void *p)
{
    registry &r = reg();
    const uintptr_t a = (uintptr_t)p;
    auto it = r.blocks.upper_bound(a);
    if (it == r.blocks.begin()) return nullptr;
    --it;
    const block &b = it->second;
    return a <= (uintptr_t)b.user + b.bytes ? &b : nullptr;
}

bool all_fill(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] != kFill) return false;
    return true;
}

/* The guards of b; reports (and returns false) when one was overwritten. */
bool guards_intact(const block &b, const char *when)
{
    const char *back = b.user + b.bytes, *end = b.raw + b.raw_bytes;
    FG_EMU_UNPOISON(b.raw, kFrontGuard);
    FG_EMU_UNPOISON(back, (size_t)(end - back));
    const bool front_ok = all_fill(b.raw, kFrontGuard);
    const bool back_ok = all_fill(back, (size_t)(end - back));
    FG_EMU_POISON(b.raw, kFrontGuard);
    FG_EMU_POISON(back, (size_t)(end - back));
    if (front_ok && back_ok) return true;
    size_t at = 0;
    if (!back_ok)
        while ((unsigned char)back[at] == kFill) at++;
    fprintf(stderr,
            "fgi_emu: %s: device allocation #%lu (%zu bytes at %p) was written %s "
            "(found %s)\n",
            when, b.serial, b.bytes, (void *)b.user, back_ok ? "before its start" : "past its end",
            back_ok ? "in the front guard" : "in the back guard");
    if (!back_ok) fprintf(stderr, "fgi_emu:   first overwritten byte: %zu past the end\n", at);
    return false;
}

void release(const block &b)
{
    FG_EMU_UNPOISON(b.raw, b.raw_bytes);
    free(b.raw);
}

/* Drops the oldest quarantined blocks beyond the limit, checking that
 * nothing wrote to them after they were freed. */
void trim_quarantine(size_t limit)
{
    registry &r = reg();
    while (r.quarantine_bytes > limit && !r.quarantine.empty()) {
        auto it = r.blocks.find(r.quarantine.front());
        r.quarantine.pop_front();
        const block b = it->second;
        FG_EMU_UNPOISON(b.raw, b.raw_bytes);
        if (!all_fill(b.raw, b.raw_bytes)) {
            fprintf(stderr,
                    "fgi_emu: device allocation #%lu (%zu bytes at %p) was written after "
                    "cudaFree\n",
                    b.serial, b.bytes, (void *)b.user);
            abort();
        }
        if (r.last_hit == &it->second) r.last_hit = nullptr;
        r.blocks.erase(it);
        r.quarantine_bytes -= b.raw_bytes;
        r.held -= b.raw_bytes;
        release(b);
    }
}

registry::~registry()
{
    /* at exit: report what was never freed, check what remains */
    if (live_count > 0 && env_long("FG_EMU_REPORT_LEAKS", 1))
        fprintf(stderr, "fgi_emu: %zu device allocation(s), %zu bytes, never freed\n", live_count,
                live_bytes);
    for (auto &kv : blocks)
        if (!kv.second.freed) guards_intact(kv.second, "at exit");
    trim_quarantine(0);
}

} // namespace

size_t device_bytes_total() { return limit_bytes(); }
size_t device_bytes_used() { return reg().live_bytes; }

cudaError_t device_alloc(void **ptr, size_t bytes, const char *fn)
{
    registry &r = reg();
    if (ptr == nullptr) return cudaErrorInvalidValue;
    *ptr = nullptr;
    if (bytes == 0) return cudaSuccess; /* as cudaMalloc: success, NULL */
    if (bytes > limit_bytes() || r.live_bytes > limit_bytes() - bytes)
        return cudaErrorMemoryAllocation;
    const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    const size_t back =
        rounded - bytes < kBackGuardMin ? rounded - bytes + kAlign : rounded - bytes;
    const size_t raw_bytes = kFrontGuard + bytes + back;
    char *raw = static_cast<char *>(aligned_alloc(kAlign, raw_bytes));
    if (raw == nullptr) return cudaErrorMemoryAllocation;
    memset(raw, kFill, raw_bytes);
    block b = {raw, raw_bytes, raw + kFrontGuard, bytes, ++r.serial, false};
    FG_EMU_POISON(raw, kFrontGuard);
    FG_EMU_POISON(b.user + bytes, back);
    r.blocks[(uintptr_t)b.user] = b;
    r.live_bytes += bytes;
    r.live_count++;
    r.held += raw_bytes;
    if (r.live_bytes > r.peak_live) r.peak_live = r.live_bytes;
    if (r.held > r.peak_held) r.peak_held = r.held;
    (void)fn;
    *ptr = b.user;
    return cudaSuccess;
}

cudaError_t device_free(void *ptr, const char *fn)
{
    registry &r = reg();
    if (ptr == nullptr) return cudaSuccess;
    auto it = r.blocks.find((uintptr_t)ptr);
    if (it == r.blocks.end() || it->second.freed) {
        const block *b = find(ptr);
        if (it != r.blocks.end())
            note("%s(%p): device allocation #%lu was already freed", fn, ptr, it->second.serial);
        else if (b != nullptr)
            note("%s(%p): not the start of a device allocation (inside #%lu at %p)", fn, ptr,
                 b->serial, (void *)b->user);
        else
            note("%s(%p): not a device allocation", fn, ptr);
        return cudaErrorInvalidValue;
    }
    block &b = it->second;
    if (!guards_intact(b, fn)) abort();
    memset(b.user, kFill, b.bytes);
    FG_EMU_POISON(b.raw, b.raw_bytes);
    b.freed = true;
    r.live_bytes -= b.bytes;
    r.live_count--;
    r.quarantine.push_back(it->first);
    r.quarantine_bytes += b.raw_bytes;
    trim_quarantine(quarantine_limit());
    return cudaSuccess;
}

bool device_range_ok(const void *p, size_t bytes, const char *fn, const char *what)
{
    const block *b = find(p);
    if (b == nullptr) {
        note("%s: %s %p is not device memory", fn, what, p);
        return false;
    }
    if (b->freed) {
        note("%s: %s %p points into device allocation #%lu, which was freed", fn, what, p,
             b->serial);
        return false;
    }
    const size_t offset = (size_t)((const char *)p - b->user);
    if (bytes > b->bytes - offset) {
        note("%s: %s: %zu bytes at offset %zu run past the end of device allocation #%lu "
             "(%zu bytes)",
             fn, what, bytes, offset, b->serial, b->bytes);
        return false;
    }
    return true;
}

void check_all_guards(const char *when)
{
    bool ok = true;
    for (auto &kv : reg().blocks)
        if (!kv.second.freed) ok = guards_intact(kv.second, when) && ok;
    if (!ok) abort();
}

pointer_kind classify_pointer(const void *p)
{
    std::lock_guard<std::recursive_mutex> lock(api_lock());
    const block *b = find(p);
    return b == nullptr ? host_pointer : b->freed ? freed_pointer : device_pointer;
}

/* Called for every __ldg and cp.async source, so the last block found is
 * tried first. Runs inside a launch, which holds the API lock. */
void check_global_read(const void *p, size_t bytes, size_t align, const char *what)
{
    if ((uintptr_t)p % align != 0)
        fault("%s of %zu bytes from %p: address not aligned to %zu bytes", what, bytes, p, align);
    registry &r = reg();
    const block *b = r.last_hit;
    const char *c = static_cast<const char *>(p);
    if (b == nullptr || c < b->user || c + bytes > b->user + b->bytes || b->freed) {
        b = find(p);
        if (b == nullptr) fault("%s of %zu bytes from %p: not device memory", what, bytes, p);
        if (b->freed)
            fault("%s of %zu bytes from %p: device allocation #%lu was freed", what, bytes, p,
                  b->serial);
        if (c + bytes > b->user + b->bytes)
            fault("%s of %zu bytes from %p: past the end of device allocation #%lu (%zu bytes "
                  "at %p, offset %zu)",
                  what, bytes, p, b->serial, b->bytes, (void *)b->user, (size_t)(c - b->user));
        r.last_hit = b;
    }
}

} // namespace fgi_emu

/* Test hooks (tests/support/internal.h): how much device memory the
 * program holds and held at most, so that a test can tell the host memory
 * a load used apart from the emulated card's. */
extern "C" void fgi_emu_device_memory(size_t *live, size_t *peak, size_t *host_peak)
{
    fgi_emu::registry &r = fgi_emu::reg();
    if (live) *live = r.live_bytes;
    if (peak) *peak = r.peak_live;
    if (host_peak) *host_peak = r.peak_held;
}

extern "C" void fgi_emu_device_reset_peak(void)
{
    fgi_emu::registry &r = fgi_emu::reg();
    r.peak_live = r.live_bytes;
    r.peak_held = r.held;
}
