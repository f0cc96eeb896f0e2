#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time:
#   bash fuzz/run.sh [seconds-per-target] [target...]
# The corpus lives in fuzz/corpus/<target>/: the committed seeds (seed-*)
# and whatever libFuzzer adds (ignored by git). A crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script exit 1 after the others ran;
# reproduce it with the printed command. Prints executions and crashes per
# target.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
targets=(admission_review check_load image_ref quantity policy_compile patch_roundtrip)
if [ "$#" -gt 0 ]; then targets=("$@"); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# The fuzz build instruments every crate: keep it out of the clone and
# apart from the normal target dir, which it would otherwise rebuild.
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/waf-admission
target_dir=$CACHE/fuzz-target
# cargo-fuzz passes -Z flags; stable rustc accepts them with RUSTC_BOOTSTRAP.
# No sanitizer: the code is safe Rust (unsafe_code is forbidden), so ASan
# would only slow the build and each run; -a keeps debug assertions and
# overflow checks on, so an arithmetic overflow is a crash.
RUSTC_BOOTSTRAP=1 cargo fuzz build --release --debug-assertions --sanitizer none \
  --target-dir "$target_dir"
bin_dir=$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release

failed=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  dict=()
  [ -f "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
  start=$(date +%s)
  status=0
  "$bin_dir/$t" "corpus/$t" "${dict[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || status=$?
  elapsed=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  crashes=0
  if [ "$status" -ne 0 ]; then
    crashes=1
    failed=1
    echo "--- $t failed (exit $status); the end of its log:" >&2
    tail -n 40 "$log" >&2
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    [ -n "$artifact" ] && echo "reproduce: $bin_dir/$t fuzz/$artifact" >&2
  fi
  summary+=("$(printf '%-18s %12s %8s %8s' "$t" "${execs:-?}" "$crashes" "$elapsed")")
  rm -f "$log"
done
printf '\n%-18s %12s %8s %8s\n' target executions crashes seconds
printf '%s\n' "${summary[@]}"
exit "$failed"
