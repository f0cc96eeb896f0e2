#!/usr/bin/env bash
# /validate against the no-op webhook on the same stack (bench/noop-webhook.rs),
# side by side, with the same load generator: h2load, HTTP/2 over TLS, 16
# kept-alive connections with one stream each, and the review kubectl apply
# sends for a GPU Deployment (tests/fixtures/reviews/gpu-deployment-apply.json:
# managedFields, the last-applied annotation, the apiserver's defaults).
# Prints each server's saturated throughput and the ratio, then each one's
# latency percentiles at a fixed 2,000 req/s. Two more servers show what
# merely reading the review costs on this stack: the no-op with --parse
# reads the whole body as JSON before answering (the floor of any webhook
# that looks at what it is sent), with --kube it reads it as kube-rs's
# AdmissionReview and answers with kube-rs's response (a kube-rs webhook
# before it judges anything).
#
#   bash bench/compare.sh                  # release build; 10 s per saturated run, 15 s per paced run
#   ROUNDS=3 SATURATE=10 PACED=20 bash bench/compare.sh
#   BIN=/tmp/waf-admission-before bash bench/compare.sh   # an earlier build, no cargo
#
# waf-admission logs each decision at info as in production, to a pipe (as a
# container's stdout is), drained by cat into a file.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-16}
RATE=${RATE:-2000}
SATURATE=${SATURATE:-10}
PACED=${PACED:-15}
ROUNDS=${ROUNDS:-2}
REVIEW=tests/fixtures/reviews/gpu-deployment-apply.json

command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 2; }
target=${CARGO_TARGET_DIR:-target}/release
# BIN=path: measure that waf-admission build instead (a before/after pair).
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin waf-admission --example noop-webhook
fi
BIN=${BIN:-$target/waf-admission}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Waits for "<what> listening" in a log and prints the address.
listening() { # log file, what
  local addr=""
  for _ in $(seq 400); do
    addr=$(grep -m1 "$2 listening" "$1" | grep -oE '127\.0\.0\.1:[0-9]+' | head -1 || true)
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    sleep 0.025
  done
  cat "$1" >&2
  return 1
}

# Through a process substitution, so $! is the server itself (a pipeline's
# $! is its last process, and killing cat would leave the server running).
RUST_LOG=info "$BIN" serve --self-signed --baseline --addr 127.0.0.1:0 \
  --metrics-addr off --log-format json > >(cat >"$work/validate.log") 2>&1 &
pids+=($!)
"$target/examples/noop-webhook" 127.0.0.1:0 >"$work/noop.log" 2>&1 &
pids+=($!)
"$target/examples/noop-webhook" 127.0.0.1:0 --parse >"$work/parse.log" 2>&1 &
pids+=($!)
"$target/examples/noop-webhook" 127.0.0.1:0 --kube >"$work/kube.log" 2>&1 &
pids+=($!)
validate_addr=$(listening "$work/validate.log" "webhook")
noop_addr=$(listening "$work/noop.log" "noop webhook")
parse_addr=$(listening "$work/parse.log" "noop webhook")
kube_addr=$(listening "$work/kube.log" "noop webhook")

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "review: $REVIEW ($(wc -c <"$REVIEW") bytes); h2load -c $CLIENTS -m 1, HTTP/2 over TLS"

h2() { h2load -c "$CLIENTS" -m 1 -H 'content-type: application/json' -d "$REVIEW" "$@"; }

saturate() { # name addr -> req/s
  local out
  out=$(h2 -D "$SATURATE" --warm-up-time 2 "https://$2/validate?timeout=10s")
  if ! grep -q "status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx" <<<"$out" || grep -q "errored: [1-9]" <<<"$out"; then
    echo "$1: not every request was answered 2xx:" >&2
    grep -E "^(requests|status codes):" <<<"$out" >&2
    return 1
  fi
  grep -oE 'finished in [0-9.]+s, [0-9.]+ req/s' <<<"$out" | awk '{print $4}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
add() { awk -v a="$1" -v b="$2" 'BEGIN{print a+b}'; }
mean() { awk -v a="$1" -v r="$ROUNDS" 'BEGIN{printf "%.0f", a/r}'; }
sum_v=0; sum_n=0; sum_p=0; sum_k=0
for round in $(seq "$ROUNDS"); do
  n=$(saturate noop "$noop_addr")
  p=$(saturate parse "$parse_addr")
  k=$(saturate kube "$kube_addr")
  v=$(saturate validate "$validate_addr")
  echo "round $round saturated: noop $n, --parse $p, --kube $k, validate $v req/s; ratio $(ratio "$v" "$n")"
  sum_v=$(add "$sum_v" "$v"); sum_n=$(add "$sum_n" "$n"); sum_p=$(add "$sum_p" "$p"); sum_k=$(add "$sum_k" "$k")
done
echo "saturated throughput: validate $(mean "$sum_v") req/s, noop $(mean "$sum_n") req/s, ratio $(ratio "$sum_v" "$sum_n")x"
echo "reading the body alone: noop --parse $(mean "$sum_p") req/s ($(ratio "$sum_p" "$sum_n")x the noop), noop --kube $(mean "$sum_k") req/s ($(ratio "$sum_k" "$sum_n")x)"

paced() { # name addr
  rm -f "$work/$1.paced" # h2load appends to an existing log
  h2 --rps "$((RATE / CLIENTS))" -D "$PACED" --warm-up-time 2 --log-file "$work/$1.paced" \
    "https://$2/validate?timeout=10s" >"$work/$1.paced.out"
  python3 - "$work/$1.paced" "$1" "$RATE" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
lat = sorted(int(r[2]) for r in rows)
ok = sum(1 for r in rows if r[1] == "200")
def p(q): return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
print(f"{sys.argv[2]:<8} @ {sys.argv[3]} req/s: n={len(lat)} ok={ok} p50={p(.50):.3f} ms p90={p(.90):.3f} ms p99={p(.99):.3f} ms max={lat[-1]/1000:.3f} ms")
PY
}
paced noop "$noop_addr"
paced parse "$parse_addr"
paced kube "$kube_addr"
paced validate "$validate_addr"
echo "decision log lines written: $(grep -c 'admission decision' "$work/validate.log")"
