"""Policy status tells the truth about kinds (issue 21, part 5): a policy
whose match.kinds lists a kind the live ValidatingWebhookConfiguration does
not send to validate.waf-admission.dev is Ready False (KindsNotSent) naming
the kind and the configuration, and Ready again once the rules send it.

The test edits the live configuration's rules (and puts them back after):
it first makes sure they send ReplicaSets, then takes ReplicaSets out.
The policy it applies governs no namespace and only audits, so nothing
else in the suite sees it."""

import json

from conftest import apply, kubectl, kubectl_json, poll

CONFIG = "waf-admission"
WEBHOOK = "validate.waf-admission.dev"
POLICY = "status-kinds"
KIND, RESOURCE = "ReplicaSet", "replicasets"


def policy():
    return {
        "apiVersion": "waf-admission.dev/v1alpha1",
        "kind": "WellArchitectedPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "action": "Audit",
            "match": {
                "kinds": ["Deployment", KIND],
                "namespaceSelector": {"matchLabels": {"waf-admission.dev/test": POLICY}},
            },
        },
    }


def webhook_index():
    config = kubectl_json("get", "validatingwebhookconfiguration", CONFIG)
    index = [h["name"] for h in config["webhooks"]].index(WEBHOOK)
    return index, config["webhooks"][index].get("rules", [])


def set_rules(index, rules):
    r = kubectl("patch", "validatingwebhookconfiguration", CONFIG, "--type", "json",
                "-p", json.dumps([{"op": "replace", "path": f"/webhooks/{index}/rules", "value": rules}]))
    assert r.ok, r


def sends(rules):
    return any(("apps" in r.get("apiGroups", []) or "*" in r.get("apiGroups", []))
               and RESOURCE in r.get("resources", [])
               for r in rules)


def with_kind(rules):
    if sends(rules):
        return rules
    return rules + [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                     "resources": [RESOURCE], "scope": "Namespaced"}]


def without_kind(rules):
    out = []
    for r in rules:
        resources = [res for res in r.get("resources", []) if res != RESOURCE]
        if resources:
            out.append({**r, "resources": resources})
    return out


def ready():
    """The Ready condition written for the policy's current generation."""
    wap = kubectl_json("get", "wap", POLICY)
    for c in wap.get("status", {}).get("conditions", []):
        if c["type"] == "Ready" and c.get("observedGeneration") == wap["metadata"]["generation"]:
            return c
    return None


def test_a_policy_listing_a_kind_the_webhook_is_not_sent_is_not_ready_and_names_it():
    index, original = webhook_index()
    assert original, "the chart's webhook has rules"
    try:
        set_rules(index, with_kind(original))
        r = apply([policy()])
        assert r.ok, r
        c = poll("Ready True while ReplicaSets are sent",
                 lambda: (lambda c: c if c and c["status"] == "True" else None)(ready()))
        assert c["reason"] == "Valid", c

        set_rules(index, without_kind(original))
        c = poll("Ready False once ReplicaSets are not sent",
                 lambda: (lambda c: c if c and c["status"] == "False" else None)(ready()))
        assert c["reason"] == "KindsNotSent", c
        assert c["message"].startswith(f'the webhook configuration "{CONFIG}" does not send {KIND}:'), c
        assert "Deployment" not in c["message"], c
        listed = kubectl("get", "wap", POLICY)
        assert listed.ok and "False" in listed.out, listed

        set_rules(index, with_kind(original))
        c = poll("Ready True again once ReplicaSets are sent",
                 lambda: (lambda c: c if c and c["status"] == "True" else None)(ready()))
        assert c["reason"] == "Valid", c
    finally:
        set_rules(index, original)
        kubectl("delete", "wap", POLICY, "--ignore-not-found")
