#!/usr/bin/env bash
# Prints, one a line, the CRD files of the AI-serving resources the cluster
# suite installs (tests/cluster/test_ai_resources.py), taken from the
# projects' Go modules through the Go module proxy, so a fresh machine needs
# nothing else and a reused one finds them in its module cache:
#
#   KServe, github.com/kserve/kserve, config/crd/full/ (the CRDs with their
#   full OpenAPI schemas, as `kubectl apply -k config/crd` installs them):
#     @v0.15.2 (the version issue 27 pins): InferenceService (v1beta1),
#       ServingRuntime and ClusterServingRuntime (v1alpha1).
#     @v0.16.0: LLMInferenceService and LLMInferenceServiceConfig
#       (serving.kserve.io/v1alpha1, served and stored, no conversion
#       webhook). v0.15.2 has no LLMInferenceService; v0.16.0 is the earliest
#       release that has it, and the proxy serves it (v0.17.0 and v0.19.0
#       too; v0.18.x it refuses). Its CRD has the one version, so no
#       conversion webhook is needed (newer releases store v1alpha2 behind
#       one, which a cluster without KServe's webhook cannot serve).
#   LeaderWorkerSet, sigs.k8s.io/lws@v0.6.2, config/crd/bases/ (v1, with the
#     scale subresource; the chart's copy is a Helm template, not YAML).
#
# KAITO's module is not served: tests/cluster/fixtures/kaito-crds.yaml stands
# in for its CRDs and is not printed here.
#
#   bash tests/cluster/ai_crds.sh | xargs -I{} kubectl apply --server-side -f {}
#
# The CRDs are over 256 KiB: apply them server-side (or create them); a
# client-side apply cannot keep its last-applied annotation.
set -euo pipefail

command -v go >/dev/null || { echo "tests/cluster/ai_crds.sh needs go" >&2; exit 1; }
CACHE=${WAF_CACHE:-$HOME/.cache/waf-admission}/go
export GOPATH="$CACHE" GOMODCACHE="$CACHE/pkg/mod" GOFLAGS=-modcacherw
# Outside any Go module, whatever the caller's directory.
cd "$(mktemp -d)"
trap 'rmdir "$PWD" 2>/dev/null || true' EXIT

module_dir() { # MODULE@VERSION: the unpacked module, downloaded when absent
  local json dir
  json=$(go mod download -json "$1") || { echo "go mod download $1 failed" >&2; exit 1; }
  dir=$(python3 -c 'import json, sys; d = json.load(sys.stdin); print(d.get("Dir", "")); sys.exit(1 if d.get("Error") else 0)' <<<"$json") ||
    { echo "go mod download $1: $json" >&2; exit 1; }
  [ -d "$dir" ] || { echo "go mod download $1: no directory $dir" >&2; exit 1; }
  echo "$dir"
}

print() { # DIR PATH...: each file, which must exist
  local dir=$1 f
  shift
  for f in "$@"; do
    [ -f "$dir/$f" ] || { echo "tests/cluster/ai_crds.sh: $dir has no $f" >&2; exit 1; }
    echo "$dir/$f"
  done
}

kserve=$(module_dir github.com/kserve/kserve@v0.15.2)
print "$kserve" \
  config/crd/full/serving.kserve.io_inferenceservices.yaml \
  config/crd/full/serving.kserve.io_servingruntimes.yaml \
  config/crd/full/serving.kserve.io_clusterservingruntimes.yaml
llmisvc=$(module_dir github.com/kserve/kserve@v0.16.0)
print "$llmisvc" \
  config/crd/full/llmisvc/serving.kserve.io_llminferenceservices.yaml \
  config/crd/full/llmisvc/serving.kserve.io_llminferenceserviceconfigs.yaml
lws=$(module_dir sigs.k8s.io/lws@v0.6.2)
print "$lws" config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml
