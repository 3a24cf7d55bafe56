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
#include "ct/st.h"
#include "ct/strmap.h"
#include "ct/util.h"
#include "ct/pyjson.h"
#include <dirent.h>

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
    default: return ct_u32_as_f32(ct_load_le32(p + 4 * i));
    }
}

/* Round a float32 result to the working dtype (torch computes half types
 * in float32 and rounds each op's result). */
static float in_dtype(ct_dtype dt, float v)
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

/* Words per row of n nb-bit codes in layout A (a code never straddles a
 * word; before 0.17) or B (dense little-endian bit stream). */
static uint64_t packed_words(uint64_t n, int nb, int layout_b)
{
    return layout_b || 32 % nb == 0 ? (n * (uint64_t)nb + 31) / 32 : (n + 32 / nb - 1) / (32 / nb);
}

/* Pack unsigned codes u[0..n) of nb bits into a zeroed row of words. */
static void pack_row(const uint32_t *u, uint64_t n, int nb, int layout_b, uint32_t *w)
{
    if (!layout_b && 32 % nb) {
        unsigned pf = 32u / (unsigned)nb;
        for (uint64_t i = 0; i < n; i++)
            w[i / pf] |= u[i] << (nb * (i % pf));
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t bit = i * (uint64_t)nb;
        w[bit >> 5] |= u[i] << (bit & 31);
        if ((bit & 31) + (uint64_t)nb > 32)
            w[(bit >> 5) + 1] |= u[i] >> (32 - (bit & 31));
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

static float dtype_eps(ct_dtype dt)
{
    return dt == CT_BF16 ? 0x1p-7f : dt == CT_F16 ? 0x1p-10f : 0x1p-23f;
}

/* Quantization parameters as upstream's min-max observer and
 * calculate_qparams make them, each operation rounded to the weight dtype:
 * min/max clipped to include 0; symmetric s = max(|min|,|max|) / (range/2),
 * zp = 0; asymmetric s = (max - min) / range, zp = round(clamp(qmin - min/s));
 * then zero scales become the dtype's eps.  Groups are columns c/gs, or
 * g_idx[c] when given.  scales: R*k values in the weight dtype's bytes;
 * zps (asymmetric only): R*k int8. */
static void observe(ct_dtype wd, const unsigned char *x, uint64_t R, uint64_t C, ct_strategy strat, uint64_t gs,
                    uint64_t k, const int64_t *gidx, int nb, int is_float, int sym, unsigned char *scales, int8_t *zps)
{
    /* FP8 E4M3's range is [-448, 448], as upstream's calculate_range */
    const float qmin = is_float ? -448.0f : -(float)(1 << (nb - 1)),
                qmax = is_float ? 448.0f : (float)((1 << (nb - 1)) - 1), range = qmax - qmin;
    uint64_t rows = strat == CT_STRAT_TENSOR ? 1 : R;
    for (uint64_t sr = 0; sr < rows; sr++)
        for (uint64_t g = 0; g < k; g++) {
            float mn = 0.0f, mx = 0.0f;   /* min(min, 0), max(max, 0) */
            for (uint64_t r = strat == CT_STRAT_TENSOR ? 0 : sr; r < (strat == CT_STRAT_TENSOR ? R : sr + 1); r++)
                for (uint64_t c = 0; c < C; c++) {
                    uint64_t gc = strat != CT_STRAT_GROUP ? 0 : gidx ? (uint64_t)gidx[c] : c / gs;
                    if (gc != g)
                        continue;
                    float v = fval(wd, x, r * C + c);
                    if (v < mn) mn = v;
                    if (v > mx) mx = v;
                }
            float sc, zp = 0.0f;
            if (sym) {
                float m = fabsf(mn) > fabsf(mx) ? fabsf(mn) : fabsf(mx);
                sc = in_dtype(wd, m / (range / 2));
            } else {
                sc = in_dtype(wd, in_dtype(wd, mx - mn) / range);
                zp = in_dtype(wd, qmin - in_dtype(wd, mn / sc));
                zp = zp < qmin ? qmin : zp > qmax ? qmax : zp;   /* NaN stays NaN, as torch.clamp */
            }
            if (sc == 0.0f)
                sc = dtype_eps(wd);
            fstore(wd, scales, sr * k + g, sc);
            if (zps)
                zps[sr * k + g] = zp != zp ? 0 : (int8_t)nearbyintf(zp);
        }
}

/* Quantize one module's weight with the stored qparams (format note §1.3). */
static int quantize_module(const ct_st *st, const char *module, const ct_st_tensor *w, const ct_qgroup *g,
                           ct_format fmt, int layout_b, outs *o, ct_strmap *used, ct_err *err)
{
    int rc = 0;
    unsigned char *x = NULL, *sb = NULL, *zb = NULL, *gb = NULL;
    uint32_t *ucodes = NULL;
    char *sname = join(module, ".weight_scale"), *zname = join(module, ".weight_zero_point"),
         *gname = join(module, ".weight_g_idx");
    if (!sname || !zname || !gname) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    long si = ct_st_find(st, sname), zi = ct_st_find(st, zname), gi = ct_st_find(st, gname);
    const ct_qargs *a = &g->weights;
    /* Without stored parameters they are computed (observer) into these
     * stand-ins for the tensors a calibrated checkpoint would hold. */
    ct_st_tensor s_obs = {0}, z_obs = {0};
    int observed = si < 0;
    if (observed) {
        if (zi >= 0 || gi >= 0) {
            rc = ct_fail(err, CT_EFORMAT, "%s: module '%s' has a zero point or g_idx but no weight_scale",
                         ct_st_path(st), module);
            goto out;
        }
        uint64_t R0 = (uint64_t)w->shape[0], C0 = (uint64_t)w->shape[1], kk = 1;
        if (a->strategy == CT_STRAT_GROUP) {
            if (a->group_size <= 0 || C0 % (uint64_t)a->group_size) {
                rc = ct_fail(err, CT_EFORMAT, "module '%s': %" PRIu64 " columns are not divisible by group size %"
                             PRId64, module, C0, a->group_size);
                goto out;
            }
            kk = C0 / (uint64_t)a->group_size;
        } else if (a->strategy != CT_STRAT_CHANNEL && a->strategy != CT_STRAT_TENSOR) {
            rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': computing parameters for this strategy is not "
                         "implemented (tensor, channel and group are)", module);
            goto out;
        }
        s_obs.name = sname;
        s_obs.dtype = w->dtype;
        s_obs.ndim = a->strategy == CT_STRAT_TENSOR ? 1 : 2;
        s_obs.shape[0] = a->strategy == CT_STRAT_TENSOR ? 1 : (int64_t)R0;
        s_obs.shape[1] = (int64_t)kk;
        s_obs.numel = a->strategy == CT_STRAT_TENSOR ? 1 : R0 * kk;
        if (a->symmetric == 0) {
            z_obs = s_obs;
            z_obs.name = zname;
            z_obs.dtype = CT_I8;
        }
    }
    const ct_st_tensor *s = observed ? &s_obs : ct_st_get(st, (size_t)si),
                       *z = observed ? (a->symmetric == 0 ? &z_obs : NULL) : zi >= 0 ? ct_st_get(st, (size_t)zi) : NULL,
                       *gx = gi >= 0 ? ct_st_get(st, (size_t)gi) : NULL;
    if (a->is_float && (a->num_bits != 8 || a->symmetric == 0)) {
        rc = ct_fail(err, CT_EUNSUPPORTED, "%s: module '%s': only symmetric FP8 float quantization is implemented "
                     "(not %d-bit%s)", ct_st_path(st), module, a->num_bits, a->symmetric == 0 ? " asymmetric" : "");
        goto out;
    }
    int nb = a->num_bits;
    if (nb < 1 || nb > 8) {
        rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': %d-bit integer codes are not supported", module, nb);
        goto out;
    }
    uint64_t R = (uint64_t)w->shape[0], C = (uint64_t)w->shape[1];
    uint64_t k = s->ndim >= 2 ? (uint64_t)s->shape[s->ndim - 1] : 1, S0 = k ? s->numel / k : 0;
    ct_strategy strat = a->strategy;
    uint64_t gs = C ? C : 1;
    if (strat == CT_STRAT_GROUP) {
        gs = a->group_size > 0 ? (uint64_t)a->group_size : (k ? C / k : C);
        if (!gs || C % gs) {
            rc = ct_fail(err, CT_EFORMAT, "module '%s': %" PRIu64 " columns are not divisible by group size %" PRIu64,
                         module, C, gs);
            goto out;
        }
    }
    int ok = strat == CT_STRAT_TENSOR ? s->numel == 1
           : strat == CT_STRAT_CHANNEL ? (S0 == R && k == 1)
           : strat == CT_STRAT_GROUP ? (S0 == R && k == C / gs) : 0;
    if (!ok || (z && z->numel != s->numel) || (gx && gx->numel != C)) {
        rc = ct_fail(err, CT_EFORMAT, "module '%s': weight_scale/zero point/g_idx shapes do not fit a %s strategy",
                     module, strat == CT_STRAT_TENSOR ? "tensor" : strat == CT_STRAT_CHANNEL ? "channel" : "group");
        goto out;
    }
    if (s->dtype != w->dtype && !(s->dtype == CT_F32 || s->dtype == CT_BF16 || s->dtype == CT_F16)) {
        rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': weight_scale dtype %s", module, ct_dtype_name(s->dtype));
        goto out;
    }
    if ((rc = read_all(st, w, &x, err)))
        goto out;
    if (observed) {
        sb = calloc(1, s->numel * 4 + 8);
        zb = z ? calloc(1, z->numel + 8) : NULL;
        if (!sb || (z && !zb)) {
            rc = ct_fail(err, CT_ENOMEM, "out of memory");
            goto out;
        }
        observe(w->dtype, x, R, C, strat, gs, k, NULL, nb, a->is_float, a->symmetric != 0, sb, (int8_t *)zb);
    } else if ((rc = read_all(st, s, &sb, err)) || (z && (rc = read_all(st, z, &zb, err)))
               || (gx && (rc = read_all(st, gx, &gb, err)))) {
        goto out;
    }
    int sym = a->symmetric != 0;
    const int64_t qmin = -(INT64_C(1) << (nb - 1)), qmax = (INT64_C(1) << (nb - 1)) - 1;
    ucodes = malloc(R * C * sizeof *ucodes + 8);
    if (!ucodes) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    ct_dtype wd = w->dtype;
    for (uint64_t r = 0; r < R; r++)
        for (uint64_t c = 0; c < C; c++) {
            uint64_t gcol = strat == CT_STRAT_GROUP ? (gb ? (uint64_t)ival(gx->dtype, gb, c) : c / gs) : 0;
            if (gcol >= k) {
                rc = ct_fail(err, CT_EFORMAT, "module '%s': weight_g_idx[%" PRIu64 "] out of range", module, c);
                goto out;
            }
            uint64_t si2 = strat == CT_STRAT_TENSOR ? 0 : r * k + gcol;
            float sc = fval(s->dtype, sb, si2);
            float t = in_dtype(wd, fval(wd, x, r * C + c) / sc);
            if (zb)
                t = in_dtype(wd, t + (float)ival(z->dtype, zb, si2));
            if (a->is_float) {
                /* clamp to the FP8 range, then round to nearest even E4M3 */
                t = t < -448.0f ? -448.0f : t > 448.0f ? 448.0f : t;
                ucodes[r * C + c] = ct_f32_to_f8e4m3(t);
                continue;
            }
            if (t < (float)qmin) t = (float)qmin;
            if (t > (float)qmax) t = (float)qmax;
            int64_t q = (int64_t)nearbyintf(t);   /* round half to even (default mode) */
            ucodes[r * C + c] = (uint32_t)(q - qmin);
        }
    int64_t shp[2] = {(int64_t)R, (int64_t)C};
    char *pn = NULL;
    if (fmt == CT_FMT_PACK && a->is_float) {
        rc = ct_fail(err, CT_EUNSUPPORTED, "module '%s': float codes cannot be pack-quantized (use float-quantized)",
                     module);
        goto out;
    }
    if (fmt == CT_FMT_PACK) {
        uint64_t W = packed_words(C, nb, layout_b);
        int64_t pshape[2] = {(int64_t)R, (int64_t)W};
        out_t *p = (pn = join(module, ".weight_packed")) ? push_data(o, pn, CT_I32, 2, pshape) : NULL;
        out_t *ws = NULL;
        char *wsn = join(module, ".weight_shape");
        int64_t one[1] = {2};
        if (p && wsn)
            ws = push_data(o, wsn, CT_I64, 1, one);
        free(wsn);
        if (!p || !ws) {
            free(pn);
            rc = ct_fail(err, CT_ENOMEM, "out of memory");
            goto out;
        }
        for (uint64_t r = 0; r < R; r++)
            pack_row(ucodes + r * C, C, nb, layout_b, (uint32_t *)p->data + r * W);
        memcpy(ws->data, shp, 16);
    } else {
        out_t *q = (pn = join(module, ".weight")) ? push_data(o, pn, a->is_float ? CT_F8_E4M3 : CT_I8, 2, shp) : NULL;
        if (!q) {
            free(pn);
            rc = ct_fail(err, CT_ENOMEM, "out of memory");
            goto out;
        }
        for (uint64_t i = 0; i < R * C; i++)
            q->data[i] = a->is_float ? (unsigned char)ucodes[i] : (unsigned char)(int8_t)((int64_t)ucodes[i] + qmin);
    }
    free(pn);
    /* qparams: scale as stored; zero point only when asymmetric (packed
     * along rows for pack-quantized group/channel); g_idx as stored */
    out_t *so = observed ? push_data(o, s->name, s->dtype, s->ndim, s->shape) : push(o, s->name, s->dtype, s->ndim, s->shape);
    if (!so) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    if (observed)
        memcpy(so->data, sb, so->nbytes);
    else
        so->ref = s;
    if (!observed)
        ct_strmap_put(used, s->name, 1);
    if (z) {
        if (!observed)
            ct_strmap_put(used, z->name, 1);
        if (!sym && fmt == CT_FMT_PACK && strat != CT_STRAT_TENSOR) {
            uint64_t Wz = packed_words(R, nb, layout_b);
            int64_t zshape[2] = {(int64_t)Wz, (int64_t)k};
            out_t *zo = push_data(o, z->name, CT_I32, 2, zshape);
            uint32_t *col = malloc(R * sizeof *col + 8), *words = calloc(Wz + 2, sizeof *words);
            if (!zo || !col || !words) {
                free(col);
                free(words);
                rc = ct_fail(err, CT_ENOMEM, "out of memory");
                goto out;
            }
            for (uint64_t j = 0; j < k; j++) {
                for (uint64_t r = 0; r < R; r++)
                    col[r] = (uint32_t)(ival(z->dtype, zb, r * k + j) - qmin);
                memset(words, 0, (Wz + 2) * sizeof *words);
                pack_row(col, R, nb, layout_b, words);
                for (uint64_t wz = 0; wz < Wz; wz++)
                    memcpy(zo->data + (wz * k + j) * 4, &words[wz], 4);
            }
            free(col);
            free(words);
        } else if (!sym) {
            out_t *zo = observed ? push_data(o, z->name, z->dtype, z->ndim, z->shape)
                                 : push(o, z->name, z->dtype, z->ndim, z->shape);
            if (!zo) {
                rc = ct_fail(err, CT_ENOMEM, "out of memory");
                goto out;
            }
            if (observed)
                memcpy(zo->data, zb, zo->nbytes);
            else
                zo->ref = z;
        }
    }
    if (gx) {
        ct_strmap_put(used, gx->name, 1);
        if (a->actorder) {
            out_t *go = push(o, gx->name, gx->dtype, gx->ndim, gx->shape);
            if (!go) {
                rc = ct_fail(err, CT_ENOMEM, "out of memory");
                goto out;
            }
            go->ref = gx;
        }
    }
out:
    free(x);
    free(sb);
    free(zb);
    free(gb);
    free(ucodes);
    free(sname);
    free(zname);
    free(gname);
    return rc;
}

/* IEEE "x != 0" on the bytes of a float element: -0.0 is zero, NaN is not. */
static int is_zero(ct_dtype dt, const unsigned char *p)
{
    switch (dt) {
    case CT_BF16: case CT_F16: return (ct_load_le16(p) & 0x7fff) == 0;
    case CT_F32: return (ct_load_le32(p) & 0x7fffffffu) == 0;
    default: return (ct_load_le64(p) & 0x7fffffffffffffffull) == 0;
    }
}

/* sparse-bitmask of one weight (§2.2, 0.9+ naming). */
static int sparse_module(const ct_st *st, const char *module, const ct_st_tensor *w, outs *o, ct_err *err)
{
    unsigned char *x;
    int rc = read_all(st, w, &x, err);
    if (rc)
        return rc;
    size_t es = ct_dtype_bits(w->dtype) / 8;
    uint64_t C = w->ndim ? (uint64_t)w->shape[w->ndim - 1] : 1, rows = C ? w->numel / C : 0, mb = (C + 7) / 8;
    uint64_t nnz = 0;
    for (uint64_t i = 0; i < w->numel; i++) {
        int zero = is_zero(w->dtype, x + i * es);
        nnz += !zero;
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
    free(x);
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
static int sparse24_module(const ct_st *st, const char *module, const ct_st_tensor *w, outs *o, ct_err *err)
{
    uint64_t R = (uint64_t)w->shape[0], C = (uint64_t)w->shape[1];
    if (C % 4)
        return ct_fail(err, CT_EFORMAT, "module '%s': 2:4 sparsity needs a multiple of 4 columns (has %" PRIu64 ")",
                       module, C);
    unsigned char *x;
    int rc = read_all(st, w, &x, err);
    if (rc)
        return rc;
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
                    if (w->dtype == CT_F8_E4M3) {
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
    free(x);
    return rc;
}

struct file_job {
    const ct_st *st;
    const outs *o;
    const ct_st_entry *e;
    const char *hdr;
    size_t hl;
};

/* Header, then every tensor in layout order (copied from the source or
 * from memory). */
static int fill_compressed_file(int fd, const char *label, void *arg, ct_err *err)
{
    struct file_job *j = arg;
    int rc = ct_write_full(fd, j->hdr, j->hl, label, err);
    for (size_t i = 0; !rc && i < j->o->n; i++) {
        const out_t *t = &j->o->v[j->e[i].user];
        if (t->ref) {
            unsigned char *buf;
            if (!(rc = read_all(j->st, t->ref, &buf, err))) {
                rc = ct_write_full(fd, buf, t->nbytes, label, err);
                free(buf);
            }
        } else {
            rc = ct_write_full(fd, t->data, t->nbytes, label, err);
        }
    }
    return rc;
}

static int is_float(ct_dtype d) { return d == CT_F32 || d == CT_BF16 || d == CT_F16 || d == CT_F64; }

int ct_compress_file(const char *src, const char *dst, const char *cj, size_t cl, const char *label, int force,
                     ct_err *err)
{
    int rc;
    ct_config *cfg = NULL;
    ct_st *st = NULL;
    outs o = {0};
    ct_strmap *used = NULL;
    char *hdr = NULL, *qc = NULL;
    struct stat sb;
    if (!force && lstat(dst, &sb) == 0)
        return ct_fail(err, CT_EEXIST, "%s: already exists (use --force to replace it)", dst);
    if ((rc = ct_config_parse(cj, cl, label, &cfg, err)))
        return rc;
    if (!cfg) {
        rc = ct_fail(err, CT_EFORMAT, "%s: holds no compression config", label);
        goto out;
    }
    if ((rc = ct_st_open(src, &st, err)))
        goto out;
    /* Pack in the layout the config's version implies, since readers pick
     * the layout from it; a config without a version gets this writer's. */
    int layout_b = cfg->version ? cfg->layout_b : 1;
    cJSON *qj = cJSON_Parse(cfg->json);
    if (qj && !cfg->version)
        cJSON_AddStringToObject(qj, "version", CT_WRITER_VERSION);
    qc = qj ? cJSON_PrintUnformatted(qj) : NULL;
    cJSON_Delete(qj);
    if (!qc || !(used = ct_strmap_new(ct_st_count(st)))) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < ct_st_count(st) && !rc; i++) {
        const ct_st_tensor *t = ct_st_get(st, i);
        size_t len = strlen(t->name);
        if (len <= 7 || strcmp(t->name + len - 7, ".weight") || t->ndim != 2 || !is_float(t->dtype))
            continue;
        char *module = strndup(t->name, len - 7);
        if (!module) {
            rc = ct_fail(err, CT_ENOMEM, "out of memory");
            break;
        }
        const ct_qgroup *g = ct_config_group_for(cfg, module);
        ct_format fmt = g && g->format ? g->format : cfg->format;
        int sparse = 0;
        if (cfg->has_sparsity && (cfg->sparse_format == CT_FMT_SPARSE_BITMASK || cfg->sparse_format == CT_FMT_SPARSE_24)) {
            int ign = 0, tgt = cfg->sparse_targets_null;
            for (size_t j = 0; j < cfg->n_sparse_ignore; j++)
                ign |= ct_target_match(cfg->sparse_ignore[j], module, 0) == 1;
            for (size_t j = 0; j < cfg->n_sparse_targets; j++)
                tgt |= ct_target_match(cfg->sparse_targets[j], module, 1) == 1;
            sparse = tgt && !ign;
        } else if (cfg->has_sparsity) {
            rc = ct_fail(err, CT_EUNSUPPORTED, "writing %s is not implemented yet", ct_format_name(cfg->sparse_format));
        }
        if (!rc && g && g->has_weights) {
            if (fmt != CT_FMT_PACK && fmt != CT_FMT_INT && fmt != CT_FMT_NAIVE && fmt != CT_FMT_FLOAT)
                rc = ct_fail(err, CT_EUNSUPPORTED, "writing %s is not implemented yet", ct_format_name(fmt));
            else
                rc = quantize_module(st, module, t, g, fmt, layout_b, &o, used, err);
            ct_strmap_put(used, t->name, 1);
        } else if (!rc && sparse) {
            rc = cfg->sparse_format == CT_FMT_SPARSE_24 ? sparse24_module(st, module, t, &o, err)
                                                         : sparse_module(st, module, t, &o, err);
            ct_strmap_put(used, t->name, 1);
        }
        free(module);
    }
    if (rc)
        goto out;
    /* everything else passes through */
    for (size_t i = 0; i < ct_st_count(st); i++) {
        const ct_st_tensor *t = ct_st_get(st, i);
        if (ct_strmap_get(used, t->name, NULL))
            continue;
        out_t *p = push(&o, t->name, t->dtype, t->ndim, t->shape);
        if (!p) {
            rc = ct_fail(err, CT_ENOMEM, "out of memory");
            goto out;
        }
        p->ref = t;
    }
    /* reference layout; metadata describes the file */
    ct_st_entry *e = calloc(o.n + 1, sizeof *e);
    if (!e) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < o.n; i++) {
        e[i].name = o.v[i].name;
        e[i].dtype = o.v[i].dtype;
        e[i].ndim = o.v[i].ndim;
        memcpy(e[i].shape, o.v[i].shape, sizeof e[i].shape);
        e[i].nbytes = o.v[i].nbytes;
        e[i].user = i;
    }
    const char *mk[2] = {"format", "quantization_config"}, *mv[2] = {"pt", qc};
    size_t hl;
    rc = ct_st_layout(e, o.n, mk, mv, 2, &hdr, &hl, err);
    if (!rc) {
        struct file_job job = {st, &o, e, hdr, hl};
        rc = ct_write_file_atomic(dst, fill_compressed_file, &job, err);
    }
    free(e);
out:
    for (size_t i = 0; i < o.n; i++) {
        free(o.v[i].name);
        free(o.v[i].data);
    }
    free(o.v);
    free(hdr);
    free(qc);
    ct_strmap_free(used);
    ct_st_close(st);
    ct_config_free(cfg);
    return rc;
}

/* The quantization_config object mkct writes (the config, with a version). */
static cJSON *target_qc(const char *cj, size_t cl, const char *label, ct_err *err)
{
    ct_config *cfg = NULL;
    int rc = ct_config_parse(cj, cl, label, &cfg, err);
    if (rc)
        return NULL;
    if (!cfg) {
        ct_fail(err, CT_EFORMAT, "%s: holds no compression config", label);
        return NULL;
    }
    cJSON *qj = cJSON_Parse(cfg->json);
    if (qj && !cfg->version)
        cJSON_AddStringToObject(qj, "version", CT_WRITER_VERSION);
    ct_config_free(cfg);
    if (!qj)
        ct_fail(err, CT_ENOMEM, "out of memory");
    return qj;
}

static int write_text(const char *dir, const char *name, const char *text, size_t len, ct_err *err)
{
    char *p = ct_path_join(dir, name);
    if (!p)
        return ct_fail(err, CT_ENOMEM, "out of memory");
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), rc;
    rc = fd < 0 ? ct_fail(err, CT_EIO, "%s: %s", p, strerror(errno)) : ct_write_full(fd, text, len, p, err);
    if (fd >= 0 && close(fd) != 0 && !rc)
        rc = ct_fail(err, CT_EIO, "%s: %s", p, strerror(errno));
    free(p);
    return rc;
}

static int compress_dir_into(const char *src, const char *tmp, const char *cj, size_t cl, const char *label,
                             ct_err *err)
{
    int rc = 0;
    char *ixp = ct_path_join(src, "model.safetensors.index.json"), *text = NULL;
    cJSON *index = NULL, *qj = NULL, *cfgj = NULL, *out_index = NULL;
    char **shards = NULL;
    size_t nsh = 0;
    struct stat sb;
    if (!ixp) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    if (stat(ixp, &sb) == 0) {
        size_t len;
        if ((rc = ct_read_file(ixp, 256u << 20, &text, &len, err)))
            goto out;
        index = cJSON_ParseWithLength(text, len);
        const cJSON *wm = index ? cJSON_GetObjectItemCaseSensitive(index, "weight_map") : NULL, *e;
        if (!wm || !cJSON_IsObject(wm)) {
            rc = ct_fail(err, CT_EFORMAT, "%s: not JSON with a \"weight_map\" object", ixp);
            goto out;
        }
        shards = calloc((size_t)cJSON_GetArraySize(wm) + 1, sizeof *shards);
        cJSON_ArrayForEach(e, wm) {
            if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || e->valuestring[0] == '.') {
                rc = ct_fail(err, CT_EFORMAT, "%s: bad shard name for '%s'", ixp, e->string);
                goto out;
            }
            size_t k;
            for (k = 0; k < nsh && strcmp(shards[k], e->valuestring); k++)
                ;
            if (k == nsh)
                shards[nsh++] = e->valuestring;
        }
    } else {
        shards = calloc(2, sizeof *shards);
        shards[nsh++] = "model.safetensors";
    }
    out_index = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(out_index, "metadata"), *owm = cJSON_AddObjectToObject(out_index, "weight_map");
    uint64_t total = 0;
    for (size_t i = 0; i < nsh && !rc; i++) {
        char *from = ct_path_join(src, shards[i]), *to = ct_path_join(tmp, shards[i]);
        rc = from && to ? ct_compress_file(from, to, cj, cl, label, 0, err) : ct_fail(err, CT_ENOMEM, "out of memory");
        ct_st *st = NULL;
        if (!rc && !(rc = ct_st_open(to, &st, err))) {
            for (size_t t = 0; t < ct_st_count(st); t++) {
                const ct_st_tensor *x = ct_st_get(st, t);
                total += x->end - x->begin;
                cJSON_AddStringToObject(owm, x->name, shards[i]);
            }
            ct_st_close(st);
        }
        free(from);
        free(to);
    }
    if (rc)
        goto out;
    ct_buf b = {0};
    if (index) {
        cJSON_AddNumberToObject(meta, "total_size", (double)total);
        if (ct_pyjson_write(&b, out_index, 1) || ct_buf_putc(&b, '\n'))
            rc = ct_fail(err, CT_ENOMEM, "out of memory");
        if (!rc)
            rc = write_text(tmp, "model.safetensors.index.json", b.data, b.len, err);
        ct_buf_free(&b);
    }
    /* config.json: the source's, with the compression config */
    if (!rc && !(qj = target_qc(cj, cl, label, err)))
        rc = err ? err->code : CT_EFORMAT;
    if (!rc) {
        char *cp = ct_path_join(src, "config.json"), *ct = NULL;
        size_t len;
        if (cp && stat(cp, &sb) == 0 && !(rc = ct_read_file(cp, 64u << 20, &ct, &len, err))) {
            cfgj = cJSON_ParseWithLength(ct, len);
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
            cJSON_AddItemToObject(cfgj, "quantization_config", qj);
            qj = NULL;
            if (ct_pyjson_write(&b, cfgj, 1) || ct_buf_putc(&b, '\n'))
                rc = ct_fail(err, CT_ENOMEM, "out of memory");
            if (!rc)
                rc = write_text(tmp, "config.json", b.data, b.len, err);
            ct_buf_free(&b);
        }
    }
    /* everything else as is */
    DIR *d = rc ? NULL : opendir(src);
    struct dirent *de;
    while (!rc && d && (de = readdir(d))) {
        const char *n = de->d_name;
        int skip = n[0] == '.' || !strcmp(n, "config.json") || !strcmp(n, "model.safetensors.index.json");
        for (size_t i = 0; i < nsh && !skip; i++)
            skip = !strcmp(n, shards[i]);
        if (skip)
            continue;
        char *from = ct_path_join(src, n), *to = ct_path_join(tmp, n);
        if (from && to && stat(from, &sb) == 0 && S_ISREG(sb.st_mode))
            rc = ct_copy_file(from, to, err);
        free(from);
        free(to);
    }
    if (d)
        closedir(d);
out:
    free(ixp);
    free(text);
    free(shards);
    cJSON_Delete(index);
    cJSON_Delete(qj);
    cJSON_Delete(cfgj);
    cJSON_Delete(out_index);
    return rc;
}

struct dir_job {
    const char *src, *cj;
    size_t cl;
    const char *label;
};

static int fill_compressed_dir(const char *tmpdir, void *arg, ct_err *err)
{
    struct dir_job *j = arg;
    return compress_dir_into(j->src, tmpdir, j->cj, j->cl, j->label, err);
}

int ct_compress_dir(const char *src, const char *dst, const char *cj, size_t cl, const char *label, int force,
                    ct_err *err)
{
    struct stat sb;
    int exists = lstat(dst, &sb) == 0;
    if (exists && !force)
        return ct_fail(err, CT_EEXIST, "%s: already exists (use --force to replace it)", dst);
    if (exists && !S_ISDIR(sb.st_mode))
        return ct_fail(err, CT_EEXIST, "%s: exists and is not a directory; refusing to replace it", dst);
    struct dir_job job = {src, cj, cl, label};
    return ct_write_dir_atomic(dst, exists, fill_compressed_dir, &job, err);
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
    ct_st *sst = NULL;
    ct_source *out = NULL;
    struct stat sb;
    int rc;
    if (stat(src, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        ct_source *s;
        /* a directory: compare the dense views tensor by tensor */
        if ((rc = ct_source_open(src, NULL, &s, err)))
            return rc;
        ct_source_close(s);
        return ct_fail(err, CT_EUNSUPPORTED, "verify: directory sources are not supported yet");
    }
    if ((rc = ct_st_open(src, &sst, err)) || (rc = ct_source_open(dst, NULL, &out, err)))
        goto out;
    size_t checked = 0;
    for (size_t i = 0; i < ct_st_count(sst) && !rc; i++) {
        const ct_st_tensor *t = ct_st_get(sst, i);
        long oi = ct_source_find(out, t->name);
        if (oi < 0)
            continue;   /* quantization parameters and other consumed pieces */
        rc = verify_one(sst, t, out, (size_t)oi, err);
        checked++;
    }
    if (!rc && checked == 0)
        rc = ct_fail(err, CT_EFORMAT, "verify: no tensor of the source is in the output");
out:
    ct_source_close(out);
    ct_st_close(sst);
    return rc;
}
