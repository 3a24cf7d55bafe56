/* Compression configs: which modules a config's targets and ignore lists
 * select.  The expected matches were printed by Python 3.11's re.match,
 * which upstream uses; each pattern is also checked compiled (as parsed
 * with a config) and uncompiled (ct_target_match) alike. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tap.h"
#include "ct/config.h"

static const char *pats[] = {
    "re:.*mlp\\.gate$",
    "re:model\\.layers\\.\\d+\\.mlp\\.experts\\.\\d+\\..*?_proj",
    "re:.*[*?]x",
    "re:(?:model\\.)?lm_head",
    "re:.*layers\\.(1[0-9]|2[0-3])\\..*",
    "re:.*\\.(q|k|v)_proj$",
    "re:vision.+?tower",
    "re:.*a{2,3}?b",
    "re:[]a]+z",
    "re:\\w+\\s?\\.\\S+$",
};
static const char *mods[] = {
    "model.layers.0.mlp.gate",
    "model.layers.0.mlp.gate_proj",
    "model.layers.3.mlp.experts.17.up_proj",
    "model.layers.x.mlp.experts.1.up_proj",
    "a*x",
    "a?x",
    "ax",
    "lm_head",
    "model.lm_head",
    "model.model.lm_head",
    "model.layers.15.self_attn.q_proj",
    "model.layers.24.self_attn.q_proj",
    "model.layers.9.self_attn.k_proj",
    "model.layers.9.self_attn.o_proj",
    "vision_tower",
    "visiontower",
    "aab",
    "ab",
    "xaaab",
    "]]az",
    "aaz",
    "bz",
    "name.x",
    "name .x",
    "name. x",
};
/* want[p][m]: Python 3.11's re.match(pats[p] without "re:", mods[m]) matched */
static const char *want[] = {
    "1000000000000000000000000",
    "0010000000000000000000000",
    "0000110000000000000000000",
    "0000000110000000000000000",
    "0000000000100000000000000",
    "0000000000111000000000000",
    "0000000000000010000000000",
    "0000000000000000101000000",
    "0000000000000000000110000",
    "1111000011111100000000110",
};

#define N(a) (sizeof a / sizeof a[0])

/* s with its backslashes doubled, as in a JSON string */
static void json_escape(const char *s, char *out, size_t cap)
{
    size_t k = 0;
    for (; *s && k + 2 < cap; s++) {
        if (*s == '\\')
            out[k++] = '\\';
        out[k++] = *s;
    }
    out[k] = 0;
}

/* A config whose one group targets target and whose ignore list holds
 * ignore. */
static ct_config *config_for(const char *target, const char *ignore)
{
    char json[1024], t[300], ig[300];
    json_escape(target, t, sizeof t);
    json_escape(ignore, ig, sizeof ig);
    snprintf(json, sizeof json,
             "{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\","
             " \"ignore\": [\"%s\"], \"config_groups\": {\"g\": {\"targets\": [\"%s\"],"
             " \"weights\": {\"num_bits\": 4, \"strategy\": \"channel\"}}}}}", ig, t);
    ct_config *c = NULL;
    ct_err err = {0};
    ck_assert_msg(ct_config_parse(json, strlen(json), "test", &c, &err) == 0, "%s", err.msg);
    ck_assert_ptr_nonnull(c);
    return c;
}

START_TEST(t_patterns_match_as_python)
{
    ck_assert_uint_eq(N(pats), N(want));
    for (size_t p = 0; p < N(pats); p++) {
        ck_assert_uint_eq(strlen(want[p]), N(mods));
        ct_config *targets = config_for(pats[p], "nothing");
        ct_config *ignores = config_for("Linear", pats[p]);
        ck_assert_ptr_null(ct_config_bad_pattern(targets));
        for (size_t m = 0; m < N(mods); m++) {
            int w = want[p][m] == '1';
            ck_assert_msg(ct_target_match(pats[p], mods[m], 1) == w, "%s on %s: want %d", pats[p], mods[m], w);
            ck_assert_msg((ct_config_group_for(targets, mods[m]) != NULL) == w, "targets %s on %s", pats[p], mods[m]);
            ck_assert_msg((ct_config_group_for(ignores, mods[m]) == NULL) == w, "ignore %s on %s", pats[p], mods[m]);
        }
        ct_config_free(targets);
        ct_config_free(ignores);
    }
}
END_TEST

START_TEST(t_exact_names_and_classes)
{
    ct_config *c = config_for("model.layers.0.mlp.up_proj", "lm_head");
    ck_assert_ptr_nonnull(ct_config_group_for(c, "model.layers.0.mlp.up_proj"));
    ck_assert_ptr_null(ct_config_group_for(c, "model.layers.0.mlp.up_proj2"));
    ck_assert_ptr_null(ct_config_group_for(c, "model.layers.0.mlp"));
    ct_config_free(c);
    /* a class name targets every module; in an ignore list it ignores none */
    c = config_for("Linear", "Linear");
    ck_assert_ptr_nonnull(ct_config_group_for(c, "anything.at.all"));
    ct_config_free(c);
    c = config_for("Linear", "lm_head");
    ck_assert_ptr_null(ct_config_group_for(c, "lm_head"));
    ck_assert_ptr_nonnull(ct_config_group_for(c, "model.lm_head"));
    ct_config_free(c);
}
END_TEST

/* Patterns this library cannot match are reported (a writer refuses them)
 * and match nothing (readers go on). */
START_TEST(t_bad_patterns)
{
    static const char *bad[] = {"re:(?!experts).*", "re:(?i)LM_HEAD", "re:[abc", "re:a**(", "re:(?P<x>a)"};
    for (size_t i = 0; i < N(bad); i++) {
        ct_config *c = config_for("Linear", bad[i]);
        ck_assert_ptr_nonnull(ct_config_bad_pattern(c));
        ck_assert_str_eq(ct_config_bad_pattern(c), bad[i]);
        ck_assert_ptr_nonnull(ct_config_group_for(c, "lm_head"));   /* not ignored */
        ck_assert_int_eq(ct_target_match(bad[i], "lm_head", 1), -1);
        ct_config_free(c);
        c = config_for(bad[i], "lm_head");
        ck_assert_str_eq(ct_config_bad_pattern(c), bad[i]);
        ck_assert_ptr_null(ct_config_group_for(c, "experts"));
        ct_config_free(c);
    }
    ct_config *c = config_for("re:.*", "re:x");
    ck_assert_ptr_null(ct_config_bad_pattern(c));
    ct_config_free(c);
}
END_TEST

/* The sparsity config's own lists are compiled and checked too. */
START_TEST(t_sparsity_lists)
{
    const char *json = "{\"sparsity_config\": {\"format\": \"sparse-bitmask\", \"targets\": [\"re:.*proj$\"],"
                       " \"ignore\": [\"re:.*(?=x)\"]}}";
    ct_config *c = NULL;
    ct_err err = {0};
    ck_assert_int_eq(ct_config_parse(json, strlen(json), "test", &c, &err), 0);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->n_sparse_targets, 1);
    ck_assert_int_eq(ct_target_match_rx(c->sparse_targets[0], c->sparse_targets_rx[0], "a.q_proj", 1), 1);
    ck_assert_int_eq(ct_target_match_rx(c->sparse_targets[0], c->sparse_targets_rx[0], "a.q_proj.x", 1), 0);
    ck_assert_str_eq(ct_config_bad_pattern(c), "re:.*(?=x)");
    ct_config_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("targets");
    tcase_add_test(tc, t_patterns_match_as_python);
    tcase_add_test(tc, t_exact_names_and_classes);
    tcase_add_test(tc, t_bad_patterns);
    tcase_add_test(tc, t_sparsity_lists);
    suite_add_tcase(s, tc);
    return ct_run_suite(s);
}
