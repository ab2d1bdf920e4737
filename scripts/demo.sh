#!/usr/bin/env bash
# The main job, shown on an emulated SR-IOV NIC: one command, any Linux box (Debian bookworm),
# no NIC needed.
#
#   scripts/demo.sh
#
# 1. installs what the lab needs (scripts/install-deps.sh lab: QEMU 10, a guest kernel,
#    virtme-ng, DPDK, the CNI reference plugins), printing a line per step that does work;
# 2. builds the binaries (cargo build --release);
# 3. boots a QEMU guest with an emulated Intel 82576 (igb, real SR-IOV) and runs the demo
#    scenario (tests/lab/scenarios/demo.sh) in it, showing its output live: the node inventory,
#    the VFs and pools of sriov-device-plugin, a kubelet's view with health, two pods getting VFs
#    through the sriov CNI and pinging each other, a DPDK pod answering a ping, and the teardown
#    restoring the NIC.
#
# Needs root and Rust (cargo). Takes a few minutes once installed (the guest is fully emulated).
# Exit status 0 only when every step passed. Logs: target/lab/demo.log (the guest's console),
# target/lab/demo/ (demo.txt, device plugin and CNI logs, testpmd output, CNI results).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out_root=${LAB_OUT_ROOT:-$repo/target/lab}
t_start=$(date +%s)

if [ -t 1 ]; then bold=$'\033[1m' off=$'\033[0m'; else bold="" off=""; fi
header() { printf '\n%s==================== %s ====================%s\n' "$bold" "$*" "$off"; }
die() { printf '%sdemo: %s%s\n' "$bold" "$*" "$off" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and boots a VM): sudo scripts/demo.sh"
command -v cargo >/dev/null || die "cargo not found: install Rust first (https://rustup.rs)"

header "1/3 Installing the lab's dependencies (scripts/install-deps.sh lab)"
bash "$repo/scripts/install-deps.sh" lab

header "2/3 Building (cargo build --release)"
(cd "$repo" && cargo build --release --workspace --bins)

header "3/3 Booting the emulated SR-IOV lab and running the demo"
echo "A QEMU guest with an emulated Intel 82576 (igb) boots (20-40 s under software emulation);"
echo "then the demo runs inside it. Guest console: ${out_root#"$repo"/}/demo.log"
# The guest writes its readable output to target/lab/demo/demo.txt (a directory it can write);
# follow that file while the lab runner works.
rm -rf "$out_root/demo" "$out_root/demo.log"
# On a failure the runner repeats the scenario's last lines, which were just shown: drop them.
LAB_OUT_ROOT=$out_root bash "$repo/scripts/lab.sh" --keep demo \
  2> >(sed -u '/^---- last 60 /,/^---- end of /d' >&2) &
lab_pid=$!
trap 'kill -TERM "$lab_pid" 2>/dev/null || true; wait "$lab_pid" 2>/dev/null; exit 130' INT TERM
tail -n +1 -F -s 0.5 --pid="$lab_pid" "$out_root/demo/demo.txt" 2>/dev/null &
tail_pid=$!
rc=0
wait "$lab_pid" || rc=$?
trap - INT TERM
wait "$tail_pid" 2>/dev/null || true

secs=$(( $(date +%s) - t_start ))
if [ "$rc" = 0 ]; then
  header "Demo passed in ${secs}s"
else
  header "Demo FAILED (exit $rc) after ${secs}s"
fi
echo "Logs: ${out_root#"$repo"/}/demo.log (guest console), ${out_root#"$repo"/}/demo/ (demo.txt, device-plugin.log, cni.log, testpmd.log, CNI results)"
exit "$rc"
