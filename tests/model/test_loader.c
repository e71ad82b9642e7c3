/* Model loaders: Hugging Face folders (GPT-2, Llama), llama2.c checkpoints,
 * random models, and every class of malformed file.
 *
 * The files are written here from random in-memory models (fixture.h) by a
 * small safetensors / llama2.c writer of this file, in the layout each
 * format really uses (Llama q/k rows in half-split rotary order, (out, in)
 * matrices, F16/BF16 rounding done here), then loaded and compared with the
 * in-memory model weight by weight and logit by logit. Everything is
 * written to a fresh mkdtemp folder that is removed after each test. */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "hf/hf_golden.h"
#include "hf/hf_window_golden.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Temporary folder ------------------------------------------------------------- */

static char tmp_root[64];

static void make_tmp(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/fg_loader_XXXXXX");
    cr_assert(mkdtemp(tmp_root) != NULL, "mkdtemp failed");
}

static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char child[1024];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            remove_tree(child);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void remove_tmp(void)
{
    if (tmp_root[0]) remove_tree(tmp_root);
}

/* A path under the temporary folder (rotating static buffers). */
static const char *tmp_path(const char *fmt, ...)
{
    static char bufs[8][512];
    static int next;
    char rel[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    char *p = bufs[next++ % 8];
    snprintf(p, 512, "%s/%s", tmp_root, rel);
    return p;
}

static const char *make_dir(const char *name)
{
    const char *dir = tmp_path("%s", name);
    cr_assert(mkdir(dir, 0700) == 0, "mkdir %s failed", dir);
    return dir;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "cannot write %s", path);
    cr_assert(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(path, text, strlen(text));
}

/* Growing byte and text buffers ---------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert(b->p != NULL);
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_text(bytes *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_text(bytes *b, const char *fmt, ...)
{
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && (size_t)n < sizeof tmp);
    put(b, tmp, (size_t)n);
}

static void put_le32(bytes *b, uint32_t v)
{
    unsigned char c[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                          (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    put(b, c, 4);
}

static void put_f32(bytes *b, float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    put_le32(b, u);
}

/* 16-bit formats, written from their definitions ---------------------------------- */

static uint16_t bf16_bits(float x)
{ /* round to nearest even on the dropped 16 bits */
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float bf16_value(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double f16_value(uint16_t h)
{
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 0) return sign * ldexp(m, -24);
    if (e == 31) return m ? NAN : sign * INFINITY;
    return sign * ldexp(1024 + m, e - 25);
}

/* Nearest binary16 (ties to even) of a value in the normal float range. */
static uint16_t f16_bits(float x)
{
    const double a = fabs((double)x);
    const uint16_t sign = signbit(x) ? 0x8000 : 0;
    int e2;
    cr_assert(a < 65504.0, "test value %g does not fit binary16", a);
    if (a == 0.0) return sign;
    frexp(a, &e2);
    const int top = e2 - 1 < -14 ? -14 : e2 - 1; /* exponent of the leading bit */
    const double quantum = ldexp(1.0, top - 10);
    const double v = nearbyint(a / quantum) * quantum;
    if (v == 0.0) return sign; /* below half the smallest subnormal (frexp(0) gives exponent 0) */
    frexp(v, &e2);
    if (e2 - 1 < -14) return (uint16_t)(sign | (uint16_t)(v / ldexp(1.0, -24)));
    return (uint16_t)(sign | (uint16_t)((e2 - 1 + 15) << 10) |
                      (uint16_t)(v / ldexp(1.0, e2 - 11) - 1024.0));
}

static float round_to(const char *dtype, float x)
{
    if (strcmp(dtype, "BF16") == 0) return bf16_value(bf16_bits(x));
    if (strcmp(dtype, "F16") == 0) return (float)f16_value(f16_bits(x));
    return x;
}

static void put_value(bytes *b, const char *dtype, float x)
{
    if (strcmp(dtype, "F32") == 0) {
        put_f32(b, x);
    } else {
        const uint16_t h = strcmp(dtype, "BF16") == 0 ? bf16_bits(x) : f16_bits(x);
        const unsigned char c[2] = {(unsigned char)h, (unsigned char)(h >> 8)};
        put(b, c, 2);
    }
}

/* A safetensors writer --------------------------------------------------------------- */

typedef struct {
    char name[128];
    char dtype[8];
    int n_dims;
    long long shape[2];
    const float *data; /* converted to dtype while writing, or ... */
    bytes raw;         /* ... these bytes as they are */
} st_tensor;

typedef struct {
    st_tensor t[256];
    int n;
} st_list;

static st_tensor *st_add(st_list *l, const char *dtype, const float *data, int n_dims,
                         long long d0, long long d1, const char *fmt, ...)
{
    cr_assert(l->n < 256);
    st_tensor *t = &l->t[l->n++];
    *t = (st_tensor){.n_dims = n_dims, .shape = {d0, d1}, .data = data};
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    return t;
}

static size_t st_count(const st_tensor *t)
{
    return t->n_dims == 1 ? (size_t)t->shape[0] : (size_t)(t->shape[0] * t->shape[1]);
}

static void st_free(st_list *l)
{
    for (int i = 0; i < l->n; i++) free(l->t[i].raw.p);
    l->n = 0;
}

/* The JSON header (offsets in list order) and the data region. */
static void st_build(const st_list *l, bytes *json, bytes *data)
{
    put_text(json, "{\"__metadata__\": {\"format\": \"pt\"}");
    for (int i = 0; i < l->n; i++) {
        const st_tensor *t = &l->t[i];
        const size_t begin = data->len;
        if (t->data)
            for (size_t k = 0; k < st_count(t); k++) put_value(data, t->dtype, t->data[k]);
        else
            put(data, t->raw.p, t->raw.len);
        put_text(json, ", \"%s\": {\"dtype\": \"%s\", \"shape\": [", t->name, t->dtype);
        for (int d = 0; d < t->n_dims; d++)
            put_text(json, "%s%lld", d ? ", " : "", t->shape[d]);
        put_text(json, "], \"data_offsets\": [%zu, %zu]}", begin, data->len);
    }
    put_text(json, "}");
    while (json->len % 8) put(json, " ", 1); /* padding, as writers do */
}

static void st_write_parts(const char *path, const void *json, size_t json_len,
                           const void *data, size_t data_len, uint64_t length_field)
{
    bytes file = {0};
    put_le32(&file, (uint32_t)length_field);
    put_le32(&file, (uint32_t)(length_field >> 32));
    put(&file, json, json_len);
    put(&file, data, data_len);
    write_file(path, file.p, file.len);
    free(file.p);
}

static void st_write(const char *path, const st_list *l)
{
    bytes json = {0}, data = {0};
    st_build(l, &json, &data);
    st_write_parts(path, json.p, json.len, data.p, data.len, json.len);
    free(json.p);
    free(data.p);
}

/* Model weights as a list ------------------------------------------------------------ */

typedef struct {
    char name[64];
    const float *p;
    size_t n;
} weight;

/* Every weight pointer of a model (NULL ones too, so lists of two models line
 * up), with its element count. */
static int weight_list(const fg_config *c, const fg_weights *w, weight *out, int max)
{
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner, V = (size_t)c->vocab_size;
    const size_t qkv = (size_t)fg_config_qkv_width(c);
    int n = 0;
#define ADD(ptr, count, ...)                                                    \
    do {                                                                        \
        cr_assert(n < max);                                                     \
        snprintf(out[n].name, sizeof out[n].name, __VA_ARGS__);                 \
        out[n].p = (ptr);                                                       \
        out[n].n = (count);                                                     \
        n++;                                                                    \
    } while (0)
    ADD(w->wte, V * C, "wte");
    ADD(w->wpe, (size_t)c->n_ctx * C, "wpe");
    for (int l = 0; l < c->n_layer; l++) {
        const fg_layer_weights *lw = &w->layers[l];
        ADD(lw->ln_1_g, C, "layer %d ln_1_g", l);
        ADD(lw->ln_1_b, C, "layer %d ln_1_b", l);
        ADD(lw->c_attn_w, C * qkv, "layer %d c_attn_w", l);
        ADD(lw->c_attn_b, qkv, "layer %d c_attn_b", l);
        ADD(lw->c_proj_w, (size_t)c->n_head * fg_config_head_dim(c) * C, "layer %d c_proj_w", l);
        ADD(lw->c_proj_b, C, "layer %d c_proj_b", l);
        ADD(lw->ln_2_g, C, "layer %d ln_2_g", l);
        ADD(lw->ln_2_b, C, "layer %d ln_2_b", l);
        ADD(lw->fc_w, C * I, "layer %d fc_w", l);
        ADD(lw->fc_b, I, "layer %d fc_b", l);
        ADD(lw->up_w, C * I, "layer %d up_w", l);
        ADD(lw->mlp_proj_w, I * C, "layer %d mlp_proj_w", l);
        ADD(lw->mlp_proj_b, C, "layer %d mlp_proj_b", l);
    }
    ADD(w->ln_f_g, C, "ln_f_g");
    ADD(w->ln_f_b, C, "ln_f_b");
    ADD(w->lm_head, V * C, "lm_head");
#undef ADD
    return n;
}

#define MAX_WEIGHTS 512

/* Rounds every weight of an in-memory model to dtype, in place. */
static void round_model(fgi_test_model *m, const char *dtype)
{
    static weight list[MAX_WEIGHTS];
    const int n = weight_list(&m->cfg, &m->w, list, MAX_WEIGHTS);
    for (int i = 0; i < n; i++)
        for (size_t k = 0; list[i].p && k < list[i].n; k++) {
            float *p = (float *)list[i].p;
            p[k] = round_to(dtype, p[k]);
        }
}

static void assert_same_config(const fg_config *got, const fg_config *want)
{
    cr_assert_eq(got->arch, want->arch);
    cr_assert_eq(got->n_layer, want->n_layer);
    cr_assert_eq(got->n_embd, want->n_embd);
    cr_assert_eq(got->n_head, want->n_head);
    cr_assert_eq(got->n_kv_head, want->n_kv_head);
    cr_assert_eq(got->n_inner, want->n_inner);
    cr_assert_eq(got->vocab_size, want->vocab_size);
    cr_assert_eq(got->n_ctx, want->n_ctx);
    cr_assert(got->norm_eps == want->norm_eps, "eps %g vs %g", got->norm_eps, want->norm_eps);
    cr_assert_eq(got->use_rope, want->use_rope);
    if (want->use_rope) cr_assert(got->rope_base == want->rope_base);
    cr_assert_eq(got->rope_scaling, want->rope_scaling);
    cr_assert(got->rope_factor == want->rope_factor);
    cr_assert(got->rope_low_freq_factor == want->rope_low_freq_factor);
    cr_assert(got->rope_high_freq_factor == want->rope_high_freq_factor);
    cr_assert_eq(got->rope_original_ctx, want->rope_original_ctx);
    cr_assert_eq(got->use_flash, 0);
    cr_assert_eq(fg_config_head_dim(got), fg_config_head_dim(want));
}

/* Every weight bitwise equal, and NULL exactly where the model has none. */
static void assert_same_weights(const fg_model *loaded, const fgi_test_model *m)
{
    static weight a[MAX_WEIGHTS], b[MAX_WEIGHTS];
    assert_same_config(fg_model_config(loaded), &m->cfg);
    cr_assert_eq(fg_weights_validate(fg_model_config(loaded), fg_model_weights(loaded)), FG_OK,
                 "%s", fg_last_error());
    const int n = weight_list(&m->cfg, fg_model_weights(loaded), a, MAX_WEIGHTS);
    cr_assert_eq(weight_list(&m->cfg, &m->w, b, MAX_WEIGHTS), n);
    for (int i = 0; i < n; i++) {
        cr_assert((a[i].p == NULL) == (b[i].p == NULL), "%s: loaded %s, expected %s",
                  a[i].name, a[i].p ? "present" : "NULL", b[i].p ? "present" : "NULL");
        if (a[i].p) fgi_assert_same(a[i].p, b[i].p, a[i].n * sizeof(float), a[i].name);
    }
}

/* Logits of T random tokens through both models must agree bitwise. */
static void assert_same_logits(const fg_model *loaded, const fgi_test_model *m, fgi_rng *rng)
{
    const fg_config *c = &m->cfg;
    const int T = c->n_ctx < 7 ? c->n_ctx : 7;
    int ids[7];
    fgi_test_random_ids(ids, T, c->vocab_size, rng);
    const size_t n = (size_t)T * c->vocab_size;
    float *got = fgi_buf_nan(n), *want = fgi_buf_nan(n);
    fg_kv_cache *ca, *cb;
    cr_assert_eq(fg_kv_cache_create(&ca, c, T), FG_OK);
    cr_assert_eq(fg_kv_cache_create(&cb, c, T), FG_OK);
    cr_assert_eq(fg_ref_forward(got, NULL, fg_model_config(loaded), fg_model_weights(loaded),
                                ca, ids, T), FG_OK, "%s", fg_last_error());
    cr_assert_eq(fg_ref_forward(want, NULL, c, &m->w, cb, ids, T), FG_OK);
    fgi_assert_guard(got, n, "loaded logits");
    fgi_assert_close(got, want, n, 0.0, 0.0, 0.0, "logits of the loaded model");
    fg_kv_cache_destroy(ca), fg_kv_cache_destroy(cb);
    fgi_buf_free(got), fgi_buf_free(want);
}

static fg_model *load_ok(fg_status (*loader)(fg_model **, const char *), const char *path)
{
    fg_model *m = (fg_model *)(uintptr_t)1;
    const fg_status st = loader(&m, path);
    cr_assert_eq(st, FG_OK, "loading %s: %s (%s) (seed %llu)", path, fg_status_str(st),
                 fg_last_error(), (unsigned long long)fgi_test_seed());
    cr_assert(m != NULL);
    return m;
}

/* Expects failure with `code`, *model NULL, and a message naming the file
 * (or its folder) and mentioning `needle`. */
static void load_fails(fg_status (*loader)(fg_model **, const char *), const char *path,
                       fg_status code, const char *needle)
{
    fg_model *m = (fg_model *)(uintptr_t)1;
    fgi_assert_status(loader(&m, path), code, needle);
    cr_assert(m == NULL, "the model pointer must be NULL after a failure");
    cr_assert(strstr(fg_last_error(), tmp_root) != NULL || tmp_root[0] == '\0',
              "message \"%s\" does not name the file", fg_last_error());
}

/* Load progress: every call a loader makes to an fg_load_progress_fn. */
typedef struct {
    int calls, ordered; /* ordered: done never decreased, total never changed */
    uint64_t first_done, last_done, total;
} progress_log;

static void record_progress(uint64_t done, uint64_t total, void *user)
{
    progress_log *log = user;
    if (log->calls++ == 0) {
        log->first_done = done, log->total = total, log->ordered = 1;
    } else if (done < log->last_done || total != log->total) {
        log->ordered = 0;
    }
    if (done > total) log->ordered = 0;
    log->last_done = done;
}

/* Loads path with progress and checks the reports: 0 first, then rising,
 * total the size of the weight file, done == total last, and more calls
 * than the two ends when the file holds more than one chunk of tensors. */
static fg_model *load_with_progress_ok(const char *path, uint64_t weight_file_bytes)
{
    progress_log log = {0};
    fg_model *m = (fg_model *)(uintptr_t)1;
    const fg_status st = fg_model_load_with_progress(&m, path, record_progress, &log);
    cr_assert_eq(st, FG_OK, "loading %s: %s (seed %llu)", path, fg_last_error(),
                 (unsigned long long)fgi_test_seed());
    cr_assert(m != NULL);
    cr_assert(log.calls >= 2 && log.ordered, "%d calls, ordered %d", log.calls, log.ordered);
    cr_assert_eq(log.first_done, 0);
    cr_assert_eq(log.total, weight_file_bytes);
    cr_assert_eq(log.last_done, weight_file_bytes);
    if (weight_file_bytes > 3 * 32768) cr_assert_gt(log.calls, 3, "progress while reading");
    return m;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    return (uint64_t)st.st_size;
}

/* GPT-2 folders ------------------------------------------------------------------------ */

static void gpt2_entries(st_list *l, const fgi_test_model *m, const char *dtype,
                         const char *pre)
{
    const fg_config *c = &m->cfg;
    const long long C = c->n_embd, I = c->n_inner, qkv = fg_config_qkv_width(c);
    st_add(l, dtype, m->w.wte, 2, c->vocab_size, C, "%swte.weight", pre);
    if (m->w.wpe) st_add(l, dtype, m->w.wpe, 2, c->n_ctx, C, "%swpe.weight", pre);
    for (int i = 0; i < c->n_layer; i++) {
        const fg_layer_weights *w = &m->layers[i];
        st_add(l, dtype, w->ln_1_g, 1, C, 0, "%sh.%d.ln_1.weight", pre, i);
        st_add(l, dtype, w->ln_1_b, 1, C, 0, "%sh.%d.ln_1.bias", pre, i);
        st_add(l, dtype, w->c_attn_w, 2, C, qkv, "%sh.%d.attn.c_attn.weight", pre, i);
        st_add(l, dtype, w->c_attn_b, 1, qkv, 0, "%sh.%d.attn.c_attn.bias", pre, i);
        st_add(l, dtype, w->c_proj_w, 2, C, C, "%sh.%d.attn.c_proj.weight", pre, i);
        st_add(l, dtype, w->c_proj_b, 1, C, 0, "%sh.%d.attn.c_proj.bias", pre, i);
        st_add(l, dtype, w->ln_2_g, 1, C, 0, "%sh.%d.ln_2.weight", pre, i);
        st_add(l, dtype, w->ln_2_b, 1, C, 0, "%sh.%d.ln_2.bias", pre, i);
        st_add(l, dtype, w->fc_w, 2, C, I, "%sh.%d.mlp.c_fc.weight", pre, i);
        st_add(l, dtype, w->fc_b, 1, I, 0, "%sh.%d.mlp.c_fc.bias", pre, i);
        st_add(l, dtype, w->mlp_proj_w, 2, I, C, "%sh.%d.mlp.c_proj.weight", pre, i);
        st_add(l, dtype, w->mlp_proj_b, 1, C, 0, "%sh.%d.mlp.c_proj.bias", pre, i);
    }
    st_add(l, dtype, m->w.ln_f_g, 1, C, 0, "%sln_f.weight", pre);
    st_add(l, dtype, m->w.ln_f_b, 1, C, 0, "%sln_f.bias", pre);
}

static void write_gpt2_config(const char *dir, const fg_config *c)
{
    bytes j = {0};
    put_text(&j, "{\"model_type\": \"gpt2\", \"activation_function\": \"gelu_new\", "
                 "\"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, \"n_positions\": %d, "
                 "\"n_ctx\": %d, \"vocab_size\": %d, \"layer_norm_epsilon\": %.9g",
             c->n_layer, c->n_head, c->n_embd, c->n_ctx, c->n_ctx, c->vocab_size,
             (double)c->norm_eps);
    if (c->n_inner == 4 * c->n_embd) put_text(&j, ", \"n_inner\": null");
    else put_text(&j, ", \"n_inner\": %d", c->n_inner);
    if (c->n_kv_head != c->n_head) put_text(&j, ", \"n_kv_head\": %d", c->n_kv_head);
    if (c->use_rope) put_text(&j, ", \"use_rope\": true, \"rope_base\": %.17g", c->rope_base);
    put_text(&j, "}");
    put(&j, "", 1);
    write_text(dir, "config.json", (const char *)j.p);
    free(j.p);
}

static fg_config random_gpt2_config(fgi_rng *rng)
{
    const int n_head = fgi_rng_int(rng, 1, 4), d = 2 * fgi_rng_int(rng, 2, 4);
    fg_config c = fg_config_gpt2(fgi_rng_int(rng, 1, 3), n_head * d, n_head,
                                 fgi_rng_int(rng, 20, 60), fgi_rng_int(rng, 8, 16));
    c.norm_eps = (float)(1e-5 * (1.0 + fgi_rng_uniform(rng)));
    if (fgi_rng_int(rng, 0, 1)) c.n_inner = fgi_rng_int(rng, 5, 40);
    return c;
}

/* Writes m as a GPT-2 folder, loads it, compares weights and logits. */
static void gpt2_round_trip(fgi_test_model *m, const char *dtype, const char *pre, int extras,
                            fgi_rng *rng)
{
    const char *dir = make_dir("gpt2");
    st_list *l = calloc(1, sizeof *l);
    round_model(m, dtype);
    gpt2_entries(l, m, dtype, pre);
    if (extras) { /* buffers and a tied classifier copy, which must be ignored */
        static const float causal[4] = {1, 0, 1, 1};
        for (int i = 0; i < m->cfg.n_layer; i++) {
            st_add(l, "F32", causal, 2, 2, 2, "%sh.%d.attn.bias", pre, i);
            st_add(l, "F32", causal, 1, 1, 0, "%sh.%d.attn.masked_bias", pre, i);
        }
        st_add(l, dtype, m->w.wte, 2, m->cfg.vocab_size, m->cfg.n_embd, "lm_head.weight");
    }
    st_write(tmp_path("gpt2/model.safetensors"), l);
    write_gpt2_config(dir, &m->cfg);
    fg_model *loaded = load_ok(fg_model_load_hf, dir);
    assert_same_weights(loaded, m);
    assert_same_logits(loaded, m, rng);
    fg_model_destroy(loaded);
    /* the dispatcher takes folders to the same loader */
    loaded = load_ok(fg_model_load, dir);
    assert_same_weights(loaded, m);
    fg_model_destroy(loaded);
    loaded = load_with_progress_ok(dir, file_size(tmp_path("gpt2/model.safetensors")));
    assert_same_weights(loaded, m);
    fg_model_destroy(loaded);
    st_free(l);
    free(l);
}

TestSuite(hf_gpt2, .init = make_tmp, .fini = remove_tmp);

Test(hf_gpt2, f32_with_transformer_prefix_and_ignored_buffers)
{
    fgi_rng rng = fgi_rng_make(101);
    fg_config c = random_gpt2_config(&rng);
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 0);
    gpt2_round_trip(&m, "F32", "transformer.", 1, &rng);
    fgi_test_model_free(&m);
}

Test(hf_gpt2, bf16_without_prefix)
{
    fgi_rng rng = fgi_rng_make(102);
    fg_config c = random_gpt2_config(&rng);
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 0);
    gpt2_round_trip(&m, "BF16", "", 0, &rng);
    fgi_test_model_free(&m);
}

Test(hf_gpt2, f16_gqa_rope_through_seed_keys)
{
    fgi_rng rng = fgi_rng_make(103);
    fg_config c = fg_config_gpt2(2, 4 * 8, 4, fgi_rng_int(&rng, 20, 60), 12);
    c.n_kv_head = fgi_rng_int(&rng, 0, 1) ? 2 : 1;
    c.use_rope = 1;
    c.rope_base = 500.0 + 20000.0 * fgi_rng_uniform(&rng);
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 0);
    cr_assert(m.w.wpe == NULL);
    gpt2_round_trip(&m, "F16", fgi_rng_int(&rng, 0, 1) ? "transformer." : "", 1, &rng);
    fgi_test_model_free(&m);
}

/* Every binary16 bit pattern through the loader: zeros, subnormals, normals,
 * infinities and NaNs, compared with the value the format defines. */
Test(hf_gpt2, f16_every_bit_pattern_converts_exactly)
{
    fgi_rng rng = fgi_rng_make(104);
    fg_config c = fg_config_gpt2(1, 64, 4, 1024, 8); /* wte: 65536 values */
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 0);
    const char *dir = make_dir("gpt2");
    st_list *l = calloc(1, sizeof *l);
    gpt2_entries(l, &m, "F16", "");
    for (int k = 0; k < 65536; k++) {
        const unsigned char b[2] = {(unsigned char)k, (unsigned char)(k >> 8)};
        put(&l->t[0].raw, b, 2);
    }
    l->t[0].data = NULL;
    st_write(tmp_path("gpt2/model.safetensors"), l);
    write_gpt2_config(dir, &c);
    fg_model *loaded = load_ok(fg_model_load_hf, dir);
    const float *wte = fg_model_weights(loaded)->wte;
    for (int k = 0; k < 65536; k++) {
        const double want = f16_value((uint16_t)k);
        if (isnan(want)) {
            cr_assert(isnan(wte[k]), "f16 0x%04x gives %g, expected NaN", k, (double)wte[k]);
        } else {
            cr_assert(wte[k] == want && !signbit(wte[k]) == !signbit(want),
                      "f16 0x%04x gives %.10g, expected %.10g", k, (double)wte[k], want);
        }
        cr_assert(!signbit(wte[k]) == !(k & 0x8000), "f16 0x%04x: sign lost", k);
    }
    /* a few values checked by hand: 1, -2, smallest subnormal, largest finite */
    cr_assert(wte[0x3c00] == 1.0f && wte[0xc000] == -2.0f);
    cr_assert(wte[0x0001] == 0x1p-24f && wte[0x7bff] == 65504.0f);
    cr_assert(isinf(wte[0x7c00]) && wte[0xfc00] < 0);
    fg_model_destroy(loaded);
    st_free(l);
    free(l);
    fgi_test_model_free(&m);
}

/* Llama folders ------------------------------------------------------------------------ */

/* Row r of a Hugging Face q/k projection (half-split rotary) is row
 * interleaved(r) of ours: feature j < d/2 of a head is our 2j, feature
 * j + d/2 is our 2j + 1. */
static size_t interleaved_feature(size_t r, size_t d)
{
    const size_t head = r / d, j = r % d;
    return head * d + (j < d / 2 ? 2 * j : 2 * (j - d / 2) + 1);
}

typedef struct {
    float *q, *k, *v, *o, *gate, *up, *down, *qb, *kb, *vb;
} hf_llama_layer;

/* Hugging Face (out, in) matrices from our (in, out) layout. */
static void to_hf_layer(hf_llama_layer *h, const fg_config *c, const fg_layer_weights *w)
{
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner, d = (size_t)fg_config_head_dim(c);
    const size_t nq = (size_t)c->n_head * d, nkv = (size_t)c->n_kv_head * d;
    const size_t qkv = (size_t)fg_config_qkv_width(c);
    *h = (hf_llama_layer){fgi_buf_nan(nq * C), fgi_buf_nan(nkv * C), fgi_buf_nan(nkv * C),
                          fgi_buf_nan(C * nq), fgi_buf_nan(I * C), fgi_buf_nan(I * C),
                          fgi_buf_nan(C * I), NULL, NULL, NULL};
    for (size_t i = 0; i < C; i++) {
        const float *row = w->c_attn_w + i * qkv;
        for (size_t r = 0; r < nq; r++) h->q[r * C + i] = row[interleaved_feature(r, d)];
        for (size_t r = 0; r < nkv; r++) {
            h->k[r * C + i] = row[nq + interleaved_feature(r, d)];
            h->v[r * C + i] = row[nq + nkv + r];
        }
        for (size_t r = 0; r < I; r++) {
            h->gate[r * C + i] = w->fc_w[i * I + r];
            h->up[r * C + i] = w->up_w[i * I + r];
        }
        for (size_t r = 0; r < nq; r++) h->o[i * nq + r] = w->c_proj_w[r * C + i];
    }
    for (size_t r = 0; r < I; r++)
        for (size_t o = 0; o < C; o++) h->down[o * I + r] = w->mlp_proj_w[r * C + o];
    if (w->c_attn_b) {
        h->qb = fgi_buf_nan(nq), h->kb = fgi_buf_nan(nkv), h->vb = fgi_buf_nan(nkv);
        for (size_t r = 0; r < nq; r++) h->qb[r] = w->c_attn_b[interleaved_feature(r, d)];
        for (size_t r = 0; r < nkv; r++) {
            h->kb[r] = w->c_attn_b[nq + interleaved_feature(r, d)];
            h->vb[r] = w->c_attn_b[nq + nkv + r];
        }
    }
}

static void free_hf_layer(hf_llama_layer *h)
{
    float **all[] = {&h->q, &h->k, &h->v, &h->o, &h->gate, &h->up, &h->down,
                     &h->qb, &h->kb, &h->vb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) fgi_buf_free(*all[i]);
}

static void write_llama_config(const char *dir, const fg_config *c, int tied,
                               const char *extra)
{
    bytes j = {0};
    put_text(&j, "{\"model_type\": \"llama\", \"hidden_act\": \"silu\", "
                 "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                 "\"num_key_value_heads\": %d, \"hidden_size\": %d, "
                 "\"intermediate_size\": %d, \"vocab_size\": %d, "
                 "\"max_position_embeddings\": %d, \"rms_norm_eps\": %.9g, "
                 "\"rope_theta\": %.17g, \"tie_word_embeddings\": %s, "
                 "\"rope_scaling\": null%s}",
             c->n_layer, c->n_head, c->n_kv_head, c->n_embd, c->n_inner, c->vocab_size,
             c->n_ctx, (double)c->norm_eps, c->rope_base, tied ? "true" : "false",
             extra ? extra : "");
    put(&j, "", 1);
    write_text(dir, "config.json", (const char *)j.p);
    free(j.p);
}

/* Writes m as a Hugging Face Llama folder; hf receives the per-layer
 * matrices (the caller frees them). */
static void llama_list(st_list *l, const fgi_test_model *m, const char *dtype,
                       hf_llama_layer *hf)
{
    const fg_config *c = &m->cfg;
    const long long C = c->n_embd, I = c->n_inner, d = fg_config_head_dim(c);
    const long long nq = c->n_head * d, nkv = c->n_kv_head * d;
    st_add(l, dtype, m->w.wte, 2, c->vocab_size, C, "model.embed_tokens.weight");
    for (int i = 0; i < c->n_layer; i++) {
        const fg_layer_weights *w = &m->layers[i];
        hf_llama_layer *h = &hf[i];
        to_hf_layer(h, c, w);
        st_add(l, dtype, w->ln_1_g, 1, C, 0, "model.layers.%d.input_layernorm.weight", i);
        st_add(l, dtype, h->q, 2, nq, C, "model.layers.%d.self_attn.q_proj.weight", i);
        st_add(l, dtype, h->k, 2, nkv, C, "model.layers.%d.self_attn.k_proj.weight", i);
        st_add(l, dtype, h->v, 2, nkv, C, "model.layers.%d.self_attn.v_proj.weight", i);
        if (h->qb) {
            st_add(l, dtype, h->qb, 1, nq, 0, "model.layers.%d.self_attn.q_proj.bias", i);
            st_add(l, dtype, h->kb, 1, nkv, 0, "model.layers.%d.self_attn.k_proj.bias", i);
            st_add(l, dtype, h->vb, 1, nkv, 0, "model.layers.%d.self_attn.v_proj.bias", i);
        }
        st_add(l, dtype, h->o, 2, C, nq, "model.layers.%d.self_attn.o_proj.weight", i);
        st_add(l, dtype, w->ln_2_g, 1, C, 0,
               "model.layers.%d.post_attention_layernorm.weight", i);
        st_add(l, dtype, h->gate, 2, I, C, "model.layers.%d.mlp.gate_proj.weight", i);
        st_add(l, dtype, h->up, 2, I, C, "model.layers.%d.mlp.up_proj.weight", i);
        st_add(l, dtype, h->down, 2, C, I, "model.layers.%d.mlp.down_proj.weight", i);
        /* the rotary buffer some exports carry, to be ignored */
        st_add(l, "F32", w->ln_1_g, 1, d / 2, 0,
               "model.layers.%d.self_attn.rotary_emb.inv_freq", i);
    }
    st_add(l, dtype, m->w.ln_f_g, 1, C, 0, "model.norm.weight");
    if (m->w.lm_head) st_add(l, dtype, m->w.lm_head, 2, c->vocab_size, C, "lm_head.weight");
}

static void write_llama_folder(const char *dir, const fgi_test_model *m, const char *dtype,
                               hf_llama_layer *hf)
{
    st_list *l = calloc(1, sizeof *l);
    llama_list(l, m, dtype, hf);
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_write(path, l);
    write_llama_config(dir, &m->cfg, m->w.lm_head == NULL, NULL);
    st_free(l);
    free(l);
}

static fg_config random_llama_config(fgi_rng *rng)
{
    const int n_kv = fgi_rng_int(rng, 1, 2), n_head = n_kv * fgi_rng_int(rng, 1, 3);
    const int d = 2 * fgi_rng_int(rng, 2, 5);
    fg_config c = fg_config_llama(fgi_rng_int(rng, 1, 3), n_head * d, n_head, n_kv,
                                  fgi_rng_int(rng, 8, 48), fgi_rng_int(rng, 20, 60),
                                  fgi_rng_int(rng, 8, 16));
    c.norm_eps = (float)(1e-6 * (1.0 + 9.0 * fgi_rng_uniform(rng)));
    c.rope_base = 100.0 + 20000.0 * fgi_rng_uniform(rng);
    return c;
}

static void llama_round_trip(const char *dtype, int untied, int qkv_bias, uint64_t stream)
{
    fgi_rng rng = fgi_rng_make(stream);
    fg_config c = random_llama_config(&rng);
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, untied);
    float *biases[3] = {NULL, NULL, NULL};
    for (int i = 0; qkv_bias && i < c.n_layer; i++) {
        biases[i] = fgi_buf_normal(&rng, (size_t)fg_config_qkv_width(&c), 0.1);
        m.layers[i].c_attn_b = biases[i];
    }
    round_model(&m, dtype);
    const char *dir = make_dir("llama");
    hf_llama_layer hf[3];
    write_llama_folder(dir, &m, dtype, hf);
    fg_model *loaded = load_ok(fg_model_load_hf, dir);
    assert_same_weights(loaded, &m);
    assert_same_logits(loaded, &m, &rng);
    fg_model_destroy(loaded);
    for (int i = 0; i < c.n_layer; i++) free_hf_layer(&hf[i]);
    for (int i = 0; i < 3; i++) fgi_buf_free(biases[i]);
    fgi_test_model_free(&m);
}

TestSuite(hf_llama, .init = make_tmp, .fini = remove_tmp);

Test(hf_llama, f16_tied) { llama_round_trip("F16", 0, 0, 201); }
Test(hf_llama, f32_untied) { llama_round_trip("F32", 1, 0, 202); }
Test(hf_llama, bf16_untied_with_qkv_bias) { llama_round_trip("BF16", 1, 1, 203); }

static void assert_message_is_safe(void)
{
    for (const unsigned char *p = (const unsigned char *)fg_last_error(); *p; p++)
        cr_assert(*p >= 0x20 && *p < 0x7F, "byte 0x%02X in \"%s\"", *p, fg_last_error());
}

/* Config variants of the Llama architecture (issue 14): the model written
 * as a Llama folder, its config.json then replaced by one of `type` whose
 * RoPE / family keys are `keys` (a JSON fragment starting with ", ").
 * Returns the folder. */
static const char *llama_variant(const char *name, const fgi_test_model *m, const char *type,
                                 const char *keys)
{
    const fg_config *c = &m->cfg;
    const char *dir = make_dir(name);
    hf_llama_layer hf[3];
    write_llama_folder(dir, m, "F32", hf);
    for (int i = 0; i < c->n_layer; i++) free_hf_layer(&hf[i]);
    bytes j = {0};
    put_text(&j, "{\"model_type\": \"%s\", \"hidden_act\": \"silu\", "
                 "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                 "\"num_key_value_heads\": %d, \"hidden_size\": %d, "
                 "\"intermediate_size\": %d, \"vocab_size\": %d, "
                 "\"max_position_embeddings\": %d, \"rms_norm_eps\": %.9g%s}",
             type, c->n_layer, c->n_head, c->n_kv_head, c->n_embd, c->n_inner,
             c->vocab_size, c->n_ctx, (double)c->norm_eps, keys);
    put(&j, "", 1);
    write_text(dir, "config.json", (const char *)j.p);
    free(j.p);
    return dir;
}

static const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static const char *fmt(const char *f, ...)
{
    static char buf[8][1024];
    static int next;
    char *b = buf[next++ % 8];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, sizeof buf[0], f, ap);
    va_end(ap);
    return b;
}

/* The model loads with the written configuration and computes m's logits. */
static void variant_loads(const char *dir, const fgi_test_model *m, fgi_rng *rng)
{
    fg_model *loaded = load_ok(fg_model_load_hf, dir);
    assert_same_weights(loaded, m);
    assert_same_logits(loaded, m, rng);
    fg_model_destroy(loaded);
}

/* variant_loads for a config with a window: the loaded configuration has
 * sliding_window `window` from layer `first` on, and computes m with it. */
static void window_loads(const char *dir, fgi_test_model *m, fgi_rng *rng, int window,
                         int first)
{
    fg_model *loaded = load_ok(fg_model_load_hf, dir);
    const fg_config *got = fg_model_config(loaded);
    cr_assert_eq(got->sliding_window, window, "%s: sliding_window %d, expected %d", dir,
                 got->sliding_window, window);
    cr_assert_eq(got->window_first_layer, first, "%s: window_first_layer %d, expected %d", dir,
                 got->window_first_layer, first);
    assert_same_weights(loaded, m);
    m->cfg.sliding_window = window;
    m->cfg.window_first_layer = first;
    assert_same_logits(loaded, m, rng);
    m->cfg.sliding_window = m->cfg.window_first_layer = 0;
    fg_model_destroy(loaded);
}

/* transformers 5 writes theta inside "rope_parameters"; it used to be
 * ignored (theta silently 10000). */
Test(hf_llama, rope_theta_from_rope_parameters_or_top_level)
{
    fgi_rng rng = fgi_rng_make(204);
    fg_config c = random_llama_config(&rng);
    c.rope_base = 500000.0 * (0.5 + fgi_rng_uniform(&rng));
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 1);
    const double t = c.rope_base;
    const char *tied = ", \"tie_word_embeddings\": false";
    variant_loads(llama_variant("v5", &m, "llama", fmt("%s, \"rope_parameters\": {\"rope_theta\": "
                                "%.17g, \"rope_type\": \"default\"}", tied, t)), &m, &rng);
    variant_loads(llama_variant("both", &m, "llama", fmt("%s, \"rope_theta\": %.17g, "
                                "\"rope_parameters\": {\"rope_theta\": %.17g}, "
                                "\"rope_scaling\": {\"rope_type\": \"default\"}", tied, t, t)),
                  &m, &rng);
    variant_loads(llama_variant("v4", &m, "llama", fmt("%s, \"rope_theta\": %.17g, "
                                "\"rope_parameters\": null", tied, t)), &m, &rng);
    variant_loads(llama_variant("alias", &m, "llama", fmt("%s, \"rope_scaling\": {\"rope_theta\": "
                                "%.17g, \"rope_type\": \"default\"}", tied, t)), &m, &rng);
    load_fails(fg_model_load_hf, llama_variant("disagree", &m, "llama",
               fmt("%s, \"rope_theta\": 10000, \"rope_parameters\": {\"rope_theta\": %.17g}",
                   tied, t)), FG_ERR_FORMAT, "disagree");
    load_fails(fg_model_load_hf, llama_variant("neg", &m, "llama",
               ", \"rope_parameters\": {\"rope_theta\": -1}"), FG_ERR_FORMAT,
               "\"rope_parameters.rope_theta\" must be a number");
    load_fails(fg_model_load_hf, llama_variant("notobj", &m, "llama",
               ", \"rope_parameters\": 5"), FG_ERR_FORMAT, "\"rope_parameters\" must be an object");
    fgi_test_model_free(&m);
}

/* Scaled RoPE as Llama 3.1/3.2 and linear-scaled models set it, in both
 * config forms; the loaded configuration carries it and the logits are
 * the reference's with those frequencies. */
Test(hf_llama, linear_and_llama3_rope_scaling_load)
{
    fgi_rng rng = fgi_rng_make(211);
    for (int k = 0; k < 4; k++) {
        fg_config c = random_llama_config(&rng);
        const int llama3 = k % 2, v5 = k / 2;
        c.rope_base = 500000.0;
        c.rope_scaling = llama3 ? FG_ROPE_LLAMA3 : FG_ROPE_LINEAR;
        c.rope_factor = 1.0 + 7.0 * fgi_rng_uniform(&rng);
        if (llama3) {
            c.rope_low_freq_factor = 1.0;
            c.rope_high_freq_factor = 4.0;
            c.rope_original_ctx = 8192;
        }
        fgi_test_model m;
        fgi_test_model_init(&m, &c, &rng, 1);
        const char *params =
            llama3 ? fmt("\"rope_type\": \"llama3\", \"factor\": %.17g, \"low_freq_factor\": 1.0, "
                         "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192",
                         c.rope_factor)
                   : fmt("\"type\": \"linear\", \"factor\": %.17g", c.rope_factor);
        const char *keys = v5 ? fmt(", \"rope_parameters\": {\"rope_theta\": 500000.0, %s}", params)
                              : fmt(", \"rope_theta\": 500000.0, \"rope_scaling\": {%s}", params);
        variant_loads(llama_variant(fmt("s%d", k), &m, "llama",
                                    fmt("%s, \"tie_word_embeddings\": false", keys)), &m, &rng);
        fgi_test_model_free(&m);
    }
}

/* Llama 3.1's frequencies (d 128, theta 500000, factor 8, low 1, high 4,
 * original context 8192): 29 kept, 6 blended, 29 divided. Expected values
 * from an independent float64 NumPy transcription of transformers'
 * _compute_llama3_parameters (its torch.where form):
 *   inv = 1/theta**(arange(0,d,2)/d); wl = 2*pi/inv
 *   il = where(wl > orig/low, inv/factor, inv)
 *   sm = (orig/wl - low)/(high - low); smoothed = (1-sm)*il/factor + sm*il
 *   il = where(~(wl < orig/high) & ~(wl > orig/low), smoothed, il) */
Test(hf_llama, llama3_frequencies_match_transformers)
{
    static const double want[64] = {1, 0.81461723385654472, 0.66360123769608836, 0.54058100463576697, 0.44036660267178046, 0.35873022375128993, 0.29222782257301516, 0.23805382048035076, 0.19392274474868576, 0.15797280990904319, 0.12868737343265052, 0.10483095217796996, 0.085397100285765609, 0.069565949614160322, 0.056669621445291044, 0.04616405026546052, 0.037606030930863933, 0.030634520893224042, 0.024955408670558694, 0.020329105980970156, 0.016560440080994446, 0.01349041989022675, 0.010989528534539824, 0.008952259336194401, 0.0072926647372171102, 0.0059407303756749668, 0.0048394213457198928, 0.0039422760301166563, 0.0032114459947525913, 0.0021665707635033591, 0.0013718935677611381, 0.00085675141291963208, 0.0005248461609929549, 0.00031269375038406517, 0.00017850781276799638, 9.5562123539646833e-05, 7.7846552739324512e-05, 6.3415143457776137e-05, 5.1659068748189563e-05, 4.2082367687255257e-05, 3.4281021959525912e-05, 2.7925911282444464e-05, 2.2748928601828186e-05, 1.8531669290821308e-05, 1.509621717643313e-05, 1.2297638677963614e-05, 1.0017868402809974e-05, 8.1607282474359434e-06, 6.6478698711812362e-06, 5.4154693654999229e-06, 4.4115346745584042e-06, 3.5937121736509999e-06, 2.9274998701761677e-06, 2.3847918463583037e-06, 1.942692537204043e-06, 1.5825508208909103e-06, 1.2891731721515574e-06, 1.0501826834601687e-06, 8.5549691264436605e-07, 6.9690252855116753e-07, 5.6770881007598369e-07, 4.6246538050008837e-07, 3.7673226901739645e-07, 3.0689259889145111e-07};
    fg_config c = fg_config_llama(1, 128 * 4, 4, 4, 8, 8, 131072);
    c.rope_base = 500000.0;
    c.rope_scaling = FG_ROPE_LLAMA3;
    c.rope_factor = 8.0;
    c.rope_low_freq_factor = 1.0;
    c.rope_high_freq_factor = 4.0;
    c.rope_original_ctx = 8192;
    cr_assert_eq(fg_config_validate(&c), FG_OK, "%s", fg_last_error());
    for (int j = 0; j < 64; j++) {
        const double got = fg_config_rope_inv_freq(&c, j);
        cr_assert(fabs(got - want[j]) <= 1e-14 * want[j], "pair %d: %.17g vs %.17g", j, got,
                  want[j]);
    }
    /* linear: every frequency over the factor */
    c.rope_scaling = FG_ROPE_LINEAR;
    for (int j = 0; j < 64; j++)
        cr_assert(fg_config_rope_inv_freq(&c, j) == pow(500000.0, -2.0 * j / 128.0) / 8.0);
    cr_assert(fg_config_rope_inv_freq(&c, 64) == 0.0);
    cr_assert(fg_config_rope_inv_freq(NULL, 0) == 0.0);
    /* invalid scaling parameters are refused by validation */
    c.rope_factor = 0.5;
    fgi_assert_status(fg_config_validate(&c), FG_ERR_INVALID_ARG, "rope_factor");
    c.rope_factor = 8.0;
    c.rope_scaling = FG_ROPE_LLAMA3;
    c.rope_high_freq_factor = 1.0;
    fgi_assert_status(fg_config_validate(&c), FG_ERR_INVALID_ARG, "rope_low_freq_factor");
    c.rope_high_freq_factor = 4.0;
    c.rope_original_ctx = 0;
    fgi_assert_status(fg_config_validate(&c), FG_ERR_INVALID_ARG, "rope_original_ctx");
    c.rope_scaling = (fg_rope_scaling)7;
    fgi_assert_status(fg_config_validate(&c), FG_ERR_INVALID_ARG, "rope_scaling");
}

/* Other rope types and any other RoPE parameter change the angles in ways
 * not computed here: refused with the key named, never ignored. */
Test(hf_llama, unknown_rope_settings_are_refused_with_the_key_named)
{
    fgi_rng rng = fgi_rng_make(205);
    fg_config c = random_llama_config(&rng);
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 0);
    static const struct {
        const char *keys, *needle;
        fg_status code;
    } cases[] = {
        {", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}",
         "\"rope_scaling.rope_type\": \"yarn\" is not supported", FG_ERR_UNSUPPORTED},
        {", \"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"dynamic\", "
         "\"factor\": 2.0}", "\"rope_parameters.rope_type\": \"dynamic\" is not supported",
         FG_ERR_UNSUPPORTED},
        {", \"rope_parameters\": {\"rope_theta\": 10000.0, \"partial_rotary_factor\": 0.5}",
         "\"rope_parameters.partial_rotary_factor\" is not supported", FG_ERR_UNSUPPORTED},
        {", \"rope_parameters\": {\"rope_type\": 3}", "\"rope_parameters.rope_type\": 3",
         FG_ERR_UNSUPPORTED},
        {", \"rope_parameters\": {\"x\\n\\u001b[2J\": 1}",
         "\"rope_parameters.x\\x0A\\x1B[2J\" is not supported", FG_ERR_UNSUPPORTED},
        {", \"rope_scaling\": {\"rope_type\": \"default\", \"factor\": 2.0}",
         "\"rope_scaling.factor\" is not used by rope type \"default\"", FG_ERR_UNSUPPORTED},
        {", \"rope_scaling\": {\"rope_type\": \"linear\", \"low_freq_factor\": 2.0, "
         "\"factor\": 2.0}", "\"rope_scaling.low_freq_factor\" is not used by rope type "
         "\"linear\"", FG_ERR_UNSUPPORTED},
        {", \"rope_scaling\": {\"rope_type\": \"linear\"}",
         "\"rope_scaling\" of rope type \"linear\" needs \"factor\"", FG_ERR_FORMAT},
        {", \"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
         "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0}",
         "needs \"original_max_position_embeddings\"", FG_ERR_FORMAT},
        {", \"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
         "\"low_freq_factor\": 4.0, \"high_freq_factor\": 4.0, "
         "\"original_max_position_embeddings\": 8192}",
         "\"rope_parameters.high_freq_factor\" (4) must be greater than", FG_ERR_FORMAT},
        {", \"rope_scaling\": {\"type\": \"linear\", \"rope_type\": \"default\", "
         "\"factor\": 2.0}", "\"rope_scaling.type\" and \"rope_scaling.rope_type\" disagree",
         FG_ERR_FORMAT},
        {", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 0.5}",
         "\"rope_scaling.factor\" must be >= 1", FG_ERR_FORMAT},
        {", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": \"2\"}",
         "\"rope_scaling.factor\" must be a number", FG_ERR_FORMAT},
        {", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2.0}, "
         "\"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 4.0}",
         "\"rope_scaling\" and \"rope_parameters\" disagree", FG_ERR_FORMAT},
        {", \"rope_theta\": 10000, \"rope_scaling\": {\"rope_theta\": 5.0}",
         "\"rope_theta\" (10000) and \"rope_scaling.rope_theta\" (5) disagree", FG_ERR_FORMAT},
        {", \"rope_scaling\": {\"rope_theta\": 5.0}, \"rope_parameters\": {\"rope_theta\": 6}",
         "\"rope_scaling.rope_theta\" (5) and \"rope_parameters.rope_theta\" (6) disagree",
         FG_ERR_FORMAT},
        {", \"attention_bias\": true", "\"attention_bias\": true is not supported",
         FG_ERR_UNSUPPORTED},
        {", \"mlp_bias\": true", "\"mlp_bias\": true is not supported", FG_ERR_UNSUPPORTED},
        {", \"head_dim\": 0", "\"head_dim\" must be an integer", FG_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        load_fails(fg_model_load_hf, llama_variant(fmt("r%zu", i), &m, "llama", cases[i].keys),
                   cases[i].code, cases[i].needle);
        assert_message_is_safe();
    }
    fgi_test_model_free(&m);
}

/* "head_dim" given explicitly and different from hidden_size / heads (as
 * Mistral-Nemo-style configs do): q, k, v are n_head * head_dim wide and
 * o_proj reads n_head * head_dim features; narrower and wider heads, both
 * load and compute what the in-memory model computes. */
Test(hf_llama, explicit_head_dim)
{
    fgi_rng rng = fgi_rng_make(208);
    for (int k = 0; k < 2; k++) {
        fg_config c = random_llama_config(&rng);
        const int natural = c.n_embd / c.n_head;
        c.head_dim = k == 0 ? natural + 2 : natural - 2; /* natural is 4 .. 10 */
        fgi_test_model m;
        fgi_test_model_init(&m, &c, &rng, k == 1);
        const char *dir = llama_variant(fmt("hd%d", k), &m, "mistral",
                                        fmt(", \"rope_theta\": %.17g, \"head_dim\": %d, "
                                            "\"sliding_window\": null, "
                                            "\"tie_word_embeddings\": %s", c.rope_base,
                                            c.head_dim, k == 1 ? "false" : "true"));
        fg_model *loaded = load_ok(fg_model_load_hf, dir);
        cr_assert_eq(fg_model_config(loaded)->head_dim, c.head_dim, "head_dim %d, expected %d",
                     fg_model_config(loaded)->head_dim, c.head_dim);
        assert_same_weights(loaded, &m);
        assert_same_logits(loaded, &m, &rng);
        fg_model_destroy(loaded);
        fgi_test_model_free(&m);
    }
}

/* Mistral is the Llama architecture; its sliding window is accepted only
 * where it cannot apply (null, or at least max_position_embeddings). */
Test(hf_llama, mistral_with_and_without_a_window)
{
    fgi_rng rng = fgi_rng_make(206);
    fg_config c = random_llama_config(&rng);
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 1);
    const char *base = fmt(", \"rope_theta\": %.17g", c.rope_base);
    window_loads(llama_variant("m1", &m, "mistral", fmt("%s, \"sliding_window\": null", base)),
                 &m, &rng, 0, 0);
    window_loads(llama_variant("m2", &m, "mistral", fmt("%s, \"sliding_window\": %d, "
                               "\"layer_types\": [\"full_attention\"]", base, c.n_ctx)),
                 &m, &rng, c.n_ctx, 0);
    /* a window inside the context is computed, on every layer */
    window_loads(llama_variant("m3", &m, "mistral",
                               fmt("%s, \"sliding_window\": %d", base, c.n_ctx / 3)),
                 &m, &rng, c.n_ctx / 3, 0);
    /* absent: transformers' default of 4096 */
    window_loads(llama_variant("m5", &m, "mistral", base), &m, &rng, 4096, 0);
    /* transformers' Mistral ignores layer_types; refused rather than guessed */
    load_fails(fg_model_load_hf, llama_variant("m4", &m, "mistral",
               fmt("%s, \"layer_types\": [\"sliding_attention\"]", base)), FG_ERR_UNSUPPORTED,
               "\"layer_types\": \"sliding_attention\"");
    load_fails(fg_model_load_hf, llama_variant("m6", &m, "mistral",
               fmt("%s, \"sliding_window\": 0", base)), FG_ERR_FORMAT, "\"sliding_window\"");
    /* Llama has no window: one inside the context is refused */
    load_fails(fg_model_load_hf, llama_variant("l1", &m, "llama",
               fmt("%s, \"sliding_window\": %d", base, c.n_ctx - 1)), FG_ERR_UNSUPPORTED,
               "\"sliding_window\"");
    fgi_test_model_free(&m);
}

/* Qwen2: q/k/v biases always, classifier tied unless the config says not,
 * sliding window only when switched on, and then from layer
 * max_window_layers on (or where layer_types says). */
Test(hf_llama, qwen2_biases_tied_and_untied)
{
    fgi_rng rng = fgi_rng_make(207);
    for (int untied = 0; untied < 2; untied++) {
        fg_config c = random_llama_config(&rng);
        c.n_layer = 3; /* a full layer, then sliding ones */
        fgi_test_model m;
        fgi_test_model_init(&m, &c, &rng, untied);
        float *biases[3] = {NULL, NULL, NULL};
        for (int i = 0; i < c.n_layer; i++) {
            biases[i] = fgi_buf_normal(&rng, (size_t)fg_config_qkv_width(&c), 0.1);
            m.layers[i].c_attn_b = biases[i];
        }
        const char *tie = untied ? ", \"tie_word_embeddings\": false" : "";
        char keys[256]; /* fmt's buffers are reused */
        snprintf(keys, sizeof keys, ", \"rope_theta\": %.17g%s, \"sliding_window\": 2, "
                 "\"max_window_layers\": 1", c.rope_base, tie);
        window_loads(llama_variant(fmt("q%d", untied), &m, "qwen2",
                                   fmt("%s, \"use_sliding_window\": false", keys)),
                     &m, &rng, 0, 0);
        window_loads(llama_variant(fmt("qs%d", untied), &m, "qwen2",
                                   fmt("%s, \"use_sliding_window\": true", keys)),
                     &m, &rng, 2, 1);
        window_loads(llama_variant(fmt("qt%d", untied), &m, "qwen2",
                                   fmt("%s, \"use_sliding_window\": true, \"layer_types\": "
                                       "[\"full_attention\", \"full_attention\", "
                                       "\"sliding_attention\"]", keys)),
                     &m, &rng, 2, 2);
        /* every layer past max_window_layers: no window at all */
        window_loads(llama_variant(fmt("qm%d", untied), &m, "qwen2",
                                   fmt(", \"rope_theta\": %.17g%s, \"sliding_window\": 2, "
                                       "\"max_window_layers\": 3, \"use_sliding_window\": "
                                       "true", c.rope_base, tie)),
                     &m, &rng, 0, 0);
        window_loads(llama_variant(fmt("q0%d", untied), &m, "qwen2",
                                   fmt(", \"rope_theta\": %.17g%s, \"sliding_window\": 3, "
                                       "\"max_window_layers\": 0, \"use_sliding_window\": "
                                       "true", c.rope_base, tie)),
                     &m, &rng, 3, 0);
        load_fails(fg_model_load_hf, llama_variant(fmt("qx%d", untied), &m, "qwen2",
                   fmt("%s, \"use_sliding_window\": true, \"layer_types\": "
                       "[\"sliding_attention\", \"full_attention\", \"full_attention\"]",
                       keys)), FG_ERR_UNSUPPORTED, "\"layer_types\"");
        load_fails(fg_model_load_hf, llama_variant(fmt("qy%d", untied), &m, "qwen2",
                   fmt("%s, \"use_sliding_window\": false, \"layer_types\": "
                       "[\"full_attention\", \"sliding_attention\", \"sliding_attention\"]",
                       keys)), FG_ERR_UNSUPPORTED, "\"layer_types\"");
        for (int i = 0; i < 3; i++) fgi_buf_free(biases[i]);
        for (int i = 0; i < c.n_layer; i++) m.layers[i].c_attn_b = NULL;
        /* written without biases: Qwen2 needs them */
        load_fails(fg_model_load_hf, llama_variant(fmt("qn%d", untied), &m, "qwen2", keys),
                   FG_ERR_FORMAT, "missing tensor 'model.layers.0.self_attn.q_proj.bias'");
        fgi_test_model_free(&m);
    }
}

/* Sharded checkpoints ------------------------------------------------------------- */

static const char *shard_name(int k, int n)
{
    return fmt("model-%05d-of-%05d.safetensors", k + 1, n);
}

/* Writes l as n shards (tensor i in shard i % n) and the index, plus a
 * config for m. `skip` (may be NULL) is left out of the index, `extra` is
 * appended inside "weight_map", and with `dup` the first tensor is written
 * into the last shard as well. Returns the bytes of all shards. */
static uint64_t write_sharded(const char *dir, const fgi_test_model *m, const st_list *l,
                              int n, const char *skip, const char *extra, int dup)
{
    uint64_t total = 0;
    bytes idx = {0};
    int first = 1;
    put_text(&idx, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {");
    for (int k = 0; k < n; k++) {
        st_list *part = calloc(1, sizeof *part);
        for (int i = k; i < l->n; i += n) {
            part->t[part->n++] = l->t[i]; /* shallow: the list keeps ownership */
            if (skip != NULL && strcmp(l->t[i].name, skip) == 0) continue;
            put_text(&idx, "%s\"%s\": \"%s\"", first ? "" : ", ", l->t[i].name,
                     shard_name(k, n));
            first = 0;
        }
        if (dup && k == n - 1) part->t[part->n++] = l->t[0];
        const char *path = tmp_path("%s/%s", strrchr(dir, '/') + 1, shard_name(k, n));
        st_write(path, part);
        total += file_size(path);
        free(part);
    }
    put_text(&idx, "%s}}", extra ? extra : "");
    put(&idx, "", 1);
    write_text(dir, "model.safetensors.index.json", (const char *)idx.p);
    free(idx.p);
    write_llama_config(dir, &m->cfg, m->w.lm_head == NULL, NULL);
    return total;
}

TestSuite(hf_sharded, .init = make_tmp, .fini = remove_tmp);

/* The shards of an index load exactly like the one file they were cut from. */
Test(hf_sharded, shards_load_like_the_single_file)
{
    fgi_rng rng = fgi_rng_make(208);
    for (int untied = 0; untied < 2; untied++) {
        fg_config c = random_llama_config(&rng);
        fgi_test_model m;
        fgi_test_model_init(&m, &c, &rng, untied);
        round_model(&m, "BF16");
        hf_llama_layer hf[3];
        st_list *l = calloc(1, sizeof *l);
        llama_list(l, &m, "BF16", hf);
        const char *one = make_dir(fmt("one%d", untied));
        st_write(tmp_path("one%d/model.safetensors", untied), l);
        write_llama_config(one, &c, !untied, NULL);
        const char *many = make_dir(fmt("many%d", untied));
        const uint64_t shard_bytes = write_sharded(many, &m, l, 3 + untied, NULL, NULL, 0);
        fg_model *a = load_ok(fg_model_load_hf, one);
        fg_model *b = load_with_progress_ok(many, shard_bytes);
        assert_same_weights(b, &m);
        assert_same_logits(b, &m, &rng);
        const fg_weights *wa = fg_model_weights(a), *wb = fg_model_weights(b);
        cr_assert(memcmp(wa->wte, wb->wte, sizeof(float) * (size_t)c.vocab_size *
                         (size_t)c.n_embd) == 0);
        fg_model_destroy(a);
        fg_model_destroy(b);
        /* one shard is a valid index too */
        const char *single = make_dir(fmt("single%d", untied));
        write_sharded(single, &m, l, 1, NULL, NULL, 0);
        b = load_ok(fg_model_load_hf, single);
        assert_same_weights(b, &m);
        fg_model_destroy(b);
        for (int i = 0; i < c.n_layer; i++) free_hf_layer(&hf[i]);
        st_free(l);
        free(l);
        fgi_test_model_free(&m);
    }
}

Test(hf_sharded, index_and_shards_must_agree)
{
    fgi_rng rng = fgi_rng_make(209);
    fg_config c = random_llama_config(&rng);
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 1);
    hf_llama_layer hf[3];
    st_list *l = calloc(1, sizeof *l);
    llama_list(l, &m, "F32", hf);
    const char *dir;
    /* a tensor the index names but its shard does not hold */
    dir = make_dir("ghost");
    write_sharded(dir, &m, l, 3, NULL, ", \"model.ghost\": \"model-00002-of-00003.safetensors\"", 0);
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT,
               "index.json: maps tensor 'model.ghost' to 'model-00002-of-00003.safetensors', "
               "which does not hold it");
    /* a tensor of a shard that the index does not list */
    dir = make_dir("unlisted");
    write_sharded(dir, &m, l, 3, "model.norm.weight", NULL, 0);
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT,
               "tensor 'model.norm.weight' is not in the index");
    /* listed twice */
    dir = make_dir("twice");
    write_sharded(dir, &m, l, 2, NULL, ", \"model.norm.weight\": \"model-00001-of-00002.safetensors\"",
                  0);
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT,
               "tensor 'model.norm.weight' is listed twice");
    /* stored in two shards */
    dir = make_dir("two");
    write_sharded(dir, &m, l, 3, NULL, NULL, 1);
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT,
               "model-00003-of-00003.safetensors: tensor 'model.embed_tokens.weight' is also "
               "here, but the index maps it to 'model-00001-of-00003.safetensors'");
    /* a tensor the model needs in neither */
    dir = make_dir("absent");
    st_list *fewer = calloc(1, sizeof *fewer);
    *fewer = *l;
    fewer->n--; /* lm_head, last */
    write_sharded(dir, &m, fewer, 2, NULL, NULL, 0);
    free(fewer);
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT,
               "model.safetensors.index.json: missing tensor 'lm_head.weight'");
    /* a shard file that is not there */
    dir = make_dir("lost");
    write_sharded(dir, &m, l, 3, NULL, NULL, 0);
    cr_assert(remove(tmp_path("lost/%s", shard_name(1, 3))) == 0);
    load_fails(fg_model_load_hf, dir, FG_ERR_IO, "model-00002-of-00003.safetensors");
    for (int i = 0; i < c.n_layer; i++) free_hf_layer(&hf[i]);
    st_free(l);
    free(l);
    fgi_test_model_free(&m);
}

/* The index can only name files in the checkpoint's own folder. */
Test(hf_sharded, malformed_or_escaping_index)
{
    fgi_rng rng = fgi_rng_make(210);
    fg_config c = random_llama_config(&rng);
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 0);
    hf_llama_layer hf[3];
    st_list *l = calloc(1, sizeof *l);
    llama_list(l, &m, "F32", hf);
    static const struct {
        const char *extra, *needle;
    } escapes[] = {
        {", \"x\": \"../model.safetensors\"", "mapped to '../model.safetensors', which is not a file"},
        {", \"x\": \"/etc/passwd\"", "mapped to '/etc/passwd'"},
        {", \"x\": \"..\"", "mapped to '..'"},
        {", \"x\": \"\"", "mapped to ''"},
        {", \"x\": 3", "entry 'x' is not a file name string"},
        {", \"x\\n\\u001b\": \"a/b\"", "tensor 'x\\x0A\\x1B' is mapped to 'a/b'"},
    };
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
        const char *dir = make_dir(fmt("esc%zu", i));
        write_sharded(dir, &m, l, 2, NULL, escapes[i].extra, 0);
        load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT, escapes[i].needle);
        assert_message_is_safe();
    }
    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"{}", "needs a \"weight_map\" object"},
        {"{\"weight_map\": []}", "needs a \"weight_map\" object"},
        {"{\"weight_map\": {}}", "\"weight_map\" is empty"},
        {"{\"weight_map\": {", "not valid JSON"},
        {"", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *dir = make_dir(fmt("bad%zu", i));
        write_sharded(dir, &m, l, 2, NULL, NULL, 0);
        write_text(dir, "model.safetensors.index.json", bad[i].text);
        load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT, bad[i].needle);
    }
    for (int i = 0; i < c.n_layer; i++) free_hf_layer(&hf[i]);
    st_free(l);
    free(l);
    fgi_test_model_free(&m);
}

/* Committed checkpoints (tests/model/hf, made by gen_hf.py): the reference
 * decoder's logits against an independent float64 NumPy transcription of
 * transformers' forward pass (its rotate_half RoPE, its llama3 / linear
 * frequency formulas), at the fp32 rule of docs/contract.md §32. Llama 3
 * with rope_parameters (theta 500000, llama3) in three BF16 shards; Qwen2
 * with biases, tied head and linear rope_scaling; Mistral in two shards. */
static void golden_logits(const char *folder, const float *want, fg_rope_scaling scaling)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/model/hf/%s", FG_SOURCE_DIR, folder);
    fg_model *m = load_ok(fg_model_load_hf, dir);
    const fg_config *c = fg_model_config(m);
    cr_assert_eq(c->rope_scaling, scaling, "%s", folder);
    fg_kv_cache *cache = NULL;
    cr_assert_eq(fg_kv_cache_create(&cache, c, HF_GOLDEN_T), FG_OK, "%s", fg_last_error());
    float *logits = fgi_buf_nan((size_t)HF_GOLDEN_T * HF_GOLDEN_VOCAB);
    cr_assert_eq(fg_ref_forward(logits, NULL, c, fg_model_weights(m), cache, hf_golden_ids,
                                HF_GOLDEN_T), FG_OK, "%s", fg_last_error());
    fgi_assert_close(logits, want, (size_t)HF_GOLDEN_T * HF_GOLDEN_VOCAB, 1e-4, 1e-4, 1e-5,
                     folder);
    fgi_buf_free(logits);
    fg_kv_cache_destroy(cache);
    fg_model_destroy(m);
}

Test(hf_golden, llama3_rope_parameters_bf16_sharded)
{
    golden_logits("llama3", hf_golden_llama3, FG_ROPE_LLAMA3);
}
Test(hf_golden, qwen2_biases_tied_linear_scaling)
{
    golden_logits("qwen2", hf_golden_qwen2, FG_ROPE_LINEAR);
}
Test(hf_golden, mistral_sharded) { golden_logits("mistral", hf_golden_mistral, FG_ROPE_DEFAULT); }

/* Sliding windows and an explicit head_dim against transformers itself
 * (tests/model/hf/gen_hf_window.py: save_pretrained, then the float64 model
 * with eager attention): the folder loads with the window (and head_dim) it
 * declares, the reference matches transformers' logits at the fp32 rule,
 * and the same weights without the window are far from them (every
 * window here cuts keys of the ten tokens). */
static void window_golden(const char *folder, const float *want, int window, int first,
                          int head_dim)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/model/hf/%s", FG_SOURCE_DIR, folder);
    fg_model *m = load_ok(fg_model_load_hf, dir);
    fg_config c = *fg_model_config(m);
    cr_assert_eq(c.sliding_window, window, "%s: sliding_window %d", folder, c.sliding_window);
    cr_assert_eq(c.window_first_layer, first, "%s: window_first_layer %d", folder,
                 c.window_first_layer);
    cr_assert_eq(fg_config_head_dim(&c), head_dim, "%s: head_dim %d", folder,
                 fg_config_head_dim(&c));
    const size_t n = (size_t)HF_WINDOW_T * HF_WINDOW_VOCAB;
    float *logits = fgi_buf_nan(n);
    for (int pass = 0; pass < 2; pass++) {
        fg_kv_cache *cache = NULL;
        cr_assert_eq(fg_kv_cache_create(&cache, &c, HF_WINDOW_T), FG_OK, "%s", fg_last_error());
        cr_assert_eq(fg_ref_forward(logits, NULL, &c, fg_model_weights(m), cache, hf_window_ids,
                                    HF_WINDOW_T), FG_OK, "%s", fg_last_error());
        fg_kv_cache_destroy(cache);
        if (pass == 0) {
            fgi_assert_close(logits, want, n, 1e-4, 1e-4, 1e-5, folder);
            c.sliding_window = 0; /* the window must matter */
        } else {
            cr_assert(fgi_max_abs_diff(logits, want, n) > 1e-2,
                      "%s: the logits without the window are as close (%g)", folder,
                      fgi_max_abs_diff(logits, want, n));
        }
    }
    fgi_buf_free(logits);
    fg_model_destroy(m);
}

Test(hf_golden, mistral_window_3_head_dim_12)
{
    window_golden("mistral_window", hf_golden_mistral_window, 3, 0, 12);
}
Test(hf_golden, qwen2_window_4_from_layer_1)
{
    window_golden("qwen2_window", hf_golden_qwen2_window, 4, 1, 8);
}

/* The permutation must turn Hugging Face's half-split rotation into our
 * interleaved one. Independently of how the test laid the file out: apply
 * HF's rotate_half RoPE to q/k computed from the stored HF matrices, and our
 * RoPE to q/k computed from the loaded model; every query-key score at
 * every pair of positions must agree. */
Test(hf_llama, permuted_rope_preserves_every_attention_score)
{
    fgi_rng rng = fgi_rng_make(204);
    fg_config c = fg_config_llama(1, 4 * 8, 4, 2, 24, 30, 64);
    c.rope_base = 1000.0 + 9000.0 * fgi_rng_uniform(&rng);
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 0);
    const char *dir = make_dir("llama");
    hf_llama_layer hf[1];
    write_llama_folder(dir, &m, "F32", hf);
    fg_model *loaded = load_ok(fg_model_load_hf, dir);
    const fg_layer_weights *lw = &fg_model_weights(loaded)->layers[0];
    const int C = c.n_embd, d = C / c.n_head, nq = c.n_head * d, nkv = c.n_kv_head * d;
    const int qkv = fg_config_qkv_width(&c), group = c.n_head / c.n_kv_head;
    float *x = fgi_buf_normal(&rng, 2 * (size_t)C, 1.0);
    for (int trial = 0; trial < 20; trial++) {
        const int p = fgi_rng_int(&rng, 0, 5000), s = fgi_rng_int(&rng, 0, 5000);
        double q_hf[64], k_hf[64];
        float q[64], k[64];
        for (int r = 0; r < nq; r++) {
            double a = 0, b = 0;
            for (int i = 0; i < C; i++) {
                a += (double)hf[0].q[r * C + i] * x[i];
                b += (double)lw->c_attn_w[(size_t)i * qkv + r] * x[i];
            }
            q_hf[r] = a, q[r] = (float)b;
        }
        for (int r = 0; r < nkv; r++) {
            double a = 0, b = 0;
            for (int i = 0; i < C; i++) {
                a += (double)hf[0].k[r * C + i] * x[C + i];
                b += (double)lw->c_attn_w[(size_t)i * qkv + nq + r] * x[C + i];
            }
            k_hf[r] = a, k[r] = (float)b;
        }
        /* HF: out = x cos + rotate_half(x) sin, rotate_half(x) = [-x2, x1] */
        for (int h = 0; h < c.n_head + c.n_kv_head; h++) {
            double *v = h < c.n_head ? q_hf + h * d : k_hf + (h - c.n_head) * d;
            const int pos = h < c.n_head ? p : s;
            for (int j = 0; j < d / 2; j++) {
                const double ang = pos * pow(c.rope_base, -2.0 * j / d);
                const double a = v[j], b = v[j + d / 2];
                v[j] = a * cos(ang) - b * sin(ang);
                v[j + d / 2] = b * cos(ang) + a * sin(ang);
            }
        }
        cr_assert_eq(fg_ref_rope(q, c.n_head, 1, d, &p, c.rope_base), FG_OK);
        cr_assert_eq(fg_ref_rope(k, c.n_kv_head, 1, d, &s, c.rope_base), FG_OK);
        for (int h = 0; h < c.n_head; h++) {
            const int g = h / group;
            double want = 0, got = 0, scale = 0;
            for (int j = 0; j < d; j++) {
                want += q_hf[h * d + j] * k_hf[g * d + j];
                got += (double)q[h * d + j] * k[g * d + j];
                scale += fabs(q_hf[h * d + j] * k_hf[g * d + j]);
            }
            cr_assert(fabs(got - want) <= 1e-5 * scale + 1e-6,
                      "head %d, positions %d/%d: score %.9g, expected %.9g (seed %llu)", h,
                      p, s, got, want, (unsigned long long)fgi_test_seed());
        }
    }
    fgi_buf_free(x);
    free_hf_layer(&hf[0]);
    fg_model_destroy(loaded);
    fgi_test_model_free(&m);
}

/* llama2.c checkpoints -------------------------------------------------------------- */

/* The legacy file of a Llama model: header, (out, in) matrices, RoPE
 * tables, classifier when untied (negative vocab_size). */
static void llama2c_bytes(bytes *b, const fgi_test_model *m)
{
    const fg_config *c = &m->cfg;
    const int C = c->n_embd, I = c->n_inner, L = c->n_layer, V = c->vocab_size;
    const int hs = C / c->n_head, kv = c->n_kv_head * hs, qkv = fg_config_qkv_width(c);
    const int header[7] = {C, I, L, c->n_head, c->n_kv_head, m->w.lm_head ? -V : V,
                           c->n_ctx};
    for (int i = 0; i < 7; i++) put_le32(b, (uint32_t)header[i]);
    for (size_t i = 0; i < (size_t)V * C; i++) put_f32(b, m->w.wte[i]);
    for (int l = 0; l < L; l++)
        for (int i = 0; i < C; i++) put_f32(b, m->layers[l].ln_1_g[i]);
    const int col0[3] = {0, C, C + kv}, rows[3] = {C, kv, kv}; /* wq, wk, wv */
    for (int t = 0; t < 3; t++)
        for (int l = 0; l < L; l++)
            for (int o = 0; o < rows[t]; o++)
                for (int i = 0; i < C; i++)
                    put_f32(b, m->layers[l].c_attn_w[(size_t)i * qkv + col0[t] + o]);
    for (int l = 0; l < L; l++) /* wo */
        for (int o = 0; o < C; o++)
            for (int i = 0; i < C; i++) put_f32(b, m->layers[l].c_proj_w[(size_t)i * C + o]);
    for (int l = 0; l < L; l++)
        for (int i = 0; i < C; i++) put_f32(b, m->layers[l].ln_2_g[i]);
    for (int l = 0; l < L; l++) /* w1 */
        for (int o = 0; o < I; o++)
            for (int i = 0; i < C; i++) put_f32(b, m->layers[l].fc_w[(size_t)i * I + o]);
    for (int l = 0; l < L; l++) /* w2 */
        for (int o = 0; o < C; o++)
            for (int i = 0; i < I; i++) put_f32(b, m->layers[l].mlp_proj_w[(size_t)i * C + o]);
    for (int l = 0; l < L; l++) /* w3 */
        for (int o = 0; o < I; o++)
            for (int i = 0; i < C; i++) put_f32(b, m->layers[l].up_w[(size_t)i * I + o]);
    for (int i = 0; i < C; i++) put_f32(b, m->w.ln_f_g[i]);
    for (int part = 0; part < 2; part++) /* freq_cis_real, freq_cis_imag */
        for (int p = 0; p < c->n_ctx; p++)
            for (int j = 0; j < hs / 2; j++) {
                const double ang = p * pow(10000.0, -2.0 * j / hs);
                put_f32(b, (float)(part ? sin(ang) : cos(ang)));
            }
    if (m->w.lm_head)
        for (size_t i = 0; i < (size_t)V * C; i++) put_f32(b, m->w.lm_head[i]);
}

TestSuite(llama2c, .init = make_tmp, .fini = remove_tmp);

static void llama2c_round_trip(int untied, uint64_t stream)
{
    fgi_rng rng = fgi_rng_make(stream);
    fg_config c = random_llama_config(&rng);
    c.norm_eps = 1e-5f, c.rope_base = 10000.0; /* fixed by the format */
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, untied);
    bytes b = {0};
    llama2c_bytes(&b, &m);
    const char *path = tmp_path("model.bin");
    write_file(path, b.p, b.len);
    fg_model *loaded = load_ok(fg_model_load_llama2c, path);
    assert_same_weights(loaded, &m);
    assert_same_logits(loaded, &m, &rng);
    fg_model_destroy(loaded);
    loaded = load_ok(fg_model_load, path); /* a file goes to the llama2.c loader */
    assert_same_weights(loaded, &m);
    fg_model_destroy(loaded);
    loaded = load_with_progress_ok(path, b.len);
    assert_same_weights(loaded, &m);
    fg_model_destroy(loaded);
    free(b.p);
    fgi_test_model_free(&m);
}

Test(llama2c, tied_classifier) { llama2c_round_trip(0, 301); }
Test(llama2c, separate_classifier) { llama2c_round_trip(1, 302); }

Test(llama2c, progress_never_reports_the_end_of_a_failed_load)
{
    fgi_rng rng = fgi_rng_make(303);
    fg_config c = random_llama_config(&rng);
    c.norm_eps = 1e-5f, c.rope_base = 10000.0;
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 0);
    bytes b = {0};
    llama2c_bytes(&b, &m);
    const char *path = tmp_path("short.bin");
    write_file(path, b.p, b.len - 4); /* one float short */
    progress_log log = {0};
    fg_model *loaded = (fg_model *)(uintptr_t)1;
    fgi_assert_status(fg_model_load_with_progress(&loaded, path, record_progress, &log),
                      FG_ERR_FORMAT, "short.bin");
    cr_assert(loaded == NULL);
    cr_assert(log.calls == 0 || log.last_done < log.total, "a failed load reported completion");
    /* no callback is the same as fg_model_load; bad arguments are refused */
    write_file(path, b.p, b.len);
    loaded = NULL;
    cr_assert_eq(fg_model_load_with_progress(&loaded, path, NULL, NULL), FG_OK, "%s", fg_last_error());
    assert_same_weights(loaded, &m);
    fg_model_destroy(loaded);
    fgi_assert_status(fg_model_load_with_progress(NULL, path, record_progress, &log),
                      FG_ERR_INVALID_ARG, "model");
    loaded = (fg_model *)(uintptr_t)1;
    fgi_assert_status(fg_model_load_with_progress(&loaded, NULL, record_progress, &log),
                      FG_ERR_INVALID_ARG, "path");
    cr_assert(loaded == NULL);
    free(b.p);
    fgi_test_model_free(&m);
}

static float file_float(const unsigned char *file, size_t index)
{
    float f;
    memcpy(&f, file + 28 + 4 * index, 4);
    return f;
}

Test(llama2c, stories260k_loads_with_its_configuration)
{
    const char *path = fgi_model_path("stories260K/stories260K.bin");
    if (path == NULL) cr_skip_test("stories260K not found under the models folder");
    char path_copy[4096];
    snprintf(path_copy, sizeof path_copy, "%s", path);
    fg_model_destroy(load_with_progress_ok(path_copy, 1056540)); /* 33 chunks */
    fg_model *m = load_ok(fg_model_load, path_copy);
    const fg_config *c = fg_model_config(m);
    const fg_weights *w = fg_model_weights(m);
    cr_assert_eq(c->arch, FG_ARCH_LLAMA);
    cr_assert(c->n_embd == 64 && c->n_layer == 5 && c->n_head == 8 && c->n_kv_head == 4);
    cr_assert(c->vocab_size == 512 && c->n_ctx == 512 && c->n_inner == 172,
              "vocab %d ctx %d hidden %d", c->vocab_size, c->n_ctx, c->n_inner);
    cr_assert(c->norm_eps == 1e-5f && c->use_rope == 1 && c->rope_base == 10000.0);
    cr_assert(w->lm_head == NULL && w->wpe == NULL, "stories260K has a tied classifier");

    /* spot-check values against the file: an embedding row, a transposed
     * wq of layer 3 and a transposed w2 of layer 4 */
    FILE *f = fopen(path_copy, "rb");
    cr_assert(f != NULL);
    unsigned char *file = malloc(1056540);
    cr_assert(fread(file, 1, 1056540, f) == 1056540);
    fclose(f);
    const size_t C = 64, L = 5, V = 512, H = 172, kv = 32, qkv = 128;
    for (size_t i = 0; i < C; i++)
        cr_assert(w->wte[7 * C + i] == file_float(file, 7 * C + i));
    const size_t wq = V * C + L * C, w2 = wq + L * C * C * 2 + L * kv * C * 2 + L * C + L * H * C;
    for (size_t o = 0; o < C; o++)
        for (size_t i = 0; i < C; i++)
            cr_assert(w->layers[3].c_attn_w[i * qkv + o] == file_float(file, wq + 3 * C * C + o * C + i));
    for (size_t o = 0; o < C; o++)
        for (size_t i = 0; i < H; i++)
            cr_assert(w->layers[4].mlp_proj_w[i * C + o] == file_float(file, w2 + 4 * C * H + o * H + i));
    free(file);

    float *logits = fgi_buf_nan(V);
    fg_kv_cache *kvc;
    const int bos = 1;
    cr_assert_eq(fg_kv_cache_create(&kvc, c, 4), FG_OK);
    cr_assert_eq(fg_ref_forward(logits, NULL, c, w, kvc, &bos, 1), FG_OK);
    for (size_t i = 0; i < V; i++) cr_assert(isfinite(logits[i]));
    fg_kv_cache_destroy(kvc);
    fgi_buf_free(logits);
    fg_model_destroy(m);
}

/* Random models ------------------------------------------------------------------------- */

static double mean_of(const float *p, size_t n, double *var)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += p[i];
    const double mean = s / (double)n;
    for (size_t i = 0; i < n; i++) s2 += (p[i] - mean) * (p[i] - mean);
    *var = s2 / (double)n;
    return mean;
}

Test(random_model, deterministic_scaled_and_usable)
{
    fgi_rng rng = fgi_rng_make(401);
    const uint64_t seed = fgi_rng_next(&rng);
    const fg_config configs[2] = {fg_config_gpt2(2, 96, 4, 300, 32),
                                  fg_config_llama(2, 128, 8, 2, 320, 300, 32)};
    for (int k = 0; k < 2; k++) {
        const fg_config *c = &configs[k];
        fg_model *a, *b, *other;
        cr_assert_eq(fg_model_create_random(&a, c, seed), FG_OK, "%s", fg_last_error());
        cr_assert_eq(fg_model_create_random(&b, c, seed), FG_OK);
        cr_assert_eq(fg_model_create_random(&other, c, seed + 1), FG_OK);
        assert_same_config(fg_model_config(a), c);
        cr_assert_eq(fg_weights_validate(c, fg_model_weights(a)), FG_OK, "%s", fg_last_error());
        static weight wa[MAX_WEIGHTS], wb[MAX_WEIGHTS], wo[MAX_WEIGHTS];
        const int n = weight_list(c, fg_model_weights(a), wa, MAX_WEIGHTS);
        weight_list(c, fg_model_weights(b), wb, MAX_WEIGHTS);
        weight_list(c, fg_model_weights(other), wo, MAX_WEIGHTS);
        for (int i = 0; i < n; i++) {
            if (!wa[i].p) continue;
            fgi_assert_same(wa[i].p, wb[i].p, wa[i].n * sizeof(float), wa[i].name);
            cr_assert(memcmp(wa[i].p, wo[i].p, wa[i].n * sizeof(float)) != 0,
                      "%s does not depend on the seed", wa[i].name);
        }
        const fg_weights *w = fg_model_weights(a);
        const fg_layer_weights *lw = &w->layers[1];
        const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner;
        double var, mean = mean_of(lw->ln_1_g, C, &var);
        cr_assert(fabs(mean - 1.0) < 0.03 && var > 0 && var < 0.01, "gain mean %g var %g", mean, var);
        mean = mean_of(lw->fc_w, C * I, &var);
        cr_assert(fabs(mean) < 0.01 && fabs(var * C - 1.0) < 0.05, "fc_w mean %g var*fan_in %g",
                  mean, var * C);
        mean = mean_of(lw->mlp_proj_w, I * C, &var);
        cr_assert(fabs(var * I - 1.0) < 0.05, "mlp_proj_w var*fan_in %g", var * I);
        mean = mean_of(w->wte, (size_t)c->vocab_size * C, &var);
        cr_assert(fabs(var * C - 1.0) < 0.05, "wte var*n_embd %g", var * C);
        cr_assert((w->ln_f_b != NULL) == (c->arch == FG_ARCH_GPT2));
        cr_assert(w->lm_head == NULL);

        /* logits stay O(1) */
        int ids[5];
        fgi_test_random_ids(ids, 5, c->vocab_size, &rng);
        float *logits = fgi_buf_nan(5 * (size_t)c->vocab_size);
        fg_kv_cache *kvc;
        cr_assert_eq(fg_kv_cache_create(&kvc, c, 5), FG_OK);
        cr_assert_eq(fg_ref_forward(logits, NULL, c, w, kvc, ids, 5), FG_OK);
        double lv, lm = mean_of(logits, 5 * (size_t)c->vocab_size, &lv);
        cr_assert(isfinite(lm) && lv > 0.05 && lv < 20.0, "logit mean %g variance %g", lm, lv);
        fg_kv_cache_destroy(kvc);
        fgi_buf_free(logits);
        fg_model_destroy(a), fg_model_destroy(b), fg_model_destroy(other);
    }
}

Test(random_model, bad_arguments)
{
    fg_config c = fg_config_gpt2(1, 30, 4, 10, 8); /* 30 % 4 != 0 */
    fg_model *m = (fg_model *)(uintptr_t)1;
    fgi_assert_status(fg_model_create_random(NULL, &c, 1), FG_ERR_INVALID_ARG, "'model'");
    fgi_assert_status(fg_model_create_random(&m, NULL, 1), FG_ERR_INVALID_ARG, "'config'");
    cr_assert(m == NULL);
    fgi_assert_status(fg_model_create_random(&m, &c, 1), FG_ERR_INVALID_ARG, "multiple");
    fgi_assert_status(fg_model_load(NULL, "x"), FG_ERR_INVALID_ARG, "'model'");
    fgi_assert_status(fg_model_load(&m, NULL), FG_ERR_INVALID_ARG, "'path'");
    fgi_assert_status(fg_model_load_hf(&m, NULL), FG_ERR_INVALID_ARG, "'dir'");
    fgi_assert_status(fg_model_load_llama2c(NULL, "x"), FG_ERR_INVALID_ARG, "'model'");
    cr_assert(fg_model_config(NULL) == NULL && fg_model_weights(NULL) == NULL);
    fg_model_destroy(NULL);
}

/* Malformed files -------------------------------------------------------------------------- */

TestSuite(malformed, .init = make_tmp, .fini = remove_tmp);

/* A small valid GPT-2 folder "base" and its parts, for editing. */
typedef struct {
    fgi_test_model m;
    st_list *l;
    bytes json, data;
} base_gpt2;

static void base_init(base_gpt2 *b, fgi_rng *rng)
{
    fg_config c = fg_config_gpt2(1, 8, 2, 6, 4);
    fgi_test_model_init(&b->m, &c, rng, 0);
    b->l = calloc(1, sizeof *b->l);
    gpt2_entries(b->l, &b->m, "F32", "");
    b->json = (bytes){0}, b->data = (bytes){0};
    st_build(b->l, &b->json, &b->data);
    put(&b->json, "", 1);
    b->json.len--; /* NUL-terminated for string edits */
}

static void base_free(base_gpt2 *b)
{
    st_free(b->l);
    free(b->l);
    free(b->json.p), free(b->data.p);
    fgi_test_model_free(&b->m);
}

/* A folder with the base config and this safetensors content. */
static const char *folder_with(const base_gpt2 *b, const char *name, const char *json,
                               const void *data, size_t data_len, uint64_t length_field)
{
    const char *dir = make_dir(name);
    write_gpt2_config(dir, &b->m.cfg);
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_write_parts(path, json, strlen(json), data, data_len, length_field);
    return dir;
}

/* The base header with the first occurrence of `from` replaced by `to`. */
static char *edited(const base_gpt2 *b, const char *from, const char *to)
{
    const char *json = (const char *)b->json.p, *at = strstr(json, from);
    cr_assert(at != NULL, "'%s' not in the header", from);
    char *out = malloc(strlen(json) + strlen(to) + 1);
    const size_t head = (size_t)(at - json);
    memcpy(out, json, head);
    strcpy(out + head, to);
    strcat(out, at + strlen(from));
    return out;
}

static void expect_header_edit(const base_gpt2 *b, const char *name, const char *from,
                               const char *to, fg_status code, const char *needle)
{
    char *json = edited(b, from, to);
    const char *dir = folder_with(b, name, json, b->data.p, b->data.len, strlen(json));
    load_fails(fg_model_load_hf, dir, code, needle);
    free(json);
}

Test(malformed, base_folder_is_valid)
{
    fgi_rng rng = fgi_rng_make(501);
    base_gpt2 b;
    base_init(&b, &rng);
    const char *dir = folder_with(&b, "ok", (const char *)b.json.p, b.data.p, b.data.len,
                                  b.json.len);
    fg_model *m = load_ok(fg_model_load_hf, dir);
    assert_same_weights(m, &b.m);
    fg_model_destroy(m);
    base_free(&b);
}

Test(malformed, safetensors_truncated_or_lying_about_sizes)
{
    fgi_rng rng = fgi_rng_make(502);
    base_gpt2 b;
    base_init(&b, &rng);
    const char *json = (const char *)b.json.p;
    const size_t jl = b.json.len;
    bytes whole = {0};
    put_le32(&whole, (uint32_t)jl), put_le32(&whole, 0);
    put(&whole, json, jl), put(&whole, b.data.p, b.data.len);
    const size_t cuts[] = {0, 5, 8, 8 + jl / 2, 8 + jl, whole.len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "cut%zu", i);
        const char *dir = make_dir(name);
        write_gpt2_config(dir, &b.m.cfg);
        char path[1024];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        write_file(path, whole.p, cuts[i]);
        load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT, NULL);
    }
    /* the length field points past the end, or is absurd */
    load_fails(fg_model_load_hf, folder_with(&b, "len1", json, b.data.p, b.data.len, jl + b.data.len + 1),
               FG_ERR_FORMAT, "past the end");
    load_fails(fg_model_load_hf, folder_with(&b, "len2", json, b.data.p, b.data.len, UINT64_MAX),
               FG_ERR_FORMAT, "past the end");
    /* shorter length: the header is cut mid-JSON */
    load_fails(fg_model_load_hf, folder_with(&b, "len3", json, b.data.p, b.data.len, jl - 9),
               FG_ERR_FORMAT, "JSON");
    /* bytes after the last tensor */
    bytes more = {0};
    put(&more, b.data.p, b.data.len), put(&more, "junk", 4);
    load_fails(fg_model_load_hf, folder_with(&b, "tail", json, more.p, more.len, jl),
               FG_ERR_FORMAT, "data region");
    free(more.p), free(whole.p);
    base_free(&b);
}

Test(malformed, safetensors_bad_header_entries)
{
    fgi_rng rng = fgi_rng_make(503);
    base_gpt2 b;
    base_init(&b, &rng);
    char first[160], dup[400];
    /* the first tensor entry as written, e.g. "wte.weight": {...} */
    const char *e0 = strstr((const char *)b.json.p, "\"wte.weight\"");
    cr_assert(e0 != NULL);
    const char *e1 = strchr(e0, '}');
    snprintf(first, sizeof first, "%.*s", (int)(e1 - e0 + 1), e0);

    expect_header_edit(&b, "json", "{\"__metadata__\"", "{{\"__metadata__\"", FG_ERR_FORMAT,
                       "not valid JSON");
    expect_header_edit(&b, "notobj", "{\"__metadata__\": {\"format\": \"pt\"}, ",
                       "[1, {\"a\": {\"format\": \"pt\"}, ", FG_ERR_FORMAT, NULL);
    expect_header_edit(&b, "meta", "{\"format\": \"pt\"}", "[1]", FG_ERR_FORMAT, "__metadata__");
    expect_header_edit(&b, "dtype", "\"dtype\": \"F32\"", "\"dtype\": \"Q4\"", FG_ERR_FORMAT,
                       "unknown dtype 'Q4'");
    expect_header_edit(&b, "nodtype", "\"dtype\": \"F32\"", "\"type\": \"F32\"", FG_ERR_FORMAT,
                       "dtype");
    expect_header_edit(&b, "noshape", "\"shape\"", "\"shap\"", FG_ERR_FORMAT, "shape");
    expect_header_edit(&b, "negshape", "\"shape\": [6", "\"shape\": [-6", FG_ERR_FORMAT,
                       "non-negative integer");
    expect_header_edit(&b, "fracshape", "\"shape\": [6", "\"shape\": [6.5", FG_ERR_FORMAT,
                       "non-negative integer");
    expect_header_edit(&b, "strshape", "\"shape\": [6", "\"shape\": [\"6\"", FG_ERR_FORMAT,
                       "non-negative integer");
    expect_header_edit(&b, "bigshape", "\"shape\": [6", "\"shape\": [1e300", FG_ERR_FORMAT,
                       "non-negative integer");
    expect_header_edit(&b, "overflow", "\"shape\": [6", "\"shape\": [4294967296, 4294967296, 6",
                       FG_ERR_FORMAT, "more than");
    expect_header_edit(&b, "nooffsets", "\"data_offsets\"", "\"offsets\"", FG_ERR_FORMAT,
                       "data_offsets");
    expect_header_edit(&b, "threeoffsets", "\"data_offsets\": [0, ", "\"data_offsets\": [0, 0, ",
                       FG_ERR_FORMAT, "data_offsets");
    expect_header_edit(&b, "reversed", "\"data_offsets\": [0, 192]", "\"data_offsets\": [192, 0]",
                       FG_ERR_FORMAT, "not within");
    expect_header_edit(&b, "pastend", "\"data_offsets\": [0, 192]",
                       "\"data_offsets\": [0, 99999999]", FG_ERR_FORMAT, "not within");
    /* the byte count disagrees with shape x dtype */
    expect_header_edit(&b, "bytes", "\"dtype\": \"F32\"", "\"dtype\": \"F16\"", FG_ERR_FORMAT,
                       "need 96");
    /* two tensors on the same bytes, and a gap */
    snprintf(dup, sizeof dup, "%s, \"extra\": {\"dtype\": \"F32\", \"shape\": [48], "
                              "\"data_offsets\": [0, 192]}", first);
    expect_header_edit(&b, "overlap", first, dup, FG_ERR_FORMAT, "must not overlap");
    expect_header_edit(&b, "gap", "\"data_offsets\": [0, 192]", "\"data_offsets\": [4, 196]",
                       FG_ERR_FORMAT, NULL);
    /* the same name twice */
    snprintf(dup, sizeof dup, "%s, %s", first, first);
    expect_header_edit(&b, "duplicate", first, dup, FG_ERR_FORMAT, "duplicate tensor name 'wte.weight'");
    /* a NUL inside the header */
    char *json = edited(&b, "\"format\"", "\"for\x01" "at\"");
    *strchr(json, '\x01') = '\0';
    const size_t jl = strlen(json) + 1 + strlen(json + strlen(json) + 1);
    const char *dir = make_dir("nul");
    write_gpt2_config(dir, &b.m.cfg);
    st_write_parts(tmp_path("nul/model.safetensors"), json, jl, b.data.p, b.data.len, jl);
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT, "NUL");
    free(json);
    base_free(&b);
}

/* Files whose header is valid but whose tensors do not fit the config. */
Test(malformed, safetensors_missing_or_misshapen_tensors)
{
    fgi_rng rng = fgi_rng_make(504);
    base_gpt2 b;
    base_init(&b, &rng);
    const char *dir;
    st_list *l = calloc(1, sizeof *l);

    /* drop one tensor: ln_f.bias is last */
    *l = *b.l;
    l->n--;
    dir = make_dir("missing");
    write_gpt2_config(dir, &b.m.cfg);
    st_write(tmp_path("missing/model.safetensors"), l);
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT, "missing tensor 'ln_f.bias'");

    /* c_attn weight written transposed */
    *l = *b.l;
    for (int i = 0; i < l->n; i++)
        if (strstr(l->t[i].name, "c_attn.weight")) {
            const long long t = l->t[i].shape[0];
            l->t[i].shape[0] = l->t[i].shape[1], l->t[i].shape[1] = t;
        }
    dir = make_dir("shape");
    write_gpt2_config(dir, &b.m.cfg);
    st_write(tmp_path("shape/model.safetensors"), l);
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT, "has shape [24, 8], expected [8, 24]");

    /* a 1-D tensor stored as 2-D */
    *l = *b.l;
    l->t[l->n - 1].n_dims = 2, l->t[l->n - 1].shape[1] = 1;
    dir = make_dir("rank");
    write_gpt2_config(dir, &b.m.cfg);
    st_write(tmp_path("rank/model.safetensors"), l);
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT, "expected [8]");

    /* a needed tensor in a dtype the loader cannot convert */
    dir = make_dir("f64");
    write_gpt2_config(dir, &b.m.cfg);
    char *json = edited(&b, "\"dtype\": \"F32\", \"shape\": [6, 8], \"data_offsets\": [0, 192]",
                        "\"dtype\": \"F64\", \"shape\": [6, 4], \"data_offsets\": [0, 192]");
    st_write_parts(tmp_path("f64/model.safetensors"), json, strlen(json), b.data.p, b.data.len,
                   strlen(json));
    load_fails(fg_model_load_hf, dir, FG_ERR_UNSUPPORTED, "only F32, F16 and BF16");
    free(json);

    /* an unknown extra tensor would change the model: refused */
    *l = *b.l;
    st_add(l, "F32", b.m.w.ln_f_g, 1, 8, 0, "h.0.attn.c_attn.extra");
    dir = make_dir("extra");
    write_gpt2_config(dir, &b.m.cfg);
    st_write(tmp_path("extra/model.safetensors"), l);
    load_fails(fg_model_load_hf, dir, FG_ERR_UNSUPPORTED, "'h.0.attn.c_attn.extra' is not used");

    /* a classifier copy of the wrong shape */
    *l = *b.l;
    st_add(l, "F32", b.m.w.wte, 2, 8, 6, "lm_head.weight");
    dir = make_dir("lmhead");
    write_gpt2_config(dir, &b.m.cfg);
    st_write(tmp_path("lmhead/model.safetensors"), l);
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT, "'lm_head.weight' has shape [8, 6]");

    /* the config claims more layers (and a wider model) than the file holds */
    *l = *b.l;
    const fg_config keep = b.m.cfg;
    b.m.cfg.n_layer = 4000;
    dir = make_dir("layers");
    write_gpt2_config(dir, &b.m.cfg);
    st_write(tmp_path("layers/model.safetensors"), l);
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT, "missing tensor 'h.1.ln_1.weight'");
    b.m.cfg = keep;
    b.m.cfg.n_embd = 1 << 23, b.m.cfg.vocab_size = 1 << 23;
    dir = make_dir("wide");
    write_gpt2_config(dir, &b.m.cfg);
    st_write(tmp_path("wide/model.safetensors"), l);
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT, "has shape [6, 8], expected [8388608, 8388608]");
    b.m.cfg = keep;
    l->n = 0; /* entries are shared with the base list */
    free(l);
    base_free(&b);
}

static void expect_config(const base_gpt2 *b, const char *name, const char *config,
                          fg_status code, const char *needle)
{
    const char *dir = folder_with(b, name, (const char *)b->json.p, b->data.p, b->data.len,
                                  b->json.len);
    write_text(dir, "config.json", config);
    load_fails(fg_model_load_hf, dir, code, needle);
}

#define GPT2_KEYS "\"n_layer\": 1, \"n_head\": 2, \"n_positions\": 4, \"vocab_size\": 6"

Test(malformed, config_json)
{
    fgi_rng rng = fgi_rng_make(505);
    base_gpt2 b;
    base_init(&b, &rng);
    expect_config(&b, "c1", "{\"model_type\": \"gpt2\", " GPT2_KEYS ", \"n_embd\": 8",
                  FG_ERR_FORMAT, "not valid JSON");
    expect_config(&b, "c2", "[\"gpt2\"]", FG_ERR_FORMAT, "not a JSON object");
    expect_config(&b, "c3", "{" GPT2_KEYS ", \"n_embd\": 8}", FG_ERR_FORMAT,
                  "missing key \"model_type\"");
    expect_config(&b, "c4", "{\"model_type\": \"bert\", " GPT2_KEYS ", \"n_embd\": 8}",
                  FG_ERR_UNSUPPORTED, "model_type \"bert\"");
    expect_config(&b, "c5", "{\"model_type\": 2, " GPT2_KEYS ", \"n_embd\": 8}",
                  FG_ERR_FORMAT, "must be a string");
    expect_config(&b, "c6", "{\"model_type\": \"gpt2\", " GPT2_KEYS "}", FG_ERR_FORMAT,
                  "missing key \"n_embd\"");
    expect_config(&b, "c7", "{\"model_type\": \"gpt2\", " GPT2_KEYS ", \"n_embd\": 1e9}",
                  FG_ERR_FORMAT, "\"n_embd\" must be an integer in [1, 16777216] (got 1000000000)");
    expect_config(&b, "c8", "{\"model_type\": \"gpt2\", " GPT2_KEYS ", \"n_embd\": 8.5}",
                  FG_ERR_FORMAT, "(got 8.5)");
    expect_config(&b, "c9", "{\"model_type\": \"gpt2\", " GPT2_KEYS ", \"n_embd\": -8}",
                  FG_ERR_FORMAT, "(got -8)");
    expect_config(&b, "c10", "{\"model_type\": \"gpt2\", " GPT2_KEYS ", \"n_embd\": \"8\"}",
                  FG_ERR_FORMAT, "(got \"8\")");
    expect_config(&b, "c11", "{\"model_type\": \"gpt2\", " GPT2_KEYS ", \"n_embd\": 9}",
                  FG_ERR_FORMAT, "invalid configuration: config.n_embd (9) must be a multiple");
    expect_config(&b, "c12", "{\"model_type\": \"gpt2\", " GPT2_KEYS ", \"n_embd\": 8, "
                             "\"layer_norm_epsilon\": -1}", FG_ERR_FORMAT, "layer_norm_epsilon");
    expect_config(&b, "c13", "{\"model_type\": \"gpt2\", " GPT2_KEYS ", \"n_embd\": 8, "
                             "\"use_rope\": \"yes\"}", FG_ERR_FORMAT, "use_rope");
    expect_config(&b, "c14", "{\"model_type\": \"gpt2\", " GPT2_KEYS ", \"n_embd\": 8, "
                             "\"activation_function\": \"relu\"}", FG_ERR_UNSUPPORTED, "relu");
    expect_config(&b, "c15", "{\"model_type\": \"gpt2\", " GPT2_KEYS ", \"n_embd\": 8, "
                             "\"n_kv_head\": 3}", FG_ERR_FORMAT, "n_kv_head");
    expect_config(&b, "c16", "", FG_ERR_FORMAT, "not valid JSON");
    expect_config(&b, "c17", "{\"model_type\": \"llama\", \"num_hidden_layers\": 1, "
                             "\"num_attention_heads\": 2, \"hidden_size\": 8, "
                             "\"intermediate_size\": 8, \"vocab_size\": 6, "
                             "\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}}",
                  FG_ERR_UNSUPPORTED, "rope_scaling");
    expect_config(&b, "c18", "{\"model_type\": \"llama\", \"num_hidden_layers\": 1, "
                             "\"num_attention_heads\": 2, \"hidden_size\": 8, "
                             "\"intermediate_size\": 0, \"vocab_size\": 6}",
                  FG_ERR_FORMAT, "\"intermediate_size\" must be an integer");
    /* valid JSON of the wrong family for these tensors */
    expect_config(&b, "c19", "{\"model_type\": \"llama\", \"num_hidden_layers\": 1, "
                             "\"num_attention_heads\": 2, \"hidden_size\": 8, "
                             "\"intermediate_size\": 32, \"vocab_size\": 6}",
                  FG_ERR_FORMAT, "missing tensor 'model.embed_tokens.weight'");
    base_free(&b);
}

Test(malformed, missing_files_are_io_errors)
{
    fgi_rng rng = fgi_rng_make(506);
    base_gpt2 b;
    base_init(&b, &rng);
    load_fails(fg_model_load, tmp_path("nothing-here"), FG_ERR_IO, "cannot open");
    load_fails(fg_model_load_llama2c, tmp_path("nothing.bin"), FG_ERR_IO, "cannot open");
    load_fails(fg_model_load_hf, tmp_path("nothing"), FG_ERR_IO, "config.json");
    const char *dir = make_dir("noweights");
    write_gpt2_config(dir, &b.m.cfg);
    load_fails(fg_model_load_hf, dir, FG_ERR_IO, "model.safetensors");
    write_text(dir, "model.safetensors.index.json", "{}");
    load_fails(fg_model_load_hf, dir, FG_ERR_FORMAT, "needs a \"weight_map\" object");
    /* a folder given as a llama2.c file */
    load_fails(fg_model_load_llama2c, dir, FG_ERR_IO, "not a regular file");
    base_free(&b);
}

/* Inputs that are not regular files are refused at once, naming the kind
 * and the path: a FIFO used to block the open forever (hence the timeout). */
Test(malformed, non_regular_inputs_are_refused_without_blocking, FGI_TIMEOUT(20))
{
    fgi_rng rng = fgi_rng_make(507);
    base_gpt2 b;
    base_init(&b, &rng);
    const char *fifo = tmp_path("model.fifo");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    load_fails(fg_model_load, fifo, FG_ERR_IO, "is a FIFO, not a regular file");
    load_fails(fg_model_load_llama2c, fifo, FG_ERR_IO, "is a FIFO");
    /* model.safetensors as a FIFO beside a sound config */
    const char *dir = make_dir("fifo_weights");
    write_gpt2_config(dir, &b.m.cfg);
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    load_fails(fg_model_load, dir, FG_ERR_IO, "model.safetensors: is a FIFO");
    /* config.json as a FIFO */
    dir = make_dir("fifo_config");
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    load_fails(fg_model_load_hf, dir, FG_ERR_IO, "config.json: is a FIFO");
    /* a character device */
    fg_model *m = NULL;
    fgi_assert_status(fg_model_load_llama2c(&m, "/dev/zero"), FG_ERR_IO,
                      "/dev/zero: is a character device, not a regular file");
    cr_assert_null(m);
    base_free(&b);
}

/* A config.json over its limit is refused from its size, before any read:
 * a sparse 3 GiB file takes no time and no memory. */
Test(malformed, oversized_config_is_refused_before_reading, FGI_TIMEOUT(20))
{
    const char *dir = make_dir("huge_config");
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(ftruncate(fileno(f), (off_t)3 << 30), 0);
    fclose(f);
    load_fails(fg_model_load, dir, FG_ERR_FORMAT, "is 3221225472 bytes, over the");
}

/* Asserts the last message is one line of printable ASCII. */
/* Names and strings from files reach messages quoted and escaped: a newline
 * cannot split the one-line error, an escape sequence cannot reach the
 * terminal. */
Test(malformed, untrusted_text_in_messages_is_escaped)
{
    fgi_rng rng = fgi_rng_make(508);
    base_gpt2 b;
    base_init(&b, &rng);
    expect_header_edit(&b, "evil_key", "{", "{\"x\\n\\u001b[2J\\u009b'\": 5, ", FG_ERR_FORMAT,
                       "header entry 'x\\x0A\\x1B[2J\\xC2\\x9B\\x27' is not an object");
    assert_message_is_safe();
    expect_header_edit(&b, "evil_dtype", "\"F32\"", "\"F\\r\\u001b]0;pwn\\u0007\"", FG_ERR_FORMAT,
                       "unknown dtype 'F\\x0D\\x1B]0;pwn\\x07'");
    assert_message_is_safe();
    expect_config(&b, "evil_type", "{\"model_type\": \"gpt2\\n\\u001b[31mred\"}", FG_ERR_UNSUPPORTED,
                  "model_type \"gpt2\\x0A\\x1B[31mred\" is not supported");
    assert_message_is_safe();
    expect_config(&b, "evil_value", "{\"model_type\": \"gpt2\", \"n_layer\": \"1\\n2\"}",
                  FG_ERR_FORMAT, "(got \"1\\x0A2\")");
    assert_message_is_safe();
    /* a path with control characters, named escaped */
    load_fails(fg_model_load, tmp_path("no\nsuch\x1b[2J"), FG_ERR_IO, "no\\x0Asuch\\x1B[2J");
    assert_message_is_safe();
    base_free(&b);
}

static void expect_llama2c(const char *name, const void *data, size_t n, fg_status code,
                           const char *needle)
{
    const char *path = tmp_path("%s.bin", name);
    write_file(path, data, n);
    load_fails(fg_model_load_llama2c, path, code, needle);
    load_fails(fg_model_load, path, code, needle);
}

Test(malformed, llama2c_files)
{
    fgi_rng rng = fgi_rng_make(507);
    fg_config c = fg_config_llama(2, 16, 4, 2, 24, 10, 6);
    fgi_test_model m;
    fgi_test_model_init(&m, &c, &rng, 1);
    bytes b = {0};
    llama2c_bytes(&b, &m);
    int32_t h[7];
    memcpy(h, b.p, sizeof h);
    expect_llama2c("empty", b.p, 0, FG_ERR_FORMAT, "shorter than the 28-byte header");
    expect_llama2c("short", b.p, 20, FG_ERR_FORMAT, "shorter than the 28-byte header");
    expect_llama2c("header", b.p, 28, FG_ERR_FORMAT, "implies");
    expect_llama2c("trunc", b.p, b.len - 4, FG_ERR_FORMAT, "implies");
    bytes longer = {0};
    put(&longer, b.p, b.len), put(&longer, "x", 1);
    expect_llama2c("long", longer.p, longer.len, FG_ERR_FORMAT, "implies");
    free(longer.p);
    /* untied file whose header claims a tied classifier: size mismatch */
    const int32_t tied_vocab = 10;
    memcpy(b.p + 20, &tied_vocab, 4);
    expect_llama2c("tied", b.p, b.len, FG_ERR_FORMAT, "implies");
    static const struct {
        int field;
        int32_t value;
        const char *needle;
    } edits[] = {
        {0, -16, "dim is -16"}, {2, 0, "n_layers is 0"}, {5, 0, "vocab_size is 0"},
        {5, INT32_MIN, "vocab_size"}, {6, -1, "seq_len"},
        {3, 3, "must be a multiple"},        /* dim 16 % 3 heads */
        {4, 3, "must be a multiple"},        /* 4 heads % 3 kv heads */
        {3, 16, "even head_dim"},            /* head_dim 1 */
        {0, 0x7fffffff, "invalid configuration"}, /* dim not divisible */
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        memcpy(b.p, h, sizeof h);
        memcpy(b.p + 4 * edits[i].field, &edits[i].value, 4);
        char name[32];
        snprintf(name, sizeof name, "edit%zu", i);
        expect_llama2c(name, b.p, b.len, FG_ERR_FORMAT, edits[i].needle);
    }
    /* dimensions whose file size overflows 64 bits, and ones that are merely
     * huge: both refused before any allocation */
    const int32_t huge[7] = {1 << 30, 0x7fffffff, 0x7fffffff, 1 << 20, 1 << 20, 1 << 30, 1 << 30};
    memcpy(b.p, huge, sizeof huge);
    expect_llama2c("huge", b.p, b.len, FG_ERR_FORMAT, NULL);
    const int32_t big[7] = {1 << 16, 1 << 16, 64, 1 << 10, 1 << 10, 1 << 16, 1 << 16};
    memcpy(b.p, big, sizeof big);
    expect_llama2c("big", b.p, b.len, FG_ERR_FORMAT, "implies");
    /* a versioned export */
    const uint32_t magic = 0x616b3432;
    memcpy(b.p, &magic, 4);
    expect_llama2c("magic", b.p, b.len, FG_ERR_UNSUPPORTED, "ak42");
    free(b.p);
    fgi_test_model_free(&m);
}
