/* flashgpt tokenize: text -> ids as one JSON array on one line, or
 * (--decode) ids -> text, with a model's tokenizer or a tokenizer folder.
 *
 * Defaults follow the Hugging Face tokenizer of the folder: a
 * tokenizer.json adds what its post-processor adds and matches special
 * tokens in the text; GPT-2's vocab.json + merges.txt add nothing (as
 * transformers' GPT2Tokenizer); a llama2.c tokenizer adds BOS (as Llama's).
 * A llama2.c tokenizer needs the model for its vocabulary size, so only
 * then is the model loaded. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char VERB[] = "tokenize";

static int exists(const char *folder, const char *name, int want_dir)
{
    char path[4096];
    struct stat st;
    int n = name ? snprintf(path, sizeof path, "%s/%s", folder, name)
                 : snprintf(path, sizeof path, "%s", folder);
    if (n < 0 || (size_t)n >= sizeof path || stat(path, &st) != 0) return 0;
    return want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

/* The tokenizer of -m / -t; *bos_default: whether the Hugging Face
 * tokenizer of that format adds its special tokens by default. */
static fg_status load(const char *model_path, const char *tok_path, fg_tokenizer **tok,
                      int *bos_default)
{
    /* the folder or file whose format decides */
    const char *where = tok_path ? tok_path : model_path;
    int folder = exists(where, NULL, 1);
    int json = folder ? exists(where, "tokenizer.json", 0)
                      : ends_with(where, "/tokenizer.json") || strcmp(where, "tokenizer.json") == 0;
    int gpt2 = !json && (folder ? exists(where, "vocab.json", 0) || exists(where, "encoder.json", 0)
                                : ends_with(where, ".json"));
    *bos_default = !gpt2;
    if (json || gpt2) return cli_load_tokenizer(tok, tok_path, model_path, 1);
    if (folder && tok_path == NULL && !exists(where, "tokenizer.bin", 0)) {
        char shown[512];
        return cli_fail(FG_ERR_IO,
                        "no tokenizer in %s (looked for tokenizer.json, vocab.json + "
                        "merges.txt, encoder.json + vocab.bpe, tokenizer.bin); pass -t",
                        fg_escape_text(shown, sizeof shown, where));
    }
    /* llama2.c: the vocabulary size is the model's */
    fg_model *model = NULL;
    if (model_path == NULL)
        return cli_fail(FG_ERR_INVALID_ARG,
                        "a llama2.c tokenizer needs -m MODEL for its vocabulary size");
    CLI_TRY(cli_load_model(&model, model_path));
    fg_status st =
        cli_load_tokenizer(tok, tok_path, model_path, fg_model_config(model)->vocab_size);
    fg_model_destroy(model);
    return st;
}

/* The whole file, bytes exactly (NUL included). */
static fg_status read_file(const char *path, char **data, size_t *len)
{
    char shown[512];
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return cli_fail(FG_ERR_IO, "cannot open %s: %s", fg_escape_text(shown, sizeof shown, path),
                        strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        if (cap > (size_t)INT_MAX) {
            free(buf);
            fclose(f);
            return cli_fail(FG_ERR_INVALID_ARG, "%s is larger than %d bytes",
                            fg_escape_text(shown, sizeof shown, path), INT_MAX - 2);
        }
        char *more = realloc(buf, cap * 2);
        if (more == NULL) free(buf);
        buf = more;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (buf == NULL) return cli_fail(FG_ERR_OOM, "cannot allocate %zu bytes", cap);
    if (failed) {
        free(buf);
        return cli_fail(FG_ERR_IO, "cannot read %s", fg_escape_text(shown, sizeof shown, path));
    }
    *data = buf;
    *len = n;
    return FG_OK;
}

static int encode(const fg_tokenizer *tok, const char *text, size_t len, unsigned flags)
{
    int n = 0;
    fg_status st = fg_tokenizer_encode_ex(tok, text, len, flags, NULL, 0, &n);
    if (st != FG_OK && n == 0) return cli_runtime_error(VERB, "cannot encode the text");
    int *ids = malloc(sizeof(int) * ((size_t)n + 1));
    if (ids == NULL) {
        fprintf(stderr, "flashgpt tokenize: cannot allocate %d ids\n", n);
        return CLI_RUNTIME_ERROR;
    }
    if (fg_tokenizer_encode_ex(tok, text, len, flags, ids, n, &n) != FG_OK) {
        free(ids);
        return cli_runtime_error(VERB, "cannot encode the text");
    }
    putchar('[');
    for (int i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
    puts("]");
    free(ids);
    return CLI_OK;
}

static int decode(const fg_tokenizer *tok, const int *ids, int n)
{
    size_t len = 0;
    fg_status st = fg_tokenizer_decode(tok, ids, n, NULL, 0, &len);
    char *out = st == FG_OK || len > 0 ? malloc(len + 1) : NULL;
    if (out != NULL) st = fg_tokenizer_decode(tok, ids, n, out, len, &len);
    if (out == NULL || st != FG_OK) {
        free(out);
        return cli_runtime_error(VERB, "cannot decode the ids");
    }
    fwrite(out, 1, len, stdout);
    free(out);
    return CLI_OK;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model_path = NULL, *tok_path = NULL, *prompt = NULL, *file = NULL, *list = NULL;
    int no_bos = 0, split_special = 0;
    const cli_option opts[] = {
        {"model", 'm', OPT_STRING, &model_path, "PATH",
         "model or tokenizer folder (tokenizer.json, vocab.json + merges.txt), or llama2.c .bin"},
        {"tokenizer", 't', OPT_STRING, &tok_path, "PATH",
         "tokenizer file or folder (default: beside the model)"},
        {"prompt", 'p', OPT_STRING, &prompt, "TEXT", "text to encode"},
        {"file", 'f', OPT_STRING, &file, "FILE", "encode the bytes of FILE, exactly"},
        {"decode", 0, OPT_STRING, &list, "IDS",
         "print the text of comma-separated ids instead (no newline added)"},
        {"no-bos", 0, OPT_FLAG, &no_bos, NULL,
         "leave out what the tokenizer adds around the text (BOS)"},
        {"split-special", 0, OPT_FLAG, &split_special, NULL,
         "read special tokens in the text as plain text"},
    };
    const cli_command cmd = {
        VERB, "-m PATH (-p TEXT | -f FILE | --decode IDS) [options]",
        "Print the token ids of a text as one JSON array on one line, as the "
        "Hugging Face tokenizer gives them by default (BOS and what else the "
        "post-processor adds; special tokens in the text matched as their ids), "
        "or with --decode the text of ids, special tokens included.",
        opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP_SHOWN ? CLI_OK : rc;
    if (model_path == NULL && tok_path == NULL) return cli_usage_error(VERB, "-m is required");
    if ((prompt != NULL) + (file != NULL) + (list != NULL) != 1)
        return cli_usage_error(VERB, "give exactly one of -p, -f and --decode");
    if (list != NULL && (no_bos || split_special))
        return cli_usage_error(VERB,
                               "--no-bos and --split-special apply to encoding, not --decode");
    int *ids = NULL, n_ids = 0;
    char shown[256];
    if (list != NULL && cli_parse_ids(list, &ids, &n_ids) != 0)
        return cli_usage_error(VERB,
                               "--decode must be comma-separated non-negative integers (got '%s')",
                               fg_escape_text(shown, sizeof shown, list));

    fg_tokenizer *tok = NULL;
    int bos_default = 1;
    if (load(model_path, tok_path, &tok, &bos_default) != FG_OK) {
        free(ids);
        return cli_runtime_error(VERB, "cannot load the tokenizer");
    }
    if (list != NULL) {
        rc = decode(tok, ids, n_ids);
        free(ids);
    } else {
        char *data = NULL;
        size_t len = prompt ? strlen(prompt) : 0;
        if (file != NULL && read_file(file, &data, &len) != FG_OK) {
            fg_tokenizer_destroy(tok);
            return cli_runtime_error(VERB, "cannot read the text");
        }
        unsigned flags = (bos_default && !no_bos ? FG_ENCODE_ADD_SPECIAL : 0u) |
                         (split_special ? FG_ENCODE_SPLIT_SPECIAL : 0u);
        rc = encode(tok, data ? data : prompt, len, flags);
        free(data);
    }
    fg_tokenizer_destroy(tok);
    return rc;
}
