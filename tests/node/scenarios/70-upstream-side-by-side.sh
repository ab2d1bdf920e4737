#!/usr/bin/env bash
# 70-upstream-side-by-side: our stack and the upstream one, in turn, on the same node.
# Ours is deploy/ through tests/node/overlay (scenario 10's); upstream is
# sriov-network-device-plugin v3.11.0 and sriov-cni v2.10.0 from the pinned tarballs, with
# their own manifests (tests/node/peers.sh says what is adapted; their CNI is patched for the
# veth PFs: tests/node/peers/sriov-cni-v2.10.0-veth-pf.patch). Both under Multus v4.3.0, with
# the same NetworkAttachmentDefinition (sriov-net1) and the same pods. Ours first
# (SRIOV_NODE_PEER_FIRST=upstream: upstream first). For each stack, freshly deployed:
#   - N pods (SRIOV_NODE_PEER_PODS, default 20) with a kernel VF and net1, 10 at a time (12
#     VFs): the time from `kubectl apply` to each pod's Ready (p50, p95), and from `kubectl
#     delete` to all of a round gone;
#   - CPU seconds and peak memory of the plugin and CNI DaemonSet containers from their start
#     to the end of the pods (cgroup v1 cpuacct.usage, memory.max_usage_in_bytes);
#   - the plugin process killed (kill -9), then the plugin pod deleted: time until the kubelet
#     has connected to both pools of the new process, and until the node's allocatable is
#     12 + 4 again in the API.
# Ours must: run every pod, leave every VF home and no CNI state, and be back (12 + 4) after
# both kills. Upstream's figures are recorded, not asserted. One table at the end; the figures
# also go to $SCEN_OUT/side-by-side.txt. Ours is deployed again at the end.
# Helpers below are called through check/require/wait_for; jq programs use $vars.
# shellcheck disable=SC2317,SC2016
set -euo pipefail
# shellcheck source=tests/node/scenario-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scenario-lib.sh"
# shellcheck source=tests/node/peers.sh
. "$NODE_HERE/peers.sh"

N=${SRIOV_NODE_PEER_PODS:-20}
ROUND=10
declare -A R

# --- the two stacks ----------------------------------------------------------------------------

# side SIDE KEY: a label selector of SIDE's plugin (dp) or CNI (cni) pods, or its DaemonSet (dp-ds, cni-ds).
side() {
  case "$1 $2" in
    "ours dp") echo app.kubernetes.io/name=sriov-device-plugin ;;
    "ours cni") echo app.kubernetes.io/name=sriov-cni ;;
    "ours dp-ds") echo sriov-device-plugin ;;
    "ours cni-ds") echo sriov-cni ;;
    "upstream dp") echo name=sriov-device-plugin ;;
    "upstream cni") echo name=sriov-cni ;;
    "upstream dp-ds") echo kube-sriov-device-plugin ;;
    "upstream cni-ds") echo kube-sriov-cni-ds ;;
  esac
}

# pod_of SIDE KEY: the newest running pod of the selector, not being deleted.
pod_of() {
  kc -n kube-system get pod -l "$(side "$1" "$2")" -o json |
    jq -r '[.items[] | select(.metadata.deletionTimestamp == null and .status.phase == "Running")]
      | sort_by(.metadata.creationTimestamp) | last | .metadata.name // empty'
}

no_stack_pods() {
  [ -z "$(kc -n kube-system get pod -l "$(side "$1" dp)" -o name)" ] &&
    [ -z "$(kc -n kube-system get pod -l "$(side "$1" cni)" -o name)" ]
}

# deploy SIDE: apply, both DaemonSets rolled out, allocatable 12 + 4.
deploy() {
  if [ "$1" = ours ]; then
    kc apply -k "$NODE_HERE/overlay" >/dev/null
  else
    peers_manifests >"$SCEN_OUT/upstream.json"
    kc apply -f "$SCEN_OUT/upstream.json" >/dev/null
  fi
  kc -n kube-system rollout status "daemonset/$(side "$1" dp-ds)" --timeout=120s >/dev/null &&
    kc -n kube-system rollout status "daemonset/$(side "$1" cni-ds)" --timeout=120s >/dev/null &&
    wait_for 60 "allocatable 12 + 4" alloc_is 12 4
}

# teardown SIDE...: delete what deploy applied; the pods gone, nothing allocatable.
teardown() {
  local s
  for s in "$@"; do
    if [ "$s" = ours ]; then
      kc delete -k "$NODE_HERE/overlay" --ignore-not-found --wait=true --timeout=120s >/dev/null
    else
      peers_manifests | kc delete -f - --ignore-not-found --wait=true --timeout=120s >/dev/null
    fi
  done
  for s in "$@"; do
    wait_for 120 "$s's DaemonSet pods gone" no_stack_pods "$s" || return 1
  done
  wait_for 60 "allocatable 0 + 0" alloc_is 0 0
}

# --- measurements --------------------------------------------------------------------------------

# pctl P FILE: the P-th percentile (nearest rank) of FILE's second column (NAME SECONDS lines).
pctl() { awk '{ print $2 }' "$2" | sort -n | awk -v p="$1" '{ v[NR] = $1 } END { i = int(NR * p / 100); if (i < NR * p / 100) i++; if (i < 1) i = 1; printf "%.2f", v[i] }'; }

# rounds SIDE: N pods with a VF and net1, ROUND at a time; apply -> Ready of each pod (from a
# watch started before the apply) in $SCEN_OUT/SIDE.ready, delete -> gone of each round in
# SIDE.gone. Fails when a pod is not Ready within 60 s.
rounds() {
  local s=$1 left=$N r=0 k names t wpid ok=0
  : >"$SCEN_OUT/$s.ready"
  : >"$SCEN_OUT/$s.gone"
  while [ "$left" -gt 0 ]; do
    r=$((r + 1))
    k=$((left < ROUND ? left : ROUND))
    left=$((left - k))
    names=()
    for i in $(seq 1 "$k"); do names+=("peer-$s-$r-$i"); done
    for n in "${names[@]}"; do pod "$n" sriov-net1 "$NETDEV" | jq --arg r "$s-$r" '.metadata.labels["peer-round"] = $r'; done |
      jq -s '{apiVersion: "v1", kind: "List", items: .}' >"$SCEN_OUT/round.json"
    # The watch prints one line per change of a pod; each line is stamped as it arrives.
    sh -c 'echo $$ >"$1"; shift; exec timeout 300 "$@"' _ "$SCEN_OUT/watch.pid" nsenter --net="$NS/net" --mount="$NS/mnt" -- \
      "$K8S_BIN/kubectl" --kubeconfig "$PKI/admin.kubeconfig" get pods -l "peer-round=$s-$r" -w \
      -o jsonpath='{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}' 2>/dev/null |
      while read -r n st; do echo "$(date +%s.%N) $n $st"; done >"$SCEN_OUT/watch.$s.$r" &
    wpid=$!
    sleep 1
    t=$(date +%s.%N)
    kc apply -f "$SCEN_OUT/round.json" >/dev/null
    kc wait --for=condition=Ready pod -l "peer-round=$s-$r" --timeout=60s >/dev/null 2>&1 || ok=1
    sleep 0.5
    kill "$(cat "$SCEN_OUT/watch.pid")" 2>/dev/null || true
    wait "$wpid" 2>/dev/null || true
    awk -v t="$t" '$3 == "True" && !($2 in seen) { seen[$2] = 1; printf "%s %.3f\n", $2, $1 - t }' \
      "$SCEN_OUT/watch.$s.$r" >>"$SCEN_OUT/$s.ready"
    [ "$ok" = 0 ] || { kc get pod -l "peer-round=$s-$r" -o wide | tail -n 12; kc describe pod "${names[0]}" | tail -n 8; }
    t=$(date +%s.%N)
    kc delete pod -l "peer-round=$s-$r" --wait=true --timeout=120s >/dev/null
    echo "$s-$r $(since "$t")" >>"$SCEN_OUT/$s.gone"
  done
  note "$s: $(wc -l <"$SCEN_OUT/$s.ready") of $N pods Ready; apply -> Ready p50 $(pctl 50 "$SCEN_OUT/$s.ready" 2>/dev/null || true)s"
  [ "$ok" = 0 ] && [ "$(wc -l <"$SCEN_OUT/$s.ready")" = "$N" ]
}

# sandboxes SIDE: "NAME SECONDS" of each of SIDE's pods from containerd's log: RunPodSandbox
# received -> returned, which includes the pod network (Multus, the cluster bridge, the
# `sriov` CNI), into $SCEN_OUT/SIDE.sandbox; a failed attempt counts in R[SIDE,sbfail] and the
# pod's time is that of the attempt that succeeded.
sandboxes() {
  python3 - "$LOGS/containerd.log" "peer-$1-" >"$SCEN_OUT/$1.sandbox" <<'PY'
import datetime, re, sys
start = {}
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r'time="([^"]+)".*RunPodSandbox for name:\\"(' + re.escape(sys.argv[2]) + r'[^\\]+)\\"', line)
    if not m:
        continue
    t = datetime.datetime.fromisoformat(m.group(1)[:26]).timestamp()
    if "returns sandbox id" in line and m.group(2) in start:
        print(f"{m.group(2)} {t - start.pop(m.group(2)):.3f}")
    elif "returns" not in line and "failed" not in line:
        start[m.group(2)] = t
PY
}

# cg SIDE KEY: "cpu-seconds peak-MiB rss-MiB uptime-s" of the newest KEY container of SIDE
# (cgroup v1, cgroupfs driver: kubepods/<qos>/pod<uid>/<container id>).
cg() {
  local p id cpu mem start
  p=$(pod_of "$1" "$2")
  id=$(kc -n kube-system get pod "$p" -o jsonpath='{.status.containerStatuses[0].containerID}')
  id=${id#containerd://}
  start=$(kc -n kube-system get pod "$p" -o jsonpath='{.status.containerStatuses[0].state.running.startedAt}')
  cpu=$(find /sys/fs/cgroup/cpuacct/kubepods -maxdepth 4 -type d -name "$id" | head -n1)
  mem=$(find /sys/fs/cgroup/memory/kubepods -maxdepth 4 -type d -name "$id" | head -n1)
  if [ -z "$cpu" ] || [ -z "$mem" ]; then echo "no cgroup for container $id of $p" >&2; return 1; fi
  awk -v c="$(cat "$cpu/cpuacct.usage")" -v m="$(cat "$mem/memory.max_usage_in_bytes")" \
    -v r="$(awk '$1 == "total_rss" { print $2 }' "$mem/memory.stat")" \
    -v u="$(( $(date +%s) - $(date -d "$start" +%s) ))" \
    'BEGIN { printf "%.2f %.1f %.1f %d\n", c / 1e9, m / 1048576, r / 1048576, u }'
}

# kubelet_regs: how many device-plugin connections (one per registered pool) the kubelet has
# logged so far, through the plugin watcher or kubelet.sock.
kubelet_regs() { grep -c 'Connected to new client' "$LOGS/kubelet.log" || true; }

# back_after SIDE HOW: kill the plugin (HOW = kill: kill -9 of its process; delete: delete its
# pod); print "R A S": seconds until the kubelet connected to both pools of the new process (from
# the kubelet log's timestamps), until the API shows allocatable 12 + 4 again (polled; the
# kubelet posts node status every 2 s here), and from the new container's start (containerd's
# log) to that registration.
back_after() {
  local s=$1 p pid regs t reg a id started
  p=$(pod_of "$s" dp)
  regs=$(kubelet_regs)
  if [ "$2" = kill ]; then
    pid=$(container_pid kube-system "$p")
    [ -n "$pid" ] || return 1
    t=$(date +%s.%N)
    kill -KILL "$pid"
  else
    t=$(date +%s.%N)
    kc -n kube-system delete pod "$p" --wait=false >/dev/null
  fi
  two() { [ "$(kubelet_regs)" -ge $((regs + 2)) ]; }
  wait_for 120 "two new registrations" two || return 1
  wait_for 60 "allocatable 12 + 4" alloc_is 12 4 || return 1
  a=$(date +%s.%N)
  reg=$(grep 'Connected to new client' "$LOGS/kubelet.log" | sed -n "$((regs + 2))p" | awk '{ print $2 }')
  # The new container's start, as containerd logged it (StartContainer returned: it runs).
  id=$(kc -n kube-system get pod "$(pod_of "$s" dp)" -o jsonpath='{.status.containerStatuses[0].containerID}')
  started=$(grep -F "StartContainer for \\\"${id#containerd://}\\\" returns successfully" "$LOGS/containerd.log" |
    sed -E 's/^time="([^"]+)".*/\1/' | tail -n1)
  awk -v t="$t" -v r="$(date -d "$reg" +%s.%N)" -v a="$a" -v s="$(date -d "${started:-@0}" +%s.%N)" \
    'BEGIN { printf "%.2f %.1f %s\n", r - t, a - t, (s > 0 ? sprintf("%.2f", r - s) : "-") }'
}

# measure SIDE: everything above for one freshly deployed stack, into R[SIDE,...].
measure() {
  local s=$1 t v
  step "$s: deploy"
  t=$(date +%s.%N)
  if [ "$s" = ours ]; then
    require "ours deployed: both DaemonSets Ready, allocatable 12 + 4" deploy ours
  elif ! deploy upstream; then
    note "upstream did not deploy (recorded)"
    kc -n kube-system get pods -o wide | sed 's/^/           | /'
    kc -n kube-system logs -l "$(side upstream dp)" --tail=20 2>&1 | sed 's/^/           | /'
    R[$s,deploy]="failed"
    check "upstream removed: pods gone, allocatable 0 + 0" teardown upstream
    return 0
  fi
  R[$s,deploy]=$(since "$t")
  note "$s deployed in ${R[$s,deploy]}s (apply -> both DaemonSets Ready and 12 + 4)"
  if [ "$s" = upstream ]; then
    check "/opt/cni/bin/sriov is upstream's (patched) binary" innode cmp /opt/cni/bin/sriov "$PEERS_CNI_BIN"
  fi

  step "$s: $N pods with a VF and net1, $ROUND at a time"
  if [ "$s" = ours ]; then
    check "ours: all $N pods Ready" rounds ours
    # run.sh's summary shows ours.
    cat "$SCEN_OUT/ours.ready" >>"$SCEN_OUT/ready"
  else
    rounds upstream || note "upstream: not every pod was Ready (recorded)"
  fi
  R[$s,ready]=$(wc -l <"$SCEN_OUT/$s.ready")
  R[$s,p50]=$(pctl 50 "$SCEN_OUT/$s.ready" 2>/dev/null || echo -)
  R[$s,p95]=$(pctl 95 "$SCEN_OUT/$s.ready" 2>/dev/null || echo -)
  R[$s,max]=$(pctl 100 "$SCEN_OUT/$s.ready" 2>/dev/null || echo -)
  sandboxes "$s"
  R[$s,sbfail]=$(grep -c "RunPodSandbox for name:..peer-$s-.*failed, error" "$LOGS/containerd.log" || true)
  R[$s,sb50]=$(pctl 50 "$SCEN_OUT/$s.sandbox" 2>/dev/null || echo -)
  R[$s,sb95]=$(pctl 95 "$SCEN_OUT/$s.sandbox" 2>/dev/null || echo -)
  R[$s,gone]=$(awk '{ if ($2 > m) m = $2 } END { printf "%.1f", m }' "$SCEN_OUT/$s.gone")
  if vfs_home >/dev/null 2>&1; then R[$s,home]=yes; else R[$s,home]=no; fi
  if [ "$s" = ours ]; then
    check "every VF netdev home with its name and MAC" vfs_home
    check "no CNI state, IPAM lease or Multus cache left" cni_state_clean
  fi

  v=$(cg "$s" dp || echo "- - - -")
  read -r "R[$s,dpcpu]" "R[$s,dppeak]" "R[$s,dprss]" "R[$s,dpup]" <<<"$v"
  v=$(cg "$s" cni || echo "- - - -")
  read -r "R[$s,cnicpu]" "R[$s,cnipeak]" "R[$s,cnirss]" "R[$s,cniup]" <<<"$v"
  note "$s plugin container: ${R[$s,dpcpu]} CPU s over ${R[$s,dpup]} s, peak ${R[$s,dppeak]} MiB, RSS ${R[$s,dprss]} MiB"
  note "$s CNI DaemonSet container: ${R[$s,cnicpu]} CPU s over ${R[$s,cniup]} s, peak ${R[$s,cnipeak]} MiB"

  step "$s: kill -9 the plugin, then delete its pod"
  for how in kill delete; do
    if v=$(back_after "$s" "$how"); then
      read -r "R[$s,${how}reg]" "R[$s,$how]" "R[$s,${how}start]" <<<"$v"
      note "$s: $how -> both pools registered in ${R[$s,${how}reg]}s (${R[$s,${how}start]}s after the new container started), allocatable 12 + 4 in the API in ${R[$s,$how]}s"
    else
      R[$s,$how]=never
      note "$s: $how -> allocatable not back"
    fi
    if [ "$s" = ours ]; then
      check "ours: allocatable 12 + 4 again after the plugin's $how" test "${R[$s,$how]}" != never
    fi
  done

  step "$s: tear down"
  if [ "$s" = ours ]; then
    require "ours removed: pods gone, allocatable 0 + 0" teardown ours
  else
    check "upstream removed: pods gone, allocatable 0 + 0" teardown upstream
  fi
}

t_all=$(date +%s.%N)
step "the upstream images"
for img in "$PEERS_DP_TAR" "$PEERS_CNI_TAR"; do
  require "$(basename "$img") imported" innode ctr -n k8s.io images import "$img"
done
# Scenario 10 left ours deployed (and an interrupted run may have left upstream's): start both
# sides from nothing.
require "ours (and any upstream leftovers) removed first" teardown ours upstream
# Kernel files upstream reads and the fake tree lacks (tests/node/peers.sh); ours ignores them.
require "modalias files and netdev device links in the fake tree" peers_sysfs

# SRIOV_NODE_PEER_FIRST=upstream measures upstream first (a check on order effects).
if [ "${SRIOV_NODE_PEER_FIRST:-ours}" = upstream ]; then
  measure upstream
  measure ours
else
  measure ours
  measure upstream
fi

step "ours again, for what follows"
require "ours deployed again" deploy ours

{
  echo "side by side on the test node: $N pods with a VF and net1, $ROUND at a time, ${SRIOV_NODE_PEER_FIRST:-ours} first (upstream's CNI patched for veth PFs)"
  printf '%-44s %14s %14s\n' "" ours "upstream"
  row() { printf '%-44s %14s %14s\n' "$1" "${R[ours,$2]:--}" "${R[upstream,$2]:--}"; }
  row "deploy: apply -> DaemonSets Ready, 12 + 4 (s)" deploy
  row "pods Ready (of $N)" ready
  row "apply -> Ready p50 (s)" p50
  row "apply -> Ready p95 (s)" p95
  row "apply -> Ready max (s)" max
  row "sandbox with network (containerd) p50 (s)" sb50
  row "sandbox with network (containerd) p95 (s)" sb95
  row "sandbox attempts failed (then retried)" sbfail
  row "delete -> round gone, max (s)" gone
  row "every VF home, name and MAC, afterwards" home
  row "kill -9 plugin -> both pools registered (s)" killreg
  row "kill -9 plugin -> 12 + 4 in the API (s)" kill
  row "  new container started -> registered (s)" killstart
  row "delete plugin pod -> both pools registered (s)" deletereg
  row "delete plugin pod -> 12 + 4 in the API (s)" delete
  row "  new container started -> registered (s)" deletestart
  row "plugin container CPU (s)" dpcpu
  row "plugin container lifetime (s)" dpup
  row "plugin container peak memory (MiB)" dppeak
  row "plugin container RSS at the end (MiB)" dprss
  row "CNI DaemonSet container CPU (s)" cnicpu
  row "CNI DaemonSet container peak memory (MiB)" cnipeak
  echo "scenario: $(since "$t_all")s"
} | tee "$SCEN_OUT/side-by-side.txt"
finish
