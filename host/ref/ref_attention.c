/* CPU reference: causal attention, its streamed (flash) form, split/merge of
 * heads, multi-head and grouped-query attention, optionally with a sliding
 * window (docs/contract.md §6, §8, §9, §7, §10).
 *
 * Conventions: bottom-right causal alignment (query i sees keys
 * j <= i + kv_len - q_len; with a window W >= 1 also j > i + kv_len - q_len
 * - W), scores scaled by 1/sqrt(head_dim), masked keys skipped rather than
 * given a large negative score. GQA: query head h reads
 * kv head h / (n_q_head / n_kv_head); K/V are indexed, never replicated.
 * Dense and streamed attention differ only in summation order, both in
 * double, so they agree to float rounding for every block size. */
#include "validate.h"
#include "flashgpt/ops.h"
#include "ref_internal.h"
#include "ref_softmax_state.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double dot(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* acc = acc * alpha + p * v */
static void scale_add(double *acc, double alpha, double p, const float *v, int n)
{
    for (int i = 0; i < n; i++) acc[i] = acc[i] * alpha + p * (double)v[i];
}

static void dense_row(double *acc, const float *q, const float *k, const float *v,
                      int visible, int d, double scale, double *scores)
{
    double max = -INFINITY, sum = 0.0;
    for (int j = 0; j < visible; j++) {
        scores[j] = dot(q, k + (size_t)j * d, d) * scale;
        if (scores[j] > max) max = scores[j];
    }
    memset(acc, 0, sizeof(double) * (size_t)d);
    for (int j = 0; j < visible; j++) {
        double p = exp(scores[j] - max);
        sum += p;
        scale_add(acc, 1.0, p, v + (size_t)j * d, d);
    }
    for (int i = 0; i < d; i++) acc[i] /= sum;
}

/* Online softmax over key blocks [start, start + block) (ref_softmax_state.h):
 * the running state and the accumulator acc are rescaled by exp(m_old -
 * m_new) whenever a block raises the max. Blocks wholly past `visible` are
 * never touched; the last block may be short. */
static void flash_row(double *acc, const float *q, const float *k, const float *v,
                      int visible, int d, double scale, int block, double *scores)
{
    fgi_ref_softmax st = fgi_ref_softmax_init();
    memset(acc, 0, sizeof(double) * (size_t)d);
    for (long long start = 0; start < visible; start += block) {
        long long end = start + block < visible ? start + block : visible;
        for (long long j = start; j < end; j++)
            scores[j - start] = dot(q, k + (size_t)j * d, d) * scale;
        const double alpha = fgi_ref_softmax_update(&st, scores, end - start);
        for (int i = 0; i < d; i++) acc[i] *= alpha;
        for (long long j = start; j < end; j++)
            scale_add(acc, 1.0, scores[j - start], v + (size_t)j * d, d);
    }
    fgi_ref_softmax_normalise(&st, acc, d);
}

size_t fgi_attend_scratch(int kv_len, int head_dim)
{
    return (size_t)kv_len + (size_t)head_dim;
}

void fgi_attend_head(float *out, size_t out_stride, const float *q,
                     size_t q_stride, const float *k, const float *v,
                     int q_len, int kv_len, int head_dim, int block_size,
                     int window, double *scratch)
{
    const double scale = 1.0 / sqrt((double)head_dim);
    const int shift = kv_len - q_len;
    double *scores = scratch, *acc = scratch + kv_len;
    for (int i = 0; i < q_len; i++) {
        const float *qi = q + (size_t)i * q_stride;
        const int end = i + shift + 1; /* keys [first, end) are visible */
        const int first = window > 0 && end > window ? end - window : 0;
        const float *ki = k + (size_t)first * head_dim, *vi = v + (size_t)first * head_dim;
        if (block_size <= 0)
            dense_row(acc, qi, ki, vi, end - first, head_dim, scale, scores);
        else
            flash_row(acc, qi, ki, vi, end - first, head_dim, scale, block_size, scores);
        float *oi = out + (size_t)i * out_stride;
        for (int c = 0; c < head_dim; c++) oi[c] = (float)acc[c];
    }
}

/* Validates and runs grouped-query attention; MHA, single-head attention and
 * the flash form are special cases with their own names in messages. */
static fg_status attention_checked(const char *fn, float *out, const float *q,
                                   const float *k, const float *v, int n_q_head,
                                   int n_kv_head, int q_len, int kv_len,
                                   int head_dim, int block_size, int window)
{
    double *scratch;
    FGI_TRY(fgi_check_attention(fn, out, q, k, v, n_q_head, n_kv_head, q_len, kv_len,
                               head_dim));
    FGI_TRY(fgi_check_min(fn, "window", window, 0));
    FGI_TRY(fgi_alloc(fn, (void **)&scratch, fgi_attend_scratch(kv_len, head_dim),
                    sizeof(double)));
    const int group = n_q_head / n_kv_head;
    const size_t q_head = (size_t)q_len * head_dim, kv_head = (size_t)kv_len * head_dim;
    for (int h = 0; h < n_q_head; h++) {
        size_t kvh = (size_t)(h / group);
        fgi_attend_head(out + h * q_head, (size_t)head_dim, q + h * q_head,
                        (size_t)head_dim, k + kvh * kv_head, v + kvh * kv_head,
                        q_len, kv_len, head_dim, block_size, window, scratch);
    }
    free(scratch);
    return FG_OK;
}

fg_status fg_ref_attention(float *out, const float *q, const float *k,
                           const float *v, int q_len, int kv_len, int head_dim)
{
    return attention_checked("fg_ref_attention", out, q, k, v, 1, 1, q_len,
                             kv_len, head_dim, 0, 0);
}

fg_status fg_ref_attention_flash(float *out, const float *q, const float *k,
                                 const float *v, int q_len, int kv_len,
                                 int head_dim, int block_size)
{
    FGI_TRY(fgi_check_min("fg_ref_attention_flash", "block_size", block_size, 1));
    return attention_checked("fg_ref_attention_flash", out, q, k, v, 1, 1, q_len,
                             kv_len, head_dim, block_size, 0);
}

fg_status fg_ref_mha(float *out, const float *q, const float *k, const float *v,
                     int n_head, int q_len, int kv_len, int head_dim)
{
    return attention_checked("fg_ref_mha", out, q, k, v, n_head, n_head, q_len,
                             kv_len, head_dim, 0, 0);
}

fg_status fg_ref_gqa(float *out, const float *q, const float *k, const float *v,
                     int n_q_head, int n_kv_head, int q_len, int kv_len,
                     int head_dim)
{
    return attention_checked("fg_ref_gqa", out, q, k, v, n_q_head, n_kv_head,
                             q_len, kv_len, head_dim, 0, 0);
}

fg_status fg_ref_gqa_window(float *out, const float *q, const float *k, const float *v,
                            int n_q_head, int n_kv_head, int q_len, int kv_len,
                            int head_dim, int window)
{
    return attention_checked("fg_ref_gqa_window", out, q, k, v, n_q_head, n_kv_head,
                             q_len, kv_len, head_dim, 0, window);
}

/* (a, b, d) -> (b, a, d): transpose of the two leading axes. */
static fg_status swap_leading_axes(const char *fn, float *out, const float *x,
                                   int a, int b, int d, const char *a_name,
                                   const char *b_name)
{
    FGI_TRY(fgi_check_swap_heads(fn, out, x, a, b, d, a_name, b_name));
    for (size_t i = 0; i < (size_t)a; i++)
        for (size_t j = 0; j < (size_t)b; j++)
            memcpy(out + (j * a + i) * d, x + (i * b + j) * d, sizeof(float) * (size_t)d);
    return FG_OK;
}

fg_status fg_ref_split_heads(float *out, const float *x, int seq, int n_head,
                             int head_dim)
{
    /* x (seq, n_head, d) -> out (n_head, seq, d) */
    return swap_leading_axes("fg_ref_split_heads", out, x, seq, n_head, head_dim,
                             "seq", "n_head");
}

fg_status fg_ref_merge_heads(float *out, const float *x, int n_head, int seq,
                             int head_dim)
{
    /* x (n_head, seq, d) -> out (seq, n_head, d) */
    return swap_leading_axes("fg_ref_merge_heads", out, x, n_head, seq, head_dim,
                             "n_head", "seq");
}
