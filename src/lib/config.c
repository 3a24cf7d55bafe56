#include "config.h"
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "ct/config.h"
#include "ct/pyjson.h"
#include "ct/util.h"

static const struct { const char *name; ct_format f; } format_names[] = {
    {"dense", CT_FMT_DENSE}, {"dense-sparsity", CT_FMT_DENSE}, {"dense_sparsity", CT_FMT_DENSE},
    {"fakequant", CT_FMT_DENSE},
    {"sparse-bitmask", CT_FMT_SPARSE_BITMASK}, {"sparse_bitmask", CT_FMT_SPARSE_BITMASK},
    {"sparse-24-bitmask", CT_FMT_SPARSE_24},
    {"pack-quantized", CT_FMT_PACK}, {"int-quantized", CT_FMT_INT},
    {"float-quantized", CT_FMT_FLOAT}, {"naive-quantized", CT_FMT_NAIVE},
    {"nvfp4-pack-quantized", CT_FMT_NVFP4}, {"mxfp4-pack-quantized", CT_FMT_MXFP4},
    {"mxfp8-quantized", CT_FMT_MXFP8}, {"marlin-24", CT_FMT_MARLIN24},
    {"mixed-precision", CT_FMT_MIXED},
};

ct_format ct_format_parse(const char *s)
{
    if (!s)
        return CT_FMT_UNSET;
    for (size_t i = 0; i < sizeof format_names / sizeof *format_names; i++)
        if (strcmp(format_names[i].name, s) == 0)
            return format_names[i].f;
    return CT_FMT_UNKNOWN;
}

const char *ct_format_name(ct_format f)
{
    switch (f) {
    case CT_FMT_UNSET: return "unset";
    case CT_FMT_DENSE: return "dense";
    case CT_FMT_SPARSE_BITMASK: return "sparse-bitmask";
    case CT_FMT_SPARSE_24: return "sparse-24-bitmask";
    case CT_FMT_PACK: return "pack-quantized";
    case CT_FMT_INT: return "int-quantized";
    case CT_FMT_FLOAT: return "float-quantized";
    case CT_FMT_NAIVE: return "naive-quantized";
    case CT_FMT_NVFP4: return "nvfp4-pack-quantized";
    case CT_FMT_MXFP4: return "mxfp4-pack-quantized";
    case CT_FMT_MXFP8: return "mxfp8-quantized";
    case CT_FMT_MARLIN24: return "marlin-24";
    case CT_FMT_MIXED: return "mixed-precision";
    default: return "unknown";
    }
}

int ct_version_cmp(const char *a, const char *b)
{
    while (*a || *b) {
        long x = strtol(a, (char **)&a, 10), y = strtol(b, (char **)&b, 10);
        if (x != y)
            return x < y ? -1 : 1;
        while (*a && !isdigit((unsigned char)*a)) a++;
        while (*b && !isdigit((unsigned char)*b)) b++;
    }
    return 0;
}

struct ct_rx {
    int ok;                /* 0: not a pattern this library can match */
    regex_t re;
};

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void free_rxv(ct_rx **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        if (v[i] && v[i]->ok)
            regfree(&v[i]->re);
        free(v[i]);
    }
    free(v);
}

void ct_config_free(ct_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_groups; i++) {
        free(c->groups[i].name);
        free_rxv(c->groups[i].targets_rx, c->groups[i].n_targets);
        free_strv(c->groups[i].targets, c->groups[i].n_targets);
    }
    free(c->groups);
    free_rxv(c->ignore_rx, c->n_ignore);
    free_strv(c->ignore, c->n_ignore);
    free_rxv(c->sparse_targets_rx, c->n_sparse_targets);
    free_strv(c->sparse_targets, c->n_sparse_targets);
    free_rxv(c->sparse_ignore_rx, c->n_sparse_ignore);
    free_strv(c->sparse_ignore, c->n_sparse_ignore);
    free(c->version);
    free(c->json);
    free(c);
}

/* A JSON list of strings (or a single string, or null) into a string vector. */
static int get_strv(const cJSON *v, char ***out, size_t *n, const char *label, const char *what, ct_err *err)
{
    *out = NULL;
    *n = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsString(v)) {
        *out = calloc(1, sizeof **out);
        if (!*out || !((*out)[0] = strdup(v->valuestring)))
            return ct_fail(err, CT_ENOMEM, "out of memory");
        *n = 1;
        return 0;
    }
    if (!cJSON_IsArray(v))
        return ct_fail(err, CT_EFORMAT, "%s: %s must be a list of strings", label, what);
    size_t cnt = (size_t)cJSON_GetArraySize(v);
    *out = calloc(cnt + 1, sizeof **out);
    if (!*out)
        return ct_fail(err, CT_ENOMEM, "out of memory");
    const cJSON *s;
    cJSON_ArrayForEach(s, v) {
        if (!cJSON_IsString(s))
            return ct_fail(err, CT_EFORMAT, "%s: %s must be a list of strings", label, what);
        if (!((*out)[(*n)++] = strdup(s->valuestring)))
            return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    return 0;
}

static ct_strategy parse_strategy(const char *s)
{
    static const char *names[] = {"", "tensor", "channel", "group", "block", "token", "tensor_group", "attn_head"};
    for (int i = 1; i < 8; i++)
        if (strcmp(s, names[i]) == 0)
            return (ct_strategy)i;
    return CT_STRAT_UNSET;
}

/* An integral JSON number from lo to hi (as pydantic's int takes it: 128
 * and 128.0, not 128.5); NaN, infinities and values out of range are
 * refused before any conversion (converting them is undefined). */
#define JSON_INT_MAX ((int64_t)1 << 53)
static int json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!v || !cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return -1;
    *out = (int64_t)d;
    return 0;
}

static int parse_args(const cJSON *w, ct_qargs *a, const char *label, ct_err *err)
{
    memset(a, 0, sizeof *a);
    a->symmetric = -1;
    a->num_bits = 8;   /* QuantizationArgs default */
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(w, "num_bits")) && !cJSON_IsNull(v)) {
        int64_t nb;
        if (json_int(v, 1, 32, &nb))
            return ct_fail(err, CT_EFORMAT, "%s: num_bits must be an integer in 1..32", label);
        a->num_bits = (int)nb;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(w, "type")) && cJSON_IsString(v))
        a->is_float = strcmp(v->valuestring, "float") == 0;
    if ((v = cJSON_GetObjectItemCaseSensitive(w, "symmetric")))
        a->symmetric = cJSON_IsBool(v) ? cJSON_IsTrue(v) : -1;
    else
        a->symmetric = 1;
    if ((v = cJSON_GetObjectItemCaseSensitive(w, "strategy")) && cJSON_IsString(v)) {
        a->strategy = parse_strategy(v->valuestring);
        if (!a->strategy)
            return ct_fail(err, CT_EUNSUPPORTED, "%s: unknown quantization strategy '%s'", label, v->valuestring);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(w, "group_size")) && !cJSON_IsNull(v)
        && json_int(v, -JSON_INT_MAX, JSON_INT_MAX, &a->group_size))
        return ct_fail(err, CT_EFORMAT, "%s: group_size must be an integer", label);
    if ((v = cJSON_GetObjectItemCaseSensitive(w, "block_structure"))) {
        if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2) {
            if (json_int(cJSON_GetArrayItem(v, 0), 0, JSON_INT_MAX, &a->block[0])
                || json_int(cJSON_GetArrayItem(v, 1), 0, JSON_INT_MAX, &a->block[1]))
                return ct_fail(err, CT_EFORMAT, "%s: block_structure must be two non-negative integers", label);
        } else if (cJSON_IsString(v)) {
            long long bh, bw;
            if (sscanf(v->valuestring, "%lldx%lld", &bh, &bw) == 2) {
                a->block[0] = bh;
                a->block[1] = bw;
            }
        }
        if (a->block[0] < 0 || a->block[1] < 0)
            return ct_fail(err, CT_EFORMAT, "%s: negative block_structure", label);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(w, "actorder"))) {
        if (cJSON_IsTrue(v))
            a->actorder = 1;
        else if (cJSON_IsString(v))
            a->actorder = strcmp(v->valuestring, "group") == 0 || strcmp(v->valuestring, "dynamic") == 0;
    }
    if (!a->strategy) {
        if (a->group_size == -1)
            a->strategy = CT_STRAT_CHANNEL;
        else if (a->group_size > 0)
            a->strategy = CT_STRAT_GROUP;
        else
            a->strategy = CT_STRAT_TENSOR;
    }
    return 0;
}

/* Upstream preset names usable as config_groups keys with a bare target list. */
static int preset_args(const char *name, ct_qargs *a, ct_format *fmt)
{
    memset(a, 0, sizeof *a);
    a->symmetric = 1;
    a->strategy = CT_STRAT_GROUP;
    a->group_size = 128;
    if (!strcmp(name, "W4A16") || !strcmp(name, "W4A16_ASYM") || !strcmp(name, "W4A8")) {
        a->num_bits = 4;
        a->symmetric = strcmp(name, "W4A16_ASYM") != 0;
        *fmt = CT_FMT_PACK;
    } else if (!strcmp(name, "W8A16")) {
        a->num_bits = 8; a->strategy = CT_STRAT_CHANNEL; a->group_size = -1; *fmt = CT_FMT_PACK;
    } else if (!strcmp(name, "W8A8")) {
        a->num_bits = 8; a->strategy = CT_STRAT_CHANNEL; a->group_size = -1; *fmt = CT_FMT_INT;
    } else if (!strcmp(name, "FP8") || !strcmp(name, "FP8_DYNAMIC")) {
        a->num_bits = 8; a->is_float = 1;
        a->strategy = !strcmp(name, "FP8") ? CT_STRAT_TENSOR : CT_STRAT_CHANNEL;
        a->group_size = 0; *fmt = CT_FMT_FLOAT;
    } else if (!strcmp(name, "NVFP4") || !strcmp(name, "NVFP4A16")) {
        a->num_bits = 4; a->is_float = 1; a->strategy = CT_STRAT_TENSOR_GROUP; a->group_size = 16;
        *fmt = CT_FMT_NVFP4;
    } else {
        return -1;
    }
    return 0;
}

static char *translate_regex(const char *pat);

/* Compile each "re:" entry of v[0..n) into (*out)[i]; other entries get
 * NULL, and a pattern regcomp refuses an entry with ok = 0. */
static int compile_rxv(char **v, size_t n, ct_rx ***out, ct_err *err)
{
    *out = NULL;
    if (!n)
        return 0;
    if (!(*out = calloc(n, sizeof **out)))
        return ct_fail(err, CT_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (strncmp(v[i], "re:", 3) != 0)
            continue;
        ct_rx *rx = calloc(1, sizeof *rx);
        char *ere = translate_regex(v[i] + 3);
        if (!rx || !ere) {
            free(rx);
            free(ere);
            return ct_fail(err, CT_ENOMEM, "out of memory");
        }
        rx->ok = regcomp(&rx->re, ere, REG_EXTENDED | REG_NOSUB) == 0;
        free(ere);
        (*out)[i] = rx;
    }
    return 0;
}

static int parse_qc(const cJSON *qc, const char *label, ct_config *c, ct_err *err)
{
    int rc;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(qc, "quant_method")) && cJSON_IsString(v)
        && strcmp(v->valuestring, "compressed-tensors") && strcmp(v->valuestring, "sparseml"))
        return ct_fail(err, CT_EUNSUPPORTED, "%s: quant_method '%s' is not compressed-tensors", label,
                       v->valuestring);
    if ((v = cJSON_GetObjectItemCaseSensitive(qc, "version")) && cJSON_IsString(v))
        if (!(c->version = strdup(v->valuestring)))
            return ct_fail(err, CT_ENOMEM, "out of memory");
    /* Layout B from 0.17; configs with no version predate it (0.4-0.6). */
    c->layout_b = c->version ? ct_version_cmp(c->version, "0.17") >= 0 : 0;
    if ((v = cJSON_GetObjectItemCaseSensitive(qc, "format")) && cJSON_IsString(v))
        c->format = ct_format_parse(v->valuestring);
    if ((rc = get_strv(cJSON_GetObjectItemCaseSensitive(qc, "ignore"), &c->ignore, &c->n_ignore, label,
                       "ignore", err)))
        return rc;
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(qc, "config_groups");
    if (groups && cJSON_IsObject(groups)) {
        size_t n = (size_t)cJSON_GetArraySize(groups);
        c->groups = calloc(n + 1, sizeof *c->groups);
        if (!c->groups)
            return ct_fail(err, CT_ENOMEM, "out of memory");
        const cJSON *g;
        cJSON_ArrayForEach(g, groups) {
            ct_qgroup *q = &c->groups[c->n_groups++];
            if (!(q->name = strdup(g->string)))
                return ct_fail(err, CT_ENOMEM, "out of memory");
            char glabel[300];
            snprintf(glabel, sizeof glabel, "%s: config_groups.%s", label, g->string);
            if (cJSON_IsArray(g)) {          /* "W4A16": ["Linear"] */
                if (preset_args(g->string, &q->weights, &q->format))
                    return ct_fail(err, CT_EUNSUPPORTED, "%s: unknown preset scheme name", glabel);
                q->has_weights = 1;
                q->input_param = !strcmp(g->string, "FP8") ? "input_scale"
                               : !strcmp(g->string, "NVFP4") ? "input_global_scale" : NULL;
                if ((rc = get_strv(g, &q->targets, &q->n_targets, glabel, "targets", err)))
                    return rc;
                continue;
            }
            if (!cJSON_IsObject(g))
                return ct_fail(err, CT_EFORMAT, "%s: not an object", glabel);
            if ((rc = get_strv(cJSON_GetObjectItemCaseSensitive(g, "targets"), &q->targets, &q->n_targets,
                               glabel, "targets", err)))
                return rc;
            const cJSON *w = cJSON_GetObjectItemCaseSensitive(g, "weights");
            if (w && cJSON_IsObject(w)) {
                q->has_weights = 1;
                if ((rc = parse_args(w, &q->weights, glabel, err)))
                    return rc;
            }
            if ((v = cJSON_GetObjectItemCaseSensitive(g, "format")) && cJSON_IsString(v))
                q->format = ct_format_parse(v->valuestring);
            const cJSON *ia = cJSON_GetObjectItemCaseSensitive(g, "input_activations");
            if (ia && cJSON_IsObject(ia)) {
                const cJSON *dyn = cJSON_GetObjectItemCaseSensitive(ia, "dynamic"),
                            *st = cJSON_GetObjectItemCaseSensitive(ia, "strategy");
                int tg = cJSON_IsString(st) && !strcmp(st->valuestring, "tensor_group");
                int local = cJSON_IsString(dyn) && !strcmp(dyn->valuestring, "local");
                if (local || tg)
                    q->input_param = (local || !cJSON_IsTrue(dyn)) ? "input_global_scale" : NULL;
                else if (!dyn || cJSON_IsFalse(dyn))
                    q->input_param = "input_scale";
            }
            const cJSON *oa = cJSON_GetObjectItemCaseSensitive(g, "output_activations");
            if (oa && cJSON_IsObject(oa)) {
                const cJSON *dyn = cJSON_GetObjectItemCaseSensitive(oa, "dynamic");
                q->static_output = !dyn || cJSON_IsFalse(dyn);
            }
        }
    }
    c->has_kv_cache_scheme = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(qc, "kv_cache_scheme"));
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(qc, "sparsity_config");
    if (sc && cJSON_IsObject(sc) && cJSON_GetArraySize(sc) > 0) {
        v = cJSON_GetObjectItemCaseSensitive(sc, "format");
        c->sparse_format = cJSON_IsString(v) ? ct_format_parse(v->valuestring) : CT_FMT_UNSET;
        c->has_sparsity = c->sparse_format != CT_FMT_DENSE && c->sparse_format != CT_FMT_UNSET;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(sc, "targets");
        c->sparse_targets_null = !t || cJSON_IsNull(t);
        if ((rc = get_strv(t, &c->sparse_targets, &c->n_sparse_targets, label, "sparsity_config.targets", err)))
            return rc;
        if ((rc = get_strv(cJSON_GetObjectItemCaseSensitive(sc, "ignore"), &c->sparse_ignore,
                           &c->n_sparse_ignore, label, "sparsity_config.ignore", err)))
            return rc;
    }
    if ((rc = compile_rxv(c->ignore, c->n_ignore, &c->ignore_rx, err))
        || (rc = compile_rxv(c->sparse_targets, c->n_sparse_targets, &c->sparse_targets_rx, err))
        || (rc = compile_rxv(c->sparse_ignore, c->n_sparse_ignore, &c->sparse_ignore_rx, err)))
        return rc;
    for (size_t i = 0; i < c->n_groups; i++)
        if ((rc = compile_rxv(c->groups[i].targets, c->groups[i].n_targets, &c->groups[i].targets_rx, err)))
            return rc;
    if (!(c->json = cJSON_PrintUnformatted(qc)))
        return ct_fail(err, CT_ENOMEM, "out of memory");
    return 0;
}

int ct_config_parse(const char *json, size_t len, const char *label, ct_config **out, ct_err *err)
{
    *out = NULL;
    cJSON *root = ct_pyjson_parse(json, len);   /* Python's JSON: NaN and Infinity too */
    if (!root)
        return ct_fail(err, CT_EFORMAT, "%s: not valid JSON", label);
    int rc = 0;
    const cJSON *qc = NULL;
    int top_sparsity = 0;
    if (!cJSON_IsObject(root)) {
        rc = ct_fail(err, CT_EFORMAT, "%s: not a JSON object", label);
        goto done;
    }
    if ((qc = cJSON_GetObjectItemCaseSensitive(root, "quantization_config")) && cJSON_IsObject(qc)) {
    } else if ((qc = cJSON_GetObjectItemCaseSensitive(root, "compression_config")) && cJSON_IsObject(qc)) {
    } else if (cJSON_GetObjectItemCaseSensitive(root, "quant_method")
               || cJSON_GetObjectItemCaseSensitive(root, "config_groups")
               || (cJSON_GetObjectItemCaseSensitive(root, "format")
                   && !cJSON_GetObjectItemCaseSensitive(root, "model_type"))) {
        qc = root;                        /* the quantization_config object itself */
    } else if ((qc = cJSON_GetObjectItemCaseSensitive(root, "sparsity_config")) && cJSON_IsObject(qc)) {
        top_sparsity = 1;                 /* <= 0.3: top-level sparsity_config */
    } else {
        goto done;                        /* no compression config here */
    }
    ct_config *c = calloc(1, sizeof *c);
    if (!c) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto done;
    }
    if (top_sparsity) {
        cJSON *wrap = cJSON_CreateObject();
        cJSON *dup = cJSON_Duplicate(qc, 1);
        if (!wrap || !dup) {
            cJSON_Delete(wrap);
            cJSON_Delete(dup);
            ct_config_free(c);
            rc = ct_fail(err, CT_ENOMEM, "out of memory");
            goto done;
        }
        cJSON_AddItemToObject(wrap, "sparsity_config", dup);
        rc = parse_qc(wrap, label, c, err);
        cJSON_Delete(wrap);
    } else {
        rc = parse_qc(qc, label, c, err);
    }
    if (rc)
        ct_config_free(c);
    else
        *out = c;
done:
    cJSON_Delete(root);
    return rc;
}

/* Python re syntax -> POSIX ERE for the common escapes; anchored at the
 * start like re.match.  Lazy quantifiers (*? +? ?? {m,n}?) match the same
 * names as greedy ones, so their '?' is dropped (POSIX leaves a quantifier
 * after a quantifier undefined); (?: groups become plain groups.  Anything
 * else ERE lacks (look-arounds, inline flags) fails regcomp. */
static char *translate_regex(const char *pat)
{
    ct_buf b = {0};
    int bad = ct_buf_puts(&b, "^(");
    int after_quantifier = 0;   /* the previous token was *, +, ?, or {m,n} */
    for (const char *p = pat; *p && !bad; p++) {
        if (p[0] == '[') {
            /* a bracket expression is copied as it is, up to its ']' (one
             * right after '[' or '[^' is a member) */
            const char *q = p + 1 + (p[1] == '^');
            q += *q == ']';
            while (*q && *q != ']')
                q += q[0] == '\\' && q[1] ? 2 : 1;
            if (!*q) {            /* unterminated: regcomp refuses it */
                bad |= ct_buf_puts(&b, p);
                break;
            }
            bad |= ct_buf_put(&b, p, (size_t)(q - p + 1));
            p = q;
            after_quantifier = 0;
            continue;
        }
        if (p[0] == '?' && after_quantifier) {
            after_quantifier = 0;
            continue;
        }
        after_quantifier = 0;
        if (p[0] == '(' && p[1] == '?' && p[2] == ':') {
            bad |= ct_buf_putc(&b, '(');
            p += 2;
        } else if (p[0] == '\\' && p[1]) {
            const char *rep = NULL;
            switch (p[1]) {
            case 'd': rep = "[0-9]"; break;
            case 'D': rep = "[^0-9]"; break;
            case 'w': rep = "[A-Za-z0-9_]"; break;
            case 'W': rep = "[^A-Za-z0-9_]"; break;
            case 's': rep = "[[:space:]]"; break;
            case 'S': rep = "[^[:space:]]"; break;
            }
            if (rep)
                bad |= ct_buf_puts(&b, rep);
            else
                bad |= ct_buf_put(&b, p, 2);
            p++;
        } else {
            after_quantifier = *p == '*' || *p == '+' || *p == '?' || *p == '}';
            bad |= ct_buf_putc(&b, *p);
        }
    }
    bad |= ct_buf_putc(&b, ')');
    if (bad) {
        ct_buf_free(&b);
        return NULL;
    }
    return b.data;
}

int ct_target_match(const char *target, const char *module, int class_matches_all)
{
    if (strncmp(target, "re:", 3) == 0) {
        char *ere = translate_regex(target + 3);
        regex_t re;
        if (!ere || regcomp(&re, ere, REG_EXTENDED | REG_NOSUB) != 0) {
            free(ere);
            return -1;
        }
        int m = regexec(&re, module, 0, NULL, 0) == 0;
        regfree(&re);
        free(ere);
        return m;
    }
    if (strcmp(target, module) == 0)
        return 1;
    /* A class name ("Linear", "Embedding"): no '.', starts upper-case. */
    if (isupper((unsigned char)target[0]) && !strchr(target, '.'))
        return class_matches_all;
    return 0;
}

int ct_target_match_rx(const char *target, const ct_rx *rx, const char *module, int class_matches_all)
{
    if (rx)
        return rx->ok ? regexec(&rx->re, module, 0, NULL, 0) == 0 : -1;
    return ct_target_match(target, module, class_matches_all);
}

const ct_qgroup *ct_config_group_for(const ct_config *c, const char *module)
{
    for (size_t i = 0; i < c->n_ignore; i++)
        if (ct_target_match_rx(c->ignore[i], c->ignore_rx[i], module, 0) == 1)
            return NULL;
    for (size_t g = 0; g < c->n_groups; g++)
        for (size_t i = 0; i < c->groups[g].n_targets; i++)
            if (ct_target_match_rx(c->groups[g].targets[i], c->groups[g].targets_rx[i], module, 1) == 1)
                return &c->groups[g];
    return NULL;
}

static const char *bad_in(char **v, ct_rx **rx, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rx[i] && !rx[i]->ok)
            return v[i];
    return NULL;
}

const char *ct_config_bad_pattern(const ct_config *c)
{
    const char *b = bad_in(c->ignore, c->ignore_rx, c->n_ignore);
    for (size_t g = 0; !b && g < c->n_groups; g++)
        b = bad_in(c->groups[g].targets, c->groups[g].targets_rx, c->groups[g].n_targets);
    if (!b)
        b = bad_in(c->sparse_targets, c->sparse_targets_rx, c->n_sparse_targets);
    if (!b)
        b = bad_in(c->sparse_ignore, c->sparse_ignore_rx, c->n_sparse_ignore);
    return b;
}
