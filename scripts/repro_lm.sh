#!/usr/bin/env bash
# Reruns the language-model comparison of docs/RESULTS.md (90 % sparsity, tiny-shakespeare) and
# prints its table.
#
#   scripts/repro_lm.sh [--corpus PATH] [--methods "fc set chts chtss"] [--seeds "0"] [--lanes 1]
#                       [--tag NAME] [--tiny STEPS]
#                       [-- extra `cht lm train` options, e.g. --set train.steps=3000]
#
# Each run writes runs/lm-<method>-s<seed>/ (runs/lm-<tag>-<method>-s<seed>/ with --tag, so that a
# sweep with other options does not mix with the presets); a finished run is skipped, an
# interrupted one resumed. Runs use the default backend (a GPU if there is one, else the CPU
# backend; pass `-- --backend cpu` to force it). With several seeds the table ends with each
# method's mean and standard deviation, and its mean difference to SET over the same seeds.
# --tiny STEPS trains the tiny model of RESULTS.md's seed sweeps instead of the small preset (2 blocks,
# d_model 64, SwiGLU 176, context 64, batch 8, STEPS steps with 10 % warm-up, ΔT 50, one validation
# at the end) on the CPU backend; e.g. the ten-seed sweep, two runs side by side on one thread each:
#   RAYON_NUM_THREADS=1 scripts/repro_lm.sh --tiny 800 --tag tiny800 --methods "set chts chtss" \
#     --seeds "0 1 2 3 4 5 6 7 8 9" --lanes 2
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=../shared/data/tinyshakespeare/input.txt
methods="fc set chts chtss"
seeds="0"
lanes=1
tag=""
tiny=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus) corpus="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --lanes) lanes="$2"; shift 2 ;;
    --tag) tag="$2-"; shift 2 ;;
    --tiny) tiny="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -n "$tiny" ]; then
  extra=(--backend cpu --set model.d_model=64 --set model.ffn=176 --set model.layers=2 --set model.seq=64
    --set train.batch=8 --set "train.steps=$tiny" --set "train.warmup=$((tiny / 10))"
    --set "train.eval_every=$tiny" --set "train.checkpoint_every=$tiny" --set dst.update_interval=50
    --set train.iterative_warmup=20 "${extra[@]}")
fi
[ -f "$corpus" ] || { echo "corpus $corpus not found: pass --corpus PATH (tiny-shakespeare's input.txt)" >&2; exit 2; }
# CHT=path/to/cht uses that binary as it is (e.g. a copy, so that rebuilding does not disturb a sweep).
if [ -z "${CHT:-}" ]; then cargo build --release -q -p cht-cli; fi
cht=${CHT:-target/release/cht}
run_one() {
  local m="$1" s="$2" out="runs/lm-$tag$1-s$2"
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
    f="runs/lm-$tag$m-s$s/summary.json"
    [ -f "$f" ] || continue
    get() { grep "\"$1\"" "$f" | head -1 | sed 's/.*: *//; s/,$//'; }
    printf '| %s | %s | %s | %.3f | %.3f | %.0f |\n' "$m" "$s" "$(get steps)" "$(get final_val_ppl)" \
      "$(get best_val_ppl)" "$(get mean_tokens_per_s)"
  done
done
python3 - "$tag" "$methods" "$seeds" <<'PY'
import json, math, os, sys
tag, methods, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
if len(seeds) < 2:
    sys.exit()
ppl = {}
for m in methods:
    for s in seeds:
        f = f"runs/lm-{tag}{m}-s{s}/summary.json"
        if os.path.exists(f):
            ppl[m, s] = json.load(open(f))["final_val_ppl"]
def stats(xs):
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
    return mean, sd
print()
print("| method | seeds | mean val perplexity | sd | mean difference to SET (same seeds) | sd of the mean difference | seeds below SET |")
print("|---|---|---|---|---|---|---|")
for m in methods:
    xs = [ppl[m, s] for s in seeds if (m, s) in ppl]
    if not xs:
        continue
    mean, sd = stats(xs)
    diffs = [ppl[m, s] - ppl["set", s] for s in seeds if (m, s) in ppl and ("set", s) in ppl]
    if m != "set" and len(diffs) > 1:
        dm, dsd = stats(diffs)
        below = sum(d < 0 for d in diffs)
        extra = f"{dm:+.3f} | {dsd / math.sqrt(len(diffs)):.3f} | {below}/{len(diffs)}"
    else:
        extra = "— | — | —"
    print(f"| {m} | {len(xs)} | {mean:.3f} | {sd:.3f} | {extra} |")
PY
