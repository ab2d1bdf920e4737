#!/usr/bin/env bash
# Starts the node (scripts/node.sh up): namespaces, the fake PS225 tree, etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd, the kubelet and Multus thin as the default
# CNI. Our stack is not deployed here (tests/node/deploy.sh does that). Run build.sh first.
# Undo with down.sh. Nothing outside $NODE_DIR and the node's namespaces changes, except the
# kubelet's kubepods cgroups (removed by down.sh).
set -euo pipefail
# shellcheck source=tests/node/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/node/pki.sh
. "$NODE_HERE/pki.sh"
# shellcheck source=tests/node/daemons.sh
. "$NODE_HERE/daemons.sh"

[ "$(id -u)" = 0 ] || die "up: run as root (namespaces, mounts, cgroups)"
node_is_up && die "up: a node is already up in $NODE_DIR (scripts/node.sh down first)"
for b in kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  [ -x "$K8S_BIN/$b" ] || die "up: $K8S_BIN/$b missing (scripts/node.sh build)"
done
for f in "$DEB_ROOT/usr/bin/etcd" "$RUNTIME_BIN/containerd" "$UPSTREAM_OUT/bin/multus" \
  "$NODE_TARGET/sriov-network.tar" "$IMAGES/pause.tar" "$NODE_REPO/target/debug/fake-sriov-node"; do
  [ -e "$f" ] || die "up: $f missing (scripts/node.sh build)"
done
t0=$(date +%s.%N)

rm -rf "$NODE_DIR"
mkdir -p "$NS" "$LOGS" "$PIDS" "$NODE_DIR"/{varlog,sysctl} "$NODE_CNI_CONF" "$NODE_MULTUS_CONF"
make_pki
sub() { sed -e "s#@NODE_DIR@#$NODE_DIR#g" -e "s#@DEB_ROOT@#$DEB_ROOT#g" "$1" >"$2"; }

# --- the node's namespaces ---------------------------------------------------------------------
# Bind mounts keep them alive without a process; a private mount of $NS itself keeps those
# bind mounts from propagating anywhere.
mount --bind "$NS" "$NS"
mount --make-private "$NS"
touch "$NS/net" "$NS/mnt"
unshare --net="$NS/net" true
unshare --mount="$NS/mnt" --propagation private true

# Inside the mount namespace: /run, /opt, /dev and /var/lib are tmpfs of the node (etcd's WAL,
# containerd's image store and snapshots: nothing to fsync or delete on disk afterwards),
# /var/log is a directory of $NODE_DIR (pod logs outlive a failed run), the kernel tunables
# the kubelet sets are plain files, and / becomes rshared as the kubelet's mount propagation
# needs.
# shellcheck disable=SC2016 # expanded inside the node
innode bash -euo pipefail -c '
  node_dir=$1 cni=$2 multus=$3
  mount -t tmpfs -o mode=0755,size=256m node-run /run
  mount -t tmpfs -o mode=0755,size=4g node-var-lib /var/lib
  mount --bind "$node_dir/varlog" /var/log
  mount -t tmpfs -o mode=0755,size=1g node-opt /opt
  mkdir -p /opt/cni/bin
  for p in "$cni"/*; do ln -s "$p" /opt/cni/bin/; done
  ln -s "$multus" /opt/cni/bin/multus
  # /dev: a copy of the device nodes (not the submounts), the machine'"'"'s pts, and stand-ins for
  # the vfio nodes (tests/node/fake-tree.sh), so nothing is created in the machine'"'"'s /dev.
  mkdir -p /run/sriov-node/dev
  mount -t tmpfs -o mode=0755,size=16m,nosuid node-dev /run/sriov-node/dev
  cp -a --one-file-system /dev/. /run/sriov-node/dev/ 2>/dev/null || true
  mkdir -p /run/sriov-node/dev/pts /run/sriov-node/dev/shm /run/sriov-node/dev/mqueue
  mount --rbind /dev/pts /run/sriov-node/dev/pts
  mount -t tmpfs -o mode=1777,nosuid,nodev node-shm /run/sriov-node/dev/shm
  mountpoint -q /dev/mqueue && mount --rbind /dev/mqueue /run/sriov-node/dev/mqueue
  mount --move /run/sriov-node/dev /dev
  for kv in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops \
    kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
    f=$node_dir/sysctl/$(echo "$kv" | tr / _)
    cat "/proc/sys/$kv" >"$f"
    mount --bind "$f" "/proc/sys/$kv"
  done
  mount --make-rshared /
' _ "$NODE_DIR" /usr/lib/cni "$UPSTREAM_OUT/bin/multus"

# The node IP lives on a veth: the kubelet refuses a loopback node IP.
innode ip link set lo up
innode ip link add node0 type veth peer name node0-peer
innode ip addr add "$NODE_IP/24" dev node0
innode ip link set node0 up
innode ip link set node0-peer up
echo "nameserver 10.96.0.10" >"$NODE_DIR/resolv.conf"
say "node namespaces ready ($NS/net, $NS/mnt)"

bash "$NODE_HERE/fake-tree.sh" >"$LOGS/fake-tree.log"
say "fake PS225 tree at $NODE_SYSFS: 2 PFs with 12 netdev VFs and 4 vfio VFs, 1 PF without VFs"

# --- control plane ------------------------------------------------------------------------------
start_daemon etcd
wait_for 60 "etcd" innode curl -sf http://127.0.0.1:2379/health

start_daemon kube-apiserver
wait_for 120 "kube-apiserver" innode curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" \
  --key "$PKI/admin.key" "https://$NODE_IP:6443/readyz"
say "kube-apiserver ready"

start_daemon kube-controller-manager
start_daemon kube-scheduler

# --- containerd, images, CNI --------------------------------------------------------------------
if [ "$NODE_RUNTIME" = containerd2 ]; then
  sub "$NODE_HERE/conf/containerd2.toml" "$NODE_DIR/containerd.toml"
else
  sub "$NODE_HERE/conf/containerd.toml" "$NODE_DIR/containerd.toml"
fi
start_daemon containerd
wait_for 60 "containerd" innode ctr version
for img in "$IMAGES/pause.tar" "$IMAGES/busybox.tar" "$NODE_TARGET/sriov-network.tar"; do
  innode ctr -n k8s.io images import "$img" >/dev/null
done
say "$("$RUNTIME_BIN/containerd" --version | awk '{ print $1, $3 }') up; images: $(innode ctr -n k8s.io images ls -q | grep -v '^sha256:' | tr '\n' ' ')"

# Multus thin is the default network and delegates the cluster network to a bridge. A
# single-plugin .conf, not a .conflist: on DEL Multus v4.3.0 re-marshals a conflist from its
# cache without the plugin fields and the bridge DEL fails ("no IP ranges specified").
sub "$NODE_HERE/conf/00-multus.conf" "$NODE_CNI_CONF/00-multus.conf"
sub "$NODE_HERE/conf/10-bridge.conf" "$NODE_MULTUS_CONF/10-bridge.conf"

# --- kubelet ----------------------------------------------------------------------------------
sub "$NODE_HERE/conf/kubelet.yaml" "$NODE_DIR/kubelet.yaml"
start_daemon kubelet
wait_for 120 "node $NODE_NAME Ready" node_ready
say "node $NODE_NAME Ready"

# --- what Multus needs from the cluster: upstream's CRD and ClusterRole ---------------------
tar -xzOf "$UPSTREAM_SRC/multus-cni-v4.3.0.tar.gz" multus-cni-v4.3.0/deployments/multus-daemonset.yml |
  awk 'BEGIN { RS = "\n---\n" } /(^|\n)kind: (CustomResourceDefinition|ClusterRole)\n/ { print "---"; print }' \
    >"$NODE_DIR/multus-upstream.yaml"
kc apply -f "$NODE_DIR/multus-upstream.yaml" >/dev/null
kc create clusterrolebinding multus --clusterrole=multus --user=multus >/dev/null
kc wait --for=condition=Established crd/network-attachment-definitions.k8s.cni.cncf.io --timeout=60s >/dev/null
wait_for 60 "the default ServiceAccount" kc -n default get serviceaccount default
say "node up in $(since "$t0")s"
