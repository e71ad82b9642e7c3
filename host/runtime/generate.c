/* Generation policy (see generate.h): finding a model's tokenizer, the BOS
 * rule, and the prefill / sample / feed-back loop with its stop conditions.
 * Built on the public session, sampler and tokenizer calls only, so that it
 * holds no device-specific code. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "flashgpt/generate.h"
#include "input.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* --- the tokenizer of a model ----------------------------------------------- */

enum { PATH_CAP = 4096 };

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The folder of path (path itself when it is a folder; "." for a bare file
 * name) into buf. */
static fg_status folder_of(const char *fn, char *buf, size_t cap, const char *path)
{
    const int n = snprintf(buf, cap, "%s", path);
    if (n < 0 || (size_t)n >= cap)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: path too long (%zu bytes): %.64s...", fn,
                       strlen(path), path);
    if (is_dir(buf)) return FG_OK;
    char *slash = strrchr(buf, '/');
    if (slash) *slash = '\0';
    else snprintf(buf, cap, ".");
    return FG_OK;
}

/* folder/name into buf; a path too long for buf is an error. */
static fg_status join(const char *fn, char *buf, size_t cap, const char *folder,
                      const char *name)
{
    const int n = snprintf(buf, cap, "%s/%s", folder, name);
    if (n < 0 || (size_t)n >= cap)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: path too long: %.64s.../%s", fn, folder, name);
    return FG_OK;
}

/* GPT-2's two files in a folder: Hugging Face's vocab.json + merges.txt,
 * else the same files under OpenAI's own names, encoder.json + vocab.bpe
 * (as in models/gpt2-tokenizer); with neither, the error names vocab.json. */
static fg_status gpt2_in_folder(const char *fn, fg_tokenizer **tok, const char *folder)
{
    char vocab[PATH_CAP], merges[PATH_CAP], encoder[PATH_CAP];
    FGI_TRY(join(fn, vocab, sizeof vocab, folder, "vocab.json"));
    FGI_TRY(join(fn, encoder, sizeof encoder, folder, "encoder.json"));
    const int openai = !is_file(vocab) && is_file(encoder);
    FGI_TRY(join(fn, merges, sizeof merges, folder, openai ? "vocab.bpe" : "merges.txt"));
    return fg_tokenizer_load_gpt2(tok, openai ? encoder : vocab, merges);
}

/* True when the last component of path is `name`. */
static int named(const char *path, const char *name)
{
    const char *slash = strrchr(path, '/');
    return strcmp(slash ? slash + 1 : path, name) == 0;
}

/* An explicit tokenizer path: a folder (tokenizer.json, else GPT-2's two
 * files), a tokenizer.json, a GPT-2 vocab.json (or encoder.json), or
 * llama2.c. */
static fg_status load_given(const char *fn, fg_tokenizer **tok, const char *tok_path,
                            int vocab_size)
{
    char folder[PATH_CAP], path[PATH_CAP];
    if (is_dir(tok_path)) {
        FGI_TRY(join(fn, path, sizeof path, tok_path, "tokenizer.json"));
        if (is_file(path)) return fg_tokenizer_load_json(tok, path);
        return gpt2_in_folder(fn, tok, tok_path);
    }
    if (named(tok_path, "tokenizer.json")) return fg_tokenizer_load_json(tok, tok_path);
    const size_t n = strlen(tok_path);
    if (n >= 5 && strcmp(tok_path + n - 5, ".json") == 0) {
        FGI_TRY(folder_of(fn, folder, sizeof folder, tok_path));
        FGI_TRY(join(fn, path, sizeof path, folder,
                     named(tok_path, "encoder.json") ? "vocab.bpe" : "merges.txt"));
        return fg_tokenizer_load_gpt2(tok, tok_path, path);
    }
    return fg_tokenizer_load_llama2c(tok, tok_path, vocab_size);
}

fg_status fg_tokenizer_load_for_model(fg_tokenizer **tok, const char *model_path,
                                      const char *tok_path, int vocab_size)
{
    static const char fn[] = "fg_tokenizer_load_for_model";
    FGI_TRY(fgi_check_ptr(fn, "tok", tok));
    *tok = NULL;
    FGI_TRY(fgi_check_min(fn, "vocab_size", vocab_size, 1));
    if (tok_path != NULL) return load_given(fn, tok, tok_path, vocab_size);
    if (model_path == NULL)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: arguments 'model_path' and 'tok_path' are both NULL", fn);

    /* tokenizer.json first: it is what transformers loads, and the only file
     * with the model's own pre-tokenizer and special tokens (a Qwen2 folder
     * also ships vocab.json + merges.txt, which GPT-2's rules would split
     * differently). Then GPT-2's files: a Hugging Face folder may hold stray
     * .bin files, while a vocab.json beside a model is never anything but
     * GPT-2's. */
    char folder[PATH_CAP], path[PATH_CAP], numbered[32];
    FGI_TRY(folder_of(fn, folder, sizeof folder, model_path));
    FGI_TRY(join(fn, path, sizeof path, folder, "tokenizer.json"));
    if (is_file(path)) return fg_tokenizer_load_json(tok, path);
    FGI_TRY(join(fn, path, sizeof path, folder, "vocab.json"));
    const int hf_names = is_file(path);
    FGI_TRY(join(fn, path, sizeof path, folder, "encoder.json"));
    if (hf_names || is_file(path)) return gpt2_in_folder(fn, tok, folder);
    FGI_TRY(join(fn, path, sizeof path, folder, "tokenizer.bin"));
    if (!is_file(path)) {
        snprintf(numbered, sizeof numbered, "tok%d.bin", vocab_size);
        FGI_TRY(join(fn, path, sizeof path, folder, numbered));
    }
    if (is_file(path)) return fg_tokenizer_load_llama2c(tok, path, vocab_size);
    /* No function name in front: front ends append their own hint to it. */
    return fgi_fail(FG_ERR_IO,
                   "no tokenizer beside %s (looked for tokenizer.json, vocab.json + merges.txt, "
                   "encoder.json + vocab.bpe, tokenizer.bin, tok%d.bin)",
                   model_path, vocab_size);
}

/* --- the ids that end a model's text ---------------------------------------------- */

/* Adds eos_token_id of folder/name to ids[0 .. *n) (up to capacity; *n
 * counts them all), skipping repeats. A missing file or key adds nothing. */
static fg_status eos_ids_of(const char *fn, const char *folder, const char *name, int *ids,
                            int capacity, int *n)
{
    char path[PATH_CAP];
    FGI_TRY(join(fn, path, sizeof path, folder, name));
    if (!is_file(path)) return FG_OK;
    char *text = NULL;
    size_t len = 0;
    FGI_TRY(fgi_load_input(fn, path, 16u << 20, name, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (root == NULL)
        return fgi_fail(FG_ERR_FORMAT, "%s: %s: not valid JSON", fn, FGI_QUOTE(path));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    fg_status st = FG_OK;
    const int is_list = cJSON_IsArray(v);
    const int count = v == NULL || cJSON_IsNull(v) ? 0 : is_list ? cJSON_GetArraySize(v) : 1;
    for (int i = 0; i < count && st == FG_OK; i++) {
        const cJSON *e = is_list ? cJSON_GetArrayItem(v, i) : v;
        if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int)e->valuedouble ||
            e->valuedouble < 0 || e->valuedouble > INT_MAX) {
            st = fgi_fail(FG_ERR_FORMAT,
                          "%s: %s: eos_token_id must be a token id or a list of token ids", fn,
                          FGI_QUOTE(path));
            break;
        }
        const int id = (int)e->valuedouble;
        int seen = 0;
        for (int j = 0; j < *n && j < capacity; j++) seen |= ids[j] == id;
        /* past capacity only counting is asked for: repeats among the
         * uncounted ids are not found, so the count is an upper bound */
        if (seen) continue;
        if (*n < capacity) ids[*n] = id;
        (*n)++;
    }
    cJSON_Delete(root);
    return st;
}

fg_status fg_eos_ids_for_model(const char *model_path, int *ids, int capacity, int *n_ids)
{
    static const char fn[] = "fg_eos_ids_for_model";
    FGI_TRY(fgi_check_ptr(fn, "model_path", model_path));
    FGI_TRY(fgi_check_ptr(fn, "n_ids", n_ids));
    FGI_TRY(fgi_check_min(fn, "capacity", capacity, 0));
    if (capacity > 0) FGI_TRY(fgi_check_ptr(fn, "ids", ids));
    char folder[PATH_CAP];
    FGI_TRY(folder_of(fn, folder, sizeof folder, model_path));
    /* Collected in scratch space first so that ids stays untouched when it
     * turns out too small; 64 covers every model seen (Llama 3 lists 3). */
    enum { SCRATCH = 64 };
    int scratch[SCRATCH], n = 0;
    FGI_TRY(eos_ids_of(fn, folder, "generation_config.json", scratch, SCRATCH, &n));
    FGI_TRY(eos_ids_of(fn, folder, "config.json", scratch, SCRATCH, &n));
    if (n > SCRATCH)
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: %s lists %d eos ids, more than %d", fn,
                        FGI_QUOTE(folder), n, SCRATCH);
    *n_ids = n;
    if (n > capacity)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: argument 'capacity' is %d, the model has %d eos ids", fn, capacity,
                        n);
    if (n > 0) memcpy(ids, scratch, sizeof(int) * (size_t)n);
    return FG_OK;
}

/* --- prompts -------------------------------------------------------------------- */

int fg_prompt_wants_bos(const fg_config *cfg, size_t prompt_len)
{
    if (cfg == NULL) return -1;
    switch (cfg->arch) {
    case FG_ARCH_LLAMA: return 1;
    case FG_ARCH_GPT2: return prompt_len == 0;
    }
    return -1;
}

fg_status fg_prompt_encode(const fg_tokenizer *tok, const fg_config *cfg, const char *text,
                           size_t len, int *ids, int capacity, int *n_ids)
{
    static const char fn[] = "fg_prompt_encode";
    FGI_TRY(fgi_check_ptr(fn, "tok", tok));
    FGI_TRY(fgi_check_ptr(fn, "cfg", cfg));
    FGI_TRY(fgi_check_ptr(fn, "n_ids", n_ids));
    if (len > 0) FGI_TRY(fgi_check_ptr(fn, "text", text));
    FGI_TRY(fgi_check_min(fn, "capacity", capacity, 0));
    if (capacity > 0) FGI_TRY(fgi_check_ptr(fn, "ids", ids));
    if (fg_prompt_wants_bos(cfg, len) < 0)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'cfg' has an unknown arch %d", fn,
                       (int)cfg->arch);

    /* One call: an empty result writes nothing, so ids stays untouched on
     * every failure; the tokenizer sizes and refuses small capacities. */
    const int add_bos = fg_prompt_wants_bos(cfg, len);
    FGI_TRY(fg_tokenizer_encode(tok, len > 0 ? text : "", len, add_bos, ids, capacity, n_ids));
    /* A tokenizer.json may add nothing for add_bos (GPT-2's adds no BOS):
     * an empty prompt then still starts from the tokenizer's BOS. */
    if (*n_ids == 0 && len == 0 && add_bos && fg_tokenizer_bos(tok) >= 0) {
        *n_ids = 1;
        if (capacity < 1)
            return fgi_fail(FG_ERR_INVALID_ARG,
                           "%s: argument 'capacity' is too small: the text needs 1 ids (got %d)",
                           fn, capacity);
        ids[0] = fg_tokenizer_bos(tok);
        return FG_OK;
    }
    if (*n_ids == 0) return fgi_fail(FG_ERR_INVALID_ARG, "%s: the prompt encodes to no tokens", fn);
    return FG_OK;
}

/* --- generation ----------------------------------------------------------------- */

const char *fg_stop_reason_str(fg_stop_reason reason)
{
    switch (reason) {
    case FG_STOP_NONE: return "none";
    case FG_STOP_EOS: return "eos";
    case FG_STOP_MAX_TOKENS: return "max tokens";
    case FG_STOP_CONTEXT_FULL: return "context full";
    case FG_STOP_CANCELLED: return "cancelled";
    case FG_STOP_STRING: return "stop string";
    }
    return "unknown stop reason";
}

fg_generate_config fg_generate_defaults(void)
{
    fg_generate_config c = {.max_new_tokens = 64};
    return c;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The bytes id adds after prev; none for ids this tokenizer does not know
 * (a model may pad its vocabulary beyond the tokenizer's). */
static void piece_of(const fg_tokenizer *tok, int prev, int id, const char **bytes, size_t *len)
{
    const int vocab = fg_tokenizer_vocab_size(tok);
    *bytes = "";
    *len = 0;
    if (id < 0 || id >= vocab || prev < -1 || prev >= vocab) return;
    if (fg_tokenizer_piece(tok, prev, id, bytes, len) != FG_OK) {
        *bytes = "";
        *len = 0;
    }
}

static int is_stop(const fg_tokenizer *tok, const fg_generate_config *cfg, int id)
{
    /* EOS ends the text; so does BOS: models trained on documents joined by
     * BOS (llama2.c's, stories260K) emit it where the next document would
     * begin, and what came before is complete. */
    if (!cfg->ignore_eos && (id == fg_tokenizer_eos(tok) || id == fg_tokenizer_bos(tok))) return 1;
    for (int i = 0; i < cfg->n_stop_ids; i++)
        if (id == cfg->stop_ids[i]) return 1;
    return 0;
}

static fg_status check_generate(const char *fn, const fg_session *session,
                                const fg_tokenizer *tok, const fg_sampler *sampler,
                                const int *prompt, int n_prompt,
                                const fg_generate_config *cfg, const fg_generate_result *result)
{
    FGI_TRY(fgi_check_ptr(fn, "session", session));
    FGI_TRY(fgi_check_ptr(fn, "tok", tok));
    FGI_TRY(fgi_check_ptr(fn, "sampler", sampler));
    FGI_TRY(fgi_check_ptr(fn, "cfg", cfg));
    FGI_TRY(fgi_check_ptr(fn, "result", result));
    FGI_TRY(fgi_check_ptr(fn, "prompt", prompt));
    FGI_TRY(fgi_check_min(fn, "n_prompt", n_prompt, 1));
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0)
            return fgi_fail(FG_ERR_INVALID_ARG,
                           "%s: argument 'prompt' holds %d at index %d, not a token id", fn,
                           prompt[i], i);
    FGI_TRY(fgi_check_min(fn, "cfg->max_new_tokens", cfg->max_new_tokens, 0));
    FGI_TRY(fgi_check_min(fn, "cfg->n_stop_ids", cfg->n_stop_ids, 0));
    if (cfg->n_stop_ids > 0) FGI_TRY(fgi_check_ptr(fn, "cfg->stop_ids", cfg->stop_ids));
    for (int i = 0; i < cfg->n_stop_ids; i++)
        if (cfg->stop_ids[i] < 0)
            return fgi_fail(FG_ERR_INVALID_ARG,
                           "%s: argument 'cfg->stop_ids' holds %d at index %d, not a token id",
                           fn, cfg->stop_ids[i], i);
    FGI_TRY(fgi_check_min(fn, "cfg->n_stop_strings", cfg->n_stop_strings, 0));
    if (cfg->n_stop_strings > 0) FGI_TRY(fgi_check_ptr(fn, "cfg->stop_strings", cfg->stop_strings));
    for (int i = 0; i < cfg->n_stop_strings; i++)
        if (cfg->stop_strings[i] == NULL || cfg->stop_strings[i][0] == '\0')
            return fgi_fail(FG_ERR_INVALID_ARG,
                            "%s: argument 'cfg->stop_strings' holds %s at index %d, not a "
                            "stop text", fn, cfg->stop_strings[i] ? "\"\"" : "NULL", i);
    const int free_slots = fg_session_capacity(session) - fg_session_len(session);
    if (n_prompt > free_slots)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: the prompt (%d tokens) does not fit in the session "
                       "(%d of its %d tokens free)",
                       fn, n_prompt, free_slots, fg_session_capacity(session));
    return FG_OK;
}

/* Stop strings: the generated text not yet passed on (held) because it
 * may be the start of a stop string. buf grows only when a piece is longer
 * than anything before, so a generation allocates once or twice. */
typedef struct {
    const fg_generate_config *cfg;
    char *buf;
    size_t held, cap;
} stop_text;

/* Appends piece to the held text; then the bytes to pass on now in
 * [0, *release), and whether a stop string starts at *release. */
static fg_status stop_text_add(stop_text *t, const char *piece, size_t len, size_t *release,
                               int *matched)
{
    static const char fn[] = "fg_generate";
    if (t->held + len > t->cap) {
        const size_t cap = 2 * (t->held + len);
        char *grown = realloc(t->buf, cap);
        if (grown == NULL)
            return fgi_fail(FG_ERR_OOM, "%s: cannot hold %zu bytes of generated text", fn, cap);
        t->buf = grown;
        t->cap = cap;
    }
    if (len > 0) memcpy(t->buf + t->held, piece, len);
    const size_t n = t->held + len;
    /* The earliest match wins: what precedes it is the whole text. */
    size_t first = n;
    for (int i = 0; i < t->cfg->n_stop_strings; i++) {
        const char *stop = t->cfg->stop_strings[i];
        const size_t sl = strlen(stop);
        for (size_t at = 0; at + sl <= n && at < first; at++)
            if (memcmp(t->buf + at, stop, sl) == 0) {
                first = at;
                break;
            }
    }
    if (first < n) {
        *release = first;
        *matched = 1;
        return FG_OK;
    }
    /* Hold back the longest tail that a stop string starts with. */
    size_t keep = 0;
    for (int i = 0; i < t->cfg->n_stop_strings; i++) {
        const char *stop = t->cfg->stop_strings[i];
        const size_t sl = strlen(stop);
        for (size_t k = sl - 1 < n ? sl - 1 : n; k > keep; k--)
            if (memcmp(t->buf + n - k, stop, k) == 0) {
                keep = k;
                break;
            }
    }
    *release = n - keep;
    *matched = 0;
    t->held = n;
    return FG_OK;
}

/* Drops the first n bytes (they were passed on). */
static void stop_text_consume(stop_text *t, size_t n)
{
    memmove(t->buf, t->buf + n, t->held - n);
    t->held -= n;
}

/* The loop after the prefill: sample, stop or pass on, feed back. */
static fg_status decode(fg_session *session, const fg_tokenizer *tok, fg_sampler *sampler,
                        int prev, const fg_generate_config *cfg, stop_text *text,
                        fg_generate_result *r)
{
    while (r->n_generated < cfg->max_new_tokens) {
        int next;
        const fg_status drawn = fg_session_sample(session, sampler, &next);
        if (drawn != FG_OK) {
            r->failed = FG_GENERATE_SAMPLE;
            return drawn;
        }
        if (is_stop(tok, cfg, next)) {
            r->stop = FG_STOP_EOS;
            return FG_OK;
        }
        r->n_generated++;
        const char *bytes;
        size_t len;
        piece_of(tok, prev, next, &bytes, &len);
        int matched = 0;
        if (cfg->n_stop_strings > 0) {
            size_t release = 0;
            const fg_status st = stop_text_add(text, bytes, len, &release, &matched);
            if (st != FG_OK) {
                r->failed = FG_GENERATE_DECODE;
                return st;
            }
            bytes = text->buf;
            len = release;
        }
        if (cfg->on_token != NULL && cfg->on_token(cfg->user, next, bytes, len) != 0) {
            r->stop = FG_STOP_CANCELLED;
            return FG_OK;
        }
        if (matched) {
            r->stop = FG_STOP_STRING;
            return FG_OK;
        }
        if (cfg->n_stop_strings > 0) stop_text_consume(text, len);
        prev = next;
        if (r->n_generated == cfg->max_new_tokens) break;
        if (fg_session_len(session) >= fg_session_capacity(session)) {
            r->stop = FG_STOP_CONTEXT_FULL;
            return FG_OK;
        }
        const fg_status st = fg_session_forward(session, &next, 1, NULL);
        if (st != FG_OK) {
            r->failed = FG_GENERATE_DECODE;
            return st;
        }
    }
    r->stop = FG_STOP_MAX_TOKENS;
    return FG_OK;
}

fg_status fg_generate(fg_session *session, const fg_tokenizer *tok, fg_sampler *sampler,
                      const int *prompt, int n_prompt, const fg_generate_config *cfg,
                      fg_generate_result *result)
{
    static const char fn[] = "fg_generate";
    FGI_TRY(check_generate(fn, session, tok, sampler, prompt, n_prompt, cfg, result));
    fg_generate_result r = {.stop = FG_STOP_NONE, .failed = FG_GENERATE_OK, .n_prompt = n_prompt};

    if (cfg->echo_prompt && cfg->on_token != NULL)
        for (int i = 0; i < n_prompt; i++) {
            const char *bytes;
            size_t len;
            piece_of(tok, i > 0 ? prompt[i - 1] : -1, prompt[i], &bytes, &len);
            if (cfg->on_token(cfg->user, prompt[i], bytes, len) != 0) {
                r.stop = FG_STOP_CANCELLED;
                *result = r;
                return FG_OK;
            }
        }

    double t0 = now_seconds();
    fg_status st = fg_session_forward(session, prompt, n_prompt, NULL);
    r.prefill_seconds = now_seconds() - t0;
    if (st != FG_OK) {
        r.failed = FG_GENERATE_PREFILL;
        *result = r;
        return st;
    }
    t0 = now_seconds();
    stop_text text = {.cfg = cfg};
    st = decode(session, tok, sampler, prompt[n_prompt - 1], cfg, &text, &r);
    /* The end of the text: what was held back as a possible stop string
     * is not one. */
    if (st == FG_OK && r.stop != FG_STOP_CANCELLED && r.stop != FG_STOP_STRING &&
        text.held > 0 && cfg->on_token != NULL &&
        cfg->on_token(cfg->user, -1, text.buf, text.held) != 0)
        r.stop = FG_STOP_CANCELLED;
    free(text.buf);
    r.decode_seconds = now_seconds() - t0;
    if (st != FG_OK) r.stop = FG_STOP_NONE;
    *result = r;
    return st;
}

fg_status fg_generate_text(fg_session *session, const fg_config *model_cfg,
                           const fg_tokenizer *tok, fg_sampler *sampler, const char *text,
                           size_t len, const fg_generate_config *cfg,
                           fg_generate_result *result)
{
    static const char fn[] = "fg_generate_text";
    FGI_TRY(fgi_check_ptr(fn, "result", result));
    FGI_TRY(fgi_check_ptr(fn, "session", session));
    FGI_TRY(fgi_check_ptr(fn, "sampler", sampler));
    FGI_TRY(fgi_check_ptr(fn, "cfg", cfg));
    FGI_TRY(fgi_check_ptr(fn, "model_cfg", model_cfg));
    FGI_TRY(fgi_check_ptr(fn, "tok", tok));
    FGI_TRY(fg_config_validate(model_cfg));
    if (len > 0) FGI_TRY(fgi_check_ptr(fn, "text", text));

    /* The arguments are valid: a failure from here on is the text's. */
    fg_generate_result failed = {.stop = FG_STOP_NONE, .failed = FG_GENERATE_ENCODE};
    int n = 0, *ids = NULL;
    fg_status st = fg_prompt_encode(tok, model_cfg, text, len, NULL, 0, &n);
    if (n > 0) st = fgi_alloc(fn, (void **)&ids, (size_t)n, sizeof *ids);
    if (st == FG_OK) st = fg_prompt_encode(tok, model_cfg, text, len, ids, n, &n);
    if (st != FG_OK) {
        free(ids);
        *result = failed;
        return st;
    }
    st = fg_generate(session, tok, sampler, ids, n, cfg, result);
    free(ids);
    return st;
}
