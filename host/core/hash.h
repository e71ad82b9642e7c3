/* A keyed hash for every table built from file contents (host/core/hash.c).
 *
 * With a fixed hash, a crafted file (a vocab.json of 200,000 spellings that
 * all land in one slot) turns each insert into a walk over the ones before
 * it: loading becomes quadratic. SipHash-2-4 under a key drawn at random for
 * each table makes the slot of a string unpredictable to whoever wrote the
 * file, so no input can be steered into collisions; nothing the library
 * computes depends on the key, only where entries sit in the table. */
#ifndef FLASHGPT_HOST_HASH_H
#define FLASHGPT_HOST_HASH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t k0, k1;
} fgi_hash_key;

/* A fresh key from the system's random source (getrandom), with a fallback
 * mixing clock, address and a counter where that source is unavailable. */
fgi_hash_key fgi_hash_key_random(void);

/* SipHash-2-4 of data[0 .. n) under key. */
uint64_t fgi_hash_bytes(const fgi_hash_key *key, const void *data, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* FLASHGPT_HOST_HASH_H */
