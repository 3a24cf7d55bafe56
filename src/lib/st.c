#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
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

/* ---------------- the header's JSON ----------------
 *
 * A safetensors header is read in one pass, straight into the tensor table:
 * no parse tree (a tree took about 700 bytes per tensor, 125 MB of fresh
 * memory for a header of 100,000 tensors, and faulting that in was most of
 * the time a large model took to open).  The grammar is JSON's (RFC 8259);
 * what the values may be is what the reference reader (serde) takes: shape
 * and offsets are integers written as integers (not 4.0 or 4e0) up to
 * 2^64 - 1, a field of a tensor entry may not repeat, unknown fields are
 * skipped, lone UTF-16 surrogates in escapes are refused.  The header has
 * been checked to be UTF-8 without NUL before this runs. */

typedef struct jp {
    const char *start, *p, *end;
    char *scratch;           /* room for any string of the header, decoded */
    const char *label;
    ct_err *err;
} jp;

enum { J_MAX_DEPTH = 128 };  /* serde_json's recursion limit */

/* Every j_ function returns 0 or the error code it recorded. */
#define TRY(x) do { int r_ = (x); if (r_) return r_; } while (0)

static int j_syntax(jp *j)
{
    return ct_fail(j->err, CT_EFORMAT, "%s: header is not valid JSON (near byte %zu)", j->label,
                   (size_t)(j->p - j->start));
}

static void j_ws(jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* the next byte after whitespace, or 0 at the end */
static char j_peek(jp *j)
{
    j_ws(j);
    return j->p < j->end ? *j->p : 0;
}

static int j_expect(jp *j, char c)
{
    if (j_peek(j) != c)
        return j_syntax(j);
    j->p++;
    return 0;
}

/* After a member or an element: the closing bracket (*more = 0) or a comma
 * (*more = 1), consumed. */
static int j_more(jp *j, char close, int *more)
{
    char c = j_peek(j);
    if (c != close && c != ',')
        return j_syntax(j);
    j->p++;
    *more = c == ',';
    return 0;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 1;
    }
    *out = v;
    return 0;
}

/* A string at j->p (after whitespace), decoded into out (which has room for
 * as many bytes as the string takes in the header, plus a NUL), or only
 * checked when out is NULL.  *len gets the decoded length. */
static int j_string(jp *j, char *out, size_t *len)
{
    if (j_peek(j) != '"')
        return j_syntax(j);
    j->p++;
    size_t n = 0;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            if (out)
                out[n] = 0;
            if (len)
                *len = n;
            return 0;
        }
        if (c < 0x20)
            return j_syntax(j);           /* control characters must be escaped */
        if (c != '\\') {
            if (out)
                out[n] = (char)c;
            n++;
            j->p++;
            continue;
        }
        if (j->end - j->p < 2)
            return j_syntax(j);
        char e = j->p[1], d;
        switch (e) {
        case '"': d = '"'; break;
        case '\\': d = '\\'; break;
        case '/': d = '/'; break;
        case 'b': d = '\b'; break;
        case 'f': d = '\f'; break;
        case 'n': d = '\n'; break;
        case 'r': d = '\r'; break;
        case 't': d = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (j->end - j->p < 6 || hex4(j->p + 2, &cp))
                return j_syntax(j);
            size_t used = 6;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return j_syntax(j);       /* a lone trailing surrogate */
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (j->end - j->p < 12 || j->p[6] != '\\' || j->p[7] != 'u' || hex4(j->p + 8, &lo)
                    || lo < 0xdc00 || lo > 0xdfff)
                    return j_syntax(j);   /* a lone leading surrogate */
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                used = 12;
            }
            /* UTF-8 takes at most as many bytes as the escape (6 or 12) */
            if (out) {
                char *o = out + n;
                if (cp < 0x80) { o[0] = (char)cp; n += 1; }
                else if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); n += 2; }
                else if (cp < 0x10000) {
                    o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
                    o[2] = (char)(0x80 | (cp & 0x3f)); n += 3;
                } else {
                    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
                    o[2] = (char)(0x80 | (cp >> 6 & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f)); n += 4;
                }
            }
            j->p += used;
            continue;
        }
        default:
            return j_syntax(j);
        }
        if (out)
            out[n] = d;
        n++;
        j->p += 2;
    }
    return j_syntax(j);
}

/* A number at j->p.  *kind: 0 a non-negative integer that fits 64 bits (in
 * *v), 1 a number that is not one (negative, fraction, exponent), 2 an
 * integer above 2^64 - 1. */
static int j_number(jp *j, uint64_t *v, int *kind)
{
    j_ws(j);
    const char *p = j->p;
    int neg = 0, overflow = 0, real = 0;
    uint64_t x = 0;
    if (p < j->end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= j->end || *p < '0' || *p > '9')
        return j_syntax(j);
    if (*p == '0') {
        p++;
    } else {
        while (p < j->end && *p >= '0' && *p <= '9') {
            unsigned dgt = (unsigned)(*p++ - '0');
            if (x > (UINT64_MAX - dgt) / 10)
                overflow = 1;
            else
                x = x * 10 + dgt;
        }
    }
    if (p < j->end && *p == '.') {
        real = 1;
        p++;
        if (p >= j->end || *p < '0' || *p > '9')
            return j->p = p, j_syntax(j);
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        real = 1;
        p++;
        if (p < j->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= j->end || *p < '0' || *p > '9')
            return j->p = p, j_syntax(j);
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    }
    j->p = p;
    /* "-0" is zero to serde; any other minus sign is a negative number */
    *kind = real || (neg && (x || overflow)) ? 1 : overflow ? 2 : 0;
    *v = x;
    return 0;
}

static int j_literal(jp *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n))
        return j_syntax(j);
    j->p += n;
    return 0;
}

/* Any value, checked and passed over (iteratively: at most J_MAX_DEPTH
 * arrays and objects deep). */
static int j_skip(jp *j)
{
    char open[J_MAX_DEPTH];
    int depth = 0;
    for (;;) {
        /* a value */
        char c = j_peek(j);
        if (c == '{' || c == '[') {
            if (depth == J_MAX_DEPTH)
                return ct_fail(j->err, CT_EFORMAT, "%s: header nests arrays and objects more than %d deep "
                               "(near byte %zu)", j->label, J_MAX_DEPTH, (size_t)(j->p - j->start));
            open[depth++] = c;
            j->p++;
            if (j_peek(j) == (c == '{' ? '}' : ']')) {
                j->p++;
                depth--;
                goto after_value;
            }
            if (c == '{') {
                TRY(j_string(j, NULL, NULL));
                TRY(j_expect(j, ':'));
            }
            continue;
        }
        if (c == '"') {
            TRY(j_string(j, NULL, NULL));
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            uint64_t v;
            int kind;
            TRY(j_number(j, &v, &kind));
        } else {
            TRY(j_literal(j, c == 't' ? "true" : c == 'f' ? "false" : "null"));
        }
after_value:
        for (;;) {
            if (!depth)
                return 0;
            char close = open[depth - 1] == '{' ? '}' : ']';
            c = j_peek(j);
            if (c == close) {
                j->p++;
                depth--;
                continue;
            }
            if (c != ',')
                return j_syntax(j);
            j->p++;
            if (open[depth - 1] == '{') {
                TRY(j_string(j, NULL, NULL));
                TRY(j_expect(j, ':'));
            }
            break;
        }
    }
}

enum { J_NOT_ARRAY = -1, J_NOT_INTS = -2 };

/* [n, n, ...] of non-negative integers into out (at most max of them; *count
 * gets how many there were).  J_NOT_ARRAY or J_NOT_INTS (no error recorded)
 * when the value is something else, for the caller to say so. */
static int j_int_array(jp *j, const char *name, const char *what, uint64_t *out, int max, int *count)
{
    int n = 0;
    if (j_peek(j) != '[')
        return J_NOT_ARRAY;
    j->p++;
    if (j_peek(j) == ']') {
        j->p++;
        *count = 0;
        return 0;
    }
    for (;;) {
        uint64_t v;
        int kind;
        char c = j_peek(j);
        if (c == '"' || c == '{' || c == '[' || c == 't' || c == 'f' || c == 'n')
            return J_NOT_INTS;
        TRY(j_number(j, &v, &kind));
        if (kind == 1)
            return J_NOT_INTS;
        if (kind == 2)
            return ct_fail(j->err, CT_EFORMAT, "%s: tensor '%s': %s entry too large (above 2^64 - 1)",
                           j->label, name, what);
        if (n < max)
            out[n] = v;
        if (n < INT32_MAX)
            n++;
        int more = 0;
        TRY(j_more(j, ']', &more));
        if (!more)
            break;
    }
    *count = n;
    return 0;
}

/* One tensor entry, the value of key `name`. */
static int j_tensor(jp *j, const char *name, ct_st_tensor *t)
{
    const char *label = j->label;
    ct_err *err = j->err;
    if (j_peek(j) != '{') {
        TRY(j_skip(j));
        return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': entry is not a JSON object", label, name);
    }
    j->p++;
    int have_dtype = 0, have_shape = 0, have_offs = 0;
    if (j_peek(j) == '}') {
        j->p++;
        return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", label, name);
    }
    for (;;) {
        size_t klen;
        TRY(j_string(j, j->scratch, &klen));
        TRY(j_expect(j, ':'));
        int field = klen == 5 && !memcmp(j->scratch, "dtype", 5) ? 1
                  : klen == 5 && !memcmp(j->scratch, "shape", 5) ? 2
                  : klen == 12 && !memcmp(j->scratch, "data_offsets", 12) ? 3 : 0;
        if (field && (field == 1 ? have_dtype : field == 2 ? have_shape : have_offs))
            return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': duplicate field \"%s\"", label, name,
                           field == 1 ? "dtype" : field == 2 ? "shape" : "data_offsets");
        if (field == 1) {
            if (j_peek(j) != '"')
                return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", label, name);
            TRY(j_string(j, j->scratch, NULL));
            int d = ct_dtype_from_name(j->scratch);
            if (d < 0)
                return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", label, name, j->scratch);
            t->dtype = (ct_dtype)d;
            have_dtype = 1;
        } else if (field == 2) {
            uint64_t dims[CT_MAX_DIMS];
            int nd = 0, r = j_int_array(j, name, "shape", dims, CT_MAX_DIMS, &nd);
            if (r == J_NOT_ARRAY)
                return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': missing or non-array \"shape\"", label, name);
            if (r == J_NOT_INTS)
                return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': shape entries must be non-negative integers",
                               label, name);
            TRY(r);
            if (nd > CT_MAX_DIMS)
                return ct_fail(err, CT_EUNSUPPORTED, "%s: tensor '%s': %d dimensions (at most %d supported)",
                               label, name, nd, CT_MAX_DIMS);
            for (int k = 0; k < nd; k++) {
                if (dims[k] > (uint64_t)INT64_MAX)
                    return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': shape entry %" PRIu64 " too large",
                                   label, name, dims[k]);
                t->shape[k] = (int64_t)dims[k];
            }
            t->ndim = nd;
            have_shape = 1;
        } else if (field == 3) {
            uint64_t o[2];
            int n = 0, r = j_int_array(j, name, "data_offsets", o, 2, &n);
            if (r > 0)
                return r;
            if (r < 0 || n != 2)
                return ct_fail(err, CT_EFORMAT,
                               "%s: tensor '%s': \"data_offsets\" must be two non-negative integers", label, name);
            t->begin = o[0];
            t->end = o[1];
            have_offs = 1;
        } else {
            TRY(j_skip(j));
        }
        int more = 0;
        TRY(j_more(j, '}', &more));
        if (!more)
            break;
    }
    if (!have_dtype)
        return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", label, name);
    if (!have_shape)
        return ct_fail(err, CT_EFORMAT, "%s: tensor '%s': missing or non-array \"shape\"", label, name);
    if (!have_offs)
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

/* "__metadata__": null, or an object of strings */
static int j_metadata(jp *j, ct_st *st)
{
    const char *label = j->label;
    ct_err *err = j->err;
    char c = j_peek(j);
    if (c == 'n')
        return j_literal(j, "null");
    if (c != '{') {
        TRY(j_skip(j));
        return ct_fail(err, CT_EFORMAT, "%s: \"__metadata__\" is not an object", label);
    }
    j->p++;
    if (j_peek(j) == '}') {
        j->p++;
        return 0;
    }
    size_t cap = 0;
    for (;;) {
        size_t klen, vlen;
        char *key = NULL;
        TRY(j_string(j, j->scratch, &klen));
        TRY(j_expect(j, ':'));
        if (j_peek(j) != '"') {
            TRY(j_skip(j));
            return ct_fail(err, CT_EFORMAT, "%s: __metadata__ value for '%s' is not a string", label, j->scratch);
        }
        for (size_t i = 0; i < st->n_meta; i++)
            if (strcmp(st->meta_kv[2 * i], j->scratch) == 0)
                return ct_fail(err, CT_EFORMAT, "%s: duplicate __metadata__ key '%s'", label, j->scratch);
        if (st->n_meta == cap) {
            size_t ncap = cap ? 2 * cap : 8;
            char **kv = realloc(st->meta_kv, 2 * ncap * sizeof *kv);
            if (!kv)
                return ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
            st->meta_kv = kv;
            cap = ncap;
        }
        if (!(key = malloc(klen + 1)))
            return ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
        memcpy(key, j->scratch, klen + 1);
        st->meta_kv[2 * st->n_meta] = key;
        st->meta_kv[2 * st->n_meta + 1] = NULL;
        st->n_meta++;                     /* freed with st from here on */
        TRY(j_string(j, j->scratch, &vlen));
        if (!(st->meta_kv[2 * st->n_meta - 1] = malloc(vlen + 1)))
            return ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
        memcpy(st->meta_kv[2 * st->n_meta - 1], j->scratch, vlen + 1);
        int more = 0;
        TRY(j_more(j, '}', &more));
        if (!more)
            return 0;
    }
}

int ct_st_parse(const char *label, const char *header, size_t header_len,
                uint64_t file_size, ct_st **out, ct_err *err)
{
    int rc = 0;
    const ct_st_tensor **sorted = NULL;
    jp j = {header, header, header + header_len, NULL, label, err};
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
    /* A tensor entry takes at least 49 bytes of the header
     * ("":{"dtype":"U8","shape":[],"data_offsets":[0,0]}), which bounds the
     * table; names and strings decode to at most their length in the header.
     * Large arrays are mappings whose untouched pages cost nothing. */
    size_t max_tensors = header_len / 40 + 1;
    st->tensors = ct_big_calloc(max_tensors, sizeof *st->tensors);
    st->names = ct_big_calloc(header_len + 1, 1);
    j.scratch = malloc(header_len + 1);   /* 4 KiB pages: only the longest key's are touched */
    if (!st->tensors || !st->names || !j.scratch) {
        rc = ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
        goto fail;
    }
    char c = j_peek(&j);
    if (c != '{') {
        /* another kind of JSON value, or not JSON at all */
        if (!c)
            rc = j_syntax(&j);
        else if (!(rc = j_skip(&j)))
            rc = j_peek(&j) ? j_syntax(&j) : ct_fail(err, CT_EFORMAT, "%s: header is not a JSON object", label);
        goto fail;
    }
    j.p++;
    char *name_at = st->names;
    int seen_meta = 0;
    if (j_peek(&j) == '}') {
        j.p++;
    } else {
        for (;;) {
            size_t nl;
            if ((rc = j_string(&j, name_at, &nl)) || (rc = j_expect(&j, ':')))
                goto fail;
            if (nl == 12 && memcmp(name_at, "__metadata__", 12) == 0) {
                if (seen_meta++) {
                    rc = ct_fail(err, CT_EFORMAT, "%s: duplicate key \"__metadata__\"", label);
                    goto fail;
                }
                if ((rc = j_metadata(&j, st)))
                    goto fail;
            } else {
                if (st->n == max_tensors) {       /* cannot happen (see above) */
                    rc = j_syntax(&j);
                    goto fail;
                }
                ct_st_tensor *t = &st->tensors[st->n];
                t->name = name_at;
                if ((rc = j_tensor(&j, name_at, t)))
                    goto fail;
                name_at += nl + 1;
                st->n++;
            }
            int more = 0;
            if ((rc = j_more(&j, '}', &more)))
                goto fail;
            if (!more)
                break;
        }
    }
    j_ws(&j);
    if (j.p < j.end) {
        rc = ct_fail(err, CT_EFORMAT, "%s: header has trailing bytes after the JSON object (byte %zu)",
                     label, (size_t)(j.p - header));
        goto fail;
    }
    free(j.scratch);
    j.scratch = NULL;
    if (!(st->index = ct_strmap_new(st->n))) {
        rc = ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
        goto fail;
    }
    for (size_t i = 0; i < st->n; i++) {
        int put = ct_strmap_put(st->index, st->tensors[i].name, i);
        if (put < 0) {
            rc = ct_fail(err, CT_ENOMEM, "%s: out of memory", label);
            goto fail;
        }
        if (put > 0) {
            rc = ct_fail(err, CT_EFORMAT, "%s: duplicate tensor name '%s'", label, st->tensors[i].name);
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
    *out = st;
    return 0;
fail:
    free(sorted);
    free(j.scratch);
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
