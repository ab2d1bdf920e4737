# shellcheck shell=bash
# The upstream stack on the test node, for the side-by-side scenario
# (tests/node/scenarios/70-upstream-side-by-side.sh, docs/peers.md): sriov-network-device-plugin
# v3.11.0 (`sriovdp`) and sriov-cni v2.10.0 (`sriov`) from the pinned tarballs in
# ../shared/upstream, deployed with the tarballs' own manifests.
#
#   peers_build                  the patched `sriov` and both images (cached; build.sh step)
#   peers_manifests > LIST.json  upstream's DaemonSets, ServiceAccount and ConfigMap, adapted
#   peers_sysfs                  the fake tree gets the kernel files upstream reads
#
# What is adapted, and why (nothing else is):
#   - images: built here without a registry, like ours (tests/node/image.py pack): upstream's
#     Dockerfiles install the binary, entrypoint.sh and (device plugin) hwdata-pci's pci.ids
#     on alpine; here the same files go on Debian's static busybox. The device plugin image
#     lacks ddptool (only used for Intel DDP profiles).
#   - the device plugin reads /sys (no root option): the fake tree is mounted there;
#   - the ConfigMap: upstream's example pools replaced by ours for the fake PS225 (same
#     selectors; v3.11.0 has no allocationPolicy and no provisioning);
#   - `sriov` is patched (tests/node/peers/sriov-cni-v2.10.0-veth-pf.patch): it reads sysfs
#     below SRIOV_SYSFS_ROOT, and a PF without a netlink VF list (a veth) is not an error.
# shellcheck source=tests/node/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PEERS_DIR=$NODE_CACHE/peers
PEERS_PATCH=$NODE_HERE/peers/sriov-cni-v2.10.0-veth-pf.patch
PEERS_DP_IMAGE=localhost/sriov-network-device-plugin:v3.11.0-node
PEERS_CNI_IMAGE=localhost/sriov-cni:v2.10.0-patched-node
PEERS_DP_TAR=$PEERS_DIR/sriov-network-device-plugin.tar
PEERS_CNI_TAR=$PEERS_DIR/sriov-cni.tar
PEERS_CNI_BIN=$PEERS_DIR/bin/sriov-patched
PEERS_DP_SRC=sriov-network-device-plugin-v3.11.0
PEERS_CNI_SRC=sriov-cni-v2.10.0

# peers_build: the patched `sriov` (go build from the tarball, as ../shared/upstream/build.sh
# builds the unpatched one) and both images. Each output is keyed by a hash of its inputs.
peers_build() {
  local go want src pciids dp_bin=$UPSTREAM_OUT/bin/sriovdp links=()
  [ -x "$dp_bin" ] || die "peers: no $dp_bin (the upstream build step)"
  for f in "$PEERS_CNI_SRC" "$PEERS_DP_SRC" cni-log-b6e062c9e0f2; do
    [ -s "$UPSTREAM_SRC/$f.tar.gz" ] || die "peers: no $UPSTREAM_SRC/$f.tar.gz (set SRIOV_UPSTREAM_DIR)"
  done
  mkdir -p "$PEERS_DIR/bin"
  go=$(go_cmd)
  want=$(cat "$UPSTREAM_SRC/$PEERS_CNI_SRC.tar.gz" "$UPSTREAM_SRC/cni-log-b6e062c9e0f2.tar.gz" \
    "$PEERS_PATCH" <("$go" env GOVERSION) | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$PEERS_CNI_BIN.stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$PEERS_CNI_BIN" ]; then
    say "go build sriov-cni v2.10.0 with tests/node/peers/$(basename "$PEERS_PATCH")"
    src=$PEERS_DIR/src
    rm -rf "$src"
    mkdir -p "$src"
    tar -xzf "$UPSTREAM_SRC/$PEERS_CNI_SRC.tar.gz" -C "$src"
    tar -xzf "$UPSTREAM_SRC/cni-log-b6e062c9e0f2.tar.gz" -C "$src"
    (cd "$src/$PEERS_CNI_SRC" && patch -s -p1 <"$PEERS_PATCH" &&
      "$go" mod edit -replace=github.com/k8snetworkplumbingwg/cni-log=../cni-log-b6e062c9e0f2 &&
      CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off nice -n 10 "$go" build -trimpath -buildvcs=false \
        -mod=readonly -tags no_openssl -o "$PEERS_CNI_BIN" ./cmd/sriov)
    rm -rf "$src"
    echo "$want" >"$PEERS_CNI_BIN.stamp"
  fi
  # pci.ids, which ghw (the device plugin's PCI discovery) needs: upstream's image installs
  # alpine's hwdata-pci; here Debian's pci.ids package, unpacked.
  pciids=$PEERS_DIR/pci.ids/usr/share/misc/pci.ids
  if [ ! -s "$pciids" ]; then
    rm -rf "$PEERS_DIR/pci.ids"
    mkdir -p "$PEERS_DIR/pci.ids"
    (cd "$PEERS_DIR/pci.ids" && { apt-get download -o APT::Sandbox::User=root pci.ids >/dev/null ||
      { apt-get update -qq && apt-get download -o APT::Sandbox::User=root pci.ids >/dev/null; }; } &&
      dpkg -x pci.ids_*.deb . && rm -f pci.ids_*.deb)
    [ -s "$pciids" ] || die "peers: no pci.ids from Debian's pci.ids package"
  fi
  want=$(cat "$dp_bin" "$PEERS_CNI_BIN" "$pciids" "$DEB_ROOT/bin/busybox" "$NODE_HERE/image.py" \
    "$UPSTREAM_SRC/$PEERS_DP_SRC.tar.gz" "$UPSTREAM_SRC/$PEERS_CNI_SRC.tar.gz" | sha256sum | cut -d' ' -f1)
  [ "$(cat "$PEERS_DIR/images.stamp" 2>/dev/null)" = "$want" ] && [ -s "$PEERS_DP_TAR" ] && [ -s "$PEERS_CNI_TAR" ] && return
  tar -xzOf "$UPSTREAM_SRC/$PEERS_DP_SRC.tar.gz" "$PEERS_DP_SRC/images/entrypoint.sh" >"$PEERS_DIR/dp-entrypoint.sh"
  tar -xzOf "$UPSTREAM_SRC/$PEERS_CNI_SRC.tar.gz" "$PEERS_CNI_SRC/images/entrypoint.sh" >"$PEERS_DIR/cni-entrypoint.sh"
  for a in sh echo awk mkdir cp sleep cat ls; do links+=("link:/bin/$a=busybox"); done
  python3 "$NODE_HERE/image.py" pack "$PEERS_DP_TAR" "$PEERS_DP_IMAGE" '["/entrypoint.sh"]' \
    "$dp_bin:/usr/bin/sriovdp" "$PEERS_DIR/dp-entrypoint.sh:/entrypoint.sh" \
    "$pciids:/usr/share/hwdata/pci.ids:0644" "$DEB_ROOT/bin/busybox:/bin/busybox" "${links[@]}" >/dev/null
  python3 "$NODE_HERE/image.py" pack "$PEERS_CNI_TAR" "$PEERS_CNI_IMAGE" '["/entrypoint.sh"]' \
    "$PEERS_CNI_BIN:/usr/bin/sriov" "$PEERS_DIR/cni-entrypoint.sh:/entrypoint.sh" \
    "$DEB_ROOT/bin/busybox:/bin/busybox" "${links[@]}" >/dev/null
  echo "$want" >"$PEERS_DIR/images.stamp"
}

# peers_manifests: upstream's deployments/sriovdp-daemonset.yaml, deployments/configMap.yaml
# and images/sriov-cni-daemonset.yaml as one v1 List (JSON), adapted as the header says.
peers_manifests() {
  local pools
  pools=$(jq -c '.resourceList |= map(del(.allocationPolicy)) | {resourceList}' \
    <(kc create --dry-run=client -o json -f "$NODE_HERE/overlay/config.yaml" | jq -r '.data["config.json"]'))
  {
    tar -xzOf "$UPSTREAM_SRC/$PEERS_DP_SRC.tar.gz" "$PEERS_DP_SRC/deployments/sriovdp-daemonset.yaml"
    echo "---"
    tar -xzOf "$UPSTREAM_SRC/$PEERS_DP_SRC.tar.gz" "$PEERS_DP_SRC/deployments/configMap.yaml"
    echo "---"
    tar -xzOf "$UPSTREAM_SRC/$PEERS_CNI_SRC.tar.gz" "$PEERS_CNI_SRC/images/sriov-cni-daemonset.yaml"
  } | kc create --dry-run=client -o json -f - |
    jq -s --arg dp "$PEERS_DP_IMAGE" --arg cni "$PEERS_CNI_IMAGE" --arg sys "$NODE_SYSFS" --arg pools "$pools" '
      [.[] | if .kind == "List" then .items[] else . end] | {apiVersion: "v1", kind: "List", items: map(
        if .kind == "DaemonSet" and .metadata.name == "kube-sriov-device-plugin" then
          .spec.template.spec.containers[0].image = $dp
          | .spec.template.spec.containers[0].volumeMounts += [{name: "fake-sysfs", mountPath: "/sys"}]
          | .spec.template.spec.volumes += [{name: "fake-sysfs", hostPath: {path: $sys, type: "Directory"}}]
        elif .kind == "DaemonSet" and .metadata.name == "kube-sriov-cni-ds" then
          .spec.template.spec.containers[0].image = $cni
        elif .kind == "ConfigMap" and .metadata.name == "sriovdp-config" then
          .data["config.json"] = $pools
        else . end)}'
}

# peers_sysfs: two kernel files the fake tree (made for our plugin and CNI, which do not read
# them) lacks and upstream needs: every PCI device's `modalias` (ghw, the device plugin's PCI
# discovery, finds its candidates by it; written from the vendor, device and class files) and
# every netdev's `device` link to its PCI device (the CNI reads `class/net/<PF>/device/...`).
peers_sysfs() {
  # shellcheck disable=SC2016 # expanded inside the node
  innode sh -euc '
    for d in "$1"/bus/pci/devices/*/; do
      v=$(cat "$d/vendor") p=$(cat "$d/device") c=$(cat "$d/class")
      sv=$(cat "$d/subsystem_vendor" 2>/dev/null || echo 0x0000)
      sp=$(cat "$d/subsystem_device" 2>/dev/null || echo 0x0000)
      printf "pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X\n" "$v" "$p" "$sv" "$sp" \
        $(( c >> 16 )) $(( (c >> 8) & 255 )) $(( c & 255 )) >"$d/modalias"
    done
    for n in "$1"/class/net/*; do
      dev=$(readlink -f "$n")
      pci=$(basename "$(dirname "$(dirname "$dev")")")
      [ -e "$dev/device" ] || ln -s "../../../$pci" "$dev/device"
    done
  ' _ "$NODE_SYSFS"
}
