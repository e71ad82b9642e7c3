/* libFuzzer target: safetensors files, from the length prefix to a loaded
 * model. The input is one whole file (in memory): its header is parsed and
 * validated, every F32/F16/BF16 tensor it declares is read and converted,
 * and the full Hugging Face loader runs over it for a tiny GPT-2 and a tiny
 * Llama configuration (fuzz/corpus/safetensors holds files that fit them).
 * Every allocation is bounded by the input size. */
#include "message_check.h"
#include "loader_internal.h"
#include "config_internal.h"

#include <stdlib.h>

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

static void load(const fgi_reader *r, const fgi_hf_config *config)
{
    fg_model *model = NULL;
    if (fgi_hf_load(&model, "fuzz", config, r) == FG_OK) {
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
    if (fgi_safetensors_open(&h, &r) == FG_OK) {
        read_every_tensor(&r, &h);
        fgi_safetensors_free(&h);
    }
    fuzz_check_message();
    /* 1 layer, C 4, 2 heads, vocab 3, context 2 (GPT-2: tied, with wpe;
     * Llama: 1 KV head, MLP 6, untied) */
    fgi_hf_config gpt2 = {.cfg = fg_config_gpt2(1, 4, 2, 3, 2), .tied = 1};
    fgi_hf_config llama = {.cfg = fg_config_llama(1, 4, 2, 1, 6, 3, 2), .tied = 0};
    load(&r, &gpt2);
    load(&r, &llama);
    fuzz_check_message();
    return 0;
}
