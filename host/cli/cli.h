/* The flashgpt command: shared pieces of its verbs (option parsing, error
 * reporting, loading, timing). Exit codes: 0 success, 1 runtime error (one
 * line naming the cause), 2 usage error. */
#ifndef FLASHGPT_CLI_H
#define FLASHGPT_CLI_H

#include "flashgpt/flashgpt.h"

#include <stddef.h>
#include <stdint.h>

enum { CLI_OK = 0, CLI_RUNTIME_ERROR = 1, CLI_USAGE_ERROR = 2, CLI_HELP_SHOWN = 3 };

/* OPT_INT is a count: decimal digits in [0, INT_MAX]; OPT_U64 (seeds):
 * decimal digits in [0, UINT64_MAX]; OPT_FLOAT: a finite float. */
typedef enum { OPT_FLAG, OPT_STRING, OPT_INT, OPT_FLOAT, OPT_U64, OPT_STRINGS } cli_opt_kind;

/* OPT_STRINGS: an option that may be given several times (--stop). */
enum { CLI_MAX_STRINGS = 16 };
typedef struct {
    const char *items[CLI_MAX_STRINGS];
    int n;
} cli_strings;

typedef struct {
    const char *name;    /* long name without "--" */
    char short_name;     /* 0: none */
    cli_opt_kind kind;
    void *target;        /* int* (FLAG, INT), const char** , float*, uint64_t*, cli_strings* */
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
/* "flashgpt VERB: what: <cli_error_message()>" on stderr; returns 1. */
int cli_runtime_error(const char *verb, const char *what);

/* The command's own failure messages, beside the library's fg_last_error():
 * cli_fail records one and returns status; cli_error_message returns (and
 * forgets) it when there is one, else fg_last_error(). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
fg_status cli_fail(fg_status status, const char *fmt, ...);
const char *cli_error_message(void);
/* Returns the status of expr from the calling function unless it is FG_OK. */
#define CLI_TRY(expr)                                                          \
    do {                                                                       \
        const fg_status cli_try_status_ = (expr);                              \
        if (cli_try_status_ != FG_OK) return cli_try_status_;                  \
    } while (0)

/* --device NAME: CLI_OK, or a usage error (printed) for an unknown name. */
int cli_parse_device(const char *verb, const char *name, fg_device *device);

/* --dtype NAME (auto, f32, bf16, f16; auto is FG_DTYPE_AUTO): CLI_OK, or a
 * usage error (printed) for an unknown name. */
int cli_parse_dtype(const char *verb, const char *name, fg_dtype *dtype);
/* A 16-bit dtype with a device that resolves to the CPU (cpu, ref, or auto
 * without a GPU): the one-line error (exit 1) before the model is loaded;
 * else CLI_OK. */
int cli_check_dtype(const char *verb, fg_device device, fg_dtype dtype);
/* On the CUDA device, one stderr line at startup: the card, the type and
 * the session's peak device memory (weights + KV cache at capacity +
 * activations), with `sessions` sessions sharing one copy of the weights
 * (serve: fg_session_create_sharing); nothing on the CPU devices. */
void cli_report_device(const char *verb, const fg_session *s, int sessions);
#define CLI_DTYPE_HELP "auto, f32, bf16 or f16: weights, activations and KV cache; 16-bit on cuda only (default auto: bf16 on a GPU, f32 on the CPU)"

/* --threads N for the CPU device (0: one per online core; ignored by the
 * other devices): CLI_OK, or a runtime error (printed). */
int cli_apply_threads(const char *verb, fg_session *s, int n_threads);

double cli_now(void); /* monotonic seconds */

/* Decimal digits only (no sign, space or prefix), at most max, into *value.
 * Returns 0, or -1 when malformed or out of range. */
int cli_parse_decimal(const char *text, uint64_t max, uint64_t *value);

/* "1,2,3" -> ids (malloc'd). Returns 0, or -1 for a malformed list. */
int cli_parse_ids(const char *list, int **ids, int *n);

/* The model's tokenizer: fg_tokenizer_load_for_model (tok_path from -t),
 * its "nothing found" message ending in a hint to -t. */
fg_status cli_load_tokenizer(fg_tokenizer **tok, const char *tok_path,
                             const char *model_path, int vocab_size);

/* The stop ids of a model (fg_eos_ids_for_model; none for --ignore-eos)
 * and the --stop texts into a generation's configuration. ids holds
 * CLI_MAX_EOS_IDS; a runtime error is printed and returned. */
enum { CLI_MAX_EOS_IDS = 64 };
int cli_apply_stops(const char *verb, fg_generate_config *gc, const char *model_path,
                    int ignore_eos, const cli_strings *stops, int *ids);

/* Prompt -> ids by fg_prompt_encode (the library's BOS rule). Returns ids
 * (malloc'd) and their count. */
fg_status cli_encode_prompt(const fg_tokenizer *tok, const fg_config *cfg,
                            const char *prompt, int **ids, int *n);

/* Compares GPU logits with the CPU reference over n values (docs/contract.md §32, fp32
 * tolerance); fills the error measures, returns 1 within tolerance. */
int cli_compare_logits(const float *gpu, const float *cpu, size_t n,
                       double *max_abs, double *rel_l2);

/* Index of the largest of n values (the first among ties). */
int cli_argmax(const float *x, size_t n);

/* Output files (output.c). A path that is, or will be, a regular file is
 * written through a temporary file (mode 0600, same folder) renamed over it
 * once complete, so a failure leaves the old file or nothing; a symbolic
 * link to a regular file replaces its target, never the link. A FIFO or a
 * character device (/dev/null, a pipe from the shell) is written in place:
 * it is never replaced. Anything else (a folder, a block device, a dangling
 * link) is refused. Every failure removes the temporary file. */
typedef struct {
    int fd;
    char *target; /* the file finally written: path, or a link's target */
    char *tmp;    /* temporary file, NULL when writing in place */
    const char *path;
} cli_output;
fg_status cli_output_open(cli_output *o, const char *path);
fg_status cli_output_write(cli_output *o, const void *data, size_t n);
/* Closes and renames into place; on failure everything is cleaned up. */
fg_status cli_output_commit(cli_output *o);
void cli_output_abort(cli_output *o); /* closes, removes the temporary file */

/* Writes a (rows, cols) float32 array as NumPy .npy through cli_output. */
fg_status cli_write_npy(const char *path, const float *data, int rows, int cols);

/* Progress on stderr, only when stderr is a terminal (a pipe or a file
 * gets nothing, so logs and captured output stay clean): one line,
 * rewritten in place and erased by cli_progress_end, so that what the verb
 * prints afterwards starts on a clean line. start shows the phase at once;
 * update and bytes add a count or bytes and rate, ten times a second at
 * most. Never print to stdout between start and end. */
typedef struct {
    char what[64];
    double start, last;
    int tty;   /* stderr is a terminal */
    int shown; /* a line is on the terminal */
} cli_progress;
void cli_progress_start(cli_progress *p, const char *what);
void cli_progress_update(cli_progress *p, long done, long total); /* "what 3/128 (1.2 s)" */
void cli_progress_bytes(cli_progress *p, uint64_t done, uint64_t total); /* "what 1.20/4.90 GB, 350 MB/s" */
void cli_progress_end(cli_progress *p);

/* fg_model_load showing "loading FILE: bytes, rate" on a terminal. */
fg_status cli_load_model(fg_model **model, const char *path);

/* flashgpt bench --batch (bench_batch.c): batch requests of n_prompt ids
 * and n_gen tokens through one scheduler in dtype (AUTO: the scheduler's
 * choice); prints decode tokens/s and the step time, and against the copy
 * bandwidth when weights_read (the weights a step reads, in elements) > 0
 * (cuda). */
int cli_bench_batch(const char *verb, const fg_config *cfg, const fg_weights *w, fg_device device,
                    fg_dtype dtype, int threads, int batch, int n_prompt, int n_gen,
                    double weights_read);

int cmd_generate(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif /* FLASHGPT_CLI_H */
