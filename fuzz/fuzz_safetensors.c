/* libFuzzer target: safetensors files, from the length prefix to a loaded
 * model. The input is one whole file (in memory): its header is parsed and
 * validated, every F32/F16/BF16 tensor it declares is read and converted,
 * and the full Hugging Face loader runs over it for a tiny GPT-2 and a tiny
 * Llama configuration (fuzz/corpus/safetensors holds files that fit them):
 * every slot of a loaded model is converted from the input (the mapped
 * path: no widening) to every element type and held to the widened fp32
 * weights. The input is also mapped from a memory file, as a checkpoint on
 * disk is, and must parse the same. Every allocation is bounded by the
 * input size. */
#define _GNU_SOURCE
#include "message_check.h"
#include "loader_internal.h"
#include "config_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_every_tensor(const fgi_reader *r, const fgi_st_header *h)
{
    for (size_t i = 0; i < h->n_tensors; i++) {
        const fgi_st_tensor *t = &h->tensors[i];
        fgi_dtype dtype;
        if (fgi_safetensors_find(h, t->name) != t) abort(); /* names are unique */
        if (fgi_safetensors_dtype(t, "fuzz", r->name, &dtype) != FG_OK) continue;
        const size_t n = (size_t)(t->end - t->begin) / (size_t)t->dtype_bytes;
        float *values = malloc((n ? n : 1) * sizeof(float));
        if (values == NULL) continue;
        const fgi_tensor_read read = {h->data_start + t->begin, dtype, 1, n,
                                      {values, n, 0, 0}};
        if (fgi_read_tensor(r, &read, NULL) != FG_OK) abort(); /* validated */
        free(values);
    }
}

/* Every slot in every type, from the mapping, against the widened weights
 * (an f16 overflow may refuse; nothing else may differ). */
static void convert_every_slot(const fg_model *model)
{
    static const fg_dtype types[] = {FG_DTYPE_F32, FG_DTYPE_BF16, FG_DTYPE_F16};
    const fg_config *c = fg_model_config(model);
    for (int slot = 0; slot < FGI_SLOT_COUNT; slot++)
        for (int l = 0; l < (slot >= FGI_SLOT_FIRST_LAYER ? c->n_layer : 1); l++) {
            size_t rows, cols;
            if (!fgi_model_slot_shape(model, (fgi_slot)slot, &rows, &cols)) continue;
            for (size_t k = 0; k < 3; k++) {
                const size_t bytes = rows * cols * fg_dtype_size(types[k]);
                unsigned char *got = malloc(bytes), *want = malloc(bytes);
                if (got == NULL || want == NULL) abort();
                if (fgi_model_rows("fuzz", model, (fgi_slot)slot, l, 0, rows, types[k], got) ==
                    FG_OK) {
                    const fg_weights *w = fg_model_weights(model);
                    float *f32 = malloc(rows * cols * sizeof(float));
                    fg_model wide = *model; /* the widened arena, read through the eager path */
                    if (w == NULL || f32 == NULL) abort();
                    wide.sources = NULL;
                    if (fgi_model_rows("fuzz", &wide, (fgi_slot)slot, l, 0, rows, FG_DTYPE_F32,
                                       f32) != FG_OK ||
                        fg_dtype_from_f32(types[k], want, f32, rows * cols) != FG_OK)
                        abort();
                    /* NaN payloads may differ between the two roads; bits elsewhere not */
                    for (size_t i = 0; i < rows * cols; i++)
                        if (f32[i] == f32[i] &&
                            memcmp(got + i * fg_dtype_size(types[k]),
                                   want + i * fg_dtype_size(types[k]), fg_dtype_size(types[k])))
                            abort();
                    free(f32);
                }
                fuzz_check_message();
                free(got);
                free(want);
            }
        }
}

static void load(const fgi_reader *r, const fgi_hf_config *config)
{
    fg_model *model = NULL;
    if (fgi_hf_load(&model, "fuzz", config, r) == FG_OK) {
        convert_every_slot(model);
        if (fgi_check_weights("fuzz", &config->cfg, fg_model_weights(model)) != FG_OK)
            abort();
        fg_model_destroy(model);
    } else if (model != NULL) {
        abort();
    }
    fuzz_check_message();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fgi_reader r;
    fgi_st_header h;
    fgi_reader_memory(&r, "fuzz", "<input>", data, size);
    const fg_status parsed = fgi_safetensors_open(&h, &r);
    if (parsed == FG_OK) {
        read_every_tensor(&r, &h);
        fgi_safetensors_free(&h);
    }
    fuzz_check_message();
    /* the same bytes mapped from a file parse the same */
    const int fd = memfd_create("fuzz_safetensors", MFD_CLOEXEC);
    if (fd >= 0) {
        char path[64];
        fgi_reader mapped;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if ((size == 0 || write(fd, data, size) == (ssize_t)size) &&
            fgi_reader_open(&mapped, "fuzz", path) == FG_OK) {
            if (mapped.size != size) abort();
            if ((fgi_safetensors_open(&h, &mapped) == FG_OK) != (parsed == FG_OK)) abort();
            if (parsed == FG_OK) fgi_safetensors_free(&h);
            fgi_reader_close(&mapped);
        }
        close(fd);
        fuzz_check_message();
    }
    /* 1 layer, C 4, 2 heads, vocab 3, context 2 (GPT-2: tied, with wpe;
     * Llama: 1 KV head, MLP 6, untied) */
    fgi_hf_config gpt2 = {.cfg = fg_config_gpt2(1, 4, 2, 3, 2), .tied = 1};
    fgi_hf_config llama = {.cfg = fg_config_llama(1, 4, 2, 1, 6, 3, 2), .tied = 0};
    load(&r, &gpt2);
    load(&r, &llama);
    fuzz_check_message();
    return 0;
}
