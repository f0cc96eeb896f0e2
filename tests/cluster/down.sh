#!/usr/bin/env bash
# Stops what up.sh started, newest first, each by the pid up.sh recorded, and
# removes the state unless KEEP_LOGS=1 (the logs stay in any case when the
# suite failed: run.sh sets KEEP_LOGS).
#
#   bash tests/cluster/down.sh
set -euo pipefail
# shellcheck source=tests/cluster/lib.sh
. "$(dirname "$0")/lib.sh"

[ -d "$PIDS" ] || { log "nothing runs from $DIR"; exit 0; }
for name in haproxy serve-1 serve-0 kwok kube-scheduler kube-controller-manager kube-apiserver etcd registry; do
  if [ -f "$PIDS/$name" ]; then
    stop "$name" 30
    log "stopped $name"
  fi
done
for f in "$PIDS"/*; do # anything a test started and did not stop
  [ -e "$f" ] || continue
  stop "$(basename "$f")" 10
  log "stopped $(basename "$f")"
done
if [ -n "${KEEP_LOGS:-}" ]; then
  rm -rf "$DIR/etcd" "$PIDS" "$DIR/env"
  log "down; logs kept in $LOGS"
else
  rm -rf "$DIR"
  log "down; $DIR removed"
fi
