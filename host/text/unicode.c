/* UTF-8, character classes and NFC for the tokenizers (see unicode.h).
 *
 * NFC follows UAX #15: full canonical decomposition (the one-level table
 * applied recursively, Hangul by arithmetic), canonical ordering of each
 * run of non-starters by combining class (stable), then canonical
 * composition, where a character joins the last starter unless a character
 * between them has class 0 or a class >= its own. Text is processed in
 * runs between invalid bytes; an all-ASCII run is already NFC. */
#include "unicode.h"

#include "check.h"
#include "unicode_nfc.h"
#include "unicode_tables.h"

#include <stdlib.h>
#include <string.h>

size_t fgi_utf8_sequence(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    size_t need;
    uint32_t v;
    if (b0 >= 0xC2 && b0 <= 0xDF) need = 2, v = b0 & 0x1Fu;
    else if (b0 >= 0xE0 && b0 <= 0xEF) need = 3, v = b0 & 0x0Fu;
    else if (b0 >= 0xF0 && b0 <= 0xF4) need = 4, v = b0 & 0x07u;
    else return 0;
    if (n < need) return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    if ((need == 3 && v < 0x800) || (need == 4 && v < 0x10000) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return need;
}

size_t fgi_utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int in_ranges(const uint32_t (*ranges)[2], size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n; /* first range with last >= cp */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ranges[mid][1] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && ranges[lo][0] <= cp;
}

#define IN_TABLE(table, cp) in_ranges(table, sizeof table / sizeof table[0], cp)

fgi_char_class fgi_char_class_of(uint32_t cp)
{
    if (IN_TABLE(fgi_unicode_whitespace, cp)) return FGI_CHAR_SPACE;
    if (IN_TABLE(fgi_unicode_letter, cp)) return FGI_CHAR_LETTER;
    if (IN_TABLE(fgi_unicode_number, cp)) return FGI_CHAR_NUMBER;
    return FGI_CHAR_OTHER;
}

fgi_char_class fgi_char_at(const unsigned char *s, size_t len, size_t pos, size_t *n)
{
    uint32_t cp;
    *n = fgi_utf8_sequence(s + pos, len - pos, &cp);
    if (*n == 0) {
        *n = 1;
        return FGI_CHAR_OTHER;
    }
    return fgi_char_class_of(cp);
}

static int byte_is_printable(int b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t fgi_byte_to_codepoint(int b)
{
    if (byte_is_printable(b)) return (uint32_t)b;
    uint32_t k = 0;
    for (int x = 0; x < b; x++) k += !byte_is_printable(x);
    return 256 + k;
}

/* --- NFC ------------------------------------------------------------------ */

enum {
    HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7,
    HANGUL_L_COUNT = 19, HANGUL_V_COUNT = 21, HANGUL_T_COUNT = 28,
    HANGUL_N = HANGUL_V_COUNT * HANGUL_T_COUNT, HANGUL_S_COUNT = HANGUL_L_COUNT * HANGUL_N
};

static int ccc_of(uint32_t cp)
{
    size_t lo = 0, hi = sizeof fgi_nfc_ccc / sizeof fgi_nfc_ccc[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (fgi_nfc_ccc[mid][1] < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < sizeof fgi_nfc_ccc / sizeof fgi_nfc_ccc[0] && fgi_nfc_ccc[lo][0] <= cp)
        return (int)fgi_nfc_ccc[lo][2];
    return 0;
}

static const uint32_t *decomposition_of(uint32_t cp)
{
    size_t lo = 0, hi = sizeof fgi_nfc_decompose / sizeof fgi_nfc_decompose[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (fgi_nfc_decompose[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < sizeof fgi_nfc_decompose / sizeof fgi_nfc_decompose[0] &&
        fgi_nfc_decompose[lo][0] == cp)
        return fgi_nfc_decompose[lo];
    return NULL;
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a >= HANGUL_L && a < HANGUL_L + HANGUL_L_COUNT && b >= HANGUL_V &&
        b < HANGUL_V + HANGUL_V_COUNT)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_V_COUNT + (b - HANGUL_V)) * HANGUL_T_COUNT;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_S_COUNT && (a - HANGUL_S) % HANGUL_T_COUNT == 0 &&
        b > HANGUL_T && b < HANGUL_T + HANGUL_T_COUNT)
        return a + (b - HANGUL_T);
    size_t lo = 0, hi = sizeof fgi_nfc_compose / sizeof fgi_nfc_compose[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint32_t *r = fgi_nfc_compose[mid];
        if (r[0] < a || (r[0] == a && r[1] < b)) lo = mid + 1;
        else hi = mid;
    }
    if (lo < sizeof fgi_nfc_compose / sizeof fgi_nfc_compose[0] && fgi_nfc_compose[lo][0] == a &&
        fgi_nfc_compose[lo][1] == b)
        return fgi_nfc_compose[lo][2];
    return 0;
}

/* Writes the full canonical decomposition of cp to buf (at most 4 code
 * points, 1.5 per byte of cp's UTF-8). */
static size_t decompose(uint32_t cp, uint32_t *buf)
{
    if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_S_COUNT) {
        uint32_t s = cp - HANGUL_S, t = s % HANGUL_T_COUNT;
        buf[0] = HANGUL_L + s / HANGUL_N;
        buf[1] = HANGUL_V + (s % HANGUL_N) / HANGUL_T_COUNT;
        if (t == 0) return 2;
        buf[2] = HANGUL_T + t;
        return 3;
    }
    const uint32_t *d = decomposition_of(cp);
    if (d == NULL) {
        buf[0] = cp;
        return 1;
    }
    size_t n = decompose(d[1], buf);
    if (d[2] != 0) n += decompose(d[2], buf + n);
    return n;
}

/* Stable sort of a run of non-starters by combining class: insertion sort
 * for the usual short runs, a counting sort through tmp (room for n) for
 * long ones, since text may hold any number of marks in a row. */
static void sort_run(uint32_t *r, size_t n, uint32_t *tmp)
{
    if (n < 32) {
        for (size_t i = 1; i < n; i++) {
            uint32_t v = r[i];
            int c = ccc_of(v);
            size_t j = i;
            while (j > 0 && ccc_of(r[j - 1]) > c) {
                r[j] = r[j - 1];
                j--;
            }
            r[j] = v;
        }
        return;
    }
    size_t start[257] = {0};
    for (size_t i = 0; i < n; i++) start[ccc_of(r[i]) + 1]++;
    for (int c = 1; c <= 256; c++) start[c] += start[c - 1];
    for (size_t i = 0; i < n; i++) tmp[start[ccc_of(r[i])]++] = r[i];
    memcpy(r, tmp, n * sizeof *r);
}

/* NFC of the code points cps[0 .. n) in place (tmp: room for n); returns
 * the new count. */
static size_t nfc_codepoints(uint32_t *cps, size_t n, uint32_t *tmp)
{
    /* canonical ordering: each run of non-starters stably sorted by class */
    for (size_t i = 0; i < n;) {
        if (ccc_of(cps[i]) == 0) {
            i++;
            continue;
        }
        size_t end = i;
        while (end < n && ccc_of(cps[end]) != 0) end++;
        sort_run(cps + i, end - i, tmp);
        i = end;
    }
    if (n == 0) return 0;
    size_t starter = 0, kept = 1;
    int last_class = ccc_of(cps[0]) ? 256 : 0;
    for (size_t i = 1; i < n; i++) {
        uint32_t ch = cps[i];
        int c = ccc_of(ch);
        uint32_t composite = last_class == 256 ? 0 : compose_pair(cps[starter], ch);
        if (composite != 0 && (last_class < c || last_class == 0)) {
            cps[starter] = composite;
            continue;
        }
        if (c == 0) starter = kept;
        last_class = c;
        cps[kept++] = ch;
    }
    return kept;
}

fg_status fgi_nfc(const char *fn, const char *in, size_t n, char **out, size_t *out_len)
{
    /* Canonical decomposition gives at most 1.5 code points and 3 bytes of
     * UTF-8 per source byte (checked over all of Unicode by the table
     * generator's author; composition only shrinks it again), so 2 code
     * points and 3 bytes per input byte always suffice. */
    const unsigned char *s = (const unsigned char *)in;
    uint32_t *cps = NULL;
    char *res = NULL;
    FGI_TRY(fgi_alloc(fn, (void **)&cps, 2 * (2 * n + 4), sizeof *cps));
    uint32_t *tmp = cps + 2 * n + 4;
    fg_status st = fgi_alloc(fn, (void **)&res, 3 * n + 4, 1);
    if (st != FG_OK) {
        free(cps);
        return st;
    }
    size_t at = 0, pos = 0;
    while (pos < n) {
        /* one run of valid UTF-8 */
        size_t count = 0;
        uint32_t cp;
        size_t k;
        while (pos < n && (k = fgi_utf8_sequence(s + pos, n - pos, &cp)) > 0) {
            count += decompose(cp, cps + count);
            pos += k;
        }
        count = nfc_codepoints(cps, count, tmp);
        for (size_t i = 0; i < count; i++) at += fgi_utf8_encode(cps[i], res + at);
        if (pos < n) res[at++] = (char)s[pos++]; /* an invalid byte */
    }
    free(cps);
    *out = res;
    *out_len = at;
    return FG_OK;
}
