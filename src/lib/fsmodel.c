#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ct/dense.h"
#include "ct/fsmodel.h"
#include "ct/util.h"
#include "ct/view.h"

struct ct_fs {
    const ct_source *src;
    ct_fs_node *nodes;        /* nodes[ino - 1] */
    size_t n, cap;
    ct_view **views;
    size_t nviews;
    ct_cache *cache;
    int dirfd;                /* the source directory, for pass-through files: the
                                 daemon's working directory may change (-1: none) */
    size_t hidden;            /* source entries under a top-level "tensors" */
};

static const char *STATS_NAME = ".ctfs-stats";

char *ct_fs_escape(const char *name, int npy)
{
    ct_buf b = {0};
    int whole = !strcmp(name, ".") || !strcmp(name, "..") || !*name;
    size_t len = strlen(name);
    int npy_suffix = len >= 4 && !strcmp(name + len - 4, ".npy");
    int bad = 0;
    if (!*name)
        bad |= ct_buf_puts(&b, "%");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        int esc = whole || ch == '%' || ch == '/' || ch < 0x20 || ch == 0x7f || (npy_suffix && i == len - 4);
        bad |= esc ? ct_buf_printf(&b, "%%%02X", ch) : ct_buf_putc(&b, (char)ch);
    }
    if (npy)
        bad |= ct_buf_puts(&b, ".npy");
    if (bad) {
        ct_buf_free(&b);
        return NULL;
    }
    return ct_buf_take(&b);
}

/* numpy type for a dtype, and the dtype the .npy holds (widened). */
static const char *npy_descr(ct_dtype dt, ct_dtype *as)
{
    *as = dt;
    switch (dt) {
    case CT_BOOL: return "|b1";
    case CT_U8: return "|u1";
    case CT_I8: return "|i1";
    case CT_I16: return "<i2";
    case CT_U16: return "<u2";
    case CT_I32: return "<i4";
    case CT_U32: return "<u4";
    case CT_I64: return "<i8";
    case CT_U64: return "<u8";
    case CT_F16: return "<f2";
    case CT_F32: return "<f4";
    case CT_F64: return "<f8";
    case CT_C64: return "<c8";
    case CT_BF16: case CT_F8_E4M3: case CT_F8_E5M2: case CT_F8_E8M0: case CT_F8_E4M3FNUZ:
    case CT_F8_E5M2FNUZ:
        *as = CT_F32;
        return "<f4";
    default: return NULL;
    }
}

char *ct_npy_header(ct_dtype dt, int ndim, const int64_t *shape, size_t *len, ct_dtype *as)
{
    const char *d = npy_descr(dt, as);
    if (!d)
        return NULL;
    ct_buf dict = {0};
    int bad = ct_buf_printf(&dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", d);
    for (int i = 0; i < ndim; i++)
        bad |= ct_buf_printf(&dict, "%" PRId64 "%s", shape[i], ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
    bad |= ct_buf_puts(&dict, "), }");
    /* pad with spaces and a final newline so data starts at a multiple of 64 */
    while (!bad && (10 + dict.len + 1) % 64)
        bad |= ct_buf_putc(&dict, ' ');
    bad |= ct_buf_putc(&dict, '\n');
    ct_buf out = {0};
    uint16_t hl = (uint16_t)dict.len;
    bad |= dict.len > 65535 || ct_buf_put(&out, "\x93NUMPY\x01\x00", 8) || ct_buf_put(&out, &hl, 2)
           || ct_buf_put(&out, dict.data, dict.len);
    ct_buf_free(&dict);
    if (bad) {
        ct_buf_free(&out);
        return NULL;
    }
    *len = out.len;
    return ct_buf_take(&out);
}

static ct_fs_node *add_node(ct_fs *fs, uint64_t parent, char *name, ct_fs_kind kind, uint64_t size)
{
    if (!name)
        return NULL;
    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 64;
        ct_fs_node *n = ct_big_realloc(fs->nodes, cap, sizeof *n);
        if (!n) {
            free(name);
            return NULL;
        }
        fs->nodes = n;
        fs->cap = cap;
    }
    ct_fs_node *n = &fs->nodes[fs->n++];
    memset(n, 0, sizeof *n);
    n->ino = fs->n;
    n->parent = parent;
    n->name = name;
    n->kind = kind;
    n->size = size;
    if (parent) {
        ct_fs_node *p = &fs->nodes[parent - 1];
        if ((p->nchildren & (p->nchildren - 1)) == 0) {
            /* full at every power of two: double (a directory of 200,000
             * files grew one entry at a time, copying each time) */
            uint64_t *c = realloc(p->children, (p->nchildren ? 2 * p->nchildren : 1) * sizeof *c);
            if (!c)
                return NULL;
            p->children = c;
        }
        p->children[p->nchildren++] = n->ino;
        p->nsubdirs += kind == CT_FS_DIR;
    }
    return &fs->nodes[n->ino - 1];
}

/* The directory node at path rel[0..len) below the root; 0 if none. */
static uint64_t lookup_path(const ct_fs *fs, const char *rel, size_t len)
{
    uint64_t ino = 1;
    char name[NAME_MAX + 1];
    for (size_t i = 0; i < len && ino;) {
        size_t k = i;
        while (k < len && rel[k] != '/')
            k++;
        if (k - i > NAME_MAX)
            return 0;
        memcpy(name, rel + i, k - i);
        name[k - i] = 0;
        ino = ct_fs_lookup(fs, ino, name);
        i = k + 1;
    }
    return ino && fs->nodes[ino - 1].kind == CT_FS_DIR ? ino : 0;
}

static int fill_block(void *ctx, uint64_t ino, uint64_t block, void *buf, size_t *len, ct_err *err);

size_t ct_fs_hidden(const ct_fs *fs)
{
    return fs->hidden;
}

void ct_fs_free(ct_fs *fs)
{
    if (!fs)
        return;
    for (size_t i = 0; i < fs->n; i++) {
        free(fs->nodes[i].name);
        free(fs->nodes[i].children);
        free(fs->nodes[i].bytes);
        free(fs->nodes[i].path);
        ct_strmap_free(fs->nodes[i].byname);
    }
    ct_big_free(fs->nodes);
    for (size_t i = 0; i < fs->nviews; i++)
        ct_view_free(fs->views[i]);
    free(fs->views);
    ct_cache_free(fs->cache);
    if (fs->dirfd >= 0)
        close(fs->dirfd);
    free(fs);
}

int ct_fs_new(const ct_source *src, const ct_fs_opts *o, ct_fs **out, ct_err *err)
{
    int rc = 0;
    ct_fs *fs = calloc(1, sizeof *fs);
    if (!fs)
        return ct_fail(err, CT_ENOMEM, "out of memory");
    fs->src = src;
    fs->dirfd = -1;
    fs->nviews = ct_source_nshards(src);
    fs->views = calloc(fs->nviews + 1, sizeof *fs->views);
    fs->cache = ct_cache_new(o->cache_size, o->block_size, fill_block, fs);
    if (!fs->views || !fs->cache || !add_node(fs, 0, strdup(""), CT_FS_DIR, 0))
        goto nomem;
    for (size_t i = 0; i < fs->nviews; i++) {
        if ((rc = ct_view_new(src, i, &fs->views[i], err)))
            goto fail;
        ct_fs_node *n = add_node(fs, 1, strdup(ct_source_shard_name(src, i)), CT_FS_VIEW, ct_view_size(fs->views[i]));
        if (!n)
            goto nomem;
        n->index = i;
    }
    if (ct_source_is_dir(src)) {
        if ((fs->dirfd = open(ct_source_path(src), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            rc = ct_fail(err, CT_EIO, "%s: %s", ct_source_path(src), strerror(errno));
            goto fail;
        }
        static const char *side[2] = {"model.safetensors.index.json", "config.json"};
        for (int k = 0; k < 2; k++) {
            char *text = NULL;
            size_t len = 0;
            rc = k == 0 ? ct_dense_index_json(src, &text, &len, err) : ct_dense_config_json(src, &text, &len, err);
            if (rc)
                goto fail;
            if (!text)
                continue;
            ct_fs_node *n = add_node(fs, 1, strdup(side[k]), CT_FS_BYTES, len);
            if (!n) {
                free(text);
                goto nomem;
            }
            n->bytes = text;
            n->nbytes = len;
        }
        /* every other file and directory as is, but for a top-level
         * "tensors" (the mount's own) and what it holds */
        ct_other_file *f;
        size_t nf;
        if ((rc = ct_source_other_files(src, &f, &nf, err)))
            goto fail;
        for (size_t i = 0; i < nf; i++) {
            const char *rel = f[i].rel, *base = strrchr(rel, '/');
            if (!strcmp(rel, "tensors") || !strncmp(rel, "tensors/", 8)) {
                fs->hidden++;
                continue;
            }
            uint64_t parent = base ? lookup_path(fs, rel, (size_t)(base - rel)) : 1;
            ct_fs_node *n = parent ? add_node(fs, parent, strdup(base ? base + 1 : rel),
                                              f[i].is_dir ? CT_FS_DIR : CT_FS_PASSTHRU, f[i].size)
                                   : NULL;
            if (!n || (!f[i].is_dir && !(n->path = ct_path_join(ct_source_path(src), rel)))) {
                ct_other_files_free(f, nf);
                goto nomem;
            }
            if (!f[i].is_dir)
                n->rel = n->path + strlen(n->path) - strlen(rel);
        }
        ct_other_files_free(f, nf);
    }
    if (!add_node(fs, 1, strdup(STATS_NAME), CT_FS_STATS, 0) || !add_node(fs, 1, strdup("tensors"), CT_FS_DIR, 0))
        goto nomem;
    uint64_t tdir = fs->n;
    for (size_t i = 0; i < ct_source_ntensors(src); i++) {
        const ct_tensor *t = ct_source_tensor(src, i);
        ct_fs_node *n = add_node(fs, tdir, ct_fs_escape(t->name, 0), CT_FS_TENSOR, t->nbytes);
        if (!n)
            goto nomem;
        n->index = i;
        size_t hl;
        ct_dtype as;
        char *hdr = ct_npy_header(t->dtype, t->ndim, t->shape, &hl, &as);
        if (!hdr)
            continue;
        free(hdr);          /* its length is kept; reads make it again */
        uint64_t numel;
        ct_tensor_nbytes(t->dtype, t->ndim, t->shape, &numel, NULL, NULL);
        n = add_node(fs, tdir, ct_fs_escape(t->name, 1), CT_FS_NPY, hl + numel * (ct_dtype_bits(as) / 8));
        if (!n)
            goto nomem;
        n->index = i;
        n->nbytes = hl;
    }
    /* the tree is complete: names stay where they are from here on */
    for (size_t i = 0; i < fs->n; i++) {
        ct_fs_node *d = &fs->nodes[i];
        if (d->kind != CT_FS_DIR || d->nchildren <= 8)
            continue;
        if (!(d->byname = ct_strmap_new(d->nchildren)))
            goto nomem;
        for (size_t k = 0; k < d->nchildren; k++)
            if (ct_strmap_put(d->byname, fs->nodes[d->children[k] - 1].name, (size_t)d->children[k]) < 0)
                goto nomem;
    }
    *out = fs;
    return 0;
nomem:
    rc = ct_fail(err, CT_ENOMEM, "out of memory building the mount tree");
fail:
    ct_fs_free(fs);
    return rc;
}

const ct_fs_node *ct_fs_get(const ct_fs *fs, uint64_t ino)
{
    return ino >= 1 && ino <= fs->n ? &fs->nodes[ino - 1] : NULL;
}

size_t ct_fs_count(const ct_fs *fs) { return fs->n; }

uint64_t ct_fs_checkpoint_bytes(const ct_fs *fs)
{
    uint64_t total = 0;
    for (size_t i = 0; i < fs->n; i++) {
        ct_fs_kind k = fs->nodes[i].kind;
        if (k == CT_FS_VIEW || k == CT_FS_BYTES || k == CT_FS_PASSTHRU)
            total += fs->nodes[i].size;
    }
    return total;
}

uint64_t ct_fs_lookup(const ct_fs *fs, uint64_t parent, const char *name)
{
    const ct_fs_node *p = ct_fs_get(fs, parent);
    if (!p || p->kind != CT_FS_DIR)
        return 0;
    if (p->byname) {
        size_t ino;
        return ct_strmap_get(p->byname, name, &ino) ? (uint64_t)ino : 0;
    }
    for (size_t i = 0; i < p->nchildren; i++)
        if (!strcmp(fs->nodes[p->children[i] - 1].name, name))
            return p->children[i];
    return 0;
}

ct_cache *ct_fs_cache(ct_fs *fs) { return fs->cache; }

int ct_fs_cached_kind(ct_fs_kind k) { return k == CT_FS_VIEW || k == CT_FS_TENSOR || k == CT_FS_NPY; }

/* .npy bytes [off, off+len): header, then the tensor widened if needed. */
static int npy_read(ct_fs *fs, const ct_fs_node *n, uint64_t off, size_t len, char *buf, ct_err *err)
{
    const ct_tensor *t = ct_source_tensor(fs->src, n->index);
    if (off < n->nbytes) {
        size_t hl;
        ct_dtype as;
        char *hdr = ct_npy_header(t->dtype, t->ndim, t->shape, &hl, &as);
        if (!hdr || hl != n->nbytes) {
            free(hdr);
            return ct_fail(err, CT_ENOMEM, "out of memory");
        }
        size_t k = n->nbytes - off < len ? (size_t)(n->nbytes - off) : len;
        memcpy(buf, hdr + off, k);
        free(hdr);
        buf += k;
        off += k;
        len -= k;
    }
    if (!len)
        return 0;
    uint64_t doff = off - n->nbytes;
    ct_dtype as;
    npy_descr(t->dtype, &as);
    if (as == t->dtype)
        return ct_source_read(fs->src, n->index, doff, len, buf, err);
    size_t es = ct_dtype_bits(t->dtype) / 8;
    uint64_t e0 = doff / 4, e1 = (doff + len + 3) / 4;
    unsigned char *raw = malloc((e1 - e0) * es + 1);
    float *wide = malloc((e1 - e0) * 4 + 1);
    int rc = raw && wide ? ct_source_read(fs->src, n->index, e0 * es, (e1 - e0) * es, raw, err)
                         : ct_fail(err, CT_ENOMEM, "out of memory");
    for (uint64_t i = 0; !rc && i < e1 - e0; i++) {
        switch (t->dtype) {
        case CT_BF16: wide[i] = ct_bf16_to_f32(ct_load_le16(raw + 2 * i)); break;
        case CT_F8_E4M3: wide[i] = ct_f8e4m3_to_f32(raw[i]); break;
        case CT_F8_E5M2: wide[i] = ct_f8e5m2_to_f32(raw[i]); break;
        case CT_F8_E4M3FNUZ: wide[i] = ct_f8e4m3fnuz_to_f32(raw[i]); break;
        case CT_F8_E5M2FNUZ: wide[i] = ct_f8e5m2fnuz_to_f32(raw[i]); break;
        /* float8_e8m0fnu: 0xff is NaN (ct_e8m0_to_f32 gives the +inf
         * upstream's scale arithmetic makes of it) */
        default: wide[i] = raw[i] == 0xff ? ct_u32_as_f32(0x7fc00000u) : ct_e8m0_to_f32(raw[i]); break;
        }
    }
    if (!rc)
        memcpy(buf, (char *)wide + (doff - e0 * 4), len);
    free(raw);
    free(wide);
    return rc;
}

static int decode_range(ct_fs *fs, const ct_fs_node *n, uint64_t off, size_t k, void *buf, ct_err *err)
{
    switch (n->kind) {
    case CT_FS_VIEW: return ct_view_read(fs->views[n->index], off, k, buf, err);
    case CT_FS_TENSOR: return ct_source_read(fs->src, n->index, off, k, buf, err);
    case CT_FS_NPY: return npy_read(fs, n, off, k, buf, err);
    default: return ct_fail(err, CT_EUSAGE, "not a decoded file");
    }
}

static int fill_block(void *ctx, uint64_t ino, uint64_t block, void *buf, size_t *len, ct_err *err)
{
    ct_fs *fs = ctx;
    const ct_fs_node *n = ct_fs_get(fs, ino);
    size_t bs = ct_cache_block_size(fs->cache);
    uint64_t off = block * bs;
    if (!n || off >= n->size)
        return ct_fail(err, CT_EUSAGE, "block %" PRIu64 " is past the end", block);
    size_t k = n->size - off < bs ? (size_t)(n->size - off) : bs;
    *len = k;
    return decode_range(fs, n, off, k, buf, err);
}

int ct_fs_read_direct(ct_fs *fs, uint64_t ino, uint64_t off, size_t len, void *buf, size_t *got, ct_err *err)
{
    const ct_fs_node *n = ct_fs_get(fs, ino);
    *got = 0;
    if (!n || !ct_fs_cached_kind(n->kind))
        return ct_fail(err, CT_EUSAGE, "not a decoded file");
    if (off >= n->size)
        return 0;
    if (len > n->size - off)
        len = (size_t)(n->size - off);
    int rc = decode_range(fs, n, off, len, buf, err);
    if (!rc)
        *got = len;
    return rc;
}

int ct_fs_cached(ct_fs *fs, uint64_t ino, uint64_t off)
{
    return ct_cache_has(fs->cache, ino, off / ct_cache_block_size(fs->cache));
}

int ct_fs_read(ct_fs *fs, uint64_t ino, uint64_t off, size_t len, void *buf, size_t *got, ct_err *err)
{
    const ct_fs_node *n = ct_fs_get(fs, ino);
    *got = 0;
    if (!n)
        return ct_fail(err, CT_EUSAGE, "no such file");
    if (n->kind == CT_FS_STATS) {
        char *t = ct_fs_stats_text(fs);
        if (!t)
            return ct_fail(err, CT_ENOMEM, "out of memory");
        size_t tl = strlen(t);
        if (off < tl) {
            *got = tl - off < len ? tl - (size_t)off : len;
            memcpy(buf, t + off, *got);
        }
        free(t);
        return 0;
    }
    if (off >= n->size)
        return 0;
    if (len > n->size - off)
        len = (size_t)(n->size - off);
    switch (n->kind) {
    case CT_FS_BYTES:
        memcpy(buf, n->bytes + off, len);
        *got = len;
        return 0;
    case CT_FS_PASSTHRU: {
        int fd = openat(fs->dirfd, n->rel, O_RDONLY | O_CLOEXEC | O_NONBLOCK);   /* a FIFO put in its place must not hang */
        if (fd < 0)
            return ct_fail(err, CT_EIO, "%s: %s", n->path, strerror(errno));
        int rc = ct_pread_full(fd, buf, len, off, n->path, err);
        close(fd);
        if (!rc)
            *got = len;
        return rc;
    }
    default:
        break;
    }
    size_t bs = ct_cache_block_size(fs->cache);
    char *dst = buf;
    while (len) {
        uint64_t block = off / bs;
        size_t in = (size_t)(off % bs);
        ct_cache_block *b;
        int rc = ct_cache_get(fs->cache, ino, block, 0, &b, err);
        if (rc)
            return rc;
        size_t k = ct_cache_len(b) - in < len ? ct_cache_len(b) - in : len;
        memcpy(dst, (const char *)ct_cache_data(b) + in, k);
        ct_cache_put(fs->cache, b);
        dst += k;
        off += k;
        len -= k;
        *got += k;
    }
    return 0;
}

int ct_fs_read_pinned(ct_fs *fs, uint64_t ino, uint64_t off, size_t len, ct_fs_span *spans, size_t max,
                      size_t *n, ct_err *err)
{
    const ct_fs_node *node = ct_fs_get(fs, ino);
    *n = 0;
    if (!node || !ct_fs_cached_kind(node->kind) || off >= node->size)
        return 0;
    if (len > node->size - off)
        len = (size_t)(node->size - off);
    size_t bs = ct_cache_block_size(fs->cache);
    while (len && *n < max) {
        ct_cache_block *b;
        int rc = ct_cache_get(fs->cache, ino, off / bs, 0, &b, err);
        if (rc) {
            ct_fs_unpin(fs, spans, *n);
            *n = 0;
            return rc;
        }
        size_t in = (size_t)(off % bs), k = ct_cache_len(b) - in < len ? ct_cache_len(b) - in : len;
        spans[*n].data = (const char *)ct_cache_data(b) + in;
        spans[*n].len = k;
        spans[*n].block = b;
        (*n)++;
        off += k;
        len -= k;
    }
    return 0;
}

void ct_fs_unpin(ct_fs *fs, ct_fs_span *spans, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ct_cache_put(fs->cache, spans[i].block);
}

void ct_fs_drop(ct_fs *fs, uint64_t ino, uint64_t block)
{
    const ct_fs_node *n = ct_fs_get(fs, ino);
    if (n && ct_fs_cached_kind(n->kind))
        ct_cache_drop(fs->cache, ino, block);
}

void ct_fs_advise(ct_fs *fs, uint64_t ino, uint64_t block, uint64_t nblocks)
{
    const ct_fs_node *n = ct_fs_get(fs, ino);
    uint64_t bs = ct_cache_block_size(fs->cache);
    if (!n || block > n->size / bs)
        return;   /* (the range is clamped to the file further down) */
    if (n->kind == CT_FS_VIEW)
        ct_view_advise(fs->views[n->index], block * bs, nblocks * bs);
    else if (n->kind == CT_FS_TENSOR)
        ct_source_advise(fs->src, n->index, block * bs, nblocks * bs);
}

int ct_fs_prefetch(ct_fs *fs, uint64_t ino, uint64_t block, ct_err *err)
{
    const ct_fs_node *n = ct_fs_get(fs, ino);
    if (!n || !ct_fs_cached_kind(n->kind) || block * ct_cache_block_size(fs->cache) >= n->size
        || ct_cache_has(fs->cache, ino, block))
        return 0;
    ct_cache_block *b;
    int rc = ct_cache_get(fs->cache, ino, block, 1, &b, err);
    if (!rc)
        ct_cache_put(fs->cache, b);
    return rc;
}

static int push(char ***names, char ***values, size_t *n, const char *k, char *v)
{
    char **a = realloc(*names, (*n + 1) * sizeof *a);
    if (!a) {
        free(v);
        return -1;
    }
    *names = a;
    char **b = realloc(*values, (*n + 1) * sizeof *b);
    if (!b) {
        free(v);
        return -1;
    }
    *values = b;
    (*names)[*n] = strdup(k);
    (*values)[*n] = v;
    (*n)++;
    return 0;
}

int ct_fs_xattrs(const ct_fs *fs, uint64_t ino, char ***names, char ***values, size_t *n)
{
    *names = *values = NULL;
    *n = 0;
    const ct_fs_node *node = ct_fs_get(fs, ino);
    if (!node)
        return -1;
    char tmp[512];
    if (node->kind == CT_FS_TENSOR || node->kind == CT_FS_NPY) {
        const ct_tensor *t = ct_source_tensor(fs->src, node->index);
        if (push(names, values, n, "user.ct.name", strdup(t->name))
            || push(names, values, n, "user.ct.format", strdup(t->format))
            || push(names, values, n, "user.ct.dtype", strdup(ct_dtype_name(t->dtype)))
            || push(names, values, n, "user.ct.shape", strdup(ct_shape_str(tmp, sizeof tmp, t->ndim, t->shape))))
            return -1;
        snprintf(tmp, sizeof tmp, "%" PRIu64, t->stored_bytes);
        if (push(names, values, n, "user.ct.stored_bytes", strdup(tmp)))
            return -1;
        snprintf(tmp, sizeof tmp, "%" PRIu64, t->nbytes);
        if (push(names, values, n, "user.ct.dense_bytes", strdup(tmp)))
            return -1;
    } else if (node->kind == CT_FS_VIEW) {
        uint64_t stored = 0, dense = 0, cnt = 0;
        for (size_t i = 0; i < ct_source_ntensors(fs->src); i++) {
            const ct_tensor *t = ct_source_tensor(fs->src, i);
            if (t->shard == node->index) {
                stored += t->stored_bytes;
                dense += t->nbytes;
                cnt++;
            }
        }
        if (push(names, values, n, "user.ct.format", strdup("safetensors (dense view)"))
            || push(names, values, n, "user.ct.source", strdup(ct_st_path(ct_source_shard(fs->src, node->index))))
            || push(names, values, n, "user.ct.config", strdup(ct_source_config_origin(fs->src))))
            return -1;
        snprintf(tmp, sizeof tmp, "%" PRIu64, cnt);
        if (push(names, values, n, "user.ct.tensors", strdup(tmp)))
            return -1;
        snprintf(tmp, sizeof tmp, "%" PRIu64, stored);
        if (push(names, values, n, "user.ct.stored_bytes", strdup(tmp)))
            return -1;
        snprintf(tmp, sizeof tmp, "%" PRIu64, dense);
        if (push(names, values, n, "user.ct.dense_bytes", strdup(tmp)))
            return -1;
    }
    return 0;
}

void ct_fs_xattrs_free(char **names, char **values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
        free(values[i]);
    }
    free(names);
    free(values);
}

char *ct_fs_stats_text(ct_fs *fs)
{
    ct_cache_stats s;
    ct_cache_get_stats(fs->cache, &s);
    ct_buf b = {0};
    if (ct_buf_printf(&b,
                      "hits %" PRIu64 "\nmisses %" PRIu64 "\nwaits %" PRIu64 "\nbytes_decoded %" PRIu64
                      "\ndecode_ms %.3f\nevictions %" PRIu64 "\ndropped %" PRIu64 "\nuncached %" PRIu64 "\nprefetched %" PRIu64
                      "\nprefetch_used %" PRIu64 "\nprefetch_wasted %" PRIu64 "\ncache_blocks %" PRIu64
                      "\ncache_bytes %" PRIu64 "\n",
                      s.hits, s.misses, s.waits, s.bytes_decoded, (double)s.decode_ns / 1e6, s.evictions, s.dropped, s.uncached,
                      s.prefetched, s.prefetch_used, s.prefetch_wasted, s.blocks, s.bytes)) {
        ct_buf_free(&b);
        return NULL;
    }
    return b.data;
}
