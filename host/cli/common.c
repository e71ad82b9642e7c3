/* Shared helpers of the flashgpt verbs: timing, token lists, finding the
 * tokenizer beside a model, prompt encoding and logits comparison. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* dir of path (path itself when it is a folder) into buf */
static void folder_of(char *buf, size_t cap, const char *path)
{
    snprintf(buf, cap, "%s", path);
    if (is_dir(buf)) return;
    char *slash = strrchr(buf, '/');
    if (slash) *slash = '\0';
    else snprintf(buf, cap, ".");
}

/* folder/name into buf; a path too long for buf is an error. */
static fg_status join(char *buf, size_t cap, const char *folder, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", folder, name);
    if (n < 0 || (size_t)n >= cap) return fgi_fail(FG_ERR_IO, "path too long: %s/%s", folder, name);
    return FG_OK;
}

static fg_status gpt2_in_folder(fg_tokenizer **tok, const char *folder)
{
    char vocab[4096], merges[4096];
    FGI_TRY(join(vocab, sizeof vocab, folder, "vocab.json"));
    FGI_TRY(join(merges, sizeof merges, folder, "merges.txt"));
    return fg_tokenizer_load_gpt2(tok, vocab, merges);
}

fg_status cli_load_tokenizer(fg_tokenizer **tok, const char *tok_path,
                             const char *model_path, int vocab_size)
{
    char folder[4096], path[4096], numbered[64];
    if (tok_path != NULL) {
        if (is_dir(tok_path)) return gpt2_in_folder(tok, tok_path);
        const size_t n = strlen(tok_path);
        if (n >= 5 && strcmp(tok_path + n - 5, ".json") == 0) {
            folder_of(folder, sizeof folder, tok_path);
            FGI_TRY(join(path, sizeof path, folder, "merges.txt"));
            return fg_tokenizer_load_gpt2(tok, tok_path, path);
        }
        return fg_tokenizer_load_llama2c(tok, tok_path, vocab_size);
    }
    folder_of(folder, sizeof folder, model_path);
    FGI_TRY(join(path, sizeof path, folder, "vocab.json"));
    if (is_file(path)) return gpt2_in_folder(tok, folder);
    FGI_TRY(join(path, sizeof path, folder, "tokenizer.bin"));
    snprintf(numbered, sizeof numbered, "tok%d.bin", vocab_size);
    if (!is_file(path)) FGI_TRY(join(path, sizeof path, folder, numbered));
    if (is_file(path)) return fg_tokenizer_load_llama2c(tok, path, vocab_size);
    return fgi_fail(FG_ERR_IO,
                   "no tokenizer beside %s (looked for vocab.json + merges.txt, "
                   "tokenizer.bin, tok%d.bin); pass -t",
                   model_path, vocab_size);
}

fg_status cli_encode_prompt(const fg_tokenizer *tok, const fg_config *cfg,
                            const char *prompt, int **ids, int *n)
{
    const size_t len = strlen(prompt);
    const int add_bos = cfg->arch == FG_ARCH_LLAMA || len == 0;
    int needed = 0;
    fg_status st = fg_tokenizer_encode(tok, prompt, len, add_bos, NULL, 0, &needed);
    if (st != FG_OK && needed == 0) return st;
    if (needed == 0)
        return fgi_fail(FG_ERR_INVALID_ARG, "the prompt encodes to no tokens");
    int *out = malloc(sizeof(int) * (size_t)needed);
    if (out == NULL) return fgi_fail(FG_ERR_OOM, "cannot allocate %d token ids", needed);
    st = fg_tokenizer_encode(tok, prompt, len, add_bos, out, needed, n);
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

void cli_progress_start(cli_progress *p, const char *what)
{
    p->what = what;
    p->start = p->last = cli_now();
    p->shown = 0;
}

void cli_progress_update(cli_progress *p, long done, long total)
{
    const double now = cli_now();
    if (now - p->start < 2.0 || now - p->last < 0.5) return;
    fprintf(stderr, "\r%s: %ld/%ld (%.0f s)", p->what, done, total, now - p->start);
    fflush(stderr);
    p->last = now;
    p->shown = 1;
}

void cli_progress_end(cli_progress *p)
{
    if (p->shown) fprintf(stderr, "\r%s: done in %.1f s\n", p->what, cli_now() - p->start);
    p->shown = 0;
}
