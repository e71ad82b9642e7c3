/* The fast CPU decoder (device "cpu"): fp32 arithmetic, weights repacked
 * once into column panels, a thread pool created once per runner, prefill as
 * matrix-matrix products. It is held to the exact reference (fg_ref_*,
 * device "ref") at the fp32 tolerance (docs/contract.md §32), not bit for bit.
 *
 * Pieces:
 *  - fgi_cpu_pool: n threads (the caller is thread 0) running one task at a
 *    time, cut into chunks the threads claim; workers spin briefly, then
 *    sleep, between tasks.
 *  - fgi_cpu_kernels: the arithmetic (panel GEMM with fused epilogues,
 *    attention rows, norms, activations), compiled once per instruction set
 *    (generic x86-64 / other, AVX2+FMA, AVX-512) from cpu_kernels.inc and
 *    chosen at run time, so the default build needs no -march flag.
 *  - fgi_cpu_runner: packed weights, a host KV cache, scratch, the pool.
 *
 * Packed matrix: a (in, out) weight becomes ceil(out / FGI_CPU_NR) panels,
 * each (in, FGI_CPU_NR) contiguous, zero-padded past `out`; a panel streams
 * through memory in order, for one row (decode) or many (prefill). */
#ifndef FLASHGPT_HOST_CPU_INTERNAL_H
#define FLASHGPT_HOST_CPU_INTERNAL_H

#include "flashgpt/decoder.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- thread pool ---------------------------------------------------------- */
typedef struct fgi_cpu_pool fgi_cpu_pool;
/* One chunk of a task; thread (0 .. n_threads-1, 0 = the caller) tells
 * which per-thread scratch the chunk may use. */
typedef void (*fgi_cpu_task)(void *ctx, int chunk, int thread);

/* n_threads >= 1 (1: no worker threads, tasks run on the caller). */
fg_status fgi_cpu_pool_create(fgi_cpu_pool **pool, int n_threads);
void fgi_cpu_pool_destroy(fgi_cpu_pool *pool); /* NULL is a no-op */
int fgi_cpu_pool_threads(const fgi_cpu_pool *pool);
/* Runs task(ctx, c, thread) for every chunk c in 0 .. n_chunks-1, each once,
 * on whichever threads claim them (the caller included), and returns when
 * all have finished. */
void fgi_cpu_pool_run(fgi_cpu_pool *pool, fgi_cpu_task task, void *ctx, int n_chunks);

/* Online processors (at least 1). */
int fgi_cpu_online_cores(void);

/* ---- kernels ---------------------------------------------------------------- */
#define FGI_CPU_NR 16 /* columns per panel */

typedef struct {
    int in, out, n_panels;
    float *data; /* (n_panels, in, FGI_CPU_NR) */
} fgi_cpu_mat;

typedef enum {
    FGI_EPI_STORE = 0, /* y = x @ w + b */
    FGI_EPI_ADD = 1,   /* y += x @ w + b (residual) */
    FGI_EPI_GELU = 2,  /* y = gelu(x @ w + b) */
} fgi_cpu_epilogue;

typedef struct {
    const char *name;
    /* y (rows, w->out) at row stride ldy from x (rows, w->in) at ldx, panels
     * p0 .. p1-1 only (the columns they hold). b (out) may be NULL. */
    void (*gemm)(float *y, size_t ldy, const float *x, size_t ldx, int rows,
                 const fgi_cpu_mat *w, const float *b, int p0, int p1,
                 fgi_cpu_epilogue epi);
    /* gemm with every row on the multi-row tile, even a lone one: each
     * row's bits then do not depend on the rows beside it (the batched
     * forward; gemm's single-row path sums in another order). */
    void (*gemm_tiled)(float *y, size_t ldy, const float *x, size_t ldx, int rows,
                       const fgi_cpu_mat *w, const float *b, int p0, int p1,
                       fgi_cpu_epilogue epi);
    /* One query row of causal attention over keys 0 .. visible-1: out (d) =
     * softmax(q . k_j * scale) @ v; k, v (visible, d) contiguous. scratch:
     * visible floats. */
    void (*attend_row)(float *out, const float *q, const float *k, const float *v,
                       int visible, int d, float scale, float *scratch);
    /* attend_row over keys [first, visible) of a paged cache: key j at k +
     * blocks[j / block_size] * block_stride + (j % block_size) * d,
     * likewise v; bit for bit what attend_row gives for the same keys. */
    void (*attend_paged)(float *out, const float *q, const float *k, const float *v,
                         const int32_t *blocks, int block_size, size_t block_stride,
                         int first, int visible, int d, float scale, float *scratch);
    /* Row norms (LayerNorm when b != NULL or layer_norm, else RMSNorm). */
    void (*norm_row)(float *y, const float *x, const float *g, const float *b, int n,
                     float eps, int layer_norm);
    /* gate[i] = silu(gate[i]) * up[i] */
    void (*silu_mul)(float *gate, const float *up, size_t n);
} fgi_cpu_kernels;

typedef enum {
    FGI_CPU_ISA_AUTO = -1,
    FGI_CPU_ISA_GENERIC = 0,
    FGI_CPU_ISA_AVX2 = 1,
    FGI_CPU_ISA_AVX512 = 2,
} fgi_cpu_isa;

/* The kernels of one instruction set; NULL when this build or this machine
 * lacks it. AUTO: the best this machine runs. */
const fgi_cpu_kernels *fgi_cpu_kernels_for(fgi_cpu_isa isa);

extern const fgi_cpu_kernels fgi_cpu_kernels_generic;
#if defined(FGI_CPU_X86)
extern const fgi_cpu_kernels fgi_cpu_kernels_avx2;
extern const fgi_cpu_kernels fgi_cpu_kernels_avx512;
#endif

/* ---- decoder ------------------------------------------------------------------ */
typedef struct fgi_cpu_runner fgi_cpu_runner;

/* Packs cfg / w (which must stay valid) for a cache of `capacity` tokens;
 * n_threads 0 = every online core; isa AUTO = the best available. Arguments
 * are validated (fn names the public caller in messages). */
fg_status fgi_cpu_runner_create(const char *fn, fgi_cpu_runner **runner,
                                const fg_config *cfg, const fg_weights *w,
                                int capacity, int n_threads, fgi_cpu_isa isa);
/* A runner of base's model, configuration and instruction set that reads
 * base's packed weights instead of packing its own (they are freed with the
 * last runner reading them, in any order); its own cache of `capacity`
 * tokens, scratch and pool of n_threads (0: every online core). */
fg_status fgi_cpu_runner_create_sharing(const char *fn, fgi_cpu_runner **runner,
                                        const fgi_cpu_runner *base, int capacity, int n_threads);
void fgi_cpu_runner_destroy(fgi_cpu_runner *runner); /* NULL is a no-op */
/* Grows the cache to `capacity` tokens (at most cfg->n_ctx), keeping the
 * cached ones; a smaller capacity is a no-op. On error nothing changes. */
fg_status fgi_cpu_runner_reserve(const char *fn, fgi_cpu_runner *runner, int capacity);
int fgi_cpu_runner_len(const fgi_cpu_runner *runner);
int fgi_cpu_runner_threads(const fgi_cpu_runner *runner);
const char *fgi_cpu_runner_isa(const fgi_cpu_runner *runner);
void fgi_cpu_runner_reset(fgi_cpu_runner *runner);
/* Replaces the pool (n_threads 0: every online core). */
fg_status fgi_cpu_runner_set_threads(fgi_cpu_runner *runner, int n_threads);

/* Appends the T tokens ids and writes the logits of the last logit_rows
 * of them (T or 1) to logits (logit_rows, vocab). Same contract as
 * fg_ref_forward: on error nothing is written and the cache is unchanged. */
fg_status fgi_cpu_forward(fgi_cpu_runner *runner, float *logits, int logit_rows,
                          const int *ids, int T);

/* ---- batched forward over a paged cache (issue 15) ------------------------------ */
/* Packed weights, a pool and scratch for many sequences per forward (see
 * kv_paged.h): one GEMM over all their rows per linear layer (gemm_tiled:
 * batch-invariant), attention per (token, head) through each sequence's
 * block table. A sequence's logits are the same bits whatever shares its
 * batch, and the same as fgi_cpu_forward's wherever that also runs every
 * GEMM on the tile (prefill of T >= 2 tokens, all logit rows). */
typedef struct fgi_cpu_batch fgi_cpu_batch;
/* host/runtime/kv_paged.h defines them; named here so that this header
 * needs no other folder's (bench/cpu_gemm_blas.c includes it alone) */
typedef struct fgi_kv_pool fgi_kv_pool;
typedef struct fgi_batch_seq fgi_batch_seq;

/* ctx: the most tokens a sequence reaches (1 .. cfg->n_ctx): the RoPE
 * table and attention scratch are sized for it. */
fg_status fgi_cpu_batch_create(const char *fn, fgi_cpu_batch **batch, const fg_config *cfg,
                               const fg_weights *w, int ctx, int n_threads, fgi_cpu_isa isa);
void fgi_cpu_batch_destroy(fgi_cpu_batch *batch); /* NULL is a no-op */
fg_status fgi_cpu_batch_set_threads(fgi_cpu_batch *batch, int n_threads);
int fgi_cpu_batch_threads(const fgi_cpu_batch *batch);
/* One forward of the n_seqs sequences (fgi_batch_check's rules, ctx as
 * above); writes their new keys / values into pool and their logits. On
 * error no logits are written and no cached token changes (slots past each
 * sequence's `start` may have been written). */
fg_status fgi_cpu_batch_forward(const char *fn, fgi_cpu_batch *batch, fgi_kv_pool *pool,
                                const fgi_batch_seq *seqs, int n_seqs);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_HOST_CPU_INTERNAL_H */
