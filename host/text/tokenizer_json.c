/* Hugging Face tokenizer.json (the `tokenizers` library's format): loading
 * with cJSON and encoding / decoding as that library does, for BPE models.
 *
 * Conventions:
 *  - Encoding runs the library's pipeline: added tokens that are not
 *    "normalized" are matched in the raw text (leftmost, then longest; the
 *    lstrip / rstrip / single_word flags as the library applies them; with
 *    FG_ENCODE_SPLIT_SPECIAL the special ones are skipped); each piece
 *    between them is normalized (NFC, Prepend, Replace), searched for the
 *    "normalized" added tokens, pre-tokenized into words (Split with one of
 *    the three known regexes, ByteLevel, Metaspace, Digits) and each word
 *    goes through the BPE model: whole-word lookup when ignore_merges, else
 *    one symbol per character (byte-level: per byte, spelled in GPT-2's
 *    alphabet), unknown characters to <0xNN> byte tokens (byte_fallback) or
 *    the unk token (fused runs with fuse_unk) or dropped, then merges by
 *    rank, lowest first and leftmost on ties, one at a time. Last, the
 *    post-processor's tokens go around the ids (FG_ENCODE_ADD_SPECIAL).
 *  - The regexes are not interpreted: each known pattern is matched by a
 *    hand-written scanner (next_chunk) that follows the regex's
 *    alternatives and backtracking; \p{L}, \p{N} and \s are the generated
 *    tables of unicode.h. Text that is not valid UTF-8 (the library never
 *    sees any) still encodes: an invalid byte is one "other" character.
 *  - Decoding: the decoder chain runs over every token once at load time;
 *    a token's output (and, where Strip / Metaspace treat the start of the
 *    text apart, its output as the first token) is stored, so decode and
 *    fg_tokenizer_piece are lookups. Invalid UTF-8 stays as bytes.
 *  - Limits against hostile files: token ids < vocabulary entries + 65536
 *    (gaps decode to nothing), nesting of Sequence <= 8, at most 64 steps,
 *    Replace / Prepend content <= 8 bytes. */
#include "tokenizer_internal.h"
#include "unicode.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char load_fn[] = "fg_tokenizer_load_json";
static const char encode_fn[] = "fg_tokenizer_encode";

/* MAX_REPLACEMENT bounds what a Replace or Prepend writes (real files
 * write "▁" or " "), so that a file cannot make the text or the decoded
 * vocabulary grow by more than a small factor. */
enum { MAX_STEPS = 64, MAX_DEPTH = 8, MAX_ID_GAP = 65536, MAX_REPLACEMENT = 8 };

/* The three pre-tokenizer regexes, byte for byte as tokenizer.json files
 * write them (after JSON unescaping). */
static const char pattern_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char pattern_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char pattern_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef enum { PAT_GPT2, PAT_LLAMA3, PAT_QWEN2 } pattern_kind;

/* --- growable buffers ------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len, cap;
} sbuf;

static fg_status sbuf_reserve(const char *fn, sbuf *b, size_t extra)
{
    if (b->len + extra <= b->cap) return FG_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return fgi_fail(FG_ERR_OOM, "%s: out of memory (%zu bytes of text)", fn, cap);
    b->data = p;
    b->cap = cap;
    return FG_OK;
}

static fg_status sbuf_add(const char *fn, sbuf *b, const void *p, size_t n)
{
    FGI_TRY(sbuf_reserve(fn, b, n + 1));
    if (n > 0) memcpy(b->data + b->len, p, n);
    b->len += n;
    return FG_OK;
}

typedef struct {
    int *data;
    size_t len, cap;
} ibuf;

static fg_status ibuf_add(const char *fn, ibuf *b, int v)
{
    if (b->len == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        if (b->len >= (size_t)INT_MAX)
            return fgi_fail(FG_ERR_INVALID_ARG, "%s: the text needs more than %d ids", fn,
                           INT_MAX);
        int *p = realloc(b->data, cap * sizeof *p);
        if (p == NULL) return fgi_fail(FG_ERR_OOM, "%s: out of memory (%zu ids)", fn, cap);
        b->data = p;
        b->cap = cap;
    }
    b->data[b->len++] = v;
    return FG_OK;
}

/* --- the pipeline's configuration ----------------------------------------- */

typedef enum { NORM_NFC, NORM_PREPEND, NORM_REPLACE } norm_kind;
typedef struct {
    norm_kind kind;
    char *from, *to; /* Prepend: to; Replace: from -> to (NUL-terminated copies) */
    size_t from_len, to_len;
} norm_step;

typedef enum { PRE_SPLIT, PRE_BYTE_LEVEL, PRE_METASPACE, PRE_DIGITS } pre_kind;
typedef enum { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS } prepend_scheme;
typedef struct {
    pre_kind kind;
    pattern_kind pattern;            /* Split; ByteLevel with use_regex: GPT-2 */
    int use_regex, add_prefix_space; /* ByteLevel */
    prepend_scheme scheme;           /* Metaspace */
    int split;                       /* Metaspace */
    char repl[8];                    /* Metaspace replacement character */
    size_t repl_len;
    int individual_digits; /* Digits */
} pre_step;

typedef struct {
    int id;
    int special, lstrip, rstrip, single_word, normalized;
    char *pattern; /* what is matched: the content, normalized when normalized */
    size_t pattern_len;
} added_token;

struct fgi_json_state {
    norm_step norm[MAX_STEPS];
    int n_norm;
    pre_step pre[MAX_STEPS];
    int n_pre;
    int byte_level; /* a ByteLevel pre-tokenizer: words are spelled per byte */
    added_token *added;
    int n_added;
    int *order; /* added tokens by (first byte, longest pattern first) */
    int first_at[257];
    int byte_fallback, fuse_unk, ignore_merges, unk;
    int fallback_id[256]; /* id of <0xNN>, or -1 */
    ibuf prefix, suffix;  /* post-processor additions */
};

void fgi_json_state_free(fgi_json_state *js)
{
    if (js == NULL) return;
    for (int i = 0; i < js->n_norm; i++) {
        free(js->norm[i].from);
        free(js->norm[i].to);
    }
    for (int i = 0; i < js->n_added; i++) free(js->added[i].pattern);
    free(js->added);
    free(js->order);
    free(js->prefix.data);
    free(js->suffix.data);
    free(js);
}

/* --- messages --------------------------------------------------------------- */

static fg_status fail_v(fg_status st, const char *name, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return fgi_fail(st, "%s: %s: %s", load_fn, name, msg);
}

FGI_PRINTF(2, 3) static fg_status format_error(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fg_status st = fail_v(FG_ERR_FORMAT, name, fmt, ap);
    va_end(ap);
    return st;
}

FGI_PRINTF(2, 3) static fg_status unsupported(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fg_status st = fail_v(FG_ERR_UNSUPPORTED, name, fmt, ap);
    va_end(ap);
    return st;
}

/* Untrusted text for a message. */
#define QUOTED(s) fgi_quote_bytes((char[160]){0}, 160, (s), strlen(s))

/* --- JSON access ------------------------------------------------------------ */

/* obj[key] as a string (NULL when absent or null); a non-string is an error. */
static fg_status get_string(const char *name, const cJSON *obj, const char *where,
                            const char *key, const char **out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (item == NULL || cJSON_IsNull(item)) return FG_OK;
    if (!cJSON_IsString(item))
        return format_error(name, "%s: \"%s\" must be a string", where, key);
    *out = item->valuestring;
    return FG_OK;
}

static fg_status get_bool(const char *name, const cJSON *obj, const char *where,
                          const char *key, int fallback, int *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = fallback;
    if (item == NULL || cJSON_IsNull(item)) return FG_OK;
    if (!cJSON_IsBool(item))
        return format_error(name, "%s: \"%s\" must be true or false", where, key);
    *out = cJSON_IsTrue(item);
    return FG_OK;
}

/* The "type" of a component object. */
static fg_status get_type(const char *name, const cJSON *obj, const char *where,
                          const char **type)
{
    if (!cJSON_IsObject(obj)) return format_error(name, "%s must be an object or null", where);
    FGI_TRY(get_string(name, obj, where, "type", type));
    if (*type == NULL) return format_error(name, "%s has no \"type\"", where);
    return FG_OK;
}

static fg_status dup_string(const char *s, size_t n, char **out)
{
    FGI_TRY(fgi_alloc(load_fn, (void **)out, n + 1, 1));
    memcpy(*out, s, n);
    (*out)[n] = '\0';
    return FG_OK;
}

/* A Replace / Split "pattern": {"String": s} only (a regex is unsupported). */
static fg_status string_pattern(const char *name, const cJSON *obj, const char *where,
                                const char **out)
{
    const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(obj, "pattern");
    if (!cJSON_IsObject(pattern))
        return format_error(name, "%s: \"pattern\" must be an object", where);
    if (cJSON_GetObjectItemCaseSensitive(pattern, "Regex") != NULL)
        return unsupported(name, "%s with a regex pattern", where);
    FGI_TRY(get_string(name, pattern, where, "String", out));
    if (*out == NULL) return format_error(name, "%s: \"pattern\" has no \"String\"", where);
    return FG_OK;
}

/* --- parsing the components ------------------------------------------------- */

static fg_status parse_normalizer(const char *name, fgi_json_state *js, const cJSON *n,
                                  int depth)
{
    if (n == NULL || cJSON_IsNull(n)) return FG_OK;
    const char *type;
    FGI_TRY(get_type(name, n, "normalizer", &type));
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(list))
            return format_error(name, "normalizer Sequence: \"normalizers\" must be an array");
        if (depth >= MAX_DEPTH)
            return unsupported(name, "normalizer Sequences nested deeper than %d", MAX_DEPTH);
        for (const cJSON *c = list->child; c != NULL; c = c->next)
            FGI_TRY(parse_normalizer(name, js, c, depth + 1));
        return FG_OK;
    }
    if (js->n_norm == MAX_STEPS) return unsupported(name, "more than %d normalizers", MAX_STEPS);
    norm_step *step = &js->norm[js->n_norm];
    memset(step, 0, sizeof *step);
    if (strcmp(type, "NFC") == 0) {
        step->kind = NORM_NFC;
    } else if (strcmp(type, "Prepend") == 0) {
        const char *s;
        FGI_TRY(get_string(name, n, "normalizer Prepend", "prepend", &s));
        if (s == NULL) return format_error(name, "normalizer Prepend has no \"prepend\"");
        if (strlen(s) > MAX_REPLACEMENT)
            return unsupported(name, "normalizer Prepend of more than %d bytes", MAX_REPLACEMENT);
        step->kind = NORM_PREPEND;
        step->to_len = strlen(s);
        FGI_TRY(dup_string(s, step->to_len, &step->to));
    } else if (strcmp(type, "Replace") == 0) {
        const char *from, *to;
        FGI_TRY(string_pattern(name, n, "normalizer Replace", &from));
        FGI_TRY(get_string(name, n, "normalizer Replace", "content", &to));
        if (to == NULL) return format_error(name, "normalizer Replace has no \"content\"");
        if (from[0] == '\0') return unsupported(name, "normalizer Replace of an empty string");
        if (strlen(to) > MAX_REPLACEMENT)
            return unsupported(name, "normalizer Replace by more than %d bytes", MAX_REPLACEMENT);
        step->kind = NORM_REPLACE;
        step->from_len = strlen(from);
        step->to_len = strlen(to);
        fg_status st = dup_string(from, step->from_len, &step->from);
        if (st == FG_OK) st = dup_string(to, step->to_len, &step->to);
        if (st != FG_OK) {
            free(step->from);
            step->from = NULL;
            return st;
        }
    } else {
        return unsupported(name, "normalizer type \"%s\"", QUOTED(type));
    }
    js->n_norm++;
    return FG_OK;
}

static fg_status parse_pre_tokenizer(const char *name, fgi_json_state *js, const cJSON *p,
                                     int depth)
{
    if (p == NULL || cJSON_IsNull(p)) return FG_OK;
    const char *type;
    FGI_TRY(get_type(name, p, "pre_tokenizer", &type));
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list))
            return format_error(name, "pre_tokenizer Sequence: \"pretokenizers\" must be an array");
        if (depth >= MAX_DEPTH)
            return unsupported(name, "pre_tokenizer Sequences nested deeper than %d", MAX_DEPTH);
        for (const cJSON *c = list->child; c != NULL; c = c->next)
            FGI_TRY(parse_pre_tokenizer(name, js, c, depth + 1));
        return FG_OK;
    }
    if (js->n_pre == MAX_STEPS) return unsupported(name, "more than %d pre-tokenizers", MAX_STEPS);
    if (js->byte_level)
        return unsupported(name, "pre-tokenizer \"%s\" after ByteLevel (ByteLevel must come last)",
                           QUOTED(type));
    pre_step *step = &js->pre[js->n_pre];
    memset(step, 0, sizeof *step);
    if (strcmp(type, "ByteLevel") == 0) {
        step->kind = PRE_BYTE_LEVEL;
        step->pattern = PAT_GPT2;
        FGI_TRY(get_bool(name, p, "pre_tokenizer ByteLevel", "add_prefix_space", 1,
                         &step->add_prefix_space));
        FGI_TRY(get_bool(name, p, "pre_tokenizer ByteLevel", "use_regex", 1, &step->use_regex));
        js->byte_level = 1;
    } else if (strcmp(type, "Split") == 0) {
        const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const char *regex = NULL, *behavior = NULL;
        int invert = 0;
        if (!cJSON_IsObject(pattern))
            return format_error(name, "pre_tokenizer Split: \"pattern\" must be an object");
        FGI_TRY(get_string(name, pattern, "pre_tokenizer Split pattern", "Regex", &regex));
        if (regex == NULL)
            return unsupported(name, "pre_tokenizer Split without a \"Regex\" pattern");
        FGI_TRY(get_string(name, p, "pre_tokenizer Split", "behavior", &behavior));
        FGI_TRY(get_bool(name, p, "pre_tokenizer Split", "invert", 0, &invert));
        if (behavior == NULL || strcmp(behavior, "Isolated") != 0)
            return unsupported(name, "pre_tokenizer Split behavior \"%s\" (only Isolated)",
                               behavior ? QUOTED(behavior) : "(none)");
        if (invert) return unsupported(name, "pre_tokenizer Split with invert true");
        step->kind = PRE_SPLIT;
        if (strcmp(regex, pattern_gpt2) == 0) step->pattern = PAT_GPT2;
        else if (strcmp(regex, pattern_llama3) == 0) step->pattern = PAT_LLAMA3;
        else if (strcmp(regex, pattern_qwen2) == 0) step->pattern = PAT_QWEN2;
        else
            return unsupported(name,
                               "pre_tokenizer Split regex \"%s\" (known: the GPT-2, Llama 3 and "
                               "Qwen2 patterns)",
                               QUOTED(regex));
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *repl = NULL, *scheme = NULL;
        FGI_TRY(get_string(name, p, "pre_tokenizer Metaspace", "replacement", &repl));
        FGI_TRY(get_string(name, p, "pre_tokenizer Metaspace", "prepend_scheme", &scheme));
        FGI_TRY(get_bool(name, p, "pre_tokenizer Metaspace", "split", 1, &step->split));
        uint32_t cp;
        size_t n = repl ? strlen(repl) : 0;
        if (n == 0 || fgi_utf8_sequence((const unsigned char *)repl, n, &cp) != n)
            return format_error(name,
                                "pre_tokenizer Metaspace: \"replacement\" must be one character");
        step->kind = PRE_METASPACE;
        memcpy(step->repl, repl, n);
        step->repl_len = n;
        if (scheme == NULL) { /* older files: add_prefix_space */
            int add = 1;
            FGI_TRY(get_bool(name, p, "pre_tokenizer Metaspace", "add_prefix_space", 1, &add));
            step->scheme = add ? PREPEND_ALWAYS : PREPEND_NEVER;
        } else if (strcmp(scheme, "first") == 0) step->scheme = PREPEND_FIRST;
        else if (strcmp(scheme, "always") == 0) step->scheme = PREPEND_ALWAYS;
        else if (strcmp(scheme, "never") == 0) step->scheme = PREPEND_NEVER;
        else
            return format_error(name, "pre_tokenizer Metaspace: unknown prepend_scheme \"%s\"",
                                QUOTED(scheme));
    } else if (strcmp(type, "Digits") == 0) {
        step->kind = PRE_DIGITS;
        FGI_TRY(get_bool(name, p, "pre_tokenizer Digits", "individual_digits", 0,
                         &step->individual_digits));
    } else {
        return unsupported(name, "pre_tokenizer type \"%s\"", QUOTED(type));
    }
    js->n_pre++;
    return FG_OK;
}

/* Decoder steps are applied at load time (build_outputs). */
typedef enum {
    DEC_BYTE_LEVEL,
    DEC_REPLACE,
    DEC_BYTE_FALLBACK,
    DEC_FUSE,
    DEC_STRIP,
    DEC_METASPACE
} dec_kind;
typedef struct {
    dec_kind kind;
    const char *from, *to; /* Replace; Strip: from = content; Metaspace: from = replacement */
    size_t from_len, to_len;
    int start, stop;  /* Strip */
    int fused;        /* the tokens were joined before this step */
    int strip_first;  /* Metaspace: the first token loses its replacement characters */
} dec_step;

typedef struct {
    dec_step step[MAX_STEPS];
    int n;
    int fused;
} dec_chain;

static fg_status parse_decoder(const char *name, dec_chain *d, const cJSON *j, int depth)
{
    if (j == NULL || cJSON_IsNull(j)) return FG_OK;
    const char *type;
    FGI_TRY(get_type(name, j, "decoder", &type));
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "decoders");
        if (!cJSON_IsArray(list))
            return format_error(name, "decoder Sequence: \"decoders\" must be an array");
        if (depth >= MAX_DEPTH)
            return unsupported(name, "decoder Sequences nested deeper than %d", MAX_DEPTH);
        for (const cJSON *c = list->child; c != NULL; c = c->next)
            FGI_TRY(parse_decoder(name, d, c, depth + 1));
        return FG_OK;
    }
    if (d->n == MAX_STEPS) return unsupported(name, "more than %d decoders", MAX_STEPS);
    dec_step *s = &d->step[d->n];
    memset(s, 0, sizeof *s);
    s->fused = d->fused;
    if (strcmp(type, "ByteLevel") == 0) {
        s->kind = DEC_BYTE_LEVEL;
        d->fused = 1; /* it returns the joined text */
    } else if (strcmp(type, "Replace") == 0) {
        s->kind = DEC_REPLACE;
        FGI_TRY(string_pattern(name, j, "decoder Replace", &s->from));
        FGI_TRY(get_string(name, j, "decoder Replace", "content", &s->to));
        if (s->to == NULL) return format_error(name, "decoder Replace has no \"content\"");
        if (s->from[0] == '\0') return unsupported(name, "decoder Replace of an empty string");
        if (strlen(s->to) > MAX_REPLACEMENT)
            return unsupported(name, "decoder Replace by more than %d bytes", MAX_REPLACEMENT);
        s->from_len = strlen(s->from);
        s->to_len = strlen(s->to);
        if (s->fused && s->from_len > 1)
            return unsupported(name, "decoder Replace of a multi-byte pattern after Fuse");
    } else if (strcmp(type, "ByteFallback") == 0) {
        s->kind = DEC_BYTE_FALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        s->kind = DEC_FUSE;
        d->fused = 1;
    } else if (strcmp(type, "Strip") == 0) {
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(j, "start");
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(j, "stop");
        uint32_t cp;
        s->kind = DEC_STRIP;
        FGI_TRY(get_string(name, j, "decoder Strip", "content", &s->from));
        if (s->from == NULL || s->from[0] == '\0' ||
            fgi_utf8_sequence((const unsigned char *)s->from, strlen(s->from), &cp) !=
                strlen(s->from))
            return format_error(name, "decoder Strip: \"content\" must be one character");
        s->from_len = strlen(s->from);
        if (!cJSON_IsNumber(start) || !cJSON_IsNumber(stop) || start->valuedouble < 0 ||
            stop->valuedouble < 0 || start->valuedouble > 1e6 || stop->valuedouble > 1e6)
            return format_error(name, "decoder Strip: \"start\" and \"stop\" must be counts");
        s->start = (int)start->valuedouble;
        s->stop = (int)stop->valuedouble;
        if (s->fused && s->stop > 0)
            return unsupported(name, "decoder Strip of the end of the text (stop %d) after Fuse",
                               s->stop);
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *repl = NULL, *scheme = NULL;
        int add = 1;
        s->kind = DEC_METASPACE;
        FGI_TRY(get_string(name, j, "decoder Metaspace", "replacement", &s->from));
        FGI_TRY(get_string(name, j, "decoder Metaspace", "prepend_scheme", &scheme));
        FGI_TRY(get_bool(name, j, "decoder Metaspace", "add_prefix_space", 1, &add));
        repl = s->from;
        uint32_t cp;
        if (repl == NULL || repl[0] == '\0' ||
            fgi_utf8_sequence((const unsigned char *)repl, strlen(repl), &cp) != strlen(repl))
            return format_error(name, "decoder Metaspace: \"replacement\" must be one character");
        s->from_len = strlen(repl);
        s->strip_first = scheme ? strcmp(scheme, "never") != 0 : add;
        if (s->fused) return unsupported(name, "decoder Metaspace after Fuse");
    } else {
        return unsupported(name, "decoder type \"%s\"", QUOTED(type));
    }
    d->n++;
    return FG_OK;
}

/* --- the vocabulary ---------------------------------------------------------- */

/* Reads an id: an integer in [0, limit). */
static fg_status read_id(const char *name, const cJSON *item, const char *what, int limit,
                         int *id)
{
    if (!cJSON_IsNumber(item)) return format_error(name, "%s: an id is not a number", what);
    double v = item->valuedouble;
    if (!(v >= 0.0 && v < (double)limit) || v != (double)(int)v)
        return format_error(name,
                            "%s: id %.17g is not an integer in [0, %d) (the number of tokens "
                            "+ %d)",
                            what, v, limit, MAX_ID_GAP);
    *id = (int)v;
    return FG_OK;
}

typedef struct {
    const char **spelling; /* per id: the model's or the added token's string, or NULL */
    int *from_model;       /* per id: 1 when the model vocabulary holds it */
} id_table;

static fg_status build_vocab(const char *name, fg_tokenizer **out, const cJSON *vocab,
                             const cJSON *added)
{
    const int n_model = cJSON_GetArraySize(vocab);
    const int n_added = added ? cJSON_GetArraySize(added) : 0;
    if (n_model < 1) return format_error(name, "model.vocab is empty");
    if (n_model > INT_MAX / 4 || n_added > INT_MAX / 4)
        return format_error(name, "too many tokens (%d + %d)", n_model, n_added);
    const int limit = n_model + n_added + MAX_ID_GAP;

    /* Largest id first, so that the tables can be sized. */
    int max_id = -1, id = -1;
    for (const cJSON *e = vocab->child; e != NULL; e = e->next) {
        FGI_TRY(read_id(name, e, "model.vocab", limit, &id));
        if (id > max_id) max_id = id;
    }
    for (const cJSON *e = added ? added->child : NULL; e != NULL; e = e->next) {
        if (!cJSON_IsObject(e))
            return format_error(name, "added_tokens: each entry must be an object");
        FGI_TRY(read_id(name, cJSON_GetObjectItemCaseSensitive(e, "id"), "added_tokens", limit,
                        &id));
        if (id > max_id) max_id = id;
    }
    const int n = max_id + 1;
    id_table ids = {NULL, NULL};
    fg_tokenizer *t = NULL;
    fg_status st = fgi_alloc(load_fn, (void **)&ids.spelling, (size_t)n, sizeof *ids.spelling);
    if (st == FG_OK) st = fgi_alloc(load_fn, (void **)&ids.from_model, (size_t)n, sizeof(int));
    if (st == FG_OK) st = fgi_tokenizer_new(load_fn, &t, FGI_TOKENIZER_JSON, n);
    for (const cJSON *e = vocab->child; st == FG_OK && e != NULL; e = e->next) {
        id = (int)e->valuedouble;
        if (e->string == NULL || e->string[0] == '\0')
            st = format_error(name, "model.vocab: token %d has an empty spelling", id);
        else if (ids.spelling[id] != NULL)
            st = format_error(name, "model.vocab: id %d is given to \"%s\" and \"%s\"", id,
                              QUOTED(ids.spelling[id]), QUOTED(e->string));
        else {
            ids.spelling[id] = e->string;
            ids.from_model[id] = 1;
        }
    }
    for (const cJSON *e = added ? added->child : NULL; st == FG_OK && e != NULL; e = e->next) {
        const char *content = NULL;
        st = get_string(name, e, "added_tokens", "content", &content);
        id = (int)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        if (st != FG_OK) break;
        if (content == NULL || content[0] == '\0')
            st = format_error(name, "added_tokens: token %d has no content", id);
        else if (ids.spelling[id] != NULL &&
                 (!ids.from_model[id] || strcmp(ids.spelling[id], content) != 0))
            st = format_error(name, "added_tokens: id %d is \"%s\" but also \"%s\"", id,
                              QUOTED(content), QUOTED(ids.spelling[id]));
        else
            ids.spelling[id] = content;
    }
    size_t total = 0;
    for (int i = 0; st == FG_OK && i < n; i++) {
        size_t len = ids.spelling[i] ? strlen(ids.spelling[i]) : 0;
        if (len > total + len) st = format_error(name, "the tokens are too long");
        total += len;
    }
    if (st == FG_OK) st = fgi_alloc(load_fn, (void **)&t->spelling, total + 1, 1);
    if (st == FG_OK) {
        size_t at = 0;
        for (int i = 0; i < n; i++) {
            size_t len = ids.spelling[i] ? strlen(ids.spelling[i]) : 0;
            if (len > 0) memcpy(t->spelling + at, ids.spelling[i], len);
            t->spelling_at[i] = at;
            at += len;
            if (len > t->max_spelling) t->max_spelling = len;
        }
        t->spelling_at[n] = at;
    }
    /* Only the model's tokens are found by spelling: added tokens are
     * matched before the model runs. */
    if (st == FG_OK) st = fgi_string_map_init(load_fn, &t->lookup, (size_t)n_model);
    for (int i = 0; st == FG_OK && i < n; i++) {
        if (!ids.from_model[i]) continue;
        int other = fgi_string_map_insert(&t->lookup, t, i);
        if (other >= 0)
            st = format_error(name, "model.vocab: \"%s\" is given twice (ids %d and %d)",
                              QUOTED(ids.spelling[i]), other, i);
    }
    free(ids.spelling);
    free(ids.from_model);
    if (st != FG_OK) {
        fg_tokenizer_destroy(t);
        return st;
    }
    *out = t;
    return FG_OK;
}

/* --- merges ------------------------------------------------------------------ */

static fgi_merge_slot *merge_slot(const fg_tokenizer *tok, int left, int right)
{
    const int32_t pair[2] = {left, right};
    size_t i = (size_t)fgi_hash_bytes(&tok->merges_key, pair, sizeof pair) & tok->merges_mask;
    while (tok->merges[i].left >= 0 &&
           (tok->merges[i].left != left || tok->merges[i].right != right))
        i = (i + 1) & tok->merges_mask;
    return &tok->merges[i];
}

static fg_status merge_not_in_vocab(const char *name, int rank, const char *what, const char *a,
                                    size_t a_len, const char *b, size_t b_len)
{
    char qa[128], qb[128];
    return format_error(name, "model.merges[%d]: %s \"%s%s\" is not in the vocabulary", rank,
                        what, fgi_quote_bytes(qa, sizeof qa, a, a_len),
                        fgi_quote_bytes(qb, sizeof qb, b, b_len));
}

/* A merge "a b" (one space) or ["a", "b"]. A pair merged twice keeps the
 * later rank, as the library's merge map does. */
static fg_status add_merge(const char *name, fg_tokenizer *t, const cJSON *m, int rank,
                           char *scratch)
{
    const char *a, *b;
    size_t a_len, b_len;
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *space = strchr(s, ' ');
        if (space == NULL || space == s || space[1] == '\0' || strchr(space + 1, ' ') != NULL)
            return format_error(name, "model.merges[%d]: expected \"left right\", got \"%s\"",
                                rank, QUOTED(s));
        a = s, a_len = (size_t)(space - s), b = space + 1, b_len = strlen(b);
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
               cJSON_IsString(m->child->next)) {
        a = m->child->valuestring, a_len = strlen(a);
        b = m->child->next->valuestring, b_len = strlen(b);
    } else {
        return format_error(name, "model.merges[%d]: expected a string or a pair of strings", rank);
    }
    int left = fgi_string_map_find(&t->lookup, t, a, a_len);
    if (left < 0) return merge_not_in_vocab(name, rank, "token", a, a_len, "", 0);
    int right = fgi_string_map_find(&t->lookup, t, b, b_len);
    if (right < 0) return merge_not_in_vocab(name, rank, "token", b, b_len, "", 0);
    int merged = -1;
    if (a_len + b_len <= t->max_spelling) {
        memcpy(scratch, a, a_len);
        memcpy(scratch + a_len, b, b_len);
        merged = fgi_string_map_find(&t->lookup, t, scratch, a_len + b_len);
    }
    if (merged < 0) return merge_not_in_vocab(name, rank, "the merged token", a, a_len, b, b_len);
    fgi_merge_slot *slot = merge_slot(t, left, right);
    *slot = (fgi_merge_slot){left, right, rank, merged};
    return FG_OK;
}

static fg_status parse_merges(const char *name, fg_tokenizer *t, const cJSON *merges)
{
    const int n = merges ? cJSON_GetArraySize(merges) : 0;
    size_t capacity = 16;
    while (capacity < 2 * (size_t)n) capacity *= 2;
    FGI_TRY(fgi_alloc(load_fn, (void **)&t->merges, capacity, sizeof *t->merges));
    for (size_t i = 0; i < capacity; i++) t->merges[i].left = -1;
    t->merges_mask = capacity - 1;
    t->merges_key = fgi_hash_key_random();
    char *scratch = NULL;
    FGI_TRY(fgi_alloc(load_fn, (void **)&scratch, t->max_spelling + 1, 1));
    fg_status st = FG_OK;
    int rank = 0;
    for (const cJSON *m = merges ? merges->child : NULL; m != NULL && st == FG_OK; m = m->next)
        st = add_merge(name, t, m, rank++, scratch);
    free(scratch);
    return st;
}

/* --- the model and added tokens ------------------------------------------- */

static fg_status parse_model(const char *name, fg_tokenizer *t, const cJSON *model)
{
    fgi_json_state *js = t->json;
    const char *unk = NULL, *s = NULL;
    FGI_TRY(get_bool(name, model, "model", "byte_fallback", 0, &js->byte_fallback));
    FGI_TRY(get_bool(name, model, "model", "fuse_unk", 0, &js->fuse_unk));
    FGI_TRY(get_bool(name, model, "model", "ignore_merges", 0, &js->ignore_merges));
    FGI_TRY(get_string(name, model, "model", "unk_token", &unk));
    FGI_TRY(get_string(name, model, "model", "continuing_subword_prefix", &s));
    if (s != NULL && s[0] != '\0') return unsupported(name, "model.continuing_subword_prefix");
    FGI_TRY(get_string(name, model, "model", "end_of_word_suffix", &s));
    if (s != NULL && s[0] != '\0') return unsupported(name, "model.end_of_word_suffix");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout != NULL && !cJSON_IsNull(dropout) &&
        !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return unsupported(name, "model.dropout (random merges)");
    js->unk = -1;
    if (unk != NULL) {
        js->unk = fgi_string_map_find(&t->lookup, t, unk, strlen(unk));
        if (js->unk < 0)
            return format_error(name, "model.unk_token \"%s\" is not in the vocabulary",
                                QUOTED(unk));
    }
    for (int b = 0; b < 256; b++) {
        char spelled[8];
        snprintf(spelled, sizeof spelled, "<0x%02X>", (unsigned)b);
        js->fallback_id[b] = fgi_string_map_find(&t->lookup, t, spelled, 6);
    }
    return parse_merges(name, t, cJSON_GetObjectItemCaseSensitive(model, "merges"));
}

/* Normalizes s[0 .. n) into *out (see normalize_piece below). */
static fg_status normalize(const char *fn, const fgi_json_state *js, const char *s, size_t n,
                           sbuf *out);

static int cmp_added(const void *pa, const void *pb, const fgi_json_state *js)
{
    const added_token *a = &js->added[*(const int *)pa], *b = &js->added[*(const int *)pb];
    unsigned char fa = (unsigned char)a->pattern[0], fb = (unsigned char)b->pattern[0];
    if (fa != fb) return fa < fb ? -1 : 1;
    if (a->pattern_len != b->pattern_len) return a->pattern_len > b->pattern_len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static fg_status read_added(const char *name, fg_tokenizer *t, const cJSON *added,
                            fgi_string_map *seen);

/* Reads the added tokens; a map of their spellings finds one given twice
 * (a file may list very many: no pairwise comparison). */
static fg_status parse_added(const char *name, fg_tokenizer *t, const cJSON *added)
{
    const int n = added ? cJSON_GetArraySize(added) : 0;
    if (n == 0) return FG_OK;
    fgi_string_map seen = {0};
    FGI_TRY(fgi_string_map_init(load_fn, &seen, (size_t)n));
    fg_status st = read_added(name, t, added, &seen);
    free(seen.slots);
    return st;
}

static fg_status read_added(const char *name, fg_tokenizer *t, const cJSON *added,
                            fgi_string_map *seen)
{
    fgi_json_state *js = t->json;
    const int n = added ? cJSON_GetArraySize(added) : 0;
    if (n == 0) return FG_OK;
    FGI_TRY(fgi_alloc(load_fn, (void **)&js->added, (size_t)n, sizeof *js->added));
    FGI_TRY(fgi_alloc(load_fn, (void **)&js->order, (size_t)n, sizeof *js->order));
    for (const cJSON *e = added->child; e != NULL; e = e->next) {
        added_token *a = &js->added[js->n_added];
        a->id = (int)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        FGI_TRY(get_bool(name, e, "added_tokens", "special", 0, &a->special));
        FGI_TRY(get_bool(name, e, "added_tokens", "lstrip", 0, &a->lstrip));
        FGI_TRY(get_bool(name, e, "added_tokens", "rstrip", 0, &a->rstrip));
        FGI_TRY(get_bool(name, e, "added_tokens", "single_word", 0, &a->single_word));
        FGI_TRY(get_bool(name, e, "added_tokens", "normalized", !a->special, &a->normalized));
        const char *content = t->spelling + t->spelling_at[a->id];
        size_t len = fgi_spelling_len(t, a->id);
        int other = fgi_string_map_insert(seen, t, a->id);
        if (other >= 0)
            return format_error(name, "added_tokens: \"%s\" is given twice (ids %d and %d)",
                                fgi_quote_bytes((char[160]){0}, 160, content, len), other, a->id);
        if (a->normalized && js->n_norm > 0) {
            sbuf b = {0};
            fg_status st = normalize(load_fn, js, content, len, &b);
            if (st == FG_OK && b.len == 0)
                st = format_error(name, "added_tokens: token %d normalizes to nothing", a->id);
            if (st != FG_OK) {
                free(b.data);
                return st;
            }
            a->pattern = b.data;
            a->pattern_len = b.len;
        } else {
            FGI_TRY(dup_string(content, len, &a->pattern));
            a->pattern_len = len;
        }
        js->order[js->n_added] = js->n_added;
        js->n_added++;
    }
    /* insertion sort: added-token lists are short */
    for (int i = 1; i < js->n_added; i++) {
        int v = js->order[i], j = i;
        while (j > 0 && cmp_added(&js->order[j - 1], &v, js) > 0) {
            js->order[j] = js->order[j - 1];
            j--;
        }
        js->order[j] = v;
    }
    for (int b = 0, i = 0; b <= 256; b++) {
        while (i < js->n_added && (unsigned char)js->added[js->order[i]].pattern[0] < b) i++;
        js->first_at[b] = i;
    }
    return FG_OK;
}

/* --- post-processor ---------------------------------------------------------- */

/* A special token of a template: special_tokens[name].ids. */
static fg_status template_ids(const char *name, const fg_tokenizer *t, const cJSON *specials,
                              const char *key, ibuf *to)
{
    const cJSON *entry = cJSON_GetObjectItemCaseSensitive(specials, key);
    const cJSON *ids = entry ? cJSON_GetObjectItemCaseSensitive(entry, "ids") : NULL;
    if (!cJSON_IsArray(ids))
        return format_error(name, "post_processor: special token \"%s\" has no \"ids\" list",
                            QUOTED(key));
    for (const cJSON *i = ids->child; i != NULL; i = i->next) {
        int id = -1;
        FGI_TRY(read_id(name, i, "post_processor special_tokens", t->vocab_size, &id));
        FGI_TRY(ibuf_add(load_fn, to, id));
    }
    return FG_OK;
}

/* A [token, id] pair of RobertaProcessing / BertProcessing. */
static fg_status pair_id(const char *name, const fg_tokenizer *t, const cJSON *p,
                         const char *key, ibuf *to)
{
    const cJSON *pair = cJSON_GetObjectItemCaseSensitive(p, key);
    if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2)
        return format_error(name, "post_processor: \"%s\" must be [token, id]", key);
    int id = -1;
    FGI_TRY(read_id(name, pair->child->next, "post_processor", t->vocab_size, &id));
    return ibuf_add(load_fn, to, id);
}

static fg_status parse_post(const char *name, fg_tokenizer *t, const cJSON *p, int depth)
{
    fgi_json_state *js = t->json;
    if (p == NULL || cJSON_IsNull(p)) return FG_OK;
    const char *type;
    FGI_TRY(get_type(name, p, "post_processor", &type));
    ibuf pre = {0}, post = {0};
    fg_status st = FG_OK;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "processors");
        if (!cJSON_IsArray(list))
            return format_error(name, "post_processor Sequence: \"processors\" must be an array");
        if (depth >= MAX_DEPTH)
            return unsupported(name, "post_processor Sequences nested deeper than %d", MAX_DEPTH);
        for (const cJSON *c = list->child; c != NULL; c = c->next)
            FGI_TRY(parse_post(name, t, c, depth + 1));
        return FG_OK;
    } else if (strcmp(type, "ByteLevel") == 0) {
        return FG_OK; /* offsets only */
    } else if (strcmp(type, "TemplateProcessing") == 0) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
        if (!cJSON_IsArray(single) || !cJSON_IsObject(specials))
            return format_error(
                name, "post_processor TemplateProcessing needs \"single\" and \"special_tokens\"");
        int sequences = 0;
        for (const cJSON *e = single->child; e != NULL && st == FG_OK; e = e->next) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
            const cJSON *seq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
            const char *id = NULL;
            if (sp != NULL) {
                st = get_string(name, sp, "post_processor SpecialToken", "id", &id);
                if (st == FG_OK && id == NULL)
                    st = format_error(name, "post_processor: a SpecialToken has no \"id\"");
                if (st == FG_OK) st = template_ids(name, t, specials, id, sequences ? &post : &pre);
            } else if (seq != NULL) {
                st = get_string(name, seq, "post_processor Sequence", "id", &id);
                if (st == FG_OK && (id == NULL || strcmp(id, "A") != 0))
                    st = unsupported(
                        name, "post_processor: a single template with a sequence other than A");
                sequences++;
            } else {
                st = format_error(
                    name, "post_processor: a template piece is neither SpecialToken nor Sequence");
            }
        }
        if (st == FG_OK && sequences != 1)
            st = format_error(
                name, "post_processor: the single template must hold $A once (got %d)", sequences);
    } else if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
        st = pair_id(name, t, p, "cls", &pre);
        if (st == FG_OK) st = pair_id(name, t, p, "sep", &post);
    } else {
        return unsupported(name, "post_processor type \"%s\"", QUOTED(type));
    }
    /* This processor wraps what the earlier ones made. */
    for (size_t i = 0; st == FG_OK && i < js->prefix.len; i++)
        st = ibuf_add(load_fn, &pre, js->prefix.data[i]);
    for (size_t i = 0; st == FG_OK && i < post.len; i++)
        st = ibuf_add(load_fn, &js->suffix, post.data[i]);
    if (st == FG_OK) {
        free(js->prefix.data);
        js->prefix = pre;
        pre.data = NULL;
    }
    free(pre.data);
    free(post.data);
    return st;
}

/* --- decoding: the outputs of every token ---------------------------------- */

/* Runs the decoder chain over one token into out; first: as the text's
 * first token. */
static fg_status decode_token(const dec_chain *d, const int alphabet[], const char *s,
                              size_t n, int first, sbuf *out)
{
    sbuf cur = {0}, next = {0};
    fg_status st = sbuf_add(load_fn, &cur, s, n);
    for (int k = 0; k < d->n && st == FG_OK; k++) {
        const dec_step *step = &d->step[k];
        next.len = 0;
        const unsigned char *c = (const unsigned char *)cur.data;
        switch (step->kind) {
        case DEC_BYTE_LEVEL: {
            /* every character in the alphabet: its bytes; else unchanged */
            int all = 1;
            uint32_t cp;
            for (size_t i = 0, m; i < cur.len && all; i += m) {
                m = fgi_utf8_sequence(c + i, cur.len - i, &cp);
                all = m > 0 && cp < 512 && alphabet[cp] >= 0;
                if (m == 0) m = 1;
            }
            if (!all) continue;
            for (size_t i = 0, m; i < cur.len && st == FG_OK; i += m) {
                m = fgi_utf8_sequence(c + i, cur.len - i, &cp);
                char b = (char)alphabet[cp];
                st = sbuf_add(load_fn, &next, &b, 1);
            }
            break;
        }
        case DEC_REPLACE:
            for (size_t i = 0; i < cur.len && st == FG_OK;) {
                if (cur.len - i >= step->from_len &&
                    memcmp(c + i, step->from, step->from_len) == 0) {
                    st = sbuf_add(load_fn, &next, step->to, step->to_len);
                    i += step->from_len;
                } else {
                    st = sbuf_add(load_fn, &next, c + i, 1);
                    i++;
                }
            }
            break;
        case DEC_BYTE_FALLBACK: {
            static const char hex[] = "0123456789abcdefABCDEF";
            if (cur.len == 6 && memcmp(c, "<0x", 3) == 0 && c[5] == '>' && c[3] != '\0' &&
                c[4] != '\0' && strchr(hex, c[3]) && strchr(hex, c[4])) {
                char b = (char)strtol((const char[3]){(char)c[3], (char)c[4], 0}, NULL, 16);
                st = sbuf_add(load_fn, &next, &b, 1);
            } else {
                continue;
            }
            break;
        }
        case DEC_FUSE: continue;
        case DEC_STRIP: {
            if (step->fused && !first) continue;
            size_t from = 0, to = cur.len;
            for (int i = 0; i < step->start && to - from >= step->from_len &&
                            memcmp(c + from, step->from, step->from_len) == 0;
                 i++)
                from += step->from_len;
            for (int i = 0; i < step->stop && to - from >= step->from_len &&
                            memcmp(c + to - step->from_len, step->from, step->from_len) == 0;
                 i++)
                to -= step->from_len;
            st = sbuf_add(load_fn, &next, c + from, to - from);
            break;
        }
        case DEC_METASPACE:
            for (size_t i = 0; i < cur.len && st == FG_OK;) {
                if (cur.len - i >= step->from_len &&
                    memcmp(c + i, step->from, step->from_len) == 0) {
                    if (!(first && step->strip_first)) st = sbuf_add(load_fn, &next, " ", 1);
                    i += step->from_len;
                } else {
                    st = sbuf_add(load_fn, &next, c + i, 1);
                    i++;
                }
            }
            break;
        }
        if (st != FG_OK) break;
        sbuf swap = cur;
        cur = next;
        next = swap;
    }
    if (st == FG_OK) st = sbuf_add(load_fn, out, cur.data, cur.len);
    free(cur.data);
    free(next.data);
    return st;
}

static fg_status build_outputs(const char *name, fg_tokenizer *t, const cJSON *decoder)
{
    dec_chain d;
    memset(&d, 0, sizeof d);
    FGI_TRY(parse_decoder(name, &d, decoder, 0));
    int alphabet[512];
    for (int i = 0; i < 512; i++) alphabet[i] = -1;
    for (int b = 0; b < 256; b++) alphabet[fgi_byte_to_codepoint(b)] = b;
    int has_first = 0;
    for (int k = 0; k < d.n; k++)
        has_first |= (d.step[k].kind == DEC_STRIP && d.step[k].fused && d.step[k].start > 0) ||
                     (d.step[k].kind == DEC_METASPACE && d.step[k].strip_first);
    sbuf normal = {0}, first = {0};
    fg_status st = FG_OK;
    if (has_first)
        st = fgi_alloc(load_fn, (void **)&t->first_output_at, (size_t)t->vocab_size + 1,
                       sizeof(size_t));
    /* A normalized added token is decoded from its normalized content, as
     * the library's id_to_token gives it (Llama's "foo bar" is "▁foo▁bar"). */
    const fgi_json_state *js = t->json;
    int *normalized = NULL;
    if (st == FG_OK && js->n_norm > 0 && js->n_added > 0) {
        st = fgi_alloc(load_fn, (void **)&normalized, (size_t)t->vocab_size, sizeof(int));
        for (int id = 0; st == FG_OK && id < t->vocab_size; id++) normalized[id] = -1;
        for (int k = 0; st == FG_OK && k < js->n_added; k++)
            if (js->added[k].normalized) normalized[js->added[k].id] = k;
    }
    for (int id = 0; id < t->vocab_size && st == FG_OK; id++) {
        const char *s = t->spelling + t->spelling_at[id];
        size_t n = fgi_spelling_len(t, id);
        if (normalized != NULL && normalized[id] >= 0) {
            s = js->added[normalized[id]].pattern;
            n = js->added[normalized[id]].pattern_len;
        }
        t->output_at[id] = normal.len;
        if (n > 0) st = decode_token(&d, alphabet, s, n, 0, &normal);
        if (st == FG_OK && has_first) {
            t->first_output_at[id] = first.len;
            if (n > 0) st = decode_token(&d, alphabet, s, n, 1, &first);
        }
    }
    if (st == FG_OK) {
        t->output_at[t->vocab_size] = normal.len;
        if (has_first) t->first_output_at[t->vocab_size] = first.len;
        /* never NULL, also for an all-empty vocabulary */
        st = sbuf_reserve(load_fn, &normal, 1);
        if (st == FG_OK && has_first) st = sbuf_reserve(load_fn, &first, 1);
    }
    free(normalized);
    t->output = normal.data;
    t->first_output = first.data;
    if (!has_first) free(first.data), t->first_output = NULL;
    return st;
}

/* --- BOS / EOS ------------------------------------------------------------- */

/* The id of an added token, or -1. */
static int added_id(const fg_tokenizer *t, const char *s, size_t n)
{
    for (int k = 0; k < t->json->n_added; k++) {
        int a = t->json->added[k].id;
        if (fgi_spelling_len(t, a) == n && memcmp(t->spelling + t->spelling_at[a], s, n) == 0)
            return a;
    }
    return -1;
}

/* tokenizer_config.json's bos_token / eos_token: a string or {"content": s}. */
static fg_status config_token(const char *name, const fg_tokenizer *t, const cJSON *config,
                              const char *key, int *id)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(config, key);
    if (cJSON_IsObject(item)) item = cJSON_GetObjectItemCaseSensitive(item, "content");
    if (item == NULL || cJSON_IsNull(item)) return FG_OK;
    if (!cJSON_IsString(item))
        return format_error(name, "tokenizer_config.json: \"%s\" must be a string", key);
    const char *s = item->valuestring;
    size_t n = strlen(s);
    /* added tokens first, then the model's vocabulary */
    int found = added_id(t, s, n);
    if (found < 0) found = fgi_string_map_find(&t->lookup, t, s, n);
    if (found < 0)
        return format_error(name, "tokenizer_config.json: %s \"%s\" is not a token", key,
                            QUOTED(s));
    *id = found;
    return FG_OK;
}

static fg_status parse_config(const char *name, fg_tokenizer *t, const char *json, size_t len)
{
    t->bos = t->json->prefix.len > 0 ? t->json->prefix.data[0] : -1;
    t->eos = t->json->suffix.len > 0 ? t->json->suffix.data[t->json->suffix.len - 1] : -1;
    /* GPT-2's files name neither (its tokenizer_config.json holds only
     * model_max_length): <|endoftext|> is both, as with vocab.json. */
    static const char eot[] = "<|endoftext|>";
    if (t->bos < 0 && t->eos < 0 && json == NULL)
        t->bos = t->eos = added_id(t, eot, sizeof eot - 1);
    if (json == NULL) return FG_OK;
    cJSON *config = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(config)) {
        cJSON_Delete(config);
        return format_error(name, "tokenizer_config.json is not a JSON object");
    }
    fg_status st = config_token(name, t, config, "bos_token", &t->bos);
    if (st == FG_OK) st = config_token(name, t, config, "eos_token", &t->eos);
    if (st == FG_OK && !cJSON_HasObjectItem(config, "bos_token") &&
        !cJSON_HasObjectItem(config, "eos_token") && t->bos < 0 && t->eos < 0)
        t->bos = t->eos = added_id(t, eot, sizeof eot - 1);
    cJSON_Delete(config);
    return st;
}

/* --- loading ---------------------------------------------------------------- */

fg_status fgi_tokenizer_json_from_memory(fg_tokenizer **tok, const char *json, size_t len,
                                         const char *config_json, size_t config_len,
                                         const char *name)
{
    FGI_TRY(fgi_check_ptr(load_fn, "tok", tok));
    FGI_TRY(fgi_check_ptr(load_fn, "json", json));
    if (name == NULL) name = "tokenizer.json";
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root == NULL) return format_error(name, "not valid JSON");
    while (end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    fg_status st = FG_OK;
    if (end != json + len)
        st = format_error(name, "unexpected data after the JSON object (byte %zu)",
                          (size_t)(end - json));
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *vocab = model ? cJSON_GetObjectItemCaseSensitive(model, "vocab") : NULL;
    const char *type = NULL;
    if (st != FG_OK) {
    } else if (!cJSON_IsObject(root)) st = format_error(name, "expected a JSON object");
    else if (!cJSON_IsObject(model)) st = format_error(name, "\"model\" must be an object");
    else if ((st = get_string(name, model, "model", "type", &type)) != FG_OK) {
    } else if (type != NULL && strcmp(type, "BPE") != 0)
        st = unsupported(name, "model type \"%s\" (only BPE)", QUOTED(type));
    else if (!cJSON_IsObject(vocab)) st = format_error(name, "model.vocab must be an object");
    else if (added != NULL && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        st = format_error(name, "\"added_tokens\" must be an array");
    const char *fields[] = {"truncation", "padding"};
    for (int i = 0; i < 2 && st == FG_OK; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, fields[i]);
        if (f != NULL && !cJSON_IsNull(f))
            st = unsupported(name, "\"%s\" (it must be null)", fields[i]);
    }
    if (st == FG_OK) {
        const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
        if (merges != NULL && !cJSON_IsNull(merges) && !cJSON_IsArray(merges))
            st = format_error(name, "model.merges must be an array");
    }
    fg_tokenizer *t = NULL;
    if (st == FG_OK) st = build_vocab(name, &t, vocab, cJSON_IsArray(added) ? added : NULL);
    if (st == FG_OK) st = fgi_alloc(load_fn, (void **)&t->json, 1, sizeof *t->json);
    if (st == FG_OK)
        st = parse_normalizer(name, t->json, cJSON_GetObjectItemCaseSensitive(root, "normalizer"),
                              0);
    if (st == FG_OK)
        st = parse_pre_tokenizer(name, t->json,
                                 cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), 0);
    if (st == FG_OK) st = parse_model(name, t, model);
    if (st == FG_OK) st = parse_added(name, t, cJSON_IsArray(added) ? added : NULL);
    if (st == FG_OK)
        st = parse_post(name, t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), 0);
    if (st == FG_OK) st = build_outputs(name, t, cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    if (st == FG_OK) st = parse_config(name, t, config_json, config_len);
    cJSON_Delete(root);
    if (st != FG_OK) {
        fg_tokenizer_destroy(t);
        return st;
    }
    *tok = t;
    return FG_OK;
}

fg_status fg_tokenizer_load_json(fg_tokenizer **tok, const char *path)
{
    FGI_TRY(fgi_check_ptr(load_fn, "tok", tok));
    FGI_TRY(fgi_check_ptr(load_fn, "tokenizer_json_path", path));
    char *json = NULL, *config = NULL;
    size_t len = 0, config_len = 0;
    FGI_TRY(fgi_tokenizer_read_file(load_fn, path, FGI_TOKENIZER_MAX_BYTES, "a tokenizer.json",
                                    &json, &len));
    /* tokenizer_config.json beside it, if there is one */
    fg_status st = FG_OK;
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    char *config_path = NULL;
    st = fgi_alloc(load_fn, (void **)&config_path, dir_len + sizeof "tokenizer_config.json", 1);
    if (st == FG_OK) {
        memcpy(config_path, path, dir_len);
        memcpy(config_path + dir_len, "tokenizer_config.json", sizeof "tokenizer_config.json");
        FILE *f = fopen(config_path, "rb");
        if (f != NULL) {
            fclose(f);
            st = fgi_tokenizer_read_file(load_fn, config_path, FGI_TOKENIZER_MAX_BYTES,
                                         "a tokenizer_config.json", &config, &config_len);
        }
    }
    if (st == FG_OK)
        st = fgi_tokenizer_json_from_memory(tok, json, len, config, config_len, path);
    free(config_path);
    free(json);
    free(config);
    return st;
}

/* --- encoding: added tokens ------------------------------------------------- */

typedef struct {
    size_t start, end; /* bytes of the text */
    int id;            /* the added token, or -1 for text */
} span;

typedef struct {
    span *data;
    size_t len, cap;
} span_list;

static fg_status span_add(span_list *l, size_t start, size_t end, int id)
{
    if (l->len == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        span *p = realloc(l->data, cap * sizeof *p);
        if (p == NULL) return fgi_fail(FG_ERR_OOM, "%s: out of memory", encode_fn);
        l->data = p;
        l->cap = cap;
    }
    l->data[l->len++] = (span){start, end, id};
    return FG_OK;
}

static int is_space_at(const unsigned char *s, size_t len, size_t pos, size_t *n)
{
    return fgi_char_at(s, len, pos, n) == FGI_CHAR_SPACE;
}

/* Start of the run of whitespace that ends at s[end], not before floor. */
static size_t space_run_before(const unsigned char *s, size_t end, size_t floor)
{
    size_t pos = end;
    while (pos > floor) {
        size_t back = 1, n;
        while (back < 4 && back < pos && (s[pos - back] & 0xC0) == 0x80) back++;
        if (!is_space_at(s, end, pos - back, &n) || pos - back + n != pos) break;
        pos -= back;
    }
    return pos;
}

static int is_word_char(uint32_t cp)
{
    fgi_char_class c = fgi_char_class_of(cp);
    return c == FGI_CHAR_LETTER || c == FGI_CHAR_NUMBER;
}

/* Does the text before `end` end with a word character? */
static int word_before(const unsigned char *s, size_t end)
{
    if (end == 0) return 0;
    size_t back = 1;
    while (back < 4 && back < end && (s[end - back] & 0xC0) == 0x80) back++;
    uint32_t cp;
    size_t n = fgi_utf8_sequence(s + end - back, back, &cp);
    return n == back && is_word_char(cp);
}

static int word_after(const unsigned char *s, size_t len, size_t pos)
{
    uint32_t cp;
    return pos < len && fgi_utf8_sequence(s + pos, len - pos, &cp) > 0 && is_word_char(cp);
}

/* Splits s[0 .. len) at the added tokens whose normalized flag is
 * `normalized`: leftmost match, longest at that position; a match refused
 * (single_word, or special under split_special) is passed over as text. */
static fg_status split_added(const fgi_json_state *js, const unsigned char *s, size_t len,
                             int normalized, int split_special, span_list *out)
{
    size_t text_from = 0, pos = 0;
    while (pos < len) {
        const added_token *hit = NULL;
        for (int i = js->first_at[s[pos]]; i < js->first_at[s[pos] + 1]; i++) {
            const added_token *a = &js->added[js->order[i]];
            if (a->normalized == normalized && a->pattern_len <= len - pos &&
                memcmp(s + pos, a->pattern, a->pattern_len) == 0) {
                hit = a; /* longest first */
                break;
            }
        }
        if (hit == NULL) {
            pos++;
            continue;
        }
        size_t start = pos, stop = pos + hit->pattern_len;
        pos = stop;
        if (split_special && hit->special) continue;
        if (hit->single_word && (word_before(s, start) || word_after(s, len, stop))) continue;
        if (hit->lstrip) {
            start = space_run_before(s, start, text_from);
        }
        if (hit->rstrip) {
            size_t n;
            while (stop < len && is_space_at(s, len, stop, &n)) stop += n;
            pos = stop;
        }
        if (start > text_from) FGI_TRY(span_add(out, text_from, start, -1));
        FGI_TRY(span_add(out, start, stop, hit->id));
        text_from = stop;
    }
    if (len > text_from) FGI_TRY(span_add(out, text_from, len, -1));
    return FG_OK;
}

/* --- encoding: normalizer ------------------------------------------------- */

static fg_status normalize(const char *fn, const fgi_json_state *js, const char *s, size_t n,
                           sbuf *out)
{
    sbuf cur = {0};
    fg_status st = sbuf_add(fn, &cur, s, n);
    for (int k = 0; k < js->n_norm && st == FG_OK; k++) {
        const norm_step *step = &js->norm[k];
        sbuf next = {0};
        if (step->kind == NORM_NFC) {
            free(next.data);
            char *res = NULL;
            size_t res_len = 0;
            st = fgi_nfc(fn, cur.data, cur.len, &res, &res_len);
            if (st != FG_OK) break;
            next.data = res, next.len = res_len, next.cap = 3 * cur.len + 4;
        } else if (step->kind == NORM_PREPEND) {
            if (cur.len > 0) st = sbuf_add(fn, &next, step->to, step->to_len);
            if (st == FG_OK) st = sbuf_add(fn, &next, cur.data, cur.len);
        } else {
            for (size_t i = 0; i < cur.len && st == FG_OK;) {
                if (cur.len - i >= step->from_len &&
                    memcmp(cur.data + i, step->from, step->from_len) == 0) {
                    st = sbuf_add(fn, &next, step->to, step->to_len);
                    i += step->from_len;
                } else {
                    st = sbuf_add(fn, &next, cur.data + i, 1);
                    i++;
                }
            }
        }
        free(cur.data);
        cur = next;
    }
    if (st != FG_OK) {
        free(cur.data);
        return st;
    }
    *out = cur;
    return FG_OK;
}

/* --- encoding: pre-tokenizers ----------------------------------------------- */

typedef struct {
    size_t at, len;
    int at_start; /* the word starts the original text (Metaspace "first") */
} word;

typedef struct {
    sbuf text;
    word *w;
    size_t n, cap;
} word_list;

static fg_status word_add(word_list *l, const char *s, size_t n, int at_start)
{
    if (n == 0) return FG_OK;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        word *p = realloc(l->w, cap * sizeof *p);
        if (p == NULL) return fgi_fail(FG_ERR_OOM, "%s: out of memory", encode_fn);
        l->w = p;
        l->cap = cap;
    }
    l->w[l->n++] = (word){l->text.len, n, at_start};
    return sbuf_add(encode_fn, &l->text, s, n);
}

static void word_list_free(word_list *l)
{
    free(l->text.data);
    free(l->w);
    memset(l, 0, sizeof *l);
}

static fgi_char_class cls_at(const unsigned char *s, size_t len, size_t pos, size_t *n)
{
    return fgi_char_at(s, len, pos, n);
}

static size_t run_end(const unsigned char *s, size_t len, size_t pos, fgi_char_class c)
{
    size_t n;
    while (pos < len && cls_at(s, len, pos, &n) == c) pos += n;
    return pos;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d), or case-sensitive: the match length or 0.
 * Case folding as Oniguruma's: 's' also matches U+017F (long s). */
static size_t contraction(const unsigned char *s, size_t len, size_t pos, int fold)
{
    static const char *const forms[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    if (s[pos] != '\'') return 0;
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        size_t at = pos + 1, k = 0;
        for (; forms[f][k] != '\0'; k++) {
            if (at >= len) break;
            unsigned char c = s[at];
            if (c == (unsigned char)forms[f][k] || (fold && c == (unsigned char)forms[f][k] - 32)) {
                at++;
                continue;
            }
            if (fold && forms[f][k] == 's' && len - at >= 2 && c == 0xC5 && s[at + 1] == 0xBF) {
                at += 2;
                continue;
            }
            break;
        }
        if (forms[f][k] == '\0') return at - pos;
    }
    return 0;
}

/* The end of the whitespace chunk at pos (s[pos] is whitespace) under
 * \s+(?!\S)|\s+: the whole run at the end of the text, else the run minus
 * its last character, or a single character before a non-space. */
static size_t space_chunk(const unsigned char *s, size_t len, size_t pos)
{
    size_t end = pos, last = pos, n;
    while (end < len && cls_at(s, len, end, &n) == FGI_CHAR_SPACE) {
        last = end;
        end += n;
    }
    if (end == len || last == pos) return end;
    return last;
}

static int is_cr_lf(unsigned char c) { return c == '\r' || c == '\n'; }

/* The end of the chunk that starts at pos (< len) under the pattern. */
static size_t next_chunk(pattern_kind pattern, const unsigned char *s, size_t len, size_t pos)
{
    size_t n, k;
    if (pattern == PAT_GPT2) {
        if ((k = contraction(s, len, pos, 0)) > 0) return pos + k;
        fgi_char_class c = cls_at(s, len, pos, &n);
        size_t start = pos;
        if (s[pos] == ' ' && pos + 1 < len) { /* " ?" before a letter, number or other run */
            fgi_char_class after = cls_at(s, len, pos + 1, &n);
            if (after != FGI_CHAR_SPACE) {
                c = after;
                start = pos + 1;
            }
        }
        if (c != FGI_CHAR_SPACE) return run_end(s, len, start, c);
        return space_chunk(s, len, pos);
    }
    /* Llama 3 / Qwen2 */
    if ((k = contraction(s, len, pos, 1)) > 0) return pos + k;
    fgi_char_class c = cls_at(s, len, pos, &n);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c == FGI_CHAR_LETTER) return run_end(s, len, pos, FGI_CHAR_LETTER);
    if (c != FGI_CHAR_NUMBER && !is_cr_lf(s[pos]) && pos + n < len) {
        size_t m;
        if (cls_at(s, len, pos + n, &m) == FGI_CHAR_LETTER)
            return run_end(s, len, pos + n, FGI_CHAR_LETTER);
    }
    /* \p{N}{1,3} or \p{N} */
    if (c == FGI_CHAR_NUMBER) {
        size_t end = pos + n;
        for (int more = pattern == PAT_LLAMA3 ? 2 : 0; more > 0 && end < len; more--) {
            if (cls_at(s, len, end, &k) != FGI_CHAR_NUMBER) break;
            end += k;
        }
        return end;
    }
    /* ` ?[^\s\p{L}\p{N}]+[\r\n]*` */
    size_t start = pos;
    if (s[pos] == ' ' && pos + 1 < len && cls_at(s, len, pos + 1, &k) == FGI_CHAR_OTHER)
        start = pos + 1;
    if (cls_at(s, len, start, &k) == FGI_CHAR_OTHER) {
        size_t end = run_end(s, len, start, FGI_CHAR_OTHER);
        while (end < len && is_cr_lf(s[end])) end++;
        return end;
    }
    /* s[pos] is whitespace. \s*[\r\n]+: up to the last \r or \n of the run */
    size_t end = pos, last_crlf = 0;
    int found = 0;
    while (end < len && cls_at(s, len, end, &k) == FGI_CHAR_SPACE) {
        if (is_cr_lf(s[end])) last_crlf = end, found = 1;
        end += k;
    }
    if (found) return last_crlf + 1;
    return space_chunk(s, len, pos);
}

static fg_status pre_step_apply(const pre_step *p, const word_list *in, word_list *out)
{
    for (size_t i = 0; i < in->n; i++) {
        const unsigned char *s = (const unsigned char *)in->text.data + in->w[i].at;
        size_t len = in->w[i].len;
        int at_start = in->w[i].at_start;
        switch (p->kind) {
        case PRE_BYTE_LEVEL:
            if (p->add_prefix_space && s[0] != ' ') {
                /* the prefix space joins the word */
                sbuf tmp = {0};
                fg_status st = sbuf_add(encode_fn, &tmp, " ", 1);
                if (st == FG_OK) st = sbuf_add(encode_fn, &tmp, s, len);
                if (st != FG_OK) {
                    free(tmp.data);
                    return st;
                }
                word_list one = {0};
                st = word_add(&one, tmp.data, tmp.len, at_start);
                free(tmp.data);
                pre_step plain = *p;
                plain.add_prefix_space = 0;
                if (st == FG_OK) st = pre_step_apply(&plain, &one, out);
                word_list_free(&one);
                if (st != FG_OK) return st;
                continue;
            }
            if (!p->use_regex) {
                FGI_TRY(word_add(out, (const char *)s, len, at_start));
                continue;
            }
            /* the GPT-2 regex, as Split does */
            /* fall through */
        case PRE_SPLIT:
            for (size_t pos = 0; pos < len;) {
                size_t end = next_chunk(p->pattern, s, len, pos);
                FGI_TRY(word_add(out, (const char *)s + pos, end - pos, at_start && pos == 0));
                pos = end;
            }
            break;
        case PRE_DIGITS:
            for (size_t pos = 0; pos < len;) {
                size_t n, end = pos;
                int digit = cls_at(s, len, pos, &n) == FGI_CHAR_NUMBER;
                if (digit && p->individual_digits) end = pos + n;
                else
                    while (end < len && (cls_at(s, len, end, &n) == FGI_CHAR_NUMBER) == digit)
                        end += n;
                FGI_TRY(word_add(out, (const char *)s + pos, end - pos, at_start && pos == 0));
                pos = end;
            }
            break;
        case PRE_METASPACE: {
            sbuf tmp = {0};
            fg_status st = FG_OK;
            for (size_t pos = 0; pos < len && st == FG_OK; pos++)
                st = s[pos] == ' ' ? sbuf_add(encode_fn, &tmp, p->repl, p->repl_len)
                                   : sbuf_add(encode_fn, &tmp, s + pos, 1);
            int starts = tmp.len >= p->repl_len && memcmp(tmp.data, p->repl, p->repl_len) == 0;
            if (st == FG_OK && !starts &&
                (p->scheme == PREPEND_ALWAYS || (p->scheme == PREPEND_FIRST && at_start))) {
                sbuf pre = {0};
                st = sbuf_add(encode_fn, &pre, p->repl, p->repl_len);
                if (st == FG_OK) st = sbuf_add(encode_fn, &pre, tmp.data, tmp.len);
                free(tmp.data);
                tmp = pre;
            }
            /* split: each replacement character starts a new word */
            size_t from = 0;
            for (size_t pos = 0; st == FG_OK && p->split && pos < tmp.len; pos++)
                if (pos > from && tmp.len - pos >= p->repl_len &&
                    memcmp(tmp.data + pos, p->repl, p->repl_len) == 0) {
                    st = word_add(out, tmp.data + from, pos - from, at_start && from == 0);
                    from = pos;
                }
            if (st == FG_OK)
                st = word_add(out, tmp.data + from, tmp.len - from, at_start && from == 0);
            free(tmp.data);
            FGI_TRY(st);
            break;
        }
        }
    }
    return FG_OK;
}

/* --- encoding: the BPE model ---------------------------------------------- */

static int json_pair_rule(const fg_tokenizer *tok, int left_id, int right_id, double *priority,
                          int *merged, char *scratch)
{
    (void)scratch;
    const fgi_merge_slot *slot = merge_slot(tok, left_id, right_id);
    if (slot->left < 0) return 0;
    *priority = slot->rank;
    *merged = slot->merged;
    return 1;
}

typedef struct {
    const fg_tokenizer *tok;
    ibuf ids;
    ibuf symbols;
    sbuf mapped;
    fgi_bpe_work work;
    size_t work_cap;
} encoder;

static fg_status model_word(encoder *e, const unsigned char *w, size_t n)
{
    const fg_tokenizer *tok = e->tok;
    const fgi_json_state *js = tok->json;
    const unsigned char *s = w;
    size_t len = n;
    if (js->byte_level) { /* spelled in the byte-level alphabet */
        e->mapped.len = 0;
        for (size_t i = 0; i < n; i++) {
            char spelled[4];
            size_t k = fgi_utf8_encode(fgi_byte_to_codepoint(w[i]), spelled);
            FGI_TRY(sbuf_add(encode_fn, &e->mapped, spelled, k));
        }
        s = (const unsigned char *)e->mapped.data;
        len = e->mapped.len;
    }
    if (js->ignore_merges && len <= tok->max_spelling) {
        int id = fgi_string_map_find(&tok->lookup, tok, (const char *)s, len);
        if (id >= 0) return ibuf_add(encode_fn, &e->ids, id);
    }
    e->symbols.len = 0;
    int unk_pending = 0;
    for (size_t i = 0, k; i < len; i += k) {
        uint32_t cp;
        k = fgi_utf8_sequence(s + i, len - i, &cp);
        if (k == 0) k = 1; /* an invalid byte is a character of its own */
        int id = fgi_string_map_find(&tok->lookup, tok, (const char *)s + i, k);
        if (id >= 0) {
            if (unk_pending) FGI_TRY(ibuf_add(encode_fn, &e->symbols, js->unk));
            unk_pending = 0;
            FGI_TRY(ibuf_add(encode_fn, &e->symbols, id));
            continue;
        }
        if (js->byte_fallback) {
            int all = 1;
            for (size_t b = 0; b < k; b++) all &= js->fallback_id[s[i + b]] >= 0;
            if (all) { /* the library does not flush a pending unk here */
                for (size_t b = 0; b < k; b++)
                    FGI_TRY(ibuf_add(encode_fn, &e->symbols, js->fallback_id[s[i + b]]));
                continue;
            }
        }
        if (js->unk >= 0) {
            if (unk_pending && !js->fuse_unk) FGI_TRY(ibuf_add(encode_fn, &e->symbols, js->unk));
            unk_pending = 1;
        }
        /* no unk token: the character is dropped, as the library does */
    }
    if (unk_pending) FGI_TRY(ibuf_add(encode_fn, &e->symbols, js->unk));
    if (e->symbols.len == 0) return FG_OK;
    if (e->symbols.len + 1 > e->work_cap) {
        fgi_bpe_work_free(&e->work);
        e->work_cap = 2 * e->symbols.len + 16;
        fg_status st = fgi_bpe_work_init(encode_fn, &e->work, tok, e->work_cap);
        if (st != FG_OK) {
            e->work_cap = 0;
            return st;
        }
    }
    int count = fgi_bpe_merge(&e->work, tok, json_pair_rule, 0, e->symbols.data,
                              (int)e->symbols.len);
    for (int i = 0; i < count; i++) FGI_TRY(ibuf_add(encode_fn, &e->ids, e->symbols.data[i]));
    return FG_OK;
}

/* Pre-tokenizes and encodes one piece of normalized text. */
static fg_status encode_text(encoder *e, const char *s, size_t len, int at_start)
{
    const fgi_json_state *js = e->tok->json;
    word_list cur = {0};
    fg_status st = word_add(&cur, s, len, at_start);
    for (int k = 0; k < js->n_pre && st == FG_OK; k++) {
        word_list next = {0};
        st = pre_step_apply(&js->pre[k], &cur, &next);
        word_list_free(&cur);
        cur = next;
    }
    for (size_t i = 0; i < cur.n && st == FG_OK; i++)
        st = model_word(e, (const unsigned char *)cur.text.data + cur.w[i].at, cur.w[i].len);
    word_list_free(&cur);
    return st;
}

fg_status fgi_json_encode(const fg_tokenizer *tok, const unsigned char *text, size_t len,
                          unsigned flags, int **ids, int *count)
{
    const fgi_json_state *js = tok->json;
    const int split_special = (flags & FG_ENCODE_SPLIT_SPECIAL) != 0;
    encoder e;
    memset(&e, 0, sizeof e);
    e.tok = tok;
    span_list raw = {0};
    fg_status st = FG_OK;
    if (flags & FG_ENCODE_ADD_SPECIAL)
        for (size_t i = 0; i < js->prefix.len && st == FG_OK; i++)
            st = ibuf_add(encode_fn, &e.ids, js->prefix.data[i]);
    if (st == FG_OK) st = split_added(js, text, len, 0, split_special, &raw);
    for (size_t r = 0; r < raw.len && st == FG_OK; r++) {
        if (raw.data[r].id >= 0) {
            st = ibuf_add(encode_fn, &e.ids, raw.data[r].id);
            continue;
        }
        sbuf norm = {0};
        span_list pieces = {0};
        st = normalize(encode_fn, js, (const char *)text + raw.data[r].start,
                       raw.data[r].end - raw.data[r].start, &norm);
        if (st == FG_OK)
            st = split_added(js, (const unsigned char *)norm.data, norm.len, 1, split_special,
                             &pieces);
        for (size_t p = 0; p < pieces.len && st == FG_OK; p++) {
            const span *sp = &pieces.data[p];
            if (sp->id >= 0) st = ibuf_add(encode_fn, &e.ids, sp->id);
            else
                st = encode_text(&e, norm.data + sp->start, sp->end - sp->start,
                                 raw.data[r].start == 0 && sp->start == 0);
        }
        free(norm.data);
        free(pieces.data);
    }
    if (flags & FG_ENCODE_ADD_SPECIAL)
        for (size_t i = 0; i < js->suffix.len && st == FG_OK; i++)
            st = ibuf_add(encode_fn, &e.ids, js->suffix.data[i]);
    free(raw.data);
    free(e.symbols.data);
    free(e.mapped.data);
    fgi_bpe_work_free(&e.work);
    if (st == FG_OK && e.ids.len > (size_t)INT_MAX)
        st =
            fgi_fail(FG_ERR_INVALID_ARG, "%s: the text needs more than %d ids", encode_fn, INT_MAX);
    if (st != FG_OK) {
        free(e.ids.data);
        return st;
    }
    *ids = e.ids.data;
    *count = (int)e.ids.len;
    return FG_OK;
}
