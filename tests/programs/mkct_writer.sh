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
expect_exit 4 "static activation schemes without calibrated input scales are refused" "$MKCT" --scheme FP8 "$TMP/ct-0.18.0_w4a16_g128_sym_bf16.bare" "$TMP/x.safetensors"
check "...saying what is missing" grep -q "needs a calibrated '.*input_scale'" "$TMP/err"
expect_exit 4 "...NVFP4 (W4A4) too" "$MKCT" --scheme NVFP4 "$TMP/ct-0.18.0_w4a16_g128_sym_bf16.bare" "$TMP/x.safetensors"
check "...saying what is missing" grep -q "input_global_scale" "$TMP/err"
expect_exit 1 "unknown scheme" "$MKCT" --scheme W5A3 "$TMP/ct-0.18.0_w4a16_g128_sym_bf16.bare" "$TMP/x.safetensors"

# Round trips on a generated 2-layer checkpoint in F32, F16 and BF16: each
# format written, read back by the core reader, equals numpy's expectation.
/usr/bin/python3 "$top_srcdir/tests/gen_roundtrip.py" make "$TMP"
for dt in f32 f16 bf16; do
    for kind in dense sparse-bitmask sparse-24-bitmask W4A16 W4A16_ASYM W8A16 W8A8 FP8_DYNAMIC FP8_BLOCK NVFP4A16; do
        case $kind in sparse*|dense) how="--format $kind" ;; *) how="--scheme $kind" ;; esac
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
mkdir -p "$TMP/sh.dense/original/sub" "$TMP/sh.dense/.git"
echo '{"dim": 8}' >"$TMP/sh.dense/original/params.json"
echo "deep" >"$TMP/sh.dense/original/sub/deep.txt"
echo "ref" >"$TMP/sh.dense/.git/HEAD"
if "$MKCT" --format sparse-bitmask "$TMP/sh.dense" "$TMP/sh.sparse" 2>"$TMP/err"; then
    check "dir: the same shard files" sh -c "[ \"\$(ls '$TMP/sh.sparse' | grep -c safetensors\$)\" = \"\$(ls '$sh' | grep -c safetensors\$)\" ]"
    check "dir: index lists the compressed names" grep -q '"model.layers.0.self_attn.q_proj.bitmask": "model-0000' "$TMP/sh.sparse/model.safetensors.index.json"
    check "dir: config.json holds the sparsity config" grep -q '"format": "sparse-bitmask"' "$TMP/sh.sparse/config.json"
    check "dir: other files copied" cmp -s "$TMP/sh.dense/README.md" "$TMP/sh.sparse/README.md"
    check "dir: ...and subdirectories, with what they hold" \
        sh -c "cmp -s '$TMP/sh.dense/original/params.json' '$TMP/sh.sparse/original/params.json' &&
               cmp -s '$TMP/sh.dense/original/sub/deep.txt' '$TMP/sh.sparse/original/sub/deep.txt'"
    check "dir: ...but no dot files (.git)" [ ! -e "$TMP/sh.sparse/.git" ]
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

# A quantized --format alone takes upstream's usual scheme for it.
for pair in pack-quantized:W4A16 int-quantized:W8A8 float-quantized:FP8_DYNAMIC nvfp4-pack-quantized:NVFP4A16; do
    f=${pair%%:*} sc=${pair#*:}
    "$MKCT" -q --format "$f" "$TMP/bf16.safetensors" "$TMP/fmt.$f" 2>"$TMP/err"
    check "--format $f alone is --scheme $sc" cmp "$TMP/fmt.$f" "$TMP/rt.bf16.$sc"
done

# FP8 (static activations) from a checkpoint holding calibrated
# input_scale tensors: weights quantized per tensor, input_scale kept.
/usr/bin/python3 - "$TMP/bf16.safetensors" "$TMP/calib.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h, data = json.loads(b[8:8 + n]), b[8 + n:]
end = len(data)
for k in list(h):
    if k.endswith("proj.weight"):
        h[k[:-len("weight")] + "input_scale"] = {"dtype": "BF16", "shape": [1], "data_offsets": [end, end + 2]}
        data += bytes([0x80, 0x3c])          # 2^-6
        end += 2
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + data)
PY
if "$MKCT" --scheme FP8 "$TMP/calib.safetensors" "$TMP/fp8.st" 2>"$TMP/err"; then
    "$MKCT" -q --format dense "$TMP/fp8.st" "$TMP/fp8.dense2"
    check "FP8: weights as numpy quantizes them per tensor" /usr/bin/python3 "$top_srcdir/tests/gen_roundtrip.py" check FP8 "$TMP/bf16.safetensors" "$TMP/fp8.dense2"
    check "FP8: the calibrated input_scale tensors are kept" sh -c "[ \"\$(head -c 65536 '$TMP/fp8.st' | grep -ao 'proj\.input_scale\"' | wc -l)\" = 14 ]"
else
    not_ok "FP8 with calibrated input scales: $(cat "$TMP/err")"
fi

# -j: the same bytes whatever the number of threads; progress is reported.
"$MKCT" -j 1 --scheme W4A16_ASYM "$TMP/bf16.safetensors" "$TMP/j1.st" 2>/dev/null
"$MKCT" -j 3 --progress --scheme W4A16_ASYM "$TMP/bf16.safetensors" "$TMP/j3.st" 2>"$TMP/err"
check "-j 3 writes the same file as -j 1" cmp "$TMP/j1.st" "$TMP/j3.st"
check "--progress reports tensors, bytes and rate" grep -q "17/17 tensors .* MiB/s" "$TMP/err"
expect_exit 1 "-j 0 is a usage error" "$MKCT" -j 0 --scheme W4A16 "$TMP/bf16.safetensors" "$TMP/x.safetensors"

# --shard-size: the output split into model-0000i-of-0000n files of at most
# that size, an index naming every tensor, modules kept whole; decoding it
# gives what the unsharded output gives; --verify checks directories.
if "$MKCT" -q --scheme W4A16_ASYM --shard-size 100K "$TMP/bf16.safetensors" "$TMP/shards" 2>"$TMP/err"; then
    n_sh=$(ls "$TMP/shards" | grep -c '^model-.*-of-.*\.safetensors$')
    check "shards: several files" [ "$n_sh" -ge 2 ]
    check "shards: the index names every tensor; none over the size unless one module" /usr/bin/python3 - "$TMP/shards" "$TMP/j1.st" <<'PY'
import json, os, struct, sys
d = sys.argv[1]
ix = json.load(open(os.path.join(d, "model.safetensors.index.json")))
seen = {}
for f in sorted(set(ix["weight_map"].values())):
    b = open(os.path.join(d, f), "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    size, mods = 0, set()
    for k, v in json.loads(b[8:8 + n]).items():
        if k != "__metadata__":
            seen[k] = f
            assert ix["weight_map"][k] == f, k
            size += v["data_offsets"][1] - v["data_offsets"][0]
            mods.add(k.rsplit(".", 1)[0])
    assert size <= 100 * 1024 or len(mods) == 1, (f, size, mods)
b = open(sys.argv[2], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
want = {k: v for k, v in json.loads(b[8:8 + n]).items() if k != "__metadata__"}
assert set(seen) == set(want) == set(ix["weight_map"]), set(seen) ^ set(want)
assert ix["metadata"]["total_size"] == sum(v["data_offsets"][1] - v["data_offsets"][0] for v in want.values())
mods = {}
for k, f in seen.items():
    mods.setdefault(k.rsplit(".", 1)[0], set()).add(f)
assert all(len(v) == 1 for v in mods.values()), "a module split across shards"
PY
    check "shards: config.json written" grep -q '"quant_method": "compressed-tensors"' "$TMP/shards/config.json"
    "$MKCT" -q --format dense "$TMP/shards" "$TMP/shards.dense"
    "$MKCT" -q --format dense "$TMP/j1.st" "$TMP/j1.dense"
    "$top_builddir/tests/stmerge" "$TMP/shm.st" "$TMP"/shards.dense/model-*.safetensors
    check "shards: decode to the unsharded output's tensors" "$STCMP" "$TMP/shm.st" "$TMP/j1.dense"
    "$MKCT" --verify "$TMP/bf16.safetensors" "$TMP/shards" 2>"$TMP/err"
    check "--verify checks a sharded directory" grep -q "^mkct: verified" "$TMP/err"
else
    not_ok "--shard-size: $(cat "$TMP/err")"
fi
expect_exit 1 "--shard-size needs a size" "$MKCT" --scheme W4A16 --shard-size lots "$TMP/bf16.safetensors" "$TMP/x"
check "no spill or temporary files left beside the outputs" sh -c "! ls -a '$TMP' | grep -q -e spill -e '\.tmp'"

# config.json rewritten as transformers writes it (json.dumps, indent=2,
# sort_keys): every other field as Python prints it after json.load: floats
# stay floats (rope_theta 500000.0), integers keep every digit, floats in
# Python's repr (random doubles of every magnitude), NaN and Infinity (which
# Python's json reads and writes), text escaped.
mkdir -p "$TMP/cfgsrc"
"$MKCT" -q --format dense "$REFVECTORS/ct-0.18.0/w4a16_g128_sym_bf16/model.safetensors" "$TMP/cfgsrc/model.safetensors"
/usr/bin/python3 - "$TMP/cfgsrc/config.json" "$REFVECTORS/ct-0.18.0/w4a16_g128_sym_bf16/config.json" <<'PY'
import json, os, random, struct, sys
r = random.Random(11)
cfg = {"architectures": ["LlamaForCausalLM"], "rope_theta": 500000.0, "rms_norm_eps": 1e-05, "x_neg0": -0.0,
       "x_big_int": 12345678901234567890123, "x_neg_int": -7, "x_1e15": 1e15, "x_1e16": 1e16, "x_1e-4": 1e-4,
       "x_1e-5": 1e-5, "x_min": 5e-324, "x_max": 1.7976931348623157e308, "name": "caf\u00e9 \U0001f600",
       "x_nan": float("nan"), "x_inf": float("inf"), "x_ninf": [float("-inf")], "NaN": "Infinity",
       "nested": {"b": [1, 2.5, None, True, False, {}, []], "a": {"c": 0.1}},
       "quantization_config": json.load(open(sys.argv[2]))["quantization_config"]}
cfg["floats"] = [struct.unpack("<d", struct.pack("<Q", r.getrandbits(64)))[0] for _ in range(400)]
cfg["floats"] = [f for f in cfg["floats"] if f == f and abs(f) != float("inf")]
cfg["scaled"] = [r.random() * 10 ** r.randint(-30, 30) for _ in range(400)] + [float(r.randint(0, 10**18)) for _ in range(50)]
open(sys.argv[1], "w").write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
# an index as newer transformers write it: metadata with total_parameters
d = os.path.dirname(sys.argv[1])
raw = open(os.path.join(d, "model.safetensors"), "rb").read()
hdr = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
hdr.pop("__metadata__", None)
ix = {"metadata": {"total_parameters": 8030261248, "total_size": len(raw)},
      "weight_map": {k: "model.safetensors" for k in hdr}}
open(os.path.join(d, "model.safetensors.index.json"), "w").write(json.dumps(ix, indent=2, sort_keys=True) + "\n")
PY
if "$MKCT" -q --format sparse-bitmask "$TMP/cfgsrc" "$TMP/cfgsparse" 2>"$TMP/err" &&
   "$MKCT" -q --format dense "$TMP/cfgsparse" "$TMP/cfgdense" 2>"$TMP/err"; then
    check "config.json: compressing keeps every other field as Python writes it" /usr/bin/python3 - \
        "$TMP/cfgsrc/config.json" "$TMP/cfgsparse/config.json" <<'PY'
import json, sys
src, out = json.load(open(sys.argv[1])), open(sys.argv[2]).read()
src["quantization_config"] = json.loads(out)["quantization_config"]     # what mkct made
assert out == json.dumps(src, indent=2, sort_keys=True) + "\n"
PY
    check "config.json: decompressing writes it without the compression config, as Python would" /usr/bin/python3 - \
        "$TMP/cfgsrc/config.json" "$TMP/cfgdense/config.json" <<'PY'
import json, sys
src, out = json.load(open(sys.argv[1])), open(sys.argv[2]).read()
del src["quantization_config"]
assert out == json.dumps(src, indent=2, sort_keys=True) + "\n"
PY
    check "index: the metadata keeps total_parameters, total_size is the new one" /usr/bin/python3 - \
        "$TMP/cfgsparse" "$TMP/cfgdense" <<'PY'
import json, os, struct, sys
for d in sys.argv[1:]:
    ix = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    total = 0
    for f in set(ix["weight_map"].values()):
        raw = open(os.path.join(d, f), "rb").read()
        hdr = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
        hdr.pop("__metadata__", None)
        total += sum(v["data_offsets"][1] - v["data_offsets"][0] for v in hdr.values())
    assert ix["metadata"] == {"total_parameters": 8030261248, "total_size": total}, (d, ix["metadata"], total)
PY
    # a config.json with no compression config in it is copied as it is
    mkdir -p "$TMP/cfgplain"
    cp "$TMP/cfgsparse"/*.safetensors "$TMP/cfgsparse/model.safetensors.index.json" "$TMP/cfgplain/"
    printf '{"rope_theta":5e5,  "x": [1.50]}' >"$TMP/cfgplain/config.json"
    "$MKCT" -q --format dense --config "$TMP/cfgsparse/config.json" "$TMP/cfgplain" "$TMP/cfgplain.dense"
    check "config.json without a compression config: copied byte for byte" \
        cmp -s "$TMP/cfgplain/config.json" "$TMP/cfgplain.dense/config.json"
else
    not_ok "config.json round trip: $(cat "$TMP/err")"
fi

# NaN and infinite weights: every scheme compresses them (a NaN quotient
# becomes code 0 rather than an undefined conversion; the sanitizer build
# checks float-to-integer conversions) and the output decodes; a group with
# none of them decodes as usual.
/usr/bin/python3 - "$TMP/nanw.safetensors" <<'PY'
import json, struct, sys
import numpy as np
w = np.random.default_rng(3).standard_normal((8, 256)).astype(np.float32)
w[0, 5], w[1, 7], w[2, 9], w[3, :] = np.nan, np.inf, -np.inf, 0.0
bf = (w.view(np.uint32) >> 16).astype(np.uint16)
hdr = {"__metadata__": {"format": "pt"}, "m.weight": {"dtype": "BF16", "shape": [8, 256], "data_offsets": [0, bf.nbytes]}}
h = json.dumps(hdr, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bf.tobytes())
PY
for s in W4A16 W4A16_ASYM W8A8 FP8_DYNAMIC FP8_BLOCK NVFP4A16; do
    rm -rf "$TMP/nan.st" "$TMP/nan.dense"
    if "$MKCT" -q --scheme $s --ignore none "$TMP/nanw.safetensors" "$TMP/nan.st" 2>"$TMP/err" &&
       "$MKCT" -q --format dense "$TMP/nan.st" "$TMP/nan.dense" 2>>"$TMP/err"; then
        # (per-row schemes: the other rows are untouched; a 128x128 block or
        # NVFP4's per-tensor global scale takes the NaN to every row)
        case $s in FP8_BLOCK|NVFP4A16) mode=shape ;; *) mode=rows ;; esac
        check "NaN/inf weights, $s: compressed and decoded ($mode)" /usr/bin/python3 - \
            "$TMP/nanw.safetensors" "$TMP/nan.dense" $mode <<'PY'
import json, struct, sys
import numpy as np
def load(f):
    b = open(f, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); t = h["m.weight"]
    a = np.frombuffer(b[8 + n + t["data_offsets"][0]:8 + n + t["data_offsets"][1]], np.uint16).astype(np.uint32) << 16
    return a.view(np.float32).reshape(t["shape"])
src, out = load(sys.argv[1]), load(sys.argv[2])
assert out.shape == (8, 256)
if sys.argv[3] == "shape":
    sys.exit(0)
assert (out[3] == 0).all(), out[3]
fin = src[4:]
assert np.isfinite(out[4:]).all() and np.abs(out[4:] - fin).max() <= 0.5 * np.abs(fin).max(), np.abs(out[4:] - fin).max()
PY
    else
        not_ok "NaN/inf weights, $s: $(cat "$TMP/err")"
    fi
done

c="$REFVECTORS/ct-0.18.0/w4a16_g128_sym_bf16"
expect_exit 5 "existing DST refused" "$MKCT" --config "$c/config.json" "$c/input.safetensors" "$out"
sed 's/"group_size": 128/"group_size": 96/' "$c/config.json" >"$TMP/g96.json"
expect_exit 3 "group size not dividing the columns" "$MKCT" --config "$TMP/g96.json" "$TMP/ct-0.18.0_w4a16_g128_sym_bf16.bare" "$TMP/x.safetensors"
check "the message says why" grep -q "not divisible by group size 96" "$TMP/err"
check "failed runs leave no output" sh -c "! ls '$TMP' | grep -q '^x.safetensors'"

# Sparsity stacked on quantization (note 2.9): the int8/FP8 codes are
# compressed again.  A 2:4-sparse weight; int8 channel codes under
# sparse-bitmask decode exactly as without it; under sparse-24-bitmask too,
# but for the codes -128, which upstream's ranking drops (torch's int8
# abs(-128) wraps to -128, below the zeros of the group)
c8=$REFVECTORS/ct-0.18.0/w8a8_channel_sym_bf16
/usr/bin/python3 - "$TMP" <<'PY'
import json, struct, sys
import numpy as np
t = sys.argv[1]
rng = np.random.default_rng(7)
w = rng.standard_normal((16, 64)).astype(np.float32)
for g in range(0, 64, 4):                       # two zeros in every group of four
    for r in range(16):
        w[r, g + rng.permutation(4)[:2]] = 0
w[3, 9] = -7.96875                              # the row minimum: scale 7.96875/127.5 = 1/16 exactly, code -127.5 -> -128
bf = (w.view(np.uint32) >> 16).astype(np.uint16)
hdr = {"m.weight": {"dtype": "BF16", "shape": [16, 64], "data_offsets": [0, bf.nbytes]}}
h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
open(t + "/s24in.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + bf.tobytes())
base = {"quant_method": "compressed-tensors", "format": "int-quantized", "version": "0.14.0.1",
        "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 8, "strategy": "channel",
                                                                   "symmetric": True, "type": "int"}}}}
json.dump({"quantization_config": base}, open(t + "/q8.json", "w"))
for f, st in (("sparse-bitmask", "unstructured"), ("sparse-24-bitmask", "2:4")):
    c = json.loads(json.dumps(base))
    c["sparsity_config"] = {"format": f, "sparsity_structure": st, "targets": ["Linear"], "ignore": []}
    json.dump({"quantization_config": c}, open(t + "/q8." + f + ".json", "w"))
fp8 = json.loads(json.dumps(base)); fp8["format"] = "float-quantized"
fp8["config_groups"]["g"]["weights"] = {"num_bits": 8, "strategy": "channel", "symmetric": True, "type": "float"}
json.dump({"quantization_config": fp8}, open(t + "/f8.json", "w"))
fp8["sparsity_config"] = {"format": "sparse-24-bitmask", "sparsity_structure": "2:4", "targets": ["Linear"], "ignore": []}
json.dump({"quantization_config": fp8}, open(t + "/f8.s24.json", "w"))
PY
for c in q8 q8.sparse-bitmask q8.sparse-24-bitmask f8 f8.s24; do
    "$MKCT" -q --config "$TMP/$c.json" "$TMP/s24in.safetensors" "$TMP/$c.st.safetensors" 2>"$TMP/err" &&
        "$MKCT" -q --format dense "$TMP/$c.st.safetensors" "$TMP/$c.dense.safetensors" 2>>"$TMP/err" ||
        not_ok "stacked $c: $(cat "$TMP/err")"
done
check "stacked: stored as upstream stores it (.compressed codes, .bitmask, .shape, .weight_scale; no .weight)" \
    /usr/bin/python3 - "$TMP" <<'PY'
import json, struct, sys
def hdr(f):
    b = open(f, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__"); return h
t = sys.argv[1]
for c, dt, vshape in (("q8.sparse-24-bitmask", "I8", [16, 32]), ("f8.s24", "F8_E4M3", [16, 32])):
    h = hdr(t + "/" + c + ".st.safetensors")
    assert sorted(h) == ["m.bitmask", "m.compressed", "m.shape", "m.weight_scale"], (c, sorted(h))
    assert h["m.compressed"]["dtype"] == dt and h["m.compressed"]["shape"] == vshape, (c, h["m.compressed"])
    assert h["m.bitmask"]["shape"] == [16, 8] and h["m.shape"]["shape"] == [2, 1], (c, h)
h = hdr(t + "/q8.sparse-bitmask.st.safetensors")
assert sorted(h) == ["m.bitmask", "m.compressed", "m.row_offsets", "m.shape", "m.weight_scale"], sorted(h)
assert h["m.compressed"]["dtype"] == "I8", h
PY
check "sparse-bitmask over int8: decodes exactly as the int8 alone" cmp -s "$TMP/q8.sparse-bitmask.dense.safetensors" "$TMP/q8.dense.safetensors"
check "sparse-24-bitmask over FP8: decodes exactly as the FP8 alone (no non-zero FP8 code ranks below a zero)" cmp -s "$TMP/f8.s24.dense.safetensors" "$TMP/f8.dense.safetensors"
check "sparse-24-bitmask over int8: the same but for the -128 codes, dropped" /usr/bin/python3 - "$TMP" <<'PY'
import json, struct, sys
import numpy as np
def w(f):
    b = open(f, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])["m.weight"]
    a = np.frombuffer(b[8 + n + h["data_offsets"][0]:8 + n + h["data_offsets"][1]], np.uint16).reshape(h["shape"])
    return (a.astype(np.uint32) << 16).view(np.float32)
t = sys.argv[1]
q, s = w(t + "/q8.dense.safetensors"), w(t + "/q8.sparse-24-bitmask.dense.safetensors")
d = q != s
assert d.any() and d[3, 9], "the planted -128 code was kept"
assert (s[d] == 0).all() and (q[d] == q.min(axis=1, keepdims=True).repeat(64, 1)[d]).all(), np.argwhere(d)
PY
# over a packed format the sparsity entry is informational (upstream: no
# .weight is left to compress): written, the tensors exactly upstream's
c4=$REFVECTORS/ct-0.18.0/w4a16_g128_sym_bf16
/usr/bin/python3 - "$c4/config.json" "$TMP/w4s.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["quantization_config"]["sparsity_config"] = {"format": "sparse-24-bitmask", "sparsity_structure": "2:4",
                                               "targets": ["Linear"], "ignore": ["lm_head"]}
json.dump(c, open(sys.argv[2], "w"))
PY
"$MKCT" -q --config "$TMP/w4s.json" "$c4/input.safetensors" "$TMP/w4s.safetensors"
check "pack-quantized with an informational sparsity entry: upstream's tensors" same_as_upstream "$TMP/w4s.safetensors" "$c4/model.safetensors"

# Converting a compressed checkpoint: mkct reads it through its dense view.
# Every case converted to sparse-bitmask (lossless) decodes to the same
# dense checkpoint as the case itself; a sparse case converted with its own
# config gives upstream's file again; the sharded case keeps its shards but
# one that would hold nothing (its source shard held only pieces of modules
# stored elsewhere).
for c in "$REFVECTORS"/ct-*/*/model.safetensors "$REFVECTORS"/ct-*/*/sharded; do
    name=$(echo "${c#$REFVECTORS/}" | tr / _)
    if [ -d "$c" ]; then o=$TMP/tc.$name ext=; else o=$TMP/tc.$name.safetensors ext=.safetensors; fi
    "$MKCT" -q --format sparse-bitmask "$c" "$o" 2>"$TMP/err" || { not_ok "$name: conversion to sparse-bitmask failed: $(cat "$TMP/err")"; continue; }
    "$MKCT" -q --format dense "$o" "$TMP/tcd.$name$ext" && "$MKCT" -q --format dense "$c" "$TMP/tce.$name$ext" || { not_ok "$name: decoding failed"; continue; }
    if [ -d "$c" ]; then
        check "$name: compressed -> sparse-bitmask -> dense equals its own dense shards" /usr/bin/python3 - "$TMP/tcd.$name" "$TMP/tce.$name" <<'PY'
import json, os, struct, sys
def tensors(f):
    b = open(f, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
got, want = sys.argv[1], sys.argv[2]
shards = sorted(f for f in os.listdir(want) if f.endswith(".safetensors"))
assert len(shards) > 1, shards
for f in shards:
    w = tensors(os.path.join(want, f))
    if os.path.exists(os.path.join(got, f)):
        assert open(os.path.join(got, f), "rb").read() == open(os.path.join(want, f), "rb").read(), f
    else:
        assert w == {}, (f, "missing, but its dense shard holds", sorted(w))
PY
    else
        check "$name: compressed -> sparse-bitmask -> dense equals its own dense view" cmp -s "$TMP/tcd.$name$ext" "$TMP/tce.$name$ext"
    fi
done
for c in "$REFVECTORS"/ct-0.14.0.1/sparse_*; do
    name=$(echo "${c#$REFVECTORS/}" | tr / _)
    "$MKCT" -q --config "$c/config.json" "$c/model.safetensors" "$TMP/again.$name.safetensors"
    check "$name: upstream's compressed file converted with its own config is upstream's file" \
        same_as_upstream "$TMP/again.$name.safetensors" "$c/model.safetensors"
done
sh_src=$REFVECTORS/ct-0.14.0.1/sparse_bitmask/sharded
"$MKCT" -q --config "$sh_src/config.json" "$sh_src" "$TMP/again.sharded"
check "the sharded case converted with its own config: every shard in the index exists, no other" /usr/bin/python3 - "$TMP/again.sharded" <<'PY'
import json, os, sys
d = sys.argv[1]
named = set(json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"].values())
files = set(f for f in os.listdir(d) if f.endswith(".safetensors"))
assert named == files and len(files) > 1, (named, files)
PY
# a SparseML-era source (top-level sparsity_config): the converted
# config.json holds the new config, not the old one beside it
mkdir -p "$TMP/sml"
cp "$REFVECTORS/ct-0.14.0.1/sparse_bitmask/model.safetensors" "$TMP/sml/"
/usr/bin/python3 - "$REFVECTORS/ct-0.14.0.1/sparse_bitmask/config.json" "$TMP/sml/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["sparsity_config"] = c.pop("quantization_config")["sparsity_config"]; c["hidden_size"] = 8
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
"$MKCT" -q --scheme W8A16 "$TMP/sml" "$TMP/sml.out"
check "a SparseML-era source converted: config.json keeps its fields, the old sparsity_config gone" /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert sorted(d) == ["hidden_size", "quantization_config"] and d["hidden_size"] == 8, d
assert d["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] == 8, d
' "$TMP/sml.out/config.json"
"$MKCT" --sample "$TMP/smp" >/dev/null 2>&1
"$MKCT" -q --scheme W4A16 "$TMP/smp/compressed" "$TMP/smp.tc" && "$MKCT" -q --scheme W4A16 "$TMP/smp/reference.safetensors" "$TMP/smp.ref.safetensors"
check "W4A16 from the compressed sample equals W4A16 from its dense tensors" cmp -s "$TMP/smp.tc/model.safetensors" "$TMP/smp.ref.safetensors"
expect_exit 0 "--verify of that conversion against the compressed source" "$MKCT" -q --verify "$TMP/smp/compressed" "$TMP/smp.tc"
# FP8 with static activations: the calibrated input_scale tensors of a
# compressed source are kept (its weight scales are not: new ones are
# observed), and FP8 -> FP8 gives the same file again (the largest weight
# decodes to exactly 448 x its scale, so the observer finds the same scale)
/usr/bin/python3 - "$TMP/smp/reference.safetensors" "$TMP/smp.in.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
blobs = [(k, v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()]
for i, (k, d, s, _) in enumerate(list(blobs)):
    if k.endswith("_proj.weight"):
        blobs.append((k[:-7] + ".input_scale", "BF16", [1], struct.pack("<H", 0x3c00 + 37 * i)))
hdr, off = {}, 0
for k, d, s, raw in blobs:
    hdr[k] = {"dtype": d, "shape": s, "data_offsets": [off, off + len(raw)]}; off += len(raw)
hj = json.dumps(hdr).encode(); hj += b" " * (-len(hj) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hj)) + hj + b"".join(r for *_, r in blobs))
PY
"$MKCT" -q --scheme FP8 --ignore lm_head --ignore 're:.*embed_tokens' "$TMP/smp.in.safetensors" "$TMP/fp8a.safetensors"
"$MKCT" -q --scheme FP8 --ignore lm_head --ignore 're:.*embed_tokens' "$TMP/fp8a.safetensors" "$TMP/fp8b.safetensors" 2>"$TMP/err"
check "FP8 (static activations) converted to FP8: the same file (input scales kept)" cmp -s "$TMP/fp8a.safetensors" "$TMP/fp8b.safetensors"
check "...and it holds the 14 calibrated input scales" sh -c "[ \$('$CTLS' --keep-qparams '$TMP/fp8b.safetensors' | grep -c '\.input_scale ') = 14 ]"
# activation and kv-cache scales the new config does not quantize with are
# left out (a model quantized with it has no such parameters; a loader may
# reject names it does not expect), and said; with a kv_cache_scheme k/v scales stay
"$MKCT" --scheme W4A16 --ignore lm_head --ignore 're:.*embed_tokens' "$TMP/fp8a.safetensors" "$TMP/w4.safetensors" 2>"$TMP/err"
check "FP8 (static) converted to W4A16: no input scale left, and said" sh -c "
    [ \$('$CTLS' --keep-qparams '$TMP/w4.safetensors' | grep -c 'input_scale ') = 0 ] &&
    grep -qx 'mkct: note: left out 14 activation or kv-cache scales the config does not quantize with' '$TMP/err'"
/usr/bin/python3 - "$TMP/smp/reference.safetensors" "$TMP/kv.safetensors" "$TMP/kv.json" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
blobs = [(k, v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()]
for k in [k for k, *_ in blobs if k.endswith("self_attn.k_proj.weight")]:
    a = k[:-len("k_proj.weight")]
    blobs += [(a + "k_scale", "F32", [], struct.pack("<f", 0.5)), (a + "v_scale", "F32", [], struct.pack("<f", 0.25))]
hdr, off = {}, 0
for k, d, s, raw in blobs:
    hdr[k] = {"dtype": d, "shape": s, "data_offsets": [off, off + len(raw)]}; off += len(raw)
hj = json.dumps(hdr).encode(); hj += b" " * (-len(hj) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hj)) + hj + b"".join(r for *_, r in blobs))
cfg = {"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head", "re:.*embed_tokens"],
       "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 4, "strategy": "group", "group_size": 128,
                                                                  "symmetric": True, "type": "int"}}},
       "kv_cache_scheme": {"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": False, "symmetric": True}}
json.dump({"quantization_config": cfg}, open(sys.argv[3], "w"))
PY
"$MKCT" -q --scheme W4A16 --ignore lm_head --ignore 're:.*embed_tokens' "$TMP/kv.safetensors" "$TMP/kv.w4.safetensors"
"$MKCT" -q --config "$TMP/kv.json" "$TMP/kv.safetensors" "$TMP/kv.kvs.safetensors"
check "kv-cache scales: left out without a kv_cache_scheme, kept (as stored) with one" sh -c "
    [ \$('$CTLS' --keep-qparams '$TMP/kv.w4.safetensors' | grep -c '_scale  *F32  *\[\]') = 0 ] &&
    [ \$('$CTLS' --keep-qparams '$TMP/kv.kvs.safetensors' | grep -c '\.[kv]_scale  *F32  *\[\]') = 4 ]"
# a compressed source that cannot be decoded is refused, not copied as is
cp -r "$TMP/smp/compressed" "$TMP/smp.bad"
sed 's/"num_bits": 4/"num_bits": NaN/' "$TMP/smp/compressed/config.json" >"$TMP/smp.bad/config.json"
expect_exit 3 "a compressed source with a bad config" "$MKCT" -q --scheme W8A16 "$TMP/smp.bad" "$TMP/smp.bad.out"
check "...the message says the source is compressed and why it cannot be decoded" \
    grep -q "is stored compressed, and the source cannot be decoded: .*num_bits must be an integer" "$TMP/err"
check "...and nothing is written" [ ! -e "$TMP/smp.bad.out" ]
finish
