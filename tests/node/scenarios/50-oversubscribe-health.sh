#!/usr/bin/env bash
# 50-oversubscribe-health: more pods than VFs, then a PF losing its carrier.
# Must show:
#   - 14 pods asking for arm.com/ps225_sriov_netdevice: 12 run, 2 stay Pending with
#     "Insufficient arm.com/ps225_sriov_netdevice" from the scheduler; one running pod deleted,
#     one Pending pod starts;
#   - PF enp3s0f0np0 loses carrier (its veth peer goes down): its 8 VFs turn unhealthy,
#     allocatable drops to 6 + 2; 6 new pods all get VFs of the other PF and a 7th stays
#     Pending; carrier back: allocatable 12 + 4 again and the 7th pod starts.
# Helpers below are called through check/require/wait_for; jq programs use $vars.
# shellcheck disable=SC2317,SC2016
set -euo pipefail
# shellcheck source=tests/node/scenario-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scenario-lib.sh"

pods_list() { local n; for n in "$@"; do pod "$n" "" "$NETDEV"; done | jq -s '{apiVersion: "v1", kind: "List", items: .}'; }
phase_of() { kc get pod "$1" -o jsonpath='{.status.phase}'; }
running_count() { kc get pods -l sriov-node-test -o json | jq '[.items[] | select(.status.phase == "Running")] | length'; }
pending() { kc get pods -l sriov-node-test -o json | jq -r '.items[] | select(.status.phase == "Pending") | .metadata.name'; }
insufficient() {
  kc get pod "$1" -o json | jq -e --arg r "$NETDEV" '.status.conditions[]? | select(.type == "PodScheduled" and .status == "False")
    | .message | test("Insufficient " + $r)'
}

step "14 pods for 12 VFs"
names=()
for i in $(seq -w 1 14); do names+=("over-$i"); done
pods_list "${names[@]}" | kc apply -f - >/dev/null
twelve() { [ "$(running_count)" = 12 ]; }
require "12 pods Running" wait_for 120 "12 pods Running" twelve
sleep 2
mapfile -t waiting < <(pending)
check "2 pods Pending (got ${#waiting[@]}: ${waiting[*]})" test "${#waiting[@]}" = 2
for w in "${waiting[@]}"; do check "$w: Insufficient $NETDEV" insufficient "$w"; done
running=$(kc get pods -l sriov-node-test -o json | jq -r '[.items[] | select(.status.phase == "Running") | .metadata.name][0]')
t=$(date +%s.%N)
kc delete pod "$running" --wait=false >/dev/null
one_started() { local w; for w in "${waiting[@]}"; do [ "$(phase_of "$w")" = Running ] && return 0; done; return 1; }
check "a Pending pod starts once $running is deleted" wait_for 120 "a pending pod Running" one_started
note "a VF freed up -> a Pending pod Running in $(since "$t")s"
require "all deleted" gone "${names[@]}"

step "PF enp3s0f0np0 loses carrier (ip link set wire3 down)"
trap 'innode ip link set wire3 up' EXIT
t=$(date +%s.%N)
innode ip link set wire3 down
check "allocatable 6 + 2 within 30 s" wait_for 30 "allocatable 6 + 2" alloc_is 6 2
note "carrier lost -> allocatable 6 + 2 in $(since "$t")s"
names=()
for i in 1 2 3 4 5 6 7; do names+=("health-$i"); done
pods_list "${names[@]}" | kc apply -f - >/dev/null
six() { [ "$(running_count)" = 6 ]; }
require "6 pods Running" wait_for 120 "6 pods Running" six
sleep 2
mapfile -t waiting < <(pending)
check "the 7th pod Pending (got: ${waiting[*]})" test "${#waiting[@]}" = 1
vfs=$(for n in "${names[@]}"; do
  if [ "$(phase_of "$n")" = Running ]; then podenv "$n" PCIDEVICE_ARM_COM_PS225_SRIOV_NETDEVICE; fi
done | sort | tr '\n' ' ')
note "VFs of the running pods: $vfs"
only_pf4() { [ -n "$vfs" ] && ! grep -q '0000:03:' <<<"$vfs"; }
check "every running pod has a VF of the PF with carrier (0000:04:10.x)" only_pf4

step "carrier back (ip link set wire3 up)"
t=$(date +%s.%N)
innode ip link set wire3 up
check "allocatable 12 + 4 within 30 s" wait_for 30 "allocatable 12 + 4" alloc_is 12 4
note "carrier back -> allocatable 12 + 4 in $(since "$t")s"
seven() { [ "$(running_count)" = 7 ]; }
check "the 7th pod starts" wait_for 60 "7 pods Running" seven
require "all deleted" gone "${names[@]}"
check "every VF netdev home with its name and MAC" vfs_home
finish
