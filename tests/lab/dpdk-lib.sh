# shellcheck shell=bash
# Guest-side helpers for pods with a DPDK application (70-dpdk-handoff, demo). Source after
# guest-lib.sh and lab_setup.

# hugepages_setup N: N x 2 MiB hugepages on the node, hugetlbfs on /dev/hugepages.
hugepages_setup() {
  mkdir -p /dev/hugepages
  mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
  echo "$1" >/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
  [ "$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)" = "$1" ] \
    || fail "could not reserve $1 hugepages"
}

# hugepages_free: free 2 MiB hugepages on the node.
hugepages_free() { cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages; }

# lab_netconf DEVICEID MAC [EXTRA_JSON]: the config Multus passes to the CNI for one attachment
# (deviceID filled in) of network "lab-vlan100": VLAN 100, the given MAC, host-local addresses
# from 10.9.0.0/24; EXTRA_JSON is merged in (e.g. trust, runtimeConfig).
lab_netconf() {
  local extra=${3:-"{}"}
  jq -n --arg id "$1" --arg mac "$2" --argjson extra "$extra" '{
    cniVersion: "1.0.0", name: "lab-vlan100", type: "sriov", deviceID: $id,
    vlan: 100, mac: $mac, logLevel: "debug",
    ipam: {type: "host-local", subnet: "10.9.0.0/24", rangeStart: "10.9.0.10",
           rangeEnd: "10.9.0.50", dataDir: "/run/lab-ipam"}
  } + $extra'
}

# cni_ip ID: the first address (without prefix length) of the ADD result of attachment ID.
cni_ip() { jq -r '.ips[0].address' "$LAB_OUT/cni-add-$1.json" | cut -d/ -f1; }

# TESTPMD_ARGS: dpdk-testpmd in icmpecho mode (answers ARP and ICMP echo for any address) on
# two cores, hugepages in memory only; --stats-period keeps it running without a TTY and prints
# the port statistics every 5 s.
TESTPMD_ARGS=(dpdk-testpmd -l 0-1 -n 1 --in-memory -- --forward-mode=icmpecho --auto-start --stats-period 5)

# dpdk_pod_start ALLOCATIONS POD RESOURCE LOG: start the DPDK pod POD as a container would
# start (tests/lab/pod-run.sh): deploy/dpdk-launcher.sh --resource RESOURCE, then testpmd. Its
# output goes to LOG. Sets TESTPMD_PID; stopped with SIGINT at the end of the scenario.
dpdk_pod_start() {
  local alloc=$1 pod=$2 res=$3 log=$4
  "$LAB_REPO/tests/lab/pod-run.sh" "$alloc" "$pod" "$LAB_REPO/deploy/dpdk-launcher.sh" \
    --resource "$res" -- "${TESTPMD_ARGS[@]}" </dev/null >"$log" 2>&1 &
  TESTPMD_PID=$!
  # shellcheck disable=SC2016 # evaluated at cleanup time
  on_cleanup '[ -z "$TESTPMD_PID" ] || stop_bg "$TESTPMD_PID" INT 30'
}

# dpdk_pod_stop: SIGINT (testpmd stops forwarding, prints its statistics, closes the port and
# frees its hugepages), bounded wait; returns testpmd's status.
dpdk_pod_stop() {
  local rc=0
  stop_bg "$TESTPMD_PID" INT 60 || rc=$?
  TESTPMD_PID=""
  return "$rc"
}

# testpmd_forwarding LOG: testpmd has started forwarding.
testpmd_forwarding() { grep -q 'Start automatic packet forwarding\|icmpecho packet forwarding' "$1"; }

# testpmd_stat LOG COUNTER: the last value of COUNTER (RX-packets, TX-packets) testpmd printed.
testpmd_stat() { grep -a -o "$2: *[0-9]*" "$1" | tail -n1 | awk '{print $2}'; }

# cni_del ID NETNS IFNAME CONF: CNI DEL of attachment ID; on failure print the plugin's error
# and every link (with its altnames) in the host and in NETNS, then return 1.
cni_del() {
  if cni DEL "$@"; then return 0; fi
  echo "CNI DEL $1 failed: $(cat "$LAB_OUT/cni-del-$1.json" 2>/dev/null)"
  ip -d link show | sed 's/^/host| /'
  ip -n "$2" -d link show 2>&1 | sed "s/^/$2| /"
  return 1
}

# altnames NETNS IFNAME: the altnames of a link (empty when none).
altnames() { ip -n "$1" -d link show "$2" 2>/dev/null | awk '$1 == "altname" {printf "%s ", $2}'; }
