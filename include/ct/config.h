/* compressed-tensors configuration (format note §3).
 *
 * ct_config_parse() accepts a whole config.json, or the quantization_config
 * object by itself, and keeps what decoding needs: the format labels, each
 * group's targets and weight arguments, ignore lists, the sparsity config
 * and the writer version (which selects the int packing layout). */
#ifndef CT_CONFIG_H
#define CT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "ct/err.h"

typedef enum {
    CT_FMT_UNSET = 0, CT_FMT_DENSE, CT_FMT_SPARSE_BITMASK, CT_FMT_SPARSE_24,
    CT_FMT_PACK, CT_FMT_INT, CT_FMT_FLOAT, CT_FMT_NAIVE, CT_FMT_NVFP4,
    CT_FMT_MXFP4, CT_FMT_MXFP8, CT_FMT_MARLIN24, CT_FMT_MIXED, CT_FMT_UNKNOWN
} ct_format;

/* Accepts current and historic labels; CT_FMT_UNKNOWN for anything else. */
ct_format ct_format_parse(const char *s);
const char *ct_format_name(ct_format f);

typedef enum {
    CT_STRAT_UNSET = 0, CT_STRAT_TENSOR, CT_STRAT_CHANNEL, CT_STRAT_GROUP,
    CT_STRAT_BLOCK, CT_STRAT_TOKEN, CT_STRAT_TENSOR_GROUP, CT_STRAT_ATTN_HEAD
} ct_strategy;

typedef struct ct_qargs {
    int num_bits;          /* 0 when the config does not say */
    int is_float;
    int symmetric;         /* -1 unknown */
    ct_strategy strategy;
    int64_t group_size;    /* 0 unset, -1 channel */
    int64_t block[2];      /* 0 when unset */
    int actorder;          /* 1 for "group"/"dynamic"/true */
} ct_qargs;

/* A target or ignore entry's "re:" pattern, compiled once when the config
 * is parsed (matching is per module: a large MoE model has 100,000). */
typedef struct ct_rx ct_rx;

typedef struct ct_qgroup {
    char *name;
    char **targets;
    ct_rx **targets_rx;    /* parallel to targets: NULL for entries that are not "re:" */
    size_t n_targets;
    int has_weights;
    ct_qargs weights;
    ct_format format;      /* CT_FMT_UNSET when null/absent */
    /* The calibrated activation parameter a writer must find stored, as
     * "<module>.<input_param>": "input_scale" for static activations,
     * "input_global_scale" for tensor_group (NVFP4) ones; NULL when the
     * activations are dynamic or not quantized. */
    const char *input_param;
    int static_output;     /* output activations quantized with stored (static) parameters */
} ct_qgroup;

typedef struct ct_config {
    char *version;         /* may be NULL */
    int layout_b;          /* 1: dense bit stream packing (version >= 0.17 or unknown) */
    ct_format format;      /* top-level quantization format (UNSET if none) */
    ct_qgroup *groups;
    size_t n_groups;
    char **ignore;
    ct_rx **ignore_rx;
    size_t n_ignore;
    int has_kv_cache_scheme;   /* a kv_cache_scheme object: k_scale/v_scale belong to the model */
    int has_sparsity;
    ct_format sparse_format;
    char **sparse_targets;  /* NULL with n=0 and sparse_targets_null=1: all */
    ct_rx **sparse_targets_rx;
    size_t n_sparse_targets;
    int sparse_targets_null;
    char **sparse_ignore;
    ct_rx **sparse_ignore_rx;
    size_t n_sparse_ignore;
    char *json;            /* the compression config object as compact JSON */
} ct_config;

/* Parse from a JSON document.  If the document holds none of
 * quantization_config / compression_config / sparsity_config and is not itself
 * such an object, returns CT_OK with *out = NULL. */
int ct_config_parse(const char *json, size_t len, const char *label,
                    ct_config **out, ct_err *err);
void ct_config_free(ct_config *c);

/* 1 if target (an upstream target string: exact name, "re:" regex anchored at
 * the start, or a class name such as "Linear") matches module.  Class names
 * match every module when class_matches_all is set (targets) and none
 * otherwise (ignore lists).  Returns -1 for an invalid regex. */
int ct_target_match(const char *target, const char *module, int class_matches_all);
/* The same with target's compiled pattern (its entry in a *_rx array). */
int ct_target_match_rx(const char *target, const ct_rx *rx, const char *module, int class_matches_all);

/* The first "re:" target or ignore entry of c that is not a regular
 * expression this library can match (POSIX ERE after translating Python's
 * common escapes), or NULL.  Readers match such entries to nothing; a
 * writer, which decides by them what to compress, refuses them. */
const char *ct_config_bad_pattern(const ct_config *c);

/* The group whose targets match module and that module is not ignored by,
 * or NULL. */
const ct_qgroup *ct_config_group_for(const ct_config *c, const char *module);

/* Compare two dotted version strings numerically; <0, 0, >0. */
int ct_version_cmp(const char *a, const char *b);

#endif
