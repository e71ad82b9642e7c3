/* flashgpt model loading: an owning model object built from a checkpoint on
 * disk (Hugging Face folder or llama2.c file) or from deterministic random
 * weights.
 *
 * Whatever the source, the model holds one configuration and its weights in
 * the layout of decoder.h: matrices (in, out), the fused [q | k | v]
 * projection, interleaved RoPE pairs, classifier (vocab, C) or NULL when
 * tied to wte (F16/BF16 -> F32, transposes, q/k/v fusion, RoPE row
 * permutation). Hugging Face safetensors files are memory-mapped and only
 * checked at load: the fp32 weights are made on the first
 * fg_model_weights call, and a GPU session of the model
 * (fg_session_create_model) copies or converts each tensor from the
 * mapping to the card without them. llama2.c files and random models are
 * fp32 at once.
 *
 * Every size, offset and shape in a file is checked against the file length
 * and the configuration before anything large is allocated or read:
 * malformed files give FG_ERR_FORMAT naming the file and the problem, a
 * missing or unreadable file FG_ERR_IO, a valid file using a feature this
 * build does not implement FG_ERR_UNSUPPORTED. On failure *model is NULL. */
#ifndef FLASHGPT_LOADER_H
#define FLASHGPT_LOADER_H

#include "flashgpt/decoder.h"
#include "flashgpt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Owns its configuration, its files' mappings and its fp32 weights once made. */
typedef struct fg_model fg_model;

/* path is a folder (Hugging Face: config.json + model.safetensors) or a file
 * (llama2.c legacy checkpoint). */
fg_status fg_model_load(fg_model **model, const char *path);

/* Progress of a load: `done` of the weight file's `total` bytes are read
 * (for a mapped checkpoint: its pages touched, so the disk reads happen
 * during the load). Called on the loading thread, once with done 0 before
 * the weights are read, after every chunk read (tens of kilobytes, so keep it cheap), and
 * with done == total when the load has succeeded; never after a failure
 * has been found. It must not call back into the loader. */
typedef void (*fg_load_progress_fn)(uint64_t done, uint64_t total, void *user);

/* fg_model_load reporting progress to `progress` (NULL: none) with `user`
 * passed through, so that a program can show a multi-GB load advancing. */
fg_status fg_model_load_with_progress(fg_model **model, const char *path,
                                      fg_load_progress_fn progress, void *user);

/* Hugging Face folder: config.json (model_type "gpt2" or "llama") and
 * model.safetensors (F32, F16 or BF16 tensors). */
fg_status fg_model_load_hf(fg_model **model, const char *dir);

/* llama2.c legacy checkpoint (Llama family, eps 1e-5, RoPE base 10000). */
fg_status fg_model_load_llama2c(fg_model **model, const char *path);

/* A model of configuration cfg with pseudo-random weights that depend only
 * on (cfg, seed): norm gains near 1, projections with variance 1/fan_in,
 * embeddings and classifier with variance 1/n_embd, small biases. GPT-2
 * gets every bias and a tied classifier (wpe unless use_rope); Llama gets a
 * tied classifier and no biases. Bad configurations are FG_ERR_INVALID_ARG. */
fg_status fg_model_create_random(fg_model **model, const fg_config *cfg,
                                 uint64_t seed);

void fg_model_destroy(fg_model *model); /* NULL is a no-op */

/* Views owned by the model, valid until fg_model_destroy; NULL for NULL.
 * fg_model_weights makes the fp32 weights on its first call (a mapped
 * checkpoint is widened then, once, thread-safely): NULL, with
 * fg_last_error, when they cannot be allocated (tried again next call). */
const fg_config *fg_model_config(const fg_model *model);
const fg_weights *fg_model_weights(const fg_model *model);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_LOADER_H */
