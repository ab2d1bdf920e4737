#!/usr/bin/env bash
# Stops the node and removes it (scripts/node.sh down): every process in the node's namespaces
# and their descendants (containers included), killed by pid; the namespaces, which takes
# every mount and pod network namespace with them; the kubelet's kubepods cgroups; and
# $NODE_DIR, except its logs/ when KEEP_LOGS=1. Safe to run when nothing is up.
set -uo pipefail
# shellcheck source=tests/node/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || die "down: run as root"
t0=$(date +%s.%N)

ns_of() { stat -L -c %i "$1" 2>/dev/null; }

# Processes in the node's mount or network namespace, and all their descendants (a container
# has its own namespaces but descends from a shim that is in the node's).
node_pids() {
  local m n p pm pn roots=() all changed pid ppid
  m="" n=""
  mountpoint -q "$NS/mnt" 2>/dev/null && m=$(ns_of "$NS/mnt")
  mountpoint -q "$NS/net" 2>/dev/null && n=$(ns_of "$NS/net")
  [ -n "$m$n" ] || return 0
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] && continue
    pm=$(ns_of "/proc/$p/ns/mnt")
    pn=$(ns_of "/proc/$p/ns/net")
    if { [ -n "$m" ] && [ "$pm" = "$m" ]; } || { [ -n "$n" ] && [ "$pn" = "$n" ]; }; then roots+=("$p"); fi
  done
  [ ${#roots[@]} -gt 0 ] || return 0
  all=" ${roots[*]} "
  changed=1
  while [ "$changed" = 1 ]; do
    changed=0
    while read -r pid ppid; do
      if [[ "$all" == *" $ppid "* && "$all" != *" $pid "* ]]; then all+="$pid "; changed=1; fi
    done < <(ps -e -o pid=,ppid=)
  done
  echo "$all"
}

# Members of the kubelet's cgroups (a container whose shim died is reparented to PID 1).
cg_pids() {
  find /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods -name cgroup.procs \
    -exec cat {} + 2>/dev/null | sort -u
}

# 1. The kubelet first (it would restart containers), then the rest at once; their state is
#    thrown away, so they get a second to exit cleanly, not a graceful shutdown.
stop kubelet TERM
daemons=()
for n in kube-scheduler kube-controller-manager containerd kube-apiserver etcd; do
  [ -f "$PIDS/$n" ] && daemons+=("$(cat "$PIDS/$n")")
done
if [ ${#daemons[@]} -gt 0 ]; then
  kill -TERM "${daemons[@]}" 2>/dev/null
  for _ in $(seq 5); do kill -0 "${daemons[@]}" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "${daemons[@]}" 2>/dev/null
fi
rm -f "$PIDS"/*
# 2. Everything left in the node or its cgroups: shims, pause and app containers (whose inits
#    ignore SIGTERM from outside). Snapshot first, then KILL, twice: a shim's death reparents
#    its container to PID 1, out of the process tree but still in its cgroup.
for _ in 1 2; do
  snap=$({ node_pids; echo; cg_pids; } | tr ' ' '\n' | grep . | sort -un | tr '\n' ' ')
  [ -n "${snap// /}" ] || break
  # shellcheck disable=SC2086 # a list of pids
  kill -KILL $snap 2>/dev/null
  sleep 0.3
done
# 3. The namespaces: their mounts (overlay root filesystems, pod netns bind mounts, tmpfs) go
#    with them once no process holds them.
for f in "$NS/mnt" "$NS/net"; do mountpoint -q "$f" && umount "$f"; done
mountpoint -q "$NS" && umount "$NS"
# 4. The kubelet's cgroups (cgroupfs driver): empty now, removed leaves first.
for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
done
left=$(ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null)
[ -z "$left" ] || echo "down: cgroups left behind: $left" >&2
# 5. State.
if [ -d "$NODE_DIR" ]; then
  if findmnt -rn -o TARGET | grep "^$NODE_DIR/" >/dev/null; then
    echo "down: mounts still under $NODE_DIR; state kept:" >&2
    findmnt -rn -o TARGET | grep "^$NODE_DIR/" >&2
    exit 1
  fi
  if [ "${KEEP_LOGS:-0}" = 1 ]; then
    find "$NODE_DIR" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
  else
    rm -rf "$NODE_DIR"
  fi
fi
say "node down in $(since "$t0")s"
