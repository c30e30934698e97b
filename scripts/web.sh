#!/usr/bin/env bash
# The browser demo: build it into web/www/, or build it and serve web/www/ locally.
#
#   bash scripts/web.sh build          wasm32 build + wasm-bindgen glue in web/www/pkg/, and the
#                                      MNIST subset web/www/data/mnist-subset.bin if missing
#   bash scripts/web.sh serve [PORT]   build, then serve web/www/ on http://127.0.0.1:PORT/
#                                      (default 8000; Python's http.server serves .wasm correctly)
#
# Needs rustup (for the wasm32 target) and cargo; installs wasm-bindgen-cli at exactly the version
# of the wasm-bindgen crate in Cargo.lock when that version is not on PATH (~2 min, once).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: bash scripts/web.sh build | serve [PORT]" >&2
  exit 2
}

build() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "== adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi

  # The CLI must match the wasm-bindgen crate exactly, or the generated glue is refused.
  local wbv
  wbv=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
  if [ -z "$wbv" ]; then
    echo "scripts/web.sh: no wasm-bindgen package in Cargo.lock" >&2
    exit 1
  fi
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
  if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wbv"; then
    echo "== installing wasm-bindgen-cli $wbv (about 2 minutes, once)"
    # No --locked: the CLI's lockfile names a crate version the registry may not have.
    cargo install wasm-bindgen-cli --version "$wbv"
  fi

  echo "== building the browser crate for wasm32"
  cargo build -p cht-web --release --target wasm32-unknown-unknown --lib
  local target_dir="${CARGO_TARGET_DIR:-target}"
  wasm-bindgen --target web --no-typescript --out-dir web/www/pkg \
    "$target_dir/wasm32-unknown-unknown/release/cht_web.wasm"
  echo "web/www/pkg: $(du -sh web/www/pkg | cut -f1) (wasm $(du -h web/www/pkg/cht_web_bg.wasm | cut -f1))"

  if [ ! -f web/www/data/mnist-subset.bin ]; then
    echo "== writing the MNIST subset for the page"
    cargo run --release -q -p cht-cli -- data web-subset
  fi
}

serve() {
  local port="${1:-8000}"
  case "$port" in
    '' | *[!0-9]*) usage ;;
  esac
  build
  echo "== serving web/www/ at http://127.0.0.1:$port/ (Ctrl-C stops it)"
  exec python3 -m http.server "$port" --bind 127.0.0.1 --directory web/www
}

case "${1:-}" in
  build)
    [ $# -eq 1 ] || usage
    build
    ;;
  serve)
    [ $# -le 2 ] || usage
    serve "${2:-}"
    ;;
  *) usage ;;
esac
