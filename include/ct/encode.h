/* Compressing a dense checkpoint (one .safetensors file) to
 * compressed-tensors, as the upstream library writes it (format note
 * §1.3 quantization op order, §2.2 bitmask, §2.4/§2.5 layouts, §6.2 file).
 *
 * This version covers: int-quantized / naive-quantized and pack-quantized
 * (layout B, packed I32 zero points along rows, weight_g_idx kept) using
 * the quantization parameters the source already holds (weight_scale,
 * weight_zero_point, weight_g_idx: a calibrated "fake-quant" checkpoint),
 * sparse-bitmask and sparse-24-bitmask (ties broken as torch.topk does).  Modules are chosen by the config's targets/ignore
 * (class names such as "Linear" mean every 2-D `.weight`).  The output's
 * __metadata__ is {"format": "pt", "quantization_config": <config JSON>}. */
#ifndef CT_ENCODE_H
#define CT_ENCODE_H

#include "ct/config.h"
#include "ct/err.h"

/* Compress the file src into dst (written atomically; an existing dst is
 * refused unless force).  config_json: the compression config text (a
 * whole config.json or its quantization_config object). */
int ct_compress_file(const char *src, const char *dst, const char *config_json, size_t config_len,
                     const char *config_label, int force, ct_err *err);

/* Compress a model directory into dst (a new directory, renamed into place
 * when complete): each shard (model.safetensors, or those of
 * model.safetensors.index.json) compressed under its own name, the index
 * rewritten with the compressed tensor names and total_size, config.json
 * written with the quantization_config (as upstream's save_pretrained:
 * indent 2, sorted keys, trailing newline), every other regular file copied.
 * A module's quantization parameters must sit in the shard of its weight. */
int ct_compress_dir(const char *src, const char *dst, const char *config_json, size_t config_len,
                    const char *config_label, int force, ct_err *err);

/* Check a written checkpoint against its dense source: open dst with the
 * core reader (its own config), decode every tensor, and require each one
 * that also exists in src (same name: weights, pass-through tensors) to be
 * exactly the source for sparse or unquantized tensors (-0 may read +0) and,
 * for quantized weights, within half a quantization step of the source
 * (|decoded - source| <= scale/2 plus the output dtype's rounding).
 * Reports the first offending tensor and element. */
int ct_verify(const char *src, const char *dst, ct_err *err);

#endif
