# shellcheck shell=bash disable=SC2034
# Shared by the node harness (scripts/node.sh and tests/node/*.sh): versions, where things
# live, and the helpers that run commands inside the node. See docs/node.md.
#
# The node is a pair of namespaces, a network one and a mount one, kept open by bind mounts
# under $NODE_DIR/ns. Inside the mount namespace /run, /opt, /dev, /var/lib and /var/log are
# the node's own (tmpfs or bind mounts of $NODE_DIR), so the machine's files stay untouched.

NODE_REPO=${NODE_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
NODE_HERE=$NODE_REPO/tests/node

# Versions. The Kubernetes binaries are built from tests/node/k8s/go.mod (keep them equal).
K8S_VERSION=v1.37.2
# Debian bookworm packages, unpacked into the cache (never installed: their services would
# start on the machine).
NODE_DEBS=(etcd-server containerd runc busybox-static)
# The node's container runtime: containerd2 (built from the Go module proxy; has CDI) or
# containerd1.6 (Debian bookworm's; no CDI). Both use Debian's runc.
NODE_RUNTIME=${SRIOV_NODE_RUNTIME:-containerd2}
CONTAINERD2_VERSION=v2.4.2

# Caches outlive a node and a checkout; NODE_DIR is one node's state (removed by `down`).
NODE_CACHE=${SRIOV_NODE_CACHE:-/var/cache/sriov-node}
NODE_DIR=${SRIOV_NODE_DIR:-/var/tmp/sriov-node}
K8S_BIN=$NODE_CACHE/k8s-$K8S_VERSION/bin
CONTAINERD2_BIN=$NODE_CACHE/containerd-$CONTAINERD2_VERSION/bin
UPSTREAM_OUT=$NODE_CACHE/upstream
DEB_ROOT=$NODE_CACHE/debs/root
IMAGES=$NODE_CACHE/images
# The upstream peers' pinned tarballs and build script, beside the checkout (a read-only copy
# in CI).
UPSTREAM_SRC=${SRIOV_UPSTREAM_DIR:-$NODE_REPO/../shared/upstream}
# Our image and the release binaries it holds depend on the checkout: they stay in target/.
NODE_TARGET=$NODE_REPO/target/node

NODE_NAME=sriov-node
NODE_IP=10.200.0.1
# Inside the node: the fake sysfs tree the device plugin (--sysfs-root) and the CNI
# (SRIOV_SYSFS_ROOT) read, and the CNI configuration containerd and Multus read.
NODE_SYSFS=/run/sriov-node/sysfs
NODE_CNI_CONF=$NODE_DIR/cni/net.d
NODE_MULTUS_CONF=$NODE_DIR/cni/multus.d
# What the test overlay (tests/node/overlay) names our image.
NODE_IMAGE=localhost/sriov-network:node

# One node per machine: the kubelet's kubepods cgroups are the machine's. scripts/node.sh holds
# this lock while it builds, starts, tests or stops a node, so two runs queue instead of taking
# each other's node down.
NODE_LOCK=${SRIOV_NODE_LOCK:-/run/lock/sriov-node.lock}
NS=$NODE_DIR/ns
PKI=$NODE_DIR/pki
LOGS=$NODE_DIR/logs
PIDS=$NODE_DIR/pids

case $NODE_RUNTIME in
  containerd2) RUNTIME_BIN=$CONTAINERD2_BIN ;;
  containerd1.6) RUNTIME_BIN=$DEB_ROOT/usr/bin ;;
  *) echo "node: SRIOV_NODE_RUNTIME=$NODE_RUNTIME: use containerd2 or containerd1.6" >&2; exit 2 ;;
esac
# The runtime's own containerd, shim and ctr come first.
export PATH=$RUNTIME_BIN:$K8S_BIN:$DEB_ROOT/usr/bin:$DEB_ROOT/usr/sbin:$PATH:/usr/local/go/bin:/usr/sbin:/sbin

_node_t0=${_node_t0:-$(date +%s.%N)}
export _node_t0

# Seconds since $1 (a `date +%s.%N` value), one decimal.
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

say() {
  if [ -t 2 ]; then printf '\033[1m==> [%6ss] %s\033[0m\n' "$(since "$_node_t0")" "$*" >&2
  else printf '==> [%6ss] %s\n' "$(since "$_node_t0")" "$*" >&2; fi
}
die() { echo "node: $*" >&2; exit 1; }

node_is_up() { mountpoint -q "$NS/net" 2>/dev/null && mountpoint -q "$NS/mnt" 2>/dev/null; }

# innode CMD...: run CMD inside the node's network and mount namespaces.
innode() { nsenter --net="$NS/net" --mount="$NS/mnt" --wd="$PWD" -- "$@"; }

# kc ARGS...: kubectl as the cluster admin, inside the node.
kc() { innode "$K8S_BIN/kubectl" --kubeconfig "$PKI/admin.kubeconfig" "$@"; }

# wait_for SECONDS WHAT CMD...: poll CMD every 0.2 s until it succeeds; fail naming WHAT.
wait_for() {
  local secs=$1 what=$2 end
  shift 2
  end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { echo "node: timed out after ${secs}s waiting for $what" >&2; return 1; }
    sleep 0.2
  done
}

# start NAME [ENV=VALUE...] CMD...: a node daemon, detached, inside the node; its pid in
# $PIDS/NAME, its output in $LOGS/NAME.log (appended: restarts keep the history).
start() {
  local name=$1
  shift
  mkdir -p "$PIDS" "$LOGS"
  echo "---- $(date -u +%FT%TZ) start" >>"$LOGS/$name.log"
  # nsenter execs the command (no --fork), and setsid does not fork when the caller is not a
  # process-group leader (a background job of a script is not): $! is the daemon itself.
  # fd 9 is scripts/node.sh's lock: a daemon must not keep it after the command ends.
  nsenter --net="$NS/net" --mount="$NS/mnt" -- setsid env "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$PIDS/$name"
}

# stop NAME [SIGNAL]: signal a daemon started by `start` and wait up to 10 s for it to exit.
stop() {
  local name=$1 sig=${2:-TERM} pid
  [ -f "$PIDS/$name" ] || return 0
  pid=$(cat "$PIDS/$name")
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  rm -f "$PIDS/$name"
}

# example_nads: deploy/examples' NetworkAttachmentDefinitions as JSON (a v1 List), without
# their PF-side settings (vlan, qos, spoofchk, trust, link_state, min/max_tx_rate): a veth
# standing in for a PF has no VF table, so the CNI refuses those (error 101) as it would on a
# NIC without VF support. Everything else (name, resourceName annotation, IPAM) is the
# example's own.
example_nads() {
  local f
  for f in "$NODE_REPO"/deploy/examples/nad-*.yaml; do
    kc create --dry-run=client -o json -f "$f"
  done | jq -s '{apiVersion: "v1", kind: "List", items: map(
      .spec.config |= (fromjson | del(.vlan, .vlanQoS, .vlanProto, .spoofchk, .trust,
        .link_state, .min_tx_rate, .max_tx_rate) | tojson))}'
}
