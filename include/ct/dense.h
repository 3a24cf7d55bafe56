/* Writing the dense checkpoint of a source, and the rewritten side files
 * of a model directory.  Output is atomic: a temporary file or directory
 * next to DST, renamed into place only when complete; on failure nothing
 * is left behind and the source is never touched. */
#ifndef CT_DENSE_H
#define CT_DENSE_H

#include <stddef.h>
#include "ct/source.h"

/* model.safetensors.index.json for the dense shards (sorted, indent 2,
 * trailing newline), or *out = NULL when the source has no index. */
int ct_dense_index_json(const ct_source *src, char **out, size_t *len, ct_err *err);
/* config.json without quantization_config / compression_config /
 * sparsity_config, or *out = NULL when the source has no config.json. */
int ct_dense_config_json(const ct_source *src, char **out, size_t *len, ct_err *err);

typedef void (*ct_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Write the dense checkpoint: a file for a file source, a directory for a
 * directory source (dense shards, rewritten index and config.json, other
 * regular files copied).  Refuses an existing dst unless force. */
int ct_write_dense(const ct_source *src, const char *dst, int force,
                   ct_progress_fn progress, void *ctx, ct_err *err);

/* Write one view (the dense shard) to an open fd, streaming in bounded chunks. */
struct ct_view;
int ct_write_view_fd(const struct ct_view *v, int fd, const char *label,
                     ct_progress_fn progress, void *ctx, uint64_t *done, uint64_t total, ct_err *err);

#endif
