/* A compressed-tensors source: one .safetensors file or a model directory,
 * seen as the list of dense tensors it decodes to.
 *
 * ct_source_open() reads and validates every header, finds the compression
 * config (--config file, config.json, __metadata__, or inference from the
 * tensor names) and builds a recipe per dense tensor; it decodes nothing.
 * Afterwards the source is immutable: ct_source_read() may be called from
 * any number of threads at once. */
#ifndef CT_SOURCE_H
#define CT_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include "ct/config.h"
#include "ct/dtype.h"
#include "ct/err.h"
#include "ct/st.h"
#include "ct/util.h"

typedef struct ct_source ct_source;

typedef struct ct_open_opts {
    const char *config_path;   /* explicit --config FILE, or NULL */
    int keep_qparams;          /* keep weight_scale, zero points, g_idx, ... */
    int keep_activation_qparams;   /* keep only activation and kv-cache scales
                                      and zero points (input_*, output_*, k/v/q_scale) */
} ct_open_opts;

typedef struct ct_tensor {
    const char *name;          /* dense name */
    ct_dtype dtype;            /* dense dtype */
    int ndim;
    int64_t shape[CT_MAX_DIMS];
    uint64_t nbytes;           /* dense bytes */
    uint64_t stored_bytes;     /* bytes of the stored pieces it is decoded from */
    const char *format;        /* "dense", "sparse-bitmask", "pack-quantized", ... */
    int code_bits;             /* bits per stored code of a quantized weight, else 0 */
    int code_float;            /* codes are FP8/FP4 values rather than integers */
    size_t shard;              /* shard that holds its main stored piece */
} ct_tensor;

int ct_source_open(const char *path, const ct_open_opts *opts, ct_source **out, ct_err *err);
void ct_source_close(ct_source *s);

const char *ct_source_path(const ct_source *s);
/* The "metadata" object of a directory source's model.safetensors.index.json
 * (numbers keep their text, see ct/pyjson.h), or NULL. */
struct cJSON;
const struct cJSON *ct_source_index_metadata(const ct_source *s);
int ct_source_is_dir(const ct_source *s);
/* Where the compression config came from, e.g. "config.json", "inferred
 * from tensor names". */
const char *ct_source_config_origin(const ct_source *s);
const ct_config *ct_source_config(const ct_source *s);   /* may be NULL */

size_t ct_source_nshards(const ct_source *s);
/* File name of shard i relative to the source directory (the file's base
 * name for a single-file source). */
const char *ct_source_shard_name(const ct_source *s, size_t i);
const ct_st *ct_source_shard(const ct_source *s, size_t i);

/* The other files of a directory source (ct_list_other_files): all but
 * its shards, model.safetensors.index.json and config.json, which a dense
 * copy rewrites.  None for a single-file source. */
int ct_source_other_files(const ct_source *s, ct_other_file **out, size_t *n, ct_err *err);

size_t ct_source_ntensors(const ct_source *s);   /* sorted by name */
/* Stored quantization parameters the dense view leaves out (without
 * keep_qparams) that no decoded tensor counts in its stored bytes: those of
 * modules whose weight is stored dense, activation and kv-cache scales.
 * Returns their number; *bytes (may be NULL) gets their stored bytes. */
size_t ct_source_dropped(const ct_source *s, uint64_t *bytes);
const ct_tensor *ct_source_tensor(const ct_source *s, size_t i);
long ct_source_find(const ct_source *s, const char *dense_name);
/* The dense tensors of shard i (ct_tensor.shard == i): *idx points to
 * their indexes, in name order; returns how many. */
size_t ct_source_shard_tensors(const ct_source *s, size_t shard, const size_t **idx);

/* Decode bytes [off, off+len) of dense tensor i into buf.  Thread-safe.
 * Errors name the tensor; CT_ECHANGED when a source file changed. */
int ct_source_read(const ct_source *s, size_t i, uint64_t off, uint64_t len,
                   void *buf, ct_err *err);
/* Readahead hint: start bringing in the stored bytes that decoding bytes
 * [off, off+len) of dense tensor i will read.  Thread-safe; never fails. */
void ct_source_advise(const ct_source *s, size_t i, uint64_t off, uint64_t len);

#endif
