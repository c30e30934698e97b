#!/usr/bin/env bash
# The project's test command (README, CI): formatting, lints, every test on the GPU adapter
# (lavapipe here) and on the CPU backend, and the wasm32 build of the browser crate.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"   # silences Mesa's XDG_RUNTIME_DIR warning
# GPU tests must not silently skip: a missing adapter is a failure.
export CHT_REQUIRE_GPU=1

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== adapter used by the GPU tests"
cargo run --release -q -p cht-cli -- --backend gpu info

echo "== tests (GPU kernels vs CPU twins, end-to-end training on GPU and CPU)"
cargo test --release --workspace

echo "== browser crate builds for wasm32"
cargo build -q -p cht-web --target wasm32-unknown-unknown
echo "wasm32 build ok"
