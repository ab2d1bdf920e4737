#!/bin/bash
# 30-cni-dpdk: the sriov CNI in DPDK mode on a VF bound to vfio-pci.
# Must show:
#   - setup (raw helpers): 4 VFs, VF2 bound to vfio-pci; PF's VF lines recorded;
#   - CNI ADD with deviceID = VF2's PCI address and netconf vlan 100, mac 02:00:00:00:00:0c,
#     trust on, spoofchk off, runtimeConfig.CNIDeviceInfoFile: rc 0; `ip link show $PF_IF` shows
#     the settings on vf 2; the device-info file Multus put there (a device plugin's, with
#     rdma-device and vhost-net) is left byte for byte as it was;
#   - no netdev is moved: the pod netns has only lo, VF2 stays on vfio-pci, /dev/vfio/<group>
#     still exists;
#   - CNI CHECK passes;
#   - CNI DEL: vf 2's line equals the recorded one (for a VF that igbvf owned before vfio-pci, the
#     recorded admin MAC is a leftover non-zero value: it must come back exactly); the
#     device-info file is still there unchanged (Multus removes it), the state file is gone; a
#     second DEL succeeds;
#   - VF2 given back to igbvf (raw) then serves a kernel-mode ADD with a `mac` while untrusted
#     (the recorded admin MAC the DPDK DEL put back makes igb refuse the VF's own MAC change until
#     the plugin clears it), and its DEL restores the VF as it was before that ADD.
# lab-timeout: 600
set -euo pipefail
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
lab_setup
# shellcheck source=tests/lab/cni-lib.sh
. "$LAB_REPO/tests/lab/cni-lib.sh"

DEVINFO=/run/k8s.cni.cncf.io/devinfo/cni/c-d-net1-device.json

step "set up 4 VFs, VF2 on vfio-pci (raw)"
create_vfs 4
note "4 VFs with netdevs after ${VF_CREATE_SECS}s"
vf2=$(vf_pci 2)
check "PF's view of VF2's MAC is its netdev's before the rebind" wait_until 10 pf_view_settled 2
bind_vfio "$vf2"
note "VF2 $vf2 on $(vf_driver 2), /dev/vfio/$VFIO_GROUP"
record_vf_state "$LAB_OUT/vf-before.txt"
note "PF $PF_IF VF lines before ADD (vf 2 keeps the MAC igbvf left as its admin MAC):"
sed 's/^/      /' "$LAB_OUT/vf-before.txt"
vf2_mac=$(vf_line 2 | awk '{ print $4 }')
check "vf 2 shows a leftover non-zero MAC ($vf2_mac)" \
  matches "$vf2_mac" '^[0-9a-f]{2}(:[0-9a-f]{2}){5}$'
check "  ... that is not 00:00:00:00:00:00" test "$vf2_mac" != 00:00:00:00:00:00
make_pod podD

cat >"$LAB_OUT/net-d.json" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "lab-sriov-dpdk",
  "type": "sriov",
  "deviceID": "$vf2",
  "vlan": 100,
  "mac": "02:00:00:00:00:0c",
  "trust": "on",
  "spoofchk": "off",
  "logLevel": "debug",
  "runtimeConfig": {"CNIDeviceInfoFile": "$DEVINFO"}
}
JSON

# Multus' part: the device plugin's device-info file for VF2, copied to CNIDeviceInfoFile.
mkdir -p "$(dirname "$DEVINFO")"
printf '{"type":"pci","version":"1.1.0","pci":{"pci-address":"%s","pf-pci-address":"%s","rdma-device":"mlx5_9","vhost-net":"/dev/vhost-net"}}' \
  "$vf2" "$PF_PCI" >"$LAB_OUT/devinfo-dp.json"
cp "$LAB_OUT/devinfo-dp.json" "$DEVINFO"

step "CNI ADD VF2 $vf2 (vfio-pci: DPDK mode) for podD: vlan 100, mac :0c, trust on, spoofchk off"
require "ADD c-d (podD net1)" cni_ok ADD c-d podD net1 "$LAB_OUT/net-d.json"
res=$LAB_OUT/cni-add-c-d.json
jq -c . "$res" | sed 's/^/      result: /'
# shellcheck disable=SC2016 # $p is a jq variable
check "result: net1, sandbox /run/netns/podD, pciID $vf2, mac 02:00:00:00:00:0c" jq -e --arg p "$vf2" \
  '.interfaces[0] | .name == "net1" and .sandbox == "/run/netns/podD" and .pciID == $p and .mac == "02:00:00:00:00:0c"' "$res"
check "result: no IPs (no ipam in the netconf)" jq -e '(.ips // []) | length == 0' "$res"

step "the PF's view after ADD"
vf_lines | sed 's/^/      /'
check "vf 2: mac :0c, vlan 100, spoof checking off, trust on" \
  vf_has 2 "link/ether 02:00:00:00:00:0c " "vlan 100," "spoof checking off" "trust on"
check "vf 2: no qos, no tx rate" lacks "$(vf_line 2)" 'qos|tx_rate'
check "vf 0, 1 and 3 untouched" \
  test "$(grep -Ev '^vf 2 ' "$LAB_OUT/vf-before.txt")" = "$(vf_lines | grep -Ev '^vf 2 ')"

step "nothing moved: VF2 stays a PCI device for a userspace driver"
check "podD has only lo" only_lo podD
check "VF2 is still bound to vfio-pci" test "$(vf_driver 2)" = vfio-pci
check "/dev/vfio/$VFIO_GROUP still exists" test -c "/dev/vfio/$VFIO_GROUP"
check "VF2 has no netdev" test -z "$(vf_netdev 2)"
note "device-info file $DEVINFO: $(cat "$DEVINFO" 2>&1)"
check "device-info file as Multus put it there" cmp "$LAB_OUT/devinfo-dp.json" "$DEVINFO"
check "state file c-d-net1.json recorded" test -e "$CNI_STATE/c-d-net1.json"

step "CNI CHECK (prevResult = the ADD result)"
with_prev "$LAB_OUT/net-d.json" "$res" >"$LAB_OUT/net-d-prev.json"
check "CHECK c-d passes" cni_ok CHECK c-d podD net1 "$LAB_OUT/net-d-prev.json"

step "CNI DEL"
check "DEL c-d" cni_ok DEL c-d podD net1 "$LAB_OUT/net-d-prev.json"
note "PF $PF_IF VF lines after DEL:"
vf_lines | sed 's/^/      /'
check "PF's VF lines equal the recorded ones" compare_vf_state "$LAB_OUT/vf-before.txt"
check "vf 2's admin MAC is the recorded leftover $vf2_mac again" vf_has 2 "link/ether $vf2_mac "
check "device-info file still as Multus put it there" cmp "$LAB_OUT/devinfo-dp.json" "$DEVINFO"
rm -f "$DEVINFO"
check "no state file left in $CNI_STATE" no_state_files
check "VF2 is still bound to vfio-pci" test "$(vf_driver 2)" = vfio-pci

step "a second DEL (idempotent)"
check "DEL c-d again" cni_ok DEL c-d podD net1 "$LAB_OUT/net-d-prev.json"
check "PF's VF lines still equal the recorded ones" compare_vf_state "$LAB_OUT/vf-before.txt"


step "VF2 back to igbvf (raw), then a kernel-mode attachment with a MAC on it"
unbind_vfio "$vf2"
# shellcheck disable=SC2016 # expanded by eval, at each poll
check "VF2 has an igbvf netdev again" wait_until 20 eval '[ -n "$(vf_netdev 2)" ]'
check "PF's view of VF2's MAC is its netdev's" wait_until 10 pf_view_settled 2
record_vf_state "$LAB_OUT/vf-before-kernel.txt"
netdev_state 2 >"$LAB_OUT/netdev-before-kernel.txt"
note "VF2 netdev: $(cat "$LAB_OUT/netdev-before-kernel.txt"); PF: $(vf_line 2)"
jq --arg v "$vf2" '{cniVersion, name, type, logLevel} + {deviceID: $v, vlan: 100, mac: "02:00:00:00:00:0d"}' \
  "$LAB_OUT/net-d.json" >"$LAB_OUT/net-k.json"
check "ADD c-k (podD net1, kernel mode, mac :0d, vlan 100, VF untrusted)" \
  cni_ok ADD c-k podD net1 "$LAB_OUT/net-k.json"
check "podD net1 has MAC 02:00:00:00:00:0d" matches "$(pod_link podD 2>&1)" '^net1 02:00:00:00:00:0d '
check "vf 2: mac :0d, vlan 100" vf_has 2 "link/ether 02:00:00:00:00:0d " "vlan 100,"
check "DEL c-k" cni_ok DEL c-k podD net1 "$LAB_OUT/net-k.json"
check "PF's VF lines equal those before this ADD" compare_vf_state "$LAB_OUT/vf-before-kernel.txt"
check "VF2's netdev back as before this ADD" \
  diff -u "$LAB_OUT/netdev-before-kernel.txt" <(netdev_state 2)
check "no state file left in $CNI_STATE" no_state_files

pass
