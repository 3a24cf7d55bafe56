/* safetensors container: what the reader rejects and accepts (format note
 * §6.4, plus duplicate keys), and the writer layout reproducing upstream
 * files byte for byte. */
#include "config.h"
#include <glob.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include "tap.h"
#include "testutil.h"
#include "ct/source.h"
#include "ct/view.h"
#include "ct/util.h"
#include "ct/pyjson.h"
#include <cjson/cJSON.h>

static char *dir;

/* Open a file made of the 8-byte length, this header and dlen zero bytes;
 * return the code and leave the message in err. */
static int open_hdr(const char *header, size_t dlen, ct_err *err)
{
    static int k;
    char name[64];
    snprintf(name, sizeof name, "h%d.safetensors", k++);
    char *p = tu_path(dir, name);
    char *zeros = calloc(1, dlen + 1);
    tu_write_raw(p, header, strlen(header), zeros, dlen);
    ct_st *st = NULL;
    int rc = ct_st_open(p, &st, err);
    if (!rc) {
        ck_assert_ptr_nonnull(st);
        ct_st_close(st);
    } else {
        ck_assert_msg(strstr(err->msg, name) != NULL, "message does not name the file: %s", err->msg);
    }
    free(zeros);
    free(p);
    return rc;
}

#define REJECT(hdr, dlen, code, substr) do { \
        ct_err e_ = {0}; \
        ck_assert_int_eq(open_hdr(hdr, dlen, &e_), code); \
        ck_assert_msg(strstr(e_.msg, substr) != NULL, "'%s' not in: %s", substr, e_.msg); \
    } while (0)
#define ACCEPT(hdr, dlen) do { \
        ct_err e_ = {0}; \
        ck_assert_msg(open_hdr(hdr, dlen, &e_) == 0, "%s", e_.msg); \
    } while (0)

#define T1(dt, shp, off) "{\"a\":{\"dtype\":\"" dt "\",\"shape\":" shp ",\"data_offsets\":" off "}}"
/* a valid one-byte tensor with an unknown field "x" of value v */
#define TX(v) "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":" v "}}"

START_TEST(t_reject_header_level)
{
    ct_err err = {0};
    char *p = tu_path(dir, "short.safetensors");
    tu_write_raw(p, "", 0, NULL, 0);
    truncate(p, 7);
    ct_st *st;
    ck_assert_int_eq(ct_st_open(p, &st, &err), CT_EFORMAT);
    ck_assert(strstr(err.msg, "too small"));
    /* header length beyond the limit, and beyond the file */
    FILE *f = fopen(p, "wb");
    uint64_t big = 100000001;
    fwrite(&big, 8, 1, f);
    fwrite("{}      ", 1, 8, f);
    fclose(f);
    ck_assert_int_eq(ct_st_open(p, &st, &err), CT_EFORMAT);
    ck_assert(strstr(err.msg, "exceeds the limit"));
    f = fopen(p, "wb");
    big = 64;
    fwrite(&big, 8, 1, f);
    fwrite("{}      ", 1, 8, f);
    fclose(f);
    ck_assert_int_eq(ct_st_open(p, &st, &err), CT_EFORMAT);
    ck_assert(strstr(err.msg, "past the end"));
    /* files people give a tensor tool by mistake are named as what they are */
#define OTHER(bytes, says) {bytes, sizeof bytes - 1, says}
    static const struct { const char *start; size_t len; const char *says; } other[] = {
        OTHER("\x93NUMPY\x01\x00v\x00{'descr': '<f4', ", "it is a .npy array"),
        OTHER("PK\x03\x04\x14\x00\x00\x00\x08\x00\x00\x00", "it is a zip archive"),
        OTHER("GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00", "it is a GGUF file"),
        OTHER("\x80\x02}q\x00(X\x05\x00\x00\x00model", "it is a Python pickle"),
        OTHER("{\n  \"architectures\": [\"LlamaForCausalLM\"]}", "it is JSON text"),
    };
#undef OTHER
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        f = fopen(p, "wb");
        fwrite(other[i].start, 1, other[i].len, f);
        fclose(f);
        ck_assert_int_eq(ct_st_open(p, &st, &err), CT_EFORMAT);
        ck_assert_msg(strstr(err.msg, "not a safetensors file: ") && strstr(err.msg, other[i].says), "%zu: %s", i,
                      err.msg);
    }
    ck_assert_int_eq(ct_st_open("/nonexistent/x.safetensors", &st, &err), CT_EIO);
    free(p);
    REJECT("{\"a\xff\":1}", 0, CT_EFORMAT, "UTF-8");
    REJECT("{\"a\xc0\xaf\":1}", 0, CT_EFORMAT, "UTF-8");            /* overlong */
    REJECT("{\"a\xed\xa0\x80\":1}", 0, CT_EFORMAT, "UTF-8");        /* surrogate */
    REJECT("{\"a\":", 0, CT_EFORMAT, "not valid JSON");
    REJECT("[1,2]", 0, CT_EFORMAT, "not a JSON object");
    REJECT("{} {}", 0, CT_EFORMAT, "trailing bytes after the JSON");
    REJECT("{\"a\\u0000b\":{}}", 0, CT_EFORMAT, "NUL");
    /* JSON syntax, with the byte it goes wrong at */
    REJECT("", 0, CT_EFORMAT, "not valid JSON (near byte 0)");
    REJECT("   ", 0, CT_EFORMAT, "not valid JSON (near byte 3)");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},}", 1, CT_EFORMAT,
           "not valid JSON (near byte 53)");                         /* trailing comma */
    REJECT("{\"a\tb\":{}}", 0, CT_EFORMAT, "not valid JSON (near byte 3)"); /* raw control character */
    REJECT("{\"\\ud800\":{}}", 0, CT_EFORMAT, "not valid JSON");     /* lone surrogates */
    REJECT("{\"\\udc00x\":{}}", 0, CT_EFORMAT, "not valid JSON");
    REJECT("{\"\\ud800\\u0041\":{}}", 0, CT_EFORMAT, "not valid JSON");
    REJECT("{\"\\x41\":{}}", 0, CT_EFORMAT, "not valid JSON");      /* unknown escape */
    REJECT("{\"\\u12g4\":{}}", 0, CT_EFORMAT, "not valid JSON");
    REJECT("{\"a\" {}}", 0, CT_EFORMAT, "not valid JSON (near byte 5)");
    REJECT(TX("tru"), 1, CT_EFORMAT, "not valid JSON");
    REJECT(TX("[1 2]"), 1, CT_EFORMAT, "not valid JSON");
    REJECT(TX("{\"k\"}"), 1, CT_EFORMAT, "not valid JSON");
    REJECT(TX("-"), 1, CT_EFORMAT, "not valid JSON");
    REJECT(TX("01"), 1, CT_EFORMAT, "not valid JSON");
    REJECT(TX("1."), 1, CT_EFORMAT, "not valid JSON");
    REJECT(TX("[}"), 1, CT_EFORMAT, "not valid JSON");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[1 1],\"data_offsets\":[0,1]}}", 1, CT_EFORMAT,
           "not valid JSON");
    REJECT("\"just a string\"", 0, CT_EFORMAT, "not a JSON object");
    REJECT("[1,2] x", 0, CT_EFORMAT, "not valid JSON (near byte 6)");
    {
        /* unknown fields may nest, up to serde_json's limit of 128 */
        char h[1024], x[300];
        for (int depth = 128; depth <= 129; depth++) {
            memset(x, '[', (size_t)depth);
            memset(x + depth, ']', (size_t)depth);
            x[2 * depth] = 0;
            snprintf(h, sizeof h, TX("%s"), x);
            if (depth == 128)
                ACCEPT(h, 1);
            else
                REJECT(h, 1, CT_EFORMAT, "nests arrays and objects more than 128 deep");
        }
    }
}
END_TEST

START_TEST(t_reject_entries)
{
    REJECT(T1("F33", "[2]", "[0,8]"), 8, CT_EFORMAT, "unknown dtype 'F33'");
    REJECT(T1("F32", "[-2]", "[0,8]"), 8, CT_EFORMAT, "non-negative integers");
    REJECT(T1("F32", "[1.5]", "[0,6]"), 6, CT_EFORMAT, "non-negative integers");
    REJECT(T1("F32", "[\"2\"]", "[0,8]"), 8, CT_EFORMAT, "non-negative integers");
    REJECT(T1("F32", "[2]", "[0]"), 8, CT_EFORMAT, "data_offsets");
    REJECT(T1("F32", "[2]", "[0,-8]"), 8, CT_EFORMAT, "data_offsets");
    REJECT(T1("F32", "[2]", "[8,0]"), 8, CT_EFORMAT, "< begin");
    REJECT("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, CT_EFORMAT, "dtype");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, CT_EFORMAT, "shape");
    REJECT("{\"a\":[1]}", 0, CT_EFORMAT, "not a JSON object");
    REJECT(T1("F32", "[3]", "[0,8]"), 8, CT_EFORMAT, "needs 12");
    REJECT(T1("F32", "[4294967296,4294967296]", "[0,8]"), 8, CT_EFORMAT, "overflows");
    REJECT(T1("F64", "[1073741824,1073741824,1073741824]", "[0,8]"), 8, CT_EFORMAT, "overflows");
    /* integers are read exactly up to 2^64 - 1 (2^60 * 16 elements overflow) */
    REJECT(T1("F64", "[1152921504606846976,16]", "[0,8]"), 8, CT_EFORMAT, "element count overflows");
    REJECT(T1("F64", "[18446744073709551616,0]", "[0,0]"), 0, CT_EFORMAT, "shape entry too large (above 2^64 - 1)");
    REJECT(T1("F64", "[9223372036854775808,0]", "[0,0]"), 0, CT_EFORMAT, "shape entry 9223372036854775808 too large");
    REJECT(T1("U8", "[1]", "[0,18446744073709551616]"), 1, CT_EFORMAT, "data_offsets entry too large");
    /* as serde reads them: integers written as integers, no repeated field */
    REJECT(T1("F32", "[2.0]", "[0,8]"), 8, CT_EFORMAT, "shape entries must be non-negative integers");
    REJECT(T1("F32", "[2e0]", "[0,8]"), 8, CT_EFORMAT, "shape entries must be non-negative integers");
    REJECT(T1("F32", "[2]", "[0,8.0]"), 8, CT_EFORMAT, "\"data_offsets\" must be two non-negative integers");
    REJECT(T1("F32", "[2]", "[0,8,16]"), 8, CT_EFORMAT, "\"data_offsets\" must be two non-negative integers");
    REJECT(T1("F32", "2", "[0,8]"), 8, CT_EFORMAT, "missing or non-array \"shape\"");
    REJECT(T1("F32", "[2]", "\"0,8\""), 8, CT_EFORMAT, "\"data_offsets\" must be two");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
           CT_EFORMAT, "tensor 'a': duplicate field \"dtype\"");
    REJECT("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, CT_EFORMAT, "non-string \"dtype\"");
    REJECT("{\"a\":{}}", 0, CT_EFORMAT, "tensor 'a': missing or non-string \"dtype\"");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, CT_EFORMAT, "\"data_offsets\" must be two");
    REJECT(T1("F4", "[3]", "[0,1]"), 1, CT_EFORMAT, "whole number of bytes");
    REJECT(T1("F32", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]", "[0,4]"), 4, CT_EUNSUPPORTED, "dimensions");
}
END_TEST

START_TEST(t_reject_layout)
{
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}", 10, CT_EFORMAT, "gap");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6, CT_EFORMAT, "overlap");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6, CT_EFORMAT, "gap");
    REJECT(T1("U8", "[4]", "[0,4]"), 5, CT_EFORMAT, "trailing bytes");
    REJECT(T1("U8", "[4]", "[0,4]"), 3, CT_EFORMAT, "truncated");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
           "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8, CT_EFORMAT, "duplicate tensor name 'a'");
    REJECT("{\"__metadata__\":{},\"__metadata__\":{}}", 0, CT_EFORMAT, "duplicate key");
    REJECT("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, CT_EFORMAT, "duplicate __metadata__ key");
    REJECT("{\"__metadata__\":{\"k\":1}}", 0, CT_EFORMAT, "not a string");
    REJECT("{\"__metadata__\":[\"k\"]}", 0, CT_EFORMAT, "not an object");
}
END_TEST

START_TEST(t_accept)
{
    ACCEPT("{}", 0);
    ACCEPT("  \n {} \t\r\n", 0);                        /* leading/trailing whitespace */
    ACCEPT("{\"__metadata__\":{\"format\":\"pt\"}}", 0);  /* length 33: not a multiple of 8 */
    ACCEPT("{\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
           "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 8);   /* any JSON order */
    ACCEPT("{\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
           "\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
           "\"y\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[8,8]}}", 8);   /* zero-size, 0-d */
    ACCEPT("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2],\"extra\":true}}", 2);
    ACCEPT("{\"\xc3\xa9t\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
    /* unknown fields of every kind are passed over; keys and dtype may be escaped; "-0" is 0 */
    ACCEPT("{\"a\":{\"x\":{\"k\":[1,-2.5e+3,\"s\\\"\",null,false,{}],\"e\":[]},\"dt\\u0079pe\":\"U\\u0038\","
           "\"shape\":[ 2 ] ,\"data_offsets\" : [ -0 , 2 ],\"y\":0.5E-1}}", 2);
    ACCEPT("{\"__metadata__\":null}", 0);
    {
        /* names and metadata decoded: escapes, surrogate pairs, raw UTF-8 */
        char *p = tu_path(dir, "esc.safetensors");
        const char *h = "{\"__metadata__\":{\"k\\n\":\"v\\u00e9\\ud83d\\ude00\\\\\"},"
                        "\"a\\/b\\\"c\\u00e9\\ud83d\\ude00\\t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
        uint8_t one = 7;
        tu_write_raw(p, h, strlen(h), &one, 1);
        ct_err err = {0};
        ct_st *st;
        ck_assert_msg(ct_st_open(p, &st, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(ct_st_count(st), 1);
        ck_assert_str_eq(ct_st_get(st, 0)->name, "a/b\"c\xc3\xa9\xf0\x9f\x98\x80\t");
        ck_assert_int_eq(ct_st_find(st, "a/b\"c\xc3\xa9\xf0\x9f\x98\x80\t"), 0);
        ck_assert_str_eq(ct_st_meta_get(st, "k\n"), "v\xc3\xa9\xf0\x9f\x98\x80\\");
        ct_st_close(st);
        free(p);
    }
    static const char *dts[] = {"BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
                                "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
                                "C64", "F64", "I64", "U64"};
    for (size_t i = 0; i < sizeof dts / sizeof *dts; i++) {
        char h[256];
        unsigned bits = ct_dtype_bits((ct_dtype)ct_dtype_from_name(dts[i]));
        /* 8 elements: whole bytes for every width (4, 6, 8, ... bits) */
        snprintf(h, sizeof h, "{\"t\":{\"dtype\":\"%s\",\"shape\":[8],\"data_offsets\":[0,%u]}}", dts[i], bits);
        ACCEPT(h, bits);
    }
}
END_TEST

START_TEST(t_metadata_and_pread)
{
    char *p = tu_path(dir, "meta.safetensors");
    uint8_t data[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    tu_tensor t[] = {{"x", CT_U8, 1, {4}, data}, {"y", CT_F32, 1, {2}, data + 4}};
    tu_write_st(p, t, 2, "format", "pt");
    ct_err err = {0};
    ct_st *st;
    ck_assert_int_eq(ct_st_open(p, &st, &err), 0);
    ck_assert_uint_eq(ct_st_count(st), 2);
    ck_assert_str_eq(ct_st_meta_get(st, "format"), "pt");
    ck_assert_ptr_null(ct_st_meta_get(st, "nope"));
    long y = ct_st_find(st, "y");
    ck_assert_int_ge(y, 0);
    ck_assert_int_eq(ct_st_find(st, "q"), -1);
    uint8_t buf[8];
    ck_assert_int_eq(ct_st_pread(st, ct_st_get(st, (size_t)y), 2, 5, buf, &err), 0);
    ck_assert_int_eq(memcmp(buf, data + 6, 5), 0);
    ck_assert_int_eq(ct_st_pread(st, ct_st_get(st, (size_t)y), 4, 5, buf, &err), CT_EFORMAT);
    ck_assert(strstr(err.msg, "outside"));
    ck_assert_int_eq(ct_st_check_unchanged(st, &err), 0);
    /* the file changes under us: detected */
    sleep(0);
    FILE *f = fopen(p, "ab");
    fputc(0, f);
    fclose(f);
    ck_assert_int_eq(ct_st_check_unchanged(st, &err), CT_ECHANGED);
    ct_st_close(st);
    free(p);
}
END_TEST

/* Pages of [off, off+len) of fd resident in the page cache (mincore). */
static size_t resident_pages(int fd, uint64_t off, uint64_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t a = off / (uint64_t)pg * (uint64_t)pg, n = (off + len - a + (uint64_t)pg - 1) / (uint64_t)pg;
    void *m = mmap(NULL, n * (uint64_t)pg, PROT_READ, MAP_SHARED, fd, (off_t)a);
    unsigned char *vec = malloc(n);
    size_t r = 0;
    if (m != MAP_FAILED && vec && mincore(m, n * (uint64_t)pg, vec) == 0)
        for (uint64_t i = 0; i < n; i++)
            r += vec[i] & 1;
    if (m != MAP_FAILED)
        munmap(m, n * (uint64_t)pg);
    free(vec);
    return r;
}

/* Resident pages of the range once readahead has brought in want of them,
 * or after 2 s (the hint is asynchronous).  The hint is also best effort:
 * the kernel drops a readahead chunk whose page allocation fails (seen once
 * in a loaded CI run, 1013 of 1025 pages), so the callers give it again,
 * up to three times, before they compare. */
static size_t resident_within(int fd, uint64_t off, uint64_t len, size_t want)
{
    size_t got = 0;
    for (int i = 0; i < 200 && (got = resident_pages(fd, off, len)) < want; i++)
        usleep(10000);
    return got;
}

/* The readahead hint brings in exactly the asked part of a tensor. */
START_TEST(t_advise)
{
    char *p = tu_path(dir, "advise.safetensors");
    size_t mb = (size_t)1 << 20;
    uint8_t *data = calloc(8, mb);
    tu_tensor t[] = {{"a", CT_U8, 1, {(int64_t)(4 * mb)}, data}, {"b", CT_U8, 1, {(int64_t)(4 * mb)}, data + 4 * mb}};
    tu_write_st(p, t, 2, NULL, NULL);
    ct_err err = {0};
    ct_st *st;
    ck_assert_int_eq(ct_st_open(p, &st, &err), 0);
    int fd = open(p, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    fsync(fd);
    ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    struct stat sb;
    fstat(fd, &sb);
    uint64_t data_off = (uint64_t)sb.st_size - 8 * mb;   /* the data follows the header */
    ck_assert_uint_eq(resident_pages(fd, data_off, 8 * mb), 0);
    const ct_st_tensor *b = ct_st_get(st, (size_t)ct_st_find(st, "b"));
    ct_st_advise(st, b, mb, mb);
    ct_st_advise(st, b, 8 * mb, mb);   /* past the tensor: nothing */
    uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE), lo = data_off + 5 * mb, hi = lo + mb;
    size_t want = (size_t)((hi + pg - 1) / pg - lo / pg);                  /* pages the range touches */
    size_t got = 0;
    for (int k = 0; k < 3 && (got = resident_within(fd, lo, mb, want)) < want; k++)
        ct_st_advise(st, b, mb, mb);
    ck_assert_uint_eq(got, want);                                        /* b[1 MiB, 2 MiB) */
    ck_assert_uint_eq(resident_pages(fd, data_off, 4 * mb), 0);          /* not a */
    uint64_t rest = (hi + pg - 1) / pg * pg;                           /* nor the rest of b */
    ck_assert_uint_eq(resident_pages(fd, rest, data_off + 8 * mb - rest), 0);
    close(fd);
    ct_st_close(st);
    free(data);
    free(p);
}
END_TEST

/* A compressed tensor's hint covers each stored piece in proportion: the
 * first half of an int4 weight's dense bytes brings in the first half of
 * its packed words and of its scales, and nothing of the second half. */
START_TEST(t_advise_source)
{
    char *p = tu_path(dir, "advise_int4.safetensors");
    int64_t R = 4096, C = 4096;
    size_t np = (size_t)(R * C / 2), ns = (size_t)(R * C / 128) * 2;
    uint8_t *packed = calloc(1, np), *scale = calloc(1, ns);
    int64_t shape[2] = {R, C};
    tu_tensor t[] = {{"m.weight_packed", CT_I32, 2, {R, C / 8}, packed},
                     {"m.weight_scale", CT_BF16, 2, {R, C / 128}, scale},
                     {"m.weight_shape", CT_I64, 1, {2}, shape}};
    tu_write_st(p, t, 3, "quantization_config",
                "{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\",\"version\":\"0.18.0\","
                "\"config_groups\":{\"g\":{\"targets\":[\"Linear\"],\"weights\":{\"num_bits\":4,\"group_size\":128}}}}");
    ct_err err = {0};
    ct_source *src;
    ck_assert_msg(ct_source_open(p, NULL, &src, &err) == 0, "%s", err.msg);
    ct_st *st;
    ck_assert_int_eq(ct_st_open(p, &st, &err), 0);
    int fd = open(p, O_RDONLY);
    fsync(fd);
    ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
    const ct_st_tensor *pk = ct_st_get(st, (size_t)ct_st_find(st, "m.weight_packed"));
    const ct_st_tensor *sc = ct_st_get(st, (size_t)ct_st_find(st, "m.weight_scale"));
    uint64_t p0 = ct_st_data_offset(st) + pk->begin, s0 = ct_st_data_offset(st) + sc->begin;
    long w = ct_source_find(src, "m.weight");
    ck_assert_int_ge(w, 0);
    uint64_t dense = ct_source_tensor(src, (size_t)w)->nbytes;
    ck_assert_uint_eq(dense, (uint64_t)(R * C * 2));
    ct_source_advise(src, (size_t)w, 0, dense / 2);
    size_t want = (size_t)((p0 + np / 2 + pg - 1) / pg - p0 / pg), got = 0;
    for (int k = 0; k < 3 && (got = resident_within(fd, p0, np / 2, want)) < want; k++)
        ct_source_advise(src, (size_t)w, 0, dense / 2);
    ck_assert_uint_eq(got, want);
    ck_assert_uint_eq(resident_pages(fd, s0, ns / 2), (s0 + ns / 2 + pg - 1) / pg - s0 / pg);
    /* whole pages of the second half (its last page may hold a neighbour's bytes) */
    uint64_t second = (p0 + np / 2 + pg - 1) / pg * pg, end = (p0 + np) / pg * pg;
    ck_assert_uint_eq(resident_pages(fd, second, end - second), 0);
    /* through the dense view: its whole data range brings in all of it */
    ct_view *v;
    ck_assert_int_eq(ct_view_new(src, 0, &v, &err), 0);
    ct_view_advise(v, 0, ct_view_size(v) + 4096);   /* clamped at the end */
    want = (size_t)((p0 + np + pg - 1) / pg - p0 / pg);
    for (int k = 0; k < 3 && (got = resident_within(fd, p0, np, want)) < want; k++)
        ct_view_advise(v, 0, ct_view_size(v) + 4096);
    ck_assert_uint_eq(got, want);
    ct_view_free(v);
    close(fd);
    ct_st_close(st);
    ct_source_close(src);
    free(packed);
    free(scale);
    free(p);
}
END_TEST

/* The writer layout reproduces upstream-written files exactly. */
START_TEST(t_layout_reproduces_refvectors)
{
    const char *r = getenv("REFVECTORS");
    char pat[4096];
    snprintf(pat, sizeof pat, "%s/ct-*/*/*.safetensors", r ? r : CT_SRCDIR "/../shared/refvectors");
    glob_t g;
    if (glob(pat, 0, NULL, &g) != 0)
        return;   /* no vectors here; refvectors tests report the skip */
    size_t files = 0;
    for (size_t k = 0; k < g.gl_pathc; k++) {
        ct_err err = {0};
        ct_st *st;
        ck_assert_msg(ct_st_open(g.gl_pathv[k], &st, &err) == 0, "%s", err.msg);
        size_t n = ct_st_count(st), nm = ct_st_meta_count(st);
        ct_st_entry *e = calloc(n + 1, sizeof *e);
        const char **mk = calloc(nm + 1, sizeof *mk), **mv = calloc(nm + 1, sizeof *mv);
        for (size_t i = 0; i < n; i++) {
            const ct_st_tensor *t = ct_st_get(st, i);
            e[i].name = t->name;
            e[i].dtype = t->dtype;
            e[i].ndim = t->ndim;
            memcpy(e[i].shape, t->shape, sizeof e[i].shape);
            e[i].nbytes = t->end - t->begin;
            e[i].user = i;
        }
        for (size_t i = 0; i < nm; i++) {
            mk[i] = ct_st_meta_key(st, i);
            mv[i] = ct_st_meta_value(st, i);
        }
        char *hdr;
        size_t hlen;
        ck_assert_int_eq(ct_st_layout(e, n, mk, mv, nm, &hdr, &hlen, &err), 0);
        char *orig;
        size_t olen;
        ck_assert_int_eq(ct_read_file(g.gl_pathv[k], 1 << 26, &orig, &olen, &err), 0);
        ck_assert_msg(hlen <= olen && memcmp(hdr, orig, hlen) == 0, "header differs: %s", g.gl_pathv[k]);
        /* data in layout order equals the file's data region */
        for (size_t i = 0; i < n; i++) {
            const ct_st_tensor *t = ct_st_get(st, e[i].user);
            ck_assert_uint_eq(e[i].begin, t->begin);
        }
        free(orig);
        free(hdr);
        free(e);
        free(mk);
        free(mv);
        ct_st_close(st);
        files++;
    }
    ck_assert_uint_ge(files, 60);
    globfree(&g);
}
END_TEST

START_TEST(t_layout_order_and_escaping)
{
    ct_st_entry e[4] = {
        {.name = "b", .dtype = CT_U8, .ndim = 1, .shape = {1}, .nbytes = 1},
        {.name = "a\"q\\\n\x01", .dtype = CT_U8, .ndim = 1, .shape = {1}, .nbytes = 1},
        {.name = "z", .dtype = CT_I64, .ndim = 0, .nbytes = 8},
        {.name = "\xc3\xa9", .dtype = CT_BF16, .ndim = 2, .shape = {1, 2}, .nbytes = 4},
    };
    char *hdr;
    size_t hlen;
    ct_err err;
    ck_assert_int_eq(ct_st_layout(e, 4, NULL, NULL, 0, &hdr, &hlen, &err), 0);
    const char *want = "{\"z\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                       "\"\xc3\xa9\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[8,12]},"
                       "\"a\\\"q\\\\\\n\\u0001\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[12,13]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[13,14]}}";
    size_t wl = strlen(want);
    ck_assert_uint_eq(hlen, 8 + ((wl + 7) / 8) * 8);
    ck_assert_int_eq(memcmp(hdr + 8, want, wl), 0);
    for (size_t i = 8 + wl; i < hlen; i++)
        ck_assert_int_eq(hdr[i], ' ');
    uint64_t n;
    memcpy(&n, hdr, 8);
    ck_assert_uint_eq(n, hlen - 8);
    free(hdr);
}
END_TEST

/* Strings as Python's json.dumps writes them (ensure_ascii: what
 * transformers writes model.safetensors.index.json with); the expected
 * texts were printed by Python 3.11. */
/* Numbers read from a config.json come back as Python's json.dumps(json.loads(t),
 * indent=2, sort_keys=True) prints them (expected texts printed by Python
 * 3.11); what Python refuses is refused. */
START_TEST(t_pyjson_numbers)
{
    static const char *in[] = {
        "[500000.0, 1e-05, -0.0, 0, -0, 12345678901234567890123, 1E5, 1.50, 2e-7, 1e16, 1e15, 123456789.125, "
        "5e-324, 1.7976931348623157e308, 0.1, 100, -1.5e+300, 1e400, NaN, -Infinity]",
        "{\"b\": 1, \"a\": {\"d\": [], \"c\": {}}}",
    };
    static const char *want[] = {
        "[\n  500000.0,\n  1e-05,\n  -0.0,\n  0,\n  0,\n  12345678901234567890123,\n  100000.0,\n  1.5,\n  2e-07,\n"
        "  1e+16,\n  1000000000000000.0,\n  123456789.125,\n  5e-324,\n  1.7976931348623157e+308,\n  0.1,\n  100,\n"
        "  -1.5e+300,\n  Infinity,\n  NaN,\n  -Infinity\n]",
        "{\n  \"a\": {\n    \"c\": {},\n    \"d\": []\n  },\n  \"b\": 1\n}",
    };
    for (size_t i = 0; i < 2; i++) {
        cJSON *v = ct_pyjson_parse(in[i], strlen(in[i]));
        ck_assert_ptr_nonnull(v);
        ct_buf b = {0};
        ck_assert_int_eq(ct_pyjson_write(&b, v, 1), 0);
        ck_assert_str_eq(b.data, want[i]);
        ct_buf_free(&b);
        cJSON_Delete(v);
    }
    static const char *refused[] = {"[-NaN]", "[01]", "[1.]", "[-]", "[1e]", "[nan]", "[inf]", "{\"a\": 1,}"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        ck_assert_msg(ct_pyjson_parse(refused[i], strlen(refused[i])) == NULL, "%s", refused[i]);
}
END_TEST

START_TEST(t_pyjson_strings)
{
    static const char *const cases[][2] = {
        {"model.layers.0.mlp.down_proj.weight", "\"model.layers.0.mlp.down_proj.weight\""},
        {"", "\"\""},
        {"a\"q\\\n\x01\x1f\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\t\b\f\r/ end",
         "\"a\\\"q\\\\\\n\\u0001\\u001f\\u007f\\u00e9\\u20ac\\ud83d\\ude00\\t\\b\\f\\r/ end\""},
        {"~\x7f~", "\"~\\u007f~\""},
        {"\\\\x", "\"\\\\\\\\x\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ct_buf b = {0};
        ck_assert_int_eq(ct_pyjson_str(&b, cases[i][0]), 0);
        ck_assert_str_eq(b.data, cases[i][1]);
        ct_buf_free(&b);
    }
}
END_TEST

/* A header of many tensors: its parse tree outgrows the first chunks of the
 * arena it is parsed in (a tree takes about six times the header's bytes),
 * and cJSON still works outside a parse afterwards. */
START_TEST(t_large_header)
{
    enum { N = 30000 };
    ct_buf h = {0};
    ck_assert_int_eq(ct_buf_puts(&h, "{\"__metadata__\":{\"format\":\"pt\"}"), 0);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(ct_buf_printf(&h, ",\"model.layers.%d.mlp.experts.%d.weight\":{\"dtype\":\"U8\","
                                       "\"shape\":[1],\"data_offsets\":[%d,%d]}", i / 100, i % 100, i, i + 1), 0);
    ck_assert_int_eq(ct_buf_putc(&h, '}'), 0);
    ct_st *st = NULL;
    ct_err err = {0};
    int rc = ct_st_parse("big.safetensors", h.data, h.len, 8 + h.len + N, &st, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert_uint_eq(ct_st_count(st), N);
    long k = ct_st_find(st, "model.layers.123.mlp.experts.45.weight");
    ck_assert_int_ge(k, 0);
    ck_assert_uint_eq(ct_st_get(st, (size_t)k)->begin, 12345);
    ck_assert_uint_eq(ct_st_get(st, (size_t)k)->end, 12346);
    ck_assert_str_eq(ct_st_get(st, N - 1)->name, "model.layers.299.mlp.experts.99.weight");
    ct_st_close(st);
    /* an error half way through a long header */
    h.data[h.len - 200] = '#';
    ck_assert_int_eq(ct_st_parse("big.safetensors", h.data, h.len, 8 + h.len + N, &st, &err), CT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "not valid JSON"));
    ct_buf_free(&h);
    cJSON *o = cJSON_CreateObject();
    ck_assert_ptr_nonnull(cJSON_AddStringToObject(o, "k", "v"));
    char *text = cJSON_PrintUnformatted(o);
    ck_assert_str_eq(text, "{\"k\":\"v\"}");
    free(text);
    cJSON_Delete(o);
}
END_TEST

int main(void)
{
    dir = tu_tmpdir();
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("reader");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, t_reject_header_level);
    tcase_add_test(tc, t_reject_entries);
    tcase_add_test(tc, t_reject_layout);
    tcase_add_test(tc, t_accept);
    tcase_add_test(tc, t_metadata_and_pread);
    tcase_add_test(tc, t_advise);
    tcase_add_test(tc, t_advise_source);
    tcase_add_test(tc, t_layout_reproduces_refvectors);
    tcase_add_test(tc, t_layout_order_and_escaping);
    tcase_add_test(tc, t_pyjson_strings);
    tcase_add_test(tc, t_pyjson_numbers);
    tcase_add_test(tc, t_large_header);
    suite_add_tcase(s, tc);
    int rc = ct_run_suite(s);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = 1;
    free(dir);
    return rc;
}
