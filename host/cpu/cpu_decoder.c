/* Fast CPU decoder (see cpu_internal.h): the forward pass of docs/contract.md §16-§18 for
 * both families on packed fp32 weights and a host KV cache.
 *
 * Per layer: norm -> fused q|k|v GEMM -> RoPE (cos/sin table built once, in
 * double) and K/V append -> attention, one task per (token, head) dealt out
 * to the threads in turn (causal rows grow, so turns balance them) ->
 * output projection added into the residual by the GEMM's epilogue -> norm
 * -> MLP (GPT-2: GEMM with a bias + GELU epilogue; Llama: one GEMM over the
 * gate and up matrices packed side by side, then silu(gate) * up) -> down
 * projection added into the residual. GEMMs split their panels between the
 * threads. The classifier is packed like every other matrix (from its
 * (vocab, C) layout) and runs only over the rows whose logits are wanted.
 *
 * use_flash / flash_block only choose the reference's summation order; the
 * same attention is computed here either way. */
#include "check.h"
#include "config_internal.h"
#include "cpu_internal.h"
#include "kv_paged.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    fgi_cpu_mat qkv, proj, mlp_in, mlp_out; /* mlp_in: fc, or gate | up */
} packed_layer;

/* A model's packed weights: made by the first runner, read by every runner
 * created sharing it (fgi_cpu_runner_create_sharing), freed with the last. */
typedef struct {
    atomic_int refs;
    int n_layer;
    packed_layer *layers;
    fgi_cpu_mat head; /* classifier, (C, vocab) packed */
} packed_model;

struct fgi_cpu_runner {
    fg_config c;
    const fg_weights *w;
    const fgi_cpu_kernels *k;
    fgi_cpu_pool *pool;
    packed_model *packed;        /* shared, read only once made */
    const packed_layer *layers;  /* packed->layers */
    const fgi_cpu_mat *head;     /* &packed->head */
    float *rope_cos, *rope_sin; /* (capacity, d/2) */
    float *kc, *vc;          /* (n_layer, n_kv_head, capacity, d) */
    int capacity, len, d;
    /* scratch for up to scratch_rows tokens */
    int scratch_rows;
    float *x, *h, *qkv, *att, *mlp; /* (T, C) (T, C) (T, qkv) (T, nh*d) (T, mlp_in.out) */
    float *scores;                  /* (n_threads, capacity) */
    int scores_threads;
};

/* ---- packing -------------------------------------------------------------- */

static fg_status mat_alloc(const char *fn, fgi_cpu_mat *m, int in, int out)
{
    m->in = in;
    m->out = out;
    m->n_panels = (out + FGI_CPU_NR - 1) / FGI_CPU_NR;
    size_t n;
    FGI_TRY(fgi_check_elems(fn, "packed weight", &n, 3, (long long)m->n_panels, (long long)in,
                            (long long)FGI_CPU_NR));
    m->data = calloc(n, sizeof(float));
    if (m->data == NULL)
        return fgi_fail(FG_ERR_OOM, "%s: out of memory packing a (%d, %d) weight", fn, in, out);
    return FG_OK;
}

/* Columns col0 .. col0+cols-1 of m from src: (in, cols) row-major, or
 * (cols, in) when transposed (the classifier). */
static void mat_fill(fgi_cpu_mat *m, int col0, const float *src, int cols, int transposed)
{
    const size_t in = (size_t)m->in, NR = FGI_CPU_NR;
    for (size_t c = 0; c < (size_t)cols; c++) {
        const size_t col = (size_t)col0 + c;
        float *dst = m->data + (col / NR) * in * NR + col % NR;
        if (transposed) {
            const float *s = src + c * in;
            for (size_t i = 0; i < in; i++) dst[i * NR] = s[i];
        } else {
            for (size_t i = 0; i < in; i++) dst[i * NR] = src[i * (size_t)cols + c];
        }
    }
}

static void mat_free(fgi_cpu_mat *m)
{
    free(m->data);
    m->data = NULL;
}

static fg_status pack_layer(const char *fn, packed_layer *p, const fg_config *c,
                            const fg_layer_weights *lw)
{
    const int C = c->n_embd, qkv = fg_config_qkv_width(c), I = c->n_inner;
    const int llama = c->arch == FG_ARCH_LLAMA;
    FGI_TRY(mat_alloc(fn, &p->qkv, C, qkv));
    mat_fill(&p->qkv, 0, lw->c_attn_w, qkv, 0);
    FGI_TRY(mat_alloc(fn, &p->proj, c->n_head * fg_config_head_dim(c), C)); /* (nh*d, C) */
    mat_fill(&p->proj, 0, lw->c_proj_w, C, 0);
    FGI_TRY(mat_alloc(fn, &p->mlp_in, C, llama ? 2 * I : I));
    mat_fill(&p->mlp_in, 0, lw->fc_w, I, 0);
    if (llama) mat_fill(&p->mlp_in, I, lw->up_w, I, 0);
    FGI_TRY(mat_alloc(fn, &p->mlp_out, I, C));
    mat_fill(&p->mlp_out, 0, lw->mlp_proj_w, C, 0);
    return FG_OK;
}

static void packed_release(packed_model *p)
{
    if (p == NULL || atomic_fetch_sub(&p->refs, 1) > 1) return;
    if (p->layers)
        for (int l = 0; l < p->n_layer; l++) {
            mat_free(&p->layers[l].qkv);
            mat_free(&p->layers[l].proj);
            mat_free(&p->layers[l].mlp_in);
            mat_free(&p->layers[l].mlp_out);
        }
    free(p->layers);
    mat_free(&p->head);
    free(p);
}

/* Every matrix of c / w packed, one reference held by the caller. */
static fg_status packed_create(const char *fn, packed_model **out, const fg_config *c,
                               const fg_weights *w)
{
    packed_model *p;
    FGI_TRY(fgi_alloc(fn, (void **)&p, 1, sizeof *p));
    memset(p, 0, sizeof *p);
    atomic_init(&p->refs, 1);
    p->n_layer = c->n_layer;
    fg_status st = fgi_alloc(fn, (void **)&p->layers, (size_t)c->n_layer, sizeof *p->layers);
    if (st == FG_OK) memset(p->layers, 0, sizeof *p->layers * (size_t)c->n_layer);
    for (int l = 0; l < c->n_layer && st == FG_OK; l++)
        st = pack_layer(fn, &p->layers[l], c, &w->layers[l]);
    if (st == FG_OK) st = mat_alloc(fn, &p->head, c->n_embd, c->vocab_size);
    if (st != FG_OK) {
        packed_release(p);
        return st;
    }
    mat_fill(&p->head, 0, w->lm_head ? w->lm_head : w->wte, c->vocab_size, 1);
    *out = p;
    return FG_OK;
}

/* ---- runner ----------------------------------------------------------------- */

void fgi_cpu_runner_destroy(fgi_cpu_runner *r)
{
    if (r == NULL) return;
    fgi_cpu_pool_destroy(r->pool);
    packed_release(r->packed);
    free(r->rope_cos);
    free(r->rope_sin);
    free(r->kc);
    free(r->vc);
    free(r->x);
    free(r->scores);
    free(r);
}

static fg_status check_threads(const char *fn, int n_threads)
{
    if (n_threads < 0 || n_threads > 1024)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: argument 'n_threads' must be in 0 .. 1024 (0: every core) (got %d)",
                        fn, n_threads);
    return FG_OK;
}

/* Scratch for T tokens and the pool's thread count. */
static fg_status ensure_scratch(const char *fn, fgi_cpu_runner *r, int T)
{
    const fg_config *c = &r->c;
    const int n_threads = fgi_cpu_pool_threads(r->pool);
    if (r->scores_threads < n_threads) {
        float *s;
        FGI_TRY(fgi_alloc(fn, (void **)&s, (size_t)n_threads * (size_t)r->capacity,
                          sizeof(float)));
        free(r->scores);
        r->scores = s;
        r->scores_threads = n_threads;
    }
    if (T <= r->scratch_rows) return FG_OK;
    const long long row = 2LL * c->n_embd + fg_config_qkv_width(c) + (long long)c->n_head * r->d +
                          r->layers[0].mlp_in.out;
    size_t n;
    FGI_TRY(fgi_check_elems(fn, "scratch", &n, 2, row, (long long)T));
    float *x;
    FGI_TRY(fgi_alloc(fn, (void **)&x, n, sizeof(float)));
    free(r->x);
    const size_t t = (size_t)T;
    r->x = x;
    r->h = r->x + t * c->n_embd;
    r->qkv = r->h + t * c->n_embd;
    r->att = r->qkv + t * fg_config_qkv_width(c);
    r->mlp = r->att + t * c->n_head * r->d;
    r->scratch_rows = T;
    return FG_OK;
}

/* cos / sin of the reference's RoPE angles for positions 0 .. capacity-1,
 * rounded once to float; (capacity, d/2) each. */
static void fill_rope(const fg_config *c, int d, int capacity, float *cos_t, float *sin_t)
{
    const int half = d / 2;
    for (int j = 0; j < half; j++) {
        const double inv_freq = fg_config_rope_inv_freq(c, j);
        for (int p = 0; p < capacity; p++) {
            const double theta = (double)p * inv_freq;
            cos_t[(size_t)p * half + j] = (float)cos(theta);
            sin_t[(size_t)p * half + j] = (float)sin(theta);
        }
    }
}

fg_status fgi_cpu_runner_reserve(const char *fn, fgi_cpu_runner *r, int capacity)
{
    const fg_config *c = &r->c;
    if (capacity <= r->capacity) return FG_OK;
    if (capacity > c->n_ctx)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'capacity' must be in 1 .. %d (got %d)",
                        fn, c->n_ctx, capacity);
    const size_t d = (size_t)r->d, cap = (size_t)capacity, old_cap = (size_t)r->capacity;
    size_t kv;
    FGI_TRY(fgi_check_elems(fn, "KV cache", &kv, 4, (long long)c->n_layer,
                            (long long)c->n_kv_head, (long long)capacity, (long long)r->d));
    const size_t rope_n = cap * (d / 2) > 0 ? cap * (d / 2) : 1;
    float *kc = NULL, *vc = NULL, *cos_t = NULL, *sin_t = NULL, *scores = NULL;
    fg_status st = fgi_alloc(fn, (void **)&kc, kv, sizeof(float));
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&vc, kv, sizeof(float));
    if (st == FG_OK && c->use_rope) st = fgi_alloc(fn, (void **)&cos_t, rope_n, sizeof(float));
    if (st == FG_OK && c->use_rope) st = fgi_alloc(fn, (void **)&sin_t, rope_n, sizeof(float));
    if (st == FG_OK && r->scores_threads > 0)
        st = fgi_alloc(fn, (void **)&scores, (size_t)r->scores_threads * cap, sizeof(float));
    if (st != FG_OK) {
        free(kc), free(vc), free(cos_t), free(sin_t), free(scores);
        return st;
    }
    /* the cached tokens of every (layer, kv head) row; (n_layer, n_kv_head, capacity, d) */
    if (r->len > 0)
        for (size_t row = 0; row < (size_t)c->n_layer * (size_t)c->n_kv_head; row++) {
            memcpy(kc + row * cap * d, r->kc + row * old_cap * d, sizeof(float) * (size_t)r->len * d);
            memcpy(vc + row * cap * d, r->vc + row * old_cap * d, sizeof(float) * (size_t)r->len * d);
        }
    if (c->use_rope) fill_rope(c, r->d, capacity, cos_t, sin_t);
    free(r->kc), free(r->vc), free(r->rope_cos), free(r->rope_sin);
    r->kc = kc;
    r->vc = vc;
    r->rope_cos = cos_t;
    r->rope_sin = sin_t;
    if (scores != NULL) {
        free(r->scores);
        r->scores = scores;
    }
    r->capacity = capacity;
    return FG_OK;
}

/* The rest of a runner whose packed weights are set: cache, pool, scratch. */
static fg_status runner_init(const char *fn, fgi_cpu_runner *r, int n_threads)
{
    r->layers = r->packed->layers;
    r->head = &r->packed->head;
    const int capacity = r->capacity;
    r->capacity = 0;
    FGI_TRY(fgi_cpu_runner_reserve(fn, r, capacity));
    FGI_TRY(fgi_cpu_pool_create(&r->pool, n_threads ? n_threads : fgi_cpu_online_cores()));
    return ensure_scratch(fn, r, 1);
}

fg_status fgi_cpu_runner_create(const char *fn, fgi_cpu_runner **runner, const fg_config *cfg,
                                const fg_weights *w, int capacity, int n_threads, fgi_cpu_isa isa)
{
    FGI_TRY(fgi_check_ptr(fn, "runner", runner));
    *runner = NULL;
    FGI_TRY(fgi_check_config(fn, cfg));
    FGI_TRY(fgi_check_weights(fn, cfg, w));
    FGI_TRY(check_threads(fn, n_threads));
    if (capacity < 1 || capacity > cfg->n_ctx)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: argument 'capacity' must be in 1 .. %d (got %d)", fn, cfg->n_ctx,
                        capacity);
    const fgi_cpu_kernels *k = fgi_cpu_kernels_for(isa);
    if (k == NULL)
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: instruction set %d not available here", fn,
                        (int)isa);
    fgi_cpu_runner *r;
    FGI_TRY(fgi_alloc(fn, (void **)&r, 1, sizeof *r));
    memset(r, 0, sizeof *r);
    r->c = *cfg;
    r->w = w;
    r->k = k;
    r->capacity = capacity;
    r->d = fg_config_head_dim(cfg);
    fg_status st = packed_create(fn, &r->packed, cfg, w);
    if (st == FG_OK) st = runner_init(fn, r, n_threads);
    if (st != FG_OK) {
        fgi_cpu_runner_destroy(r);
        return st;
    }
    *runner = r;
    return FG_OK;
}

fg_status fgi_cpu_runner_create_sharing(const char *fn, fgi_cpu_runner **runner,
                                        const fgi_cpu_runner *base, int capacity, int n_threads)
{
    FGI_TRY(fgi_check_ptr(fn, "runner", runner));
    *runner = NULL;
    FGI_TRY(fgi_check_ptr(fn, "base", base));
    FGI_TRY(check_threads(fn, n_threads));
    if (capacity < 1 || capacity > base->c.n_ctx)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: argument 'capacity' must be in 1 .. %d (got %d)", fn,
                        base->c.n_ctx, capacity);
    fgi_cpu_runner *r;
    FGI_TRY(fgi_alloc(fn, (void **)&r, 1, sizeof *r));
    memset(r, 0, sizeof *r);
    r->c = base->c;
    r->w = base->w;
    r->k = base->k;
    r->capacity = capacity;
    r->d = base->d;
    r->packed = base->packed;
    atomic_fetch_add(&r->packed->refs, 1);
    fg_status st = runner_init(fn, r, n_threads);
    if (st != FG_OK) {
        fgi_cpu_runner_destroy(r);
        return st;
    }
    *runner = r;
    return FG_OK;
}

int fgi_cpu_runner_len(const fgi_cpu_runner *r) { return r->len; }
int fgi_cpu_runner_threads(const fgi_cpu_runner *r) { return fgi_cpu_pool_threads(r->pool); }
const char *fgi_cpu_runner_isa(const fgi_cpu_runner *r) { return r->k->name; }
void fgi_cpu_runner_reset(fgi_cpu_runner *r) { r->len = 0; }

fg_status fgi_cpu_runner_set_threads(fgi_cpu_runner *r, int n_threads)
{
    static const char fn[] = "fg_session_set_threads";
    FGI_TRY(check_threads(fn, n_threads));
    const int n = n_threads ? n_threads : fgi_cpu_online_cores();
    if (n == fgi_cpu_pool_threads(r->pool)) return FG_OK;
    fgi_cpu_pool *pool;
    FGI_TRY(fgi_cpu_pool_create(&pool, n));
    fgi_cpu_pool_destroy(r->pool);
    r->pool = pool;
    return FG_OK;
}

/* ---- parallel pieces ---------------------------------------------------------- */

typedef void (*gemm_fn)(float *y, size_t ldy, const float *x, size_t ldx, int rows,
                        const fgi_cpu_mat *w, const float *b, int p0, int p1,
                        fgi_cpu_epilogue epi);

typedef struct {
    gemm_fn fn;
    int n_chunks;
    float *y;
    size_t ldy;
    const float *x;
    size_t ldx;
    int rows;
    const fgi_cpu_mat *w;
    const float *b;
    fgi_cpu_epilogue epi;
} gemm_job;

static void gemm_task(void *ctx, int chunk, int thread)
{
    const gemm_job *j = ctx;
    const int np = j->w->n_panels, n = j->n_chunks;
    const int p0 = (int)((long long)np * chunk / n), p1 = (int)((long long)np * (chunk + 1) / n);
    (void)thread;
    if (p0 < p1) j->fn(j->y, j->ldy, j->x, j->ldx, j->rows, j->w, j->b, p0, p1, j->epi);
}

static void gemm_with(fgi_cpu_runner *r, gemm_fn fn, float *y, size_t ldy, const float *x,
                      size_t ldx, int rows, const fgi_cpu_mat *w, const float *b,
                      fgi_cpu_epilogue epi)
{
    /* a few chunks per thread, so that threads the system runs late lose
     * little; none smaller than one panel, none at all for tiny products */
    const int threads = fgi_cpu_pool_threads(r->pool);
    const double macs = (double)rows * w->in * w->out;
    int n = macs < 32768.0 ? 1 : 4 * threads;
    if (n > w->n_panels) n = w->n_panels;
    gemm_job j = {fn, n, y, ldy, x, ldx, rows, w, b, epi};
    fgi_cpu_pool_run(r->pool, gemm_task, &j, n);
}

static void gemm(fgi_cpu_runner *r, float *y, size_t ldy, const float *x, size_t ldx, int rows,
                 const fgi_cpu_mat *w, const float *b, fgi_cpu_epilogue epi)
{
    gemm_with(r, r->k->gemm, y, ldy, x, ldx, rows, w, b, epi);
}

typedef struct {
    fgi_cpu_runner *r;
    int layer, T, L;
    int window; /* the layer's sliding window; 0: none */
} attention_job;

/* chunk: one (token, head) pair */
static void attention_task(void *ctx, int chunk, int thread)
{
    const attention_job *j = ctx;
    const fgi_cpu_runner *r = j->r;
    const fg_config *c = &r->c;
    const int nh = c->n_head, d = r->d, group = nh / c->n_kv_head;
    const size_t qkv_w = (size_t)fg_config_qkv_width(c), cap = (size_t)r->capacity;
    const size_t layer_off = (size_t)j->layer * c->n_kv_head * cap * d;
    const float scale = (float)(1.0 / sqrt((double)d));
    float *scores = r->scores + (size_t)thread * cap;
    const int row = chunk / nh, h = chunk % nh;
    /* keys [first, end): the causal prefix, or its last `window` keys */
    const int end = j->L + row + 1;
    const int first = j->window > 0 && end > j->window ? end - j->window : 0;
    const size_t kv = layer_off + (size_t)(h / group) * cap * d + (size_t)first * d;
    r->k->attend_row(r->att + (size_t)row * nh * d + (size_t)h * d,
                     r->qkv + (size_t)row * qkv_w + (size_t)h * d, r->kc + kv, r->vc + kv,
                     end - first, d, scale, scores);
}

typedef struct {
    fgi_cpu_runner *r;
    float *y;
    const float *x, *g, *b;
    int rows;
    size_t ld;
} rows_job;

/* chunk: one row */
static void norm_task(void *ctx, int row, int thread)
{
    const rows_job *j = ctx;
    const fg_config *c = &j->r->c;
    (void)thread;
    j->r->k->norm_row(j->y + (size_t)row * j->ld, j->x + (size_t)row * j->ld, j->g, j->b,
                          c->n_embd, c->norm_eps, c->arch == FG_ARCH_GPT2);
}

static void swiglu_task(void *ctx, int row, int thread)
{
    const rows_job *j = ctx;
    const int I = j->r->c.n_inner;
    float *gate = j->y + (size_t)row * j->ld;
    (void)thread;
    j->r->k->silu_mul(gate, gate + I, (size_t)I);
}

/* Few rows are not worth waking the other threads for. */
static void run_rows(fgi_cpu_runner *r, fgi_cpu_task task, rows_job *j)
{
    if (j->rows < 8)
        for (int row = 0; row < j->rows; row++) task(j, row, 0);
    else
        fgi_cpu_pool_run(r->pool, task, j, j->rows);
}

static void norm(fgi_cpu_runner *r, float *y, const float *x, const float *g, const float *b,
                 int rows)
{
    rows_job j = {r, y, x, g, b, rows, (size_t)r->c.n_embd};
    run_rows(r, norm_task, &j);
}

/* ---- forward ---------------------------------------------------------------- */

static void rope(const fgi_cpu_runner *r, float *v, int pos)
{
    const int half = r->d / 2;
    const float *cs = r->rope_cos + (size_t)pos * half, *sn = r->rope_sin + (size_t)pos * half;
    for (int j = 0; j < half; j++) {
        const float a = v[2 * j], b = v[2 * j + 1];
        v[2 * j] = a * cs[j] - b * sn[j];
        v[2 * j + 1] = b * cs[j] + a * sn[j];
    }
}

/* RoPE on the new q and k rows, k and v appended to the layer's cache. */
static void append_kv(fgi_cpu_runner *r, int layer, int T, int L)
{
    const fg_config *c = &r->c;
    const int nh = c->n_head, nkv = c->n_kv_head, d = r->d;
    const size_t qkv_w = (size_t)fg_config_qkv_width(c), cap = (size_t)r->capacity;
    const size_t layer_off = (size_t)layer * nkv * cap * d;
    for (int t = 0; t < T; t++) {
        float *row = r->qkv + (size_t)t * qkv_w;
        const int pos = L + t;
        for (int h = 0; h < nh + nkv && c->use_rope; h++) rope(r, row + (size_t)h * d, pos);
        for (int g = 0; g < nkv; g++) {
            const size_t slot = layer_off + ((size_t)g * cap + (size_t)pos) * d;
            memcpy(r->kc + slot, row + (size_t)(nh + g) * d, sizeof(float) * d);
            memcpy(r->vc + slot, row + (size_t)(nh + nkv + g) * d, sizeof(float) * d);
        }
    }
}

static void block(fgi_cpu_runner *r, int l, int T, int L)
{
    const fg_config *c = &r->c;
    const fg_layer_weights *lw = &r->w->layers[l];
    const packed_layer *p = &r->layers[l];
    const size_t C = (size_t)c->n_embd, qkv_w = (size_t)fg_config_qkv_width(c);
    const size_t att_w = (size_t)c->n_head * r->d, mlp_w = (size_t)p->mlp_in.out;

    norm(r, r->h, r->x, lw->ln_1_g, lw->ln_1_b, T);
    gemm(r, r->qkv, qkv_w, r->h, C, T, &p->qkv, lw->c_attn_b, FGI_EPI_STORE);
    append_kv(r, l, T, L);
    attention_job aj = {r, l, T, L, fg_config_layer_window(c, l)};
    fgi_cpu_pool_run(r->pool, attention_task, &aj, T * c->n_head);
    gemm(r, r->x, C, r->att, att_w, T, &p->proj, lw->c_proj_b, FGI_EPI_ADD);

    norm(r, r->h, r->x, lw->ln_2_g, lw->ln_2_b, T);
    if (c->arch == FG_ARCH_LLAMA) {
        gemm(r, r->mlp, mlp_w, r->h, C, T, &p->mlp_in, NULL, FGI_EPI_STORE);
        rows_job j = {r, r->mlp, NULL, NULL, NULL, T, mlp_w};
        run_rows(r, swiglu_task, &j);
    } else {
        gemm(r, r->mlp, mlp_w, r->h, C, T, &p->mlp_in, lw->fc_b, FGI_EPI_GELU);
    }
    gemm(r, r->x, C, r->mlp, mlp_w, T, &p->mlp_out, lw->mlp_proj_b, FGI_EPI_ADD);
}

fg_status fgi_cpu_forward(fgi_cpu_runner *r, float *logits, int logit_rows, const int *ids,
                          int T)
{
    static const char fn[] = "fg_session_forward";
    const fg_config *c = &r->c;
    FGI_TRY(fgi_check_ptr(fn, "logits", logits));
    FGI_TRY(fgi_check_ptr(fn, "ids", ids));
    FGI_TRY(fgi_check_min(fn, "T", T, 1));
    if (logit_rows != 1 && logit_rows != T)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: logit rows must be 1 or T (%d) (got %d)", fn, T,
                        logit_rows);
    if ((long long)r->len + T > r->capacity)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: context full: %d tokens cached + %d new > ctx %d", fn, r->len, T,
                        r->capacity);
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            return fgi_fail(FG_ERR_INVALID_ARG,
                            "%s: ids[%d] = %d is outside the vocabulary [0, %d)", fn, t, ids[t],
                            c->vocab_size);
    const int L = r->len;
    if (r->w->wpe != NULL && (long long)L + T > c->n_ctx)
        return fgi_fail(FG_ERR_INVALID_ARG,
                        "%s: position %lld is past the position table (n_ctx %d)", fn,
                        (long long)L + T - 1, c->n_ctx);
    FGI_TRY(ensure_scratch(fn, r, T));

    const size_t C = (size_t)c->n_embd;
    for (size_t t = 0; t < (size_t)T; t++) {
        const float *tok = r->w->wte + (size_t)ids[t] * C;
        const float *pos = r->w->wpe ? r->w->wpe + (L + t) * C : NULL;
        for (size_t i = 0; i < C; i++) r->x[t * C + i] = tok[i] + (pos ? pos[i] : 0.0f);
    }
    for (int l = 0; l < c->n_layer; l++) block(r, l, T, L);
    const float *last = r->x + (size_t)(T - logit_rows) * C;
    norm(r, r->h, last, r->w->ln_f_g, r->w->ln_f_b, logit_rows);
    gemm(r, logits, (size_t)c->vocab_size, r->h, C, logit_rows, r->head, NULL, FGI_EPI_STORE);
    r->len = L + T;
    return FG_OK;
}

/* ---- batched forward over a paged cache ------------------------------------------ */
/* A runner of capacity 1 lends its packed weights, kernels, pool and row
 * scratch; the batch adds a RoPE table for ctx positions, attention scratch
 * per thread, and per-row bookkeeping. Every GEMM runs on gemm_tiled, so a
 * row's bits never depend on the other rows of the step. */
struct fgi_cpu_batch {
    fgi_cpu_runner *r;
    int ctx;
    float *rope_cos, *rope_sin; /* (ctx, d/2) */
    float *scores;              /* (scores_threads, ctx) */
    int scores_threads;
    int *row_seq, *row_pos;     /* (meta_rows) sequence and position of each row */
    float *logits;              /* (logit_rows, vocab) classifier output */
    int meta_rows, logit_rows;
};

void fgi_cpu_batch_destroy(fgi_cpu_batch *b)
{
    if (b == NULL) return;
    fgi_cpu_runner_destroy(b->r);
    free(b->rope_cos), free(b->rope_sin), free(b->scores);
    free(b->row_seq), free(b->row_pos), free(b->logits);
    free(b);
}

fg_status fgi_cpu_batch_create(const char *fn, fgi_cpu_batch **batch, const fg_config *cfg,
                               const fg_weights *w, int ctx, int n_threads, fgi_cpu_isa isa)
{
    FGI_TRY(fgi_check_ptr(fn, "batch", batch));
    *batch = NULL;
    FGI_TRY(fgi_check_config(fn, cfg));
    if (ctx < 1 || ctx > cfg->n_ctx)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'ctx' must be in 1 .. %d (got %d)", fn,
                        cfg->n_ctx, ctx);
    fgi_cpu_batch *b;
    FGI_TRY(fgi_alloc(fn, (void **)&b, 1, sizeof *b));
    memset(b, 0, sizeof *b);
    b->ctx = ctx;
    fg_status st = fgi_cpu_runner_create(fn, &b->r, cfg, w, 1, n_threads, isa);
    const size_t half = (size_t)fg_config_head_dim(cfg) / 2;
    const size_t rope_n = (size_t)ctx * half > 0 ? (size_t)ctx * half : 1;
    if (st == FG_OK && cfg->use_rope) st = fgi_alloc(fn, (void **)&b->rope_cos, rope_n, sizeof(float));
    if (st == FG_OK && cfg->use_rope) st = fgi_alloc(fn, (void **)&b->rope_sin, rope_n, sizeof(float));
    if (st != FG_OK) {
        fgi_cpu_batch_destroy(b);
        return st;
    }
    if (cfg->use_rope) fill_rope(cfg, b->r->d, ctx, b->rope_cos, b->rope_sin);
    *batch = b;
    return FG_OK;
}

fg_status fgi_cpu_batch_set_threads(fgi_cpu_batch *b, int n_threads)
{
    return fgi_cpu_runner_set_threads(b->r, n_threads);
}

int fgi_cpu_batch_threads(const fgi_cpu_batch *b) { return fgi_cpu_pool_threads(b->r->pool); }

/* Per-call scratch for N rows and L logit rows, grown as needed. */
static fg_status batch_scratch(const char *fn, fgi_cpu_batch *b, int N, int L)
{
    FGI_TRY(ensure_scratch(fn, b->r, N));
    const int threads = fgi_cpu_pool_threads(b->r->pool);
    if (b->scores_threads < threads) {
        float *sc;
        FGI_TRY(fgi_alloc(fn, (void **)&sc, (size_t)threads * (size_t)b->ctx, sizeof(float)));
        free(b->scores);
        b->scores = sc;
        b->scores_threads = threads;
    }
    if (b->meta_rows < N) {
        int *rs, *rp;
        FGI_TRY(fgi_alloc(fn, (void **)&rs, (size_t)N, sizeof(int)));
        fg_status st = fgi_alloc(fn, (void **)&rp, (size_t)N, sizeof(int));
        if (st != FG_OK) {
            free(rs);
            return st;
        }
        free(b->row_seq), free(b->row_pos);
        b->row_seq = rs;
        b->row_pos = rp;
        b->meta_rows = N;
    }
    if (b->logit_rows < L) {
        float *lg;
        size_t n;
        FGI_TRY(fgi_check_elems(fn, "logits", &n, 2, (long long)L, (long long)b->r->c.vocab_size));
        FGI_TRY(fgi_alloc(fn, (void **)&lg, n, sizeof(float)));
        free(b->logits);
        b->logits = lg;
        b->logit_rows = L;
    }
    return FG_OK;
}

typedef struct {
    const fgi_cpu_batch *b;
    const fgi_kv_pool *pool;
    const fgi_batch_seq *seqs;
    int layer;
} batch_attention_job;

/* chunk: one (row, head) pair of the whole batch */
static void batch_attention_task(void *ctx, int chunk, int thread)
{
    const batch_attention_job *j = ctx;
    const fgi_cpu_runner *r = j->b->r;
    const fgi_kv_pool *p = j->pool;
    const fg_config *c = &r->c;
    const int nh = c->n_head, d = r->d, group = nh / c->n_kv_head;
    const size_t qkv_w = (size_t)fg_config_qkv_width(c);
    const int row = chunk / nh, h = chunk % nh;
    const fgi_batch_seq *q = &j->seqs[j->b->row_seq[row]];
    const size_t base = (size_t)j->layer * p->layer_stride + (size_t)(h / group) * p->head_stride;
    /* keys [first, end): the causal prefix, or its last `window` keys */
    const int end = j->b->row_pos[row] + 1, window = fg_config_layer_window(c, j->layer);
    const int first = window > 0 && end > window ? end - window : 0;
    r->k->attend_paged(r->att + (size_t)row * nh * d + (size_t)h * d,
                       r->qkv + (size_t)row * qkv_w + (size_t)h * d, p->k + base, p->v + base,
                       q->blocks, p->block_size, p->block_stride, first, end, d,
                       (float)(1.0 / sqrt((double)d)), j->b->scores + (size_t)thread * j->b->ctx);
}

static void rope_at(const fgi_cpu_batch *b, float *v, int pos)
{
    const int half = b->r->d / 2;
    const float *cs = b->rope_cos + (size_t)pos * half, *sn = b->rope_sin + (size_t)pos * half;
    for (int j = 0; j < half; j++) {
        const float x0 = v[2 * j], x1 = v[2 * j + 1];
        v[2 * j] = x0 * cs[j] - x1 * sn[j];
        v[2 * j + 1] = x1 * cs[j] + x0 * sn[j];
    }
}

/* RoPE on every row's q and k, then k and v into the row's slot. */
static void batch_append_kv(fgi_cpu_batch *b, fgi_kv_pool *p, const fgi_batch_seq *seqs,
                            int layer, int N)
{
    const fgi_cpu_runner *r = b->r;
    const fg_config *c = &r->c;
    const int nh = c->n_head, nkv = c->n_kv_head, d = r->d, bs = p->block_size;
    const size_t qkv_w = (size_t)fg_config_qkv_width(c);
    for (int row = 0; row < N; row++) {
        float *x = r->qkv + (size_t)row * qkv_w;
        const int pos = b->row_pos[row];
        const int32_t id = seqs[b->row_seq[row]].blocks[pos / bs];
        for (int h = 0; h < nh + nkv && c->use_rope; h++) rope_at(b, x + (size_t)h * d, pos);
        for (int g = 0; g < nkv; g++) {
            const size_t at = (size_t)layer * p->layer_stride + (size_t)id * p->block_stride +
                              (size_t)g * p->head_stride + (size_t)(pos % bs) * d;
            memcpy(p->k + at, x + (size_t)(nh + g) * d, sizeof(float) * d);
            memcpy(p->v + at, x + (size_t)(nh + nkv + g) * d, sizeof(float) * d);
        }
    }
}

static void batch_block(fgi_cpu_batch *b, fgi_kv_pool *pool, const fgi_batch_seq *seqs, int l,
                        int N)
{
    fgi_cpu_runner *r = b->r;
    const fg_config *c = &r->c;
    const fg_layer_weights *lw = &r->w->layers[l];
    const packed_layer *p = &r->layers[l];
    const gemm_fn tiled = r->k->gemm_tiled;
    const size_t C = (size_t)c->n_embd, qkv_w = (size_t)fg_config_qkv_width(c);
    const size_t att_w = (size_t)c->n_head * r->d, mlp_w = (size_t)p->mlp_in.out;

    norm(r, r->h, r->x, lw->ln_1_g, lw->ln_1_b, N);
    gemm_with(r, tiled, r->qkv, qkv_w, r->h, C, N, &p->qkv, lw->c_attn_b, FGI_EPI_STORE);
    batch_append_kv(b, pool, seqs, l, N);
    batch_attention_job aj = {b, pool, seqs, l};
    fgi_cpu_pool_run(r->pool, batch_attention_task, &aj, N * c->n_head);
    gemm_with(r, tiled, r->x, C, r->att, att_w, N, &p->proj, lw->c_proj_b, FGI_EPI_ADD);

    norm(r, r->h, r->x, lw->ln_2_g, lw->ln_2_b, N);
    if (c->arch == FG_ARCH_LLAMA) {
        gemm_with(r, tiled, r->mlp, mlp_w, r->h, C, N, &p->mlp_in, NULL, FGI_EPI_STORE);
        rows_job j = {r, r->mlp, NULL, NULL, NULL, N, mlp_w};
        run_rows(r, swiglu_task, &j);
    } else {
        gemm_with(r, tiled, r->mlp, mlp_w, r->h, C, N, &p->mlp_in, lw->fc_b, FGI_EPI_GELU);
    }
    gemm_with(r, tiled, r->x, C, r->mlp, mlp_w, N, &p->mlp_out, lw->mlp_proj_b, FGI_EPI_ADD);
}

fg_status fgi_cpu_batch_forward(const char *fn, fgi_cpu_batch *b, fgi_kv_pool *pool,
                                const fgi_batch_seq *seqs, int n_seqs)
{
    FGI_TRY(fgi_check_ptr(fn, "batch", b));
    fgi_cpu_runner *r = b->r;
    const fg_config *c = &r->c;
    int N, L = 0;
    FGI_TRY(fgi_batch_check(fn, c, pool, seqs, n_seqs, b->ctx, &N));
    for (int s = 0; s < n_seqs; s++)
        if (seqs[s].logits) L += seqs[s].all_logits ? seqs[s].n_tokens : 1;
    FGI_TRY(batch_scratch(fn, b, N, L));

    const size_t C = (size_t)c->n_embd, V = (size_t)c->vocab_size;
    for (int s = 0, row = 0; s < n_seqs; s++)
        for (int t = 0; t < seqs[s].n_tokens; t++, row++) {
            const int pos = seqs[s].start + t;
            const float *tok = r->w->wte + (size_t)seqs[s].ids[t] * C;
            const float *pe = r->w->wpe ? r->w->wpe + (size_t)pos * C : NULL;
            for (size_t i = 0; i < C; i++) r->x[row * C + i] = tok[i] + (pe ? pe[i] : 0.0f);
            b->row_seq[row] = s;
            b->row_pos[row] = pos;
        }
    for (int l = 0; l < c->n_layer; l++) batch_block(b, pool, seqs, l, N);
    if (L == 0) return FG_OK;
    /* the rows whose logits are wanted, gathered in order, then one GEMM */
    for (int s = 0, row = 0, out = 0; s < n_seqs; row += seqs[s].n_tokens, s++) {
        if (seqs[s].logits == NULL) continue;
        const int rows = seqs[s].all_logits ? seqs[s].n_tokens : 1;
        memcpy(r->qkv + (size_t)out * C, r->x + (size_t)(row + seqs[s].n_tokens - rows) * C,
               sizeof(float) * C * (size_t)rows);
        out += rows;
    }
    norm(r, r->h, r->qkv, r->w->ln_f_g, r->w->ln_f_b, L);
    gemm_with(r, r->k->gemm_tiled, b->logits, V, r->h, C, L, r->head, NULL, FGI_EPI_STORE);
    for (int s = 0, out = 0; s < n_seqs; s++) {
        if (seqs[s].logits == NULL) continue;
        const int rows = seqs[s].all_logits ? seqs[s].n_tokens : 1;
        memcpy(seqs[s].logits, b->logits + (size_t)out * V, sizeof(float) * V * (size_t)rows);
        out += rows;
    }
    return FG_OK;
}
