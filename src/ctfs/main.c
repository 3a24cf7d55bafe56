/* ctfs: mount a compressed-tensors checkpoint as a dense one.
 * Options, mount and the FUSE low-level operations; the tree, the decoding
 * and the block cache are libct's (ct/fsmodel.h). */
#define FUSE_USE_VERSION 312
#include "config.h"
#include <errno.h>
#include <limits.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <unistd.h>
#include "ct/fsmodel.h"
#include "ct/pyjson.h"
#include "ct/source.h"
#include "ct/util.h"

#define EXIT_MOUNT 7
#define TIMEOUT 86400.0   /* the source is immutable while mounted */

struct opts {
    char *src, *cache_size, *block_size, *config, *readahead, *prefetch_arg, *threads_arg;
    unsigned prefetch, threads;
    int keep_qparams, direct_io, help, version;
};

#define OPT(t, p, v) {t, offsetof(struct opts, p), v}
static const struct fuse_opt opt_spec[] = {
    OPT("cache_size=%s", cache_size, 0), OPT("block_size=%s", block_size, 0),
    OPT("prefetch=%s", prefetch_arg, 0), OPT("threads=%s", threads_arg, 0), OPT("config=%s", config, 0),
    OPT("readahead=%s", readahead, 0),
    OPT("keep_qparams", keep_qparams, 1), OPT("direct_io", direct_io, 1),
    OPT("-h", help, 1), OPT("--help", help, 1), OPT("-V", version, 1), OPT("--version", version, 1),
    FUSE_OPT_END
};

static struct {
    ct_fs *fs;
    struct opts o;
    struct stat src_stat;
    int daemon;
    /* prefetch queue */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    struct { uint64_t ino, block; } q[256];
    unsigned qhead, qlen;
    int stop;
    pthread_t *workers;
    size_t reserve;         /* cache buffers faulted in at start */
} g = {.qlock = PTHREAD_MUTEX_INITIALIZER, .qcond = PTHREAD_COND_INITIALIZER};

/* Per open file.  Requests of one reader run on several FUSE threads at
 * once and, with a large kernel readahead, arrive out of order, so the
 * state is locked and "sequential" means near the furthest point read. */
struct handle {
    pthread_mutex_t lock;
    uint64_t hi;            /* furthest end offset of the current stream */
    uint64_t last;          /* end offset of the latest read */
    uint64_t ahead;         /* first block not yet queued for prefetch */
    uint64_t behind;        /* first block not yet given up behind the reader */
};

/* How far behind or ahead of the furthest point a read still counts as
 * part of a stream: the requests the kernel's readahead may have in flight. */
static uint64_t stream_window(void)
{
    uint64_t bs = ct_cache_block_size(ct_fs_cache(g.fs));
    return 8 * bs > ((uint64_t)8 << 20) ? 8 * bs : (uint64_t)8 << 20;
}

static int streaming(struct handle *h, uint64_t off)
{
    if (!h)
        return 1;
    uint64_t w = stream_window();
    pthread_mutex_lock(&h->lock);
    int near = off == 0 || off == h->last || (off + w >= h->hi && off <= h->hi + w);
    pthread_mutex_unlock(&h->lock);
    return near;
}

static void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_msg(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (g.daemon) {
        vsyslog(level, fmt, ap);
    } else {
        fputs("ctfs: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    va_end(ap);
}

static void fuse_log_to(enum fuse_log_level level, const char *fmt, va_list ap)
{
    if (g.daemon)
        vsyslog((int)level, fmt, ap);
    else
        vfprintf(stderr, fmt, ap);
}

/* ---------------- prefetch workers ---------------- */

static void *worker(void *arg)
{
    /* The first worker faults in the buffers a streaming reader cycles
     * through (prefetch window, the block being read and the one behind),
     * off the mount's path and before the first read needs them: fresh
     * memory is slow to fault in on a VM, and the cache's slabs are huge
     * pages. */
    if ((uintptr_t)arg == 0)
        ct_cache_reserve(ct_fs_cache(g.fs), g.reserve);
    pthread_mutex_lock(&g.qlock);
    while (!g.stop) {
        if (!g.qlen) {
            pthread_cond_wait(&g.qcond, &g.qlock);
            continue;
        }
        uint64_t ino = g.q[g.qhead].ino, block = g.q[g.qhead].block;
        g.qhead = (g.qhead + 1) % 256;
        g.qlen--;
        pthread_mutex_unlock(&g.qlock);
        ct_err err = {0};
        /* Once per prefetch window, start reading the source of the next
         * window, so that disk reads overlap decoding instead of stalling
         * it (one hint per window: each costs the worker a system call).
         * Measured: fewer slow cold reads, the fast ones unchanged. */
        uint64_t p = g.o.prefetch;
        if (block % p == 1 % p)
            ct_fs_advise(g.fs, ino, block - block % p + p, p);
        if (ct_fs_prefetch(g.fs, ino, block, &err))
            log_msg(LOG_ERR, "prefetch of block %llu failed: %s", (unsigned long long)block, err.msg);
        pthread_mutex_lock(&g.qlock);
    }
    pthread_mutex_unlock(&g.qlock);
    return NULL;
}

static void queue_prefetch(uint64_t ino, uint64_t block)
{
    pthread_mutex_lock(&g.qlock);
    if (g.qlen < 256) {
        unsigned at = (g.qhead + g.qlen) % 256;
        g.q[at].ino = ino;
        g.q[at].block = block;
        g.qlen++;
        pthread_cond_signal(&g.qcond);
    }
    pthread_mutex_unlock(&g.qlock);
}

/* A whole number from 0 to max, in decimal ("-1" and "8x" are not). */
static int parse_count(const char *name, const char *arg, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(arg, &end, 10);
    if (*arg < '0' || *arg > '9' || *end || errno || v > max) {
        fprintf(stderr, "ctfs: %s=%s: not a whole number from 0 to %u\n", name, arg, max);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

/* Prefix a relative path with the working directory. Symbolic links are
 * not resolved: a Hugging Face snapshot's model.safetensors links to a blob
 * with another name, away from its config.json. */
static void absolutise(char **path)
{
    char cwd[PATH_MAX], *abs;
    if (!*path || (*path)[0] == '/' || !getcwd(cwd, sizeof cwd))
        return;
    if (!(abs = ct_path_join(cwd, *path)))
        return;
    free(*path);
    *path = abs;
}

/* ---------------- operations ---------------- */

static int fill_stat(fuse_ino_t ino, struct stat *st)
{
    const ct_fs_node *n = ct_fs_get(g.fs, ino);
    if (!n)
        return -1;
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = n->kind == CT_FS_DIR ? S_IFDIR | 0555 : S_IFREG | 0444;
    st->st_nlink = n->kind == CT_FS_DIR ? 2 + n->nsubdirs : 1;
    st->st_size = (off_t)n->size;
    st->st_blksize = 1 << 20;
    st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_atim = st->st_mtim = st->st_ctim = g.src_stat.st_mtim;
    return 0;
}

/* Attributes and entry of ino for the kernel to cache: for as long as the
 * mount lives, but the statistics file, which changes, not at all. */
static int fill_entry(fuse_ino_t ino, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    e->ino = ino;
    if (!ino || fill_stat(ino, &e->attr))
        return -1;
    e->attr_timeout = e->entry_timeout = ct_fs_get(g.fs, ino)->kind == CT_FS_STATS ? 0 : TIMEOUT;
    return 0;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    if (fill_entry(ct_fs_lookup(g.fs, parent, name), &e)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    struct fuse_entry_param e;
    if (fill_entry(ino, &e)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fuse_reply_attr(req, &e.attr, e.attr_timeout);
}

/* readdir, and readdirplus (plus = 1): entries with their attributes, so
 * that the kernel needs no lookup per entry of an ls -l (tensors/ of a
 * large model has 100,000 and more). */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus)
{
    const ct_fs_node *n = ct_fs_get(g.fs, ino);
    if (!n || n->kind != CT_FS_DIR) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    char *buf = malloc(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t used = 0;
    for (size_t i = (size_t)off; i < n->nchildren + 2; i++) {
        struct fuse_entry_param e = {0};   /* ino 0 for . and ..: the kernel makes no entry for them */
        const char *name;
        if (i < 2) {
            name = i ? ".." : ".";
            e.attr.st_ino = i && n->parent ? n->parent : ino;
            e.attr.st_mode = S_IFDIR;
        } else {
            const ct_fs_node *c = ct_fs_get(g.fs, n->children[i - 2]);
            name = c->name;
            fill_entry(c->ino, &e);
        }
        size_t need = plus ? fuse_add_direntry_plus(req, buf + used, size - used, name, &e, (off_t)(i + 1))
                           : fuse_add_direntry(req, buf + used, size - used, name, &e.attr, (off_t)(i + 1));
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)fi;
    do_readdir(req, ino, size, off, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)fi;
    do_readdir(req, ino, size, off, 1);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    const ct_fs_node *n = ct_fs_get(g.fs, ino);
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (n->kind == CT_FS_DIR) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    struct handle *h = calloc(1, sizeof *h);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_mutex_init(&h->lock, NULL);
    fi->fh = (uintptr_t)h;
    if (n->kind == CT_FS_STATS) {
        fi->direct_io = 1;   /* fresh numbers on every read, size unknown */
    } else {
        fi->keep_cache = 1;
        fi->direct_io = g.o.direct_io;
    }
    fuse_reply_open(req, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    if (h)
        pthread_mutex_destroy(&h->lock);
    free(h);
    fuse_reply_err(req, 0);
}

/* Streaming readers get the next blocks decoded ahead (random ones none),
 * and the blocks they have left a window behind are given up: the kernel's
 * page cache now holds those bytes (keep_cache), so a stream cycles through
 * a few warm cache buffers instead of faulting in the whole cap.  With
 * direct_io our cache is the only one, so nothing is given up. */
static void note_read(struct handle *h, const ct_fs_node *n, fuse_ino_t ino, off_t off, size_t got, int near)
{
    if (!h || !ct_fs_cached_kind(n->kind))
        return;
    uint64_t bs = ct_cache_block_size(ct_fs_cache(g.fs)), w = stream_window();
    uint64_t end = (uint64_t)off + got, first = 0, last = 0, drop_from = 0, drop_to = 0;
    pthread_mutex_lock(&h->lock);
    h->last = end;
    if (!near || !got) {
        pthread_mutex_unlock(&h->lock);
        return;
    }
    if ((uint64_t)off + w < h->hi || (uint64_t)off > h->hi + w) {
        /* a reader that jumped and goes on from there: a new stream */
        h->hi = end;
        h->ahead = end / bs + 1;
        h->behind = (uint64_t)off / bs;
    } else if (end > h->hi) {
        h->hi = end;
    }
    if (g.o.prefetch && g.workers) {
        first = h->hi / bs + 1 > h->ahead ? h->hi / bs + 1 : h->ahead;
        last = h->hi / bs + g.o.prefetch;
        if (last + 1 > h->ahead)
            h->ahead = last + 1;
    }
    if (!g.o.direct_io && h->hi > w && (h->hi - w) / bs > h->behind) {
        drop_from = h->behind;
        drop_to = (h->hi - w) / bs;   /* blocks wholly below hi - w */
        h->behind = drop_to;
    }
    pthread_mutex_unlock(&h->lock);
    for (uint64_t b = first; b <= last && b * bs < n->size && g.o.prefetch && g.workers; b++)
        queue_prefetch(ino, b);
    for (uint64_t b = drop_from; b < drop_to; b++)
        ct_fs_drop(g.fs, ino, b);
}

#define MAX_SPANS 64

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    const ct_fs_node *n = ct_fs_get(g.fs, ino);
    /* (Bookkeeping before replying: once the reply is out, release may free h.) */
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    ct_err err = {0};
    int near = streaming(h, (uint64_t)off);
    int via_cache = ct_fs_cached_kind(n->kind) && (near || ct_fs_cached(g.fs, ino, (uint64_t)off));
    /* a read touches at most size / bs + 2 blocks; with small blocks that
     * can be more spans than one reply gathers, and a short reply would
     * tell the kernel the file ends there: such reads are copied */
    if (via_cache && size / ct_cache_block_size(ct_fs_cache(g.fs)) + 2 <= MAX_SPANS) {
        /* Zero copy: reply straight from the pinned cache blocks. */
        ct_fs_span sp[MAX_SPANS];
        size_t ns = 0;
        if (ct_fs_read_pinned(g.fs, ino, (uint64_t)off, size, sp, MAX_SPANS, &ns, &err)) {
            log_msg(LOG_ERR, "read of %s at %lld failed: %s", n->name, (long long)off, err.msg);
            fuse_reply_err(req, EIO);
            return;
        }
        size_t got = 0;
        for (size_t i = 0; i < ns; i++)
            got += sp[i].len;
        note_read(h, n, ino, off, got, near);
        if (ns <= 1) {
            fuse_reply_buf(req, ns ? sp[0].data : NULL, got);
        } else {
            /* the read straddles blocks: one reply gathered from each */
            struct iovec iov[MAX_SPANS];
            for (size_t i = 0; i < ns; i++) {
                iov[i].iov_base = (void *)(uintptr_t)sp[i].data;
                iov[i].iov_len = sp[i].len;
            }
            fuse_reply_iov(req, iov, (int)ns);
        }
        ct_fs_unpin(g.fs, sp, ns);
        return;
    }
    /* Random readers of uncached blocks (decoded exactly as asked, past
     * the cache), files outside the cache, and reads of more blocks than
     * MAX_SPANS (copied out of the cache). */
    char *buf = malloc(size ? size : 1);
    size_t got = 0;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    int direct = ct_fs_cached_kind(n->kind) && !via_cache;
    int rc = direct ? ct_fs_read_direct(g.fs, ino, (uint64_t)off, size, buf, &got, &err)
                    : ct_fs_read(g.fs, ino, (uint64_t)off, size, buf, &got, &err);
    note_read(h, n, ino, off, got, near && via_cache);   /* where it ended: the next read may go on from there */
    if (rc) {
        log_msg(LOG_ERR, "read of %s at %lld failed: %s", n->name, (long long)off, err.msg);
        free(buf);
        fuse_reply_err(req, EIO);
        return;
    }
    fuse_reply_buf(req, buf, got);
    free(buf);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    char **k, **v;
    size_t n;
    /* Only user.ct.* attributes exist.  The other namespaces are not
     * supported (no security labels, no ACLs), and saying so rather than
     * "no such attribute" lets ls -l, which asks for security.selinux and
     * system.posix_acl_access of every file, stop asking for the rest of
     * the mount: two round trips per file of tensors/ before. */
    if (strncmp(name, "user.", 5) != 0) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    if (ct_fs_xattrs(g.fs, ino, &k, &v, &n)) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t i;
    for (i = 0; i < n && strcmp(k[i], name); i++)
        ;
    if (i == n)
        fuse_reply_err(req, ENODATA);
    else if (size == 0)
        fuse_reply_xattr(req, strlen(v[i]));
    else if (size < strlen(v[i]))
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, v[i], strlen(v[i]));
    ct_fs_xattrs_free(k, v, n);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    char **k, **v;
    size_t n, total = 0;
    if (ct_fs_xattrs(g.fs, ino, &k, &v, &n)) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    for (size_t i = 0; i < n; i++)
        total += strlen(k[i]) + 1;
    if (size == 0) {
        fuse_reply_xattr(req, total);
    } else if (size < total) {
        fuse_reply_err(req, ERANGE);
    } else {
        char *buf = malloc(total + 1), *p = buf;
        for (size_t i = 0; buf && i < n; i++) {
            memcpy(p, k[i], strlen(k[i]) + 1);
            p += strlen(k[i]) + 1;
        }
        if (buf)
            fuse_reply_buf(req, buf, total);
        else
            fuse_reply_err(req, ENOMEM);
        free(buf);
    }
    ct_fs_xattrs_free(k, v, n);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    /* df shows the dense checkpoint's size as used, nothing free */
    struct statvfs s = {0};
    s.f_bsize = s.f_frsize = 4096;
    s.f_blocks = (fsblkcnt_t)((ct_fs_checkpoint_bytes(g.fs) + 4095) / 4096);
    s.f_files = (fsfilcnt_t)ct_fs_count(g.fs);
    s.f_namemax = 255;
    s.f_flag = ST_RDONLY;
    fuse_reply_statfs(req, &s);
}

/* The source is immutable while mounted: no per-read attribute checks,
 * and the largest readahead the kernel allows. */
static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
    conn->max_readahead = UINT_MAX;
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init, .lookup = op_lookup, .getattr = op_getattr, .readdir = op_readdir,
    .readdirplus = op_readdirplus, .open = op_open, .read = op_read, .release = op_release, .getxattr = op_getxattr, .listxattr = op_listxattr,
    .statfs = op_statfs,
};

/* ---------------- main ---------------- */

/* Set the readahead of the mount's backing device: the kernel sizes its
 * read requests to a FUSE file system by it (128 KiB unless told), and a
 * stream is several times faster in 1 MiB requests.  The device is found
 * in /proc/self/mountinfo (a stat of the mount point would wait for this
 * very daemon).  Needs write access to /sys/class/bdi; failures only log. */
static void set_readahead(const char *mountpoint, uint64_t bytes)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[4096], dev[64] = "";
    while (f && fgets(line, sizeof line, f)) {
        char mnt[4096], devn[64], *sep = strstr(line, " - fuse.ctfs ");
        /* id parent major:minor root mountpoint ...; octal escapes in paths */
        if (!sep || sscanf(line, "%*s %*s %63s %*s %4095s", devn, mnt) != 2)
            continue;
        char un[4096];
        size_t k = 0;
        for (const char *c = mnt; *c && k + 1 < sizeof un; k++) {
            if (c[0] == '\\' && c[1] >= '0' && c[1] <= '3' && c[2] >= '0' && c[2] <= '7' && c[3] >= '0' && c[3] <= '7') {
                un[k] = (char)((c[1] - '0') * 64 + (c[2] - '0') * 8 + (c[3] - '0'));
                c += 4;
            } else {
                un[k] = *c++;
            }
        }
        un[k] = 0;
        if (!strcmp(un, mountpoint))
            snprintf(dev, sizeof dev, "%s", devn);   /* the last one is ours */
    }
    if (f)
        fclose(f);
    char path[128];
    snprintf(path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", dev);
    FILE *ra = dev[0] ? fopen(path, "w") : NULL;
    int ok = ra && fprintf(ra, "%llu\n", (unsigned long long)(bytes / 1024)) > 0;
    if (ra && fclose(ra) != 0)
        ok = 0;
    if (!ok && geteuid() == 0)   /* (users other than root cannot: no news) */
        log_msg(LOG_INFO, "readahead left at the kernel's default (cannot write %s)", dev[0] ? path : "the bdi");
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    (void)outargs;
    struct opts *o = data;
    if (key == FUSE_OPT_KEY_NONOPT && !o->src) {
        o->src = strdup(arg);
        return 0;
    }
    return 1;
}

static void usage(const char *prog)
{
    printf("Usage: %s [options] SRC MOUNTPOINT\n"
           "Mount a compressed-tensors checkpoint (a .safetensors file or a model directory) as a\n"
           "dense safetensors checkpoint, plus one file per tensor under tensors/.\n\n"
           "ctfs options:\n"
           "    -o cache_size=SIZE     decoded block cache (default 256M)\n"
           "    -o block_size=SIZE     cache block size (default 1M)\n"
           "    -o prefetch=N          blocks decoded ahead of a sequential reader, 0 to 4096 (default 8;\n"
           "                           at most half the blocks the cache holds)\n"
           "    -o threads=N           prefetch decode workers, 0 to 64 (default: half the CPUs, 1 to 8)\n"
           "    -o readahead=SIZE      kernel readahead of the mount, i.e. the size of the\n"
           "                           kernel's read requests (default 1M; 0: the kernel's own;\n"
           "                           needs root, else the kernel's own is kept)\n"
           "    -o config=FILE         compression config (default: config.json next to SRC,\n"
           "                           then the file's __metadata__, then inference)\n"
           "    -o keep_qparams        keep quantization parameters in the dense view\n"
           "    -o direct_io           bypass the kernel page cache (breaks mmap)\n"
           "    -h, --help             this help, then libfuse's options\n"
           "    -V, --version          print versions\n\n"
           "Exit status: 0 ok, 1 usage, 2 cannot read SRC, 3 malformed SRC, 4 unsupported format,\n"
           "6 out of memory, 7 mount or FUSE failure.\n\n", prog);
}

static char *escape_commas(const char *s)
{
    ct_buf b = {0};
    for (; *s; s++)
        if ((*s == ',' || *s == '\\') ? ct_buf_putc(&b, '\\') || ct_buf_putc(&b, *s) : ct_buf_putc(&b, *s))
            break;
    return b.data ? b.data : strdup("");
}

int main(int argc, char **argv)
{
    ct_raise_nofile();
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct fuse_cmdline_opts cmd = {0};
    struct fuse_session *se = NULL;
    ct_source *src = NULL;
    int status = 0;
    /* Measured on 2 cores: one worker eight blocks ahead streams fastest;
     * more workers there only take CPU from the reader and the FUSE
     * threads.  Half the CPUs leaves them room on bigger machines. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    g.o.prefetch = 8;
    g.o.threads = ncpu >= 4 ? (unsigned)(ncpu / 2 < 8 ? ncpu / 2 : 8) : 1;
    if (fuse_opt_parse(&args, &g.o, opt_spec, opt_proc) != 0)
        return 1;
    if (g.o.help) {
        usage(argv[0]);
        fuse_cmdline_help();
        fuse_lowlevel_help();
        return 0;
    }
    if (g.o.version) {
        /* libfuse runs fusermount3 --version, which writes to our stdout
         * itself: line buffering keeps the lines in order through a pipe */
        setvbuf(stdout, NULL, _IOLBF, 0);
        printf("ctfs version %s\nFUSE library version %s\n", PACKAGE_VERSION, fuse_pkgversion());
        fuse_lowlevel_version();
        return 0;
    }
    uint64_t cache_size = 256u << 20, block_size = 1u << 20, readahead = 1u << 20;
    if (g.o.cache_size && ct_parse_size(g.o.cache_size, &cache_size)) {
        fprintf(stderr, "ctfs: cache_size=%s: not a size (e.g. 512M)\n", g.o.cache_size);
        return 1;
    }
    if ((g.o.block_size && ct_parse_size(g.o.block_size, &block_size)) || block_size < 4096
        || block_size > (64u << 20)) {
        fprintf(stderr, "ctfs: block_size=%s: not a size from 4K to 64M\n", g.o.block_size);
        return 1;
    }
    if (cache_size < block_size) {
        fprintf(stderr, "ctfs: cache_size (%llu bytes) is smaller than one block (%llu bytes)\n",
                (unsigned long long)cache_size, (unsigned long long)block_size);
        return 1;
    }
    if (g.o.readahead && (ct_parse_size(g.o.readahead, &readahead) || readahead > ((uint64_t)1 << 30))) {
        fprintf(stderr, "ctfs: readahead=%s: not a size from 0 to 1G\n", g.o.readahead);
        return 1;
    }
    readahead = (readahead + 4095) / 4096 * 4096;   /* the kernel keeps whole pages */
    if ((g.o.threads_arg && parse_count("threads", g.o.threads_arg, 64, &g.o.threads))
        || (g.o.prefetch_arg && parse_count("prefetch", g.o.prefetch_arg, 4096, &g.o.prefetch)))
        return 1;
    /* Blocks decoded ahead must fit in the cache beside the ones being
     * read, or they evict each other before use: at most half of it. */
    uint64_t half = cache_size / block_size / 2;
    if (g.o.prefetch > half) {
        if (g.o.prefetch_arg)
            fprintf(stderr, "ctfs: prefetch=%u reduced to %llu: the cache holds %llu blocks\n", g.o.prefetch,
                    (unsigned long long)half, (unsigned long long)(cache_size / block_size));
        g.o.prefetch = (unsigned)half;
    }
    if (fuse_parse_cmdline(&args, &cmd) != 0 || !g.o.src || !cmd.mountpoint) {
        fprintf(stderr, "usage: ctfs [options] SRC MOUNTPOINT  (ctfs -h for help)\n");
        status = 1;
        goto out;
    }
    /* The mount's root is a directory: over a file the kernel would mount
     * it and then answer every access with EIO. */
    struct stat mst;
    if (stat(cmd.mountpoint, &mst) == 0 && !S_ISDIR(mst.st_mode)) {
        fprintf(stderr, "ctfs: %s: not a directory\n", cmd.mountpoint);
        status = 1;
        goto out;
    }
    fuse_set_log_func(fuse_log_to);
    /* Absolute paths from here on: the daemon leaves the working directory,
     * and `mount`, df, the syslog and the user.ct.config attribute are read
     * from anywhere. */
    absolutise(&g.o.src);
    absolutise(&g.o.config);
    /* Open and validate everything before mounting: errors reach the terminal. */
    ct_err err = {0};
    ct_open_opts oo = {.config_path = g.o.config, .keep_qparams = g.o.keep_qparams};
    int rc = ct_source_open(g.o.src, &oo, &src, &err);
    ct_fs_opts fo = {.cache_size = cache_size, .block_size = (size_t)block_size};
    if (!rc)
        rc = ct_fs_new(src, &fo, &g.fs, &err);
    if (rc) {
        fprintf(stderr, "ctfs: %s\n", err.msg);
        status = ct_exit_status(rc);
        goto out;
    }
    stat(g.o.src, &g.src_stat);
    char *fsname = escape_commas(g.o.src), *mopts = NULL;
    if (fsname && asprintf(&mopts, "-oro,subtype=ctfs,fsname=%s", fsname) > 0)
        fuse_opt_add_arg(&args, mopts);
    free(fsname);
    free(mopts);
    se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se) {
        status = 1;   /* libfuse said why: nearly always an unknown -o option */
        goto out;
    }
    if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, cmd.mountpoint) != 0) {
        status = EXIT_MOUNT;
        goto out;
    }
    if (readahead)
        set_readahead(cmd.mountpoint, readahead);
    if (fuse_daemonize(cmd.foreground) != 0) {
        status = EXIT_MOUNT;
        goto out_unmount;
    }
    if (!cmd.foreground) {
        g.daemon = 1;
        openlog("ctfs", LOG_PID, LOG_DAEMON);
    }
    if (g.o.prefetch && g.o.threads) {
        /* a stream's buffers, but never more than a quarter of the cap */
        uint64_t want = (uint64_t)g.o.prefetch + 4, quarter = cache_size / 4 / block_size;
        g.reserve = (size_t)(want < quarter ? want : quarter ? quarter : 1);
        g.workers = calloc(g.o.threads, sizeof *g.workers);
        for (unsigned i = 0; g.workers && i < g.o.threads; i++)
            pthread_create(&g.workers[i], NULL, worker, (void *)(uintptr_t)i);
    }
    log_msg(LOG_INFO, "serving %s at %s (config: %s)", g.o.src, cmd.mountpoint, ct_source_config_origin(src));
    if (ct_fs_hidden(g.fs))
        log_msg(LOG_WARNING, "the source's own tensors/ (%zu entries) is not shown: the mount's tensors/ takes its name",
                ct_fs_hidden(g.fs));
    if (cmd.singlethread) {
        rc = fuse_session_loop(se);
    } else {
        struct fuse_loop_config *lc = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(lc, cmd.clone_fd);
        if (cmd.max_idle_threads <= 100000)   /* unset is UINT_MAX, which libfuse 3.14 logs as invalid */
            fuse_loop_cfg_set_idle_threads(lc, cmd.max_idle_threads);
        if (cmd.max_threads && cmd.max_threads <= 100000)
            fuse_loop_cfg_set_max_threads(lc, cmd.max_threads);
        rc = fuse_session_loop_mt(se, lc);
        fuse_loop_cfg_destroy(lc);
    }
    /* libfuse's loops return -errno on failure, and the number of the
     * signal (SIGINT, SIGTERM, SIGHUP) that stopped them: a normal stop */
    if (rc < 0)
        status = EXIT_MOUNT;
    else if (rc > 0)
        log_msg(LOG_INFO, "stopped by signal %d, unmounting %s", rc, cmd.mountpoint);
    if (g.workers) {
        pthread_mutex_lock(&g.qlock);
        g.stop = 1;
        pthread_cond_broadcast(&g.qcond);
        pthread_mutex_unlock(&g.qlock);
        for (unsigned i = 0; i < g.o.threads; i++)
            pthread_join(g.workers[i], NULL);
        free(g.workers);
    }
out_unmount:
    fuse_session_unmount(se);
out:
    if (se) {
        fuse_remove_signal_handlers(se);
        fuse_session_destroy(se);
    }
    ct_fs_free(g.fs);
    ct_source_close(src);
    free(cmd.mountpoint);
    fuse_opt_free_args(&args);
    free(g.o.src);
    free(g.o.cache_size);
    free(g.o.block_size);
    free(g.o.config);
    free(g.o.readahead);
    free(g.o.prefetch_arg);
    free(g.o.threads_arg);
    return status;
}
