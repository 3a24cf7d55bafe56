"""Round-trip oracle for mkct's writer.

  gen_roundtrip.py make DIR         write DIR/{f32,f16,bf16}.safetensors: a 2-layer
                                    llama-ish checkpoint (random, fixed seed)
  gen_roundtrip.py check KIND SRC DECODED
                                    check DECODED (mkct --format dense of what mkct
                                    wrote from SRC) against numpy: KIND is
                                    sparse-bitmask (lossless), sparse-24-bitmask
                                    (2 largest of every 4 kept), or a scheme
                                    W4A16 / W4A16_ASYM / W8A16 / W8A8 / FP8_DYNAMIC /
                                    NVFP4A16 (quantize-then-dequantize, upstream op
                                    order; NVFP4 global scales shared by q/k/v and
                                    gate/up as llm-compressor fuses them)."""
import json, struct, sys
import numpy as np
from stfile import save

def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        raw = b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
        out[k] = (v["dtype"], np.frombuffer(raw, {"F32": np.float32, "F16": np.float16, "BF16": np.uint16,
                                                  "I64": np.int64}[v["dtype"]]).reshape(v["shape"]))
    return out

def bf16_round(x):
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32) << 16
    return r.view(np.float32)

def f8_round(t):
    """float32 -> nearest F8_E4M3 value (ties to even), |t| <= 448: from the grid."""
    grid = []
    for e in range(16):
        for m in range(8):
            if e == 15 and m == 7:
                continue
            grid.append(m / 8 * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7))
    grid = np.array(sorted(set(grid)), np.float64)
    a = np.abs(t.astype(np.float64))
    i = np.clip(np.searchsorted(grid, a), 1, len(grid) - 1)
    lo, hi = grid[i - 1], grid[i]
    # ties go to the even code: codes are consecutive, so even index in grid
    pick_hi = (a - lo > hi - a) | ((a - lo == hi - a) & ((i % 2) == 0))
    v = np.where(pick_hi, hi, lo)
    return (np.sign(t) * v).astype(np.float32)

def to_f32(dt, a):
    return (a.astype(np.uint32) << 16).view(np.float32) if dt == "BF16" else a.astype(np.float32)

def rnd(dt, x):
    """round a float32 result to the working dtype"""
    x = np.asarray(x, np.float32)
    return bf16_round(x) if dt == "BF16" else x.astype(np.float16).astype(np.float32) if dt == "F16" else x

if sys.argv[1] == "make":
    rng = np.random.default_rng(11)
    base = {}
    for l in range(2):
        for m, shape in (("self_attn.q_proj", (64, 256)), ("self_attn.o_proj", (64, 256)),
                         ("mlp.up_proj", (512, 256)), ("mlp.down_proj", (64, 384)),
                         ("self_attn.k_proj", (32, 256)), ("self_attn.v_proj", (32, 256)),
                         ("mlp.gate_proj", (128, 256))):
            base[f"model.layers.{l}.{m}.weight"] = rng.standard_normal(shape).astype(np.float32) * (0.05 + 0.02 * len(m) % 7)
        base[f"model.layers.{l}.input_layernorm.weight"] = rng.random(64).astype(np.float32)
    base["lm_head.weight"] = rng.standard_normal((32, 64)).astype(np.float32)
    for dt in ("F32", "F16", "BF16"):
        t = {}
        for k, v in base.items():
            if dt == "F32":
                t[k] = ("F32", v)
            elif dt == "F16":
                t[k] = ("F16", v.astype(np.float16))
            else:
                t[k] = ("BF16", (bf16_round(v).view(np.uint32) >> 16).astype(np.uint16))
        save(f"{sys.argv[2]}/{dt.lower()}.safetensors", t)
    sys.exit(0)

kind, src, dec = sys.argv[2], load(sys.argv[3]), load(sys.argv[4])
assert set(src) == set(dec), (set(src) ^ set(dec))
schemes = {"W4A16": (4, 128, True), "W4A16_ASYM": (4, 128, False), "W8A16": (8, 0, True), "W8A8": (8, 0, True)}
checked = 0

def fp4_round(t):
    """|t| <= 6 to the nearest E2M1 value, ties to the even code; sign kept for t < 0"""
    grid = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float64)
    a = np.abs(t.astype(np.float64))
    i = np.clip(np.searchsorted(grid, a), 1, 7)
    lo, hi = grid[i - 1], grid[i]
    pick_hi = (a - lo > hi - a) | ((a - lo == hi - a) & (i % 2 == 0))
    v = np.where(pick_hi, hi, lo).astype(np.float32)
    return np.where(t < 0, -v, v)

FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))

def nvfp4_global(dt, name):
    """generate_gparam over the weight, or over its fused siblings when all exist"""
    mod = name[:-len(".weight")]
    parent, leaf = mod.rsplit(".", 1)
    members = [name]
    for fs in FUSED:
        if leaf in fs and all(f"{parent}.{m}.weight" in src for m in fs):
            members = [f"{parent}.{m}.weight" for m in fs]
    am = max(float(np.abs(to_f32(*src[m])).max()) for m in members)
    tiny = 2.0 ** -14 if dt == "F16" else 2.0 ** -126
    g = rnd(dt, np.array([2688.0 / np.float32(max(am, tiny))], np.float32))[0]
    return np.float32(g) if np.isfinite(g) else np.float32(1.0)

for name, (dt, a) in src.items():
    x = to_f32(dt, a)
    ddt, d = dec[name]
    targeted = name.endswith(".weight") and x.ndim == 2 and not name.startswith("lm_head")
    assert ddt == ("BF16" if kind == "NVFP4A16" and targeted else dt), (name, ddt, dt)
    got = to_f32(ddt, d)
    if not targeted or kind == "dense":
        want = x
    elif kind == "sparse-bitmask":
        want = np.where(x == 0, 0, x)
    elif kind == "sparse-24-bitmask":
        g = np.abs(x).reshape(-1, 4)
        srt = -np.sort(-g, axis=1)
        tie = srt[:, 1] == srt[:, 2]            # any of the tied may be kept
        keep = np.zeros_like(g, bool)
        top = np.argsort(-g, axis=1, kind="stable")[:, :2]
        np.put_along_axis(keep, top, True, axis=1)
        want = np.where(keep.reshape(x.shape), x, 0).reshape(-1, 4)
        gg = got.reshape(-1, 4)
        xs = x.reshape(-1, 4)
        ok_tie = np.all((gg == xs) | (gg == 0), axis=1) & (np.sort(np.abs(gg), axis=1)[:, 2:] == srt[:, 1::-1]).all(axis=1)
        assert np.all(ok_tie[tie]), (name, "tied groups")
        want[tie] = gg[tie]
        want = want.reshape(x.shape)
    elif kind in ("FP8_DYNAMIC", "FP8", "FP8_BLOCK"):
        # per row, per tensor, or per 128x128 block (zero padded), then E4M3
        R, C = x.shape
        bh, bw = {"FP8_DYNAMIC": (1, C), "FP8": (R, C), "FP8_BLOCK": (128, 128)}[kind]
        SR, K = -(-R // bh), -(-C // bw)
        pad = np.zeros((SR * bh, K * bw), np.float32)
        pad[:R, :C] = x
        blk = pad.reshape(SR, bh, K, bw)
        m = np.maximum(np.abs(np.minimum(blk.min(axis=(1, 3)), 0)), np.abs(np.maximum(blk.max(axis=(1, 3)), 0)))
        s = rnd(dt, m / np.float32(448.0))
        eps = {"BF16": 2.0 ** -7, "F16": 2.0 ** -10, "F32": 2.0 ** -23}[dt]
        s = np.where(s == 0, np.float32(eps), s).astype(np.float32)
        s = np.repeat(np.repeat(s, bh, axis=0), bw, axis=1)[:R, :C]
        t = np.clip(rnd(dt, x / s), -448, 448)
        want = rnd(dt, f8_round(t) * s)
    elif kind == "NVFP4A16":
        R, C = x.shape
        g = nvfp4_global(dt, name)
        xg = x.reshape(R, C // 16, 16)
        amax = np.maximum(np.abs(np.minimum(xg.min(axis=2), 0)), np.abs(np.maximum(xg.max(axis=2), 0)))
        sc = np.clip(g * rnd(dt, amax / np.float32(6.0)), -448, 448).astype(np.float32)
        s8 = f8_round(sc)
        s8 = np.where(s8 == 0, np.float32(0.125), s8)
        se = (s8 / g).astype(np.float32)
        t = np.clip(xg / se[:, :, None], -6, 6).astype(np.float32)
        want = bf16_round(fp4_round(t) * se[:, :, None]).reshape(R, C)   # upstream decodes NVFP4 to BF16
        got = to_f32("BF16", d)
    else:
        nb, gs, sym = schemes[kind]
        qmin, qmax = -(1 << (nb - 1)), (1 << (nb - 1)) - 1
        R, C = x.shape
        gs = gs or C
        xg = x.reshape(R, C // gs, gs)
        mn = np.minimum(xg.min(axis=2), 0)
        mx = np.maximum(xg.max(axis=2), 0)
        if sym:
            s = rnd(dt, np.maximum(np.abs(mn), np.abs(mx)) / np.float32((qmax - qmin) / 2))
            z = np.zeros_like(s)
        else:
            s = rnd(dt, rnd(dt, mx - mn) / np.float32(qmax - qmin))
            z = np.round(np.clip(rnd(dt, np.float32(qmin) - rnd(dt, mn / s)), qmin, qmax))
        eps = {"BF16": 2.0 ** -7, "F16": 2.0 ** -10, "F32": 2.0 ** -23}[dt]
        s = np.where(s == 0, np.float32(eps), s).astype(np.float32)
        t = rnd(dt, xg / s[:, :, None])
        t = rnd(dt, t + z[:, :, None])
        q = np.round(np.clip(t, qmin, qmax)).astype(np.int32)   # half to even; integer codes (no -0)
        want = rnd(dt, (q - z[:, :, None]).astype(np.float32) * s[:, :, None]).reshape(R, C)
    assert np.array_equal(want.view(np.uint32), got.view(np.uint32)), (kind, name, np.argwhere(want != got)[:3])
    checked += 1
print(f"ok: {checked} tensors as expected ({kind})")
