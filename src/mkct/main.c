/* mkct: convert a checkpoint to another compressed-tensors format.
 * This front end parses options and reports; the work is in libct. */
#include "config.h"
#include <getopt.h>
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
#include "ct/source.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: mkct [options] SRC DST\n"
            "Convert a safetensors checkpoint (a file, or a model directory) to another format.\n"
            "\n"
            "  -f, --format FMT     output format: dense (decompress), or a compressed-tensors format\n"
            "  -c, --config FILE    without --format: compress SRC (a .safetensors file holding the\n"
            "                       dense weights and their weight_scale/zero points) as FILE says;\n"
            "                       with --format dense: the source's compression config (default:\n"
            "                       config.json next to SRC, then the file's __metadata__, then inference)\n"
            "      --keep-qparams   keep quantization parameters (weight_scale, ...) in dense output\n"
            "      --force          replace DST if it exists\n"
            "      --progress       show progress (default when stderr is a terminal)\n"
            "      --no-progress    do not show progress\n"
            "  -q, --quiet          no notes on stderr\n"
            "      --sample DIR     write the built-in sample: a small llama-shaped compressed\n"
            "                       checkpoint in DIR/compressed and its dense tensors in\n"
            "                       DIR/reference.safetensors\n"
            "  -h, --help           this help\n"
            "  -V, --version        print the version\n"
            "\n"
            "Exit status: 0 ok, 1 usage, 2 I/O error, 3 malformed input, 4 unsupported format,\n"
            "5 DST exists, 6 out of memory.\n");
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

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"format", required_argument, 0, 'f'}, {"config", required_argument, 0, 'c'},
        {"keep-qparams", no_argument, 0, 'k'}, {"force", no_argument, 0, 'F'},
        {"progress", no_argument, 0, 'p'}, {"no-progress", no_argument, 0, 'P'},
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'}, {"sample", required_argument, 0, 'S'}, {0, 0, 0, 0},
    };
    const char *format = NULL, *config = NULL;
    int keep = 0, force = 0, show_progress = isatty(2), quiet = 0, c;
    while ((c = getopt_long(argc, argv, "f:c:qhV", opts, NULL)) != -1) {
        switch (c) {
        case 'f': format = optarg; break;
        case 'c': config = optarg; break;
        case 'k': keep = 1; break;
        case 'F': force = 1; break;
        case 'p': show_progress = 1; break;
        case 'P': show_progress = 0; break;
        case 'q': quiet = 1; break;
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
    if (!format && config) {
        /* compress SRC as the config says */
        ct_err err = {0};
        char *text = NULL;
        size_t len = 0;
        int rc = ct_read_file(config, 64u << 20, &text, &len, &err);
        if (!rc)
            rc = ct_compress_file(argv[optind], argv[optind + 1], text, len, config, force, &err);
        free(text);
        if (rc)
            fprintf(stderr, "mkct: %s\n", err.msg);
        return ct_exit_status(rc);
    }
    if (!format) {
        fprintf(stderr, "mkct: give --format dense (decompress) or --config FILE (compress as it says)\n");
        return 1;
    }
    ct_format f = ct_format_parse(format);
    if (f == CT_FMT_UNKNOWN) {
        fprintf(stderr, "mkct: unknown format '%s'\n", format);
        return 1;
    }
    if (f != CT_FMT_DENSE) {
        fprintf(stderr, "mkct: --format %s needs a compression config: use --config FILE (presets and "
                        "calibration are not implemented in this version)\n", format);
        return 4;
    }
    const char *src_path = argv[optind], *dst = argv[optind + 1];
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
