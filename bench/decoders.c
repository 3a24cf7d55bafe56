/* Decoder throughput: dense output GB/s on one core for the main formats,
 * each next to memcpy of the same number of bytes measured in the same run.
 *
 * Synthetic checkpoints are written to a temporary directory (so they sit
 * in the page cache, as a mounted model would) and decoded the way the
 * daemon does: ct_source_read of 1 MiB blocks, each into the next slot of a
 * 256 MiB ring (the block cache); the memcpy baseline copies the same
 * number of bytes from a DRAM buffer into the same ring.
 * Each figure is the best of several passes, decode and memcpy passes
 * interleaved (the machine is shared and noisy); ratios are what the
 * targets are about.
 *   usage: bench/decoders [ROWS COLS [FORMAT]]   (default 4096 8192, all;
 *          FORMAT one of bitmask int4 int8 fp8 nvfp4) */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include "ct/source.h"
#include "ct/st.h"
#include "ct/util.h"

#define BLOCK ((uint64_t)1 << 20)
#define PASSES 9
#define RING ((uint64_t)256 << 20)
static char *ring;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct { const char *name; ct_dtype dt; int ndim; int64_t shape[2]; void *data; } piece;

static void write_st(const char *path, piece *p, size_t n, const char *meta)
{
    ct_st_entry e[8] = {{0}};
    for (size_t i = 0; i < n; i++) {
        e[i].name = p[i].name;
        e[i].dtype = p[i].dt;
        e[i].ndim = p[i].ndim;
        memcpy(e[i].shape, p[i].shape, sizeof p[i].shape);
        ct_tensor_nbytes(p[i].dt, p[i].ndim, p[i].shape, NULL, &e[i].nbytes, NULL);
        e[i].user = i;
    }
    const char *mk[1] = {"quantization_config"}, *mv[1] = {meta};
    char *hdr;
    size_t hl;
    ct_st_layout(e, n, mk, mv, meta ? 1 : 0, &hdr, &hl, NULL);
    FILE *f = fopen(path, "wb");
    fwrite(hdr, 1, hl, f);
    for (size_t i = 0; i < n; i++)
        fwrite(p[e[i].user].data, 1, e[i].nbytes, f);
    fclose(f);
    free(hdr);
}

static void *rand_bytes(size_t n)
{
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(rnd() >> 56);
    return b;
}

static uint16_t *bf16_scales(size_t n)
{
    uint16_t *s = malloc(n * 2);
    for (size_t i = 0; i < n; i++)
        s[i] = (uint16_t)(0x3c00 + rnd() % 0x0400);   /* ~2^-7 .. 2^-6 */
    return s;
}

/* Dense GB/s of one pass decoding the whole tensor in BLOCK reads. */
static double decode_pass(ct_source *s, long t, uint64_t n)
{
    ct_err err = {0};
    double t0 = now();
    for (uint64_t off = 0; off < n; off += BLOCK) {
        uint64_t len = n - off < BLOCK ? n - off : BLOCK;
        if (ct_source_read(s, (size_t)t, off, len, ring + off % RING, &err)) {
            fprintf(stderr, "bench: %s\n", err.msg);
            exit(1);
        }
    }
    return (double)n / (now() - t0) / 1e9;
}

/* GB/s of one memcpy pass of n bytes from src into the ring. */
static double memcpy_pass(const char *src, uint64_t n)
{
    double t0 = now();
    for (uint64_t off = 0; off < n; off += BLOCK)
        memcpy(ring + off % RING, src + off, n - off < BLOCK ? n - off : BLOCK);
    __asm__ volatile("" ::"r"(ring) : "memory");
    return (double)n / (now() - t0) / 1e9;
}

/* Best of PASSES for the decode and for memcpy of the same byte count,
 * their passes interleaved so that both meet the same noise. */
static void bench_pair(const char *path, double *dec, double *mem)
{
    ct_source *s;
    ct_err err = {0};
    if (ct_source_open(path, NULL, &s, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    long t = ct_source_find(s, "m.weight");
    if (t < 0) {
        fprintf(stderr, "bench: no m.weight in %s\n", path);
        exit(1);
    }
    uint64_t n = ct_source_tensor(s, (size_t)t)->nbytes;
    char *src = malloc(n);
    memset(src, 1, n);
    decode_pass(s, t, n);   /* warms the page cache and the scratch */
    *dec = *mem = 0;
    for (int p = 0; p < PASSES; p++) {
        double m = memcpy_pass(src, n), d = decode_pass(s, t, n);
        if (m > *mem)
            *mem = m;
        if (d > *dec)
            *dec = d;
    }
    free(src);
    ct_source_close(s);
}


int main(int argc, char **argv)
{
    int64_t R = argc > 2 ? atoll(argv[1]) : 4096, C = argc > 2 ? atoll(argv[2]) : 8192;
    /* aligned like the daemon's cache blocks (carved from 2 MiB slabs) */
    if (posix_memalign((void **)&ring, 2u << 20, RING))
        return 1;
#ifdef MADV_HUGEPAGE
    madvise(ring, RING, MADV_HUGEPAGE);   /* as the cache's slabs are */
#endif
    memset(ring, 0, RING);   /* fault the ring in once, as a warm cache would be */
    char dir[] = "/tmp/ct-bench.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[256];
    struct { const char *label; double target; } rows[5] = {
        {"sparse-bitmask BF16 50%", 0.7}, {"pack-quantized int4 g128 -> BF16", 0.7},
        {"int-quantized int8 channel -> BF16", 0.5}, {"float-quantized FP8 channel -> BF16", 0.5},
        {"nvfp4-pack-quantized -> BF16", 0.5},
    };
    int64_t shape2[2] = {R, C};

    /* 1. bitmask, 50% random density */
    {
        size_t mb = (size_t)(R * ((C + 7) / 8));
        uint8_t *mask = rand_bytes(mb);
        int64_t *ro = malloc((size_t)R * 8);
        uint64_t nnz = 0;
        for (int64_t r = 0; r < R; r++) {
            ro[r] = (int64_t)nnz;
            for (int64_t k = 0; k < (C + 7) / 8; k++)
                nnz += (uint64_t)__builtin_popcount(mask[r * ((C + 7) / 8) + k]);
        }
        void *vals = rand_bytes(nnz * 2);
        piece p[] = {{"m.compressed", CT_BF16, 1, {(int64_t)nnz}, vals}, {"m.bitmask", CT_U8, 2, {R, (C + 7) / 8}, mask},
                     {"m.shape", CT_I64, 1, {2}, shape2}, {"m.row_offsets", CT_I64, 1, {R}, ro}};
        snprintf(path, sizeof path, "%s/bitmask.safetensors", dir);
        write_st(path, p, 4, NULL);
        free(mask); free(ro); free(vals);
    }
    /* 2. int4 group 128 */
    {
        void *pk = rand_bytes((size_t)(R * C / 2));
        uint16_t *sc = bf16_scales((size_t)(R * C / 128));
        piece p[] = {{"m.weight_packed", CT_I32, 2, {R, C / 8}, pk}, {"m.weight_scale", CT_BF16, 2, {R, C / 128}, sc},
                     {"m.weight_shape", CT_I64, 1, {2}, shape2}};
        snprintf(path, sizeof path, "%s/int4.safetensors", dir);
        write_st(path, p, 3, "{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\",\"version\":\"0.18.0\","
                             "\"config_groups\":{\"g\":{\"targets\":[\"Linear\"],\"weights\":{\"num_bits\":4,\"group_size\":128}}}}");
        free(pk); free(sc);
    }
    /* 3. int8 channel */
    {
        void *q = rand_bytes((size_t)(R * C));
        uint16_t *sc = bf16_scales((size_t)R);
        piece p[] = {{"m.weight", CT_I8, 2, {R, C}, q}, {"m.weight_scale", CT_BF16, 2, {R, 1}, sc}};
        snprintf(path, sizeof path, "%s/int8.safetensors", dir);
        write_st(path, p, 2, NULL);
        free(q); free(sc);
    }
    /* 4. fp8 channel (NaN codes avoided) */
    {
        uint8_t *q = rand_bytes((size_t)(R * C));
        for (int64_t i = 0; i < R * C; i++)
            if ((q[i] & 0x7f) == 0x7f)
                q[i] ^= 1;
        uint16_t *sc = bf16_scales((size_t)R);
        piece p[] = {{"m.weight", CT_F8_E4M3, 2, {R, C}, q}, {"m.weight_scale", CT_BF16, 2, {R, 1}, sc}};
        snprintf(path, sizeof path, "%s/fp8.safetensors", dir);
        write_st(path, p, 2, NULL);
        free(q); free(sc);
    }
    /* 5. nvfp4 */
    {
        void *pk = rand_bytes((size_t)(R * C / 2));
        uint8_t *sc = rand_bytes((size_t)(R * C / 16));
        for (int64_t i = 0; i < R * C / 16; i++)
            sc[i] = (uint8_t)(0x30 + sc[i] % 0x20);
        float g = 448.0f * 6.0f / 3.0f;
        piece p[] = {{"m.weight_packed", CT_U8, 2, {R, C / 2}, pk}, {"m.weight_scale", CT_F8_E4M3, 2, {R, C / 16}, sc},
                     {"m.weight_global_scale", CT_F32, 1, {1}, &g}};
        snprintf(path, sizeof path, "%s/nvfp4.safetensors", dir);
        write_st(path, p, 3, NULL);
        free(pk); free(sc);
    }
    static const char *files[5] = {"bitmask", "int4", "int8", "fp8", "nvfp4"};
    printf("decoder benchmark: %lldx%lld tensor, 1 MiB blocks, best of %d passes, one core\n", (long long)R,
           (long long)C, PASSES);
    printf("%-38s %10s %10s %7s %7s\n", "format", "GB/s", "memcpy", "ratio", "target");
    int missed = 0;
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, files[i]);
        if (argc > 3 && strcmp(argv[3], files[i])) {
            unlink(path);
            continue;
        }
        double d, m;
        bench_pair(path, &d, &m);
        double ratio = d / m;
        missed += ratio < rows[i].target;
        printf("%-38s %10.2f %10.2f %6.2fx %6.1fx%s\n", rows[i].label, d, m, ratio, rows[i].target,
               ratio < rows[i].target ? "  MISSED" : "");
        unlink(path);
    }
    rmdir(dir);
    return missed ? 2 : 0;
}
