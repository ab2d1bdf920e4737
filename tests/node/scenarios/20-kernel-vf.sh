#!/usr/bin/env bash
# 20-kernel-vf: a pod with a kernel VF through Multus.
# Must show:
#   - tests/node/examples/pod-netdevice.yaml (arm.com/ps225_sriov_netdevice: 1, network
#     sriov-net1 from deploy/examples, no deviceID anywhere) becomes Ready;
#   - the kubelet allocated one VF (PCIDEVICE_... in the container) and Multus found it by
#     itself: net1 in the pod is that VF's netdev (its MAC), with an address of the NAD's IPAM
#     range, and the network-status annotation names net1 with the VF's PCI address;
#   - pod deleted: the VF netdev is back in the node with its own name and MAC, the IPAM lease
#     released, no CNI state or Multus cache entry left;
#   - the example NAD unchanged (vlan, spoofchk, trust: PF-side settings a veth PF cannot
#     take): the pod never starts, its events carry the CNI's message, and once it is deleted
#     nothing is left behind either.
# Helpers below are called through check/require/wait_for; jq programs use $vars.
# shellcheck disable=SC2317,SC2016
set -euo pipefail
# shellcheck source=tests/node/scenario-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scenario-lib.sh"

step "pod-netdevice: $NETDEV: 1 + network sriov-net1"
require "pod-netdevice Ready" apply_ready pod-netdevice <"$NODE_HERE/examples/pod-netdevice.yaml"
vf=$(podenv pod-netdevice PCIDEVICE_ARM_COM_PS225_SRIOV_NETDEVICE || true)
note "allocated VF: ${vf:-none}"
require "PCIDEVICE_ARM_COM_PS225_SRIOV_NETDEVICE is one netdev VF" \
  grep -Eqx '0000:0[34]:10\.[0-5]' <<<"$vf"
bus=$((16#${vf:5:2})) idx=${vf: -1}
vf_if=enp${bus}s0f0v$idx
vf_mac=$(printf '02:00:00:%02x:10:%02x' "$bus" "$idx")

net1=$(kc exec pod-netdevice -- ip -o link show net1 || true)
check "net1 in the pod is $vf_if (MAC $vf_mac)" grep -q "link/ether $vf_mac" <<<"$net1"
addr=$(kc exec pod-netdevice -- ip -o -4 addr show net1 | awk '{ print $4 }' || true)
note "net1 address: ${addr:-none}"
check "net1 has an address of sriov-net1's range (10.56.217.171-181/24)" \
  grep -Eqx '10\.56\.217\.(17[1-9]|18[01])/24' <<<"$addr"
not_in_node() { ! innode ip link show "$1"; }
check "$vf_if is no longer in the node's netns" not_in_node "$vf_if"
status=$(net1_status pod-netdevice || true)
note "network-status net1: $status"
check "network-status names net1 with the VF's PCI address $vf" \
  jq -e --arg vf "$vf" '.["device-info"].pci["pci-address"] == $vf' <<<"$status"
check "network-status carries net1's address" jq -e --arg a "${addr%/*}" '.ips | index($a) != null' <<<"$status"
nad_has_no_deviceid() { local c; c=$(kc get net-attach-def sriov-net1 -o jsonpath='{.spec.config}'); ! grep -q deviceID <<<"$c"; }
check "the NAD names no deviceID (Multus found the VF)" nad_has_no_deviceid

step "delete pod-netdevice"
require "pod-netdevice deleted" gone pod-netdevice
check "every VF netdev home with its name and MAC" vfs_home
check "no CNI state, IPAM lease or Multus cache left" cni_state_clean

step "the example NAD as shipped (PF-side settings) on a veth PF"
example_nad() {
  kc create --dry-run=client -o json -f "$NODE_REPO/deploy/examples/nad-sriov-net1.yaml" |
    jq '.metadata.name = "sriov-net1-pf"' | kc apply -f -
}
require "NAD sriov-net1-pf (deploy/examples/nad-sriov-net1.yaml as is) created" example_nad
pod pod-pfset sriov-net1-pf "$NETDEV" | kc apply -f - >/dev/null
uid=$(kc get pod pod-pfset -o jsonpath='{.metadata.uid}')
cni_refused() {
  kc get events --field-selector "involvedObject.uid=$uid" -o json |
    jq -e '[.items[] | select(.reason == "FailedCreatePodSandBox") | .message]
      | map(select(test("reports no VF info"))) | length > 0'
}
check "the pod's events carry the CNI's refusal within 60 s" wait_for 60 "FailedCreatePodSandBox" cni_refused
kc get events --field-selector "involvedObject.uid=$uid" -o json |
  jq -r '[.items[] | select(.reason == "FailedCreatePodSandBox") | .message][0]' | cut -c1-400 | sed 's/^/           event: /'
require "pod-pfset deleted" gone pod-pfset
kc delete net-attach-def sriov-net1-pf >/dev/null
check "every VF netdev home with its name and MAC" vfs_home
check "no CNI state, IPAM lease or Multus cache left" cni_state_clean
finish
