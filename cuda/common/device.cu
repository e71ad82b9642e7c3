/* Device discovery and device memory (fg_cuda_available ... fg_cuda_synchronize).
 *
 * Conventions: pointers are checked for NULL; fg_cuda_malloc refuses 0 bytes,
 * while 0-byte copies and memsets are allowed no-ops (after the pointer
 * checks). Copies and memset use the legacy default stream and are complete
 * on return. A failed allocation is FG_ERR_OOM, any other CUDA failure
 * FG_ERR_CUDA; no usable device is FG_ERR_CUDA "no CUDA device: ...". */
#include "cuda_common.cuh"
#include "ops_internal.h"

#include <stdio.h>
#include <time.h>

extern "C" fg_status fgi_cuda_check_device(const char *fn)
{
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return fgi_fail(FG_ERR_CUDA, "%s: no CUDA device: %s", fn,
                       cudaGetErrorString(err));
    }
    if (count < 1)
        return fgi_fail(FG_ERR_CUDA, "%s: no CUDA device: none was found", fn);
    return FG_OK;
}

extern "C" fg_status fgi_cuda_sm_count(const char *fn, int *sm_count)
{
    int device = 0;
    FGI_CUDA_TRY(fn, cudaGetDevice(&device));
    FGI_CUDA_TRY(fn, cudaDeviceGetAttribute(sm_count, cudaDevAttrMultiProcessorCount, device));
    return FG_OK;
}

static long long monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

extern "C" fg_status fgi_cuda_sync_timed(const char *fn, cudaStream_t stream, long long *wait_ns)
{
    const long long t0 = monotonic_ns();
    const cudaError_t err = cudaStreamSynchronize(stream);
    *wait_ns += monotonic_ns() - t0;
    FGI_CUDA_TRY(fn, err);
    return FG_OK;
}

extern "C" int fg_cuda_available(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return count > 0;
}

extern "C" fg_status fg_cuda_device_info(char *name, size_t name_len, int *sm_count,
                                         size_t *total_bytes)
{
    static const char fn[] = "fg_cuda_device_info";
    FGI_TRY(fgi_check_ptr(fn, "name", name));
    if (name_len < 1)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'name_len' must be >= 1 (got 0)",
                       fn);
    FGI_TRY(fgi_check_ptr(fn, "sm_count", sm_count));
    FGI_TRY(fgi_check_ptr(fn, "total_bytes", total_bytes));
    FGI_TRY(fgi_cuda_check_device(fn));
    int device = 0;
    cudaDeviceProp prop;
    FGI_CUDA_TRY(fn, cudaGetDevice(&device));
    FGI_CUDA_TRY(fn, cudaGetDeviceProperties(&prop, device));
    snprintf(name, name_len, "%s", prop.name);
    *sm_count = prop.multiProcessorCount;
    *total_bytes = prop.totalGlobalMem;
    return FG_OK;
}

extern "C" fg_status fg_cuda_memory_info(size_t *free_bytes, size_t *total_bytes)
{
    static const char fn[] = "fg_cuda_memory_info";
    FGI_TRY(fgi_check_ptr(fn, "free_bytes", free_bytes));
    FGI_TRY(fgi_check_ptr(fn, "total_bytes", total_bytes));
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_CUDA_TRY(fn, cudaMemGetInfo(free_bytes, total_bytes));
    return FG_OK;
}

extern "C" fg_status fg_cuda_malloc(void **ptr, size_t bytes)
{
    static const char fn[] = "fg_cuda_malloc";
    FGI_TRY(fgi_check_ptr(fn, "ptr", ptr));
    *ptr = NULL;
    if (bytes < 1)
        return fgi_fail(FG_ERR_INVALID_ARG, "%s: argument 'bytes' must be >= 1 (got 0)",
                       fn);
    FGI_TRY(fgi_cuda_check_device(fn));
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return fgi_fail(err == cudaErrorMemoryAllocation ? FG_ERR_OOM : FG_ERR_CUDA,
                       "%s: cudaMalloc of %zu bytes failed: %s", fn, bytes,
                       cudaGetErrorString(err));
    }
    *ptr = p;
    return FG_OK;
}

extern "C" fg_status fg_cuda_free(void *ptr)
{
    if (ptr == NULL) return FG_OK;
    FGI_CUDA_TRY("fg_cuda_free", cudaFree(ptr));
    return FG_OK;
}

/* Shared by upload and download: pointer checks, then a blocking copy. */
static fg_status copy(const char *fn, void *dst, const char *dst_name,
                      const void *src, const char *src_name, size_t bytes,
                      cudaMemcpyKind kind)
{
    FGI_TRY(fgi_check_ptr(fn, dst_name, dst));
    FGI_TRY(fgi_check_ptr(fn, src_name, src));
    if (bytes == 0) return FG_OK;
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_CUDA_TRY(fn, cudaMemcpy(dst, src, bytes, kind));
    return FG_OK;
}

extern "C" fg_status fg_cuda_upload(void *dst_device, const void *src_host, size_t bytes)
{
    return copy("fg_cuda_upload", dst_device, "dst_device", src_host, "src_host", bytes,
                cudaMemcpyHostToDevice);
}

extern "C" fg_status fg_cuda_download(void *dst_host, const void *src_device,
                                      size_t bytes)
{
    return copy("fg_cuda_download", dst_host, "dst_host", src_device, "src_device",
                bytes, cudaMemcpyDeviceToHost);
}

extern "C" fg_status fg_cuda_memset(void *dst_device, int byte, size_t bytes)
{
    static const char fn[] = "fg_cuda_memset";
    FGI_TRY(fgi_check_ptr(fn, "dst_device", dst_device));
    if (byte < 0 || byte > 255)
        return fgi_fail(FG_ERR_INVALID_ARG,
                       "%s: argument 'byte' must be in [0, 255] (got %d)", fn, byte);
    if (bytes == 0) return FG_OK;
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_CUDA_TRY(fn, cudaMemset(dst_device, byte, bytes));
    return FG_OK;
}

extern "C" fg_status fg_cuda_synchronize(cudaStream_t stream)
{
    static const char fn[] = "fg_cuda_synchronize";
    FGI_TRY(fgi_cuda_check_device(fn));
    FGI_CUDA_TRY(fn, cudaStreamSynchronize(stream));
    return FG_OK;
}
