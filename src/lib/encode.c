#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "ct/encode.h"
#include "ct/source.h"
#include "ct/view.h"
#include "ct/st.h"
#include "ct/strmap.h"
#include "ct/util.h"
#include "ct/pyjson.h"
#include <pthread.h>

/* The compressed-tensors release whose layout this writer produces. */
#define CT_WRITER_VERSION "0.18.0"

/* One output tensor: bytes owned (data) or copied from the source (ref). */
typedef struct out_t {
    char *name;
    ct_dtype dtype;
    int ndim;
    int64_t shape[CT_MAX_DIMS];
    unsigned char *data;
    uint64_t nbytes;
    const ct_st_tensor *ref;
    const ct_st *st;            /* the source file of ref */
    uint64_t spill_off;         /* data parked in the spill file at this offset */
    size_t unit;                /* the work unit it came from (shards keep units whole) */
} out_t;

typedef struct outs {
    out_t *v;
    size_t n, cap;
} outs;

static out_t *push(outs *o, const char *name, ct_dtype dt, int ndim, const int64_t *shape)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 32;
        out_t *v = realloc(o->v, cap * sizeof *v);
        if (!v)
            return NULL;
        o->v = v;
        o->cap = cap;
    }
    out_t *t = &o->v[o->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return NULL;
    t->dtype = dt;
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    if (ct_tensor_nbytes(dt, ndim, shape, NULL, &t->nbytes, NULL)) {
        free(t->name);
        return NULL;
    }
    o->n++;
    return t;
}

static out_t *push_data(outs *o, const char *name, ct_dtype dt, int ndim, const int64_t *shape)
{
    out_t *t = push(o, name, dt, ndim, shape);
    if (t && !(t->data = calloc(1, t->nbytes + 8)))
        return NULL;
    return t;
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 1);
    if (p) {
        memcpy(p, a, la);
        memcpy(p + la, b, lb + 1);
    }
    return p;
}

/* float value of element i of a float tensor's bytes */
static float fval(ct_dtype dt, const unsigned char *p, uint64_t i)
{
    switch (dt) {
    case CT_BF16: return ct_bf16_to_f32(ct_load_le16(p + 2 * i));
    case CT_F16: return ct_f16_to_f32(ct_load_le16(p + 2 * i));
    case CT_F64: { double d; memcpy(&d, p + 8 * i, 8); return (float)d; }
    default: return ct_u32_as_f32(ct_load_le32(p + 4 * i));
    }
}

/* A row of a float tensor as float32 (exact for BF16/F16/F32). */
static void load_row(ct_dtype dt, const unsigned char *p, uint64_t n, float *out)
{
    switch (dt) {
    case CT_BF16:
        for (uint64_t i = 0; i < n; i++)
            out[i] = ct_bf16_to_f32(ct_load_le16(p + 2 * i));
        break;
    case CT_F16:
        for (uint64_t i = 0; i < n; i++)
            out[i] = ct_f16_to_f32(ct_load_le16(p + 2 * i));
        break;
    default:
        for (uint64_t i = 0; i < n; i++)
            out[i] = ct_u32_as_f32(ct_load_le32(p + 4 * i));
        break;
    }
}

/* Round a float32 result to the working dtype (torch computes half types
 * in float32 and rounds each op's result). */
static inline float in_dtype(ct_dtype dt, float v)
{
    switch (dt) {
    case CT_BF16: return ct_bf16_to_f32(ct_f32_to_bf16(v));
    case CT_F16: return ct_f16_to_f32(ct_f32_to_f16(v));
    default: return v;
    }
}

static int64_t ival(ct_dtype dt, const unsigned char *p, uint64_t i)
{
    switch (dt) {
    case CT_I8: return (int8_t)p[i];
    case CT_I16: return (int16_t)ct_load_le16(p + 2 * i);
    case CT_I32: return (int32_t)ct_load_le32(p + 4 * i);
    default: return (int64_t)ct_load_le64(p + 8 * i);
    }
}

/* Per-thread scratch buffers for the big per-module arrays (the weight's
 * bytes, its codes), reused from one module to the next: fresh pages for
 * every tensor cost more in page faults than the quantization itself.
 * scratch_release() frees them when a worker is done. */
enum { SCR_WEIGHT, SCR_CODES, SCR_N };
static _Thread_local struct scratch {
    void *p;
    size_t cap;
} scratch[SCR_N];

static void *scratch_get(int slot, size_t n)
{
    struct scratch *s = &scratch[slot];
    if (n > s->cap) {
        free(s->p);
        s->cap = 0;
        if (!(s->p = malloc(n)))
            return NULL;
        s->cap = n;
    }
    return s->p;
}

static void scratch_release(void)
{
    for (int i = 0; i < SCR_N; i++) {
        free(scratch[i].p);
        scratch[i].p = NULL;
        scratch[i].cap = 0;
    }
}

static int read_all(const ct_st *st, const ct_st_tensor *t, unsigned char **out, ct_err *err)
{
    uint64_t n = t->end - t->begin;
    if (!(*out = malloc(n + 8)))
        return ct_fail(err, CT_ENOMEM, "out of memory for tensor '%s'", t->name);
    int rc = ct_st_pread(st, t, 0, n, *out, err);
    if (rc) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* A module's weight bytes, in this thread's scratch buffer (not freed). */
static int read_weight(const ct_st *st, const ct_st_tensor *t, unsigned char **out, ct_err *err)
{
    uint64_t n = t->end - t->begin;
    if (!(*out = scratch_get(SCR_WEIGHT, n + 8)))
        return ct_fail(err, CT_ENOMEM, "out of memory for tensor '%s'", t->name);
    return ct_st_pread(st, t, 0, n, *out, err);
}

/* Words per row of n nb-bit codes in layout A (a code never straddles a
 * word; before 0.17) or B (dense little-endian bit stream). */
static uint64_t packed_words(uint64_t n, int nb, int layout_b)
{
    return layout_b || 32 % nb == 0 ? (n * (uint64_t)nb + 31) / 32 : (n + 32 / nb - 1) / (32 / nb);
}

/* Pack unsigned codes u[0..n) of nb bits into a zeroed row of words. */
static void pack_row(const uint8_t *u, uint64_t n, int nb, int layout_b, uint32_t *w)
{
    if (!layout_b && 32 % nb) {
        unsigned pf = 32u / (unsigned)nb;
        for (uint64_t i = 0; i < n; i++)
            w[i / pf] |= (uint32_t)u[i] << (nb * (i % pf));
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t bit = i * (uint64_t)nb;
        w[bit >> 5] |= (uint32_t)u[i] << (bit & 31);
        if ((bit & 31) + (uint64_t)nb > 32)
            w[(bit >> 5) + 1] |= (uint32_t)u[i] >> (32 - (bit & 31));
    }
}

/* Store a float in a float dtype's bytes. */
static void fstore(ct_dtype dt, unsigned char *p, uint64_t i, float v)
{
    uint16_t h;
    switch (dt) {
    case CT_BF16: h = ct_f32_to_bf16(v); memcpy(p + 2 * i, &h, 2); break;
    case CT_F16: h = ct_f32_to_f16(v); memcpy(p + 2 * i, &h, 2); break;
    default: memcpy(p + 4 * i, &v, 4); break;
    }
}


static int is_float(ct_dtype d) { return d == CT_F32 || d == CT_BF16 || d == CT_F16 || d == CT_F64; }

static float dtype_eps(ct_dtype dt)
{
    return dt == CT_BF16 ? 0x1p-7f : dt == CT_F16 ? 0x1p-10f : 0x1p-23f;
}

/* A source tensor somewhere in the checkpoint (any shard). */
typedef struct tref {
    const ct_st *st;
    const ct_st_tensor *t;
} tref;

/* Where each element's scale lives: scales form an SR x k grid and element
 * (r, c) uses scale (r / bh) * k + c / bw.  tensor: 1x1 (bh = R, bw = C);
 * channel: R x 1; group: R x C/gs; block: ceil(R/bh) x ceil(C/bw). */
typedef struct qgeom {
    uint64_t R, C, SR, k, bh, bw;
} qgeom;

static int geometry(const char *module, const ct_qargs *a, uint64_t R, uint64_t C, qgeom *q, ct_err *err)
{
    q->R = R;
    q->C = C;
    switch (a->strategy) {
    case CT_STRAT_TENSOR:
        q->SR = q->k = 1, q->bh = R ? R : 1, q->bw = C ? C : 1;
        return 0;
    case CT_STRAT_CHANNEL:
        q->SR = R, q->k = 1, q->bh = 1, q->bw = C ? C : 1;
        return 0;
    case CT_STRAT_GROUP:
    case CT_STRAT_TENSOR_GROUP:
        if (a->group_size <= 0 || C % (uint64_t)a->group_size)
            return ct_fail(err, CT_EFORMAT, "module '%s': %" PRIu64 " columns are not divisible by group size %" PRId64,
                           module, C, a->group_size);
        q->SR = R, q->bh = 1, q->bw = (uint64_t)a->group_size, q->k = C / q->bw;
        return 0;
    case CT_STRAT_BLOCK:
        if (a->block[0] <= 0 || a->block[1] <= 0)
            return ct_fail(err, CT_EFORMAT, "module '%s': block strategy without a block_structure", module);
        q->bh = (uint64_t)a->block[0], q->bw = (uint64_t)a->block[1];
        q->SR = (R + q->bh - 1) / q->bh, q->k = (C + q->bw - 1) / q->bw;
        return 0;
    default:
        return ct_fail(err, CT_EUNSUPPORTED, "module '%s': weights cannot use this quantization strategy "
                       "(tensor, channel, group, block and tensor_group can)", module);
    }
}

/* Per scale cell, min(min, 0) and max(max, 0) of its elements (block
 * padding is zeros, which the clipping to 0 already accounts for). */
static void minmax(ct_dtype wd, const unsigned char *x, const qgeom *q, float *mn, float *mx, float *row)
{
    size_t es = ct_dtype_bits(wd) / 8;
    for (uint64_t j = 0; j < q->SR * q->k; j++)
        mn[j] = mx[j] = 0.0f;
    for (uint64_t r = 0; r < q->R; r++) {
        load_row(wd, x + r * q->C * es, q->C, row);
        uint64_t base = (r / q->bh) * q->k;
        for (uint64_t c0 = 0, j = base; c0 < q->C; c0 += q->bw, j++) {
            uint64_t end = c0 + q->bw < q->C ? c0 + q->bw : q->C;
            float lo = mn[j], hi = mx[j];
            for (uint64_t c = c0; c < end; c++) {
                lo = row[c] < lo ? row[c] : lo;
                hi = row[c] > hi ? row[c] : hi;
            }
            mn[j] = lo;
            mx[j] = hi;
        }
    }
}

/* Quantization parameters as upstream's min-max observer and
 * calculate_qparams make them, each operation rounded to the weight dtype:
 * min/max clipped to include 0; symmetric s = max(|min|,|max|) / (range/2),
 * zp = 0; asymmetric s = (max - min) / range, zp = round(clamp(qmin - min/s));
 * then zero scales become the dtype's eps.  scales: SR*k values in the
 * weight dtype's bytes; zps (asymmetric only): SR*k int8. */
static int observe(ct_dtype wd, const unsigned char *x, const qgeom *q, int nb, int is_float, int sym,
                   unsigned char *scales, int8_t *zps)
{
    /* FP8 E4M3's range is [-448, 448], as upstream's calculate_range */
    const float qmin = is_float ? -448.0f : -(float)(1 << (nb - 1)),
                qmax = is_float ? 448.0f : (float)((1 << (nb - 1)) - 1), range = qmax - qmin;
    uint64_t n = q->SR * q->k;
    float *mn = malloc(n * sizeof *mn + 8), *mx = malloc(n * sizeof *mx + 8), *row = malloc(q->C * 4 + 8);
    if (!mn || !mx || !row) {
        free(mn);
        free(mx);
        free(row);
        return -1;
    }
    minmax(wd, x, q, mn, mx, row);
    for (uint64_t j = 0; j < n; j++) {
        float sc, zp = 0.0f;
        if (sym) {
            float m = fabsf(mn[j]) > fabsf(mx[j]) ? fabsf(mn[j]) : fabsf(mx[j]);
            sc = in_dtype(wd, m / (range / 2));
        } else {
            sc = in_dtype(wd, in_dtype(wd, mx[j] - mn[j]) / range);
            zp = in_dtype(wd, qmin - in_dtype(wd, mn[j] / sc));
            zp = zp < qmin ? qmin : zp > qmax ? qmax : zp;   /* NaN stays NaN, as torch.clamp */
        }
        if (sc == 0.0f)
            sc = dtype_eps(wd);
        fstore(wd, scales, j, sc);
        if (zps)
            zps[j] = zp != zp ? 0 : (int8_t)nearbyintf(zp);
    }
    free(mn);
    free(mx);
    free(row);
    return 0;
}

/* The stored quantization parameters of one module (any may be absent). */
typedef struct qparams {
    tref scale, zp, gidx, gscale;
} qparams;

static int oom(ct_err *err) { return ct_fail(err, CT_ENOMEM, "out of memory"); }

/* A quantization parameter in the output: bytes computed here (data), or
 * else the source tensor t of file st, copied as stored. */
static out_t *push_param(outs *o, const ct_st_tensor *t, const ct_st *st, const unsigned char *data)
{
    out_t *p = data ? push_data(o, t->name, t->dtype, t->ndim, t->shape) : push(o, t->name, t->dtype, t->ndim, t->shape);
    if (p && data)
        memcpy(p->data, data, p->nbytes);
    else if (p)
        p->ref = t, p->st = st;
    return p;
}

/* Quantize one module's weight to int or FP8 codes (format note §1.3, §1.4)
 * with the stored parameters, or the observer's when none are stored. */
static int quantize_module(const tref *wr, const char *module, const qparams *qp, const ct_qgroup *g, ct_format fmt,
                           int layout_b, outs *o, ct_err *err)
{
    int rc = 0;
    const ct_st_tensor *w = wr->t;
    unsigned char *x = NULL, *sb = NULL, *zb = NULL, *gb = NULL;
    uint8_t *codes = NULL;
    float *row = NULL;
    char *sname = join(module, ".weight_scale"), *zname = join(module, ".weight_zero_point"), *pn = NULL;
    if (!sname || !zname) {
        rc = oom(err);
        goto out;
    }
    const ct_qargs *a = &g->weights;
    if (w->dtype == CT_F64) {
        rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': quantizing F64 weights is not supported", module);
        goto out;
    }
    if (a->is_float && (a->num_bits != 8 || a->symmetric == 0)) {
        rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': float quantization is symmetric FP8 (8 bits) here, or "
                     "nvfp4-pack-quantized for 4 bits (not %d-bit%s)", module, a->num_bits,
                     a->symmetric == 0 ? " asymmetric" : "");
        goto out;
    }
    int nb = a->num_bits;
    if (nb < 1 || nb > 8) {
        rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': %d-bit integer codes are not supported (1..8 are)", module, nb);
        goto out;
    }
    if (fmt == CT_FMT_PACK && a->is_float) {
        rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': float codes cannot be pack-quantized (use float-quantized)",
                     module);
        goto out;
    }
    uint64_t R = (uint64_t)w->shape[0], C = (uint64_t)w->shape[1];
    int sym = a->symmetric != 0, observed = qp->scale.t == NULL;
    qgeom q;
    const ct_st_tensor *s = qp->scale.t, *z = qp->zp.t, *gx = qp->gidx.t;
    ct_st_tensor s_obs = {0}, z_obs = {0};   /* stand-ins for observed parameters */
    if (observed) {
        if (z || gx) {
            rc = ct_fail(err, CT_EFORMAT, "%s: module '%s' has a zero point or g_idx but no weight_scale",
                         ct_st_path(wr->st), module);
            goto out;
        }
        if ((rc = geometry(module, a, R, C, &q, err)))
            goto out;
        s_obs.name = sname;
        s_obs.dtype = w->dtype;
        s_obs.ndim = a->strategy == CT_STRAT_TENSOR ? 1 : 2;
        s_obs.shape[0] = a->strategy == CT_STRAT_TENSOR ? 1 : (int64_t)q.SR;
        s_obs.shape[1] = (int64_t)q.k;
        s_obs.numel = q.SR * q.k;
        s = &s_obs;
        if (!sym) {
            z_obs = s_obs;
            z_obs.name = zname;
            z_obs.dtype = CT_I8;
            z = &z_obs;
        }
    } else {
        /* the grid the stored scale's shape implies (group size from it
         * when the config leaves it out, as upstream's dequantize infers) */
        ct_qargs b = *a;
        uint64_t k = s->ndim >= 2 ? (uint64_t)s->shape[s->ndim - 1] : 1;
        if (b.strategy == CT_STRAT_GROUP && b.group_size <= 0 && k)
            b.group_size = (int64_t)(C / k);
        if ((rc = geometry(module, &b, R, C, &q, err)))
            goto out;
        uint64_t S0 = s->ndim >= 2 ? (uint64_t)s->shape[0] : 1;
        if (s->numel != q.SR * q.k || (s->ndim >= 2 && (S0 != q.SR || k != q.k)) || (z && z->numel != s->numel)
            || (gx && gx->numel != C)) {
            rc = ct_fail(err, CT_EFORMAT, "module '%s': weight_scale/zero point/g_idx shapes do not fit its %s "
                         "strategy", module, a->strategy == CT_STRAT_TENSOR ? "tensor" : a->strategy == CT_STRAT_CHANNEL
                         ? "channel" : a->strategy == CT_STRAT_BLOCK ? "block" : "group");
            goto out;
        }
        if (!(s->dtype == CT_F32 || s->dtype == CT_BF16 || s->dtype == CT_F16)) {
            rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': weight_scale dtype %s", module, ct_dtype_name(s->dtype));
            goto out;
        }
        if (z && !(z->dtype == CT_I8 || z->dtype == CT_I16 || z->dtype == CT_I32 || z->dtype == CT_I64)) {
            rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': weight_zero_point dtype %s", module,
                         ct_dtype_name(z->dtype));
            goto out;
        }
        if (gx && !(gx->dtype == CT_I32 || gx->dtype == CT_I64)) {
            rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': weight_g_idx dtype %s", module, ct_dtype_name(gx->dtype));
            goto out;
        }
    }
    if ((rc = read_weight(wr->st, w, &x, err)))
        goto out;
    if (observed) {
        sb = calloc(1, s->numel * 4 + 8);
        zb = z ? calloc(1, z->numel + 8) : NULL;
        if (!sb || (z && !zb) || observe(w->dtype, x, &q, nb, a->is_float, sym, sb, (int8_t *)zb)) {
            rc = oom(err);
            goto out;
        }
    } else if ((rc = read_all(qp->scale.st, s, &sb, err)) || (z && (rc = read_all(qp->zp.st, z, &zb, err)))
               || (gx && (rc = read_all(qp->gidx.st, gx, &gb, err)))) {
        goto out;
    }
    const int64_t qmin = -(INT64_C(1) << (nb - 1)), qmax = (INT64_C(1) << (nb - 1)) - 1;
    codes = scratch_get(SCR_CODES, R * C + 8);
    row = malloc(C * sizeof *row + 8);
    if (!codes || !row) {
        rc = oom(err);
        goto out;
    }
    ct_dtype wd = w->dtype;
    size_t es = ct_dtype_bits(wd) / 8;
    /* columns in runs sharing one scale: bw wide, or single columns with g_idx */
    uint64_t run = gx ? 1 : q.bw;
    for (uint64_t r = 0; r < R; r++) {
        load_row(wd, x + r * C * es, C, row);
        uint8_t *cr = codes + r * C;
        for (uint64_t c0 = 0; c0 < C; c0 += run) {
            uint64_t end = c0 + run < C ? c0 + run : C, j = c0 / q.bw;
            if (gx) {
                int64_t gi = ival(gx->dtype, gb, c0);
                if (gi < 0 || (uint64_t)gi >= q.k) {
                    rc = ct_fail(err, CT_EFORMAT, "module '%s': weight_g_idx[%" PRIu64 "] = %" PRId64 " is out of "
                                 "range", module, c0, gi);
                    goto out;
                }
                j = (uint64_t)gi;
            }
            uint64_t si = (r / q.bh) * q.k + j;
            const float sc = fval(s->dtype, sb, si), zp = zb ? (float)ival(z->dtype, zb, si) : 0.0f;
            if (a->is_float) {
                for (uint64_t c = c0; c < end; c++) {
                    float t = in_dtype(wd, row[c] / sc);
                    /* clamp to the FP8 range, then round to nearest even E4M3 */
                    t = t < -448.0f ? -448.0f : t > 448.0f ? 448.0f : t;
                    cr[c] = ct_f32_to_f8e4m3(t);
                }
            } else {
                for (uint64_t c = c0; c < end; c++) {
                    float t = in_dtype(wd, row[c] / sc);
                    if (zb)
                        t = in_dtype(wd, t + zp);
                    /* A NaN (a NaN or infinite weight, or scale) becomes 0: converting
                     * it to an integer is undefined in C, and 0 is what upstream's
                     * .to(int8) gives on x86 (cvttss2si's 0x80000000, low byte). */
                    t = t != t ? 0.0f : t < (float)qmin ? (float)qmin : t > (float)qmax ? (float)qmax : t;
                    cr[c] = (uint8_t)((int64_t)nearbyintf(t) - qmin);   /* round half to even */
                }
            }
        }
    }
    int64_t shp[2] = {(int64_t)R, (int64_t)C};
    if (fmt == CT_FMT_PACK) {
        uint64_t W = packed_words(C, nb, layout_b);
        int64_t pshape[2] = {(int64_t)R, (int64_t)W}, two[1] = {2};
        out_t *p = (pn = join(module, ".weight_packed")) ? push_data(o, pn, CT_I32, 2, pshape) : NULL;
        char *wsn = join(module, ".weight_shape");
        out_t *ws = p && wsn ? push_data(o, wsn, CT_I64, 1, two) : NULL;
        free(wsn);
        if (!ws) {
            rc = oom(err);
            goto out;
        }
        for (uint64_t r = 0; r < R; r++)
            pack_row(codes + r * C, C, nb, layout_b, (uint32_t *)p->data + r * W);
        memcpy(ws->data, shp, 16);
    } else {
        out_t *qo = (pn = join(module, ".weight")) ? push_data(o, pn, a->is_float ? CT_F8_E4M3 : CT_I8, 2, shp) : NULL;
        if (!qo) {
            rc = oom(err);
            goto out;
        }
        for (uint64_t i = 0; i < R * C; i++)
            qo->data[i] = a->is_float ? codes[i] : (unsigned char)(int8_t)((int64_t)codes[i] + qmin);
    }
    /* qparams: scale as stored; zero point only when asymmetric (packed
     * along rows for pack-quantized group/channel/block); g_idx as stored
     * when activation ordering is on */
    if (!push_param(o, s, qp->scale.st, observed ? sb : NULL)) {
        rc = oom(err);
        goto out;
    }
    if (z && !sym && fmt == CT_FMT_PACK && a->strategy != CT_STRAT_TENSOR) {
        uint64_t ZR = q.SR, Wz = packed_words(ZR, nb, layout_b);
        int64_t zshape[2] = {(int64_t)Wz, (int64_t)q.k};
        out_t *zo = push_data(o, z->name, CT_I32, 2, zshape);
        uint8_t *col = malloc(ZR + 8);
        uint32_t *words = calloc(Wz + 2, sizeof *words);
        if (!zo || !col || !words) {
            free(col);
            free(words);
            rc = oom(err);
            goto out;
        }
        for (uint64_t j = 0; j < q.k; j++) {
            for (uint64_t r = 0; r < ZR; r++)
                col[r] = (uint8_t)(ival(z->dtype, zb, r * q.k + j) - qmin);
            memset(words, 0, (Wz + 2) * sizeof *words);
            pack_row(col, ZR, nb, layout_b, words);
            for (uint64_t wz = 0; wz < Wz; wz++)
                memcpy(zo->data + (wz * q.k + j) * 4, &words[wz], 4);
        }
        free(col);
        free(words);
    } else if (z && !sym && !push_param(o, z, qp->zp.st, observed ? zb : NULL)) {
        rc = oom(err);
        goto out;
    }
    if (gx && a->actorder) {
        out_t *go = push(o, gx->name, gx->dtype, gx->ndim, gx->shape);
        if (!go) {
            rc = oom(err);
            goto out;
        }
        go->ref = gx, go->st = qp->gidx.st;
    }
out:
    free(sb);
    free(zb);
    free(gb);

    free(row);
    free(pn);
    free(sname);
    free(zname);
    return rc;
}

/* E2M1 code of a float32 quotient already clamped to [-6, 6]: upstream's
 * thresholds (ties to the even code), sign from "< 0" (torch.sign, so -0.0
 * gives code 0 and a negative value rounding to 0 gives code 8). */
static inline uint8_t fp4_code(float t)
{
    float m = fabsf(t);
    uint8_t i = (uint8_t)((m > 0.25f) + (m >= 0.75f) + (m > 1.25f) + (m >= 1.75f) + (m > 2.5f) + (m >= 3.5f) + (m > 5.0f));
    return (uint8_t)(i | (t < 0.0f) << 3);
}

/* absmax of a weight, as upstream's observers see it (weight dtype values) */
static int weight_absmax(const tref *wr, float *out, ct_err *err)
{
    unsigned char *x;
    int rc = read_weight(wr->st, wr->t, &x, err);
    if (rc)
        return rc;
    uint64_t R = (uint64_t)wr->t->shape[0], C = (uint64_t)wr->t->shape[1];
    qgeom whole = {R, C, 1, 1, R ? R : 1, C ? C : 1};
    float *row = malloc(C * 4 + 8), mn, mx;
    if (!row)
        return oom(err);
    minmax(wr->t->dtype, x, &whole, &mn, &mx, row);
    free(row);
    *out = fmaxf(-mn, mx);
    return 0;
}

/* generate_gparam: 448 * 6 / max(absmax, tiny) in the weight dtype, then
 * float32; NaN or infinity become 1. */
static float nvfp4_global_scale(ct_dtype wd, float absmax)
{
    float tiny = wd == CT_F16 ? 0x1p-14f : 0x1p-126f;
    float g = in_dtype(wd, 2688.0f / (absmax > tiny ? absmax : tiny));
    return isfinite(g) ? g : 1.0f;
}

/* NVFP4 (§2.7): E2M1 codes in nibbles (even column low), FP8 group-of-16
 * scales and a float32 global scale.  Stored parameters (weight_scale and
 * weight_global_scale) are used as given; otherwise upstream's observer:
 * global = generate_gparam(absmax) (shared by fused q/k/v and gate/up
 * siblings: fused_gscale), per group s = fp8(clamp(global * (amax / 6))),
 * zero scales replaced by 0.125; codes from x / (s / global) in float32. */
static int nvfp4_module(const tref *wr, const char *module, const qparams *qp, const ct_qgroup *g, float fused_gscale,
                        outs *o, ct_err *err)
{
    int rc = 0;
    const ct_st_tensor *w = wr->t;
    const ct_qargs *a = &g->weights;
    unsigned char *x = NULL, *sb = NULL, *gsb = NULL;
    float *row = NULL, *mn = NULL, *mx = NULL;
    char *n1 = join(module, ".weight_packed"), *n2 = join(module, ".weight_scale"),
         *n3 = join(module, ".weight_global_scale");
    uint64_t R = (uint64_t)w->shape[0], C = (uint64_t)w->shape[1];
    if (!n1 || !n2 || !n3) {
        rc = oom(err);
        goto out;
    }
    if (a->num_bits != 4 || !a->is_float || a->symmetric == 0 || a->group_size != 16) {
        rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': nvfp4-pack-quantized needs symmetric 4-bit float weights in "
                     "groups of 16", module);
        goto out;
    }
    if (w->dtype == CT_F64) {
        rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': quantizing F64 weights is not supported", module);
        goto out;
    }
    if (C % 16) {
        rc = ct_fail(err, CT_EFORMAT, "module '%s': %" PRIu64 " columns are not divisible by the NVFP4 group size 16",
                     module, C);
        goto out;
    }
    uint64_t k = C / 16;
    const ct_st_tensor *s = qp->scale.t, *gs = qp->gscale.t;
    if ((s != NULL) != (gs != NULL) || qp->zp.t || qp->gidx.t) {
        rc = ct_fail(err, CT_EFORMAT, "%s: module '%s': NVFP4 needs both weight_scale and weight_global_scale (and "
                     "no zero point or g_idx)", ct_st_path(wr->st), module);
        goto out;
    }
    if (s && (s->numel != R * k || gs->numel != 1 || !(is_float(s->dtype) || s->dtype == CT_F8_E4M3)
              || !is_float(gs->dtype))) {
        rc = ct_fail(err, CT_EFORMAT, "module '%s': weight_scale must be [%" PRIu64 ", %" PRIu64 "] and "
                     "weight_global_scale [1], both floating point", module, R, k);
        goto out;
    }
    int64_t pshape[2] = {(int64_t)R, (int64_t)(C / 2)}, sshape[2] = {(int64_t)R, (int64_t)k}, one[1] = {1};
    out_t *po = push_data(o, n1, CT_U8, 2, pshape), *so = po ? push_data(o, n2, CT_F8_E4M3, 2, sshape) : NULL;
    out_t *go = so ? (gs ? push(o, n3, gs->dtype, gs->ndim, gs->shape) : push_data(o, n3, CT_F32, 1, one)) : NULL;
    row = malloc(C * 4 + 8);
    if (!go || !row) {
        rc = oom(err);
        goto out;
    }
    if ((rc = read_weight(wr->st, w, &x, err)))
        goto out;
    ct_dtype wd = w->dtype;
    size_t es = ct_dtype_bits(wd) / 8;
    float global;
    if (s) {
        if ((rc = read_all(qp->scale.st, s, &sb, err)) || (rc = read_all(qp->gscale.st, gs, &gsb, err)))
            goto out;
        global = fval(gs->dtype, gsb, 0);
        for (uint64_t i = 0; i < R * k; i++)
            so->data[i] = s->dtype == CT_F8_E4M3 ? sb[i] : ct_f32_to_f8e4m3(fval(s->dtype, sb, i));
        go->ref = gs, go->st = qp->gscale.st;
    } else {
        qgeom q = {R, C, R, k, 1, 16};
        mn = malloc(R * k * sizeof *mn + 8);
        mx = malloc(R * k * sizeof *mx + 8);
        if (!mn || !mx) {
            rc = oom(err);
            goto out;
        }
        minmax(wd, x, &q, mn, mx, row);
        if (fused_gscale == fused_gscale) {
            global = fused_gscale;
        } else {
            float am = 0.0f;
            for (uint64_t j = 0; j < R * k; j++) {
                float m = fmaxf(-mn[j], mx[j]);
                am = m > am ? m : am;
            }
            global = nvfp4_global_scale(wd, am);
        }
        for (uint64_t j = 0; j < R * k; j++) {
            float amax = fmaxf(-mn[j], mx[j]);
            float sc = global * in_dtype(wd, amax / 6.0f);
            sc = sc < -448.0f ? -448.0f : sc > 448.0f ? 448.0f : sc;
            uint8_t f8 = ct_f32_to_f8e4m3(sc);
            so->data[j] = (f8 & 0x7f) == 0 ? 0x20 : f8;   /* 0 -> 0.125 (FP8 "eps") */
        }
        memcpy(go->data, &global, 4);
    }
    for (uint64_t r = 0; r < R; r++) {
        load_row(wd, x + r * C * es, C, row);
        unsigned char *pr = po->data + r * (C / 2);
        for (uint64_t j = 0; j < k; j++) {
            const float se = ct_f8e4m3_to_f32(so->data[r * k + j]) / global;
            for (uint64_t c = j * 16; c < j * 16 + 16; c += 2) {
                float t0 = row[c] / se, t1 = row[c + 1] / se;
                t0 = t0 < -6.0f ? -6.0f : t0 > 6.0f ? 6.0f : t0;
                t1 = t1 < -6.0f ? -6.0f : t1 > 6.0f ? 6.0f : t1;
                pr[c / 2] = (unsigned char)(fp4_code(t0) | fp4_code(t1) << 4);
            }
        }
    }
out:
    free(sb);
    free(gsb);
    free(row);
    free(mn);
    free(mx);
    free(n1);
    free(n2);
    free(n3);
    return rc;
}

/* IEEE "x != 0" on the bytes of a float element: -0.0 is zero, NaN is not. */
static int is_zero(ct_dtype dt, const unsigned char *p)
{
    switch (dt) {
    case CT_I8: return *p == 0;
    case CT_F8_E4M3: return (*p & 0x7f) == 0;
    case CT_BF16: case CT_F16: return (ct_load_le16(p) & 0x7fff) == 0;
    case CT_F32: return (ct_load_le32(p) & 0x7fffffffu) == 0;
    default: return (ct_load_le64(p) & 0x7fffffffffffffffull) == 0;
    }
}

/* The weight a sparse compressor works on: a stored tensor, or (sparsity
 * stacked on quantization) the codes quantize_module made. */
typedef struct wview {
    ct_dtype dtype;
    int ndim;
    const int64_t *shape;
    uint64_t numel;
} wview;

static int sparse_codes(const char *module, const wview *w, const unsigned char *x, outs *o, ct_err *err);

/* sparse-bitmask of one weight (§2.2, 0.9+ naming). */
static int sparse_module(const ct_st *st, const char *module, const ct_st_tensor *t, outs *o, ct_err *err)
{
    unsigned char *x;
    int rc = read_weight(st, t, &x, err);
    wview w = {t->dtype, t->ndim, t->shape, t->numel};
    return rc ? rc : sparse_codes(module, &w, x, o, err);
}

static int sparse_codes(const char *module, const wview *w, const unsigned char *x, outs *o, ct_err *err)
{
    int rc = 0;
    size_t es = ct_dtype_bits(w->dtype) / 8;
    uint64_t C = w->ndim ? (uint64_t)w->shape[w->ndim - 1] : 1, rows = C ? w->numel / C : 0, mb = (C + 7) / 8;
    uint64_t nnz = 0;
    if (es == 2) {
        const uint16_t *p = (const uint16_t *)x;
        for (uint64_t i = 0; i < w->numel; i++)
            nnz += (p[i] & 0x7fff) != 0;
    } else {
        for (uint64_t i = 0; i < w->numel; i++)
            nnz += !is_zero(w->dtype, x + i * es);
    }
    char *n1 = join(module, ".compressed"), *n2 = join(module, ".bitmask"), *n3 = join(module, ".shape"),
         *n4 = join(module, ".row_offsets");
    int64_t vshape[1] = {(int64_t)nnz}, bshape[CT_MAX_DIMS], sshape[1] = {w->ndim};
    memcpy(bshape, w->shape, sizeof bshape);
    if (w->ndim)
        bshape[w->ndim - 1] = (int64_t)mb;
    out_t *v = n1 ? push_data(o, n1, w->dtype, 1, vshape) : NULL;
    out_t *bm = v && n2 ? push_data(o, n2, CT_U8, w->ndim, bshape) : NULL;
    out_t *sh = bm && n3 ? push_data(o, n3, CT_I64, 1, sshape) : NULL;
    out_t *ro = sh && n4 ? push_data(o, n4, CT_I64, w->ndim > 0 ? w->ndim - 1 : 0, w->shape) : NULL;
    if (!ro) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
    } else {
        memcpy(sh->data, w->shape, 8 * (size_t)w->ndim);
        uint64_t k = 0;
        int64_t *rop = (int64_t *)ro->data;
        for (uint64_t r = 0; r < rows; r++) {
            /* row_offsets: for 2-D the exclusive prefix sum per row */
            if (w->ndim == 2)
                rop[r] = (int64_t)k;
            if (es == 2) {
                /* BF16/F16: the common case, without per-element calls */
                const uint16_t *p = (const uint16_t *)(x + r * C * 2);
                uint16_t *dv = (uint16_t *)v->data;
                unsigned char *bmr = bm->data + r * mb;
                for (uint64_t c = 0; c < C; c++) {
                    unsigned nz = (p[c] & 0x7fff) != 0;
                    bmr[c / 8] |= (unsigned char)(nz << (c % 8));
                    dv[k] = p[c];
                    k += nz;
                }
                continue;
            }
            for (uint64_t c = 0; c < C; c++) {
                const unsigned char *p = x + (r * C + c) * es;
                int zero = is_zero(w->dtype, p);
                if (!zero) {
                    bm->data[r * mb + c / 8] |= (unsigned char)(1u << (c % 8));
                    memcpy(v->data + k * es, p, es);
                    k++;
                }
            }
        }
    }
    free(n1);
    free(n2);
    free(n3);
    free(n4);

    return rc;
}

/* Which 2 of 4 elements upstream's 2:4 compressor keeps: torch.topk(2) on
 * CPU runs std::nth_element (libstdc++ introselect) over (value, index)
 * pairs with "NaN first, then greater"; emulated step by step so ties
 * break exactly as upstream's do.  Returns a 4-bit mask. */
typedef struct { double v; int nan, i; } tk;

static int tk_greater(const tk *x, const tk *y) { return (x->nan && !y->nan) || x->v > y->v; }
static void tk_swap(tk *a, tk *b) { tk t = *a; *a = *b; *b = t; }

static unsigned keep_two_of_four(const double v[4])
{
    tk q[4];
    for (int i = 0; i < 4; i++) {
        q[i].v = v[i];
        q[i].nan = v[i] != v[i];
        q[i].i = i;
    }
    int first = 0, last = 4, nth = 1;
    while (last - first > 3) {
        /* __unguarded_partition_pivot: median of (first+1, mid, last-1) to first */
        int a = first + 1, b = first + (last - first) / 2, c = last - 1;
        if (tk_greater(&q[a], &q[b])) {
            if (tk_greater(&q[b], &q[c])) tk_swap(&q[first], &q[b]);
            else if (tk_greater(&q[a], &q[c])) tk_swap(&q[first], &q[c]);
            else tk_swap(&q[first], &q[a]);
        } else if (tk_greater(&q[a], &q[c])) tk_swap(&q[first], &q[a]);
        else if (tk_greater(&q[b], &q[c])) tk_swap(&q[first], &q[c]);
        else tk_swap(&q[first], &q[b]);
        int lo = first + 1, hi = last;
        for (;;) {
            while (tk_greater(&q[lo], &q[first])) lo++;
            hi--;
            while (tk_greater(&q[first], &q[hi])) hi--;
            if (!(lo < hi))
                break;
            tk_swap(&q[lo], &q[hi]);
            lo++;
        }
        if (lo <= nth)
            first = lo;
        else
            last = lo;
    }
    /* __insertion_sort(first, last) */
    for (int i = first + 1; i < last; i++) {
        tk val = q[i];
        if (tk_greater(&val, &q[first])) {
            for (int j = i; j > first; j--)
                q[j] = q[j - 1];
            q[first] = val;
        } else {
            int j = i;
            while (tk_greater(&val, &q[j - 1])) {
                q[j] = q[j - 1];
                j--;
            }
            q[j] = val;
        }
    }
    return (1u << q[0].i) | (1u << q[1].i);
}

/* sparse-24-bitmask of one 2-D weight (§2.3): exactly two kept per group of
 * four, by magnitude (FP8 by the magnitude of its int8 view, as upstream). */
static int sparse24_codes(const char *module, const wview *w, const unsigned char *x, outs *o, ct_err *err);

static int sparse24_module(const ct_st *st, const char *module, const ct_st_tensor *t, outs *o, ct_err *err)
{
    unsigned char *x;
    int rc = read_weight(st, t, &x, err);
    wview w = {t->dtype, t->ndim, t->shape, t->numel};
    return rc ? rc : sparse24_codes(module, &w, x, o, err);
}

static int sparse24_codes(const char *module, const wview *w, const unsigned char *x, outs *o, ct_err *err)
{
    uint64_t R = (uint64_t)w->shape[0], C = (uint64_t)w->shape[1];
    if (C % 4)
        return ct_fail(err, CT_EFORMAT, "module '%s': 2:4 sparsity needs a multiple of 4 columns (has %" PRIu64 ")",
                       module, C);
    int rc = 0;
    size_t es = ct_dtype_bits(w->dtype) / 8;
    uint64_t mb = (C + 7) / 8;
    char *n1 = join(module, ".compressed"), *n2 = join(module, ".bitmask"), *n3 = join(module, ".shape");
    int64_t vshape[2] = {(int64_t)R, (int64_t)(C / 2)}, bshape[2] = {(int64_t)R, (int64_t)mb}, sshape[2] = {2, 1};
    out_t *v = n1 ? push_data(o, n1, w->dtype, 2, vshape) : NULL;
    out_t *bm = v && n2 ? push_data(o, n2, CT_U8, 2, bshape) : NULL;
    out_t *sh = bm && n3 ? push_data(o, n3, CT_I64, 2, sshape) : NULL;
    if (!sh) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
    } else {
        int64_t dims[2] = {(int64_t)R, (int64_t)C};
        memcpy(sh->data, dims, 16);
        uint64_t k = 0;
        for (uint64_t r = 0; r < R; r++)
            for (uint64_t g = 0; g < C; g += 4) {
                double a[4];
                for (int j = 0; j < 4; j++) {
                    const unsigned char *p = x + (r * C + g + (uint64_t)j) * es;
                    if (w->dtype == CT_F8_E4M3 || w->dtype == CT_I8) {   /* FP8 ranked by its int8 view */
                        int8_t iv = (int8_t)*p;
                        a[j] = iv == -128 ? -128 : (iv < 0 ? -iv : iv);   /* torch.abs on int8 wraps */
                    } else {
                        a[j] = fabs((double)fval(w->dtype, x, r * C + g + (uint64_t)j));
                    }
                }
                unsigned m = keep_two_of_four(a);
                for (int j = 0; j < 4; j++)
                    if (m >> j & 1) {
                        uint64_t c = g + (uint64_t)j;
                        bm->data[r * mb + c / 8] |= (unsigned char)(1u << (c % 8));
                        memcpy(v->data + k * es, x + (r * C + c) * es, es);
                        k++;
                    }
            }
    }
    free(n1);
    free(n2);
    free(n3);

    return rc;
}

/* ------------------------------------------------------------- pipeline
 *
 * plan:  every source shard's header is read; each targeted 2-D float
 *        `.weight` becomes a module unit (with its stored qparams found in
 *        any shard), every other tensor a pass-through unit, in source order.
 * work:  -j threads take module units one at a time, build the outputs in
 *        memory and park their bytes in an unlinked spill file next to DST;
 *        so memory stays at a few times one tensor per thread.
 * emit:  the output files (one per source shard, or --shard-size pieces)
 *        are laid out as upstream's safetensors writer does and filled from
 *        the spill file and, for pass-through tensors, the source. */

enum { U_PASS = 0, U_QUANT, U_NVFP4, U_SPARSE, U_SPARSE24 };

typedef struct unit {
    int kind;
    size_t shard;               /* source shard holding the tensor */
    tref w;                     /* the weight, or the pass-through tensor */
    char *module;
    const ct_qgroup *g;
    ct_format fmt;
    qparams qp;
    float gscale;               /* fused NVFP4 global scale, or NaN */
    int stacked;                /* U_SPARSE or U_SPARSE24 applied to the codes after quantization, or 0 */
} unit;

typedef struct job {
    const ct_compress_opts *opt;
    ct_config *cfg;
    int layout_b;
    char *qc;                   /* quantization_config JSON for __metadata__ */
    size_t nsh;
    char **shard_names;         /* source shard file names (directories) */
    ct_st **st;
    cJSON *index_meta;          /* the source index's "metadata", or NULL */
    /* A compressed source is read through its dense view: st[s] then
     * parses view s's header and reads from it (transcoding). */
    ct_source *vsrc;
    ct_view **views;
    size_t left_out;            /* activation/kv-cache parameters the config does not use */
    unit *u;
    size_t nu, next;
    outs out;
    pthread_mutex_t mu;
    int spill_fd;
    uint64_t spill_end;
    int rc;
    ct_err err;
    size_t units_done, units_total;
    uint64_t bytes_done, bytes_total;
} job;

static void report(job *j)
{
    if (j->opt->progress)
        j->opt->progress(j->opt->progress_ctx, j->units_done, j->units_total, j->bytes_done, j->bytes_total);
}

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* A tensor by name: in shard `pref` first, then in any shard. */
static tref find_any(const job *j, size_t pref, const char *name)
{
    tref r = {0};
    long i = ct_st_find(j->st[pref], name);
    if (i >= 0) {
        r.st = j->st[pref];
        r.t = ct_st_get(r.st, (size_t)i);
        return r;
    }
    for (size_t s = 0; s < j->nsh; s++)
        if (s != pref && (i = ct_st_find(j->st[s], name)) >= 0) {
            r.st = j->st[s];
            r.t = ct_st_get(r.st, (size_t)i);
            break;
        }
    return r;
}

static size_t shard_of(const job *j, const ct_st *st)
{
    for (size_t s = 0; s < j->nsh; s++)
        if (j->st[s] == st)
            return s;
    return 0;
}

/* Sibling groups whose NVFP4 global scale upstream (llm-compressor) fuses,
 * because vLLM loads them as one fused layer. */
static const char *const fused_sets[][4] = {
    {"gate_proj", "up_proj", NULL}, {"q_proj", "k_proj", "v_proj", NULL},
    {"q_a_proj", "kv_a_proj_with_mqa", NULL}, {"w1", "w3", NULL},
};

/* Fused global scales: for each complete sibling set of observed NVFP4
 * modules, one scale from the largest magnitude over the set. */
static int fuse_global_scales(job *j, ct_strmap *by_module, ct_err *err)
{
    for (size_t i = 0; i < j->nu; i++) {
        unit *u = &j->u[i];
        if (u->kind != U_NVFP4 || u->qp.scale.t || u->gscale == u->gscale)
            continue;
        const char *dot = strrchr(u->module, '.'), *leaf = dot ? dot + 1 : u->module;
        size_t plen = (size_t)(leaf - u->module);
        for (size_t f = 0; f < sizeof fused_sets / sizeof fused_sets[0]; f++) {
            size_t members[4], n = 0, hit = 0;
            for (size_t m = 0; fused_sets[f][m]; m++)
                hit |= !strcmp(fused_sets[f][m], leaf);
            if (!hit)
                continue;
            int complete = 1;
            for (size_t m = 0; fused_sets[f][m] && complete; m++) {
                size_t ll = strlen(fused_sets[f][m]), ui;
                char *name = malloc(plen + ll + 1);
                if (!name)
                    return oom(err);
                memcpy(name, u->module, plen);
                memcpy(name + plen, fused_sets[f][m], ll + 1);
                complete = ct_strmap_get(by_module, name, &ui) && j->u[ui].kind == U_NVFP4 && !j->u[ui].qp.scale.t;
                if (complete)
                    members[n++] = ui;
                free(name);
            }
            if (!complete)
                break;
            float am = 0.0f;
            for (size_t m = 0; m < n; m++) {
                float v = 0.0f;
                int rc = weight_absmax(&j->u[members[m]].w, &v, err);
                if (rc)
                    return rc;
                am = v > am ? v : am;
            }
            float g = nvfp4_global_scale(u->w.t->dtype, am);
            for (size_t m = 0; m < n; m++)
                j->u[members[m]].gscale = g;
            break;
        }
    }
    return 0;
}

/* The next work unit (j->u has room for every tensor). */
static unit *new_unit(job *j, int kind, size_t shard, const ct_st_tensor *t)
{
    unit *u = &j->u[j->nu++];
    u->kind = kind;
    u->shard = shard;
    u->w.st = j->st[shard];
    u->w.t = t;
    u->gscale = NAN;
    return u;
}

/* Whether a stored tensor that is an activation or kv-cache quantization
 * parameter belongs in the output (*keep; other tensors always do): a
 * module's input_* only if its group quantizes inputs with stored
 * parameters, output_* likewise, k/v/q_scale only with a kv_cache_scheme.
 * Upstream writes a model's parameters, and a model quantized with this
 * config has no others (a loader may reject names it does not expect); a dense
 * source may carry them from an earlier calibration, a converted one from
 * its old config. */
static int activation_param_kept(const ct_config *cfg, const char *name, int *keep, ct_err *err)
{
    enum { IN, OUT, KV };
    static const struct { const char *suffix; int kind; } params[] = {
        {".input_scale", IN}, {".input_zero_point", IN}, {".input_global_scale", IN},
        {".output_scale", OUT}, {".output_zero_point", OUT},
        {".k_scale", KV}, {".v_scale", KV}, {".q_scale", KV},
    };
    for (size_t k = 0; k < sizeof params / sizeof params[0]; k++) {
        if (!has_suffix(name, params[k].suffix))
            continue;
        if (params[k].kind == KV) {
            *keep = cfg->has_kv_cache_scheme;
            return 0;
        }
        char *module = strndup(name, strlen(name) - strlen(params[k].suffix));
        if (!module)
            return oom(err);
        const ct_qgroup *g = ct_config_group_for(cfg, module);
        *keep = g && (params[k].kind == IN ? g->input_param != NULL : g->static_output);
        free(module);
        return 0;
    }
    return 0;
}

static int plan(job *j, ct_err *err)
{
    int rc = 0;
    ct_config *cfg = j->cfg;
    /* the targets and ignore lists decide what is compressed: a pattern
     * that cannot be matched must not silently select nothing */
    const char *bad = ct_config_bad_pattern(cfg);
    if (bad)
        return ct_fail(err, CT_EUNSUPPORTED, "compression config: '%s' is not a regular expression "
                       "mkct can match (POSIX extended, with Python's \\d \\w \\s and (?:...))", bad);
    ct_strmap **used = calloc(j->nsh, sizeof *used), *by_module = NULL;
    size_t total = 0;
    for (size_t s = 0; s < j->nsh; s++)
        total += ct_st_count(j->st[s]);
    if (!used || !(j->u = calloc(total + 1, sizeof *j->u)) || !(by_module = ct_strmap_new(total + 1))) {
        rc = oom(err);
        goto out;
    }
    for (size_t s = 0; s < j->nsh; s++)
        if (!(used[s] = ct_strmap_new(ct_st_count(j->st[s]) + 1))) {
            rc = oom(err);
            goto out;
        }
    /* modules first (they claim their qparams, wherever those sit) */
    size_t nmod = 0;
    for (size_t s = 0; s < j->nsh && !rc; s++)
        for (size_t i = 0; i < ct_st_count(j->st[s]) && !rc; i++) {
            const ct_st_tensor *t = ct_st_get(j->st[s], i);
            size_t len = strlen(t->name);
            if (!has_suffix(t->name, ".weight") || len == 7 || t->ndim != 2 || !is_float(t->dtype))
                continue;
            char *module = strndup(t->name, len - 7);
            if (!module) {
                rc = oom(err);
                break;
            }
            const ct_qgroup *g = ct_config_group_for(cfg, module);
            ct_format fmt = g && g->format ? g->format : cfg->format;
            int sparse = 0, kind = U_PASS;
            if (cfg->has_sparsity && (cfg->sparse_format == CT_FMT_SPARSE_BITMASK || cfg->sparse_format == CT_FMT_SPARSE_24)) {
                int ign = 0, tgt = cfg->sparse_targets_null;
                for (size_t k = 0; k < cfg->n_sparse_ignore; k++)
                    ign |= ct_target_match_rx(cfg->sparse_ignore[k], cfg->sparse_ignore_rx[k], module, 0) == 1;
                for (size_t k = 0; k < cfg->n_sparse_targets; k++)
                    tgt |= ct_target_match_rx(cfg->sparse_targets[k], cfg->sparse_targets_rx[k], module, 1) == 1;
                sparse = tgt && !ign;
            } else if (cfg->has_sparsity) {
                rc = ct_fail(err, CT_EUNSUPPORTED, "writing %s is not supported (sparse-bitmask and "
                             "sparse-24-bitmask are)", ct_format_name(cfg->sparse_format));
            }
            /* Sparsity stacked on quantization (note 2.9): upstream
             * compresses again the codes int-, float- and naive-quantized
             * leave in .weight; packed formats leave none, and there the
             * sparsity entry is informational. */
            int stacked = sparse && (fmt == CT_FMT_INT || fmt == CT_FMT_FLOAT || fmt == CT_FMT_NAIVE)
                          ? (cfg->sparse_format == CT_FMT_SPARSE_24 ? U_SPARSE24 : U_SPARSE) : 0;
            if (!rc && g && g->has_weights) {
                if (fmt == CT_FMT_NVFP4)
                    kind = U_NVFP4;
                else if (fmt == CT_FMT_PACK || fmt == CT_FMT_INT || fmt == CT_FMT_NAIVE || fmt == CT_FMT_FLOAT)
                    kind = U_QUANT;
                else
                    rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': writing %s is not supported", module,
                                 ct_format_name(fmt));
            } else if (!rc && sparse) {
                kind = cfg->sparse_format == CT_FMT_SPARSE_24 ? U_SPARSE24 : U_SPARSE;
            }
            if (rc || kind == U_PASS) {
                free(module);
                continue;
            }
            unit *u = new_unit(j, kind, s, t);
            u->module = module;
            u->g = g;
            u->fmt = fmt;
            u->stacked = kind == U_QUANT ? stacked : 0;
            ct_strmap_put(used[s], t->name, 1);
            ct_strmap_put(by_module, module, j->nu - 1);
            nmod++;
            if (kind != U_QUANT && kind != U_NVFP4)
                continue;
            static const char *const pn[4] = {".weight_scale", ".weight_zero_point", ".weight_g_idx",
                                              ".weight_global_scale"};
            tref *slot[4] = {&u->qp.scale, &u->qp.zp, &u->qp.gidx, &u->qp.gscale};
            for (int p = 0; p < 4 && !rc; p++) {
                char *n = join(module, pn[p]);
                if (!n) {
                    rc = oom(err);
                    break;
                }
                *slot[p] = find_any(j, s, n);
                if (slot[p]->t)
                    ct_strmap_put(used[shard_of(j, slot[p]->st)], slot[p]->t->name, 1);
                free(n);
            }
            if (!rc && g->input_param) {
                /* static activation scales come from calibration: the
                 * source must hold them (they pass through) */
                char *n = join(module, ".");
                char *n2 = n ? join(n, g->input_param) : NULL;
                if (!n2)
                    rc = oom(err);
                else if (!find_any(j, s, n2).t)
                    rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': the scheme's static activation quantization "
                                 "needs a calibrated '%s', which the source does not hold (calibration needs data; "
                                 "use a scheme with dynamic activations, e.g. FP8_DYNAMIC or NVFP4A16)", module, n2);
                free(n);
                free(n2);
            }
        }
    if (rc)
        goto out;
    /* then everything else, in source order, but activation and kv-cache
     * parameters the config does not quantize with */
    for (size_t s = 0; s < j->nsh && !rc; s++)
        for (size_t i = 0; i < ct_st_count(j->st[s]) && !rc; i++) {
            const ct_st_tensor *t = ct_st_get(j->st[s], i);
            if (ct_strmap_get(used[s], t->name, NULL))
                continue;
            int keep = 1;
            if ((rc = activation_param_kept(cfg, t->name, &keep, err)))
                break;
            if (!keep) {
                j->left_out++;
                continue;
            }
            new_unit(j, U_PASS, s, t);
        }
    if (rc)
        goto out;
    j->units_total = j->nu;
    for (size_t i = 0; i < j->nu; i++)
        j->bytes_total += j->u[i].w.t->end - j->u[i].w.t->begin;
    rc = fuse_global_scales(j, by_module, err);
    scratch_release();
out:
    for (size_t s = 0; used && s < j->nsh; s++)
        ct_strmap_free(used[s]);
    free(used);
    ct_strmap_free(by_module);
    return rc;
}

/* Sparsity stacked on quantization: the module's .weight codes among the
 * outputs from index first are replaced by their sparse pieces. */
static int stack_sparsity(const unit *u, outs *o, size_t first, ct_err *err)
{
    char *name = join(u->module, ".weight");
    if (!name)
        return oom(err);
    size_t i = first;
    while (i < o->n && strcmp(o->v[i].name, name))
        i++;
    free(name);
    if (i == o->n)
        return 0;
    out_t codes = o->v[i];   /* (pushing may move o->v) */
    wview w = {codes.dtype, codes.ndim, codes.shape, codes.ndim == 2 ? (uint64_t)(codes.shape[0] * codes.shape[1]) : 0};
    int rc = codes.ndim != 2 ? ct_fail(err, CT_EFORMAT, "module '%s': sparsity needs a 2-D weight", u->module)
             : u->stacked == U_SPARSE24 ? sparse24_codes(u->module, &w, codes.data, o, err)
                                        : sparse_codes(u->module, &w, codes.data, o, err);
    free(codes.name);
    free(codes.data);
    memmove(&o->v[i], &o->v[i + 1], (o->n - i - 1) * sizeof *o->v);
    o->n--;
    return rc;
}

static int run_unit(const job *j, const unit *u, outs *o, ct_err *err)
{
    switch (u->kind) {
    case U_QUANT: {
        size_t first = o->n;
        int rc = quantize_module(&u->w, u->module, &u->qp, u->g, u->fmt, j->layout_b, o, err);
        return rc || !u->stacked ? rc : stack_sparsity(u, o, first, err);
    }
    case U_NVFP4: return nvfp4_module(&u->w, u->module, &u->qp, u->g, u->gscale, o, err);
    case U_SPARSE: return sparse_module(u->w.st, u->module, u->w.t, o, err);
    case U_SPARSE24: return sparse24_module(u->w.st, u->module, u->w.t, o, err);
    default: return 0;
    }
}

static void free_outs(outs *o)
{
    for (size_t i = 0; i < o->n; i++) {
        free(o->v[i].name);
        free(o->v[i].data);
    }
    free(o->v);
    memset(o, 0, sizeof *o);
}

static int pwrite_full(int fd, const void *buf, uint64_t len, uint64_t off, ct_err *err)
{
    const char *p = buf;
    while (len) {
        ssize_t w = pwrite(fd, p, len > (1u << 30) ? (1u << 30) : (size_t)len, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return ct_fail(err, CT_EIO, "writing the temporary spill file: %s", w < 0 ? strerror(errno) : "short write");
        p += w;
        off += (uint64_t)w;
        len -= (uint64_t)w;
    }
    return 0;
}

static void *worker(void *arg)
{
    job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        while (j->next < j->nu && j->u[j->next].kind == U_PASS)
            j->next++;
        if (j->rc || j->next >= j->nu) {
            pthread_mutex_unlock(&j->mu);
            scratch_release();
            return NULL;
        }
        size_t ui = j->next++;
        pthread_mutex_unlock(&j->mu);
        const unit *u = &j->u[ui];
        outs o = {0};
        ct_err e = {0};
        int rc = run_unit(j, u, &o, &e);
        for (size_t i = 0; !rc && i < o.n; i++) {
            out_t *t = &o.v[i];
            t->unit = ui;
            if (!t->data)
                continue;
            pthread_mutex_lock(&j->mu);
            t->spill_off = j->spill_end;
            j->spill_end += (t->nbytes + 7) & ~(uint64_t)7;
            pthread_mutex_unlock(&j->mu);
            rc = pwrite_full(j->spill_fd, t->data, t->nbytes, t->spill_off, &e);
            free(t->data);
            t->data = NULL;
        }
        pthread_mutex_lock(&j->mu);
        if (rc && !j->rc) {
            j->rc = rc;
            j->err = e;
        }
        for (size_t i = 0; !rc && i < o.n; i++) {
            if (j->out.n == j->out.cap) {
                size_t cap = j->out.cap ? 2 * j->out.cap : 64;
                out_t *v = realloc(j->out.v, cap * sizeof *v);
                if (!v) {
                    rc = j->rc = ct_fail(&j->err, CT_ENOMEM, "out of memory");
                    break;
                }
                j->out.v = v;
                j->out.cap = cap;
            }
            j->out.v[j->out.n++] = o.v[i];
            o.v[i].name = NULL;
        }
        j->units_done++;
        j->bytes_done += u->w.t->end - u->w.t->begin;
        report(j);
        pthread_mutex_unlock(&j->mu);
        free_outs(&o);
    }
}

/* An unlinked temporary file in dst's directory (same filesystem, and not
 * /tmp, which may be a small tmpfs). */
static int open_spill(const char *dst, ct_err *err)
{
    char *dir = strdup(dst);
    if (!dir)
        return -oom(err);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash == dir ? (void)(slash[1] = 0) : (void)(*slash = 0);
    else
        strcpy(dir, ".");
    int fd = -1;
#ifdef O_TMPFILE
    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
#endif
    if (fd < 0) {
        char *tmpl = ct_path_join(dir, ".mkct-spill-XXXXXX");
        if (tmpl && (fd = mkstemp(tmpl)) >= 0)
            unlink(tmpl);
        free(tmpl);
    }
    if (fd < 0)
        ct_fail(err, CT_EIO, "%s: cannot create a temporary file in %s: %s", dst, dir, strerror(errno));
    free(dir);
    return fd;
}

/* Append a tensor's bytes to out: from the spill file (in the kernel, with
 * copy_file_range, when it can) or from its source file. */
static int copy_out(int out, const job *j, const out_t *t, const char *label, ct_err *err)
{
    uint64_t done = 0;
    if (!t->ref) {
        loff_t in_off = (loff_t)t->spill_off;
        while (done < t->nbytes) {
            ssize_t n = copy_file_range(j->spill_fd, &in_off, out, NULL, t->nbytes - done, 0);
            if (n <= 0)
                break;   /* not supported here (or short): the loop below finishes */
            done += (uint64_t)n;
        }
    }
    size_t chunk = 8u << 20;
    unsigned char *buf = done < t->nbytes ? malloc(chunk) : NULL;
    if (done < t->nbytes && !buf)
        return oom(err);
    int rc = 0;
    while (!rc && done < t->nbytes) {
        size_t n = t->nbytes - done < chunk ? (size_t)(t->nbytes - done) : chunk;
        rc = t->ref ? ct_st_pread(t->st, t->ref, done, n, buf, err)
                    : ct_pread_full(j->spill_fd, buf, n, t->spill_off + done, "temporary spill file", err);
        if (!rc)
            rc = ct_write_full(out, buf, n, label, err);
        done += n;
    }
    free(buf);
    return rc;
}

/* One output file: its tensors (indices into j->out) laid out as upstream
 * writes them, with {"format": "pt", "quantization_config": ...}. */
typedef struct ofile {
    char *name;                 /* file name inside the output directory */
    size_t *idx, n;
    uint64_t bytes;
} ofile;

struct emit_arg {
    const job *j;
    const ofile *f;
};

static int fill_ofile(int fd, const char *label, void *arg, ct_err *err)
{
    const struct emit_arg *ea = arg;
    const job *j = ea->j;
    const ofile *f = ea->f;
    ct_st_entry *e = calloc(f->n + 1, sizeof *e);
    char *hdr = NULL;
    size_t hl;
    if (!e)
        return oom(err);
    for (size_t i = 0; i < f->n; i++) {
        const out_t *t = &j->out.v[f->idx[i]];
        e[i].name = t->name;
        e[i].dtype = t->dtype;
        e[i].ndim = t->ndim;
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        e[i].nbytes = t->nbytes;
        e[i].user = f->idx[i];
    }
    const char *mk[2] = {"format", "quantization_config"}, *mv[2] = {"pt", j->qc};
    int rc = ct_st_layout(e, f->n, mk, mv, 2, &hdr, &hl, err);
    if (!rc)
        rc = ct_write_full(fd, hdr, hl, label, err);
    for (size_t i = 0; !rc && i < f->n; i++)
        rc = copy_out(fd, j, &j->out.v[e[i].user], label, err);
    free(hdr);
    free(e);
    return rc;
}

static int cmp_out(const void *a, const void *b, void *arg)
{
    const job *j = arg;
    const out_t *x = &j->out.v[*(const size_t *)a], *y = &j->out.v[*(const size_t *)b];
    if (x->unit != y->unit)
        return x->unit < y->unit ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Output files: one per source shard (named as the source's), or, with a
 * shard size, consecutive units (source order, a module's tensors kept
 * together) filling files of at most that size (a bigger unit gets a file
 * of its own), named model-0000i-of-0000n.safetensors as transformers
 * does, or model.safetensors when one suffices. */
static int split_files(job *j, ofile **out, size_t *nout, ct_err *err)
{
    size_t n = j->out.n, *order = malloc((n + 1) * sizeof *order), nf = 0;
    ofile *f = calloc((j->opt->shard_size ? n : j->nsh) + 1, sizeof *f);
    if (!order || !f) {
        free(order);
        free(f);
        return oom(err);
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, n, sizeof *order, cmp_out, j);
    int rc = 0;
    if (!j->opt->shard_size) {
        nf = j->nsh;
        for (size_t s = 0; s < nf; s++)
            if (!(f[s].idx = malloc((n + 1) * sizeof *f[s].idx))
                || !(f[s].name = strdup(j->shard_names[s])))
                rc = oom(err);
        for (size_t i = 0; !rc && i < n; i++) {
            ofile *o = &f[j->u[j->out.v[order[i]].unit].shard];
            o->idx[o->n++] = order[i];
            o->bytes += j->out.v[order[i]].nbytes;
        }
        /* A source shard left with nothing (it held only pieces of modules
         * stored elsewhere) is not written: no index entry could name it. */
        size_t kept = 0;
        for (size_t s = 0; !rc && s < nf; s++) {
            if (!f[s].n && (kept || s + 1 < nf)) {
                free(f[s].idx);
                free(f[s].name);
                continue;
            }
            f[kept++] = f[s];
        }
        if (!rc)
            nf = kept;
    } else {
        for (size_t i = 0; i < n && !rc;) {
            size_t e = i;
            uint64_t ub = 0;
            while (e < n && j->out.v[order[e]].unit == j->out.v[order[i]].unit)
                ub += j->out.v[order[e++]].nbytes;
            if (!nf || (f[nf - 1].n && f[nf - 1].bytes + ub > j->opt->shard_size)) {
                if (!(f[nf].idx = malloc((n + 1) * sizeof *f[nf].idx))) {
                    rc = oom(err);
                    break;
                }
                nf++;
            }
            for (; i < e; i++) {
                f[nf - 1].idx[f[nf - 1].n++] = order[i];
                f[nf - 1].bytes += j->out.v[order[i]].nbytes;
            }
        }
        for (size_t s = 0; !rc && s < nf; s++) {
            char name[64];
            if (nf == 1)
                snprintf(name, sizeof name, "model.safetensors");
            else
                snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, nf);
            if (!(f[s].name = strdup(name)))
                rc = oom(err);
        }
    }
    free(order);
    *out = f;
    *nout = nf;
    return rc;
}

static void free_ofiles(ofile *f, size_t n)
{
    for (size_t i = 0; f && i < n; i++) {
        free(f[i].name);
        free(f[i].idx);
    }
    free(f);
}

static int write_text(const char *dir, const char *name, const char *text, size_t len, ct_err *err)
{
    char *p = ct_path_join(dir, name);
    if (!p)
        return oom(err);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), rc;
    rc = fd < 0 ? ct_fail(err, CT_EIO, "%s: %s", p, strerror(errno)) : ct_write_full(fd, text, len, p, err);
    if (fd >= 0 && close(fd) != 0 && !rc)
        rc = ct_fail(err, CT_EIO, "%s: %s", p, strerror(errno));
    free(p);
    return rc;
}

/* The pieces a directory output needs besides the shards. */
struct dir_out {
    job *j;
    const char *src;            /* source directory, or NULL for a file source */
    int src_had_index;
    cJSON *qj;                  /* quantization_config object */
};

/* Progress: the pass-through tensors of a written file are done (modules
 * were counted when compressed). */
static void emitted(job *j, const ofile *f)
{
    pthread_mutex_lock(&j->mu);
    for (size_t k = 0; k < f->n; k++)
        if (j->u[j->out.v[f->idx[k]].unit].kind == U_PASS) {
            j->units_done++;
            j->bytes_done += j->out.v[f->idx[k]].nbytes;
        }
    report(j);
    pthread_mutex_unlock(&j->mu);
}

static int emit_dir(const char *tmp, void *arg, ct_err *err)
{
    struct dir_out *d = arg;
    job *j = d->j;
    ofile *f = NULL;
    size_t nf = 0;
    int rc = split_files(j, &f, &nf, err);
    cJSON *index = NULL, *cfgj = NULL;
    ct_buf b = {0};
    struct stat sb;
    for (size_t i = 0; !rc && i < nf; i++) {
        char *p = ct_path_join(tmp, f[i].name);
        int fd = p ? open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644) : -1;
        struct emit_arg ea = {j, &f[i]};
        rc = !p ? oom(err) : fd < 0 ? ct_fail(err, CT_EIO, "%s: %s", p, strerror(errno)) : fill_ofile(fd, p, &ea, err);
        if (fd >= 0 && close(fd) != 0 && !rc)
            rc = ct_fail(err, CT_EIO, "%s: %s", p, strerror(errno));
        free(p);
        if (!rc)
            emitted(j, &f[i]);
    }
    /* the index, as transformers writes it (sorted keys, indent 2) */
    if (!rc && (d->src_had_index || nf > 1)) {
        uint64_t total = 0;
        index = cJSON_CreateObject();
        /* the source index's metadata but total_size (total_parameters,
         * if there, counts the model's dense parameters: unchanged) */
        cJSON *meta = j->index_meta ? cJSON_Duplicate(j->index_meta, 1) : cJSON_CreateObject();
        if (meta)
            cJSON_DeleteItemFromObjectCaseSensitive(meta, "total_size");
        if (!index || !meta || !cJSON_AddItemToObject(index, "metadata", meta)) {
            cJSON_Delete(meta);
            meta = NULL;
            rc = oom(err);
        }
        cJSON *wm = rc ? NULL : cJSON_AddObjectToObject(index, "weight_map");
        for (size_t i = 0; wm && i < nf; i++)
            for (size_t k = 0; k < f[i].n; k++) {
                cJSON_AddStringToObject(wm, j->out.v[f[i].idx[k]].name, f[i].name);
                total += j->out.v[f[i].idx[k]].nbytes;
            }
        if (!rc && (!wm || !cJSON_AddNumberToObject(meta, "total_size", (double)total)
                    || ct_pyjson_write(&b, index, 1) || ct_buf_putc(&b, '\n')))
            rc = oom(err);
        if (!rc)
            rc = write_text(tmp, "model.safetensors.index.json", b.data, b.len, err);
        ct_buf_free(&b);
    }
    /* config.json: the source's, with the compression config */
    if (!rc) {
        char *cp = d->src ? ct_path_join(d->src, "config.json") : NULL, *ct = NULL;
        size_t len;
        if (cp && stat(cp, &sb) == 0 && !(rc = ct_read_file(cp, 64u << 20, &ct, &len, err))) {
            cfgj = ct_pyjson_parse(ct, len);
            if (!cfgj || !cJSON_IsObject(cfgj))
                rc = ct_fail(err, CT_EFORMAT, "%s: not a JSON object", cp);
        }
        free(ct);
        free(cp);
        if (!rc && !cfgj)
            cfgj = cJSON_CreateObject();
        if (!rc) {
            cJSON_DeleteItemFromObjectCaseSensitive(cfgj, "quantization_config");
            cJSON_DeleteItemFromObjectCaseSensitive(cfgj, "compression_config");
            if (j->vsrc)   /* a converted source's SparseML-era config described its old compression */
                cJSON_DeleteItemFromObjectCaseSensitive(cfgj, "sparsity_config");
            cJSON_AddItemToObject(cfgj, "quantization_config", cJSON_Duplicate(d->qj, 1));
            if (ct_pyjson_write(&b, cfgj, 1) || ct_buf_putc(&b, '\n'))
                rc = oom(err);
            if (!rc)
                rc = write_text(tmp, "config.json", b.data, b.len, err);
            ct_buf_free(&b);
        }
    }
    /* every other file and directory as is: all but the source's shards
     * and the names written above */
    if (!rc && d->src) {
        size_t nskip = j->nsh + nf;
        const char **skip = malloc(nskip * sizeof *skip);
        ct_other_file *o = NULL;
        size_t no = 0;
        if (!skip) {
            rc = oom(err);
        } else {
            for (size_t i = 0; i < j->nsh; i++)
                skip[i] = j->shard_names[i];
            for (size_t i = 0; i < nf; i++)
                skip[j->nsh + i] = f[i].name;
            if (!(rc = ct_list_other_files(d->src, skip, nskip, &o, &no, err)))
                rc = ct_copy_other_files(d->src, o, no, tmp, err);
        }
        ct_other_files_free(o, no);
        free(skip);
    }
    cJSON_Delete(index);
    cJSON_Delete(cfgj);
    free_ofiles(f, nf);
    return rc;
}

static int emit_file(int fd, const char *label, void *arg, ct_err *err)
{
    job *j = arg;
    ofile *f = NULL;
    size_t nf = 0;
    int rc = split_files(j, &f, &nf, err);
    if (!rc) {
        struct emit_arg ea = {j, &f[0]};
        rc = fill_ofile(fd, label, &ea, err);
    }
    if (!rc)
        emitted(j, &f[0]);
    free_ofiles(f, nf);
    return rc;
}

static int view_reader(void *ctx, uint64_t off, uint64_t len, void *buf, ct_err *err)
{
    return ct_view_read(ctx, off, len, buf, err);
}

/* The first stored tensor that is a piece of a compressed weight (packed
 * or sparse pieces, or integer/FP8 codes beside their weight_scale), or
 * NULL for a dense source. */
static const char *compressed_piece(const job *j)
{
    for (size_t s = 0; s < j->nsh; s++)
        for (size_t i = 0; i < ct_st_count(j->st[s]); i++) {
            const ct_st_tensor *t = ct_st_get(j->st[s], i);
            if (has_suffix(t->name, ".weight_packed") || has_suffix(t->name, ".compressed")
                || has_suffix(t->name, ".bitmask") || has_suffix(t->name, ".scale_packed"))
                return t->name;
            if (has_suffix(t->name, ".weight") && !is_float(t->dtype)) {
                char n[4096];
                if (snprintf(n, sizeof n, "%s_scale", t->name) < (int)sizeof n && find_any(j, s, n).t)
                    return t->name;
            }
        }
    return NULL;
}

/* A compressed source is converted: its dense views (what mkct --format
 * dense would write) replace its stored shards as what is compressed, each
 * a parsed header whose reads decode (ct_st_set_reader).  The views leave
 * out the old weights' quantization parameters (new ones are observed from
 * the decoded weights) but keep the calibrated activation and kv-cache
 * scales, which plan() then keeps or leaves out as it does a dense
 * source's (activation_param_kept).  piece names a compressed tensor
 * (in the stored shards, which this closes), for the message when the
 * source cannot be decoded. */
static int open_views(job *j, const char *src, const char *piece, ct_err *err)
{
    ct_open_opts oo = {.keep_activation_qparams = 1};
    ct_err e = {0};
    ct_source *s;
    int rc = ct_source_open(src, &oo, &s, &e);
    if (rc)
        return ct_fail(err, rc, "tensor '%s' is stored compressed, and the source cannot be decoded: %s", piece,
                       e.msg);
    for (size_t i = 0; i < j->nsh; i++) {   /* the stored shards go; the index's metadata stays */
        ct_st_close(j->st[i]);
        free(j->shard_names[i]);
    }
    free(j->st);
    free(j->shard_names);
    j->vsrc = s;
    j->nsh = ct_source_nshards(s);
    j->st = calloc(j->nsh + 1, sizeof *j->st);
    j->views = calloc(j->nsh + 1, sizeof *j->views);
    j->shard_names = calloc(j->nsh + 1, sizeof *j->shard_names);
    if (!j->st || !j->views || !j->shard_names)
        return oom(err);
    for (size_t sh = 0; sh < j->nsh; sh++) {
        const char *name = ct_source_is_dir(s) ? ct_source_shard_name(s, sh) : src;
        if (!(j->shard_names[sh] = strdup(name)))
            return oom(err);
        if ((rc = ct_view_new(s, sh, &j->views[sh], err)))
            return rc;
        size_t hs = ct_view_header_size(j->views[sh]);
        char *h = malloc(hs);
        if (!h)
            return oom(err);
        rc = ct_view_read(j->views[sh], 0, hs, h, err);
        if (!rc)
            rc = ct_st_parse(name, h + 8, hs - 8, ct_view_size(j->views[sh]), &j->st[sh], err);
        free(h);
        if (rc)
            return rc;
        ct_st_set_reader(j->st[sh], view_reader, j->views[sh]);
    }
    return 0;
}

/* Source shards: a file, a directory's model.safetensors, or the shards
 * its model.safetensors.index.json names. */
static int open_sources(job *j, const char *src, int is_dir, int *had_index, ct_err *err)
{
    int rc = 0;
    char *text = NULL;
    cJSON *index = NULL;
    *had_index = 0;
    if (!is_dir) {
        j->nsh = 1;
        j->st = calloc(1, sizeof *j->st);
        j->shard_names = calloc(1, sizeof *j->shard_names);
        if (!j->st || !j->shard_names || !(j->shard_names[0] = strdup(src)))
            return oom(err);
        if ((rc = ct_st_open(src, &j->st[0], err)))
            return rc;
        const char *piece = compressed_piece(j);
        return piece ? open_views(j, src, piece, err) : 0;
    }
    char *ixp = ct_path_join(src, "model.safetensors.index.json");
    struct stat sb;
    if (!ixp)
        return oom(err);
    if (stat(ixp, &sb) == 0) {
        size_t len;
        *had_index = 1;
        if ((rc = ct_read_file(ixp, 256u << 20, &text, &len, err)))
            goto out;
        index = ct_pyjson_parse(text, len);
        const cJSON *wm = index ? cJSON_GetObjectItemCaseSensitive(index, "weight_map") : NULL, *e;
        if (!wm || !cJSON_IsObject(wm)) {
            rc = ct_fail(err, CT_EFORMAT, "%s: not JSON with a \"weight_map\" object", ixp);
            goto out;
        }
        size_t cap = (size_t)cJSON_GetArraySize(wm) + 1;
        j->shard_names = calloc(cap, sizeof *j->shard_names);
        j->st = calloc(cap, sizeof *j->st);
        if (!j->shard_names || !j->st) {
            rc = oom(err);
            goto out;
        }
        cJSON_ArrayForEach(e, wm) {
            if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || e->valuestring[0] == '.') {
                rc = ct_fail(err, CT_EFORMAT, "%s: bad shard name for '%s'", ixp, e->string);
                goto out;
            }
            size_t k;
            for (k = 0; k < j->nsh && strcmp(j->shard_names[k], e->valuestring); k++)
                ;
            if (k == j->nsh && !(j->shard_names[j->nsh++] = strdup(e->valuestring))) {
                rc = oom(err);
                goto out;
            }
        }
    } else {
        j->shard_names = calloc(1, sizeof *j->shard_names);
        j->st = calloc(1, sizeof *j->st);
        if (!j->shard_names || !j->st || !(j->shard_names[0] = strdup("model.safetensors"))) {
            rc = oom(err);
            goto out;
        }
        j->nsh = 1;
    }
    for (size_t s = 0; s < j->nsh && !rc; s++) {
        char *p = ct_path_join(src, j->shard_names[s]);
        rc = p ? ct_st_open(p, &j->st[s], err) : oom(err);
        free(p);
    }
    if (!rc && index) {
        cJSON *meta = cJSON_GetObjectItemCaseSensitive(index, "metadata");
        if (cJSON_IsObject(meta))
            j->index_meta = cJSON_DetachItemViaPointer(index, meta);
    }
    const char *piece = rc ? NULL : compressed_piece(j);
    if (piece)
        rc = open_views(j, src, piece, err);
out:
    free(ixp);
    free(text);
    cJSON_Delete(index);
    return rc;
}

static void close_sources(job *j)
{
    for (size_t s = 0; s < j->nsh; s++) {
        if (j->st)
            ct_st_close(j->st[s]);
        if (j->shard_names)
            free(j->shard_names[s]);
    }
    free(j->st);
    free(j->shard_names);
    cJSON_Delete(j->index_meta);
    for (size_t s = 0; j->views && s < j->nsh; s++)
        ct_view_free(j->views[s]);
    free(j->views);
    ct_source_close(j->vsrc);
}

int ct_compress(const char *src, const char *dst, const ct_compress_opts *opt, ct_err *err)
{
    job j = {.opt = opt, .spill_fd = -1};
    struct stat sb;
    int rc, had_index = 0, mu_ok = 0;
    cJSON *qj = NULL;
    if (stat(src, &sb) != 0)
        return ct_fail(err, CT_EIO, "%s: %s", src, strerror(errno));
    if ((rc = ct_check_dst(src, dst, err)))
        return rc;
    int src_dir = S_ISDIR(sb.st_mode), dst_dir = src_dir || opt->shard_size;
    int exists = lstat(dst, &sb) == 0;
    if (exists && !opt->force)
        return ct_fail(err, CT_EEXIST, "%s: already exists (use --force to replace it)", dst);
    if (exists && dst_dir && !S_ISDIR(sb.st_mode))
        return ct_fail(err, CT_EEXIST, "%s: exists and is not a directory; refusing to replace it", dst);
    if (exists && !dst_dir && S_ISDIR(sb.st_mode))
        return ct_fail(err, CT_EEXIST, "%s: is a directory; refusing to replace it with a file", dst);
    if ((rc = ct_config_parse(opt->config_json, opt->config_len, opt->config_label, &j.cfg, err)))
        return rc;
    if (!j.cfg) {
        rc = ct_fail(err, CT_EFORMAT, "%s: holds no compression config", opt->config_label);
        goto out;
    }
    /* Pack in the layout the config's version implies, since readers pick
     * the layout from it; a config without a version gets this writer's. */
    j.layout_b = j.cfg->version ? j.cfg->layout_b : 1;
    qj = cJSON_Parse(j.cfg->json);
    if (qj && !j.cfg->version)
        cJSON_AddStringToObject(qj, "version", CT_WRITER_VERSION);
    if (!qj || !(j.qc = cJSON_PrintUnformatted(qj))) {
        rc = oom(err);
        goto out;
    }
    if ((rc = open_sources(&j, src, src_dir, &had_index, err)) || (rc = plan(&j, err)))
        goto out;
    if (opt->compressed) {
        *opt->compressed = 0;
        for (size_t i = 0; i < j.nu; i++)
            *opt->compressed += j.u[i].kind != U_PASS;
    }
    if (opt->left_out)
        *opt->left_out = j.left_out;
    if ((j.spill_fd = open_spill(dst, err)) < 0) {
        rc = err ? err->code : CT_EIO;
        goto out;
    }
    if (pthread_mutex_init(&j.mu, NULL)) {
        rc = oom(err);
        goto out;
    }
    mu_ok = 1;
    int nt = opt->threads > 0 ? opt->threads : 1;
    pthread_t th[64];
    int started = 0;
    for (int i = 1; i < nt && i < 64; i++)
        if (pthread_create(&th[started], NULL, worker, &j) == 0)
            started++;
    worker(&j);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if ((rc = j.rc)) {
        if (err)
            *err = j.err;
        goto out;
    }
    /* pass-through tensors */
    for (size_t i = 0; i < j.nu; i++) {
        if (j.u[i].kind != U_PASS)
            continue;
        const ct_st_tensor *t = j.u[i].w.t;
        out_t *p = push(&j.out, t->name, t->dtype, t->ndim, t->shape);
        if (!p) {
            rc = oom(err);
            goto out;
        }
        p->ref = t;
        p->st = j.u[i].w.st;
        p->unit = i;
    }
    if (dst_dir) {
        struct dir_out d = {&j, src_dir ? src : NULL, had_index, qj};
        rc = ct_write_dir_atomic(dst, exists, emit_dir, &d, err);
    } else {
        rc = ct_write_file_atomic(dst, emit_file, &j, err);
    }
out:
    if (mu_ok)
        pthread_mutex_destroy(&j.mu);
    if (j.spill_fd >= 0)
        close(j.spill_fd);
    for (size_t i = 0; i < j.nu; i++)
        free(j.u[i].module);
    free(j.u);
    free_outs(&j.out);
    close_sources(&j);
    free(j.qc);
    cJSON_Delete(qj);
    ct_config_free(j.cfg);
    return rc;
}
/* ---------------------------------------------------------------- verify */

static double elem(ct_dtype dt, const unsigned char *p, uint64_t i)
{
    switch (dt) {
    case CT_F64: { double d; memcpy(&d, p + 8 * i, 8); return d; }
    default: return fval(dt, p, i);
    }
}

static int verify_one(const ct_st *sst, const ct_st_tensor *t, const ct_source *out, size_t oi, ct_err *err)
{
    const ct_tensor *ot = ct_source_tensor(out, oi);
    if (ot->ndim != t->ndim || memcmp(ot->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim))
        return ct_fail(err, CT_EFORMAT, "verify: '%s' has shape %s in the output", t->name,
                       ct_shape_str((char[256]){0}, 256, ot->ndim, ot->shape));
    unsigned char *a = NULL, *b = malloc(ot->nbytes + 8);
    int rc = b ? read_all(sst, t, &a, err) : ct_fail(err, CT_ENOMEM, "out of memory");
    if (!rc)
        rc = ct_source_read(out, oi, 0, ot->nbytes, b, err);
    int lossless = !strcmp(ot->format, "dense") || !strcmp(ot->format, "sparse-bitmask");
    int pruned = !strcmp(ot->format, "sparse-24-bitmask");   /* 2 of every 4 kept */
    if (!rc && (lossless || pruned) && ot->dtype == t->dtype) {
        size_t es = ct_dtype_bits(t->dtype) / 8;
        for (uint64_t i = 0; !rc && es && i < t->numel; i++) {
            int zero_out = is_float(t->dtype) && elem(t->dtype, b, i) == 0;
            if (memcmp(a + i * es, b + i * es, es) && !(zero_out && (pruned || elem(t->dtype, a, i) == 0)))
                rc = ct_fail(err, CT_EFORMAT, "verify: '%s' element %" PRIu64 " differs from the source", t->name, i);
        }
    } else if (!rc && is_float(t->dtype) && is_float(ot->dtype) && t->ndim == 2 && ot->code_bits) {
        /* Quantization error bounds, from the row's largest magnitude M (a
         * group's scale is at most M's): integer codes of nb bits err by at
         * most half a step, M / (2^nb - 1); FP8 E4M3 by 2^-4 relative (plus
         * its subnormal steps); FP4 E2M1 by 1/4 relative plus a quarter of
         * a (power-of-two rounded, for MX) group scale.  Plus 2^-7 relative
         * for the output's own rounding. */
        uint64_t C = (uint64_t)t->shape[1], R = (uint64_t)t->shape[0];
        int nb = ot->code_bits;
        for (uint64_t r = 0; !rc && r < R; r++) {
            double M = 0;
            for (uint64_t c = 0; c < C; c++) {
                double v = fabs(elem(t->dtype, a, r * C + c));
                M = v > M ? v : M;
            }
            for (uint64_t c = 0; !rc && c < C; c++) {
                double x = elem(t->dtype, a, r * C + c), y = elem(ot->dtype, b, r * C + c), tol;
                if (!ot->code_float)
                    tol = M / (double)((1 << nb) - 1);
                else if (nb == 8)
                    tol = fabs(x) / 16 + M / 4096;
                else
                    tol = fabs(x) / 4 + M / 12;
                /* 10 %: the scale and quotient are themselves rounded in
                 * the weight dtype (upstream's op order) */
                tol = tol * 1.1 + fabs(y) / 128 + 1e-30;
                if (!(fabs(x - y) <= tol))
                    rc = ct_fail(err, CT_EFORMAT, "verify: '%s' [%" PRIu64 ", %" PRIu64 "] decodes to %g, source %g "
                                 "(allowed error %g)", t->name, r, c, y, x, tol);
            }
        }
    } else if (!rc) {
        rc = ct_fail(err, CT_EFORMAT, "verify: '%s' is %s %s in the output but %s in the source", t->name,
                     ot->format, ct_dtype_name(ot->dtype), ct_dtype_name(t->dtype));
    }
    free(a);
    free(b);
    return rc;
}

int ct_verify(const char *src, const char *dst, ct_err *err)
{
    job j = {0};
    ct_source *out = NULL;
    struct stat sb;
    int rc, had_index;
    if (stat(src, &sb) != 0)
        return ct_fail(err, CT_EIO, "%s: %s", src, strerror(errno));
    if ((rc = open_sources(&j, src, S_ISDIR(sb.st_mode), &had_index, err))
        || (rc = ct_source_open(dst, NULL, &out, err)))
        goto out;
    size_t checked = 0;
    for (size_t s = 0; s < j.nsh && !rc; s++)
        for (size_t i = 0; i < ct_st_count(j.st[s]) && !rc; i++) {
            const ct_st_tensor *t = ct_st_get(j.st[s], i);
            long oi = ct_source_find(out, t->name);
            if (oi < 0)
                continue;   /* quantization parameters and other consumed pieces */
            rc = verify_one(j.st[s], t, out, (size_t)oi, err);
            checked++;
        }
    if (!rc && checked == 0)
        rc = ct_fail(err, CT_EFORMAT, "verify: no tensor of the source is in the output");
out:
    ct_source_close(out);
    close_sources(&j);
    return rc;
}
