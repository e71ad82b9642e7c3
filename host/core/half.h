/* Conversions between float and the 16-bit floating-point storage formats.
 *
 * F16 (IEEE binary16): 1 sign, 5 exponent (bias 15), 10 mantissa bits;
 * every value, subnormals included, is exactly representable in float, and
 * inf / NaN (payload kept) map to inf / NaN. BF16 is the top half of a
 * float, so it widens by a shift. Narrowing rounds to nearest, ties to
 * even, as the GPU's cvt.rn does: F16 subnormals included, magnitudes from
 * 65520 up to inf (BF16: past its largest finite value), NaN to a quiet NaN
 * of the same sign. */
#ifndef FLASHGPT_HOST_HALF_H
#define FLASHGPT_HOST_HALF_H

#include <stdint.h>

float fgi_f16_to_f32(uint16_t h);
float fgi_bf16_to_f32(uint16_t h);
uint16_t fgi_f32_to_f16(float f);
uint16_t fgi_f32_to_bf16(float f);

#endif /* FLASHGPT_HOST_HALF_H */
