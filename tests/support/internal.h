/* Test-only access to the library's internal interfaces: the one header a
 * test includes when it checks something the public API does not show.
 * Tests include the public flashgpt/ headers and tests/support; the rest of
 * the library they reach through here, so the internal surface they depend
 * on is listed in one place:
 *  - check.h: fgi_fail / argument checks and message quoting (test_status);
 *  - hash.h: the keyed hash of tables built from files (test_status);
 *  - tokenizer_internal.h: the spelling table's key (test_tokenizer), the
 *    tokenizer.json parser from memory (test_tokenizer_json);
 *  - unicode.h: NFC (test_tokenizer_json);
 *  - ref_softmax_state.h: the reference's online-softmax state and its
 *    merge, which no public op exposes (test_attention);
 *  - cpu_internal.h: the fast CPU path's kernels per instruction set and its
 *    runner (test_cpu_decoder), and its batched forward (test_batch_forward);
 *  - kv_paged.h: the paged KV cache's block pool and tables, the reference's
 *    batched forward (test_kv_paged, test_batch_forward);
 *  - attention_internal.h: forcing an attention kernel and its tuning, and
 *    the workspace bound (test_cuda_attention);
 *  - ops_internal.h (CUDA builds only: it needs cuBLAS's header): the
 *    decoder's fused kernels, held to the reference ops they replace
 *    (test_cuda_ops);
 *  - decoder_internal.h: graph-step and capture counters of the GPU decoder
 *    and a read-back of its device KV cache (test_cuda_decoder);
 *  - batch_internal.h: the batched GPU forward over the paged pool
 *    (test_batch_forward);
 *  - sample_fixed.h: the samplers' integer weights, against exp (test_sampler);
 *  - ref_internal.h: the naive 16-bit decoder, the yardstick of the 16-bit
 *    rule for the GPU decoder (test_cuda_decoder16);
 *  - loader_internal.h: the model's table of mapped tensors and its
 *    conversions to any element type (test_load16);
 *  - the CUDA emulator's device-memory counters (FG_CUDA_EMULATED builds:
 *    live, peak and host bytes held for the emulated card; test_load16).
 * The build gives test executables (only them) the library's private
 * include directories for this header. */
#ifndef FLASHGPT_TESTS_INTERNAL_H
#define FLASHGPT_TESTS_INTERNAL_H

#include "attention_internal.h"
#include "batch_internal.h"
#include "check.h"
#include "cpu_internal.h"
#include "decoder_internal.h"
#include "hash.h"
#include "kv_paged.h"
#include "loader_internal.h"
#include "ref_internal.h"
#include "ref_softmax_state.h"
#include "sample_fixed.h"
#include "tokenizer_internal.h"
#include "unicode.h"
#ifdef FG_HAVE_CUDA
#include "ops_internal.h"
#endif
#ifdef FG_CUDA_EMULATED
/* tools/cuda_emu/memory.cpp: device bytes allocated now and at most since
 * the last reset, and the most host bytes the emulator held for them
 * (guards and freed blocks in quarantine included); each may be NULL. */
void fgi_emu_device_memory(size_t *live, size_t *peak, size_t *host_peak);
void fgi_emu_device_reset_peak(void);
#endif

#endif /* FLASHGPT_TESTS_INTERNAL_H */
