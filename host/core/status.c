/* Status names and the thread-local error message (the library's only
 * global state), and the escaping of untrusted text in messages.
 *
 * Messages quote text from files (tensor names, JSON keys and strings,
 * tokens) and from the command line (paths). Call sites quote such names
 * with fg_quote_text / fgi_quote_bytes, so that where a name starts and
 * ends stays clear; and fgi_fail escapes every byte outside printable ASCII
 * of the whole message as a safety net, so no message can hold a newline
 * (splitting the one-line error) or an escape sequence (driving the
 * terminal it is printed on), whatever a call site forgot. */
#include "check.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* escaping can lengthen the formatted message (at most 511 bytes): what
 * does not fit is cut at a whole escape */
static _Thread_local char last_error[1024];

static const char hex_digit[] = "0123456789ABCDEF";

static int printable(unsigned char c) { return c >= 0x20 && c < 0x7F; }

const char *fg_escape_text(char *out, size_t cap, const char *in)
{
    size_t at = 0;
    if (out == NULL || cap == 0) return out;
    if (in == NULL) in = "(null)";
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (printable(*p)) {
            if (at + 1 >= cap) break;
            out[at++] = (char)*p;
        } else {
            if (at + 4 >= cap) break;
            out[at++] = '\\';
            out[at++] = 'x';
            out[at++] = hex_digit[*p >> 4];
            out[at++] = hex_digit[*p & 15];
        }
    }
    out[at] = '\0';
    return out;
}

/* s[0 .. n) with \ " ' and bytes outside printable ASCII as \xNN, at most
 * `shown` input bytes, "..." when cut; out has cap bytes. */
static const char *quote(char *out, size_t cap, const char *s, size_t n, size_t shown)
{
    size_t at = 0, i = 0;
    if (out == NULL || cap == 0) return out;
    for (; i < n && i < shown; i++) {
        const unsigned char c = (unsigned char)s[i];
        const int plain = printable(c) && c != '\\' && c != '"' && c != '\'';
        if (at + (plain ? 1 : 4) + 3 >= cap) break; /* keep room for "..." */
        if (plain) {
            out[at++] = (char)c;
        } else {
            out[at++] = '\\';
            out[at++] = 'x';
            out[at++] = hex_digit[c >> 4];
            out[at++] = hex_digit[c & 15];
        }
    }
    if (i < n && at + 3 < cap) {
        memcpy(out + at, "...", 3);
        at += 3;
    }
    out[at] = '\0';
    return out;
}

const char *fgi_quote_bytes(char *buf, size_t cap, const char *s, size_t n)
{
    return quote(buf, cap, s, n, 48);
}

const char *fg_quote_text(char *buf, size_t cap, const char *s)
{
    if (s == NULL) s = "(null)";
    return quote(buf, cap, s, strlen(s), (size_t)-1);
}

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
    char raw[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    fg_escape_text(last_error, sizeof last_error, raw);
    return status;
}
