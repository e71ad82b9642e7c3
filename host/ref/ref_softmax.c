/* CPU reference: softmax over any axis and the causal mask (docs/contract.md §4, §5).
 *
 * Softmax views x as (outer, n, inner) and normalises each of the
 * outer*inner slices of n values (stride inner). It is max-shifted and sums
 * in double; -inf entries get 0, an all -inf slice gives zeros, and +inf
 * entries share the probability equally (the limit of the shifted form). */
#include "validate.h"
#include "flashgpt/ops.h"
#include "ref_internal.h"

#include <math.h>

void fgi_softmax_slice(float *y, const float *x, int n, size_t stride)
{
    double max = -INFINITY;
    for (int j = 0; j < n; j++)
        if (x[j * stride] > max) max = x[j * stride];

    if (max == -INFINITY || max == INFINITY) {
        int n_top = 0;
        for (int j = 0; j < n; j++) n_top += (x[j * stride] == max);
        float share = (max == INFINITY) ? 1.0f / (float)n_top : 0.0f;
        for (int j = 0; j < n; j++) y[j * stride] = (x[j * stride] == max) ? share : 0.0f;
        return;
    }
    double sum = 0.0;
    for (int j = 0; j < n; j++) sum += exp((double)x[j * stride] - max);
    for (int j = 0; j < n; j++)
        y[j * stride] = (float)(exp((double)x[j * stride] - max) / sum);
}

fg_status fg_ref_softmax(float *y, const float *x, int outer, int n, int inner)
{
    FGI_TRY(fgi_check_softmax("fg_ref_softmax", y, x, outer, n, inner));
    for (size_t o = 0; o < (size_t)outer; o++) {
        size_t base = o * (size_t)n * (size_t)inner;
        for (size_t i = 0; i < (size_t)inner; i++)
            fgi_softmax_slice(y + base + i, x + base + i, n, (size_t)inner);
    }
    return FG_OK;
}

fg_status fg_ref_causal_mask(uint8_t *mask, int q_len, int kv_len)
{
    FGI_TRY(fgi_check_causal_mask("fg_ref_causal_mask", mask, q_len, kv_len));
    const long long shift = (long long)kv_len - q_len;
    for (size_t i = 0; i < (size_t)q_len; i++) {
        uint8_t *row = mask + i * (size_t)kv_len;
        for (long long j = 0; j < kv_len; j++) row[j] = (j > (long long)i + shift);
    }
    return FG_OK;
}
