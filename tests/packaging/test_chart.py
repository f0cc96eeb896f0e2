"""The Helm chart, rendered and linted with Helm's own SDK (helm-python-sdk),
every object validated against the Kubernetes schemas, and our own
Deployment judged by our own rules."""

import base64
import os
import pathlib
import shutil
import subprocess
import tempfile

import helm_python as helm
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "waf-admission"
BINARY = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "waf-admission"
DIGEST = "sha256:" + "a1" * 32

# Kinds that are not Kubernetes built-ins: kubernetes-validate has no schema
# for them, so each is checked another way (named here, never skipped silently).
OWN_OR_THIRD_PARTY = {
    "WellArchitectedPolicy": "held to our CRD's schema by tests/crd.rs and judged by `check`",
    "Issuer": "cert-manager",
    "Certificate": "cert-manager",
    "ServiceMonitor": "prometheus-operator",
    "PrometheusRule": "prometheus-operator; promtool checks its rules (test_observability.py)",
}

COMBINATIONS = {
    "defaults": {},
    "cert-manager": {"tls": {"certManager": {"enabled": True}}},
    "failure-policy-ignore": {"webhook": {"failurePolicy": "Ignore"}},
    "fixed-replicas": {"replicaCount": 3, "autoscaling": {"enabled": False}},
    "all-options": {
        "webhook": {"timeoutSeconds": 10},
        "serviceMonitor": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "priorityClassName": "system-cluster-critical",
        "policy": {"action": "Deny"},
        "image": {"digest": DIGEST},
        "reports": {"format": "wgpolicyk8s", "installCRDs": True},
        "provenance": {"secrets": ["acr-pull"],
                       "registryCA": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
        "prices": {"configMap": "waf-gpu-prices",
                   "cronJob": {"enabled": True, "region": "eastus",
                               "caBundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}},
    },
}


def render(values=None, namespace="waf-admission"):
    chart = helm.Chart.load(str(CHART))
    files = chart.render(values or {}, name="waf-admission", namespace=namespace, is_install=True)
    docs = []
    for name, text in sorted(files.items()):
        if name.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def require(tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is required: pip install {tool}")


def test_the_chart_lints_clean():
    report = helm.lint(str(CHART), strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_combination_renders_objects_kubernetes_accepts(combination, tmp_path):
    require("kubernetes-validate")
    docs = render(COMBINATIONS[combination])
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
            "ClusterRole", "PodDisruptionBudget"} <= kinds
    builtin = [d for d in docs if d["kind"] not in OWN_OR_THIRD_PARTY]
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    result = subprocess.run(["kubernetes-validate", "--strict", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(builtin)


def test_a_typo_in_values_fails_the_render():
    with pytest.raises(helm.HelmError):
        render({"replicaCont": 3})
    with pytest.raises(helm.HelmError):
        render({"webhook": {"failurePolicy": "Sometimes"}})
    with pytest.raises(helm.HelmError):
        render({"webhook": {"timeoutSeconds": 30}})


def test_webhook_configurations_are_safe_for_aks():
    docs = render()
    hooks = [d for d in docs if d["kind"].endswith("WebhookConfiguration")]
    assert len(hooks) == 2
    for h in hooks:
        assert h["metadata"]["annotations"]["admissions.enforcer/disabled"] == "true"
        for w in h["webhooks"]:
            assert w["admissionReviewVersions"] == ["v1"]
            assert w["sideEffects"] in ("None", "NoneOnDryRun")
            assert w["timeoutSeconds"] <= 10
            assert w["matchPolicy"] == "Equivalent"
            excluded = w["namespaceSelector"]["matchExpressions"][0]
            assert excluded["operator"] == "NotIn"
            assert set(excluded["values"]) == {"kube-system", "waf-admission"}
    validating = next(h for h in hooks if h["kind"] == "ValidatingWebhookConfiguration")
    by_name = {w["name"]: w for w in validating["webhooks"]}
    assert by_name["validate.waf-admission.dev"]["failurePolicy"] == "Fail"
    condition = by_name["validate.waf-admission.dev"]["matchConditions"][0]
    assert condition["name"] == "not-made-by-a-core-controller"
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    # The helper's line is ownership::requester_match_condition() (a Rust test
    # holds them equal); both webhooks render exactly it.
    assert condition["expression"] in helpers
    pod_rules = [r for r in by_name["validate.waf-admission.dev"]["rules"] if r["apiGroups"] == [""]]
    assert pod_rules[0]["resources"] == ["pods", "pods/ephemeralcontainers", "replicationcontrollers"]
    assert by_name["policies.waf-admission.dev"]["rules"][0]["resources"] == ["wellarchitectedpolicies", "wellarchitectedexceptions"]
    mutating = next(h for h in hooks if h["kind"] == "MutatingWebhookConfiguration")
    assert mutating["webhooks"][0]["failurePolicy"] == "Ignore"
    assert mutating["webhooks"][0]["matchConditions"] == [condition]


def test_the_ca_bundle_is_the_ca_of_the_serving_secret():
    docs = render()
    secret = next(d for d in docs if d["kind"] == "Secret")
    ca = secret["data"]["ca.crt"]
    assert base64.b64decode(ca).startswith(b"-----BEGIN CERTIFICATE-----")
    for h in (d for d in docs if d["kind"].endswith("WebhookConfiguration")):
        for w in h["webhooks"]:
            assert w["clientConfig"]["caBundle"] == ca


def test_with_cert_manager_the_ca_is_injected_and_no_secret_is_rendered():
    docs = render({"tls": {"certManager": {"enabled": True}}})
    assert not [d for d in docs if d["kind"] == "Secret"]
    cert = next(d for d in docs if d["kind"] == "Certificate")
    for h in (d for d in docs if d["kind"].endswith("WebhookConfiguration")):
        assert h["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "waf-admission/" + cert["metadata"]["name"]
        assert all("caBundle" not in w["clientConfig"] for w in h["webhooks"])


def test_the_pod_is_locked_down():
    deploy = next(d for d in render() if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    c = pod["containers"][0]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_crds_and_rbac_in_the_chart_match_the_generated_manifests():
    for f in (ROOT / "manifests" / "crds").glob("*.yaml"):
        assert (CHART / "crds" / f.name).read_text() == f.read_text(), f"charts/waf-admission/crds/{f.name} is stale"
    assert (CHART / "files" / "baseline.yaml").read_text() == (ROOT / "manifests" / "policies" / "baseline.yaml").read_text()
    shipped = [d for d in yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text()) if d]
    rendered = render()
    for kind in ("ClusterRole", "Role"):
        want = next(d for d in shipped if d["kind"] == kind)["rules"]
        got = next(d for d in rendered if d["kind"] == kind)["rules"]
        assert got == want, kind


def test_our_own_deployment_passes_our_own_rules():
    """The controller is judged with workloads: All, every rule on (Deny),
    its registry allowed, its image pinned by digest."""
    if not BINARY.exists():
        pytest.fail(f"{BINARY} missing: run cargo build (cargo nextest run builds it)")
    docs = render({"image": {"digest": DIGEST}})
    policy = {
        "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
        "metadata": {"name": "self"},
        "spec": {"match": {"workloads": "All"}, "action": "Deny",
                 "rules": {"imageProvenance": {"allowedRegistries": ["ghcr.io"], "requireDigest": True}}},
    }
    with tempfile.TemporaryDirectory() as d:
        manifests = pathlib.Path(d) / "chart.yaml"
        manifests.write_text(yaml.safe_dump_all([x for x in docs if x["kind"] != "WellArchitectedPolicy"]))
        policy_file = pathlib.Path(d) / "self.yaml"
        policy_file.write_text(yaml.safe_dump(policy))
        result = subprocess.run([str(BINARY), "check", "--policy", str(policy_file), "-o", "json", str(manifests)],
                                capture_output=True, text=True)
    import json
    report = json.loads(result.stdout)
    deploy = next(r for r in report["results"] if r["kind"] == "Deployment")
    assert deploy["governedBy"] == ["self"]
    assert deploy["violations"] == [], deploy["violations"]
    assert result.returncode == 0, result.stdout + result.stderr


def ca_bundle(tmp_path, count):
    """`count` self-signed CA certificates made by openssl, as one PEM bundle."""
    require("openssl")
    pems = []
    for i in range(count):
        key, cert = tmp_path / f"ca{i}.key", tmp_path / f"ca{i}.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
                        "-subj", f"/CN=registry CA {i}"], check=True, capture_output=True)
        pems.append(cert.read_text())
    return "".join(pems)


def test_a_registry_ca_is_a_configmap_mounted_and_passed_to_the_binary(tmp_path):
    import hashlib

    docs = render()
    assert not [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("registry-ca")]
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    assert "WAF_REGISTRY_CA" not in {e["name"] for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}

    pem = ca_bundle(tmp_path, 2)
    docs = render({"provenance": {"registryCA": pem}})
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "waf-admission-registry-ca")
    assert cm["metadata"]["namespace"] == "waf-admission"
    assert cm["data"] == {"ca.crt": pem}
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]
    container = pod["spec"]["containers"][0]
    path = pathlib.PurePosixPath(next(e["value"] for e in container["env"] if e["name"] == "WAF_REGISTRY_CA"))
    mount = next(m for m in container["volumeMounts"] if m["name"] == "registry-ca")
    assert (mount["mountPath"], mount["readOnly"]) == (str(path.parent), True)
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "registry-ca")
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    assert path.name in cm["data"]
    # Read at start: a new bundle must roll the pods.
    assert pod["metadata"]["annotations"]["checksum/registry-ca"] == hashlib.sha256(pem.encode()).hexdigest()

    # The binary takes the file as the pod would see it; a file that is
    # not a bundle stops it, named.
    if not BINARY.exists():
        pytest.fail(f"{BINARY} missing: run cargo build (cargo nextest run builds it)")
    mounted = tmp_path / path.name
    mounted.write_text(cm["data"][path.name])
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
        "metadata": {"name": "pin"},
        "spec": {"match": {"workloads": "All"}, "action": "Deny",
                 "rules": {"imageProvenance": {"allowedRegistries": ["registry.invalid"], "resolveDigests": True}}},
    }))
    manifests = tmp_path / "chart.yaml"
    manifests.write_text(yaml.safe_dump(deploy))

    def check(ca):
        return subprocess.run([str(BINARY), "check", "--resolve-digests", "--registry-ca", str(ca),
                               "--policy", str(policy), "-o", "json", str(manifests)],
                              capture_output=True, text=True, env={**os.environ, "WAF_REGISTRY_CA": ""})

    result = check(mounted)
    assert "error" not in result.stderr, result.stderr
    assert result.returncode in (0, 1), result.stdout + result.stderr
    (tmp_path / "bad.crt").write_text("not a certificate\n")
    result = check(tmp_path / "bad.crt")
    assert result.returncode == 2
    assert f"{tmp_path / 'bad.crt'}: no CERTIFICATE block found" in result.stderr

    with pytest.raises(helm.HelmError):
        render({"provenance": {"registryCA": "not a PEM bundle"}})


def test_the_install_bundle_is_current():
    import bundle

    on_disk = (ROOT / "manifests" / "install.yaml").read_text()
    assert on_disk == bundle.bundle(), "manifests/install.yaml is stale: python3 tests/packaging/bundle.py > manifests/install.yaml"
    docs = [d for d in yaml.safe_load_all(on_disk) if d]
    assert docs[0]["kind"] == "Namespace"
    assert [d["kind"] for d in docs[1:3]] == ["CustomResourceDefinition", "CustomResourceDefinition"]


def test_policy_reports_are_written_with_their_rbac_and_their_crds_only_on_request():
    docs = render()
    assert not [d for d in docs if d["kind"] == "CustomResourceDefinition"], "report CRDs are not ours: off by default"
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WAF_REPORTS"] == "openreports"
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {("openreports.io", "reports"), ("openreports.io", "clusterreports"),
            ("wgpolicyk8s.io", "policyreports"), ("wgpolicyk8s.io", "clusterpolicyreports")} <= granted
    crds = [d for d in render({"reports": {"installCRDs": True}}) if d["kind"] == "CustomResourceDefinition"]
    assert sorted(c["metadata"]["name"] for c in crds) == ["clusterreports.openreports.io", "reports.openreports.io"]
    for c in crds:
        schema = c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        item = schema["properties"]["results"]["items"]
        assert item["properties"]["result"]["enum"] == ["pass", "fail", "warn", "error", "skip"]
        assert item["properties"]["resources"]["items"]["properties"]["name"] == {"type": "string"}
    with pytest.raises(helm.HelmError):
        render({"reports": {"format": "kyverno"}})


def test_registry_secrets_are_readable_by_name_only_and_only_when_listed():
    docs = render()
    secret_rules = [r for d in docs if d["kind"] in ("Role", "ClusterRole")
                    for r in d["rules"] if "secrets" in r["resources"]]
    assert secret_rules == [], "no Secret is readable unless provenance.secrets names it"
    docs = render({"provenance": {"secrets": ["acr-pull", "release-keys"]}})
    roles = [d for d in docs if d["kind"] == "Role" and any("secrets" in r["resources"] for r in d["rules"])]
    assert len(roles) == 1
    role = roles[0]
    assert role["metadata"]["namespace"] == "waf-admission"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"],
                              "resourceNames": ["acr-pull", "release-keys"], "verbs": ["get", "list", "watch"]}]
    binding = next(d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == role["metadata"]["name"])
    assert binding["subjects"][0]["name"] == "waf-admission"
    assert not any(d["kind"] == "ClusterRole" and any("secrets" in r["resources"] for r in d["rules"]) for d in docs)
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WAF_REGISTRY_SECRETS"] == "acr-pull,release-keys"
    assert env["WAF_REGISTRY_TIMEOUT"] == "4s"
    with pytest.raises(helm.HelmError):
        render({"provenance": {"secrets": ["Not_A_Name"]}})


def test_the_price_table_is_read_by_name_and_refreshed_only_on_request():
    docs = render()
    assert not any("configmaps" in r["resources"] for d in docs if d["kind"] in ("Role", "ClusterRole")
                   for r in d["rules"]), "no ConfigMap is readable unless prices.configMap names it"
    assert not any(d["kind"] == "CronJob" for d in docs), "the CronJob is off by default"
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    assert "WAF_PRICES_CONFIGMAP" not in {e["name"] for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}

    docs = render({"prices": {"configMap": "waf-gpu-prices"}})
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WAF_PRICES_CONFIGMAP"] == "waf-admission/waf-gpu-prices"
    reader = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-prices-reader"))
    assert reader["metadata"]["namespace"] == "waf-admission"
    assert reader["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
                                "resourceNames": ["waf-gpu-prices"], "verbs": ["get", "list", "watch"]}]
    binding = next(d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == reader["metadata"]["name"])
    assert binding["subjects"][0]["name"] == "waf-admission"
    assert not any(d["kind"] == "CronJob" for d in docs)

    docs = render({"prices": {"configMap": "waf-gpu-prices", "cronJob": {"enabled": True, "region": "westeurope"}}})
    cron = next(d for d in docs if d["kind"] == "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["prices", "--region=westeurope", "--configmap=waf-gpu-prices",
                                            "--namespace=waf-admission", "--apply"]
    assert pod["serviceAccountName"] == "waf-admission-prices"
    # The webhook's Service never selects the job's pod.
    service = next(d for d in docs if d["kind"] == "Service")
    labels = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    writer = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-prices-writer"))
    assert {"resourceNames": ["waf-gpu-prices"], "verbs": ["get", "patch"]}.items() <= writer["rules"][0].items()
    assert writer["rules"][1] == {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}
    with pytest.raises(helm.HelmError, match="prices.cronJob.region"):
        render({"prices": {"configMap": "waf-gpu-prices", "cronJob": {"enabled": True}}})
    with pytest.raises(helm.HelmError, match="prices.configMap"):
        render({"prices": {"cronJob": {"enabled": True, "region": "eastus"}}})
    with pytest.raises(helm.HelmError):
        render({"prices": {"cronJob": {"region": "East US"}}})


def test_versions_agree_and_the_default_policy_pins_the_charts_release():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    cargo = next(
        line.split('"')[1] for line in (ROOT / "Cargo.toml").read_text().splitlines() if line.startswith("version = ")
    )
    changelog = next(
        line[len("## ["):].split("]")[0]
        for line in (ROOT / "CHANGELOG.md").read_text().splitlines()
        if line.startswith("## [") and not line.startswith("## [Unreleased]")
    )
    assert chart["version"] == chart["appVersion"] == cargo == changelog
    release = ".".join(cargo.split(".")[:2])

    def policy(values=None):
        return next(d for d in render(values) if d["kind"] == "WellArchitectedPolicy")

    assert policy()["spec"]["ruleSet"] == release
    assert policy({"policy": {"ruleSet": "latest"}})["spec"]["ruleSet"] == "latest"
    assert policy({"policy": {"ruleSet": "0.1"}})["spec"]["ruleSet"] == "0.1"
    with pytest.raises(Exception, match="ruleSet"):
        render({"policy": {"ruleSet": "newest"}})


def test_connection_limits_reach_the_server_and_a_share_above_the_total_fails():
    def env(values=None):
        deploy = next(d for d in render(values) if d["kind"] == "Deployment")
        return {e["name"]: e.get("value") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}

    defaults = env()
    assert (defaults["WAF_MAX_CONNECTIONS"], defaults["WAF_MAX_CONNECTIONS_PER_CLIENT"],
            defaults["WAF_MAX_PENDING_HANDSHAKES"]) == ("1024", "256", "128")
    # Behind a mesh sidecar every client is one address: the share is the total.
    mesh = env({"connections": {"max": 2048, "maxPerClient": 2048}})
    assert (mesh["WAF_MAX_CONNECTIONS"], mesh["WAF_MAX_CONNECTIONS_PER_CLIENT"]) == ("2048", "2048")
    with pytest.raises(helm.HelmError, match="maxPerClient is above connections.max"):
        render({"connections": {"maxPerClient": 2000}})
    with pytest.raises(helm.HelmError):
        render({"connections": {"maxPendingHandshakes": 0}})
