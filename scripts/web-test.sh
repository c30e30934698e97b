#!/usr/bin/env bash
# End-to-end test of the browser demo in headless Chromium: builds the page (scripts/web.sh build),
# serves web/www/ on a free local port, and runs web/e2e/e2e.mjs twice:
#   1. with WebGPU (Chromium's SwiftShader adapter), saving a screenshot to $SCREENSHOT
#      (default target/web-demo.png; the README's picture is docs/img/web-demo.png);
#   2. without WebGPU, so the page must fall back to the CPU kernels.
# Each run must reach the accuracy threshold with a topology update and no console errors.
# Then the browser API example (web/www/example.html) must run to its end without errors.
# Needs Node >= 20 and npm; uses Debian's /usr/bin/chromium (installed with apt when missing, as
# root or with sudo) through playwright-core, which never downloads a browser.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "web-test: need root to run: $*" >&2; return 1; fi
}

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq chromium >/dev/null
fi

bash scripts/web.sh build

echo "== playwright-core"
if [ -f web/e2e/package-lock.json ]; then
  (cd web/e2e && npm ci --no-audit --no-fund)
else
  (cd web/e2e && npm install --no-audit --no-fund)
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
python3 -m http.server "$port" --bind 127.0.0.1 --directory web/www >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
url="http://127.0.0.1:$port/"
for _ in $(seq 50); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "web-test: the static server did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "== serving web/www/ at $url"

status=0
echo "== e2e with WebGPU"
node web/e2e/e2e.mjs --url "$url" --webgpu --screenshot "${SCREENSHOT:-target/web-demo.png}" || status=1
echo "== e2e without WebGPU (CPU fallback)"
node web/e2e/e2e.mjs --url "$url" --no-webgpu --threshold 0.9 --timeout 180 || status=1
echo "== the browser API example (web/www/example.html)"
node web/e2e/example.mjs --url "${url}example.html" --timeout 240 || status=1

if [ "$status" -ne 0 ]; then
  echo "web-test: FAILED" >&2
else
  echo "web-test: both runs passed"
fi
exit "$status"
