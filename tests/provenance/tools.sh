#!/usr/bin/env bash
# Builds, or reuses, the real signing tools the provenance tests drive:
# cosign and oras, each with `go install` from its own Go module at a pinned
# version, into a folder outside the repo keyed by both versions, so a reused
# machine never rebuilds them:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/waf-admission/tools/cosign-<ver>-oras-<ver>/bin
#
# The last line of stdout is that folder; progress goes to stderr.
# Env: COSIGN_VERSION, ORAS_VERSION override the pins (a new key, a new folder).
#
# cosign v3 (github.com/sigstore/cosign/v3/cmd/cosign) v3.1.3, the newest v3
# the module proxy serves, builds with Go 1.26 as it is: no fallback to v2 is
# needed. A cold build took ~170 s of wall time for cosign and ~40 s for oras
# on 2 shared cores (module downloads included).
set -euo pipefail

COSIGN_VERSION=${COSIGN_VERSION:-v3.1.3}
ORAS_VERSION=${ORAS_VERSION:-v1.3.6}
COSIGN_PKG=github.com/sigstore/cosign/v3/cmd/cosign
ORAS_PKG=oras.land/oras/cmd/oras

die() { echo "tools.sh: error: $*" >&2; exit 1; }
log() { echo "tools.sh: $*" >&2; }

command -v go >/dev/null 2>&1 ||
  die "'go' not found on PATH: cosign and oras are built from their Go modules (Go >= 1.26.7 needed: oras v1.3.6 says go 1.26.7, cosign v3.1.3 go 1.26.0)"

bin=${XDG_CACHE_HOME:-$HOME/.cache}/waf-admission/tools/cosign-$COSIGN_VERSION-oras-$ORAS_VERSION/bin
mkdir -p "$bin"

# A binary counts as built when it runs and reports the pinned version. The
# output is read whole before grep sees it: `tool version | grep -q` under
# pipefail fails at random when grep exits at its match and the tool, still
# writing, dies of SIGPIPE.
reports() { local out; out=$("$1" version 2>/dev/null) || return 1; grep -q "$2" <<<"$out"; }
cosign_ok() { [ -x "$bin/cosign" ] && reports "$bin/cosign" "GitVersion: *$COSIGN_VERSION\$"; }
oras_ok() { [ -x "$bin/oras" ] && reports "$bin/oras" "^Version: *${ORAS_VERSION#v}\$"; }

# go install from a scratch folder, so no go.mod or go.work around (the
# repo's or the caller's) has a say; the local toolchain only (no download).
build() {
  local pkg=$1 ver=$2 logfile=$3 scratch start rc
  scratch=$(mktemp -d)
  start=$(date +%s)
  set +e
  (cd "$scratch" && GOBIN=$bin GOTOOLCHAIN=local GOFLAGS=-mod=mod go install "$pkg@$ver") >"$logfile" 2>&1
  rc=$?
  set -e
  rm -rf "$scratch"
  echo "rc=$rc seconds=$(($(date +%s) - start))" >>"$logfile"
  return "$rc"
}

logs=$(mktemp -d)
cosign_pid=""
cleanup() {
  if [ -n "$cosign_pid" ]; then kill "$cosign_pid" 2>/dev/null || true; fi
  rm -rf "$logs"
}
trap cleanup EXIT

# cosign is the long pole: it starts first, in the background, and oras
# builds beside it.
if ! cosign_ok; then
  log "building cosign $COSIGN_VERSION into $bin (several minutes on a cold cache)"
  build "$COSIGN_PKG" "$COSIGN_VERSION" "$logs/cosign.log" &
  cosign_pid=$!
fi
if ! oras_ok; then
  log "building oras $ORAS_VERSION into $bin"
  if ! build "$ORAS_PKG" "$ORAS_VERSION" "$logs/oras.log"; then
    cat "$logs/oras.log" >&2
    die "go install $ORAS_PKG@$ORAS_VERSION failed (log above)"
  fi
  log "oras: $(tail -n1 "$logs/oras.log")"
fi
if [ -n "$cosign_pid" ]; then
  if ! wait "$cosign_pid"; then
    cosign_pid=""
    cat "$logs/cosign.log" >&2
    die "go install $COSIGN_PKG@$COSIGN_VERSION failed (log above)"
  fi
  cosign_pid=""
  log "cosign: $(tail -n1 "$logs/cosign.log")"
fi

cosign_ok || die "$bin/cosign does not report GitVersion $COSIGN_VERSION"
oras_ok || die "$bin/oras does not report Version ${ORAS_VERSION#v}"
log "cosign $COSIGN_VERSION and oras $ORAS_VERSION ready"
echo "$bin"
