/* Internal: recipes for dense tensors (shared by source.c, decode.c). */
#ifndef CT_SOURCE_PRIV_H
#define CT_SOURCE_PRIV_H

#include <pthread.h>
#include "ct/source.h"

typedef struct ct_ref {
    const ct_st *st;
    const ct_st_tensor *t;     /* NULL when absent */
} ct_ref;

enum ct_kind {
    CT_K_PASS,       /* stored tensor copied */
    CT_K_SPARSE,     /* bitmask / 2:4 values scattered */
    CT_K_PACK,       /* int codes packed in I32 */
    CT_K_INT,        /* int codes, one per I8 */
    CT_K_FP8,        /* F8_E4M3 codes with scales */
    CT_K_NVFP4,      /* FP4 pairs, F8 group scales / F32 global */
    CT_K_MXFP4,      /* FP4 pairs, E8M0 group scales */
    CT_K_MXFP8       /* F8_E4M3 codes, E8M0 group scales */
};

enum ct_sparse_kind { CT_SP_NONE = 0, CT_SP_BITMASK, CT_SP_24 };

typedef struct ct_recipe {
    enum ct_kind kind;
    enum ct_sparse_kind sparse;  /* for CT_K_SPARSE, or codes of INT/FP8 */
    ct_ref main;                 /* PASS tensor, weight_packed, or weight */
    ct_ref values, bitmask, row_offsets;
    ct_ref scale, zp, g_idx, gscale;
    uint64_t rows, cols;         /* dense tensor as [rows, cols] */
    uint64_t rows_per_expert;    /* R of [E, R, C]; == rows for 2-D */
    int nbits;
    int layout_b;
    ct_strategy strategy;
    uint64_t gs;                 /* columns per scale group */
    uint64_t bh, bw;             /* block strategy */
    uint64_t scale_cols;         /* k: scale columns */
    uint64_t scale_rows_per_expert;
    int zp_packed;
    uint64_t zp_rows_per_expert; /* Wz for packed zp */
    uint64_t packed_cols;        /* W: int32 words (PACK) or bytes (FP4) per row */
    ct_dtype code_dtype;         /* codes produced by sparse decode */
    /* Lazily built row start index for sparse tensors without usable
     * row_offsets (1-D legacy has one row; >=3-D ones). */
    pthread_mutex_t lock;
    uint64_t *row_start;
} ct_recipe;

typedef struct ct_dtensor {
    ct_tensor info;
    ct_recipe r;
    int name_borrowed;           /* info.name is the stored tensor's (passed through) */
} ct_dtensor;

/* decode.c: decode dense elements [e0, e1) (row-major) into out. */
int ct_decode_elems(const ct_dtensor *t, uint64_t e0, uint64_t e1, void *out, ct_err *err);
/* Readahead hint for the stored bytes dense elements [e0, e1) will need:
 * each stored piece's share, in proportion (exact for row-major pieces,
 * close for sparse values). */
void ct_advise_elems(const ct_dtensor *t, uint64_t e0, uint64_t e1);

#endif
