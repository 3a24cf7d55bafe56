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

/* Integer fields of the quantization args: integral numbers as pydantic's
 * int takes them (4 and 4.0), and a clear error, never an undefined
 * conversion, for NaN, infinities, fractions and values out of range
 * (the config parser reads NaN and Infinity, as Python's json does). */
static int parse_weights(const char *weights, ct_config **c, ct_err *err)
{
    char json[1024];
    snprintf(json, sizeof json,
             "{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\","
             " \"config_groups\": {\"g\": {\"targets\": [\"Linear\"], \"weights\": {%s}}}}}", weights);
    *c = NULL;
    memset(err, 0, sizeof *err);
    return ct_config_parse(json, strlen(json), "test", c, err);
}

START_TEST(t_integer_fields)
{
    static const struct { const char *w; int64_t bits, group, b0, b1; } good[] = {
        {"\"num_bits\": 4, \"group_size\": 128", 4, 128, 0, 0},
        {"\"num_bits\": 4.0, \"group_size\": 128.0", 4, 128, 0, 0},
        {"\"num_bits\": 8, \"group_size\": -1", 8, -1, 0, 0},
        {"\"num_bits\": null, \"group_size\": null", 8, 0, 0, 0},
        {"\"num_bits\": 8, \"block_structure\": [128, 64.0]", 8, 0, 128, 64},
        {"\"num_bits\": 8, \"block_structure\": \"32x16\"", 8, 0, 32, 16},
    };
    static const struct { const char *w, *msg; } bad[] = {
        {"\"num_bits\": NaN", "num_bits must be an integer in 1..32"},
        {"\"num_bits\": Infinity", "num_bits must be an integer in 1..32"},
        {"\"num_bits\": 1e300", "num_bits must be an integer in 1..32"},
        {"\"num_bits\": 4.5", "num_bits must be an integer in 1..32"},
        {"\"num_bits\": 33", "num_bits must be an integer in 1..32"},
        {"\"num_bits\": \"4\"", "num_bits must be an integer in 1..32"},
        {"\"group_size\": NaN", "group_size must be an integer"},
        {"\"group_size\": -Infinity", "group_size must be an integer"},
        {"\"group_size\": 1e300", "group_size must be an integer"},
        {"\"group_size\": 127.5", "group_size must be an integer"},
        {"\"group_size\": \"128\"", "group_size must be an integer"},
        {"\"block_structure\": [NaN, 128]", "block_structure must be two non-negative integers"},
        {"\"block_structure\": [128, Infinity]", "block_structure must be two non-negative integers"},
        {"\"block_structure\": [128, -1]", "block_structure must be two non-negative integers"},
        {"\"block_structure\": [\"a\", 1]", "block_structure must be two non-negative integers"},
    };
    ct_config *c;
    ct_err err;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ck_assert_msg(parse_weights(good[i].w, &c, &err) == 0, "%s: %s", good[i].w, err.msg);
        const ct_qargs *a = &c->groups[0].weights;
        ck_assert_msg(a->num_bits == good[i].bits && a->group_size == good[i].group && a->block[0] == good[i].b0
                      && a->block[1] == good[i].b1, "%s: bits %d group %lld block %lldx%lld", good[i].w, a->num_bits,
                      (long long)a->group_size, (long long)a->block[0], (long long)a->block[1]);
        ct_config_free(c);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(parse_weights(bad[i].w, &c, &err) == CT_EFORMAT, "%s: accepted", bad[i].w);
        ck_assert_ptr_null(c);
        ck_assert_msg(strstr(err.msg, bad[i].msg) != NULL, "%s: '%s'", bad[i].w, err.msg);
    }
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
    tcase_add_test(tc, t_integer_fields);
    suite_add_tcase(s, tc);
    return ct_run_suite(s);
}
