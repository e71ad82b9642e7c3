/* CPU reference: rotary position embedding (docs/contract.md §11).
 *
 * Interleaved pairs: pair j = (x[2j], x[2j+1]) at absolute position p turns
 * by theta = p * base^(-2j/head_dim). Angles and the rotation are computed in
 * double from the position itself (no table), so position 100000 is as exact
 * as position 1. The decoder rotates with its configuration's inverse
 * frequencies (fg_config_rope_inv_freq: scaled RoPE). Llama checkpoints in Hugging Face layout use half-split
 * pairs instead; their loader permutes q/k rows into this pairing. */
#include "validate.h"
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

void fgi_rope_vector_cfg(float *x, int pos, const fg_config *c)
{
    const int head_dim = fg_config_head_dim(c);
    for (int j = 0; j < head_dim / 2; j++) {
        double theta = (double)pos * fg_config_rope_inv_freq(c, j);
        double cs = cos(theta), sn = sin(theta);
        double a = x[2 * j], b = x[2 * j + 1];
        x[2 * j] = (float)(a * cs - b * sn);
        x[2 * j + 1] = (float)(b * cs + a * sn);
    }
}

fg_status fg_ref_rope(float *x, int n_head, int seq, int head_dim,
                      const int *pos, double base)
{
    static const char fn[] = "fg_ref_rope";
    FGI_TRY(fgi_check_rope(fn, x, n_head, seq, head_dim, pos, base));
    FGI_TRY(fgi_check_positions(fn, pos, seq));
    for (size_t h = 0; h < (size_t)n_head; h++)
        for (size_t t = 0; t < (size_t)seq; t++)
            fgi_rope_vector(x + (h * seq + t) * head_dim, head_dim, pos[t], base);
    return FG_OK;
}
