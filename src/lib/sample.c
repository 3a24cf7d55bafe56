#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ct/dtype.h"
#include "ct/sample.h"
#include "ct/st.h"
#include "ct/util.h"

#define HID 256
#define INTER 512
#define VOCAB 512
#define LAYERS 2

typedef struct { char name[128]; ct_dtype dt; int ndim; int64_t shape[2]; void *data; uint64_t nbytes; } item;
typedef struct { item *v; size_t n, cap; } list;

static uint64_t rs = 0x5eed5eed12345678ull;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static float frand(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0); }   /* [0, 1) */

static item *add(list *l, const char *name, ct_dtype dt, int ndim, int64_t d0, int64_t d1)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 32;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
    }
    item *it = &l->v[l->n++];
    memset(it, 0, sizeof *it);
    snprintf(it->name, sizeof it->name, "%s", name);
    it->dt = dt;
    it->ndim = ndim;
    it->shape[0] = d0;
    it->shape[1] = d1;
    ct_tensor_nbytes(dt, ndim, it->shape, NULL, &it->nbytes, NULL);
    it->data = calloc(1, it->nbytes + 8);
    return it;
}

static int save(const list *l, const char *path, const char *meta_v, ct_err *err)
{
    ct_st_entry *e = calloc(l->n + 1, sizeof *e);
    for (size_t i = 0; i < l->n; i++) {
        e[i].name = l->v[i].name;
        e[i].dtype = l->v[i].dt;
        e[i].ndim = l->v[i].ndim;
        memcpy(e[i].shape, l->v[i].shape, sizeof l->v[i].shape);
        e[i].nbytes = l->v[i].nbytes;
        e[i].user = i;
    }
    const char *mk[1] = {"format"}, *mv[1] = {meta_v};
    char *hdr;
    size_t hl;
    int rc = ct_st_layout(e, l->n, mk, mv, 1, &hdr, &hl, err);
    int fd = rc ? -1 : open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (!rc && fd < 0)
        rc = ct_fail(err, CT_EIO, "%s: %s", path, strerror(errno));
    if (!rc)
        rc = ct_write_full(fd, hdr, hl, path, err);
    for (size_t i = 0; !rc && i < l->n; i++)
        rc = ct_write_full(fd, l->v[e[i].user].data, l->v[e[i].user].nbytes, path, err);
    if (fd >= 0)
        close(fd);
    if (!rc)
        free(hdr);
    free(e);
    return rc;
}

static void dense_bf16(list *c, list *r, const char *name, int ndim, int64_t d0, int64_t d1, float scale)
{
    item *a = add(c, name, CT_BF16, ndim, d0, d1), *b = add(r, name, CT_BF16, ndim, d0, d1);
    uint16_t *p = a->data;
    for (uint64_t i = 0; i < a->nbytes / 2; i++)
        p[i] = ct_f32_to_bf16((frand() * 2 - 1) * scale);
    memcpy(b->data, a->data, a->nbytes);
}

/* int4 group 128, symmetric: codes q in [-8, 7], BF16 scales. */
static void int4(list *c, list *r, const char *m, int64_t R, int64_t C)
{
    char n[160];
    snprintf(n, sizeof n, "%s.weight_packed", m);
    uint32_t *pk = add(c, n, CT_I32, 2, R, C / 8)->data;
    snprintf(n, sizeof n, "%s.weight_scale", m);
    uint16_t *sc = add(c, n, CT_BF16, 2, R, C / 128)->data;
    snprintf(n, sizeof n, "%s.weight_shape", m);
    int64_t *sh = add(c, n, CT_I64, 1, 2, 0)->data;
    sh[0] = R;
    sh[1] = C;
    snprintf(n, sizeof n, "%s.weight", m);
    uint16_t *w = add(r, n, CT_BF16, 2, R, C)->data;
    for (int64_t i = 0; i < R * C / 128; i++)
        sc[i] = ct_f32_to_bf16(0.001f + frand() * 0.01f);
    for (int64_t i = 0; i < R * C; i++) {
        int q = (int)(rnd() % 16) - 8;
        pk[i / 8] |= (uint32_t)(q + 8) << (4 * (i % 8));
        float s = ct_bf16_to_f32(sc[(i / C) * (C / 128) + (i % C) / 128]);
        w[i] = ct_f32_to_bf16((float)q * s);
    }
}

/* int8 channel, asymmetric: codes in [-128, 127], I8 zero points. */
static void int8_asym(list *c, list *r, const char *m, int64_t R, int64_t C)
{
    char n[160];
    snprintf(n, sizeof n, "%s.weight", m);
    int8_t *q = add(c, n, CT_I8, 2, R, C)->data;
    uint16_t *w = add(r, n, CT_BF16, 2, R, C)->data;
    snprintf(n, sizeof n, "%s.weight_scale", m);
    uint16_t *sc = add(c, n, CT_BF16, 2, R, 1)->data;
    snprintf(n, sizeof n, "%s.weight_zero_point", m);
    int8_t *zp = add(c, n, CT_I8, 2, R, 1)->data;
    for (int64_t i = 0; i < R; i++) {
        sc[i] = ct_f32_to_bf16(0.0001f + frand() * 0.001f);
        zp[i] = (int8_t)((int)(rnd() % 21) - 10);
    }
    for (int64_t i = 0; i < R * C; i++) {
        q[i] = (int8_t)(rnd() >> 56);
        w[i] = ct_f32_to_bf16((float)(q[i] - zp[i / C]) * ct_bf16_to_f32(sc[i / C]));
    }
}

/* sparse-bitmask, about half the elements zero. */
static void sparse(list *c, list *r, const char *m, int64_t R, int64_t C)
{
    char n[160];
    snprintf(n, sizeof n, "%s.weight", m);
    uint16_t *w = add(r, n, CT_BF16, 2, R, C)->data;
    uint64_t nnz = 0;
    for (int64_t i = 0; i < R * C; i++) {
        w[i] = rnd() & 1 ? ct_f32_to_bf16((frand() * 2 - 1) * 0.05f) : 0;
        if ((w[i] & 0x7fff) == 0)
            w[i] = 0;
        nnz += w[i] != 0;
    }
    snprintf(n, sizeof n, "%s.compressed", m);
    uint16_t *v = add(c, n, CT_BF16, 1, (int64_t)nnz, 0)->data;
    snprintf(n, sizeof n, "%s.bitmask", m);
    uint8_t *bm = add(c, n, CT_U8, 2, R, (C + 7) / 8)->data;
    snprintf(n, sizeof n, "%s.shape", m);
    int64_t *sh = add(c, n, CT_I64, 1, 2, 0)->data;
    sh[0] = R;
    sh[1] = C;
    snprintf(n, sizeof n, "%s.row_offsets", m);
    int64_t *ro = add(c, n, CT_I64, 1, R, 0)->data;
    uint64_t k = 0;
    for (int64_t i = 0; i < R; i++) {
        ro[i] = (int64_t)k;
        for (int64_t j = 0; j < C; j++)
            if (w[i * C + j]) {
                bm[i * ((C + 7) / 8) + j / 8] |= (uint8_t)(1u << (j % 8));
                v[k++] = w[i * C + j];
            }
    }
}

static const char *CONFIG =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"hidden_size\": 256,\n"
    "  \"intermediate_size\": 512,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 4,\n"
    "  \"num_hidden_layers\": 2,\n"
    "  \"num_key_value_heads\": 4,\n"
    "  \"quantization_config\": {\n"
    "    \"config_groups\": {\n"
    "      \"group_0\": {\"format\": \"pack-quantized\", \"targets\": [\"re:.*self_attn\\\\.[qkvo]_proj$\"],\n"
    "                  \"weights\": {\"group_size\": 128, \"num_bits\": 4, \"strategy\": \"group\", \"symmetric\": true, \"type\": \"int\"}},\n"
    "      \"group_1\": {\"format\": \"int-quantized\", \"targets\": [\"re:.*down_proj$\"],\n"
    "                  \"weights\": {\"num_bits\": 8, \"strategy\": \"channel\", \"symmetric\": false, \"type\": \"int\"}}\n"
    "    },\n"
    "    \"format\": \"mixed-precision\",\n"
    "    \"ignore\": [\"lm_head\"],\n"
    "    \"quant_method\": \"compressed-tensors\",\n"
    "    \"quantization_status\": \"compressed\",\n"
    "    \"sparsity_config\": {\"format\": \"sparse-bitmask\", \"ignore\": [\"lm_head\"], \"targets\": [\"re:.*mlp\\\\.(gate|up)_proj$\"]},\n"
    "    \"version\": \"0.18.0\"\n"
    "  },\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"vocab_size\": 512\n"
    "}\n";

int ct_write_sample(const char *dir, ct_err *err)
{
    struct stat sb;
    if (stat(dir, &sb) == 0)
        return ct_fail(err, CT_EEXIST, "%s: already exists", dir);
    char *cdir = ct_path_join(dir, "compressed"), *model = ct_path_join(cdir, "model.safetensors"),
         *cfg = ct_path_join(cdir, "config.json"), *ref = ct_path_join(dir, "reference.safetensors");
    list c = {0}, r = {0};
    int rc = 0;
    if (mkdir(dir, 0755) != 0 || mkdir(cdir, 0755) != 0)
        rc = ct_fail(err, CT_EIO, "%s: %s", dir, strerror(errno));
    if (!rc) {
        rs = 0x5eed5eed12345678ull;
        dense_bf16(&c, &r, "model.embed_tokens.weight", 2, VOCAB, HID, 0.1f);
        for (int l = 0; l < LAYERS; l++) {
            char m[128];
            static const char *attn[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
            for (int k = 0; k < 4; k++) {
                snprintf(m, sizeof m, "model.layers.%d.self_attn.%s", l, attn[k]);
                int4(&c, &r, m, HID, HID);
            }
            snprintf(m, sizeof m, "model.layers.%d.mlp.gate_proj", l);
            sparse(&c, &r, m, INTER, HID);
            snprintf(m, sizeof m, "model.layers.%d.mlp.up_proj", l);
            sparse(&c, &r, m, INTER, HID);
            snprintf(m, sizeof m, "model.layers.%d.mlp.down_proj", l);
            int8_asym(&c, &r, m, HID, INTER);
            snprintf(m, sizeof m, "model.layers.%d.input_layernorm.weight", l);
            dense_bf16(&c, &r, m, 1, HID, 0, 1.0f);
            snprintf(m, sizeof m, "model.layers.%d.post_attention_layernorm.weight", l);
            dense_bf16(&c, &r, m, 1, HID, 0, 1.0f);
        }
        dense_bf16(&c, &r, "model.norm.weight", 1, HID, 0, 1.0f);
        dense_bf16(&c, &r, "lm_head.weight", 2, VOCAB, HID, 0.1f);
        rc = save(&c, model, "pt", err);
    }
    if (!rc)
        rc = save(&r, ref, "pt", err);
    if (!rc) {
        int fd = open(cfg, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        rc = fd < 0 ? ct_fail(err, CT_EIO, "%s: %s", cfg, strerror(errno)) : ct_write_full(fd, CONFIG, strlen(CONFIG), cfg, err);
        if (fd >= 0)
            close(fd);
    }
    for (size_t i = 0; i < c.n; i++)
        free(c.v[i].data);
    for (size_t i = 0; i < r.n; i++)
        free(r.v[i].data);
    free(c.v);
    free(r.v);
    free(cdir);
    free(model);
    free(cfg);
    free(ref);
    return rc;
}
