/* Thread pool of the fast CPU decoder (see cpu_internal.h).
 *
 * A decode step runs a few dozen short parallel tasks (one per linear layer
 * and attention), microseconds apart, so waking sleeping threads through the
 * kernel for each would cost more than the work. Workers therefore spin on a
 * generation counter for a while after each task and only then sleep on a
 * condition variable; the caller bumps the counter, and broadcasts only when
 * someone sleeps. A worker that goes to sleep re-checks the counter under
 * the mutex, and the caller bumps it before taking the mutex, so no wake-up
 * is lost. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "cpu_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* About 50-100 us of spinning before a worker sleeps. */
enum { SPIN_BEFORE_SLEEP = 4000, SPIN_BEFORE_YIELD = 4000 };

typedef struct {
    fgi_cpu_pool *pool;
    int index;
} worker_arg;

struct fgi_cpu_pool {
    int n_threads;
    pthread_t *threads;   /* n_threads - 1 workers */
    worker_arg *args;
    int n_started;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    atomic_uint generation; /* bumped once per task */
    atomic_int pending;     /* workers still running the current task */
    atomic_int sleepers;
    atomic_int stop;
    fgi_cpu_task task;
    void *ctx;
};

int fgi_cpu_online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (n > 1024 ? 1024 : (int)n) : 1;
}

static void *worker_main(void *p)
{
    worker_arg *arg = p;
    fgi_cpu_pool *pool = arg->pool;
    /* not a load: a worker that starts late must still see the first task */
    unsigned seen = 0;
    for (;;) {
        int spins = 0;
        unsigned g;
        while ((g = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen) {
            if (++spins < SPIN_BEFORE_SLEEP) {
                CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&pool->mutex);
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->generation) == seen)
                pthread_cond_wait(&pool->wake, &pool->mutex);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mutex);
            spins = 0;
        }
        seen = g;
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) return NULL;
        pool->task(pool->ctx, arg->index, pool->n_threads);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

/* Sequentially consistent on purpose: the bump of generation and the read
 * of sleepers here, and a worker's increment of sleepers and read of
 * generation, must not be reordered, or each could miss the other's write
 * and the worker would sleep through the task. */
static void bump(fgi_cpu_pool *pool)
{
    atomic_fetch_add(&pool->generation, 1);
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
}

void fgi_cpu_pool_destroy(fgi_cpu_pool *pool)
{
    if (pool == NULL) return;
    if (pool->n_started > 0) {
        atomic_store(&pool->stop, 1);
        bump(pool);
        for (int i = 0; i < pool->n_started; i++) pthread_join(pool->threads[i], NULL);
    }
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mutex);
    free(pool->threads);
    free(pool->args);
    free(pool);
}

fg_status fgi_cpu_pool_create(fgi_cpu_pool **out, int n_threads)
{
    static const char fn[] = "fgi_cpu_pool_create";
    *out = NULL;
    fgi_cpu_pool *pool;
    FGI_TRY(fgi_alloc(fn, (void **)&pool, 1, sizeof *pool));
    pool->n_threads = n_threads;
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->stop, 0);
    if (pthread_mutex_init(&pool->mutex, NULL) != 0) {
        free(pool);
        return fgi_fail(FG_ERR_OOM, "%s: cannot create a mutex", fn);
    }
    if (pthread_cond_init(&pool->wake, NULL) != 0) {
        pthread_mutex_destroy(&pool->mutex);
        free(pool);
        return fgi_fail(FG_ERR_OOM, "%s: cannot create a condition variable", fn);
    }
    const int workers = n_threads - 1;
    fg_status st = FG_OK;
    if (workers > 0) {
        st = fgi_alloc(fn, (void **)&pool->threads, (size_t)workers, sizeof *pool->threads);
        if (st == FG_OK)
            st = fgi_alloc(fn, (void **)&pool->args, (size_t)workers, sizeof *pool->args);
    }
    for (int i = 0; st == FG_OK && i < workers; i++) {
        pool->args[i] = (worker_arg){pool, i + 1};
        if (pthread_create(&pool->threads[i], NULL, worker_main, &pool->args[i]) != 0)
            st = fgi_fail(FG_ERR_OOM, "%s: cannot start thread %d of %d", fn, i + 2, n_threads);
        else
            pool->n_started++;
    }
    if (st != FG_OK) {
        fgi_cpu_pool_destroy(pool);
        return st;
    }
    *out = pool;
    return FG_OK;
}

int fgi_cpu_pool_threads(const fgi_cpu_pool *pool) { return pool->n_threads; }

void fgi_cpu_pool_run(fgi_cpu_pool *pool, fgi_cpu_task task, void *ctx)
{
    if (pool->n_threads == 1) {
        task(ctx, 0, 1);
        return;
    }
    pool->task = task;
    pool->ctx = ctx;
    atomic_store_explicit(&pool->pending, pool->n_threads - 1, memory_order_relaxed);
    bump(pool);
    task(ctx, 0, pool->n_threads);
    int spins = 0;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
        if (++spins < SPIN_BEFORE_YIELD) {
            CPU_RELAX();
        } else {
            sched_yield();
            spins = 0;
        }
    }
}
