/* Option parsing for the flashgpt verbs: --name VALUE, --name=VALUE,
 * -x VALUE, flags, and --help, with full validation of numbers: counts and
 * seeds are plain decimal digits within their range, floats finite. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_usage_error(const char *verb, const char *fmt, ...)
{
    /* messages echo arguments: escaped, they cannot split the line or send
     * escape sequences to the terminal */
    char raw[1024], safe[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    fprintf(stderr, "flashgpt %s: %s\nTry 'flashgpt %s --help'.\n", verb,
            fg_escape_text(safe, sizeof safe, raw), verb);
    return CLI_USAGE_ERROR;
}

int cli_runtime_error(const char *verb, const char *what)
{
    fprintf(stderr, "flashgpt %s: %s: %s\n", verb, what, cli_error_message());
    return CLI_RUNTIME_ERROR;
}

void cli_print_help(const cli_command *cmd)
{
    printf("usage: flashgpt %s %s\n\n%s\n\noptions:\n", cmd->verb, cmd->synopsis,
           cmd->description);
    for (int i = 0; i < cmd->n_options; i++) {
        const cli_option *o = &cmd->options[i];
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name,
                     o->metavar ? " " : "", o->metavar ? o->metavar : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
        printf("  %-28s %s\n", left, o->help);
    }
    printf("  %-28s %s\n", "-h, --help", "show this help and exit");
}

int cli_parse_decimal(const char *text, uint64_t max, uint64_t *value)
{
    /* Digits only: no sign, no space, no base prefix (strtoull's base 0 read
     * "010" as 8 and refused "08"; its sign handling wraps "-5" around). */
    uint64_t v = 0;
    if (*text == '\0') return -1;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        const uint64_t digit = (uint64_t)(*p - '0');
        if (v > (max - digit) / 10) return -1;
        v = v * 10 + digit;
    }
    *value = v;
    return 0;
}

static int parse_value(const cli_command *cmd, const cli_option *o, const char *text)
{
    char *end = NULL;
    uint64_t v;
    errno = 0;
    switch (o->kind) {
    case OPT_STRING:
        *(const char **)o->target = text;
        return CLI_OK;
    case OPT_INT:
        if (cli_parse_decimal(text, INT_MAX, &v) != 0)
            return cli_usage_error(cmd->verb, "--%s needs a decimal integer in [0, %d] (got '%s')",
                                   o->name, INT_MAX, text);
        *(int *)o->target = (int)v;
        return CLI_OK;
    case OPT_FLOAT: {
        /* strtof reports ERANGE for subnormal results too: those are numbers
         * (the smallest positive temperature or top-p is valid); only a
         * result that overflowed, or a nonzero text that rounded to zero, is
         * out of range. */
        float f = strtof(text, &end);
        const int range = errno == ERANGE && (isinf(f) || f == 0.0f);
        if (*text == '\0' || isspace((unsigned char)*text) || *end != '\0' || range ||
            !isfinite(f))
            return cli_usage_error(cmd->verb, "--%s needs a finite number within float range "
                                   "(got '%s')", o->name, text);
        *(float *)o->target = f;
        return CLI_OK;
    }
    case OPT_U64:
        if (cli_parse_decimal(text, UINT64_MAX, &v) != 0)
            return cli_usage_error(cmd->verb, "--%s needs a decimal integer in [0, %llu] (got '%s')",
                                   o->name, (unsigned long long)UINT64_MAX, text);
        *(uint64_t *)o->target = v;
        return CLI_OK;
    case OPT_STRINGS: {
        cli_strings *list = o->target;
        if (list->n == CLI_MAX_STRINGS)
            return cli_usage_error(cmd->verb, "--%s may be given at most %d times", o->name,
                                   CLI_MAX_STRINGS);
        list->items[list->n++] = text;
        return CLI_OK;
    }
    case OPT_FLAG:
        break;
    }
    return cli_usage_error(cmd->verb, "--%s takes no value", o->name);
}

static const cli_option *find_option(const cli_command *cmd, const char *arg,
                                     const char **inline_value)
{
    *inline_value = NULL;
    if (arg[1] != '-') { /* -x */
        if (arg[2] != '\0') return NULL;
        for (int i = 0; i < cmd->n_options; i++)
            if (cmd->options[i].short_name && cmd->options[i].short_name == arg[1])
                return &cmd->options[i];
        return NULL;
    }
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    for (int i = 0; i < cmd->n_options; i++)
        if (strlen(cmd->options[i].name) == len && strncmp(cmd->options[i].name, name, len) == 0) {
            if (eq) *inline_value = eq + 1;
            return &cmd->options[i];
        }
    return NULL;
}

int cli_parse(const cli_command *cmd, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            cli_print_help(cmd);
            return CLI_HELP_SHOWN;
        }
        if (arg[0] != '-' || arg[1] == '\0')
            return cli_usage_error(cmd->verb, "unexpected argument '%s'", arg);
        const char *value;
        const cli_option *o = find_option(cmd, arg, &value);
        if (o == NULL) return cli_usage_error(cmd->verb, "unknown option '%s'", arg);
        if (o->kind == OPT_FLAG) {
            if (value) return cli_usage_error(cmd->verb, "--%s takes no value", o->name);
            *(int *)o->target = 1;
            continue;
        }
        if (value == NULL) {
            if (i + 1 >= argc) return cli_usage_error(cmd->verb, "%s needs a value", arg);
            value = argv[++i];
        }
        int rc = parse_value(cmd, o, value);
        if (rc != CLI_OK) return rc;
    }
    return CLI_OK;
}

int cli_parse_device(const char *verb, const char *name, fg_device *device)
{
    if (fg_device_parse(name, device) != FG_OK)
        return cli_usage_error(verb, "--device must be auto, cpu, cuda or ref (got '%s')", name);
    return CLI_OK;
}

int cli_parse_dtype(const char *verb, const char *name, fg_dtype *dtype)
{
    if (fg_session_dtype_parse(name, dtype) != FG_OK)
        return cli_usage_error(verb, "--dtype must be auto, f32, bf16 or f16 (got '%s')", name);
    return CLI_OK;
}

int cli_check_dtype(const char *verb, fg_device device, fg_dtype dtype)
{
    if (dtype == FG_DTYPE_AUTO || dtype == FG_DTYPE_F32) return CLI_OK;
    const int on_gpu = device == FG_DEVICE_CUDA ||
                       (device == FG_DEVICE_AUTO && fg_cuda_available());
    if (on_gpu) {
        /* the card first, before the model is even mapped: a 16-bit type
         * needs sm_80 whatever the model (a head_dim every 16-bit kernel
         * has stands in for it; the session checks the model's own) */
        const fg_config probe = fg_config_llama(1, 64, 1, 1, 64, 2, 2);
        if (!fg_cuda_available() || fg_cuda_decoder_dtype_supported(&probe, dtype)) return CLI_OK;
        char name[128] = "the GPU";
        int sms = 0;
        size_t total = 0;
        if (fg_cuda_device_info(name, sizeof name, &sms, &total) != FG_OK)
            snprintf(name, sizeof name, "the GPU");
        fprintf(stderr, "flashgpt %s: --dtype %s cannot run on %s: 16-bit needs compute "
                "capability 8.0 or later (use --dtype f32 or auto)\n", verb, fg_dtype_name(dtype),
                name);
        return CLI_RUNTIME_ERROR;
    }
    fprintf(stderr, "flashgpt %s: --dtype %s runs on the cuda device only; the %s device "
            "computes in f32 (use --dtype f32 or auto)\n", verb, fg_dtype_name(dtype),
            device == FG_DEVICE_REF ? "ref" : "cpu");
    return CLI_RUNTIME_ERROR;
}

int cli_apply_threads(const char *verb, fg_session *s, int n_threads)
{
    if (fg_session_set_threads(s, n_threads) != FG_OK)
        return cli_runtime_error(verb, "cannot set the thread count");
    return CLI_OK;
}
