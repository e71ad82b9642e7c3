/* flashgpt element types: the storage type of a tensor's elements.
 *
 * The CPU reference computes in f32/double from f32 data; the GPU ops take
 * an fg_dtype (flashgpt/cuda.h, the *_typed functions) and store bf16 or
 * f16 where asked. Whatever the storage type, arithmetic is done in f32.
 * Narrowing to a 16-bit type always rounds to nearest, ties to even (the
 * GPU's cvt.rn), with F16 subnormals, overflow to inf and NaN kept. */
#ifndef FLASHGPT_DTYPE_H
#define FLASHGPT_DTYPE_H

#include "flashgpt/status.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FG_DTYPE_F32 = 0,  /* IEEE binary32 */
    FG_DTYPE_BF16 = 1, /* bfloat16: f32's upper 16 bits (8-bit exponent) */
    FG_DTYPE_F16 = 2   /* IEEE binary16 (5-bit exponent) */
} fg_dtype;

/* The canonical name ("f32", "bf16", "f16"); "unknown dtype" for a value
 * outside the enum. Never NULL. */
const char *fg_dtype_name(fg_dtype dtype);

/* Bytes per element (4, 2, 2); 0 for a value outside the enum. */
size_t fg_dtype_size(fg_dtype dtype);

/* Parses a type name into *out: the canonical names and the spellings
 * "fp32", "float32", "float", "bfloat16", "fp16", "float16" and "half",
 * in any ASCII case. FG_ERR_INVALID_ARG for NULL arguments or any other
 * text (quoted, escaped, in the message); *out is written only on success. */
fg_status fg_dtype_parse(const char *text, fg_dtype *out);

/* x rounded to dtype and widened back (x itself for f32); NaN for a value
 * outside the enum. */
float fg_dtype_round(fg_dtype dtype, float x);

/* n elements converted between float and dtype storage (host memory, dst
 * and src must not overlap; 2-byte alignment for 16-bit storage): to_f32
 * is exact, from_f32 rounds as above. FG_ERR_INVALID_ARG for NULL
 * pointers with n > 0 or a dtype outside the enum (nothing written). */
fg_status fg_dtype_to_f32(fg_dtype dtype, float *dst, const void *src, size_t n);
fg_status fg_dtype_from_f32(fg_dtype dtype, void *dst, const float *src, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_DTYPE_H */
