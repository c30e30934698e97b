#!/usr/bin/env bash
# The CPU backend against PyTorch eager on the same machine (issue #22) — a development tool, not a
# test. Alternates, RUNS times: PyTorch's small LM (FC and 90 % masked-dense, as the official CHT
# LLM code trains), then `cht bench lm` (FC and 10 % density); prints the median tokens/s of each
# and the ratio. Then CH2-L3n scores on 2048 × 5461 at 10 % and 30 %: the official dense formula
# in PyTorch against cht's node-based predictor in-library (`cht bench scores`).
#
#   scripts/bench_peer.sh            # 3 alternated runs, 2 threads for both
#   RUNS=5 THREADS=4 STEPS=30 scripts/bench_peer.sh
#
# "vs peer" is cht's speed over PyTorch's (tokens/s ratio; time ratio for the scores): > 1 is faster.
# Needs Python 3 with venv and PyPI access the first time: torch goes into target/peer-venv
# (PEER_VENV to use another one). Run it on an otherwise idle machine: the figures are wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
THREADS=${THREADS:-2}
STEPS=${STEPS:-20}
VENV=${PEER_VENV:-target/peer-venv}

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "creating $VENV with torch from PyPI (once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet torch numpy
fi
PY="$VENV/bin/python"
cargo build --release -p cht-cli --quiet
CHT=target/release/cht
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

export OMP_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS
for run in $(seq "$RUNS"); do
  echo "run $run/$RUNS" >&2
  "$PY" scripts/peer/lm_torch.py --density 1.0 --steps "$STEPS" --threads "$THREADS" >>"$LOG"
  "$PY" scripts/peer/lm_torch.py --density 0.1 --steps "$STEPS" --threads "$THREADS" >>"$LOG"
  "$CHT" bench lm --backend cpu --steps "$STEPS" --densities 0.1 --json >>"$LOG"
done
echo "node-based link prediction (CH2-L3n)" >&2
"$PY" scripts/peer/l3n_torch.py --threads "$THREADS" --runs 3 >>"$LOG"
"$CHT" bench scores --backend cpu --no-gpu --json --runs 3 >>"$LOG"

"$PY" - "$LOG" "$THREADS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
threads = sys.argv[2]
torch_v = next(r["torch"] for r in rows if r.get("peer") == "pytorch")
med = lambda xs: statistics.median(xs) if xs else float("nan")
print(f"\nsmall LM training (d 128, 4 blocks, FFN 352, ctx 128, batch 16, vocab 65), {threads} threads;"
      f" PyTorch {torch_v} eager; median of alternated runs")
print(f"{'model':<42} {'PyTorch tok/s':>14} {'cht tok/s':>10} {'vs peer':>9}")
for label, peer_density, cht_density in [("FC", 1.0, 1.0), ("90 % sparse", 0.1, 0.1)]:
    peer = med([r["tokens_per_s"] for r in rows
                if r.get("peer") == "pytorch" and r.get("density") == peer_density and "tokens_per_s" in r])
    ours_rows = [r for r in rows if r.get("bench") == "lm" and r["density"] == cht_density]
    ours = med([r["tokens_per_s"] for r in ours_rows])
    how = ours_rows[0]["execution"] if ours_rows else "?"
    name = f"{label} (peer {'masked dense' if peer_density < 1 else 'dense'}, cht {how})"
    print(f"{name:<42} {peer:>14.0f} {ours:>10.0f} {ours / peer:>8.2f}x")
print(f"\nCH2-L3n scores, {threads} threads: the official dense formula (PyTorch) vs cht in-library")
print(f"{'layer':<18} {'PyTorch s':>10} {'cht s':>8} {'cht path':>9} {'vs peer':>9}")
for r in rows:
    if r.get("peer") == "pytorch" and r.get("predictor") == "ch2-l3n":
        ours = next((o for o in rows if o.get("predictor") == "ch2-l3n" and "cpu_s" in o
                     and o["rows"] == r["rows"] and o["cols"] == r["cols"]
                     and abs(o["density"] - r["density"]) < 1e-9), None)
        if ours is None:
            continue
        layer = f"{r['rows']}x{r['cols']} @ {r['density'] * 100:.0f} %"
        print(f"{layer:<18} {r['seconds']:>10.3f} {ours['cpu_s']:>8.3f} {ours['picks'] or '-':>9}"
              f" {r['seconds'] / ours['cpu_s']:>8.2f}x")
PY
