/* flashgpt tokenizers: text <-> token ids for the two model families.
 *
 *  - GPT-2 byte-level BPE (vocab.json + merges.txt), encoding exactly as
 *    OpenAI's encoder: the text is split by GPT-2's pre-tokenisation pattern,
 *    each piece's bytes are merged lowest merge rank first. Any byte string
 *    round-trips: decode(encode(text)) == text, invalid UTF-8 included
 *    (a byte that is not part of a valid UTF-8 sequence is classified like
 *    U+FFFD, i.e. as punctuation, by the pre-tokeniser). Like OpenAI's
 *    encoder, "<|endoftext|>" inside the text is encoded as ordinary text.
 *  - llama2.c tokenizer.bin (SentencePiece BPE export): UTF-8 code points
 *    looked up as pieces, byte fallback to <0xXX> (id = byte + 3) for the
 *    others, then the adjacent pair whose concatenation is the highest-score
 *    piece is merged first (leftmost on ties). BOS 1, EOS 2.
 *
 * A loaded tokenizer is immutable: one may be shared by several threads.
 * Text is bytes with an explicit length (NUL is an ordinary byte). */
#ifndef FLASHGPT_TOKENIZER_H
#define FLASHGPT_TOKENIZER_H

#include "flashgpt/status.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_tokenizer fg_tokenizer;

/* GPT-2 byte-level BPE. vocab.json: one JSON object token -> id whose ids are
 * exactly 0 .. n-1 and which holds the 256 single-byte tokens; merges.txt:
 * an optional first line "#version...", then one "left right" pair per line
 * in priority order, both halves and their concatenation in the vocabulary.
 * BOS and EOS are "<|endoftext|>" when present. A missing file is
 * FG_ERR_IO; anything malformed is FG_ERR_FORMAT naming the file. */
fg_status fg_tokenizer_load_gpt2(fg_tokenizer **tok, const char *vocab_json_path,
                                 const char *merges_txt_path);

/* llama2.c tokenizer.bin: int32 max_token_length, then vocab_size records of
 * float32 score, int32 length, `length` bytes (little-endian). vocab_size
 * comes from the model (the file does not store it) and must be >= 259:
 * ids 0, 1, 2 are <unk>, BOS, EOS and ids 3..258 must be the byte tokens
 * <0x00>..<0xFF>. The file must end right after the last record. */
fg_status fg_tokenizer_load_llama2c(fg_tokenizer **tok, const char *path,
                                    int vocab_size);

void fg_tokenizer_destroy(fg_tokenizer *tok); /* NULL is a no-op */

/* Accessors; a NULL tokenizer gives 0 (vocab size) or -1. */
int fg_tokenizer_vocab_size(const fg_tokenizer *tok);
int fg_tokenizer_bos(const fg_tokenizer *tok); /* llama2.c: 1; GPT-2: <|endoftext|>; -1 if none */
int fg_tokenizer_eos(const fg_tokenizer *tok); /* llama2.c: 2; GPT-2: <|endoftext|>; -1 if none */

/* Encodes the len bytes of text (any bytes). add_bos prepends BOS
 * (FG_ERR_INVALID_ARG when the vocabulary has none); for llama2.c it also
 * prepends SentencePiece's dummy space to non-empty text, which decode drops
 * again. Writes the ids to ids[0 .. *n_ids) when they fit in capacity; ids
 * may be NULL when capacity is 0. *n_ids always gets the number of ids the
 * text needs when the arguments are otherwise valid: too small a capacity
 * is FG_ERR_INVALID_ARG with *n_ids set and ids untouched, so a first call
 * with capacity 0 sizes the buffer. Text longer than INT_MAX - 2 bytes is
 * refused. */
fg_status fg_tokenizer_encode(const fg_tokenizer *tok, const char *text,
                              size_t len, int add_bos, int *ids, int capacity,
                              int *n_ids);

/* The bytes of the n ids (no NUL appended): the concatenation of
 * fg_tokenizer_piece(tok, ids[i-1], ids[i]) with ids[-1] taken as -1.
 * *len gets the bytes needed; a cap smaller than that is
 * FG_ERR_INVALID_ARG with *len set and out untouched (out may be NULL when
 * cap is 0). An id outside [0, vocab_size) is FG_ERR_INVALID_ARG. */
fg_status fg_tokenizer_decode(const fg_tokenizer *tok, const int *ids, int n,
                              char *out, size_t cap, size_t *len);

/* Streaming decode: the bytes token `id` adds after token `prev` (-1 at the
 * start of a sequence). *bytes points into the tokenizer (valid until it is
 * destroyed, not NUL-terminated) and *len gets their number (may be 0).
 *  - GPT-2: the token's byte-level characters mapped back to bytes
 *    (characters outside the 256-character byte alphabet give their UTF-8);
 *    prev is only validated.
 *  - llama2.c: the piece; byte tokens <0xXX> give the raw byte; BOS and EOS
 *    give nothing; after BOS a leading space (the dummy prefix) is dropped. */
fg_status fg_tokenizer_piece(const fg_tokenizer *tok, int prev, int id,
                             const char **bytes, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_TOKENIZER_H */
