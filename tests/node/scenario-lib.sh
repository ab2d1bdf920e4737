# shellcheck shell=bash
# Helpers for the node scenarios (tests/node/scenarios/*.sh, run by tests/node/run.sh):
#
#   . "$NODE_HERE/scenario-lib.sh"
#   step "what happens next"
#   check "net1 has an address" pod_has_addr pod-a net1
#   ready pod-a                      # apply -> Ready, timed and recorded
#   finish                           # exit 0 when every check passed
#
# A scenario runs against the node tests/node/up.sh started, in namespace default.
# shellcheck source=tests/node/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/node/daemons.sh
. "$NODE_HERE/daemons.sh"

SCEN_OUT=${SCEN_OUT:-$NODE_DIR/scenario}
mkdir -p "$SCEN_OUT"
_fails=()
_scen_t0=$(date +%s.%N)

NETDEV=arm.com/ps225_sriov_netdevice
DPDK=arm.com/ps225_dpdk

step() { printf '[%6ss] == %s\n' "$(since "$_scen_t0")" "$*"; }
note() { printf '[%6ss]    %s\n' "$(since "$_scen_t0")" "$*"; }

# check DESC CMD...: run CMD; print ok or FAIL (with its output) and remember a failure.
check() {
  local desc=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" = 0 ]; then
    note "ok   $desc"
  else
    note "FAIL $desc"
    [ -z "$out" ] || printf '%s\n' "$out" | tail -n 15 | sed 's/^/           | /'
    _fails+=("$desc")
  fi
  return 0
}

# require DESC CMD...: like check, but the scenario stops here when CMD fails.
require() {
  local n=${#_fails[@]}
  check "$@"
  [ ${#_fails[@]} = "$n" ] || finish
}

# finish: the scenario's result (exit status), naming the failed checks.
finish() {
  if [ ${#_fails[@]} -gt 0 ]; then
    echo "failed checks: $(IFS=';'; echo "${_fails[*]}")" >"$SCEN_OUT/failed"
    exit 1
  fi
  exit 0
}

# --- pods ----------------------------------------------------------------------------------------

# pod NAME [NETWORKS] [RESOURCE [IMAGE [COMMAND]]]: a pod manifest on stdout. The default
# command exits promptly on SIGTERM, so deletions do not wait out a grace period.
pod() {
  local name=$1 nets=${2:-} res=${3:-} image=${4:-localhost/busybox:node}
  local cmd=${5:-"trap 'exit 0' TERM; sleep 100000 & wait"}
  jq -n --arg name "$name" --arg nets "$nets" --arg res "$res" --arg image "$image" --arg cmd "$cmd" '{
    apiVersion: "v1", kind: "Pod",
    metadata: ({name: $name, labels: {"sriov-node-test": "1"}}
      + (if $nets == "" then {} else {annotations: {"k8s.v1.cni.cncf.io/networks": $nets}} end)),
    spec: {automountServiceAccountToken: false, terminationGracePeriodSeconds: 5,
      containers: [{name: "app", image: $image, command: ["sh", "-c", $cmd],
        resources: (if $res == "" then {} else {requests: {($res): "1"}, limits: {($res): "1"}} end)}]}}'
}

# apply_ready NAME... < MANIFESTS: kubectl apply, then wait for the pods to be Ready; each
# one's time from the apply to Ready (as `kubectl wait` saw it) goes to $SCEN_OUT/ready.
apply_ready() {
  local p t
  t=$(date +%s.%N)
  kc apply -f - >/dev/null
  for p in "$@"; do
    kc wait --for=condition=Ready "pod/$p" --timeout=120s >/dev/null || {
      kc describe pod "$p" | tail -n 25
      return 1
    }
    echo "$p $(since "$t")" >>"$SCEN_OUT/ready"
  done
}

# gone NAME...: delete pods and wait until they are gone.
gone() {
  kc delete pod "$@" --ignore-not-found --wait=true --timeout=120s >/dev/null
}

# podenv POD VAR: a variable of the pod's container.
podenv() { kc exec "$1" -- env | sed -n "s/^$2=//p" | grep .; }

# net1_status POD: the network-status annotation's entry for net1 (JSON).
net1_status() {
  kc get pod "$1" -o json |
    jq -ce '.metadata.annotations["k8s.v1.cni.cncf.io/network-status"] | fromjson | .[] | select(.interface == "net1")'
}

# --- the node --------------------------------------------------------------------------------

# alloc RESOURCE: the node's allocatable count (0 when absent).
alloc() { kc get node "$NODE_NAME" -o json | jq -r --arg r "$1" '.status.allocatable[$r] // "0"'; }

# alloc_is NETDEV_COUNT DPDK_COUNT
alloc_is() { [ "$(alloc "$NETDEV") $(alloc "$DPDK")" = "$1 $2" ]; }

# vfs_home: every netdev VF of the fake tree in the node's netns, with its own name and MAC.
vfs_home() {
  local p i name mac got bad=()
  for p in 3 4; do
    for i in 0 1 2 3 4 5; do
      name=enp${p}s0f0v$i
      mac=$(printf '02:00:00:%02x:10:%02x' "$p" "$i")
      got=$(innode ip -j link show dev "$name" 2>/dev/null | jq -r '.[0].address' || true)
      [ "$got" = "$mac" ] || bad+=("$name(${got:-absent})")
    done
  done
  [ ${#bad[@]} = 0 ] || { echo "not home with their MAC: ${bad[*]}"; return 1; }
}

# cni_state_clean: no CNI state file, no IPAM lease, no Multus cache entry of a sandbox that
# is gone (running pods, the DaemonSets' included, keep theirs).
cni_state_clean() {
  local left live f
  left=$(innode sh -c 'ls -1d /var/lib/cni/sriov/*.json /var/lib/cni/networks/sriov-net1/[0-9]* 2>/dev/null' || true)
  live=$(innode ctr -n k8s.io containers ls -q)
  for f in $(innode sh -c 'ls -1 /var/lib/cni/multus /var/lib/cni/multus/results 2>/dev/null | grep -E "[0-9a-f]{64}"' || true); do
    grep -qF "$(grep -Eo '[0-9a-f]{64}' <<<"$f")" <<<"$live" || left+=$'\n'"multus cache: $f"
  done
  left=$(sed '/^$/d' <<<"$left")
  [ -z "$left" ] || { echo "left behind:"; echo "$left"; return 1; }
}

# registrations POD: how many pools POD's current plugin process registered with the kubelet.
registrations() { kc -n kube-system logs "$1" | grep -c 'registered through the plugin watcher' || true; }

# registered POD [N]: POD's plugin registered at least N (default 2) pools. A Ready plugin pod
# has not necessarily registered yet; a VF pod admitted in between fails for good
# (UnexpectedAdmissionError), so scenarios wait for this after every plugin restart.
registered() { [ "$(registrations "$1")" -ge "${2:-2}" ]; }

# plugin_pod: the device plugin's pod (the newest one not being deleted).
plugin_pod() {
  kc -n kube-system get pod -l app.kubernetes.io/name=sriov-device-plugin -o json |
    jq -r '[.items[] | select(.metadata.deletionTimestamp == null)] | sort_by(.metadata.creationTimestamp) | last | .metadata.name // empty'
}

# container_pid NAMESPACE POD: the host pid of the pod's (first) container.
container_pid() {
  local id
  id=$(kc -n "$1" get pod "$2" -o jsonpath='{.status.containerStatuses[0].containerID}')
  id=${id#containerd://}
  [ -n "$id" ] || return 1
  innode ctr -n k8s.io task ls | awk -v id="$id" '$1 == id { print $2 }'
}

# rss_kib PID
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
