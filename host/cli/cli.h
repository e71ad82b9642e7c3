/* The flashgpt command: shared pieces of its verbs (option parsing, error
 * reporting, loading, timing). Exit codes: 0 success, 1 runtime error (one
 * line naming the cause), 2 usage error. */
#ifndef FLASHGPT_CLI_H
#define FLASHGPT_CLI_H

#include "flashgpt/flashgpt.h"

#include <stddef.h>
#include <stdint.h>

enum { CLI_OK = 0, CLI_RUNTIME_ERROR = 1, CLI_USAGE_ERROR = 2, CLI_HELP_SHOWN = 3 };

typedef enum { OPT_FLAG, OPT_STRING, OPT_INT, OPT_FLOAT, OPT_U64 } cli_opt_kind;

typedef struct {
    const char *name;    /* long name without "--" */
    char short_name;     /* 0: none */
    cli_opt_kind kind;
    void *target;        /* int* (FLAG, INT), const char** , float*, uint64_t* */
    const char *metavar; /* e.g. "PATH" */
    const char *help;
} cli_option;

typedef struct {
    const char *verb, *synopsis, *description;
    const cli_option *options;
    int n_options;
} cli_command;

/* Parses argv (after the verb). Returns CLI_OK, CLI_USAGE_ERROR (message
 * printed) or CLI_HELP_SHOWN (--help printed to stdout). */
int cli_parse(const cli_command *cmd, int argc, char **argv);
void cli_print_help(const cli_command *cmd);

/* "flashgpt VERB: message" + a hint to --help on stderr; returns 2. */
int cli_usage_error(const char *verb, const char *fmt, ...);
/* "flashgpt VERB: what: <fg_last_error()>" on stderr; returns 1. */
int cli_runtime_error(const char *verb, const char *what);

/* --device NAME: CLI_OK, or a usage error (printed) for an unknown name. */
int cli_parse_device(const char *verb, const char *name, fg_device *device);

/* --threads N for the CPU device (0: one per online core; ignored by the
 * other devices): CLI_OK, or a runtime error (printed). */
int cli_apply_threads(const char *verb, fg_session *s, int n_threads);

double cli_now(void); /* monotonic seconds */

/* "1,2,3" -> ids (malloc'd). Returns 0, or -1 for a malformed list. */
int cli_parse_ids(const char *list, int **ids, int *n);

/* The tokenizer: tok_path when given (a folder with vocab.json + merges.txt,
 * a vocab.json, or a llama2.c tokenizer .bin), else found beside the model:
 * vocab.json + merges.txt in its folder, or tokenizer.bin / tok<vocab>.bin
 * next to a llama2.c file. */
fg_status cli_load_tokenizer(fg_tokenizer **tok, const char *tok_path,
                             const char *model_path, int vocab_size);

/* Prompt -> ids: Llama-family models get BOS first; an empty GPT-2 prompt
 * starts from <|endoftext|>. Returns ids (malloc'd) and their count. */
fg_status cli_encode_prompt(const fg_tokenizer *tok, const fg_config *cfg,
                            const char *prompt, int **ids, int *n);

/* Compares GPU logits with the CPU reference over n values (SPEC fp32
 * tolerance); fills the error measures, returns 1 within tolerance. */
int cli_compare_logits(const float *gpu, const float *cpu, size_t n,
                       double *max_abs, double *rel_l2);

/* Index of the largest of n values (the first among ties). */
int cli_argmax(const float *x, size_t n);

/* Writes a (rows, cols) float32 array as NumPy .npy, atomically: to a
 * temporary file renamed into place. */
fg_status cli_write_npy(const char *path, const float *data, int rows, int cols);

/* Progress on stderr for loops that take more than a couple of seconds:
 * silent for the first two, then "what: done/total" every half second. */
typedef struct {
    const char *what;
    double start, last;
    int shown;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *what);
void cli_progress_update(cli_progress *p, long done, long total);
void cli_progress_end(cli_progress *p);

int cmd_generate(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif /* FLASHGPT_CLI_H */
