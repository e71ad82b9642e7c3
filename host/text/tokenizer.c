/* Tokenizers, the shared part: argument checking and dispatch of the public
 * fgi_tokenizer_* calls, the spelling -> id hash map, the BPE merge engine
 * both formats use, and whole-file reading.
 *
 * The merge engine keeps the symbols in a doubly linked list and every
 * mergeable adjacent pair in a min-heap on (priority, position); a popped
 * pair is used only if its two symbols are still adjacent with the same ids,
 * so stale entries are skipped instead of removed. That makes a sequence of
 * n symbols O(n log n) where rescanning for the best pair would be O(n^2). */
#define _POSIX_C_SOURCE 200809L
#include "input.h"
#include "tokenizer_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* --- object lifetime and accessors ------------------------------------- */

fg_status fgi_tokenizer_new(const char *fn, fg_tokenizer **tok, fgi_tokenizer_kind kind,
                            int vocab_size)
{
    fg_tokenizer *t = NULL;
    FGI_TRY(fgi_alloc(fn, (void **)&t, 1, sizeof *t));
    t->kind = kind;
    t->vocab_size = vocab_size;
    t->bos = t->eos = t->dummy_prefix = -1;
    fg_status st = fgi_alloc(fn, (void **)&t->spelling_at, (size_t)vocab_size + 1, sizeof(size_t));
    if (st == FG_OK)
        st = fgi_alloc(fn, (void **)&t->output_at, (size_t)vocab_size + 1, sizeof(size_t));
    if (st != FG_OK) {
        fg_tokenizer_destroy(t);
        return st;
    }
    *tok = t;
    return FG_OK;
}

void fg_tokenizer_destroy(fg_tokenizer *tok)
{
    if (tok == NULL) return;
    free(tok->spelling);
    free(tok->output);
    free(tok->spelling_at);
    free(tok->output_at);
    free(tok->lookup.slots);
    free(tok->merges);
    free(tok->scores);
    free(tok->first_output);
    free(tok->first_output_at);
    fgi_json_state_free(tok->json);
    free(tok);
}

int fg_tokenizer_vocab_size(const fg_tokenizer *tok) { return tok ? tok->vocab_size : 0; }
int fg_tokenizer_bos(const fg_tokenizer *tok) { return tok ? tok->bos : -1; }
int fg_tokenizer_eos(const fg_tokenizer *tok) { return tok ? tok->eos : -1; }

/* --- encode / decode ------------------------------------------------------ */

static fg_status encode(const char *fn, const fg_tokenizer *tok, const char *text,
                        size_t len, unsigned flags, int *ids, int capacity, int *n_ids);

fg_status fg_tokenizer_encode(const fg_tokenizer *tok, const char *text, size_t len,
                              int add_bos, int *ids, int capacity, int *n_ids)
{
    return encode("fg_tokenizer_encode", tok, text, len, add_bos ? FG_ENCODE_ADD_SPECIAL : 0u,
                  ids, capacity, n_ids);
}

fg_status fg_tokenizer_encode_ex(const fg_tokenizer *tok, const char *text, size_t len,
                                 unsigned flags, int *ids, int capacity, int *n_ids)
{
    static const char fn[] = "fg_tokenizer_encode_ex";
    if (flags & ~(unsigned)(FG_ENCODE_ADD_SPECIAL | FG_ENCODE_SPLIT_SPECIAL))
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'flags' has unknown bits (0x%x)", fn,
                       flags);
    return encode(fn, tok, text, len, flags, ids, capacity, n_ids);
}

/* Copies count ids to the caller when they fit (see fg_tokenizer_encode). */
static fg_status hand_over(const char *fn, const int *out, int count, int *ids, int capacity,
                           int *n_ids)
{
    *n_ids = count;
    if (count > capacity)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'capacity' is too small: the text needs %d ids (got %d)",
                       fn, count, capacity);
    if (count > 0) memcpy(ids, out, (size_t)count * sizeof *ids);
    return FG_OK;
}

static fg_status encode(const char *fn, const fg_tokenizer *tok, const char *text,
                        size_t len, unsigned flags, int *ids, int capacity, int *n_ids)
{
    const int add_bos = (flags & FG_ENCODE_ADD_SPECIAL) != 0;
    FGI_TRY(fgi_check_ptr(fn, "tok", tok));
    FGI_TRY(fgi_check_ptr(fn, "text", text));
    FGI_TRY(fgi_check_ptr(fn, "n_ids", n_ids));
    FGI_TRY(fgi_check_min(fn, "capacity", capacity, 0));
    if (capacity > 0) FGI_TRY(fgi_check_ptr(fn, "ids", ids));
    if (len > (size_t)INT_MAX - 2)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'len' must be <= %d bytes (got %zu)", fn,
                       INT_MAX - 2, len);
    if (tok->kind == FGI_TOKENIZER_JSON) {
        int *out = NULL, count = 0;
        FGI_TRY(fgi_json_encode(tok, (const unsigned char *)text, len, flags, &out, &count));
        fg_status st = hand_over(fn, out, count, ids, capacity, n_ids);
        free(out);
        return st;
    }
    if (add_bos && tok->bos < 0)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'add_bos' is set but this vocabulary has no BOS token",
                       fn);

    /* Every byte yields at most one id, plus BOS and llama2.c's dummy space. */
    int *out = NULL;
    fgi_bpe_work work;
    memset(&work, 0, sizeof work);
    FGI_TRY(fgi_alloc(fn, (void **)&out, len + 2, sizeof *out));
    fg_status st = fgi_bpe_work_init(fn, &work, tok, len + 1);
    if (st != FG_OK) {
        free(out);
        return st;
    }
    int count = 0;
    const unsigned char *bytes = (const unsigned char *)text;
    if (tok->kind == FGI_TOKENIZER_GPT2)
        fgi_gpt2_encode(tok, bytes, len, add_bos, out, &count, &work);
    else
        fgi_llama2c_encode(tok, bytes, len, add_bos, out, &count, &work);
    fgi_bpe_work_free(&work);
    st = hand_over(fn, out, count, ids, capacity, n_ids);
    free(out);
    return st;
}

static fg_status check_id(const char *fn, const char *name, const fg_tokenizer *tok,
                          int id)
{
    if (id < 0 || id >= tok->vocab_size)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument '%s' must be a token id in [0, %d) (got %d)", fn,
                       name, tok->vocab_size, id);
    return FG_OK;
}

/* The bytes of id after prev; both already validated. */
static const char *piece_of(const fg_tokenizer *tok, int prev, int id, size_t *len)
{
    if (prev < 0 && tok->first_output != NULL) {
        *len = tok->first_output_at[id + 1] - tok->first_output_at[id];
        return tok->first_output + tok->first_output_at[id];
    }
    const char *p = tok->output + tok->output_at[id];
    size_t n = tok->output_at[id + 1] - tok->output_at[id];
    if (tok->strip_space_after_bos && prev == tok->bos && n > 0 && p[0] == ' ') {
        p++;
        n--;
    }
    *len = n;
    return p;
}

fg_status fg_tokenizer_piece(const fg_tokenizer *tok, int prev, int id,
                             const char **bytes, size_t *len)
{
    static const char fn[] = "fg_tokenizer_piece";
    FGI_TRY(fgi_check_ptr(fn, "tok", tok));
    FGI_TRY(fgi_check_ptr(fn, "bytes", bytes));
    FGI_TRY(fgi_check_ptr(fn, "len", len));
    if (prev != -1) FGI_TRY(check_id(fn, "prev", tok, prev));
    FGI_TRY(check_id(fn, "id", tok, id));
    *bytes = piece_of(tok, prev, id, len);
    return FG_OK;
}

fg_status fg_tokenizer_decode(const fg_tokenizer *tok, const int *ids, int n, char *out,
                              size_t cap, size_t *len)
{
    static const char fn[] = "fg_tokenizer_decode";
    FGI_TRY(fgi_check_ptr(fn, "tok", tok));
    FGI_TRY(fgi_check_ptr(fn, "ids", ids));
    FGI_TRY(fgi_check_ptr(fn, "len", len));
    FGI_TRY(fgi_check_min(fn, "n", n, 0));
    if (cap > 0) FGI_TRY(fgi_check_ptr(fn, "out", out));
    size_t total = 0, piece_len;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size)
            return fgi_fail(FG_ERR_INVALID_ARG,
                           "%s: argument 'ids' holds %d at index %d, outside [0, %d)", fn,
                           ids[i], i, tok->vocab_size);
        piece_of(tok, i > 0 ? ids[i - 1] : -1, ids[i], &piece_len);
        total += piece_len;
    }
    *len = total;
    if (total > cap)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'cap' is too small: the ids decode to %zu bytes (got %zu)",
                       fn, total, cap);
    if (total == 0) return FG_OK; /* out may be NULL */
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *p = piece_of(tok, i > 0 ? ids[i - 1] : -1, ids[i], &piece_len);
        memcpy(out + at, p, piece_len);
        at += piece_len;
    }
    return FG_OK;
}

/* --- files and messages --------------------------------------------------- */

fg_status fgi_tokenizer_read_file(const char *fn, const char *path, uint64_t max_bytes,
                                  const char *what, char **data, size_t *len)
{
    return fgi_load_input(fn, path, max_bytes, what, data, len);
}

/* --- spelling -> id map --------------------------------------------------- */

fg_status fgi_string_map_init(const char *fn, fgi_string_map *map, size_t n_entries)
{
    size_t capacity = 16;
    while (capacity < 2 * n_entries) capacity *= 2; /* load factor <= 1/2 */
    FGI_TRY(fgi_alloc(fn, (void **)&map->slots, capacity, sizeof *map->slots));
    for (size_t i = 0; i < capacity; i++) map->slots[i] = -1;
    map->mask = capacity - 1;
    map->key = fgi_hash_key_random();
    return FG_OK;
}

/* The slot holding s, or the empty slot where it would go. */
static size_t map_slot(const fgi_string_map *map, const fg_tokenizer *tok, const char *s,
                       size_t n)
{
    size_t i = (size_t)fgi_hash_bytes(&map->key, s, n) & map->mask;
    for (;;) {
        int id = map->slots[i];
        if (id < 0) return i;
        if (fgi_spelling_len(tok, id) == n &&
            memcmp(tok->spelling + tok->spelling_at[id], s, n) == 0)
            return i;
        i = (i + 1) & map->mask;
    }
}

int fgi_string_map_insert(fgi_string_map *map, const fg_tokenizer *tok, int id)
{
    size_t i = map_slot(map, tok, tok->spelling + tok->spelling_at[id],
                        fgi_spelling_len(tok, id));
    if (map->slots[i] >= 0) return map->slots[i];
    map->slots[i] = id;
    return -1;
}

int fgi_string_map_find(const fgi_string_map *map, const fg_tokenizer *tok, const char *s,
                        size_t n)
{
    return map->slots[map_slot(map, tok, s, n)];
}

/* --- BPE merge engine ----------------------------------------------------- */

fg_status fgi_bpe_work_init(const char *fn, fgi_bpe_work *work, const fg_tokenizer *tok,
                            size_t max_symbols)
{
    memset(work, 0, sizeof *work);
    /* The heap receives the n - 1 initial pairs plus at most two per merge. */
    fg_status st = fgi_alloc(fn, (void **)&work->id, max_symbols, sizeof(int));
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&work->prev, max_symbols, sizeof(int));
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&work->next, max_symbols, sizeof(int));
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&work->pending, max_symbols, sizeof(int));
    if (st == FG_OK)
        st = fgi_alloc(fn, (void **)&work->heap, max_symbols, 3 * sizeof(fgi_bpe_candidate));
    if (st == FG_OK) st = fgi_alloc(fn, (void **)&work->scratch, 2 * tok->max_spelling + 1, 1);
    if (st != FG_OK) fgi_bpe_work_free(work);
    return st;
}

void fgi_bpe_work_free(fgi_bpe_work *work)
{
    free(work->id);
    free(work->prev);
    free(work->next);
    free(work->pending);
    free(work->heap);
    free(work->scratch);
    memset(work, 0, sizeof *work);
}

static int candidate_before(const fgi_bpe_candidate *a, const fgi_bpe_candidate *b)
{
    return a->priority < b->priority || (a->priority == b->priority && a->left < b->left);
}

static void heap_push(fgi_bpe_work *w, fgi_bpe_candidate c)
{
    size_t i = w->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!candidate_before(&c, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = c;
}

static fgi_bpe_candidate heap_pop(fgi_bpe_work *w)
{
    fgi_bpe_candidate top = w->heap[0], last = w->heap[--w->heap_len];
    size_t i = 0, n = w->heap_len;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && candidate_before(&w->heap[child + 1], &w->heap[child])) child++;
        if (!candidate_before(&w->heap[child], &last)) break;
        w->heap[i] = w->heap[child];
        i = child;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

/* Queues the pair starting at symbol `left` if the rule lets it merge. */
static void queue_pair(fgi_bpe_work *w, const fg_tokenizer *tok, fgi_pair_rule rule,
                       int left)
{
    if (left < 0 || w->id[left] < 0 || w->next[left] < 0) return;
    fgi_bpe_candidate c = {0.0, left, w->id[left], w->id[w->next[left]], -1};
    if (rule(tok, c.left_id, c.right_id, &c.priority, &c.merged, w->scratch))
        heap_push(w, c);
}

static int still_adjacent(const fgi_bpe_work *w, const fgi_bpe_candidate *c)
{
    int right = w->next[c->left];
    return w->id[c->left] == c->left_id && right >= 0 && w->id[right] == c->right_id;
}

int fgi_bpe_merge(fgi_bpe_work *w, const fg_tokenizer *tok, fgi_pair_rule rule,
                  int whole_passes, int *ids, int n)
{
    if (n < 2) return n;
    for (int i = 0; i < n; i++) {
        w->id[i] = ids[i];
        w->prev[i] = i - 1;
        w->next[i] = i + 1 < n ? i + 1 : -1;
    }
    w->heap_len = 0;
    for (int i = 0; i + 1 < n; i++) queue_pair(w, tok, rule, i);

    int n_pending = 0;
    double pass_priority = 0.0;
    for (;;) {
        /* A pass ends when no queued pair of its priority is left; only then
         * may the pairs its merges formed compete. */
        if (n_pending > 0 && (w->heap_len == 0 || w->heap[0].priority != pass_priority)) {
            for (int k = 0; k < n_pending; k++) {
                queue_pair(w, tok, rule, w->prev[w->pending[k]]);
                queue_pair(w, tok, rule, w->pending[k]);
            }
            n_pending = 0;
        }
        if (w->heap_len == 0) break;
        fgi_bpe_candidate c = heap_pop(w);
        if (!still_adjacent(w, &c)) continue;
        /* The right symbol folds into the left one: symbol 0 always survives. */
        int right = w->next[c.left];
        w->id[c.left] = c.merged;
        w->id[right] = -1;
        w->next[c.left] = w->next[right];
        if (w->next[right] >= 0) w->prev[w->next[right]] = c.left;
        if (whole_passes) {
            w->pending[n_pending++] = c.left;
            pass_priority = c.priority;
        } else {
            queue_pair(w, tok, rule, w->prev[c.left]);
            queue_pair(w, tok, rule, c.left);
        }
    }
    int count = 0;
    for (int i = 0; i >= 0; i = w->next[i]) ids[count++] = w->id[i];
    return count;
}
