#!/usr/bin/env bash
# Proves that cht publishes:
#  1. every crate of the workspace but the browser demo and the fuzz harness (publish = false) packages (`cargo package`, which also
#     builds each package from its own `.crate` contents);
#  2. a crate outside the workspace (scripts/external-crate), depending on `cht-train = "0.1.0"`
#     like a user of crates.io, builds from the unpacked `.crate` files alone (never the source
#     tree), trains a small sparse MLP natively, and checks for wasm32-unknown-unknown.
# Everything it writes lives under ${CARGO_TARGET_DIR:-target}/packaging/ (its own target dir, so
# it never invalidates the workspace's builds; the .crate files are in packaging/target/package/).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS

target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
work="$target/packaging"
unpacked="$work/unpacked"
consumer="$work/consumer"

echo "package: cargo package (all publishable crates, each verified by building it from its .crate)"
# `cargo package --workspace` verifies each crate against the others' .crate files through a
# temporary local registry (target/package/tmp-registry). Cargo extracts that registry's crates
# into $CARGO_HOME/registry/src/-<hash>/ and, as for any registry, never re-extracts nor rebuilds a
# version it has seen, so a second run would verify against the first run's sources. Clear the
# three (a fresh machine has none of them): the registry, its extracted cht crates, and the
# fingerprints of the cht crates built from it (native and wasm32).
rm -rf "$work/target/package" "$work/target"/debug/.fingerprint/cht-* \
  "$work/target"/wasm32-unknown-unknown/debug/.fingerprint/cht-*
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/cht-*-[0-9]*
# --allow-dirty: this is a test of the working tree, not a release; `cargo publish` stays strict.
# The verification builds are debug builds nobody debugs: without debug info they are faster and
# take a fraction of the disk.
CARGO_PROFILE_DEV_DEBUG=false \
  cargo package --workspace --exclude cht-web --exclude cht-fuzz --allow-dirty -q --target-dir "$work/target"

crates=("$work"/target/package/*.crate)
[ -e "${crates[0]}" ] || { echo "package: no .crate in $work/target/package" >&2; exit 1; }
rm -rf "$unpacked" "$consumer"
mkdir -p "$unpacked"
for crate in "${crates[@]}"; do
  tar xzf "$crate" -C "$unpacked"
done

# The shaders must be in cht-gpu's package (they are reached through a symlink in the sources).
n_shaders=$(tar tzf "$work"/target/package/cht-gpu-*.crate | grep -c '\.wgsl$' || true)
n_repo=$(find shaders -maxdepth 1 -name '*.wgsl' | wc -l)
if [ "$n_shaders" -ne "$n_repo" ]; then
  echo "package: cht-gpu's .crate holds $n_shaders .wgsl files, shaders/ has $n_repo" >&2
  exit 1
fi
echo "package: ${#crates[@]} crates packaged; cht-gpu ships its $n_shaders shaders ($((SECONDS - start)) s)"

# The consumer: a copy of scripts/external-crate whose [patch.crates-io] points every cht crate
# at its unpacked package. The workspace's Cargo.lock seeds its lock file, so the third-party
# crates are the versions the tests ran with.
mkdir -p "$consumer"
cp -r scripts/external-crate/Cargo.toml scripts/external-crate/src "$consumer/"
cp Cargo.lock "$consumer/Cargo.lock"
{
  echo
  echo "[patch.crates-io]"
  for dir in "$unpacked"/*/; do
    name=$(awk -F'"' '/^name = /{print $2; exit}' "$dir/Cargo.toml")
    # Binaries are never dependencies; patching them would only warn "patch not used".
    [ "$name" = cht-cli ] && continue
    echo "$name = { path = \"${dir%/}\" }"
  done
} >>"$consumer/Cargo.toml"

echo "package: a crate outside the workspace builds from the .crate files and trains (native)"
# The dev profile without debug info, as the verification builds above: the third-party crates
# they compiled are reused instead of built a second time in release (minutes on a CI machine).
CARGO_PROFILE_DEV_DEBUG=false \
  cargo run -q --manifest-path "$consumer/Cargo.toml" --target-dir "$work/target"

echo "package: the same crate checks for wasm32-unknown-unknown ($((SECONDS - start)) s)"
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
CARGO_PROFILE_DEV_DEBUG=false cargo check -q --target wasm32-unknown-unknown \
  --manifest-path "$consumer/Cargo.toml" \
  --target-dir "$work/target"

echo "package: ok ($((SECONDS - start)) s)"
