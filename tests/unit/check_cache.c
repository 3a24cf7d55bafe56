/* Block cache contract: hard byte cap with LRU eviction, pinned blocks
 * never freed, one decode per block however many readers wait for it,
 * errors reported and not cached, progress when everything is pinned,
 * blocks given up behind a reader reused first, buffers reserved ahead. */
#include "config.h"
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tap.h"
#include "ct/cache.h"
#include "ct/util.h"
#include "ct/strmap.h"

#define BS 4096

static int fills, fail_block = -1, slow;
static pthread_mutex_t fl = PTHREAD_MUTEX_INITIALIZER;

static int fill(void *ctx, uint64_t file, uint64_t block, void *buf, size_t *len, ct_err *err)
{
    (void)ctx;
    pthread_mutex_lock(&fl);
    fills++;
    pthread_mutex_unlock(&fl);
    if (slow)
        usleep(50000);
    if ((int)block == fail_block)
        return ct_fail(err, CT_EFORMAT, "block %d is bad", fail_block);
    memset(buf, (int)(file * 16 + block), BS);
    *len = block == 7 ? 100 : BS;   /* a short last block */
    return 0;
}

START_TEST(t_cap_and_lru)
{
    fills = 0;
    ct_cache *c = ct_cache_new(4 * BS, BS, fill, NULL);
    ct_err err;
    ct_cache_block *b;
    for (int k = 0; k < 8; k++) {
        ck_assert_int_eq(ct_cache_get(c, 1, (uint64_t)k, 0, &b, &err), 0);
        ck_assert_uint_eq(((const unsigned char *)ct_cache_data(b))[0], 16 + k);
        ck_assert_uint_eq(ct_cache_len(b), k == 7 ? 100 : BS);
        ct_cache_put(c, b);
    }
    ct_cache_stats s;
    ct_cache_get_stats(c, &s);
    ck_assert_uint_eq(s.bytes, 4 * BS);      /* never above the cap */
    ck_assert_uint_eq(s.evictions, 4);
    ck_assert_uint_eq(s.misses, 8);
    /* blocks 4..7 are resident, 0..3 were evicted (LRU) */
    for (int k = 0; k < 8; k++)
        ck_assert_int_eq(ct_cache_has(c, 1, (uint64_t)k), k >= 4);
    ck_assert_int_eq(ct_cache_get(c, 1, 5, 0, &b, &err), 0);   /* hit, now most recent */
    ct_cache_put(c, b);
    ck_assert_int_eq(ct_cache_get(c, 1, 0, 0, &b, &err), 0);   /* evicts 4, the LRU */
    ct_cache_put(c, b);
    ck_assert_int_eq(ct_cache_has(c, 1, 4), 0);
    ck_assert_int_eq(ct_cache_has(c, 1, 5), 1);
    ct_cache_get_stats(c, &s);
    ck_assert_uint_eq(s.hits, 1);
    ck_assert_int_eq(fills, 9);
    ct_cache_free(c);
}
END_TEST

START_TEST(t_pins_and_progress)
{
    ct_cache *c = ct_cache_new(2 * BS, BS, fill, NULL);
    ct_err err;
    ct_cache_block *a, *b, *x;
    ck_assert_int_eq(ct_cache_get(c, 2, 0, 0, &a, &err), 0);
    ck_assert_int_eq(ct_cache_get(c, 2, 1, 0, &b, &err), 0);
    /* both pinned and the cap reached: a third block is decoded privately */
    ck_assert_int_eq(ct_cache_get(c, 2, 2, 0, &x, &err), 0);
    ck_assert_uint_eq(((const unsigned char *)ct_cache_data(x))[0], 34);
    ck_assert_int_eq(ct_cache_has(c, 2, 2), 0);
    ct_cache_stats s;
    ct_cache_get_stats(c, &s);
    ck_assert_uint_eq(s.uncached, 1);
    ck_assert_uint_eq(s.bytes, 2 * BS);
    /* pinned data survived */
    ck_assert_uint_eq(((const unsigned char *)ct_cache_data(a))[BS - 1], 32);
    ck_assert_uint_eq(((const unsigned char *)ct_cache_data(b))[BS - 1], 33);
    ct_cache_put(c, x);
    ct_cache_put(c, a);
    ct_cache_put(c, b);
    ck_assert_int_eq(ct_cache_get(c, 2, 3, 0, &x, &err), 0);   /* now something can go */
    ct_cache_put(c, x);
    ck_assert_int_eq(ct_cache_has(c, 2, 3), 1);
    ct_cache_free(c);
}
END_TEST

START_TEST(t_errors_not_cached)
{
    ct_cache *c = ct_cache_new(8 * BS, BS, fill, NULL);
    ct_err err = {0};
    ct_cache_block *b;
    fail_block = 3;
    ck_assert_int_eq(ct_cache_get(c, 1, 3, 0, &b, &err), CT_EFORMAT);
    ck_assert_str_eq(err.msg, "block 3 is bad");
    ck_assert_int_eq(ct_cache_has(c, 1, 3), 0);
    fail_block = -1;
    ck_assert_int_eq(ct_cache_get(c, 1, 3, 0, &b, &err), 0);   /* retried, now fine */
    ct_cache_put(c, b);
    ct_cache_free(c);
}
END_TEST

static ct_cache *shared;
static void *reader(void *arg)
{
    ct_err err;
    ct_cache_block *b;
    if (ct_cache_get(shared, 9, 1, 0, &b, &err) != 0)
        return (void *)1;
    int bad = ((const unsigned char *)ct_cache_data(b))[0] != 9 * 16 + 1;
    ct_cache_put(shared, b);
    (void)arg;
    return (void *)(intptr_t)bad;
}

START_TEST(t_one_decode_for_concurrent_readers)
{
    fills = 0;
    slow = 1;
    shared = ct_cache_new(8 * BS, BS, fill, NULL);
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, reader, NULL);
    int bad = 0;
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(th[i], &r);
        bad += (int)(intptr_t)r;
    }
    slow = 0;
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(fills, 1);
    ct_cache_stats s;
    ct_cache_get_stats(shared, &s);
    ck_assert_uint_eq(s.misses + s.hits, 8);
    ck_assert_uint_ge(s.waits, 1);
    ct_cache_free(shared);
}
END_TEST

START_TEST(t_drop_and_reserve)
{
    fills = 0;
    ct_cache *c = ct_cache_new(4 * BS, BS, fill, NULL);
    ct_err err;
    ct_cache_block *b, *pinned;
    /* reserve: at most the cap's worth of buffers, all free */
    ck_assert_uint_eq(ct_cache_reserve(c, 3), 3);
    ck_assert_uint_eq(ct_cache_reserve(c, 10), 4);
    ck_assert_int_eq(ct_cache_get(c, 1, 0, 0, &b, &err), 0);
    const void *buf0 = ct_cache_data(b);
    ct_cache_put(c, b);
    /* a dropped block leaves at once and its buffer is the next one used */
    ct_cache_drop(c, 1, 0);
    ck_assert_int_eq(ct_cache_has(c, 1, 0), 0);
    ck_assert_int_eq(ct_cache_get(c, 1, 1, 0, &b, &err), 0);
    ck_assert_ptr_eq(ct_cache_data(b), buf0);
    ck_assert_uint_eq(((const unsigned char *)ct_cache_data(b))[0], 16 + 1);
    ct_cache_put(c, b);
    /* a pinned block stays while pinned, however many pins it has, and
     * goes at its last put (its buffer then the next one used); an absent
     * one is a no-op */
    ct_cache_block *pin2;
    ck_assert_int_eq(ct_cache_get(c, 1, 2, 0, &pinned, &err), 0);
    ck_assert_int_eq(ct_cache_get(c, 1, 2, 0, &pin2, &err), 0);
    const void *buf2 = ct_cache_data(pinned);
    ct_cache_drop(c, 1, 2);
    ct_cache_drop(c, 1, 99);
    ck_assert_int_eq(ct_cache_has(c, 1, 2), 1);
    ck_assert_uint_eq(((const unsigned char *)ct_cache_data(pinned))[0], 16 + 2);
    ct_cache_put(c, pinned);
    ck_assert_int_eq(ct_cache_has(c, 1, 2), 1);
    ck_assert_uint_eq(((const unsigned char *)ct_cache_data(pin2))[0], 16 + 2);
    ct_cache_put(c, pin2);
    ck_assert_int_eq(ct_cache_has(c, 1, 2), 0);
    ck_assert_int_eq(ct_cache_get(c, 1, 3, 0, &b, &err), 0);
    ck_assert_ptr_eq(ct_cache_data(b), buf2);
    ct_cache_put(c, b);
    ct_cache_stats s;
    ct_cache_get_stats(c, &s);
    ck_assert_uint_eq(s.dropped, 2);
    ck_assert_uint_eq(s.evictions, 0);
    ck_assert_uint_eq(s.blocks, 2);      /* blocks 1 and 3 */
    ck_assert_int_eq(fills, 4);
    ct_cache_free(c);
    /* reserve counts the buffers carved in all, free or in use: readers
     * taking free buffers while it runs must not make it carve on to the
     * cap (faulting in memory nobody needs) */
    c = ct_cache_new(8 * BS, BS, fill, NULL);
    ct_cache_block *held[3];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ct_cache_get(c, 2, (uint64_t)i, 0, &held[i], &err), 0);
    ck_assert_uint_eq(ct_cache_reserve(c, 4), 1);   /* 3 in use + 1 carved now */
    ck_assert_uint_eq(ct_cache_reserve(c, 4), 1);
    for (int i = 0; i < 3; i++)
        ct_cache_put(c, held[i]);
    ct_cache_free(c);
}
END_TEST

START_TEST(t_prefetch_accounting)
{
    ct_cache *c = ct_cache_new(2 * BS, BS, fill, NULL);
    ct_err err;
    ct_cache_block *b;
    ck_assert_int_eq(ct_cache_get(c, 1, 0, 1, &b, &err), 0);   /* prefetched, then used */
    ct_cache_put(c, b);
    ck_assert_int_eq(ct_cache_get(c, 1, 0, 0, &b, &err), 0);
    ct_cache_put(c, b);
    ck_assert_int_eq(ct_cache_get(c, 1, 1, 1, &b, &err), 0);   /* prefetched, never used */
    ct_cache_put(c, b);
    ck_assert_int_eq(ct_cache_get(c, 1, 2, 0, &b, &err), 0);
    ct_cache_put(c, b);
    ck_assert_int_eq(ct_cache_get(c, 1, 3, 0, &b, &err), 0);
    ct_cache_put(c, b);
    ct_cache_stats s;
    ct_cache_get_stats(c, &s);
    ck_assert_uint_eq(s.prefetched, 2);
    ck_assert_uint_eq(s.prefetch_used, 1);
    ck_assert_uint_eq(s.prefetch_wasted, 1);
    ct_cache_free(c);
}
END_TEST

/* ct_big_*: the tables of a model's tensors, below and above the size from
 * which they are mappings of their own (512 KiB), and across that size. */
static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static int pattern_kept(const unsigned char *p, size_t n, size_t k)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 7 + k))
            return 0;
    return 1;
}

START_TEST(t_big_arrays)
{
    size_t sizes[] = {1, 4000, (512u << 10) - 64, 512u << 10, 3u << 20, (2u << 20) - 64, 5u << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        unsigned char *p = ct_big_calloc(n, 1);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % _Alignof(max_align_t), 0);
        ck_assert(all_zero(p, n));
        for (size_t i = 0; i < n; i++)
            p[i] = (unsigned char)(i * 7 + k);
        /* grow (within the mapping or into a new one): contents kept,
         * the rest zero */
        size_t m = 2 * n + 100;
        unsigned char *q = ct_big_realloc(p, m, 1);
        ck_assert_ptr_nonnull(q);
        ck_assert(pattern_kept(q, n, k));
        ck_assert(all_zero(q + n, m - n));
        /* shrink, then grow again in place: what was cut off reads zero */
        q = ct_big_realloc(q, n / 2, 1);
        ck_assert_ptr_nonnull(q);
        q = ct_big_realloc(q, n, 1);
        ck_assert_ptr_nonnull(q);
        ck_assert(pattern_kept(q, n / 2, k));
        ck_assert(all_zero(q + n / 2, n - n / 2));
        ct_big_free(q);
    }
    ck_assert_ptr_null(ct_big_calloc(SIZE_MAX / 8, 16));
    ck_assert_ptr_null(ct_big_calloc(SIZE_MAX - 10, 1));
    void *p = ct_big_calloc(10, 10);
    ck_assert_ptr_null(ct_big_realloc(p, SIZE_MAX / 2, 3));
    ct_big_free(p);
    ct_big_free(NULL);

    /* a string map grown far past its first size (its slots are big
     * arrays): every key found, no key twice */
    ct_strmap *m = ct_strmap_new(4);
    ck_assert_ptr_nonnull(m);
    enum { N = 100000 };
    char (*keys)[16] = malloc(N * sizeof *keys);
    size_t bad = 0;
    for (size_t i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "t.%zu", i);
        bad += ct_strmap_put(m, keys[i], i) != 0;
    }
    ck_assert_uint_eq(bad, 0);
    ck_assert_int_eq(ct_strmap_put(m, keys[777], 1), 1);
    ck_assert_uint_eq(ct_strmap_count(m), N);
    for (size_t i = 0; i < N; i++) {
        size_t v = N;
        bad += !ct_strmap_get(m, keys[i], &v) || v != i;
    }
    ck_assert_uint_eq(bad, 0);
    ck_assert(!ct_strmap_get(m, "t.100000", NULL));
    ct_strmap_free(m);
    free(keys);
}
END_TEST

START_TEST(t_buf_take)
{
    ct_buf b = {0};
    char *e = ct_buf_take(&b);             /* nothing put: "" */
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e, "");
    free(e);
    ck_assert_int_eq(ct_buf_puts(&b, "model.layers.0.mlp.down_proj.weight"), 0);
    ck_assert_int_eq(ct_buf_put(&b, "\0x", 2), 0);   /* binary bytes are kept too */
    size_t len = b.len;
    char *s = ct_buf_take(&b);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(len, 37);
    ck_assert_int_eq(memcmp(s, "model.layers.0.mlp.down_proj.weight\0x", 38), 0);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len + b.cap, 0);
    free(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("cache");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, t_cap_and_lru);
    tcase_add_test(tc, t_pins_and_progress);
    tcase_add_test(tc, t_errors_not_cached);
    tcase_add_test(tc, t_one_decode_for_concurrent_readers);
    tcase_add_test(tc, t_prefetch_accounting);
    tcase_add_test(tc, t_drop_and_reserve);
    tcase_add_test(tc, t_big_arrays);
    tcase_add_test(tc, t_buf_take);
    suite_add_tcase(s, tc);
    return ct_run_suite(s);
}
