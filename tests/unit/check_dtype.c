/* dtype conversions, exhaustively where the domain is small, each against
 * a reference computed independently (ldexp from the bit fields, the
 * compiler's _Float16, integer rounding). */
#include "config.h"
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "tap.h"
#include "ct/dtype.h"

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float fl(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Same value, or both NaN with the same sign. */
static int same(float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b) && signbit(a) == signbit(b);
    return bits(a) == bits(b);
}

START_TEST(t_f8e4m3_every_code)
{
    int nans = 0;
    for (int b = 0; b < 256; b++) {
        int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
        float want;
        if (e == 15 && m == 7) {
            want = s ? -NAN : NAN;
            nans++;
        } else if (e == 0) {
            want = (float)ldexp(m / 8.0, -6);
        } else {
            want = (float)ldexp(1.0 + m / 8.0, e - 7);
        }
        if (s && !isnan(want))
            want = -want;
        ck_assert_msg(same(ct_f8e4m3_to_f32((uint8_t)b), want), "code 0x%02x", b);
    }
    ck_assert_int_eq(nans, 2);
    ck_assert(ct_f8e4m3_to_f32(0x7e) == 448.0f);
    ck_assert(ct_f8e4m3_to_f32(0x01) == 0x1p-9f);
    ck_assert(signbit(ct_f8e4m3_to_f32(0x80)) && ct_f8e4m3_to_f32(0x80) == 0.0f);
}
END_TEST

START_TEST(t_f8e5m2_every_code)
{
    for (int b = 0; b < 256; b++) {
        int s = b >> 7, e = (b >> 2) & 31, m = b & 3;
        float want;
        if (e == 31)
            want = m ? NAN : INFINITY;
        else if (e == 0)
            want = (float)ldexp(m / 4.0, -14);
        else
            want = (float)ldexp(1.0 + m / 4.0, e - 15);
        if (s)
            want = -want;
        ck_assert_msg(same(ct_f8e5m2_to_f32((uint8_t)b), want), "code 0x%02x", b);
    }
}
END_TEST

/* FNUZ: bias 8 (E4M3) / 16 (E5M2), no infinities or -0, 0x80 the only NaN */
START_TEST(t_f8_fnuz_every_code)
{
    for (int b = 0; b < 256; b++) {
        int s = b >> 7;
        float w43, w52;
        if (b == 0x80) {
            w43 = w52 = NAN;
        } else {
            int e = (b >> 3) & 15, m = b & 7;
            w43 = (float)(e ? ldexp(1.0 + m / 8.0, e - 8) : ldexp(m / 8.0, -7));
            e = (b >> 2) & 31, m = b & 3;
            w52 = (float)(e ? ldexp(1.0 + m / 4.0, e - 16) : ldexp(m / 4.0, -15));
            if (s)
                w43 = -w43, w52 = -w52;
        }
        ck_assert_msg(same(ct_f8e4m3fnuz_to_f32((uint8_t)b), w43), "e4m3fnuz 0x%02x", b);
        ck_assert_msg(same(ct_f8e5m2fnuz_to_f32((uint8_t)b), w52), "e5m2fnuz 0x%02x", b);
        ck_assert(!isinf(ct_f8e4m3fnuz_to_f32((uint8_t)b)) && !isinf(ct_f8e5m2fnuz_to_f32((uint8_t)b)));
    }
    ck_assert(ct_f8e4m3fnuz_to_f32(0x7f) == 240.0f);
    ck_assert(ct_f8e5m2fnuz_to_f32(0x7f) == 57344.0f);
    ck_assert(ct_f8e4m3fnuz_to_f32(0x01) == 0x1p-10f);
    ck_assert(ct_f8e5m2fnuz_to_f32(0x01) == 0x1p-17f);
}
END_TEST

START_TEST(t_fp4_every_code)
{
    static const float mag[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    for (int c = 0; c < 16; c++) {
        float v = ct_fp4_to_f32((uint8_t)c);
        ck_assert(fabsf(v) == mag[c & 7]);
        ck_assert_int_eq(!!signbit(v), c >> 3);
        /* only the low nibble matters */
        ck_assert(same(ct_fp4_to_f32((uint8_t)(c | 0xa0)), v));
    }
}
END_TEST

START_TEST(t_e8m0_every_code)
{
    for (int e = 0; e < 256; e++) {
        float want = (float)ldexp(1.0, e - 127);   /* 255 -> 2^128 = inf */
        ck_assert_msg(same(ct_e8m0_to_f32((uint8_t)e), want), "e=%d", e);
    }
    ck_assert(isinf(ct_e8m0_to_f32(255)));
    ck_assert(ct_e8m0_to_f32(0) == 0x1p-127f);
}
END_TEST

START_TEST(t_bf16_round_trip_every_pattern)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ct_bf16_to_f32((uint16_t)h);
        ck_assert_uint_eq(bits(f), h << 16);
        uint16_t back = ct_f32_to_bf16(f);
        int nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (nan)   /* quiet, same sign and top payload bits */
            ck_assert_uint_eq(back, h | 0x40);
        else
            ck_assert_uint_eq(back, h);
    }
}
END_TEST

/* Reference f32 -> bf16 RNE with integer arithmetic on the magnitude. */
static uint16_t ref_bf16(uint32_t u)
{
    uint32_t lo = u & 0xffff, hi = u >> 16;
    if (lo > 0x8000 || (lo == 0x8000 && (hi & 1)))
        hi++;
    return (uint16_t)hi;
}

START_TEST(t_f32_to_bf16_rne)
{
    /* ties go to even both ways, carries ripple into the exponent */
    ck_assert_uint_eq(ct_f32_to_bf16(fl(0x3f808000)), 0x3f80);
    ck_assert_uint_eq(ct_f32_to_bf16(fl(0x3f818000)), 0x3f82);
    ck_assert_uint_eq(ct_f32_to_bf16(fl(0x3f808001)), 0x3f81);
    ck_assert_uint_eq(ct_f32_to_bf16(fl(0x3fffffff)), 0x4000);
    ck_assert_uint_eq(ct_f32_to_bf16(fl(0x7f7fffff)), 0x7f80);   /* max finite rounds to inf */
    ck_assert_uint_eq(ct_f32_to_bf16(fl(0xff7fffff)), 0xff80);
    ck_assert_uint_eq(ct_f32_to_bf16(fl(0x00008000)), 0x0000);   /* denormal tie to even 0 */
    ck_assert_uint_eq(ct_f32_to_bf16(fl(0x00018000)), 0x0002);
    ck_assert_uint_eq(ct_f32_to_bf16(-0.0f), 0x8000);
    ck_assert_uint_eq(ct_f32_to_bf16(fl(0x7f800001)), 0x7fc0);   /* sNaN -> qNaN */
    ck_assert_uint_eq(ct_f32_to_bf16(fl(0xffc12345)), 0xffc1);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 4000000; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint32_t u = (uint32_t)x;
        if ((u & 0x7fffffff) > 0x7f800000)
            continue;
        ck_assert_uint_eq(ct_f32_to_bf16(fl(u)), ref_bf16(u));
    }
}
END_TEST

START_TEST(t_f16_every_pattern)
{
    for (uint32_t h = 0; h < 65536; h++) {
        _Float16 hf;
        uint16_t hh = (uint16_t)h;
        memcpy(&hf, &hh, 2);
        float want = (float)hf;
        float got = ct_f16_to_f32(hh);
        ck_assert_msg(same(got, want), "pattern 0x%04x", h);
        if (!isnan(got))
            ck_assert_uint_eq(bits(got), bits(want));
        uint16_t back = ct_f32_to_f16(got);
        if (isnan(got))
            ck_assert_uint_eq(back, hh | 0x200);
        else
            ck_assert_uint_eq(back, hh);
    }
}
END_TEST

START_TEST(t_f32_to_f16_rne)
{
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i < 4000000; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint32_t u = (uint32_t)x;
        /* concentrate on the f16 range: exponents 100..145 */
        u = (u & 0x807fffff) | ((100u + (uint32_t)(x >> 40) % 46u) << 23);
        float f = fl(u);
        _Float16 hf = (_Float16)f;
        uint16_t want;
        memcpy(&want, &hf, 2);
        ck_assert_msg(ct_f32_to_f16(f) == want, "f32 0x%08x", u);
    }
    ck_assert_uint_eq(ct_f32_to_f16(65520.0f), 0x7c00);   /* rounds up to inf */
    ck_assert_uint_eq(ct_f32_to_f16(65519.99f), 0x7bff);
    ck_assert_uint_eq(ct_f32_to_f16(INFINITY), 0x7c00);
    ck_assert_uint_eq(ct_f32_to_f16(-0.0f), 0x8000);
    ck_assert_uint_eq(ct_f32_to_f16(0x1p-25f), 0x0000);   /* tie to even: 0 */
    ck_assert_uint_eq(ct_f32_to_f16(0x1.8p-24f), 0x0002); /* 1.5 ulp -> 2 */
}
END_TEST

START_TEST(t_f32_to_f8e4m3)
{
    /* every finite code round-trips */
    for (int b = 0; b < 256; b++) {
        if ((b & 0x7f) == 0x7f)
            continue;
        ck_assert_uint_eq(ct_f32_to_f8e4m3(ct_f8e4m3_to_f32((uint8_t)b)), (unsigned)b);
    }
    /* midpoints between neighbours round to the even code */
    for (int b = 0; b < 0x7e; b++) {
        float lo = ct_f8e4m3_to_f32((uint8_t)b), hi = ct_f8e4m3_to_f32((uint8_t)(b + 1));
        float mid = (lo + hi) / 2;   /* exact in float32 */
        unsigned want = (b & 1) ? (unsigned)b + 1 : (unsigned)b;
        ck_assert_msg(ct_f32_to_f8e4m3(mid) == want, "midpoint after 0x%02x", b);
        ck_assert_uint_eq(ct_f32_to_f8e4m3(-mid), want | 0x80);
    }
    ck_assert_uint_eq(ct_f32_to_f8e4m3(1000.0f), 0x7e);   /* saturates */
    ck_assert_uint_eq(ct_f32_to_f8e4m3(-1e30f), 0xfe);
    ck_assert_uint_eq(ct_f32_to_f8e4m3(NAN) & 0x7f, 0x7f);
}
END_TEST

START_TEST(t_dtype_names)
{
    static const char *names[] = {"BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3",
                                  "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32",
                                  "U32", "F32", "C64", "F64", "I64", "U64"};
    static const unsigned bitsz[] = {8, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 16, 16, 16, 16, 32, 32, 32, 64, 64, 64, 64};
    for (int i = 0; i < CT_DTYPE_COUNT; i++) {
        ck_assert_int_eq(ct_dtype_from_name(names[i]), i);   /* enum order = reference order */
        ck_assert_str_eq(ct_dtype_name((ct_dtype)i), names[i]);
        ck_assert_uint_eq(ct_dtype_bits((ct_dtype)i), bitsz[i]);
    }
    ck_assert_int_eq(ct_dtype_from_name("F8_E4M3FN"), -1);
    ck_assert_int_eq(ct_dtype_from_name("bf16"), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dtype");
    TCase *tc = tcase_create("conversions");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, t_f8e4m3_every_code);
    tcase_add_test(tc, t_f8e5m2_every_code);
    tcase_add_test(tc, t_f8_fnuz_every_code);
    tcase_add_test(tc, t_fp4_every_code);
    tcase_add_test(tc, t_e8m0_every_code);
    tcase_add_test(tc, t_bf16_round_trip_every_pattern);
    tcase_add_test(tc, t_f32_to_bf16_rne);
    tcase_add_test(tc, t_f16_every_pattern);
    tcase_add_test(tc, t_f32_to_f16_rne);
    tcase_add_test(tc, t_f32_to_f8e4m3);
    tcase_add_test(tc, t_dtype_names);
    suite_add_tcase(s, tc);
    return ct_run_suite(s);
}
