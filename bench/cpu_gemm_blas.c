/* Prefill-shaped GEMMs: the fast CPU path's own kernels (host/cpu, packed
 * panels, its thread pool) against OpenBLAS's cblas_sgemm on the same
 * (T, in) @ (in, out) products, GFLOP/s, best of 5. Issue 16 item 3 asked
 * for both to be measured; bench/RESULTS.md has the answer (the own kernels
 * won, so the library does not link a BLAS). Built only when pkg-config
 * finds openblas (CMakeLists.txt).
 *
 *   cpu_gemm_blas [THREADS]      (default 2)
 */
#define _POSIX_C_SOURCE 200809L
#include "cpu_internal.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void openblas_set_num_threads(int n); /* not in every cblas.h */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    const fgi_cpu_kernels *k;
    float *y;
    const float *x;
    int rows, n_chunks;
    const fgi_cpu_mat *w;
} job;

/* the decoder's split: a few chunks of panels per thread */
static void task(void *ctx, int chunk, int thread)
{
    const job *j = ctx;
    const int np = j->w->n_panels;
    const int p0 = (int)((long long)np * chunk / j->n_chunks);
    const int p1 = (int)((long long)np * (chunk + 1) / j->n_chunks);
    (void)thread;
    j->k->gemm(j->y, (size_t)j->w->out, j->x, (size_t)j->w->in, j->rows, j->w, NULL, p0, p1,
               FGI_EPI_STORE);
}

int main(int argc, char **argv)
{
    /* stories110M's and stories15M's layers: q|k|v, attention out, gate|up, down */
    const int shapes[][2] = {{768, 2304}, {768, 768}, {768, 4096}, {2048, 768}, {288, 864}, {768, 1536}};
    const int T = 256, threads = argc > 1 ? atoi(argv[1]) : 2;
    fgi_cpu_pool *pool;
    if (threads < 1 || fgi_cpu_pool_create(&pool, threads) != FG_OK) return 1;
    openblas_set_num_threads(threads);
    const fgi_cpu_kernels *k = fgi_cpu_kernels_for(FGI_CPU_ISA_AUTO);
    printf("own kernels %s, T %d, %d threads; GFLOP/s, best of 5\n", k->name, T, threads);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int in = shapes[s][0], out = shapes[s][1], np = (out + FGI_CPU_NR - 1) / FGI_CPU_NR;
        float *x = malloc(sizeof(float) * (size_t)T * in), *w = malloc(sizeof(float) * (size_t)in * out);
        float *y = malloc(sizeof(float) * (size_t)T * out);
        fgi_cpu_mat m = {in, out, np, calloc((size_t)np * in * FGI_CPU_NR, sizeof(float))};
        if (!x || !w || !y || !m.data) return 1;
        for (size_t i = 0; i < (size_t)T * in; i++) x[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
        for (size_t i = 0; i < (size_t)in * out; i++) w[i] = (float)((i * 53) % 97) / 97.0f - 0.5f;
        for (size_t i = 0; i < (size_t)in; i++)
            for (size_t o = 0; o < (size_t)out; o++)
                m.data[(o / FGI_CPU_NR) * in * FGI_CPU_NR + i * FGI_CPU_NR + o % FGI_CPU_NR] =
                    w[i * out + o];
        const int n = 4 * threads < np ? 4 * threads : np;
        job j = {k, y, x, T, n, &m};
        double ours = 1e30, blas = 1e30;
        for (int r = 0; r < 5; r++) {
            double t0 = now();
            fgi_cpu_pool_run(pool, task, &j, n);
            double t = now() - t0;
            ours = t < ours ? t : ours;
            t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, out, in, 1.0f, x, in, w, out,
                        0.0f, y, out);
            t = now() - t0;
            blas = t < blas ? t : blas;
        }
        const double flop = 2.0 * T * in * out;
        printf("(%d x %d) @ (%d x %d): own %.1f, OpenBLAS %.1f\n", T, in, in, out,
               flop / ours / 1e9, flop / blas / 1e9);
        free(x), free(w), free(y), free(m.data);
    }
    fgi_cpu_pool_destroy(pool);
    return 0;
}
