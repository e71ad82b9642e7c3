/* Capturing one step's device work as a CUDA graph: shared by the decoder's
 * decode step (cuda/engine/decoder.cu) and the batched forward's decode
 * steps (cuda/engine/batch.cu).
 *
 * Convention: the caller's enqueue function puts its work on the stream in
 * *stream, which this swaps for a private capture stream meanwhile (the
 * legacy stream 0 cannot be captured; created on first use, owned and
 * destroyed by the caller), with the cuBLAS handle following it.
 * Design: a failure (a kernel that cannot be captured, a library that
 * refuses) leaves no graph, clears the CUDA error state and returns the
 * status, so the caller runs the step uncaptured; the streams are restored
 * in every case. */
#ifndef FLASHGPT_CUDA_GRAPH_CAPTURE_CUH
#define FLASHGPT_CUDA_GRAPH_CAPTURE_CUH

#include "cuda_common.cuh"

#include <cublas_v2.h>

template <typename Enqueue>
static fg_status fgi_capture_graph(const char *fn, cudaStream_t *capture_stream,
                                   cudaStream_t *stream, cublasHandle_t blas,
                                   cudaGraphExec_t *exec, Enqueue &&enqueue)
{
    *exec = NULL;
    if (*capture_stream == NULL)
        FGI_CUDA_TRY(fn, cudaStreamCreateWithFlags(capture_stream, cudaStreamNonBlocking));
    FGI_CUBLAS_TRY(fn, cublasSetStream(blas, *capture_stream));
    const cudaStream_t user_stream = *stream;
    *stream = *capture_stream; /* the enqueue reads *stream */
    cudaGraph_t graph = NULL;
    cudaError_t err = cudaStreamBeginCapture(*stream, cudaStreamCaptureModeThreadLocal);
    fg_status st = FG_OK;
    if (err == cudaSuccess) {
        st = enqueue();
        err = cudaStreamEndCapture(*stream, &graph);
    }
    *stream = user_stream;
    const cublasStatus_t restored = cublasSetStream(blas, user_stream);
    if (restored != CUBLAS_STATUS_SUCCESS) {
        if (graph != NULL) cudaGraphDestroy(graph);
        (void)cudaGetLastError();
        return fgi_fail(FG_ERR_CUDA, "%s: cublasSetStream failed: %s", fn,
                       cublasGetStatusString(restored));
    }
    if (st == FG_OK && err == cudaSuccess) err = cudaGraphInstantiate(exec, graph, 0);
    if (graph != NULL) cudaGraphDestroy(graph);
    if (st != FG_OK || err != cudaSuccess) {
        (void)cudaGetLastError();
        *exec = NULL;
        return st != FG_OK ? st
                           : fgi_fail(FG_ERR_CUDA, "%s: capturing the decode step failed: %s", fn,
                                     cudaGetErrorString(err));
    }
    return FG_OK;
}

#endif /* FLASHGPT_CUDA_GRAPH_CAPTURE_CUH */
