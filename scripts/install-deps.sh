#!/usr/bin/env bash
# Installs what building and testing cht needs, idempotently:
#  - lavapipe (Mesa's software Vulkan driver) so GPU tests run on a real driver without a GPU;
#  - Mesa's EGL and llvmpipe, the second real driver (wgpu's GL backend) of the kernel tests;
#  - Chromium and ChromeDriver from Debian, for the browser tests;
#  - Open MPI and libclang, for cht-dist's `mpi` feature (scripts/test-mpi.sh);
#  - the wasm32 Rust target, so the browser crate is compiled too (scripts/web.sh installs the
#    matching wasm-bindgen-cli).
# Needs root (or sudo) only when something is missing.
set -euo pipefail

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "install-deps: need root to run: $*" >&2; return 1; fi
}

# Chromium + ChromeDriver run the browser tests (WebGPU on its SwiftShader adapter).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "install-deps: installing Debian's chromium and chromium-driver (browser tests)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if ! (vulkaninfo --summary 2>/dev/null | grep -q llvmpipe); then
  echo "install-deps: installing Mesa's lavapipe Vulkan driver (mesa-vulkan-drivers)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends \
    mesa-vulkan-drivers libvulkan1 vulkan-tools libegl1 libgles2 libegl-mesa0 >/dev/null
fi

# The GL tests' driver: Mesa's llvmpipe through EGL (wgpu's GL backend, WGPU_BACKEND=gl). EGL
# itself (libegl1 + Mesa's vendor library libegl-mesa0), GLES/GL dispatch, and the DRI driver that
# holds llvmpipe (swrast_dri.so, in libgl1-mesa-dri on Debian 12).
if ! ldconfig -p | grep 'libEGL_mesa\.so' >/dev/null \
  || ! ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; then
  echo "install-deps: installing Mesa's EGL and llvmpipe (libegl1 libegl-mesa0 libgles2 libgl1-mesa-dri)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends \
    libegl1 libegl-mesa0 libgles2 libgl1-mesa-dri >/dev/null
fi

# Open MPI (mpirun, and the headers and mpicc that rsmpi's build reads) for cht-dist's `mpi`
# feature and scripts/test-mpi.sh; libclang because rsmpi's bindgen parses the MPI headers.
if ! command -v mpirun >/dev/null || ! command -v mpicc >/dev/null \
  || ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then
  echo "install-deps: installing Open MPI and libclang (openmpi-bin libopenmpi-dev libclang-dev)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends \
    openmpi-bin libopenmpi-dev libclang-dev >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
