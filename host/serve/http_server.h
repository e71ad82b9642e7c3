/* flashgpt's OpenAI-compatible HTTP server (libmicrohttpd + cJSON) in front
 * of an engine (engine.h).
 *
 * Endpoints: POST /v1/completions, POST /v1/chat/completions (JSON or, with
 * "stream": true, server-sent events ending in "data: [DONE]"), GET
 * /v1/models, GET /health, GET /metrics (Prometheus text). Every error is an
 * OpenAI error object {"error": {"message", "type", "param", "code"}}.
 * One thread per connection (libmicrohttpd's): a handler may wait for its
 * request's tokens; the engine's callbacks only append to a buffer and
 * signal. Built only when libmicrohttpd is found (FG_HAVE_MHD). */
#ifndef FGI_SERVE_HTTP_SERVER_H
#define FGI_SERVE_HTTP_SERVER_H

#include "engine.h"

#include <stddef.h>

typedef struct {
    const char *host;      /* address to bind, e.g. "127.0.0.1", "::1", "0.0.0.0" */
    int port;              /* 0 .. 65535; 0 picks a free port */
    const char *api_key;   /* NULL: no key; else "Authorization: Bearer KEY" required */
    const char *model_id;  /* the name /v1/models lists and requests must use */
    size_t max_body;       /* request bodies above it get 413 */
    fgi_engine *engine;    /* outlives the server */
    const fg_tokenizer *tok;
    const fg_config *cfg;
} fgi_server_options;

typedef struct fgi_server fgi_server;

/* Binds and starts serving. FG_ERR_IO when the address cannot be bound;
 * err (err_cap bytes) gets the one-line reason of a failure. */
fg_status fgi_server_start(fgi_server **srv, const fgi_server_options *opt, char *err,
                           size_t err_cap);
int fgi_server_port(const fgi_server *srv); /* the bound port */
/* Stops accepting connections (the listening socket closes); those open
 * go on. */
void fgi_server_quiesce(fgi_server *srv);
/* Closes every connection (waits for their threads) and frees. Shut the
 * engine down first (fgi_engine_shutdown) so that waiting handlers end. */
void fgi_server_stop(fgi_server *srv);

#endif /* FGI_SERVE_HTTP_SERVER_H */
