#!/bin/bash
# 10-provision-advertise: the device plugin provisions the NIC and advertises two pools.
# Must show:
#   - sriov-device-plugin with the shipped lab config (config-samples/igb-lab.json; its
#     "provision" section is [{"pf": "0000:01:00.0", "numVfs": 4, "linkUp": true, "vfDrivers":
#     [{"vfs": "0-2", "driver": "igbvf"}, {"vfs": "3", "driver": "vfio-pci"}]}], and the PF
#     address is checked against this guest's) brings the PF up (it starts down), creates 4 VFs,
#     binds VF3 to vfio-pci and leaves VF0-2 on igbvf;
#   - it advertises two pools: lab.sriov.io/igb_netdevice (drivers ["igbvf"]) and
#     lab.sriov.io/igb_dpdk (drivers ["vfio-pci"]);
#   - a test kubelet (Rust, from the sriov-tests crate, run in this guest) sees 3 Healthy devices
#     in the netdev pool and 1 Healthy device in the vfio pool through ListAndWatch;
#   - Allocate of the vfio VF returns the device spec /dev/vfio/<group> of VF3's IOMMU group,
#     and that node exists; the _INFO env names it;
#   - stopping the plugin and starting it again with the same config re-creates nothing:
#     sriov_numvfs is untouched (no write of 0: the VF netdevs keep their ifindexes), VF PCI
#     addresses, drivers, netdev names and MACs are the same, /dev/vfio/<group> is the same node
#     (no re-bind), and the plugin log says the PF was already provisioned.
# Everything under test is done by the product binary; the test reads state from sysfs.
# The steps are the test s10_provision_advertise in tests/tests/lab_dp.rs.
# lab-test-bin: sriov-tests lab_dp
# lab-timeout: 600
set -euo pipefail
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
lab_setup
modprobe vfio-pci

step "before: PF down, no VFs"
check "PF starts down" sh -c "! ip link show '$PF_IF' | grep -q '<.*,UP'"
check "no VFs yet" test "$(cat "$PF_SYS/sriov_numvfs")" = 0

step "run $LAB_TEST_LAB_DP s10_provision_advertise"
rc=0
run_lab_test "$LAB_TEST_LAB_DP" s10_provision_advertise || rc=$?
check "s10_provision_advertise passes" test "$rc" = 0

pass
