/* Every reference case through the library API: each dense tensor, decoded
 * whole, equals upstream's expected tensor; any byte range decoded alone
 * (random offsets and lengths, single bytes, row-straddling ranges) equals
 * the same slice of the whole; views are byte-valid safetensors. */
#include "config.h"
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tap.h"
#include "testutil.h"
#include "ct/source.h"
#include "ct/view.h"

static glob_t cases;

static const char *refdir(void)
{
    const char *r = getenv("REFVECTORS");
    return r ? r : CT_SRCDIR "/../shared/refvectors";
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { return tu_rnd(&rng_state); }

START_TEST(t_case)
{
    const char *model = cases.gl_pathv[_i];
    char dir[4096], exp_path[4200];
    snprintf(dir, sizeof dir, "%s", model);
    *strrchr(dir, '/') = 0;
    snprintf(exp_path, sizeof exp_path, "%s/expected.safetensors", dir);
    ct_err err = {0};
    ct_source *src = NULL;
    ct_st *exp = NULL;
    ck_assert_msg(ct_source_open(model, NULL, &src, &err) == 0, "%s", err.msg);
    ck_assert_msg(ct_st_open(exp_path, &exp, &err) == 0, "%s", err.msg);
    size_t checked = 0;
    for (size_t i = 0; i < ct_source_ntensors(src); i++) {
        const ct_tensor *t = ct_source_tensor(src, i);
        long j = ct_st_find(exp, t->name);
        ck_assert_msg(j >= 0, "%s: %s not in expected", model, t->name);
        const ct_st_tensor *et = ct_st_get(exp, (size_t)j);
        ck_assert_uint_eq(t->nbytes, et->end - et->begin);
        ck_assert_int_eq(t->dtype, et->dtype);
        unsigned char *want = malloc(t->nbytes + 1), *got = malloc(t->nbytes + 8);
        ck_assert(ct_st_pread(exp, et, 0, t->nbytes, want, &err) == 0);
        ck_assert_msg(ct_source_read(src, i, 0, t->nbytes, got, &err) == 0, "%s", err.msg);
        ck_assert_msg(memcmp(want, got, t->nbytes) == 0, "%s: %s differs", model, t->name);
        /* into a buffer not aligned for the element type (the decoders
         * store whole elements: such a read goes through a temporary) */
        ck_assert_msg(ct_source_read(src, i, 0, t->nbytes, got + 1, &err) == 0, "%s", err.msg);
        ck_assert_msg(memcmp(want, got + 1, t->nbytes) == 0, "%s: %s differs read misaligned", model, t->name);
        /* every single byte alone, for small tensors; random ranges always */
        if (t->nbytes <= 4096)
            for (uint64_t b = 0; b < t->nbytes; b++) {
                unsigned char one;
                ck_assert(ct_source_read(src, i, b, 1, &one, &err) == 0);
                ck_assert_msg(one == want[b], "%s: %s byte %llu", model, t->name, (unsigned long long)b);
            }
        for (int k = 0; k < 300; k++) {
            uint64_t off = rnd() % t->nbytes, len = 1 + rnd() % (t->nbytes - off);
            unsigned char *at = got + (k & 7);   /* buffer alignments 0..7 */
            memset(at, 0xa5, len);
            ck_assert_msg(ct_source_read(src, i, off, len, at, &err) == 0, "%s", err.msg);
            ck_assert_msg(memcmp(at, want + off, len) == 0, "%s: %s range %llu+%llu", model, t->name,
                          (unsigned long long)off, (unsigned long long)len);
        }
        /* reads past the end are refused */
        ck_assert_int_eq(ct_source_read(src, i, t->nbytes, 1, got, &err), CT_EUSAGE);
        free(want);
        free(got);
        checked++;
    }
    /* the dense view parses as valid safetensors with the same tensors */
    for (size_t s = 0; s < ct_source_nshards(src); s++) {
        ct_view *v;
        ck_assert(ct_view_new(src, s, &v, &err) == 0);
        uint64_t size = ct_view_size(v);
        char *bytes = malloc(size);
        ck_assert(ct_view_read(v, 0, size, bytes, &err) == 0);
        uint64_t hlen;
        memcpy(&hlen, bytes, 8);
        ck_assert_uint_eq(hlen % 8, 0);
        ct_st *parsed;
        ck_assert_msg(ct_st_parse("view", bytes + 8, hlen, size, &parsed, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(ct_st_count(parsed), ct_view_count(v));
        ck_assert_str_eq(ct_st_meta_get(parsed, "format"), "pt");
        ct_st_close(parsed);
        free(bytes);
        ct_view_free(v);
    }
    ck_assert_uint_eq(checked, ct_st_count(exp) - (ct_st_find(exp, "model.layers.0.mlp.down_proj.weight_q") >= 0)
                                   - (ct_st_find(exp, "model.layers.0.mlp.down_proj.weight_zero_point_unpacked") >= 0));
    ct_st_close(exp);
    ct_source_close(src);
}
END_TEST

int main(void)
{
    char pat[4200];
    snprintf(pat, sizeof pat, "%s/ct-*/*/model.safetensors", refdir());
    int g = glob(pat, 0, NULL, &cases);
    snprintf(pat, sizeof pat, "%s/ct-*/*/sharded", refdir());
    if (g == 0)
        glob(pat, GLOB_APPEND, NULL, &cases);   /* directory sources: shards + index */
    if (g != 0 || cases.gl_pathc == 0) {
        printf("1..0 # SKIP reference vectors not found at %s\n", refdir());
        return 0;
    }
    Suite *s = suite_create("refvectors");
    TCase *tc = tcase_create("decode");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, t_case, 0, (int)cases.gl_pathc);
    suite_add_tcase(s, tc);
    int rc = ct_run_suite(s);
    globfree(&cases);
    return rc;
}
