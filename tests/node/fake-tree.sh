#!/usr/bin/env bash
# The node's SR-IOV hardware stand-in (run by up.sh; docs/node.md): the PS225-like fake sysfs
# tree at $NODE_SYSFS with its netdevs as veths in the node's network namespace
# (fake-sriov-node), and /dev/vfio nodes for the vfio-bound VFs' IOMMU groups.
# The vfio stand-ins carry /dev/null's device numbers: the runtime can put them into a
# container like the real ones, and opening one does nothing.
set -euo pipefail
# shellcheck source=tests/node/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

node_is_up || die "fake-tree: the node is not up"
innode "$NODE_REPO/target/debug/fake-sriov-node" --root "$NODE_SYSFS"
# shellcheck disable=SC2016 # expanded inside the node
innode sh -euc '
  sys=$1
  mkdir -p /dev/vfio
  [ -e /dev/vfio/vfio ] || mknod -m 0666 /dev/vfio/vfio c 1 3
  for d in "$sys"/bus/pci/drivers/vfio-pci/../../devices/*; do
    [ "$(basename "$(readlink "$d/driver" 2>/dev/null)")" = vfio-pci ] || continue
    g=$(basename "$(readlink "$d/iommu_group")")
    [ -e "/dev/vfio/$g" ] || mknod -m 0660 "/dev/vfio/$g" c 1 3
    echo "vfio stand-in /dev/vfio/$g for $(basename "$d")"
  done
' _ "$NODE_SYSFS"
