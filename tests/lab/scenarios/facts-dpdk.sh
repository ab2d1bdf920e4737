#!/bin/bash
# facts-dpdk: a real DPDK application on a VF. dpdk-testpmd (Debian's dpdk-dev) drives VF1
# through vfio-pci in icmpecho mode; VF0 stays a kernel netdev in a netns; both on VLAN 100 via
# PF admin settings. A ping from the netns must be answered by testpmd. Not part of "all" yet
# (it is the draft of a DPDK scenario): scripts/lab.sh facts-dpdk.
# lab-timeout: 420
set -euo pipefail
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
lab_setup

step "hugepages"
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
echo 256 >/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
check "256 x 2 MiB hugepages" test "$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)" = 256

step "2 VFs; VF0 kernel netdev in a netns, VF1 on vfio-pci"
create_vfs 2
dev0=$(vf_netdev 0)
ip link set "$dev0" address 02:00:00:00:00:0a
ip link set "$PF_IF" vf 0 mac 02:00:00:00:00:0a vlan 100
make_pod podK
ip link set "$dev0" netns podK name net1
ip -n podK addr add 10.9.0.1/24 dev net1
ip -n podK link set net1 up
vf1=$(vf_pci 1)
bind_vfio "$vf1"
ip link set "$PF_IF" vf 1 mac 02:00:00:00:00:0b vlan 100 trust on
note "$(vf_line 1)"

step "dpdk-testpmd icmpecho on $vf1"
t0=$(date +%s)
dpdk-testpmd -l 0-1 -n 1 -a "$vf1" --in-memory -- --forward-mode=icmpecho --auto-start \
  --stats-period 5 </dev/null >"$LAB_OUT/testpmd.log" 2>&1 &
tp=$!
on_cleanup "stop_bg $tp INT 20"
# shellcheck disable=SC2317 # called through wait_until
started() { grep -q 'Start automatic packet forwarding\|Press enter to exit\|icmpecho packet forwarding' "$LAB_OUT/testpmd.log"; }
if wait_until 180 started; then
  note "testpmd forwarding after $(( $(date +%s) - t0 ))s"
else
  sed 's/^/    | /' "$LAB_OUT/testpmd.log" | tail -n 40
  fail "testpmd did not start forwarding within 180 s"
fi
check "testpmd still running" kill -0 "$tp"
check "ping podK -> testpmd (10.9.0.2)" ip netns exec podK ping -c 5 -i 0.5 -W 3 10.9.0.2
note "ping answered $(( $(date +%s) - t0 ))s after testpmd started"
note "neighbour: $(ip -n podK neigh show 10.9.0.2)"
grep -E 'EAL|net_e1000|Port 0|Link' "$LAB_OUT/testpmd.log" | head -n 20 | sed 's/^/    | /'

pass
