#!/usr/bin/env bash
# Builds and caches everything the node needs (scripts/node.sh build). Idempotent: each step
# checks its output first, so only a fresh machine pays the cold builds.
#   $NODE_CACHE/k8s-<version>/bin   kubelet, kube-apiserver, kube-controller-manager,
#                                   kube-scheduler, kubectl (Go module proxy, tests/node/k8s)
#   $NODE_CACHE/containerd-<version>/bin  containerd 2 (Go module proxy), unless
#                                   SRIOV_NODE_RUNTIME=containerd1.6
#   $NODE_CACHE/upstream            Multus v4.3.0 and the upstream peers (../shared/upstream)
#   $NODE_CACHE/debs                etcd-server, containerd, runc, busybox-static (unpacked)
#   $NODE_CACHE/base                the Debian root of our image (mmdebstrap)
#   $NODE_CACHE/images              pause and busybox images for the test pods
#   target/node/sriov-network.tar   our image, from the Dockerfile (tests/node/image.py)
#   $NODE_CACHE/peers               the upstream device plugin's and (patched) CNI's images,
#                                   for scenario 70 (tests/node/peers.sh)
#
#   build.sh [STEP...]   steps: apt_deps debs k8s containerd2 upstream pod_images our_image
#                        fake_tree_tool peers
set -euo pipefail
# shellcheck source=tests/node/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || die "build: run as root (apt-get, the cache in $NODE_CACHE)"
mkdir -p "$NODE_CACHE" "$IMAGES" "$NODE_TARGET"

# timed NAME CMD...: run CMD and record how long it took in $NODE_CACHE/timings.log.
timed() {
  local what=$1 t
  shift
  t=$(date +%s.%N)
  "$@"
  echo "$(date -u +%FT%TZ) $what $(since "$t")s" >>"$NODE_CACHE/timings.log"
  say "$what: $(since "$t")s"
}

# --- Debian tools on the machine ---------------------------------------------------------------
apt_deps() {
  local want=(iproute2 util-linux containernetworking-plugins mmdebstrap gcc libc6-dev openssl jq
    python3 curl procps patch) missing=()
  for p in "${want[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  say "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

go_cmd() {
  local g
  for g in "${GO:-}" "$(command -v go || true)" /usr/local/go/bin/go; do
    if [ -z "$g" ] || [ ! -x "$g" ]; then continue; fi
    if [ "$(printf '%s\n%s\n' 1.26.0 "$("$g" env GOVERSION | sed 's/^go//')" | sort -V | head -n1)" = 1.26.0 ]; then
      echo "$g"; return
    fi
  done
  die "build: need Go >= 1.26 (on PATH, \$GO, or /usr/local/go/bin)"
}

# --- Debian packages, unpacked (not installed: their services would start on the machine) ----
debs() {
  local dir=$NODE_CACHE/debs want have
  want=$(apt-cache policy "${NODE_DEBS[@]}" 2>/dev/null | awk '/^[a-z]/{p=$1} /Candidate:/{print p $2}' | tr -d '\n')
  have=$(cat "$dir/.stamp" 2>/dev/null || true)
  if [ -n "$want" ] && [ "$want" = "$have" ] && [ -x "$DEB_ROOT/usr/bin/containerd" ]; then return; fi
  say "Debian packages ${NODE_DEBS[*]}"
  rm -rf "$dir"
  mkdir -p "$dir/root"
  (cd "$dir" && apt-get download -o APT::Sandbox::User=root "${NODE_DEBS[@]}" >/dev/null) || {
    apt-get update -qq
    (cd "$dir" && apt-get download -o APT::Sandbox::User=root "${NODE_DEBS[@]}" >/dev/null)
  }
  for d in "$dir"/*.deb; do dpkg -x "$d" "$dir/root"; done
  want=$(apt-cache policy "${NODE_DEBS[@]}" 2>/dev/null | awk '/^[a-z]/{p=$1} /Candidate:/{print p $2}' | tr -d '\n')
  echo "$want" >"$dir/.stamp"
}

# --- Kubernetes, from the Go module proxy ------------------------------------------------------
k8s() {
  local go mod=$NODE_HERE/k8s stamp bins=(kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl)
  go=$(go_cmd)
  local minor ldflags
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  stamp=$(cat "$mod/go.mod" "$mod/go.sum" <("$go" env GOVERSION) <(echo "$ldflags") | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$K8S_BIN/.stamp" 2>/dev/null)" = "$stamp" ]; then return; fi
  say "go build ${bins[*]} $K8S_VERSION (cold: about 10 min on 2 cores)"
  mkdir -p "$K8S_BIN"
  local pkgs=()
  for b in "${bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  (cd "$mod" && GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false \
    nice -n 10 "$go" build -trimpath -ldflags "$ldflags" -o "$K8S_BIN/" "${pkgs[@]}")
  echo "$stamp" >"$K8S_BIN/.stamp"
}

# --- containerd 2, from the Go module proxy (SRIOV_NODE_RUNTIME=containerd2) ---------------
containerd2() {
  [ "$NODE_RUNTIME" = containerd2 ] || return 0
  local go stamp mod=github.com/containerd/containerd/v2 pkgs=()
  go=$(go_cmd)
  stamp="$CONTAINERD2_VERSION $("$go" env GOVERSION)"
  if [ "$(cat "$CONTAINERD2_BIN/.stamp" 2>/dev/null)" = "$stamp" ]; then return; fi
  say "go install containerd $CONTAINERD2_VERSION (cold: about 2 min)"
  mkdir -p "$CONTAINERD2_BIN"
  for c in containerd containerd-shim-runc-v2 ctr; do pkgs+=("$mod/cmd/$c@$CONTAINERD2_VERSION"); done
  # Static, and without the snapshotters that need C libraries (none is used here).
  (cd / && CGO_ENABLED=0 GOBIN=$CONTAINERD2_BIN GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false \
    nice -n 10 "$go" install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X $mod/version.Version=$CONTAINERD2_VERSION" "${pkgs[@]}")
  echo "$stamp" >"$CONTAINERD2_BIN/.stamp"
}

# --- Multus (and the other upstream peers) from the pinned tarballs ---------------------------
upstream() {
  [ -x "$UPSTREAM_SRC/build.sh" ] || die "build: no $UPSTREAM_SRC/build.sh (set SRIOV_UPSTREAM_DIR)"
  GO=$(go_cmd) nice -n 10 bash "$UPSTREAM_SRC/build.sh" "$UPSTREAM_OUT" >"$NODE_CACHE/upstream.log" 2>&1 ||
    { tail -n 30 "$NODE_CACHE/upstream.log" >&2; die "build: $UPSTREAM_SRC/build.sh failed"; }
  [ -x "$UPSTREAM_OUT/bin/multus" ] || die "build: no multus in $UPSTREAM_OUT/bin"
}

# --- the Debian root of our image --------------------------------------------------------------
base_tar() {
  local plan release pkgs key out mirror security
  plan=$(python3 "$NODE_HERE/image.py" plan "$NODE_REPO/Dockerfile")
  release=$(jq -r .release <<<"$plan")
  pkgs=$(jq -r '.packages | join(",")' <<<"$plan")
  key=$(echo "$release $pkgs" | sha256sum | cut -c1-12)
  out=$NODE_CACHE/base/debian-$release-slim-$key.tar
  if [ -s "$out" ]; then echo "$out"; return; fi
  mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1)
  [ -n "$mirror" ] || mirror=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1)
  security=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep security | head -n1)
  [ -n "$mirror" ] || die "build: no Debian mirror configured in /etc/apt"
  say "mmdebstrap $release (minbase${pkgs:+ + $pkgs}, slim: no docs, man pages, locales)"
  mkdir -p "$NODE_CACHE/base"
  # The path excludes are those of Debian's -slim images.
  nice -n 10 mmdebstrap --mode=root --variant=minbase --format=tar ${pkgs:+--include="$pkgs"} \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/groff/*' \
    --dpkgopt='path-exclude=/usr/share/linda/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    "$release" "$out.tmp" "deb $mirror $release main" "deb $mirror $release-updates main" \
    ${security:+"deb $security $release-security main"} </dev/null >"$NODE_CACHE/base/mmdebstrap.log" 2>&1 ||
    { tail -n 20 "$NODE_CACHE/base/mmdebstrap.log" >&2; die "build: mmdebstrap failed"; }
  mv "$out.tmp" "$out"
  echo "$out"
}

# --- our image: the Dockerfile's builder step, then its final stage -----------------------------
our_image() {
  local base bin
  base=$(base_tar)
  bash "$NODE_REPO/scripts/check-dockerfile.sh" >"$NODE_TARGET/check-dockerfile.log" 2>&1 ||
    { tail -n 30 "$NODE_TARGET/check-dockerfile.log" >&2; die "build: the Dockerfile's build step failed"; }
  # The image takes target/dist/<arch>/ (scripts/build-release.sh, run by check-dockerfile.sh).
  bin=$NODE_REPO/target/dist/amd64
  python3 "$NODE_HERE/image.py" build "$NODE_REPO/Dockerfile" "$NODE_REPO" "$base" "$bin" \
    "$NODE_TARGET/sriov-network.tar" "$NODE_IMAGE" >/dev/null
  python3 "$NODE_HERE/image.py" check "$NODE_REPO/Dockerfile" "$NODE_REPO" "$bin" \
    "$NODE_TARGET/sriov-network.tar" "$NODE_IMAGE"
}

# --- the pod sandbox (pause) and the test pods' busybox --------------------------------------
pod_images() {
  local go pause
  if [ ! -s "$IMAGES/pause.tar" ]; then
    go=$(go_cmd)
    pause=$(cd "$NODE_HERE/k8s" && "$go" list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
    gcc -Os -static -DVERSION="$K8S_VERSION" -o "$IMAGES/pause" "$pause"
    python3 "$NODE_HERE/image.py" pack "$IMAGES/pause.tar" localhost/pause:node '["/pause"]' "$IMAGES/pause:/pause" >/dev/null
  fi
  if [ ! -s "$IMAGES/busybox.tar" ]; then
    local links=()
    for a in sh ash sleep ip ls cat echo env ps hostname mount grep sed awk head tail wc tr \
      cut printf test true false kill date sync ifconfig ping wget nc; do links+=("link:/bin/$a=busybox"); done
    python3 "$NODE_HERE/image.py" pack "$IMAGES/busybox.tar" localhost/busybox:node '["/bin/sh"]' \
      "$DEB_ROOT/bin/busybox:/bin/busybox" "${links[@]}" >/dev/null
  fi
}

# --- the fake tree builder --------------------------------------------------------------------
fake_tree_tool() {
  (cd "$NODE_REPO" && cargo build -q -p sriov-tests --bin fake-sriov-node)
}

# --- the upstream stack's images (scenario 70) -----------------------------------------------
peers() {
  # shellcheck source=tests/node/peers.sh
  . "$NODE_HERE/peers.sh"
  peers_build
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(apt_deps debs k8s containerd2 upstream pod_images our_image fake_tree_tool peers)
for step in "${steps[@]}"; do
  case $step in
    apt_deps) timed "apt dependencies" apt_deps ;;
    debs) timed "Debian packages (${NODE_DEBS[*]})" debs ;;
    k8s) timed "Kubernetes $K8S_VERSION binaries" k8s ;;
    containerd2) timed "containerd $CONTAINERD2_VERSION" containerd2 ;;
    upstream) timed "upstream peers (Multus)" upstream ;;
    pod_images) timed "pause and busybox images" pod_images ;;
    our_image) timed "our image (Dockerfile)" our_image ;;
    fake_tree_tool) timed "fake-sriov-node" fake_tree_tool ;;
    peers) timed "upstream images (scenario 70)" peers ;;
    *) die "build: no step $step" ;;
  esac
done
