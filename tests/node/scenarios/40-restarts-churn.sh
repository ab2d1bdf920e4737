#!/usr/bin/env bash
# 40-restarts-churn: restarts of every node component our stack depends on, then churn.
# Must show, with a pod holding a VF running throughout (same container, same net1):
#   - the plugin process killed (kill -9): the kubelet restarts its container, which registers
#     each pool once, within 10 s of the new process starting; allocatable is 12 + 4 (the
#     kubelet posts node status every 10 s, so the short gap may never show in the API);
#   - the plugin pod deleted: the DaemonSet makes a new one, same result;
#   - the kubelet restarted: the node is Ready again and advertises both pools, the plugin
#     container was not restarted;
#   - containerd restarted: running containers keep running;
#   - then 52 pods with a VF and net1, created and deleted 4 at a time: at the end every VF
#     netdev is home with its name and MAC, no CNI state, lease or Multus cache entry is left,
#     and the plugin's RSS did not grow by more than 2 MiB.
# Helpers below are called through check/require/wait_for; jq programs use $vars.
# shellcheck disable=SC2317,SC2016
set -euo pipefail
# shellcheck source=tests/node/scenario-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scenario-lib.sh"

step "pod-keep: a VF and net1, running throughout"
require "pod-keep Ready" apply_ready pod-keep < <(pod pod-keep sriov-net1 "$NETDEV")
keep_state() {
  local ids addr mac
  ids=$(kc get pod pod-keep -o jsonpath='{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}') || return 1
  addr=$(kc exec pod-keep -- ip -o -4 addr show net1) || return 1
  mac=$(kc exec pod-keep -- cat /sys/class/net/net1/address) || return 1
  echo "$ids $(awk '{ print $4 }' <<<"$addr") $mac"
}
keep0=$(keep_state)
note "pod-keep: $keep0"
# untouched: same container, no restart, same net1 address and MAC. Right after a kubelet
# restart exec is refused until the kubelet has synced its pods: retried for up to 30 s.
untouched() {
  local now i
  for i in $(seq 30); do
    now=$(keep_state 2>&1) && break
    sleep 1
  done
  [ "$now" = "$keep0" ] || { echo "now: $now"; return 1; }
}

restarts() { kc -n kube-system get pod "$1" -o jsonpath='{.status.containerStatuses[0].restartCount}'; }
started() {
  kc -n kube-system get pod "$1" -o json |
    jq -r '.status.containerStatuses[0].state.running.startedAt // empty | fromdateiso8601'
}
# registered_within SECONDS POD: the pod's current plugin process registered both pools with
# the kubelet within SECONDS of its first log line, and the node advertises 12 + 4.
registered_within() {
  local log first last lat
  wait_for 30 "both pools registered" registered "$2" || return 1
  log=$(kc -n kube-system logs "$2")
  first=$(head -n1 <<<"$log" | awk '{ print $1 }')
  last=$(grep 'registered through the plugin watcher' <<<"$log" | tail -n1 | awk '{ print $1 }')
  lat=$(awk -v a="$(date -d "$first" +%s.%N)" -v b="$(date -d "$last" +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  echo "$lat" >"$SCEN_OUT/registration"
  wait_for 10 "allocatable 12 + 4" alloc_is 12 4 || return 1
  awk -v l="$lat" -v m="$1" 'BEGIN { exit !(l <= m) }'
}

step "kill -9 the device plugin"
p=$(plugin_pod)
r0=$(restarts "$p")
pid=$(container_pid kube-system "$p")
require "the plugin's pid is known" test -n "$pid"
t=$(date +%s.%N)
kill -KILL "$pid"
restarted() { [ "$(restarts "$p")" -gt "$r0" ] && [ -n "$(started "$p")" ]; }
require "the kubelet restarted the plugin container" wait_for 120 "plugin container restart" restarted
note "plugin running again $(since "$t")s after kill -9"
check "both pools registered within 10 s of the new process, allocatable 12 + 4" registered_within 10 "$p"
note "process start -> both pools registered: $(cat "$SCEN_OUT/registration" 2>/dev/null)s; kill -9 -> registered and 12 + 4: $(since "$t")s"
sleep 1
check "the new process registered each pool once" test "$(registrations "$p")" = 2
check "pod-keep untouched" untouched

step "delete the device plugin pod"
t=$(date +%s.%N)
kc -n kube-system delete pod "$p" --wait=false >/dev/null
new_pod() { local n; n=$(plugin_pod); [ -n "$n" ] && [ "$n" != "$p" ] && [ -n "$(started "$n")" ]; }
require "the DaemonSet made a new plugin pod" wait_for 120 "a new plugin pod" new_pod
p=$(plugin_pod)
note "new plugin pod $p running $(since "$t")s after the delete"
check "both pools registered within 10 s of the new process, allocatable 12 + 4" registered_within 10 "$p"
note "process start -> both pools registered: $(cat "$SCEN_OUT/registration" 2>/dev/null)s; delete -> registered and 12 + 4: $(since "$t")s"
sleep 1
check "the new pod registered each pool once" test "$(registrations "$p")" = 2
check "pod-keep untouched" untouched

step "restart the kubelet"
r0=$(restarts "$p")
t=$(date +%s.%N)
stop kubelet TERM
start_daemon kubelet
require "node Ready again" wait_for 120 "node Ready" node_ready
check "allocatable 12 + 4 within 60 s" wait_for 60 "allocatable 12 + 4" alloc_is 12 4
note "kubelet restart -> allocatable 12 + 4 in $(since "$t")s"
check "the plugin container was not restarted" test "$(restarts "$p")" = "$r0"
check "pod-keep untouched" untouched

step "restart containerd"
t=$(date +%s.%N)
stop containerd TERM
start_daemon containerd
require "containerd answers again" wait_for 60 "containerd" innode ctr version
check "pod-keep untouched" untouched
check "node still Ready" node_ready
check "the plugin container was not restarted" test "$(restarts "$p")" = "$r0"
note "containerd restarted in $(since "$t")s"

step "delete pod-keep"
require "pod-keep deleted" gone pod-keep

step "churn: 52 pods with a VF and net1, 4 at a time"
pid=$(container_pid kube-system "$p")
rss0=$(rss_kib "$pid")
t=$(date +%s.%N)
for round in $(seq 1 13); do
  names=()
  for i in 1 2 3 4; do names+=("churn-$round-$i"); done
  for n in "${names[@]}"; do pod "$n" sriov-net1 "$NETDEV"; done | jq -s '{apiVersion: "v1", kind: "List", items: .}' >"$SCEN_OUT/round.json"
  require "round $round: 4 pods Ready" apply_ready "${names[@]}" <"$SCEN_OUT/round.json"
  require "round $round: 4 pods deleted" gone "${names[@]}"
done
note "52 pods in $(since "$t")s"
rss1=$(rss_kib "$pid")
note "plugin RSS: ${rss0} KiB before, ${rss1} KiB after"
check "every VF netdev home with its name and MAC" vfs_home
check "no CNI state, IPAM lease or Multus cache left" cni_state_clean
check "the plugin's RSS grew by at most 2 MiB (${rss0} -> ${rss1} KiB)" test $((rss1 - rss0)) -le 2048
check "the plugin container was not restarted" test "$(restarts "$p")" = "$r0"
finish
