/* Helpers shared by the benchmarks (see bench_common.h). */
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>

int bench_check(fg_status st, const char *what)
{
    if (st != FG_OK) fprintf(stderr, "bench: %s: %s\n", what, fg_last_error());
    return st == FG_OK;
}

int bench_check_cuda(cudaError_t err, const char *what)
{
    if (err != cudaSuccess) fprintf(stderr, "bench: %s: %s\n", what, cudaGetErrorString(err));
    return err == cudaSuccess;
}

static int compare_floats(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double bench_median(float *values, int n)
{
    qsort(values, (size_t)n, sizeof(float), compare_floats);
    return n % 2 ? values[n / 2] : 0.5 * ((double)values[n / 2 - 1] + values[n / 2]);
}

void bench_fill_random(float *x, size_t n, double scale, unsigned long long *state)
{
    for (size_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
        const double u = (double)(*state >> 11) * 0x1.0p-53;
        x[i] = (float)(scale * (2.0 * u - 1.0));
    }
}
