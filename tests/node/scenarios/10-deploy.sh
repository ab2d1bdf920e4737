#!/usr/bin/env bash
# 10-deploy: our stack deployed as a user would.
# Must show:
#   - `kubectl apply -k` of deploy/ through tests/node/overlay (image, fake tree, pool config
#     for it) is accepted by the API server;
#   - both DaemonSets become Ready, their pods run our image (built from the Dockerfile);
#   - our installer put `sriov` into the node's CNI bin dir (/opt/cni/bin), byte for byte the
#     binary in the image;
#   - the plugin registers each pool once and the node advertises 12 netdev VFs and 4 vfio VFs
#     (capacity and allocatable).
# Helpers below are called through check/require/wait_for; jq programs use $vars.
# shellcheck disable=SC2317,SC2016
set -euo pipefail
# shellcheck source=tests/node/scenario-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scenario-lib.sh"

step "kubectl apply -k tests/node/overlay (deploy/ + test overlay)"
t=$(date +%s.%N)
require "kubectl apply -k accepted" kc apply -k "$NODE_HERE/overlay"
for ds in sriov-device-plugin sriov-cni; do
  require "DaemonSet $ds Ready" kc -n kube-system rollout status "daemonset/$ds" --timeout=120s
  echo "daemonset/$ds $(since "$t")" >>"$SCEN_OUT/ready"
done
note "both DaemonSets Ready $(since "$t")s after kubectl apply"

image_of() {
  kc -n kube-system get pod -l "app.kubernetes.io/name=$1" -o jsonpath='{.items[0].status.containerStatuses[0].image}'
}
for ds in sriov-device-plugin sriov-cni; do
  check "$ds runs $NODE_IMAGE" test "$(image_of "$ds")" = "$NODE_IMAGE"
done

# The image takes target/dist/amd64/ (scripts/build-release.sh; the CNI there is the static
# musl build). The DaemonSet's startup probe makes Ready mean installed: no waiting here.
check "/opt/cni/bin/sriov in the node is the image's sriov" \
  innode cmp /opt/cni/bin/sriov "$NODE_REPO/target/dist/amd64/sriov"
installer_logged() { kc -n kube-system logs ds/sriov-cni | grep -F 'installed /usr/bin/sriov as /host/opt/cni/bin/sriov'; }
check "the installer logged the copy" installer_logged

step "the kubelet advertises both pools"
check "allocatable $NETDEV=12, $DPDK=4 within 30 s" wait_for 30 "allocatable 12 + 4" alloc_is 12 4
note "allocatable 12 + 4 $(since "$t")s after kubectl apply"
cap=$(kc get node "$NODE_NAME" -o json | jq -r --arg a "$NETDEV" --arg b "$DPDK" '"\(.status.capacity[$a]) \(.status.capacity[$b])"')
check "capacity 12 + 4" test "$cap" = "12 4"
check "the plugin registered its pools" wait_for 30 "both pools registered" registered "$(plugin_pod)"
sleep 1
regs=$(registrations "$(plugin_pod)")
check "the plugin registered each of its 2 pools once (got $regs)" test "$regs" = 2

step "NetworkAttachmentDefinitions from deploy/examples"
apply_nads() { example_nads | kc apply -f -; }
check "sriov-net1 and sriov-dpdk created" apply_nads
finish
