#!/usr/bin/env bash
# The cluster suite: up.sh, the pytest suite in this folder, down.sh. Exits
# non-zero when any assertion fails; a missing tool is a failure, never a skip.
#
#   bash tests/cluster/run.sh            # KEEP=1 leaves the cluster up afterwards
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/cluster/lib.sh
. "$HERE/lib.sh"

suite_started=$(date +%s)
status=0
# shellcheck disable=SC2317  # reached through the EXIT trap
teardown() {
  if [ -n "${KEEP:-}" ]; then
    log "KEEP set: the cluster stays up; bash tests/cluster/down.sh stops it"
    return
  fi
  # Logs outlive a failed run, so CI can print them.
  if [ "$status" != 0 ]; then export KEEP_LOGS=1; fi
  bash "$HERE/down.sh"
}
trap teardown EXIT

python3 -c 'import pytest, yaml, helm_python' 2>/dev/null ||
  die "tests/cluster needs the Python packages pytest, pyyaml and helm-python-sdk"
# Every test file runs: the list below is in order, so a new file must be in it.
for f in "$HERE"/test_*.py; do
  grep -q "tests/cluster/$(basename "$f")" "$HERE/run.sh" ||
    die "tests/cluster/$(basename "$f") is not in run.sh's pytest list"
done

bash "$HERE/up.sh" || { status=$?; log "up.sh failed; logs in $LOGS"; exit "$status"; }
export WAF_CLUSTER_DIR="$DIR"
# test_install.py first: it checks the default install (Warn) before the rest
# switch the baseline to Deny.
set +e
(cd "$HERE/../.." && python3 -m pytest -p no:cacheprovider -v -rfE \
  tests/cluster/test_install.py tests/cluster/test_kubectl.py tests/cluster/test_real_cluster.py \
  tests/cluster/test_enforcement.py tests/cluster/test_reports.py tests/cluster/test_provenance.py \
  tests/cluster/test_status_kinds.py tests/cluster/test_rule_set.py tests/cluster/test_nodes.py \
  tests/cluster/test_model_fit.py tests/cluster/test_cost_budget.py tests/cluster/test_zone_pools.py \
  tests/cluster/test_ai_resources.py)
status=$?
set -e
log "cluster suite: pytest exit $status, $(($(date +%s) - suite_started))s including up and down"
if [ "$status" != 0 ]; then
  for f in "$LOGS"/serve-*.log; do
    log "last lines of $f"
    tail -n 15 "$f" >&2 || true
  done
fi
exit "$status"
