#!/usr/bin/env bash
# The background audit of N Deployments (50,000 by default): the controller
# against kube's mocked API service (bench/audit-50k.rs), which serves them
# as `kubectl apply` leaves them. Prints the machine, the mock's figures and
# one summary line: peak and final RSS, and how long the audit took.
#
#   bash bench/audit-50k.sh
#   N=10000 bash bench/audit-50k.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-50000}
cargo build --release --quiet --example audit-50k
BIN=${CARGO_TARGET_DIR:-target}/release/examples/audit-50k
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/^Mem:/ {print $2}') GiB; load average $(cut -d' ' -f1-3 /proc/loadavg)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! RUST_LOG=${RUST_LOG:-warn,waf_admission=info} "$BIN" "$N" 2>"$log"; then
  cat "$log" >&2
  exit 1
fi
grep -E 'background audit done|policy reports' "$log" | cut -c1-200 || true
