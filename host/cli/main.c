/* flashgpt: the command-line program. `flashgpt VERB --help` for each verb.
 * Whatever a verb returns, stdout is flushed and closed here and a failure
 * (a full disk, a closed pipe) turns success into exit 1 with the cause:
 * output that silently went missing must not look like a successful run. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Flushes and closes stdout; rc, or 1 (cause on stderr) when any write to
 * it failed, now or earlier (the stream's error flag is sticky). */
static int finish_stdout(const char *verb, int rc)
{
    int failed = ferror(stdout) != 0, err = 0;
    if (fflush(stdout) != 0) {
        failed = 1;
        err = errno;
    }
    if (fclose(stdout) != 0) {
        failed = 1;
        if (err == 0) err = errno;
    }
    if (!failed) return rc;
    fprintf(stderr, "flashgpt%s%s: cannot write to standard output: %s\n", verb ? " " : "",
            verb ? verb : "", err ? strerror(err) : "a write failed");
    return rc != CLI_OK ? rc : CLI_RUNTIME_ERROR;
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: flashgpt VERB [options]\n\n"
            "verbs:\n"
            "  generate   generate text from a prompt (streams to stdout)\n"
            "  chat       chat through the model's chat template; --render prints a prompt\n"
            "  logits     write the logits of token ids as a .npy file\n"
            "  verify     compare CPU reference and GPU logits on one input\n"
            "  bench      benchmark a built-in model preset (no files needed)\n"
            "  tokenize   print the token ids of a text (or the text of ids)\n"
            "  serve      serve the model over an OpenAI-compatible HTTP API\n\n"
            "Run 'flashgpt VERB --help' for a verb's options.\n");
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } verbs[] = {{"generate", cmd_generate}, {"logits", cmd_logits},
                 {"verify", cmd_verify}, {"bench", cmd_bench},
                 {"chat", cmd_chat}, {"tokenize", cmd_tokenize}, {"serve", cmd_serve}};
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE_ERROR;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return finish_stdout(NULL, CLI_OK);
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(argv[1], verbs[i].name) == 0)
            return finish_stdout(verbs[i].name, verbs[i].run(argc - 2, argv + 2));
    char verb[256];
    fprintf(stderr, "flashgpt: unknown verb '%s'\n", fg_quote_text(verb, sizeof verb, argv[1]));
    usage(stderr);
    return CLI_USAGE_ERROR;
}
