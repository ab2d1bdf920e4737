#!/bin/bash
# 40-rollback: a PF-side setting the driver refuses fails ADD cleanly.
# Must show:
#   - setup (raw helpers): 4 VFs on igbvf; PF's VF lines, VF0's netdev name, MAC, netns recorded;
#   - CNI ADD VF0 with a netconf that sets mac, vlan 100 and link_state "enable" (igb does not
#     support VF link state: EOPNOTSUPP) fails (non-zero exit) with an error JSON of code 101
#     whose message names the setting (link_state) and the driver's error (EOPNOTSUPP: "Operation
#     not supported (os error 95)", musl builds: "Not supported (os error 95)");
#   - afterwards VF0 is exactly as before: the PF's VF lines equal the recorded ones (the vlan
#     applied before link_state was undone; the plugin sets the admin MAC only after the netdev
#     moved, so it was never set), the netdev is in the host netns under its original name and
#     MAC, the pod netns has only lo, no state file is left;
#   - a following ADD of the same VF without link_state succeeds (nothing was left locked), and
#     its DEL restores VF0 exactly too.
# lab-timeout: 600
set -euo pipefail
# shellcheck source=tests/lab/guest-lib.sh
. "$LAB_REPO/tests/lab/guest-lib.sh"
lab_setup
# shellcheck source=tests/lab/cni-lib.sh
. "$LAB_REPO/tests/lab/cni-lib.sh"

step "set up 4 VFs (raw) and record VF0"
create_vfs 4
note "4 VFs with netdevs after ${VF_CREATE_SECS}s"
check "PF's view of VF0's MAC is its netdev's" wait_until 10 pf_view_settled 0
record_vf_state "$LAB_OUT/vf-before.txt"
netdev_state 0 >"$LAB_OUT/netdev-before.txt"
vf0=$(vf_pci 0)
dev0=$(vf_netdev 0)
note "PF $PF_IF VF lines before ADD:"
sed 's/^/      /' "$LAB_OUT/vf-before.txt"
note "VF0 netdev before ADD (host netns): $(cat "$LAB_OUT/netdev-before.txt")"
make_pod podR

cat >"$LAB_OUT/net-r.json" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "lab-sriov",
  "type": "sriov",
  "deviceID": "$vf0",
  "mac": "02:00:00:00:00:0a",
  "vlan": 100,
  "link_state": "enable",
  "logLevel": "debug"
}
JSON
jq 'del(.link_state)' "$LAB_OUT/net-r.json" >"$LAB_OUT/net-r-ok.json"

# restored_exactly: the checks that VF0 is exactly as recorded.
restored_exactly() {
  note "PF $PF_IF VF lines now:"
  vf_lines | sed 's/^/      /'
  note "VF0 netdev now: $(netdev_state 0)"
  check "PF's VF lines equal the recorded ones" compare_vf_state "$LAB_OUT/vf-before.txt"
  check "VF0's netdev in the host netns: name $dev0, MAC, MTU, up/down as recorded" \
    diff -u "$LAB_OUT/netdev-before.txt" <(netdev_state 0)
  check "podR has only lo" only_lo podR
  check "no state file left in $CNI_STATE" no_state_files
}

step "CNI ADD VF0 $vf0 with mac, vlan 100 and link_state enable (igb: EOPNOTSUPP)"
echo "== the refused ADD" >>"$LAB_OUT/cni.log"
rc=0
cni ADD c-r podR net1 "$LAB_OUT/net-r.json" || rc=$?
err=$LAB_OUT/cni-add-c-r.json
cp "$err" "$LAB_OUT/cni-add-c-r-refused.json"
note "exit status $rc, stdout: $(jq -c . "$err" 2>&1)"
check "ADD fails (non-zero exit status)" test "$rc" != 0
check "error JSON: code 101" jq -e '.code == 101' "$err"
msg=$(jq -r '.msg' "$err")
check "message names the setting: link_state" matches "$msg" '^link_state: '
# EOPNOTSUPP in the libc's words: glibc (amd64) "Operation not supported", musl (arm64) "Not
# supported"; the errno is the same on both.
check "message carries the driver's error: EOPNOTSUPP (os error 95)" \
  matches "$msg" '(Operation not supported|Not supported) \(os error 95\)'
check "no 'undo incomplete' details" jq -e '.details == null' "$err"
# The plugin's debug log shows the vlan set, then link_state refused, then the vlan undone.
sed -n '/^== the refused ADD/,$p' "$LAB_OUT/cni.log" >"$LAB_OUT/cni-refused.log"
grep -E 'set VF|undoing' "$LAB_OUT/cni-refused.log" | sed 's/^[^ ]* *//; s/^/      log: /' || true
check "the log shows the vlan set twice (applied, then undone)" \
  test "$(grep -c 'set VF VLAN' "$LAB_OUT/cni-refused.log")" = 2

step "VF0 exactly as before the refused ADD"
restored_exactly

step "ADD again without link_state (nothing left locked or half-applied)"
check "ADD c-r (podR net1) succeeds" cni_ok ADD c-r podR net1 "$LAB_OUT/net-r-ok.json"
check "vf 0: mac :0a, vlan 100" vf_has 0 "link/ether 02:00:00:00:00:0a " "vlan 100,"
check "podR net1 has MAC 02:00:00:00:00:0a" matches "$(pod_link podR)" '^net1 02:00:00:00:00:0a '
check "DEL c-r" cni_ok DEL c-r podR net1 "$LAB_OUT/net-r-ok.json"

step "VF0 exactly as before, after the DEL"
restored_exactly

pass
