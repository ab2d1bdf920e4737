#!/bin/bash
# facts-igb: measures and prints what the emulated igb and the guest can and cannot do, as
# "FACT:" lines (docs/lab.md records the results). Not part of "all": run it explicitly with
# scripts/lab.sh facts-igb. It fails only when the lab itself is broken.
set -euo pipefail
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
lab_setup

fact() { printf 'FACT: %s\n' "$*"; }
# try CMD...: run CMD, print its status and output on one line.
try() {
  local out rc=0
  out=$(trap - ERR; "$@" 2>&1) || rc=$?
  printf 'rc=%s %s' "$rc" "$(tr '\n' ' ' <<<"$out")"
}

step "guest"
fact "udevd running: $(pgrep -c systemd-udevd || echo 0) process(es)"
fact "cpus: $(nproc); memory: $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
fact "iommu groups: $(find /sys/kernel/iommu_groups -mindepth 1 -maxdepth 1 | wc -l)"

step "VF creation timing"
ip link set "$PF_IF" up
create_vfs 4
fact "create 4 VFs (write to netdevs + udev settle): ${VF_CREATE_SECS}s"
fact "VF names: $(for i in 0 1 2 3; do printf '%s ' "$(vf_netdev $i)"; done)"
fact "4 -> 6 without writing 0 first: $(try bash -c "echo 6 > $PF_SYS/sriov_numvfs")"
destroy_vfs
create_vfs 7
fact "create 7 VFs: ${VF_CREATE_SECS}s"
destroy_vfs
fact "8 VFs: $(try bash -c "echo 8 > $PF_SYS/sriov_numvfs")"
create_vfs 4

step "VF state right after creation"
vf_lines | sed 's/^/    /'
for i in 0 1 2 3; do
  fact "VF$i netdev MAC $(cat "/sys/class/net/$(vf_netdev $i)/address"), PF view: $(vf_line $i | awk '{print $4}')"
done

step "admin settings"
fact "vlan 100 proto 802.1ad: $(try ip link set "$PF_IF" vf 2 vlan 100 proto 802.1ad)"
fact "vlan 100 proto 802.1Q: $(try ip link set "$PF_IF" vf 2 vlan 100 proto 802.1Q)"
fact "vlan 4095: $(try ip link set "$PF_IF" vf 2 vlan 4095)"
fact "vlan 0 (clear): $(try ip link set "$PF_IF" vf 2 vlan 0)"
fact "state enable: $(try ip link set "$PF_IF" vf 2 state enable)"
fact "state auto: $(try ip link set "$PF_IF" vf 2 state auto)"
fact "state disable: $(try ip link set "$PF_IF" vf 2 state disable)"
fact "min_tx_rate 10: $(try ip link set "$PF_IF" vf 2 min_tx_rate 10)"
fact "max_tx_rate 2000 (above link speed): $(try ip link set "$PF_IF" vf 2 max_tx_rate 2000)"
fact "max_tx_rate 0 (clear): $(try ip link set "$PF_IF" vf 2 max_tx_rate 0)"
fact "query_rss on: $(try ip link set "$PF_IF" vf 2 query_rss on)"
fact "rate via 'rate 10': $(try ip link set "$PF_IF" vf 2 rate 10)"
fact "mac 00:00:00:00:00:00: $(try ip link set "$PF_IF" vf 2 mac 00:00:00:00:00:00)"
fact "after clear: $(vf_line 2)"
fact "VF2 ip -j vfinfo keys: $(ip -j -d link show "$PF_IF" | jq -c '.[0].vfinfo_list[2] | keys' 2>&1 || true)"

step "MAC order on an untrusted VF"
dev3=$(vf_netdev 3)
ip link set "$PF_IF" vf 3 mac 02:00:00:00:03:01
fact "netdev MAC after admin MAC (untrusted): $(try ip link set "$dev3" address 02:00:00:00:03:02)"
ip link set "$PF_IF" vf 3 trust on
fact "netdev MAC after admin MAC (trusted): $(try ip link set "$dev3" address 02:00:00:00:03:02)"
ip link set "$PF_IF" vf 3 trust off

step "admin MAC across VF driver rebinds"
vf1=$(vf_pci 1)
dev1=$(vf_netdev 1)
ip link set "$dev1" address 02:00:00:00:01:01
ip link set "$PF_IF" vf 1 mac 02:00:00:00:01:01 vlan 100
fact "before rebind: PF view $(vf_line 1 | cut -d, -f1-2), netdev $(cat "/sys/class/net/$dev1/address")"
echo "$vf1" >/sys/bus/pci/drivers/igbvf/unbind
echo "$vf1" >/sys/bus/pci/drivers/igbvf/bind
udevadm settle -t 10 || true
wait_until 10 test -n "$(vf_netdev 1)" || true
fact "after igbvf unbind+bind: PF view $(vf_line 1 | cut -d, -f1-2), netdev $(vf_netdev 1) $(cat "/sys/class/net/$(vf_netdev 1)/address" 2>/dev/null)"
bind_vfio "$vf1"
fact "bound to vfio-pci: PF view $(vf_line 1 | cut -d, -f1-2)"
unbind_vfio "$vf1"
wait_until 10 test -n "$(vf_netdev 1)" || true
fact "back to igbvf: driver $(vf_driver 1), PF view $(vf_line 1 | cut -d, -f1-2), netdev $(vf_netdev 1) $(cat "/sys/class/net/$(vf_netdev 1)/address" 2>/dev/null)"

step "max_tx_rate effect (flood ping VF0 -> VF1, 1400-byte payload, 4 s)"
make_pod rA
make_pod rB
d0=$(vf_netdev 0)
d2=$(vf_netdev 2)
ip link set "$PF_IF" vf 2 max_tx_rate 0
ip link set "$d0" address 02:00:00:00:00:0a
ip link set "$PF_IF" vf 0 mac 02:00:00:00:00:0a vlan 0
ip link set "$d2" address 02:00:00:00:00:0c
ip link set "$PF_IF" vf 2 mac 02:00:00:00:00:0c vlan 0
ip link set "$d0" netns rA name net1
ip link set "$d2" netns rB name net1
ip -n rA addr add 10.8.0.1/24 dev net1
ip -n rB addr add 10.8.0.2/24 dev net1
ip -n rA link set net1 up
ip -n rB link set net1 up
wait_until 20 sh -c "ip -n rA link show net1 | grep -q LOWER_UP" || true
wait_until 20 sh -c "ip -n rB link show net1 | grep -q LOWER_UP" || true
ip netns exec rA ping -c 2 -W 2 10.8.0.2 >/dev/null || note "warm-up ping failed"
flood() { ip netns exec rA ping -q -f -s 1400 -w 4 10.8.0.2 2>&1 | grep -E 'packets transmitted' || true; }
fact "no limit: $(flood)"
ip link set "$PF_IF" vf 0 max_tx_rate 1
fact "max_tx_rate 1 Mbps on VF0: $(flood)"
ip link set "$PF_IF" vf 0 max_tx_rate 0
fact "limit cleared: $(flood)"

step "VF link vs PF link"
dev0=$(vf_netdev 1)
ip link set "$dev0" up
wait_until 10 sh -c "ip link show $dev0 | grep -q LOWER_UP" || true
fact "VF1 with PF up: $(ip -br link show "$dev0")"
ip link set "$PF_IF" vf 3 mac 00:00:00:00:00:00
fact "VF3 sets its MAC after its admin MAC was cleared: $(try ip link set "$(vf_netdev 3)" address 02:00:00:00:03:0a)"
t0=$(date +%s.%N)
ip link set "$PF_IF" down
wait_until 10 sh -c "ip link show $dev0 | grep -q NO-CARRIER" || true
fact "VF1 lost carrier $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s after PF down"
sleep 1
fact "VF1 with PF down: $(ip -br link show "$dev0"); PF $(ip -br link show "$PF_IF" | awk '{print $2}')"
fact "sriov_numvfs with PF down: $(cat "$PF_SYS/sriov_numvfs"), VF lines $(vf_lines | wc -l)"
t0=$(date +%s.%N)
ip link set "$PF_IF" up
wait_until 20 sh -c "ip link show $dev0 | grep -q LOWER_UP" || true
fact "VF1 after PF up again: $(ip -br link show "$dev0"), carrier after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
fact "PF carrier file: $(cat "/sys/class/net/$PF_IF/carrier"), operstate $(cat "/sys/class/net/$PF_IF/operstate")"

fact "VF3 (netdev down) sets its MAC after a PF down/up: $(try ip link set "$(vf_netdev 3)" address 02:00:00:00:03:03)"
ip link set "$(vf_netdev 3)" up
sleep 3
fact "same after VF3 netdev up: $(try ip link set "$(vf_netdev 3)" address 02:00:00:00:03:03)"

step "VFs in a netns when sriov_numvfs goes to 0"
fact "write 0 with VF0 in netns rA: $(try bash -c "echo 0 > $PF_SYS/sriov_numvfs"); rA links now: $(ip -n rA -br link | awk '{print $1}' | tr '\n' ' ')"

pass
