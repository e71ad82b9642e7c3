/* Warp-level tensor-core product for fp32 data with fp32 accuracy (3xTF32):
 * one mma.sync.m16n8k8 (.tf32 inputs, .f32 accumulator) per call, and the
 * split of a float into two tf32 parts.
 *
 * Conventions (PTX ISA, "Matrix fragments for mma.m16n8k8", .tf32): with
 * g = lane / 4 and t = lane % 4, a warp holds
 *   A (16 x 8, row):  a0 (g, t)  a1 (g+8, t)  a2 (g, t+4)  a3 (g+8, t+4)
 *   B (8 x 8, col):   b0 (t, g)  b1 (t+4, g)
 *   C/D (16 x 8):     c0 (g, 2t) c1 (g, 2t+1) c2 (g+8, 2t) c3 (g+8, 2t+1)
 * 3xTF32: x = big + small with big = tf32(x), small = tf32(x - big) (the
 * difference is exact in fp32); a*b ~= big_a*big_b + big_a*small_b +
 * small_a*big_b, leaving out only small*small (~2^-22 relative).
 *
 * Rounding on the integer unit: the tensor core reads a .tf32 operand's top
 * 19 bits and ignores the low 13 (ptxas itself feeds cvt.rna's unmasked sum
 * to HMMA), so adding half a tf32 ulp (0x1000) to the bits is a complete
 * round-to-nearest, ties away from zero: cvt.rna's result for every finite
 * x. cvt.rna costs 4 instructions on sm_90 (an inf/NaN test and select
 * around the add and mask); this split costs 4 for both parts (add, mask,
 * subtract, add), which matters because the split, not the mma, filled the
 * issue slots of the attention kernel. x = +-inf or NaN still gives a NaN
 * product (small = x - big is NaN), as with cvt.rna.
 *
 * On the GPU the product is inline PTX. In the CPU emulator (tools/cuda_emu,
 * whose fake cuda_runtime.h defines FG_EMU_CUDA_RUNTIME_H) it gathers the
 * A rows and B columns each lane needs with warp shuffles, drops the low 13
 * bits of every operand as the tensor core does, and accumulates the
 * (exact) tf32 products in fp32. */
#ifndef FLASHGPT_CUDA_MMA_TF32_CUH
#define FLASHGPT_CUDA_MMA_TF32_CUH

#include <cuda_runtime.h>
#include <stdint.h>

constexpr uint32_t FGI_TF32_HALF_ULP = 0x1000u;   /* half of the 13 dropped bits */
constexpr uint32_t FGI_TF32_MASK = 0xffffe000u;     /* sign, exponent, 10 mantissa bits */

/* x = big + small as mma operands. big is masked (its value is needed for
 * the difference); small keeps low bits that the mma drops after the
 * rounding add. */
__device__ __forceinline__ void fgi_split_tf32(float x, uint32_t &big, uint32_t &small)
{
    big = (__float_as_uint(x) + FGI_TF32_HALF_ULP) & FGI_TF32_MASK;
    small = __float_as_uint(x - __uint_as_float(big)) + FGI_TF32_HALF_ULP;
}

#ifdef FG_EMU_CUDA_RUNTIME_H
/* Two 32-bit values as one 64-bit shuffle operand (halves the rendezvous). */
__device__ __forceinline__ uint64_t fgi_pack2(uint32_t lo, uint32_t hi)
{
    return (uint64_t)lo | ((uint64_t)hi << 32);
}
#endif

/* d += A * B for one 16 x 8 x 8 tile (fragments as in the header). Every
 * lane of the warp must call it (warp-synchronous). */
__device__ __forceinline__ void fgi_mma_tf32(float (&d)[4], const uint32_t (&a)[4],
                                             const uint32_t (&b)[2])
{
#ifdef FG_EMU_CUDA_RUNTIME_H
    const int lane = (int)(threadIdx.x % 32u), g = lane / 4, t = lane % 4;
    const uint64_t a_lo = fgi_pack2(a[0], a[1]), a_hi = fgi_pack2(a[2], a[3]);
    const uint64_t b_pair = fgi_pack2(b[0], b[1]);
    float row_g[8], row_g8[8], col0[8], col1[8]; /* A rows g, g+8; B cols 2t, 2t+1 */
    const auto tf32 = [](uint32_t bits) { return __uint_as_float(bits & FGI_TF32_MASK); };
    for (int src = 0; src < 4; src++) {
        /* lane (g, src) holds A[g][src], A[g+8][src], A[g][src+4], A[g+8][src+4] */
        const uint64_t lo = __shfl_sync(0xffffffffu, a_lo, 4 * g + src);
        const uint64_t hi = __shfl_sync(0xffffffffu, a_hi, 4 * g + src);
        row_g[src] = tf32((uint32_t)lo), row_g8[src] = tf32((uint32_t)(lo >> 32));
        row_g[src + 4] = tf32((uint32_t)hi), row_g8[src + 4] = tf32((uint32_t)(hi >> 32));
        /* lane (n, src) holds B[src][n], B[src+4][n] */
        const uint64_t c0 = __shfl_sync(0xffffffffu, b_pair, 4 * (2 * t) + src);
        const uint64_t c1 = __shfl_sync(0xffffffffu, b_pair, 4 * (2 * t + 1) + src);
        col0[src] = tf32((uint32_t)c0), col0[src + 4] = tf32((uint32_t)(c0 >> 32));
        col1[src] = tf32((uint32_t)c1), col1[src + 4] = tf32((uint32_t)(c1 >> 32));
    }
    /* tf32 x tf32 products are exact in fp32; the sums round in fp32. */
    for (int k = 0; k < 8; k++) {
        d[0] += row_g[k] * col0[k];
        d[1] += row_g[k] * col1[k];
        d[2] += row_g8[k] * col0[k];
        d[3] += row_g8[k] * col1[k];
    }
#else
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

/* d += A * B in 3xTF32 from the split operands: the two small cross terms
 * first, so they are not lost against the large partial sum. */
__device__ __forceinline__ void fgi_mma_3xtf32(float (&d)[4], const uint32_t (&a_big)[4],
                                               const uint32_t (&a_small)[4],
                                               const uint32_t (&b_big)[2],
                                               const uint32_t (&b_small)[2])
{
    fgi_mma_tf32(d, a_small, b_big);
    fgi_mma_tf32(d, a_big, b_small);
    fgi_mma_tf32(d, a_big, b_big);
}

#endif /* FLASHGPT_CUDA_MMA_TF32_CUH */
