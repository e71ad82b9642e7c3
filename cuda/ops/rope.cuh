/* The rotation of one RoPE pair (docs/contract.md §11), shared by
 * cuda/ops/rope.cu's kernels and the batched decoder's paged append: the
 * angle, its sine and cosine and the rotation in double, whatever the
 * element type (see rope.cu's header). */
#ifndef FLASHGPT_CUDA_ROPE_CUH
#define FLASHGPT_CUDA_ROPE_CUH

#include "dtype.cuh"

#include <math.h>

/* Rotates the pair (*a, *b) in place: elements of type E (T in memory, or
 * float locals), read only after the angle is known, as few registers stay
 * live across sincos. */
template <typename E>
__device__ inline void fgi_rotate_pair(E *a, E *b, long long pos, int pair, int head_dim,
                                       double base, const double *inv_table = nullptr)
{
    /* a scaled model's table (made on the host in double), else the base's */
    const double inv_freq =
        inv_table != nullptr ? inv_table[pair] : pow(base, -2.0 * pair / (double)head_dim);
    const double theta = (double)pos * inv_freq;
    double s, c;
    sincos(theta, &s, &c);
    const double x0 = fgi_load1(a), x1 = fgi_load1(b);
    fgi_store1(a, (float)(x0 * c - x1 * s));
    fgi_store1(b, (float)(x1 * c + x0 * s));
}

#endif /* FLASHGPT_CUDA_ROPE_CUH */
