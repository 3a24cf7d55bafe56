/* Small shared helpers: checked arithmetic, little-endian loads, a growable
 * byte buffer, full-length pread/write, file helpers. */
#ifndef CT_UTIL_H
#define CT_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <string.h>
#include "ct/err.h"

static inline int ct_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *r)
{ return __builtin_mul_overflow(a, b, r); }
static inline int ct_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *r)
{ return __builtin_add_overflow(a, b, r); }

static inline uint64_t ct_load_le64(const void *p)
{ uint64_t v; memcpy(&v, p, 8); return v; }   /* little-endian hosts only */
static inline void ct_store_le64(void *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t ct_load_le32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t ct_load_le16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }

typedef struct ct_buf { char *data; size_t len, cap; } ct_buf;
int ct_buf_reserve(ct_buf *b, size_t extra);
int ct_buf_put(ct_buf *b, const void *p, size_t n);
int ct_buf_putc(ct_buf *b, char c);
int ct_buf_puts(ct_buf *b, const char *s);
int ct_buf_printf(ct_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ct_buf_free(ct_buf *b);
/* The buffer's bytes (NUL-terminated; "" if none were put), reallocated to
 * their length, for strings that are kept: a buffer starts at 256 bytes,
 * and a kept name of 40 was a 256-byte block per tensor.  The buffer is
 * left empty.  NULL if out of memory. */
char *ct_buf_take(ct_buf *b);

/* Zeroed arrays that grow with the model: the tables of a checkpoint's
 * tensors (100,000 tensors make hundreds of MB of them).  From 512 KiB on,
 * an array is a mapping of its own, 2 MiB aligned, and marked for
 * transparent huge pages when it fills at least half of its 2 MiB pages
 * (so rounding up never doubles it): on this project's VMs a 4 KiB page fault costs
 * about 15 us, and faulting a large model's tables page by page was most of
 * its mount time.  Smaller arrays come from malloc.  ct_big_calloc checks
 * n * size for overflow; ct_big_realloc keeps the contents and zeroes what
 * it adds.  Only ct_big_free may free them.  NULL on failure. */
void *ct_big_calloc(size_t n, size_t size);
void *ct_big_realloc(void *p, size_t n, size_t size);
void ct_big_free(void *p);

/* Case-insensitive search of needle in a length-delimited haystack. */
const char *ct_memmem_ci(const char *hay, size_t n, const char *needle);
/* "[16, 256]" into buf; returns buf. */
char *ct_shape_str(char *buf, size_t size, int ndim, const int64_t *shape);

/* Cancellation, for programs that write files: after ct_cancel() (which a
 * signal handler may call) every file read and write of libct fails with
 * CT_EINTR, so that the operation in progress unwinds through its normal
 * error path and removes its temporary files.  It cannot be undone. */
/* Raise the soft limit on open files to the hard one: a model keeps one
 * descriptor per shard open (and mkct two), and some have more than the
 * usual soft limit of 1024.  Called first thing by the programs. */
void ct_raise_nofile(void);
void ct_cancel(void);
int ct_cancelled(void);

int ct_pread_full(int fd, void *buf, uint64_t len, uint64_t off, const char *label, ct_err *err);
int ct_write_full(int fd, const void *buf, size_t len, const char *label, ct_err *err);
/* Open a regular file for reading (*fd, and its fstat in *sb if sb is not
 * NULL); anything else (a FIFO, which would block the open, a device, a
 * directory) is refused without waiting. */
int ct_open_regular(const char *path, int *fd, struct stat *sb, ct_err *err);
/* Read a whole (small) file, NUL-terminated; max_size bounds it. */
int ct_read_file(const char *path, size_t max_size, char **data, size_t *len, ct_err *err);
/* Join a directory and a name into a malloc'd path. */
char *ct_path_join(const char *dir, const char *name);
/* s ends with suffix and has something before it. */
static inline int ct_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0;
}
/* Parse "256M", "1G", "4096", "64k" (binary units); -1 on error. */
int ct_parse_size(const char *s, uint64_t *out);
/* Copy a regular file to a new file (refuses to overwrite). */
int ct_copy_file(const char *from, const char *to, ct_err *err);
/* The files of a checkpoint directory other than the model's own:
 * everything in dir and below it, as paths relative to dir, sorted by path
 * (a directory comes before what it holds).  Left out at the top level:
 * config.json and model.safetensors.index.json, which every caller
 * rewrites, the names in skip (NULL entries ignored), the shards, and at
 * the top of a ctfs mount (it holds .ctfs-stats) its tensors/.  Regular files and
 * directories only; names starting with '.' are left out (.git, .cache,
 * .gitattributes).  Symbolic links are followed (a Hugging Face cache
 * snapshot is made of them), except to a directory on their own path (a
 * loop, left out); dangling links are left out. */
typedef struct ct_other_file {
    char *rel;        /* "README.md", "original/params.json" */
    int is_dir;
    uint64_t size;    /* of a regular file, when listed */
} ct_other_file;
int ct_list_other_files(const char *dir, const char *const *skip, size_t nskip, ct_other_file **out, size_t *n,
                        ct_err *err);
void ct_other_files_free(ct_other_file *f, size_t n);
/* Copy the n listed files of dir into the existing directory dst
 * (directories made 0755). */
int ct_copy_other_files(const char *dir, const ct_other_file *f, size_t n, const char *dst, ct_err *err);
/* Refuse (CT_EUSAGE) an output path that would modify or delete the
 * input: dst the source itself, dst a directory holding the source
 * (replacing it would remove the input), or dst inside a source directory
 * (the output would be copied into itself as one of the source's files).
 * Paths are compared after resolving symbolic links, dst's parent only. */
int ct_check_dst(const char *src, const char *dst, ct_err *err);
/* Remove a directory tree (best effort; for cleaning up our own temporaries). */
void ct_remove_tree(const char *path);
/* Build a directory atomically: fill() writes into a fresh temporary
 * directory next to dst, which then takes dst's place (an existing dst
 * directory, when replace is set, is moved aside first and removed after).
 * On failure nothing is left behind and dst is untouched. */
typedef int (*ct_dir_fill)(const char *tmpdir, void *arg, ct_err *err);
int ct_write_dir_atomic(const char *dst, int replace, ct_dir_fill fill, void *arg, ct_err *err);
/* Write a file atomically: fill() writes to an open temporary file next to
 * dst (label names it in messages); then it is synced, made 0644 and renamed
 * over dst.  On failure the temporary file is removed and dst untouched. */
typedef int (*ct_file_fill)(int fd, const char *label, void *arg, ct_err *err);
int ct_write_file_atomic(const char *dst, ct_file_fill fill, void *arg, ct_err *err);
/* Escape a tensor name for printing: control characters and backslash as \xHH. */
char *ct_escape_name(const char *name);
/* Terminal columns a UTF-8 string takes: East Asian wide characters and
 * emoji 2, combining marks 0, every other character 1 (a byte that does
 * not start a valid sequence counts as 1). */
size_t ct_display_width(const char *s);

#endif
