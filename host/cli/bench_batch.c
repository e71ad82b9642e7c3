/* flashgpt bench --batch N: decode throughput of the serving engine.
 *
 * N requests with the same prompt length and token budget go through one
 * continuous-batching scheduler (fg_scheduler, what `flashgpt serve --engine
 * batch` runs). Their prompts are prefilled untimed; then the steps in which
 * every one of the N requests decodes are timed: tokens/s = tokens generated
 * in those steps over their time, and the step time is what each stream
 * waits between two of its tokens (the inter-token latency). The sweep over
 * N (bench/batch_sweep.sh) shows how far batching turns a memory-bound step
 * into throughput: while the weights dominate the bytes a step reads, N
 * streams cost about what one does. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int *generated; /* tokens so far, per request (ids 1 .. batch) */
    int batch;
} batch_counts;

static int count_token(void *user, uint64_t id, int token, const float *logits)
{
    (void)token;
    (void)logits;
    batch_counts *c = user;
    if (id >= 1 && id <= (uint64_t)c->batch) c->generated[id - 1]++;
    return 0;
}

/* Steps until every request has its first token, i.e. all prompts are in
 * the cache and the next step decodes all of them (or one has finished). */
static fg_status prefill_all(fg_scheduler *sched, const batch_counts *c, int *steps)
{
    for (;;) {
        int started = 1;
        for (int i = 0; i < c->batch; i++) started &= c->generated[i] >= 1;
        if (started) return FG_OK;
        int busy = 0;
        const fg_status st = fg_scheduler_step(sched, &busy);
        if (st != FG_OK) return st;
        ++*steps;
        if (!busy) return FG_ERR_INVALID_ARG; /* ended before its first token (--gen too small?) */
    }
}

int cli_bench_batch(const char *verb, const fg_config *cfg, const fg_weights *w, fg_device device,
                    fg_dtype dtype, int threads, int batch, int n_prompt, int n_gen,
                    double weights_read)
{
    if (batch < 1 || n_gen < 2)
        return cli_usage_error(verb, "--batch needs N >= 1 and --gen >= 2 (got %d, %d)", batch,
                               n_gen);
    fg_scheduler_config opts = fg_scheduler_defaults();
    opts.device = device;
    opts.dtype = dtype;
    opts.n_threads = threads;
    opts.ctx = n_prompt + n_gen;
    opts.max_seqs = batch;
    /* every prompt in one step where that stays modest: the streams then
     * decode in lockstep and the timed window is all of --gen */
    const long all_prompts = (long)batch * n_prompt;
    opts.step_tokens = all_prompts <= 8192 ? (int)all_prompts : (batch > 8192 ? batch : 8192);
    if (opts.step_tokens < batch) opts.step_tokens = batch;
    opts.prefix_sharing = 0; /* the prompts differ anyway; measure the plain path */

    int *prompt = malloc(sizeof(int) * (size_t)n_prompt);
    batch_counts counts = {calloc((size_t)batch, sizeof(int)), batch};
    fg_scheduler *sched = NULL;
    int rc = CLI_RUNTIME_ERROR;
    if (prompt == NULL || counts.generated == NULL) {
        cli_runtime_error(verb, "out of memory");
        goto done;
    }
    cli_progress progress;
    cli_progress_start(&progress, "bench: scheduler and KV pool");
    const fg_status created = fg_scheduler_create(&sched, cfg, w, &opts);
    cli_progress_end(&progress);
    if (created != FG_OK) {
        cli_runtime_error(verb, "cannot create the scheduler");
        goto done;
    }
    for (int r = 0; r < batch; r++) {
        /* distinct deterministic prompts: no two requests share a prefix */
        for (int i = 0; i < n_prompt; i++)
            prompt[i] = (int)((2654435761ULL * (unsigned)(i + 1) + 40503ULL * (unsigned)(r + 1)) %
                              (unsigned)cfg->vocab_size);
        fg_request req = {0};
        req.prompt = prompt;
        req.n_prompt = n_prompt;
        req.sampling = fg_sampler_defaults();
        req.sampling.temperature = 0.0f; /* greedy */
        req.max_tokens = n_gen;
        req.on_token = count_token;
        req.user = &counts;
        uint64_t id = 0;
        if (fg_scheduler_submit(sched, &req, &id) != FG_OK || id != (uint64_t)r + 1) {
            cli_runtime_error(verb, "cannot submit a request");
            goto done;
        }
    }
    int prefill_steps = 0;
    cli_progress_start(&progress, "bench: prefill");
    const double t_prefill = cli_now();
    const fg_status prefilled = prefill_all(sched, &counts, &prefill_steps);
    const double prefill_s = cli_now() - t_prefill;
    cli_progress_end(&progress);
    if (prefilled != FG_OK) {
        cli_runtime_error(verb, "prefill failed");
        goto done;
    }
    fg_scheduler_stats before, after;
    if (fg_scheduler_stats_get(sched, &before) != FG_OK) goto done;
    printf("dtype: %s (weights, activations, KV pool; fp32 residual stream and logits)\n",
           fg_dtype_name(before.dtype));
    /* Timed: the steps while all `batch` requests are running. */
    int steps = 0;
    cli_progress_start(&progress, "bench: decode");
    const double t0 = cli_now();
    for (;;) {
        int all_running = 1;
        for (int i = 0; i < batch; i++) all_running &= counts.generated[i] < n_gen;
        if (!all_running) break;
        int busy = 0;
        if (fg_scheduler_step(sched, &busy) != FG_OK) {
            cli_progress_end(&progress);
            cli_runtime_error(verb, "decode step failed");
            goto done;
        }
        steps++;
        cli_progress_update(&progress, steps, n_gen - 1);
    }
    const double decode_s = cli_now() - t0;
    cli_progress_end(&progress);
    if (fg_scheduler_stats_get(sched, &after) != FG_OK || steps < 1 || decode_s <= 0.0) {
        cli_runtime_error(verb, "no decode step was timed");
        goto done;
    }
    const double tokens = (double)(after.generated_tokens - before.generated_tokens);
    const double step_ms = decode_s / steps * 1e3;
    printf("prefill: %d prompts of %d tokens in %d steps, %.3f s = %.1f tokens/s\n", batch,
           n_prompt, prefill_steps, prefill_s, (double)all_prompts / prefill_s);
    printf("batch decode: %d streams, %d steps, %.0f tokens in %.3f s = %.1f tokens/s, "
           "step %.3f ms (inter-token latency)\n",
           batch, steps, tokens, decode_s, tokens / decode_s, step_ms);
    const double weight_bytes = weights_read * (double)fg_dtype_size(before.dtype);
    if (weight_bytes > 0.0) {
        double gbps = 0.0;
        if (fg_cuda_copy_bandwidth((size_t)256 << 20, 20, &gbps) != FG_OK) {
            cli_runtime_error(verb, "cannot measure the copy bandwidth");
            goto done;
        }
        const double floor_ms = weight_bytes / (gbps * 1e9) * 1e3;
        printf("weight-read floor: %.1f MB at %.1f GB/s = %.3f ms a step, %.1f tokens/s at "
               "batch %d; this step is %.2fx the floor\n",
               weight_bytes / 1e6, gbps, floor_ms, batch / floor_ms * 1e3, batch,
               step_ms / floor_ms);
    }
    rc = CLI_OK;
done:
    fg_scheduler_destroy(sched);
    free(prompt);
    free(counts.generated);
    return rc;
}
