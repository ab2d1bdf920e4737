#!/bin/bash
# pod-run.sh ALLOCATIONS POD CMD [ARGS...]: run CMD in the guest the way a container runtime
# starts a container that got POD's Allocate response, and nothing else from the node:
#
#   - the environment is exactly the response's envs (PCIDEVICE_*, PCIDEVICE_*_INFO) plus PATH
#     and HOME (`env -i`);
#   - /dev is a fresh tmpfs in a private mount namespace holding the runtime's default nodes
#     (null, zero, full, random, urandom, tty), the response's DeviceSpecs (each host_path must
#     be a character device; it is created at its container_path with the same major:minor) and
#     /dev/hugepages (hugetlbfs, what a hugepages-2Mi emptyDir gives);
#   - the response's Mounts are bind-mounted (none are expected for these pools).
#
# ALLOCATIONS is the JSON file written by tests/tests/lab_dpdk.rs (.pods.<POD>.envs/.devices/
# .mounts). The network namespace is the caller's (a DPDK VF is not a netdev). CMD replaces this
# script (exec), so its PID is the caller's background PID.
set -euo pipefail

die() { echo "pod-run: $*" >&2; exit 1; }
[ $# -ge 3 ] || die "usage: pod-run.sh ALLOCATIONS POD CMD [ARGS...]"
alloc=$1 pod=$2
shift 2
[ -s "$alloc" ] || die "$alloc: no allocations"
jq -e --arg p "$pod" '.pods[$p]' "$alloc" >/dev/null || die "$alloc: no pod '$pod'"

if [ -z "${POD_RUN_NS:-}" ]; then
  # unshare execs (no fork): the PID stays the same.
  exec unshare --mount --propagation private env POD_RUN_NS=1 bash "$0" "$alloc" "$pod" "$@"
fi

mapfile -t envs < <(jq -r --arg p "$pod" '.pods[$p].envs | to_entries[] | "\(.key)=\(.value)"' "$alloc")
mapfile -t specs < <(jq -r --arg p "$pod" '.pods[$p].devices[] | "\(.host_path) \(.container_path)"' "$alloc")
mapfile -t mounts < <(jq -r --arg p "$pod" '.pods[$p].mounts[] | "\(.host_path) \(.container_path)"' "$alloc")

newdev=$(mktemp -d /run/pod-dev.XXXXXX)
mount -t tmpfs -o mode=0755,nosuid pod-dev "$newdev"

# mknod_like HOST_NODE CONTAINER_PATH: the same character device at CONTAINER_PATH (under /dev).
mknod_like() {
  local host=$1 ctr=$2 rel
  [ -c "$host" ] || die "device $host is not a character device on the node"
  case $ctr in /dev/*) ;; *) die "container path $ctr is not under /dev" ;; esac
  rel=${ctr#/dev/}
  mkdir -p "$newdev/$(dirname "$rel")"
  # shellcheck disable=SC2046 # major and minor, two words
  mknod -m 0666 "$newdev/$rel" c $(stat -c '%Hr %Lr' "$host")
}

for n in null zero full random urandom tty; do mknod_like "/dev/$n" "/dev/$n"; done
for s in "${specs[@]}"; do
  [ -n "$s" ] || continue
  mknod_like "${s% *}" "${s#* }"
done
mkdir -p "$newdev/hugepages"
mount -t hugetlbfs -o pagesize=2M nodev "$newdev/hugepages"
mount --move "$newdev" /dev
for m in "${mounts[@]}"; do
  [ -n "$m" ] || continue
  mkdir -p "${m#* }"
  mount --bind "${m% *}" "${m#* }"
done

exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/ "${envs[@]}" "$@"
