#!/usr/bin/env bash
# Fuzz every parser that takes input from outside the process (docs/fuzzing.md) for SECONDS
# each (default 20), and fail if any target crashes, breaks an invariant, runs out of its
# memory limit or hangs. The quick run belongs in CI; the long one is `scripts/fuzz.sh 3600`.
#
# Installs what it needs when missing: a nightly toolchain (rustup) and cargo-fuzz (crates.io).
# The corpus grows in fuzz/corpus/<target> (kept between runs, not committed); a failing input
# is saved in fuzz/artifacts/<target>/ and can be replayed with
#   cargo +nightly fuzz run --target-dir /var/cache/sriov-fuzz/target <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

secs=${1:-20}
case $secs in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS per target]" >&2
	exit 2
	;;
esac
cd "$(dirname "$0")/.."

if ! rustup toolchain list | grep -q '^nightly'; then
	echo "== installing the nightly toolchain (cargo-fuzz needs -Zsanitizer)"
	rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
	echo "== installing cargo-fuzz"
	cargo install cargo-fuzz --locked
fi

# The instrumented build (~2 GB, ~9 min cold on 2 cores) lives outside the checkout, so a new
# clone on the same machine only rebuilds the project's own crates.
target_dir=${SRIOV_FUZZ_TARGET_DIR:-/var/cache/sriov-fuzz/target}
mkdir -p "$target_dir"

python3 fuzz/seeds.py fuzz/corpus
echo "== building the fuzz targets (in $target_dir)"
cargo +nightly fuzz build --target-dir "$target_dir"

# Per target: the longest input worth trying (an HTTP/2 exchange needs room for a few 16 KiB
# frames). Memory: every target must stay well inside these on any input.
max_len() {
	case $1 in
	authority) echo 70000 ;;
	dp_config | cni_netconf) echo 16384 ;;
	*) echo 4096 ;;
	esac
}

failed=()
for t in $(cargo +nightly fuzz list); do
	echo "== $t: ${secs}s"
	mkdir -p "fuzz/corpus/$t"
	if ! cargo +nightly fuzz run --target-dir "$target_dir" "$t" "fuzz/corpus/$t" -- \
		-max_total_time="$secs" -max_len="$(max_len "$t")" \
		-rss_limit_mb=512 -malloc_limit_mb=64 -timeout=10 \
		-print_final_stats=1 2>"fuzz/$t.log"; then
		failed+=("$t")
		tail -n 40 "fuzz/$t.log" >&2
	else
		grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done' "fuzz/$t.log" || true
	fi
done

if ((${#failed[@]})); then
	echo "FAILED: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/<target>.log)" >&2
	exit 1
fi
echo "fuzzing: every target ran ${secs}s without a failure"
