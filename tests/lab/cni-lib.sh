# shellcheck shell=bash
# Helpers shared by the CNI scenarios (20, 30, 40). Source after guest-lib.sh.

# cni_ok CMD ID NETNS IFNAME CONF: the product plugin through the `cni` helper; on failure its
# stdout (the CNI error JSON) is printed, so that `check` shows it.
cni_ok() {
  local rc=0
  cni "$@" || rc=$?
  [ "$rc" = 0 ] || cat "$LAB_OUT/cni-$(tr '[:upper:]' '[:lower:]' <<<"$1")-$2.json"
  return "$rc"
}

# netdev_state N: "VF<N> <name> <mac> mtu <mtu> <up|down>" for VF N's netdev in the host netns.
netdev_state() {
  local dev
  dev=$(vf_netdev "$1")
  [ -n "$dev" ] || { echo "VF$1 has no netdev in the host netns"; return 0; }
  ip -j link show "$dev" | jq -r --arg n "VF$1" \
    '.[0] | "\($n) \(.ifname) \(.address) mtu \(.mtu) \(if (.flags | any(. == "UP")) then "up" else "down" end)"'
}

# pod_link POD: one line describing net1 in POD (MAC, UP flag, addresses).
pod_link() {
  ip -n "$1" -j addr show net1 | jq -r \
    '.[0] | "\(.ifname) \(.address) \(.flags | join(",")) \([.addr_info[] | "\(.local)/\(.prefixlen)"] | join(" "))"'
}

# matches TEXT REGEX: TEXT matches the grep -E REGEX (TEXT is printed when not).
matches() { grep -Eq -- "$2" <<<"$1" || { echo "no match for /$2/ in: $1"; return 1; }; }

# lacks TEXT REGEX: TEXT does not match REGEX.
lacks() { ! grep -Eq -- "$2" <<<"$1" || { echo "/$2/ found in: $1"; return 1; }; }

# with_prev CONF RESULT: CONF with prevResult = RESULT, as a runtime sends CHECK and DEL.
with_prev() { jq --slurpfile r "$2" '. + {prevResult: $r[0]}' "$1"; }

# only_lo POD: the pod's netns has no link but lo.
only_lo() {
  local links
  links=$(ip -n "$1" -o link show | awk -F': ' '{ print $2 }' | tr '\n' ' ')
  [ "$links" = "lo " ] || { echo "$1 has: $links"; return 1; }
}

# no_state_files: no attachment state (*.json) left in $CNI_STATE (lock files may stay).
no_state_files() {
  local left
  left=$(find "$CNI_STATE" -maxdepth 1 -name '*.json' 2>/dev/null)
  [ -z "$left" ] || { echo "left: $left"; return 1; }
}

# pf_view_settled N: the PF reports VF N's netdev MAC (right after creation it can lag).
pf_view_settled() { vf_has "$1" "link/ether $(cat "/sys/class/net/$(vf_netdev "$1")/address") "; }
