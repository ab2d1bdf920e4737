#!/usr/bin/env bash
# Installs what the tests and the lab need on a Debian bookworm machine, idempotently.
#   scripts/install-deps.sh base   # netns tests: iproute2, CNI reference plugins
#   scripts/install-deps.sh lab    # + QEMU 10 (backports), the backports kernel, virtme-ng, DPDK
# Needs root. Safe to run again: every step checks first.
set -euo pipefail

what=${1:-base}
say() {
  if [ -t 2 ]; then printf '\033[1m==> %s\033[0m\n' "$*" >&2; else printf '==> %s\n' "$*" >&2; fi
}
need_root() { [ "$(id -u)" = 0 ] || { echo "install-deps: run as root (apt-get, /boot, /lib/modules)" >&2; exit 1; }; }

apt_updated=""
apt_update() {
  [ -n "$apt_updated" ] && return
  say "apt-get update"
  apt-get update -qq
  apt_updated=1
}

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "${p%%=*}" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  apt_update
  say "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The bookworm-backports suite, from the same mirror the machine already uses.
add_backports() {
  if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then return; fi
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1)
  [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1)
  [ -n "$uri" ] || { echo "install-deps: no Debian mirror configured in /etc/apt" >&2; exit 1; }
  say "adding bookworm-backports from $uri"
  cat >/etc/apt/sources.list.d/bookworm-backports.sources <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_updated=""
}

base() {
  apt_install iproute2 iputils-ping containernetworking-plugins procps kmod jq shellcheck
}

# The guest kernel: the backports Debian kernel, unpacked (not installed as the host's kernel).
lab_kernel() {
  local ver
  ver=$(find /boot -maxdepth 1 -name 'vmlinuz-*-amd64' -printf '%f\n' 2>/dev/null | sed 's#^vmlinuz-##' | grep '+bpo\|deb12' | sort -V | tail -n1 || true)
  if [ -n "$ver" ] && [ -d "/lib/modules/$ver/kernel/drivers/net/ethernet/intel/igb" ]; then
    echo "$ver" >/var/tmp/sriov-lab-kernel
    return
  fi
  apt_update
  local meta tmp
  meta=$(apt-cache depends -t bookworm-backports linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$meta" ] || { echo "install-deps: cannot resolve linux-image-amd64 in bookworm-backports" >&2; exit 1; }
  say "downloading $meta (guest kernel)"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -t bookworm-backports "$meta" >/dev/null)
  dpkg -x "$tmp"/linux-image-*.deb "$tmp/root"
  ver=$(find "$tmp/root/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed -n 's/^vmlinuz-//p' | head -n1)
  install -m 0644 "$tmp/root/boot/vmlinuz-$ver" "/boot/vmlinuz-$ver"
  [ -f "$tmp/root/boot/config-$ver" ] && install -m 0644 "$tmp/root/boot/config-$ver" "/boot/config-$ver"
  [ -f "$tmp/root/boot/System.map-$ver" ] && install -m 0644 "$tmp/root/boot/System.map-$ver" "/boot/System.map-$ver"
  rm -rf "/lib/modules/$ver"
  mkdir -p /lib/modules
  cp -a "$tmp/root/lib/modules/$ver" "/lib/modules/$ver"
  depmod -a "$ver"
  rm -rf "$tmp"
  echo "$ver" >/var/tmp/sriov-lab-kernel
}

lab() {
  base
  add_backports
  if ! qemu-system-x86_64 -device help 2>/dev/null | grep -q '"igb"'; then
    apt_update
    say "installing QEMU from bookworm-backports (the igb device needs QEMU >= 8)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
  fi
  apt_install busybox-static udev pciutils dpdk-dev
  lab_kernel
  if ! command -v vng >/dev/null 2>&1; then
    say "pip install virtme-ng"
    python3 -m pip install -q virtme-ng
  fi
}

need_root
case "$what" in
  base) base ;;
  lab) lab ;;
  all) lab ;;
  *) echo "usage: $0 base|lab|all" >&2; exit 2 ;;
esac
say "dependencies ready ($what)"
