/* Element type names, sizes and parsing (flashgpt/dtype.h).
 *
 * Design: one table of (type, accepted spellings); the first spelling is the
 * canonical name. Parsing is ASCII case-insensitive and locale-free (no
 * strcasecmp/tolower, whose behaviour depends on the C locale). */
#include "check.h"
#include "flashgpt/dtype.h"
#include "half.h"

#include <math.h>
#include <stdint.h>

#include <string.h>

typedef struct {
    fg_dtype dtype;
    size_t size;
    const char *names[5]; /* canonical first; NULL-terminated */
} dtype_entry;

static const dtype_entry dtypes[] = {
    {FG_DTYPE_F32, 4, {"f32", "fp32", "float32", "float", NULL}},
    {FG_DTYPE_BF16, 2, {"bf16", "bfloat16", NULL, NULL, NULL}},
    {FG_DTYPE_F16, 2, {"f16", "fp16", "float16", "half", NULL}},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

static const dtype_entry *find(fg_dtype dtype)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].dtype == dtype) return &dtypes[i];
    return NULL;
}

const char *fg_dtype_name(fg_dtype dtype)
{
    const dtype_entry *e = find(dtype);
    return e ? e->names[0] : "unknown dtype";
}

size_t fg_dtype_size(fg_dtype dtype)
{
    const dtype_entry *e = find(dtype);
    return e ? e->size : 0;
}

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* name is lower case; text matches it ignoring ASCII case. */
static int same_name(const char *text, const char *name)
{
    for (; *name != '\0'; text++, name++)
        if (ascii_lower(*text) != *name) return 0;
    return *text == '\0';
}

fg_status fg_dtype_parse(const char *text, fg_dtype *out)
{
    static const char fn[] = "fg_dtype_parse";
    FGI_TRY(fgi_check_ptr(fn, "text", text));
    FGI_TRY(fgi_check_ptr(fn, "out", out));
    for (size_t i = 0; i < N_DTYPES; i++)
        for (const char *const *name = dtypes[i].names; *name != NULL; name++)
            if (same_name(text, *name)) {
                *out = dtypes[i].dtype;
                return FG_OK;
            }
    char shown[256];
    return fgi_fail(FG_ERR_INVALID_ARG,
                    "%s: argument 'text' is not an element type: \"%s\" (expected f32, "
                    "bf16 or f16)",
                    fn, fgi_quote_bytes(shown, sizeof shown, text, strlen(text)));
}

float fg_dtype_round(fg_dtype dtype, float x)
{
    switch (dtype) {
    case FG_DTYPE_F32: return x;
    case FG_DTYPE_BF16: return fgi_bf16_to_f32(fgi_f32_to_bf16(x));
    case FG_DTYPE_F16: return fgi_f16_to_f32(fgi_f32_to_f16(x));
    }
    return NAN;
}

/* The checks shared by both directions. */
static fg_status check_convert(const char *fn, fg_dtype dtype, const void *dst, const void *src,
                               size_t n)
{
    if (find(dtype) == NULL)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'dtype' is not an element type (%d)",
                        fn, (int)dtype);
    if (n == 0) return FG_OK;
    FGI_TRY(fgi_check_ptr(fn, "dst", dst));
    FGI_TRY(fgi_check_ptr(fn, "src", src));
    return FG_OK;
}

fg_status fg_dtype_to_f32(fg_dtype dtype, float *dst, const void *src, size_t n)
{
    FGI_TRY(check_convert("fg_dtype_to_f32", dtype, dst, src, n));
    if (dtype == FG_DTYPE_F32) {
        memcpy(dst, src, n * sizeof *dst);
        return FG_OK;
    }
    const uint16_t *h = (const uint16_t *)src;
    for (size_t i = 0; i < n; i++)
        dst[i] = dtype == FG_DTYPE_BF16 ? fgi_bf16_to_f32(h[i]) : fgi_f16_to_f32(h[i]);
    return FG_OK;
}

fg_status fg_dtype_from_f32(fg_dtype dtype, void *dst, const float *src, size_t n)
{
    FGI_TRY(check_convert("fg_dtype_from_f32", dtype, dst, src, n));
    if (dtype == FG_DTYPE_F32) {
        memcpy(dst, src, n * sizeof *src);
        return FG_OK;
    }
    uint16_t *h = (uint16_t *)dst;
    for (size_t i = 0; i < n; i++)
        h[i] = dtype == FG_DTYPE_BF16 ? fgi_f32_to_bf16(src[i]) : fgi_f32_to_f16(src[i]);
    return FG_OK;
}
