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
/* as the library's: a message formats into 512 bytes, escaping may lengthen
 * it, so long messages are cut alike */
static char cli_error[1024];

fg_status cli_fail(fg_status status, const char *fmt, ...)
{
    char raw[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    fg_escape_text(cli_error, sizeof cli_error, raw); /* one printable line, as the library's */
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
        /* each id is decimal digits only, like every count on the command line */
        char digits[24];
        const size_t len = strcspn(p, ",");
        uint64_t v;
        if (len >= sizeof digits) {
            free(out);
            return -1;
        }
        memcpy(digits, p, len);
        digits[len] = '\0';
        if (cli_parse_decimal(digits, INT_MAX, &v) != 0) {
            free(out);
            return -1;
        }
        out[i] = (int)v;
        p += len + (p[len] == ',');
    }
    *ids = out;
    *n = count;
    return 0;
}

int cli_apply_stops(const char *verb, fg_generate_config *gc, const char *model_path,
                    int ignore_eos, const cli_strings *stops, int *ids)
{
    int n = 0;
    if (!ignore_eos && fg_eos_ids_for_model(model_path, ids, CLI_MAX_EOS_IDS, &n) != FG_OK)
        return cli_runtime_error(verb, "cannot read the model's eos ids");
    gc->ignore_eos = ignore_eos;
    gc->stop_ids = ids;
    gc->n_stop_ids = n;
    gc->stop_strings = stops->items;
    gc->n_stop_strings = stops->n;
    return CLI_OK;
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

void cli_report_device(const char *verb, const fg_session *s, int sessions)
{
    size_t weights = 0, cache = 0, work = 0, total = 0;
    char name[128] = "";
    int sms = 0;
    if (fg_session_device(s) != FG_DEVICE_CUDA ||
        fg_session_device_memory(s, &weights, &cache, &work) != FG_OK)
        return;
    if (fg_cuda_device_info(name, sizeof name, &sms, &total) != FG_OK) snprintf(name, sizeof name, "?");
    const double mib = 1048576.0, n = sessions > 1 ? (double)sessions : 1.0;
    char times[48] = "";
    if (sessions > 1) snprintf(times, sizeof times, "%d sessions x (", sessions);
    fprintf(stderr, "flashgpt %s: device cuda (%s), dtype %s: peak device memory %.1f MiB = "
            "weights %.1f + %sKV cache %.1f + activations %.1f%s (of %.1f MiB)\n", verb, name,
            fg_dtype_name(fg_session_dtype(s)), ((double)weights + n * (double)(cache + work)) / mib,
            (double)weights / mib, times, (double)cache / mib, (double)work / mib,
            sessions > 1 ? ")" : "", (double)total / mib);
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
