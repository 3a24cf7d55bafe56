#include "config.h"
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "ct/view.h"
#include "ct/util.h"

struct ct_view {
    const ct_source *src;
    char *header;
    size_t header_len;
    ct_view_entry *e;
    size_t n;
    uint64_t size;
};

void ct_view_free(ct_view *v)
{
    if (v) {
        free(v->header);
        ct_big_free(v->e);
        free(v);
    }
}

int ct_view_new(const ct_source *src, size_t shard, ct_view **out, ct_err *err)
{
    int rc = 0;
    const size_t *idx;
    size_t n = ct_source_shard_tensors(src, shard, &idx);
    ct_view *v = calloc(1, sizeof *v);
    ct_st_entry *ents = ct_big_calloc(n + 1, sizeof *ents);
    const char **mk = NULL, **mv = NULL;
    if (!v || !ents) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    v->src = src;
    for (size_t k = 0; k < n; k++) {
        size_t i = idx[k];
        const ct_tensor *t = ct_source_tensor(src, i);
        ct_st_entry *e = &ents[k];
        e->name = t->name;
        e->dtype = t->dtype;
        e->ndim = t->ndim;
        memcpy(e->shape, t->shape, sizeof e->shape);
        e->nbytes = t->nbytes;
        e->user = i;
    }
    /* The source's metadata, minus the compression config it may carry
     * (this file is no longer compressed); {"format":"pt"} if none. */
    const ct_st *st = ct_source_shard(src, shard);
    size_t nm = st ? ct_st_meta_count(st) : 0, k = 0;
    mk = calloc(nm + 1, sizeof *mk);
    mv = calloc(nm + 1, sizeof *mv);
    if (!mk || !mv) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nm; i++)
        if (strcmp(ct_st_meta_key(st, i), "quantization_config") != 0) {
            mk[k] = ct_st_meta_key(st, i);
            mv[k++] = ct_st_meta_value(st, i);
        }
    if (k == 0) {
        mk[0] = "format";
        mv[0] = "pt";
        k = 1;
    }
    if ((rc = ct_st_layout(ents, n, mk, mv, k, &v->header, &v->header_len, err)))
        goto out;
    if (!(v->e = ct_big_calloc(n + 1, sizeof *v->e))) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    v->n = n;
    v->size = v->header_len;
    for (size_t i = 0; i < n; i++) {
        v->e[i].tensor = ents[i].user;
        v->e[i].offset = v->header_len + ents[i].begin;
        v->size += ents[i].nbytes;
    }
out:
    ct_big_free(ents);
    free(mk);
    free(mv);
    if (rc) {
        ct_view_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

uint64_t ct_view_size(const ct_view *v) { return v->size; }
size_t ct_view_header_size(const ct_view *v) { return v->header_len; }
size_t ct_view_count(const ct_view *v) { return v->n; }
const ct_view_entry *ct_view_entry_at(const ct_view *v, size_t i) { return i < v->n ? &v->e[i] : NULL; }

/* The last entry starting at or before data offset off. */
static size_t entry_at(const ct_view *v, uint64_t off)
{
    size_t lo = 0, hi = v->n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (v->e[mid].offset <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

void ct_view_advise(const ct_view *v, uint64_t off, uint64_t len)
{
    if (off >= v->size)
        return;
    if (len > v->size - off)
        len = v->size - off;
    uint64_t end = off + len;
    for (size_t i = entry_at(v, off); i < v->n; i++) {
        uint64_t b = v->e[i].offset, e = b + ct_source_tensor(v->src, v->e[i].tensor)->nbytes;
        if (b >= end)
            break;
        uint64_t lo = off > b ? off : b, hi = end < e ? end : e;
        if (lo < hi)
            ct_source_advise(v->src, v->e[i].tensor, lo - b, hi - lo);
    }
}

int ct_view_read(const ct_view *v, uint64_t off, uint64_t len, void *buf, ct_err *err)
{
    char *out = buf;
    if (off > v->size || len > v->size - off)
        return ct_fail(err, CT_EUSAGE, "read of %" PRIu64 " bytes at %" PRIu64 " is past the end (%" PRIu64 ")",
                       len, off, v->size);
    if (off < v->header_len) {
        uint64_t n = v->header_len - off < len ? v->header_len - off : len;
        memcpy(out, v->header + off, n);
        out += n;
        off += n;
        len -= n;
    }
    if (!len)
        return 0;
    for (size_t i = entry_at(v, off); i < v->n && len; i++) {
        const ct_tensor *t = ct_source_tensor(v->src, v->e[i].tensor);
        uint64_t b = v->e[i].offset, end = b + t->nbytes;
        if (end <= off)
            continue;
        uint64_t n = end - off < len ? end - off : len;
        int rc = ct_source_read(v->src, v->e[i].tensor, off - b, n, out, err);
        if (rc)
            return rc;
        out += n;
        off += n;
        len -= n;
    }
    return 0;
}
