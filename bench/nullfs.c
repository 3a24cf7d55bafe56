/* nullfs SIZE MOUNTPOINT [fuse options]: the ceiling for ctfs.  A FUSE
 * low-level file system with one read-only file, /data, of SIZE bytes
 * replied straight from memory (the kernel copies it once), with the
 * options ctfs uses (keep_cache, long timeouts, no auto_inval_data, largest
 * readahead, multithreaded loop).  Its bytes are a fixed pattern. */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <limits.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char *data;
static size_t size;

static void st_of(fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = ino == 1 ? S_IFDIR | 0555 : S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_size = ino == 1 ? 0 : (off_t)size;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e = {0};
    if (parent != 1 || strcmp(name, "data")) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    e.ino = 2;
    e.attr_timeout = e.entry_timeout = 86400;
    st_of(2, &e.attr);
    fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    struct stat st;
    st_of(ino, &st);
    fuse_reply_attr(req, &st, 86400);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t n, off_t off, struct fuse_file_info *fi)
{
    (void)ino;
    (void)fi;
    if ((size_t)off >= size)
        n = 0;
    else if (n > size - (size_t)off)
        n = size - (size_t)off;
    fuse_reply_buf(req, data + off, n);   /* straight from memory: the ceiling */
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
    .init = op_init, .lookup = op_lookup, .getattr = op_getattr, .open = op_open, .read = op_read,
};

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: nullfs SIZE MOUNTPOINT [fuse options]\n");
        return 1;
    }
    size = strtoull(argv[1], NULL, 10);
    /* 2 MiB-aligned and huge-page backed, like ctfs's cache blocks */
    if (posix_memalign((void **)&data, 2u << 20, size ? size : 1) != 0)
        return 1;
    madvise(data, size, MADV_HUGEPAGE);
    for (size_t i = 0; i < size; i++)
        data[i] = (char)(i * 131 + (i >> 12));
    struct fuse_args args = FUSE_ARGS_INIT(argc - 1, argv + 1);
    struct fuse_cmdline_opts cmd;
    if (fuse_parse_cmdline(&args, &cmd) != 0 || !cmd.mountpoint)
        return 1;
    fuse_opt_add_arg(&args, "-oro,subtype=nullfs,fsname=nullfs");
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se || fuse_set_signal_handlers(se) || fuse_session_mount(se, cmd.mountpoint))
        return 7;
    fuse_daemonize(cmd.foreground);
    struct fuse_loop_config *lc = fuse_loop_cfg_create();
    int rc = fuse_session_loop_mt(se, lc);
    fuse_loop_cfg_destroy(lc);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    free(cmd.mountpoint);
    fuse_opt_free_args(&args);
    return rc ? 7 : 0;
}
