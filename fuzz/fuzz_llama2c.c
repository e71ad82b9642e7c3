/* libFuzzer target: llama2.c legacy checkpoints. The input is one whole
 * file (in memory); the header parser and then the full loader run over it.
 * A file is accepted only when its size is exactly what its header implies,
 * so the model allocated is never larger than the input. */
#include "message_check.h"
#include "loader_internal.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fgi_llama2c_header header;
    const fg_status parsed =
        fgi_llama2c_parse_header(&header, "fuzz", "<input>", data, size, size);
    fgi_reader r;
    fg_model *model = NULL;
    fgi_reader_memory(&r, "fuzz", "<input>", data, size);
    const fg_status loaded = fgi_llama2c_load(&model, &r);
    if ((parsed == FG_OK) != (loaded == FG_OK)) abort();
    if (loaded == FG_OK) {
        if (fg_weights_validate(fg_model_config(model), fg_model_weights(model)) != FG_OK)
            abort();
        fg_model_destroy(model);
    } else if (model != NULL) {
        abort();
    }
    fuzz_check_message();
    return 0;
}
