/* Shared pieces of the attention kernels (cuda/attention_*.cu): the problem
 * description every kernel receives, the split-KV partial layout, small
 * device helpers, and the launchers that cuda/attention/attention.cu dispatches to.
 *
 * Conventions: scores are kept in log2 units. q is multiplied once by
 * q_scale = log2(e) / sqrt(head_dim), so exp(score) == exp2(q_scaled . k)
 * and the log-sum-exp in natural log is (m + log2(l)) * ln 2 for a running
 * max m and running sum l. A row's keys are j <= i + shift (shift = kv_len -
 * q_len, bottom-right causal alignment); with a sliding window W >= 1 also
 * j > i + shift - W (fgi_window_first_key). Split-KV: split s covers keys
 * [s*keys_per_split, (s+1)*keys_per_split) and writes its unnormalised
 * output, max and sum per row; combine_splits merges them. The running
 * max / sum arithmetic itself is softmax_state.cuh's. */
#ifndef FLASHGPT_CUDA_ATTENTION_KERNELS_CUH
#define FLASHGPT_CUDA_ATTENTION_KERNELS_CUH

#include "attention_internal.h"
#include "cuda_common.cuh"
#include "flashgpt/dtype.h"
#include "reduce.cuh"
#include "softmax_state.cuh"

#include <limits.h>
#include <math.h>

#include <type_traits>

struct fgi_attention_problem {
    float *out;
    long long out_head_stride, out_row_stride;
    float *lse; /* (n_q_head, q_len) or NULL */
    const float *q;
    long long q_head_stride, q_row_stride;
    const float *k, *v;
    long long kv_head_stride;
    int n_q_head, n_kv_head, group, q_len, kv_len, head_dim, shift;
    int window; /* sliding window W >= 1, or 0: none */
    float q_scale; /* log2(e) / sqrt(head_dim) */
    int n_splits, keys_per_split;
    /* Device key count read at run time, or NULL (see fgi_attention_args);
     * with it the kernel derives kv_len, shift and keys_per_split itself. */
    const int *kv_len_dev;
    int split_granule; /* keys_per_split is a multiple of this */
    /* Decode kernel with splits: one zeroed int per block of a split (grid
     * x). The last block of a column to finish merges all the column's
     * splits itself and resets its int, so no combine launch follows; NULL:
     * combine_splits merges. */
    int *split_counters;
    int decode_lanes; /* decode kernel: lanes per key requested (0: automatic) */
    /* Batched decode (fgi_cuda_decode_attention), decode kernel only: */
    fg_dtype dtype; /* storage type of q, k, v and out (F32 for every other
                     * kernel); the pointers above then hold that type */
    const int *kv_lens; /* device key count per sequence, or NULL; with it
                         * sequence b owns kv heads [b*seq_kv_heads,
                         * (b+1)*seq_kv_heads), its count clamped to
                         * 1..kv_capacity, and kv_len only sizes the plan */
    int seq_kv_heads, kv_capacity;
    int split_min_keys; /* derived splits keep at least this many keys */
    /* Paged cache, or NULL: k and v are pools (n_blocks, seq_kv_heads,
     * block_size, head_dim) and key j of sequence b is row j % block_size
     * of block block_tables[b*max_blocks + j/block_size] (clamped to
     * 0..n_blocks-1); block_size is a multiple of the decode stage. */
    const int *block_tables;
    int n_blocks, block_size, max_blocks;
    /* Split-KV partials, row index (split*n_q_head + h)*q_len + i: */
    float *part_o; /* (n_splits, n_q_head, q_len, head_dim) unnormalised */
    float *part_m; /* (n_splits, n_q_head, q_len) running max, log2 units */
    float *part_l; /* (n_splits, n_q_head, q_len) running sum */
    /* The mma prefill kernel's paged pool (fgi_attention_args.block_table,
     * one table: block_tables, block_size and this stride between blocks);
     * last, so the other kernels' parameter offsets stay as they were */
    long long kv_block_stride;
    /* Several prompt chunks in one paged mma launch, or NULL: grid row y is
     * chunk y of segments (first row, rows, first position; see
     * fgi_attention_args), its block table table_stride ints per row
     * further down; q_len and kv_len are the largest chunk's. */
    const int *segments;
    int n_segments, table_stride;
};

/* Most key splits of one call. */
#define FGI_MAX_SPLITS 128
/* Counters at the start of every attention workspace (decode merging). */
#define FGI_SPLIT_COUNTERS 4096
#define FGI_SPLIT_COUNTER_BYTES (FGI_SPLIT_COUNTERS * 4)
#define FGI_ATTENTION_THREADS 128 /* every attention kernel runs 4 warps per block */
/* Keys per stage of the decode kernel's ring: its split bounds and the
 * first key of a window round to it, so with a window W the decode splits
 * share out at most W + q_len - 1 + FGI_DECODE_STAGE_KEYS - 1 keys. */
#define FGI_DECODE_STAGE_KEYS 16

/* The block's dynamic shared memory (sized at launch), 16-byte aligned. */
__device__ __forceinline__ float *fgi_attention_smem()
{
    extern __shared__ float4 fgi_attention_smem_base[];
    return reinterpret_cast<float *>(fgi_attention_smem_base);
}

/* Keys per split when kv_len keys go to `parts` splits: ceil(kv_len /
 * parts) rounded up to whole granules. The host's split plan (long long)
 * and the kernels reading a device key count (int: no 64-bit division on
 * the device) both use it. */
template <typename I>
__host__ __device__ __forceinline__ I fgi_keys_per_split(I kv_len, I parts, I granule)
{
    const I per = (kv_len + parts - 1) / parts;
    return (per + granule - 1) / granule * granule;
}

/* The key count, causal shift and keys per split of this launch: the
 * problem's, or derived from the device key count (kv_len_dev, or kv_lens
 * for sequence `seq`) as the host's split plan would (fgi_keys_per_split
 * over the planned n_splits). first: the first key of split 0, the first
 * key any row sees (window) rounded down to a multiple of `align`, so split
 * s covers [first + s*keys_per_split, ...) and only window keys are split. */
struct fgi_key_plan {
    int kv_len, shift, keys_per_split, first;
};

__device__ __forceinline__ fgi_key_plan fgi_plan_keys(const fgi_attention_problem &p, int seq = 0,
                                                      int align = 1)
{
    if (p.kv_len_dev == nullptr && p.kv_lens == nullptr && p.window == 0)
        return {p.kv_len, p.shift, p.keys_per_split, 0};
    int kv_len = p.kv_len;
    if (p.kv_lens != nullptr)
        kv_len = min(max(p.kv_lens[seq], 1), p.kv_capacity);
    else if (p.kv_len_dev != nullptr)
        kv_len = *p.kv_len_dev;
    const int shift = kv_len - p.q_len;
    const int first = p.window > 0 ? max(shift + 1 - p.window, 0) / align * align : 0;
    const int per = fgi_keys_per_split(kv_len - first, p.n_splits, p.split_granule);
    return {kv_len, shift, max(per, p.split_min_keys), first};
}

/* The first key query row `row` sees: with a window W >= 1 the keys
 * j > row + shift - W, else every key from 0. */
__device__ __forceinline__ int fgi_window_first_key(int window, int row, int shift)
{
    return window > 0 ? max(0, row + shift - window + 1) : 0;
}

/* Key minus row at or below which a key is outside the window (key - row
 * <= shift - W), or a bound no key - row reaches (no window): the query-tile
 * kernels' lower mask edge, next to the causal edge key - row > shift. */
__device__ __forceinline__ int fgi_window_edge(const fgi_attention_problem &p)
{
    return p.window > 0 ? p.shift - p.window : INT_MIN / 2;
}

/* The work of one block of a query-tile kernel (tiled, mma): query rows
 * [q0, q0 + rows_per_block) of query head `head`, keys [key_begin, key_end)
 * of its split. The last query tiles go first (causal work grows with the
 * query index); the keys stop after the last one the tile's last row sees,
 * so tiles wholly above the diagonal are never loaded; with a window they
 * start at the first key the tile's first row sees, so tiles wholly below
 * the window are never loaded either. split: the block's split (grid row
 * y, or 0 where grid rows are prompt chunks). */
struct fgi_tile_work {
    int head, kv_head, split, q0, key_begin, key_end;
};

__device__ __forceinline__ fgi_tile_work fgi_query_tile_work(const fgi_attention_problem &p,
                                                            int rows_per_block, int split)
{
    fgi_tile_work w;
    const int n_q_tiles = (p.q_len + rows_per_block - 1) / rows_per_block;
    w.head = (int)(blockIdx.x % (unsigned)p.n_q_head);
    w.kv_head = w.head / p.group;
    w.split = split;
    w.q0 = (n_q_tiles - 1 - (int)(blockIdx.x / (unsigned)p.n_q_head)) * rows_per_block;
    const int split_begin = w.split * p.keys_per_split;
    const int rows_end = min(w.q0 + rows_per_block, p.q_len);
    w.key_begin = max(split_begin, fgi_window_first_key(p.window, w.q0, p.shift));
    w.key_end = min(split_begin + min(p.keys_per_split, p.kv_len - split_begin),
                    rows_end + p.shift);
    return w;
}

/* Row index of query (h, i) in the partial arrays of split s. */
__device__ __forceinline__ long long fgi_part_row(const fgi_attention_problem &p, int s,
                                                  int h, int i)
{
    return ((long long)s * p.n_q_head + h) * p.q_len + i;
}

__device__ __forceinline__ float4 fgi_scale4(float4 a, float s)
{
    return make_float4(a.x * s, a.y * s, a.z * s, a.w * s);
}

__device__ __forceinline__ float fgi_dot4(float4 a, float4 b, float acc)
{
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
    acc = fmaf(a.z, b.z, acc);
    return fmaf(a.w, b.w, acc);
}

/* Host dispatch from a run-time head_dim to a kernel family's compile-time
 * instantiations: calls body(std::integral_constant<int, D>()) for the D of
 * Ds equal to head_dim and returns its result; `none` when none matches. */
template <int... Ds, typename R, typename Body>
R fgi_for_head_dim(int head_dim, R none, Body body)
{
    R result = none;
    (void)((head_dim == Ds ? (result = body(std::integral_constant<int, Ds>()), true) : false) ||
           ...);
    return result;
}

/* Launchers (host). Each checks its launch and returns FG_ERR_CUDA on
 * failure; the problem is already validated and its splits chosen. */

/* The launch of the query-tile kernels (tiled, mma): a block per
 * rows_per_block query rows of each head (grid x), the key splits (or, with
 * segments, the prompt chunks) in grid y, `smem` dynamic shared bytes (the
 * opt-in limit raised above 48 KiB). */
fg_status fgi_launch_query_tiles(const char *fn, void (*kernel)(fgi_attention_problem),
                                 const char *kernel_name, size_t smem, int rows_per_block,
                                 const fgi_attention_problem &p, cudaStream_t stream);

/* Tiled flash kernel: head_dim 32, 64, 80, 96, 128 or 256; key tile
 * key_tile (16, 32 or 64; 64 not for head_dim 256). */
fg_status fgi_launch_tiled(const char *fn, const fgi_attention_problem &p, int key_tile,
                           cudaStream_t stream);
/* Query rows of the tiled kernel per block for this head_dim. */
int fgi_tiled_rows(int head_dim);
/* Dynamic shared memory bytes of the tiled kernel. */
size_t fgi_tiled_smem_bytes(int head_dim, int key_tile);

/* Tensor-core (3xTF32) flash kernel: head_dim 32, 64, 80, 96 or 128; key
 * tile key_tile (32 or 64). */
fg_status fgi_launch_mma(const char *fn, const fgi_attention_problem &p, int key_tile,
                         cudaStream_t stream);
bool fgi_mma_supported(int head_dim);
/* Query rows of the mma kernel per block, its default key tile and its
 * dynamic shared memory bytes (0 where unsupported). */
int fgi_mma_rows(int head_dim);
int fgi_mma_default_key_tile(int head_dim);
size_t fgi_mma_smem_bytes(int head_dim, int key_tile);

/* Decode kernel (head_dim % 4 == 0, <= 256): one block per (kv head, chunk
 * of packed query rows, split). */
fg_status fgi_launch_decode(const char *fn, const fgi_attention_problem &p,
                            cudaStream_t stream);
/* Whether the decode kernel has an instantiation for the problem (its
 * head_dim and decode_lanes request). */
bool fgi_decode_supported(const fgi_attention_problem &p);
/* Blocks of the decode kernel per split (kv heads x row chunks). */
long long fgi_decode_blocks(const fgi_attention_problem &p);
/* Decode blocks resident per SM, by shared memory (at most 4). */
int fgi_decode_blocks_per_sm(const fgi_attention_problem &p);

/* Generic kernel (any head_dim <= FGI_GENERIC_MAX_HEAD_DIM): a warp per row. */
#define FGI_GENERIC_MAX_HEAD_DIM 1024
fg_status fgi_launch_generic(const char *fn, const fgi_attention_problem &p,
                             cudaStream_t stream);
long long fgi_generic_blocks(const fgi_attention_problem &p);

/* Merges the split partials into out (and lse). */
fg_status fgi_launch_combine(const char *fn, const fgi_attention_problem &p,
                             cudaStream_t stream);

/* The fields every 16-bit prefill problem (the sm_80 kernel's and the
 * Hopper kernel's) takes from the call as they are: output, its strides
 * and lse, heads, GQA group, lengths, causal shift, window, and the score
 * scale in log2 units. */
template <typename Problem>
inline void fgi_attention16_common(Problem &p, const fgi_attention16_args *a)
{
    p.out = a->out;
    p.out_head_stride = a->out_head_stride;
    p.out_row_stride = a->out_row_stride;
    p.lse = a->lse;
    p.n_q_head = a->n_q_head;
    p.group = a->n_q_head / a->n_kv_head;
    p.q_len = a->q_len;
    p.kv_len = a->kv_len;
    p.shift = a->kv_len - a->q_len;
    p.window = a->window;
    p.scale_log2 = (float)(1.4426950408889634 / sqrt((double)a->head_dim));
}

#endif /* FLASHGPT_CUDA_ATTENTION_KERNELS_CUH */
