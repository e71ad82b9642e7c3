/* Internal interfaces of the model loaders (prefix fgi_).
 *
 * Data flows one way: a reader (a file, or a memory image for the fuzzers)
 * -> a format parser that validates every size against the reader's length
 * -> a list of tensor reads -> an fg_model whose weights live in one arena.
 * The parse-from-memory entry points exist so that fuzzers need no files.
 * `fn` is always the public function being run; it starts every message,
 * followed by the file name: "<fn>: <file>: <problem>". */
#ifndef FLASHGPT_HOST_LOADER_INTERNAL_H
#define FLASHGPT_HOST_LOADER_INTERNAL_H

#include "check.h"
#include "flashgpt/dtype.h"
#include "flashgpt/loader.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The model object ------------------------------------------------------------ */

/* Which optional tensors a model carries. */
typedef struct {
    int wpe;      /* GPT-2 learned position table (n_ctx, C) */
    int biases;   /* GPT-2 norm, projection and MLP biases */
    int qkv_bias; /* c_attn_b; with biases for GPT-2, optional for Llama */
    int lm_head;  /* separate classifier (vocab, C); else tied to wte */
} fgi_model_parts;

/* The tensors of decoder.h's layout, each (rows, cols) row-major as there:
 * matrices (in, out), vectors (1, n), the fused [q | k | v] projection and
 * its bias, the classifier (vocab, C). Slots from FGI_SLOT_LN_1_G on exist
 * once per layer. */
typedef enum {
    FGI_SLOT_WTE, FGI_SLOT_WPE, FGI_SLOT_LN_F_G, FGI_SLOT_LN_F_B, FGI_SLOT_LM_HEAD,
    FGI_SLOT_LN_1_G, FGI_SLOT_LN_1_B, FGI_SLOT_C_ATTN_W, FGI_SLOT_C_ATTN_B,
    FGI_SLOT_C_PROJ_W, FGI_SLOT_C_PROJ_B, FGI_SLOT_LN_2_G, FGI_SLOT_LN_2_B,
    FGI_SLOT_FC_W, FGI_SLOT_FC_B, FGI_SLOT_UP_W, FGI_SLOT_MLP_PROJ_W, FGI_SLOT_MLP_PROJ_B,
    FGI_SLOT_COUNT
} fgi_slot;
#define FGI_SLOT_FIRST_LAYER FGI_SLOT_LN_1_G

typedef enum { FGI_F32 = 0, FGI_F16 = 1, FGI_BF16 = 2 } fgi_dtype;

/* One stored tensor of a mapped checkpoint and where it goes: stored
 * (rows, cols) row-major at src; source row r (after the optional RoPE
 * permutation, see fgi_placement) becomes element
 * col_off + placed(r) * stride + c of the slot (flat, row-major), or with
 * transpose element col_off + c * stride + placed(r). */
typedef struct {
    const unsigned char *src; /* in a mapping the model owns (or the caller's memory) */
    fgi_dtype dtype;
    size_t rows, cols;
    fgi_slot slot;
    int layer;                /* -1 for the model-wide slots */
    size_t col_off, stride;
    int transpose, rope_head_dim;
} fgi_source_part;

/* A read-only mapping of a whole file (or nothing, for an empty one). */
typedef struct {
    void *addr;
    size_t len;
} fgi_mapping;

struct fg_model {
    fg_config cfg;
    fgi_model_parts parts;
    fg_weights weights;       /* views into arena; all NULL until widened */
    fg_layer_weights *layers; /* n_layer entries, weights.layers */
    float *arena;             /* every weight of the model (fp32), or NULL */
    /* Lazily widened models (Hugging Face checkpoints): the stored tensors
     * and the mappings they live in; the arena is made from them on the
     * first fg_model_weights. Eager models (random, llama2.c) have none. */
    fgi_source_part *sources;
    size_t n_sources;
    fgi_mapping *maps;
    size_t n_maps;
    void *lock;               /* pthread mutex guarding the widening */
};

/* Allocates a model for cfg (which must already be valid) with zeroed
 * weights laid out in one arena. */
fg_status fgi_model_alloc(const char *fn, fg_model **model, const fg_config *cfg,
                          const fgi_model_parts *parts);
/* A model for cfg whose fp32 arena is made later, from `sources` (taken
 * over: freed with the model, also on failure) and `maps` (likewise
 * unmapped with it). */
fg_status fgi_model_alloc_lazy(const char *fn, fg_model **model, const fg_config *cfg,
                               const fgi_model_parts *parts, fgi_source_part *sources,
                               size_t n_sources, fgi_mapping *maps, size_t n_maps);
struct fgi_reader_s;
/* Moves the readers' mappings into the model (which reads its tensors from
 * them); on failure destroys *model and sets it to NULL. */
fg_status fgi_model_adopt(const char *fn, fg_model **model, struct fgi_reader_s *readers,
                          size_t n);
/* The fp32 weights of a model, widened from its sources on the first call
 * (thread-safe); FG_ERR_OOM when the arena cannot be allocated. */
fg_status fgi_model_widen(const char *fn, const fg_model *model, const fg_weights **out);

/* Shape of a slot of the model's layout; 0 when the model has no such
 * tensor (a tied classifier, no biases, ...). */
int fgi_model_slot_shape(const fg_model *m, fgi_slot slot, size_t *rows, size_t *cols);
/* Rows [row0, row0 + n_rows) of a slot (layer ignored for model-wide slots)
 * in element type `dtype` written row-major to out,
 * converted from whatever the checkpoint stores (16-bit to 16-bit of the same type is a
 * plain copy; narrowing rounds to nearest even as fg_dtype_from_f32). Reads the mapping
 * of a lazy model without widening it; an eager model's fp32 arena otherwise. */
fg_status fgi_model_rows(const char *fn, const fg_model *m, fgi_slot slot, int layer,
                         size_t row0, size_t n_rows, fg_dtype dtype, void *out);
/* When the whole slot is one stored tensor already in `dtype` and in the
 * layout (no transpose, permutation or fusion), the bytes in the mapping;
 * else NULL. Lets an upload copy straight from the mapping. */
const void *fgi_model_slot_bytes(const fg_model *m, fgi_slot slot, int layer, fg_dtype dtype);

/* The model owns the arena its const weight views point into, so a loader
 * may write through them. */
float *fgi_writable(const float *weight);

/* "<fn>: <file>: <problem>" with the given status. */
fg_status fgi_file_error(fg_status status, const char *fn, const char *file,
                         const char *fmt, ...) FGI_PRINTF(4, 5);

/* Re-reports a failed fgi_check_config (FG_ERR_INVALID_ARG, message
 * "<fn>: <problem>") as a malformed file. */
fg_status fgi_config_format_error(const char *fn, const char *file);

/* Load progress ------------------------------------------------------------------ */

/* A caller's fg_load_progress_fn and the bytes counted so far. Every
 * function here is a no-op for NULL or a NULL fn. */
typedef struct {
    fg_load_progress_fn fn;
    void *user;
    uint64_t done, total;
} fgi_progress;

void fgi_progress_begin(fgi_progress *p, uint64_t total); /* reports 0 */
void fgi_progress_add(fgi_progress *p, uint64_t bytes);
void fgi_progress_finish(fgi_progress *p);                /* reports total */

/* Readers ----------------------------------------------------------------------- */

typedef struct fgi_reader_s {
    const char *fn;           /* public function, for messages */
    const char *name;         /* file name, for messages */
    uint64_t size;            /* length in bytes */
    const unsigned char *mem; /* the file mapped read-only, or an image in memory */
    fgi_mapping map;          /* the mapping reader_open made; {0}: none (memory reader) */
    fgi_progress *progress;   /* tensor bytes read are counted here; NULL: not */
} fgi_reader;

/* Maps a regular file read-only: FG_ERR_IO when missing, unreadable, a
 * folder or not mappable. The file is never read into a buffer: tensors
 * are read (or copied to the card) straight from the mapping. */
fg_status fgi_reader_open(fgi_reader *r, const char *fn, const char *path);
void fgi_reader_memory(fgi_reader *r, const char *fn, const char *name,
                       const void *data, size_t size);
void fgi_reader_close(fgi_reader *r); /* unmaps; no-op for memory readers */
/* Takes the mapping away from the reader (which then no longer unmaps it). */
fgi_mapping fgi_reader_take_mapping(fgi_reader *r);
void fgi_mapping_release(fgi_mapping *m);
/* Touches every page of the reader's bytes in chunks, counting them as
 * read (a progress callback's view of a load: the disk reads happen here
 * rather than later, during the upload or the widening). */
void fgi_reader_prefault(const fgi_reader *r);
/* Exactly `bytes` bytes at `offset`; past the end is FG_ERR_FORMAT. */
fg_status fgi_reader_read(const fgi_reader *r, void *dst, uint64_t offset,
                          size_t bytes);

/* Tensor reads ------------------------------------------------------------------ */

/* Where a stored (rows, cols) matrix goes. Source row r (after the optional
 * RoPE permutation) becomes destination row r, or destination column r when
 * transposed; destination rows are dst_stride floats apart, so a matrix can
 * fill a column block of a wider one (the fused q|k|v projection). */
typedef struct {
    float *dst;
    size_t dst_stride;
    int transpose;
    int rope_head_dim; /* > 0: rows are heads of this size in half-split
                          rotary order; reorder them to interleaved pairs */
} fgi_placement;

typedef struct {
    uint64_t offset;   /* absolute byte offset in the file */
    fgi_dtype dtype;   /* little-endian storage */
    size_t rows, cols; /* stored row-major; a vector is (1, n) */
    fgi_placement place;
} fgi_tensor_read;

/* Reads, converts to float and places one tensor; scratch must hold
 * rows*cols floats unless the placement is a plain contiguous copy. */
fg_status fgi_read_tensor(const fgi_reader *r, const fgi_tensor_read *t,
                          float *scratch);

/* The destination row of source row r of a half-split rotary matrix with
 * heads of head_dim rows: feature j < d/2 of a head goes to 2j, feature
 * j + d/2 to 2j + 1. */
size_t fgi_rope_interleaved_row(size_t r, int head_dim);

/* safetensors ------------------------------------------------------------------- */

#define FGI_ST_MAX_DIMS 8
/* Far above any real header (a few hundred bytes per tensor), low enough
 * that parsing cannot take unbounded memory. */
#define FGI_ST_MAX_HEADER ((uint64_t)16 << 20)

typedef struct {
    char *name;
    char dtype[8];   /* as written in the file, e.g. "BF16" */
    int dtype_bytes;
    int n_dims;
    int64_t shape[FGI_ST_MAX_DIMS];
    uint64_t begin, end; /* relative to the data region */
    int used;            /* set by the model loader */
} fgi_st_tensor;

typedef struct {
    fgi_st_tensor *tensors; /* sorted by name */
    size_t n_tensors;
    uint64_t data_start;    /* 8 + header length */
    uint64_t data_size;
} fgi_st_header;

/* Parses and validates the JSON header (json_len bytes, need not end in
 * NUL) of a file whose data region holds data_size bytes: every entry's
 * dtype, shape and offsets, sizes in 64 bits, no duplicate names, tensors
 * contiguous, in order of offset and covering the data region exactly. */
fg_status fgi_safetensors_parse_header(fgi_st_header *h, const char *fn,
                                       const char *file, const char *json,
                                       size_t json_len, uint64_t data_size);
/* Reads the 8-byte length and the header from r, then parses them. */
fg_status fgi_safetensors_open(fgi_st_header *h, const fgi_reader *r);
void fgi_safetensors_free(fgi_st_header *h);
fgi_st_tensor *fgi_safetensors_find(const fgi_st_header *h, const char *name);
/* The loader's dtype for a tensor; FG_ERR_UNSUPPORTED for dtypes other than
 * F32, F16 and BF16. */
fg_status fgi_safetensors_dtype(const fgi_st_tensor *t, const char *fn,
                                const char *file, fgi_dtype *dtype);

/* Hugging Face folder ------------------------------------------------------------ */

typedef struct {
    fg_config cfg;
    int tied;     /* classifier tied to the embeddings */
    int qkv_bias; /* q/k/v biases required (Qwen2); else optional (Llama) */
} fgi_hf_config;

/* Parses config.json text (len bytes, need not end in NUL). */
fg_status fgi_hf_config_parse(fgi_hf_config *out, const char *fn,
                              const char *file, const char *json, size_t len);
/* Builds the model from a parsed configuration and the safetensors file
 * (checked, not read: the model points into st's bytes, which must outlive
 * it, or be handed over with fgi_model_adopt). */
fg_status fgi_hf_load(fg_model **model, const char *fn,
                      const fgi_hf_config *config, const fgi_reader *st);
/* Parses and checks model.safetensors.index.json text (len bytes, need
 * not end in NUL): a non-empty "weight_map" of tensor -> plain file name,
 * no tensor twice; *n_shards distinct files, *n_tensors entries. (The
 * folder loader then checks the index against the shards.) */
fg_status fgi_hf_index_parse(const char *fn, const char *file, const char *json, size_t len,
                             size_t *n_shards, size_t *n_tensors);
/* The whole folder: dir/config.json and dir/model.safetensors (or the
 * shards of dir/model.safetensors.index.json); progress (may be NULL)
 * counts the reads of the weight files. */
fg_status fgi_hf_load_folder(fg_model **model, const char *fn, const char *dir,
                             fgi_progress *progress);

/* llama2.c checkpoint --------------------------------------------------------------- */

#define FGI_LLAMA2C_HEADER_BYTES 28

typedef struct {
    fg_config cfg;
    int tied;       /* vocab_size > 0: classifier tied to the embeddings */
    int seq_len;    /* rows of the stored RoPE tables */
} fgi_llama2c_header;

/* Parses the 7-int32 header from the first len bytes of a file of
 * file_size bytes, whose size must be exactly what the header implies. */
fg_status fgi_llama2c_parse_header(fgi_llama2c_header *h, const char *fn,
                                   const char *file, const unsigned char *bytes,
                                   size_t len, uint64_t file_size);
fg_status fgi_llama2c_load(fg_model **model, const fgi_reader *r);
fg_status fgi_llama2c_load_file(fg_model **model, const char *fn, const char *path,
                                fgi_progress *progress);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_HOST_LOADER_INTERNAL_H */
