#!/usr/bin/env bash
# Our device plugin side by side with upstream sriov-network-device-plugin on one fake node:
#   bench/peers-dp.sh           # full run; prints the table and rewrites its part of docs/peers.md
#   bench/peers-dp.sh --quick   # smoke run (fewer iterations, about a minute); prints the table only
# Builds ours (release) and upstream's sriovdp from the pinned tarballs in ../shared/upstream
# into the node harness's cache ($SRIOV_NODE_CACHE/upstream, default
# /var/cache/sriov-node/upstream) through tests/node/build.sh, which skips what is up to date.
# SRIOV_UPSTREAM_DP_BIN overrides the upstream binary (then nothing is built for it), SRIOV_DP_BIN
# ours; BENCH_PEERS_VFS the tree size (default 1024), the other BENCH_* as in bench/run.sh.
# Needs root (network and mount namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "bench/peers-dp.sh: run as root (network and mount namespaces)" >&2
  exit 1
fi

if [ -z "${SRIOV_UPSTREAM_DP_BIN:-}" ]; then
  echo "== upstream sriovdp (tests/node/build.sh upstream)" >&2
  bash tests/node/build.sh upstream
  SRIOV_UPSTREAM_DP_BIN=${SRIOV_NODE_CACHE:-/var/cache/sriov-node}/upstream/bin/sriovdp
  export SRIOV_UPSTREAM_DP_BIN
fi

echo "== cargo build --release (sriov, sriov-device-plugin, sriov-bench)" >&2
cargo build --release --quiet -p sriov-cni -p sriov-device-plugin -p sriov-bench

BENCH_SECTIONS=peers-dp exec target/release/sriov-bench "$@"
