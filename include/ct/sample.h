/* A built-in sample for demos and tests: a small llama-shaped checkpoint
 * (2 layers, hidden 256, intermediate 512, vocab 512, BF16) stored
 * compressed, in DIR/compressed/ (model.safetensors + config.json):
 *   self_attn.{q,k,v,o}_proj  pack-quantized int4, group 128, symmetric
 *   mlp.down_proj             int-quantized int8, channel, asymmetric
 *   mlp.{gate,up}_proj        sparse-bitmask, ~50 % zeros
 *   embeddings, norms, lm_head dense
 * and DIR/reference.safetensors: the dense tensors it stands for, computed
 * directly from the chosen codes and scales (q * s, (q - z) * s rounded
 * once to BF16) and the sparse originals.  Deterministic (fixed seed). */
#ifndef CT_SAMPLE_H
#define CT_SAMPLE_H
#include "ct/err.h"

int ct_write_sample(const char *dir, ct_err *err);

#endif
