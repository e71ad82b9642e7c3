/* Random in-memory models for decoder tests: every tensor a fresh random
 * draw, owned by the fixture. */
#ifndef FLASHGPT_TESTS_FIXTURE_H
#define FLASHGPT_TESTS_FIXTURE_H

#include "support.h"

typedef struct {
    fg_config cfg;
    fg_weights w;
    fg_layer_weights *layers;
    float **tensors; /* every allocation, for freeing */
    int n_tensors;
} fgi_test_model;

/* Fills a model for `cfg` with random weights (norm gains near 1, small
 * projections so activations stay O(1)). GPT-2 gets every bias and a wpe
 * unless use_rope; Llama gets a separate lm_head when untied is set. */
void fgi_test_model_init(fgi_test_model *m, const fg_config *cfg, fgi_rng *rng,
                        int untied);
void fgi_test_model_free(fgi_test_model *m);
/* Every weight rounded to dtype in place (round to nearest even), so an
 * exact fp32 reference and a 16-bit run start from the same values. */
void fgi_test_model_round(fgi_test_model *m, fg_dtype dtype);

/* Random token ids in [0, vocab). */
/* Decoder configurations of the GPU and fast-CPU decoder tests: GPT-2 with
 * n_kv_head kv heads (GQA / MQA), RoPE instead of learned positions when
 * rope, flash attention with that key block when flash_block > 0; Llama
 * likewise (flash_block 0: dense attention). */
fg_config fgi_test_gpt2_config(int n_layer, int n_embd, int n_head, int n_kv_head, int rope,
                               int flash_block, int vocab, int n_ctx);
fg_config fgi_test_llama_config(int n_layer, int n_embd, int n_head, int n_kv_head, int n_inner,
                                int flash_block, int vocab, int n_ctx);

void fgi_test_random_ids(int *ids, int n, int vocab, fgi_rng *rng);

#endif /* FLASHGPT_TESTS_FIXTURE_H */
