/* F16 / BF16 <-> F32 (see half.h). Works on bit patterns, so the result never
 * depends on the compiler's or the CPU's half-precision support. */
#include "half.h"

#include <math.h>
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

static uint32_t bits_of(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

uint16_t fgi_f32_to_bf16(float f)
{
    uint32_t bits = bits_of(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) /* NaN: keep the sign, make it quiet */
        return (uint16_t)((bits >> 16) | 0x0040u);
    /* round to nearest even on the 16 dropped bits; a carry moves into the
     * exponent, which is the correct next binade (or inf) */
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

uint16_t fgi_f32_to_f16(float f)
{
    const uint32_t bits = bits_of(f);
    const uint32_t sign = (bits >> 16) & 0x8000u, abs_bits = bits & 0x7fffffffu;
    if (abs_bits > 0x7f800000u) /* NaN: quiet, top payload bits kept */
        return (uint16_t)(sign | 0x7e00u | ((abs_bits >> 13) & 0x3ffu));
    if (abs_bits >= 0x477ff000u) /* from 65520 (the tie above 65504) up: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (abs_bits < 0x38800000u) {
        /* below 2^-14: subnormal, mantissa = |f| * 2^24 rounded to nearest
         * even (the product is exact; nearbyintf rounds in the default
         * ties-to-even mode); 1024 is the smallest normal, also correct */
        return (uint16_t)(sign | (uint32_t)nearbyintf(fabsf(f) * 0x1p24f));
    }
    const uint32_t rebased = abs_bits - (112u << 23); /* exponent bias 127 -> 15 */
    return (uint16_t)(sign | ((rebased + 0xfffu + ((rebased >> 13) & 1u)) >> 13));
}
