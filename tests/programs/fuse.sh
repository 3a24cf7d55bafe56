# Mount helpers for the shell tests (sourced after lib.sh).
need_fuse() {
    [ -c /dev/fuse ] || skip "/dev/fuse is not available"
    command -v fusermount3 >/dev/null 2>&1 || skip "fusermount3 is not installed"
    [ -r /dev/fuse ] && [ -w /dev/fuse ] || skip "/dev/fuse is not usable by this user"
}

# mount_ctfs SRC MNT [ctfs options...]: start ctfs in the foreground in the
# background, wait until the mount appears; registers the cleanup.
mount_ctfs() {
    src=$1 mnt=$2
    shift 2
    mkdir -p "$mnt"
    "$CTFS" -f "$src" "$mnt" "$@" 2>"$TMP/ctfs.err" &
    pid=$!
    cleanup_hooks="$cleanup_hooks fusermount3 -u '$mnt' 2>/dev/null; kill $pid 2>/dev/null;"
    i=0
    while [ $i -lt 100 ]; do
        grep -q " $mnt fuse.ctfs " /proc/mounts && { eval "pid_$(echo "$mnt" | md5sum | cut -c1-8)=$pid"; return 0; }
        kill -0 $pid 2>/dev/null || return 1
        sleep 0.05
        i=$((i + 1))
    done
    return 1
}

unmount_ctfs() {
    fusermount3 -u "$1"
    eval "p=\$pid_$(echo "$1" | md5sum | cut -c1-8)"
    [ -n "$p" ] && wait "$p" 2>/dev/null
    return 0
}
