#!/bin/bash
# 00-igb-sanity: proves the lab itself with plain commands (no product binaries).
# The emulated igb PF is found and comes up; 4 VFs appear with igbvf netdevs; VF admin settings
# (mac, vlan+qos, spoofchk, trust, max_tx_rate) are set on the PF and read back; link_state is
# refused (igb does not support it); VF2 is restored exactly (the PF's VF lines equal those
# recorded before: the restore recipe the CNI needs); VF0 and VF1, each in its own netns on
# VLAN 100, ping each other; VF3 binds to vfio-pci and gets /dev/vfio/<group>; writing 0
# removes every VF.
set -euo pipefail
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
lab_setup

step "PF up"
ip link set "$PF_IF" up
check "PF $PF_IF is UP" sh -c "ip link show '$PF_IF' | grep -q '<.*,UP'"
check "sriov_totalvfs is 7" test "$(cat "$PF_SYS/sriov_totalvfs")" = 7
check "sriov_numvfs starts at 0" test "$(cat "$PF_SYS/sriov_numvfs")" = 0

step "create 4 VFs"
create_vfs 4
note "4 VFs with netdevs after ${VF_CREATE_SECS}s"
check "sriov_numvfs reads 4" test "$(cat "$PF_SYS/sriov_numvfs")" = 4
for i in 0 1 2 3; do
  check "VF$i $(vf_pci $i) is 8086:10ca" test "$(cat "$PF_SYS/virtfn$i/vendor"):$(cat "$PF_SYS/virtfn$i/device")" = 0x8086:0x10ca
  check "VF$i bound to igbvf" test "$(vf_driver $i)" = igbvf
  check "VF$i has netdev '$(vf_netdev $i)'" test -n "$(vf_netdev $i)"
  check "VF$i has its own IOMMU group $(basename "$(readlink "$PF_SYS/virtfn$i/iommu_group")")" \
    test -e "$PF_SYS/virtfn$i/iommu_group"
done
check "PF lists 4 VF lines" test "$(vf_lines | wc -l)" = 4
vf_lines | sed 's/^/    /'

step "VF admin settings on the PF (VF2)"
record_vf_state "$LAB_OUT/vf-before.txt"
vf2_mac=$(cat "/sys/class/net/$(vf_netdev 2)/address")
check "set vf 2 mac" ip link set "$PF_IF" vf 2 mac 02:00:00:00:02:02
check "set vf 2 vlan 200 qos 3" ip link set "$PF_IF" vf 2 vlan 200 qos 3
check "set vf 2 spoofchk off" ip link set "$PF_IF" vf 2 spoofchk off
check "set vf 2 trust on" ip link set "$PF_IF" vf 2 trust on
check "set vf 2 max_tx_rate 100" ip link set "$PF_IF" vf 2 max_tx_rate 100
note "$(vf_line 2)"
check "read back mac" vf_has 2 "link/ether 02:00:00:00:02:02"
check "read back vlan+qos" vf_has 2 "vlan 200" "qos 3"
check "read back spoofchk" vf_has 2 "spoof checking off"
check "read back trust" vf_has 2 "trust on"
check "read back max_tx_rate" vf_has 2 "max_tx_rate 100Mbps"
check_fails "link_state is refused (EOPNOTSUPP)" "Operation not supported" \
  ip link set "$PF_IF" vf 2 state enable
check "VF2 settings unchanged after the refused link_state" \
  vf_has 2 "link/ether 02:00:00:00:02:02" "vlan 200" "trust on"

check_fails "PF's VF lines differ from the recorded ones" "^[-+]vf 2 " compare_vf_state "$LAB_OUT/vf-before.txt"

step "restore VF2 exactly: settings off, admin MAC zero, then the netdev's own MAC"
check "clear vlan, spoofchk, trust, rate" \
  ip link set "$PF_IF" vf 2 vlan 0 spoofchk on trust off max_tx_rate 0
check "admin MAC 00:00:00:00:00:00" ip link set "$PF_IF" vf 2 mac 00:00:00:00:00:00
# The netdev still has its own MAC (a new admin MAC reaches it only on a driver reload), and the
# kernel does not call the driver for an unchanged address: go through a temporary MAC so the
# VF really asks the PF for its MAC again. Setting it directly leaves the PF showing 00:00:...
check "VF2 netdev via a temporary MAC" ip link set "$(vf_netdev 2)" address 02:00:00:00:02:99
check "VF2 netdev back to $vf2_mac" ip link set "$(vf_netdev 2)" address "$vf2_mac"
check "PF's VF lines equal the recorded ones" compare_vf_state "$LAB_OUT/vf-before.txt"

step "VF0 and VF1 in two netns on VLAN 100, ping"
make_pod podA
make_pod podB
i=0
for pod in podA podB; do
  mac=$([ "$i" = 0 ] && echo 02:00:00:00:00:0a || echo 02:00:00:00:00:0b)
  dev=$(vf_netdev $i)
  # The VF netdev's MAC first, then the same admin MAC on the PF: the other order is refused
  # for an untrusted VF (EADDRNOTAVAIL).
  check "VF$i netdev $dev mac $mac" ip link set "$dev" address "$mac"
  check "PF: vf $i mac $mac vlan 100" ip link set "$PF_IF" vf $i mac "$mac" vlan 100
  check "move $dev into $pod" ip link set "$dev" netns "$pod" name net1
  check "$pod: address 10.9.0.$((i + 1))/24" ip -n "$pod" addr add "10.9.0.$((i + 1))/24" dev net1
  check "$pod: net1 up" ip -n "$pod" link set net1 up
  i=$((i + 1))
done
check "podA net1 has carrier" wait_until 20 sh -c "ip -n podA link show net1 | grep -q LOWER_UP"
check "podB net1 has carrier" wait_until 20 sh -c "ip -n podB link show net1 | grep -q LOWER_UP"
check "VF0 netdev sysfs is empty from the host netns" test -z "$(vf_netdev 0)"
check "PF shows vf 0 vlan 100" vf_has 0 "link/ether 02:00:00:00:00:0a" "vlan 100"
check "PF shows vf 1 vlan 100" vf_has 1 "link/ether 02:00:00:00:00:0b" "vlan 100"
check "ping podA -> podB" ip netns exec podA ping -c 3 -i 0.3 -W 2 10.9.0.2
check "ping podB -> podA" ip netns exec podB ping -c 2 -i 0.3 -W 2 10.9.0.1

step "VF3 to vfio-pci"
vf3=$(vf_pci 3)
bind_vfio "$vf3"
check "VF3 $vf3 bound to vfio-pci" test "$(vf_driver 3)" = vfio-pci
check "/dev/vfio/$VFIO_GROUP exists" test -c "/dev/vfio/$VFIO_GROUP"
check "/dev/vfio/vfio exists" test -c /dev/vfio/vfio
check "VF3 has no netdev" test -z "$(vf_netdev 3)"

step "destroy VFs"
destroy_vfs
check "sriov_numvfs reads 0" test "$(cat "$PF_SYS/sriov_numvfs")" = 0
check "no VF lines on the PF" test "$(vf_lines | wc -l)" = 0
check "podA has no net1 left" sh -c "! ip -n podA link show net1"
check "/dev/vfio/$VFIO_GROUP is gone" wait_until 10 test ! -e "/dev/vfio/$VFIO_GROUP"

pass
