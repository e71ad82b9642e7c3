/* flashgpt token sampling: greedy, temperature, top-k and top-p (nucleus),
 * seeded and reproducible.
 *
 * Given one row of logits (vocab), the sampler
 *  - with temperature 0 returns the arg max (the lowest id among ties);
 *  - otherwise takes p = softmax(logits / temperature), keeps the top_k most
 *    probable ids (top_k <= 0: all), then the smallest prefix of those, in
 *    order of decreasing probability (ties by increasing id), whose
 *    probability reaches top_p (top_p >= 1: all), renormalises, and draws
 *    one id with its own splitmix64 stream seeded by `seed`.
 * Probabilities are integers: exp((l - top) / T) on a grid of 2^-16 in
 * log2 space (relative error below 1.1e-5), scaled so the top id weighs
 * 2^40; ids more than 41 doublings below the top (probability < 2^-40 of
 * the top's) are never drawn. Sums and cuts are exact integer arithmetic,
 * so the same seed and the same logits give the same ids on any machine
 * and on the GPU (fg_cuda_sampler_*, the same arithmetic), bit for bit.
 * vocab_size is at most 2^23. */
#ifndef FLASHGPT_SAMPLER_H
#define FLASHGPT_SAMPLER_H

#include "flashgpt/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float temperature; /* >= 0; 0 is greedy */
    int top_k;         /* <= 0: no limit */
    float top_p;       /* in (0, 1]; 1: no limit */
    uint64_t seed;
} fg_sampler_config;

/* temperature 1, no top-k / top-p limit, seed 0 */
fg_sampler_config fg_sampler_defaults(void);

typedef struct fg_sampler fg_sampler;

fg_status fg_sampler_create(fg_sampler **sampler, int vocab_size,
                            const fg_sampler_config *cfg);
void fg_sampler_destroy(fg_sampler *sampler); /* NULL is a no-op */

/* Draws one id from logits (vocab_size values). Non-finite logits other
 * than -inf are FG_ERR_INVALID_ARG; -inf ids are never drawn (all -inf is
 * an error). */
fg_status fg_sampler_sample(fg_sampler *sampler, const float *logits, int *token);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_SAMPLER_H */
