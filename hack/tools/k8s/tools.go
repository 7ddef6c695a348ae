//go:build tools

// Package tools pins the Kubernetes control-plane commands that pvshift's local
// cluster runs. Nothing here is compiled into pvshift; hack/build-tools.sh builds
// the commands named below with `go build`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet" // the real-node tier (test/e2e)
)
