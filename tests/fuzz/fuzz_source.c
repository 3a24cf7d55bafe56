/* The readers: open a model directory (config.json + model.safetensors),
 * decode every tensor whole and at an odd offset, read every shard's dense
 * view, and every file, attribute and the statistics of the ctfs tree. */
#include "common.h"
#include "ct/fsmodel.h"
#include "ct/source.h"
#include "ct/view.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *cfg, *stb;
    size_t cl, sl;
    if (!fuzz_split(data, size, &cfg, &cl, &stb, &sl))
        return 0;
    const char *dir = fuzz_dir();
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (cl)
        fuzz_write(path, cfg, cl);
    else
        unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    fuzz_write(path, stb, sl);
    ct_err err = {0};
    ct_source *s;
    ct_open_opts oo = {.keep_qparams = data[0] & 1, .keep_activation_qparams = data[0] & 2};
    if (ct_source_open(dir, &oo, &s, &err))
        return 0;
    for (size_t i = 0; i < ct_source_ntensors(s); i++) {
        const ct_tensor *t = ct_source_tensor(s, i);
        if (t->nbytes > (64u << 20))
            continue;
        char *buf = malloc(t->nbytes + 8);
        if (!buf)
            abort();
        ct_source_read(s, i, 0, t->nbytes, buf, &err);
        if (t->nbytes > 3)
            ct_source_read(s, i, 1, t->nbytes - 3, buf + 1, &err);
        free(buf);
    }
    for (size_t sh = 0; sh < ct_source_nshards(s); sh++) {
        ct_view *v;
        if (ct_view_new(s, sh, &v, &err))
            continue;
        uint64_t vs = ct_view_size(v);
        if (vs <= (64u << 20)) {
            char *buf = malloc(vs + 8);
            if (!buf)
                abort();
            ct_view_read(v, 0, vs, buf, &err);
            if (vs > 5)
                ct_view_read(v, 3, vs - 5, buf + 3, &err);
            free(buf);
        }
        ct_view_free(v);
    }
    ct_fs_opts fo = {.cache_size = 8u << 20, .block_size = 1u << 20};
    ct_fs *fs;
    if (!ct_fs_new(s, &fo, &fs, &err)) {
        for (uint64_t ino = 1; ino <= ct_fs_count(fs); ino++) {
            const ct_fs_node *n = ct_fs_get(fs, ino);
            if (n->kind == CT_FS_DIR || n->size > (16u << 20))
                continue;
            char *buf = malloc(n->size + 1);
            size_t got;
            if (!buf)
                abort();
            ct_fs_read(fs, ino, 0, n->size, buf, &got, &err);
            free(buf);
            char **nm, **val;
            size_t nx;
            if (!ct_fs_xattrs(fs, ino, &nm, &val, &nx))
                ct_fs_xattrs_free(nm, val, nx);
        }
        free(ct_fs_stats_text(fs));
        ct_fs_free(fs);
    }
    ct_source_close(s);
    return 0;
}
