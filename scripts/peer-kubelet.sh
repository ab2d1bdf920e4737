#!/usr/bin/env bash
# Drives sriov-device-plugin through the kubelet's own device manager
# (k8s.io/kubernetes/pkg/kubelet/cm/devicemanager, embedded by the Go tests in tests/kubelet-dm).
#   scripts/peer-kubelet.sh [extra go test args, e.g. -run TestKubeletMode]
# Builds the plugin, then runs the Go tests with SRIOV_DP_BIN pointing at it. Needs root (the fake
# tree's netdevs are veths in a throwaway network namespace), iproute2 and Go >= 1.26 (on PATH or
# in /usr/local/go/bin). The first run downloads the Kubernetes modules through the Go module proxy.
# Set SRIOV_DP_BIN to test an already built binary instead of building this checkout.
# Whole plugin outputs and device-manager logs of every test land in target/peer-kubelet-logs
# (KUBELETDM_LOG_DIR overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if ! command -v go >/dev/null 2>&1; then
  export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null 2>&1 || { echo "peer-kubelet: no go on PATH nor in /usr/local/go/bin" >&2; exit 1; }

if [ -z "${SRIOV_DP_BIN:-}" ]; then
  echo "== cargo build -p sriov-device-plugin" >&2
  cargo build -p sriov-device-plugin
  export SRIOV_DP_BIN="$root/target/debug/sriov-device-plugin"
fi
if [ -z "${KUBELETDM_LOG_DIR:-}" ]; then
  export KUBELETDM_LOG_DIR="$root/target/peer-kubelet-logs"
  rm -rf "$KUBELETDM_LOG_DIR"
fi
# TestUpstreamSideBySide runs upstream's sriovdp under the same device manager: build it into
# the node harness's cache (up to date in a second when it is there already).
if [ -z "${SRIOV_UPSTREAM_DP_BIN:-}" ] && [ "$(id -u)" = 0 ]; then
  echo "== upstream sriovdp (tests/node/build.sh upstream)" >&2
  bash tests/node/build.sh upstream
fi
echo "== go test (kubelet device manager v1.37.2) against $SRIOV_DP_BIN" >&2
cd tests/kubelet-dm
exec go test -count=1 -v "$@" ./...
