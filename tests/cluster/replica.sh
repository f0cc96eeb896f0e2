#!/usr/bin/env bash
# Starts or stops one `waf-admission serve` replica of the cluster up.sh made:
#
#   bash tests/cluster/replica.sh start 0|1     # returns once /readyz answers 200
#   bash tests/cluster/replica.sh stop 0|1      # SIGTERM; returns once it exited
#   bash tests/cluster/replica.sh pid 0|1
#
# Each replica is the chart's Deployment pod in miniature: the same flags the
# chart passes, the chart's ServiceAccount token as its only credential.
set -euo pipefail
# shellcheck source=tests/cluster/lib.sh
. "$(dirname "$0")/lib.sh"

action=${1:?start|stop|pid}
n=${2:?replica number (0 or 1)}
[ -n "${REPLICA_PORTS[$n]:-}" ] || die "no replica $n (there are ${#REPLICA_PORTS[@]})"
port=${REPLICA_PORTS[$n]}
name=serve-$n

ready() { curl -fsS --max-time 2 --cacert "$PKI/webhook-ca.crt" "https://127.0.0.1:$port/readyz"; }

case $action in
  start)
    [ ! -f "$PIDS/$name" ] || ! kill -0 "$(cat "$PIDS/$name")" 2>/dev/null || die "$name already runs"
    echo "--- start $(date -u +%FT%TZ)" >>"$LOGS/$name.log"
    start "$name" env KUBECONFIG="$DIR/serve.kubeconfig" \
      WAF_POD_NAME="waf-admission-$n" WAF_NAMESPACE="$NS" \
      "$DIR/bin/waf-admission" serve \
      --addr "127.0.0.1:$port" \
      --tls-cert "$PKI/webhook.crt" --tls-key "$PKI/webhook.key" \
      --metrics-addr "127.0.0.1:${REPLICA_METRICS_PORTS[$n]}" \
      --log-format text \
      --shutdown-delay "${WAF_SHUTDOWN_DELAY:-2s}" \
      --audit-interval "${WAF_AUDIT_INTERVAL:-10s}" \
      --registry-secret release-keys \
      --prices-configmap "$NS/waf-gpu-prices"
    pid=$(cat "$PIDS/$name")
    # Ready, or gone: a replica that exits at start should not cost the full wait.
    ready_or_gone() { ready || ! kill -0 "$pid" 2>/dev/null; }
    if ! wait_for 60 "$name" ready_or_gone || ! kill -0 "$pid" 2>/dev/null; then
      log "$name did not become ready; its log ends:"
      tail -20 "$LOGS/$name.log" >&2
      exit 1
    fi
    ;;
  stop) stop "$name" 40 ;;
  pid) cat "$PIDS/$name" ;;
  *) die "unknown action $action" ;;
esac
