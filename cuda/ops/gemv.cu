/* Linear layers of one to four rows without cuBLAS (the decode step):
 * y (rows, out) = act(x (rows, in) @ w (in, out) + b), w row-major.
 *
 * Why: with so few rows a linear layer only streams w once, so its speed is
 * the card's memory bandwidth plus a fixed cost per call. On an H100
 * (bench_linear, bench/RESULTS.md) GPT-2 small's four layer shapes take
 * 31 us here against 41 us in cuBLAS's fp32 GEMM; Llama-1B's large ones
 * stream at 1.5-2.8 TB/s, like cuBLAS or slightly faster.
 * Conventions: y must not overlap x; b (out) may be NULL; act is none or the
 * tanh GELU of activation.cuh (the bias + GELU pass fused into the GEMV).
 * The result is deterministic: a fixed summation order and no float atomics.
 * Design: a block owns 128 columns (a float4 per lane) and a slice of `in`;
 * its 8 warps take interleaved rows of the slice with 8 loads in flight each
 * and are summed in shared memory. Where a column tile has several slices,
 * each block writes a partial and the tile's last block (ticket counter,
 * left at zero for the next call) adds them in slice order. */
#include "activation.cuh"
#include "cuda_common.cuh"
#include "ops_internal.h"

namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kTileCols = 128; /* 32 lanes x float4 */
constexpr int kUnroll = 8;     /* w rows in flight per warp */
constexpr int kMinSliceRows = kWarps * kUnroll;
/* Partials of at most this many (tile, slice) blocks fit the workspace. */
constexpr int kMaxSplitBlocks = 1024;

static_assert(FGI_GEMV_COUNTER_BYTES == sizeof(int) * kMaxSplitBlocks &&
                  FGI_GEMV_WORKSPACE_BYTES ==
                      FGI_GEMV_COUNTER_BYTES +
                          sizeof(float) * kMaxSplitBlocks * kTileCols * FGI_GEMV_MAX_ROWS,
              "the GEMV workspace holds the counters and the largest partials");

struct gemv_args {
    float *y;
    const float *x, *w, *b;
    int in, out;
    int slice_rows, n_slices;
    int gelu;
    int *counters; /* (tiles) */
    float *part;   /* (n_slices, rows, out) */
};

/* Four columns c .. c+3 of w row i; VEC: out % 4 == 0 and w 16-byte
 * aligned, so the caller's c < out covers all four. */
template <bool VEC>
__device__ inline float4 load_w4(const float *w, int i, int c, int out)
{
    const float *p = w + (long long)i * out + c;
    if (VEC) return __ldg(reinterpret_cast<const float4 *>(p));
    float4 v;
    v.x = __ldg(p);
    v.y = c + 1 < out ? __ldg(p + 1) : 0.0f;
    v.z = c + 2 < out ? __ldg(p + 2) : 0.0f;
    v.w = c + 3 < out ? __ldg(p + 3) : 0.0f;
    return v;
}

__device__ inline void fma4(float4 &acc, float s, const float4 &v)
{
    acc.x = fmaf(s, v.x, acc.x);
    acc.y = fmaf(s, v.y, acc.y);
    acc.z = fmaf(s, v.z, acc.z);
    acc.w = fmaf(s, v.w, acc.w);
}

__device__ inline float finish(const gemv_args &a, float sum, int col)
{
    const float v = a.b ? sum + a.b[col] : sum;
    return a.gelu ? fgi_gelu(v) : v;
}

/* This block's sums of its slice for the tile's columns, into acc. */
template <int R, bool VEC>
__device__ inline void slice_sums(const gemv_args &a, int c, float4 (&acc)[R])
{
    const int warp = threadIdx.x >> 5;
    const int k0 = (int)blockIdx.y * a.slice_rows, k1 = min(a.in, k0 + a.slice_rows);
    int i = k0 + warp;
    for (; i + (kUnroll - 1) * kWarps < k1; i += kUnroll * kWarps) {
        float4 wv[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; u++) wv[u] = load_w4<VEC>(a.w, i + u * kWarps, c, a.out);
#pragma unroll
        for (int u = 0; u < kUnroll; u++)
#pragma unroll
            for (int r = 0; r < R; r++)
                fma4(acc[r], __ldg(a.x + (long long)r * a.in + i + u * kWarps), wv[u]);
    }
    for (; i < k1; i += kWarps) {
        const float4 wv = load_w4<VEC>(a.w, i, c, a.out);
#pragma unroll
        for (int r = 0; r < R; r++) fma4(acc[r], __ldg(a.x + (long long)r * a.in + i), wv);
    }
}

/* Partial of slice sl, row r, columns c .. c+3 (zeros past out), through
 * L2: other blocks wrote it and L1 is not coherent. */
template <int R, bool VEC>
__device__ inline float4 load_part4(const gemv_args &a, int sl, int r, int c)
{
    const float *p = a.part + ((long long)sl * R + r) * a.out + c;
    if (VEC) return __ldcg(reinterpret_cast<const float4 *>(p));
    float4 v;
    v.x = __ldcg(p);
    v.y = c + 1 < a.out ? __ldcg(p + 1) : 0.0f;
    v.z = c + 2 < a.out ? __ldcg(p + 2) : 0.0f;
    v.w = c + 3 < a.out ? __ldcg(p + 3) : 0.0f;
    return v;
}

__device__ inline void add4(float4 &s, const float4 &v)
{
    s.x += v.x;
    s.y += v.y;
    s.z += v.z;
    s.w += v.w;
}

/* The tile's last block adds the slices' partials: each thread takes four
 * columns of one row and every kGroups-th slice, so all its loads are in
 * flight at once; the groups then meet in shared memory in group order. */
template <int R, bool VEC>
__device__ void sum_partials(const gemv_args &a, float4 *scratch)
{
    constexpr int kQuads = R * kTileCols / 4;   /* (row, 4 columns) of the tile */
    constexpr int kGroups = kThreads / kQuads;  /* 8, 4, 2, 2 for 1 .. 4 rows */
    const int q = threadIdx.x % kQuads, group = threadIdx.x / kQuads;
    const int r = q / 32, c = blockIdx.x * kTileCols + (q % 32) * 4;
    if (group < kGroups) {
        float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (c < a.out) {
#pragma unroll 4
            for (int sl = group; sl < a.n_slices; sl += kGroups)
                add4(s, load_part4<R, VEC>(a, sl, r, c));
        }
        scratch[group * kQuads + q] = s;
    }
    __syncthreads();
    if (threadIdx.x >= kQuads || c >= a.out) return;
    float4 s = scratch[q];
    for (int g = 1; g < kGroups; g++) add4(s, scratch[g * kQuads + q]);
    float *y = a.y + (long long)r * a.out + c;
    y[0] = finish(a, s.x, c);
    if (c + 1 < a.out) y[1] = finish(a, s.y, c + 1);
    if (c + 2 < a.out) y[2] = finish(a, s.z, c + 2);
    if (c + 3 < a.out) y[3] = finish(a, s.w, c + 3);
}

/* Minimum blocks per SM 1: under the default bounds ptxas saved registers
 * by interleaving the FMAs with the loads, leaving only three of the eight
 * in flight (SASS, sm_90); with this bound all eight are issued first. */
template <int R, bool VEC>
__global__ void __launch_bounds__(kThreads, 1) gemv_kernel(const gemv_args a)
{
    __shared__ float4 warp_sums[kWarps][R][32];
    __shared__ int last_block[1];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int c = blockIdx.x * kTileCols + lane * 4;

    float4 acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (c < a.out) slice_sums<R, VEC>(a, c, acc);
#pragma unroll
    for (int r = 0; r < R; r++) warp_sums[warp][r][lane] = acc[r];
    __syncthreads();

    /* Sum the warps for each (row, column) of the tile, warp order fixed. */
    const float *sums = reinterpret_cast<const float *>(warp_sums);
    for (int e = threadIdx.x; e < R * kTileCols; e += kThreads) {
        const int r = e / kTileCols, col = blockIdx.x * kTileCols + e % kTileCols;
        float s = 0.0f;
        for (int w = 0; w < kWarps; w++) s += sums[(w * R + r) * kTileCols + e % kTileCols];
        if (col >= a.out) continue;
        if (a.n_slices == 1)
            a.y[(long long)r * a.out + col] = finish(a, s, col);
        else
            a.part[((long long)blockIdx.y * R + r) * a.out + col] = s;
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
    sum_partials<R, VEC>(a, &warp_sums[0][0][0]); /* the warp sums are consumed */
}

template <int R>
fg_status launch_rows(const char *fn, const gemv_args &a, dim3 grid, bool vec,
                      cudaStream_t stream)
{
    if (vec)
        gemv_kernel<R, true><<<grid, kThreads, 0, stream>>>(a);
    else
        gemv_kernel<R, false><<<grid, kThreads, 0, stream>>>(a);
    FGI_CUDA_LAUNCHED(fn, "gemv_kernel");
    return FG_OK;
}

} // namespace

/* Slices per column tile: about one block per SM in all (its 8 warps with
 * 8 loads each keep 32 KB in flight), slices of at least kMinSliceRows
 * rows, and partials that fit the workspace; a forced count (benchmarks)
 * still obeys the workspace. bench_linear's H100 sweep (bench/RESULTS.md):
 * the counts this gives were within about 0.5 us of the best at every
 * decode shape; two blocks per SM were up to 1 us slower. */
static int plan_slices(int in, int tiles, int sm_count, int forced)
{
    const long long target = sm_count > 0 ? sm_count : 1;
    long long n = (target + tiles - 1) / tiles;
    const long long by_rows = (in + kMinSliceRows - 1) / kMinSliceRows;
    if (n > by_rows) n = by_rows;
    if (forced > 0) n = forced < in ? forced : in;
    if (n * tiles > kMaxSplitBlocks) n = kMaxSplitBlocks / tiles;
    return n < 1 ? 1 : (int)n;
}

extern "C" int fgi_cuda_gemv_applies(int rows, int w_transposed)
{
    return rows >= 1 && rows <= FGI_GEMV_MAX_ROWS && !w_transposed;
}

extern "C" fg_status fgi_cuda_gemv(const char *fn, const fgi_linear_ctx *ctx, float *y,
                                   const float *x, const float *w, const float *b, int rows,
                                   int in, int out, fgi_activation act, cudaStream_t stream)
{
    gemv_args a;
    a.y = y;
    a.x = x;
    a.w = w;
    a.b = b;
    a.in = in;
    a.out = out;
    a.gelu = act == FGI_ACT_GELU;
    const int tiles = (int)fgi_ceil_div(out, kTileCols);
    a.n_slices = plan_slices(in, tiles, ctx->sm_count, ctx->gemv_slices);
    a.slice_rows = (int)fgi_ceil_div(in, a.n_slices);
    a.n_slices = (int)fgi_ceil_div(in, a.slice_rows); /* no empty slice */
    a.counters = static_cast<int *>(ctx->gemv_ws);
    a.part = reinterpret_cast<float *>(static_cast<char *>(ctx->gemv_ws) +
                                       FGI_GEMV_COUNTER_BYTES);
    const bool vec = out % 4 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
    const dim3 grid((unsigned)tiles, (unsigned)a.n_slices);
    switch (rows) {
    case 1: return launch_rows<1>(fn, a, grid, vec, stream);
    case 2: return launch_rows<2>(fn, a, grid, vec, stream);
    case 3: return launch_rows<3>(fn, a, grid, vec, stream);
    default: return launch_rows<4>(fn, a, grid, vec, stream);
    }
}
