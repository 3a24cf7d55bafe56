#!/bin/sh
# Command-line behaviour of ctls and mkct: help, version, usage errors,
# exact listing output, JSON, name escaping, exit statuses.
. "$top_srcdir/tests/programs/lib.sh"
need_refvectors
case_dir=$REFVECTORS/ct-0.14.0.1/w4a16_g128_asym_bf16

for prog in "$MKCT" "$CTLS"; do
    p=$(basename "$prog")
    expect_exit 0 "$p --help" "$prog" --help
    check "$p --help prints a usage line" grep -q "^Usage: $p " "$TMP/out"
    expect_exit 0 "$p --version" "$prog" --version
    check "$p --version names the package version" grep -q "^$p (ctfs) [0-9]" "$TMP/out"
    expect_exit 1 "$p with an unknown option" "$prog" --no-such-option
    expect_exit 1 "$p without arguments" "$prog"
    # every short option the help lists is one getopt accepts (given a
    # dummy argument; the run then fails for other reasons, or not at all)
    "$prog" --help | sed -n 's/^  -\([A-Za-z]\), --.*/\1/p' >"$TMP/shorts"
    check "$p --help lists short options" [ -s "$TMP/shorts" ]
    while read -r o; do
        "$prog" "-$o" x y z >/dev/null 2>"$TMP/err" </dev/null || true
        check "$p accepts -$o as its help says" sh -c '! grep -q "invalid option" "$1"' sh "$TMP/err"
    done <"$TMP/shorts"
done
expect_exit 2 "mkct on a missing file" "$MKCT" --format dense "$TMP/missing.safetensors" "$TMP/x"
expect_exit 2 "ctls on a missing file" "$CTLS" "$TMP/missing.safetensors"
check "the error names the file" grep -q "missing.safetensors" "$TMP/err"
expect_exit 1 "mkct without --format" "$MKCT" "$case_dir/model.safetensors" "$TMP/o.safetensors"
expect_exit 1 "mkct with an unknown format" "$MKCT" --format nope "$case_dir/model.safetensors" "$TMP/o.safetensors"
check "no output left by failed runs" [ ! -e "$TMP/o.safetensors" ]
# DST written with a trailing slash, as in the README ("dense/"): a
# directory for a directory source; a file source gives a file, so there it
# is a usage error that says so.
"$MKCT" -q --format dense "$REFVECTORS/ct-0.14.0.1/sparse_bitmask/sharded" "$TMP/slash/" 2>"$TMP/err"
check "mkct SRCDIR DST/: writes the directory" [ -f "$TMP/slash/model.safetensors.index.json" ]
expect_exit 1 "mkct FILE DST/: refused" "$MKCT" -q --format dense "$case_dir/model.safetensors" "$TMP/slash2/"
check "...saying why" grep -q "a directory name, but .* is a file and gives a file" "$TMP/err"
check "...nothing written" [ ! -e "$TMP/slash2" ]

# The other way round: a directory's output named like a .safetensors file
# would be a directory numpy and safetensors cannot open: refused, with the
# way to get a file; --shard-size likewise.
sharded=$REFVECTORS/ct-0.14.0.1/sparse_bitmask/sharded
expect_exit 1 "mkct SRCDIR X.safetensors: refused" "$MKCT" -q --format dense "$sharded" "$TMP/dir.safetensors"
check "...saying why" grep -q "a .safetensors file name, but .* is a model directory and gives a directory" "$TMP/err"
check "...nothing written" [ ! -e "$TMP/dir.safetensors" ]
expect_exit 1 "mkct --shard-size X.safetensors: refused" "$MKCT" -q --scheme W4A16 --shard-size 1M \
    "$case_dir/input.safetensors" "$TMP/dir.safetensors"
check "...saying why" grep -q "but --shard-size writes a directory of shards" "$TMP/err"
check "...nothing written" [ ! -e "$TMP/dir.safetensors" ]
expect_exit 0 "mkct SHARD X.safetensors: the shard as a file" "$MKCT" -q --format dense \
    "$REFVECTORS/ct-0.14.0.1/sparse_bitmask/model.safetensors" "$TMP/one.safetensors"
check "...equal to the expected dense tensors" "$STCMP" "$TMP/one.safetensors" \
    "$REFVECTORS/ct-0.14.0.1/sparse_bitmask/expected.safetensors"
# Preset options: bad values and options that would be ignored are usage
# errors that say why; nothing is written.
dense_in="$REFVECTORS/ct-0.18.0/w4a16_g128_sym_bf16/expected.safetensors"
expect_exit 1 "mkct --bits 0" "$MKCT" --scheme W4A16 --bits 0 "$dense_in" "$TMP/o.safetensors"
check "...saying the range" grep -q -- "--bits wants 1 to 8, not '0'" "$TMP/err"
expect_exit 1 "mkct --group-size 0" "$MKCT" --scheme W4A16 --group-size 0 "$dense_in" "$TMP/o.safetensors"
expect_exit 1 "mkct --group-size -5" "$MKCT" --scheme W4A16 --group-size -5 "$dense_in" "$TMP/o.safetensors"
check "...saying what it wants" grep -q -- "--group-size wants a number of columns, or -1 for per channel" "$TMP/err"
expect_exit 1 "mkct --bits without a scheme" "$MKCT" --bits 4 "$dense_in" "$TMP/o.safetensors"
expect_exit 1 "mkct --ignore with --config (the config's lists decide)" "$MKCT" --ignore lm_head \
    --config "$REFVECTORS/ct-0.18.0/w4a16_g128_sym_bf16/config.json" "$dense_in" "$TMP/o.safetensors"
check "...saying so" grep -q "not with --config" "$TMP/err"
expect_exit 1 "mkct --bits with a sparse format" "$MKCT" --format sparse-bitmask --bits 4 "$dense_in" "$TMP/o.safetensors"
set --
for i in $(seq 33); do set -- "$@" --ignore "m$i"; done
expect_exit 1 "mkct with 33 --ignore" "$MKCT" --scheme W4A16 "$@" "$dense_in" "$TMP/o.safetensors"
set --
expect_exit 4 "mkct refuses a pattern it cannot match (a look-ahead)" \
    "$MKCT" --scheme W4A16 --ignore 're:(?!model).*' "$dense_in" "$TMP/o.safetensors"
check "...naming it" grep -q "'re:(?!model).\*' is not a regular expression mkct can match" "$TMP/err"
check "no output left by any of them" [ ! -e "$TMP/o.safetensors" ]

# A full disk: the error names the output asked for (not the temporary
# copy), says it was not written or is unchanged, and leaves nothing behind.
# (Needs root for a small tmpfs.)
if [ "$(id -u)" = 0 ] && mkdir "$TMP/full" && mount -t tmpfs -o size=64K tmpfs "$TMP/full" 2>/dev/null; then
    cleanup_hooks="$cleanup_hooks umount '$TMP/full' 2>/dev/null;"
    "$MKCT" --sample "$TMP/smp"   # 3 MB dense
    expect_exit 2 "mkct on a full disk" "$MKCT" -q --format dense "$TMP/smp/compressed/model.safetensors" "$TMP/full/o.safetensors"
    check "...names the output and says it was not written" \
        grep -q "$TMP/full/o.safetensors: write error: No space left on device ($TMP/full/o.safetensors was not written)" "$TMP/err"
    echo keep >"$TMP/full/old.safetensors"
    expect_exit 2 "mkct --force over an existing file on a full disk" \
        "$MKCT" -q --force --format dense "$TMP/smp/compressed/model.safetensors" "$TMP/full/old.safetensors"
    check "...says it is unchanged" grep -q "(.*old.safetensors is unchanged)" "$TMP/err"
    check "...and it is" [ "$(cat "$TMP/full/old.safetensors")" = keep ]
    check "...no temporary file left" [ "$(ls "$TMP/full")" = old.safetensors ]
    umount "$TMP/full"
else
    echo "# (no full-disk checks: they need root to mount a small tmpfs)"
fi

# A model of more shards than the usual soft limit on open files: the
# programs raise it to the hard limit (here the soft one is set to 64).
if [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge 400 ]; then
    "$NPY_PYTHON" - "$TMP/many" <<'PY'
import json, os, struct, sys
d, n, wm = sys.argv[1], 300, {}
os.makedirs(d)
for i in range(n):
    name = "model-%05d-of-%05d.safetensors" % (i + 1, n)
    h = json.dumps({"t%d.weight" % i: {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}}, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    open(os.path.join(d, name), "wb").write(struct.pack("<Q", len(h)) + h + bytes(range(8)))
    wm["t%d.weight" % i] = name
json.dump({"metadata": {"total_size": 8 * n}, "weight_map": wm}, open(os.path.join(d, "model.safetensors.index.json"), "w"))
PY
    check "300 shards with a soft limit of 64 open files: ctls lists them" \
        sh -c "ulimit -Sn 64 && '$CTLS' '$TMP/many' | tail -1 | grep -q '^total: 300 tensors'"
    check "...and mkct decodes them" sh -c "ulimit -Sn 64 && '$MKCT' -q --format dense '$TMP/many' '$TMP/many.dense'"
else
    echo "# (no many-shard check: the hard limit on open files is $(ulimit -Hn))"
fi

# A FIFO in place of a checkpoint is refused at once (opening it for reading
# would wait for a writer forever).
mkfifo "$TMP/fifo.safetensors"
mkdir "$TMP/fifodir" && mkfifo "$TMP/fifodir/model.safetensors"
expect_exit 2 "ctls on a FIFO" timeout 20 "$CTLS" "$TMP/fifo.safetensors"
check "...saying why" grep -q "fifo.safetensors: not a readable regular file" "$TMP/err"
expect_exit 2 "mkct on a directory holding a FIFO shard" timeout 20 "$MKCT" --format dense "$TMP/fifodir" "$TMP/o"
check "...no output left" [ ! -e "$TMP/o" ]

# Exact listing of one case: the packed weight stores 2048 (packed) + 64
# (scale) + 16 (zero point) + 16 (weight_shape) bytes.
"$CTLS" "$case_dir/model.safetensors" >"$TMP/ls" 2>"$TMP/err"
cat >"$TMP/want" <<'WANT'
NAME                                 DTYPE    SHAPE      FORMAT                STORED         DENSE    RATIO
lm_head.weight                       BF16     [4, 8]     dense                     64            64    1.00x
model.layers.0.mlp.down_proj.weight  BF16     [16, 256]  pack-quantized          2144          8192    3.82x
model.norm.weight                    BF16     [8]        dense                     16            16    1.00x
total: 3 tensors, 2224 bytes stored, 8272 bytes dense, ratio 3.72x
WANT
check "ctls listing is exact" cmp -s "$TMP/ls" "$TMP/want"
# NAMEs: shell patterns pick the tensors listed, totals over those; a NAME
# matching nothing is said and makes the exit status 1 (the rest listed)
"$CTLS" "$case_dir/model.safetensors" '*.down_proj.*' lm_head.weight >"$TMP/ls" 2>"$TMP/err"
cat >"$TMP/want" <<'WANT'
NAME                                 DTYPE    SHAPE      FORMAT                STORED         DENSE    RATIO
lm_head.weight                       BF16     [4, 8]     dense                     64            64    1.00x
model.layers.0.mlp.down_proj.weight  BF16     [16, 256]  pack-quantized          2144          8192    3.82x
total: 2 tensors, 2208 bytes stored, 8256 bytes dense, ratio 3.74x
WANT
check "ctls SRC NAME...: the tensors matched, exactly" cmp -s "$TMP/ls" "$TMP/want"
expect_exit 1 "ctls SRC NAME matching nothing" "$CTLS" "$case_dir/model.safetensors" 'model.norm.*' 'no.such.*'
check "...says which NAME" grep -qx "ctls: no.such.\*: no tensor matches" "$TMP/err"
check "...and lists what the others match" sh -c "tail -1 '$TMP/out' | grep -qx 'total: 1 tensor, 16 bytes stored, 16 bytes dense, ratio 1.00x'"
# `ctls *.safetensors` in a sharded model: the other shards are not names
expect_exit 1 "ctls SHARD1 SHARD2...: refused" sh -c "cd '$sharded' && '$CTLS' *.safetensors"
check "...saying to give the directory" grep -q "model-00002-of-00004.safetensors is a file, not a tensor name: ctls lists one checkpoint (give a model directory for all its shards)" "$TMP/err"
check "...and listing nothing" [ ! -s "$TMP/out" ]
check "ctls --json SRC NAME: the matched tensors and their total" sh -c "'$CTLS' --json '$case_dir/model.safetensors' 'model.*' | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
assert [t[\"name\"] for t in d[\"tensors\"]] == [\"model.layers.0.mlp.down_proj.weight\", \"model.norm.weight\"], d
assert d[\"total\"] == {\"tensors\": 2, \"stored_bytes\": 2160, \"dense_bytes\": 8208, \"ratio\": 8208 / 2160}, d[\"total\"]
'"

# A dense file that holds quantization parameters (mkct --keep-qparams
# output): the listing, which is the dense view's, says what it leaves out
# (the weight_scale and weight_zero_point of a module whose weight is dense:
# 64 + 16 bytes), and --keep-qparams lists them.
"$MKCT" -q --format dense --keep-qparams "$case_dir/model.safetensors" "$TMP/kept.safetensors"
"$CTLS" "$TMP/kept.safetensors" >"$TMP/ls.kept"
check "ctls says which stored tensors it does not list" sh -c "tail -2 '$TMP/ls.kept' | tr -s ' ' >'$TMP/ls.tail' && printf '%s\n' \
    'total: 3 tensors, 8272 bytes stored, 8272 bytes dense, ratio 1.00x' \
    'not listed: 2 quantization parameters, 80 bytes stored (left out of the dense view; --keep-qparams lists them)' \
    | cmp -s - '$TMP/ls.tail'"
check "ctls --keep-qparams lists them" sh -c "'$CTLS' --keep-qparams '$TMP/kept.safetensors' | tail -1 | grep -qx 'total: 5 tensors, 8352 bytes stored, 8352 bytes dense, ratio 1.00x'"
check "ctls --json counts them" sh -c "'$CTLS' --json '$TMP/kept.safetensors' | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"not_listed\"] == {\"quantization_parameters\": 2, \"stored_bytes\": 80}, d'"

"$CTLS" --json "$REFVECTORS/ct-0.14.0.1/sparse_bitmask/sharded" >"$TMP/json"
check "ctls --json is valid JSON with 9 tensors and per-tensor shards" /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["total"]["tensors"] == 9, d["total"]
t = {x["name"]: x for x in d["tensors"]}
q = t["model.layers.0.self_attn.q_proj.weight"]
assert q["format"] == "sparse-bitmask" and q["dtype"] == "F32" and q["shape"] == [16, 37], q
assert q["dense_bytes"] == 16 * 37 * 4, q
assert d["total"]["dense_bytes"] == sum(x["dense_bytes"] for x in d["tensors"])
' "$TMP/json"

# Names in other scripts: the columns stay aligned on a terminal (a CJK
# character takes two columns, a combining accent none)
/usr/bin/python3 - "$TMP/uni.safetensors" <<'PY'
import json, struct, sys
names = ["\u6a21\u578b.\u6743\u91cd", "caf\u00e9.weight", "e\u0301t\u00e9", "plain.weight", "\U0001f642.bias"]
hdr, off = {}, 0
for n in names:
    hdr[n] = {"dtype": "U8", "shape": [2], "data_offsets": [off, off + 2]}; off += 2
h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bytes(off))
PY
"$CTLS" "$TMP/uni.safetensors" >"$TMP/uni.out"
check "ctls aligns its columns for wide and combining characters" /usr/bin/python3 -c '
import sys, unicodedata
def width(s):
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()[:6]
cols = {width(l[:l.index("U8" if i else "DTYPE")]) for i, l in enumerate(lines)}
assert len(lines) == 6 and len(cols) == 1, (cols, lines)
' "$TMP/uni.out"

# A config whose targets match nothing: written, and said
/usr/bin/python3 - "$TMP/tiny.safetensors" <<'PY'
import json, struct, sys
hdr = {"m.weight": {"dtype": "BF16", "shape": [2, 128], "data_offsets": [0, 512]}}
h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bytes(range(256)) * 2)
PY
"$MKCT" --scheme W4A16 --targets 're:nomatch' "$TMP/tiny.safetensors" "$TMP/nomatch.safetensors" 2>"$TMP/err"
check "targets matching nothing: mkct says nothing was compressed" \
    grep -qx "mkct: note: no weight matched the config's targets (less its ignore list): nothing in $TMP/nomatch.safetensors is compressed" "$TMP/err"
"$MKCT" --scheme W4A16 "$TMP/tiny.safetensors" "$TMP/match.safetensors" 2>"$TMP/err"
check "...and says nothing of the kind when a weight matched" sh -c "! grep -q 'no weight matched' '$TMP/err' && '$CTLS' '$TMP/match.safetensors' | grep -q pack-quantized"

# Control characters in names are escaped, never printed raw.
/usr/bin/python3 - "$TMP/odd.safetensors" <<'PY'
import json, struct, sys
hdr = {"evil\nname\x1b[31m": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}
h = json.dumps(hdr, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"\x01\x02")
PY
"$CTLS" "$TMP/odd.safetensors" >"$TMP/odd.out"
check "ctls escapes control characters in names" grep -q 'evil\\x0aname\\x1b\[31m' "$TMP/odd.out"
check "ctls prints no raw escape character" sh -c "! grep -q \"$(printf '\033')\" '$TMP/odd.out'"
check "ctls output has one line per tensor plus header and total" [ "$(wc -l <"$TMP/odd.out")" = 3 ]

# --force replaces an existing output atomically.
echo old >"$TMP/d.safetensors"
expect_exit 5 "mkct refuses an existing DST" "$MKCT" -q --format dense "$case_dir/model.safetensors" "$TMP/d.safetensors"
check "existing DST untouched" grep -qx old "$TMP/d.safetensors"
expect_exit 0 "mkct --force replaces DST" "$MKCT" -q --force --format dense "$case_dir/model.safetensors" "$TMP/d.safetensors"
check "replaced DST decodes to expected" "$STCMP" "$TMP/d.safetensors" "$case_dir/expected.safetensors"
check "no temporary files left" sh -c "[ \$(ls '$TMP' | grep -c tmp) = 0 ]"

# Configuration lookup: an explicit --config wins; a source with no config
# is inferred and says so.
cp "$case_dir/model.safetensors" "$TMP/alone.safetensors"
"$MKCT" --format dense "$TMP/alone.safetensors" "$TMP/alone.dense" 2>"$TMP/err"
check "without config, mkct says formats are inferred" grep -q "inferred from tensor names" "$TMP/err"
check "inferred decode still equals expected" "$STCMP" "$TMP/alone.dense" "$case_dir/expected.safetensors"
"$MKCT" --format dense --config "$case_dir/config.json" "$TMP/alone.safetensors" "$TMP/alone2.dense" 2>"$TMP/err"
check "--config is used and named" grep -q "config: $case_dir/config.json" "$TMP/err"

# a tensor with no elements is stored as it is: ratio 1.00x, not 0/0
/usr/bin/python3 - "$TMP/empty.safetensors" <<'PY'
import json, struct, sys
h = json.dumps({"e": {"dtype": "BF16", "shape": [0, 4], "data_offsets": [0, 0]}}, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h)
PY
"$CTLS" "$TMP/empty.safetensors" >"$TMP/out"
check "an empty tensor lists with ratio 1.00x" grep -q '^e  *BF16  *\[0, 4\]  *dense  *0  *0  *1\.00x$' "$TMP/out"

# An output that would replace or delete the input is refused, even with
# --force: DST the source, DST holding the source, DST inside a source
# directory.  The input is left as it was.
mkdir -p "$TMP/inv/A"
cp -r "$REFVECTORS/ct-0.14.0.1/sparse_bitmask/sharded" "$TMP/inv/A/src"
sum_before=$(cd "$TMP/inv" && find . -type f | sort | xargs md5sum | md5sum)
expect_exit 1 "--force onto a directory holding the source is refused" "$MKCT" -q --force --format dense "$TMP/inv/A/src" "$TMP/inv/A"
check "...saying so" grep -q "holds the source" "$TMP/err"
expect_exit 1 "an output inside the source directory is refused" "$MKCT" -q --format dense "$TMP/inv/A/src" "$TMP/inv/A/src/out"
check "...saying so" grep -q "inside the source directory" "$TMP/err"
expect_exit 1 "--force onto the source itself is refused" "$MKCT" -q --force --format sparse-bitmask "$TMP/inv/A/src" "$TMP/inv/A/src/"
f1="$TMP/inv/A/src/$(ls "$TMP/inv/A/src" | grep -m1 safetensors$)"
expect_exit 1 "--force onto the source file is refused" "$MKCT" -q --force --format dense "$f1" "$f1"
check "...saying so" grep -q "is the source" "$TMP/err"
check "the input is unchanged after all four" [ "$(cd "$TMP/inv" && find . -type f | sort | xargs md5sum | md5sum)" = "$sum_before" ]

# Interrupted (SIGTERM, SIGHUP; SIGINT alike, but a shell script's
# background job ignores it, and mkct leaves an ignored signal alone): the write in progress stops, its
# temporary is removed, nothing appears at DST, and mkct dies by the signal.
# The source is a 1 GiB dense view that is a hole on disk, so the write is
# still going when its temporary file shows up.
/usr/bin/python3 "$top_srcdir/tests/gen_huge_sparse.py" "$TMP/big.safetensors" 16384 32768
for sig in TERM HUP; do
    "$MKCT" -q --format dense "$TMP/big.safetensors" "$TMP/big.$sig.dense" 2>"$TMP/err.$sig" &
    mp=$!
    i=0
    while [ $i -lt 200 ] && ! ls "$TMP" | grep -q "^big\.$sig\.dense\.tmp\."; do sleep 0.02; i=$((i + 1)); done
    kill -$sig $mp
    wait $mp
    st=$?
    want=143; [ $sig = HUP ] && want=129
    check "SIG$sig: mkct dies by the signal (status $st)" [ "$st" = "$want" ]
    check "SIG$sig: no output and no temporary left" sh -c "! ls '$TMP' | grep -q '^big\.$sig\.dense'"
    check "SIG$sig: it says it was interrupted" grep -q "interrupted" "$TMP/err.$sig"
done
finish
