/* Shared helpers of the flashgpt verbs: the command's own error messages,
 * timing, token lists, loading the tokenizer and encoding the prompt (the
 * rules are the library's, see flashgpt/generate.h), logits comparison and
 * .npy output. Public headers only: the command is a client of the library
 * like any other. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The command's own last failure, for messages the library cannot write
 * (its fg_last_error() is read-only to clients); cli_error_message takes it. */
static char cli_error[512]; /* the size of the library's, so long messages cut alike */

fg_status cli_fail(fg_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cli_error, sizeof cli_error, fmt, ap);
    va_end(ap);
    return status;
}

const char *cli_error_message(void)
{
    static char taken[sizeof cli_error];
    if (cli_error[0] == '\0') return fg_last_error();
    memcpy(taken, cli_error, sizeof taken);
    cli_error[0] = '\0';
    return taken;
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_parse_ids(const char *list, int **ids, int *n)
{
    int count = 1;
    for (const char *p = list; *p; p++) count += (*p == ',');
    int *out = malloc(sizeof(int) * (size_t)count);
    if (out == NULL) return -1;
    const char *p = list;
    for (int i = 0; i < count; i++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT_MAX || (*end != ',' && *end != '\0')) {
            free(out);
            return -1;
        }
        out[i] = (int)v;
        p = end + (*end == ',');
    }
    *ids = out;
    *n = count;
    return 0;
}

/* The library's "nothing found" message names what it looked for; only
 * the command knows the option that fixes it. */
fg_status cli_load_tokenizer(fg_tokenizer **tok, const char *tok_path,
                             const char *model_path, int vocab_size)
{
    static const char not_found[] = "no tokenizer beside ";
    const fg_status st = fg_tokenizer_load_for_model(tok, model_path, tok_path, vocab_size);
    if (st != FG_OK && tok_path == NULL &&
        strncmp(fg_last_error(), not_found, sizeof not_found - 1) == 0)
        return cli_fail(st, "%s; pass -t", fg_last_error());
    return st;
}

fg_status cli_encode_prompt(const fg_tokenizer *tok, const fg_config *cfg,
                            const char *prompt, int **ids, int *n)
{
    const size_t len = strlen(prompt);
    int needed = 0;
    fg_status st = fg_prompt_encode(tok, cfg, prompt, len, NULL, 0, &needed);
    if (needed == 0) return st;
    int *out = malloc(sizeof(int) * (size_t)needed);
    if (out == NULL) return cli_fail(FG_ERR_OOM, "cannot allocate %d token ids", needed);
    st = fg_prompt_encode(tok, cfg, prompt, len, out, needed, n);
    if (st != FG_OK) {
        free(out);
        return st;
    }
    *ids = out;
    return FG_OK;
}

int cli_argmax(const float *x, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return (int)best;
}

int cli_compare_logits(const float *gpu, const float *cpu, size_t n,
                       double *max_abs, double *rel_l2)
{
    double num = 0.0, den = 0.0, worst = 0.0;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)gpu[i] - cpu[i]);
        if (!isfinite(gpu[i]) || !(d <= 1e-4 + 1e-4 * fabs(cpu[i]))) ok = 0;
        if (!(d <= worst)) worst = d;
        num += d * d;
        den += (double)cpu[i] * cpu[i];
    }
    *max_abs = worst;
    *rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
    return ok && *rel_l2 <= 1e-5;
}

fg_status cli_write_npy(const char *path, const float *data, int rows, int cols)
{
    /* NumPy format 1.0: magic, version, little-endian header length, then an
     * ASCII dict padded with spaces so that data starts 64-byte aligned. */
    char header[256];
    int len = snprintf(header, sizeof header,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows,
                       cols);
    const int total = ((10 + len + 1 + 63) / 64) * 64;
    memset(header + len, ' ', (size_t)(total - 10 - len - 1));
    header[total - 10 - 1] = '\n';
    const unsigned short hlen = (unsigned short)(total - 10);

    char tmp[4200];
    int tn = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (tn < 0 || (size_t)tn >= sizeof tmp) return cli_fail(FG_ERR_IO, "path too long: %s", path);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) return cli_fail(FG_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    const unsigned char hl[2] = {(unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    const size_t n = (size_t)rows * (size_t)cols;
    int ok = fwrite(magic, 1, 8, f) == 8 && fwrite(hl, 1, 2, f) == 2 &&
             fwrite(header, 1, (size_t)hlen, f) == hlen && fwrite(data, sizeof(float), n, f) == n;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int err = errno;
        remove(tmp);
        return cli_fail(FG_ERR_IO, "cannot write %s: %s", path, strerror(err));
    }
    return FG_OK;
}
