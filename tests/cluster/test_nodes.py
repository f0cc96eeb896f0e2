"""The webhook's view of the cluster's Nodes (labels, taints, allocatable:
where a pod can run), as the chart's RBAC lets it list and watch them. A
Node an admin creates reaches every replica's snapshot, and so does its
deletion; no kubelet is needed, the Node object is what the webhook reads.
Observed through `waf_admission_cluster_nodes` on each replica's metrics
port, so it shows before any rule reads Nodes."""

import urllib.request

import pytest

from conftest import ENV, NS, kubectl, kubectl_json, poll, replicas_up

NODE = "waf-test-gpu-a10"
# A GPU node as AKS and NVIDIA's GPU feature discovery label it.
GPU_NODE = {
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": NODE, "labels": {
        "kubernetes.io/hostname": NODE,
        "nvidia.com/gpu.memory": "24576",
        "nvidia.com/gpu.product": "NVIDIA-A10",
        "node.kubernetes.io/instance-type": "Standard_NV36ads_A10_v5",
        "topology.kubernetes.io/zone": "3",
    }},
    "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
    "status": {"allocatable": {"cpu": "36", "memory": "440Gi", "pods": "110", "nvidia.com/gpu": "1"},
               "capacity": {"cpu": "36", "memory": "440Gi", "pods": "110", "nvidia.com/gpu": "1"}},
}


def nodes_known():
    """waf_admission_cluster_nodes of each replica, in replica order."""
    counts = []
    for port in ENV["REPLICA_METRICS_PORTS"].split():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        value = [line.split()[1] for line in text.splitlines() if line.startswith("waf_admission_cluster_nodes ")]
        counts.append(int(value[0]) if value else None)
    return counts


@pytest.fixture
def no_test_node():
    kubectl("delete", "node", NODE, "--ignore-not-found")
    yield
    kubectl("delete", "node", NODE, "--ignore-not-found")


def test_a_node_created_and_deleted_reaches_every_replicas_snapshot(no_test_node):
    replicas_up()
    assert kubectl("auth", "can-i", "watch", "nodes", "--as", f"system:serviceaccount:{NS}:waf-admission").stdout.strip() == "yes"
    before = len(kubectl_json("get", "nodes")["items"])
    assert before >= 5, "up.sh's kwok nodes"
    poll(f"both replicas know the cluster's {before} Nodes", lambda: nodes_known() == [before, before])

    r = kubectl("create", "-f", "-", input=GPU_NODE)
    assert r.ok, r
    stored = kubectl_json("get", "node", NODE)
    assert stored["status"]["allocatable"]["nvidia.com/gpu"] == "1", "the Node as created, with its allocatable"
    poll(f"both replicas know {NODE}", lambda: nodes_known() == [before + 1, before + 1], timeout=30)

    r = kubectl("delete", "node", NODE)
    assert r.ok, r
    poll(f"both replicas forgot {NODE}", lambda: nodes_known() == [before, before], timeout=30)
