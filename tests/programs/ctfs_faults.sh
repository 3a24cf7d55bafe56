#!/bin/sh
# Faults while mounted: a block that fails to decode, and a source file that
# changes under the mount.  The read that needs the bad bytes gets EIO, the
# daemon logs a line naming the tensor and why, and it keeps serving every
# other tensor, file and shard with the right bytes.  Uses the built-in
# sample (no reference vectors needed).
. "$top_srcdir/tests/programs/lib.sh"
. "$top_srcdir/tests/programs/fuse.sh"
need_fuse
"$MKCT" --sample "$TMP/s" >/dev/null || { not_ok "mkct --sample"; finish; }
REF=$TMP/s/reference.safetensors
BAD=model.layers.1.mlp.up_proj.weight

# md5s FILE...: the md5 and name of every tensor in the safetensors files
md5s() {
    "$NPY_PYTHON" - "$@" <<'PY'
import hashlib, json, struct, sys
for path in sys.argv[1:]:
    f = open(path, "rb")
    n = struct.unpack("<Q", f.read(8))[0]
    for name, t in json.loads(f.read(n)).items():
        if name != "__metadata__":
            b, e = t["data_offsets"]
            f.seek(8 + n + b)
            print(hashlib.md5(f.read(e - b)).hexdigest(), name)
PY
}
md5s "$REF" >"$TMP/ref.md5"
check "the sample has 21 tensors" [ "$(wc -l <"$TMP/ref.md5")" = 21 ]
# others_right MNT EXCLUDE_RE MD5S: every tensor listed in MD5S whose name
# the extended regular expression does not match reads from MNT/tensors/ with
# those bytes (and there is at least one)
others_right() {
    wrong=0 n=0
    while read -r sum t; do
        echo "$t" | grep -q -E "$2" && continue
        n=$((n + 1))
        [ "$(md5sum <"$1/tensors/$t" | cut -c1-32)" = "$sum" ] || { echo "wrong bytes: $t"; wrong=1; }
    done <"$3"
    echo "$n tensors compared"
    [ "$wrong" = 0 ] && [ "$n" -gt 0 ]
}

# --- A block that fails to decode --------------------------------------------
# One of the bitmask rows' offsets points far past the stored values; the
# header is valid, so the mount succeeds (nothing is decoded at mount time).
cp -r "$TMP/s/compressed" "$TMP/bad"
chmod -R u+w "$TMP/bad"
"$NPY_PYTHON" - "$TMP/bad/model.safetensors" <<'PY'
import json, struct, sys
f = open(sys.argv[1], "r+b")
n = struct.unpack("<Q", f.read(8))[0]
b = json.loads(f.read(n))["model.layers.1.mlp.up_proj.row_offsets"]["data_offsets"][0]
f.seek(8 + n + b + 8 * 300)
f.write(struct.pack("<q", 1 << 40))
PY
"$MKCT" -q --format dense "$TMP/s/compressed" "$TMP/good.dense" || not_ok "mkct --format dense of the sample"
if mount_ctfs "$TMP/bad" "$TMP/mnt.bad"; then
    p=$pid
    cat "$TMP/mnt.bad/tensors/$BAD" >/dev/null 2>"$TMP/cat.err"
    check "decode fault: reading the tensor fails" [ $? != 0 ]
    check "...with EIO" grep -q "Input/output error" "$TMP/cat.err"
    check "...and a log line naming the tensor and the bad row offset" \
        grep -q "read of $BAD at 0 failed: tensor '$BAD': row_offsets\[300\] = 1099511627776 is out of range" "$TMP/ctfs.err"
    check "decode fault: its .npy fails too" sh -c "! cat '$TMP/mnt.bad/tensors/$BAD.npy' >/dev/null 2>&1"
    check "decode fault: the 20 other tensors read with the reference's bytes" others_right "$TMP/mnt.bad" "^$BAD\$" "$TMP/ref.md5"
    check "decode fault: the dense view's first MiB (before the bad tensor) is mkct's" \
        sh -c "head -c 1048576 '$TMP/mnt.bad/model.safetensors' | cmp -s - '$TMP/good.dense/model.safetensors' -n 1048576"
    check "decode fault: reading the whole dense view fails with EIO" \
        sh -c "! cat '$TMP/mnt.bad/model.safetensors' >/dev/null 2>'$TMP/cat2.err' && grep -q 'Input/output error' '$TMP/cat2.err'"
    check "decode fault: config.json still reads" cmp -s "$TMP/mnt.bad/config.json" "$TMP/good.dense/config.json"
    check "decode fault: the daemon is still running and mounted" \
        sh -c "kill -0 $p && grep -q ' $TMP/mnt.bad fuse.ctfs ' /proc/mounts"
    unmount_ctfs "$TMP/mnt.bad"
    check "decode fault: the source was not modified by the mount" \
        sh -c "[ \$(stat -c %s '$TMP/bad/model.safetensors') = \$(stat -c %s '$TMP/s/compressed/model.safetensors') ]"
else
    not_ok "decode fault: mount: $(cat "$TMP/ctfs.err")"
fi

# --- Daemonised, the same fault is logged to syslog -------------------------
# Exercised where nothing owns /dev/log (a container, CI): the test listens
# there itself for the daemon's datagrams, then removes its own socket (and
# nothing else: not a link, not a socket it did not make).
if [ "$(id -u)" = 0 ] && [ ! -e /dev/log ] && [ ! -L /dev/log ]; then
    "$NPY_PYTHON" - "$TMP/syslog" "$TMP/syslog.ready" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
s.settimeout(15)
open(sys.argv[2], "w").close()
with open(sys.argv[1], "wb") as out:
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        out.write(d + b"\n")
        out.flush()
        if b"row_offsets" in d:
            break
PY
    lpid=$!
    i=0
    while [ ! -e "$TMP/syslog.ready" ] && kill -0 $lpid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    if [ -e "$TMP/syslog.ready" ]; then
        cleanup_hooks="$cleanup_hooks kill $lpid 2>/dev/null; [ -S /dev/log ] && [ ! -L /dev/log ] && rm -f /dev/log;"
    else
        echo "note: cannot listen on /dev/log: the syslog path is not exercised"
        kill $lpid 2>/dev/null
    fi
    mkdir -p "$TMP/mnt.daemon"
    if [ -e "$TMP/syslog.ready" ] && "$CTFS" "$TMP/bad" "$TMP/mnt.daemon" 2>"$TMP/daemon.err"; then
        cleanup_hooks="$cleanup_hooks fusermount3 -u '$TMP/mnt.daemon' 2>/dev/null;"
        check "daemonised: nothing on stderr" [ ! -s "$TMP/daemon.err" ]
        cat "$TMP/mnt.daemon/tensors/$BAD" >/dev/null 2>&1
        wait $lpid
        fusermount3 -u "$TMP/mnt.daemon"
        # <27>: facility daemon, priority err; then the ident with the pid
        check "daemonised: the fault is logged to syslog (daemon.err, ident ctfs) naming the tensor" \
            grep -q "^<27>.* ctfs\[[0-9]*\]: read of $BAD at 0 failed: tensor '$BAD': row_offsets\[300\]" "$TMP/syslog"
        check "daemonised: the start is logged too" grep -q "ctfs\[[0-9]*\]: serving $TMP/bad at $TMP/mnt.daemon" "$TMP/syslog"
    elif [ -e "$TMP/syslog.ready" ]; then
        not_ok "daemonised mount: $(cat "$TMP/daemon.err")"
        kill $lpid 2>/dev/null
    fi
    [ -e "$TMP/syslog.ready" ] && [ -S /dev/log ] && [ ! -L /dev/log ] && rm -f /dev/log
else
    echo "note: /dev/log is taken or not root: the syslog path is not exercised"
fi

# --- A shard that changes under the mount ------------------------------------
# the sample compressed again into two shards (its int4 weights quantized
# anew from their decoded values), and what they decode to
"$MKCT" -q -c "$TMP/s/compressed/config.json" --shard-size 1M "$TMP/s/compressed" "$TMP/shd" \
    || not_ok "mkct --shard-size"
"$MKCT" -q --format dense "$TMP/shd" "$TMP/shd.dense" || not_ok "mkct --format dense of the shards"
md5s "$TMP"/shd.dense/*.safetensors >"$TMP/shd.md5"
check "the dense shards hold the sample's 21 tensors" [ "$(wc -l <"$TMP/shd.md5")" = 21 ]
S1=$TMP/shd/model-00001-of-00002.safetensors
in_shard1=$("$NPY_PYTHON" -c 'import json, sys
m = json.load(open(sys.argv[1]))["weight_map"]
print("|".join(sorted({k.rsplit(".", 1)[0] for k, v in m.items() if v.startswith("model-00001")})))' \
    "$TMP/shd/model.safetensors.index.json")
check "shard 1 holds some modules (${in_shard1%%|*}...)" [ -n "$in_shard1" ]
if mount_ctfs "$TMP/shd" "$TMP/mnt.shd"; then
    p=$pid
    # rewritten in place (as `cp new old` would): one byte longer
    printf x >>"$S1"
    T1=model.layers.0.mlp.down_proj.weight
    cat "$TMP/mnt.shd/tensors/$T1" >/dev/null 2>"$TMP/cat.err"
    check "changed shard: reading a tensor it holds fails with EIO" grep -q "Input/output error" "$TMP/cat.err"
    check "...and a log line naming the tensor and the changed file" \
        grep -q "tensor '$T1': .*model-00001-of-00002.safetensors: file changed since it was opened" "$TMP/ctfs.err"
    check "changed shard: every tensor of the other shard reads with the reference's bytes" \
        others_right "$TMP/mnt.shd" "^($in_shard1)\.weight\$" "$TMP/shd.md5"
    check "changed shard: the other dense shard is mkct's, byte for byte" \
        cmp -s "$TMP/mnt.shd/model-00002-of-00002.safetensors" "$TMP/shd.dense/model-00002-of-00002.safetensors"
    check "changed shard: its own dense shard fails with EIO" \
        sh -c "! cat '$TMP/mnt.shd/model-00001-of-00002.safetensors' >/dev/null 2>'$TMP/cat2.err' && grep -q 'Input/output error' '$TMP/cat2.err'"
    check "changed shard: the rewritten index still reads" \
        sh -c "'$NPY_PYTHON' -c 'import json, sys; json.load(open(sys.argv[1]))' '$TMP/mnt.shd/model.safetensors.index.json'"
    check "changed shard: the statistics file still reads" grep -q '^misses ' "$TMP/mnt.shd/.ctfs-stats"
    check "changed shard: the daemon is still running and mounted" \
        sh -c "kill -0 $p && grep -q ' $TMP/mnt.shd fuse.ctfs ' /proc/mounts"
    unmount_ctfs "$TMP/mnt.shd"
else
    not_ok "changed shard: mount: $(cat "$TMP/ctfs.err")"
fi
finish
