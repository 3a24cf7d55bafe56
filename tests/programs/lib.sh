# Sourced by the shell tests.  Runs under Automake's test-driver: exit 0
# pass, 1 fail, 77 skip (with the reason on stderr).
set -u
: "${top_builddir:?run through make check}"
: "${top_srcdir:?run through make check}"
REFVECTORS=${REFVECTORS:-$top_srcdir/../shared/refvectors}
MKCT=$top_builddir/mkct
CTLS=$top_builddir/ctls
CTFS=$top_builddir/ctfs
STCMP=$top_builddir/tests/stcmp
NPY_PYTHON=/usr/bin/python3
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ct-test.XXXXXX")
fails=0
checks=0
cleanup_hooks=""
trap 'eval "$cleanup_hooks"; rm -rf "$TMP"' EXIT

ok() { checks=$((checks + 1)); echo "ok: $*"; }
not_ok() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }
# check DESCRIPTION COMMAND...: pass when the command succeeds
check() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
# expect_exit CODE DESCRIPTION COMMAND...: pass when the command exits with CODE
expect_exit() {
    local want=$1 d=$2; shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"; local got=$?
    if [ "$got" = "$want" ]; then ok "$d (exit $got)"; else not_ok "$d: exit $got, wanted $want: $(head -c 300 "$TMP/err")"; fi
}
skip() { echo "SKIP: $*" >&2; exit 77; }
need_refvectors() { [ -d "$REFVECTORS" ] || skip "reference vectors not found at $REFVECTORS"; }
finish() {
    echo "$((checks - fails)) passed, $fails failed"
    [ "$checks" -gt 0 ] || { echo "no checks ran"; exit 1; }
    [ "$fails" = 0 ]
}
