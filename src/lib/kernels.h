/* Hot decode kernels with runtime-selected SIMD paths.
 *
 * Each kernel has a portable C version; on x86-64 faster versions are
 * picked once at first use from the CPU's features.  CT_SIMD=0 in the
 * environment forces the portable versions (tests compare both).  Every
 * path gives the same bytes: outputs are defined by the format note's
 * rounding, and the SIMD paths implement exactly the same arithmetic. */
#ifndef CT_KERNELS_H
#define CT_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "ct/dtype.h"

/* Scatter the values for the set bits of mask bits [c_lo, c_hi) into dst
 * (zeros elsewhere); vals holds the value for the first set bit at or
 * after c_lo.  Element size es in {1, 2, 4, 8}.  Reads no byte past the
 * last value used. */
void ct_k_scatter(const uint8_t *mask, uint64_t c_lo, uint64_t c_hi, const void *vals, size_t es, void *dst);

/* Population count of the first nbits bits of m. */
uint64_t ct_k_popcount(const uint8_t *m, uint64_t nbits);

/* 16-bit outputs for 4-bit codes through a 16-entry table: element i of
 * n (n even) is tab[nibble i], nibble i being the low nibble of byte i/2
 * for even i and the high nibble for odd i. */
void ct_k_lut4_u16(const uint8_t *packed, size_t n, const uint16_t tab[16], uint16_t *out);

/* out[i] = round(od, ((float)(int8_t)q[i] - z) * s) for int codes, and the
 * same with F8_E4M3 codes widened exactly (fp8 != 0). */
void ct_k_dq_i8(const uint8_t *q, size_t n, float z, float s, ct_dtype od, void *out);
void ct_k_dq_f8(const uint8_t *q, size_t n, float s, ct_dtype od, void *out);

/* tab[u] = round(od, (v[u] - z) * s) for the 16 code values v (od BF16 or F16). */
void ct_k_table16(const float v[16], float z, float s, ct_dtype od, uint16_t tab[16]);

/* BF16 outputs of FP4 pairs: element i (nibbles as ct_k_lut4_u16) times
 * scales[i / gs]; n and gs multiples of 16. */
void ct_k_fp4_bf16(const uint8_t *packed, size_t n, const float *scales, size_t gs, uint16_t *out);
/* Columns [c_lo, c_hi) of one row of 4-bit codes (row: the packed row's
 * first byte; c_lo and c_hi even) to BF16 in groups of gs columns, group g
 * through the table of (v[u] - z[g]) * s[g] (z NULL: 0), as ct_k_table16 +
 * ct_k_lut4_u16 do, in one pass. */
void ct_k_lut4_scaled_bf16_groups(const uint8_t *row, uint64_t c_lo, uint64_t c_hi, uint64_t gs, const float v[16],
                                  const float *z, const float *s, uint16_t *out);
/* NVFP4 by table: tab[code * 16 + c] = round_bf16(fp4(c) * s[code]) for
 * the 256 FP8 scale codes (ct_k_fp4_table builds it, exactly as
 * ct_k_fp4_bf16 rounds); then element i of the run is
 * tab[codes[i / gs] * 16 + nibble i].  n and gs multiples of 16. */
void ct_k_fp4_table(const float s[256], uint16_t tab[4096]);
void ct_k_fp4_bf16_coded(const uint8_t *packed, size_t n, const uint8_t *codes, size_t gs, const uint16_t *tab,
                         uint16_t *out);

/* Which paths are in use, for the benchmark and the tests. */
const char *ct_k_paths(void);
/* Force the portable paths (1) or the best available (0). */
void ct_k_force_portable(int on);

#endif
