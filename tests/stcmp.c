/* stcmp OUT EXPECTED: compare the tensors of a decoded checkpoint with the
 * reference decoder's output.  Every tensor of EXPECTED except the
 * reference's extra diagnostics (*.weight_q, *.weight_zero_point_unpacked)
 * must be in OUT with the same dtype, shape and bytes, and OUT must hold
 * nothing else.  Exit 0 when equal, 1 with a report otherwise, 2 on error. */
#include "config.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ct/st.h"

static int is_extra(const char *n)
{
    size_t l = strlen(n);
    return (l > 9 && !strcmp(n + l - 9, ".weight_q"))
           || (l > 27 && !strcmp(n + l - 27, ".weight_zero_point_unpacked"));
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: stcmp OUT EXPECTED\n");
        return 2;
    }
    ct_err err = {0};
    ct_st *a, *b;
    if (ct_st_open(argv[1], &a, &err) || ct_st_open(argv[2], &b, &err)) {
        fprintf(stderr, "stcmp: %s\n", err.msg);
        return 2;
    }
    int bad = 0;
    size_t compared = 0;
    for (size_t i = 0; i < ct_st_count(b); i++) {
        const ct_st_tensor *tb = ct_st_get(b, i);
        if (is_extra(tb->name))
            continue;
        long j = ct_st_find(a, tb->name);
        if (j < 0) {
            printf("missing: %s\n", tb->name);
            bad = 1;
            continue;
        }
        const ct_st_tensor *ta = ct_st_get(a, (size_t)j);
        if (ta->dtype != tb->dtype || ta->ndim != tb->ndim
            || memcmp(ta->shape, tb->shape, sizeof(int64_t) * (size_t)ta->ndim)) {
            printf("dtype/shape differ: %s (%s vs %s)\n", tb->name, ct_dtype_name(ta->dtype), ct_dtype_name(tb->dtype));
            bad = 1;
            continue;
        }
        uint64_t n = tb->end - tb->begin;
        unsigned char *x = malloc(n + 1), *y = malloc(n + 1);
        if (!x || !y || ct_st_pread(a, ta, 0, n, x, &err) || ct_st_pread(b, tb, 0, n, y, &err)) {
            fprintf(stderr, "stcmp: %s\n", err.msg);
            return 2;
        }
        for (uint64_t k = 0; k < n; k++)
            if (x[k] != y[k]) {
                printf("bytes differ: %s at byte %" PRIu64 " (%02x vs %02x)\n", tb->name, k, x[k], y[k]);
                bad = 1;
                break;
            }
        free(x);
        free(y);
        compared++;
    }
    for (size_t i = 0; i < ct_st_count(a); i++) {
        const ct_st_tensor *ta = ct_st_get(a, i);
        if (ct_st_find(b, ta->name) < 0) {
            printf("unexpected: %s\n", ta->name);
            bad = 1;
        }
    }
    if (!bad)
        printf("ok: %zu tensors equal\n", compared);
    ct_st_close(a);
    ct_st_close(b);
    return bad;
}
