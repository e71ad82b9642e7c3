/* Status names and the thread-local error message (the library's only
 * global state). */
#include "check.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

const char *fg_status_str(fg_status status)
{
    switch (status) {
    case FG_OK: return "ok";
    case FG_ERR_INVALID_ARG: return "invalid argument";
    case FG_ERR_OOM: return "out of memory";
    case FG_ERR_CUDA: return "CUDA error";
    case FG_ERR_IO: return "I/O error";
    case FG_ERR_FORMAT: return "bad file format";
    case FG_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

const char *fg_last_error(void) { return last_error; }

void fg_clear_error(void) { last_error[0] = '\0'; }

fg_status fgi_fail(fg_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}
