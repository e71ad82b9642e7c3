/* Decoding sessions (see session.h): one code path per device behind the
 * same calls. The reference path runs fg_ref_forward / fg_ref_forward_last
 * on a host cache; the fast CPU path owns an fgi_cpu_runner (host/cpu: its
 * own packed weights, cache and threads); the CUDA path owns the uploaded
 * weights, a runner and a KV cache (fg_cuda_weights, fg_cuda_runner,
 * fg_cuda_kv_cache).
 *
 * The cache holds `allocated` tokens, at most `capacity` (the most the
 * session accepts). A session created with ctx 0 starts small and grows
 * (doubling) as tokens arrive: sizing it to the model's context at once
 * reserved gigabytes for a config that claims millions of positions. Growing
 * copies the cache into the larger one, on the host or on the card
 * (fgi_cuda_kv_cache_copy), never recomputing it: the cached bits go on as
 * they were, so a grown session decodes exactly as one created large enough
 * (with the same attention split plans; they follow the capacity) and
 * growth costs a copy, not a forward over the whole history. */
#include "check.h"
#include "decoder_internal.h"
#include "flashgpt/cuda.h"
#include "flashgpt/session.h"
#include "config_internal.h"
#include "loader_internal.h"
#include "cpu_internal.h"
#include "sample_fixed.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Weights on the card, read by every session created sharing them
 * (fg_session_create_sharing) and freed with the last of those. */
typedef struct {
    atomic_int refs;
    fg_cuda_weights *w;
} gpu_weights_ref;

struct fg_session {
    const fg_config *cfg;
    const fg_weights *w;
    const fg_model *model;         /* fg_session_create_model: CUDA uploads from it */
    fg_device device;
    fg_dtype dtype;                /* f32; bf16 / f16 on CUDA only */
    uint64_t seed;                 /* w NULL: weights generated on the card from it */
    int capacity, len, has_logits;
    int allocated;                 /* tokens the cache holds now, <= capacity */
    float *last_logits;            /* (vocab); CUDA: a copy made on demand */
    const float *device_logits;    /* CUDA: the last logits, in the runner */
    int logits_on_host;            /* last_logits is current */
    fg_cuda_sampler *gpu_sampler;  /* CUDA: draws for the caller's fg_sampler */
    fg_sampler_config gpu_sampler_cfg; /* ... of this configuration */
    fg_kv_cache *host_cache;       /* REF */
    fgi_cpu_runner *cpu;           /* CPU */
    gpu_weights_ref *gpu_weights;  /* CUDA, shared */
    fg_cuda_runner *gpu_runner;    /* CUDA */
    long long retired_wait_ns;     /* device waits of runners and samplers replaced */
    fg_cuda_kv_cache *gpu_cache;   /* CUDA */
};

fg_status fg_device_parse(const char *name, fg_device *device)
{
    static const char fn[] = "fg_device_parse";
    FGI_TRY(fgi_check_ptr(fn, "name", name));
    FGI_TRY(fgi_check_ptr(fn, "device", device));
    const fg_device all[] = {FG_DEVICE_AUTO, FG_DEVICE_CPU, FG_DEVICE_CUDA, FG_DEVICE_REF};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, fg_device_name(all[i])) == 0) {
            *device = all[i];
            return FG_OK;
        }
    return fgi_fail(FG_ERR_INVALID_ARG,
                   "%s: unknown device '%s' (expected auto, cpu, cuda or ref)", fn, name);
}

const char *fg_device_name(fg_device device)
{
    switch (device) {
    case FG_DEVICE_AUTO: return "auto";
    case FG_DEVICE_CPU: return "cpu";
    case FG_DEVICE_CUDA: return "cuda";
    case FG_DEVICE_REF: return "ref";
    }
    return "unknown";
}

/* First cache size of a session created with ctx 0. */
enum { FIRST_ALLOCATION = 64 };

/* A device cache shaped for cfg (the cache itself knows nothing of models). */
static fg_status create_device_cache(fg_cuda_kv_cache **cache, const fg_config *cfg, int tokens,
                                     fg_dtype dtype)
{
    return fg_cuda_kv_cache_create_typed(cache, cfg->n_layer, cfg->n_kv_head,
                                         fg_config_head_dim(cfg), tokens, dtype);
}

/* A CUDA session's runner and cache, its weights in place. */
static fg_status open_device_state(fg_session *s)
{
    FGI_TRY(fg_cuda_runner_create(&s->gpu_runner, s->gpu_weights->w, s->allocated, NULL));
    return create_device_cache(&s->gpu_cache, s->cfg, s->allocated, s->dtype);
}

static fg_status open_device(const char *fn, fg_session *s)
{
    if (s->device == FG_DEVICE_REF)
        return fg_kv_cache_create(&s->host_cache, s->cfg, s->allocated);
    if (s->device == FG_DEVICE_CPU)
        return fgi_cpu_runner_create(fn, &s->cpu, s->cfg, s->w, s->allocated, 0,
                                     FGI_CPU_ISA_AUTO);
    if (!fg_cuda_available())
        return fgi_fail(FG_ERR_CUDA, "%s: device cuda requested but no usable GPU", fn);
    FGI_TRY(fgi_alloc(fn, (void **)&s->gpu_weights, 1, sizeof *s->gpu_weights));
    atomic_init(&s->gpu_weights->refs, 1);
    s->gpu_weights->w = NULL;
    fg_cuda_weights **w = &s->gpu_weights->w;
    if (s->model != NULL)
        FGI_TRY(fg_cuda_weights_create_model(w, s->model, s->dtype));
    else if (s->w == NULL)
        FGI_TRY(fg_cuda_weights_create_random(w, s->cfg, s->dtype, s->seed));
    else
        FGI_TRY(fg_cuda_weights_create_typed(w, s->cfg, s->w, s->dtype));
    return open_device_state(s);
}

static void gpu_weights_release(gpu_weights_ref *g)
{
    if (g == NULL || atomic_fetch_sub(&g->refs, 1) > 1) return;
    fg_cuda_weights_destroy(g->w);
    free(g);
}

/* Host cache of `tokens` holding a copy of every cached token of old. */
static fg_status grow_host(fg_session *s, int tokens)
{
    fg_kv_cache *c, *old = s->host_cache;
    FGI_TRY(fg_kv_cache_create(&c, s->cfg, tokens));
    const size_t d = (size_t)old->head_dim;
    for (int l = 0; l < old->n_layer; l++) {
        const size_t n = (size_t)old->layers[l].len * d;
        for (size_t h = 0; h < (size_t)old->n_kv_head; h++) { /* (n_kv_head, capacity, head_dim) */
            memcpy(c->layers[l].k + h * (size_t)tokens * d, old->layers[l].k + h * (size_t)old->capacity * d,
                   n * sizeof(float));
            memcpy(c->layers[l].v + h * (size_t)tokens * d, old->layers[l].v + h * (size_t)old->capacity * d,
                   n * sizeof(float));
        }
        c->layers[l].len = old->layers[l].len;
    }
    fg_kv_cache_destroy(old);
    s->host_cache = c;
    return FG_OK;
}

/* Device runner and cache for `tokens`, the cached keys and values copied
 * into it on the card; the session is unchanged unless all of it succeeds.
 * The last logits live in the old runner: they come to the host first. */
static fg_status grow_device(fg_session *s, int tokens)
{
    fg_cuda_runner *r = NULL;
    fg_cuda_kv_cache *c = NULL;
    fg_status st = fg_cuda_runner_create(&r, s->gpu_weights->w, tokens, NULL);
    if (st == FG_OK) st = create_device_cache(&c, s->cfg, tokens, s->dtype);
    if (st == FG_OK) st = fgi_cuda_kv_cache_copy(c, s->gpu_cache);
    if (st == FG_OK && s->has_logits && !s->logits_on_host)
        st = fg_cuda_download(s->last_logits, s->device_logits,
                              sizeof(float) * (size_t)s->cfg->vocab_size);
    if (st != FG_OK) {
        fg_cuda_kv_cache_destroy(c);
        fg_cuda_runner_destroy(r);
        return st;
    }
    s->logits_on_host = 1;
    s->device_logits = NULL;
    s->retired_wait_ns += fg_cuda_runner_wait_ns(s->gpu_runner) +
                          fg_cuda_sampler_wait_ns(s->gpu_sampler);
    fg_cuda_sampler_destroy(s->gpu_sampler);
    s->gpu_sampler = NULL; /* made again, for the new runner's logits, at the next draw */
    fg_cuda_kv_cache_destroy(s->gpu_cache);
    fg_cuda_runner_destroy(s->gpu_runner);
    s->gpu_cache = c;
    s->gpu_runner = r;
    return FG_OK;
}

fg_status fg_session_reserve(fg_session *s, int tokens)
{
    static const char fn[] = "fg_session_reserve";
    FGI_TRY(fgi_check_ptr(fn, "session", s));
    if (tokens < 1 || tokens > s->capacity)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: tokens must be in 1 .. %d, the session's "
                        "capacity (got %d)", fn, s->capacity, tokens);
    if (tokens <= s->allocated) return FG_OK;
    if (s->device == FG_DEVICE_REF)
        FGI_TRY(grow_host(s, tokens));
    else if (s->device == FG_DEVICE_CPU)
        FGI_TRY(fgi_cpu_runner_reserve(fn, s->cpu, tokens));
    else
        FGI_TRY(grow_device(s, tokens));
    s->allocated = tokens;
    return FG_OK;
}

size_t fg_session_cache_bytes(const fg_session *s)
{
    if (s == NULL) return 0;
    const fg_config *c = s->cfg;
    return 2 * fg_dtype_size(s->dtype) * (size_t)c->n_layer * (size_t)c->n_kv_head *
           (size_t)fg_config_head_dim(c) * (size_t)s->allocated;
}

fg_status fg_session_dtype_parse(const char *text, fg_dtype *dtype)
{
    static const char fn[] = "fg_session_dtype_parse";
    FGI_TRY(fgi_check_ptr(fn, "text", text));
    FGI_TRY(fgi_check_ptr(fn, "dtype", dtype));
    if (strcmp(text, "auto") == 0) {
        *dtype = FG_DTYPE_AUTO;
        return FG_OK;
    }
    return fg_dtype_parse(text, dtype);
}

/* The type a session on `device` (CPU, CUDA or REF) runs for the request,
 * or FG_ERR_UNSUPPORTED naming why the device cannot run it. */
static fg_status choose_dtype(const char *fn, const fg_config *cfg, fg_device device,
                              fg_dtype want, fg_dtype *dtype)
{
    if (want != FG_DTYPE_AUTO && want != FG_DTYPE_F32 && want != FG_DTYPE_BF16 &&
        want != FG_DTYPE_F16)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: unknown dtype %d", fn, (int)want);
    *dtype = FG_DTYPE_F32;
    if (device != FG_DEVICE_CUDA) {
        if (want == FG_DTYPE_AUTO || want == FG_DTYPE_F32) return FG_OK;
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: dtype %s runs on the cuda device only; the %s device computes in "
                       "f32 (use --dtype f32 or auto)", fn, fg_dtype_name(want),
                       fg_device_name(device));
    }
    if (want == FG_DTYPE_AUTO) {
        if (fg_cuda_decoder_dtype_supported(cfg, FG_DTYPE_BF16))
            *dtype = FG_DTYPE_BF16;
        else if (fg_cuda_decoder_dtype_supported(cfg, FG_DTYPE_F16))
            *dtype = FG_DTYPE_F16;
        return FG_OK;
    }
    if (want != FG_DTYPE_F32 && !fg_cuda_decoder_dtype_supported(cfg, want))
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: dtype %s cannot run here: it needs a GPU of compute capability 8.0 "
                       "or later and a head_dim of 32, 64, 80, 96, 128 or 256 (this model: %d)",
                       fn, fg_dtype_name(want), fg_config_head_dim(cfg));
    *dtype = want;
    return FG_OK;
}

static fg_status check_ctx(const char *fn, const fg_config *cfg, int ctx)
{
    if (ctx < 0 || ctx > cfg->n_ctx)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: ctx must be in 0 .. %d, the model's context (got %d)", fn,
                       cfg->n_ctx, ctx);
    return FG_OK;
}

/* A session of cfg for ctx (as fg_session_create) with its logits buffer,
 * no device state yet. */
static fg_status session_alloc(const char *fn, fg_session **out, const fg_config *cfg, int ctx)
{
    fg_session *s;
    FGI_TRY(fgi_alloc(fn, (void **)&s, 1, sizeof *s));
    s->cfg = cfg;
    s->capacity = ctx ? ctx : cfg->n_ctx;
    s->allocated = ctx ? ctx : (cfg->n_ctx < FIRST_ALLOCATION ? cfg->n_ctx : FIRST_ALLOCATION);
    fg_status st = fgi_alloc(fn, (void **)&s->last_logits, (size_t)cfg->vocab_size,
                             sizeof(float));
    if (st != FG_OK) {
        free(s);
        return st;
    }
    *out = s;
    return FG_OK;
}

static fg_status session_create(const char *fn, fg_session **session, const fg_config *cfg,
                                const fg_weights *w, fg_device device, int ctx, fg_dtype dtype,
                                int random, uint64_t seed, const fg_model *model)
{
    FGI_TRY(fgi_check_ptr(fn, "session", session));
    *session = NULL;
    FGI_TRY(fgi_check_config(fn, cfg));
    if (!random && model == NULL) FGI_TRY(fgi_check_weights(fn, cfg, w));
    if (random && device != FG_DEVICE_CUDA)
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: weights generated on the card need the cuda "
                        "device (got %s)", fn, fg_device_name(device));
    if (device != FG_DEVICE_AUTO && device != FG_DEVICE_CPU && device != FG_DEVICE_CUDA &&
        device != FG_DEVICE_REF)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: unknown device %d", fn, (int)device);
    FGI_TRY(check_ctx(fn, cfg, ctx));

    const int cuda_ok = fg_cuda_available();
    const fg_device chosen = device == FG_DEVICE_AUTO ? (cuda_ok ? FG_DEVICE_CUDA : FG_DEVICE_CPU)
                                                      : device;
    fg_dtype chosen_dtype;
    FGI_TRY(choose_dtype(fn, cfg, chosen, dtype, &chosen_dtype)); /* before any allocation */
    if (model != NULL && chosen != FG_DEVICE_CUDA) {
        /* the CPU paths compute from the fp32 weights: widened here, once */
        FGI_TRY(fgi_model_widen(fn, model, &w));
        FGI_TRY(fgi_check_weights(fn, cfg, w));
    }

    fg_session *s;
    FGI_TRY(session_alloc(fn, &s, cfg, ctx));
    s->dtype = chosen_dtype;
    s->seed = seed;
    s->w = w;
    s->model = chosen == FG_DEVICE_CUDA ? model : NULL;
    s->device = chosen;
    fg_status st = open_device(fn, s);
    if (st != FG_OK) {
        fg_session_destroy(s);
        return st;
    }
    *session = s;
    return FG_OK;
}

fg_status fg_session_create(fg_session **session, const fg_config *cfg,
                            const fg_weights *w, fg_device device, int ctx)
{
    return session_create("fg_session_create", session, cfg, w, device, ctx, FG_DTYPE_F32, 0, 0, NULL);
}

fg_status fg_session_create_typed(fg_session **session, const fg_config *cfg,
                                  const fg_weights *w, fg_device device, int ctx,
                                  fg_dtype dtype)
{
    return session_create("fg_session_create_typed", session, cfg, w, device, ctx, dtype, 0, 0, NULL);
}

fg_status fg_session_create_random(fg_session **session, const fg_config *cfg, int ctx,
                                   fg_dtype dtype, uint64_t seed)
{
    return session_create("fg_session_create_random", session, cfg, NULL, FG_DEVICE_CUDA, ctx,
                          dtype, 1, seed, NULL);
}

fg_status fg_session_create_model(fg_session **session, const fg_model *model, fg_device device,
                                  int ctx, fg_dtype dtype)
{
    static const char fn[] = "fg_session_create_model";
    FGI_TRY(fgi_check_ptr(fn, "session", session));
    *session = NULL;
    FGI_TRY(fgi_check_ptr(fn, "model", model));
    return session_create(fn, session, fg_model_config(model), NULL, device, ctx, dtype, 0, 0,
                          model);
}

fg_status fg_session_create_sharing(fg_session **session, const fg_session *base, int ctx)
{
    static const char fn[] = "fg_session_create_sharing";
    FGI_TRY(fgi_check_ptr(fn, "session", session));
    *session = NULL;
    FGI_TRY(fgi_check_ptr(fn, "base", base));
    FGI_TRY(check_ctx(fn, base->cfg, ctx));
    fg_session *s;
    FGI_TRY(session_alloc(fn, &s, base->cfg, ctx));
    s->w = base->w;
    s->model = base->model;
    s->device = base->device;
    s->dtype = base->dtype;
    s->seed = base->seed;
    fg_status st = FG_OK;
    if (s->device == FG_DEVICE_REF) {
        st = open_device(fn, s); /* the caller's host weights: nothing to share */
    } else if (s->device == FG_DEVICE_CPU) {
        st = fgi_cpu_runner_create_sharing(fn, &s->cpu, base->cpu, s->allocated,
                                           fgi_cpu_runner_threads(base->cpu));
    } else {
        s->gpu_weights = base->gpu_weights;
        atomic_fetch_add(&s->gpu_weights->refs, 1);
        st = open_device_state(s);
    }
    if (st != FG_OK) {
        fg_session_destroy(s);
        return st;
    }
    *session = s;
    return FG_OK;
}

fg_status fg_session_device_memory(const fg_session *s, size_t *weights, size_t *cache,
                                   size_t *activations)
{
    static const char fn[] = "fg_session_device_memory";
    FGI_TRY(fgi_check_ptr(fn, "session", s));
    FGI_TRY(fgi_check_ptr(fn, "weights", weights));
    FGI_TRY(fgi_check_ptr(fn, "cache", cache));
    FGI_TRY(fgi_check_ptr(fn, "activations", activations));
    *weights = *cache = *activations = 0;
    if (s->device != FG_DEVICE_CUDA) return FG_OK;
    const fg_config *c = s->cfg;
    *weights = fg_cuda_weights_bytes(s->gpu_weights->w);
    /* the cache and the attention workspace at the session's capacity:
     * what it holds once the context is full, not what it holds now */
    *cache = 2 * fg_dtype_size(s->dtype) * (size_t)c->n_layer * (size_t)c->n_kv_head *
             (size_t)fg_config_head_dim(c) * (size_t)s->capacity;
    *activations = fg_cuda_runner_bytes(s->gpu_runner, s->capacity);
    return FG_OK;
}

void fg_session_destroy(fg_session *s)
{
    if (s == NULL) return;
    fg_kv_cache_destroy(s->host_cache);
    fgi_cpu_runner_destroy(s->cpu);
    fg_cuda_sampler_destroy(s->gpu_sampler);
    fg_cuda_kv_cache_destroy(s->gpu_cache);
    fg_cuda_runner_destroy(s->gpu_runner); /* before the weights it reads */
    gpu_weights_release(s->gpu_weights);
    free(s->last_logits);
    free(s);
}

fg_device fg_session_device(const fg_session *s) { return s ? s->device : FG_DEVICE_AUTO; }

long long fg_session_device_wait_ns(const fg_session *s)
{
    if (s == NULL) return 0;
    return s->retired_wait_ns + fg_cuda_runner_wait_ns(s->gpu_runner) +
           fg_cuda_sampler_wait_ns(s->gpu_sampler);
}
fg_dtype fg_session_dtype(const fg_session *s) { return s ? s->dtype : FG_DTYPE_F32; }
int fg_session_len(const fg_session *s) { return s ? s->len : -1; }
int fg_session_capacity(const fg_session *s) { return s ? s->capacity : -1; }

const float *fg_session_logits(const fg_session *s)
{
    if (s == NULL || !s->has_logits) return NULL;
    if (!s->logits_on_host) { /* CUDA: copied only when someone asks */
        if (fg_cuda_download(s->last_logits, s->device_logits,
                             sizeof(float) * (size_t)s->cfg->vocab_size) != FG_OK)
            return NULL;
        ((fg_session *)s)->logits_on_host = 1; /* a cache fill, not a change of state */
    }
    return s->last_logits;
}

fg_status fg_session_reset(fg_session *s)
{
    FGI_TRY(fgi_check_ptr("fg_session_reset", "session", s));
    if (s->cpu)
        fgi_cpu_runner_reset(s->cpu);
    else
        FGI_TRY(s->host_cache ? fg_kv_cache_reset(s->host_cache) : fg_cuda_kv_cache_reset(s->gpu_cache));
    s->len = 0;
    s->has_logits = 0;
    return FG_OK;
}

static fg_status forward_on_device(fg_session *s, const int *ids, int T,
                                   float *all_logits)
{
    const size_t V = (size_t)s->cfg->vocab_size;
    s->logits_on_host = 1;
    if (s->device == FG_DEVICE_CPU) {
        if (all_logits == NULL) return fgi_cpu_forward(s->cpu, s->last_logits, 1, ids, T);
        FGI_TRY(fgi_cpu_forward(s->cpu, all_logits, T, ids, T));
    } else if (s->device == FG_DEVICE_REF) {
        if (all_logits == NULL)
            return fg_ref_forward_last(s->last_logits, s->cfg, s->w, s->host_cache, ids, T);
        FGI_TRY(fg_ref_forward(all_logits, NULL, s->cfg, s->w, s->host_cache, ids, T));
    } else {
        if (all_logits == NULL) { /* left on the card until fg_session_logits asks */
            FGI_TRY(fg_cuda_forward_last_on_device(&s->device_logits, s->gpu_runner,
                                                   s->gpu_cache, ids, T));
            s->logits_on_host = 0;
            return FG_OK;
        }
        FGI_TRY(fg_cuda_forward(all_logits, NULL, s->gpu_runner, s->gpu_cache, ids, T));
    }
    memcpy(s->last_logits, all_logits + (size_t)(T - 1) * V, V * sizeof(float));
    return FG_OK;
}

fg_status fg_session_forward(fg_session *s, const int *ids, int T, float *all_logits)
{
    static const char fn[] = "fg_session_forward";
    FGI_TRY(fgi_check_ptr(fn, "session", s));
    FGI_TRY(fgi_check_ptr(fn, "ids", ids));
    FGI_TRY(fgi_check_min(fn, "T", T, 1));
    if ((long long)s->len + T > s->capacity)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: context full: %d tokens cached + %d new > ctx %d", fn,
                       s->len, T, s->capacity);
    for (int t = 0; t < T; t++) /* before the cache grows for them */
        if (ids[t] < 0 || ids[t] >= s->cfg->vocab_size)
            return fgi_fail(FG_ERR_INVALID_ARG, "%s: ids[%d] = %d is outside the vocabulary "
                            "[0, %d)", fn, t, ids[t], s->cfg->vocab_size);
    if (s->len + T > s->allocated) { /* double, or at once to what is needed */
        const long long want = 2LL * s->allocated > s->len + T ? 2LL * s->allocated : s->len + T;
        FGI_TRY(fg_session_reserve(s, want < s->capacity ? (int)want : s->capacity));
    }
    FGI_TRY(forward_on_device(s, ids, T, all_logits));
    s->len += T;
    s->has_logits = 1;
    return FG_OK;
}

fg_status fg_session_set_threads(fg_session *s, int n_threads)
{
    FGI_TRY(fgi_check_ptr("fg_session_set_threads", "session", s));
    if (n_threads < 0 || n_threads > 1024)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "fg_session_set_threads: argument 'n_threads' must be in 0 .. 1024 "
                        "(0: every core) (got %d)",
                        n_threads);
    if (s->cpu == NULL) return FG_OK; /* only the fast CPU path has threads of its own */
    return fgi_cpu_runner_set_threads(s->cpu, n_threads);
}

int fg_session_threads(const fg_session *s)
{
    return (s && s->cpu) ? fgi_cpu_runner_threads(s->cpu) : 1;
}

/* The GPU sampler was made for a sampler of this configuration (the seed
 * does not matter: the state travels with every draw). */
static int gpu_sampler_fits(const fg_session *s, const fg_sampler_config *cfg)
{
    return s->gpu_sampler_cfg.temperature == cfg->temperature &&
           s->gpu_sampler_cfg.top_k == cfg->top_k && s->gpu_sampler_cfg.top_p == cfg->top_p;
}

/* On the GPU the draw runs on the card from the logits the forward left
 * there, continuing the caller's sampler's stream (fg_cuda_sampler_draw
 * with its state), so the ids are the ones fg_sampler_sample would give. */
fg_status fg_session_sample(fg_session *s, fg_sampler *sampler, int *token)
{
    static const char fn[] = "fg_session_sample";
    FGI_TRY(fgi_check_ptr(fn, "session", s));
    FGI_TRY(fgi_check_ptr(fn, "sampler", sampler));
    FGI_TRY(fgi_check_ptr(fn, "token", token));
    const int V = s->cfg->vocab_size;
    if (fgi_sampler_vocab(sampler) != V)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: the sampler is for a vocabulary of %d, the model's is %d", fn,
                        fgi_sampler_vocab(sampler), V);
    if (!s->has_logits)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: no logits yet (forward a token first)", fn);
    if (s->logits_on_host) return fg_sampler_sample(sampler, s->last_logits, token);
    const fg_sampler_config *cfg = fgi_sampler_config(sampler);
    if (s->gpu_sampler == NULL || !gpu_sampler_fits(s, cfg)) {
        s->retired_wait_ns += fg_cuda_sampler_wait_ns(s->gpu_sampler);
        fg_cuda_sampler_destroy(s->gpu_sampler);
        s->gpu_sampler = NULL;
        FGI_TRY(fg_cuda_sampler_create(&s->gpu_sampler, V, cfg));
        s->gpu_sampler_cfg = *cfg;
    }
    return fg_cuda_sampler_draw(s->gpu_sampler, s->device_logits, fgi_sampler_state(sampler),
                                token, NULL);
}
