#!/usr/bin/env bash
# Deploys our stack on the node as a user would (scripts/node.sh up; scenario 10 checks it):
# `kubectl apply -k` of deploy/ through the test overlay, then waits until both DaemonSets
# are Ready and the kubelet advertises both pools.
set -euo pipefail
# shellcheck source=tests/node/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

node_is_up || die "deploy: the node is not up"
t0=$(date +%s.%N)
kc apply -k "$NODE_HERE/overlay"
for ds in sriov-device-plugin sriov-cni; do
  kc -n kube-system rollout status "daemonset/$ds" --timeout=120s
done
alloc_ok() {
  local a
  a=$(kc get node "$NODE_NAME" -o json | jq -r '.status.allocatable | "\(.["arm.com/ps225_sriov_netdevice"]) \(.["arm.com/ps225_dpdk"])"')
  [ "$a" = "12 4" ]
}
wait_for 60 "allocatable arm.com/ps225_sriov_netdevice=12, arm.com/ps225_dpdk=4" alloc_ok
say "stack deployed in $(since "$t0")s: both DaemonSets Ready, allocatable 12 + 4"
example_nads | kc apply -f - >/dev/null
say "NetworkAttachmentDefinitions sriov-net1, sriov-dpdk (deploy/examples, PF-side settings dropped)"
