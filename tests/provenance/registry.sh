#!/usr/bin/env bash
# A real OCI registry (Debian's docker-registry, distribution 2.8) on loopback,
# for the provenance tests.
#
#   registry.sh start <dir> [options]
#                             serve on 127.0.0.1:<free port>, storage under
#                             <dir>/storage, deletes enabled; pid in
#                             <dir>/registry.pid, log in <dir>/registry.log;
#                             last line of stdout: REGISTRY=127.0.0.1:<port>
#       --storage <path>      serve this storage folder instead (another
#                             registry's: the same images, another front door)
#       --tls <cert> <key>    HTTPS with this PEM certificate and key
#       --htpasswd <user> <password>
#                             require HTTP Basic credentials (an htpasswd file
#                             with a bcrypt hash made through libcrypt, in <dir>)
#   registry.sh stop <dir>    stop the registry whose pid is in <dir>/registry.pid
#
# Distribution 2.8 has no OCI referrers API (GET /v2/<name>/referrers/<digest>
# answers 404), so cosign and oras fall back to the referrers tag schema there.
set -euo pipefail

die() { echo "registry.sh: error: $*" >&2; exit 1; }
usage() { die "usage: registry.sh start <dir> [--storage <path>] [--tls <cert> <key>] [--htpasswd <user> <password>] | stop <dir>"; }

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
shift 2
storage="" tls_cert="" tls_key="" htuser="" htpass=""
while [ $# -gt 0 ]; do
  case "$1" in
    --storage) [ $# -ge 2 ] || usage; storage=$2; shift 2 ;;
    --tls) [ $# -ge 3 ] || usage; tls_cert=$2; tls_key=$3; shift 3 ;;
    --htpasswd) [ $# -ge 3 ] || usage; htuser=$2; htpass=$3; shift 3 ;;
    *) usage ;;
  esac
done
[ "$cmd" = start ] || [ -z "$storage$tls_cert$htuser" ] || usage

for tool in docker-registry curl python3; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "'$tool' not found on PATH (Debian: apt-get install docker-registry curl python3)"
done

# True while the pid in <dir>/registry.pid is a live docker-registry.
running() {
  local pid
  [ -f "$dir/registry.pid" ] || return 1
  pid=$(cat "$dir/registry.pid")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    grep -q docker-registry "/proc/$pid/cmdline" 2>/dev/null
}

start() {
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -z "$storage" ]; then
    storage=$dir/storage
    mkdir -p "$storage"
  fi
  [ -d "$storage" ] || die "--storage $storage is not a folder"
  storage=$(cd "$storage" && pwd)
  local scheme=http tls_yml="" auth_yml=""
  if [ -n "$tls_cert" ]; then
    if [ ! -r "$tls_cert" ] || [ ! -r "$tls_key" ]; then
      die "--tls $tls_cert $tls_key: cannot read both files"
    fi
    scheme=https
    tls_yml="  tls:
    certificate: $(realpath "$tls_cert")
    key: $(realpath "$tls_key")"
  fi
  if [ -n "$htuser" ]; then
    # Distribution reads bcrypt only. libcrypt (libxcrypt) makes it; no
    # apache2-utils or Python bcrypt package needed.
    HTUSER=$htuser HTPASS=$htpass python3 - >"$dir/htpasswd" <<'PY' ||
import ctypes, ctypes.util, os, sys
name = ctypes.util.find_library("crypt")
if not name:
    sys.exit("libcrypt not found (Debian: libcrypt1)")
lib = ctypes.CDLL(name)
lib.crypt_gensalt.restype = ctypes.c_char_p
lib.crypt.restype = ctypes.c_char_p
salt = lib.crypt_gensalt(b"$2b$", 10, None, 0)
hashed = lib.crypt(os.environ["HTPASS"].encode(), salt) if salt else None
if not hashed or not hashed.startswith(b"$2b$"):
    sys.exit("libcrypt made no bcrypt hash (libxcrypt with bcrypt is needed)")
print(os.environ["HTUSER"] + ":" + hashed.decode())
PY
      die "could not write an htpasswd file (above)"
    auth_yml="auth:
  htpasswd:
    realm: waf-admission-test
    path: $dir/htpasswd"
  fi
  if running; then
    die "a registry already runs from $dir (pid $(cat "$dir/registry.pid")); stop it first"
  fi
  # A free port: bind to 0 and let the kernel pick. The small window between
  # closing it and the registry binding it is checked below (the registry
  # must be the process that answers, and it must still be alive).
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$dir/registry.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
$tls_yml
$auth_yml
YML
  # setsid: the registry outlives this script and the caller's job control.
  setsid docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/registry.pid"

  # Readiness: GET /v2/ answers with the distribution API header (200, or
  # 401 when it wants credentials; over TLS, -k: readiness only, the tests
  # check the certificate). Bounded: 200 polls, 0.05 s apart plus the 1 s
  # curl timeout each, ~10 s in practice, and it stops at once if the
  # registry died.
  local i
  for i in $(seq 200); do
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$dir/registry.log" >&2
      rm -f "$dir/registry.pid"
      die "docker-registry exited before it was ready (log above)"
    fi
    if curl -ksS --max-time 1 -o /dev/null -D "$dir/ready.headers" "$scheme://127.0.0.1:$port/v2/" 2>/dev/null &&
      grep -qiE '^HTTP/[0-9.]+ (200|401)' "$dir/ready.headers" &&
      grep -qi '^docker-distribution-api-version: registry/2.0' "$dir/ready.headers"; then
      rm -f "$dir/ready.headers"
      echo "registry ready after $i polls: pid $pid, $scheme, storage $storage" >&2
      echo "REGISTRY=127.0.0.1:$port"
      return 0
    fi
    sleep 0.05
  done
  kill "$pid" 2>/dev/null || true
  rm -f "$dir/registry.pid"
  cat "$dir/registry.log" >&2
  die "docker-registry on 127.0.0.1:$port not ready after 200 polls of GET /v2/"
}

stop() {
  [ -f "$dir/registry.pid" ] || die "no $dir/registry.pid: nothing started from $dir"
  local pid
  pid=$(cat "$dir/registry.pid")
  if ! running; then
    rm -f "$dir/registry.pid"
    echo "registry pid $pid was not running" >&2
    return 0
  fi
  kill "$pid"
  local i
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/registry.pid"
  echo "registry pid $pid stopped (after $i polls)" >&2
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
