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
            # (as many as the source has: how many the split made depends
            # on the vector's data)
            n=0 want=0
            for s in "$outd"/model-*.safetensors; do n=$((n + 1)); done
            for s in "$case_dir"/sharded/model-*.safetensors; do want=$((want + 1)); done
            check "$name/sharded: $want dense shards, one per stored shard" [ "$n" = "$want" ]
            check "$name/sharded: index rewritten with dense names" \
                grep -q '"model.layers.0.self_attn.q_proj.weight": "model-[0-9]*-of-[0-9]*.safetensors"' \
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
# every case the manifests list (files with their sha256) was found and run
listed=$("$NPY_PYTHON" -c '
import glob, json, sys
print(sum(k.endswith("/model.safetensors") and k.count("/") == 1
          for m in glob.glob(sys.argv[1] + "/ct-*/manifest.json") for k in json.load(open(m))["sha256"]))
' "$REFVECTORS")
check "found all $listed reference cases the manifests list" sh -c "[ '$ncases' = '$listed' ] && [ '$listed' -ge 1 ]"
finish
