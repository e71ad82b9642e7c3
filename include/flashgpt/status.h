/* flashgpt status codes and the thread-local error message.
 *
 * Every public function returns an fg_status. On failure it also leaves a
 * one-line message naming the function and the offending argument and value;
 * fg_last_error() returns it (per thread, valid until that thread's next
 * failing call). */
#ifndef FLASHGPT_STATUS_H
#define FLASHGPT_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FG_OK = 0,
    FG_ERR_INVALID_ARG = 1, /* a caller error: bad pointer, size, shape or value */
    FG_ERR_OOM = 2,         /* host or device allocation failed */
    FG_ERR_CUDA = 3,        /* a CUDA / cuBLAS call failed, or no usable GPU */
    FG_ERR_IO = 4,          /* a file could not be opened, read or written */
    FG_ERR_FORMAT = 5,      /* a file's contents are malformed */
    FG_ERR_UNSUPPORTED = 6  /* valid input that this build cannot handle */
} fg_status;

/* Short fixed name of a status code, e.g. "invalid argument". Never NULL. */
const char *fg_status_str(fg_status status);

/* The message of this thread's most recent failure ("" if none yet). */
const char *fg_last_error(void);

/* Untrusted text (names from files, paths, user input) made safe for a
 * one-line message or log: fg_escape_text copies the NUL-ended `in` into
 * `out` (cap bytes, cut at a whole escape) with every byte outside printable
 * ASCII as \xNN; fg_quote_text also escapes \ " and ' (for text the
 * caller puts between quotes) and ends a cut text with "...". Both return
 * out; out NULL or cap 0 writes nothing, in NULL reads as "(null)". */
const char *fg_escape_text(char *out, size_t cap, const char *in);
const char *fg_quote_text(char *out, size_t cap, const char *in);

/* Forget this thread's message (fg_last_error() returns "" afterwards). */
void fg_clear_error(void);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_STATUS_H */
