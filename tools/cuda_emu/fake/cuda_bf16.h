/* fgi_emu stand-in for CUDA's cuda_bf16.h: the bfloat16 storage type and the
 * conversions flashgpt's kernels use (through cuda/common/dtype.cuh).
 *
 * Storage only, as in the kernels: arithmetic happens in float after a
 * conversion. float -> bf16 rounds to nearest, ties to even, as
 * __float2bfloat16 does on the GPU (cvt.rn.bf16.f32); NaN stays a quiet NaN
 * with its sign; overflow past the largest finite value gives inf. bf16 ->
 * float is exact (a shift). */
#ifndef FG_EMU_CUDA_BF16_H
#define FG_EMU_CUDA_BF16_H

#include "cuda_runtime.h"

struct alignas(2) __nv_bfloat16 {
    unsigned short __x;
};
struct alignas(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

/* The rounding is the host library's (host/core/half.c, tested over every
 * 16-bit pattern and its midpoints), linked into every emulated build. */
extern "C" uint16_t fgi_f32_to_bf16(float f);

static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short b)
{
    __nv_bfloat16 h;
    h.__x = b;
    return h;
}
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }

static inline float __bfloat162float(__nv_bfloat16 h)
{
    const unsigned bits = (unsigned)h.__x << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
static inline __nv_bfloat16 __float2bfloat16(float f)
{
    return __ushort_as_bfloat16(fgi_f32_to_bf16(f));
}
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }

static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b)
{
    return __nv_bfloat162{__float2bfloat16(a), __float2bfloat16(b)};
}
static inline __nv_bfloat162 __float22bfloat162_rn(float2 f)
{
    return __floats2bfloat162_rn(f.x, f.y);
}
static inline float2 __bfloat1622float2(__nv_bfloat162 h)
{
    return make_float2(__bfloat162float(h.x), __bfloat162float(h.y));
}
static inline float __low2float(__nv_bfloat162 h) { return __bfloat162float(h.x); }
static inline float __high2float(__nv_bfloat162 h) { return __bfloat162float(h.y); }

#endif /* FG_EMU_CUDA_BF16_H */
