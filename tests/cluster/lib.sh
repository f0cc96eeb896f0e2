# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this
# Shared by up.sh, down.sh, replica.sh and run.sh: where the cluster lives
# and which loopback ports it uses. Everything listens on 127.0.0.1 only.

DIR=${WAF_CLUSTER_DIR:-${TMPDIR:-/tmp}/waf-admission-cluster}
LOGS="$DIR/logs"
PKI="$DIR/pki"
PIDS="$DIR/pids"
BASE=${WAF_CLUSTER_PORT_BASE:-16400}
ETCD_PORT=$((BASE + 79))
ETCD_PEER_PORT=$((BASE + 80))
API_PORT=$((BASE + 43))
WEBHOOK_PORT=$((BASE + 44)) # haproxy, in TCP mode, in front of the replicas
REPLICA_PORTS=($((BASE + 45)) $((BASE + 46)))
REPLICA_METRICS_PORTS=($((BASE + 55)) $((BASE + 56)))
KCM_PORT=$((BASE + 57))
SCHEDULER_PORT=$((BASE + 59))
KWOK_PORT=$((BASE + 10))
REGISTRY_PORT=$((BASE + 50)) # the OCI registry ci/publish.sh pushes the release to
NS=waf-admission
SA=waf-admission

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_for SECONDS WHAT CMD...: polls CMD until it succeeds, or fails naming
# WHAT and the log to read. Every start-up wait goes through here, bounded.
wait_for() {
  local secs=$1 what=$2 deadline
  shift 2
  deadline=$(($(date +%s) + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "$what not ready after ${secs}s (logs: $LOGS)"
      return 1
    fi
    sleep 0.2
  done
}

# start NAME CMD...: runs CMD in the background, output in $LOGS/NAME.log,
# pid in $PIDS/NAME (down.sh and replica.sh stop it by that pid).
start() {
  local name=$1
  shift
  "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name"
}

# stop NAME [SECONDS]: SIGTERM to the pid in $PIDS/NAME, SIGKILL after SECONDS.
stop() {
  local name=$1 secs=${2:-10} pid deadline
  [ -f "$PIDS/$name" ] || return 0
  pid=$(cat "$PIDS/$name")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(($(date +%s) + secs))
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$(date +%s)" -ge "$deadline" ]; then
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  fi
  rm -f "$PIDS/$name"
}

kc() { kubectl --kubeconfig "$DIR/admin.kubeconfig" "$@"; }
