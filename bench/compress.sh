#!/usr/bin/env bash
# Compression benchmark for mkct: input GB/s per core for sparse-bitmask
# and W4A16 (plus FP8_DYNAMIC and NVFP4A16), with -j 1 and -j 2, next to
# copying the same file through user space (dd, 8 MiB blocks: the I/O
# floor of read-then-write; cp may reflink) measured in the same run;
# and mkct's peak RSS against the largest tensor, for a checkpoint many
# times larger than one tensor.
#   usage: bench/compress.sh [BUILDDIR] [TENSORS ROWS COLS]
#          (default build 16 4096 4096: sixteen 32 MiB BF16 weights, 512 MiB,
#          half of them 50 % sparse)
# The source sits in the page cache (as after a download); outputs go to a
# temporary directory on the same disk.  Best of 3 runs each; the machine
# is shared and noisy, compare ratios.
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
N=${2:-16} R=${3:-4096} C=${4:-4096}
W=$(mktemp -d "${TMPDIR:-/var/tmp}/mkct-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
/usr/bin/python3 - "$W/in.safetensors" "$N" "$R" "$C" <<'PY'
import json, struct, sys
import numpy as np
out, N, R, C = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(3)
hdr, off = {}, 0
with open(out, "wb") as f:
    names = [f"model.layers.{i // 4}.mlp.{('up', 'down', 'gate', 'o')[i % 4]}_proj.weight" for i in range(N)]
    for n in names:
        hdr[n] = {"dtype": "BF16", "shape": [R, C], "data_offsets": [off, off + R * C * 2]}
        off += R * C * 2
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    f.write(struct.pack("<Q", len(h)) + h)
    for i, n in enumerate(names):
        x = rng.standard_normal((R, C), dtype=np.float32) * 0.02
        if i % 2 == 0:
            x[rng.random((R, C)) < 0.5] = 0
        u = x.view(np.uint32)
        f.write(((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes())
PY
cat "$W/in.safetensors" >/dev/null
size=$(stat -c %s "$W/in.safetensors")
tensor=$((R * C * 2))
# run CMD... three times; print "seconds maxrss_kib" of the best run
best() {
    /usr/bin/python3 - "$@" <<'PY'
import os, resource, subprocess, sys, time
best = None
for _ in range(3):
    for f in ("out", "out.d"):
        subprocess.run(["rm", "-rf", os.path.join(os.environ["W"], f)])
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.execv(sys.argv[1], sys.argv[1:])
    _, status, ru = os.wait4(pid, 0)
    d = time.monotonic() - t
    if status:
        sys.exit(f"failed: {' '.join(sys.argv[1:])}")
    if best is None or d < best[0]:
        best = (d, ru.ru_maxrss)
print(f"{best[0]:.4f} {best[1]}")
PY
}
export W
read -r cp_s _ < <(best /bin/dd if="$W/in.safetensors" of="$W/out" bs=8M status=none)
gbs() { awk -v b="$size" -v s="$1" 'BEGIN { printf "%.2f", b / s / 1e9 }'; }
printf 'source: %d tensors of [%d, %d] BF16, %d MiB; largest tensor %d MiB\n' "$N" "$R" "$C" $((size >> 20)) $((tensor >> 20))
printf 'baseline dd of the source: %.3f s = %s GB/s\n\n' "$cp_s" "$(gbs "$cp_s")"
printf '%-22s %3s %9s %9s %10s %12s %14s\n' "mode" "-j" "seconds" "GB/s in" "vs dd" "peak RSS MiB" "RSS/tensor"
for how in "--format sparse-bitmask" "--scheme W4A16" "--scheme FP8_DYNAMIC" "--scheme NVFP4A16"; do
    for j in 1 2; do
        read -r s rss < <(best "$B/mkct" -q -j "$j" $how "$W/in.safetensors" "$W/out")
        printf '%-22s %3d %9.3f %9s %9.2fx %12d %14.2f\n' "${how#--* }" "$j" "$s" "$(gbs "$s")" \
            "$(awk -v a="$cp_s" -v b="$s" 'BEGIN { print a / b }')" $((rss >> 10)) \
            "$(awk -v r="$rss" -v t="$tensor" 'BEGIN { print r * 1024 / t }')"
    done
done
