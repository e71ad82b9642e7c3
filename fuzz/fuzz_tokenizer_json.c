/* libFuzzer target: Hugging Face tokenizer.json. The input is the file up to
 * the first NUL byte and a text after it. When the file loads, the text,
 * fixed samples and a slice of the file are encoded with every flag
 * combination: the sizing call and the filling call must agree, every id
 * must be in the vocabulary, decode must succeed and the streamed pieces
 * must concatenate to it; where the file cannot change the text (no
 * normalizer, byte-level words, no unk) nothing is checked beyond that,
 * since a normalizer or a dropped character legitimately changes it. Any
 * violation aborts; a refused file must leave *tok NULL and a one-line
 * message. */
#include "message_check.h"
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const fg_tokenizer *tok, const char *text, size_t len, unsigned flags)
{
    int n = -1;
    fg_status st = fg_tokenizer_encode_ex(tok, text, len, flags, NULL, 0, &n);
    if (st != FG_OK && st != FG_ERR_INVALID_ARG) abort();
    if (n < 0 || (st == FG_OK) != (n == 0)) abort();
    int *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (ids == NULL) return;
    int n2 = -1;
    if (fg_tokenizer_encode_ex(tok, text, len, flags, ids, n, &n2) != FG_OK || n2 != n) abort();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= fg_tokenizer_vocab_size(tok)) abort();
    size_t need = 0, got = 0;
    st = fg_tokenizer_decode(tok, ids, n, NULL, 0, &need);
    if (st != FG_OK && need == 0) abort();
    char *out = malloc(need + 1);
    if (out != NULL) {
        if (fg_tokenizer_decode(tok, ids, n, out, need, &got) != FG_OK || got != need) abort();
        size_t at = 0;
        for (int i = 0; i < n; i++) {
            const char *p;
            size_t k;
            if (fg_tokenizer_piece(tok, i ? ids[i - 1] : -1, ids[i], &p, &k) != FG_OK) abort();
            if (at + k > need || memcmp(out + at, p, k) != 0) abort();
            at += k;
        }
        if (at != need) abort();
        free(out);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data;
    const char *nul = memchr(json, '\0', size);
    size_t json_len = nul ? (size_t)(nul - json) : size;
    const char *text = nul ? nul + 1 : json + size;
    size_t text_len = size - json_len - (nul ? 1 : 0);

    fg_tokenizer *tok = NULL;
    fg_status st = fgi_tokenizer_json_from_memory(&tok, json, json_len, NULL, 0, "tokenizer.json");
    if (st != FG_OK) {
        if (tok != NULL) abort();
        fuzz_check_message();
        return 0;
    }
    static const char *const samples[] = {
        "Hello world", "", " ", "don't  stop\n\n believing 123456 !!", "\xff\xc3 \xe2\x80",
        "caf\xc3\xa9 cafe\xcc\x81 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\t\r\n'll'S",
        "<s>a</s> <|endoftext|><|im_start|>x"};
    for (unsigned flags = 0; flags < 4; flags++) {
        for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
            check(tok, samples[i], strlen(samples[i]), flags);
        check(tok, text, text_len, flags);
        check(tok, json, json_len < 200 ? json_len : 200, flags);
    }
    fg_tokenizer_destroy(tok);
    fuzz_check_message();
    return 0;
}
