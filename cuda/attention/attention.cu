/* Attention on the GPU: the public fg_cuda_attention / _flash / mha / gqa /
 * gqa_window / gqa_lse entry points and their _typed twins,
 * fgi_cuda_attention, which the decoder calls with strided q (its fused
 * projection), a KV cache and merged output columns, and the 16-bit
 * dispatch fgi_cuda_attention16.
 *
 * Conventions: docs/contract.md §6, §9, §7, §10 and cuda/attention/attention_internal.h (causal with
 * bottom-right alignment, scale 1/sqrt(head_dim), query head h reads KV head
 * h / (n_q_head / n_kv_head), fp32 arithmetic in every element type). Every
 * public form, fp32 or typed, is one contiguous_call through
 * run_contiguous: validated with the reference's validators (sizes in
 * bytes of the type) before anything is enqueued, then fgi_cuda_attention,
 * which sends bf16 / f16 to fgi_cuda_attention16 (the tensor-core kernel of
 * attention_mma16.cu) and fp32 to the kernels below.
 *
 * Design: four kernel families share one online-softmax state
 * (cuda/attention/softmax_state.cuh) and one split-KV partial format
 * (cuda/attention/attention_kernels.cuh):
 *  - decode (cuda/attention/attention_decode.cu) when a KV head serves few query rows
 *    (group * q_len <= 16), and for any head_dim % 4 == 0 up to 256 that has
 *    no tiled kernel: the query rows of a group share every K/V load;
 *  - mma flash (cuda/attention/attention_mma.cu, 3xTF32 tensor cores, fp32 accuracy)
 *    for head_dim 32/64/80/96/128 otherwise;
 *  - tiled flash (cuda/attention/attention_tiled.cu, FFMA) for head_dim 256, and for
 *    32/64/80/96/128 when forced;
 *  - generic (cuda/attention/attention_generic.cu) for the rest (head_dim % 4 != 0 or
 *    above 256, rows not 16-byte aligned).
 * When the blocks of a call would not fill the GPU (SM count queried per
 * call), the keys are split across blocks: the decode kernel's splits are
 * merged by the last block of each column (counters at the start of the
 * workspace), the other kernels' by combine_splits. Splits need workspace
 * (the caller's, zero-filled once, else stream-ordered scratch taken,
 * zeroed and released by the call). With a device key count
 * (kv_len_dev, the decoder's captured graph) only the decode kernel runs.
 *
 * flash block_size: the tiled kernel's key tile is the largest supported
 * size (16, 32, 64; head_dim 256: 16, 32) not above block_size, or the
 * smallest when block_size is below all; the mma kernel's likewise (32, 64);
 * 0 picks each kernel's default per head_dim. The decode and generic
 * kernels stream keys in their own fixed steps. The result never depends
 * on it. */
#include "attention_kernels.cuh"
#include "ops_internal.h"
#include "validate.h"

#include <limits.h>
#include <stdint.h>

namespace {

constexpr int kMaxSplits = FGI_MAX_SPLITS;
/* At most this many (split, query row) partial rows: bounds the workspace
 * (about 17 MB at head_dim 128) whatever the GPU size. */
constexpr long long kSplitRowBudget = 32768;
/* Automatic splits keep at least this many keys each (decode: more, so
 * that a block's cp.async ring runs several stages). */
constexpr int kMinSplitKeys = 64;
constexpr int kDecodeMinSplitKeys = 128;
/* Query rows per KV head up to which the decode kernel is chosen. */
constexpr long long kDecodeMaxRows = 16;
/* Key positions are int; keeping kv_len this far below INT_MAX lets the
 * kernels add a tile to a key index without overflow. */
constexpr int kMaxKvLen = INT_MAX - 4096;

bool aligned16(const void *ptr) { return ((uintptr_t)ptr & 15u) == 0; }

bool rows_vectorisable(const fgi_attention_args *a)
{
    return a->head_dim % 4 == 0 && aligned16(a->q) && aligned16(a->k) &&
           aligned16(a->v) && aligned16(a->out) && a->q_head_stride % 4 == 0 &&
           a->q_row_stride % 4 == 0 && a->kv_head_stride % 4 == 0 &&
           a->out_head_stride % 4 == 0 && a->out_row_stride % 4 == 0;
}

bool has_tiled_kernel(int head_dim)
{
    return head_dim == 32 || head_dim == 64 || head_dim == 80 || head_dim == 96 ||
           head_dim == 128 || head_dim == 256;
}

/* The tiled kernel's default key tile: the best fit of registers and
 * shared memory per head_dim (2+ blocks per SM on A100 and H100). */
int default_key_tile(int head_dim) { return head_dim == 96 || head_dim >= 128 ? 32 : 64; }

/* The largest supported tile <= request (the smallest if below all) whose
 * shared memory fits; 0 if none fits. */
int pick_key_tile(int head_dim, int request, int smem_limit)
{
    int tile = request <= 0 ? default_key_tile(head_dim) : request >= 64 ? 64 : request >= 32 ? 32 : 16;
    if (head_dim == 256 && tile == 64) tile = 32;
    for (; tile >= 16; tile /= 2) {
        const size_t bytes = fgi_tiled_smem_bytes(head_dim, tile);
        if (bytes > 0 && bytes <= (size_t)smem_limit) return tile;
    }
    return 0;
}

/* The mma kernel's tile: the same rule over its tiles (32, 64). */
int pick_mma_key_tile(int head_dim, int request, int smem_limit)
{
    int tile = request <= 0 ? fgi_mma_default_key_tile(head_dim) : request >= 64 ? 64 : 32;
    for (; tile >= 32; tile /= 2) {
        const size_t bytes = fgi_mma_smem_bytes(head_dim, tile);
        if (bytes > 0 && bytes <= (size_t)smem_limit) return tile;
    }
    return 0;
}

long long ceil_div_ll(long long a, long long b) { return (a + b - 1) / b; }

struct device_limits {
    int sm_count;
    int smem_optin; /* max dynamic shared memory per block */
};

fg_status query_device(const char *fn, device_limits *lim)
{
    int device = 0;
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_CUDA_TRY(fn, cudaGetDevice(&device));
    FGI_CUDA_TRY(fn, cudaDeviceGetAttribute(&lim->sm_count, cudaDevAttrMultiProcessorCount, device));
    FGI_CUDA_TRY(fn, cudaDeviceGetAttribute(&lim->smem_optin,
                                           cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    return FG_OK;
}

/* Which kernel serves this call, and its key tile (tiled and mma only). */
struct kernel_choice {
    fgi_attention_kernel kernel;
    int key_tile;
};

fg_status choose_kernel(const char *fn, const fgi_attention_args *a,
                        fgi_attention_kernel request, const device_limits &lim,
                        kernel_choice *out)
{
    const long long rows_per_kv = (long long)(a->n_q_head / a->n_kv_head) * a->q_len;
    const bool vec = rows_vectorisable(a);
    const bool decode_ok = vec && a->head_dim <= 256 && rows_per_kv <= INT_MAX;
    const int tile = vec && has_tiled_kernel(a->head_dim)
                         ? pick_key_tile(a->head_dim, a->block_size, lim.smem_optin)
                         : 0;
    const bool generic_ok = a->head_dim <= FGI_GENERIC_MAX_HEAD_DIM;
    const int mma_tile = vec && fgi_mma_supported(a->head_dim)
                             ? pick_mma_key_tile(a->head_dim, a->block_size, lim.smem_optin)
                             : 0;
    const bool mma_ok = mma_tile > 0;
    fgi_attention_kernel k = request;
    if (a->block_table != nullptr) { /* paged: the mma kernel only */
        if (k == FGI_ATTENTION_AUTO) k = FGI_ATTENTION_MMA;
        if (k != FGI_ATTENTION_MMA || !mma_ok)
            return fgi_fail(FG_ERR_UNSUPPORTED,
                           "%s: a block table needs the mma attention kernel (head_dim 32, 64, "
                           "80, 96 or 128 with 16-byte aligned rows; got head_dim %d)",
                           fn, a->head_dim);
    }
    if (k == FGI_ATTENTION_AUTO) {
        if (decode_ok && (rows_per_kv <= kDecodeMaxRows || (tile == 0 && !mma_ok)))
            k = FGI_ATTENTION_DECODE;
        else if (mma_ok)
            k = FGI_ATTENTION_MMA;
        else if (tile > 0)
            k = FGI_ATTENTION_TILED;
        else
            k = FGI_ATTENTION_GENERIC;
    }
    const bool ok = (k == FGI_ATTENTION_DECODE && decode_ok) ||
                    (k == FGI_ATTENTION_TILED && tile > 0) ||
                    (k == FGI_ATTENTION_MMA && mma_ok) ||
                    (k == FGI_ATTENTION_GENERIC && generic_ok);
    if (!ok)
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: no attention kernel (%d requested) for head_dim %d with these "
                       "strides and alignment (the generic kernel takes head_dim <= %d)",
                       fn, (int)request, a->head_dim, FGI_GENERIC_MAX_HEAD_DIM);
    out->kernel = k;
    out->key_tile = k == FGI_ATTENTION_TILED ? tile
                    : k == FGI_ATTENTION_MMA ? mma_tile
                                             : 0;
    return FG_OK;
}

/* Blocks per split and key granularity of a split for the chosen kernel. */
long long blocks_per_split(const fgi_attention_problem &p, const kernel_choice &c)
{
    switch (c.kernel) {
    case FGI_ATTENTION_TILED:
        return (long long)p.n_q_head * ceil_div_ll(p.q_len, fgi_tiled_rows(p.head_dim));
    case FGI_ATTENTION_MMA:
        return (long long)p.n_q_head * ceil_div_ll(p.q_len, fgi_mma_rows(p.head_dim));
    case FGI_ATTENTION_DECODE: return fgi_decode_blocks(p);
    default: return fgi_generic_blocks(p);
    }
}

/* The keys a split plan shares out: all kv_len, except for the decode
 * kernel with a sliding window, whose splits cover only the keys from the
 * first one the window lets query row 0 see, rounded down to a stage
 * (fgi_plan_keys), to the end: at most window + q_len - 1 plus a stage
 * less one, however long the cache. Planning over kv_len there would
 * spread the splits over the whole cache and leave most of them empty. */
long long plan_keys(const fgi_attention_problem &p, const kernel_choice &c)
{
    if (c.kernel != FGI_ATTENTION_DECODE || p.window <= 0) return p.kv_len;
    const long long reach = (long long)p.window + p.q_len - 1 + (FGI_DECODE_STAGE_KEYS - 1);
    return reach < p.kv_len ? reach : p.kv_len;
}

/* Sets p->n_splits / keys_per_split: `want` parts of `keys` keys, rounded
 * to whole granules, without empty trailing splits. */
void set_splits(fgi_attention_problem *p, long long want, int granule, long long keys)
{
    if (want < 1) want = 1;
    long long per = fgi_keys_per_split<long long>(keys, want, granule);
    if (per > keys) per = keys;
    p->keys_per_split = (int)per;
    p->n_splits = (int)ceil_div_ll(keys, per);
    p->split_granule = granule;
}

/* Number of splits wanted for this call before workspace limits, over
 * `keys` keys (plan_keys). */
long long wanted_splits(const fgi_attention_problem &p, const kernel_choice &c, int request,
                        int sm_count, int granule, long long keys)
{
    long long want;
    if (request > 0) {
        want = request;
        if (want > ceil_div_ll(keys, granule)) want = ceil_div_ll(keys, granule);
    } else if (c.kernel == FGI_ATTENTION_DECODE) {
        /* Memory-bound: as many splits as fill one wave of resident blocks,
         * never more (H100 sweep in bench/RESULTS.md: 1.3 waves ran 20%
         * slower than one; single-wave plans were within a few % of the
         * best for every case). */
        const long long resident = (long long)sm_count * fgi_decode_blocks_per_sm(p);
        want = resident / blocks_per_split(p, c);
        const long long by_keys = keys / kDecodeMinSplitKeys;
        if (want > by_keys) want = by_keys;
    } else {
        const long long blocks = blocks_per_split(p, c);
        const long long target = (long long)sm_count * 2;
        want = blocks < sm_count ? ceil_div_ll(target, blocks) : 1;
        const long long by_keys = keys / kMinSplitKeys;
        if (want > by_keys) want = by_keys;
    }
    if (want > kMaxSplits) want = kMaxSplits;
    const long long rows = (long long)p.n_q_head * p.q_len;
    if (want * rows > kSplitRowBudget) want = kSplitRowBudget / rows;
    return want < 1 ? 1 : want;
}

size_t split_bytes_per_row(int head_dim) { return sizeof(float) * ((size_t)head_dim + 2); }

/* Points the partial arrays into a 16-byte aligned workspace, after its
 * merge counters (a fixed region, so calls of any size never overlap it). */
void place_partials(fgi_attention_problem *p, void *workspace, long long blocks_per_split,
                    fgi_attention_kernel kernel)
{
    const long long rows = (long long)p->n_splits * p->n_q_head * p->q_len;
    if (kernel == FGI_ATTENTION_DECODE && blocks_per_split <= FGI_SPLIT_COUNTERS)
        p->split_counters = static_cast<int *>(workspace);
    p->part_o = reinterpret_cast<float *>(static_cast<char *>(workspace) + FGI_SPLIT_COUNTER_BYTES);
    p->part_m = p->part_o + rows * p->head_dim;
    p->part_l = p->part_m + rows;
}

fgi_attention_problem make_problem(const fgi_attention_args *a)
{
    fgi_attention_problem p = {};
    p.out = static_cast<float *>(a->out);
    p.out_head_stride = a->out_head_stride;
    p.out_row_stride = a->out_row_stride;
    p.lse = a->lse;
    p.q = static_cast<const float *>(a->q);
    p.q_head_stride = a->q_head_stride;
    p.q_row_stride = a->q_row_stride;
    p.k = static_cast<const float *>(a->k);
    p.v = static_cast<const float *>(a->v);
    p.kv_head_stride = a->kv_head_stride;
    p.n_q_head = a->n_q_head;
    p.n_kv_head = a->n_kv_head;
    p.group = a->n_q_head / a->n_kv_head;
    p.q_len = a->q_len;
    p.kv_len = a->kv_len;
    p.head_dim = a->head_dim;
    p.shift = a->kv_len - a->q_len;
    p.window = a->window;
    p.q_scale = (float)(1.4426950408889634 / sqrt((double)a->head_dim));
    p.n_splits = 1;
    p.keys_per_split = a->kv_len;
    p.kv_len_dev = a->kv_len_dev;
    p.split_granule = 1;
    p.block_tables = a->block_table;
    p.block_size = a->kv_block_size;
    p.kv_block_stride = a->kv_block_stride;
    p.segments = a->segments;
    p.n_segments = a->n_segments;
    p.table_stride = a->table_stride;
    return p;
}

fg_status launch_main(const char *fn, const fgi_attention_problem &p, const kernel_choice &c,
                      cudaStream_t stream)
{
    switch (c.kernel) {
    case FGI_ATTENTION_TILED: return fgi_launch_tiled(fn, p, c.key_tile, stream);
    case FGI_ATTENTION_MMA: return fgi_launch_mma(fn, p, c.key_tile, stream);
    case FGI_ATTENTION_DECODE: return fgi_launch_decode(fn, p, stream);
    default: return fgi_launch_generic(fn, p, stream);
    }
}

fg_status launch_all(const char *fn, const fgi_attention_problem &p, const kernel_choice &c,
                     cudaStream_t stream)
{
    FGI_TRY(launch_main(fn, p, c, stream));
    if (p.n_splits > 1 && p.split_counters == nullptr) FGI_TRY(fgi_launch_combine(fn, p, stream));
    return FG_OK;
}

/* Callers validate; this only keeps a caller's bug from dividing by zero
 * or launching on NULL. */
bool sane(const fgi_attention_args *a)
{
    return a != nullptr && a->out != nullptr && a->q != nullptr && a->k != nullptr &&
           a->v != nullptr && a->n_q_head >= 1 && a->n_kv_head >= 1 &&
           a->n_q_head % a->n_kv_head == 0 && a->q_len >= 1 && a->kv_len >= a->q_len &&
           a->head_dim >= 1 && a->window >= 0 &&
           (a->block_table == nullptr ||
            (a->kv_block_size >= 1 && a->kv_block_stride >= 0 && a->kv_len_dev == nullptr)) &&
           (a->segments == nullptr ||
            (a->block_table != nullptr && a->lse == nullptr && a->n_segments >= 1 &&
             a->n_segments <= 65535 && a->table_stride >= 0));
}

/* One call of a public entry point (fg_cuda_attention / _flash / mha / gqa
 * / gqa_window / gqa_lse and their _typed twins) on contiguous (heads,
 * rows, head_dim) tensors of element type dtype; the flags say which
 * optional arguments the form has. Every entry point fills one and runs it
 * through run_contiguous, so fp32 and 16-bit share checks and setup. */
struct contiguous_call {
    fg_dtype dtype;
    void *out;
    float *lse;
    const void *q, *k, *v;
    int n_q_head, n_kv_head, q_len, kv_len, head_dim;
    int block_size, window;
    bool flash, with_lse, windowed;
};

/* The fp32 checks (sizes in bytes of dtype), in the fp32 order, so that
 * every form refuses the same inputs with the same messages. */
fg_status check_contiguous(const char *fn, const contiguous_call &c)
{
    if (c.dtype != FG_DTYPE_F32 && c.dtype != FG_DTYPE_BF16 && c.dtype != FG_DTYPE_F16)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'dtype' is not an element type (%d)", fn,
                       (int)c.dtype);
    if (c.flash) FGI_TRY(fgi_check_min(fn, "block_size", c.block_size, 1));
    const size_t es = c.dtype == FG_DTYPE_F32 ? sizeof(float) : 2;
    FGI_TRY(fgi_check_attention_sized(fn, es, c.out, c.q, c.k, c.v, c.n_q_head, c.n_kv_head,
                                      c.q_len, c.kv_len, c.head_dim));
    if (c.windowed) FGI_TRY(fgi_check_min(fn, "window", c.window, 0));
    if (!c.with_lse) return FG_OK;
    FGI_TRY(fgi_check_ptr(fn, "lse", c.lse));
    /* Sizes were checked above, so these products fit. */
    const size_t lse_bytes = sizeof(float) * (size_t)c.n_q_head * (size_t)c.q_len;
    const size_t q_bytes = es * (size_t)c.n_q_head * (size_t)c.q_len * (size_t)c.head_dim;
    const size_t kv_bytes = es * (size_t)c.n_kv_head * (size_t)c.kv_len * (size_t)c.head_dim;
    FGI_TRY(fgi_check_disjoint(fn, "lse", c.lse, lse_bytes, "out", c.out, q_bytes));
    FGI_TRY(fgi_check_disjoint(fn, "lse", c.lse, lse_bytes, "q", c.q, q_bytes));
    FGI_TRY(fgi_check_disjoint(fn, "lse", c.lse, lse_bytes, "k", c.k, kv_bytes));
    return fgi_check_disjoint(fn, "lse", c.lse, lse_bytes, "v", c.v, kv_bytes);
}

fg_status run_contiguous(const char *fn, const contiguous_call &c, cudaStream_t stream)
{
    FGI_TRY(check_contiguous(fn, c));
    fgi_attention_args a = {};
    a.dtype = c.dtype;
    a.out = c.out;
    a.out_head_stride = (long long)c.q_len * c.head_dim;
    a.out_row_stride = c.head_dim;
    a.lse = c.with_lse ? c.lse : nullptr;
    a.q = c.q;
    a.q_head_stride = (long long)c.q_len * c.head_dim;
    a.q_row_stride = c.head_dim;
    a.k = c.k;
    a.v = c.v;
    a.kv_head_stride = (long long)c.kv_len * c.head_dim;
    a.n_q_head = c.n_q_head;
    a.n_kv_head = c.n_kv_head;
    a.q_len = c.q_len;
    a.kv_len = c.kv_len;
    a.head_dim = c.head_dim;
    a.block_size = c.flash ? c.block_size : 0;
    a.window = c.windowed ? c.window : 0;
    return fgi_cuda_attention(fn, &a, nullptr, 0, stream);
}

/* The call of the forms without lse, window or block_size. */
contiguous_call plain_call(fg_dtype dtype, void *out, const void *q, const void *k,
                           const void *v, int n_q_head, int n_kv_head, int q_len, int kv_len,
                           int head_dim)
{
    contiguous_call c = {};
    c.dtype = dtype;
    c.out = out;
    c.q = q;
    c.k = k;
    c.v = v;
    c.n_q_head = n_q_head;
    c.n_kv_head = n_kv_head;
    c.q_len = q_len;
    c.kv_len = kv_len;
    c.head_dim = head_dim;
    return c;
}

} // namespace

fg_status fgi_launch_query_tiles(const char *fn, void (*kernel)(fgi_attention_problem),
                                 const char *kernel_name, size_t smem, int rows_per_block,
                                 const fgi_attention_problem &p, cudaStream_t stream)
{
    if (smem > 48 * 1024)
        FGI_CUDA_TRY(fn, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)smem));
    const long long blocks = (long long)p.n_q_head * ceil_div_ll(p.q_len, rows_per_block);
    cudaLaunchConfig_t cfg = {};
    const int rows = p.segments != nullptr ? p.n_segments : p.n_splits;
    cfg.gridDim = dim3((unsigned)blocks, (unsigned)rows, 1);
    cfg.blockDim = dim3(FGI_ATTENTION_THREADS, 1, 1);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    FGI_CUDA_TRY(fn, cudaLaunchKernelEx(&cfg, kernel, p));
    FGI_CUDA_LAUNCHED(fn, kernel_name);
    return FG_OK;
}

extern "C" size_t fgi_cuda_attention_workspace_bound(int n_q_head, int max_q_len,
                                                     int max_kv_len, int head_dim)
{
    if (n_q_head < 1 || max_q_len < 1 || max_kv_len < 1 || head_dim < 1) return 0;
    /* The automatic policy's limits (wanted_splits); +16 for alignment. */
    long long splits = max_kv_len / kMinSplitKeys;
    if (splits > kMaxSplits) splits = kMaxSplits;
    if (splits < 2) return 0;
    const long long rows = (long long)n_q_head * max_q_len;
    const long long part_rows =
        rows >= kSplitRowBudget / splits ? kSplitRowBudget : rows * splits;
    return FGI_SPLIT_COUNTER_BYTES + (size_t)part_rows * split_bytes_per_row(head_dim) + 16;
}

extern "C" fg_status fgi_cuda_attention_tuned(const char *fn, const fgi_attention_args *a,
                                              fgi_attention_tuning *tuning, void *workspace,
                                              size_t workspace_bytes, cudaStream_t stream)
{
    if (!sane(a))
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: invalid attention arguments (internal call)", fn);
    if (a->dtype != FG_DTYPE_F32) {
        if (tuning != nullptr)
            return fgi_fail(FG_ERR_UNSUPPORTED, "%s: %s attention takes no tuning request", fn,
                           fg_dtype_name(a->dtype));
        return fgi_cuda_attention16(fn, a, stream);
    }
    if (a->block_table != nullptr && a->kv_block_stride % 4 != 0)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: invalid block table arguments (internal call)",
                       fn);
    if (a->kv_len > kMaxKvLen)
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: kv_len %d is above the supported %d", fn,
                       a->kv_len, kMaxKvLen);
    device_limits lim = {};
    FGI_TRY(query_device(fn, &lim));
    kernel_choice choice = {};
    FGI_TRY(choose_kernel(fn, a, tuning ? tuning->kernel : FGI_ATTENTION_AUTO, lim, &choice));

    if (a->kv_len_dev != nullptr && choice.kernel != FGI_ATTENTION_DECODE)
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: a device-side key count needs the decode kernel (head_dim %d, %d "
                       "query rows per KV head)",
                       fn, a->head_dim, a->n_q_head / a->n_kv_head * a->q_len);
    fgi_attention_problem p = make_problem(a);
    if (tuning != nullptr && tuning->decode_lanes != 0) {
        p.decode_lanes = tuning->decode_lanes;
        if (choice.kernel != FGI_ATTENTION_DECODE || !fgi_decode_supported(p))
            return fgi_fail(FG_ERR_UNSUPPORTED,
                           "%s: no decode kernel with %d lanes per key for head_dim %d", fn,
                           p.decode_lanes, a->head_dim);
    }
    if (blocks_per_split(p, choice) > INT_MAX)
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: %d heads x %d query rows need too many blocks",
                       fn, a->n_q_head, a->q_len);
    const int granule = choice.key_tile > 0 ? choice.key_tile : 32; /* tiled, mma: whole tiles */
    const long long keys = plan_keys(p, choice);
    long long want =
        wanted_splits(p, choice, tuning ? tuning->n_splits : 0, lim.sm_count, granule, keys);
    if (a->block_table != nullptr) want = 1; /* paged: unsplit, a row's bits its own */

    /* Workspace: the caller's (aligned, capped), else stream-ordered scratch. */
    const size_t per_split = (size_t)p.n_q_head * p.q_len * split_bytes_per_row(p.head_dim);
    void *scratch = nullptr;
    if (want > 1 && workspace != nullptr) {
        const uintptr_t at = ((uintptr_t)workspace + 15u) & ~(uintptr_t)15u;
        const size_t lost = at - (uintptr_t)workspace;
        size_t usable = workspace_bytes > lost ? workspace_bytes - lost : 0;
        usable = usable > FGI_SPLIT_COUNTER_BYTES ? usable - FGI_SPLIT_COUNTER_BYTES : 0;
        if ((size_t)want > usable / per_split) want = (long long)(usable / per_split);
        workspace = (void *)at;
    }
    set_splits(&p, want, granule, keys);
    if (p.n_splits > 1 && workspace == nullptr) {
        if (cudaMallocAsync(&scratch, FGI_SPLIT_COUNTER_BYTES + per_split * p.n_splits, stream) !=
                cudaSuccess ||
            cudaMemsetAsync(scratch, 0, FGI_SPLIT_COUNTER_BYTES, stream) != cudaSuccess) {
            (void)cudaGetLastError(); /* no pool or no memory: run unsplit instead */
            if (scratch != nullptr) (void)cudaFreeAsync(scratch, stream);
            scratch = nullptr;
            set_splits(&p, 1, granule, keys);
        }
        workspace = scratch;
    }
    if (p.n_splits > 1) place_partials(&p, workspace, blocks_per_split(p, choice), choice.kernel);

    fg_status st = launch_all(fn, p, choice, stream);
    if (scratch != nullptr) {
        const cudaError_t err = cudaFreeAsync(scratch, stream);
        if (err != cudaSuccess && st == FG_OK)
            st = fgi_fail(FG_ERR_CUDA, "%s: cudaFreeAsync failed: %s", fn, cudaGetErrorString(err));
    }
    if (st == FG_OK && tuning != nullptr) {
        tuning->used_kernel = choice.kernel;
        tuning->used_splits = p.n_splits;
    }
    return st;
}

extern "C" fg_status fgi_cuda_attention(const char *fn, const fgi_attention_args *a,
                                        void *workspace, size_t workspace_bytes,
                                        cudaStream_t stream)
{
    return fgi_cuda_attention_tuned(fn, a, nullptr, workspace, workspace_bytes, stream);
}

extern "C" fg_status fgi_cuda_attention16(const char *fn, const fgi_attention16_args *a,
                                          cudaStream_t stream)
{
    if (!sane(a))
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: invalid attention arguments (internal call)", fn);
    if (a->dtype != FG_DTYPE_BF16 && a->dtype != FG_DTYPE_F16)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the 16-bit attention kernel takes bf16 or f16, "
                                            "not %s", fn, fg_dtype_name(a->dtype));
    if (a->kv_len_dev != nullptr)
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: %s attention takes its key count from the host",
                       fn, fg_dtype_name(a->dtype));
    /* Every 16-bit caller (the typed entry points, the decoder, the
     * benchmark) comes through here; fgi_launch_attention16 checks what the
     * kernels need and picks the sm_80 or the Hopper (sm_90a) kernel by the
     * device's compute capability and head_dim (fgi_attention16_pick). */
    return fgi_launch_attention16(fn, a, stream);
}

/* Public entry points: each fp32 function and its _typed twin are the same
 * call with dtype given or FG_DTYPE_F32. */

extern "C" fg_status fg_cuda_attention(float *out, const float *q, const float *k,
                                       const float *v, int q_len, int kv_len, int head_dim,
                                       cudaStream_t stream)
{
    return run_contiguous("fg_cuda_attention",
                          plain_call(FG_DTYPE_F32, out, q, k, v, 1, 1, q_len, kv_len, head_dim),
                          stream);
}

extern "C" fg_status fg_cuda_attention_typed(fg_dtype dtype, void *out, const void *q,
                                             const void *k, const void *v, int q_len, int kv_len,
                                             int head_dim, cudaStream_t stream)
{
    return run_contiguous("fg_cuda_attention_typed",
                          plain_call(dtype, out, q, k, v, 1, 1, q_len, kv_len, head_dim), stream);
}

namespace {
fg_status flash(const char *fn, fg_dtype dtype, void *out, const void *q, const void *k,
                const void *v, int q_len, int kv_len, int head_dim, int block_size,
                cudaStream_t stream)
{
    contiguous_call c = plain_call(dtype, out, q, k, v, 1, 1, q_len, kv_len, head_dim);
    c.flash = true;
    c.block_size = block_size;
    return run_contiguous(fn, c, stream);
}

fg_status gqa_lse(const char *fn, fg_dtype dtype, void *out, float *lse, const void *q,
                  const void *k, const void *v, int n_q_head, int n_kv_head, int q_len,
                  int kv_len, int head_dim, cudaStream_t stream)
{
    contiguous_call c =
        plain_call(dtype, out, q, k, v, n_q_head, n_kv_head, q_len, kv_len, head_dim);
    c.with_lse = true;
    c.lse = lse;
    return run_contiguous(fn, c, stream);
}
} // namespace

extern "C" fg_status fg_cuda_attention_flash(float *out, const float *q, const float *k,
                                             const float *v, int q_len, int kv_len,
                                             int head_dim, int block_size,
                                             cudaStream_t stream)
{
    return flash("fg_cuda_attention_flash", FG_DTYPE_F32, out, q, k, v, q_len, kv_len, head_dim,
                 block_size, stream);
}

extern "C" fg_status fg_cuda_attention_flash_typed(fg_dtype dtype, void *out, const void *q,
                                                   const void *k, const void *v, int q_len,
                                                   int kv_len, int head_dim, int block_size,
                                                   cudaStream_t stream)
{
    return flash("fg_cuda_attention_flash_typed", dtype, out, q, k, v, q_len, kv_len, head_dim,
                 block_size, stream);
}

extern "C" fg_status fg_cuda_mha(float *out, const float *q, const float *k, const float *v,
                                 int n_head, int q_len, int kv_len, int head_dim,
                                 cudaStream_t stream)
{
    return run_contiguous("fg_cuda_mha",
                          plain_call(FG_DTYPE_F32, out, q, k, v, n_head, n_head, q_len, kv_len,
                                     head_dim),
                          stream);
}

extern "C" fg_status fg_cuda_mha_typed(fg_dtype dtype, void *out, const void *q, const void *k,
                                       const void *v, int n_head, int q_len, int kv_len,
                                       int head_dim, cudaStream_t stream)
{
    return run_contiguous("fg_cuda_mha_typed",
                          plain_call(dtype, out, q, k, v, n_head, n_head, q_len, kv_len, head_dim),
                          stream);
}

extern "C" fg_status fg_cuda_gqa(float *out, const float *q, const float *k, const float *v,
                                 int n_q_head, int n_kv_head, int q_len, int kv_len,
                                 int head_dim, cudaStream_t stream)
{
    return run_contiguous("fg_cuda_gqa",
                          plain_call(FG_DTYPE_F32, out, q, k, v, n_q_head, n_kv_head, q_len,
                                     kv_len, head_dim),
                          stream);
}

extern "C" fg_status fg_cuda_gqa_typed(fg_dtype dtype, void *out, const void *q, const void *k,
                                       const void *v, int n_q_head, int n_kv_head, int q_len,
                                       int kv_len, int head_dim, cudaStream_t stream)
{
    return run_contiguous("fg_cuda_gqa_typed",
                          plain_call(dtype, out, q, k, v, n_q_head, n_kv_head, q_len, kv_len,
                                     head_dim),
                          stream);
}

extern "C" fg_status fg_cuda_gqa_window(float *out, const float *q, const float *k,
                                        const float *v, int n_q_head, int n_kv_head, int q_len,
                                        int kv_len, int head_dim, int window,
                                        cudaStream_t stream)
{
    contiguous_call c = plain_call(FG_DTYPE_F32, out, q, k, v, n_q_head, n_kv_head, q_len,
                                   kv_len, head_dim);
    c.windowed = true;
    c.window = window;
    return run_contiguous("fg_cuda_gqa_window", c, stream);
}

extern "C" fg_status fg_cuda_gqa_lse(float *out, float *lse, const float *q, const float *k,
                                     const float *v, int n_q_head, int n_kv_head, int q_len,
                                     int kv_len, int head_dim, cudaStream_t stream)
{
    return gqa_lse("fg_cuda_gqa_lse", FG_DTYPE_F32, out, lse, q, k, v, n_q_head, n_kv_head, q_len,
                   kv_len, head_dim, stream);
}

extern "C" fg_status fg_cuda_gqa_lse_typed(fg_dtype dtype, void *out, float *lse, const void *q,
                                           const void *k, const void *v, int n_q_head,
                                           int n_kv_head, int q_len, int kv_len, int head_dim,
                                           cudaStream_t stream)
{
    return gqa_lse("fg_cuda_gqa_lse_typed", dtype, out, lse, q, k, v, n_q_head, n_kv_head, q_len,
                   kv_len, head_dim, stream);
}
