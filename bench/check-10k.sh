#!/usr/bin/env bash
# `waf-admission check` on 10,000 workloads generated from the corpus
# (tests/fixtures/corpus: real manifests from public repositories): every
# workload document there, cycled with a unique name each, in 100 multi-
# document files. Prints the wall time and peak memory of the check.
#
#   bash bench/check-10k.sh              # release build
#   N=50000 BIN=path bash bench/check-10k.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
RUNS=${RUNS:-3}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin waf-admission
fi
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/waf-admission}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$work" "$N" <<'PY'
import glob, sys, yaml
out, n = sys.argv[1], int(sys.argv[2])
kinds = {"Deployment", "StatefulSet", "Pod", "Job", "CronJob", "ReplicaSet", "DaemonSet"}
docs = []
for path in sorted(glob.glob("tests/fixtures/corpus/*.yaml")):
    for d in yaml.safe_load_all(open(path)):
        if isinstance(d, dict) and d.get("kind") in kinds:
            docs.append(d)
files = 100
per = n // files
for f in range(files):
    with open(f"{out}/workloads-{f:03}.yaml", "w") as fh:
        for i in range(per):
            k = f * per + i
            d = dict(docs[k % len(docs)])
            md = dict(d.get("metadata") or {})
            md["name"] = f"{md.get('name', 'w')}-{k}"
            d["metadata"] = md
            fh.write("---\n")
            yaml.safe_dump(d, fh, sort_keys=False)
print(f"{files * per} workloads from {len(docs)} corpus documents, {files} files", file=sys.stderr)
PY
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "input: $(du -sh "$work" | cut -f1) of YAML"
for run in $(seq "$RUNS"); do
  # Exit 1 is expected: some corpus workloads are denied.
  /usr/bin/time -f "run $run: %e s wall, %U s user, %M KiB peak RSS" \
    "$BIN" check -o json "$work" >"$work.json" 2>"$work.err" || true
  tail -1 "$work.err"
done
python3 - "$work.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
print(f"results: {len(r)}, allowed: {sum(1 for x in r if x['allowed'])}, denied: {sum(1 for x in r if not x['allowed'])}")
PY
rm -f "$work.json" "$work.err"
