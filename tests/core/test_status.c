/* Status codes and the thread-local error message. */
#include "support.h"
#include "internal.h" /* test-only: see tests/support/internal.h */

#include <pthread.h>
#include <string.h>

Test(status, every_code_has_a_distinct_name)
{
    const fg_status codes[] = {FG_OK, FG_ERR_INVALID_ARG, FG_ERR_OOM, FG_ERR_CUDA,
                               FG_ERR_IO, FG_ERR_FORMAT, FG_ERR_UNSUPPORTED};
    const int n = (int)(sizeof codes / sizeof codes[0]);
    for (int i = 0; i < n; i++) {
        cr_assert(fg_status_str(codes[i]) != NULL);
        cr_assert(strcmp(fg_status_str(codes[i]), "unknown status") != 0);
        for (int j = 0; j < i; j++)
            cr_assert(strcmp(fg_status_str(codes[i]), fg_status_str(codes[j])) != 0);
    }
    cr_assert_str_eq(fg_status_str((fg_status)99), "unknown status");
    cr_assert_eq(FG_OK, 0);
}

Test(status, message_names_function_argument_and_value)
{
    float x[4] = {1, 2, 3, 4}, y[4];
    fg_clear_error();
    cr_assert_str_eq(fg_last_error(), "");
    fgi_assert_status(fg_ref_softmax(y, x, 1, 0, 1), FG_ERR_INVALID_ARG, "fg_ref_softmax");
    cr_assert(strstr(fg_last_error(), "'n'") != NULL, "%s", fg_last_error());
    cr_assert(strstr(fg_last_error(), "got 0") != NULL, "%s", fg_last_error());
    fgi_assert_status(fg_ref_gelu(NULL, x, 4), FG_ERR_INVALID_ARG, "'y' is NULL");
    fg_clear_error();
    cr_assert_str_eq(fg_last_error(), "");
}

static void *fail_in_thread(void *arg)
{
    (void)arg;
    float x[2] = {1, 2};
    fg_ref_gelu(x, x, -7);
    return strstr(fg_last_error(), "-7") ? (void *)1 : NULL;
}

Test(status, message_is_thread_local)
{
    float x[2] = {1, 2};
    fg_ref_softmax(x, x, 1, 2, -3);
    pthread_t th;
    void *other_ok = NULL;
    cr_assert_eq(pthread_create(&th, NULL, fail_in_thread, NULL), 0);
    cr_assert_eq(pthread_join(th, &other_ok), 0);
    cr_assert(other_ok != NULL, "the other thread saw its own message");
    cr_assert(strstr(fg_last_error(), "-3") != NULL,
              "this thread's message survived: %s", fg_last_error());
}

/* The safety net under every message: whatever text a call site formats
 * into it, the stored message is one line of printable ASCII. */
Test(status, messages_escape_control_and_non_ascii_bytes)
{
    cr_assert_eq(fgi_fail(FG_ERR_FORMAT, "name '%s' bad", "a\nb\x1b[2J\xc2\x9b\t"), FG_ERR_FORMAT);
    cr_assert_str_eq(fg_last_error(), "name 'a\\x0Ab\\x1B[2J\\xC2\\x9B\\x09' bad");
    /* a message of nothing but control bytes is cut at a whole escape */
    char many[600];
    memset(many, '\n', sizeof many - 1);
    many[sizeof many - 1] = '\0';
    fgi_fail(FG_ERR_FORMAT, "%s", many);
    const char *m = fg_last_error();
    const size_t len = strlen(m);
    cr_assert(len > 400 && len % 4 == 0, "%zu", len);
    for (size_t i = 0; i < len; i += 4) cr_assert(strncmp(m + i, "\\x0A", 4) == 0);

    char buf[64];
    cr_assert_str_eq(fg_quote_text(buf, sizeof buf, "it's \"q\" \\ \x7f"),
                     "it\\x27s \\x22q\\x22 \\x5C \\x7F");
    /* cut with "..." when it does not fit, never mid-escape */
    memset(many, '\x01', 40);
    many[40] = '\0';
    fg_quote_text(buf, sizeof buf, many);
    cr_assert(strlen(buf) < sizeof buf && strcmp(buf + strlen(buf) - 3, "...") == 0, "%s", buf);
    cr_assert_eq((strlen(buf) - 3) % 4, 0, "%s", buf);
}

/* The keyed hash of every table built from file contents (hash.h):
 * SipHash-2-4's published test vectors (key 00..0f, message 00..n-1), and
 * fresh keys for each table. */
Test(hash, siphash_vectors_and_fresh_keys)
{
    fgi_hash_key key;
    unsigned char k[16], msg[64];
    for (int i = 0; i < 16; i++) k[i] = (unsigned char)i;
    for (int i = 0; i < 64; i++) msg[i] = (unsigned char)i;
    key.k0 = key.k1 = 0;
    for (int i = 0; i < 8; i++) {
        key.k0 |= (uint64_t)k[i] << (8 * i);
        key.k1 |= (uint64_t)k[8 + i] << (8 * i);
    }
    cr_assert_eq(fgi_hash_bytes(&key, msg, 0), 0x726fdb47dd0e0e31ULL);
    cr_assert_eq(fgi_hash_bytes(&key, msg, 1), 0x74f839c593dc67fdULL);
    cr_assert_eq(fgi_hash_bytes(&key, msg, 15), 0xa129ca6149be45e5ULL);
    /* keys differ from draw to draw, and so do the hashes of one string */
    const fgi_hash_key a = fgi_hash_key_random(), b = fgi_hash_key_random();
    cr_assert(a.k0 != b.k0 || a.k1 != b.k1);
    cr_assert_neq(fgi_hash_bytes(&a, "spelling", 8), fgi_hash_bytes(&b, "spelling", 8));
}
