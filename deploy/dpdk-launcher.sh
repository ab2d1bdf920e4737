#!/bin/sh
# dpdk-launcher.sh: start a DPDK application on the VFs the device plugin allocated.
#
#   dpdk-launcher.sh [--resource NAME]... [--device ADDR]... [--print] [--no-check] -- APP [ARGS...]
#
# Devices come from the environment the device plugin sets in the container:
#   PCIDEVICE_<RESOURCE>=0000:08:02.0,0000:08:02.1
#   PCIDEVICE_<RESOURCE>_INFO={"0000:08:02.0":{"vfio":{"dev-mount":"/dev/vfio/42",...},...},...}
# --resource NAME   use this pool only; NAME is a resource name (arm.com/ps225_dpdk) or the
#                   variable itself (PCIDEVICE_ARM_COM_PS225_DPDK). Repeatable. Without it,
#                   every PCIDEVICE_* variable is used.
# --device ADDR     add a PCI address by hand (outside Kubernetes, e.g. in a lab VM). Repeatable;
#                   when given without --resource, the environment is not read.
# --print           print the resulting command line instead of running it.
# --no-check        skip the /dev/vfio checks.
#
# Every address must be a full PCI address (dddd:bb:dd.f). For each one, the vfio group node is
# looked up in the _INFO JSON (jq if installed, a plain-text parse otherwise), or, without one,
# from sysfs when the device is bound to vfio-pci; a missing node is an error, and so is a missing
# /dev/vfio/vfio (the VFIO container node every vfio device needs). A device with no vfio group
# (e.g. an mlx5 VF, which DPDK drives through the kernel driver) is accepted as is. Without a
# hugetlbfs mount (and without --no-huge among ARGS) a warning says how to get hugepages.
#
# The EAL allow-list (-a ADDR per device) is inserted before the first `--` among ARGS (the
# separator between EAL and application arguments), or appended when there is none:
#   dpdk-launcher.sh -- dpdk-testpmd -l 0-1 -- --forward-mode=icmpecho
#   -> dpdk-testpmd -l 0-1 -a 0000:08:02.0 -- --forward-mode=icmpecho
#
# The command is logged to stderr ("dpdk-launcher: exec ...") before it replaces the launcher.
#
# Environment: SYSFS_ROOT (default /sys), DEV_ROOT (default /dev) and PROC_MOUNTS (default
# /proc/mounts) for testing.
# Exit codes: 0 ok (or the application's own), 1 device check failed, 2 usage error.
set -eu
set -f

SYSFS_ROOT=${SYSFS_ROOT:-/sys}
DEV_ROOT=${DEV_ROOT:-/dev}
PROC_MOUNTS=${PROC_MOUNTS:-/proc/mounts}

prog=dpdk-launcher
die() { echo "$prog: $*" >&2; exit 1; }
usage() {
  echo "usage: $prog [--resource NAME]... [--device ADDR]... [--print] [--no-check] -- APP [ARGS...]" >&2
  exit 2
}

# arm.com/ps225_dpdk -> PCIDEVICE_ARM_COM_PS225_DPDK
env_name() {
  case $1 in
    PCIDEVICE_*) printf '%s\n' "$1" ;;
    *) printf 'PCIDEVICE_%s\n' "$1" | tr '[:lower:]' '[:upper:]' | sed 's/[^A-Z0-9_]/_/g' ;;
  esac
}

# Value of the variable named $1, empty when unset.
env_value() {
  case $1 in
    *[!A-Za-z0-9_]* | [0-9]*) return 0 ;;
  esac
  eval "printf '%s' \"\${$1:-}\""
}

is_pci_addr() {
  printf '%s\n' "$1" | grep -Eq '^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$'
}

# dev-mount of device $2 in the _INFO JSON $1, empty when absent.
vfio_from_info() {
  info=$1 addr=$2
  [ -n "$info" ] || return 0
  if command -v jq >/dev/null 2>&1; then
    printf '%s' "$info" | jq -r --arg a "$addr" '.[$a].vfio["dev-mount"] // empty' 2>/dev/null || true
    return 0
  fi
  # Without jq: take the text from this device's key ("ADDR":{) up to the next device key,
  # and read "dev-mount":"..." in it.
  printf '%s' "$info" | tr -d ' \t\r\n' | awk -v a="$addr" '
    {
      key = "\"" a "\":{"
      i = index($0, key)
      if (i == 0) exit
      rest = substr($0, i + length(key))
      if (match(rest, /"[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]:[0-9a-fA-F][0-9a-fA-F]\.[0-7]":\{/))
        rest = substr(rest, 1, RSTART - 1)
      if (match(rest, /"dev-mount":"[^"]*"/))
        print substr(rest, RSTART + 13, RLENGTH - 14)
    }'
}

# /dev/vfio/<group> from sysfs when the device is bound to vfio-pci, empty otherwise.
vfio_from_sysfs() {
  d="$SYSFS_ROOT/bus/pci/devices/$1"
  if [ -d "$SYSFS_ROOT/bus/pci/devices" ] && [ ! -e "$d" ]; then
    echo "NO_DEVICE"
    return 0
  fi
  [ -e "$d/driver" ] || return 0
  drv=$(basename "$(readlink "$d/driver")")
  [ "$drv" = vfio-pci ] || return 0
  [ -e "$d/iommu_group" ] || { echo "NO_IOMMU_GROUP"; return 0; }
  printf '/dev/vfio/%s\n' "$(basename "$(readlink "$d/iommu_group")")"
}

resources=""
devices=""
print=0
check=1
while [ $# -gt 0 ]; do
  case $1 in
    --resource) [ $# -ge 2 ] || usage; resources="$resources $(env_name "$2")"; shift 2 ;;
    --resource=*) resources="$resources $(env_name "${1#--resource=}")"; shift ;;
    --device) [ $# -ge 2 ] || usage; devices="$devices $2"; shift 2 ;;
    --device=*) devices="$devices ${1#--device=}"; shift ;;
    --print) print=1; shift ;;
    --no-check) check=0; shift ;;
    -h | --help) sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    --) shift; break ;;
    *) echo "$prog: unknown option $1" >&2; usage ;;
  esac
done
[ $# -ge 1 ] || usage

# Which variables to read.
if [ -z "$resources" ] && [ -z "$devices" ]; then
  resources=$(env | sed -n 's/^\(PCIDEVICE_[A-Za-z0-9_]*\)=.*/\1/p' | grep -v '_INFO$' | sort -u | tr '\n' ' ')
  [ -n "$resources" ] || die "no PCIDEVICE_* variable in the environment: does the pod request an SR-IOV resource?"
fi

# (address, info variable) pairs, in order, without duplicates.
pairs=""
seen=" "
add_device() {
  addr=$1 infovar=$2
  is_pci_addr "$addr" || die "'$addr'${infovar:+ (from ${infovar%_INFO})} is not a PCI address like 0000:08:02.0"
  case $seen in *" $addr "*) return 0 ;; esac
  seen="$seen$addr "
  pairs="$pairs $addr|$infovar"
}
for var in $resources; do
  val=$(env_value "$var")
  [ -n "$val" ] || die "$var is not set: the pod did not get that resource (check its resources.limits)"
  for addr in $(printf '%s' "$val" | tr ',' ' '); do
    add_device "$addr" "${var}_INFO"
  done
done
for addr in $devices; do
  add_device "$addr" ""
done
[ -n "$pairs" ] || die "no device to use"

eal=""
for pair in $pairs; do
  addr=${pair%%|*} infovar=${pair#*|}
  if [ "$check" = 1 ]; then
    node=""
    [ -z "$infovar" ] || node=$(vfio_from_info "$(env_value "$infovar")" "$addr")
    [ -n "$node" ] || node=$(vfio_from_sysfs "$addr")
    case $node in
      "") echo "$prog: $addr: no vfio group (kernel-driver VF), passing it as is" >&2 ;;
      NO_DEVICE) die "$addr: no such PCI device in $SYSFS_ROOT/bus/pci/devices" ;;
      NO_IOMMU_GROUP) die "$addr is bound to vfio-pci but has no IOMMU group: enable the IOMMU (intel_iommu=on / amd_iommu=on / arm-smmu) on the host" ;;
      *)
        # The info names the node as the host sees it; in the container it is at the same path.
        [ -c "$DEV_ROOT/${node#/dev/}" ] || die "$addr: $node is missing: is the VF bound to vfio-pci, and was it allocated to this container?"
        [ -c "$DEV_ROOT/vfio/vfio" ] || die "$addr: /dev/vfio/vfio (the VFIO container node) is missing: the device plugin hands it out with every vfio-pci device; was the device allocated to this container?"
        ;;
    esac
  fi
  eal="$eal -a $addr"
done

if [ "$check" = 1 ]; then
  nohuge=0
  for arg do
    if [ "$arg" = -- ]; then break; fi
    if [ "$arg" = --no-huge ]; then nohuge=1; fi
  done
  if [ "$nohuge" = 0 ] && ! awk '$3 == "hugetlbfs" { found = 1 } END { exit !found }' "$PROC_MOUNTS" 2>/dev/null; then
    echo "$prog: warning: no hugetlbfs mounted: request hugepages-2Mi (or -1Gi) in the pod and mount an emptyDir with medium HugePages, or pass --no-huge" >&2
  fi
fi

# APP [ARGS before --] EAL [-- ARGS after], built in the positional parameters.
inserted=0
first=1
for arg do
  if [ "$first" = 1 ]; then
    set -- "$arg"
    first=0
    continue
  fi
  if [ "$inserted" = 0 ] && [ "$arg" = "--" ]; then
    # shellcheck disable=SC2086 # $eal holds validated words
    set -- "$@" $eal --
    inserted=1
  else
    set -- "$@" "$arg"
  fi
done
if [ "$inserted" = 0 ]; then
  # shellcheck disable=SC2086
  set -- "$@" $eal
fi

out=""
for arg do
  case $arg in
    "" | *[!A-Za-z0-9_./:,=@%+-]*) arg="'$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")'" ;;
  esac
  out="${out:+$out }$arg"
done
if [ "$print" = 1 ]; then
  printf '%s\n' "$out"
  exit 0
fi
echo "$prog: exec $out" >&2
exec "$@"
