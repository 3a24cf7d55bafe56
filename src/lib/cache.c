#include "config.h"
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <time.h>
#include "ct/cache.h"

enum { LOADING, READY };

struct ct_cache_block {
    uint64_t file, block;
    char *data;
    size_t len;
    int refs, state, cached, prefetched, touched;
    int doomed;                             /* dropped while pinned: goes at the last put */
    struct ct_cache_block *hnext;           /* hash chain */
    struct ct_cache_block *prev, *next;     /* LRU, most recent at head */
};

/* Block buffers come from 2 MiB-aligned slabs (transparent huge pages where
 * the kernel allows: one fault per 2 MiB instead of 512) and are recycled
 * through a free list; the cap counts every buffer carved, in use or free.
 * Slab memory beyond the carved blocks is never touched, so it costs no RSS. */
#define SLAB ((size_t)2 << 20)

struct ct_cache {
    pthread_mutex_t lock;
    pthread_cond_t done;
    uint64_t cap, used;       /* used: bytes of cached blocks (resident) */
    uint64_t carved;          /* bytes of block buffers handed out of slabs */
    char *slab;               /* current slab and its carve position */
    size_t slab_pos, slab_size;
    void **slabs;
    size_t nslabs;
    void **freebufs;
    size_t nfree, free_cap;
    size_t bs;
    ct_cache_fill fill;
    void *ctx;
    ct_cache_block **table;
    size_t nbuckets;
    ct_cache_block *head, *tail;
    ct_cache_stats st;
};

static size_t bucket(const ct_cache *c, uint64_t f, uint64_t b)
{
    uint64_t h = (f * 0x9e3779b97f4a7c15ull) ^ (b * 0xc2b2ae3d27d4eb4full);
    return (size_t)(h ^ (h >> 29)) & (c->nbuckets - 1);
}

ct_cache *ct_cache_new(uint64_t cap, size_t bs, ct_cache_fill fill, void *ctx)
{
    ct_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cap = cap;
    c->bs = bs;
    c->fill = fill;
    c->ctx = ctx;
    c->nbuckets = 1024;
    while (c->nbuckets < 2 * (cap / (bs ? bs : 1)) && c->nbuckets < (1u << 24))
        c->nbuckets <<= 1;
    c->table = calloc(c->nbuckets, sizeof *c->table);
    if (!c->table) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->done, NULL);
    return c;
}

void ct_cache_free(ct_cache *c)
{
    if (!c)
        return;
    for (ct_cache_block *b = c->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    for (size_t i = 0; i < c->nslabs; i++)
        free(c->slabs[i]);
    free(c->slabs);
    free(c->freebufs);
    free(c->table);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->done);
    free(c);
}

size_t ct_cache_block_size(const ct_cache *c) { return c->bs; }
const void *ct_cache_data(const ct_cache_block *b) { return b->data; }
size_t ct_cache_len(const ct_cache_block *b) { return b->len; }

static void lru_unlink(ct_cache *c, ct_cache_block *b)
{
    if (b->prev) b->prev->next = b->next; else c->head = b->next;
    if (b->next) b->next->prev = b->prev; else c->tail = b->prev;
    b->prev = b->next = NULL;
}

static void lru_front(ct_cache *c, ct_cache_block *b)
{
    b->next = c->head;
    b->prev = NULL;
    if (c->head) c->head->prev = b;
    c->head = b;
    if (!c->tail) c->tail = b;
}

static void hash_remove(ct_cache *c, ct_cache_block *b)
{
    ct_cache_block **p = &c->table[bucket(c, b->file, b->block)];
    while (*p && *p != b)
        p = &(*p)->hnext;
    if (*p)
        *p = b->hnext;
}

static ct_cache_block *find(ct_cache *c, uint64_t f, uint64_t blk)
{
    for (ct_cache_block *b = c->table[bucket(c, f, blk)]; b; b = b->hnext)
        if (b->file == f && b->block == blk)
            return b;
    return NULL;
}

static void release_buf(ct_cache *c, char *buf)
{
    c->freebufs[c->nfree++] = buf;   /* free_cap >= every buffer ever carved */
}

/* A new buffer from the slabs, if the cap allows one more. */
static char *carve(ct_cache *c)
{
    if (c->carved + c->bs > c->cap)
        return NULL;
    if (c->carved / c->bs + 1 > c->free_cap) {   /* room to free every buffer */
        size_t cap = c->free_cap ? 2 * c->free_cap : 64;
        void **f = realloc(c->freebufs, cap * sizeof *f);
        if (!f)
            return NULL;
        c->freebufs = f;
        c->free_cap = cap;
    }
    if (!c->slab || c->slab_size - c->slab_pos < c->bs) {
        size_t size = c->bs <= SLAB ? SLAB : (c->bs + SLAB - 1) / SLAB * SLAB;
        void *p = NULL, **sl = realloc(c->slabs, (c->nslabs + 1) * sizeof *sl);
        if (!sl)
            return NULL;
        c->slabs = sl;
        if (posix_memalign(&p, SLAB, size) != 0)
            return NULL;
#ifdef MADV_HUGEPAGE
        madvise(p, size, MADV_HUGEPAGE);
#endif
        c->slabs[c->nslabs++] = p;
        c->slab = p;
        c->slab_pos = 0;
        c->slab_size = size;
    }
    char *buf = c->slab + c->slab_pos;
    c->slab_pos += c->bs;
    c->carved += c->bs;
    return buf;
}

/* Remove an unpinned, decoded block from the cache; its buffer is
 * returned to the caller. */
static char *take_out(ct_cache *c, ct_cache_block *b)
{
    lru_unlink(c, b);
    hash_remove(c, b);
    c->used -= c->bs;
    if (b->prefetched && !b->touched)
        c->st.prefetch_wasted++;
    char *buf = b->data;
    free(b);
    return buf;
}

/* A buffer for one more cached block: a free one, a new one within the
 * cap, or the buffer of the least recently used unpinned block. */
static char *get_buf(ct_cache *c)
{
    if (c->nfree)
        return c->freebufs[--c->nfree];
    char *buf = carve(c);
    if (buf)
        return buf;
    for (ct_cache_block *b = c->tail; b; b = b->prev)
        if (b->refs == 0 && b->state == READY) {
            c->st.evictions++;
            return take_out(c, b);
        }
    return NULL;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int ct_cache_get(ct_cache *c, uint64_t file, uint64_t blk, int prefetch, ct_cache_block **out, ct_err *err)
{
    pthread_mutex_lock(&c->lock);
    for (;;) {
        ct_cache_block *b = find(c, file, blk);
        if (!b)
            break;
        if (b->state == LOADING) {
            c->st.waits++;
            pthread_cond_wait(&c->done, &c->lock);
            continue;   /* it may have failed and gone: look again */
        }
        b->refs++;
        if (!prefetch) {
            c->st.hits++;
            if (b->prefetched && !b->touched)
                c->st.prefetch_used++;
            b->touched = 1;
        }
        lru_unlink(c, b);
        lru_front(c, b);
        pthread_mutex_unlock(&c->lock);
        *out = b;
        return 0;
    }
    /* miss: this caller decodes */
    ct_cache_block *b = calloc(1, sizeof *b);
    char *data = b ? get_buf(c) : NULL;
    int cached = data != NULL;
    if (b && !data)
        data = malloc(c->bs);   /* all pinned at the cap: a private buffer */
    if (!b || !data) {
        free(b);
        pthread_mutex_unlock(&c->lock);
        return ct_fail(err, CT_ENOMEM, "out of memory for a %zu-byte cache block", c->bs);
    }
    b->file = file;
    b->block = blk;
    b->data = data;
    b->refs = 1;
    b->state = LOADING;
    b->prefetched = prefetch;
    b->touched = !prefetch;
    b->cached = cached;
    if (prefetch)
        c->st.prefetched++;
    else
        c->st.misses++;
    if (b->cached) {
        c->used += c->bs;
        b->hnext = c->table[bucket(c, file, blk)];
        c->table[bucket(c, file, blk)] = b;
        lru_front(c, b);
    } else {
        c->st.uncached++;
    }
    pthread_mutex_unlock(&c->lock);

    uint64_t t0 = now_ns();
    size_t len = 0;
    int rc = c->fill(c->ctx, file, blk, b->data, &len, err);
    uint64_t dt = now_ns() - t0;

    pthread_mutex_lock(&c->lock);
    c->st.decode_ns += dt;
    if (!rc) {
        c->st.bytes_decoded += len;
        b->len = len;
        b->state = READY;
    } else if (b->cached) {
        lru_unlink(c, b);
        hash_remove(c, b);
        c->used -= c->bs;
        release_buf(c, b->data);
    }
    int was_cached = b->cached;
    pthread_cond_broadcast(&c->done);
    pthread_mutex_unlock(&c->lock);
    if (rc) {
        if (!was_cached)
            free(b->data);
        free(b);
        return rc;
    }
    *out = b;
    return 0;
}

void ct_cache_put(ct_cache *c, ct_cache_block *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&c->lock);
    int last = --b->refs == 0, drop = last && !b->cached;
    if (last && b->cached && b->doomed && b->state == READY) {
        c->st.dropped++;
        release_buf(c, take_out(c, b));
    }
    pthread_mutex_unlock(&c->lock);
    if (drop) {
        free(b->data);
        free(b);
    }
}

size_t ct_cache_reserve(ct_cache *c, size_t n)
{
    pthread_mutex_lock(&c->lock);
    /* n buffers carved in all, not n free: readers take free buffers while
     * this runs, and refilling behind them would fault in the whole cap. */
    while (c->nfree < n && c->carved / c->bs < n) {
        char *buf = carve(c);
        if (!buf)
            break;
        /* The buffer is nobody's until it is on the free list: fault it
         * in without holding the lock. */
        pthread_mutex_unlock(&c->lock);
        memset(buf, 0, c->bs);
        pthread_mutex_lock(&c->lock);
        release_buf(c, buf);
    }
    size_t have = c->nfree;
    pthread_mutex_unlock(&c->lock);
    return have;
}

void ct_cache_drop(ct_cache *c, uint64_t file, uint64_t blk)
{
    pthread_mutex_lock(&c->lock);
    ct_cache_block *b = find(c, file, blk);
    if (b && b->refs == 0 && b->state == READY) {
        c->st.dropped++;
        release_buf(c, take_out(c, b));
    } else if (b) {
        b->doomed = 1;   /* being copied out or decoded: at its last put */
    }
    pthread_mutex_unlock(&c->lock);
}

int ct_cache_has(ct_cache *c, uint64_t file, uint64_t blk)
{
    pthread_mutex_lock(&c->lock);
    int r = find(c, file, blk) != NULL;
    pthread_mutex_unlock(&c->lock);
    return r;
}

void ct_cache_get_stats(ct_cache *c, ct_cache_stats *s)
{
    pthread_mutex_lock(&c->lock);
    *s = c->st;
    s->bytes = c->used;
    s->blocks = c->bs ? c->used / c->bs : 0;
    pthread_mutex_unlock(&c->lock);
}
