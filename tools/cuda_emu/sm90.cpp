/* fgi_emu's Hopper (sm_90a) pieces: named barriers with a thread count,
 * mbarriers with transaction counts, TMA tiled tensor loads, and
 * wgmma.mma_async m64nNk16 (bf16 / f16 -> f32) with its matrix descriptors.
 *
 * Conventions: shared addresses are offsets in the block's shared window
 * (scheduler.cpp's arena, 1024-aligned), so a swizzle computed on address
 * bits lands on the same bytes as on the GPU. Misuse the hardware leaves
 * undefined (or that would hang it) stops the run with fault().
 * Design: blocking waits park the fiber (block_on / wake); a wgmma is a
 * warpgroup collective whose result is parked per thread until its
 * wgmma.wait_group (the accumulators read NaN meanwhile); a TMA copy
 * poisons its destination and lands when its mbarrier phase completes. */
#include "emu_internal.h"

extern "C" float fgi_f16_to_f32(uint16_t h); /* host/core/half.c */

#include <map>
#include <vector>

namespace fgi_emu {
namespace {

constexpr uint32_t kMapMagic = 0x54e5a90u;

/* Named barriers (1-15; 0 is __syncthreads). */
struct named_state {
    int arrived = 0, count = 0;
    const char *file = "";
    int line = 0;
};
named_state named[16];

/* A copy that lands when its mbarrier's phase completes. */
struct landing {
    unsigned char *dst;
    std::vector<unsigned char> bytes;
};
struct mbar_state {
    unsigned count = 0, pending = 0, phase = 0;
    long long tx = 0; /* announced bytes not yet delivered (may dip below 0) */
    std::vector<landing> copies;
};
std::map<const void *, mbar_state> mbars;

/* wgmma: each thread's operation and A registers while the warpgroup
 * gathers, and its results in flight. */
struct acc_pending {
    float *d;
    std::vector<float> v;
    long group;
};
struct wg_thread {
    wgmma_op op;
    uint32_t a[4];
    std::vector<acc_pending> pending;
    long commits = 0;
};
std::vector<wg_thread> wg;

mbar_state &mbar_of(const void *bar, const char *what, const char *file, int line)
{
    auto it = mbars.find(bar);
    if (it == mbars.end())
        fault("%s at %s:%d: %p is not an initialised mbarrier of this block (mbarrier.init "
              "first)",
              what, file, line, bar);
    return it->second;
}

void complete_if_done(const void *bar, mbar_state &m)
{
    if (m.pending != 0) return;
    if (m.tx < 0)
        fault("mbarrier at shared address %u: %lld bytes more were delivered than "
              "arrive.expect_tx announced (the phase would never complete)",
              (unsigned)(static_cast<const unsigned char *>(bar) - shared_window()), -m.tx);
    if (m.tx > 0) return;
    for (landing &c : m.copies) memcpy(c.dst, c.bytes.data(), c.bytes.size());
    m.copies.clear();
    m.phase ^= 1u;
    m.pending = m.count;
    wake(bar);
}

/* The swizzled shared address of logical address a (mode: descriptor
 * layout type 1 = 128B, 2 = 64B, 3 = 32B; 0 = none): bits 4.. of the
 * 16-byte chunk XOR bits 7.. of the 128-byte row, as many as the span has. */
unsigned swizzle(unsigned a, int mode)
{
    const unsigned bits = mode == 1 ? 7u : mode == 2 ? 3u : mode == 3 ? 1u : 0u;
    return a ^ (((a >> 7) & bits) << 4);
}

float read16(unsigned addr, int bf16)
{
    if (addr % 2 != 0 || !shared_range_ok(shared_window() + addr, 2))
        fault("wgmma: a matrix descriptor addresses shared address %u, outside this block's "
              "shared memory (or misaligned)",
              addr);
    uint16_t h;
    memcpy(&h, shared_window() + addr, 2);
    if (bf16) {
        const uint32_t b = (uint32_t)h << 16;
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    return fgi_f16_to_f32(h);
}

/* Element (mn, k) (k < 16) of a wgmma operand described by desc, as the
 * PTX ISA's matrix descriptor and canonical layouts define it: start, LBO
 * and SBO are bits 0-13, 16-29, 32-45 (>> 4), the layout type bits 62-63.
 * K-major (mn_major = 0), swizzle span W bytes: rows of W bytes, 8 rows
 * per group, groups SBO apart, k contiguous in the row (LBO unused);
 * without swizzle: 8x8 core matrices of 16-byte rows, SBO between core
 * matrices along MN and LBO along K. MN-major: W / 2 MN-elements per row,
 * 8 K-rows W apart, K-groups of 8 SBO apart, MN-blocks LBO apart; without
 * swizzle, MN-core matrices SBO apart and K-core matrices LBO apart. */
float operand(uint64_t desc, int mn, int k, int mn_major, int bf16)
{
    const unsigned start = (unsigned)(desc & 0x3fffu) << 4;
    const unsigned lbo = (unsigned)(desc >> 16 & 0x3fffu) << 4;
    const unsigned sbo = (unsigned)(desc >> 32 & 0x3fffu) << 4;
    const unsigned base_offset = (unsigned)(desc >> 49 & 7u);
    const int mode = (int)(desc >> 62);
    if (base_offset != 0)
        fault("wgmma: descriptor base offset %u is not modelled (align the operand to its "
              "swizzle pattern and use 0)",
              base_offset);
    const unsigned w = mode == 1 ? 128u : mode == 2 ? 64u : mode == 3 ? 32u : 0u;
    unsigned a;
    if (!mn_major) {
        if (w)
            a = start + (unsigned)(mn / 8) * sbo + (unsigned)(mn % 8) * w + (unsigned)k * 2;
        else
            a = start + (unsigned)(mn / 8) * sbo + (unsigned)(mn % 8) * 16 +
                (unsigned)(k / 8) * lbo + (unsigned)(k % 8) * 2;
    } else {
        if (w) {
            const unsigned per_row = w / 2;
            a = start + (unsigned)mn / per_row * lbo + (unsigned)mn % per_row * 2 +
                (unsigned)(k / 8) * sbo + (unsigned)(k % 8) * w;
        } else {
            a = start + (unsigned)(mn / 8) * sbo + (unsigned)(mn % 8) * 2 +
                (unsigned)(k / 8) * lbo + (unsigned)(k % 8) * 16;
        }
    }
    return read16(swizzle(a, mode), bf16);
}

float reg_half(uint32_t r, int hi, int bf16)
{
    const uint16_t h = (uint16_t)(hi ? r >> 16 : r & 0xffffu);
    if (bf16) {
        const uint32_t b = (uint32_t)h << 16;
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    return fgi_f16_to_f32(h);
}

/* One m64nNk16 for the 128 threads of a warpgroup (args: their wg_thread). */
void run_wgmma(void *const *args)
{
    const wg_thread *t0 = static_cast<const wg_thread *>(args[0]);
    const wgmma_op &o = t0->op;
    for (int i = 1; i < 128; i++) {
        const wgmma_op &p = static_cast<const wg_thread *>(args[i])->op;
        if (p.n != o.n || p.bf16 != o.bf16 || (p.a == nullptr) != (o.a == nullptr) ||
            (o.a == nullptr && p.desc_a != o.desc_a) || p.desc_b != o.desc_b ||
            p.tnsp_a != o.tnsp_a || p.tnsp_b != o.tnsp_b || p.scale_d != o.scale_d)
            fault("wgmma: the threads of a warpgroup pass different shapes, descriptors or "
                  "flags (thread %d of the warpgroup differs from thread 0)",
                  i);
    }
    if (o.n < 8 || o.n > 256 || o.n % 8 != 0) fault("wgmma: n = %d is not 8, 16, ... 256", o.n);
    float A[64][16], B[256][16];
    for (int i = 0; i < 128; i++) {
        if (o.a == nullptr) break;
        const wg_thread *t = static_cast<const wg_thread *>(args[i]);
        const int w = i / 32, g = i % 32 / 4, c = i % 4;
        /* the m16n8k16 A fragment of rows 16w..16w+15 */
        for (int h = 0; h < 2; h++) {
            A[16 * w + g][2 * c + h] = reg_half(t->a[0], h, o.bf16);
            A[16 * w + g + 8][2 * c + h] = reg_half(t->a[1], h, o.bf16);
            A[16 * w + g][2 * c + 8 + h] = reg_half(t->a[2], h, o.bf16);
            A[16 * w + g + 8][2 * c + 8 + h] = reg_half(t->a[3], h, o.bf16);
        }
    }
    if (o.a == nullptr)
        for (int m = 0; m < 64; m++)
            for (int k = 0; k < 16; k++) A[m][k] = operand(o.desc_a, m, k, o.tnsp_a, o.bf16);
    for (int n = 0; n < o.n; n++)
        for (int k = 0; k < 16; k++) B[n][k] = operand(o.desc_b, n, k, o.tnsp_b, o.bf16);

    const int count = o.n / 2;
    for (int i = 0; i < 128; i++) {
        wg_thread *t = static_cast<wg_thread *>(args[i]);
        const int w = i / 32, g = i % 32 / 4, c = i % 4;
        acc_pending *p = nullptr;
        for (acc_pending &q : t->pending)
            if (q.d == t->op.d) p = &q;
        if (p != nullptr && (int)p->v.size() != count)
            fault("wgmma: accumulators in flight with %zu values reused by an m64n%dk16",
                  p->v.size(), o.n);
        std::vector<float> in(count, 0.0f);
        if (o.scale_d) {
            if (p != nullptr)
                in = p->v; /* chained on an accumulator in flight: in order, as on the GPU */
            else
                memcpy(in.data(), t->op.d, sizeof(float) * (size_t)count);
        }
        for (int j = 0; j < o.n / 8; j++)
            for (int e = 0; e < 4; e++) {
                const int row = 16 * w + g + (e >= 2 ? 8 : 0), col = 8 * j + 2 * c + (e & 1);
                float acc = in[(size_t)(4 * j + e)];
                for (int k = 0; k < 16; k++) acc += A[row][k] * B[col][k]; /* exact products */
                in[(size_t)(4 * j + e)] = acc;
            }
        if (p == nullptr) {
            t->pending.push_back({t->op.d, std::move(in), t->commits});
        } else {
            p->v = std::move(in);
            p->group = t->commits;
        }
        memset(t->op.d, 0xff, sizeof(float) * (size_t)count); /* NaN until the wait */
    }
}

} // namespace

void sm90_block_begin(int n)
{
    for (named_state &b : named) b = named_state();
    mbars.clear();
    wg.assign((size_t)n, wg_thread());
}

void sm90_thread_exit(int linear)
{
    if ((size_t)linear < wg.size() && !wg[(size_t)linear].pending.empty())
        fault("thread %d exits with a wgmma in flight (no wgmma.wait_group covers it)", linear);
}

void sm90_block_end()
{
    for (int id = 1; id < 16; id++)
        if (named[id].arrived > 0)
            fault("named barrier %d: %d of %d threads arrived (first at %s:%d), then the block "
                  "ended (the barrier never completed)",
                  id, named[id].arrived, named[id].count, named[id].file, named[id].line);
    for (const auto &kv : mbars)
        if (!kv.second.copies.empty())
            fault("the block ended with TMA copies waiting on the mbarrier at shared address %u "
                  "(its phase never completed)",
                  (unsigned)(static_cast<const unsigned char *>(kv.first) - shared_window()));
}

void named_barrier(int id, int count, bool wait, const char *file, int line)
{
    (void)current_thread();
    const int n = block_thread_count();
    if (id < 1 || id > 15)
        fault("%s at %s:%d: barrier id %d (named barriers are 1-15 here; 0 is __syncthreads)",
              wait ? "bar.sync" : "bar.arrive", file, line, id);
    if (count < 32 || count % 32 != 0 || count > n)
        fault("%s at %s:%d: thread count %d is not a multiple of 32 between 32 and the block's "
              "%d threads",
              wait ? "bar.sync" : "bar.arrive", file, line, count, n);
    named_state &b = named[id];
    if (b.arrived > 0 && b.count != count)
        fault("%s at %s:%d: barrier %d used with count %d while %d threads arrived with count "
              "%d (first at %s:%d)",
              wait ? "bar.sync" : "bar.arrive", file, line, id, count, b.arrived, b.count, b.file,
              b.line);
    if (b.arrived == 0) b.file = file, b.line = line, b.count = count;
    if (++b.arrived == count) {
        b.arrived = 0;
        wake(&b);
        return;
    }
    if (wait) block_on(&b, "bar.sync", file, line);
}

unsigned shared_address(const void *p, const char *file, int line)
{
    (void)current_thread();
    if (!shared_range_ok(p, 1))
        fault("%s:%d: %p is not in this block's shared memory", file, line, p);
    return (unsigned)(static_cast<const unsigned char *>(p) - shared_window());
}

void mbar_init(void *bar, unsigned count, const char *file, int line)
{
    (void)current_thread();
    if (!shared_range_ok(bar, 8) || (uintptr_t)bar % 8 != 0)
        fault("mbarrier.init at %s:%d: %p is not 8 aligned bytes of shared memory", file, line,
              bar);
    if (count < 1 || count >= (1u << 20))
        fault("mbarrier.init at %s:%d: count %u outside 1 .. 2^20 - 1", file, line, count);
    auto it = mbars.find(bar);
    if (it != mbars.end() && !it->second.copies.empty())
        fault("mbarrier.init at %s:%d: re-initialised with TMA copies in flight", file, line);
    mbar_state &m = mbars[bar];
    m = mbar_state();
    m.count = m.pending = count;
    memset(bar, 0, 8);
}

void mbar_arrive(void *bar, unsigned expect_tx_bytes, const char *file, int line)
{
    (void)current_thread();
    mbar_state &m = mbar_of(bar, "mbarrier.arrive", file, line);
    m.tx += expect_tx_bytes;
    m.pending--;
    complete_if_done(bar, m);
}

bool mbar_test(const void *bar, unsigned parity, const char *file, int line)
{
    (void)current_thread();
    return mbar_of(bar, "mbarrier.try_wait", file, line).phase != (parity & 1u);
}

void mbar_wait(const void *bar, unsigned parity, const char *file, int line)
{
    while (!mbar_test(bar, parity, file, line)) block_on(bar, "mbarrier.try_wait", file, line);
}

int tensor_map_encode(tensor_map *map, int elem_bytes, int rank, const void *base,
                      const uint64_t *dims, const uint64_t *strides, const uint32_t *box,
                      int swizzle_span)
{
    const char *why = nullptr;
    if (map == nullptr || base == nullptr || dims == nullptr || box == nullptr ||
        (rank > 1 && strides == nullptr))
        why = "a null argument";
    else if (elem_bytes != 1 && elem_bytes != 2 && elem_bytes != 4 && elem_bytes != 8)
        why = "an element size that is not 1, 2, 4 or 8 bytes";
    else if (rank < 1 || rank > 5)
        why = "a rank outside 1-5";
    else if ((uintptr_t)base % 16 != 0)
        why = "a global address that is not 16-byte aligned";
    else if (swizzle_span != 0 && swizzle_span != 32 && swizzle_span != 64 && swizzle_span != 128)
        why = "a swizzle that is not none, 32B, 64B or 128B";
    for (int i = 0; why == nullptr && i < rank; i++) {
        if (dims[i] < 1 || dims[i] > (1ull << 32))
            why = "a dimension outside 1 .. 2^32";
        else if (box[i] < 1 || box[i] > 256)
            why = "a box dimension outside 1 .. 256";
        else if (i > 0 && (strides[i - 1] % 16 != 0 || strides[i - 1] >= (1ull << 40)))
            why = "a global stride that is not a multiple of 16 below 2^40";
    }
    if (why == nullptr && (box[0] * (unsigned)elem_bytes) % 16 != 0)
        why = "an inner box dimension that is not a multiple of 16 bytes";
    if (why == nullptr && swizzle_span != 0 &&
        box[0] * (unsigned)elem_bytes != (unsigned)swizzle_span)
        why = "a swizzled box whose inner dimension is not exactly the swizzle span (the driver "
              "accepts less; not modelled here)";
    if (why != nullptr) {
        note("cuTensorMapEncodeTiled: %s: CUDA_ERROR_INVALID_VALUE", why);
        return 1;
    }
    memset(map, 0, sizeof *map);
    map->magic = kMapMagic;
    map->elem_bytes = elem_bytes;
    map->rank = rank;
    map->swizzle = swizzle_span;
    map->base = base;
    for (int i = 0; i < rank; i++) {
        map->dims[i] = dims[i];
        map->box[i] = box[i];
        map->strides[i] = i == 0 ? (uint64_t)elem_bytes : strides[i - 1];
    }
    return 0;
}

void tma_load(void *dst, const tensor_map *map, const int *coords, void *bar, const char *file,
              int line)
{
    (void)current_thread();
    if (map == nullptr || map->magic != kMapMagic)
        fault("cp.async.bulk.tensor at %s:%d: not a tensor map made by the (emulated) "
              "cuTensorMapEncodeTiled",
              file, line);
    size_t total = (size_t)map->elem_bytes;
    for (int i = 0; i < map->rank; i++) total *= map->box[i];
    unsigned char *d = static_cast<unsigned char *>(dst);
    if ((uintptr_t)(d - shared_window()) % 128 != 0 || !shared_range_ok(d, total))
        fault("cp.async.bulk.tensor at %s:%d: destination (%zu bytes) is not 128-byte aligned "
              "shared memory of this block",
              file, line, total);
    mbar_state &m = mbar_of(bar, "cp.async.bulk.tensor", file, line);
    const int mode = map->swizzle == 128 ? 1 : map->swizzle == 64 ? 2 : map->swizzle == 32 ? 3 : 0;
    const unsigned d0 = (unsigned)(d - shared_window());
    landing l;
    l.dst = d;
    l.bytes.assign(total, 0);
    const size_t eb = (size_t)map->elem_bytes, inner = map->box[0];
    size_t rows = 1;
    for (int i = 1; i < map->rank; i++) rows *= map->box[i];
    for (size_t r = 0; r < rows; r++) {
        /* the coordinates of this inner run; out of the tensor: zeros */
        long long off = 0;
        bool inside = true;
        size_t rest = r;
        for (int i = 1; i < map->rank; i++) {
            const long long c = (long long)coords[i] + (long long)(rest % map->box[i]);
            rest /= map->box[i];
            if (c < 0 || c >= (long long)map->dims[i]) inside = false;
            off += c * (long long)map->strides[i];
        }
        for (size_t e = 0; e < inner && inside; e++) {
            const long long c = (long long)coords[0] + (long long)e;
            if (c < 0 || c >= (long long)map->dims[0]) continue;
            const unsigned char *src =
                static_cast<const unsigned char *>(map->base) + off + c * (long long)eb;
            check_global_read(src, eb, eb, "cp.async.bulk.tensor source");
            const unsigned logical = d0 + (unsigned)((r * inner + e) * eb);
            memcpy(&l.bytes[swizzle(logical, mode) - d0], src, eb);
        }
    }
    memset(d, 0xff, total); /* undefined until the phase completes: NaN */
    m.tx -= (long long)total;
    m.copies.push_back(std::move(l));
    complete_if_done(bar, m);
}

void wgmma(const wgmma_op &op, const char *file, int line)
{
    wg_thread &t = wg[(size_t)current_thread()];
    t.op = op;
    if (op.a != nullptr) memcpy(t.a, op.a, sizeof t.a);
    warpgroup_collective(run_wgmma, &t, "wgmma.mma_async", file, line);
}

void wgmma_commit() { wg[(size_t)current_thread()].commits++; }

void wgmma_wait(int pending)
{
    wg_thread &t = wg[(size_t)current_thread()];
    if (pending < 0 || pending > 7) fault("wgmma.wait_group %d: N must be 0-7", pending);
    size_t keep = 0;
    for (size_t i = 0; i < t.pending.size(); i++) {
        acc_pending &p = t.pending[i];
        if (p.group < t.commits - pending)
            memcpy(p.d, p.v.data(), sizeof(float) * p.v.size());
        else
            t.pending[keep++] = std::move(p);
    }
    t.pending.resize(keep);
}

} // namespace fgi_emu
