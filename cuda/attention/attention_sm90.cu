/* Flash attention in bf16 / f16 for Hopper (sm_90a), FlashAttention-3
 * style: the kernel behind 16-bit attention calls on compute capability 9.0
 * at head_dim 64 and 128 (fgi_cuda_attention16 picks it; other head dims
 * and other cards run the sm_80 kernel, attention_mma16.cu).
 *
 * Conventions: the same problem as attention_mma16.cu (fgi_attention16_args):
 * q, k, v, out of type T, rows of head_dim elements; fp32 scores in log2
 * units, softmax state, accumulators and lse; causal with bottom-right
 * alignment (row i sees keys j <= i + kv_len - q_len) and the optional
 * sliding window; query head h reads KV head h / group.
 *
 * Design: 3 warpgroups per block of BM = 128 query rows: a producer (one
 * thread issues TMA loads of Q once and of K / V tiles into an S-stage ring
 * with full / empty mbarriers; setmaxnreg gives its registers away) and
 * two consumers of 64 rows each: S = Q K^T with wgmma (Q and K from 128B-
 * swizzled shared memory through descriptors), softmax in registers, O += P
 * V with P from registers and V through a transposed descriptor. The two
 * consumers take turns at the tensor cores (named barriers 1 and 2), so the
 * softmax of one overlaps the GEMMs of the other; within a consumer the
 * S GEMM of tile i is in flight together with the P V GEMM of tile i - 1.
 *
 * Testing: the CPU emulator (tools/cuda_emu) runs this kernel with models of
 * wgmma, TMA, mbarriers and named barriers that decode the same descriptors
 * and tensor maps (sm90_primitives.cuh); what only a card shows: the real
 * instruction encodings and timing, memory-proxy ordering (fences), and
 * whether the GPU's descriptor conventions match the model (README). */
#include "attention_kernels.cuh"
#include "dtype.cuh"
#include "ops_internal.h"
#include "sm90_primitives.cuh"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>

namespace {

constexpr int kRows = 128;         /* query rows per block */
constexpr int kConsumerRows = 64;  /* per consumer warpgroup (one m64 tile) */
constexpr int kThreads = 384;      /* producer + 2 consumer warpgroups */
constexpr int kConsumerThreads = 256;
constexpr int kBN = 128;           /* keys per tile */
constexpr int kSwizzleRow = 128;   /* bytes: 64 16-bit elements */
constexpr int kColBlock = 64;      /* elements per 128-byte swizzled row */
constexpr int kBarTurn0 = 1;       /* named barriers: consumer c may issue (1 + c) */

template <int D>
struct Shape90 {
    static constexpr int STAGES = D <= 64 ? 3 : 2;
    static constexpr int CB = D / kColBlock; /* 64-column blocks of a row */
    static constexpr int Q_BYTES = kRows * D * 2;
    static constexpr int KV_BYTES = kBN * D * 2; /* one K or V tile */
    /* Q, then K of every stage, then V of every stage, then the barriers:
     * q_full, k_full[S], v_full[S], empty[S] */
    static constexpr int K_OFF = Q_BYTES;
    static constexpr int V_OFF = K_OFF + STAGES * KV_BYTES;
    static constexpr int BAR_OFF = V_OFF + STAGES * KV_BYTES;
    static constexpr int BYTES = BAR_OFF + 8 * (1 + 3 * STAGES);
    static_assert(D % kColBlock == 0, "whole 128-byte rows");
};

/* 1024 bytes of slack: the 128B swizzle pattern repeats every 1024 bytes,
 * and the kernel aligns its buffers to it. */
template <int D>
constexpr size_t smem_bytes()
{
    return (size_t)Shape90<D>::BYTES + 1024;
}

struct problem90 {
    /* 3D: (head_dim, rows, heads), or for Q (head_dim, heads, rows) when
     * q_heads_inner (the decoder's fused projection: heads closer than
     * rows), so that the strides never decrease */
    fgi_tmap q_map, k_map, v_map;
    int q_heads_inner;
    void *out;
    long long out_head_stride, out_row_stride;
    float *lse;
    int n_q_head, group, q_len, kv_len, shift, window;
    float scale_log2;
};

/* The descriptor of a 128B-swizzled K-major operand block: rows of 128
 * bytes, 8-row groups 1024 bytes apart (SBO), LBO unused. */
__device__ __forceinline__ uint64_t kmajor_desc(const unsigned char *p)
{
    return fgi_wgmma_desc(p, 16, 1024, true);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 1)
    sm90_attention_kernel(const __grid_constant__ problem90 p)
{
    using S = Shape90<D>;
    constexpr int STAGES = S::STAGES;
    extern __shared__ unsigned char sm90_smem_raw[];
    unsigned char *smem = reinterpret_cast<unsigned char *>(
        ((uintptr_t)sm90_smem_raw + 1023) & ~(uintptr_t)1023);
    uint64_t *bars = reinterpret_cast<uint64_t *>(smem + S::BAR_OFF);
    uint64_t *q_full = bars, *k_full = bars + 1, *v_full = bars + 1 + STAGES,
             *empty = bars + 1 + 2 * STAGES;

    const int n_q_tiles = (p.q_len + kRows - 1) / kRows;
    const int head = (int)(blockIdx.x % (unsigned)p.n_q_head);
    const int q0 = (n_q_tiles - 1 - (int)(blockIdx.x / (unsigned)p.n_q_head)) * kRows;
    const int kv_head = head / p.group;
    const int rows_end = min(q0 + kRows, p.q_len);
    const int key_hi = min(p.kv_len, rows_end + p.shift);
    const int key_lo = p.window > 0 ? max(0, q0 + p.shift - p.window + 1) : 0;
    const int n_tiles = (key_hi - key_lo + kBN - 1) / kBN;

    if (threadIdx.x == 0) {
        fgi_mbar_init(q_full, 1);
        for (int s = 0; s < STAGES; s++) {
            fgi_mbar_init(k_full + s, 1);
            fgi_mbar_init(v_full + s, 1);
            fgi_mbar_init(empty + s, kConsumerThreads);
        }
        fgi_mbar_init_fence();
    }
    __syncthreads();

    /* the warpgroup, provably warp-uniform for the compiler (a shuffle) */
    const int wg = __shfl_sync(0xffffffffu, (int)(threadIdx.x / 128u), 0);
    if (wg == 0) {
        /* Producer: one thread issues every load; the others leave. */
        fgi_setmaxnreg_dec<40>();
        if (threadIdx.x != 0) return;
        fgi_mbar_arrive_tx(q_full, S::Q_BYTES);
        for (int cb = 0; cb < S::CB; cb++)
            fgi_tma_load_3d(smem + cb * kRows * kSwizzleRow, &p.q_map, q_full, cb * kColBlock,
                            p.q_heads_inner ? head : q0, p.q_heads_inner ? q0 : head);
        for (int i = 0; i < n_tiles; i++) {
            const int s = i % STAGES;
            const unsigned phase = (unsigned)(i / STAGES) & 1u;
            fgi_mbar_wait(empty + s, phase ^ 1u); /* the consumers freed the stage */
            const int key0 = key_lo + i * kBN;
            unsigned char *k_s = smem + S::K_OFF + s * S::KV_BYTES;
            unsigned char *v_s = smem + S::V_OFF + s * S::KV_BYTES;
            fgi_mbar_arrive_tx(k_full + s, S::KV_BYTES);
            for (int cb = 0; cb < S::CB; cb++)
                fgi_tma_load_3d(k_s + cb * kBN * kSwizzleRow, &p.k_map, k_full + s,
                                cb * kColBlock, key0, kv_head);
            fgi_mbar_arrive_tx(v_full + s, S::KV_BYTES);
            for (int cb = 0; cb < S::CB; cb++)
                fgi_tma_load_3d(v_s + cb * kBN * kSwizzleRow, &p.v_map, v_full + s,
                                cb * kColBlock, key0, kv_head);
        }
        return;
    }

    /* Consumer c: rows q0 + 64c .. + 63; this thread's rows r0 and r0 + 8
     * (warp w of the warpgroup owns 16 rows, fragment layout as mma.m16n8). */
    fgi_setmaxnreg_inc<232>();
    const int c = wg - 1;
    const int w = (int)(threadIdx.x % 128u) / 32, lane = (int)(threadIdx.x % 32u);
    const int g = lane / 4, t = lane % 4;
    const int r0 = q0 + c * kConsumerRows + 16 * w + g, r1 = r0 + 8;
    constexpr int NT = kBN / 8;  /* 8-key column tiles of S */
    constexpr int PK = kBN / 16; /* k steps of P V */
    constexpr int KS = D / 16;   /* k steps of Q K^T */

    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; i++) o[i] = 0.0f;
    fgi_softmax_state st[2] = {fgi_softmax_init(), fgi_softmax_init()};
    uint32_t pa[PK][4]; /* P of the previous tile as A fragments */
    float s[kBN / 2];

    const unsigned char *q_s = smem + c * kConsumerRows * kSwizzleRow;
    /* S = Q K^T of the tile in stage `stage` (asynchronous: committed, not waited) */
    const auto issue_s = [&](int stage) {
        const unsigned char *k_s = smem + S::K_OFF + stage * S::KV_BYTES;
        fgi_wgmma_fence_regs(s);
        fgi_wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            const int cb = kk / 4, off = (kk % 4) * 32;
            fgi_wgmma_ss<T, kBN, 0>(s, kmajor_desc(q_s + cb * kRows * kSwizzleRow + off),
                                    kmajor_desc(k_s + cb * kBN * kSwizzleRow + off), kk > 0);
        }
        fgi_wgmma_commit();
    };
    /* O += P V of the tile in stage `stage` (V MN-major: 64-column blocks
     * LBO apart, 8-key groups SBO = 1024 apart, the transpose bit set) */
    const auto issue_pv = [&](int stage) {
        const unsigned char *v_s = smem + S::V_OFF + stage * S::KV_BYTES;
        fgi_wgmma_fence_regs(o);
        fgi_wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < PK; kk++)
            fgi_wgmma_rs<T, D, 1>(o, pa[kk],
                                  fgi_wgmma_desc(v_s + kk * 16 * kSwizzleRow, kBN * kSwizzleRow,
                                                 1024, true),
                                  1);
        fgi_wgmma_commit();
    };
    /* Scales and masks tile i's scores and folds them into the row states
     * (alpha: the factors of O); s then holds P. */
    float alpha[2];
    const auto softmax = [&](int i) {
        const int key0 = key_lo + i * kBN;
#pragma unroll
        for (int e = 0; e < kBN / 2; e++) s[e] *= p.scale_log2;
        /* masking only where the tile crosses the end of the keys, the
         * block's first diagonal or its last row's window start */
        if (key0 + kBN > key_hi || key0 + kBN - 1 > q0 + p.shift ||
            (p.window > 0 && key0 < q0 + kRows + p.shift - p.window)) {
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = key0 + 8 * j + 2 * t + (e & 1);
                    const int diag = (e < 2 ? r0 : r1) + p.shift;
                    if (key >= key_hi || key > diag || (p.window > 0 && key <= diag - p.window))
                        s[4 * j + e] = -INFINITY;
                }
        }
        /* row half h (row g + 8h): entries 4j + 2h, 4j + 2h + 1 */
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float row[2 * NT];
#pragma unroll
            for (int j = 0; j < NT; j++)
                row[2 * j] = s[4 * j + 2 * h], row[2 * j + 1] = s[4 * j + 2 * h + 1];
            alpha[h] = fgi_softmax_update<4, 2>(st[h], row);
#pragma unroll
            for (int j = 0; j < NT; j++)
                s[4 * j + 2 * h] = row[2 * j], s[4 * j + 2 * h + 1] = row[2 * j + 1];
        }
    };
    /* O *= alpha, then P (rounded to T) as the A fragments of keys 16kk.. */
    const auto rescale_and_pack = [&]() {
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            o[4 * j] *= alpha[0], o[4 * j + 1] *= alpha[0];
            o[4 * j + 2] *= alpha[1], o[4 * j + 3] *= alpha[1];
        }
#pragma unroll
        for (int kk = 0; kk < PK; kk++) {
            pa[kk][0] = fgi_elem<T>::pack2(s[8 * kk], s[8 * kk + 1]);
            pa[kk][1] = fgi_elem<T>::pack2(s[8 * kk + 2], s[8 * kk + 3]);
            pa[kk][2] = fgi_elem<T>::pack2(s[8 * kk + 4], s[8 * kk + 5]);
            pa[kk][3] = fgi_elem<T>::pack2(s[8 * kk + 6], s[8 * kk + 7]);
        }
    };

    fgi_mbar_wait(q_full, 0);
    if (c == 1) fgi_named_arrive(kBarTurn0, kConsumerThreads); /* consumer 0 starts */

    /* Tile 0 (n_tiles >= 1: every block sees at least its first row's keys).
     * Every wgmma sits outside a branch: ptxas serialises wgmma on paths it
     * cannot prove warpgroup-uniform. */
    fgi_mbar_wait(k_full, 0);
    fgi_named_sync(kBarTurn0 + c, kConsumerThreads); /* our turn at the tensor cores */
    issue_s(0);
    if (c == 0 || n_tiles > 1) fgi_named_arrive(kBarTurn0 + (1 - c), kConsumerThreads);
    fgi_wgmma_wait<0>();
    fgi_wgmma_fence_regs(s);
    softmax(0);
    rescale_and_pack();

    for (int i = 1; i < n_tiles; i++) {
        const int cur = i % STAGES, prev = (i - 1) % STAGES;
        fgi_mbar_wait(k_full + cur, (unsigned)(i / STAGES) & 1u);
        /* our turn: S_i = Q K_i^T, then O += P_{i-1} V_{i-1}; then the other
         * consumer's (consumer 1's last turn has no taker) */
        fgi_named_sync(kBarTurn0 + c, kConsumerThreads);
        issue_s(cur);
        fgi_mbar_wait(v_full + prev, (unsigned)((i - 1) / STAGES) & 1u);
        issue_pv(prev);
        if (c == 0 || i + 1 < n_tiles) fgi_named_arrive(kBarTurn0 + (1 - c), kConsumerThreads);
        fgi_wgmma_wait<1>(); /* S_i is in; P V may still run */
        fgi_wgmma_fence_regs(s);
        softmax(i);
        fgi_wgmma_wait<0>(); /* P_{i-1} V_{i-1} is in: stage prev is free */
        fgi_wgmma_fence_regs(o);
        fgi_mbar_arrive(empty + prev);
        rescale_and_pack();
    }

    /* the last tile's P V */
    const int last = (n_tiles - 1) % STAGES;
    fgi_mbar_wait(v_full + last, (unsigned)((n_tiles - 1) / STAGES) & 1u);
    issue_pv(last);
    fgi_wgmma_wait<0>();
    fgi_wgmma_fence_regs(o);

#pragma unroll
    for (int h = 0; h < 2; h++) {
        fgi_softmax_reduce_sum<4>(st[h]);
        const int row = h ? r1 : r0;
        if (row >= p.q_len) continue;
        const float inv = fgi_softmax_inv_sum(st[h]);
        T *dst = static_cast<T *>(p.out) + head * p.out_head_stride + row * p.out_row_stride +
                 2 * t;
#pragma unroll
        for (int j = 0; j < D / 8; j++)
            *reinterpret_cast<uint32_t *>(dst + 8 * j) =
                fgi_elem<T>::pack2(o[4 * j + 2 * h] * inv, o[4 * j + 2 * h + 1] * inv);
        if (p.lse != nullptr && t == 0)
            p.lse[(long long)head * p.q_len + row] = fgi_softmax_lse(st[h]);
    }
}

/* A (head_dim, rows, heads) tensor map with 64-column, `box_rows`-row
 * boxes, or (head_dim, heads, rows) with (64, 1, box_rows) boxes when
 * heads_inner (the same shared-memory image: 128-byte rows). */
fg_status make_map(const char *fn, fgi_tmap *map, const void *base, int d, int rows, int heads,
                   long long row_stride, long long head_stride, int box_rows, bool bf16,
                   bool heads_inner = false)
{
    if (heads == 1) head_stride = row_stride * rows; /* never used: any valid stride */
    const uint64_t dims[3] = {(uint64_t)d, (uint64_t)(heads_inner ? heads : rows),
                              (uint64_t)(heads_inner ? rows : heads)};
    const uint64_t strides[2] = {(uint64_t)(heads_inner ? head_stride : row_stride) * 2,
                                 (uint64_t)(heads_inner ? row_stride : head_stride) * 2};
    const uint32_t box[3] = {(uint32_t)kColBlock, heads_inner ? 1u : (uint32_t)box_rows,
                             heads_inner ? (uint32_t)box_rows : 1u};
    const int rc = fgi_tma_encode16(map, 3, base, dims, strides, box, true, bf16);
    if (rc != 0)
        return fgi_fail(FG_ERR_CUDA, "%s: cuTensorMapEncodeTiled failed (%d) for the sm_90a "
                                     "attention kernel",
                       fn, rc);
    return FG_OK;
}

template <typename T, int D>
fg_status launch(const char *fn, const problem90 &p, cudaStream_t stream)
{
    const auto kernel = sm90_attention_kernel<T, D>;
    const size_t smem = smem_bytes<D>();
    FGI_CUDA_TRY(fn, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)smem));
    const long long blocks = (long long)p.n_q_head * ((p.q_len + kRows - 1) / kRows);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)blocks, 1, 1);
    cfg.blockDim = dim3(kThreads, 1, 1);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    FGI_CUDA_TRY(fn, cudaLaunchKernelEx(&cfg, kernel, p));
    FGI_CUDA_LAUNCHED(fn, "sm90_attention_kernel");
    return FG_OK;
}

/* 0 automatic, 1 the sm_80 kernel, 2 the sm_90a kernel; FG_ATTENTION16_KERNEL
 * (auto, sm80, sm90) sets the start value. */
int kernel_choice = -1;

int choice()
{
    if (kernel_choice < 0) {
        const char *v = getenv("FG_ATTENTION16_KERNEL");
        kernel_choice = v && strcmp(v, "sm80") == 0 ? 1 : v && strcmp(v, "sm90") == 0 ? 2 : 0;
    }
    return kernel_choice;
}

bool device_is_sm90()
{
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return major == 9 && minor == 0;
}

} // namespace

extern "C" void fgi_attention16_set_kernel(int which)
{
    kernel_choice = which < 0 || which > 2 ? 0 : which;
}

extern "C" bool fgi_attention16_sm90_built(void)
{
#if defined(FG_EMU_CUDA_RUNTIME_H) || defined(FGI_SM90A_BUILT)
    return true;
#else
    return false;
#endif
}

extern "C" int fgi_attention16_pick(int head_dim)
{
    const int want = choice();
    if (want == 1) return 1;
    const bool fits = (head_dim == 64 || head_dim == 128) && fgi_attention16_sm90_built();
    if (want == 2) return fits && device_is_sm90() ? 2 : -1;
    return fits && device_is_sm90() ? 2 : 1;
}

extern "C" fg_status fgi_cuda_attention16_sm90(const char *fn, const fgi_attention16_args *a,
                                               cudaStream_t stream)
{
    /* The caller (fgi_cuda_attention16) has validated the arguments, the
     * alignment (16-byte pointers, strides in whole 16-byte chunks: what
     * TMA needs too) and the device. */
    const bool bf16 = a->dtype == FG_DTYPE_BF16;
    problem90 p;
    memset(&p, 0, sizeof p);
    p.q_heads_inner = a->n_q_head > 1 && a->q_head_stride < a->q_row_stride;
    FGI_TRY(make_map(fn, &p.q_map, a->q, a->head_dim, a->q_len, a->n_q_head, a->q_row_stride,
                     a->q_head_stride, kRows, bf16, p.q_heads_inner != 0));
    FGI_TRY(make_map(fn, &p.k_map, a->k, a->head_dim, a->kv_len, a->n_kv_head, a->head_dim,
                     a->kv_head_stride, kBN, bf16));
    FGI_TRY(make_map(fn, &p.v_map, a->v, a->head_dim, a->kv_len, a->n_kv_head, a->head_dim,
                     a->kv_head_stride, kBN, bf16));
    fgi_attention16_common(p, a);
    if (bf16)
        return a->head_dim == 64 ? launch<__nv_bfloat16, 64>(fn, p, stream)
                                 : launch<__nv_bfloat16, 128>(fn, p, stream);
    return a->head_dim == 64 ? launch<__half, 64>(fn, p, stream)
                             : launch<__half, 128>(fn, p, stream);
}

/* The self-check behind the automatic pick (attention_internal.h) ------------- */

namespace {

constexpr int kCheckDevices = 16;
constexpr double kCheckBound = 2e-2; /* relative L2 of the two kernels' difference */

/* [device][bf16][head_dim 128]: 0 not run, 1 agreed, -1 disagreed, 2 running */
std::atomic<int> check_verdict[kCheckDevices][2][2];
double check_rel_l2[kCheckDevices][2][2];
double check_perturb = 0.0;

std::atomic<int> *verdict_slot(fg_dtype dtype, int head_dim, double **rel_l2)
{
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return nullptr;
    }
    if (dev < 0 || dev >= kCheckDevices || (head_dim != 64 && head_dim != 128)) return nullptr;
    const int b = dtype == FG_DTYPE_BF16, h = head_dim == 128;
    if (rel_l2 != nullptr) *rel_l2 = &check_rel_l2[dev][b][h];
    return &check_verdict[dev][b][h];
}

/* Both kernels on one random problem (4 query heads over 2 KV heads,
 * causal with 72 keys of shift, 200 query rows: a full and a partial
 * query tile of either kernel, partial key tiles); *rel_l2 = ||o90 - o80||
 * / ||o80||. */
fg_status run_selfcheck(const char *fn, fg_dtype dtype, int d, cudaStream_t stream,
                        double *rel_l2)
{
    const int H = 4, G = 2, q_len = 200, kv_len = 272;
    const size_t nq = (size_t)H * q_len * d, nkv = (size_t)G * kv_len * d, es = 2;
    const size_t n_all = nq + 2 * nkv;
    float *host = static_cast<float *>(malloc(sizeof(float) * (n_all + 2 * nq)));
    unsigned char *bits = static_cast<unsigned char *>(malloc(es * (n_all + 2 * nq)));
    void *dev = nullptr;
    fg_status st = host && bits ? FG_OK
                                : fgi_fail(FG_ERR_OOM, "%s: no host memory for the self-check", fn);
    if (st == FG_OK && cudaMalloc(&dev, es * (n_all + 2 * nq)) != cudaSuccess) {
        (void)cudaGetLastError();
        dev = nullptr;
        st = fgi_fail(FG_ERR_OOM, "%s: no device memory for the attention self-check", fn);
    }
    if (st == FG_OK) {
        uint64_t x = 0x9e3779b97f4a7c15ull; /* fixed: the check is the same every run */
        for (size_t i = 0; i < n_all; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            host[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 4.0 - 2.0);
        }
        st = fg_dtype_from_f32(dtype, bits, host, n_all);
    }
    if (st == FG_OK && cudaMemcpy(dev, bits, es * n_all, cudaMemcpyHostToDevice) != cudaSuccess) {
        (void)cudaGetLastError();
        st = fgi_fail(FG_ERR_CUDA, "%s: uploading the attention self-check failed", fn);
    }
    char *base = static_cast<char *>(dev);
    fgi_attention16_args a;
    memset(&a, 0, sizeof a);
    a.dtype = dtype;
    a.q = base;
    a.k = base + es * nq;
    a.v = base + es * (nq + nkv);
    a.out_head_stride = a.q_head_stride = (long long)q_len * d;
    a.out_row_stride = a.q_row_stride = d;
    a.kv_head_stride = (long long)kv_len * d;
    a.n_q_head = H;
    a.n_kv_head = G;
    a.q_len = q_len;
    a.kv_len = kv_len;
    a.head_dim = d;
    a.out = base + es * n_all;
    if (st == FG_OK) st = fgi_cuda_attention16_sm80(fn, &a, stream);
    a.out = base + es * (n_all + nq);
    if (st == FG_OK) st = fgi_cuda_attention16_sm90(fn, &a, stream);
    if (st == FG_OK && (cudaStreamSynchronize(stream) != cudaSuccess ||
                        cudaMemcpy(bits, base + es * n_all, es * 2 * nq,
                                   cudaMemcpyDeviceToHost) != cudaSuccess)) {
        (void)cudaGetLastError();
        st = fgi_fail(FG_ERR_CUDA, "%s: running the attention self-check failed", fn);
    }
    if (st == FG_OK) st = fg_dtype_to_f32(dtype, host, bits, 2 * nq);
    if (st == FG_OK) {
        double diff = 0.0, ref = 0.0;
        for (size_t i = 0; i < nq; i++) {
            const double o80 = host[i], o90 = host[nq + i] + check_perturb;
            diff += (o90 - o80) * (o90 - o80);
            ref += o80 * o80;
        }
        *rel_l2 = ref > 0.0 && diff == diff ? sqrt(diff / ref) : INFINITY;
    }
    if (dev != nullptr) (void)cudaFree(dev);
    free(host);
    free(bits);
    return st;
}

} // namespace

extern "C" bool fgi_attention16_sm90_trusted(const char *fn, fg_dtype dtype, int head_dim,
                                             cudaStream_t stream)
{
    if (choice() == 2) return true; /* forced */
    double *rel = nullptr;
    std::atomic<int> *slot = verdict_slot(dtype, head_dim, &rel);
    if (slot == nullptr) return false;
    int state = slot->load();
    if (state != 0) return state == 1; /* known, or another thread is checking */
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &capturing) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    if (capturing != cudaStreamCaptureStatusNone) return false; /* no allocation in a capture */
    if (!slot->compare_exchange_strong(state, 2)) return state == 1;
    double rel_l2 = INFINITY;
    if (run_selfcheck(fn, dtype, head_dim, stream, &rel_l2) != FG_OK) {
        slot->store(0); /* could not run (memory): the sm_80 kernel now, a check next time */
        return false;
    }
    const bool agreed = rel_l2 <= kCheckBound;
    *rel = rel_l2;
    slot->store(agreed ? 1 : -1);
    if (!agreed)
        fprintf(stderr,
                "flashgpt: the sm_90a attention kernel disagreed with the sm_80 kernel on this "
                "device (%s, head_dim %d: relative L2 %.3g against a bound of %.0e); using the "
                "sm_80 kernel\n",
                fg_dtype_name(dtype), head_dim, rel_l2, kCheckBound);
    return agreed;
}

extern "C" int fgi_attention16_selfcheck_state(fg_dtype dtype, int head_dim, double *rel_l2)
{
    double *rel = nullptr;
    std::atomic<int> *slot = verdict_slot(dtype, head_dim, &rel);
    if (slot == nullptr) return 0;
    const int state = slot->load();
    if (rel_l2 != nullptr) *rel_l2 = *rel;
    return state == 2 ? 0 : state;
}

extern "C" void fgi_attention16_selfcheck_reset(double perturb)
{
    for (int d = 0; d < kCheckDevices; d++)
        for (int b = 0; b < 2; b++)
            for (int h = 0; h < 2; h++) {
                check_verdict[d][b][h].store(0);
                check_rel_l2[d][b][h] = 0.0;
            }
    check_perturb = perturb;
}
