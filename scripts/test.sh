#!/usr/bin/env bash
# Runs every test of the project: formatting and lints, unit and fake-sysfs tests, real-kernel
# tests in throwaway network namespaces (root), the kubelet's own device manager, a real
# single-node Kubernetes (scripts/node.sh), the fuzz targets' quick run, and the emulated
# SR-IOV lab scenarios; then the same for arm64: the tests built for aarch64 under qemu-aarch64,
# and the lab's product scenarios but the DPDK one (05-60) on an Arm guest (SMMUv3).
# Installs what it needs first (Debian packages, QEMU, the guest kernels and the arm64 guest
# root, virtme-ng, the aarch64 Rust target).
# A test that cannot run here (not root) fails the run: SRIOV_TEST_STRICT=1.
#
#   scripts/test.sh --quick   the inner loop: fmt, clippy, unit and fake-tree tests; no installs,
#                             no Go, no node, no fuzz, no benchmarks, no lab. Tests that need
#                             root are reported SKIPPED (summary at the end) when not root.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=""
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--quick]" >&2; exit 2 ;;
esac

lint() {
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
  echo "== cargo clippy --all-targets (lab tests included: --features sriov-tests/lab)"
  cargo clippy --workspace --all-targets --features sriov-tests/lab --quiet -- -D warnings
}

if [ -n "$quick" ]; then
  lint
  skipped=target/test-skipped.txt
  mkdir -p target
  : >"$skipped"
  echo "== cargo test (unit, fake sysfs, netns when root, test kubelet; not the Go libcni test)"
  SRIOV_TEST_SKIP_LOG=$PWD/$skipped cargo test --workspace -- --skip libcni_
  if [ -s "$skipped" ]; then
    echo "== $(wc -l <"$skipped") test(s) SKIPPED (they ran nothing; run as root to run them):"
    sed 's/^/  /' "$skipped"
  fi
  echo "== quick run passed (the full run: scripts/test.sh)"
  exit 0
fi

export SRIOV_TEST_STRICT=1
bash scripts/install-deps.sh arm

lint
echo "== cargo test (unit, fake sysfs, netns, test kubelet)"
cargo test --workspace
echo "== deploy/ manifests and config samples"
bash scripts/validate-manifests.sh
echo "== release binaries for amd64 and arm64 (scripts/build-release.sh), as the Dockerfile takes them"
bash scripts/check-dockerfile.sh
echo "== shellcheck (scripts, lab)"
shellcheck -x scripts/*.sh .ci/run deploy/*.sh tests/lab/*.sh tests/lab/scenarios/*.sh \
  tests/node/*.sh tests/node/scenarios/*.sh
echo "== the kubelet's own device manager (Go, k8s.io/kubernetes) driving the plugin"
bash scripts/peer-kubelet.sh
echo "== a real Kubernetes node: our image and DaemonSets, Multus, VF pods (scripts/node.sh test)"
bash scripts/node.sh test
echo "== fuzzing, quick mode (every parser of outside input, 20 s each; docs/fuzzing.md)"
bash scripts/fuzz.sh 20
echo "== benchmarks, quick mode (checks the harness runs)"
bash bench/run.sh --quick
echo "== side by side with upstream sriov-cni and sriovdp, quick mode (bench/peers.sh, docs/peers.md)"
bash bench/peers.sh --quick
echo "== emulated SR-IOV lab (scripts/lab.sh all)"
bash scripts/lab.sh all
echo "== arm64: the tests built for aarch64, run under qemu-aarch64 (scripts/test-arm64.sh)"
bash scripts/test-arm64.sh
# 40 (rollback), 50 (health) and 60 (reload) pass on the Arm guest too (docs/lab.md) but are
# kernel-independent enough that the x86 lab covers them; they stay out to keep CI's time.
echo "== the lab on an Arm guest: discovery, provisioning, CNI kernel and DPDK modes (scripts/lab.sh --arch arm64 05 10 20 30)"
bash scripts/lab.sh --arch arm64 05 10 20 30
