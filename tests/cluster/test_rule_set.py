"""An upgrade never starts denying on its own (issue 22): a policy pinned to a
release (`spec.ruleSet`) keeps admitting, with a warning, a workload that only
the rules a later release added would deny, until the platform team moves the
pin or gives the rule an action of its own. The workload is applied by the developer, who holds
only `edit` in the namespace; the policy by the platform team (admin).

The policy is written as a team wrote it for 0.1 (Deny, autoscaler in Warn
because the HPA arrives with the workload), scoped to the test's namespace.
The workload is examples/good/llm-gpu.yaml without its probes: every 0.1 rule
passes, `probes` (0.2) does not. The baseline the chart installs never denies
on `probes` (it sets Warn), so a denial naming it is this policy's."""

import copy
import json

import pytest

import yaml

from conftest import ROOT, kubectl, kubectl_json, load, only, poll

POLICY = "pinned-rule-set"


def policy(ns, rule_set, rules=None):
    return {
        "apiVersion": "waf-admission.dev/v1alpha1",
        "kind": "WellArchitectedPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "match": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
            "action": "Deny",
            "ruleSet": rule_set,
            "rules": {"autoscaler": {"action": "Warn"}, **(rules or {})},
        },
    }


def without_probes(ns):
    """The compliant vLLM server, every document, with no probe on its server."""
    docs = load("examples/good/llm-gpu.yaml", ns)
    for deployment in only(docs, "Deployment"):
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                c.pop(probe, None)
    return docs


def denied_for_probes(r):
    return (not r.ok) and "denied the request" in r.out and "[probes]" in r.out


def admitted_warning_of_probes(r):
    return r.ok and "Warning: [probes]" in r.out


def in_force(what, dev, deployment, answer):
    """Polls a server-side dry run of the Deployment until `answer` holds three
    times running, so both replicas behind the Service have the new policy."""
    streak = []

    def check():
        r = dev.apply(deployment, "--dry-run=server")
        streak.append(answer(r))
        return len(streak) >= 3 and all(streak[-3:])

    poll(what, check, timeout=30, interval=0.05)


def status_says(rule_set, newer_has_probes):
    def check():
        wap = kubectl_json("get", "wap", POLICY)
        generation, s = wap["metadata"]["generation"], wap.get("status", {})
        return (
            s.get("observedGeneration") == generation
            and s.get("ruleSet") == rule_set
            and ("probes" in s.get("newerRules", [])) == newer_has_probes
        )

    poll(f"status.ruleSet {rule_set}", check, timeout=30)


@pytest.fixture
def pinned(ns):
    yield
    kubectl("delete", "wap", POLICY, "--ignore-not-found", "--wait=true")


def test_a_policy_pinned_to_0_1_keeps_admitting_what_only_0_2_rules_deny(dev, ns, pinned):
    docs = without_probes(ns)
    deployment = only(docs, "Deployment")
    # The polls create (server-side dry run) a copy under another name, so
    # they stay CREATEs once the real one exists.
    probe = copy.deepcopy(deployment)
    probe[0]["metadata"]["name"] = "llm-probe"
    # The HPA and the PDB first, so the cluster has them when the
    # Deployment is judged.
    r = dev.apply([d for d in docs if d["kind"] != "Deployment"])
    assert r.ok, r

    # Unpinned, the policy denies on probes: it is in force.
    r = kubectl("apply", "-f", "-", input=policy(ns, "latest"))
    assert r.ok, r
    in_force("the policy at latest denies on probes", dev, probe, denied_for_probes)

    # The policy as written for 0.1: the developer's apply goes through,
    # with the probes warning, and creates the Deployment.
    r = kubectl("apply", "-f", "-", input=policy(ns, "0.1"))
    assert r.ok, r
    in_force("the policy pinned to 0.1 admits", dev, probe, admitted_warning_of_probes)
    r = dev.apply(docs)
    assert admitted_warning_of_probes(r), r
    assert dev.json("get", "deployment", "llm")["metadata"]["name"] == "llm"
    # An UPDATE under the pin is admitted too.
    relabelled = copy.deepcopy(deployment)
    relabelled[0]["metadata"]["labels"]["team"] = "chat"
    r = dev.apply(relabelled)
    assert admitted_warning_of_probes(r), r

    # The platform team sees what the pin leaves at Warn.
    status_says("0.1", newer_has_probes=True)
    r = kubectl("get", "wap", POLICY)
    assert r.ok, r
    header, row = r.stdout.splitlines()[:2]
    assert "RULE SET" in header, r
    assert row.split()[:3] == [POLICY, "Deny", "0.1"], r

    # Its own action opts the rule in: the same apply is denied again.
    r = kubectl("apply", "-f", "-", input=policy(ns, "0.1", {"probes": {"action": "Deny"}}))
    assert r.ok, r
    in_force("probes with action Deny under 0.1 denies", dev, probe, denied_for_probes)
    status_says("0.1", newer_has_probes=False)

    # Moving the pin to 0.2 denies on probes with no action of its own.
    r = kubectl("apply", "-f", "-", input=policy(ns, "0.2"))
    assert r.ok, r
    in_force("the policy pinned to 0.2 denies on probes", dev, probe, denied_for_probes)
    status_says("0.2", newer_has_probes=False)
    # The Deployment admitted under 0.1 is not wedged: an UPDATE denies only
    # what it brings (spec.updates: NewViolations), the rest warns.
    relabelled[0]["metadata"]["labels"]["team"] = "search"
    r = dev.apply(relabelled)
    assert admitted_warning_of_probes(r), r


def test_the_apiserver_refuses_a_rule_set_that_is_not_a_release(ns, pinned):
    r = kubectl("apply", "-f", "-", input=policy(ns, "newest"))
    assert not r.ok, r
    assert "spec.ruleSet" in r.out, r
    assert kubectl("get", "wap", POLICY).rc != 0


def test_the_charts_default_policy_pins_the_charts_release():
    wap = kubectl_json("get", "wap", "baseline")
    chart = yaml.safe_load((ROOT / "charts" / "waf-admission" / "Chart.yaml").read_text())["appVersion"]
    release = ".".join(chart.split(".")[:2])
    assert wap["spec"]["ruleSet"] == release, json.dumps(wap["spec"])
    poll("the baseline's status names its rule set",
         lambda: kubectl_json("get", "wap", "baseline").get("status", {}).get("ruleSet") == release, timeout=30)
