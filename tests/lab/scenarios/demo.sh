#!/bin/bash
# demo: the main job on the emulated SR-IOV NIC, for people (scripts/demo.sh runs it and shows
# its output live; not part of "all": 70-dpdk-handoff and the other scenarios test the same
# things with more checks). The node's inventory; the NIC provisioned from
# config-samples/igb-lab.json; the two pools a test kubelet sees with their health; two pods
# getting kernel VFs through the CNI, with addresses, pinging each other on VLAN 100; a DPDK pod
# (dpdk-testpmd on the vfio-pci VF, started through deploy/dpdk-launcher.sh from what Allocate
# gave it) answering a ping; teardown restoring the NIC's VF settings exactly.
# The readable output also goes to $LAB_OUT/demo.txt, which scripts/demo.sh follows.
# lab-test-bin: sriov-tests lab_dpdk
# lab-timeout: 900
set -euo pipefail
exec > >(tee -a "$LAB_OUT/demo.txt") 2>&1
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
# shellcheck source=tests/lab/dpdk-lib.sh
. "$LAB_REPO/tests/lab/dpdk-lib.sh"

section_n=0
section() {
  section_n=$((section_n + 1))
  printf '\n\n######## %s. %s  [%ss into the guest]\n' "$section_n" "$*" "$(_lab_elapsed | tr -d ' ')"
}
# show CMD...: print the command, then its output indented.
show() {
  printf '  $ %s\n' "$*"
  "$@" 2>&1 | sed 's/^/    /'
}
# inventory: what the plugin sees on this node (its log lines below errors left out).
inventory() {
  printf '  $ sriov-device-plugin inventory --config %s\n' "${conf#"$LAB_REPO"/}"
  RUST_LOG=error "$LAB_BIN/sriov-device-plugin" inventory --config "$conf" 2>&1 | sed 's/^/    /'
}
# vf_table: one line per VF: index, PCI address, driver, netdev, PF-side settings.
vf_table() {
  local i n nd
  n=$(cat "$PF_SYS/sriov_numvfs")
  for ((i = 0; i < n; i++)); do
    nd=$(vf_netdev "$i")
    [ -n "$nd" ] || { [ "$(vf_driver "$i")" = igbvf ] && nd="(in a pod)"; } || nd="-"
    printf '    VF%s  %s  driver %-9s netdev %-10s | %s\n' "$i" "$(vf_pci "$i")" "$(vf_driver "$i")" \
      "$nd" "$(vf_line "$i" | sed 's/^vf [0-9]* //')"
  done
}

section "The node: an emulated Intel 82576 (QEMU igb) with SR-IOV, real igb/igbvf/vfio-pci drivers"
lab_setup >/dev/null
conf=$LAB_REPO/config-samples/igb-lab.json
alloc=$LAB_OUT/allocations.json
hugepages_setup 256
modprobe vfio-pci
echo "  kernel $(uname -r), $(nproc) CPUs; PF $PF_PCI ($PF_IF), up to $(cat "$PF_SYS/sriov_totalvfs") VFs, $(cat "$PF_SYS/sriov_numvfs") now"
echo "  node prerequisites done: 256 x 2 MiB hugepages reserved, vfio-pci module loaded"
inventory

section "The device plugin provisions the NIC from its config (${conf#"$LAB_REPO"/})"
jq -c '.provision[]' "$conf" | sed 's/^/  provision: /'
jq -r '.resourceList[] | "  pool \(.resourcePrefix)/\(.resourceName): \(.selectors | tojson)"' "$conf"
dp_start "$conf"
echo "  sriov-device-plugin started (log: target/lab/demo/device-plugin.log)"
# shellcheck disable=SC2317 # called through wait_until
provisioned() {
  [ "$(cat "$PF_SYS/sriov_numvfs")" = 4 ] && [ "$(vf_driver 3)" = vfio-pci ] &&
    [ -n "$(vf_netdev 0)" ] && [ -n "$(vf_netdev 1)" ] && [ -n "$(vf_netdev 2)" ]
}
require "the plugin provisioned 4 VFs" wait_until 120 provisioned
udevadm settle -t 30 || true
grep -a 'provision' "$LAB_OUT/device-plugin.log" | sed 's/^/    | /' | tail -n 4 || true
echo "  VFs (driver, netdev | the PF's view of the VF):"
vf_table
inventory

section "A kubelet (test kubelet, real gRPC) sees the pools and allocates VFs to three pods"
# shellcheck disable=SC2317 # called through require
run_kubelet() {
  LAB_KUBELET_DIR=$DP_ROOT/device-plugins LAB_ALLOC_OUT=$alloc LAB_KERNEL_PODS=2 \
    "$LAB_TEST_LAB_DPDK" --nocapture --test-threads 1 >"$LAB_OUT/lab_dpdk.txt" 2>&1
}
rc=0
run_kubelet || rc=$?
grep -v '^running \|^test result\|^$\|^ok$\|^allocations written\|^successes\|^    lab_' "$LAB_OUT/lab_dpdk.txt" |
  sed 's/^test lab_[a-z_]* \.\.\. //; s/^/  /'
[ "$rc" = 0 ] || fail "test kubelet failed (exit $rc)"
lab_tests_ran "$LAB_OUT/lab_dpdk.txt" || fail "the test kubelet ran no test"
vf_a=$(jq -r '.pods.kernel.ids[0]' "$alloc")
vf_b=$(jq -r '.pods.kernel2.ids[0]' "$alloc")
vf_d=$(jq -r '.pods.dpdk.ids[0]' "$alloc")
record_vf_state "$LAB_OUT/vf-before.txt"
names_before=$(for i in 0 1 2 3; do printf '%s ' "$(vf_netdev "$i")"; done)

section "Two pods get kernel VFs through the sriov CNI (VLAN 100, MAC, host-local IPAM)"
make_pod podA
make_pod podB
lab_netconf "$vf_a" 02:00:00:00:00:0a >"$LAB_OUT/netconf-a.json"
lab_netconf "$vf_b" 02:00:00:00:00:0c >"$LAB_OUT/netconf-b.json"
echo "  netconf (Multus fills in deviceID from the allocation):"
jq -c 'del(.deviceID)' "$LAB_OUT/netconf-a.json" | sed 's/^/    /'
require "CNI ADD podA net1 <- $vf_a" cni ADD c-a podA net1 "$LAB_OUT/netconf-a.json"
require "CNI ADD podB net1 <- $vf_b" cni ADD c-b podB net1 "$LAB_OUT/netconf-b.json"
ip_a=$(cni_ip c-a)
ip_b=$(cni_ip c-b)
echo "  CNI result for podA: $(jq -c '{interfaces: [.interfaces[] | {name, mac, pciID}], ips: [.ips[].address]}' "$LAB_OUT/cni-add-c-a.json")"
show ip -n podA -br addr show net1
show ip -n podB -br addr show net1
an=$(altnames podA net1)$(altnames podB net1)
[ -z "$an" ] || echo "  (altnames the pods' net1 carry: $an)"
echo "  the PF's view: VLAN 100 and the pods' MACs on VF0 and VF1"
vf_table

section "podA ($ip_a) pings podB ($ip_b): VF to VF through the NIC's switch, VLAN 100"
show ip netns exec podA ping -c 3 -i 0.5 -W 3 "$ip_b"
require "podA reaches podB" ip netns exec podA ping -c 1 -W 3 "$ip_b"

section "A DPDK pod: dpdk-testpmd on the vfio-pci VF, started only from what Allocate gave it"
lab_netconf "$vf_d" 02:00:00:00:00:0b '{"trust": "on"}' >"$LAB_OUT/netconf-d.json"
make_pod podD
require "CNI ADD (DPDK mode) podD <- $vf_d" cni ADD c-d podD net1 "$LAB_OUT/netconf-d.json"
ip_d=$(cni_ip c-d)
echo "  DPDK mode: the VF stays on vfio-pci; the CNI set VLAN 100, MAC, trust on the PF and returned $ip_d"
echo "  the pod's environment (env -i + Allocate envs):"
jq -r '.pods.dpdk.envs | to_entries[] | "    \(.key)=\(.value)"' "$alloc"
echo "  the pod's /dev: null zero full random urandom tty, hugepages, $(jq -r '[.pods.dpdk.devices[].container_path] | join(" ")' "$alloc")"
t0=$(date +%s)
dpdk_pod_start "$alloc" dpdk lab.sriov.io/igb_dpdk "$LAB_OUT/testpmd.log"
wait_until 240 testpmd_forwarding "$LAB_OUT/testpmd.log" || {
  tail -n 30 "$LAB_OUT/testpmd.log" | sed 's/^/    | /'
  fail "testpmd did not start forwarding within 240 s"
}
grep -a -E 'dpdk-launcher: exec|Probe PCI driver|Port 0: ' "$LAB_OUT/testpmd.log" | sed 's/^/    | /' || true
echo "  testpmd forwarding after $(( $(date +%s) - t0 ))s (software emulation is slow)"
wait_until 90 ip netns exec podA ping -c 1 -W 2 "$ip_d" || fail "testpmd does not answer at $ip_d"
show ip netns exec podA ping -c 3 -i 0.5 -W 3 "$ip_d"
show ip -n podA neigh show "$ip_d"
sleep 6
echo "  testpmd's port statistics: RX-packets $(testpmd_stat "$LAB_OUT/testpmd.log" RX-packets), TX-packets $(testpmd_stat "$LAB_OUT/testpmd.log" TX-packets)"

section "Teardown: the DPDK pod stops, CNI DEL puts every VF back"
rc=0
dpdk_pod_stop || rc=$?
bye=$(grep -a -q 'Bye' "$LAB_OUT/testpmd.log" && echo "port closed, said Bye" || echo "no Bye in its log")
echo "  testpmd stopped on SIGINT (exit status $rc, $bye); hugepages free again: $(hugepages_free)/256"
require "CNI DEL podD" cni_del c-d podD net1 "$LAB_OUT/netconf-d.json"
require "CNI DEL podB" cni_del c-b podB net1 "$LAB_OUT/netconf-b.json"
require "CNI DEL podA" cni_del c-a podA net1 "$LAB_OUT/netconf-a.json"
names_after=$(for i in 0 1 2 3; do printf '%s ' "$(vf_netdev "$i")"; done)
echo "  the PF's VF lines before the pods:"
sed 's/^/    /' "$LAB_OUT/vf-before.txt"
echo "  and after DEL:"
vf_lines | sed 's/^/    /'
echo "  VF netdev names before: $names_before"
echo "                   after: $names_after"
require "VF settings restored exactly" compare_vf_state "$LAB_OUT/vf-before.txt"
require "VF netdevs home under their names" test "$names_before" = "$names_after"
rc=0
dp_stop || rc=$?
require "device plugin stopped cleanly" test "$rc" = 0

section "Done: provisioned, advertised, allocated, attached, pinged, DPDK answered, restored"
pass
