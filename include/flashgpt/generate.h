/* flashgpt text generation policy: which tokenizer belongs to a model, how a
 * prompt starts (BOS), when generation stops, and the loop itself (prefill
 * the prompt, then sample a token and feed it back), so that every front end
 * (the flashgpt command, a server) behaves the same.
 *
 * Design:
 *  - fg_generate works on a caller-owned session, tokenizer and sampler and
 *    allocates nothing per token. A server runs one generation per session
 *    (fg_session_reset between requests keeps the weights on the device)
 *    and one sampler per request; the tokenizer is immutable and may be
 *    shared between threads.
 *  - Tokens stream through a callback (id and the bytes the token adds to
 *    the text); a nonzero return cancels the generation cleanly, e.g. when a
 *    client disconnects.
 *  - The prompt is encoded separately (fg_prompt_encode) so that a caller
 *    can see its length before committing to a generation; fg_generate_text
 *    does both in one call. */
#ifndef FLASHGPT_GENERATE_H
#define FLASHGPT_GENERATE_H

#include "flashgpt/decoder.h"
#include "flashgpt/sampler.h"
#include "flashgpt/session.h"
#include "flashgpt/status.h"
#include "flashgpt/tokenizer.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- the tokenizer of a model ----------------------------------------------- */

/* Loads the tokenizer that belongs to a model.
 *  - tok_path given (an explicit choice): a folder holding tokenizer.json
 *    (Hugging Face), else vocab.json and merges.txt (GPT-2); a file named
 *    tokenizer.json; another file ending in ".json" (GPT-2 vocab.json, with
 *    merges.txt from the same folder); anything else a llama2.c
 *    tokenizer.bin of vocab_size tokens. model_path may then be NULL.
 *  - else, in the model's folder (model_path itself when it is a folder,
 *    else the folder of the file): tokenizer.json, else vocab.json +
 *    merges.txt (GPT-2, when vocab.json exists), else tokenizer.bin, else
 *    tok<vocab_size>.bin (llama2.c, e.g. tok512.bin beside stories260K.bin).
 *    tokenizer.json comes first because it is what transformers uses: a
 *    folder that also holds vocab.json + merges.txt (GPT-2, Qwen2) gets the
 *    file's own pre-tokenizer and special tokens.
 * Nothing found is FG_ERR_IO with the message "no tokenizer beside
 * <model_path> (looked for tokenizer.json, vocab.json + merges.txt,
 * tokenizer.bin, tok<vocab_size>.bin)"; a found file that fails to load
 * gives its loader's error. vocab_size is the model's
 * (fg_config.vocab_size), >= 1; a tokenizer.json does not use it. */
fg_status fg_tokenizer_load_for_model(fg_tokenizer **tok, const char *model_path,
                                      const char *tok_path, int vocab_size);

/* The ids that end a model's text: eos_token_id of generation_config.json
 * and of config.json in the model's folder (model_path itself when it is a
 * folder, else the folder of the file), each an int or a list of ints
 * (Llama 3 instruct lists several), in that order without repeats. A folder
 * with neither file or key (a llama2.c checkpoint) has none: FG_OK with
 * *n_ids 0. Sizing as fg_tokenizer_encode: *n_ids always gets the count,
 * too small a capacity is FG_ERR_INVALID_ARG with ids untouched. A key that
 * is not an id or a list of ids is FG_ERR_FORMAT naming the file. Front
 * ends pass these as fg_generate_config.stop_ids (unless told to ignore
 * EOS), since a session does not know where its model came from. */
fg_status fg_eos_ids_for_model(const char *model_path, int *ids, int capacity, int *n_ids);

/* --- prompts -------------------------------------------------------------------- */

/* The BOS rule: 1 when a prompt of prompt_len bytes for a model of this
 * configuration starts with the tokenizer's BOS, else 0. Llama-family
 * models always get BOS (they were trained with it); GPT-2 gets none,
 * except that an empty prompt starts from <|endoftext|> (GPT-2's BOS), the
 * way GPT-2 samples unconditionally. -1 for a NULL or invalid cfg.
 * With a tokenizer.json, "BOS" means what its post-processor adds (none for
 * Qwen2 or GPT-2), except that an empty prompt to which it adds nothing
 * starts from the tokenizer's BOS when it has one. */
int fg_prompt_wants_bos(const fg_config *cfg, size_t prompt_len);

/* Encodes the len bytes of text (NULL allowed when len is 0) for a model of
 * configuration cfg: fg_tokenizer_encode with the BOS rule above. Sizing
 * works as in fg_tokenizer_encode: *n_ids always gets the count needed when
 * the arguments are otherwise valid; too small a capacity is
 * FG_ERR_INVALID_ARG with ids untouched (a first call with capacity 0 and
 * ids NULL sizes the buffer). A prompt that encodes to no token at all is
 * FG_ERR_INVALID_ARG. */
fg_status fg_prompt_encode(const fg_tokenizer *tok, const fg_config *cfg,
                           const char *text, size_t len, int *ids, int capacity,
                           int *n_ids);

/* --- generation ----------------------------------------------------------------- */

/* Why a generation ended. */
typedef enum {
    FG_STOP_NONE = 0,         /* it did not end normally: fg_generate failed */
    FG_STOP_EOS = 1,          /* a stop id was sampled (the tokenizer's EOS or BOS,
                                 or one of stop_ids); it is not passed on */
    FG_STOP_MAX_TOKENS = 2,   /* max_new_tokens tokens were generated */
    FG_STOP_CONTEXT_FULL = 3, /* the session is full: the last token generated
                                 could not be fed back for another step */
    FG_STOP_CANCELLED = 4,    /* the callback returned nonzero */
    FG_STOP_STRING = 5        /* the text reached one of stop_strings; the text
                                 from the match on is not passed on */
} fg_stop_reason;

/* Short fixed name, e.g. "eos", "max tokens"; never NULL. */
const char *fg_stop_reason_str(fg_stop_reason reason);

/* The step a failed generation failed in. */
typedef enum {
    FG_GENERATE_OK = 0,      /* no failure */
    FG_GENERATE_ENCODE = 1,  /* encoding the prompt (fg_generate_text) */
    FG_GENERATE_PREFILL = 2, /* the forward pass over the prompt */
    FG_GENERATE_SAMPLE = 3,  /* drawing a token (e.g. non-finite logits) */
    FG_GENERATE_DECODE = 4   /* the forward pass of a generated token */
} fg_generate_step;

/* Called once per token, in order. piece is the bytes the token adds to the
 * text after the previous one (fg_tokenizer_piece; not NUL-terminated; len
 * may be 0, also for an id the tokenizer does not know). Return 0 to go
 * on, nonzero to stop (FG_STOP_CANCELLED).
 * With stop strings, a generated token's bytes are instead the text that
 * is now known to come before any stop string: text that may be the start
 * of a stop string is held back (len 0 meanwhile) and passed with a later
 * token once the text goes another way; a match passes the text before
 * it with the token that completed it, and stops (FG_STOP_STRING). When
 * the generation ends otherwise (not cancelled), text still held back is
 * passed in one last call with id -1. Prompt tokens are never held. */
typedef int (*fg_token_callback)(void *user, int id, const char *piece, size_t len);

typedef struct {
    int max_new_tokens;         /* >= 0; 0 only prefills */
    int echo_prompt;            /* nonzero: on_token also gets each prompt token,
                                   before the prefill */
    int ignore_eos;             /* nonzero: the tokenizer's EOS and BOS do not stop */
    const int *stop_ids;        /* more ids that stop (n_stop_ids of them) */
    int n_stop_ids;             /* >= 0; stop_ids may be NULL when 0 */
    fg_token_callback on_token; /* may be NULL */
    void *user;                 /* passed to on_token */
    const char *const *stop_strings; /* texts that end the generation (not
                                        empty, NUL-terminated); the earliest
                                        match in the generated text wins */
    int n_stop_strings;         /* >= 0; stop_strings may be NULL when 0 */
} fg_generate_config;

/* max_new_tokens 64, no echo, stop at EOS, no stop ids or strings, no callback */
fg_generate_config fg_generate_defaults(void);

typedef struct {
    fg_stop_reason stop;     /* FG_STOP_NONE after a failure */
    fg_generate_step failed; /* FG_GENERATE_OK, or the step that failed */
    int n_prompt;            /* prompt tokens (prefilled unless the prefill failed
                                or the echo was cancelled) */
    int n_generated;         /* tokens passed to on_token after the prompt */
    double prefill_seconds, decode_seconds; /* wall time of the prefill, and of
                                               everything after it */
} fg_generate_result;

/* Generates after the n_prompt ids of prompt (usually from fg_prompt_encode):
 * appends them to the session in one forward pass (prefill), then until a
 * stop condition: draws a token from the session's last logits with the
 * sampler, stops if it is a stop id, passes it to on_token, stops at a
 * stop string, after max_new_tokens or when the session is full, else
 * feeds it to the session. The last token generated is not fed back (its
 * logits would go unused), nor one that completed a stop string.
 * The sampler must have been created for the vocabulary of the session's
 * model; the session may already hold tokens (they are context), but the
 * prompt must fit in what is left of it. On success *result tells why and
 * how much; after a failure past argument validation (the step is in
 * result->failed, the cause in fg_last_error()) *result holds the counts so
 * far, the session may hold part of the generation and the sampler has
 * advanced. */
fg_status fg_generate(fg_session *session, const fg_tokenizer *tok, fg_sampler *sampler,
                      const int *prompt, int n_prompt, const fg_generate_config *cfg,
                      fg_generate_result *result);

/* fg_prompt_encode of the prompt text for a model of configuration
 * model_cfg (the session's), then fg_generate. */
fg_status fg_generate_text(fg_session *session, const fg_config *model_cfg,
                           const fg_tokenizer *tok, fg_sampler *sampler,
                           const char *text, size_t len, const fg_generate_config *cfg,
                           fg_generate_result *result);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_GENERATE_H */
