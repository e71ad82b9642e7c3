/* llama2.c legacy checkpoints (Karpathy's run.c format).
 *
 * Layout: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size, seq_len), then fp32 arrays in this order:
 * token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim),
 * wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim),
 * w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim),
 * rms_final (dim), freq_cis_real and freq_cis_imag (seq_len, head_size/2),
 * and, when vocab_size is negative, a separate classifier wcls (vocab, dim).
 * Matrices are stored (out, in) and are transposed into decoder.h's (in, out);
 * the file's RoPE already rotates interleaved pairs, so q/k rows keep their
 * order. The stored RoPE tables are skipped: angles are recomputed from
 * positions with base 10000. The file must be exactly as long as the header
 * implies (checked in 64 bits before anything is allocated). */
#include "loader_internal.h"
#include "config_internal.h"

#include <stdlib.h>
#include <string.h>

static int32_t load_le_i32(const unsigned char *p)
{
    const uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                       (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* a += b * c * d in 64 bits; returns 0 on overflow. */
static int add_product(uint64_t *a, uint64_t b, uint64_t c, uint64_t d)
{
    uint64_t p;
    return !__builtin_mul_overflow(b, c, &p) && !__builtin_mul_overflow(p, d, &p) &&
           !__builtin_add_overflow(*a, p, a);
}

/* Bytes of a file with this header; 0 when that overflows 64 bits. */
static uint64_t implied_size(const fg_config *c, int tied, int seq_len)
{
    const uint64_t dim = (uint64_t)c->n_embd, L = (uint64_t)c->n_layer;
    const uint64_t hidden = (uint64_t)c->n_inner, V = (uint64_t)c->vocab_size;
    const uint64_t head = dim / (uint64_t)c->n_head, kv = head * (uint64_t)c->n_kv_head;
    uint64_t floats = 0;
    int ok = add_product(&floats, V, dim, 1) &&          /* token_embedding */
             add_product(&floats, L, dim, 2) &&          /* rms_att, rms_ffn */
             add_product(&floats, L, dim, 2 * dim) &&    /* wq, wo */
             add_product(&floats, L, kv, 2 * dim) &&     /* wk, wv */
             add_product(&floats, L, hidden, 3 * dim) && /* w1, w2, w3 */
             add_product(&floats, dim, 1, 1) &&          /* rms_final */
             add_product(&floats, (uint64_t)seq_len, head / 2, 2) && /* freq_cis */
             add_product(&floats, tied ? 0 : V, dim, 1); /* wcls */
    uint64_t bytes;
    if (!ok || __builtin_mul_overflow(floats, 4, &bytes) ||
        __builtin_add_overflow(bytes, FGI_LLAMA2C_HEADER_BYTES, &bytes))
        return 0;
    return bytes;
}

fg_status fgi_llama2c_parse_header(fgi_llama2c_header *h, const char *fn,
                                   const char *file, const unsigned char *bytes,
                                   size_t len, uint64_t file_size)
{
    static const char *const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    int32_t v[7];
    *h = (fgi_llama2c_header){0};
    if (len < FGI_LLAMA2C_HEADER_BYTES || file_size < FGI_LLAMA2C_HEADER_BYTES)
        return fgi_file_error(FG_ERR_FORMAT, fn, file,
                              "file is %llu bytes, shorter than the %d-byte header",
                              (unsigned long long)(len < file_size ? len : file_size),
                              FGI_LLAMA2C_HEADER_BYTES);
    /* later llama2.c exports start with the magic 0x616b3432 ("ak42") */
    if (load_le_i32(bytes) == 0x616b3432)
        return fgi_file_error(FG_ERR_UNSUPPORTED, fn, file,
                              "is a versioned llama2.c export (magic \"ak42\"); only the "
                              "legacy format is supported");
    for (int i = 0; i < 7; i++) {
        v[i] = load_le_i32(bytes + 4 * i);
        const int ok = i == 5 ? v[i] != 0 && v[i] != INT32_MIN : v[i] >= 1;
        if (!ok)
            return fgi_file_error(FG_ERR_FORMAT, fn, file,
                                  "header field %s is %d, must be %s", names[i],
                                  (int)v[i], i == 5 ? "non-zero" : ">= 1");
    }
    const int tied = v[5] > 0, vocab = tied ? v[5] : -v[5];
    fg_config c = fg_config_llama(v[2], v[0], v[3], v[4], v[1], vocab, v[6]);
    if (fgi_check_config(fn, &c) != FG_OK) return fgi_config_format_error(fn, file);
    const uint64_t expected = implied_size(&c, tied, v[6]);
    if (expected != file_size)
        return fgi_file_error(FG_ERR_FORMAT, fn, file,
                              "is %llu bytes but its header (dim %d, hidden_dim %d, "
                              "n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, "
                              "seq_len %d) implies %s%llu bytes",
                              (unsigned long long)file_size, (int)v[0], (int)v[1],
                              (int)v[2], (int)v[3], (int)v[4], (int)v[5], (int)v[6],
                              expected ? "" : "more than ",
                              expected ? (unsigned long long)expected
                                       : (unsigned long long)UINT64_MAX);
    h->cfg = c;
    h->tied = tied;
    h->seq_len = v[6];
    return FG_OK;
}

/* The arrays are read in file order. */
typedef struct {
    const fgi_reader *r;
    uint64_t at;
    float *scratch;
} array_stream;

static fg_status next(array_stream *s, size_t rows, size_t cols, fgi_placement place)
{
    const fgi_tensor_read t = {s->at, FGI_F32, rows, cols, place};
    s->at += (uint64_t)rows * cols * sizeof(float);
    return fgi_read_tensor(s->r, &t, s->scratch);
}

static fgi_placement copy_to(const float *dst, size_t cols)
{
    return (fgi_placement){fgi_writable(dst), cols, 0, 0};
}

static fgi_placement transpose_to(const float *dst, size_t stride)
{
    return (fgi_placement){fgi_writable(dst), stride, 1, 0};
}

static fg_status read_arrays(array_stream *s, fg_model *m, int seq_len)
{
    const fg_config *c = &m->cfg;
    const size_t dim = (size_t)c->n_embd, hidden = (size_t)c->n_inner;
    const size_t head = dim / (size_t)c->n_head, kv = head * (size_t)c->n_kv_head;
    const size_t qkv = (size_t)fg_config_qkv_width(c), L = (size_t)c->n_layer;
    fg_layer_weights *lw = m->layers;
    FGI_TRY(next(s, (size_t)c->vocab_size, dim, copy_to(m->weights.wte, dim)));
    for (size_t l = 0; l < L; l++) FGI_TRY(next(s, 1, dim, copy_to(lw[l].ln_1_g, dim)));
    for (size_t l = 0; l < L; l++)
        FGI_TRY(next(s, dim, dim, transpose_to(lw[l].c_attn_w, qkv)));
    for (size_t l = 0; l < L; l++)
        FGI_TRY(next(s, kv, dim, transpose_to(lw[l].c_attn_w + dim, qkv)));
    for (size_t l = 0; l < L; l++)
        FGI_TRY(next(s, kv, dim, transpose_to(lw[l].c_attn_w + dim + kv, qkv)));
    for (size_t l = 0; l < L; l++)
        FGI_TRY(next(s, dim, dim, transpose_to(lw[l].c_proj_w, dim)));
    for (size_t l = 0; l < L; l++) FGI_TRY(next(s, 1, dim, copy_to(lw[l].ln_2_g, dim)));
    for (size_t l = 0; l < L; l++)
        FGI_TRY(next(s, hidden, dim, transpose_to(lw[l].fc_w, hidden)));
    for (size_t l = 0; l < L; l++)
        FGI_TRY(next(s, dim, hidden, transpose_to(lw[l].mlp_proj_w, dim)));
    for (size_t l = 0; l < L; l++)
        FGI_TRY(next(s, hidden, dim, transpose_to(lw[l].up_w, hidden)));
    FGI_TRY(next(s, 1, dim, copy_to(m->weights.ln_f_g, dim)));
    s->at += (uint64_t)seq_len * (head / 2) * 2 * sizeof(float); /* RoPE tables */
    if (m->weights.lm_head)
        FGI_TRY(next(s, (size_t)c->vocab_size, dim, copy_to(m->weights.lm_head, dim)));
    return FG_OK;
}

fg_status fgi_llama2c_load(fg_model **model, const fgi_reader *r)
{
    unsigned char header[FGI_LLAMA2C_HEADER_BYTES];
    const size_t n = r->size < sizeof header ? (size_t)r->size : sizeof header;
    fgi_llama2c_header h;
    *model = NULL;
    FGI_TRY(fgi_reader_read(r, header, 0, n));
    FGI_TRY(fgi_llama2c_parse_header(&h, r->fn, r->name, header, n, r->size));

    const fg_config *c = &h.cfg;
    const size_t dim = (size_t)c->n_embd, hidden = (size_t)c->n_inner;
    const fgi_model_parts parts = {.lm_head = !h.tied};
    /* every array fits in the file, which the header was checked against */
    const size_t scratch_floats = dim * (dim > hidden ? dim : hidden);
    fg_model *m;
    FGI_TRY(fgi_model_alloc(r->fn, &m, c, &parts));
    array_stream s = {r, FGI_LLAMA2C_HEADER_BYTES, NULL};
    fg_status st = fgi_alloc(r->fn, (void **)&s.scratch, scratch_floats, sizeof(float));
    if (st == FG_OK) st = read_arrays(&s, m, h.seq_len);
    free(s.scratch);
    if (st == FG_OK) st = fgi_check_weights(r->fn, c, &m->weights);
    if (st != FG_OK) {
        fg_model_destroy(m);
        return st;
    }
    *model = m;
    return FG_OK;
}

fg_status fgi_llama2c_load_file(fg_model **model, const char *fn, const char *path,
                                fgi_progress *progress)
{
    fgi_reader r;
    FGI_TRY(fgi_reader_open(&r, fn, path));
    r.progress = progress;
    fgi_progress_begin(progress, r.size);
    fg_status st = fgi_llama2c_load(model, &r);
    fgi_reader_close(&r);
    if (st == FG_OK) fgi_progress_finish(progress);
    return st;
}

fg_status fg_model_load_llama2c(fg_model **model, const char *path)
{
    static const char fn[] = "fg_model_load_llama2c";
    FGI_TRY(fgi_check_ptr(fn, "model", model));
    *model = NULL;
    FGI_TRY(fgi_check_ptr(fn, "path", path));
    return fgi_llama2c_load_file(model, fn, path, NULL);
}
