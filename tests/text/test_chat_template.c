/* Chat templates (flashgpt/chat.h) against transformers: every family's
 * folder of tests/text/chat rendered over every conversation, with and
 * without the generation prompt, byte for byte as apply_chat_template
 * rendered it (tests/text/chat/gen_chat_goldens.py); each Jinja feature
 * alone against jinja2 in transformers' environment; and what the subset
 * refuses. Public headers only. */
#define _POSIX_C_SOURCE 200809L
#include "support.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *slurp_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

static cJSON *load_json(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/text/chat/%s", FG_SOURCE_DIR, name);
    char *text = slurp_file(path, NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(root, "%s is not JSON", path);
    return root;
}

/* expected with @@TODAY@@ replaced by today's "%d %b %Y" (strftime_now) */
static char *with_today(const char *expected)
{
    char today[64];
    const time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(today, sizeof today, "%d %b %Y", &tm);
    char *out = malloc(strlen(expected) + 64);
    cr_assert_not_null(out);
    const char *at = strstr(expected, "@@TODAY@@");
    if (at == NULL) strcpy(out, expected);
    else sprintf(out, "%.*s%s%s", (int)(at - expected), expected, today, at + 9);
    return out;
}

/* Renders json and compares with the expected text or error. */
static void check_render(const fg_chat_template *t, const char *json, int gen, const cJSON *want,
                         const char *what)
{
    size_t len = 0;
    fg_status st = fg_chat_render_json(t, json, strlen(json), gen, NULL, 0, &len);
    if (cJSON_IsObject(want)) {
        const cJSON *err = cJSON_GetObjectItem(want, "error");
        cr_assert_eq(st, FG_ERR_INVALID_ARG, "%s: expected the error \"%s\", got status %d (%s)", what,
                     err->valuestring, st, fg_last_error());
        if (cJSON_IsTrue(cJSON_GetObjectItem(want, "raised"))) /* the template's own words */
            cr_assert(strstr(fg_last_error(), err->valuestring) != NULL, "%s: error \"%s\" does not hold \"%s\"",
                      what, fg_last_error(), err->valuestring);
        return;
    }
    char *expected = with_today(want->valuestring);
    const size_t n = strlen(expected);
    if (n == 0) cr_assert_eq(st, FG_OK, "%s: %s", what, fg_last_error());
    else cr_assert_eq(st, n > 0 ? FG_ERR_INVALID_ARG : FG_OK, "%s: sizing call: %s", what, fg_last_error());
    cr_assert_eq(len, n, "%s: %zu bytes, want %zu", what, len, n);
    char *out = malloc(n + 2);
    out[n] = 'X'; /* nothing written past the text */
    cr_assert_eq(fg_chat_render_json(t, json, strlen(json), gen, out, n, &len), FG_OK, "%s: %s", what,
                 fg_last_error());
    cr_assert_eq(out[n], 'X');
    out[n] = '\0';
    cr_assert(memcmp(out, expected, n) == 0, "%s:\n--- got\n%s\n--- want\n%s\n---", what, out, expected);
    free(out);
    free(expected);
}

Test(chat, families_render_as_transformers)
{
    cJSON *convs = load_json("conversations.json"), *expected = load_json("expected.json");
    int n_checked = 0;
    for (const cJSON *fam = expected->child; fam; fam = fam->next) {
        if (fam->string[0] == '_') continue;
        char folder[1024];
        snprintf(folder, sizeof folder, "%s/tests/text/chat/%s", FG_SOURCE_DIR, fam->string);
        fg_chat_template *t = NULL;
        cr_assert_eq(fg_chat_template_load(&t, folder), FG_OK, "%s: %s", fam->string, fg_last_error());
        for (const cJSON *conv = fam->child; conv; conv = conv->next) {
            const cJSON *c = cJSON_GetObjectItem(convs, conv->string);
            cr_assert_not_null(c, "conversation %s", conv->string);
            char *json = cJSON_PrintUnformatted(c);
            char what[256];
            snprintf(what, sizeof what, "%s / %s / generation prompt", fam->string, conv->string);
            check_render(t, json, 1, cJSON_GetObjectItem(conv, "gen"), what);
            snprintf(what, sizeof what, "%s / %s / no generation prompt", fam->string, conv->string);
            check_render(t, json, 0, cJSON_GetObjectItem(conv, "nogen"), what);
            n_checked += 2;
            free(json);
        }
        fg_chat_template_destroy(t);
    }
    cr_assert_gt(n_checked, 200);
    cJSON_Delete(convs);
    cJSON_Delete(expected);
}

/* The struct API gives what the JSON one gives for plain messages. */
Test(chat, message_structs_equal_json)
{
    char folder[1024];
    snprintf(folder, sizeof folder, "%s/tests/text/chat/llama3.1", FG_SOURCE_DIR);
    fg_chat_template *t = NULL;
    cr_assert_eq(fg_chat_template_load(&t, folder), FG_OK, "%s", fg_last_error());
    cr_assert_str_eq(fg_chat_template_eos(t), "<|eot_id|>");
    const fg_chat_message msgs[] = {{"system", " S "}, {"user", "Hi\n"}, {"assistant", "Yo"}, {"user", "é"}};
    static const char json[] = "[{\"role\":\"system\",\"content\":\" S \"},{\"role\":\"user\",\"content\":"
                               "\"Hi\\n\"},{\"role\":\"assistant\",\"content\":\"Yo\"},{\"role\":\"user\","
                               "\"content\":\"é\"}]";
    static char a[4096], b[4096];
    size_t na = 0, nb = 0;
    for (int gen = 0; gen < 2; gen++) {
        cr_assert_eq(fg_chat_render(t, msgs, 4, gen, a, sizeof a, &na), FG_OK, "%s", fg_last_error());
        cr_assert_eq(fg_chat_render_json(t, json, sizeof json - 1, gen, b, sizeof b, &nb), FG_OK, "%s",
                     fg_last_error());
        cr_assert(na == nb && memcmp(a, b, na) == 0);
    }
    /* bad arguments are refused and write nothing */
    memset(a, 'Z', 8);
    fgi_assert_status(fg_chat_render(t, msgs, 4, 1, a, 3, &na), FG_ERR_INVALID_ARG, "cap");
    cr_assert(a[0] == 'Z' && na == nb);
    fgi_assert_status(fg_chat_render(NULL, msgs, 4, 1, a, 3, &na), FG_ERR_INVALID_ARG, "tmpl");
    fgi_assert_status(fg_chat_render(t, NULL, 4, 1, a, 3, &na), FG_ERR_INVALID_ARG, "messages");
    fgi_assert_status(fg_chat_render(t, msgs, -1, 1, a, 3, &na), FG_ERR_INVALID_ARG, "n_messages");
    fgi_assert_status(fg_chat_render(t, msgs, 4, 1, NULL, 3, &na), FG_ERR_INVALID_ARG, "out");
    fgi_assert_status(fg_chat_render(t, msgs, 4, 1, a, 3, NULL), FG_ERR_INVALID_ARG, "len");
    const fg_chat_message bad[] = {{"user", NULL}};
    fgi_assert_status(fg_chat_render(t, bad, 1, 1, a, 3, &na), FG_ERR_INVALID_ARG, "content");
    fgi_assert_status(fg_chat_render_json(t, "[1]", 3, 1, a, 3, &na), FG_ERR_FORMAT, "message 0");
    fgi_assert_status(fg_chat_render_json(t, "{\"x\": 1}", 8, 1, a, 3, &na), FG_ERR_FORMAT, "messages");
    fgi_assert_status(fg_chat_render_json(t, "[", 1, 1, a, 3, &na), FG_ERR_FORMAT, "JSON");
    cr_assert(a[0] == 'Z');
    fg_chat_template_destroy(t);
    fg_chat_template_destroy(NULL);
    cr_assert_null(fg_chat_template_eos(NULL));
}

/* Each Jinja feature alone, against jinja2 in transformers' environment. */
Test(chat, jinja_features_render_as_jinja2)
{
    cJSON *cases = load_json("jinja_cases.json"), *expected = load_json("expected.json");
    const cJSON *want_all = cJSON_GetObjectItem(expected, "_jinja_cases");
    int n = 0;
    for (const cJSON *cs = cases->child; cs; cs = cs->next, n++) {
        const char *src = cJSON_GetArrayItem(cs, 0)->valuestring;
        const cJSON *vars = cJSON_GetArrayItem(cs, 1), *want = cJSON_GetObjectItem(want_all, cs->string);
        cr_assert_not_null(want, "no golden for %s", cs->string);
        fg_chat_template *t = NULL;
        cr_assert_eq(fg_chat_template_create(&t, src, strlen(src), NULL, NULL), FG_OK, "%s: %s",
                     cs->string, fg_last_error());
        /* the variables ride as keyword variables beside an empty message list */
        cJSON *obj = cJSON_Duplicate(vars, 1);
        cJSON_AddItemToObject(obj, "messages", cJSON_CreateArray());
        char *json = cJSON_PrintUnformatted(obj);
        size_t len = 0;
        static char out[1 << 16];
        const fg_status st = fg_chat_render_json(t, json, strlen(json), 0, out, sizeof out - 1, &len);
        if (cJSON_IsObject(want)) {
            cr_assert_eq(st, FG_ERR_INVALID_ARG, "%s: expected an error (%s), got %d", cs->string,
                         cJSON_GetObjectItem(want, "error")->valuestring, st);
            if (cJSON_IsTrue(cJSON_GetObjectItem(want, "raised")))
                cr_assert(strstr(fg_last_error(), cJSON_GetObjectItem(want, "error")->valuestring) != NULL,
                          "%s: %s", cs->string, fg_last_error());
        } else {
            cr_assert_eq(st, FG_OK, "%s: %s", cs->string, fg_last_error());
            out[len] = '\0';
            cr_assert(len == strlen(want->valuestring) && memcmp(out, want->valuestring, len) == 0,
                      "%s:\n--- got\n%s\n--- want\n%s\n---", cs->string, out, want->valuestring);
        }
        free(json);
        cJSON_Delete(obj);
        fg_chat_template_destroy(t);
    }
    cr_assert_gt(n, 30);
    cJSON_Delete(cases);
    cJSON_Delete(expected);
}

/* What the subset does not implement is refused with its name, when the
 * template is parsed or, for what depends on values, when it renders. */
Test(chat, unsupported_and_malformed_templates_are_refused)
{
    static const struct {
        const char *src;
        fg_status st;
        const char *needle;
    } parse_fail[] = {
        {"{% include 'x.jinja' %}", FG_ERR_UNSUPPORTED, "'include'"},
        {"{% extends 'base' %}", FG_ERR_UNSUPPORTED, "'extends'"},
        {"{{ x | wordwrap }}", FG_ERR_UNSUPPORTED, "'wordwrap'"},
        {"{% raw %}{{ x }}{% endraw %}", FG_ERR_UNSUPPORTED, "'raw'"},
        {"{{ x is escaped }}", FG_ERR_UNSUPPORTED, "'escaped'"},
        {"{% for x in y recursive %}{% endfor %}", FG_ERR_UNSUPPORTED, "recursive"},
        {"{% filter upper %}x{% endfilter %}", FG_ERR_UNSUPPORTED, "'filter'"},
        {"{% if x %}", FG_ERR_FORMAT, "endif"},
        {"{{ (1 }}", FG_ERR_FORMAT, "line 1"},
        {"a\n{{ 1 + }}", FG_ERR_FORMAT, "line 2"},
        {"{% endfor %}", FG_ERR_FORMAT, "endfor"},
        {"{{ 'abc }}", FG_ERR_FORMAT, "string"},
        {"{# never closed", FG_ERR_FORMAT, "comment"},
        {"{{ x ]}}", FG_ERR_FORMAT, "]"},
        {"{{ 99999999999999999999 }}", FG_ERR_UNSUPPORTED, "64 bits"},
    };
    for (size_t i = 0; i < sizeof parse_fail / sizeof parse_fail[0]; i++) {
        fg_chat_template *t = (fg_chat_template *)1;
        fgi_assert_status(fg_chat_template_create(&t, parse_fail[i].src, strlen(parse_fail[i].src), NULL, NULL),
                          parse_fail[i].st, parse_fail[i].needle);
        cr_assert_null(t, "%s", parse_fail[i].src);
    }
    static const struct {
        const char *src;
        fg_status st;
        const char *needle;
    } render_fail[] = {
        {"{{ 'x'.format(1) }}", FG_ERR_UNSUPPORTED, "str.format"},
        {"{{ 'é' | upper }}", FG_ERR_UNSUPPORTED, "non-ASCII"},
        {"{{ [1].append(2) }}", FG_ERR_UNSUPPORTED, "list.append"},
        {"{{ lipsum() }}", FG_ERR_UNSUPPORTED, "lipsum"},
        {"{{ messages[0].role }}", FG_ERR_INVALID_ARG, "undefined"},
        {"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", FG_ERR_UNSUPPORTED, "deep"},
        {"{{ 'ab' * 100000000 }}", FG_ERR_UNSUPPORTED, "bytes"},
        {"{{ range(100000000) | length }}", FG_ERR_UNSUPPORTED, "range"},
        {"{{ 9223372036854775807 + 1 }}", FG_ERR_UNSUPPORTED, "64 bits"},
        {"{{ 1 / 0 }}", FG_ERR_INVALID_ARG, "division by zero"},
        {"{{ '%s!' % 1 }}", FG_ERR_UNSUPPORTED, "string formatting"},
        {"{{ raise_exception('no ' ~ 'way') }}", FG_ERR_INVALID_ARG, "no way"},
        {"{% set ns = namespace(a=1) %}{{ [ns] }}", FG_ERR_UNSUPPORTED, "namespace inside"},
        {"{% set ns = namespace(a=1) %}{% set ns.self = ns %}", FG_ERR_UNSUPPORTED, "namespace inside"},
        {"{% set ns = namespace(x=1) %}{% for i in range(300) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}",
         FG_ERR_UNSUPPORTED, "nested over"},
        {"{% set ns = namespace(s='abcd') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
         FG_ERR_UNSUPPORTED, "MiB"},

    };
    for (size_t i = 0; i < sizeof render_fail / sizeof render_fail[0]; i++) {
        fg_chat_template *t = NULL;
        cr_assert_eq(fg_chat_template_create(&t, render_fail[i].src, strlen(render_fail[i].src), NULL, NULL),
                     FG_OK, "%s: %s", render_fail[i].src, fg_last_error());
        size_t len = 7;
        char out[8] = "ZZZZZZZ";
        fgi_assert_status(fg_chat_render(t, NULL, 0, 1, out, sizeof out, &len), render_fail[i].st,
                          render_fail[i].needle);
        cr_assert(out[0] == 'Z', "%s: nothing written", render_fail[i].src);
        fg_chat_template_destroy(t);
    }
    /* a long loop of cheap statements ends at the step limit */
    static char busy[8192];
    strcpy(busy, "{% for i in range(100000) %}");
    for (int i = 0; i < 300; i++) strcat(busy, "{{ '' }}");
    strcat(busy, "{% endfor %}");
    fg_chat_template *t = NULL;
    cr_assert_eq(fg_chat_template_create(&t, busy, strlen(busy), NULL, NULL), FG_OK);
    size_t len = 0;
    fgi_assert_status(fg_chat_render(t, NULL, 0, 1, NULL, 0, &len), FG_ERR_UNSUPPORTED, "steps");
    fg_chat_template_destroy(t);
    t = NULL;
    fgi_assert_status(fg_chat_template_create(NULL, "", 0, NULL, NULL), FG_ERR_INVALID_ARG, "tmpl");
    fgi_assert_status(fg_chat_template_create(&t, NULL, 0, NULL, NULL), FG_ERR_INVALID_ARG, "source");
}

/* Finding the template: a folder without one, stories260K's folder, and a
 * file path inside a model folder. */
Test(chat, loading_names_what_is_missing)
{
    fg_chat_template *t = (fg_chat_template *)1;
    char folder[1024];
    snprintf(folder, sizeof folder, "%s/tests/text/chat/llama2/tokenizer.json", FG_SOURCE_DIR);
    cr_assert_eq(fg_chat_template_load(&t, folder), FG_OK, "a file: its folder: %s", fg_last_error());
    cr_assert_str_eq(fg_chat_template_eos(t), "</s>", "from an AddedToken object");
    fg_chat_template_destroy(t);
    snprintf(folder, sizeof folder, "%s/tests/text", FG_SOURCE_DIR);
    fgi_assert_status(fg_chat_template_load(&t, folder), FG_ERR_IO, "no chat template in");
    cr_assert_null(t);
    const char *stories = fgi_model_path("stories260K/stories260K.bin");
    if (stories) fgi_assert_status(fg_chat_template_load(&t, stories), FG_ERR_IO, "no chat template in");
    fgi_assert_status(fg_chat_template_load(NULL, folder), FG_ERR_INVALID_ARG, "tmpl");
    fgi_assert_status(fg_chat_template_load(&t, NULL), FG_ERR_INVALID_ARG, "path");
}
