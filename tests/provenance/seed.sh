#!/usr/bin/env bash
# Seeds a loopback registry with signed and unsigned images and model
# artifacts, made and signed by the real tools (cosign and oras from
# tools.sh, buildah, skopeo), and writes <outdir>/cases.json describing every
# tag: its digest, the signature layout on it, who signed it, and whether an
# admission verifier holding trusted.pub must admit or deny it.
#
#   seed.sh <registry host:port> <outdir>
#
# <outdir> gets trusted.key/.pub and other.key/.pub (cosign key pairs, empty
# password; reused when already there), cases.json, and logs/ with every
# tool's output, including each `cosign verify` oracle run.
#
# Every case is checked against cosign itself before cases.json is written:
# `cosign verify --key trusted.pub` must accept exactly the cases whose
# expect is "admit"; any disagreement fails the script.
#
# Idempotent: every manifest already tagged in the repositories it seeds
# (and the referrers listed by referrers-tag-schema indexes there) is deleted
# first, then all is pushed and signed again. Images are built with
# --timestamp 0 and artifacts with a fixed created annotation, so their
# digests are the same on every run; signatures differ (ECDSA is randomised).
set -euo pipefail

die() { echo "seed.sh: error: $*" >&2; exit 1; }
log() { echo "seed.sh: $*" >&2; }

[ $# -eq 2 ] || die "usage: seed.sh <registry host:port> <outdir>"
reg=$1
mkdir -p "$2"
out=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)

for tool in buildah skopeo python3 sha256sum curl openssl; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "'$tool' not found on PATH (Debian: apt-get install buildah skopeo python3 coreutils curl openssl)"
done
curl -fsS --max-time 5 -o /dev/null "http://$reg/v2/" ||
  die "no registry answers GET http://$reg/v2/ (start one with registry.sh start <dir>)"

bin=$("$here/tools.sh" | tail -n1)
[ -x "$bin/cosign" ] || die "tools.sh gave $bin, which has no cosign"
[ -x "$bin/oras" ] || die "tools.sh gave $bin, which has no oras"
export PATH="$bin:$PATH"
cosign_version=$(cosign version 2>/dev/null | sed -n 's/^GitVersion: *//p')
oras_version=$(oras version | sed -n 's/^Version: *//p')

start=$(date +%s)
logs=$out/logs
rm -rf "$logs"
mkdir -p "$logs"
work=$(mktemp -d)
local_images=()
cleanup() {
  local img
  for img in "${local_images[@]}"; do
    buildah --storage-driver vfs manifest rm "$img" >/dev/null 2>&1 ||
      buildah --storage-driver vfs rmi -f "$img" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Empty password for every key; no TUF or Sigstore cache in $HOME.
export COSIGN_PASSWORD=""
export TUF_ROOT=$out/.sigstore
# Keyed, offline signing with cosign v3 needs all three:
#   --tlog-upload=false        no Rekor entry (deprecated but honoured in v3.1)
#   --use-signing-config=false no TUF fetch of the public-good signing config
#   --allow-http-registry      plain HTTP to the loopback registry
sign_flags=(--tlog-upload=false --use-signing-config=false --allow-insecure-registry --allow-http-registry --yes)

# run <log name> <command...>: the command's output goes to logs/<name>.log;
# on failure that log is shown and the script stops.
run() {
  local name=$1
  shift
  if ! "$@" >"$logs/$name.log" 2>&1; then
    cat "$logs/$name.log" >&2
    die "failed ($name): $*"
  fi
}

bah() { buildah --storage-driver vfs "$@"; }
orasp() { oras "$@" --plain-http; }

# The digest of what a reference names: sha256 of the manifest bytes the
# registry serves, exactly as skopeo reads them.
digest_of() {
  local hex
  hex=$(skopeo inspect --tls-verify=false --raw "docker://$1" | sha256sum | cut -d' ' -f1)
  [ ${#hex} -eq 64 ] || die "no manifest at $1"
  echo "sha256:$hex"
}

# ---- start from a clean slate in the repositories this script owns -------
clean_repo() {
  local repo=$1 tags tag digest ref
  tags=$(orasp repo tags "$reg/$repo" 2>/dev/null || true)
  [ -n "$tags" ] || return 0
  : >"$work/delete"
  for tag in $tags; do
    digest=$(orasp resolve "$reg/$repo:$tag")
    echo "$digest" >>"$work/delete"
    if [[ $tag =~ ^sha256-[0-9a-f]{64}$ ]]; then
      # A referrers-tag-schema index: its referrers have no tag of their own.
      orasp manifest fetch "$reg/$repo@$digest" |
        python3 -c 'import json,sys; [print(m["digest"]) for m in json.load(sys.stdin).get("manifests", [])]' \
          >>"$work/delete"
    fi
  done
  sort -u "$work/delete" >"$work/delete.sorted"
  while read -r ref; do
    run "delete-${repo//\//_}-${ref#sha256:}" orasp manifest delete --force "$reg/$repo@$ref"
  done <"$work/delete.sorted"
  log "cleaned $reg/$repo: $(sort -u "$work/delete" | wc -l) manifests deleted"
}
clean_repo serving/vllm
clean_repo models/llama

# ---- keys -----------------------------------------------------------------
for who in trusted other; do
  if [ ! -s "$out/$who.key" ] || [ ! -s "$out/$who.pub" ]; then
    rm -f "$out/$who.key" "$out/$who.pub"
    (cd "$out" && run "keygen-$who" cosign generate-key-pair --output-key-prefix "$who")
  fi
done

# cases.tsv: reference, digest, layout, signed_by, expect, kind, signature_tag, reason
cases=$work/cases.tsv
: >"$cases"
add_case() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$cases"; }

# ---- images ----------------------------------------------------------------
# image <tag> [arch]: a FROM scratch image holding one small file whose
# content names the tag (so every tag has its own digest), pushed to
# serving/vllm:<tag>; prints the digest.
vllm=$reg/serving/vllm
image() {
  local tag=$1 arch=${2:-amd64} c
  mkdir -p "$work/ctx/$tag"
  printf 'waf-admission provenance fixture: serving/vllm:%s (%s)\n' "$tag" "$arch" >"$work/ctx/$tag/model-server.txt"
  c=$(bah from --quiet scratch)
  bah copy --quiet "$c" "$work/ctx/$tag/model-server.txt" /model-server.txt >/dev/null
  bah config --arch "$arch" --os linux --label "fixture=$tag" "$c"
  run "push-vllm-$tag" bah commit --quiet --timestamp 0 --tls-verify=false "$c" "docker://$vllm:$tag"
  bah rm "$c" >/dev/null
  digest_of "$vllm:$tag"
}

sign_legacy() { run "sign-legacy-$3" cosign sign --key "$out/$1.key" --new-bundle-format=false "${sign_flags[@]}" "$2"; }
sign_bundle() { run "sign-bundle-$3" cosign sign --key "$out/$1.key" --new-bundle-format=true "${sign_flags[@]}" "$2"; }
sigtag() { echo "sha256-${1#sha256:}.sig"; }
reftag() { echo "sha256-${1#sha256:}"; }

# Compact JSON with Go's key order kept (python keeps insertion order).
pyjson='import json,sys
def dump(o): return json.dumps(o, separators=(",", ":"))'

d=$(image legacy-signed)
sign_legacy trusted "$vllm@$d" legacy-signed
add_case "$vllm:legacy-signed" "$d" legacy trusted admit image "$(sigtag "$d")" \
  "cosign simple-signing signature by the trusted key at the .sig tag"
legacy_signed_digest=$d

d=$(image bundle-signed)
sign_bundle trusted "$vllm@$d" bundle-signed
add_case "$vllm:bundle-signed" "$d" bundle trusted admit image "$(reftag "$d")" \
  "Sigstore bundle (DSSE, in-toto statement) by the trusted key, as a referrer via the referrers tag schema"
bundle_signed_digest=$d

d=$(image both-signed)
sign_legacy trusted "$vllm@$d" both-signed
sign_bundle trusted "$vllm@$d" both-signed
add_case "$vllm:both-signed" "$d" legacy+bundle trusted admit image "$(sigtag "$d") $(reftag "$d")" \
  "signed by the trusted key in both layouts"

d=$(image other-key)
sign_legacy other "$vllm@$d" other-key
add_case "$vllm:other-key" "$d" legacy other deny image "$(sigtag "$d")" \
  "simple-signing signature made by a key that is not trusted"

d=$(image other-key-bundle)
sign_bundle other "$vllm@$d" other-key-bundle
add_case "$vllm:other-key-bundle" "$d" bundle other deny image "$(reftag "$d")" \
  "Sigstore bundle made by a key that is not trusted"

d=$(image unsigned)
add_case "$vllm:unsigned" "$d" none null deny image "" "no signature of any layout"

# tampered: signed, then the simple-signing payload blob is replaced by an
# altered copy (same image digest, an extra optional field) and the
# signature manifest re-pushed with the original signature annotation.
d=$(image tampered)
sign_legacy trusted "$vllm@$d" tampered
orasp manifest fetch "$vllm:$(sigtag "$d")" >"$work/tampered.manifest.json"
layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"])' "$work/tampered.manifest.json")
config=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["digest"])' "$work/tampered.manifest.json")
orasp blob fetch --output "$work/tampered.payload.json" "$vllm@$layer"
orasp blob fetch --output "$work/tampered.config.json" "$vllm@$config"
python3 -c "$pyjson"'
p = json.load(open(sys.argv[1]))
p["optional"] = {"tampered": "payload altered after signing"}
open(sys.argv[2], "w").write(dump(p))' "$work/tampered.payload.json" "$work/tampered.payload.new"
new_layer=sha256:$(sha256sum "$work/tampered.payload.new" | cut -d' ' -f1)
python3 -c "$pyjson"'
c = json.load(open(sys.argv[1]))
c["rootfs"]["diff_ids"] = [sys.argv[3]]
open(sys.argv[2], "w").write(dump(c))' "$work/tampered.config.json" "$work/tampered.config.new" "$new_layer"
new_config=sha256:$(sha256sum "$work/tampered.config.new" | cut -d' ' -f1)
run tampered-blob-payload orasp blob push "$vllm@$new_layer" "$work/tampered.payload.new"
run tampered-blob-config orasp blob push "$vllm@$new_config" "$work/tampered.config.new"
python3 -c "$pyjson"'
m = json.load(open(sys.argv[1]))
m["config"]["digest"], m["config"]["size"] = sys.argv[3], int(sys.argv[4])
m["layers"][0]["digest"], m["layers"][0]["size"] = sys.argv[5], int(sys.argv[6])
open(sys.argv[2], "w").write(dump(m))' "$work/tampered.manifest.json" "$work/tampered.manifest.new" \
  "$new_config" "$(stat -c %s "$work/tampered.config.new")" "$new_layer" "$(stat -c %s "$work/tampered.payload.new")"
old_sig_manifest=$(orasp resolve "$vllm:$(sigtag "$d")")
run tampered-manifest orasp manifest push --media-type application/vnd.oci.image.manifest.v1+json \
  "$vllm:$(sigtag "$d")" "$work/tampered.manifest.new"
run tampered-delete-original orasp manifest delete --force "$vllm@$old_sig_manifest"
add_case "$vllm:tampered" "$d" legacy trusted deny image "$(sigtag "$d")" \
  "simple-signing payload altered after signing; the signature annotation is the original one"

# tampered-bundle: the DSSE payload (the in-toto statement) is altered after
# signing (subject kept, a predicate field added) and the referrer manifest
# and the referrers-tag index re-pushed around it.
d=$(image tampered-bundle)
sign_bundle trusted "$vllm@$d" tampered-bundle
orasp manifest fetch "$vllm:$(reftag "$d")" >"$work/tb.index.json"
old_ref=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$work/tb.index.json")
orasp manifest fetch "$vllm@$old_ref" >"$work/tb.manifest.json"
layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"])' "$work/tb.manifest.json")
orasp blob fetch --output "$work/tb.bundle.json" "$vllm@$layer"
python3 -c "$pyjson"'
import base64
b = json.load(open(sys.argv[1]))
st = json.loads(base64.b64decode(b["dsseEnvelope"]["payload"]))
st["predicate"] = {"tampered": "statement altered after signing"}
b["dsseEnvelope"]["payload"] = base64.b64encode(dump(st).encode()).decode()
open(sys.argv[2], "w").write(dump(b))' "$work/tb.bundle.json" "$work/tb.bundle.new"
new_layer=sha256:$(sha256sum "$work/tb.bundle.new" | cut -d' ' -f1)
run tampered-bundle-blob orasp blob push "$vllm@$new_layer" "$work/tb.bundle.new"
python3 -c "$pyjson"'
m = json.load(open(sys.argv[1]))
m["layers"][0]["digest"], m["layers"][0]["size"] = sys.argv[3], int(sys.argv[4])
open(sys.argv[2], "w").write(dump(m))' "$work/tb.manifest.json" "$work/tb.manifest.new" \
  "$new_layer" "$(stat -c %s "$work/tb.bundle.new")"
new_ref=sha256:$(sha256sum "$work/tb.manifest.new" | cut -d' ' -f1)
run tampered-bundle-manifest orasp manifest push --media-type application/vnd.oci.image.manifest.v1+json \
  "$vllm@$new_ref" "$work/tb.manifest.new"
python3 -c "$pyjson"'
i = json.load(open(sys.argv[1]))
i["manifests"][0]["digest"], i["manifests"][0]["size"] = sys.argv[3], int(sys.argv[4])
open(sys.argv[2], "w").write(dump(i))' "$work/tb.index.json" "$work/tb.index.new" \
  "$new_ref" "$(stat -c %s "$work/tb.manifest.new")"
run tampered-bundle-index orasp manifest push --media-type application/vnd.oci.image.index.v1+json \
  "$vllm:$(reftag "$d")" "$work/tb.index.new"
run tampered-bundle-delete-original orasp manifest delete --force "$vllm@$old_ref"
add_case "$vllm:tampered-bundle" "$d" bundle trusted deny image "$(reftag "$d")" \
  "DSSE payload (in-toto statement) altered after signing; the DSSE signature is the original one"

# wrong-digest: legacy-signed's signature manifest, tagged for this image.
d=$(image wrong-digest)
run wrong-digest-tag orasp tag "$vllm:$(sigtag "$legacy_signed_digest")" "$(sigtag "$d")"
add_case "$vllm:wrong-digest" "$d" legacy trusted deny image "$(sigtag "$d")" \
  "valid trusted simple-signing signature copied from legacy-signed: its payload names another digest"

# wrong-digest-bundle: bundle-signed's bundle layer, in a referrer manifest
# whose subject is this image, listed in this image's referrers-tag index.
d=$(image wrong-digest-bundle)
orasp manifest fetch "$vllm:$(reftag "$bundle_signed_digest")" >"$work/wd.index.json"
src_ref=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$work/wd.index.json")
orasp manifest fetch "$vllm@$src_ref" >"$work/wd.manifest.json"
skopeo inspect --tls-verify=false --raw "docker://$vllm@$d" >"$work/wd.subject.json"
python3 -c "$pyjson"'
m = json.load(open(sys.argv[1]))
raw = open(sys.argv[3], "rb").read()
m["subject"] = {"mediaType": json.loads(raw)["mediaType"], "size": len(raw), "digest": sys.argv[4]}
open(sys.argv[2], "w").write(dump(m))' "$work/wd.manifest.json" "$work/wd.manifest.new" "$work/wd.subject.json" "$d"
new_ref=sha256:$(sha256sum "$work/wd.manifest.new" | cut -d' ' -f1)
run wrong-digest-bundle-manifest orasp manifest push --media-type application/vnd.oci.image.manifest.v1+json \
  "$vllm@$new_ref" "$work/wd.manifest.new"
python3 -c "$pyjson"'
i = json.load(open(sys.argv[1]))
i["manifests"][0]["digest"], i["manifests"][0]["size"] = sys.argv[3], int(sys.argv[4])
open(sys.argv[2], "w").write(dump(i))' "$work/wd.index.json" "$work/wd.index.new" \
  "$new_ref" "$(stat -c %s "$work/wd.manifest.new")"
run wrong-digest-bundle-index orasp manifest push --media-type application/vnd.oci.image.index.v1+json \
  "$vllm:$(reftag "$d")" "$work/wd.index.new"
add_case "$vllm:wrong-digest-bundle" "$d" bundle trusted deny image "$(reftag "$d")" \
  "valid trusted bundle copied from bundle-signed: its in-toto subject names another digest"

# multiarch: an OCI image index of two single-file images (amd64, arm64),
# signed by the trusted key on the index digest only (not --recursive).
list=localhost/waf-admission-provenance/vllm-multiarch
bah manifest rm "$list" >/dev/null 2>&1 || true
local_images+=("$list")
run multiarch-create bah manifest create "$list"
for arch in amd64 arm64; do
  mkdir -p "$work/ctx/multiarch-$arch"
  printf 'waf-admission provenance fixture: serving/vllm:multiarch (%s)\n' "$arch" >"$work/ctx/multiarch-$arch/model-server.txt"
  c=$(bah from --quiet scratch)
  bah copy --quiet "$c" "$work/ctx/multiarch-$arch/model-server.txt" /model-server.txt >/dev/null
  bah config --arch "$arch" --os linux --label "fixture=multiarch-$arch" "$c"
  local_images+=("$list-$arch")
  run "multiarch-commit-$arch" bah commit --quiet --timestamp 0 "$c" "$list-$arch"
  bah rm "$c" >/dev/null
  run "multiarch-add-$arch" bah manifest add --arch "$arch" --os linux "$list" "$list-$arch"
done
run multiarch-push bah manifest push --all --format oci --tls-verify=false "$list" "docker://$vllm:multiarch"
d=$(digest_of "$vllm:multiarch")
sign_legacy trusted "$vllm@$d" multiarch
add_case "$vllm:multiarch" "$d" legacy trusted admit index "$(sigtag "$d")" \
  "OCI image index (amd64, arm64) with a trusted simple-signing signature on the index digest"

# ---- model artifacts (oras) ------------------------------------------------
llama=$reg/models/llama
model() {
  local tag=$1
  mkdir -p "$work/model/$tag"
  # A tiny stand-in for weights: enough bytes to be a real blob of its own.
  python3 -c 'import sys, hashlib; sys.stdout.buffer.write(b"".join(hashlib.sha256(f"{sys.argv[1]}:{i}".encode()).digest() for i in range(64)))' \
    "$tag" >"$work/model/$tag/model.safetensors"
  (cd "$work/model/$tag" && run "push-model-$tag" orasp push \
    --artifact-type application/vnd.example.model.v1 \
    --annotation org.opencontainers.image.created=1970-01-01T00:00:00Z \
    "$llama:$tag" model.safetensors:application/vnd.example.model.weights.v1)
  digest_of "$llama:$tag"
}

d=$(model v1)
sign_bundle trusted "$llama@$d" model-v1
add_case "$llama:v1" "$d" bundle trusted admit model "$(reftag "$d")" \
  "oras model artifact with a trusted Sigstore bundle as a referrer"

d=$(model v1-legacy)
sign_legacy trusted "$llama@$d" model-v1-legacy
add_case "$llama:v1-legacy" "$d" legacy trusted admit model "$(sigtag "$d")" \
  "oras model artifact with a trusted simple-signing signature at the .sig tag"

d=$(model unsigned)
add_case "$llama:unsigned" "$d" none null deny model "" "oras model artifact with no signature"

# ---- the oracle: cosign verify with the trusted key --------------------------
# Two runs per case: cosign's default, which verifies the Sigstore bundles
# when the image has any referrer bundle and falls back to the .sig tag when
# it has none ("auto"), and --new-bundle-format=false, which reads the .sig
# tag only ("legacy_only"). auto must match expect; legacy_only must match
# expect where the layout has a .sig tag and refuse everywhere else.
verify_flags=(--key "$out/trusted.pub" --insecure-ignore-tlog=true --allow-insecure-registry --allow-http-registry)
verdicts=$work/verdicts.tsv
: >"$verdicts"
bad=0
# verify <log name> <ref> [flags...]: prints admit or deny.
verify() {
  local name=$1 ref=$2
  shift 2
  if cosign verify "${verify_flags[@]}" "$@" "$ref" >"$logs/$name.log" 2>&1; then echo admit; else echo deny; fi
}
last_line() { grep -v '^WARNING\|^$' "$logs/$1.log" | tail -n1 | cut -c1-300; }
while IFS=$'\t' read -r ref _digest layout _by expect _rest; do
  name=verify-$(echo "${ref#"$reg"/}" | tr '/:' '__')
  auto=$(verify "$name" "$ref")
  legacy=$(verify "$name-legacy-only" "$ref" --new-bundle-format=false)
  case "$layout" in *legacy*) want_legacy=$expect ;; *) want_legacy=deny ;; esac
  printf '%s\t%s\t%s\t%s\t%s\n' "$ref" "$auto" "$(last_line "$name")" "$legacy" "$(last_line "$name-legacy-only")" >>"$verdicts"
  if [ "$auto" != "$expect" ]; then
    echo "seed.sh: cosign verify says $auto for $ref, expected $expect:" >&2
    cat "$logs/$name.log" >&2
    bad=1
  fi
  if [ "$legacy" != "$want_legacy" ]; then
    echo "seed.sh: cosign verify --new-bundle-format=false says $legacy for $ref, expected $want_legacy:" >&2
    cat "$logs/$name-legacy-only.log" >&2
    bad=1
  fi
done <"$cases"
[ "$bad" = 0 ] || die "cosign's verdicts disagree with the expected ones (above)"

# ---- cases.json ---------------------------------------------------------------
python3 - "$cases" "$verdicts" "$out" "$reg" "$cosign_version" "$oras_version" <<'PY'
import base64, hashlib, json, os, subprocess, sys
cases_tsv, verdicts_tsv, out, reg, cosign_version, oras_version = sys.argv[1:]
verdicts = {}
for line in open(verdicts_tsv):
    ref, auto, auto_last, legacy, legacy_last = line.rstrip("\n").split("\t")
    verdicts[ref] = {"auto": {"verdict": auto, "last_line": auto_last},
                     "legacy_only": {"verdict": legacy, "last_line": legacy_last}}

def key(who):
    pub = os.path.join(out, who + ".pub")
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", pub, "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return {"public_key": pub, "private_key": os.path.join(out, who + ".key"),
            "bundle_hint": base64.b64encode(hashlib.sha256(der).digest()).decode()}

cases = []
for line in open(cases_tsv):
    ref, digest, layout, by, expect, kind, sigs, reason = line.rstrip("\n").split("\t")
    repo, tag = ref.rsplit(":", 1)
    # layout is one of legacy|bundle|none; a case signed in both layouts
    # says "bundle" (what cosign verifies first) and lists both in layouts.
    layouts = [] if layout == "none" else layout.split("+")
    cases.append({
        "reference": ref, "digest": digest,
        "layout": "none" if not layouts else layouts[-1], "layouts": layouts,
        "signed_by": None if by == "null" else by, "expect": expect, "reason": reason,
        "kind": kind, "repository": repo, "tag": tag,
        "signature_tags": sigs.split() if sigs else [],
        "cosign_verify": verdicts[ref],
    })
doc = {
    "registry": reg,
    "public_keys": {"trusted": os.path.join(out, "trusted.pub"), "other": os.path.join(out, "other.pub")},
    "keys": {"trusted": key("trusted"), "other": key("other")},
    "tools": {"cosign": cosign_version, "oras": oras_version},
    "cases": cases,
}
tmp = os.path.join(out, "cases.json.tmp")
with open(tmp, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
os.replace(tmp, os.path.join(out, "cases.json"))
PY

log "$(wc -l <"$cases") cases seeded in $reg in $(($(date +%s) - start)) s; cosign agrees with every expected verdict"
echo "$out/cases.json"
