#!/usr/bin/env bash
# Reruns the paper's Table 7 (MLP, 1 % density) with cht and rebuilds docs/RESULTS.md's table.
#
#   scripts/repro_mlp.sh [--methods "chts-n set ..."] [--datasets "mnist fashion"] [--seeds "0 1 2"]
#                        [--epochs 100] [--lanes 2]
#
# Each run writes runs/<dataset>-<method>-s<seed>/ (metrics.jsonl, summary.json, plots, checkpoint);
# a run that already finished is skipped, an interrupted one is resumed from its checkpoint.
# `lanes` runs go side by side, each on one CPU thread (RAYON_NUM_THREADS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
methods="fc set rigl mest gmp granet cht chts-p chts-n chtss-n"
datasets="mnist fashion"
seeds="0"
epochs=100
lanes=2
while [ $# -gt 0 ]; do
  case "$1" in
    --methods) methods="$2"; shift 2 ;;
    --datasets) datasets="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --lanes) lanes="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cargo build --release -q -p cht-cli
cht=target/release/cht
for d in $datasets; do
  case "$d" in mnist) name=mnist ;; fashion) name=fashion-mnist ;; *) echo "unknown dataset $d" >&2; exit 2 ;; esac
  $cht data fetch "$name" --data-dir data >/dev/null
done
run_one() {
  local d="$1" m="$2" s="$3"
  local name=$([ "$d" = fashion ] && echo fashion-mnist || echo mnist)
  local out="runs/$name-$m-s$s"
  if [ -f "$out/summary.json" ] && grep -q "\"epochs\": $epochs" "$out/summary.json"; then
    echo "done already: $out"; return
  fi
  if [ -f "$out/checkpoint.safetensors" ]; then
    RAYON_NUM_THREADS=1 $cht train --resume "$out" > "$out.log" 2>&1
  else
    mkdir -p runs
    RAYON_NUM_THREADS=1 $cht train --config "configs/$d-$m.toml" --set "train.seed=$s" \
      --set "train.epochs=$epochs" --out "$out" > "$out.log" 2>&1
  fi
  echo "finished: $out"
}
jobs_running=0
for s in $seeds; do for m in $methods; do for d in $datasets; do
  run_one "$d" "$m" "$s" &
  jobs_running=$((jobs_running + 1))
  if [ "$jobs_running" -ge "$lanes" ]; then wait -n; jobs_running=$((jobs_running - 1)); fi
done; done; done
wait
python3 scripts/results_table.py runs > docs/results-table.md
echo "table: docs/results-table.md"
