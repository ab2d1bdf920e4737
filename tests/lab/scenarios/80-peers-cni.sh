#!/bin/bash
# 80-peers-cni: our sriov CNI next to upstream sriov-cni v2.10.0 (unpatched) and Debian's
# host-device on real igb VFs: interleaved ADD/CHECK/DEL, wall and the plugin's own CPU time
# (docs/peers.md, "Side by side with upstream: CNI"). Prints the table; asserts only that every
# call of every plugin succeeded and the VFs are back as they were.
# Upstream's binary is the one bench/peers.sh builds into the cache and copies to
# target/peers/sriov-v2.10.0 (the guest sees the checkout, not the cache); the scenario fails
# when it is missing.
# Upstream keeps its state in /var/lib/cni/sriov (fixed): the guest gets a tmpfs over /var/lib.
# Every plugin runs from a copy on that tmpfs, as from a node's local disk: the checkout reaches
# the guest over 9p without a page cache, so a binary run from it is read again over 9p, page by
# page, on every exec (that was most of our and upstream's time here; docs/peers.md). When
# scripts/build-release.sh has run, the shipped (musl) sriov gets a row of its own.
# lab-timeout: 900
set -euo pipefail
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
lab_setup
# shellcheck source=tests/lab/cni-lib.sh
. "$LAB_REPO/tests/lab/cni-lib.sh"

UPSTREAM=$LAB_REPO/target/peers/sriov-v2.10.0
ROUNDS=${PEERS_ROUNDS:-20}
require "upstream sriov at $UPSTREAM (run bench/peers.sh first)" test -x "$UPSTREAM"
require "host-device" test -x /usr/lib/cni/host-device

step "set up 4 VFs and record them"
mount -t tmpfs -o mode=0755 peers /var/lib
mkdir -p /var/lib/cni/sriov "$CNI_STATE"
create_vfs 4
for i in 0 1 2 3; do check "PF's view of VF$i's MAC is its netdev's" wait_until 10 pf_view_settled "$i"; done
record_vf_state "$LAB_OUT/vf-before.txt"
: >"$LAB_OUT/netdevs-before.txt"
for i in 0 1 2 3; do netdev_state "$i" >>"$LAB_OUT/netdevs-before.txt"; done
make_pod peerpod
bin=/var/lib/peers-bin
mkdir -p "$bin"
cp "$LAB_BIN/sriov" "$bin/sriov"
cp "$UPSTREAM" "$bin/sriov-v2.10.0"
cp /usr/lib/cni/host-device "$bin/host-device"
shipped=()
if [ -x "$LAB_REPO/target/dist/amd64/sriov" ] && [ "$(uname -m)" = x86_64 ]; then
  cp "$LAB_REPO/target/dist/amd64/sriov" "$bin/sriov-shipped"
  shipped=("sriov (ours, shipped musl build)=$bin/sriov-shipped:$LAB_OUT/shipped.json")
fi

conf() { jq -n --arg t "$1" --arg d "$2" --arg k "$3" '{cniVersion: "1.0.0", name: "peers", type: $t} + {($k): $d}'; }
conf sriov "$(vf_pci 0)" deviceID >"$LAB_OUT/ours.json"
conf sriov "$(vf_pci 1)" deviceID >"$LAB_OUT/upstream.json"
conf host-device "$(vf_netdev 2)" device >"$LAB_OUT/host-device.json"
[ ${#shipped[@]} -eq 0 ] || conf sriov "$(vf_pci 3)" deviceID >"$LAB_OUT/shipped.json"

# udev gives a netdev that comes back to the host its old name as an altname, and upstream's
# DEL then fails to rename it back ("file exists"; docs/peers.md). Hold udev's event queue during
# the loop so upstream can be timed at all; the same holds for all three plugins.
udevadm control --stop-exec-queue
step "interleaved ADD/CHECK/DEL, $ROUNDS rounds: ours, upstream v2.10.0 (unpatched), host-device"
PEERS_POD=peerpod CNI_STATE=$CNI_STATE python3 "$LAB_REPO/tests/lab/peers-cni.py" "$ROUNDS" \
  "sriov (ours)=$bin/sriov:$LAB_OUT/ours.json" \
  "upstream sriov v2.10.0=$bin/sriov-v2.10.0:$LAB_OUT/upstream.json" \
  "${shipped[@]}" "host-device=$bin/host-device:$LAB_OUT/host-device.json" | tee "$LAB_OUT/peers-cni.txt"
udevadm control --start-exec-queue

step "every VF back as recorded"
check "PF's VF lines equal the recorded ones" compare_vf_state "$LAB_OUT/vf-before.txt"
for i in 0 1 2 3; do
  check "VF$i's netdev back as recorded" \
    test "$(netdev_state "$i")" = "$(grep "^VF$i " "$LAB_OUT/netdevs-before.txt")"
done
pass
