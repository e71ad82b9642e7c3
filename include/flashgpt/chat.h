/* flashgpt chat templates: the text a chat model expects for a conversation,
 * rendered from the model's own Jinja template exactly as Hugging Face
 * transformers' apply_chat_template(messages, tokenize=False,
 * add_generation_prompt=...) renders it.
 *
 * Design:
 *  - The template is parsed once (fg_chat_template_create / _load); a
 *    template using Jinja that this interpreter does not implement (an
 *    unknown statement, filter or test, `{% raw %}`, `{% include %}`, ...)
 *    is refused there with FG_ERR_UNSUPPORTED naming it, and anything only
 *    found while rendering (a method of a value, case mapping of non-ASCII
 *    text) is refused at render time the same way: never a wrong text.
 *  - The environment is transformers': trim_blocks and lstrip_blocks on,
 *    the template's final newline dropped, HTML autoescape off; globals
 *    raise_exception, strftime_now (local time), namespace, range, dict;
 *    tojson as json.dumps(ensure_ascii=False); the special-token strings
 *    of tokenizer_config.json (bos_token, eos_token, ...) as variables.
 *  - A parsed template is immutable: renders may run in parallel. */
#ifndef FLASHGPT_CHAT_H
#define FLASHGPT_CHAT_H

#include "flashgpt/status.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_chat_template fg_chat_template;

/* One message: NUL-terminated UTF-8 role ("system", "user", "assistant",
 * ...) and content. */
typedef struct {
    const char *role;
    const char *content;
} fg_chat_message;

/* Parses the len bytes of a Jinja template. bos_token and eos_token (NULL:
 * not defined for the template) are the strings the template sees under
 * those names. A syntax error is FG_ERR_FORMAT with its line; a feature
 * this interpreter lacks is FG_ERR_UNSUPPORTED naming it. */
fg_status fg_chat_template_create(fg_chat_template **tmpl, const char *source, size_t len,
                                  const char *bos_token, const char *eos_token);

/* The chat template of a model or tokenizer folder (path itself when it is
 * a folder, else the folder of the file): chat_template.jinja when present
 * (transformers 5 writes it), else "chat_template" of tokenizer_config.json,
 * a string or a list of {"name", "template"} objects of which the one named
 * "default" is used. The special tokens (bos_token, eos_token, unk_token,
 * pad_token, sep_token, cls_token, mask_token) come from
 * tokenizer_config.json, each a string or an object with a "content"
 * string; when the config has no "added_tokens_decoder" (older folders),
 * those of special_tokens_map.json win, as transformers reads them. No template in the folder is FG_ERR_IO with a message that
 * starts "no chat template in "; a malformed file is FG_ERR_FORMAT. */
fg_status fg_chat_template_load(fg_chat_template **tmpl, const char *path);

void fg_chat_template_destroy(fg_chat_template *tmpl); /* NULL is a no-op */

/* The eos_token string the template sees ("" when none): chat front ends
 * also stop at it as text. NULL for a NULL template. */
const char *fg_chat_template_eos(const fg_chat_template *tmpl);

/* Renders n_messages messages (n_messages >= 0; messages may be NULL when
 * 0) with add_generation_prompt as given. Sizing as fg_tokenizer_decode:
 * *len gets the bytes of the text, a cap smaller than that is
 * FG_ERR_INVALID_ARG with out untouched (out may be NULL when cap is 0);
 * no NUL is appended. A message the template rejects (raise_exception,
 * e.g. roles that do not alternate) or a value it cannot use is
 * FG_ERR_INVALID_ARG with the template's line and message. */
fg_status fg_chat_render(const fg_chat_template *tmpl, const fg_chat_message *messages,
                         int n_messages, int add_generation_prompt, char *out, size_t cap,
                         size_t *len);

/* The same from JSON text: either a list of message objects, or an object
 * whose "messages" is that list and whose other keys are more variables
 * for the template (apply_chat_template's keyword arguments, e.g.
 * "date_string", "tools"). Message keys whose value is null are dropped,
 * as transformers does; any JSON value is allowed in a message. Malformed
 * JSON or a message that is not an object is FG_ERR_FORMAT. */
fg_status fg_chat_render_json(const fg_chat_template *tmpl, const char *json, size_t json_len,
                              int add_generation_prompt, char *out, size_t cap, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_CHAT_H */
