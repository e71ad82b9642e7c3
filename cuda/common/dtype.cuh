/* The device side of the element type seam (public side: flashgpt/dtype.h).
 *
 * What: kernels never touch `float4` or a cache-hint intrinsic on tensor
 * data directly; they load, store and convert through these helpers, so a
 * kernel written for an element type T is instantiated for another type
 * without edits. T is float, __nv_bfloat16 or __half (fgi_with_dtype
 * turns a run-time fg_dtype into the type).
 * Conventions:
 *  - fgi_elem<T>: the traits of a storage type (its fg_dtype, to_float,
 *    from_float). Arithmetic is always fp32: convert on load, round on store.
 *  - fgi_vec<T, N>: N elements moved by one aligned access of N*sizeof(T)
 *    bytes (4, 8 or 16); fgi_pack<T> is the 16-byte one (fgi_pack<T>::N
 *    elements: 4 for f32, 8 for bf16/f16), the unit of wide loads, of
 *    cp.async and of a lane's share of a row. Plain loads and stores move
 *    the aligned struct; ldg / ldcg go through a same-sized unsigned
 *    carrier (uint4/uint2/unsigned: the intrinsics take only built-in
 *    types), so the bits of any type travel unchanged, one access each.
 *  - Pointers are element pointers (const T *) aligned to the access
 *    (element offsets a multiple of N); fgi_cp_async also takes pack
 *    pointers, and the fgi_*4 helpers an index in groups of four, so code
 *    that walked float4 pointers keeps its address arithmetic.
 *  - Cache hints keep the names of the CUDA intrinsics: ldg (read-only path,
 *    data no thread of the launch writes), ldcg (L2 only: data other blocks
 *    of the same launch wrote; L1 is not coherent), plain load/store
 *    (shared memory, or data this thread wrote).
 *  - fgi_*4 / fgi_*2 move four / two elements as a float4 / float2: the
 *    unit of kernels whose math is float4-shaped (attention); for f32 they
 *    are exactly the float4 / float2 access they replace.
 * Adding a type: specialise fgi_elem<T> (the emulator needs the type in
 * tools/cuda_emu/fake too), add it to fgi_with_dtype and instantiate the
 * kernels' templates for T; nothing else in this file depends on T. */
#ifndef FLASHGPT_CUDA_DTYPE_CUH
#define FLASHGPT_CUDA_DTYPE_CUH

#include "check.h"
#include "flashgpt/dtype.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

/* Element traits; no primary definition, so an unsupported type is a
 * compile-time error. */
template <typename T>
struct fgi_elem;

template <>
struct fgi_elem<float> {
    static constexpr fg_dtype dtype = FG_DTYPE_F32;
    __device__ __forceinline__ static float to_float(float v) { return v; }
    __device__ __forceinline__ static float from_float(float v) { return v; }
};

/* 16-bit types: conversions round to nearest, ties to even (cvt.rn). */
template <>
struct fgi_elem<__nv_bfloat16> {
    static constexpr fg_dtype dtype = FG_DTYPE_BF16;
    __device__ __forceinline__ static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
    __device__ __forceinline__ static __nv_bfloat16 from_float(float v) { return __float2bfloat16(v); }
    /* Two values as one 32-bit register, lo in the low half (the layout of
     * an mma.sync 16-bit operand pair). */
    __device__ __forceinline__ static uint32_t pack2(float lo, float hi)
    {
        const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
        uint32_t bits;
        memcpy(&bits, &h, sizeof bits);
        return bits;
    }
};

template <>
struct fgi_elem<__half> {
    static constexpr fg_dtype dtype = FG_DTYPE_F16;
    __device__ __forceinline__ static float to_float(__half v) { return __half2float(v); }
    __device__ __forceinline__ static __half from_float(float v) { return __float2half(v); }
    __device__ __forceinline__ static uint32_t pack2(float lo, float hi)
    {
        const __half2 h = __floats2half2_rn(lo, hi);
        uint32_t bits;
        memcpy(&bits, &h, sizeof bits);
        return bits;
    }
};

/* Calls f(T{}) with T the storage type of dtype (float, __nv_bfloat16,
 * __half) and returns its fg_status; a value outside fg_dtype is
 * FG_ERR_INVALID_ARG naming fn. Host side of a launcher:
 *   return fgi_with_dtype(fn, dtype, [&](auto tag) {
 *       using T = decltype(tag);
 *       return launch<T>(...);
 *   }); */
template <typename F>
static inline fg_status fgi_with_dtype(const char *fn, fg_dtype dtype, F &&f)
{
    switch (dtype) {
    case FG_DTYPE_F32: return f(float{});
    case FG_DTYPE_BF16: return f(__nv_bfloat16{});
    case FG_DTYPE_F16: return f(__half{});
    }
    return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'dtype' is not an element type (%d)", fn,
                    (int)dtype);
}

/* The unsigned type that moves BYTES bytes in one access. */
template <int BYTES>
struct fgi_carrier;
template <>
struct fgi_carrier<16> {
    using type = uint4;
};
template <>
struct fgi_carrier<8> {
    using type = uint2;
};
template <>
struct fgi_carrier<4> {
    using type = unsigned;
};

/* N elements of type T, aligned for one access of all N. */
template <typename T, int N_>
struct alignas(N_ * sizeof(T)) fgi_vec {
    static constexpr int N = N_;
    static constexpr int BYTES = N_ * (int)sizeof(T);
    using carrier = typename fgi_carrier<BYTES>::type;
    T e[N_];

    __device__ __forceinline__ float get(int i) const { return fgi_elem<T>::to_float(e[i]); }
    __device__ __forceinline__ void set(int i, float v) { e[i] = fgi_elem<T>::from_float(v); }

    __device__ __forceinline__ static fgi_vec from_bits(const carrier &bits)
    {
        fgi_vec v;
        memcpy(&v.e[0], &bits, sizeof bits);
        return v;
    }
    __device__ __forceinline__ static fgi_vec zero()
    {
        fgi_vec v;
#pragma unroll
        for (int i = 0; i < N_; i++) v.e[i] = fgi_elem<T>::from_float(0.0f);
        return v;
    }
};

/* The 16-byte packed vector. */
template <typename T>
using fgi_pack = fgi_vec<T, 16 / (int)sizeof(T)>;

/* Whole-vector accesses; V is an fgi_vec (or fgi_pack) type, p aligned. */
template <typename V, typename T>
__device__ __forceinline__ V fgi_load(const T *p)
{
    return *reinterpret_cast<const V *>(p);
}

template <typename V, typename T>
__device__ __forceinline__ V fgi_ldg(const T *p)
{
    return V::from_bits(__ldg(reinterpret_cast<const typename V::carrier *>(p)));
}

template <typename V, typename T>
__device__ __forceinline__ V fgi_ldcg(const T *p)
{
    return V::from_bits(__ldcg(reinterpret_cast<const typename V::carrier *>(p)));
}

template <typename T, int N>
__device__ __forceinline__ void fgi_store(T *p, const fgi_vec<T, N> &v)
{
    *reinterpret_cast<fgi_vec<T, N> *>(p) = v;
}

/* cp.async of one 16-byte pack from global into shared memory (both
 * 16-byte aligned); ordered by __pipeline_commit / __pipeline_wait_prior. */
template <typename T>
__device__ __forceinline__ void fgi_cp_async_pack(T *dst_shared, const T *src_global)
{
    __pipeline_memcpy_async(dst_shared, src_global, 16);
}

/* The same, addressed in packs (p[i] is elements i*N .. i*N+N-1). */
template <typename T, int N>
__device__ __forceinline__ void fgi_cp_async(fgi_vec<T, N> *dst_shared,
                                             const fgi_vec<T, N> *src_global)
{
    static_assert(N * sizeof(T) == 16, "cp.async of 16-byte packs");
    __pipeline_memcpy_async(dst_shared, src_global, 16);
}

/* Four elements as a float4: elements 4i .. 4i+3 from p (p + 4i aligned to
 * 4 * sizeof(T)); indexing in groups keeps the address arithmetic of the
 * float4-pointer code these replace. For float they are the plain float4
 * accesses, so nvcc schedules them as before (through fgi_vec, one
 * conditional shared load was split into four scalar loads). */
template <typename T>
__device__ __forceinline__ float4 fgi_to_float4(const fgi_vec<T, 4> &v)
{
    return make_float4(v.get(0), v.get(1), v.get(2), v.get(3));
}

template <typename T>
__device__ __forceinline__ fgi_vec<T, 4> fgi_from_float4(const float4 &f)
{
    fgi_vec<T, 4> v;
    v.set(0, f.x);
    v.set(1, f.y);
    v.set(2, f.z);
    v.set(3, f.w);
    return v;
}

template <typename T>
__device__ __forceinline__ float4 fgi_load4(const T *p, int i = 0)
{
    if constexpr (std::is_same<T, float>::value)
        return reinterpret_cast<const float4 *>(p)[i];
    else
        return fgi_to_float4(fgi_load<fgi_vec<T, 4>>(p + 4 * i));
}

template <typename T>
__device__ __forceinline__ float4 fgi_ldg4(const T *p, int i = 0)
{
    if constexpr (std::is_same<T, float>::value)
        return __ldg(reinterpret_cast<const float4 *>(p) + i);
    else
        return fgi_to_float4(fgi_ldg<fgi_vec<T, 4>>(p + 4 * i));
}

template <typename T>
__device__ __forceinline__ float4 fgi_ldcg4(const T *p, int i = 0)
{
    if constexpr (std::is_same<T, float>::value)
        return __ldcg(reinterpret_cast<const float4 *>(p) + i);
    else
        return fgi_to_float4(fgi_ldcg<fgi_vec<T, 4>>(p + 4 * i));
}

template <typename T>
__device__ __forceinline__ void fgi_store4(T *p, int i, const float4 &f)
{
    if constexpr (std::is_same<T, float>::value)
        reinterpret_cast<float4 *>(p)[i] = f;
    else
        fgi_store(p + 4 * i, fgi_from_float4<T>(f));
}

template <typename T>
__device__ __forceinline__ void fgi_store4(T *p, const float4 &f)
{
    fgi_store4(p, 0, f);
}

/* Two elements as a float2 (p aligned to 2 * sizeof(T)); float2 itself
 * for float, as above. */
template <typename T>
__device__ __forceinline__ float2 fgi_load2(const T *p)
{
    if constexpr (std::is_same<T, float>::value) {
        return *reinterpret_cast<const float2 *>(p);
    } else {
        const fgi_vec<T, 2> v = fgi_load<fgi_vec<T, 2>>(p);
        return make_float2(v.get(0), v.get(1));
    }
}

template <typename T>
__device__ __forceinline__ float2 fgi_ldg2(const T *p)
{
    if constexpr (std::is_same<T, float>::value) {
        return __ldg(reinterpret_cast<const float2 *>(p));
    } else {
        const fgi_vec<T, 2> v = fgi_ldg<fgi_vec<T, 2>>(p);
        return make_float2(v.get(0), v.get(1));
    }
}

template <typename T>
__device__ __forceinline__ void fgi_store2(T *p, const float2 &f)
{
    if constexpr (std::is_same<T, float>::value) {
        *reinterpret_cast<float2 *>(p) = f;
    } else {
        fgi_vec<T, 2> v;
        v.set(0, f.x);
        v.set(1, f.y);
        fgi_store(p, v);
    }
}

/* Single elements, converted. */
template <typename T>
__device__ __forceinline__ float fgi_load1(const T *p)
{
    return fgi_elem<T>::to_float(*p);
}

template <typename T>
__device__ __forceinline__ float fgi_ldg1(const T *p)
{
    return fgi_elem<T>::to_float(__ldg(p));
}

template <typename T>
__device__ __forceinline__ float fgi_ldcg1(const T *p)
{
    return fgi_elem<T>::to_float(__ldcg(p));
}

template <typename T>
__device__ __forceinline__ void fgi_store1(T *p, float v)
{
    *p = fgi_elem<T>::from_float(v);
}

#endif /* FLASHGPT_CUDA_DTYPE_CUH */
