"""The cluster up.sh leaves a newcomer: the control plane built here, five
fake nodes, waf-admission installed from the chart with the baseline in
Warn. Runs first (run.sh orders it), before anything switches to Deny."""

import base64
import json

from conftest import DIR, ENV, NS, apply, kubectl, kubectl_json, load, only, poll


def test_control_plane_is_the_release_built_here():
    version = kubectl_json("version")["serverVersion"]
    assert version["gitVersion"] == "v1.36.3", version
    assert kubectl("get", "--raw", "/readyz").ok


def test_three_zoned_workers_and_two_gpu_nodes_are_ready():
    nodes = {n["metadata"]["name"]: n for n in kubectl_json("get", "nodes")["items"]}
    assert sorted(nodes) == ["gpu-1", "gpu-2", "worker-1", "worker-2", "worker-3"]
    for n in nodes.values():
        ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", n["metadata"]["name"]
    zones = {name: n["metadata"]["labels"]["topology.kubernetes.io/zone"] for name, n in nodes.items()}
    assert [zones[f"worker-{i}"] for i in (1, 2, 3)] == ["1", "2", "3"]
    for name in ("gpu-1", "gpu-2"):
        n = nodes[name]
        assert n["metadata"]["labels"]["kubernetes.azure.com/accelerator"] == "nvidia"
        assert n["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "Standard_NC24ads_A100_v4"
        assert {"key": "sku", "value": "gpu", "effect": "NoSchedule"} in n["spec"]["taints"]
        assert n["status"]["allocatable"]["nvidia.com/gpu"] == "1"
    for i in (1, 2, 3):
        assert "nvidia.com/gpu" not in nodes[f"worker-{i}"]["status"]["allocatable"]


def test_webhooks_call_the_replicas_by_url_with_the_ca_made_at_start():
    ca = (DIR / "pki" / "webhook-ca.crt").read_bytes()
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        config = kubectl_json("get", kind, "waf-admission")
        for hook in config["webhooks"]:
            cc = hook["clientConfig"]
            assert "service" not in cc
            assert cc["url"].startswith(f"https://127.0.0.1:{ENV['WEBHOOK_PORT']}/"), cc
            assert base64.b64decode(cc["caBundle"]) == ca


def test_replicas_hold_the_chart_service_account_and_only_its_rbac():
    serve = ["--kubeconfig", str(DIR / "serve.kubeconfig")]
    who = kubectl(*serve, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert who.out.strip() == f"system:serviceaccount:{NS}:waf-admission", who
    for verb, resource, expect in [
        ("watch", "wellarchitectedpolicies.waf-admission.dev", "yes"),
        ("patch", "wellarchitectedpolicies.waf-admission.dev --subresource=status", "yes"),
        ("create", "events.events.k8s.io", "yes"),
        ("watch", "horizontalpodautoscalers.autoscaling", "yes"),
        ("watch", "validatingwebhookconfigurations.admissionregistration.k8s.io", "yes"),
        ("update", "validatingwebhookconfigurations.admissionregistration.k8s.io", "no"),
        ("create", "deployments.apps", "no"),
        ("get", "secrets", "no"),
        ("update", "wellarchitectedpolicies.waf-admission.dev", "no"),
    ]:
        r = kubectl(*serve, "auth", "can-i", verb, *resource.split(), "-A")
        assert r.out.strip() == expect, f"can-i {verb} {resource}: {r}"


def test_default_policy_is_the_baseline_in_warn_and_ready():
    wap = kubectl_json("get", "wap", "baseline")
    assert wap["spec"]["action"] == "Warn"
    status = wap.get("status", {})
    ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True", status
    assert status.get("observedGeneration") == wap["metadata"]["generation"], status


def test_warn_install_admits_with_warnings_and_patches_nothing(ns):
    """The chart's default install changes no object: Warn patches nothing,
    the warning says what Deny would add."""
    r = apply(load("tests/fixtures/rules/zone-spread/fail-no-zone-constraint.yaml", ns))
    assert r.ok, r
    assert "Warning: [zone-spread]" in r.out, r
    stored = kubectl_json("-n", ns, "get", "deployment", "llm")
    assert "topologySpreadConstraints" not in stored["spec"]["template"]["spec"], json.dumps(
        stored["spec"]["template"]["spec"], indent=1
    )


def test_a_policy_with_action_deny_then_enforces(ns):
    """What the README promises a newcomer: apply a Deny policy, it is enforced."""
    policy = {
        "apiVersion": "waf-admission.dev/v1alpha1",
        "kind": "WellArchitectedPolicy",
        "metadata": {"name": "newcomer-deny"},
        "spec": {
            "match": {"workloads": "Inference", "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
            "action": "Deny",
            "rules": {"imageProvenance": {"allowedRegistries": ["*.azurecr.io"], "requireDigest": True}},
        },
    }
    r = apply(policy)
    assert r.ok, r
    try:
        bad = only(load("examples/bad/image-provenance.yaml", ns), "Deployment")
        r = poll(
            "the new Deny policy denies",
            lambda: (lambda r: r if not r.ok else None)(apply(bad, "--dry-run=server")),
            timeout=30,
        )
        assert 'admission webhook "validate.waf-admission.dev" denied the request' in r.out, r
        assert "[image-provenance]" in r.out, r
    finally:
        kubectl("delete", "wap", "newcomer-deny")
