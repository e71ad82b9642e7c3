/* The fg_cuda_* entry points of a build without the CUDA toolkit, produced
 * from the lists that declare them (flashgpt/cuda_api.h, and
 * FGI_CUDA_INTERNAL_API for the test queries): a function added to a list
 * gets its stub here, and one declared outside the lists breaks the rule
 * stated in cuda_api.h. What each stub does is the entry's fallback:
 * FG_ERR_UNSUPPORTED with a message, 0, -1, NULL, or nothing. Programs and
 * tests link the same API either way. */
#ifndef FG_HAVE_CUDA
#include "check.h"
#include "flashgpt/cuda.h"
#include "../../cuda/engine/batch_internal.h"
#include "../../cuda/engine/decoder_internal.h"

#include <stddef.h>

#pragma GCC diagnostic ignored "-Wunused-parameter"

static fg_status no_cuda(const char *fn)
{
    return fgi_fail(FG_ERR_UNSUPPORTED,
                   "%s: this flashgpt was built without CUDA (no toolkit found, "
                   "or -DFG_CUDA=OFF)",
                   fn);
}

#define FGI_STUB_STATUS(name) return no_cuda(#name);
#define FGI_STUB_FREE(name) return ptr ? no_cuda(#name) : FG_OK;
#define FGI_STUB_VOID(name)
#define FGI_STUB_ZERO(name) return 0;
#define FGI_STUB_MINUS1(name) return -1;
#define FGI_STUB_NULL(name) return NULL;

#define FG_CUDA_FN(fallback, ret, name, params) \
    ret name params { FGI_STUB_##fallback(name) }
#include "flashgpt/cuda_api.h"
FGI_CUDA_INTERNAL_API(FG_CUDA_FN)
FGI_CUDA_BATCH_API(FG_CUDA_FN)
#undef FG_CUDA_FN

#else
/* ISO C forbids an empty translation unit. */
typedef int fgi_cuda_unavailable_unused;
#endif /* FG_HAVE_CUDA */
