/* Token sampling (see sampler.h), in the integer arithmetic of
 * sample_fixed.h that the GPU sampler shares: candidates become 64-bit keys
 * (weight, then lower id first), sorted once; top-k, top-p and the draw walk
 * the sorted keys with exact integer sums. */
#include "check.h"
#include "flashgpt/sampler.h"
#include "sample_fixed.h"

#include <math.h>
#include <stdlib.h>

struct fg_sampler {
    fg_sampler_config cfg;
    int vocab_size;
    uint64_t state;
    double scale;               /* fgi_sample_scale(temperature) */
    fgi_sample_tables tables;
    uint64_t *keys; /* scratch: one per vocabulary id */
};

double fgi_sample_scale(float temperature)
{
    return 1.4426950408889634 / (double)temperature * FGI_SAMPLE_STEPS_PER_DOUBLING;
}

void fgi_sample_tables_init(fgi_sample_tables *t)
{
    for (int i = 0; i < 256; i++) {
        t->hi[i] = (uint32_t)llround(ldexp(exp2(-i / 256.0), 31));
        t->lo[i] = (uint32_t)llround(ldexp(exp2(-i / 65536.0), 31));
    }
}

fg_sampler_config fg_sampler_defaults(void)
{
    fg_sampler_config c = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
    return c;
}

fg_status fgi_sampler_check(const char *fn, int vocab_size, const fg_sampler_config *cfg)
{
    FGI_TRY(fgi_check_ptr(fn, "cfg", cfg));
    FGI_TRY(fgi_check_min(fn, "vocab_size", vocab_size, 1));
    if (vocab_size > FGI_SAMPLE_MAX_VOCAB)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: vocab_size %d is above the sampler's limit %d",
                        fn, vocab_size, FGI_SAMPLE_MAX_VOCAB);
    if (!(cfg->temperature >= 0.0f) || !isfinite(cfg->temperature))
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: temperature must be finite and >= 0 (got %g)", fn,
                       (double)cfg->temperature);
    if (!(cfg->top_p > 0.0f && cfg->top_p <= 1.0f))
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: top_p must be in (0, 1] (got %g)", fn,
                       (double)cfg->top_p);
    return FG_OK;
}

fg_status fg_sampler_create(fg_sampler **sampler, int vocab_size,
                            const fg_sampler_config *cfg)
{
    static const char fn[] = "fg_sampler_create";
    FGI_TRY(fgi_check_ptr(fn, "sampler", sampler));
    *sampler = NULL;
    FGI_TRY(fgi_sampler_check(fn, vocab_size, cfg));
    fg_sampler *s;
    FGI_TRY(fgi_alloc(fn, (void **)&s, 1, sizeof *s));
    fg_status st = fgi_alloc(fn, (void **)&s->keys, (size_t)vocab_size, sizeof *s->keys);
    if (st != FG_OK) {
        fg_sampler_destroy(s);
        return st;
    }
    s->cfg = *cfg;
    s->vocab_size = vocab_size;
    s->state = cfg->seed;
    s->scale = cfg->temperature > 0.0f ? fgi_sample_scale(cfg->temperature) : 0.0;
    fgi_sample_tables_init(&s->tables);
    *sampler = s;
    return FG_OK;
}

void fg_sampler_destroy(fg_sampler *sampler)
{
    if (sampler == NULL) return;
    free(sampler->keys);
    free(sampler);
}

const fg_sampler_config *fgi_sampler_config(const fg_sampler *s) { return &s->cfg; }
int fgi_sampler_vocab(const fg_sampler *s) { return s->vocab_size; }
uint64_t *fgi_sampler_state(fg_sampler *s) { return &s->state; }

/* Decreasing keys (keys are distinct). */
static int by_key_descending(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x < y) - (x > y);
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

    /* candidates: keys of every id with a weight */
    uint64_t *keys = s->keys, total = 0;
    int n = 0;
    for (int i = 0; i < V; i++) {
        const uint64_t w = fgi_sample_weight(&s->tables, logits[i], logits[best], s->scale);
        if (w == 0) continue;
        keys[n++] = fgi_sample_key(w, i);
        total += w;
    }
    qsort(keys, (size_t)n, sizeof *keys, by_key_descending);

    int keep = (s->cfg.top_k > 0 && s->cfg.top_k < n) ? s->cfg.top_k : n;
    if (s->cfg.top_p < 1.0f) { /* the nucleus of the whole distribution */
        const uint64_t target = fgi_sample_top_p_target(s->cfg.top_p, total);
        uint64_t cum = 0;
        for (int i = 0; i < keep; i++) {
            cum += fgi_sample_key_weight(keys[i]);
            if (cum >= target) {
                keep = i + 1;
                break;
            }
        }
    }
    uint64_t mass = 0;
    for (int i = 0; i < keep; i++) mass += fgi_sample_key_weight(keys[i]);
    const uint64_t r = fgi_sample_below(fgi_sample_next(&s->state), mass);
    uint64_t cum = 0;
    int pick = -1;
    for (int i = 0; i < keep && pick < 0; i++) {
        cum += fgi_sample_key_weight(keys[i]);
        if (cum > r) pick = fgi_sample_key_id(keys[i]);
    }
    *token = pick;
    return FG_OK;
}
