# shellcheck shell=bash
# The node's PKI (sourced by tests/node/up.sh): one CA, ECDSA P-256 keys (fast to make), and a
# kubeconfig per client. Valid for 7 days; a new node makes a new one.
#   apiserver                   serving cert (node IP, 127.0.0.1, the service IP, DNS names)
#   admin                       kubectl (system:masters)
#   kubelet                     system:node:<node> in system:nodes (Node authorizer)
#   apiserver-kubelet-client    the API server towards the kubelet (exec, logs)
#   kube-controller-manager, kube-scheduler   their built-in RBAC users
#   multus                      Multus thin (bound to upstream's `multus` ClusterRole by up.sh)
#   sa.key / sa.pub             service-account token signing

pki_cert() { # NAME CN [O] [SANS]
  local n=$1 cn=$2 o=${3:-} san=${4:-}
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$n.key" 2>/dev/null
  openssl req -new -key "$PKI/$n.key" -out "$PKI/$n.csr" -subj "/CN=$cn${o:+/O=$o}" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"
    else echo "extendedKeyUsage=clientAuth"; fi
  } >"$PKI/$n.ext"
  openssl x509 -req -in "$PKI/$n.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -out "$PKI/$n.crt" -days 7 -extfile "$PKI/$n.ext" 2>/dev/null
  rm -f "$PKI/$n.csr" "$PKI/$n.ext"
}

pki_kubeconfig() { # NAME
  cat >"$PKI/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: node, cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$PKI/ca.crt"}}]
users: [{name: $1, user: {client-certificate: "$PKI/$1.crt", client-key: "$PKI/$1.key"}}]
contexts: [{name: $1, context: {cluster: node, user: $1}}]
current-context: $1
EOF
}

make_pki() {
  mkdir -p "$PKI"
  chmod 0700 "$PKI"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -out "$PKI/ca.crt" -days 7 -subj "/CN=sriov-node-ca" 2>/dev/null
  pki_cert apiserver kube-apiserver "" \
    "IP:$NODE_IP,IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  pki_cert admin kubernetes-admin system:masters
  pki_cert kubelet "system:node:$NODE_NAME" system:nodes
  pki_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  pki_cert kube-controller-manager system:kube-controller-manager
  pki_cert kube-scheduler system:kube-scheduler
  pki_cert multus multus
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
  openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  for k in admin kubelet kube-controller-manager kube-scheduler multus; do pki_kubeconfig "$k"; done
}
