/* Helpers for tests that build safetensors files and checkpoints. */
#ifndef CT_TESTUTIL_H
#define CT_TESTUTIL_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ct/st.h"

/* A fresh temporary directory (removed by the OS tmp cleaner; tests are small). */
static inline char *tu_tmpdir(void)
{
    char *d = strdup("/tmp/ct-unit.XXXXXX");
    return mkdtemp(d) ? d : NULL;
}

/* Write 8-byte length + header (as given, unpadded) + data. */
static inline void tu_write_raw(const char *path, const char *header, size_t hlen, const void *data, size_t dlen)
{
    FILE *f = fopen(path, "wb");
    uint64_t n = hlen;
    fwrite(&n, 8, 1, f);
    fwrite(header, 1, hlen, f);
    if (dlen)
        fwrite(data, 1, dlen, f);
    fclose(f);
}

static inline void tu_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

typedef struct tu_tensor {
    const char *name;
    ct_dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
} tu_tensor;

/* Write a valid safetensors file (reference layout, optional metadata). */
static inline void tu_write_st(const char *path, const tu_tensor *t, size_t n, const char *meta_k, const char *meta_v)
{
    ct_st_entry *e = calloc(n + 1, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        e[i].name = t[i].name;
        e[i].dtype = t[i].dtype;
        e[i].ndim = t[i].ndim;
        memcpy(e[i].shape, t[i].shape, sizeof(int64_t) * (size_t)t[i].ndim);
        ct_tensor_nbytes(t[i].dtype, t[i].ndim, t[i].shape, NULL, &e[i].nbytes, NULL);
        e[i].user = i;
    }
    char *hdr;
    size_t hlen;
    const char *mk[1] = {meta_k}, *mv[1] = {meta_v};
    ct_st_layout(e, n, mk, mv, meta_k ? 1 : 0, &hdr, &hlen, NULL);
    FILE *f = fopen(path, "wb");
    fwrite(hdr, 1, hlen, f);
    for (size_t i = 0; i < n; i++)
        if (e[i].nbytes)
            fwrite(t[e[i].user].data, 1, e[i].nbytes, f);
    fclose(f);
    free(hdr);
    free(e);
}

static inline char *tu_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}
/* xorshift64: the tests' seeded pseudo-random numbers (*state != 0). */
static inline uint64_t tu_rnd(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

#endif
