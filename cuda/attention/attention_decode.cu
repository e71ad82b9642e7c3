/* Decode attention ("flash-decoding") and the split-KV combine step, over
 * q, K/V cache and output in f32, bf16 or f16 (fp32 math, fp32 partials).
 * Conventions: cuda/attention/attention_kernels.cuh (log2-unit scores, bottom-right
 * causal alignment, split-KV partials); a batch of sequences folds into the
 * head axis, each with its own key count (kv_lens) and optional window.
 *
 * Design: the query rows that share a KV head (group heads x q_len) are
 * packed into chunks of RB rows; one block of 4 warps serves a (KV head, row
 * chunk, key split), so each K/V byte is read once for the whole group. K/V
 * stream through a ring of 16-key shared stages filled by cp.async 2-3
 * stages ahead (tens of KiB in flight per block). A key is served by a
 * group of 8 or 16 lanes (each holds a slice of the head dims), so a warp
 * takes 2-4 keys at once and a score costs 3-4 shuffle levels; each lane
 * group keeps its own online softmax per row (rescaled only when a score
 * passes the running max by kRescaleSlack), and the (warp, group) slots
 * merge through shared memory at the end. With a sliding window a block
 * reads only the keys its rows' windows hold. combine_splits merges the
 * per-split partials (a block per query row, a thread per dim) into the
 * output and the log-sum-exp when the decode kernel does not merge them
 * itself. Every cache row is addressed through kv_rows (sequence, kv head,
 * key), so a paged cache changes that function only; splits begin at
 * multiples of kStageKeys and a stage never crosses one, which a block
 * size that is a multiple of kStageKeys keeps inside one block. */
#include "attention_kernels.cuh"
#include "dtype.cuh"

#include <cuda_pipeline.h>
#include <limits.h>

namespace {

constexpr int kWarps = FGI_ATTENTION_THREADS / 32;
constexpr int kStageKeys = FGI_DECODE_STAGE_KEYS; /* keys per ring stage: 4 per warp */
constexpr int kKeysPerWarp = kStageKeys / kWarps;

/* Ring depth for a head_dim class (lanes per key x float4 per lane = the
 * float4 per head row): about 48-64 KiB of K/V in flight per block; a
 * 16-bit stage holds half the bytes, so it takes twice the stages. */
constexpr int decode_stages(int lpk, int c, int elem_bytes = 4)
{
    return (lpk * c <= 32 ? 4 : 3) * (4 / elem_bytes);
}

/* The first of the kStageKeys rows of keys key .. key + kStageKeys - 1 (key
 * a multiple of kStageKeys) of kv head kv_head, sequence seq, in the cache
 * base (K or V): the one place that knows the cache layout, either (kv
 * heads of all sequences, capacity, head_dim) with the batch folded into
 * the heads, or a pool of blocks through the sequence's block table
 * (block_size a multiple of kStageKeys, so a stage lies in one block). The
 * rows of a stage are contiguous either way. */
template <typename T>
__device__ __forceinline__ const T *kv_rows(const T *base, const fgi_attention_problem &p,
                                            int seq, int kv_head, int key)
{
    if (p.block_tables == nullptr)
        return base + kv_head * p.kv_head_stride + (long long)key * p.head_dim;
    const int id = p.block_tables[(long long)seq * p.max_blocks + key / p.block_size];
    const int block = min(max(id, 0), p.n_blocks - 1); /* a bad id never reads past the pool */
    const int head = kv_head - seq * p.seq_kv_heads;
    return base + (((long long)block * p.seq_kv_heads + head) * p.block_size + key % p.block_size) *
                      p.head_dim;
}

/* Enqueues keys [key0, key0 + kStageKeys) of one head's K and V (k_rows,
 * v_rows: their first rows, kv_rows) into a ring stage; rows before key_lo
 * or at or past key_end are zero-filled and never read (never NaN garbage,
 * nothing outside a window). A stage is one contiguous run of keys in
 * memory and in the ring, so the copy is flat: no row/column split (an
 * integer division per pack by a run-time head_dim cost more issue slots
 * than the attention math); head_dim is a multiple of the pack. */
template <typename T>
__device__ __forceinline__ void load_stage_async(T *stage, const T *k_rows, const T *v_rows,
                                                 int key0, int key_lo, int key_end, int D)
{
    using P = fgi_pack<T>;                                      /* one 16-byte copy */
    const int n4 = kStageKeys * D / P::N;                       /* packs per stage */
    const int lo4 = max(key_lo - key0, 0) * D / P::N;           /* before: zeros */
    const int valid4 = min(kStageKeys, key_end - key0) * D / P::N; /* the rest: zeros */
    const P *k_src = reinterpret_cast<const P *>(k_rows);
    const P *v_src = reinterpret_cast<const P *>(v_rows);
    P *k_dst = reinterpret_cast<P *>(stage);
    P *v_dst = k_dst + n4;
    for (int idx = threadIdx.x; idx < n4; idx += FGI_ATTENTION_THREADS) {
        if (idx >= lo4 && idx < valid4) {
            fgi_cp_async(k_dst + idx, k_src + idx);
            fgi_cp_async(v_dst + idx, v_src + idx);
        } else {
            k_dst[idx] = v_dst[idx] = P::zero();
        }
    }
}

/* Run by the last block of a (KV head, row chunk) column to finish: merges
 * every split's partial of its rows into the output and the log-sum-exp,
 * with the arithmetic of combine_splits_kernel. The partials of other
 * blocks are read through L2 (__ldcg: L1 is not coherent); the maxima and
 * sums go to shared memory first (stats: 2 * RB * n_splits floats) so that
 * every load of a phase is in flight at once. */
template <int RB, typename T>
__device__ void merge_column(const fgi_attention_problem &p, int kv_head, int m0, int rows,
                             float *stats)
{
    const int D = p.head_dim, F = D / 4, S = p.n_splits;
    float *m_s = stats, *l_s = stats + RB * S; /* (RB, n_splits) each */
    for (int idx = threadIdx.x; idx < RB * S; idx += FGI_ATTENTION_THREADS) {
        const int r = idx / S, s = idx % S, m = min(m0 + r, rows - 1);
        const long long part =
            fgi_part_row(p, s, kv_head * p.group + m / p.q_len, m % p.q_len);
        m_s[idx] = __ldcg(p.part_m + part);
        l_s[idx] = __ldcg(p.part_l + part);
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < RB * F; idx += FGI_ATTENTION_THREADS) {
        const int r = idx / F, f = idx % F, m = m0 + r;
        if (m >= rows) continue;
        const int h = kv_head * p.group + m / p.q_len, i = m % p.q_len;
        float big = -INFINITY;
        for (int s = 0; s < S; s++) big = fmaxf(big, m_s[r * S + s]);
        fgi_softmax_state row = fgi_softmax_merge_begin(big);
        float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 16
        for (int s = 0; s < S; s++) {
            const float wt = fgi_softmax_merge(row, {m_s[r * S + s], l_s[r * S + s]});
            const float4 os = fgi_ldcg4(p.part_o + fgi_part_row(p, s, h, i) * D, f);
            o.x = fmaf(wt, os.x, o.x);
            o.y = fmaf(wt, os.y, o.y);
            o.z = fmaf(wt, os.z, o.z);
            o.w = fmaf(wt, os.w, o.w);
        }
        fgi_store4(reinterpret_cast<T *>(p.out) + h * p.out_head_stride + i * p.out_row_stride,
                   f, fgi_scale4(o, fgi_softmax_inv_sum(row)));
        if (f == 0 && p.lse != nullptr)
            p.lse[(long long)h * p.q_len + i] = fgi_softmax_lse(row);
    }
}

/* The decode kernel's instantiation: LPK lanes per key (a power of two, 8
 * or 16), C float4 per lane per head row (head_dim <= 4 * LPK * C), RB
 * packed query rows, T the storage type; q and the accumulator take
 * 8 * C * RB registers, kept at most 128. */
template <int LPK_, int C_, int RB_, typename T_>
struct DecodeShape {
    static constexpr int LPK = LPK_, C = C_, RB = RB_;
    using T = T_;
    static constexpr int GROUPS = 32 / LPK;                /* keys a warp takes at once */
    static constexpr int PASSES = kKeysPerWarp / GROUPS;   /* per stage */
    static constexpr int SLOTS = kWarps * GROUPS;          /* partial softmaxes per block */
    static constexpr int STAGES = decode_stages(LPK, C, (int)sizeof(T));
    static_assert(LPK == 8 || LPK == 16, "lanes per key");
    static_assert(kKeysPerWarp % GROUPS == 0, "whole passes per stage");
    static_assert(C * RB <= 16, "register budget");
};

/* A running maximum is raised only when a score passes it by more than
 * this (log2 units: fgi_softmax_lazy_*), so exp2(score - max) <= 2^8 stays
 * far from overflow while the accumulator is rescaled only a few times per
 * split instead of once per key. */
constexpr float kRescaleSlack = 8.0f;

template <class Shape>
__global__ void __launch_bounds__(FGI_ATTENTION_THREADS)
    decode_attention_kernel(const fgi_attention_problem p, int n_row_chunks)
{
    constexpr int LPK = Shape::LPK, C = Shape::C, RB = Shape::RB, GROUPS = Shape::GROUPS;
    using T = typename Shape::T;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int sub = lane % LPK, grp = lane / LPK; /* lane within its key group; group */
    const int D = p.head_dim, F = D / 4;
    const int rows = p.group * p.q_len; /* query rows sharing this KV head */
    const int kv_head = (int)(blockIdx.x / (unsigned)n_row_chunks);
    const int m0 = (int)(blockIdx.x % (unsigned)n_row_chunks) * RB;
    const int split = (int)blockIdx.y;
    const int seq = p.kv_lens != nullptr ? kv_head / p.seq_kv_heads : 0;
    const fgi_key_plan keys = fgi_plan_keys(p, seq, kStageKeys);

    /* Packed row m is query i = m % q_len of head kv_head*group + m / q_len.
     * Padding rows past the end repeat the last real row and are never
     * written, so every load stays in bounds. The keys each row sees come
     * from indices alone, so the K/V prologue is issued before q's loads
     * and hides their latency (every block is on the critical path of a
     * one-wave decode launch). */
    /* Row r sees keys last_key[r] - window + 1 .. last_key[r] (window: all
     * when none is set); its first key is not kept per row, which would
     * cost registers in the fp32 instantiations. */
    const int window = p.window > 0 ? p.window : INT_MAX;
    int last_key[RB];
    int max_last = 0, min_first = INT_MAX;
#pragma unroll
    for (int r = 0; r < RB; r++) {
        last_key[r] = min(m0 + r, rows - 1) % p.q_len + keys.shift;
        const int first = p.window > 0 ? max(last_key[r] + 1 - p.window, 0) : 0;
        max_last = max(max_last, last_key[r]);
        min_first = min(min_first, first);
    }
    const int key_begin = keys.first + split * keys.keys_per_split;
    const int key_end = min(key_begin + min(keys.keys_per_split, keys.kv_len - key_begin),
                            max_last + 1);
    const int n_stages = key_end > key_begin ? (key_end - key_begin + kStageKeys - 1) / kStageKeys : 0;

    /* K/V stream through a ring of shared stages with cp.async, STAGES - 1
     * stages ahead of the math, so each block keeps tens of KiB in flight. */
    T *ring = reinterpret_cast<T *>(fgi_attention_smem());
    const int stage_elems = 2 * kStageKeys * D;
    const T *k_cache = reinterpret_cast<const T *>(p.k);
    const T *v_cache = reinterpret_cast<const T *>(p.v);
#pragma unroll
    for (int t = 0; t < Shape::STAGES - 1; t++) {
        if (t < n_stages) {
            const int key0 = key_begin + t * kStageKeys;
            load_stage_async(ring + t * stage_elems, kv_rows(k_cache, p, seq, kv_head, key0),
                             kv_rows(v_cache, p, seq, kv_head, key0), key0, min_first, key_end, D);
        }
        __pipeline_commit(); /* empty groups keep the wait count uniform */
    }

    /* The lane holds float4 number sub + LPK * c of each q row (c < C): a
     * key group reads whole 16-byte runs of a row, conflict-free. */
    float4 qr[RB][C];
#pragma unroll
    for (int r = 0; r < RB; r++) {
        const int m = min(m0 + r, rows - 1);
        const int h = kv_head * p.group + m / p.q_len, i = m % p.q_len;
        const T *q_row = reinterpret_cast<const T *>(p.q) + h * p.q_head_stride +
                         i * p.q_row_stride;
#pragma unroll
        for (int c = 0; c < C; c++) {
            const int f = sub + LPK * c;
            qr[r][c] = f < F ? fgi_scale4(fgi_ldg4(q_row, f), p.q_scale)
                             : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
    }

    /* One online softmax per (key group, row): this lane's dims of it. */
    fgi_softmax_state st[RB];
    float4 acc[RB][C];
#pragma unroll
    for (int r = 0; r < RB; r++) {
        st[r] = fgi_softmax_init();
#pragma unroll
        for (int c = 0; c < C; c++) acc[r][c] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    for (int t = 0; t < n_stages; t++) {
        __pipeline_wait_prior(Shape::STAGES - 2); /* stage t has landed (this thread's part) */
        __syncthreads(); /* ...everyone's; and the slot refilled below is free */
        const int ahead = t + Shape::STAGES - 1;
        if (ahead < n_stages) {
            const int key0 = key_begin + ahead * kStageKeys;
            load_stage_async(ring + (ahead % Shape::STAGES) * stage_elems,
                             kv_rows(k_cache, p, seq, kv_head, key0),
                             kv_rows(v_cache, p, seq, kv_head, key0), key0, min_first, key_end,
                             D);
        }
        __pipeline_commit();

        const T *k_s = ring + (t % Shape::STAGES) * stage_elems;
        const T *v_s = k_s + kStageKeys * D;
#pragma unroll
        for (int pass = 0; pass < Shape::PASSES; pass++) {
            const int row = warp * kKeysPerWarp + pass * GROUPS + grp; /* key in the stage */
            const int j = key_begin + t * kStageKeys + row;
            float4 kk[C], vv[C];
#pragma unroll
            for (int c = 0; c < C; c++) {
                const int f = sub + LPK * c;
                const bool in = f < F;
                kk[c] = in ? fgi_load4(k_s + row * D, f) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                vv[c] = in ? fgi_load4(v_s + row * D, f) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
            /* Every row's score first (independent chains interleave),
             * then one vote for the rare rescale, then P V. */
            float s[RB];
            bool raise = false;
#pragma unroll
            for (int r = 0; r < RB; r++) {
                float part = 0.0f;
#pragma unroll
                for (int c = 0; c < C; c++) part = fgi_dot4(qr[r][c], kk[c], part);
                s[r] = fgi_warp_sum<LPK>(part); /* the group's lanes hold the row */
                if (j >= key_end || j > last_key[r] || last_key[r] - j >= window) s[r] = -INFINITY;
                raise = raise || fgi_softmax_lazy_wants_raise(st[r], s[r], kRescaleSlack);
            }
            if (__any_sync(0xffffffffu, raise)) { /* rare after the first keys */
#pragma unroll
                for (int r = 0; r < RB; r++) {
                    const float alpha = fgi_softmax_lazy_raise(st[r], s[r], kRescaleSlack);
#pragma unroll
                    for (int c = 0; c < C; c++) acc[r][c] = fgi_scale4(acc[r][c], alpha);
                }
            }
#pragma unroll
            for (int r = 0; r < RB; r++) {
                const float pr = fgi_softmax_lazy_add(st[r], s[r]); /* masked: 0 */
#pragma unroll
                for (int c = 0; c < C; c++) {
                    acc[r][c].x = fmaf(pr, vv[c].x, acc[r][c].x);
                    acc[r][c].y = fmaf(pr, vv[c].y, acc[r][c].y);
                    acc[r][c].z = fmaf(pr, vv[c].z, acc[r][c].z);
                    acc[r][c].w = fmaf(pr, vv[c].w, acc[r][c].w);
                }
            }
        }
    }
    __pipeline_wait_prior(0);
    __syncthreads(); /* the ring is reused for the merge below */

    /* Merge the (warp, key group) slots: (SLOTS, RB) maxima and sums,
     * (SLOTS, RB, D) outputs. */
    constexpr int SLOTS = Shape::SLOTS;
    const int slot = warp * GROUPS + grp;
    float *m_s = fgi_attention_smem();
    float *l_s = m_s + SLOTS * RB;
    float *o_s = l_s + SLOTS * RB;
#pragma unroll
    for (int r = 0; r < RB; r++) {
        if (sub == 0) {
            m_s[slot * RB + r] = st[r].max;
            l_s[slot * RB + r] = st[r].sum;
        }
#pragma unroll
        for (int c = 0; c < C; c++) {
            const int f = sub + LPK * c;
            if (f < F) reinterpret_cast<float4 *>(o_s + (slot * RB + r) * D)[f] = acc[r][c];
        }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < RB * F; idx += FGI_ATTENTION_THREADS) {
        const int r = idx / F, f = idx % F, m = m0 + r;
        if (m >= rows) continue;
        float big = -INFINITY;
#pragma unroll
        for (int w = 0; w < SLOTS; w++) big = fmaxf(big, m_s[w * RB + r]);
        fgi_softmax_state row = fgi_softmax_merge_begin(big);
        float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int w = 0; w < SLOTS; w++) {
            const float wt = fgi_softmax_merge(row, {m_s[w * RB + r], l_s[w * RB + r]});
            const float4 ow = reinterpret_cast<const float4 *>(o_s + (w * RB + r) * D)[f];
            o.x = fmaf(wt, ow.x, o.x);
            o.y = fmaf(wt, ow.y, o.y);
            o.z = fmaf(wt, ow.z, o.z);
            o.w = fmaf(wt, ow.w, o.w);
        }
        const int h = kv_head * p.group + m / p.q_len, i = m % p.q_len;
        if (p.n_splits == 1) {
            const float inv = fgi_softmax_inv_sum(row);
            fgi_store4(reinterpret_cast<T *>(p.out) + h * p.out_head_stride +
                           i * p.out_row_stride,
                       f, fgi_scale4(o, inv));
            if (f == 0 && p.lse != nullptr)
                p.lse[(long long)h * p.q_len + i] = fgi_softmax_lse(row);
        } else {
            const long long part = fgi_part_row(p, split, h, i);
            fgi_store4(p.part_o + part * D, f, o);
            if (f == 0) {
                p.part_m[part] = row.max;
                p.part_l[part] = row.sum;
            }
        }
    }

    /* Split-KV without a combine launch: each block publishes its partials
     * (fence, then a ticket); the column's last block merges them all and
     * zeroes the counter for the next launch. */
    if (p.n_splits > 1 && p.split_counters != nullptr) {
        __shared__ int merge_here[1];
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) {
            const int done = atomicAdd(p.split_counters + blockIdx.x, 1);
            merge_here[0] = done == p.n_splits - 1;
            if (merge_here[0]) p.split_counters[blockIdx.x] = 0;
        }
        __syncthreads();
        if (merge_here[0]) {
            __threadfence();
            merge_column<RB, T>(p, kv_head, m0, rows, fgi_attention_smem()); /* ring is free */
        }
    }
}

/* A block per query row: the split weights exp2(m_s - max) once in shared
 * memory, then each thread sums its dims over the splits (independent loads
 * in flight) and divides by the weighted sum of the partial sums. */
template <typename T>
__global__ void __launch_bounds__(FGI_ATTENTION_THREADS) combine_splits_kernel(const fgi_attention_problem p)
{
    /* Padded: the unrolled split loop below may load a few weights ahead
     * (compute-sanitizer saw 12-byte reads past an n_splits-sized array). */
    __shared__ float weight[FGI_MAX_SPLITS + 8];
    __shared__ float row_stats[2]; /* max, sum */
    const long long rows = (long long)p.n_q_head * p.q_len;
    const long long row = blockIdx.x;
    const int h = (int)(row / p.q_len), i = (int)(row % p.q_len);
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        float big = -INFINITY;
        for (int s = lane; s < p.n_splits; s += 32) big = fmaxf(big, p.part_m[s * rows + row]);
        big = fgi_warp_max<32>(big);
        fgi_softmax_state merged = fgi_softmax_merge_begin(big); /* this lane's splits */
        for (int s = lane; s < p.n_splits; s += 32)
            weight[s] = fgi_softmax_merge(merged,
                                          {p.part_m[s * rows + row], p.part_l[s * rows + row]});
        fgi_softmax_reduce_sum<32>(merged);
        if (lane == 0) row_stats[0] = merged.max, row_stats[1] = merged.sum;
    }
    __syncthreads();

    const fgi_softmax_state merged = {row_stats[0], row_stats[1]};
    const float inv = fgi_softmax_inv_sum(merged);
    T *dst = reinterpret_cast<T *>(p.out) + h * p.out_head_stride + i * p.out_row_stride;
    const float *src = p.part_o + row * p.head_dim;
    const long long split_stride = rows * p.head_dim;
    for (int d = threadIdx.x; d < p.head_dim; d += FGI_ATTENTION_THREADS) {
        float acc = 0.0f;
#pragma unroll 8
        for (int s = 0; s < p.n_splits; s++) acc = fmaf(weight[s], src[s * split_stride + d], acc);
        fgi_store1(dst + d, acc * inv);
    }
    if (threadIdx.x == 0 && p.lse != nullptr) p.lse[row] = fgi_softmax_lse(merged);
}

/* The decode kernel for a problem: RB = the group's rows rounded up to a
 * power of two, at most 8 (4 for head_dim > 128); LPK = the requested
 * lanes per key, else 8 where head_dim <= 128 and 8 lanes keep C * RB <=
 * 16, else 16; C = the float4 per lane that cover the head_dim class (64,
 * 128 or 256), at least 2; RB halves until C * RB <= 16. Instantiated
 * (LPK, C): (8, 2), (8, 4), (16, 2), (16, 4). */
struct decode_plan {
    int lpk, c, rb;
};

decode_plan plan_decode(const fgi_attention_problem &p)
{
    const long long rows = (long long)p.group * p.q_len;
    const int cap = p.head_dim <= 128 ? 8 : 4;
    int rb = 1;
    while (rb < cap && rb < rows) rb *= 2;
    const int class_f4 = p.head_dim <= 64 ? 16 : p.head_dim <= 128 ? 32 : 64;
    const auto c_for = [&](int lanes) { return class_f4 / lanes > 2 ? class_f4 / lanes : 2; };
    int lpk = p.decode_lanes;
    if (lpk == 0) lpk = class_f4 <= 32 && c_for(8) * rb <= 16 ? 8 : 16;
    const int c = c_for(lpk);
    while (c * rb > 16 && rb > 1) rb /= 2;
    return {lpk, c, rb};
}

/* The ring, or the slot merge or the split merge after it, whichever is
 * largest. */
size_t decode_smem_bytes(const decode_plan &s, int head_dim, int elem_bytes)
{
    const size_t ring =
        (size_t)decode_stages(s.lpk, s.c, elem_bytes) * 2 * kStageKeys * head_dim * elem_bytes;
    const size_t merge = sizeof(float) * kWarps * (32 / s.lpk) * s.rb * (head_dim + 2);
    const size_t stats = sizeof(float) * 2 * s.rb * FGI_MAX_SPLITS; /* merge_column */
    const size_t most = ring > merge ? ring : merge;
    return most > stats ? most : stats;
}

using decode_kernel_fn = void (*)(fgi_attention_problem, int);

template <int LPK, int C, typename T>
decode_kernel_fn kernel_for_rows(int rb)
{
    switch (rb) {
    case 1: return decode_attention_kernel<DecodeShape<LPK, C, 1, T>>;
    case 2: return decode_attention_kernel<DecodeShape<LPK, C, 2, T>>;
    case 4: return decode_attention_kernel<DecodeShape<LPK, C, 4, T>>;
    case 8:
        if constexpr (C * 8 <= 16) return decode_attention_kernel<DecodeShape<LPK, C, 8, T>>;
        [[fallthrough]];
    default: return nullptr;
    }
}

/* The instantiation for a plan and a storage type, or NULL (a lanes
 * request without one). */
template <typename T>
decode_kernel_fn kernel_for_plan(const decode_plan &s)
{
    return s.lpk == 8 && s.c == 2    ? kernel_for_rows<8, 2, T>(s.rb)
           : s.lpk == 8 && s.c == 4  ? kernel_for_rows<8, 4, T>(s.rb)
           : s.lpk == 16 && s.c == 2 ? kernel_for_rows<16, 2, T>(s.rb)
           : s.lpk == 16 && s.c == 4 ? kernel_for_rows<16, 4, T>(s.rb)
                                     : nullptr;
}

/* The problem's storage type as the template argument of f; f32 for a
 * value outside fg_dtype (fgi_cuda_decode_attention refuses those). */
template <typename F>
auto with_problem_type(const fgi_attention_problem &p, F &&f)
{
    switch (p.dtype) {
    case FG_DTYPE_BF16: return f(__nv_bfloat16{});
    case FG_DTYPE_F16: return f(__half{});
    default: return f(float{});
    }
}

/* Blocks per (KV head, split): the group's query rows in chunks of rb. */
int decode_row_chunks(const fgi_attention_problem &p, int rb)
{
    return (int)(((long long)p.group * p.q_len + rb - 1) / rb);
}

/* What a launch of the decode kernel for a problem needs. */
struct decode_launch {
    decode_kernel_fn kernel;
    size_t smem;
    int row_chunks;
};

/* The instantiation for the problem's plan (plan_decode makes only these),
 * with its dynamic shared memory allowed (above 48 KiB it must be opted
 * into; static shared memory, the merge flag, counts against the same
 * 48 KiB). */
fg_status prepare_decode(const char *fn, const fgi_attention_problem &p, decode_launch *out)
{
    const decode_plan s = plan_decode(p);
    const decode_kernel_fn kernel =
        with_problem_type(p, [&](auto tag) { return kernel_for_plan<decltype(tag)>(s); });
    if (kernel == nullptr)
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: no decode kernel with %d lanes per key for head_dim %d", fn, s.lpk,
                       p.head_dim);
    const size_t smem = decode_smem_bytes(s, p.head_dim, (int)fg_dtype_size(p.dtype));
    if (smem + 64 > 48 * 1024)
        FGI_CUDA_TRY(fn, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)smem));
    *out = {kernel, smem, decode_row_chunks(p, s.rb)};
    return FG_OK;
}

} // namespace

bool fgi_decode_supported(const fgi_attention_problem &p)
{
    const int pack = 16 / (int)fg_dtype_size(p.dtype); /* head rows in whole 16-byte packs */
    return p.head_dim % pack == 0 && p.head_dim <= 256 &&
           with_problem_type(p, [&](auto tag) {
               return kernel_for_plan<decltype(tag)>(plan_decode(p)) != nullptr;
           });
}

long long fgi_decode_blocks(const fgi_attention_problem &p)
{
    return (long long)p.n_kv_head * decode_row_chunks(p, plan_decode(p).rb);
}

int fgi_decode_blocks_per_sm(const fgi_attention_problem &p)
{
    /* The occupancy calculator counts registers (up to about 220 per thread
     * for 4 rows at head_dim 128) as well as shared memory. */
    decode_launch l = {};
    int blocks = 0;
    bool ok = false;
    if (prepare_decode("fgi_decode_blocks_per_sm", p, &l) == FG_OK) {
        /* The decoder plans inside a stream capture (ThreadLocal mode). The
         * query is pure, but CUDA does not list it as capture-safe, so it runs
         * with this thread in Relaxed mode: it can never invalidate a capture. */
        cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
        if (cudaThreadExchangeStreamCaptureMode(&mode) == cudaSuccess) {
            ok = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, l.kernel, FGI_ATTENTION_THREADS,
                                                               l.smem) == cudaSuccess;
            (void)cudaThreadExchangeStreamCaptureMode(&mode);
        }
    }
    if (!ok) {
        (void)cudaGetLastError();
        fg_clear_error();
        return 1; /* planning only: one block per SM is always a safe guess */
    }
    return blocks < 1 ? 1 : blocks > 4 ? 4 : blocks;
}

fg_status fgi_launch_decode(const char *fn, const fgi_attention_problem &p, cudaStream_t stream)
{
    const int pack = 16 / (int)fg_dtype_size(p.dtype);
    if (p.head_dim % pack != 0 || p.head_dim > 256) /* no plan at all: say why */
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: no %s decode attention kernel for head_dim %d",
                       fn, fg_dtype_name(p.dtype), p.head_dim);
    decode_launch l = {};
    FGI_TRY(prepare_decode(fn, p, &l));
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)((long long)p.n_kv_head * l.row_chunks), (unsigned)p.n_splits, 1);
    cfg.blockDim = dim3(FGI_ATTENTION_THREADS, 1, 1);
    cfg.dynamicSmemBytes = l.smem;
    cfg.stream = stream;
    FGI_CUDA_TRY(fn, cudaLaunchKernelEx(&cfg, l.kernel, p, l.row_chunks));
    FGI_CUDA_LAUNCHED(fn, "decode_attention_kernel");
    return FG_OK;
}

fg_status fgi_launch_combine(const char *fn, const fgi_attention_problem &p, cudaStream_t stream)
{
    const long long rows = (long long)p.n_q_head * p.q_len;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)rows, 1, 1);
    cfg.blockDim = dim3(FGI_ATTENTION_THREADS, 1, 1);
    cfg.dynamicSmemBytes = 0;
    cfg.stream = stream;
    void (*kernel)(fgi_attention_problem) = with_problem_type(p, [](auto tag) {
        return static_cast<void (*)(fgi_attention_problem)>(combine_splits_kernel<decltype(tag)>);
    });
    FGI_CUDA_TRY(fn, cudaLaunchKernelEx(&cfg, kernel, p));
    FGI_CUDA_LAUNCHED(fn, "combine_splits_kernel");
    return FG_OK;
}
