/* Flash attention in bf16 / f16 on the tensor cores (mma.sync m16n8k16,
 * sm_80 and later): the kernel behind every 16-bit attention call
 * (fgi_cuda_attention16 in attention.cu, then fgi_launch_attention16 here)
 * on every card but Hopper, where head_dim 64 and 128 go to the wgmma / TMA
 * kernel (attention_sm90.cu) unless the sm_80 kernel is forced
 * (fgi_attention16_pick).
 *
 * Conventions: q, k, v, out of element type T (__nv_bfloat16 or __half),
 * contiguous rows of head_dim elements (strides in elements); scores,
 * softmax state, accumulators and lse in fp32 (scores in log2 units,
 * softmax_state.cuh); causal with bottom-right alignment (row i sees keys
 * j <= i + kv_len - q_len), and with window W > 0 also j > i + shift - W.
 * Query head h reads KV head h / group (GQA in the kernel, no copies).
 *
 * Design (FlashAttention-2's sm_80 scheme): 4 warps, 16 query rows each
 * (BM = 64 per block); the warp's Q fragments stay in registers for the
 * whole block; BN-key tiles of K and V are double-buffered in shared memory
 * with cp.async (tile t + 1 loads while tile t computes) and read into
 * fragments with ldmatrix (.trans for V); S = Q K^T and O += P V are
 * m16n8k16 mma with fp32 accumulators; S's accumulator is P's A fragment
 * once converted to 16 bits in registers (pack2). Key tiles wholly above
 * the diagonal (or wholly before the window) are never visited; only tiles
 * crossing an edge are masked. Rows are padded by 8 elements (16 bytes) so
 * that the 8 row addresses of an ldmatrix hit 8 different bank groups.
 * Tiles: BN = 64 keys for head_dim <= 128, 32 for 256. At head_dim 256 the
 * O accumulators alone take 128 registers a thread and Q's fragments would
 * take 64 more (ptxas: 255 registers and spills), so there Q is parked in
 * shared memory instead and its fragments re-read with ldmatrix for every
 * key tile. No key splits: a prefill grid has enough blocks.
 * Paged (a block table, the batched forward's prompt chunks): the PAGED
 * instantiation reads key j from block table[j / block_size] of a pool,
 * row by row in the tile loads, and starts its key tiles at a multiple of
 * BN even under a window, so that a query row's arithmetic (its sequence
 * of key tiles) never depends on which rows share its launch: a prompt
 * gives the same bits however it is cut into chunks. Several sequences'
 * chunks go in one launch (fgi_attention_args.segments): grid row y is
 * chunk y, its rows, lengths and table read from the step's ints, and the
 * blocks past its own query tiles leave at once; a block's arithmetic is
 * that of a launch of its chunk alone. The contiguous instantiation is the
 * code it was. */
#include "attention_kernels.cuh"
#include "dtype.cuh"
#include "mma_f16.cuh"
#include "ops_internal.h"

#include <cuda_pipeline.h>
#include <limits.h>
#include <stdint.h>

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kWarpRows = 16;
constexpr int kRows = kWarps * kWarpRows; /* query rows per block */

/* The launch's view of the problem: pointers and strides in elements. */
struct problem16 {
    void *out;
    long long out_head_stride, out_row_stride;
    float *lse; /* (n_q_head, q_len) natural log, or NULL */
    const void *q;
    long long q_head_stride, q_row_stride;
    const void *k, *v;
    long long kv_head_stride;
    int n_q_head, group, q_len, kv_len, shift, window;
    float scale_log2; /* log2(e) / sqrt(head_dim): scores in log2 units */
};

/* PAGED only, a kernel parameter of its own (growing problem16 past 128
 * bytes changes the contiguous kernel's code): key j of kv head g at
 * k + table[j / block_size] * block_stride + g * kv_head_stride +
 * (j % block_size) * D. segments (or NULL): grid row y is chunk y of
 * fgi_attention_args.segments, with its table table_stride ints per row
 * further down. */
struct paged16 {
    const int *table;
    int block_size;
    long long block_stride;
    const int *segments;
    int table_stride;
};

constexpr int key_tile(int d) { return d > 128 ? 32 : 64; }

/* Blocks per SM that __launch_bounds__ makes ptxas aim for (its register
 * cap: 65536 / (128 x this)). Registers (ptxas -v, sm_80 and sm_90, no
 * spills): 123 at head_dim 32, 150-156 at 64, 166-168 at 80, 182-184 at
 * 96, 208-215 at 128, 240-242 at 256; shared memory on sm_90 (227 KiB)
 * holds 3 blocks at head_dim 128 (68 KiB each) and 2 at 256 (99 KiB). */
constexpr int min_blocks(int d) { return d <= 64 ? 3 : 2; }

template <int D>
struct Shape16 {
    static constexpr int BN = key_tile(D);
    static constexpr int KS = D / 16;  /* k steps of S = Q K^T */
    static constexpr int NT = BN / 8;  /* n tiles of S */
    static constexpr int PK = BN / 16; /* k steps of P V */
    static constexpr int NO = D / 8;   /* n tiles of O */
    static constexpr int PITCH = D + 8;
    static constexpr int TILE = BN * PITCH; /* elements of one K or V tile */
    static constexpr int CHUNKS = D / 8;    /* 16-byte chunks per row */
    static constexpr bool Q_IN_REGS = D <= 128;
    /* K and V double-buffered, then Q (kRows, PITCH) where it is parked */
    static constexpr int ELEMS = 4 * TILE + (Q_IN_REGS ? 0 : kRows * PITCH);
    static_assert(D % 16 == 0 && BN % 16 == 0, "whole m16n8k16 steps");
    static_assert((PITCH / 8) % 2 == 1, "an odd number of 16-byte chunks per row");
};

template <int D>
constexpr size_t smem_bytes()
{
    return (size_t)Shape16<D>::ELEMS * 2; /* 2-byte elements */
}

/* Enqueues keys (or values) [key0, key0 + BN) of one head into a padded
 * tile; rows at or past key_end are zero-filled (masked keys must meet no
 * NaN: 0 * NaN would poison the row). */
template <typename T, int D, int ROWS = Shape16<D>::BN>
__device__ __forceinline__ void load_tile(T *tile, const T *head, int key0, int key_end,
                                          long long row_stride = D)
{
    using S = Shape16<D>;
    for (int idx = (int)threadIdx.x; idx < ROWS * S::CHUNKS; idx += kThreads) {
        const int r = idx / S::CHUNKS, c = idx % S::CHUNKS;
        T *dst = tile + r * S::PITCH + 8 * c;
        if (key0 + r < key_end)
            fgi_cp_async_pack(dst, head + (long long)(key0 + r) * row_stride + 8 * c);
        else
            fgi_store(dst, fgi_pack<T>::zero());
    }
}

/* load_tile through a block table: row key0 + r of kv head `head` (the
 * head's offset already in it) from block table[key / block_size]. */
template <typename T, int D>
__device__ __forceinline__ void load_tile_paged(T *tile, const T *head, int key0, int key_end,
                                                const paged16 &p, const int *table)
{
    using S = Shape16<D>;
    for (int idx = (int)threadIdx.x; idx < S::BN * S::CHUNKS; idx += kThreads) {
        const int r = idx / S::CHUNKS, c = idx % S::CHUNKS;
        T *dst = tile + r * S::PITCH + 8 * c;
        const int key = key0 + r;
        if (key < key_end)
            fgi_cp_async_pack(dst, head + (long long)table[key / p.block_size] * p.block_stride +
                                       (long long)(key % p.block_size) * D + 8 * c);
        else
            fgi_store(dst, fgi_pack<T>::zero()); /* as load_tile */
    }
}

/* Two 16-bit elements (an even offset) as one register. */
template <typename T>
__device__ __forceinline__ uint32_t load_pair(const T *p)
{
    return __ldg(reinterpret_cast<const unsigned *>(p));
}

template <typename T, int D, bool PAGED>
__global__ void __launch_bounds__(kThreads, min_blocks(D))
    mma16_attention_kernel(const problem16 p, const paged16 pg)
{
    using S = Shape16<D>;
    constexpr int BN = S::BN, KS = S::KS, NT = S::NT, PK = S::PK, NO = S::NO, PITCH = S::PITCH;
    T *smem = reinterpret_cast<T *>(fgi_attention_smem());
    /* buffers: K of tile parity b at smem + b TILE, V at smem + (2 + b) TILE
     * (computed, not indexed from an array, which would live in local memory) */
    const auto k_s = [smem](int b) { return smem + b * S::TILE; };
    const auto v_s = [smem](int b) { return smem + (2 + b) * S::TILE; };
    const int warp = (int)(threadIdx.x / 32u), lane = (int)(threadIdx.x % 32u);
    const int g = lane / 4, t = lane % 4;

    /* The call's rows, or those of this block's prompt chunk (segments). */
    int q_len = p.q_len, kv_len = p.kv_len, shift = p.shift;
    const T *q_rows = static_cast<const T *>(p.q);
    T *out_rows = static_cast<T *>(p.out);
    const int *table = pg.table;
    if constexpr (PAGED) {
        if (pg.segments != nullptr) {
            const int *seg = pg.segments + 3 * blockIdx.y;
            const int row0 = seg[0];
            q_len = seg[1];
            shift = seg[2];
            kv_len = shift + q_len;
            q_rows += (long long)row0 * p.q_row_stride;
            out_rows += (long long)row0 * p.out_row_stride;
            table += (long long)row0 * pg.table_stride;
            /* the grid is sized for the longest chunk */
            if (blockIdx.x >= (unsigned)(p.n_q_head * ((q_len + kRows - 1) / kRows))) return;
        }
    }

    /* Last query tiles first: causal work grows with the row index. */
    const int n_q_tiles = (q_len + kRows - 1) / kRows;
    const int head = (int)(blockIdx.x % (unsigned)p.n_q_head);
    const int q0 = (n_q_tiles - 1 - (int)(blockIdx.x / (unsigned)p.n_q_head)) * kRows;
    const int kv_head = head / p.group;
    const int rows_end = min(q0 + kRows, q_len);
    /* keys [key_lo, key_hi): from the first row's window start to the last
     * row's diagonal */
    const int key_hi = min(kv_len, rows_end + shift);
    int key_lo = p.window > 0 ? max(0, q0 + shift - p.window + 1) : 0;
    if constexpr (PAGED) key_lo = key_lo / BN * BN; /* tiles on a fixed grid (see the header) */
    const int n_tiles = (key_hi - key_lo + BN - 1) / BN;
    const T *k_head = static_cast<const T *>(p.k) + kv_head * p.kv_head_stride;
    const T *v_head = static_cast<const T *>(p.v) + kv_head * p.kv_head_stride;

    const T *q_head = q_rows + head * p.q_head_stride;
    T *q_s = smem + 4 * S::TILE; /* (kRows, PITCH) when Q is parked */
    if (n_tiles > 0) {
        if constexpr (!S::Q_IN_REGS)
            load_tile<T, D, kRows>(q_s, q_head + (long long)q0 * p.q_row_stride, 0,
                                   q_len - q0, p.q_row_stride);
        if constexpr (PAGED) {
            load_tile_paged<T, D>(k_s(0), k_head, key_lo, key_hi, pg, table);
            load_tile_paged<T, D>(v_s(0), v_head, key_lo, key_hi, pg, table);
        } else {
            load_tile<T, D>(k_s(0), k_head, key_lo, key_hi);
            load_tile<T, D>(v_s(0), v_head, key_lo, key_hi);
        }
        __pipeline_commit();
    }

    /* The warp's Q (16, D) as A fragments, unscaled (scaling 16-bit q would
     * round it again): qf[kk] covers dims 16kk .. 16kk + 15. Parked Q:
     * ldmatrix row addresses for (rows 0-7, k 0-7), (8-15, 0-7), (0-7,
     * 8-15), (8-15, 8-15) of the warp's rows = a0 .. a3. */
    const int r0 = q0 + warp * kWarpRows + g, r1 = r0 + 8;
    uint32_t qf[S::Q_IN_REGS ? KS : 1][4];
    const int lm = lane / 8, lr = lane % 8;
    const T *q_frag_row = q_s + (warp * kWarpRows + 8 * (lm & 1) + lr) * PITCH + 8 * (lm >> 1);
    if constexpr (S::Q_IN_REGS) {
        const T *q0p = q_head + (long long)r0 * p.q_row_stride + 2 * t;
        const T *q1p = q_head + (long long)r1 * p.q_row_stride + 2 * t;
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            qf[kk][0] = r0 < q_len ? load_pair(q0p + 16 * kk) : 0u;
            qf[kk][1] = r1 < q_len ? load_pair(q1p + 16 * kk) : 0u;
            qf[kk][2] = r0 < q_len ? load_pair(q0p + 16 * kk + 8) : 0u;
            qf[kk][3] = r1 < q_len ? load_pair(q1p + 16 * kk + 8) : 0u;
        }
    }

    /* O (16, D) accumulators: o[n] holds rows g, g+8, dims 8n + 2t, +1.
     * States of rows g (0) and g+8 (1); sums are this lane's share. */
    float o[NO][4];
#pragma unroll
    for (int n = 0; n < NO; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    fgi_softmax_state st[2] = {fgi_softmax_init(), fgi_softmax_init()};

    /* ldmatrix row addresses: lane = 8 m + r addresses row r of matrix m.
     * K (plain): matrices (keys 8j.., dims 16kk..), (8j.., 16kk+8..),
     * (8j+8.., 16kk..), (8j+8.., 16kk+8..) = b0, b1 of key tiles j, j+1.
     * V (.trans): (keys 16kk.., dims 8n..), (16kk+8.., 8n..), (16kk..,
     * 8n+8..), (16kk+8.., 8n+8..) = b0, b1 of dim tiles n, n+1. */
    const int k_off = (8 * (lm >> 1) + lr) * PITCH + 8 * (lm & 1);
    const int v_off = (8 * (lm & 1) + lr) * PITCH + 8 * (lm >> 1);

    for (int tile = 0; tile < n_tiles; tile++) {
        const int buf = tile & 1;
        const int key0 = key_lo + tile * BN;
        if (tile + 1 < n_tiles) {
            if constexpr (PAGED) {
                load_tile_paged<T, D>(k_s(buf ^ 1), k_head, key0 + BN, key_hi, pg, table);
                load_tile_paged<T, D>(v_s(buf ^ 1), v_head, key0 + BN, key_hi, pg, table);
            } else {
                load_tile<T, D>(k_s(buf ^ 1), k_head, key0 + BN, key_hi);
                load_tile<T, D>(v_s(buf ^ 1), v_head, key0 + BN, key_hi);
            }
            __pipeline_commit();
            __pipeline_wait_prior(1); /* tile t has landed; t + 1 in flight */
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();

        /* S (16, BN) = Q K^T: s[j] holds keys key0 + 8j + 2t, + 2t + 1. */
        float s[NT][4];
#pragma unroll
        for (int j = 0; j < NT; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
        const T *kt = k_s(buf) + k_off;
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            const int qk = S::Q_IN_REGS ? kk : 0;
            if constexpr (!S::Q_IN_REGS) fgi_ldmatrix_x4<false>(qf[0], q_frag_row + 16 * kk);
#pragma unroll
            for (int j = 0; j < NT; j += 2) {
                uint32_t b[4];
                fgi_ldmatrix_x4<false>(b, kt + 8 * j * PITCH + 16 * kk);
                const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
                fgi_mma_f16<T>(s[j], qf[qk], b0);
                fgi_mma_f16<T>(s[j + 1], qf[qk], b1);
            }
        }
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] *= p.scale_log2;

        /* Masking only where the tile crosses the end of the keys, the
         * diagonal of the block's first row, or the window start of its
         * last row (the same for the whole block). */
        if (key0 + BN > key_hi || key0 + BN - 1 > q0 + shift ||
            (p.window > 0 && key0 < q0 + kRows + shift - p.window)) {
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = key0 + 8 * j + 2 * t + (e & 1);
                    const int diag = (e < 2 ? r0 : r1) + shift;
                    if (key >= key_hi || key > diag || (p.window > 0 && key <= diag - p.window))
                        s[j][e] = -INFINITY;
                }
        }

        fgi_softmax_update_fragments(st, s, o); /* rows g and g + 8 */

        /* O += P V, P rounded to T in registers: P's A fragment for keys
         * 16kk.. is (s[2kk] rows g, g+8; s[2kk+1] rows g, g+8). */
        const T *vt = v_s(buf) + v_off;
#pragma unroll
        for (int kk = 0; kk < PK; kk++) {
            const uint32_t pa[4] = {fgi_elem<T>::pack2(s[2 * kk][0], s[2 * kk][1]),
                                    fgi_elem<T>::pack2(s[2 * kk][2], s[2 * kk][3]),
                                    fgi_elem<T>::pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                    fgi_elem<T>::pack2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int n = 0; n < NO; n += 2) {
                uint32_t b[4];
                fgi_ldmatrix_x4<true>(b, vt + 16 * kk * PITCH + 8 * n);
                const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
                fgi_mma_f16<T>(o[n], pa, b0);
                fgi_mma_f16<T>(o[n + 1], pa, b1);
            }
        }
        __syncthreads(); /* every warp is done with this buffer before it refills */
    }

#pragma unroll
    for (int h = 0; h < 2; h++) {
        fgi_softmax_reduce_sum<4>(st[h]);
        const int row = h ? r1 : r0;
        if (row >= q_len) continue;
        const float inv = fgi_softmax_inv_sum(st[h]);
        T *dst = out_rows + head * p.out_head_stride + row * p.out_row_stride + 2 * t;
#pragma unroll
        for (int n = 0; n < NO; n++)
            *reinterpret_cast<uint32_t *>(dst + 8 * n) =
                fgi_elem<T>::pack2(o[n][2 * h] * inv, o[n][2 * h + 1] * inv);
        if (p.lse != nullptr && t == 0)
            p.lse[(long long)head * q_len + row] = fgi_softmax_lse(st[h]);
    }
}

template <typename T, int D>
fg_status launch(const char *fn, const problem16 &p, const paged16 &pg, int n_segments,
                 cudaStream_t stream)
{
    const auto kernel = pg.table != nullptr ? mma16_attention_kernel<T, D, true>
                                            : mma16_attention_kernel<T, D, false>;
    const size_t smem = smem_bytes<D>();
    if (smem > 48 * 1024)
        FGI_CUDA_TRY(fn, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)smem));
    const long long blocks = (long long)p.n_q_head * ((p.q_len + kRows - 1) / kRows);
    const unsigned chunks = pg.segments != nullptr ? (unsigned)n_segments : 1u;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)blocks, chunks, 1);
    cfg.blockDim = dim3(kThreads, 1, 1);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    FGI_CUDA_TRY(fn, cudaLaunchKernelEx(&cfg, kernel, p, pg));
    FGI_CUDA_LAUNCHED(fn, "mma16_attention_kernel");
    return FG_OK;
}

bool aligned16(const void *ptr) { return ((uintptr_t)ptr & 15u) == 0; }

} // namespace

extern "C" bool fgi_attention16_supported(int head_dim)
{
    return head_dim == 32 || head_dim == 64 || head_dim == 80 || head_dim == 96 ||
           head_dim == 128 || head_dim == 256;
}

extern "C" fg_status fgi_launch_attention16(const char *fn, const fgi_attention16_args *a,
                                            cudaStream_t stream)
{
    /* The dispatch (fgi_cuda_attention16) has checked the arguments' sanity
     * and dtype; here what both 16-bit kernels need (TMA wants the same
     * 16-byte alignment as cp.async), then the pick. */
    if (!fgi_attention16_supported(a->head_dim))
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: no %s attention kernel for head_dim %d (32, 64, 80, 96, 128, 256)",
                       fn, fg_dtype_name(a->dtype), a->head_dim);
    if (a->block_table != nullptr && (a->kv_block_size < 1 || a->kv_block_stride < 0))
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: invalid block table arguments (internal call)",
                       fn);
    if (!aligned16(a->q) || !aligned16(a->k) || !aligned16(a->v) || !aligned16(a->out) ||
        a->q_head_stride % 8 != 0 || a->q_row_stride % 8 != 0 || a->kv_head_stride % 8 != 0 ||
        a->out_head_stride % 8 != 0 || a->out_row_stride % 8 != 0 ||
        (a->block_table != nullptr && a->kv_block_stride % 8 != 0))
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: %s attention needs 16-byte aligned q, k, v and out (rows of whole "
                       "16-byte chunks)",
                       fn, fg_dtype_name(a->dtype));
    if (a->kv_len > INT_MAX - 4096)
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: kv_len %d is too large", fn, a->kv_len);
    const long long blocks = (long long)a->n_q_head * ((a->q_len + kRows - 1) / kRows);
    if (blocks > INT_MAX)
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: %d heads x %d query rows need too many blocks",
                       fn, a->n_q_head, a->q_len);
    FGI_TRY(fgi_cuda_check_device(fn));
    const int pick = fgi_attention16_pick(a->head_dim);
    if (pick < 0)
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: the sm_90a attention kernel was forced but cannot run here (it needs "
                       "a compute capability 9.0 device, code built for sm_90a and head_dim 64 "
                       "or 128)",
                       fn);
    /* the Hopper kernel reads K/V through tensor maps of contiguous heads:
     * paged calls (block_table) stay on the sm_80 kernel; an automatic pick
     * holds only once the kernel has agreed with the sm_80 one here */
    if (pick == 2 && a->block_table == nullptr &&
        fgi_attention16_sm90_trusted(fn, a->dtype, a->head_dim, stream))
        return fgi_cuda_attention16_sm90(fn, a, stream);
    return fgi_cuda_attention16_sm80(fn, a, stream);
}

extern "C" fg_status fgi_cuda_attention16_sm80(const char *fn, const fgi_attention16_args *a,
                                               cudaStream_t stream)
{
    problem16 p = {};
    fgi_attention16_common(p, a);
    p.q = a->q;
    p.q_head_stride = a->q_head_stride;
    p.q_row_stride = a->q_row_stride;
    p.k = a->k;
    p.v = a->v;
    p.kv_head_stride = a->kv_head_stride;
    paged16 pg = {};
    pg.table = a->block_table;
    pg.block_size = a->kv_block_size;
    pg.block_stride = a->kv_block_stride;
    pg.segments = a->segments;
    pg.table_stride = a->table_stride;
    return fgi_with_dtype(fn, a->dtype, [&](auto tag) -> fg_status {
        using T = decltype(tag);
        if constexpr (std::is_same<T, float>::value) {
            return FG_ERR_INVALID_ARG; /* refused above */
        } else {
            return fgi_for_head_dim<32, 64, 80, 96, 128, 256>(a->head_dim, FG_ERR_UNSUPPORTED,
                                                              [&](auto d) {
                                                                  return launch<T, decltype(d)::value>(
                                                                      fn, p, pg, a->n_segments,
                                                                      stream);
                                                              });
        }
    });
}
