/* The list of every fg_cuda_* entry point (an X-macro file: no include
 * guard, included on purpose more than once). flashgpt/cuda.h declares the
 * API from it; host/core/cuda_unavailable.c turns the same list into the
 * stubs of a build without CUDA, so a function cannot be declared without
 * its stub. Read it as the reference of the CUDA API: types and
 * conventions are in flashgpt/cuda.h.
 *
 * Each entry is FG_CUDA_FN(fallback, return type, name, (parameters));
 * fallback says what the no-CUDA stub does:
 *   STATUS  returns FG_ERR_UNSUPPORTED with a message naming the function;
 *   FREE    as STATUS, but a NULL pointer is FG_OK (free's contract);
 *   VOID    nothing (destroy functions: NULL and non-NULL alike);
 *   ZERO    returns 0;    MINUS1  returns -1;    NULL  returns NULL. */
#ifndef FG_CUDA_FN
#error "flashgpt/cuda_api.h is an X-macro list: include flashgpt/cuda.h instead"
#endif

/* Device and memory -------------------------------------------------------- */

/* 1 when this build has CUDA and a device can be used, else 0 (never fails). */
FG_CUDA_FN(ZERO, int, fg_cuda_available, (void))
/* Name, multiprocessor count and memory of the current device. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_device_info, (char *name, size_t name_len, int *sm_count,
                                                    size_t *total_bytes))
/* Device memory free now and in all, in bytes (what a server can still
 * place: caches, more sessions). */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_memory_info, (size_t *free_bytes, size_t *total_bytes))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_malloc, (void **ptr, size_t bytes))
FG_CUDA_FN(FREE, fg_status, fg_cuda_free, (void *ptr)) /* NULL is a no-op */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_upload, (void *dst_device, const void *src_host,
                                               size_t bytes))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_download, (void *dst_host, const void *src_device,
                                                 size_t bytes))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_memset, (void *dst_device, int byte, size_t bytes))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_synchronize, (cudaStream_t stream))

/* Operations (device pointers) --------------------------------------------- */

FG_CUDA_FN(STATUS, fg_status, fg_cuda_softmax, (float *y, const float *x, int outer, int n,
                                                int inner, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_softmax_typed, (fg_dtype dtype, void *y, const void *x,
                                                      int outer, int n, int inner,
                                                      cudaStream_t stream))
/* No typed twin: the mask holds no float data. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_causal_mask, (uint8_t *mask, int q_len, int kv_len,
                                                    cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_attention, (float *out, const float *q, const float *k,
                                                  const float *v, int q_len, int kv_len,
                                                  int head_dim, cudaStream_t stream))
/* block_size (>= 1) selects the key tile among the kernel's supported sizes:
 * the largest one not above it, or the smallest when it is below all; the
 * result does not depend on it. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_attention_flash, (float *out, const float *q, const float *k,
                                                        const float *v, int q_len, int kv_len,
                                                        int head_dim, int block_size,
                                                        cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_split_heads, (float *out, const float *x, int seq, int n_head,
                                                    int head_dim, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_split_heads_typed, (fg_dtype dtype, void *out,
                                                          const void *x, int seq, int n_head,
                                                          int head_dim, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_merge_heads, (float *out, const float *x, int n_head, int seq,
                                                    int head_dim, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_merge_heads_typed, (fg_dtype dtype, void *out,
                                                          const void *x, int n_head, int seq,
                                                          int head_dim, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_mha, (float *out, const float *q, const float *k,
                                            const float *v, int n_head, int q_len, int kv_len,
                                            int head_dim, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_gqa, (float *out, const float *q, const float *k,
                                            const float *v, int n_q_head, int n_kv_head, int q_len,
                                            int kv_len, int head_dim, cudaStream_t stream))
/* GQA with a sliding window (fg_ref_gqa_window): row i sees its last
 * `window` keys (0: all). */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_gqa_window, (float *out, const float *q, const float *k,
                                                   const float *v, int n_q_head, int n_kv_head,
                                                   int q_len, int kv_len, int head_dim, int window,
                                                   cudaStream_t stream))
/* GQA that also writes each query row's log-sum-exp of the scaled scores,
 * lse (n_q_head, q_len) (natural log). */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_gqa_lse, (float *out, float *lse, const float *q,
                                                const float *k, const float *v, int n_q_head,
                                                int n_kv_head, int q_len, int kv_len, int head_dim,
                                                cudaStream_t stream))
/* The attention functions above in element type dtype (flashgpt/dtype.h):
 * q, k, v and out hold dtype elements, lse stays fp32; _typed(FG_DTYPE_F32,
 * ...) is the fp32 function itself. bf16 / f16 run on the tensor cores
 * (sm_80 and later) with fp32 accumulation and softmax: head_dim 32, 64,
 * 80, 96, 128 or 256 and 16-byte aligned tensors, FG_ERR_UNSUPPORTED
 * otherwise; block_size is checked but the 16-bit kernel has one key tile
 * per head_dim. Tolerance: the 16-bit rule of docs/contract.md §32. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_attention_typed, (fg_dtype dtype, void *out, const void *q,
                                                        const void *k, const void *v, int q_len,
                                                        int kv_len, int head_dim,
                                                        cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_attention_flash_typed, (fg_dtype dtype, void *out,
                                                              const void *q, const void *k,
                                                              const void *v, int q_len,
                                                              int kv_len, int head_dim,
                                                              int block_size,
                                                              cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_mha_typed, (fg_dtype dtype, void *out, const void *q,
                                                  const void *k, const void *v, int n_head,
                                                  int q_len, int kv_len, int head_dim,
                                                  cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_gqa_typed, (fg_dtype dtype, void *out, const void *q,
                                                  const void *k, const void *v, int n_q_head,
                                                  int n_kv_head, int q_len, int kv_len,
                                                  int head_dim, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_gqa_lse_typed, (fg_dtype dtype, void *out, float *lse,
                                                      const void *q, const void *k,
                                                      const void *v, int n_q_head, int n_kv_head,
                                                      int q_len, int kv_len, int head_dim,
                                                      cudaStream_t stream))

/* Decode attention over a batch of sequences, one new query row each
 * (docs/contract.md §10, "Batched decode"): q and out (batch, n_q_head,
 * head_dim); the caches k_cache, v_cache (batch, n_kv_head, capacity,
 * head_dim); kv_lens (batch) device ints, the keys of sequence b are rows
 * 0 .. kv_lens[b]-1 of its cache (a count outside 1..capacity is clamped
 * into it, never read past); window > 0: only the last `window` of them
 * (sliding window), 0: all. Query head h reads kv head h / (n_q_head /
 * n_kv_head), scale 1/sqrt(head_dim). head_dim a multiple of 4 (f32) or 8
 * (bf16, f16) up to 256, every tensor 16-byte aligned. A sequence's result
 * is the same bit for bit whatever else is in the batch, and where. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_decode_attention, (float *out, const float *q,
                                                         const float *k_cache,
                                                         const float *v_cache, const int *kv_lens,
                                                         int batch, int n_q_head, int n_kv_head,
                                                         int head_dim, int capacity, int window,
                                                         cudaStream_t stream))
/* The same in dtype (f32, bf16 or f16): q, the caches and out all of that
 * type, arithmetic and the softmax statistics in fp32. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_decode_attention_typed, (fg_dtype dtype, void *out,
                                                               const void *q, const void *k_cache,
                                                               const void *v_cache,
                                                               const int *kv_lens, int batch,
                                                               int n_q_head, int n_kv_head,
                                                               int head_dim, int capacity,
                                                               int window, cudaStream_t stream))
/* fg_cuda_decode_attention_typed over a paged cache: the keys and values
 * of every sequence in fixed-size blocks of one pool, k_pool and v_pool
 * (n_blocks, n_kv_head, block_size, head_dim) of dtype; key j of sequence b
 * is row j % block_size of block block_tables[b * max_blocks + j /
 * block_size] (block_tables: (batch, max_blocks) device int32). block_size
 * a multiple of 16; the capacity of a sequence is max_blocks * block_size.
 * Only the blocks holding a sequence's visible keys are read (an id outside
 * 0 .. n_blocks-1 is clamped into it, never read past). The results are bit
 * for bit those of the contiguous call with that capacity. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_decode_attention_paged, (fg_dtype dtype, void *out,
                                                               const void *q, const void *k_pool,
                                                               const void *v_pool, int n_blocks,
                                                               int block_size,
                                                               const int *block_tables,
                                                               int max_blocks, const int *kv_lens,
                                                               int batch, int n_q_head,
                                                               int n_kv_head, int head_dim,
                                                               int window, cudaStream_t stream))
/* pos: seq positions in device memory. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_rope, (float *x, int n_head, int seq, int head_dim,
                                             const int *pos, double base, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_rope_typed, (fg_dtype dtype, void *x, int n_head, int seq,
                                                   int head_dim, const int *pos, double base,
                                                   cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_linear, (float *y, const float *x, const float *w,
                                               const float *b, int rows, int in, int out,
                                               cudaStream_t stream))
/* 16-bit: up to eight rows on the split-K GEMV, more on cuBLASLt (fp32
 * accumulation, the bias as its epilogue). */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_linear_typed, (fg_dtype dtype, void *y, const void *x,
                                                     const void *w, const void *b, int rows,
                                                     int in, int out, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_gelu, (float *y, const float *x, int n, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_gelu_typed, (fg_dtype dtype, void *y, const void *x, int n,
                                                   cudaStream_t stream))
/* y = gelu(x + b) with b (cols) broadcast over rows; b may be NULL. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_bias_gelu, (float *y, const float *x, const float *b,
                                                  int rows, int cols, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_bias_gelu_typed, (fg_dtype dtype, void *y, const void *x,
                                                        const void *b, int rows, int cols,
                                                        cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_layer_norm, (float *y, const float *x, const float *g,
                                                   const float *b, int rows, int cols, float eps,
                                                   cudaStream_t stream))
/* x stays fp32 (the residual stream); y, g and b hold dtype. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_layer_norm_typed, (fg_dtype dtype, void *y, const float *x,
                                                         const void *g, const void *b, int rows,
                                                         int cols, float eps,
                                                         cudaStream_t stream))
/* Fused residual add + LayerNorm: x += delta (in place), then
 * y = layer_norm(x). */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_add_layer_norm, (float *y, float *x, const float *delta,
                                                       const float *g, const float *b, int rows,
                                                       int cols, float eps, cudaStream_t stream))
/* x fp32, updated in place with the dtype delta; y, g, b hold dtype. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_add_layer_norm_typed, (fg_dtype dtype, void *y, float *x,
                                                             const void *delta, const void *g,
                                                             const void *b, int rows, int cols,
                                                             float eps, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_ffn, (float *y, const float *x, const float *w_fc,
                                            const float *b_fc, const float *w_proj,
                                            const float *b_proj, int rows, int hidden, int inner,
                                            cudaStream_t stream))
/* 16-bit: h = gelu(x w_fc + b_fc) rounded once (the GEMV's or cuBLASLt's
 * fused epilogue), then y = h w_proj + b_proj. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_ffn_typed, (fg_dtype dtype, void *y, const void *x,
                                                  const void *w_fc, const void *b_fc,
                                                  const void *w_proj, const void *b_proj,
                                                  int rows, int hidden, int inner,
                                                  cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_rms_norm, (float *y, const float *x, const float *g, int rows,
                                                 int cols, float eps, cudaStream_t stream))
/* x stays fp32; y and g hold dtype. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_rms_norm_typed, (fg_dtype dtype, void *y, const float *x,
                                                       const void *g, int rows, int cols,
                                                       float eps, cudaStream_t stream))
/* Fused residual add + RMSNorm (the Llama block's seam): x += delta (in
 * place), then y = rms_norm(x). delta must not overlap x or y. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_add_rms_norm, (float *y, float *x, const float *delta,
                                                     const float *g, int rows, int cols,
                                                     float eps, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_add_rms_norm_typed, (fg_dtype dtype, void *y, float *x,
                                                           const void *delta, const void *g,
                                                           int rows, int cols, float eps,
                                                           cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_silu_mul, (float *y, const float *gate, const float *up,
                                                 int n, cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_silu_mul_typed, (fg_dtype dtype, void *y, const void *gate,
                                                       const void *up, int n,
                                                       cudaStream_t stream))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_swiglu_ffn, (float *y, const float *x, const float *w_gate,
                                                   const float *w_up, const float *w_down, int rows,
                                                   int hidden, int inner, cudaStream_t stream))
/* 16-bit: gate and up stay fp32 (cuBLASLt's fp32 output), silu(gate) up is
 * rounded to dtype before w_down. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_swiglu_ffn_typed, (fg_dtype dtype, void *y, const void *x,
                                                         const void *w_gate, const void *w_up,
                                                         const void *w_down, int rows,
                                                         int hidden, int inner,
                                                         cudaStream_t stream))

/* Sampling on the GPU -------------------------------------------------------- */

/* A sampler with fg_sampler's configuration and semantics (flashgpt/
 * sampler.h) whose draws from device logits are the CPU sampler's, id for
 * id, for the same seed and logits. Its random state lives on the device,
 * so draws may be captured into a CUDA graph; one stream at a time. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_sampler_create, (fg_cuda_sampler **sampler,
                                                       int vocab_size,
                                                       const fg_sampler_config *cfg))
FG_CUDA_FN(VOID, void, fg_cuda_sampler_destroy, (fg_cuda_sampler *sampler)) /* NULL: no-op */
/* Enqueues one draw from logits (vocab_size floats, device) into *token
 * (one int, device): the id, or -1 when the logits hold NaN or +inf or are
 * all -inf (the random state is then not advanced). */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_sampler_sample, (fg_cuda_sampler *sampler,
                                                       const float *logits, int *token,
                                                       cudaStream_t stream))
/* The same, waiting for the id and returning it in *token (host);
 * FG_ERR_INVALID_ARG for refused logits, as fg_sampler_sample. state: NULL
 * draws from the sampler's own stream; else *state (host) is the stream
 * state to draw with and receives the state after the draw, so a host
 * fg_sampler of the same configuration and this one can take turns on one
 * stream (a CUDA session draws for the caller's fg_sampler this way). */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_sampler_draw, (fg_cuda_sampler *sampler,
                                                     const float *logits, uint64_t *state,
                                                     int *token, cudaStream_t stream))
/* Nanoseconds the host has spent waiting for this sampler's draws (0 for
 * NULL): host time per token = the step's time minus the waits. */
FG_CUDA_FN(ZERO, long long, fg_cuda_sampler_wait_ns, (const fg_cuda_sampler *sampler))

/* Decoder on the GPU -------------------------------------------------------- */

/* Weights: the configuration and every weight uploaded once, from the same
 * host fg_weights the CPU path uses (the host memory can be freed after).
 * Read only after creation: any number of runners may share one, and it
 * must outlive them. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_weights_create, (fg_cuda_weights **weights,
                                                       const fg_config *cfg,
                                                       const fg_weights *w))
/* The same with every weight stored in dtype (f32, bf16 or f16 from the
 * fp32 host tensors, rounded to nearest even on the way in, a slice at a
 * time: no converted copy of the model on the host). A runner of these
 * weights keeps the activations between operations and its KV caches in
 * dtype; the residual stream, norm and softmax statistics and the logits
 * stay fp32 (docs/contract.md §32, the 16-bit rule). 16-bit needs a
 * head_dim of the tensor-core attention (32, 64, 80, 96, 128, 256):
 * FG_ERR_UNSUPPORTED otherwise. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_weights_create_typed, (fg_cuda_weights **weights,
                                                             const fg_config *cfg,
                                                             const fg_weights *w,
                                                             fg_dtype dtype))
/* The same from a loaded model (flashgpt/loader.h) without widening it:
 * every tensor goes from the checkpoint's mapping to the card, copied as
 * it is when the file already stores it in dtype and in the decoder's
 * layout (a bf16 checkpoint run in bf16), else converted (F32 -> 16-bit,
 * f16 <-> bf16, transposes, the q|k|v fusion) in bands of a few MB of
 * host memory. A model built in memory (random, llama2.c) uploads from
 * its fp32 weights. The model must outlive only this call. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_weights_create_model, (fg_cuda_weights **weights,
                                                             const fg_model *model,
                                                             fg_dtype dtype))
FG_CUDA_FN(VOID, void, fg_cuda_weights_destroy, (fg_cuda_weights *weights)) /* NULL: no-op */
/* Device bytes the weights hold (0 for NULL). */
FG_CUDA_FN(ZERO, size_t, fg_cuda_weights_bytes, (const fg_cuda_weights *weights))
/* Weights of cfg's shape generated on the device in dtype from seed
 * (uniform, 0.02 wide around 0, norm gains around 1; the classifier tied to
 * wte): no host memory for them at all, so a benchmark can hold a model
 * whose fp32 host copy would not fit. Deterministic for (cfg, dtype, seed)
 * on one device. Not a model: for timing only. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_weights_create_random, (fg_cuda_weights **weights,
                                                              const fg_config *cfg,
                                                              fg_dtype dtype, uint64_t seed))
/* The device's copy bandwidth, read + write bytes per second in GB/s (the
 * median of runs device-to-device copies of bytes, 1 <= runs <= 1000, bytes
 * >= 1024): the floor a decode step's weight reads are held to. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_copy_bandwidth, (size_t bytes, int runs, double *gbps))
/* 1 when the current device can run the decoder of cfg with weights in
 * dtype (16-bit: a card of compute capability 8.0 or later and a head_dim
 * of the 16-bit attention kernel), else 0 (also without a device). */
FG_CUDA_FN(ZERO, int, fg_cuda_decoder_dtype_supported, (const fg_config *cfg, fg_dtype dtype))
/* Element type of the weights (FG_DTYPE_F32 for NULL). */
FG_CUDA_FN(ZERO, fg_dtype, fg_cuda_weights_dtype, (const fg_cuda_weights *weights))
FG_CUDA_FN(NULL, const fg_config *, fg_cuda_weights_config, (const fg_cuda_weights *weights))

/* Runner: executes the decoder for one weights object on one stream (NULL:
 * the legacy default stream), with a cuBLAS handle, workspaces and
 * activation buffers for up to max_tokens tokens per call, all allocated at
 * creation. It keeps the decode-step CUDA graph of each cache it steps (a
 * few), so caches may take turns on one runner at no capture cost. One
 * thread at a time per runner. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_runner_create, (fg_cuda_runner **runner,
                                                      const fg_cuda_weights *weights,
                                                      int max_tokens, cudaStream_t stream))
FG_CUDA_FN(VOID, void, fg_cuda_runner_destroy, (fg_cuda_runner *runner)) /* NULL: no-op */
/* Nanoseconds the host has spent waiting for this runner's forwards to
 * finish (their synchronize; 0 for NULL), as fg_cuda_sampler_wait_ns. */
FG_CUDA_FN(ZERO, long long, fg_cuda_runner_wait_ns, (const fg_cuda_runner *runner))
/* Device bytes the runner holds once it has run on caches of up to
 * `capacity` tokens: activations, GEMV and attention workspaces (the
 * attention workspace grows with the largest cache used); 0 for NULL. */
FG_CUDA_FN(ZERO, size_t, fg_cuda_runner_bytes, (const fg_cuda_runner *runner, int capacity))

/* KV cache: keys and values of n_layer layers, n_kv_head heads of head_dim,
 * for capacity tokens, in device memory. It depends on no model or runner:
 * any runner whose configuration has the same n_layer, n_kv_head and
 * head_dim (fg_config_head_dim) can use it. One sequence. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_kv_cache_create, (fg_cuda_kv_cache **cache, int n_layer,
                                                        int n_kv_head, int head_dim,
                                                        int capacity))
/* A cache of keys and values in dtype; runners use only a cache of their
 * weights' type (FG_ERR_INVALID_ARG otherwise). */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_kv_cache_create_typed, (fg_cuda_kv_cache **cache,
                                                              int n_layer, int n_kv_head,
                                                              int head_dim, int capacity,
                                                              fg_dtype dtype))
FG_CUDA_FN(VOID, void, fg_cuda_kv_cache_destroy, (fg_cuda_kv_cache *cache)) /* NULL: no-op */
FG_CUDA_FN(ZERO, fg_dtype, fg_cuda_kv_cache_dtype, (const fg_cuda_kv_cache *cache))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_kv_cache_reset, (fg_cuda_kv_cache *cache))
/* Tokens cached in a layer (every layer holds the same number after a
 * forward); -1 for NULL or a layer out of range. */
FG_CUDA_FN(MINUS1, int, fg_cuda_kv_cache_len, (const fg_cuda_kv_cache *cache, int layer))
FG_CUDA_FN(MINUS1, int, fg_cuda_kv_cache_capacity, (const fg_cuda_kv_cache *cache))

/* docs/contract.md §16 / §17 on device activations x, out (T, C), T <= the runner's
 * max_tokens; same semantics as fg_ref_attention_layer / fg_ref_block.
 * Enqueued on the runner's stream. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_attention_layer, (float *out, const float *x, int T,
                                                        fg_cuda_runner *runner,
                                                        fg_cuda_kv_cache *cache, int layer))
FG_CUDA_FN(STATUS, fg_status, fg_cuda_block, (float *x, int T, fg_cuda_runner *runner,
                                              fg_cuda_kv_cache *cache, int layer))
/* fg_cuda_block run one operation at a time (the unfused kernels, whatever
 * T), handing each operation's output to probe (flashgpt/cuda.h), in this
 * order: "attn_norm" (T, C), "qkv" (T, qkv width, before its bias), "q_rope"
 * (T, n_head*d), "k_cache" and "v_cache" (T, n_kv_head*d: the rows this
 * call appended), "attention" (T, n_head*d), "attn_proj" (T, C, before its
 * bias), "residual" (T, C, fp32), "ffn_norm" (T, C), then Llama's
 * "gate_up" (T, 2*n_inner, fp32) and "activation" (T, n_inner) or GPT-2's
 * "up_gelu" (T, n_inner), "down" (T, C, before its bias) and "residual_2"
 * (T, C, fp32: the block's output in x). Waits after every operation: a
 * diagnostic (verify --layers), not a fast path. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_block_probe, (float *x, int T, fg_cuda_runner *runner,
                                                    fg_cuda_kv_cache *cache, int layer,
                                                    fg_cuda_probe_fn probe, void *user))

/* docs/contract.md §18: host ids (T) in, host logits (T, vocab) out (probs optional, host),
 * like fg_ref_forward; returns when the logits are written. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_forward, (float *logits, float *probs,
                                                fg_cuda_runner *runner, fg_cuda_kv_cache *cache,
                                                const int *ids, int T))

/* fg_cuda_forward computing only the last token's logits (host, vocab),
 * like fg_ref_forward_last. With T = 1 (a decode step) it replays the
 * runner's captured graph for this cache. */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_forward_last, (float *logits, fg_cuda_runner *runner,
                                                     fg_cuda_kv_cache *cache, const int *ids,
                                                     int T))

/* fg_cuda_forward_last keeping the logits on the device: *logits_dev gets
 * the runner's (vocab) floats, valid until its next call; nothing is copied
 * back (sample them with fg_cuda_sampler_*). */
FG_CUDA_FN(STATUS, fg_status, fg_cuda_forward_last_on_device, (const float **logits_dev,
                                                               fg_cuda_runner *runner,
                                                               fg_cuda_kv_cache *cache,
                                                               const int *ids, int T))
