/* Chat templates (flashgpt/chat.h): finding a model's template and special
 * tokens on disk, and the variables transformers' apply_chat_template
 * passes (messages without null keys, add_generation_prompt, tools and
 * documents none unless given, the special-token strings, keyword
 * arguments), over the Jinja subset of chat_jinja.c. */
#define _POSIX_C_SOURCE 200809L
#include "flashgpt/chat.h"

#include "chat_jinja.h"
#include "check.h"
#include "input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { PATH_CAP = 4096, MAX_CONFIG = 64 << 20, MAX_TEMPLATE = 4 << 20 };

/* transformers' SPECIAL_TOKENS_ATTRIBUTES, the names the template sees */
static const char *const SPECIAL[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                      "pad_token", "cls_token", "mask_token"};
enum { N_SPECIAL = (int)(sizeof SPECIAL / sizeof SPECIAL[0]) };

struct fg_chat_template {
    fgi_jinja *jinja;
    fgi_jinja *tool_use; /* a list's "tool_use" template: used when tools are given */
    char *special[N_SPECIAL]; /* NULL: not defined */
};

static fg_status set_special(fg_chat_template *t, int i, const char *value)
{
    if (value == NULL) return FG_OK;
    t->special[i] = strdup(value);
    return t->special[i] ? FG_OK : fgi_fail(FG_ERR_OOM, "chat template: out of memory");
}

fg_status fg_chat_template_create(fg_chat_template **tmpl, const char *source, size_t len,
                                  const char *bos_token, const char *eos_token)
{
    static const char fn[] = "fg_chat_template_create";
    FGI_TRY(fgi_check_ptr(fn, "tmpl", tmpl));
    *tmpl = NULL;
    FGI_TRY(fgi_check_ptr(fn, "source", source));
    fg_chat_template *t = calloc(1, sizeof *t);
    if (t == NULL) return fgi_fail(FG_ERR_OOM, "%s: out of memory", fn);
    fg_status st = fgi_jinja_parse(&t->jinja, source, len);
    if (st == FG_OK) st = set_special(t, 0, bos_token);
    if (st == FG_OK) st = set_special(t, 1, eos_token);
    if (st != FG_OK) {
        fg_chat_template_destroy(t);
        return st;
    }
    *tmpl = t;
    return FG_OK;
}

void fg_chat_template_destroy(fg_chat_template *tmpl)
{
    if (tmpl == NULL) return;
    fgi_jinja_free(tmpl->jinja);
    fgi_jinja_free(tmpl->tool_use);
    for (int i = 0; i < N_SPECIAL; i++) free(tmpl->special[i]);
    free(tmpl);
}

const char *fg_chat_template_eos(const fg_chat_template *tmpl)
{
    if (tmpl == NULL) return NULL;
    return tmpl->special[1] ? tmpl->special[1] : "";
}

/* --- loading ---------------------------------------------------------------------- */

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static fg_status join_path(const char *fn, char *buf, const char *folder, const char *name)
{
    const int n = snprintf(buf, PATH_CAP, "%s/%s", folder, name);
    if (n < 0 || n >= PATH_CAP)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: path too long: %s/%s", fn, FGI_QUOTE(folder), name);
    return FG_OK;
}

/* A special token's text: a string, or an AddedToken object's "content". */
static const char *token_text(const cJSON *v)
{
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsObject(v) && cJSON_IsString(content) ? content->valuestring : NULL;
}

static fg_status parse_json_file(const char *fn, const char *path, cJSON **root)
{
    char *text = NULL;
    size_t len = 0;
    FGI_TRY(fgi_load_input(fn, path, MAX_CONFIG, "a tokenizer config", &text, &len));
    *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (*root == NULL || !cJSON_IsObject(*root)) {
        cJSON_Delete(*root);
        *root = NULL;
        return fgi_fail(FG_ERR_FORMAT, "%s: %s is not a JSON object", fn, FGI_QUOTE(path));
    }
    return FG_OK;
}

/* "chat_template" of tokenizer_config.json: a string, or the template
 * named "default" of a list of {name, template} (and *tool_use the one
 * named "tool_use", which transformers picks when tools are given). */
static fg_status template_of_config(const char *fn, const char *path, const cJSON *v,
                                    const char **source, const char **tool_use)
{
    *tool_use = NULL;
    if (cJSON_IsString(v)) {
        *source = v->valuestring;
        return FG_OK;
    }
    if (cJSON_IsArray(v)) {
        for (const cJSON *e = v->child; e; e = e->next) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (!cJSON_IsString(name) || !cJSON_IsString(tmpl))
                return fgi_fail(FG_ERR_FORMAT,
                                "%s: %s: chat_template list items need \"name\" and \"template\" strings",
                                fn, FGI_QUOTE(path));
            if (strcmp(name->valuestring, "default") == 0) *source = tmpl->valuestring;
            if (strcmp(name->valuestring, "tool_use") == 0) *tool_use = tmpl->valuestring;
        }
        if (*source) return FG_OK;
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: %s: chat_template lists no template named \"default\"",
                        fn, FGI_QUOTE(path));
    }
    return fgi_fail(FG_ERR_FORMAT, "%s: %s: chat_template must be a string or a list", fn,
                    FGI_QUOTE(path));
}

fg_status fg_chat_template_load(fg_chat_template **tmpl, const char *path)
{
    static const char fn[] = "fg_chat_template_load";
    FGI_TRY(fgi_check_ptr(fn, "tmpl", tmpl));
    *tmpl = NULL;
    FGI_TRY(fgi_check_ptr(fn, "path", path));
    char folder[PATH_CAP], config[PATH_CAP], jinja[PATH_CAP];
    if (snprintf(folder, sizeof folder, "%s", path) >= (int)sizeof folder)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: path too long: %s", fn, FGI_QUOTE(path));
    if (!is_dir(folder)) {
        char *slash = strrchr(folder, '/');
        if (slash) *slash = '\0';
        else snprintf(folder, sizeof folder, ".");
    }
    FGI_TRY(join_path(fn, config, folder, "tokenizer_config.json"));
    FGI_TRY(join_path(fn, jinja, folder, "chat_template.jinja"));

    cJSON *root = NULL;
    if (exists(config)) FGI_TRY(parse_json_file(fn, config, &root));
    char *file_source = NULL;
    size_t file_len = 0;
    const char *source = NULL, *tool_use = NULL;
    fg_status st = FG_OK;
    if (exists(jinja)) { /* transformers 5: the file wins over the config key */
        st = fgi_load_input(fn, jinja, MAX_TEMPLATE, "a chat template", &file_source, &file_len);
        source = file_source;
    } else {
        const cJSON *v = root ? cJSON_GetObjectItemCaseSensitive(root, "chat_template") : NULL;
        if (v == NULL || cJSON_IsNull(v))
            st = fgi_fail(FG_ERR_IO, "no chat template in %s (looked for chat_template.jinja and "
                          "\"chat_template\" in tokenizer_config.json)", FGI_QUOTE(folder));
        else
            st = template_of_config(fn, config, v, &source, &tool_use);
        if (st == FG_OK) file_len = strlen(source);
    }
    fg_chat_template *t = NULL;
    if (st == FG_OK) st = fg_chat_template_create(&t, source, file_len, NULL, NULL);
    if (st == FG_OK && tool_use) st = fgi_jinja_parse(&t->tool_use, tool_use, strlen(tool_use));
    for (int i = 0; st == FG_OK && root && i < N_SPECIAL; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, SPECIAL[i]);
        if (v == NULL || cJSON_IsNull(v)) continue;
        const char *text = token_text(v);
        if (text == NULL)
            st = fgi_fail(FG_ERR_FORMAT, "%s: %s: %s must be a string or an object with a \"content\" string",
                          fn, FGI_QUOTE(config), SPECIAL[i]);
        else
            st = set_special(t, i, text);
    }
    /* transformers' legacy rule: without "added_tokens_decoder" in the
     * config, special_tokens_map.json's tokens override the config's */
    char map_path[PATH_CAP];
    cJSON *map = NULL;
    if (st == FG_OK && !(root && cJSON_HasObjectItem(root, "added_tokens_decoder")))
        st = join_path(fn, map_path, folder, "special_tokens_map.json");
    if (st == FG_OK && !(root && cJSON_HasObjectItem(root, "added_tokens_decoder")) && exists(map_path))
        st = parse_json_file(fn, map_path, &map);
    for (int i = 0; st == FG_OK && map && i < N_SPECIAL; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(map, SPECIAL[i]);
        if (v == NULL || cJSON_IsNull(v)) continue;
        const char *text = token_text(v);
        if (text == NULL) {
            st = fgi_fail(FG_ERR_FORMAT, "%s: %s: %s must be a string or an object with a \"content\" string",
                          fn, FGI_QUOTE(map_path), SPECIAL[i]);
            break;
        }
        free(t->special[i]);
        t->special[i] = NULL;
        st = set_special(t, i, text);
    }
    cJSON_Delete(map);
    free(file_source);
    cJSON_Delete(root);
    if (st != FG_OK) {
        fg_chat_template_destroy(t);
        return st;
    }
    *tmpl = t;
    return FG_OK;
}

/* --- rendering -------------------------------------------------------------------- */

/* The variables of a render: special tokens, then the caller's keyword
 * variables, then messages, tools, documents and add_generation_prompt
 * (transformers passes those last, so they win). Takes messages. */
static fg_status render_vars(const char *fn, const fg_chat_template *t, cJSON *messages,
                             const cJSON *kwargs, int add_generation_prompt, char *out, size_t cap,
                             size_t *len)
{
    cJSON *vars = cJSON_CreateObject();
    fg_status st = vars ? FG_OK : fgi_fail(FG_ERR_OOM, "%s: out of memory", fn);
    for (int i = 0; st == FG_OK && i < N_SPECIAL; i++)
        if (t->special[i] && !cJSON_AddStringToObject(vars, SPECIAL[i], t->special[i]))
            st = fgi_fail(FG_ERR_OOM, "%s: out of memory", fn);
    for (const cJSON *e = kwargs ? kwargs->child : NULL; st == FG_OK && e; e = e->next) {
        if (strcmp(e->string, "messages") == 0 || strcmp(e->string, "add_generation_prompt") == 0)
            continue;
        cJSON *copy = cJSON_Duplicate(e, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(vars, e->string);
        if (copy == NULL || !cJSON_AddItemToObject(vars, e->string, copy)) {
            cJSON_Delete(copy);
            st = fgi_fail(FG_ERR_OOM, "%s: out of memory", fn);
        }
    }
    if (st == FG_OK) {
        if (!cJSON_AddItemToObject(vars, "messages", messages)) st = fgi_fail(FG_ERR_OOM, "%s: out of memory", fn);
        messages = NULL;
    }
    /* tools and documents: none unless given */
    if (st == FG_OK && !cJSON_HasObjectItem(vars, "tools") && !cJSON_AddNullToObject(vars, "tools"))
        st = fgi_fail(FG_ERR_OOM, "%s: out of memory", fn);
    if (st == FG_OK && !cJSON_HasObjectItem(vars, "documents") && !cJSON_AddNullToObject(vars, "documents"))
        st = fgi_fail(FG_ERR_OOM, "%s: out of memory", fn);
    if (st == FG_OK && !cJSON_AddBoolToObject(vars, "add_generation_prompt", add_generation_prompt != 0))
        st = fgi_fail(FG_ERR_OOM, "%s: out of memory", fn);
    cJSON_Delete(messages);
    char *text = NULL;
    size_t n = 0;
    /* transformers renders a list's "tool_use" template when tools are given */
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(vars, "tools");
    const fgi_jinja *which = t->tool_use && tools && !cJSON_IsNull(tools) ? t->tool_use : t->jinja;
    if (st == FG_OK) st = fgi_jinja_render(which, vars, &text, &n);
    cJSON_Delete(vars);
    if (st != FG_OK) return st;
    *len = n;
    if (n > cap) st = fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'cap' is %zu, the text needs %zu bytes", fn, cap, n);
    else if (n > 0) memcpy(out, text, n);
    free(text);
    return st;
}

/* A message as transformers normalises it: keys whose value is null are
 * dropped; reasoning under its other names is copied to "thinking" (first)
 * and "reasoning_content". Takes msg; returns the new object or NULL. */
static cJSON *normalise(cJSON *msg)
{
    if (msg == NULL) return NULL;
    cJSON *out = cJSON_CreateObject();
    if (out == NULL) {
        cJSON_Delete(msg);
        return NULL;
    }
    static const char *const reasoning_keys[] = {"reasoning_content", "thinking", "reasoning"};
    const cJSON *reasoning = NULL;
    for (int i = 0; i < 3 && reasoning == NULL; i++) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(msg, reasoning_keys[i]);
        if (r && !cJSON_IsNull(r)) reasoning = r;
    }
    int ok = 1;
    if (reasoning) ok = cJSON_AddItemToObject(out, "thinking", cJSON_Duplicate(reasoning, 1));
    for (const cJSON *e = msg->child; ok && e; e = e->next) {
        if (cJSON_IsNull(e)) continue;
        const cJSON *v = reasoning && strcmp(e->string, "reasoning_content") == 0 ? reasoning : e;
        if (reasoning && strcmp(e->string, "thinking") == 0) { /* keeps the first place */
            ok = cJSON_ReplaceItemInObjectCaseSensitive(out, "thinking", cJSON_Duplicate(e, 1));
            continue;
        }
        ok = cJSON_AddItemToObject(out, e->string, cJSON_Duplicate(v, 1));
    }
    if (ok && reasoning && !cJSON_HasObjectItem(out, "reasoning_content"))
        ok = cJSON_AddItemToObject(out, "reasoning_content", cJSON_Duplicate(reasoning, 1));
    cJSON_Delete(msg);
    if (!ok) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

static fg_status check_render(const char *fn, const fg_chat_template *t, char *out, size_t cap,
                              const size_t *len)
{
    FGI_TRY(fgi_check_ptr(fn, "tmpl", t));
    FGI_TRY(fgi_check_ptr(fn, "len", len));
    if (cap > 0) FGI_TRY(fgi_check_ptr(fn, "out", out));
    return FG_OK;
}

fg_status fg_chat_render(const fg_chat_template *tmpl, const fg_chat_message *messages,
                         int n_messages, int add_generation_prompt, char *out, size_t cap,
                         size_t *len)
{
    static const char fn[] = "fg_chat_render";
    FGI_TRY(check_render(fn, tmpl, out, cap, len));
    FGI_TRY(fgi_check_min(fn, "n_messages", n_messages, 0));
    if (n_messages > 0) FGI_TRY(fgi_check_ptr(fn, "messages", messages));
    for (int i = 0; i < n_messages; i++)
        if (messages[i].role == NULL || messages[i].content == NULL)
            return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'messages' has a NULL %s at index %d", fn,
                            messages[i].role ? "content" : "role", i);
    cJSON *list = cJSON_CreateArray();
    int ok = list != NULL;
    for (int i = 0; ok && i < n_messages; i++) {
        cJSON *m = cJSON_CreateObject();
        ok = m && cJSON_AddStringToObject(m, "role", messages[i].role) &&
             cJSON_AddStringToObject(m, "content", messages[i].content);
        if (m && !cJSON_AddItemToArray(list, m)) {
            cJSON_Delete(m);
            ok = 0;
        }
    }
    if (!ok) {
        cJSON_Delete(list);
        return fgi_fail(FG_ERR_OOM, "%s: out of memory", fn);
    }
    return render_vars(fn, tmpl, list, NULL, add_generation_prompt, out, cap, len);
}

fg_status fg_chat_render_json(const fg_chat_template *tmpl, const char *json, size_t json_len,
                              int add_generation_prompt, char *out, size_t cap, size_t *len)
{
    static const char fn[] = "fg_chat_render_json";
    FGI_TRY(check_render(fn, tmpl, out, cap, len));
    FGI_TRY(fgi_check_ptr(fn, "json", json));
    cJSON *root = cJSON_ParseWithLength(json, json_len);
    if (root == NULL) return fgi_fail(FG_ERR_FORMAT, "%s: the messages are not valid JSON", fn);
    const cJSON *kwargs = NULL;
    cJSON *list = root;
    if (cJSON_IsObject(root)) {
        kwargs = root;
        list = cJSON_GetObjectItemCaseSensitive(root, "messages");
    }
    if (!cJSON_IsArray(list)) {
        cJSON_Delete(root);
        return fgi_fail(FG_ERR_FORMAT, "%s: expected a list of messages, or an object with a "
                        "\"messages\" list", fn);
    }
    cJSON *messages = cJSON_CreateArray();
    fg_status st = messages ? FG_OK : fgi_fail(FG_ERR_OOM, "%s: out of memory", fn);
    int i = 0;
    for (const cJSON *m = list->child; st == FG_OK && m; m = m->next, i++) {
        if (!cJSON_IsObject(m)) {
            st = fgi_fail(FG_ERR_FORMAT, "%s: message %d is not an object", fn, i);
            break;
        }
        cJSON *norm = normalise(cJSON_Duplicate(m, 1));
        if (norm == NULL || !cJSON_AddItemToArray(messages, norm)) {
            cJSON_Delete(norm);
            st = fgi_fail(FG_ERR_OOM, "%s: out of memory", fn);
        }
    }
    if (st == FG_OK) st = render_vars(fn, tmpl, messages, kwargs, add_generation_prompt, out, cap, len);
    else cJSON_Delete(messages);
    cJSON_Delete(root);
    return st;
}
