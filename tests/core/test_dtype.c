/* Element types (flashgpt/dtype.h): names, sizes, parsing and its errors. */
#include "support.h"

#include <string.h>

static const fg_dtype all[] = {FG_DTYPE_F32, FG_DTYPE_BF16, FG_DTYPE_F16};
#define N_ALL ((int)(sizeof all / sizeof all[0]))

Test(dtype, names_and_sizes)
{
    cr_assert_str_eq(fg_dtype_name(FG_DTYPE_F32), "f32");
    cr_assert_str_eq(fg_dtype_name(FG_DTYPE_BF16), "bf16");
    cr_assert_str_eq(fg_dtype_name(FG_DTYPE_F16), "f16");
    cr_assert_eq(fg_dtype_size(FG_DTYPE_F32), 4);
    cr_assert_eq(fg_dtype_size(FG_DTYPE_BF16), 2);
    cr_assert_eq(fg_dtype_size(FG_DTYPE_F16), 2);
    cr_assert_str_eq(fg_dtype_name((fg_dtype)77), "unknown dtype");
    cr_assert_str_eq(fg_dtype_name((fg_dtype)-1), "unknown dtype");
    cr_assert_eq(fg_dtype_size((fg_dtype)77), 0);
    cr_assert_eq(fg_dtype_size((fg_dtype)-1), 0);
}

Test(dtype, every_name_parses_back)
{
    for (int i = 0; i < N_ALL; i++) {
        fg_dtype got = (fg_dtype)99;
        cr_assert_eq(fg_dtype_parse(fg_dtype_name(all[i]), &got), FG_OK, "%s", fg_last_error());
        cr_assert_eq(got, all[i]);
    }
}

Test(dtype, aliases_in_any_case)
{
    const struct {
        const char *text;
        fg_dtype want;
    } cases[] = {{"F32", FG_DTYPE_F32},      {"fp32", FG_DTYPE_F32},  {"Float32", FG_DTYPE_F32},
                 {"float", FG_DTYPE_F32},    {"BF16", FG_DTYPE_BF16}, {"bfloat16", FG_DTYPE_BF16},
                 {"BFloat16", FG_DTYPE_BF16}, {"fp16", FG_DTYPE_F16}, {"FLOAT16", FG_DTYPE_F16},
                 {"half", FG_DTYPE_F16}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fg_dtype got = (fg_dtype)99;
        cr_assert_eq(fg_dtype_parse(cases[i].text, &got), FG_OK, "%s: %s", cases[i].text,
                     fg_last_error());
        cr_assert_eq(got, cases[i].want, "%s", cases[i].text);
    }
}

Test(dtype, null_arguments)
{
    fg_dtype got = FG_DTYPE_BF16;
    fgi_assert_status(fg_dtype_parse(NULL, &got), FG_ERR_INVALID_ARG, "'text' is NULL");
    fgi_assert_status(fg_dtype_parse("f32", NULL), FG_ERR_INVALID_ARG, "'out' is NULL");
    cr_assert_eq(got, FG_DTYPE_BF16, "no partial write");
}

Test(dtype, near_misses_are_rejected)
{
    const char *bad[] = {"", "f", "f3", "f32 ", " f32", "f320", "bf1", "bf16x", "float64",
                         "int8", "f\xc4\xb1" "32"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fg_dtype got = FG_DTYPE_F16;
        fgi_assert_status(fg_dtype_parse(bad[i], &got), FG_ERR_INVALID_ARG, "fg_dtype_parse");
        cr_assert(strstr(fg_last_error(), "'text'") != NULL, "%s", fg_last_error());
        cr_assert_eq(got, FG_DTYPE_F16, "no partial write for \"%s\"", bad[i]);
    }
}

Test(dtype, bad_text_is_escaped_and_cut)
{
    fg_dtype got = FG_DTYPE_F32;
    fgi_assert_status(fg_dtype_parse("b\nf\"1\\6\x7f", &got), FG_ERR_INVALID_ARG,
                      "\"b\\x0Af\\x221\\x5C6\\x7F\"");
    char long_text[300];
    memset(long_text, 'q', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    fgi_assert_status(fg_dtype_parse(long_text, &got), FG_ERR_INVALID_ARG, "qqq...\"");
    cr_assert(strlen(fg_last_error()) < 200, "%s", fg_last_error());
}

/* Random byte strings: every one that is not a name is refused with a
 * single printable line, and *out is left alone. */
Test(dtype, random_text_gives_one_printable_line)
{
    fgi_rng rng = fgi_rng_make(0xd7e);
    for (int iter = 0; iter < 2000; iter++) {
        char text[24];
        const int len = fgi_rng_int(&rng, 0, (int)sizeof text - 1);
        for (int i = 0; i < len; i++) text[i] = (char)fgi_rng_int(&rng, 1, 255);
        text[len] = '\0';
        fg_dtype got = (fg_dtype)42;
        const fg_status st = fg_dtype_parse(text, &got);
        if (st == FG_OK) {
            cr_assert_neq(fg_dtype_size(got), 0, "seed %llu",
                          (unsigned long long)fgi_test_seed());
            continue;
        }
        cr_assert_eq(st, FG_ERR_INVALID_ARG);
        cr_assert_eq(got, (fg_dtype)42, "seed %llu: partial write",
                     (unsigned long long)fgi_test_seed());
        for (const char *c = fg_last_error(); *c != '\0'; c++)
            cr_assert(*c >= 0x20 && *c < 0x7f, "seed %llu: unprintable byte 0x%02x in \"%s\"",
                      (unsigned long long)fgi_test_seed(), (unsigned char)*c, fg_last_error());
    }
}
