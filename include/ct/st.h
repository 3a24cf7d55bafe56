/* safetensors container: validating reader and reference-layout writer.
 *
 * Reader: ct_st_open() reads and validates the header only (format note
 * §6.4 plus duplicate keys); tensor data is read on demand with
 * ct_st_pread(), which is thread-safe (pread on a shared fd).  All strings
 * and arrays returned are owned by the ct_st handle and live until
 * ct_st_close().
 *
 * Writer: ct_st_layout() orders tensors as the reference writer does
 * (dtype descending, then name byte-wise), assigns offsets and renders the
 * header bytes; the caller then writes header + data in that order. */
#ifndef CT_ST_H
#define CT_ST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "ct/dtype.h"
#include "ct/err.h"

#define CT_MAX_DIMS 16
#define CT_ST_MAX_HEADER 100000000ull

typedef struct ct_st_tensor {
    const char *name;
    ct_dtype dtype;
    int ndim;
    int64_t shape[CT_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;    /* relative to the data buffer */
} ct_st_tensor;

typedef struct ct_st ct_st;

int ct_st_open(const char *path, ct_st **out, ct_err *err);
/* Parse a header held in memory.  file_size is the size of the whole file
 * (8 + header_len + data); used for the coverage check.  label names the
 * file in messages. */
int ct_st_parse(const char *label, const char *header, size_t header_len,
                uint64_t file_size, ct_st **out, ct_err *err);
void ct_st_close(ct_st *st);
/* Serve a parsed header's reads (ct_st_pread) from a callback instead of a
 * file: read len bytes at offset off of the whole file into buf, or fail
 * with a message.  The callback must be thread-safe; ctx must outlive st.
 * (mkct reads a compressed source through its dense view this way.) */
typedef int (*ct_st_reader)(void *ctx, uint64_t off, uint64_t len, void *buf, ct_err *err);
void ct_st_set_reader(ct_st *st, ct_st_reader read, void *ctx);

const char *ct_st_path(const ct_st *st);
size_t ct_st_count(const ct_st *st);
const ct_st_tensor *ct_st_get(const ct_st *st, size_t i);
/* Index of the named tensor, or -1. */
long ct_st_find(const ct_st *st, const char *name);
uint64_t ct_st_data_offset(const ct_st *st);  /* 8 + header length */
uint64_t ct_st_file_size(const ct_st *st);
/* __metadata__ entries (may be 0). */
size_t ct_st_meta_count(const ct_st *st);
const char *ct_st_meta_key(const ct_st *st, size_t i);
const char *ct_st_meta_value(const ct_st *st, size_t i);
const char *ct_st_meta_get(const ct_st *st, const char *key);

/* Read len bytes at byte offset off inside tensor t.  Fails with CT_EFORMAT
 * if the range leaves the tensor, CT_EIO on a short read or I/O error, and
 * CT_ECHANGED if the file's size or mtime changed since it was opened. */
int ct_st_pread(const ct_st *st, const ct_st_tensor *t, uint64_t off,
                uint64_t len, void *buf, ct_err *err);
/* CT_ECHANGED if the file was modified since open. */
int ct_st_check_unchanged(const ct_st *st, ct_err *err);
/* Ask the kernel to start reading bytes [off, off+len) of tensor t into
 * the page cache (clamped to the tensor; a hint: nothing waits, nothing
 * fails). */
void ct_st_advise(const ct_st *st, const ct_st_tensor *t, uint64_t off, uint64_t len);

/* Bytes of a tensor with this dtype and shape; CT_EFORMAT on overflow or a
 * bit count that is not a whole number of bytes. */
int ct_tensor_nbytes(ct_dtype dt, int ndim, const int64_t *shape,
                     uint64_t *numel, uint64_t *nbytes, ct_err *err);

/* ---- writer layout ---- */
typedef struct ct_st_entry {
    const char *name;
    ct_dtype dtype;
    int ndim;
    int64_t shape[CT_MAX_DIMS];
    uint64_t nbytes;
    uint64_t begin;         /* filled by ct_st_layout */
    size_t user;            /* caller's index, carried along */
} ct_st_entry;

/* Sort entries into reference order, assign begin offsets, and render the
 * padded header (8-byte length prefix included) into a malloc'd buffer.
 * meta_keys/meta_values (n_meta pairs, may be 0) become __metadata__,
 * emitted in the given order. */
int ct_st_layout(ct_st_entry *entries, size_t n, const char *const *meta_keys,
                 const char *const *meta_values, size_t n_meta,
                 char **header, size_t *header_len, ct_err *err);

#endif
