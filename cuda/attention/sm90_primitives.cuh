/* Hopper (sm_90a) building blocks for the FlashAttention-3-class kernel
 * (attention_sm90.cu): mbarriers with transaction counts, TMA tiled tensor
 * loads, wgmma.mma_async m64nNk16 (bf16 / f16 -> f32) with shared-memory
 * matrix descriptors, named barriers, setmaxnreg, and the host-side tensor
 * map encode. T is __nv_bfloat16 or __half.
 *
 * Conventions (PTX ISA 8.x): an mbarrier is 8 bytes of shared memory; a
 * phase completes when its arrivals and its announced transaction bytes are
 * all in; waiting on parity P returns once the phase of parity P completed
 * (a fresh barrier is in phase 0, so waiting on parity 1 passes at once).
 * wgmma accumulators use the m16n8 C layout per warp: warp w of the
 * warpgroup owns rows 16w..16w+15 and d[4j + e] is (row 16w + g + 8(e/2),
 * col 8j + 2t + e % 2) with g = lane / 4, t = lane % 4; A from registers is
 * the m16n8k16 A fragment of the warp's 16 rows (mma_f16.cuh). Descriptor:
 * start address, leading and stride byte offsets (>> 4) in bits 0-13,
 * 16-29, 32-45, base offset 49-51 (0 here), layout type 62-63 (1 = 128-byte
 * swizzle). The 128B-swizzled operand layout is the one TMA writes with
 * CU_TENSOR_MAP_SWIZZLE_128B into 1024-byte aligned shared memory: rows of
 * 64 16-bit elements (128 bytes), 16-byte chunk c of row r stored at chunk
 * c ^ (r % 8), 8-row groups 1024 bytes apart (SBO = 1024).
 *
 * Real PTX only where __CUDA_ARCH_FEAT_SM90_ALL is defined (nvcc for
 * sm_90a); in the CPU emulator (tools/cuda_emu: its fake cuda_runtime.h
 * defines FG_EMU_CUDA_RUNTIME_H) every operation calls the emulator's model
 * (tools/cuda_emu/sm90.cpp, README "Hopper"), which decodes the same
 * descriptors and tensor maps, so a wrong field gives a wrong result there
 * too. Compiled for another architecture the device functions trap. */
#ifndef FLASHGPT_CUDA_SM90_PRIMITIVES_CUH
#define FLASHGPT_CUDA_SM90_PRIMITIVES_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <type_traits>

#ifdef FG_EMU_CUDA_RUNTIME_H
#define FGI_SM90_EMU 1
/* The caller's file and line, for the emulator's reports. */
#define FGI_SITE , const char *fgi_file = __builtin_FILE(), int fgi_line = __builtin_LINE()
#define FGI_AT fgi_file, fgi_line
typedef fgi_emu::tensor_map fgi_tmap;
#else
#define FGI_SM90_EMU 0
#define FGI_SITE
#include <cuda.h> /* CUtensorMap (types only: nothing links libcuda) */
#include <cudaTypedefs.h>
typedef CUtensorMap fgi_tmap;
#endif

#if !FGI_SM90_EMU && defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FGI_SM90_TRAP() __trap()
#else
#define FGI_SM90_TRAP() ((void)0)
#endif
#if !FGI_SM90_EMU && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FGI_SM90_PTX 1
#else
#define FGI_SM90_PTX 0
#endif

/* Shared-window address of a shared-memory pointer. */
__device__ __forceinline__ uint32_t fgi_smem_addr(const void *p FGI_SITE)
{
#if FGI_SM90_EMU
    return fgi_emu::shared_address(p, FGI_AT);
#else
    return (uint32_t)__cvta_generic_to_shared(p);
#endif
}

/* Named barriers (ids 1-15; 0 is __syncthreads): `count` threads, a
 * multiple of 32, whole warps. sync waits, arrive does not. */
__device__ __forceinline__ void fgi_named_sync(int id, int count FGI_SITE)
{
#if FGI_SM90_EMU
    fgi_emu::named_barrier(id, count, true, FGI_AT);
#else
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(count) : "memory");
#endif
}

__device__ __forceinline__ void fgi_named_arrive(int id, int count FGI_SITE)
{
#if FGI_SM90_EMU
    fgi_emu::named_barrier(id, count, false, FGI_AT);
#else
    asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(count) : "memory");
#endif
}

/* mbarriers ------------------------------------------------------------------ */
__device__ __forceinline__ void fgi_mbar_init(uint64_t *bar, unsigned count FGI_SITE)
{
#if FGI_SM90_EMU
    fgi_emu::mbar_init(bar, count, FGI_AT);
#elif FGI_SM90_PTX
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(fgi_smem_addr(bar)), "r"(count)
                 : "memory");
#else
    (void)bar, (void)count;
    FGI_SM90_TRAP();
#endif
}

/* Makes initialised barriers visible to the async proxy (TMA) before the
 * block barrier that publishes them. */
__device__ __forceinline__ void fgi_mbar_init_fence()
{
#if FGI_SM90_PTX
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

__device__ __forceinline__ void fgi_mbar_arrive(uint64_t *bar FGI_SITE)
{
#if FGI_SM90_EMU
    fgi_emu::mbar_arrive(bar, 0, FGI_AT);
#elif FGI_SM90_PTX
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(fgi_smem_addr(bar)) : "memory");
#else
    (void)bar;
    FGI_SM90_TRAP();
#endif
}

/* Arrives and announces `bytes` more transaction bytes for this phase. */
__device__ __forceinline__ void fgi_mbar_arrive_tx(uint64_t *bar, unsigned bytes FGI_SITE)
{
#if FGI_SM90_EMU
    fgi_emu::mbar_arrive(bar, bytes, FGI_AT);
#elif FGI_SM90_PTX
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(
                     fgi_smem_addr(bar)),
                 "r"(bytes)
                 : "memory");
#else
    (void)bar, (void)bytes;
    FGI_SM90_TRAP();
#endif
}

/* Waits until the phase of parity `parity` has completed. */
__device__ __forceinline__ void fgi_mbar_wait(uint64_t *bar, unsigned parity FGI_SITE)
{
#if FGI_SM90_EMU
    fgi_emu::mbar_wait(bar, parity, FGI_AT);
#elif FGI_SM90_PTX
    const uint32_t addr = fgi_smem_addr(bar);
    uint32_t done = 0;
    do {
        asm volatile("{\n.reg .pred p;\n"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(addr), "r"(parity)
                     : "memory");
    } while (!done);
#else
    (void)bar, (void)parity;
    FGI_SM90_TRAP();
#endif
}

/* TMA: the box at coordinates (c0 innermost, ...) of the tensor `map`
 * describes into shared memory at dst (128-byte aligned; 1024 for the
 * 128-byte swizzle), completing its bytes on `bar`. Elements outside the
 * tensor read as zero. Issued by one thread. */
__device__ __forceinline__ void fgi_tma_load_3d(void *dst, const fgi_tmap *map, uint64_t *bar,
                                                int c0, int c1, int c2 FGI_SITE)
{
#if FGI_SM90_EMU
    const int c[3] = {c0, c1, c2};
    fgi_emu::tma_load(dst, map, c, bar, FGI_AT);
#elif FGI_SM90_PTX
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes "
                 "[%0], [%1, {%3, %4, %5}], [%2];" ::"r"(fgi_smem_addr(dst)),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(fgi_smem_addr(bar)), "r"(c0), "r"(c1),
                 "r"(c2)
                 : "memory");
#else
    (void)dst, (void)map, (void)bar, (void)c0, (void)c1, (void)c2;
    FGI_SM90_TRAP();
#endif
}

/* Register budget per thread of a warpgroup (warp-specialised kernels
 * give the producer's registers to the consumers). The emulator has no
 * registers: a no-op there. */
template <int R>
__device__ __forceinline__ void fgi_setmaxnreg_inc()
{
#if FGI_SM90_PTX
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(R));
#endif
}
template <int R>
__device__ __forceinline__ void fgi_setmaxnreg_dec()
{
#if FGI_SM90_PTX
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(R));
#endif
}

/* wgmma ------------------------------------------------------------------------ */

/* A shared-memory matrix descriptor: 128-byte swizzle when swizzle128, else
 * none; lbo / sbo in bytes. */
__device__ __forceinline__ uint64_t fgi_wgmma_desc(const void *smem, uint32_t lbo, uint32_t sbo,
                                                   bool swizzle128 FGI_SITE)
{
#if FGI_SM90_EMU
    const uint32_t a = fgi_smem_addr(smem, FGI_AT);
#else
    const uint32_t a = fgi_smem_addr(smem);
#endif
    return (uint64_t)((a >> 4) & 0x3fffu) | (uint64_t)((lbo >> 4) & 0x3fffu) << 16 |
           (uint64_t)((sbo >> 4) & 0x3fffu) << 32 | (uint64_t)(swizzle128 ? 1u : 0u) << 62;
}

/* Orders the warpgroup's register and shared accesses before the next
 * wgmma (required before the first one and after touching accumulators). */
__device__ __forceinline__ void fgi_wgmma_fence()
{
#if FGI_SM90_PTX
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#endif
}

__device__ __forceinline__ void fgi_wgmma_commit()
{
#if FGI_SM90_EMU
    fgi_emu::wgmma_commit();
#elif FGI_SM90_PTX
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
#endif
}

/* Waits until at most N committed wgmma groups are in flight. */
template <int N>
__device__ __forceinline__ void fgi_wgmma_wait()
{
#if FGI_SM90_EMU
    fgi_emu::wgmma_wait(N);
#elif FGI_SM90_PTX
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
#endif
}

/* Keeps the compiler from moving accesses of accumulator registers across
 * a wgmma issue or wait (they change behind its back). */
template <int K>
__device__ __forceinline__ void fgi_wgmma_fence_regs(float (&d)[K])
{
#if FGI_SM90_PTX
#pragma unroll
    for (int i = 0; i < K; i++) asm volatile("" : "+f"(d[i])::"memory");
#else
    (void)d;
#endif
}

/* The wgmma instructions (inline PTX names every accumulator register, so
 * the register lists and their operands are spelled out once per width).
 * FGI_WGMMA_SS: A and B from shared-memory descriptors; FGI_WGMMA_RS: A
 * from four registers. SHAPE is m64n64k16 or m64n128k16, TYPE bf16 or f16;
 * the operand numbers follow the accumulators (32 or 64 of them). */
#define FGI_WGMMA_REGS32 \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define FGI_WGMMA_REGS64 \
    FGI_WGMMA_REGS32 ", " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define FGI_WGMMA_D32 \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
    "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define FGI_WGMMA_D64 \
    FGI_WGMMA_D32, \
    "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
    "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
    "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
    "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define FGI_WGMMA_SS(SHAPE, TYPE, REGS, D, IA, IB, IP, IT) \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" IP ", 0;\n" \
                 "wgmma.mma_async.sync.aligned." SHAPE ".f32." TYPE "." TYPE " " \
                 "{" REGS "}, %" IA ", %" IB ", p, 1, 1, 0, %" IT ";\n}\n" \
                 : D \
                 : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(TNSP_B))
#define FGI_WGMMA_RS(SHAPE, TYPE, REGS, D, IA0, IA1, IA2, IA3, IB, IP, IT) \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" IP ", 0;\n" \
                 "wgmma.mma_async.sync.aligned." SHAPE ".f32." TYPE "." TYPE " " \
                 "{" REGS "}, {%" IA0 ", %" IA1 ", %" IA2 ", %" IA3 "}, %" IB \
                 ", p, 1, 1, %" IT ";\n}\n" \
                 : D \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d), \
                   "n"(TNSP_B))

/* d (N/2 floats a thread) = (scale_d ? d : 0) + A B for one m64nNk16:
 * A (64 x 16) K-major from desc_a, B (16 x N) from desc_b, K-major
 * (TNSP_B = 0: stored as N rows of K) or MN-major (TNSP_B = 1: K rows of
 * N, the transpose bit). Warpgroup-wide, asynchronous until fgi_wgmma_wait. */
template <typename T, int N, int TNSP_B>
__device__ __forceinline__ void fgi_wgmma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b,
                                             int scale_d FGI_SITE)
{
    static_assert(N == 64 || N == 128, "m64n64k16 and m64n128k16 only");
    constexpr bool bf16 = std::is_same<T, __nv_bfloat16>::value;
    static_assert(bf16 || std::is_same<T, __half>::value, "bf16 or f16 operands");
#if FGI_SM90_EMU
    const fgi_emu::wgmma_op op = {N, bf16, nullptr, desc_a, desc_b, 0, TNSP_B, scale_d, d};
    fgi_emu::wgmma(op, FGI_AT);
#elif FGI_SM90_PTX
    if constexpr (bf16 && N == 64)
        FGI_WGMMA_SS("m64n64k16", "bf16", FGI_WGMMA_REGS32, FGI_WGMMA_D32, "32", "33", "34", "35");
    else if constexpr (bf16)
        FGI_WGMMA_SS("m64n128k16", "bf16", FGI_WGMMA_REGS64, FGI_WGMMA_D64, "64", "65", "66", "67");
    else if constexpr (N == 64)
        FGI_WGMMA_SS("m64n64k16", "f16", FGI_WGMMA_REGS32, FGI_WGMMA_D32, "32", "33", "34", "35");
    else
        FGI_WGMMA_SS("m64n128k16", "f16", FGI_WGMMA_REGS64, FGI_WGMMA_D64, "64", "65", "66", "67");
#else
    (void)d, (void)desc_a, (void)desc_b, (void)scale_d;
    FGI_SM90_TRAP();
#endif
}

/* The same with A from registers: a is this thread's m16n8k16 A fragment
 * of its warp's 16 rows. */
template <typename T, int N, int TNSP_B>
__device__ __forceinline__ void fgi_wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4],
                                             uint64_t desc_b, int scale_d FGI_SITE)
{
    static_assert(N == 64 || N == 128, "m64n64k16 and m64n128k16 only");
    constexpr bool bf16 = std::is_same<T, __nv_bfloat16>::value;
    static_assert(bf16 || std::is_same<T, __half>::value, "bf16 or f16 operands");
#if FGI_SM90_EMU
    const fgi_emu::wgmma_op op = {N, bf16, a, 0, desc_b, 0, TNSP_B, scale_d, d};
    fgi_emu::wgmma(op, FGI_AT);
#elif FGI_SM90_PTX
    if constexpr (bf16 && N == 64)
        FGI_WGMMA_RS("m64n64k16", "bf16", FGI_WGMMA_REGS32, FGI_WGMMA_D32, "32", "33", "34", "35",
                     "36", "37", "38");
    else if constexpr (bf16)
        FGI_WGMMA_RS("m64n128k16", "bf16", FGI_WGMMA_REGS64, FGI_WGMMA_D64, "64", "65", "66", "67",
                     "68", "69", "70");
    else if constexpr (N == 64)
        FGI_WGMMA_RS("m64n64k16", "f16", FGI_WGMMA_REGS32, FGI_WGMMA_D32, "32", "33", "34", "35",
                     "36", "37", "38");
    else
        FGI_WGMMA_RS("m64n128k16", "f16", FGI_WGMMA_REGS64, FGI_WGMMA_D64, "64", "65", "66", "67",
                     "68", "69", "70");
#else
    (void)d, (void)a, (void)desc_b, (void)scale_d;
    FGI_SM90_TRAP();
#endif
}

/* Host: a tiled tensor map over 16-bit elements (rank 1-5; dims innermost
 * first, strides in bytes for dims 1.., box in elements), zero fill out
 * of bounds, optional 128-byte swizzle. Returns 0 or a driver error code.
 * On the GPU through cudaGetDriverEntryPointByVersion (no libcuda link). */
static inline int fgi_tma_encode16(fgi_tmap *map, int rank, const void *base,
                                   const uint64_t *dims, const uint64_t *strides,
                                   const uint32_t *box, bool swizzle128, bool bf16)
{
#if FGI_SM90_EMU
    (void)bf16;
    return fgi_emu::tensor_map_encode(map, 2, rank, base, dims, strides, box,
                                      swizzle128 ? 128 : 0);
#else
    static PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
    if (encode == nullptr) {
        void *fn = nullptr;
        cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                             cudaEnableDefault, &found) != cudaSuccess ||
            found != cudaDriverEntryPointSuccess || fn == nullptr)
            return -1;
        encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
    }
    const cuuint32_t ones[5] = {1, 1, 1, 1, 1};
    return (int)encode(map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                       (cuuint32_t)rank, const_cast<void *>(base),
                       reinterpret_cast<const cuuint64_t *>(dims),
                       reinterpret_cast<const cuuint64_t *>(strides),
                       reinterpret_cast<const cuuint32_t *>(box), ones,
                       CU_TENSOR_MAP_INTERLEAVE_NONE,
                       swizzle128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
                       CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
#endif
}

#endif /* FLASHGPT_CUDA_SM90_PRIMITIVES_CUH */
