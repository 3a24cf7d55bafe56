/* mkct: convert a checkpoint to another compressed-tensors format.
 * This front end parses options and reports; the work is in libct. */
#include "config.h"
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "ct/config.h"
#include "ct/dense.h"
#include "ct/pyjson.h"
#include "ct/sample.h"
#include "ct/encode.h"
#include "ct/util.h"
#include <cjson/cJSON.h>
#include "ct/source.h"

#define SCHEMES "W4A16, W4A16_ASYM, W8A16, W8A8, FP8, FP8_DYNAMIC, FP8_BLOCK, NVFP4A16, NVFP4"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: mkct [options] SRC DST\n"
            "Convert a safetensors checkpoint (a file, or a model directory) to another format.\n"
            "\n"
            "  -f, --format FMT     output format: dense (decompress), or a compressed-tensors format\n"
            "  -c, --config FILE    without --format: compress SRC (dense weights, with their\n"
            "                       weight_scale/zero points if calibrated; or a compressed\n"
            "                       checkpoint, converted through its dense view) as FILE says;\n"
            "                       with --format dense: the source's compression config (default:\n"
            "                       config.json next to SRC, then the file's __metadata__, then inference)\n"
            "      --keep-qparams   keep quantization parameters (weight_scale, ...) in dense output\n"
            "      --force          replace DST if it exists\n"
            "      --progress       show progress (default when stderr is a terminal)\n"
            "      --no-progress    do not show progress\n"
            "  -q, --quiet          no notes on stderr\n"
            "  -s, --scheme NAME    compress with an upstream preset: " SCHEMES "\n"
            "                       (parameters from the source's weight_scale/zero points/global scales,\n"
            "                       else upstream's min-max observer; FP8 and NVFP4 need the source's\n"
            "                       calibrated input_scale / input_global_scale)\n"
            "      --bits N, --group-size N (-1: per channel), --asym, --actorder  preset overrides\n"
            "      --targets RE, --ignore RE   modules to compress and to leave dense (repeatable;\n"
            "                       defaults: --targets Linear --ignore lm_head, as upstream's presets)\n"
            "  -j, --jobs N         compress N modules at a time (default 1; memory grows with N)\n"
            "      --shard-size SIZE  split the output into shards of at most SIZE (e.g. 5G); DST is then\n"
            "                       a directory with model.safetensors.index.json\n"
            "      --verify         after compressing, read the output back and check every tensor;\n"
            "                       alone (mkct --verify SRC DST): check an existing DST against SRC\n"
            "      --sample DIR     write the built-in sample: a small llama-shaped compressed\n"
            "                       checkpoint in DIR/compressed and its dense tensors in\n"
            "                       DIR/reference.safetensors\n"
            "  -h, --help           this help\n"
            "  -V, --version        print the version\n"
            "\n"
            "Exit status: 0 ok, 1 usage, 2 I/O error, 3 malformed input, 4 unsupported format,\n"
            "5 DST exists, 6 out of memory.\n");
}

/* QuantizationArgs as upstream serialises them (sorted keys).  dynamic:
 * "true", "false" or "local"; observer NULL: null. */
typedef struct qa {
    int bits;
    const char *type, *strategy, *dynamic, *observer, *scale_dtype;
    int group_size, sym, actorder, block;
} qa;

static cJSON *args_json(const qa *a)
{
    cJSON *w = cJSON_CreateObject();
    if (a->actorder)
        cJSON_AddStringToObject(w, "actorder", "group");
    else
        cJSON_AddNullToObject(w, "actorder");
    if (a->block) {
        cJSON *b = cJSON_AddArrayToObject(w, "block_structure");
        cJSON_AddItemToArray(b, cJSON_CreateNumber(a->block));
        cJSON_AddItemToArray(b, cJSON_CreateNumber(a->block));
    } else {
        cJSON_AddNullToObject(w, "block_structure");
    }
    if (!strcmp(a->dynamic, "local"))
        cJSON_AddStringToObject(w, "dynamic", "local");
    else
        cJSON_AddBoolToObject(w, "dynamic", !strcmp(a->dynamic, "true"));
    if (a->group_size)
        cJSON_AddNumberToObject(w, "group_size", a->group_size);
    else
        cJSON_AddNullToObject(w, "group_size");
    cJSON_AddNumberToObject(w, "num_bits", a->bits);
    if (a->observer)
        cJSON_AddStringToObject(w, "observer", a->observer);
    else
        cJSON_AddNullToObject(w, "observer");
    cJSON_AddObjectToObject(w, "observer_kwargs");
    if (a->scale_dtype)
        cJSON_AddStringToObject(w, "scale_dtype", a->scale_dtype);
    else
        cJSON_AddNullToObject(w, "scale_dtype");
    cJSON_AddStringToObject(w, "strategy", a->strategy);
    cJSON_AddBoolToObject(w, "symmetric", a->sym);
    cJSON_AddStringToObject(w, "type", a->type);
    if (a->sym)
        cJSON_AddNullToObject(w, "zp_dtype");
    else
        cJSON_AddStringToObject(w, "zp_dtype", "torch.int8");
    return w;
}

struct scheme_opts {
    const char *scheme, *format;
    int bits, group_size, asym, actorder;
    const char *targets[32], *ignore[32];
    int ntargets, nignore;
};


/* The quantization_config for a preset scheme (upstream's preset_schemes),
 * or for --format sparse-bitmask / sparse-24-bitmask alone. */
static char *scheme_config(const struct scheme_opts *so, char *why, size_t why_len)
{
    const char *fmt = NULL;
    qa w = {0}, in = {0};
    int has_in = 0;
    w.type = "int", w.dynamic = "false", w.observer = "memoryless_minmax", w.sym = 1;
    if (so->scheme) {
        const char *s = so->scheme;
        if (!strcmp(s, "W4A16") || !strcmp(s, "W4A16_ASYM")) {
            w.bits = 4, w.strategy = "group", w.group_size = 128, w.sym = strcmp(s, "W4A16_ASYM") != 0;
            fmt = "pack-quantized";
        } else if (!strcmp(s, "W8A16")) {
            w.bits = 8, w.strategy = "channel", fmt = "pack-quantized";
        } else if (!strcmp(s, "W8A8") || !strcmp(s, "INT8")) {
            w.bits = 8, w.strategy = "channel", fmt = "int-quantized";
            in = (qa){8, "int", "token", "true", NULL, NULL, 0, 1, 0, 0}, has_in = 1;
        } else if (!strcmp(s, "FP8")) {
            w.bits = 8, w.type = "float", w.strategy = "tensor", fmt = "float-quantized";
            in = (qa){8, "float", "tensor", "false", "static_minmax", NULL, 0, 1, 0, 0}, has_in = 1;
        } else if (!strcmp(s, "FP8_DYNAMIC")) {
            w.bits = 8, w.type = "float", w.strategy = "channel", fmt = "float-quantized";
            in = (qa){8, "float", "token", "true", NULL, NULL, 0, 1, 0, 0}, has_in = 1;
        } else if (!strcmp(s, "FP8_BLOCK")) {
            w.bits = 8, w.type = "float", w.strategy = "block", w.block = 128, fmt = "float-quantized";
            in = (qa){8, "float", "group", "true", NULL, NULL, 128, 1, 0, 0}, has_in = 1;
        } else if (!strcmp(s, "NVFP4A16") || !strcmp(s, "NVFP4")) {
            w.bits = 4, w.type = "float", w.strategy = "tensor_group", w.group_size = 16;
            w.scale_dtype = "torch.float8_e4m3fn", fmt = "nvfp4-pack-quantized";
            if (!strcmp(s, "NVFP4"))
                in = (qa){4, "float", "tensor_group", "local", "static_minmax", "torch.float8_e4m3fn", 16, 1, 0, 0},
                has_in = 1;
        } else {
            snprintf(why, why_len, "unknown scheme '%s' (" SCHEMES ")", s);
            return NULL;
        }
        int is_int = !strcmp(w.type, "int");
        if (so->bits) {
            if (!is_int) {
                snprintf(why, why_len, "--bits applies to integer schemes, not %s", s);
                return NULL;
            }
            w.bits = so->bits;
        }
        if (so->group_size) {
            if (!is_int && !w.block) {
                snprintf(why, why_len, "--group-size applies to integer schemes, not %s", s);
                return NULL;
            }
            w.group_size = so->group_size > 0 ? so->group_size : 0;
            w.strategy = so->group_size > 0 ? "group" : "channel";
            w.block = 0;
        }
        if (so->asym) {
            if (!is_int) {
                snprintf(why, why_len, "--asym applies to integer schemes, not %s", s);
                return NULL;
            }
            w.sym = 0;
        }
        if (so->actorder) {
            if (strcmp(w.strategy, "group")) {
                snprintf(why, why_len, "--actorder needs group quantization");
                return NULL;
            }
            w.actorder = 1;
        }
        if (so->format)
            fmt = so->format;
    }
    cJSON *qc = cJSON_CreateObject(), *groups = cJSON_AddObjectToObject(qc, "config_groups");
    cJSON *tg = cJSON_CreateArray(), *ig = cJSON_CreateArray();
    for (int i = 0; i < so->ntargets; i++)
        cJSON_AddItemToArray(tg, cJSON_CreateString(so->targets[i]));
    if (!so->ntargets)
        cJSON_AddItemToArray(tg, cJSON_CreateString("Linear"));
    for (int i = 0; i < so->nignore; i++)
        cJSON_AddItemToArray(ig, cJSON_CreateString(so->ignore[i]));
    if (!so->nignore)
        cJSON_AddItemToArray(ig, cJSON_CreateString("lm_head"));
    if (w.bits) {
        cJSON *g = cJSON_AddObjectToObject(groups, "group_0");
        cJSON_AddStringToObject(g, "format", fmt);
        if (has_in)
            cJSON_AddItemToObject(g, "input_activations", args_json(&in));
        else
            cJSON_AddNullToObject(g, "input_activations");
        cJSON_AddNullToObject(g, "output_activations");
        cJSON_AddItemToObject(g, "targets", cJSON_Duplicate(tg, 1));
        cJSON_AddItemToObject(g, "weights", args_json(&w));
        cJSON_AddStringToObject(qc, "format", fmt);
    } else {
        cJSON_AddStringToObject(qc, "format", so->format);
    }
    cJSON_AddNullToObject(qc, "global_compression_ratio");
    cJSON_AddItemToObject(qc, "ignore", cJSON_Duplicate(ig, 1));
    cJSON_AddNullToObject(qc, "kv_cache_scheme");
    cJSON_AddStringToObject(qc, "quant_method", "compressed-tensors");
    cJSON_AddStringToObject(qc, "quantization_status", "compressed");
    cJSON *sp = cJSON_AddObjectToObject(qc, "sparsity_config");
    if (!w.bits && so->format) {
        cJSON_AddStringToObject(sp, "format", so->format);
        cJSON_AddItemToObject(sp, "ignore", cJSON_Duplicate(ig, 1));
        cJSON_AddBoolToObject(sp, "registry_requires_subclass", 0);
        cJSON_AddStringToObject(sp, "sparsity_structure", strcmp(so->format, "sparse-24-bitmask") ? "unstructured" : "2:4");
        cJSON_AddItemToObject(sp, "targets", cJSON_Duplicate(tg, 1));
    }
    cJSON_AddObjectToObject(qc, "transform_config");
    cJSON_AddStringToObject(qc, "version", "0.18.0");
    cJSON_Delete(tg);
    cJSON_Delete(ig);
    char *text = cJSON_PrintUnformatted(qc);
    cJSON_Delete(qc);
    return text;
}

static int verify_after, n_threads = 1, show_progress, quiet;
static uint64_t shard_size;

static double secs_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* A one-line progress bar on stderr, redrawn at most 10 times a second. */
struct bar {
    struct timespec start;
    double last;
};

static void compress_progress(void *ctx, size_t ud, size_t ut, uint64_t bd, uint64_t bt)
{
    struct bar *b = ctx;
    double s = secs_since(&b->start);
    if (ud != ut && s - b->last < 0.1)
        return;
    b->last = s;
    double rate = s > 0 ? (double)bd / s : 0, eta = rate > 0 ? (double)(bt - bd) / rate : 0;
    char bar[21];
    int fill = bt ? (int)(20.0 * (double)bd / (double)bt) : 20;
    for (int i = 0; i < 20; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[20] = 0;
    fprintf(stderr, "\rmkct: [%s] %zu/%zu tensors  %.1f/%.1f MiB  %.1f MiB/s  ETA %.0fs   ", bar, ud, ut,
            (double)bd / 1048576.0, (double)bt / 1048576.0, rate / 1048576.0, eta);
}

/* A file for a file, a directory for a directory (or --shard-size);
 * --verify reads it back. */
static int compress(const char *src, const char *dst, const char *cj, size_t cl, const char *label, int force,
                    ct_err *err)
{
    struct bar b = {0};
    clock_gettime(CLOCK_MONOTONIC, &b.start);
    size_t compressed = 0, left_out = 0;
    ct_compress_opts o = {cj, cl, label, force, n_threads, shard_size, show_progress ? compress_progress : NULL, &b,
                          &compressed, &left_out};
    int rc = ct_compress(src, dst, &o, err);
    if (show_progress)
        fputc('\n', stderr);
    if (!rc && !quiet)
        fprintf(stderr, "mkct: wrote %s in %.1fs\n", dst, secs_since(&b.start));
    if (!rc && !quiet && left_out)
        fprintf(stderr, "mkct: note: left out %zu activation or kv-cache scale%s the config does not quantize "
                "with\n", left_out, left_out == 1 ? "" : "s");
    if (!rc && !quiet && !compressed)
        fprintf(stderr, "mkct: note: no weight matched the config's targets (less its ignore list): nothing in "
                "%s is compressed\n", dst);
    if (!rc && verify_after && !(rc = ct_verify(src, dst, err)))
        fprintf(stderr, "mkct: verified %s against %s\n", dst, src);
    return rc;
}

static void progress(void *ctx, uint64_t done, uint64_t total)
{
    struct timespec *start = ctx, now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs = (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
    double rate = secs > 0 ? (double)done / secs : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\rmkct: %6.1f%%  %.1f / %.1f MiB  %.1f MiB/s  ETA %.0fs   ",
            total ? 100.0 * (double)done / (double)total : 100.0, (double)done / 1048576.0,
            (double)total / 1048576.0, rate / 1048576.0, eta);
}

static int run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"format", required_argument, 0, 'f'}, {"config", required_argument, 0, 'c'},
        {"keep-qparams", no_argument, 0, 'k'}, {"force", no_argument, 0, 'F'},
        {"progress", no_argument, 0, 'p'}, {"no-progress", no_argument, 0, 'P'},
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'}, {"sample", required_argument, 0, 'S'},
        {"scheme", required_argument, 0, 's'}, {"bits", required_argument, 0, 'b'},
        {"group-size", required_argument, 0, 'g'}, {"asym", no_argument, 0, 'a'},
        {"actorder", no_argument, 0, 'o'}, {"targets", required_argument, 0, 't'},
        {"ignore", required_argument, 0, 'i'}, {"verify", no_argument, 0, 'v'},
        {"jobs", required_argument, 0, 'j'}, {"shard-size", required_argument, 0, 'z'}, {0, 0, 0, 0},
    };
    /* The compressor allocates and frees tensor-sized buffers once per
     * module: keep freed memory in the heap rather than handing it back to
     * the kernel and faulting it in again for the next tensor. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    struct scheme_opts so = {0};
    int verify = 0;
    const char *format = NULL, *config = NULL;
    int keep = 0, force = 0, c;
    show_progress = isatty(2);
    while ((c = getopt_long(argc, argv, "f:c:s:j:qhV", opts, NULL)) != -1) {
        switch (c) {
        case 'f': format = optarg; break;
        case 'c': config = optarg; break;
        case 'k': keep = 1; break;
        case 'F': force = 1; break;
        case 'p': show_progress = 1; break;
        case 'P': show_progress = 0; break;
        case 'q': quiet = 1; break;
        case 's': so.scheme = optarg; break;
        case 'b': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (end == optarg || *end || n < 1 || n > 8) {
                fprintf(stderr, "mkct: --bits wants 1 to 8, not '%s'\n", optarg);
                return 1;
            }
            so.bits = (int)n;
            break;
        }
        case 'g': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (end == optarg || *end || n == 0 || n < -1 || n > (1L << 30)) {
                fprintf(stderr, "mkct: --group-size wants a number of columns, or -1 for per channel, not '%s'\n",
                        optarg);
                return 1;
            }
            so.group_size = (int)n;
            break;
        }
        case 'a': so.asym = 1; break;
        case 'o': so.actorder = 1; break;
        case 't':
        case 'i':
            if ((c == 't' ? so.ntargets : so.nignore) == 32) {
                fprintf(stderr, "mkct: at most 32 --%s (a regular expression can name many modules)\n",
                        c == 't' ? "targets" : "ignore");
                return 1;
            }
            if (c == 't')
                so.targets[so.ntargets++] = optarg;
            else
                so.ignore[so.nignore++] = optarg;
            break;
        case 'v': verify = 1; break;
        case 'j': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 64) {
                fprintf(stderr, "mkct: -j wants a number of threads from 1 to 64, not '%s'\n", optarg);
                return 1;
            }
            n_threads = (int)n;
            break;
        }
        case 'z':
            if (ct_parse_size(optarg, &shard_size) || shard_size == 0) {
                fprintf(stderr, "mkct: --shard-size wants a size such as 5G, 500M or 1048576, not '%s'\n", optarg);
                return 1;
            }
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("mkct (ctfs) %s\n", PACKAGE_VERSION); return 0;
        case 'S': {
            ct_err err = {0};
            int rc = ct_write_sample(optarg, &err);
            if (rc)
                fprintf(stderr, "mkct: %s\n", err.msg);
            return ct_exit_status(rc);
        }
        default: usage(stderr); return 1;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 1;
    }
    /* DST with a trailing '/' ("dense/") names a directory: the output of a
     * directory source, or of --shard-size; a file source gives a file. */
    char *dst = argv[optind + 1];
    size_t dl = strlen(dst);
    int slash = dl > 1 && dst[dl - 1] == '/';
    while (dl > 1 && dst[dl - 1] == '/')
        dst[--dl] = 0;
    struct stat ssb;
    int src_found = stat(argv[optind], &ssb) == 0, src_dir = src_found && S_ISDIR(ssb.st_mode);
    if (slash && !shard_size && src_found && !src_dir) {
        fprintf(stderr, "mkct: %s/: a directory name, but %s is a file and gives a file: name the output file "
                "(or split it with --shard-size)\n", dst, argv[optind]);
        return 1;
    }
    /* The other way round: a directory's output (or --shard-size's) given
     * a .safetensors file name would be a directory named like a file,
     * which numpy, safetensors and llama.cpp then fail to open. */
    int writes = !verify || so.scheme || format || config;
    if (writes && (src_dir || shard_size) && ct_has_suffix(dst, ".safetensors")) {
        if (shard_size)
            fprintf(stderr, "mkct: %s: a .safetensors file name, but --shard-size writes a directory of shards: "
                    "name the output directory\n", dst);
        else
            fprintf(stderr, "mkct: %s: a .safetensors file name, but %s is a model directory and gives a "
                    "directory (its shards, config.json, ...): name the output directory, or give a shard's "
                    "path as SRC for that shard as a file (config.json beside it is still read)\n", dst,
                    argv[optind]);
        return 1;
    }
    verify_after = verify;
    /* Options that shape a preset config apply only where mkct makes one:
     * --scheme, or a compressed --format without --config. */
    int preset = so.scheme || (format && strcmp(format, "dense") && !config);
    const char *override = so.bits ? "--bits" : so.group_size ? "--group-size" : so.asym ? "--asym"
                         : so.actorder ? "--actorder" : NULL;
    const char *selector = so.ntargets ? "--targets" : so.nignore ? "--ignore" : NULL;
    if (!preset && (override || selector)) {
        fprintf(stderr, "mkct: %s applies with --scheme NAME%s, not %s\n", override ? override : selector,
                override ? " or a quantized --format" : " or a compressed --format",
                config ? "with --config (the config's own targets and ignore lists decide)" : "here");
        return 1;
    }
    if (preset && override && !so.scheme && format) {
        ct_format ff = ct_format_parse(format);
        if (ff == CT_FMT_SPARSE_BITMASK || ff == CT_FMT_SPARSE_24) {
            fprintf(stderr, "mkct: %s applies to a quantization scheme (--scheme NAME), not to --format %s\n",
                    override, format);
            return 1;
        }
    }
    if (verify && !so.scheme && !format && !config) {
        /* check an existing pair: DST against the dense SRC */
        ct_err err = {0};
        int rc = ct_verify(argv[optind], argv[optind + 1], &err);
        if (rc)
            fprintf(stderr, "mkct: %s\n", err.msg);
        else
            fprintf(stderr, "mkct: verified %s against %s\n", argv[optind + 1], argv[optind]);
        return ct_exit_status(rc);
    }
    if (preset) {
        /* a preset scheme, or a sparse format, described as a config */
        char why[256] = "";
        ct_format ff = format ? ct_format_parse(format) : CT_FMT_UNSET;
        if (!so.scheme) {
            /* a quantized format alone: upstream's usual scheme for it */
            so.scheme = ff == CT_FMT_PACK ? "W4A16" : ff == CT_FMT_INT ? "W8A8" : ff == CT_FMT_FLOAT ? "FP8_DYNAMIC"
                      : ff == CT_FMT_NVFP4 ? "NVFP4A16" : NULL;
            if (!so.scheme && ff != CT_FMT_SPARSE_BITMASK && ff != CT_FMT_SPARSE_24) {
                fprintf(stderr, "mkct: --format %s: writing it needs --scheme NAME or --config FILE%s\n", format,
                        ff == CT_FMT_UNKNOWN ? " (and it is not a format mkct knows)" : "");
                return ff == CT_FMT_UNKNOWN ? 1 : 4;
            }
        }
        so.format = format;
        char *text = scheme_config(&so, why, sizeof why);
        if (!text) {
            fprintf(stderr, "mkct: %s\n", why);
            return 1;
        }
        ct_err err = {0};
        int rc = compress(argv[optind], argv[optind + 1], text, strlen(text), "--scheme", force, &err);
        free(text);
        if (rc)
            fprintf(stderr, "mkct: %s\n", err.msg);
        return ct_exit_status(rc);
    }
    if (!format && config) {
        /* compress SRC as the config says */
        ct_err err = {0};
        char *text = NULL;
        size_t len = 0;
        int rc = ct_read_file(config, 64u << 20, &text, &len, &err);
        if (!rc)
            rc = compress(argv[optind], argv[optind + 1], text, len, config, force, &err);
        free(text);
        if (rc)
            fprintf(stderr, "mkct: %s\n", err.msg);
        return ct_exit_status(rc);
    }
    if (!format) {
        fprintf(stderr, "mkct: give --format dense (decompress), or --scheme NAME or --config FILE (compress)\n");
        return 1;
    }
    ct_format f = ct_format_parse(format);
    if (f == CT_FMT_UNKNOWN) {
        fprintf(stderr, "mkct: unknown format '%s'\n", format);
        return 1;
    }
    if (f != CT_FMT_DENSE) {
        fprintf(stderr, "mkct: --format %s needs --scheme NAME or --config FILE\n", format);
        return 1;
    }
    if (shard_size) {
        fprintf(stderr, "mkct: --shard-size applies when compressing; --format dense keeps the source's shards\n");
        return 1;
    }
    const char *src_path = argv[optind];
    ct_err err = {0};
    ct_source *src;
    ct_open_opts oo = {.config_path = config, .keep_qparams = keep};
    int rc = ct_source_open(src_path, &oo, &src, &err);
    if (rc) {
        fprintf(stderr, "mkct: %s\n", err.msg);
        return ct_exit_status(rc);
    }
    if (!quiet)
        fprintf(stderr, "mkct: compression config: %s\n", ct_source_config_origin(src));
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    rc = ct_write_dense(src, dst, force, show_progress ? progress : NULL, &start, &err);
    if (show_progress)
        fputc('\n', stderr);
    ct_source_close(src);
    if (rc) {
        fprintf(stderr, "mkct: %s\n", err.msg);
        return ct_exit_status(rc);
    }
    return 0;
}

/* SIGINT, SIGTERM, SIGHUP (unless ignored): the write in progress fails at its next read or
 * write of a file and removes its temporaries (ct_cancel); then the signal
 * is raised again with its default action, so that the caller sees mkct
 * killed by it, as a shell expects. */
static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
    ct_cancel();
}

int main(int argc, char **argv)
{
    ct_raise_nofile();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old;
        /* an ignored signal stays ignored (nohup, background jobs) */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaction(sigs[i], &sa, NULL);
    }
    int status = run(argc, argv);
    if (got_signal) {
        signal(got_signal, SIG_DFL);
        raise(got_signal);
    }
    return status;
}
