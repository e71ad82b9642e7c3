/* Generation policy (flashgpt/generate.h): finding a model's tokenizer, the
 * BOS rule, the stop conditions and the loop itself, against hand-run
 * sessions and samplers. Tokenizers are written by the test (a minimal
 * llama2.c tokenizer.bin and GPT-2 vocab.json + merges.txt) so that only
 * the stories260K cases need ../shared/models. Public headers only. */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "gpu_support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- temporary folders and test-written tokenizers -------------------------------- */

typedef struct {
    char path[64];
} tmp_folder;

static void tmp_make(tmp_folder *t)
{
    snprintf(t->path, sizeof t->path, "/tmp/fg_gen_XXXXXX");
    cr_assert_not_null(mkdtemp(t->path));
}

/* Removes the folder and the plain files in it (the tests make no deeper
 * trees). */
static void tmp_remove(tmp_folder *t)
{
    DIR *d = opendir(t->path);
    if (d == NULL) return;
    char file[512];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(file, sizeof file, "%s/%s", t->path, e->d_name);
        unlink(file);
    }
    closedir(d);
    rmdir(t->path);
}

/* Path of name inside t (a ring of static buffers, so a few can be live). */
static const char *in(const tmp_folder *t, const char *name)
{
    static char ring[8][512];
    static int next;
    char *p = ring[next++ % 8];
    snprintf(p, sizeof ring[0], "%s/%s", t->path, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

/* Extra llama2.c pieces after <unk>, BOS, EOS and the 256 byte tokens. */
static const char *const LLAMA_PIECES[] = {" ", "a", "b", " a", "ab"};
enum { LLAMA_VOCAB = 259 + (int)(sizeof LLAMA_PIECES / sizeof LLAMA_PIECES[0]) };

static void put_i32(unsigned char **p, int32_t v)
{
    const uint32_t u = (uint32_t)v;
    for (int i = 0; i < 4; i++) *(*p)++ = (unsigned char)(u >> (8 * i));
}

static void put_record(unsigned char **p, float score, const char *piece)
{
    uint32_t bits;
    memcpy(&bits, &score, 4);
    put_i32(p, (int32_t)bits);
    put_i32(p, (int32_t)strlen(piece));
    memcpy(*p, piece, strlen(piece));
    *p += strlen(piece);
}

/* A valid llama2.c tokenizer.bin of LLAMA_VOCAB tokens at path. */
static void write_llama_tokenizer(const char *path)
{
    static unsigned char file[8192];
    unsigned char *p = file;
    put_i32(&p, 8);
    put_record(&p, 0.0f, "<unk>");
    put_record(&p, 0.0f, "\n<s>\n");
    put_record(&p, 0.0f, "\n</s>\n");
    for (int b = 0; b < 256; b++) {
        char spelled[8];
        snprintf(spelled, sizeof spelled, "<0x%02X>", b);
        put_record(&p, 0.0f, spelled);
    }
    for (int i = 0; i < LLAMA_VOCAB - 259; i++) put_record(&p, (float)i, LLAMA_PIECES[i]);
    write_bytes(path, file, (size_t)(p - file));
}

/* GPT-2's byte alphabet: printable Latin-1 bytes spell themselves, the
 * others take code points 256, 257, ... in byte order. */
static unsigned gpt2_char(int b)
{
    const int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    if (printable) return (unsigned)b;
    unsigned rank = 0;
    for (int x = 0; x < b; x++)
        rank += !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
    return 256 + rank;
}

/* vocab.json with the 256 byte tokens (byte b has id b) and, when with_eot,
 * <|endoftext|> as id 256; merges.txt with no merges. Under OpenAI's names
 * (encoder.json, vocab.bpe) when openai_names. */
static void write_gpt2_files(const tmp_folder *t, int with_eot, int openai_names)
{
    static char json[8192];
    size_t n = (size_t)snprintf(json, sizeof json, "{");
    for (int b = 0; b < 256; b++)
        n += (size_t)snprintf(json + n, sizeof json - n, "%s\"\\u%04X\": %d", b ? ", " : "",
                              gpt2_char(b), b);
    if (with_eot) n += (size_t)snprintf(json + n, sizeof json - n, ", \"<|endoftext|>\": 256");
    n += (size_t)snprintf(json + n, sizeof json - n, "}\n");
    cr_assert_lt(n, sizeof json);
    write_bytes(in(t, openai_names ? "encoder.json" : "vocab.json"), json, n);
    write_bytes(in(t, openai_names ? "vocab.bpe" : "merges.txt"), "#version: 0.2\n", 14);
}

static void write_gpt2_tokenizer(const tmp_folder *t, int with_eot)
{
    write_gpt2_files(t, with_eot, 0);
}

/* --- tokenizer discovery ---------------------------------------------------------- */

/* Loads through discovery and reports the kind found: 'L' llama2.c (BOS 1),
 * 'G' the test's GPT-2 vocabulary (BOS 256). */
static char found_kind(const char *model_path, const char *tok_path, int vocab)
{
    fg_tokenizer *tok = NULL;
    cr_assert_eq(fg_tokenizer_load_for_model(&tok, model_path, tok_path, vocab), FG_OK,
                 "model %s, tok %s: %s", model_path ? model_path : "NULL",
                 tok_path ? tok_path : "NULL", fg_last_error());
    const int bos = fg_tokenizer_bos(tok);
    const int size = fg_tokenizer_vocab_size(tok);
    fg_tokenizer_destroy(tok);
    if (bos == 1 && size == LLAMA_VOCAB) return 'L';
    if (bos == 256 && size == 257) return 'G';
    cr_assert_fail("unexpected tokenizer: BOS %d, vocab %d", bos, size);
    return '?';
}

Test(discovery, llama2c_file_beside_the_model)
{
    tmp_folder t;
    tmp_make(&t);
    char numbered[32];
    snprintf(numbered, sizeof numbered, "tok%d.bin", LLAMA_VOCAB);
    write_bytes(in(&t, "model.bin"), "not read", 8); /* discovery never opens the model */
    write_llama_tokenizer(in(&t, numbered));
    cr_assert_eq(found_kind(in(&t, "model.bin"), NULL, LLAMA_VOCAB), 'L', "tok<vocab>.bin");

    /* tokenizer.bin comes first: a broken one is found, and refused */
    write_bytes(in(&t, "tokenizer.bin"), "garbage", 7);
    fg_tokenizer *tok = (fg_tokenizer *)&t; /* any non-NULL: must come back NULL */
    fgi_assert_status(fg_tokenizer_load_for_model(&tok, in(&t, "model.bin"), NULL, LLAMA_VOCAB),
                      FG_ERR_FORMAT, "tokenizer.bin");
    cr_assert_null(tok);
    write_llama_tokenizer(in(&t, "tokenizer.bin"));
    unlink(in(&t, numbered));
    cr_assert_eq(found_kind(in(&t, "model.bin"), NULL, LLAMA_VOCAB), 'L', "tokenizer.bin");

    /* a bare file name looks in the current folder */
    char cwd[512];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(t.path), 0);
    cr_assert_eq(found_kind("model.bin", NULL, LLAMA_VOCAB), 'L', "bare file name");
    cr_assert_eq(chdir(cwd), 0);
    tmp_remove(&t);
}

Test(discovery, gpt2_folder_and_its_precedence)
{
    tmp_folder t;
    tmp_make(&t);
    write_gpt2_tokenizer(&t, 1);
    write_llama_tokenizer(in(&t, "tokenizer.bin")); /* present, but vocab.json wins */
    cr_assert_eq(found_kind(t.path, NULL, 257), 'G', "a Hugging Face folder as the model");
    cr_assert_eq(found_kind(in(&t, "model.safetensors"), NULL, 257), 'G', "a file in the folder");

    /* vocab.json without merges.txt: GPT-2 was meant, its loader says why */
    unlink(in(&t, "merges.txt"));
    fg_tokenizer *tok = NULL;
    fgi_assert_status(fg_tokenizer_load_for_model(&tok, t.path, NULL, 257), FG_ERR_IO,
                      "merges.txt");
    cr_assert_null(tok);
    tmp_remove(&t);
}

/* models/gpt2-tokenizer keeps OpenAI's names for the same two files */
Test(discovery, gpt2_files_under_openai_names)
{
    tmp_folder t;
    tmp_make(&t);
    write_gpt2_files(&t, 1, 1);
    cr_assert_eq(found_kind(in(&t, "model.safetensors"), NULL, 257), 'G', "beside the model");
    cr_assert_eq(found_kind(NULL, t.path, 257), 'G', "-t FOLDER");
    cr_assert_eq(found_kind(NULL, in(&t, "encoder.json"), 257), 'G', "-t encoder.json");

    /* Hugging Face's names win where a vocab.json is present (no mixing) */
    write_bytes(in(&t, "vocab.json"), "not json", 8);
    fg_tokenizer *tok = NULL;
    fgi_assert_status(fg_tokenizer_load_for_model(&tok, NULL, t.path, 257), FG_ERR_IO,
                      "merges.txt");
    cr_assert_null(tok);
    unlink(in(&t, "vocab.json"));

    /* encoder.json without vocab.bpe: its loader says which file is missing */
    unlink(in(&t, "vocab.bpe"));
    fgi_assert_status(fg_tokenizer_load_for_model(&tok, NULL, t.path, 257), FG_ERR_IO, "vocab.bpe");
    cr_assert_null(tok);
    tmp_remove(&t);
}

Test(discovery, explicit_path_overrides)
{
    tmp_folder t, other;
    tmp_make(&t);
    tmp_make(&other);
    write_gpt2_tokenizer(&t, 1);
    write_llama_tokenizer(in(&other, "my.tok"));
    /* beside the model lies a llama2.c tokenizer; the explicit choice wins */
    write_llama_tokenizer(in(&other, "tokenizer.bin"));
    const char *model = in(&other, "model.bin");
    cr_assert_eq(found_kind(model, t.path, 257), 'G', "-t FOLDER");
    cr_assert_eq(found_kind(model, in(&t, "vocab.json"), 257), 'G', "-t vocab.json");
    cr_assert_eq(found_kind(NULL, in(&t, "vocab.json"), 257), 'G', "no model path needed");
    cr_assert_eq(found_kind(t.path, in(&other, "my.tok"), LLAMA_VOCAB), 'L', "-t file.bin");

    /* an explicit path that is wrong is its loader's error, never a fallback */
    fg_tokenizer *tok = NULL;
    fgi_assert_status(fg_tokenizer_load_for_model(&tok, model, in(&t, "nothing.bin"), LLAMA_VOCAB),
                      FG_ERR_IO, "nothing.bin");
    cr_assert_null(tok);
    fgi_assert_status(fg_tokenizer_load_for_model(&tok, model, in(&t, "none.json"), 257),
                      FG_ERR_IO, "none.json");
    tmp_remove(&t);
    tmp_remove(&other);
}

Test(discovery, refusals)
{
    tmp_folder t;
    tmp_make(&t);
    /* nothing there: the message lists what was looked for */
    write_llama_tokenizer(in(&t, "tok300.bin")); /* another vocabulary's */
    fg_tokenizer *tok = NULL;
    char want[700];
    snprintf(want, sizeof want,
             "no tokenizer beside %s (looked for tokenizer.json, vocab.json + merges.txt, "
             "encoder.json + vocab.bpe, tokenizer.bin, tok%d.bin)",
             in(&t, "m.bin"), LLAMA_VOCAB);
    cr_assert_eq(fg_tokenizer_load_for_model(&tok, in(&t, "m.bin"), NULL, LLAMA_VOCAB), FG_ERR_IO);
    cr_assert_str_eq(fg_last_error(), want);
    cr_assert_null(tok);

    fgi_assert_status(fg_tokenizer_load_for_model(NULL, t.path, NULL, 5), FG_ERR_INVALID_ARG,
                      "'tok' is NULL");
    fgi_assert_status(fg_tokenizer_load_for_model(&tok, t.path, NULL, 0), FG_ERR_INVALID_ARG,
                      "'vocab_size' must be >= 1 (got 0)");
    fgi_assert_status(fg_tokenizer_load_for_model(&tok, NULL, NULL, 5), FG_ERR_INVALID_ARG,
                      "'model_path' and 'tok_path' are both NULL");
    /* a path longer than any the library builds: refused, not cut short */
    static char long_path[6000];
    memset(long_path, 'x', sizeof long_path - 1);
    long_path[0] = '/';
    fgi_assert_status(fg_tokenizer_load_for_model(&tok, long_path, NULL, 5), FG_ERR_INVALID_ARG,
                      "path too long");
    cr_assert_null(tok);
    tmp_remove(&t);
}

Test(discovery, stories260k_finds_tok512)
{
    const char *model = fgi_model_path("stories260K/stories260K.bin");
    if (model == NULL) cr_skip_test("stories260K not found under FG_MODELS_DIR");
    fg_tokenizer *tok = NULL;
    cr_assert_eq(fg_tokenizer_load_for_model(&tok, model, NULL, 512), FG_OK, "%s", fg_last_error());
    cr_assert_eq(fg_tokenizer_vocab_size(tok), 512);
    cr_assert_eq(fg_tokenizer_bos(tok), 1);
    fg_tokenizer_destroy(tok);
}

/* --- the BOS rule ----------------------------------------------------------------- */

static fg_tokenizer *llama_tokenizer(void)
{
    tmp_folder t;
    tmp_make(&t);
    write_llama_tokenizer(in(&t, "tokenizer.bin"));
    fg_tokenizer *tok = NULL;
    cr_assert_eq(fg_tokenizer_load_llama2c(&tok, in(&t, "tokenizer.bin"), LLAMA_VOCAB), FG_OK, "%s",
                 fg_last_error());
    tmp_remove(&t);
    return tok;
}

static fg_tokenizer *gpt2_tokenizer(int with_eot)
{
    tmp_folder t;
    tmp_make(&t);
    write_gpt2_tokenizer(&t, with_eot);
    fg_tokenizer *tok = NULL;
    cr_assert_eq(fg_tokenizer_load_gpt2(&tok, in(&t, "vocab.json"), in(&t, "merges.txt")), FG_OK,
                 "%s", fg_last_error());
    tmp_remove(&t);
    return tok;
}

/* Random bytes, any value (NUL and invalid UTF-8 included). */
static size_t random_text(fgi_rng *rng, char *out, size_t max)
{
    const size_t n = (size_t)fgi_rng_int(rng, 1, (int)max);
    for (size_t i = 0; i < n; i++) out[i] = (char)fgi_rng_int(rng, 0, 255);
    return n;
}

/* fg_prompt_encode must equal fg_tokenizer_encode with add_bos per the rule. */
static void assert_encodes_like(const fg_tokenizer *tok, const fg_config *cfg, const char *text,
                                size_t len, int add_bos)
{
    static int want[512], got[512];
    int n_want = 0, n_got = -1;
    cr_assert_eq(fg_tokenizer_encode(tok, len ? text : "", len, add_bos, want, 512, &n_want), FG_OK);
    cr_assert_eq(fg_prompt_encode(tok, cfg, text, len, got, 512, &n_got), FG_OK, "%s",
                 fg_last_error());
    cr_assert_eq(n_got, n_want, "seed %llu: %zu bytes", (unsigned long long)fgi_test_seed(), len);
    fgi_assert_same(got, want, sizeof(int) * (size_t)n_want, "prompt ids");
}

Test(prompt, bos_rule_per_family)
{
    fg_config llama = fg_config_llama(1, 8, 2, 2, 16, LLAMA_VOCAB, 16);
    fg_config gpt2 = fg_config_gpt2(1, 8, 2, 257, 16);
    cr_assert_eq(fg_prompt_wants_bos(&llama, 0), 1);
    cr_assert_eq(fg_prompt_wants_bos(&llama, 5), 1);
    cr_assert_eq(fg_prompt_wants_bos(&gpt2, 0), 1, "an empty GPT-2 prompt starts from <|endoftext|>");
    cr_assert_eq(fg_prompt_wants_bos(&gpt2, 5), 0);
    cr_assert_eq(fg_prompt_wants_bos(NULL, 0), -1);
    fg_config bad = llama;
    bad.arch = (fg_arch)7;
    cr_assert_eq(fg_prompt_wants_bos(&bad, 0), -1);

    fgi_rng rng = fgi_rng_make(301);
    fg_tokenizer *lt = llama_tokenizer(), *gt = gpt2_tokenizer(1);
    char text[200];
    for (int trial = 0; trial < 20; trial++) {
        const size_t len = random_text(&rng, text, sizeof text);
        assert_encodes_like(lt, &llama, text, len, 1);
        assert_encodes_like(gt, &gpt2, text, len, 0);
    }
    int ids[4] = {-7, -7, -7, -7}, n = 0;
    cr_assert_eq(fg_prompt_encode(lt, &llama, NULL, 0, ids, 4, &n), FG_OK, "%s", fg_last_error());
    cr_assert(n == 1 && ids[0] == 1, "empty Llama prompt: BOS alone");
    cr_assert_eq(fg_prompt_encode(gt, &gpt2, "", 0, ids, 4, &n), FG_OK, "%s", fg_last_error());
    cr_assert(n == 1 && ids[0] == 256, "empty GPT-2 prompt: <|endoftext|> alone");
    fg_tokenizer_destroy(lt);
    fg_tokenizer_destroy(gt);

    /* an empty prompt needs a BOS that this GPT-2 vocabulary lacks */
    fg_tokenizer *no_eot = gpt2_tokenizer(0);
    fgi_assert_status(fg_prompt_encode(no_eot, &gpt2, "", 0, ids, 4, &n), FG_ERR_INVALID_ARG,
                      "no BOS token");
    fg_tokenizer_destroy(no_eot);
}

Test(prompt, sizing_and_bad_arguments)
{
    fg_config llama = fg_config_llama(1, 8, 2, 2, 16, LLAMA_VOCAB, 16);
    fg_tokenizer *tok = llama_tokenizer();
    int ids[8], n = -1;
    for (int i = 0; i < 8; i++) ids[i] = -7;
    /* sizing: capacity 0 tells the count; too small leaves ids untouched */
    fgi_assert_status(fg_prompt_encode(tok, &llama, "ab ab", 5, NULL, 0, &n), FG_ERR_INVALID_ARG,
                      "capacity");
    const int needed = n;
    cr_assert_gt(needed, 1);
    fgi_assert_status(fg_prompt_encode(tok, &llama, "ab ab", 5, ids, needed - 1, &n),
                      FG_ERR_INVALID_ARG, "capacity");
    for (int i = 0; i < 8; i++) cr_assert_eq(ids[i], -7, "ids untouched on failure");
    cr_assert_eq(fg_prompt_encode(tok, &llama, "ab ab", 5, ids, needed, &n), FG_OK);
    cr_assert_eq(n, needed);
    cr_assert_eq(ids[0], 1);

    fgi_assert_status(fg_prompt_encode(NULL, &llama, "a", 1, ids, 8, &n), FG_ERR_INVALID_ARG,
                      "'tok' is NULL");
    fgi_assert_status(fg_prompt_encode(tok, NULL, "a", 1, ids, 8, &n), FG_ERR_INVALID_ARG,
                      "'cfg' is NULL");
    fgi_assert_status(fg_prompt_encode(tok, &llama, NULL, 1, ids, 8, &n), FG_ERR_INVALID_ARG,
                      "'text' is NULL");
    fgi_assert_status(fg_prompt_encode(tok, &llama, "a", 1, ids, 8, NULL), FG_ERR_INVALID_ARG,
                      "'n_ids' is NULL");
    fgi_assert_status(fg_prompt_encode(tok, &llama, "a", 1, NULL, 8, &n), FG_ERR_INVALID_ARG,
                      "'ids' is NULL");
    fgi_assert_status(fg_prompt_encode(tok, &llama, "a", 1, ids, -1, &n), FG_ERR_INVALID_ARG,
                      "'capacity' must be >= 0");
    fg_config bad = llama;
    bad.arch = (fg_arch)7;
    fgi_assert_status(fg_prompt_encode(tok, &bad, "a", 1, ids, 8, &n), FG_ERR_INVALID_ARG,
                      "unknown arch 7");
    fg_tokenizer_destroy(tok);
}

/* --- generation on random models --------------------------------------------------- */

enum { MAX_SEEN = 512 };

/* What the callback saw, and when it cancels. */
typedef struct {
    const fg_tokenizer *tok;
    int ids[MAX_SEEN], n;
    size_t piece_len[MAX_SEEN]; /* bytes each call passed */
    char text[4 * MAX_SEEN];
    size_t text_len;
    int cancel_at;       /* cancel when the n-th token arrives (1-based); 0: never */
    size_t cancel_bytes; /* cancel once the text is this long; 0: never */
} seen;

static int record(void *user, int id, const char *piece, size_t len)
{
    seen *s = user;
    cr_assert_lt(s->n, MAX_SEEN);
    cr_assert(len == 0 || piece != NULL);
    cr_assert_lt(s->text_len + len, sizeof s->text);
    memcpy(s->text + s->text_len, piece, len);
    s->text_len += len;
    s->piece_len[s->n] = len;
    s->ids[s->n++] = id;
    if (s->cancel_at > 0 && s->n == s->cancel_at) return 1;
    return s->cancel_bytes > 0 && s->text_len >= s->cancel_bytes;
}

typedef struct {
    fgi_test_model m;
    fg_tokenizer *tok;
    fg_session *session;
    fg_sampler *sampler;
} rig;

static fg_config rig_config(int n_ctx) { return fg_config_llama(2, 32, 4, 2, 48, LLAMA_VOCAB, n_ctx); }

/* A random Llama model (untied classifier) on the CPU, the test's llama2.c
 * tokenizer and a sampler (temperature 0.8, top-k 40, the given seed). */
static void rig_init(rig *r, uint64_t stream, int ctx, uint64_t sampler_seed)
{
    fgi_rng rng = fgi_rng_make(stream);
    const fg_config cfg = rig_config(64);
    fgi_test_model_init(&r->m, &cfg, &rng, 1);
    r->tok = llama_tokenizer();
    cr_assert_eq(fg_session_create(&r->session, &r->m.cfg, &r->m.w, FG_DEVICE_CPU, ctx), FG_OK, "%s",
                 fg_last_error());
    fg_sampler_config sc = {.temperature = 0.8f, .top_k = 40, .top_p = 1.0f, .seed = sampler_seed};
    cr_assert_eq(fg_sampler_create(&r->sampler, cfg.vocab_size, &sc), FG_OK);
}

/* A fresh session and sampler for the same model. */
static void rig_restart(rig *r, int ctx, uint64_t sampler_seed)
{
    fg_session_destroy(r->session);
    fg_sampler_destroy(r->sampler);
    cr_assert_eq(fg_session_create(&r->session, &r->m.cfg, &r->m.w, FG_DEVICE_CPU, ctx), FG_OK);
    fg_sampler_config sc = {.temperature = 0.8f, .top_k = 40, .top_p = 1.0f, .seed = sampler_seed};
    cr_assert_eq(fg_sampler_create(&r->sampler, r->m.cfg.vocab_size, &sc), FG_OK);
}

static void rig_free(rig *r)
{
    fg_session_destroy(r->session);
    fg_sampler_destroy(r->sampler);
    fg_tokenizer_destroy(r->tok);
    fgi_test_model_free(&r->m);
}

static fg_generate_config recording(seen *s, const fg_tokenizer *tok, int max_new)
{
    memset(s, 0, sizeof *s);
    s->tok = tok;
    fg_generate_config c = fg_generate_defaults();
    c.max_new_tokens = max_new;
    c.ignore_eos = 1; /* random models draw EOS at random; tests ask for it explicitly */
    c.on_token = record;
    c.user = s;
    return c;
}

/* The loop by hand: prefill, then draw and feed back n tokens. */
static void manual_generation(const rig *r, const int *prompt, int n_prompt, uint64_t seed,
                              int *out, int n)
{
    fg_session *s = NULL;
    fg_sampler *sampler = NULL;
    cr_assert_eq(fg_session_create(&s, &r->m.cfg, &r->m.w, FG_DEVICE_CPU, 0), FG_OK);
    fg_sampler_config sc = {.temperature = 0.8f, .top_k = 40, .top_p = 1.0f, .seed = seed};
    cr_assert_eq(fg_sampler_create(&sampler, r->m.cfg.vocab_size, &sc), FG_OK);
    cr_assert_eq(fg_session_forward(s, prompt, n_prompt, NULL), FG_OK);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(fg_sampler_sample(sampler, fg_session_logits(s), &out[i]), FG_OK);
        cr_assert_eq(fg_session_forward(s, &out[i], 1, NULL), FG_OK);
    }
    fg_session_destroy(s);
    fg_sampler_destroy(sampler);
}

static void random_prompt(fgi_rng *rng, int *ids, int n)
{
    ids[0] = 1; /* BOS, as the rule gives a Llama prompt */
    for (int i = 1; i < n; i++) ids[i] = fgi_rng_int(rng, 0, LLAMA_VOCAB - 1);
}

Test(generate, equals_the_loop_by_hand)
{
    fgi_rng rng = fgi_rng_make(310);
    const uint64_t seed = fgi_rng_next(&rng);
    rig r;
    rig_init(&r, 311, 0, seed);
    int prompt[6], want[20];
    random_prompt(&rng, prompt, 6);
    manual_generation(&r, prompt, 6, seed, want, 20);

    seen s;
    fg_generate_config c = recording(&s, r.tok, 20);
    c.echo_prompt = 1;
    fg_generate_result res;
    cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt, 6, &c, &res), FG_OK, "%s",
                 fg_last_error());
    cr_assert_eq(res.stop, FG_STOP_MAX_TOKENS);
    cr_assert_eq(res.failed, FG_GENERATE_OK);
    cr_assert(res.n_prompt == 6 && res.n_generated == 20);
    cr_assert(res.prefill_seconds >= 0 && res.decode_seconds >= 0);
    cr_assert_eq(s.n, 26, "echoed prompt + generated tokens");
    fgi_assert_same(s.ids, prompt, sizeof prompt, "echoed prompt");
    cr_assert_arr_eq(s.ids + 6, want, sizeof want, "seed %llu: generated ids differ from the loop "
                     "by hand", (unsigned long long)fgi_test_seed());
    /* the last token is not fed back: nothing needs its logits */
    cr_assert_eq(fg_session_len(r.session), 6 + 20 - 1);

    /* the pieces are the streaming decode of the whole sequence */
    char text[4 * MAX_SEEN];
    size_t len = 0;
    cr_assert_eq(fg_tokenizer_decode(r.tok, s.ids, s.n, text, sizeof text, &len), FG_OK);
    cr_assert_eq(s.text_len, len);
    cr_assert(memcmp(s.text, text, len) == 0, "streamed pieces == decode");
    rig_free(&r);
}

/* A model that always prefers EOS: the residual stream is the token
 * embedding (every output projection zero), whose first component is +3
 * for every token, and the classifier row of EOS (id 2) weighs that
 * component by 100; the final norm's gain there is 1. */
static void prefer_eos(fgi_test_model *m)
{
    const int C = m->cfg.n_embd;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        memset((float *)m->layers[l].c_proj_w, 0, sizeof(float) * (size_t)C * C);
        memset((float *)m->layers[l].mlp_proj_w, 0, sizeof(float) * (size_t)m->cfg.n_inner * C);
    }
    float *wte = (float *)m->w.wte, *head = (float *)m->w.lm_head;
    for (int v = 0; v < m->cfg.vocab_size; v++) wte[(size_t)v * C] = 3.0f;
    ((float *)m->w.ln_f_g)[0] = 1.0f;
    head[(size_t)2 * C] = 100.0f;
}

Test(generate, stops_at_eos_and_stop_ids)
{
    fgi_rng rng = fgi_rng_make(320);
    const uint64_t seed = fgi_rng_next(&rng);
    rig r;
    rig_init(&r, 321, 0, seed);
    int prompt[5], first[30];
    random_prompt(&rng, prompt, 5);
    manual_generation(&r, prompt, 5, seed, first, 30);

    /* a stop id ends it before that token, which is not passed on or fed */
    int k = fgi_rng_int(&rng, 3, 20);
    for (;;) { /* down to a first occurrence (k = 0 always is one) */
        int earlier = 0;
        for (int i = 0; i < k; i++) earlier |= first[i] == first[k];
        if (!earlier) break;
        k--;
    }
    seen s;
    fg_generate_config c = recording(&s, r.tok, 30);
    const int stops[2] = {LLAMA_VOCAB + 5, first[k]}; /* an id never drawn is harmless */
    c.stop_ids = stops;
    c.n_stop_ids = 2;
    fg_generate_result res;
    cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt, 5, &c, &res), FG_OK, "%s",
                 fg_last_error());
    cr_assert_eq(res.stop, FG_STOP_EOS, "%s", fg_stop_reason_str(res.stop));
    cr_assert_eq(res.n_generated, k);
    cr_assert_eq(s.n, k);
    fgi_assert_same(s.ids, first, sizeof(int) * (size_t)k, "tokens before the stop id");
    cr_assert_eq(fg_session_len(r.session), 5 + k, "each passed token fed; the stop id not");

    /* the tokenizer's EOS stops unless ignore_eos */
    prefer_eos(&r.m);
    rig_restart(&r, 0, seed);
    c = recording(&s, r.tok, 8);
    c.ignore_eos = 0;
    cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt, 5, &c, &res), FG_OK);
    cr_assert_eq(res.stop, FG_STOP_EOS);
    cr_assert(res.n_generated == 0 && s.n == 0, "EOS first: nothing generated");
    cr_assert_eq(fg_session_len(r.session), 5);
    rig_restart(&r, 0, seed);
    c = recording(&s, r.tok, 8); /* ignore_eos */
    cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt, 5, &c, &res), FG_OK);
    cr_assert_eq(res.stop, FG_STOP_MAX_TOKENS);
    cr_assert_eq(s.n, 8);
    for (int i = 0; i < 8; i++) cr_assert_eq(s.ids[i], 2, "EOS passed on when ignored");
    cr_assert_eq(s.text_len, 0, "EOS has no text");
    rig_free(&r);
}

Test(generate, stops_when_the_context_is_full)
{
    fgi_rng rng = fgi_rng_make(330);
    const uint64_t seed = fgi_rng_next(&rng);
    const int n_prompt = fgi_rng_int(&rng, 1, 8), room = fgi_rng_int(&rng, 0, 6);
    rig r;
    rig_init(&r, 331, n_prompt + room, seed);
    int prompt[8], want[16];
    random_prompt(&rng, prompt, n_prompt);
    manual_generation(&r, prompt, n_prompt, seed, want, room + 1);

    seen s;
    fg_generate_config c = recording(&s, r.tok, 40);
    fg_generate_result res;
    cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt, n_prompt, &c, &res), FG_OK, "%s",
                 fg_last_error());
    cr_assert_eq(res.stop, FG_STOP_CONTEXT_FULL, "%s", fg_stop_reason_str(res.stop));
    /* each free slot feeds one token; the last one's logits give one more */
    cr_assert_eq(res.n_generated, room + 1, "prompt %d, room %d", n_prompt, room);
    cr_assert_arr_eq(s.ids, want, sizeof(int) * (size_t)(room + 1), "same tokens as unbounded");
    cr_assert_eq(fg_session_len(r.session), n_prompt + room);

    /* exactly enough room for max_new_tokens: max tokens, not context full */
    rig_restart(&r, n_prompt + room, seed);
    c = recording(&s, r.tok, room + 1);
    cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt, n_prompt, &c, &res), FG_OK);
    cr_assert_eq(res.stop, FG_STOP_MAX_TOKENS);

    /* a prompt that does not fit is refused before anything happens */
    rig_restart(&r, n_prompt, seed);
    cr_assert_eq(fg_session_forward(r.session, prompt, 1, NULL), FG_OK);
    c = recording(&s, r.tok, 4);
    c.echo_prompt = 1;
    memset(&res, 0x5A, sizeof res);
    const fg_generate_result poison = res;
    fgi_assert_status(fg_generate(r.session, r.tok, r.sampler, prompt, n_prompt, &c, &res),
                      FG_ERR_INVALID_ARG, "does not fit in the session");
    cr_assert(memcmp(&res, &poison, sizeof res) == 0, "result untouched");
    cr_assert_eq(s.n, 0, "no callback");
    cr_assert_eq(fg_session_len(r.session), 1);
    rig_free(&r);
}

Test(generate, callback_cancels)
{
    fgi_rng rng = fgi_rng_make(340);
    const uint64_t seed = fgi_rng_next(&rng);
    rig r;
    rig_init(&r, 341, 0, seed);
    int prompt[4];
    random_prompt(&rng, prompt, 4);
    const int k = fgi_rng_int(&rng, 1, 10);

    seen s;
    fg_generate_config c = recording(&s, r.tok, 30);
    s.cancel_at = k;
    fg_generate_result res;
    cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt, 4, &c, &res), FG_OK);
    cr_assert_eq(res.stop, FG_STOP_CANCELLED);
    cr_assert(res.n_generated == k && s.n == k, "cancelled at token %d: %d", k, res.n_generated);
    cr_assert_eq(fg_session_len(r.session), 4 + k - 1, "the cancelling token is not fed");

    /* cancelled during the echo: no prefill at all */
    rig_restart(&r, 0, seed);
    c = recording(&s, r.tok, 30);
    c.echo_prompt = 1;
    s.cancel_at = 2;
    cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt, 4, &c, &res), FG_OK);
    cr_assert_eq(res.stop, FG_STOP_CANCELLED);
    cr_assert(res.n_generated == 0 && s.n == 2);
    cr_assert_eq(fg_session_len(r.session), 0);
    rig_free(&r);
}

Test(generate, prefill_only_and_continuation)
{
    fgi_rng rng = fgi_rng_make(350);
    const uint64_t seed = fgi_rng_next(&rng);
    rig r;
    rig_init(&r, 351, 0, seed);
    int prompt[10];
    random_prompt(&rng, prompt, 10);

    /* max_new_tokens 0 only prefills; no callback without echo */
    seen s;
    fg_generate_config c = recording(&s, r.tok, 0);
    fg_generate_result res;
    cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt, 10, &c, &res), FG_OK);
    cr_assert(res.stop == FG_STOP_MAX_TOKENS && res.n_generated == 0 && s.n == 0);
    cr_assert_eq(fg_session_len(r.session), 10);

    /* the session's tokens are context: 4 held + 6 prompted == 10 prompted */
    int want[12];
    manual_generation(&r, prompt, 10, seed, want, 12);
    rig_restart(&r, 0, seed);
    cr_assert_eq(fg_session_forward(r.session, prompt, 4, NULL), FG_OK);
    c = recording(&s, r.tok, 12);
    cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt + 4, 6, &c, &res), FG_OK, "%s",
                 fg_last_error());
    cr_assert_eq(res.n_prompt, 6);
    cr_assert_arr_eq(s.ids, want, sizeof want, "continuation of a held context");
    rig_free(&r);
}

Test(generate, failures_name_their_step)
{
    fgi_rng rng = fgi_rng_make(360);
    const uint64_t seed = fgi_rng_next(&rng);
    rig r;
    rig_init(&r, 361, 0, seed);
    int prompt[3] = {1, 7, LLAMA_VOCAB}; /* the last id is outside the model's vocabulary */
    seen s;
    fg_generate_config c = recording(&s, r.tok, 5);
    fg_generate_result res;
    fgi_assert_status(fg_generate(r.session, r.tok, r.sampler, prompt, 3, &c, &res),
                      FG_ERR_INVALID_ARG, "outside the vocabulary");
    cr_assert_eq(res.failed, FG_GENERATE_PREFILL);
    cr_assert_eq(res.stop, FG_STOP_NONE);
    cr_assert_eq(res.n_generated, 0);

    /* a NaN logit: the sampler refuses it */
    const int C = r.m.cfg.n_embd;
    float *head = (float *)r.m.w.lm_head;
    for (int j = 0; j < C; j++) head[(size_t)9 * C + j] = __builtin_nanf("");
    rig_restart(&r, 0, seed);
    prompt[2] = 5;
    c = recording(&s, r.tok, 5);
    const fg_status st = fg_generate(r.session, r.tok, r.sampler, prompt, 3, &c, &res);
    cr_assert_eq(st, FG_ERR_INVALID_ARG, "%s", fg_last_error());
    cr_assert_eq(res.failed, FG_GENERATE_SAMPLE);
    cr_assert_eq(res.stop, FG_STOP_NONE);
    cr_assert_eq(s.n, 0);
    rig_free(&r);
}

Test(generate, text_in_one_call)
{
    fgi_rng rng = fgi_rng_make(370);
    const uint64_t seed = fgi_rng_next(&rng);
    rig r;
    rig_init(&r, 371, 0, seed);
    char text[24];
    const size_t len = random_text(&rng, text, sizeof text);
    int ids[64], n = 0, want[10];
    cr_assert_eq(fg_prompt_encode(r.tok, &r.m.cfg, text, len, ids, 64, &n), FG_OK);
    manual_generation(&r, ids, n, seed, want, 10);

    seen s;
    fg_generate_config c = recording(&s, r.tok, 10);
    c.echo_prompt = 1;
    fg_generate_result res;
    cr_assert_eq(fg_generate_text(r.session, &r.m.cfg, r.tok, r.sampler, text, len, &c, &res),
                 FG_OK, "%s", fg_last_error());
    cr_assert_eq(res.n_prompt, n);
    cr_assert_arr_eq(s.ids, ids, sizeof(int) * (size_t)n, "echo of the encoded prompt");
    cr_assert_arr_eq(s.ids + n, want, sizeof want, "generated after the text");
    /* the echo with the generation decodes back to the prompt text and on */
    cr_assert(s.text_len >= len && memcmp(s.text, text, len) == 0, "echo gives the text back");

    /* an encoding failure is the ENCODE step's */
    fg_config gpt2 = fg_config_gpt2(2, 32, 4, 257, 64);
    fg_tokenizer *no_eot = gpt2_tokenizer(0);
    fgi_assert_status(fg_generate_text(r.session, &gpt2, no_eot, r.sampler, "", 0, &c, &res),
                      FG_ERR_INVALID_ARG, "no BOS token");
    cr_assert_eq(res.failed, FG_GENERATE_ENCODE);
    cr_assert_eq(res.stop, FG_STOP_NONE);
    fg_tokenizer_destroy(no_eot);
    rig_free(&r);
}

/* GPT-2 from an empty prompt: starts from <|endoftext|>, which also ends it. */
Test(generate, gpt2_random_model)
{
    fgi_rng rng = fgi_rng_make(380);
    fg_config cfg = fg_config_gpt2(2, 32, 4, 257, 48);
    fgi_test_model m;
    fgi_test_model_init(&m, &cfg, &rng, 0);
    fg_tokenizer *tok = gpt2_tokenizer(1);
    fg_session *session = NULL;
    fg_sampler *sampler = NULL;
    cr_assert_eq(fg_session_create(&session, &cfg, &m.w, FG_DEVICE_CPU, 0), FG_OK);
    for (int run = 0; run < 4; run++) {
        fg_sampler_config sc = {.temperature = 1.5f, .top_p = 1.0f, .seed = fgi_rng_next(&rng)};
        cr_assert_eq(fg_sampler_create(&sampler, cfg.vocab_size, &sc), FG_OK);
        cr_assert_eq(fg_session_reset(session), FG_OK);
        seen s;
        fg_generate_config c = recording(&s, tok, 40);
        c.ignore_eos = 0;
        c.echo_prompt = 1;
        fg_generate_result res;
        cr_assert_eq(fg_generate_text(session, &cfg, tok, sampler, NULL, 0, &c, &res), FG_OK, "%s",
                     fg_last_error());
        cr_assert(res.stop == FG_STOP_EOS || res.stop == FG_STOP_MAX_TOKENS, "%s",
                  fg_stop_reason_str(res.stop));
        cr_assert_eq(res.n_prompt, 1);
        cr_assert_eq(s.ids[0], 256, "the empty prompt is <|endoftext|>");
        for (int i = 1; i < s.n; i++) cr_assert_neq(s.ids[i], 256, "EOS is never passed on");
        cr_assert_eq(s.n, 1 + res.n_generated);
        fg_sampler_destroy(sampler);
    }
    fg_session_destroy(session);
    fg_tokenizer_destroy(tok);
    fgi_test_model_free(&m);
}

Test(generate, bad_arguments_write_nothing)
{
    rig r;
    rig_init(&r, 391, 0, 1);
    int prompt[3] = {1, 4, 5};
    seen s;
    const fg_generate_config good = recording(&s, r.tok, 5);
    fg_generate_result res;
    memset(&res, 0x5A, sizeof res);
    const fg_generate_result poison = res;
#define REFUSED(call, needle)                                                                     \
    do {                                                                                          \
        fgi_assert_status((call), FG_ERR_INVALID_ARG, (needle));                                  \
        cr_assert(memcmp(&res, &poison, sizeof res) == 0, "result untouched: %s", (needle));      \
    } while (0)
    REFUSED(fg_generate(NULL, r.tok, r.sampler, prompt, 3, &good, &res), "'session' is NULL");
    REFUSED(fg_generate(r.session, NULL, r.sampler, prompt, 3, &good, &res), "'tok' is NULL");
    REFUSED(fg_generate(r.session, r.tok, NULL, prompt, 3, &good, &res), "'sampler' is NULL");
    REFUSED(fg_generate(r.session, r.tok, r.sampler, NULL, 3, &good, &res), "'prompt' is NULL");
    REFUSED(fg_generate(r.session, r.tok, r.sampler, prompt, 0, &good, &res),
            "'n_prompt' must be >= 1 (got 0)");
    REFUSED(fg_generate(r.session, r.tok, r.sampler, prompt, 3, NULL, &res), "'cfg' is NULL");
    cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt, 3, &good, NULL),
                 FG_ERR_INVALID_ARG);
    cr_assert(strstr(fg_last_error(), "'result' is NULL") != NULL, "%s", fg_last_error());
    const int negative[2] = {1, -3};
    REFUSED(fg_generate(r.session, r.tok, r.sampler, negative, 2, &good, &res),
            "'prompt' holds -3 at index 1");
    fg_generate_config c = good;
    c.max_new_tokens = -1;
    REFUSED(fg_generate(r.session, r.tok, r.sampler, prompt, 3, &c, &res),
            "'cfg->max_new_tokens' must be >= 0 (got -1)");
    c = good;
    c.n_stop_ids = -2;
    REFUSED(fg_generate(r.session, r.tok, r.sampler, prompt, 3, &c, &res), "'cfg->n_stop_ids'");
    c = good;
    c.n_stop_ids = 1;
    REFUSED(fg_generate(r.session, r.tok, r.sampler, prompt, 3, &c, &res), "'cfg->stop_ids' is NULL");
    const int bad_stop = -1;
    c.stop_ids = &bad_stop;
    REFUSED(fg_generate(r.session, r.tok, r.sampler, prompt, 3, &c, &res),
            "'cfg->stop_ids' holds -1 at index 0");

    REFUSED(fg_generate_text(NULL, &r.m.cfg, r.tok, r.sampler, "a", 1, &good, &res),
            "'session' is NULL");
    REFUSED(fg_generate_text(r.session, NULL, r.tok, r.sampler, "a", 1, &good, &res),
            "'model_cfg' is NULL");
    REFUSED(fg_generate_text(r.session, &r.m.cfg, NULL, r.sampler, "a", 1, &good, &res),
            "'tok' is NULL");
    REFUSED(fg_generate_text(r.session, &r.m.cfg, r.tok, NULL, "a", 1, &good, &res),
            "'sampler' is NULL");
    REFUSED(fg_generate_text(r.session, &r.m.cfg, r.tok, r.sampler, NULL, 1, &good, &res),
            "'text' is NULL");
    REFUSED(fg_generate_text(r.session, &r.m.cfg, r.tok, r.sampler, "a", 1, NULL, &res),
            "'cfg' is NULL");
    fg_config bad = r.m.cfg;
    bad.n_head = 0;
    REFUSED(fg_generate_text(r.session, &bad, r.tok, r.sampler, "a", 1, &good, &res), "n_head");
#undef REFUSED
    cr_assert_eq(s.n, 0, "no callback on refused calls");
    cr_assert_eq(fg_session_len(r.session), 0, "the session untouched");

    cr_assert_str_eq(fg_stop_reason_str(FG_STOP_EOS), "eos");
    cr_assert_str_eq(fg_stop_reason_str(FG_STOP_CONTEXT_FULL), "context full");
    cr_assert_str_eq(fg_stop_reason_str((fg_stop_reason)99), "unknown stop reason");
    const fg_generate_config d = fg_generate_defaults();
    cr_assert(d.max_new_tokens == 64 && !d.echo_prompt && !d.ignore_eos && d.n_stop_ids == 0 &&
              d.on_token == NULL);
    rig_free(&r);
}

/* --- stop strings and the model's eos ids --------------------------------------- */

/* The text a plain run generates (ignore_eos, no stops), then runs with a
 * stop string cut from it: the text up to its first occurrence comes out,
 * nothing of the match, and a stop string that is only begun is held back
 * and released at the end. */
Test(generate, stop_strings_cut_the_text_at_the_first_match)
{
    fgi_rng rng = fgi_rng_make(340);
    const uint64_t seed = fgi_rng_next(&rng);
    rig r;
    rig_init(&r, 341, 0, seed);
    int prompt[4];
    random_prompt(&rng, prompt, 4);
    seen plain;
    fg_generate_config c = recording(&plain, r.tok, 60);
    fg_generate_result res;
    cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt, 4, &c, &res), FG_OK, "%s",
                 fg_last_error());
    cr_assert_gt(plain.text_len, 8, "seed %llu: too little text", (unsigned long long)seed);

    for (int trial = 0; trial < 40; trial++) {
        /* a stop string from the text (no NUL), or one that never completes:
         * the text's tail plus a byte that is not in the text after it */
        char stop[8];
        const int never = trial % 4 == 3;
        size_t at, sl;
        do {
            sl = (size_t)fgi_rng_int(&rng, 1, 4);
            at = (size_t)fgi_rng_int(&rng, 0, (int)(plain.text_len - sl));
            if (never) at = plain.text_len - sl;
        } while (memchr(plain.text + at, '\0', sl) != NULL);
        memcpy(stop, plain.text + at, sl);
        stop[sl] = '\0';
        if (never) strcat(stop, "\x01\x01\x01");
        size_t want = plain.text_len;
        for (size_t i = 0; i + strlen(stop) <= plain.text_len; i++)
            if (memcmp(plain.text + i, stop, strlen(stop)) == 0) {
                want = i;
                break;
            }

        rig_restart(&r, 0, seed);
        seen s;
        c = recording(&s, r.tok, 60);
        const char *stops[2] = {"\x02\x03never", stop};
        c.stop_strings = stops;
        c.n_stop_strings = 2;
        cr_assert_eq(fg_generate(r.session, r.tok, r.sampler, prompt, 4, &c, &res), FG_OK, "%s",
                     fg_last_error());
        cr_assert_eq(s.text_len, want, "seed %llu, trial %d: %zu bytes out, want %zu",
                     (unsigned long long)fgi_test_seed(), trial, s.text_len, want);
        cr_assert(memcmp(s.text, plain.text, want) == 0, "the text before the match");
        if (want < plain.text_len) {
            cr_assert_eq(res.stop, FG_STOP_STRING, "%s", fg_stop_reason_str(res.stop));
            cr_assert_neq(s.ids[s.n - 1], -1, "no release call after a match");
            /* the token that completed the match was passed on, not fed */
            cr_assert_eq(fg_session_len(r.session), 4 + res.n_generated - 1);
        } else {
            cr_assert_eq(res.stop, FG_STOP_MAX_TOKENS);
            cr_assert_eq(res.n_generated, 60);
        }
        /* each generated token got its call, in order */
        for (int i = 0; i < res.n_generated; i++)
            cr_assert_eq(s.ids[i], plain.ids[i], "token %d", i);
        if (s.n > res.n_generated) {
            cr_assert_eq(s.n, res.n_generated + 1);
            cr_assert_eq(s.ids[s.n - 1], -1, "the release at the end has id -1");
        }
        /* a text ending in the start of a stop string held that start back
         * until the end (and never before: it was not yet known) */
        if (never && want == plain.text_len) {
            cr_assert_eq(s.n, res.n_generated + 1, "trial %d: the tail was held back", trial);
            cr_assert_geq(s.piece_len[s.n - 1], sl, "trial %d: at least the begun stop string", trial);
        }
    }
    cr_assert_str_eq(fg_stop_reason_str(FG_STOP_STRING), "stop string");

    /* bad stop strings are refused before anything runs */
    rig_restart(&r, 0, seed);
    seen s;
    c = recording(&s, r.tok, 5);
    const char *bad[2] = {"ok", ""};
    c.stop_strings = bad;
    c.n_stop_strings = 2;
    fgi_assert_status(fg_generate(r.session, r.tok, r.sampler, prompt, 4, &c, &res),
                      FG_ERR_INVALID_ARG, "stop_strings");
    c.stop_strings = NULL;
    fgi_assert_status(fg_generate(r.session, r.tok, r.sampler, prompt, 4, &c, &res),
                      FG_ERR_INVALID_ARG, "stop_strings");
    c.n_stop_strings = -1;
    fgi_assert_status(fg_generate(r.session, r.tok, r.sampler, prompt, 4, &c, &res),
                      FG_ERR_INVALID_ARG, "n_stop_strings");
    cr_assert(s.n == 0 && fg_session_len(r.session) == 0);
    rig_free(&r);
}

static void eos_ids_are(const char *folder, const int *want, int n_want)
{
    int ids[8] = {-7, -7, -7, -7, -7, -7, -7, -7}, n = -1;
    cr_assert_eq(fg_eos_ids_for_model(folder, ids, 8, &n), FG_OK, "%s", fg_last_error());
    cr_assert_eq(n, n_want);
    for (int i = 0; i < n_want; i++) cr_assert_eq(ids[i], want[i], "id %d", i);
    cr_assert_eq(ids[n_want], -7, "nothing written past the ids");
}

Test(eos_ids, config_and_generation_config)
{
    tmp_folder t;
    tmp_make(&t);
    eos_ids_are(t.path, NULL, 0); /* neither file: none */
    write_bytes(in(&t, "config.json"), "{\"eos_token_id\": 2}", 19);
    eos_ids_are(t.path, (const int[]){2}, 1);
    eos_ids_are(in(&t, "model.safetensors"), (const int[]){2}, 1); /* a file: its folder */
    /* Llama 3 instruct: a list in both; generation_config.json first, no repeats */
    static const char gen[] = "{\"bos_token_id\": 1, \"eos_token_id\": [128001, 128008, 128009]}";
    write_bytes(in(&t, "generation_config.json"), gen, sizeof gen - 1);
    static const char cfg[] = "{\"eos_token_id\": [128009, 2], \"vocab_size\": 5}";
    write_bytes(in(&t, "config.json"), cfg, sizeof cfg - 1);
    eos_ids_are(t.path, (const int[]){128001, 128008, 128009, 2}, 4);

    /* sizing: the count with capacity 0; a small capacity writes nothing */
    int ids[2] = {-7, -7}, n = -1;
    fgi_assert_status(fg_eos_ids_for_model(t.path, NULL, 0, &n), FG_ERR_INVALID_ARG, "capacity");
    cr_assert_eq(n, 4);
    fgi_assert_status(fg_eos_ids_for_model(t.path, ids, 2, &n), FG_ERR_INVALID_ARG, "capacity");
    cr_assert(n == 4 && ids[0] == -7 && ids[1] == -7);
    fgi_assert_status(fg_eos_ids_for_model(NULL, ids, 2, &n), FG_ERR_INVALID_ARG, "model_path");
    fgi_assert_status(fg_eos_ids_for_model(t.path, ids, 2, NULL), FG_ERR_INVALID_ARG, "n_ids");
    fgi_assert_status(fg_eos_ids_for_model(t.path, NULL, 2, &n), FG_ERR_INVALID_ARG, "ids");

    /* null means none; anything else that is not ids is refused */
    write_bytes(in(&t, "generation_config.json"), "{\"eos_token_id\": null}", 22);
    eos_ids_are(t.path, (const int[]){128009, 2}, 2);
    static const char *const bad[] = {"{\"eos_token_id\": \"2\"}", "{\"eos_token_id\": 2.5}",
                                      "{\"eos_token_id\": [1, -1]}", "{\"eos_token_id\": [[1]]}",
                                      "{\"eos_token_id\": 1e12}", "{\"eos_token_id\": 2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_bytes(in(&t, "generation_config.json"), bad[i], strlen(bad[i]));
        fgi_assert_status(fg_eos_ids_for_model(t.path, ids, 2, &n), FG_ERR_FORMAT,
                          "generation_config.json");
    }
    tmp_remove(&t);
}

/* --- stories260K: the text the flashgpt command prints ---------------------------- */

static const char expected[] = "Once upon a time, there was a little girl named Lily.";

/* Greedy from BOS as `flashgpt generate -m stories260K.bin --temperature 0
 * -n 30` runs it: tokenizer found beside the model, prompt echoed. */
static void stories_greedy(fg_device device, int cancel_early)
{
    char model_path[4096];
    const char *found = fgi_model_path("stories260K/stories260K.bin");
    if (found == NULL) cr_skip_test("stories260K not found under FG_MODELS_DIR");
    snprintf(model_path, sizeof model_path, "%s", found);
    fg_model *model = NULL;
    fg_tokenizer *tok = NULL;
    fg_session *session = NULL;
    fg_sampler *sampler = NULL;
    cr_assert_eq(fg_model_load(&model, model_path), FG_OK, "%s", fg_last_error());
    const fg_config *cfg = fg_model_config(model);
    cr_assert_eq(fg_tokenizer_load_for_model(&tok, model_path, NULL, cfg->vocab_size), FG_OK, "%s",
                 fg_last_error());
    fg_sampler_config sc = fg_sampler_defaults();
    sc.temperature = 0.0f;
    cr_assert_eq(fg_sampler_create(&sampler, cfg->vocab_size, &sc), FG_OK);
    cr_assert_eq(fg_session_create(&session, cfg, fg_model_weights(model), device, 0), FG_OK, "%s",
                 fg_last_error());
    seen s;
    fg_generate_config c = recording(&s, tok, 30);
    c.ignore_eos = 0;
    c.echo_prompt = 1;
    if (cancel_early) s.cancel_bytes = sizeof expected - 1; /* enough to check: stop there */
    fg_generate_result res;
    cr_assert_eq(fg_generate_text(session, cfg, tok, sampler, "", 0, &c, &res), FG_OK, "%s",
                 fg_last_error());
    cr_assert_eq(res.n_prompt, 1);
    cr_assert_eq(s.ids[0], 1, "from BOS");
    cr_assert_eq(res.stop, cancel_early ? FG_STOP_CANCELLED : FG_STOP_MAX_TOKENS, "%s",
                 fg_stop_reason_str(res.stop));
    if (!cancel_early) cr_assert_eq(res.n_generated, 30);
    s.text[s.text_len] = '\0';
    cr_assert(strncmp(s.text, expected, sizeof expected - 1) == 0, "%s greedy story: \"%s\"",
              fg_device_name(device), s.text);
    fg_session_destroy(session);
    fg_sampler_destroy(sampler);
    fg_tokenizer_destroy(tok);
    fg_model_destroy(model);
}

Test(stories260k, generate_greedy_on_cpu) { stories_greedy(FG_DEVICE_CPU, 0); }

/* A stop string in the greedy story: the text before it and nothing more. */
Test(stories260k, stop_string_ends_the_story)
{
    const char *found = fgi_model_path("stories260K/stories260K.bin");
    if (found == NULL) cr_skip_test("stories260K not found under FG_MODELS_DIR");
    char model_path[4096];
    snprintf(model_path, sizeof model_path, "%s", found);
    fg_model *model = NULL;
    fg_tokenizer *tok = NULL;
    fg_session *session = NULL;
    fg_sampler *sampler = NULL;
    cr_assert_eq(fg_model_load(&model, model_path), FG_OK, "%s", fg_last_error());
    const fg_config *cfg = fg_model_config(model);
    cr_assert_eq(fg_tokenizer_load_for_model(&tok, model_path, NULL, cfg->vocab_size), FG_OK);
    fg_sampler_config sc = fg_sampler_defaults();
    sc.temperature = 0.0f;
    cr_assert_eq(fg_sampler_create(&sampler, cfg->vocab_size, &sc), FG_OK);
    cr_assert_eq(fg_session_create(&session, cfg, fg_model_weights(model), FG_DEVICE_CPU, 0), FG_OK);
    int n_eos = -1, eos[4];
    cr_assert_eq(fg_eos_ids_for_model(model_path, eos, 4, &n_eos), FG_OK, "%s", fg_last_error());
    cr_assert_eq(n_eos, 0, "a llama2.c checkpoint names no eos ids");
    seen s;
    fg_generate_config c = recording(&s, tok, 30);
    const char *stops[] = {"girl named", "little g"};
    c.stop_strings = stops;
    c.n_stop_strings = 2;
    fg_generate_result res;
    cr_assert_eq(fg_generate_text(session, cfg, tok, sampler, "", 0, &c, &res), FG_OK, "%s",
                 fg_last_error());
    cr_assert_eq(res.stop, FG_STOP_STRING, "%s", fg_stop_reason_str(res.stop));
    s.text[s.text_len] = '\0';
    cr_assert_str_eq(s.text, "Once upon a time, there was a ");
    fg_session_destroy(session);
    fg_sampler_destroy(sampler);
    fg_tokenizer_destroy(tok);
    fg_model_destroy(model);
}

Test(stories260k, generate_greedy_on_gpu)
{
    fgi_require_gpu();
    stories_greedy(FG_DEVICE_CUDA, 1);
}
