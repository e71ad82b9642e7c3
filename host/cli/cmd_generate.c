/* flashgpt generate: prompt -> one batched prefill -> one decode step per
 * new token, streaming text to stdout; speeds and device to stderr. The
 * policy (tokenizer, BOS, stop conditions, the loop) is the library's
 * fg_generate; this file is options and output. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *tokenizer, *prompt, *device_name, *dtype_name;
    fg_device device;
    fg_dtype dtype;
    int n, top_k, ctx, threads, ignore_eos;
    float temperature, top_p;
    uint64_t seed;
    cli_strings stops;
} generate_args;

static const char VERB[] = "generate";

/* fg_generate's callback: streams each token's bytes as they come. A failed
 * write (disk full, closed pipe) stops the generation: user gets its errno. */
static int emit(void *user, int id, const char *bytes, size_t len)
{
    (void)id;
    if (len > 0 && (fwrite(bytes, 1, len, stdout) != len || fflush(stdout) != 0)) {
        *(int *)user = errno ? errno : EIO;
        return 1;
    }
    return 0;
}

/* What the command calls each step of fg_generate in its messages. */
static const char *failed_step(fg_generate_step step)
{
    switch (step) {
    case FG_GENERATE_PREFILL: return "prefill failed";
    case FG_GENERATE_SAMPLE: return "sampling failed";
    case FG_GENERATE_DECODE: return "decode step failed";
    default: return "generation failed";
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
    /* The library would stop at a full context; the command refuses up
     * front instead, before printing anything. */
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
    /* the cache holds what this run needs (or --ctx), not the model's context */
    if (fg_session_create_model(&s, model, a->device, a->ctx, a->dtype) != FG_OK ||
        fg_session_reserve(s, a->ctx ? a->ctx : n_prompt + a->n) != FG_OK) {
        cli_runtime_error(VERB, "cannot start a session");
        goto done;
    }
    cli_report_device(VERB, s, 1);
    if (cli_apply_threads(VERB, s, a->threads) != CLI_OK) goto done;
    fg_generate_config gc = fg_generate_defaults();
    int eos_ids[CLI_MAX_EOS_IDS];
    if (cli_apply_stops(VERB, &gc, a->model, a->ignore_eos, &a->stops, eos_ids) != CLI_OK)
        goto done;
    gc.max_new_tokens = a->n;
    gc.echo_prompt = 1;
    gc.on_token = emit;
    int write_error = 0;
    gc.user = &write_error;
    fg_generate_result r = {0};
    if (fg_generate(s, tok, sampler, ids, n_prompt, &gc, &r) != FG_OK) {
        cli_runtime_error(VERB, failed_step(r.failed));
        goto done;
    }
    if (write_error != 0) {
        fprintf(stderr, "flashgpt %s: cannot write to standard output: %s\n", VERB,
                strerror(write_error));
        clearerr(stdout); /* reported here, once */
        goto done;
    }
    printf("\n");
    fflush(stdout); /* the text before the speeds when both go to one file */
    fprintf(stderr, "device %s: dtype %s, prefill %d tokens %.1f tokens/s, decode %d tokens "
            "%.1f tokens/s, KV cache %.2f MiB\n",
            fg_device_name(fg_session_device(s)), fg_dtype_name(fg_session_dtype(s)), n_prompt, n_prompt / r.prefill_seconds,
            r.n_generated, r.n_generated > 0 ? r.n_generated / r.decode_seconds : 0.0,
            fg_session_cache_bytes(s) / 1048576.0);
    rc = CLI_OK;
done:
    fg_session_destroy(s);
    fg_sampler_destroy(sampler);
    free(ids);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    generate_args a = {.prompt = "", .device_name = "auto", .dtype_name = "auto", .n = 64, .temperature = 1.0f,
                       .top_p = 1.0f};
    const cli_option opts[] = {
        {"model", 'm', OPT_STRING, &a.model, "PATH", "Hugging Face folder or llama2.c .bin (required)"},
        {"tokenizer", 't', OPT_STRING, &a.tokenizer, "PATH", "tokenizer (default: beside the model)"},
        {"prompt", 'p', OPT_STRING, &a.prompt, "TEXT", "prompt text (default: empty)"},
        {"max-tokens", 'n', OPT_INT, &a.n, "N", "at most N tokens (default 64; EOS or BOS ends the text sooner)"},
        {"stop", 0, OPT_STRINGS, &a.stops, "TEXT", "end the text before TEXT (not printed; repeatable)"},
        {"ignore-eos", 0, OPT_FLAG, &a.ignore_eos, NULL, "go on past EOS, BOS and the model's eos_token_id"},
        {"temperature", 0, OPT_FLOAT, &a.temperature, "T", "0 for greedy (default 1)"},
        {"top-k", 0, OPT_INT, &a.top_k, "K", "keep the K most likely tokens (default: all)"},
        {"top-p", 0, OPT_FLOAT, &a.top_p, "P", "nucleus sampling mass in (0, 1] (default 1)"},
        {"seed", 0, OPT_U64, &a.seed, "S", "sampling seed (default 0)"},
        {"device", 0, OPT_STRING, &a.device_name, "D", "auto, cpu (fast), cuda or ref (exact reference) (default auto)"},
        {"dtype", 0, OPT_STRING, &a.dtype_name, "T", CLI_DTYPE_HELP},
        {"ctx", 0, OPT_INT, &a.ctx, "N", "KV cache size in tokens (default: prompt + -n)"},
        {"threads", 0, OPT_INT, &a.threads, "N", "CPU threads (default: one per online core)"},
    };
    const cli_command cmd = {VERB, "-m PATH [options]",
                             "Generate text from a prompt, streaming it to stdout.", opts,
                             (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP_SHOWN ? CLI_OK : rc;
    if (a.model == NULL) return cli_usage_error(VERB, "-m PATH is required");
    if (a.n < 0) return cli_usage_error(VERB, "-n must be >= 0 (got %d)", a.n);
    for (int i = 0; i < a.stops.n; i++)
        if (a.stops.items[i][0] == '\0') return cli_usage_error(VERB, "--stop needs a non-empty text");
    if (a.ctx < 0) return cli_usage_error(VERB, "--ctx must be >= 0 (got %d)", a.ctx);
    if (a.threads < 0) return cli_usage_error(VERB, "--threads must be >= 0 (got %d)", a.threads);
    if (cli_parse_device(VERB, a.device_name, &a.device) != CLI_OK) return CLI_USAGE_ERROR;
    if (cli_parse_dtype(VERB, a.dtype_name, &a.dtype) != CLI_OK) return CLI_USAGE_ERROR;
    if (cli_check_dtype(VERB, a.device, a.dtype) != CLI_OK) return CLI_RUNTIME_ERROR;

    fg_model *model = NULL;
    fg_tokenizer *tok = NULL;
    if (cli_load_model(&model, a.model) != FG_OK) return cli_runtime_error(VERB, "cannot load the model");
    if (cli_load_tokenizer(&tok, a.tokenizer, a.model, fg_model_config(model)->vocab_size) != FG_OK)
        rc = cli_runtime_error(VERB, "cannot load the tokenizer");
    else
        rc = generate(&a, model, tok);
    fg_tokenizer_destroy(tok);
    fg_model_destroy(model);
    return rc;
}
