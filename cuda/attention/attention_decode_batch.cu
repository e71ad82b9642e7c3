/* Batched decode attention: fg_cuda_decode_attention / _typed and the
 * internal fgi_cuda_decode_attention (attention_internal.h), one query row
 * per sequence over a KV cache of f32, bf16 or f16, each sequence with its
 * own key count and an optional sliding window.
 *
 * Conventions: docs/contract.md §10 ("Batched decode") and
 * flashgpt/cuda_api.h; the kernel is cuda/attention/attention_decode.cu's,
 * with the batch folded into the head axis (sequence b owns query heads
 * [b*n_q_head, ...) and kv heads [b*n_kv_head, ...)); arithmetic and split
 * partials in fp32.
 *
 * Design: batch invariance comes from the plan. The split count is chosen
 * for one sequence at full capacity, or over the keys its window can reach
 * (one wave of the decode kernel's blocks on this GPU), and never looks at
 * the batch; each sequence then splits its own visible keys into at most
 * that many parts inside the kernel. Every
 * split is merged by the last block of its column (a ticket per column), in
 * split order, so the partials of one sequence are merged alike whatever
 * else runs. A batch whose columns exceed the ticket counters, or whose
 * partials exceed the workspace, runs as several launches over consecutive
 * sequences, which changes no sequence's arithmetic. A paged cache (block
 * tables into a pool) goes through the same plan with capacity max_blocks
 * * block_size, so its results are bit for bit the contiguous cache's. */
#include "attention_kernels.cuh"
#include "ops_internal.h"

#include <limits.h>
#include <stdint.h>

namespace {

/* Automatic splits keep at least this many keys (as the single-sequence
 * decode plan), and a sequence's own splits too: below it a split's merge
 * costs more than the keys it takes from the others. */
constexpr int kMinSplitKeys = 128;
constexpr int kSplitGranule = 32; /* split bounds: whole 16-key stages */
/* Key positions stay this far below INT_MAX (as fgi_cuda_attention). */
constexpr int kMaxCapacity = INT_MAX - 4096;
/* Partial rows of one launch when the call takes its own scratch: bounds
 * the scratch (about 17 MB at head_dim 128), never the results. */
constexpr long long kScratchRows = 32768;

bool aligned16(const void *ptr) { return ((uintptr_t)ptr & 15u) == 0; }

/* The problem of sequences [b0, b0 + nb): pointers offset to b0. */
fgi_attention_problem batch_problem(const fgi_decode_args *a, int b0, int nb)
{
    const size_t es = fg_dtype_size(a->dtype);
    const long long q_row = (long long)a->n_q_head * a->head_dim;     /* elements per sequence */
    /* a paged cache is one pool for every sequence: no offset */
    const long long kv_seq =
        a->block_tables != nullptr ? 0 : (long long)a->n_kv_head * a->capacity * a->head_dim;
    fgi_attention_problem p = {};
    p.dtype = a->dtype;
    p.out = reinterpret_cast<float *>(static_cast<char *>(a->out) + es * b0 * q_row);
    p.q = reinterpret_cast<const float *>(static_cast<const char *>(a->q) + es * b0 * q_row);
    p.k = reinterpret_cast<const float *>(static_cast<const char *>(a->k_cache) + es * b0 * kv_seq);
    p.v = reinterpret_cast<const float *>(static_cast<const char *>(a->v_cache) + es * b0 * kv_seq);
    p.out_head_stride = p.q_head_stride = a->head_dim;
    p.out_row_stride = p.q_row_stride = a->head_dim;
    p.kv_head_stride = (long long)a->capacity * a->head_dim;
    p.n_q_head = nb * a->n_q_head;
    p.n_kv_head = nb * a->n_kv_head;
    p.group = a->n_q_head / a->n_kv_head;
    p.q_len = 1;
    p.kv_len = a->capacity; /* sizes the plan; the kernel reads kv_lens */
    p.shift = a->capacity - 1;
    p.head_dim = a->head_dim;
    p.q_scale = (float)(1.4426950408889634 / sqrt((double)a->head_dim));
    p.kv_lens = a->kv_lens + b0;
    p.seq_kv_heads = a->n_kv_head;
    p.kv_capacity = a->capacity;
    p.window = a->window;
    if (a->block_tables != nullptr) {
        p.block_tables = a->block_tables + (long long)b0 * a->max_blocks;
        p.n_blocks = a->n_blocks;
        p.block_size = a->block_size;
        p.max_blocks = a->max_blocks;
    }
    p.split_granule = kSplitGranule;
    p.n_splits = 1;
    return p;
}

/* The keys one sequence's splits share out, at most: its whole cache, or
 * with a window W the W keys that window covers, plus a stage less one
 * for the rounding of its first key (fgi_plan_keys). A bound of every
 * sequence's own keys, taken from the call's shape and never from kv_lens:
 * the plan stays the same whatever else shares the batch. */
long long plan_keys(const fgi_decode_args *a)
{
    if (a->window <= 0) return a->capacity;
    const long long reach = (long long)a->window + (FGI_DECODE_STAGE_KEYS - 1);
    return reach < a->capacity ? reach : a->capacity;
}

/* The split count: one wave of the decode kernel's blocks for one sequence
 * (a request instead, for tests), at most plan_keys / kMinSplitKeys and
 * FGI_MAX_SPLITS. Depends on the shape, capacity, window and GPU only. */
fg_status plan_splits(const char *fn, const fgi_decode_args *a, int *n_splits)
{
    const fgi_attention_problem one = batch_problem(a, 0, 1);
    const long long keys = plan_keys(a);
    long long want;
    if (a->n_splits > 0) {
        want = a->n_splits;
        const long long granules = (keys + kSplitGranule - 1) / kSplitGranule;
        if (want > granules) want = granules;
    } else {
        int device = 0, sm_count = 0;
        FGI_CUDA_TRY(fn, cudaGetDevice(&device));
        FGI_CUDA_TRY(fn, cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
        const long long resident = (long long)sm_count * fgi_decode_blocks_per_sm(one);
        want = resident / fgi_decode_blocks(one);
        if (want > keys / kMinSplitKeys) want = keys / kMinSplitKeys;
    }
    if (want > FGI_MAX_SPLITS) want = FGI_MAX_SPLITS;
    *n_splits = want < 1 ? 1 : (int)want;
    return FG_OK;
}

/* Partial bytes of one sequence for n_splits splits. */
size_t partial_bytes_per_seq(const fgi_decode_args *a, int n_splits)
{
    return sizeof(float) * (size_t)n_splits * a->n_q_head * ((size_t)a->head_dim + 2);
}

/* Sequences per launch: the ticket counters' limit (one per column) and
 * the room for partials. */
int seqs_per_launch(const fgi_decode_args *a, int n_splits, size_t partial_room)
{
    const long long columns = fgi_decode_blocks(batch_problem(a, 0, 1));
    long long n = FGI_SPLIT_COUNTERS / columns;
    const long long by_room = (long long)(partial_room / partial_bytes_per_seq(a, n_splits));
    if (n > by_room) n = by_room;
    if (n > a->batch) n = a->batch;
    return (int)n;
}

/* A paged call's own checks; its capacity into b->capacity. */
fg_status check_paged(const char *fn, fgi_decode_args *b)
{
    FGI_TRY(fgi_check_ptr(fn, "block_tables", b->block_tables));
    FGI_TRY(fgi_check_min(fn, "n_blocks", b->n_blocks, 1));
    FGI_TRY(fgi_check_min(fn, "block_size", b->block_size, 16));
    FGI_TRY(fgi_check_min(fn, "max_blocks", b->max_blocks, 1));
    if (b->block_size % 16 != 0)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: block_size (%d) must be a multiple of 16", fn,
                       b->block_size);
    const long long capacity = (long long)b->max_blocks * b->block_size;
    if (capacity > kMaxCapacity)
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: max_blocks * block_size (%lld) is above the supported %d", fn,
                       capacity, kMaxCapacity);
    b->capacity = (int)capacity;
    return FG_OK;
}

/* Everything that does not need the device: pointers, sizes, alignment,
 * overlaps, and a kernel for the head_dim and type. */
fg_status check_args(const char *fn, const fgi_decode_args *a)
{
    const bool paged = a->block_tables != nullptr;
    const size_t es = fg_dtype_size(a->dtype);
    if (es == 0)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'dtype' is not an element type (%d)", fn,
                       (int)a->dtype);
    FGI_TRY(fgi_check_ptr(fn, "out", a->out));
    FGI_TRY(fgi_check_ptr(fn, "q", a->q));
    FGI_TRY(fgi_check_ptr(fn, "k_cache", a->k_cache));
    FGI_TRY(fgi_check_ptr(fn, "v_cache", a->v_cache));
    FGI_TRY(fgi_check_ptr(fn, "kv_lens", a->kv_lens));
    FGI_TRY(fgi_check_min(fn, "batch", a->batch, 1));
    FGI_TRY(fgi_check_min(fn, "n_q_head", a->n_q_head, 1));
    FGI_TRY(fgi_check_min(fn, "n_kv_head", a->n_kv_head, 1));
    if (a->n_q_head % a->n_kv_head != 0)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: n_q_head (%d) must be a multiple of n_kv_head (%d)", fn, a->n_q_head,
                       a->n_kv_head);
    FGI_TRY(fgi_check_min(fn, "head_dim", a->head_dim, 1));
    FGI_TRY(fgi_check_min(fn, "capacity", a->capacity, 1));
    FGI_TRY(fgi_check_min(fn, "window", a->window, 0));
    FGI_TRY(fgi_check_min(fn, "n_splits", a->n_splits, 0));
    if (a->capacity > kMaxCapacity)
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: capacity %d is above the supported %d", fn,
                       a->capacity, kMaxCapacity);
    size_t q_elems, kv_elems;
    FGI_TRY(fgi_check_elems(fn, "q (batch*n_q_head*head_dim)", &q_elems, 3, (long long)a->batch,
                           (long long)a->n_q_head, (long long)a->head_dim));
    if (paged)
        FGI_TRY(fgi_check_elems(fn, "k_pool (n_blocks*n_kv_head*block_size*head_dim)", &kv_elems,
                               4, (long long)a->n_blocks, (long long)a->n_kv_head,
                               (long long)a->block_size, (long long)a->head_dim));
    else
        FGI_TRY(fgi_check_elems(fn, "k_cache (batch*n_kv_head*capacity*head_dim)", &kv_elems, 4,
                               (long long)a->batch, (long long)a->n_kv_head,
                               (long long)a->capacity, (long long)a->head_dim));
    size_t table_elems = 0;
    if (paged)
        FGI_TRY(fgi_check_elems(fn, "block_tables (batch*max_blocks)", &table_elems, 2,
                               (long long)a->batch, (long long)a->max_blocks));
    const int pack = 16 / (int)es;
    if (a->head_dim % pack != 0 || a->head_dim > 256)
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: no %s decode kernel for head_dim %d (a multiple of %d up to 256)", fn,
                       fg_dtype_name(a->dtype), a->head_dim, pack);
    const struct {
        const char *name;
        const void *ptr;
    } rows[] = {{"out", a->out}, {"q", a->q}, {"k_cache", a->k_cache}, {"v_cache", a->v_cache}};
    for (const auto &r : rows)
        if (!aligned16(r.ptr))
            return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument '%s' must be 16-byte aligned", fn,
                           r.name);
    const size_t q_bytes = es * q_elems, kv_bytes = es * kv_elems;
    const size_t lens_bytes = sizeof(int) * (size_t)a->batch;
    FGI_TRY(fgi_check_disjoint(fn, "out", a->out, q_bytes, "q", a->q, q_bytes));
    FGI_TRY(fgi_check_disjoint(fn, "out", a->out, q_bytes, "k_cache", a->k_cache, kv_bytes));
    FGI_TRY(fgi_check_disjoint(fn, "out", a->out, q_bytes, "v_cache", a->v_cache, kv_bytes));
    FGI_TRY(fgi_check_disjoint(fn, "out", a->out, q_bytes, "kv_lens", a->kv_lens, lens_bytes));
    if (paged)
        FGI_TRY(fgi_check_disjoint(fn, "out", a->out, q_bytes, "block_tables", a->block_tables,
                                   sizeof(int) * table_elems));
    fgi_attention_problem one = batch_problem(a, 0, 1);
    if (!fgi_decode_supported(one))
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: no %s decode kernel for head_dim %d", fn,
                       fg_dtype_name(a->dtype), a->head_dim);
    return FG_OK;
}

/* Enqueues the batch in launches of `per` sequences; workspace: zeroed
 * counters, then partials (16-byte aligned), or unused with one split. */
fg_status launch_batch(const char *fn, const fgi_decode_args *a, int n_splits, int per,
                       void *workspace, cudaStream_t stream)
{
    for (int b0 = 0; b0 < a->batch; b0 += per) {
        const int nb = a->batch - b0 < per ? a->batch - b0 : per;
        fgi_attention_problem p = batch_problem(a, b0, nb);
        p.n_splits = n_splits;
        p.keys_per_split = a->capacity; /* unused: kv_lens derives it */
        p.split_min_keys = a->n_splits > 0 ? 0 : kMinSplitKeys;
        if (n_splits > 1) {
            const long long rows = (long long)n_splits * p.n_q_head;
            p.split_counters = static_cast<int *>(workspace);
            p.part_o = reinterpret_cast<float *>(static_cast<char *>(workspace) +
                                                 FGI_SPLIT_COUNTER_BYTES);
            p.part_m = p.part_o + rows * p.head_dim;
            p.part_l = p.part_m + rows;
        }
        FGI_TRY(fgi_launch_decode(fn, p, stream));
    }
    return FG_OK;
}

} // namespace

extern "C" size_t fgi_cuda_decode_workspace_bytes(const fgi_decode_args *args)
{
    static const char fn[] = "fgi_cuda_decode_workspace_bytes";
    int n_splits = 1;
    fgi_decode_args b = args != nullptr ? *args : fgi_decode_args{};
    const fgi_decode_args *a = &b;
    if (args == nullptr || (b.block_tables != nullptr && check_paged(fn, &b) != FG_OK) ||
        check_args(fn, a) != FG_OK || fgi_cuda_check_device(fn) != FG_OK ||
        plan_splits(fn, a, &n_splits) != FG_OK) {
        fg_clear_error();
        return 0;
    }
    if (n_splits == 1) return 0;
    const int per = seqs_per_launch(a, n_splits, (size_t)-1);
    return FGI_SPLIT_COUNTER_BYTES + (size_t)per * partial_bytes_per_seq(a, n_splits) + 16;
}

extern "C" fg_status fgi_cuda_decode_attention(const char *fn, const fgi_decode_args *args,
                                               void *workspace, size_t workspace_bytes,
                                               int *used_splits, cudaStream_t stream)
{
    if (args == nullptr)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: no arguments (internal call)", fn);
    fgi_decode_args b = *args;
    const fgi_decode_args *a = &b;
    if (b.block_tables != nullptr) FGI_TRY(check_paged(fn, &b));
    FGI_TRY(check_args(fn, a));
    FGI_TRY(fgi_cuda_check_device(fn));
    int n_splits = 1;
    FGI_TRY(plan_splits(fn, a, &n_splits));
    if (used_splits != nullptr) *used_splits = n_splits;
    if (n_splits == 1) return launch_batch(fn, a, 1, a->batch, nullptr, stream);

    const size_t per_seq = partial_bytes_per_seq(a, n_splits);
    if (workspace != nullptr) {
        /* The caller's: aligned, then as many sequences per launch as fit. */
        const uintptr_t at = ((uintptr_t)workspace + 15u) & ~(uintptr_t)15u;
        const size_t lost = at - (uintptr_t)workspace;
        const size_t room = workspace_bytes > lost + FGI_SPLIT_COUNTER_BYTES
                                ? workspace_bytes - lost - FGI_SPLIT_COUNTER_BYTES
                                : 0;
        const int per = seqs_per_launch(a, n_splits, room);
        if (per < 1)
            return fgi_fail(FG_ERR_INVALID_ARG,
                           "%s: workspace of %zu bytes is below the %zu one sequence needs", fn,
                           workspace_bytes, FGI_SPLIT_COUNTER_BYTES + per_seq + 16);
        return launch_batch(fn, a, n_splits, per, (void *)at, stream);
    }
    /* Stream-ordered scratch for at most kScratchRows partial rows. */
    long long room_seqs = kScratchRows / ((long long)n_splits * a->n_q_head);
    if (room_seqs < 1) room_seqs = 1;
    const int per = seqs_per_launch(a, n_splits, (size_t)room_seqs * per_seq);
    const size_t bytes = FGI_SPLIT_COUNTER_BYTES + (size_t)per * per_seq;
    void *scratch = nullptr;
    FGI_CUDA_TRY(fn, cudaMallocAsync(&scratch, bytes, stream));
    fg_status st = FG_OK;
    const cudaError_t set = cudaMemsetAsync(scratch, 0, FGI_SPLIT_COUNTER_BYTES, stream);
    if (set != cudaSuccess) {
        (void)cudaGetLastError();
        st = fgi_fail(FG_ERR_CUDA, "%s: cudaMemsetAsync failed: %s", fn, cudaGetErrorString(set));
    }
    if (st == FG_OK) st = launch_batch(fn, a, n_splits, per, scratch, stream);
    const cudaError_t err = cudaFreeAsync(scratch, stream);
    if (err != cudaSuccess && st == FG_OK)
        st = fgi_fail(FG_ERR_CUDA, "%s: cudaFreeAsync failed: %s", fn, cudaGetErrorString(err));
    return st;
}

extern "C" fg_status fg_cuda_decode_attention_typed(fg_dtype dtype, void *out, const void *q,
                                                    const void *k_cache, const void *v_cache,
                                                    const int *kv_lens, int batch, int n_q_head,
                                                    int n_kv_head, int head_dim, int capacity,
                                                    int window, cudaStream_t stream)
{
    fgi_decode_args a = {};
    a.dtype = dtype, a.out = out, a.q = q, a.k_cache = k_cache, a.v_cache = v_cache;
    a.kv_lens = kv_lens, a.batch = batch, a.n_q_head = n_q_head, a.n_kv_head = n_kv_head;
    a.head_dim = head_dim, a.capacity = capacity, a.window = window;
    return fgi_cuda_decode_attention("fg_cuda_decode_attention_typed", &a, nullptr, 0, nullptr,
                                     stream);
}

extern "C" fg_status fg_cuda_decode_attention_paged(fg_dtype dtype, void *out, const void *q,
                                                    const void *k_pool, const void *v_pool,
                                                    int n_blocks, int block_size,
                                                    const int *block_tables, int max_blocks,
                                                    const int *kv_lens, int batch, int n_q_head,
                                                    int n_kv_head, int head_dim, int window,
                                                    cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_decode_attention_paged";
    FGI_TRY(fgi_check_ptr(fn, "block_tables", block_tables)); /* NULL would mean contiguous */
    fgi_decode_args a = {};
    a.dtype = dtype, a.out = out, a.q = q, a.k_cache = k_pool, a.v_cache = v_pool;
    a.kv_lens = kv_lens, a.batch = batch, a.n_q_head = n_q_head, a.n_kv_head = n_kv_head;
    a.head_dim = head_dim, a.window = window;
    a.block_tables = block_tables, a.n_blocks = n_blocks, a.block_size = block_size;
    a.max_blocks = max_blocks;
    return fgi_cuda_decode_attention(fn, &a, nullptr, 0, nullptr, stream);
}

extern "C" fg_status fg_cuda_decode_attention(float *out, const float *q, const float *k_cache,
                                              const float *v_cache, const int *kv_lens, int batch,
                                              int n_q_head, int n_kv_head, int head_dim,
                                              int capacity, int window, cudaStream_t stream)
{
    fgi_decode_args a = {};
    a.dtype = FG_DTYPE_F32, a.out = out, a.q = q, a.k_cache = k_cache, a.v_cache = v_cache;
    a.kv_lens = kv_lens, a.batch = batch, a.n_q_head = n_q_head, a.n_kv_head = n_kv_head;
    a.head_dim = head_dim, a.capacity = capacity, a.window = window;
    return fgi_cuda_decode_attention("fg_cuda_decode_attention", &a, nullptr, 0, nullptr, stream);
}
