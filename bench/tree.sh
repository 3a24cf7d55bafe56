#!/usr/bin/env bash
# Mount time and a first `ls -l` of tensors/ for a checkpoint of many
# tensors (a large MoE model has 50,000-100,000), against `ls -l` of a plain
# directory holding as many files, measured in the same run.  The model's
# config.json has regular expressions in its targets and ignore list.
#   usage: bench/tree.sh [BUILDDIR] [TENSORS]   (default build 40000)
# Needs /dev/fuse.
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
N=${2:-40000}
W=$(mktemp -d /tmp/ctfs-tbench.XXXXXX)
cleanup() { fusermount3 -u "$W/mnt" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
/usr/bin/python3 - "$W/m.safetensors" "$N" <<'PY'
import json, struct, sys
path, n = sys.argv[1], int(sys.argv[2])
hdr, off = {"__metadata__": {"format": "pt"}}, 0
for i in range(n):
    hdr["model.layers.%d.mlp.experts.%d.w%d.weight" % (i // 3000, i % 3000 // 3, i % 3)] = \
        {"dtype": "BF16", "shape": [4], "data_offsets": [off, off + 8]}
    off += 8
h = json.dumps(hdr, separators=(",", ":")).encode(); h += b" " * (-len(h) % 8)
open(path, "wb").write(struct.pack("<Q", len(h)) + h + bytes(off))
# a config as llm-compressor writes for MoE models: its ignore list and
# targets hold regular expressions, matched against every module at mount
json.dump({"quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized",
           "version": "0.18.0", "ignore": ["lm_head", "re:.*mlp.gate$", "re:.*shared_expert_gate$",
           "re:.*router.*", "re:model[.]visual.*"], "config_groups": {"group_0": {"targets": ["re:.*experts.*"],
           "weights": {"num_bits": 4, "group_size": 128, "strategy": "group"}}}}},
          open(path.rsplit("/", 1)[0] + "/config.json", "w"))
PY
mkdir -p "$W/mnt" "$W/plain"
# the plain baseline: as many files as the mount's tensors/ shows (raw + .npy)
(cd "$W/plain" && seq -f "f%.0f" 1 $((2 * N)) | xargs touch)
now() { date +%s.%N; }
t0=$(now); "$B/ctfs" "$W/m.safetensors" "$W/mnt"; t1=$(now)
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t2=$(now); n_ct=$(ls -l "$W/mnt/tensors" | wc -l); t3=$(now)
fusermount3 -u "$W/mnt"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t4=$(now); n_pl=$(ls -l "$W/plain" | wc -l); t5=$(now)
awk -v n="$N" -v m="$t0 $t1" -v c="$t2 $t3" -v p="$t4 $t5" -v nc="$n_ct" -v np="$n_pl" 'BEGIN {
    split(m, a, " "); split(c, b, " "); split(p, d, " ")
    printf "%d tensors: mount %.0f ms; first ls -l of tensors/ (%d lines) %.2f s, of a plain directory of as many files (%d lines) %.2f s: %.1fx\n",
        n, (a[2] - a[1]) * 1000, nc, b[2] - b[1], np, d[2] - d[1], (b[2] - b[1]) / (d[2] - d[1]) }'
