#!/bin/bash
# 50-health: device health follows the PF link.
# Must show:
#   - the device plugin (provision 4 VFs on the PF named by its netdev, VF3 vfio-pci, the two lab
#     pools lab.sriov.io/igb_netdevice and lab.sriov.io/igb_dpdk) and the test kubelet see all
#     devices Healthy;
#   - `ip link set $PF_IF down`: within 30 s ListAndWatch sends an update in which every device
#     of the netdev pool is Unhealthy, and (docs/CONTRACT.md: a VF behind a down PF is unhealthy
#     whatever its pool) the vfio pool's VF too;
#   - `ip link set $PF_IF up`: every device is Healthy again within 60 s;
#   - twice in a row, with the measured latencies printed; the plugin keeps running and
#     registers once per pool.
# Measured in this lab (docs/lab.md): the PF's own carrier is always up (the hub port has no
# cable), so "link down" is the admin state; an up igbvf netdev loses carrier about 3 s after the
# PF goes down and regains it about 11 s after the PF comes back. Health follows the PF's link,
# not the VF's carrier.
# The steps are the test s50_health in tests/tests/lab_dp.rs.
# lab-test-bin: sriov-tests lab_dp
# lab-timeout: 600
set -euo pipefail
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
lab_setup
modprobe vfio-pci

step "run $LAB_TEST_LAB_DP s50_health"
rc=0
run_lab_test "$LAB_TEST_LAB_DP" s50_health || rc=$?
check "s50_health passes" test "$rc" = 0

pass
