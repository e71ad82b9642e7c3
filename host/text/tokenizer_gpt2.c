/* GPT-2 byte-level BPE tokenizer: loading vocab.json + merges.txt, and
 * encoding exactly as OpenAI's GPT-2 encoder does.
 *
 * Conventions:
 *  - Byte-level alphabet: every byte b is spelled by one printable code
 *    point: b itself for '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF, and
 *    256 + k for the k-th remaining byte in increasing order (space is
 *    U+0120 'Ġ'). Tokens are spelled in this alphabet in both files.
 *  - Pre-tokenisation splits the text like GPT-2's pattern
 *      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *    (first matching alternative, greedy), written out by hand in
 *    next_chunk(). Code points are classified with the generated tables in
 *    unicode_tables.h (\s is the White_Space property). Text is UTF-8; a
 *    byte that does not start a valid UTF-8 sequence (overlong forms,
 *    surrogates and stray continuation bytes included) counts as one
 *    character of class "other", the class U+FFFD has, so invalid input
 *    still splits into chunks whose concatenation is the input.
 *  - Each chunk's bytes become single-byte tokens which are merged by
 *    merges.txt rank, lowest first, every occurrence of the chosen pair in
 *    one left-to-right pass (OpenAI's bpe()). Merges never cross chunks.
 *  - Decoding maps each character of a token's spelling back to its byte;
 *    a character outside the alphabet (possible only in added tokens) gives
 *    its own UTF-8 bytes. <|endoftext|> is BOS and EOS and decodes to its
 *    spelling, like OpenAI's decoder. */
#include "tokenizer_internal.h"
#include "unicode.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char load_fn[] = "fg_tokenizer_load_gpt2";

/* Alphabet code points are all below 256 + 68 (the bytes not printable). */
enum { ALPHABET_END = 256 + 68 };

/* End of the run of characters of class c starting at pos. */
static size_t run_end(const unsigned char *s, size_t len, size_t pos, fgi_char_class c)
{
    size_t n;
    while (pos < len && fgi_char_at(s, len, pos, &n) == c) pos += n;
    return pos;
}

/* End of the pre-tokenisation chunk starting at pos (pos < len): the
 * pattern's alternatives tried in order. */
static size_t next_chunk(const unsigned char *s, size_t len, size_t pos)
{
    static const char *const contractions[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    if (s[pos] == '\'') {
        for (size_t i = 0; i < sizeof contractions / sizeof contractions[0]; i++) {
            size_t k = strlen(contractions[i]);
            if (len - pos - 1 >= k && memcmp(s + pos + 1, contractions[i], k) == 0)
                return pos + 1 + k;
        }
    }
    size_t n;
    fgi_char_class c = fgi_char_at(s, len, pos, &n);
    size_t start = pos;
    if (s[pos] == ' ' && pos + 1 < len) { /* " ?" before a letter, number or other run */
        fgi_char_class after = fgi_char_at(s, len, pos + 1, &n);
        if (after != FGI_CHAR_SPACE) {
            c = after;
            start = pos + 1;
        }
    }
    if (c != FGI_CHAR_SPACE) return run_end(s, len, start, c);

    /* \s+(?!\S): the whole run at the end of the text, else the run minus
     * its last character (which then leads the next chunk, e.g. " word");
     * a single space before a non-space is \s+. */
    size_t end = pos, last = pos;
    while (end < len && fgi_char_at(s, len, end, &n) == FGI_CHAR_SPACE) {
        last = end;
        end += n;
    }
    if (end == len || last == pos) return end;
    return last;
}

/* --- merges ----------------------------------------------------------------- */

static size_t pair_hash(const fg_tokenizer *tok, int left, int right)
{
    const int32_t pair[2] = {left, right};
    return (size_t)fgi_hash_bytes(&tok->merges_key, pair, sizeof pair) & tok->merges_mask;
}

static fgi_merge_slot *merge_slot(const fg_tokenizer *tok, int left, int right)
{
    size_t i = pair_hash(tok, left, right);
    while (tok->merges[i].left >= 0 &&
           (tok->merges[i].left != left || tok->merges[i].right != right))
        i = (i + 1) & tok->merges_mask;
    return &tok->merges[i];
}

static int gpt2_pair_rule(const fg_tokenizer *tok, int left_id, int right_id,
                          double *priority, int *merged, char *scratch)
{
    (void)scratch;
    const fgi_merge_slot *slot = merge_slot(tok, left_id, right_id);
    if (slot->left < 0) return 0;
    *priority = slot->rank;
    *merged = slot->merged;
    return 1;
}

void fgi_gpt2_encode(const fg_tokenizer *tok, const unsigned char *text, size_t len,
                     int add_bos, int *out, int *count, fgi_bpe_work *work)
{
    int n = 0;
    if (add_bos) out[n++] = tok->bos;
    for (size_t pos = 0; pos < len;) {
        size_t end = next_chunk(text, len, pos);
        for (size_t i = pos; i < end; i++) out[n + (int)(i - pos)] = tok->byte_token[text[i]];
        n += fgi_bpe_merge(work, tok, gpt2_pair_rule, 1, out + n, (int)(end - pos));
        pos = end;
    }
    *count = n;
}

/* --- loading ---------------------------------------------------------------- */

static fg_status format_error(const char *file, const char *problem, const char *token,
                              size_t token_len)
{
    char quoted[256];
    return fgi_fail(FG_ERR_FORMAT, "%s: %s: %s \"%s\"", load_fn, file, problem,
                   fgi_quote_bytes(quoted, sizeof quoted, token, token_len));
}

/* Copies the vocab.json keys into the spelling arena in id order, checking
 * ids (integers forming 0 .. n-1) and spellings (non-empty UTF-8). */
static fg_status read_vocab_entries(fg_tokenizer *t, const cJSON *root, const char *name)
{
    const int n = t->vocab_size;
    const char **keys = NULL;
    FGI_TRY(fgi_alloc(load_fn, (void **)&keys, (size_t)n, sizeof *keys));
    fg_status st = FG_OK;
    size_t total = 0;
    for (const cJSON *item = root->child; item != NULL && st == FG_OK; item = item->next) {
        const char *key = item->string ? item->string : "";
        size_t key_len = strlen(key);
        double v = item->valuedouble;
        if (!cJSON_IsNumber(item))
            st = format_error(name, "the id is not a number for token", key, key_len);
        else if (!(v >= 0.0 && v < (double)n) || v != (double)(int)v)
            st = fgi_fail(FG_ERR_FORMAT,
                         "%s: %s: token id %.17g is not an integer in [0, %d) (the number of tokens)",
                         load_fn, name, v, n);
        else if (keys[(int)v] != NULL)
            st = fgi_fail(FG_ERR_FORMAT, "%s: %s: token id %d is used twice", load_fn, name,
                         (int)v);
        else if (key_len == 0)
            st = fgi_fail(FG_ERR_FORMAT, "%s: %s: token id %d has an empty spelling", load_fn,
                         name, (int)v);
        else {
            uint32_t cp;
            for (size_t i = 0, k; i < key_len && st == FG_OK; i += k)
                if ((k = fgi_utf8_sequence((const unsigned char *)key + i, key_len - i, &cp)) == 0)
                    st = format_error(name, "invalid UTF-8 in token", key, key_len);
            keys[(int)v] = key;
            total += key_len;
        }
    }
    if (st == FG_OK) st = fgi_alloc(load_fn, (void **)&t->spelling, total, 1);
    if (st == FG_OK) {
        size_t at = 0;
        for (int id = 0; id < n; id++) {
            size_t key_len = strlen(keys[id]);
            memcpy(t->spelling + at, keys[id], key_len);
            t->spelling_at[id] = at;
            at += key_len;
            if (key_len > t->max_spelling) t->max_spelling = key_len;
        }
        t->spelling_at[n] = at;
    }
    free(keys);
    return st;
}

/* The bytes each token decodes to (never longer than its spelling). */
static fg_status build_outputs(fg_tokenizer *t)
{
    int codepoint_byte[ALPHABET_END];
    for (int cp = 0; cp < ALPHABET_END; cp++) codepoint_byte[cp] = -1;
    for (int b = 0; b < 256; b++) codepoint_byte[fgi_byte_to_codepoint(b)] = b;

    FGI_TRY(fgi_alloc(load_fn, (void **)&t->output, t->spelling_at[t->vocab_size], 1));
    size_t at = 0;
    for (int id = 0; id < t->vocab_size; id++) {
        const unsigned char *s = (const unsigned char *)t->spelling + t->spelling_at[id];
        size_t n = fgi_spelling_len(t, id);
        t->output_at[id] = at;
        for (size_t i = 0, k; i < n; i += k) {
            uint32_t cp = 0;
            k = fgi_utf8_sequence(s + i, n - i, &cp); /* validated: k >= 1 */
            if (cp < ALPHABET_END && codepoint_byte[cp] >= 0)
                t->output[at++] = (char)codepoint_byte[cp];
            else
                at += fgi_utf8_encode(cp, t->output + at);
        }
    }
    t->output_at[t->vocab_size] = at;
    return FG_OK;
}

static fg_status parse_vocab(fg_tokenizer **out, const char *json, size_t len,
                             const char *name)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root == NULL)
        return fgi_fail(FG_ERR_FORMAT, "%s: %s: not valid JSON", load_fn, name);
    while (end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (end != json + len) {
        cJSON_Delete(root);
        return fgi_fail(FG_ERR_FORMAT, "%s: %s: unexpected data after the JSON object (byte %zu)",
                       load_fn, name, (size_t)(end - json));
    }
    if (!cJSON_IsObject(root) || cJSON_GetArraySize(root) < 1) {
        cJSON_Delete(root);
        return fgi_fail(FG_ERR_FORMAT,
                       "%s: %s: expected a non-empty JSON object of token -> id", load_fn,
                       name);
    }
    fg_tokenizer *t = NULL;
    fg_status st = fgi_tokenizer_new(load_fn, &t, FGI_TOKENIZER_GPT2, cJSON_GetArraySize(root));
    if (st == FG_OK) st = read_vocab_entries(t, root, name);
    cJSON_Delete(root);
    if (st == FG_OK) st = fgi_string_map_init(load_fn, &t->lookup, (size_t)t->vocab_size);
    for (int id = 0; st == FG_OK && id < t->vocab_size; id++) {
        int other = fgi_string_map_insert(&t->lookup, t, id);
        if (other >= 0)
            st = fgi_fail(FG_ERR_FORMAT, "%s: %s: tokens %d and %d have the same spelling",
                         load_fn, name, other, id);
    }
    if (st == FG_OK) st = build_outputs(t);
    for (int b = 0; st == FG_OK && b < 256; b++) {
        char spelled[4];
        size_t n = fgi_utf8_encode(fgi_byte_to_codepoint(b), spelled);
        t->byte_token[b] = fgi_string_map_find(&t->lookup, t, spelled, n);
        if (t->byte_token[b] < 0)
            st = fgi_fail(FG_ERR_FORMAT, "%s: %s: no token for byte 0x%02X (spelled U+%04X)",
                         load_fn, name, (unsigned)b, (unsigned)fgi_byte_to_codepoint(b));
    }
    if (st != FG_OK) {
        fg_tokenizer_destroy(t);
        return st;
    }
    static const char eot[] = "<|endoftext|>";
    t->bos = t->eos = fgi_string_map_find(&t->lookup, t, eot, sizeof eot - 1);
    *out = t;
    return FG_OK;
}

static fg_status not_in_vocabulary(const char *name, int line_no, const char *what,
                                   const char *a, size_t a_len, const char *b, size_t b_len)
{
    char quoted_a[128], quoted_b[128];
    return fgi_fail(FG_ERR_FORMAT, "%s: %s line %d: %s \"%s%s\" is not in the vocabulary",
                   load_fn, name, line_no, what,
                   fgi_quote_bytes(quoted_a, sizeof quoted_a, a, a_len),
                   fgi_quote_bytes(quoted_b, sizeof quoted_b, b, b_len));
}

/* Parses one "left right" line into a merge of rank `rank`; scratch holds
 * max_spelling bytes. */
static fg_status add_merge(fg_tokenizer *t, const char *line, size_t n, int line_no,
                           int rank, const char *name, char *scratch)
{
    char quoted[256];
    const char *space = memchr(line, ' ', n);
    size_t left_len = space ? (size_t)(space - line) : 0;
    if (space == NULL || left_len == 0 || left_len + 1 == n ||
        memchr(space + 1, ' ', n - left_len - 1) != NULL)
        return fgi_fail(FG_ERR_FORMAT, "%s: %s line %d: expected \"left right\", got \"%s\"",
                       load_fn, name, line_no, fgi_quote_bytes(quoted, sizeof quoted, line, n));
    const char *right_text = space + 1;
    size_t right_len = n - left_len - 1;
    int left = fgi_string_map_find(&t->lookup, t, line, left_len);
    if (left < 0) return not_in_vocabulary(name, line_no, "token", line, left_len, "", 0);
    int right = fgi_string_map_find(&t->lookup, t, right_text, right_len);
    if (right < 0)
        return not_in_vocabulary(name, line_no, "token", right_text, right_len, "", 0);
    int merged = -1;
    if (left_len + right_len <= t->max_spelling) { /* else too long to be a token */
        memcpy(scratch, line, left_len);
        memcpy(scratch + left_len, right_text, right_len);
        merged = fgi_string_map_find(&t->lookup, t, scratch, left_len + right_len);
    }
    if (merged < 0)
        return not_in_vocabulary(name, line_no, "the merged token", line, left_len, right_text,
                                 right_len);
    fgi_merge_slot *slot = merge_slot(t, left, right);
    if (slot->left >= 0)
        return fgi_fail(FG_ERR_FORMAT, "%s: %s line %d: repeats the merge of rank %d (\"%s\")",
                       load_fn, name, line_no, slot->rank,
                       fgi_quote_bytes(quoted, sizeof quoted, line, n));
    *slot = (fgi_merge_slot){left, right, rank, merged};
    return FG_OK;
}

static fg_status parse_merges(fg_tokenizer *t, const char *text, size_t len, const char *name)
{
    size_t lines = 1, capacity = 16;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    while (capacity < 2 * lines) capacity *= 2; /* load factor <= 1/2 */
    FGI_TRY(fgi_alloc(load_fn, (void **)&t->merges, capacity, sizeof *t->merges));
    for (size_t i = 0; i < capacity; i++) t->merges[i].left = -1;
    t->merges_mask = capacity - 1;
    t->merges_key = fgi_hash_key_random();

    char *scratch = NULL;
    FGI_TRY(fgi_alloc(load_fn, (void **)&scratch, t->max_spelling, 1));
    fg_status st = FG_OK;
    int line_no = 0, rank = 0;
    for (size_t pos = 0; pos < len && st == FG_OK;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len, n = end - pos;
        const char *line = text + pos;
        pos = end + 1;
        line_no++;
        if (n > 0 && line[n - 1] == '\r') n--;
        if (n == 0 || (line_no == 1 && n >= 8 && memcmp(line, "#version", 8) == 0)) continue;
        st = add_merge(t, line, n, line_no, rank++, name, scratch);
    }
    free(scratch);
    return st;
}

fg_status fgi_tokenizer_gpt2_from_memory(fg_tokenizer **tok, const char *vocab_json,
                                         size_t vocab_len, const char *merges_txt,
                                         size_t merges_len, const char *vocab_name,
                                         const char *merges_name)
{
    FGI_TRY(fgi_check_ptr(load_fn, "tok", tok));
    FGI_TRY(fgi_check_ptr(load_fn, "vocab_json", vocab_json));
    FGI_TRY(fgi_check_ptr(load_fn, "merges_txt", merges_txt));
    fg_tokenizer *t = NULL;
    FGI_TRY(parse_vocab(&t, vocab_json, vocab_len, vocab_name ? vocab_name : "vocab.json"));
    fg_status st = parse_merges(t, merges_txt, merges_len, merges_name ? merges_name : "merges.txt");
    if (st != FG_OK) {
        fg_tokenizer_destroy(t);
        return st;
    }
    *tok = t;
    return FG_OK;
}

fg_status fg_tokenizer_load_gpt2(fg_tokenizer **tok, const char *vocab_json_path,
                                 const char *merges_txt_path)
{
    FGI_TRY(fgi_check_ptr(load_fn, "tok", tok));
    FGI_TRY(fgi_check_ptr(load_fn, "vocab_json_path", vocab_json_path));
    FGI_TRY(fgi_check_ptr(load_fn, "merges_txt_path", merges_txt_path));
    char *vocab = NULL, *merges = NULL;
    size_t vocab_len = 0, merges_len = 0;
    FGI_TRY(fgi_tokenizer_read_file(load_fn, vocab_json_path, FGI_TOKENIZER_MAX_BYTES,
                                    "a vocab.json", &vocab, &vocab_len));
    fg_status st = fgi_tokenizer_read_file(load_fn, merges_txt_path, FGI_TOKENIZER_MAX_BYTES,
                                           "a merges.txt", &merges, &merges_len);
    if (st == FG_OK)
        st = fgi_tokenizer_gpt2_from_memory(tok, vocab, vocab_len, merges, merges_len,
                                            vocab_json_path, merges_txt_path);
    free(vocab);
    free(merges);
    return st;
}
