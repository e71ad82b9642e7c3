/* Linear layers of one to eight rows without cuBLAS (the decode step, and
 * a few sequences decoding together):
 * y (rows, out) = act(x (rows, in) @ w (in, out) + b), w row-major.
 *
 * Why: with so few rows a linear layer only streams w once, so its speed is
 * the card's memory bandwidth plus a fixed cost per call. On an H100
 * (bench_linear, bench/RESULTS.md) GPT-2 small's four layer shapes take
 * 31 us here against 41 us in cuBLAS's fp32 GEMM; Llama-1B's large ones
 * stream at 1.5-2.8 TB/s, like cuBLAS or slightly faster.
 * Conventions: y must not overlap x; b (out) may be NULL; act is none or the
 * tanh GELU of activation.cuh (the bias + GELU pass fused into the GEMV).
 * The result is deterministic: a fixed summation order and no float atomics,
 * and batch invariant: that order (the split of `in`, the warps', slices'
 * and groups' order) depends on in, out, the element type and the device,
 * never on the row count, so a row's y has the same bits alone or among 8.
 * Element type: w, x, b and y hold T (cuda/common/dtype.cuh: float, bf16,
 * f16); a lane's 16-byte load of w is 4 floats or 8 16-bit values; the
 * products, the sums in their fixed order and the workspace partials are
 * fp32, and y is rounded to T once, after the bias and activation.
 * Design: a block owns 32 lanes x one 16-byte pack of columns (128 for f32)
 * and a slice of `in`;
 * its 8 warps take interleaved rows of the slice with 8 loads in flight each
 * and are summed in shared memory (4 rows at a time). Where a column tile
 * has several slices, each block writes a partial and the tile's last block (ticket counter,
 * left at zero for the next call) adds them in slice order.
 *
 * The classifier's GEMV (fgi_cuda_gemv_t_normed) reads a transposed w
 * (out, in), the embedding matrix it shares with the input: one warp per
 * output row, each lane streaming 16-byte packs of that contiguous row
 * against the final norm's output, which each block computes once into
 * shared memory; a fixed shuffle tree sums the lanes. No workspace. */
#include "activation.cuh"
#include "cuda_common.cuh"
#include "dtype.cuh"
#include "ops_internal.h"
#include "reduce.cuh"

namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kUnroll = 8;     /* w rows in flight per warp */
constexpr int kMinSliceRows = kWarps * kUnroll;

/* Columns per lane and per block for element type T: a lane loads one
 * 16-byte pack of each w row (4 floats; 8 for a 2-byte type). */
template <typename T>
constexpr int kVec = fgi_pack<T>::N;
template <typename T>
constexpr int kTileCols = 32 * kVec<T>;

/* Partials (fp32, whatever T is) of at most this many (tile, slice) blocks
 * fit the workspace; its counters cover as many tiles. */
template <typename T>
constexpr int kMaxSplitBlocks = (FGI_GEMV_WORKSPACE_BYTES - FGI_GEMV_COUNTER_BYTES) /
                                (int)(sizeof(float) * kTileCols<T> * FGI_GEMV_MAX_ROWS);

static_assert(FGI_GEMV_COUNTER_BYTES == sizeof(int) * kMaxSplitBlocks<float> &&
                  FGI_GEMV_WORKSPACE_BYTES ==
                      FGI_GEMV_COUNTER_BYTES +
                          sizeof(float) * kMaxSplitBlocks<float> * kTileCols<float> *
                              FGI_GEMV_MAX_ROWS,
              "the GEMV workspace holds the counters and the largest partials");

/* y, x, w and b hold elements of type T; sums and partials are fp32. */
template <typename T>
struct gemv_args {
    T *y;
    const T *x, *w, *b;
    int in, out;
    int slice_rows, n_slices;
    int gelu;
    int *counters; /* (tiles) */
    float *part;   /* (n_slices, rows, out) */
    /* The fused norm (fgi_cuda_gemv_fused; kernels with NORM only): x is
     * norm(nx) * ng (+ nb), each value rounded to T as the norm kernel
     * stores it. */
    const float *nx; /* (rows, in) fp32 residual stream */
    const T *ng, *nb;
    float eps;
    int rms;
    /* The residual epilogue: resid (rows, out) += round_T(x w) (+ b), as
     * the norm kernel's residual add does with a stored delta; y unused. */
    float *resid;
    /* fp32 output (fgi_cuda_gemv_fused's y_f32): y32 = x w + b unrounded;
     * y unused. NULL: y. */
    float *y32;
};

/* Row statistics of the fused norm, as norm.cu's kernel takes them: the
 * shift (LayerNorm: the row's first element), the mean less the shift, and
 * 1 / sqrt(variance or mean square + eps). */
template <int R>
struct norm_stats {
    float shift[R], mean[R], inv[R];
};

/* Why every block recomputes the statistics of its rows instead of a
 * separate stats pass: a decode row is a few KB of fp32 (in <= 16K), just
 * written by the previous kernel and in L2; a block re-reading it costs
 * ~132 x 8 KB of L2 traffic per GEMV, a fraction of a microsecond, while a
 * stats kernel is one more dependent launch (a graph node, ~1-2 us) plus a
 * round trip of the statistics. The values themselves are normalised on
 * the fly where the plain GEMV loads x, from the same L1-resident row, so
 * neither the 16-bit h nor its launch exists any more. */
template <typename T, int R>
__device__ void compute_norm_stats(const gemv_args<T> &a, norm_stats<R> &st)
{
    __shared__ float scratch[32];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const float *x = a.nx + (long long)r * a.in;
        const float shift = a.rms ? 0.0f : fgi_load1(x);
        float acc = 0.0f;
        for (int j = threadIdx.x; j < a.in; j += kThreads) {
            const float v = fgi_load1(x + j);
            acc += a.rms ? v * v : v - shift;
        }
        acc = fgi_block_reduce(acc, 0.0f, fgi_sum_op(), scratch);
        st.shift[r] = shift;
        if (a.rms) {
            st.mean[r] = 0.0f;
            st.inv[r] = 1.0f / sqrtf(acc / (float)a.in + a.eps);
            continue;
        }
        const float centred_mean = acc / (float)a.in;
        float ss = 0.0f;
        for (int j = threadIdx.x; j < a.in; j += kThreads) {
            const float d = (fgi_load1(x + j) - shift) - centred_mean;
            ss += d * d;
        }
        ss = fgi_block_reduce(ss, 0.0f, fgi_sum_op(), scratch);
        st.mean[r] = centred_mean;
        st.inv[r] = 1.0f / sqrtf(ss / (float)a.in + a.eps);
    }
}

/* x[r, i] of the product: the input itself, or with NORM its normalised
 * value rounded to T (what the unfused norm would have stored in h). */
template <typename T, int R, bool NORM>
__device__ __forceinline__ float x_value(const gemv_args<T> &a, const norm_stats<R> &st, int r,
                                         int i)
{
    if constexpr (!NORM) {
        return fgi_ldg1(a.x + (long long)r * a.in + i);
    } else {
        const float v = fgi_ldg1(a.nx + (long long)r * a.in + i);
        const float g = fgi_ldg1(a.ng + i);
        const float y = a.rms ? g * (v * st.inv[r])
                              : g * (((v - st.shift[r]) - st.mean[r]) * st.inv[r]) +
                                    (a.nb ? fgi_ldg1(a.nb + i) : 0.0f);
        return fgi_elem<T>::to_float(fgi_elem<T>::from_float(y));
    }
}

/* The lane's pack of columns c .. c+kVec-1 of w row i, as floats; VEC: out
 * is a multiple of kVec and w 16-byte aligned, so the caller's c < out
 * covers the whole pack; else columns past out read as 0. */
template <typename T, bool VEC>
__device__ inline void load_w(float (&v)[kVec<T>], const T *w, int i, int c, int out)
{
    const T *p = w + (long long)i * out + c;
    if constexpr (VEC) {
        const fgi_pack<T> pk = fgi_ldg<fgi_pack<T>>(p);
#pragma unroll
        for (int e = 0; e < kVec<T>; e++) v[e] = pk.get(e);
    } else {
        v[0] = fgi_ldg1(p);
#pragma unroll
        for (int e = 1; e < kVec<T>; e++) v[e] = c + e < out ? fgi_ldg1(p + e) : 0.0f;
    }
}

template <int N>
__device__ inline void fma_n(float (&acc)[N], float s, const float (&v)[N])
{
#pragma unroll
    for (int e = 0; e < N; e++) acc[e] = fmaf(s, v[e], acc[e]);
}

template <typename T>
__device__ inline float finish(const gemv_args<T> &a, float sum, int col)
{
    const float v = a.b ? sum + fgi_load1(a.b + col) : sum;
    return a.gelu ? fgi_gelu(v) : v;
}

/* y[r, col] from its sum; with RESID the residual add instead: the sum is
 * rounded to T (the stored delta), then resid += delta (+ b), in the norm
 * kernel's order (delta + bias first). */
template <typename T, bool RESID>
__device__ inline void store_out(const gemv_args<T> &a, int r, int col, float sum)
{
    const long long e = (long long)r * a.out + col;
    if constexpr (RESID) {
        const float d = fgi_elem<T>::to_float(fgi_elem<T>::from_float(sum));
        a.resid[e] += a.b ? d + fgi_load1(a.b + col) : d;
    } else if (a.y32 != nullptr) {
        a.y32[e] = finish(a, sum, col);
    } else {
        fgi_store1(a.y + e, finish(a, sum, col));
    }
}

/* This block's sums of its slice for the tile's columns, into acc. */
template <typename T, int R, bool VEC, bool NORM>
__device__ inline void slice_sums(const gemv_args<T> &a, const norm_stats<R> &st, int c,
                                  float (&acc)[R][kVec<T>])
{
    const int warp = threadIdx.x >> 5;
    const int k0 = (int)blockIdx.y * a.slice_rows, k1 = min(a.in, k0 + a.slice_rows);
    int i = k0 + warp;
    for (; i + (kUnroll - 1) * kWarps < k1; i += kUnroll * kWarps) {
        float wv[kUnroll][kVec<T>];
#pragma unroll
        for (int u = 0; u < kUnroll; u++) load_w<T, VEC>(wv[u], a.w, i + u * kWarps, c, a.out);
#pragma unroll
        for (int u = 0; u < kUnroll; u++)
#pragma unroll
            for (int r = 0; r < R; r++)
                fma_n(acc[r], x_value<T, R, NORM>(a, st, r, i + u * kWarps), wv[u]);
    }
    /* The remainder (< kUnroll rows per warp), unrolled as nvcc 13 chose
     * for sm_90 before the element-type templates; pinned, since they
     * moved its heuristic for 3 unaligned rows (4 -> 2 rows in flight). */
#pragma unroll(R == 4 && !VEC ? 2 : 4)
    for (; i < k1; i += kWarps) {
        float wv[kVec<T>];
        load_w<T, VEC>(wv, a.w, i, c, a.out);
#pragma unroll
        for (int r = 0; r < R; r++) fma_n(acc[r], x_value<T, R, NORM>(a, st, r, i), wv);
    }
}

/* Partial of slice sl, row r, columns c .. c+3 (zeros past out), through
 * L2: other blocks wrote it and L1 is not coherent. */
template <typename T, int R, bool VEC>
__device__ inline float4 load_part4(const gemv_args<T> &a, int sl, int r, int c)
{
    const float *p = a.part + ((long long)sl * R + r) * a.out + c;
    if constexpr (VEC) return fgi_ldcg4(p);
    float4 v;
    v.x = fgi_ldcg1(p);
    v.y = c + 1 < a.out ? fgi_ldcg1(p + 1) : 0.0f;
    v.z = c + 2 < a.out ? fgi_ldcg1(p + 2) : 0.0f;
    v.w = c + 3 < a.out ? fgi_ldcg1(p + 3) : 0.0f;
    return v;
}

__device__ inline void add4(float4 &s, const float4 &v)
{
    s.x += v.x;
    s.y += v.y;
    s.z += v.z;
    s.w += v.w;
}

/* Rows are reduced in chunks of at most kRowChunk, so that the shared
 * sums of 8 rows of 16-bit tiles (64 KB at once) stay within the 48 KB of
 * static shared memory: 32 KB a chunk. */
constexpr int kRowChunk = 4;
template <int R>
constexpr int kChunk = R < kRowChunk ? R : kRowChunk;

/* The tile's last block adds the slices' partials: each thread takes four
 * columns (a quad) and every kGroups-th slice, for every row of a chunk, so
 * its loads are in flight at once; the groups then meet in shared memory in
 * group order. kGroups depends on T only, never on R: a row's sum is the
 * same whether it is computed alone or among 8 (batch invariance), and with
 * one row the order is the one this kernel always had. VEC (out a multiple
 * of kVec) keeps whole quads in bounds. */
template <typename T, int R, bool VEC, bool RESID>
__device__ void sum_partials(const gemv_args<T> &a, float4 *scratch)
{
    constexpr int kRowQuads = kTileCols<T> / 4;  /* 4 columns of a tile row */
    constexpr int kGroups = kThreads / kRowQuads; /* f32 8, 16-bit 4 */
    constexpr int CH = kChunk<R>;
    static_assert(kGroups >= 1 && kGroups * kRowQuads == kThreads, "a thread per quad and group");
    static_assert(kThreads * CH <= kWarps * CH * kTileCols<T> / 4,
                  "the groups' sums fit the warp sums they reuse");
    const int q = threadIdx.x % kRowQuads, group = threadIdx.x / kRowQuads;
    const int c = blockIdx.x * kTileCols<T> + q * 4;
#pragma unroll
    for (int r0 = 0; r0 < R; r0 += CH) {
        float4 s[CH];
#pragma unroll
        for (int j = 0; j < CH; j++) s[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (c < a.out) {
#pragma unroll 4
            for (int sl = group; sl < a.n_slices; sl += kGroups)
#pragma unroll
                for (int j = 0; j < CH; j++)
                    if (r0 + j < R) add4(s[j], load_part4<T, R, VEC>(a, sl, r0 + j, c));
        }
#pragma unroll
        for (int j = 0; j < CH; j++) scratch[(group * CH + j) * kRowQuads + q] = s[j];
        __syncthreads();
        for (int e = threadIdx.x; e < CH * kRowQuads; e += kThreads) {
            const int j = e / kRowQuads, r = r0 + j;
            const int cq = blockIdx.x * kTileCols<T> + (e % kRowQuads) * 4;
            if (r >= R || cq >= a.out) continue;
            float4 t = scratch[e];
            for (int g = 1; g < kGroups; g++) add4(t, scratch[g * CH * kRowQuads + e]);
            store_out<T, RESID>(a, r, cq, t.x);
            if (cq + 1 < a.out) store_out<T, RESID>(a, r, cq + 1, t.y);
            if (cq + 2 < a.out) store_out<T, RESID>(a, r, cq + 2, t.z);
            if (cq + 3 < a.out) store_out<T, RESID>(a, r, cq + 3, t.w);
        }
        if (r0 + CH < R) __syncthreads(); /* the scratch is refilled */
    }
}

/* Minimum blocks per SM 1: under the default bounds ptxas saved registers
 * by interleaving the FMAs with the loads, leaving only three of the eight
 * in flight (SASS, sm_90); with this bound all eight are issued first. */
template <typename T, int R, bool VEC, bool NORM = false, bool RESID = false>
__global__ void __launch_bounds__(kThreads, 1) gemv_kernel(const gemv_args<T> a)
{
    constexpr int V = kVec<T>, TC = kTileCols<T>, CH = kChunk<R>;
    /* (warp, row of the chunk, tile column) sums, 4 columns per float4 */
    __shared__ float4 warp_sums[kWarps][CH][TC / 4];
    __shared__ int last_block[1];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int c = blockIdx.x * TC + lane * V;

    float acc[R][V];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int e = 0; e < V; e++) acc[r][e] = 0.0f;
    norm_stats<R> st;
    if constexpr (NORM) compute_norm_stats<T, R>(a, st);
    if (c < a.out) slice_sums<T, R, VEC, NORM>(a, st, c, acc);

    /* Sum the warps for each (row, column) of the tile, warp order fixed,
     * a chunk of rows at a time. */
#pragma unroll
    for (int r0 = 0; r0 < R; r0 += CH) {
        if (r0 > 0) __syncthreads(); /* the previous chunk's sums are read */
#pragma unroll
        for (int j = 0; j < CH; j++)
#pragma unroll
            for (int e = 0; e < V; e += 4)
                if (r0 + j < R)
                    warp_sums[warp][j][lane * (V / 4) + e / 4] =
                        make_float4(acc[r0 + j][e], acc[r0 + j][e + 1], acc[r0 + j][e + 2],
                                    acc[r0 + j][e + 3]);
        __syncthreads();
        const float *sums = reinterpret_cast<const float *>(warp_sums);
        for (int e = threadIdx.x; e < CH * TC; e += kThreads) {
            const int r = r0 + e / TC, col = blockIdx.x * TC + e % TC;
            if (r >= R) continue;
            float s = 0.0f;
            for (int w = 0; w < kWarps; w++) s += sums[(w * CH + e / TC) * TC + e % TC];
            if (col >= a.out) continue;
            if (a.n_slices == 1)
                store_out<T, RESID>(a, r, col, s);
            else
                a.part[((long long)blockIdx.y * R + r) * a.out + col] = s;
        }
    }
    if (a.n_slices == 1) return;

    /* Publish the partial (fence, then a ticket); the last block sums. */
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        const int ticket = atomicAdd(a.counters + blockIdx.x, 1);
        last_block[0] = ticket == a.n_slices - 1;
        if (last_block[0]) a.counters[blockIdx.x] = 0;
    }
    __syncthreads();
    if (!last_block[0]) return;
    __threadfence();
    sum_partials<T, R, VEC, RESID>(a, &warp_sums[0][0][0]); /* the warp sums are consumed */
}

/* FUSED: the 16-bit decode step's variants (one row; a norm prologue or
 * a residual epilogue) are instantiated too, only those: every kernel is
 * a few seconds of ptxas. fp32 keeps exactly its plain kernels. */
template <typename T, int R, bool FUSED>
fg_status launch_rows(const char *fn, const gemv_args<T> &a, dim3 grid, bool vec,
                      cudaStream_t stream)
{
    if constexpr (FUSED && R == 1) {
        if (a.nx != nullptr || a.resid != nullptr) {
            if (vec && a.nx != nullptr)
                gemv_kernel<T, R, true, true, false><<<grid, kThreads, 0, stream>>>(a);
            else if (vec)
                gemv_kernel<T, R, true, false, true><<<grid, kThreads, 0, stream>>>(a);
            else if (a.nx != nullptr)
                gemv_kernel<T, R, false, true, false><<<grid, kThreads, 0, stream>>>(a);
            else
                gemv_kernel<T, R, false, false, true><<<grid, kThreads, 0, stream>>>(a);
            FGI_CUDA_LAUNCHED(fn, "gemv_kernel (fused)");
            return FG_OK;
        }
    }
    if (vec)
        gemv_kernel<T, R, true><<<grid, kThreads, 0, stream>>>(a);
    else
        gemv_kernel<T, R, false><<<grid, kThreads, 0, stream>>>(a);
    FGI_CUDA_LAUNCHED(fn, "gemv_kernel");
    return FG_OK;
}

/* Slices per column tile: about one block per SM in all (its 8 warps with
 * 8 loads each keep 32 KB in flight), slices of at least kMinSliceRows
 * rows, and partials that fit the workspace; a forced count (benchmarks)
 * still obeys the workspace. bench_linear's H100 sweep (bench/RESULTS.md):
 * the counts this gives were within about 0.5 us of the best at every
 * decode shape; two blocks per SM were up to 1 us slower. */
template <typename T>
int plan_slices(int in, int tiles, int sm_count, int forced)
{
    const long long target = sm_count > 0 ? sm_count : 1;
    long long n = (target + tiles - 1) / tiles;
    const long long by_rows = (in + kMinSliceRows - 1) / kMinSliceRows;
    if (n > by_rows) n = by_rows;
    if (forced > 0) n = forced < in ? forced : in;
    if (n * tiles > kMaxSplitBlocks<T>) n = kMaxSplitBlocks<T> / tiles;
    return n < 1 ? 1 : (int)n;
}

/* The norm prologue's fields of a (none for norm NULL). */
template <typename T>
void set_norm(gemv_args<T> &a, const fgi_gemv_norm *norm)
{
    a.nx = norm ? norm->x : nullptr;
    a.ng = norm ? static_cast<const T *>(norm->g) : nullptr;
    a.nb = norm ? static_cast<const T *>(norm->b) : nullptr;
    a.eps = norm ? norm->eps : 0.0f;
    a.rms = norm ? norm->rms : 0;
}

/* The GEMV for element type T (see fgi_cuda_gemv); norm / resid: the
 * fused prologue / epilogue (fgi_cuda_gemv_fused), NULL for none. */
template <typename T>
fg_status launch_gemv(const char *fn, const fgi_linear_ctx *ctx, T *y, const T *x, const T *w,
                      const T *b, int rows, int in, int out, fgi_activation act,
                      cudaStream_t stream, const fgi_gemv_norm *norm = nullptr,
                      float *resid = nullptr, float *y32 = nullptr)
{
    gemv_args<T> a;
    set_norm(a, norm);
    a.resid = resid;
    a.y32 = y32;
    a.y = y;
    a.x = x;
    a.w = w;
    a.b = b;
    a.in = in;
    a.out = out;
    a.gelu = act == FGI_ACT_GELU;
    const int tiles = (int)fgi_ceil_div(out, kTileCols<T>);
    a.n_slices = plan_slices<T>(in, tiles, ctx->sm_count, ctx->gemv_slices);
    a.slice_rows = (int)fgi_ceil_div(in, a.n_slices);
    a.n_slices = (int)fgi_ceil_div(in, a.slice_rows); /* no empty slice */
    a.counters = static_cast<int *>(ctx->gemv_ws);
    a.part = reinterpret_cast<float *>(static_cast<char *>(ctx->gemv_ws) +
                                       FGI_GEMV_COUNTER_BYTES);
    const bool vec = out % kVec<T> == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
    const dim3 grid((unsigned)tiles, (unsigned)a.n_slices);
    constexpr bool F = !std::is_same<T, float>::value;
    switch (rows) {
    case 1: return launch_rows<T, 1, F>(fn, a, grid, vec, stream);
    case 2: return launch_rows<T, 2, F>(fn, a, grid, vec, stream);
    case 3: return launch_rows<T, 3, F>(fn, a, grid, vec, stream);
    case 4: return launch_rows<T, 4, F>(fn, a, grid, vec, stream);
    case 5: return launch_rows<T, 5, F>(fn, a, grid, vec, stream);
    case 6: return launch_rows<T, 6, F>(fn, a, grid, vec, stream);
    case 7: return launch_rows<T, 7, F>(fn, a, grid, vec, stream);
    default: return launch_rows<T, 8, F>(fn, a, grid, vec, stream);
    }
}

/* Packs of w a lane keeps in flight in the transposed GEMV. */
constexpr int kTUnroll = 4;

/* y32 (out) = round_T(norm(nx)) w^T (+ b), w (out, in): one row, a warp
 * per output row (rows dealt out grid-stride), the normalised row in
 * shared memory as T (the values the unfused norm would store in h), in
 * 16-byte packs: a lane reads the 8 values that meet its pack of w with
 * one shared load, which a warp serves without bank conflicts (element
 * loads would be 4-way conflicted, lanes 8 packs apart sharing banks).
 * VEC: in is a multiple of kVec and w 16-byte aligned. */
template <typename T, bool VEC>
__global__ void __launch_bounds__(kThreads) gemv_t_norm_kernel(const gemv_args<T> a)
{
    using pack_t = fgi_pack<T>;
    __shared__ pack_t h_packs[FGI_GEMV_T_MAX_IN / kVec<T>];
    T *h = reinterpret_cast<T *>(h_packs);
    norm_stats<1> st;
    compute_norm_stats<T, 1>(a, st);
    for (int i = threadIdx.x; i < a.in; i += kThreads)
        h[i] = fgi_elem<T>::from_float(x_value<T, 1, true>(a, st, 0, i));
    __syncthreads();
    constexpr int V = kVec<T>;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = blockIdx.x * kWarps + warp; o < a.out; o += gridDim.x * kWarps) {
        const T *row = a.w + (long long)o * a.in;
        float acc = 0.0f;
        if constexpr (VEC) {
            int i = lane * V;
            for (; i + (kTUnroll - 1) * 32 * V < a.in; i += kTUnroll * 32 * V) {
                pack_t pk[kTUnroll];
#pragma unroll
                for (int u = 0; u < kTUnroll; u++) pk[u] = fgi_ldg<pack_t>(row + i + u * 32 * V);
#pragma unroll
                for (int u = 0; u < kTUnroll; u++) {
                    const pack_t hp = h_packs[(i + u * 32 * V) / V];
#pragma unroll
                    for (int e = 0; e < V; e++) acc = fmaf(hp.get(e), pk[u].get(e), acc);
                }
            }
            for (; i < a.in; i += 32 * V) {
                const pack_t pk = fgi_ldg<pack_t>(row + i), hp = h_packs[i / V];
#pragma unroll
                for (int e = 0; e < V; e++) acc = fmaf(hp.get(e), pk.get(e), acc);
            }
        } else {
            for (int i = lane; i < a.in; i += 32)
                acc = fmaf(fgi_elem<T>::to_float(h[i]), fgi_ldg1(row + i), acc);
        }
        acc = fgi_warp_sum(acc);
        if (lane == 0) a.y32[o] = finish(a, acc, o);
    }
}

template <typename T>
fg_status launch_gemv_t(const char *fn, const fgi_linear_ctx *ctx, float *y,
                        const fgi_gemv_norm *norm, const T *w_t, const T *b, int in, int out,
                        cudaStream_t stream)
{
    gemv_args<T> a;
    memset(&a, 0, sizeof a);
    set_norm(a, norm);
    a.w = w_t;
    a.b = b;
    a.y32 = y;
    a.in = in;
    a.out = out;
    /* two blocks per SM of 8 warps, each lane kTUnroll packs in flight */
    const long long want = 2LL * (ctx->sm_count > 0 ? ctx->sm_count : 1);
    const long long blocks = fgi_ceil_div(out, kWarps) < want ? fgi_ceil_div(out, kWarps) : want;
    const bool vec = in % kVec<T> == 0 && reinterpret_cast<uintptr_t>(w_t) % 16 == 0;
    if (vec)
        gemv_t_norm_kernel<T, true><<<(unsigned)blocks, kThreads, 0, stream>>>(a);
    else
        gemv_t_norm_kernel<T, false><<<(unsigned)blocks, kThreads, 0, stream>>>(a);
    FGI_CUDA_LAUNCHED(fn, "gemv_t_norm_kernel");
    return FG_OK;
}

} // namespace

extern "C" fg_status fgi_cuda_gemv_t_normed(const char *fn, fg_dtype dtype,
                                            const fgi_linear_ctx *ctx, float *y,
                                            const fgi_gemv_norm *norm, const void *w_t,
                                            const void *b, int in, int out, cudaStream_t stream)
{
    if (dtype != FG_DTYPE_BF16 && dtype != FG_DTYPE_F16)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the transposed GEMV serves bf16 and f16 only "
                        "(%s)", fn, fg_dtype_name(dtype));
    if (norm == NULL || in < 1 || in > FGI_GEMV_T_MAX_IN || out < 1)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the transposed GEMV takes a norm and 1 .. %d "
                        "inputs (in %d, out %d)", fn, FGI_GEMV_T_MAX_IN, in, out);
    return fgi_with_dtype(fn, dtype, [&](auto tag) -> fg_status {
        using T = decltype(tag);
        if constexpr (std::is_same<T, float>::value)
            return FG_ERR_INVALID_ARG; /* refused above */
        else
            return launch_gemv_t<T>(fn, ctx, y, norm, static_cast<const T *>(w_t),
                                    static_cast<const T *>(b), in, out, stream);
    });
}

extern "C" fg_status fgi_cuda_gemv(const char *fn, const fgi_linear_ctx *ctx, float *y,
                                   const float *x, const float *w, const float *b, int rows,
                                   int in, int out, fgi_activation act, cudaStream_t stream)
{
    return launch_gemv<float>(fn, ctx, y, x, w, b, rows, in, out, act, stream);
}

extern "C" fg_status fgi_cuda_gemv_typed(const char *fn, fg_dtype dtype,
                                         const fgi_linear_ctx *ctx, void *y, const void *x,
                                         const void *w, const void *b, int rows, int in, int out,
                                         fgi_activation act, cudaStream_t stream)
{
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        return launch_gemv<T>(fn, ctx, static_cast<T *>(y), static_cast<const T *>(x),
                              static_cast<const T *>(w), static_cast<const T *>(b), rows, in, out,
                              act, stream);
    });
}

extern "C" fg_status fgi_cuda_gemv_fused(const char *fn, fg_dtype dtype,
                                         const fgi_linear_ctx *ctx, void *y, int y_f32,
                                         const void *x, const fgi_gemv_norm *norm, float *resid,
                                         const void *w, const void *b, int rows, int in, int out,
                                         fgi_activation act, cudaStream_t stream)
{
    if (dtype != FG_DTYPE_BF16 && dtype != FG_DTYPE_F16)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the fused GEMV serves bf16 and f16 only (%s)",
                        fn, fg_dtype_name(dtype));
    if (resid != NULL && act != FGI_ACT_NONE)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the residual epilogue takes no activation", fn);
    if (rows != 1 || (norm != NULL) == (resid != NULL))
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the fused GEMV takes one row and either a norm "
                        "or a residual (rows %d)", fn, rows);
    if (y_f32 && norm == NULL)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: an fp32 y goes with the norm prologue only", fn);
    return fgi_with_dtype(fn, dtype, [&](auto tag) {
        using T = decltype(tag);
        return launch_gemv<T>(fn, ctx, y_f32 ? nullptr : static_cast<T *>(y),
                              static_cast<const T *>(x), static_cast<const T *>(w),
                              static_cast<const T *>(b), rows, in, out, act, stream, norm, resid,
                              y_f32 ? static_cast<float *>(y) : nullptr);
    });
}

extern "C" int fgi_cuda_gemv_applies(int rows, int w_transposed)
{
    return rows >= 1 && rows <= FGI_GEMV_MAX_ROWS && !w_transposed;
}
