#!/usr/bin/env bash
# 80-dra: the device plugin in the DRA mode (deploy/components/dra), on the real kubelet,
# scheduler and Multus; the classic deployment is restored at the end.
# Must show:
#   - after `kubectl apply -k deploy/dra/` and the DRA overlay, the node's ResourceSlices list
#     the fake tree's 16 VFs and the classic resources are gone (allocatable 0 + 0);
#   - a pod with a ResourceClaimTemplate for "one vfio VF on NUMA node 1" and a ResourceClaim
#     for "a kernel VF on PF 0000:03:00.0" gets exactly such VFs (checked in the fake tree): the
#     kernel VF as net1 through Multus and `sriov` (the NAD names the ResourceClaim), the vfio
#     VF's nodes in the container through CDI; deleting the pod removes the claims' CDI specs
#     and device-info files, and the VF netdev comes home;
#   - a PF losing carrier taints exactly its VFs in the slice, and the kubelet shows the VF of a
#     pod holding one Unhealthy in the pod's status (DRA health stream); carrier back clears both;
#   - a ConfigMap change (the dpdk pool removed, then back) changes the slice;
#   - the driver SIGKILLed while the kubelet's NodePrepareResources call is in flight (process
#     stopped) comes back, the claim is prepared once, and deleting the pod leaves no claim in
#     the checkpoint and no CDI spec;
#   - the kubelet restarted: the driver registers again and the node's 16 devices are published;
#   - pod-ready time, 10 pods with one kernel VF each, DRA against the classic device plugin.
# Helpers below are called through check/require/wait_for; jq programs use $vars.
# shellcheck disable=SC2317,SC2016
set -euo pipefail
# shellcheck source=tests/node/scenario-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scenario-lib.sh"

DRV=sriov.arm.com
CDI=/var/run/cdi
DEVINFO=/var/run/k8s.cni.cncf.io/devinfo/dp
CHECKPOINT=/var/lib/kubelet/plugins/$DRV/checkpoint.json

devs() {
  kc get resourceslices -o json |
    jq -c --arg d "$DRV" '[.items[] | select(.spec.driver == $d) | .spec.devices[]?]'
}
ndevs_is() { [ "$(devs | jq length)" = "$1" ]; }
# tainted_is PREFIX N: N devices whose name starts with PREFIX carry our taint.
tainted_is() {
  devs | jq -e --arg p "$1" --argjson n "$2" \
    '[.[] | select(.name | startswith($p)) | select((.taints // []) | any(.key == "sriov.arm.com/unhealthy"))] | length == $n'
}
dra_pod() {
  kc -n kube-system get pod -l app.kubernetes.io/name=sriov-device-plugin -o json |
    jq -r '[.items[] | select(.metadata.deletionTimestamp == null)
      | select(.spec.containers[0].args | index("--mode=dra"))] | last | .metadata.name // empty'
}
dra_registered() {
  local p log
  p=$(dra_pod)
  [ -n "$p" ] || return 1
  log=$(kc -n kube-system logs "$p")
  grep -q 'registered with the kubelet as a DRA driver' <<<"$log"
}
# claim_of POD CLAIM: the ResourceClaim object's name behind the pod's claim CLAIM.
claim_of() {
  kc get pod "$1" -o json | jq -r --arg c "$2" '.status.resourceClaimStatuses[] | select(.name == $c) | .resourceClaimName'
}
# device_of CLAIMOBJ: the device allocated to it, as a PCI address.
device_of() {
  kc get resourceclaim "$1" -o json | jq -r '.status.allocation.devices.results[0].device' |
    sed -E 's/^([0-9a-f]{4})-([0-9a-f]{2})-([0-9a-f]{2})-([0-7])$/\1:\2:\3.\4/'
}
tree() { innode cat "$NODE_SYSFS/bus/pci/devices/$1/$2"; }
tree_link() { innode readlink "$NODE_SYSFS/bus/pci/devices/$1/$2" | sed 's|.*/||'; }
cdi_specs() { innode sh -c "ls -1 $CDI/sriov-dra-*.json 2>/dev/null | wc -l"; }
cdi_specs_is() { [ "$(cdi_specs)" = "$1" ]; }

# --- DRA mode on ----------------------------------------------------------------------------
step "deploy/dra/ (DeviceClasses, RBAC) and the DRA overlay"
require "kubectl apply -k deploy/dra/" kc apply -k "$NODE_REPO/deploy/dra"
t=$(date +%s.%N)
require "kubectl apply -k tests/node/overlay-dra" kc apply -k "$NODE_HERE/overlay-dra"
require "the DaemonSet rolls out in DRA mode" kc -n kube-system rollout status daemonset/sriov-device-plugin --timeout=120s
check "16 VFs in the node's ResourceSlices within 60 s" wait_for 60 "16 devices" ndevs_is 16
note "overlay applied -> 16 devices published in $(since "$t")s"
check "the DRA driver registered with the kubelet" wait_for 30 "registration" dra_registered
check "classic resources gone: allocatable 0 + 0" wait_for 60 "allocatable 0 0" alloc_is 0 0
devs >"$SCEN_OUT/devices.json"
check "no device tainted" tainted_is 0000 0

# --- a pod with two claims -------------------------------------------------------------------
step "claims: a vfio VF on NUMA node 1 (template), a kernel VF on PF 0000:03:00.0 (named claim)"
claims() {
  cat <<'EOF'
apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {name: vfio-numa1}
spec:
  spec:
    devices:
      requests:
        - name: vf
          exactly:
            deviceClassName: vf-vfio.sriov.arm.com
            selectors:
              - cel: {expression: 'has(device.attributes["sriov.arm.com"].numaNode) && device.attributes["sriov.arm.com"].numaNode == 1'}
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {name: kernel-any}
spec:
  spec:
    devices:
      requests:
        - name: vf
          exactly: {deviceClassName: vf-kernel.sriov.arm.com}
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: net1-pf0}
spec:
  devices:
    requests:
      - name: vf
        exactly:
          deviceClassName: vf-kernel.sriov.arm.com
          selectors:
            - cel: {expression: 'device.attributes["sriov.arm.com"].pfPciAddress == "0000:03:00.0"'}
EOF
}
require "claims and templates created" kc apply -f - < <(claims)
# The example NAD without its PF-side settings (a veth PF has no VF table), naming our claim.
dra_nad() {
  kc create --dry-run=client -o json -f "$NODE_REPO/deploy/dra/examples/nad-sriov-dra-net1.yaml" |
    jq '.metadata.annotations["k8s.v1.cni.cncf.io/resourceName"] = "net1-pf0"
      | .spec.config |= (fromjson | del(.vlan, .spoofchk, .trust) | tojson)'
}
require "NAD sriov-dra-net1 (resourceName net1-pf0)" kc apply -f - < <(dra_nad)

# dra_pod_manifest NAME NETS CLAIMS...: CLAIMS are name=template or name=@claim.
dra_pod_manifest() {
  local name=$1 nets=$2
  shift 2
  printf '%s\n' "$@" | jq -R . | jq -s --arg name "$name" --arg nets "$nets" '{
    apiVersion: "v1", kind: "Pod",
    metadata: ({name: $name, labels: {"sriov-node-test": "1"}}
      + (if $nets == "" then {} else {annotations: {"k8s.v1.cni.cncf.io/networks": $nets}} end)),
    spec: {automountServiceAccountToken: false, terminationGracePeriodSeconds: 5,
      resourceClaims: map(split("=") | if (.[1] | startswith("@"))
        then {name: .[0], resourceClaimName: .[1][1:]} else {name: .[0], resourceClaimTemplateName: .[1]} end),
      containers: [{name: "app", image: "localhost/busybox:node",
        command: ["sh", "-c", "trap '"'"'exit 0'"'"' TERM; sleep 100000 & wait"],
        resources: {claims: map(split("=") | {name: .[0]})}}]}}'
}

step "pod-dra: both claims, network sriov-dra-net1"
require "pod-dra Ready" apply_ready pod-dra < <(dra_pod_manifest pod-dra sriov-dra-net1 net=@net1-pf0 dpdk=vfio-numa1)
net_vf=$(device_of net1-pf0)
dpdk_claim=$(claim_of pod-dra dpdk)
dpdk_vf=$(device_of "$dpdk_claim")
note "kernel VF (claim net1-pf0): $net_vf; vfio VF (claim $dpdk_claim): $dpdk_vf"
check "the kernel VF is on PF 0000:03:00.0 in the tree" test "$(tree_link "$net_vf" physfn)" = 0000:03:00.0
check "the kernel VF is bound to bnxt_en in the tree" test "$(tree_link "$net_vf" driver)" = bnxt_en
check "the vfio VF is on NUMA node 1 in the tree" test "$(tree "$dpdk_vf" numa_node)" = 1
check "the vfio VF is bound to vfio-pci in the tree" test "$(tree_link "$dpdk_vf" driver)" = vfio-pci
group=$(tree_link "$dpdk_vf" iommu_group)
vfio=$(kc exec pod-dra -- ls -l /dev/vfio/ || true)
note "container /dev/vfio: $(echo "$vfio" | tr -s ' \n' ' ')"
check "/dev/vfio/$group is a device node in the container" grep -Eq "^c.* $group\$" <<<"$vfio"
check "/dev/vfio/vfio is a device node in the container" grep -Eq '^c.* vfio$' <<<"$vfio"
envname=PCIDEVICE_SRIOV_ARM_COM_VF_$(tr ':.' '__' <<<"$dpdk_vf")
check "$envname=$dpdk_vf in the container (CDI)" test "$(podenv pod-dra "$envname" || true)" = "$dpdk_vf"
mac=$(printf '02:00:00:%s:10:0%s' "${net_vf:5:2}" "${net_vf: -1}")
check "net1 in the pod is $net_vf (MAC $mac)" test "$(kc exec pod-dra -- cat /sys/class/net/net1/address || true)" = "$mac"
net1_is() { net1_status pod-dra | jq -e --arg vf "$1" '.["device-info"].pci["pci-address"] == $vf'; }
check "network-status: net1 with device-info of $net_vf" net1_is "$net_vf"
check "2 CDI specs (one per claim) on the node" cdi_specs_is 2
check "device-info under the claim's name for Multus" innode test -f "$DEVINFO/net1-pf0-$net_vf-device.json"

step "delete pod-dra"
require "pod-dra deleted" gone pod-dra
check "CDI specs removed" wait_for 30 "no CDI spec" cdi_specs_is 0
check "claim device-info removed" innode test ! -e "$DEVINFO/net1-pf0-$net_vf-device.json"
claim_gone() { ! kc get resourceclaim "$1" >/dev/null 2>&1; }
check "the template's claim deleted" wait_for 30 "claim $dpdk_claim gone" claim_gone "$dpdk_claim"
check "every VF netdev home" vfs_home
check "no CNI state, IPAM lease or Multus cache left" cni_state_clean

# --- health -------------------------------------------------------------------------------------
step "pod-health holds a vfio VF of PF 0000:04:00.0; the PF loses carrier (wire4 down)"
require "pod-health Ready" apply_ready pod-health < <(dra_pod_manifest pod-health "" dpdk=vfio-numa1)
# health_is H: the kubelet shows every device of pod-health's claims as H (DRA health stream,
# status.containerStatuses[].allocatedResourcesStatus).
health_is() {
  kc get pod pod-health -o json |
    jq -e --arg h "$1" '[.status.containerStatuses[0].allocatedResourcesStatus[]?.resources[]?.health] | length > 0 and all(. == $h)'
}
check "pod-health's VF Healthy in its status" wait_for 30 "Healthy in the pod status" health_is Healthy
innode ip link set wire4 down
check "8 tainted on 0000-04" wait_for 30 "8 taints" tainted_is 0000-04 8
check "none tainted on 0000-03" tainted_is 0000-03 0
check "pod-health's VF Unhealthy in its status" wait_for 30 "Unhealthy in the pod status" health_is Unhealthy
kc get pod pod-health -o json | jq '.status.containerStatuses[0].allocatedResourcesStatus' >"$SCEN_OUT/health-down.json" || true
innode ip link set wire4 up
check "carrier back: no taint" wait_for 30 "no taints" tainted_is 0000 0
check "pod-health's VF Healthy again" wait_for 30 "Healthy again" health_is Healthy
require "pod-health deleted" gone pod-health

# --- config ---------------------------------------------------------------------------------------
step "ConfigMap without the dpdk pool, then back"
kc -n kube-system get configmap sriovdp-config -o json >"$SCEN_OUT/configmap.json"
without_dpdk() {
  jq 'del(.metadata.resourceVersion, .metadata.uid, .metadata.creationTimestamp, .metadata.managedFields)
    | .data["config.json"] |= (fromjson | .resourceList |= map(select(.resourceName != "ps225_dpdk")) | tojson)' \
    "$SCEN_OUT/configmap.json" | kc apply -f -
}
original() {
  jq 'del(.metadata.resourceVersion, .metadata.uid, .metadata.creationTimestamp, .metadata.managedFields)' \
    "$SCEN_OUT/configmap.json" | kc apply -f -
}
t=$(date +%s.%N)
require "ConfigMap applied without ps225_dpdk" without_dpdk
check "12 devices within 120 s" wait_for 120 "12 devices" ndevs_is 12
note "ConfigMap edit -> slice changed in $(since "$t")s"
no_vfio() { devs | jq -e 'all(.[]; .attributes.driver.string != "vfio-pci")'; }
check "no vfio VF published" no_vfio
require "original ConfigMap applied" original
check "16 devices again within 120 s" wait_for 120 "16 devices" ndevs_is 16

# --- the driver killed mid-prepare --------------------------------------------------------------
step "driver stopped, pod-crash scheduled (its prepare call hangs), driver SIGKILLed"
p=$(dra_pod)
cid=$(kc -n kube-system get pod "$p" -o jsonpath='{.status.containerStatuses[0].containerID}')
cid=${cid#containerd://}
pid=$(innode ctr -n k8s.io task ls | awk -v c="$cid" '$1 == c { print $2 }')
note "driver pod $p, container ${cid:0:12}, pid $pid"
require "driver process found" test -n "$pid"
kill -STOP "$pid"
kc apply -f - < <(dra_pod_manifest pod-crash "" dpdk=vfio-numa1) >/dev/null
crash_scheduled() { kc get pod pod-crash -o json | jq -e '.spec.nodeName != null and (.status.resourceClaimStatuses | length) == 1'; }
check "pod-crash scheduled with its claim" wait_for 60 "pod-crash scheduled" crash_scheduled
sleep 3
kill -KILL "$pid"
t=$(date +%s.%N)
check "pod-crash Ready after the driver's restart" kc wait --for=condition=Ready pod/pod-crash --timeout=120s
note "SIGKILL -> pod-crash Ready in $(since "$t")s"
crash_claim=$(claim_of pod-crash dpdk)
prepared_once() { innode cat "$CHECKPOINT" | jq -e --arg n "$crash_claim" '[.claims[] | select(.name == $n)] | length == 1 and .[0].state == "prepared"'; }
check "the checkpoint holds claim $crash_claim once, prepared" prepared_once
require "pod-crash deleted" gone pod-crash
no_claims() { innode cat "$CHECKPOINT" | jq -e '.claims | length == 0'; }
check "checkpoint empty after the pod is gone" wait_for 30 "empty checkpoint" no_claims
check "no CDI spec left" wait_for 30 "no CDI spec" cdi_specs_is 0

# --- the kubelet restarted ------------------------------------------------------------------------
step "restart the kubelet (it deletes the node's slices at its start; its plugin watcher registers us again)"
dra_registrations() { local log; log=$(kc -n kube-system logs "$(dra_pod)"); grep -c 'registered with the kubelet as a DRA driver' <<<"$log" || true; }
more_registrations() { [ "$(dra_registrations)" -gt "$1" ]; }
slice_uids() { kc get resourceslices -o json | jq -r --arg d "$DRV" '[.items[] | select(.spec.driver == $d) | .metadata.uid] | sort | join(",")'; }
regs0=$(dra_registrations)
uids0=$(slice_uids)
t=$(date +%s.%N)
stop kubelet TERM
start_daemon kubelet
require "node Ready again" wait_for 120 "node Ready" node_ready
check "the driver registered again" wait_for 60 "a new registration" more_registrations "$regs0"
check "16 devices in the slices within 90 s" wait_for 90 "16 devices" ndevs_is 16
note "kubelet restart -> 16 devices in $(since "$t")s; slices $( [ "$(slice_uids)" = "$uids0" ] && echo "kept" || echo "deleted by the kubelet and published again")"

# --- pod-ready time ------------------------------------------------------------------------------
# burst MODE: 10 pods with one kernel VF each in one apply; each pod's apply -> Ready (one
# `kubectl wait` per pod, all at once, so a slow pod does not delay the others' figures) to
# $SCEN_OUT/ready-MODE.
burst() {
  local mode=$1 i names=() t
  for i in $(seq 1 10); do names+=("$mode-$i"); done
  t=$(date +%s.%N)
  for i in "${names[@]}"; do
    if [ "$mode" = dra ]; then dra_pod_manifest "$i" "" vf=kernel-any; else pod "$i" "" "$NETDEV"; fi
  done | kc apply -f - >/dev/null
  for i in "${names[@]}"; do
    (kc wait --for=condition=Ready "pod/$i" --timeout=180s >/dev/null && echo "$i $(since "$t")" >>"$SCEN_OUT/ready-$mode") &
  done
  wait
  [ "$(wc -l <"$SCEN_OUT/ready-$mode")" = 10 ] || return 1
  gone "${names[@]}"
}
pct() { sort -n | awk '{ v[NR] = $1 } END { i50 = int((NR + 1) / 2); i95 = int(NR * 0.95 + 0.999); printf "p50 %.1fs p95 %.1fs max %.1fs", v[i50], v[i95], v[NR] }'; }
step "10 pods with one kernel VF each through DRA"
check "10 DRA pods Ready" burst dra
note "DRA: $(awk '{ print $2 }' "$SCEN_OUT/ready-dra" | pct)"

# --- back to the classic mode -------------------------------------------------------------------
step "back to the classic deployment"
kc delete resourceclaim net1-pf0 --ignore-not-found >/dev/null
kc delete resourceclaimtemplate vfio-numa1 kernel-any --ignore-not-found >/dev/null
kc delete network-attachment-definition sriov-dra-net1 --ignore-not-found >/dev/null
require "kubectl apply -k tests/node/overlay" kc apply -k "$NODE_HERE/overlay"
require "the DaemonSet rolls out in classic mode" kc -n kube-system rollout status daemonset/sriov-device-plugin --timeout=120s
check "the DRA driver deleted its slices" wait_for 60 "no devices" ndevs_is 0
check "allocatable 12 + 4 again" wait_for 60 "allocatable 12 4" alloc_is 12 4
check "both pools registered" wait_for 60 "registrations" registered "$(plugin_pod)"
step "10 pods with one kernel VF each through the classic device plugin"
check "10 classic pods Ready" burst classic
note "classic: $(awk '{ print $2 }' "$SCEN_OUT/ready-classic" | pct)"
finish
