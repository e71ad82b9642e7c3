/* Sampling arithmetic shared by the CPU sampler (sampler.c) and the GPU
 * sampler (cuda/ops/sample.cu), so that both draw the same ids from the same
 * logits and seed, bit for bit.
 *
 * What: a candidate's weight is its softmax numerator exp((l - top) / T) as
 * an integer, 2^40 for the top logit, on a grid of 2^-16 in log2 space:
 *   steps = floor((top - l) * (log2(e) / T) * 2^16)    (one double multiply
 *           of an exact difference: no rounding the two sides could do
 *           differently, nothing a compiler could fuse)
 *   weight = 2^40 * 2^(-steps / 2^16), from two 256-entry tables of
 *           2^31 * 2^(-a/256) and 2^31 * 2^(-b/65536) (made once on the
 *           host, copied to the device) and shifts;
 * weights below 1 (l more than 41 doublings under the top, probability
 * under 2^-40 relative to it) are 0 and never drawn.
 * Conventions: weights, their sums and every cut are integers, so sums do
 * not depend on their order and a GPU reduction equals the CPU's loop. Each
 * candidate is one 64-bit key, (weight << 23) | (2^23 - 1 - id): keys are
 * distinct, and key order is probability order with lower ids first among
 * equals. Top-k, top-p and the draw are all "the smallest prefix, in
 * decreasing key order, whose count / weight reaches a target"; the CPU
 * sorts, the GPU finds the same key by radix selection. */
#ifndef FLASHGPT_SAMPLE_FIXED_H
#define FLASHGPT_SAMPLE_FIXED_H

#include <stdint.h>

#if defined(__CUDACC__) || defined(FG_EMU_CUDA_RUNTIME_H)
#define FGI_SAMPLE_FN __host__ __device__ static inline
#else
#define FGI_SAMPLE_FN static inline
#endif

#define FGI_SAMPLE_ID_BITS 23
#define FGI_SAMPLE_MAX_VOCAB (1 << FGI_SAMPLE_ID_BITS) /* ids must fit the key */
#define FGI_SAMPLE_ID_MASK ((uint64_t)FGI_SAMPLE_MAX_VOCAB - 1)
#define FGI_SAMPLE_TOP_WEIGHT_LOG2 40
#define FGI_SAMPLE_STEPS_PER_DOUBLING 65536.0

/* hi[a] = round(2^31 * 2^(-a/256)), lo[b] = round(2^31 * 2^(-b/65536)). */
typedef struct {
    uint32_t hi[256];
    uint32_t lo[256];
} fgi_sample_tables;

#include "flashgpt/sampler.h"

/* The GPU sampler's device-side state and result, adjacent so that one
 * copy brings both back. */
typedef struct {
    uint64_t state;
    int token;
    int pad;
} fgi_sample_io;

#ifdef __cplusplus
extern "C" {
#endif
/* The grid scale for temperature t > 0: log2(e) / t * 2^16. */
double fgi_sample_scale(float temperature);
void fgi_sample_tables_init(fgi_sample_tables *t);
/* The argument checks of fg_sampler_create (fn names the caller). */
fg_status fgi_sampler_check(const char *fn, int vocab_size, const fg_sampler_config *cfg);
/* A host sampler's configuration, vocabulary and stream state, so a GPU
 * sampler can draw in its place (the session does). */
const fg_sampler_config *fgi_sampler_config(const fg_sampler *sampler);
int fgi_sampler_vocab(const fg_sampler *sampler);
uint64_t *fgi_sampler_state(fg_sampler *sampler);
#ifdef __cplusplus
}
#endif

/* The weight of a logit (finite or -inf) given the top logit. */
FGI_SAMPLE_FN uint64_t fgi_sample_weight(const fgi_sample_tables *t, float logit, float top,
                                         double scale)
{
    const double steps = ((double)top - (double)logit) * scale; /* >= 0; inf for -inf */
    if (!(steps < (FGI_SAMPLE_TOP_WEIGHT_LOG2 + 1) * FGI_SAMPLE_STEPS_PER_DOUBLING)) return 0;
    const uint32_t q = (uint32_t)steps; /* floor: steps >= 0 */
    const uint32_t doublings = q >> 16, frac = q & 0xffffu;
    const uint64_t mantissa = (uint64_t)t->hi[frac >> 8] * t->lo[frac & 0xffu]; /* <= 2^62 */
    return mantissa >> (62 - FGI_SAMPLE_TOP_WEIGHT_LOG2 + doublings);
}

FGI_SAMPLE_FN uint64_t fgi_sample_key(uint64_t weight, int id)
{
    return (weight << FGI_SAMPLE_ID_BITS) | (FGI_SAMPLE_ID_MASK - (uint64_t)id);
}

FGI_SAMPLE_FN int fgi_sample_key_id(uint64_t key)
{
    return (int)(FGI_SAMPLE_ID_MASK - (key & FGI_SAMPLE_ID_MASK));
}

FGI_SAMPLE_FN uint64_t fgi_sample_key_weight(uint64_t key) { return key >> FGI_SAMPLE_ID_BITS; }

/* The top-p target mass: ceil(top_p * total), at most total. */
FGI_SAMPLE_FN uint64_t fgi_sample_top_p_target(float top_p, uint64_t total)
{
    const double t = (double)top_p * (double)total;
    uint64_t target = (uint64_t)t;
    if ((double)target < t) target++;
    return target < total ? (target > 0 ? target : 1) : total;
}

/* One splitmix64 step (the sampler's stream). */
FGI_SAMPLE_FN uint64_t fgi_sample_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A uniform integer in [0, mass): the high half of z * mass. */
FGI_SAMPLE_FN uint64_t fgi_sample_below(uint64_t z, uint64_t mass)
{
#if defined(__CUDA_ARCH__) || defined(FG_EMU_CUDA_RUNTIME_H)
    return __umul64hi(z, mass);
#else
    /* 64 x 64 -> high 64 from 32-bit halves (no compiler extension) */
    const uint64_t z_lo = z & 0xffffffffu, z_hi = z >> 32;
    const uint64_t m_lo = mass & 0xffffffffu, m_hi = mass >> 32;
    const uint64_t lo_lo = z_lo * m_lo, hi_lo = z_hi * m_lo, lo_hi = z_lo * m_hi;
    const uint64_t middle = (lo_lo >> 32) + (hi_lo & 0xffffffffu) + (lo_hi & 0xffffffffu);
    return z_hi * m_hi + (hi_lo >> 32) + (lo_hi >> 32) + (middle >> 32);
#endif
}

#endif /* FLASHGPT_SAMPLE_FIXED_H */
