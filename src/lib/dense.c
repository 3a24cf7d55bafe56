#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "ct/dense.h"
#include "ct/pyjson.h"
#include "ct/view.h"

#define WRITE_CHUNK ((uint64_t)8 << 20)

int ct_dense_index_json(const ct_source *src, char **out, size_t *len, ct_err *err)
{
    *out = NULL;
    if (!ct_source_is_dir(src))
        return 0;
    char *ip = ct_path_join(ct_source_path(src), "model.safetensors.index.json");
    struct stat sb;
    int has = ip && stat(ip, &sb) == 0;
    free(ip);
    if (!has)
        return 0;
    uint64_t total = 0;
    const cJSON *smeta = ct_source_index_metadata(src);
    cJSON *root = cJSON_CreateObject(), *meta = smeta ? cJSON_Duplicate(smeta, 1) : cJSON_CreateObject(),
          *wm = cJSON_CreateObject();
    int bad = !root || !meta || !wm;
    for (size_t i = 0; !bad && i < ct_source_ntensors(src); i++) {
        const ct_tensor *t = ct_source_tensor(src, i);
        total += t->nbytes;
        bad |= !cJSON_AddStringToObject(wm, t->name, ct_source_shard_name(src, t->shard));
    }
    if (!bad)
        cJSON_DeleteItemFromObjectCaseSensitive(meta, "total_size");
    bad = bad || !cJSON_AddNumberToObject(meta, "total_size", (double)total);
    if (!bad) {
        cJSON_AddItemToObject(root, "metadata", meta);
        cJSON_AddItemToObject(root, "weight_map", wm);
        meta = wm = NULL;
    }
    ct_buf b = {0};
    bad = bad || ct_pyjson_write(&b, root, 1) || ct_buf_putc(&b, '\n');
    cJSON_Delete(root);
    cJSON_Delete(meta);
    cJSON_Delete(wm);
    if (bad) {
        ct_buf_free(&b);
        return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    *out = b.data;
    *len = b.len;
    return 0;
}

int ct_dense_config_json(const ct_source *src, char **out, size_t *len, ct_err *err)
{
    *out = NULL;
    if (!ct_source_is_dir(src))
        return 0;
    char *cp = ct_path_join(ct_source_path(src), "config.json");
    if (!cp)
        return ct_fail(err, CT_ENOMEM, "out of memory");
    struct stat sb;
    if (stat(cp, &sb) != 0) {
        free(cp);
        return 0;
    }
    char *text;
    size_t n;
    int rc = ct_read_file(cp, 64u << 20, &text, &n, err);
    if (rc) {
        free(cp);
        return rc;
    }
    cJSON *root = ct_pyjson_parse(text, n);
    if (!root || !cJSON_IsObject(root)) {
        free(text);
        cJSON_Delete(root);
        rc = ct_fail(err, CT_EFORMAT, "%s: not a JSON object", cp);
        free(cp);
        return rc;
    }
    free(cp);
    static const char *const drop[] = {"quantization_config", "compression_config", "sparsity_config"};
    int dropped = 0;
    for (int i = 0; i < 3; i++)
        while (cJSON_GetObjectItemCaseSensitive(root, drop[i])) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, drop[i]);
            dropped = 1;
        }
    if (!dropped) {
        /* nothing to take out: the file as it is */
        cJSON_Delete(root);
        *out = text;
        *len = n;
        return 0;
    }
    free(text);
    ct_buf b = {0};
    int bad = ct_pyjson_write(&b, root, 1) || ct_buf_putc(&b, '\n');
    cJSON_Delete(root);
    if (bad) {
        ct_buf_free(&b);
        return ct_fail(err, CT_ENOMEM, "out of memory");
    }
    *out = b.data;
    *len = b.len;
    return 0;
}

int ct_write_view_fd(const ct_view *v, int fd, const char *label, ct_progress_fn progress, void *ctx,
                     uint64_t *done, uint64_t total, ct_err *err)
{
    uint64_t size = ct_view_size(v);
    char *buf = malloc(WRITE_CHUNK);
    if (!buf)
        return ct_fail(err, CT_ENOMEM, "out of memory");
    int rc = 0;
    for (uint64_t off = 0; off < size && !rc; off += WRITE_CHUNK) {
        uint64_t n = size - off < WRITE_CHUNK ? size - off : WRITE_CHUNK;
        if (!(rc = ct_view_read(v, off, n, buf, err)))
            rc = ct_write_full(fd, buf, n, label, err);
        if (done) {
            *done += n;
            if (progress)
                progress(ctx, *done, total);
        }
    }
    free(buf);
    return rc;
}

static int write_bytes_file(const char *path, const char *data, size_t len, ct_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return ct_fail(err, CT_EIO, "%s: cannot create: %s", path, strerror(errno));
    int rc = ct_write_full(fd, data, len, path, err);
    if (close(fd) != 0 && !rc)
        rc = ct_fail(err, CT_EIO, "%s: %s", path, strerror(errno));
    return rc;
}

static int write_view_file(const ct_source *src, size_t shard, const char *path, ct_progress_fn progress,
                           void *ctx, uint64_t *done, uint64_t total, ct_err *err)
{
    ct_view *v;
    int rc = ct_view_new(src, shard, &v, err);
    if (rc)
        return rc;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        ct_view_free(v);
        return ct_fail(err, CT_EIO, "%s: cannot create: %s", path, strerror(errno));
    }
    rc = ct_write_view_fd(v, fd, path, progress, ctx, done, total, err);
    if (!rc && fsync(fd) != 0)
        rc = ct_fail(err, CT_EIO, "%s: fsync: %s", path, strerror(errno));
    if (close(fd) != 0 && !rc)
        rc = ct_fail(err, CT_EIO, "%s: %s", path, strerror(errno));
    ct_view_free(v);
    return rc;
}

static uint64_t dense_total(const ct_source *src)
{
    uint64_t total = 0;
    for (size_t s = 0; s < ct_source_nshards(src); s++) {
        ct_view *v;
        if (ct_view_new(src, s, &v, NULL) == 0) {
            total += ct_view_size(v);
            ct_view_free(v);
        }
    }
    return total;
}

static int write_dir(const ct_source *src, const char *tmpdir, ct_progress_fn progress, void *ctx, ct_err *err)
{
    int rc = 0;
    uint64_t done = 0, total = dense_total(src);
    for (size_t s = 0; s < ct_source_nshards(src) && !rc; s++) {
        char *p = ct_path_join(tmpdir, ct_source_shard_name(src, s));
        rc = p ? write_view_file(src, s, p, progress, ctx, &done, total, err) : ct_fail(err, CT_ENOMEM, "out of memory");
        free(p);
    }
    char *text = NULL;
    size_t len = 0;
    const char *side[2] = {"model.safetensors.index.json", "config.json"};
    for (int k = 0; k < 2 && !rc; k++) {
        rc = k == 0 ? ct_dense_index_json(src, &text, &len, err) : ct_dense_config_json(src, &text, &len, err);
        if (!rc && text) {
            char *p = ct_path_join(tmpdir, side[k]);
            rc = p ? write_bytes_file(p, text, len, err) : ct_fail(err, CT_ENOMEM, "out of memory");
            free(p);
        }
        free(text);
        text = NULL;
    }
    /* every other file and directory as is */
    ct_other_file *f = NULL;
    size_t n = 0;
    if (!rc && !(rc = ct_source_other_files(src, &f, &n, err)))
        rc = ct_copy_other_files(ct_source_path(src), f, n, tmpdir, err);
    ct_other_files_free(f, n);
    return rc;
}

struct view_job {
    const ct_view *v;
    ct_progress_fn progress;
    void *ctx;
};

static int fill_view_file(int fd, const char *label, void *arg, ct_err *err)
{
    struct view_job *j = arg;
    uint64_t done = 0;
    return ct_write_view_fd(j->v, fd, label, j->progress, j->ctx, &done, ct_view_size(j->v), err);
}

struct dir_job {
    const ct_source *src;
    ct_progress_fn progress;
    void *ctx;
};

static int fill_dense_dir(const char *tmpdir, void *arg, ct_err *err)
{
    struct dir_job *j = arg;
    return write_dir(j->src, tmpdir, j->progress, j->ctx, err);
}

int ct_write_dense(const ct_source *src, const char *dst, int force, ct_progress_fn progress, void *ctx,
                   ct_err *err)
{
    struct stat sb;
    int rc = ct_check_dst(ct_source_path(src), dst, err);
    if (rc)
        return rc;
    int exists = lstat(dst, &sb) == 0;
    if (exists && !force)
        return ct_fail(err, CT_EEXIST, "%s: already exists (use --force to replace it)", dst);
    int dir = ct_source_is_dir(src);
    if (exists && S_ISDIR(sb.st_mode) != dir)
        return ct_fail(err, CT_EEXIST, "%s: exists and is %s; refusing to replace it", dst,
                       dir ? "not a directory" : "a directory");
    if (dir) {
        struct dir_job job = {src, progress, ctx};
        return ct_write_dir_atomic(dst, exists, fill_dense_dir, &job, err);
    }
    ct_view *v;
    if ((rc = ct_view_new(src, 0, &v, err)))
        return rc;
    struct view_job job = {v, progress, ctx};
    rc = ct_write_file_atomic(dst, fill_view_file, &job, err);
    ct_view_free(v);
    return rc;
}
