#!/usr/bin/env bash
# Reruns the language-model comparison of docs/RESULTS.md (90 % sparsity, tiny-shakespeare) and
# prints its table.
#
#   scripts/repro_lm.sh [--corpus PATH] [--methods "fc set chts chtss"] [--seeds "0"] [--lanes 1]
#                       [-- extra `cht lm train` options, e.g. --set train.steps=3000]
#
# Each run writes runs/lm-<method>-s<seed>/; a finished run is skipped, an interrupted one resumed.
# Runs use the default backend (a GPU if there is one, else the CPU backend).
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=../shared/data/tinyshakespeare/input.txt
methods="fc set chts chtss"
seeds="0"
lanes=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus) corpus="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --lanes) lanes="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -f "$corpus" ] || { echo "corpus $corpus not found: pass --corpus PATH (tiny-shakespeare's input.txt)" >&2; exit 2; }
cargo build --release -q -p cht-cli
cht=target/release/cht
run_one() {
  local m="$1" s="$2" out="runs/lm-$1-s$2"
  if [ -f "$out/summary.json" ]; then echo "done already: $out"; return; fi
  if [ -f "$out/checkpoint.safetensors" ]; then
    $cht lm train --resume "$out" > "$out.log" 2>&1
  else
    mkdir -p runs
    $cht lm train --config "configs/lm-$m.toml" --set "data.corpus=$corpus" --set "train.seed=$s" \
      "${extra[@]}" --out "$out" > "$out.log" 2>&1
  fi
  echo "finished: $out"
}
for s in $seeds; do
  for m in $methods; do
    run_one "$m" "$s" &
    while [ "$(jobs -r | wc -l)" -ge "$lanes" ]; do sleep 5; done
  done
done
wait
echo
echo "| method | seed | steps | val perplexity (final) | best | tokens/s |"
echo "|---|---|---|---|---|---|"
for s in $seeds; do
  for m in $methods; do
    f="runs/lm-$m-s$s/summary.json"
    [ -f "$f" ] || continue
    get() { grep "\"$1\"" "$f" | head -1 | sed 's/.*: *//; s/,$//'; }
    printf '| %s | %s | %s | %.3f | %.3f | %.0f |\n' "$m" "$s" "$(get steps)" "$(get final_val_ppl)" \
      "$(get best_val_ppl)" "$(get mean_tokens_per_s)"
  done
done
