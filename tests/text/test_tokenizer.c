/* Tokenizers (issue 4, item 3): GPT-2 byte-level BPE and llama2.c
 * tokenizer.bin. Small vocabularies are written by the tests (expected ids
 * follow from their construction, and random merge tables are checked
 * against a naive merge loop written here from the algorithms'
 * definitions); the real files under models/ (FG_MODELS_DIR) give the
 * documented known facts (skipped when FG_MODELS_DIR lacks them). Files go
 * to a mkdtemp directory that each test removes. */
#define _POSIX_C_SOURCE 200809L
#include "support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <cjson/cJSON.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- temporary files ------------------------------------------------------ */

static char tmp_dir[64];

static void make_tmp_dir(void)
{
    strcpy(tmp_dir, "/tmp/fg_tok_XXXXXX");
    cr_assert(mkdtemp(tmp_dir) != NULL, "mkdtemp failed");
}

static void remove_tmp_dir(void)
{
    DIR *d = opendir(tmp_dir);
    if (d == NULL) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmp_dir);
}

/* Path of `name` in the temporary directory (a ring of static buffers). */
static const char *tmp_path(const char *name)
{
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 512, "%s/%s", tmp_dir, name);
    return p;
}

static const char *write_file(const char *name, const void *data, size_t len)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "cannot create %s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
    return path;
}

/* --- growable byte buffer ------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
} bytes_buf;

static void buf_add(bytes_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        b->data = realloc(b->data, b->cap);
        cr_assert(b->data != NULL);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_str(bytes_buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_i32(bytes_buf *b, int32_t v)
{
    unsigned char p[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    buf_add(b, p, 4);
}

static void buf_f32(bytes_buf *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    buf_i32(b, (int32_t)u);
}

/* --- encode / decode helpers ---------------------------------------------- */

#define MAX_IDS 4096

/* Encodes and checks the output contract: *n_ids ids written, nothing past
 * them, exact capacity accepted. Returns the count. */
static int encode(const fg_tokenizer *tok, const char *text, size_t len, int add_bos,
                  int *ids)
{
    int n = -5;
    for (int i = 0; i < MAX_IDS; i++) ids[i] = INT_MIN;
    fg_status st = fg_tokenizer_encode(tok, text, len, add_bos, ids, MAX_IDS - 16, &n);
    cr_assert_eq(st, FG_OK, "encode of %zu bytes failed: %s (seed %llu)", len, fg_last_error(),
                 (unsigned long long)fgi_test_seed());
    cr_assert(n >= 0 && n <= MAX_IDS - 16);
    for (int i = 0; i < n; i++)
        cr_assert(ids[i] >= 0 && ids[i] < fg_tokenizer_vocab_size(tok), "ids[%d] = %d", i, ids[i]);
    for (int i = n; i < MAX_IDS; i++) cr_assert_eq(ids[i], INT_MIN, "encode wrote past *n_ids");
    return n;
}

/* Decodes ids and checks that the streamed pieces concatenate to the same
 * bytes. Returns a malloc'd buffer of *len bytes. */
static char *decode(const fg_tokenizer *tok, const int *ids, int n, size_t *len)
{
    size_t need = 0;
    fg_status st = fg_tokenizer_decode(tok, ids, n, NULL, 0, &need);
    cr_assert(st == FG_OK || st == FG_ERR_INVALID_ARG, "%s", fg_last_error());
    char *out = malloc(need + 64);
    memset(out, 0xA5, need + 64);
    size_t got = 0;
    cr_assert_eq(fg_tokenizer_decode(tok, ids, n, out, need, &got), FG_OK, "%s", fg_last_error());
    cr_assert_eq(got, need);
    for (size_t i = need; i < need + 64; i++)
        cr_assert_eq((unsigned char)out[i], 0xA5, "decode wrote past *len");

    bytes_buf streamed = {0};
    for (int i = 0; i < n; i++) {
        const char *piece = NULL;
        size_t piece_len = 0;
        cr_assert_eq(fg_tokenizer_piece(tok, i > 0 ? ids[i - 1] : -1, ids[i], &piece, &piece_len),
                     FG_OK, "%s", fg_last_error());
        buf_add(&streamed, piece, piece_len);
    }
    cr_assert_eq(streamed.len, need, "pieces give %zu bytes, decode %zu", streamed.len, need);
    cr_assert(need == 0 || memcmp(streamed.data, out, need) == 0, "pieces differ from decode");
    free(streamed.data);
    *len = got;
    return out;
}

static void assert_round_trip(const fg_tokenizer *tok, const char *text, size_t len,
                              int add_bos, const char *what)
{
    static int ids[MAX_IDS];
    int n = encode(tok, text, len, add_bos, ids);
    size_t back_len;
    char *back = decode(tok, ids, n, &back_len);
    cr_assert(back_len == len && memcmp(back, text, len) == 0,
              "%s: %zu bytes decode to %zu different bytes (seed %llu)", what, len, back_len,
              (unsigned long long)fgi_test_seed());
    free(back);
}

static void assert_ids(const int *got, int n_got, const int *want, int n_want, const char *what)
{
    cr_assert_eq(n_got, n_want, "%s: %d ids, expected %d (seed %llu)", what, n_got, n_want,
                 (unsigned long long)fgi_test_seed());
    for (int i = 0; i < n_want; i++)
        cr_assert_eq(got[i], want[i], "%s: ids[%d] = %d, expected %d (seed %llu)", what, i,
                     got[i], want[i], (unsigned long long)fgi_test_seed());
}

/* Random text: valid UTF-8 of every length class, or arbitrary bytes. */
static size_t random_utf8(fgi_rng *rng, char *out, size_t max_chars)
{
    size_t len = 0, n = (size_t)fgi_rng_int(rng, 0, (int)max_chars);
    for (size_t i = 0; i < n; i++) {
        uint32_t cp;
        switch (fgi_rng_int(rng, 0, 4)) {
        case 0: cp = (uint32_t)fgi_rng_int(rng, 0, 0x7F); break;
        case 1: cp = (uint32_t)fgi_rng_int(rng, 0x20, 0x7E); break;
        case 2: cp = (uint32_t)fgi_rng_int(rng, 0x80, 0x7FF); break;
        case 3: cp = (uint32_t)fgi_rng_int(rng, 0x800, 0xFFFF); break;
        default: cp = (uint32_t)fgi_rng_int(rng, 0x10000, 0x10FFFF); break;
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = ' ';
        if (cp < 0x80) out[len++] = (char)cp;
        else if (cp < 0x800) {
            out[len++] = (char)(0xC0 | (cp >> 6));
            out[len++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[len++] = (char)(0xE0 | (cp >> 12));
            out[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[len++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[len++] = (char)(0xF0 | (cp >> 18));
            out[len++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            out[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[len++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return len;
}

static size_t random_bytes(fgi_rng *rng, char *out, size_t max_len)
{
    size_t n = (size_t)fgi_rng_int(rng, 0, (int)max_len);
    for (size_t i = 0; i < n; i++) out[i] = (char)fgi_rng_int(rng, 0, 255);
    return n;
}

/* ============================ GPT-2 ======================================= */

/* GPT-2's byte alphabet by its definition: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes take U+0100.. in increasing byte order. */
static int latin1_printable(int b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static unsigned byte_char(int b)
{
    if (latin1_printable(b)) return (unsigned)b;
    unsigned k = 0;
    for (int x = 0; x < b; x++) k += !latin1_printable(x);
    return 256 + k;
}

/* Spelling of the bytes s[0 .. n): raw UTF-8 (merges.txt) or JSON escapes. */
static void spell(bytes_buf *b, const char *s, size_t n, int json)
{
    for (size_t i = 0; i < n; i++) {
        unsigned cp = byte_char((unsigned char)s[i]);
        char tmp[16];
        if (json) snprintf(tmp, sizeof tmp, "\\u%04X", cp);
        else if (cp < 0x80) snprintf(tmp, sizeof tmp, "%c", (char)cp);
        else snprintf(tmp, sizeof tmp, "%c%c", (char)(0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F)));
        buf_str(b, tmp);
    }
}

typedef struct {
    const char *left, *right; /* byte strings */
} merge_pair;

/* Writes vocab.json (byte b has id b, extra[i] id 256 + i, then optionally
 * <|endoftext|>) and merges.txt, and loads them. */
static fg_tokenizer *synthetic_gpt2(const char *const *extra, int n_extra,
                                    const merge_pair *merges, int n_merges, int with_eot)
{
    bytes_buf v = {0}, m = {0};
    char tmp[64];
    buf_str(&v, "{");
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        buf_str(&v, b ? ",\n\"" : "\"");
        spell(&v, &c, 1, 1);
        snprintf(tmp, sizeof tmp, "\": %d", b);
        buf_str(&v, tmp);
    }
    for (int i = 0; i < n_extra; i++) {
        buf_str(&v, ",\n\"");
        spell(&v, extra[i], strlen(extra[i]), 1);
        snprintf(tmp, sizeof tmp, "\": %d", 256 + i);
        buf_str(&v, tmp);
    }
    if (with_eot) {
        snprintf(tmp, sizeof tmp, ",\n\"<|endoftext|>\": %d", 256 + n_extra);
        buf_str(&v, tmp);
    }
    buf_str(&v, "}\n");
    buf_str(&m, "#version: 0.2\n");
    for (int i = 0; i < n_merges; i++) {
        spell(&m, merges[i].left, strlen(merges[i].left), 0);
        buf_str(&m, " ");
        spell(&m, merges[i].right, strlen(merges[i].right), 0);
        buf_str(&m, "\n");
    }
    const char *vp = write_file("vocab.json", v.data, v.len);
    const char *mp = write_file("merges.txt", m.data, m.len);
    fg_tokenizer *tok = NULL;
    cr_assert_eq(fg_tokenizer_load_gpt2(&tok, vp, mp), FG_OK, "%s", fg_last_error());
    free(v.data);
    free(m.data);
    return tok;
}

/* OpenAI's merge loop on one chunk, naively: repeatedly take the adjacent
 * pair of lowest rank and merge all its non-overlapping occurrences left to
 * right. Symbols are byte strings; ids: one byte b -> b, extra[i] -> 256+i. */
static int naive_gpt2(const char *text, const char *const *extra, int n_extra,
                      const merge_pair *merges, int n_merges, int *ids)
{
    char sym[64][64];
    int n = (int)strlen(text);
    for (int i = 0; i < n; i++) sym[i][0] = text[i], sym[i][1] = '\0';
    for (;;) {
        int best = -1;
        for (int i = 0; i + 1 < n; i++)
            for (int r = 0; r < n_merges; r++)
                if (strcmp(sym[i], merges[r].left) == 0 && strcmp(sym[i + 1], merges[r].right) == 0 &&
                    (best < 0 || r < best))
                    best = r;
        if (best < 0) break;
        int out = 0;
        for (int i = 0; i < n;) {
            if (i + 1 < n && strcmp(sym[i], merges[best].left) == 0 &&
                strcmp(sym[i + 1], merges[best].right) == 0) {
                size_t a = strlen(sym[i]), b = strlen(sym[i + 1]);
                cr_assert(a + b < sizeof sym[0]);
                memmove(sym[out], sym[i], a);
                memmove(sym[out] + a, sym[i + 1], b + 1);
                out++, i += 2;
            } else {
                memmove(sym[out], sym[i], sizeof sym[0]);
                out++, i++;
            }
        }
        n = out;
    }
    for (int i = 0; i < n; i++) {
        ids[i] = -1;
        if (strlen(sym[i]) == 1) ids[i] = (unsigned char)sym[i][0];
        for (int e = 0; e < n_extra; e++)
            if (strcmp(sym[i], extra[e]) == 0) ids[i] = 256 + e;
        cr_assert(ids[i] >= 0, "naive_gpt2: no id for \"%s\"", sym[i]);
    }
    return n;
}

static void check_gpt2_case(fg_tokenizer *tok, const char *text, const int *want, int n_want)
{
    int ids[MAX_IDS];
    int n = encode(tok, text, strlen(text), 0, ids);
    assert_ids(ids, n, want, n_want, text);
}

Test(gpt2_synthetic, merges_apply_lowest_rank_first, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    /* ab ranks before bc: "abc" -> ab, c -> abc; "abcab" -> abc, ab. */
    const char *extra[] = {"ab", "bc", "abc"};
    const merge_pair first_ab[] = {{"a", "b"}, {"b", "c"}, {"ab", "c"}};
    fg_tokenizer *tok = synthetic_gpt2(extra, 3, first_ab, 3, 1);
    check_gpt2_case(tok, "abc", (int[]){258}, 1);
    check_gpt2_case(tok, "abcab", (int[]){258, 256}, 2);
    check_gpt2_case(tok, "cab", (int[]){'c', 256}, 2);
    fg_tokenizer_destroy(tok);

    /* bc ranks first and no (a, bc) merge exists: "abc" -> a, bc. */
    const merge_pair first_bc[] = {{"b", "c"}, {"a", "b"}, {"ab", "c"}};
    tok = synthetic_gpt2(extra, 3, first_bc, 3, 1);
    check_gpt2_case(tok, "abc", (int[]){'a', 257}, 2);
    check_gpt2_case(tok, "abab", (int[]){256, 256}, 2);
    fg_tokenizer_destroy(tok);
}

Test(gpt2_synthetic, one_pass_merges_every_occurrence, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    /* (a, a) merges left to right without overlap; pairs the pass forms
     * wait for the next pass even when they rank lower (aa aa ranks 0). */
    const char *extra[] = {"aa", "aaaa"};
    const merge_pair merges[] = {{"aa", "aa"}, {"a", "a"}};
    fg_tokenizer *tok = synthetic_gpt2(extra, 2, merges, 2, 1);
    check_gpt2_case(tok, "a", (int[]){'a'}, 1);
    check_gpt2_case(tok, "aaa", (int[]){256, 'a'}, 2);
    check_gpt2_case(tok, "aaaa", (int[]){257}, 1);
    check_gpt2_case(tok, "aaaaa", (int[]){257, 'a'}, 2);
    check_gpt2_case(tok, "aaaaaaa", (int[]){257, 256, 'a'}, 3);
    fg_tokenizer_destroy(tok);
}

/* Merges never cross the pattern's chunks: each text below is split by
 * hand from the pattern, and the merges would join across every split. */
Test(gpt2_synthetic, merges_stay_inside_pretokens, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    const char *extra[] = {"'s", "'t", "'r", "'re", "'v", "'ve", "'m", "'l", "'ll", "'d",
                           "a!", " a", "a ", "!a", "1a", "a1", "\n ", "  ", "a\xff", "!\xff",
                           "!\t", "!\xe3", "!\xc2", "!\xc3", "!\xd9"};
    const merge_pair merges[] = {{"'", "s"}, {"'", "t"}, {"'", "r"}, {"'r", "e"}, {"'", "v"},
                                 {"'v", "e"}, {"'", "m"}, {"'", "l"}, {"'l", "l"}, {"'", "d"},
                                 {"a", "!"}, {" ", "a"}, {"a", " "}, {"!", "a"}, {"1", "a"},
                                 {"a", "1"}, {"\n", " "}, {" ", " "}, {"a", "\xff"},
                                 {"!", "\xff"}, {"!", "\t"}, {"!", "\xe3"}, {"!", "\xc2"},
                                 {"!", "\xc3"}, {"!", "\xd9"}};
    fg_tokenizer *tok = synthetic_gpt2(extra, 25, merges, 25, 1);
    const char *contractions[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    const int contraction_id[] = {256, 257, 259, 261, 262, 264, 265};
    for (int c = 0; c < 7; c++) { /* "a'xx": the contraction is one chunk */
        char text[8];
        snprintf(text, sizeof text, "a'%s", contractions[c]);
        check_gpt2_case(tok, text, (int[]){'a', contraction_id[c]}, 2);
    }
    check_gpt2_case(tok, "a'S", (int[]){'a', '\'', 'S'}, 3);   /* case-sensitive */
    check_gpt2_case(tok, "''s", (int[]){'\'', '\'', 's'}, 3); /* "''" is a punctuation run */
    check_gpt2_case(tok, "a!", (int[]){'a', '!'}, 2);
    check_gpt2_case(tok, "!a", (int[]){'!', 'a'}, 2);
    check_gpt2_case(tok, "1a", (int[]){'1', 'a'}, 2);
    check_gpt2_case(tok, "a1", (int[]){'a', '1'}, 2);
    check_gpt2_case(tok, " a", (int[]){267}, 1);
    check_gpt2_case(tok, "a a", (int[]){'a', 267}, 2);
    check_gpt2_case(tok, "a \na", (int[]){'a', ' ', '\n', 'a'}, 4);
    check_gpt2_case(tok, "\n a", (int[]){'\n', 267}, 2);  /* \s+(?!\S) stops before " a" */
    check_gpt2_case(tok, "   a", (int[]){273, 267}, 2);
    check_gpt2_case(tok, "a   ", (int[]){'a', 273, ' '}, 3); /* trailing run: one chunk */
    /* Character classes: invalid UTF-8 is punctuation ("other"); below, the
     * first text of each pair starts a new chunk after "!", the second
     * (a punctuation or mark character) continues the "!" run and merges. */
    check_gpt2_case(tok, "a\xff", (int[]){'a', 0xFF}, 2);
    check_gpt2_case(tok, "!\xff", (int[]){275}, 1);
    check_gpt2_case(tok, "!\t", (int[]){'!', '\t'}, 2);
    check_gpt2_case(tok, "!\xe3\x80\x80", (int[]){'!', 0xE3, 0x80, 0x80}, 4); /* U+3000 space */
    check_gpt2_case(tok, "!\xe3\x81\x82", (int[]){'!', 0xE3, 0x81, 0x82}, 4); /* U+3042 letter */
    check_gpt2_case(tok, "!\xe3\x80\x81", (int[]){277, 0x80, 0x81}, 3);     /* U+3001 Po */
    check_gpt2_case(tok, "!\xc2\xa0", (int[]){'!', 0xC2, 0xA0}, 3);          /* U+00A0 space */
    check_gpt2_case(tok, "!\xc2\xa1", (int[]){278, 0xA1}, 2);                /* U+00A1 Po */
    check_gpt2_case(tok, "!\xc3\xa9", (int[]){'!', 0xC3, 0xA9}, 3);          /* U+00E9 letter */
    check_gpt2_case(tok, "!\xc3\x97", (int[]){279, 0x97}, 2);                /* U+00D7 Sm */
    check_gpt2_case(tok, "!\xd9\xa3", (int[]){'!', 0xD9, 0xA3}, 3);          /* U+0663 Nd */
    check_gpt2_case(tok, "!\xd9\x8b", (int[]){280, 0x8B}, 2);                /* U+064B Mn */
    fg_tokenizer_destroy(tok);
}

/* Random merge tables over {a, b, c} in random priority order against the
 * naive loop; letters only, so each text is a single pre-token chunk. */
Test(gpt2_synthetic, random_merge_tables_match_naive_loop, .init = make_tmp_dir,
     .fini = remove_tmp_dir)
{
    fgi_rng rng = fgi_rng_make(100);
    for (int table = 0; table < 12; table++) {
        static char tokens[40][16];
        const char *extra[40];
        merge_pair merges[40];
        const char *pool[43] = {"a", "b", "c"};
        int n_extra = 0, n_pool = 3;
        for (int tries = 0; tries < 400 && n_extra < 30; tries++) {
            const char *x = pool[fgi_rng_int(&rng, 0, n_pool - 1)];
            const char *y = pool[fgi_rng_int(&rng, 0, n_pool - 1)];
            char joined[32];
            snprintf(joined, sizeof joined, "%s%s", x, y);
            int known = strlen(joined) > 8;
            for (int i = 0; i < n_pool && !known; i++) known = strcmp(pool[i], joined) == 0;
            if (known) continue;
            strcpy(tokens[n_extra], joined);
            extra[n_extra] = tokens[n_extra];
            merges[n_extra] = (merge_pair){x, y};
            pool[n_pool++] = tokens[n_extra];
            n_extra++;
        }
        for (int i = n_extra - 1; i > 0; i--) { /* shuffle the priorities */
            int j = fgi_rng_int(&rng, 0, i);
            merge_pair t = merges[i];
            merges[i] = merges[j];
            merges[j] = t;
        }
        fg_tokenizer *tok = synthetic_gpt2(extra, n_extra, merges, n_extra, 0);
        for (int k = 0; k < 40; k++) {
            char text[64];
            int len = fgi_rng_int(&rng, 1, 40);
            for (int i = 0; i < len; i++) text[i] = (char)('a' + fgi_rng_int(&rng, 0, 2));
            text[len] = '\0';
            int want[64], got[MAX_IDS];
            int n_want = naive_gpt2(text, extra, n_extra, merges, n_extra, want);
            int n_got = encode(tok, text, (size_t)len, 0, got);
            assert_ids(got, n_got, want, n_want, text);
        }
        fg_tokenizer_destroy(tok);
    }
}

Test(gpt2_synthetic, bytes_round_trip_and_bos, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    fg_tokenizer *tok = synthetic_gpt2(NULL, 0, NULL, 0, 1);
    cr_assert_eq(fg_tokenizer_vocab_size(tok), 257);
    cr_assert_eq(fg_tokenizer_bos(tok), 256);
    cr_assert_eq(fg_tokenizer_eos(tok), 256);
    int ids[MAX_IDS];
    for (int b = 0; b < 256; b++) { /* byte b was given id b */
        char c = (char)b;
        int n = encode(tok, &c, 1, 0, ids);
        assert_ids(ids, n, (int[]){b}, 1, "single byte");
    }
    static const char eot[] = "<|endoftext|>";
    int n = encode(tok, "x", 1, 1, ids);
    assert_ids(ids, n, (int[]){256, 'x'}, 2, "add_bos");
    size_t len;
    char *back = decode(tok, ids, n, &len);
    cr_assert(len == sizeof eot && memcmp(back, eot, sizeof eot - 1) == 0 && back[len - 1] == 'x');
    free(back);
    fgi_rng rng = fgi_rng_make(101);
    char text[1024];
    for (int k = 0; k < 50; k++) {
        size_t tl = random_bytes(&rng, text, 300);
        assert_round_trip(tok, text, tl, 0, "synthetic bytes");
    }
    fg_tokenizer_destroy(tok);

    tok = synthetic_gpt2(NULL, 0, NULL, 0, 0); /* no <|endoftext|>: no BOS */
    cr_assert_eq(fg_tokenizer_bos(tok), -1);
    cr_assert_eq(fg_tokenizer_eos(tok), -1);
    fgi_assert_status(fg_tokenizer_encode(tok, "x", 1, 1, ids, 8, &n), FG_ERR_INVALID_ARG,
                     "no BOS");
    fg_tokenizer_destroy(tok);
}

/* --- malformed GPT-2 files --- */

/* A valid vocab.json text of the 256 byte tokens plus `tail` (which starts
 * with "," to add entries) and the closing brace. */
static void byte_vocab(bytes_buf *v, const char *tail, int skip_byte)
{
    char tmp[32];
    int first = 1;
    buf_str(v, "{");
    for (int b = 0; b < 256; b++) {
        if (b == skip_byte) continue;
        char c = (char)b;
        buf_str(v, first ? "\"" : ",\"");
        first = 0;
        spell(v, &c, 1, 1);
        snprintf(tmp, sizeof tmp, "\": %d", b < skip_byte || skip_byte < 0 ? b : b - 1);
        buf_str(v, tmp);
    }
    buf_str(v, tail);
    buf_str(v, "}");
}

static void expect_gpt2_format_error(const char *vocab, size_t vocab_len, const char *merges,
                                     const char *needle)
{
    const char *vp = write_file("vocab.json", vocab, vocab_len);
    const char *mp = write_file("merges.txt", merges, strlen(merges));
    fg_tokenizer *tok = (fg_tokenizer *)&tok; /* must stay untouched */
    fg_tokenizer *const before = tok;
    fgi_assert_status(fg_tokenizer_load_gpt2(&tok, vp, mp), FG_ERR_FORMAT, needle);
    cr_assert(tok == before, "a failed load wrote *tok");
    const char *file = strstr(needle, "line") ? "merges.txt" : "vocab.json";
    cr_assert(strstr(fg_last_error(), file) != NULL, "message \"%s\" does not name %s",
              fg_last_error(), file);
}

Test(gpt2_files, malformed_vocab_is_a_format_error, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    static const struct {
        const char *tail, *needle;
    } cases[] = {
        {",\"ab\": 256,", "not valid JSON"},          /* trailing comma */
        {",\"ab\": \"256\"", "not a number"},
        {",\"ab\": 256.5", "not an integer"},
        {",\"ab\": -1", "not an integer"},
        {",\"ab\": 257", "not an integer in [0, 257)"}, /* ids must be 0 .. n-1 */
        {",\"ab\": 1e300", "not an integer"},
        {",\"ab\": 5", "used twice"},
        {",\"ab\": true", "not a number"},
        {",\"ab\": null", "not a number"},
        {",\"ab\": [256]", "not a number"},
        {",\"\": 256", "empty spelling"},
        {",\"\\u0041\": 256", "same spelling"},      /* "A" again */
        {",\"\xff\": 256", "invalid UTF-8"},
        {",\"\xc0\x80\": 256", "invalid UTF-8"},      /* overlong NUL */
        {",\"\xed\xa0\x80\": 256", "invalid UTF-8"},  /* surrogate */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bytes_buf v = {0};
        byte_vocab(&v, cases[i].tail, -1);
        expect_gpt2_format_error(v.data, v.len, "", cases[i].needle);
        free(v.data);
    }
    bytes_buf v = {0};
    byte_vocab(&v, "", 0x41); /* 'A' missing: every byte needs a token */
    expect_gpt2_format_error(v.data, v.len, "", "no token for byte 0x41");
    v.len = 0;
    byte_vocab(&v, "", -1);
    buf_str(&v, " {}"); /* data after the object */
    expect_gpt2_format_error(v.data, v.len, "", "after the JSON object");
    free(v.data);
    const char *others[][2] = {{"[1, 2]", "JSON object"}, {"{}", "JSON object"},
                               {"\"text\"", "JSON object"}, {"", "not valid JSON"},
                               {"{\"a\": 0", "not valid JSON"}, {"\x01\x02", "not valid JSON"}};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        expect_gpt2_format_error(others[i][0], strlen(others[i][0]), "", others[i][1]);
}

Test(gpt2_files, malformed_merges_are_a_format_error, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    bytes_buf v = {0};
    byte_vocab(&v, ",\"ab\": 256, \"abc\": 257", -1);
    static const struct {
        const char *merges, *needle;
    } cases[] = {
        {"#version: 0.2\nab\n", "line 2: expected \"left right\""},
        {"a b\nab  c\n", "line 2: expected \"left right\""},
        {"a b c\n", "line 1: expected \"left right\""},
        {" a\n", "line 1: expected"},
        {"a \n", "line 1: expected"},
        {"a b\na b\n", "line 2: repeats the merge of rank 0"},
        {"a x\n", "line 1: the merged token \"ax\" is not in the vocabulary"},
        {"ab abc\n", "line 1: the merged token \"ababc\" is not"}, /* longer than any token */
        {"a b\nab zz\n", "line 2: token \"zz\" is not in the vocabulary"},
        {"a b\nq\xc4\xa0 c\n", "line 2: token"},
        {"#version: 0.2\n#version: 0.2\n", "line 2: token \"#version:\""}, /* line 1 only */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_gpt2_format_error(v.data, v.len, cases[i].merges, cases[i].needle);

    /* The same files with sound merges load (so the cases above fail for
     * the reason given), also with CRLF line ends and no header. */
    const char *good[] = {"#version: 0.2\na b\nab c\n", "a b\r\nab c\r\n", "a b\nab c"};
    for (size_t i = 0; i < 3; i++) {
        const char *vp = write_file("vocab.json", v.data, v.len);
        const char *mp = write_file("merges.txt", good[i], strlen(good[i]));
        fg_tokenizer *tok = NULL;
        cr_assert_eq(fg_tokenizer_load_gpt2(&tok, vp, mp), FG_OK, "%s", fg_last_error());
        int ids[MAX_IDS];
        int n = encode(tok, "abc", 3, 0, ids);
        assert_ids(ids, n, (int[]){257}, 1, good[i]);
        fg_tokenizer_destroy(tok);
    }
    free(v.data);
}

Test(gpt2_files, missing_files_are_io_errors, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    bytes_buf v = {0};
    byte_vocab(&v, "", -1);
    const char *vp = write_file("vocab.json", v.data, v.len);
    const char *mp = write_file("merges.txt", "", 0);
    fg_tokenizer *tok = NULL;
    fgi_assert_status(fg_tokenizer_load_gpt2(&tok, tmp_path("absent.json"), mp), FG_ERR_IO,
                     "absent.json");
    fgi_assert_status(fg_tokenizer_load_gpt2(&tok, vp, tmp_path("absent.txt")), FG_ERR_IO,
                     "absent.txt");
    fgi_assert_status(fg_tokenizer_load_gpt2(&tok, tmp_dir, mp), FG_ERR_IO, "regular file");
    fgi_assert_status(fg_tokenizer_load_gpt2(NULL, vp, mp), FG_ERR_INVALID_ARG, "'tok'");
    fgi_assert_status(fg_tokenizer_load_gpt2(&tok, NULL, mp), FG_ERR_INVALID_ARG,
                     "'vocab_json_path'");
    fgi_assert_status(fg_tokenizer_load_gpt2(&tok, vp, NULL), FG_ERR_INVALID_ARG,
                     "'merges_txt_path'");
    cr_assert(tok == NULL);
    cr_assert_eq(fg_tokenizer_load_gpt2(&tok, vp, mp), FG_OK, "%s", fg_last_error());
    fg_tokenizer_destroy(tok);
    free(v.data);
}

/* --- the real GPT-2 vocabulary --- */

static fg_tokenizer *real_gpt2(void)
{
    const char *found = fgi_model_path("gpt2-tokenizer/encoder.json");
    if (found == NULL) cr_skip_test("gpt2-tokenizer/encoder.json not found under FG_MODELS_DIR");
    char vocab[4096];
    snprintf(vocab, sizeof vocab, "%s", found);
    const char *merges = fgi_model_path("gpt2-tokenizer/vocab.bpe");
    if (merges == NULL) cr_skip_test("gpt2-tokenizer/vocab.bpe is absent");
    fg_tokenizer *tok = NULL;
    cr_assert_eq(fg_tokenizer_load_gpt2(&tok, vocab, merges), FG_OK, "%s", fg_last_error());
    return tok;
}

Test(gpt2_real, hello_world_and_special_token)
{
    fg_tokenizer *tok = real_gpt2();
    cr_assert_eq(fg_tokenizer_vocab_size(tok), 50257);
    cr_assert_eq(fg_tokenizer_bos(tok), 50256);
    cr_assert_eq(fg_tokenizer_eos(tok), 50256);
    int ids[MAX_IDS];
    int n = encode(tok, "Hello world", 11, 0, ids);
    assert_ids(ids, n, (int[]){15496, 995}, 2, "Hello world");
    n = encode(tok, "Hello world", 11, 1, ids);
    assert_ids(ids, n, (int[]){50256, 15496, 995}, 3, "Hello world with BOS");
    fg_tokenizer_destroy(tok);
}

/* Every vocabulary entry spelled as an optional 'Ġ' (space) plus ASCII
 * letters, and each of the seven contractions, is one pre-token chunk and
 * must encode to exactly its own id;
 * the (spelling, id) pairs come from encoder.json read here with cJSON. */
Test(gpt2_real, every_word_token_encodes_to_itself)
{
    fg_tokenizer *tok = real_gpt2();
    FILE *f = fopen(fgi_model_path("gpt2-tokenizer/encoder.json"), "rb");
    cr_assert(f != NULL);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *json = malloc((size_t)size);
    cr_assert_eq(fread(json, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    cJSON *root = cJSON_ParseWithLength(json, (size_t)size);
    cr_assert(root != NULL);
    int checked = 0, ids[MAX_IDS];
    for (const cJSON *e = root->child; e != NULL; e = e->next) {
        const char *s = e->string;
        char word[128];
        size_t len = 0;
        if (strncmp(s, "\xc4\xa0", 2) == 0) { /* U+0120 'Ġ' spells the space */
            word[len++] = ' ';
            s += 2;
        }
        int letters = *s != '\0' && strlen(s) < 100;
        for (const char *p = s; *p && letters; p++)
            letters = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z');
        static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
        for (int c = 0; c < 7 && !letters; c++) letters = len == 0 && strcmp(s, contractions[c]) == 0;
        if (!letters) continue;
        memcpy(word + len, s, strlen(s));
        len += strlen(s);
        int n = encode(tok, word, len, 0, ids);
        cr_assert(n == 1 && ids[0] == e->valueint, "\"%.*s\" encodes to %d ids (first %d), not [%d]",
                  (int)len, word, n, ids[0], e->valueint);
        checked++;
    }
    cr_assert(checked > 30000, "only %d word tokens found", checked);
    cJSON_Delete(root);
    free(json);
    fg_tokenizer_destroy(tok);
}

/* The pre-tokeniser splits like GPT-2's pattern: texts are built from
 * chunks that the pattern must keep apart (a leading-space word, number or
 * punctuation run, a contraction after a word or number, a whitespace run
 * before a leading-space chunk or at the end), and the encoding of the
 * whole must be the concatenation of the chunks' encodings. */
Test(gpt2_real, encoding_splits_like_the_pattern)
{
    fg_tokenizer *tok = real_gpt2();
    static const char *const letters[] = {"a", "Z", "k", "\xc3\xa9", "\xc3\x9f", "\xd0\xb6",
                                          "\xce\xa9", "\xe4\xb8\xad", "\xe3\x81\x82", "\xd8\xb9",
                                          "\xf0\x9d\x90\x80"};
    static const char *const numbers[] = {"0", "7", "\xd9\xa3", "\xe2\x85\xab", "\xc2\xbd",
                                          "\xef\xbc\x93"};
    static const char *const punct[] = {"!", "?", ".", ",", "-", "(", "$", "#", "\xe2\x80\x94",
                                        "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xc2\xa9", "\x01",
                                        "\xff", "\xc3"}; /* invalid UTF-8 */
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    static const char *const spaces[] = {"\n", "\t", "  ", "\n\n", "\xe3\x80\x80", "\xc2\xa0",
                                         " \n", "\r\n", "\xe2\x80\x89"};
    fgi_rng rng = fgi_rng_make(200);
    for (int trial = 0; trial < 300; trial++) {
        bytes_buf text = {0};
        int ids[MAX_IDS], want[MAX_IDS], part[MAX_IDS], n_want = 0;
        int prev_kind = -1, n_chunks = fgi_rng_int(&rng, 1, 12);
        for (int c = 0; c < n_chunks; c++) {
            bytes_buf chunk = {0};
            int kind = fgi_rng_int(&rng, 0, 4);
            if (kind == 3 && prev_kind != 0 && prev_kind != 1) kind = 0;
            if (kind == 4 && prev_kind == 4) kind = 2;
            if (kind <= 2) {
                /* " ?" + run: the space separates the chunk from a run of the
                 * same class or a whitespace chunk before it; at the start and
                 * after a contraction it is optional. */
                int optional = c == 0 || prev_kind == 3;
                if (!optional || fgi_rng_int(&rng, 0, 1)) buf_str(&chunk, " ");
                const char *const *set = kind == 0 ? letters : kind == 1 ? numbers : punct;
                int set_n = kind == 0 ? 11 : kind == 1 ? 6 : 15;
                for (int k = fgi_rng_int(&rng, 1, 6); k > 0; k--)
                    buf_str(&chunk, set[fgi_rng_int(&rng, 0, set_n - 1)]);
            } else if (kind == 3) {
                buf_str(&chunk, contractions[fgi_rng_int(&rng, 0, 6)]);
            } else {
                buf_str(&chunk, spaces[fgi_rng_int(&rng, 0, 8)]);
            }
            buf_add(&text, chunk.data, chunk.len);
            int n = encode(tok, chunk.data, chunk.len, 0, part);
            memcpy(want + n_want, part, (size_t)n * sizeof(int));
            n_want += n;
            free(chunk.data);
            prev_kind = kind;
        }
        int n = encode(tok, text.data, text.len, 0, ids);
        assert_ids(ids, n, want, n_want, text.data);
        free(text.data);
    }
    /* Hand-checked splits of the pattern's alternatives. */
    static const char *const split[][6] = {
        {"don't", "don", "'t", NULL},
        {"  hi", " ", " hi", NULL},
        {"hi  ", "hi", "  ", NULL},
        {"a\n\nb", "a", "\n", "\n", "b", NULL}, /* \s+(?!\S) leaves one \n */
        {"a \t\n b", "a", " \t\n", " b", NULL},
        {"x 'll", "x", " '", "ll", NULL},
        {"99 bottles", "99", " bottles", NULL},
        {"ok!!! 'S", "ok", "!!!", " '", "S", NULL},
        {"\xe2\x80\x94 a", "\xe2\x80\x94", " a", NULL},
        {"\x85\xff x", "\x85\xff", " x", NULL}, /* invalid UTF-8 is "other" */
        {"a \xff", "a", " \xff", NULL},
        {"a\xff!b", "a", "\xff!", "b", NULL},
    };
    for (size_t s = 0; s < sizeof split / sizeof split[0]; s++) {
        int ids[MAX_IDS], want[MAX_IDS], part[MAX_IDS], n_want = 0;
        for (int k = 1; k < 6 && split[s][k]; k++) {
            int n = encode(tok, split[s][k], strlen(split[s][k]), 0, part);
            memcpy(want + n_want, part, (size_t)n * sizeof(int));
            n_want += n;
        }
        int n = encode(tok, split[s][0], strlen(split[s][0]), 0, ids);
        assert_ids(ids, n, want, n_want, split[s][0]);
    }
    fg_tokenizer_destroy(tok);
}

Test(gpt2_real, random_utf8_and_bytes_round_trip)
{
    fg_tokenizer *tok = real_gpt2();
    fgi_rng rng = fgi_rng_make(201);
    char text[2048];
    for (int k = 0; k < 300; k++) {
        size_t len = random_utf8(&rng, text, 200);
        assert_round_trip(tok, text, len, 0, "random UTF-8");
        len = random_bytes(&rng, text, 400);
        assert_round_trip(tok, text, len, 0, "random bytes");
    }
    fg_tokenizer_destroy(tok);
}

/* =========================== llama2.c ===================================== */

typedef struct {
    const char *piece;
    float score;
} scored_piece;

/* tokenizer.bin bytes: <unk>, BOS, EOS, the byte tokens, then pieces. */
static void llama2c_file(bytes_buf *b, const scored_piece *pieces, int n_pieces, int max_len)
{
    buf_i32(b, max_len);
    static const char *const specials[] = {"<unk>", "\n<s>\n", "\n</s>\n"};
    for (int i = 0; i < 3; i++) {
        buf_f32(b, 0.0f);
        buf_i32(b, (int32_t)strlen(specials[i]));
        buf_str(b, specials[i]);
    }
    for (int i = 0; i < 256; i++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", i);
        buf_f32(b, 0.0f);
        buf_i32(b, 6);
        buf_str(b, s);
    }
    for (int i = 0; i < n_pieces; i++) {
        buf_f32(b, pieces[i].score);
        buf_i32(b, (int32_t)strlen(pieces[i].piece));
        buf_str(b, pieces[i].piece);
    }
}

static fg_tokenizer *synthetic_llama2c(const scored_piece *pieces, int n_pieces)
{
    bytes_buf b = {0};
    llama2c_file(&b, pieces, n_pieces, 16);
    const char *path = write_file("tokenizer.bin", b.data, b.len);
    fg_tokenizer *tok = NULL;
    cr_assert_eq(fg_tokenizer_load_llama2c(&tok, path, 259 + n_pieces), FG_OK, "%s",
                 fg_last_error());
    free(b.data);
    return tok;
}

/* llama2.c's merge loop, naively: characters (a byte and its continuation
 * bytes) become pieces or byte tokens, then the leftmost pair whose
 * concatenation is the best-scoring piece (> -1e10) merges, one at a time.
 * Piece i has id 259 + i. */
static int naive_llama2c(const char *text, const scored_piece *pieces, int n_pieces, int *ids)
{
    char sym[128][32];
    int id[128], n = 0;
    for (size_t pos = 0; text[pos];) {
        size_t k = 1;
        while (k < 4 && ((unsigned char)text[pos + k] & 0xC0) == 0x80) k++;
        int found = -1;
        for (int p = 0; p < n_pieces && found < 0; p++)
            if (strlen(pieces[p].piece) == k && memcmp(pieces[p].piece, text + pos, k) == 0)
                found = p;
        if (found >= 0) {
            strcpy(sym[n], pieces[found].piece);
            id[n++] = 259 + found;
        } else {
            for (size_t i = 0; i < k; i++) {
                sym[n][0] = '\0';
                id[n++] = 3 + (unsigned char)text[pos + i];
            }
        }
        pos += k;
    }
    for (;;) {
        float best = -1e10f;
        int at = -1, best_piece = -1;
        for (int i = 0; i + 1 < n; i++) {
            if (id[i] < 259 || id[i + 1] < 259) continue;
            char joined[64];
            size_t a = strlen(sym[i]), b = strlen(sym[i + 1]);
            memcpy(joined, sym[i], a);
            memcpy(joined + a, sym[i + 1], b + 1);
            for (int p = 0; p < n_pieces; p++)
                if (strcmp(pieces[p].piece, joined) == 0) {
                    if (pieces[p].score > best) best = pieces[p].score, at = i, best_piece = p;
                    break;
                }
        }
        if (at < 0) break;
        strcpy(sym[at], pieces[best_piece].piece);
        id[at] = 259 + best_piece;
        memmove(sym[at + 1], sym[at + 2], sizeof sym[0] * (size_t)(n - at - 2));
        memmove(id + at + 1, id + at + 2, sizeof id[0] * (size_t)(n - at - 2));
        n--;
    }
    memcpy(ids, id, sizeof id[0] * (size_t)n);
    return n;
}

static void check_llama_case(fg_tokenizer *tok, const char *text, int add_bos, const int *want,
                             int n_want)
{
    int ids[MAX_IDS];
    int n = encode(tok, text, strlen(text), add_bos, ids);
    assert_ids(ids, n, want, n_want, text);
    assert_round_trip(tok, text, strlen(text), add_bos, text);
}

Test(llama2c_synthetic, highest_score_merges_first, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    /* ids: " " 259, a 260, b 261, c 262, ab 263, bc 264, " a" 265 */
    scored_piece pieces[] = {{" ", -1}, {"a", -1}, {"b", -1}, {"c", -1},
                             {"ab", -5}, {"bc", -2}, {" a", -3}};
    fg_tokenizer *tok = synthetic_llama2c(pieces, 7);
    cr_assert_eq(fg_tokenizer_bos(tok), 1);
    cr_assert_eq(fg_tokenizer_eos(tok), 2);
    check_llama_case(tok, "abc", 0, (int[]){260, 264}, 2);  /* bc (-2) beats ab (-5) */
    check_llama_case(tok, "abab", 0, (int[]){263, 263}, 2);
    /* BOS and the dummy space, which merges with "a" into " a" */
    check_llama_case(tok, "ab", 1, (int[]){1, 265, 261}, 3);
    check_llama_case(tok, "", 1, (int[]){1}, 1);
    check_llama_case(tok, "", 0, NULL, 0);
    /* byte fallback: 'x' and the two bytes of U+00E9 have no piece */
    check_llama_case(tok, "x\xc3\xa9", 0, (int[]){3 + 'x', 3 + 0xC3, 3 + 0xA9}, 3);
    /* the dummy space does not merge with a byte token */
    check_llama_case(tok, "x", 1, (int[]){1, 259, 3 + 'x'}, 3);
    fg_tokenizer_destroy(tok);

    pieces[4].score = -1.5f; /* now ab beats bc */
    tok = synthetic_llama2c(pieces, 7);
    check_llama_case(tok, "abc", 0, (int[]){263, 262}, 2);
    fg_tokenizer_destroy(tok);
}

Test(llama2c_synthetic, ties_floor_and_special_spellings, .init = make_tmp_dir,
     .fini = remove_tmp_dir)
{
    /* ids: a 259, aa 260, b 261, bb 262 (below llama2.c's -1e10 floor),
     * then pieces that would spell the byte token "<0x41>" (id 68) and
     * BOS's "\n<s>\n" if special tokens took part in merges. */
    const scored_piece pieces[] = {{"a", -1},       {"aa", -2},    {"b", -1},    {"bb", -2e10f},
                                   {"<", -1},       {"0", -1},     {"x", -1},    {"4", -1},
                                   {"1", -1},       {">", -1},     {"<0", 0},    {"<0x", 0},
                                   {"<0x4", 0},     {"1>", 0},     {"\n", -1},   {"s", -1},
                                   {"\n<", 0},      {"s>", 0},     {"s>\n", 0},  {"\n<s>\n", 5},
                                   {"<0x7A>a", 9}};
    const int n_pieces = (int)(sizeof pieces / sizeof pieces[0]);
    fg_tokenizer *tok = synthetic_llama2c(pieces, n_pieces);
    check_llama_case(tok, "aaa", 0, (int[]){260, 259}, 2); /* equal scores: leftmost */
    check_llama_case(tok, "bb", 0, (int[]){261, 261}, 2);
    int ids[MAX_IDS];
    int n = encode(tok, "<0x41>", 6, 0, ids);
    assert_ids(ids, n, (int[]){259 + 12, 259 + 13}, 2, "<0x41> stays text");
    assert_round_trip(tok, "<0x41>", 6, 1, "<0x41>");
    /* "\n<s>\n" is an ordinary piece here (id 278), never BOS */
    n = encode(tok, "\n<s>\n", 5, 0, ids);
    assert_ids(ids, n, (int[]){259 + 19}, 1, "BOS spelling");
    /* 'z' has no piece: its byte token "<0x7A>" must not merge with "a" */
    n = encode(tok, "za", 2, 0, ids);
    assert_ids(ids, n, (int[]){3 + 'z', 259}, 2, "byte token next to a piece");
    assert_round_trip(tok, "za", 2, 0, "za");
    int piece_id = 259 + 19;
    size_t len;
    char *back = decode(tok, &piece_id, 1, &len);
    cr_assert(len == 5 && memcmp(back, "\n<s>\n", 5) == 0);
    free(back);
    fg_tokenizer_destroy(tok);
}

Test(llama2c_synthetic, random_score_tables_match_naive_loop, .init = make_tmp_dir,
     .fini = remove_tmp_dir)
{
    fgi_rng rng = fgi_rng_make(300);
    static const char *const alphabet[] = {"a", "b", " ", "\xc3\xa9"};
    for (int table = 0; table < 10; table++) {
        /* every string of 1-3 alphabet characters is a candidate piece */
        static char texts[100][16];
        scored_piece pieces[100];
        int n_pieces = 0;
        for (int len = 1; len <= 3; len++) {
            int total = len == 1 ? 4 : len == 2 ? 16 : 64;
            for (int code = 0; code < total; code++) {
                char s[16] = "";
                for (int k = 0, c = code; k < len; k++, c /= 4) strcat(s, alphabet[c % 4]);
                /* drop some pieces (single characters too: byte fallback) */
                if (fgi_rng_int(&rng, 0, 3) == 0) continue;
                strcpy(texts[n_pieces], s);
                /* few distinct scores, so ties happen */
                float score = (float)-fgi_rng_int(&rng, 0, 6);
                pieces[n_pieces] = (scored_piece){texts[n_pieces], score};
                n_pieces++;
            }
        }
        fg_tokenizer *tok = synthetic_llama2c(pieces, n_pieces);
        for (int k = 0; k < 40; k++) {
            char text[128] = "";
            for (int i = fgi_rng_int(&rng, 0, 25); i > 0; i--)
                strcat(text, alphabet[fgi_rng_int(&rng, 0, 3)]);
            int want[MAX_IDS], got[MAX_IDS];
            int n_want = naive_llama2c(text, pieces, n_pieces, want);
            int n_got = encode(tok, text, strlen(text), 0, got);
            assert_ids(got, n_got, want, n_want, text);
            assert_round_trip(tok, text, strlen(text), 1, text);
        }
        fg_tokenizer_destroy(tok);
    }
}

/* --- malformed llama2.c files --- */

static void expect_llama_error(const void *data, size_t len, int vocab_size, fg_status want,
                               const char *needle)
{
    const char *path = write_file("tok.bin", data, len);
    fg_tokenizer *tok = (fg_tokenizer *)&tok;
    fg_tokenizer *const before = tok;
    fgi_assert_status(fg_tokenizer_load_llama2c(&tok, path, vocab_size), want, needle);
    cr_assert(tok == before, "a failed load wrote *tok");
    if (want == FG_ERR_FORMAT)
        cr_assert(strstr(fg_last_error(), "tok.bin") != NULL, "message \"%s\" lacks the file",
                  fg_last_error());
}

static void patch_i32(bytes_buf *b, size_t at, int32_t v)
{
    for (int i = 0; i < 4; i++) b->data[at + (size_t)i] = (char)((uint32_t)v >> (8 * i));
}

/* --- hash flooding --- */

enum { FLOOD_TOKENS = 200000, FLOOD_BITS = 19 }; /* the map of 200,256 spellings has 2^19 slots */

/* FNV-1a, the unkeyed hash the spelling map used to have: the low bits of
 * its state depend only on the low bits before, and each step inverts. */
static uint32_t fnv_step(uint32_t low, unsigned char c)
{
    return (uint32_t)(((uint64_t)(low ^ c) * 0x100000001b3ULL) & ((1u << FLOOD_BITS) - 1));
}

/* FLOOD_TOKENS distinct 7-character spellings whose FNV-1a hashes share
 * their low FLOOD_BITS bits, i.e. one slot of the old map: every 3-letter
 * suffix is walked backwards from slot 0, then 4-letter prefixes are tried
 * until their state is one a suffix leads home from (meet in the middle).
 * Returns "spelling\0" records, 8 bytes each. */
static char *fnv_flood(void)
{
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    const uint32_t mask = (1u << FLOOD_BITS) - 1;
    uint64_t inv = 0x100000001b3ULL; /* Newton: inverse of the FNV prime mod 2^64 */
    for (int i = 0; i < 6; i++) inv *= 2 - 0x100000001b3ULL * inv;
    int32_t *suffix_of = malloc(sizeof(int32_t) << FLOOD_BITS);
    cr_assert_not_null(suffix_of);
    for (uint32_t i = 0; i <= mask; i++) suffix_of[i] = -1;
    for (int sfx = 0; sfx < 64 * 64 * 64; sfx++) {
        uint32_t state = 0; /* the final state: slot 0; undo the last letter first */
        for (int k = 0; k <= 2; k++) {
            const unsigned char c = (unsigned char)alphabet[(sfx >> (6 * k)) & 63];
            state = (uint32_t)((state * inv) & mask) ^ c;
        }
        if (suffix_of[state] < 0) suffix_of[state] = sfx;
    }
    char *out = malloc((size_t)FLOOD_TOKENS * 8);
    cr_assert_not_null(out);
    int made = 0;
    for (int pre = 0; pre < 64 * 64 * 64 * 64 && made < FLOOD_TOKENS; pre++) {
        char *w = out + (size_t)made * 8;
        uint32_t state = 0xcbf29ce484222325ULL & mask;
        for (int k = 3; k >= 0; k--) {
            w[3 - k] = alphabet[(pre >> (6 * k)) & 63];
            state = fnv_step(state, (unsigned char)w[3 - k]);
        }
        const int sfx = suffix_of[state];
        if (sfx < 0) continue;
        for (int k = 2; k >= 0; k--) {
            w[4 + 2 - k] = alphabet[(sfx >> (6 * k)) & 63];
            state = fnv_step(state, (unsigned char)w[4 + 2 - k]);
        }
        w[7] = '\0';
        cr_assert_eq(state, 0, "the flood generator is wrong");
        made++;
    }
    cr_assert_eq(made, FLOOD_TOKENS);
    free(suffix_of);
    return out;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A vocab.json whose 200,000 spellings all collided in the old unkeyed
 * spelling map took over 20 s to load (quadratic); under the keyed hash it
 * loads like any vocabulary of its size (0.04 s; the bound leaves a margin
 * of more than 50 for slow and sanitized builds). */
Test(tokenizer_files, colliding_vocabulary_loads_in_linear_time, .init = make_tmp_dir,
     .fini = remove_tmp_dir, FGI_TIMEOUT(120))
{
    char *flood = fnv_flood();
    char *tail = malloc((size_t)FLOOD_TOKENS * 24);
    cr_assert_not_null(tail);
    size_t at = 0;
    for (int i = 0; i < FLOOD_TOKENS; i++)
        at += (size_t)sprintf(tail + at, ",\"%s\": %d", flood + (size_t)i * 8, 256 + i);
    bytes_buf v = {0};
    byte_vocab(&v, tail, -1);
    const char *vp = write_file("vocab.json", v.data, v.len);
    const char *mp = write_file("merges.txt", "", 0);
    fg_tokenizer *tok = NULL;
    const double t0 = now_seconds();
    cr_assert_eq(fg_tokenizer_load_gpt2(&tok, vp, mp), FG_OK, "%s", fg_last_error());
    const double took = now_seconds() - t0;
    cr_assert_lt(took, 2.5, "loading the colliding vocabulary took %.2f s", took);
    /* every spelling is found: they were really inserted */
    int ids[16], n = 0;
    for (int i = 0; i < FLOOD_TOKENS; i += 9973) {
        cr_assert_eq(fg_tokenizer_encode(tok, flood + (size_t)i * 8, 7, 0, ids, 16, &n), FG_OK);
        cr_assert_eq(n, 7, "no merges: one id per byte");
    }
    fg_tokenizer_destroy(tok);
    free(v.data), free(tail), free(flood);
}

/* Structurally: each table draws its own key, so two loads of one file
 * place their spellings and merges differently (a fixed hash would place
 * them identically, which is what a crafted file relies on). */
Test(tokenizer_files, every_table_has_its_own_hash_key, .init = make_tmp_dir,
     .fini = remove_tmp_dir)
{
    bytes_buf v = {0};
    byte_vocab(&v, ",\"ab\": 256, \"abc\": 257", -1);
    const char *vp = write_file("vocab.json", v.data, v.len);
    const char *mp = write_file("merges.txt", "a b\nab c\n", 9);
    fg_tokenizer *a = NULL, *b = NULL;
    cr_assert_eq(fg_tokenizer_load_gpt2(&a, vp, mp), FG_OK, "%s", fg_last_error());
    cr_assert_eq(fg_tokenizer_load_gpt2(&b, vp, mp), FG_OK, "%s", fg_last_error());
    cr_assert(a->lookup.key.k0 != b->lookup.key.k0 || a->lookup.key.k1 != b->lookup.key.k1);
    cr_assert(a->merges_key.k0 != b->merges_key.k0 || a->merges_key.k1 != b->merges_key.k1);
    cr_assert(a->lookup.key.k0 != a->merges_key.k0 || a->lookup.key.k1 != a->merges_key.k1);
    /* the slot layouts differ, the results do not */
    cr_assert(memcmp(a->lookup.slots, b->lookup.slots,
                     sizeof(int32_t) * (a->lookup.mask + 1)) != 0, "same layout twice");
    int ia[8], ib[8], na, nb;
    cr_assert_eq(fg_tokenizer_encode(a, "abcab", 5, 0, ia, 8, &na), FG_OK);
    cr_assert_eq(fg_tokenizer_encode(b, "abcab", 5, 0, ib, 8, &nb), FG_OK);
    cr_assert(na == 2 && nb == 2 && ia[0] == 257 && ib[0] == 257 && ia[1] == 256 && ib[1] == 256);
    fg_tokenizer_destroy(a), fg_tokenizer_destroy(b);
    free(v.data);
}

/* Tokenizer inputs that are not regular files are refused at once with
 * their kind and path (a FIFO used to block forever: hence the timeout). */
Test(tokenizer_files, non_regular_inputs_are_refused_without_blocking, .init = make_tmp_dir,
     .fini = remove_tmp_dir, FGI_TIMEOUT(20))
{
    bytes_buf v = {0};
    byte_vocab(&v, "", -1);
    const char *vp = write_file("vocab.json", v.data, v.len);
    const char *mp = write_file("merges.txt", "", 0);
    const char *fifo = tmp_path("fifo");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    fg_tokenizer *tok = NULL;
    fgi_assert_status(fg_tokenizer_load_gpt2(&tok, fifo, mp), FG_ERR_IO, "fifo: is a FIFO");
    fgi_assert_status(fg_tokenizer_load_gpt2(&tok, vp, fifo), FG_ERR_IO, "fifo: is a FIFO");
    fgi_assert_status(fg_tokenizer_load_llama2c(&tok, fifo, 512), FG_ERR_IO,
                      "fifo: is a FIFO, not a regular file");
    fgi_assert_status(fg_tokenizer_load_llama2c(&tok, "/dev/zero", 512), FG_ERR_IO,
                      "/dev/zero: is a character device");
    fgi_assert_status(fg_tokenizer_load_gpt2(&tok, tmp_dir, mp), FG_ERR_IO, "is a folder");
    cr_assert_null(tok);
    free(v.data);
}

/* Tokenizer files are read whole, so their size is checked first: a sparse
 * 3 GiB file is refused at once (it used to be read into memory), and one
 * just over the limit too. */
Test(tokenizer_files, oversized_files_are_refused_before_reading, .init = make_tmp_dir,
     .fini = remove_tmp_dir, FGI_TIMEOUT(20))
{
    bytes_buf v = {0};
    byte_vocab(&v, "", -1);
    const char *vp = write_file("vocab.json", v.data, v.len);
    const char *mp = write_file("merges.txt", "", 0);
    const char *huge = write_file("huge", "", 0), *over = write_file("over", "", 0);
    cr_assert_eq(truncate(huge, (off_t)3 << 30), 0);
    cr_assert_eq(truncate(over, ((off_t)64 << 20) + 1), 0);
    fg_tokenizer *tok = NULL;
    fgi_assert_status(fg_tokenizer_load_gpt2(&tok, huge, mp), FG_ERR_FORMAT,
                      "huge: is 3221225472 bytes, over the 67108864-byte limit for a vocab.json");
    fgi_assert_status(fg_tokenizer_load_gpt2(&tok, vp, over), FG_ERR_FORMAT,
                      "over: is 67108865 bytes, over the 67108864-byte limit for a merges.txt");
    fgi_assert_status(fg_tokenizer_load_llama2c(&tok, huge, 512), FG_ERR_FORMAT,
                      "limit for a tokenizer.bin");
    cr_assert_null(tok);
    free(v.data);
}

Test(llama2c_files, malformed_files_are_format_errors, .init = make_tmp_dir,
     .fini = remove_tmp_dir)
{
    const scored_piece pieces[] = {{"hello", -1}, {" ", -2}};
    bytes_buf good = {0};
    llama2c_file(&good, pieces, 2, 8);
    const int vocab = 261;
    /* offsets: header 4; token i (< 259) header at 4 + sum of earlier records */
    const size_t last_piece = good.len - (8 + 1);       /* record of " " */
    const size_t first_piece = last_piece - (8 + 5);    /* record of "hello" */

    {   /* the unmodified file loads */
        const char *path = write_file("tok.bin", good.data, good.len);
        fg_tokenizer *tok = NULL;
        cr_assert_eq(fg_tokenizer_load_llama2c(&tok, path, vocab), FG_OK, "%s", fg_last_error());
        fg_tokenizer_destroy(tok);
    }
    expect_llama_error(good.data, 0, vocab, FG_ERR_FORMAT, "too short");
    expect_llama_error(good.data, 3, vocab, FG_ERR_FORMAT, "too short");
    expect_llama_error(good.data, 4, vocab, FG_ERR_FORMAT, "max_token_length 8 is outside");
    expect_llama_error(good.data, good.len - 1, vocab, FG_ERR_FORMAT, "run past the end");
    expect_llama_error(good.data, last_piece + 3, vocab, FG_ERR_FORMAT, "token 260: header");
    expect_llama_error(good.data, last_piece - 3, vocab, FG_ERR_FORMAT, "token 259: 5 bytes");
    expect_llama_error(good.data, good.len, vocab + 1, FG_ERR_FORMAT, "past the end");
    expect_llama_error(good.data, good.len, vocab + 5000, FG_ERR_FORMAT, "cannot hold");
    expect_llama_error(good.data, good.len, vocab - 1, FG_ERR_FORMAT, "bytes left after");
    expect_llama_error(good.data, good.len, 258, FG_ERR_INVALID_ARG, "'vocab_size'");
    expect_llama_error(good.data, good.len, -1, FG_ERR_INVALID_ARG, "'vocab_size'");

    bytes_buf bad = {0};
    const struct {
        size_t at;
        int32_t value;
        const char *needle;
    } patches[] = {
        {0, 0, "max_token_length 0"},
        {0, -7, "max_token_length -7"},
        {0, INT32_MAX, "max_token_length 2147483647"},
        {0, 4, "length 5 is outside [0, 4]"},          /* "hello" is longer */
        {first_piece + 4, -1, "length -1"},
        {first_piece + 4, 9, "length 9 is outside [0, 8]"},
        {first_piece + 4, 7, "token 260: header"},      /* eats into the next record */
        {last_piece + 4, 2, "token 260: 2 bytes"},      /* past the end of the file */
        {4 + 4, 1 << 30, "outside"},                    /* <unk>'s length */
        {first_piece, 0x7fc00000, "NaN"},               /* score */
    };
    for (size_t i = 0; i < sizeof patches / sizeof patches[0]; i++) {
        bad.len = 0;
        buf_add(&bad, good.data, good.len);
        patch_i32(&bad, patches[i].at, patches[i].value);
        expect_llama_error(bad.data, bad.len, vocab, FG_ERR_FORMAT, patches[i].needle);
    }
    /* a byte token that is not <0xXX> at id byte + 3 */
    bad.len = 0;
    buf_add(&bad, good.data, good.len);
    char *p = NULL;
    for (size_t i = 0; i + 6 <= bad.len && p == NULL; i++)
        if (memcmp(bad.data + i, "<0x41>", 6) == 0) p = bad.data + i;
    cr_assert(p != NULL);
    p[4] = '2';
    expect_llama_error(bad.data, bad.len, vocab, FG_ERR_FORMAT, "token 68 is \"<0x42>\"");
    /* trailing garbage */
    bad.len = 0;
    buf_add(&bad, good.data, good.len);
    buf_str(&bad, "xyz");
    expect_llama_error(bad.data, bad.len, vocab, FG_ERR_FORMAT, "3 bytes left");

    fg_tokenizer *tok = NULL;
    fgi_assert_status(fg_tokenizer_load_llama2c(&tok, tmp_path("absent.bin"), vocab), FG_ERR_IO,
                     "absent.bin");
    fgi_assert_status(fg_tokenizer_load_llama2c(&tok, NULL, vocab), FG_ERR_INVALID_ARG, "'path'");
    fgi_assert_status(fg_tokenizer_load_llama2c(NULL, "x", vocab), FG_ERR_INVALID_ARG, "'tok'");
    cr_assert(tok == NULL);
    free(good.data);
    free(bad.data);
}

/* --- the real stories260K tokenizer --- */

static fg_tokenizer *real_llama2c(void)
{
    const char *path = fgi_model_path("stories260K/tok512.bin");
    if (path == NULL) cr_skip_test("stories260K/tok512.bin not found under FG_MODELS_DIR");
    fg_tokenizer *tok = NULL;
    cr_assert_eq(fg_tokenizer_load_llama2c(&tok, path, 512), FG_OK, "%s", fg_last_error());
    return tok;
}

/* The file's pieces, read here independently (fixed 512 tokens). */
static char **read_tok512(int *n)
{
    FILE *f = fopen(fgi_model_path("stories260K/tok512.bin"), "rb");
    cr_assert(f != NULL);
    char **pieces = calloc(512, sizeof *pieces);
    int32_t max_len, len;
    float score;
    cr_assert_eq(fread(&max_len, 4, 1, f), 1u);
    for (int i = 0; i < 512; i++) {
        cr_assert_eq(fread(&score, 4, 1, f), 1u);
        cr_assert_eq(fread(&len, 4, 1, f), 1u);
        cr_assert(len >= 0 && len <= max_len);
        pieces[i] = calloc((size_t)len + 1, 1);
        cr_assert_eq(fread(pieces[i], 1, (size_t)len, f), (size_t)len);
    }
    fclose(f);
    *n = 512;
    return pieces;
}

Test(llama2c_real, pieces_encode_to_themselves)
{
    fg_tokenizer *tok = real_llama2c();
    cr_assert_eq(fg_tokenizer_vocab_size(tok), 512);
    cr_assert_eq(fg_tokenizer_bos(tok), 1);
    cr_assert_eq(fg_tokenizer_eos(tok), 2);
    int n_pieces, ids[MAX_IDS], words = 0;
    char **pieces = read_tok512(&n_pieces);
    for (int id = 259; id < n_pieces; id++) {
        /* each ordinary piece, without BOS, is one token */
        int n = encode(tok, pieces[id], strlen(pieces[id]), 0, ids);
        assert_ids(ids, n, (int[]){id}, 1, pieces[id]);
        /* " word" pieces: the word with BOS gets the dummy space */
        int alpha = pieces[id][0] == ' ' && pieces[id][1] != '\0';
        for (const char *c = pieces[id] + 1; *c && alpha; c++)
            alpha = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z');
        if (!alpha) continue;
        n = encode(tok, pieces[id] + 1, strlen(pieces[id]) - 1, 1, ids);
        assert_ids(ids, n, (int[]){1, id}, 2, pieces[id]);
        /* streamed after BOS the dummy space is gone */
        const char *p;
        size_t len;
        cr_assert_eq(fg_tokenizer_piece(tok, 1, id, &p, &len), FG_OK);
        cr_assert(len == strlen(pieces[id]) - 1 && memcmp(p, pieces[id] + 1, len) == 0);
        words++;
    }
    cr_assert(words > 50, "only %d word pieces", words);
    /* byte tokens decode to their byte, BOS and EOS to nothing */
    for (int b = 0; b < 256; b++) {
        int id = 3 + b;
        const char *p;
        size_t len;
        cr_assert_eq(fg_tokenizer_piece(tok, -1, id, &p, &len), FG_OK);
        cr_assert(len == 1 && (unsigned char)p[0] == b);
    }
    for (int id = 1; id <= 2; id++) {
        const char *p;
        size_t len = 99;
        cr_assert_eq(fg_tokenizer_piece(tok, -1, id, &p, &len), FG_OK);
        cr_assert_eq(len, 0u);
    }
    for (int i = 0; i < n_pieces; i++) free(pieces[i]);
    free(pieces);
    fg_tokenizer_destroy(tok);
}

Test(llama2c_real, random_utf8_and_bytes_round_trip)
{
    fg_tokenizer *tok = real_llama2c();
    fgi_rng rng = fgi_rng_make(301);
    char text[2048];
    for (int k = 0; k < 300; k++) {
        size_t len = random_utf8(&rng, text, 200);
        assert_round_trip(tok, text, len, k & 1, "random UTF-8");
        len = random_bytes(&rng, text, 400);
        assert_round_trip(tok, text, len, k & 1, "random bytes");
    }
    static const char story[] = "Once upon a time, there was a little girl named Lily.";
    assert_round_trip(tok, story, sizeof story - 1, 1, story);
    assert_round_trip(tok, " leading space", 14, 1, "leading space");
    fg_tokenizer_destroy(tok);
}

/* ======================= API contract (both kinds) ========================= */

static fg_tokenizer *any_tokenizer(int which)
{
    if (which == 0) {
        const scored_piece pieces[] = {{" ", -1}, {"a", -1}, {"b", -1}, {"ab", -1}};
        return synthetic_llama2c(pieces, 4);
    }
    const char *extra[] = {"ab"};
    const merge_pair merges[] = {{"a", "b"}};
    return synthetic_gpt2(extra, 1, merges, 1, 1);
}

Test(tokenizer_api, capacity_is_checked_and_reported, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    fgi_rng rng = fgi_rng_make(400);
    for (int which = 0; which < 2; which++) {
        fg_tokenizer *tok = any_tokenizer(which);
        char text[256];
        size_t len = 0;
        while (len < 10) len = random_bytes(&rng, text, 200);
        int full[MAX_IDS];
        int n = encode(tok, text, len, 1, full);
        cr_assert(n >= 3);

        int ids[MAX_IDS], got = -1;
        for (int i = 0; i < MAX_IDS; i++) ids[i] = -77;
        fgi_assert_status(fg_tokenizer_encode(tok, text, len, 1, ids, n - 1, &got),
                         FG_ERR_INVALID_ARG, "'capacity' is too small");
        cr_assert_eq(got, n, "*n_ids must report the ids needed");
        for (int i = 0; i < MAX_IDS; i++) cr_assert_eq(ids[i], -77, "a refused encode wrote ids");
        got = -1;
        fgi_assert_status(fg_tokenizer_encode(tok, text, len, 1, NULL, 0, &got),
                         FG_ERR_INVALID_ARG, "'capacity'");
        cr_assert_eq(got, n);
        cr_assert_eq(fg_tokenizer_encode(tok, text, len, 1, ids, n, &got), FG_OK);
        assert_ids(ids, got, full, n, "exact capacity");
        cr_assert_eq(ids[n], -77);

        size_t need = 0, out_len = 12345;
        fgi_assert_status(fg_tokenizer_decode(tok, full, n, NULL, 0, &need), FG_ERR_INVALID_ARG,
                         "'cap' is too small");
        cr_assert(need >= len, "%zu bytes decode to %zu", len, need);
        char out[1024];
        memset(out, 0x5A, sizeof out);
        fgi_assert_status(fg_tokenizer_decode(tok, full, n, out, need - 1, &out_len),
                         FG_ERR_INVALID_ARG, "'cap' is too small");
        cr_assert_eq(out_len, need);
        for (size_t i = 0; i < sizeof out; i++) cr_assert_eq(out[i], 0x5A, "a refused decode wrote");
        cr_assert_eq(fg_tokenizer_decode(tok, full, n, out, need, &out_len), FG_OK);
        cr_assert_eq(out_len, need);
        cr_assert_eq(out[need], 0x5A, "decode appended a byte");
        fg_tokenizer_destroy(tok);
    }
}

Test(tokenizer_api, ids_outside_the_vocabulary_are_refused, .init = make_tmp_dir,
     .fini = remove_tmp_dir)
{
    for (int which = 0; which < 2; which++) {
        fg_tokenizer *tok = any_tokenizer(which);
        const int vocab = fg_tokenizer_vocab_size(tok);
        const int bad_ids[] = {-1, vocab, vocab + 1, INT_MAX, INT_MIN};
        char out[64];
        for (size_t b = 0; b < sizeof bad_ids / sizeof bad_ids[0]; b++) {
            int ids[3] = {fg_tokenizer_eos(tok), bad_ids[b], 5};
            size_t len = 777;
            memset(out, 0x33, sizeof out);
            fgi_assert_status(fg_tokenizer_decode(tok, ids, 3, out, sizeof out, &len),
                             FG_ERR_INVALID_ARG, "outside [0,");
            cr_assert_eq(len, 777u, "a refused decode set *len");
            for (size_t i = 0; i < sizeof out; i++) cr_assert_eq(out[i], 0x33);
            const char *p = (const char *)out;
            fgi_assert_status(fg_tokenizer_piece(tok, -1, bad_ids[b], &p, &len),
                             FG_ERR_INVALID_ARG, "'id'");
            if (bad_ids[b] != -1)
                fgi_assert_status(fg_tokenizer_piece(tok, bad_ids[b], 5, &p, &len),
                                 FG_ERR_INVALID_ARG, "'prev'");
            cr_assert(p == (const char *)out && len == 777u);
        }
        fg_tokenizer_destroy(tok);
    }
}

Test(tokenizer_api, bad_arguments, .init = make_tmp_dir, .fini = remove_tmp_dir)
{
    fg_tokenizer *tok = any_tokenizer(0);
    int ids[8], n = -9;
    size_t len = 99;
    const char *p = NULL;
    char out[8];
    fgi_assert_status(fg_tokenizer_encode(NULL, "a", 1, 0, ids, 8, &n), FG_ERR_INVALID_ARG, "'tok'");
    fgi_assert_status(fg_tokenizer_encode(tok, NULL, 1, 0, ids, 8, &n), FG_ERR_INVALID_ARG, "'text'");
    fgi_assert_status(fg_tokenizer_encode(tok, "a", 1, 0, ids, 8, NULL), FG_ERR_INVALID_ARG, "'n_ids'");
    fgi_assert_status(fg_tokenizer_encode(tok, "a", 1, 0, ids, -1, &n), FG_ERR_INVALID_ARG,
                     "'capacity'");
    fgi_assert_status(fg_tokenizer_encode(tok, "a", 1, 0, NULL, 8, &n), FG_ERR_INVALID_ARG, "'ids'");
    fgi_assert_status(fg_tokenizer_encode(tok, "a", (size_t)INT_MAX, 0, ids, 8, &n),
                     FG_ERR_INVALID_ARG, "'len'");
    cr_assert_eq(n, -9);
    fgi_assert_status(fg_tokenizer_decode(NULL, ids, 0, out, 8, &len), FG_ERR_INVALID_ARG, "'tok'");
    fgi_assert_status(fg_tokenizer_decode(tok, NULL, 0, out, 8, &len), FG_ERR_INVALID_ARG, "'ids'");
    fgi_assert_status(fg_tokenizer_decode(tok, ids, -1, out, 8, &len), FG_ERR_INVALID_ARG, "'n'");
    fgi_assert_status(fg_tokenizer_decode(tok, ids, 0, NULL, 8, &len), FG_ERR_INVALID_ARG, "'out'");
    fgi_assert_status(fg_tokenizer_decode(tok, ids, 0, out, 8, NULL), FG_ERR_INVALID_ARG, "'len'");
    cr_assert_eq(len, 99u);
    fgi_assert_status(fg_tokenizer_piece(NULL, -1, 5, &p, &len), FG_ERR_INVALID_ARG, "'tok'");
    fgi_assert_status(fg_tokenizer_piece(tok, -1, 5, NULL, &len), FG_ERR_INVALID_ARG, "'bytes'");
    fgi_assert_status(fg_tokenizer_piece(tok, -1, 5, &p, NULL), FG_ERR_INVALID_ARG, "'len'");
    cr_assert_eq(fg_tokenizer_vocab_size(NULL), 0);
    cr_assert_eq(fg_tokenizer_bos(NULL), -1);
    cr_assert_eq(fg_tokenizer_eos(NULL), -1);
    fg_tokenizer_destroy(NULL);
    /* an empty text is fine */
    cr_assert_eq(fg_tokenizer_encode(tok, "", 0, 0, NULL, 0, &n), FG_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(fg_tokenizer_decode(tok, ids, 0, NULL, 0, &len), FG_OK);
    cr_assert_eq(len, 0u);
    fg_tokenizer_destroy(tok);
}
