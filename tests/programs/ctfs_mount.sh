#!/bin/sh
# Real FUSE mounts: the dense view of every reference case (file and
# sharded-directory sources) and of a generated multi-megabyte checkpoint is
# byte-identical to `mkct --format dense`, read whole, by single bytes, by
# odd-sized random reads, through mmap and by 8 concurrent readers; .npy
# files load in numpy with the expected values; writes fail with EROFS; a
# bad source fails with its exit status and mounts nothing.
. "$top_srcdir/tests/programs/lib.sh"
. "$top_srcdir/tests/programs/fuse.sh"
need_refvectors
need_fuse

PY=/usr/bin/python3

# compare_reads VIEWFILE REFFILE: random reads, single bytes and mmap.
compare_reads() {
    "$PY" - "$1" "$2" <<'PY'
import mmap, os, random, sys
view, ref = sys.argv[1], sys.argv[2]
want = open(ref, "rb").read()
fd = os.open(view, os.O_RDONLY)
assert os.fstat(fd).st_size == len(want), "size"
rnd = random.Random(7)
for _ in range(300):
    off = rnd.randrange(len(want) + 1)
    n = rnd.choice([1, 3, 7, 511, 4097, 65537, 1 << 20])
    assert os.pread(fd, n, off) == want[off:off + n], ("range", off, n)
for off in range(0, min(len(want), 2048)):
    assert os.pread(fd, 1, off) == want[off:off + 1], ("byte", off)
with open(view, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
    assert m[:] == want, "mmap"
PY
}

n=0
for model in "$REFVECTORS"/ct-*/*/model.safetensors "$REFVECTORS"/ct-*/*/sharded; do
    case_dir=$(dirname "$model")   # the case directory for model.safetensors and sharded/ alike
    name=$(echo "${model#$REFVECTORS/}" | tr / _)
    ref="$TMP/$name.dense"
    "$MKCT" -q --format dense "$model" "$ref" || { not_ok "$name: mkct failed"; continue; }
    mnt="$TMP/mnt.$name"
    mount_ctfs "$model" "$mnt" || { not_ok "$name: mount failed: $(cat "$TMP/ctfs.err")"; continue; }
    n=$((n + 1))
    if [ -d "$ref" ]; then
        for f in "$ref"/*; do
            check "$name: $(basename "$f") equals mkct output" cmp -s "$f" "$mnt/$(basename "$f")"
        done
        # (how many shards the split made depends on the vector's data)
        shard=$(cd "$ref" && ls -- *.safetensors | sed -n 2p)
        check "$name: dense shard 2 ($shard) reads randomly, by bytes and by mmap" \
            compare_reads "$mnt/$shard" "$ref/$shard"
    else
        check "$name: view equals mkct output" cmp -s "$ref" "$mnt/model.safetensors"
        check "$name: random, single-byte and mmap reads" compare_reads "$mnt/model.safetensors" "$ref"
    fi
    # every tensor file equals that tensor in the expected decode; .npy loads
    check "$name: tensors/ raw and .npy files equal expected.safetensors" "$PY" - "$mnt/tensors" "$case_dir/expected.safetensors" <<'PY'
import json, os, struct, sys
import numpy as np
tdir, exp = sys.argv[1], sys.argv[2]
raw = open(exp, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
seen = 0
for name, info in hdr.items():
    if name == "__metadata__" or name.endswith(".weight_q") or name.endswith("_unpacked"):
        continue
    b, e = info["data_offsets"]
    data = raw[8 + n + b:8 + n + e]
    assert open(os.path.join(tdir, name), "rb").read() == data, name
    dt = info["dtype"]
    if dt == "BF16":
        want = (np.frombuffer(data, np.uint16).astype(np.uint32) << 16).view(np.float32)
    else:
        want = np.frombuffer(data, {"F32": np.float32, "F16": np.float16, "I8": np.int8}[dt])
    want = want.reshape(info["shape"])
    got = np.load(os.path.join(tdir, name + ".npy"))
    assert got.shape == want.shape and got.dtype == want.dtype, (name, got.shape, got.dtype)
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), name
    mm = np.load(os.path.join(tdir, name + ".npy"), mmap_mode="r")
    assert np.array_equal(np.asarray(mm).view(np.uint8), want.view(np.uint8)), name
    seen += 1
assert seen >= 3, seen
PY
    unmount_ctfs "$mnt"
done
nsrc=0
for model in "$REFVECTORS"/ct-*/*/model.safetensors "$REFVECTORS"/ct-*/*/sharded; do nsrc=$((nsrc + 1)); done
check "mounted all $nsrc reference sources (at least 27)" sh -c "[ $n = $nsrc ] && [ $n -ge 27 ]"

# Every safetensors dtype passed through: the raw file holds the stored
# bytes; the .npy holds them as numpy has them, or widened exactly to
# float32 (BF16, F8_*: values computed here from the bit fields); 4- and
# 6-bit dtypes have no .npy.
"$PY" - "$TMP/dtypes" <<'PY'
import json, os, struct, sys
import numpy as np
os.makedirs(sys.argv[1])
rng = np.random.default_rng(7)
ts = []
for dt, size in [("BOOL", 1), ("U8", 1), ("I8", 1), ("I16", 2), ("U16", 2), ("F16", 2), ("BF16", 2), ("I32", 4),
                 ("U32", 4), ("F32", 4), ("C64", 8), ("F64", 8), ("I64", 8), ("U64", 8), ("F8_E4M3", 1),
                 ("F8_E5M2", 1), ("F8_E8M0", 1), ("F8_E4M3FNUZ", 1), ("F8_E5M2FNUZ", 1)]:
    raw = bytes(range(256)) if size == 1 else rng.integers(0, 256, 64 * size, dtype=np.uint8).tobytes()
    if dt == "BOOL":
        raw = bytes([0, 1] * 128)
    ts.append(("t." + dt, dt, [len(raw) // size // 4, 4], raw))
ts += [("t.F4", "F4", [512], bytes(range(256))), ("t.F6_E2M3", "F6_E2M3", [4], b"\x01\x02\x03")]
hdr, off = {"__metadata__": {"format": "pt"}}, 0
for name, dt, shape, raw in ts:
    hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
    off += len(raw)
h = json.dumps(hdr, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(sys.argv[1], "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in ts))
PY
if mount_ctfs "$TMP/dtypes" "$TMP/mnt.dtypes"; then
    check "every dtype: raw files, and .npy values widened exactly" "$PY" - "$TMP/mnt.dtypes/tensors" "$TMP/dtypes/model.safetensors" <<'PY'
import json, os, struct, sys
import numpy as np
tdir, src = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
hdr.pop("__metadata__")
def f8(b, ebits, bias, kind):
    b = b.astype(np.int64)
    s = b >> 7
    e = (b >> (7 - ebits)) & ((1 << ebits) - 1)
    mb = 7 - ebits
    m = b & ((1 << mb) - 1)
    v = np.where(e == 0, m / (1 << mb) * 2.0 ** (1 - bias), (1 + m / (1 << mb)) * 2.0 ** (e - bias))
    v = np.where(s == 1, -v, v)
    if kind == "fn":        # E4M3FN: S.1111.111 is NaN, no infinities
        v = np.where((e == 15) & (m == 7), np.nan, v)
    elif kind == "ieee":    # E5M2: exponent all ones is inf / NaN
        v = np.where(e == 31, np.where(m == 0, np.where(s == 1, -np.inf, np.inf), np.nan), v)
    else:                   # FNUZ: 0x80 is the only NaN
        v = np.where(b == 0x80, np.nan, v)
    return v.astype(np.float32)
native = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "I16": "<i2", "U16": "<u2", "F16": "<f2", "I32": "<i4",
          "U32": "<u4", "F32": "<f4", "C64": "<c8", "F64": "<f8", "I64": "<i8", "U64": "<u8"}
for name, t in hdr.items():
    a, b = t["data_offsets"]
    data = raw[8 + n + a:8 + n + b]
    assert open(os.path.join(tdir, name), "rb").read() == data, name
    dt, shape = t["dtype"], tuple(t["shape"])
    npy = os.path.join(tdir, name + ".npy")
    if dt in ("F4", "F6_E2M3"):
        assert not os.path.exists(npy), name
        continue
    got = np.load(npy)
    assert got.shape == shape, (name, got.shape)
    u8 = np.frombuffer(data, np.uint8)
    if dt in native:
        want = np.frombuffer(data, native[dt]).reshape(shape)
    elif dt == "BF16":
        want = (np.frombuffer(data, "<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    elif dt == "F8_E8M0":
        want = np.where(u8 == 255, np.nan, np.ldexp(1.0, u8.astype(np.int64) - 127)).astype(np.float32).reshape(shape)
    else:
        ebits, bias, kind = {"F8_E4M3": (4, 7, "fn"), "F8_E5M2": (5, 15, "ieee"),
                             "F8_E4M3FNUZ": (4, 8, "fnuz"), "F8_E5M2FNUZ": (5, 16, "fnuz")}[dt]
        want = f8(u8, ebits, bias, kind).reshape(shape)
    assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
    if dt in native:                     # as stored, NaN payloads included
        assert got.tobytes() == want.tobytes(), name
    else:                                # the same float32 bits, any NaN where NaN
        nan = np.isnan(want)
        assert (np.isnan(got) == nan).all(), name
        assert (got[~nan].view(np.uint32) == want[~nan].view(np.uint32)).all(), name
print("ok", len(hdr))
PY
    unmount_ctfs "$TMP/mnt.dtypes"
else
    not_ok "dtypes: mount failed: $(cat "$TMP/ctfs.err")"
fi

# A generated multi-megabyte checkpoint: int4 group-128 (BF16) and a 50 %
# sparse F16 weight, read by 8 concurrent readers.
"$PY" "$top_srcdir/tests/gen_checkpoint.py" "$TMP/big" 2048 4096
"$MKCT" -q --format dense "$TMP/big" "$TMP/big.dense"
mount_ctfs "$TMP/big" "$TMP/mnt.big" -o cache_size=8M,block_size=256K || not_ok "big: mount: $(cat "$TMP/ctfs.err")"
big1=model-00001-of-00002.safetensors big2=model-00002-of-00002.safetensors
size=$(stat -c %s "$TMP/big.dense/$big1")
check "big: dense shard is over 16 MB" [ "$size" -gt 16000000 ]
check "big: stat size before any read equals mkct output" [ "$(stat -c %s "$TMP/mnt.big/$big1")" = "$size" ]
pids=""
for i in 1 2 3 4 5 6 7 8; do
    f=$big1
    [ $((i % 2)) = 0 ] && f=$big2
    (cmp -s "$TMP/big.dense/$f" "$TMP/mnt.big/$f" && echo ok >"$TMP/reader.$i") &
    pids="$pids $!"
done
wait $pids
check "big: 8 concurrent readers see mkct's bytes" [ "$(cat "$TMP"/reader.* 2>/dev/null | grep -c ok)" = 8 ]
check "big: random and mmap reads (cache smaller than the file)" compare_reads "$TMP/mnt.big/$big2" "$TMP/big.dense/$big2"
check "big: index.json rewritten as mkct does" cmp -s "$TMP/big.dense/model.safetensors.index.json" "$TMP/mnt.big/model.safetensors.index.json"
check "big: config.json rewritten as mkct does" cmp -s "$TMP/big.dense/config.json" "$TMP/mnt.big/config.json"
check "big: other files passed through" cmp -s "$TMP/big/README.txt" "$TMP/mnt.big/README.txt"
check "big: stats file counts decodes" grep -q '^misses [1-9]' "$TMP/mnt.big/.ctfs-stats"
check "big: xattr names the format" sh -c "getfattr --only-values -n user.ct.format '$TMP/mnt.big/tensors/model.layers.0.mlp.down_proj.weight' | grep -qx pack-quantized"
# other namespaces are not supported (ls -l stops asking for them), an
# unknown user.* attribute is merely absent
check "big: security.* and system.* xattrs not supported" sh -c "
    getfattr -n security.selinux '$TMP/mnt.big/config.json' 2>&1 | grep -q 'Operation not supported' &&
    getfattr -n system.posix_acl_access '$TMP/mnt.big/tensors' 2>&1 | grep -q 'Operation not supported' &&
    getfattr -n user.nope '$TMP/mnt.big/config.json' 2>&1 | grep -q 'No such attribute'"
if echo x 2>/dev/null >"$TMP/mnt.big/config.json"; then not_ok "write succeeded"; else ok "write refused"; fi
check "write error is EROFS" sh -c "! touch '$TMP/mnt.big/new' 2>&1 | grep -qv 'Read-only file system'"
unmount_ctfs "$TMP/mnt.big"
# a healthy foreground mount says one thing on stderr: what it serves
mount_ctfs "$TMP/big" "$TMP/mnt.quiet" && {
    cat "$TMP/mnt.quiet/config.json" >/dev/null
    unmount_ctfs "$TMP/mnt.quiet"
    check "foreground stderr says what it serves, and nothing from libfuse" \
        sh -c "grep -q '^ctfs: serving ' '$TMP/ctfs.err' && ! grep -v -e '^ctfs: serving ' -e '^ctfs: readahead left' '$TMP/ctfs.err'"
}
# readahead: the mount's backing device gets it (root only)
if [ "$(id -u)" = 0 ] && mount_ctfs "$TMP/big" "$TMP/mnt.ra" -o readahead=256K; then
    dev=$(mountpoint -d "$TMP/mnt.ra")
    check "readahead=256K sets the mount's read_ahead_kb" [ "$(cat "/sys/class/bdi/$dev/read_ahead_kb")" = 256 ]
    unmount_ctfs "$TMP/mnt.ra"
    mount_ctfs "$TMP/big" "$TMP/mnt.ra" && {
        check "default readahead is 1 MiB" [ "$(cat "/sys/class/bdi/$(mountpoint -d "$TMP/mnt.ra")/read_ahead_kb")" = 1024 ]
        unmount_ctfs "$TMP/mnt.ra"
    }
fi
# direct_io: every read reaches ctfs as asked; odd-sized reads straddle the
# 64 KiB blocks and are answered from two pinned blocks at once
mkdir -p "$TMP/mnt.dio"
if mount_ctfs "$TMP/big" "$TMP/mnt.dio" -o direct_io,block_size=64K,cache_size=2M; then
    check "direct_io: odd-sized reads straddling blocks see mkct's bytes" \
        sh -c "dd if='$TMP/mnt.dio/$big2' bs=100003 2>/dev/null | cmp -s - '$TMP/big.dense/$big2'"
    check "direct_io: no block is given up behind the reader" grep -qx 'dropped 0' "$TMP/mnt.dio/.ctfs-stats"
    unmount_ctfs "$TMP/mnt.dio"
else
    not_ok "direct_io: mount: $(cat "$TMP/ctfs.err")"
fi

# a block size that is no multiple of any element size: blocks start inside
# elements and at every alignment, which the decoders must not care about
mkdir -p "$TMP/mnt.odd"
if mount_ctfs "$TMP/big" "$TMP/mnt.odd" -o block_size=4099,cache_size=1M; then
    check "block_size=4099: the dense view is mkct's bytes" cmp -s "$TMP/mnt.odd/$big2" "$TMP/big.dense/$big2"
    unmount_ctfs "$TMP/mnt.odd"
else
    not_ok "block_size=4099: mount: $(cat "$TMP/ctfs.err")"
fi

# A directory as a Hugging Face cache snapshot makes it: every file a
# symbolic link into blobs/, plus subdirectories.  The mount shows the same
# tree as mkct --format dense writes: subdirectories and what they hold,
# but no dot files, no FIFO (listing it must not hang), no dangling link,
# no link back up the tree.
"$PY" "$top_srcdir/tests/gen_checkpoint.py" "$TMP/snap.src" 256 512
mkdir -p "$TMP/blobs" "$TMP/snap/original/sub" "$TMP/snap/empty" "$TMP/mnt.snap"
for f in "$TMP"/snap.src/*; do
    cp "$f" "$TMP/blobs/$(basename "$f").blob"
    ln -s "../blobs/$(basename "$f").blob" "$TMP/snap/$(basename "$f")"
done
echo '{"dim": 4}' >"$TMP/snap/original/params.json"
echo deep >"$TMP/snap/original/sub/deep.txt"
echo attrs >"$TMP/snap/.gitattributes"
mkfifo "$TMP/snap/original/pipe"
ln -s .. "$TMP/snap/original/loop"
ln -s nowhere "$TMP/snap/dangling"
timeout 60 "$MKCT" -q --format dense "$TMP/snap" "$TMP/snap.dense" 2>"$TMP/err" || not_ok "snapshot: mkct: $(cat "$TMP/err")"
if mount_ctfs "$TMP/snap" "$TMP/mnt.snap"; then
    check "snapshot: mkct writes the tree listed" sh -c "cd '$TMP/snap.dense' && find . | sort | tr '\n' ' ' | grep -qx '. ./README.txt ./config.json ./empty ./model-00001-of-00002.safetensors ./model-00002-of-00002.safetensors ./model.safetensors.index.json ./original ./original/params.json ./original/sub ./original/sub/deep.txt '"
    check "snapshot: the mount shows the same tree and bytes" diff -r -x tensors -x .ctfs-stats "$TMP/snap.dense" "$TMP/mnt.snap"
    check "snapshot: subdirectories are read-only directories" sh -c "[ \"\$(stat -c %A '$TMP/mnt.snap/original/sub')\" = dr-xr-xr-x ]"
    check "snapshot: a directory's link count is 2 + its subdirectories" \
        sh -c "[ \"\$(stat -c %h '$TMP/mnt.snap' '$TMP/mnt.snap/original' '$TMP/mnt.snap/original/sub' | tr '\n' ' ')\" = '5 3 2 ' ]"
    unmount_ctfs "$TMP/mnt.snap"
else
    not_ok "snapshot: mount: $(cat "$TMP/ctfs.err")"
fi
# SIGTERM (systemctl stop, kill) is a normal stop: the mount goes away,
# readers get ENOTCONN, the daemon exits 0
if mount_ctfs "$TMP/snap" "$TMP/mnt.term"; then
    kill -TERM "$pid"
    wait "$pid"
    check "SIGTERM: the daemon exits 0" [ "$?" = 0 ]
    check "SIGTERM: the mount is gone" sh -c "! grep -q ' $TMP/mnt.term ' /proc/mounts"
else
    not_ok "SIGTERM: mount: $(cat "$TMP/ctfs.err")"
fi
# SRC given as a relative path: pass-through files are read after the
# daemon has started, whatever its working directory is by then
cd "$TMP"
if mount_ctfs snap "$TMP/mnt.rel"; then
    check "relative SRC: pass-through files read" \
        sh -c "cmp -s '$TMP/mnt.rel/README.txt' '$TMP/snap.src/README.txt' && cmp -s '$TMP/mnt.rel/original/sub/deep.txt' '$TMP/snap/original/sub/deep.txt'"
    # what `mount`, df and getfattr show names the source from anywhere
    check "relative SRC: the mount's source is its absolute path" grep -q "^$TMP/snap $TMP/mnt.rel fuse.ctfs " /proc/mounts
    check "relative SRC: user.ct.config is an absolute path" \
        sh -c "[ \"\$(getfattr --only-values -n user.ct.config '$TMP/mnt.rel/model-00001-of-00002.safetensors')\" = '$TMP/snap/config.json' ]"
    unmount_ctfs "$TMP/mnt.rel"
else
    not_ok "relative SRC: mount: $(cat "$TMP/ctfs.err")"
fi
cd - >/dev/null

# fstab path: mount(8) -> mount.fuse3 -> ctfs, options passed through.
if [ "$(id -u)" = 0 ] && command -v mount.fuse3 >/dev/null 2>&1; then
    mkdir -p "$TMP/mnt.fstab"
    if mount -t fuse -o ro,cache_size=16M,block_size=64K "$CTFS#$TMP/big" "$TMP/mnt.fstab" 2>"$TMP/fstab.err"; then
        cleanup_hooks="$cleanup_hooks umount '$TMP/mnt.fstab' 2>/dev/null;"
        check "mount.fuse3: shows as fuse.ctfs" grep -q " $TMP/mnt.fstab fuse.ctfs ro," /proc/mounts
        check "mount.fuse3: bytes equal mkct output" cmp -s "$TMP/big.dense/$big1" "$TMP/mnt.fstab/$big1"
        umount "$TMP/mnt.fstab"
        check "umount ends the mount" sh -c "! grep -q ' $TMP/mnt.fstab ' /proc/mounts"
    else
        not_ok "mount -t fuse ctfs#SRC failed: $(cat "$TMP/fstab.err")"
    fi
else
    echo "note: not root or no mount.fuse3: the fstab path is not exercised"
fi

# A bad source: exit status 3, clear message, nothing mounted.
head -c 100 "$REFVECTORS/ct-0.14.0.1/w4a16_g128_sym_bf16/model.safetensors" >"$TMP/bad.safetensors"
mkdir -p "$TMP/mnt.bad"
"$CTFS" -f "$TMP/bad.safetensors" "$TMP/mnt.bad" 2>"$TMP/bad.err"
check "bad source: exit status 3" [ $? = 3 ]
check "bad source: message names the file" grep -q "bad.safetensors" "$TMP/bad.err"
check "bad source: nothing mounted" sh -c "! grep -q '$TMP/mnt.bad' /proc/mounts"
"$CTFS" -f "$TMP/missing.safetensors" "$TMP/mnt.bad" 2>/dev/null
check "missing source: exit status 2" [ $? = 2 ]
touch "$TMP/afile"
"$CTFS" -f "$TMP/snap" "$TMP/afile" 2>"$TMP/bad.err"
check "a file as mount point: usage error, exit status 1" [ $? = 1 ]
check "...saying why" grep -q "afile: not a directory" "$TMP/bad.err"
check "...nothing mounted" sh -c "! grep -q '$TMP/afile' /proc/mounts"
mkfifo "$TMP/fifo.safetensors"
timeout 20 "$CTFS" -f "$TMP/fifo.safetensors" "$TMP/mnt.bad" 2>"$TMP/bad.err"
check "a FIFO as source: refused at once, exit status 2" [ $? = 2 ]
check "...saying why" grep -q "fifo.safetensors: not a readable regular file" "$TMP/bad.err"
"$CTFS" -f -o no_such_option "$TMP/snap" "$TMP/mnt.bad" 2>"$TMP/bad.err"
check "unknown -o option: usage error, exit status 1" [ $? = 1 ]
check "...saying which" grep -q "no_such_option" "$TMP/bad.err"
check "...nothing mounted" sh -c "! grep -q '$TMP/mnt.bad' /proc/mounts"
# -h and -V as sshfs and squashfuse: ours, then libfuse's; exit 0, nothing mounted
for o in -h --help; do
    "$CTFS" $o >"$TMP/out" 2>"$TMP/bad.err"
    check "ctfs $o: exit status 0" [ $? = 0 ]
    check "...a usage line, our options and libfuse's" sh -c "head -1 '$TMP/out' | grep -q '^Usage: .*ctfs \[options\] SRC MOUNTPOINT\$' && grep -q -- '-o cache_size=SIZE' '$TMP/out' && grep -q -- '-o allow_other' '$TMP/out'"
done
"$CTFS" -V >"$TMP/out" 2>"$TMP/bad.err"
check "ctfs -V: exit status 0" [ $? = 0 ]
check "...names ctfs's version first, then libfuse's, the kernel interface and fusermount3" \
    sh -c "sed -n 1p '$TMP/out' | grep -q '^ctfs version [0-9]' && sed -n 2p '$TMP/out' | grep -q '^FUSE library version 3\.' \
           && sed -n 3p '$TMP/out' | grep -q '^using FUSE kernel interface version 7\.' && sed -n 4p '$TMP/out' | grep -q '^fusermount3 version: 3\.'"
"$CTFS" >"$TMP/out" 2>"$TMP/bad.err"
check "ctfs without arguments: usage error, exit status 1" [ $? = 1 ]
check "...pointing to -h" grep -q "ctfs -h for help" "$TMP/bad.err"
# option values: each error names the option and the value given
"$CTFS" -f -o cache_size=64X "$TMP/snap" "$TMP/mnt.bad" 2>"$TMP/bad.err"
check "cache_size=64X: usage error, exit status 1" [ $? = 1 ]
check "...saying which" grep -q "cache_size=64X: not a size" "$TMP/bad.err"
"$CTFS" -f -o block_size=1G "$TMP/snap" "$TMP/mnt.bad" 2>"$TMP/bad.err"
check "block_size=1G: usage error, exit status 1" [ $? = 1 ]
check "...saying the range" grep -q "block_size=1G: not a size from 4K to 64M" "$TMP/bad.err"
"$CTFS" -f -o cache_size=64K "$TMP/snap" "$TMP/mnt.bad" 2>"$TMP/bad.err"
check "a cache smaller than one block: exit status 1" [ $? = 1 ]
check "...saying both sizes" grep -q "cache_size (65536 bytes) is smaller than one block (1048576 bytes)" "$TMP/bad.err"
"$CTFS" -f -o threads=1000 "$TMP/snap" "$TMP/mnt.bad" 2>"$TMP/bad.err"
check "threads=1000: exit status 1" [ $? = 1 ]
check "...saying the range" grep -q "threads=1000: not a whole number from 0 to 64" "$TMP/bad.err"
for arg in prefetch=-1 prefetch=8x threads=-1 prefetch=; do
    "$CTFS" -f -o $arg "$TMP/snap" "$TMP/mnt.bad" 2>"$TMP/bad.err"
    check "$arg: usage error, exit status 1" [ $? = 1 ]
    check "...saying why" grep -q "$arg: not a whole number from 0 to" "$TMP/bad.err"
done
check "...nothing mounted" sh -c "! grep -q '$TMP/mnt.bad' /proc/mounts"
# a source directory with its own top-level tensors/: the mount's takes the
# name, and ctfs says what it hides
mkdir -p "$TMP/withtensors/tensors/sub"
cp "$REFVECTORS/ct-0.18.0/w4a16_g128_sym_bf16/model.safetensors" "$REFVECTORS/ct-0.18.0/w4a16_g128_sym_bf16/config.json" "$TMP/withtensors/"
echo x >"$TMP/withtensors/tensors/sub/notes.txt"
if mount_ctfs "$TMP/withtensors" "$TMP/mnt.wt"; then
    check "a source tensors/ hidden by the mount's: said, with its 3 entries" \
        grep -q "the source's own tensors/ (3 entries) is not shown" "$TMP/ctfs.err"
    check "...and the mount's tensors/ holds the tensor files" [ -e "$TMP/mnt.wt/tensors/model.layers.0.mlp.down_proj.weight.npy" ]
    unmount_ctfs "$TMP/mnt.wt"
else
    not_ok "withtensors: mount failed: $(cat "$TMP/ctfs.err")"
fi
# prefetch beyond half the cache is reduced, with a note
if mount_ctfs "$TMP/snap" "$TMP/mnt.pf" -o cache_size=8M,prefetch=100; then
    check "prefetch=100 with a cache of 8 blocks: reduced to 4, and said" \
        grep -q "prefetch=100 reduced to 4: the cache holds 8 blocks" "$TMP/ctfs.err"
    check "...the view still reads right" cmp -s "$TMP/mnt.pf/model-00001-of-00002.safetensors" "$TMP/snap.dense/model-00001-of-00002.safetensors"
    unmount_ctfs "$TMP/mnt.pf"
else
    not_ok "prefetch=100 mount failed: $(cat "$TMP/ctfs.err")"
fi
# -o keep_qparams: the view is what mkct --format dense --keep-qparams
# writes, and the kept parameters are the stored bytes, as stored
kq=$REFVECTORS/ct-0.18.0/w4a16_g128_asym_bf16
"$MKCT" -q --format dense --keep-qparams "$kq/model.safetensors" "$TMP/kq.safetensors"
check "mkct --keep-qparams: weight_scale and weight_zero_point kept as stored, the weight decoded" /usr/bin/python3 - "$kq" "$TMP/kq.safetensors" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items() if k != "__metadata__"}
src, out, exp = load(sys.argv[1] + "/model.safetensors"), load(sys.argv[2]), load(sys.argv[1] + "/expected.safetensors")
m = "model.layers.0.mlp.down_proj."
dense = [k for k in exp if k.endswith(".weight")]   # (expected.safetensors also holds the vectors' codes)
assert len(dense) == 3 and sorted(out) == sorted(dense + [m + "weight_scale", m + "weight_zero_point"]), sorted(out)
for k in ("weight_scale", "weight_zero_point"):
    assert out[m + k] == src[m + k], k
for k in dense:
    assert out[k] == exp[k], k
PY
if mount_ctfs "$kq/model.safetensors" "$TMP/mnt.kq" -o keep_qparams; then
    check "keep_qparams: the view equals mkct --keep-qparams output" cmp -s "$TMP/kq.safetensors" "$TMP/mnt.kq/model.safetensors"
    check "keep_qparams: tensors/ has the stored weight_scale" sh -c "[ \$(stat -c %s '$TMP/mnt.kq/tensors/model.layers.0.mlp.down_proj.weight_scale') = 64 ] && [ -e '$TMP/mnt.kq/tensors/model.layers.0.mlp.down_proj.weight_zero_point.npy' ]"
    unmount_ctfs "$TMP/mnt.kq"
else
    not_ok "keep_qparams: mount failed: $(cat "$TMP/ctfs.err")"
fi
# A mount used as a source (mkct reading a ctfs mount, or ctfs on top of
# one): the model is copied, not the mount's tensors/ (the same tensors
# again, raw and .npy)
if mount_ctfs "$TMP/snap" "$TMP/mnt.src"; then
    "$MKCT" -q --format dense "$TMP/mnt.src" "$TMP/from.mount" 2>"$TMP/err" || not_ok "mkct from a mount: $(cat "$TMP/err")"
    check "mkct --format dense of a mount: the same tree as of the source, no tensors/" diff -r "$TMP/snap.dense" "$TMP/from.mount"
    unmount_ctfs "$TMP/mnt.src"
else
    not_ok "mount as source failed: $(cat "$TMP/ctfs.err")"
fi
# statfs: df shows the dense checkpoint's size (every file but tensors/),
# in 4 KiB blocks, none free, and one inode per file and directory
if mount_ctfs "$TMP/snap" "$TMP/mnt.df"; then
    check "df: the dense checkpoint's size, nothing free; every node counted" sh -c "
        want=\$(find '$TMP/mnt.df' -path '$TMP/mnt.df/tensors' -prune -o -type f -printf '%s\n' | awk '{ s += \$1 } END { print int((s + 4095) / 4096) }')
        set -- \$(stat -f -c '%b %f %S %c' '$TMP/mnt.df')
        [ \"\$1 \$2 \$3\" = \"\$want 0 4096\" ] && [ \"\$4\" = \$(find '$TMP/mnt.df' | wc -l) ] && [ \$want -gt 1 ]"
    unmount_ctfs "$TMP/mnt.df"
else
    not_ok "df mount failed: $(cat "$TMP/ctfs.err")"
fi
finish
