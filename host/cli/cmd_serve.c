/* flashgpt serve: the OpenAI-compatible HTTP server (host/serve) over the
 * batching engine (continuous batching, paged KV cache; every device) or the
 * sessions engine (one fg_session per running request; any device). Prints "listening on http://HOST:PORT" on stdout once it
 * accepts connections (with --port 0 the port chosen), serves until SIGINT
 * or SIGTERM, then stops accepting, lets running requests finish for up to
 * --grace seconds, cancels the rest and exits 0. The signals are blocked
 * in every thread and taken by sigwait here, so no handler races the
 * server's threads. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef FG_HAVE_MHD
#include "http_server.h"
#endif

/* Chat templates (flashgpt/chat.h) come from another branch of work: once
 * the library has them, chat prompts go through the model's template;
 * until then (and for models without one) the plain rendering serves. */
#if defined(__has_include)
#if __has_include("flashgpt/chat.h")
#include "flashgpt/chat.h"
#define SERVE_CHAT_TEMPLATES 1
#endif
#endif

static const char VERB[] = "serve";
enum { DEFAULT_CTX_CAP = 4096 };

typedef struct {
    const char *model, *tokenizer, *host, *device_name, *dtype, *api_key, *model_name, *engine;
    fg_device device;
    fg_dtype dtype_value;
    int port, max_batch, max_queue, ctx, threads, max_body_kib, grace;
} serve_args;

#ifdef FG_HAVE_MHD
/* The model's name in the API: --model-name, else the file or folder name
 * without a .bin extension. */
static void model_id_of(const serve_args *a, char *out, size_t cap)
{
    if (a->model_name != NULL) {
        snprintf(out, cap, "%s", a->model_name);
        return;
    }
    size_t end = strlen(a->model);
    while (end > 1 && a->model[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && a->model[start - 1] != '/') start--;
    size_t n = end - start;
    if (n > 4 && strncmp(a->model + end - 4, ".bin", 4) == 0) n -= 4;
    snprintf(out, cap, "%.*s", (int)n, a->model + start);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#ifdef SERVE_CHAT_TEMPLATES
/* fgi_chat_renderer over the model's template, with the generation prompt. */
static fg_status render_template(void *user, const char *json, size_t json_len, char **text,
                                 size_t *len)
{
    const fg_chat_template *t = user;
    size_t need = 0;
    fg_status st = fg_chat_render_json(t, json, json_len, 1, NULL, 0, &need);
    if (st != FG_OK && need == 0) return st; /* the template refused: its message stands */
    char *out = malloc(need + 1);
    if (out == NULL) return FG_ERR_OOM;
    *len = 0;
    if (need > 0 && (st = fg_chat_render_json(t, json, json_len, 1, out, need, len)) != FG_OK) {
        free(out);
        return st;
    }
    *text = out;
    return FG_OK;
}
#endif

static int serve(const serve_args *a, fg_model *model, fg_tokenizer *tok, const sigset_t *sigs)
{
    const fg_config *cfg = fg_model_config(model);
    if (a->ctx > cfg->n_ctx)
        return cli_usage_error(VERB, "--ctx %d is over the model's context (%d)", a->ctx, cfg->n_ctx);
    /* FLASHGPT_SERVE_TURN_DELAY_MS: a testing aid (tests/serve) that slows
     * the engine so a request stays running long enough to queue behind */
    const char *delay = getenv("FLASHGPT_SERVE_TURN_DELAY_MS");
    uint64_t delay_ms = 0;
    if (delay != NULL && cli_parse_decimal(delay, 10000, &delay_ms) != 0)
        return cli_usage_error(VERB, "FLASHGPT_SERVE_TURN_DELAY_MS must be 0 .. 10000");
    /* every session allocates its whole cache up front: models with long
     * contexts (Llama 3.2: 131072) get 4096 tokens unless --ctx says more */
    const int ctx = a->ctx ? a->ctx : cfg->n_ctx < DEFAULT_CTX_CAP ? cfg->n_ctx : DEFAULT_CTX_CAP;
    /* the batching engine runs on every device (the GPU's batched forward,
     * cuda/engine/batch.cu, when asked for: --engine batch --device cuda);
     * auto keeps one session per request on a GPU, whose batched forward
     * has not run on a card yet */
    const int on_gpu = a->device == FG_DEVICE_CUDA ||
                       (a->device == FG_DEVICE_AUTO && fg_cuda_available());
    const int batch = strcmp(a->engine, "batch") == 0 || (strcmp(a->engine, "auto") == 0 && !on_gpu);
    fgi_engine *engine = NULL;
    fg_status st;
    if (batch) {
        fgi_batch_options bo = {0};
        bo.device = a->device == FG_DEVICE_AUTO ? (on_gpu ? FG_DEVICE_CUDA : FG_DEVICE_CPU)
                                                : a->device;
        bo.ctx = ctx;
        bo.max_batch = a->max_batch;
        bo.max_waiting = a->max_queue;
        bo.n_threads = a->threads;
        bo.step_delay_ms = (int)delay_ms;
        bo.dtype = a->dtype_value; /* AUTO: bf16 on a GPU that runs it */
        /* from the model: a GPU gets the checkpoint's tensors with no fp32
         * host copy (the CPU devices widen it there) */
        bo.model = model;
        st = fgi_engine_create_batch(&engine, cfg, NULL, tok, &bo);
    } else {
        fgi_sessions_options eo = {a->device, ctx, a->max_batch, a->max_queue, a->threads,
                                   (int)delay_ms, a->dtype_value, model};
        st = fgi_engine_create_sessions(&engine, cfg, NULL, tok, &eo);
    }
    if (st != FG_OK) return cli_runtime_error(VERB, "cannot start the engine");
    int n_sessions = 0;
    const fg_session *first = fgi_engine_sessions_first(engine, &n_sessions);
    if (first != NULL) cli_report_device(VERB, first, n_sessions);
    char model_id[256], err[512];
    model_id_of(a, model_id, sizeof model_id);
    fgi_server_options so = {a->host, a->port, a->api_key, model_id,
                             (size_t)a->max_body_kib * 1024, engine, tok, cfg, NULL, NULL, NULL};
    const char *chat = "plain 'role: content' lines";
#ifdef SERVE_CHAT_TEMPLATES
    fg_chat_template *tmpl = NULL;
    if (fg_chat_template_load(&tmpl, a->model) == FG_OK) {
        so.chat_render = render_template;
        so.chat_user = tmpl;
        /* the end-of-turn text stops a reply; an overlong one cannot be a stop */
        const char *eos = fg_chat_template_eos(tmpl);
        if (eos != NULL && eos[0] != '\0' && strlen(eos) <= FGI_ENGINE_STOP_MAX_LEN) so.chat_stop = eos;
        chat = "the model's chat template";
    } else if (strstr(fg_last_error(), "no chat template in ") == NULL) {
        fprintf(stderr, "flashgpt %s: the model's chat template cannot be used (%s); "
                        "chat prompts get the plain rendering\n", VERB, fg_last_error());
    }
#endif
    fgi_server *srv = NULL;
    if (fgi_server_start(&srv, &so, err, sizeof err) != FG_OK) {
        fprintf(stderr, "flashgpt %s: %s\n", VERB, err);
        fgi_engine_destroy(engine);
#ifdef SERVE_CHAT_TEMPLATES
        fg_chat_template_destroy(tmpl);
#endif
        return CLI_RUNTIME_ERROR;
    }
    const int ipv6 = strchr(a->host, ':') != NULL;
    printf("flashgpt serve: model %s, context %d, %s engine, up to %d running and %d waiting\n",
           model_id, fgi_engine_context(engine), batch ? "batch" : "sessions", a->max_batch,
           a->max_queue);
    printf("flashgpt serve: chat prompts: %s\n", chat);
    printf("flashgpt serve: listening on http://%s%s%s:%d\n", ipv6 ? "[" : "", a->host,
           ipv6 ? "]" : "", fgi_server_port(srv));
    fflush(stdout);

    int sig = 0;
    while (sigwait(sigs, &sig) != 0) {
    }
    fprintf(stderr, "flashgpt %s: %s, stopping\n", VERB, sig == SIGINT ? "SIGINT" : "SIGTERM");
    fgi_server_quiesce(srv);
    /* running requests get --grace seconds to finish */
    fgi_engine_stats es;
    for (int waited = 0;; waited += 20) {
        fgi_engine_stats_get(engine, &es);
        if (es.running + es.waiting == 0 || waited >= a->grace * 1000) break;
        sleep_ms(20);
    }
    fgi_engine_shutdown(engine, 1); /* cancels what is left; their streams end */
    fgi_server_stop(srv);
    fgi_engine_destroy(engine);
#ifdef SERVE_CHAT_TEMPLATES
    fg_chat_template_destroy(tmpl);
#endif
    fprintf(stderr, "flashgpt %s: stopped\n", VERB);
    return CLI_OK;
}
#endif

int cmd_serve(int argc, char **argv)
{
    serve_args a = {.host = "127.0.0.1", .port = 8080, .device_name = "auto", .dtype = "auto",
                    .engine = "auto",
                    .max_batch = 4, .max_queue = 256, .max_body_kib = 1024, .grace = 5};
    const cli_option opts[] = {
        {"model", 'm', OPT_STRING, &a.model, "PATH", "Hugging Face folder or llama2.c .bin (required)"},
        {"tokenizer", 't', OPT_STRING, &a.tokenizer, "PATH", "tokenizer (default: beside the model)"},
        {"host", 0, OPT_STRING, &a.host, "ADDR", "address to listen on (default 127.0.0.1)"},
        {"port", 0, OPT_INT, &a.port, "N", "TCP port (default 8080; 0: a free port, printed)"},
        {"max-batch", 0, OPT_INT, &a.max_batch, "N",
         "requests generated at once (default 4; one batched forward each step, or one session each)"},
        {"engine", 0, OPT_STRING, &a.engine, "E",
         "batch (continuous batching over a paged KV cache; any device), sessions "
         "(one session per running request, interleaved), or auto: batch unless on a GPU (default)"},
        {"max-queue", 0, OPT_INT, &a.max_queue, "N", "requests waiting beyond those; more get 429 (default 256)"},
        {"ctx", 0, OPT_INT, &a.ctx, "N",
         "tokens per request, prompt + completion (default: the model's context, at most 4096)"},
        {"dtype", 0, OPT_STRING, &a.dtype, "T", CLI_DTYPE_HELP},
        {"device", 0, OPT_STRING, &a.device_name, "D", "auto, cpu (fast), cuda or ref (default auto)"},
        {"threads", 0, OPT_INT, &a.threads, "N", "CPU threads per forward (default: one per online core)"},
        {"api-key", 0, OPT_STRING, &a.api_key, "KEY", "require 'Authorization: Bearer KEY'"},
        {"model-name", 0, OPT_STRING, &a.model_name, "NAME", "the model's name in the API (default: the file name)"},
        {"max-body", 0, OPT_INT, &a.max_body_kib, "KIB", "largest request body; larger get 413 (default 1024)"},
        {"grace", 0, OPT_INT, &a.grace, "S", "on SIGINT/SIGTERM, seconds running requests may finish (default 5)"},
    };
    const cli_command cmd = {VERB, "-m PATH [options]",
                             "Serve the model over an OpenAI-compatible HTTP API "
                             "(/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics).",
                             opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP_SHOWN ? CLI_OK : rc;
    if (a.model == NULL) return cli_usage_error(VERB, "-m PATH is required");
    if (a.port > 65535) return cli_usage_error(VERB, "--port must be 0 .. 65535 (got %d)", a.port);
    if (a.max_batch < 1 || a.max_batch > 4096)
        return cli_usage_error(VERB, "--max-batch must be 1 .. 4096 (got %d)", a.max_batch);
    if (a.max_queue > 1000000)
        return cli_usage_error(VERB, "--max-queue must be 0 .. 1000000 (got %d)", a.max_queue);
    if (a.max_body_kib < 1 || a.max_body_kib > 1024 * 1024)
        return cli_usage_error(VERB, "--max-body must be 1 .. 1048576 KiB (got %d)", a.max_body_kib);
    if (a.grace > 3600) return cli_usage_error(VERB, "--grace must be 0 .. 3600 (got %d)", a.grace);
    if (a.api_key != NULL && a.api_key[0] == '\0') return cli_usage_error(VERB, "--api-key is empty");
    if (cli_parse_device(VERB, a.device_name, &a.device) != CLI_OK) return CLI_USAGE_ERROR;
    if (strcmp(a.engine, "auto") != 0 && strcmp(a.engine, "batch") != 0 &&
        strcmp(a.engine, "sessions") != 0)
        return cli_usage_error(VERB, "--engine must be auto, batch or sessions");
    if (cli_parse_dtype(VERB, a.dtype, &a.dtype_value) != CLI_OK) return CLI_USAGE_ERROR;
    if (cli_check_dtype(VERB, a.device, a.dtype_value) != CLI_OK) return CLI_RUNTIME_ERROR;
#ifndef FG_HAVE_MHD
    fprintf(stderr, "flashgpt %s: this flashgpt was built without the server "
                    "(libmicrohttpd was not found when it was configured; Debian: libmicrohttpd-dev)\n",
            VERB);
    return CLI_RUNTIME_ERROR;
#else
    /* before any thread exists, so that every thread inherits the mask */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN); /* a vanished client is an error return, not death */

    fg_model *model = NULL;
    fg_tokenizer *tok = NULL;
    if (cli_load_model(&model, a.model) != FG_OK) return cli_runtime_error(VERB, "cannot load the model");
    if (cli_load_tokenizer(&tok, a.tokenizer, a.model, fg_model_config(model)->vocab_size) != FG_OK) {
        rc = cli_runtime_error(VERB, "cannot load the tokenizer");
    } else {
        rc = serve(&a, model, tok, &sigs);
    }
    fg_tokenizer_destroy(tok);
    fg_model_destroy(model);
    return rc;
#endif
}
