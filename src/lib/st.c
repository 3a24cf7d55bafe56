#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "ct/st.h"
#include "ct/strmap.h"
#include "ct/util.h"

struct ct_st {
    char *path;
    int fd;
    ct_st_reader reader;  /* or, instead of fd, this (ct_st_set_reader) */
    void *reader_ctx;
    uint64_t file_size;
    uint64_t data_off;
    struct timespec mtime;
    ct_st_tensor *tensors;
    size_t n;
    char *names;         /* every tensor's name, one after the other */
    char **meta_kv;      /* 2*n_meta strings */
    size_t n_meta;
    ct_strmap *index;
};

int ct_tensor_nbytes(ct_dtype dt, int ndim, const int64_t *shape,
                     uint64_t *numel_out, uint64_t *nbytes_out, ct_err *err)
{
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return ct_fail(err, CT_EFORMAT, "negative dimension %" PRId64, shape[i]);
        if (ct_mul_overflow_u64(numel, (uint64_t)shape[i], &numel))
            return ct_fail(err, CT_EFORMAT, "element count overflows 64 bits");
    }
    uint64_t bits;
    if (ct_mul_overflow_u64(numel, ct_dtype_bits(dt), &bits))
        return ct_fail(err, CT_EFORMAT, "size in bits overflows 64 bits");
    if (bits % 8)
        return ct_fail(err, CT_EFORMAT, "%" PRIu64 " elements of %s are not a whole number of bytes",
                       numel, ct_dtype_name(dt));
    if (numel_out)
        *numel_out = numel;
    if (nbytes_out)
        *nbytes_out = bits / 8;
    return 0;
}

/* Strict UTF-8 (no overlongs, no surrogates, max U+10FFFF). */
static size_t utf8_invalid_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len; unsigned min;
        if ((c & 0xe0) == 0xc0) { len = 2; min = 0x80; c &= 0x1f; }
        else if ((c & 0xf0) == 0xe0) { len = 3; min = 0x800; c &= 0x0f; }
        else if ((c & 0xf8) == 0xf0) { len = 4; min = 0x10000; c &= 0x07; }
        else return i;
        if (n - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return i;
        i += len;
    }
    return (size_t)-1;
}

/* A non-negative integer; -1 if not one, -2 if above 2^53 (cJSON keeps
 * numbers as doubles, so larger values cannot be read exactly). */
static int json_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d != floor(d))
        return -1;
    if (d > 9007199254740992.0)
        return -2;
    *out = (uint64_t)d;
    return 0;
}

void ct_st_close(ct_st *st)
{
    if (!st)
        return;
    if (st->fd >= 0)
        close(st->fd);
    ct_big_free(st->names);
    ct_big_free(st->tensors);
    for (size_t i = 0; i < 2 * st->n_meta; i++)
        free(st->meta_kv[i]);
    free(st->meta_kv);
    ct_strmap_free(st->index);
    free(st->path);
    free(st);
}

static int cmp_offsets(const void *a, const void *b)
{
    const ct_st_tensor *x = *(const ct_st_tensor *const *)a, *y = *(const ct_st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

static int parse_tensor(const char *label, const cJSON *item, ct_st_tensor *t, ct_err *err)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': entry is not a JSON object", label, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt))
        return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", label, name);
    int d = ct_dtype_from_name(dt->valuestring);
    if (d < 0)
        return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", label, name, dt->valuestring);
    t->dtype = (ct_dtype)d;
    if (!cJSON_IsArray(shape))
        return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': missing or non-array \"shape\"", label, name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > CT_MAX_DIMS)
        return ct_fail(err, CT_EUNSUPPORTED, "%s: tensor '%s': %d dimensions (at most %d supported)",
                       label, name, nd, CT_MAX_DIMS);
    t->ndim = nd;
    int k = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, shape) {
        uint64_t x;
        int r = json_u64(v, &x);
        if (r == -2)
            return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': shape entry too large (above 2^53)", label, name);
        if (r != 0)
            return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': shape entries must be non-negative integers",
                           label, name);
        t->shape[k++] = (int64_t)x;
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2
        || json_u64(cJSON_GetArrayItem(offs, 0), &t->begin) != 0
        || json_u64(cJSON_GetArrayItem(offs, 1), &t->end) != 0)
        return ct_fail(err, CT_EFORMAT,
                       "%s: tensor '%s': \"data_offsets\" must be two non-negative integers", label, name);
    if (t->end < t->begin)
        return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': data_offsets end %" PRIu64 " < begin %" PRIu64,
                       label, name, t->end, t->begin);
    uint64_t nbytes;
    int rc = ct_tensor_nbytes(t->dtype, t->ndim, t->shape, &t->numel, &nbytes, err);
    if (rc)
        return ct_err_prefix(err, "%s: tensor '%s': ", label, name);
    if (nbytes != t->end - t->begin)
        return ct_fail(err, CT_EFORMAT,
                       "%s: tensor '%s': data_offsets span %" PRIu64 " bytes but %s%s needs %" PRIu64,
                       label, name, t->end - t->begin, ct_dtype_name(t->dtype),
                       ct_shape_str((char[256]){0}, 256, t->ndim, t->shape), nbytes);
    return 0;
}

/* A header's parse tree lives in an arena of huge-page-backed chunks, not in
 * malloc's heap: about 700 bytes per tensor in small pieces (a header of
 * 100,000 tensors made 70 MB of them), faulted 4 KiB at a time, and the
 * heap kept them once freed.  cJSON's allocation hooks are global, so they
 * are set once to functions that use the calling thread's arena while it
 * parses a header and malloc otherwise.  Freeing in the arena does nothing:
 * the tree goes with the arena once the header is read. */
typedef struct json_chunk { struct json_chunk *prev; size_t used, cap; } json_chunk;
static _Thread_local json_chunk *json_arena;
static _Thread_local size_t json_chunk_size;   /* non-zero while parsing */

static void *json_alloc(size_t n)
{
    if (!json_chunk_size)
        return malloc(n);
    if (n > SIZE_MAX - 15)
        return NULL;
    n = (n + 15) & ~(size_t)15;
    json_chunk *c = json_arena;
    if (!c || c->cap - c->used < n) {
        size_t hdr = (sizeof *c + 15) & ~(size_t)15, cap = json_chunk_size;
        if (cap < n)
            cap = n;
        if (cap > SIZE_MAX - hdr || !(c = ct_big_calloc(1, hdr + cap)))
            return NULL;
        c->prev = json_arena;
        c->used = hdr;
        c->cap = hdr + cap;
        json_arena = c;
        if (json_chunk_size < ((size_t)64 << 20))
            json_chunk_size *= 2;
    }
    void *p = (char *)c + c->used;
    c->used += n;
    return p;
}

static void json_free(void *p)
{
    if (!json_chunk_size)
        free(p);
}

static void json_hooks(void)
{
    cJSON_Hooks h = {json_alloc, json_free};
    cJSON_InitHooks(&h);
}

static void json_arena_begin(size_t header_len)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, json_hooks);
    /* a first chunk of about what the tree of a header this long takes, and
     * at least a huge page (it lives only while the header is parsed) */
    size_t huge = ((size_t)2 << 20) - 256;
    json_chunk_size = header_len < huge / 4 ? huge : header_len * 4;
}

static void json_arena_end(void)
{
    while (json_arena) {
        json_chunk *prev = json_arena->prev;
        ct_big_free(json_arena);
        json_arena = prev;
    }
    json_chunk_size = 0;
}

int ct_st_parse(const char *label, const char *header, size_t header_len,
                uint64_t file_size, ct_st **out, ct_err *err)
{
    int rc = 0;
    cJSON *root = NULL;
    const ct_st_tensor **sorted = NULL;
    ct_st *st = calloc(1, sizeof *st);
    if (!st)
        return ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
    st->fd = -1;
    st->file_size = file_size;
    st->data_off = 8 + (uint64_t)header_len;
    if (!(st->path = strdup(label))) {
        rc = ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
        goto fail;
    }
    size_t bad = utf8_invalid_at((const unsigned char *)header, header_len);
    if (bad != (size_t)-1) {
        rc = ct_fail(err, CT_EFORMAT, "%s: header is not valid UTF-8 (byte %zu)", label, bad);
        goto fail;
    }
    if (memchr(header, 0, header_len) || ct_memmem_ci(header, header_len, "\\u0000")) {
        rc = ct_fail(err, CT_EFORMAT, "%s: header contains a NUL character", label);
        goto fail;
    }
    const char *end = NULL;
    json_arena_begin(header_len);
    root = cJSON_ParseWithLengthOpts(header, header_len, &end, 0);
    if (!root) {
        size_t at = end && end >= header ? (size_t)(end - header) : 0;
        rc = ct_fail(err, CT_EFORMAT, "%s: header is not valid JSON (near byte %zu)", label, at);
        goto fail;
    }
    for (const char *p = end; p < header + header_len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = ct_fail(err, CT_EFORMAT, "%s: header has trailing bytes after the JSON object (byte %zu)",
                         label, (size_t)(p - header));
            goto fail;
        }
    if (!cJSON_IsObject(root)) {
        rc = ct_fail(err, CT_EFORMAT, "%s: header is not a JSON object", label);
        goto fail;
    }
    size_t nitems = (size_t)cJSON_GetArraySize(root);
    st->tensors = ct_big_calloc(nitems ? nitems : 1, sizeof *st->tensors);
    st->index = ct_strmap_new(nitems);
    if (!st->tensors || !st->index) {
        rc = ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
        goto fail;
    }
    /* The names go into one block, not one allocation each. */
    size_t names_len = 1;
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
        names_len += strlen(item->string) + 1;     /* bounded by header_len */
    if (!(st->names = ct_big_calloc(names_len, 1))) {
        rc = ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
        goto fail;
    }
    char *name_at = st->names;
    int seen_meta = 0;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (seen_meta++) {
                rc = ct_fail(err, CT_EFORMAT, "%s: duplicate key \"__metadata__\"", label);
                goto fail;
            }
            if (cJSON_IsNull(item))
                continue;
            if (!cJSON_IsObject(item)) {
                rc = ct_fail(err, CT_EFORMAT, "%s: \"__metadata__\" is not an object", label);
                goto fail;
            }
            size_t nm = (size_t)cJSON_GetArraySize(item);
            st->meta_kv = calloc(2 * nm + 1, sizeof *st->meta_kv);
            if (!st->meta_kv) {
                rc = ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
                goto fail;
            }
            const cJSON *m;
            cJSON_ArrayForEach(m, item) {
                if (!cJSON_IsString(m)) {
                    rc = ct_fail(err, CT_EFORMAT, "%s: __metadata__ value for '%s' is not a string",
                                 label, m->string);
                    goto fail;
                }
                for (size_t j = 0; j < st->n_meta; j++)
                    if (strcmp(st->meta_kv[2 * j], m->string) == 0) {
                        rc = ct_fail(err, CT_EFORMAT, "%s: duplicate __metadata__ key '%s'", label, m->string);
                        goto fail;
                    }
                st->meta_kv[2 * st->n_meta] = strdup(m->string);
                st->meta_kv[2 * st->n_meta + 1] = strdup(m->valuestring);
                st->n_meta++;
                if (!st->meta_kv[2 * st->n_meta - 2] || !st->meta_kv[2 * st->n_meta - 1]) {
                    rc = ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
                    goto fail;
                }
            }
            continue;
        }
        ct_st_tensor *t = &st->tensors[st->n];
        if ((rc = parse_tensor(label, item, t, err)))
            goto fail;
        size_t nl = strlen(item->string) + 1;
        t->name = memcpy(name_at, item->string, nl);
        name_at += nl;
        st->n++;
        int put = ct_strmap_put(st->index, t->name, st->n - 1);
        if (put < 0) {
            rc = ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
            goto fail;
        }
        if (put > 0) {
            rc = ct_fail(err, CT_EFORMAT, "%s: duplicate tensor name '%s'", label, t->name);
            goto fail;
        }
    }
    /* Coverage: sorted by offsets, the tensors must tile the data buffer
     * exactly, with no gap, overlap or trailing bytes. */
    sorted = malloc((st->n ? st->n : 1) * sizeof *sorted);
    if (!sorted) {
        rc = ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
        goto fail;
    }
    for (size_t i = 0; i < st->n; i++)
        sorted[i] = &st->tensors[i];
    qsort(sorted, st->n, sizeof *sorted, cmp_offsets);
    uint64_t pos = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (sorted[i]->begin != pos) {
            rc = ct_fail(err, CT_EFORMAT, "%s: tensor '%s' starts at data offset %" PRIu64
                         " but the previous tensor ends at %" PRIu64 " (%s)", label, sorted[i]->name,
                         sorted[i]->begin, pos, sorted[i]->begin > pos ? "gap" : "overlap");
            goto fail;
        }
        pos = sorted[i]->end;
    }
    if (file_size < st->data_off || file_size - st->data_off != pos) {
        rc = ct_fail(err, CT_EFORMAT, "%s: tensors cover %" PRIu64 " data bytes but the file holds %" PRIu64
                     " (%s)", label, pos, file_size >= st->data_off ? file_size - st->data_off : 0,
                     file_size - st->data_off > pos ? "trailing bytes" : "truncated");
        goto fail;
    }
    free(sorted);
    json_arena_end();     /* the tree with it */
    *out = st;
    return 0;
fail:
    free(sorted);
    json_arena_end();
    ct_st_close(st);
    return rc;
}

/* What a file is, from its first 8 bytes, when those are not a plausible
 * safetensors header length: files people point a tensor tool at by
 * mistake. NULL when unrecognised. */
static const char *other_file_kind(const unsigned char *b)
{
    if (!memcmp(b, "\x93NUMPY", 6))
        return "it is a .npy array (numpy.load reads it)";
    if (!memcmp(b, "PK\x03\x04", 4))
        return "it is a zip archive (a PyTorch .bin/.pt checkpoint is one)";
    if (!memcmp(b, "GGUF", 4))
        return "it is a GGUF file";
    if (b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
        return "it is a Python pickle (an old PyTorch checkpoint)";
    if (!memcmp(b, "\x89HDF", 4))
        return "it is an HDF5 file";
    if (b[0] == '{' || b[0] == '[')
        return "it is JSON text (a config or an index?)";
    return NULL;
}

int ct_st_open(const char *path, ct_st **out, ct_err *err)
{
    int rc;
    char *header = NULL;
    int fd;
    struct stat sb;
    if ((rc = ct_open_regular(path, &fd, &sb, err)))
        return rc;
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char lenbuf[8];
    if (size < 8) {
        rc = ct_fail(err, CT_EFORMAT, "%s: file is %" PRIu64 " bytes, too small for a safetensors header",
                     path, size);
        goto fail;
    }
    if ((rc = ct_pread_full(fd, lenbuf, 8, 0, path, err)))
        goto fail;
    uint64_t hlen = ct_load_le64(lenbuf);
    const char *kind = other_file_kind(lenbuf);
    if (kind && (hlen > CT_ST_MAX_HEADER || hlen > size - 8)) {
        rc = ct_fail(err, CT_EFORMAT, "%s: not a safetensors file: %s", path, kind);
        goto fail;
    }
    if (hlen > CT_ST_MAX_HEADER) {
        rc = ct_fail(err, CT_EFORMAT, "%s: header length %" PRIu64 " exceeds the limit of %llu bytes",
                     path, hlen, CT_ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > size - 8) {
        rc = ct_fail(err, CT_EFORMAT, "%s: header length %" PRIu64 " runs past the end of the file (%" PRIu64
                     " bytes)", path, hlen, size);
        goto fail;
    }
    header = malloc(hlen ? hlen : 1);
    if (!header) {
        rc = ct_fail(err, CT_ENOMEM, "%s: out of memory for a %" PRIu64 "-byte header", path, hlen);
        goto fail;
    }
    if ((rc = ct_pread_full(fd, header, hlen, 8, path, err)))
        goto fail;
    ct_st *st;
    if ((rc = ct_st_parse(path, header, hlen, size, &st, err)))
        goto fail;
    free(header);
    st->fd = fd;
    st->mtime = sb.st_mtim;
    *out = st;
    return 0;
fail:
    free(header);
    close(fd);
    return rc;
}

const char *ct_st_path(const ct_st *st) { return st->path; }
size_t ct_st_count(const ct_st *st) { return st->n; }
const ct_st_tensor *ct_st_get(const ct_st *st, size_t i) { return i < st->n ? &st->tensors[i] : NULL; }
uint64_t ct_st_data_offset(const ct_st *st) { return st->data_off; }
uint64_t ct_st_file_size(const ct_st *st) { return st->file_size; }
size_t ct_st_meta_count(const ct_st *st) { return st->n_meta; }
const char *ct_st_meta_key(const ct_st *st, size_t i) { return i < st->n_meta ? st->meta_kv[2 * i] : NULL; }
const char *ct_st_meta_value(const ct_st *st, size_t i) { return i < st->n_meta ? st->meta_kv[2 * i + 1] : NULL; }

long ct_st_find(const ct_st *st, const char *name)
{
    size_t i;
    return ct_strmap_get(st->index, name, &i) ? (long)i : -1;
}

const char *ct_st_meta_get(const ct_st *st, const char *key)
{
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_kv[2 * i], key) == 0)
            return st->meta_kv[2 * i + 1];
    return NULL;
}

int ct_st_check_unchanged(const ct_st *st, ct_err *err)
{
    struct stat sb;
    if (st->fd < 0)
        return 0;
    if (fstat(st->fd, &sb) != 0)
        return ct_fail(err, CT_EIO, "%s: cannot stat: %s", st->path, strerror(errno));
    if ((uint64_t)sb.st_size != st->file_size || sb.st_mtim.tv_sec != st->mtime.tv_sec
        || sb.st_mtim.tv_nsec != st->mtime.tv_nsec)
        return ct_fail(err, CT_ECHANGED, "%s: file changed since it was opened", st->path);
    return 0;
}

int ct_st_pread(const ct_st *st, const ct_st_tensor *t, uint64_t off,
                uint64_t len, void *buf, ct_err *err)
{
    uint64_t size = t->end - t->begin;
    if (off > size || len > size - off)
        return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': read of %" PRIu64 " bytes at %" PRIu64
                       " is outside its %" PRIu64 " bytes", st->path, t->name, len, off, size);
    if (st->reader)
        return st->reader(st->reader_ctx, st->data_off + t->begin + off, len, buf, err);
    if (st->fd < 0)
        return ct_fail(err, CT_EIO, "%s: no file behind this header", st->path);
    int rc = ct_pread_full(st->fd, buf, len, st->data_off + t->begin + off, st->path, err);
    if (rc == CT_EIO && ct_st_check_unchanged(st, NULL) == CT_ECHANGED)
        return ct_fail(err, CT_ECHANGED, "%s: file changed since it was opened (tensor '%s')",
                       st->path, t->name);
    return rc;
}

void ct_st_set_reader(ct_st *st, ct_st_reader read, void *ctx)
{
    st->reader = read;
    st->reader_ctx = ctx;
}

void ct_st_advise(const ct_st *st, const ct_st_tensor *t, uint64_t off, uint64_t len)
{
    uint64_t size = t->end - t->begin;
    if (st->fd < 0 || off >= size)
        return;
    if (len > size - off)
        len = size - off;
    (void)posix_fadvise(st->fd, (off_t)(st->data_off + t->begin + off), (off_t)len, POSIX_FADV_WILLNEED);
}

/* ---------------- writer layout ---------------- */

static int cmp_entries(const void *a, const void *b)
{
    const ct_st_entry *x = a, *y = b;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* JSON string escaping as serde_json does it. */
static int put_json_str(ct_buf *b, const char *s)
{
    if (ct_buf_putc(b, '"'))
        return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int r;
        switch (*p) {
        case '"': r = ct_buf_puts(b, "\\\""); break;
        case '\\': r = ct_buf_puts(b, "\\\\"); break;
        case '\b': r = ct_buf_puts(b, "\\b"); break;
        case '\f': r = ct_buf_puts(b, "\\f"); break;
        case '\n': r = ct_buf_puts(b, "\\n"); break;
        case '\r': r = ct_buf_puts(b, "\\r"); break;
        case '\t': r = ct_buf_puts(b, "\\t"); break;
        default:
            r = *p < 0x20 ? ct_buf_printf(b, "\\u%04x", *p) : ct_buf_putc(b, (char)*p);
        }
        if (r)
            return -1;
    }
    return ct_buf_putc(b, '"');
}

int ct_st_layout(ct_st_entry *e, size_t n, const char *const *mk,
                 const char *const *mv, size_t n_meta,
                 char **header, size_t *header_len, ct_err *err)
{
    ct_buf b = {0};
    qsort(e, n, sizeof *e, cmp_entries);
    uint64_t pos = 0;
    int bad = ct_buf_puts(&b, "        {");
    if (n_meta) {
        bad |= ct_buf_puts(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            bad |= i ? ct_buf_putc(&b, ',') : 0;
            bad |= put_json_str(&b, mk[i]);
            bad |= ct_buf_putc(&b, ':');
            bad |= put_json_str(&b, mv[i]);
        }
        bad |= ct_buf_putc(&b, '}');
    }
    for (size_t i = 0; i < n; i++) {
        e[i].begin = pos;
        if (ct_add_overflow_u64(pos, e[i].nbytes, &pos)) {
            ct_buf_free(&b);
            return ct_fail(err, CT_EFORMAT, "total tensor size overflows 64 bits");
        }
        bad |= (i || n_meta) ? ct_buf_putc(&b, ',') : 0;
        bad |= put_json_str(&b, e[i].name);
        bad |= ct_buf_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", ct_dtype_name(e[i].dtype));
        for (int d = 0; d < e[i].ndim; d++)
            bad |= ct_buf_printf(&b, d ? ",%" PRId64 : "%" PRId64, e[i].shape[d]);
        bad |= ct_buf_printf(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", e[i].begin, pos);
    }
    bad |= ct_buf_putc(&b, '}');
    while (!bad && (b.len - 8) % 8)
        bad |= ct_buf_putc(&b, ' ');
    if (bad) {
        ct_buf_free(&b);
        return ct_fail(err, CT_ENOMEM, "out of memory rendering a safetensors header");
    }
    if (b.len - 8 > CT_ST_MAX_HEADER) {
        ct_buf_free(&b);
        return ct_fail(err, CT_EFORMAT, "header of %zu bytes exceeds the safetensors limit", b.len - 8);
    }
    ct_store_le64((unsigned char *)b.data, b.len - 8);
    *header = b.data;
    *header_len = b.len;
    return 0;
}
