#!/usr/bin/env bash
# The emulated SR-IOV lab: boots one fresh QEMU guest per scenario, with an emulated Intel 82576
# (igb, real SR-IOV) and the real igb/igbvf/vfio-pci drivers, and runs the scenario inside.
#
#   scripts/lab.sh [--arch amd64|arm64] [--keep] [--verbose] [--timeout SECONDS] SCENARIO...
#   scripts/lab.sh all
#   scripts/lab.sh --list
#
# --arch arm64 (or LAB_ARCH=arm64) runs the same scenarios on an Arm guest: qemu-system-aarch64
# `virt` with an SMMUv3 IOMMU, Debian's arm64 backports kernel and an arm64 root built by
# scripts/install-deps.sh arm; the binaries and test binaries are built for aarch64 (musl).
#
# SCENARIO is a file name under tests/lab/scenarios/, with or without ".sh" (00-igb-sanity),
# or just its number (00). "all" runs every numbered scenario in order; those marked not runnable are
# reported as SKIP and not counted as passed.
#
# Scenario headers the runner reads (comment lines anywhere in the scenario file):
#   # lab-skip: REASON               the scenario is not runnable yet: SKIP with REASON
#   # lab-test-bin: PACKAGE TEST     build the integration-test binary TEST of PACKAGE (release,
#                                    with PACKAGE's "lab" feature, which lab tests require)
#                                    and pass its path to the guest as LAB_TEST_<TEST>
#                                    (upper case, '-' -> '_'), e.g. LAB_TEST_LAB_KUBELET
#   # lab-timeout: SECONDS           per-scenario timeout (default 300, or --timeout)
#
# The guest gets LAB_NAME, LAB_BIN (release binaries), LAB_REPO (this repository), LAB_OUT (a
# host directory it can write: target/lab/<scenario>/) and LAB_TEST_* in its environment.
# The full console log of each scenario is target/lab/<scenario>.log. The result is the last
# "LAB-RESULT: PASS|FAIL" line the guest wrote; no marker means FAIL, and the timeout kills QEMU
# and is reported as TIMEOUT. There are no retries.
#
# LAB_QEMU_EXTRA adds options to QEMU's command line, for debugging the lab itself (QEMU trace
# events, a monitor socket; docs/lab.md).
#
# Works without a TTY (CI) and from a shell. Needs root for scripts/install-deps.sh; as another
# user the install step is skipped when the tools are already there.
set -euo pipefail
# The whole script is one block ending in "}; exit" on one line: bash parses it completely
# before running it, so editing this file during a run cannot disturb the run.
{
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
scen_dir="$repo/tests/lab/scenarios"
arch=${LAB_ARCH:-amd64}
keep=""
verbose=""
default_timeout=300
memory=2G

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
say() {
  if [ -t 2 ]; then printf '\033[1m==> %s\033[0m\n' "$*" >&2; else printf '==> %s\n' "$*" >&2; fi
}
die() { echo "lab: $*" >&2; exit 2; }

# Value of a "# KEY: value" header line in a scenario file (first match), empty if none.
header() { sed -n "s/^# $2: *//p" "$1" | head -n1; }

# "all" runs the numbered scenarios; others (facts-igb) run only when named.
list_scenarios() { find "$scen_dir" -maxdepth 1 -name '[0-9]*.sh' -printf '%f\n' | sort; }

resolve() {
  local s=$1 f
  s=${s%.sh}
  if [ -f "$scen_dir/$s.sh" ]; then echo "$scen_dir/$s.sh"; return; fi
  f=$(find "$scen_dir" -maxdepth 1 -name "$s-*.sh" | sort | head -n1)
  [ -n "$f" ] || die "no scenario '$1' in tests/lab/scenarios (see --list)"
  echo "$f"
}

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --verbose|-v) verbose=1 ;;
    --timeout) [ $# -ge 2 ] || usage; default_timeout=$2; shift ;;
    --arch) [ $# -ge 2 ] || usage; arch=$2; shift ;;
    --list) find "$scen_dir" -maxdepth 1 -name '*.sh' -printf '%f\n' | sort | sed 's/\.sh$//'; exit 0 ;;
    -h|--help) usage ;;
    -*) echo "lab: unknown option $1" >&2; usage ;;
    *) args+=("$1") ;;
  esac
  shift
done
[ ${#args[@]} -gt 0 ] || usage
case $arch in
  amd64) out_root="${LAB_OUT_ROOT:-$repo/target/lab}" ;;
  arm64) out_root="${LAB_OUT_ROOT:-$repo/target/lab-arm64}" ;;
  *) die "unknown --arch '$arch' (amd64 or arm64)" ;;
esac

files=()
for a in "${args[@]}"; do
  if [ "$a" = all ]; then
    while read -r f; do files+=("$scen_dir/$f"); done < <(list_scenarios)
  else
    files+=("$(resolve "$a")")
  fi
done

# --- dependencies -----------------------------------------------------------------------------
deps=lab stamp=/var/tmp/sriov-lab-kernel
[ "$arch" = amd64 ] || deps=arm stamp=/var/cache/sriov-lab-arm64/current
if [ "$(id -u)" = 0 ]; then
  say "checking lab dependencies (scripts/install-deps.sh $deps)"
  bash "$repo/scripts/install-deps.sh" "$deps"
elif ! command -v vng >/dev/null || [ ! -s "$stamp" ]; then
  die "lab dependencies missing and not root: run 'sudo scripts/install-deps.sh $deps' first"
fi
if [ "$arch" = amd64 ]; then
  kver=$(cat "$stamp")
  kernel=/boot/vmlinuz-$kver
  guest_root=()
  cargo_target=()
  bin_dir=$repo/target/release
else
  # Line 1: the arm64 root; line 2: its kernel's version.
  root=$(sed -n 1p "$stamp")
  kver=$(sed -n 2p "$stamp")
  kernel=$root/boot/vmlinuz-$kver
  # The root is read-only in the guest: mount points must exist in it. The repository is mounted
  # at its own path (the paths in .run.sh are host paths), the scenario's output at /lab-out.
  mkdir -p "$root$repo" "$root/lab-out"
  guest_root=(--arch arm64 --root "$root" "--rodir=$repo=$repo")
  # ring (the DRA mode's TLS) is compiled by Debian's aarch64 cross gcc (install-deps arm).
  export CC_aarch64_unknown_linux_musl=${CC_aarch64_unknown_linux_musl:-aarch64-linux-gnu-gcc}
  export AR_aarch64_unknown_linux_musl=${AR_aarch64_unknown_linux_musl:-aarch64-linux-gnu-ar}
  cargo_target=(--target aarch64-unknown-linux-musl)
  bin_dir=$repo/target/aarch64-unknown-linux-musl/release
fi
[ -r "$kernel" ] || die "guest kernel $kernel not readable (run scripts/install-deps.sh $deps)"

# --- build ------------------------------------------------------------------------------------
runnable=()
for f in "${files[@]}"; do
  [ -n "$(header "$f" lab-skip)" ] || runnable+=("$f")
done

declare -A test_bins=()
if [ ${#runnable[@]} -gt 0 ]; then
  if [ "$arch" = amd64 ]; then
    say "cargo build --release --workspace --bins"
    (cd "$repo" && cargo build --release --workspace --bins)
  else
    # The two binaries the scenarios run (LAB_BIN); the other workspace binaries are host tools.
    say "cargo build --release ${cargo_target[*]} -p sriov-cni -p sriov-device-plugin"
    (cd "$repo" && cargo build --release "${cargo_target[@]}" -p sriov-cni -p sriov-device-plugin)
  fi
  for f in "${runnable[@]}"; do
    while read -r pkg test; do
      if [ -z "$pkg" ] || [ -z "$test" ]; then die "$(basename "$f"): bad header 'lab-test-bin: $pkg $test' (want PACKAGE TEST)"; fi
      key="LAB_TEST_$(echo "$test" | tr '[:lower:]-' '[:upper:]_')"
      [ -n "${test_bins[$key]:-}" ] && continue
      say "cargo test --release ${cargo_target[*]} -p $pkg --features lab --test $test --no-run"
      # json-render-diagnostics: artifacts as JSON on stdout, compiler errors readable on stderr.
      exe=$(cd "$repo" && cargo test --release "${cargo_target[@]}" -p "$pkg" --features lab --test "$test" --no-run \
        --message-format=json-render-diagnostics \
        | jq -r --arg t "$test" 'select(.reason == "compiler-artifact" and .executable != null
            and .target.name == $t) | .executable' | tail -n1) \
        || die "building test $test of $pkg failed"
      [ -x "$exe" ] || die "no test executable for $pkg --test $test"
      test_bins[$key]=$exe
    done < <(sed -n 's/^# lab-test-bin: *//p' "$f")
  done
fi

# --- run --------------------------------------------------------------------------------------
mkdir -p "$out_root"
if [ "$arch" = amd64 ]; then
  qemu_opts="-device intel-iommu,intremap=on"
else
  # vng starts `-M virt -cpu cortex-a57`; QEMU merges this -machine into it. The SMMUv3 sits in
  # front of the PCIe root complex, so the igb PF and its VFs are translated by it.
  # highmem-mmio=off: no PCIe memory window above 4 GiB, so the kernel puts the VFs' 64-bit
  # BARs below 4 GiB. QEMU 10.0 registers a VF's BARs before it knows their type and decodes
  # them as 32-bit BARs (upstream "pcie_sriov: Fix broken MMIO accesses from SR-IOV VFs"): a VF
  # BAR in virt's high window (0x80_0000_0000) is then never mapped, every igbvf register read
  # returns all-ones, and the VF never completes its reset handshake with the PF (no carrier,
  # no MAC in the PF's view, "PF still in reset state"). On x86 the VF BARs land below 4 GiB.
  qemu_opts="-machine iommu=smmuv3,highmem-mmio=off"
fi
qemu_opts+=" -device pcie-root-port,id=rp1,slot=1,chassis=1"
# A hub with only the igb port on it: nothing the NIC sends leaves the VM.
qemu_opts+=" -netdev hubport,id=n1,hubid=0 -device igb,bus=rp1,netdev=n1"
# One TCG thread: multi-threaded TCG hung about one boot in six on these machines.
qemu_opts+=" -accel tcg,thread=single"
# LAB_QEMU_EXTRA: more QEMU options for debugging the lab itself, e.g. QEMU trace events
# ("-trace igb_* -D /tmp/qemu-trace.log") or a monitor ("-monitor unix:/tmp/lab-mon,server=on,wait=off").
qemu_opts+=" ${LAB_QEMU_EXTRA:-}"

guest_pid=""
# shellcheck disable=SC2317 # a trap handler
interrupted() {
  if [ -n "$guest_pid" ]; then
    kill -TERM -- "-$guest_pid" 2>/dev/null || kill -TERM "$guest_pid" 2>/dev/null || true
    wait "$guest_pid" 2>/dev/null || true
  fi
  echo "lab: interrupted" >&2
  exit 130
}
trap interrupted INT TERM

# no_timer_check: under software emulation on a busy host the kernel's boot-time check of the
# IO-APIC timer (through interrupt remapping) can miss its deadline and panic ("timer doesn't
# work through Interrupt-remapped IO-APIC"); the timer itself works.
kappend=(--append "intel_iommu=on no_timer_check")
# SMMUv3 needs no switch: the kernel uses it when the firmware (here QEMU's DT) describes it.
# But booted from a device tree, the kernel learns of the IOMMU only after PCI enumeration, too
# late to enable ACS on the root port, and the root port, the PF and every VF end in one IOMMU
# group (ACPI IORT on a server requests ACS in time). pci=config_acs sets the standard bits
# (source validation, request and completion redirect, upstream forwarding) on every device
# with ACS, as the kernel does itself on x86: one group per VF, as on real Arm servers.
[ "$arch" = amd64 ] || kappend=(--append "pci=config_acs=11101@pci:0:0")

names=() results=() secs=()
npass=0 nfail=0 nskip=0

run_one() {
  local f=$1 name out gout rwdir log wrapper tmo start rc result reason line panic
  name=$(basename "$f" .sh)
  out="$out_root/$name"
  # The guest's path of $out.
  gout=$out rwdir=$out
  [ "$arch" = amd64 ] || gout=/lab-out rwdir=/lab-out=$out
  log="$out_root/$name.log"
  rm -rf "$out" "$log"
  mkdir -p "$out"

  wrapper="$out/.run.sh"
  {
    echo "#!/bin/bash"
    printf 'export LAB_NAME=%q LAB_BIN=%q LAB_REPO=%q LAB_OUT=%q\n' \
      "$name" "$bin_dir" "$repo" "$gout"
    for k in "${!test_bins[@]}"; do printf 'export %s=%q\n' "$k" "${test_bins[$k]}"; done
    printf 'cd %q\n' "$repo"
    printf 'exec bash %q\n' "$gout/.scenario.sh"
  } >"$wrapper"
  # bash reads a script as it runs it: the guest runs a copy, so editing the scenario during a
  # run cannot change what the guest executes.
  cp "$f" "$out/.scenario.sh"

  tmo=$(header "$f" lab-timeout)
  tmo=${tmo:-$default_timeout}
  say "scenario $name on $arch (timeout ${tmo}s)"
  start=$(date +%s)
  # timeout(1) puts vng and QEMU in a process group of their own and signals the whole group;
  # run in the background so that an interrupt of this script can stop that group too.
  local vng=(vng --run "$kernel" "${guest_root[@]}" --force-9p --disable-microvm --disable-kvm -m "$memory" --verbose
    "--rwdir=$rwdir" "${kappend[@]}" --qemu-opts="$qemu_opts" --exec "bash $gout/.run.sh")
  if [ -n "$verbose" ]; then
    timeout -k 10 "$tmo" "${vng[@]}" </dev/null > >(tee "$log") 2>&1 &
  else
    timeout -k 10 "$tmo" "${vng[@]}" </dev/null >"$log" 2>&1 &
  fi
  guest_pid=$!
  rc=0
  wait "$guest_pid" || rc=$?
  guest_pid=""
  wait  # the tee of --verbose
  echo "lab: vng exit status $rc" >>"$log"
  secs+=("$(( $(date +%s) - start ))")
  names+=("$name")

  # The guest writes its marker to the console and to $LAB_OUT/result; the file cannot be
  # interleaved with kernel messages, the console line is the fallback.
  line=""
  [ -s "$out/result" ] && line=$(grep -a '^LAB-RESULT: ' "$out/result" | tail -n1 || true)
  [ -n "$line" ] || line=$(grep -a -o 'LAB-RESULT: .*' "$log" | tr -d '\r' | tail -n1 || true)
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    result=TIMEOUT
    reason="no result after ${tmo}s: QEMU killed${line:+ (last marker: $line)}"
  elif [[ "$line" == "LAB-RESULT: PASS"* ]]; then
    result=PASS
  elif [[ "$line" == "LAB-RESULT: FAIL"* ]]; then
    result=FAIL
    reason=${line#LAB-RESULT: FAIL }
  else
    result=FAIL
    reason="guest ended without a LAB-RESULT marker (vng exit $rc)"
    panic=$(grep -a -o 'Kernel panic - .*' "$log" | tr -d '\r' | head -n1 || true)
    [ -z "$panic" ] || reason="guest kernel panic: ${panic#Kernel panic - }"
  fi
  results+=("$result")

  if [ "$result" = PASS ]; then
    npass=$((npass + 1))
    say "PASS $name (${secs[-1]}s)"
    [ -n "$keep" ] || find "$out" -mindepth 1 -maxdepth 1 ! -name result ! -name dmesg.txt -exec rm -rf {} +
  else
    nfail=$((nfail + 1))
    say "$result $name (${secs[-1]}s): $reason"
    if [ -z "$verbose" ]; then
      # The console log holds kernel messages and the scenario's output; for a failure the
      # scenario's lines matter (kernel log: $out/dmesg.txt), for a hang the raw console does.
      if [ "$result" = TIMEOUT ]; then
        echo "---- last 60 lines of $log ----" >&2
        tail -n 60 "$log" >&2
      else
        echo "---- last 60 scenario lines of $log (kernel log: ${out#"$repo"/}/dmesg.txt) ----" >&2
        grep -av '^\[ *[0-9]*\.[0-9]*\] ' "$log" | grep -av 'KASLR' | tail -n 60 >&2
      fi
      echo "---- end of $log ----" >&2
    fi
  fi
}

for f in "${files[@]}"; do
  name=$(basename "$f" .sh)
  skip=$(header "$f" lab-skip)
  if [ -n "$skip" ]; then
    echo "SKIP $name: $skip"
    names+=("$name") results+=(SKIP) secs+=(0)
    nskip=$((nskip + 1))
    continue
  fi
  run_one "$f"
done

echo
printf '%-28s %-8s %s\n' scenario result seconds
for i in "${!names[@]}"; do
  printf '%-28s %-8s %s\n' "${names[$i]}" "${results[$i]}" "${secs[$i]}"
done
echo "logs: ${out_root#"$repo"/}/<scenario>.log"
[ "$nskip" = 0 ] || echo "$nskip skipped (not runnable yet)"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
}; exit
