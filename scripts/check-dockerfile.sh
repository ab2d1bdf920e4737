#!/usr/bin/env bash
# Proves the Dockerfile's build step works without a container engine: extracts the
# `cargo build` command(s) from its RUN instructions (with the variable assignments they use)
# and runs them here, at the workspace root, with the same flags. Then checks that both
# binaries the runtime stage copies were produced, that they are statically linked, and that
# the files the Dockerfile COPYs exist and are not excluded by .dockerignore.
#
#   scripts/check-dockerfile.sh            # runs the release build (several minutes)
#   scripts/check-dockerfile.sh --dry-run  # only prints what it would run, and checks files
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0
[ "${1:-}" = --dry-run ] && dry=1

fail() { echo "check-dockerfile: FAIL: $*" >&2; exit 1; }
[ -f Dockerfile ] || fail "no Dockerfile at the workspace root"

# The commands of every RUN instruction (continuation lines joined, --mount flags dropped),
# split at top-level `;` and `&&`, keeping assignments and cargo builds.
cmds=$(python3 - <<'PY'
import re
text = open("Dockerfile").read()
text = re.sub(r"\\\n", " ", text)
out = []
for line in text.splitlines():
    m = re.match(r"\s*RUN\s+(.*)", line)
    if not m:
        continue
    body = m.group(1)
    while True:
        f = re.match(r"--\S+\s+", body)
        if not f:
            break
        body = body[f.end():]
    if "cargo build" not in body:
        continue
    # split on ; and && outside quotes
    parts, cur, q, i = [], "", None, 0
    while i < len(body):
        c = body[i]
        if q:
            if c == q:
                q = None
            cur += c
        elif c in "'\"":
            q = c
            cur += c
        elif c == ";" or body.startswith("&&", i):
            parts.append(cur)
            cur = ""
            i += 1 if c == ";" else 2
            continue
        else:
            cur += c
        i += 1
    parts.append(cur)
    for p in (x.strip() for x in parts):
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", p) and " " not in p.split("=", 1)[0] and "cargo" not in p:
            out.append(p)
        elif "cargo build" in p:
            out.append(p)
print("\n".join(out))
PY
)
[ -n "$cmds" ] || fail "no 'cargo build' command found in a RUN instruction"
echo "== commands from the Dockerfile:"
printf '%s\n' "$cmds" | sed 's/^/  /'

grep -q -- '--release' <<<"$cmds" || fail "the Dockerfile's cargo build lacks --release"
grep -q -- '--locked' <<<"$cmds" || fail "the Dockerfile's cargo build lacks --locked"

# The toolchain the image pins versus the local one.
want=$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile | head -n1)
have=$(rustc -V | awk '{print $2}')
if [ -n "$want" ] && [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
  echo "check-dockerfile: warning: local rustc $have is older than the image's $want" >&2
fi
echo "== rustc here: $have (image: ${want:-unpinned})"

# Files COPYed from the context must exist and survive .dockerignore.
# shellcheck disable=SC2013 # COPY sources are single words
for f in $(sed -n 's/^COPY \(--chmod=[0-7]* \)\{0,1\}\([^-].*\) [^ ]*$/\2/p' Dockerfile | grep -v '^\.' ); do
  [ -e "$f" ] || fail "COPY source $f does not exist"
  if [ -f .dockerignore ]; then
    while read -r pat; do
      case $pat in ''|'#'*) continue ;; esac
      pat=${pat%/}
      case $f in "$pat"|"$pat"/*) fail "COPY source $f is excluded by .dockerignore ($pat)" ;; esac
    done <.dockerignore
  fi
  echo "== COPY source ok: $f"
done

if [ "$dry" = 1 ]; then
  echo "== dry run: not building"
  exit 0
fi

echo "== building"
bash -euo pipefail -c "$cmds"

host=$(rustc -vV | sed -n 's/^host: //p')
for b in sriov-device-plugin sriov; do
  f="target/$host/release/$b"
  [ -x "$f" ] || f="target/release/$b"
  [ -x "$f" ] || fail "binary $b was not produced"
  if command -v ldd >/dev/null && ldd "$f" 2>&1 | grep -q '=>'; then
    fail "$f is dynamically linked: $(ldd "$f" | tr '\n' ' ')"
  fi
  echo "== ok: $f ($(du -h "$f" | cut -f1), static)"
done
echo "check-dockerfile: OK"
