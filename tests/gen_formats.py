"""Synthetic checkpoints for the formats the reference vectors do not cover,
each with the dense tensors computed here with numpy straight from the
format note's bit-level rules (independent of the C decoders).

usage: gen_formats.py OUTDIR
Writes OUTDIR/<case>/model.safetensors (+ config.json where needed) and
OUTDIR/<case>/expected.safetensors; prints the case names."""
import json, os, struct, sys
import numpy as np
from stfile import save

OUT = sys.argv[1]
rng = np.random.default_rng(20261122)

# ---------------------------------------------------------------- helpers
def bf16(x):
    """float32 -> bf16 bits, round to nearest even, NaN kept quiet."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, (u >> 16) | 0x40, r).astype(np.uint16)

def bf16_to_f32(b):
    return (np.asarray(b, np.uint16).astype(np.uint32) << 16).view(np.float32)

def f8e4m3(b):
    """F8_E4M3 bytes -> float32 from the bit fields."""
    b = np.asarray(b, np.uint8).astype(np.int64)
    s, e, m = b >> 7, (b >> 3) & 15, b & 7
    v = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7))
    v = np.where((e == 15) & (m == 7), np.nan, v)
    return np.where(s == 1, -v, v).astype(np.float32)

FP4 = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], np.float32)

def f8_codes(shape):
    c = rng.integers(0, 256, size=shape, dtype=np.uint8)
    c[(c & 0x7F) == 0x7F] ^= 1          # no NaN codes in the data
    return c

def case(name, model, expected, config=None, meta=None, files=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    save(os.path.join(d, "model.safetensors"), model, meta if meta is not None else {"format": "pt"})
    save(os.path.join(d, "expected.safetensors"), expected)
    if config is not None:
        json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=2, sort_keys=True)
    print(name)

def qc(fmt, groups, version="0.18.0", **extra):
    c = {"quant_method": "compressed-tensors", "format": fmt, "version": version,
         "quantization_status": "compressed", "ignore": ["lm_head"], "config_groups": groups}
    c.update(extra)
    return {"quantization_config": c}

def group(targets, fmt=None, **w):
    g = {"targets": targets, "weights": dict({"type": "int", "symmetric": True}, **w)}
    if fmt:
        g["format"] = fmt
    return g

norm = bf16(rng.standard_normal(16).astype(np.float32))
PASS = {"model.norm.weight": ("BF16", norm)}

def with_pass(d):
    d = dict(d)
    d.update(PASS)
    return d

M = "model.layers.0.mlp.down_proj"

# ---------------------------------------------------------------- FP8
def fp8_case(name, strategy, sdt, R=40, C=96, block=None):
    q = f8_codes((R, C))
    if strategy == "tensor":
        s = rng.random(1, dtype=np.float32) * 0.1 + 0.01
        sfull = np.broadcast_to(s, (R, C))
    elif strategy == "channel":
        s = rng.random((R, 1), dtype=np.float32) * 0.1 + 0.01
        sfull = np.broadcast_to(s, (R, C))
    else:
        bh, bw = block
        s = rng.random((-(-R // bh), -(-C // bw)), dtype=np.float32) * 0.1 + 0.01
        sfull = s[np.arange(R)[:, None] // bh, np.arange(C)[None, :] // bw]
    if sdt == "BF16":
        sb = bf16(s)
        sf = bf16_to_f32(bf16(sfull))
        w = ("BF16", bf16(f8e4m3(q) * sf))
        sc = ("BF16", sb)
    else:
        w = ("F32", (f8e4m3(q) * sfull.astype(np.float32)).astype(np.float32))
        sc = ("F32", s.astype(np.float32))
    args = {"num_bits": 8, "type": "float", "strategy": strategy}
    if block:
        args["block_structure"] = list(block)
    case(name, with_pass({M + ".weight": ("F8_E4M3", q), M + ".weight_scale": sc}),
         with_pass({M + ".weight": w}),
         qc("float-quantized", {"group_0": group(["Linear"], **args)}))

fp8_case("fp8_tensor_bf16", "tensor", "BF16")
fp8_case("fp8_channel_f32", "channel", "F32")
fp8_case("fp8_block_bf16", "block", "BF16", R=200, C=300, block=(128, 128))

# ---------------------------------------------------------------- NVFP4 / MX
def fp4_pack(codes):
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)

R, C = 24, 64
codes = rng.integers(0, 16, size=(R, C), dtype=np.uint8)
sc8 = rng.integers(0x20, 0x58, size=(R, C // 16), dtype=np.uint8)        # positive normal F8 scales
gs = np.array([448 * 6 / 3.7], np.float32)
s_eff = (f8e4m3(sc8) / gs[0]).astype(np.float32)                         # float32 division
w = FP4[codes] * np.repeat(s_eff, 16, axis=1)                            # float32 multiply
case("nvfp4", with_pass({M + ".weight_packed": ("U8", fp4_pack(codes)), M + ".weight_scale": ("F8_E4M3", sc8),
                         M + ".weight_global_scale": ("F32", gs), M + ".input_global_scale": ("F32", gs)}),
     with_pass({M + ".weight": ("BF16", bf16(w))}),
     qc("nvfp4-pack-quantized", {"group_0": group(["Linear"], num_bits=4, type="float", strategy="tensor_group",
                                                  group_size=16)}))

e = rng.integers(115, 135, size=(R, C // 32), dtype=np.uint8)
scale = np.exp2(e.astype(np.float64) - 127).astype(np.float32)
case("mxfp4", with_pass({M + ".weight_packed": ("U8", fp4_pack(codes)), M + ".weight_scale": ("U8", e)}),
     with_pass({M + ".weight": ("BF16", bf16(FP4[codes] * np.repeat(scale, 32, axis=1)))}),
     qc("mxfp4-pack-quantized", {"group_0": group(["Linear"], num_bits=4, type="float", strategy="group",
                                                  group_size=32)}))
q8 = f8_codes((R, C))
case("mxfp8", with_pass({M + ".weight": ("F8_E4M3", q8), M + ".weight_scale": ("U8", e)}),
     with_pass({M + ".weight": ("BF16", bf16(f8e4m3(q8) * np.repeat(scale, 32, axis=1)))}),
     qc("mxfp8-quantized", {"group_0": group(["Linear"], num_bits=8, type="float", strategy="group", group_size=32)}))

# ---------------------------------------------------------------- int, F16 scales, asymmetric
R, C, GS = 16, 96, 32
q = rng.integers(-128, 128, size=(R, C), dtype=np.int8)
s16 = (rng.random((R, C // GS), dtype=np.float32) * 0.01 + 0.001).astype(np.float16)
z = rng.integers(-20, 20, size=(R, C // GS), dtype=np.int8)
sf, zf = np.repeat(s16.astype(np.float32), GS, axis=1), np.repeat(z.astype(np.float32), GS, axis=1)
case("int8_group_f16_asym", with_pass({M + ".weight": ("I8", q), M + ".weight_scale": ("F16", s16),
                                       M + ".weight_zero_point": ("I8", z)}),
     with_pass({M + ".weight": ("F16", ((q.astype(np.float32) - zf) * sf).astype(np.float16))}),
     qc("int-quantized", {"group_0": group(["Linear"], num_bits=8, strategy="group", group_size=GS, symmetric=False)}))
case("naive_label_int4_codes", with_pass({M + ".weight": ("I8", (q >> 4).astype(np.int8)),
                                          M + ".weight_scale": ("F16", s16)}),
     with_pass({M + ".weight": ("F16", ((q >> 4).astype(np.float32) * sf).astype(np.float16))}),
     qc("naive-quantized", {"group_0": group(["Linear"], num_bits=4, strategy="group", group_size=GS)}))

# int8 block strategy, edges not multiples of the block
R, C, BH, BW = 40, 70, 16, 32
q = rng.integers(-128, 128, size=(R, C), dtype=np.int8)
s = bf16(rng.random((-(-R // BH), -(-C // BW)), dtype=np.float32) * 0.01 + 0.001)
sfull = bf16_to_f32(s)[np.arange(R)[:, None] // BH, np.arange(C)[None, :] // BW]
case("int8_block_bf16", with_pass({M + ".weight": ("I8", q), M + ".weight_scale": ("BF16", s)}),
     with_pass({M + ".weight": ("BF16", bf16(q.astype(np.float32) * sfull))}),
     qc("int-quantized", {"group_0": group(["Linear"], num_bits=8, strategy="block", block_structure=[BH, BW])}))

# ---------------------------------------------------------------- pack-quantized odd widths, both layouts
def pack_rows(u, nb, layout_b):
    """u: unsigned codes [rows, n] -> int32 words per row."""
    rows, n = u.shape
    if layout_b:
        W = -(-n * nb // 32)
        words = np.zeros((rows, W), np.uint64)
        for i in range(n):
            bit = i * nb
            words[:, bit // 32] |= (u[:, i].astype(np.uint64) << (bit % 32)) & 0xFFFFFFFF
            if bit % 32 + nb > 32:
                words[:, bit // 32 + 1] |= u[:, i].astype(np.uint64) >> (32 - bit % 32)
    else:
        pf = 32 // nb
        W = -(-n // pf)
        words = np.zeros((rows, W), np.uint64)
        for i in range(n):
            words[:, i // pf] |= u[:, i].astype(np.uint64) << (nb * (i % pf))
    return words.astype(np.uint32).view(np.int32)

for nb in (3, 5, 6, 7):
    R, C = 6, 100
    qn = rng.integers(-(1 << (nb - 1)), 1 << (nb - 1), size=(R, C))
    s = bf16(rng.random((R, 1), dtype=np.float32) * 0.05 + 0.01)
    dense = bf16(qn.astype(np.float32) * bf16_to_f32(s))
    for lay, ver in (("A", "0.14.0.1"), ("B", "0.18.0")):
        packed = pack_rows((qn + (1 << (nb - 1))).astype(np.uint32), nb, lay == "B")
        case(f"pack_int{nb}_layout{lay}",
             with_pass({M + ".weight_packed": ("I32", packed), M + ".weight_scale": ("BF16", s),
                        M + ".weight_shape": ("I64", np.array([R, C], np.int64))}),
             with_pass({M + ".weight": ("BF16", dense)}),
             qc("pack-quantized", {"group_0": group(["Linear"], num_bits=nb, strategy="channel")}, version=ver))

# ---------------------------------------------------------------- MoE 3-D, asymmetric packed zero points
E, R, C, GS, NB = 3, 10, 64, 32, 4
qn = rng.integers(-8, 8, size=(E, R, C))
s = bf16(rng.random((E, R, C // GS), dtype=np.float32) * 0.05 + 0.01)
z = rng.integers(-8, 8, size=(E, R, C // GS))
packed = np.stack([pack_rows((qn[x] + 8).astype(np.uint32), NB, True) for x in range(E)])
zp = np.stack([pack_rows((z[x] + 8).astype(np.uint32).T, NB, True).T for x in range(E)])   # along rows
sf, zf = np.repeat(bf16_to_f32(s), GS, axis=2), np.repeat(z.astype(np.float32), GS, axis=2)
case("pack_moe_3d_asym", with_pass({M + ".weight_packed": ("I32", packed), M + ".weight_scale": ("BF16", s),
                                    M + ".weight_zero_point": ("I32", zp),
                                    M + ".weight_shape": ("I64", np.array([E, R, C], np.int64))}),
     with_pass({M + ".weight": ("BF16", bf16((qn.astype(np.float32) - zf) * sf))}),
     qc("pack-quantized", {"group_0": group(["Linear"], num_bits=4, strategy="group", group_size=GS, symmetric=False)}))

# ---------------------------------------------------------------- old-style zero points
R, C, GS = 8, 64, 32
qn = rng.integers(-8, 8, size=(R, C))
s = bf16(rng.random((R, C // GS), dtype=np.float32) * 0.05 + 0.01)
z = rng.integers(-8, 8, size=(R, C // GS))
dense = bf16((qn - np.repeat(z, GS, axis=1)).astype(np.float32) * np.repeat(bf16_to_f32(s), GS, axis=1))
cfg = {"compression_config": {"quant_method": "compressed-tensors", "format": "pack-quantized",
                              "config_groups": {"group_0": group(["Linear"], num_bits=4, strategy="group",
                                                                 group_size=GS, symmetric=False)}}}
case("pack_v040_i64_zp", with_pass({M + ".weight_packed": ("I32", pack_rows((qn + 8).astype(np.uint32), 4, False)),
                                    M + ".weight_scale": ("BF16", s), M + ".weight_zero_point": ("I64", z.astype(np.int64)),
                                    M + ".weight_shape": ("I64", np.array([R, C], np.int64))}),
     with_pass({M + ".weight": ("BF16", dense)}), cfg)
st = bf16(np.array([0.02], np.float32))
zt = np.array([3], np.int8)
case("pack_tensor_asym_i8_zp", with_pass({M + ".weight_packed": ("I32", pack_rows((qn + 8).astype(np.uint32), 4, True)),
                                          M + ".weight_scale": ("BF16", st), M + ".weight_zero_point": ("I8", zt),
                                          M + ".weight_shape": ("I64", np.array([R, C], np.int64))}),
     with_pass({M + ".weight": ("BF16", bf16((qn - 3).astype(np.float32) * bf16_to_f32(st)[0]))}),
     qc("pack-quantized", {"group_0": group(["Linear"], num_bits=4, strategy="tensor", symmetric=False)}))

# ---------------------------------------------------------------- 2:4 stacked on quantization
def two_four(R, C):
    mask = np.zeros((R, C), bool)
    for r in range(R):
        for g in range(0, C, 4):
            mask[r, g + rng.choice(4, 2, replace=False)] = True
    return mask

def packbits(mask):
    return np.packbits(mask, axis=1, bitorder="little")

R, C = 8, 32
mask = two_four(R, C)
q = rng.integers(-128, 128, size=(R, C), dtype=np.int8)
q[mask & (q == 0)] = 1
vals = q[mask].reshape(R, C // 2)
s = bf16(rng.random((R, 1), dtype=np.float32) * 0.01 + 0.001)
case("sparse24_int8", with_pass({M + ".compressed": ("I8", vals), M + ".bitmask": ("U8", packbits(mask)),
                                 M + ".shape": ("I64", np.array([[R], [C]], np.int64)), M + ".weight_scale": ("BF16", s)}),
     with_pass({M + ".weight": ("BF16", bf16(np.where(mask, q, 0).astype(np.float32) * bf16_to_f32(s)))}),
     qc("int-quantized", {"group_0": group(["Linear"], num_bits=8, strategy="channel")}, version="0.14.0.1",
        sparsity_config={"format": "sparse-24-bitmask", "targets": ["Linear"], "ignore": ["lm_head"],
                         "sparsity_structure": "2:4"}))
q8 = f8_codes((R, C))
q8[mask & ((q8 & 0x7F) == 0)] = 0x38
st = bf16(np.array([0.5], np.float32))
case("sparse24_fp8", with_pass({M + ".compressed": ("F8_E4M3", q8[mask].reshape(R, C // 2)),
                                M + ".bitmask": ("U8", packbits(mask)),
                                M + ".shape": ("I64", np.array([[R], [C]], np.int64)), M + ".weight_scale": ("BF16", st)}),
     with_pass({M + ".weight": ("BF16", bf16(f8e4m3(np.where(mask, q8, 0)) * bf16_to_f32(st)[0]))}),
     qc("float-quantized", {"group_0": group(["Linear"], num_bits=8, type="float", strategy="tensor")},
        version="0.14.0.1", sparsity_config={"format": "sparse-24-bitmask", "targets": ["Linear"], "ignore": []}))

# ---------------------------------------------------------------- mixed precision, exact and regex targets
A, U = "model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj"
R, C = 8, 64
qa = rng.integers(-8, 8, size=(R, C))
sa = bf16(rng.random((R, C // 32), dtype=np.float32) * 0.05 + 0.01)
qu = rng.integers(-128, 128, size=(R, C), dtype=np.int8)
su = bf16(rng.random((R, 1), dtype=np.float32) * 0.01 + 0.001)
model = with_pass({A + ".weight_packed": ("I32", pack_rows((qa + 8).astype(np.uint32), 4, True)),
                   A + ".weight_scale": ("BF16", sa), A + ".weight_shape": ("I64", np.array([R, C], np.int64)),
                   U + ".weight": ("I8", qu), U + ".weight_scale": ("BF16", su)})
expected = with_pass({A + ".weight": ("BF16", bf16(qa.astype(np.float32) * np.repeat(bf16_to_f32(sa), 32, axis=1))),
                      U + ".weight": ("BF16", bf16(qu.astype(np.float32) * bf16_to_f32(su)))})
mixed = qc("mixed-precision", {
    "group_0": group([A], "pack-quantized", num_bits=4, strategy="group", group_size=32),
    "group_1": group(["re:.*mlp\\.up_proj$"], "int-quantized", num_bits=8, strategy="channel")})
case("mixed_precision", model, expected, mixed)
# the same config carried only in the file's __metadata__
case("config_in_metadata", model, expected, None,
     meta={"format": "pt", "quantization_config": json.dumps(mixed["quantization_config"])})

# ---------------------------------------------------------------- sparse-bitmask: 3-D and <= 0.3 config
T = (2, 3, 10)
x = rng.standard_normal(T).astype(np.float32)
x[rng.random(T) < 0.5] = 0
mask = (x != 0).reshape(-1, T[-1])
ro = np.cumsum(np.concatenate([[0], mask.sum(axis=1)[:-1]])).reshape(T[:-1]).astype(np.int64)
case("sparse_bitmask_3d", with_pass({"model.experts.w.compressed": ("F32", x[x != 0]),
                                     "model.experts.w.bitmask": ("U8", packbits(mask).reshape(T[0], T[1], -1)),
                                     "model.experts.w.shape": ("I64", np.array(T, np.int64)),
                                     "model.experts.w.row_offsets": ("I64", ro)}),
     with_pass({"model.experts.w.weight": ("F32", x)}),
     {"quantization_config": {"quant_method": "compressed-tensors", "version": "0.14.0.1",
                              "sparsity_config": {"format": "sparse-bitmask", "targets": None, "ignore": None}}})
y = rng.standard_normal((4, 9)).astype(np.float32)
y[rng.random((4, 9)) < 0.5] = 0
ym = y != 0
case("sparsity_config_top_level", {"m.weight.compressed": ("F32", y[ym]), "m.weight.bitmask": ("U8", packbits(ym)),
                                   "m.weight.shape": ("I64", np.array([4, 9], np.int64)),
                                   "m.weight.row_offsets": ("I64", np.cumsum(np.concatenate([[0], ym.sum(1)[:-1]])).astype(np.int64))},
     {"m.weight": ("F32", y)},
     {"sparsity_config": {"format": "sparse_bitmask", "global_sparsity": 0.5, "sparsity_structure": "unstructured"}})
