/* Shared by the libFuzzer harnesses (tests/fuzz/run.sh builds and runs them).
 * An input is a little-endian u16 length L, L bytes of config.json, then a
 * safetensors file; each harness writes them into a directory of its own. */
#ifndef CT_FUZZ_COMMON_H
#define CT_FUZZ_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A directory for this process's files: $CT_FUZZ_DIR (run.sh makes one) or /tmp. */
static const char *fuzz_dir(void)
{
    static char dir[4096];
    if (!dir[0]) {
        const char *base = getenv("CT_FUZZ_DIR");
        snprintf(dir, sizeof dir, "%s/run.%d", base ? base : "/tmp", (int)getpid());
        if (mkdir(dir, 0755) != 0 && access(dir, W_OK) != 0)
            abort();
    }
    return dir;
}

static void fuzz_write(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (n && fwrite(p, 1, n, f) != n)
        abort();
    fclose(f);
}

/* Split an input; 0 if too short. */
static int fuzz_split(const uint8_t *data, size_t size, const uint8_t **cfg, size_t *cl,
                      const uint8_t **st, size_t *sl)
{
    if (size < 2)
        return 0;
    size_t l = data[0] | (size_t)data[1] << 8;
    if (l > size - 2)
        l = size - 2;
    *cfg = data + 2;
    *cl = l;
    *st = data + 2 + l;
    *sl = size - 2 - l;
    return 1;
}
#endif
