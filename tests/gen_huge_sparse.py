"""A sparse-bitmask checkpoint whose dense view is huge but whose file is
mostly a hole: an all-zero bitmask (no stored values), written with
truncate() so it takes almost no disk.  usage: gen_huge_sparse.py FILE ROWS COLS"""
import json, os, struct, sys

path, R, C = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mb = (C + 7) // 8
tensors = [  # name, dtype, shape, nbytes (reference order: I64 first, then U8)
    ("w.row_offsets", "I64", [R], 8 * R),
    ("w.shape", "I64", [2], 16),
    ("w.compressed", "BF16", [0], 0),
    ("w.bitmask", "U8", [R, mb], R * mb),
]
hdr, off = {"__metadata__": {"format": "pt"}}, 0
for name, dt, shape, n in tensors:
    hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
    off += n
h = json.dumps(hdr, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    f.seek(8 + len(h) + 8 * R)           # row_offsets: all zero (a hole)
    f.write(struct.pack("<qq", R, C))    # shape
    f.truncate(8 + len(h) + off)         # bitmask: all zero (a hole)
