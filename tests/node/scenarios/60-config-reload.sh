#!/usr/bin/env bash
# 60-config-reload: a pool added through the ConfigMap, for real.
# Must show:
#   - `kubectl apply` of sriovdp-config with one more pool (whole PS225 ports: the tree's
#     third PF, the one without VFs; PFs with VFs never join a pool) reaches the plugin through
#     the kubelet's ConfigMap volume update (the `..data` symlink swap) and the node advertises
#     arm.com/ps225_pf: 1, with no restart of the plugin container and the other pools unchanged;
#   - the pool removed again: its allocatable drops to 0, the others stay 12 + 4.
# Helpers below are called through check/require/wait_for; jq programs use $vars.
# shellcheck disable=SC2317,SC2016
set -euo pipefail
# shellcheck source=tests/node/scenario-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scenario-lib.sh"

PF=arm.com/ps225_pf
p=$(plugin_pod)
plugin_cid() { kc -n kube-system get pod "$p" -o jsonpath='{.status.containerStatuses[0].containerID}'; }
cid0=$(plugin_cid)
kc -n kube-system get configmap sriovdp-config -o json >"$SCEN_OUT/configmap.json"
with_pool() {
  jq '.data["config.json"] |= (fromjson | .resourceList += [{
      resourceName: "ps225_pf", resourcePrefix: "arm.com", deviceType: "netDevice",
      selectors: {vendors: ["14e4"], devices: ["d802"]}}] | tojson)' "$SCEN_OUT/configmap.json"
}

step "add pool $PF to the ConfigMap"
t=$(date +%s.%N)
apply_with_pool() { with_pool | kc apply -f -; }
require "kubectl apply of the ConfigMap with the new pool" apply_with_pool
pf_is() { [ "$(alloc "$PF")" = "$1" ]; }
check "allocatable $PF: 1 within 120 s" wait_for 120 "$PF: 1" pf_is 1
note "ConfigMap edit -> $PF allocatable in $(since "$t")s"
echo "configmap->allocatable $(since "$t")" >>"$SCEN_OUT/ready"
check "the other pools unchanged (12 + 4)" alloc_is 12 4
check "same plugin container (no restart)" test "$(plugin_cid)" = "$cid0"
# (Output captured first: grep -q ending early would fail the pipeline on kubectl's SIGPIPE.)
reload_logged() { local log; log=$(kc -n kube-system logs "$p"); grep -q 'config changed; applying' <<<"$log"; }
check "the plugin logged the reload" reload_logged

step "remove pool $PF again"
t=$(date +%s.%N)
apply_original() {
  jq 'del(.metadata.resourceVersion, .metadata.uid, .metadata.creationTimestamp, .metadata.managedFields)' \
    "$SCEN_OUT/configmap.json" | kc apply -f -
}
require "kubectl apply of the original ConfigMap" apply_original
check "allocatable $PF: 0 within 120 s" wait_for 120 "$PF: 0" pf_is 0
note "ConfigMap edit -> $PF gone in $(since "$t")s"
check "the other pools unchanged (12 + 4)" alloc_is 12 4
check "same plugin container (no restart)" test "$(plugin_cid)" = "$cid0"
finish
