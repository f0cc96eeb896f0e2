"""OpenReports from the background audit, against the real apiserver: the
chart's report CRDs accept what the controller writes, `kubectl get reports
-A` lists a report per namespace with the right results, the report follows
a fix, goes away with the workload, and is not rewritten when nothing
changed. The audit runs every 10 s here (replica.sh)."""

import json

from conftest import DIR, apply, kubectl, load, only, poll

# A Deployment the baseline admits under Deny (the mutating webhook fixes the
# rest) whose only standing violation is the Warn rule `autoscaler`.
LLM = "examples/good/llm-gpu.yaml"


def get(*args):
    """The object as JSON, or None when kubectl cannot get it."""
    r = kubectl("get", *args, "-o", "json")
    return json.loads(r.stdout) if r.ok else None


def report(ns):
    return get("-n", ns, "reports.openreports.io", "waf-admission")


def results_for(rep, name):
    return {(r["rule"], r["result"]) for r in rep["results"] if r["resources"][0]["name"] == name}


def audits_done():
    """How many audit runs have written or checked reports, over both replicas."""
    return sum(p.read_text().count("policy reports") for p in (DIR / "logs").glob("serve-*.log"))


def test_the_audit_writes_a_report_per_namespace_that_follows_fixes_and_deletions(ns):
    docs = load(LLM, ns)
    deployment = only(docs, "Deployment")
    assert apply(deployment, namespace=ns).ok
    name = deployment[0]["metadata"]["name"]
    rep = poll("a Report for the namespace", lambda: report(ns), timeout=60)
    assert rep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "waf-admission"
    got = poll("the workload's results", lambda: results_for(report(ns) or {"results": []}, name), timeout=60)
    assert ("autoscaler", "warn") in got, got
    assert ("zone-spread", "pass") in got and ("image-provenance", "pass") in got, got
    listed = kubectl("get", "reports", "-A")
    assert listed.ok and ns in listed.out and "waf-admission" in listed.out, listed

    # Nothing changes: two more audits, and the report is not written again.
    version = report(ns)["metadata"]["resourceVersion"]
    seen = audits_done()
    poll("two more audits", lambda: audits_done() >= seen + 2, timeout=60, interval=0.5)
    assert report(ns)["metadata"]["resourceVersion"] == version

    # Fixed: an HPA with a floor of two, and the result turns pass.
    assert apply(only(docs, "HorizontalPodAutoscaler"), namespace=ns).ok
    poll("autoscaler passes", lambda: ("autoscaler", "pass") in results_for(report(ns), name), timeout=60)

    # Deleted: the namespace has nothing governed left, so no report.
    assert kubectl("-n", ns, "delete", "deployment", name).ok
    poll("the report removed", lambda: report(ns) is None, timeout=60)


def test_the_cluster_report_lists_the_policies():
    rep = poll("the ClusterReport", lambda: get("clusterreports.openreports.io", "waf-admission"), timeout=60)
    policies = {r["policy"]: r["result"] for r in rep["results"]}
    assert policies.get("baseline") == "pass", policies
    assert rep["summary"]["pass"] >= 1
