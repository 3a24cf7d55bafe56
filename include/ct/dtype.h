/* safetensors dtype codes and exact element conversions.
 *
 * The enum follows the reference writer's ordering (safetensors' Rust Dtype
 * enum, ascending), so sorting by descending enum value reproduces its
 * tensor order.  All conversions are pure functions, thread-safe. */
#ifndef CT_DTYPE_H
#define CT_DTYPE_H

#include <stdint.h>
#include <string.h>

typedef enum {
    CT_BOOL, CT_F4, CT_F6_E2M3, CT_F6_E3M2, CT_U8, CT_I8, CT_F8_E5M2,
    CT_F8_E4M3, CT_F8_E8M0, CT_F8_E4M3FNUZ, CT_F8_E5M2FNUZ, CT_I16, CT_U16,
    CT_F16, CT_BF16, CT_I32, CT_U32, CT_F32, CT_C64, CT_F64, CT_I64, CT_U64,
    CT_DTYPE_COUNT
} ct_dtype;

/* Returns the dtype for a header code such as "BF16", or -1. */
int ct_dtype_from_name(const char *name);
const char *ct_dtype_name(ct_dtype d);
/* Bits per element (4 for F4, 6 for F6_*). */
unsigned ct_dtype_bits(ct_dtype d);

static inline float ct_u32_as_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t ct_f32_as_u32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Exact widening. */
static inline float ct_bf16_to_f32(uint16_t h) { return ct_u32_as_f32((uint32_t)h << 16); }
float ct_f16_to_f32(uint16_t h);
/* F8_E4M3 (float8_e4m3fn): no infinities, S.1111.111 is NaN. */
float ct_f8e4m3_to_f32(uint8_t b);
float ct_f8e5m2_to_f32(uint8_t b);
/* F8_E4M3FNUZ / F8_E5M2FNUZ (bias 8 / 16, no infinities, no -0; 0x80 is NaN). */
float ct_f8e4m3fnuz_to_f32(uint8_t b);
float ct_f8e5m2fnuz_to_f32(uint8_t b);
/* FP4 E2M1 nibble (low 4 bits of c): sign<<3 | {0,.5,1,1.5,2,3,4,6}. */
float ct_fp4_to_f32(uint8_t c);
/* E8M0 exponent byte: 2^(e-127); 255 gives +inf (upstream does not special-case it). */
float ct_e8m0_to_f32(uint8_t e);

/* Round-to-nearest-even narrowing.  NaN stays NaN: quiet, same sign, top
 * payload bits kept (what vcvtneps2bf16 does), so bf16->f32->bf16 is the
 * identity on every pattern except that signalling NaNs come back quiet. */
static inline uint16_t ct_f32_to_bf16(float f)
{
    uint32_t u = ct_f32_as_u32(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
uint16_t ct_f32_to_f16(float f);
/* float32 -> F8_E4M3 with saturation to +-448 (quantizers clamp first) and RNE. */
static inline uint8_t ct_f32_to_f8e4m3(float f)
{
    uint32_t u = ct_f32_as_u32(f);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u)
        return sign | 0x7f;
    if (u >= 0x43e00000u)                   /* >= 448: saturate */
        return sign | 0x7e;
    if (u < 0x3c800000u) {                  /* below 2^-6: subnormal step 2^-9 */
        float v = ct_u32_as_f32(u) * 0x1p9f; /* exact */
        float r = v + 0x1p23f - 0x1p23f;     /* RNE to integer (v < 8) */
        return sign | (uint8_t)r;            /* 8 encodes 2^-6 as e=1, m=0 */
    }
    u += 0x7ffffu + ((u >> 20) & 1u);
    uint32_t e = (u >> 23) - 120u, m = (u >> 20) & 7u;
    if (e > 15 || (e == 15 && m == 7))
        return sign | 0x7e;
    return sign | (uint8_t)((e << 3) | m);
}


#endif
