#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "ct/strmap.h"
#include "ct/util.h"

struct slot { const char *key; size_t value; uint64_t hash; };
struct ct_strmap { struct slot *slots; size_t cap, count; };

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;           /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h | 1;                                  /* 0 marks an empty slot */
}

ct_strmap *ct_strmap_new(size_t expected)
{
    ct_strmap *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    size_t cap = 16;
    while (cap < expected * 2 + 1 && cap < ((size_t)1 << 40))
        cap <<= 1;
    m->slots = ct_big_calloc(cap, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    m->cap = cap;
    return m;
}

void ct_strmap_free(ct_strmap *m)
{
    if (m) {
        ct_big_free(m->slots);
        free(m);
    }
}

static struct slot *find(struct slot *slots, size_t cap, const char *key, uint64_t h)
{
    size_t i = h & (cap - 1);
    while (slots[i].hash && !(slots[i].hash == h && strcmp(slots[i].key, key) == 0))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int grow(ct_strmap *m)
{
    size_t cap = m->cap * 2;
    struct slot *s = ct_big_calloc(cap, sizeof *s);
    if (!s)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].hash)
            *find(s, cap, m->slots[i].key, m->slots[i].hash) = m->slots[i];
    ct_big_free(m->slots);
    m->slots = s;
    m->cap = cap;
    return 0;
}

int ct_strmap_put(ct_strmap *m, const char *key, size_t value)
{
    if ((m->count + 1) * 2 > m->cap && grow(m) != 0)
        return -1;
    uint64_t h = hash_str(key);
    struct slot *s = find(m->slots, m->cap, key, h);
    if (s->hash)
        return 1;
    s->key = key;
    s->value = value;
    s->hash = h;
    m->count++;
    return 0;
}

int ct_strmap_get(const ct_strmap *m, const char *key, size_t *value)
{
    struct slot *s = find(m->slots, m->cap, key, hash_str(key));
    if (!s->hash)
        return 0;
    if (value)
        *value = s->value;
    return 1;
}

size_t ct_strmap_count(const ct_strmap *m) { return m->count; }
