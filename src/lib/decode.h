/* Internal helpers shared between decode.c and source.c. */
#ifndef CT_DECODE_H
#define CT_DECODE_H
#include "source_priv.h"

#if defined(__GNUC__) && !defined(__clang__)
#define CT_HOT __attribute__((hot, optimize("O3")))
#else
#define CT_HOT
#endif

int ct_load_ints_ref(const ct_ref *ref, uint64_t i0, uint64_t n, int64_t *dst, ct_err *err);
#endif
