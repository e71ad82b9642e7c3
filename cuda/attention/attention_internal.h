/* Internal interface of the attention kernels (cuda/attention/attention.cu), used by
 * the public fg_cuda_attention / _flash / mha / gqa / gqa_lse entry points
 * (fp32 and _typed), and by the GPU decoder, which reads q straight out of
 * its fused q|k|v projection and writes each head into its columns of the
 * merged output.
 *
 * Layout, in elements of dtype: query row i of head h is at
 *   q + h*q_head_stride + i*q_row_stride          (head_dim contiguous elements)
 * its output at out + h*out_head_stride + i*out_row_stride; key/value row j of
 * kv head g at k + g*kv_head_stride + j*head_dim (rows contiguous; the
 * decoder's cache has kv_head_stride = capacity*head_dim). Query head h reads
 * kv head h / (n_q_head / n_kv_head). Causal, bottom-right aligned (with an
 * optional sliding window), scale 1/sqrt(head_dim). A batch folds into the head axis (B*H query heads,
 * B*H_kv kv heads) because groups are contiguous. */
#ifndef FLASHGPT_CUDA_ATTENTION_INTERNAL_H
#define FLASHGPT_CUDA_ATTENTION_INTERNAL_H

#include "flashgpt/cuda.h"
#include "flashgpt/dtype.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    /* Element type of q, k, v and out (lse is fp32 in every type); 0 is
     * FG_DTYPE_F32, so a zero-filled struct is an fp32 call. bf16 / f16
     * run the 16-bit kernels (fgi_cuda_attention16), which need strides in
     * multiples of 8 elements, 16-byte aligned tensors and no kv_len_dev,
     * and ignore block_size. */
    fg_dtype dtype;
    void *out;
    long long out_head_stride, out_row_stride;
    float *lse; /* (n_q_head, q_len) natural-log log-sum-exp, or NULL */
    const void *q;
    long long q_head_stride, q_row_stride;
    const void *k, *v;
    long long kv_head_stride;
    int n_q_head, n_kv_head, q_len, kv_len, head_dim;
    int block_size; /* key tile request; 0: the kernel's default */
    /* Sliding window: query row i (position i + kv_len - q_len) sees only
     * its last `window` keys; 0: no window. */
    int window;
    /* Device int or NULL. Set, the kernels read the key count from it at
     * run time (at most kv_len, which then only sizes the split plan), so a
     * captured CUDA graph serves every step; fp32 decode kernel only. */
    const int *kv_len_dev;
    /* Paged K/V (the batched forward's prompt chunks), or NULL: block_table
     * (device int32, ceil(kv_len / kv_block_size) entries) names the pool
     * block of every kv_block_size keys; key j of kv head g is then at
     * k + block_table[j / kv_block_size] * kv_block_stride + g *
     * kv_head_stride + (j % kv_block_size) * head_dim (the paged pool of
     * host/runtime/kv_paged.h: kv_block_stride = n_kv_head * kv_block_size
     * * head_dim, kv_head_stride = kv_block_size * head_dim); v likewise.
     * Prefill kernels only (fp32: the mma kernel, unsplit), their key tiles
     * on a fixed grid from key 0, so a query row's bits depend on its own
     * keys only, never on the rows sharing the call: a prompt gives the
     * same bits however it is cut into chunks. */
    const int *block_table;
    int kv_block_size;
    long long kv_block_stride;
    /* Several sequences' prompt chunks in one paged launch, or NULL:
     * segments (n_segments, 3) device ints, per chunk its first row r in q
     * and out, its row count m and its first position p0. Chunk s is then
     * the call above with q and out moved down r rows, q_len = m, kv_len =
     * p0 + m, and its block table at block_table + r * table_stride (the
     * batched forward keeps one table per row). q_len is the largest m (it
     * sizes the grid); lse must be NULL. */
    const int *segments;
    int n_segments, table_stride;
} fgi_attention_args;

/* Device scratch bytes enough for any call with at most these sizes (the
 * split-KV partials and the decode kernel's merge counters). The decoder
 * allocates this once. A workspace must be zero-filled once when it is
 * allocated: the counters at its start are left at zero by every call. */
size_t fgi_cuda_attention_workspace_bound(int n_q_head, int max_q_len,
                                          int max_kv_len, int head_dim);

/* Enqueues attention for already-validated arguments, fp32 or 16-bit by
 * a->dtype. workspace (fp32 only: the 16-bit kernels split no keys): at
 * least fgi_cuda_attention_workspace_bound(...) bytes for these sizes, or
 * NULL to have the call take (and release) stream-ordered scratch itself.
 * Returns FG_ERR_UNSUPPORTED for a head_dim without a kernel. */
fg_status fgi_cuda_attention(const char *fn, const fgi_attention_args *a,
                             void *workspace, size_t workspace_bytes,
                             cudaStream_t stream);

/* For tests and benchmarks: pick a kernel and a split count instead of the
 * automatic choice, and learn what ran. */
typedef enum {
    FGI_ATTENTION_AUTO = 0,
    FGI_ATTENTION_TILED = 1,   /* tiled flash kernel: head_dim 32, 64, 80, 96,
                                  128 or 256 with 16-byte aligned rows */
    FGI_ATTENTION_DECODE = 2,  /* query rows of a KV group packed together:
                                  head_dim % 4 == 0, <= 256, aligned rows */
    FGI_ATTENTION_GENERIC = 3, /* any head_dim up to 1024, any alignment */
    FGI_ATTENTION_MMA = 4      /* 3xTF32 tensor cores: head_dim 32, 64, 80, 96
                                  or 128 with 16-byte aligned rows */
} fgi_attention_kernel;

typedef struct {
    fgi_attention_kernel kernel; /* request; AUTO: the dispatcher decides */
    int n_splits;                /* request; 0: automatic, >= 1: split the keys
                                    into about this many parts (capped by the
                                    key count and the workspace) */
    fgi_attention_kernel used_kernel; /* out: the kernel that ran */
    int used_splits;                  /* out: the key splits that ran */
    int decode_lanes; /* request; 0: automatic, 8 or 16: lanes of a warp per key
                         in the decode kernel (8 only for head_dim <= 128) */
} fgi_attention_tuning;

/* fgi_cuda_attention with an optional tuning request (NULL: automatic).
 * A kernel that cannot serve these arguments is FG_ERR_UNSUPPORTED; so is
 * any request on a 16-bit call (one kernel per card serves those). */
fg_status fgi_cuda_attention_tuned(const char *fn, const fgi_attention_args *a,
                                   fgi_attention_tuning *tuning, void *workspace,
                                   size_t workspace_bytes, cudaStream_t stream);

/* 16-bit attention: the same arguments with dtype bf16 or f16 (window: 0
 * for plain causal attention; W > 0 limits query row i to keys
 * i + shift - W < j <= i + shift, shift = kv_len - q_len). The name is
 * kept for the callers written before the two paths shared one struct. */
typedef fgi_attention_args fgi_attention16_args;

/* Whether the 16-bit kernel has an instantiation for head_dim (32, 64, 80,
 * 96, 128, 256). */
bool fgi_attention16_supported(int head_dim);

/* The 16-bit dispatch (attention.cu): the one place where a 16-bit call's
 * kernel is chosen for the card; fgi_cuda_attention sends every bf16 / f16
 * call here. Enqueues for already-validated arguments: FG_ERR_UNSUPPORTED
 * for a head_dim without a kernel or misaligned tensors, FG_ERR_CUDA
 * without a device; nothing is written then. */
fg_status fgi_cuda_attention16(const char *fn, const fgi_attention16_args *a,
                               cudaStream_t stream);

/* The checks both 16-bit kernels need (head_dim, 16-byte alignment, sizes,
 * the device), then the kernel fgi_attention16_pick names: the sm_80 one
 * (attention_mma16.cu, mma.sync m16n8k16; also runs on sm_90) or the
 * Hopper one. */
fg_status fgi_launch_attention16(const char *fn, const fgi_attention16_args *a,
                                 cudaStream_t stream);

/* The Hopper kernel (cuda/attention/attention_sm90.cu, sm_90a: wgmma, TMA,
 * warp-specialised ping-pong), head_dim 64 and 128. fgi_attention16_pick
 * says which kernel fgi_cuda_attention16 runs for head_dim on the current
 * device: 1 the sm_80 kernel, 2 the sm_90a one, -1 none (the sm_90a kernel
 * was forced but cannot run here). The choice is automatic (sm_90a on
 * compute capability 9.0 when this build has its code) unless
 * fgi_attention16_set_kernel (0 automatic, 1 sm_80, 2 sm_90a) or the
 * environment (FG_ATTENTION16_KERNEL=auto|sm80|sm90, read once) forces it.
 * fgi_cuda_attention16_sm90 launches it on arguments fgi_launch_attention16
 * has validated. */
void fgi_attention16_set_kernel(int which);
bool fgi_attention16_sm90_built(void);
int fgi_attention16_pick(int head_dim);
fg_status fgi_cuda_attention16_sm90(const char *fn, const fgi_attention16_args *a,
                                    cudaStream_t stream);
/* The sm_80 kernel on arguments fgi_launch_attention16 has validated. */
fg_status fgi_cuda_attention16_sm80(const char *fn, const fgi_attention16_args *a,
                                    cudaStream_t stream);

/* The Hopper kernel has never run on a card in this project's tests, so
 * the automatic pick trusts it per (device, dtype, head_dim) only after a
 * self-check: on first use both kernels run one small random problem
 * (GQA, causal, partial tiles) and must agree within relative L2 2e-2 (two
 * correct kernels differ by ~1e-3; a wrong descriptor, barrier or tile
 * gives order 1). Until then, while a stream is being captured, and after
 * a disagreement (reported once on stderr) the sm_80 kernel runs. A forced
 * sm_90a kernel (set_kernel 2, FG_ATTENTION16_KERNEL=sm90) is always
 * trusted. Test hooks: _selfcheck_state says 0 not run, 1 agreed, -1
 * disagreed (rel_l2, when not NULL, gets the measured difference);
 * _selfcheck_reset forgets every verdict and sets `perturb`, added to the
 * Hopper output before the comparison (0 for none). */
bool fgi_attention16_sm90_trusted(const char *fn, fg_dtype dtype, int head_dim,
                                  cudaStream_t stream);
int fgi_attention16_selfcheck_state(fg_dtype dtype, int head_dim, double *rel_l2);
void fgi_attention16_selfcheck_reset(double perturb);

/* Batched decode (one query row per sequence, cuda/attention/attention_decode_batch.cu,
 * public fg_cuda_decode_attention*): q and out (batch, n_q_head, head_dim),
 * the caches (batch, n_kv_head, capacity, head_dim), all of dtype;
 * kv_lens (batch) device key counts, each clamped to 1..capacity; window >
 * 0 keeps the last `window` keys of each sequence. The split count depends
 * on the shape and capacity only, a sequence's split bounds on its own key
 * count and the window (batch invariance: a sequence's result is the same
 * bit for bit whatever shares its batch, in whichever slot). */
typedef struct {
    fg_dtype dtype;
    void *out;
    const void *q, *k_cache, *v_cache;
    const int *kv_lens;
    int batch, n_q_head, n_kv_head, head_dim, capacity, window;
    int n_splits; /* request for tests and benchmarks; 0: automatic */
    /* Paged cache, or NULL: k_cache / v_cache are pools (n_blocks,
     * n_kv_head, block_size, head_dim) and block_tables (batch, max_blocks)
     * device int32 ids, key j of sequence b in block block_tables[b *
     * max_blocks + j / block_size] (block_size a multiple of 16); capacity
     * is then max_blocks * block_size (the field is not read). */
    const int *block_tables;
    int n_blocks, block_size, max_blocks;
} fgi_decode_args;

/* Workspace bytes with which a call with these arguments runs the whole
 * batch at once (0: it needs none); a smaller one, down to one sequence's
 * share, runs it in parts with the same results. Zero-fill a workspace
 * once when it is allocated. 0 too for arguments the call would refuse. */
size_t fgi_cuda_decode_workspace_bytes(const fgi_decode_args *a);

/* Validates a and enqueues the batched decode. workspace: see above, or
 * NULL to take stream-ordered scratch. *used_splits (may be NULL): the
 * split count of the plan. */
fg_status fgi_cuda_decode_attention(const char *fn, const fgi_decode_args *a, void *workspace,
                                    size_t workspace_bytes, int *used_splits,
                                    cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_CUDA_ATTENTION_INTERNAL_H */
