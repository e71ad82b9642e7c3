/* flashgpt: the command-line program. `flashgpt VERB --help` for each verb. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *to)
{
    fprintf(to,
            "usage: flashgpt VERB [options]\n\n"
            "verbs:\n"
            "  generate   generate text from a prompt (streams to stdout)\n"
            "  logits     write the logits of token ids as a .npy file\n"
            "  verify     compare CPU reference and GPU logits on one input\n"
            "  bench      benchmark a built-in model preset (no files needed)\n\n"
            "Run 'flashgpt VERB --help' for a verb's options.\n");
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } verbs[] = {{"generate", cmd_generate}, {"logits", cmd_logits},
                 {"verify", cmd_verify}, {"bench", cmd_bench}};
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE_ERROR;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(argv[1], verbs[i].name) == 0) return verbs[i].run(argc - 2, argv + 2);
    fprintf(stderr, "flashgpt: unknown verb '%s'\n", argv[1]);
    usage(stderr);
    return CLI_USAGE_ERROR;
}
