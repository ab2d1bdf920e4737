#!/usr/bin/env bash
# A real single-node Kubernetes with our stack on it (docs/node.md): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd, the kubelet and Multus, all inside a
# network and mount namespace of their own, with a fake PS225 (2 PFs x 8 VFs) whose netdevs
# are veths. Our DaemonSets run from deploy/ (+ tests/node/overlay) with our image, built from
# the Dockerfile without a registry.
#
#   scripts/node.sh build                 build and cache what the node needs (idempotent)
#   scripts/node.sh up                    build, start the node, deploy our stack; leave it up
#   scripts/node.sh down                  stop the node and remove its state
#   scripts/node.sh test [--keep] [N...]  build, new node, scenarios N (default all), down;
#                                         ends with "N passed, M failed"
#   scripts/node.sh kubectl ARGS...       kubectl as the cluster admin
#   scripts/node.sh sh [CMD...]           a shell (or CMD) inside the node's namespaces
#   scripts/node.sh logs                  where the logs are, and their last lines
#
# Needs root, Debian bookworm (packages come from apt), Go >= 1.26 and the Go module proxy
# (the Kubernetes build; cached in /var/cache/sriov-node), and ../shared/upstream beside the
# checkout (Multus). SRIOV_NODE_CACHE and SRIOV_NODE_DIR move the cache and the node's state.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/node/lib.sh
. "$repo/tests/node/lib.sh"

usage() { sed -n '7,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# node_lock: take the machine's node lock on fd 9 (kept across the exec of run.sh, released
# when this command ends), waiting up to an hour for another scripts/node.sh to finish.
node_lock() {
  mkdir -p "$(dirname "$NODE_LOCK")"
  exec 9>>"$NODE_LOCK"
  if ! flock -n 9; then
    say "another scripts/node.sh holds $NODE_LOCK ($(cat "$NODE_LOCK.who" 2>/dev/null || echo unknown)): waiting"
    flock -w 3600 9 || die "$NODE_LOCK still held after an hour"
  fi
  echo "pid $$, scripts/node.sh $cmd in $NODE_REPO, since $(date -u +%FT%TZ)" >"$NODE_LOCK.who"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  build|up|down|test) node_lock ;;
esac
case "$cmd" in
  build)
    bash "$NODE_HERE/build.sh" ;;
  up)
    bash "$NODE_HERE/build.sh"
    bash "$NODE_HERE/up.sh"
    bash "$NODE_HERE/deploy.sh"
    echo
    echo "node up. Try:"
    echo "  scripts/node.sh kubectl get nodes -o yaml"
    echo "  scripts/node.sh kubectl apply -f tests/node/examples/pod-netdevice.yaml"
    echo "  scripts/node.sh kubectl exec pod-netdevice -- ip addr show net1"
    echo "  scripts/node.sh down" ;;
  down)
    bash "$NODE_HERE/down.sh" ;;
  test)
    bash "$NODE_HERE/build.sh"
    exec bash "$NODE_HERE/run.sh" "$@" ;;
  kubectl)
    node_is_up || die "no node is up (scripts/node.sh up)"
    kc "$@" ;;
  sh)
    node_is_up || die "no node is up (scripts/node.sh up)"
    # No arguments: an interactive shell; options (-c ...) go to bash; else a command.
    if [ $# -eq 0 ] || [[ "$1" == -* ]]; then set -- bash "$@"; fi
    # kubectl, ctr and the node's tools on PATH; KUBECONFIG for kubectl.
    KUBECONFIG=$PKI/admin.kubeconfig CONTAINERD_NAMESPACE=k8s.io innode "$@" ;;
  logs)
    [ -d "$LOGS" ] || die "no logs in $LOGS"
    for f in "$LOGS"/*.log; do echo "==> $f"; tail -n 5 "$f"; done ;;
  *) usage ;;
esac
