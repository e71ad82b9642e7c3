/* Fast CPU kernels compiled with -mavx512f -mavx512vl -mavx2 -mfma
 * (CMakeLists.txt sets the flags for this file only, on x86-64): a 16-float
 * panel is one register, so a tile holds 8 rows. Used only when the
 * processor reports AVX-512F (see cpu_kernels_select.c). */
#if defined(FGI_CPU_X86)
#define FGI_ISA_NAME avx512
#define FGI_ISA_STR "avx512"
#define FGI_MR 8
#include "cpu_kernels.inc"
#else
typedef int fgi_cpu_kernels_avx512_unused; /* ISO C: no empty translation unit */
#endif
