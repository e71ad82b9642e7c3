/* End to end on a real checkpoint: stories260K (llama2.c format) greedy from
 * BOS must begin with the sentence its training data made it learn, on the
 * CPU reference and, where a GPU is present, on the CUDA path. */
#include "gpu_support.h"

#include <stdio.h>
#include <string.h>

static const char expected[] = "Once upon a time, there was a little girl named Lily.";

static void greedy_story(fg_device device)
{
    char model_file[4096];
    const char *model_path = fgi_model_path("stories260K/stories260K.bin");
    if (model_path) snprintf(model_file, sizeof model_file, "%s", model_path);
    const char *tok_path = fgi_model_path("stories260K/tok512.bin"); /* static buffer */
    if (model_path == NULL || tok_path == NULL)
        cr_skip_test("stories260K not found under FG_MODELS_DIR");
    fg_model *m = NULL;
    fg_tokenizer *tok = NULL;
    fg_session *s = NULL;
    fg_sampler *greedy = NULL;
    cr_assert_eq(fg_model_load(&m, model_file), FG_OK, "%s", fg_last_error());
    const fg_config *cfg = fg_model_config(m);
    cr_assert_eq(fg_tokenizer_load_llama2c(&tok, tok_path, cfg->vocab_size), FG_OK, "%s",
                 fg_last_error());
    fg_sampler_config sc = fg_sampler_defaults();
    sc.temperature = 0.0f;
    cr_assert_eq(fg_sampler_create(&greedy, cfg->vocab_size, &sc), FG_OK);
    cr_assert_eq(fg_session_create(&s, cfg, fg_model_weights(m), device, 64), FG_OK, "%s",
                 fg_last_error());

    int ids[40] = {fg_tokenizer_bos(tok)}, n = 1;
    cr_assert_eq(fg_session_forward(s, ids, 1, NULL), FG_OK, "%s", fg_last_error());
    char text[512];
    size_t len = 0;
    while (n < 40) {
        cr_assert_eq(fg_sampler_sample(greedy, fg_session_logits(s), &ids[n]), FG_OK);
        cr_assert_eq(fg_session_forward(s, &ids[n++], 1, NULL), FG_OK, "%s", fg_last_error());
        cr_assert_eq(fg_tokenizer_decode(tok, ids, n, text, sizeof text - 1, &len), FG_OK);
        if (len >= sizeof expected - 1) break;
    }
    text[len] = '\0';
    cr_assert(strncmp(text, expected, sizeof expected - 1) == 0, "%s greedy story: \"%s\"",
              fg_device_name(device), text);
    fg_session_destroy(s);
    fg_sampler_destroy(greedy);
    fg_tokenizer_destroy(tok);
    fg_model_destroy(m);
}

Test(stories260k, greedy_from_bos_on_ref) { greedy_story(FG_DEVICE_REF); }
Test(stories260k, greedy_from_bos_on_cpu) { greedy_story(FG_DEVICE_CPU); }

Test(stories260k, greedy_from_bos_on_gpu)
{
    fgi_require_gpu();
    greedy_story(FG_DEVICE_CUDA);
}
