//go:build tools

// Package k8snode pins the Kubernetes components the node harness builds
// (scripts/node.sh): go.mod requires k8s.io/kubernetes and replaces its
// staging modules with their published versions, as upstream's own go.mod
// replaces them with ./staging directories.
package k8snode

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
