"""Issue 27 on the real control plane: what AI teams apply is judged itself.
The CRDs are the projects' own (KServe's InferenceService, ServingRuntime,
ClusterServingRuntime and LLMInferenceService, LeaderWorkerSet's, from their
Go modules: ai_crds.sh) and a minimal open-schema stand-in for KAITO's
(fixtures/kaito-crds.yaml); no operator runs. A platform team's ClusterRole
aggregated into `edit` (fixtures/ai-edit-clusterrole.yaml) lets the
developer, who holds only `edit` in their namespace, apply them.

With the baseline in Deny, each `fail-*` fixture of tests/fixtures/ai is
refused at `kubectl apply`, the refusal naming the rule and the path inside
the resource's own fields that its `# expect: <rule> <json-pointer>` lines
give; each `pass-*` fixture is admitted. A Deployment the developer makes
with a controller ownerReference to their own InferenceService is still
judged as theirs (a forged owner gains nothing); the same Deployment made by
KServe's controller identity is judged through the InferenceService, so its
single replica is not refused at the Deployment."""

import re
import subprocess
import uuid

import pytest
import yaml

from conftest import HERE, ROOT, baseline_for_module, kubectl, load, poll

# Refusals are what these tests show; the rest of the suite leaves the
# baseline in Deny, and a run of this file alone gets it there too.
baseline_denies = baseline_for_module("Deny")

FIXTURES = ROOT / "tests/fixtures/ai"
KAITO_CRDS = HERE / "fixtures/kaito-crds.yaml"
EDIT_ROLE = HERE / "fixtures/ai-edit-clusterrole.yaml"
SUFFIX = uuid.uuid4().hex[:6]
POLICY = f"ai-resources-{SUFFIX}"
NS_LABEL = "waf-test-ai-resources"
# KServe's controller, as config/default (namespace kserve) and
# config/rbac/service_account.yaml name it.
KSERVE_CONTROLLER = "system:serviceaccount:kserve:kserve-controller-manager"
OPERATOR_ROLE = f"waf-test-kserve-controller-{SUFFIX}"
# What the developer applies, as `kubectl auth can-i` names it.
RESOURCES = [
    "inferenceservices.serving.kserve.io",
    "llminferenceservices.serving.kserve.io",
    "servingruntimes.serving.kserve.io",
    "leaderworkersets.leaderworkerset.x-k8s.io",
    "workspaces.kaito.sh",
    "inferencesets.kaito.sh",
]
EXPECT = re.compile(r"^# expect: (\S+) (/\S*)$", re.M)


def fixtures(prefix):
    return sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.glob(f"*/{prefix}*.yaml"))


def expected(fixture):
    found = EXPECT.findall((FIXTURES / fixture).read_text())
    assert found, f"tests/fixtures/ai/{fixture} has no `# expect: <rule> <path>` line"
    return found


def docs(fixture):
    return load(FIXTURES / fixture)


def runtime_first(fixture):
    """What goes with a fixture: an InferenceService's ServingRuntime."""
    if fixture.startswith("inferenceservice/"):
        return docs("inferenceservice/servingruntime.yaml")
    return []


def one_line(r):
    return " ".join(r.out.split())


def crd_files():
    proc = subprocess.run(["bash", str(HERE / "ai_crds.sh")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"ai_crds.sh: {proc.stderr}"
    files = [line for line in proc.stdout.splitlines() if line]
    assert len(files) >= 4, files
    return files + [str(KAITO_CRDS)]


def crd_names(path):
    with open(path) as f:
        return [d["metadata"]["name"] for d in yaml.safe_load_all(f) if d and d.get("kind") == "CustomResourceDefinition"]


@pytest.fixture(scope="module")
def ai_crds():
    """The CRDs installed and Established, the aggregated ClusterRole, and a
    policy that allows only two GPU VM sizes in the namespaces labelled for
    this file; all removed after."""
    names = []
    for f in crd_files():
        # Over 256 KiB each: server-side, as no last-applied annotation fits.
        r = kubectl("apply", "--server-side", "--force-conflicts", "-f", f, timeout=180)
        assert r.ok, r
        names += crd_names(f)
    r = kubectl("wait", "--for", "condition=established", "--timeout=90s", *[f"crd/{n}" for n in names], timeout=120)
    assert r.ok, r
    r = kubectl("apply", "-f", str(EDIT_ROLE))
    assert r.ok, r
    policy = {
        "apiVersion": "waf-admission.dev/v1alpha1",
        "kind": "WellArchitectedPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "match": {"namespaceSelector": {"matchLabels": {NS_LABEL: SUFFIX}}},
            "action": "Warn",
            "rules": {"gpuPlacement": {
                "action": "Deny",
                "allowedVmSizes": ["Standard_NC24ads_A100_v4", "Standard_NC40ads_H100_v5"],
            }},
        },
    }
    r = kubectl("apply", "-f", "-", input=policy)
    assert r.ok, r
    poll(f"policy {POLICY} Ready", lambda: kubectl(
        "get", "wap", POLICY, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}').out.strip() == "True",
        timeout=60)
    yield names
    kubectl("delete", "wap", POLICY, "--ignore-not-found")
    kubectl("delete", "-f", str(EDIT_ROLE), "--ignore-not-found")
    kubectl("delete", "crd", *names, "--ignore-not-found", "--timeout=120s", timeout=150)


@pytest.fixture
def ai_dev(dev, ai_crds):
    """The developer (`edit` only) once the apiserver serves them every kind
    here: RBAC's aggregation has reached `edit`, and discovery knows the CRDs."""
    r = kubectl("label", "namespace", dev.ns, f"{NS_LABEL}={SUFFIX}")
    assert r.ok, r
    for resource in RESOURCES:
        poll(f"the developer may create {resource}", lambda: dev.can_i("create", resource) == "yes", timeout=60)
        poll(f"{resource} served to the developer", lambda: dev("get", resource).ok, timeout=60)
    return dev


def denied_for(r, rule):
    return (not r.ok) and "denied the request" in r.out and f"[{rule}]" in r.out


# ------------------------------------------------------------ the CRDs' schemas


def test_every_fixture_is_valid_for_the_installed_crds(ai_dev):
    """Each fixture passes the apiserver's strict decoding and the CRD's
    schema (which run before the validating webhooks): admitted, or refused
    by the webhook, never by the schema."""
    for fixture in sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.glob("*/*.yaml")):
        r = ai_dev.apply(docs(fixture), "--dry-run=server", "--validate=strict")
        assert r.ok or "admission webhook" in r.out, f"{fixture}: {r}"
        assert "strict decoding error" not in r.out and "Invalid value" not in r.out, f"{fixture}: {r}"


# ------------------------------------------------- each resource judged itself


@pytest.mark.parametrize("fixture", fixtures("fail-"))
def test_a_failing_resource_is_refused_with_paths_into_its_own_fields(ai_dev, fixture):
    for runtime in runtime_first(fixture):
        r = ai_dev.apply([runtime])
        assert r.ok, r
    rules = expected(fixture)
    fail = docs(fixture)
    if any(rule == "gpu-placement" for rule, _ in rules):
        # The allow-list is this file's policy: known to both replicas when
        # three dry runs running are refused for it.
        streak = []

        def in_force():
            streak.append(denied_for(ai_dev.apply(fail, "--dry-run=server"), "gpu-placement"))
            return len(streak) >= 3 and all(streak[-3:])

        poll(f"policy {POLICY} in force on both replicas", in_force, timeout=30, interval=0.05)
    r = ai_dev.apply(fail)
    assert not r.ok and "denied the request" in r.out, f"{fixture} was not refused: {r}"
    text = one_line(r)
    for rule, path in rules:
        assert f"[{rule}]" in text, f"{fixture}: the refusal does not name [{rule}]: {text}"
        assert path in text, f"{fixture}: the refusal does not name {path}: {text}"
    # Nothing was stored.
    [doc] = fail
    plural = {"InferenceService": "inferenceservices.serving.kserve.io",
              "LLMInferenceService": "llminferenceservices.serving.kserve.io",
              "LeaderWorkerSet": "leaderworkersets.leaderworkerset.x-k8s.io",
              "Workspace": "workspaces.kaito.sh",
              "InferenceSet": "inferencesets.kaito.sh"}[doc["kind"]]
    assert not ai_dev("get", plural, doc["metadata"]["name"]).ok


@pytest.mark.parametrize("fixture", fixtures("pass-"))
def test_a_passing_resource_is_admitted(ai_dev, fixture):
    for runtime in runtime_first(fixture):
        r = ai_dev.apply([runtime])
        assert r.ok, r
    r = ai_dev.apply(docs(fixture))
    assert r.ok, f"{fixture} was refused: {r}"
    assert "denied the request" not in r.out, r


# ----------------------------------------- the workloads an operator makes


def predictor_deployment(isvc):
    """The Deployment KServe's Standard mode makes from the InferenceService
    (pass-ha.yaml): `<isvc>-predictor`, its labels, a controller reference
    to it, the runtime's container merged with the model's. One replica:
    KServe leaves spec.replicas to the HPA it makes, so the Deployment starts
    with one, which judged on its own is a single replica."""
    name = isvc["metadata"]["name"]
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    labels = {"serving.kserve.io/inferenceservice": name, "component": "predictor",
              "app": f"isvc.{name}-predictor"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": f"{name}-predictor",
            "labels": {"serving.kserve.io/inferenceservice": name, "component": "predictor"},
            "ownerReferences": [{
                "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "name": name, "uid": isvc["metadata"]["uid"], "controller": True,
            }],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": f"isvc.{name}-predictor"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": predictor["nodeSelector"],
                    "tolerations": predictor["tolerations"],
                    "containers": [{
                        "name": "kserve-container",
                        "image": model["image"],
                        "args": ["--model_name=qwen", *model["args"]],
                        "resources": model["resources"],
                        "readinessProbe": model["readinessProbe"],
                    }],
                },
            },
        },
    }


@pytest.fixture
def inference_service(ai_dev):
    """The developer's InferenceService (pass-ha.yaml), as stored: its uid."""
    r = ai_dev.apply(docs("inferenceservice/servingruntime.yaml"))
    assert r.ok, r
    r = ai_dev.apply(docs("inferenceservice/pass-ha.yaml"))
    assert r.ok, r
    return ai_dev.json("get", "inferenceservices.serving.kserve.io", "qwen-isvc-ha")


def test_a_forged_owner_gains_nothing(ai_dev, inference_service):
    """The developer writes the ownerReference KServe would: to their own
    InferenceService, real uid, controller. The requester is not KServe's
    controller, so the Deployment is judged as theirs: one replica, refused."""
    deployment = predictor_deployment(inference_service)
    r = ai_dev.apply([deployment])
    assert denied_for(r, "zone-spread"), r
    assert not ai_dev("get", "deployment", deployment["metadata"]["name"]).ok


@pytest.fixture
def kserve_controller(ai_dev):
    """RBAC for KServe's controller identity, as its chart grants (what it
    needs here: Deployments, and reading InferenceServices); removed after."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": OPERATOR_ROLE},
        "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments"],
             "verbs": ["create", "get", "list", "watch", "update", "patch", "delete"]},
            {"apiGroups": ["serving.kserve.io"],
             "resources": ["inferenceservices", "inferenceservices/finalizers", "servingruntimes"],
             "verbs": ["get", "list", "watch", "update"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": OPERATOR_ROLE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OPERATOR_ROLE},
        "subjects": [{"kind": "ServiceAccount", "namespace": "kserve", "name": "kserve-controller-manager"}],
    }
    r = kubectl("apply", "-f", "-", input=[role, binding])
    assert r.ok, r

    def as_controller(*args, input=None):
        return kubectl("--as", KSERVE_CONTROLLER, "-n", ai_dev.ns, *args, input=input)

    poll("KServe's controller may create Deployments", lambda: as_controller(
        "auth", "can-i", "create", "deployments.apps").stdout.strip() == "yes", timeout=30)
    yield as_controller
    kubectl("delete", "clusterrolebinding,clusterrole", OPERATOR_ROLE, "--ignore-not-found")


def test_the_operators_deployment_is_judged_through_its_inference_service(
        ai_dev, inference_service, kserve_controller):
    """The same Deployment, made by KServe's controller: its replicas are the
    InferenceService's (minReplicas 2, spread over zones, already judged), so
    no zone-spread refusal lands on the operator; pod-level rules still hold
    and the pod here breaks none."""
    deployment = predictor_deployment(inference_service)
    r = kserve_controller("create", "-f", "-", input=[deployment])
    assert r.ok, r
    assert "[zone-spread]" not in r.out, r
    stored = ai_dev.json("get", "deployment", deployment["metadata"]["name"])
    assert stored["metadata"]["ownerReferences"][0]["uid"] == inference_service["metadata"]["uid"]
    ai_dev("delete", "deployment", deployment["metadata"]["name"], "--wait=false")


# ------------------------------ floors through scale, autoscalers and the audit


@pytest.fixture
def leader_worker_set(ai_dev):
    """The developer's LeaderWorkerSet of two groups (pass-ha.yaml), once the
    webhook's cache holds it: a dry run of a scale to one group is refused
    (the controller finds a CRD installed after it started within a minute)."""
    [lws] = docs("leaderworkerset/pass-ha.yaml")
    r = ai_dev.apply([lws])
    assert r.ok, r
    name = lws["metadata"]["name"]
    poll("the LeaderWorkerSet in the webhook's cache", lambda: denied_for(ai_dev(
        "scale", f"leaderworkersets.leaderworkerset.x-k8s.io/{name}", "--replicas=1",
        "--dry-run=server"), "zone-spread"), timeout=150, interval=1)
    yield name
    ai_dev("delete", "leaderworkersets.leaderworkerset.x-k8s.io", name, "--wait=false")


def test_a_leader_worker_set_keeps_its_floor_through_the_scale_subresource(ai_dev, leader_worker_set):
    """`kubectl scale` writes spec.replicas through the scale subresource,
    which no template rule sees: the webhook judges it as a change of the
    groups, and refuses one group where the policy asks for two."""
    lws = "leaderworkersets.leaderworkerset.x-k8s.io"
    r = ai_dev("scale", f"{lws}/{leader_worker_set}", "--replicas=1")
    assert denied_for(r, "zone-spread"), r
    assert ai_dev.json("get", lws, leader_worker_set)["spec"]["replicas"] == 2
    # Up is a change that holds the floor.
    r = ai_dev("scale", f"{lws}/{leader_worker_set}", "--replicas=3")
    assert r.ok, r


def test_an_autoscaler_cannot_take_a_leader_worker_set_below_its_floor(ai_dev, leader_worker_set):
    """An HPA that targets the LeaderWorkerSet (its scale subresource) is
    judged against it: a floor of one group is refused, two admitted."""
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": leader_worker_set},
        "spec": {
            "scaleTargetRef": {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
                               "name": leader_worker_set},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": "vllm:num_requests_waiting"},
                         "target": {"type": "AverageValue", "averageValue": "5"}}}],
        },
    }
    r = ai_dev.apply([hpa])
    assert denied_for(r, "zone-spread"), r
    hpa["spec"]["minReplicas"] = 2
    r = ai_dev.apply([hpa])
    assert r.ok, r
    ai_dev("delete", "hpa", leader_worker_set, "--wait=false")


def test_the_audit_reports_the_ai_resources_themselves(ai_dev, leader_worker_set):
    """The background audit judges what is stored, in the resource's own
    terms: the namespace's report lists the LeaderWorkerSet with its
    results (its worker template has no probes: a warning)."""
    def results():
        r = kubectl("get", "-n", ai_dev.ns, "reports.openreports.io", "waf-admission", "-o", "json")
        if not r.ok:
            return set()
        import json
        rep = json.loads(r.stdout)
        return {(x["rule"], x["result"], x["resources"][0]["kind"]) for x in rep["results"]
                if x["resources"][0]["name"] == leader_worker_set}
    got = poll("the LeaderWorkerSet in the namespace's report", results, timeout=120)
    assert ("probes", "warn", "LeaderWorkerSet") in got, got
    assert ("zone-spread", "pass", "LeaderWorkerSet") in got, got
