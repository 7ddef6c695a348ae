#!/usr/bin/env bash
# Installs what pvshift's tests and demo need on a fresh Debian machine, then
# builds the control-plane binaries (cached by version, so a warm run is quick):
#   rsync (the copy engine), findutils (find -printf, the runner's pre-scan),
#   acl and attr (getfacl/getfattr, for fidelity checks),
#   util-linux (unshare, setpriv: the fake kubelet; losetup, findmnt), e2fsprogs
#   and xfsprogs (loop filesystems: the runner tests, the real-node tier's
#   storage classes), openssl, and Go for the binaries;
#   the real-node tier (test/e2e): containerd and runc (the node's runtime),
#   containernetworking-plugins (bridge and host-local CNI), iproute2 (the node's
#   bridge), buildah and mmdebstrap (images built here, hack/images).
# Without root it only says what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

need=()
command -v rsync >/dev/null || need+=(rsync)
command -v find >/dev/null || need+=(findutils)
command -v setfacl >/dev/null || need+=(acl)
command -v setfattr >/dev/null || need+=(attr)
command -v unshare >/dev/null && command -v setpriv >/dev/null || need+=(util-linux)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v openssl >/dev/null || need+=(openssl)
command -v go >/dev/null || need+=(golang-go)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] || need+=(containernetworking-plugins)
command -v ip >/dev/null || need+=(iproute2)
command -v buildah >/dev/null || need+=(buildah)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-deps: missing Debian packages: ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "ensure-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

bash "$here/build-tools.sh" >/dev/null
