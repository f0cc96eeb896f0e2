"""Issue 25 on the real control plane: `model-fit` denies a model server
that cannot load its model on the GPUs it gets, where the GPU memory is
known only from the labels of the Nodes its pod can use (no VM size, no
GPU label in the Deployment), and admits the same models where they fit.
The developer has only `edit` in their namespace; the Nodes are kwok-less
Node objects an admin creates, labelled as GPU feature discovery labels
them (`nvidia.com/gpu.memory` in MiB)."""

import uuid

import pytest

from conftest import baseline_for_module, kubectl, load, only, poll, replicas_up
from test_nodes import nodes_known


# The baseline as installed (Warn) for this file: earlier tests of the
# session leave it in Deny, whose patches (gpu-placement's selector) and
# denials (zone-spread on a one-zone test pool) are not what it judges.
baseline_warns = baseline_for_module("Warn")

FIXTURES = "tests/fixtures/rules/model-fit"
POLICY = "model-fit-test"
SUFFIX = uuid.uuid4().hex[:6]
# Two GPU pools, told apart only by their agentpool label: A10s (23028 MiB,
# what GPU feature discovery reports for a 24 GB A10) and H100s (81559 MiB).
POOLS = {"a10": "23028", "h100": "81559"}


def node(pool, mib):
    name = f"waf-test-{pool}-{SUFFIX}"
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "agentpool": f"{pool}{SUFFIX}",
            "kubernetes.azure.com/accelerator": "nvidia",
            "nvidia.com/gpu.memory": mib,
            "nvidia.com/gpu.count": "8",
            "topology.kubernetes.io/zone": "1",
        }},
        "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
        "status": {"allocatable": {"cpu": "96", "memory": "900Gi", "pods": "110", "nvidia.com/gpu": "8"},
                   "capacity": {"cpu": "96", "memory": "900Gi", "pods": "110", "nvidia.com/gpu": "8"}},
    }


@pytest.fixture
def gpu_pools(ns):
    """The two pools' Nodes and a policy that denies on model-fit in `ns`,
    both known to every replica before the test; removed after."""
    replicas_up()
    before = len(kubectl("get", "nodes", "-o", "name").out.split())
    for pool, mib in POOLS.items():
        r = kubectl("create", "-f", "-", input=node(pool, mib))
        assert r.ok, r
    poll("both replicas know the GPU pools' Nodes", lambda: nodes_known() == [before + 2] * 2, timeout=30)
    policy = {
        "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "match": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
            "action": "Warn",
            "rules": {"modelFit": {"action": "Deny"}},
        },
    }
    r = kubectl("apply", "-f", "-", input=policy)
    assert r.ok, r
    yield
    kubectl("delete", "wap", POLICY, "--ignore-not-found")
    # The admitted servers' pods sit on Nodes with no kubelet to stop them:
    # gone by force, so the namespace goes at once.
    kubectl("-n", ns, "delete", "deployments", "--all", "--wait=false")
    kubectl("-n", ns, "delete", "pods", "--all", "--force", "--grace-period=0")
    for pool in POOLS:
        kubectl("delete", "node", f"waf-test-{pool}-{SUFFIX}", "--ignore-not-found")


def server(ns, fixture, name, pool, args=None):
    """A fixture's Deployment renamed, on `pool` by its agentpool label only."""
    def place(d):
        if d["kind"] != "Deployment":
            return
        spec = d["spec"]["template"]["spec"]
        spec["nodeSelector"] = {"kubernetes.azure.com/accelerator": "nvidia", "agentpool": f"{pool}{SUFFIX}"}
        if args is not None:
            spec["containers"][0]["args"] = args
        d["spec"]["selector"]["matchLabels"] = {"app": name}
        d["spec"]["template"]["metadata"]["labels"] = {"app": name}
        d["metadata"]["labels"] = {"app": name}
        for c in spec.get("topologySpreadConstraints", []):
            c["labelSelector"]["matchLabels"] = {"app": name}
    return only(load(f"{FIXTURES}/{fixture}", ns, name=name, mutate=place), "Deployment")


def one_line(r):
    return " ".join(r.out.split())


def denied_for_model_fit(r):
    return (not r.ok) and "denied the request" in r.out and "[model-fit]" in r.out


def test_model_fit_judges_by_the_nodes_labels_as_the_developer(dev, gpu_pools):
    ns = dev.ns
    # Llama 3.1 8B at its 131,072-token context on the A10 pool: the KV cache
    # of one sequence does not fit beside the weights. A server-side dry run
    # denied three times running: both replicas have the policy.
    full_context = server(ns, "fail-8b-full-context-on-a10.yaml", "chat", "a10")
    streak = []

    def in_force():
        streak.append(denied_for_model_fit(dev.apply(full_context, "--dry-run=server")))
        return len(streak) >= 3 and all(streak[-3:])

    poll(f"policy {POLICY} in force on both replicas", in_force, timeout=30, interval=0.05)
    r = dev.apply(full_context)
    assert not r.ok and "denied the request" in r.out, r
    text = one_line(r)
    assert "[model-fit] (Performance Efficiency)" in text, text
    assert "one sequence's KV cache needs 16.0 GiB on its GPU" in text, text
    assert f"1 × 22.5 GiB GPU (nvidia.com/gpu.memory=23028 on Node waf-test-a10-{SUFFIX})" in text, text
    assert "--max-model-len 32768" in text, text

    # The fix the message names is admitted.
    r = dev.apply(server(ns, "fail-8b-full-context-on-a10.yaml", "chat", "a10",
                         args=["meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "32768"]))
    assert r.ok, r

    # 70B in bf16 does not load on one H100 of the other pool; over four it does.
    r = dev.apply(server(ns, "fail-70b-bf16-on-one-a100.yaml", "reason", "h100"))
    assert not r.ok and "denied the request" in r.out, r
    text = one_line(r)
    assert "about 130.4 GiB of 16-bit weights" in text, text
    assert f"nvidia.com/gpu.memory=81559 on Node waf-test-h100-{SUFFIX}" in text, text
    r = dev.apply(server(ns, "pass-70b-tensor-parallel-4.yaml", "reason", "h100"))
    assert r.ok, r

    # A pool with no Node: the GPU memory is unknown, no verdict.
    r = dev.apply(server(ns, "fail-70b-bf16-on-one-a100.yaml", "elsewhere", "l40s"))
    assert r.ok and "[model-fit]" not in r.out, r

    # Updating the admitted Deployment back to the full context is denied too.
    r = dev.apply(server(ns, "fail-8b-full-context-on-a10.yaml", "chat", "a10"))
    assert not r.ok and "[model-fit]" in r.out, r
