/* libFuzzer target: llama2.c tokenizer.bin. The first input byte chooses
 * vocab_size = 259 + byte (the file does not store it), the rest is the
 * file. When it loads, a few texts (fixed ones and a slice of the input)
 * must round-trip through encode and decode with and without BOS (BOS
 * decodes to nothing and the dummy space is dropped after it), the streamed
 * pieces must match decode and every id must be in the vocabulary; any
 * violation aborts. */
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const fg_tokenizer *tok, const char *text, size_t len, int add_bos)
{
    int n = 0;
    if (fg_tokenizer_encode(tok, text, len, add_bos, NULL, 0, &n) == FG_OK && n != 0) abort();
    int *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (ids == NULL) return;
    int n2 = -1;
    if (fg_tokenizer_encode(tok, text, len, add_bos, ids, n, &n2) != FG_OK || n2 != n) abort();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= fg_tokenizer_vocab_size(tok)) abort();
    if (add_bos && (n < 1 || ids[0] != 1)) abort();

    size_t need = 0, got = 0;
    fg_tokenizer_decode(tok, ids, n, NULL, 0, &need);
    char *out = malloc(need + 1);
    if (out != NULL) {
        if (fg_tokenizer_decode(tok, ids, n, out, need, &got) != FG_OK || got != need) abort();
        if (need != len || memcmp(out, text, len) != 0) abort();
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
    if (size < 1) return 0;
    const int vocab_size = 259 + data[0];
    fg_tokenizer *tok = NULL;
    fg_status st = fgi_tokenizer_llama2c_from_memory(&tok, data + 1, size - 1, vocab_size,
                                                     "tokenizer.bin");
    if (st != FG_OK) {
        if (tok != NULL) abort();
        return 0;
    }
    static const char *const samples[] = {
        "Once upon a time", "", " ", "  two spaces\n\n", "\xff\xc3 \xe2\x80\x80\x80",
        "<0x41>\n<s>\n caf\xc3\xa9 \xf0\x9f\x98\x80"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
        for (int bos = 0; bos < 2; bos++) check_text(tok, samples[i], strlen(samples[i]), bos);
    size_t tail = size - 1 < 200 ? size - 1 : 200;
    check_text(tok, (const char *)data + size - tail, tail, 1);
    fg_tokenizer_destroy(tok);
    return 0;
}
