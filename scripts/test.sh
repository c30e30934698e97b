#!/usr/bin/env bash
# The project's test command (README, CI): formatting, lints, every test on the GPU adapter
# (lavapipe here) and on the CPU backend, data-parallel training under mpirun (scripts/test-mpi.sh), the packaging (scripts/package.sh: every crate packages
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

echo "== data-parallel training over MPI (the mpi feature; Open MPI's mpirun, 1–4 ranks)"
bash scripts/test-mpi.sh

# A second real driver: wgpu's GL backend (WGPU_BACKEND=gl: Mesa's llvmpipe through EGL here). Only
# the kernel tests (every WGSL kernel against its CPU twin), the topology tests (updates bit-identical
# on GPU and CPU) and the DST equality tests (the scheduler's updates equal on GPU and CPU) run again:
# they exercise every kernel the rest of the suite uses, at a fraction of its time; and the backends
# test, whose GPU part checks that this adapter refuses the tensor-core kernel (GL has no
# cooperative matrices) and runs the f32 GEMM instead. One test thread:
# wgpu's GL backend serialises every GL call on one context and panics when a thread waits for it
# more than 6 s (wgpu-hal 30 gles/egl.rs, CONTEXT_LOCK_TIMEOUT_SECS), which parallel tests exceed
# while llvmpipe compiles shaders. Metal and DX12 cannot run here: tests/backends.rs (in the step
# above) translates every kernel for them with naga.
echo "== GL: the adapter, then the kernel, topology, DST-equality and backend-selection tests on it"
WGPU_BACKEND=gl cargo run --release -q -p cht-cli -- --backend gpu info
WGPU_BACKEND=gl cargo test --release --test kernels --test topology --test dst --test backends \
  -- --test-threads=1

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
