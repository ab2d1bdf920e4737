#!/usr/bin/env bash
# Installs what the tests and the lab need on a Debian bookworm machine, idempotently.
#   scripts/install-deps.sh base   # netns tests: iproute2, CNI reference plugins
#   scripts/install-deps.sh lab    # + QEMU 10 (backports), the backports kernel, virtme-ng, DPDK
#   scripts/install-deps.sh arm    # + the aarch64 Rust target and C cross compiler, qemu-user
#                                  #   (arm64 tests), qemu-system-aarch64 and an arm64 guest root with the
#                                  #   backports arm64 kernel (the lab on an Arm guest)
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

# The arm64 guest root of the Arm lab: Debian bookworm for arm64 with the backports arm64 kernel
# and the tools the scenarios use, made by mmdebstrap (maintainer scripts under qemu-user). Cached
# under $ARM_CACHE/root-<stamp>, the stamp a hash of what goes in; $ARM_CACHE/current names the
# one in use (virtme-ng takes the kernel's modules from that root).
# No initramfs is made (virtme-ng boots the kernel straight into the 9p root), which also saves
# minutes of compression under emulation: update-initramfs is diverted to /bin/true.
ARM_CACHE=/var/cache/sriov-lab-arm64
ARM_PACKAGES="bash,busybox-static,iproute2,iputils-ping,kmod,udev,pciutils,jq,procps,util-linux,containernetworking-plugins,linux-image-arm64/bookworm-backports"

# binfmt_misc entry for aarch64 (mmdebstrap runs the root's maintainer scripts through it).
arm_binfmt() {
  [ -d /proc/sys/fs/binfmt_misc ] || return 0
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && return
  say "registering qemu-aarch64 with binfmt_misc"
  cat /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
}

arm_root() {
  local mirror stamp root ver
  mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1)
  [ -n "$mirror" ] || mirror=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1)
  [ -n "$mirror" ] || { echo "install-deps: no Debian mirror configured in /etc/apt" >&2; exit 1; }
  stamp=$(printf '%s\n' "$ARM_PACKAGES" bookworm v1 | sha256sum | cut -c1-12)
  root=$ARM_CACHE/root-$stamp
  if [ ! -x "$root/bin/bash" ]; then
    arm_binfmt
    say "building the arm64 guest root in $root (mmdebstrap; about 10 min cold)"
    rm -rf "$root.tmp"
    mkdir -p "$ARM_CACHE"
    # shellcheck disable=SC2016 # "$1" is the hook's argument, expanded by mmdebstrap
    mmdebstrap --architectures=arm64 --variant=minbase --mode=root --include="$ARM_PACKAGES" \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs' \
      --essential-hook='ln -s /bin/true "$1/usr/sbin/update-initramfs"' \
      bookworm "$root.tmp" "deb $mirror bookworm main" "deb $mirror bookworm-backports main" \
      >"$ARM_CACHE/mmdebstrap.log" 2>&1 ||
      { tail -n 20 "$ARM_CACHE/mmdebstrap.log" >&2; echo "install-deps: mmdebstrap (arm64 root) failed" >&2; exit 1; }
    mv "$root.tmp" "$root"
    find "$ARM_CACHE" -maxdepth 1 -name 'root-*' ! -name "root-$stamp" -exec rm -rf {} +
  fi
  ver=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*-arm64' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n1)
  [ -n "$ver" ] || { echo "install-deps: no arm64 kernel in $root/boot" >&2; exit 1; }
  printf '%s\n%s\n' "$root" "$ver" >"$ARM_CACHE/current"
}

arm() {
  lab
  if ! qemu-system-aarch64 -machine virt,help 2>/dev/null | grep -q smmuv3 ||
     ! command -v qemu-aarch64 >/dev/null || [ ! -f /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
    apt_update
    say "installing qemu-system-arm and qemu-user from bookworm-backports (igb, virt with SMMUv3)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports \
      qemu-system-arm qemu-user qemu-user-binfmt >/dev/null
  fi
  # A C compiler for aarch64: ring (rustls' crypto, in sriov-dra) compiles C and assembly. The
  # glibc cross gcc does for the musl target: ring needs only the compiler's and libc's headers,
  # and rust-lld links the objects into the static musl test binaries (scripts/test-arm64.sh).
  apt_install mmdebstrap arch-test binutils gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-musl; then
    say "rustup target add aarch64-unknown-linux-musl"
    rustup target add aarch64-unknown-linux-musl >/dev/null
  fi
  arm_root
}

need_root
case "$what" in
  base) base ;;
  lab) lab ;;
  arm) arm ;;
  all) arm ;;
  *) echo "usage: $0 base|lab|arm|all" >&2; exit 2 ;;
esac
say "dependencies ready ($what)"
