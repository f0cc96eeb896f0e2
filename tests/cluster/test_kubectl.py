"""The kind suite's assertions (tests/e2e/run.sh), on what kubectl prints,
against the control plane built here, with the baseline in Deny."""

import datetime
import time
import uuid

import pytest

from conftest import (
    NS,
    apply,
    denied,
    kubectl_json,
    lease_holder,
    load,
    measure,
    only,
    poll,
    replica,
    replicas_up,
    set_policy,
)

pytestmark = pytest.mark.usefixtures("deny")
DENIAL = 'admission webhook "validate.waf-admission.dev" denied the request'


def deployment(path, ns, **kw):
    return only(load(path, ns, **kw), "Deployment")


def test_compliant_inference_deployment_is_admitted(ns):
    r = apply(load("examples/good/llm-gpu.yaml", ns), "--dry-run=server")
    assert r.ok, r
    r = apply(load("examples/good/llm-gpu.yaml", ns))
    assert r.ok, r
    assert "deployment.apps/llm created" in r.out, r


# examples/bad/resources.yaml (a memory limit below its request) never reaches
# a webhook on a real cluster: the apiserver's own validation refuses it first
# (test_apiserver_refuses_a_limit_below_its_request). The resources denial is
# shown with a violation the apiserver admits.
VIOLATIONS = {
    "zone-spread": "examples/bad/zone-spread.yaml",
    "resources": "tests/cluster/fixtures/gpu-container-without-memory-limit.yaml",
    "image-provenance": "examples/bad/image-provenance.yaml",
}


@pytest.mark.parametrize("rule", sorted(VIOLATIONS))
def test_each_rules_violation_is_denied_with_its_message(ns, rule):
    r = apply(load(VIOLATIONS[rule], ns), "--dry-run=server")
    assert not r.ok, r
    assert DENIAL in r.out, r
    assert f"[{rule}]" in r.out, r
    assert "Fix: " in r.out, r


def test_apiserver_refuses_a_limit_below_its_request(ns):
    r = apply(load("examples/bad/resources.yaml", ns), "--dry-run=server")
    assert not r.ok, r
    assert "must be less than or equal to memory limit" in r.out, r


def test_warn_prints_warning(ns):
    r = apply(load("examples/bad/autoscaler.yaml", ns), "--dry-run=server")
    assert r.ok, r
    assert "Warning: [autoscaler]" in r.out, r


def test_mutating_webhook_patch_is_on_the_stored_object(ns):
    r = apply(load("tests/fixtures/rules/zone-spread/fail-no-zone-constraint.yaml", ns))
    assert r.ok, r
    stored = kubectl_json("-n", ns, "get", "deployment", "llm")
    tsc = stored["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
    assert [c["topologyKey"] for c in tsc] == ["topology.kubernetes.io/zone"], stored["spec"]["template"]


def test_gpu_placement_is_patched_and_says_so(ns):
    r = apply(load("examples/bad/gpu-placement.yaml", ns), "--dry-run=server")
    assert r.ok, r
    assert "added by the waf-admission mutating webhook" in r.out, r


def test_policy_change_is_in_force_within_seconds(ns):
    took = set_policy(
        {"spec": {"rules": {"imageProvenance": {"action": "Warn"}}}},
        lambda r: r.ok,
        namespace=ns,
        timeout=10,
    )
    measure("policy propagation, imageProvenance Deny -> Warn (patch to first admission)", f"{took:.2f}s")
    back = set_policy({"spec": {"rules": {"imageProvenance": {"action": None}}}}, denied, namespace=ns, timeout=10)
    measure("policy propagation, imageProvenance back to Deny", f"{back:.2f}s")
    assert took < 5 and back < 5


def test_exception_exempts_then_expires(ns):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    expires = now + datetime.timedelta(seconds=20)
    exception = {
        "apiVersion": "waf-admission.dev/v1alpha1",
        "kind": "WellArchitectedException",
        "metadata": {"name": "ollama-e2e", "namespace": ns},
        "spec": {
            "workloads": [{"kind": "Deployment", "name": "ollama"}],
            "rules": ["image-provenance"],
            "reason": "cluster suite",
            "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    r = apply(exception)
    assert r.ok, r
    bad = deployment("examples/bad/image-provenance.yaml", ns)
    poll("the exception exempts", lambda: apply(bad, "--dry-run=server").ok, timeout=10)
    r = poll("the exception expires", lambda: (lambda r: r if denied(r) else None)(apply(bad, "--dry-run=server")), timeout=60, interval=0.5)
    assert "[image-provenance]" in r.out
    late = (datetime.datetime.now(datetime.timezone.utc) - expires).total_seconds()
    measure("exception expiry, denial after `expires`", f"{late:.1f}s")


def events_for(ns, name):
    items = kubectl_json("-n", ns, "get", "events")["items"]
    return [e for e in items if e.get("involvedObject", {}).get("name") == name]


def test_denial_writes_an_event_and_dry_run_writes_none(ns):
    dry = f"dry-{uuid.uuid4().hex[:6]}"
    real = f"real-{uuid.uuid4().hex[:6]}"
    r = apply(deployment("examples/bad/image-provenance.yaml", ns, name=dry), "--dry-run=server")
    assert denied(r), r
    r = apply(deployment("examples/bad/image-provenance.yaml", ns, name=real))
    assert denied(r), r
    events = poll(f"an Event for the denial of {real}", lambda: events_for(ns, real), timeout=20)
    assert any("image-provenance" in e.get("message", "") for e in events), events
    assert events[0]["reason"] == "PolicyViolation", events
    # The Event of the later, real denial is written: the dry run's would be too by now.
    assert events_for(ns, dry) == []


def test_exception_naming_no_workload_is_refused_by_the_crd(ns):
    r = apply(
        {
            "apiVersion": "waf-admission.dev/v1alpha1",
            "kind": "WellArchitectedException",
            "metadata": {"name": "names-nothing", "namespace": ns},
            "spec": {"rules": ["image-provenance"], "reason": "cluster suite", "expires": "2099-01-01T00:00:00Z"},
        }
    )
    assert not r.ok, r
    assert "name the exempted workloads" in r.out, r


def test_broken_policy_is_refused_by_the_webhook():
    r = apply(
        {
            "apiVersion": "waf-admission.dev/v1alpha1",
            "kind": "WellArchitectedPolicy",
            "metadata": {"name": "broken-e2e"},
            "spec": {"rules": {"imageProvenance": {"allowedRegistries": []}}},
        }
    )
    assert not r.ok, r
    assert "allowedRegistries" in r.out, r


@pytest.mark.parametrize(
    "spec, says",
    [
        ({"action": "Sometimes"}, "Unsupported value"),
        ({"rules": {"zoneSpread": {"maxSkewness": 1}}}, "unknown field"),
    ],
    ids=["bad-enum", "unknown-field"],
)
def test_policy_the_schema_rejects_is_refused_by_the_apiserver(spec, says):
    r = apply(
        {
            "apiVersion": "waf-admission.dev/v1alpha1",
            "kind": "WellArchitectedPolicy",
            "metadata": {"name": "schema-e2e"},
            "spec": spec,
        }
    )
    assert not r.ok, r
    assert says in r.out, r
    assert DENIAL not in r.out, "the CRD's schema should refuse it before the webhook sees it"


def test_a_rule_can_be_turned_off():
    """Every rule takes action Off (DESIGN.md); the apiserver must accept it."""
    r = apply(
        {
            "apiVersion": "waf-admission.dev/v1alpha1",
            "kind": "WellArchitectedPolicy",
            "metadata": {"name": "off-e2e"},
            "spec": {"rules": {"zoneSpread": {"action": "Off"}}},
        },
        "--dry-run=server",
    )
    assert r.ok, r


def test_status_reports_generation_ready_and_audit_counts(ns):
    r = apply(deployment("examples/good/llm-gpu.yaml", ns))
    assert r.ok, r
    start = time.time()

    def audited():
        status = kubectl_json("get", "wap", "baseline").get("status", {})
        audit = status.get("audit") or {}
        last = audit.get("lastRun")
        if last and audit.get("workloads", 0) >= 1:
            ran = datetime.datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp()
            if ran >= start - 1:
                return status
        return None

    status = poll("an audit run after the Deployment exists", audited, timeout=60, interval=1)
    wap = kubectl_json("get", "wap", "baseline")
    assert status["observedGeneration"] == wap["metadata"]["generation"]
    ready = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"
    assert isinstance(status["audit"]["violations"], int) and "byRule" in status["audit"]


def test_lease_is_held_by_one_replica_and_taken_over_when_it_stops(ns):
    replicas_up()
    holder = poll("a Lease holder", lease_holder, timeout=30)
    assert holder in ("waf-admission-0", "waf-admission-1"), holder
    victim = int(holder[-1])
    replica("stop", victim)
    try:
        lost = 0
        good = deployment("examples/good/llm-gpu.yaml", ns)
        for _ in range(10):
            lost += not apply(good, "--dry-run=server").ok
        assert lost == 0, f"{lost} of 10 requests failed with one replica stopped"
        new = poll(
            "the Lease taken over by the other replica",
            lambda: (lambda h: h if h and h != holder else None)(lease_holder()),
            timeout=30,
        )
        assert new == f"waf-admission-{1 - victim}"
    finally:
        replica("start", victim)
    lease = kubectl_json("-n", NS, "get", "lease", "waf-admission-controller")
    assert lease["spec"]["holderIdentity"] == new
