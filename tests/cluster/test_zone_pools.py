"""Issue 26 on the real control plane: `zone-spread` reads the node pools as
kube-scheduler does. A GPU pool in zones 1 and 2 beside another team's GPU
pool, the only one in zone 3, which this model does not tolerate: a
DoNotSchedule zone constraint without `nodeTaintsPolicy` counts zone 3, so
the real scheduler leaves every replica past one per GPU zone Pending, and
the webhook says so; the constraint the rule's patch writes (`Honor`)
schedules them all. The developer has only `edit` in their namespace; the
Nodes are kwok-managed Node objects an admin creates (kwok marks them Ready,
the real kube-scheduler binds the pods; no kubelet runs them)."""

import json
import uuid

import pytest

from conftest import baseline_for_module, kubectl, kubectl_json, load, only, poll, replicas_up
from test_nodes import nodes_known


# The baseline as installed (Warn) for this file: earlier tests of the
# session leave it in Deny, whose patches (gpu-placement's selector) and
# denials (zone-spread on a one-zone test pool) are not what it judges.
baseline_warns = baseline_for_module("Warn")

SUFFIX = uuid.uuid4().hex[:6]
POLICY = "zone-pools-test"
APP = "llm"
# This test's GPU nodes carry their own taint and label, so up.sh's gpu-1
# and gpu-2 (and any GPU pod another test left there) play no part.
TAINT = {"key": f"gpu-{SUFFIX}", "value": "gpu", "effect": "NoSchedule"}
MARK = {"waf-test-zone-pools": SUFFIX}


def node(name, zone, pool, taint):
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"}, "labels": {
            "type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "agentpool": pool, "kubernetes.azure.com/accelerator": "nvidia",
            "node.kubernetes.io/instance-type": "Standard_NC24ads_A100_v4",
            "topology.kubernetes.io/zone": zone, **MARK,
        }},
        "spec": {"taints": [taint]},
        "status": {"allocatable": {"cpu": "24", "memory": "200Gi", "pods": "110", "nvidia.com/gpu": "1"},
                   "capacity": {"cpu": "24", "memory": "200Gi", "pods": "110", "nvidia.com/gpu": "1"}},
    }


# Two one-GPU nodes in each of zones 1 and 2: room for four replicas.
GPU_NODES = [node(f"waf-test-gpu{SUFFIX}-{z}{i}", z, f"gpu{SUFFIX}", TAINT) for z in "12" for i in "ab"]
RESERVED = node(f"waf-test-teamb{SUFFIX}-3", "3", f"teamb{SUFFIX}", {"key": "team", "value": "b", "effect": "NoSchedule"})
NAMES = [n["metadata"]["name"] for n in [*GPU_NODES, RESERVED]]


@pytest.fixture
def zone_pools(dev):
    """The pools' Nodes, Ready and known to every replica; after the test
    the pods go by force (no kubelet stops them) and the Nodes with them."""
    replicas_up()
    before = len(kubectl("get", "nodes", "-o", "name").out.split())
    for n in [*GPU_NODES, RESERVED]:
        r = kubectl("create", "-f", "-", input=n)
        assert r.ok, r
    r = kubectl("wait", "--for=condition=Ready", "--timeout=60s", *[f"node/{n}" for n in NAMES], timeout=90)
    assert r.ok, r
    poll("both replicas know the pools' Nodes", lambda: nodes_known() == [before + len(NAMES)] * 2, timeout=30)
    yield dev
    kubectl("delete", "wap", POLICY, "--ignore-not-found")
    kubectl("-n", dev.ns, "delete", "deployments", "--all", "--wait=false")
    kubectl("-n", dev.ns, "delete", "pods", "--all", "--force", "--grace-period=0")
    for n in NAMES:
        kubectl("delete", "node", n, "--ignore-not-found")


def server(ns):
    """The compliant GPU server, four replicas, on this test's GPU pool by
    its taint: the zone constraint as a developer writes it (no
    nodeTaintsPolicy)."""
    [d] = only(load("tests/fixtures/workloads/compliant-gpu-deployment.yaml", ns), "Deployment")
    d["spec"]["replicas"] = 4
    spec = d["spec"]["template"]["spec"]
    spec["nodeSelector"] = {"kubernetes.azure.com/accelerator": "nvidia", **MARK}
    spec["tolerations"] = [{**TAINT, "operator": "Equal"}]
    assert "nodeTaintsPolicy" not in spec["topologySpreadConstraints"][0]
    return d


def pods(ns):
    return kubectl_json("-n", ns, "get", "pods", "-l", f"app={APP}")["items"]


def placed(ns):
    """(zones of the scheduled pods, sorted; the unschedulable pods' messages)."""
    zone = {n: n.rsplit("-", 1)[1][0] for n in NAMES}
    live = [p for p in pods(ns) if not p["metadata"].get("deletionTimestamp")]
    zones = sorted(zone.get(p["spec"]["nodeName"], "?") for p in live if p["spec"].get("nodeName"))
    pending = [c["message"] for p in live for c in p["status"].get("conditions", [])
               if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"]
    return zones, pending


def test_a_constraint_that_counts_another_pools_zone_leaves_replicas_pending_and_is_reported(zone_pools):
    dev = zone_pools
    # The baseline as installed (Warn): the webhook admits and warns.
    r = dev.apply(server(dev.ns))
    assert r.ok, r
    assert "[zone-spread]" in r.out and "counts zone 3" in r.out and "Pending" in r.out, r.out
    # The real scheduler: one replica per GPU zone, two Pending on the
    # topology spread constraint (zone 3 holds the global minimum at 0).
    state = poll("two replicas scheduled, two unschedulable",
                 lambda: (lambda z, p: (z, p) if z == ["1", "2"] and len(p) == 2 else None)(*placed(dev.ns)),
                 timeout=60)
    assert all("topology spread constraints" in m for m in state[1]), state


def test_the_patched_constraint_schedules_every_replica(zone_pools):
    dev = zone_pools
    policy = {
        "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "match": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": dev.ns}}},
            "action": "Warn",
            "rules": {"zoneSpread": {"action": "Deny", "mutate": True}},
        },
    }
    r = kubectl("apply", "-f", "-", input=policy)
    assert r.ok, r

    def patched(r):
        if not r.ok:
            return None
        c = json.loads(r.stdout)["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
        return r if c.get("nodeTaintsPolicy") == "Honor" else None

    r = poll("the mutating webhook sets nodeTaintsPolicy: Honor",
             lambda: patched(dev.apply(server(dev.ns), "--dry-run=server", "-o", "json")), timeout=30)
    assert "[zone-spread]" in r.out, r.out
    r = dev.apply(server(dev.ns))
    assert r.ok, r
    stored = kubectl_json("-n", dev.ns, "get", "deployment", APP)
    assert stored["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["nodeTaintsPolicy"] == "Honor"
    # Every replica bound by the real scheduler, two per GPU zone, none Pending.
    poll("four replicas scheduled, none Pending",
         lambda: placed(dev.ns) == (["1", "1", "2", "2"], []), timeout=60)


def test_honor_alone_does_not_help_a_pod_that_only_tolerates_the_gpu_taint(zone_pools):
    """The AKS GPU samples' pod: toleration and GPU request, no nodeSelector.
    up.sh's untainted CPU workers keep zone 3 counted under Honor too (a
    node without taints is always tolerated; resources never count), so the
    rule names the selector as the fix instead of patching."""
    dev = zone_pools
    d = server(dev.ns)
    spec = d["spec"]["template"]["spec"]
    del spec["nodeSelector"]
    spec["topologySpreadConstraints"][0]["nodeTaintsPolicy"] = "Honor"
    r = dev.apply(d)
    assert r.ok, r
    assert "[zone-spread]" in r.out and "counts zone 3" in r.out, r.out
    state = poll("two replicas scheduled, two unschedulable",
                 lambda: (lambda z, p: (z, p) if z == ["1", "2"] and len(p) == 2 else None)(*placed(dev.ns)),
                 timeout=60)
    assert all("topology spread constraints" in m for m in state[1]), state
