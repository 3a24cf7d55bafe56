/* ctls: list the tensors of a checkpoint's dense view, like ls -l. */
#include "config.h"
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include "ct/pyjson.h"
#include "ct/source.h"
#include "ct/util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: ctls [options] SRC [NAME...]\n"
            "List the tensors of the dense view of a compressed-tensors checkpoint (file or directory):\n"
            "name, dtype, shape, format, stored bytes, dense bytes, ratio, and a totals line.\n"
            "NAMEs (shell patterns: 'model.layers.0.*', '*.down_proj.weight') list only the tensors\n"
            "they match, totals over those.\n"
            "\n"
            "  -j, --json           JSON output\n"
            "  -c, --config FILE    the compression config (default: config.json next to SRC,\n"
            "                       then the file's __metadata__, then inference)\n"
            "      --keep-qparams   list kept quantization parameters too\n"
            "  -h, --help           this help\n"
            "  -V, --version        print the version\n"
            "\n"
            "Exit status: 0 ok, 1 usage or a NAME matching no tensor, 2 I/O error, 3 malformed input,\n"
            "4 unsupported format.\n");
}

/* dense / stored; a tensor with no bytes at all is stored as it is: 1 */
static double ratio(uint64_t dense, uint64_t stored)
{
    return stored ? (double)dense / (double)stored : dense ? 0.0 : 1.0;
}

int main(int argc, char **argv)
{
    ct_raise_nofile();
    static const struct option opts[] = {
        {"json", no_argument, 0, 'j'}, {"config", required_argument, 0, 'c'},
        {"keep-qparams", no_argument, 0, 'k'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'}, {0, 0, 0, 0},
    };
    int json = 0, keep = 0, c;
    const char *config = NULL;
    while ((c = getopt_long(argc, argv, "jc:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'c': config = optarg; break;
        case 'k': keep = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("ctls (ctfs) %s\n", PACKAGE_VERSION); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (argc - optind < 1) {
        usage(stderr);
        return 1;
    }
    char **pats = argv + optind + 1;
    size_t npats = (size_t)(argc - optind - 1);
    ct_err err = {0};
    ct_source *src;
    ct_open_opts oo = {.config_path = config, .keep_qparams = keep};
    int rc = ct_source_open(argv[optind], &oo, &src, &err);
    if (rc) {
        fprintf(stderr, "ctls: %s\n", err.msg);
        return ct_exit_status(rc);
    }
    /* the tensors listed: all, or those a NAME matches */
    size_t nall = ct_source_ntensors(src), n = 0;
    size_t *sel = malloc((nall + 1) * sizeof *sel);
    unsigned char *hit = calloc(npats + 1, 1);
    if (!sel || !hit) {
        fprintf(stderr, "ctls: out of memory\n");
        return 6;
    }
    for (size_t i = 0; i < nall; i++) {
        int any = !npats;
        for (size_t k = 0; k < npats; k++)
            if (fnmatch(pats[k], ct_source_tensor(src, i)->name, 0) == 0)
                any = hit[k] = 1;
        if (any)
            sel[n++] = i;
    }
    int status = 0;
    for (size_t k = 0; k < npats; k++) {
        /* `ctls *.safetensors` in a sharded model gives the other shards as
         * NAMEs: say what to do instead of listing nothing */
        struct stat sb;
        if (!hit[k] && stat(pats[k], &sb) == 0) {
            fprintf(stderr, "ctls: %s is a file, not a tensor name: ctls lists one checkpoint (give a model "
                    "directory for all its shards), then the names of tensors to list\n", pats[k]);
            free(hit);
            free(sel);
            ct_source_close(src);
            return 1;
        }
    }
    for (size_t k = 0; k < npats; k++)
        if (!hit[k]) {
            fprintf(stderr, "ctls: %s: no tensor matches\n", pats[k]);
            status = 1;
        }
    free(hit);
    uint64_t tot_stored = 0, tot_dense = 0;
    if (json) {
        cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "tensors");
        cJSON_AddStringToObject(root, "source", ct_source_path(src));
        cJSON_AddStringToObject(root, "config", ct_source_config_origin(src));
        for (size_t i = 0; i < n; i++) {
            const ct_tensor *t = ct_source_tensor(src, sel[i]);
            cJSON *o = cJSON_CreateObject(), *sh = cJSON_CreateArray();
            cJSON_AddStringToObject(o, "name", t->name);
            cJSON_AddStringToObject(o, "dtype", ct_dtype_name(t->dtype));
            for (int d = 0; d < t->ndim; d++)
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
            cJSON_AddItemToObject(o, "shape", sh);
            cJSON_AddStringToObject(o, "format", t->format);
            cJSON_AddNumberToObject(o, "stored_bytes", (double)t->stored_bytes);
            cJSON_AddNumberToObject(o, "dense_bytes", (double)t->nbytes);
            cJSON_AddNumberToObject(o, "ratio", ratio(t->nbytes, t->stored_bytes));
            cJSON_AddStringToObject(o, "shard", ct_source_shard_name(src, t->shard));
            cJSON_AddItemToArray(arr, o);
            tot_stored += t->stored_bytes;
            tot_dense += t->nbytes;
        }
        cJSON *tot = cJSON_AddObjectToObject(root, "total");
        cJSON_AddNumberToObject(tot, "tensors", (double)n);
        cJSON_AddNumberToObject(tot, "stored_bytes", (double)tot_stored);
        cJSON_AddNumberToObject(tot, "dense_bytes", (double)tot_dense);
        cJSON_AddNumberToObject(tot, "ratio", ratio(tot_dense, tot_stored));
        uint64_t dropped_bytes;
        size_t dropped = ct_source_dropped(src, &dropped_bytes);
        if (!npats) {   /* (of the whole checkpoint: no NAME picks them) */
            cJSON *nl = cJSON_AddObjectToObject(root, "not_listed");
            cJSON_AddNumberToObject(nl, "quantization_parameters", (double)dropped);
            cJSON_AddNumberToObject(nl, "stored_bytes", (double)dropped_bytes);
        }
        ct_buf b = {0};
        ct_pyjson_write(&b, root, 0);
        printf("%s\n", b.data ? b.data : "{}");
        ct_buf_free(&b);
        cJSON_Delete(root);
        ct_source_close(src);
        free(sel);
        return status;
    }
    /* column widths */
    size_t wn = 4, wd = 7, ws = 5, wf = 6;
    char **names = calloc(n + 1, sizeof *names), **shapes = calloc(n + 1, sizeof *shapes);
    if (!names || !shapes) {
        fprintf(stderr, "ctls: out of memory\n");
        return 6;
    }
    for (size_t i = 0; i < n; i++) {
        const ct_tensor *t = ct_source_tensor(src, sel[i]);
        char sh[512];
        names[i] = ct_escape_name(t->name);
        shapes[i] = strdup(ct_shape_str(sh, sizeof sh, t->ndim, t->shape));
        if (!names[i] || !shapes[i]) {
            fprintf(stderr, "ctls: out of memory\n");
            return 6;
        }
        size_t nw = ct_display_width(names[i]);
        if (nw > wn) wn = nw;
        if (strlen(shapes[i]) > ws) ws = strlen(shapes[i]);
        if (strlen(t->format) > wf) wf = strlen(t->format);
        if (strlen(ct_dtype_name(t->dtype)) > wd) wd = strlen(ct_dtype_name(t->dtype));   /* F8_E4M3FNUZ */
    }
    printf("%-*s  %-*s  %-*s  %-*s  %12s  %12s  %7s\n", (int)wn, "NAME", (int)wd, "DTYPE", (int)ws, "SHAPE", (int)wf,
           "FORMAT", "STORED", "DENSE", "RATIO");
    for (size_t i = 0; i < n; i++) {
        const ct_tensor *t = ct_source_tensor(src, sel[i]);
        /* names padded by their display width (printf pads by bytes) */
        printf("%s%*s  %-*s  %-*s  %-*s  %12" PRIu64 "  %12" PRIu64 "  %6.2fx\n", names[i],
               (int)(wn - ct_display_width(names[i])), "", (int)wd, ct_dtype_name(t->dtype), (int)ws, shapes[i],
               (int)wf, t->format, t->stored_bytes, t->nbytes, ratio(t->nbytes, t->stored_bytes));
        tot_stored += t->stored_bytes;
        tot_dense += t->nbytes;
        free(names[i]);
        free(shapes[i]);
    }
    printf("total: %zu tensor%s, %" PRIu64 " bytes stored, %" PRIu64 " bytes dense, ratio %.2fx\n", n,
           n == 1 ? "" : "s", tot_stored, tot_dense, ratio(tot_dense, tot_stored));
    uint64_t dropped_bytes;
    size_t dropped = ct_source_dropped(src, &dropped_bytes);
    if (dropped && !npats)
        printf("not listed: %zu quantization parameter%s, %" PRIu64 " bytes stored (left out of the dense view; "
               "--keep-qparams lists them)\n", dropped, dropped == 1 ? "" : "s", dropped_bytes);
    free(names);
    free(shapes);
    free(sel);
    ct_source_close(src);
    return status;
}
