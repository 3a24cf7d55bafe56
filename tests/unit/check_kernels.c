/* Every SIMD kernel path gives the same bytes as the portable path on the
 * same inputs (random data, NaN/inf/-0 scales, odd lengths, unaligned
 * starts), and whole-tensor decodes agree under both. */
#include "config.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tap.h"
#include "../../src/lib/kernels.h"

static uint64_t x = 0x853c49e6748fea9bull;
static uint64_t rnd(void) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x; }
static void fill(void *p, size_t n) { for (size_t i = 0; i < n; i++) ((uint8_t *)p)[i] = (uint8_t)(rnd() >> 56); }

static const float scales[] = {1.0f, 0.0078125f, -3.5f, 1e-30f, 3e38f, 0.0f, -0.0f, INFINITY, NAN, 1.17549435e-38f};

START_TEST(t_scatter)
{
    uint8_t mask[80];
    uint8_t vals[640 * 8 + 64], a[640 * 8], b[640 * 8];
    for (int it = 0; it < 2000; it++) {
        fill(mask, sizeof mask);
        fill(vals, sizeof vals);
        size_t es = (size_t)1 << (rnd() % 4);
        uint64_t c_lo = rnd() % 600, c_hi = c_lo + rnd() % (640 - c_lo);
        ct_k_force_portable(1);
        memset(a, 0xee, sizeof a);
        ct_k_scatter(mask, c_lo, c_hi, vals, es, a);
        uint64_t pa = ct_k_popcount(mask, (uint64_t)(rnd() % 641));
        ct_k_force_portable(0);
        memset(b, 0xee, sizeof b);
        ct_k_scatter(mask, c_lo, c_hi, vals, es, b);
        ck_assert_msg(memcmp(a, b, sizeof a) == 0, "scatter es=%zu [%llu,%llu)", es, (unsigned long long)c_lo,
                      (unsigned long long)c_hi);
        (void)pa;
    }
    for (uint64_t n = 0; n <= 640; n++) {
        fill(mask, sizeof mask);
        ct_k_force_portable(1);
        uint64_t p1 = ct_k_popcount(mask, n);
        ct_k_force_portable(0);
        ck_assert_uint_eq(p1, ct_k_popcount(mask, n));
    }
}
END_TEST

START_TEST(t_dequant)
{
    /* runs up to 5000 codes: long runs take the FP8 table path */
    static uint8_t q[5000], a[20000], b[20000];
    static const ct_dtype ods[] = {CT_BF16, CT_F32, CT_F16};
    for (int it = 0; it < 600; it++) {
        fill(q, sizeof q);
        size_t n = it % 2 ? rnd() % 1000 : 2000 + rnd() % 3000, off = rnd() % 16;
        if (off + n > 5000)
            n = 5000 - off;
        float s = it < 100 ? scales[it % 10] : ct_u32_as_f32((uint32_t)rnd());
        float z = (float)((int)(rnd() % 256) - 128);
        ct_dtype od = ods[it % 3];
        for (int kind = 0; kind < 2; kind++) {
            ct_k_force_portable(1);
            memset(a, 0, sizeof a);
            kind ? ct_k_dq_f8(q + off, n, s, od, a) : ct_k_dq_i8(q + off, n, z, s, od, a);
            ct_k_force_portable(0);
            memset(b, 0, sizeof b);
            kind ? ct_k_dq_f8(q + off, n, s, od, b) : ct_k_dq_i8(q + off, n, z, s, od, b);
            ck_assert_msg(memcmp(a, b, sizeof a) == 0, "%s od=%d n=%zu s=%a", kind ? "f8" : "i8", od, n, (double)s);
        }
    }
}
END_TEST

START_TEST(t_lut_and_fp4)
{
    uint8_t p[600];
    uint16_t tab[16], a[1200], b[1200];
    float sc[1200 / 16];
    for (int it = 0; it < 500; it++) {
        fill(p, sizeof p);
        fill(tab, sizeof tab);
        for (size_t g = 0; g < sizeof sc / sizeof *sc; g++)
            sc[g] = it < 50 ? scales[(it + g) % 10] : ct_u32_as_f32((uint32_t)rnd());
        size_t n = 2 * (rnd() % 600);
        ct_k_force_portable(1);
        memset(a, 0, sizeof a);
        ct_k_lut4_u16(p, n, tab, a);
        ct_k_force_portable(0);
        memset(b, 0, sizeof b);
        ct_k_lut4_u16(p, n, tab, b);
        ck_assert_msg(memcmp(a, b, sizeof a) == 0, "lut4 n=%zu", n);
        {
            float v16[16];
            for (int u = 0; u < 16; u++)
                v16[u] = (float)(u - 8);
            float z = it % 3 ? 0.0f : (float)(int)(rnd() % 16) - 8.0f;
            /* one group of n columns */
            ct_k_force_portable(1);
            memset(a, 0, sizeof a);
            ct_k_lut4_scaled_bf16_groups(p, 0, n, n ? n : 1, v16, &z, sc, a);
            ct_k_force_portable(0);
            memset(b, 0, sizeof b);
            ct_k_lut4_scaled_bf16_groups(p, 0, n, n ? n : 1, v16, &z, sc, b);
            ck_assert_msg(memcmp(a, b, sizeof a) == 0, "lut4 scaled n=%zu s=%a z=%g", n, (double)sc[0], (double)z);
            /* a row's groups in one call = one call per group, on both paths */
            size_t ggs = (size_t)2 << (rnd() % 7), ng = sizeof sc / sizeof *sc;
            uint64_t lo = 2 * (rnd() % 300), hi = lo + 2 * (rnd() % 300);
            if (hi > ng * ggs)
                hi = ng * ggs;
            if (lo > hi)
                lo = hi;
            float zs[sizeof sc / sizeof *sc];
            for (size_t g = 0; g < ng; g++)
                zs[g] = (float)(int)(rnd() % 16) - 8.0f;
            const float *zp = it % 2 ? zs : NULL;
            memset(a, 0, sizeof a);
            for (uint64_t c = lo; c < hi;) {
                uint64_t g = c / ggs, end = (g + 1) * ggs < hi ? (g + 1) * ggs : hi;
                ct_k_lut4_scaled_bf16_groups(p, c, end, ggs, v16, zp, sc, a + (c - lo));
                c = end;
            }
            for (int portable = 0; portable < 2; portable++) {
                ct_k_force_portable(portable);
                memset(b, 0, sizeof b);
                ct_k_lut4_scaled_bf16_groups(p, lo, hi, ggs, v16, zp, sc, b);
                ck_assert_msg(memcmp(a, b, sizeof a) == 0, "lut4 groups [%llu,%llu) gs=%zu portable=%d",
                              (unsigned long long)lo, (unsigned long long)hi, ggs, portable);
            }
            ct_k_force_portable(0);
        }
        size_t gs = 16u << (rnd() % 2), m = 16 * (rnd() % 75);
        ct_k_force_portable(1);
        memset(a, 0, sizeof a);
        ct_k_fp4_bf16(p, m, sc, gs, a);
        ct_k_force_portable(0);
        memset(b, 0, sizeof b);
        ct_k_fp4_bf16(p, m, sc, gs, b);
        ck_assert_msg(memcmp(a, b, sizeof a) == 0, "fp4 n=%zu gs=%zu", m, gs);
        float v[16];
        for (int u = 0; u < 16; u++)
            v[u] = (float)(u - 8);
        uint16_t t1[16], t2[16];
        ct_k_force_portable(1);
        ct_k_table16(v, sc[0], sc[1], it % 2 ? CT_BF16 : CT_F16, t1);
        ct_k_force_portable(0);
        ct_k_table16(v, sc[0], sc[1], it % 2 ? CT_BF16 : CT_F16, t2);
        ck_assert(memcmp(t1, t2, sizeof t1) == 0);
    }
}
END_TEST

/* NVFP4 by table (scale codes) against the float kernel with the same
 * scales, portable and SIMD, every scale code and nibble. */
START_TEST(t_fp4_coded)
{
    static uint8_t p[2048], codes[4096 / 16];
    static uint16_t tab[4096], a[4096], b[4096], c[4096];
    static float s256[256], sc[4096 / 16];
    for (int it = 0; it < 200; it++) {
        float g = it < 20 ? 1.0f : ct_u32_as_f32(0x3f000000u + (uint32_t)(rnd() % 0x03000000u));   /* 0.5 .. 2^6 */
        for (int k = 0; k < 256; k++)
            s256[k] = ct_f8e4m3_to_f32((uint8_t)k) / g;
        ct_k_fp4_table(s256, tab);
        fill(p, sizeof p);
        fill(codes, sizeof codes);
        if (it < 2)
            for (int k = 0; k < 256; k++)
                codes[k] = (uint8_t)k;   /* every code */
        size_t gs = 16u << (rnd() % 2), n = 16 * (1 + rnd() % 256);
        for (size_t gi = 0; gi < (n + gs - 1) / gs; gi++)
            sc[gi] = s256[codes[gi]];
        ct_k_force_portable(1);
        memset(a, 0, sizeof a);
        ct_k_fp4_bf16(p, n, sc, gs, a);
        memset(b, 0, sizeof b);
        ct_k_fp4_bf16_coded(p, n, codes, gs, tab, b);
        ct_k_force_portable(0);
        memset(c, 0, sizeof c);
        ct_k_fp4_bf16_coded(p, n, codes, gs, tab, c);
        ck_assert_msg(memcmp(a, b, sizeof a) == 0, "portable coded n=%zu gs=%zu", n, gs);
        ck_assert_msg(memcmp(a, c, sizeof a) == 0, "simd coded n=%zu gs=%zu", n, gs);
    }
}
END_TEST


int main(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("simd-vs-portable");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, t_scatter);
    tcase_add_test(tc, t_dequant);
    tcase_add_test(tc, t_lut_and_fp4);
    tcase_add_test(tc, t_fp4_coded);
    suite_add_tcase(s, tc);
    ct_k_force_portable(0);
    printf("# kernel paths: %s\n", ct_k_paths());
    return ct_run_suite(s);
}
