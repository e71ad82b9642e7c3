/* fgi_emu: the cp.async primitives of cuda_pipeline.h. A copy poisons its
 * shared-memory destination with NaN when issued and lands only at the
 * __pipeline_wait_prior that covers its commit group, so a read that the
 * real pipeline would not order shows up as NaN. */
#ifndef FG_EMU_CUDA_PIPELINE_H
#define FG_EMU_CUDA_PIPELINE_H

#include "cuda_runtime.h"

/* Copies size_and_align - zfill bytes from global to shared memory and
 * zero-fills the rest; size_and_align is 4, 8 or 16 and both addresses are
 * aligned to it. */
static inline void __pipeline_memcpy_async(void *dst_shared, const void *src_global,
                                           size_t size_and_align, size_t zfill = 0)
{
    fgi_emu::async_copy(dst_shared, src_global, size_and_align, zfill);
}
static inline void __pipeline_commit() { fgi_emu::async_commit(); }
static inline void __pipeline_wait_prior(size_t prior) { fgi_emu::async_wait_prior(prior); }

#endif /* FG_EMU_CUDA_PIPELINE_H */
