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
 *  - Hugging Face tokenizer.json (the `tokenizers` library's format), BPE
 *    models only, encoding as that library does with its defaults:
 *    added tokens matched first (longest match), the normalizer, the
 *    pre-tokenizer, BPE by merge rank, then the post-processor's additions.
 *    Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2: ByteLevel with the
 *    GPT-2 regex or a Split with the Llama-3 / Qwen2 regex, NFC) and
 *    SentencePiece-style BPE (Llama 2, TinyLlama, Mistral: "▁" for spaces via
 *    Prepend/Replace or Metaspace, byte fallback to <0xNN>) are read;
 *    anything else is refused naming the part.
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

/* Hugging Face tokenizer.json. Read: model "BPE" (vocab, merges as "a b"
 * strings or [a, b] pairs, byte_fallback, unk_token, fuse_unk,
 * ignore_merges); normalizers NFC, Prepend, Replace (string pattern) and
 * Sequence; pre-tokenizers ByteLevel, Split (Isolated, with the GPT-2,
 * Llama-3 or Qwen2 regex exactly as those files write it), Metaspace,
 * Digits and Sequence; added tokens with their special, lstrip, rstrip,
 * single_word and normalized flags; post-processors TemplateProcessing
 * (its "single" template), RobertaProcessing, BertProcessing, ByteLevel and
 * Sequence; decoders ByteLevel, Replace, ByteFallback, Fuse, Strip,
 * Metaspace and Sequence. Any other type (WordPiece, Unigram, WordLevel, a
 * regex other than those three, ...) is FG_ERR_UNSUPPORTED naming the part;
 * malformed JSON, wrong types, ids out of range, a token or id given twice
 * are FG_ERR_FORMAT. A tokenizer_config.json beside the file, when there
 * is one, names BOS and EOS (bos_token, eos_token); otherwise BOS is the
 * first token the post-processor puts in front (-1 if none) and EOS the
 * last one it appends (-1 if none); when neither file names either, an
 * added token "<|endoftext|>" is both (GPT-2). Ids may leave gaps (tokens decoding to
 * nothing); vocab_size is the largest id + 1. */
fg_status fg_tokenizer_load_json(fg_tokenizer **tok, const char *tokenizer_json_path);

void fg_tokenizer_destroy(fg_tokenizer *tok); /* NULL is a no-op */

/* Accessors; a NULL tokenizer gives 0 (vocab size) or -1. */
int fg_tokenizer_vocab_size(const fg_tokenizer *tok);
int fg_tokenizer_bos(const fg_tokenizer *tok); /* llama2.c: 1; GPT-2: <|endoftext|>; -1 if none */
int fg_tokenizer_eos(const fg_tokenizer *tok); /* llama2.c: 2; GPT-2: <|endoftext|>; -1 if none */

/* Encodes the len bytes of text (any bytes). add_bos prepends BOS
 * (FG_ERR_INVALID_ARG when the vocabulary has none); for llama2.c it also
 * prepends SentencePiece's dummy space to non-empty text, which decode drops
 * again. For tokenizer.json, add_bos adds whatever the file's
 * post-processor adds (Llama: BOS; Qwen2, GPT-2: nothing, which is no
 * error) and special tokens in the text are matched as their ids (see
 * fg_tokenizer_encode_ex for reading them as text).
 * Writes the ids to ids[0 .. *n_ids) when they fit in capacity; ids
 * may be NULL when capacity is 0. *n_ids always gets the number of ids the
 * text needs when the arguments are otherwise valid: too small a capacity
 * is FG_ERR_INVALID_ARG with *n_ids set and ids untouched, so a first call
 * with capacity 0 sizes the buffer. Text longer than INT_MAX - 2 bytes is
 * refused. */
fg_status fg_tokenizer_encode(const fg_tokenizer *tok, const char *text,
                              size_t len, int add_bos, int *ids, int capacity,
                              int *n_ids);

/* Flags of fg_tokenizer_encode_ex. */
enum {
    /* BOS, as fg_tokenizer_encode's add_bos; for tokenizer.json every token
     * the post-processor adds (BOS, also EOS or nothing), and no error when
     * it adds none */
    FG_ENCODE_ADD_SPECIAL = 1u,
    /* tokenizer.json: special added tokens in the text are read as plain
     * text instead of as their ids (the other formats never match them) */
    FG_ENCODE_SPLIT_SPECIAL = 2u
};

/* fg_tokenizer_encode with FG_ENCODE_* flags; add_bos is flags &
 * FG_ENCODE_ADD_SPECIAL. Unknown flag bits are FG_ERR_INVALID_ARG. For
 * tokenizer.json, fg_tokenizer_encode(add_bos) is this call with
 * FG_ENCODE_ADD_SPECIAL, the Hugging Face default (add_special_tokens):
 * the post-processor's tokens, which may be none. */
fg_status fg_tokenizer_encode_ex(const fg_tokenizer *tok, const char *text, size_t len,
                                 unsigned flags, int *ids, int capacity, int *n_ids);

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
 *    give nothing; after BOS a leading space (the dummy prefix) is dropped.
 *  - tokenizer.json: the token (added and special ones too) through the
 *    file's decoder chain; with prev -1, what the chain does at the start
 *    of the text (Strip's leading spaces, Metaspace's first "▁"). Where the
 *    `tokenizers` library turns bytes that are not valid UTF-8 into U+FFFD
 *    (ByteLevel and ByteFallback decoders), the bytes are given as they
 *    are, so that a stream of pieces can be joined into valid text. */
fg_status fg_tokenizer_piece(const fg_tokenizer *tok, int prev, int id,
                             const char **bytes, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_TOKENIZER_H */
