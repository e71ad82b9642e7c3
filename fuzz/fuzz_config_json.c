/* libFuzzer target: Hugging Face config.json text. The parser must accept
 * only configurations that pass fg_config_validate, reject everything else
 * with FG_ERR_FORMAT / FG_ERR_UNSUPPORTED, and never crash or leak. An
 * accepted configuration is then run against a safetensors file with no
 * tensors, which must fail cleanly (missing tensor) without allocating the
 * model the configuration describes. */
#include "message_check.h"
#include "loader_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* length 8, then the header "{}      " */
    static const unsigned char no_tensors[16] = {8, 0, 0, 0, 0, 0, 0, 0,
                                                 '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    fgi_hf_config config;
    const fg_status st = fgi_hf_config_parse(&config, "fuzz", "<input>",
                                             (const char *)data, size);
    if (st != FG_OK) {
        if (st != FG_ERR_FORMAT && st != FG_ERR_UNSUPPORTED && st != FG_ERR_OOM) abort();
        fuzz_check_message();
        return 0;
    }
    if (fg_config_validate(&config.cfg) != FG_OK) abort();
    fgi_reader r;
    fg_model *model = NULL;
    fgi_reader_memory(&r, "fuzz", "<no tensors>", no_tensors, sizeof no_tensors);
    if (fgi_hf_load(&model, "fuzz", &config, &r) != FG_ERR_FORMAT || model != NULL) abort();
    fuzz_check_message();
    return 0;
}
