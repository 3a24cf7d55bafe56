#include "config.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <libgen.h>
#include <stdatomic.h>
#include "ct/util.h"

int ct_buf_reserve(ct_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int ct_buf_put(ct_buf *b, const void *p, size_t n)
{
    if (ct_buf_reserve(b, n + 1))
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int ct_buf_putc(ct_buf *b, char c) { return ct_buf_put(b, &c, 1); }
int ct_buf_puts(ct_buf *b, const char *s) { return ct_buf_put(b, s, strlen(s)); }

int ct_buf_printf(ct_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || ct_buf_reserve(b, (size_t)n + 1))
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* A big array is preceded by a header telling how it was made: mapped (the
 * mapping's length) or from malloc (0), and the bytes in use.  64 bytes: the
 * array keeps malloc's alignment, or a mapping's cache-line alignment. */
typedef struct big_hdr { size_t mapped, bytes; } big_hdr;
enum { BIG_HDR = 64 };
#define BIG_MIN ((size_t)512 << 10)
#define BIG_ALIGN ((size_t)2 << 20)

/* Huge pages for an array that fills at least half of its mapping (which
 * is rounded up to 2 MiB); otherwise 4 KiB pages, so that rounding up never
 * more than doubles what an array takes (a table of 600 KiB in each of 60
 * shards would take 2 MiB each). */
static void big_hint(char *base, size_t bytes, size_t mapped)
{
    if (2 * (BIG_HDR + bytes) >= mapped)
        madvise(base, mapped, MADV_HUGEPAGE);   /* a hint: ignored where THP is off */
}

static void *big_make(size_t bytes)
{
    if (bytes > SIZE_MAX - BIG_HDR - 2 * BIG_ALIGN)
        return NULL;
    char *base;
    size_t mapped = 0;
    if (bytes < BIG_MIN) {
        if (!(base = calloc(1, BIG_HDR + bytes)))
            return NULL;
    } else {
        /* over-allocate by the alignment, then trim both ends */
        mapped = (BIG_HDR + bytes + BIG_ALIGN - 1) / BIG_ALIGN * BIG_ALIGN;
        char *m = mmap(NULL, mapped + BIG_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        base = (char *)(((uintptr_t)m + BIG_ALIGN - 1) & ~(uintptr_t)(BIG_ALIGN - 1));
        if (base > m)
            munmap(m, (size_t)(base - m));
        if (base + mapped < m + mapped + BIG_ALIGN)
            munmap(base + mapped, (size_t)(m + mapped + BIG_ALIGN - (base + mapped)));
        big_hint(base, bytes, mapped);
    }
    big_hdr *h = (big_hdr *)base;
    h->mapped = mapped;
    h->bytes = bytes;
    return base + BIG_HDR;
}

void *ct_big_calloc(size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        return NULL;
    return big_make(bytes);
}

void *ct_big_realloc(void *p, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        return NULL;
    if (!p)
        return big_make(bytes);
    big_hdr *h = (big_hdr *)((char *)p - BIG_HDR);
    if (h->mapped && BIG_HDR + bytes <= h->mapped) {
        /* fits in the mapping: a shrink must leave zeros behind it */
        if (bytes < h->bytes)
            memset((char *)p + bytes, 0, h->bytes - bytes);
        else
            big_hint((char *)h, bytes, h->mapped);
        h->bytes = bytes;
        return p;
    }
    void *q = big_make(bytes);
    if (!q)
        return NULL;
    memcpy(q, p, h->bytes < bytes ? h->bytes : bytes);
    ct_big_free(p);
    return q;
}

void ct_big_free(void *p)
{
    if (!p)
        return;
    char *base = (char *)p - BIG_HDR;
    big_hdr *h = (big_hdr *)base;
    if (h->mapped)
        munmap(base, h->mapped);
    else
        free(base);
}

char *ct_buf_take(ct_buf *b)
{
    if (!b->data && ct_buf_reserve(b, 1))
        return NULL;
    if (!b->len)
        b->data[0] = 0;
    /* a new block rather than a shrunk one: shrinking would leave a free
     * piece behind each kept string, that only smaller blocks can reuse */
    char *p = malloc(b->len + 1);
    if (p) {
        memcpy(p, b->data, b->len + 1);
        free(b->data);
    } else {
        p = b->data;     /* still the whole string */
    }
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void ct_buf_free(ct_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

const char *ct_memmem_ci(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    if (k == 0)
        return hay;
    for (size_t i = 0; i + k <= n; i++) {
        size_t j = 0;
        while (j < k && tolower((unsigned char)hay[i + j]) == tolower((unsigned char)needle[j]))
            j++;
        if (j == k)
            return hay + i;
    }
    return NULL;
}

char *ct_shape_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, size - o, "[");
    for (int i = 0; i < ndim && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, i ? ", %" PRId64 : "%" PRId64, shape[i]);
    if (o < size)
        snprintf(buf + o, size - o, "]");
    return buf;
}

static atomic_int cancelled;   /* lock-free, hence safe in a signal handler */

void ct_cancel(void) { atomic_store_explicit(&cancelled, 1, memory_order_relaxed); }
int ct_cancelled(void) { return atomic_load_explicit(&cancelled, memory_order_relaxed); }

int ct_pread_full(int fd, void *buf, uint64_t len, uint64_t off, const char *label, ct_err *err)
{
    char *p = buf;
    if (ct_cancelled())
        return ct_fail(err, CT_EINTR, "%s: interrupted", label);
    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t r = pread(fd, p, chunk, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return ct_fail(err, CT_EIO, "%s: read error at offset %" PRIu64 ": %s", label, off, strerror(errno));
        }
        if (r == 0)
            return ct_fail(err, CT_EIO, "%s: unexpected end of file at offset %" PRIu64, label, off);
        p += r;
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    return 0;
}

int ct_write_full(int fd, const void *buf, size_t len, const char *label, ct_err *err)
{
    const char *p = buf;
    if (ct_cancelled())
        return ct_fail(err, CT_EINTR, "%s: interrupted", label);
    while (len) {
        ssize_t r = write(fd, p, len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return ct_fail(err, CT_EIO, "%s: write error: %s", label, strerror(errno));
        }
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

int ct_open_regular(const char *path, int *fdp, struct stat *sbp, ct_err *err)
{
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer */
    int rc, fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return ct_fail(err, CT_EIO, "%s: cannot open: %s%s", path, strerror(errno),
                       errno == EMFILE ? " (one per shard is kept open: raise the hard limit, ulimit -Hn)" : "");
    struct stat own, *sb = sbp ? sbp : &own;
    if (fstat(fd, sb) != 0 || !S_ISREG(sb->st_mode)) {
        rc = ct_fail(err, CT_EIO, "%s: not a readable regular file", path);
        goto fail;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        rc = ct_fail(err, CT_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    *fdp = fd;
    return 0;
fail:
    close(fd);
    return rc;
}

int ct_read_file(const char *path, size_t max_size, char **data, size_t *len, ct_err *err)
{
    struct stat sb;
    int fd, rc = ct_open_regular(path, &fd, &sb, err);
    if (rc)
        return rc;
    if ((uint64_t)sb.st_size > max_size) {
        close(fd);
        return ct_fail(err, CT_EFORMAT, "%s: %lld bytes is larger than the %zu-byte limit", path,
                       (long long)sb.st_size, max_size);
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        close(fd);
        return ct_fail(err, CT_ENOMEM, "%s: out of memory", path);
    }
    rc = ct_pread_full(fd, buf, (uint64_t)sb.st_size, 0, path, err);
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[sb.st_size] = 0;
    *data = buf;
    if (len)
        *len = (size_t)sb.st_size;
    return 0;
}

char *ct_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a && dir[a - 1] != '/')
        p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

int ct_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case 0: break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: return -1;
    }
    if (*end == 'i' && shift)
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end)
        return -1;
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

char *ct_escape_name(const char *name)
{
    ct_buf b = {0};
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        int r = (*p < 0x20 || *p == 0x7f || *p == '\\') ? ct_buf_printf(&b, "\\x%02x", *p)
                                                        : ct_buf_putc(&b, (char)*p);
        if (r) {
            ct_buf_free(&b);
            return NULL;
        }
    }
    if (!b.data && ct_buf_puts(&b, ""))
        return NULL;
    return b.data;
}

static int wide(uint32_t c)
{
    return (c >= 0x1100 && c <= 0x115f) || (c >= 0x2e80 && c <= 0x303e) || (c >= 0x3041 && c <= 0x33ff)
           || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x4e00 && c <= 0x9fff) || (c >= 0xa000 && c <= 0xa4cf)
           || (c >= 0xac00 && c <= 0xd7a3) || (c >= 0xf900 && c <= 0xfaff) || (c >= 0xfe30 && c <= 0xfe4f)
           || (c >= 0xff00 && c <= 0xff60) || (c >= 0xffe0 && c <= 0xffe6) || (c >= 0x1f300 && c <= 0x1f64f)
           || (c >= 0x1f900 && c <= 0x1f9ff) || (c >= 0x20000 && c <= 0x3fffd);
}

static int combining(uint32_t c)
{
    return (c >= 0x300 && c <= 0x36f) || (c >= 0x1ab0 && c <= 0x1aff) || (c >= 0x1dc0 && c <= 0x1dff)
           || (c >= 0x20d0 && c <= 0x20ff) || (c >= 0xfe20 && c <= 0xfe2f) || c == 0x200b || c == 0x200c
           || c == 0x200d || (c >= 0xfe00 && c <= 0xfe0f);
}

size_t ct_display_width(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t w = 0;
    while (*s) {
        uint32_t c = *s;
        int n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
        int ok = n >= 0;
        if (n > 0) {
            c &= 0x3f >> n;
            for (int k = 1; k <= n && ok; k++) {
                ok = (s[k] & 0xc0) == 0x80;
                c = c << 6 | (s[k] & 0x3f);
            }
        }
        if (!ok) {
            w++;
            s++;
            continue;
        }
        w += combining(c) ? 0 : wide(c) ? 2 : 1;
        s += n + 1;
    }
    return w;
}

int ct_copy_file(const char *from, const char *to, ct_err *err)
{
    /* O_NONBLOCK: a FIFO put in place of the file must not hang us */
    int in = open(from, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (in < 0)
        return ct_fail(err, CT_EIO, "%s: cannot open: %s", from, strerror(errno));
    struct stat sb;
    if (fstat(in, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(in);
        return ct_fail(err, CT_EIO, "%s: not a regular file", from);
    }
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return ct_fail(err, CT_EIO, "%s: cannot create: %s", to, strerror(errno));
    }
    char buf[1 << 16];
    int rc = 0;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = ct_fail(err, CT_EIO, "%s: read error: %s", from, strerror(errno));
            break;
        }
        if (r == 0 || (rc = ct_write_full(out, buf, (size_t)r, to, err)))
            break;
    }
    close(in);
    if (close(out) != 0 && !rc)
        rc = ct_fail(err, CT_EIO, "%s: %s", to, strerror(errno));
    return rc;
}


#define TREE_MAX_DEPTH 64

typedef struct {
    ct_other_file *v;
    size_t n, cap;
} other_list;

static int other_push(other_list *l, char *rel, int is_dir, uint64_t size)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        ct_other_file *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (ct_other_file){rel, is_dir, size};
    return 0;
}

/* devs/inos[0..depth]: the directories from dir down to abs, to tell a
 * link back to one of them (a loop). */
static int list_tree(const char *abs, const char *rel, int depth, dev_t *devs, ino_t *inos,
                     const char *const *skip, size_t nskip, other_list *l, ct_err *err)
{
    DIR *d = opendir(abs);
    if (!d)
        return ct_fail(err, CT_EIO, "%s: cannot list: %s", abs, strerror(errno));
    int rc = 0;
    /* the top of a ctfs mount: its tensors/ holds the checkpoint's
     * tensors again, one file each (raw and .npy), not files of the model */
    int ctfs_mount = 0;
    if (!depth) {
        struct stat sb;
        char *stats = ct_path_join(abs, ".ctfs-stats");
        ctfs_mount = stats && stat(stats, &sb) == 0 && S_ISREG(sb.st_mode);
        free(stats);
    }
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        const char *nm = de->d_name;
        int skipped = nm[0] == '.'
                      || (!depth && (!strcmp(nm, "config.json") || !strcmp(nm, "model.safetensors.index.json")
                                     || (ctfs_mount && !strcmp(nm, "tensors"))));
        for (size_t i = 0; i < nskip && !depth && !skipped; i++)
            skipped = skip[i] && !strcmp(nm, skip[i]);
        if (skipped)
            continue;
        char *a = ct_path_join(abs, nm), *r = depth ? ct_path_join(rel, nm) : strdup(nm);
        struct stat sb;
        if (!a || !r) {
            rc = ct_fail(err, CT_ENOMEM, "out of memory");
        } else if (stat(a, &sb) != 0) {
            /* a dangling symbolic link, or gone since readdir */
        } else if (S_ISREG(sb.st_mode)) {
            if (other_push(l, r, 0, (uint64_t)sb.st_size))
                rc = ct_fail(err, CT_ENOMEM, "out of memory");
            else
                r = NULL;
        } else if (S_ISDIR(sb.st_mode)) {
            int loop = 0;
            for (int k = 0; k <= depth; k++)
                loop |= devs[k] == sb.st_dev && inos[k] == sb.st_ino;
            if (loop) {
                /* left out */
            } else if (depth + 1 >= TREE_MAX_DEPTH) {
                rc = ct_fail(err, CT_EFORMAT, "%s: directories nested deeper than %d", a, TREE_MAX_DEPTH);
            } else if (other_push(l, r, 1, 0)) {
                rc = ct_fail(err, CT_ENOMEM, "out of memory");
            } else {
                const char *sub = r;   /* now owned by the list */
                r = NULL;
                devs[depth + 1] = sb.st_dev;
                inos[depth + 1] = sb.st_ino;
                rc = list_tree(a, sub, depth + 1, devs, inos, skip, nskip, l, err);
            }
        }
        free(a);
        free(r);
    }
    closedir(d);
    return rc;
}

static int cmp_other(const void *a, const void *b)
{
    return strcmp(((const ct_other_file *)a)->rel, ((const ct_other_file *)b)->rel);
}

int ct_list_other_files(const char *dir, const char *const *skip, size_t nskip, ct_other_file **out, size_t *n,
                        ct_err *err)
{
    other_list l = {0};
    dev_t devs[TREE_MAX_DEPTH];
    ino_t inos[TREE_MAX_DEPTH];
    struct stat sb;
    *out = NULL;
    *n = 0;
    if (stat(dir, &sb) != 0)
        return ct_fail(err, CT_EIO, "%s: %s", dir, strerror(errno));
    devs[0] = sb.st_dev;
    inos[0] = sb.st_ino;
    int rc = list_tree(dir, "", 0, devs, inos, skip, nskip, &l, err);
    if (rc) {
        ct_other_files_free(l.v, l.n);
        return rc;
    }
    if (l.n)
        qsort(l.v, l.n, sizeof *l.v, cmp_other);
    *out = l.v;
    *n = l.n;
    return 0;
}

void ct_other_files_free(ct_other_file *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(f[i].rel);
    free(f);
}

int ct_copy_other_files(const char *dir, const ct_other_file *f, size_t n, const char *dst, ct_err *err)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        char *from = ct_path_join(dir, f[i].rel), *to = ct_path_join(dst, f[i].rel);
        if (!from || !to)
            rc = ct_fail(err, CT_ENOMEM, "out of memory");
        else if (f[i].is_dir && mkdir(to, 0755) != 0)
            rc = ct_fail(err, CT_EIO, "%s: cannot create: %s", to, strerror(errno));
        else if (!f[i].is_dir)
            rc = ct_copy_file(from, to, err);
        free(from);
        free(to);
    }
    return rc;
}

/* dst made absolute through its parent: a link at dst is what gets
 * replaced, not what it points to. */
static char *dst_abs(const char *dst)
{
    char *a = strdup(dst), *b = strdup(dst), *r = NULL;
    if (a && b) {
        const char *base = basename(b);
        if (!strcmp(base, ".") || !strcmp(base, "..") || !strcmp(base, "/")) {
            r = realpath(dst, NULL);
        } else {
            char *parent = realpath(dirname(a), NULL);
            if (parent)
                r = ct_path_join(parent, base);
            free(parent);
        }
    }
    free(a);
    free(b);
    return r;
}

static int path_under(const char *inner, const char *outer)
{
    size_t n = strlen(outer);
    return strlen(inner) > n && !strncmp(inner, outer, n) && (inner[n] == '/' || (n && outer[n - 1] == '/'));
}

int ct_check_dst(const char *src, const char *dst, ct_err *err)
{
    char *s = realpath(src, NULL), *d = s ? dst_abs(dst) : NULL;
    struct stat sb;
    int rc = 0;
    if (!s)
        rc = ct_fail(err, CT_EIO, "%s: %s", src, strerror(errno));
    else if (!d)
        rc = ct_fail(err, CT_EIO, "%s: cannot resolve its directory%s: %s", dst,
                     errno == ENOENT ? " (the output's directory must exist)" : "", strerror(errno));
    else if (!strcmp(s, d))
        rc = ct_fail(err, CT_EUSAGE, "%s: is the source; the input is never replaced, write the output elsewhere", dst);
    else if (path_under(s, d))
        rc = ct_fail(err, CT_EUSAGE, "%s: holds the source %s; replacing it would delete the input", dst, src);
    else if (stat(s, &sb) == 0 && S_ISDIR(sb.st_mode) && path_under(d, s))
        rc = ct_fail(err, CT_EUSAGE, "%s: is inside the source directory %s", dst, src);
    free(s);
    free(d);
    return rc;
}

void ct_remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            char *p = ct_path_join(path, de->d_name);
            if (p) {
                struct stat sb;
                if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
                    ct_remove_tree(p);
                else
                    unlink(p);
                free(p);
            }
        }
        closedir(d);
    }
    rmdir(path);
}


/* An error met while writing the temporary copy names the temporary path:
 * name the output the user asked for instead, and say that it was not
 * written (or, when it existed, that it is unchanged). */
static void name_dst(ct_err *err, const char *tmp, const char *dst, int existed)
{
    size_t nt = strlen(tmp);
    if (!err || strncmp(err->msg, tmp, nt) != 0)
        return;
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s%s (%s %s)", dst, err->msg + nt, dst, existed ? "is unchanged" : "was not written");
    memcpy(err->msg, msg, sizeof msg);
}

int ct_write_dir_atomic(const char *dst, int replace, ct_dir_fill fill, void *arg, ct_err *err)
{
    size_t n = strlen(dst);
    char *tmp = malloc(n + 16), *old = malloc(n + 16);
    int rc = 0;
    if (!tmp || !old) {
        rc = ct_fail(err, CT_ENOMEM, "out of memory");
        goto out;
    }
    old[0] = 0;
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", dst);
    if (!mkdtemp(tmp)) {
        rc = ct_fail(err, CT_EIO, "%s: cannot create a temporary directory: %s", dst, strerror(errno));
        goto out;
    }
    chmod(tmp, 0755);
    rc = fill(tmp, arg, err);
    if (rc)
        name_dst(err, tmp, dst, replace);
    if (!rc && ct_cancelled())   /* after its last write: a cancelled write is not published */
        rc = ct_fail(err, CT_EINTR, "%s: interrupted", dst);
    int moved = 0;
    if (!rc && replace) {
        snprintf(old, n + 16, "%s.old.XXXXXX", dst);
        if (!mkdtemp(old) || rename(dst, old) != 0)
            rc = ct_fail(err, CT_EIO, "%s: cannot move the old directory aside: %s", dst, strerror(errno));
        else
            moved = 1;
    }
    if (!rc && rename(tmp, dst) != 0) {
        rc = ct_fail(err, CT_EIO, "%s: cannot rename into place: %s", dst, strerror(errno));
        if (moved && rename(old, dst) == 0)   /* the old one back where it was */
            moved = 0;
    }
    if (rc) {
        ct_remove_tree(tmp);
        if (!moved && replace && old[0])
            rmdir(old);   /* the empty placeholder, if made */
    } else if (replace) {
        ct_remove_tree(old);
    }
out:
    free(tmp);
    free(old);
    return rc;
}

int ct_write_file_atomic(const char *dst, ct_file_fill fill, void *arg, ct_err *err)
{
    size_t n = strlen(dst);
    char *tmp = malloc(n + 16);
    if (!tmp)
        return ct_fail(err, CT_ENOMEM, "out of memory");
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", dst);
    int rc, fd = mkstemp(tmp);
    if (fd < 0) {
        rc = ct_fail(err, CT_EIO, "%s: cannot create a temporary file beside it (%s): %s", dst, tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    rc = fill(fd, tmp, arg, err);
    if (!rc && (fchmod(fd, 0644) != 0 || fsync(fd) != 0))
        rc = ct_fail(err, CT_EIO, "%s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && !rc)
        rc = ct_fail(err, CT_EIO, "%s: %s", tmp, strerror(errno));
    if (rc)
        name_dst(err, tmp, dst, access(dst, F_OK) == 0);
    if (!rc && ct_cancelled())   /* during the fsync: a cancelled write is not published */
        rc = ct_fail(err, CT_EINTR, "%s: interrupted", dst);
    if (!rc && rename(tmp, dst) != 0)
        rc = ct_fail(err, CT_EIO, "%s: cannot rename into place: %s", dst, strerror(errno));
    if (rc)
        unlink(tmp);
    free(tmp);
    return rc;
}

void ct_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}
