# Sourced by scripts/test and scripts/demo.
ct_packages="build-essential autoconf automake pkg-config libfuse3-dev fuse3 libcjson-dev check python3-numpy attr"

ct_install_deps() {
    local missing=()
    for p in $ct_packages; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
        return 1
    fi
    echo "installing: ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Tests that run again under AddressSanitizer/UBSan (no FUSE mounts there).
ct_sanitizer_tests() {
    echo tests/unit/check_dtype tests/unit/check_st tests/unit/check_refvectors tests/unit/check_malformed tests/unit/check_kernels tests/unit/check_cache tests/unit/check_config tests/programs/refvectors.sh tests/programs/cli.sh tests/programs/formats.sh tests/programs/mkct_writer.sh
}
