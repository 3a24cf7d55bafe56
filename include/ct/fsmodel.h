/* The tree a ctfs mount shows, independent of FUSE.
 *
 *   SRC a file X.safetensors:  /X.safetensors (dense view)
 *   SRC a directory:           /<shard> (dense shard per source shard),
 *                              /model.safetensors.index.json, /config.json
 *                              (rewritten), every other file and
 *                              directory as is (ct_source_other_files)
 *   always:                    /tensors/<name> (raw little-endian bytes),
 *                              /tensors/<name>.npy, /.ctfs-stats
 *
 * Tensor names are escaped for file names: '%', '/', control characters
 * and DEL become %XX, a name "." or ".." or "" is fully %-encoded, and the
 * last '.' of a raw name ending in ".npy" becomes %2E; so every name maps
 * to one file and raw and .npy names never collide.  .npy files widen
 * BF16 and F8_* exactly to float32; sub-byte dtypes get no .npy.
 *
 * Inode numbers are stable indexes (1 = root).  Sizes are exact at
 * creation; nothing is decoded until read.  Reads of decoded files go
 * through a ct_cache of block_size blocks.  Thread-safe after creation. */
#ifndef CT_FSMODEL_H
#define CT_FSMODEL_H

#include <stddef.h>
#include <stdint.h>
#include "ct/cache.h"
#include "ct/source.h"
#include "ct/strmap.h"

typedef enum {
    CT_FS_DIR, CT_FS_VIEW, CT_FS_TENSOR, CT_FS_NPY, CT_FS_BYTES, CT_FS_PASSTHRU, CT_FS_STATS
} ct_fs_kind;

typedef struct ct_fs ct_fs;

typedef struct ct_fs_node {
    uint64_t ino, parent;
    char *name;
    ct_fs_kind kind;
    uint64_t size;
    size_t index;             /* view (shard) or tensor index */
    uint64_t *children;       /* directories */
    size_t nchildren;
    size_t nsubdirs;          /* children that are directories (st_nlink - 2) */
    ct_strmap *byname;        /* child name -> ino, for directories of many
                                 (tensors/ of a large model: one lookup per
                                 entry of an ls -l) */
    char *bytes;              /* CT_FS_BYTES contents */
    size_t nbytes;            /* their length; for CT_FS_NPY the header's
                                 (made again when read: not kept per tensor) */
    char *path;               /* CT_FS_PASSTHRU source file, for messages */
    const char *rel;          /* ...relative to the source directory (in path) */
} ct_fs_node;

typedef struct ct_fs_opts {
    uint64_t cache_size;      /* bytes */
    size_t block_size;
} ct_fs_opts;

int ct_fs_new(const ct_source *src, const ct_fs_opts *o, ct_fs **out, ct_err *err);
void ct_fs_free(ct_fs *fs);
/* How many files and directories of the source are not shown because they
 * sit under a top-level "tensors", whose name the mount's own directory
 * takes (mkct --format dense copies them). */
size_t ct_fs_hidden(const ct_fs *fs);

const ct_fs_node *ct_fs_get(const ct_fs *fs, uint64_t ino);   /* NULL if none */
size_t ct_fs_count(const ct_fs *fs);   /* nodes; inos run from 1 to this */
/* Bytes of the dense checkpoint the tree shows: every file but those under
 * tensors/ (the same bytes again) and the statistics file. */
uint64_t ct_fs_checkpoint_bytes(const ct_fs *fs);
uint64_t ct_fs_lookup(const ct_fs *fs, uint64_t parent, const char *name);   /* 0 if none */
ct_cache *ct_fs_cache(ct_fs *fs);
int ct_fs_cached_kind(ct_fs_kind k);   /* decoded through the cache */

/* Copy up to len bytes at off (clamped to the size) into buf; *got = bytes.
 * Decoded files go through the cache; prefetch reads are not counted as hits. */
int ct_fs_read(ct_fs *fs, uint64_t ino, uint64_t off, size_t len, void *buf, size_t *got, ct_err *err);
/* Zero-copy reads of decoded files: pin the cache blocks covering
 * [off, off+len) (clamped to the size) and return up to max spans pointing
 * into them; the bytes stay valid until ct_fs_unpin().  Stops after max
 * spans, so the spans may cover less than asked: the caller sums them.
 * Returns 0 with *n = 0 for kinds that are not cached (use ct_fs_read). */
typedef struct ct_fs_span {
    const void *data;
    size_t len;
    ct_cache_block *block;
} ct_fs_span;
int ct_fs_read_pinned(ct_fs *fs, uint64_t ino, uint64_t off, size_t len, ct_fs_span *spans, size_t max,
                      size_t *n, ct_err *err);
void ct_fs_unpin(ct_fs *fs, ct_fs_span *spans, size_t n);

/* Decode exactly [off, off+len) of a decoded file, bypassing the cache
 * (for random readers: no block-sized amplification). */
int ct_fs_read_direct(ct_fs *fs, uint64_t ino, uint64_t off, size_t len, void *buf, size_t *got, ct_err *err);
/* 1 if the block holding byte off of the file is in the cache. */
int ct_fs_cached(ct_fs *fs, uint64_t ino, uint64_t off);

/* A sequential reader has gone past this block (see ct_cache_drop). */
void ct_fs_drop(ct_fs *fs, uint64_t ino, uint64_t block);

/* Readahead hint for the stored bytes behind blocks [block, block+n) of a
 * decoded file (the dense views and raw tensor files; .npy files get none). */
void ct_fs_advise(ct_fs *fs, uint64_t ino, uint64_t block, uint64_t n);

/* Decode one block of a file into the cache ahead of a reader. */
int ct_fs_prefetch(ct_fs *fs, uint64_t ino, uint64_t block, ct_err *err);

/* xattrs of a node: *n pairs of malloc'd strings in names/values. */
int ct_fs_xattrs(const ct_fs *fs, uint64_t ino, char ***names, char ***values, size_t *n);
void ct_fs_xattrs_free(char **names, char **values, size_t n);
/* Runtime statistics as text (malloc'd). */
char *ct_fs_stats_text(ct_fs *fs);

/* The file name for a tensor name (malloc'd), as described above. */
char *ct_fs_escape(const char *name, int npy);
/* .npy header for a dtype/shape, or NULL when numpy has no exact type. */
char *ct_npy_header(ct_dtype dt, int ndim, const int64_t *shape, size_t *len, ct_dtype *npy_dtype);

#endif
