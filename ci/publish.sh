#!/usr/bin/env bash
# Publishes a release to an OCI registry as a platform team would to ACR: the
# container image ci/image.sh built (buildah storage, localhost/waf-admission:
# <version>) and the Helm chart packaged by Helm's SDK (`helm package`, its
# version and appVersion from Chart.yaml), both pushed, both digests read
# back from the registry. The cluster suite (tests/cluster/up.sh) runs it
# against a loopback registry and installs from what it wrote.
#
#   bash ci/publish.sh REGISTRY OUT_ENV     # REGISTRY: host[:port][/path]
#
# PLAIN_HTTP=1 talks HTTP (a loopback registry without TLS). OUT_ENV gets, as
# KEY=value lines: VERSION, IMAGE_REPOSITORY, IMAGE_DIGEST, IMAGE_REF (the
# reference by digest the chart renders), CHART_REPOSITORY (oci://…),
# CHART_DIGEST (the chart's OCI manifest), CHART_REF (oci://…@sha256:…,
# what `helm install` takes) and CHART_LAYER_DIGEST (sha256 of the .tgz).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "ci/publish.sh: error: $*" >&2; exit 1; }
log() { echo "ci/publish.sh: $*" >&2; }

[ $# = 2 ] || die "usage: bash ci/publish.sh REGISTRY OUT_ENV"
registry=${1%/}
out=$2
for tool in buildah skopeo python3; do
  command -v "$tool" >/dev/null 2>&1 || die "needs $tool (apt-get install buildah skopeo)"
done
python3 -c 'import helm_python' 2>/dev/null || die "needs the Python package helm-python-sdk (pip install helm-python-sdk)"

tls=(--tls-verify=true)
plain_http=""
if [ -n "${PLAIN_HTTP:-}" ]; then
  tls=(--tls-verify=false)
  plain_http=1
fi

chart_dir=charts/waf-admission
version=$(sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart_dir/Chart.yaml")
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart_dir/Chart.yaml")
{ [ -n "$version" ] && [ -n "$app_version" ]; } || die "no version or appVersion in $chart_dir/Chart.yaml"

# The image: the one ci/image.sh built, tagged with the chart's appVersion.
local_image=localhost/waf-admission:$app_version
bah() { buildah --storage-driver vfs "$@"; }
bah inspect --type image "$local_image" >/dev/null 2>&1 ||
  die "no image $local_image in buildah's storage: build it first with PROFILE=image bash ci/image.sh"
built_from=$(bah inspect --type image "$local_image" | python3 -c '
import json, sys
print(json.load(sys.stdin)["OCIv1"]["config"].get("Labels", {}).get("org.opencontainers.image.revision", "?"))')
log "image $local_image (built from git ${built_from:0:12}; HEAD is $(git rev-parse --short=12 HEAD))"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

image_repository=$registry/waf-admission
bah push --quiet "${tls[@]}" --digestfile "$work/image-digest" "$local_image" "docker://$image_repository:$app_version"
pushed=$(cat "$work/image-digest")
image_digest=$(skopeo inspect "${tls[@]}" --format '{{.Digest}}' "docker://$image_repository:$app_version")
[ "$pushed" = "$image_digest" ] || die "image digest pushed $pushed, the registry says $image_digest"
log "image pushed: $image_repository:$app_version@$image_digest"

# The chart: `helm package`, `helm push` to oci://REGISTRY/charts, the
# manifest's digest resolved from the registry and its layers checked: Helm's
# config and chart media types, the layer being the very .tgz packaged.
python3 - "$chart_dir" "$work" "oci://$registry/charts" "$version" "$plain_http" >"$work/chart.env" <<'PY'
import hashlib, json, pathlib, sys, urllib.request
import helm_python as helm

chart_dir, work, remote, version, plain_http = sys.argv[1:]
plain_http = bool(plain_http)
archive = pathlib.Path(helm.package(chart_dir, destination=work))
assert archive.name == f"waf-admission-{version}.tgz", archive
layer = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
client = helm.RegistryClient(plain_http=plain_http)
client.push(str(archive), remote, plain_http=plain_http)
repository = f"{remote}/waf-admission"
digest = client.resolve(f"{repository}:{version}")["digest"]

host, _, path = repository.removeprefix("oci://").partition("/")
scheme = "http" if plain_http else "https"
req = urllib.request.Request(
    f"{scheme}://{host}/v2/{path}/manifests/{digest}",
    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
)
manifest = json.load(urllib.request.urlopen(req, timeout=30))
config = manifest["config"]["mediaType"]
layers = [(l["mediaType"], l["digest"]) for l in manifest["layers"]]
if config != "application/vnd.cncf.helm.config.v1+json":
    sys.exit(f"chart manifest {digest}: config media type {config}")
if ("application/vnd.cncf.helm.chart.content.v1.tar+gzip", layer) not in layers:
    sys.exit(f"chart manifest {digest}: no chart layer {layer} in {layers}")
print(f"CHART_REPOSITORY={repository}")
print(f"CHART_DIGEST={digest}")
print(f"CHART_REF={repository}@{digest}")
print(f"CHART_LAYER_DIGEST={layer}")
PY
# shellcheck disable=SC1091  # written just above
. "$work/chart.env"
log "chart pushed: $CHART_REF (waf-admission-$version.tgz, $CHART_LAYER_DIGEST)"

cat >"$out" <<ENV
VERSION=$version
IMAGE_REPOSITORY=$image_repository
IMAGE_DIGEST=$image_digest
IMAGE_REF=$image_repository:$app_version@$image_digest
CHART_REPOSITORY=$CHART_REPOSITORY
CHART_DIGEST=$CHART_DIGEST
CHART_REF=$CHART_REF
CHART_LAYER_DIGEST=$CHART_LAYER_DIGEST
ENV
log "wrote $out"
