/* CPU reference: rotary position embedding (SPEC 8).
 *
 * Interleaved pairs: pair j = (x[2j], x[2j+1]) at absolute position p turns
 * by theta = p * base^(-2j/head_dim). Angles and the rotation are computed in
 * double from the position itself (no table), so position 100000 is as exact
 * as position 1. Llama checkpoints in Hugging Face layout use half-split
 * pairs instead; their loader permutes q/k rows into this pairing. */
#include "check.h"
#include "flashgpt/ops.h"
#include "ref_internal.h"

#include <math.h>

void fgi_rope_vector(float *x, int head_dim, int pos, double base)
{
    for (int j = 0; j < head_dim / 2; j++) {
        double inv_freq = pow(base, -2.0 * j / (double)head_dim);
        double theta = (double)pos * inv_freq;
        double c = cos(theta), s = sin(theta);
        double a = x[2 * j], b = x[2 * j + 1];
        x[2 * j] = (float)(a * c - b * s);
        x[2 * j + 1] = (float)(b * c + a * s);
    }
}

fg_status fg_ref_rope(float *x, int n_head, int seq, int head_dim,
                      const int *pos, double base)
{
    static const char fn[] = "fg_ref_rope";
    size_t elems;
    FG_TRY(fg_check_ptr(fn, "x", x));
    FG_TRY(fg_check_ptr(fn, "pos", pos));
    FG_TRY(fg_check_min(fn, "n_head", n_head, 1));
    FG_TRY(fg_check_min(fn, "seq", seq, 1));
    FG_TRY(fg_check_min(fn, "head_dim", head_dim, 2));
    if (head_dim % 2 != 0)
        return fg_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'head_dim' must be even (got %d)", fn, head_dim);
    if (!(base > 0.0) || !isfinite(base))
        return fg_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'base' must be finite and > 0 (got %g)", fn, base);
    FG_TRY(fg_check_elems(fn, "x (n_head*seq*head_dim)", &elems, 3,
                          (long long)n_head, (long long)seq, (long long)head_dim));
    for (int t = 0; t < seq; t++)
        if (pos[t] < 0)
            return fg_fail(FG_ERR_INVALID_ARG,
                           "%s: argument 'pos[%d]' must be >= 0 (got %d)", fn, t,
                           pos[t]);

    for (size_t h = 0; h < (size_t)n_head; h++)
        for (size_t t = 0; t < (size_t)seq; t++)
            fgi_rope_vector(x + (h * seq + t) * head_dim, head_dim, pos[t], base);
    return FG_OK;
}
