/* flashgpt chat: a conversation with a chat model through its own chat
 * template, one user turn per line of stdin, replies streamed to stdout;
 * or, with --render, the rendered prompt of a JSON conversation (no model
 * needed: a folder with the tokenizer files is enough).
 *
 * The KV cache is kept between turns: the session holds the text consumed
 * so far (the last rendering plus the reply tokens fed back), and when the
 * next rendering starts with that text only the rest is encoded and
 * prefilled. When it does not (a template that trims or rewrites earlier
 * turns), the session restarts from the whole rendering: slower, never
 * different from what the template says. Public headers only. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *model, *tokenizer, *system, *render, *template_file, *device_name, *dtype_name;
    fg_device device;
    fg_dtype dtype;
    int n, top_k, ctx, threads, no_gen_prompt, ignore_eos;
    float temperature, top_p;
    uint64_t seed;
    cli_strings stops;
} chat_args;

static const char VERB[] = "chat";

/* A whole file (or stdin for "-") into a new NUL-terminated buffer. */
static fg_status read_all(const char *path, char **data, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        char q[512];
        return cli_fail(FG_ERR_IO, "cannot open %s: %s", fg_quote_text(q, sizeof q, path), strerror(errno));
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *grown = cap < (256u << 20) ? realloc(buf, cap * 2) : NULL;
        if (grown == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    const int failed = ferror(f);
    if (f != stdin) fclose(f);
    if (buf == NULL) return cli_fail(FG_ERR_OOM, "%s is too large to read", path);
    if (failed) {
        free(buf);
        return cli_fail(FG_ERR_IO, "cannot read %s", path);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return FG_OK;
}

/* The chat template: --chat-template FILE, else the model's own. The
 * library's "no chat template" message gets the options that help. */
static fg_status load_template(const chat_args *a, fg_chat_template **t)
{
    if (a->template_file) {
        char *src = NULL;
        size_t len = 0;
        CLI_TRY(read_all(a->template_file, &src, &len));
        const fg_status st = fg_chat_template_create(t, src, len, NULL, NULL);
        free(src);
        return st;
    }
    static const char none[] = "no chat template in ";
    const fg_status st = fg_chat_template_load(t, a->model);
    if (st == FG_ERR_IO && strncmp(fg_last_error(), none, sizeof none - 1) == 0)
        return cli_fail(st, "%s; give one with --chat-template FILE, or use 'flashgpt generate' "
                        "for plain text", fg_last_error());
    return st;
}

static int render_only(const chat_args *a)
{
    fg_chat_template *t = NULL;
    char *json = NULL, *text = NULL;
    size_t json_len = 0, len = 0;
    int rc = CLI_RUNTIME_ERROR;
    if (load_template(a, &t) != FG_OK) {
        cli_runtime_error(VERB, "cannot load the chat template");
        goto done;
    }
    if (read_all(a->render, &json, &json_len) != FG_OK) {
        cli_runtime_error(VERB, "cannot read the messages");
        goto done;
    }
    const int gen = !a->no_gen_prompt;
    if (fg_chat_render_json(t, json, json_len, gen, NULL, 0, &len) != FG_OK && len == 0) {
        cli_runtime_error(VERB, "cannot render the conversation");
        goto done;
    }
    text = malloc(len + 1);
    if (text == NULL || fg_chat_render_json(t, json, json_len, gen, text, len, &len) != FG_OK) {
        cli_runtime_error(VERB, text ? "cannot render the conversation" : "out of memory");
        goto done;
    }
    if (len > 0) fwrite(text, 1, len, stdout); /* byte for byte: no newline added */
    rc = CLI_OK;
done:
    free(text);
    free(json);
    fg_chat_template_destroy(t);
    return rc;
}

/* --- the conversation --------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
} text_buf;

static int tb_add(text_buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

/* What the generation callback keeps: the reply as shown, and the raw
 * bytes of each generated token (their ends in ends[]) to know the text
 * of the tokens the session consumed. */
typedef struct {
    const fg_tokenizer *tok;
    text_buf shown, raw;
    size_t *ends;
    int n_tokens, cap_tokens, prev, write_error, oom;
} reply;

static int on_token(void *user, int id, const char *bytes, size_t len)
{
    reply *r = user;
    if (len > 0 && (fwrite(bytes, 1, len, stdout) != len || fflush(stdout) != 0)) {
        r->write_error = errno ? errno : EIO;
        return 1;
    }
    if (tb_add(&r->shown, bytes, len) != 0) r->oom = 1;
    if (id < 0) return r->oom; /* the held-back text at the end: no token */
    const char *piece = "";
    size_t plen = 0;
    if (id < fg_tokenizer_vocab_size(r->tok) && fg_tokenizer_piece(r->tok, r->prev, id, &piece, &plen) != FG_OK)
        plen = 0;
    r->prev = id;
    if (r->n_tokens == r->cap_tokens) {
        const int cap = r->cap_tokens ? 2 * r->cap_tokens : 256;
        size_t *ends = realloc(r->ends, sizeof *ends * (size_t)cap);
        if (ends == NULL) {
            r->oom = 1;
            return 1;
        }
        r->ends = ends;
        r->cap_tokens = cap;
    }
    if (tb_add(&r->raw, piece, plen) != 0) r->oom = 1;
    r->ends[r->n_tokens++] = r->raw.n;
    return r->oom;
}

typedef struct {
    fg_chat_message *m;
    int n, cap;
} messages;

static int add_message(messages *ms, const char *role, const char *content, size_t len)
{
    if (ms->n == ms->cap) {
        const int cap = ms->cap ? 2 * ms->cap : 16;
        fg_chat_message *m = realloc(ms->m, sizeof *m * (size_t)cap);
        if (m == NULL) return -1;
        ms->m = m;
        ms->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) return -1;
    memcpy(copy, content, len);
    copy[len] = '\0';
    ms->m[ms->n++] = (fg_chat_message){role, copy};
    return 0;
}

/* The rendering of the conversation with the generation prompt (malloc'd). */
static fg_status render(const fg_chat_template *t, const messages *ms, char **text, size_t *len)
{
    size_t n = 0;
    fg_status st = fg_chat_render(t, ms->m, ms->n, 1, NULL, 0, &n);
    if (st != FG_OK && n == 0) return st;
    char *out = malloc(n + 1);
    if (out == NULL) return cli_fail(FG_ERR_OOM, "cannot hold a %zu-byte conversation", n);
    st = fg_chat_render(t, ms->m, ms->n, 1, out, n, &n);
    if (st != FG_OK) {
        free(out);
        return st;
    }
    out[n] = '\0';
    *text = out;
    *len = n;
    return FG_OK;
}

/* Ids of text without BOS: the template writes the special tokens itself
 * (apply_chat_template tokenizes with add_special_tokens=False). */
static fg_status encode(const fg_tokenizer *tok, const char *text, size_t len, int **ids, int *n)
{
    int needed = 0;
    fg_status st = fg_tokenizer_encode(tok, text, len, 0, NULL, 0, &needed);
    if (needed == 0) {
        *n = 0;
        return st == FG_ERR_INVALID_ARG ? FG_OK : st;
    }
    int *out = malloc(sizeof(int) * (size_t)needed);
    if (out == NULL) return cli_fail(FG_ERR_OOM, "cannot allocate %d token ids", needed);
    st = fg_tokenizer_encode(tok, text, len, 0, out, needed, n);
    if (st != FG_OK) {
        free(out);
        return st;
    }
    *ids = out;
    return FG_OK;
}

typedef struct {
    const chat_args *a;
    fg_session *s;
    const fg_tokenizer *tok;
    fg_sampler *sampler;
    const fg_chat_template *t;
    fg_generate_config gc;
    text_buf consumed; /* the text the session's tokens spell */
    int turn;
} chat;

/* One turn: render, prefill what the session lacks, generate the reply. */
static int turn(chat *c, messages *ms)
{
    char *text = NULL;
    size_t len = 0;
    int *ids = NULL, n_ids = 0, rc = CLI_RUNTIME_ERROR;
    reply r = {.tok = c->tok, .prev = -1};
    if (render(c->t, ms, &text, &len) != FG_OK) {
        cli_runtime_error(VERB, "cannot render the conversation");
        goto done;
    }
    /* the new text after what the session already holds, or everything */
    size_t from = 0;
    if (fg_session_len(c->s) > 0 && c->consumed.n <= len && memcmp(text, c->consumed.p, c->consumed.n) == 0)
        from = c->consumed.n;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (from == 0) {
            fg_session_reset(c->s);
            c->consumed.n = 0;
        }
        free(ids);
        ids = NULL;
        if (encode(c->tok, text + from, len - from, &ids, &n_ids) != FG_OK) {
            cli_runtime_error(VERB, "cannot encode the conversation");
            goto done;
        }
        const int room = fg_session_capacity(c->s) - fg_session_len(c->s);
        if (n_ids > 0 && n_ids + c->a->n <= room) break;
        if (from == 0) {
            fprintf(stderr, "flashgpt %s: the conversation (%d tokens) plus -n %d does not fit in "
                    "the context (%d tokens)\n", VERB, n_ids, c->a->n, fg_session_capacity(c->s));
            goto done;
        }
        from = 0; /* nothing new to prefill, or no room left: start over */
    }
    const int kept = fg_session_len(c->s);
    r.prev = ids[n_ids - 1]; /* the first reply piece follows the prompt's last token */
    fg_generate_config gc = c->gc;
    gc.user = &r;
    fg_generate_result res = {0};
    if (fg_generate(c->s, c->tok, c->sampler, ids, n_ids, &gc, &res) != FG_OK) {
        cli_runtime_error(VERB, "generation failed");
        goto done;
    }
    if (r.write_error) {
        fprintf(stderr, "flashgpt %s: cannot write to standard output: %s\n", VERB, strerror(r.write_error));
        clearerr(stdout);
        goto done;
    }
    if (r.oom) {
        fprintf(stderr, "flashgpt %s: out of memory\n", VERB);
        goto done;
    }
    printf("\n");
    fflush(stdout);
    /* what the session now spells: the rendering, then the reply tokens
     * that were fed back (not the last one drawn, nor a stop id) */
    const int fed = fg_session_len(c->s) - kept - n_ids;
    c->consumed.n = 0;
    if (tb_add(&c->consumed, text, len) != 0 ||
        tb_add(&c->consumed, r.raw.p ? r.raw.p : "", fed > 0 ? r.ends[fed - 1] : 0) != 0 ||
        add_message(ms, "assistant", r.shown.p ? r.shown.p : "", r.shown.n) != 0) {
        fprintf(stderr, "flashgpt %s: out of memory\n", VERB);
        goto done;
    }
    c->turn++;
    fprintf(stderr, "turn %d: prefill %d of %d tokens (%s), decode %d tokens %.1f tokens/s, stop: %s\n",
            c->turn, n_ids, kept + n_ids, kept > 0 ? "cache kept" : "cache reset", res.n_generated,
            res.n_generated > 0 && res.decode_seconds > 0 ? res.n_generated / res.decode_seconds : 0.0,
            fg_stop_reason_str(res.stop));
    rc = CLI_OK;
done:
    free(text);
    free(ids);
    free(r.shown.p);
    free(r.raw.p);
    free(r.ends);
    return rc;
}

static int converse(const chat_args *a, fg_model *model, fg_tokenizer *tok, fg_chat_template *t)
{
    const fg_config *cfg = fg_model_config(model);
    fg_sampler_config sc = {a->temperature, a->top_k, a->top_p, a->seed};
    chat c = {.a = a, .tok = tok, .t = t};
    messages ms = {0};
    int rc = CLI_RUNTIME_ERROR, eos_ids[CLI_MAX_EOS_IDS];
    /* the template's eos text also ends a reply (a tokenizer may spell the
     * special token as text); --stop strings come first */
    cli_strings stops = a->stops;
    const char *eos_text = fg_chat_template_eos(t);
    if (!a->ignore_eos && eos_text[0] != '\0' && stops.n < CLI_MAX_STRINGS) stops.items[stops.n++] = eos_text;
    char *line = NULL;
    size_t line_cap = 0;
    if (fg_sampler_create(&c.sampler, cfg->vocab_size, &sc) != FG_OK) {
        rc = cli_usage_error(VERB, "%s", fg_last_error());
        goto done;
    }
    /* the cache grows with the conversation up to this many tokens */
    const int ctx = a->ctx ? a->ctx : cfg->n_ctx < 4096 ? cfg->n_ctx : 4096;
    if (fg_session_create_model(&c.s, model, a->device, ctx, a->dtype) !=
        FG_OK) {
        cli_runtime_error(VERB, "cannot start a session");
        goto done;
    }
    cli_report_device(VERB, c.s, 1);
    if (cli_apply_threads(VERB, c.s, a->threads) != CLI_OK) goto done;
    c.gc = fg_generate_defaults();
    if (cli_apply_stops(VERB, &c.gc, a->model, a->ignore_eos, &stops, eos_ids) != CLI_OK) goto done;
    c.gc.max_new_tokens = a->n;
    c.gc.on_token = on_token;
    if (a->system && add_message(&ms, "system", a->system, strlen(a->system)) != 0) goto oom;
    const int tty = isatty(STDIN_FILENO);
    for (;;) {
        if (tty) {
            fprintf(stderr, "> ");
            fflush(stderr);
        }
        const ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0) break;
        size_t n = (size_t)got;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        if (n == 0) continue; /* an empty line is no turn */
        if (memchr(line, '\0', n) != NULL) {
            fprintf(stderr, "flashgpt %s: a NUL byte in the input line; skipped\n", VERB);
            continue;
        }
        if (add_message(&ms, "user", line, n) != 0) goto oom;
        if (turn(&c, &ms) != CLI_OK) goto done;
    }
    if (ferror(stdin)) {
        fprintf(stderr, "flashgpt %s: cannot read standard input: %s\n", VERB, strerror(errno));
        goto done;
    }
    rc = CLI_OK;
    goto done;
oom:
    fprintf(stderr, "flashgpt %s: out of memory\n", VERB);
done:
    for (int i = 0; i < ms.n; i++) free((char *)ms.m[i].content);
    free(ms.m);
    free(line);
    free(c.consumed.p);
    fg_session_destroy(c.s);
    fg_sampler_destroy(c.sampler);
    return rc;
}

int cmd_chat(int argc, char **argv)
{
    chat_args a = {.device_name = "auto", .dtype_name = "auto", .n = 256, .temperature = 0.7f, .top_p = 0.9f};
    const cli_option opts[] = {
        {"model", 'm', OPT_STRING, &a.model, "PATH", "model folder (or, with --render, a folder with the tokenizer files) (required)"},
        {"tokenizer", 't', OPT_STRING, &a.tokenizer, "PATH", "tokenizer (default: beside the model)"},
        {"system", 0, OPT_STRING, &a.system, "TEXT", "a system message first"},
        {"render", 0, OPT_STRING, &a.render, "FILE", "print the prompt of a JSON conversation and exit ('-': stdin)"},
        {"no-generation-prompt", 0, OPT_FLAG, &a.no_gen_prompt, NULL, "with --render: no assistant header at the end"},
        {"chat-template", 0, OPT_STRING, &a.template_file, "FILE", "a Jinja chat template instead of the model's"},
        {"max-tokens", 'n', OPT_INT, &a.n, "N", "at most N tokens a reply (default 256)"},
        {"stop", 0, OPT_STRINGS, &a.stops, "TEXT", "end a reply before TEXT (not printed; repeatable)"},
        {"ignore-eos", 0, OPT_FLAG, &a.ignore_eos, NULL, "go on past EOS, the model's eos ids and the template's eos text"},
        {"temperature", 0, OPT_FLOAT, &a.temperature, "T", "0 for greedy (default 0.7)"},
        {"top-k", 0, OPT_INT, &a.top_k, "K", "keep the K most likely tokens (default: all)"},
        {"top-p", 0, OPT_FLOAT, &a.top_p, "P", "nucleus sampling mass in (0, 1] (default 0.9)"},
        {"seed", 0, OPT_U64, &a.seed, "S", "sampling seed (default 0)"},
        {"device", 0, OPT_STRING, &a.device_name, "D", "auto, cpu (fast), cuda or ref (exact reference) (default auto)"},
        {"dtype", 0, OPT_STRING, &a.dtype_name, "T", CLI_DTYPE_HELP},
        {"ctx", 0, OPT_INT, &a.ctx, "N", "most tokens the conversation may hold (default: the model's context, at most 4096)"},
        {"threads", 0, OPT_INT, &a.threads, "N", "CPU threads (default: one per online core)"},
    };
    const cli_command cmd = {VERB, "-m PATH [options] (one user turn per line of stdin)",
                             "Chat with a model through its chat template, keeping the KV cache "
                             "between turns;\nor print the rendered prompt of a JSON list of "
                             "{role, content} messages (--render).",
                             opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP_SHOWN ? CLI_OK : rc;
    if (a.model == NULL && !(a.render && a.template_file)) return cli_usage_error(VERB, "-m PATH is required");
    if (a.no_gen_prompt && a.render == NULL)
        return cli_usage_error(VERB, "--no-generation-prompt goes with --render");
    if (a.n < 1) return cli_usage_error(VERB, "-n must be >= 1 (got %d)", a.n);
    for (int i = 0; i < a.stops.n; i++)
        if (a.stops.items[i][0] == '\0') return cli_usage_error(VERB, "--stop needs a non-empty text");
    if (cli_parse_device(VERB, a.device_name, &a.device) != CLI_OK) return CLI_USAGE_ERROR;
    if (cli_parse_dtype(VERB, a.dtype_name, &a.dtype) != CLI_OK) return CLI_USAGE_ERROR;
    if (a.render) return render_only(&a);
    if (cli_check_dtype(VERB, a.device, a.dtype) != CLI_OK) return CLI_RUNTIME_ERROR;

    fg_model *model = NULL;
    fg_tokenizer *tok = NULL;
    fg_chat_template *t = NULL;
    if (load_template(&a, &t) != FG_OK) return cli_runtime_error(VERB, "cannot load the chat template");
    if (cli_load_model(&model, a.model) != FG_OK) rc = cli_runtime_error(VERB, "cannot load the model");
    else if (cli_load_tokenizer(&tok, a.tokenizer, a.model, fg_model_config(model)->vocab_size) != FG_OK)
        rc = cli_runtime_error(VERB, "cannot load the tokenizer");
    else
        rc = converse(&a, model, tok, t);
    fg_chat_template_destroy(t);
    fg_tokenizer_destroy(tok);
    fg_model_destroy(model);
    return rc;
}
