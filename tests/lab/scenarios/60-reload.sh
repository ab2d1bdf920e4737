#!/bin/bash
# 60-reload: a config change of numVfs is applied live, but never under a pod.
# Must show:
#   - the device plugin running with provision numVfs 4 (VF3 vfio-pci, the two lab pools) and the
#     test kubelet seeing 3 + 1 devices;
#   - the config file rewritten (write-then-rename) with numVfs 6 while nothing is allocated:
#     without a restart (same pid, no re-registration) the plugin re-creates the VFs (igb needs
#     sriov_numvfs 0 first) and advertises the new devices (5 + 1), all Healthy;
#   - VF0 allocated and moved into a pod by the sriov CNI ADD (vlan 100, an IP from host-local),
#     then the config rewritten with numVfs 4: the change is refused with a clear message in the
#     plugin log (naming the VF in use and saying it is in a pod), sriov_numvfs stays 6, the pod's
#     VF keeps its netdev, IP and PF-side settings, the advertised devices do not change, and the
#     running pool still serves (Allocate of VF1 succeeds);
#   - the kernel would not have protected the pod: with the plugin stopped, writing 0 to
#     sriov_numvfs succeeds while VF0 is inside the pod, and the pod loses its interface
#     (docs/lab.md), so the refusal came from the plugin.
# The steps are the test s60_reload in tests/tests/lab_dp.rs.
# lab-test-bin: sriov-tests lab_dp
# lab-timeout: 600
set -euo pipefail
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
lab_setup
modprobe vfio-pci

step "run $LAB_TEST_LAB_DP s60_reload"
rc=0
run_lab_test "$LAB_TEST_LAB_DP" s60_reload || rc=$?
check "s60_reload passes" test "$rc" = 0

pass
