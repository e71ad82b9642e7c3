/* The paged KV cache's block pool and block tables (host/runtime/kv_paged.h):
 * random allocate / share / release sequences checked against a model of
 * who holds what (no block is ever handed to two holders, counts always
 * add up), exhaustion as a clean failure that changes nothing, refused
 * releases of free or foreign ids, all-or-nothing table growth, and every
 * block back in the pool at the end. */
#include "fixture.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <stdlib.h>
#include <string.h>

static void ok(fg_status st, const char *what)
{
    cr_assert(st == FG_OK, "%s: %s: %s (seed %llu)", what, fg_status_str(st), fg_last_error(),
              (unsigned long long)fgi_test_seed());
}

static fg_config small_cfg(void) { return fgi_test_llama_config(3, 32, 4, 2, 40, 0, 50, 64); }

Test(kv_paged, layout_and_arguments)
{
    const fg_config cfg = small_cfg();
    fgi_kv_pool *pool = NULL;
    fgi_assert_status(fgi_kv_pool_create("t", NULL, &cfg, 4, 16), FG_ERR_INVALID_ARG, "pool");
    fgi_assert_status(fgi_kv_pool_create("t", &pool, NULL, 4, 16), FG_ERR_INVALID_ARG, "cfg");
    fgi_assert_status(fgi_kv_pool_create("t", &pool, &cfg, 0, 16), FG_ERR_INVALID_ARG, "n_blocks");
    fgi_assert_status(fgi_kv_pool_create("t", &pool, &cfg, 4, 0), FG_ERR_INVALID_ARG, "block_size");
    fgi_assert_status(fgi_kv_pool_create("t", &pool, &cfg, 4, FGI_KV_MAX_BLOCK_SIZE + 1),
                      FG_ERR_INVALID_ARG, "block_size");
    cr_assert_null(pool);
    ok(fgi_kv_pool_create("t", &pool, &cfg, 5, 16), "create");
    /* (n_layer, n_blocks, n_kv_head, block_size, head_dim): head_dim 8 */
    cr_assert_eq(pool->head_stride, 16u * 8u);
    cr_assert_eq(pool->block_stride, 2u * 16u * 8u);
    cr_assert_eq(pool->layer_stride, 5u * 2u * 16u * 8u);
    cr_assert_eq(fgi_kv_pool_free_blocks(pool), 5);
    fgi_assert_status(fgi_kv_pool_alloc("t", pool, -1, NULL), FG_ERR_INVALID_ARG, "'n'");
    fgi_assert_status(fgi_kv_pool_release("t", pool, 5), FG_ERR_INVALID_ARG, "outside the pool");
    fgi_assert_status(fgi_kv_pool_release("t", pool, -1), FG_ERR_INVALID_ARG, "outside the pool");
    fgi_assert_status(fgi_kv_pool_release("t", pool, 0), FG_ERR_INVALID_ARG, "not allocated");
    fgi_assert_status(fgi_kv_pool_retain("t", pool, 0), FG_ERR_INVALID_ARG, "not allocated");
    cr_assert_eq(fgi_kv_pool_free_blocks(pool), 5, "refused calls change nothing");
    fgi_kv_pool_destroy(pool);
    fgi_kv_pool_destroy(NULL);
}

Test(kv_paged, exhaustion_is_clean)
{
    const fg_config cfg = small_cfg();
    fgi_kv_pool *pool;
    ok(fgi_kv_pool_create("t", &pool, &cfg, 6, 4), "create");
    int32_t ids[8], more[8];
    ok(fgi_kv_pool_alloc("t", pool, 4, ids), "four");
    memset(more, 0x7f, sizeof more);
    fgi_assert_status(fgi_kv_pool_alloc("t", pool, 3, more), FG_ERR_OOM, "out of KV blocks");
    cr_assert_eq(more[0], 0x7f7f7f7f, "nothing written on failure");
    cr_assert_eq(fgi_kv_pool_free_blocks(pool), 2);
    ok(fgi_kv_pool_alloc("t", pool, 2, ids + 4), "the last two");
    fgi_assert_status(fgi_kv_pool_alloc("t", pool, 1, more), FG_ERR_OOM, "0 of 6 free");
    int seen[6] = {0};
    for (int i = 0; i < 6; i++) {
        cr_assert(ids[i] >= 0 && ids[i] < 6);
        cr_assert_eq(seen[ids[i]]++, 0, "block %d handed out twice", ids[i]);
    }
    /* a table that cannot grow keeps what it had */
    fgi_kv_seq seq;
    ok(fgi_kv_seq_init("t", &seq, pool, 20), "seq");
    cr_assert_eq(seq.max_blocks, 5);
    fgi_assert_status(fgi_kv_seq_reserve("t", &seq, pool, 1), FG_ERR_OOM, "out of KV blocks");
    cr_assert_eq(seq.n_blocks, 0);
    for (int i = 0; i < 6; i++) ok(fgi_kv_pool_release("t", pool, ids[i]), "release");
    ok(fgi_kv_seq_reserve("t", &seq, pool, 9), "reserve 9 tokens");
    cr_assert_eq(seq.n_blocks, 3);
    cr_assert_eq(fgi_kv_seq_blocks_needed(&seq, pool, 12), 0);
    cr_assert_eq(fgi_kv_seq_blocks_needed(&seq, pool, 13), 1);
    fgi_assert_status(fgi_kv_seq_reserve("t", &seq, pool, 21), FG_ERR_INVALID_ARG,
                      "do not fit the block table");
    ok(fgi_kv_pool_alloc("t", pool, 2, more), "two elsewhere");
    fgi_assert_status(fgi_kv_seq_reserve("t", &seq, pool, 20), FG_ERR_OOM, "out of KV blocks");
    cr_assert_eq(seq.n_blocks, 3, "all or nothing");
    cr_assert_eq(fgi_kv_pool_free_blocks(pool), 1);
    for (int i = 0; i < 2; i++) ok(fgi_kv_pool_release("t", pool, more[i]), "release");
    fgi_kv_seq_release(&seq, pool);
    cr_assert_eq(fgi_kv_pool_free_blocks(pool), 6);
    cr_assert_eq(seq.len, 0);
    fgi_kv_seq_free(&seq);
    fgi_kv_pool_destroy(pool);
}

/* Random operations on a few tables and shared blocks, against a model:
 * holders[id] counts the tables and extra references that hold block id. */
Test(kv_paged, random_operations_keep_the_books)
{
    fgi_rng rng = fgi_rng_make(1);
    const fg_config cfg = small_cfg();
    for (int round = 0; round < 20; round++) {
        const int n_blocks = fgi_rng_int(&rng, 1, 40), bs = fgi_rng_int(&rng, 1, 17);
        fgi_kv_pool *pool;
        ok(fgi_kv_pool_create("t", &pool, &cfg, n_blocks, bs), "create");
        enum { NSEQ = 5 };
        fgi_kv_seq seqs[NSEQ];
        int *holders = calloc((size_t)n_blocks, sizeof(int));
        int32_t *extra = malloc(sizeof(int32_t) * 4096);
        int n_extra = 0;
        cr_assert(holders && extra);
        for (int s = 0; s < NSEQ; s++) ok(fgi_kv_seq_init("t", &seqs[s], pool, 200), "seq");
        for (int op = 0; op < 400; op++) {
            const int s = fgi_rng_int(&rng, 0, NSEQ - 1), kind = fgi_rng_int(&rng, 0, 9);
            if (kind < 5) { /* grow */
                const int tokens = fgi_rng_int(&rng, 0, 200);
                const int need = fgi_kv_seq_blocks_needed(&seqs[s], pool, tokens);
                const int before = seqs[s].n_blocks, free_before = fgi_kv_pool_free_blocks(pool);
                const fg_status st = fgi_kv_seq_reserve("t", &seqs[s], pool, tokens);
                if (need <= free_before) {
                    ok(st, "reserve with room");
                    for (int b = before; b < seqs[s].n_blocks; b++) {
                        cr_assert_eq(holders[seqs[s].blocks[b]], 0, "a held block handed out");
                        holders[seqs[s].blocks[b]] = 1;
                    }
                } else {
                    cr_assert_eq(st, FG_ERR_OOM);
                    cr_assert_eq(seqs[s].n_blocks, before);
                    cr_assert_eq(fgi_kv_pool_free_blocks(pool), free_before);
                }
            } else if (kind < 7) { /* release a table */
                for (int b = 0; b < seqs[s].n_blocks; b++) holders[seqs[s].blocks[b]]--;
                fgi_kv_seq_release(&seqs[s], pool);
                cr_assert_eq(seqs[s].n_blocks, 0);
            } else if (kind < 9) { /* share one of its blocks */
                if (seqs[s].n_blocks > 0 && n_extra < 4096) {
                    const int32_t id = seqs[s].blocks[fgi_rng_int(&rng, 0, seqs[s].n_blocks - 1)];
                    ok(fgi_kv_pool_retain("t", pool, id), "retain");
                    holders[id]++;
                    extra[n_extra++] = id;
                }
            } else if (n_extra > 0) { /* drop a shared reference */
                const int i = fgi_rng_int(&rng, 0, n_extra - 1);
                ok(fgi_kv_pool_release("t", pool, extra[i]), "release extra");
                holders[extra[i]]--;
                extra[i] = extra[--n_extra];
            }
            int in_use = 0;
            for (int b = 0; b < n_blocks; b++) {
                cr_assert_eq(pool->refs[b], holders[b], "block %d: refs %d, holders %d", b,
                             pool->refs[b], holders[b]);
                in_use += holders[b] > 0;
            }
            cr_assert_eq(fgi_kv_pool_used_blocks(pool), in_use);
        }
        for (int s = 0; s < NSEQ; s++) {
            fgi_kv_seq_release(&seqs[s], pool);
            fgi_kv_seq_free(&seqs[s]);
        }
        while (n_extra > 0) ok(fgi_kv_pool_release("t", pool, extra[--n_extra]), "extra");
        cr_assert_eq(fgi_kv_pool_free_blocks(pool), n_blocks, "every block returned");
        /* and each exactly once on the free stack */
        int *seen = calloc((size_t)n_blocks, sizeof(int));
        cr_assert_not_null(seen);
        for (int i = 0; i < pool->n_free; i++) cr_assert_eq(seen[pool->free_ids[i]]++, 0);
        free(seen);
        free(holders);
        free(extra);
        fgi_kv_pool_destroy(pool);
    }
}
