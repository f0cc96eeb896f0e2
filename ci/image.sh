#!/usr/bin/env bash
# Builds the container image here, with no Docker engine: a static release
# binary, `buildah bud` of the Dockerfile (vfs storage, chroot isolation),
# `--version` and a `check` run inside the image, then a push to a real OCI
# registry on loopback and the digest read back with skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need buildah || ! need skopeo || ! need docker-registry; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah skopeo docker-registry >/dev/null
fi

target=x86_64-unknown-linux-gnu
# PROFILE=release for a release; CI uses the lighter `image` profile (Cargo.toml).
profile=${PROFILE:-release}
revision=$(git rev-parse HEAD)
version=$(sed -n 's/^version = "\(.*\)"/\1/p;T;q' Cargo.toml)
echo "static build ($target, profile $profile)"
RUSTFLAGS="-C target-feature=+crt-static" WAF_GIT_REVISION=$(git rev-parse --short=12 HEAD) \
  cargo build --profile "$profile" --locked --target "$target" --quiet
binary=${CARGO_TARGET_DIR:-target}/$target/$profile/waf-admission
if grep -q "=>" <<<"$(ldd "$binary" 2>&1)"; then
  echo "error: $binary is dynamically linked" >&2; exit 1
fi

# No overlay and no namespaces here: vfs storage, chroot isolation.
bah() { buildah --storage-driver vfs "$@"; }
work=$(mktemp -d)
registry_pid=""
cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; fi
  bah rm --all >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

image=localhost/waf-admission:$version
# The build context holds just the Dockerfile and the binary: cargo's
# target dir may live outside the clone (CI keeps it in ~/.cache).
mkdir "$work/context"
cp Dockerfile "$work/context/Dockerfile"
cp "$binary" "$work/context/waf-admission"
bah bud --quiet --isolation chroot \
  --build-arg BINARY=waf-admission --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  -t "$image" "$work/context" >/dev/null
echo "built $image"

# The labels and the user the Dockerfile promises.
bah inspect --type image "$image" | python3 -c '
import json, sys
cfg = json.load(sys.stdin)["OCIv1"]["config"]
labels = cfg.get("Labels", {})
assert labels["org.opencontainers.image.revision"] == sys.argv[1], labels
assert labels["org.opencontainers.image.version"] == sys.argv[2], labels
assert labels["org.opencontainers.image.source"], labels
assert cfg["User"] == "65532:65532", cfg["User"]
print("labels and user ok:", cfg["User"])
' "$revision" "$version"

# Run the binary inside the image.
container=$(bah from "$image")
out=$(bah run --isolation chroot "$container" -- /waf-admission --version)
echo "in the image: $out"
case "$out" in *"$version (git ${revision:0:12})"*) ;; *) echo "error: unexpected --version: $out" >&2; exit 1 ;; esac
bah copy "$container" examples /examples >/dev/null
set +e
bah run --isolation chroot "$container" -- /waf-admission check /examples/good >"$work/check.txt"
code=$?
set -e
tail -1 "$work/check.txt"
[ "$code" = 0 ] || { echo "error: check in the image exited $code" >&2; cat "$work/check.txt"; exit 1; }

# A real registry on loopback, on a free port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v2/')" 2>/dev/null; then break; fi
  sleep 0.1
done
remote=127.0.0.1:$port/waf-admission:$version
bah push --quiet --tls-verify=false --digestfile "$work/pushed" "$image" "docker://$remote"
pushed=$(cat "$work/pushed")
read_back=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$remote")
echo "pushed $remote@$pushed"
[ "$pushed" = "$read_back" ] || { echo "error: digest pushed $pushed, registry says $read_back" >&2; exit 1; }
echo "image ok: digest read back from the registry matches"
