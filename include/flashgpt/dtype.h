/* flashgpt element types: the storage type of a tensor's elements.
 *
 * Every kernel and reference today computes in f32 and stores f32; bf16
 * and f16 are named here so that the public API, the loader and the device
 * kernels (cuda/common/dtype.cuh) share one identifier for them. Whatever
 * the storage type, arithmetic is done in f32. */
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

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_DTYPE_H */
