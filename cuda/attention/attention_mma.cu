/* Flash attention on the tensor cores with fp32 accuracy (3xTF32) for
 * head_dim 32, 64, 80, 96 and 128: the prefill kernel cuda/attention/attention.cu
 * picks by default for those head dims. Same contract as the FFMA tiled
 * kernel (cuda/attention/attention_tiled.cu; conventions in attention_kernels.cuh:
 * log2-unit scores, bottom-right causal alignment, split-KV partials).
 *
 * Design: 4 warps, each owns 16 query rows (BM = 64); BN-key tiles of K and
 * V stream through shared memory with cp.async (V of tile t during S of t,
 * K of t+1 during P.V of t). S = Q K^T and O += P V are m16n8k8 tf32 mma
 * (cuda/mma_tf32.cuh), three per product (3xTF32); q is scaled and parked
 * once in shared memory in fragment order; q, K, V and P are split into
 * tf32 parts as their fragments are read (q's split is amortised over the
 * BN / 8 key blocks). The softmax runs on the accumulator fragments.
 * The key tile BN (32 or 64) is a template parameter picked at run time
 * (the caller's flash block_size); the result does not depend on it.
 * Accuracy: the tensor core's accumulation drifts over long mma chains, so
 * S is summed in chunks of KC k steps and each tile's P V in a fresh
 * accumulator, both added to the running values by ordinary fp32 adds.
 *
 * Paged (fgi_attention_args.block_table, the batched forward's prompt
 * chunks): the PAGED instantiation reads key j from block
 * table[j / kv_block_size] of a pool, row by row in the tile loads, runs
 * unsplit and starts its key tiles at a multiple of BN even under a
 * window, so a query row's sequence of key tiles, hence its bits, never
 * depends on which rows share its launch. With segments every sequence's
 * prompt chunk of a batched step runs in one launch (grid row y: chunk y),
 * each block doing exactly what a launch of its chunk alone would. The
 * contiguous instantiation is the code it was.
 *
 * Fragment trick: an mma's k order is free as long as A and B agree, so
 * k slots t and t+4 of every 8-wide k step carry elements 2t and 2t+1.
 * Then the S accumulator of a key block is already the A fragment of P
 * (no shuffles), and a K fragment is one float2 from a key row. */
#include "attention_kernels.cuh"
#include "dtype.cuh"
#include "mma_tf32.cuh"

#include <cuda_pipeline.h>

namespace {

constexpr int kWarps = FGI_ATTENTION_THREADS / 32;
constexpr int kWarpRows = 16; /* query rows per warp (the mma's M) */

/* Key tile when the caller asks for none: 64 (H100 sweep of 2026-11-26 in
 * bench/RESULTS.md: 64 beat 32 by 3% at head_dim 64, 3-7% at 128). */
constexpr int default_key_tile(int head_dim) { return head_dim > 0 ? 64 : 0; }

/* Blocks per SM that ptxas's register cap (__launch_bounds__) aims for,
 * per (D, BN): the most that fit shared memory (227 KiB per SM on the
 * H100) and compile without register spills (-Xptxas -v, sm_80 and sm_90).
 * One more block spills at D 32/BN 64 (sm_80), BN 64 for D 64 to 128, and
 * BN 32 for D 96 and 128 (D 128/BN 32 needs 213 registers, 3 blocks allow
 * 168). */
constexpr int min_blocks(int d, int bn)
{
    if (d <= 32) return bn == 32 ? 4 : 3;
    if (d <= 80) return bn == 32 ? 3 : 2;
    return 2;
}

template <int D, int BN_>
struct MmaShape {
    static constexpr int BM = kWarps * kWarpRows; /* query rows per block */
    static constexpr int BN = BN_;                /* keys per tile */
    static constexpr int KS = D / 8;  /* k steps of S = Q K^T; n tiles of O */
    static constexpr int NT = BN / 8; /* n tiles of S; k steps of P V */
    /* k steps per mma chain of S (then added with rounding, see P V) */
    static constexpr int KC = KS % 4 == 0 ? 4 : (KS % 5 == 0 ? 5 : (KS % 3 == 0 ? 3 : 2));
    /* Row pitches (floats): lane (g, t) reads K at row g, column 2t (float2)
     * and V at rows 2t, 2t+1, column g; pitch = 8 resp. 4 mod 32 (in
     * effect: D + 8, D + 4) makes both conflict-free. */
    static constexpr int KP = D + 8;
    static constexpr int VP = D + 4;
    /* q fragments, scaled, not split: (warp, k step, lane) float4 */
    static constexpr int Q_FLOATS = kWarps * KS * 32 * 4;
    static constexpr int SMEM_FLOATS = Q_FLOATS + BN * KP + BN * VP;
    static constexpr int MIN_BLOCKS = min_blocks(D, BN);
    static_assert(D % 8 == 0 && D <= 128, "head_dim without an mma kernel");
    static_assert(BN == 32 || BN == 64, "key tile without an mma kernel");
    static_assert((KP % 32 == 8 || KP % 32 == 24) && ((2 * VP) % 32 == 8 || (2 * VP) % 32 == 24),
                  "bank-conflict-free pitches");
};

/* Enqueues the copy of keys (or values) [key0, key0 + BN) of one head into
 * a (BN, pitch) shared tile; rows at or past key_end are zero-filled so that
 * masked entries (p = 0) never meet garbage (0 * NaN would poison a row). */
template <int D, int BN, int PITCH>
__device__ __forceinline__ void load_tile_async(float *tile, const float *head, int key0,
                                                int key_end)
{
    constexpr int F = D / 4;
    for (int idx = threadIdx.x; idx < BN * F; idx += FGI_ATTENTION_THREADS) {
        const int r = idx / F, f = idx % F;
        float *dst = tile + r * PITCH + 4 * f;
        if (key0 + r < key_end)
            fgi_cp_async_pack(dst, head + (long long)(key0 + r) * D + 4 * f);
        else
            fgi_store4(dst, make_float4(0.0f, 0.0f, 0.0f, 0.0f));
    }
}

/* load_tile_async through the block table: key r of the tile from block
 * table[key / kv_block_size] (head: the kv head's offset in a block). */
template <int D, int BN, int PITCH>
__device__ __forceinline__ void load_tile_paged(float *tile, const float *head, int key0,
                                                int key_end, const fgi_attention_problem &p)
{
    constexpr int F = D / 4;
    for (int idx = threadIdx.x; idx < BN * F; idx += FGI_ATTENTION_THREADS) {
        const int r = idx / F, f = idx % F;
        float *dst = tile + r * PITCH + 4 * f;
        const int key = key0 + r;
        if (key < key_end)
            fgi_cp_async_pack(dst, head + (long long)p.block_tables[key / p.block_size] *
                                              p.kv_block_stride +
                                       (long long)(key % p.block_size) * D + 4 * f);
        else
            fgi_store4(dst, make_float4(0.0f, 0.0f, 0.0f, 0.0f));
    }
}

/* One tile of keys or values, contiguous or through the block table. */
template <int D, int BN, int PITCH, bool PAGED>
__device__ __forceinline__ void load_kv_tile(float *tile, const float *head, int key0,
                                             int key_end, const fgi_attention_problem &p)
{
    if constexpr (PAGED)
        load_tile_paged<D, BN, PITCH>(tile, head, key0, key_end, p);
    else
        load_tile_async<D, BN, PITCH>(tile, head, key0, key_end);
}

/* The lane's q fragments (scaled) for its warp's rows, parked in its own
 * slots of q_frag: only this lane reads them back, so no barrier. */
template <int KS>
__device__ __forceinline__ void park_q(float4 *q_frag, const fgi_attention_problem &p,
                                       const float *q_head, int row0, int lane)
{
    const int g = lane / 4, t = lane % 4;
    const int r0 = row0 + g, r1 = r0 + 8;
    const float *q0 = q_head + (long long)r0 * p.q_row_stride + 2 * t;
    const float *q1 = q_head + (long long)r1 * p.q_row_stride + 2 * t;
    for (int ks = 0; ks < KS; ks++) {
        float2 x0 = make_float2(0.0f, 0.0f), x1 = make_float2(0.0f, 0.0f);
        if (r0 < p.q_len) x0 = fgi_ldg2(q0 + 8 * ks);
        if (r1 < p.q_len) x1 = fgi_ldg2(q1 + 8 * ks);
        /* a0 (g, k 2t), a1 (g+8, 2t), a2 (g, 2t+1), a3 (g+8, 2t+1) */
        q_frag[ks * 32 + lane] = make_float4(x0.x * p.q_scale, x1.x * p.q_scale,
                                             x0.y * p.q_scale, x1.y * p.q_scale);
    }
}

/* The problem of this block's prompt chunk (grid row y of p.segments): q
 * and out moved down to its first row, its block table, its rows and keys
 * (causal from its first position). */
__device__ __forceinline__ fgi_attention_problem segment_problem(fgi_attention_problem p)
{
    const int *seg = p.segments + 3 * blockIdx.y;
    const int row0 = seg[0];
    p.q_len = seg[1];
    p.shift = seg[2];
    p.kv_len = p.shift + p.q_len;
    p.q += (long long)row0 * p.q_row_stride;
    p.out += (long long)row0 * p.out_row_stride;
    p.block_tables += (long long)row0 * p.table_stride;
    return p;
}

template <int D, int BN_, bool PAGED>
__global__ void __launch_bounds__(FGI_ATTENTION_THREADS, (MmaShape<D, BN_>::MIN_BLOCKS))
    mma_attention_kernel(const fgi_attention_problem call)
{
    using S = MmaShape<D, BN_>;
    constexpr int BM = S::BM, BN = S::BN, KS = S::KS, NT = S::NT, KP = S::KP, VP = S::VP;
    float *smem = fgi_attention_smem();
    const int warp = (int)(threadIdx.x / 32u), lane = (int)(threadIdx.x % 32u);
    const int g = lane / 4, t = lane % 4;
    float4 *q_frag = reinterpret_cast<float4 *>(smem) + warp * KS * 32; /* this warp's */
    float *k_s = smem + S::Q_FLOATS; /* (BN, KP) */
    float *v_s = k_s + BN * KP;     /* (BN, VP) */

    /* paged: unsplit, and grid row y may be a prompt chunk (segments); the
     * grid is sized for the longest chunk */
    fgi_attention_problem p = call;
    if constexpr (PAGED) {
        if (call.segments != nullptr) {
            p = segment_problem(call);
            if (blockIdx.x >= (unsigned)(p.n_q_head * ((p.q_len + BM - 1) / BM))) return;
        }
    }
    const fgi_tile_work w = fgi_query_tile_work(p, BM, PAGED ? 0 : (int)blockIdx.y);
    const int head = w.head, split = w.split, q0 = w.q0;
    /* paged: tiles on the grid of key 0 (see the header; unsplit) */
    const int key_begin = PAGED ? w.key_begin / BN * BN : w.key_begin, key_end = w.key_end;
    const int warp_row0 = q0 + warp * kWarpRows;
    const float *k_head = p.k + w.kv_head * p.kv_head_stride;
    const float *v_head = p.v + w.kv_head * p.kv_head_stride;
    const int n_tiles = key_end > key_begin ? (key_end - key_begin + BN - 1) / BN : 0;
    const int window_edge = fgi_window_edge(p);

    if (n_tiles > 0) {
        load_kv_tile<D, BN, KP, PAGED>(k_s, k_head, key_begin, key_end, p);
        __pipeline_commit();
    }
    park_q<KS>(q_frag, p, p.q + head * p.q_head_stride, warp_row0, lane);

    /* Accumulator fragments of O (16, D): o[n] holds rows g, g+8 and
     * dims 8n + 2t, 8n + 2t + 1. Softmax states for rows g (0) and g+8 (1);
     * their sums are this lane's share (a quad adds up at the end). */
    float o[KS][4];
#pragma unroll
    for (int n = 0; n < KS; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    fgi_softmax_state st[2] = {fgi_softmax_init(), fgi_softmax_init()};

    for (int tile = 0; tile < n_tiles; tile++) {
        const int key0 = key_begin + tile * BN;
        load_kv_tile<D, BN, VP, PAGED>(v_s, v_head, key0, key_end, p);
        __pipeline_commit();
        __pipeline_wait_prior(1); /* K tile has landed; V may be in flight */
        __syncthreads();

        /* S (16, BN) = q K^T: s[j] holds keys key0 + 8j + 2t, + 2t + 1. */
        float s[NT][4];
#pragma unroll
        for (int j = 0; j < NT; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
        for (int ks0 = 0; ks0 < KS; ks0 += S::KC) {
            float part[NT][4]; /* a short mma chain, added with rounding below */
#pragma unroll
            for (int j = 0; j < NT; j++) part[j][0] = part[j][1] = part[j][2] = part[j][3] = 0.0f;
#pragma unroll
            for (int ks = ks0; ks < ks0 + S::KC; ks++) {
                const float4 qa = q_frag[ks * 32 + lane];
                uint32_t a_big[4], a_small[4];
                fgi_split_tf32(qa.x, a_big[0], a_small[0]);
                fgi_split_tf32(qa.y, a_big[1], a_small[1]);
                fgi_split_tf32(qa.z, a_big[2], a_small[2]);
                fgi_split_tf32(qa.w, a_big[3], a_small[3]);
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    const float2 kv = fgi_load2(k_s + (8 * j + g) * KP + 8 * ks + 2 * t);
                    uint32_t b_big[2], b_small[2];
                    fgi_split_tf32(kv.x, b_big[0], b_small[0]);
                    fgi_split_tf32(kv.y, b_big[1], b_small[1]);
                    fgi_mma_3xtf32(part[j], a_big, a_small, b_big, b_small);
                }
            }
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[j][e] += part[j][e];
        }

        /* Only a tile that crosses the diagonal, the window's lower edge or
         * the end of the keys needs masking (the condition is the same for
         * the whole block). */
        if (key0 + BN > key_end || key0 + BN - 1 - q0 > p.shift ||
            key0 - (q0 + BM - 1) <= window_edge) {
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = key0 + 8 * j + 2 * t + (e & 1);
                    const int row = warp_row0 + g + 8 * (e >> 1);
                    if (key >= key_end || key - row > p.shift || key - row <= window_edge)
                        s[j][e] = -INFINITY;
                }
        }

        fgi_softmax_update_fragments(st, s, o); /* rows g and g + 8 */

        __pipeline_wait_prior(0); /* V tile has landed */
        __syncthreads();          /* V visible; every warp is done with K */
        if (tile + 1 < n_tiles) {
            load_kv_tile<D, BN, KP, PAGED>(k_s, k_head, key0 + BN, key_end, p);
            __pipeline_commit();
        }

        /* O += P V. Key step kk is S's key block kk: slots t, t+4 are keys
         * 2t, 2t+1, so P's A fragment is (c0, c2, c1, c3) of s[kk]. */
        uint32_t p_big[NT][4], p_small[NT][4];
#pragma unroll
        for (int kk = 0; kk < NT; kk++) {
            fgi_split_tf32(s[kk][0], p_big[kk][0], p_small[kk][0]);
            fgi_split_tf32(s[kk][2], p_big[kk][1], p_small[kk][1]);
            fgi_split_tf32(s[kk][1], p_big[kk][2], p_small[kk][2]);
            fgi_split_tf32(s[kk][3], p_big[kk][3], p_small[kk][3]);
        }
        /* Each tile's P V starts a fresh accumulator that is added to o with
         * rounding: the tensor core's own accumulation drifts (about 2e-5
         * relative, measured on an H100) when one chain runs over thousands
         * of keys. */
#pragma unroll
        for (int n = 0; n < KS; n++) {
            float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int kk = 0; kk < NT; kk++) {
                const float *v0 = v_s + (8 * kk + 2 * t) * VP + 8 * n + g;
                uint32_t b_big[2], b_small[2];
                fgi_split_tf32(fgi_load1(v0), b_big[0], b_small[0]);
                fgi_split_tf32(fgi_load1(v0 + VP), b_big[1], b_small[1]);
                fgi_mma_3xtf32(part, p_big[kk], p_small[kk], b_big, b_small);
            }
#pragma unroll
            for (int e = 0; e < 4; e++) o[n][e] += part[e];
        }
        __syncthreads(); /* every warp is done with V before it is overwritten */
    }

#pragma unroll
    for (int h = 0; h < 2; h++) {
        fgi_softmax_reduce_sum<4>(st[h]);
        const int row = warp_row0 + g + 8 * h;
        if (row >= p.q_len) continue;
        if (p.n_splits == 1) {
            const float inv = fgi_softmax_inv_sum(st[h]);
            float *dst = p.out + head * p.out_head_stride + row * p.out_row_stride + 2 * t;
#pragma unroll
            for (int n = 0; n < KS; n++)
                fgi_store2(dst + 8 * n, make_float2(o[n][2 * h] * inv, o[n][2 * h + 1] * inv));
            if (p.lse != nullptr && t == 0)
                p.lse[(long long)head * p.q_len + row] = fgi_softmax_lse(st[h]);
        } else {
            const long long part = fgi_part_row(p, split, head, row);
            float *dst = p.part_o + part * D + 2 * t;
#pragma unroll
            for (int n = 0; n < KS; n++)
                fgi_store2(dst + 8 * n, make_float2(o[n][2 * h], o[n][2 * h + 1]));
            if (t == 0) {
                p.part_m[part] = st[h].max;
                p.part_l[part] = st[h].sum;
            }
        }
    }
}

template <int D, int BN>
constexpr size_t smem_bytes()
{
    return sizeof(float) * MmaShape<D, BN>::SMEM_FLOATS;
}

template <int D, int BN>
fg_status launch(const char *fn, const fgi_attention_problem &p, cudaStream_t stream)
{
    return fgi_launch_query_tiles(fn,
                                  p.block_tables != nullptr ? mma_attention_kernel<D, BN, true>
                                                            : mma_attention_kernel<D, BN, false>,
                                  "mma_attention_kernel", smem_bytes<D, BN>(),
                                  MmaShape<D, BN>::BM, p, stream);
}

template <int D>
size_t smem_bytes_for(int key_tile)
{
    return key_tile == 32 ? smem_bytes<D, 32>() : key_tile == 64 ? smem_bytes<D, 64>() : 0;
}

template <int D>
fg_status launch_tile(const char *fn, const fgi_attention_problem &p, int key_tile,
                      cudaStream_t stream)
{
    if (key_tile == 32) return launch<D, 32>(fn, p, stream);
    if (key_tile == 64) return launch<D, 64>(fn, p, stream);
    return fgi_fail(FG_ERR_UNSUPPORTED, "%s: no mma attention kernel for key tile %d", fn,
                   key_tile);
}

} // namespace

bool fgi_mma_supported(int head_dim)
{
    return head_dim == 32 || head_dim == 64 || head_dim == 80 || head_dim == 96 ||
           head_dim == 128;
}

int fgi_mma_rows(int head_dim)
{
    (void)head_dim;
    return kWarps * kWarpRows;
}

int fgi_mma_default_key_tile(int head_dim)
{
    return fgi_mma_supported(head_dim) ? default_key_tile(head_dim) : 0;
}

size_t fgi_mma_smem_bytes(int head_dim, int key_tile)
{
    return fgi_for_head_dim<32, 64, 80, 96, 128>(
        head_dim, (size_t)0, [&](auto d) { return smem_bytes_for<decltype(d)::value>(key_tile); });
}

fg_status fgi_launch_mma(const char *fn, const fgi_attention_problem &p, int key_tile,
                         cudaStream_t stream)
{
    bool known = false;
    const fg_status st = fgi_for_head_dim<32, 64, 80, 96, 128>(p.head_dim, FG_OK, [&](auto d) {
        known = true;
        return launch_tile<decltype(d)::value>(fn, p, key_tile, stream);
    });
    return known ? st
                 : fgi_fail(FG_ERR_UNSUPPORTED, "%s: no mma attention kernel for head_dim %d", fn,
                           p.head_dim);
}
