/* Argument validation helpers shared by every public function. */
#include "check.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>

fg_status fgi_check_ptr(const char *fn, const char *name, const void *ptr)
{
    if (ptr == NULL)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument '%s' is NULL", fn, name);
    return FG_OK;
}

fg_status fgi_check_min(const char *fn, const char *name, long long value,
                       long long min)
{
    if (value < min)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument '%s' must be >= %lld (got %lld)", fn, name,
                       min, value);
    return FG_OK;
}

fg_status fgi_check_elems(const char *fn, const char *what, size_t *elems,
                         int count, ...)
{
    const size_t limit = (size_t)PTRDIFF_MAX / sizeof(double);
    size_t product = 1;
    int overflow = 0;
    va_list ap;
    va_start(ap, count);
    for (int i = 0; i < count; i++) {
        long long dim = va_arg(ap, long long);
        if (dim < 0) {
            overflow = 1;
            continue;
        }
        if (__builtin_mul_overflow(product, (size_t)dim, &product) || product > limit)
            overflow = 1;
    }
    va_end(ap);
    if (overflow)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: size of %s overflows (more than %zu elements)", fn,
                       what, limit);
    *elems = product;
    return FG_OK;
}

fg_status fgi_check_disjoint(const char *fn, const char *a_name, const void *a,
                            size_t a_bytes, const char *b_name, const void *b,
                            size_t b_bytes)
{
    uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    if (a0 < b0 + b_bytes && b0 < a0 + a_bytes)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: arguments '%s' and '%s' overlap in memory", fn,
                       a_name, b_name);
    return FG_OK;
}

fg_status fgi_check_attention_dims(const char *fn, int q_len, int kv_len,
                                  int head_dim)
{
    FGI_TRY(fgi_check_min(fn, "q_len", q_len, 1));
    FGI_TRY(fgi_check_min(fn, "head_dim", head_dim, 1));
    if (kv_len < q_len)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'kv_len' must be >= q_len (%d) (got %d)", fn,
                       q_len, kv_len);
    return FG_OK;
}

fg_status fgi_alloc(const char *fn, void **out, size_t count, size_t size)
{
    *out = NULL;
    if (count == 0) count = 1;
    void *p = calloc(count, size);
    if (p == NULL)
        return fgi_fail(FG_ERR_OOM, "%s: cannot allocate %zu x %zu bytes", fn,
                       count, size);
    *out = p;
    return FG_OK;
}
