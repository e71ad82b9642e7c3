/* libFuzzer target: llama2.c tokenizer.bin. The first input byte chooses
 * vocab_size = 259 + byte (the file does not store it), the rest is the
 * file. When it loads, a few texts (fixed ones and a slice of the input)
 * must round-trip through encode and decode with and without BOS (BOS
 * decodes to nothing and the dummy space is dropped after it), the streamed
 * pieces must match decode and every id must be in the vocabulary; any
 * violation aborts. */
#include "message_check.h"
#include "tokenizer_check.h"
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const int vocab_size = 259 + data[0];
    fg_tokenizer *tok = NULL;
    fg_status st = fgi_tokenizer_llama2c_from_memory(&tok, data + 1, size - 1, vocab_size,
                                                     "tokenizer.bin");
    if (st != FG_OK) {
        if (tok != NULL) abort();
        fuzz_check_message();
        return 0;
    }
    static const char *const samples[] = {
        "Once upon a time", "", " ", "  two spaces\n\n", "\xff\xc3 \xe2\x80\x80\x80",
        "<0x41>\n<s>\n caf\xc3\xa9 \xf0\x9f\x98\x80"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
        for (int bos = 0; bos < 2; bos++) fuzz_check_text(tok, samples[i], strlen(samples[i]), bos);
    size_t tail = size - 1 < 200 ? size - 1 : 200;
    fuzz_check_text(tok, (const char *)data + size - tail, tail, 1);
    fg_tokenizer_destroy(tok);
    fuzz_check_message();
    return 0;
}
