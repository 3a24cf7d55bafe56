/* Malformed checkpoints: each is rejected, at open or when the affected
 * tensor is decoded, with the right code and a message naming the tensor
 * or file and the reason; never a crash.  Plus seeded random mutations of
 * the reference vectors (open + full decode must fail cleanly or succeed). */
#include "config.h"
#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include "tap.h"
#include "testutil.h"
#include "ct/dense.h"
#include "ct/source.h"
#include "ct/util.h"
#include "ct/view.h"

static char *root;
static int ncase;

/* A new case directory. */
static char *case_dir(void)
{
    char *d = tu_path(root, "cXXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d));
    ncase++;
    return d;
}

/* Open + decode everything; returns the first error code. */
static int open_and_decode(const char *path, ct_err *err)
{
    ct_source *s;
    int rc = ct_source_open(path, NULL, &s, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < ct_source_ntensors(s) && !rc; i++) {
        const ct_tensor *t = ct_source_tensor(s, i);
        char *buf = malloc(t->nbytes + 1);
        rc = ct_source_read(s, i, 0, t->nbytes, buf, err);
        free(buf);
    }
    ct_source_close(s);
    return rc;
}

#define EXPECT(path, code, substr) do { \
        ct_err e_ = {0}; \
        int rc_ = open_and_decode(path, &e_); \
        ck_assert_msg(rc_ == (code), "%s: got %d (%s), wanted %d", path, rc_, e_.msg, code); \
        ck_assert_msg(strstr(e_.msg, substr) != NULL, "'%s' not in: %s", substr, e_.msg); \
    } while (0)

static const char *W4_CONFIG =
    "{\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\","
    "\"version\":\"0.18.0\",\"config_groups\":{\"group_0\":{\"targets\":[\"Linear\"],\"weights\":"
    "{\"num_bits\":4,\"type\":\"int\",\"symmetric\":true,\"strategy\":\"group\",\"group_size\":8}}}}}";

/* A valid W4 group-8 module m: [R, C] = [2, 16], packed [2, 2] I32, scale [2, 2]. */
static int32_t packed[4] = {0x12345678, 0x76543210, 0x01234567, 0x7654321f};
static uint16_t scale_bf16[4] = {0x3f80, 0x4000, 0x3f00, 0x3e80};
static int64_t wshape[2] = {2, 16};

static char *w4_case(const int64_t *shape_vals, int64_t packed_cols, int64_t scale_cols, const char *config)
{
    char *d = case_dir(), *m = tu_path(d, "model.safetensors");
    static int32_t pk[64];
    static uint16_t sc[64];
    memcpy(pk, packed, sizeof packed);
    memcpy(sc, scale_bf16, sizeof scale_bf16);
    tu_tensor t[] = {
        {"m.weight_packed", CT_I32, 2, {2, packed_cols}, pk},
        {"m.weight_shape", CT_I64, 1, {2}, shape_vals},
        {"m.weight_scale", CT_BF16, 2, {2, scale_cols}, sc},
    };
    tu_write_st(m, t, 3, "format", "pt");
    if (config) {
        char *c = tu_path(d, "config.json");
        tu_write_file(c, config);
        free(c);
    }
    free(m);
    return d;
}

START_TEST(t_quant_shapes)
{
    char *d = w4_case(wshape, 2, 2, W4_CONFIG);
    ct_err err = {0};
    ck_assert_msg(open_and_decode(d, &err) == 0, "valid case: %s", err.msg);
    free(d);
    int64_t wrong_cols[2] = {2, 24};
    d = w4_case(wrong_cols, 2, 2, W4_CONFIG);
    EXPECT(d, CT_EFORMAT, "weight_packed is");
    EXPECT(d, CT_EFORMAT, "/model.safetensors: tensor 'm.weight': weight_packed is");   /* names the file */
    free(d);
    d = w4_case(wshape, 2, 3, W4_CONFIG);
    EXPECT(d, CT_EFORMAT, "weight_scale shape [2, 3]");
    free(d);
    int64_t neg[2] = {2, -16};
    d = w4_case(neg, 2, 2, W4_CONFIG);
    EXPECT(d, CT_EFORMAT, "negative dimension");
    free(d);
    int64_t huge[2] = {INT64_C(1) << 40, INT64_C(1) << 40};
    d = w4_case(huge, 2, 2, W4_CONFIG);
    EXPECT(d, CT_EFORMAT, "overflows");
    free(d);
}
END_TEST

START_TEST(t_configs)
{
    char cfg[1024];
    const char *bad[][3] = {
        {"{\"quantization_config\": ", "", "not valid JSON"},
        {"{\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":\"marlin-24\"}}", "", "marlin-24"},
        {"{\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":\"zstd-magic\"}}", "", "unsupported format"},
        {"{\"quantization_config\":{\"quant_method\":\"gptq\"}}", "", "not compressed-tensors"},
        {"{\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"config_groups\":{\"g\":{\"targets\":[\"Linear\"],"
         "\"weights\":{\"num_bits\":9,\"group_size\":8}}}}}", "", "9-bit"},
        {"{\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"config_groups\":{\"g\":{\"targets\":[\"Linear\"],"
         "\"weights\":{\"num_bits\":4,\"strategy\":\"diagonal\"}}}}}", "", "unknown quantization strategy"},
        {"{\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"ignore\":7}}", "", "ignore must be"},
    };
    int codes[] = {CT_EFORMAT, CT_EUNSUPPORTED, CT_EUNSUPPORTED, CT_EUNSUPPORTED, CT_EUNSUPPORTED, CT_EUNSUPPORTED,
                   CT_EFORMAT};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        snprintf(cfg, sizeof cfg, "%s", bad[i][0]);
        char *d = w4_case(wshape, 2, 2, cfg);
        EXPECT(d, codes[i], bad[i][2]);
        free(d);
    }
    /* an explicit --config that holds no compression config */
    char *d = w4_case(wshape, 2, 2, NULL);
    char *c = tu_path(d, "other.json");
    tu_write_file(c, "{\"model_type\":\"llama\"}");
    ct_open_opts oo = {.config_path = c};
    ct_source *s;
    ct_err err = {0};
    ck_assert_int_eq(ct_source_open(d, &oo, &s, &err), CT_EFORMAT);
    ck_assert(strstr(err.msg, "holds no compression config"));
    free(c);
    free(d);
}
END_TEST

/* Sparse bitmask module "m" [2, 16] F32 with the given pieces. */
static char *sparse_case(const uint8_t *mask, int64_t nvals, const int64_t *ro, int ro_n, int legacy24)
{
    char *d = case_dir(), *p = tu_path(d, "model.safetensors");
    static float vals[64];
    for (int i = 0; i < 64; i++)
        vals[i] = (float)(i + 1);
    static int64_t shape2[2] = {2, 16}, shape24[2] = {2, 16};
    tu_tensor t[5] = {
        {"m.compressed", CT_F32, 1, {nvals}, vals},
        {"m.bitmask", CT_U8, 2, {2, 2}, mask},
        {"m.shape", CT_I64, legacy24 ? 2 : 1, {2, 1}, legacy24 ? shape24 : shape2},
        {"m.row_offsets", CT_I64, 1, {ro_n}, ro},
    };
    tu_write_st(p, t, legacy24 ? 3 : 4, "format", "pt");
    free(p);
    return d;
}

START_TEST(t_sparse)
{
    static const uint8_t mask[4] = {0x0f, 0x00, 0x01, 0x80};   /* row 0: 4 bits, row 1: 2 bits */
    int64_t ro_ok[2] = {0, 4};
    char *d = sparse_case(mask, 6, ro_ok, 2, 0);
    ct_err err = {0};
    ck_assert_msg(open_and_decode(d, &err) == 0, "valid: %s", err.msg);
    free(d);
    d = sparse_case(mask, 5, ro_ok, 2, 0);                /* one value missing */
    EXPECT(d, CT_EFORMAT, "set bits");
    free(d);
    d = sparse_case(mask, 9, ro_ok, 2, 0);                /* values left over */
    EXPECT(d, CT_EFORMAT, "set bits");
    free(d);
    int64_t ro_far[2] = {0, 40};
    d = sparse_case(mask, 6, ro_far, 2, 0);
    EXPECT(d, CT_EFORMAT, "row_offsets[1] = 40");
    free(d);
    int64_t ro_dec[2] = {5, 4};
    d = sparse_case(mask, 6, ro_dec, 2, 0);
    EXPECT(d, CT_EFORMAT, "row_offsets[0]");
    free(d);
    int64_t ro_neg[2] = {0, -3};
    d = sparse_case(mask, 6, ro_neg, 2, 0);
    EXPECT(d, CT_EFORMAT, "row_offsets[1] = -3");
    free(d);
    int64_t ro_off[2] = {0, 3};                           /* in range, but not this mask's counts */
    d = sparse_case(mask, 6, ro_off, 2, 0);
    EXPECT(d, CT_EFORMAT, "set bits");
    free(d);
    int64_t ro3[3] = {0, 4, 6};
    d = sparse_case(mask, 6, ro3, 3, 0);
    EXPECT(d, CT_EFORMAT, "row_offsets has 3 entries");
    free(d);
    /* 2:4: 16 columns need 8 values per row and exactly 8 set bits */
    static const uint8_t m24[4] = {0x33, 0x33, 0x33, 0x37};
    d = sparse_case(m24, 16, NULL, 0, 1);
    EXPECT(d, CT_EFORMAT, "row 1 of the bitmask has 9 set bits");
    free(d);
    d = sparse_case(m24, 12, NULL, 0, 1);
    EXPECT(d, CT_EFORMAT, "2:4 values must be");
    free(d);
    /* a bitmask of the wrong size */
    char *dd = case_dir(), *p = tu_path(dd, "model.safetensors");
    static float v[4] = {1, 2, 3, 4};
    static uint8_t bm[3] = {1, 1, 1};
    static int64_t sh[2] = {2, 16};
    tu_tensor t[] = {{"m.compressed", CT_F32, 1, {2}, v}, {"m.bitmask", CT_U8, 2, {1, 3}, bm},
                     {"m.shape", CT_I64, 1, {2}, sh}};
    tu_write_st(p, t, 3, NULL, NULL);
    EXPECT(dd, CT_EFORMAT, "bitmask is U8 with 3 bytes");
    free(p);
    free(dd);
    /* sub-byte sparse values */
    dd = case_dir();
    p = tu_path(dd, "model.safetensors");
    static uint8_t bm4[4] = {1, 0, 1, 0};
    tu_tensor t4[] = {{"m.compressed", CT_F4, 1, {2}, v}, {"m.bitmask", CT_U8, 2, {2, 2}, bm4},
                      {"m.shape", CT_I64, 1, {2}, sh}};
    tu_write_st(p, t4, 3, NULL, NULL);
    EXPECT(dd, CT_EUNSUPPORTED, "sparse values of dtype F4");
    free(p);
    free(dd);
}
END_TEST

START_TEST(t_gidx_zp_nvfp4)
{
    char *d = case_dir(), *p = tu_path(d, "model.safetensors"), *c = tu_path(d, "config.json");
    static int32_t gidx[16] = {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 7};
    tu_tensor t[] = {
        {"m.weight_packed", CT_I32, 2, {2, 2}, packed}, {"m.weight_shape", CT_I64, 1, {2}, wshape},
        {"m.weight_scale", CT_BF16, 2, {2, 2}, scale_bf16}, {"m.weight_g_idx", CT_I32, 1, {16}, gidx},
    };
    tu_write_st(p, t, 4, NULL, NULL);
    tu_write_file(c, W4_CONFIG);
    EXPECT(d, CT_EFORMAT, "weight_g_idx[15] = 7");
    free(p);
    free(c);
    free(d);
    /* packed zero point of the wrong size */
    d = case_dir();
    p = tu_path(d, "model.safetensors");
    c = tu_path(d, "config.json");
    static int32_t zp[4] = {0};
    tu_tensor tz[] = {
        {"m.weight_packed", CT_I32, 2, {2, 2}, packed}, {"m.weight_shape", CT_I64, 1, {2}, wshape},
        {"m.weight_scale", CT_BF16, 2, {2, 2}, scale_bf16}, {"m.weight_zero_point", CT_I32, 2, {2, 2}, zp},
    };
    tu_write_st(p, tz, 4, NULL, NULL);
    tu_write_file(c, W4_CONFIG);
    EXPECT(d, CT_EFORMAT, "packed weight_zero_point has 4 elements, expected 2");
    free(p);
    free(c);
    free(d);
    /* NVFP4 without a usable global scale; FP4 with a BF16 scale */
    d = case_dir();
    p = tu_path(d, "model.safetensors");
    static uint8_t fp4[16], f8s[2];
    static float g2[2] = {1, 2};
    tu_tensor tn[] = {
        {"m.weight_packed", CT_U8, 2, {2, 8}, fp4}, {"m.weight_scale", CT_F8_E4M3, 2, {2, 1}, f8s},
        {"m.weight_global_scale", CT_F32, 1, {2}, g2},
    };
    tu_write_st(p, tn, 3, NULL, NULL);
    EXPECT(d, CT_EFORMAT, "weight_global_scale must be one float");
    free(p);
    free(d);
    d = case_dir();
    p = tu_path(d, "model.safetensors");
    tu_tensor tm[] = {{"m.weight_packed", CT_U8, 2, {2, 8}, fp4}, {"m.weight_scale", CT_BF16, 2, {2, 1}, scale_bf16}};
    tu_write_st(p, tm, 2, NULL, NULL);
    EXPECT(d, CT_EFORMAT, "weight_scale has dtype BF16");
    free(p);
    free(d);
    /* marlin-24 tensors, even without a config */
    d = case_dir();
    p = tu_path(d, "model.safetensors");
    static uint16_t sp[4];
    tu_tensor tmar[] = {{"m.weight_packed", CT_I32, 2, {2, 2}, packed}, {"m.scale_packed", CT_F16, 1, {4}, sp},
                        {"m.meta", CT_I16, 1, {4}, sp}};
    tu_write_st(p, tmar, 3, NULL, NULL);
    EXPECT(d, CT_EUNSUPPORTED, "marlin-24");
    free(p);
    free(d);
    /* int8 codes whose weight has no dimensions */
    d = case_dir();
    p = tu_path(d, "model.safetensors");
    static int8_t q1[1];
    static uint16_t s1[1] = {0x3f80};
    tu_tensor t0[] = {{"m.weight", CT_I8, 0, {0}, q1}, {"m.weight_scale", CT_BF16, 1, {1}, s1}};
    tu_write_st(p, t0, 2, NULL, NULL);
    EXPECT(d, CT_EFORMAT, "at least one dimension");
    free(p);
    free(d);
}
END_TEST

START_TEST(t_directories)
{
    /* index naming a missing shard, a path outside the directory, a tensor not in its shard */
    char *d = w4_case(wshape, 2, 2, W4_CONFIG);
    char *ix = tu_path(d, "model.safetensors.index.json");
    tu_write_file(ix, "{\"weight_map\":{\"m.weight_packed\":\"model-00002.safetensors\"}}");
    EXPECT(d, CT_EIO, "model-00002.safetensors");
    tu_write_file(ix, "{\"weight_map\":{\"m.weight_packed\":\"../model.safetensors\"}}");
    EXPECT(d, CT_EFORMAT, "plain file name");
    tu_write_file(ix, "{\"weight_map\":{\"m.absent\":\"model.safetensors\"}}");
    EXPECT(d, CT_EFORMAT, "does not hold it");
    tu_write_file(ix, "{\"metadata\":{}}");
    EXPECT(d, CT_EFORMAT, "weight_map");
    tu_write_file(ix, "not json");
    EXPECT(d, CT_EFORMAT, "weight_map");
    free(ix);
    free(d);
    /* one tensor in two shards */
    d = case_dir();
    char *a = tu_path(d, "a.safetensors"), *b = tu_path(d, "b.safetensors");
    static float x[2] = {1, 2};
    tu_tensor t[] = {{"x", CT_F32, 1, {2}, x}};
    tu_write_st(a, t, 1, NULL, NULL);
    tu_write_st(b, t, 1, NULL, NULL);
    ix = tu_path(d, "model.safetensors.index.json");
    tu_write_file(ix, "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}}");
    EXPECT(d, CT_EFORMAT, "does not hold it");
    tu_write_file(ix, "{\"weight_map\":{\"x\":\"a.safetensors\",\"x2\":\"b.safetensors\"}}");
    EXPECT(d, CT_EFORMAT, "does not hold it");
    free(ix);
    free(a);
    free(b);
    free(d);
    /* a directory with no checkpoint */
    d = case_dir();
    EXPECT(d, CT_EFORMAT, "no model.safetensors");
    free(d);
}
END_TEST

/* A failed dense write leaves no output and no temporary file. */
START_TEST(t_failed_write_leaves_nothing)
{
    static const uint8_t mask[4] = {0x0f, 0x00, 0x01, 0x80};
    int64_t ro_off[2] = {0, 3};
    char *d = sparse_case(mask, 6, ro_off, 2, 0);
    char *src = tu_path(d, "model.safetensors");
    char *outdir = case_dir(), *dst = tu_path(outdir, "out.safetensors");
    ct_source *s;
    ct_err err = {0};
    ck_assert_int_eq(ct_source_open(src, NULL, &s, &err), 0);
    ck_assert_int_eq(ct_write_dense(s, dst, 0, NULL, NULL, &err), CT_EFORMAT);
    ct_source_close(s);
    glob_t g;
    char pat[4200];
    snprintf(pat, sizeof pat, "%s/*", outdir);
    ck_assert_int_eq(glob(pat, 0, NULL, &g), GLOB_NOMATCH);
    /* the same for a directory source */
    ck_assert_int_eq(ct_source_open(d, NULL, &s, &err), 0);
    char *dstd = tu_path(outdir, "outdir");
    ck_assert_int_eq(ct_write_dense(s, dstd, 0, NULL, NULL, &err), CT_EFORMAT);
    ct_source_close(s);
    ck_assert_int_eq(glob(pat, 0, NULL, &g), GLOB_NOMATCH);
    free(src);
    free(dst);
    free(dstd);
    free(outdir);
    free(d);
}
END_TEST

/* Seeded random mutations of the reference vectors: bytes flipped anywhere,
 * truncation, a digit or a whole token of the header or of config.json
 * replaced.  Each mutant is opened, decoded whole, and read through its
 * dense view at random ranges into buffers of every alignment; it must
 * fail with a code and a message, or succeed.  CT_MUTATIONS sets the
 * mutants per vector (default 16): a long run under --enable-sanitizers is
 * the fuzz campaign of doc/performance.md's robustness note. */
static uint64_t mx = 0x1234567887654321ull;
static uint64_t mrnd(void) { return tu_rnd(&mx); }

static const char *const tokens[] = {
    "\"BF16\"", "\"F32\"", "\"I32\"", "\"I64\"", "\"U8\"", "\"F8_E4M3\"", "\"pack-quantized\"", "\"int-quantized\"",
    "\"float-quantized\"", "\"sparse-bitmask\"", "\"sparse-24-bitmask\"", "\"nvfp4-pack-quantized\"", "\"dense\"",
    "\"group\"", "\"channel\"", "\"tensor\"", "\"block\"", "\"tensor_group\"", "null", "true", "[]", "{}", "0", "-1",
    "4294967296", "18446744073709551615", "1e308", "[0,0]", "3", "16"};

/* Replace the string or number at or after a random place in [a, b) of
 * buf (length *n, room for 64 more bytes) by one of tokens. */
static void replace_token(char *buf, size_t *n, size_t a, size_t b)
{
    if (b <= a)
        return;
    size_t s = a + mrnd() % (b - a);
    while (s < b && buf[s] != '"' && !(buf[s] >= '0' && buf[s] <= '9'))
        s++;
    if (s >= b)
        return;
    size_t e = s + 1;
    if (buf[s] == '"') {
        while (e < b && buf[e] != '"')
            e++;
        e += e < b;
    } else {
        while (e < b && buf[e] >= '0' && buf[e] <= '9')
            e++;
    }
    const char *w = tokens[mrnd() % (sizeof tokens / sizeof *tokens)];
    size_t wl = strlen(w);
    memmove(buf + s + wl, buf + e, *n - e);
    memcpy(buf + s, w, wl);
    *n = *n - (e - s) + wl;
}

static void set_digit(char *buf, size_t a, size_t b)
{
    for (int tries = 0; tries < 100 && b > a; tries++) {
        size_t at = a + mrnd() % (b - a);
        if (buf[at] >= '0' && buf[at] <= '9') {
            buf[at] = (char)('0' + mrnd() % 10);
            return;
        }
    }
}

/* Views of every shard read at random ranges into buffers at offsets 0..7. */
static int read_views(const char *path, ct_err *err)
{
    ct_source *s;
    int rc = ct_source_open(path, NULL, &s, err);
    if (rc)
        return rc;
    for (size_t sh = 0; sh < ct_source_nshards(s) && !rc; sh++) {
        ct_view *v;
        if ((rc = ct_view_new(s, sh, &v, err)))
            break;
        uint64_t size = ct_view_size(v);
        char *buf = malloc(size + 8);
        for (int k = 0; k < 8 && !rc; k++) {
            uint64_t off = mrnd() % size, len = 1 + mrnd() % (size - off);
            rc = ct_view_read(v, off, len, buf + k, err);
        }
        free(buf);
        ct_view_free(v);
    }
    ct_source_close(s);
    return rc;
}

START_TEST(t_mutations)
{
    const char *r = getenv("REFVECTORS"), *m_env = getenv("CT_MUTATIONS");
    int per = m_env && atoi(m_env) > 0 ? atoi(m_env) : 16;
    char pat[4096];
    snprintf(pat, sizeof pat, "%s/ct-*/*/model.safetensors", r ? r : CT_SRCDIR "/../shared/refvectors");
    glob_t g;
    if (glob(pat, 0, NULL, &g) != 0)
        return;
    int ok = 0, rejected = 0, total = 0;
    for (size_t k = 0; k < g.gl_pathc; k++) {
        char *orig;
        size_t len;
        ct_err err = {0};
        ck_assert_int_eq(ct_read_file(g.gl_pathv[k], 1 << 24, &orig, &len, &err), 0);
        char cfgsrc[4200];
        snprintf(cfgsrc, sizeof cfgsrc, "%s", g.gl_pathv[k]);
        strcpy(strrchr(cfgsrc, '/'), "/config.json");
        char *cfg = NULL;
        size_t cl;
        ck_assert_int_eq(ct_read_file(cfgsrc, 1 << 20, &cfg, &cl, &err), 0);
        uint64_t hl;
        memcpy(&hl, orig, 8);
        ck_assert_uint_le(hl, len - 8);
        for (int m = 0; m < per; m++) {
            char *d = case_dir(), *p = tu_path(d, "model.safetensors"), *c = tu_path(d, "config.json");
            char *buf = malloc(len + 64), *cbuf = malloc(cl + 65);
            memcpy(buf, orig, len);
            memcpy(cbuf, cfg, cl);
            size_t n = len, cn = cl;
            switch (mrnd() % 6) {
            case 0: /* flip a few bytes anywhere */
                for (int f = 0, nf = 1 + (int)(mrnd() % 16); f < nf; f++)
                    buf[mrnd() % len] ^= (char)(1u << (mrnd() >> 60 & 7));
                break;
            case 1: /* truncate */
                n = mrnd() % len;
                break;
            case 2: /* change a digit inside the header */
                set_digit(buf, 8, 8 + hl);
                break;
            case 3: { /* replace a token of the header; the length prefix follows, mostly */
                replace_token(buf, &n, 8, 8 + hl);
                uint64_t nh = hl + n - len;
                if (mrnd() % 4)
                    memcpy(buf, &nh, 8);
                break;
            }
            case 4: /* change a digit of config.json */
                set_digit(cbuf, 0, cn);
                break;
            default: /* replace a token of config.json */
                replace_token(cbuf, &cn, 0, cn);
            }
            cbuf[cn] = 0;
            tu_write_file(c, cbuf);
            FILE *f = fopen(p, "wb");
            ck_assert_ptr_nonnull(f);
            ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
            fclose(f);
            int rc = open_and_decode(d, &err);
            if (!rc)
                rc = read_views(d, &err);
            ck_assert_msg(rc >= 0 && rc <= CT_ECHANGED, "unexpected code %d", rc);
            if (rc)
                ck_assert_msg(err.msg[0], "empty message for code %d", rc);
            rc ? rejected++ : ok++;
            total++;
            unlink(p);   /* a long run must not fill the disk */
            unlink(c);
            rmdir(d);
            free(buf);
            free(cbuf);
            free(p);
            free(c);
            free(d);
        }
        free(orig);
        free(cfg);
    }
    printf("# mutations: %d, rejected %d, decoded %d\n", total, rejected, ok);
    ck_assert_int_eq(total, per * (int)g.gl_pathc);
    ck_assert_int_gt(rejected, total / 4);
    ck_assert_int_gt(ok, total / 20);
    globfree(&g);
}
END_TEST

int main(void)
{
    root = tu_tmpdir();
    Suite *s = suite_create("malformed");
    TCase *tc = tcase_create("checkpoints");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, t_quant_shapes);
    tcase_add_test(tc, t_configs);
    tcase_add_test(tc, t_sparse);
    tcase_add_test(tc, t_gidx_zp_nvfp4);
    tcase_add_test(tc, t_directories);
    tcase_add_test(tc, t_failed_write_leaves_nothing);
    tcase_add_test(tc, t_mutations);
    suite_add_tcase(s, tc);
    int rc = ct_run_suite(s);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        rc = 1;
    free(root);
    return rc;
}
