/* The tokenizer object and the pieces shared by the GPT-2 and llama2.c
 * tokenizers (host/text/tokenizer.c): the spelling -> id hash map, the BPE merge
 * engine, file reading and message helpers. The parse-from-memory entry
 * points are what the file loaders and the fuzzers call. */
#ifndef FLASHGPT_HOST_TOKENIZER_INTERNAL_H
#define FLASHGPT_HOST_TOKENIZER_INTERNAL_H

#include "check.h"
#include "flashgpt/tokenizer.h"
#include "hash.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FGI_TOKENIZER_GPT2 = 0,
    FGI_TOKENIZER_LLAMA2C = 1,
    FGI_TOKENIZER_JSON = 2 /* Hugging Face tokenizer.json (tokenizer_json.c) */
} fgi_tokenizer_kind;

/* tokenizer.json's pipeline: normalizer, pre-tokenizer, model options,
 * added tokens, post-processor (defined in tokenizer_json.c). */
typedef struct fgi_json_state fgi_json_state;
void fgi_json_state_free(fgi_json_state *js);

/* Open addressing map from a token's spelling to its id; the keys live in
 * the tokenizer's spelling arena, so the map only stores ids. The spellings
 * come from a file: the hash is keyed (hash.h) so that no file can make
 * them collide. */
typedef struct {
    int32_t *slots;   /* capacity entries: an id, or -1 when empty */
    size_t mask;      /* capacity - 1; capacity is a power of two */
    fgi_hash_key key; /* drawn for this map */
} fgi_string_map;

/* GPT-2 merge table slot: the pair (left, right) merges into `merged`. */
typedef struct {
    int32_t left, right; /* token ids; left == -1 marks an empty slot */
    int32_t rank;        /* line order in merges.txt: lower merges first */
    int32_t merged;
} fgi_merge_slot;

struct fg_tokenizer {
    fgi_tokenizer_kind kind;
    int vocab_size, bos, eos; /* bos / eos: -1 when the vocabulary has none */
    /* Token i is spelled spelling[spelling_at[i] .. spelling_at[i+1]) as the
     * file stores it (GPT-2: the byte-level unicode key; llama2.c: the piece)
     * and decodes to output[output_at[i] .. output_at[i+1]). */
    char *spelling, *output;
    size_t *spelling_at, *output_at; /* vocab_size + 1 offsets each */
    size_t max_spelling;             /* longest spelling, in bytes */
    fgi_string_map lookup;           /* spelling -> id of the tokens encode may use */
    int strip_space_after_bos;       /* llama2.c's dummy-prefix removal */
    /* tokenizer.json decoders that treat the start of the text differently
     * (Strip, Metaspace): what each token decodes to as the first token;
     * NULL when that is its ordinary output. */
    char *first_output;
    size_t *first_output_at;
    fgi_json_state *json;            /* FGI_TOKENIZER_JSON only */

    /* GPT-2 */
    int byte_token[256];   /* id of the single-byte token of each byte */
    fgi_merge_slot *merges;
    size_t merges_mask;    /* merge table capacity - 1 (power of two) */
    fgi_hash_key merges_key; /* keyed like the spelling map: pairs come from a file */

    /* llama2.c */
    float *scores;         /* vocab_size merge scores: higher merges first */
    int dummy_prefix;      /* id of " " (or the byte token of 0x20) */
};

/* Byte length of token id's spelling / output. */
static inline size_t fgi_spelling_len(const fg_tokenizer *tok, int id)
{
    return tok->spelling_at[id + 1] - tok->spelling_at[id];
}

/* --- parse from memory (the file loaders read the files and call these) --- */

/* GPT-2 from vocab.json and merges.txt contents; the names are used in
 * messages. On failure *tok is untouched and nothing leaks. */
fg_status fgi_tokenizer_gpt2_from_memory(fg_tokenizer **tok, const char *vocab_json,
                                         size_t vocab_len, const char *merges_txt,
                                         size_t merges_len, const char *vocab_name,
                                         const char *merges_name);

/* llama2.c from tokenizer.bin contents; vocab_size >= 259. */
fg_status fgi_tokenizer_llama2c_from_memory(fg_tokenizer **tok, const unsigned char *data,
                                            size_t len, int vocab_size, const char *name);

/* tokenizer.json from memory; config_json (tokenizer_config.json, may be
 * NULL) only names BOS and EOS. */
fg_status fgi_tokenizer_json_from_memory(fg_tokenizer **tok, const char *json, size_t len,
                                         const char *config_json, size_t config_len,
                                         const char *name);

/* tokenizer.json encoding: the ids of text into *ids (allocated here, free
 * with free()) and their number into *count. flags: FG_ENCODE_*. */
fg_status fgi_json_encode(const fg_tokenizer *tok, const unsigned char *text, size_t len,
                          unsigned flags, int **ids, int *count);

/* Kind-specific encoders: write the ids of text into out (room for len + 2)
 * and their number into *count; add_bos is honoured (the caller checked that
 * a BOS exists). */
typedef struct fgi_bpe_work fgi_bpe_work;
void fgi_gpt2_encode(const fg_tokenizer *tok, const unsigned char *text, size_t len,
                     int add_bos, int *out, int *count, fgi_bpe_work *work);
void fgi_llama2c_encode(const fg_tokenizer *tok, const unsigned char *text, size_t len,
                        int add_bos, int *out, int *count, fgi_bpe_work *work);

/* --- shared helpers (host/text/tokenizer.c) --- */

/* Tokenizer files are read whole, so their size is checked first: no real
 * vocabulary comes near this (GPT-2's vocab.json is 1 MB, merges.txt 0.5 MB,
 * a 256K-token vocabulary under 10 MB); a larger file is refused before a
 * byte of it is read instead of costing its size in memory. */
#define FGI_TOKENIZER_MAX_BYTES ((uint64_t)64 << 20)

/* Reads a whole regular file of at most max_bytes (`what` names the limit
 * in the message); FG_ERR_IO / FG_ERR_FORMAT naming fn and path. */
fg_status fgi_tokenizer_read_file(const char *fn, const char *path, uint64_t max_bytes,
                                  const char *what, char **data, size_t *len);

/* A zeroed tokenizer of the given kind and vocabulary size with its offset
 * arrays allocated; free with fg_tokenizer_destroy. */
fg_status fgi_tokenizer_new(const char *fn, fg_tokenizer **tok, fgi_tokenizer_kind kind,
                            int vocab_size);

fg_status fgi_string_map_init(const char *fn, fgi_string_map *map, size_t n_entries);
/* Inserts id under its spelling. Returns -1 when inserted, or the id that
 * already holds that spelling (the map is left unchanged). */
int fgi_string_map_insert(fgi_string_map *map, const fg_tokenizer *tok, int id);
/* The id spelled s[0 .. n), or -1. */
int fgi_string_map_find(const fgi_string_map *map, const fg_tokenizer *tok,
                        const char *s, size_t n);


/* --- BPE merge engine --- */

/* May token left_id followed by right_id merge? If so sets *priority (lower
 * merges first) and *merged. scratch holds 2 * max_spelling bytes. */
typedef int (*fgi_pair_rule)(const fg_tokenizer *tok, int left_id, int right_id,
                             double *priority, int *merged, char *scratch);

typedef struct {
    double priority;
    int left;               /* symbol index of the pair's left half */
    int left_id, right_id;  /* the ids the pair had when it was queued */
    int merged;
} fgi_bpe_candidate;

struct fgi_bpe_work {
    int *id, *prev, *next;        /* per symbol; id -1: merged away */
    fgi_bpe_candidate *heap;      /* min-heap on (priority, left) */
    size_t heap_len;
    int *pending;                 /* whole_passes: symbols merged this pass */
    char *scratch;
};

/* Room for sequences of up to max_symbols symbols. */
fg_status fgi_bpe_work_init(const char *fn, fgi_bpe_work *work, const fg_tokenizer *tok,
                            size_t max_symbols);
void fgi_bpe_work_free(fgi_bpe_work *work);

/* Merges ids[0 .. n) in place and returns the new count. Each step takes the
 * mergeable adjacent pair of lowest (priority, position). whole_passes
 * (OpenAI's GPT-2 rule): once a pair is chosen, every non-overlapping
 * occurrence of it is merged left to right before any pair formed by those
 * merges is considered. Otherwise one merge per step (llama2.c). */
int fgi_bpe_merge(fgi_bpe_work *work, const fg_tokenizer *tok, fgi_pair_rule rule,
                  int whole_passes, int *ids, int n);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_HOST_TOKENIZER_INTERNAL_H */
