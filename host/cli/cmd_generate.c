/* flashgpt generate: prompt -> one batched prefill -> one decode step per
 * new token, streaming text to stdout; speeds and device to stderr. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const char *model, *tokenizer, *prompt, *device_name;
    fg_device device;
    int n, top_k, ctx, threads;
    float temperature, top_p;
    uint64_t seed;
} generate_args;

static const char VERB[] = "generate";

/* Streams the token's bytes. */
static void emit(const fg_tokenizer *tok, int prev, int id)
{
    const char *bytes;
    size_t len;
    if (fg_tokenizer_piece(tok, prev, id, &bytes, &len) == FG_OK && len > 0) {
        fwrite(bytes, 1, len, stdout);
        fflush(stdout);
    }
}

static int generate(const generate_args *a, fg_model *model, fg_tokenizer *tok)
{
    const fg_config *cfg = fg_model_config(model);
    int *ids = NULL, n_prompt = 0, rc = CLI_RUNTIME_ERROR;
    fg_session *s = NULL;
    fg_sampler *sampler = NULL;
    fg_sampler_config sc = {a->temperature, a->top_k, a->top_p, a->seed};
    if (cli_encode_prompt(tok, cfg, a->prompt, &ids, &n_prompt) != FG_OK) {
        cli_runtime_error(VERB, "cannot encode the prompt");
        goto done;
    }
    const int ctx = a->ctx ? a->ctx : cfg->n_ctx;
    if ((long long)n_prompt + a->n > ctx) {
        fprintf(stderr, "flashgpt generate: the prompt (%d tokens) plus -n %d exceeds the context (%d)\n",
                n_prompt, a->n, ctx);
        goto done;
    }
    if (fg_sampler_create(&sampler, cfg->vocab_size, &sc) != FG_OK) {
        rc = cli_usage_error(VERB, "%s", fg_last_error());
        goto done;
    }
    if (fg_session_create(&s, cfg, fg_model_weights(model), a->device, a->ctx) != FG_OK) {
        cli_runtime_error(VERB, "cannot start a session");
        goto done;
    }
    if (cli_apply_threads(VERB, s, a->threads) != CLI_OK) goto done;
    for (int i = 0; i < n_prompt; i++) emit(tok, i ? ids[i - 1] : -1, ids[i]);

    double t0 = cli_now();
    if (fg_session_forward(s, ids, n_prompt, NULL) != FG_OK) {
        cli_runtime_error(VERB, "prefill failed");
        goto done;
    }
    const double t_prefill = cli_now() - t0;
    int prev = ids[n_prompt - 1], made = 0;
    t0 = cli_now();
    for (; made < a->n; made++) {
        int next;
        if (fg_sampler_sample(sampler, fg_session_logits(s), &next) != FG_OK) {
            cli_runtime_error(VERB, "sampling failed");
            goto done;
        }
        if (next == fg_tokenizer_eos(tok)) break;
        emit(tok, prev, next);
        prev = next;
        if (made + 1 < a->n && fg_session_forward(s, &next, 1, NULL) != FG_OK) {
            cli_runtime_error(VERB, "decode step failed");
            goto done;
        }
    }
    const double t_decode = cli_now() - t0;
    printf("\n");
    fprintf(stderr, "device %s: prefill %d tokens %.1f tokens/s, decode %d tokens %.1f tokens/s\n",
            fg_device_name(fg_session_device(s)), n_prompt, n_prompt / t_prefill, made,
            made > 0 ? made / t_decode : 0.0);
    rc = CLI_OK;
done:
    fg_session_destroy(s);
    fg_sampler_destroy(sampler);
    free(ids);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    generate_args a = {.prompt = "", .device_name = "auto", .n = 64, .temperature = 1.0f,
                       .top_p = 1.0f};
    const cli_option opts[] = {
        {"model", 'm', OPT_STRING, &a.model, "PATH", "Hugging Face folder or llama2.c .bin (required)"},
        {"tokenizer", 't', OPT_STRING, &a.tokenizer, "PATH", "tokenizer (default: beside the model)"},
        {"prompt", 'p', OPT_STRING, &a.prompt, "TEXT", "prompt text (default: empty)"},
        {"max-tokens", 'n', OPT_INT, &a.n, "N", "tokens to generate (default 64)"},
        {"temperature", 0, OPT_FLOAT, &a.temperature, "T", "0 for greedy (default 1)"},
        {"top-k", 0, OPT_INT, &a.top_k, "K", "keep the K most likely tokens (default: all)"},
        {"top-p", 0, OPT_FLOAT, &a.top_p, "P", "nucleus sampling mass in (0, 1] (default 1)"},
        {"seed", 0, OPT_U64, &a.seed, "S", "sampling seed (default 0)"},
        {"device", 0, OPT_STRING, &a.device_name, "D", "auto, cpu (fast), cuda or ref (exact reference) (default auto)"},
        {"ctx", 0, OPT_INT, &a.ctx, "N", "KV cache size in tokens (default: the model's)"},
        {"threads", 0, OPT_INT, &a.threads, "N", "CPU threads (default: one per online core)"},
    };
    const cli_command cmd = {VERB, "-m PATH [options]",
                             "Generate text from a prompt, streaming it to stdout.", opts,
                             (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP_SHOWN ? CLI_OK : rc;
    if (a.model == NULL) return cli_usage_error(VERB, "-m PATH is required");
    if (a.n < 0) return cli_usage_error(VERB, "-n must be >= 0 (got %d)", a.n);
    if (a.ctx < 0) return cli_usage_error(VERB, "--ctx must be >= 0 (got %d)", a.ctx);
    if (a.threads < 0) return cli_usage_error(VERB, "--threads must be >= 0 (got %d)", a.threads);
    if (cli_parse_device(VERB, a.device_name, &a.device) != CLI_OK) return CLI_USAGE_ERROR;

    fg_model *model = NULL;
    fg_tokenizer *tok = NULL;
    if (fg_model_load(&model, a.model) != FG_OK) return cli_runtime_error(VERB, "cannot load the model");
    if (cli_load_tokenizer(&tok, a.tokenizer, a.model, fg_model_config(model)->vocab_size) != FG_OK)
        rc = cli_runtime_error(VERB, "cannot load the tokenizer");
    else
        rc = generate(&a, model, tok);
    fg_tokenizer_destroy(tok);
    fg_model_destroy(model);
    return rc;
}
