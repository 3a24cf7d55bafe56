/* The writer: compress a safetensors file (dense, or compressed: then it is
 * converted) with the input's config, then open and decode the output. */
#include "common.h"
#include "ct/encode.h"
#include "ct/source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *cfg, *stb;
    size_t cl, sl;
    if (!fuzz_split(data, size, &cfg, &cl, &stb, &sl))
        return 0;
    const char *dir = fuzz_dir();
    char in[4200], out[4200];
    snprintf(in, sizeof in, "%s/in.safetensors", dir);
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    fuzz_write(in, stb, sl);
    ct_compress_opts o = {.config_json = (const char *)cfg, .config_len = cl, .config_label = "fuzz",
                          .force = 1, .threads = 1};
    ct_err err = {0};
    if (ct_compress(in, out, &o, &err) == 0) {
        ct_source *s;
        if (ct_source_open(out, NULL, &s, &err) == 0) {
            for (size_t i = 0; i < ct_source_ntensors(s); i++) {
                const ct_tensor *t = ct_source_tensor(s, i);
                char *buf = malloc(t->nbytes + 1);
                if (!buf)
                    abort();
                ct_source_read(s, i, 0, t->nbytes, buf, &err);
                free(buf);
            }
            ct_source_close(s);
        }
        unlink(out);
    }
    return 0;
}
