/* The online-softmax state of one attention row in the CPU reference: the
 * double-precision twin of cuda/attention/softmax_state.cuh, so the streamed
 * (flash) reference and the GPU kernels are written as the same steps.
 *
 * Conventions: natural-log units (the reference scales scores by
 * 1/sqrt(head_dim) and uses exp, where the GPU works in log2 units); max is
 * -inf before the first block and a block's rescale factor exp(max_old -
 * max_new) is then 0. Unlike the GPU state there is no guard against
 * -inf - -inf: the reference skips masked keys instead of scoring them, so
 * only a row whose every score is -inf (or NaN) meets it, and its output
 * stays the NaN the reference always gave. The caller owns the accumulator
 * and applies the factors these functions return. Updating with an empty
 * block is not allowed (an empty part is just the initial state).
 *
 * Design: static inline, so the reference compiles to the same arithmetic
 * as the hand-written loop it replaces (the golden tests compare exactly).
 * Merging two partial states returns both weights: the reference has no
 * split-KV of its own, so it merges pairwise, as a test of the GPU merge's
 * algebra would. */
#ifndef FLASHGPT_HOST_REF_SOFTMAX_STATE_H
#define FLASHGPT_HOST_REF_SOFTMAX_STATE_H

#include <math.h>

typedef struct {
    double max; /* running max of the scores seen */
    double sum; /* running sum of exp(score - max) */
} fgi_ref_softmax;

static inline fgi_ref_softmax fgi_ref_softmax_init(void)
{
    fgi_ref_softmax st = {-INFINITY, 0.0};
    return st;
}

/* Folds the n scores of a block into the state: returns the factor by which
 * the caller rescales its accumulator first, and replaces each score by its
 * probability exp(score - new max), which the caller then adds as
 * p * v. A NaN score never raises the max (the `>` scan). */
static inline double fgi_ref_softmax_update(fgi_ref_softmax *st, double *scores, long long n)
{
    double block_max = -INFINITY;
    for (long long j = 0; j < n; j++)
        if (scores[j] > block_max) block_max = scores[j];
    const double m_new = block_max > st->max ? block_max : st->max;
    const double alpha = exp(st->max - m_new); /* 0 on the first block (max = -inf) */
    st->sum *= alpha;
    for (long long j = 0; j < n; j++) {
        scores[j] = exp(scores[j] - m_new);
        st->sum += scores[j];
    }
    st->max = m_new;
    return alpha;
}

/* Merges partial state b into a (two disjoint sets of keys of one row):
 * *wa and *wb receive the weights of a's and b's accumulators, the merged
 * accumulator being acc_a * wa + acc_b * wb. */
static inline void fgi_ref_softmax_merge(fgi_ref_softmax *a, const fgi_ref_softmax *b,
                                         double *wa, double *wb)
{
    const double m = b->max > a->max ? b->max : a->max;
    *wa = exp(a->max - m);
    *wb = exp(b->max - m);
    a->sum = a->sum * *wa + b->sum * *wb;
    a->max = m;
}

/* Normalises a finished row's accumulator of n values: acc / sum. */
static inline void fgi_ref_softmax_normalise(const fgi_ref_softmax *st, double *acc, int n)
{
    for (int i = 0; i < n; i++) acc[i] /= st->sum;
}

#endif /* FLASHGPT_HOST_REF_SOFTMAX_STATE_H */
