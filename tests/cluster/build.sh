#!/usr/bin/env bash
# Builds (or reuses) the control-plane binaries from their Go modules:
# etcd from go.etcd.io/etcd/server/v3; kube-apiserver, kube-controller-manager,
# kube-scheduler and a kubectl of the same release (Debian's is older than the
# supported skew) from k8s.io/kubernetes; the kwok controller from
# sigs.k8s.io/kwok. They go to a cache outside the repo keyed by the versions,
# so only a new machine pays for the build. Prints the folder last.
#
#   bash tests/cluster/build.sh      # K8S_VERSION, ETCD_VERSION, KWOK_VERSION override
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
CACHE=${WAF_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/waf-admission/control-plane}
OUT="$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
BIN="$OUT/bin"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

have_all() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
}

# kwok acts on Stages; its release ships the "fast" set (nodes Ready with a
# Lease heartbeat, pods Running then Ready, deletion honoured) as YAML in the
# module. They are kept beside the binaries, as kwokctl does.
kwok_stages() {
  local dir f
  dir=$(GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')
  [ -d "$dir" ] || { echo "cannot find sigs.k8s.io/kwok@$KWOK_VERSION in the module cache" >&2; return 1; }
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    printf -- '---\n'
    cat "$dir/kustomize/stage/$f"
  done >"$OUT/kwok-stages.yaml"
}

if have_all; then
  [ -s "$OUT/kwok-stages.yaml" ] || (cd "$OUT" && kwok_stages)
  echo "control-plane binaries reused from $BIN (built earlier: $(cat "$OUT/build-seconds" 2>/dev/null || echo '?')s)" >&2
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "building the control plane needs go" >&2; exit 2; }
mkdir -p "$BIN"
start=$(date +%s)
# Builds are long and the machine is shared: be polite.
GO=(nice -n 10 go)
export CGO_ENABLED=0

# k8s.io/kubernetes requires each of its staging modules at v0.0.0 and replaces
# them with ./staging/... in its own go.mod; those replaces do not reach a
# dependent module, so ours replaces each with the v0.X.Y published for this
# release. The list is read from the release's go.mod, so it follows a bump.
mod_file() { curl -fsS --retry 3 "${GOPROXY_URL:-https://proxy.golang.org}/$1/@v/$2.mod"; }
staging_replaces() {
  local gomod required m
  gomod=$(mod_file k8s.io/kubernetes "$K8S_VERSION")
  required=$(awk '/^require \(/{r=1; next} r && /^\)/{r=0} r {print $1}' <<<"$gomod")
  # Only the staging modules the release requires: a replace of one nothing
  # requires is dead weight, and the proxy refuses k8s.io/sample-cli-plugin.
  sed -nE 's#^[[:space:]]*(k8s\.io/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\1#p' <<<"$gomod" |
    while read -r m; do
      if grep -qxF "$m" <<<"$required"; then
        printf 'replace %s => %s v0.%s\n' "$m" "$m" "${K8S_VERSION#v1.}"
      fi
    done
}

k8s_ldflags() {
  local minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  local pkg flags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "-s -w$flags"
}

# go get lists every module it fetches; keep that in a log unless it fails.
quiet() {
  "$@" 2>>"$OUT/go-get.log" || { tail -40 "$OUT/go-get.log" >&2; return 1; }
}

work="$OUT/src"
rm -rf "$work"
mkdir -p "$work/k8s" "$work/etcd"

echo "== etcd $ETCD_VERSION" >&2
(
  cd "$work/etcd"
  # etcd's server module also replaces its sibling modules with ../ paths;
  # requiring it from a module of our own picks the published versions.
  cat >go.mod <<MOD
module waf-admission.dev/control-plane/etcd

go 1.26
MOD
  quiet "${GO[@]}" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  "${GO[@]}" build -mod=mod -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
)

echo "== kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $K8S_VERSION, then kwok $KWOK_VERSION" >&2
(
  cd "$work/k8s"
  {
    printf 'module waf-admission.dev/control-plane/k8s\n\ngo 1.26\n\n'
    staging_replaces
  } >go.mod
  echo "$(grep -c '^replace' go.mod) staging replaces derived from k8s.io/kubernetes@$K8S_VERSION's go.mod" >&2
  cmds=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  quiet "${GO[@]}" get "${cmds[@]/%/@$K8S_VERSION}"
  "${GO[@]}" build -mod=mod -trimpath -ldflags "$(k8s_ldflags)" -o "$BIN/" "${cmds[@]}"
)

# kwok's own go.mod has no replaces, so it installs as published; a module of
# its own keeps its dependency versions from moving Kubernetes' and back.
GOBIN="$BIN" quiet "${GO[@]}" install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
(cd "$OUT" && kwok_stages)

took=$(( $(date +%s) - start ))
echo "$took" >"$OUT/build-seconds"
echo "control-plane binaries built in ${took}s into $BIN" >&2
echo "$BIN"
