#!/usr/bin/env bash
# The MPI backend's tests (cht-dist's `mpi` feature), under Open MPI's mpirun (or MPICH's):
#  - crates/cht-dist/examples/mpi_check with 1, 2, 3 and 4 ranks: deterministic all-reduce sums
#    (rank order, identical bits on every rank, several lengths and chunk lengths), disagreements
#    between ranks reported on every rank, broadcasts, barrier;
#  - `mpi_check die`: rank 1 aborts while rank 0 waits in an all-reduce: the job must end non-zero
#    within 60 s (mpirun ends it at once);
#  - `mpi_check hang`: rank 1 sleeps while rank 0 waits in an all-reduce: the 5 s watchdog must
#    abort the job (non-zero, within 60 s, with its message on stderr).
# Oversubscribed (CI: 2 cores) and allowed as root (CI runs as root). Needs mpirun: run
# scripts/install-deps.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mpirun >/dev/null; then
  echo "test-mpi: SKIPPED: mpirun not found (install Open MPI: scripts/install-deps.sh)" >&2
  exit 1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# More ranks than cores, and root allowed (flags below too, for launchers that ignore these).
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe --allow-run-as-root)

echo "== build (cht-dist, feature mpi)"
cargo build --release -p cht-dist --features mpi --example mpi_check
CHECK="$CARGO_TARGET_DIR/release/examples/mpi_check"
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT

echo "== mpi_check with 1, 2, 3, 4 ranks"
for n in 1 2 3 4; do
  timeout 300 "${MPIRUN[@]}" -n "$n" "$CHECK" | tee "$LOGS"/check.log
  grep -q "mpi_check: ok ($n ranks)" "$LOGS"/check.log \
    || { echo "test-mpi: FAILED: no ok line with $n ranks" >&2; exit 1; }
done

# A job whose rank 1 dies or hangs must end non-zero, quickly.
expect_job_failure() {
  local mode=$1 n=$2 start end rc=0
  start=$(date +%s.%N)
  timeout 60 "${MPIRUN[@]}" -n "$n" "$CHECK" "$mode" >"$LOGS/$mode.log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  local took
  took=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  echo "mpi_check $mode with $n ranks: exit $rc after $took s"
  if [ "$rc" = 0 ]; then
    cat "$LOGS/$mode.log" >&2
    echo "test-mpi: FAILED: mpi_check $mode exited 0" >&2; exit 1
  fi
  if [ "$rc" = 124 ] || [ "$rc" = 137 ] || awk -v t="$took" 'BEGIN { exit !(t >= 60) }'; then
    cat "$LOGS/$mode.log" >&2
    echo "test-mpi: FAILED: mpi_check $mode took $took s (limit 60 s)" >&2; exit 1
  fi
  if [ "$mode" = hang ] && ! grep -q "did not complete within 5 s" "$LOGS/$mode.log"; then
    cat "$LOGS/$mode.log" >&2
    echo "test-mpi: FAILED: no watchdog message in mpi_check hang" >&2; exit 1
  fi
  if grep -q "the all-reduce returned" "$LOGS/$mode.log"; then
    cat "$LOGS/$mode.log" >&2
    echo "test-mpi: FAILED: an all-reduce completed although rank 1 $mode" >&2; exit 1
  fi
}

echo "== a dead rank (mpi_check die) and a hung rank (mpi_check hang) end the job"
expect_job_failure die 2
expect_job_failure die 3
expect_job_failure hang 2
expect_job_failure hang 3

echo "test-mpi: MPI backend ok"

# --- cht CLI under mpirun (appended by the runner work) ---
# 2 ranks × half the batch against 1 process × the whole batch (MLP CHTs-n, LM CHTss; masks bit
# for bit, weights within float-summation tolerance), a killed 2-rank run resumed bit for bit (and
# refused on 1 rank), a rank dying mid-run ending the job, refusals (crates/cht-cli/tests/mpi.rs).
echo "== cht train / cht lm train under mpirun"
cargo test --release -p cht-cli --features mpi --test mpi

echo "== cht bench scaling under mpirun (2 ranks)"
"${MPIRUN[@]}" -n 2 -x RAYON_NUM_THREADS=1 -x CHT_BACKEND=cpu \
  "$CARGO_TARGET_DIR/release/cht" bench scaling --steps 2 | tee "$LOGS"/scaling.log
grep -q "MPI (" "$LOGS"/scaling.log || { echo "test-mpi: FAILED: no MPI scaling line" >&2; exit 1; }

echo "== lints with the mpi feature"
cargo clippy -p cht-dist -p cht-cli -p cht-train --features mpi --all-targets -- -D warnings

echo "test-mpi: cht under mpirun ok"
