/* flashgpt logits: token ids through the decoder (one prefill, or one token
 * at a time), (T, vocab) float32 logits written as a .npy file. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

static const char VERB[] = "logits";

static int run(fg_model *model, fg_device device, fg_dtype dtype, int threads, const int *ids, int T,
               int incremental, const char *out_path)
{
    const fg_config *cfg = fg_model_config(model);
    const size_t V = (size_t)cfg->vocab_size;
    fg_session *s = NULL;
    float *logits = NULL;
    int rc = CLI_RUNTIME_ERROR;
    /* everything about the request is checked before anything is allocated
     * for it: an oversized request is reported as what it is, not as the
     * failed allocation of its logits */
    if (T > cfg->n_ctx) {
        fprintf(stderr, "flashgpt logits: %d tokens exceed the model's context (%d)\n", T, cfg->n_ctx);
        return rc;
    }
    for (int t = 0; t < T; t++)
        if (ids[t] >= cfg->vocab_size) {
            fprintf(stderr, "flashgpt logits: token id %d (at %d) is outside the vocabulary [0, %d)\n",
                    ids[t], t, cfg->vocab_size);
            return rc;
        }
    logits = malloc(sizeof(float) * V * (size_t)T);
    if (logits == NULL) {
        fprintf(stderr, "flashgpt logits: cannot allocate %d x %zu logits\n", T, V);
        return rc;
    }
    if (fg_session_create_model(&s, model, device, T, dtype) != FG_OK) {
        cli_runtime_error(VERB, "cannot start a session");
        goto done;
    }
    cli_report_device(VERB, s, 1);
    if (cli_apply_threads(VERB, s, threads) != CLI_OK) goto done;
    for (int t = 0; t < T; t += incremental ? 1 : T)
        if (fg_session_forward(s, ids + t, incremental ? 1 : T, logits + (size_t)t * V) != FG_OK) {
            cli_runtime_error(VERB, "forward failed");
            goto done;
        }
    if (cli_write_npy(out_path, logits, T, (int)V) != FG_OK) {
        cli_runtime_error(VERB, "cannot write the logits");
        goto done;
    }
    char shown[1024];
    fprintf(stderr, "device %s: dtype %s, wrote (%d, %zu) logits to %s\n",
            fg_device_name(fg_session_device(s)), fg_dtype_name(fg_session_dtype(s)), T, V,
            fg_escape_text(shown, sizeof shown, out_path));
    rc = CLI_OK;
done:
    fg_session_destroy(s);
    free(logits);
    return rc;
}

int cmd_logits(int argc, char **argv)
{
    const char *model_path = NULL, *tokens = NULL, *out = NULL, *device_name = "auto";
    const char *dtype_name = "auto";
    int incremental = 0, threads = 0;
    const cli_option opts[] = {
        {"model", 'm', OPT_STRING, &model_path, "PATH", "Hugging Face folder or llama2.c .bin (required)"},
        {"tokens", 0, OPT_STRING, &tokens, "IDS", "comma-separated token ids, e.g. 1,2,3 (required)"},
        {"out", 'o', OPT_STRING, &out, "FILE.npy", "output file (required)"},
        {"device", 0, OPT_STRING, &device_name, "D", "auto, cpu (fast), cuda or ref (exact reference) (default auto)"},
        {"dtype", 0, OPT_STRING, &dtype_name, "T", CLI_DTYPE_HELP},
        {"threads", 0, OPT_INT, &threads, "N", "CPU threads (default: one per online core)"},
        {"incremental", 0, OPT_FLAG, &incremental, NULL, "feed one token at a time instead of one prefill"},
    };
    const cli_command cmd = {VERB, "-m PATH --tokens IDS --out FILE.npy [options]",
                             "Run token ids through the decoder and write their (T, vocab) float32 "
                             "logits as a NumPy .npy file. Needs no tokenizer.",
                             opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP_SHOWN ? CLI_OK : rc;
    if (model_path == NULL || tokens == NULL || out == NULL)
        return cli_usage_error(VERB, "-m, --tokens and --out are required");
    fg_device device;
    if (threads < 0) return cli_usage_error(VERB, "--threads must be >= 0 (got %d)", threads);
    if (cli_parse_device(VERB, device_name, &device) != CLI_OK) return CLI_USAGE_ERROR;
    fg_dtype dtype;
    if (cli_parse_dtype(VERB, dtype_name, &dtype) != CLI_OK) return CLI_USAGE_ERROR;
    if (cli_check_dtype(VERB, device, dtype) != CLI_OK) return CLI_RUNTIME_ERROR;
    int *ids = NULL, T = 0;
    if (cli_parse_ids(tokens, &ids, &T) != 0)
        return cli_usage_error(VERB, "--tokens must be comma-separated non-negative integers (got '%s')",
                               tokens);
    fg_model *model = NULL;
    if (cli_load_model(&model, model_path) != FG_OK) rc = cli_runtime_error(VERB, "cannot load the model");
    else rc = run(model, device, dtype, threads, ids, T, incremental, out);
    fg_model_destroy(model);
    free(ids);
    return rc;
}
