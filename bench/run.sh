#!/usr/bin/env bash
# One command for the performance report:
#   bench/run.sh            # full run; prints the tables and rewrites docs/benchmarks.md
#   bench/run.sh --quick    # smoke run (few iterations, smallest sizes); prints the tables only
# Extra arguments go to the driver (e.g. --out FILE). Needs root (network namespaces).
# Binaries measured: SRIOV_CNI_BIN and SRIOV_DP_BIN when set, else this tree's release build.
# Iteration counts: BENCH_* variables, see bench/src/main.rs and docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "bench/run.sh: run as root (network namespaces, Debian packages)" >&2
  exit 1
fi

bash scripts/install-deps.sh base

echo "== cargo build --release (sriov, sriov-device-plugin, sriov-bench)" >&2
cargo build --release --quiet -p sriov-cni -p sriov-device-plugin -p sriov-bench

exec target/release/sriov-bench "$@"
