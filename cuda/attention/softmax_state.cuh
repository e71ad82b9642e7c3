/* The online-softmax state of one attention row: the single copy of the
 * running-max / running-sum arithmetic that every attention kernel uses
 * (tiled, mma, generic, decode with its slot and split merges, and the
 * split combine kernel). The CPU flash reference writes the same steps in
 * double (host/ref/ref_attention.c).
 *
 * Conventions: scores are in log2 units (attention_kernels.cuh), so a
 * probability is exp2(score - max) and the log-sum-exp in natural log is
 * max * ln 2 + log(sum). A state is (max, sum): max is -inf until the row
 * has seen an unmasked score; masked scores are -inf. Every exp2 subtracts
 * fgi_softmax_base(max), which is 0 while max is -inf, so -inf - -inf never
 * makes a NaN: masked scores give probability 0 and the first real tile's
 * rescale factor is exp2(-inf) = 0 (the accumulator is still 0). The caller
 * owns the output accumulator: the update and merge functions return the
 * factor it multiplies its accumulator (update) or the part's accumulator
 * (merge) by.
 *
 * Design: three ways to fold scores in, one per kernel shape, each with
 * the floating-point operations, in the order, that the kernels had before
 * (sm_90 comparisons in the commits that moved the kernels onto it):
 *  - fgi_softmax_update: a tile of scores, eager (tiled, mma, generic).
 *    The max rises to the tile's at once; the tile's probabilities replace
 *    the scores in place for the caller's P V.
 *  - fgi_softmax_lazy_*: one score at a time, with a slack (decode): the max
 *    is raised only when a score passes it by more than the slack, so the
 *    accumulator is rescaled a few times per split instead of once per key.
 *    max and sum stay a consistent pair, all the merges and LSE need.
 *  - fgi_softmax_merge: partial states of one row (decode slots, split-KV
 *    partials). Every merge knows all its parts before it starts (they sit
 *    in memory), so the merged state takes the max of the parts first and
 *    each part then enters with one weight exp2(part.max - max); the merged
 *    state's own weight is always 1, so a pairwise merge returning two
 *    weights would only add an exp2 and an accumulator rescale per part.
 * All functions are force-inlined so states and tiles stay in registers. */
#ifndef FLASHGPT_CUDA_SOFTMAX_STATE_CUH
#define FLASHGPT_CUDA_SOFTMAX_STATE_CUH

#include "reduce.cuh"

#include <cuda_runtime.h>
#include <math.h>

#define FGI_LN2 0.693147180559945309f

struct fgi_softmax_state {
    float max; /* running max, log2 units; -inf before any unmasked score */
    float sum; /* running sum of exp2(score - fgi_softmax_base(max)): this
                * lane's share or the whole row's (see fgi_softmax_update) */
};

__device__ __forceinline__ fgi_softmax_state fgi_softmax_init()
{
    return {-INFINITY, 0.0f};
}

/* The value subtracted before exp2 for a running max: the max itself, or 0
 * while nothing has been seen (max = -inf). */
__device__ __forceinline__ float fgi_softmax_base(float max)
{
    return max == -INFINITY ? 0.0f : max;
}

/* Folds a tile of scores into a row's state and returns the factor alpha
 * by which the caller rescales its accumulator before adding the tile's
 * P V. s holds this lane's N scores of the row (masked: -inf); the row's
 * tile is spread over an aligned group of `width` lanes, all of which call
 * this together. On return s holds the probabilities exp2(s - base) of the
 * new max. The lane's probabilities are summed in groups of V adjacent
 * entries first (V = 2: the mma kernel's fragment pairs). whole_row: the
 * tile's sum is reduced over the lanes now and every lane keeps the row's
 * sum; otherwise each lane keeps its share and fgi_softmax_reduce_sum adds
 * the shares once at the end. */
template <int width, int V = 1, bool whole_row = false, int N>
__device__ __forceinline__ float fgi_softmax_update(fgi_softmax_state &st, float (&s)[N])
{
    static_assert(N % V == 0, "whole groups of V scores");
    float mx = s[0];
#pragma unroll
    for (int e = 1; e < V; e++) mx = fmaxf(mx, s[e]);
#pragma unroll
    for (int k = V; k < N; k += V) {
        float g = s[k];
#pragma unroll
        for (int e = 1; e < V; e++) g = fmaxf(g, s[k + e]);
        mx = fmaxf(mx, g);
    }
    mx = fgi_warp_max<width>(mx);
    const float m_new = fmaxf(st.max, mx);
    const float base = fgi_softmax_base(m_new);
    const float alpha = exp2f(st.max - base);
    st.max = m_new;
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < N; k += V) {
        s[k] = exp2f(s[k] - base);
        float g = s[k];
#pragma unroll
        for (int e = 1; e < V; e++) {
            s[k + e] = exp2f(s[k + e] - base);
            g += s[k + e];
        }
        sum = N == V ? g : sum + g; /* one group: no 0 + g */
    }
    if constexpr (whole_row) sum = fgi_warp_sum<width>(sum);
    st.sum = st.sum * alpha + sum;
    return alpha;
}

/* fgi_softmax_update for a tile of scores held as m16n8 mma accumulator
 * fragments: s[j] holds rows g (entries 0, 1) and g + 8 (entries 2, 3) of
 * keys 8j + 2t, +1, the quad of 4 lanes a row; st[h] is row g + 8h's
 * state. The scores become probabilities in place, and the NO fragments
 * of the output accumulator o (same layout) are rescaled by each row's
 * alpha. */
template <int NT, int NO>
__device__ __forceinline__ void fgi_softmax_update_fragments(fgi_softmax_state (&st)[2],
                                                             float (&s)[NT][4],
                                                             float (&o)[NO][4])
{
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float row[2 * NT];
#pragma unroll
        for (int j = 0; j < NT; j++) row[2 * j] = s[j][2 * h], row[2 * j + 1] = s[j][2 * h + 1];
        const float alpha = fgi_softmax_update<4, 2>(st[h], row);
#pragma unroll
        for (int j = 0; j < NT; j++) s[j][2 * h] = row[2 * j], s[j][2 * h + 1] = row[2 * j + 1];
#pragma unroll
        for (int n = 0; n < NO; n++) o[n][2 * h] *= alpha, o[n][2 * h + 1] *= alpha;
    }
}

/* Adds up the lanes' shares of the row sum (fgi_softmax_update without
 * whole_row) over the row's `width` lanes. */
template <int width>
__device__ __forceinline__ void fgi_softmax_reduce_sum(fgi_softmax_state &st)
{
    st.sum = fgi_warp_sum<width>(st.sum);
}

/* Lazy update, one score s at a time (s is the whole row's score, masked:
 * -inf). fgi_softmax_lazy_wants_raise says whether s passes the max by more
 * than `slack` (callers vote on it, so the rare rescale is one warp-uniform
 * branch); fgi_softmax_lazy_raise raises the max to s where it does and
 * returns the accumulator's factor (1 where it does not); then
 * fgi_softmax_lazy_add adds s and returns its probability. With slack
 * (log2 units) the probabilities stay <= 2^slack. */
__device__ __forceinline__ bool fgi_softmax_lazy_wants_raise(const fgi_softmax_state &st,
                                                             float s, float slack)
{
    return s > st.max + slack;
}

__device__ __forceinline__ float fgi_softmax_lazy_raise(fgi_softmax_state &st, float s,
                                                        float slack)
{
    const bool up = fgi_softmax_lazy_wants_raise(st, s, slack);
    const float alpha = up ? exp2f(st.max - s) : 1.0f;
    if (up) st.max = s;
    st.sum *= alpha;
    return alpha;
}

__device__ __forceinline__ float fgi_softmax_lazy_add(fgi_softmax_state &st, float s)
{
    const float p = exp2f(s - fgi_softmax_base(st.max));
    st.sum += p;
    return p;
}

/* Merging the partial states of one row: begin with the max over all the
 * parts, then merge each part; fgi_softmax_merge returns the part's weight,
 * by which the caller scales the part's accumulator before adding it (the
 * merged accumulator's own weight is 1). */
__device__ __forceinline__ fgi_softmax_state fgi_softmax_merge_begin(float max_of_parts)
{
    return {max_of_parts, 0.0f};
}

__device__ __forceinline__ float fgi_softmax_merge(fgi_softmax_state &into,
                                                   fgi_softmax_state part)
{
    const float w = exp2f(part.max - fgi_softmax_base(into.max));
    into.sum = fmaf(w, part.sum, into.sum);
    return w;
}

/* Normalising a finished row (sum = the whole row's): the factor of the
 * output, and the log-sum-exp of the scaled scores in natural log. */
__device__ __forceinline__ float fgi_softmax_inv_sum(const fgi_softmax_state &st)
{
    return 1.0f / st.sum;
}

__device__ __forceinline__ float fgi_softmax_lse(const fgi_softmax_state &st)
{
    return st.max * FGI_LN2 + logf(st.sum);
}

#endif /* FLASHGPT_CUDA_SOFTMAX_STATE_CUH */
