/* The serving engine: what runs the model for the HTTP layer (host/serve).
 *
 * The HTTP layer encodes prompts, submits requests and turns the engine's
 * callbacks into JSON or server-sent events; the engine owns the model,
 * the KV memory and the order in which requests advance. Two kinds fit
 * behind this interface (a table of functions, fgi_engine_ops):
 *  - "sessions" (engine_sessions.c): one worker thread owning up to
 *    max_batch public fg_session objects, advancing the running requests
 *    round-robin one token at a time, so that streams interleave; the
 *    rest wait in a bounded queue;
 *  - "batch" (engine_batch.c): the continuous-batching scheduler over a
 *    paged KV cache (flashgpt/scheduler.h) behind the same table.
 *
 * Contract every engine keeps:
 *  - fgi_engine_submit copies everything it needs from the request (prompt
 *    ids, stop strings); the caller's arrays may be freed on return.
 *  - Callbacks run on an engine thread, never inside fgi_engine_submit,
 *    must not block for long and must not call back into the engine except
 *    fgi_engine_cancel / fgi_engine_stats.
 *  - on_piece: once per generated token, in order, with the text that the
 *    token releases (possibly empty: text that might begin a stop string or
 *    ends inside a UTF-8 sequence is held back until it is decided). Text
 *    belonging to a matched stop string is never released. A nonzero
 *    return cancels the request (as fgi_engine_cancel).
 *  - on_finish: exactly once per accepted request, last, with the reason
 *    and the usage counts; it may first release held-back text through one
 *    on_piece with token -1. After on_finish returns the engine never
 *    touches the request's user pointer again, so the caller frees its
 *    state there (or after it). By then the request no longer counts in
 *    fgi_engine_stats (its KV memory is free).
 *  - Cancelling (a disconnected client, shutdown) frees the request's KV
 *    memory at once; on_finish then reports FGI_FINISH_CANCELLED.
 *  - Token ids stop at the tokenizer's EOS (and BOS, as fg_generate does)
 *    unless ignore_eos; the stop id is neither counted nor released. */
#ifndef FGI_SERVE_ENGINE_H
#define FGI_SERVE_ENGINE_H

#include "flashgpt/flashgpt.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    FGI_FINISH_STOP = 0,      /* EOS / a stop id, or a stop string matched */
    FGI_FINISH_LENGTH = 1,    /* max_tokens generated, or the context is full */
    FGI_FINISH_CANCELLED = 2, /* fgi_engine_cancel, a callback, or shutdown */
    FGI_FINISH_ERROR = 3      /* the model failed; message in fgi_engine_final */
} fgi_finish_reason;

/* "stop", "length", "cancelled", "error" (OpenAI's finish_reason names for
 * the first two). */
const char *fgi_finish_reason_str(fgi_finish_reason reason);

typedef struct {
    int token;        /* the id generated, or -1 for the final flush */
    const char *text; /* bytes released now (not NUL-terminated) */
    size_t len;       /* may be 0 */
    int index;        /* 0-based count of tokens generated before this one */
} fgi_engine_piece;

typedef struct {
    fgi_finish_reason reason;
    int prompt_tokens;     /* the prompt's ids */
    int completion_tokens; /* ids generated (a stop string's tokens count,
                              a stop id does not) */
    const char *message;   /* FGI_FINISH_ERROR: one line; else NULL */
} fgi_engine_final;

typedef int (*fgi_on_piece)(void *user, const fgi_engine_piece *piece);
typedef void (*fgi_on_finish)(void *user, const fgi_engine_final *final);

typedef struct {
    const int *prompt; /* n_prompt ids, 1 .. fgi_engine_context() - 1 */
    int n_prompt;
    int max_tokens;    /* >= 1; generation also ends when the context is full */
    fg_sampler_config sampling; /* temperature 0: greedy; seed makes it repeatable */
    const char *const *stop;    /* n_stop NUL-terminated non-empty strings */
    int n_stop;                 /* 0 .. FGI_ENGINE_MAX_STOP */
    int ignore_eos;
    fgi_on_piece on_piece;   /* required */
    fgi_on_finish on_finish; /* required */
    void *user;
} fgi_engine_request;

/* 8 stop strings: the API's 4 and room for the server's own (a chat
 * template's end-of-turn text). */
enum { FGI_ENGINE_MAX_STOP = 8, FGI_ENGINE_STOP_MAX_LEN = 256 };

/* What fgi_engine_submit returns. */
typedef enum {
    FGI_SUBMIT_OK = 0,
    FGI_SUBMIT_INVALID = 1,    /* bad request (message in fg_last_error()) */
    FGI_SUBMIT_QUEUE_FULL = 2, /* max_waiting requests already wait: HTTP 429 */
    FGI_SUBMIT_SHUTDOWN = 3,   /* the engine is stopping: HTTP 503 */
    FGI_SUBMIT_NO_MEMORY = 4
} fgi_submit_status;

/* A snapshot for /metrics and the tests. */
typedef struct {
    int running;         /* requests holding KV memory and advancing */
    int waiting;         /* accepted, not yet started */
    int kv_blocks_used;  /* KV blocks held by running requests */
    int kv_blocks_total; /* the pool's size (sessions engine: max_batch * ctx / block) */
    int kv_block_tokens; /* tokens per block */
    uint64_t finished;   /* requests ended, any reason */
} fgi_engine_stats;

typedef struct fgi_engine fgi_engine;

typedef struct {
    fgi_submit_status (*submit)(fgi_engine *e, const fgi_engine_request *req,
                                uint64_t *id);
    void (*cancel)(fgi_engine *e, uint64_t id);
    void (*stats)(fgi_engine *e, fgi_engine_stats *out);
    void (*shutdown)(fgi_engine *e, int cancel_running);
    void (*destroy)(fgi_engine *e);
} fgi_engine_ops;

/* Every engine begins with this header (its own state follows). */
struct fgi_engine {
    const fgi_engine_ops *ops;
    int context;    /* most tokens one request may hold: prompt + generated */
    int vocab_size;
};

/* Dispatch through ops. submit: *id (> 0) names the request for cancel.
 * cancel: an unknown or finished id is a no-op. shutdown: refuses new
 * requests from now on; with cancel_running every waiting and running
 * request is cancelled, else the running and waiting ones finish; returns
 * when all on_finish calls are done. destroy: shutdown(1) if not yet,
 * then frees (NULL is a no-op). */
fgi_submit_status fgi_engine_submit(fgi_engine *e, const fgi_engine_request *req,
                                    uint64_t *id);
void fgi_engine_cancel(fgi_engine *e, uint64_t id);
void fgi_engine_stats_get(fgi_engine *e, fgi_engine_stats *out);
void fgi_engine_shutdown(fgi_engine *e, int cancel_running);
void fgi_engine_destroy(fgi_engine *e);
int fgi_engine_context(const fgi_engine *e);

/* --- the sessions engine ----------------------------------------------------- */

typedef struct {
    fg_device device;
    int ctx;         /* per-session capacity, 1 .. cfg->n_ctx; 0: cfg->n_ctx */
    int max_batch;   /* sessions, i.e. requests running at once, >= 1 */
    int max_waiting; /* queue capacity, >= 0 */
    int n_threads;   /* CPU threads per forward; 0: one per online core */
    int turn_delay_ms; /* testing aid, 0 in use: a pause after each round of
                          turns, so that tests can hold requests running */
    fg_dtype dtype;  /* fg_session_create_typed's: FG_DTYPE_F32 (0), 16-bit or AUTO */
    const fg_model *model; /* set: sessions of it (fg_session_create_model; cfg is its
                              configuration, w unused and may be NULL), so the GPU never
                              widens it; must outlive the engine */
} fgi_sessions_options;

/* cfg, w and tok must outlive the engine (tok is only read). Creates the
 * max_batch sessions at once, so a bad device or too large a context fails
 * here, not on the first request. */
fg_status fgi_engine_create_sessions(fgi_engine **e, const fg_config *cfg,
                                     const fg_weights *w, const fg_tokenizer *tok,
                                     const fgi_sessions_options *opt);

/* The first of a sessions engine's sessions and how many it has (all alike:
 * the device, type and memory of one say those of every one); NULL for
 * another engine. For startup reports, before requests arrive. */
const fg_session *fgi_engine_sessions_first(const fgi_engine *e, int *n_sessions);

/* --- the batching engine (engine_batch.c) ------------------------------------ */

/* One worker thread steps a continuous-batching scheduler
 * (flashgpt/scheduler.h): every running request advances in each batched
 * forward over a paged KV cache; a request's tokens are the same bits alone
 * or among others. Devices REF, CPU (AUTO: CPU) and CUDA. */
typedef struct {
    fg_device device;
    int ctx;           /* tokens per request, 2 .. cfg->n_ctx; 0: cfg->n_ctx */
    int max_batch;     /* requests running at once, 1 .. 4096 */
    int max_waiting;   /* queue capacity, >= 0 */
    int n_threads;     /* CPU threads per forward; 0: one per online core */
    int block_size;    /* tokens per KV block; 0: 16 */
    int n_blocks;      /* KV blocks in the pool; 0: max_batch full contexts */
    int step_tokens;   /* token budget per step (prompt chunks); 0: max(256, max_batch) */
    int step_delay_ms; /* testing aid, 0 in use: a pause after each step */
    fg_dtype dtype;    /* fg_scheduler_config's: F32 (0), 16-bit (CUDA) or AUTO */
    const fg_model *model; /* NULL, or the loaded model (cfg its config, w may be NULL):
                              the scheduler is made from it (fg_scheduler_create_model),
                              so the GPU gets its weights with no fp32 host copy */
} fgi_batch_options;

/* cfg, w (or opt->model) and tok must outlive the engine (tok is only
 * read). The pool and the packed weights are allocated here; bad options
 * fail here. */
fg_status fgi_engine_create_batch(fgi_engine **e, const fg_config *cfg, const fg_weights *w,
                                  const fg_tokenizer *tok, const fgi_batch_options *opt);

/* --- text release (shared by engines) ---------------------------------------- */

/* Holds back generated text until it cannot begin a stop string and does
 * not end inside a UTF-8 sequence. */
typedef struct {
    char *buf;           /* bytes generated and not yet dropped */
    size_t len, cap;
    size_t pending_from; /* buf[0..pending_from) was released by the last push */
    char *stop[FGI_ENGINE_MAX_STOP];
    int n_stop;
    size_t max_stop_len;
} fgi_text_release;

/* Copies the stop strings. FG_ERR_INVALID_ARG for an empty or too long
 * one, FG_ERR_OOM. */
fg_status fgi_text_release_init(fgi_text_release *r, const char *const *stop, int n_stop);
void fgi_text_release_free(fgi_text_release *r);
/* Appends len bytes; *out / *out_len get the bytes releasable now (valid
 * until the next call). Returns 1 when a stop string matched (then *out is
 * the text before it, and nothing more may be pushed), 0 otherwise, -1 on
 * OOM. */
int fgi_text_release_push(fgi_text_release *r, const char *text, size_t len,
                          const char **out, size_t *out_len);
/* Everything still held (at the end of a generation without a stop match). */
void fgi_text_release_flush(fgi_text_release *r, const char **out, size_t *out_len);

#endif /* FGI_SERVE_ENGINE_H */
