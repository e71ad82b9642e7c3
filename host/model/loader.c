/* The owning model object, loader dispatch, random models, and the plumbing
 * every format shares: readers over mapped files or memory and tensor reads
 * that convert and re-lay-out while they copy.
 *
 * A model is the struct, its layer table and one arena of floats holding
 * every weight in the layout of decoder.h. The arena is sized from the
 * configuration and is only allocated after a loader has checked that the
 * file really holds every tensor, so a lying header can never make it
 * larger than twice the file (F16 widened to F32). A mapped checkpoint's
 * arena is made on the first fg_model_weights (widen); until then, and for
 * the GPU, fgi_model_rows converts any rows of any slot straight from the
 * mapping (a table of stored tensors and where each goes).
 * Random weights come from one splitmix64 stream per tensor; each value is
 * an Irwin-Hall sum of four 16-bit uniforms, close enough to normal for a
 * benchmark and far cheaper than Box-Muller. */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64
#include "half.h"
#include "input.h"
#include "loader_internal.h"
#include "config_internal.h"

#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* Messages ------------------------------------------------------------------- */

fg_status fgi_file_error(fg_status status, const char *fn, const char *file,
                         const char *fmt, ...)
{
    char problem[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    return fgi_fail(status, "%s: %s: %s", fn, file, problem);
}

fg_status fgi_config_format_error(const char *fn, const char *file)
{
    /* copy first: fgi_fail writes the buffer fg_last_error() returns */
    char problem[512];
    const char *msg = fg_last_error();
    const size_t fn_len = strlen(fn);
    if (strncmp(msg, fn, fn_len) == 0 && strncmp(msg + fn_len, ": ", 2) == 0)
        msg += fn_len + 2;
    snprintf(problem, sizeof problem, "%s", msg);
    return fgi_file_error(FG_ERR_FORMAT, fn, file, "invalid configuration: %s",
                          problem);
}

/* The model object -------------------------------------------------------------- */

typedef struct {
    float *base; /* NULL: only count */
    size_t used;
} arena_cursor;

static const float *take(arena_cursor *a, size_t n)
{
    const float *p = a->base ? a->base + a->used : NULL;
    a->used += n;
    return p;
}

static void layout_layer(arena_cursor *a, const fg_config *c,
                         const fgi_model_parts *parts, fg_layer_weights *lw)
{
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner;
    const size_t qkv = (size_t)fg_config_qkv_width(c);
    const size_t att = (size_t)c->n_head * (size_t)fg_config_head_dim(c);
    const int b = parts->biases;
    lw->ln_1_g = take(a, C);
    lw->ln_1_b = b ? take(a, C) : NULL;
    lw->c_attn_w = take(a, C * qkv);
    lw->c_attn_b = parts->qkv_bias ? take(a, qkv) : NULL;
    lw->c_proj_w = take(a, att * C);
    lw->c_proj_b = b ? take(a, C) : NULL;
    lw->ln_2_g = take(a, C);
    lw->ln_2_b = b ? take(a, C) : NULL;
    lw->fc_w = take(a, C * I);
    lw->fc_b = b ? take(a, I) : NULL;
    lw->up_w = c->arch == FG_ARCH_LLAMA ? take(a, C * I) : NULL;
    lw->mlp_proj_w = take(a, I * C);
    lw->mlp_proj_b = b ? take(a, C) : NULL;
}

static void layout_model(arena_cursor *a, const fg_config *c,
                         const fgi_model_parts *parts, fg_weights *w)
{
    const size_t C = (size_t)c->n_embd;
    w->wte = take(a, (size_t)c->vocab_size * C);
    w->wpe = parts->wpe ? take(a, (size_t)c->n_ctx * C) : NULL;
    w->ln_f_g = take(a, C);
    w->ln_f_b = parts->biases ? take(a, C) : NULL;
    w->lm_head = parts->lm_head ? take(a, (size_t)c->vocab_size * C) : NULL;
}

/* Floats in the arena. Each tensor fits (fgi_check_config), so one layer's
 * sum cannot overflow; the sum over layers is checked. */
static fg_status arena_floats(const char *fn, const fg_config *c,
                              const fgi_model_parts *parts, size_t *total)
{
    arena_cursor count = {NULL, 0};
    fg_layer_weights lw;
    fg_weights w;
    size_t layers;
    layout_layer(&count, c, parts, &lw);
    FGI_TRY(fgi_check_elems(fn, "the model's layers", &layers, 2,
                          (long long)count.used, (long long)c->n_layer));
    count.used = 0;
    layout_model(&count, c, parts, &w);
    if (layers > (size_t)PTRDIFF_MAX / sizeof(double) - count.used)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: the model's size overflows", fn);
    *total = layers + count.used;
    return FG_OK;
}

/* The struct and its layer table; the arena comes later (model_arena). */
static fg_status model_shell(const char *fn, fg_model **model, const fg_config *cfg,
                             const fgi_model_parts *parts)
{
    fg_model *m;
    *model = NULL;
    FGI_TRY(fgi_alloc(fn, (void **)&m, 1, sizeof *m));
    pthread_mutex_t *lock = NULL;
    fg_status st = fgi_alloc(fn, (void **)&m->layers, (size_t)cfg->n_layer, sizeof *m->layers);
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&lock, 1, sizeof *lock);
    if (st == FG_OK && pthread_mutex_init(lock, NULL) != 0) {
        free(lock);
        lock = NULL;
        st = fgi_fail(FG_ERR_OOM, "%s: cannot create a mutex", fn);
    }
    m->lock = lock;
    m->cfg = *cfg;
    m->parts = *parts;
    if (st != FG_OK) {
        fg_model_destroy(m);
        return st;
    }
    *model = m;
    return FG_OK;
}

/* Allocates the zeroed fp32 arena and points the weight views into it. */
static fg_status model_arena(const char *fn, fg_model *m)
{
    size_t total = 0;
    FGI_TRY(arena_floats(fn, &m->cfg, &m->parts, &total));
    FGI_TRY(fgi_alloc(fn, (void **)&m->arena, total, sizeof(float)));
    arena_cursor a = {m->arena, 0};
    for (int l = 0; l < m->cfg.n_layer; l++)
        layout_layer(&a, &m->cfg, &m->parts, &m->layers[l]);
    layout_model(&a, &m->cfg, &m->parts, &m->weights);
    m->weights.layers = m->layers;
    return FG_OK;
}

fg_status fgi_model_alloc(const char *fn, fg_model **model, const fg_config *cfg,
                          const fgi_model_parts *parts)
{
    size_t total = 0;
    fg_model *m;
    *model = NULL;
    FGI_TRY(arena_floats(fn, cfg, parts, &total)); /* size errors before any allocation */
    FGI_TRY(model_shell(fn, &m, cfg, parts));
    const fg_status st = model_arena(fn, m);
    if (st != FG_OK) {
        fg_model_destroy(m);
        return st;
    }
    *model = m;
    return FG_OK;
}

fg_status fgi_model_alloc_lazy(const char *fn, fg_model **model, const fg_config *cfg,
                               const fgi_model_parts *parts, fgi_source_part *sources,
                               size_t n_sources, fgi_mapping *maps, size_t n_maps)
{
    size_t total = 0;
    fg_model *m = NULL;
    *model = NULL;
    fg_status st = arena_floats(fn, cfg, parts, &total);
    if (st == FG_OK) st = model_shell(fn, &m, cfg, parts);
    if (st != FG_OK) {
        free(sources);
        for (size_t i = 0; i < n_maps; i++) fgi_mapping_release(&maps[i]);
        free(maps);
        return st;
    }
    m->sources = sources;
    m->n_sources = n_sources;
    m->maps = maps;
    m->n_maps = n_maps;
    *model = m;
    return FG_OK;
}

fg_status fgi_model_adopt(const char *fn, fg_model **model, fgi_reader *readers, size_t n)
{
    fg_model *m = *model;
    fgi_mapping *maps = NULL;
    const fg_status st = fgi_alloc(fn, (void **)&maps, n ? n : 1, sizeof *maps);
    if (st != FG_OK) {
        fg_model_destroy(m);
        *model = NULL;
        return st;
    }
    for (size_t i = 0; i < n; i++) maps[i] = fgi_reader_take_mapping(&readers[i]);
    m->maps = maps;
    m->n_maps = n;
    return FG_OK;
}

float *fgi_writable(const float *weight) { return (float *)weight; }

void fg_model_destroy(fg_model *model)
{
    if (model == NULL) return;
    free(model->arena);
    free(model->layers);
    free(model->sources);
    for (size_t i = 0; i < model->n_maps; i++) fgi_mapping_release(&model->maps[i]);
    free(model->maps);
    if (model->lock != NULL) pthread_mutex_destroy(model->lock);
    free(model->lock);
    free(model);
}

const fg_config *fg_model_config(const fg_model *model)
{
    return model ? &model->cfg : NULL;
}

/* A slot's first element in an fp32 weights struct (NULL: absent). */
static const float *slot_floats(const fg_weights *w, fgi_slot slot, int layer)
{
    const fg_layer_weights *lw = slot >= FGI_SLOT_FIRST_LAYER ? &w->layers[layer] : NULL;
    switch (slot) {
    case FGI_SLOT_WTE: return w->wte;
    case FGI_SLOT_WPE: return w->wpe;
    case FGI_SLOT_LN_F_G: return w->ln_f_g;
    case FGI_SLOT_LN_F_B: return w->ln_f_b;
    case FGI_SLOT_LM_HEAD: return w->lm_head;
    case FGI_SLOT_LN_1_G: return lw->ln_1_g;
    case FGI_SLOT_LN_1_B: return lw->ln_1_b;
    case FGI_SLOT_C_ATTN_W: return lw->c_attn_w;
    case FGI_SLOT_C_ATTN_B: return lw->c_attn_b;
    case FGI_SLOT_C_PROJ_W: return lw->c_proj_w;
    case FGI_SLOT_C_PROJ_B: return lw->c_proj_b;
    case FGI_SLOT_LN_2_G: return lw->ln_2_g;
    case FGI_SLOT_LN_2_B: return lw->ln_2_b;
    case FGI_SLOT_FC_W: return lw->fc_w;
    case FGI_SLOT_FC_B: return lw->fc_b;
    case FGI_SLOT_UP_W: return lw->up_w;
    case FGI_SLOT_MLP_PROJ_W: return lw->mlp_proj_w;
    case FGI_SLOT_MLP_PROJ_B: return lw->mlp_proj_b;
    default: return NULL;
    }
}

/* Every stored tensor into its place in a new arena (the loader's fp32
 * conversions, exactly as an eager load did them). */
static fg_status widen(const char *fn, fg_model *m)
{
    size_t scratch_floats = 0;
    for (size_t i = 0; i < m->n_sources; i++) {
        const fgi_source_part *p = &m->sources[i];
        const int direct = !p->transpose && p->rope_head_dim == 0 &&
                           (p->stride == p->cols || p->rows == 1);
        if (!direct && p->rows * p->cols > scratch_floats) scratch_floats = p->rows * p->cols;
    }
    float *scratch = NULL;
    FGI_TRY(model_arena(fn, m));
    fg_status st = fgi_alloc(fn, (void **)&scratch, scratch_floats ? scratch_floats : 1,
                             sizeof(float));
    for (size_t i = 0; st == FG_OK && i < m->n_sources; i++) {
        const fgi_source_part *p = &m->sources[i];
        const size_t bytes = p->rows * p->cols * (p->dtype == FGI_F32 ? 4 : 2);
        fgi_reader r;
        fgi_reader_memory(&r, fn, "<mapping>", p->src, bytes);
        const fgi_tensor_read read = {
            .offset = 0, .dtype = p->dtype, .rows = p->rows, .cols = p->cols,
            .place = {fgi_writable(slot_floats(&m->weights, p->slot, p->layer)) + p->col_off,
                      p->stride, p->transpose, p->rope_head_dim}};
        st = fgi_read_tensor(&r, &read, scratch);
    }
    free(scratch);
    if (st != FG_OK) {
        free(m->arena);
        m->arena = NULL;
        memset(&m->weights, 0, sizeof m->weights);
        memset(m->layers, 0, (size_t)m->cfg.n_layer * sizeof *m->layers);
    }
    return st;
}

fg_status fgi_model_widen(const char *fn, const fg_model *model, const fg_weights **out)
{
    fg_model *m = (fg_model *)model; /* logically const: the widening is a cache */
    *out = NULL;
    if (m->sources == NULL || m->lock == NULL) {
        *out = &m->weights;
        return FG_OK;
    }
    pthread_mutex_lock(m->lock);
    fg_status st = FG_OK;
    if (m->arena == NULL) st = widen(fn, m);
    pthread_mutex_unlock(m->lock);
    if (st == FG_OK) *out = &m->weights;
    return st;
}

const fg_weights *fg_model_weights(const fg_model *model)
{
    const fg_weights *w = NULL;
    if (model == NULL) return NULL;
    return fgi_model_widen("fg_model_weights", model, &w) == FG_OK ? w : NULL;
}

/* Slots --------------------------------------------------------------------------- */

int fgi_model_slot_shape(const fg_model *m, fgi_slot slot, size_t *rows, size_t *cols)
{
    const fg_config *c = &m->cfg;
    const fgi_model_parts *p = &m->parts;
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner, V = (size_t)c->vocab_size;
    const size_t qkv = (size_t)fg_config_qkv_width(c);
    const size_t att = (size_t)c->n_head * (size_t)fg_config_head_dim(c);
    const int llama = c->arch == FG_ARCH_LLAMA;
    size_t r = 1, k = C;
    int present = 1;
    switch (slot) {
    case FGI_SLOT_WTE: r = V; break;
    case FGI_SLOT_WPE: r = (size_t)c->n_ctx; present = p->wpe; break;
    case FGI_SLOT_LN_F_G: case FGI_SLOT_LN_1_G: case FGI_SLOT_LN_2_G: break;
    case FGI_SLOT_LN_F_B: case FGI_SLOT_LN_1_B: case FGI_SLOT_LN_2_B:
    case FGI_SLOT_C_PROJ_B: case FGI_SLOT_MLP_PROJ_B: present = p->biases; break;
    case FGI_SLOT_LM_HEAD: r = V; present = p->lm_head; break;
    case FGI_SLOT_C_ATTN_W: r = C; k = qkv; break;
    case FGI_SLOT_C_ATTN_B: k = qkv; present = p->qkv_bias; break;
    case FGI_SLOT_C_PROJ_W: r = att; break;
    case FGI_SLOT_FC_W: r = C; k = I; break;
    case FGI_SLOT_FC_B: k = I; present = p->biases; break;
    case FGI_SLOT_UP_W: r = C; k = I; present = llama; break;
    case FGI_SLOT_MLP_PROJ_W: r = I; break;
    default: present = 0; break;
    }
    *rows = present ? r : 0;
    *cols = present ? k : 0;
    return present;
}

static int part_of(const fgi_source_part *p, fgi_slot slot, int layer)
{
    return p->slot == slot && (slot < FGI_SLOT_FIRST_LAYER || p->layer == layer);
}

static float load_elem(fgi_dtype dtype, const unsigned char *base, size_t i)
{
    if (dtype == FGI_F32) {
        const unsigned char *b = base + 4 * i;
        const uint32_t bits = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                              (uint32_t)b[3] << 24;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    const uint16_t h = (uint16_t)(base[2 * i] | base[2 * i + 1] << 8);
    return dtype == FGI_F16 ? fgi_f16_to_f32(h) : fgi_bf16_to_f32(h);
}

/* The loader's and the public element types name the 16-bit ones apart. */
static int same_type(fgi_dtype stored, fg_dtype want)
{
    return (stored == FGI_F32 && want == FG_DTYPE_F32) ||
           (stored == FGI_BF16 && want == FG_DTYPE_BF16) ||
           (stored == FGI_F16 && want == FG_DTYPE_F16);
}

/* Stored element i of base to element j of out: the bits as they are when
 * the types match (no NaN payload or rounding question), else widened
 * exactly and narrowed to nearest even. */
static void move_elem(fgi_dtype from, const unsigned char *base, size_t i, fg_dtype to,
                      void *out, size_t j)
{
    if (to != FG_DTYPE_F32 && same_type(from, to)) {
        ((uint16_t *)out)[j] = (uint16_t)(base[2 * i] | base[2 * i + 1] << 8);
        return;
    }
    const float f = load_elem(from, base, i);
    if (to == FG_DTYPE_F32) ((float *)out)[j] = f;
    else if (to == FG_DTYPE_BF16) ((uint16_t *)out)[j] = fgi_f32_to_bf16(f);
    else ((uint16_t *)out)[j] = fgi_f32_to_f16(f);
}

/* n consecutive stored elements from i on to out[j ...]. */
static void move_run(fgi_dtype from, const unsigned char *base, size_t i, fg_dtype to,
                     void *out, size_t j, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (same_type(from, to)) { /* the file's little-endian bytes are the host's */
        const size_t es = to == FG_DTYPE_F32 ? 4 : 2;
        memcpy((char *)out + j * es, base + i * es, n * es);
        return;
    }
#endif
    for (size_t k = 0; k < n; k++) move_elem(from, base, i + k, to, out, j + k);
}

static size_t placed(const fgi_source_part *p, size_t r)
{
    return p->rope_head_dim > 0 ? fgi_rope_interleaved_row(r, p->rope_head_dim) : r;
}

/* The rows [row0, row1) of a slot of `cols` columns that part p fills. */
static void part_rows(const fgi_source_part *p, size_t cols, size_t row0, size_t row1,
                      fg_dtype dtype, void *out)
{
    if (!p->transpose && p->rope_head_dim == 0 && p->col_off == 0 && p->stride == cols &&
        p->cols == cols) {
        /* stored row r is slot row r: one run */
        const size_t end = row1 < p->rows ? row1 : p->rows;
        if (end > row0) move_run(p->dtype, p->src, row0 * cols, dtype, out, 0, (end - row0) * cols);
        return;
    }
    if (p->transpose && p->stride == cols) {
        /* slot row c is stored column c; bands of stored rows so that each
         * is read in runs rather than one element per cache line */
        enum { band = 32 };
        const size_t end = row1 < p->cols ? row1 : p->cols;
        for (size_t r0 = 0; r0 < p->rows; r0 += band) {
            const size_t r1 = p->rows - r0 < band ? p->rows : r0 + band;
            for (size_t c = row0; c < end; c++) {
                const size_t at = (c - row0) * cols + p->col_off;
                for (size_t r = r0; r < r1; r++)
                    move_elem(p->dtype, p->src, r * p->cols + c, dtype, out, at + placed(p, r));
            }
        }
        return;
    }
    /* anything else (the q|k|v bias columns): element by element */
    for (size_t r = 0; r < p->rows; r++)
        for (size_t c = 0; c < p->cols; c++) {
            const size_t flat = p->col_off + (p->transpose ? c * p->stride + placed(p, r)
                                                           : placed(p, r) * p->stride + c);
            const size_t row = flat / cols;
            if (row >= row0 && row < row1)
                move_elem(p->dtype, p->src, r * p->cols + c, dtype, out, flat - row0 * cols);
        }
}

static const char *const slot_names[FGI_SLOT_COUNT] = {
    "wte", "wpe", "ln_f_g", "ln_f_b", "lm_head", "ln_1_g", "ln_1_b", "c_attn_w", "c_attn_b",
    "c_proj_w", "c_proj_b", "ln_2_g", "ln_2_b", "fc_w", "fc_b", "up_w", "mlp_proj_w",
    "mlp_proj_b"};

/* Narrowed to f16, a weight beyond its range (|x| > 65504) became inf: the
 * model would compute garbage, so the conversion is refused instead. */
static fg_status check_f16_range(const char *fn, fgi_slot slot, int layer, const uint16_t *h,
                                 size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((h[i] & 0x7fffu) == 0x7c00u) {
            char where[32] = "";
            if (slot >= FGI_SLOT_FIRST_LAYER) snprintf(where, sizeof where, " of layer %d", layer);
            return fgi_fail(FG_ERR_UNSUPPORTED,
                            "%s: weight %s%s has values beyond f16's range (|x| > 65504): run "
                            "this model in bf16 or f32", fn, slot_names[slot], where);
        }
    return FG_OK;
}

fg_status fgi_model_rows(const char *fn, const fg_model *m, fgi_slot slot, int layer,
                         size_t row0, size_t n_rows, fg_dtype dtype, void *out)
{
    size_t rows = 0, cols = 0;
    if (!fgi_model_slot_shape(m, slot, &rows, &cols) || row0 > rows || n_rows > rows - row0 ||
        (slot >= FGI_SLOT_FIRST_LAYER && (layer < 0 || layer >= m->cfg.n_layer)) ||
        fg_dtype_size(dtype) == 0)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: rows %zu + %zu of weight slot %d (layer %d) "
                        "do not exist", fn, row0, n_rows, (int)slot, layer);
    if (m->sources == NULL) { /* eager: from the fp32 arena */
        const float *src = slot_floats(&m->weights, slot, layer) + row0 * cols;
        if (dtype == FG_DTYPE_F32) {
            memcpy(out, src, n_rows * cols * sizeof(float));
            return FG_OK;
        }
        FGI_TRY(fg_dtype_from_f32(dtype, out, src, n_rows * cols));
        return dtype == FG_DTYPE_F16 ? check_f16_range(fn, slot, layer, out, n_rows * cols)
                                     : FG_OK;
    }
    int narrowed = 0; /* to f16 from another type */
    for (size_t i = 0; i < m->n_sources; i++)
        if (part_of(&m->sources[i], slot, layer)) {
            part_rows(&m->sources[i], cols, row0, row0 + n_rows, dtype, out);
            narrowed |= dtype == FG_DTYPE_F16 && m->sources[i].dtype != FGI_F16;
        }
    return narrowed ? check_f16_range(fn, slot, layer, out, n_rows * cols) : FG_OK;
}

const void *fgi_model_slot_bytes(const fg_model *m, fgi_slot slot, int layer, fg_dtype dtype)
{
    size_t rows = 0, cols = 0;
    if (!fgi_model_slot_shape(m, slot, &rows, &cols) ||
        (slot >= FGI_SLOT_FIRST_LAYER && (layer < 0 || layer >= m->cfg.n_layer)))
        return NULL;
    if (m->sources == NULL)
        return dtype == FG_DTYPE_F32 ? (const void *)slot_floats(&m->weights, slot, layer) : NULL;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const fgi_source_part *only = NULL;
    for (size_t i = 0; i < m->n_sources; i++) {
        if (!part_of(&m->sources[i], slot, layer)) continue;
        if (only != NULL) return NULL; /* fused from several */
        only = &m->sources[i];
    }
    if (only != NULL && same_type(only->dtype, dtype) && !only->transpose &&
        only->rope_head_dim == 0 && only->col_off == 0 && only->rows * only->cols == rows * cols &&
        (only->stride == cols || rows == 1))
        return only->src;
#endif
    return NULL;
}

/* Random models ------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct {
    uint64_t seed;
    uint64_t tensor; /* index of the next tensor: one stream each */
} random_fill;

/* n values of mean + std * (approximately standard normal). */
static void fill(random_fill *rf, const float *weight, size_t n, double mean,
                 double std)
{
    if (weight == NULL) return;
    float *p = fgi_writable(weight);
    uint64_t state = rf->seed ^ (++rf->tensor * 0xd1b54a32d192ed03ULL);
    /* four 16-bit uniforms sum to mean 2 * 65535, variance 4 * (65536^2 - 1) / 12 */
    const float scale = (float)(std * sqrt(3.0) / 65536.0), center = 2.0f * 65535.0f;
    const float offset = (float)mean;
    for (size_t i = 0; i < n; i++) {
        const uint64_t z = splitmix64(&state);
        const uint32_t sum = (uint32_t)(z & 0xffff) + (uint32_t)((z >> 16) & 0xffff) +
                             (uint32_t)((z >> 32) & 0xffff) + (uint32_t)(z >> 48);
        p[i] = offset + scale * ((float)sum - center);
    }
}

static void randomize(fg_model *m, uint64_t seed)
{
    const fg_config *c = &m->cfg;
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner;
    const size_t qkv = (size_t)fg_config_qkv_width(c), V = (size_t)c->vocab_size;
    const size_t att = (size_t)c->n_head * (C / (size_t)c->n_head);
    const double gain = 0.05, bias = 0.02, embed = 1.0 / sqrt((double)C);
    random_fill rf = {seed, 0};
    fill(&rf, m->weights.wte, V * C, 0.0, embed);
    fill(&rf, m->weights.wpe, (size_t)c->n_ctx * C, 0.0, embed);
    for (int l = 0; l < c->n_layer; l++) {
        const fg_layer_weights *lw = &m->layers[l];
        fill(&rf, lw->ln_1_g, C, 1.0, gain);
        fill(&rf, lw->ln_1_b, C, 0.0, bias);
        fill(&rf, lw->c_attn_w, C * qkv, 0.0, 1.0 / sqrt((double)C));
        fill(&rf, lw->c_attn_b, qkv, 0.0, bias);
        fill(&rf, lw->c_proj_w, att * C, 0.0, 1.0 / sqrt((double)att));
        fill(&rf, lw->c_proj_b, C, 0.0, bias);
        fill(&rf, lw->ln_2_g, C, 1.0, gain);
        fill(&rf, lw->ln_2_b, C, 0.0, bias);
        fill(&rf, lw->fc_w, C * I, 0.0, 1.0 / sqrt((double)C));
        fill(&rf, lw->fc_b, I, 0.0, bias);
        fill(&rf, lw->up_w, C * I, 0.0, 1.0 / sqrt((double)C));
        fill(&rf, lw->mlp_proj_w, I * C, 0.0, 1.0 / sqrt((double)I));
        fill(&rf, lw->mlp_proj_b, C, 0.0, bias);
    }
    fill(&rf, m->weights.ln_f_g, C, 1.0, gain);
    fill(&rf, m->weights.ln_f_b, C, 0.0, bias);
    fill(&rf, m->weights.lm_head, V * C, 0.0, embed);
}

fg_status fg_model_create_random(fg_model **model, const fg_config *cfg,
                                 uint64_t seed)
{
    static const char fn[] = "fg_model_create_random";
    FGI_TRY(fgi_check_ptr(fn, "model", model));
    *model = NULL;
    FGI_TRY(fgi_check_config(fn, cfg));
    const int gpt2 = cfg->arch == FG_ARCH_GPT2;
    const fgi_model_parts parts = {.wpe = gpt2 && !cfg->use_rope, .biases = gpt2,
                                   .qkv_bias = gpt2, .lm_head = 0};
    fg_model *m;
    FGI_TRY(fgi_model_alloc(fn, &m, cfg, &parts));
    randomize(m, seed);
    *model = m;
    return FG_OK;
}

/* Dispatch ------------------------------------------------------------------------ */

static fg_status load(const char *fn, fg_model **model, const char *path,
                      fgi_progress *progress)
{
    struct stat st;
    FGI_TRY(fgi_check_ptr(fn, "model", model));
    *model = NULL;
    FGI_TRY(fgi_check_ptr(fn, "path", path));
    if (stat(path, &st) != 0) {
        char reason[128];
        strerror_r(errno, reason, sizeof reason);
        return fgi_file_error(FG_ERR_IO, fn, path, "cannot open (%s)", reason);
    }
    if (S_ISDIR(st.st_mode)) return fgi_hf_load_folder(model, fn, path, progress);
    return fgi_llama2c_load_file(model, fn, path, progress);
}

fg_status fg_model_load(fg_model **model, const char *path)
{
    return load("fg_model_load", model, path, NULL);
}

fg_status fg_model_load_with_progress(fg_model **model, const char *path,
                                      fg_load_progress_fn progress, void *user)
{
    fgi_progress p = {.fn = progress, .user = user};
    return load("fg_model_load_with_progress", model, path, &p);
}

/* Load progress ------------------------------------------------------------------- */

void fgi_progress_begin(fgi_progress *p, uint64_t total)
{
    if (p == NULL || p->fn == NULL) return;
    p->done = 0;
    p->total = total;
    p->fn(0, total, p->user);
}

void fgi_progress_add(fgi_progress *p, uint64_t bytes)
{
    if (p == NULL || p->fn == NULL) return;
    /* the tensors are within the file, so this only guards the contract */
    p->done = bytes < p->total - p->done ? p->done + bytes : p->total;
    p->fn(p->done, p->total, p->user);
}

void fgi_progress_finish(fgi_progress *p)
{
    /* headers and skipped tables are never counted: end at exactly total */
    if (p == NULL || p->fn == NULL) return;
    p->done = p->total;
    p->fn(p->total, p->total, p->user);
}

/* Readers --------------------------------------------------------------------------- */

fg_status fgi_reader_open(fgi_reader *r, const char *fn, const char *path)
{
    /* mapped, never read whole: tensors are read (or copied to the card) at
     * their offsets, so the file's size needs no cap here (each format
     * bounds its header), and pages nobody asks for are never read */
    int fd;
    uint64_t size;
    *r = (fgi_reader){.fn = fn, .name = path};
    FGI_TRY(fgi_open_input(fn, path, &fd, &size));
    if (size > (uint64_t)SIZE_MAX / 2) {
        close(fd);
        return fgi_file_error(FG_ERR_IO, fn, path, "is %llu bytes, too large to map",
                              (unsigned long long)size);
    }
    void *addr = NULL;
    if (size > 0) { /* an empty file cannot be mapped; every read of it fails its bounds check */
        addr = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (addr == MAP_FAILED) {
            char reason[128];
            strerror_r(errno, reason, sizeof reason);
            close(fd);
            return fgi_file_error(FG_ERR_IO, fn, path, "cannot map %llu bytes (%s)",
                                  (unsigned long long)size, reason);
        }
    }
    close(fd); /* the mapping keeps the file */
    r->mem = addr;
    r->map = (fgi_mapping){addr, (size_t)size};
    r->size = size;
    return FG_OK;
}

void fgi_reader_memory(fgi_reader *r, const char *fn, const char *name,
                       const void *data, size_t size)
{
    *r = (fgi_reader){.fn = fn, .name = name, .size = size, .mem = data};
}

void fgi_mapping_release(fgi_mapping *m)
{
    if (m->addr != NULL) munmap(m->addr, m->len);
    *m = (fgi_mapping){0};
}

fgi_mapping fgi_reader_take_mapping(fgi_reader *r)
{
    const fgi_mapping m = r->map;
    r->map = (fgi_mapping){0};
    return m;
}

void fgi_reader_close(fgi_reader *r)
{
    fgi_mapping_release(&r->map);
    r->mem = NULL;
}

void fgi_reader_prefault(const fgi_reader *r)
{
    enum { chunk = 32768, page = 4096 };
    volatile unsigned char sink = 0;
    if (r->mem == NULL) return;
    for (uint64_t at = 0; at < r->size; at += chunk) {
        const uint64_t end = r->size - at < chunk ? r->size : at + chunk;
        for (uint64_t b = at; b < end; b += page) sink ^= r->mem[b];
        fgi_progress_add(r->progress, end - at);
    }
    (void)sink;
}

fg_status fgi_reader_read(const fgi_reader *r, void *dst, uint64_t offset,
                          size_t bytes)
{
    if (offset > r->size || bytes > r->size - offset)
        return fgi_file_error(FG_ERR_FORMAT, r->fn, r->name,
                              "needs bytes up to %llu + %zu but the file has %llu",
                              (unsigned long long)offset, bytes,
                              (unsigned long long)r->size);
    if (bytes == 0) return FG_OK;
    memcpy(dst, r->mem + offset, bytes);
    return FG_OK;
}

/* Tensor reads ---------------------------------------------------------------------- */

static uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void decode(float *dst, const unsigned char *raw, size_t n, fgi_dtype dtype)
{
    for (size_t i = 0; i < n; i++) {
        if (dtype == FGI_F32) {
            uint32_t bits = load_le32(raw + 4 * i);
            memcpy(&dst[i], &bits, sizeof bits);
        } else {
            const uint16_t h = (uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8);
            dst[i] = dtype == FGI_F16 ? fgi_f16_to_f32(h) : fgi_bf16_to_f32(h);
        }
    }
}

/* n values from the file, converted, in chunks so no raw copy is needed. */
static fg_status read_floats(const fgi_reader *r, uint64_t offset,
                             fgi_dtype dtype, size_t n, float *dst)
{
    unsigned char raw[32768];
    const size_t elem = dtype == FGI_F32 ? 4 : 2, per_chunk = sizeof raw / elem;
    for (size_t done = 0; done < n;) {
        const size_t k = n - done < per_chunk ? n - done : per_chunk;
        FGI_TRY(fgi_reader_read(r, raw, offset + done * elem, k * elem));
        fgi_progress_add(r->progress, k * elem);
        decode(dst + done, raw, k, dtype);
        done += k;
    }
    return FG_OK;
}

size_t fgi_rope_interleaved_row(size_t r, int head_dim)
{
    const size_t d = (size_t)head_dim, half = d / 2, head = r / d, j = r % d;
    return head * d + (j < half ? 2 * j : 2 * (j - half) + 1);
}

static size_t placed_row(const fgi_placement *p, size_t r)
{
    return p->rope_head_dim > 0 ? fgi_rope_interleaved_row(r, p->rope_head_dim) : r;
}

static void place(const fgi_placement *p, const float *src, size_t rows,
                  size_t cols)
{
    if (!p->transpose) {
        for (size_t r = 0; r < rows; r++)
            memcpy(p->dst + placed_row(p, r) * p->dst_stride, src + r * cols,
                   cols * sizeof(float));
        return;
    }
    /* bands of source rows, so destination rows are written in short runs
     * instead of one float per cache line */
    enum { band = 32 };
    for (size_t r0 = 0; r0 < rows; r0 += band) {
        const size_t r1 = rows - r0 < band ? rows : r0 + band;
        for (size_t c = 0; c < cols; c++) {
            float *out = p->dst + c * p->dst_stride;
            for (size_t r = r0; r < r1; r++) out[placed_row(p, r)] = src[r * cols + c];
        }
    }
}

fg_status fgi_read_tensor(const fgi_reader *r, const fgi_tensor_read *t,
                          float *scratch)
{
    const fgi_placement *p = &t->place;
    const int direct = !p->transpose && p->rope_head_dim == 0 &&
                       (p->dst_stride == t->cols || t->rows == 1);
    const size_t n = t->rows * t->cols;
    if (direct) return read_floats(r, t->offset, t->dtype, n, p->dst);
    FGI_TRY(read_floats(r, t->offset, t->dtype, n, scratch));
    place(p, scratch, t->rows, t->cols);
    return FG_OK;
}
