/* Naive 16-bit references (flashgpt/ops.h, "Naive 16-bit references";
 * docs/contract.md §32).
 *
 * What: each op computed as a framework running in bf16 / f16 computes it,
 * so that the error of that computation against the exact reference is the
 * yardstick of the 16-bit rule. Conventions: values of dtype travel in
 * float arrays; every op boundary rounds with fg_dtype_round; sums inside
 * an op are fp32 in index order (a fixed, simple order, not a clever one). */
#include "flashgpt/ops.h"
#include "ref_internal.h"
#include "validate.h"

#include <math.h>
#include <stdlib.h>

/* FG_ERR_INVALID_ARG unless dtype is a 16-bit type. */
static fg_status check_dtype16(const char *fn, fg_dtype dtype)
{
    if (dtype == FG_DTYPE_BF16 || dtype == FG_DTYPE_F16) return FG_OK;
    return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'dtype' must be bf16 or f16, not %s (%d)",
                    fn, fg_dtype_name(dtype), (int)dtype);
}

fg_status fg_ref_gqa_naive16(fg_dtype dtype, float *out, const float *q, const float *k,
                             const float *v, int n_q_head, int n_kv_head, int q_len,
                             int kv_len, int head_dim)
{
    static const char fn[] = "fg_ref_gqa_naive16";
    FGI_TRY(check_dtype16(fn, dtype));
    FGI_TRY(fgi_check_attention(fn, out, q, k, v, n_q_head, n_kv_head, q_len, kv_len,
                                head_dim));
    float *p;
    FGI_TRY(fgi_alloc(fn, (void **)&p, (size_t)kv_len, sizeof(float)));
    const float scale = (float)(1.0 / sqrt((double)head_dim));
    const int group = n_q_head / n_kv_head, shift = kv_len - q_len, d = head_dim;
    for (int h = 0; h < n_q_head; h++) {
        const float *kh = k + (size_t)(h / group) * kv_len * d;
        const float *vh = v + (size_t)(h / group) * kv_len * d;
        for (int i = 0; i < q_len; i++) {
            const float *qi = q + ((size_t)h * q_len + i) * d;
            const int visible = i + shift + 1; /* bottom-right causal */
            float max = -INFINITY, sum = 0.0f;
            for (int j = 0; j < visible; j++) {
                float s = 0.0f;
                for (int c = 0; c < d; c++) s += qi[c] * kh[(size_t)j * d + c];
                p[j] = fg_dtype_round(dtype, fg_dtype_round(dtype, s) * scale);
                max = fmaxf(max, p[j]);
            }
            for (int j = 0; j < visible; j++) {
                p[j] = expf(p[j] - max);
                sum += p[j];
            }
            for (int j = 0; j < visible; j++) p[j] = fg_dtype_round(dtype, p[j] / sum);
            float *oi = out + ((size_t)h * q_len + i) * d;
            for (int c = 0; c < d; c++) {
                float acc = 0.0f;
                for (int j = 0; j < visible; j++) acc += p[j] * vh[(size_t)j * d + c];
                oi[c] = fg_dtype_round(dtype, acc);
            }
        }
    }
    free(p);
    return FG_OK;
}
