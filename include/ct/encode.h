/* Compressing a dense checkpoint to compressed-tensors, as the upstream
 * library writes it (format note §1.3 quantization op order, §2.2 bitmask,
 * §2.3 2:4, §2.4/§2.5 layouts, §2.7 NVFP4, §6.2 file).
 *
 * Formats: pack-quantized (layout B for current configs, packed I32 zero
 * points along rows, weight_g_idx kept with activation ordering),
 * int-/naive-quantized, float-quantized (FP8 E4M3), nvfp4-pack-quantized,
 * sparse-bitmask and sparse-24-bitmask (ties broken as torch.topk does).
 * Strategies tensor, channel, group, block, tensor_group.  Quantization
 * parameters the source already holds (weight_scale, weight_zero_point,
 * weight_g_idx, weight_global_scale: a calibrated "fake-quant" checkpoint)
 * are used as given; otherwise upstream's min-max observer computes them.
 * Modules are chosen by the config's targets/ignore (class names such as
 * "Linear" mean every 2-D `.weight`).  Each output file's __metadata__ is
 * {"format": "pt", "quantization_config": <config JSON>}. */
#ifndef CT_ENCODE_H
#define CT_ENCODE_H

#include "ct/config.h"
#include "ct/err.h"
#include <stddef.h>
#include <stdint.h>

/* Progress of a compression: work units (modules and pass-through
 * tensors) and source bytes done so far. */
typedef void (*ct_compress_progress)(void *ctx, size_t units_done, size_t units_total, uint64_t bytes_done,
                                     uint64_t bytes_total);

typedef struct ct_compress_opts {
    const char *config_json;    /* a whole config.json or its quantization_config object */
    size_t config_len;
    const char *config_label;   /* names the config in messages */
    int force;                  /* replace an existing dst */
    int threads;                /* modules compressed in parallel (<= 1: one) */
    uint64_t shard_size;        /* 0: one output file per source shard; else split (dst is a directory) */
    ct_compress_progress progress;
    void *progress_ctx;
    size_t *compressed;         /* if not NULL: set to the number of weights compressed */
    size_t *left_out;           /* if not NULL: set to the number of activation and kv-cache
                                   parameters left out (ones the config does not quantize with) */
} ct_compress_opts;

/* Compress src (a .safetensors file, or a model directory: model.safetensors
 * or the shards of model.safetensors.index.json) into dst, which appears
 * atomically or not at all.  A file gives a file, unless shard_size is set;
 * a directory (or shard_size) gives a directory: the shards, the index
 * rewritten with the compressed names and total_size, config.json with the
 * quantization_config (as upstream's save_pretrained: indent 2, sorted keys,
 * trailing newline), every other file and directory copied
 * (ct_list_other_files).  A module's stored
 * quantization parameters may sit in any shard.  Memory: a few times the
 * largest tensor per thread; the compressed tensors are parked in an
 * unlinked temporary file in dst's directory until the output is laid out. */
int ct_compress(const char *src, const char *dst, const ct_compress_opts *opts, ct_err *err);

/* Check a written checkpoint against its dense source: open dst with the
 * core reader (its own config), decode every tensor, and require each one
 * that also exists in src (same name: weights, pass-through tensors) to be
 * exactly the source for sparse or unquantized tensors (-0 may read +0) and,
 * for quantized weights, within half a quantization step of the source
 * (|decoded - source| <= scale/2 plus the output dtype's rounding).
 * Reports the first offending tensor and element. */
int ct_verify(const char *src, const char *dst, ct_err *err);

#endif
