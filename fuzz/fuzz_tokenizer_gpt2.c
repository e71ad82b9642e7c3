/* libFuzzer target: GPT-2 tokenizer files. The input is vocab.json up to the
 * first NUL byte and merges.txt after it. When the pair loads, a few texts
 * (fixed ones and slices of the input) must round-trip through encode and
 * decode, the streamed pieces must match decode, and every id must be in
 * the vocabulary; any violation aborts. */
#include "message_check.h"
#include "tokenizer_check.h"
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
        fuzz_check_message();
        return 0;
    }
    static const char *const samples[] = {
        "Hello world", "", " ", "don't  stop\n\n believing 123 !!", "\xff\xc3 \xe2\x80",
        "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\t\r\n'll'S"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
        fuzz_check_text(tok, samples[i], strlen(samples[i]), 0);
    fuzz_check_text(tok, text, vocab_len < 200 ? vocab_len : 200, 0);
    fuzz_check_text(tok, merges, merges_len < 200 ? merges_len : 200, 0);
    if (fg_tokenizer_bos(tok) >= 0) fuzz_check_text(tok, samples[3], strlen(samples[3]), 1);
    fg_tokenizer_destroy(tok);
    fuzz_check_message();
    return 0;
}
