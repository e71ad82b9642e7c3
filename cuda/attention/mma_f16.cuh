/* Warp-level tensor-core pieces for 16-bit data (sm_80 and later):
 * mma.sync.aligned.m16n8k16.row.col with bf16 or f16 operands and fp32
 * accumulators, and ldmatrix .x4 (plain and .trans) to fetch operand
 * fragments from shared memory. T is __nv_bfloat16 or __half.
 *
 * Conventions (PTX ISA, "Matrix fragments for mma.m16n8k16", 16-bit types):
 * with g = lane / 4 and t = lane % 4, every register holds two 16-bit
 * values, the lower column (A, C) or lower k (B) in the low half:
 *   A (16 x 16, row): a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
 *   B (16 x 8, col):  b0 (k 2t..2t+1, n g)  b1 (k 2t+8..2t+9, n g)
 *   C/D (16 x 8):     c0 (g, 2t) c1 (g, 2t+1) c2 (g+8, 2t) c3 (g+8, 2t+1)
 * ldmatrix.x4: lane l gives the address of row l % 8 of 8x8 matrix l / 8
 * (16 contiguous bytes, 16-byte aligned, shared memory); register j of
 * lane l receives matrix j's row l / 4, elements 2(l%4), 2(l%4)+1 (plain:
 * the A/B fragment of a row-major tile), or with .trans its elements
 * (2(l%4), l/4) and (2(l%4)+1, l/4) (the B fragment of a tile stored with
 * k as the row, V in P.V).
 *
 * On the GPU these are inline PTX. In the CPU emulator (tools/cuda_emu,
 * whose fake cuda_runtime.h defines FG_EMU_CUDA_RUNTIME_H) the mma gathers
 * each lane's A rows and B columns with warp shuffles and ldmatrix
 * shuffles the lanes' row addresses and reads shared memory itself.
 * What the emulated mma models: the operands' values bit for bit, exact
 * products (a product of two bf16 or two f16 values fits fp32's 24-bit
 * significand), accumulation in fp32. What it does not: the tensor core
 * adds the 16 products and c in a wider internal format with its own
 * alignment and truncation, so its sums may differ from the emulated
 * (k-ascending, fp32 round-to-nearest) ones in the last bits of fp32; and
 * bf16 products outside fp32's normal range (|x| > 2^127 or < 2^-126) are
 * rounded by fp32 here. Both are far below any 16-bit tolerance. */
#ifndef FLASHGPT_CUDA_MMA_F16_CUH
#define FLASHGPT_CUDA_MMA_F16_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#ifdef FG_EMU_CUDA_RUNTIME_H
/* The value of the 16-bit element in the low (hi = false) or high half. */
template <typename T>
__device__ __forceinline__ float fgi_f16_half(uint32_t bits, bool hi)
{
    const unsigned short b = (unsigned short)(hi ? bits >> 16 : bits & 0xffffu);
    if constexpr (std::is_same<T, __nv_bfloat16>::value)
        return __bfloat162float(__ushort_as_bfloat16(b));
    else
        return __half2float(__ushort_as_half(b));
}

__device__ __forceinline__ uint64_t fgi_f16_pack64(uint32_t lo, uint32_t hi)
{
    return (uint64_t)lo | ((uint64_t)hi << 32);
}
#endif

/* d += A * B for one 16 x 8 x 16 tile (fragments as in the header). Every
 * lane of the warp must call it (warp-synchronous). */
template <typename T>
__device__ __forceinline__ void fgi_mma_f16(float (&d)[4], const uint32_t (&a)[4],
                                            const uint32_t (&b)[2])
{
    static_assert(std::is_same<T, __nv_bfloat16>::value || std::is_same<T, __half>::value,
                  "m16n8k16 takes bf16 or f16 operands");
#ifdef FG_EMU_CUDA_RUNTIME_H
    const int lane = (int)(threadIdx.x % 32u), g = lane / 4, t = lane % 4;
    const uint64_t a_g = fgi_f16_pack64(a[0], a[2]), a_g8 = fgi_f16_pack64(a[1], a[3]);
    const uint64_t b_pair = fgi_f16_pack64(b[0], b[1]);
    float row_g[16], row_g8[16], col0[16], col1[16]; /* A rows g, g+8; B cols 2t, 2t+1 */
    for (int src = 0; src < 4; src++) {
        /* lane (g, src) holds row g's k 2src, 2src+1 (a0) and 2src+8, 2src+9
         * (a2), and row g+8's likewise (a1, a3) */
        const uint64_t lo = __shfl_sync(0xffffffffu, a_g, 4 * g + src);
        const uint64_t hi = __shfl_sync(0xffffffffu, a_g8, 4 * g + src);
        /* lane (n, src) holds column n's k 2src, 2src+1 (b0), 2src+8.. (b1) */
        const uint64_t c0 = __shfl_sync(0xffffffffu, b_pair, 4 * (2 * t) + src);
        const uint64_t c1 = __shfl_sync(0xffffffffu, b_pair, 4 * (2 * t + 1) + src);
        for (int half = 0; half < 2; half++) {
            const int k = 2 * src + 8 * half, shift = 32 * half;
            row_g[k] = fgi_f16_half<T>((uint32_t)(lo >> shift), false);
            row_g[k + 1] = fgi_f16_half<T>((uint32_t)(lo >> shift), true);
            row_g8[k] = fgi_f16_half<T>((uint32_t)(hi >> shift), false);
            row_g8[k + 1] = fgi_f16_half<T>((uint32_t)(hi >> shift), true);
            col0[k] = fgi_f16_half<T>((uint32_t)(c0 >> shift), false);
            col0[k + 1] = fgi_f16_half<T>((uint32_t)(c0 >> shift), true);
            col1[k] = fgi_f16_half<T>((uint32_t)(c1 >> shift), false);
            col1[k + 1] = fgi_f16_half<T>((uint32_t)(c1 >> shift), true);
        }
    }
    /* 16-bit x 16-bit products are exact in fp32; the sums round in fp32. */
    for (int k = 0; k < 16; k++) {
        d[0] += row_g[k] * col0[k];
        d[1] += row_g[k] * col1[k];
        d[2] += row_g8[k] * col0[k];
        d[3] += row_g8[k] * col1[k];
    }
#else
    if constexpr (std::is_same<T, __nv_bfloat16>::value)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                     "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

/* ldmatrix.x4 (trans = false) or .x4.trans of the four 8x8 16-bit matrices
 * whose rows the lanes address (row: this lane's row, in shared memory).
 * Warp-synchronous. */
template <bool trans>
__device__ __forceinline__ void fgi_ldmatrix_x4(uint32_t (&r)[4], const void *row)
{
#ifdef FG_EMU_CUDA_RUNTIME_H
    const int lane = (int)(threadIdx.x % 32u);
    const int r_of = lane / 4, c_of = lane % 4;
    for (int j = 0; j < 4; j++) {
        if constexpr (!trans) {
            const unsigned char *p = static_cast<const unsigned char *>(
                __shfl_sync(0xffffffffu, row, 8 * j + r_of));
            memcpy(&r[j], p + 4 * c_of, sizeof r[j]);
        } else {
            /* elements (2c, r) and (2c+1, r): column r_of of rows 2c_of, 2c_of+1 */
            const unsigned char *p0 = static_cast<const unsigned char *>(
                __shfl_sync(0xffffffffu, row, 8 * j + 2 * c_of));
            const unsigned char *p1 = static_cast<const unsigned char *>(
                __shfl_sync(0xffffffffu, row, 8 * j + 2 * c_of + 1));
            uint16_t lo, hi;
            memcpy(&lo, p0 + 2 * r_of, sizeof lo);
            memcpy(&hi, p1 + 2 * r_of, sizeof hi);
            r[j] = (uint32_t)lo | ((uint32_t)hi << 16);
        }
    }
#else
    const unsigned addr = (unsigned)__cvta_generic_to_shared(row);
    if constexpr (!trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(addr));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(addr));
#endif
}

#endif /* FLASHGPT_CUDA_MMA_F16_CUH */
