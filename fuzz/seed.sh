#!/usr/bin/env bash
# Writes the committed seed corpus, fuzz/corpus/<target>/seed-*, from the
# test fixtures and examples: a small set that reaches every rule, every
# workload kind and both input syntaxes. Re-run after the fixtures change.
set -euo pipefail
cd "$(dirname "$0")/.."

out=fuzz/corpus
rm -f "$out"/*/seed-*
mkdir -p "$out"/{admission_review,check_load,image_ref,quantity,policy_compile,patch_roundtrip}

# Manifests: examples, the rule fixtures' failing cases, a few real-world
# files from the corpus (a List, multi-document, JSON, odd YAML).
manifests=(examples/bad/*.yaml examples/good/*.yaml examples/exceptions/*.yaml
  tests/fixtures/rules/*/fail-*.yaml
  tests/fixtures/ai/*/*.yaml
  tests/fixtures/corpus/kubernetes-testdata-list-service-deployment.yaml
  tests/fixtures/corpus/kubernetes-fixture-multi-pod.yaml
  tests/fixtures/corpus/azuredisk-csi-nginx-pod-trailing-separator.yaml
  tests/fixtures/corpus/kaito-rag-milvus-deployments.yaml
  tests/fixtures/corpus/nim-deploy-aks-nemotron-gpu-statefulset.yaml
  tests/fixtures/yaml/*.yaml)
for f in "${manifests[@]}"; do
  name=$(echo "$f" | tr '/' '-')
  cp "$f" "$out/check_load/seed-$name"
  cp "$f" "$out/patch_roundtrip/seed-$name"
done
# The same objects as JSON, as `check` and the apiserver send them.
python3 - "$out" <<'PY'
import json, sys, yaml
out = sys.argv[1]
for f in ["examples/bad/zone-spread.yaml", "examples/bad/gpu-placement.yaml", "examples/good/llm-gpu.yaml"]:
    docs = [d for d in yaml.safe_load_all(open(f)) if d]
    name = f.replace("/", "-").replace(".yaml", ".json")
    text = "\n".join(json.dumps(d) for d in docs)
    for t in ("check_load", "patch_roundtrip"):
        open(f"{out}/{t}/seed-{name}", "w").write(text)
PY

# AdmissionReview: whole reviews (the body starts with `{`) and the
# header-plus-manifest form (operation/kind byte, policy-set byte, text).
python3 - "$out/admission_review" <<'PY'
import glob, json, sys, yaml
out = sys.argv[1]
kinds = {"Deployment": ("apps", "deployments", 0), "StatefulSet": ("apps", "statefulsets", 1),
         "Pod": ("", "pods", 2), "WellArchitectedPolicy": ("waf-admission.dev", "wellarchitectedpolicies", 6),
         "WellArchitectedException": ("waf-admission.dev", "wellarchitectedexceptions", 7)}
files = sorted(glob.glob("examples/bad/*.yaml")) + ["examples/good/llm-gpu.yaml", "examples/exceptions/ollama-research.yaml",
         "manifests/policies/strict.yaml"]
for n, f in enumerate(files):
    docs = [d for d in yaml.safe_load_all(open(f)) if d]
    obj = next(d for d in docs if d.get("kind") in kinds)
    group, resource, index = kinds[obj["kind"]]
    version = "v1alpha1" if group == "waf-admission.dev" else "v1"
    gvk = {"group": group, "version": version, "kind": obj["kind"]}
    gvr = {"group": group, "version": version, "resource": resource}
    op = ["CREATE", "UPDATE"][n % 2]
    req = {"uid": f"uid-{n}", "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
           "name": obj["metadata"].get("name", ""), "namespace": obj["metadata"].get("namespace", "ml"),
           "operation": op, "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
           "object": obj, "dryRun": False}
    if op == "UPDATE":
        req["oldObject"] = obj
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}
    name = f.replace("/", "-").replace(".yaml", "")
    open(f"{out}/seed-review-{name}.json", "w").write(json.dumps(review))
    # header: operation in bits 0-1, kind in bits 3-5; then the policy set.
    header = bytes([(n % 2) | (index << 3), n % 3])
    open(f"{out}/seed-manifest-{name}", "wb").write(header + open(f, "rb").read())
PY

# Policies: the shipped ones and the rule fixtures' policies.
for f in src/policy/baseline.yaml manifests/policies/*.yaml tests/fixtures/policies/*.yaml tests/fixtures/rules/*/policy.yaml; do
  cp "$f" "$out/policy_compile/seed-$(echo "$f" | tr '/' '-')"
done

# Image references and patterns: `pattern\nreference`, from the fixtures'
# images and the allow-list forms the design names.
python3 - "$out/image_ref" <<'PY'
import glob, re, sys
out = sys.argv[1]
images = set()
for f in glob.glob("examples/**/*.yaml", recursive=True) + glob.glob("tests/fixtures/**/*.yaml", recursive=True):
    for m in re.finditer(r"^\s*-?\s*image:\s*['\"]?([^'\"\s}#]+)", open(f).read(), re.M):
        images.add(m.group(1))
patterns = ["*.azurecr.io", "mcr.microsoft.com", "*", "myreg.example:5000", "index.docker.io",
            "[::1]:5000", "*.Example.COM"]
extra = ["localhost:5000/a/b:1", "[2001:db8::1]:5000/x@sha256:" + "a" * 64, "docker.io/library/nginx",
         "Foo/bar", "nginx@sha256:abc", "a.b/c:d@sha512:" + "b" * 128]
for n, image in enumerate(sorted(images) + extra):
    open(f"{out}/seed-{n:03}", "w").write(patterns[n % len(patterns)] + "\n" + image)
PY

# Quantities: `a\nb`, every suffix form.
n=0
for q in 0 1 500m 1.5 .5 5. 1Gi 1000Mi 2e3 1E 1e-3 100M -1 +1 0.1n 9Ei 1e999999 1Ki 1k 12345678901234567890123; do
  printf '%s\n%s' "$q" "1Gi" > "$out/quantity/seed-$(printf %02d $n)"
  n=$((n + 1))
done
du -sh "$out"; for d in "$out"/*; do printf '%s %s\n' "$(find "$d" -name 'seed-*' | wc -l)" "$d"; done
