#!/usr/bin/env bash
# Proves the image build works without a container engine. The Dockerfile builds nothing: it
# COPYs the static binaries of scripts/build-release.sh from target/dist/$TARGETARCH. This
# script checks that no RUN instruction compiles (a compiler must never run under emulation),
# runs scripts/build-release.sh, then, for each platform (amd64, arm64), resolves every COPY
# source with TARGETARCH set as buildx sets it and checks that it exists, survives
# .dockerignore, and, for the binaries, that it is a static ELF file of that architecture.
#
#   scripts/check-dockerfile.sh            # builds both platforms' release binaries
#   scripts/check-dockerfile.sh --dry-run  # checks the Dockerfile and the existing files only
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0
[ "${1:-}" = --dry-run ] && dry=1

fail() { echo "check-dockerfile: FAIL: $*" >&2; exit 1; }
[ -f Dockerfile ] || fail "no Dockerfile at the workspace root"

if [ "$dry" = 0 ]; then
  echo "== scripts/build-release.sh amd64 arm64"
  bash scripts/build-release.sh amd64 arm64
fi

python3 - "$dry" <<'PY'
import fnmatch, os, re, shlex, subprocess, sys

dry = sys.argv[1] == "1"
MACHINE = {"amd64": "Advanced Micro Devices X86-64", "arm64": "AArch64"}


def fail(msg):
    print(f"check-dockerfile: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


text = re.sub(r"\\\n", " ", open("Dockerfile").read())
lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
for l in lines:
    if re.match(r"RUN\s", l, re.I) and re.search(r"\b(cargo|rustc|gcc|cc|go) ", l):
        fail(f"a RUN instruction compiles ({l[:60]}...): build with scripts/build-release.sh instead")
stages = [l for l in lines if re.match(r"FROM\s", l, re.I)]
if len(stages) != 1:
    fail(f"expected one stage (no builder stage), found {len(stages)} FROM lines")

# .dockerignore: patterns in order, the last one that matches decides; "!" re-includes.
rules = []
if os.path.exists(".dockerignore"):
    for p in open(".dockerignore").read().splitlines():
        p = p.strip()
        if not p or p.startswith("#"):
            continue
        neg = p.startswith("!")
        rules.append((neg, p.lstrip("!").rstrip("/")))


def ignored(path):
    parts = path.split("/")
    verdict = False
    for neg, pat in rules:
        # A pattern excludes a path it matches and everything under it.
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatchcase(prefix, pat) or (pat.startswith("**/") and
                                                    fnmatch.fnmatchcase(prefix, pat[3:])):
                verdict = not neg
                break
    return verdict


copies = []
for l in lines:
    m = re.match(r"COPY\s+(.*)", l, re.I)
    if not m:
        continue
    words = shlex.split(m.group(1))
    while words and words[0].startswith("--"):
        if words[0].startswith("--from"):
            fail(f"COPY {words[0]}: there is no builder stage to copy from")
        words.pop(0)
    copies += words[:-1]
if not any("${TARGETARCH}" in s or "$TARGETARCH" in s for s in copies):
    fail("no COPY source uses ${TARGETARCH}: the image must take each platform's own binaries")

binaries = 0
for arch in ("amd64", "arm64"):
    for src in copies:
        f = src.replace("${TARGETARCH}", arch).replace("$TARGETARCH", arch)
        if ignored(f):
            fail(f"COPY source {f} is excluded by .dockerignore")
        if f.startswith("target/dist/"):
            if dry and not os.path.exists(f):
                print(f"== dry run: {f} not built yet")
                continue
            if not os.access(f, os.X_OK):
                fail(f"COPY source {f} does not exist (run scripts/build-release.sh)")
            hdr = subprocess.run(["readelf", "-h", "-l", f], capture_output=True, text=True).stdout
            if f"Machine:                           {MACHINE[arch]}" not in hdr:
                fail(f"{f} is not a {MACHINE[arch]} binary")
            if "INTERP" in hdr:
                fail(f"{f} is dynamically linked")
            binaries += 1
            print(f"== ok: {f} ({os.path.getsize(f)} bytes, static {MACHINE[arch]})")
        elif not os.path.exists(f):
            fail(f"COPY source {f} does not exist")
        elif arch == "amd64":
            print(f"== COPY source ok: {f}")
if not dry and binaries == 0:
    fail("no binary COPY source was checked")
PY
echo "check-dockerfile: OK"
