/* Internal helpers for argument validation and error reporting.
 *
 * Each check returns FG_OK, or sets the thread-local message in the form
 * "<function>: argument '<name>' <problem> (got <value>)" and returns
 * FG_ERR_INVALID_ARG. FGI_TRY propagates a failure to the caller. */
#ifndef FLASHGPT_HOST_CHECK_H
#define FLASHGPT_HOST_CHECK_H

#include "flashgpt/status.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FGI_TRY(expr)                                                      \
    do {                                                                  \
        fg_status fgi_try_status_ = (expr);                                \
        if (fgi_try_status_ != FG_OK) return fgi_try_status_;               \
    } while (0)

#if defined(__GNUC__) || defined(__clang__)
#define FGI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FGI_PRINTF(a, b)
#endif

/* Sets the thread-local message and returns `status`. Bytes outside
 * printable ASCII in the formatted message are stored as \xNN, so the
 * message is one line and safe to print, whatever text it quotes. */
fg_status fgi_fail(fg_status status, const char *fmt, ...) FGI_PRINTF(2, 3);

/* Untrusted names for messages (the caller adds the quotes): see
 * fg_quote_text (public, flashgpt/status.h); fgi_quote_bytes shows at most
 * 48 bytes of s[0 .. n). Returns buf. */
const char *fgi_quote_bytes(char *buf, size_t cap, const char *s, size_t n);
/* fg_quote_text into a buffer that lives until the end of the enclosing
 * block: for message arguments, e.g. fgi_fail(..., "'%s'", FGI_QUOTE(name)). */
#define FGI_QUOTE(s) fg_quote_text((char[520]){0}, 520, (s))

fg_status fgi_check_ptr(const char *fn, const char *name, const void *ptr);

/* value >= min */
fg_status fgi_check_min(const char *fn, const char *name, long long value,
                       long long min);

/* The product of `count` non-negative dimensions, as an element count, into
 * *elems. Fails when it (times 8, so a double copy fits too) would not fit
 * in ptrdiff_t. `what` names the tensor, e.g. "q (n_head*q_len*head_dim)". */
fg_status fgi_check_elems(const char *fn, const char *what, size_t *elems,
                         int count, ...);

/* The byte ranges [a, a+a_bytes) and [b, b+b_bytes) must not overlap. */
fg_status fgi_check_disjoint(const char *fn, const char *a_name, const void *a,
                            size_t a_bytes, const char *b_name, const void *b,
                            size_t b_bytes);

/* Attention lengths: q_len >= 1, kv_len >= q_len (bottom-right causal
 * alignment leaves no query without a key), head_dim >= 1. */
fg_status fgi_check_attention_dims(const char *fn, int q_len, int kv_len,
                                  int head_dim);

/* malloc that reports FG_ERR_OOM naming the function; *out is NULL on failure. */
fg_status fgi_alloc(const char *fn, void **out, size_t count, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_HOST_CHECK_H */
