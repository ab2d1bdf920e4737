#!/usr/bin/env bash
# 30-dpdk: a DPDK pod with a vfio VF.
# Must show:
#   - a pod of our image requesting arm.com/ps225_dpdk: 1 with network sriov-dpdk (from
#     deploy/examples) becomes Ready;
#   - PCIDEVICE_ARM_COM_PS225_DPDK names one vfio VF, and ..._INFO its vfio group node;
#   - /dev/vfio/<group of that VF> and /dev/vfio/vfio are device nodes inside the container;
#   - dpdk-launcher.sh (in the image) turns that environment into the EAL allow-list;
#   - Multus records the attachment with the VF's PCI address; deleting the pod leaves no state.
# CDI: containerd 1.6 (Debian bookworm) has no CDI support, so a --cdi plugin's cdi_devices
# would be dropped by the runtime; this node tests the device-spec path (docs/node.md).
# Helpers below are called through check/require/wait_for; jq programs use $vars.
# shellcheck disable=SC2317,SC2016
set -euo pipefail
# shellcheck source=tests/node/scenario-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scenario-lib.sh"

step "pod-dpdk: $DPDK: 1 + network sriov-dpdk, image $NODE_IMAGE"
launcher="trap 'exit 0' TERM
/usr/bin/dpdk-launcher.sh --resource $DPDK --print -- dpdk-testpmd -l 0-1 -n 2 --in-memory -- --forward-mode=icmpecho
sleep 100000 & wait"
require "pod-dpdk Ready" apply_ready pod-dpdk < <(pod pod-dpdk sriov-dpdk "$DPDK" "$NODE_IMAGE" "$launcher")
vf=$(podenv pod-dpdk PCIDEVICE_ARM_COM_PS225_DPDK || true)
note "allocated VF: ${vf:-none}"
require "PCIDEVICE_ARM_COM_PS225_DPDK is one vfio VF" grep -Eqx '0000:0[34]:10\.[67]' <<<"$vf"
group=$(innode readlink "$NODE_SYSFS/bus/pci/devices/$vf/iommu_group")
group=${group##*/}
info=$(podenv pod-dpdk PCIDEVICE_ARM_COM_PS225_DPDK_INFO || true)
note "info: $info"
check "..._INFO names /dev/vfio/$group for $vf" \
  jq -e --arg vf "$vf" --arg g "/dev/vfio/$group" '.[$vf].vfio["dev-mount"] == $g and .[$vf].vfio.mount == "/dev/vfio/vfio"' <<<"$info"
devs=$(kc exec pod-dpdk -- ls -l /dev/vfio/ || true)
note "container /dev/vfio: $(echo "$devs" | tr -s ' \n' ' ')"
check "/dev/vfio/$group is a device node in the container" grep -Eq "^c.* $group\$" <<<"$devs"
check "/dev/vfio/vfio is a device node in the container" grep -Eq '^c.* vfio$' <<<"$devs"
others=$(echo "$devs" | awk '/^c/ { print $NF }' | grep -vx -e vfio -e "$group" || true)
check "no other VF's group in the container" test -z "$others"
launcher_line() { local log; log=$(kc logs pod-dpdk 2>&1); grep -F 'dpdk-testpmd' <<<"$log" | tail -n1; }
wait_for 10 "the launcher's output" launcher_line || true
line=$(launcher_line || true)
note "launcher: $line"
check "dpdk-launcher.sh allow-lists $vf" grep -Fq -- "dpdk-testpmd -l 0-1 -n 2 --in-memory -a $vf -- --forward-mode=icmpecho" <<<"$line"
dpdk_status() {
  kc get pod pod-dpdk -o json | jq -e --arg vf "$1" '.metadata.annotations["k8s.v1.cni.cncf.io/network-status"]
    | fromjson | map(select(.name == "default/sriov-dpdk")) | .[0]["device-info"].pci["pci-address"] == $vf'
}
check "network-status names sriov-dpdk with $vf" dpdk_status "$vf"

step "delete pod-dpdk"
require "pod-dpdk deleted" gone pod-dpdk
check "no CNI state, IPAM lease or Multus cache left" cni_state_clean
finish
