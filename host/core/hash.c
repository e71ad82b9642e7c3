/* SipHash-2-4 (Aumasson and Bernstein, 2012), written from the paper's
 * description: a 256-bit state initialised from the 128-bit key, two
 * rounds per 8-byte little-endian message word, the length in the last
 * word's top byte, four finishing rounds. See hash.h for why it is keyed. */
#define _DEFAULT_SOURCE /* getrandom */
#include "hash.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

typedef struct {
    uint64_t v0, v1, v2, v3;
} sip_state;

static void sip_round(sip_state *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

static void absorb(sip_state *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

static uint64_t load_le64(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

uint64_t fgi_hash_bytes(const fgi_hash_key *key, const void *data, size_t n)
{
    const unsigned char *p = data;
    sip_state s = {key->k0 ^ 0x736f6d6570736575ULL, key->k1 ^ 0x646f72616e646f6dULL,
                   key->k0 ^ 0x6c7967656e657261ULL, key->k1 ^ 0x7465646279746573ULL};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) absorb(&s, load_le64(p + i, 8));
    absorb(&s, load_le64(p + i, n - i) | ((uint64_t)(n & 0xff) << 56));
    s.v2 ^= 0xff;
    for (int r = 0; r < 4; r++) sip_round(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

fgi_hash_key fgi_hash_key_random(void)
{
    fgi_hash_key k;
    if (getrandom(&k, sizeof k, GRND_NONBLOCK) == (ssize_t)sizeof k) return k;
    /* no entropy source (very early boot, a seccomp filter): still a key no
     * file can predict in advance, though not a secret one */
    static _Atomic uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^
                 (uint64_t)(uintptr_t)&k ^ (atomic_fetch_add(&counter, 1) << 40);
    k.k0 = splitmix(&x);
    k.k1 = splitmix(&x);
    return k;
}
