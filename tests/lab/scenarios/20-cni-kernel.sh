#!/bin/bash
# 20-cni-kernel: the sriov CNI in kernel-netdev mode, ADD / CHECK / DEL on two pods.
# Must show:
#   - setup (raw helpers): 4 VFs on igbvf; the PF's VF lines and every VF netdev's name and MAC
#     recorded before any ADD;
#   - CNI ADD VF0 into pod A with netconf: vlan 100, mac 02:00:00:00:00:0a, spoofchk off,
#     trust on, max_tx_rate 100, host-local IPAM 10.56.217.0/24; and VF1 into pod B (vlan 100,
#     mac ...:0b); results are CNI 1.0 JSON with the interface in the pod netns and the IP;
#   - `ip link show $PF_IF` shows exactly those settings on vf 0 and vf 1;
#   - the VF netdevs are in the pods under CNI_IFNAME with the requested MACs, up, with the IPs;
#   - ping pod A -> pod B succeeds;
#   - CNI CHECK passes for both attachments;
#   - CNI DEL of both: the PF's VF lines equal the recorded ones (admin MAC, vlan, spoofchk,
#     trust, rate), the netdevs are back in the host netns with their original names and MACs,
#     the state files under SRIOV_CNI_STATE_DIR are gone; a second DEL succeeds (idempotent);
#   - ADD VF0 with `mac` = the VF's own MAC, net1 set down in the pod, then DEL: the PF shows that
#     MAC again, not zeros;
#   - ADD VF0, then the pod netns deleted (the kernel returns the netdev to the host as net1, and
#     udev gives it its old name as an altname), then DEL: name, MAC and PF-side state restored.
# Note for the restore (docs/lab.md, "exact restore"): after admin MAC 00:00:00:00:00:00, setting
# a VF netdev to the MAC it already has is a no-op the driver never sees, and the PF then shows
# zeros; the VF must really change its MAC (via a temporary one if needed).
# lab-timeout: 600
set -euo pipefail
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
lab_setup

# shellcheck source=tests/lab/cni-lib.sh
. "$LAB_REPO/tests/lab/cni-lib.sh"

IPAM_DIR=/run/lab-ipam

step "set up 4 VFs (raw) and record the state before ADD"
create_vfs 4
note "4 VFs with netdevs after ${VF_CREATE_SECS}s"
for i in 0 1; do
  # The PF's view of a fresh VF's MAC can lag its netdev's (docs/lab.md); record a settled state.
  check "PF's view of VF$i's MAC is its netdev's" wait_until 10 pf_view_settled "$i"
done
record_vf_state "$LAB_OUT/vf-before.txt"
: >"$LAB_OUT/netdevs-before.txt"
for i in 0 1 2 3; do netdev_state "$i" >>"$LAB_OUT/netdevs-before.txt"; done
note "PF $PF_IF VF lines before ADD:"
sed 's/^/      /' "$LAB_OUT/vf-before.txt"
note "VF netdevs before ADD:"
sed 's/^/      /' "$LAB_OUT/netdevs-before.txt"
vf0=$(vf_pci 0)
vf1=$(vf_pci 1)
dev0=$(vf_netdev 0)
dev1=$(vf_netdev 1)
make_pod podA
make_pod podB

cat >"$LAB_OUT/net-a.json" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "lab-sriov",
  "type": "sriov",
  "deviceID": "$vf0",
  "vlan": 100,
  "mac": "02:00:00:00:00:0a",
  "spoofchk": "off",
  "trust": "on",
  "max_tx_rate": 100,
  "logLevel": "debug",
  "ipam": {"type": "host-local", "subnet": "10.56.217.0/24", "dataDir": "$IPAM_DIR"}
}
EOF
cat >"$LAB_OUT/net-b.json" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "lab-sriov",
  "type": "sriov",
  "deviceID": "$vf1",
  "vlan": 100,
  "mac": "02:00:00:00:00:0b",
  "logLevel": "debug",
  "ipam": {"type": "host-local", "subnet": "10.56.217.0/24", "dataDir": "$IPAM_DIR"}
}
EOF

step "CNI ADD VF0 $vf0 -> podA net1 (vlan 100, mac :0a, spoofchk off, trust on, max_tx_rate 100)"
require "ADD c-a (podA net1)" cni_ok ADD c-a podA net1 "$LAB_OUT/net-a.json"
res_a=$LAB_OUT/cni-add-c-a.json
jq -c . "$res_a" | sed 's/^/      result: /'
check "result is CNI 1.0.0" jq -e '.cniVersion == "1.0.0"' "$res_a"
# shellcheck disable=SC2016 # $p is a jq variable
check "result: net1 in /run/netns/podA, pciID $vf0, mac 02:00:00:00:00:0a" jq -e --arg p "$vf0" \
  '.interfaces[0] | .name == "net1" and .sandbox == "/run/netns/podA" and .pciID == $p and .mac == "02:00:00:00:00:0a"' "$res_a"
check "result: one IPv4 address in 10.56.217.0/24 on interface 0" \
  jq -e '(.ips | length) == 1 and (.ips[0].address | startswith("10.56.217.")) and .ips[0].interface == 0' "$res_a"
ip_a=$(jq -r '.ips[0].address' "$res_a")

step "CNI ADD VF1 $vf1 -> podB net1 (vlan 100, mac :0b)"
require "ADD c-b (podB net1)" cni_ok ADD c-b podB net1 "$LAB_OUT/net-b.json"
res_b=$LAB_OUT/cni-add-c-b.json
jq -c . "$res_b" | sed 's/^/      result: /'
# shellcheck disable=SC2016 # $p is a jq variable
check "result: net1 in /run/netns/podB, pciID $vf1, mac 02:00:00:00:00:0b" jq -e --arg p "$vf1" \
  '.interfaces[0] | .name == "net1" and .sandbox == "/run/netns/podB" and .pciID == $p and .mac == "02:00:00:00:00:0b"' "$res_b"
check "result: one IPv4 address in 10.56.217.0/24" \
  jq -e '(.ips | length) == 1 and (.ips[0].address | startswith("10.56.217."))' "$res_b"
ip_b=$(jq -r '.ips[0].address' "$res_b")
check "the two pods got different addresses ($ip_a, $ip_b)" test "$ip_a" != "$ip_b"

step "the PF's view after ADD"
vf_lines | sed 's/^/      /'
check "vf 0: mac :0a, vlan 100, max_tx_rate 100, spoof checking off, trust on" \
  vf_has 0 "link/ether 02:00:00:00:00:0a " "vlan 100," "max_tx_rate 100Mbps" "spoof checking off" "trust on"
check "vf 0: no qos, no min_tx_rate" lacks "$(vf_line 0)" 'qos|min_tx_rate'
check "vf 1: mac :0b, vlan 100; spoofchk, trust and rate untouched (on, off, none)" \
  vf_has 1 "link/ether 02:00:00:00:00:0b " "vlan 100," "spoof checking on" "trust off"
check "vf 1: no qos, no tx rate" lacks "$(vf_line 1)" 'qos|tx_rate'
check "vf 2 and vf 3 untouched" \
  test "$(grep -E '^vf [23] ' "$LAB_OUT/vf-before.txt")" = "$(vf_lines | grep -E '^vf [23] ')"

step "the VF netdevs in the pods"
for pod in podA podB; do note "$pod: $(pod_link "$pod")"; done
check "host: $dev0 and $dev1 are gone from the host netns" \
  sh -c "! ip link show '$dev0' 2>/dev/null && ! ip link show '$dev1' 2>/dev/null"
check "host: VF0's and VF1's sysfs net/ are empty here" test -z "$(vf_netdev 0)$(vf_netdev 1)"
check "podA net1: mac :0a, UP, $ip_a" matches "$(pod_link podA)" "^net1 02:00:00:00:00:0a ([^ ]*,)?UP[, ].* $ip_a( |\$)"
check "podB net1: mac :0b, UP, $ip_b" matches "$(pod_link podB)" "^net1 02:00:00:00:00:0b ([^ ]*,)?UP[, ].* $ip_b( |\$)"
# An altname equal to the host name would block the rename back on DEL. Altnames udev gave the
# VF at creation travel with it and are harmless (the Arm guest names VFs by slot, ens1v0, with
# the path name enp1s0v0 as an altname; the x86 guest's VFs have none).
check "podA net1 has no altname $dev0 (it would block the rename back on DEL)" \
  lacks "$(ip -n podA link show net1)" "altname $dev0( |\$)"
check "podB net1 has no altname $dev1" lacks "$(ip -n podB link show net1)" "altname $dev1( |\$)"
d=$(ip netns exec podA readlink -f /sys/class/net/net1/device)
check "podA net1 is VF0 (its device is ${d##*/})" test "${d##*/}" = "$vf0"
d=$(ip netns exec podB readlink -f /sys/class/net/net1/device)
check "podB net1 is VF1 (its device is ${d##*/})" test "${d##*/}" = "$vf1"

step "traffic: podA -> podB over VF0 -> VF1 (NIC-internal switch, VLAN 100)"
check "podA net1 has carrier" wait_until 30 sh -c "ip -n podA link show net1 | grep -q LOWER_UP"
check "podB net1 has carrier" wait_until 30 sh -c "ip -n podB link show net1 | grep -q LOWER_UP"
check "ping podA -> podB ${ip_b%/*}" ip netns exec podA ping -c 3 -i 0.3 -W 2 "${ip_b%/*}"
check "ping podB -> podA ${ip_a%/*}" ip netns exec podB ping -c 2 -i 0.3 -W 2 "${ip_a%/*}"

step "CNI CHECK (prevResult = the ADD result, as a runtime sends it)"
with_prev "$LAB_OUT/net-a.json" "$res_a" >"$LAB_OUT/net-a-prev.json"
with_prev "$LAB_OUT/net-b.json" "$res_b" >"$LAB_OUT/net-b-prev.json"
check "CHECK c-a passes" cni_ok CHECK c-a podA net1 "$LAB_OUT/net-a-prev.json"
check "CHECK c-b passes" cni_ok CHECK c-b podB net1 "$LAB_OUT/net-b-prev.json"
check "state files recorded: c-a-net1.json, c-b-net1.json" \
  test -e "$CNI_STATE/c-a-net1.json" -a -e "$CNI_STATE/c-b-net1.json"

step "CNI DEL both"
check "DEL c-a" cni_ok DEL c-a podA net1 "$LAB_OUT/net-a-prev.json"
check "DEL c-b" cni_ok DEL c-b podB net1 "$LAB_OUT/net-b-prev.json"
note "PF $PF_IF VF lines after DEL:"
vf_lines | sed 's/^/      /'
: >"$LAB_OUT/netdevs-after.txt"
for i in 0 1 2 3; do netdev_state "$i" >>"$LAB_OUT/netdevs-after.txt"; done
note "VF netdevs after DEL:"
sed 's/^/      /' "$LAB_OUT/netdevs-after.txt"
check "PF's VF lines equal the recorded ones (admin MAC, vlan, spoofchk, trust, rate)" \
  compare_vf_state "$LAB_OUT/vf-before.txt"
check "VF netdevs back in the host: names, MACs, MTUs, up/down as recorded" \
  diff -u "$LAB_OUT/netdevs-before.txt" "$LAB_OUT/netdevs-after.txt"
check "podA has only lo" only_lo podA
check "podB has only lo" only_lo podB
check "no state file left in $CNI_STATE" no_state_files
check "host-local released ${ip_a%/*} and ${ip_b%/*}" \
  test ! -e "$IPAM_DIR/lab-sriov/${ip_a%/*}" -a ! -e "$IPAM_DIR/lab-sriov/${ip_b%/*}"

step "a second DEL of both (idempotent)"
check "DEL c-a again" cni_ok DEL c-a podA net1 "$LAB_OUT/net-a-prev.json"
check "DEL c-b again" cni_ok DEL c-b podB net1 "$LAB_OUT/net-b-prev.json"
check "PF's VF lines still equal the recorded ones" compare_vf_state "$LAB_OUT/vf-before.txt"


step "ADD VF0 with mac = its own MAC, pod sets net1 down, DEL: the PF must not show zeros"
# The restore clears the admin MAC; the netdev then already has its original MAC, and setting an
# unchanged MAC never reaches the driver: the plugin goes through a temporary MAC. (When DEL finds
# the link up, setting it down resets the VF, which re-sends its MAC to the PF anyway; a link the
# pod already set down gets no such reset.)
own0=$(awk '$1 == "VF0" { print $3 }' "$LAB_OUT/netdevs-before.txt")
jq --arg m "$own0" '. + {mac: $m} | del(.ipam)' "$LAB_OUT/net-a.json" >"$LAB_OUT/net-own.json"
check "ADD c-own (podA net1, mac $own0)" cni_ok ADD c-own podA net1 "$LAB_OUT/net-own.json"
check "vf 0: admin MAC $own0, vlan 100" vf_has 0 "link/ether $own0 " "vlan 100,"
check "podA: net1 set down (as a workload may)" ip -n podA link set net1 down
check "DEL c-own" cni_ok DEL c-own podA net1 "$LAB_OUT/net-own.json"
note "$(vf_line 0)"
check "PF's VF lines equal the recorded ones (vf 0 shows $own0, not zeros)" \
  compare_vf_state "$LAB_OUT/vf-before.txt"
check "VF0's netdev back as recorded" \
  test "$(netdev_state 0)" = "$(grep '^VF0 ' "$LAB_OUT/netdevs-before.txt")"


step "ADD VF0 into podC, delete podC's netns, DEL: the netdev comes back to the host as net1"
make_pod podC
jq 'del(.ipam)' "$LAB_OUT/net-a.json" >"$LAB_OUT/net-gone.json"
check "ADD c-gone (podC net1)" cni_ok ADD c-gone podC net1 "$LAB_OUT/net-gone.json"
ip netns del podC
# shellcheck disable=SC2016 # expanded by eval, at each poll
check "VF0's netdev is back in the host as net1" wait_until 10 eval '[ "$(vf_netdev 0)" = net1 ]'
sleep 1
note "$(ip link show net1 2>&1 | tr -s ' ' | tr '\n' ' ')(udev's altname: the name DEL must take back)"
check "DEL c-gone (the netns is gone)" cni_ok DEL c-gone podC net1 "$LAB_OUT/net-gone.json"
check "PF's VF lines equal the recorded ones" compare_vf_state "$LAB_OUT/vf-before.txt"
check "VF0's netdev back as recorded" \
  test "$(netdev_state 0)" = "$(grep '^VF0 ' "$LAB_OUT/netdevs-before.txt")"

pass
