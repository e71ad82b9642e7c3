/* Run-time choice of the fast CPU kernels: the widest instruction set both
 * this build (FGI_CPU_X86: the AVX variants were compiled) and this
 * processor support. */
#include "cpu_internal.h"

#include <stddef.h>

static int have(fgi_cpu_isa isa)
{
    switch (isa) {
    case FGI_CPU_ISA_GENERIC: return 1;
#if defined(FGI_CPU_X86)
    case FGI_CPU_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case FGI_CPU_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    default: return 0;
    }
}

const fgi_cpu_kernels *fgi_cpu_kernels_for(fgi_cpu_isa isa)
{
    if (isa == FGI_CPU_ISA_AUTO) {
        for (int i = FGI_CPU_ISA_AVX512; i > FGI_CPU_ISA_GENERIC; i--)
            if (have((fgi_cpu_isa)i)) return fgi_cpu_kernels_for((fgi_cpu_isa)i);
        return &fgi_cpu_kernels_generic;
    }
    if (!have(isa)) return NULL;
    switch (isa) {
#if defined(FGI_CPU_X86)
    case FGI_CPU_ISA_AVX2: return &fgi_cpu_kernels_avx2;
    case FGI_CPU_ISA_AVX512: return &fgi_cpu_kernels_avx512;
#endif
    case FGI_CPU_ISA_GENERIC: return &fgi_cpu_kernels_generic;
    default: return NULL;
    }
}
