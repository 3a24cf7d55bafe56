/* A string -> size_t hash map (open addressing).  Keys are borrowed: the
 * caller keeps them alive as long as the map.  Not thread-safe for writes;
 * concurrent lookups on a map no longer modified are safe. */
#ifndef CT_STRMAP_H
#define CT_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct ct_strmap ct_strmap;

ct_strmap *ct_strmap_new(size_t expected);
void ct_strmap_free(ct_strmap *m);
/* Returns 0 on insert, 1 if the key was already present (value unchanged),
 * -1 on allocation failure. */
int ct_strmap_put(ct_strmap *m, const char *key, size_t value);
/* Returns 1 and sets *value when found, else 0. */
int ct_strmap_get(const ct_strmap *m, const char *key, size_t *value);
size_t ct_strmap_count(const ct_strmap *m);

#endif
