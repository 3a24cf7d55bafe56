#!/bin/sh
# Every reference case (three upstream releases, sharded copies included)
# decodes through `mkct --format dense` to exactly the tensors upstream's
# decompression gives (expected.safetensors).
. "$top_srcdir/tests/programs/lib.sh"
need_refvectors

ncases=0
for model in "$REFVECTORS"/ct-*/*/model.safetensors; do
    case_dir=$(dirname "$model")
    name=$(basename "$(dirname "$case_dir")")/$(basename "$case_dir")
    ncases=$((ncases + 1))
    out="$TMP/$(echo "$name" | tr / _).safetensors"
    if "$MKCT" -q --format dense "$model" "$out" 2>"$TMP/err"; then
        check "$name decodes to expected.safetensors" "$STCMP" "$out" "$case_dir/expected.safetensors"
    else
        not_ok "$name: mkct failed: $(cat "$TMP/err")"
    fi
    # Writing again must refuse to overwrite, and --force must replace.
    expect_exit 5 "$name: existing output refused" "$MKCT" -q --format dense "$model" "$out"
    if [ -d "$case_dir/sharded" ]; then
        outd="$TMP/$(echo "$name" | tr / _).dense"
        if "$MKCT" -q --format dense "$case_dir/sharded" "$outd" 2>"$TMP/err"; then
            # The dense shards together hold exactly the expected tensors.
            n=0
            for s in "$outd"/model-*.safetensors; do n=$((n + 1)); done
            check "$name/sharded: 4 dense shards" [ "$n" = 4 ]
            check "$name/sharded: index rewritten with dense names" \
                grep -q '"model.layers.0.self_attn.q_proj.weight": "model-0000[1-4]-of-00004.safetensors"' \
                "$outd/model.safetensors.index.json"
            check "$name/sharded: no compressed names in the index" \
                sh -c "! grep -q 'bitmask\\|compressed\\|row_offsets' '$outd/model.safetensors.index.json'"
            check "$name/sharded: config.json has no compression config" \
                sh -c "! grep -q 'quantization_config' '$outd/config.json'"
            check "$name/sharded: dense tensors equal expected" \
                "$top_builddir/tests/stmerge" "$TMP/merged.safetensors" "$outd"/model-*.safetensors
            check "$name/sharded: merged shards equal expected" "$STCMP" "$TMP/merged.safetensors" "$case_dir/expected.safetensors"
            rm -f "$TMP/merged.safetensors"
        else
            not_ok "$name/sharded: mkct failed: $(cat "$TMP/err")"
        fi
    fi
done
check "found all 25 reference cases" [ "$ncases" = 25 ]
finish
