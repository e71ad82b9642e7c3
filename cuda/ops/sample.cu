/* The GPU sampler (flashgpt/cuda.h, fg_cuda_sampler_*): fg_sampler's draw on
 * device logits, the same ids bit for bit (host/runtime/sample_fixed.h), so
 * a decode step can keep its logits on the card and send back one int.
 *
 * Conventions: the random stream's state lives in device memory and only
 * the kernel advances it (exactly when the CPU sampler would: not for
 * greedy draws, not for refused logits), so draws can be captured into a
 * CUDA graph and replayed. Refused logits (NaN, +inf, all -inf) make the
 * token -1; fg_cuda_sampler_draw turns that into an error.
 * Design: one block of 1024 threads. One pass finds the arg max (lowest id
 * among equals) and checks the logits; one pass writes every id's key
 * (weight << 23 | ~id) and sums the weights (integer atomics: any order
 * gives the same sum). Top-k, top-p and the draw each find "the key where
 * the running count / weight, in decreasing key order, reaches a target"
 * by radix selection: eight passes of 8 bits from the top, each a 256-bucket
 * histogram of the keys still matching the chosen prefix; no sort.
 * Never measured on a card (no GPU in the session that wrote it). */
#include "cuda_common.cuh"
#include "ops_internal.h"
#include "sample_fixed.h"
#include "validate.h"

#include <math.h>

struct fg_cuda_sampler {
    fg_sampler_config cfg;
    int vocab_size;
    double scale;
    fgi_sample_io *io;          /* device: the stream's state, the last drawn id */
    uint64_t *keys;             /* device: (vocab) */
    fgi_sample_tables *tables;  /* device */
    long long wait_ns;          /* host time spent waiting for draws */
};

namespace {

constexpr int kSampleThreads = 1024;

struct sample_args {
    const float *logits;
    int vocab;
    int *token;
    uint64_t *state;
    uint64_t *keys;
    const fgi_sample_tables *tables;
    double scale;
    int greedy, top_k;
    float top_p;
};

struct sample_shared {
    unsigned long long hist[256];
    unsigned long long sum, above, draw;
    uint64_t prefix;
    unsigned count;
    int bad;
    float best_val[kSampleThreads / 32];
    int best_id[kSampleThreads / 32];
    fgi_sample_tables tables;
};

/* (v, id) beats (w, jd): larger value, then lower id; id < 0 is nothing. */
__device__ __forceinline__ bool beats(float v, int id, float w, int jd)
{
    return id >= 0 && (jd < 0 || v > w || (v == w && id < jd));
}

/* Sum of the weights of keys >= lower (every thread gets it). */
__device__ unsigned long long mass_from(const uint64_t *keys, int n, uint64_t lower,
                                        sample_shared &sh)
{
    if (threadIdx.x == 0) sh.sum = 0;
    __syncthreads();
    unsigned long long local = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (keys[i] >= lower) local += fgi_sample_key_weight(keys[i]);
    atomicAdd(&sh.sum, local);
    __syncthreads();
    const unsigned long long total = sh.sum;
    __syncthreads();
    return total;
}

/* The key at which the running count (by_weight 0) or weight (1) of the
 * keys >= lower, in decreasing order, first reaches target (target >= 1
 * and at most their total): radix selection, 8 bits a pass from the top. */
__device__ uint64_t select_key(const uint64_t *keys, int n, uint64_t lower,
                               unsigned long long target, int by_weight, sample_shared &sh)
{
    if (threadIdx.x == 0) sh.prefix = 0, sh.above = 0;
    uint64_t mask = 0;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int d = threadIdx.x; d < 256; d += blockDim.x) sh.hist[d] = 0;
        __syncthreads();
        const uint64_t prefix = sh.prefix;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const uint64_t k = keys[i];
            if (k >= lower && (k & mask) == prefix)
                atomicAdd(&sh.hist[(k >> shift) & 255u],
                          by_weight ? (unsigned long long)fgi_sample_key_weight(k) : 1ull);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned long long above = sh.above;
            int d = 255;
            for (; d > 0 && above + sh.hist[d] < target; d--) above += sh.hist[d];
            sh.above = above;
            sh.prefix = prefix | ((uint64_t)d << shift);
        }
        mask |= (uint64_t)255 << shift;
        __syncthreads();
    }
    const uint64_t key = sh.prefix;
    __syncthreads();
    return key;
}

__global__ void __launch_bounds__(kSampleThreads) sample_kernel(sample_args a)
{
    __shared__ sample_shared shared[1];
    sample_shared &sh = shared[0];
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    for (int i = tid; i < 256; i += blockDim.x)
        sh.tables.hi[i] = a.tables->hi[i], sh.tables.lo[i] = a.tables->lo[i];
    if (tid == 0) sh.bad = 0, sh.count = 0;

    /* the arg max, and the refusals */
    float best = -INFINITY;
    int best_id = -1, bad = 0;
    for (int i = tid; i < a.vocab; i += blockDim.x) {
        const float l = a.logits[i];
        if (isnan(l) || l == INFINITY) bad = 1;
        else if (l != -INFINITY && beats(l, i, best, best_id)) best = l, best_id = i;
    }
    for (int off = 16; off > 0; off /= 2) {
        const float v = __shfl_down_sync(0xffffffffu, best, off);
        const int id = __shfl_down_sync(0xffffffffu, best_id, off);
        if (beats(v, id, best, best_id)) best = v, best_id = id;
    }
    if (lane == 0) sh.best_val[warp] = best, sh.best_id[warp] = best_id;
    __syncthreads();
    if (bad) atomicExch(&sh.bad, 1);
    if (tid == 0) {
        for (int w = 1; w < (int)(blockDim.x / 32); w++)
            if (beats(sh.best_val[w], sh.best_id[w], sh.best_val[0], sh.best_id[0]))
                sh.best_val[0] = sh.best_val[w], sh.best_id[0] = sh.best_id[w];
    }
    __syncthreads();
    const float top = sh.best_val[0];
    const int top_id = sh.best_id[0];
    if (sh.bad || top_id < 0 || a.greedy) {
        if (tid == 0) *a.token = sh.bad || top_id < 0 ? -1 : top_id;
        return;
    }

    /* every id's key, the total weight and the candidates */
    unsigned long long local = 0;
    unsigned count = 0;
    for (int i = tid; i < a.vocab; i += blockDim.x) {
        const uint64_t w = fgi_sample_weight(&sh.tables, a.logits[i], top, a.scale);
        a.keys[i] = w ? fgi_sample_key(w, i) : 0;
        local += w, count += w != 0;
    }
    if (tid == 0) sh.sum = 0;
    __syncthreads();
    atomicAdd(&sh.sum, local);
    atomicAdd(&sh.count, count);
    __syncthreads();
    const unsigned long long total = sh.sum;
    const int candidates = (int)sh.count;
    __syncthreads();

    uint64_t lower = 1; /* keys of candidates are >= 2^23 */
    unsigned long long kept = total;
    if (a.top_k > 0 && a.top_k < candidates) {
        lower = select_key(a.keys, a.vocab, 1, (unsigned long long)a.top_k, 0, sh);
        kept = mass_from(a.keys, a.vocab, lower, sh);
    }
    if (a.top_p < 1.0f) { /* the nucleus of the whole distribution */
        const unsigned long long target = fgi_sample_top_p_target(a.top_p, total);
        if (kept > target) {
            lower = select_key(a.keys, a.vocab, lower, target, 1, sh);
            kept = mass_from(a.keys, a.vocab, lower, sh);
        }
    }
    if (tid == 0) {
        uint64_t state = *a.state;
        sh.draw = fgi_sample_below(fgi_sample_next(&state), kept);
        *a.state = state;
    }
    __syncthreads();
    const uint64_t pick = select_key(a.keys, a.vocab, lower, sh.draw + 1, 1, sh);
    if (tid == 0) *a.token = fgi_sample_key_id(pick);
}

} // namespace

extern "C" fg_status fg_cuda_sampler_create(fg_cuda_sampler **sampler, int vocab_size,
                                            const fg_sampler_config *cfg)
{
    static const char fn[] = "fg_cuda_sampler_create";
    FGI_TRY(fgi_check_ptr(fn, "sampler", sampler));
    *sampler = NULL;
    FGI_TRY(fgi_sampler_check(fn, vocab_size, cfg));
    FGI_TRY(fgi_cuda_check_device(fn));
    fg_cuda_sampler *s;
    FGI_TRY(fgi_alloc(fn, (void **)&s, 1, sizeof *s));
    s->cfg = *cfg;
    s->vocab_size = vocab_size;
    s->scale = cfg->temperature > 0.0f ? fgi_sample_scale(cfg->temperature) : 0.0;
    fgi_sample_tables tables;
    fgi_sample_tables_init(&tables);
    fg_status st = FG_OK;
    if (cudaMalloc((void **)&s->io, sizeof *s->io) != cudaSuccess ||
        cudaMalloc((void **)&s->keys, sizeof *s->keys * (size_t)vocab_size) != cudaSuccess ||
        cudaMalloc((void **)&s->tables, sizeof tables) != cudaSuccess) {
        (void)cudaGetLastError();
        st = fgi_fail(FG_ERR_OOM, "%s: out of device memory for a vocabulary of %d", fn,
                      vocab_size);
    }
    if (st == FG_OK) {
        const fgi_sample_io io = {cfg->seed, -1, 0};
        if (cudaMemcpy(s->io, &io, sizeof io, cudaMemcpyHostToDevice) != cudaSuccess ||
            cudaMemcpy(s->tables, &tables, sizeof tables, cudaMemcpyHostToDevice) !=
                cudaSuccess) {
            st = fgi_fail(FG_ERR_CUDA, "%s: upload failed: %s", fn,
                          cudaGetErrorString(cudaGetLastError()));
        }
    }
    if (st != FG_OK) {
        fg_cuda_sampler_destroy(s);
        return st;
    }
    *sampler = s;
    return FG_OK;
}

extern "C" void fg_cuda_sampler_destroy(fg_cuda_sampler *sampler)
{
    if (sampler == NULL) return;
    cudaFree(sampler->io);
    cudaFree(sampler->keys);
    cudaFree(sampler->tables);
    free(sampler);
}

extern "C" fg_status fg_cuda_sampler_sample(fg_cuda_sampler *sampler, const float *logits,
                                            int *token, cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_sampler_sample";
    FGI_TRY(fgi_check_ptr(fn, "sampler", sampler));
    FGI_TRY(fgi_check_ptr(fn, "logits", logits));
    FGI_TRY(fgi_check_ptr(fn, "token", token));
    sample_args a;
    a.logits = logits;
    a.vocab = sampler->vocab_size;
    a.token = token;
    a.state = &sampler->io->state;
    a.keys = sampler->keys;
    a.tables = sampler->tables;
    a.scale = sampler->scale;
    a.greedy = sampler->cfg.temperature == 0.0f;
    a.top_k = sampler->cfg.top_k;
    a.top_p = sampler->cfg.top_p;
    sample_kernel<<<1, kSampleThreads, 0, stream>>>(a);
    FGI_CUDA_LAUNCHED(fn, "sample_kernel");
    return FG_OK;
}

/* The state goes up with the launch and comes back with the id: one small
 * copy each way, so a host sampler and this one can share one stream. */
extern "C" fg_status fg_cuda_sampler_draw(fg_cuda_sampler *sampler, const float *logits,
                                          uint64_t *state, int *token, cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_sampler_draw";
    FGI_TRY(fgi_check_ptr(fn, "token", token));
    FGI_TRY(fgi_check_ptr(fn, "sampler", sampler));
    fgi_sample_io io = {state ? *state : 0, -1, 0};
    if (state != NULL)
        FGI_CUDA_TRY(fn, cudaMemcpyAsync(&sampler->io->state, &io.state, sizeof io.state,
                                         cudaMemcpyHostToDevice, stream));
    FGI_TRY(fg_cuda_sampler_sample(sampler, logits, &sampler->io->token, stream));
    FGI_CUDA_TRY(fn, cudaMemcpyAsync(&io, sampler->io, sizeof io, cudaMemcpyDeviceToHost,
                                     stream));
    FGI_TRY(fgi_cuda_sync_timed(fn, stream, &sampler->wait_ns));
    if (io.token < 0)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: the logits hold NaN or +inf, or every logit is -inf", fn);
    if (state != NULL) *state = io.state;
    *token = io.token;
    return FG_OK;
}

extern "C" long long fg_cuda_sampler_wait_ns(const fg_cuda_sampler *sampler)
{
    return sampler ? sampler->wait_ns : 0;
}
