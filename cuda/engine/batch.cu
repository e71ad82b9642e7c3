/* The batched forward on the GPU over the paged KV cache (issue 15,
 * docs/contract.md §21a), in fp32, bf16 or f16: the new tokens of many
 * sequences (one decode row each, or a prompt chunk) advance together, for
 * the continuous-batching scheduler.
 *
 * Conventions: host/runtime/kv_paged.h (the pool layout and fgi_batch_seq);
 * the device pool is (n_layer, n_blocks, n_kv_head, block_size, head_dim)
 * for k and for v, exactly the host pool's, so the scheduler's block tables
 * are used as they are (the host pool then holds only ids and counts).
 * 16-bit: weights (fg_cuda_weights' upload), pool and activations in the
 * type, residual stream, norm statistics, softmax and logits in fp32, as
 * the single-sequence 16-bit decoder (see "The 16-bit path" below).
 * From a model (fgi_cuda_batch_create_model) every dtype takes the
 * decoder's upload straight from the checkpoint mapping, fp32 included
 * (then Llama's gate|up is the fused [w1 | w3]): no fp32 host copy.
 *
 * Design: one step uploads every int it needs (ids, positions, key counts,
 * logit rows, one block table per row) in one copy. Every linear layer is
 * one pass of cuBLAS SGEMMs over all rows; a small kernel adds the q|k|v
 * bias, rotates q and k (angles in double, as cuda/ops/rope.cu) and writes
 * each row's k and v into its sequence's block; decode rows are queries of
 * the batched paged decode kernel (fgi_cuda_decode_attention) with key
 * count position + 1, which is the causal mask, and each sequence's prompt
 * chunks all go to one launch of the paged prefill kernel (prefill_segments;
 * where no prefill kernel serves the model, its rows go to the decode
 * kernel too). Batch invariance by construction:
 *  - GEMMs always run as tiles of exactly kRowTile rows (the last one padded),
 *    so cuBLAS sees one shape (kRowTile, out, in) per layer whatever the batch:
 *    its kernel choice and each row's sum order are fixed; a row's result
 *    depends on its own input only. (cuBLAS may choose kernels by m: a GEMM
 *    over all rows at once would make a row's bits depend on the batch.)
 *  - the decode kernel's split plan depends on the shape and the table
 *    capacity (max_blocks * block_size, fixed at creation) only, and each
 *    row's splits on its own key count (attention_decode_batch.cu); the
 *    paged prefill walks a row's key tiles from a multiple of the tile
 *    whatever the chunk (attention_mma16.cu's header);
 *  - norms, embedding, activations are per row.
 * So a sequence's logits are the same bits alone, among any others, in any
 * slot, and however its prompt was chunked.
 * Decode steps (every sequence one token): the device work reads only the
 * step's ints, at fixed addresses, so it is captured once per row count as
 * a CUDA graph and replayed (the same kernels: the same bits). */
#include "attention_internal.h"
#include "batch_internal.h"
#include "config_internal.h"
#include "cuda_common.cuh"
#include "decoder_internal.h"
#include "dtype.cuh"
#include "graph_capture.cuh"
#include "ops_internal.h"
#include "reduce.cuh"
#include "rope.cuh"

#include "../../host/runtime/kv_paged.h"
#include "flashgpt/loader.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

namespace {

/* Rows of every GEMM launch (see the header). 32 keeps the padding of a
 * decode-only step of a few sequences small and tiles aligned. */
constexpr int kRowTile = 32;
/* The step's ints before its block tables, in units of padded_rows: ids,
 * pos, kv_lens, logit rows, then the prompt segments (3 ints each). */
constexpr int kIntsBeforeTables = 7;
constexpr int kSegmentsAt = 4;

/* Decode-step graphs kept: one per batch shape (the number of decode
 * rows), as many shapes as a server's batch moves through in a while; past
 * that the least recently used one is replaced. */
constexpr int kGraphSlots = 16;

} // namespace

/* One captured decode step of `rows` sequences (0: empty slot). */
typedef struct {
    int rows;
    cudaGraphExec_t exec; /* NULL when capture failed: that shape runs uncaptured */
    unsigned long long last_used;
} batch_graph;

/* Device pointers of one layer's weights (NULL where the host had NULL). */
typedef struct {
    const float *ln_1_g, *ln_1_b, *c_attn_w, *c_attn_b, *c_proj_w, *c_proj_b;
    const float *ln_2_g, *ln_2_b, *fc_w, *up_w, *fc_b, *mlp_proj_w, *mlp_proj_b;
} batch_layer;

struct fgi_cuda_batch {
    fg_config cfg;
    fg_dtype dtype;         /* of weights, pool and activations but x and logits */
    size_t es;              /* its size in bytes */
    fg_cuda_weights *w16;   /* the decoder's upload (fused gate|up): 16-bit, or fp32 from a
                               model; NULL for fp32 host weights (own upload) */
    int fused_up;           /* fp32 Llama from the decoder's upload: fc_w is [w1 | w3] */
    fgi_cuda_model_tensors m16;
    fgi_cuda_layer_tensors *l16; /* host array of n_layer (16-bit) */
    int head_dim, qkv_width, max_tokens, max_rows, padded_rows, max_blocks;
    int n_blocks, block_size;
    size_t head_stride, block_stride, layer_stride;
    cudaStream_t stream;
    fgi_linear_ctx lin;     /* cuBLAS only (no GEMV workspace: one GEMM shape) */
    void **allocs;          /* every device allocation, freed at destroy */
    int n_allocs, cap_allocs;
    batch_layer *layers;    /* host array of n_layer */
    const float *wte, *wpe, *ln_f_g, *ln_f_b, *classifier;
    const double *rope_inv_freq;
    float *k_pool, *v_pool; /* (n_layer, n_blocks, n_kv_head, block_size, head_dim) of dtype */
    /* padded rows, each buffer sized for fp32 elements (so any dtype
     * fits); in 16-bit x and logits stay fp32, h, delta, qkv, q, att and
     * logits_src hold dtype, mlp is Llama's fp32 gate|up (2 n_inner wide)
     * or GPT-2's dtype c_fc output, up the SwiGLU product (dtype) */
    float *x, *h, *delta, *qkv, *q, *att, *mlp, *up, *logits_src, *logits;
    int *ints_dev;          /* ids | pos | kv_lens | logit rows | segments | tables, as ints_host */
    int *ints_host;
    size_t ints_count;
    /* Rows of a step: the n_decode decode-kernel rows first, then the
     * prompt chunks, one segment of seg_len rows from row seg_row at
     * position seg_start per sequence (the paged prefill kernel; see
     * fgi_batch_seq.n_prompt). prefill: whether the kernel serves this
     * model (16-bit: always; fp32: the mma kernel's head dims). */
    int prefill, n_decode, n_segs;
    int *seg_row, *seg_len, *seg_start; /* (max_rows) each, host */
    void *decode_ws;
    size_t decode_ws_bytes;
    cudaStream_t capture_stream; /* private: the legacy stream 0 cannot be captured */
    batch_graph graphs[kGraphSlots];
    unsigned long long clock;    /* graph uses, for least-recently-used replacement */
    long long graph_steps;       /* steps replayed from a graph (test hook) */
};

static fg_status dev_alloc(const char *fn, fgi_cuda_batch *b, void **p, size_t bytes,
                           const char *what)
{
    *p = NULL;
    if (b->n_allocs == b->cap_allocs) {
        const int cap = b->cap_allocs ? 2 * b->cap_allocs : 64;
        void **grown = (void **)realloc(b->allocs, sizeof(void *) * (size_t)cap);
        if (grown == NULL) return fgi_fail(FG_ERR_OOM, "%s: out of host memory", fn);
        b->allocs = grown;
        b->cap_allocs = cap;
    }
    cudaError_t err = cudaMalloc(p, bytes < 256 ? 256 : bytes);
    if (err != cudaSuccess) {
        *p = NULL;
        (void)cudaGetLastError();
        return fgi_fail(err == cudaErrorMemoryAllocation ? FG_ERR_OOM : FG_ERR_CUDA,
                       "%s: allocating %zu bytes of device memory for %s failed: %s", fn,
                       bytes, what, cudaGetErrorString(err));
    }
    b->allocs[b->n_allocs++] = *p;
    FGI_CUDA_TRY(fn, cudaMemset(*p, 0, bytes < 256 ? 256 : bytes));
    return FG_OK;
}

static fg_status upload(const char *fn, fgi_cuda_batch *b, const float **dst, const float *src,
                        size_t n)
{
    void *p;
    *dst = NULL;
    if (src == NULL) return FG_OK;
    FGI_TRY(dev_alloc(fn, b, &p, sizeof(float) * n, "a weight"));
    FGI_CUDA_TRY(fn, cudaMemcpy(p, src, sizeof(float) * n, cudaMemcpyHostToDevice));
    *dst = (const float *)p;
    return FG_OK;
}

static fg_status rows_buffer(const char *fn, fgi_cuda_batch *b, float **dst, long long cols,
                             const char *what)
{
    size_t n;
    FGI_TRY(fgi_check_elems(fn, what, &n, 2, (long long)b->padded_rows, cols));
    return dev_alloc(fn, b, (void **)dst, sizeof(float) * n, what);
}

extern "C" void fgi_cuda_batch_destroy(fgi_cuda_batch *b)
{
    if (b == NULL) return;
    for (int i = 0; i < kGraphSlots; i++)
        if (b->graphs[i].exec != NULL) cudaGraphExecDestroy(b->graphs[i].exec);
    if (b->capture_stream) cudaStreamDestroy(b->capture_stream);
    if (b->lin.blas) cublasDestroy(b->lin.blas);
    if (b->lin.blaslt) cublasLtDestroy(b->lin.blaslt);
    fg_cuda_weights_destroy(b->w16);
    free(b->l16);
    for (int i = 0; i < b->n_allocs; i++) cudaFree(b->allocs[i]);
    (void)cudaGetLastError();
    free(b->allocs);
    free(b->layers);
    free(b->ints_host);
    free(b->seg_row), free(b->seg_len), free(b->seg_start);
    free(b);
}

static fg_status batch_buffers(const char *fn, fgi_cuda_batch *b, const fgi_kv_pool *pool);

/* Weights from w (fp32 host) or, when model is not NULL, from its
 * checkpoint mapping through the decoder's upload. */
static fg_status batch_init(const char *fn, fgi_cuda_batch *b, const fg_weights *w,
                            const fg_model *model, const fgi_kv_pool *pool)
{
    const fg_config *c = &b->cfg;
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner, V = (size_t)c->vocab_size;
    const size_t W = (size_t)b->qkv_width, A = (size_t)c->n_head * b->head_dim;
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_TRY(fgi_cuda_blas_create(fn, &b->lin.blas, b->stream));
    FGI_TRY(fgi_alloc(fn, (void **)&b->layers, (size_t)c->n_layer, sizeof(batch_layer)));
    if (b->dtype != FG_DTYPE_F32 || model != NULL) {
        if (b->dtype != FG_DTYPE_F32) FGI_CUBLAS_TRY(fn, cublasLtCreate(&b->lin.blaslt));
        if (model != NULL) FGI_TRY(fg_cuda_weights_create_model(&b->w16, model, b->dtype));
        else FGI_TRY(fg_cuda_weights_create_typed(&b->w16, c, w, b->dtype));
        FGI_TRY(fgi_alloc(fn, (void **)&b->l16, (size_t)c->n_layer, sizeof *b->l16));
        fgi_cuda_weights_tensors(b->w16, &b->m16);
        for (int l = 0; l < c->n_layer; l++) fgi_cuda_weights_layer_tensors(b->w16, l, &b->l16[l]);
        b->rope_inv_freq = b->m16.rope_inv_freq;
        if (b->dtype == FG_DTYPE_F32) {
            /* the fp32 forward reads the decoder's tensors (fp32 there too) */
            b->wte = static_cast<const float *>(b->m16.wte);
            b->wpe = static_cast<const float *>(b->m16.wpe);
            b->ln_f_g = static_cast<const float *>(b->m16.ln_f_g);
            b->ln_f_b = static_cast<const float *>(b->m16.ln_f_b);
            b->classifier = static_cast<const float *>(b->m16.classifier);
            b->fused_up = c->arch == FG_ARCH_LLAMA;
            for (int l = 0; l < c->n_layer; l++) {
                const fgi_cuda_layer_tensors *s = &b->l16[l];
                batch_layer *d = &b->layers[l];
                d->ln_1_g = static_cast<const float *>(s->ln_1_g);
                d->ln_1_b = static_cast<const float *>(s->ln_1_b);
                d->c_attn_w = static_cast<const float *>(s->c_attn_w);
                d->c_attn_b = static_cast<const float *>(s->c_attn_b);
                d->c_proj_w = static_cast<const float *>(s->c_proj_w);
                d->c_proj_b = static_cast<const float *>(s->c_proj_b);
                d->ln_2_g = static_cast<const float *>(s->ln_2_g);
                d->ln_2_b = static_cast<const float *>(s->ln_2_b);
                d->fc_w = static_cast<const float *>(s->fc_w);
                d->up_w = NULL; /* the second half of fc_w */
                d->fc_b = static_cast<const float *>(s->fc_b);
                d->mlp_proj_w = static_cast<const float *>(s->mlp_proj_w);
                d->mlp_proj_b = static_cast<const float *>(s->mlp_proj_b);
            }
        }
        return batch_buffers(fn, b, pool);
    }
    FGI_TRY(upload(fn, b, &b->wte, w->wte, V * C));
    FGI_TRY(upload(fn, b, &b->wpe, w->wpe, (size_t)c->n_ctx * C));
    FGI_TRY(upload(fn, b, &b->ln_f_g, w->ln_f_g, C));
    FGI_TRY(upload(fn, b, &b->ln_f_b, w->ln_f_b, C));
    FGI_TRY(upload(fn, b, &b->classifier, w->lm_head, V * C));
    if (w->lm_head == NULL) b->classifier = b->wte;
    b->rope_inv_freq = NULL;
    if (c->use_rope && c->rope_scaling != FG_ROPE_DEFAULT) {
        const int half = b->head_dim / 2;
        double *table;
        void *p;
        FGI_TRY(fgi_alloc(fn, (void **)&table, (size_t)half, sizeof(double)));
        for (int j = 0; j < half; j++) table[j] = fg_config_rope_inv_freq(c, j);
        fg_status st = dev_alloc(fn, b, &p, sizeof(double) * (size_t)half, "RoPE frequencies");
        if (st == FG_OK && cudaMemcpy(p, table, sizeof(double) * (size_t)half,
                                      cudaMemcpyHostToDevice) != cudaSuccess) {
            (void)cudaGetLastError();
            st = fgi_fail(FG_ERR_CUDA, "%s: uploading the RoPE frequencies failed", fn);
        }
        free(table);
        FGI_TRY(st);
        b->rope_inv_freq = (const double *)p;
    }
    for (int l = 0; l < c->n_layer; l++) {
        const fg_layer_weights *s = &w->layers[l];
        batch_layer *d = &b->layers[l];
        FGI_TRY(upload(fn, b, &d->ln_1_g, s->ln_1_g, C));
        FGI_TRY(upload(fn, b, &d->ln_1_b, s->ln_1_b, C));
        FGI_TRY(upload(fn, b, &d->c_attn_w, s->c_attn_w, C * W));
        FGI_TRY(upload(fn, b, &d->c_attn_b, s->c_attn_b, W));
        FGI_TRY(upload(fn, b, &d->c_proj_w, s->c_proj_w, A * C));
        FGI_TRY(upload(fn, b, &d->c_proj_b, s->c_proj_b, C));
        FGI_TRY(upload(fn, b, &d->ln_2_g, s->ln_2_g, C));
        FGI_TRY(upload(fn, b, &d->ln_2_b, s->ln_2_b, C));
        FGI_TRY(upload(fn, b, &d->fc_w, s->fc_w, C * I));
        FGI_TRY(upload(fn, b, &d->up_w, c->arch == FG_ARCH_LLAMA ? s->up_w : NULL, C * I));
        FGI_TRY(upload(fn, b, &d->fc_b, s->fc_b, I));
        FGI_TRY(upload(fn, b, &d->mlp_proj_w, s->mlp_proj_w, I * C));
        FGI_TRY(upload(fn, b, &d->mlp_proj_b, s->mlp_proj_b, C));
    }
    return batch_buffers(fn, b, pool);
}

/* The device pool, the activation rows, the step ints and the attention
 * workspace (every dtype). */
static fg_status batch_buffers(const char *fn, fgi_cuda_batch *b, const fgi_kv_pool *pool)
{
    const fg_config *c = &b->cfg;
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner, V = (size_t)c->vocab_size;
    const size_t W = (size_t)b->qkv_width, A = (size_t)c->n_head * b->head_dim;
    /* gate|up in one GEMM (2 n_inner wide): 16-bit, or fp32 from the decoder's upload */
    const int llama16 = c->arch == FG_ARCH_LLAMA && (b->dtype != FG_DTYPE_F32 || b->fused_up);
    size_t pool_floats;
    FGI_TRY(fgi_check_elems(fn, "the KV pool (n_layer*n_blocks*block floats)", &pool_floats, 2,
                           (long long)c->n_layer, (long long)pool->layer_stride));
    FGI_TRY(dev_alloc(fn, b, (void **)&b->k_pool, b->es * pool_floats, "the key pool"));
    FGI_TRY(dev_alloc(fn, b, (void **)&b->v_pool, b->es * pool_floats, "the value pool"));
    FGI_TRY(rows_buffer(fn, b, &b->x, (long long)C, "activations x"));
    FGI_TRY(rows_buffer(fn, b, &b->h, (long long)C, "activations h"));
    FGI_TRY(rows_buffer(fn, b, &b->delta, (long long)C, "activations delta"));
    FGI_TRY(rows_buffer(fn, b, &b->qkv, (long long)W, "q|k|v"));
    FGI_TRY(rows_buffer(fn, b, &b->q, (long long)A, "packed queries"));
    FGI_TRY(rows_buffer(fn, b, &b->att, (long long)A, "attention output"));
    FGI_TRY(rows_buffer(fn, b, &b->mlp, (llama16 ? 2 : 1) * (long long)I, "MLP activations"));
    FGI_TRY(rows_buffer(fn, b, &b->up, c->arch == FG_ARCH_LLAMA ? (long long)I : 1, "MLP up"));
    FGI_TRY(rows_buffer(fn, b, &b->logits_src, (long long)C, "classifier input"));
    FGI_TRY(rows_buffer(fn, b, &b->logits, (long long)V, "logits"));
    size_t tables;
    FGI_TRY(fgi_check_elems(fn, "block tables (rows*max_blocks)", &tables, 2,
                           (long long)b->padded_rows, (long long)b->max_blocks));
    b->ints_count = kIntsBeforeTables * (size_t)b->padded_rows + tables;
    FGI_TRY(fgi_alloc(fn, (void **)&b->ints_host, b->ints_count, sizeof(int)));
    FGI_TRY(dev_alloc(fn, b, (void **)&b->ints_dev, sizeof(int) * b->ints_count, "step ints"));
    FGI_TRY(fgi_alloc(fn, (void **)&b->seg_row, (size_t)b->padded_rows, sizeof(int)));
    FGI_TRY(fgi_alloc(fn, (void **)&b->seg_len, (size_t)b->padded_rows, sizeof(int)));
    FGI_TRY(fgi_alloc(fn, (void **)&b->seg_start, (size_t)b->padded_rows, sizeof(int)));
    fgi_decode_args da;
    memset(&da, 0, sizeof da);
    da.dtype = b->dtype;
    da.out = b->att;
    da.q = b->q;
    da.k_cache = b->k_pool;
    da.v_cache = b->v_pool;
    da.kv_lens = b->ints_dev;
    da.batch = b->padded_rows;
    da.n_q_head = c->n_head;
    da.n_kv_head = c->n_kv_head;
    da.head_dim = b->head_dim;
    da.block_tables = b->ints_dev;
    da.n_blocks = b->n_blocks;
    da.block_size = b->block_size;
    da.max_blocks = b->max_blocks;
    da.capacity = b->max_blocks * b->block_size;
    b->decode_ws_bytes = fgi_cuda_decode_workspace_bytes(&da);
    if (b->decode_ws_bytes > 0)
        FGI_TRY(dev_alloc(fn, b, &b->decode_ws, b->decode_ws_bytes, "the attention workspace"));
    return FG_OK;
}

extern "C" fg_status fgi_cuda_batch_create(const char *fn, fgi_cuda_batch **batch,
                                           const fg_config *cfg, const fg_weights *w,
                                           const fgi_kv_pool *pool, int max_tokens,
                                           int max_rows)
{
    return fgi_cuda_batch_create_typed(fn, batch, cfg, w, pool, max_tokens, max_rows,
                                       FG_DTYPE_F32);
}

/* fgi_cuda_batch_create_typed, the weights from w or (model not NULL) from
 * the model's mapping. */
static fg_status batch_create(const char *fn, fgi_cuda_batch **batch, const fg_config *cfg,
                              const fg_weights *w, const fg_model *model,
                              const fgi_kv_pool *pool, int max_tokens, int max_rows,
                              fg_dtype dtype)
{
    FGI_TRY(fgi_check_ptr(fn, "batch", batch));
    *batch = NULL;
    if (dtype != FG_DTYPE_F32 && dtype != FG_DTYPE_BF16 && dtype != FG_DTYPE_F16)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: dtype %d is not f32, bf16 or f16", fn,
                       (int)dtype);
    FGI_TRY(fgi_check_ptr(fn, "pool", pool));
    FGI_TRY(fgi_check_config(fn, cfg));
    if (model == NULL) FGI_TRY(fgi_check_weights(fn, cfg, w));
    FGI_TRY(fgi_check_min(fn, "max_rows", max_rows, 1));
    FGI_TRY(fgi_check_min(fn, "max_tokens", max_tokens, 1));
    if (pool->block_size % 16 != 0)
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: the CUDA path reads KV blocks of a multiple of 16 tokens (block_size %d)",
                       fn, pool->block_size);
    const int d = fg_config_head_dim(cfg);
    if (d % 4 != 0 || d > 256)
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: the CUDA batched forward needs head_dim a multiple of 4 up to 256 "
                       "(the fp32 decode kernel's; got %d)",
                       fn, d);
    if (dtype != FG_DTYPE_F32 && !fg_cuda_decoder_dtype_supported(cfg, dtype))
        return fgi_fail(FG_ERR_UNSUPPORTED,
                       "%s: dtype %s cannot run here: it needs a GPU of compute capability 8.0 "
                       "or later and a head_dim of 32, 64, 80, 96, 128 or 256 (this model: %d)",
                       fn, fg_dtype_name(dtype), d);
    if (pool->n_layer != cfg->n_layer || pool->n_kv_head != cfg->n_kv_head ||
        pool->head_dim != fg_config_head_dim(cfg))
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the pool's shape is not the model's", fn);
    if (max_rows > (1 << 20))
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: max_rows %d is too large (at most %d)", fn,
                       max_rows, 1 << 20);
    fgi_cuda_batch *b;
    FGI_TRY(fgi_alloc(fn, (void **)&b, 1, sizeof *b));
    b->cfg = *cfg;
    b->dtype = dtype;
    b->es = fg_dtype_size(dtype);
    b->head_dim = fg_config_head_dim(cfg);
    b->qkv_width = fg_config_qkv_width(cfg);
    b->max_tokens = max_tokens;
    b->max_rows = max_rows;
    b->padded_rows = (max_rows + kRowTile - 1) / kRowTile * kRowTile;
    b->block_size = pool->block_size;
    b->n_blocks = pool->n_blocks;
    b->max_blocks = (max_tokens + pool->block_size - 1) / pool->block_size;
    b->head_stride = pool->head_stride;
    b->block_stride = pool->block_stride;
    b->layer_stride = pool->layer_stride;
    b->stream = 0;
    /* the fp32 paged prefill is the mma kernel: head_dim 32, 64, 80, 96, 128 */
    b->prefill = dtype != FG_DTYPE_F32 || d == 32 || d == 64 || d == 80 || d == 96 || d == 128;
    fg_status st = batch_init(fn, b, w, model, pool);
    if (st != FG_OK) {
        fgi_cuda_batch_destroy(b);
        return st;
    }
    *batch = b;
    return FG_OK;
}

extern "C" fg_status fgi_cuda_batch_create_typed(const char *fn, fgi_cuda_batch **batch,
                                                 const fg_config *cfg, const fg_weights *w,
                                                 const fgi_kv_pool *pool, int max_tokens,
                                                 int max_rows, fg_dtype dtype)
{
    return batch_create(fn, batch, cfg, w, NULL, pool, max_tokens, max_rows, dtype);
}

extern "C" fg_status fgi_cuda_batch_create_model(const char *fn, fgi_cuda_batch **batch,
                                                 const fg_model *model,
                                                 const fgi_kv_pool *pool, int max_tokens,
                                                 int max_rows, fg_dtype dtype)
{
    FGI_TRY(fgi_check_ptr(fn, "batch", batch));
    *batch = NULL;
    FGI_TRY(fgi_check_ptr(fn, "model", model));
    return batch_create(fn, batch, fg_model_config(model), NULL, model, pool, max_tokens,
                        max_rows, dtype);
}

namespace {

/* x (rows, C) = wte[ids[r]] + wpe[pos[r]] (wpe may be NULL), tables of E,
 * the sum in fp32 (as the decoder's embed_kernel). */
template <typename E>
__global__ void batch_embed_kernel(float *x, const int *ids, const int *pos, const E *wte,
                                   const E *wpe, int rows, int C)
{
    const long long total = (long long)rows * C;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const long long r = e / C, i = e % C;
        const float tok = fgi_elem<E>::to_float(wte[(long long)ids[r] * C + i]);
        x[e] = tok + (wpe ? fgi_elem<E>::to_float(wpe[(long long)pos[r] * C + i]) : 0.0f);
    }
}

/* y (rows, C) = src[idx[r]] (rows of C elements of E). */
template <typename E>
__global__ void gather_rows_kernel(E *y, const E *src, const int *idx, int rows, int C)
{
    const long long total = (long long)rows * C;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const long long r = e / C, i = e % C;
        y[e] = src[(long long)idx[r] * C + i];
    }
}

template <typename E>
struct paged_append_view {
    E *qkv;                /* (rows, [q | k | v]) */
    const E *bias;         /* (qkv width) or NULL */
    E *k_layer, *v_layer;  /* one layer of the pools: (n_blocks, n_kv_head, block_size, d) */
    const int *pos;        /* (rows) */
    const int *tables;     /* (rows, max_blocks) */
    int rows, n_head, n_kv_head, head_dim, block_size, max_blocks;
    long long head_stride, block_stride;
    int use_rope;
    double rope_base;
    const double *rope_inv_freq;
};

/* One thread per (row, head, pair), as cuda/ops/rope.cu's fused kernel,
 * with each row's k and v going to slot pos % block_size of block
 * table[pos / block_size]. 16-bit E: the biased value in fp32, rotated in
 * double, rounded once on store (as fgi_cuda_qkv_rope_append_typed). */
template <typename E>
__global__ void paged_append_kernel(paged_append_view<E> a)
{
    const int heads = a.n_head + 2 * a.n_kv_head, pairs = (a.head_dim + 1) / 2;
    const long long width = (long long)heads * a.head_dim;
    const long long total = (long long)a.rows * heads * pairs;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const int pair = (int)(e % pairs);
        const int head = (int)((e / pairs) % heads);
        const long long t = e / ((long long)pairs * heads);
        const long long col = (long long)head * a.head_dim + 2 * pair;
        const bool has_second = 2 * pair + 1 < a.head_dim;
        E *row = a.qkv + t * width;
        float v0 = fgi_load1(row + col), v1 = has_second ? fgi_load1(row + col + 1) : 0.0f;
        if (a.bias) {
            v0 += fgi_load1(a.bias + col);
            if (has_second) v1 += fgi_load1(a.bias + col + 1);
        }
        const int pos = a.pos[t];
        const bool is_q = head < a.n_head, is_k = !is_q && head < a.n_head + a.n_kv_head;
        if (a.use_rope && (is_q || is_k))
            fgi_rotate_pair(&v0, &v1, pos, pair, a.head_dim, a.rope_base, a.rope_inv_freq);
        E *dst;
        if (is_q) {
            dst = row + col;
        } else {
            const int g = is_k ? head - a.n_head : head - a.n_head - a.n_kv_head;
            const int block = a.tables[t * a.max_blocks + pos / a.block_size];
            dst = (is_k ? a.k_layer : a.v_layer) + (long long)block * a.block_stride +
                  (long long)g * a.head_stride + (long long)(pos % a.block_size) * a.head_dim +
                  2 * pair;
        }
        fgi_store1(dst, v0);
        if (has_second) fgi_store1(dst + 1, v1);
    }
}

} // namespace

/* The attention of the step's prompt segments into b->att, causal from
 * the bottom right (row i of a segment at position seg_start + i sees keys
 * 0 .. seg_start + i) through each sequence's table (its first row's
 * copy), q read straight from q|k|v: one paged prefill launch for all
 * segments (fgi_attention_args.segments, read from the step's ints; the
 * mma16 kernel, or fp32's mma kernel). */
static fg_status prefill_segments(const char *fn, fgi_cuda_batch *b, int layer,
                                  const void *k_layer, const void *v_layer)
{
    if (b->n_segs == 0) return FG_OK;
    const fg_config *c = &b->cfg;
    const int d = b->head_dim;
    fgi_attention_args a;
    memset(&a, 0, sizeof a);
    a.dtype = b->dtype;
    a.out = b->att;
    a.out_head_stride = d;
    a.out_row_stride = c->n_head * d;
    a.q = b->qkv;
    a.q_head_stride = d;
    a.q_row_stride = b->qkv_width;
    a.k = k_layer;
    a.v = v_layer;
    a.kv_head_stride = (long long)b->head_stride;
    a.n_q_head = c->n_head;
    a.n_kv_head = c->n_kv_head;
    a.head_dim = d;
    a.window = fg_config_layer_window(c, layer);
    a.block_table = b->ints_dev + kIntsBeforeTables * b->padded_rows;
    a.kv_block_size = b->block_size;
    a.kv_block_stride = (long long)b->block_stride;
    a.segments = b->ints_dev + kSegmentsAt * b->padded_rows;
    a.n_segments = b->n_segs;
    a.table_stride = b->max_blocks;
    for (int i = 0; i < b->n_segs; i++) { /* the grid's sizes: the largest chunk */
        a.q_len = b->seg_len[i] > a.q_len ? b->seg_len[i] : a.q_len;
        const int kv = b->seg_start[i] + b->seg_len[i];
        a.kv_len = kv > a.kv_len ? kv : a.kv_len;
    }
    return fgi_cuda_attention(fn, &a, NULL, 0, b->stream);
}

/* The attention sublayer between the q|k|v and output projections, in the
 * batch's dtype: the n real rows' k and v (q|k|v bias added, RoPE applied
 * to q and k in place) appended to the layer's pool slices through their
 * tables, then the decode rows' attention (their q packed out of q|k|v as
 * the decode kernel reads it) and the prompt segments', into b->att. */
static fg_status layer_attention(const char *fn, fgi_cuda_batch *b, int layer, int n,
                                 const void *qkv_bias)
{
    const fg_config *c = &b->cfg;
    const size_t es = b->es;
    const int d = b->head_dim, W = b->qkv_width, A = c->n_head * d;
    const int Q = b->padded_rows; /* the step's ints are laid out for the most rows */
    const int *pos = b->ints_dev + Q, *kv_lens = b->ints_dev + 2 * Q,
              *tables = b->ints_dev + kIntsBeforeTables * Q;
    void *k_layer = reinterpret_cast<char *>(b->k_pool) + es * (size_t)layer * b->layer_stride;
    void *v_layer = reinterpret_cast<char *>(b->v_pool) + es * (size_t)layer * b->layer_stride;
    FGI_TRY(fgi_with_dtype(fn, b->dtype, [&](auto tag) {
        using E = decltype(tag);
        paged_append_view<E> v;
        v.qkv = reinterpret_cast<E *>(b->qkv);
        v.bias = static_cast<const E *>(qkv_bias);
        v.k_layer = static_cast<E *>(k_layer);
        v.v_layer = static_cast<E *>(v_layer);
        v.pos = pos;
        v.tables = tables;
        v.rows = n;
        v.n_head = c->n_head;
        v.n_kv_head = c->n_kv_head;
        v.head_dim = d;
        v.block_size = b->block_size;
        v.max_blocks = b->max_blocks;
        v.head_stride = (long long)b->head_stride;
        v.block_stride = (long long)b->block_stride;
        v.use_rope = c->use_rope;
        v.rope_base = c->rope_base;
        v.rope_inv_freq = b->rope_inv_freq;
        const int threads = 256;
        const long long work = (long long)n * (c->n_head + 2 * c->n_kv_head) * ((d + 1) / 2);
        paged_append_kernel<E><<<fgi_grid_blocks(work, threads), threads, 0, b->stream>>>(v);
        FGI_CUDA_LAUNCHED(fn, "paged_append_kernel");
        return FG_OK;
    }));

    const int nd = b->n_decode;
    if (nd > 0) {
        FGI_CUDA_TRY(fn, cudaMemcpy2DAsync(b->q, es * (size_t)A, b->qkv, es * (size_t)W,
                                          es * (size_t)A, (size_t)nd, cudaMemcpyDeviceToDevice,
                                          b->stream));
        fgi_decode_args da;
        memset(&da, 0, sizeof da);
        da.dtype = b->dtype;
        da.out = b->att;
        da.q = b->q;
        da.k_cache = k_layer;
        da.v_cache = v_layer;
        da.kv_lens = kv_lens;
        da.batch = nd;
        da.n_q_head = c->n_head;
        da.n_kv_head = c->n_kv_head;
        da.head_dim = d;
        da.capacity = b->max_blocks * b->block_size;
        da.window = fg_config_layer_window(c, layer);
        da.block_tables = tables;
        da.n_blocks = b->n_blocks;
        da.block_size = b->block_size;
        da.max_blocks = b->max_blocks;
        FGI_TRY(fgi_cuda_decode_attention(fn, &da, b->decode_ws, b->decode_ws_bytes, NULL,
                                         b->stream));
    }
    return prefill_segments(fn, b, layer, k_layer, v_layer);
}

/* y (rows, out) = act(x (rows, in) @ W + b), as tiles of exactly kRowTile
 * rows (rows a multiple of it): the one GEMM shape of the header. */
static fg_status tiled_linear(const char *fn, fgi_cuda_batch *b, float *y, const float *x,
                              const float *w, const float *bias, int rows, int in, int out,
                              int w_transposed, fgi_activation act)
{
    for (int r0 = 0; r0 < rows; r0 += kRowTile)
        FGI_TRY(fgi_cuda_linear_layer(fn, &b->lin, y + (size_t)r0 * (size_t)out,
                                     x + (size_t)r0 * (size_t)in, w, bias, kRowTile, in, out,
                                     w_transposed, act, b->stream));
    return FG_OK;
}

/* norm(x + delta + delta_bias) into y, in the batch's dtype (fp32 x). */
static fg_status batch_norm(const char *fn, fgi_cuda_batch *b, void *y, float *x,
                            const void *delta, const void *delta_bias, const void *g,
                            const void *bb, int rows)
{
    return fgi_cuda_model_norm(fn, b->dtype, &b->cfg, y, x, delta, delta_bias, g, bb, rows,
                               b->stream);
}

/* One layer over the padded rows P (n real rows), b->h holding norm_1(x);
 * ends with b->h = next norm of x (next_g) or x updated. */
static fg_status batch_layer_forward(const char *fn, fgi_cuda_batch *b, int layer, int n, int P,
                                     const float *next_g, const float *next_b)
{
    const fg_config *c = &b->cfg;
    const batch_layer *lw = &b->layers[layer];
    const int C = c->n_embd, W = b->qkv_width, A = c->n_head * b->head_dim, I = c->n_inner;
    FGI_TRY(tiled_linear(fn, b, b->qkv, b->h, lw->c_attn_w, NULL, P, C, W, 0, FGI_ACT_NONE));
    FGI_TRY(layer_attention(fn, b, layer, n, lw->c_attn_b));
    FGI_TRY(tiled_linear(fn, b, b->delta, b->att, lw->c_proj_w, NULL, P, A, C, 0, FGI_ACT_NONE));
    FGI_TRY(batch_norm(fn, b, b->h, b->x, b->delta, lw->c_proj_b, lw->ln_2_g, lw->ln_2_b, P));
    const float *mlp_out = b->mlp; /* (P, I): the MLP's hidden rows */
    if (c->arch == FG_ARCH_LLAMA && b->fused_up) {
        /* gate|up (P, 2I) in one GEMM over the fused [w1 | w3] */
        FGI_TRY(tiled_linear(fn, b, b->mlp, b->h, lw->fc_w, NULL, P, C, 2 * I, 0, FGI_ACT_NONE));
        FGI_TRY(fgi_cuda_silu_mul_rows(fn, b->up, b->mlp, b->mlp + I, P, I, 2LL * I, b->stream));
        mlp_out = b->up;
    } else if (c->arch == FG_ARCH_LLAMA) {
        FGI_TRY(tiled_linear(fn, b, b->mlp, b->h, lw->fc_w, NULL, P, C, I, 0, FGI_ACT_NONE));
        FGI_TRY(tiled_linear(fn, b, b->up, b->h, lw->up_w, NULL, P, C, I, 0, FGI_ACT_NONE));
        FGI_TRY(fgi_cuda_silu_mul_rows(fn, b->mlp, b->mlp, b->up, P, I, I, b->stream));
    } else {
        FGI_TRY(tiled_linear(fn, b, b->mlp, b->h, lw->fc_w, lw->fc_b, P, C, I, 0,
                            FGI_ACT_GELU));
    }
    FGI_TRY(tiled_linear(fn, b, b->delta, mlp_out, lw->mlp_proj_w, NULL, P, I, C, 0,
                        FGI_ACT_NONE));
    if (next_g != NULL)
        return batch_norm(fn, b, b->h, b->x, b->delta, lw->mlp_proj_b, next_g, next_b, P);
    return fgi_cuda_add_rows(fn, b->x, b->delta, lw->mlp_proj_b, P, C, b->stream);
}

/* The 16-bit path ---------------------------------------------------------------
 * The same step in dtype with the single-sequence 16-bit decoder's
 * arithmetic (cuda/engine/decoder.cu): fp32 residual x, dtype h / q|k|v /
 * attention / MLP rows, Llama's gate|up as one fp32-output GEMM over the
 * fused [w1 | w3], fp32 logits. Every GEMM is cuBLASLt on tiles of exactly
 * kRowTile rows (never the GEMV kernel, whose choice depends on the row
 * count), so the batch invariance argument of the header holds unchanged. */

enum tile_out { TILE_TYPED, TILE_F32OUT };

/* y (rows, out) = act(x (rows, in) @ W + b) in dtype (TILE_TYPED), or the
 * fp32 product without bias (TILE_F32OUT), as tiles of kRowTile rows. */
static fg_status tiled_linear16(const char *fn, fgi_cuda_batch *b, void *y, const void *x,
                                const void *w, const void *bias, int rows, int in, int out,
                                int w_transposed, fgi_activation act, tile_out mode)
{
    const size_t es = b->es, y_es = mode == TILE_F32OUT ? sizeof(float) : es;
    for (int r0 = 0; r0 < rows; r0 += kRowTile) {
        void *yt = static_cast<char *>(y) + (size_t)r0 * (size_t)out * y_es;
        const void *xt = static_cast<const char *>(x) + (size_t)r0 * (size_t)in * es;
        if (mode == TILE_F32OUT)
            FGI_TRY(fgi_cuda_linear_layer_f32out(fn, b->dtype, &b->lin, static_cast<float *>(yt),
                                                xt, w, kRowTile, in, out, w_transposed,
                                                b->stream));
        else
            FGI_TRY(fgi_cuda_linear_layer_typed(fn, b->dtype, &b->lin, yt, xt, w, bias, kRowTile,
                                               in, out, w_transposed, act, b->stream));
    }
    return FG_OK;
}

/* batch_layer_forward in dtype. */
static fg_status batch_layer_forward16(const char *fn, fgi_cuda_batch *b, int layer, int n,
                                       int P, const void *next_g, const void *next_b)
{
    const fg_config *c = &b->cfg;
    const fgi_cuda_layer_tensors *lw = &b->l16[layer];
    const fg_dtype dt = b->dtype;
    const int C = c->n_embd, W = b->qkv_width, A = c->n_head * b->head_dim, I = c->n_inner;
    FGI_TRY(tiled_linear16(fn, b, b->qkv, b->h, lw->c_attn_w, NULL, P, C, W, 0, FGI_ACT_NONE,
                          TILE_TYPED));
    FGI_TRY(layer_attention(fn, b, layer, n, lw->c_attn_b));
    FGI_TRY(tiled_linear16(fn, b, b->delta, b->att, lw->c_proj_w, NULL, P, A, C, 0, FGI_ACT_NONE,
                          TILE_TYPED));
    FGI_TRY(batch_norm(fn, b, b->h, b->x, b->delta, lw->c_proj_b, lw->ln_2_g, lw->ln_2_b, P));
    if (c->arch == FG_ARCH_LLAMA) {
        /* gate|up (P, 2I) fp32, only silu(gate) up rounded (as the decoder) */
        FGI_TRY(tiled_linear16(fn, b, b->mlp, b->h, lw->fc_w, NULL, P, C, 2 * I, 0, FGI_ACT_NONE,
                              TILE_F32OUT));
        FGI_TRY(fgi_cuda_silu_mul_rows_f32in(fn, dt, b->up, b->mlp, b->mlp + I, P, I, 2LL * I,
                                            b->stream));
        FGI_TRY(tiled_linear16(fn, b, b->delta, b->up, lw->mlp_proj_w, NULL, P, I, C, 0,
                              FGI_ACT_NONE, TILE_TYPED));
    } else {
        FGI_TRY(tiled_linear16(fn, b, b->mlp, b->h, lw->fc_w, lw->fc_b, P, C, I, 0, FGI_ACT_GELU,
                              TILE_TYPED));
        FGI_TRY(tiled_linear16(fn, b, b->delta, b->mlp, lw->mlp_proj_w, NULL, P, I, C, 0,
                              FGI_ACT_NONE, TILE_TYPED));
    }
    if (next_g != NULL)
        return batch_norm(fn, b, b->h, b->x, b->delta, lw->mlp_proj_b, next_g, next_b, P);
    return fgi_cuda_add_rows_typed(fn, dt, b->x, b->delta, lw->mlp_proj_b, P, C, b->stream);
}

/* enqueue_step in dtype. */
static fg_status enqueue_step16(const char *fn, fgi_cuda_batch *b, int n, int P, int n_logits)
{
    const fg_config *c = &b->cfg;
    const int C = c->n_embd, V = c->vocab_size, Pmax = b->padded_rows;
    const int threads = 256;
    FGI_TRY(fgi_with_dtype(fn, b->dtype, [&](auto tag) {
        using E = decltype(tag);
        batch_embed_kernel<E><<<fgi_grid_blocks((long long)P * C, threads), threads, 0,
                                b->stream>>>(b->x, b->ints_dev, b->ints_dev + Pmax,
                                             static_cast<const E *>(b->m16.wte),
                                             static_cast<const E *>(b->m16.wpe), P, C);
        FGI_CUDA_LAUNCHED(fn, "batch_embed_kernel");
        return FG_OK;
    }));
    FGI_TRY(batch_norm(fn, b, b->h, b->x, NULL, NULL, b->l16[0].ln_1_g, b->l16[0].ln_1_b, P));
    for (int l = 0; l < c->n_layer; l++) {
        const int last = l + 1 == c->n_layer;
        FGI_TRY(batch_layer_forward16(fn, b, l, n, P, last ? b->m16.ln_f_g : b->l16[l + 1].ln_1_g,
                                      last ? b->m16.ln_f_b : b->l16[l + 1].ln_1_b));
    }
    if (n_logits > 0) {
        const int LP = (n_logits + kRowTile - 1) / kRowTile * kRowTile;
        FGI_TRY(fgi_with_dtype(fn, b->dtype, [&](auto tag) {
            using E = decltype(tag);
            gather_rows_kernel<E><<<fgi_grid_blocks((long long)LP * C, threads), threads, 0,
                                    b->stream>>>(reinterpret_cast<E *>(b->logits_src),
                                                 reinterpret_cast<const E *>(b->h),
                                                 b->ints_dev + 3 * Pmax, LP, C);
            FGI_CUDA_LAUNCHED(fn, "gather_rows_kernel");
            return FG_OK;
        }));
        /* the logits stay fp32: cuBLASLt's fp32 output */
        FGI_TRY(tiled_linear16(fn, b, b->logits, b->logits_src, b->m16.classifier, NULL, LP, C, V,
                              1, FGI_ACT_NONE, TILE_F32OUT));
    }
    return FG_OK;
}

/* Enqueues the device work of a step of n rows (P padded) whose ints are
 * on the device, logits of n_logits rows into b->logits. Reads nothing
 * from the host but the shape, so a decode step of n rows can be captured
 * once and replayed. */
static fg_status enqueue_step(const char *fn, fgi_cuda_batch *b, int n, int P, int n_logits)
{
    if (b->dtype != FG_DTYPE_F32) return enqueue_step16(fn, b, n, P, n_logits);
    const fg_config *c = &b->cfg;
    const int C = c->n_embd, V = c->vocab_size, Pmax = b->padded_rows;
    const int threads = 256;
    batch_embed_kernel<float><<<fgi_grid_blocks((long long)P * C, threads), threads, 0, b->stream>>>(
        b->x, b->ints_dev, b->ints_dev + Pmax, b->wte, b->wpe, P, C);
    FGI_CUDA_LAUNCHED(fn, "batch_embed_kernel");
    FGI_TRY(batch_norm(fn, b, b->h, b->x, NULL, NULL, b->layers[0].ln_1_g, b->layers[0].ln_1_b,
                      P));
    for (int l = 0; l < c->n_layer; l++) {
        const int last = l + 1 == c->n_layer;
        FGI_TRY(batch_layer_forward(fn, b, l, n, P, last ? b->ln_f_g : b->layers[l + 1].ln_1_g,
                                    last ? b->ln_f_b : b->layers[l + 1].ln_1_b));
    }
    if (n_logits > 0) {
        /* the rows that want logits, gathered into tiles for the classifier */
        const int LP = (n_logits + kRowTile - 1) / kRowTile * kRowTile;
        gather_rows_kernel<float><<<fgi_grid_blocks((long long)LP * C, threads), threads, 0,
                             b->stream>>>(b->logits_src, b->h, b->ints_dev + 3 * Pmax, LP, C);
        FGI_CUDA_LAUNCHED(fn, "gather_rows_kernel");
        FGI_TRY(tiled_linear(fn, b, b->logits, b->logits_src, b->classifier, NULL, LP, C, V, 1,
                            FGI_ACT_NONE));
    }
    return FG_OK;
}

/* Captures the decode step of n rows into *exec (graph_capture.cuh: a
 * failure leaves no graph; that shape then runs uncaptured). */
static fg_status capture_step(const char *fn, fgi_cuda_batch *b, int n, cudaGraphExec_t *exec)
{
    return fgi_capture_graph(fn, &b->capture_stream, &b->stream, b->lin.blas, exec, [&] {
        return enqueue_step(fn, b, n, (n + kRowTile - 1) / kRowTile * kRowTile, n);
    });
}

/* The graph of a decode step of n rows, captured on first use (NULL when
 * capture failed: that shape runs uncaptured). */
static cudaGraphExec_t step_graph(const char *fn, fgi_cuda_batch *b, int n)
{
    batch_graph *slot = NULL;
    for (int i = 0; i < kGraphSlots && slot == NULL; i++)
        if (b->graphs[i].rows == n) slot = &b->graphs[i];
    if (slot == NULL) {
        slot = &b->graphs[0];
        for (int i = 1; i < kGraphSlots; i++)
            if (b->graphs[i].last_used < slot->last_used) slot = &b->graphs[i];
        if (slot->exec != NULL) cudaGraphExecDestroy(slot->exec);
        slot->rows = n;
        if (capture_step(fn, b, n, &slot->exec) != FG_OK) slot->exec = NULL;
    }
    slot->last_used = ++b->clock;
    return slot->exec;
}

extern "C" long long fgi_cuda_batch_graph_steps(const fgi_cuda_batch *batch)
{
    return batch != NULL ? batch->graph_steps : 0;
}

extern "C" fg_status fgi_cuda_batch_forward(const char *fn, fgi_cuda_batch *b, fgi_kv_pool *pool,
                                            const fgi_batch_seq *seqs, int n_seqs)
{
    FGI_TRY(fgi_check_ptr(fn, "batch", b));
    int n = 0;
    FGI_TRY(fgi_batch_check(fn, &b->cfg, pool, seqs, n_seqs, b->max_tokens, &n));
    if (pool->n_blocks != b->n_blocks || pool->block_size != b->block_size)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the pool is not the one the batch mirrors", fn);
    if (n > b->max_rows)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: %d new tokens, more than max_rows %d", fn, n,
                       b->max_rows);
    const fg_config *c = &b->cfg;
    const int P = (n + kRowTile - 1) / kRowTile * kRowTile, Pmax = b->padded_rows;
    const int V = c->vocab_size, M = b->max_blocks;
    /* the ints of the step: ids | pos | kv_lens | logit rows, each Pmax
     * long (the layout is fixed, so kernels find them at fixed offsets),
     * the prompt segments (3 Pmax), then one block table per row; padding
     * rows read token 0 at position 0 */
    int *ids = b->ints_host, *pos = ids + Pmax, *lens = ids + 2 * Pmax, *lrows = ids + 3 * Pmax;
    int *segments = ids + kSegmentsAt * Pmax, *tables = ids + kIntsBeforeTables * Pmax;
    memset(b->ints_host, 0, sizeof(int) * kIntsBeforeTables * (size_t)Pmax);
    /* decode-kernel rows first, then one segment of prompt rows per sequence */
    int nd = 0;
    for (int s = 0; s < n_seqs; s++)
        for (int t = 0; t < seqs[s].n_tokens; t++)
            nd += !(b->prefill && seqs[s].start + t < seqs[s].n_prompt);
    int drow = 0, prow = nd, n_logits = 0;
    b->n_decode = nd;
    b->n_segs = 0;
    for (int s = 0; s < n_seqs; s++) {
        const fgi_batch_seq *q = &seqs[s];
        for (int t = 0; t < q->n_tokens; t++) {
            const int prompt = b->prefill && q->start + t < q->n_prompt;
            const int row = prompt ? prow++ : drow++;
            if (prompt && t == 0) { /* a sequence's prompt rows lead its chunk */
                b->seg_row[b->n_segs] = row;
                b->seg_len[b->n_segs] = 0;
                b->seg_start[b->n_segs++] = q->start;
            }
            if (prompt) b->seg_len[b->n_segs - 1]++;
            ids[row] = q->ids[t];
            pos[row] = q->start + t;
            lens[row] = q->start + t + 1;
            int *tab = tables + (size_t)row * (size_t)M;
            const int have = q->n_blocks < M ? q->n_blocks : M;
            memcpy(tab, q->blocks, sizeof(int) * (size_t)have);
            for (int j = have; j < M; j++) tab[j] = 0;
            if (q->logits != NULL && (q->all_logits || t + 1 == q->n_tokens))
                lrows[n_logits++] = row;
        }
    }
    for (int i = 0; i < b->n_segs; i++) {
        segments[3 * i] = b->seg_row[i];
        segments[3 * i + 1] = b->seg_len[i];
        segments[3 * i + 2] = b->seg_start[i];
    }
    const size_t copy = kIntsBeforeTables * (size_t)Pmax + (size_t)n * (size_t)M;
    FGI_CUDA_TRY(fn, cudaMemcpyAsync(b->ints_dev, b->ints_host, sizeof(int) * copy,
                                    cudaMemcpyHostToDevice, b->stream));
    /* a decode step (one row and its logits per sequence) replays the graph
     * of its shape: the same kernels, so the same bits, for less host time */
    cudaGraphExec_t exec =
        n_logits == n && n == n_seqs && b->n_segs == 0 ? step_graph(fn, b, n) : NULL;
    if (exec != NULL) {
        FGI_CUDA_TRY(fn, cudaGraphLaunch(exec, b->stream));
        b->graph_steps++;
    } else {
        FGI_TRY(enqueue_step(fn, b, n, P, n_logits));
    }
    if (n_logits > 0) {
        int k = 0;
        for (int s = 0; s < n_seqs; s++) {
            const fgi_batch_seq *q = &seqs[s];
            if (q->logits == NULL) continue;
            const int rows = q->all_logits ? q->n_tokens : 1;
            FGI_CUDA_TRY(fn, cudaMemcpyAsync(q->logits, b->logits + (size_t)k * (size_t)V,
                                            sizeof(float) * (size_t)rows * (size_t)V,
                                            cudaMemcpyDeviceToHost, b->stream));
            k += rows;
        }
    }
    FGI_CUDA_TRY(fn, cudaStreamSynchronize(b->stream));
    return FG_OK;
}
