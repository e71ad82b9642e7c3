/* libFuzzer target: GPT-2 tokenizer files. The input is vocab.json up to the
 * first NUL byte and merges.txt after it. When the pair loads, a few texts
 * (fixed ones and slices of the input) must round-trip through encode and
 * decode, the streamed pieces must match decode, and every id must be in
 * the vocabulary; any violation aborts. */
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
    if (add_bos && (n < 1 || ids[0] != fg_tokenizer_bos(tok))) abort();

    size_t need = 0, got = 0;
    fg_tokenizer_decode(tok, ids, n, NULL, 0, &need);
    char *out = malloc(need + 1);
    if (out != NULL) {
        if (fg_tokenizer_decode(tok, ids, n, out, need, &got) != FG_OK || got != need) abort();
        /* without BOS the bytes come back; with it, BOS's own bytes lead */
        size_t skip = 0;
        if (add_bos && fg_tokenizer_piece(tok, -1, ids[0], &(const char *){NULL}, &skip) != FG_OK)
            abort();
        if (need != skip + len || memcmp(out + skip, text, len) != 0) abort();
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
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t vocab_len = nul ? (size_t)(nul - text) : size;
    const char *merges = nul ? nul + 1 : text + size;
    size_t merges_len = size - vocab_len - (nul ? 1 : 0);

    fg_tokenizer *tok = NULL;
    fg_status st = fgi_tokenizer_gpt2_from_memory(&tok, text, vocab_len, merges, merges_len,
                                                  "vocab.json", "merges.txt");
    if (st != FG_OK) {
        if (tok != NULL) abort();
        return 0;
    }
    static const char *const samples[] = {
        "Hello world", "", " ", "don't  stop\n\n believing 123 !!", "\xff\xc3 \xe2\x80",
        "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\t\r\n'll'S"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
        check_text(tok, samples[i], strlen(samples[i]), 0);
    check_text(tok, text, vocab_len < 200 ? vocab_len : 200, 0);
    check_text(tok, merges, merges_len < 200 ? merges_len : 200, 0);
    if (fg_tokenizer_bos(tok) >= 0) check_text(tok, samples[3], strlen(samples[3]), 1);
    fg_tokenizer_destroy(tok);
    return 0;
}
