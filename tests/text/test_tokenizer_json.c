/* Hugging Face tokenizer.json (issue 14, items 4 and 8): the tiny tokenizers
 * under tests/text/hf/ were trained with the `tokenizers` library and every
 * case of cases.json holds the ids and decodes that library and
 * transformers' AutoTokenizer gave (tests/text/hf/gen_hf_tokenizers.py);
 * each is checked for encode (defaults, without the post-processor, with
 * special tokens read as text) and decode. Random byte strings must
 * round-trip; broken and unsupported files are refused naming the part. */
#define _POSIX_C_SOURCE 200809L
#include "support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *hf_path(const char *folder, const char *file)
{
    static char paths[4][512];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, 512, "%s/tests/text/hf/%s%s%s", FG_SOURCE_DIR, folder, file ? "/" : "",
             file ? file : "");
    return p;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)n + 1);
    cr_assert_not_null(data);
    cr_assert_eq(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    data[n] = '\0';
    if (len) *len = (size_t)n;
    return data;
}

/* Hex digits to bytes (a new buffer, NUL-ended). */
static char *unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2;
    char *out = malloc(n + 1);
    cr_assert_not_null(out);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (char)v;
    }
    out[n] = '\0';
    *len = n;
    return out;
}

static cJSON *cases_json(void)
{
    char *text = slurp(hf_path("cases.json", NULL), NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(root, "tests/text/hf/cases.json is not valid JSON");
    return root;
}

/* Encodes text with flags; the ids are compared with the JSON list. Returns
 * 1 when they match, else prints both. */
static int ids_match(const fg_tokenizer *tok, const char *folder, const char *text, size_t len,
                     unsigned flags, const cJSON *want, const char *what)
{
    int n = 0;
    fg_status st = fg_tokenizer_encode_ex(tok, text, len, flags, NULL, 0, &n);
    cr_assert(st == FG_OK || n > 0, "%s: encode failed: %s", folder, fg_last_error());
    int *ids = malloc(((size_t)n + 1) * sizeof *ids);
    cr_assert_not_null(ids);
    int n2 = -1;
    cr_assert_eq(fg_tokenizer_encode_ex(tok, text, len, flags, ids, n, &n2), FG_OK, "%s",
                 fg_last_error());
    cr_assert_eq(n2, n);
    int ok = n == cJSON_GetArraySize(want);
    const cJSON *w = want->child;
    for (int i = 0; ok && i < n; i++, w = w->next) ok = ids[i] == (int)w->valuedouble;
    if (!ok) {
        char *got = malloc(16 * (size_t)n + 16), *exp = cJSON_PrintUnformatted(want);
        size_t at = 0;
        for (int i = 0; i < n; i++) at += (size_t)sprintf(got + at, "%s%d", i ? "," : "", ids[i]);
        got[at] = '\0';
        char quoted[512];
        fprintf(stderr, "%s %s \"%s\": got [%s], want %s\n", folder, what,
                fg_quote_text(quoted, sizeof quoted, text), got, exp);
        free(got);
        free(exp);
    }
    free(ids);
    return ok;
}

/* Rust's String::from_utf8_lossy, which the library's ByteLevel decoder
 * ends with: each maximal ill-formed subpart becomes U+FFFD. A new buffer. */
static char *utf8_lossy(const char *in, size_t n, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)in;
    char *out = malloc(3 * n + 1);
    cr_assert_not_null(out);
    size_t at = 0;
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        size_t need = b < 0x80 ? 0 : b >= 0xC2 && b <= 0xDF ? 1 : b >= 0xE0 && b <= 0xEF ? 2
                                 : b >= 0xF0 && b <= 0xF4 ? 3 : (size_t)-1;
        unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
        size_t k = 1;
        if (need != (size_t)-1)
            for (; k <= need && i + k < n; k++) {
                unsigned char c = s[i + k];
                if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) break;
            }
        if (need != (size_t)-1 && k == need + 1) {
            memcpy(out + at, in + i, k);
            at += k;
        } else {
            memcpy(out + at, "\xEF\xBF\xBD", 3);
            at += 3;
        }
        i += k;
    }
    *out_len = at;
    return out;
}

/* Decode of the ids, and the streamed pieces, against the expected bytes.
 * Where the ids decode to bytes that are not UTF-8, the library shows
 * U+FFFD and flashgpt the bytes (tokenizer.h): those compare after the
 * library's substitution. */
static int decode_matches(const fg_tokenizer *tok, const char *folder, const cJSON *ids_json,
                          const char *want, size_t want_len)
{
    int n = cJSON_GetArraySize(ids_json);
    int *ids = malloc(((size_t)n + 1) * sizeof *ids);
    cr_assert_not_null(ids);
    int i = 0;
    for (const cJSON *w = ids_json->child; w != NULL; w = w->next) ids[i++] = (int)w->valuedouble;
    size_t need = 0, got_len = 0;
    cr_assert(fg_tokenizer_decode(tok, ids, n, NULL, 0, &need) == FG_OK || need > 0);
    char *got = malloc(need + 1);
    cr_assert_not_null(got);
    cr_assert_eq(fg_tokenizer_decode(tok, ids, n, got, need, &got_len), FG_OK, "%s",
                 fg_last_error());
    int ok = got_len == want_len && memcmp(got, want, want_len) == 0;
    if (!ok) {
        size_t lossy_len;
        char *lossy = utf8_lossy(got, got_len, &lossy_len);
        int invalid = lossy_len != got_len || memcmp(lossy, got, got_len) != 0;
        ok = invalid && lossy_len == want_len && memcmp(lossy, want, want_len) == 0;
        free(lossy);
    }
    size_t at = 0;
    for (i = 0; ok && i < n; i++) {
        const char *p;
        size_t k;
        cr_assert_eq(fg_tokenizer_piece(tok, i ? ids[i - 1] : -1, ids[i], &p, &k), FG_OK);
        ok = at + k <= got_len && memcmp(got + at, p, k) == 0;
        at += k;
    }
    ok = ok && at == got_len;
    if (!ok) {
        got[got_len] = '\0';
        char q1[512], q2[512];
        fprintf(stderr, "%s decode: got \"%s\", want \"%s\"\n", folder,
                fg_quote_text(q1, sizeof q1, got), fg_quote_text(q2, sizeof q2, want));
    }
    free(got);
    free(ids);
    return ok;
}

static void check_folder(const char *folder)
{
    cJSON *root = cases_json();
    const cJSON *f = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "folders"), folder);
    cr_assert_not_null(f, "cases.json has no folder %s", folder);
    fg_tokenizer *tok = NULL;
    cr_assert_eq(fg_tokenizer_load_json(&tok, hf_path(folder, "tokenizer.json")), FG_OK, "%s",
                 fg_last_error());
    cr_assert_eq(fg_tokenizer_vocab_size(tok),
                 (int)cJSON_GetObjectItem(f, "vocab_size")->valuedouble);
    int failures = 0, cases = 0;
    for (const cJSON *c = cJSON_GetObjectItem(f, "cases")->child; c != NULL; c = c->next) {
        size_t len, want_len;
        char *text = unhex(cJSON_GetObjectItem(c, "hex")->valuestring, &len);
        char *want = unhex(cJSON_GetObjectItem(c, "decode_hex")->valuestring, &want_len);
        failures += !ids_match(tok, folder, text, len, FG_ENCODE_ADD_SPECIAL,
                               cJSON_GetObjectItem(c, "ids"), "ids");
        failures += !ids_match(tok, folder, text, len, 0, cJSON_GetObjectItem(c, "ids_no_special"),
                               "ids_no_special");
        failures += !ids_match(tok, folder, text, len,
                               FG_ENCODE_ADD_SPECIAL | FG_ENCODE_SPLIT_SPECIAL,
                               cJSON_GetObjectItem(c, "ids_split_special"), "ids_split_special");
        /* fg_tokenizer_encode(add_bos) is the default of the library */
        int n_default = 0, n_flags = 0;
        fg_tokenizer_encode(tok, text, len, 1, NULL, 0, &n_default);
        fg_tokenizer_encode_ex(tok, text, len, FG_ENCODE_ADD_SPECIAL, NULL, 0, &n_flags);
        failures += n_default != n_flags;
        failures += !decode_matches(tok, folder, cJSON_GetObjectItem(c, "ids"), want, want_len);
        size_t plain_len;
        char *plain = unhex(cJSON_GetObjectItem(c, "decode_no_special_hex")->valuestring,
                            &plain_len);
        failures += !decode_matches(tok, folder, cJSON_GetObjectItem(c, "ids_no_special"), plain,
                                    plain_len);
        free(plain);
        free(text);
        free(want);
        cases++;
    }
    fg_tokenizer_destroy(tok);
    cJSON_Delete(root);
    cr_assert_gt(cases, 100);
    cr_assert_eq(failures, 0, "%s: %d mismatches over %d cases (listed on stderr)", folder,
                 failures, cases);
}

Test(tokenizer_json, gpt2_byte_level_matches_tokenizers) { check_folder("gpt2"); }
Test(tokenizer_json, llama3_split_regex_matches_tokenizers) { check_folder("llama3"); }
Test(tokenizer_json, qwen2_nfc_and_added_tokens_match_tokenizers) { check_folder("qwen2"); }
Test(tokenizer_json, llama2_sentencepiece_bpe_matches_tokenizers) { check_folder("llama2"); }
Test(tokenizer_json, mistral_metaspace_matches_tokenizers) { check_folder("mistral"); }
Test(tokenizer_json, smollm2_digits_matches_tokenizers) { check_folder("smollm2"); }
Test(tokenizer_json, added_token_flags_byte_level_match_tokenizers) { check_folder("added_bl"); }
Test(tokenizer_json, added_token_flags_sentencepiece_match_tokenizers) { check_folder("added_sp"); }

Test(tokenizer_json, bos_eos_from_the_post_processor_and_config)
{
    static const struct {
        const char *folder, *bos, *eos;
    } want[] = {{"gpt2", "<|endoftext|>", "<|endoftext|>"},
                {"llama3", "<|begin_of_text|>", "<|eot_id|>"},
                {"qwen2", NULL, "<|im_end|>"},
                {"llama2", "<s>", "</s>"},
                {"mistral", "<s>", "</s>"},
                {"smollm2", "<|im_start|>", "<|im_end|>"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        fg_tokenizer *tok = NULL;
        cr_assert_eq(fg_tokenizer_load_json(&tok, hf_path(want[i].folder, "tokenizer.json")),
                     FG_OK, "%s", fg_last_error());
        const char *p;
        size_t n;
        int bos = fg_tokenizer_bos(tok), eos = fg_tokenizer_eos(tok);
        if (want[i].bos == NULL) {
            cr_assert_eq(bos, -1, "%s", want[i].folder);
        } else {
            cr_assert_eq(fg_tokenizer_piece(tok, 0, bos, &p, &n), FG_OK);
            cr_assert(n == strlen(want[i].bos) && memcmp(p, want[i].bos, n) == 0, "%s bos",
                      want[i].folder);
        }
        cr_assert_eq(fg_tokenizer_piece(tok, 0, eos, &p, &n), FG_OK);
        cr_assert(n == strlen(want[i].eos) && memcmp(p, want[i].eos, n) == 0, "%s eos",
                  want[i].folder);
        fg_tokenizer_destroy(tok);
    }
}

/* Any bytes (invalid UTF-8 included) must come back from decode(encode())
 * where nothing normalizes the text: byte-level BPE, and SentencePiece BPE
 * with byte fallback (its leading "▁" is stripped again by the decoder). */
Test(tokenizer_json, random_bytes_round_trip)
{
    static const char *const folders[] = {"gpt2", "llama3", "llama2"};
    fgi_rng rng = fgi_rng_make(1401);
    static const char alphabet[] = "ab 1\t\n\r'<>|s";
    for (size_t f = 0; f < sizeof folders / sizeof folders[0]; f++) {
        fg_tokenizer *tok = NULL;
        cr_assert_eq(fg_tokenizer_load_json(&tok, hf_path(folders[f], "tokenizer.json")), FG_OK,
                     "%s", fg_last_error());
        for (int round = 0; round < 200; round++) {
            char text[64];
            size_t len = (size_t)fgi_rng_int(&rng, 1, (int)sizeof text);
            for (size_t i = 0; i < len; i++)
                text[i] = fgi_rng_int(&rng, 0, 1)
                              ? alphabet[fgi_rng_int(&rng, 0, (int)sizeof alphabet - 2)]
                              : (char)fgi_rng_int(&rng, 1, 255);
            if (strcmp(folders[f], "llama2") == 0 && text[0] == ' ') text[0] = 'x';
            int ids[256], n = 0;
            cr_assert_eq(fg_tokenizer_encode_ex(tok, text, len, FG_ENCODE_SPLIT_SPECIAL, ids,
                                                256, &n),
                         FG_OK, "%s", fg_last_error());
            char out[512];
            size_t out_len = 0;
            cr_assert_eq(fg_tokenizer_decode(tok, ids, n, out, sizeof out, &out_len), FG_OK);
            cr_assert(out_len == len && memcmp(out, text, len) == 0,
                      "%s: round %d (seed %llu) does not round-trip", folders[f], round,
                      (unsigned long long)fgi_test_seed());
        }
        fg_tokenizer_destroy(tok);
    }
}

Test(tokenizer_json, encode_ex_checks_its_arguments)
{
    fg_tokenizer *tok = NULL;
    cr_assert_eq(fg_tokenizer_load_json(&tok, hf_path("llama3", "tokenizer.json")), FG_OK);
    int n = 0, ids[4];
    fgi_assert_status(fg_tokenizer_encode_ex(tok, "a", 1, 4u, ids, 4, &n), FG_ERR_INVALID_ARG,
                      "flags");
    fgi_assert_status(fg_tokenizer_encode_ex(NULL, "a", 1, 0, ids, 4, &n), FG_ERR_INVALID_ARG,
                      "tok");
    fgi_assert_status(fg_tokenizer_encode_ex(tok, "Hello world", 11, FG_ENCODE_ADD_SPECIAL,
                                             ids, 1, &n),
                      FG_ERR_INVALID_ARG, "capacity");
    cr_assert_gt(n, 1);
    fgi_assert_status(fg_tokenizer_load_json(NULL, "x"), FG_ERR_INVALID_ARG, "tok");
    fgi_assert_status(fg_tokenizer_load_json(&tok, "/nonexistent/tokenizer.json"), FG_ERR_IO,
                      "/nonexistent/tokenizer.json");
    fg_tokenizer_destroy(tok);
}

/* --- refusals --------------------------------------------------------------- */

/* A small valid byte-level file with one part replaced: "%s" in the
 * template takes the JSON of the part named by `slot`. */
static fg_status load_variant(const char *normalizer, const char *pre, const char *model,
                              const char *decoder, const char *post, const char *added)
{
    static char json[8192];
    snprintf(json, sizeof json,
             "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
             "\"added_tokens\":%s,\"normalizer\":%s,\"pre_tokenizer\":%s,"
             "\"post_processor\":%s,\"decoder\":%s,\"model\":%s}",
             added ? added : "[]", normalizer ? normalizer : "null",
             pre ? pre : "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}",
             post ? post : "null", decoder ? decoder : "{\"type\":\"ByteLevel\"}",
             model ? model
                   : "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
                     "\"merges\":[\"a b\"]}");
    fg_tokenizer *tok = NULL;
    fg_status st = fgi_tokenizer_json_from_memory(&tok, json, strlen(json), NULL, 0, "t.json");
    if (st == FG_OK) {
        int ids[8], n = 0;
        cr_assert_eq(fg_tokenizer_encode(tok, "ab", 2, 0, ids, 8, &n), FG_OK);
        cr_assert(n == 1 && ids[0] == 2);
    }
    fg_tokenizer_destroy(tok);
    return st;
}

Test(tokenizer_json, the_base_variant_loads)
{
    cr_assert_eq(load_variant(NULL, NULL, NULL, NULL, NULL, NULL), FG_OK, "%s", fg_last_error());
}

Test(tokenizer_json, other_models_and_components_are_unsupported_by_name)
{
    fgi_assert_status(load_variant(NULL, NULL, "{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}",
                                   NULL, NULL, NULL),
                      FG_ERR_UNSUPPORTED, "model type \"WordPiece\"");
    fgi_assert_status(load_variant(NULL, NULL, "{\"type\":\"Unigram\",\"vocab\":[]}", NULL,
                                   NULL, NULL),
                      FG_ERR_UNSUPPORTED, "Unigram");
    fgi_assert_status(load_variant(NULL, NULL, "{\"type\":\"WordLevel\",\"vocab\":{}}", NULL,
                                   NULL, NULL),
                      FG_ERR_UNSUPPORTED, "WordLevel");
    fgi_assert_status(load_variant("{\"type\":\"NFKC\"}", NULL, NULL, NULL, NULL, NULL),
                      FG_ERR_UNSUPPORTED, "normalizer type \"NFKC\"");
    fgi_assert_status(load_variant("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},"
                                   "{\"type\":\"Lowercase\"}]}",
                                   NULL, NULL, NULL, NULL, NULL),
                      FG_ERR_UNSUPPORTED, "Lowercase");
    fgi_assert_status(load_variant(NULL, "{\"type\":\"Whitespace\"}", NULL, NULL, NULL, NULL),
                      FG_ERR_UNSUPPORTED, "pre_tokenizer type \"Whitespace\"");
    fgi_assert_status(load_variant(NULL,
                                   "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},"
                                   "\"behavior\":\"Isolated\",\"invert\":false}",
                                   NULL, NULL, NULL, NULL),
                      FG_ERR_UNSUPPORTED, "regex \"\\x5Cw+\"");
    fgi_assert_status(load_variant(NULL, NULL, NULL, "{\"type\":\"WordPiece\"}", NULL, NULL),
                      FG_ERR_UNSUPPORTED, "decoder type \"WordPiece\"");
    fgi_assert_status(load_variant(NULL, NULL, NULL, NULL, "{\"type\":\"Bogus\"}", NULL),
                      FG_ERR_UNSUPPORTED, "post_processor type \"Bogus\"");
    /* untrusted text is escaped in the message */
    fgi_assert_status(load_variant(NULL, "{\"type\":\"Bad\\u0001\\n\"}", NULL, NULL, NULL, NULL),
                      FG_ERR_UNSUPPORTED, "Bad\\x01\\x0A");
    cr_assert_null(strchr(fg_last_error(), '\n'));
    /* a Replace may not blow the text up */
    fgi_assert_status(load_variant("{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},"
                                   "\"content\":\"0123456789\"}",
                                   NULL, NULL, NULL, NULL, NULL),
                      FG_ERR_UNSUPPORTED, "more than 8 bytes");
    fgi_assert_status(load_variant(NULL, NULL,
                                   "{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],"
                                   "\"dropout\":0.1}",
                                   NULL, NULL, NULL),
                      FG_ERR_UNSUPPORTED, "dropout");
}

Test(tokenizer_json, malformed_files_are_format_errors)
{
    static const char *const bad[] = {"", "{", "[]", "{\"model\":3}", "{\"model\":{}}",
                                      "{\"model\":{\"type\":\"BPE\",\"vocab\":[]}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fg_tokenizer *tok = NULL;
        fgi_assert_status(fgi_tokenizer_json_from_memory(&tok, bad[i], strlen(bad[i]), NULL, 0,
                                                         "t.json"),
                          FG_ERR_FORMAT, "t.json");
        cr_assert_null(tok);
    }
    /* wrong types, huge and fractional ids, duplicates, unknown merges */
    fgi_assert_status(load_variant(NULL, NULL, "{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"}}",
                                   NULL, NULL, NULL),
                      FG_ERR_FORMAT, "not a number");
    fgi_assert_status(load_variant(NULL, NULL, "{\"type\":\"BPE\",\"vocab\":{\"a\":2e9}}", NULL,
                                   NULL, NULL),
                      FG_ERR_FORMAT, "id 2000000000");
    fgi_assert_status(load_variant(NULL, NULL, "{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}", NULL,
                                   NULL, NULL),
                      FG_ERR_FORMAT, "id -1");
    fgi_assert_status(load_variant(NULL, NULL, "{\"type\":\"BPE\",\"vocab\":{\"a\":0.5}}", NULL,
                                   NULL, NULL),
                      FG_ERR_FORMAT, "0.5");
    fgi_assert_status(load_variant(NULL, NULL, "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0}}",
                                   NULL, NULL, NULL),
                      FG_ERR_FORMAT, "id 0 is given to");
    fgi_assert_status(load_variant(NULL, NULL, "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"a\":1}}",
                                   NULL, NULL, NULL),
                      FG_ERR_FORMAT, "given twice");
    fgi_assert_status(load_variant(NULL, NULL,
                                   "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},"
                                   "\"merges\":[\"a b\"]}",
                                   NULL, NULL, NULL),
                      FG_ERR_FORMAT, "merged token \"ab\"");
    fgi_assert_status(load_variant(NULL, NULL,
                                   "{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\"]]}",
                                   NULL, NULL, NULL),
                      FG_ERR_FORMAT, "merges[0]");
    fgi_assert_status(load_variant(NULL, NULL, NULL, NULL, NULL,
                                   "[{\"id\":3,\"content\":\"<x>\",\"special\":true},"
                                   "{\"id\":4,\"content\":\"<x>\",\"special\":true}]"),
                      FG_ERR_FORMAT, "\"<x>\" is given twice");
    fgi_assert_status(load_variant(NULL, NULL, NULL, NULL, NULL,
                                   "[{\"id\":0,\"content\":\"<x>\",\"special\":true}]"),
                      FG_ERR_FORMAT, "id 0 is \"<x>\"");
    fgi_assert_status(load_variant(NULL, NULL, NULL, NULL, NULL,
                                   "[{\"id\":3,\"content\":\"<x>\",\"special\":\"yes\"}]"),
                      FG_ERR_FORMAT, "\"special\" must be true or false");
    fgi_assert_status(load_variant(NULL, NULL, NULL, NULL,
                                   "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
                                   "{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}],"
                                   "\"special_tokens\":{\"<s>\":{\"ids\":[99]}}}",
                                   NULL),
                      FG_ERR_FORMAT, "id 99");
}

/* --- NFC ------------------------------------------------------------------- */

/* tests/text/nfc_cases.json (scripts/gen_unicode_nfc.py --vectors): every
 * primary composite's NFD, Hangul, and random mark sequences, with Python's
 * unicodedata NFC. */
Test(tokenizer_json, nfc_matches_unicodedata)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/text/nfc_cases.json", FG_SOURCE_DIR);
    char *text = slurp(path, NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(root);
    int n = 0, failures = 0;
    for (const cJSON *c = cJSON_GetObjectItem(root, "cases")->child; c != NULL; c = c->next) {
        char *sep = strchr(c->valuestring, ':');
        cr_assert_not_null(sep);
        *sep = '\0';
        size_t in_len, want_len, got_len = 0;
        char *in = unhex(c->valuestring, &in_len), *want = unhex(sep + 1, &want_len), *got = NULL;
        cr_assert_eq(fgi_nfc("test", in, in_len, &got, &got_len), FG_OK);
        if (got_len != want_len || memcmp(got, want, want_len) != 0) {
            if (failures++ < 10) fprintf(stderr, "NFC of %s: wrong\n", c->valuestring);
        }
        free(in), free(want), free(got);
        n++;
    }
    cJSON_Delete(root);
    cr_assert_gt(n, 1000);
    cr_assert_eq(failures, 0, "%d of %d NFC cases differ", failures, n);
    /* invalid bytes pass through and break composition */
    char *got = NULL;
    size_t got_len = 0;
    cr_assert_eq(fgi_nfc("test", "e\xff\xcc\x81", 4, &got, &got_len), FG_OK);
    cr_assert(got_len == 4 && memcmp(got, "e\xff\xcc\x81", 4) == 0);
    free(got);
}

/* --- finding it beside a model -------------------------------------------- */

/* fg_tokenizer_load_for_model prefers tokenizer.json (what transformers
 * loads) to vocab.json + merges.txt; a GPT-2 tokenizer.json adds no BOS,
 * but an empty GPT-2 prompt still starts from <|endoftext|>. */
Test(tokenizer_json, found_beside_a_model_and_used_for_prompts)
{
    char dir[] = "/tmp/fg_tokjson_XXXXXX", json_path[128], vocab_path[128], merges_path[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(json_path, sizeof json_path, "%s/tokenizer.json", dir);
    snprintf(vocab_path, sizeof vocab_path, "%s/vocab.json", dir);
    snprintf(merges_path, sizeof merges_path, "%s/merges.txt", dir);
    size_t len;
    char *json = slurp(hf_path("gpt2", "tokenizer.json"), &len);
    FILE *f = fopen(json_path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(json, 1, len, f), len);
    fclose(f);
    free(json);
    /* a GPT-2 pair that would fail to load: it must not be read */
    f = fopen(vocab_path, "wb");
    fputs("{\"a\": 0}", f);
    fclose(f);
    f = fopen(merges_path, "wb");
    fclose(f);

    fg_tokenizer *tok = NULL;
    cr_assert_eq(fg_tokenizer_load_for_model(&tok, dir, NULL, 50257), FG_OK, "%s",
                 fg_last_error());
    cr_assert_eq(fg_tokenizer_vocab_size(tok), 700);
    fg_config cfg = fg_config_gpt2(2, 64, 2, 700, 64);
    int ids[64], n = 0;
    /* "<|endoftext|>" in the text is the special token, no BOS added */
    cr_assert_eq(fg_prompt_encode(tok, &cfg, "a<|endoftext|>", 14, ids, 64, &n), FG_OK, "%s",
                 fg_last_error());
    cr_assert(n == 2 && ids[1] == fg_tokenizer_bos(tok), "%d ids", n);
    n = -1;
    fgi_assert_status(fg_prompt_encode(tok, &cfg, NULL, 0, NULL, 0, &n), FG_ERR_INVALID_ARG,
                      "capacity");
    cr_assert_eq(n, 1);
    cr_assert_eq(fg_prompt_encode(tok, &cfg, NULL, 0, ids, 64, &n), FG_OK);
    cr_assert(n == 1 && ids[0] == fg_tokenizer_bos(tok));
    fg_tokenizer_destroy(tok);
    /* the explicit forms: the folder, and the file */
    cr_assert_eq(fg_tokenizer_load_for_model(&tok, NULL, dir, 1), FG_OK, "%s", fg_last_error());
    fg_tokenizer_destroy(tok);
    cr_assert_eq(fg_tokenizer_load_for_model(&tok, NULL, json_path, 1), FG_OK, "%s",
                 fg_last_error());
    fg_tokenizer_destroy(tok);
    /* vocab.json named explicitly is still GPT-2's (and this one is broken) */
    cr_assert_eq(fg_tokenizer_load_for_model(&tok, NULL, vocab_path, 1), FG_ERR_FORMAT);
    unlink(json_path), unlink(vocab_path), unlink(merges_path);
    rmdir(dir);
}
