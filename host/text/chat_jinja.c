/* A Jinja subset for chat templates, rendering as jinja2 3.1 does in the
 * environment transformers uses (trim_blocks, lstrip_blocks, no autoescape,
 * loop controls), so that flashgpt renders a model's prompt byte for byte
 * as apply_chat_template does.
 *
 * Design: the source is normalised (newlines to \n, the final newline
 * dropped) and lexed in one pass into text and tag tokens with Jinja's
 * whitespace rules applied to the text; a recursive-descent parser builds
 * an AST with Jinja's operator precedence, refusing every statement, filter
 * and test it does not know; the evaluator walks it over Python-like
 * values (str is UTF-8 bytes indexed by code point, dicts keep insertion
 * order) allocated in one arena per render and freed at once.
 * Scopes follow Jinja: a for-loop iteration and a macro call get a new
 * frame, `set` writes the innermost one, a macro sees its arguments and the
 * template's top level; namespace() objects carry state out of loops. */
#define _POSIX_C_SOURCE 200809L
#include "chat_jinja.h"

#include "check.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    MAX_DEPTH = 200,             /* nesting of expressions, statements and calls */
    MAX_OUTPUT = 64 << 20,       /* bytes a render may produce */
    MAX_RANGE = 1 << 20,         /* items range() may make */
};
/* A render's memory and work: a hostile template (e.g. a string doubled in
 * a long loop) stops with an error instead of exhausting the machine. */
#define MAX_RENDER_BYTES ((size_t)256 << 20)
#define MAX_STEPS 20000000L

/* --- arena --------------------------------------------------------------------- */

typedef struct ablock {
    struct ablock *next;
    size_t used, cap;
    max_align_t data[];
} ablock;

typedef struct {
    ablock *head;
    size_t total, limit; /* bytes taken from malloc; limit 0: none */
    int over;            /* the limit was reached */
} arena;

static void *arena_alloc(arena *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (a->head == NULL || a->head->cap - a->head->used < n) {
        const size_t cap = n > 65536 ? n : 65536;
        if (a->limit && a->total + cap > a->limit) {
            a->over = 1;
            return NULL;
        }
        ablock *b = malloc(sizeof *b + cap);
        if (b == NULL) return NULL;
        a->total += cap;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(arena *a)
{
    while (a->head) {
        ablock *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

/* --- errors -------------------------------------------------------------------- */

/* The first failure of a parse or render; later ones are consequences. */
typedef struct {
    fg_status st;
    arena *a;
} errs;

static const char FN[] = "chat template";

#define FAILF(e, status, line, ...) fail_at((e), (status), (line), __VA_ARGS__)

FGI_PRINTF(4, 5)
static void fail_at(errs *e, fg_status status, int line, const char *fmt, ...)
{
    if (e->st != FG_OK) return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0) e->st = fgi_fail(status, "%s line %d: %s", FN, line, msg);
    else e->st = fgi_fail(status, "%s: %s", FN, msg);
}

static void *alloc_or_fail(errs *e, size_t n)
{
    void *p = arena_alloc(e->a, n);
    if (p == NULL && e->st == FG_OK)
        e->st = e->a->over ? fgi_fail(FG_ERR_UNSUPPORTED, "%s: rendering needs over %zu MiB", FN,
                                      MAX_RENDER_BYTES >> 20)
                           : fgi_fail(FG_ERR_OOM, "%s: out of memory", FN);
    return p;
}

/* --- values -------------------------------------------------------------------- */

typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_FUNC } vkind;

typedef struct val val;
typedef struct node node;

typedef struct {
    const char *k;
    size_t kn;
    val *v;
} entry;

/* Built-in callables: globals and methods bound to a value. */
typedef enum { F_RAISE, F_STRFTIME, F_RANGE, F_NAMESPACE, F_DICT, F_METHOD, F_MACRO } fkind;

struct val {
    vkind kind;
    int ns;  /* a namespace() object: a dict whose members `set` may change */
    int tup; /* a V_LIST that is a Python tuple (prints with parentheses) */
    int frame; /* a V_DICT holding a scope's variables, not a value */
    int depth; /* nesting of lists and dicts below, bounded by MAX_DEPTH */
    long long i;
    double f;
    const char *s; /* V_STR bytes (UTF-8), V_UNDEF the name for messages, V_FUNC method */
    size_t n;
    val **items; /* V_LIST */
    int len, cap;
    entry *ents; /* V_DICT, insertion order */
    int nent, entcap;
    fkind fk;    /* V_FUNC */
    val *self;   /* method receiver */
    const node *macro;
};

static val UNDEF_VAL = {.kind = V_UNDEF, .s = ""};
static val NONE_VAL = {.kind = V_NONE};
static val TRUE_VAL = {.kind = V_BOOL, .i = 1};
static val FALSE_VAL = {.kind = V_BOOL, .i = 0};

static val *new_val(errs *e, vkind k)
{
    val *v = alloc_or_fail(e, sizeof *v);
    if (v) v->kind = k;
    return v;
}

static val *mk_bool(int b) { return b ? &TRUE_VAL : &FALSE_VAL; }

static val *mk_int(errs *e, long long i)
{
    val *v = new_val(e, V_INT);
    if (v) v->i = i;
    return v;
}

static val *mk_float(errs *e, double f)
{
    val *v = new_val(e, V_FLOAT);
    if (v) v->f = f;
    return v;
}

static val *mk_str(errs *e, const char *s, size_t n)
{
    val *v = new_val(e, V_STR);
    char *copy = alloc_or_fail(e, n + 1);
    if (v == NULL || copy == NULL) return NULL;
    memcpy(copy, s, n);
    v->s = copy;
    v->n = n;
    return v;
}

static val *mk_undef(errs *e, const char *name)
{
    val *v = new_val(e, V_UNDEF);
    if (v) v->s = name;
    return v;
}

/* Containers are built once and never change afterwards, except
 * namespaces, which may not be put in a container: so values hold no
 * cycle, and their nesting (checked here) bounds every walk over them. */
static int may_contain(errs *e, val *c, const val *x)
{
    if (c->frame) return 0;
    if (x->ns) {
        FAILF(e, FG_ERR_UNSUPPORTED, 0, "a namespace inside a list or dict");
        return -1;
    }
    if (x->depth + 1 > c->depth) c->depth = x->depth + 1;
    if (c->depth > MAX_DEPTH) {
        FAILF(e, FG_ERR_UNSUPPORTED, 0, "values nested over %d deep", MAX_DEPTH);
        return -1;
    }
    return 0;
}

static int list_push(errs *e, val *l, val *x)
{
    if (x == NULL || may_contain(e, l, x) != 0) return -1;
    if (l->len == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 8;
        val **items = alloc_or_fail(e, sizeof *items * (size_t)cap);
        if (items == NULL) return -1;
        if (l->len) memcpy(items, l->items, sizeof *items * (size_t)l->len);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->len++] = x;
    return 0;
}

static val *dict_get(const val *d, const char *k, size_t kn)
{
    for (int i = 0; i < d->nent; i++)
        if (d->ents[i].kn == kn && memcmp(d->ents[i].k, k, kn) == 0) return d->ents[i].v;
    return NULL;
}

/* Sets k (copied) to x, keeping the position of an existing key. */
static int dict_set(errs *e, val *d, const char *k, size_t kn, val *x)
{
    if (x == NULL || may_contain(e, d, x) != 0) return -1;
    for (int i = 0; i < d->nent; i++)
        if (d->ents[i].kn == kn && memcmp(d->ents[i].k, k, kn) == 0) {
            d->ents[i].v = x;
            return 0;
        }
    if (d->nent == d->entcap) {
        const int cap = d->entcap ? 2 * d->entcap : 8;
        entry *ents = alloc_or_fail(e, sizeof *ents * (size_t)cap);
        if (ents == NULL) return -1;
        if (d->nent) memcpy(ents, d->ents, sizeof *ents * (size_t)d->nent);
        d->ents = ents;
        d->entcap = cap;
    }
    char *copy = alloc_or_fail(e, kn + 1);
    if (copy == NULL) return -1;
    memcpy(copy, k, kn);
    d->ents[d->nent++] = (entry){copy, kn, x};
    return 0;
}

/* --- growable text ------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom || n == 0) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* --- UTF-8 and Python's notion of whitespace ----------------------------------- */

/* Length of the UTF-8 sequence at s (1 for a stray byte). */
static size_t u8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    size_t want = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 1;
    if (want > n) return 1;
    for (size_t i = 1; i < want; i++)
        if ((s[i] & 0xC0) != 0x80) return 1;
    return want;
}

static unsigned u8_decode(const unsigned char *s, size_t len)
{
    switch (len) {
    case 2: return (unsigned)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    case 3: return (unsigned)(s[0] & 0x0F) << 12 | (unsigned)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    case 4:
        return (unsigned)(s[0] & 0x07) << 18 | (unsigned)(s[1] & 0x3F) << 12 |
               (unsigned)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    default: return s[0] < 0x80 ? s[0] : 0xFFFD; /* a stray byte is no character */
    }
}

static size_t u8_encode(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* str.isspace() of one code point. */
static int py_space(unsigned cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 ||
           cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Bytes of whitespace at the start of s[0 .. n). */
static size_t space_prefix(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const size_t l = u8_len((const unsigned char *)s + i, n - i);
        if (!py_space(u8_decode((const unsigned char *)s + i, l))) break;
        i += l;
    }
    return i;
}

/* Bytes of whitespace at the end of s[0 .. n). */
static size_t space_suffix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t end = n;
    while (end > 0) {
        /* the code point ending at end: back over continuation bytes */
        size_t start = end - 1;
        while (start > 0 && end - start < 4 && (u[start] & 0xC0) == 0x80) start--;
        if (u8_len(u + start, end - start) != end - start) start = end - 1;
        if (!py_space(u8_decode(u + start, end - start))) break;
        end = start;
    }
    return n - end;
}

/* Code points in s[0 .. n). */
static size_t u8_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; c++) i += u8_len((const unsigned char *)s + i, n - i);
    return c;
}

/* Byte offset of code point k (n when past the end). */
static size_t u8_offset(const char *s, size_t n, size_t k)
{
    size_t i = 0;
    while (k-- > 0 && i < n) i += u8_len((const unsigned char *)s + i, n - i);
    return i;
}

/* --- lexer --------------------------------------------------------------------- */

typedef enum {
    T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT,
    T_FLOAT, T_OP, T_EOF
} ttype;

typedef struct {
    ttype type;
    const char *s; /* source bytes; T_STRING: the unescaped value */
    size_t n;
    int line;
    long long i;
    double f;
} token;

typedef struct {
    token *t;
    int n, cap;
} tokens;

struct fgi_jinja {
    char *src; /* normalised source */
    size_t len;
    arena a;   /* tokens' strings and the AST */
    node *root;
};

static int push_tok(errs *e, tokens *ts, token t)
{
    if (ts->n == ts->cap) {
        const int cap = ts->cap ? 2 * ts->cap : 256;
        token *p = realloc(ts->t, sizeof *p * (size_t)cap);
        if (p == NULL) {
            if (e->st == FG_OK) e->st = fgi_fail(FG_ERR_OOM, "%s: out of memory", FN);
            return -1;
        }
        ts->t = p;
        ts->cap = cap;
    }
    ts->t[ts->n++] = t;
    return 0;
}

/* Line numbers for messages, counted as the lexer advances (positions
 * only grow, except once for an error message: then it counts afresh). */
typedef struct {
    const char *src;
    size_t pos;
    int line;
} lines;

static int line_at(lines *lc, size_t pos)
{
    if (pos < lc->pos) {
        lc->pos = 0;
        lc->line = 1;
    }
    for (; lc->pos < pos; lc->pos++) lc->line += lc->src[lc->pos] == '\n';
    return lc->line;
}

static int is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A string literal's value as Python's unicode-escape decoding gives it. */
static int unescape(errs *e, const char *s, size_t n, int line, token *t)
{
    char *out = alloc_or_fail(e, n + 1);
    if (out == NULL) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 == n) {
            out[o++] = s[i];
            continue;
        }
        const char c = s[++i];
        unsigned cp;
        int digits = 0;
        switch (c) {
        case 'n': out[o++] = '\n'; continue;
        case 't': out[o++] = '\t'; continue;
        case 'r': out[o++] = '\r'; continue;
        case '\\': out[o++] = '\\'; continue;
        case '\'': out[o++] = '\''; continue;
        case '"': out[o++] = '"'; continue;
        case 'a': out[o++] = '\a'; continue;
        case 'b': out[o++] = '\b'; continue;
        case 'f': out[o++] = '\f'; continue;
        case 'v': out[o++] = '\v'; continue;
        case '\n': continue; /* a line continuation */
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (c >= '0' && c <= '7') {
                cp = 0;
                int k = 0;
                for (; k < 3 && i < n && s[i] >= '0' && s[i] <= '7'; k++, i++) cp = cp * 8 + (unsigned)(s[i] - '0');
                i--;
                o += u8_encode(cp, out + o);
                continue;
            }
            out[o++] = '\\'; /* Python keeps unknown escapes as they are */
            out[o++] = c;
            continue;
        }
        cp = 0;
        for (int k = 0; k < digits; k++) {
            const char h = i + 1 + (size_t)k < n ? s[i + 1 + (size_t)k] : 0;
            const int d = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                                                 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
            if (d < 0) {
                FAILF(e, FG_ERR_FORMAT, line, "truncated \\%c escape in a string literal", c);
                return -1;
            }
            cp = cp * 16 + (unsigned)d;
        }
        i += (size_t)digits;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            FAILF(e, FG_ERR_UNSUPPORTED, line, "the escape \\%c of code point %X", c, cp);
            return -1;
        }
        o += u8_encode(cp, out + o);
    }
    out[o] = '\0';
    t->s = out;
    t->n = o;
    return 0;
}

static const char *const OPS[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%",
                                  "~",  "<",  ">",  "=",  "(",  ")",  "[", "]", "{", "}", ",",
                                  ".",  ":",  "|"};

/* Expression tokens of a tag from *pos up to its end marker ("}}" or "%}",
 * maybe after '-' or '+', outside brackets); leaves *pos after the marker
 * and *strip_after set for '-'. */
static int lex_tag(errs *e, tokens *ts, lines *lc, const char *src, size_t n, size_t *pos,
                   int block, int *strip_after, int *keep_before_marker)
{
    size_t i = *pos;
    int depth = 0;
    *strip_after = 0;
    *keep_before_marker = 0;
    while (i < n) {
        const char c = src[i];
        const int line = line_at(lc, i);
        if (depth == 0) {
            const char *end = block ? "%}" : "}}";
            for (int sign = 0; sign < 3; sign++) {
                const size_t off = sign == 0 ? 0 : 1;
                if (sign == 1 && c != '-') continue;
                if (sign == 2 && (c != '+' || !block)) continue;
                if (i + off + 2 <= n && memcmp(src + i + off, end, 2) == 0) {
                    *strip_after = sign == 1;
                    *keep_before_marker = sign == 2;
                    *pos = i + off + 2;
                    return 0;
                }
            }
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            i++;
            continue;
        }
        token t = {.line = line, .s = src + i};
        if (is_name_start(c)) {
            size_t j = i;
            while (j < n && (is_name_start(src[j]) || is_digit(src[j]))) j++;
            t.type = T_NAME;
            t.n = j - i;
            i = j;
        } else if (is_digit(c)) {
            size_t j = i;
            int is_float = 0;
            while (j < n && (is_digit(src[j]) || src[j] == '_')) j++;
            if (j + 1 < n && src[j] == '.' && is_digit(src[j + 1])) {
                is_float = 1;
                j++;
                while (j < n && (is_digit(src[j]) || src[j] == '_')) j++;
            }
            if (j < n && (src[j] == 'e' || src[j] == 'E')) {
                size_t k = j + 1;
                if (k < n && (src[k] == '+' || src[k] == '-')) k++;
                if (k < n && is_digit(src[k])) {
                    is_float = 1;
                    j = k;
                    while (j < n && is_digit(src[j])) j++;
                }
            }
            char num[64];
            size_t m = 0;
            for (size_t k = i; k < j && m + 1 < sizeof num; k++)
                if (src[k] != '_') num[m++] = src[k];
            num[m] = '\0';
            t.type = is_float ? T_FLOAT : T_INT;
            if (is_float) t.f = strtod(num, NULL);
            else {
                errno = 0;
                t.i = strtoll(num, NULL, 10);
                if (errno == ERANGE || m >= sizeof num - 1) {
                    FAILF(e, FG_ERR_UNSUPPORTED, line, "the integer literal %.40s (beyond 64 bits)", num);
                    return -1;
                }
            }
            t.n = j - i;
            i = j;
        } else if (c == '\'' || c == '"') {
            size_t j = i + 1;
            while (j < n && src[j] != c) j += src[j] == '\\' ? 2 : 1;
            if (j >= n) {
                FAILF(e, FG_ERR_FORMAT, line, "unterminated string literal");
                return -1;
            }
            t.type = T_STRING;
            if (unescape(e, src + i + 1, j - i - 1, line, &t) != 0) return -1;
            i = j + 1;
        } else {
            t.type = T_OP;
            for (size_t k = 0; k < sizeof OPS / sizeof OPS[0]; k++) {
                const size_t l = strlen(OPS[k]);
                if (i + l <= n && memcmp(src + i, OPS[k], l) == 0) {
                    t.n = l;
                    break;
                }
            }
            if (t.n == 0) {
                FAILF(e, FG_ERR_FORMAT, line, "unexpected character '%c'", c);
                return -1;
            }
            if (c == '(' || c == '[' || c == '{') depth++;
            if (c == ')' || c == ']' || c == '}') {
                if (depth == 0) {
                    FAILF(e, FG_ERR_FORMAT, line, "unexpected '%c'", c);
                    return -1;
                }
                depth--;
            }
            i += t.n;
        }
        if (push_tok(e, ts, t) != 0) return -1;
    }
    FAILF(e, FG_ERR_FORMAT, line_at(lc, *pos), "unterminated %s tag", block ? "{%" : "{{");
    return -1;
}

/* Jinja's whitespace rules for the text before a tag and after it. */
static int lex(errs *e, tokens *ts, const char *src, size_t n)
{
    lines lcv = {src, 0, 1}, *lc = &lcv;
    size_t pos = 0;
    int line_starting = 1; /* the previous match ended with a newline */
    while (pos < n) {
        size_t at = pos;
        while (at + 1 < n && !(src[at] == '{' && (src[at + 1] == '{' || src[at + 1] == '%' ||
                                                  src[at + 1] == '#')))
            at++;
        if (at + 1 >= n) at = n;
        size_t end = at;
        const char kind = at < n ? src[at + 1] : 0;
        const char sign = at + 2 < n ? src[at + 2] : 0;
        if (at < n) {
            if (sign == '-') end = at - space_suffix(src + pos, at - pos);
            else if (sign != '+' && kind != '{') {
                /* lstrip_blocks: only whitespace between the line start and the tag */
                size_t l = at;
                while (l > pos && src[l - 1] != '\n') l--;
                if (l > pos || line_starting) {
                    if (at > l && space_prefix(src + l, at - l) == at - l) end = l;
                }
            }
        }
        if (end > pos && push_tok(e, ts, (token){.type = T_TEXT, .s = src + pos, .n = end - pos,
                                                 .line = line_at(lc, pos)}) != 0)
            return -1;
        if (at >= n) break;
        const int line = line_at(lc, at);
        size_t p = at + 2 + (sign == '-' || sign == '+');
        int strip_after = 0, keep = 0;
        if (kind == '#') {
            size_t c = p;
            while (c + 1 < n && !(src[c] == '#' && src[c + 1] == '}')) c++;
            if (c + 1 >= n) {
                FAILF(e, FG_ERR_FORMAT, line, "unterminated comment");
                return -1;
            }
            strip_after = c > p && src[c - 1] == '-';
            keep = c > p && src[c - 1] == '+';
            p = c + 2;
        } else {
            /* {% raw %} would need its own lexing: refuse it by name */
            size_t q = p;
            while (q < n && (src[q] == ' ' || src[q] == '\t' || src[q] == '\n')) q++;
            if (kind == '%' && q + 3 <= n && memcmp(src + q, "raw", 3) == 0 &&
                (q + 3 == n || !(is_name_start(src[q + 3]) || is_digit(src[q + 3])))) {
                FAILF(e, FG_ERR_UNSUPPORTED, line, "the statement 'raw'");
                return -1;
            }
            if (push_tok(e, ts, (token){.type = kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN,
                                        .line = line}) != 0)
                return -1;
            if (lex_tag(e, ts, lc, src, n, &p, kind == '%', &strip_after, &keep) != 0) return -1;
            if (push_tok(e, ts, (token){.type = kind == '%' ? T_BLOCK_END : T_VAR_END,
                                        .line = line_at(lc, p)}) != 0)
                return -1;
        }
        if (strip_after) p += space_prefix(src + p, n - p);
        else if (!keep && kind != '{' && p < n && src[p] == '\n') p++; /* trim_blocks */
        line_starting = p > 0 && src[p - 1] == '\n';
        pos = p;
    }
    return push_tok(e, ts, (token){.type = T_EOF, .line = line_at(lc, n)});
}

/* --- parser -------------------------------------------------------------------- */

typedef enum {
    /* statements */
    N_BODY, N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_SET_ATTR, N_SET_BLOCK, N_MACRO, N_BREAK,
    N_CONTINUE,
    /* expressions */
    E_LIT, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NEG, E_POS, E_NOT,
    E_BIN, E_AND, E_OR, E_COND, E_LIST, E_DICT
} ntype;

struct node {
    ntype type;
    int line;
    const char *name; /* names, operators, text */
    size_t nlen;
    node *a, *b, *c;
    node **kids;      /* body, items, positional arguments, dict keys */
    int nkids;
    node **kids2;     /* else body, keyword argument values, dict values */
    int nkids2;
    const char **names; /* keyword argument names, for targets, macro parameters */
    int nnames;
    val *lit;
    int flag;         /* E_TEST: negated; N_FOR: has a filter */
};

typedef struct {
    errs *e;
    const token *t;
    int pos, depth;
} parser;

static const token *peek(parser *p) { return &p->t[p->pos]; }

static int is_op(const token *t, const char *op)
{
    return t->type == T_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0;
}

static int is_name(const token *t, const char *name)
{
    return t->type == T_NAME && t->n == strlen(name) && memcmp(t->s, name, t->n) == 0;
}

static node *new_node(parser *p, ntype type, int line)
{
    node *nd = alloc_or_fail(p->e, sizeof *nd);
    if (nd) {
        nd->type = type;
        nd->line = line;
    }
    return nd;
}

/* Appends to a growing array of pointers (arena; the array doubles). */
static int push_ptr(errs *e, void ***arr, int *n, void *x)
{
    if (x == NULL) return -1;
    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4, ...: full */
        void **grown = alloc_or_fail(e, sizeof *grown * (size_t)(*n ? 2 * *n : 1));
        if (grown == NULL) return -1;
        if (*n) memcpy(grown, *arr, sizeof *grown * (size_t)*n);
        *arr = grown;
    }
    (*arr)[(*n)++] = x;
    return 0;
}

#define PUSH(p, arr, n, x) push_ptr((p)->e, (void ***)&(arr), &(n), (x))

static char *tok_str(parser *p, const token *t)
{
    char *s = alloc_or_fail(p->e, t->n + 1);
    if (s) memcpy(s, t->s, t->n);
    return s;
}

static void describe_tok(const token *t, char *buf, size_t cap)
{
    switch (t->type) {
    case T_EOF: snprintf(buf, cap, "the end of the template"); break;
    case T_BLOCK_END: snprintf(buf, cap, "the end of the tag"); break;
    case T_VAR_END: snprintf(buf, cap, "'}}'"); break;
    case T_STRING: snprintf(buf, cap, "a string"); break;
    case T_TEXT: snprintf(buf, cap, "text"); break;
    default: snprintf(buf, cap, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s);
    }
}

static int expect_op(parser *p, const char *op)
{
    if (is_op(peek(p), op)) {
        p->pos++;
        return 0;
    }
    char got[64];
    describe_tok(peek(p), got, sizeof got);
    FAILF(p->e, FG_ERR_FORMAT, peek(p)->line, "expected '%s', found %s", op, got);
    return -1;
}

static const token *expect_name(parser *p)
{
    if (peek(p)->type == T_NAME) return &p->t[p->pos++];
    char got[64];
    describe_tok(peek(p), got, sizeof got);
    FAILF(p->e, FG_ERR_FORMAT, peek(p)->line, "expected a name, found %s", got);
    return NULL;
}

static node *parse_expr(parser *p);
static node *parse_or(parser *p);
static node *parse_unary(parser *p);

/* Filters and tests this subset implements; anything else is refused
 * when the template is parsed. */
static const char *const FILTERS[] = {
    "abs", "capitalize", "count", "d", "default", "dictsort", "first", "float", "indent", "int",
    "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
    "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort",
    "string", "sum", "title", "tojson", "trim", "unique", "upper", "wordcount"};
static const char *const TESTS[] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false",
    "float", "ge", "gt", "in", "integer", "iterable", "le", "lower", "lt", "mapping", "ne",
    "none", "number", "odd", "sameas", "sequence", "string", "true", "undefined", "upper",
    "==", "!=", "<", ">", "<=", ">="};

static int known(const char *const *list, size_t n, const token *t)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]) == t->n && memcmp(list[i], t->s, t->n) == 0) return 1;
    return 0;
}

/* "(a, b, k=v)" after the callee; into nd's kids / names + kids2. */
static int parse_args(parser *p, node *nd)
{
    if (expect_op(p, "(") != 0) return -1;
    while (!is_op(peek(p), ")")) {
        if (peek(p)->type == T_NAME && is_op(&p->t[p->pos + 1], "=")) {
            const char *name = tok_str(p, &p->t[p->pos]);
            p->pos += 2;
            /* names[i] is the keyword of kids2[i] */
            if (PUSH(p, nd->names, nd->nnames, (void *)name) != 0) return -1;
            if (PUSH(p, nd->kids2, nd->nkids2, parse_expr(p)) != 0) return -1;
        } else {
            if (is_op(peek(p), "*") || is_op(peek(p), "**")) {
                FAILF(p->e, FG_ERR_UNSUPPORTED, peek(p)->line, "*args and **kwargs in calls");
                return -1;
            }
            if (nd->nnames > 0) {
                FAILF(p->e, FG_ERR_FORMAT, peek(p)->line, "a positional argument after a keyword one");
                return -1;
            }
            if (PUSH(p, nd->kids, nd->nkids, parse_expr(p)) != 0) return -1;
        }
        if (!is_op(peek(p), ",")) break;
        p->pos++;
    }
    return expect_op(p, ")");
}

static node *parse_primary(parser *p)
{
    const token *t = peek(p);
    node *nd;
    if (t->type == T_STRING) {
        /* adjacent literals join, as in Python */
        nd = new_node(p, E_LIT, t->line);
        if (nd == NULL) return NULL;
        sbuf b = {0};
        while (peek(p)->type == T_STRING) {
            sb_add(&b, peek(p)->s, peek(p)->n);
            p->pos++;
        }
        nd->lit = mk_str(p->e, b.p ? b.p : "", b.n);
        free(b.p);
        if (b.oom) FAILF(p->e, FG_ERR_OOM, t->line, "out of memory");
        return nd->lit ? nd : NULL;
    }
    if (t->type == T_INT || t->type == T_FLOAT) {
        p->pos++;
        nd = new_node(p, E_LIT, t->line);
        if (nd == NULL) return NULL;
        nd->lit = t->type == T_INT ? mk_int(p->e, t->i) : mk_float(p->e, t->f);
        return nd->lit ? nd : NULL;
    }
    if (t->type == T_NAME) {
        p->pos++;
        nd = new_node(p, E_LIT, t->line);
        if (nd == NULL) return NULL;
        if (is_name(t, "true") || is_name(t, "True")) nd->lit = &TRUE_VAL;
        else if (is_name(t, "false") || is_name(t, "False")) nd->lit = &FALSE_VAL;
        else if (is_name(t, "none") || is_name(t, "None")) nd->lit = &NONE_VAL;
        else {
            nd->type = E_NAME;
            nd->name = tok_str(p, t);
            nd->nlen = t->n;
            if (nd->name == NULL) return NULL;
        }
        return nd;
    }
    if (is_op(t, "(")) { /* parentheses or a tuple (a list here) */
        p->pos++;
        if (is_op(peek(p), ")")) {
            p->pos++;
            nd = new_node(p, E_LIST, t->line);
            if (nd) nd->flag = 1;
            return nd;
        }
        node *first = parse_expr(p);
        if (first == NULL) return NULL;
        if (!is_op(peek(p), ",")) return expect_op(p, ")") == 0 ? first : NULL;
        nd = new_node(p, E_LIST, t->line);
        if (nd == NULL || PUSH(p, nd->kids, nd->nkids, first) != 0) return NULL;
        nd->flag = 1; /* a tuple */
        while (is_op(peek(p), ",")) {
            p->pos++;
            if (is_op(peek(p), ")")) break;
            if (PUSH(p, nd->kids, nd->nkids, parse_expr(p)) != 0) return NULL;
        }
        return expect_op(p, ")") == 0 ? nd : NULL;
    }
    if (is_op(t, "[")) {
        p->pos++;
        nd = new_node(p, E_LIST, t->line);
        if (nd == NULL) return NULL;
        while (!is_op(peek(p), "]")) {
            if (PUSH(p, nd->kids, nd->nkids, parse_expr(p)) != 0) return NULL;
            if (!is_op(peek(p), ",")) break;
            p->pos++;
        }
        return expect_op(p, "]") == 0 ? nd : NULL;
    }
    if (is_op(t, "{")) {
        p->pos++;
        nd = new_node(p, E_DICT, t->line);
        if (nd == NULL) return NULL;
        while (!is_op(peek(p), "}")) {
            if (PUSH(p, nd->kids, nd->nkids, parse_expr(p)) != 0) return NULL;
            if (expect_op(p, ":") != 0) return NULL;
            if (PUSH(p, nd->kids2, nd->nkids2, parse_expr(p)) != 0) return NULL;
            if (!is_op(peek(p), ",")) break;
            p->pos++;
        }
        return expect_op(p, "}") == 0 ? nd : NULL;
    }
    char got[64];
    describe_tok(t, got, sizeof got);
    FAILF(p->e, FG_ERR_FORMAT, t->line, "expected an expression, found %s", got);
    return NULL;
}

/* Attribute, subscript, slice and call after a primary. */
static node *parse_postfix(parser *p, node *x)
{
    while (x != NULL) {
        const token *t = peek(p);
        if (is_op(t, ".")) {
            p->pos++;
            const token *name = expect_name(p);
            if (name == NULL) return NULL;
            node *nd = new_node(p, E_ATTR, t->line);
            if (nd == NULL) return NULL;
            nd->a = x;
            nd->name = tok_str(p, name);
            nd->nlen = name->n;
            x = nd;
        } else if (is_op(t, "[")) {
            p->pos++;
            node *parts[3] = {NULL, NULL, NULL};
            int colons = 0;
            for (;;) {
                if (!is_op(peek(p), ":") && !is_op(peek(p), "]")) {
                    parts[colons] = parse_expr(p);
                    if (parts[colons] == NULL) return NULL;
                }
                if (is_op(peek(p), ":") && colons < 2) {
                    p->pos++;
                    colons++;
                    continue;
                }
                break;
            }
            if (expect_op(p, "]") != 0) return NULL;
            node *nd = new_node(p, colons ? E_SLICE : E_ITEM, t->line);
            if (nd == NULL) return NULL;
            if (!colons && parts[0] == NULL) {
                FAILF(p->e, FG_ERR_FORMAT, t->line, "an empty subscript");
                return NULL;
            }
            nd->a = x;
            nd->b = parts[0];
            nd->c = parts[1];
            /* the step is kept in kids[0] */
            if (parts[2] && PUSH(p, nd->kids, nd->nkids, parts[2]) != 0) return NULL;
            x = nd;
        } else if (is_op(t, "(")) {
            node *nd = new_node(p, E_CALL, t->line);
            if (nd == NULL) return NULL;
            nd->a = x;
            if (parse_args(p, nd) != 0) return NULL;
            x = nd;
        } else
            break;
    }
    return x;
}

/* Filters (`| name(args)`) and tests (`is [not] name [arg]`) after a
 * unary expression. */
static node *parse_filters(parser *p, node *x)
{
    while (x != NULL) {
        const token *t = peek(p);
        if (is_op(t, "|")) {
            p->pos++;
            const token *name = expect_name(p);
            if (name == NULL) return NULL;
            if (!known(FILTERS, sizeof FILTERS / sizeof FILTERS[0], name)) {
                FAILF(p->e, FG_ERR_UNSUPPORTED, name->line, "the filter '%.*s'", (int)name->n, name->s);
                return NULL;
            }
            node *nd = new_node(p, E_FILTER, t->line);
            if (nd == NULL) return NULL;
            nd->a = x;
            nd->name = tok_str(p, name);
            nd->nlen = name->n;
            if (is_op(peek(p), "(") && parse_args(p, nd) != 0) return NULL;
            x = nd;
        } else if (is_name(t, "is")) {
            p->pos++;
            node *nd = new_node(p, E_TEST, t->line);
            if (nd == NULL) return NULL;
            if (is_name(peek(p), "not")) {
                p->pos++;
                nd->flag = 1;
            }
            const token *name = peek(p);
            if (name->type != T_NAME && !(name->type == T_OP && known(TESTS, sizeof TESTS / sizeof TESTS[0], name))) {
                FAILF(p->e, FG_ERR_FORMAT, name->line, "expected a test name after 'is'");
                return NULL;
            }
            p->pos++;
            if (!known(TESTS, sizeof TESTS / sizeof TESTS[0], name)) {
                FAILF(p->e, FG_ERR_UNSUPPORTED, name->line, "the test '%.*s'", (int)name->n, name->s);
                return NULL;
            }
            nd->a = x;
            nd->name = tok_str(p, name);
            nd->nlen = name->n;
            const token *nx = peek(p);
            if (is_op(nx, "(")) {
                if (parse_args(p, nd) != 0) return NULL;
            } else if (nx->type == T_STRING || nx->type == T_INT || nx->type == T_FLOAT ||
                       (nx->type == T_NAME && !is_name(nx, "and") && !is_name(nx, "or") &&
                        !is_name(nx, "else") && !is_name(nx, "if") && !is_name(nx, "in") &&
                        !is_name(nx, "is") && !is_name(nx, "not")) ||
                       is_op(nx, "[") || is_op(nx, "{")) {
                /* `is divisibleby 3`: one argument without parentheses */
                node *arg = parse_postfix(p, parse_primary(p));
                if (PUSH(p, nd->kids, nd->nkids, arg) != 0) return NULL;
            }
            x = nd;
        } else
            break;
    }
    return x;
}

/* parse_unary without filters, for the operand of a sign. */
static node *parse_signed_operand(parser *p)
{
    const token *t = peek(p);
    if (!is_op(t, "-") && !is_op(t, "+")) return parse_postfix(p, parse_primary(p));
    if (++p->depth > MAX_DEPTH) {
        FAILF(p->e, FG_ERR_UNSUPPORTED, t->line, "expressions nested over %d deep", MAX_DEPTH);
        return NULL;
    }
    p->pos++;
    node *x = new_node(p, is_op(t, "-") ? E_NEG : E_POS, t->line);
    if (x) x->a = parse_signed_operand(p);
    p->depth--;
    return x && x->a ? parse_postfix(p, x) : NULL;
}

static node *parse_unary(parser *p)
{
    const token *t = peek(p);
    if (++p->depth > MAX_DEPTH) {
        FAILF(p->e, FG_ERR_UNSUPPORTED, t->line, "expressions nested over %d deep", MAX_DEPTH);
        return NULL;
    }
    node *x;
    if (is_op(t, "-") || is_op(t, "+")) {
        /* as Jinja: the sign takes the operand without its filters, which
         * then apply to the signed value (-3|abs is 3) */
        p->pos++;
        x = new_node(p, is_op(t, "-") ? E_NEG : E_POS, t->line);
        if (x) x->a = parse_signed_operand(p);
        if (x && x->a == NULL) x = NULL;
        x = parse_filters(p, parse_postfix(p, x));
    } else
        x = parse_filters(p, parse_postfix(p, parse_primary(p)));
    p->depth--;
    return x;
}

static node *binary(parser *p, const token *op, node *a, node *b)
{
    if (a == NULL || b == NULL) return NULL;
    node *nd = new_node(p, E_BIN, op->line);
    if (nd == NULL) return NULL;
    nd->name = tok_str(p, op);
    nd->nlen = op->n;
    nd->a = a;
    nd->b = b;
    return nd;
}

static node *parse_pow(parser *p)
{
    node *x = parse_unary(p);
    while (x && is_op(peek(p), "**")) {
        const token *op = &p->t[p->pos++];
        x = binary(p, op, x, parse_unary(p));
    }
    return x;
}

static node *parse_math2(parser *p)
{
    node *x = parse_pow(p);
    while (x && (is_op(peek(p), "*") || is_op(peek(p), "/") || is_op(peek(p), "//") ||
                 is_op(peek(p), "%"))) {
        const token *op = &p->t[p->pos++];
        x = binary(p, op, x, parse_pow(p));
    }
    return x;
}

static node *parse_concat(parser *p)
{
    node *x = parse_math2(p);
    while (x && is_op(peek(p), "~")) {
        const token *op = &p->t[p->pos++];
        x = binary(p, op, x, parse_math2(p));
    }
    return x;
}

static node *parse_math1(parser *p)
{
    node *x = parse_concat(p);
    while (x && (is_op(peek(p), "+") || is_op(peek(p), "-"))) {
        const token *op = &p->t[p->pos++];
        x = binary(p, op, x, parse_concat(p));
    }
    return x;
}

/* Comparisons; a chain a < b < c is (a < b) and (b < c), as Python. */
static node *parse_compare(parser *p)
{
    node *x = parse_math1(p), *chain = NULL, *prev = x;
    for (;;) {
        if (x == NULL) return NULL;
        const token *t = peek(p);
        static const char *const cmp[] = {"==", "!=", "<", ">", "<=", ">="};
        const char *op = NULL;
        for (int i = 0; i < 6; i++)
            if (is_op(t, cmp[i])) op = cmp[i];
        int not_in = 0;
        if (op == NULL && is_name(t, "in")) op = "in";
        if (op == NULL && is_name(t, "not") && is_name(&p->t[p->pos + 1], "in")) {
            op = "in";
            not_in = 1;
            p->pos++;
        }
        if (op == NULL) break;
        p->pos++;
        node *rhs = parse_math1(p);
        if (rhs == NULL) return NULL;
        node *cmpn = new_node(p, E_BIN, t->line);
        if (cmpn == NULL) return NULL;
        cmpn->name = not_in ? "not in" : op;
        cmpn->nlen = strlen(cmpn->name);
        cmpn->a = prev;
        cmpn->b = rhs;
        if (chain == NULL) chain = cmpn;
        else {
            node *and = new_node(p, E_AND, t->line);
            if (and == NULL) return NULL;
            and->a = chain;
            and->b = cmpn;
            chain = and;
        }
        prev = rhs;
    }
    return chain ? chain : x;
}

static node *parse_not(parser *p)
{
    const token *t = peek(p);
    if (is_name(t, "not")) {
        p->pos++;
        node *nd = new_node(p, E_NOT, t->line);
        if (nd == NULL) return NULL;
        if (++p->depth > MAX_DEPTH) {
            FAILF(p->e, FG_ERR_UNSUPPORTED, t->line, "expressions nested over %d deep", MAX_DEPTH);
            return NULL;
        }
        nd->a = parse_not(p);
        p->depth--;
        return nd->a ? nd : NULL;
    }
    return parse_compare(p);
}

static node *parse_and(parser *p)
{
    node *x = parse_not(p);
    while (x && is_name(peek(p), "and")) {
        const token *t = &p->t[p->pos++];
        node *nd = new_node(p, E_AND, t->line);
        if (nd == NULL) return NULL;
        nd->a = x;
        nd->b = parse_not(p);
        x = nd->b ? nd : NULL;
    }
    return x;
}

static node *parse_or(parser *p)
{
    node *x = parse_and(p);
    while (x && is_name(peek(p), "or")) {
        const token *t = &p->t[p->pos++];
        node *nd = new_node(p, E_OR, t->line);
        if (nd == NULL) return NULL;
        nd->a = x;
        nd->b = parse_and(p);
        x = nd->b ? nd : NULL;
    }
    return x;
}

/* `a if cond else b` (else optional: undefined) over or-expressions. */
static node *parse_expr(parser *p)
{
    if (++p->depth > MAX_DEPTH) {
        FAILF(p->e, FG_ERR_UNSUPPORTED, peek(p)->line, "expressions nested over %d deep", MAX_DEPTH);
        return NULL;
    }
    node *x = parse_or(p);
    while (x && is_name(peek(p), "if")) {
        const token *t = &p->t[p->pos++];
        node *nd = new_node(p, E_COND, t->line);
        if (nd == NULL) return NULL;
        nd->a = x;
        nd->b = parse_or(p);
        if (nd->b == NULL) return NULL;
        if (is_name(peek(p), "else")) {
            p->pos++;
            nd->c = parse_or(p);
            if (nd->c == NULL) return NULL;
        }
        x = nd;
    }
    p->depth--;
    return x;
}

/* --- statements ------------------------------------------------------------------ */

static int end_tag(parser *p)
{
    if (peek(p)->type == T_BLOCK_END) {
        p->pos++;
        return 0;
    }
    char got[64];
    describe_tok(peek(p), got, sizeof got);
    FAILF(p->e, FG_ERR_FORMAT, peek(p)->line, "expected the end of the tag, found %s", got);
    return -1;
}

/* Statements up to a `{% name %}` whose name is in stops (consumed up to
 * the name; which one into *which). stops NULL: up to the end. */
static node *parse_body(parser *p, const char *const *stops, int n_stops, int *which);

static node *parse_if(parser *p, int line)
{
    node *nd = new_node(p, N_IF, line);
    if (nd == NULL) return NULL;
    nd->a = parse_expr(p);
    if (nd->a == NULL || end_tag(p) != 0) return NULL;
    static const char *const stops[] = {"elif", "else", "endif"};
    int which;
    nd->b = parse_body(p, stops, 3, &which);
    if (nd->b == NULL) return NULL;
    if (which == 0) { /* elif: an if in the else branch */
        nd->c = parse_if(p, peek(p)->line);
        return nd->c ? nd : NULL;
    }
    if (which == 1) {
        if (end_tag(p) != 0) return NULL;
        nd->c = parse_body(p, stops + 2, 1, &which);
        if (nd->c == NULL) return NULL;
    }
    return end_tag(p) == 0 ? nd : NULL;
}

static node *parse_for(parser *p, int line)
{
    node *nd = new_node(p, N_FOR, line);
    if (nd == NULL) return NULL;
    const int paren = is_op(peek(p), "(");
    if (paren) p->pos++;
    for (;;) {
        const token *name = expect_name(p);
        if (name == NULL || PUSH(p, nd->names, nd->nnames, tok_str(p, name)) != 0) return NULL;
        if (!is_op(peek(p), ",")) break;
        p->pos++;
    }
    if (paren && expect_op(p, ")") != 0) return NULL;
    if (!is_name(peek(p), "in")) {
        FAILF(p->e, FG_ERR_FORMAT, peek(p)->line, "expected 'in' in a for loop");
        return NULL;
    }
    p->pos++;
    nd->a = parse_or(p); /* a condition may follow: not a conditional expression */
    if (nd->a == NULL) return NULL;
    if (is_name(peek(p), "if")) {
        p->pos++;
        nd->b = parse_expr(p);
        if (nd->b == NULL) return NULL;
    }
    if (is_name(peek(p), "recursive")) {
        FAILF(p->e, FG_ERR_UNSUPPORTED, peek(p)->line, "recursive for loops");
        return NULL;
    }
    if (end_tag(p) != 0) return NULL;
    static const char *const stops[] = {"else", "endfor"};
    int which;
    nd->c = parse_body(p, stops, 2, &which);
    if (nd->c == NULL) return NULL;
    if (which == 0) {
        if (end_tag(p) != 0) return NULL;
        node *els = parse_body(p, stops + 1, 1, &which);
        if (els == NULL || PUSH(p, nd->kids2, nd->nkids2, els) != 0) return NULL;
    }
    return end_tag(p) == 0 ? nd : NULL;
}

static node *parse_set(parser *p, int line)
{
    const token *name = expect_name(p);
    if (name == NULL) return NULL;
    node *nd = new_node(p, N_SET, line);
    if (nd == NULL) return NULL;
    nd->name = tok_str(p, name);
    nd->nlen = name->n;
    if (is_op(peek(p), ".")) { /* ns.attr = ... */
        p->pos++;
        const token *attr = expect_name(p);
        if (attr == NULL) return NULL;
        nd->type = N_SET_ATTR;
        if (PUSH(p, nd->names, nd->nnames, tok_str(p, attr)) != 0) return NULL;
    } else if (is_op(peek(p), ",")) {
        FAILF(p->e, FG_ERR_UNSUPPORTED, peek(p)->line, "assigning to several names in one set");
        return NULL;
    }
    if (peek(p)->type == T_BLOCK_END && nd->type == N_SET) { /* {% set x %}...{% endset %} */
        p->pos++;
        static const char *const stops[] = {"endset"};
        int which;
        nd->type = N_SET_BLOCK;
        nd->a = parse_body(p, stops, 1, &which);
        return nd->a && end_tag(p) == 0 ? nd : NULL;
    }
    if (expect_op(p, "=") != 0) return NULL;
    nd->a = parse_expr(p);
    return nd->a && end_tag(p) == 0 ? nd : NULL;
}

static node *parse_macro(parser *p, int line)
{
    const token *name = expect_name(p);
    if (name == NULL) return NULL;
    node *nd = new_node(p, N_MACRO, line);
    if (nd == NULL) return NULL;
    nd->name = tok_str(p, name);
    nd->nlen = name->n;
    if (expect_op(p, "(") != 0) return NULL;
    while (!is_op(peek(p), ")")) {
        const token *param = expect_name(p);
        if (param == NULL || PUSH(p, nd->names, nd->nnames, tok_str(p, param)) != 0) return NULL;
        node *def = NULL;
        if (is_op(peek(p), "=")) {
            p->pos++;
            def = parse_expr(p);
            if (def == NULL) return NULL;
        } else {
            def = new_node(p, E_LIT, param->line); /* no default: undefined */
            if (def == NULL) return NULL;
            def->lit = &UNDEF_VAL;
            def->flag = 1;
        }
        if (PUSH(p, nd->kids2, nd->nkids2, def) != 0) return NULL;
        if (!is_op(peek(p), ",")) break;
        p->pos++;
    }
    if (expect_op(p, ")") != 0 || end_tag(p) != 0) return NULL;
    static const char *const stops[] = {"endmacro"};
    int which;
    nd->a = parse_body(p, stops, 1, &which);
    return nd->a && end_tag(p) == 0 ? nd : NULL;
}

static node *parse_body(parser *p, const char *const *stops, int n_stops, int *which)
{
    node *body = new_node(p, N_BODY, peek(p)->line);
    if (body == NULL) return NULL;
    if (++p->depth > MAX_DEPTH) {
        FAILF(p->e, FG_ERR_UNSUPPORTED, peek(p)->line, "statements nested over %d deep", MAX_DEPTH);
        return NULL;
    }
    for (;;) {
        const token *t = peek(p);
        node *st = NULL;
        if (t->type == T_EOF) {
            if (stops == NULL) break;
            FAILF(p->e, FG_ERR_FORMAT, t->line, "missing {%% %s %%}", stops[n_stops - 1]);
            return NULL;
        }
        if (t->type == T_TEXT) {
            p->pos++;
            st = new_node(p, N_TEXT, t->line);
            if (st) {
                st->name = t->s;
                st->nlen = t->n;
            }
        } else if (t->type == T_VAR_BEGIN) {
            p->pos++;
            st = new_node(p, N_OUTPUT, t->line);
            if (st == NULL || (st->a = parse_expr(p)) == NULL) return NULL;
            if (peek(p)->type != T_VAR_END) {
                char got[64];
                describe_tok(peek(p), got, sizeof got);
                FAILF(p->e, FG_ERR_FORMAT, peek(p)->line, "expected '}}', found %s", got);
                return NULL;
            }
            p->pos++;
        } else if (t->type == T_BLOCK_BEGIN) {
            p->pos++;
            const token *kw = expect_name(p);
            if (kw == NULL) return NULL;
            for (int i = 0; i < n_stops; i++)
                if (is_name(kw, stops[i])) {
                    *which = i;
                    p->depth--;
                    return body;
                }
            const int line = kw->line;
            if (is_name(kw, "if")) st = parse_if(p, line);
            else if (is_name(kw, "for")) st = parse_for(p, line);
            else if (is_name(kw, "set")) st = parse_set(p, line);
            else if (is_name(kw, "macro")) st = parse_macro(p, line);
            else if (is_name(kw, "break") || is_name(kw, "continue")) {
                st = new_node(p, is_name(kw, "break") ? N_BREAK : N_CONTINUE, line);
                if (st && end_tag(p) != 0) return NULL;
            } else if (is_name(kw, "generation")) {
                /* transformers' assistant-mask marker: renders its body */
                static const char *const gen_stop[] = {"endgeneration"};
                int w;
                if (end_tag(p) != 0) return NULL;
                st = parse_body(p, gen_stop, 1, &w);
                if (st && end_tag(p) != 0) return NULL;
            } else {
                static const char *const ends[] = {"endif", "endfor", "endmacro", "endset",
                                                   "elif", "else", "endgeneration"};
                for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++)
                    if (is_name(kw, ends[i])) {
                        FAILF(p->e, FG_ERR_FORMAT, line, "unexpected {%% %s %%}", ends[i]);
                        return NULL;
                    }
                FAILF(p->e, FG_ERR_UNSUPPORTED, line, "the statement '%.*s'", (int)kw->n, kw->s);
                return NULL;
            }
        } else {
            char got[64];
            describe_tok(t, got, sizeof got);
            FAILF(p->e, FG_ERR_FORMAT, t->line, "unexpected %s", got);
            return NULL;
        }
        if (PUSH(p, body->kids, body->nkids, st) != 0) return NULL;
    }
    p->depth--;
    return body;
}

fg_status fgi_jinja_parse(fgi_jinja **out, const char *source, size_t len)
{
    *out = NULL;
    fgi_jinja *t = calloc(1, sizeof *t);
    if (t == NULL) return fgi_fail(FG_ERR_OOM, "%s: out of memory", FN);
    /* newlines as Jinja reads them: \r\n and \r are \n; one final newline
     * is dropped (keep_trailing_newline is off) */
    t->src = malloc(len + 1);
    if (t->src == NULL) {
        free(t);
        return fgi_fail(FG_ERR_OOM, "%s: out of memory", FN);
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (source[i] == '\r') {
            t->src[n++] = '\n';
            if (i + 1 < len && source[i + 1] == '\n') i++;
        } else
            t->src[n++] = source[i];
    }
    if (n > 0 && t->src[n - 1] == '\n') n--;
    t->src[n] = '\0';
    t->len = n;

    errs e = {.st = FG_OK, .a = &t->a};
    tokens ts = {0};
    if (lex(&e, &ts, t->src, t->len) == 0) {
        parser p = {.e = &e, .t = ts.t};
        t->root = parse_body(&p, NULL, 0, NULL);
    }
    free(ts.t);
    if (e.st != FG_OK || t->root == NULL) {
        const fg_status st = e.st != FG_OK ? e.st : fgi_fail(FG_ERR_FORMAT, "%s: cannot parse", FN);
        fgi_jinja_free(t);
        return st;
    }
    *out = t;
    return FG_OK;
}

void fgi_jinja_free(fgi_jinja *t)
{
    if (t == NULL) return;
    arena_free(&t->a);
    free(t->src);
    free(t);
}

/* --- rendering: scopes, conversions --------------------------------------------- */

typedef struct frame {
    struct frame *parent;
    val *vars; /* a dict */
} frame;

typedef struct {
    errs e;
    arena a;
    frame *global, *top;
    int depth;
    long steps; /* expressions and statements run, up to MAX_STEPS */
    int loop_ctl; /* 1: break, 2: continue pending */
} ctx;

static frame *new_frame(ctx *c, frame *parent)
{
    frame *f = alloc_or_fail(&c->e, sizeof *f);
    if (f == NULL) return NULL;
    f->parent = parent;
    f->vars = new_val(&c->e, V_DICT);
    if (f->vars) f->vars->frame = 1;
    return f->vars ? f : NULL;
}

static val *lookup(ctx *c, const char *name, size_t n)
{
    for (frame *f = c->top; f; f = f->parent) {
        val *v = dict_get(f->vars, name, n);
        if (v) return v;
    }
    return NULL;
}

static const char *kind_name(const val *v)
{
    switch (v->kind) {
    case V_UNDEF: return "undefined";
    case V_NONE: return "none";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_STR: return "str";
    case V_LIST: return "list";
    case V_DICT: return v->ns ? "namespace" : "dict";
    case V_FUNC: return "function";
    }
    return "?";
}

static int truthy(const val *v)
{
    switch (v->kind) {
    case V_UNDEF:
    case V_NONE: return 0;
    case V_BOOL:
    case V_INT: return v->i != 0;
    case V_FLOAT: return v->f != 0.0;
    case V_STR: return v->n > 0;
    case V_LIST: return v->len > 0;
    case V_DICT: return v->ns || v->nent > 0;
    case V_FUNC: return 1;
    }
    return 0;
}

/* Python's repr of a float: the shortest text that reads back the same,
 * in exponent form outside [1e-4, 1e16). */
static void float_repr(sbuf *b, double f)
{
    if (isnan(f)) {
        sb_str(b, "nan");
        return;
    }
    if (isinf(f)) {
        sb_str(b, f > 0 ? "inf" : "-inf");
        return;
    }
    char digits[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(digits, sizeof digits, "%.*e", prec - 1, f);
        if (strtod(digits, NULL) == f) break;
    }
    /* digits is d.ddde[+-]XX: mantissa digits and a decimal exponent */
    char mant[24];
    size_t m = 0;
    const char *q = digits;
    const int neg = *q == '-';
    if (neg) q++;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') mant[m++] = *q;
    while (m > 1 && mant[m - 1] == '0') m--;
    mant[m] = '\0';
    const int exp = atoi(q + 1);
    char out[64];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (exp >= 16 || exp < -4) {
        out[o++] = mant[0];
        if (m > 1) {
            out[o++] = '.';
            memcpy(out + o, mant + 1, m - 1);
            o += m - 1;
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    } else if (exp < 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -exp - 1; i++) out[o++] = '0';
        memcpy(out + o, mant, m);
        o += m;
    } else {
        for (int i = 0; i <= exp; i++) out[o++] = (size_t)i < m ? mant[i] : '0';
        out[o++] = '.';
        if ((size_t)exp + 1 < m) {
            memcpy(out + o, mant + exp + 1, m - (size_t)exp - 1);
            o += m - (size_t)exp - 1;
        } else
            out[o++] = '0';
    }
    sb_add(b, out, o);
}

static int to_str(ctx *c, sbuf *b, const val *v, int line);

/* Python's repr of a str: single quotes unless it holds ' and no ". */
static void str_repr(sbuf *b, const char *s, size_t n)
{
    const int dq = memchr(s, '\'', n) != NULL && memchr(s, '"', n) == NULL;
    const char q = dq ? '"' : '\'';
    sb_add(b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        const unsigned char ch = (unsigned char)s[i];
        char esc[8];
        if (ch == '\\' || ch == (unsigned char)q) {
            esc[0] = '\\';
            esc[1] = (char)ch;
            sb_add(b, esc, 2);
        } else if (ch == '\n') sb_str(b, "\\n");
        else if (ch == '\r') sb_str(b, "\\r");
        else if (ch == '\t') sb_str(b, "\\t");
        else if (ch < 0x20 || ch == 0x7F) {
            snprintf(esc, sizeof esc, "\\x%02x", ch);
            sb_str(b, esc);
        } else
            sb_add(b, (const char *)&ch, 1);
    }
    sb_add(b, &q, 1);
}

static int repr(ctx *c, sbuf *b, const val *v, int line)
{
    if (v->kind == V_STR) {
        str_repr(b, v->s, v->n);
        return 0;
    }
    return to_str(c, b, v, line);
}

/* str(v) as Python prints it. */
static int to_str(ctx *c, sbuf *b, const val *v, int line)
{
    char num[32];
    switch (v->kind) {
    case V_UNDEF: return 0;
    case V_NONE: sb_str(b, "None"); return 0;
    case V_BOOL: sb_str(b, v->i ? "True" : "False"); return 0;
    case V_INT:
        snprintf(num, sizeof num, "%lld", v->i);
        sb_str(b, num);
        return 0;
    case V_FLOAT: float_repr(b, v->f); return 0;
    case V_STR: sb_add(b, v->s, v->n); return 0;
    case V_LIST:
        sb_str(b, v->tup ? "(" : "[");
        for (int i = 0; i < v->len; i++) {
            if (i) sb_str(b, ", ");
            if (repr(c, b, v->items[i], line) != 0) return -1;
        }
        sb_str(b, v->tup ? (v->len == 1 ? ",)" : ")") : "]");
        return 0;
    case V_DICT:
        if (v->ns) break;
        sb_str(b, "{");
        for (int i = 0; i < v->nent; i++) {
            if (i) sb_str(b, ", ");
            str_repr(b, v->ents[i].k, v->ents[i].kn);
            sb_str(b, ": ");
            if (repr(c, b, v->ents[i].v, line) != 0) return -1;
        }
        sb_str(b, "}");
        return 0;
    case V_FUNC: break;
    }
    FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "printing a %s", kind_name(v));
    return -1;
}

/* A new str value of str(v). */
static val *str_of(ctx *c, const val *v, int line)
{
    if (v->kind == V_STR) return (val *)v;
    sbuf b = {0};
    if (to_str(c, &b, v, line) != 0) {
        free(b.p);
        return NULL;
    }
    if (b.oom) {
        free(b.p);
        FAILF(&c->e, FG_ERR_OOM, line, "out of memory");
        return NULL;
    }
    val *s = mk_str(&c->e, b.p ? b.p : "", b.n);
    free(b.p);
    return s;
}

/* json.dumps(v, ensure_ascii, indent, separators, sort_keys) */
typedef struct {
    int indent; /* -1: none */
    int ascii, sort_keys;
    const char *item_sep, *key_sep;
} json_opts;

static void json_str(sbuf *b, const char *s, size_t n, int ascii)
{
    sb_str(b, "\"");
    for (size_t i = 0; i < n;) {
        const unsigned char ch = (unsigned char)s[i];
        char esc[16];
        if (ch == '"') sb_str(b, "\\\"");
        else if (ch == '\\') sb_str(b, "\\\\");
        else if (ch == '\n') sb_str(b, "\\n");
        else if (ch == '\r') sb_str(b, "\\r");
        else if (ch == '\t') sb_str(b, "\\t");
        else if (ch == '\b') sb_str(b, "\\b");
        else if (ch == '\f') sb_str(b, "\\f");
        else if (ch < 0x20 || (ascii && ch == 0x7F)) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            sb_str(b, esc);
        } else if (ch >= 0x80 && ascii) {
            const size_t l = u8_len((const unsigned char *)s + i, n - i);
            unsigned cp = u8_decode((const unsigned char *)s + i, l);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else
                snprintf(esc, sizeof esc, "\\u%04x", cp);
            sb_str(b, esc);
            i += l;
            continue;
        } else
            sb_add(b, (const char *)&ch, 1);
        i++;
    }
    sb_str(b, "\"");
}

static void json_newline(sbuf *b, const json_opts *o, int level)
{
    sb_str(b, "\n");
    for (int i = 0; i < o->indent * level; i++) sb_str(b, " ");
}

static int entry_cmp(const void *x, const void *y)
{
    const entry *a = *(const entry *const *)x, *b = *(const entry *const *)y;
    const size_t n = a->kn < b->kn ? a->kn : b->kn;
    const int r = memcmp(a->k, b->k, n);
    return r ? r : (a->kn > b->kn) - (a->kn < b->kn);
}

static int to_json(ctx *c, sbuf *b, const val *v, const json_opts *o, int level, int line)
{
    if (level > MAX_DEPTH) {
        FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "tojson of values nested over %d deep", MAX_DEPTH);
        return -1;
    }
    switch (v->kind) {
    case V_NONE: sb_str(b, "null"); return 0;
    case V_BOOL: sb_str(b, v->i ? "true" : "false"); return 0;
    case V_INT: return to_str(c, b, v, line);
    case V_FLOAT:
        if (isnan(v->f)) sb_str(b, "NaN");
        else if (isinf(v->f)) sb_str(b, v->f > 0 ? "Infinity" : "-Infinity");
        else float_repr(b, v->f);
        return 0;
    case V_STR: json_str(b, v->s, v->n, o->ascii); return 0;
    case V_LIST:
        if (v->len == 0) {
            sb_str(b, "[]");
            return 0;
        }
        sb_str(b, "[");
        for (int i = 0; i < v->len; i++) {
            if (i) sb_str(b, o->item_sep);
            if (o->indent >= 0) json_newline(b, o, level + 1);
            if (to_json(c, b, v->items[i], o, level + 1, line) != 0) return -1;
        }
        if (o->indent >= 0) json_newline(b, o, level);
        sb_str(b, "]");
        return 0;
    case V_DICT: {
        if (v->ns) break;
        if (v->nent == 0) {
            sb_str(b, "{}");
            return 0;
        }
        const entry **order = alloc_or_fail(&c->e, sizeof *order * (size_t)v->nent);
        if (order == NULL) return -1;
        for (int i = 0; i < v->nent; i++) order[i] = &v->ents[i];
        if (o->sort_keys) qsort(order, (size_t)v->nent, sizeof *order, entry_cmp);
        sb_str(b, "{");
        for (int i = 0; i < v->nent; i++) {
            if (i) sb_str(b, o->item_sep);
            if (o->indent >= 0) json_newline(b, o, level + 1);
            json_str(b, order[i]->k, order[i]->kn, o->ascii);
            sb_str(b, o->key_sep);
            if (to_json(c, b, order[i]->v, o, level + 1, line) != 0) return -1;
        }
        if (o->indent >= 0) json_newline(b, o, level);
        sb_str(b, "}");
        return 0;
    }
    default: break;
    }
    FAILF(&c->e, FG_ERR_INVALID_ARG, line, "tojson of a %s value (not JSON serializable)", kind_name(v));
    return -1;
}

static int is_num(const val *v) { return v->kind == V_INT || v->kind == V_FLOAT || v->kind == V_BOOL; }
static double num(const val *v) { return v->kind == V_FLOAT ? v->f : (double)v->i; }

/* Python ==. */
static int equal(const val *a, const val *b)
{
    if (is_num(a) && is_num(b)) {
        if (a->kind != V_FLOAT && b->kind != V_FLOAT) return a->i == b->i;
        return num(a) == num(b);
    }
    if (a->kind != b->kind) return 0;
    switch (a->kind) {
    case V_UNDEF:
    case V_NONE: return 1;
    case V_STR: return a->n == b->n && memcmp(a->s, b->s, a->n) == 0;
    case V_LIST:
        if (a->len != b->len || a->tup != b->tup) return 0;
        for (int i = 0; i < a->len; i++)
            if (!equal(a->items[i], b->items[i])) return 0;
        return 1;
    case V_DICT:
        if (a->ns || b->ns) return a == b;
        if (a->nent != b->nent) return 0;
        for (int i = 0; i < a->nent; i++) {
            const val *o = dict_get(b, a->ents[i].k, a->ents[i].kn);
            if (o == NULL || !equal(a->ents[i].v, o)) return 0;
        }
        return 1;
    case V_FUNC: return a == b;
    default: return 0;
    }
}

/* Python <, <=, >, >= on numbers, strings (code point order is UTF-8 byte
 * order) and lists; *r gets -1, 0 or 1. */
static int order(ctx *c, const val *a, const val *b, int line, int *r)
{
    if (is_num(a) && is_num(b)) {
        const double x = num(a), y = num(b);
        if (a->kind != V_FLOAT && b->kind != V_FLOAT) *r = (a->i > b->i) - (a->i < b->i);
        else *r = (x > y) - (x < y);
        return 0;
    }
    if (a->kind == V_STR && b->kind == V_STR) {
        const size_t n = a->n < b->n ? a->n : b->n;
        const int m = memcmp(a->s, b->s, n);
        *r = m ? (m > 0) - (m < 0) : (a->n > b->n) - (a->n < b->n);
        return 0;
    }
    if (a->kind == V_LIST && b->kind == V_LIST) {
        for (int i = 0; i < a->len && i < b->len; i++)
            if (!equal(a->items[i], b->items[i])) return order(c, a->items[i], b->items[i], line, r);
        *r = (a->len > b->len) - (a->len < b->len);
        return 0;
    }
    FAILF(&c->e, FG_ERR_INVALID_ARG, line, "cannot order a %s and a %s", kind_name(a), kind_name(b));
    return -1;
}

/* `x in container` */
static int contains(ctx *c, const val *container, const val *x, int line, int *r)
{
    switch (container->kind) {
    case V_STR:
        if (x->kind != V_STR) break;
        *r = 0;
        if (x->n == 0) *r = 1;
        for (size_t i = 0; !*r && i + x->n <= container->n; i++)
            *r = memcmp(container->s + i, x->s, x->n) == 0;
        return 0;
    case V_LIST:
        *r = 0;
        for (int i = 0; i < container->len && !*r; i++) *r = equal(container->items[i], x);
        return 0;
    case V_DICT:
        *r = x->kind == V_STR && dict_get(container, x->s, x->n) != NULL;
        return 0;
    case V_UNDEF: *r = 0; return 0;
    default: break;
    }
    FAILF(&c->e, FG_ERR_INVALID_ARG, line, "'in' of a %s in a %s", kind_name(x), kind_name(container));
    return -1;
}

/* The items a for loop or a filter walks: list items, dict keys, str
 * characters; undefined is empty. */
static val *iterable(ctx *c, val *v, int line)
{
    if (v->kind == V_LIST) return v;
    val *l = new_val(&c->e, V_LIST);
    if (l == NULL) return NULL;
    if (v->kind == V_UNDEF) return l;
    if (v->kind == V_DICT && !v->ns) {
        for (int i = 0; i < v->nent; i++)
            if (list_push(&c->e, l, mk_str(&c->e, v->ents[i].k, v->ents[i].kn)) != 0) return NULL;
        return l;
    }
    if (v->kind == V_STR) {
        for (size_t i = 0; i < v->n;) {
            const size_t k = u8_len((const unsigned char *)v->s + i, v->n - i);
            if (list_push(&c->e, l, mk_str(&c->e, v->s + i, k)) != 0) return NULL;
            i += k;
        }
        return l;
    }
    FAILF(&c->e, FG_ERR_INVALID_ARG, line, "a %s is not iterable", kind_name(v));
    return NULL;
}

static int undefined_error(ctx *c, const val *v, int line)
{
    if (v->s && v->s[0]) FAILF(&c->e, FG_ERR_INVALID_ARG, line, "'%s' is undefined", v->s);
    else FAILF(&c->e, FG_ERR_INVALID_ARG, line, "use of an undefined value");
    return -1;
}

/* --- rendering: expressions ----------------------------------------------------- */

static val *eval(ctx *c, const node *nd);
static int exec_body(ctx *c, const node *body, sbuf *out);

/* Python's method names per type: an attribute of these names is a method
 * (called later, refused then if this subset lacks it); any other
 * attribute of a str or list is undefined, as in Jinja. */
static const char *const STR_METHODS[] = {
    "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find",
    "format", "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit",
    "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper",
    "join", "ljust", "lower", "lstrip", "partition", "removeprefix", "removesuffix", "replace",
    "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines",
    "startswith", "strip", "swapcase", "title", "translate", "upper", "zfill"};
static const char *const DICT_METHODS[] = {"clear", "copy", "fromkeys", "get", "items", "keys",
                                           "pop", "popitem", "setdefault", "update", "values"};
static const char *const LIST_METHODS[] = {"append", "clear", "copy", "count", "extend", "index",
                                           "insert", "pop", "remove", "reverse", "sort"};

static int in_list(const char *const *list, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]) == len && memcmp(list[i], name, len) == 0) return 1;
    return 0;
}

#define IN_LIST(list, name, len) in_list((list), sizeof(list) / sizeof((list)[0]), (name), (len))

static val *bound(ctx *c, val *self, const char *name)
{
    val *f = new_val(&c->e, V_FUNC);
    if (f == NULL) return NULL;
    f->fk = F_METHOD;
    f->self = self;
    f->s = name;
    return f;
}

/* obj.name: a dict's key (its methods first, as Jinja's getattr does), a
 * namespace member, a method; undefined when there is none. */
static val *get_attr(ctx *c, val *obj, const char *name, size_t n, int line)
{
    if (obj->kind == V_UNDEF) {
        undefined_error(c, obj, line);
        return NULL;
    }
    if (obj->kind == V_DICT) {
        if (!obj->ns && IN_LIST(DICT_METHODS, name, n)) return bound(c, obj, name);
        val *v = dict_get(obj, name, n);
        return v ? v : mk_undef(&c->e, name);
    }
    if (obj->kind == V_STR && IN_LIST(STR_METHODS, name, n)) return bound(c, obj, name);
    if (obj->kind == V_LIST && IN_LIST(LIST_METHODS, name, n)) return bound(c, obj, name);
    return mk_undef(&c->e, name);
}

/* Python index normalisation: -1 is the last; *ok 0 when out of range. */
static long long norm_index(long long i, long long len, int *ok)
{
    if (i < 0) i += len;
    *ok = i >= 0 && i < len;
    return i;
}

static val *get_item(ctx *c, val *obj, val *key, int line)
{
    if (obj->kind == V_UNDEF) {
        undefined_error(c, obj, line);
        return NULL;
    }
    if (obj->kind == V_DICT) {
        if (key->kind == V_STR) {
            val *v = dict_get(obj, key->s, key->n);
            if (v) return v;
            if (!obj->ns && IN_LIST(DICT_METHODS, key->s, key->n)) return bound(c, obj, key->s);
        }
        return mk_undef(&c->e, key->kind == V_STR ? key->s : "");
    }
    if ((obj->kind == V_LIST || obj->kind == V_STR) && (key->kind == V_INT || key->kind == V_BOOL)) {
        int ok;
        if (obj->kind == V_LIST) {
            const long long i = norm_index(key->i, obj->len, &ok);
            return ok ? obj->items[i] : mk_undef(&c->e, "");
        }
        const long long i = norm_index(key->i, (long long)u8_count(obj->s, obj->n), &ok);
        if (!ok) return mk_undef(&c->e, "");
        const size_t at = u8_offset(obj->s, obj->n, (size_t)i);
        return mk_str(&c->e, obj->s + at, u8_len((const unsigned char *)obj->s + at, obj->n - at));
    }
    if (key->kind == V_STR) return get_attr(c, obj, key->s, key->n, line);
    return mk_undef(&c->e, "");
}

/* Python slice bounds for a sequence of len items. */
static int slice_bounds(ctx *c, const val *lo, const val *hi, const val *st, long long len,
                        int line, long long *start, long long *stop, long long *step)
{
    *step = 1;
    if (st && st->kind != V_NONE) {
        if (st->kind != V_INT || st->i == 0) {
            FAILF(&c->e, FG_ERR_INVALID_ARG, line, "a slice step must be a nonzero int");
            return -1;
        }
        *step = st->i;
    }
    const long long dstart = *step > 0 ? 0 : len - 1, dstop = *step > 0 ? len : -1;
    const val *b[2] = {lo, hi};
    long long out[2] = {dstart, dstop};
    for (int k = 0; k < 2; k++) {
        if (b[k] == NULL || b[k]->kind == V_NONE) continue;
        if (b[k]->kind != V_INT) {
            FAILF(&c->e, FG_ERR_INVALID_ARG, line, "slice bounds must be ints");
            return -1;
        }
        long long x = b[k]->i;
        if (x < 0) x += len;
        if (*step > 0) x = x < 0 ? 0 : x > len ? len : x;
        else x = x < -1 ? -1 : x > len - 1 ? len - 1 : x;
        out[k] = x;
    }
    *start = out[0];
    *stop = out[1];
    return 0;
}

static val *slice(ctx *c, const node *nd)
{
    val *obj = eval(c, nd->a);
    if (obj == NULL) return NULL;
    val *lo = nd->b ? eval(c, nd->b) : NULL, *hi = nd->c ? eval(c, nd->c) : NULL;
    val *st = nd->nkids ? eval(c, nd->kids[0]) : NULL;
    if ((nd->b && !lo) || (nd->c && !hi) || (nd->nkids && !st)) return NULL;
    if (obj->kind != V_LIST && obj->kind != V_STR) {
        FAILF(&c->e, FG_ERR_INVALID_ARG, nd->line, "cannot slice a %s", kind_name(obj));
        return NULL;
    }
    val *chars = obj->kind == V_STR ? iterable(c, obj, nd->line) : obj;
    if (chars == NULL) return NULL;
    long long start, stop, step;
    if (slice_bounds(c, lo, hi, st, chars->len, nd->line, &start, &stop, &step) != 0) return NULL;
    val *l = new_val(&c->e, V_LIST);
    if (l == NULL) return NULL;
    for (long long i = start; step > 0 ? i < stop : i > stop; i += step)
        if (list_push(&c->e, l, chars->items[i]) != 0) return NULL;
    if (obj->kind == V_LIST) return l;
    sbuf b = {0};
    for (int i = 0; i < l->len; i++) sb_add(&b, l->items[i]->s, l->items[i]->n);
    val *s = b.oom ? NULL : mk_str(&c->e, b.p ? b.p : "", b.n);
    free(b.p);
    if (b.oom) FAILF(&c->e, FG_ERR_OOM, nd->line, "out of memory");
    return s;
}

/* Evaluated call arguments. */
typedef struct {
    val **pos;
    int npos;
    const char **kw;
    val **kwv;
    int nkw;
} args;

static int eval_args(ctx *c, const node *nd, args *a)
{
    a->npos = nd->nkids;
    a->nkw = nd->nkids2;
    a->kw = nd->names;
    a->pos = alloc_or_fail(&c->e, sizeof *a->pos * (size_t)(nd->nkids + 1));
    a->kwv = alloc_or_fail(&c->e, sizeof *a->kwv * (size_t)(nd->nkids2 + 1));
    if (a->pos == NULL || a->kwv == NULL) return -1;
    for (int i = 0; i < nd->nkids; i++)
        if ((a->pos[i] = eval(c, nd->kids[i])) == NULL) return -1;
    for (int i = 0; i < nd->nkids2; i++)
        if ((a->kwv[i] = eval(c, nd->kids2[i])) == NULL) return -1;
    return 0;
}

/* Argument `name` at position i (counted after the subject) or by keyword;
 * NULL when absent. Unknown keywords are checked by check_args. */
static val *arg(const args *a, int i, const char *name)
{
    for (int k = 0; k < a->nkw; k++)
        if (strcmp(a->kw[k], name) == 0) return a->kwv[k];
    return i >= 0 && i < a->npos ? a->pos[i] : NULL;
}

/* At most max_pos positional arguments and only the keywords listed. */
static int check_args(ctx *c, const args *a, int max_pos, const char *const *kws, int nkws,
                      const char *what, int line)
{
    if (a->npos > max_pos) {
        FAILF(&c->e, FG_ERR_INVALID_ARG, line, "%s takes at most %d arguments (got %d)", what,
              max_pos, a->npos);
        return -1;
    }
    for (int k = 0; k < a->nkw; k++) {
        int ok = 0;
        for (int j = 0; j < nkws; j++) ok |= strcmp(a->kw[k], kws[j]) == 0;
        if (!ok) {
            FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "the argument '%s' of %s", a->kw[k], what);
            return -1;
        }
    }
    return 0;
}

static int want_str(ctx *c, const val *v, const char *what, int line)
{
    if (v && v->kind == V_STR) return 0;
    FAILF(&c->e, FG_ERR_INVALID_ARG, line, "%s needs a str, not a %s", what, v ? kind_name(v) : "nothing");
    return -1;
}

/* Case mapping is ASCII only here: non-ASCII text is refused rather than
 * left unmapped. mode: 'u' upper, 'l' lower, 'c' capitalize. */
static val *case_map(ctx *c, const val *s, char mode, int line)
{
    for (size_t i = 0; i < s->n; i++)
        if ((unsigned char)s->s[i] >= 0x80) {
            FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "changing the case of non-ASCII text");
            return NULL;
        }
    val *r = mk_str(&c->e, s->s, s->n);
    if (r == NULL) return NULL;
    char *p = (char *)r->s;
    for (size_t i = 0; i < r->n; i++) {
        const int up = mode == 'u' || (mode == 'c' && i == 0);
        if (up && p[i] >= 'a' && p[i] <= 'z') p[i] = (char)(p[i] - 32);
        if (!up && p[i] >= 'A' && p[i] <= 'Z') p[i] = (char)(p[i] + 32);
    }
    return r;
}

/* str.strip / lstrip / rstrip with chars (NULL: whitespace). which: 'b',
 * 'l', 'r'. */
static val *strip(ctx *c, const val *s, const val *chars, char which, int line)
{
    size_t lo = 0, hi = s->n;
    if (chars == NULL || chars->kind == V_NONE) {
        if (which != 'r') lo = space_prefix(s->s, s->n);
        if (which != 'l' && lo < hi) hi -= space_suffix(s->s + lo, hi - lo);
    } else {
        if (want_str(c, chars, "strip", line) != 0) return NULL;
        /* chars is a set of code points */
        for (int side = 0; side < 2; side++) {
            if ((side == 0 && which == 'r') || (side == 1 && which == 'l')) continue;
            for (;;) {
                if (lo >= hi) break;
                size_t at, l;
                if (side == 0) {
                    at = lo;
                    l = u8_len((const unsigned char *)s->s + at, hi - at);
                } else {
                    at = hi - 1;
                    while (at > lo && ((unsigned char)s->s[at] & 0xC0) == 0x80 && hi - at < 4) at--;
                    l = hi - at;
                    if (u8_len((const unsigned char *)s->s + at, l) != l) at = hi - 1, l = 1;
                }
                int found = 0;
                for (size_t k = 0; k < chars->n && !found;) {
                    const size_t cl = u8_len((const unsigned char *)chars->s + k, chars->n - k);
                    found = cl == l && memcmp(chars->s + k, s->s + at, l) == 0;
                    k += cl;
                }
                if (!found) break;
                if (side == 0) lo += l;
                else hi -= l;
            }
        }
    }
    return mk_str(&c->e, s->s + lo, hi - lo);
}

/* str.split(sep=None, maxsplit=-1) */
static val *split(ctx *c, const val *s, const val *sep, const val *maxv, int line)
{
    long long max = -1;
    if (maxv) {
        if (maxv->kind != V_INT) {
            FAILF(&c->e, FG_ERR_INVALID_ARG, line, "split's maxsplit must be an int");
            return NULL;
        }
        max = maxv->i;
    }
    val *l = new_val(&c->e, V_LIST);
    if (l == NULL) return NULL;
    if (sep == NULL || sep->kind == V_NONE) { /* runs of whitespace, no empty parts */
        size_t i = space_prefix(s->s, s->n);
        while (i < s->n) {
            size_t j = i;
            if (max >= 0 && l->len == max) /* the rest, trailing whitespace and all */
                return list_push(&c->e, l, mk_str(&c->e, s->s + i, s->n - i)) == 0 ? l : NULL;
            while (j < s->n) {
                const size_t k = u8_len((const unsigned char *)s->s + j, s->n - j);
                if (py_space(u8_decode((const unsigned char *)s->s + j, k))) break;
                j += k;
            }
            if (list_push(&c->e, l, mk_str(&c->e, s->s + i, j - i)) != 0) return NULL;
            i = j + space_prefix(s->s + j, s->n - j);
        }
        return l;
    }
    if (want_str(c, sep, "split", line) != 0) return NULL;
    if (sep->n == 0) {
        FAILF(&c->e, FG_ERR_INVALID_ARG, line, "split with an empty separator");
        return NULL;
    }
    size_t i = 0;
    for (;;) {
        size_t j = i;
        int found = 0;
        if (max < 0 || l->len < max)
            for (; j + sep->n <= s->n; j++)
                if (memcmp(s->s + j, sep->s, sep->n) == 0) {
                    found = 1;
                    break;
                }
        if (!found) j = s->n;
        if (list_push(&c->e, l, mk_str(&c->e, s->s + i, j - i)) != 0) return NULL;
        if (!found) return l;
        i = j + sep->n;
    }
}

static val *replace(ctx *c, const val *s, const val *old, const val *new_, const val *count, int line)
{
    if (want_str(c, old, "replace", line) != 0 || want_str(c, new_, "replace", line) != 0) return NULL;
    long long max = count && count->kind == V_INT ? count->i : -1;
    sbuf b = {0};
    size_t i = 0;
    long long done = 0;
    while (i <= s->n) {
        if ((max < 0 || done < max) && i + old->n <= s->n && memcmp(s->s + i, old->s, old->n) == 0) {
            sb_add(&b, new_->s, new_->n);
            done++;
            if (old->n == 0) { /* Python inserts between every character */
                if (i == s->n) break;
                const size_t k = u8_len((const unsigned char *)s->s + i, s->n - i);
                sb_add(&b, s->s + i, k);
                i += k;
            } else
                i += old->n;
            continue;
        }
        if (i == s->n) break;
        sb_add(&b, s->s + i, 1);
        i++;
    }
    val *r = b.oom ? NULL : mk_str(&c->e, b.p ? b.p : "", b.n);
    free(b.p);
    if (b.oom) FAILF(&c->e, FG_ERR_OOM, line, "out of memory");
    return r;
}

static val *join(ctx *c, val *seq, const val *sep, const val *attribute, int line)
{
    val *items = iterable(c, seq, line);
    if (items == NULL) return NULL;
    sbuf b = {0};
    int rc = 0;
    for (int i = 0; i < items->len && rc == 0; i++) {
        if (i && sep) sb_add(&b, sep->s, sep->n);
        val *x = items->items[i];
        if (attribute) {
            x = attribute->kind == V_STR ? get_attr(c, x, attribute->s, attribute->n, line)
                                         : get_item(c, x, (val *)attribute, line);
            if (x == NULL) rc = -1;
        }
        if (rc == 0) rc = to_str(c, &b, x, line);
    }
    val *r = rc != 0 || b.oom ? NULL : mk_str(&c->e, b.p ? b.p : "", b.n);
    free(b.p);
    if (b.oom) FAILF(&c->e, FG_ERR_OOM, line, "out of memory");
    return r;
}

static val *call_method(ctx *c, val *f, const args *a, int line)
{
    val *self = f->self;
    const char *m = f->s;
    char what[64];
    snprintf(what, sizeof what, "%s.%s", kind_name(self), m);
    if (self->kind == V_STR) {
        if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
            if (check_args(c, a, 1, NULL, 0, what, line) != 0) return NULL;
            return strip(c, self, arg(a, 0, "chars"), m[0] == 's' ? 'b' : m[0], line);
        }
        if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
            if (check_args(c, a, 1, NULL, 0, what, line) != 0) return NULL;
            val *x = arg(a, 0, "");
            val one = {0};
            val *cands[1];
            val list = {.kind = V_LIST, .items = cands, .len = 1};
            if (x && x->kind == V_STR) {
                one = *x;
                cands[0] = &one;
                x = &list;
            }
            if (x == NULL || x->kind != V_LIST) {
                FAILF(&c->e, FG_ERR_INVALID_ARG, line, "%s needs a str or a tuple of str", what);
                return NULL;
            }
            for (int i = 0; i < x->len; i++) {
                const val *p = x->items[i];
                if (want_str(c, p, what, line) != 0) return NULL;
                if (p->n <= self->n &&
                    memcmp(self->s + (m[0] == 's' ? 0 : self->n - p->n), p->s, p->n) == 0)
                    return &TRUE_VAL;
            }
            return &FALSE_VAL;
        }
        if (!strcmp(m, "split")) {
            static const char *const kws[] = {"sep", "maxsplit"};
            if (check_args(c, a, 2, kws, 2, what, line) != 0) return NULL;
            return split(c, self, arg(a, 0, "sep"), arg(a, 1, "maxsplit"), line);
        }
        if (!strcmp(m, "upper") || !strcmp(m, "lower") || !strcmp(m, "capitalize")) {
            if (check_args(c, a, 0, NULL, 0, what, line) != 0) return NULL;
            return case_map(c, self, m[0] == 'c' ? 'c' : m[0] == 'u' ? 'u' : 'l', line);
        }
        if (!strcmp(m, "replace")) {
            if (check_args(c, a, 3, NULL, 0, what, line) != 0) return NULL;
            return replace(c, self, arg(a, 0, ""), arg(a, 1, ""), arg(a, 2, ""), line);
        }
        if (!strcmp(m, "join")) {
            if (check_args(c, a, 1, NULL, 0, what, line) != 0) return NULL;
            if (a->npos != 1) {
                FAILF(&c->e, FG_ERR_INVALID_ARG, line, "%s takes one argument", what);
                return NULL;
            }
            return join(c, a->pos[0], self, NULL, line);
        }
        if (!strcmp(m, "find")) {
            if (check_args(c, a, 1, NULL, 0, what, line) != 0 ||
                want_str(c, arg(a, 0, ""), what, line) != 0)
                return NULL;
            const val *x = a->pos[0];
            for (size_t i = 0; i + x->n <= self->n; i++)
                if (memcmp(self->s + i, x->s, x->n) == 0) return mk_int(&c->e, (long long)u8_count(self->s, i));
            return mk_int(&c->e, -1);
        }
    } else if (self->kind == V_DICT) {
        if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
            if (check_args(c, a, 0, NULL, 0, what, line) != 0) return NULL;
            val *l = new_val(&c->e, V_LIST);
            if (l == NULL) return NULL;
            for (int i = 0; i < self->nent; i++) {
                val *k = mk_str(&c->e, self->ents[i].k, self->ents[i].kn), *x = self->ents[i].v;
                if (m[0] == 'i') {
                    val *pair = new_val(&c->e, V_LIST);
                    if (pair) pair->tup = 1;
                    if (pair == NULL || list_push(&c->e, pair, k) || list_push(&c->e, pair, x)) return NULL;
                    x = pair;
                } else if (m[0] == 'k')
                    x = k;
                if (list_push(&c->e, l, x) != 0) return NULL;
            }
            return l;
        }
        if (!strcmp(m, "get")) {
            if (check_args(c, a, 2, NULL, 0, what, line) != 0) return NULL;
            if (a->npos < 1) {
                FAILF(&c->e, FG_ERR_INVALID_ARG, line, "%s needs a key", what);
                return NULL;
            }
            val *k = a->pos[0], *v = k->kind == V_STR ? dict_get(self, k->s, k->n) : NULL;
            return v ? v : a->npos > 1 ? a->pos[1] : &NONE_VAL;
        }
    }
    FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "the method %s", what);
    return NULL;
}

/* --- filters and tests ---------------------------------------------------------- */

static int run_test(ctx *c, const char *name, val *x, const args *a, int line, int *r);

static int name_is(const char *name, const char *want) { return strcmp(name, want) == 0; }

/* select / reject / selectattr / rejectattr: items (or their attribute)
 * that pass a test (or are truthy without one). */
static val *select_items(ctx *c, val *seq, const args *a, int by_attr, int keep, int line)
{
    val *items = iterable(c, seq, line);
    if (items == NULL) return NULL;
    int first = 0;
    const val *attr = NULL;
    if (by_attr) {
        if (a->npos < 1 || want_str(c, a->pos[0], "selectattr", line) != 0) return NULL;
        attr = a->pos[0];
        first = 1;
    }
    const val *test = a->npos > first ? a->pos[first] : NULL;
    if (test && want_str(c, test, "the test name", line) != 0) return NULL;
    if (a->nkw) {
        FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "keyword arguments of select filters");
        return NULL;
    }
    if (test && !known(TESTS, sizeof TESTS / sizeof TESTS[0], &(token){.type = T_NAME, .s = test->s, .n = test->n})) {
        FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "the test '%s'", test->s);
        return NULL;
    }
    args targs = {.pos = a->pos + first + 1, .npos = a->npos > first + 1 ? a->npos - first - 1 : 0};
    val *out = new_val(&c->e, V_LIST);
    if (out == NULL) return NULL;
    for (int i = 0; i < items->len; i++) {
        val *x = items->items[i];
        if (attr && (x = get_attr(c, x, attr->s, attr->n, line)) == NULL) return NULL;
        int pass;
        if (test) {
            if (run_test(c, test->s, x, &targs, line, &pass) != 0) return NULL;
        } else
            pass = truthy(x);
        if (pass == keep && list_push(&c->e, out, items->items[i]) != 0) return NULL;
    }
    return out;
}

static val *apply_filter(ctx *c, const char *f, val *x, const args *a, int line);

static val *filter_map(ctx *c, val *seq, const args *a, int line)
{
    val *items = iterable(c, seq, line);
    if (items == NULL) return NULL;
    val *out = new_val(&c->e, V_LIST);
    if (out == NULL) return NULL;
    const val *attr = arg(a, -1, "attribute"), *dflt = arg(a, -1, "default");
    if (attr == NULL && (a->npos < 1 || want_str(c, a->pos[0], "map", line) != 0)) return NULL;
    if (attr == NULL && !known(FILTERS, sizeof FILTERS / sizeof FILTERS[0],
                               &(token){.type = T_NAME, .s = a->pos[0]->s, .n = a->pos[0]->n})) {
        FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "the filter '%s'", a->pos[0]->s);
        return NULL;
    }
    args rest = {.pos = a->pos + 1, .npos = a->npos > 1 ? a->npos - 1 : 0};
    for (int i = 0; i < items->len; i++) {
        val *y;
        if (attr) {
            y = attr->kind == V_STR ? get_attr(c, items->items[i], attr->s, attr->n, line)
                                    : get_item(c, items->items[i], (val *)attr, line);
            if (y && y->kind == V_UNDEF && dflt) y = (val *)dflt;
        } else
            y = apply_filter(c, a->pos[0]->s, items->items[i], &rest, line);
        if (list_push(&c->e, out, y) != 0) return NULL;
    }
    return out;
}

static val *apply_filter(ctx *c, const char *f, val *x, const args *a, int line)
{
    char what[48];
    snprintf(what, sizeof what, "the filter '%s'", f);
    if (name_is(f, "safe")) return x;
    if (name_is(f, "trim")) {
        if (check_args(c, a, 1, (const char *const[]){"chars"}, 1, what, line) != 0) return NULL;
        val *s = str_of(c, x, line);
        return s ? strip(c, s, arg(a, 0, "chars"), 'b', line) : NULL;
    }
    if (name_is(f, "length") || name_is(f, "count")) {
        if (check_args(c, a, 0, NULL, 0, what, line) != 0) return NULL;
        switch (x->kind) {
        case V_UNDEF: return mk_int(&c->e, 0);
        case V_STR: return mk_int(&c->e, (long long)u8_count(x->s, x->n));
        case V_LIST: return mk_int(&c->e, x->len);
        case V_DICT: if (!x->ns) return mk_int(&c->e, x->nent); break;
        default: break;
        }
        FAILF(&c->e, FG_ERR_INVALID_ARG, line, "a %s has no length", kind_name(x));
        return NULL;
    }
    if (name_is(f, "tojson")) {
        static const char *const kws[] = {"ensure_ascii", "indent", "separators", "sort_keys"};
        if (check_args(c, a, 4, kws, 4, what, line) != 0) return NULL;
        const val *ascii = arg(a, 0, "ensure_ascii"), *indent = arg(a, 1, "indent");
        const val *seps = arg(a, 2, "separators"), *sort = arg(a, 3, "sort_keys");
        json_opts o = {.indent = -1, .ascii = ascii && truthy(ascii), .sort_keys = sort && truthy(sort),
                       .item_sep = ", ", .key_sep = ": "};
        if (indent && indent->kind != V_NONE) {
            if (indent->kind != V_INT || indent->i < 0 || indent->i > 64) {
                FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "tojson's indent other than an int in [0, 64]");
                return NULL;
            }
            o.indent = (int)indent->i;
            o.item_sep = ",";
        }
        if (seps && seps->kind != V_NONE) {
            if (seps->kind != V_LIST || seps->len != 2 || seps->items[0]->kind != V_STR ||
                seps->items[1]->kind != V_STR) {
                FAILF(&c->e, FG_ERR_INVALID_ARG, line, "tojson's separators must be two str");
                return NULL;
            }
            o.item_sep = seps->items[0]->s;
            o.key_sep = seps->items[1]->s;
        }
        sbuf b = {0};
        const int rc = to_json(c, &b, x, &o, 0, line);
        val *r = rc != 0 || b.oom ? NULL : mk_str(&c->e, b.p ? b.p : "", b.n);
        free(b.p);
        if (b.oom) FAILF(&c->e, FG_ERR_OOM, line, "out of memory");
        return r;
    }
    if (name_is(f, "default") || name_is(f, "d")) {
        static const char *const kws[] = {"default_value", "boolean"};
        if (check_args(c, a, 2, kws, 2, what, line) != 0) return NULL;
        val *d = arg(a, 0, "default_value");
        const val *boolean = arg(a, 1, "boolean");
        const int use = x->kind == V_UNDEF || (boolean && truthy(boolean) && !truthy(x));
        return use ? (d ? d : mk_str(&c->e, "", 0)) : x;
    }
    if (name_is(f, "join")) {
        static const char *const kws[] = {"d", "attribute"};
        if (check_args(c, a, 2, kws, 2, what, line) != 0) return NULL;
        val *sep = arg(a, 0, "d");
        if (sep && (sep = str_of(c, sep, line)) == NULL) return NULL;
        return join(c, x, sep, arg(a, 1, "attribute"), line);
    }
    if (name_is(f, "upper") || name_is(f, "lower") || name_is(f, "capitalize")) {
        if (check_args(c, a, 0, NULL, 0, what, line) != 0) return NULL;
        val *s = str_of(c, x, line);
        return s ? case_map(c, s, f[0] == 'c' ? 'c' : f[0] == 'u' ? 'u' : 'l', line) : NULL;
    }
    if (name_is(f, "first") || name_is(f, "last")) {
        if (check_args(c, a, 0, NULL, 0, what, line) != 0) return NULL;
        if (name_is(f, "last") && x->kind == V_DICT) {
            FAILF(&c->e, FG_ERR_INVALID_ARG, line, "last of a dict");
            return NULL;
        }
        val *items = iterable(c, x, line);
        if (items == NULL) return NULL;
        if (items->len == 0) return mk_undef(&c->e, "");
        return items->items[f[0] == 'f' ? 0 : items->len - 1];
    }
    if (name_is(f, "list")) {
        if (check_args(c, a, 0, NULL, 0, what, line) != 0) return NULL;
        val *items = iterable(c, x, line);
        if (items == NULL || items != x) return items;
        val *copy = new_val(&c->e, V_LIST);
        for (int i = 0; copy && i < x->len; i++)
            if (list_push(&c->e, copy, x->items[i]) != 0) return NULL;
        return copy;
    }
    if (name_is(f, "reverse")) {
        if (check_args(c, a, 0, NULL, 0, what, line) != 0) return NULL;
        val *items = iterable(c, x, line);
        if (items == NULL) return NULL;
        val *r = new_val(&c->e, V_LIST);
        for (int i = items->len - 1; r && i >= 0; i--)
            if (list_push(&c->e, r, items->items[i]) != 0) return NULL;
        if (r == NULL || x->kind != V_STR) return r;
        sbuf b = {0};
        for (int i = 0; i < r->len; i++) sb_add(&b, r->items[i]->s, r->items[i]->n);
        val *s = b.oom ? NULL : mk_str(&c->e, b.p ? b.p : "", b.n);
        free(b.p);
        return s;
    }
    if (name_is(f, "selectattr") || name_is(f, "rejectattr"))
        return select_items(c, x, a, 1, f[0] == 's', line);
    if (name_is(f, "select") || name_is(f, "reject")) return select_items(c, x, a, 0, f[0] == 's', line);
    if (name_is(f, "map")) return filter_map(c, x, a, line);
    if (name_is(f, "items")) {
        if (check_args(c, a, 0, NULL, 0, what, line) != 0) return NULL;
        if (x->kind == V_UNDEF) return new_val(&c->e, V_LIST);
        if (x->kind != V_DICT || x->ns) {
            FAILF(&c->e, FG_ERR_INVALID_ARG, line, "items of a %s", kind_name(x));
            return NULL;
        }
        val *m = bound(c, x, "items");
        args none = {0};
        return m ? call_method(c, m, &none, line) : NULL;
    }
    if (name_is(f, "string")) {
        if (check_args(c, a, 0, NULL, 0, what, line) != 0) return NULL;
        return str_of(c, x, line);
    }
    if (name_is(f, "int") || name_is(f, "float")) {
        static const char *const kws[] = {"default", "base"};
        if (check_args(c, a, 1, kws, 1, what, line) != 0) return NULL;
        const val *d = arg(a, 0, "default");
        double v = 0;
        int ok = 1;
        if (is_num(x)) v = num(x);
        else if (x->kind == V_STR) {
            char *end;
            char tmp[64];
            const size_t lo = space_prefix(x->s, x->n), hi = x->n - space_suffix(x->s, x->n);
            ok = hi > lo && hi - lo < sizeof tmp;
            if (ok) {
                memcpy(tmp, x->s + lo, hi - lo);
                tmp[hi - lo] = '\0';
                v = f[0] == 'i' ? (double)strtoll(tmp, &end, 10) : strtod(tmp, &end);
                ok = *end == '\0';
            }
        } else
            ok = 0;
        if (!ok) {
            if (d) return (val *)d;
            return f[0] == 'i' ? mk_int(&c->e, 0) : mk_float(&c->e, 0.0);
        }
        if (f[0] == 'i') {
            if (!(v > -9.2e18 && v < 9.2e18)) {
                FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "int of a value beyond 64 bits");
                return NULL;
            }
            return x->kind == V_INT ? x : mk_int(&c->e, (long long)v);
        }
        return mk_float(&c->e, v);
    }
    if (name_is(f, "abs")) {
        if (check_args(c, a, 0, NULL, 0, what, line) != 0) return NULL;
        if (x->kind == V_INT || x->kind == V_BOOL) return mk_int(&c->e, x->i < 0 ? -x->i : x->i);
        if (x->kind == V_FLOAT) return mk_float(&c->e, fabs(x->f));
        FAILF(&c->e, FG_ERR_INVALID_ARG, line, "abs of a %s", kind_name(x));
        return NULL;
    }
    if (name_is(f, "replace")) {
        if (check_args(c, a, 3, NULL, 0, what, line) != 0) return NULL;
        val *s = str_of(c, x, line);
        return s ? replace(c, s, arg(a, 0, ""), arg(a, 1, ""), arg(a, 2, ""), line) : NULL;
    }
    FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "%s", what);
    return NULL;
}

static int run_test(ctx *c, const char *t, val *x, const args *a, int line, int *r)
{
    const val *y = a->npos > 0 ? a->pos[0] : NULL;
    int needs_arg = 0;
    if (name_is(t, "defined")) *r = x->kind != V_UNDEF;
    else if (name_is(t, "undefined")) *r = x->kind == V_UNDEF;
    else if (name_is(t, "none")) *r = x->kind == V_NONE;
    else if (name_is(t, "string")) *r = x->kind == V_STR;
    else if (name_is(t, "number")) *r = is_num(x);
    else if (name_is(t, "integer")) *r = x->kind == V_INT;
    else if (name_is(t, "float")) *r = x->kind == V_FLOAT;
    else if (name_is(t, "boolean")) *r = x->kind == V_BOOL;
    else if (name_is(t, "true")) *r = x->kind == V_BOOL && x->i;
    else if (name_is(t, "false")) *r = x->kind == V_BOOL && !x->i;
    else if (name_is(t, "mapping")) *r = x->kind == V_DICT && !x->ns;
    else if (name_is(t, "iterable"))
        *r = x->kind == V_STR || x->kind == V_LIST || (x->kind == V_DICT && !x->ns) || x->kind == V_UNDEF;
    else if (name_is(t, "sequence")) *r = x->kind == V_STR || x->kind == V_LIST || (x->kind == V_DICT && !x->ns);
    else if (name_is(t, "callable")) *r = x->kind == V_FUNC;
    else if (name_is(t, "odd") || name_is(t, "even")) {
        if (x->kind != V_INT) {
            FAILF(&c->e, FG_ERR_INVALID_ARG, line, "the test '%s' of a %s", t, kind_name(x));
            return -1;
        }
        *r = (int)(((x->i % 2) + 2) % 2) == (t[0] == 'o');
    } else if (name_is(t, "lower") || name_is(t, "upper")) {
        val *s = str_of(c, x, line), *m = s ? case_map(c, s, t[0], line) : NULL;
        if (m == NULL) return -1;
        *r = equal(s, m);
    } else {
        needs_arg = 1;
        if (y == NULL) {
            FAILF(&c->e, FG_ERR_INVALID_ARG, line, "the test '%s' needs an argument", t);
            return -1;
        }
        if (name_is(t, "divisibleby")) {
            if (x->kind != V_INT || y->kind != V_INT || y->i == 0) {
                FAILF(&c->e, FG_ERR_INVALID_ARG, line, "divisibleby needs nonzero ints");
                return -1;
            }
            *r = x->i % y->i == 0;
        } else if (name_is(t, "equalto") || name_is(t, "eq") || name_is(t, "==")) *r = equal(x, y);
        else if (name_is(t, "ne") || name_is(t, "!=")) *r = !equal(x, y);
        else if (name_is(t, "sameas"))
            *r = x == y || (x->kind == y->kind && (x->kind == V_NONE || (x->kind == V_BOOL && x->i == y->i)));
        else if (name_is(t, "in")) return contains(c, y, x, line, r);
        else {
            int o;
            if (order(c, x, y, line, &o) != 0) return -1;
            if (name_is(t, "lt") || name_is(t, "<")) *r = o < 0;
            else if (name_is(t, "le") || name_is(t, "<=")) *r = o <= 0;
            else if (name_is(t, "gt") || name_is(t, ">")) *r = o > 0;
            else *r = o >= 0; /* ge, >= */
        }
    }
    if (a->npos > needs_arg || a->nkw > 0) {
        FAILF(&c->e, FG_ERR_INVALID_ARG, line, "too many arguments for the test '%s'", t);
        return -1;
    }
    return 0;
}

/* --- calls ------------------------------------------------------------------------ */

static val *call_macro(ctx *c, const val *f, const args *a, int line)
{
    const node *m = f->macro;
    if (a->npos > m->nnames) {
        FAILF(&c->e, FG_ERR_INVALID_ARG, line, "macro '%s' takes %d arguments (got %d)", m->name,
              m->nnames, a->npos);
        return NULL;
    }
    if (++c->depth > MAX_DEPTH) {
        FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "calls nested over %d deep", MAX_DEPTH);
        return NULL;
    }
    /* a macro sees its arguments and the template's top level */
    frame *saved = c->top, *f_new = new_frame(c, c->global);
    if (f_new == NULL) return NULL;
    c->top = f_new;
    for (int k = 0; k < a->nkw; k++) {
        int found = 0;
        for (int i = 0; i < m->nnames; i++) found |= strcmp(m->names[i], a->kw[k]) == 0;
        if (!found) {
            FAILF(&c->e, FG_ERR_INVALID_ARG, line, "macro '%s' has no argument '%s'", m->name, a->kw[k]);
            c->top = saved;
            return NULL;
        }
    }
    val *r = NULL;
    for (int i = 0; i < m->nnames; i++) {
        val *v = i < a->npos ? a->pos[i] : NULL;
        for (int k = 0; k < a->nkw; k++)
            if (strcmp(m->names[i], a->kw[k]) == 0) v = a->kwv[k];
        if (v == NULL) v = m->kids2[i]->flag ? mk_undef(&c->e, m->names[i]) : eval(c, m->kids2[i]);
        if (dict_set(&c->e, f_new->vars, m->names[i], strlen(m->names[i]), v) != 0) goto done;
    }
    sbuf b = {0};
    if (exec_body(c, m->a, &b) == 0 && !b.oom) r = mk_str(&c->e, b.p ? b.p : "", b.n);
    if (b.oom) FAILF(&c->e, FG_ERR_OOM, line, "out of memory");
    free(b.p);
done:
    c->top = saved;
    c->depth--;
    return r;
}

static val *call(ctx *c, val *f, const args *a, int line)
{
    if (f->kind == V_UNDEF) {
        if (f->s && f->s[0]) FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "the function '%s' (not defined)", f->s);
        else undefined_error(c, f, line);
        return NULL;
    }
    if (f->kind != V_FUNC) {
        FAILF(&c->e, FG_ERR_INVALID_ARG, line, "a %s is not callable", kind_name(f));
        return NULL;
    }
    switch (f->fk) {
    case F_METHOD: return call_method(c, f, a, line);
    case F_MACRO: return call_macro(c, f, a, line);
    case F_RAISE: {
        sbuf b = {0};
        if (a->npos > 0) to_str(c, &b, a->pos[0], line);
        FAILF(&c->e, FG_ERR_INVALID_ARG, line, "the template raised an exception: %s", b.p ? b.p : "");
        free(b.p);
        return NULL;
    }
    case F_STRFTIME: {
        if (check_args(c, a, 1, NULL, 0, "strftime_now", line) != 0) return NULL;
        if (a->npos != 1 || want_str(c, a->pos[0], "strftime_now", line) != 0) {
            if (a->npos != 1) FAILF(&c->e, FG_ERR_INVALID_ARG, line, "strftime_now takes a format");
            return NULL;
        }
        const time_t now = time(NULL);
        struct tm tm;
        char buf[256];
        if (localtime_r(&now, &tm) == NULL) {
            FAILF(&c->e, FG_ERR_INVALID_ARG, line, "strftime_now: no local time");
            return NULL;
        }
        const size_t n = strftime(buf, sizeof buf, a->pos[0]->s, &tm);
        if (n == 0 && a->pos[0]->n > 0) {
            FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "strftime_now of this format");
            return NULL;
        }
        return mk_str(&c->e, buf, n);
    }
    case F_RANGE: {
        if (check_args(c, a, 3, NULL, 0, "range", line) != 0) return NULL;
        long long v[3] = {0, 0, 1};
        for (int i = 0; i < a->npos; i++) {
            if (a->pos[i]->kind != V_INT) {
                FAILF(&c->e, FG_ERR_INVALID_ARG, line, "range takes ints");
                return NULL;
            }
            v[i] = a->pos[i]->i;
        }
        if (a->npos == 1) v[1] = v[0], v[0] = 0;
        if (a->npos == 0 || v[2] == 0) {
            FAILF(&c->e, FG_ERR_INVALID_ARG, line, "range needs a stop and a nonzero step");
            return NULL;
        }
        val *l = new_val(&c->e, V_LIST);
        for (long long i = v[0]; l && (v[2] > 0 ? i < v[1] : i > v[1]); i += v[2]) {
            if (l->len >= MAX_RANGE) {
                FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "range of over %d items", MAX_RANGE);
                return NULL;
            }
            if (list_push(&c->e, l, mk_int(&c->e, i)) != 0) return NULL;
        }
        return l;
    }
    case F_NAMESPACE:
    case F_DICT: {
        val *d = new_val(&c->e, V_DICT);
        if (d == NULL) return NULL;
        d->ns = f->fk == F_NAMESPACE;
        if (a->npos > 1 || (a->npos == 1 && (a->pos[0]->kind != V_DICT || a->pos[0]->ns))) {
            FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "positional arguments to %s other than one dict",
                  d->ns ? "namespace" : "dict");
            return NULL;
        }
        for (int i = 0; a->npos == 1 && i < a->pos[0]->nent; i++)
            if (dict_set(&c->e, d, a->pos[0]->ents[i].k, a->pos[0]->ents[i].kn, a->pos[0]->ents[i].v) != 0)
                return NULL;
        for (int k = 0; k < a->nkw; k++) {
            if (d->ns && a->kw[k][0] == '_') {
                FAILF(&c->e, FG_ERR_INVALID_ARG, line, "namespace attribute '%s' starts with '_'", a->kw[k]);
                return NULL;
            }
            if (dict_set(&c->e, d, a->kw[k], strlen(a->kw[k]), a->kwv[k]) != 0) return NULL;
        }
        return d;
    }
    }
    return NULL;
}

/* --- expressions ----------------------------------------------------------------- */

static val *arith(ctx *c, const char *op, val *x, val *y, int line)
{
    if (x->kind == V_UNDEF) return undefined_error(c, x, line), NULL;
    if (y->kind == V_UNDEF) return undefined_error(c, y, line), NULL;
    if (op[0] == '+' && x->kind == V_STR && y->kind == V_STR) {
        val *r = new_val(&c->e, V_STR);
        char *p = alloc_or_fail(&c->e, x->n + y->n + 1);
        if (r == NULL || p == NULL) return NULL;
        memcpy(p, x->s, x->n);
        memcpy(p + x->n, y->s, y->n);
        r->s = p;
        r->n = x->n + y->n;
        return r;
    }
    if (op[0] == '+' && x->kind == V_LIST && y->kind == V_LIST) {
        val *r = new_val(&c->e, V_LIST);
        for (int i = 0; r && i < x->len + y->len; i++)
            if (list_push(&c->e, r, i < x->len ? x->items[i] : y->items[i - x->len]) != 0) return NULL;
        return r;
    }
    if (op[0] == '*' && op[1] == '\0' && ((x->kind == V_STR && y->kind == V_INT) ||
                                          (x->kind == V_INT && y->kind == V_STR))) {
        const val *s = x->kind == V_STR ? x : y;
        const long long k = x->kind == V_INT ? x->i : y->i;
        if (k > 0 && s->n * (unsigned long long)k > MAX_OUTPUT) {
            FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "a string over %d bytes", MAX_OUTPUT);
            return NULL;
        }
        sbuf b = {0};
        for (long long i = 0; i < k; i++) sb_add(&b, s->s, s->n);
        val *r = b.oom ? NULL : mk_str(&c->e, b.p ? b.p : "", b.n);
        free(b.p);
        if (b.oom) FAILF(&c->e, FG_ERR_OOM, line, "out of memory");
        return r;
    }
    if (op[0] == '%' && x->kind == V_STR) {
        FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "string formatting with '%%'");
        return NULL;
    }
    if (!is_num(x) || !is_num(y)) {
        FAILF(&c->e, FG_ERR_INVALID_ARG, line, "'%s' of a %s and a %s", op, kind_name(x), kind_name(y));
        return NULL;
    }
    const int ints = x->kind != V_FLOAT && y->kind != V_FLOAT;
    const double a = num(x), b = num(y);
    if ((op[0] == '/' || op[0] == '%') && b == 0) {
        FAILF(&c->e, FG_ERR_INVALID_ARG, line, "division by zero");
        return NULL;
    }
    if (ints && op[0] != '/' && strcmp(op, "**") != 0) {
        const long long p = x->i, q = y->i;
        long long r;
        if (op[0] == '+' ? __builtin_add_overflow(p, q, &r)
            : op[0] == '-' ? __builtin_sub_overflow(p, q, &r)
            : op[0] == '*' ? __builtin_mul_overflow(p, q, &r)
                           : (r = p % q, 0)) {
            FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "integers beyond 64 bits");
            return NULL;
        }
        if (op[0] == '%' && r != 0 && ((r < 0) != (q < 0))) r += q; /* Python's sign rule */
        return mk_int(&c->e, r);
    }
    if (ints && op[0] == '/' && op[1] == '/') {
        long long r = x->i / y->i;
        if ((x->i % y->i != 0) && ((x->i < 0) != (y->i < 0))) r--; /* floor */
        return mk_int(&c->e, r);
    }
    if (ints && strcmp(op, "**") == 0 && y->i >= 0) {
        const double r = pow(a, b);
        if (!(fabs(r) < 9.2e18)) {
            FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "integers beyond 64 bits");
            return NULL;
        }
        return mk_int(&c->e, (long long)r);
    }
    double r;
    switch (op[0]) {
    case '+': r = a + b; break;
    case '-': r = a - b; break;
    case '*': r = op[1] == '*' ? pow(a, b) : a * b; break;
    case '/': r = op[1] == '/' ? floor(a / b) : a / b; break;
    default: r = fmod(a, b); if (r != 0 && ((r < 0) != (b < 0))) r += b; break;
    }
    return mk_float(&c->e, r);
}

static val *binop(ctx *c, const node *nd)
{
    val *x = eval(c, nd->a);
    val *y = x ? eval(c, nd->b) : NULL;
    if (y == NULL) return NULL;
    const char *op = nd->name;
    int r;
    if (!strcmp(op, "==")) return mk_bool(equal(x, y));
    if (!strcmp(op, "!=")) return mk_bool(!equal(x, y));
    if (!strcmp(op, "in") || !strcmp(op, "not in")) {
        if (contains(c, y, x, nd->line, &r) != 0) return NULL;
        return mk_bool(op[0] == 'n' ? !r : r);
    }
    if (op[0] == '<' || op[0] == '>') {
        if (order(c, x, y, nd->line, &r) != 0) return NULL;
        if (op[0] == '<') return mk_bool(op[1] ? r <= 0 : r < 0);
        return mk_bool(op[1] ? r >= 0 : r > 0);
    }
    if (op[0] == '~') {
        sbuf b = {0};
        int rc = to_str(c, &b, x, nd->line);
        if (rc == 0) rc = to_str(c, &b, y, nd->line);
        val *s = rc != 0 || b.oom ? NULL : mk_str(&c->e, b.p ? b.p : "", b.n);
        free(b.p);
        if (b.oom) FAILF(&c->e, FG_ERR_OOM, nd->line, "out of memory");
        return s;
    }
    return arith(c, op, x, y, nd->line);
}

static int count_step(ctx *c, int line)
{
    if (++c->steps <= MAX_STEPS) return 0;
    FAILF(&c->e, FG_ERR_UNSUPPORTED, line, "rendering takes over %ld steps", MAX_STEPS);
    return -1;
}

static val *eval(ctx *c, const node *nd)
{
    if (c->e.st != FG_OK || count_step(c, nd->line) != 0) return NULL;
    if (++c->depth > MAX_DEPTH) {
        FAILF(&c->e, FG_ERR_UNSUPPORTED, nd->line, "evaluation nested over %d deep", MAX_DEPTH);
        return NULL;
    }
    val *r = NULL, *x;
    args a;
    switch (nd->type) {
    case E_LIT: r = nd->lit; break;
    case E_NAME:
        r = lookup(c, nd->name, nd->nlen);
        if (r == NULL) r = mk_undef(&c->e, nd->name);
        break;
    case E_ATTR:
        if ((x = eval(c, nd->a)) != NULL) r = get_attr(c, x, nd->name, nd->nlen, nd->line);
        break;
    case E_ITEM: {
        val *k;
        if ((x = eval(c, nd->a)) != NULL && (k = eval(c, nd->b)) != NULL)
            r = get_item(c, x, k, nd->line);
        break;
    }
    case E_SLICE: r = slice(c, nd); break;
    case E_CALL:
        if ((x = eval(c, nd->a)) != NULL && eval_args(c, nd, &a) == 0) r = call(c, x, &a, nd->line);
        break;
    case E_FILTER:
        if ((x = eval(c, nd->a)) != NULL && eval_args(c, nd, &a) == 0)
            r = apply_filter(c, nd->name, x, &a, nd->line);
        break;
    case E_TEST: {
        int pass;
        /* `x is defined` must not fail on an undefined x's attribute chain
         * beyond what Jinja allows: evaluation errors still propagate */
        if ((x = eval(c, nd->a)) != NULL && eval_args(c, nd, &a) == 0 &&
            run_test(c, nd->name, x, &a, nd->line, &pass) == 0)
            r = mk_bool(nd->flag ? !pass : pass);
        break;
    }
    case E_NEG:
    case E_POS:
        if ((x = eval(c, nd->a)) == NULL) break;
        if (x->kind == V_INT || x->kind == V_BOOL) r = mk_int(&c->e, nd->type == E_NEG ? -x->i : x->i);
        else if (x->kind == V_FLOAT) r = mk_float(&c->e, nd->type == E_NEG ? -x->f : x->f);
        else FAILF(&c->e, FG_ERR_INVALID_ARG, nd->line, "unary minus of a %s", kind_name(x));
        break;
    case E_NOT:
        if ((x = eval(c, nd->a)) != NULL) r = mk_bool(!truthy(x));
        break;
    case E_AND: /* Python: the deciding operand itself */
        if ((x = eval(c, nd->a)) != NULL) r = truthy(x) ? eval(c, nd->b) : x;
        break;
    case E_OR:
        if ((x = eval(c, nd->a)) != NULL) r = truthy(x) ? x : eval(c, nd->b);
        break;
    case E_COND:
        if ((x = eval(c, nd->b)) != NULL)
            r = truthy(x) ? eval(c, nd->a) : nd->c ? eval(c, nd->c) : mk_undef(&c->e, "");
        break;
    case E_BIN: r = binop(c, nd); break;
    case E_LIST:
        r = new_val(&c->e, V_LIST);
        if (r) r->tup = nd->flag;
        for (int i = 0; r && i < nd->nkids; i++)
            if (list_push(&c->e, r, eval(c, nd->kids[i])) != 0) r = NULL;
        break;
    case E_DICT:
        r = new_val(&c->e, V_DICT);
        for (int i = 0; r && i < nd->nkids; i++) {
            val *k = eval(c, nd->kids[i]), *v = k ? eval(c, nd->kids2[i]) : NULL;
            if (v == NULL) r = NULL;
            else if (k->kind != V_STR) {
                FAILF(&c->e, FG_ERR_UNSUPPORTED, nd->line, "dict keys other than str");
                r = NULL;
            } else if (dict_set(&c->e, r, k->s, k->n, v) != 0)
                r = NULL;
        }
        break;
    default: FAILF(&c->e, FG_ERR_FORMAT, nd->line, "a statement where an expression belongs"); break;
    }
    c->depth--;
    return c->e.st == FG_OK ? r : NULL;
}

/* --- statements ------------------------------------------------------------------ */

static int exec_stmt(ctx *c, const node *nd, sbuf *out);

static int exec_body(ctx *c, const node *body, sbuf *out)
{
    for (int i = 0; i < body->nkids && c->loop_ctl == 0; i++)
        if (exec_stmt(c, body->kids[i], out) != 0) return -1;
    return 0;
}

static int exec_for(ctx *c, const node *nd, sbuf *out)
{
    val *seq = eval(c, nd->a);
    if (seq == NULL) return -1;
    if (seq->kind == V_NONE) {
        FAILF(&c->e, FG_ERR_INVALID_ARG, nd->line, "a none value is not iterable");
        return -1;
    }
    val *items = iterable(c, seq, nd->line);
    if (items == NULL) return -1;
    frame *saved = c->top;
    /* the loop's filter is applied first: loop.length counts what passes */
    if (nd->b) {
        val *kept = new_val(&c->e, V_LIST);
        if (kept == NULL) return -1;
        for (int i = 0; i < items->len; i++) {
            frame *f = new_frame(c, saved);
            if (f == NULL) return -1;
            c->top = f;
            int rc = 0;
            for (int k = 0; k < nd->nnames && rc == 0; k++) {
                val *x = items->items[i];
                if (nd->nnames > 1) {
                    if (x->kind != V_LIST || x->len != nd->nnames) {
                        FAILF(&c->e, FG_ERR_INVALID_ARG, nd->line, "cannot unpack into %d names", nd->nnames);
                        rc = -1;
                        break;
                    }
                    x = x->items[k];
                }
                rc = dict_set(&c->e, f->vars, nd->names[k], strlen(nd->names[k]), x);
            }
            val *ok = rc == 0 ? eval(c, nd->b) : NULL;
            c->top = saved;
            if (ok == NULL) return -1;
            if (truthy(ok) && list_push(&c->e, kept, items->items[i]) != 0) return -1;
        }
        items = kept;
    }
    for (int i = 0; i < items->len; i++) {
        frame *f = new_frame(c, saved);
        val *loop = new_val(&c->e, V_DICT);
        if (f == NULL || loop == NULL) return -1;
        c->top = f;
        val *x = items->items[i];
        int rc = 0;
        for (int k = 0; k < nd->nnames && rc == 0; k++) {
            val *xk = x;
            if (nd->nnames > 1) {
                if (x->kind != V_LIST || x->len != nd->nnames) {
                    FAILF(&c->e, FG_ERR_INVALID_ARG, nd->line, "cannot unpack into %d names", nd->nnames);
                    rc = -1;
                    break;
                }
                xk = x->items[k];
            }
            rc = dict_set(&c->e, f->vars, nd->names[k], strlen(nd->names[k]), xk);
        }
        const int n = items->len;
        if (rc == 0)
            rc = dict_set(&c->e, loop, "index", 5, mk_int(&c->e, i + 1)) ||
                 dict_set(&c->e, loop, "index0", 6, mk_int(&c->e, i)) ||
                 dict_set(&c->e, loop, "revindex", 8, mk_int(&c->e, n - i)) ||
                 dict_set(&c->e, loop, "revindex0", 9, mk_int(&c->e, n - i - 1)) ||
                 dict_set(&c->e, loop, "first", 5, mk_bool(i == 0)) ||
                 dict_set(&c->e, loop, "last", 4, mk_bool(i == n - 1)) ||
                 dict_set(&c->e, loop, "length", 6, mk_int(&c->e, n)) ||
                 dict_set(&c->e, loop, "depth", 5, mk_int(&c->e, 1)) ||
                 dict_set(&c->e, loop, "depth0", 6, mk_int(&c->e, 0)) ||
                 dict_set(&c->e, loop, "previtem", 8, i > 0 ? items->items[i - 1] : mk_undef(&c->e, "loop.previtem")) ||
                 dict_set(&c->e, loop, "nextitem", 8, i + 1 < n ? items->items[i + 1] : mk_undef(&c->e, "loop.nextitem")) ||
                 dict_set(&c->e, f->vars, "loop", 4, loop);
        if (rc == 0) rc = exec_body(c, nd->c, out);
        c->top = saved;
        if (rc != 0) return -1;
        const int ctl = c->loop_ctl;
        c->loop_ctl = 0;
        if (ctl == 1) break;
    }
    if (items->len == 0 && nd->nkids2 > 0) return exec_body(c, nd->kids2[0], out);
    return 0;
}

static int exec_stmt(ctx *c, const node *nd, sbuf *out)
{
    if (c->e.st != FG_OK || count_step(c, nd->line) != 0) return -1;
    if (out->oom) {
        FAILF(&c->e, FG_ERR_OOM, nd->line, "out of memory");
        return -1;
    }
    if (out->n > MAX_OUTPUT) {
        FAILF(&c->e, FG_ERR_UNSUPPORTED, nd->line, "output over %d bytes", MAX_OUTPUT);
        return -1;
    }
    if (++c->depth > MAX_DEPTH) {
        FAILF(&c->e, FG_ERR_UNSUPPORTED, nd->line, "statements nested over %d deep", MAX_DEPTH);
        return -1;
    }
    int rc = 0;
    val *v;
    switch (nd->type) {
    case N_BODY: rc = exec_body(c, nd, out); break;
    case N_TEXT: sb_add(out, nd->name, nd->nlen); break;
    case N_OUTPUT:
        v = eval(c, nd->a);
        rc = v ? to_str(c, out, v, nd->line) : -1;
        break;
    case N_IF:
        v = eval(c, nd->a);
        if (v == NULL) rc = -1;
        else if (truthy(v)) rc = exec_body(c, nd->b, out);
        else if (nd->c) rc = exec_stmt(c, nd->c, out);
        break;
    case N_FOR: rc = exec_for(c, nd, out); break;
    case N_SET:
        v = eval(c, nd->a);
        rc = v ? dict_set(&c->e, c->top->vars, nd->name, nd->nlen, v) : -1;
        break;
    case N_SET_ATTR: {
        val *ns = lookup(c, nd->name, nd->nlen);
        if (ns == NULL || ns->kind != V_DICT || !ns->ns) {
            FAILF(&c->e, FG_ERR_INVALID_ARG, nd->line, "'%s' is not a namespace: cannot set an attribute", nd->name);
            rc = -1;
            break;
        }
        if (nd->names[0][0] == '_') {
            FAILF(&c->e, FG_ERR_INVALID_ARG, nd->line, "namespace attribute '%s' starts with '_'", nd->names[0]);
            rc = -1;
            break;
        }
        v = eval(c, nd->a);
        rc = v ? dict_set(&c->e, ns, nd->names[0], strlen(nd->names[0]), v) : -1;
        break;
    }
    case N_SET_BLOCK: {
        sbuf b = {0};
        rc = exec_body(c, nd->a, &b);
        if (rc == 0 && b.oom) {
            FAILF(&c->e, FG_ERR_OOM, nd->line, "out of memory");
            rc = -1;
        }
        if (rc == 0) rc = dict_set(&c->e, c->top->vars, nd->name, nd->nlen, mk_str(&c->e, b.p ? b.p : "", b.n));
        free(b.p);
        break;
    }
    case N_MACRO:
        v = new_val(&c->e, V_FUNC);
        if (v == NULL) {
            rc = -1;
            break;
        }
        v->fk = F_MACRO;
        v->macro = nd;
        rc = dict_set(&c->e, c->top->vars, nd->name, nd->nlen, v);
        break;
    case N_BREAK: c->loop_ctl = 1; break;
    case N_CONTINUE: c->loop_ctl = 2; break;
    default: FAILF(&c->e, FG_ERR_FORMAT, nd->line, "an expression where a statement belongs"); rc = -1;
    }
    c->depth--;
    return rc == 0 && c->e.st == FG_OK ? 0 : -1;
}

/* --- JSON variables -------------------------------------------------------------- */

static val *from_json(ctx *c, const cJSON *j, int depth)
{
    if (depth > MAX_DEPTH) {
        FAILF(&c->e, FG_ERR_UNSUPPORTED, 0, "variables nested over %d deep", MAX_DEPTH);
        return NULL;
    }
    if (cJSON_IsNull(j)) return &NONE_VAL;
    if (cJSON_IsBool(j)) return mk_bool(cJSON_IsTrue(j));
    if (cJSON_IsString(j)) return mk_str(&c->e, j->valuestring, strlen(j->valuestring));
    if (cJSON_IsNumber(j)) {
        /* cJSON keeps no int/float distinction: whole numbers are ints */
        const double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) return mk_int(&c->e, (long long)d);
        return mk_float(&c->e, d);
    }
    if (cJSON_IsArray(j)) {
        val *l = new_val(&c->e, V_LIST);
        for (const cJSON *e = j->child; l && e; e = e->next)
            if (list_push(&c->e, l, from_json(c, e, depth + 1)) != 0) return NULL;
        return l;
    }
    if (cJSON_IsObject(j)) {
        val *d = new_val(&c->e, V_DICT);
        for (const cJSON *e = j->child; d && e; e = e->next)
            if (dict_set(&c->e, d, e->string, strlen(e->string), from_json(c, e, depth + 1)) != 0) return NULL;
        return d;
    }
    FAILF(&c->e, FG_ERR_FORMAT, 0, "a JSON value of unknown type");
    return NULL;
}

fg_status fgi_jinja_render(const fgi_jinja *t, const cJSON *vars, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    ctx c = {.e = {.st = FG_OK}, .a = {.limit = MAX_RENDER_BYTES}};
    c.e.a = &c.a;
    sbuf b = {0};
    c.global = new_frame(&c, NULL);
    c.top = c.global;
    static const struct {
        const char *name;
        fkind fk;
    } globals[] = {{"raise_exception", F_RAISE}, {"strftime_now", F_STRFTIME}, {"range", F_RANGE},
                   {"namespace", F_NAMESPACE}, {"dict", F_DICT}};
    for (size_t i = 0; c.global && i < sizeof globals / sizeof globals[0]; i++) {
        val *f = new_val(&c.e, V_FUNC);
        if (f == NULL) break;
        f->fk = globals[i].fk;
        dict_set(&c.e, c.global->vars, globals[i].name, strlen(globals[i].name), f);
    }
    for (const cJSON *e = vars ? vars->child : NULL; c.global && e && c.e.st == FG_OK; e = e->next)
        dict_set(&c.e, c.global->vars, e->string, strlen(e->string), from_json(&c, e, 0));
    if (c.e.st == FG_OK && c.global) exec_body(&c, t->root, &b);
    if (c.e.st == FG_OK && b.oom) c.e.st = fgi_fail(FG_ERR_OOM, "%s: out of memory", FN);
    arena_free(&c.a);
    if (c.e.st != FG_OK) {
        free(b.p);
        return c.e.st;
    }
    if (b.p == NULL) b.p = calloc(1, 1);
    if (b.p == NULL) return fgi_fail(FG_ERR_OOM, "%s: out of memory", FN);
    *out = b.p;
    *len = b.n;
    return FG_OK;
}
