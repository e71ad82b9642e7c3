/* Tiled flash attention in fp32 for head_dim 32, 64, 80, 96, 128 and 256:
 * the kernel for prefill and for any query length with many rows per KV
 * head (cuda/attention/attention.cu decides). Conventions: cuda/attention/attention_kernels.cuh
 * (log2-unit scores, bottom-right causal alignment, split-KV partials).
 *
 * Design: a block of 128 threads holds BM query rows (scaled q) in shared
 * memory and streams BN-key tiles of K and V through shared memory with
 * cp.async (V of tile t loads during the scores of t, K of t+1 during P.V of
 * t); thread (ty, tx) of a 16 x 8 grid owns query rows ty + 16i for both the
 * scores (keys tx + 8j) and the output (dims tx*VEC + 8*VEC*jv), so the
 * online softmax rescaling stays in registers and row reductions are 8-lane
 * shuffles. Key tiles past the diagonal of the block's last row (or below
 * the sliding window of its first row) are never loaded; only tiles that
 * cross an edge are masked. All math is FFMA (no TF32). */
#include "attention_kernels.cuh"
#include "dtype.cuh"

#include <cuda_pipeline.h>

namespace {

constexpr int kRowThreads = 16; /* thread rows of the 16 x 8 grid */
constexpr int kColThreads = 8;  /* thread columns */

template <int D, int BN>
struct TiledShape {
    static constexpr int BM = D <= 128 ? 64 : 32;   /* query rows per block */
    static constexpr int TM = BM / kRowThreads;     /* query rows per thread */
    static constexpr int TN = BN / kColThreads;     /* keys per thread */
    static constexpr int F = D / 4;                 /* float4 per head row */
    static constexpr int DP = D + 4;                /* padded q/k/v row: conflict-free float4 reads */
    static constexpr int BNP = BN + 8;              /* padded p row: conflict-free writes */
    static constexpr int DT = D / kColThreads;      /* output dims per thread */
    static constexpr int VEC = DT % 4 == 0 ? 4 : (DT % 2 == 0 ? 2 : 1);
    static constexpr int NV = DT / VEC;             /* output vectors per row per thread */
    static constexpr int SMEM_FLOATS = BM * DP + 2 * BN * DP + BM * BNP;
    static_assert(D % 32 == 0 || D == 80 || D == 96, "head_dim without a tiled kernel");
    static_assert(BN % kColThreads == 0 && BN % 4 == 0, "key tile");
};

/* n elements (n = 4, 2, 1) from N*sizeof(T)-byte aligned shared or global
 * memory, as floats. */
template <int N, typename T>
__device__ __forceinline__ void load_floats(float (&dst)[N], const T *src)
{
    if constexpr (N == 4) {
        const float4 t = fgi_load4(src);
        dst[0] = t.x, dst[1] = t.y, dst[2] = t.z, dst[3] = t.w;
    } else if constexpr (N == 2) {
        const float2 t = fgi_load2(src);
        dst[0] = t.x, dst[1] = t.y;
    } else {
        dst[0] = fgi_load1(src);
    }
}

/* Stores src[first .. first+N) * scale as elements of type T. */
template <int N, int LEN, typename T>
__device__ __forceinline__ void store_floats(T *dst, const float (&src)[LEN], int first,
                                             float scale)
{
    if constexpr (N == 4) {
        fgi_store4(dst, make_float4(src[first] * scale, src[first + 1] * scale,
                                    src[first + 2] * scale, src[first + 3] * scale));
    } else if constexpr (N == 2) {
        fgi_store2(dst, make_float2(src[first] * scale, src[first + 1] * scale));
    } else {
        fgi_store1(dst, src[first] * scale);
    }
}

/* Enqueues the copy of keys (or values) [key0, key0 + BN) of one head into
 * a (BN, DP) shared tile; rows at or past key_end are zero-filled so that
 * masked entries (p = 0) never meet garbage (0 * NaN would poison a row). */
template <int D, int BN>
__device__ __forceinline__ void load_kv_tile_async(float *tile, const float *head,
                                                   int key0, int key_end)
{
    using S = TiledShape<D, BN>;
    for (int idx = threadIdx.x; idx < BN * S::F; idx += FGI_ATTENTION_THREADS) {
        const int r = idx / S::F, f = idx % S::F;
        float *dst = tile + r * S::DP + 4 * f;
        if (key0 + r < key_end)
            fgi_cp_async_pack(dst, head + (long long)(key0 + r) * D + 4 * f);
        else
            fgi_store4(dst, make_float4(0.0f, 0.0f, 0.0f, 0.0f));
    }
}

/* Min blocks 1: without it ptxas caps some shapes at 128 registers and spills. */
template <int D, int BN>
__global__ void __launch_bounds__(FGI_ATTENTION_THREADS, 1)
    tiled_attention_kernel(const fgi_attention_problem p)
{
    using S = TiledShape<D, BN>;
    constexpr int BM = S::BM, TM = S::TM, TN = S::TN, F = S::F, DP = S::DP;
    constexpr int BNP = S::BNP, DT = S::DT, VEC = S::VEC, NV = S::NV;
    float *q_s = fgi_attention_smem(); /* (BM, DP) */
    float *k_s = q_s + BM * DP;                             /* (BN, DP) */
    float *v_s = k_s + BN * DP;                             /* (BN, DP) */
    float *p_s = v_s + BN * DP;                             /* (BM, BNP) */

    const int tid = threadIdx.x, ty = tid / kColThreads, tx = tid % kColThreads;
    const fgi_tile_work w = fgi_query_tile_work(p, BM, (int)blockIdx.y);
    const int head = w.head, split = w.split, q0 = w.q0;
    const int key_begin = w.key_begin, key_end = w.key_end;
    const float *q_head = p.q + head * p.q_head_stride;
    const float *k_head = p.k + w.kv_head * p.kv_head_stride;
    const float *v_head = p.v + w.kv_head * p.kv_head_stride;
    const int n_tiles = key_end > key_begin ? (key_end - key_begin + BN - 1) / BN : 0;
    const int window_edge = fgi_window_edge(p);

    for (int idx = tid; idx < BM * F; idx += FGI_ATTENTION_THREADS) {
        const int r = idx / F, f = idx % F;
        float4 val = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (q0 + r < p.q_len)
            val = fgi_scale4(fgi_ldg4(q_head + (q0 + r) * p.q_row_stride, f), p.q_scale);
        fgi_store4(q_s + r * DP + 4 * f, val);
    }

    float o[TM][DT];
    fgi_softmax_state st[TM]; /* sum: this thread's share of the row's */
#pragma unroll
    for (int i = 0; i < TM; i++) {
        st[i] = fgi_softmax_init();
#pragma unroll
        for (int d = 0; d < DT; d++) o[i][d] = 0.0f;
    }

    if (n_tiles > 0) {
        load_kv_tile_async<D, BN>(k_s, k_head, key_begin, key_end);
        __pipeline_commit();
    }
    for (int t = 0; t < n_tiles; t++) {
        const int key0 = key_begin + t * BN;
        load_kv_tile_async<D, BN>(v_s, v_head, key0, key_end);
        __pipeline_commit();
        __pipeline_wait_prior(1); /* K tile t has landed; V tile t may be in flight */
        __syncthreads();

        float s[TM][TN];
#pragma unroll
        for (int i = 0; i < TM; i++)
#pragma unroll
            for (int j = 0; j < TN; j++) s[i][j] = 0.0f;
#pragma unroll 4
        for (int f = 0; f < F; f++) {
            float4 qv[TM], kv[TN];
#pragma unroll
            for (int i = 0; i < TM; i++)
                qv[i] = fgi_load4(q_s + (ty + kRowThreads * i) * DP + 4 * f);
#pragma unroll
            for (int j = 0; j < TN; j++)
                kv[j] = fgi_load4(k_s + (tx + kColThreads * j) * DP + 4 * f);
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) s[i][j] = fgi_dot4(qv[i], kv[j], s[i][j]);
        }

        /* Only a tile that crosses the diagonal, the window's lower edge or
         * the end of the keys needs masking (the condition is the same for
         * the whole block). The window has its own pass: folded into the
         * first, it cost up to 40 registers in some shapes (ptxas, sm_90). */
        if (key0 + BN > key_end || key0 + BN - 1 - q0 > p.shift) {
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) {
                    const int key = key0 + tx + kColThreads * j;
                    const int row = q0 + ty + kRowThreads * i;
                    if (key >= key_end || key - row > p.shift) s[i][j] = -INFINITY;
                }
        }
        if (key0 - (q0 + BM - 1) <= window_edge) { /* never without a window */
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++)
                    if (key0 + tx + kColThreads * j - (q0 + ty + kRowThreads * i) <= window_edge)
                        s[i][j] = -INFINITY;
        }

        /* Online softmax per row (its keys over the 8 lanes of a thread
         * row); the probabilities go to p_s for P V. */
#pragma unroll
        for (int i = 0; i < TM; i++) {
            const float alpha = fgi_softmax_update<kColThreads>(st[i], s[i]);
#pragma unroll
            for (int j = 0; j < TN; j++)
                p_s[(ty + kRowThreads * i) * BNP + tx + kColThreads * j] = s[i][j];
#pragma unroll
            for (int d = 0; d < DT; d++) o[i][d] *= alpha;
        }

        __pipeline_wait_prior(0); /* V tile t has landed */
        __syncthreads();          /* p and V visible; every thread is done with K */
        if (t + 1 < n_tiles) {
            load_kv_tile_async<D, BN>(k_s, k_head, key0 + BN, key_end);
            __pipeline_commit();
        }

#pragma unroll 2
        for (int c = 0; c < BN; c += 4) {
            float pc[TM][4];
#pragma unroll
            for (int i = 0; i < TM; i++) load_floats<4>(pc[i], p_s + (ty + kRowThreads * i) * BNP + c);
#pragma unroll
            for (int cc = 0; cc < 4; cc++) {
                const float *v_row = v_s + (c + cc) * DP + tx * VEC;
#pragma unroll
                for (int jv = 0; jv < NV; jv++) {
                    float vv[VEC];
                    load_floats<VEC>(vv, v_row + kColThreads * VEC * jv);
#pragma unroll
                    for (int i = 0; i < TM; i++)
#pragma unroll
                        for (int e = 0; e < VEC; e++)
                            o[i][jv * VEC + e] = fmaf(pc[i][cc], vv[e], o[i][jv * VEC + e]);
                }
            }
        }
        __syncthreads(); /* done with V and p before they are overwritten */
    }

#pragma unroll
    for (int i = 0; i < TM; i++) fgi_softmax_reduce_sum<kColThreads>(st[i]);

#pragma unroll
    for (int i = 0; i < TM; i++) {
        const int row = q0 + ty + kRowThreads * i;
        if (row >= p.q_len) continue;
        if (p.n_splits == 1) {
            const float inv = fgi_softmax_inv_sum(st[i]);
            float *dst = p.out + head * p.out_head_stride + row * p.out_row_stride + tx * VEC;
#pragma unroll
            for (int jv = 0; jv < NV; jv++)
                store_floats<VEC>(dst + kColThreads * VEC * jv, o[i], jv * VEC, inv);
            if (p.lse != nullptr && tx == 0)
                p.lse[(long long)head * p.q_len + row] = fgi_softmax_lse(st[i]);
        } else {
            const long long part = fgi_part_row(p, split, head, row);
            float *dst = p.part_o + part * D + tx * VEC;
#pragma unroll
            for (int jv = 0; jv < NV; jv++)
                store_floats<VEC>(dst + kColThreads * VEC * jv, o[i], jv * VEC, 1.0f);
            if (tx == 0) {
                p.part_m[part] = st[i].max;
                p.part_l[part] = st[i].sum;
            }
        }
    }
}

template <int D, int BN>
fg_status launch(const char *fn, const fgi_attention_problem &p, cudaStream_t stream)
{
    using S = TiledShape<D, BN>;
    return fgi_launch_query_tiles(fn, tiled_attention_kernel<D, BN>, "tiled_attention_kernel",
                                  sizeof(float) * S::SMEM_FLOATS, S::BM, p, stream);
}

template <int D>
fg_status launch_tile(const char *fn, const fgi_attention_problem &p, int key_tile,
                      cudaStream_t stream)
{
    switch (key_tile) {
    case 16: return launch<D, 16>(fn, p, stream);
    case 32: return launch<D, 32>(fn, p, stream);
    case 64:
        if constexpr (D <= 128) return launch<D, 64>(fn, p, stream);
        break;
    default: break;
    }
    return fgi_fail(FG_ERR_UNSUPPORTED, "%s: no tiled attention kernel for head_dim %d with key tile %d",
                   fn, D, key_tile);
}

template <int D, int BN>
constexpr size_t smem_bytes()
{
    return sizeof(float) * TiledShape<D, BN>::SMEM_FLOATS;
}

template <int D>
size_t smem_for_tile(int key_tile)
{
    switch (key_tile) {
    case 16: return smem_bytes<D, 16>();
    case 32: return smem_bytes<D, 32>();
    case 64:
        if constexpr (D <= 128) return smem_bytes<D, 64>();
        else return 0;
    default: return 0;
    }
}

} // namespace

int fgi_tiled_rows(int head_dim) { return head_dim <= 128 ? 64 : 32; }

size_t fgi_tiled_smem_bytes(int head_dim, int key_tile)
{
    return fgi_for_head_dim<32, 64, 80, 96, 128, 256>(
        head_dim, (size_t)0, [&](auto d) { return smem_for_tile<decltype(d)::value>(key_tile); });
}

fg_status fgi_launch_tiled(const char *fn, const fgi_attention_problem &p, int key_tile,
                           cudaStream_t stream)
{
    bool known = false;
    const fg_status st = fgi_for_head_dim<32, 64, 80, 96, 128, 256>(p.head_dim, FG_OK, [&](auto d) {
        known = true;
        return launch_tile<decltype(d)::value>(fn, p, key_tile, stream);
    });
    return known ? st
                 : fgi_fail(FG_ERR_UNSUPPORTED, "%s: no tiled attention kernel for head_dim %d",
                           fn, p.head_dim);
}
