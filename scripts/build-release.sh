#!/usr/bin/env bash
# Builds the release binaries the image ships, for both of its platforms, on an x86_64 host with
# no emulated compiler and no C cross toolchain:
#
#   target/dist/amd64/sriov-device-plugin           x86_64-unknown-linux-gnu, glibc crt-static
#   target/dist/amd64/sriov                         x86_64-unknown-linux-musl
#   target/dist/arm64/{sriov,sriov-device-plugin}   aarch64-unknown-linux-musl, linked by rust-lld
#
#   scripts/build-release.sh [amd64] [arm64]     # default: both
#
# Every binary is statically linked: `sriov` runs on the host, not in the image, and must not
# depend on the node's libc (Ubuntu 20.04, RHEL 8 and other nodes ship older glibc than
# bookworm). The CNI plugin `sriov` is musl on both platforms: it is a process of a few
# milliseconds, started twice per attachment, and static glibc's start-up probes the CPU's caches
# with dozens of CPUID instructions, each a trap to the hypervisor on a virtual machine (on the
# bench's VM that start-up was ~1.3 ms of an ADD+DEL's ~5.5 ms of CPU; docs/peers.md). The
# Dockerfile COPYs target/dist/$TARGETARCH; scripts/check-dockerfile.sh runs this
# script and checks its output. The arm64 linker comes from .cargo/config.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "build-release: $*" >&2; exit 1; }
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64)

# ELF machine of a file (readelf -h), and whether it asks for a dynamic loader.
elf_machine() { readelf -h "$1" 2>/dev/null | sed -n 's/^ *Machine: *//p'; }
is_static() { ! readelf -l "$1" 2>/dev/null | grep -q 'INTERP'; }

for a in "${arches[@]}"; do
  case $a in
    amd64) triple=x86_64-unknown-linux-gnu machine='Advanced Micro Devices X86-64'
      # --target keeps crt-static off build scripts and proc-macros.
      flags=(-C target-feature=+crt-static) features=() ;;
    # The DRA mode's TLS stack (ring) compiles C and assembly: Debian's aarch64 cross gcc
    # (gcc-aarch64-linux-gnu, scripts/install-deps.sh arm) builds it for the musl target.
    arm64) triple=aarch64-unknown-linux-musl machine=AArch64 flags=() features=()
      export CC_aarch64_unknown_linux_musl=${CC_aarch64_unknown_linux_musl:-aarch64-linux-gnu-gcc}
      export AR_aarch64_unknown_linux_musl=${AR_aarch64_unknown_linux_musl:-aarch64-linux-gnu-ar}
      command -v "$CC_aarch64_unknown_linux_musl" >/dev/null ||
        fail "no C compiler for aarch64 ($CC_aarch64_unknown_linux_musl): run scripts/install-deps.sh arm" ;;
    *) fail "unknown architecture '$a' (want amd64 or arm64)" ;;
  esac
  if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    rustup target add "$triple" >&2 || fail "rustup target add $triple failed"
  fi
  # The CNI plugin's target: musl on both (see above).
  cni_triple=${triple/-gnu/-musl}
  if ! rustup target list --installed 2>/dev/null | grep -qx "$cni_triple"; then
    rustup target add "$cni_triple" >&2 || fail "rustup target add $cni_triple failed"
  fi
  start=$(date +%s)
  if [ "$cni_triple" = "$triple" ]; then
    echo "== cargo build --release --locked --target $triple (target/dist/$a)"
    RUSTFLAGS="${flags[*]}" cargo build --release --locked --target "$triple" "${features[@]}" \
      -p sriov-device-plugin -p sriov-cni
  else
    echo "== cargo build --release --locked --target $triple / $cni_triple (target/dist/$a)"
    RUSTFLAGS="${flags[*]}" cargo build --release --locked --target "$triple" "${features[@]}" \
      -p sriov-device-plugin
    cargo build --release --locked --target "$cni_triple" -p sriov-cni
  fi
  mkdir -p "target/dist/$a"
  for b in sriov-device-plugin sriov; do
    t=$triple
    [ "$b" = sriov ] && t=$cni_triple
    f="target/$t/release/$b"
    [ -x "$f" ] || fail "$f was not produced"
    [ "$(elf_machine "$f")" = "$machine" ] || fail "$f is not a $machine binary: $(elf_machine "$f")"
    is_static "$f" || fail "$f is dynamically linked"
    if [ "$b" = sriov ] && grep -qa 'GNU C Library' "$f"; then
      fail "$f is a glibc build: the CNI plugin must be the musl one (see the top of this script)"
    fi
    install -m 0755 "$f" "target/dist/$a/$b"
    echo "== target/dist/$a/$b: $(stat -c %s "$f") bytes, static $machine"
  done
  echo "== $a built in $(( $(date +%s) - start )) s"
done
