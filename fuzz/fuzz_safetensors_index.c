/* libFuzzer target: model.safetensors.index.json text. The parser must
 * accept an index only with a non-empty weight_map whose every entry is a
 * plain file name (never a path out of the folder), at least one shard and
 * no more shards than tensors; reject everything else with FG_ERR_FORMAT
 * (or FG_ERR_OOM), with a one-line printable message, and never crash or
 * leak. */
#include "message_check.h"
#include "loader_internal.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t shards = 0, tensors = 0;
    const fg_status st = fgi_hf_index_parse("fuzz", "<input>", (const char *)data, size,
                                            &shards, &tensors);
    if (st == FG_OK) {
        if (shards < 1 || shards > tensors) abort();
        return 0;
    }
    if (st != FG_ERR_FORMAT && st != FG_ERR_OOM) abort();
    fuzz_check_message();
    return 0;
}
