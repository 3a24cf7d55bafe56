#!/bin/sh
# tests/fuzz/run.sh [BUILDDIR] [SECONDS]: coverage-guided fuzzing of the
# readers (fuzz_source.c) and the writer (fuzz_compress.c) with libFuzzer,
# built by clang with AddressSanitizer and UndefinedBehaviorSanitizer
# (float-to-integer overflow included), SECONDS each (default 300), one
# after the other.  Seeds: every reference vector and every case of
# tests/gen_formats.py, as config.json + model.safetensors (the readers) and
# config.json + expected.safetensors (the writer).  Run by hand, not by
# make check.  Exit 0 when nothing was found; otherwise 1, the input that
# failed kept in the work directory the script names.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
B=$(cd "${1:-$top/build}" && pwd)
secs=${2:-300}
refv=${REFVECTORS:-$top/../shared/refvectors}
command -v clang >/dev/null || { echo "run.sh: clang is needed (apt-get install clang)" >&2; exit 2; }
[ -f "$B/config.h" ] || { echo "run.sh: $B/config.h not found: give a configured build directory" >&2; exit 2; }
W=$(mktemp -d /tmp/ctfs-fuzz.XXXXXX)
echo "run.sh: work directory $W"
for h in source compress; do
    clang -g -O1 -fsanitize=fuzzer,address,undefined,float-cast-overflow \
        -fno-sanitize-recover=undefined,float-cast-overflow -I"$top/include" -I"$B" -I"$top/src/lib" \
        $(pkg-config --cflags libcjson) "$top"/src/lib/*.c "$top/tests/fuzz/fuzz_$h.c" \
        -o "$W/fuzz_$h" $(pkg-config --libs libcjson) -lm -lpthread
done
/usr/bin/python3 "$top/tests/gen_formats.py" "$W/gen" >/dev/null
mkdir -p "$W/seeds.source" "$W/seeds.compress"
/usr/bin/python3 - "$W" "$refv" <<'PY'
import glob, os, struct, sys
w, refv = sys.argv[1], sys.argv[2]
def seed(kind, name, cfg, st):
    c = open(cfg, "rb").read() if os.path.exists(cfg) else b""
    m = open(st, "rb").read()
    if len(c) < 65536 and len(m) < 300000:
        open(os.path.join(w, "seeds." + kind, name), "wb").write(struct.pack("<H", len(c)) + c + m)
for d in sorted(glob.glob(refv + "/ct-*/*/") + glob.glob(w + "/gen/*/")):
    name = d.rstrip("/").replace("/", "_")
    if os.path.exists(d + "model.safetensors"):
        seed("source", name, d + "config.json", d + "model.safetensors")
    if os.path.exists(d + "expected.safetensors") and os.path.exists(d + "config.json"):
        seed("compress", name, d + "config.json", d + "expected.safetensors")
PY
rc=0
for h in source compress; do
    mkdir -p "$W/corpus.$h" "$W/run.$h"
    echo "run.sh: fuzz_$h for $secs s ($(ls "$W/seeds.$h" | wc -l) seeds)"
    if ! (cd "$W" && CT_FUZZ_DIR="$W/run.$h" "./fuzz_$h" -max_total_time="$secs" -max_len=300000 -timeout=20 \
            -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$W/$h-" "corpus.$h" "seeds.$h" >"$W/fuzz_$h.log" 2>&1); then
        echo "run.sh: fuzz_$h found something: $(grep -m1 'SUMMARY\|ERROR' "$W/fuzz_$h.log"); see $W/fuzz_$h.log" >&2
        rc=1
    else
        echo "run.sh: fuzz_$h: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$W/fuzz_$h.log" | grep -o '[0-9]*$') inputs, nothing found"
    fi
done
[ $rc = 0 ] && rm -rf "$W"
exit $rc
