/* Element types (flashgpt/dtype.h): names, sizes, parsing and its errors. */
#include "support.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
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

/* The bits of one 16-bit value widened (bits 0x0000..0xffff of dtype). */
static float widen(fg_dtype dtype, uint16_t bits)
{
    float f = 0.0f;
    cr_assert_eq(fg_dtype_to_f32(dtype, &f, &bits, 1), FG_OK, "%s", fg_last_error());
    return f;
}

static uint16_t narrow(fg_dtype dtype, float f)
{
    uint16_t bits = 0;
    cr_assert_eq(fg_dtype_from_f32(dtype, &bits, &f, 1), FG_OK, "%s", fg_last_error());
    return bits;
}

/* Every 16-bit pattern of both types: non-NaN values round-trip bit for bit;
 * between two neighbours of the same sign the midpoint (exact in float: a
 * 16-bit mantissa plus one bit) goes to the even one and the floats either
 * side of it to their own side; NaN stays NaN; past the largest finite value
 * the midpoint rounds to inf. This is the rounding the GPU's cvt.rn does, and
 * the emulator's 16-bit types use these functions. */
Test(dtype, narrowing_rounds_to_nearest_even_over_every_pattern)
{
    const fg_dtype types[] = {FG_DTYPE_BF16, FG_DTYPE_F16};
    for (int t = 0; t < 2; t++) {
        const fg_dtype dt = types[t];
        const uint16_t inf_bits = dt == FG_DTYPE_BF16 ? 0x7f80u : 0x7c00u;
        for (uint32_t sign = 0; sign <= 0x8000u; sign += 0x8000u)
            for (uint32_t mag = 0; mag < inf_bits; mag++) {
                const uint16_t h = (uint16_t)(sign | mag), next = (uint16_t)(h + 1);
                const float a = widen(dt, h);
                /* past the largest finite value the binade goes on: the
                 * neighbour is one more ulp, and values at or above the
                 * midpoint round to inf */
                const double b = mag + 1 == inf_bits
                                     ? 2.0 * (double)a - (double)widen(dt, (uint16_t)(h - 1))
                                     : (double)widen(dt, next);
                cr_assert_eq(narrow(dt, a), h, "%s round trip of 0x%04x", fg_dtype_name(dt), h);
                cr_assert_eq(fg_dtype_round(dt, a), a);
                const float mid = (float)(((double)a + b) / 2.0);
                cr_assert_eq((double)mid, ((double)a + b) / 2.0, "midpoint exact");
                const uint16_t even = (h & 1u) ? next : h;
                cr_assert_eq(narrow(dt, mid), even, "%s tie after 0x%04x", fg_dtype_name(dt), h);
                cr_assert_eq(narrow(dt, nextafterf(mid, a)), h);
                cr_assert_eq(narrow(dt, nextafterf(mid, (float)b)), next);
            }
        cr_assert(isinf(widen(dt, inf_bits)) && isinf(widen(dt, (uint16_t)(inf_bits | 0x8000u))));
        cr_assert_eq(narrow(dt, INFINITY), inf_bits);
        cr_assert_eq(narrow(dt, -INFINITY), inf_bits | 0x8000u);
        cr_assert(isnan(widen(dt, narrow(dt, NAN))));
        cr_assert(isnan(widen(dt, narrow(dt, -NAN))));
        cr_assert(isnan(fg_dtype_round(dt, NAN)));
        cr_assert_eq(narrow(dt, FLT_MAX), inf_bits);
    }
    /* below half the smallest f16 subnormal: zero of the same sign */
    cr_assert_eq(narrow(FG_DTYPE_F16, 0x1p-26f), 0x0000);
    cr_assert_eq(narrow(FG_DTYPE_F16, -0x1p-26f), 0x8000);
    cr_assert_eq(narrow(FG_DTYPE_F16, 65504.0f), 0x7bff);
}

Test(dtype, conversions_of_arrays_and_their_errors)
{
    const float src[5] = {1.0f, -2.5f, 3.140625f, 1e-3f, 70000.0f};
    uint16_t h[5];
    float back[5];
    for (int t = 0; t < N_ALL; t++) {
        float wide[5];
        void *dst = all[t] == FG_DTYPE_F32 ? (void *)wide : (void *)h;
        cr_assert_eq(fg_dtype_from_f32(all[t], dst, src, 5), FG_OK);
        cr_assert_eq(fg_dtype_to_f32(all[t], back, dst, 5), FG_OK);
        for (int i = 0; i < 5; i++)
            cr_assert_eq(back[i], fg_dtype_round(all[t], src[i]), "%s [%d]",
                         fg_dtype_name(all[t]), i);
    }
    cr_assert_eq(fg_dtype_round(FG_DTYPE_F32, 0.1f), 0.1f);
    cr_assert(isnan(fg_dtype_round((fg_dtype)9, 1.0f)));
    fgi_assert_status(fg_dtype_from_f32((fg_dtype)9, h, src, 5), FG_ERR_INVALID_ARG, "dtype");
    fgi_assert_status(fg_dtype_to_f32((fg_dtype)-1, back, h, 5), FG_ERR_INVALID_ARG, "dtype");
    fgi_assert_status(fg_dtype_from_f32(FG_DTYPE_F16, NULL, src, 5), FG_ERR_INVALID_ARG, "dst");
    fgi_assert_status(fg_dtype_to_f32(FG_DTYPE_BF16, back, NULL, 5), FG_ERR_INVALID_ARG, "src");
    cr_assert_eq(fg_dtype_to_f32(FG_DTYPE_BF16, NULL, NULL, 0), FG_OK);
}
