# shellcheck shell=bash
# How each node daemon is started (sourced by tests/node/up.sh and the scenarios that restart
# one): start_daemon NAME. The files they read are made by up.sh.

start_daemon() {
  case $1 in
    etcd)
      start etcd etcd --name node --data-dir /var/lib/etcd \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster node=http://127.0.0.1:2380 ;;
    kube-apiserver)
      start kube-apiserver kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
        --bind-address="$NODE_IP" --secure-port=6443 --advertise-address="$NODE_IP" \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" \
        --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$PKI/apiserver-kubelet-client.key" --kubelet-preferred-address-types=InternalIP \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
        --service-cluster-ip-range=10.96.0.0/24 --authorization-mode=Node,RBAC \
        --enable-admission-plugins=NodeRestriction --allow-privileged=true --profiling=false ;;
    kube-controller-manager)
      start kube-controller-manager kube-controller-manager \
        --kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
        --authentication-kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
        --authorization-kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
        --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" --profiling=false ;;
    kube-scheduler)
      start kube-scheduler kube-scheduler --kubeconfig="$PKI/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig="$PKI/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig="$PKI/kube-scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --leader-elect=false --profiling=false ;;
    containerd)
      # The CNI plugins containerd runs (Multus, and through it `sriov`) inherit this
      # environment: SRIOV_SYSFS_ROOT is how the `sriov` CNI finds the fake tree.
      start containerd SRIOV_SYSFS_ROOT="$NODE_SYSFS" \
        PATH="$RUNTIME_BIN:$DEB_ROOT/usr/sbin:/usr/sbin:/usr/bin:/sbin:/bin" \
        "$RUNTIME_BIN/containerd" --config "$NODE_DIR/containerd.toml" ;;
    kubelet)
      start kubelet kubelet --config="$NODE_DIR/kubelet.yaml" --kubeconfig="$PKI/kubelet.kubeconfig" \
        --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=2 ;;
    *) die "no daemon $1" ;;
  esac
}

node_ready() {
  [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
