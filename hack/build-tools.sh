#!/usr/bin/env bash
# Builds the real binaries that pvshift's local cluster and chart tests run:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet
# (the real-node tier) and helm,
# from their published Go modules at the versions pinned in hack/tools/*/go.mod.
#
# Each set is built once into a cache keyed by its version
#   ${PVSHIFT_CACHE:-~/.cache/pvshift}/k8s-v1.34.4/bin/...
# and reused afterwards, so this script is idempotent and cheap on a warm machine.
# KUBEBUILDER_ASSETS, when it names a directory holding etcd and kube-apiserver,
# is honoured for those two (the envtest layout); the rest are still built.
#
# Usage: hack/build-tools.sh [--print-env]
#   --print-env  only print the PVSHIFT_*_BIN variables of the cache (no build)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tools="$here/tools"
cache=${PVSHIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pvshift}

# Versions come from the go.mod files so there is a single place to bump them.
modver() { awk -v m="$2" '$1 == "require" && $2 == m { print $3 } $1 == m && $2 ~ /^v/ { print $2 }' "$tools/$1/go.mod" | head -n 1; }
K8S_VERSION=$(modver k8s k8s.io/kubernetes)
ETCD_VERSION=$(modver etcd go.etcd.io/etcd/server/v3)
HELM_VERSION=$(modver helm helm.sh/helm/v3)
for v in K8S_VERSION ETCD_VERSION HELM_VERSION; do
  [ -n "${!v}" ] || { echo "build-tools: could not read $v from $tools/*/go.mod" >&2; exit 1; }
done

k8s_bin="$cache/k8s-$K8S_VERSION/bin"
etcd_bin="$cache/etcd-$ETCD_VERSION/bin"
helm_bin="$cache/helm-$HELM_VERSION/bin"

print_env() {
  local apiserver="$k8s_bin/kube-apiserver" etcd="$etcd_bin/etcd"
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
    apiserver="$KUBEBUILDER_ASSETS/kube-apiserver" etcd="$KUBEBUILDER_ASSETS/etcd"
  fi
  echo "PVSHIFT_ETCD_BIN=$etcd"
  echo "PVSHIFT_KUBE_APISERVER_BIN=$apiserver"
  echo "PVSHIFT_KUBE_CONTROLLER_MANAGER_BIN=$k8s_bin/kube-controller-manager"
  echo "PVSHIFT_KUBE_SCHEDULER_BIN=$k8s_bin/kube-scheduler"
  echo "PVSHIFT_KUBECTL_BIN=$k8s_bin/kubectl"
  echo "PVSHIFT_KUBELET_BIN=$k8s_bin/kubelet"
  echo "PVSHIFT_HELM_BIN=$helm_bin/helm"
}
if [ "${1:-}" = "--print-env" ]; then print_env; exit 0; fi

command -v go >/dev/null || { echo "build-tools: 'go' is not on PATH; install Go 1.24 or newer" >&2; exit 1; }

step() { echo "build-tools: $*" >&2; }

# build DIR OUTDIR VERSION LDFLAGS PKG... : builds each package into OUTDIR unless
# every binary is already there; writes to a temporary dir and renames, so an
# interrupted build never leaves a half-written binary in the cache.
build() {
  local mod=$1 out=$2 version=$3 ldflags=$4; shift 4
  local missing=() pkg name
  for pkg in "$@"; do
    name=$(basename "$pkg"); [ "$name" = v3 ] && name=etcd
    [ -x "$out/$name" ] || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then step "$mod $version: cached in $out"; return; fi
  mkdir -p "$out"
  local tmp; tmp=$(mktemp -d "$out/.build.XXXXXX")
  for pkg in "${missing[@]}"; do
    name=$(basename "$pkg"); [ "$name" = v3 ] && name=etcd
    step "building $name $version (go build $pkg)"
    local start=$SECONDS
    if ! (cd "$tools/$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/$name" "$pkg"); then
      rm -rf "$tmp"
      echo "build-tools: FAILED building $name $version from $tools/$mod (see the go output above)" >&2
      exit 1
    fi
    mv "$tmp/$name" "$out/$name"
    step "built $name in $((SECONDS - start))s"
  done
  rm -rf "$tmp"
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  step "using etcd and kube-apiserver from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
else
  build etcd "$etcd_bin" "$ETCD_VERSION" "" go.etcd.io/etcd/server/v3
fi

# component-base/version is what every Kubernetes binary reports; without these
# ldflags they say v0.0.0-master, which breaks version-gated clients (helm's kubeVersion).
minor=$(echo "$K8S_VERSION" | cut -d. -f2)
kv="k8s.io/component-base/version"
cv="k8s.io/client-go/pkg/version"
k8s_ldflags="-X $kv.gitVersion=$K8S_VERSION -X $kv.gitMajor=1 -X $kv.gitMinor=$minor -X $kv.gitTreeState=clean -X $kv.buildDate=1970-01-01T00:00:00Z"
k8s_ldflags="$k8s_ldflags -X $cv.gitVersion=$K8S_VERSION -X $cv.gitMajor=1 -X $cv.gitMinor=$minor -X $cv.gitTreeState=clean"
k8s_pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet)
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then
  k8s_pkgs=("${k8s_pkgs[@]:1}")
fi
build k8s "$k8s_bin" "$K8S_VERSION" "$k8s_ldflags" "${k8s_pkgs[@]}"

# helm reports its own version, and the Kubernetes version it assumes for
# `helm template` (no cluster) comes from these variables, not from client-go.
hv="helm.sh/helm/v3/internal/version"
helm_k8s_minor=$(awk '$1 == "k8s.io/client-go" { print $2 }' "$tools/helm/go.mod" | cut -d. -f2)
helm_ldflags="-X $hv.version=$HELM_VERSION -X $hv.gitTreeState=clean"
helm_ldflags="$helm_ldflags -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_k8s_minor"
helm_ldflags="$helm_ldflags -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_k8s_minor"
build helm "$helm_bin" "$HELM_VERSION" "$helm_ldflags" helm.sh/helm/v3/cmd/helm

print_env
