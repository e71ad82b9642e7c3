/* flashgpt verify: the same input through the CPU reference and the GPU;
 * prints max abs and relative L2 error of the logits and whether greedy
 * choices agree; exits 1 beyond the tolerance of docs/contract.md §32: the
 * fp32 one, or for a 16-bit GPU (--dtype bf16 / f16, or auto on a card
 * that runs them) relative L2 <= 2e-2, over a 64-token greedy continuation
 * (the CPU's choices fed to both, so the inputs stay the same). */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char VERB[] = "verify";
enum { DECODE_STEPS = 4, DECODE_STEPS_16 = 64 };
#define L2_16BIT 2e-2

typedef struct {
    double max_abs, rel_l2;
    int ok, greedy_agree, rows;
} verdict;

static void compare_rows(verdict *v, const float *gpu, const float *cpu, int rows, size_t V)
{
    double max_abs, rel_l2;
    v->ok &= cli_compare_logits(gpu, cpu, (size_t)rows * V, &max_abs, &rel_l2);
    if (max_abs > v->max_abs) v->max_abs = max_abs;
    if (rel_l2 > v->rel_l2) v->rel_l2 = rel_l2;
    for (int r = 0; r < rows; r++)
        v->greedy_agree += cli_argmax(gpu + r * V, V) == cli_argmax(cpu + r * V, V);
    v->rows += rows;
}

/* Prefill on both devices, then DECODE_STEPS greedy steps (the CPU's choice
 * fed to both so their inputs stay identical). */
static int run(fg_model *model, const int *ids, int T, fg_dtype dtype)
{
    const fg_config *cfg = fg_model_config(model);
    const size_t V = (size_t)cfg->vocab_size;
    int steps = DECODE_STEPS;
    if (dtype != FG_DTYPE_F32) { /* auto may still become f32: then 4 steps below */
        steps = cfg->n_ctx - T < DECODE_STEPS_16 ? cfg->n_ctx - T : DECODE_STEPS_16;
        if (steps < DECODE_STEPS) steps = DECODE_STEPS;
    }
    const int ctx = T + steps;
    fg_session *cpu = NULL, *gpu = NULL;
    float *a = NULL, *b = NULL;
    verdict v = {.ok = 1};
    int rc = CLI_RUNTIME_ERROR;
    /* the request is checked before anything is allocated for it */
    if ((long long)T + steps > cfg->n_ctx) {
        fprintf(stderr, "flashgpt verify: %d tokens + %d decode steps exceed the context (%d)\n", T,
                steps, cfg->n_ctx);
        goto done;
    }
    for (int t = 0; t < T; t++)
        if (ids[t] >= cfg->vocab_size) {
            fprintf(stderr, "flashgpt verify: token id %d (at %d) is outside the vocabulary [0, %d)\n",
                    ids[t], t, cfg->vocab_size);
            goto done;
        }
    a = malloc(sizeof(float) * V * (size_t)T);
    b = malloc(sizeof(float) * V * (size_t)T);
    if (a == NULL || b == NULL) {
        fprintf(stderr, "flashgpt verify: out of memory for %d x %zu logits\n", T, V);
        goto done;
    }
    if (fg_session_create_model(&gpu, model, FG_DEVICE_CUDA, ctx, dtype) != FG_OK) {
        cli_runtime_error(VERB, "verify needs a GPU");
        goto done;
    }
    cli_report_device(VERB, gpu, 1);
    const fg_dtype ran = fg_session_dtype(gpu);
    if (ran == FG_DTYPE_F32) steps = DECODE_STEPS; /* the fp32 check as it always was */
    printf("device cuda: dtype %s\n", fg_dtype_name(ran));
    if (fg_session_create_model(&cpu, model, FG_DEVICE_REF, ctx, FG_DTYPE_F32) != FG_OK ||
        fg_session_forward(cpu, ids, T, a) != FG_OK || fg_session_forward(gpu, ids, T, b) != FG_OK) {
        cli_runtime_error(VERB, "prefill failed");
        goto done;
    }
    compare_rows(&v, b, a, T, V);
    for (int step = 0; step < steps; step++) {
        int next = cli_argmax(fg_session_logits(cpu), V);
        if (fg_session_forward(cpu, &next, 1, NULL) != FG_OK ||
            fg_session_forward(gpu, &next, 1, NULL) != FG_OK) {
            cli_runtime_error(VERB, "decode step failed");
            goto done;
        }
        compare_rows(&v, fg_session_logits(gpu), fg_session_logits(cpu), 1, V);
    }
    printf("prefill %d tokens + %d decode steps, vocab %zu\n", T, steps, V);
    printf("max abs error %.3g, relative L2 error %.3g, greedy agreement %d/%d\n", v.max_abs,
           v.rel_l2, v.greedy_agree, v.rows);
    if (ran == FG_DTYPE_F32) {
        printf("%s (tolerance: relative L2 <= 1e-5, |gpu - cpu| <= 1e-4 + 1e-4 |cpu|)\n",
               v.ok ? "PASS" : "FAIL");
    } else {
        /* the 16-bit rule's ceiling; the elementwise fp32 bound does not apply */
        v.ok = v.rel_l2 <= L2_16BIT;
        printf("%s (tolerance for %s: relative L2 <= %g of the logits of every row)\n",
               v.ok ? "PASS" : "FAIL", fg_dtype_name(ran), L2_16BIT);
    }
    rc = v.ok ? CLI_OK : CLI_RUNTIME_ERROR;
done:
    fg_session_destroy(cpu);
    fg_session_destroy(gpu);
    free(a);
    free(b);
    return rc;
}

/* Relative L2 of got against ref (n), and of got - ref against ref - in
 * (the layer's own contribution; in may be NULL). */
static void layer_errors(const float *got, const float *ref, const float *in, size_t n,
                         double *rel, double *rel_delta)
{
    double e = 0, r = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        const double diff = (double)got[i] - ref[i];
        e += diff * diff;
        r += (double)ref[i] * ref[i];
        if (in) d += ((double)ref[i] - in[i]) * ((double)ref[i] - in[i]);
    }
    *rel = r > 0 ? sqrt(e / r) : sqrt(e);
    *rel_delta = d > 0 ? sqrt(e / d) : 0.0;
}

/* --layers, inside each layer: fg_cuda_block_probe hands over the output
 * of every operation of the GPU's block; each is compared with the exact
 * reference op fed the GPU's own input to that op (its previous output),
 * so an op's error is its own. */
enum { MAX_PROBES = 20 };
typedef struct {
    const char *op[MAX_PROBES];
    float *v[MAX_PROBES];
    int rows[MAX_PROBES], cols[MAX_PROBES];
    int n, oom;
} probe_set;

static void probe_collect(void *user, const char *op, const float *values, int rows, int cols)
{
    probe_set *p = user;
    const size_t n = (size_t)rows * cols;
    float *copy = p->n < MAX_PROBES ? malloc(sizeof(float) * (n ? n : 1)) : NULL;
    if (copy == NULL) {
        p->oom = 1;
        return;
    }
    memcpy(copy, values, sizeof(float) * n);
    p->op[p->n] = op; /* the library's string literals */
    p->v[p->n] = copy;
    p->rows[p->n] = rows;
    p->cols[p->n++] = cols;
}

static void probe_clear(probe_set *p)
{
    for (int i = 0; i < p->n; i++) free(p->v[i]);
    memset(p, 0, sizeof *p);
}

/* The output of op, which must be (rows, cols); NULL if missing. */
static const float *probe_get(const probe_set *p, const char *op, int rows, int cols)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->op[i], op) == 0)
            return p->rows[i] == rows && p->cols[i] == cols ? p->v[i] : NULL;
    return NULL;
}

/* One op's line; remembers the first op over its bound. */
typedef struct {
    double bound;
    int layer, failed;
    int first_layer;
    const char *first_op;
} op_report;

static void report_op(op_report *rep, const char *name, const float *got, const float *ref,
                      size_t n)
{
    double rel, unused;
    layer_errors(got, ref, NULL, n, &rel, &unused);
    const int bad = !(rel <= rep->bound);
    if (bad && rep->first_op == NULL) {
        rep->first_op = name;
        rep->first_layer = rep->layer;
    }
    printf("    %-18s relative L2 %.3g (bound %g)%s\n", name, rel, rep->bound, bad ? "  OVER" : "");
}

static void ref_norm(const fg_config *c, float *y, const float *x, const float *g, const float *b,
                     int T)
{
    if (c->arch == FG_ARCH_LLAMA)
        fg_ref_rms_norm(y, x, g, T, c->n_embd, c->norm_eps);
    else
        fg_ref_layer_norm(y, x, g, b, T, c->n_embd, c->norm_eps);
}

/* v (d) + bias (or NULL), rotated to position pos when the model uses RoPE:
 * the reference's interleaved pairs at fg_config_rope_inv_freq. */
static void ref_rope(const fg_config *c, float *out, const float *v, const float *bias, int pos,
                     int d)
{
    for (int i = 0; i < d; i++) out[i] = v[i] + (bias ? bias[i] : 0.0f);
    if (!c->use_rope) return;
    for (int j = 0; j < d / 2; j++) {
        const double theta = (double)pos * fg_config_rope_inv_freq(c, j);
        const double cs = cos(theta), sn = sin(theta), a = out[2 * j], b = out[2 * j + 1];
        out[2 * j] = (float)(a * cs - b * sn);
        out[2 * j + 1] = (float)(b * cs + a * sn);
    }
}

/* The per-op lines of one layer from the probes; x_in: the layer's input.
 * Returns 0 when an op's output is missing or memory runs out. */
static int check_ops(const fg_config *c, const fg_layer_weights *lw, int layer, const float *x_in,
                     const probe_set *p, int T, op_report *rep)
{
    const int C = c->n_embd, d = fg_config_head_dim(c), H = c->n_head, G = c->n_kv_head;
    const int W = fg_config_qkv_width(c), I = c->n_inner, llama = c->arch == FG_ARCH_LLAMA;
    const float *h1 = probe_get(p, "attn_norm", T, C), *qkv = probe_get(p, "qkv", T, W);
    const float *q = probe_get(p, "q_rope", T, H * d), *k = probe_get(p, "k_cache", T, G * d);
    const float *v = probe_get(p, "v_cache", T, G * d);
    const float *att = probe_get(p, "attention", T, H * d);
    const float *proj = probe_get(p, "attn_proj", T, C), *x1 = probe_get(p, "residual", T, C);
    const float *h2 = probe_get(p, "ffn_norm", T, C), *down = probe_get(p, "down", T, C);
    const float *x2 = probe_get(p, "residual_2", T, C);
    const float *gate_up = llama ? probe_get(p, "gate_up", T, 2 * I) : NULL;
    const float *act = llama ? probe_get(p, "activation", T, I) : probe_get(p, "up_gelu", T, I);
    if (!h1 || !qkv || !q || !k || !v || !att || !proj || !x1 || !h2 || !down || !x2 || !act ||
        (llama && !gate_up))
        return 0;
    const size_t big = (size_t)T * (size_t)(2 * I > W ? (2 * I > H * d ? 2 * I : H * d)
                                                      : (W > H * d ? W : H * d));
    float *ref = malloc(sizeof(float) * (big > (size_t)T * C ? big : (size_t)T * C));
    float *s1 = malloc(sizeof(float) * big), *s2 = malloc(sizeof(float) * big);
    float *s3 = malloc(sizeof(float) * big);
    int ok = ref && s1 && s2 && s3;
    rep->layer = layer;
    if (ok) {
        const size_t nC = (size_t)T * C;
        ref_norm(c, ref, x_in, lw->ln_1_g, lw->ln_1_b, T);
        report_op(rep, "attn norm", h1, ref, nC);
        fg_ref_linear(ref, h1, lw->c_attn_w, NULL, T, C, W);
        report_op(rep, "qkv projection", qkv, ref, (size_t)T * W);
        /* bias + RoPE + append, from the GPU's q|k|v rows */
        for (int t = 0; t < T; t++) {
            const float *row = qkv + (size_t)t * W, *b = lw->c_attn_b;
            for (int h = 0; h < H; h++)
                ref_rope(c, ref + ((size_t)t * H + h) * d, row + h * d, b ? b + h * d : NULL, t, d);
            for (int g = 0; g < G; g++) {
                ref_rope(c, s1 + ((size_t)t * G + g) * d, row + (H + g) * d,
                         b ? b + (H + g) * d : NULL, t, d);
                for (int i = 0; i < d; i++)
                    s2[((size_t)t * G + g) * d + i] =
                        row[(H + G + g) * d + i] + (b ? b[(H + G + g) * d + i] : 0.0f);
            }
        }
        report_op(rep, "q bias + rope", q, ref, (size_t)T * H * d);
        report_op(rep, "k rope + append", k, s1, (size_t)T * G * d);
        report_op(rep, "v append", v, s2, (size_t)T * G * d);
        /* attention from the GPU's rotated q and cached k, v: (heads, T, d) */
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < H; h++)
                memcpy(s1 + ((size_t)h * T + t) * d, q + ((size_t)t * H + h) * d, sizeof(float) * d);
            for (int g = 0; g < G; g++) {
                memcpy(s2 + ((size_t)g * T + t) * d, k + ((size_t)t * G + g) * d, sizeof(float) * d);
                memcpy(s3 + ((size_t)g * T + t) * d, v + ((size_t)t * G + g) * d, sizeof(float) * d);
            }
        }
        ok = fg_ref_gqa_window(ref, s1, s2, s3, H, G, T, T, d, fg_config_layer_window(c, layer)) ==
             FG_OK;
        for (int h = 0; ok && h < H; h++) /* back to (T, H*d) */
            for (int t = 0; t < T; t++)
                memcpy(s1 + ((size_t)t * H + h) * d, ref + ((size_t)h * T + t) * d,
                       sizeof(float) * d);
        if (ok) report_op(rep, "attention", att, s1, (size_t)T * H * d);
        fg_ref_linear(ref, att, lw->c_proj_w, NULL, T, H * d, C);
        report_op(rep, "output projection", proj, ref, nC);
        for (size_t i = 0; i < nC; i++)
            ref[i] = x_in[i] + (lw->c_proj_b ? proj[i] + lw->c_proj_b[i % C] : proj[i]);
        report_op(rep, "residual", x1, ref, nC);
        ref_norm(c, ref, x1, lw->ln_2_g, lw->ln_2_b, T);
        report_op(rep, "ffn norm", h2, ref, nC);
        if (llama) {
            fg_ref_linear(s1, h2, lw->fc_w, NULL, T, C, I);
            fg_ref_linear(s2, h2, lw->up_w, NULL, T, C, I);
            for (int t = 0; t < T; t++) {
                memcpy(ref + (size_t)t * 2 * I, s1 + (size_t)t * I, sizeof(float) * I);
                memcpy(ref + (size_t)t * 2 * I + I, s2 + (size_t)t * I, sizeof(float) * I);
            }
            report_op(rep, "ffn gate|up", gate_up, ref, (size_t)T * 2 * I);
            for (int t = 0; t < T; t++)
                fg_ref_silu_mul(ref + (size_t)t * I, gate_up + (size_t)t * 2 * I,
                                gate_up + (size_t)t * 2 * I + I, I);
            report_op(rep, "activation", act, ref, (size_t)T * I);
        } else {
            fg_ref_linear(ref, h2, lw->fc_w, lw->fc_b, T, C, I);
            fg_ref_gelu(ref, ref, T * I);
            report_op(rep, "ffn up + gelu", act, ref, (size_t)T * I);
        }
        fg_ref_linear(ref, act, lw->mlp_proj_w, NULL, T, I, C);
        report_op(rep, "down projection", down, ref, nC);
        for (size_t i = 0; i < nC; i++)
            ref[i] = x1[i] + (lw->mlp_proj_b ? down[i] + lw->mlp_proj_b[i % C] : down[i]);
        report_op(rep, "residual 2", x2, ref, nC);
    }
    free(ref), free(s1), free(s2), free(s3);
    return ok;
}

/* --layers: every block on the GPU (fg_cuda_block in the chosen type) and
 * on the exact reference (fg_ref_block), both fed the reference's input to
 * that layer, so each layer's error is its own and not its predecessors';
 * names the first layer whose output is over the bound. Then, per layer,
 * each operation's error (fg_cuda_block_probe on a second cache: the
 * unfused kernels one at a time) against the reference op fed the GPU's
 * input to it, with the same bound per op, naming the first op over it. */
static int run_layers(fg_model *model, const int *ids, int T, fg_dtype want)
{
    const fg_config *cfg = fg_model_config(model);
    const fg_weights *w = fg_model_weights(model);
    const int C = cfg->n_embd, d = fg_config_head_dim(cfg);
    const size_t n = (size_t)T * C;
    fg_cuda_weights *gw = NULL;
    fg_cuda_runner *gr = NULL;
    fg_cuda_kv_cache *gc = NULL, *gc_probe = NULL;
    fg_kv_cache *rc_cache = NULL;
    probe_set probes;
    memset(&probes, 0, sizeof probes);
    float *x = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
    float *got = malloc(sizeof(float) * n), *dev = NULL;
    int rc = CLI_RUNTIME_ERROR, first_bad = -1;
    fg_dtype dtype = want;
    if (want == FG_DTYPE_AUTO)
        dtype = fg_cuda_decoder_dtype_supported(cfg, FG_DTYPE_BF16)  ? FG_DTYPE_BF16
                : fg_cuda_decoder_dtype_supported(cfg, FG_DTYPE_F16) ? FG_DTYPE_F16
                                                                     : FG_DTYPE_F32;
    const double bound = dtype == FG_DTYPE_F32 ? 1e-5 : L2_16BIT;
    if (x == NULL || ref == NULL || got == NULL) {
        fprintf(stderr, "flashgpt verify: out of memory for %d x %d activations\n", T, C);
        goto done;
    }
    if (T > cfg->n_ctx) {
        fprintf(stderr, "flashgpt verify: %d tokens exceed the context (%d)\n", T, cfg->n_ctx);
        goto done;
    }
    if (fg_cuda_weights_create_typed(&gw, cfg, w, dtype) != FG_OK ||
        fg_cuda_runner_create(&gr, gw, T, NULL) != FG_OK ||
        fg_cuda_kv_cache_create_typed(&gc, cfg->n_layer, cfg->n_kv_head, d, T, dtype) != FG_OK ||
        fg_cuda_kv_cache_create_typed(&gc_probe, cfg->n_layer, cfg->n_kv_head, d, T, dtype) !=
            FG_OK ||
        fg_cuda_malloc((void **)&dev, sizeof(float) * n) != FG_OK ||
        fg_kv_cache_create(&rc_cache, cfg, T) != FG_OK) {
        cli_runtime_error(VERB, "cannot set up the GPU decoder");
        goto done;
    }
    for (int t = 0; t < T; t++) /* the embedding, as the reference computes it */
        for (int i = 0; i < C; i++)
            x[(size_t)t * C + i] = w->wte[(size_t)ids[t] * C + i] +
                                   (w->wpe ? w->wpe[(size_t)t * C + i] : 0.0f);
    printf("device cuda: dtype %s, %d layers on %d tokens, each fed the reference's input\n",
           fg_dtype_name(dtype), cfg->n_layer, T);
    op_report ops = {.bound = bound, .first_layer = -1};
    for (int l = 0; l < cfg->n_layer; l++) {
        memcpy(ref, x, sizeof(float) * n);
        if (fg_ref_block(ref, T, cfg, &w->layers[l], rc_cache, l) != FG_OK ||
            fg_cuda_upload(dev, x, sizeof(float) * n) != FG_OK ||
            fg_cuda_block(dev, T, gr, gc, l) != FG_OK || fg_cuda_synchronize(NULL) != FG_OK ||
            fg_cuda_download(got, dev, sizeof(float) * n) != FG_OK) {
            cli_runtime_error(VERB, "a layer failed to run");
            goto done;
        }
        double rel, rel_delta;
        layer_errors(got, ref, x, n, &rel, &rel_delta);
        const int bad = !(rel <= bound);
        if (bad && first_bad < 0) first_bad = l;
        printf("layer %3d: output relative L2 %.3g, of the layer's update %.3g%s\n", l, rel,
               rel_delta, bad ? "  OVER" : "");
        /* the same input once more, op by op */
        if (fg_cuda_upload(dev, x, sizeof(float) * n) != FG_OK ||
            fg_cuda_block_probe(dev, T, gr, gc_probe, l, probe_collect, &probes) != FG_OK ||
            probes.oom || !check_ops(cfg, &w->layers[l], l, x, &probes, T, &ops)) {
            cli_runtime_error(VERB, "the per-operation check failed to run");
            goto done;
        }
        probe_clear(&probes);
        memcpy(x, ref, sizeof(float) * n); /* the next layer's input: the reference's */
    }
    if (first_bad >= 0)
        printf("FAIL: layer %d is the first over the bound (relative L2 <= %g)\n", first_bad,
               bound);
    else
        printf("PASS: every layer within relative L2 <= %g\n", bound);
    if (ops.first_op != NULL)
        printf("FAIL: '%s' of layer %d is the first operation over its bound (relative L2 <= "
               "%g)\n", ops.first_op, ops.first_layer, bound);
    else
        printf("PASS: every operation within relative L2 <= %g\n", bound);
    rc = first_bad < 0 && ops.first_op == NULL ? CLI_OK : CLI_RUNTIME_ERROR;
done:
    probe_clear(&probes);
    fg_kv_cache_destroy(rc_cache);
    fg_cuda_free(dev);
    fg_cuda_kv_cache_destroy(gc);
    fg_cuda_kv_cache_destroy(gc_probe);
    fg_cuda_runner_destroy(gr);
    fg_cuda_weights_destroy(gw);
    free(x), free(ref), free(got);
    return rc;
}

int cmd_verify(int argc, char **argv)
{
    const char *model_path = NULL, *tokens = NULL, *prompt = NULL, *tok_path = NULL;
    const char *dtype_name = "auto";
    int layers = 0;
    const cli_option opts[] = {
        {"layers", 0, OPT_FLAG, &layers, NULL, "the error of every layer's output and of each operation inside it, each fed the reference's input; names the first over its bound"},
        {"dtype", 0, OPT_STRING, &dtype_name, "T", "auto, f32, bf16 or f16 on the GPU (default auto: bf16 where the card and model run it)"},
        {"model", 'm', OPT_STRING, &model_path, "PATH", "Hugging Face folder or llama2.c .bin (required)"},
        {"tokens", 0, OPT_STRING, &tokens, "IDS", "comma-separated token ids"},
        {"prompt", 'p', OPT_STRING, &prompt, "TEXT", "prompt text (needs the tokenizer)"},
        {"tokenizer", 't', OPT_STRING, &tok_path, "PATH", "tokenizer (default: beside the model)"},
    };
    const cli_command cmd = {VERB, "-m PATH [--tokens IDS | -p PROMPT] [options]",
                             "Run the same input on the CPU reference and on the GPU and compare "
                             "the logits (default input: 16 fixed token ids).",
                             opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc != CLI_OK) return rc == CLI_HELP_SHOWN ? CLI_OK : rc;
    if (model_path == NULL) return cli_usage_error(VERB, "-m PATH is required");
    if (tokens && prompt) return cli_usage_error(VERB, "give --tokens or -p, not both");
    fg_dtype dtype;
    if (cli_parse_dtype(VERB, dtype_name, &dtype) != CLI_OK) return CLI_USAGE_ERROR;
    /* the card before the model: a type it cannot run costs no load */
    if (cli_check_dtype(VERB, FG_DEVICE_CUDA, dtype) != CLI_OK) return CLI_RUNTIME_ERROR;
    int *ids = NULL, T = 0;
    if (tokens && cli_parse_ids(tokens, &ids, &T) != 0)
        return cli_usage_error(VERB, "--tokens must be comma-separated non-negative integers");

    fg_model *model = NULL;
    fg_tokenizer *tok = NULL;
    if (cli_load_model(&model, model_path) != FG_OK) {
        free(ids);
        return cli_runtime_error(VERB, "cannot load the model");
    }
    const fg_config *cfg = fg_model_config(model);
    if (prompt) {
        if (cli_load_tokenizer(&tok, tok_path, model_path, cfg->vocab_size) != FG_OK)
            rc = cli_runtime_error(VERB, "cannot load the tokenizer");
        else if (cli_encode_prompt(tok, cfg, prompt, &ids, &T) != FG_OK)
            rc = cli_runtime_error(VERB, "cannot encode the prompt");
    } else if (ids == NULL) {
        T = cfg->n_ctx - DECODE_STEPS < 16 ? cfg->n_ctx - DECODE_STEPS : 16;
        ids = malloc(sizeof(int) * (size_t)(T > 0 ? T : 1));
        for (int i = 0; ids && i < T; i++) ids[i] = (int)((7919LL * i + 1) % cfg->vocab_size);
        if (ids == NULL || T < 1) rc = cli_usage_error(VERB, "the model's context is too short");
    }
    if (rc == CLI_OK) rc = layers ? run_layers(model, ids, T, dtype) : run(model, ids, T, dtype);
    fg_tokenizer_destroy(tok);
    fg_model_destroy(model);
    free(ids);
    return rc;
}
