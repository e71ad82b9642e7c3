/* Activation functions shared by the elementwise kernels and the GEMV
 * epilogue, so both compute bit-identical values.
 *
 * GELU is the tanh form 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))), written
 * as x / (1 + exp(-2z)) to avoid the cancellation of 1 + tanh(z) for
 * negative z; SiLU is a / (1 + exp(-a)); both in fp32 with the accurate expf.
 * They take and return fp32 whatever the tensors' element type: kernels
 * convert on load and round on store (cuda/common/dtype.cuh). */
#ifndef FLASHGPT_CUDA_ACTIVATION_CUH
#define FLASHGPT_CUDA_ACTIVATION_CUH

#include <cuda_runtime.h>

__device__ inline float fgi_gelu(float x)
{
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    const float z = k * (x + 0.044715f * x * x * x);
    return x / (1.0f + expf(-2.0f * z));
}

__device__ inline float fgi_silu(float a) { return a / (1.0f + expf(-a)); }

#endif /* FLASHGPT_CUDA_ACTIVATION_CUH */
