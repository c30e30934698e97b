#!/usr/bin/env bash
# Reruns the paper's Table 7 (MLP, 1 % density, 100 epochs) with cht and rebuilds the table in
# docs/RESULTS.md from the archived run folders (`cht results`): no number in it is typed by hand.
#
#   scripts/repro_mlp.sh [--methods "chts-n set ..."] [--datasets "mnist fashion"] [--seeds "0 1 2"]
#                        [--epochs 100] [--lanes 2] [--threads 1] [--list]
#
# Without --methods/--seeds it runs the whole table: seeds 0, 1, 2 of FC, SET, RigL, CHTs-p, CHTs-n
# and CHTss-n; seed 0 of MEST, GMP, GraNet and CHT; and the Fashion-MNIST CHTss-n variant with RI
# soft removal (configs/fashion-chtss-n-ris.toml). A method name is a preset: configs/<d>-<m>.toml.
#
# Each run trains in runs/mlp/<dataset>-<method>-d<density>-s<seed>/ (checkpoint every epoch);
# when it finishes, its summary.json, metrics.jsonl and config.toml are copied to
# results/mlp/<same name>/, which is kept in git. A run whose archive holds the requested epochs is
# skipped; an interrupted one resumes from its checkpoint (bit for bit). `--lanes` runs go side by
# side with `--threads` CPU threads each. `--list` prints what is done, partial and to do.
set -euo pipefail
cd "$(dirname "$0")/.."
methods=""
datasets="mnist fashion"
seeds=""
epochs=100
lanes=2
threads=1
list=0
while [ $# -gt 0 ]; do
  case "$1" in
    --methods) methods="$2"; shift 2 ;;
    --datasets) datasets="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --lanes) lanes="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --list) list=1; shift ;;
    *) echo "repro_mlp: unknown option $1" >&2; exit 2 ;;
  esac
done
runs=runs/mlp
archive=results/mlp

# The jobs: "dataset method seed" lines.
jobs() {
  local d m s
  for d in $datasets; do
    if [ -n "$methods" ] || [ -n "$seeds" ]; then
      for m in ${methods:-fc set rigl mest gmp granet cht chts-p chts-n chtss-n}; do
        for s in ${seeds:-0}; do echo "$d $m $s"; done
      done
    else
      for s in 0 1 2; do
        for m in fc set rigl chts-p chts-n chtss-n; do echo "$d $m $s"; done
      done
      for m in mest gmp granet cht; do echo "$d $m 0"; done
      if [ "$d" = fashion ]; then echo "$d chtss-n-ris 0"; fi
    fi
  done
}

long_name() { [ "$1" = fashion ] && echo fashion-mnist || echo "$1"; }
config_of() { echo "configs/$1-$2.toml"; }
density_of() { sed -n 's/^density *= *\([0-9.e-]*\).*/\1/p' "$1" | head -1; }
name_of() { echo "$(long_name "$1")-$2-d$(density_of "$(config_of "$1" "$2")")-s$3"; }
done_already() { [ -f "$archive/$1/summary.json" ] && grep -q "\"epochs\": $epochs," "$archive/$1/summary.json"; }

for job in $(jobs | tr ' ' ':'); do
  IFS=: read -r d m s <<<"$job"
  [ -f "$(config_of "$d" "$m")" ] || { echo "repro_mlp: no preset $(config_of "$d" "$m")" >&2; exit 2; }
done

if [ "$list" = 1 ]; then
  jobs | while read -r d m s; do
    n=$(name_of "$d" "$m" "$s")
    if done_already "$n"; then echo "done     $n"
    elif [ -f "$runs/$n/checkpoint.safetensors" ]; then
      echo "partial  $n (epoch $(wc -l <"$runs/$n/metrics.jsonl") of $epochs)"
    else echo "to do    $n"; fi
  done
  exit 0
fi

cargo build --release -q -p cht-cli
cht=target/release/cht
for d in $datasets; do
  $cht data fetch "$(long_name "$d")" --data-dir data >/dev/null
done

run_one() {
  local d="$1" m="$2" s="$3" n out
  n=$(name_of "$d" "$m" "$s")
  out="$runs/$n"
  if done_already "$n"; then echo "done already: $n"; return; fi
  mkdir -p "$runs"
  local env=(env RAYON_NUM_THREADS="$threads")
  if [ -f "$out/checkpoint.safetensors" ]; then
    echo "resuming: $n"
    "${env[@]}" $cht train --resume "$out" --set "train.epochs=$epochs" >>"$out.log" 2>&1 \
      || { echo "FAILED: $n (see $out.log)"; return; }
  else
    echo "starting: $n"
    "${env[@]}" $cht train --config "$(config_of "$d" "$m")" --set "train.seed=$s" \
      --set "train.epochs=$epochs" --out "$out" --force >"$out.log" 2>&1 \
      || { echo "FAILED: $n (see $out.log)"; return; }
  fi
  mkdir -p "$archive/$n"
  cp "$out/summary.json" "$out/metrics.jsonl" "$out/config.toml" "$archive/$n/"
  echo "finished: $n"
}

running=0
while read -r d m s; do
  run_one "$d" "$m" "$s" &
  running=$((running + 1))
  if [ "$running" -ge "$lanes" ]; then wait -n || true; running=$((running - 1)); fi
done < <(jobs)
wait
$cht results "$archive" --into docs/RESULTS.md
