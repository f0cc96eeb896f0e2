"""The cluster up.sh leaves a newcomer: the control plane built here, five
fake nodes, waf-admission installed from the chart with the baseline in
Warn. Runs first (run.sh orders it), before anything switches to Deny.

The install is the published one (README, "Quickstart on AKS"): ci/publish.sh
pushed the image and the packaged chart to an OCI registry on loopback, up.sh
pulled the chart back by digest and installed it with image.repository and
image.digest set to the pushed image; the quickstart's checks follow."""

import base64
import hashlib
import json
import pathlib
import urllib.request

from conftest import DIR, ENV, NS, ROOT, apply, kubectl, kubectl_json, load, only, poll, set_policy, warned


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


def published():
    """ci/publish.sh's record of what it pushed, and where up.sh pulled the chart to."""
    values = {}
    for line in (DIR / "published.env").read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value
    return values


def registry_manifest(repository, reference):
    """GET /v2/REPOSITORY/manifests/REFERENCE from the suite's registry: the
    digest it answers with and the manifest."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{ENV['REGISTRY_PORT']}/v2/{repository}/manifests/{reference}",
        headers={"Accept": ", ".join([
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ])},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Docker-Content-Digest"], json.load(r)


def test_the_deployment_runs_the_pushed_image_by_digest():
    pub = published()
    registry = f"127.0.0.1:{ENV['REGISTRY_PORT']}"
    assert pub["IMAGE_REPOSITORY"] == f"{registry}/waf-admission", pub
    # image.repository and image.digest as set at install: the reference the
    # chart renders is the pushed one, pinned by the digest the push returned.
    assert pub["IMAGE_REF"] == f"{registry}/waf-admission:{pub['VERSION']}@{pub['IMAGE_DIGEST']}", pub
    dep = kubectl_json("-n", NS, "get", "deployment", "waf-admission")
    assert [c["image"] for c in dep["spec"]["template"]["spec"]["containers"]] == [pub["IMAGE_REF"]]
    # The registry serves that digest under that name.
    digest, manifest = registry_manifest("waf-admission", pub["IMAGE_DIGEST"])
    assert digest == pub["IMAGE_DIGEST"], manifest
    # And the pods the Deployment makes (on kwok's fake nodes) carry it.
    selector = "app.kubernetes.io/name=waf-admission"
    pods = poll(
        "a pod of the chart's Deployment",
        lambda: kubectl_json("-n", NS, "get", "pods", "-l", selector)["items"],
        timeout=60,
    )
    for pod in pods:
        assert [c["image"] for c in pod["spec"]["containers"]] == [pub["IMAGE_REF"]], pod["metadata"]["name"]


def test_the_chart_came_from_the_registry_by_digest():
    pub = published()
    registry = f"127.0.0.1:{ENV['REGISTRY_PORT']}"
    assert pub["CHART_REF"] == f"oci://{registry}/charts/waf-admission@{pub['CHART_DIGEST']}", pub
    digest, manifest = registry_manifest("charts/waf-admission", pub["CHART_DIGEST"])
    assert digest == pub["CHART_DIGEST"]
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.helm.config.v1+json", manifest
    layers = {l["mediaType"]: l["digest"] for l in manifest["layers"]}
    assert layers.get("application/vnd.cncf.helm.chart.content.v1.tar+gzip") == pub["CHART_LAYER_DIGEST"], manifest
    # The version tag points at the same manifest: `helm install --version`
    # and `@sha256:` install the same bytes.
    tagged, _ = registry_manifest("charts/waf-admission", pub["VERSION"])
    assert tagged == pub["CHART_DIGEST"]
    # The archive rendered is the one pulled from there, not the repo's folder.
    archive = pathlib.Path(pub["CHART_ARCHIVE"])
    assert archive.parent == DIR / "chart" and archive.suffix == ".tgz", archive
    assert "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest() == pub["CHART_LAYER_DIGEST"]
    chart_version = [
        line.split(":", 1)[1].strip().strip('"')
        for line in (ROOT / "charts/waf-admission/Chart.yaml").read_text().splitlines()
        if line.startswith("version:")
    ]
    assert chart_version == [pub["VERSION"]]
    for kind, name in [("deployment", "waf-admission"), ("serviceaccount", "waf-admission"), ("service", "waf-admission")]:
        labels = kubectl_json("-n", NS, "get", kind, name)["metadata"]["labels"]
        assert labels["helm.sh/chart"] == f"waf-admission-{pub['VERSION']}", (kind, labels)


def test_the_quickstart_checks_then_deny():
    """README, "Quickstart on AKS", steps 5 and 6, as written there: the
    policy listed Ready in Warn, a dry run of examples/bad/zone-spread.yaml
    admitted with the zone-spread Warning, then the baseline patched to Deny
    and the same dry run refused. The baseline goes back to Warn after."""
    listed = kubectl("get", "wap")
    assert listed.ok, listed
    row = [line.split() for line in listed.out.splitlines() if line.startswith("baseline ")]
    assert row and "Warn" in row[0] and "True" in row[0], listed
    assert kubectl("create", "namespace", "ml").ok
    try:
        dry_run = ["apply", "--dry-run=server", "-f", str(ROOT / "examples/bad/zone-spread.yaml")]
        r = kubectl(*dry_run)
        assert r.ok, r
        assert "Warning: [zone-spread]" in r.out, r
        patch = kubectl("patch", "wap", "baseline", "--type", "merge", "-p", '{"spec":{"action":"Deny"}}')
        assert patch.ok, patch
        r = poll("Deny in force", lambda: (lambda r: r if not r.ok else None)(kubectl(*dry_run)), timeout=30)
        assert 'admission webhook "validate.waf-admission.dev" denied the request' in r.out, r
        assert "[zone-spread]" in r.out, r
    finally:
        set_policy({"spec": {"action": "Warn"}}, warned)
        kubectl("delete", "namespace", "ml", "--wait=false")
