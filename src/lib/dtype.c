#include "config.h"
#include <math.h>
#include <string.h>
#include "ct/dtype.h"

static const struct { const char *name; unsigned bits; } dtype_table[CT_DTYPE_COUNT] = {
    [CT_BOOL] = {"BOOL", 8},         [CT_F4] = {"F4", 4},
    [CT_F6_E2M3] = {"F6_E2M3", 6},   [CT_F6_E3M2] = {"F6_E3M2", 6},
    [CT_U8] = {"U8", 8},             [CT_I8] = {"I8", 8},
    [CT_F8_E5M2] = {"F8_E5M2", 8},   [CT_F8_E4M3] = {"F8_E4M3", 8},
    [CT_F8_E8M0] = {"F8_E8M0", 8},   [CT_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [CT_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [CT_I16] = {"I16", 16},          [CT_U16] = {"U16", 16},
    [CT_F16] = {"F16", 16},          [CT_BF16] = {"BF16", 16},
    [CT_I32] = {"I32", 32},          [CT_U32] = {"U32", 32},
    [CT_F32] = {"F32", 32},          [CT_C64] = {"C64", 64},
    [CT_F64] = {"F64", 64},          [CT_I64] = {"I64", 64},
    [CT_U64] = {"U64", 64},
};

int ct_dtype_from_name(const char *name)
{
    for (int i = 0; i < CT_DTYPE_COUNT; i++)
        if (strcmp(dtype_table[i].name, name) == 0)
            return i;
    return -1;
}

const char *ct_dtype_name(ct_dtype d)
{
    return (unsigned)d < CT_DTYPE_COUNT ? dtype_table[d].name : "?";
}

unsigned ct_dtype_bits(ct_dtype d)
{
    return (unsigned)d < CT_DTYPE_COUNT ? dtype_table[d].bits : 0;
}

float ct_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in float32 */
        float v = (float)mant * 0x1p-24f;
        return ct_u32_as_f32(ct_f32_as_u32(v) | sign);
    }
    if (exp == 31)
        return ct_u32_as_f32(sign | 0x7f800000u | (mant << 13));
    return ct_u32_as_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t ct_f32_to_f16(float f)
{
    uint32_t u = ct_f32_as_u32(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    u &= 0x7fffffffu;
    uint32_t o;
    if (u >= 0x47800000u) {                 /* >= 2^16: inf, or NaN */
        o = u > 0x7f800000u ? (0x7e00u | ((u >> 13) & 0x3ffu)) : 0x7c00u;
    } else if (u < 0x38800000u) {           /* below 2^-14: subnormal or zero */
        /* Adding 0.5 puts the ulp at 2^-24, so the FPU does the RNE for us. */
        float v = ct_u32_as_f32(u) + 0.5f;
        o = ct_f32_as_u32(v) - 0x3f000000u;
    } else {
        uint32_t odd = (u >> 13) & 1u;
        u += 0xc8000fffu + odd;             /* rebias exponent (15-127)<<23, round */
        o = u >> 13;
    }
    return (uint16_t)(o | sign);
}

float ct_f8e4m3_to_f32(uint8_t b)
{
    uint32_t sign = (uint32_t)(b & 0x80u) << 24;
    uint32_t e = (b >> 3) & 0xfu, m = b & 7u;
    if (e == 15 && m == 7)
        return ct_u32_as_f32(sign | 0x7fc00000u);
    if (e == 0)
        return ct_u32_as_f32(ct_f32_as_u32((float)m * 0x1p-9f) | sign);
    return ct_u32_as_f32(sign | ((e + 120u) << 23) | (m << 20));
}

float ct_f8e5m2_to_f32(uint8_t b)
{
    return ct_f16_to_f32((uint16_t)(b << 8));
}

/* The FNUZ formats: exponent bias one more than their FN/IEEE siblings, no
 * infinities, no negative zero; 0x80 (the would-be -0) is the one NaN. */
static float fnuz_to_f32(uint8_t b, unsigned mbits, unsigned bias)
{
    if (b == 0x80)
        return ct_u32_as_f32(0x7fc00000u);
    uint32_t sign = (uint32_t)(b & 0x80u) << 24;
    uint32_t e = (b & 0x7fu) >> mbits, m = b & ((1u << mbits) - 1u);
    if (e == 0)   /* m * 2^(1 - bias - mbits) */
        return ct_u32_as_f32(ct_f32_as_u32(ldexpf((float)m, 1 - (int)bias - (int)mbits)) | sign);
    return ct_u32_as_f32(sign | ((e + 127u - bias) << 23) | (m << (23 - mbits)));
}

float ct_f8e4m3fnuz_to_f32(uint8_t b)
{
    return fnuz_to_f32(b, 3, 8);
}

float ct_f8e5m2fnuz_to_f32(uint8_t b)
{
    return fnuz_to_f32(b, 2, 16);
}

float ct_fp4_to_f32(uint8_t c)
{
    static const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    float v = mag[c & 7u];
    return (c & 8u) ? -v : v;
}

float ct_e8m0_to_f32(uint8_t e)
{
    if (e == 0)
        return 0x1p-127f;
    if (e == 255)
        return ct_u32_as_f32(0x7f800000u);
    return ct_u32_as_f32((uint32_t)e << 23);
}

