/* Shared check of the tokenizer fuzz targets: text must encode to ids inside
 * the vocabulary (BOS first when asked), decode back to the same bytes
 * (after BOS's own bytes, which are none for llama2.c), and the streamed
 * pieces must concatenate to the decoded bytes; any violation aborts. */
#ifndef FLASHGPT_FUZZ_TOKENIZER_CHECK_H
#define FLASHGPT_FUZZ_TOKENIZER_CHECK_H

#include "flashgpt/tokenizer.h"

#include <stdlib.h>
#include <string.h>

static void fuzz_check_text(const fg_tokenizer *tok, const char *text, size_t len, int add_bos)
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

#endif /* FLASHGPT_FUZZ_TOKENIZER_CHECK_H */
