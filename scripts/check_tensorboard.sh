#!/usr/bin/env bash
# Checks that TensorBoard itself reads what a run writes: trains the default MLP (MNIST, CHTs-n,
# fetched if missing) for 2 epochs into a fresh folder and runs `tensorboard --inspect` on it
# (PyPI `tensorboard` in a venv of its own, target/tb-venv, made once; set TB_VENV to reuse
# another). Prints the tags TensorBoard found; fails if the step or epoch scalars are missing.
# Not part of CI (it downloads TensorBoard and trains for a minute or two).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TB_VENV:-target/tb-venv}"
if [ ! -x "$venv/bin/tensorboard" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q tensorboard
fi
out=$(mktemp -d)/run
cargo run --release -q -p cht-cli -- train --set train.epochs=2 --out "$out"
"$venv/bin/tensorboard" --inspect --logdir "$out" 2>/dev/null | tee "$out/inspect.txt"
for tag in train/loss train/lr test/accuracy topology/itop; do
  grep -q "$tag" "$out/inspect.txt" || { echo "check_tensorboard: no $tag in $out" >&2; exit 1; }
done
echo "check_tensorboard: TensorBoard reads $out (steps.jsonl: $(wc -l <"$out/steps.jsonl") lines)"
