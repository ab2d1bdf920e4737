#!/bin/bash
# 05-discovery: the shared crate's discovery against a real kernel. Raw helpers set up an igb PF
# with 4 VFs (VF3 on vfio-pci); the Rust test binary tests/tests/lab_discovery.rs, built on the
# host and run here, must find exactly that.
# lab-test-bin: sriov-tests lab_discovery
set -euo pipefail
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
lab_setup

step "set up: 4 VFs, VF3 on vfio-pci (raw helpers)"
create_vfs 4
bind_vfio "$(vf_pci 3)"
note "VF3 $(vf_pci 3) in IOMMU group $VFIO_GROUP"

step "run $LAB_TEST_LAB_DISCOVERY"
# shellcheck disable=SC2317 # called through check
run_test() { "$LAB_TEST_LAB_DISCOVERY" --nocapture --test-threads 1 >"$LAB_OUT/lab_discovery.txt" 2>&1; }
check "lab_discovery test passes" run_test
check "lab_discovery ran a test" lab_tests_ran "$LAB_OUT/lab_discovery.txt"
sed 's/^/    /' "$LAB_OUT/lab_discovery.txt"

pass
