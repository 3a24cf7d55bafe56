#!/bin/sh
# Formats the reference vectors do not cover (FP8 tensor/channel/block,
# NVFP4, MXFP4, MXFP8, int with F16 scales and zero points, block int8,
# 3/5/6/7-bit packing in layouts A and B, 3-D MoE with packed zero points,
# v0.4 I64 zero points, 2:4 stacked on int8 and FP8, mixed precision,
# config in __metadata__, <= 0.3 top-level sparsity_config, 3-D sparse):
# tests/gen_formats.py writes each checkpoint with its dense tensors
# computed independently in numpy from the format note; mkct must decode
# each to exactly those bytes, and any byte range decoded alone must equal
# the same slice of the whole.
. "$top_srcdir/tests/programs/lib.sh"
/usr/bin/python3 -c 'import numpy' 2>/dev/null || skip "Debian's python3-numpy is not installed"
/usr/bin/python3 "$top_srcdir/tests/gen_formats.py" "$TMP/cases" >"$TMP/list" || { not_ok "generator failed"; finish; }
n=0
while read -r c; do
    n=$((n + 1))
    d="$TMP/cases/$c"
    if "$MKCT" -q --format dense "$d" "$TMP/$c.out" 2>"$TMP/err"; then
        check "$c: decodes to the independently computed tensors" "$STCMP" "$TMP/$c.out/model.safetensors" "$d/expected.safetensors"
        check "$c: partial reads equal the whole" "$top_builddir/tests/stread" "$d"
    else
        not_ok "$c: mkct failed: $(cat "$TMP/err")"
    fi
done <"$TMP/list"
check "26 cases generated" [ "$n" = 26 ]
for nb in 3 5 6 7; do
    check "int$nb: layouts A and B store different bytes" sh -c "! cmp -s '$TMP/cases/pack_int${nb}_layoutA/model.safetensors' '$TMP/cases/pack_int${nb}_layoutB/model.safetensors'"
done
"$CTLS" --keep-qparams "$TMP/cases/nvfp4" >"$TMP/keep"
check "--keep-qparams keeps weight_scale and the global scales" sh -c "grep -q 'down_proj.weight_scale ' '$TMP/keep' && grep -q 'weight_global_scale ' '$TMP/keep' && grep -q 'input_global_scale ' '$TMP/keep'"
"$CTLS" "$TMP/cases/nvfp4" >"$TMP/nokeep"
check "without it they are dropped" sh -c "! grep -q 'scale ' '$TMP/nokeep'"
check "nvfp4 lists as nvfp4-pack-quantized BF16" grep -q 'down_proj.weight  *BF16  *\[24, 64\]  *nvfp4-pack-quantized' "$TMP/nokeep"
finish
