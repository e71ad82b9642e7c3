/* Exact conversion of 16-bit floating-point storage formats to float.
 *
 * F16 (IEEE binary16): 1 sign, 5 exponent (bias 15), 10 mantissa bits;
 * every value, subnormals included, is exactly representable in float, and
 * inf / NaN (payload kept) map to inf / NaN. BF16 is the top half of a
 * float, so it widens by a shift. */
#ifndef FLASHGPT_HOST_HALF_H
#define FLASHGPT_HOST_HALF_H

#include <stdint.h>

float fgi_f16_to_f32(uint16_t h);
float fgi_bf16_to_f32(uint16_t h);

#endif /* FLASHGPT_HOST_HALF_H */
