# shellcheck shell=bash
# Guest-side helpers for the lab scenarios. Source it first thing, then call lab_setup:
#
#   #!/bin/bash
#   set -euo pipefail
#   . "$LAB_REPO/tests/lab/guest-lib.sh"
#   lab_setup                 # modules, PF discovery: PF_PCI, PF_IF, PF_SYS
#   step "create VFs"; create_vfs 4
#   check "VF0 has a netdev" test -n "$(vf_netdev 0)"
#   pass
#
# Every scenario ends with exactly one marker line "LAB-RESULT: PASS <name>" or
# "LAB-RESULT: FAIL <name>: <reason>", on the console and in $LAB_OUT/result. An unexpected
# error (set -e) or an exit without pass/fail still produces a FAIL marker naming the line.

LAB_NAME=${LAB_NAME:-$(basename "${0%.sh}")}
LAB_OUT=${LAB_OUT:-/tmp/lab-out}
LAB_BIN=${LAB_BIN:-}
LAB_REPO=${LAB_REPO:-}
# Rust tests run inside the guest check SRIOV_LAB to know they may touch the real devices.
SRIOV_LAB=1
export LAB_NAME LAB_OUT LAB_BIN LAB_REPO SRIOV_LAB

_lab_fails=()
_lab_done=""
_lab_pid=$BASHPID
_lab_netns=()
_lab_t0=$(date +%s.%N)

# --- progress and results ---------------------------------------------------------------------

_lab_elapsed() { awk -v a="$_lab_t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%6.1f", b - a }'; }

# step TEXT: a readable progress line.
step() { printf '\n[%ss] == %s\n' "$(_lab_elapsed)" "$*"; }

# note TEXT: an informational line (facts, measured values).
note() { printf '[%ss]    %s\n' "$(_lab_elapsed)" "$*"; }

_lab_marker() {
  local line=$1
  mkdir -p "$LAB_OUT" 2>/dev/null || true
  printf '%s\n' "$line" >"$LAB_OUT/result" 2>/dev/null || true
  sync 2>/dev/null || true
  printf '\n%s\n' "$line"
}

# pass: end the scenario; fails instead if any check failed.
pass() {
  if [ ${#_lab_fails[@]} -gt 0 ]; then
    fail "${#_lab_fails[@]} check(s) failed: $(IFS=';'; echo "${_lab_fails[*]}")"
  fi
  _lab_done=1
  _lab_cleanup
  _lab_marker "LAB-RESULT: PASS $LAB_NAME"
  exit 0
}

# fail REASON: end the scenario now. In a subshell ($(...)) it only reports and exits the
# subshell; the failed substitution then fails the scenario at the calling line.
fail() {
  if [ "$BASHPID" != "$_lab_pid" ]; then
    echo "lab: $*" >&2
    exit 1
  fi
  _lab_done=1
  trap - ERR
  set +e
  _lab_cleanup
  _lab_marker "LAB-RESULT: FAIL $LAB_NAME: $*"
  exit 1
}

# check DESC CMD...: run CMD; print OK or FAIL (with CMD's output) and record a failure.
check() {
  local desc=$1 out rc
  shift
  rc=0
  # ERR fires on a failed assignment even without -e: catch the status with ||.
  out=$(trap - ERR; "$@" 2>&1) || rc=$?
  if [ "$rc" = 0 ]; then
    printf '  OK    %s\n' "$desc"
  else
    printf '  FAIL  %s (exit %s: %s)\n' "$desc" "$rc" "$*"
    [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/          | /'
    _lab_fails+=("$desc")
  fi
  return 0
}

# check_fails DESC PATTERN CMD...: CMD must fail and its output must match the grep -E PATTERN.
check_fails() {
  local desc=$1 pat=$2 out rc
  shift 2
  rc=0
  # ERR fires on a failed assignment even without -e: catch the status with ||.
  out=$(trap - ERR; "$@" 2>&1) || rc=$?
  if [ "$rc" != 0 ] && grep -Eq -- "$pat" <<<"$out"; then
    printf '  OK    %s (failed as expected: %s)\n' "$desc" "$(head -n1 <<<"$out")"
  else
    printf '  FAIL  %s (exit %s, wanted failure matching /%s/: %s)\n' "$desc" "$rc" "$pat" "$*"
    [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/          | /'
    _lab_fails+=("$desc")
  fi
  return 0
}

# require DESC CMD...: like check, but a failure ends the scenario (later steps depend on it).
require() {
  local n=${#_lab_fails[@]}
  check "$@"
  [ ${#_lab_fails[@]} = "$n" ] || fail "$1"
}

# wait_until SECONDS CMD...: poll CMD every 0.2 s until it succeeds; 1 on timeout.
wait_until() {
  local limit=$1 end
  shift
  end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.2
  done
}

_lab_on_err() {
  local rc=$? line=$1 cmd=$2
  [ -z "$_lab_done" ] || return 0
  [ "$BASHPID" = "$_lab_pid" ] || return "$rc"
  fail "unexpected error (exit $rc) at line $line: $cmd"
}

_lab_on_exit() {
  local rc=$?
  [ -z "$_lab_done" ] || return 0
  [ "$BASHPID" = "$_lab_pid" ] || return 0
  _lab_done=1
  _lab_cleanup
  _lab_marker "LAB-RESULT: FAIL $LAB_NAME: scenario exited (status $rc) without pass or fail"
}

# Registered cleanup commands run (last first) before the marker, also on failure.
_lab_cleanups=()
# on_cleanup CMD: run CMD (a string, eval'd) when the scenario ends; errors are reported, not fatal.
on_cleanup() { _lab_cleanups+=("$1"); }

_lab_cleanup() {
  local i
  set +e
  trap - ERR
  for ((i = ${#_lab_cleanups[@]} - 1; i >= 0; i--)); do
    eval "${_lab_cleanups[$i]}" >/dev/null 2>&1 || note "cleanup failed: ${_lab_cleanups[$i]}"
  done
  _lab_cleanups=()
  for ns in "${_lab_netns[@]}"; do ip netns del "$ns" 2>/dev/null; done
  _lab_netns=()
  dmesg >"$LAB_OUT/dmesg.txt" 2>/dev/null
}

# _lab_running PID: the process exists and is not a zombie waiting to be reaped.
_lab_running() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ "$st" != Z* ]]
}

# stop_bg PID [SIGNAL [SECONDS]]: send SIGNAL (default TERM) to a background child, wait up to
# SECONDS (default 10) for it to exit, then SIGKILL; reaps it. Returns the child's status.
stop_bg() {
  local pid=$1 sig=${2:-TERM} secs=${3:-10} rc=0
  kill "-$sig" "$pid" 2>/dev/null || true
  if ! wait_until "$secs" eval "! _lab_running $pid"; then
    note "pid $pid still running ${secs}s after SIG$sig: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}

# --- setup ------------------------------------------------------------------------------------

# lab_setup: modules, mounts, PF discovery. Exports PF_PCI (0000:01:00.0), PF_IF, PF_SYS.
lab_setup() {
  set -E
  trap '_lab_on_err "$LINENO" "$BASH_COMMAND"' ERR
  trap _lab_on_exit EXIT
  mkdir -p "$LAB_OUT"
  # Kernel warnings and worse stay on the console; the full kernel log goes to $LAB_OUT/dmesg.txt.
  dmesg -n 4 2>/dev/null || true
  mkdir -p /run/netns
  step "lab setup: kernel $(uname -r), $(nproc) CPU(s), scenario $LAB_NAME"
  modprobe igb
  modprobe igbvf
  local d
  PF_PCI=""
  for d in /sys/bus/pci/devices/*; do
    if [ "$(cat "$d/vendor")" = 0x8086 ] && [ "$(cat "$d/device")" = 0x10c9 ]; then
      PF_PCI=$(basename "$d")
      break
    fi
  done
  [ -n "$PF_PCI" ] || fail "no igb PF (8086:10c9) on the PCI bus"
  PF_SYS=/sys/bus/pci/devices/$PF_PCI
  udevadm settle -t 10 || true
  wait_until 10 test -d "$PF_SYS/net" || fail "igb PF $PF_PCI has no netdev"
  PF_IF=$(find "$PF_SYS/net/" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n1)
  export PF_PCI PF_IF PF_SYS
  note "PF $PF_PCI $PF_IF, sriov_totalvfs $(cat "$PF_SYS/sriov_totalvfs"), driver $(basename "$(readlink "$PF_SYS/driver")")"
}

# --- pods -------------------------------------------------------------------------------------

# make_pod NAME: a network namespace NAME with lo up, deleted at the end of the scenario.
make_pod() {
  ip netns add "$1"
  _lab_netns+=("$1")
  ip -n "$1" link set lo up
}

# --- VFs: raw helpers (sanity scenario and test setup) ------------------------------------------

# vf_pci N: PCI address of VF N of the PF.
vf_pci() { basename "$(readlink "$PF_SYS/virtfn$1")"; }

# vf_netdev N: the VF's netdev name as seen from this netns (empty when none).
vf_netdev() { find "$PF_SYS/virtfn$1/net/" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | head -n1 || true; }

# vf_driver N: driver bound to VF N (empty when none).
vf_driver() {
  local l
  l=$(readlink "$PF_SYS/virtfn$1/driver" 2>/dev/null) || return 0
  basename "$l"
}

_lab_vfs_ready() {
  local n=$1 i
  for ((i = 0; i < n; i++)); do
    [ -e "$PF_SYS/virtfn$i" ] || return 1
    [ -n "$(vf_netdev "$i")" ] || return 1
  done
}

# create_vfs N: PF up, sriov_numvfs=N (via 0 if another count is set), then wait (bounded) for
# N virtfn links with igbvf netdevs and for udev. Sets VF_CREATE_SECS.
create_vfs() {
  local n=$1 t0
  ip link set "$PF_IF" up
  if [ "$(cat "$PF_SYS/sriov_numvfs")" != 0 ] && [ "$(cat "$PF_SYS/sriov_numvfs")" != "$n" ]; then
    echo 0 >"$PF_SYS/sriov_numvfs"
  fi
  t0=$(date +%s.%N)
  [ "$(cat "$PF_SYS/sriov_numvfs")" = "$n" ] || echo "$n" >"$PF_SYS/sriov_numvfs"
  wait_until 60 _lab_vfs_ready "$n" || fail "$n VFs with netdevs did not appear within 60 s"
  udevadm settle -t 30 || true
  VF_CREATE_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  export VF_CREATE_SECS
}

# destroy_vfs: sriov_numvfs=0 and wait for the virtfn links to go.
destroy_vfs() {
  echo 0 >"$PF_SYS/sriov_numvfs"
  wait_until 30 sh -c "! ls '$PF_SYS' | grep -q '^virtfn'" || fail "virtfn links remain after sriov_numvfs=0"
  udevadm settle -t 30 || true
}

# bind_vfio ADDR: bind a PCI function to vfio-pci (driver_override + unbind + drivers_probe);
# sets VFIO_GROUP to its IOMMU group number.
bind_vfio() {
  local addr=$1 d=/sys/bus/pci/devices/$1 group
  modprobe vfio-pci
  echo vfio-pci >"$d/driver_override"
  if [ -e "$d/driver" ]; then echo "$addr" >"$d/driver/unbind"; fi
  echo "$addr" >/sys/bus/pci/drivers_probe
  [ "$(basename "$(readlink "$d/driver")")" = vfio-pci ] || fail "$addr did not bind to vfio-pci"
  group=$(basename "$(readlink "$d/iommu_group")")
  udevadm settle -t 10 || true
  wait_until 10 test -e "/dev/vfio/$group" || fail "/dev/vfio/$group missing after binding $addr"
  VFIO_GROUP=$group
  export VFIO_GROUP
}

# unbind_vfio ADDR: clear driver_override and give the function back to its native driver.
unbind_vfio() {
  local addr=$1 d=/sys/bus/pci/devices/$1
  echo >"$d/driver_override"
  if [ -e "$d/driver" ]; then echo "$addr" >"$d/driver/unbind"; fi
  echo "$addr" >/sys/bus/pci/drivers_probe
  udevadm settle -t 10 || true
}

# --- PF-side VF state -------------------------------------------------------------------------

# vf_line N: the "vf N ..." line of `ip link show $PF_IF`, whitespace-normalised.
vf_line() { ip link show "$PF_IF" | sed -n "s/^ *\(vf $1 .*\)/\1/p" | tr -s ' '; }

# vf_lines: every VF line of the PF, one per VF.
vf_lines() { ip link show "$PF_IF" | sed -n 's/^ *\(vf [0-9].*\)/\1/p' | tr -s ' '; }

# record_vf_state FILE: save the PF's VF lines (for a later compare_vf_state).
record_vf_state() { vf_lines >"$1"; }

# compare_vf_state FILE: succeed when the PF's VF lines equal those saved; print a diff if not.
compare_vf_state() { vf_lines | diff -u "$1" - ; }

# vf_has N TEXT...: succeed when VF N's line contains every TEXT (e.g. "vlan 100" "trust on").
vf_has() {
  local n=$1 l t
  shift
  l=$(vf_line "$n")
  for t in "$@"; do
    grep -qF -- "$t" <<<"$l" || { echo "vf $n: '$t' not in: $l"; return 1; }
  done
}

# --- Rust tests run in the guest ----------------------------------------------------------------

# lab_tests_ran FILE: succeed when the Rust test output in FILE passed at least one test. A
# filter that matches nothing (a renamed test) makes libtest exit 0 with "0 passed".
lab_tests_ran() {
  grep -Eq '^test result: ok\. [1-9][0-9]* passed' "$1" && return 0
  echo "no test ran: $(grep '^test result' "$1" | tail -n1)"
  return 1
}

# run_lab_test EXE TEST: run one test of a Rust test executable (a "lab-test-bin" header) by its
# exact name, single-threaded, its output streamed indented and saved in $LAB_OUT/TEST.txt;
# returns the test's status, or 1 when no test by that name ran.
run_lab_test() {
  local exe=$1 name=$2 rc
  "$exe" --exact "$name" --nocapture --test-threads 1 2>&1 | tee "$LAB_OUT/$name.txt" | sed -u 's/^/    /'
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ] && ! lab_tests_ran "$LAB_OUT/$name.txt"; then
    echo "    $name: no such test in $exe"
    rc=1
  fi
  return "$rc"
}

# --- product binaries (product scenarios) ------------------------------------------------------

# Where the device plugin keeps its sockets and files in the guest (tmpfs, per boot).
DP_ROOT=/run/lab-dp
CNI_STATE=/run/lab-cni

# dp_start CONFIG [FLAGS...]: start $LAB_BIN/sriov-device-plugin in the background with every
# path under $DP_ROOT and its log in $LAB_OUT/device-plugin.log; sets DP_PID; stopped (SIGTERM)
# at the end of the scenario.
dp_start() {
  local conf=$1
  shift
  mkdir -p "$DP_ROOT/device-plugins" "$DP_ROOT/devinfo" "$DP_ROOT/cdi"
  RUST_LOG=${RUST_LOG:-debug} "$LAB_BIN/sriov-device-plugin" --config "$conf" \
    --device-plugins-dir "$DP_ROOT/device-plugins" \
    --plugins-registry-dir "$DP_ROOT/plugins_registry" --registration kubelet \
    --devinfo-dir "$DP_ROOT/devinfo" --cdi-dir "$DP_ROOT/cdi" "$@" \
    >>"$LAB_OUT/device-plugin.log" 2>&1 &
  DP_PID=$!
  export DP_PID
  on_cleanup "dp_stop"
}

# dp_stop: SIGTERM the device plugin started by dp_start and wait (bounded) for it to exit.
dp_stop() {
  [ -n "${DP_PID:-}" ] || return 0
  stop_bg "$DP_PID" TERM 10
  DP_PID=""
}

# cni COMMAND CONTAINERID NETNS IFNAME CONF: run $LAB_BIN/sriov as a runtime would, the netconf
# JSON from the file CONF on stdin. The result (stdout) is in $LAB_OUT/cni-<cmd>-<id>.json;
# stderr goes to $LAB_OUT/cni.log; the exit status is the plugin's.
cni() {
  local cmd=$1 id=$2 ns=$3 ifname=$4 conf=$5 out
  out="$LAB_OUT/cni-$(tr '[:upper:]' '[:lower:]' <<<"$cmd")-$id.json"
  mkdir -p "$CNI_STATE"
  echo "== $cmd $id $ns $ifname" >>"$LAB_OUT/cni.log"
  CNI_COMMAND=$cmd CNI_CONTAINERID=$id CNI_NETNS=/run/netns/$ns CNI_IFNAME=$ifname \
    CNI_PATH=/usr/lib/cni SRIOV_CNI_STATE_DIR=$CNI_STATE RUST_LOG=${RUST_LOG:-debug} \
    "$LAB_BIN/sriov" <"$conf" >"$out" 2>>"$LAB_OUT/cni.log"
}
