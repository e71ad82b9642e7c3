/* Checkpoints made by transformers itself (tests/model/transformers/gen.py:
 * AutoModelForCausalLM.from_config, save_pretrained in F32 / BF16 / F16,
 * sharded where the folder says so) against the logits transformers
 * computes for them in float64: every device flashgpt has — the exact
 * reference, the fast CPU path and, where a GPU (or the emulator) is
 * present, the CUDA path — at the fp32 rule of docs/contract.md §32. The
 * files are read exactly as a user's download would be: config.json as
 * transformers 5 writes it (rope_parameters, dtype, layer_types), the
 * safetensors index, generation_config.json beside it. */
#include "gpu_support.h"
#include "support.h"
#include "transformers/golden.h"

#include <stdio.h>

static void check_device(const char *folder, const float *want, fg_device device)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/model/transformers/%s", FG_SOURCE_DIR, folder);
    fg_model *m = NULL;
    cr_assert_eq(fg_model_load(&m, dir), FG_OK, "%s: %s", folder, fg_last_error());
    fg_session *s = NULL;
    cr_assert_eq(fg_session_create(&s, fg_model_config(m), fg_model_weights(m), device,
                                   TF_GOLDEN_T),
                 FG_OK, "%s on %s: %s", folder, fg_device_name(device), fg_last_error());
    float *logits = fgi_buf_nan((size_t)TF_GOLDEN_T * TF_GOLDEN_VOCAB);
    cr_assert_eq(fg_session_forward(s, tf_golden_ids, TF_GOLDEN_T, logits), FG_OK, "%s: %s",
                 folder, fg_last_error());
    char what[256];
    snprintf(what, sizeof what, "%s on %s", folder, fg_device_name(device));
    fgi_assert_close(logits, want, (size_t)TF_GOLDEN_T * TF_GOLDEN_VOCAB, 1e-4, 1e-4, 1e-5, what);
    fgi_assert_guard(logits, (size_t)TF_GOLDEN_T * TF_GOLDEN_VOCAB, what);
    fgi_buf_free(logits);
    fg_session_destroy(s);
    fg_model_destroy(m);
}

static void check_folder(const char *folder, const float *want)
{
    check_device(folder, want, FG_DEVICE_REF);
    check_device(folder, want, FG_DEVICE_CPU);
}

static void check_folder_gpu(const char *folder, const float *want)
{
    fgi_require_gpu();
    check_device(folder, want, FG_DEVICE_CUDA);
}

#define FOLDER_TESTS(name)                                                       \
    Test(transformers, name) { check_folder(#name, tf_golden_##name); }          \
    Test(transformers_gpu, name) { check_folder_gpu(#name, tf_golden_##name); }

/* Llama, default RoPE, GQA 4/2, untied head, F32. */
FOLDER_TESTS(llama_f32)
/* Llama 3.x rope_parameters (theta 500000, llama3 scaling), BF16, 4 shards. */
FOLDER_TESTS(llama3_bf16_sharded)
/* Linear rope scaling, tied head, F16. */
FOLDER_TESTS(llama_linear_f16_tied)
/* Qwen2: q/k/v biases, tied head, theta 1e6, MQA. */
FOLDER_TESTS(qwen2_f32)
/* Mistral without a window, BF16, 3 shards. */
FOLDER_TESTS(mistral_bf16_sharded)
/* GPT-2 with transformers' own names (transformer.h.N.attn.c_attn ...). */
FOLDER_TESTS(gpt2_f32)
FOLDER_TESTS(gpt2_f16)
/* Mistral with a 4-key sliding window over the 12-token prompt. */
FOLDER_TESTS(mistral_window4)
/* Qwen2 with use_sliding_window: layer 0 full, layer 1 a 3-key window
 * (max_window_layers 1, layer_types as transformers 5 writes them). */
FOLDER_TESTS(qwen2_window3)
/* head_dim 12 given explicitly (hidden 32 / 4 heads would be 8). */
FOLDER_TESTS(llama_head_dim12)
