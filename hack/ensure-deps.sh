#!/usr/bin/env bash
# Installs what pvshift's tests and demo need on a fresh Debian machine, then
# builds the control-plane binaries (cached by version, so a warm run is quick):
#   rsync (the copy engine), findutils (find -printf, the runner's pre-scan),
#   acl and attr (getfacl/getfattr, for fidelity checks),
#   util-linux (unshare, setpriv: the fake kubelet), e2fsprogs (loop filesystems
#   in the runner tests), openssl, and Go for the binaries.
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
