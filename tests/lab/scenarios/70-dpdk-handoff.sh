#!/bin/bash
# 70-dpdk-handoff: a DPDK pod, end to end, with a real DPDK application.
#   - sriov-device-plugin with config-samples/igb-lab.json provisions the NIC (PF up, 4 VFs,
#     VF0-2 igbvf, VF3 vfio-pci) and advertises its two pools; a test kubelet
#     (tests/tests/lab_dpdk.rs, real gRPC) sees 3 + 1 Healthy devices, allocates the vfio VF to a
#     "DPDK pod" and an igbvf VF to a "kernel pod", and writes the Allocate responses to a file.
#   - CNI ADD as the runtime does it at sandbox creation: DPDK mode for the vfio VF (VLAN 100,
#     MAC, trust on; host-local IPAM returns the pod's address, nothing is moved), kernel mode
#     for the igbvf VF (VLAN 100, host-local address on net1 in the pod).
#   - The DPDK pod is started with only what a container gets (tests/lab/pod-run.sh: env -i plus
#     the Allocate env, a /dev holding only the DeviceSpecs' nodes and hugepages):
#     deploy/dpdk-launcher.sh turns PCIDEVICE_* into EAL args and runs dpdk-testpmd in icmpecho
#     mode on the VF through vfio-pci.
#   - The kernel pod pings the DPDK pod's address: testpmd answers ARP and ICMP; its port
#     statistics show the packets.
#   - Teardown: testpmd stops and frees its hugepages, CNI DEL restores both VFs' PF-side
#     settings exactly (the PF's VF lines equal those recorded before ADD), the kernel VF comes
#     home under its name and MAC, VF3 stays on vfio-pci.
# lab-test-bin: sriov-tests lab_dpdk
# lab-timeout: 900
set -euo pipefail
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
# shellcheck source=tests/lab/dpdk-lib.sh
. "$LAB_REPO/tests/lab/dpdk-lib.sh"
lab_setup

conf=$LAB_REPO/config-samples/igb-lab.json
alloc=$LAB_OUT/allocations.json
DPDK_RES=lab.sriov.io/igb_dpdk
DPDK_MAC=02:00:00:00:00:0b
KERNEL_MAC=02:00:00:00:00:0a

step "node prerequisites: 256 x 2 MiB hugepages, vfio-pci loaded"
hugepages_setup 256
# The plugin binds VFs to vfio-pci but does not load drivers: the node's admin does (modprobe).
modprobe vfio-pci

step "sriov-device-plugin --config ${conf#"$LAB_REPO"/}: provisions the NIC, advertises two pools"
check "the PF has no VFs yet" test "$(cat "$PF_SYS/sriov_numvfs")" = 0
dp_start "$conf"
# shellcheck disable=SC2317 # called through wait_until
provisioned() {
  [ "$(cat "$PF_SYS/sriov_numvfs")" = 4 ] && [ "$(vf_driver 3)" = vfio-pci ] &&
    [ "$(vf_driver 0)" = igbvf ] && [ "$(vf_driver 1)" = igbvf ] && [ "$(vf_driver 2)" = igbvf ] &&
    [ -n "$(vf_netdev 0)" ] && [ -n "$(vf_netdev 1)" ] && [ -n "$(vf_netdev 2)" ]
}
require "the plugin created 4 VFs, VF0-2 on igbvf with netdevs, VF3 on vfio-pci" wait_until 120 provisioned
udevadm settle -t 30 || true
VFIO_GROUP=$(basename "$(readlink "$PF_SYS/virtfn3/iommu_group")")
check "/dev/vfio/$VFIO_GROUP exists" wait_until 10 test -c "/dev/vfio/$VFIO_GROUP"
check "the PF is up" sh -c "ip link show '$PF_IF' | grep -q '<.*,UP'"
grep -a 'provision' "$LAB_OUT/device-plugin.log" | sed 's/^/    | /' | tail -n 4 || true
for i in 0 1 2 3; do note "VF$i $(vf_pci "$i") $(vf_driver "$i") $(vf_netdev "$i")"; done

step "test kubelet: pools, health, Allocate for a DPDK pod and a kernel pod"
# shellcheck disable=SC2317 # called through check
run_kubelet() {
  LAB_KUBELET_DIR=$DP_ROOT/device-plugins LAB_ALLOC_OUT=$alloc LAB_KERNEL_PODS=1 \
    "$LAB_TEST_LAB_DPDK" --nocapture --test-threads 1 >"$LAB_OUT/lab_dpdk.txt" 2>&1
}
check "test kubelet (lab_dpdk) passes" run_kubelet
check "lab_dpdk ran a test" lab_tests_ran "$LAB_OUT/lab_dpdk.txt"
sed 's/^/    /' "$LAB_OUT/lab_dpdk.txt"
require "allocations written" test -s "$alloc"
vf_d=$(jq -r '.pods.dpdk.ids[0]' "$alloc")
vf_k=$(jq -r '.pods.kernel.ids[0]' "$alloc")
check "the DPDK pod got VF3 ($vf_d)" test "$vf_d" = "$(vf_pci 3)"
check "the kernel pod got VF0 ($vf_k)" test "$vf_k" = "$(vf_pci 0)"
devinfo=$DP_ROOT/devinfo/lab.sriov.io-igb_dpdk-$vf_d-device.json
# shellcheck disable=SC2016 # jq variables
check "device-info file names the VF and its PF" \
  jq -e --arg a "$vf_d" --arg pf "$PF_PCI" '.type == "pci" and .pci."pci-address" == $a and .pci."pf-pci-address" == $pf' "$devinfo"
note "device-info: $(jq -c . "$devinfo" 2>/dev/null)"

k_name=$(vf_netdev 0)
k_mac=$(cat "/sys/class/net/$k_name/address")
record_vf_state "$LAB_OUT/vf-before.txt"
note "VF lines before ADD:"
sed 's/^/      /' "$LAB_OUT/vf-before.txt"

step "CNI ADD, DPDK mode: $vf_d for pod podD (VLAN 100, MAC $DPDK_MAC, trust on)"
make_pod podD
# Multus' part: the device plugin's device-info file, copied to CNIDeviceInfoFile before ADD.
cp "$devinfo" "$LAB_OUT/devinfo-dp-podD.json"
cp "$devinfo" "$LAB_OUT/cni-devinfo-podD.json"
lab_netconf "$vf_d" "$DPDK_MAC" \
  "{\"trust\": \"on\", \"spoofchk\": \"off\", \"runtimeConfig\": {\"CNIDeviceInfoFile\": \"$LAB_OUT/cni-devinfo-podD.json\"}}" \
  >"$LAB_OUT/netconf-dpdk.json"
require "ADD (DPDK mode)" cni ADD c-dpdk podD net1 "$LAB_OUT/netconf-dpdk.json"
d_ip=$(cni_ip c-dpdk)
note "result: $(jq -c '{interfaces, ips}' "$LAB_OUT/cni-add-c-dpdk.json")"
check "vf 3 has VLAN 100, MAC $DPDK_MAC, trust on" vf_has 3 "vlan 100" "$DPDK_MAC" "trust on" "spoof checking off"
check "VF3 is still on vfio-pci" test "$(vf_driver 3)" = vfio-pci
check "nothing was moved into podD" test "$(ip -n podD -o link show | wc -l)" = 1
# shellcheck disable=SC2016 # jq variables
check "CNI device-info file" jq -e --arg a "$vf_d" '.pci."pci-address" == $a' "$LAB_OUT/cni-devinfo-podD.json"
check "  ... exactly the device plugin's" cmp "$LAB_OUT/devinfo-dp-podD.json" "$LAB_OUT/cni-devinfo-podD.json"
require "the DPDK pod has an address" test -n "$d_ip" -a "$d_ip" != null

step "CNI ADD, kernel mode: $vf_k ($k_name) for pod podK as net1 (VLAN 100, MAC $KERNEL_MAC)"
make_pod podK
lab_netconf "$vf_k" "$KERNEL_MAC" >"$LAB_OUT/netconf-kernel.json"
require "ADD (kernel mode)" cni ADD c-kernel podK net1 "$LAB_OUT/netconf-kernel.json"
k_ip=$(cni_ip c-kernel)
note "podK: $(ip -n podK -br addr show net1)"
note "altnames of net1 in podK: $(altnames podK net1)"
check "vf 0 has VLAN 100 and MAC $KERNEL_MAC" vf_has 0 "vlan 100" "$KERNEL_MAC"
check "net1 in podK has $k_ip" sh -c "ip -n podK -o addr show net1 | grep -q 'inet $k_ip/24'"

step "DPDK pod: dpdk-launcher.sh + dpdk-testpmd (icmpecho) with only the Allocate env and device nodes"
note "pod env: $(jq -r '.pods.dpdk.envs | keys | join(" ")' "$alloc")"
note "pod devices: $(jq -r '[.pods.dpdk.devices[].container_path] | join(" ")' "$alloc")"
print_out=$("$LAB_REPO/tests/lab/pod-run.sh" "$alloc" dpdk "$LAB_REPO/deploy/dpdk-launcher.sh" \
  --resource "$DPDK_RES" --print -- dpdk-testpmd -l 0-1 -n 1 --in-memory -- --forward-mode=icmpecho 2>&1 || true)
note "launcher --print in the pod: $print_out"
check "the launcher's EAL allow-list is the allocated VF" grep -q -- "-a $vf_d --" <<<"$print_out"
hp_free0=$(hugepages_free)
t0=$(date +%s)
dpdk_pod_start "$alloc" dpdk "$DPDK_RES" "$LAB_OUT/testpmd.log"
if wait_until 240 testpmd_forwarding "$LAB_OUT/testpmd.log"; then
  note "testpmd forwarding $(( $(date +%s) - t0 ))s after start"
else
  sed 's/^/    | /' "$LAB_OUT/testpmd.log" | tail -n 40
  fail "testpmd did not start forwarding within 240 s"
fi
grep -a -E 'dpdk-launcher|EAL: Probe|net_e1000_igb_vf|IOMMU type|Port 0: ' "$LAB_OUT/testpmd.log" | head -n 8 | sed 's/^/    | /' || true
check "testpmd drives the VF through vfio-pci" grep -q 'Using IOMMU type' "$LAB_OUT/testpmd.log"
check "testpmd's port has the MAC the CNI set" grep -qi "Port 0: $DPDK_MAC" "$LAB_OUT/testpmd.log"

step "kernel pod ($k_ip) pings the DPDK pod ($d_ip)"
if wait_until 90 ip netns exec podK ping -c 1 -W 2 "$d_ip"; then
  note "first reply $(( $(date +%s) - t0 ))s after testpmd started"
else
  fail "no reply from testpmd at $d_ip within 90 s"
fi
ping_out=$(ip netns exec podK ping -c 5 -i 0.5 -W 3 "$d_ip" 2>&1 || true)
tail -n 3 <<<"$ping_out" | sed 's/^/    | /'
check "5 of 5 pings answered" grep -q '5 packets transmitted, 5 received' <<<"$ping_out"
check "ARP answered by the DPDK port's MAC" sh -c "ip -n podK neigh show '$d_ip' | grep -qi '$DPDK_MAC'"

# testpmd's periodic NIC statistics (every 5 s): cumulative RX/TX packet counters.
sleep 6
rx=$(testpmd_stat "$LAB_OUT/testpmd.log" RX-packets)
tx=$(testpmd_stat "$LAB_OUT/testpmd.log" TX-packets)
note "testpmd port 0 statistics: RX-packets ${rx:-?}, TX-packets ${tx:-?}"
check "testpmd received the pings (RX >= 6)" test "${rx:-0}" -ge 6
check "testpmd answered them (TX >= 6)" test "${tx:-0}" -ge 6

step "teardown: stop the DPDK pod, CNI DEL both, compare with before"
rc=0
dpdk_pod_stop || rc=$?
note "testpmd exit status $rc"
check "testpmd closed the port and said Bye" grep -q 'Bye' "$LAB_OUT/testpmd.log"
fwd=$(grep -a -A2 'Forward statistics for port 0' "$LAB_OUT/testpmd.log" | tr -s ' ' | tail -n2 | tr '\n' ' ' || true)
note "testpmd final forward statistics: $fwd"
check "hugepages given back ($hp_free0 free)" test "$(hugepages_free)" = "$hp_free0"
require "DEL (kernel mode)" cni_del c-kernel podK net1 "$LAB_OUT/netconf-kernel.json"
require "DEL (DPDK mode)" cni_del c-dpdk podD net1 "$LAB_OUT/netconf-dpdk.json"
check "PF's VF lines exactly as before ADD" compare_vf_state "$LAB_OUT/vf-before.txt"
check "kernel VF back in the host as $k_name" test "$(vf_netdev 0)" = "$k_name"
check "kernel VF has its MAC $k_mac again" test "$(cat "/sys/class/net/$k_name/address" 2>/dev/null)" = "$k_mac"
check "VF3 still on vfio-pci with /dev/vfio/$VFIO_GROUP" sh -c "test \"\$(basename \"\$(readlink '$PF_SYS/virtfn3/driver')\")\" = vfio-pci && test -c /dev/vfio/$VFIO_GROUP"
check "CNI device-info file left as Multus put it there" cmp "$LAB_OUT/devinfo-dp-podD.json" "$LAB_OUT/cni-devinfo-podD.json"
check "no CNI state left" sh -c "! ls '$CNI_STATE'/*.json 2>/dev/null | grep -q ."
note "VF lines after DEL:"
vf_lines | sed 's/^/      /'
rc=0
dp_stop || rc=$?
check "device plugin stopped cleanly (exit 0)" test "$rc" = 0

pass
