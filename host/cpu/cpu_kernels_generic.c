/* Fast CPU kernels for any target the compiler builds for (x86-64: SSE2),
 * the fallback when the processor has no AVX2 (see cpu_kernels.inc). */
#define FGI_ISA_NAME generic
#define FGI_ISA_STR "generic"
#define FGI_MR 2
#include "cpu_kernels.inc"
