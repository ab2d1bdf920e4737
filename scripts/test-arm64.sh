#!/usr/bin/env bash
# The workspace's tests built for arm64 (aarch64-unknown-linux-musl, static) and run under
# qemu-aarch64, user-mode emulation: cargo's `runner` in .cargo/config.toml. Unit tests,
# fake-sysfs trees, the test kubelet over real gRPC, and the netns tests (netlink and namespace
# syscalls pass through qemu-user to the host kernel, as root).
#
#   scripts/test-arm64.sh [CARGO TEST ARGS...]
#
# A test that cannot run under user-mode emulation is skipped here by name, with its reason
# printed; what it covers is covered on a real arm64 kernel by the Arm lab
# (scripts/lab.sh --arch arm64). Doc tests are not run for a foreign target (cargo builds them
# only for the host).
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-musl
command -v qemu-aarch64 >/dev/null || { echo "test-arm64: no qemu-aarch64 (run scripts/install-deps.sh arm)" >&2; exit 1; }

# NAME|REASON: NAME is given to the test harness as --skip NAME --exact.
excluded=(
)

skips=()
for e in "${excluded[@]}"; do
  echo "test-arm64: not run under qemu-aarch64: ${e%%|*}: ${e#*|}"
  skips+=(--skip "${e%%|*}")
done

start=$(date +%s)
cargo test --workspace --target "$target" "$@" -- "${skips[@]}"
echo "test-arm64: arm64 tests took $(( $(date +%s) - start )) s (build and run under qemu-aarch64)"
