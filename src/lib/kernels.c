#include "config.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define CT_X86 1
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------ */
/* portable */

/* 0..255, for building 256-entry result tables with the kernels (filled
 * when the kernel paths are chosen, before any kernel runs). */
static uint8_t all_codes[256];

static uint64_t popcount_c(const uint8_t *m, uint64_t nbits)
{
    uint64_t n = 0, i = 0;
    for (; i + 64 <= nbits; i += 64) {
        uint64_t w;
        memcpy(&w, m + i / 8, 8);
        w = w - ((w >> 1) & 0x5555555555555555ull);
        w = (w & 0x3333333333333333ull) + ((w >> 2) & 0x3333333333333333ull);
        w = (w + (w >> 4)) & 0x0f0f0f0f0f0f0f0full;
        n += (w * 0x0101010101010101ull) >> 56;
    }
    for (; i < nbits; i++)
        n += (m[i >> 3] >> (i & 7)) & 1u;
    return n;
}

#define SCATTER_LOOP(T)                                                                  \
    do {                                                                                 \
        const T *s = vals, zero = 0;                                                     \
        T *d = dst;                                                                      \
        uint64_t v = 0;                                                                  \
        for (uint64_t c = c_lo; c < c_hi; c++) {                                         \
            unsigned b = (mask[c >> 3] >> (c & 7)) & 1u;                                 \
            d[c - c_lo] = *(b ? s + v : &zero);   /* never reads past the last value */  \
            v += b;                                                                      \
        }                                                                                \
    } while (0)

static void scatter_c(const uint8_t *mask, uint64_t c_lo, uint64_t c_hi, const void *vals, size_t es, void *dst)
{
    switch (es) {
    case 1: SCATTER_LOOP(uint8_t); break;
    case 2: SCATTER_LOOP(uint16_t); break;
    case 4: SCATTER_LOOP(uint32_t); break;
    default: SCATTER_LOOP(uint64_t); break;
    }
}

static void lut4_c(const uint8_t *p, size_t n, const uint16_t tab[16], uint16_t *out)
{
    for (size_t i = 0; i + 1 < n; i += 2) {
        uint8_t b = p[i >> 1];
        out[i] = tab[b & 15];
        out[i + 1] = tab[b >> 4];
    }
}

/* bf16 RNE with NaN kept quiet, branch-free (vectorises). */
static inline uint16_t to_bf16(float f)
{
    uint32_t u = ct_f32_as_u32(f);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t q = (u >> 16) | 0x40u;
    return (uint16_t)(((u & 0x7fffffffu) > 0x7f800000u) ? q : r);
}

static void fp4_bf16_c(const uint8_t *p, size_t n, const float *scales, size_t gs, uint16_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = to_bf16(ct_fp4_to_f32((uint8_t)(p[i >> 1] >> ((i & 1) * 4))) * scales[i / gs]);
}

/* F8_E4M3 -> f32 without a table (vectorises). */
static inline float f8_to_f32(uint8_t b)
{
    uint32_t sign = (uint32_t)(b & 0x80u) << 24, e = (b >> 3) & 15u, m = b & 7u;
    float sub = (float)m * 0x1p-9f;
    uint32_t normal = sign | ((e + 120u) << 23) | (m << 20);
    uint32_t subn = ct_f32_as_u32(sub) | sign;
    uint32_t v = e ? normal : subn;
    return ct_u32_as_f32((e == 15u && m == 7u) ? (sign | 0x7fc00000u) : v);
}

/* A NaN code decodes to itself whatever the scale (which of two NaN
 * operands a multiply returns is not specified by C, so fix it here). */
static inline float f8_scaled(uint8_t b, float s)
{
    float v = f8_to_f32(b);
    return v != v ? v : v * s;
}

#define DQ_BODY(VALUE)                                                                  \
    switch (od) {                                                                       \
    case CT_F32: { float *o = out; for (size_t i = 0; i < n; i++) o[i] = (VALUE); break; }   \
    case CT_BF16: { uint16_t *o = out; for (size_t i = 0; i < n; i++) o[i] = to_bf16(VALUE); break; } \
    default: { uint16_t *o = out; for (size_t i = 0; i < n; i++) o[i] = ct_f32_to_f16(VALUE); break; } \
    }

#if defined(CT_X86) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default"), optimize("O3")))
#else
#define CLONES
#endif

CLONES static void dq_i8_vec(const uint8_t *q, size_t n, float z, float s, ct_dtype od, void *out)
{
    DQ_BODY(((float)(int8_t)q[i] - z) * s)
}

__attribute__((noinline)) static void dq_i8_c(const uint8_t *q, size_t n, float z, float s, ct_dtype od, void *out)
{
    DQ_BODY(((float)(int8_t)q[i] - z) * s)
}

CLONES static void dq_f8_vec(const uint8_t *q, size_t n, float s, ct_dtype od, void *out)
{
    DQ_BODY(f8_scaled(q[i], s))
}

__attribute__((noinline)) static void dq_f8_c(const uint8_t *q, size_t n, float s, ct_dtype od, void *out)
{
    DQ_BODY(f8_scaled(q[i], s))
}

/* tab[u] for u < 16: round(od, (v[u] - z) * s), v = the code values. */
CLONES static void table16_vec(const float v[16], float z, float s, ct_dtype od, uint16_t tab[16])
{
    float x[16];
    for (int u = 0; u < 16; u++)
        x[u] = (v[u] - z) * s;
    if (od == CT_BF16)
        for (int u = 0; u < 16; u++)
            tab[u] = to_bf16(x[u]);
    else
        for (int u = 0; u < 16; u++)
            tab[u] = ct_f32_to_f16(x[u]);
}

void ct_k_table16(const float v[16], float z, float s, ct_dtype od, uint16_t tab[16])
{
    table16_vec(v, z, s, od, tab);
}

/* ------------------------------------------------------------------ */
/* x86 SIMD */

#ifdef CT_X86
__attribute__((target("popcnt"))) static uint64_t popcount_hw(const uint8_t *m, uint64_t nbits)
{
    uint64_t n = 0, i = 0;
    for (; i + 64 <= nbits; i += 64) {
        uint64_t w;
        memcpy(&w, m + i / 8, 8);
        n += (uint64_t)__builtin_popcountll(w);
    }
    for (; i < nbits; i++)
        n += (m[i >> 3] >> (i & 7)) & 1u;
    return n;
}

/* Expand-load: 32 (16-bit) or 16 (32-bit) outputs per mask word, four
 * words per step.  The fault-suppressing expand-loads read only the values
 * they use.  The four loads of a step are independent: their addresses
 * come from prefix popcounts of the step's mask bits, not from each other.
 * (Expanding in place, with the values read into the end of the output,
 * was measured slower than this from a separate scratch buffer.) */
__attribute__((target("avx512f,avx512bw,avx512vbmi2,popcnt")))
static void scatter_vbmi2(const uint8_t *mask, uint64_t c_lo, uint64_t c_hi, const void *vals, size_t es, void *dst)
{
    if (es != 2 && es != 4) {
        scatter_c(mask, c_lo, c_hi, vals, es, dst);
        return;
    }
    uint64_t c = c_lo;
    const char *v = vals;
    char *d = dst;
    /* head: up to the next byte boundary */
    uint64_t head = (8 - (c & 7)) & 7;
    if (head > c_hi - c)
        head = c_hi - c;
    if (head) {
        scatter_c(mask, c, c + head, v, es, d);
        v += es * (size_t)__builtin_popcount((mask[c >> 3] >> (c & 7)) & ((1u << head) - 1));
        d += es * head;
        c += head;
    }
    if (es == 2) {
        for (; c + 128 <= c_hi; c += 128) {
            uint64_t k01, k23;
            memcpy(&k01, mask + (c >> 3), 8);
            memcpy(&k23, mask + (c >> 3) + 8, 8);
            const char *v1 = v + 2 * (size_t)__builtin_popcount((uint32_t)k01);
            const char *v2 = v + 2 * (size_t)__builtin_popcountll(k01);
            const char *v3 = v2 + 2 * (size_t)__builtin_popcount((uint32_t)k23);
            __m512i x0 = _mm512_maskz_expandloadu_epi16((__mmask32)k01, v);
            __m512i x1 = _mm512_maskz_expandloadu_epi16((__mmask32)(k01 >> 32), v1);
            __m512i x2 = _mm512_maskz_expandloadu_epi16((__mmask32)k23, v2);
            __m512i x3 = _mm512_maskz_expandloadu_epi16((__mmask32)(k23 >> 32), v3);
            _mm512_storeu_si512(d, x0);
            _mm512_storeu_si512(d + 64, x1);
            _mm512_storeu_si512(d + 128, x2);
            _mm512_storeu_si512(d + 192, x3);
            v = v3 + 2 * (size_t)__builtin_popcountll(k23 >> 32);
            d += 256;
        }
        for (; c + 32 <= c_hi; c += 32) {
            uint32_t k;
            memcpy(&k, mask + (c >> 3), 4);
            _mm512_storeu_si512(d, _mm512_maskz_expandloadu_epi16((__mmask32)k, v));
            v += 2 * (size_t)__builtin_popcount(k);
            d += 64;
        }
    } else {
        for (; c + 64 <= c_hi; c += 64) {
            uint64_t k;
            memcpy(&k, mask + (c >> 3), 8);
            const char *v1 = v + 4 * (size_t)__builtin_popcount((uint32_t)(k & 0xffff));
            const char *v2 = v + 4 * (size_t)__builtin_popcount((uint32_t)k);
            const char *v3 = v2 + 4 * (size_t)__builtin_popcount((uint32_t)((k >> 32) & 0xffff));
            __m512i x0 = _mm512_maskz_expandloadu_epi32((__mmask16)k, v);
            __m512i x1 = _mm512_maskz_expandloadu_epi32((__mmask16)(k >> 16), v1);
            __m512i x2 = _mm512_maskz_expandloadu_epi32((__mmask16)(k >> 32), v2);
            __m512i x3 = _mm512_maskz_expandloadu_epi32((__mmask16)(k >> 48), v3);
            _mm512_storeu_si512(d, x0);
            _mm512_storeu_si512(d + 64, x1);
            _mm512_storeu_si512(d + 128, x2);
            _mm512_storeu_si512(d + 192, x3);
            v = v3 + 4 * (size_t)__builtin_popcount((uint32_t)(k >> 48));
            d += 256;
        }
        for (; c + 16 <= c_hi; c += 16) {
            uint16_t k;
            memcpy(&k, mask + (c >> 3), 2);
            _mm512_storeu_si512(d, _mm512_maskz_expandloadu_epi32((__mmask16)k, v));
            v += 4 * (size_t)__builtin_popcount(k);
            d += 64;
        }
    }
    if (c < c_hi)
        scatter_c(mask, c, c_hi, v, es, d);
}

/* RNE f32 -> bf16 in 16 lanes, NaN kept quiet (same as to_bf16). */
__attribute__((target("avx512f,avx512bw")))
static inline __m256i bf16x16(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, q));
}

/* F8_E4M3 -> f32 for 16 codes (as 32-bit lanes): the code's low 7 bits
 * shifted left by 7 are the FP16 bits of value * 2^-8 (subnormals
 * included, FP16 having the range), widened exactly and rescaled exactly by
 * 256; NaN codes (S.1111.111) fixed up separately. */
__attribute__((target("avx512f,avx512bw")))
static inline __m512 f8x16(__m512i b)
{
    __m512i h = _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x7f)), 7),
                                _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 8));
    __m512 v = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(h)), _mm512_set1_ps(256.0f));
    __mmask16 nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(b, _mm512_set1_epi32(0x7f)), _mm512_set1_epi32(0x7f));
    __m512i sign = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24);
    return _mm512_mask_blend_ps(nan, v, _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_set1_epi32(0x7fc00000))));
}

__attribute__((target("avx512f,avx512bw")))
static void dq_i8_avx512(const uint8_t *q, size_t n, float z, float s, ct_dtype od, void *out)
{
    if (od == CT_F16) {
        dq_i8_c(q, n, z, s, od, out);
        return;
    }
    size_t i = 0;
    const __m512 vz = _mm512_set1_ps(z), vs = _mm512_set1_ps(s);
    for (; i + 16 <= n; i += 16) {
        __m512i b = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + i)));
        __m512 x = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(b), vz), vs);
        if (od == CT_BF16)
            _mm256_storeu_si256((__m256i *)((uint16_t *)out + i), bf16x16(x));
        else
            _mm512_storeu_ps((float *)out + i, x);
    }
    dq_i8_c(q + i, n - i, z, s, od, (char *)out + i * (od == CT_F32 ? 4 : 2));
}

__attribute__((target("avx512f,avx512bw")))
static void dq_f8_avx512(const uint8_t *q, size_t n, float s, ct_dtype od, void *out)
{
    if (od == CT_F16) {
        dq_f8_c(q, n, s, od, out);
        return;
    }
    size_t i = 0;
    const __m512 vs = _mm512_set1_ps(s);
    for (; i + 16 <= n; i += 16) {
        __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + i)));
        __m512 v = f8x16(b);
        __mmask16 nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(b, _mm512_set1_epi32(0x7f)), _mm512_set1_epi32(0x7f));
        __m512 x = _mm512_mask_blend_ps(nan, _mm512_mul_ps(v, vs), v);
        if (od == CT_BF16)
            _mm256_storeu_si256((__m256i *)((uint16_t *)out + i), bf16x16(x));
        else
            _mm512_storeu_ps((float *)out + i, x);
    }
    dq_f8_c(q + i, n - i, s, od, (char *)out + i * (od == CT_F32 ? 4 : 2));
}

/* FP4 pairs -> bf16, 16 elements per scale step. */
__attribute__((target("avx512f,avx512bw")))
static void fp4_bf16_avx512(const uint8_t *p, size_t n, const float *scales, size_t gs, uint16_t *out)
{
    static const float mag[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
    const __m512 tab = _mm512_loadu_ps(mag);
    const __m512i shifts = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    const __m512i m15 = _mm512_set1_epi32(15);
    for (size_t i = 0; i < n; i += 16) {
        __m128i b8 = _mm_loadl_epi64((const __m128i *)(p + i / 2));
        __m512i lanes = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b8, b8));
        __m512i nib = _mm512_and_si512(_mm512_srlv_epi32(lanes, shifts), m15);
        __m512 x = _mm512_mul_ps(_mm512_permutexvar_ps(nib, tab), _mm512_set1_ps(scales[i / gs]));
        _mm256_storeu_si256((__m256i *)(out + i), bf16x16(x));
    }
}

/* Look n codes up in a 256-entry u16 table, 32 at a time with four
 * 64-entry word permutes. */
__attribute__((target("avx512f,avx512bw")))
static void lookup256_avx512(const uint8_t *q, size_t n, const uint16_t tab[256], uint16_t *o)
{
    __m512i t[8];
    for (int i = 0; i < 8; i++)
        t[i] = _mm512_loadu_si512((const void *)(tab + 32 * i));
    const __m512i b6 = _mm512_set1_epi16(64), b7 = _mm512_set1_epi16(128);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i idx = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(q + i)));
        __m512i r0 = _mm512_permutex2var_epi16(t[0], idx, t[1]), r1 = _mm512_permutex2var_epi16(t[2], idx, t[3]);
        __m512i r2 = _mm512_permutex2var_epi16(t[4], idx, t[5]), r3 = _mm512_permutex2var_epi16(t[6], idx, t[7]);
        __mmask32 m6 = _mm512_test_epi16_mask(idx, b6), m7 = _mm512_test_epi16_mask(idx, b7);
        __m512i lo = _mm512_mask_blend_epi16(m6, r0, r1), hi = _mm512_mask_blend_epi16(m6, r2, r3);
        _mm512_storeu_si512((void *)(o + i), _mm512_mask_blend_epi16(m7, lo, hi));
    }
    for (; i < n; i++)
        o[i] = tab[q[i]];
}

/* FP8 -> BF16/F16 for long runs: the 256 possible results under this
 * scale (by the AVX-512 kernel for BF16, bit-identical to the portable one
 * as check_kernels verifies; by the portable one for F16), then a lookup. */
__attribute__((target("avx512f,avx512bw")))
static void dq_f8_tab_avx512(const uint8_t *q, size_t n, float s, ct_dtype od, void *out)
{
    if (od == CT_F32 || n < 2048) {
        dq_f8_avx512(q, n, s, od, out);
        return;
    }
    uint16_t tab[256];
    if (od == CT_BF16)
        dq_f8_avx512(all_codes, 256, s, od, tab);
    else
        dq_f8_c(all_codes, 256, s, od, tab);
    lookup256_avx512(q, n, tab, out);
}

/* The same for int8 codes (any byte may occur): (code - z) * s. */
__attribute__((target("avx512f,avx512bw")))
static void dq_i8_tab_avx512(const uint8_t *q, size_t n, float z, float s, ct_dtype od, void *out)
{
    if (od == CT_F32 || n < 2048) {
        dq_i8_avx512(q, n, z, s, od, out);
        return;
    }
    uint16_t tab[256];
    if (od == CT_BF16)
        dq_i8_avx512(all_codes, 256, z, s, od, tab);
    else
        dq_i8_c(all_codes, 256, z, s, od, tab);
    lookup256_avx512(q, n, tab, out);
}

static void fp4_coded_c(const uint8_t *p, size_t n, const uint8_t *codes, size_t gs, const uint16_t *tab,
                        uint16_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = tab[codes[i / gs] * 16u + ((p[i >> 1] >> ((i & 1) * 4)) & 15u)];
}

/* 32 outputs from the nibbles of p[0..16), the first 16 through table ta,
 * the rest through tb: bytes widened to dwords holding (low, high) nibble
 * words, offset by 16 in the upper half, looked up in a 32-word register
 * holding the two tables. */
__attribute__((target("avx512f,avx512bw")))
static inline void fp4_coded_step(const uint8_t *p, const uint16_t *ta, const uint16_t *tb, uint16_t *out)
{
    const __m512i m15 = _mm512_set1_epi32(15);
    const __m512i hi16 = _mm512_set_epi32(16 | 16 << 16, 16 | 16 << 16, 16 | 16 << 16, 16 | 16 << 16,
                                          16 | 16 << 16, 16 | 16 << 16, 16 | 16 << 16, 16 | 16 << 16, 0, 0, 0, 0,
                                          0, 0, 0, 0);
    __m512i t = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)ta)),
                                   _mm256_loadu_si256((const __m256i *)tb), 1);
    __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    __m512i idx = _mm512_or_si512(_mm512_or_si512(_mm512_and_si512(d, m15),
                                                  _mm512_slli_epi32(_mm512_srli_epi32(d, 4), 16)), hi16);
    _mm512_storeu_si512((void *)out, _mm512_permutexvar_epi16(idx, t));
}

__attribute__((target("avx512f,avx512bw")))
static void fp4_coded_avx512(const uint8_t *p, size_t n, const uint8_t *codes, size_t gs, const uint16_t *tab,
                             uint16_t *out)
{
    size_t i = 0;
    if (gs == 16)   /* NVFP4: no division per step */
        for (; i + 32 <= n; i += 32)
            fp4_coded_step(p + i / 2, tab + codes[i / 16] * 16u, tab + codes[i / 16 + 1] * 16u, out + i);
    for (; i + 32 <= n; i += 32)
        fp4_coded_step(p + i / 2, tab + codes[i / gs] * 16u, tab + codes[(i + 16) / gs] * 16u, out + i);
    fp4_coded_c(p + i / 2, n - i, codes + i / gs, gs, tab, out + i);
}

static void lut4s_c(const uint8_t *p, size_t n, const float v[16], float z, float s, uint16_t *out)
{
    uint16_t tab[16];
    table16_vec(v, z, s, CT_BF16, tab);
    lut4_c(p, n, tab, out);
}

/* Columns [c_lo, c_hi) of a row, group g of gs columns through one call of
 * the per-group kernel K with z[g] (z NULL: 0) and s[g]. */
#define LUT4S_GROUPS(K)                                                                     \
    for (uint64_t g = c_lo / gs, c = c_lo; c < c_hi; g++) {                                 \
        uint64_t end = (g + 1) * gs < c_hi ? (g + 1) * gs : c_hi;                           \
        K(row + c / 2, end - c, v, z ? z[g] : 0.0f, s[g], out + (c - c_lo));                \
        c = end;                                                                            \
    }

static void lut4s_groups_c(const uint8_t *row, uint64_t c_lo, uint64_t c_hi, uint64_t gs, const float v[16],
                           const float *z, const float *s, uint16_t *out)
{
    LUT4S_GROUPS(lut4s_c)
}

/* The group's table in a register (same sub, mul and rounding as
 * table16_vec), then 32 nibbles per step: bytes widened to dwords holding
 * (low, high) nibble words, one word permute. */
__attribute__((target("avx512f,avx512bw")))
static void lut4s_avx512(const uint8_t *p, size_t n, const float v[16], float z, float s, uint16_t *out)
{
    __m256i t16 = bf16x16(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(v), _mm512_set1_ps(z)), _mm512_set1_ps(s)));
    const __m512i t = _mm512_zextsi256_si512(t16), m15 = _mm512_set1_epi32(15);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + i / 2)));
        __m512i idx = _mm512_or_si512(_mm512_and_si512(d, m15), _mm512_slli_epi32(_mm512_srli_epi32(d, 4), 16));
        _mm512_storeu_si512((void *)(out + i), _mm512_permutexvar_epi16(idx, t));
    }
    if (i < n) {
        uint16_t tab[16];
        _mm256_storeu_si256((__m256i *)tab, t16);
        lut4_c(p + i / 2, n - i, tab, out + i);
    }
}

/* Consecutive groups of one row through lut4s_avx512 (inlined), without a
 * division or a dispatch per group. */
__attribute__((target("avx512f,avx512bw")))
static void lut4s_groups_avx512(const uint8_t *row, uint64_t c_lo, uint64_t c_hi, uint64_t gs, const float v[16],
                                const float *z, const float *s, uint16_t *out)
{
    LUT4S_GROUPS(lut4s_avx512)
}

/* 16-entry lookup with pshufb on the low and high bytes of the table. */
__attribute__((target("ssse3")))
static void lut4_ssse3(const uint8_t *p, size_t n, const uint16_t tab[16], uint16_t *out)
{
    uint8_t lo[16], hi[16];
    for (int i = 0; i < 16; i++) {
        lo[i] = (uint8_t)tab[i];
        hi[i] = (uint8_t)(tab[i] >> 8);
    }
    const __m128i tl = _mm_loadu_si128((const __m128i *)lo), th = _mm_loadu_si128((const __m128i *)hi);
    const __m128i m15 = _mm_set1_epi8(15);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m128i b = _mm_loadu_si128((const __m128i *)(p + i / 2));
        __m128i ne = _mm_and_si128(b, m15);                    /* even elements */
        __m128i no = _mm_and_si128(_mm_srli_epi16(b, 4), m15); /* odd elements */
        __m128i el = _mm_shuffle_epi8(tl, ne), eh = _mm_shuffle_epi8(th, ne);
        __m128i ol = _mm_shuffle_epi8(tl, no), oh = _mm_shuffle_epi8(th, no);
        __m128i e0 = _mm_unpacklo_epi8(el, eh), e1 = _mm_unpackhi_epi8(el, eh);   /* 16-bit evens */
        __m128i o0 = _mm_unpacklo_epi8(ol, oh), o1 = _mm_unpackhi_epi8(ol, oh);   /* 16-bit odds */
        _mm_storeu_si128((__m128i *)(out + i), _mm_unpacklo_epi16(e0, o0));
        _mm_storeu_si128((__m128i *)(out + i + 8), _mm_unpackhi_epi16(e0, o0));
        _mm_storeu_si128((__m128i *)(out + i + 16), _mm_unpacklo_epi16(e1, o1));
        _mm_storeu_si128((__m128i *)(out + i + 24), _mm_unpackhi_epi16(e1, o1));
    }
    lut4_c(p + i / 2, n - i, tab, out + i);
}
#endif

/* ------------------------------------------------------------------ */
/* dispatch */

static struct {
    int portable;
    void (*scatter)(const uint8_t *, uint64_t, uint64_t, const void *, size_t, void *);
    uint64_t (*popcount)(const uint8_t *, uint64_t);
    void (*lut4)(const uint8_t *, size_t, const uint16_t *, uint16_t *);
    void (*dq_i8)(const uint8_t *, size_t, float, float, ct_dtype, void *);
    void (*dq_f8)(const uint8_t *, size_t, float, ct_dtype, void *);
    void (*fp4)(const uint8_t *, size_t, const float *, size_t, uint16_t *);
    void (*lut4s_groups)(const uint8_t *, uint64_t, uint64_t, uint64_t, const float *, const float *, const float *,
                         uint16_t *);
    void (*fp4c)(const uint8_t *, size_t, const uint8_t *, size_t, const uint16_t *, uint16_t *);
    char paths[200];
} K;

static void select_paths(int portable)
{
    for (int i = 0; i < 256; i++)
        all_codes[i] = (uint8_t)i;
    K.scatter = scatter_c;
    K.popcount = popcount_c;
    K.lut4 = lut4_c;
    K.dq_i8 = dq_i8_c;
    K.dq_f8 = dq_f8_c;
    K.fp4 = fp4_bf16_c;
    K.fp4c = fp4_coded_c;
    K.lut4s_groups = lut4s_groups_c;
    const char *sc = "c", *pc = "c", *lu = "c", *dq = "c", *f4 = "c";
#ifdef CT_X86
    if (!portable) {
        __builtin_cpu_init();
        K.dq_i8 = dq_i8_vec;
        K.dq_f8 = dq_f8_vec;
        dq = __builtin_cpu_supports("avx512f") ? "avx512f" : __builtin_cpu_supports("avx2") ? "avx2" : "sse2";
        if (__builtin_cpu_supports("popcnt")) {
            K.popcount = popcount_hw;
            pc = "popcnt";
        }
        if (__builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("avx512bw")) {
            K.scatter = scatter_vbmi2;
            sc = "avx512vbmi2";
        }
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
            K.dq_i8 = dq_i8_tab_avx512;
            K.dq_f8 = dq_f8_tab_avx512;
            K.fp4 = fp4_bf16_avx512;
            K.fp4c = fp4_coded_avx512;
            K.lut4s_groups = lut4s_groups_avx512;
            dq = "avx512bw+table";
            f4 = "avx512bw";
        }
        if (__builtin_cpu_supports("ssse3")) {
            K.lut4 = lut4_ssse3;
            lu = "ssse3";
        }
    }
#endif
    K.portable = portable;
    snprintf(K.paths, sizeof K.paths, "scatter=%s popcount=%s lut4=%s dequant=%s fp4=%s", sc, pc, lu, dq, f4);
}

/* The paths are chosen once, by whichever thread decodes first (mkct's
 * workers may all start at once): pthread_once orders that choice before
 * every use of K. */
static pthread_once_t k_once = PTHREAD_ONCE_INIT;

static void k_init(void)
{
    const char *e = getenv("CT_SIMD");
    select_paths(e && e[0] == '0');
}

static inline void ensure(void) { pthread_once(&k_once, k_init); }

/* (tests only, with no decoding under way) */
void ct_k_force_portable(int on)
{
    ensure();
    select_paths(on);
}
const char *ct_k_paths(void) { ensure(); return K.paths; }

void ct_k_scatter(const uint8_t *mask, uint64_t c_lo, uint64_t c_hi, const void *vals, size_t es, void *dst)
{
    ensure();
    K.scatter(mask, c_lo, c_hi, vals, es, dst);
}

uint64_t ct_k_popcount(const uint8_t *m, uint64_t nbits)
{
    ensure();
    return K.popcount(m, nbits);
}

void ct_k_lut4_u16(const uint8_t *packed, size_t n, const uint16_t tab[16], uint16_t *out)
{
    ensure();
    K.lut4(packed, n, tab, out);
}

void ct_k_dq_i8(const uint8_t *q, size_t n, float z, float s, ct_dtype od, void *out)
{
    ensure();
    K.dq_i8(q, n, z, s, od, out);
}

void ct_k_dq_f8(const uint8_t *q, size_t n, float s, ct_dtype od, void *out)
{
    ensure();
    K.dq_f8(q, n, s, od, out);
}

void ct_k_fp4_bf16(const uint8_t *packed, size_t n, const float *scales, size_t gs, uint16_t *out)
{
    ensure();
    K.fp4(packed, n, scales, gs, out);
}

void ct_k_fp4_table(const float s[256], uint16_t tab[4096])
{
    /* row k is what the fp4 kernel gives for the 16 codes (bytes 0x10,
     * 0x32, ..., 0xfe) under scale s[k] */
    uint8_t codes[8];
    for (int c = 0; c < 8; c++)
        codes[c] = (uint8_t)(2 * c | (2 * c + 1) << 4);
    for (int k = 0; k < 256; k++)
        ct_k_fp4_bf16(codes, 16, s + k, 16, tab + 16 * k);
}

void ct_k_fp4_bf16_coded(const uint8_t *packed, size_t n, const uint8_t *codes, size_t gs, const uint16_t *tab,
                         uint16_t *out)
{
    ensure();
    K.fp4c(packed, n, codes, gs, tab, out);
}

void ct_k_lut4_scaled_bf16_groups(const uint8_t *row, uint64_t c_lo, uint64_t c_hi, uint64_t gs, const float v[16],
                                  const float *z, const float *s, uint16_t *out)
{
    ensure();
    K.lut4s_groups(row, c_lo, c_hi, gs, v, z, s, out);
}
