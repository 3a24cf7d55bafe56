#!/bin/sh
# Reading a 4 GiB dense view through a 64 MiB cache keeps the daemon's
# peak RSS under cache_size + 64 MiB, and the bytes are right (all zeros
# after the header, which equals mkct's).
. "$top_srcdir/tests/programs/lib.sh"
. "$top_srcdir/tests/programs/fuse.sh"
need_fuse
R=65536 C=32768
/usr/bin/python3 "$top_srcdir/tests/gen_huge_sparse.py" "$TMP/huge.safetensors" $R $C || skip "cannot create the test file"
check "source file is small on disk" [ "$(du -k "$TMP/huge.safetensors" | cut -f1)" -lt 4096 ]
mount_ctfs "$TMP/huge.safetensors" "$TMP/mnt" -o cache_size=64M || { not_ok "mount: $(cat "$TMP/ctfs.err")"; finish; }
view="$TMP/mnt/huge.safetensors"
size=$(stat -c %s "$view")
hdr=$(od -An -tu8 -N8 "$view" | tr -d ' ')
check "view is 4 GiB of tensor data plus the header" [ "$size" = $((8 + hdr + R * C * 2)) ]
# every data byte is zero: count non-zero bytes after the header
nz=$(tail -c +$((9 + hdr)) "$view" | tr -d '\000' | wc -c)
check "all 4 GiB of decoded data are zeros" [ "$nz" = 0 ]
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
echo "daemon VmHWM: $hwm kB"
check "peak RSS $hwm kB < cache_size + 64 MiB" [ "$hwm" -lt $(((64 + 64) * 1024)) ]
check "cache stayed within its cap" sh -c "awk '/^cache_bytes/ {exit !(\$2 <= 64*1048576)}' '$TMP/mnt/.ctfs-stats'"
# every block decoded into the cache is still resident, was evicted or was
# given up behind the sequential reader (or was a private buffer), and
# almost all of the 4096 blocks had to go
stats="$TMP/mnt/.ctfs-stats"
check "decoded blocks = resident + evicted + dropped + private" sh -c "awk '{v[\$1]=\$2} END {exit !(v[\"misses\"] + v[\"prefetched\"] == v[\"cache_blocks\"] + v[\"evictions\"] + v[\"dropped\"] + v[\"uncached\"])}' '$stats'"
check "at least 4096 - 64 blocks given up" sh -c "awk '{v[\$1]=\$2} END {exit !(v[\"evictions\"] + v[\"dropped\"] >= 4096 - 64)}' '$stats'"
check "a sequential reader's blocks are given up behind it" grep -q '^dropped [1-9]' "$stats"
json='{"__metadata__":{"format":"pt"},"w.weight":{"dtype":"BF16","shape":[65536,32768],"data_offsets":[0,4294967296]}}'
check "view header is the reference writer's" sh -c "[ \"\$(tail -c +9 '$view' | head -c $hdr | sed 's/ *\$//')\" = '$json' ]"
unmount_ctfs "$TMP/mnt"
finish
