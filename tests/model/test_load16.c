/* Mapped checkpoints and 16-bit weights to the card without an fp32 host
 * copy (docs/contract.md, loading): the model's table of mapped tensors
 * (fgi_model_rows) against the fp32 weights the widening makes, bit for
 * bit in every element type; a model's GPU upload against the upload of
 * its widened weights, logits bit for bit; a generated 1 GB bf16 checkpoint
 * loaded without widening and uploaded within file size + 512 MB of host
 * memory; refusals before anything is allocated; an upload that does not
 * fit the (emulated) card failing with the bytes named and nothing left
 * allocated.
 * Checkpoints are written here (random Llama-family safetensors of a given
 * element type, with a valid config.json) into a fresh temporary folder,
 * and deleted after; the transformers-made folders of tests/model are
 * read in place. */
#define _GNU_SOURCE
#include "fixture.h"
#include "gpu_support.h"
#include "internal.h"
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A generated checkpoint --------------------------------------------------------- */

typedef struct {
    int n_layer, n_embd, n_head, n_kv_head, n_inner, vocab, n_ctx;
    int tied, qkv_bias;
    fg_dtype dtype; /* stored element type */
} ckpt_shape;

typedef struct {
    char name[96];
    int64_t shape[2];
    int n_dims;
    int norm; /* values near 1 */
} ckpt_tensor;

static size_t ckpt_list(const ckpt_shape *s, ckpt_tensor *t)
{
    const int d = s->n_embd / s->n_head, nq = s->n_head * d, nkv = s->n_kv_head * d;
    size_t n = 0;
#define ADD(nm, r, c, nd, nrm)                                                           \
    do {                                                                                 \
        if (t) {                                                                         \
            snprintf(t[n].name, sizeof t[n].name, "%s", nm);                             \
            t[n].shape[0] = (r);                                                         \
            t[n].shape[1] = (c);                                                         \
            t[n].n_dims = (nd);                                                          \
            t[n].norm = (nrm);                                                           \
        }                                                                                \
        n++;                                                                             \
    } while (0)
    char nm[96];
    ADD("model.embed_tokens.weight", s->vocab, s->n_embd, 2, 0);
    for (int l = 0; l < s->n_layer; l++) {
#define L(suffix) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix), nm)
        ADD(L("input_layernorm.weight"), s->n_embd, 0, 1, 1);
        ADD(L("self_attn.q_proj.weight"), nq, s->n_embd, 2, 0);
        ADD(L("self_attn.k_proj.weight"), nkv, s->n_embd, 2, 0);
        ADD(L("self_attn.v_proj.weight"), nkv, s->n_embd, 2, 0);
        if (s->qkv_bias) {
            ADD(L("self_attn.q_proj.bias"), nq, 0, 1, 0);
            ADD(L("self_attn.k_proj.bias"), nkv, 0, 1, 0);
            ADD(L("self_attn.v_proj.bias"), nkv, 0, 1, 0);
        }
        ADD(L("self_attn.o_proj.weight"), s->n_embd, nq, 2, 0);
        ADD(L("post_attention_layernorm.weight"), s->n_embd, 0, 1, 1);
        ADD(L("mlp.gate_proj.weight"), s->n_inner, s->n_embd, 2, 0);
        ADD(L("mlp.up_proj.weight"), s->n_inner, s->n_embd, 2, 0);
        ADD(L("mlp.down_proj.weight"), s->n_embd, s->n_inner, 2, 0);
#undef L
    }
    ADD("model.norm.weight", s->n_embd, 0, 1, 1);
    if (!s->tied) ADD("lm_head.weight", s->vocab, s->n_embd, 2, 0);
#undef ADD
    return n;
}

static uint64_t elems_of(const ckpt_tensor *t)
{
    return (uint64_t)t->shape[0] * (uint64_t)(t->n_dims == 2 ? t->shape[1] : 1);
}

/* Writes dir/config.json and dir/model.safetensors (random values: norm
 * gains 1 +- 0.1, the rest +- 0.08), a chunk at a time; returns the
 * safetensors file's size. */
static uint64_t write_checkpoint(const char *dir, const ckpt_shape *s, uint64_t seed)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL, "cannot write %s", path);
    fprintf(f, "{\"model_type\": \"llama\", \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
            "\"num_key_value_heads\": %d, \"hidden_size\": %d, \"intermediate_size\": %d, "
            "\"vocab_size\": %d, \"max_position_embeddings\": %d, \"rms_norm_eps\": 1e-5, "
            "\"tie_word_embeddings\": %s, \"hidden_act\": \"silu\", \"rope_theta\": 10000.0}\n",
            s->n_layer, s->n_head, s->n_kv_head, s->n_embd, s->n_inner, s->vocab, s->n_ctx,
            s->tied ? "true" : "false");
    cr_assert_eq(fclose(f), 0);

    const size_t n = ckpt_list(s, NULL);
    ckpt_tensor *t = calloc(n, sizeof *t);
    cr_assert(t != NULL);
    ckpt_list(s, t);
    const size_t es = fg_dtype_size(s->dtype);
    const char *dname = s->dtype == FG_DTYPE_F32 ? "F32" : s->dtype == FG_DTYPE_BF16 ? "BF16" : "F16";
    size_t cap = 64 + n * 200, len = 0;
    char *json = malloc(cap);
    cr_assert(json != NULL);
    uint64_t at = 0;
    len += (size_t)snprintf(json + len, cap - len, "{\"__metadata__\": {\"format\": \"pt\"}");
    for (size_t i = 0; i < n; i++) {
        const uint64_t bytes = elems_of(&t[i]) * es;
        if (t[i].n_dims == 2)
            len += (size_t)snprintf(json + len, cap - len,
                                    ", \"%s\": {\"dtype\": \"%s\", \"shape\": [%lld, %lld], "
                                    "\"data_offsets\": [%llu, %llu]}", t[i].name, dname,
                                    (long long)t[i].shape[0], (long long)t[i].shape[1],
                                    (unsigned long long)at, (unsigned long long)(at + bytes));
        else
            len += (size_t)snprintf(json + len, cap - len,
                                    ", \"%s\": {\"dtype\": \"%s\", \"shape\": [%lld], "
                                    "\"data_offsets\": [%llu, %llu]}", t[i].name, dname,
                                    (long long)t[i].shape[0], (unsigned long long)at,
                                    (unsigned long long)(at + bytes));
        at += bytes;
    }
    len += (size_t)snprintf(json + len, cap - len, "}");
    while (len % 8) json[len++] = ' '; /* the data region 8-byte aligned */
    cr_assert(len < cap);

    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    cr_assert(f != NULL, "cannot write %s", path);
    unsigned char prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (unsigned char)((uint64_t)len >> (8 * i));
    cr_assert_eq(fwrite(prefix, 1, 8, f), 8u);
    cr_assert_eq(fwrite(json, 1, len, f), len);
    enum { chunk = 1 << 20 };
    float *vals = malloc(chunk * sizeof(float));
    void *raw = malloc(chunk * es);
    cr_assert(vals != NULL && raw != NULL);
    fgi_rng rng = fgi_rng_make(seed);
    for (size_t i = 0; i < n; i++) {
        for (uint64_t done = 0, total = elems_of(&t[i]); done < total;) {
            const size_t k = total - done < chunk ? (size_t)(total - done) : chunk;
            for (size_t j = 0; j < k; j += 4) { /* four 16-bit uniforms per draw */
                const uint64_t z = fgi_rng_next(&rng);
                for (size_t q = 0; q < 4 && j + q < k; q++) {
                    const float u = (float)((z >> (16 * q)) & 0xffff) / 32768.0f - 1.0f;
                    vals[j + q] = t[i].norm ? 1.0f + 0.1f * u : 0.08f * u;
                }
            }
            cr_assert_eq(fg_dtype_from_f32(s->dtype, raw, vals, k), FG_OK);
            cr_assert_eq(fwrite(raw, es, k, f), k, "writing %s failed", path);
            done += k;
        }
    }
    cr_assert_eq(fclose(f), 0, "writing %s failed", path);
    free(vals);
    free(raw);
    free(json);
    free(t);
    return 8 + len + at;
}

static char *make_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/fg_load16_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    char *dir = strdup(tmpl);
    cr_assert(dir != NULL && mkdtemp(dir) != NULL, "cannot make a temporary folder");
    return dir;
}

static void remove_dir(char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
    free(dir);
}

static fg_model *load(const char *dir)
{
    fg_model *m = NULL;
    cr_assert_eq(fg_model_load(&m, dir), FG_OK, "%s: %s", dir, fg_last_error());
    return m;
}

static char *transformers_dir(const char *folder)
{
    static char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/model/transformers/%s", FG_SOURCE_DIR, folder);
    return dir;
}

/* Memory of this process (kB from /proc/self/status). */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    const size_t n = strlen(key);
    if (f == NULL) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') kb = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return kb;
}

/* Starts the peak-RSS count afresh (Linux 4.0+); 0 when it cannot. */
static int reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f == NULL) return 0;
    const int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

/* The table of mapped tensors against the widened weights ------------------------- */

static const fg_dtype all_types[] = {FG_DTYPE_F32, FG_DTYPE_BF16, FG_DTYPE_F16};

/* Every slot of `lazy` (never widened) in every element type equals the
 * fp32 weights of `wide` (the same checkpoint, widened) converted the way
 * fg_dtype_from_f32 does, whole and in a random band of rows. */
static void check_rows(const char *what, const fg_model *lazy, const fg_model *wide, fgi_rng *rng)
{
    const fg_config *c = fg_model_config(lazy);
    for (int slot = 0; slot < FGI_SLOT_COUNT; slot++)
        for (int l = 0; l < (slot >= FGI_SLOT_FIRST_LAYER ? c->n_layer : 1); l++) {
            size_t rows, cols, rows2, cols2;
            const int has = fgi_model_slot_shape(lazy, (fgi_slot)slot, &rows, &cols);
            cr_assert_eq(has, fgi_model_slot_shape(wide, (fgi_slot)slot, &rows2, &cols2));
            if (!has) continue;
            const float *ref = NULL;
            /* the widened slot's rows in f32, through the eager path */
            float *f32 = malloc(rows * cols * sizeof(float));
            cr_assert(f32 != NULL);
            cr_assert_eq(fgi_model_rows("test", wide, (fgi_slot)slot, l, 0, rows, FG_DTYPE_F32, f32),
                         FG_OK, "%s", fg_last_error());
            ref = f32;
            for (size_t k = 0; k < sizeof all_types / sizeof all_types[0]; k++) {
                const fg_dtype dt = all_types[k];
                const size_t es = fg_dtype_size(dt), bytes = rows * cols * es;
                unsigned char *want = malloc(bytes), *got = malloc(bytes);
                cr_assert(want != NULL && got != NULL);
                cr_assert_eq(fg_dtype_from_f32(dt, want, ref, rows * cols), FG_OK);
                memset(got, 0xa5, bytes);
                cr_assert_eq(fgi_model_rows("test", lazy, (fgi_slot)slot, l, 0, rows, dt, got), FG_OK,
                             "%s", fg_last_error());
                char msg[160];
                snprintf(msg, sizeof msg, "%s: slot %d layer %d as %s", what, slot, l,
                         fg_dtype_name(dt));
                fgi_assert_same(got, want, bytes, msg);
                /* a band of rows is the same rows of the whole */
                const size_t r0 = (size_t)fgi_rng_int(rng, 0, (int)rows - 1);
                const size_t nr = (size_t)fgi_rng_int(rng, 1, (int)(rows - r0));
                memset(got, 0xa5, bytes);
                cr_assert_eq(fgi_model_rows("test", lazy, (fgi_slot)slot, l, r0, nr, dt, got), FG_OK);
                fgi_assert_same(got, want + r0 * cols * es, nr * cols * es, msg);
                /* straight bytes, when offered, are these bytes */
                const void *direct = fgi_model_slot_bytes(lazy, (fgi_slot)slot, l, dt);
                if (direct != NULL) fgi_assert_same(direct, want, bytes, msg);
                free(want);
                free(got);
            }
            free(f32);
        }
    cr_assert(lazy->arena == NULL, "%s: converting rows widened the model", what);
    /* out of range: refused, nothing written */
    size_t rows, cols;
    fgi_model_slot_shape(lazy, FGI_SLOT_WTE, &rows, &cols);
    float one = 0.0f;
    fgi_assert_status(fgi_model_rows("test", lazy, FGI_SLOT_WTE, -1, rows, 1, FG_DTYPE_F32, &one),
                      FG_ERR_INVALID_ARG, "do not exist");
}

Test(load16, mapped_rows_match_the_widened_weights)
{
    static const char *folders[] = {"llama_f32", "llama3_bf16_sharded", "llama_linear_f16_tied",
                                    "qwen2_f32", "gpt2_f16", "gpt2_f32", "mistral_bf16_sharded",
                                    "llama_head_dim12"};
    fgi_rng rng = fgi_rng_make(1601);
    for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
        const char *dir = transformers_dir(folders[i]);
        fg_model *lazy = load(dir), *wide = load(dir);
        cr_assert(lazy->arena == NULL, "%s: loading widened the model", folders[i]);
        cr_assert(fg_model_weights(wide) != NULL, "%s", fg_last_error());
        cr_assert(wide->arena != NULL);
        check_rows(folders[i], lazy, wide, &rng);
        fg_model_destroy(lazy);
        fg_model_destroy(wide);
    }
    /* a Llama file with q/k/v biases (their rows permuted like the weights') */
    char *dir = make_dir();
    const ckpt_shape s = {2, 64, 2, 1, 96, 40, 16, 0, 1, FG_DTYPE_BF16};
    write_checkpoint(dir, &s, 1602);
    fg_model *lazy = load(dir), *wide = load(dir);
    cr_assert(fg_model_weights(wide) != NULL);
    check_rows("generated bf16 with q/k/v biases", lazy, wide, &rng);
    fg_model_destroy(lazy);
    fg_model_destroy(wide);
    remove_dir(dir);
}

Test(load16, a_model_in_memory_converts_from_its_fp32_weights)
{
    const fg_config cfg = fg_config_llama(2, 32, 2, 1, 48, 30, 8);
    fg_model *m = NULL;
    cr_assert_eq(fg_model_create_random(&m, &cfg, fgi_test_seed()), FG_OK);
    size_t rows, cols;
    cr_assert(fgi_model_slot_shape(m, FGI_SLOT_UP_W, &rows, &cols));
    uint16_t *got = malloc(rows * cols * 2), *want = malloc(rows * cols * 2);
    cr_assert(got && want);
    cr_assert_eq(fgi_model_rows("test", m, FGI_SLOT_UP_W, 1, 0, rows, FG_DTYPE_BF16, got), FG_OK);
    cr_assert_eq(fg_dtype_from_f32(FG_DTYPE_BF16, want, fg_model_weights(m)->layers[1].up_w,
                                   rows * cols), FG_OK);
    fgi_assert_same(got, want, rows * cols * 2, "random model's up_w as bf16");
    cr_assert(fgi_model_slot_bytes(m, FGI_SLOT_UP_W, 1, FG_DTYPE_F32) ==
              (const void *)fg_model_weights(m)->layers[1].up_w);
    cr_assert(fgi_model_slot_bytes(m, FGI_SLOT_UP_W, 1, FG_DTYPE_BF16) == NULL);
    free(got);
    free(want);
    fg_model_destroy(m);
}

Test(load16, cpu_device_refuses_16bit_before_widening)
{
    fg_model *m = load(transformers_dir("llama3_bf16_sharded"));
    fg_session *s = (fg_session *)1;
    fgi_assert_status(fg_session_create_model(&s, m, FG_DEVICE_CPU, 0, FG_DTYPE_BF16),
                      FG_ERR_UNSUPPORTED, "runs on the cuda device only");
    cr_assert(s == NULL);
    cr_assert(m->arena == NULL, "a refused session widened the model");
    fgi_assert_status(fg_session_create_model(&s, NULL, FG_DEVICE_CPU, 0, FG_DTYPE_F32),
                      FG_ERR_INVALID_ARG, "model");
    /* f32 on the CPU widens it, once */
    cr_assert_eq(fg_session_create_model(&s, m, FG_DEVICE_REF, 4, FG_DTYPE_F32), FG_OK, "%s",
                 fg_last_error());
    cr_assert(m->arena != NULL);
    size_t w = 1, c = 1, a = 1;
    cr_assert_eq(fg_session_device_memory(s, &w, &c, &a), FG_OK);
    cr_assert(w == 0 && c == 0 && a == 0, "no device memory on the CPU");
    fg_session_destroy(s);
    fg_model_destroy(m);
}

/* GPU: a model's upload against the upload of its widened weights -------------- */

static void same_logits(const char *what, fg_model *lazy, fg_model *wide, fg_dtype dtype,
                        fgi_rng *rng)
{
    const fg_config *c = fg_model_config(lazy);
    enum { T = 5 };
    int ids[T];
    fgi_test_random_ids(ids, T, c->vocab_size, rng);
    fg_session *a = NULL, *b = NULL;
    cr_assert_eq(fg_session_create_model(&a, lazy, FG_DEVICE_CUDA, T + 1, dtype), FG_OK,
                 "%s: %s", what, fg_last_error());
    cr_assert_eq(fg_session_create_typed(&b, c, fg_model_weights(wide), FG_DEVICE_CUDA, T + 1,
                                         dtype),
                 FG_OK, "%s: %s", what, fg_last_error());
    const size_t n = (size_t)T * (size_t)c->vocab_size;
    float *la = fgi_buf_nan(n), *lb = fgi_buf_nan(n);
    cr_assert_eq(fg_session_forward(a, ids, T, la), FG_OK, "%s: %s", what, fg_last_error());
    cr_assert_eq(fg_session_forward(b, ids, T, lb), FG_OK, "%s: %s", what, fg_last_error());
    char msg[160];
    snprintf(msg, sizeof msg, "%s in %s: logits of the mapped upload", what, fg_dtype_name(dtype));
    fgi_assert_same(la, lb, n * sizeof(float), msg);
    for (size_t i = 0; i < n; i++) cr_assert(la[i] == la[i], "%s: NaN logit", msg);
    size_t wa, ca, aa, wb, cb, ab;
    cr_assert_eq(fg_session_device_memory(a, &wa, &ca, &aa), FG_OK);
    cr_assert_eq(fg_session_device_memory(b, &wb, &cb, &ab), FG_OK);
    cr_assert(wa == wb && ca == cb && aa == ab && wa > 0 && ca > 0 && aa > 0,
              "%s: device memory %zu + %zu + %zu vs %zu + %zu + %zu", msg, wa, ca, aa, wb, cb, ab);
    fgi_buf_free(la);
    fgi_buf_free(lb);
    fg_session_destroy(a);
    fg_session_destroy(b);
}

Test(load16_gpu, model_upload_equals_host_upload)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(1603);
    /* head_dim 32: every 16-bit kernel exists for it */
    const ckpt_shape shapes[] = {
        {2, 64, 2, 1, 96, 40, 16, 0, 1, FG_DTYPE_BF16}, /* untied, q/k/v biases */
        {1, 64, 2, 2, 80, 36, 16, 1, 0, FG_DTYPE_F32},  /* tied */
        {1, 64, 2, 1, 64, 33, 16, 0, 0, FG_DTYPE_F16},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char *dir = make_dir();
        write_checkpoint(dir, &shapes[i], 1604 + i);
        fg_model *lazy = load(dir), *wide = load(dir);
        for (size_t k = 0; k < sizeof all_types / sizeof all_types[0]; k++) {
            if (!fg_cuda_decoder_dtype_supported(fg_model_config(lazy), all_types[k])) continue;
            /* the default stage (one band per slot here), then one row per band */
            for (int rows = 0; rows < 2; rows++) {
                char what[96];
                snprintf(what, sizeof what, "generated %s checkpoint %zu%s",
                         fg_dtype_name(shapes[i].dtype), i, rows ? ", one row per band" : "");
                fgi_cuda_set_upload_stage_bytes(rows ? 1 : 0);
                same_logits(what, lazy, wide, all_types[k], &rng);
            }
            fgi_cuda_set_upload_stage_bytes(0);
        }
        cr_assert(lazy->arena == NULL, "a GPU session widened the model");
        fg_model_destroy(lazy);
        fg_model_destroy(wide);
        remove_dir(dir);
    }
    /* the transformers folders in f32 (their heads are too narrow for 16-bit) */
    static const char *folders[] = {"gpt2_f16", "qwen2_f32", "llama3_bf16_sharded"};
    for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
        fg_model *lazy = load(transformers_dir(folders[i])), *wide = load(transformers_dir(folders[i]));
        same_logits(folders[i], lazy, wide, FG_DTYPE_F32, &rng);
        cr_assert(lazy->arena == NULL);
        fg_model_destroy(lazy);
        fg_model_destroy(wide);
    }
}

/* A bf16 checkpoint with a weight beyond f16's range: refused in f16 ---------------- */

/* Sets the first element of the data region (embed_tokens[0][0]) to x. */
static void poke_first_weight(const char *dir, fg_dtype dtype, float x)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "r+b");
    unsigned char prefix[8], raw[4];
    cr_assert(f != NULL && fread(prefix, 1, 8, f) == 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | prefix[i];
    cr_assert_eq(fg_dtype_from_f32(dtype, raw, &x, 1), FG_OK);
    cr_assert(fseek(f, (long)(8 + n), SEEK_SET) == 0);
    cr_assert_eq(fwrite(raw, 1, fg_dtype_size(dtype), f), fg_dtype_size(dtype));
    cr_assert_eq(fclose(f), 0);
}

Test(load16, f16_refuses_weights_beyond_its_range)
{
    char *dir = make_dir();
    const ckpt_shape s = {1, 64, 2, 1, 64, 30, 16, 0, 0, FG_DTYPE_BF16};
    write_checkpoint(dir, &s, 1607);
    poke_first_weight(dir, FG_DTYPE_BF16, 1.0e5f);
    fg_model *m = load(dir);
    size_t rows, cols;
    cr_assert(fgi_model_slot_shape(m, FGI_SLOT_WTE, &rows, &cols));
    uint16_t *out = malloc(rows * cols * 2);
    cr_assert(out != NULL);
    fgi_assert_status(fgi_model_rows("test", m, FGI_SLOT_WTE, -1, 0, 1, FG_DTYPE_F16, out),
                      FG_ERR_UNSUPPORTED, "wte has values beyond f16's range");
    cr_assert_eq(fgi_model_rows("test", m, FGI_SLOT_WTE, -1, 1, rows - 1, FG_DTYPE_F16, out), FG_OK,
                 "the other rows are in range: %s", fg_last_error());
    cr_assert_eq(fgi_model_rows("test", m, FGI_SLOT_WTE, -1, 0, 1, FG_DTYPE_BF16, out), FG_OK);
    free(out);
    if (fg_cuda_available()) {
        size_t live0 = 0, live1 = 1;
        (void)live0;
        (void)live1;
#ifdef FG_CUDA_EMULATED
        fgi_emu_device_memory(&live0, NULL, NULL);
#endif
        fg_session *session = NULL;
        fgi_assert_status(fg_session_create_model(&session, m, FG_DEVICE_CUDA, 8, FG_DTYPE_F16),
                          FG_ERR_UNSUPPORTED, "beyond f16's range");
        cr_assert(session == NULL);
#ifdef FG_CUDA_EMULATED
        fgi_emu_device_memory(&live1, NULL, NULL);
        cr_assert_eq(live1, live0, "a refused upload left %zu bytes allocated", live1 - live0);
#endif
        cr_assert_eq(fg_session_create_model(&session, m, FG_DEVICE_CUDA, 8, FG_DTYPE_BF16), FG_OK,
                     "%s", fg_last_error());
        fg_session_destroy(session);
    }
    fg_model_destroy(m);
    remove_dir(dir);
}

/* A 1 GB bf16 checkpoint ----------------------------------------------------------- */

/* Llama shape, small vocabulary: 12 layers of 2048 wide (16 heads of 128,
 * 4 KV heads), SwiGLU 5632: 1.09 GB in bf16. */
static const ckpt_shape big = {12, 2048, 16, 4, 5632, 256, 64, 1, 0, FG_DTYPE_BF16};

Test(load16, big_bf16_checkpoint_maps_without_widening_and_uploads_in_bounded_memory,
     FGI_TIMEOUT(600))
{
    char *dir = make_dir();
    const uint64_t file = write_checkpoint(dir, &big, 1605);
    cr_assert(file >= (uint64_t)1 << 30, "the checkpoint is %llu bytes", (unsigned long long)file);
    const long mb = 1024; /* kB per MB */
    const long before = status_kb("VmRSS");
    fg_model *m = load(dir);
    const long after = status_kb("VmRSS");
    /* the mapping keeps the file: deleted now, a failing assertion below
     * cannot leave a gigabyte behind */
    remove_dir(dir);
    cr_log_info("load16: %.0f MB checkpoint: loading took the RSS from %ld to %ld MB\n",
                (double)file / 1e6, before / mb, after / mb);
    cr_assert(after - before < 64 * mb, "loading grew the RSS by %ld MB: the file was read or "
              "widened", (after - before) / mb);
    cr_assert(m->arena == NULL);
    if (!fg_cuda_available()) {
        cr_log_info("load16: no GPU: the upload's peak is not measured\n");
        fg_model_destroy(m);
        return;
    }
    /* host memory while the weights go to the card */
    cr_assert(reset_peak_rss(), "cannot reset VmHWM (/proc/self/clear_refs)");
    const long base = status_kb("VmRSS");
    size_t emu_before = 0, emu_peak = 0;
#ifdef FG_CUDA_EMULATED
    fgi_emu_device_reset_peak();
    fgi_emu_device_memory(NULL, NULL, &emu_before);
#endif
    fg_cuda_weights *w = NULL;
    cr_assert_eq(fg_cuda_weights_create_model(&w, m, FG_DTYPE_BF16), FG_OK, "%s", fg_last_error());
    const long peak = status_kb("VmHWM");
#ifdef FG_CUDA_EMULATED
    fgi_emu_device_memory(NULL, NULL, &emu_peak); /* the emulated card lives in our RSS */
#endif
    const long device_kb = (long)((emu_peak - emu_before) / 1024);
    const long host_kb = peak - base - device_kb;
    cr_log_info("load16: upload: peak RSS %ld MB over %ld MB, of which %ld MB the emulated card: "
                "%ld MB host for a %.0f MB file (limit: file + 512 MB)\n",
                peak / mb, base / mb, device_kb / mb, host_kb / mb, (double)file / 1e6);
    cr_assert(host_kb <= (long)(file / 1024) + 512 * mb,
              "the upload used %ld MB of host memory for a %llu-byte file", host_kb / mb,
              (unsigned long long)file);
    cr_assert(fg_cuda_weights_bytes(w) >= file - 65536, "weights %zu bytes on the card",
              fg_cuda_weights_bytes(w));
    cr_assert(m->arena == NULL, "the upload widened the model");
    fg_cuda_weights_destroy(w);
    fg_model_destroy(m);
}

/* Out of device memory (emulator: FG_EMU_DEVICE_MB caps the card) ----------------- */

#ifdef FG_CUDA_EMULATED
/* 2 layers, 256 wide, 8 heads of 32, SwiGLU 512, vocab 512: 2.9 MB in bf16. */
static const ckpt_shape small = {2, 256, 8, 8, 512, 512, 64, 0, 0, FG_DTYPE_BF16};

static void oom_case(const char *limit_mb, int weights_fit)
{
    setenv("FG_EMU_DEVICE_MB", limit_mb, 1); /* read at the first allocation */
    fgi_require_gpu();
    char *dir = make_dir();
    write_checkpoint(dir, &small, 1606);
    fg_model *m = load(dir);
    size_t live0 = 1, live1 = 1;
    fgi_emu_device_memory(&live0, NULL, NULL);
    fg_cuda_weights *w = (fg_cuda_weights *)1;
    fg_session *s = (fg_session *)1;
    if (!weights_fit) {
        fgi_assert_status(fg_cuda_weights_create_model(&w, m, FG_DTYPE_BF16), FG_ERR_OOM,
                          "bytes of device memory for the weights failed");
        cr_assert(w == NULL);
        cr_assert(strstr(fg_last_error(), "free of") != NULL, "%s", fg_last_error());
        fgi_emu_device_memory(&live1, NULL, NULL);
        cr_assert_eq(live1, live0, "a failed upload left %zu bytes allocated", live1 - live0);
    }
    if (weights_fit) { /* the weights alone fit: the session fails past them */
        cr_assert_eq(fg_cuda_weights_create_model(&w, m, FG_DTYPE_BF16), FG_OK, "%s",
                     fg_last_error());
        fg_cuda_weights_destroy(w);
    }
    /* a session: weights, runner or cache does not fit; nothing stays */
    fgi_assert_status(fg_session_create_model(&s, m, FG_DEVICE_CUDA, 64, FG_DTYPE_BF16), FG_ERR_OOM,
                      "free of");
    cr_assert(s == NULL);
    cr_assert(strstr(fg_last_error(), "allocating ") != NULL, "%s", fg_last_error());
    fgi_emu_device_memory(&live1, NULL, NULL);
    cr_assert_eq(live1, live0, "a failed session left %zu bytes allocated", live1 - live0);
    cr_assert(m->arena == NULL);
    fg_model_destroy(m);
    remove_dir(dir);
}

Test(load16_gpu, weights_that_do_not_fit_fail_cleanly) { oom_case("2", 0); }
Test(load16_gpu, a_session_that_does_not_fit_fails_cleanly) { oom_case("4", 1); }
#endif

/* The scheduler from a model (fg_scheduler_create_model) ------------------------- */

enum { SCHED_REQS = 3, SCHED_MAX = 8 };

typedef struct {
    int tokens[SCHED_MAX];
    int n;
    int vocab;
    float *logits; /* (SCHED_MAX, vocab) */
} sched_rec;

static int sched_on_token(void *user, uint64_t id, int token, const float *logits)
{
    (void)id;
    sched_rec *r = user;
    cr_assert(r->n < SCHED_MAX);
    memcpy(r->logits + (size_t)r->n * (size_t)r->vocab, logits, sizeof(float) * (size_t)r->vocab);
    r->tokens[r->n++] = token;
    return 0;
}

/* Runs the same SCHED_REQS requests (greedy, and one seeded sample) through
 * sched to the end into rec. */
static void sched_run(fg_scheduler *sched, const int prompts[SCHED_REQS][6], int vocab,
                      sched_rec rec[SCHED_REQS])
{
    for (int i = 0; i < SCHED_REQS; i++) {
        rec[i].n = 0;
        rec[i].vocab = vocab;
        rec[i].logits = fgi_buf_nan((size_t)SCHED_MAX * (size_t)vocab);
        fg_request q;
        memset(&q, 0, sizeof q);
        q.prompt = prompts[i];
        q.n_prompt = 3 + i;
        q.sampling = fg_sampler_defaults();
        q.sampling.temperature = i == 2 ? 0.8f : 0.0f;
        q.sampling.seed = 77;
        q.max_tokens = SCHED_MAX - i;
        q.on_token = sched_on_token;
        q.user = &rec[i];
        uint64_t id;
        cr_assert_eq(fg_scheduler_submit(sched, &q, &id), FG_OK, "%s", fg_last_error());
    }
    int busy = 1;
    for (int steps = 0; busy; steps++) {
        cr_assert(steps < 100, "the scheduler does not finish");
        cr_assert_eq(fg_scheduler_step(sched, &busy), FG_OK, "%s", fg_last_error());
    }
}

/* The requests of a scheduler over `lazy` (from the model) against one
 * over the widened weights of `wide` (the same checkpoint): the same
 * tokens; logits bit for bit where both read the same upload (16-bit,
 * and the CPU devices), else (fp32 on the GPU, whose Llama gate|up is one
 * GEMM from the model) within the fp32 rule of §32. */
static void sched_compare(const char *what, fg_model *lazy, fg_model *wide,
                          const fg_scheduler_config *opts, fgi_rng *rng)
{
    const fg_config *c = fg_model_config(lazy);
    int prompts[SCHED_REQS][6];
    for (int i = 0; i < SCHED_REQS; i++) fgi_test_random_ids(prompts[i], 6, c->vocab_size, rng);
    sched_rec a[SCHED_REQS], b[SCHED_REQS];
    fg_scheduler *sa = NULL, *sb = NULL;
    cr_assert_eq(fg_scheduler_create_model(&sa, lazy, opts), FG_OK, "%s: %s", what,
                 fg_last_error());
    cr_assert_eq(fg_scheduler_create(&sb, fg_model_config(wide), fg_model_weights(wide), opts),
                 FG_OK, "%s: %s", what, fg_last_error());
    fg_scheduler_stats st_a, st_b;
    cr_assert_eq(fg_scheduler_stats_get(sa, &st_a), FG_OK);
    cr_assert_eq(fg_scheduler_stats_get(sb, &st_b), FG_OK);
    cr_assert_eq(st_a.dtype, st_b.dtype, "%s: dtype", what);
    sched_run(sa, prompts, c->vocab_size, a);
    sched_run(sb, prompts, c->vocab_size, b);
    const size_t V = (size_t)c->vocab_size;
    const int exact = opts->device != FG_DEVICE_CUDA || st_a.dtype != FG_DTYPE_F32;
    for (int i = 0; i < SCHED_REQS; i++) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s, request %d", what, i);
        cr_assert(a[i].n >= 1 && a[i].n == b[i].n, "%s: %d vs %d tokens", msg, a[i].n, b[i].n);
        cr_assert_arr_eq(a[i].tokens, b[i].tokens, sizeof(int) * (size_t)a[i].n, "%s: tokens", msg);
        const size_t n = (size_t)a[i].n * V;
        for (size_t k = 0; k < n; k++) cr_assert(a[i].logits[k] == a[i].logits[k], "%s: NaN", msg);
        if (exact) fgi_assert_same(a[i].logits, b[i].logits, n * sizeof(float), msg);
        else fgi_assert_close(a[i].logits, b[i].logits, n, 1e-4, 1e-4, 1e-5, msg);
        fgi_buf_free(a[i].logits);
        fgi_buf_free(b[i].logits);
    }
    fg_scheduler_destroy(sa);
    fg_scheduler_destroy(sb);
}

static fg_scheduler_config sched_opts(fg_device device, fg_dtype dtype)
{
    fg_scheduler_config o = fg_scheduler_defaults();
    o.device = device;
    o.n_threads = 2;
    o.dtype = dtype;
    o.block_size = 16;
    o.max_seqs = 4;
    o.step_tokens = 8; /* prompts in chunks */
    return o;
}

Test(load16, scheduler_from_a_model_on_the_cpu_devices)
{
    fgi_rng rng = fgi_rng_make(1611);
    const ckpt_shape shape = {2, 64, 2, 1, 96, 40, 16, 0, 1, FG_DTYPE_BF16};
    char *dir = make_dir();
    write_checkpoint(dir, &shape, 1612);
    fg_model *lazy = load(dir), *wide = load(dir);
    fg_scheduler *s = (fg_scheduler *)1;
    fg_scheduler_config o = sched_opts(FG_DEVICE_CPU, FG_DTYPE_AUTO);
    /* the argument checks of fg_scheduler_create, before any widening */
    fgi_assert_status(fg_scheduler_create_model(NULL, lazy, &o), FG_ERR_INVALID_ARG, "sched");
    fgi_assert_status(fg_scheduler_create_model(&s, lazy, NULL), FG_ERR_INVALID_ARG, "opts");
    cr_assert(s == NULL);
    s = (fg_scheduler *)1;
    fgi_assert_status(fg_scheduler_create_model(&s, NULL, &o), FG_ERR_INVALID_ARG, "model");
    cr_assert(s == NULL);
    o.dtype = FG_DTYPE_BF16;
    fgi_assert_status(fg_scheduler_create_model(&s, lazy, &o), FG_ERR_UNSUPPORTED,
                      "runs on the cuda device only");
    o = sched_opts(FG_DEVICE_CPU, FG_DTYPE_AUTO);
    o.max_seqs = 0;
    fgi_assert_status(fg_scheduler_create_model(&s, lazy, &o), FG_ERR_INVALID_ARG, "max_seqs");
    cr_assert(lazy->arena == NULL, "a refused scheduler widened the model");
    if (!fg_cuda_available()) {
        /* a build without CUDA refuses the cuda device (unsupported), a CUDA
         * build on a machine without a GPU finds no device (a CUDA error);
         * either way before widening the model */
        o = sched_opts(FG_DEVICE_CUDA, FG_DTYPE_AUTO);
#ifdef FG_HAVE_CUDA
        fgi_assert_status(fg_scheduler_create_model(&s, lazy, &o), FG_ERR_CUDA, "no CUDA device");
#else
        fgi_assert_status(fg_scheduler_create_model(&s, lazy, &o), FG_ERR_UNSUPPORTED, NULL);
#endif
        cr_assert(s == NULL);
        cr_assert(lazy->arena == NULL, "a refused cuda scheduler widened the model");
    }
    const fg_device devices[] = {FG_DEVICE_REF, FG_DEVICE_CPU};
    for (size_t i = 0; i < 2; i++) {
        o = sched_opts(devices[i], FG_DTYPE_AUTO);
        sched_compare(fg_device_name(devices[i]), lazy, wide, &o, &rng);
        cr_assert(lazy->arena != NULL, "the CPU devices compute from the widened weights");
    }
    fg_model_destroy(lazy);
    fg_model_destroy(wide);
    remove_dir(dir);
}

Test(load16_gpu, scheduler_from_a_model_never_widens_it)
{
    fgi_require_gpu();
    fgi_rng rng = fgi_rng_make(1613);
    const ckpt_shape shapes[] = {
        {2, 64, 2, 1, 96, 40, 32, 0, 1, FG_DTYPE_BF16}, /* untied, q/k/v biases */
        {1, 64, 2, 2, 80, 36, 32, 1, 0, FG_DTYPE_F16},  /* tied */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char *dir = make_dir();
        write_checkpoint(dir, &shapes[i], 1614 + i);
        fg_model *lazy = load(dir), *wide = load(dir);
        for (size_t k = 0; k < sizeof all_types / sizeof all_types[0]; k++) {
            if (!fg_cuda_decoder_dtype_supported(fg_model_config(lazy), all_types[k])) continue;
            char what[96];
            snprintf(what, sizeof what, "%s checkpoint %zu, scheduler in %s",
                     fg_dtype_name(shapes[i].dtype), i, fg_dtype_name(all_types[k]));
            const fg_scheduler_config o = sched_opts(FG_DEVICE_CUDA, all_types[k]);
            sched_compare(what, lazy, wide, &o, &rng);
        }
        cr_assert(lazy->arena == NULL, "a GPU scheduler widened the model");
        fg_model_destroy(lazy);
        fg_model_destroy(wide);
        remove_dir(dir);
    }
}
