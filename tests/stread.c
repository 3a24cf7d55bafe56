/* stread SRC: for every dense tensor of SRC, random byte ranges and single
 * bytes decoded alone equal the same slice of the whole decode (the daemon
 * depends on it).  Exit 0 if all agree, 1 otherwise, 2 on error. */
#include "config.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ct/source.h"

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    ct_err err = {0};
    ct_source *s;
    if (ct_source_open(argv[1], NULL, &s, &err)) {
        fprintf(stderr, "stread: %s\n", err.msg);
        return 2;
    }
    uint64_t x = 0x243f6a8885a308d3ull, checks = 0;
    int bad = 0;
    for (size_t i = 0; i < ct_source_ntensors(s) && !bad; i++) {
        const ct_tensor *t = ct_source_tensor(s, i);
        if (!t->nbytes)
            continue;
        unsigned char *all = malloc(t->nbytes), *part = malloc(t->nbytes);
        if (ct_source_read(s, i, 0, t->nbytes, all, &err)) {
            fprintf(stderr, "stread: %s\n", err.msg);
            return 2;
        }
        for (int k = 0; k < 400 && !bad; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            uint64_t off = x % t->nbytes, len = k < 100 ? 1 : 1 + (x >> 32) % (t->nbytes - off);
            if (ct_source_read(s, i, off, len, part, &err) || memcmp(part, all + off, len)) {
                printf("%s: range %" PRIu64 "+%" PRIu64 " differs (%s)\n", t->name, off, len, err.msg);
                bad = 1;
            }
            checks++;
        }
        free(all);
        free(part);
    }
    if (!bad)
        printf("ok: %" PRIu64 " partial reads agree\n", checks);
    ct_source_close(s);
    return bad;
}
