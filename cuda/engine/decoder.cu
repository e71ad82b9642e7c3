/* The decoder on the GPU (docs/contract.md §16-§18): attention layer with KV cache,
 * pre-norm block and forward pass, GPT-2 and Llama families, with exactly the
 * semantics of host/ref/ref_decoder.c.
 *
 * Three objects (flashgpt/cuda_api.h):
 *  - fg_cuda_weights: the configuration and every weight in one device
 *    allocation (uploaded once; Llama's w1 and w3 fused side by side into one
 *    (C, 2*n_inner) matrix so gate and up are one GEMM). Never written after
 *    creation, so any number of runners, on any streams, can read it.
 *  - fg_cuda_runner: what executing needs: the stream, a cuBLAS handle bound
 *    to it, the GEMV and attention workspaces, activation buffers for
 *    max_tokens tokens, the device step record, and the decode-step graphs
 *    it has captured, one per cache (see "Decode-step graphs" below).
 *  - fg_cuda_kv_cache: per layer k and v in device memory and the token
 *    counts on the host; plain dimensions, nothing of any model or runner.
 *    Layout (n_layer, {k, v}, n_seq, n_kv_head, capacity, head_dim) with
 *    n_seq = 1 and each head's keys one block of block_tokens = capacity
 *    rows: the strides are fields, so that batching (n_seq > 1) and a paged
 *    cache (blocks smaller than capacity) can come without changing callers.
 * Every argument (ids, capacity, positions, T <= max_tokens, cache shape) is
 * checked by host/model/decoder_check.c, shared with the CPU reference,
 * before anything is enqueued, so a refused call changes nothing; token
 * counts grow only once all of a call's work has been enqueued without
 * error. No allocation per token (the attention workspace grows only when a
 * cache with a larger capacity than any the runner has seen is used).
 * Design per layer: q|k|v GEMM; one kernel adds the q|k|v bias, rotates q in
 * place and appends rotated k and v to the cache; attention reads q with
 * strides straight from the projection and writes each head into its
 * columns of the merged buffer; output GEMM; one kernel does the residual
 * add (with the projection bias) and the next norm; the MLP likewise ends
 * in the fused add + norm of the following layer (or the final norm).
 * Linear layers go through fgi_cuda_linear_layer: cuBLAS SGEMM for prefill,
 * the GEMV kernel for a decode step's single row (its epilogue also adds
 * GPT-2's c_fc bias and applies GELU, so that pass is not a launch).
 * 16-bit one-token calls take the fused path instead (fused_rows): each
 * sublayer's first GEMV normalises the fp32 residual in its prologue and
 * its last GEMV adds into the residual in its epilogue, so neither the
 * normalised h nor the add + norm kernels exist there; Llama's gate|up
 * GEMV writes fp32 for silu * up, and the classifier's transposed GEMV
 * normalises with ln_f in its own prologue.
 * Decode steps (fg_cuda_forward_last with T = 1): about ten launches per
 * layer cost more host time than the GPU needs for them, so the step is
 * captured once per (runner, cache) as a CUDA graph whose kernels read the
 * token, its position and the key count from the runner's device step
 * record; each step then copies those three ints in, replays the graph and
 * copies the logits out. Where capture fails, the step runs uncaptured. */
#include "attention_internal.h"
#include "cuda_common.cuh"
#include "decoder_internal.h"
#include "dtype.cuh"
#include "config_internal.h"
#include "graph_capture.cuh"
#include "loader_internal.h"
#include "ops_internal.h"
#include "reduce.cuh"

#include <atomic>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Device pointers of one layer's weights (NULL where the host had NULL). */
/* Every tensor holds the weights' element type (fp32, bf16 or f16). */
typedef struct {
    const void *ln_1_g, *ln_1_b, *c_attn_w, *c_attn_b, *c_proj_w, *c_proj_b;
    const void *ln_2_g, *ln_2_b;
    const void *fc_w;  /* GPT-2 (C, n_inner); Llama [w1 | w3] (C, 2*n_inner) */
    const void *fc_b, *mlp_proj_w, *mlp_proj_b;
} layer_weights;

struct fg_cuda_weights {
    fg_config cfg;
    fg_dtype dtype;        /* element type of every tensor below */
    size_t es;             /* its size in bytes */
    int head_dim, qkv_width;
    void *block;           /* one device block holding every tensor */
    size_t block_bytes;
    layer_weights *layers; /* host array of n_layer */
    const void *wte, *wpe, *ln_f_g, *ln_f_b, *classifier;
    /* scaled RoPE: the head_dim/2 inverse frequencies (double) in the
     * block, from fg_config_rope_inv_freq; NULL: the kernels use the base */
    const double *rope_inv_freq;
};

/* Decode-step graphs a runner keeps: enough for a few caches taking turns
 * (a server's handful of sequences); past that the least recently used one
 * is replaced. */
#define GRAPH_SLOTS 4

typedef struct {
    unsigned long long cache_id; /* the cache it was captured for; 0: empty */
    cudaGraphExec_t exec;        /* NULL when capture failed (unavailable) */
    int unavailable;             /* capture failed: run this cache's steps uncaptured */
    unsigned long long last_used;
} graph_slot;

struct fg_cuda_runner {
    const fg_cuda_weights *w; /* shared, read only; must outlive the runner */
    int max_tokens;
    cudaStream_t stream;
    fgi_linear_ctx lin; /* cuBLAS handle bound to the stream; GEMV workspace */
    /* One device block holding the buffers below. x, Llama's gate|up and
     * the logits are fp32 whatever the weights' type; the others hold it. */
    void *activations;
    float *x;      /* (max_tokens, C) residual stream, fp32 */
    void *h;       /* (max_tokens, C) normalised sublayer input */
    void *delta;   /* (max_tokens, C) sublayer output before its bias */
    void *qkv;     /* (max_tokens, qkv_width) */
    void *att;     /* (max_tokens, n_head*head_dim) merged head outputs */
    void *mlp;     /* GPT-2 (max_tokens, n_inner); Llama fp32 (max_tokens, 2*n_inner) gate|up */
    void *mlp_act; /* Llama (max_tokens, n_inner) silu(gate) * up; GPT-2 unused */
    float *logits; /* (max_tokens, vocab) fp32 */
    int *ids;      /* (max_tokens) */
    int *step;     /* device (3): token id, position, key count of a graph step */
    void *attention_ws; /* attention workspace, sized for attention_ws_kv keys */
    size_t attention_ws_bytes;
    int attention_ws_kv;
    cudaStream_t capture_stream; /* private, for capture: the legacy stream 0 cannot be captured */
    graph_slot graphs[GRAPH_SLOTS];
    unsigned long long clock; /* graph uses, for least-recently-used replacement */
    long long captures;       /* decode steps captured (test hook) */
    long long wait_ns; /* host time spent waiting for forwards (fg_cuda_runner_wait_ns) */
    /* fg_cuda_block_probe's callback while it runs; NULL otherwise (then
     * every probe point is one pointer test on the host) */
    fg_cuda_probe_fn probe;
    void *probe_user;
};

struct fg_cuda_kv_cache {
    /* Unique for the life of the process (never reused, unlike an address):
     * runners key their captured graphs by it, so a graph of a destroyed
     * cache can never be replayed on a new cache at the same address. */
    unsigned long long id;
    int n_layer, n_kv_head, head_dim, capacity;
    fg_dtype dtype;         /* element type of keys and values */
    size_t es;              /* its size in bytes */
    int n_seq;              /* sequences: 1 (room for batching) */
    int block_tokens;       /* key rows per block: capacity (room for paging) */
    size_t kv_head_stride;  /* elements between kv heads: capacity * head_dim */
    size_t seq_stride;      /* elements between sequences: n_kv_head * kv_head_stride */
    size_t layer_floats;    /* one layer's keys (elements), all sequences: n_seq * seq_stride */
    void *data; /* device: layer l keys at 2l*layer_floats elements, values at (2l+1)* */
    int *len;    /* host (n_seq, n_layer): tokens cached; sequence 0 first */
    long long graph_steps; /* steps replayed through a graph (test hook) */
};

/* Keys and values of sequence 0 of a layer: (n_kv_head, capacity, head_dim). */
static void *cache_k(const fg_cuda_kv_cache *c, int layer)
{
    return (char *)c->data + (size_t)(2 * layer) * c->layer_floats * c->es;
}
static void *cache_v(const fg_cuda_kv_cache *c, int layer)
{
    return (char *)c->data + (size_t)(2 * layer + 1) * c->layer_floats * c->es;
}

static fg_status cuda_alloc(const char *fn, void **p, size_t bytes, const char *what)
{
    *p = NULL;
    cudaError_t err = cudaMalloc(p, bytes);
    if (err == cudaSuccess) return FG_OK;
    *p = NULL;
    (void)cudaGetLastError();
    /* what the card had, so that the message says how far off the request was */
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        return fgi_fail(err == cudaErrorMemoryAllocation ? FG_ERR_OOM : FG_ERR_CUDA,
                        "%s: allocating %zu bytes of device memory for %s failed: %s", fn,
                        bytes, what, cudaGetErrorString(err));
    }
    return fgi_fail(err == cudaErrorMemoryAllocation ? FG_ERR_OOM : FG_ERR_CUDA,
                    "%s: allocating %zu bytes of device memory for %s failed: %s (%zu bytes "
                    "free of %zu on the device)", fn, bytes, what, cudaGetErrorString(err),
                    free_bytes, total_bytes);
}

/* Weights upload ------------------------------------------------------------ */

/* Places tensors in one device block. With base == NULL it only counts. */
/* 16-bit weights are converted from the fp32 host tensors in slices of
 * this many elements through one small host buffer: never a full-size
 * converted copy on the host. */
#define STAGE_ELEMS ((size_t)1 << 20)

typedef struct {
    const char *fn;
    fg_dtype dtype;
    size_t es;       /* element size in bytes */
    char *base;      /* NULL: only count */
    size_t used;     /* bytes, each tensor aligned to 256 bytes */
    uint16_t *stage; /* host, STAGE_ELEMS 16-bit elements (16-bit types only) */
    int random;      /* fill on the device (fg_cuda_weights_create_random), read no host data */
    unsigned long long seed;
    unsigned tensor; /* tensors filled so far: each gets its own stream */
    float fill_base; /* 1 for norm gains, 0 for the rest */
    /* From a model (fg_cuda_weights_create_model): the host weights are
     * markers, one float per (layer, slot) in `markers`, that say which
     * slot a tensor is; its rows come from the model's checkpoint mapping
     * (fgi_model_rows) in bands through stage, never an fp32 copy. */
    const fg_model *model;
    const float *markers;  /* (n_layer + 1) * FGI_SLOT_COUNT; the last row model-wide */
    size_t stage_bytes;
} arena;

namespace {

/* splitmix64: a counter-based generator, so every element is computed
 * independently on the device */
__device__ __forceinline__ unsigned long long mix64(unsigned long long z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* p[i] = base + 0.02 u, u uniform in [-1, 1): small random weights that keep
 * activations O(1) through the norms (a benchmark's weights, not a model). */
template <typename E>
__global__ void fill_random_kernel(E *p, size_t n, unsigned long long key, float base)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const unsigned long long r = mix64(key ^ mix64(i));
        const float u = (float)(r >> 40) * (1.0f / 8388608.0f) - 1.0f; /* 24 bits */
        p[i] = fgi_elem<E>::from_float(base + 0.02f * u);
    }
}

} // namespace

static fg_status fill_random(arena *a, void *dst, size_t n)
{
    const unsigned long long key = (a->seed * 0x100000001B3ull) ^ ((unsigned long long)++a->tensor << 32);
    return fgi_with_dtype(a->fn, a->dtype, [&](auto tag) {
        using E = decltype(tag);
        const int threads = 256;
        fill_random_kernel<E><<<fgi_grid_blocks((long long)n, threads), threads>>>(
            static_cast<E *>(dst), n, key, a->fill_base);
        FGI_CUDA_LAUNCHED(a->fn, "fill_random_kernel");
        return FG_OK;
    });
}

static fg_status arena_take(arena *a, size_t n, size_t *offset)
{
    const size_t limit = (size_t)PTRDIFF_MAX / 2;
    if (n > limit / a->es)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the weights are too large (more than %zu bytes)",
                       a->fn, limit);
    const size_t rounded = (n * a->es + 255) / 256 * 256;
    if (rounded > limit || a->used > limit - rounded)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the weights are too large (more than %zu bytes)",
                       a->fn, limit);
    *offset = a->used;
    a->used += rounded;
    return FG_OK;
}

/* The (slot, layer) a marker stands for. */
static void marker_slot(const arena *a, const float *src, fgi_slot *slot, int *layer)
{
    const size_t at = (size_t)(src - a->markers);
    const int row = (int)(at / FGI_SLOT_COUNT);
    *slot = (fgi_slot)(at % FGI_SLOT_COUNT);
    *layer = row < a->model->cfg.n_layer ? row : -1;
}

/* Rows [row0, row0 + rows) of a slot of `cols` columns, in the arena's
 * type, to dst (device) whose rows are `pitch` bytes apart: bands of rows
 * that fit the stage, or straight from the mapping when the checkpoint
 * already holds the slot as it is wanted (a bf16 checkpoint run in bf16). */
static fg_status upload_slot_rows(arena *a, char *dst, size_t pitch, fgi_slot slot, int layer,
                                  size_t row0, size_t rows, size_t cols)
{
    const size_t row_bytes = cols * a->es;
    const char *direct =
        static_cast<const char *>(fgi_model_slot_bytes(a->model, slot, layer, a->dtype));
    const size_t band = a->stage_bytes / row_bytes; /* >= 1: the stage holds a widest row */
    for (size_t done = 0; done < rows; done += band) {
        const size_t k = rows - done < band ? rows - done : band;
        const void *src = NULL;
        if (direct != NULL) {
            src = direct + (row0 + done) * row_bytes;
        } else {
            FGI_TRY(fgi_model_rows(a->fn, a->model, slot, layer, row0 + done, k, a->dtype,
                                   a->stage));
            src = a->stage;
        }
        FGI_CUDA_TRY(a->fn, cudaMemcpy2D(dst + done * pitch, pitch, src, row_bytes, row_bytes, k,
                                        cudaMemcpyHostToDevice));
    }
    return FG_OK;
}

/* A whole slot (n elements) to dst (device), from a model. */
static fg_status upload_slot(arena *a, void *dst, const float *marker, size_t n)
{
    fgi_slot slot;
    int layer;
    size_t rows = 0, cols = 0;
    marker_slot(a, marker, &slot, &layer);
    if (!fgi_model_slot_shape(a->model, slot, &rows, &cols) || rows * cols != n)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: weight slot %d of layer %d is not %zu elements",
                        a->fn, (int)slot, layer, n);
    return upload_slot_rows(a, static_cast<char *>(dst), cols * a->es, slot, layer, 0, rows, cols);
}

/* Copies n fp32 host elements to dst (device) in the arena's type: as they
 * are for fp32, else converted slice by slice (round to nearest even). */
static fg_status upload_converted(arena *a, void *dst, const float *src, size_t n)
{
    if (a->random) return fill_random(a, dst, n);
    if (a->model != NULL) return upload_slot(a, dst, src, n);
    if (a->dtype == FG_DTYPE_F32) {
        FGI_CUDA_TRY(a->fn, cudaMemcpy(dst, src, sizeof(float) * n, cudaMemcpyHostToDevice));
        return FG_OK;
    }
    for (size_t done = 0; done < n; done += STAGE_ELEMS) {
        const size_t k = n - done < STAGE_ELEMS ? n - done : STAGE_ELEMS;
        FGI_TRY(fg_dtype_from_f32(a->dtype, a->stage, src + done, k));
        FGI_CUDA_TRY(a->fn, cudaMemcpy((char *)dst + done * a->es, a->stage, k * a->es,
                                      cudaMemcpyHostToDevice));
    }
    return FG_OK;
}

static fg_status put(arena *a, const void **dst, const float *src, size_t n)
{
    size_t off = 0;
    *dst = NULL;
    if (src == NULL) return FG_OK;
    FGI_TRY(arena_take(a, n, &off));
    if (a->base == NULL) return FG_OK;
    FGI_TRY(upload_converted(a, a->base + off, src, n));
    *dst = a->base + off;
    return FG_OK;
}

/* bytes copied as they are (not weights: the RoPE frequency table). */
static fg_status put_bytes(arena *a, const void **dst, const void *src, size_t bytes)
{
    size_t off = 0;
    *dst = NULL;
    FGI_TRY(arena_take(a, (bytes + a->es - 1) / a->es, &off));
    if (a->base == NULL) return FG_OK;
    FGI_CUDA_TRY(a->fn, cudaMemcpy(a->base + off, src, bytes, cudaMemcpyHostToDevice));
    *dst = a->base + off;
    return FG_OK;
}

/* [gate | up] side by side: row i = gate row i, then up row i. */
static fg_status put_side_by_side(arena *a, const void **dst, const float *gate,
                                  const float *up, size_t rows, size_t cols)
{
    size_t off = 0;
    *dst = NULL;
    FGI_TRY(arena_take(a, 2 * rows * cols, &off));
    if (a->base == NULL) return FG_OK;
    char *base = a->base + off;
    if (a->random) {
        FGI_TRY(fill_random(a, base, 2 * rows * cols));
    } else if (a->model != NULL) { /* each into its half of every row */
        fgi_slot slot;
        int layer;
        marker_slot(a, gate, &slot, &layer);
        FGI_TRY(upload_slot_rows(a, base, 2 * cols * a->es, slot, layer, 0, rows, cols));
        marker_slot(a, up, &slot, &layer);
        FGI_TRY(upload_slot_rows(a, base + cols * a->es, 2 * cols * a->es, slot, layer, 0, rows,
                                 cols));
    } else if (a->dtype == FG_DTYPE_F32) {
        const size_t row_bytes = sizeof(float) * cols;
        FGI_CUDA_TRY(a->fn, cudaMemcpy2D(base, 2 * row_bytes, gate, row_bytes, row_bytes, rows,
                                        cudaMemcpyHostToDevice));
        FGI_CUDA_TRY(a->fn, cudaMemcpy2D(base + row_bytes, 2 * row_bytes, up, row_bytes,
                                        row_bytes, rows, cudaMemcpyHostToDevice));
    } else {
        for (size_t r = 0; r < rows; r++) { /* two row halves per row */
            char *row = base + r * 2 * cols * a->es;
            FGI_TRY(upload_converted(a, row, gate + r * cols, cols));
            FGI_TRY(upload_converted(a, row + cols * a->es, up + r * cols, cols));
        }
    }
    *dst = base;
    return FG_OK;
}

static fg_status place_weights(arena *a, fg_cuda_weights *m, const fg_weights *w)
{
    const fg_config *c = &m->cfg;
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner, V = (size_t)c->vocab_size;
    const size_t W = (size_t)m->qkv_width, A = (size_t)c->n_head * m->head_dim;
    FGI_TRY(put(a, &m->wte, w->wte, V * C));
    FGI_TRY(put(a, &m->wpe, w->wpe, (size_t)c->n_ctx * C));
    a->fill_base = 1.0f;
    FGI_TRY(put(a, &m->ln_f_g, w->ln_f_g, C));
    a->fill_base = 0.0f;
    FGI_TRY(put(a, &m->ln_f_b, w->ln_f_b, C));
    FGI_TRY(put(a, &m->classifier, w->lm_head, V * C));
    if (w->lm_head == NULL) m->classifier = m->wte;
    m->rope_inv_freq = NULL;
    if (c->use_rope && c->rope_scaling != FG_ROPE_DEFAULT) {
        /* uploaded once, as the host computes it; a double is two floats
         * and the arena aligns each tensor to 256 bytes */
        const int half = m->head_dim / 2;
        double table[512];
        const void *placed = NULL;
        if (half > (int)(sizeof table / sizeof table[0]))
            return fgi_fail(FG_ERR_UNSUPPORTED, "%s: scaled RoPE with head_dim %d (at most %d)",
                           a->fn, m->head_dim, 2 * (int)(sizeof table / sizeof table[0]));
        for (int j = 0; j < half; j++) table[j] = fg_config_rope_inv_freq(c, j);
        /* doubles in every weight type: copied as bytes, never converted */
        FGI_TRY(put_bytes(a, &placed, table, sizeof(double) * (size_t)half));
        m->rope_inv_freq = static_cast<const double *>(placed);
    }
    for (int l = 0; l < c->n_layer; l++) {
        const fg_layer_weights *src = &w->layers[l];
        layer_weights *dst = &m->layers[l];
        a->fill_base = 1.0f;
        FGI_TRY(put(a, &dst->ln_1_g, src->ln_1_g, C));
        a->fill_base = 0.0f;
        FGI_TRY(put(a, &dst->ln_1_b, src->ln_1_b, C));
        FGI_TRY(put(a, &dst->c_attn_w, src->c_attn_w, C * W));
        FGI_TRY(put(a, &dst->c_attn_b, src->c_attn_b, W));
        FGI_TRY(put(a, &dst->c_proj_w, src->c_proj_w, A * C));
        FGI_TRY(put(a, &dst->c_proj_b, src->c_proj_b, C));
        a->fill_base = 1.0f;
        FGI_TRY(put(a, &dst->ln_2_g, src->ln_2_g, C));
        a->fill_base = 0.0f;
        FGI_TRY(put(a, &dst->ln_2_b, src->ln_2_b, C));
        if (c->arch == FG_ARCH_LLAMA)
            FGI_TRY(put_side_by_side(a, &dst->fc_w, src->fc_w, src->up_w, C, I));
        else
            FGI_TRY(put(a, &dst->fc_w, src->fc_w, C * I));
        FGI_TRY(put(a, &dst->fc_b, src->fc_b, I));
        FGI_TRY(put(a, &dst->mlp_proj_w, src->mlp_proj_w, I * C));
        FGI_TRY(put(a, &dst->mlp_proj_b, src->mlp_proj_b, C));
    }
    return FG_OK;
}

/* fgi_cuda_set_upload_stage_bytes (decoder_internal.h); 0: the default */
static std::atomic<size_t> upload_stage_bytes{0};

extern "C" size_t fgi_cuda_set_upload_stage_bytes(size_t bytes)
{
    return upload_stage_bytes.exchange(bytes);
}

static fg_status upload_weights(const char *fn, fg_cuda_weights *m, const fg_weights *w,
                                int random, unsigned long long seed, const fg_model *model,
                                const float *markers)
{
    arena a = {fn, m->dtype, m->es, NULL, 0, NULL, random, seed, 0, 0.0f, model, markers, 0};
    FGI_TRY(place_weights(&a, m, w)); /* counting pass */
    if (model != NULL) {
        /* bands of at least one row of the widest slot */
        const fg_config *c = &m->cfg;
        size_t widest = (size_t)m->qkv_width;
        if ((size_t)c->n_inner > widest) widest = (size_t)c->n_inner;
        if ((size_t)c->n_embd > widest) widest = (size_t)c->n_embd;
        const size_t stage = upload_stage_bytes.load();
        a.stage_bytes = stage != 0 ? stage : STAGE_ELEMS * 2 * m->es;
        if (a.stage_bytes < widest * m->es) a.stage_bytes = widest * m->es;
        FGI_TRY(fgi_alloc(fn, (void **)&a.stage, a.stage_bytes, 1));
    } else if (m->dtype != FG_DTYPE_F32 && !random) {
        FGI_TRY(fgi_alloc(fn, (void **)&a.stage, STAGE_ELEMS, sizeof(uint16_t)));
    }
    fg_status st = cuda_alloc(fn, &m->block, a.used, "the weights");
    if (st == FG_OK) m->block_bytes = a.used;
    if (st == FG_OK) {
        a.base = (char *)m->block;
        a.used = 0;
        st = place_weights(&a, m, w);
    }
    if (st == FG_OK && random) { /* the fills ran on the legacy stream */
        const cudaError_t err = cudaDeviceSynchronize();
        if (err != cudaSuccess) {
            (void)cudaGetLastError();
            st = fgi_fail(FG_ERR_CUDA, "%s: filling the weights failed: %s", fn,
                          cudaGetErrorString(err));
        }
    }
    free(a.stage);
    return st;
}

/* Forgets every captured graph (the attention workspace they read moved). */
static void drop_graphs(fg_cuda_runner *r)
{
    for (int i = 0; i < GRAPH_SLOTS; i++) {
        if (r->graphs[i].exec != NULL) cudaGraphExecDestroy(r->graphs[i].exec);
        memset(&r->graphs[i], 0, sizeof r->graphs[i]);
    }
}

/* Activations and workspace --------------------------------------------------- */

/* Takes rows*cols elements of es bytes (rounded to 256 bytes) at *next
 * into *dst; with next NULL it only adds the bytes to *total. */
template <typename P>
static fg_status carve(const char *fn, P **dst, char **next, size_t *total, int rows,
                       long long cols, size_t es, const char *what)
{
    size_t n;
    FGI_TRY(fgi_check_elems(fn, what, &n, 3, (long long)rows, cols, (long long)es));
    n = (n + 255) / 256 * 256;
    if (next != NULL) {
        *dst = reinterpret_cast<P *>(*next);
        *next += n;
    }
    *total += n;
    return FG_OK;
}

/* Lays out (or, with base == NULL, sizes) the activation buffers. */
static fg_status layout_activations(const char *fn, fg_cuda_runner *r, void *base,
                                    size_t *total)
{
    const fg_config *c = &r->w->cfg;
    const int T = r->max_tokens;
    const int llama = c->arch == FG_ARCH_LLAMA;
    const size_t f = sizeof(float), es = r->w->es;
    char *next = static_cast<char *>(base), **cursor = base ? &next : NULL;
    *total = 0;
    FGI_TRY(carve(fn, &r->x, cursor, total, T, c->n_embd, f,
                 "activations x (max_tokens*n_embd)"));
    FGI_TRY(carve(fn, &r->h, cursor, total, T, c->n_embd, es, "activations h"));
    FGI_TRY(carve(fn, &r->delta, cursor, total, T, c->n_embd, es, "activations delta"));
    FGI_TRY(carve(fn, &r->qkv, cursor, total, T, r->w->qkv_width, es,
                 "q|k|v (max_tokens*qkv_width)"));
    FGI_TRY(carve(fn, &r->att, cursor, total, T, (long long)c->n_head * r->w->head_dim, es,
                 "attention output"));
    FGI_TRY(carve(fn, &r->mlp, cursor, total, T, (llama ? 2LL : 1LL) * c->n_inner,
                 llama ? f : es, "MLP activations"));
    FGI_TRY(carve(fn, &r->mlp_act, cursor, total, T, llama ? c->n_inner : 0, es,
                 "SwiGLU product"));
    FGI_TRY(carve(fn, &r->logits, cursor, total, T, c->vocab_size, f,
                 "logits (max_tokens*vocab_size)"));
    const size_t limit = (size_t)PTRDIFF_MAX / 2;
    if (*total > limit)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: activation buffers for max_tokens %d are too large (%zu bytes)",
                       fn, T, *total);
    return FG_OK;
}

/* The split-KV decode's arguments for one 16-bit step of this runner on a
 * cache of `capacity` keys (pointers: the caller's; sizing passes stand-ins). */
static fgi_decode_args decode16_args(const fg_cuda_runner *r, int capacity)
{
    fgi_decode_args a;
    memset(&a, 0, sizeof a);
    a.dtype = r->w->dtype;
    a.batch = 1;
    a.n_q_head = r->w->cfg.n_head;
    a.n_kv_head = r->w->cfg.n_kv_head;
    a.head_dim = r->w->head_dim;
    a.capacity = capacity;
    return a;
}

static size_t decode16_workspace_bytes(const fg_cuda_runner *r, int capacity)
{
    fgi_decode_args a = decode16_args(r, capacity);
    /* only sizes are read: any 16-byte aligned non-NULL stand-ins do */
    static const int one = 1;
    a.out = (void *)256;
    a.q = a.k_cache = a.v_cache = (const void *)256;
    a.kv_lens = &one;
    return fgi_cuda_decode_workspace_bytes(&a);
}

/* Makes the attention workspace cover caches of up to `capacity` tokens. */
static fg_status ensure_attention_workspace(const char *fn, fg_cuda_runner *r, int capacity)
{
    if (r->attention_ws != NULL && capacity <= r->attention_ws_kv) return FG_OK;
    const int kv = capacity > r->attention_ws_kv ? capacity : r->attention_ws_kv;
    size_t bytes = fgi_cuda_attention_workspace_bound(r->w->cfg.n_head, r->max_tokens, kv,
                                                      r->w->head_dim);
    if (r->w->dtype != FG_DTYPE_F32) {
        /* a 16-bit runner's decode steps use the split-KV decode kernel,
         * which wants its own (larger) share for caches of kv keys */
        const size_t d16 = decode16_workspace_bytes(r, kv);
        if (d16 > bytes) bytes = d16;
    }
    if (bytes < 256) bytes = 256; /* never NULL: NULL asks the kernel to allocate */
    if (r->attention_ws != NULL && bytes <= r->attention_ws_bytes) {
        r->attention_ws_kv = kv;
        return FG_OK;
    }
    void *p;
    FGI_TRY(cuda_alloc(fn, &p, bytes, "the attention workspace"));
    const cudaError_t zeroed = cudaMemset(p, 0, bytes); /* the workspace contract */
    if (zeroed != cudaSuccess) {
        (void)cudaGetLastError();
        cudaFree(p);
        return fgi_fail(FG_ERR_CUDA, "%s: cudaMemset of the attention workspace failed: %s", fn,
                       cudaGetErrorString(zeroed));
    }
    if (r->attention_ws != NULL) {
        cudaError_t err = cudaStreamSynchronize(r->stream); /* old one may be in use */
        if (err != cudaSuccess) {
            (void)cudaGetLastError();
            cudaFree(p);
            return fgi_fail(FG_ERR_CUDA, "%s: cudaStreamSynchronize failed: %s", fn,
                           cudaGetErrorString(err));
        }
        cudaFree(r->attention_ws);
        drop_graphs(r); /* they were captured with the old workspace's address */
    }
    r->attention_ws = p;
    r->attention_ws_bytes = bytes;
    r->attention_ws_kv = kv;
    return FG_OK;
}

/* Weights ------------------------------------------------------------------------ */

extern "C" void fg_cuda_weights_destroy(fg_cuda_weights *w)
{
    if (w == NULL) return;
    if (w->block) cudaFree(w->block);
    (void)cudaGetLastError();
    free(w->layers);
    free(w);
}

static fg_status weights_create(const char *fn, fg_cuda_weights **weights, const fg_config *cfg,
                                const fg_weights *host, fg_dtype dtype, int random = 0,
                                unsigned long long seed = 0, const fg_model *model = NULL,
                                const float *markers = NULL)
{
    FGI_TRY(fgi_check_ptr(fn, "weights", weights));
    *weights = NULL;
    if (dtype != FG_DTYPE_F32 && dtype != FG_DTYPE_BF16 && dtype != FG_DTYPE_F16)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'dtype' is not an element type (%d)",
                       fn, (int)dtype);
    FGI_TRY(fgi_check_config(fn, cfg));
    if (!random) FGI_TRY(fgi_check_weights(fn, cfg, host));
    /* 16-bit attention runs on the tensor-core kernel, which is built for
     * these head sizes only (cuda/attention/attention_mma16.cu). */
    if (dtype != FG_DTYPE_F32 && !fgi_attention16_supported(fg_config_head_dim(cfg)))
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: head_dim %d has no %s attention kernel (32, 64, 80, 96, 128 or 256); "
                       "use --dtype f32", fn, fg_config_head_dim(cfg), fg_dtype_name(dtype));
    if (cfg->arch == FG_ARCH_LLAMA && cfg->n_inner > 0x7fffffff / 2)
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: config.n_inner %d is too large for the fused gate|up GEMM", fn,
                       cfg->n_inner);
    FGI_TRY(fgi_cuda_check_device(fn));
    fg_cuda_weights *w;
    FGI_TRY(fgi_alloc(fn, (void **)&w, 1, sizeof *w));
    w->cfg = *cfg;
    w->dtype = dtype;
    w->es = fg_dtype_size(dtype);
    w->head_dim = fg_config_head_dim(cfg);
    w->qkv_width = fg_config_qkv_width(cfg);
    fg_status st = fgi_alloc(fn, (void **)&w->layers, (size_t)cfg->n_layer, sizeof(layer_weights));
    if (st == FG_OK) st = upload_weights(fn, w, host, random, seed, model, markers);
    if (st != FG_OK) {
        fg_cuda_weights_destroy(w);
        return st;
    }
    *weights = w;
    return FG_OK;
}

extern "C" fg_status fg_cuda_weights_create(fg_cuda_weights **weights, const fg_config *cfg,
                                            const fg_weights *host)
{
    return weights_create("fg_cuda_weights_create", weights, cfg, host, FG_DTYPE_F32);
}

/* Random weights straight into device memory: the layout of
 * fg_cuda_weights_create, every tensor present for the family (GPT-2's
 * biases and positions, Llama's separate up projection; the classifier tied
 * to wte) and filled on the device, so a model of any size needs no host
 * copy at all. The host fg_weights below only says which tensors exist:
 * its pointers are never read. */
extern "C" fg_status fg_cuda_weights_create_random(fg_cuda_weights **weights,
                                                   const fg_config *cfg, fg_dtype dtype,
                                                   uint64_t seed)
{
    static const char fn[] = "fg_cuda_weights_create_random";
    static const float present = 0.0f; /* a non-NULL marker, never read */
    FGI_TRY(fgi_check_ptr(fn, "weights", weights));
    *weights = NULL;
    FGI_TRY(fgi_check_config(fn, cfg));
    const int gpt2 = cfg->arch == FG_ARCH_GPT2;
    fg_layer_weights *layers;
    FGI_TRY(fgi_alloc(fn, (void **)&layers, (size_t)cfg->n_layer, sizeof *layers));
    for (int l = 0; l < cfg->n_layer; l++) {
        fg_layer_weights *L = &layers[l];
        L->ln_1_g = L->c_attn_w = L->c_proj_w = L->ln_2_g = L->fc_w = L->mlp_proj_w = &present;
        if (gpt2)
            L->ln_1_b = L->c_attn_b = L->c_proj_b = L->ln_2_b = L->fc_b = L->mlp_proj_b =
                &present;
        else
            L->up_w = &present;
    }
    fg_weights w;
    memset(&w, 0, sizeof w);
    w.wte = w.ln_f_g = &present;
    if (gpt2) {
        w.ln_f_b = &present;
        if (!cfg->use_rope) w.wpe = &present;
    }
    w.layers = layers;
    const fg_status st = weights_create(fn, weights, cfg, &w, dtype, 1, seed);
    free(layers);
    return st;
}

/* Median device-to-device copy bandwidth (read + write bytes per second)
 * over `runs` copies of `bytes`, after two warm-up copies: the roofline a
 * decode step's weight reads are measured against, taken in the same run. */
extern "C" fg_status fg_cuda_copy_bandwidth(size_t bytes, int runs, double *gbps)
{
    static const char fn[] = "fg_cuda_copy_bandwidth";
    FGI_TRY(fgi_check_ptr(fn, "gbps", gbps));
    FGI_TRY(fgi_check_min(fn, "runs", runs, 1));
    if (runs > 1000 || bytes < 1024)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: need 1 <= runs <= 1000 and bytes >= 1024", fn);
    FGI_TRY(fgi_cuda_check_device(fn));
    void *src = NULL, *dst = NULL;
    cudaEvent_t start = NULL, stop = NULL;
    float times[1000];
    fg_status st = cuda_alloc(fn, &src, bytes, "the copy source");
    if (st == FG_OK) st = cuda_alloc(fn, &dst, bytes, "the copy destination");
    cudaError_t err = cudaSuccess;
    if (st == FG_OK) err = cudaEventCreate(&start);
    if (st == FG_OK && err == cudaSuccess) err = cudaEventCreate(&stop);
    for (int r = -2; st == FG_OK && err == cudaSuccess && r < runs; r++) {
        err = cudaEventRecord(start, 0);
        if (err == cudaSuccess) err = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0);
        if (err == cudaSuccess) err = cudaEventRecord(stop, 0);
        if (err == cudaSuccess) err = cudaEventSynchronize(stop);
        if (err == cudaSuccess && r >= 0) err = cudaEventElapsedTime(&times[r], start, stop);
    }
    if (st == FG_OK && err != cudaSuccess) {
        (void)cudaGetLastError();
        st = fgi_fail(FG_ERR_CUDA, "%s: %s", fn, cudaGetErrorString(err));
    }
    if (st == FG_OK) {
        for (int i = 1; i < runs; i++) /* insertion sort: runs is small */
            for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
                const float t = times[j];
                times[j] = times[j - 1];
                times[j - 1] = t;
            }
        const double ms = times[runs / 2] > 0 ? times[runs / 2] : 1e-6;
        *gbps = 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
    }
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (src) cudaFree(src);
    if (dst) cudaFree(dst);
    (void)cudaGetLastError();
    return st;
}

extern "C" fg_status fg_cuda_weights_create_typed(fg_cuda_weights **weights,
                                                  const fg_config *cfg, const fg_weights *host,
                                                  fg_dtype dtype)
{
    return weights_create("fg_cuda_weights_create_typed", weights, cfg, host, dtype);
}

/* Weights from a loaded model without its fp32 host copy: the host
 * fg_weights handed to weights_create holds markers (one float per layer
 * and slot, never read as weights) so that the layout code is the one of
 * fg_cuda_weights_create, and each tensor's bytes come from the model's
 * mapping through fgi_model_rows. */
extern "C" fg_status fg_cuda_weights_create_model(fg_cuda_weights **weights,
                                                  const fg_model *model, fg_dtype dtype)
{
    static const char fn[] = "fg_cuda_weights_create_model";
    FGI_TRY(fgi_check_ptr(fn, "weights", weights));
    *weights = NULL;
    FGI_TRY(fgi_check_ptr(fn, "model", model));
    const fg_config *cfg = fg_model_config(model);
    const size_t L = (size_t)cfg->n_layer;
    float *markers = NULL;
    fg_layer_weights *layers = NULL;
    FGI_TRY(fgi_alloc(fn, (void **)&markers, (L + 1) * FGI_SLOT_COUNT, sizeof(float)));
    fg_status st = fgi_alloc(fn, (void **)&layers, L, sizeof *layers);
    if (st != FG_OK) {
        free(markers);
        return st;
    }
    size_t rows, cols;
    /* the marker of (layer, slot) when the model has that tensor, else NULL */
#define MARK(l, slot)                                                                       \
    (fgi_model_slot_shape(model, slot, &rows, &cols)                                         \
         ? markers + (size_t)(slot < FGI_SLOT_FIRST_LAYER ? L : (size_t)(l)) * FGI_SLOT_COUNT + \
               (size_t)(slot)                                                                 \
         : NULL)
    for (size_t l = 0; l < L; l++) {
        fg_layer_weights *lw = &layers[l];
        lw->ln_1_g = MARK(l, FGI_SLOT_LN_1_G);
        lw->ln_1_b = MARK(l, FGI_SLOT_LN_1_B);
        lw->c_attn_w = MARK(l, FGI_SLOT_C_ATTN_W);
        lw->c_attn_b = MARK(l, FGI_SLOT_C_ATTN_B);
        lw->c_proj_w = MARK(l, FGI_SLOT_C_PROJ_W);
        lw->c_proj_b = MARK(l, FGI_SLOT_C_PROJ_B);
        lw->ln_2_g = MARK(l, FGI_SLOT_LN_2_G);
        lw->ln_2_b = MARK(l, FGI_SLOT_LN_2_B);
        lw->fc_w = MARK(l, FGI_SLOT_FC_W);
        lw->fc_b = MARK(l, FGI_SLOT_FC_B);
        lw->up_w = MARK(l, FGI_SLOT_UP_W);
        lw->mlp_proj_w = MARK(l, FGI_SLOT_MLP_PROJ_W);
        lw->mlp_proj_b = MARK(l, FGI_SLOT_MLP_PROJ_B);
    }
    fg_weights w;
    memset(&w, 0, sizeof w);
    w.wte = MARK(0, FGI_SLOT_WTE);
    w.wpe = MARK(0, FGI_SLOT_WPE);
    w.ln_f_g = MARK(0, FGI_SLOT_LN_F_G);
    w.ln_f_b = MARK(0, FGI_SLOT_LN_F_B);
    w.lm_head = MARK(0, FGI_SLOT_LM_HEAD);
    w.layers = layers;
#undef MARK
    st = weights_create(fn, weights, cfg, &w, dtype, 0, 0, model, markers);
    free(layers);
    free(markers);
    return st;
}

/* The device tensors, for the batched forward (cuda/engine/batch.cu),
 * which serves 16-bit weights from this upload instead of its own. */
extern "C" void fgi_cuda_weights_tensors(const fg_cuda_weights *w, fgi_cuda_model_tensors *m)
{
    m->dtype = w->dtype;
    m->wte = w->wte;
    m->wpe = w->wpe;
    m->ln_f_g = w->ln_f_g;
    m->ln_f_b = w->ln_f_b;
    m->classifier = w->classifier;
    m->rope_inv_freq = w->rope_inv_freq;
}

extern "C" void fgi_cuda_weights_layer_tensors(const fg_cuda_weights *w, int layer,
                                               fgi_cuda_layer_tensors *t)
{
    const layer_weights *s = &w->layers[layer];
    t->ln_1_g = s->ln_1_g, t->ln_1_b = s->ln_1_b;
    t->c_attn_w = s->c_attn_w, t->c_attn_b = s->c_attn_b;
    t->c_proj_w = s->c_proj_w, t->c_proj_b = s->c_proj_b;
    t->ln_2_g = s->ln_2_g, t->ln_2_b = s->ln_2_b;
    t->fc_w = s->fc_w, t->fc_b = s->fc_b;
    t->mlp_proj_w = s->mlp_proj_w, t->mlp_proj_b = s->mlp_proj_b;
}

extern "C" int fg_cuda_decoder_dtype_supported(const fg_config *cfg, fg_dtype dtype)
{
    if (cfg == NULL || cfg->n_head < 1 || (dtype != FG_DTYPE_F32 && dtype != FG_DTYPE_BF16 &&
                                           dtype != FG_DTYPE_F16))
        return 0;
    int device = 0;
    cudaDeviceProp prop;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (dtype == FG_DTYPE_F32) return 1;
    /* the 16-bit kernels use sm_80's mma.sync shapes and cp.async */
    return prop.major >= 8 && fgi_attention16_supported(fg_config_head_dim(cfg));
}

extern "C" size_t fg_cuda_weights_bytes(const fg_cuda_weights *weights)
{
    return weights ? weights->block_bytes : 0;
}

extern "C" fg_dtype fg_cuda_weights_dtype(const fg_cuda_weights *weights)
{
    return weights ? weights->dtype : FG_DTYPE_F32;
}

extern "C" const fg_config *fg_cuda_weights_config(const fg_cuda_weights *weights)
{
    return weights ? &weights->cfg : NULL;
}

/* Runner ------------------------------------------------------------------------- */

extern "C" void fg_cuda_runner_destroy(fg_cuda_runner *r)
{
    if (r == NULL) return;
    drop_graphs(r);
    if (r->lin.blas) cublasDestroy(r->lin.blas);
    if (r->lin.blaslt) cublasLtDestroy(r->lin.blaslt);
    if (r->capture_stream) cudaStreamDestroy(r->capture_stream);
    if (r->activations) cudaFree(r->activations);
    if (r->ids) cudaFree(r->ids);
    if (r->step) cudaFree(r->step);
    if (r->attention_ws) cudaFree(r->attention_ws);
    if (r->lin.gemv_ws) cudaFree(r->lin.gemv_ws);
    (void)cudaGetLastError();
    free(r);
}

extern "C" size_t fg_cuda_runner_bytes(const fg_cuda_runner *r, int capacity)
{
    size_t total = 0;
    if (r == NULL) return 0;
    /* sizing only: with no base, the layout writes no pointer */
    if (layout_activations("fg_cuda_runner_bytes", const_cast<fg_cuda_runner *>(r), NULL,
                           &total) != FG_OK)
        return 0;
    const int kv = capacity > r->attention_ws_kv ? capacity : r->attention_ws_kv;
    size_t ws = fgi_cuda_attention_workspace_bound(r->w->cfg.n_head, r->max_tokens, kv,
                                                   r->w->head_dim);
    if (r->w->dtype != FG_DTYPE_F32) {
        const size_t d16 = decode16_workspace_bytes(r, kv);
        if (d16 > ws) ws = d16;
    }
    if (ws < r->attention_ws_bytes) ws = r->attention_ws_bytes;
    return total + ws + FGI_GEMV_WORKSPACE_BYTES + sizeof(int) * (size_t)r->max_tokens +
           3 * sizeof(int);
}

static fg_status runner_init(const char *fn, fg_cuda_runner *r)
{
    size_t total;
    FGI_TRY(layout_activations(fn, r, NULL, &total));
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_TRY(fgi_cuda_blas_create(fn, &r->lin.blas, r->stream));
    /* 16-bit GEMMs: one cuBLASLt handle for the runner's life (one per call
     * would cost a creation per layer and cannot be captured) */
    if (r->w->dtype != FG_DTYPE_F32) FGI_CUBLAS_TRY(fn, cublasLtCreate(&r->lin.blaslt));
    FGI_TRY(fgi_cuda_sm_count(fn, &r->lin.sm_count));
    FGI_TRY(cuda_alloc(fn, &r->lin.gemv_ws, FGI_GEMV_WORKSPACE_BYTES, "the GEMV workspace"));
    FGI_CUDA_TRY(fn, cudaMemset(r->lin.gemv_ws, 0, FGI_GEMV_COUNTER_BYTES));
    FGI_TRY(cuda_alloc(fn, &r->activations, total, "activations"));
    FGI_TRY(layout_activations(fn, r, r->activations, &total));
    FGI_TRY(cuda_alloc(fn, (void **)&r->ids, sizeof(int) * (size_t)r->max_tokens, "token ids"));
    FGI_TRY(cuda_alloc(fn, (void **)&r->step, 3 * sizeof(int), "the step record"));
    /* sized for max_tokens keys now, grown to a cache's capacity when one is
     * used: sizing it for n_ctx reserved memory for positions a config only
     * claims (millions of them) */
    return ensure_attention_workspace(fn, r, r->max_tokens);
}

extern "C" fg_status fg_cuda_runner_create(fg_cuda_runner **runner,
                                           const fg_cuda_weights *weights, int max_tokens,
                                           cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_runner_create";
    FGI_TRY(fgi_check_ptr(fn, "runner", runner));
    *runner = NULL;
    FGI_TRY(fgi_check_ptr(fn, "weights", weights));
    FGI_TRY(fgi_check_min(fn, "max_tokens", max_tokens, 1));
    fg_cuda_runner *r;
    FGI_TRY(fgi_alloc(fn, (void **)&r, 1, sizeof *r));
    r->w = weights;
    r->max_tokens = max_tokens;
    r->stream = stream;
    fg_status st = runner_init(fn, r);
    if (st != FG_OK) {
        fg_cuda_runner_destroy(r);
        return st;
    }
    *runner = r;
    return FG_OK;
}

extern "C" long long fgi_cuda_runner_graph_captures(const fg_cuda_runner *runner)
{
    return runner != NULL ? runner->captures : 0;
}

/* KV cache ---------------------------------------------------------------------- */

extern "C" void fg_cuda_kv_cache_destroy(fg_cuda_kv_cache *cache)
{
    if (cache == NULL) return;
    if (cache->data) cudaFree(cache->data);
    (void)cudaGetLastError();
    free(cache->len);
    free(cache);
}

static fg_status kv_cache_create(const char *fn, fg_cuda_kv_cache **cache, int n_layer,
                                 int n_kv_head, int head_dim, int capacity, fg_dtype dtype)
{
    static std::atomic<unsigned long long> last_id(0);
    size_t per_layer, all;
    FGI_TRY(fgi_check_ptr(fn, "cache", cache));
    *cache = NULL;
    if (dtype != FG_DTYPE_F32 && dtype != FG_DTYPE_BF16 && dtype != FG_DTYPE_F16)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'dtype' is not an element type (%d)",
                       fn, (int)dtype);
    FGI_TRY(fgi_check_min(fn, "n_layer", n_layer, 1));
    FGI_TRY(fgi_check_min(fn, "n_kv_head", n_kv_head, 1));
    FGI_TRY(fgi_check_min(fn, "head_dim", head_dim, 1));
    FGI_TRY(fgi_check_min(fn, "capacity", capacity, 1));
    FGI_TRY(fgi_check_elems(fn, "one layer's keys (n_kv_head*capacity*head_dim)", &per_layer,
                          3, (long long)n_kv_head, (long long)capacity, (long long)head_dim));
    FGI_TRY(fgi_check_elems(fn, "the cache (2*n_layer*n_kv_head*capacity*head_dim)", &all, 3,
                          (long long)per_layer, 2LL * n_layer, (long long)fg_dtype_size(dtype)));
    FGI_TRY(fgi_cuda_check_device(fn));
    fg_cuda_kv_cache *c;
    FGI_TRY(fgi_alloc(fn, (void **)&c, 1, sizeof *c));
    c->n_layer = n_layer;
    c->n_kv_head = n_kv_head;
    c->head_dim = head_dim;
    c->capacity = capacity;
    c->dtype = dtype;
    c->es = fg_dtype_size(dtype);
    c->n_seq = 1;
    c->block_tokens = capacity;
    c->kv_head_stride = (size_t)capacity * (size_t)head_dim;
    c->seq_stride = per_layer;
    c->layer_floats = per_layer * (size_t)c->n_seq;
    fg_status st = fgi_alloc(fn, (void **)&c->len, (size_t)c->n_seq * (size_t)n_layer,
                             sizeof(int));
    if (st == FG_OK) st = cuda_alloc(fn, &c->data, all, "the KV cache"); /* all: bytes */
    if (st != FG_OK) {
        fg_cuda_kv_cache_destroy(c);
        return st;
    }
    c->id = ++last_id;
    *cache = c;
    return FG_OK;
}

extern "C" fg_status fg_cuda_kv_cache_create(fg_cuda_kv_cache **cache, int n_layer,
                                             int n_kv_head, int head_dim, int capacity)
{
    return kv_cache_create("fg_cuda_kv_cache_create", cache, n_layer, n_kv_head, head_dim,
                           capacity, FG_DTYPE_F32);
}

extern "C" fg_status fg_cuda_kv_cache_create_typed(fg_cuda_kv_cache **cache, int n_layer,
                                                   int n_kv_head, int head_dim, int capacity,
                                                   fg_dtype dtype)
{
    return kv_cache_create("fg_cuda_kv_cache_create_typed", cache, n_layer, n_kv_head, head_dim,
                           capacity, dtype);
}

extern "C" fg_dtype fg_cuda_kv_cache_dtype(const fg_cuda_kv_cache *cache)
{
    return cache ? cache->dtype : FG_DTYPE_F32;
}

extern "C" long long fgi_cuda_kv_cache_graph_steps(const fg_cuda_kv_cache *cache)
{
    return cache != NULL ? cache->graph_steps : 0;
}

extern "C" fg_status fgi_cuda_kv_cache_read(const fg_cuda_kv_cache *cache, int layer, float *k,
                                            float *v)
{
    static const char fn[] = "fgi_cuda_kv_cache_read";
    FGI_TRY(fgi_check_ptr(fn, "cache", cache));
    FGI_TRY(fgi_check_ptr(fn, "k", k));
    FGI_TRY(fgi_check_ptr(fn, "v", v));
    if (layer < 0 || layer >= cache->n_layer)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: 'layer' is %d, the cache has %d layers", fn,
                       layer, cache->n_layer);
    /* The runners' streams may still be writing the cache. */
    FGI_CUDA_TRY(fn, cudaDeviceSynchronize());
    const size_t n = (size_t)cache->n_kv_head * cache->kv_head_stride;
    if (cache->dtype == FG_DTYPE_F32) {
        FGI_CUDA_TRY(fn, cudaMemcpy(k, cache_k(cache, layer), sizeof(float) * n,
                                   cudaMemcpyDeviceToHost));
        FGI_CUDA_TRY(fn, cudaMemcpy(v, cache_v(cache, layer), sizeof(float) * n,
                                   cudaMemcpyDeviceToHost));
        return FG_OK;
    }
    /* 16-bit: through a host copy of the layer's elements, widened exactly */
    uint16_t *tmp;
    FGI_TRY(fgi_alloc(fn, (void **)&tmp, n, sizeof(uint16_t)));
    fg_status st = FG_OK;
    for (int part = 0; part < 2 && st == FG_OK; part++) {
        const cudaError_t err = cudaMemcpy(tmp, part ? cache_v(cache, layer) : cache_k(cache, layer),
                                           n * cache->es, cudaMemcpyDeviceToHost);
        if (err != cudaSuccess) {
            (void)cudaGetLastError();
            st = fgi_fail(FG_ERR_CUDA, "%s: cudaMemcpy failed: %s", fn, cudaGetErrorString(err));
        } else {
            st = fg_dtype_to_f32(cache->dtype, part ? v : k, tmp, n);
        }
    }
    free(tmp);
    return st;
}

extern "C" fg_status fgi_cuda_kv_cache_copy(fg_cuda_kv_cache *dst, const fg_cuda_kv_cache *src)
{
    static const char fn[] = "fgi_cuda_kv_cache_copy";
    FGI_TRY(fgi_check_ptr(fn, "dst", dst));
    FGI_TRY(fgi_check_ptr(fn, "src", src));
    if (dst == src) return FG_OK;
    if (dst->n_layer != src->n_layer || dst->n_kv_head != src->n_kv_head ||
        dst->head_dim != src->head_dim || dst->dtype != src->dtype || dst->n_seq != src->n_seq)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the caches differ in shape or type", fn);
    const int n_len = src->n_seq * src->n_layer;
    for (int i = 0; i < n_len; i++)
        if (src->len[i] > dst->capacity)
            return fgi_fail(FG_ERR_INVALID_ARG, "%s: %d cached tokens do not fit a cache of %d",
                           fn, src->len[i], dst->capacity);
    /* The runners' streams may still be writing src. */
    FGI_CUDA_TRY(fn, cudaDeviceSynchronize());
    for (int q = 0; q < src->n_seq; q++)
        for (int l = 0; l < src->n_layer; l++) {
            const size_t row = (size_t)src->len[q * src->n_layer + l] * src->head_dim * src->es;
            if (row == 0) continue;
            for (int part = 0; part < 2; part++) {
                const size_t off = (size_t)q * src->seq_stride * src->es;
                const char *from = (const char *)(part ? cache_v(src, l) : cache_k(src, l)) + off;
                char *to = (char *)(part ? cache_v(dst, l) : cache_k(dst, l)) +
                           (size_t)q * dst->seq_stride * dst->es;
                /* (n_kv_head, capacity, head_dim): a row of `len` tokens per head */
                FGI_CUDA_TRY(fn, cudaMemcpy2D(to, dst->kv_head_stride * dst->es, from,
                                             src->kv_head_stride * src->es, row,
                                             (size_t)src->n_kv_head, cudaMemcpyDeviceToDevice));
            }
        }
    for (int i = 0; i < n_len; i++) dst->len[i] = src->len[i];
    return FG_OK;
}

extern "C" fg_status fg_cuda_kv_cache_reset(fg_cuda_kv_cache *cache)
{
    FGI_TRY(fgi_check_ptr("fg_cuda_kv_cache_reset", "cache", cache));
    for (int i = 0; i < cache->n_seq * cache->n_layer; i++) cache->len[i] = 0;
    return FG_OK;
}

extern "C" int fg_cuda_kv_cache_len(const fg_cuda_kv_cache *cache, int layer)
{
    if (cache == NULL || layer < 0 || layer >= cache->n_layer) return -1;
    return cache->len[layer];
}

extern "C" int fg_cuda_kv_cache_capacity(const fg_cuda_kv_cache *cache)
{
    return cache ? cache->capacity : -1;
}

/* Validation (host/model/decoder_check.c, shared with the CPU reference) ------ */

static const fgi_cache_shape *cache_shape(fgi_cache_shape *shape, const fg_cuda_kv_cache *cache)
{
    if (cache == NULL) return NULL;
    shape->n_layer = cache->n_layer;
    shape->n_kv_head = cache->n_kv_head;
    shape->head_dim = cache->head_dim;
    shape->capacity = cache->capacity;
    shape->lens = cache->len; /* sequence 0 */
    shape->len_stride = sizeof(int);
    return shape;
}

/* A cache holds the runner's element type: its kernels read it as that. */
static fg_status check_cache_dtype(const char *fn, const fg_cuda_runner *r,
                                  const fg_cuda_kv_cache *cache)
{
    if (cache == NULL || cache->dtype == r->w->dtype) return FG_OK;
    return fgi_fail(FG_ERR_INVALID_ARG, "%s: the KV cache holds %s, the weights %s", fn,
                   fg_dtype_name(cache->dtype), fg_dtype_name(r->w->dtype));
}

static fg_status check_layer_call(const char *fn, const float *out, const float *x, int T,
                                  const fg_cuda_runner *r, const fg_cuda_kv_cache *cache,
                                  int layer)
{
    fgi_cache_shape shape;
    FGI_TRY(fgi_check_ptr(fn, "runner", r));
    FGI_TRY(check_cache_dtype(fn, r, cache));
    return fgi_check_layer_call(fn, &r->w->cfg, out, x, T, r->max_tokens,
                                cache_shape(&shape, cache), layer);
}

/* logit_rows: T (fg_cuda_forward) or 1 (fg_cuda_forward_last). */
static fg_status check_forward(const char *fn, const float *logits, const float *probs,
                               int logit_rows, const fg_cuda_runner *r,
                               const fg_cuda_kv_cache *cache, const int *ids, int T)
{
    fgi_cache_shape shape;
    FGI_TRY(fgi_check_ptr(fn, "runner", r));
    FGI_TRY(check_cache_dtype(fn, r, cache));
    return fgi_check_forward_call(fn, &r->w->cfg, r->w->wpe != NULL, logits, probs, logit_rows,
                                  ids, T, r->max_tokens, cache_shape(&shape, cache));
}

/* The layer pipeline ------------------------------------------------------------ */

/* A probe point (fg_cuda_block_probe): when a probe is set, waits for the
 * work so far and hands it the (rows, cols) block of dev (row stride
 * `stride` elements; fp32 when f32, else the weights' type) widened to
 * fp32. Nothing happens without a probe (decode steps, captures). */
static fg_status probe_point(const char *fn, fg_cuda_runner *r, const char *op, const void *dev,
                             int f32, int rows, int cols, long long stride)
{
    if (r->probe == NULL) return FG_OK;
    const fg_dtype dt = f32 ? FG_DTYPE_F32 : r->w->dtype;
    const size_t es = fg_dtype_size(dt), n = (size_t)rows * (size_t)cols;
    void *raw = NULL;
    float *values = NULL;
    FGI_TRY(fgi_alloc(fn, &raw, n, es));
    fg_status st = fgi_alloc(fn, (void **)&values, n, sizeof(float));
    cudaError_t err = cudaStreamSynchronize(r->stream);
    if (st == FG_OK && err == cudaSuccess)
        err = cudaMemcpy2D(raw, (size_t)cols * es, dev, (size_t)stride * es, (size_t)cols * es,
                           (size_t)rows, cudaMemcpyDeviceToHost);
    if (st == FG_OK && err != cudaSuccess)
        st = fgi_fail(FG_ERR_CUDA, "%s: reading '%s' back failed: %s", fn, op,
                      cudaGetErrorString(err));
    if (st == FG_OK) st = fg_dtype_to_f32(dt, values, raw, n);
    if (st == FG_OK) r->probe(r->probe_user, op, values, rows, cols);
    free(raw);
    free(values);
    return st;
}

/* The rows L .. L+T-1 that a call appended to a layer's keys or values,
 * as (T, n_kv_head * d), handed to the probe. */
static fg_status probe_cache(const char *fn, fg_cuda_runner *r, const fg_cuda_kv_cache *c,
                             const char *op, const void *kv, int L, int T)
{
    if (r->probe == NULL) return FG_OK;
    const int G = c->n_kv_head, d = c->head_dim;
    const size_t es = c->es;
    void *raw = NULL;
    FGI_TRY(fgi_alloc(fn, &raw, (size_t)T * G * d, es));
    cudaError_t err = cudaStreamSynchronize(r->stream);
    for (int g = 0; g < G && err == cudaSuccess; g++) /* (G, capacity, d) -> (T, G*d) */
        err = cudaMemcpy2D((char *)raw + (size_t)g * d * es, (size_t)G * d * es,
                           (const char *)kv + ((size_t)g * c->kv_head_stride + (size_t)L * d) * es,
                           (size_t)d * es, (size_t)d * es, (size_t)T, cudaMemcpyDeviceToHost);
    fg_status st = FG_OK;
    if (err != cudaSuccess)
        st = fgi_fail(FG_ERR_CUDA, "%s: reading '%s' back failed: %s", fn, op,
                      cudaGetErrorString(err));
    /* the host copy now holds rows of G*d: hand it over as a device-free block */
    fg_cuda_probe_fn probe = r->probe;
    float *values = NULL;
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&values, (size_t)T * G * d, sizeof(float));
    if (st == FG_OK) st = fg_dtype_to_f32(c->dtype, values, raw, (size_t)T * G * d);
    if (st == FG_OK) probe(r->probe_user, op, values, T, G * d);
    free(raw);
    free(values);
    return st;
}

static fg_status norm_rows(const char *fn, fg_cuda_runner *r, void *y, float *x,
                           const void *delta, const void *delta_bias, const void *g,
                           const void *b, int T)
{
    return fgi_cuda_model_norm(fn, r->w->dtype, &r->w->cfg, y, x, delta, delta_bias, g, b, T,
                               r->stream);
}

/* A linear layer in the weights' type (fp32: the SGEMM / GEMV path as
 * before; 16-bit: GEMV or cuBLASLt). */
static fg_status linear(const char *fn, fg_cuda_runner *r, void *y, const void *x, const void *w,
                        const void *b, int rows, int in, int out, fgi_activation act)
{
    if (r->w->dtype == FG_DTYPE_F32)
        return fgi_cuda_linear_layer(fn, &r->lin, static_cast<float *>(y),
                                     static_cast<const float *>(x), static_cast<const float *>(w),
                                     static_cast<const float *>(b), rows, in, out, 0, act,
                                     r->stream);
    return fgi_cuda_linear_layer_typed(fn, r->w->dtype, &r->lin, y, x, w, b, rows, in, out, 0,
                                       act, r->stream);
}

/* The fused decode path (16-bit weights, one token): each
 * sublayer's first GEMV normalises the fp32 residual stream in its
 * prologue and its last GEMV adds into it in its epilogue
 * (fgi_cuda_gemv_fused), so the 16-bit h round trip and the add + norm
 * launches go; Llama's gate|up comes out in fp32 (as cuBLASLt's gave it)
 * and the classifier is the transposed GEMV with ln_f in its prologue
 * (fgi_cuda_gemv_t_normed). fp32 keeps its path. */
static int fused_rows(const fg_cuda_runner *r, int T)
{
    return r->w->dtype != FG_DTYPE_F32 && r->lin.gemv_ws != NULL && T == 1;
}

/* The model's norm (g, b_norm) of the fp32 rows x, as a GEMV prologue. */
static fgi_gemv_norm gemv_norm(const fg_cuda_runner *r, const float *x, const void *g,
                               const void *b_norm)
{
    fgi_gemv_norm n;
    n.x = x;
    n.g = g;
    n.b = r->w->cfg.arch == FG_ARCH_LLAMA ? NULL : b_norm;
    n.eps = r->w->cfg.norm_eps;
    n.rms = r->w->cfg.arch == FG_ARCH_LLAMA;
    return n;
}

/* y (T, out) = act(norm(x) w + b) with the norm (g, b_norm) fused; y_f32:
 * y is fp32, the sums unrounded. */
static fg_status linear_normed(const char *fn, fg_cuda_runner *r, void *y, const float *x,
                               const void *g, const void *b_norm, const void *w, const void *b,
                               int T, int in, int out, fgi_activation act, int y_f32 = 0)
{
    const fgi_gemv_norm n = gemv_norm(r, x, g, b_norm);
    return fgi_cuda_gemv_fused(fn, r->w->dtype, &r->lin, y, y_f32, NULL, &n, NULL, w, b, T, in,
                               out, act, r->stream);
}

/* resid (T, out) += round(x w) + b: the residual add in the epilogue. */
static fg_status linear_residual(const char *fn, fg_cuda_runner *r, float *resid, const void *x,
                                 const void *w, const void *b, int T, int in, int out)
{
    return fgi_cuda_gemv_fused(fn, r->w->dtype, &r->lin, NULL, 0, x, NULL, resid, w, b, T, in,
                               out, FGI_ACT_NONE, r->stream);
}

/* out (T, C) = attention of the normalised input x_in (T, C) at positions
 * L .. L+T-1, appending k and v to the cache; the c_proj bias is added only
 * with proj_bias (the block adds it in its fused residual add instead).
 * With a device step record (T = 1) the position and key count are read
 * from it at run time and L is ignored. With resid (the fused path) x_in
 * and out are unused: q|k|v come from ln_1(resid) in the GEMV's prologue
 * and the output projection (with its bias) is added into resid. */
static fg_status attention_sublayer(const char *fn, fg_cuda_runner *r, fg_cuda_kv_cache *cache,
                                    int layer, int L, int T, const void *x_in, void *out,
                                    int proj_bias, const int *step, float *resid = NULL)
{
    const fg_config *c = &r->w->cfg;
    const layer_weights *lw = &r->w->layers[layer];
    const fg_dtype dt = r->w->dtype;
    const int C = c->n_embd, d = r->w->head_dim, W = r->w->qkv_width;
    if (resid != NULL)
        FGI_TRY(linear_normed(fn, r, r->qkv, resid, lw->ln_1_g, lw->ln_1_b, lw->c_attn_w, NULL, T,
                              C, W, FGI_ACT_NONE));
    else
        FGI_TRY(linear(fn, r, r->qkv, x_in, lw->c_attn_w, NULL, T, C, W, FGI_ACT_NONE));
    FGI_TRY(probe_point(fn, r, "qkv", r->qkv, 0, T, W, W));
    /* the output projection (T, n_head*d) -> (T, C) */
    auto project = [&]() {
        FGI_TRY(probe_point(fn, r, "attention", r->att, dt == FG_DTYPE_F32, T, c->n_head * d,
                            (long long)c->n_head * d));
        if (resid != NULL)
            return linear_residual(fn, r, resid, r->att, lw->c_proj_w, lw->c_proj_b, T,
                                   c->n_head * d, C);
        FGI_TRY(linear(fn, r, out, r->att, lw->c_proj_w, proj_bias ? lw->c_proj_b : NULL, T,
                       c->n_head * d, C, FGI_ACT_NONE));
        return probe_point(fn, r, "attn_proj", out, dt == FG_DTYPE_F32, T, C, C);
    };

    fgi_qkv_append_args qa;
    qa.qkv = r->qkv;
    qa.bias = lw->c_attn_b;
    qa.k_cache = cache_k(cache, layer);
    qa.v_cache = cache_v(cache, layer);
    qa.T = T;
    qa.n_head = c->n_head;
    qa.n_kv_head = c->n_kv_head;
    qa.head_dim = d;
    qa.capacity = cache->capacity;
    qa.pos0 = L;
    qa.pos0_dev = step != NULL ? step + 1 : NULL;
    qa.use_rope = c->use_rope;
    qa.rope_base = c->rope_base;
    qa.rope_inv_freq = r->w->rope_inv_freq;
    if (dt == FG_DTYPE_F32)
        FGI_TRY(fgi_cuda_qkv_rope_append(fn, &qa, r->stream));
    else
        FGI_TRY(fgi_cuda_qkv_rope_append_typed(fn, dt, &qa, r->stream));
    FGI_TRY(probe_point(fn, r, "q_rope", r->qkv, 0, T, c->n_head * d, W));
    FGI_TRY(probe_cache(fn, r, cache, "k_cache", qa.k_cache, L, T));
    FGI_TRY(probe_cache(fn, r, cache, "v_cache", qa.v_cache, L, T));

    if (dt != FG_DTYPE_F32 && step != NULL) {
        /* A captured decode step: the split-KV decode kernel, which reads
         * the key count from the step record at run time. */
        fgi_decode_args da = decode16_args(r, cache->capacity);
        da.out = r->att;                 /* (1, n_head*d) */
        da.q = r->qkv;                   /* q heads: the first n_head*d columns */
        da.k_cache = qa.k_cache;
        da.v_cache = qa.v_cache;
        da.kv_lens = step + 2;
        da.window = fg_config_layer_window(c, layer);
        FGI_TRY(fgi_cuda_decode_attention(fn, &da, r->attention_ws, r->attention_ws_bytes, NULL,
                                          r->stream));
        return project();
    }
    if (dt != FG_DTYPE_F32) {
        /* The tensor-core kernel, causal from the bottom right: row t sees
         * keys 0 .. L+t (the last `window` of them with a sliding window),
         * its key count from the host (prefill, chunks, uncaptured steps). */
        fgi_attention16_args a16;
        memset(&a16, 0, sizeof a16);
        a16.dtype = dt;
        a16.out = r->att;
        a16.out_head_stride = d;
        a16.out_row_stride = (long long)c->n_head * d;
        a16.q = r->qkv;
        a16.q_head_stride = d;
        a16.q_row_stride = W;
        a16.k = qa.k_cache;
        a16.v = qa.v_cache;
        a16.kv_head_stride = (long long)cache->kv_head_stride;
        a16.n_q_head = c->n_head;
        a16.n_kv_head = c->n_kv_head;
        a16.q_len = T;
        a16.kv_len = L + T;
        a16.head_dim = d;
        a16.window = fg_config_layer_window(c, layer);
        FGI_TRY(fgi_cuda_attention16(fn, &a16, r->stream));
        return project();
    }

    fgi_attention_args aa;
    memset(&aa, 0, sizeof aa);
    aa.out_head_stride = d;
    aa.out_row_stride = (long long)c->n_head * d;
    aa.lse = NULL;
    aa.q_head_stride = d;
    aa.q_row_stride = W;
    aa.out = static_cast<float *>(r->att);
    aa.q = static_cast<const float *>(r->qkv); /* q heads: the first n_head*d columns */
    aa.k = static_cast<const float *>(qa.k_cache);
    aa.v = static_cast<const float *>(qa.v_cache);
    aa.kv_head_stride = (long long)cache->kv_head_stride;
    aa.n_q_head = c->n_head;
    aa.n_kv_head = c->n_kv_head;
    aa.q_len = T;
    aa.kv_len = step != NULL ? cache->capacity : L + T; /* with step: the plan's bound */
    aa.kv_len_dev = step != NULL ? step + 2 : NULL;
    aa.head_dim = d;
    aa.block_size = c->use_flash ? c->flash_block : 0;
    aa.window = fg_config_layer_window(c, layer);
    FGI_TRY(fgi_cuda_attention(fn, &aa, r->attention_ws, r->attention_ws_bytes, r->stream));
    return project();
}

/* r->delta (T, C) = MLP of r->h without the output bias. */
static fg_status mlp_sublayer(const char *fn, fg_cuda_runner *r, int layer, int T)
{
    const fg_config *c = &r->w->cfg;
    const layer_weights *lw = &r->w->layers[layer];
    const int C = c->n_embd, I = c->n_inner;
    const fg_dtype dt = r->w->dtype;
    if (c->arch == FG_ARCH_LLAMA) {
        /* gate|up stay fp32 (T, 2I) in every type: only silu(gate) up is
         * rounded, as fg_cuda_swiglu_ffn_typed does */
        float *gate_up = static_cast<float *>(r->mlp);
        void *act = r->mlp_act; /* (T, I) */
        if (dt == FG_DTYPE_F32) {
            FGI_TRY(fgi_cuda_linear_layer(fn, &r->lin, gate_up, static_cast<const float *>(r->h),
                                         static_cast<const float *>(lw->fc_w), NULL, T, C,
                                         2 * I, 0, FGI_ACT_NONE, r->stream));
            FGI_TRY(fgi_cuda_silu_mul_rows(fn, static_cast<float *>(act), gate_up, gate_up + I,
                                          T, I, 2LL * I, r->stream));
        } else {
            FGI_TRY(fgi_cuda_linear_layer_f32out(fn, dt, &r->lin, gate_up, r->h, lw->fc_w, T, C,
                                                2 * I, 0, r->stream));
            FGI_TRY(probe_point(fn, r, "gate_up", gate_up, 1, T, 2 * I, 2LL * I));
            FGI_TRY(fgi_cuda_silu_mul_rows_f32in(fn, dt, act, gate_up, gate_up + I, T, I,
                                                2LL * I, r->stream));
        }
        if (dt == FG_DTYPE_F32) FGI_TRY(probe_point(fn, r, "gate_up", gate_up, 1, T, 2 * I, 2LL * I));
        FGI_TRY(probe_point(fn, r, "activation", act, 0, T, I, I));
        FGI_TRY(linear(fn, r, r->delta, act, lw->mlp_proj_w, NULL, T, I, C, FGI_ACT_NONE));
        return probe_point(fn, r, "down", r->delta, 0, T, C, C);
    }
    FGI_TRY(linear(fn, r, r->mlp, r->h, lw->fc_w, lw->fc_b, T, C, I, FGI_ACT_GELU));
    FGI_TRY(probe_point(fn, r, "up_gelu", r->mlp, 0, T, I, I));
    FGI_TRY(linear(fn, r, r->delta, r->mlp, lw->mlp_proj_w, NULL, T, I, C, FGI_ACT_NONE));
    return probe_point(fn, r, "down", r->delta, 0, T, C, C);
}

/* One pre-norm block on x (T, C), with r->h already holding norm_1(x). With
 * next_g the final residual add is fused with the next norm into r->h
 * (the next layer's norm_1 or the final norm); without it x is just updated. */
static fg_status layer_forward(const char *fn, fg_cuda_runner *r, fg_cuda_kv_cache *cache,
                               int layer, int L, int T, float *x, const void *next_g,
                               const void *next_b, const int *step)
{
    const layer_weights *lw = &r->w->layers[layer];
    const int C = r->w->cfg.n_embd;
    FGI_TRY(attention_sublayer(fn, r, cache, layer, L, T, r->h, r->delta, 0, step));
    FGI_TRY(norm_rows(fn, r, r->h, x, r->delta, lw->c_proj_b, lw->ln_2_g, lw->ln_2_b, T));
    FGI_TRY(probe_point(fn, r, "residual", x, 1, T, C, C));
    FGI_TRY(probe_point(fn, r, "ffn_norm", r->h, 0, T, C, C));
    FGI_TRY(mlp_sublayer(fn, r, layer, T));
    if (next_g != NULL)
        return norm_rows(fn, r, r->h, x, r->delta, lw->mlp_proj_b, next_g, next_b, T);
    if (r->w->dtype == FG_DTYPE_F32)
        FGI_TRY(fgi_cuda_add_rows(fn, x, static_cast<const float *>(r->delta),
                                  static_cast<const float *>(lw->mlp_proj_b), T, C, r->stream));
    else
        FGI_TRY(fgi_cuda_add_rows_typed(fn, r->w->dtype, x, r->delta, lw->mlp_proj_b, T, C,
                                        r->stream));
    return probe_point(fn, r, "residual_2", x, 1, T, C, C);
}

/* One pre-norm block on the fp32 residual x (T, C) on the fused path
 * (fused_rows): no h is needed before it and none is left after it. */
static fg_status layer_forward_fused(const char *fn, fg_cuda_runner *r, fg_cuda_kv_cache *cache,
                                     int layer, int L, int T, float *x, const int *step)
{
    const fg_config *c = &r->w->cfg;
    const layer_weights *lw = &r->w->layers[layer];
    const int C = c->n_embd, I = c->n_inner;
    FGI_TRY(attention_sublayer(fn, r, cache, layer, L, T, NULL, NULL, 0, step, x));
    if (c->arch == FG_ARCH_LLAMA) {
        /* gate|up in fp32, as the unfused path's cuBLASLt GEMM gives it */
        float *gate_up = static_cast<float *>(r->mlp);
        FGI_TRY(linear_normed(fn, r, gate_up, x, lw->ln_2_g, lw->ln_2_b, lw->fc_w, NULL, T, C,
                              2 * I, FGI_ACT_NONE, 1));
        FGI_TRY(fgi_cuda_silu_mul_rows_f32in(fn, r->w->dtype, r->mlp_act, gate_up, gate_up + I,
                                            T, I, 2LL * I, r->stream));
        return linear_residual(fn, r, x, r->mlp_act, lw->mlp_proj_w, lw->mlp_proj_b, T, I, C);
    }
    FGI_TRY(linear_normed(fn, r, r->mlp, x, lw->ln_2_g, lw->ln_2_b, lw->fc_w, lw->fc_b, T, C, I,
                          FGI_ACT_GELU));
    return linear_residual(fn, r, x, r->mlp, lw->mlp_proj_w, lw->mlp_proj_b, T, I, C);
}

/* Public layer, block and forward ---------------------------------------------- */

extern "C" fg_status fg_cuda_attention_layer(float *out, const float *x, int T,
                                             fg_cuda_runner *runner, fg_cuda_kv_cache *cache,
                                             int layer)
{
    static const char fn[] = "fg_cuda_attention_layer";
    FGI_TRY(check_layer_call(fn, out, x, T, runner, cache, layer));
    /* its x and out are fp32: the 16-bit layer takes and gives dtype rows */
    if (runner->w->dtype != FG_DTYPE_F32)
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: the runner's weights hold %s; this function "
                       "serves fp32 weights only", fn, fg_dtype_name(runner->w->dtype));
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_TRY(ensure_attention_workspace(fn, runner, cache->capacity));
    const int L = cache->len[layer];
    FGI_TRY(attention_sublayer(fn, runner, cache, layer, L, T, x, out, 1, NULL));
    cache->len[layer] = L + T;
    return FG_OK;
}

extern "C" fg_status fg_cuda_block(float *x, int T, fg_cuda_runner *runner,
                                   fg_cuda_kv_cache *cache, int layer)
{
    static const char fn[] = "fg_cuda_block";
    FGI_TRY(check_layer_call(fn, x, x, T, runner, cache, layer));
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_TRY(ensure_attention_workspace(fn, runner, cache->capacity));
    const layer_weights *lw = &runner->w->layers[layer];
    const int L = cache->len[layer];
    if (fused_rows(runner, T)) {
        FGI_TRY(layer_forward_fused(fn, runner, cache, layer, L, T, x, NULL));
        cache->len[layer] = L + T;
        return FG_OK;
    }
    FGI_TRY(norm_rows(fn, runner, runner->h, x, NULL, NULL, lw->ln_1_g, lw->ln_1_b, T));
    FGI_TRY(layer_forward(fn, runner, cache, layer, L, T, x, NULL, NULL, NULL));
    cache->len[layer] = L + T;
    return FG_OK;
}

/* fg_cuda_block op by op, each output handed to probe (cuda_api.h). */
extern "C" fg_status fg_cuda_block_probe(float *x, int T, fg_cuda_runner *runner,
                                         fg_cuda_kv_cache *cache, int layer,
                                         fg_cuda_probe_fn probe, void *user)
{
    static const char fn[] = "fg_cuda_block_probe";
    if (probe == NULL) return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'probe' is NULL", fn);
    FGI_TRY(check_layer_call(fn, x, x, T, runner, cache, layer));
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_TRY(ensure_attention_workspace(fn, runner, cache->capacity));
    const layer_weights *lw = &runner->w->layers[layer];
    const int L = cache->len[layer];
    runner->probe = probe;
    runner->probe_user = user;
    fg_status st = norm_rows(fn, runner, runner->h, x, NULL, NULL, lw->ln_1_g, lw->ln_1_b, T);
    if (st == FG_OK)
        st = probe_point(fn, runner, "attn_norm", runner->h, 0, T, runner->w->cfg.n_embd,
                         runner->w->cfg.n_embd);
    if (st == FG_OK) st = layer_forward(fn, runner, cache, layer, L, T, x, NULL, NULL, NULL);
    runner->probe = NULL;
    runner->probe_user = NULL;
    FGI_TRY(st);
    cache->len[layer] = L + T;
    return FG_OK;
}

namespace {

/* x (T, C) = wte[ids] + wpe[pos0 + t] (wpe may be NULL); pos_dev, when set,
 * holds pos0 in device memory. */
template <typename E>
__global__ void embed_kernel(float *x, const int *ids, const E *wte, const E *wpe,
                             int T, int C, int pos0, const int *pos_dev)
{
    const long long total = (long long)T * C;
    const int p0 = pos_dev != nullptr ? *pos_dev : pos0;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const long long t = e / C, i = e % C;
        const float tok = fgi_elem<E>::to_float(wte[(long long)ids[t] * C + i]);
        x[e] = tok + (wpe ? fgi_elem<E>::to_float(wpe[(p0 + t) * C + i]) : 0.0f);
    }
}

} // namespace

/* Enqueues the device work of a forward over T tokens at position L, logits
 * for the last logit_rows rows into r->logits: token ids from ids_dev. With
 * a device step record (T = 1, a graph capture) the token is step[0] and
 * the position step[1]; L is then ignored. */
static fg_status enqueue_forward(const char *fn, fg_cuda_runner *r, fg_cuda_kv_cache *cache,
                                 const int *ids_dev, int L, int T, int logit_rows,
                                 const int *step)
{
    const fg_config *c = &r->w->cfg;
    const int C = c->n_embd, V = c->vocab_size;
    const int threads = 256;
    FGI_TRY(fgi_with_dtype(fn, r->w->dtype, [&](auto tag) {
        using E = decltype(tag);
        embed_kernel<E><<<fgi_grid_blocks((long long)T * C, threads), threads, 0, r->stream>>>(
            r->x, step != NULL ? step : ids_dev, static_cast<const E *>(r->w->wte),
            static_cast<const E *>(r->w->wpe), T, C, L, step != NULL ? step + 1 : NULL);
        FGI_CUDA_LAUNCHED(fn, "embed_kernel");
        return FG_OK;
    }));
    if (fused_rows(r, T)) {
        for (int l = 0; l < c->n_layer; l++)
            FGI_TRY(layer_forward_fused(fn, r, cache, l, L, T, r->x, step));
        if (C <= FGI_GEMV_T_MAX_IN) { /* the classifier with ln_f in its prologue */
            const fgi_gemv_norm n = gemv_norm(r, r->x, r->w->ln_f_g, r->w->ln_f_b);
            return fgi_cuda_gemv_t_normed(fn, r->w->dtype, &r->lin, r->logits, &n,
                                          r->w->classifier, NULL, C, V, r->stream);
        }
        /* wider than the GEMV's shared row: cuBLASLt reads h = ln_f(x) */
        FGI_TRY(norm_rows(fn, r, r->h, r->x, NULL, NULL, r->w->ln_f_g, r->w->ln_f_b, T));
    } else {
        FGI_TRY(norm_rows(fn, r, r->h, r->x, NULL, NULL, r->w->layers[0].ln_1_g,
                         r->w->layers[0].ln_1_b, T));
    }
    for (int l = 0; !fused_rows(r, T) && l < c->n_layer; l++) {
        const int last = l + 1 == c->n_layer;
        const void *next_g = last ? r->w->ln_f_g : r->w->layers[l + 1].ln_1_g;
        const void *next_b = last ? r->w->ln_f_b : r->w->layers[l + 1].ln_1_b;
        FGI_TRY(layer_forward(fn, r, cache, l, L, T, r->x, next_g, next_b, step));
    }
    /* every row of r->h is ln_f(x); only the last logit_rows go to the classifier */
    const void *last = static_cast<const char *>(r->h) + (size_t)(T - logit_rows) * C * r->w->es;
    if (r->w->dtype == FG_DTYPE_F32)
        return fgi_cuda_linear_layer(fn, &r->lin, r->logits, static_cast<const float *>(last),
                                     static_cast<const float *>(r->w->classifier), NULL,
                                     logit_rows, C, V, 1, FGI_ACT_NONE, r->stream);
    /* the logits stay fp32: cuBLASLt's fp32 output */
    return fgi_cuda_linear_layer_f32out(fn, r->w->dtype, &r->lin, r->logits, last,
                                        r->w->classifier, logit_rows, C, V, 1, r->stream);
}

/* Runs the whole forward for validated arguments, with logits for the last
 * logit_rows tokens (T or 1), and waits for it. */
static fg_status forward(const char *fn, float *logits, float *probs, int logit_rows,
                         fg_cuda_runner *r, fg_cuda_kv_cache *cache, const int *ids, int T)
{
    const size_t logit_bytes = sizeof(float) * (size_t)logit_rows * (size_t)r->w->cfg.vocab_size;
    FGI_CUDA_TRY(fn, cudaMemcpyAsync(r->ids, ids, sizeof(int) * (size_t)T,
                                    cudaMemcpyHostToDevice, r->stream));
    FGI_TRY(enqueue_forward(fn, r, cache, r->ids, cache->len[0], T, logit_rows, NULL));
    if (logits != NULL) /* NULL: they stay on the device (fg_cuda_forward_last_on_device) */
        FGI_CUDA_TRY(fn, cudaMemcpyAsync(logits, r->logits, logit_bytes,
                                        cudaMemcpyDeviceToHost, r->stream));
    if (probs != NULL) {
        FGI_TRY(fgi_cuda_softmax(fn, r->logits, r->logits, logit_rows, r->w->cfg.vocab_size, 1,
                                r->stream));
        FGI_CUDA_TRY(fn, cudaMemcpyAsync(probs, r->logits, logit_bytes,
                                        cudaMemcpyDeviceToHost, r->stream));
    }
    return fgi_cuda_sync_timed(fn, r->stream, &r->wait_ns);
}

/* Decode-step graphs ---------------------------------------------------------------
 *
 * A runner keeps one captured step per cache it has stepped, in a small
 * table keyed by the cache's id, so caches taking turns on one runner each
 * replay their own graph instead of recapturing at every switch. A graph
 * bakes in the runner's buffers, the attention workspace and the cache's
 * k/v addresses and capacity; it stays valid while all of them do:
 *  - the runner's buffers live as long as its graphs (destroyed together);
 *  - a new attention workspace drops every graph (drop_graphs);
 *  - a destroyed cache's id is never handed out again, so its graph can
 *    never be matched, hence never replayed; its slot is reused (least
 *    recently used first) or freed with the runner. The cache itself knows
 *    nothing of the runners that stepped it. */

/* The slot of this cache's graph, or NULL. */
static graph_slot *find_graph(fg_cuda_runner *r, const fg_cuda_kv_cache *cache)
{
    for (int i = 0; i < GRAPH_SLOTS; i++)
        if (r->graphs[i].cache_id == cache->id) return &r->graphs[i];
    return NULL;
}

/* An empty slot, else the least recently used one, emptied. */
static graph_slot *free_graph_slot(fg_cuda_runner *r)
{
    graph_slot *oldest = &r->graphs[0];
    for (int i = 0; i < GRAPH_SLOTS; i++) {
        if (r->graphs[i].cache_id == 0) return &r->graphs[i];
        if (r->graphs[i].last_used < oldest->last_used) oldest = &r->graphs[i];
    }
    if (oldest->exec != NULL) cudaGraphExecDestroy(oldest->exec);
    memset(oldest, 0, sizeof *oldest);
    return oldest;
}

/* Captures the one-token step of (r, cache) into *exec, on the runner's
 * private capture stream (graph_capture.cuh; the graph is launched on
 * r->stream). A failure (a kernel that cannot read its key count from the
 * device, a library that refuses capture) leaves no graph; the caller then
 * runs the step uncaptured. */
static fg_status capture_step(const char *fn, fg_cuda_runner *r, fg_cuda_kv_cache *cache,
                              cudaGraphExec_t *exec)
{
    FGI_TRY(fgi_capture_graph(fn, &r->capture_stream, &r->stream, r->lin.blas, exec, [&] {
        return enqueue_forward(fn, r, cache, NULL, 0, 1, 1, r->step);
    }));
    r->captures++;
    return FG_OK;
}

/* One decode step through the graph; FG_ERR_UNSUPPORTED (nothing enqueued)
 * when this (runner, cache) cannot be captured. */
static fg_status graph_step(const char *fn, float *logits, fg_cuda_runner *r,
                            fg_cuda_kv_cache *cache, int id)
{
    graph_slot *g = find_graph(r, cache);
    if (g == NULL) {
        g = free_graph_slot(r);
        g->cache_id = cache->id;
        g->unavailable = capture_step(fn, r, cache, &g->exec) != FG_OK;
    }
    g->last_used = ++r->clock;
    if (g->unavailable) return FG_ERR_UNSUPPORTED;
    const int L = cache->len[0];
    const int step[3] = {id, L, L + 1};
    FGI_CUDA_TRY(fn, cudaMemcpyAsync(r->step, step, sizeof step, cudaMemcpyHostToDevice,
                                    r->stream));
    FGI_CUDA_TRY(fn, cudaGraphLaunch(g->exec, r->stream));
    cache->graph_steps++;
    if (logits != NULL)
        FGI_CUDA_TRY(fn, cudaMemcpyAsync(logits, r->logits,
                                        sizeof(float) * (size_t)r->w->cfg.vocab_size,
                                        cudaMemcpyDeviceToHost, r->stream));
    return fgi_cuda_sync_timed(fn, r->stream, &r->wait_ns);
}

/* The forward after its argument checks; logits NULL: they stay in the runner. */
static fg_status run_forward(const char *fn, float *logits, float *probs, int last_only,
                             fg_cuda_runner *runner, fg_cuda_kv_cache *cache, const int *ids,
                             int T)
{
    const int logit_rows = last_only ? 1 : T;
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_TRY(ensure_attention_workspace(fn, runner, cache->capacity));
    fg_status st = FG_ERR_UNSUPPORTED;
    if (last_only && T == 1) st = graph_step(fn, logits, runner, cache, ids[0]);
    if (st == FG_ERR_UNSUPPORTED) st = forward(fn, logits, probs, logit_rows, runner, cache, ids, T);
    FGI_TRY(st);
    for (int l = 0; l < cache->n_layer; l++) cache->len[l] += T;
    return FG_OK;
}

/* Argument errors are found before anything is enqueued and change nothing.
 * A CUDA failure part-way leaves the token counts unchanged, but logits may
 * have been partly written by then. */
static fg_status checked_forward(const char *fn, float *logits, float *probs,
                                 int last_only, fg_cuda_runner *runner,
                                 fg_cuda_kv_cache *cache, const int *ids, int T)
{
    const int logit_rows = last_only ? 1 : T;
    FGI_TRY(check_forward(fn, logits, probs, logit_rows, runner, cache, ids, T));
    return run_forward(fn, logits, probs, last_only, runner, cache, ids, T);
}

extern "C" fg_status fg_cuda_forward(float *logits, float *probs, fg_cuda_runner *runner,
                                     fg_cuda_kv_cache *cache, const int *ids, int T)
{
    return checked_forward("fg_cuda_forward", logits, probs, 0, runner, cache, ids, T);
}

/* Only the last token's logits (vocab): the classifier GEMM and the copy
 * back shrink from T rows to one, which is what generation needs. */
extern "C" fg_status fg_cuda_forward_last(float *logits, fg_cuda_runner *runner,
                                          fg_cuda_kv_cache *cache, const int *ids, int T)
{
    return checked_forward("fg_cuda_forward_last", logits, NULL, 1, runner, cache, ids, T);
}

/* The last token's logits left in the runner (no copy to the host): what a
 * decode loop that samples on the GPU needs. */
extern "C" fg_status fg_cuda_forward_last_on_device(const float **logits_dev,
                                                    fg_cuda_runner *runner,
                                                    fg_cuda_kv_cache *cache, const int *ids,
                                                    int T)
{
    static const char fn[] = "fg_cuda_forward_last_on_device";
    FGI_TRY(fgi_check_ptr(fn, "logits_dev", logits_dev));
    FGI_TRY(fgi_check_ptr(fn, "runner", runner));
    /* the runner's own buffer stands in for the host logits in the checks */
    FGI_TRY(check_forward(fn, runner->logits, NULL, 1, runner, cache, ids, T));
    FGI_TRY(run_forward(fn, NULL, NULL, 1, runner, cache, ids, T));
    *logits_dev = runner->logits;
    return FG_OK;
}

extern "C" long long fg_cuda_runner_wait_ns(const fg_cuda_runner *runner)
{
    return runner ? runner->wait_ns : 0;
}
