#!/bin/sh
# Installs the `sriov` CNI binary shipped in this image into the node's CNI bin directory,
# then stays alive so the DaemonSet pod stays Ready (and a rolling update of the image
# re-installs the binary on every node).
#
#   install-cni.sh [SRC] [DEST_DIR]
#   SRC       default /usr/bin/sriov           (env CNI_BIN_SRC)
#   DEST_DIR  default /host/opt/cni/bin        (env CNI_BIN_DIR)
#   CNI_INSTALL_ONCE=1  exit after installing instead of waiting (init containers, tests)
#
# The copy is atomic: the binary is written under a temporary name in the destination
# directory and renamed over the old one, so a runtime executing `sriov` at that moment sees
# either the old or the new file, never a partial one.
set -eu

src=${1:-${CNI_BIN_SRC:-/usr/bin/sriov}}
dest_dir=${2:-${CNI_BIN_DIR:-/host/opt/cni/bin}}
name=$(basename "$src")

log() { echo "install-cni: $*" >&2; }

[ -f "$src" ] || { log "source binary $src not found"; exit 1; }
[ -d "$dest_dir" ] || { log "destination $dest_dir is not a directory (is the hostPath mounted?)"; exit 1; }

tmp="$dest_dir/.$name.tmp.$$"
trap 'rm -f "$tmp"' EXIT
cp "$src" "$tmp"
chmod 0755 "$tmp"
mv -f "$tmp" "$dest_dir/$name"
trap - EXIT
log "installed $src as $dest_dir/$name"

if [ "${CNI_INSTALL_ONCE:-0}" = 1 ]; then
  exit 0
fi

# PID 1 ignores SIGTERM unless it has a handler: exit promptly when the pod is deleted.
trap 'exit 0' TERM INT
while :; do
  sleep 3600 &
  wait $! || true
done
