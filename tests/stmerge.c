/* stmerge OUT IN...: write the tensors of several safetensors files into
 * one (reference layout), to compare sharded output as a whole. */
#include "config.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ct/st.h"
#include "ct/util.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: stmerge OUT IN...\n");
        return 2;
    }
    ct_err err = {0};
    int nin = argc - 2;
    ct_st **in = calloc((size_t)nin, sizeof *in);
    size_t total = 0;
    for (int i = 0; i < nin; i++) {
        if (ct_st_open(argv[i + 2], &in[i], &err)) {
            fprintf(stderr, "stmerge: %s\n", err.msg);
            return 2;
        }
        total += ct_st_count(in[i]);
    }
    ct_st_entry *e = calloc(total + 1, sizeof *e);
    size_t k = 0;
    for (int i = 0; i < nin; i++)
        for (size_t j = 0; j < ct_st_count(in[i]); j++, k++) {
            const ct_st_tensor *t = ct_st_get(in[i], j);
            e[k].name = t->name;
            e[k].dtype = t->dtype;
            e[k].ndim = t->ndim;
            memcpy(e[k].shape, t->shape, sizeof e[k].shape);
            e[k].nbytes = t->end - t->begin;
            e[k].user = (size_t)i << 32 | j;
        }
    char *hdr;
    size_t hlen;
    if (ct_st_layout(e, total, NULL, NULL, 0, &hdr, &hlen, &err)) {
        fprintf(stderr, "stmerge: %s\n", err.msg);
        return 2;
    }
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ct_write_full(fd, hdr, hlen, argv[1], &err)) {
        fprintf(stderr, "stmerge: cannot write %s\n", argv[1]);
        return 2;
    }
    for (size_t i = 0; i < total; i++) {
        const ct_st *st = in[e[i].user >> 32];
        const ct_st_tensor *t = ct_st_get(st, e[i].user & 0xffffffffu);
        char *buf = malloc(e[i].nbytes + 1);
        if (!buf || ct_st_pread(st, t, 0, e[i].nbytes, buf, &err) || ct_write_full(fd, buf, e[i].nbytes, argv[1], &err)) {
            fprintf(stderr, "stmerge: %s\n", err.msg);
            return 2;
        }
        free(buf);
    }
    close(fd);
    free(hdr);
    free(e);
    for (int i = 0; i < nin; i++)
        ct_st_close(in[i]);
    free(in);
    return 0;
}
