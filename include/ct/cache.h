/* Block cache of decoded bytes: fixed-size blocks keyed by (file, block),
 * reference-counted, LRU-evicted, with a hard byte cap.
 *
 * ct_cache_get() returns a pinned block: its bytes stay valid until
 * ct_cache_put(), whatever else is evicted.  When a block is missing, the
 * first caller decodes it through the fill callback while later callers of
 * the same block wait for that one decode.  If every cached block is pinned
 * and the cap is reached, the block is decoded into a private buffer that
 * is freed on put, so readers always make progress and the cap holds.
 * All functions are thread-safe. */
#ifndef CT_CACHE_H
#define CT_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "ct/err.h"

typedef struct ct_cache ct_cache;
typedef struct ct_cache_block ct_cache_block;

/* Decode block `block` of `file` into buf (block_size bytes available);
 * set *len to the bytes produced (short only for a file's last block). */
typedef int (*ct_cache_fill)(void *ctx, uint64_t file, uint64_t block, void *buf, size_t *len, ct_err *err);

typedef struct ct_cache_stats {
    uint64_t hits, misses, waits;        /* waits: found the block being decoded */
    uint64_t bytes_decoded, decode_ns;
    uint64_t evictions, uncached;        /* uncached: decoded into a private buffer */
    uint64_t dropped;                    /* given up behind sequential readers */
    uint64_t prefetched, prefetch_used, prefetch_wasted;
    uint64_t blocks, bytes;              /* resident now */
} ct_cache_stats;

ct_cache *ct_cache_new(uint64_t cap_bytes, size_t block_size, ct_cache_fill fill, void *ctx);
void ct_cache_free(ct_cache *c);
size_t ct_cache_block_size(const ct_cache *c);

/* prefetch: mark the block as brought in ahead of a reader (for stats). */
int ct_cache_get(ct_cache *c, uint64_t file, uint64_t block, int prefetch, ct_cache_block **out, ct_err *err);
const void *ct_cache_data(const ct_cache_block *b);
size_t ct_cache_len(const ct_cache_block *b);
void ct_cache_put(ct_cache *c, ct_cache_block *b);
/* Give up a block a sequential reader has gone past: its buffer goes
 * straight back for reuse (before any least-recently-used block), so a
 * stream reuses a few warm buffers instead of filling the whole cap; a
 * block still pinned (a reply being copied out of it, a decode in flight)
 * goes at its last put.  Counted in the stats as dropped. */
void ct_cache_drop(ct_cache *c, uint64_t file, uint64_t block);
/* Carve and touch block buffers (within the cap) until n have been carved
 * in all, or n are free, so the first reads do not pay for faulting in
 * fresh memory; they wait on the free list.  Returns the number of buffers
 * now free. */
size_t ct_cache_reserve(ct_cache *c, size_t n);
/* 1 if the block is resident (decoded or being decoded). */
int ct_cache_has(ct_cache *c, uint64_t file, uint64_t block);
void ct_cache_get_stats(ct_cache *c, ct_cache_stats *s);

#endif
