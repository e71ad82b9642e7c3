/* Token sampling (see sampler.h). The candidate list is sorted by
 * probability with ids breaking ties, so the result never depends on the
 * sort algorithm; probabilities and the cumulative sums are in double. */
#include "check.h"
#include "flashgpt/sampler.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    double prob;
    int id;
} candidate;

struct fg_sampler {
    fg_sampler_config cfg;
    int vocab_size;
    uint64_t state;
    candidate *cand; /* scratch: one entry per vocabulary id */
};

fg_sampler_config fg_sampler_defaults(void)
{
    fg_sampler_config c = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
    return c;
}

static uint64_t next_u64(uint64_t *state)
{ /* splitmix64 */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

fg_status fg_sampler_create(fg_sampler **sampler, int vocab_size,
                            const fg_sampler_config *cfg)
{
    static const char fn[] = "fg_sampler_create";
    FGI_TRY(fgi_check_ptr(fn, "sampler", sampler));
    *sampler = NULL;
    FGI_TRY(fgi_check_ptr(fn, "cfg", cfg));
    FGI_TRY(fgi_check_min(fn, "vocab_size", vocab_size, 1));
    if (!(cfg->temperature >= 0.0f) || !isfinite(cfg->temperature))
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: temperature must be finite and >= 0 (got %g)", fn,
                       (double)cfg->temperature);
    if (!(cfg->top_p > 0.0f && cfg->top_p <= 1.0f))
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: top_p must be in (0, 1] (got %g)", fn,
                       (double)cfg->top_p);
    fg_sampler *s;
    FGI_TRY(fgi_alloc(fn, (void **)&s, 1, sizeof *s));
    fg_status st = fgi_alloc(fn, (void **)&s->cand, (size_t)vocab_size, sizeof *s->cand);
    if (st != FG_OK) {
        fg_sampler_destroy(s);
        return st;
    }
    s->cfg = *cfg;
    s->vocab_size = vocab_size;
    s->state = cfg->seed;
    *sampler = s;
    return FG_OK;
}

void fg_sampler_destroy(fg_sampler *sampler)
{
    if (sampler == NULL) return;
    free(sampler->cand);
    free(sampler);
}

/* Decreasing probability, then increasing id: a total order. */
static int by_prob_then_id(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    if (x->prob != y->prob) return x->prob > y->prob ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

fg_status fg_sampler_sample(fg_sampler *s, const float *logits, int *token)
{
    static const char fn[] = "fg_sampler_sample";
    FGI_TRY(fgi_check_ptr(fn, "sampler", s));
    FGI_TRY(fgi_check_ptr(fn, "logits", logits));
    FGI_TRY(fgi_check_ptr(fn, "token", token));
    const int V = s->vocab_size;
    int best = -1;
    for (int i = 0; i < V; i++) {
        if (isnan(logits[i]) || logits[i] == INFINITY)
            return fgi_fail(FG_ERR_INVALID_ARG, "%s: logits[%d] is %g", fn, i,
                           (double)logits[i]);
        if (logits[i] != -INFINITY && (best < 0 || logits[i] > logits[best])) best = i;
    }
    if (best < 0)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: every logit is -inf", fn);
    if (s->cfg.temperature == 0.0f) {
        *token = best;
        return FG_OK;
    }

    /* candidates with their tempered softmax probabilities */
    candidate *c = s->cand;
    const double inv_t = 1.0 / s->cfg.temperature, top = logits[best];
    double sum = 0.0;
    int n = 0;
    for (int i = 0; i < V; i++) {
        if (logits[i] == -INFINITY) continue;
        c[n].prob = exp(((double)logits[i] - top) * inv_t);
        c[n].id = i;
        sum += c[n++].prob;
    }
    for (int i = 0; i < n; i++) c[i].prob /= sum;
    qsort(c, (size_t)n, sizeof *c, by_prob_then_id);

    int keep = (s->cfg.top_k > 0 && s->cfg.top_k < n) ? s->cfg.top_k : n;
    if (s->cfg.top_p < 1.0f) {
        double cum = 0.0;
        for (int i = 0; i < keep; i++) {
            cum += c[i].prob;
            if (cum >= s->cfg.top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    double mass = 0.0;
    for (int i = 0; i < keep; i++) mass += c[i].prob;
    const double r = (double)(next_u64(&s->state) >> 11) * 0x1.0p-53 * mass;
    double cum = 0.0;
    int pick = c[keep - 1].id; /* rounding: fall back to the last kept */
    for (int i = 0; i < keep; i++) {
        cum += c[i].prob;
        if (r < cum) {
            pick = c[i].id;
            break;
        }
    }
    *token = pick;
    return FG_OK;
}
