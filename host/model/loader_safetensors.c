/* safetensors header parsing and validation.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, optional
 * "__metadata__": {...}}, then the data region; offsets are relative to the
 * data region. Like the reference implementation, the tensors must tile the
 * data region exactly: sorted by offset, each starts where the previous one
 * ends, and the last ends at the end of the file. So every byte of a tensor
 * is known to exist before anything is read, and no two tensors share bytes.
 * Sizes are computed in 64 bits with overflow checks; the JSON is parsed with
 * cJSON from a NUL-terminated copy (never past the header's bytes). */
#include "loader_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Every dtype the format defines, so that sizes of tensors the model does
 * not use are still checked; the loader converts only F32, F16 and BF16. */
static const struct {
    const char *name;
    int bytes;
} dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
    {"I16", 2}, {"I8", 1},  {"U64", 8}, {"U32", 4},  {"U16", 2}, {"U8", 1},
    {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

typedef struct {
    const char *fn, *file;
} source;

/* A JSON number that is a whole number in [0, 2^53] (exact in a double). */
static int json_count(const cJSON *item, uint64_t *value)
{
    if (!cJSON_IsNumber(item)) return 0;
    const double d = item->valuedouble;
    if (!(d >= 0.0 && d <= 9007199254740992.0) || d != floor(d)) return 0;
    *value = (uint64_t)d;
    return 1;
}

static fg_status parse_dtype(const source *s, const char *name, const cJSON *entry,
                             fgi_st_tensor *t)
{
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(dtype))
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                              "tensor '%s' has no \"dtype\" string", FGI_QUOTE(name));
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        if (strcmp(dtype->valuestring, dtypes[i].name) == 0) {
            snprintf(t->dtype, sizeof t->dtype, "%s", dtypes[i].name);
            t->dtype_bytes = dtypes[i].bytes;
            return FG_OK;
        }
    }
    return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                          "tensor '%s' has unknown dtype '%s'", FGI_QUOTE(name),
                          fgi_quote_bytes((char[200]){0}, 200, dtype->valuestring,
                                          strlen(dtype->valuestring)));
}

/* Shape and offsets; the byte count they imply must match. */
static fg_status parse_extent(const source *s, const char *name, const cJSON *entry,
                              uint64_t data_size, fgi_st_tensor *t)
{
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    const cJSON *dim;
    uint64_t bytes = (uint64_t)t->dtype_bytes, begin, end;
    int overflow = 0;
    if (!cJSON_IsArray(shape))
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                              "tensor '%s' has no \"shape\" array", FGI_QUOTE(name));
    cJSON_ArrayForEach(dim, shape)
    {
        uint64_t n;
        if (t->n_dims == FGI_ST_MAX_DIMS)
            return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                                  "tensor '%s' has more than %d dimensions", FGI_QUOTE(name),
                                  FGI_ST_MAX_DIMS);
        if (!json_count(dim, &n))
            return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                                  "tensor '%s' has a shape entry that is not a "
                                  "non-negative integer", FGI_QUOTE(name));
        t->shape[t->n_dims++] = (int64_t)n;
        overflow |= __builtin_mul_overflow(bytes, n, &bytes);
    }
    if (cJSON_GetArraySize(offsets) != 2 || !cJSON_IsArray(offsets) ||
        !json_count(offsets->child, &begin) || !json_count(offsets->child->next, &end))
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                              "tensor '%s' needs \"data_offsets\": [begin, end] "
                              "of non-negative integers", FGI_QUOTE(name));
    if (begin > end || end > data_size)
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                              "tensor '%s' data_offsets [%llu, %llu] are not within "
                              "the %llu-byte data region", FGI_QUOTE(name),
                              (unsigned long long)begin, (unsigned long long)end,
                              (unsigned long long)data_size);
    if (overflow || bytes != end - begin)
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                              "tensor '%s' spans %llu bytes but its shape and dtype "
                              "%s need %s%llu", FGI_QUOTE(name),
                              (unsigned long long)(end - begin), t->dtype,
                              overflow ? "more than " : "",
                              overflow ? (unsigned long long)UINT64_MAX
                                       : (unsigned long long)bytes);
    t->begin = begin;
    t->end = end;
    return FG_OK;
}

static fg_status parse_entry(const source *s, const cJSON *entry,
                             uint64_t data_size, fgi_st_tensor *t)
{
    const char *name = entry->string;
    if (!cJSON_IsObject(entry))
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                              "header entry '%s' is not an object", FGI_QUOTE(name));
    FGI_TRY(parse_dtype(s, name, entry, t));
    FGI_TRY(parse_extent(s, name, entry, data_size, t));
    const size_t len = strlen(name);
    FGI_TRY(fgi_alloc(s->fn, (void **)&t->name, len + 1, 1));
    memcpy(t->name, name, len + 1);
    return FG_OK;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const fgi_st_tensor *)a)->name, ((const fgi_st_tensor *)b)->name);
}

static int by_offset(const void *a, const void *b)
{
    const fgi_st_tensor *x = *(const fgi_st_tensor *const *)a;
    const fgi_st_tensor *y = *(const fgi_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Names unique; data contiguous, in order, covering the region exactly. */
static fg_status check_layout(const source *s, const fgi_st_header *h)
{
    for (size_t i = 1; i < h->n_tensors; i++)
        if (strcmp(h->tensors[i - 1].name, h->tensors[i].name) == 0)
            return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                                  "duplicate tensor name '%s'", FGI_QUOTE(h->tensors[i].name));
    const fgi_st_tensor **order;
    FGI_TRY(fgi_alloc(s->fn, (void **)&order, h->n_tensors, sizeof *order));
    for (size_t i = 0; i < h->n_tensors; i++) order[i] = &h->tensors[i];
    if (h->n_tensors > 0) qsort(order, h->n_tensors, sizeof *order, by_offset);
    uint64_t at = 0;
    fg_status st = FG_OK;
    for (size_t i = 0; i < h->n_tensors && st == FG_OK; i++) {
        if (order[i]->begin != at)
            st = fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                                "tensor '%s' starts at data byte %llu, but the previous "
                                "tensor ends at %llu (tensors must be contiguous and "
                                "must not overlap)", FGI_QUOTE(order[i]->name),
                                (unsigned long long)order[i]->begin,
                                (unsigned long long)at);
        at = order[i]->end;
    }
    if (st == FG_OK && at != h->data_size)
        st = fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                            "the tensors end at data byte %llu but the data region "
                            "has %llu bytes", (unsigned long long)at,
                            (unsigned long long)h->data_size);
    free(order);
    return st;
}

static fg_status parse_tree(const source *s, const cJSON *root, fgi_st_header *h)
{
    const cJSON *entry;
    size_t n = 0;
    if (!cJSON_IsObject(root))
        return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                              "header is not a JSON object");
    cJSON_ArrayForEach(entry, root) n++;
    FGI_TRY(fgi_alloc(s->fn, (void **)&h->tensors, n, sizeof *h->tensors));
    cJSON_ArrayForEach(entry, root)
    {
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(entry))
                return fgi_file_error(FG_ERR_FORMAT, s->fn, s->file,
                                      "\"__metadata__\" is not an object");
            continue;
        }
        FGI_TRY(parse_entry(s, entry, h->data_size, &h->tensors[h->n_tensors]));
        h->n_tensors++;
    }
    if (h->n_tensors > 0)
        qsort(h->tensors, h->n_tensors, sizeof *h->tensors, by_name);
    return check_layout(s, h);
}

fg_status fgi_safetensors_parse_header(fgi_st_header *h, const char *fn,
                                       const char *file, const char *json,
                                       size_t json_len, uint64_t data_size)
{
    const source s = {fn, file};
    char *text;
    *h = (fgi_st_header){.data_size = data_size};
    if (json_len > FGI_ST_MAX_HEADER)
        return fgi_file_error(FG_ERR_FORMAT, fn, file,
                              "header of %zu bytes is over the %llu-byte limit",
                              json_len, (unsigned long long)FGI_ST_MAX_HEADER);
    if (memchr(json, '\0', json_len) != NULL)
        return fgi_file_error(FG_ERR_FORMAT, fn, file, "header contains a NUL byte");
    FGI_TRY(fgi_alloc(fn, (void **)&text, json_len + 1, 1));
    memcpy(text, json, json_len);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    fg_status st;
    if (root == NULL) {
        const size_t at = end != NULL && end >= text ? (size_t)(end - text) : 0;
        st = fgi_file_error(FG_ERR_FORMAT, fn, file,
                            "header is not valid JSON (near byte %zu of %zu)", at,
                            json_len);
    } else {
        st = parse_tree(&s, root, h);
    }
    cJSON_Delete(root);
    free(text);
    if (st != FG_OK) fgi_safetensors_free(h);
    return st;
}

fg_status fgi_safetensors_open(fgi_st_header *h, const fgi_reader *r)
{
    unsigned char prefix[8];
    uint64_t n = 0;
    *h = (fgi_st_header){0};
    if (r->size < 8)
        return fgi_file_error(FG_ERR_FORMAT, r->fn, r->name,
                              "file is %llu bytes, too short for the 8-byte header "
                              "length", (unsigned long long)r->size);
    FGI_TRY(fgi_reader_read(r, prefix, 0, 8));
    for (int i = 7; i >= 0; i--) n = n << 8 | prefix[i];
    if (n > r->size - 8)
        return fgi_file_error(FG_ERR_FORMAT, r->fn, r->name,
                              "header length %llu is past the end of the file (%llu "
                              "bytes)", (unsigned long long)n,
                              (unsigned long long)r->size);
    if (n > FGI_ST_MAX_HEADER)
        return fgi_file_error(FG_ERR_FORMAT, r->fn, r->name,
                              "header length %llu is over the %llu-byte limit",
                              (unsigned long long)n,
                              (unsigned long long)FGI_ST_MAX_HEADER);
    char *json;
    FGI_TRY(fgi_alloc(r->fn, (void **)&json, (size_t)n, 1));
    fg_status st = fgi_reader_read(r, json, 8, (size_t)n);
    if (st == FG_OK)
        st = fgi_safetensors_parse_header(h, r->fn, r->name, json, (size_t)n,
                                          r->size - 8 - n);
    free(json);
    if (st == FG_OK) h->data_start = 8 + n;
    return st;
}

void fgi_safetensors_free(fgi_st_header *h)
{
    for (size_t i = 0; i < h->n_tensors; i++) free(h->tensors[i].name);
    free(h->tensors);
    *h = (fgi_st_header){0};
}

fgi_st_tensor *fgi_safetensors_find(const fgi_st_header *h, const char *name)
{
    if (h->n_tensors == 0) return NULL;
    fgi_st_tensor key = {.name = (char *)name};
    return bsearch(&key, h->tensors, h->n_tensors, sizeof key, by_name);
}

fg_status fgi_safetensors_dtype(const fgi_st_tensor *t, const char *fn,
                                const char *file, fgi_dtype *dtype)
{
    if (strcmp(t->dtype, "F32") == 0) *dtype = FGI_F32;
    else if (strcmp(t->dtype, "F16") == 0) *dtype = FGI_F16;
    else if (strcmp(t->dtype, "BF16") == 0) *dtype = FGI_BF16;
    else
        return fgi_file_error(FG_ERR_UNSUPPORTED, fn, file,
                              "tensor '%s' has dtype %s; only F32, F16 and BF16 "
                              "are supported", FGI_QUOTE(t->name), t->dtype);
    return FG_OK;
}
