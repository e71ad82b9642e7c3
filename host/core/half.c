/* F16 / BF16 -> F32 (see half.h). Works on bit patterns, so the result never
 * depends on the compiler's or the CPU's half-precision support. */
#include "half.h"

#include <string.h>

static float float_from_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float fgi_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu;
    const uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0) {
        /* zero or subnormal: mantissa * 2^-24, exact in float (a 10-bit
         * integer times a power of two) */
        float magnitude = (float)mantissa * 0x1p-24f;
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 0x1f) /* inf, or NaN with its payload */
        return float_from_bits(sign | 0x7f800000u | (mantissa << 13));
    /* normal: rebias the exponent from 15 to 127 and widen the mantissa */
    return float_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

float fgi_bf16_to_f32(uint16_t h) { return float_from_bits((uint32_t)h << 16); }
