#!/usr/bin/env bash
# Side by side with the upstream Go peers (docs/peers.md):
#   bench/peers.sh            # full run; prints the tables and rewrites the generated parts of
#                             # docs/peers.md's "Side by side with upstream: CNI" and
#                             # "... device plugin" sections (the latter through bench/peers-dp.sh)
#   bench/peers.sh --quick    # smoke run: few iterations, asserts our column of the behaviour
#                             # table, prints only
# Needs root (network namespaces, a private mount namespace for upstream's /sys).
#
# Steps: Debian deps; our release binaries, and the shipped static sriov (measured in the CNI
# section); the upstream peers into the shared cache with ../shared/upstream/build.sh (the node
# harness's cache, built once per machine; idempotent);
# upstream sriov-cni with bench/peers/*-vethbed.patch into the same cache, keyed by version and
# patch hash; then target/release/sriov-bench with the peer sections.
# Environment: SRIOV_UPSTREAM_DIR (the tarballs and build.sh), SRIOV_NODE_CACHE (cache root,
# default /var/cache/sriov-node), GO, BENCH_PEERS_ITERS, BENCH_SECTIONS.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [ "$(id -u)" != 0 ]; then
  echo "bench/peers.sh: run as root (network namespaces, mount namespaces, Debian packages)" >&2
  exit 1
fi
quick=
for a in "$@"; do [ "$a" = --quick ] && quick=1; done

bash scripts/install-deps.sh base

echo "== cargo build --release (sriov, sriov-device-plugin, sriov-bench)" >&2
cargo build --release --quiet -p sriov-cni -p sriov-device-plugin -p sriov-bench

# The CNI is measured as it ships: scripts/build-release.sh's amd64 binary (glibc, crt-static),
# not target/release's dynamically linked one, whose dynamic loader alone costs a few hundred
# microseconds of a call's CPU. SRIOV_CNI_BIN still overrides it.
if [ -z "${SRIOV_CNI_BIN:-}" ] && [ "$(uname -m)" = x86_64 ]; then
  echo "== scripts/build-release.sh amd64 (the shipped sriov, measured below)" >&2
  bash scripts/build-release.sh amd64 >&2
  export SRIOV_CNI_BIN=$repo/target/dist/amd64/sriov
fi

upstream_src=${SRIOV_UPSTREAM_DIR:-$repo/../shared/upstream}
[ -x "$upstream_src/build.sh" ] || {
  echo "bench/peers.sh: no upstream build.sh (set SRIOV_UPSTREAM_DIR to the folder of tarballs)" >&2
  exit 1
}
cache=${SRIOV_NODE_CACHE:-/var/cache/sriov-node}/upstream
mkdir -p "$cache"

# A Go new enough for the pinned go.mod files (build.sh checks again).
if [ -z "${GO:-}" ]; then
  for g in "$(command -v go || true)" /usr/local/go/bin/go; do
    [ -n "$g" ] && [ -x "$g" ] && GO=$g && break
  done
fi
export GO=${GO:-go}

echo "== upstream peers into $cache" >&2
nice -n 10 bash "$upstream_src/build.sh" "$cache" >&2

# The veth-bed build of upstream sriov-cni: the pinned tarball plus our patch.
patch_file=bench/peers/sriov-cni-v2.10.0-vethbed.patch
tarball=$upstream_src/sriov-cni-v2.10.0.tar.gz
cnilog=$upstream_src/cni-log-b6e062c9e0f2.tar.gz
key=$( (sha256sum "$tarball" "$cnilog" "$patch_file" | cut -d' ' -f1; "$GO" env GOVERSION) | sha256sum | cut -c1-12)
vethbed=$cache/bin/sriov-vethbed-$key
if [ ! -x "$vethbed" ]; then
  echo "== upstream sriov-cni v2.10.0 + $(basename "$patch_file") -> $vethbed" >&2
  work=$(mktemp -d "$cache/src/vethbed.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  tar -xzf "$tarball" -C "$work"
  tar -xzf "$cnilog" -C "$work"
  (
    cd "$work/sriov-cni-v2.10.0"
    patch -s -p1 <"$repo/$patch_file"
    GOTOOLCHAIN=local GOWORK=off "$GO" mod edit \
      -replace=github.com/k8snetworkplumbingwg/cni-log=../cni-log-b6e062c9e0f2
    GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 nice -n 10 "$GO" build -trimpath -buildvcs=false \
      -mod=readonly -tags no_openssl -o "$vethbed.tmp" ./cmd/sriov
  )
  mv -f "$vethbed.tmp" "$vethbed"
  rm -rf "$work"
  trap - EXIT
fi

# The lab guest sees this checkout but not the cache: scenario 80 takes upstream from here.
mkdir -p target/peers
cp -f "$cache/bin/sriov" target/peers/sriov-v2.10.0

export SRIOV_UPSTREAM_CNI_BIN=$cache/bin/sriov
export SRIOV_UPSTREAM_CNI_VETHBED_BIN=$vethbed
if [ -n "$quick" ]; then
  BENCH_SECTIONS=${BENCH_SECTIONS:-peers-cni,behaviour} target/release/sriov-bench "$@"
else
  BENCH_SECTIONS=${BENCH_SECTIONS:-peers-cni,behaviour} target/release/sriov-bench --out docs/peers.md "$@"
fi

# The device plugin's part (its own section of docs/peers.md), on the binaries built above.
export SRIOV_UPSTREAM_DP_BIN=${SRIOV_UPSTREAM_DP_BIN:-$cache/bin/sriovdp}
exec bash bench/peers-dp.sh "$@"
