#!/usr/bin/env bash
# End-to-end on a real cluster: kind (3 zoned workers), the image built from
# this tree, the Helm chart installed, and kubectl asserting what users see.
# Needs docker, kind, kubectl, helm and cargo. It cannot run where there is
# no container engine; .github/workflows/e2e.yaml runs it on GitHub Actions.
#
#   bash tests/e2e/run.sh            # KEEP=1 keeps the cluster afterwards
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${CLUSTER:-waf-e2e}
NS=waf-admission
APP_NS=ml
IMAGE=waf-admission:e2e
failures=0

for tool in docker kind kubectl helm cargo; do
  command -v "$tool" >/dev/null || { echo "e2e needs $tool" >&2; exit 2; }
done

pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }
cleanup() { if [ -z "${KEEP:-}" ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

# apply FILE... : kubectl apply, output (stdout and stderr) in $out, status in $rc
apply() {
  set +e
  out=$(kubectl apply -n "$APP_NS" "$@" 2>&1)
  rc=$?
  set -e
}

echo "== cluster"
kind create cluster --name "$CLUSTER" --config tests/e2e/kind.yaml --wait 120s

echo "== image"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target x86_64-unknown-linux-gnu
docker build --build-arg BINARY=target/x86_64-unknown-linux-gnu/release/waf-admission \
  --build-arg REVISION="$(git rev-parse HEAD)" -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

echo "== install"
helm install waf-admission charts/waf-admission --namespace "$NS" --create-namespace \
  --set image.repository=waf-admission --set image.tag=e2e --set image.pullPolicy=Never \
  --set policy.action=Deny --wait --timeout 180s
kubectl -n "$NS" rollout status deployment/waf-admission --timeout 120s
kubectl create namespace "$APP_NS"
# The policy reaches the webhook through its reflector; wait until it is in force.
for _ in $(seq 60); do
  status=$(kubectl get wap baseline -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
  [ "$status" = "True" ] && break
  sleep 1
done
if [ "$status" = "True" ]; then pass "baseline policy Ready"; else fail "baseline policy never Ready"; fi

echo "== a compliant inference Deployment is admitted"
apply --dry-run=server -f examples/good/llm-gpu.yaml
if [ "$rc" = 0 ]; then pass "compliant admitted"; else fail "compliant refused: $out"; fi

echo "== each rule's violation is denied with its message"
for rule in zone-spread resources image-provenance; do
  apply --dry-run=server -f "examples/bad/$rule.yaml"
  if [ "$rc" != 0 ] && grep -q "denied the request" <<<"$out" && grep -q "\[$rule\]" <<<"$out"; then
    pass "$rule denied"
  else
    fail "$rule not denied as expected: $out"
  fi
done

echo "== warn mode prints Warning:"
apply --dry-run=server -f examples/bad/autoscaler.yaml
if [ "$rc" = 0 ] && grep -q "Warning: \[autoscaler\]" <<<"$out"; then pass "autoscaler warns"; else fail "no autoscaler warning: $out"; fi

echo "== the mutating webhook fixes what it can"
apply -f tests/fixtures/rules/zone-spread/fail-no-zone-constraint.yaml
key=$(kubectl -n "$APP_NS" get deployment llm -o jsonpath='{.spec.template.spec.topologySpreadConstraints[0].topologyKey}' 2>/dev/null || true)
if [ "$rc" = 0 ] && [ "$key" = "topology.kubernetes.io/zone" ]; then pass "zone constraint added"; else fail "mutation missing ($key): $out"; fi
kubectl -n "$APP_NS" delete deployment llm --ignore-not-found >/dev/null
apply --dry-run=server -f examples/bad/gpu-placement.yaml
if [ "$rc" = 0 ] && grep -q "added by the waf-admission mutating webhook" <<<"$out"; then pass "gpu placement patched"; else fail "gpu placement: $out"; fi

echo "== a policy change takes effect within seconds"
kubectl patch wap baseline --type merge -p '{"spec":{"rules":{"imageProvenance":{"action":"Warn"}}}}'
took=""
for i in $(seq 20); do
  apply --dry-run=server -f examples/bad/image-provenance.yaml
  if [ "$rc" = 0 ]; then took=$i; break; fi
  sleep 0.5
done
if [ -n "$took" ]; then pass "policy change in force after ~$((took / 2))s"; else fail "policy change not in force: $out"; fi
kubectl patch wap baseline --type merge -p '{"spec":{"rules":{"imageProvenance":{"action":null}}}}'
sleep 2

echo "== an exception works, then expires"
expires=$(date -u -d '+25 seconds' +%Y-%m-%dT%H:%M:%SZ)
kubectl apply -f - <<YAML
apiVersion: waf-admission.dev/v1alpha1
kind: WellArchitectedException
metadata: {name: ollama-e2e, namespace: $APP_NS}
spec:
  workloads: [{kind: Deployment, name: ollama}]
  rules: [image-provenance]
  reason: e2e
  expires: "$expires"
YAML
admitted=""
for _ in $(seq 10); do
  apply --dry-run=server -f examples/bad/image-provenance.yaml
  if [ "$rc" = 0 ]; then admitted=yes; break; fi
  sleep 1
done
if [ -n "$admitted" ]; then pass "exception exempts"; else fail "exception ignored: $out"; fi
denied=""
for _ in $(seq 40); do
  apply --dry-run=server -f examples/bad/image-provenance.yaml
  if [ "$rc" != 0 ]; then denied=yes; break; fi
  sleep 1
done
if [ -n "$denied" ]; then pass "exception expired"; else fail "exception never expired"; fi

echo "== broken policy objects are refused at apply"
apply -f - <<YAML
apiVersion: waf-admission.dev/v1alpha1
kind: WellArchitectedException
metadata: {name: names-nothing}
spec: {rules: [image-provenance], reason: e2e, expires: "2099-01-01T00:00:00Z"}
YAML
if [ "$rc" != 0 ] && grep -q "name the exempted workloads" <<<"$out"; then pass "exception naming no workload refused"; else fail "nameless exception: $out"; fi
set +e
out=$(kubectl apply -f - 2>&1 <<YAML
apiVersion: waf-admission.dev/v1alpha1
kind: WellArchitectedPolicy
metadata: {name: broken-e2e}
spec: {rules: {imageProvenance: {allowedRegistries: []}}}
YAML
)
rc=$?
set -e
if [ "$rc" != 0 ] && grep -q "allowedRegistries" <<<"$out"; then pass "broken policy refused"; else fail "broken policy: $out"; fi

echo "== deleting the Lease holder loses no request and hands the Lease over"
lease_holder() { kubectl -n "$NS" get lease waf-admission-controller -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true; }
victim=$(lease_holder)
[ -n "$victim" ] || victim=$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=waf-admission -o jsonpath='{.items[0].metadata.name}')
kubectl -n "$NS" delete pod "$victim" --wait=false
lost=0
for _ in $(seq 60); do
  apply --dry-run=server -f examples/good/llm-gpu.yaml
  [ "$rc" = 0 ] || lost=$((lost + 1))
done
if [ "$lost" = 0 ]; then pass "no request lost while a pod was deleted"; else fail "$lost of 60 requests failed during pod deletion"; fi
holder=""
for _ in $(seq 30); do
  holder=$(lease_holder)
  [ -n "$holder" ] && [ "$holder" != "$victim" ] && break
  sleep 1
done
if [ -n "$holder" ] && [ "$holder" != "$victim" ]; then pass "Lease moved from $victim to $holder"; else fail "Lease still with '${holder}'"; fi

echo "== helm uninstall leaves no webhook configuration behind"
helm uninstall waf-admission --namespace "$NS" --wait
left=$(kubectl get validatingwebhookconfigurations,mutatingwebhookconfigurations -o name | grep -c waf-admission || true)
if [ "$left" = 0 ]; then pass "no webhook configuration left"; else fail "$left webhook configurations left"; fi

echo
if [ "$failures" = 0 ]; then echo "e2e: all passed"; else echo "e2e: $failures failed"; exit 1; fi
