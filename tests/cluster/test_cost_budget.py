"""cost-budget in a real control plane: the price table is a ConfigMap an
admin creates in the controller's namespace (what `waf-admission prices
--configmap --apply` writes), which each replica watches by name
(--prices-configmap, the chart's prices.configMap) with the chart's Role and
nothing more. A policy scoped to the test's namespace denies a workload that
can cost more than $10,000 a month; the developer, who holds only `edit`,
applies a vLLM Deployment pinned to Standard_NC24ads_A100_v4 whose HPA may
reach 8 replicas. Without the table nothing is said; with it the apply is
denied with the figure and how it was reached, and at maxReplicas 3 it is
admitted. The prices are illustrative, not Azure's."""

import copy
import datetime

import pytest

from conftest import NS, kubectl, load, only, poll

POLICY = "cost-budget-test"
CONFIGMAP = "waf-gpu-prices"
WORKLOAD = "tests/fixtures/rules/cost-budget/fail-hpa-max-over-budget.yaml"


def table(generated_at):
    return (
        "schema: waf-admission.dev/gpu-prices/v1\n"
        "currency: USD\n"
        "hoursPerMonth: 730\n"
        "source: tests/cluster/test_cost_budget.py\n"
        f"generatedAt: {generated_at}\n"
        "regions:\n"
        "  eastus:\n"
        "    Standard_NC24ads_A100_v4: {payg: 4.0}\n"
    )


def policy(ns):
    return {
        "apiVersion": "waf-admission.dev/v1alpha1",
        "kind": "WellArchitectedPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "match": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
            "action": "Warn",
            "rules": {"costBudget": {"action": "Deny", "maxMonthly": 10000, "region": "eastus"}},
        },
    }


@pytest.fixture
def clean(ns):
    kubectl("-n", NS, "delete", "configmap", CONFIGMAP, "--ignore-not-found")
    yield
    kubectl("delete", "wap", POLICY, "--ignore-not-found", "--wait=true")
    kubectl("-n", NS, "delete", "configmap", CONFIGMAP, "--ignore-not-found")


def test_a_deployment_over_its_monthly_budget_is_denied_with_the_figure(dev, ns, clean):
    docs = load(WORKLOAD, ns)
    deployment = only(docs, "Deployment")
    hpa = only(docs, "HorizontalPodAutoscaler")
    # The polls create (server-side dry run) a copy under another name, so
    # they stay CREATEs; its HPA targets it.
    probe = copy.deepcopy(docs)
    for d in probe:
        if d["kind"] == "Deployment":
            d["metadata"]["name"] = "llm-probe"
        else:
            d["metadata"]["name"] = "llm-probe"
            d["spec"]["scaleTargetRef"]["name"] = "llm-probe"
    r = dev.apply(hpa + only(probe, "HorizontalPodAutoscaler"))
    assert r.ok, r

    r = kubectl("apply", "-f", "-", input=policy(ns))
    assert r.ok, r
    poll("the policy in force", lambda: kubectl(
        "get", "wap", POLICY, "-o", "jsonpath={.status.observedGeneration}").out.strip() == "1", timeout=30)
    # No price table: cost-budget says nothing, the apply goes through.
    r = dev.apply(only(probe, "Deployment"), "--dry-run=server")
    assert r.ok and "cost-budget" not in r.out, r

    # The platform team publishes today's prices: both replicas pick them up.
    today = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP, "namespace": NS},
          "data": {"prices.yaml": table(today.strftime("%Y-%m-%dT%H:%M:%SZ"))}}
    r = kubectl("apply", "-f", "-", input=cm)
    assert r.ok, r
    streak = []

    def denied_on_cost():
        r = dev.apply(only(probe, "Deployment"), "--dry-run=server")
        streak.append((not r.ok) and "[cost-budget]" in r.out)
        return len(streak) >= 3 and all(streak[-3:])

    poll("the price table in force on both replicas", denied_on_cost, timeout=30, interval=0.05)

    r = dev.apply(deployment)
    assert not r.ok and "denied the request" in r.out, r
    said = " ".join(r.out.split())  # the denial is wrapped at 100 columns
    assert (
        "[cost-budget] (Cost Optimization) 8 replicas (HorizontalPodAutoscaler llm maxReplicas) × "
        "1 of 1 GPU of Standard_NC24ads_A100_v4 × $4/h (eastus, Linux pay-as-you-go, prices of "
        f"{today:%Y-%m-%d}) × 730 h = $23,360.00/month, above costBudget.maxMonthly $10,000.00"
    ) in said, r
    assert f"Fix: set spec.maxReplicas: 3 on HorizontalPodAutoscaler {ns}/llm" in said, r
    assert kubectl("-n", ns, "get", "deployment", "llm").rc != 0, "nothing was created"

    # The developer follows the fix: maxReplicas 3 costs $8,760 a month.
    hpa[0]["spec"]["maxReplicas"] = 3
    for d in only(probe, "HorizontalPodAutoscaler"):
        d["spec"]["maxReplicas"] = 3
    r = dev.apply(hpa + only(probe, "HorizontalPodAutoscaler"))
    assert r.ok, r
    admitted = []

    def admitted_at_three():
        r = dev.apply(only(probe, "Deployment"), "--dry-run=server")
        admitted.append(r.ok and "cost-budget" not in r.out)
        return len(admitted) >= 3 and all(admitted[-3:])

    poll("maxReplicas 3 in force on both replicas", admitted_at_three, timeout=30, interval=0.05)
    r = dev.apply(deployment)
    assert r.ok, r
    assert dev.json("get", "deployment", "llm")["metadata"]["name"] == "llm"


def test_the_webhook_may_read_the_price_configmap_and_no_other():
    sa = f"system:serviceaccount:{NS}:waf-admission"
    can = lambda *a: kubectl("auth", "can-i", *a, "--as", sa).stdout.strip()  # noqa: E731
    assert can("watch", f"configmaps/{CONFIGMAP}", "-n", NS) == "yes"
    assert can("get", "configmaps/another", "-n", NS) == "no"
    assert can("update", f"configmaps/{CONFIGMAP}", "-n", NS) == "no"
