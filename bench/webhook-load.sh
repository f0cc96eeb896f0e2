#!/usr/bin/env bash
# Load test of the webhook over TLS and HTTP/2 keep-alive, as the apiserver
# connects: /validate with a typical GPU Deployment, and GET /healthz on the
# same server (the floor that TLS and HTTP cost). Uses h2load (Debian:
# nghttp2-client) and its per-request log for percentiles.
#
#   bash bench/webhook-load.sh            # release build, 2,000 req/s for 15 s, then saturation
#   RATE=4000 DURATION=20 bash bench/webhook-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-2000}          # requests per second, all clients together
CLIENTS=${CLIENTS:-4}       # HTTP/2 connections (the apiserver keeps a few)
DURATION=${DURATION:-15}    # seconds per measured run
WARMUP=${WARMUP:-2}

command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 2; }
cargo build --release --quiet
BIN=target/release/waf-admission
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$work/review.json" <<'PY'
import json, sys
try:
    import yaml
except ImportError:
    sys.exit("pip install pyyaml")
obj = yaml.safe_load(open("tests/fixtures/workloads/compliant-gpu-deployment.yaml"))
review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "b5d1c6b2-8f0e-4d7e-9d0c-2b7f3f4c9a11",
    "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
    "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
    "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
    "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
    "name": "llm", "namespace": "ml", "operation": "CREATE",
    "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
    "object": obj, "oldObject": None, "dryRun": False,
    "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}
json.dump(review, open(sys.argv[1], "w"))
PY

RUST_LOG=${RUST_LOG:-info} "$BIN" serve --self-signed --baseline --addr 127.0.0.1:0 --metrics-addr off --log-format json \
  >"$work/server.log" 2>&1 &
pid=$!
addr=""
for _ in $(seq 200); do
  addr=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: v = json.loads(l)
    except ValueError: continue
    if v.get("message") == "webhook listening": print(v["addr"]); break' "$work/server.log")
  [ -n "$addr" ] && break
  sleep 0.05
done
[ -n "$addr" ] || { cat "$work/server.log"; exit 1; }
# Decision logs at info would measure the terminal, not the webhook.
echo "server $addr (pid $pid), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

percentiles() { # h2load log: start(µs) status duration(µs)
  python3 - "$1" "$2" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
lat = sorted(int(r[2]) for r in rows)
ok = sum(1 for r in rows if r[1] == "200")
def p(q): return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
print(f"{sys.argv[2]:<34} n={len(lat):>7} ok={ok:>7}  p50={p(.50):.3f} ms  p90={p(.90):.3f} ms  p99={p(.99):.3f} ms  max={lat[-1]/1000:.3f} ms")
PY
}

run() { # name, streams per connection, extra h2load args...
  local name=$1 streams=$2; shift 2
  local per_client=$(( RATE / CLIENTS ))
  rm -f "$work/$name.log" # h2load appends to an existing log
  h2load -c "$CLIENTS" -m "$streams" --rps "$per_client" -D "$DURATION" --warm-up-time "$WARMUP" \
    --log-file "$work/$name.log" "$@" >"$work/$name.out"
  grep -E "^(finished in|status codes:)" "$work/$name.out" | sed "s/^/  [$name] /"
  percentiles "$work/$name.log" "$name @ ${RATE} req/s, m=$streams"
}

for streams in 1 4; do
  run validate "$streams" -H 'content-type: application/json' -d "$work/review.json" "https://$addr/validate?timeout=10s"
  run healthz "$streams" "https://$addr/healthz"
done

echo "saturation (no rate limit, $CLIENTS connections x 16 streams, 10 s):"
for target in "validate:-d $work/review.json https://$addr/validate" "healthz:https://$addr/healthz"; do
  name=${target%%:*}; args=${target#*:}
  # shellcheck disable=SC2086
  h2load -c "$CLIENTS" -m 16 -D 10 --warm-up-time 2 -H 'content-type: application/json' $args \
    | grep -E "^(finished in|requests:)" | sed "s/^/  [$name] /"
done
