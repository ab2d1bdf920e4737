#!/usr/bin/env bash
# Runs the node scenarios (scripts/node.sh test): a new node, then every scenario of
# tests/node/scenarios in order (or those named: 10, 20-kernel-vf, ...), then down.
#   run.sh [--keep] [SCENARIO...]
# --keep leaves the node up afterwards. Scenario 10 deploys the stack; when it fails the
# others are not run and count as failed. Each scenario prints PASS or FAIL, its duration and
# the time from `kubectl apply` to Ready of each pod it started; a failure dumps the tails of
# the kubelet, containerd, Multus and device-plugin logs. Logs are copied to target/node/logs.
# The last line is "N passed, M failed"; the exit status is 1 when anything failed.
set -euo pipefail
# shellcheck source=tests/node/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

keep=""
want=()
for a in "$@"; do
  case "$a" in
    --keep) keep=1 ;;
    -*) die "run: unknown option $a" ;;
    *) want+=("$a") ;;
  esac
done

scen_dir=$NODE_HERE/scenarios
files=()
if [ ${#want[@]} = 0 ]; then
  while read -r f; do files+=("$scen_dir/$f"); done < <(find "$scen_dir" -maxdepth 1 -name '[0-9]*.sh' -printf '%f\n' | sort)
else
  for w in "${want[@]}"; do
    f=$(find "$scen_dir" -maxdepth 1 \( -name "$w.sh" -o -name "$w-*.sh" \) | sort | head -n1)
    [ -n "$f" ] || die "run: no scenario $w in tests/node/scenarios"
    files+=("$f")
  done
  # The stack must be deployed first.
  [[ "$(basename "${files[0]}")" == 10-* ]] || files=("$scen_dir/$(cd "$scen_dir" && ls 10-*.sh)" "${files[@]}")
fi

# dump_logs: what a failure needs; never fails itself.
dump_logs() {
  local n
  set +e
  echo "---- node state ----"
  kc get pods -A -o wide 2>&1 | tail -n 30
  kc get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 20
  for n in kubelet containerd multus; do
    echo "---- last 40 lines of $LOGS/$n.log ----"
    tail -n 40 "$LOGS/$n.log" 2>/dev/null
  done
  echo "---- last 40 lines of the device plugin (kubectl logs) ----"
  kc -n kube-system logs -l app.kubernetes.io/name=sriov-device-plugin --tail=40 2>&1
  kc -n kube-system logs -l app.kubernetes.io/name=sriov-device-plugin --tail=20 --previous 2>/dev/null |
    sed 's/^/(previous) /'
  echo "---- end of logs ----"
  set -e
}

if node_is_up; then say "a node is up: taking it down first"; bash "$NODE_HERE/down.sh"; fi
# An interrupted run takes its node down (unless --keep).
[ -n "$keep" ] || trap 'echo "node: interrupted" >&2; bash "$NODE_HERE/down.sh"; exit 130' INT TERM
t_up=$(date +%s.%N)
if ! bash "$NODE_HERE/up.sh"; then
  for n in etcd kube-apiserver containerd kubelet; do
    echo "---- last 20 lines of $LOGS/$n.log ----"
    tail -n 20 "$LOGS/$n.log" 2>/dev/null || true
  done
  mkdir -p "$NODE_TARGET"
  rm -rf "$NODE_TARGET/logs"
  cp -r "$LOGS" "$NODE_TARGET/logs" 2>/dev/null || true
  [ -n "$keep" ] || bash "$NODE_HERE/down.sh"
  echo "FAIL node up: the node did not come up (logs: target/node/logs)"
  echo "0 passed, ${#files[@]} failed"
  exit 1
fi
up_secs=$(since "$t_up")

names=() results=() secs=() readys=()
npass=0 nfail=0 deployed=1
for f in "${files[@]}"; do
  name=$(basename "$f" .sh)
  out=$NODE_DIR/scenario/$name
  rm -rf "$out"
  mkdir -p "$out"
  if [ "$deployed" = 0 ]; then
    result=FAIL s=0
    echo "FAIL $name: not run, the stack is not deployed (scenario 10 failed)"
  else
    say "scenario $name"
    t=$(date +%s.%N)
    rc=0
    SCEN_OUT=$out bash "$f" 2>&1 | tee "$LOGS/scenario-$name.log" || rc=$?
    s=$(since "$t")
    if [ "$rc" = 0 ]; then
      result=PASS
      echo "PASS $name (${s}s)"
    else
      result=FAIL
      echo "FAIL $name (${s}s): $(cat "$out/failed" 2>/dev/null || echo "exit status $rc")"
      dump_logs
      [[ "$name" == 10-* ]] && deployed=0
    fi
  fi
  # The next scenario starts without this one's pods, whatever happened to it.
  kc delete pods --all -n default --wait=true --timeout=120s >/dev/null 2>&1 || true
  r=""
  [ -s "$out/ready" ] && r=$(awk '{ n++; s += $2; if ($2 > m) m = $2 } END { printf "%d pods, mean %.1fs, max %.1fs", n, s / n, m }' "$out/ready")
  names+=("$name") results+=("$result") secs+=("$s") readys+=("$r")
  if [ "$result" = PASS ]; then npass=$((npass + 1)); else nfail=$((nfail + 1)); fi
done

rm -rf "$NODE_TARGET/logs"
mkdir -p "$NODE_TARGET"
cp -r "$LOGS" "$NODE_TARGET/logs"
cp -r "$NODE_DIR/scenario" "$NODE_TARGET/logs/scenario" 2>/dev/null || true
if [ -z "$keep" ]; then bash "$NODE_HERE/down.sh"; fi

echo
echo "node up: ${up_secs}s"
printf '%-22s %-6s %8s  %s\n' scenario result seconds "kubectl apply -> Ready"
for i in "${!names[@]}"; do
  printf '%-22s %-6s %8s  %s\n' "${names[$i]}" "${results[$i]}" "${secs[$i]}" "${readys[$i]}"
done
echo "logs: target/node/logs"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
