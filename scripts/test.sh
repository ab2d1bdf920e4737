#!/usr/bin/env bash
# Runs every test of the project: formatting and lints, unit and fake-sysfs tests, real-kernel
# tests in throwaway network namespaces (root), the kubelet's own device manager, a real
# single-node Kubernetes (scripts/node.sh), the fuzz targets' quick run, and the emulated
# SR-IOV lab scenarios.
# Installs what it needs first (Debian packages, QEMU, the guest kernel, virtme-ng).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh lab

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test (unit, fake sysfs, netns, test kubelet)"
cargo test --workspace
echo "== deploy/ manifests and config samples"
bash scripts/validate-manifests.sh
echo "== Dockerfile build step (static release binaries, as the image builds them)"
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
bash bench/peers.sh --quick
echo "== emulated SR-IOV lab (scripts/lab.sh all)"
bash scripts/lab.sh all
