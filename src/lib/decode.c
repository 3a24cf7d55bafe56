/* Decoders: dense elements [e0, e1) of one tensor, from its stored pieces.
 *
 * Work is done in chunks of whole rows (bounded stored bytes per chunk);
 * each row is turned into 8-bit codes in a row-sized scratch buffer (from
 * packed words, I8/F8 bytes, FP4 nibbles or a sparse scatter), and codes
 * become output values through the format note's exact rounding.  For a
 * group whose 2^nb possible outputs are fewer than its elements, the outputs
 * are tabulated once (bit-exact by construction) and decoding is a lookup. */
#include "config.h"
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "source_priv.h"
#include "decode.h"
#include "kernels.h"
#include "ct/util.h"

#define CHUNK_BYTES ((uint64_t)1 << 20)

/* Per-thread scratch for one decode call: bump allocation, reset at the
 * start of each ct_decode_elems; a call that needed more than the first
 * block gets one block of the total size next time.  Freed at thread exit,
 * so FUSE worker threads keep at most a few MiB each. */
typedef struct arena {
    char *base;
    size_t cap, used, spill;
    void **extra;
    size_t nextra;
} arena;

static pthread_key_t arena_key;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;

static void arena_destroy(void *p)
{
    arena *a = p;
    for (size_t i = 0; i < a->nextra; i++)
        free(a->extra[i]);
    free(a->extra);
    free(a->base);
    free(a);
}

static void arena_make_key(void) { pthread_key_create(&arena_key, arena_destroy); }

static arena *arena_reset(void)
{
    pthread_once(&arena_once, arena_make_key);
    arena *a = pthread_getspecific(arena_key);
    if (!a) {
        if (!(a = calloc(1, sizeof *a)))
            return NULL;
        pthread_setspecific(arena_key, a);
    }
    for (size_t i = 0; i < a->nextra; i++)
        free(a->extra[i]);
    a->nextra = 0;
    if (a->spill) {
        size_t want = a->cap + a->spill;
        char *b = malloc(want);
        if (b) {
            free(a->base);
            a->base = b;
            a->cap = want;
        }
        a->spill = 0;
    }
    a->used = 0;
    return a;
}

static void *aalloc(size_t n)
{
    arena *a = pthread_getspecific(arena_key);
    n = (n + 63) & ~(size_t)63;
    if (a->cap - a->used >= n) {
        void *p = a->base + a->used;
        a->used += n;
        return p;
    }
    void **x = realloc(a->extra, (a->nextra + 1) * sizeof *x);
    if (!x)
        return NULL;
    a->extra = x;
    void *p = malloc(n);
    if (p) {
        a->extra[a->nextra++] = p;
        a->spill += n;
    }
    return p;
}

static int nomem(ct_err *err, const ct_dtensor *t)
{
    return ct_fail(err, CT_ENOMEM, "tensor '%s': out of memory while decoding", t->info.name);
}

static int rd(const ct_ref *ref, uint64_t off, uint64_t len, void *buf, ct_err *err)
{
    return ct_st_pread(ref->st, ref->t, off, len, buf, err);
}

static float f8_tab[256];
static pthread_once_t f8_once = PTHREAD_ONCE_INIT;
static void f8_init(void)
{
    for (int b = 0; b < 256; b++)
        f8_tab[b] = ct_f8e4m3_to_f32((uint8_t)b);
}
static const float *f8_table(void)
{
    pthread_once(&f8_once, f8_init);
    return f8_tab;
}

/* n elements of a small tensor (scales, zero points, indexes) from element
 * i0 into a malloc'd buffer; *es gets the element size. */
static int read_elems(const ct_ref *ref, uint64_t i0, uint64_t n, unsigned char **out, size_t *es, ct_err *err)
{
    *es = ct_dtype_bits(ref->t->dtype) / 8;
    if (!(*out = malloc(n * *es + 1)))
        return ct_fail(err, CT_ENOMEM, "out of memory");
    int rc = rd(ref, i0 * *es, n * *es, *out, err);
    if (rc) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* n elements of a scale tensor, from element i0, as float32. */
static int load_scales(const ct_ref *ref, uint64_t i0, uint64_t n, int e8m0, float *dst, ct_err *err)
{
    ct_dtype dt = ref->t->dtype;
    size_t es;
    unsigned char *tmp;
    int rc = read_elems(ref, i0, n, &tmp, &es, err);
    for (uint64_t i = 0; !rc && i < n; i++) {
        const unsigned char *p = tmp + i * es;
        switch (dt) {
        case CT_F32: dst[i] = ct_u32_as_f32(ct_load_le32(p)); break;
        case CT_BF16: dst[i] = ct_bf16_to_f32(ct_load_le16(p)); break;
        case CT_F16: dst[i] = ct_f16_to_f32(ct_load_le16(p)); break;
        case CT_F64: { double d; memcpy(&d, p, 8); dst[i] = (float)d; break; }
        case CT_F8_E4M3: dst[i] = f8_table()[*p]; break;
        case CT_U8: case CT_F8_E8M0: dst[i] = e8m0 ? ct_e8m0_to_f32(*p) : (float)*p; break;
        default: rc = ct_fail(err, CT_EUNSUPPORTED, "scale tensor '%s' has dtype %s", ref->t->name,
                              ct_dtype_name(dt));
        }
    }
    free(tmp);
    return rc;
}

/* n elements of an integer tensor as int32 (zero points, g_idx, offsets). */
static int load_ints(const ct_ref *ref, uint64_t i0, uint64_t n, int64_t *dst, ct_err *err)
{
    ct_dtype dt = ref->t->dtype;
    size_t es;
    unsigned char *tmp;
    int rc = read_elems(ref, i0, n, &tmp, &es, err);
    for (uint64_t i = 0; !rc && i < n; i++) {
        const unsigned char *p = tmp + i * es;
        switch (dt) {
        case CT_I8: dst[i] = (int8_t)*p; break;
        case CT_U8: dst[i] = *p; break;
        case CT_I16: dst[i] = (int16_t)ct_load_le16(p); break;
        case CT_I32: dst[i] = (int32_t)ct_load_le32(p); break;
        case CT_U32: dst[i] = ct_load_le32(p); break;
        case CT_I64: case CT_U64: dst[i] = (int64_t)ct_load_le64(p); break;
        default: rc = ct_fail(err, CT_EUNSUPPORTED, "tensor '%s' has non-integer dtype %s", ref->t->name,
                              ct_dtype_name(dt));
        }
    }
    free(tmp);
    return rc;
}

int ct_load_ints_ref(const ct_ref *ref, uint64_t i0, uint64_t n, int64_t *dst, ct_err *err)
{
    return load_ints(ref, i0, n, dst, err);
}

/* ------------------------------------------------------------------ */
/* codes -> values */

/* Value of code byte q before scaling, per kind. */
static void value_table(const ct_recipe *r, float lut[256])
{
    for (int b = 0; b < 256; b++) {
        switch (r->kind) {
        case CT_K_FP8: case CT_K_MXFP8: lut[b] = ct_f8e4m3_to_f32((uint8_t)b); break;
        case CT_K_NVFP4: case CT_K_MXFP4: lut[b] = ct_fp4_to_f32((uint8_t)(b & 15)); break;
        default: lut[b] = (float)(int8_t)b; break;   /* int codes, signed */
        }
    }
}

/* (value - z) * s; a NaN code value stays itself (see kernels.c). */
static inline float dq(const float *lut, uint8_t q, float z, float s)
{
    float v = lut[q];
    return v != v ? v : (v - z) * s;
}

/* out[i] = round(out_dtype, (lut[q[i]] - z) * s), i < n. */
CT_HOT static void dq_run(const float *lut, const uint8_t *q, size_t n, float z, float s,
                          ct_dtype od, void *out)
{
    switch (od) {
    case CT_F32: { float *o = out; for (size_t i = 0; i < n; i++) o[i] = dq(lut, q[i], z, s); break; }
    case CT_BF16: { uint16_t *o = out; for (size_t i = 0; i < n; i++) o[i] = ct_f32_to_bf16(dq(lut, q[i], z, s)); break; }
    default: { uint16_t *o = out; for (size_t i = 0; i < n; i++) o[i] = ct_f32_to_f16(dq(lut, q[i], z, s)); break; }
    }
}

/* Same through a table of the ncodes possible outputs (ncodes <= 256). */
CT_HOT static void dq_tab(const float *lut, const uint8_t *q, size_t n, float z, float s, unsigned ncodes,
                          int signed_codes, ct_dtype od, void *out)
{
    if (od == CT_F32) {
        float tab[256];
        for (unsigned c = 0; c < 256; c++)
            tab[c] = dq(lut, (uint8_t)c, z, s);
        float *o = out;
        for (size_t i = 0; i < n; i++)
            o[i] = tab[q[i]];
        return;
    }
    uint16_t tab[256];
    /* Only the codes that can occur need computing. */
    unsigned lo = signed_codes ? 256 - ncodes / 2 : 0;
    for (unsigned k = 0; k < ncodes; k++) {
        unsigned c = (lo + k) & 255;
        float v = dq(lut, (uint8_t)c, z, s);
        tab[c] = od == CT_BF16 ? ct_f32_to_bf16(v) : ct_f32_to_f16(v);
    }
    uint16_t *o = out;
    for (size_t i = 0; i < n; i++)
        o[i] = tab[q[i]];
}

/* ------------------------------------------------------------------ */
/* int packing */

static void unpack_row(const uint32_t *w, uint64_t C, int nb, int layout_b, uint8_t *q)
{
    const uint32_t mask = (1u << nb) - 1, off = 1u << (nb - 1);
    if (nb == 4) {
        for (uint64_t i = 0; i < C; i++)
            q[i] = (uint8_t)(((w[i >> 3] >> ((i & 7) * 4)) & 15u) - 8u);
    } else if (nb == 8) {
        const uint8_t *b = (const uint8_t *)w;
        for (uint64_t i = 0; i < C; i++)
            q[i] = (uint8_t)(b[i] - 128u);
    } else if (!layout_b || 32 % nb == 0) {
        unsigned pf = 32u / (unsigned)nb;
        for (uint64_t i = 0; i < C; i++)
            q[i] = (uint8_t)(((w[i / pf] >> (nb * (i % pf))) & mask) - off);
    } else {
        for (uint64_t i = 0; i < C; i++) {
            uint64_t bit = i * (uint64_t)nb;
            uint64_t win = w[bit >> 5] | ((uint64_t)w[(bit >> 5) + 1] << 32);
            q[i] = (uint8_t)(((win >> (bit & 31)) & mask) - off);
        }
    }
}

/* Word row and bit of element rr along a packed column (zero points). */
static void zp_pos(int nb, int layout_b, uint64_t rr, uint64_t *word, unsigned *bit)
{
    if (!layout_b || 32 % nb == 0) {
        unsigned pf = 32u / (unsigned)nb;
        *word = rr / pf;
        *bit = (unsigned)(nb * (rr % pf));
    } else {
        uint64_t b = rr * (uint64_t)nb;
        *word = b >> 5;
        *bit = (unsigned)(b & 31);
    }
}

/* ------------------------------------------------------------------ */
/* sparse */

static uint64_t popcount_bits(const uint8_t *m, uint64_t nbits)
{
    return ct_k_popcount(m, nbits);
}

static void scatter(const uint8_t *m, uint64_t c_lo, uint64_t c_hi, const char *vals, size_t es, char *dst)
{
    ct_k_scatter(m, c_lo, c_hi, vals, es, dst);
}

/* Row start index for sparse tensors that cannot use row_offsets. */
static int sparse_index(const ct_dtensor *t, ct_err *err)
{
    ct_recipe *r = (ct_recipe *)&t->r;
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    if (r->row_start)
        goto out;
    uint64_t mb = (r->cols + 7) / 8, rows = r->rows;
    uint64_t *idx = malloc((rows + 1) * sizeof *idx);
    uint64_t per = CHUNK_BYTES / (mb ? mb : 1) + 1;
    uint8_t *m = malloc((per < rows ? per : rows) * mb + 8);
    if (!idx || !m) {
        free(idx);
        free(m);
        rc = nomem(err, t);
        goto out;
    }
    uint64_t acc = 0;
    for (uint64_t r0 = 0; r0 < rows && !rc; r0 += per) {
        uint64_t n = rows - r0 < per ? rows - r0 : per;
        rc = rd(&r->bitmask, r0 * mb, n * mb, m, err);
        for (uint64_t i = 0; !rc && i < n; i++) {
            idx[r0 + i] = acc;
            acc += popcount_bits(m + i * mb, r->cols);
        }
    }
    idx[rows] = acc;
    free(m);
    if (!rc && acc != r->values.t->numel)
        rc = ct_fail(err, CT_EFORMAT, "tensor '%s': bitmask has %" PRIu64 " set bits but %" PRIu64
                     " values are stored", t->info.name, acc, r->values.t->numel);
    if (rc)
        free(idx);
    else
        r->row_start = idx;
out:
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* Start value index of rows r0 .. r0+n (n+1 entries) into st. */
static int sparse_starts(const ct_dtensor *t, uint64_t r0, uint64_t n, uint64_t *st, ct_err *err)
{
    const ct_recipe *r = &t->r;
    uint64_t nnz = r->values.t->numel;
    if (r->sparse == CT_SP_24) {
        for (uint64_t i = 0; i <= n; i++)
            st[i] = (r0 + i) * (r->cols / 2);
        return 0;
    }
    if (r->row_offsets.t) {
        uint64_t have = r0 + n < r->rows ? n + 1 : n;
        int64_t *tmp = malloc((n + 1) * sizeof *tmp);
        if (!tmp)
            return nomem(err, t);
        int rc = load_ints(&r->row_offsets, r0, have, tmp, err);
        if (!rc && have == n)
            tmp[n] = (int64_t)nnz;
        for (uint64_t i = 0; !rc && i <= n; i++) {
            if (tmp[i] < 0 || (uint64_t)tmp[i] > nnz || (i && tmp[i] < tmp[i - 1]) || (r0 + i == 0 && tmp[i]))
                rc = ct_fail(err, CT_EFORMAT, "tensor '%s': row_offsets[%" PRIu64 "] = %" PRId64
                             " is out of range (0..%" PRIu64 " values, non-decreasing)",
                             t->info.name, r0 + i, tmp[i], nnz);
            st[i] = (uint64_t)tmp[i];
        }
        free(tmp);
        return rc;
    }
    int rc = sparse_index(t, err);
    if (!rc)
        memcpy(st, t->r.row_start + r0, (n + 1) * sizeof *st);
    return rc;
}

/* Sparse rows [r0, r0+n): either into the dense output (codes == NULL) or,
 * for sparsity stacked on quantization, into per-row code buffers through
 * the row callback. */
typedef int (*row_fn)(const ct_dtensor *t, uint64_t row, const uint8_t *codes, uint64_t c_lo,
                      uint64_t c_hi, char *dst, void *ctx, ct_err *err);

static int sparse_rows(const ct_dtensor *t, uint64_t r0, uint64_t n, uint64_t e0, uint64_t e1,
                       char *out, size_t out_es, row_fn fn, void *ctx, ct_err *err)
{
    const ct_recipe *r = &t->r;
    uint64_t C = r->cols, mb = (C + 7) / 8;
    size_t ves = ct_dtype_bits(r->values.t->dtype) / 8;
    int rc;
    uint64_t *st = aalloc((n + 1) * sizeof *st);
    uint8_t *m = aalloc(n * mb + 8);
    char *vals = NULL;
    uint8_t *codes = NULL;
    if (!st || !m) {
        rc = nomem(err, t);
        goto out;
    }
    if ((rc = sparse_starts(t, r0, n, st, err)) || (rc = rd(&r->bitmask, r0 * mb, n * mb, m, err)))
        goto out;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t pc = popcount_bits(m + i * mb, C);
        if (st[i + 1] < st[i] || pc != st[i + 1] - st[i]) {
            rc = ct_fail(err, CT_EFORMAT, "tensor '%s': row %" PRIu64 " of the bitmask has %" PRIu64
                         " set bits but its values span %" PRId64, t->info.name, r0 + i, pc,
                         (int64_t)(st[i + 1] - st[i]));
            goto out;
        }
    }
    uint64_t v0 = st[0], nv = st[n] - st[0];
    if (st[n] > r->values.t->numel) {
        rc = ct_fail(err, CT_EFORMAT, "tensor '%s': bitmask needs %" PRIu64 " values but %" PRIu64
                     " are stored", t->info.name, st[n], r->values.t->numel);
        goto out;
    }
    if (!(vals = aalloc(nv * ves + 8 * 8)) || (fn && !(codes = aalloc(C + 64)))) {
        rc = nomem(err, t);
        goto out;
    }
    if ((rc = rd(&r->values, v0 * ves, nv * ves, vals, err)))
        goto out;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t row = r0 + i;
        uint64_t c_lo = row == e0 / C ? e0 % C : 0;
        uint64_t c_hi = row == (e1 - 1) / C ? (e1 - 1) % C + 1 : C;
        char *dst = out + (row * C + c_lo - e0) * out_es;
        const uint8_t *mrow = m + i * mb;
        if (fn) {
            scatter(mrow, 0, C, vals + (st[i] - v0) * ves, 1, (char *)codes);
            if ((rc = fn(t, row, codes, c_lo, c_hi, dst, ctx, err)))
                goto out;
        } else {
            uint64_t skip = popcount_bits(mrow, c_lo);
            scatter(mrow, c_lo, c_hi, vals + (st[i] - v0 + skip) * ves, ves, dst);
        }
    }
out:
    return rc;
}

/* ------------------------------------------------------------------ */
/* quantized rows */

typedef struct qctx {
    uint64_t sr0, nsr;        /* scale rows loaded */
    float *scales;            /* nsr * k */
    float *zps;               /* per loaded row: n * k (already offset-free) */
    uint64_t zr0;             /* first row of zps */
    int64_t *gidx;            /* C entries or NULL */
    uint16_t *gtabs;          /* k * 16 per-group tables (activation order) */
    uint8_t *scodes;          /* NVFP4 by table: the raw FP8 scale codes (nsr * k) */
    uint16_t *fp4tab;         /* ...and the 256 x 16 results (ct_k_fp4_table) */
    float vals16[16];         /* value of table index u (ncodes <= 16; rest 0) */
    float lut[256];
    unsigned ncodes;
    int signed_codes;
} qctx;

static uint64_t scale_row_of(const ct_recipe *r, uint64_t row)
{
    uint64_t e = row / r->rows_per_expert, rr = row % r->rows_per_expert;
    uint64_t within;
    switch (r->strategy) {
    case CT_STRAT_TENSOR: within = 0; break;
    case CT_STRAT_BLOCK: within = rr / r->bh; break;
    default: within = rr; break;
    }
    return e * r->scale_rows_per_expert + within;
}

/* One run of codes sharing a scale and zero point. */
static void dq_segment(const ct_recipe *r, const qctx *q, const uint8_t *codes, size_t n, float z, float s,
                       ct_dtype od, void *dst)
{
    switch (r->kind) {
    case CT_K_PACK: case CT_K_INT:
        ct_k_dq_i8(codes, n, z, s, od, dst);
        break;
    case CT_K_FP8: case CT_K_MXFP8:
        if (z == 0.0f) {
            ct_k_dq_f8(codes, n, s, od, dst);
            break;
        }
        /* fall through */
    default:
        if (q->ncodes <= n)
            dq_tab(q->lut, codes, n, z, s, q->ncodes, q->signed_codes, od, dst);
        else
            dq_run(q->lut, codes, n, z, s, od, dst);
    }
}

/* The ncodes (<= 16) outputs of code values for one scale/zero point. */
static void small_table(const qctx *q, float z, float s, ct_dtype od, uint16_t tab[16])
{
    ct_k_table16(q->vals16, z, s, od, tab);
}

static int dequant_row(const ct_dtensor *t, uint64_t row, const uint8_t *codes, uint64_t c_lo,
                       uint64_t c_hi, char *dst, void *vctx, ct_err *err)
{
    (void)err;
    const ct_recipe *r = &t->r;
    qctx *q = vctx;
    ct_dtype od = t->info.dtype;
    size_t es = ct_dtype_bits(od) / 8;
    uint64_t k = r->scale_cols;
    const float *srow = q->scales + (scale_row_of(r, row) - q->sr0) * k;
    const float *zrow = q->zps ? q->zps + (row - q->zr0) * k : NULL;
    if (q->gidx) {
        /* Activation order: the group changes per column.  With few codes,
         * tabulate every group of the row once; else compute each element. */
        if (q->ncodes <= 16 && od != CT_F32) {
            for (uint64_t g = 0; g < k; g++)
                small_table(q, zrow ? zrow[g] : 0.0f, srow[g], od, q->gtabs + g * 16);
            uint16_t *o = (uint16_t *)dst;
            unsigned bias = q->signed_codes ? q->ncodes / 2 : 0;
            for (uint64_t c = c_lo; c < c_hi; c++)
                o[c - c_lo] = q->gtabs[(uint64_t)q->gidx[c] * 16 + ((codes[c] + bias) & 15u)];
            return 0;
        }
        for (uint64_t c = c_lo; c < c_hi; c++) {
            uint64_t g = (uint64_t)q->gidx[c];
            dq_run(q->lut, codes + c, 1, zrow ? zrow[g] : 0.0f, srow[g], od, dst + (c - c_lo) * es);
        }
        return 0;
    }
    for (uint64_t c = c_lo; c < c_hi;) {
        uint64_t g = c / r->gs;
        uint64_t end = (g + 1) * r->gs;
        if (end > c_hi)
            end = c_hi;
        dq_segment(r, q, codes + c, end - c, zrow ? zrow[g] : 0.0f, srow[g], od, dst + (c - c_lo) * es);
        c = end;
    }
    return 0;
}

/* 4-bit codes straight from the packed bytes, one table per group:
 * pack-quantized int4 and FP4 pairs with 16-bit outputs. */
static int fused4_row(const ct_recipe *r, const qctx *q, uint64_t row, const uint8_t *packed, uint64_t c_lo,
                      uint64_t c_hi, ct_dtype od, uint16_t *dst)
{
    uint64_t k = r->scale_cols;
    const float *srow = q->scales + (scale_row_of(r, row) - q->sr0) * k;
    const float *zrow = q->zps ? q->zps + (row - q->zr0) * k : NULL;
    uint16_t tab[16];
    /* the tables are indexed by the stored nibble (signed codes: code + 8) */
    if (od == CT_BF16) {
        ct_k_lut4_scaled_bf16_groups(packed, c_lo, c_hi, r->gs, q->vals16, zrow, srow, dst);
        return 0;
    }
    for (uint64_t c = c_lo; c < c_hi;) {
        uint64_t g = c / r->gs;
        uint64_t end = (g + 1) * r->gs;
        if (end > c_hi)
            end = c_hi;
        small_table(q, zrow ? zrow[g] : 0.0f, srow[g], od, tab);
        ct_k_lut4_u16(packed + c / 2, end - c, tab, dst + (c - c_lo));
        c = end;
    }
    return 0;
}

static int quant_rows(const ct_dtensor *t, uint64_t r0, uint64_t n, uint64_t e0, uint64_t e1, char *out,
                      ct_err *err)
{
    const ct_recipe *r = &t->r;
    uint64_t C = r->cols, k = r->scale_cols;
    size_t es = ct_dtype_bits(t->info.dtype) / 8;
    int rc = 0;
    qctx q = {0};
    char *stored = NULL;
    uint8_t *codes = NULL;
    int64_t *zraw = NULL;

    value_table(r, q.lut);
    switch (r->kind) {
    case CT_K_PACK: q.ncodes = 1u << r->nbits; q.signed_codes = 1; break;
    case CT_K_INT: q.ncodes = 256; q.signed_codes = 1; break;   /* any I8 byte may occur */
    case CT_K_NVFP4: case CT_K_MXFP4: q.ncodes = 16; break;
    default: q.ncodes = 256; break;
    }
    for (unsigned u = 0; u < 16 && u < q.ncodes; u++)
        q.vals16[u] = q.lut[(uint8_t)(q.signed_codes ? u - q.ncodes / 2 : u)];
    /* scales for the rows */
    q.sr0 = scale_row_of(r, r0);
    q.nsr = scale_row_of(r, r0 + n - 1) - q.sr0 + 1;
    int e8m0 = r->kind == CT_K_MXFP4 || r->kind == CT_K_MXFP8;
    if (!(q.scales = aalloc(q.nsr * k * sizeof(float)))) {
        rc = nomem(err, t);
        goto out;
    }
    /* NVFP4 runs to BF16 go by table when big enough: 4096 products once
     * (ct_k_fp4_table) instead of one per element, and the group scales
     * are then the table's 256 values picked by the stored FP8 codes. */
    if (r->kind == CT_K_NVFP4 && t->info.dtype == CT_BF16 && r->scale.t->dtype == CT_F8_E4M3 && r->gs % 16 == 0
        && n * C >= 65536) {
        float g, s256[256];
        if ((rc = load_scales(&r->gscale, 0, 1, 0, &g, err)))
            goto out;
        for (int c = 0; c < 256; c++)
            s256[c] = f8_table()[c] / g;
        if (!(q.scodes = aalloc(q.nsr * k + 8)) || !(q.fp4tab = aalloc(4096 * sizeof *q.fp4tab))) {
            rc = nomem(err, t);
            goto out;
        }
        if ((rc = rd(&r->scale, q.sr0 * k, q.nsr * k, q.scodes, err)))
            goto out;
        /* float scales are only needed where a row cannot take the table
         * path: the first and last rows (partial groups), or every row when
         * the columns are not whole groups of 16 */
        int all = C % 16 != 0;
        for (uint64_t i = 0; i < q.nsr * k; i++)
            if (all || i < k || i >= (q.nsr - 1) * k)
                q.scales[i] = s256[q.scodes[i]];
        ct_k_fp4_table(s256, q.fp4tab);
    } else {
        if ((rc = load_scales(&r->scale, q.sr0 * k, q.nsr * k, e8m0, q.scales, err)))
            goto out;
        if (r->kind == CT_K_NVFP4) {
            float g;
            if ((rc = load_scales(&r->gscale, 0, 1, 0, &g, err)))
                goto out;
            for (uint64_t i = 0; i < q.nsr * k; i++)
                q.scales[i] = q.scales[i] / g;
        }
    }
    /* zero points, per row, as floats */
    if (r->zp.t) {
        q.zr0 = r0;
        if (!(q.zps = aalloc(n * k * sizeof(float)))) {
            rc = nomem(err, t);
            goto out;
        }
        if (r->zp_packed) {
            uint64_t R = r->rows_per_expert, Wz = r->zp_rows_per_expert;
            uint64_t w_lo, w_hi;
            unsigned bit;
            zp_pos(r->nbits, r->layout_b, r0 % R, &w_lo, &bit);
            w_lo += (r0 / R) * Wz;
            zp_pos(r->nbits, r->layout_b, (r0 + n - 1) % R, &w_hi, &bit);
            w_hi += ((r0 + n - 1) / R) * Wz + 1;
            uint64_t total = r->zp.t->numel / k;
            if (w_hi >= total)
                w_hi = total - 1;
            uint64_t nw = w_hi - w_lo + 1;
            if (!(zraw = aalloc(nw * k * sizeof *zraw))) {
                rc = nomem(err, t);
                goto out;
            }
            if ((rc = load_ints(&r->zp, w_lo * k, nw * k, zraw, err)))
                goto out;
            const uint64_t mask = (1u << r->nbits) - 1, off = 1u << (r->nbits - 1);
            for (uint64_t i = 0; i < n; i++) {
                uint64_t row = r0 + i, e = row / R, w;
                zp_pos(r->nbits, r->layout_b, row % R, &w, &bit);
                w += e * Wz;
                for (uint64_t j = 0; j < k; j++) {
                    uint64_t lo = (uint32_t)zraw[(w - w_lo) * k + j];
                    uint64_t hi = (w + 1 < e * Wz + Wz && w + 1 <= w_hi) ? (uint32_t)zraw[(w + 1 - w_lo) * k + j] : 0;
                    uint64_t win = lo | (hi << 32);
                    q.zps[i * k + j] = (float)((int64_t)((win >> bit) & mask) - (int64_t)off);
                }
            }
        } else {
            /* unpacked: same indexing as the scale */
            uint64_t zr_lo = q.sr0;
            if (!(zraw = aalloc(q.nsr * k * sizeof *zraw))) {
                rc = nomem(err, t);
                goto out;
            }
            if ((rc = load_ints(&r->zp, zr_lo * k, q.nsr * k, zraw, err)))
                goto out;
            for (uint64_t i = 0; i < n; i++) {
                uint64_t sr = scale_row_of(r, r0 + i) - zr_lo;
                for (uint64_t j = 0; j < k; j++)
                    q.zps[i * k + j] = (float)zraw[sr * k + j];
            }
        }
    }
    if (r->g_idx.t) {
        if (!(q.gidx = aalloc(C * sizeof *q.gidx))) {
            rc = nomem(err, t);
            goto out;
        }
        if ((rc = load_ints(&r->g_idx, 0, C, q.gidx, err)))
            goto out;
        if (!(q.gtabs = aalloc(k * 16 * sizeof *q.gtabs))) {
            rc = nomem(err, t);
            goto out;
        }
        for (uint64_t c = 0; c < C; c++)
            if (q.gidx[c] < 0 || (uint64_t)q.gidx[c] >= k) {
                rc = ct_fail(err, CT_EFORMAT, "tensor '%s': weight_g_idx[%" PRIu64 "] = %" PRId64
                             " is not a group index (0..%" PRIu64 ")", t->info.name, c, q.gidx[c], k - 1);
                goto out;
            }
    }
    if (r->sparse) {
        rc = sparse_rows(t, r0, n, e0, e1, out, es, dequant_row, &q, err);
        goto out;
    }
    /* stored codes for the rows */
    uint64_t row_bytes;
    switch (r->kind) {
    case CT_K_PACK: row_bytes = r->packed_cols * 4; break;
    case CT_K_NVFP4: case CT_K_MXFP4: row_bytes = r->packed_cols; break;
    default: row_bytes = C; break;
    }
    if (!(stored = aalloc(n * row_bytes + 16)) || !(codes = aalloc(C + 64))) {
        rc = nomem(err, t);
        goto out;
    }
    memset(stored + n * row_bytes, 0, 16);
    if ((rc = rd(&r->main, r0 * row_bytes, n * row_bytes, stored, err)))
        goto out;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t row = r0 + i;
        uint64_t c_lo = row == e0 / C ? e0 % C : 0;
        uint64_t c_hi = row == (e1 - 1) / C ? (e1 - 1) % C + 1 : C;
        const char *src = stored + i * row_bytes;
        const uint8_t *cp;
        int fp4 = r->kind == CT_K_NVFP4 || r->kind == CT_K_MXFP4;
        /* whole groups only: the kernel indexes scales from c_lo */
        if (fp4 && t->info.dtype == CT_BF16 && r->gs % 16 == 0 && c_lo % r->gs == 0 && (c_hi - c_lo) % 16 == 0) {
            uint64_t so = (scale_row_of(r, row) - q.sr0) * r->scale_cols + c_lo / r->gs;
            if (q.fp4tab)
                ct_k_fp4_bf16_coded((const uint8_t *)src + c_lo / 2, c_hi - c_lo, q.scodes + so, r->gs, q.fp4tab,
                                    (uint16_t *)(out + (row * C + c_lo - e0) * es));
            else
                ct_k_fp4_bf16((const uint8_t *)src + c_lo / 2, c_hi - c_lo, q.scales + so, r->gs,
                              (uint16_t *)(out + (row * C + c_lo - e0) * es));
            continue;
        }
        int four = (r->kind == CT_K_PACK && r->nbits == 4) || fp4;
        if (four && es == 2 && !q.gidx && r->gs % 2 == 0 && c_lo % 2 == 0 && (c_hi - c_lo) % 2 == 0) {
            fused4_row(r, &q, row, (const uint8_t *)src, c_lo, c_hi, t->info.dtype,
                       (uint16_t *)(out + (row * C + c_lo - e0) * es));
            continue;
        }
        switch (r->kind) {
        case CT_K_PACK:
            /* Layout B reads one word past a code's word; inside the row it
             * is the row's own, past the last row the zero padding. */
            unpack_row((const uint32_t *)src, C, r->nbits, r->layout_b, codes);
            cp = codes;
            break;
        case CT_K_NVFP4: case CT_K_MXFP4:
            for (uint64_t c = 0; c < C; c++)
                codes[c] = (uint8_t)(((const uint8_t *)src)[c >> 1] >> ((c & 1) * 4)) & 15u;
            cp = codes;
            break;
        default:
            cp = (const uint8_t *)src;
        }
        char *dst = out + (row * C + c_lo - e0) * es;
        if ((rc = dequant_row(t, row, cp, c_lo, c_hi, dst, &q, err)))
            goto out;
    }
out:
    return rc;
}

/* ------------------------------------------------------------------ */

/* Scratch bytes one row needs while decoding (stored bytes, codes, float
 * scales and zero points). */
static uint64_t scratch_row_bytes(const ct_recipe *r)
{
    uint64_t params = r->scale_cols * 2 * sizeof(float);
    switch (r->kind) {
    case CT_K_SPARSE: return r->cols * (ct_dtype_bits(r->values.t->dtype) / 8) + (r->cols + 7) / 8;
    case CT_K_PACK: return r->packed_cols * 4 + r->cols + params;
    case CT_K_NVFP4: case CT_K_MXFP4: return r->packed_cols + r->cols + params;
    default: return r->cols + params;
    }
}

static void advise_share(const ct_ref *ref, uint64_t e0, uint64_t e1, uint64_t numel)
{
    if (!ref->t || !numel)
        return;
    unsigned __int128 bytes = ref->t->end - ref->t->begin;
    uint64_t b0 = (uint64_t)(bytes * e0 / numel), b1 = (uint64_t)((bytes * e1 + numel - 1) / numel);
    ct_st_advise(ref->st, ref->t, b0, b1 - b0);
}

void ct_advise_elems(const ct_dtensor *t, uint64_t e0, uint64_t e1)
{
    const ct_recipe *r = &t->r;
    uint64_t numel = r->kind == CT_K_PASS ? t->info.nbytes / (ct_dtype_bits(t->info.dtype) / 8) : r->rows * r->cols;
    if (e0 >= e1 || e1 > numel)
        return;
    const ct_ref *refs[] = {&r->main, &r->values, &r->bitmask, &r->row_offsets, &r->scale, &r->zp};
    for (size_t i = 0; i < sizeof refs / sizeof *refs; i++)
        advise_share(refs[i], e0, e1, numel);
}

int ct_decode_elems(const ct_dtensor *t, uint64_t e0, uint64_t e1, void *out, ct_err *err)
{
    const ct_recipe *r = &t->r;
    if (e0 >= e1)
        return 0;
    size_t es = ct_dtype_bits(t->info.dtype) / 8;
    if (r->kind == CT_K_PASS)
        return rd(&r->main, e0 * es, (e1 - e0) * es, out, err);
    uint64_t C = r->cols;
    uint64_t ra = e0 / C, rb = (e1 - 1) / C + 1;
    /* Rows per chunk: as many as fill CHUNK_BYTES of output or of scratch,
     * whichever is larger per row, plus the two partial rows a block of
     * that size cut anywhere in a tensor touches (blocks of a dense file
     * start after its header, not on row boundaries), so that such a block
     * is one chunk: each chunk costs a few preads, and system calls are dear. */
    uint64_t row_bytes = C * es, scratch = scratch_row_bytes(r);
    uint64_t per = CHUNK_BYTES / (scratch > row_bytes ? scratch : row_bytes) + 2;
    arena *a = arena_reset();
    if (!a)
        return nomem(err, t);
    for (uint64_t r0 = ra; r0 < rb; r0 += per) {
        uint64_t n = rb - r0 < per ? rb - r0 : per;
        uint64_t ce0 = r0 == ra ? e0 : r0 * C;
        uint64_t ce1 = r0 + n == rb ? e1 : (r0 + n) * C;
        char *dst = (char *)out + (ce0 - e0) * es;
        int rc = r->kind == CT_K_SPARSE ? sparse_rows(t, r0, n, ce0, ce1, dst, es, NULL, NULL, err)
                                        : quant_rows(t, r0, n, ce0, ce1, dst, err);
        if (rc)
            return rc;
        a->used = 0;   /* the next chunk reuses the same (cache-warm) scratch */
    }
    return 0;
}
