/* The dense view of one shard: the bytes of the safetensors file the
 * reference writer would produce for the shard's decoded tensors (header in
 * reference order, then each tensor's bytes).  Immutable after creation;
 * ct_view_read() is thread-safe. */
#ifndef CT_VIEW_H
#define CT_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include "ct/source.h"

typedef struct ct_view ct_view;

typedef struct ct_view_entry {
    size_t tensor;         /* index in the source */
    uint64_t offset;       /* byte offset of its data in the view file */
} ct_view_entry;

/* shard: index of the source shard whose dense counterpart this is. */
int ct_view_new(const ct_source *src, size_t shard, ct_view **out, ct_err *err);
void ct_view_free(ct_view *v);

uint64_t ct_view_size(const ct_view *v);
size_t ct_view_header_size(const ct_view *v);   /* incl. the 8-byte prefix */
size_t ct_view_count(const ct_view *v);
const ct_view_entry *ct_view_entry_at(const ct_view *v, size_t i);  /* in file order */

/* Copy bytes [off, off+len) of the view into buf (decoding as needed);
 * reading past the end is an error. */
int ct_view_read(const ct_view *v, uint64_t off, uint64_t len, void *buf, ct_err *err);
/* Readahead hint for the stored bytes behind view bytes [off, off+len). */
void ct_view_advise(const ct_view *v, uint64_t off, uint64_t len);

#endif
