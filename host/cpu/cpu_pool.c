/* Thread pool of the fast CPU decoder (see cpu_internal.h).
 *
 * A decode step runs a few dozen short parallel tasks (one per linear layer
 * and attention), microseconds apart, so waking sleeping threads through the
 * kernel for each would cost more than the work: workers spin on a
 * generation counter for a while after each task and only then sleep on a
 * condition variable (the caller broadcasts only when someone sleeps).
 *
 * A task is cut into chunks that the threads claim one at a time from a
 * shared counter, the caller too, and the caller returns once every chunk
 * is done. So a worker the operating system has not scheduled (a busy or
 * oversubscribed machine) delays nothing: the others take its chunks, and
 * when it wakes the task is gone. The counter holds the task's generation
 * in its high half and the next chunk in its low half; a claim is a
 * compare-and-swap on both, so a late worker can never claim a chunk of a
 * task other than the one it read. Before the caller rewrites the task's
 * fields it closes the counter (same generation, chunk index past any
 * task), so a claim in flight against the previous task fails. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "cpu_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* About 50-100 us of spinning before a worker sleeps. */
enum { SPIN_BEFORE_SLEEP = 4000, SPIN_BEFORE_YIELD = 2000 };

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
    atomic_uint generation;   /* the current task's; workers wait for it to change */
    _Atomic uint64_t next;    /* generation << 32 | next chunk to claim */
    atomic_int done;          /* chunks of the current task finished */
    atomic_int sleepers;
    atomic_int stop;
    unsigned last_generation; /* the caller's copy */
    /* the current task; written by the caller while the counter is closed.
     * Atomic (relaxed) because a late worker may read them while they
     * change; the claim's compare-and-swap decides whether what it read
     * counts. */
    _Atomic(fgi_cpu_task) task;
    _Atomic(void *) ctx;
    atomic_int n_chunks;
};

int fgi_cpu_online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (n > 1024 ? 1024 : (int)n) : 1;
}

/* Claims and runs chunks of task `generation` until none is left. */
static void work(fgi_cpu_pool *pool, unsigned generation, int thread)
{
    for (;;) {
        uint64_t c = atomic_load_explicit(&pool->next, memory_order_acquire);
        if ((unsigned)(c >> 32) != generation) return;
        const unsigned chunk = (unsigned)c;
        /* read before the claim; a claim that succeeds proves they were this task's */
        const fgi_cpu_task task = atomic_load_explicit(&pool->task, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&pool->ctx, memory_order_relaxed);
        if (chunk >= (unsigned)atomic_load_explicit(&pool->n_chunks, memory_order_relaxed)) return;
        if (!atomic_compare_exchange_weak_explicit(&pool->next, &c, c + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        task(ctx, (int)chunk, thread);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
    }
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
        work(pool, g, arg->index);
    }
}

/* Sequentially consistent on purpose: the bump of generation and the read
 * of sleepers here, and a worker's increment of sleepers and read of
 * generation, must not be reordered, or each could miss the other's write
 * and the worker would sleep through the task. */
static void bump(fgi_cpu_pool *pool, unsigned generation)
{
    atomic_store(&pool->generation, generation);
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
        bump(pool, ++pool->last_generation);
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
    atomic_init(&pool->next, 0);
    atomic_init(&pool->task, NULL);
    atomic_init(&pool->ctx, NULL);
    atomic_init(&pool->n_chunks, 0);
    atomic_init(&pool->done, 0);
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

void fgi_cpu_pool_run(fgi_cpu_pool *pool, fgi_cpu_task task, void *ctx, int n_chunks)
{
    if (pool->n_threads == 1 || n_chunks <= 1) {
        for (int c = 0; c < n_chunks; c++) task(ctx, c, 0);
        return;
    }
    const unsigned g = ++pool->last_generation;
    /* close: a claim still in flight against the previous task now fails */
    atomic_exchange(&pool->next, (uint64_t)g << 32 | 0xffffffffu);
    atomic_thread_fence(memory_order_seq_cst);
    atomic_store_explicit(&pool->task, task, memory_order_relaxed);
    atomic_store_explicit(&pool->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&pool->n_chunks, n_chunks, memory_order_relaxed);
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->next, (uint64_t)g << 32, memory_order_release);
    bump(pool, g);
    work(pool, g, 0);
    int spins = 0;
    while (atomic_load_explicit(&pool->done, memory_order_acquire) < n_chunks) {
        if (++spins < SPIN_BEFORE_YIELD) {
            CPU_RELAX();
        } else {
            sched_yield();
            spins = 0;
        }
    }
}
