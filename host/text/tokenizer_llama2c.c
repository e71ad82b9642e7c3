/* llama2.c tokenizer.bin: loading and encoding like llama2.c's encode().
 *
 * Conventions:
 *  - File: int32 max_token_length, then per token float32 score, int32
 *    length and the piece's bytes, little-endian; the token count comes from
 *    the model. Every length and offset is checked against the file size
 *    before it is read, and the file must end after the last token.
 *  - Ids 0, 1, 2 are <unk>, BOS and EOS; ids 3..258 are the byte-fallback
 *    tokens <0x00>..<0xFF> (id = byte + 3), which the loader insists on
 *    because encoding relies on them.
 *  - Encoding: with add_bos, BOS and (for non-empty text) the dummy-prefix
 *    space " " first; then each character (a byte plus up to three
 *    following continuation bytes, llama2.c's grouping, so invalid UTF-8
 *    also works) becomes its piece, or its bytes' fallback tokens; then the
 *    adjacent pair whose concatenation is the piece of highest score
 *    (> -1e10, llama2.c's floor; leftmost on ties) is merged until none is
 *    left. Only ordinary pieces (ids >= 259) are looked up or merged, as in
 *    SentencePiece: llama2.c would also match the spellings "<0x41>" or
 *    "\n<s>\n" of special tokens, which would break decoding of text
 *    containing them. The dummy prefix is tied to add_bos so that decoding
 *    gives back exactly the encoded text; llama2.c adds it always.
 *  - Decoding: byte tokens give their byte, BOS and EOS nothing (their
 *    pieces are display markers), other tokens their piece; right after BOS
 *    a leading space is dropped (the dummy prefix). Duplicate pieces are
 *    allowed; lookups then find the lowest id. */
#include "tokenizer_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char load_fn[] = "fg_tokenizer_load_llama2c";

enum { LLAMA2C_BOS = 1, LLAMA2C_EOS = 2, FIRST_BYTE_TOKEN = 3, FIRST_PIECE = 259 };

static uint32_t read_u32le(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int32_t read_i32le(const unsigned char *p)
{
    uint32_t u = read_u32le(p);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static float read_f32le(const unsigned char *p)
{
    uint32_t u = read_u32le(p);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Reads the records into scores, spelling and spelling_at. */
static fg_status read_records(fg_tokenizer *t, const unsigned char *data, size_t len,
                              const char *name)
{
    const int32_t max_len = read_i32le(data);
    if (max_len < 1 || (size_t)max_len > len - 4)
        return fgi_fail(FG_ERR_FORMAT,
                       "%s: %s: max_token_length %d is outside [1, %zu] (the file size)",
                       load_fn, name, (int)max_len, len - 4);
    /* Each token needs at least its 8 header bytes. */
    if ((size_t)t->vocab_size > (len - 4) / 8)
        return fgi_fail(FG_ERR_FORMAT,
                       "%s: %s: %zu bytes cannot hold %d tokens (8 header bytes each)",
                       load_fn, name, len, t->vocab_size);
    FGI_TRY(fgi_alloc(load_fn, (void **)&t->scores, (size_t)t->vocab_size, sizeof(float)));
    FGI_TRY(fgi_alloc(load_fn, (void **)&t->spelling, len, 1)); /* pieces fit in the file */

    size_t pos = 4, at = 0;
    for (int id = 0; id < t->vocab_size; id++) {
        if (len - pos < 8)
            return fgi_fail(FG_ERR_FORMAT,
                           "%s: %s: token %d: header at offset %zu runs past the end (%zu bytes)",
                           load_fn, name, id, pos, len);
        float score = read_f32le(data + pos);
        int32_t n = read_i32le(data + pos + 4);
        pos += 8;
        if (isnan(score))
            return fgi_fail(FG_ERR_FORMAT, "%s: %s: token %d: score is NaN", load_fn, name, id);
        if (n < 0 || n > max_len)
            return fgi_fail(FG_ERR_FORMAT,
                           "%s: %s: token %d: length %d is outside [0, %d] (max_token_length)",
                           load_fn, name, id, (int)n, (int)max_len);
        if ((size_t)n > len - pos)
            return fgi_fail(FG_ERR_FORMAT,
                           "%s: %s: token %d: %d bytes at offset %zu run past the end (%zu bytes)",
                           load_fn, name, id, (int)n, pos, len);
        t->scores[id] = score;
        t->spelling_at[id] = at;
        memcpy(t->spelling + at, data + pos, (size_t)n);
        at += (size_t)n;
        pos += (size_t)n;
        if ((size_t)n > t->max_spelling) t->max_spelling = (size_t)n;
    }
    t->spelling_at[t->vocab_size] = at;
    if (pos != len)
        return fgi_fail(FG_ERR_FORMAT,
                       "%s: %s: %zu bytes left after token %d (is vocab_size %d right?)",
                       load_fn, name, len - pos, t->vocab_size - 1, t->vocab_size);
    return FG_OK;
}

static fg_status check_byte_tokens(const fg_tokenizer *t, const char *name)
{
    for (int b = 0; b < 256; b++) {
        int id = FIRST_BYTE_TOKEN + b;
        char expect[8];
        snprintf(expect, sizeof expect, "<0x%02X>", (unsigned)b);
        size_t n = fgi_spelling_len(t, id);
        if (n != 6 || memcmp(t->spelling + t->spelling_at[id], expect, 6) != 0) {
            char quoted[256];
            return fgi_fail(FG_ERR_FORMAT,
                           "%s: %s: token %d is \"%s\", expected the byte token %s", load_fn,
                           name, id,
                           fgi_quote_bytes(quoted, sizeof quoted,
                                           t->spelling + t->spelling_at[id], n),
                           expect);
        }
    }
    return FG_OK;
}

/* Output bytes: byte tokens their byte, BOS/EOS nothing, the rest the piece. */
static fg_status build_outputs(fg_tokenizer *t)
{
    FGI_TRY(fgi_alloc(load_fn, (void **)&t->output, t->spelling_at[t->vocab_size], 1));
    size_t at = 0;
    for (int id = 0; id < t->vocab_size; id++) {
        t->output_at[id] = at;
        if (id == LLAMA2C_BOS || id == LLAMA2C_EOS) continue;
        if (id >= FIRST_BYTE_TOKEN && id < FIRST_PIECE) {
            t->output[at++] = (char)(id - FIRST_BYTE_TOKEN);
            continue;
        }
        size_t n = fgi_spelling_len(t, id);
        memcpy(t->output + at, t->spelling + t->spelling_at[id], n);
        at += n;
    }
    t->output_at[t->vocab_size] = at;
    return FG_OK;
}

static fg_status build_lookup(fg_tokenizer *t)
{
    FGI_TRY(fgi_string_map_init(load_fn, &t->lookup, (size_t)(t->vocab_size - FIRST_PIECE)));
    for (int id = FIRST_PIECE; id < t->vocab_size; id++)
        fgi_string_map_insert(&t->lookup, t, id); /* a duplicate keeps the lower id */
    int space = fgi_string_map_find(&t->lookup, t, " ", 1);
    t->dummy_prefix = space >= 0 ? space : FIRST_BYTE_TOKEN + ' ';
    return FG_OK;
}

static fg_status check_vocab_size(int vocab_size)
{
    if (vocab_size < FIRST_PIECE)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'vocab_size' must be >= %d (<unk>, BOS, EOS and 256 "
                       "byte tokens) (got %d)",
                       load_fn, FIRST_PIECE, vocab_size);
    return FG_OK;
}

fg_status fgi_tokenizer_llama2c_from_memory(fg_tokenizer **tok, const unsigned char *data,
                                            size_t len, int vocab_size, const char *name)
{
    FGI_TRY(fgi_check_ptr(load_fn, "tok", tok));
    FGI_TRY(fgi_check_ptr(load_fn, "data", data));
    FGI_TRY(check_vocab_size(vocab_size));
    if (name == NULL) name = "tokenizer.bin";
    if (len < 4)
        return fgi_fail(FG_ERR_FORMAT,
                       "%s: %s: %zu bytes is too short for the max_token_length header",
                       load_fn, name, len);
    fg_tokenizer *t = NULL;
    FGI_TRY(fgi_tokenizer_new(load_fn, &t, FGI_TOKENIZER_LLAMA2C, vocab_size));
    t->bos = LLAMA2C_BOS;
    t->eos = LLAMA2C_EOS;
    t->strip_space_after_bos = 1;
    fg_status st = read_records(t, data, len, name);
    if (st == FG_OK) st = check_byte_tokens(t, name);
    if (st == FG_OK) st = build_outputs(t);
    if (st == FG_OK) st = build_lookup(t);
    if (st != FG_OK) {
        fg_tokenizer_destroy(t);
        return st;
    }
    *tok = t;
    return FG_OK;
}

fg_status fg_tokenizer_load_llama2c(fg_tokenizer **tok, const char *path, int vocab_size)
{
    FGI_TRY(fgi_check_ptr(load_fn, "tok", tok));
    FGI_TRY(fgi_check_ptr(load_fn, "path", path));
    FGI_TRY(check_vocab_size(vocab_size));
    char *data = NULL;
    size_t len = 0;
    FGI_TRY(fgi_tokenizer_read_file(load_fn, path, FGI_TOKENIZER_MAX_BYTES, "a tokenizer.bin",
                                    &data, &len));
    fg_status st = fgi_tokenizer_llama2c_from_memory(tok, (const unsigned char *)data, len,
                                                     vocab_size, path);
    free(data);
    return st;
}

/* --- encoding ---------------------------------------------------------------- */

static int llama2c_pair_rule(const fg_tokenizer *tok, int left_id, int right_id,
                             double *priority, int *merged, char *scratch)
{
    if (left_id < FIRST_PIECE || right_id < FIRST_PIECE) return 0;
    size_t a = fgi_spelling_len(tok, left_id), b = fgi_spelling_len(tok, right_id);
    if (a + b > tok->max_spelling) return 0;
    memcpy(scratch, tok->spelling + tok->spelling_at[left_id], a);
    memcpy(scratch + a, tok->spelling + tok->spelling_at[right_id], b);
    int id = fgi_string_map_find(&tok->lookup, tok, scratch, a + b);
    if (id < 0 || !(tok->scores[id] > -1e10f)) return 0;
    *priority = -(double)tok->scores[id]; /* highest score first */
    *merged = id;
    return 1;
}

void fgi_llama2c_encode(const fg_tokenizer *tok, const unsigned char *text, size_t len,
                        int add_bos, int *out, int *count, fgi_bpe_work *work)
{
    int n = 0;
    if (add_bos) out[n++] = tok->bos;
    int first = n;
    if (add_bos && len > 0) out[n++] = tok->dummy_prefix;
    for (size_t pos = 0; pos < len;) {
        size_t k = 1;
        while (k < 4 && pos + k < len && (text[pos + k] & 0xC0) == 0x80) k++;
        int id = fgi_string_map_find(&tok->lookup, tok, (const char *)text + pos, k);
        if (id >= 0) {
            out[n++] = id;
        } else {
            for (size_t i = 0; i < k; i++) out[n++] = FIRST_BYTE_TOKEN + text[pos + i];
        }
        pos += k;
    }
    *count = first + fgi_bpe_merge(work, tok, llama2c_pair_rule, 0, out + first, n - first);
}
