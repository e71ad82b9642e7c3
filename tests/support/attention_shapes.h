/* Random attention shapes for the GPU attention tests, fp32
 * (tests/cuda/test_cuda_attention.c) and 16-bit (test_cuda_attention16.c):
 * one generator, each test giving its own head dims, lengths and budget.
 *
 * Conventions: case c takes head_dims[c % n_head_dims]; its lengths cycle
 * (with c / n_head_dims) through decode (q_len 1), square (q_len = kv_len),
 * a few extra keys, and kv_len >> q_len; ratio is the query heads per KV
 * head (0: MQA with 2..max_mqa_heads query heads). The shape then shrinks
 * until n_q * q_len * kv_len * d is within the budget. */
#ifndef FLASHGPT_TESTS_ATTENTION_SHAPES_H
#define FLASHGPT_TESTS_ATTENTION_SHAPES_H

#include "support.h"

typedef struct {
    int n_q, n_kv, q_len, kv_len, d;
} fgi_attention_shape;

typedef struct {
    const int *head_dims;
    int n_head_dims;
    const int *lengths; /* at least five: kv >> q draws q_len from the first five */
    int n_lengths;
    int max_mqa_heads;
    double budget; /* bound on n_q * q_len * kv_len * d */
} fgi_attention_space;

fgi_attention_shape fgi_attention_make_shape(fgi_rng *r, int c, int ratio,
                                             const fgi_attention_space *space);

#endif /* FLASHGPT_TESTS_ATTENTION_SHAPES_H */
