#include "config.h"
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include "source_priv.h"
#include "decode.h"
#include "ct/strmap.h"
#include "ct/pyjson.h"
#include "ct/util.h"

struct ct_source {
    char *path;
    char *dir;              /* directory holding config.json / shards */
    int is_dir;
    ct_st **files;
    char **names;
    size_t nfiles;
    ct_config *cfg;
    char origin[600];
    ct_dtensor *tensors;
    size_t n, cap;
    ct_strmap *byname;
    size_t *shard_idx;      /* tensor indexes grouped by shard, each group in name order: */
    size_t *shard_start;    /* shard f's are shard_idx[shard_start[f] .. shard_start[f + 1]) */
    int keep_qparams, keep_act_qparams;
    size_t ndropped;        /* quantization parameters left out of the dense view, */
    uint64_t dropped_bytes; /* not counted in any decoded tensor's stored bytes */
    cJSON *index_meta;      /* the index's "metadata" object (numbers with their text), or NULL */
};

/* Parameter suffixes that group stored tensors into modules (note §1.1). */
enum {
    P_COMPRESSED, P_BITMASK, P_SHAPE, P_ROW_OFFSETS, P_WEIGHT_PACKED, P_WEIGHT_SCALE,
    P_WEIGHT_ZP, P_WEIGHT_G_IDX, P_WEIGHT_SHAPE, P_WEIGHT_GSCALE, P_WEIGHT, P_INPUT_SCALE,
    P_INPUT_ZP, P_INPUT_GSCALE, P_OUTPUT_SCALE, P_OUTPUT_ZP, P_K_SCALE, P_V_SCALE, P_Q_SCALE,
    P_SCALE_PACKED, P_META, NPARAM
};
static const char *const param_names[NPARAM] = {
    "compressed", "bitmask", "shape", "row_offsets", "weight_packed", "weight_scale",
    "weight_zero_point", "weight_g_idx", "weight_shape", "weight_global_scale", "weight",
    "input_scale", "input_zero_point", "input_global_scale", "output_scale", "output_zero_point",
    "k_scale", "v_scale", "q_scale", "scale_packed", "meta",
};
/* Quantization parameters of activations and the kv cache (a subset of
 * qparam_mask, below): kept with keep_activation_qparams. */
static const unsigned long act_qparam_mask =
    1ul << P_INPUT_SCALE | 1ul << P_INPUT_ZP | 1ul << P_INPUT_GSCALE | 1ul << P_OUTPUT_SCALE
    | 1ul << P_OUTPUT_ZP | 1ul << P_K_SCALE | 1ul << P_V_SCALE | 1ul << P_Q_SCALE;
/* Quantization parameters: dropped from the dense view unless kept. */
static const unsigned long qparam_mask =
    1ul << P_WEIGHT_SCALE | 1ul << P_WEIGHT_ZP | 1ul << P_WEIGHT_G_IDX | 1ul << P_WEIGHT_GSCALE
    | 1ul << P_INPUT_SCALE | 1ul << P_INPUT_ZP | 1ul << P_INPUT_GSCALE | 1ul << P_OUTPUT_SCALE
    | 1ul << P_OUTPUT_ZP | 1ul << P_K_SCALE | 1ul << P_V_SCALE | 1ul << P_Q_SCALE;

typedef struct module {
    char *prefix;
    ct_ref slot[NPARAM];
    size_t file[NPARAM];
    unsigned long used;     /* slots consumed by a decoded tensor */
} module;

static int split_name(const char *name, size_t *prefix_len)
{
    size_t len = strlen(name);
    int best = -1;
    size_t best_len = 0;
    for (int p = 0; p < NPARAM; p++) {
        size_t k = strlen(param_names[p]);
        if (len > k + 1 && name[len - k - 1] == '.' && strcmp(name + len - k, param_names[p]) == 0
            && k > best_len) {
            best = p;
            best_len = k;
        }
    }
    if (best >= 0)
        *prefix_len = len - best_len - 1;
    return best;
}

/* ---------------------------------------------------------------- */

void ct_source_close(ct_source *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        if (!s->tensors[i].name_borrowed)
            free((char *)s->tensors[i].info.name);
        free(s->tensors[i].r.row_start);
        pthread_mutex_destroy(&s->tensors[i].r.lock);
    }
    ct_big_free(s->tensors);
    for (size_t i = 0; i < s->nfiles; i++) {
        ct_st_close(s->files[i]);
        free(s->names[i]);
    }
    free(s->files);
    free(s->names);
    ct_config_free(s->cfg);
    ct_strmap_free(s->byname);
    cJSON_Delete(s->index_meta);
    ct_big_free(s->shard_idx);
    free(s->shard_start);
    free(s->path);
    free(s->dir);
    free(s);
}

/* Open shard dir/name (or, given, the path the user named: messages then
 * show it as typed). */
static int add_file(ct_source *s, const char *dir, const char *name, const char *as_given, ct_err *err)
{
    char *path = as_given ? strdup(as_given) : ct_path_join(dir, name);
    if (!path)
        return ct_fail(err, CT_ENOMEM, "out of memory");
    ct_st **f = realloc(s->files, (s->nfiles + 1) * sizeof *f);
    char **nm = f ? realloc(s->names, (s->nfiles + 1) * sizeof *nm) : NULL;
    if (f)
        s->files = f;
    if (nm)
        s->names = nm;
    if (!f || !nm) {
        free(path);
        return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    int rc = ct_st_open(path, &s->files[s->nfiles], err);
    free(path);
    if (rc)
        return rc;
    if (!(s->names[s->nfiles] = strdup(name))) {
        ct_st_close(s->files[s->nfiles]);
        return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    s->nfiles++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int open_index(ct_source *s, const char *index_path, ct_err *err)
{
    char *text = NULL;
    size_t len;
    int rc = ct_read_file(index_path, 256u << 20, &text, &len, err);
    if (rc)
        return rc;
    cJSON *root = ct_pyjson_parse(text, len);
    free(text);
    char **shards = NULL;
    size_t nsh = 0;
    ct_strmap *files = NULL;
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!wm || !cJSON_IsObject(wm)) {
        rc = ct_fail(err, CT_EFORMAT, "%s: not JSON with a \"weight_map\" object", index_path);
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(wm);
    shards = calloc(n + 1, sizeof *shards);
    if (!shards) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e)) {
            rc = ct_fail(err, CT_EFORMAT, "%s: weight_map entry '%s' is not a file name", index_path, e->string);
            goto out;
        }
        const char *f = e->valuestring;
        if (!*f || strchr(f, '/') || f[0] == '.') {
            rc = ct_fail(err, CT_EFORMAT, "%s: shard name '%s' must be a plain file name in the model directory",
                         index_path, f);
            goto out;
        }
        shards[nsh++] = e->valuestring;
    }
    qsort(shards, nsh, sizeof *shards, cmp_str);
    for (size_t i = 0; i < nsh; i++)
        if ((i == 0 || strcmp(shards[i], shards[i - 1])) && (rc = add_file(s, s->dir, shards[i], NULL, err)))
            goto out;
    /* Every listed tensor must be in the shard the index names. */
    if (!(files = ct_strmap_new(s->nfiles))) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < s->nfiles; k++)
        if (ct_strmap_put(files, s->names[k], k) < 0) {
            rc = ct_fail(err, CT_ENOMEM, "out of memory");
            goto out;
        }
    cJSON_ArrayForEach(e, wm) {
        size_t k;
        if (!ct_strmap_get(files, e->valuestring, &k) || ct_st_find(s->files[k], e->string) < 0) {
            rc = ct_fail(err, CT_EFORMAT, "%s: index puts tensor '%s' in %s, which does not hold it",
                         index_path, e->string, e->valuestring);
            goto out;
        }
    }
    /* kept for the rewritten index (newer transformers write total_parameters) */
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (cJSON_IsObject(meta))
        s->index_meta = cJSON_DetachItemViaPointer(root, meta);
out:
    ct_strmap_free(files);
    free(shards);
    cJSON_Delete(root);
    return rc;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int open_files(ct_source *s, ct_err *err)
{
    struct stat sb;
    if (stat(s->path, &sb) != 0)
        return ct_fail(err, CT_EIO, "%s: %s", s->path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        char *tmp = strdup(s->path), *tmp2 = strdup(s->path);
        if (!tmp || !tmp2) {
            free(tmp);
            free(tmp2);
            return ct_fail(err, CT_ENOMEM, "out of memory");
        }
        s->dir = strdup(dirname(tmp));
        int rc = s->dir ? add_file(s, s->dir, basename(tmp2), s->path, err) : ct_fail(err, CT_ENOMEM, "out of memory");
        free(tmp);
        free(tmp2);
        return rc;
    }
    s->is_dir = 1;
    if (!(s->dir = strdup(s->path)))
        return ct_fail(err, CT_ENOMEM, "out of memory");
    char *index = ct_path_join(s->dir, "model.safetensors.index.json");
    char *single = ct_path_join(s->dir, "model.safetensors");
    int rc;
    if (!index || !single)
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
    else if (file_exists(index))
        rc = open_index(s, index, err);
    else if (file_exists(single))
        rc = add_file(s, s->dir, "model.safetensors", NULL, err);
    else {
        /* a directory with exactly one .safetensors file */
        DIR *d = opendir(s->dir);
        char *found = NULL;
        int count = 0;
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (ct_has_suffix(de->d_name, ".safetensors") && de->d_name[0] != '.') {
                count++;
                free(found);
                found = strdup(de->d_name);
            }
        }
        if (d)
            closedir(d);
        if (count == 1 && found)
            rc = add_file(s, s->dir, found, NULL, err);
        else
            rc = ct_fail(err, CT_EFORMAT, "%s: no model.safetensors, no model.safetensors.index.json%s",
                         s->dir, count > 1 ? ", and several .safetensors files" : " and no .safetensors file");
        free(found);
    }
    free(index);
    free(single);
    return rc;
}

static int find_config(ct_source *s, const ct_open_opts *o, ct_err *err)
{
    char *text = NULL;
    size_t len;
    int rc;
    if (o && o->config_path) {
        if ((rc = ct_read_file(o->config_path, 64u << 20, &text, &len, err)))
            return rc;
        rc = ct_config_parse(text, len, o->config_path, &s->cfg, err);
        free(text);
        if (!rc && !s->cfg)
            rc = ct_fail(err, CT_EFORMAT, "%s: holds no compression config", o->config_path);
        snprintf(s->origin, sizeof s->origin, "%s", o->config_path);
        return rc;
    }
    char *cj = ct_path_join(s->dir, "config.json");
    if (!cj)
        return ct_fail(err, CT_ENOMEM, "out of memory");
    if (file_exists(cj)) {
        rc = ct_read_file(cj, 64u << 20, &text, &len, err);
        if (!rc)
            rc = ct_config_parse(text, len, cj, &s->cfg, err);
        free(text);
        if (!rc && s->cfg)
            snprintf(s->origin, sizeof s->origin, "%s", cj);
        free(cj);
        if (rc || s->cfg)
            return rc;
    } else {
        free(cj);
    }
    for (size_t i = 0; i < s->nfiles; i++) {
        const char *q = ct_st_meta_get(s->files[i], "quantization_config");
        if (q) {
            char label[512];
            snprintf(label, sizeof label, "%s: __metadata__.quantization_config", ct_st_path(s->files[i]));
            rc = ct_config_parse(q, strlen(q), label, &s->cfg, err);
            if (rc)
                return rc;
            if (s->cfg) {
                snprintf(s->origin, sizeof s->origin, "%s", label);
                return 0;
            }
        }
    }
    snprintf(s->origin, sizeof s->origin, "none found: formats inferred from tensor names");
    return 0;
}

/* ---------------------------------------------------------------- */

/* The next entry of the dense table, which build() sized for every stored
 * tensor (each dense tensor consumes at least one) and zeroed. */
static ct_dtensor *new_tensor(ct_source *s, ct_err *err)
{
    if (s->n == s->cap) {
        ct_fail(err, CT_EFORMAT, "more dense tensors than stored ones (internal error)");
        return NULL;
    }
    return &s->tensors[s->n++];
}

static int add_pass(ct_source *s, const ct_ref *ref, size_t file, ct_err *err)
{
    ct_dtensor *t = new_tensor(s, err);
    if (!t)
        return CT_EFORMAT;
    t->info.name = ref->t->name;     /* the shard outlives the source's tables */
    t->name_borrowed = 1;
    t->info.dtype = ref->t->dtype;
    t->info.ndim = ref->t->ndim;
    memcpy(t->info.shape, ref->t->shape, sizeof t->info.shape);
    t->info.nbytes = t->info.stored_bytes = ref->t->end - ref->t->begin;
    t->info.format = "dense";
    t->info.shard = file;
    t->r.kind = CT_K_PASS;
    t->r.main = *ref;
    return 0;
}

/* Read a small I64/I32 shape tensor. */
static int read_shape(const ct_ref *ref, const char *what, int64_t *dims, int *ndim, ct_err *err)
{
    const ct_st_tensor *t = ref->t;
    if ((t->dtype != CT_I64 && t->dtype != CT_I32) || t->numel > CT_MAX_DIMS)
        return ct_fail(err, CT_EFORMAT, "%s: '%s' must be an I64 vector of at most %d dimensions (is %s with %"
                       PRIu64 " elements)", ct_st_path(ref->st), t->name, CT_MAX_DIMS, ct_dtype_name(t->dtype),
                       t->numel);
    int rc = ct_load_ints_ref(ref, 0, t->numel, dims, err);
    if (rc)
        return rc;
    for (uint64_t i = 0; i < t->numel; i++)
        if (dims[i] < 0)
            return ct_fail(err, CT_EFORMAT, "%s: %s '%s' holds a negative dimension", ct_st_path(ref->st), what,
                           t->name);
    *ndim = (int)t->numel;
    (void)what;
    return 0;
}

static const char *format_label(const ct_recipe *r)
{
    static const char *const quant[] = {
        [CT_K_PACK] = "pack-quantized", [CT_K_INT] = "int-quantized", [CT_K_FP8] = "float-quantized",
        [CT_K_NVFP4] = "nvfp4-pack-quantized", [CT_K_MXFP4] = "mxfp4-pack-quantized",
        [CT_K_MXFP8] = "mxfp8-quantized",
    };
    if (r->kind == CT_K_PASS)
        return "dense";
    if (r->kind == CT_K_SPARSE)
        return r->sparse == CT_SP_24 ? "sparse-24-bitmask" : "sparse-bitmask";
    if (r->sparse == CT_SP_24)
        return r->kind == CT_K_FP8 ? "sparse-24-bitmask+float-quantized" : "sparse-24-bitmask+int-quantized";
    if (r->sparse)
        return r->kind == CT_K_FP8 ? "sparse-bitmask+float-quantized" : "sparse-bitmask+int-quantized";
    return quant[r->kind];
}

static int64_t ceil_div(int64_t a, int64_t b) { return b ? (a + b - 1) / b : 0; }

/* Fill the scale/zero-point geometry of a quantized recipe and check every
 * stored shape against it. */
static int setup_quant(const ct_source *s, const module *m, ct_dtensor *t, const ct_qargs *args, ct_err *err)
{
    ct_recipe *r = &t->r;
    const char *name = t->info.name;
    uint64_t R = r->rows_per_expert, C = r->cols, E = R ? r->rows / R : 0;
    const ct_st_tensor *sc = r->scale.t;
    if (!sc)
        return ct_fail(err, CT_EFORMAT, "%s: no weight_scale for quantized weight", name);
    uint64_t sn = sc->numel, k = sc->ndim >= 2 ? (uint64_t)sc->shape[sc->ndim - 1] : 1;
    uint64_t S0 = k ? sn / k : 0;
    ct_strategy st = args && args->strategy ? args->strategy : CT_STRAT_UNSET;
    if (r->kind == CT_K_NVFP4)
        st = CT_STRAT_TENSOR_GROUP;
    if (r->kind == CT_K_MXFP4 || r->kind == CT_K_MXFP8)
        st = CT_STRAT_GROUP;
    if (!st) {
        if (sn == E)
            st = CT_STRAT_TENSOR;
        else if (k == 1 && S0 == E * R)
            st = CT_STRAT_CHANNEL;
        else if (S0 == E * R)
            st = CT_STRAT_GROUP;
        else
            st = CT_STRAT_BLOCK;
    }
    if (st == CT_STRAT_TENSOR_GROUP)
        st = CT_STRAT_GROUP;
    r->strategy = st;
    switch (st) {
    case CT_STRAT_TENSOR:
        r->scale_rows_per_expert = 1;
        r->scale_cols = 1;
        r->gs = C ? C : 1;
        if (sn != E)
            goto bad_scale;
        break;
    case CT_STRAT_CHANNEL:
        r->scale_rows_per_expert = R;
        r->scale_cols = 1;
        r->gs = C ? C : 1;
        if (sn != E * R)
            goto bad_scale;
        break;
    case CT_STRAT_GROUP: {
        r->scale_rows_per_expert = R;
        r->scale_cols = k;
        uint64_t gs = args && args->group_size > 0 ? (uint64_t)args->group_size : (k ? (C + k - 1) / k : 0);
        if (!gs || S0 != E * R || k != (uint64_t)ceil_div((int64_t)C, (int64_t)gs))
            goto bad_scale;
        if (C % gs && !m->slot[P_WEIGHT_G_IDX].t && r->kind != CT_K_INT && r->kind != CT_K_FP8 && r->kind != CT_K_PACK)
            goto bad_scale;
        r->gs = gs;
        break;
    }
    case CT_STRAT_BLOCK: {
        uint64_t bh = args && args->block[0] > 0 ? (uint64_t)args->block[0] : 0;
        uint64_t bw = args && args->block[1] > 0 ? (uint64_t)args->block[1] : 0;
        uint64_t s0pe = E ? S0 / E : 0;
        if (!bh && s0pe)
            bh = (R + s0pe - 1) / s0pe;
        if (!bw && k)
            bw = (C + k - 1) / k;
        if (!bh || !bw || s0pe != (uint64_t)ceil_div((int64_t)R, (int64_t)bh)
            || k != (uint64_t)ceil_div((int64_t)C, (int64_t)bw) || S0 != E * s0pe)
            goto bad_scale;
        r->bh = bh;
        r->bw = bw;
        r->gs = bw;
        r->scale_rows_per_expert = s0pe;
        r->scale_cols = k;
        break;
    }
    default:
        return ct_fail(err, CT_EUNSUPPORTED, "%s: weight strategy %d cannot be decoded", name, (int)st);
    }
    /* output dtype */
    switch (r->kind) {
    case CT_K_NVFP4: case CT_K_MXFP4: case CT_K_MXFP8:
        t->info.dtype = CT_BF16;
        if ((r->kind == CT_K_NVFP4 && sc->dtype != CT_F8_E4M3) || (r->kind != CT_K_NVFP4 && sc->dtype != CT_U8 &&
                                                                   sc->dtype != CT_F8_E8M0))
            return ct_fail(err, CT_EFORMAT, "%s: weight_scale has dtype %s, not what %s uses", name,
                           ct_dtype_name(sc->dtype), format_label(r));
        break;
    default:
        if (sc->dtype != CT_F32 && sc->dtype != CT_BF16 && sc->dtype != CT_F16)
            return ct_fail(err, CT_EUNSUPPORTED, "%s: weight_scale dtype %s (expected F32, BF16 or F16)", name,
                           ct_dtype_name(sc->dtype));
        t->info.dtype = sc->dtype;
    }
    if (r->kind == CT_K_NVFP4) {
        const ct_st_tensor *g = r->gscale.t;
        if (!g || g->numel != 1 || (g->dtype != CT_F32 && g->dtype != CT_BF16 && g->dtype != CT_F16))
            return ct_fail(err, CT_EFORMAT, "%s: weight_global_scale must be one float", name);
    }
    /* zero point */
    const ct_st_tensor *zp = r->zp.t;
    if (zp) {
        if (r->kind == CT_K_PACK && zp->dtype == CT_I32 && st != CT_STRAT_TENSOR) {
            uint64_t Wz = r->layout_b ? (R * (uint64_t)r->nbits + 31) / 32 : (R + 32 / r->nbits - 1) / (32 / r->nbits);
            r->zp_packed = 1;
            r->zp_rows_per_expert = Wz;
            if (zp->numel != E * Wz * k)
                return ct_fail(err, CT_EFORMAT, "%s: packed weight_zero_point has %" PRIu64 " elements, expected %"
                               PRIu64 " (%" PRIu64 " words x %" PRIu64 " groups per expert)", name, zp->numel,
                               E * Wz * k, Wz, k);
        } else {
            if (zp->numel != sn || zp->dtype == CT_F32 || zp->dtype == CT_BF16 || zp->dtype == CT_F16
                || zp->dtype == CT_F8_E4M3)
                return ct_fail(err, CT_EFORMAT, "%s: weight_zero_point %s with %" PRIu64
                               " elements does not match weight_scale (%" PRIu64 ")", name,
                               ct_dtype_name(zp->dtype), zp->numel, sn);
        }
    }
    if (r->g_idx.t) {
        if (r->g_idx.t->numel != C || ct_dtype_bits(r->g_idx.t->dtype) < 8 || r->g_idx.t->dtype > CT_U64)
            return ct_fail(err, CT_EFORMAT, "%s: weight_g_idx must hold one group index per column (%" PRIu64 ")",
                           name, C);
        if (st != CT_STRAT_GROUP)
            return ct_fail(err, CT_EFORMAT, "%s: weight_g_idx given for a non-group strategy", name);
    }
    (void)s;
    return 0;
bad_scale:;
    char sh[256];
    return ct_fail(err, CT_EFORMAT, "%s: weight_scale shape %s does not fit a %s-strategy scale for a [%" PRIu64
                   ", %" PRIu64 "] weight%s", name, ct_shape_str(sh, sizeof sh, sc->ndim, sc->shape),
                   st == CT_STRAT_TENSOR ? "tensor" : st == CT_STRAT_CHANNEL ? "channel" : st == CT_STRAT_GROUP ? "group" : "block",
                   R, C, E > 1 ? " per expert" : "");
}

static int infer_bits(uint64_t C, uint64_t W, int layout_b)
{
    int found = 0;
    for (int nb = 1; nb <= 8; nb++) {
        uint64_t w = layout_b || 32 % nb == 0 ? (C * (uint64_t)nb + 31) / 32 : (C + 32 / nb - 1) / (32 / nb);
        if (w == W) {
            if (found)
                return -1;
            found = nb;
        }
    }
    return found ? found : -1;
}

static int dense_dims(ct_dtensor *t, ct_err *err)
{
    uint64_t numel;
    int rc = ct_tensor_nbytes(t->info.dtype, t->info.ndim, t->info.shape, &numel, &t->info.nbytes, err);
    if (rc)
        return ct_err_prefix(err, "tensor '%s': ", t->info.name);
    uint64_t C = t->info.ndim ? (uint64_t)t->info.shape[t->info.ndim - 1] : 1;
    t->r.cols = C;
    t->r.rows = C ? numel / C : 0;
    if (!t->r.rows_per_expert)
        t->r.rows_per_expert = t->r.rows;
    return 0;
}

static int build_sparse(ct_source *s, module *m, ct_dtensor *t, ct_err *err)
{
    ct_recipe *r = &t->r;
    const char *last = strrchr(m->prefix, '.');
    const char *leaf = last ? last + 1 : m->prefix;
    int legacy = strcmp(leaf, "bias") == 0;
    for (int p = 0; p < NPARAM && !legacy; p++)
        legacy = strcmp(leaf, param_names[p]) == 0;
    ct_buf nb = {0};
    if (ct_buf_puts(&nb, m->prefix) || (!legacy && ct_buf_puts(&nb, ".weight")))
        return ct_fail(err, CT_ENOMEM, "out of memory");
    if (!(t->info.name = ct_buf_take(&nb)))
        return ct_fail(err, CT_ENOMEM, "out of memory");
    r->values = m->slot[P_COMPRESSED];
    r->bitmask = m->slot[P_BITMASK];
    t->info.shard = m->file[P_COMPRESSED];
    int rc = read_shape(&m->slot[P_SHAPE], "shape", t->info.shape, &t->info.ndim, err);
    if (rc)
        return ct_err_prefix(err, "tensor '%s': ", t->info.name);
    const ct_st_tensor *v = r->values.t, *bm = r->bitmask.t;
    unsigned bits = ct_dtype_bits(v->dtype);
    if (bits % 8)
        return ct_fail(err, CT_EUNSUPPORTED, "tensor '%s': sparse values of dtype %s are not supported", t->info.name,
                       ct_dtype_name(v->dtype));
    t->info.dtype = v->dtype;
    if ((rc = dense_dims(t, err)))
        return rc;
    uint64_t mb = (r->cols + 7) / 8, need;
    if (ct_mul_overflow_u64(r->rows, mb, &need) || bm->numel != need || (bm->dtype != CT_U8 && bm->dtype != CT_BOOL))
        return ct_fail(err, CT_EFORMAT, "tensor '%s': bitmask is %s with %" PRIu64 " bytes, expected U8 with %"
                       PRIu64 " rows of %" PRIu64 " bytes", t->info.name, ct_dtype_name(bm->dtype), bm->numel,
                       r->rows, mb);
    if (v->numel > r->rows * r->cols)
        return ct_fail(err, CT_EFORMAT, "tensor '%s': %" PRIu64 " stored values for %" PRIu64 " elements",
                       t->info.name, v->numel, r->rows * r->cols);
    const ct_ref *ro = &m->slot[P_ROW_OFFSETS];
    int is24 = !ro->t && ((s->cfg && s->cfg->sparse_format == CT_FMT_SPARSE_24)
                          || (m->slot[P_SHAPE].t->ndim == 2 && m->slot[P_SHAPE].t->shape[1] == 1));
    if (is24) {
        r->sparse = CT_SP_24;
        if (t->info.ndim != 2 || r->cols % 2 || v->numel != r->rows * (r->cols / 2))
            return ct_fail(err, CT_EFORMAT, "tensor '%s': 2:4 values must be [rows, cols/2] of a 2-D weight "
                           "(have %" PRIu64 " values for %" PRIu64 "x%" PRIu64 ")", t->info.name, v->numel,
                           r->rows, r->cols);
    } else {
        r->sparse = CT_SP_BITMASK;
        if (ro->t) {
            if (ro->t->dtype != CT_I64 && ro->t->dtype != CT_I32)
                return ct_fail(err, CT_EFORMAT, "tensor '%s': row_offsets must be I64", t->info.name);
            if (t->info.ndim == 2 && ro->t->numel == r->rows)
                r->row_offsets = *ro;   /* usable for random access */
            else if (ro->t->numel != (t->info.ndim ? r->rows : 1))
                return ct_fail(err, CT_EFORMAT, "tensor '%s': row_offsets has %" PRIu64 " entries for %" PRIu64
                               " rows", t->info.name, ro->t->numel, r->rows);
        }
    }
    m->used |= 1ul << P_COMPRESSED | 1ul << P_BITMASK | 1ul << P_SHAPE | 1ul << P_ROW_OFFSETS;
    t->info.stored_bytes = (v->end - v->begin) + (bm->end - bm->begin) + (m->slot[P_SHAPE].t->end - m->slot[P_SHAPE].t->begin)
                           + (ro->t ? ro->t->end - ro->t->begin : 0);
    r->kind = CT_K_SPARSE;
    return 0;
}

static const ct_qargs *module_args(const ct_source *s, const char *module_name, ct_format *fmt)
{
    *fmt = CT_FMT_UNSET;
    if (!s->cfg)
        return NULL;
    const ct_qgroup *g = ct_config_group_for(s->cfg, module_name);
    if (!g) {
        size_t with = 0;
        for (size_t i = 0; i < s->cfg->n_groups; i++)
            if (s->cfg->groups[i].has_weights) {
                with++;
                g = &s->cfg->groups[i];
            }
        if (with != 1)
            g = NULL;
    }
    *fmt = g && g->format ? g->format : s->cfg->format;
    return g && g->has_weights ? &g->weights : NULL;
}

static int build_module(ct_source *s, module *m, ct_err *err)
{
    int rc;
    ct_dtensor *t = NULL;
    int has_sparse = m->slot[P_COMPRESSED].t && m->slot[P_BITMASK].t && m->slot[P_SHAPE].t;
    /* The config is matched against the module only when it has compressed
     * pieces (a dense module needs none of it; matching costs a regexec
     * per "re:" pattern, and a large model has 100,000 modules). */
    ct_format fmt = CT_FMT_UNSET;
    const ct_qargs *args = NULL;
    if (m->slot[P_COMPRESSED].t || m->slot[P_BITMASK].t || m->slot[P_WEIGHT_PACKED].t || m->slot[P_WEIGHT_SCALE].t
        || m->slot[P_SCALE_PACKED].t || m->slot[P_META].t)
        args = module_args(s, m->prefix, &fmt);

    if (m->slot[P_SCALE_PACKED].t || m->slot[P_META].t || fmt == CT_FMT_MARLIN24)
        if (m->slot[P_WEIGHT_PACKED].t || m->slot[P_SCALE_PACKED].t)
            return ct_fail(err, CT_EUNSUPPORTED, "module '%s': marlin-24 is an unsupported format "
                           "(compress-only upstream; it cannot be decoded)", m->prefix);
    if (fmt == CT_FMT_UNKNOWN && (m->slot[P_WEIGHT_PACKED].t || m->slot[P_WEIGHT_SCALE].t || has_sparse))
        return ct_fail(err, CT_EUNSUPPORTED, "module '%s': unsupported format in the compression config",
                       m->prefix);
    if (!has_sparse && (m->slot[P_COMPRESSED].t || m->slot[P_BITMASK].t) && s->cfg && s->cfg->has_sparsity)
        return ct_fail(err, CT_EFORMAT, "module '%s': incomplete sparse tensor (needs .compressed, .bitmask "
                       "and .shape)", m->prefix);
    int quant_codes = 0;
    if (has_sparse) {
        if (!(t = new_tensor(s, err)))
            return CT_EFORMAT;
        if ((rc = build_sparse(s, m, t, err)))
            return rc;
        ct_dtype vd = t->r.values.t->dtype;
        if (m->slot[P_WEIGHT_SCALE].t && (vd == CT_I8 || vd == CT_F8_E4M3)) {
            t->r.kind = vd == CT_I8 ? CT_K_INT : CT_K_FP8;
            t->r.code_dtype = vd;
            quant_codes = 1;
        }
    } else if (m->slot[P_WEIGHT_PACKED].t) {
        const ct_st_tensor *wp = m->slot[P_WEIGHT_PACKED].t;
        if (!(t = new_tensor(s, err)))
            return CT_EFORMAT;
        ct_buf nb = {0};
        if (ct_buf_puts(&nb, m->prefix) || ct_buf_puts(&nb, ".weight"))
            return ct_fail(err, CT_ENOMEM, "out of memory");
        if (!(t->info.name = ct_buf_take(&nb)))
            return ct_fail(err, CT_ENOMEM, "out of memory");
        t->r.main = m->slot[P_WEIGHT_PACKED];
        t->info.shard = m->file[P_WEIGHT_PACKED];
        if (wp->dtype == CT_I32)
            t->r.kind = CT_K_PACK;
        else if (wp->dtype == CT_U8)
            t->r.kind = m->slot[P_WEIGHT_GSCALE].t ? CT_K_NVFP4 : CT_K_MXFP4;
        else
            return ct_fail(err, CT_EFORMAT, "tensor '%s': weight_packed has dtype %s (I32 or U8 expected)",
                           wp->name, ct_dtype_name(wp->dtype));
        if (m->slot[P_WEIGHT_SHAPE].t) {
            if ((rc = read_shape(&m->slot[P_WEIGHT_SHAPE], "weight_shape", t->info.shape, &t->info.ndim, err)))
                return rc;
            m->used |= 1ul << P_WEIGHT_SHAPE;
        } else if (t->r.kind != CT_K_PACK && wp->ndim >= 2) {
            t->info.ndim = wp->ndim;
            memcpy(t->info.shape, wp->shape, sizeof t->info.shape);
            t->info.shape[wp->ndim - 1] *= 2;
        } else {
            return ct_fail(err, CT_EFORMAT, "module '%s': weight_packed without weight_shape", m->prefix);
        }
        if (t->info.ndim != 2 && t->info.ndim != 3)
            return ct_fail(err, CT_EFORMAT, "tensor '%s': weight_shape must have 2 or 3 dimensions", t->info.name);
        quant_codes = 1;
    } else if (m->slot[P_WEIGHT].t && m->slot[P_WEIGHT_SCALE].t
               && (m->slot[P_WEIGHT].t->dtype == CT_I8 || m->slot[P_WEIGHT].t->dtype == CT_F8_E4M3)) {
        const ct_st_tensor *w = m->slot[P_WEIGHT].t;
        if (!(t = new_tensor(s, err)))
            return CT_EFORMAT;
        if (!(t->info.name = strdup(w->name)))
            return ct_fail(err, CT_ENOMEM, "out of memory");
        t->r.main = m->slot[P_WEIGHT];
        t->info.shard = m->file[P_WEIGHT];
        ct_dtype sd = m->slot[P_WEIGHT_SCALE].t->dtype;
        t->r.kind = w->dtype == CT_I8 ? CT_K_INT : (sd == CT_U8 || sd == CT_F8_E8M0) ? CT_K_MXFP8 : CT_K_FP8;
        t->info.ndim = w->ndim;
        memcpy(t->info.shape, w->shape, sizeof t->info.shape);
        if (w->ndim < 1)
            return ct_fail(err, CT_EFORMAT, "tensor '%s': quantized weight must have at least one dimension", w->name);
        m->used |= 1ul << P_WEIGHT;
        quant_codes = 1;
    }
    if (quant_codes) {
        ct_recipe *r = &t->r;
        r->scale = m->slot[P_WEIGHT_SCALE];
        r->zp = m->slot[P_WEIGHT_ZP];
        r->g_idx = m->slot[P_WEIGHT_G_IDX];
        r->gscale = m->slot[P_WEIGHT_GSCALE];
        r->layout_b = s->cfg ? s->cfg->layout_b : 1;
        t->info.dtype = CT_F32;   /* provisional, for the size check; set by setup_quant */
        if (t->info.ndim == 3)
            r->rows_per_expert = (uint64_t)t->info.shape[1];
        if ((rc = dense_dims(t, err)))
            return rc;
        if (r->kind == CT_K_PACK) {
            const ct_st_tensor *wp = r->main.t;
            uint64_t W = wp->ndim ? (uint64_t)wp->shape[wp->ndim - 1] : 0;
            int nb = args ? args->num_bits : 0;
            if (!nb)
                nb = infer_bits(r->cols, W, r->layout_b);
            if (nb < 1 || nb > 8)
                return ct_fail(err, nb < 0 ? CT_EFORMAT : CT_EUNSUPPORTED,
                               nb < 0 ? "tensor '%s': cannot tell num_bits from the packed shape; give the "
                                        "compression config (--config)"
                                      : "tensor '%s': %d-bit packed codes are not supported (1..8)",
                               t->info.name, nb);
            r->nbits = nb;
            uint64_t want = r->layout_b || 32 % nb == 0 ? (r->cols * (uint64_t)nb + 31) / 32
                                                         : (r->cols + 32 / nb - 1) / (32 / nb);
            if (wp->numel != r->rows * want || W != want)
                return ct_fail(err, CT_EFORMAT, "tensor '%s': weight_packed is %" PRIu64 " words, expected %"
                               PRIu64 " rows of %" PRIu64 " (%d-bit codes, %" PRIu64 " columns)", t->info.name,
                               wp->numel, r->rows, want, nb, r->cols);
            r->packed_cols = want;
        } else if (r->kind == CT_K_NVFP4 || r->kind == CT_K_MXFP4) {
            r->nbits = 4;
            r->packed_cols = (r->cols + 1) / 2;
            if (r->main.t->numel != r->rows * r->packed_cols)
                return ct_fail(err, CT_EFORMAT, "tensor '%s': weight_packed has %" PRIu64 " bytes, expected %"
                               PRIu64, t->info.name, r->main.t->numel, r->rows * r->packed_cols);
        } else if (!r->sparse) {
            if (r->main.t->numel != r->rows * r->cols)
                return ct_fail(err, CT_EFORMAT, "tensor '%s': codes do not match the weight shape", t->info.name);
            r->nbits = 8;
        } else {
            r->nbits = 8;
        }
        if ((rc = setup_quant(s, m, t, args, err)))
            return rc;
        if ((rc = dense_dims(t, err)))
            return rc;
        m->used |= 1ul << P_WEIGHT_PACKED | 1ul << P_WEIGHT_SCALE | 1ul << P_WEIGHT_ZP | 1ul << P_WEIGHT_G_IDX
                   | 1ul << P_WEIGHT_GSCALE;
        if (!r->sparse)
            t->info.stored_bytes = r->main.t->end - r->main.t->begin;
        for (int p = P_WEIGHT_SCALE; p <= P_WEIGHT_GSCALE; p++)
            if (m->slot[p].t && !(s->keep_qparams && p != P_WEIGHT_SHAPE))
                t->info.stored_bytes += m->slot[p].t->end - m->slot[p].t->begin;
    }
    if (t) {
        t->info.format = format_label(&t->r);
        if (quant_codes) {
            t->info.code_bits = t->r.nbits;
            t->info.code_float = t->r.kind == CT_K_FP8 || t->r.kind == CT_K_MXFP8 || t->r.kind == CT_K_NVFP4
                                 || t->r.kind == CT_K_MXFP4;
        }
    }
    /* Everything not consumed: pass through, or drop quantization params. */
    for (int p = 0; p < NPARAM; p++) {
        const ct_ref *ref = &m->slot[p];
        if (!ref->t)
            continue;
        if ((qparam_mask >> p) & 1ul) {
            if (!s->keep_qparams && !(s->keep_act_qparams && ((act_qparam_mask >> p) & 1ul))) {
                /* dropped; kept ones pass through as stored */
                if (!((m->used >> p) & 1ul)) {
                    s->ndropped++;
                    s->dropped_bytes += ref->t->end - ref->t->begin;
                }
                continue;
            }
        } else if ((m->used >> p) & 1ul) {
            continue;               /* consumed by the decoded tensor */
        }
        if ((rc = add_pass(s, ref, m->file[p], err)))
            return rc;
    }
    return 0;
}

static int cmp_dt(const void *a, const void *b)
{
    return strcmp(((const ct_dtensor *)a)->info.name, ((const ct_dtensor *)b)->info.name);
}

static int build(ct_source *s, ct_err *err)
{
    int rc = 0;
    size_t total = 0;
    for (size_t f = 0; f < s->nfiles; f++)
        total += ct_st_count(s->files[f]);
    ct_strmap *stored = ct_strmap_new(total), *mods = ct_strmap_new(total);
    /* Modules are gathered compactly (a whole `module` each took 520 bytes,
     * 52 MB of fresh memory for a model of 100,000 weights): each stored
     * piece notes its module and parameter, then the pieces are grouped by
     * module and each module is filled in and built in turn. */
    struct mod { char *prefix; size_t start, count; } *mv = ct_big_calloc(total + 1, sizeof *mv);
    struct piece { uint32_t file, mod; const ct_st_tensor *t; int param; } *pieces =
        ct_big_calloc(total + 1, sizeof *pieces);
    size_t *order = ct_big_calloc(total + 1, sizeof *order);
    size_t nm = 0, npieces = 0;
    module m;
    /* every dense tensor consumes at least one stored tensor: total is
     * enough (new_tensor), and the table never moves while it fills */
    s->tensors = ct_big_calloc(total + 1, sizeof *s->tensors);
    s->cap = total + 1;
    if (total > UINT32_MAX) {
        rc = ct_fail(err, CT_EUNSUPPORTED, "%zu stored tensors: at most %u supported", total, UINT32_MAX);
        goto out;
    }
    if (!stored || !mods || !mv || !pieces || !order || !s->tensors) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t f = 0; f < s->nfiles; f++) {
        for (size_t i = 0; i < ct_st_count(s->files[f]); i++) {
            const ct_st_tensor *t = ct_st_get(s->files[f], i);
            ct_ref ref = {s->files[f], t};
            if (ct_strmap_put(stored, t->name, f) == 1) {
                rc = ct_fail(err, CT_EFORMAT, "tensor '%s' is stored in two shards (%s and another)", t->name,
                             s->names[f]);
                goto out;
            }
            size_t plen;
            int p = split_name(t->name, &plen);
            if (p < 0) {
                if ((rc = add_pass(s, &ref, f, err)))
                    goto out;
                continue;
            }
            char *prefix = strndup(t->name, plen);
            if (!prefix) {
                rc = ct_fail(err, CT_ENOMEM, "out of memory");
                goto out;
            }
            size_t mi;
            if (ct_strmap_get(mods, prefix, &mi)) {
                free(prefix);
            } else {
                mi = nm++;
                mv[mi].prefix = prefix;
                if (ct_strmap_put(mods, prefix, mi) < 0) {
                    rc = ct_fail(err, CT_ENOMEM, "out of memory");
                    goto out;
                }
            }
            mv[mi].count++;
            pieces[npieces++] = (struct piece){(uint32_t)f, (uint32_t)mi, t, p};
        }
    }
    /* group the pieces by module (counting sort: start is where each
     * module's pieces begin in order, then where they end) */
    for (size_t i = 1; i < nm; i++)
        mv[i].start = mv[i - 1].start + mv[i - 1].count;
    for (size_t k = 0; k < npieces; k++)
        order[mv[pieces[k].mod].start++] = k;
    for (size_t i = 0; i < nm && !rc; i++) {
        memset(&m, 0, sizeof m);
        m.prefix = mv[i].prefix;
        for (size_t k = mv[i].start - mv[i].count; k < mv[i].start; k++) {
            const struct piece *pc = &pieces[order[k]];
            m.slot[pc->param] = (ct_ref){s->files[pc->file], pc->t};
            m.file[pc->param] = pc->file;
        }
        rc = build_module(s, &m, err);
        /* name the file of the module's first stored piece, if the
         * message does not already */
        for (int p = 0; rc && err && p < NPARAM; p++) {
            if (!m.slot[p].t)
                continue;
            const char *path = ct_st_path(m.slot[p].st);
            if (strncmp(err->msg, path, strlen(path)) != 0)
                ct_err_prefix(err, "%s: ", path);
            break;
        }
    }
    if (rc)
        goto out;
    qsort(s->tensors, s->n, sizeof *s->tensors, cmp_dt);
    /* Mutexes are created once the recipes stop moving. */
    for (size_t i = 0; i < s->n; i++)
        pthread_mutex_init(&s->tensors[i].r.lock, NULL);
    if (!(s->byname = ct_strmap_new(s->n))) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < s->n; i++)
        if (ct_strmap_put(s->byname, s->tensors[i].info.name, i) == 1) {
            rc = ct_fail(err, CT_EFORMAT, "two tensors decode to the same name '%s'", s->tensors[i].info.name);
            goto out;
        }
    /* Each shard's tensors, so that a shard's view does not scan every
     * tensor of the model (160 shards of a 100,000-tensor model: 16
     * million visits). */
    s->shard_start = calloc(s->nfiles + 1, sizeof *s->shard_start);
    s->shard_idx = ct_big_calloc(s->n + 1, sizeof *s->shard_idx);
    if (!s->shard_start || !s->shard_idx) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < s->n; i++)
        s->shard_start[s->tensors[i].info.shard + 1]++;
    for (size_t f = 0; f < s->nfiles; f++)
        s->shard_start[f + 1] += s->shard_start[f];
    for (size_t i = 0; i < s->n; i++)      /* start[f] moves to the end of f's group... */
        s->shard_idx[s->shard_start[s->tensors[i].info.shard]++] = i;
    for (size_t f = s->nfiles; f > 0; f--) /* ...and back */
        s->shard_start[f] = s->shard_start[f - 1];
    s->shard_start[0] = 0;
out:
    for (size_t i = 0; i < nm; i++)
        free(mv[i].prefix);
    ct_big_free(mv);
    ct_big_free(pieces);
    ct_big_free(order);
    ct_strmap_free(stored);
    ct_strmap_free(mods);
    return rc;
}

int ct_source_open(const char *path, const ct_open_opts *o, ct_source **out, ct_err *err)
{
    ct_source *s = calloc(1, sizeof *s);
    if (!s)
        return ct_fail(err, CT_ENOMEM, "out of memory");
    int rc;
    s->keep_qparams = o && o->keep_qparams;
    s->keep_act_qparams = o && o->keep_activation_qparams;
    if (!(s->path = strdup(path)))
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
    else if (!(rc = open_files(s, err)) && !(rc = find_config(s, o, err)))
        rc = build(s, err);
    if (rc) {
        ct_source_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

const struct cJSON *ct_source_index_metadata(const ct_source *s)
{
    return s->index_meta;
}

const char *ct_source_path(const ct_source *s) { return s->path; }
int ct_source_is_dir(const ct_source *s) { return s->is_dir; }
const char *ct_source_config_origin(const ct_source *s) { return s->origin; }
const ct_config *ct_source_config(const ct_source *s) { return s->cfg; }
size_t ct_source_nshards(const ct_source *s) { return s->nfiles; }
const char *ct_source_shard_name(const ct_source *s, size_t i) { return i < s->nfiles ? s->names[i] : NULL; }
const ct_st *ct_source_shard(const ct_source *s, size_t i) { return i < s->nfiles ? s->files[i] : NULL; }
int ct_source_other_files(const ct_source *s, ct_other_file **out, size_t *n, ct_err *err)
{
    *out = NULL;
    *n = 0;
    if (!ct_source_is_dir(s))
        return 0;
    return ct_list_other_files(ct_source_path(s), (const char *const *)s->names, s->nfiles, out, n, err);
}

size_t ct_source_ntensors(const ct_source *s) { return s->n; }

size_t ct_source_dropped(const ct_source *s, uint64_t *bytes)
{
    if (bytes)
        *bytes = s->dropped_bytes;
    return s->ndropped;
}

size_t ct_source_shard_tensors(const ct_source *s, size_t shard, const size_t **idx)
{
    if (shard >= s->nfiles) {
        *idx = NULL;
        return 0;
    }
    *idx = s->shard_idx + s->shard_start[shard];
    return s->shard_start[shard + 1] - s->shard_start[shard];
}
const ct_tensor *ct_source_tensor(const ct_source *s, size_t i) { return i < s->n ? &s->tensors[i].info : NULL; }

long ct_source_find(const ct_source *s, const char *name)
{
    size_t i;
    return ct_strmap_get(s->byname, name, &i) ? (long)i : -1;
}

void ct_source_advise(const ct_source *s, size_t i, uint64_t off, uint64_t len)
{
    if (i >= s->n)
        return;
    const ct_dtensor *t = &s->tensors[i];
    size_t es = ct_dtype_bits(t->info.dtype) / 8;
    if (!es || off >= t->info.nbytes || !len)
        return;
    if (len > t->info.nbytes - off)
        len = t->info.nbytes - off;
    ct_advise_elems(t, off / es, (off + len + es - 1) / es);
}

int ct_source_read(const ct_source *s, size_t i, uint64_t off, uint64_t len, void *buf, ct_err *err)
{
    if (i >= s->n)
        return ct_fail(err, CT_EUSAGE, "no tensor %zu", i);
    const ct_dtensor *t = &s->tensors[i];
    if (off > t->info.nbytes || len > t->info.nbytes - off)
        return ct_fail(err, CT_EUSAGE, "tensor '%s': read past its %" PRIu64 " bytes", t->info.name, t->info.nbytes);
    if (len == 0)
        return 0;
    int rc = ct_st_check_unchanged(t->r.main.t ? t->r.main.st : t->r.values.st, err);
    if (rc)
        return ct_err_prefix(err, "tensor '%s': ", t->info.name);
    if (t->r.kind == CT_K_PASS)
        return ct_st_pread(t->r.main.st, t->r.main.t, off, len, buf, err);
    size_t es = ct_dtype_bits(t->info.dtype) / 8;
    uint64_t e0 = off / es, e1 = (off + len + es - 1) / es;
    /* The decoders store whole elements through typed pointers: a range
     * that starts or ends inside an element, or a buffer that is not
     * aligned for the element type, is decoded into a temporary. */
    if (off % es == 0 && len % es == 0 && (uintptr_t)buf % es == 0)
        rc = ct_decode_elems(t, e0, e1, buf, err);
    else {
        char *tmp = malloc((e1 - e0) * es);
        if (!tmp)
            return ct_fail(err, CT_ENOMEM, "out of memory");
        rc = ct_decode_elems(t, e0, e1, tmp, err);
        if (!rc)
            memcpy(buf, tmp + (off - e0 * es), len);
        free(tmp);
    }
    if (rc && !strstr(err ? err->msg : "", t->info.name))
        ct_err_prefix(err, "tensor '%s': ", t->info.name);
    return rc;
}
