/* fgi_emu stand-in for CUDA's cuda_fp16.h: the IEEE binary16 storage type
 * and the conversions flashgpt's kernels use (through cuda/common/dtype.cuh).
 *
 * Storage only: arithmetic happens in float after a conversion. float ->
 * half rounds to nearest, ties to even, subnormals included, as
 * __float2half does on the GPU (cvt.rn.f16.f32); values from 65520 up
 * become inf; NaN stays a quiet NaN with its sign. half -> float is exact. */
#ifndef FG_EMU_CUDA_FP16_H
#define FG_EMU_CUDA_FP16_H

#include "cuda_runtime.h"

struct alignas(2) __half {
    unsigned short __x;
};
struct alignas(4) __half2 {
    __half x, y;
};

/* Conversions are the host library's (host/core/half.c, tested over every
 * 16-bit pattern and its midpoints), linked into every emulated build. */
extern "C" uint16_t fgi_f32_to_f16(float f);
extern "C" float fgi_f16_to_f32(uint16_t h);

static inline __half __ushort_as_half(unsigned short b)
{
    __half h;
    h.__x = b;
    return h;
}
static inline unsigned short __half_as_ushort(__half h) { return h.__x; }

static inline float __half2float(__half h) { return fgi_f16_to_f32(h.__x); }
static inline __half __float2half(float f) { return __ushort_as_half(fgi_f32_to_f16(f)); }
static inline __half __float2half_rn(float f) { return __float2half(f); }

static inline __half2 __floats2half2_rn(float a, float b)
{
    return __half2{__float2half(a), __float2half(b)};
}
static inline __half2 __float22half2_rn(float2 f) { return __floats2half2_rn(f.x, f.y); }
static inline float2 __half22float2(__half2 h)
{
    return make_float2(__half2float(h.x), __half2float(h.y));
}
static inline float __low2float(__half2 h) { return __half2float(h.x); }
static inline float __high2float(__half2 h) { return __half2float(h.y); }

#endif /* FG_EMU_CUDA_FP16_H */
