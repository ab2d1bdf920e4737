#!/usr/bin/env bash
# 35-dpdk-cdi: the DPDK pod again, with the plugin's --cdi turned on by a user's kubectl patch.
# Must show, with containerd 2 (the node's default runtime):
#   - the plugin restarted by the DaemonSet writes one CDI spec per pool to /var/run/cdi and
#     registers both pools; allocatable 12 + 4;
#   - a DPDK pod gets /dev/vfio/<group> through CDI: the runtime applied the spec's edits (the
#     spec's per-device variable PCIDEVICE_ARM_COM_PS225_DPDK_<address> is in the container,
#     which only the CDI spec sets), and the launcher finds its device;
#   - --cdi removed again: the specs are gone once the plugin stops writing them.
# With containerd 1.6 (SRIOV_NODE_RUNTIME=containerd1.6, no CDI) it shows the documented
# limitation instead: the runtime drops the CDI devices, the container has no /dev/vfio/<group>
# and dpdk-launcher.sh says so.
# Helpers below are called through check/require/wait_for; jq programs use $vars.
# shellcheck disable=SC2317,SC2016
set -euo pipefail
# shellcheck source=tests/node/scenario-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scenario-lib.sh"

args() { kc -n kube-system get ds sriov-device-plugin -o json | jq -c '.spec.template.spec.containers[0].args'; }
# rolled: the DaemonSet rolled out and the new plugin registered both pools.
rolled() {
  kc -n kube-system rollout status ds/sriov-device-plugin --timeout=120s || return 1
  wait_for 30 "both pools registered" registered "$(plugin_pod)"
}
specs() { innode sh -c 'ls /var/run/cdi/sriov-dp-*.json 2>/dev/null' || true; }

step "kubectl patch: the device plugin with --cdi"
t=$(date +%s.%N)
require "DaemonSet patched" kc -n kube-system patch ds sriov-device-plugin --type=json \
  -p '[{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--cdi"}]'
require "rolled out, both pools registered" rolled
check "allocatable 12 + 4 within 30 s" wait_for 30 "allocatable 12 + 4" alloc_is 12 4
note "patch -> rolled out, 12 + 4 in $(since "$t")s"
spec_files() { [ "$(specs | wc -l)" = 2 ]; }
check "one CDI spec per pool in /var/run/cdi" wait_for 10 "2 CDI specs" spec_files
note "specs: $(specs | tr '\n' ' ')"

step "pod-cdi: $DPDK: 1 + network sriov-dpdk"
launcher="trap 'exit 0' TERM
/usr/bin/dpdk-launcher.sh --resource $DPDK --print -- dpdk-testpmd -l 0-1 -- --forward-mode=io
sleep 100000 & wait"
require "pod-cdi Ready" apply_ready pod-cdi < <(pod pod-cdi sriov-dpdk "$DPDK" "$NODE_IMAGE" "$launcher")
vf=$(podenv pod-cdi PCIDEVICE_ARM_COM_PS225_DPDK || true)
note "allocated VF: ${vf:-none}"
require "PCIDEVICE_ARM_COM_PS225_DPDK is one vfio VF" grep -Eqx '0000:0[34]:10\.[67]' <<<"$vf"
group=$(innode readlink "$NODE_SYSFS/bus/pci/devices/$vf/iommu_group")
group=${group##*/}
marker=PCIDEVICE_ARM_COM_PS225_DPDK_$(tr ':.' '__' <<<"$vf")
devs=$(kc exec pod-cdi -- ls /dev/vfio/ 2>/dev/null | tr '\n' ' ' || true)
# The launcher's verdict: the command line it built, or the node it found missing (its
# hugepages warning comes first and is neither).
launcher_line() { local log; log=$(kc logs pod-cdi 2>&1); grep -E 'dpdk-testpmd|is missing' <<<"$log" | tail -n1; }
wait_for 10 "the launcher's output" launcher_line || true
line=$(launcher_line || true)
note "container /dev/vfio: ${devs:-nothing}; launcher: $line"
if [ "$NODE_RUNTIME" = containerd2 ]; then
  check "the runtime applied the CDI spec ($marker set)" podenv pod-cdi "$marker"
  both_nodes() { grep -qw "$group" <<<"$devs" && grep -qw vfio <<<"$devs"; }
  check "/dev/vfio/$group and /dev/vfio/vfio in the container" both_nodes
  check "dpdk-launcher.sh allow-lists $vf" grep -Fq -- "-a $vf" <<<"$line"
else
  no_marker() { ! podenv pod-cdi "$marker"; }
  check "containerd 1.6 ignores CDI: no $marker" no_marker
  no_group() { ! grep -qw "$group" <<<"$devs"; }
  check "containerd 1.6 ignores CDI: no /dev/vfio/$group in the container" no_group
  check "dpdk-launcher.sh reports the missing group node" grep -q "/dev/vfio/$group" <<<"$line"
fi
require "pod-cdi deleted" gone pod-cdi

step "kubectl patch: --cdi removed"
i=$(args | jq 'index("--cdi")')
t=$(date +%s.%N)
require "DaemonSet patched" kc -n kube-system patch ds sriov-device-plugin --type=json \
  -p "[{\"op\": \"test\", \"path\": \"/spec/template/spec/containers/0/args/$i\", \"value\": \"--cdi\"},
       {\"op\": \"remove\", \"path\": \"/spec/template/spec/containers/0/args/$i\"}]"
require "rolled out, both pools registered" rolled
check "allocatable 12 + 4 within 30 s" wait_for 30 "allocatable 12 + 4" alloc_is 12 4
no_specs() { [ -z "$(specs)" ]; }
check "no CDI spec left in /var/run/cdi" wait_for 10 "no CDI specs" no_specs
note "patch -> rolled out, 12 + 4 in $(since "$t")s; specs left: $(specs | tr '\n' ' ')"
check "no CNI state, IPAM lease or Multus cache left" cni_state_clean
finish
