#!/usr/bin/env bash
# The long fuzzing budget, on demand. `cargo test --release` already fuzzes every reader of
# untrusted bytes for 10 000 cases (a few seconds in all); this script runs each reader's fuzz
# test for much longer, one at a time, and prints each summary line
# (`fuzz <reader>: N cases, slowest case X ms, largest allocation Y bytes`).
#
#   bash scripts/fuzz.sh [SECONDS_PER_READER]     # default 600
#
# A failing input is written to target/fuzz-failures/<reader>/<case>.bin and the run stops with
# the reader, the case and the reason; once fixed, copy the file into the reader's regression
# corpus (crates/<crate>/tests/fuzz-corpus/<reader>/), which every `cargo test` replays.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: bash scripts/fuzz.sh [SECONDS_PER_READER]" >&2
    exit 2
fi

# package  test target  test  reader (the name given to cht_fuzz::Fuzz::new, for the listing)
readers=(
    "cht-sparse --test=fuzz npy_masks_never_panic npy-mask"
    "cht-sparse --test=fuzz text_masks_never_panic text-mask"
    "cht-data --test=fuzz idx_files_never_panic idx"
    "cht-data --test=fuzz char_corpora_never_panic corpus-char"
    "cht-data --test=fuzz bpe_corpora_never_panic corpus-bpe"
    "cht-data --test=fuzz tokenizers_never_panic tokenizer-json"
    "cht-data --test=fuzz web_subsets_never_panic web-subset"
    "cht-cli --bin=cht fuzz::mlp_configurations_never_panic mlp-config"
    "cht-cli --bin=cht fuzz::lm_configurations_never_panic lm-config"
    "cht-cli --bin=cht fuzz::checkpoints_never_panic checkpoint"
    "cht-cli --bin=cht fuzz::scheduler_states_never_panic_and_accepted_ones_are_usable scheduler"
)

echo "fuzzing ${#readers[@]} readers for ${seconds} s each:"
for r in "${readers[@]}"; do
    read -r _ _ _ name <<<"$r"
    echo "  $name"
done

cargo test --release -q -p cht-sparse -p cht-data --test fuzz --no-run
cargo test --release -q -p cht-cli --bin cht --no-run

summaries=()
for r in "${readers[@]}"; do
    read -r package target test name <<<"$r"
    echo "== $name ($package, $test)"
    out=$(CHT_FUZZ_SECONDS="$seconds" cargo test --release -q -p "$package" "$target" \
        -- --exact "$test" --nocapture 2>&1) || {
        echo "$out" | tail -n 30
        echo "fuzz.sh: $name failed (see above)" >&2
        exit 1
    }
    line=$(echo "$out" | grep -oE "fuzz $name: .*" || true)
    echo "$line"
    summaries+=("$line")
done

echo
echo "summary:"
printf '  %s\n' "${summaries[@]}"
