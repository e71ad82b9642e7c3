/* Random attention shapes (see attention_shapes.h). */
#include "attention_shapes.h"

fgi_attention_shape fgi_attention_make_shape(fgi_rng *r, int c, int ratio,
                                             const fgi_attention_space *sp)
{
    fgi_attention_shape s;
    const int n_len = sp->n_lengths;
    s.d = sp->head_dims[c % sp->n_head_dims];
    switch ((c / sp->n_head_dims + c) % 4) {
    case 0:
        s.q_len = 1;
        s.kv_len = sp->lengths[fgi_rng_int(r, 0, n_len - 1)] + fgi_rng_int(r, 0, 300);
        break;
    case 1:
        s.q_len = s.kv_len = sp->lengths[fgi_rng_int(r, 0, n_len - 1)];
        break;
    case 2:
        s.q_len = sp->lengths[fgi_rng_int(r, 0, n_len - 1)];
        s.kv_len = s.q_len + fgi_rng_int(r, 1, 70);
        break;
    default:
        s.q_len = sp->lengths[fgi_rng_int(r, 0, 4)];
        s.kv_len = s.q_len + fgi_rng_int(r, 500, 3000);
        break;
    }
    if (ratio == 0) {
        s.n_kv = 1;
        s.n_q = fgi_rng_int(r, 2, sp->max_mqa_heads);
    } else {
        s.n_kv = fgi_rng_int(r, 1, 3);
        s.n_q = s.n_kv * ratio;
    }
    /* shrink: surplus keys first, then KV heads, MQA query heads, rows */
    const int group = s.n_q / s.n_kv;
    while ((double)s.n_q * s.q_len * s.kv_len * s.d > sp->budget) {
        if (s.kv_len - s.q_len > 64)
            s.kv_len = s.q_len + (s.kv_len - s.q_len) / 2;
        else if (s.n_kv > 1)
            s.n_kv--, s.n_q = s.n_kv * group;
        else if (ratio == 0 && s.n_q > 2)
            s.n_q--;
        else if (s.q_len > 1)
            s.q_len = (s.q_len + 1) / 2, s.kv_len = s.q_len + (s.kv_len - s.q_len) / 2;
        else
            s.kv_len = (s.kv_len + 1) / 2;
    }
    return s;
}
