/* The Jinja subset behind chat templates (chat_jinja.c): a parsed template
 * and its rendering over JSON variables. chat_template.c (the public
 * fg_chat_* calls) finds the template and builds the variables.
 * Messages: fgi_fail with "chat template line N: ..."; FG_ERR_FORMAT for
 * syntax, FG_ERR_UNSUPPORTED for Jinja this subset lacks, FG_ERR_INVALID_ARG
 * for a render the template refuses (raise_exception, bad values). */
#ifndef FLASHGPT_HOST_CHAT_JINJA_H
#define FLASHGPT_HOST_CHAT_JINJA_H

#include "flashgpt/status.h"

#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct fgi_jinja fgi_jinja;

/* Parses len bytes of template source (a copy is kept). */
fg_status fgi_jinja_parse(fgi_jinja **out, const char *source, size_t len);
void fgi_jinja_free(fgi_jinja *t);

/* Renders with the members of the JSON object vars as the template's
 * variables, into a new malloc'd buffer (*out, *len; a NUL follows). */
fg_status fgi_jinja_render(const fgi_jinja *t, const cJSON *vars, char **out, size_t *len);

#endif /* FLASHGPT_HOST_CHAT_JINJA_H */
