/* Decoding sessions (see session.h): one code path per device behind the
 * same calls. The reference path runs fg_ref_forward / fg_ref_forward_last
 * on a host cache; the fast CPU path owns an fgi_cpu_runner (host/cpu: its
 * own packed weights, cache and threads); the CUDA path owns an
 * fg_cuda_model and an fg_cuda_kv_cache. */
#include "check.h"
#include "flashgpt/cuda.h"
#include "flashgpt/session.h"
#include "config_internal.h"
#include "cpu_internal.h"

#include <stdlib.h>
#include <string.h>

struct fg_session {
    const fg_config *cfg;
    const fg_weights *w;
    fg_device device;
    int capacity, len, has_logits;
    float *last_logits;            /* (vocab) */
    fg_kv_cache *host_cache;       /* REF */
    fgi_cpu_runner *cpu;           /* CPU */
    fg_cuda_model *gpu_model;      /* CUDA */
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

static fg_status open_device(const char *fn, fg_session *s)
{
    if (s->device == FG_DEVICE_REF)
        return fg_kv_cache_create(&s->host_cache, s->cfg, s->capacity);
    if (s->device == FG_DEVICE_CPU)
        return fgi_cpu_runner_create(fn, &s->cpu, s->cfg, s->w, s->capacity, 0,
                                     FGI_CPU_ISA_AUTO);
    if (!fg_cuda_available())
        return fgi_fail(FG_ERR_CUDA, "%s: device cuda requested but no usable GPU", fn);
    FGI_TRY(fg_cuda_model_create(&s->gpu_model, s->cfg, s->w, s->capacity, NULL));
    return fg_cuda_kv_cache_create(&s->gpu_cache, s->cfg, s->capacity);
}

fg_status fg_session_create(fg_session **session, const fg_config *cfg,
                            const fg_weights *w, fg_device device, int ctx)
{
    static const char fn[] = "fg_session_create";
    FGI_TRY(fgi_check_ptr(fn, "session", session));
    *session = NULL;
    FGI_TRY(fgi_check_config(fn, cfg));
    FGI_TRY(fgi_check_weights(fn, cfg, w));
    if (device != FG_DEVICE_AUTO && device != FG_DEVICE_CPU && device != FG_DEVICE_CUDA &&
        device != FG_DEVICE_REF)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: unknown device %d", fn, (int)device);
    if (ctx < 0 || ctx > cfg->n_ctx)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: ctx must be in 0 .. %d, the model's context (got %d)", fn,
                       cfg->n_ctx, ctx);

    fg_session *s;
    FGI_TRY(fgi_alloc(fn, (void **)&s, 1, sizeof *s));
    s->cfg = cfg;
    s->w = w;
    s->capacity = ctx ? ctx : cfg->n_ctx;
    s->device = device == FG_DEVICE_AUTO
                    ? (fg_cuda_available() ? FG_DEVICE_CUDA : FG_DEVICE_CPU)
                    : device;
    fg_status st = fgi_alloc(fn, (void **)&s->last_logits, (size_t)cfg->vocab_size,
                            sizeof(float));
    if (st == FG_OK) st = open_device(fn, s);
    if (st != FG_OK) {
        fg_session_destroy(s);
        return st;
    }
    *session = s;
    return FG_OK;
}

void fg_session_destroy(fg_session *s)
{
    if (s == NULL) return;
    fg_kv_cache_destroy(s->host_cache);
    fgi_cpu_runner_destroy(s->cpu);
    fg_cuda_kv_cache_destroy(s->gpu_cache);
    fg_cuda_model_destroy(s->gpu_model);
    free(s->last_logits);
    free(s);
}

fg_device fg_session_device(const fg_session *s) { return s ? s->device : FG_DEVICE_AUTO; }
int fg_session_len(const fg_session *s) { return s ? s->len : -1; }
int fg_session_capacity(const fg_session *s) { return s ? s->capacity : -1; }

const float *fg_session_logits(const fg_session *s)
{
    return (s && s->has_logits) ? s->last_logits : NULL;
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
    if (s->device == FG_DEVICE_CPU) {
        if (all_logits == NULL) return fgi_cpu_forward(s->cpu, s->last_logits, 1, ids, T);
        FGI_TRY(fgi_cpu_forward(s->cpu, all_logits, T, ids, T));
    } else if (s->device == FG_DEVICE_REF) {
        if (all_logits == NULL)
            return fg_ref_forward_last(s->last_logits, s->cfg, s->w, s->host_cache, ids, T);
        FGI_TRY(fg_ref_forward(all_logits, NULL, s->cfg, s->w, s->host_cache, ids, T));
    } else {
        if (all_logits == NULL)
            return fg_cuda_forward_last(s->last_logits, s->gpu_model, s->gpu_cache, ids, T);
        FGI_TRY(fg_cuda_forward(all_logits, NULL, s->gpu_model, s->gpu_cache, ids, T));
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
