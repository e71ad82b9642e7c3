/* UTF-8 and Unicode helpers shared by the tokenizers: strict UTF-8 decoding
 * (a byte that does not start a valid sequence is reported, never guessed),
 * the character classes of the pre-tokeniser patterns (generated tables in
 * unicode_tables.h) and NFC (generated tables in unicode_nfc.h). */
#ifndef FLASHGPT_HOST_UNICODE_H
#define FLASHGPT_HOST_UNICODE_H

#include "flashgpt/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Length (1-4) of the valid UTF-8 sequence at s[0 .. n) (n >= 1) and its
 * code point, or 0 when s[0] does not start one (overlong forms,
 * surrogates, stray continuation bytes, truncation). */
size_t fgi_utf8_sequence(const unsigned char *s, size_t n, uint32_t *cp);

/* Writes cp (<= 0x10FFFF) as UTF-8 to out (room for 4); returns the length. */
size_t fgi_utf8_encode(uint32_t cp, char *out);

typedef enum {
    FGI_CHAR_LETTER, /* general category L* */
    FGI_CHAR_NUMBER, /* general category N* */
    FGI_CHAR_SPACE,  /* the White_Space property */
    FGI_CHAR_OTHER
} fgi_char_class;

fgi_char_class fgi_char_class_of(uint32_t cp);

/* Class and byte length of the character at s[pos] (pos < len); a byte that
 * starts no valid sequence is one character of class OTHER (like U+FFFD). */
fgi_char_class fgi_char_at(const unsigned char *s, size_t len, size_t pos, size_t *n);

/* GPT-2's byte-level alphabet: the code point that spells byte b. */
uint32_t fgi_byte_to_codepoint(int b);

/* NFC of in[0 .. n): a new buffer (*out, *out_len; free with free()).
 * Bytes that are not valid UTF-8 are copied as they are and end the
 * composition context, like a starter that composes with nothing. */
fg_status fgi_nfc(const char *fn, const char *in, size_t n, char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_HOST_UNICODE_H */
