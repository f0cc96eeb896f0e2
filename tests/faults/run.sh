#!/usr/bin/env bash
# The fault suite (tests/faults/): slowloris, an HTTP/2 rapid-reset flood,
# 10,000 idle connections, bodies at and past the limit, and 60 s at 500
# req/s through haproxy across two certificate rotations, a rolling restart
# and a policy change. One test at a time (each one's timing bound is for
# a machine that runs only it), each printing `fault <name>: …` lines with
# its counts.
#
# The server under test is the optimised build of ci/image.sh (profile
# `image`, static), reused when CI built it already; the test harness and
# its load generators are the test profile's.
#
#   bash tests/faults/run.sh                  # every fault test
#   bash tests/faults/run.sh 'test(slowloris)' # a nextest filter
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v haproxy >/dev/null || { echo "haproxy missing: apt-get install haproxy" >&2; exit 2; }
command -v prlimit >/dev/null || { echo "prlimit missing: apt-get install util-linux" >&2; exit 2; }

target=x86_64-unknown-linux-gnu
# The same flags as ci/image.sh, so cargo finds CI's build up to date.
RUSTFLAGS="-C target-feature=+crt-static" WAF_GIT_REVISION=$(git rev-parse --short=12 HEAD) \
  cargo build --profile image --locked --target "$target" --quiet --bin waf-admission
WAF_BINARY=$(realpath "${CARGO_TARGET_DIR:-target}/$target/image/waf-admission")
export WAF_BINARY

filter=${1:-all()}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# --no-capture prints each test's lines as they come and runs tests one at a time.
status=0
cargo nextest run --locked --test faults --run-ignored only --no-capture --no-fail-fast \
  -E "$filter" 2>&1 | grep -v '^{"' | tee "$out" || status=$?
echo
echo "fault suite summary:"
grep -E '^fault ' "$out" || true
exit "$status"
