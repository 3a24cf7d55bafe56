#!/bin/sh
# The writer: `mkct --config CASE/config.json CASE/input.safetensors OUT`
# reproduces upstream's CASE/model.safetensors byte for byte (header and
# data; only the quantization_config entry mkct adds to __metadata__ is
# ignored) for every quantized reference case of both releases (3-bit
# packing differs between them and follows the config's version) and for
# the sparse ones, both from the calibrated inputs and, with the parameters
# computed by mkct's own observer, from the bare weights; what it writes
# decodes back to upstream's dense tensors; bad requests fail cleanly.
. "$top_srcdir/tests/programs/lib.sh"
need_refvectors
same_as_upstream() {
    /usr/bin/python3 - "$1" "$2" <<'PY'
import json, struct, sys
def load(f):
    b = open(f, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:], n
a, ad, an = load(sys.argv[1])
b, bd, bn = load(sys.argv[2])
ma, mb = a.pop("__metadata__", {}), b.pop("__metadata__", {})
qc = json.loads(ma.pop("quantization_config"))          # mkct describes the file
assert qc["quant_method"] == "compressed-tensors", qc
assert ma == mb, (ma, mb)
assert list(a.items()) == list(b.items()), "tensor entries or their order differ"
assert ad == bd, "tensor data differs"
PY
}
n=0
for c in "$REFVECTORS"/ct-0.18.0/w* "$REFVECTORS"/ct-0.14.0.1/w* "$REFVECTORS"/ct-0.14.0.1/sparse_*; do
    [ -f "$c/input.safetensors" ] || continue
    name=$(basename "$(dirname "$c")")/$(basename "$c")
    out="$TMP/$(echo "$name" | tr / _).safetensors"
    if "$MKCT" --config "$c/config.json" "$c/input.safetensors" "$out" 2>"$TMP/err"; then
        n=$((n + 1))
        check "$name: byte-identical to upstream's model.safetensors" same_as_upstream "$out" "$c/model.safetensors"
        "$MKCT" -q --format dense "$out" "$out.dense" 2>"$TMP/err" || not_ok "$name: decode of mkct output: $(cat "$TMP/err")"
        check "$name: mkct's output decodes to upstream's dense tensors" "$STCMP" "$out.dense" "$c/expected.safetensors"
    else
        not_ok "$name: mkct failed: $(cat "$TMP/err")"
    fi
done
check "24 cases written" [ "$n" = 24 ]

# Without any stored qparams, mkct computes them as upstream's min-max
# observer does and must still write upstream's exact file (activation
# order excepted: its g_idx comes from GPTQ calibration data).
m=0
for c in "$REFVECTORS"/ct-0.18.0/w* "$REFVECTORS"/ct-0.14.0.1/w*; do
    case $c in *actorder*) continue ;; esac
    name=$(basename "$(dirname "$c")")_$(basename "$c")
    /usr/bin/python3 - "$c/input.safetensors" "$TMP/$name.bare" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h, d = json.loads(b[8:8 + n]), b[8 + n:]
out, off, blobs = {}, 0, []
for k, v in h.items():
    if k == "__metadata__" or k.endswith((".weight_scale", ".weight_zero_point", ".weight_g_idx")):
        continue
    data = d[v["data_offsets"][0]:v["data_offsets"][1]]
    out[k] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [off, off + len(data)]}
    off += len(data)
    blobs.append(data)
hh = json.dumps(out).encode()
hh += b" " * (-len(hh) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hh)) + hh + b"".join(blobs))
PY
    if "$MKCT" --config "$c/config.json" "$TMP/$name.bare" "$TMP/$name.obs" 2>"$TMP/err"; then
        m=$((m + 1))
        check "$name: computed qparams give upstream's exact file" same_as_upstream "$TMP/$name.obs" "$c/model.safetensors"
    else
        not_ok "$name: mkct failed: $(cat "$TMP/err")"
    fi
done
check "20 cases calibrated" [ "$m" = 20 ]

# Preset schemes are the same configs as the matching reference cases.
for pair in W4A16:w4a16_g128_sym_bf16 W4A16_ASYM:w4a16_g128_asym_bf16 W8A16:w8a16_channel_sym_bf16 \
            W8A8:w8a8_channel_sym_bf16; do
    scheme=${pair%%:*} case=${pair#*:}
    if "$MKCT" --scheme "$scheme" "$TMP/ct-0.18.0_$case.bare" "$TMP/$scheme.scheme" 2>"$TMP/err"; then
        check "--scheme $scheme writes upstream's $case file" same_as_upstream "$TMP/$scheme.scheme" \
            "$REFVECTORS/ct-0.18.0/$case/model.safetensors"
    else
        not_ok "--scheme $scheme: $(cat "$TMP/err")"
    fi
done
expect_exit 4 "schemes needing activation calibration are refused clearly" "$MKCT" --scheme FP8 "$TMP/ct-0.18.0_w4a16_g128_sym_bf16.bare" "$TMP/x.safetensors"
expect_exit 1 "unknown scheme" "$MKCT" --scheme W5A3 "$TMP/ct-0.18.0_w4a16_g128_sym_bf16.bare" "$TMP/x.safetensors"

# Round trips on a generated 2-layer checkpoint in F32, F16 and BF16: each
# format written, read back by the core reader, equals numpy's expectation.
/usr/bin/python3 "$top_srcdir/tests/gen_roundtrip.py" make "$TMP"
for dt in f32 f16 bf16; do
    for kind in sparse-bitmask sparse-24-bitmask W4A16 W4A16_ASYM W8A16 W8A8 FP8_DYNAMIC; do
        case $kind in sparse*) how="--format $kind" ;; *) how="--scheme $kind" ;; esac
        out="$TMP/rt.$dt.$kind"
        if "$MKCT" $how "$TMP/$dt.safetensors" "$out" 2>"$TMP/err" && "$MKCT" -q --format dense "$out" "$out.dense" 2>>"$TMP/err"; then
            check "$dt $kind: written, read back as expected" /usr/bin/python3 "$top_srcdir/tests/gen_roundtrip.py" check "$kind" "$TMP/$dt.safetensors" "$out.dense"
        else
            not_ok "$dt $kind: $(cat "$TMP/err")"
        fi
    done
done

# Directories: a sharded dense model (upstream's sparse vector decoded by
# mkct) compressed to sparse-bitmask shard by shard, its index and config
# rewritten, then decoded back: the same dense tensors.
sh="$REFVECTORS/ct-0.14.0.1/sparse_bitmask/sharded"
"$MKCT" -q --format dense "$sh" "$TMP/sh.dense"
echo "notes" >"$TMP/sh.dense/README.md"
if "$MKCT" --format sparse-bitmask "$TMP/sh.dense" "$TMP/sh.sparse" 2>"$TMP/err"; then
    check "dir: the same shard files" sh -c "[ \"\$(ls '$TMP/sh.sparse' | grep -c safetensors\$)\" = 4 ]"
    check "dir: index lists the compressed names" grep -q '"model.layers.0.self_attn.q_proj.bitmask": "model-0000' "$TMP/sh.sparse/model.safetensors.index.json"
    check "dir: config.json holds the sparsity config" grep -q '"format": "sparse-bitmask"' "$TMP/sh.sparse/config.json"
    check "dir: other files copied" cmp -s "$TMP/sh.dense/README.md" "$TMP/sh.sparse/README.md"
    "$MKCT" -q --format dense "$TMP/sh.sparse" "$TMP/sh.back"
    "$top_builddir/tests/stmerge" "$TMP/a.st" "$TMP"/sh.dense/model-*.safetensors
    "$top_builddir/tests/stmerge" "$TMP/b.st" "$TMP"/sh.back/model-*.safetensors
    check "dir: decodes back to the same dense tensors" "$STCMP" "$TMP/b.st" "$TMP/a.st"
    check "dir: ...which are upstream's" "$STCMP" "$TMP/b.st" "$REFVECTORS/ct-0.14.0.1/sparse_bitmask/expected.safetensors"
else
    not_ok "dir: mkct failed: $(cat "$TMP/err")"
fi
expect_exit 5 "dir: existing DST refused" "$MKCT" --format sparse-bitmask "$TMP/sh.dense" "$TMP/sh.sparse"
check "dir: no temporary directories left" sh -c "! ls '$TMP' | grep -q '\.tmp\.'"

# --verify: reads what was written back through the core reader; and it
# catches a corrupted file (one packed word flipped).
"$MKCT" --scheme W4A16 --verify "$TMP/bf16.safetensors" "$TMP/v.safetensors" 2>"$TMP/err"
check "--verify accepts a good file" grep -q "^mkct: verified" "$TMP/err"
/usr/bin/python3 - "$TMP/v.safetensors" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
off = 8 + n + h["model.layers.0.mlp.up_proj.weight_packed"]["data_offsets"][0] + 40
b[off:off + 4] = bytes(x ^ 0x88 for x in b[off:off + 4])   # flip the top bit of every nibble
open(sys.argv[1], "wb").write(b)
PY
expect_exit 3 "--verify rejects a corrupted file" "$MKCT" --verify "$TMP/bf16.safetensors" "$TMP/v.safetensors"
check "...naming the tensor" grep -q "up_proj.weight' \[" "$TMP/err"

c="$REFVECTORS/ct-0.18.0/w4a16_g128_sym_bf16"
expect_exit 5 "existing DST refused" "$MKCT" --config "$c/config.json" "$c/input.safetensors" "$out"
sed 's/"group_size": 128/"group_size": 96/' "$c/config.json" >"$TMP/g96.json"
expect_exit 3 "group size not dividing the columns" "$MKCT" --config "$TMP/g96.json" "$TMP/ct-0.18.0_w4a16_g128_sym_bf16.bare" "$TMP/x.safetensors"
check "the message says why" grep -q "not divisible by group size 96" "$TMP/err"
check "failed runs leave no output" sh -c "! ls '$TMP' | grep -q '^x.safetensors'"
finish
