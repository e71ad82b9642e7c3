/* Fast CPU kernels compiled with -mavx2 -mfma (CMakeLists.txt sets the
 * flags for this file only, on x86-64); used only when the processor
 * reports both (see cpu_kernels.inc and cpu_kernels_select.c). */
#if defined(FGI_CPU_X86)
#define FGI_ISA_NAME avx2
#define FGI_ISA_STR "avx2"
#define FGI_MR 4
#include "cpu_kernels.inc"
#else
typedef int fgi_cpu_kernels_avx2_unused; /* ISO C: no empty translation unit */
#endif
