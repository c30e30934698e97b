#!/usr/bin/env bash
# The project's test command (README, CI): formatting, lints, every test on the GPU adapter
# (lavapipe here) and on the CPU backend, the packaging (scripts/package.sh: every crate packages
# and a crate outside the workspace builds from the .crate files), the browser crate's tests in
# headless Chromium (WebGPU on SwiftShader, and the wasm CPU fallback), and the demo page end to end.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"   # silences Mesa's XDG_RUNTIME_DIR warning
# GPU tests must not silently skip: a missing adapter is a failure.
export CHT_REQUIRE_GPU=1
# wasm-bindgen-test-runner (installed by scripts/web.sh with wasm-bindgen-cli) lives here.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== adapter used by the GPU tests"
cargo run --release -q -p cht-cli -- --backend gpu info

echo "== tests (GPU kernels vs CPU twins, end-to-end training on GPU and CPU)"
cargo test --release --workspace

echo "== examples: each runs to its end (train_mlp on the GPU adapter checks its accuracy)"
CHT_BACKEND=gpu cargo run --release -q --example train_mlp
cargo run --release -q --example score_mask
CHT_BACKEND=gpu cargo run --release -q --example score_mask
cargo run --release -q --example custom_loop -- "$(mktemp -d)"

echo "== API docs: no rustdoc warning, every public item documented (missing_docs)"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps -q

echo "== packaging: every crate packages, and a crate outside the workspace builds and trains from the .crate files"
bash scripts/package.sh

echo "== browser: lints of the wasm32 build"
cargo clippy -q -p cht-web --target wasm32-unknown-unknown --all-targets -- -D warnings

echo "== browser: kernels and topology updates on WebGPU vs the CPU twins (headless Chromium)"
bash scripts/web.sh build
(cd web && CHROMEDRIVER=/usr/bin/chromedriver cargo test --target wasm32-unknown-unknown)

echo "== browser: the demo page end to end (WebGPU, then the CPU fallback)"
bash scripts/web-test.sh
