"""Every path to a running pod, tried by a developer who holds nothing but
the built-in `edit` ClusterRole in one namespace (a RoleBinding, and kubectl
--as), with the baseline in Deny (issue 21).

The spec the policy must keep from running anywhere: a vLLM server from
Docker Hub on :latest that asks for a GPU and says nothing of GPU nodes
(image-provenance denies it; gpu-placement denies or, where the mutating
webhook can, repairs it). Each path is refused at apply, or at pod creation
with the rule in the controller's FailedCreate event, and afterwards no pod
runs that image. Day-2 operations on a workload that predates the move to
Deny go through without the mutating webhook changing its pod template."""

import contextlib
import copy
import json
import pathlib

import pytest

from conftest import baseline_in, kubectl, kubectl_json, load, only, poll

pytestmark = pytest.mark.usefixtures("deny")
HERE = pathlib.Path(__file__).resolve().parent

DENIED_IMAGE = "docker.io/vllm/vllm-openai:latest"
# examples/good/llm-gpu.yaml's image: pinned by digest in a registry the baseline allows.
COMPLIANT_IMAGE = (
    "contoso.azurecr.io/models/vllm-openai:v0.6.3"
    "@sha256:4f8c1e1d36ca6a7bb3b5f4b3e6d8f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5"
)
# A server the webhook cannot recognise by its image: only its GPU says it is one.
UNKNOWN_SERVER_IMAGE = "contoso.azurecr.io/chat/server@sha256:" + "7d" * 32
GPU_NODE_SELECTOR = {"kubernetes.azure.com/accelerator": "nvidia"}
GPU_TOLERATION = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}


# ---------------------------------------------------------------- specs


def server_container(image=DENIED_IMAGE, gpu="nvidia.com/gpu", name="server"):
    resources = {"requests": {"cpu": "4", "memory": "24Gi"}, "limits": {"memory": "24Gi"}}
    if gpu:
        resources["requests"][gpu] = "1"
        resources["limits"][gpu] = "1"
    return {
        "name": name,
        "image": image,
        "args": ["--model", "/models/phi-3-mini"],
        "ports": [{"containerPort": 8000}],
        "resources": resources,
    }


def denied_pod_spec(restart_policy=None):
    """The denied spec: no nodeSelector, no toleration, a GPU, Docker Hub :latest."""
    spec = {"containers": [server_container()]}
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    return spec


def template(app, spec):
    return {"metadata": {"labels": {"app": app}}, "spec": spec}


def zone_spread(app):
    return [{
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": app}},
    }]


def workload(kind, name, spec=None):
    """kind `name` whose pods run spec (the denied spec unless given)."""
    selector = {"matchLabels": {"app": name}}
    pod = spec or denied_pod_spec()
    batch_pod = spec or denied_pod_spec(restart_policy="Never")
    bodies = {
        "Deployment": ("apps/v1", {"replicas": 2, "selector": selector, "template": template(name, pod)}),
        "StatefulSet": ("apps/v1", {"replicas": 2, "serviceName": name, "selector": selector,
                                    "template": template(name, pod)}),
        "DaemonSet": ("apps/v1", {"selector": selector, "template": template(name, pod)}),
        "ReplicaSet": ("apps/v1", {"replicas": 2, "selector": selector, "template": template(name, pod)}),
        "ReplicationController": ("v1", {"replicas": 2, "selector": {"app": name}, "template": template(name, pod)}),
        "Job": ("batch/v1", {"backoffLimit": 0, "template": template(name, batch_pod)}),
        "CronJob": ("batch/v1", {"schedule": "* * * * *", "jobTemplate": {
            "spec": {"backoffLimit": 0, "template": template(name, batch_pod)}}}),
    }
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": pod}
    api_version, body = bodies[kind]
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "labels": {"app": name}}, "spec": body}


# ---------------------------------------------------------------- what the cluster holds


def refused(r, *rules):
    """kubectl's answer is a webhook's refusal naming one of rules."""
    assert not r.ok, f"admitted, expected a refusal naming {' or '.join(rules)}:\n{r}"
    assert "denied the request" in r.out, r
    assert any(f"[{rule}]" in r.out for rule in rules), f"the refusal names none of {rules}:\n{r}"


def pods(ns, selector=None):
    args = ["-n", ns, "get", "pods"] + (["-l", selector] if selector else [])
    return [p for p in kubectl_json(*args)["items"] if not p["metadata"].get("deletionTimestamp")]


def images(pod):
    spec = pod["spec"]
    return {c["image"] for c in spec.get("containers", []) + spec.get("initContainers", [])
            + spec.get("ephemeralContainers", [])}


def scheduled(ns, app, count, exclude=()):
    """count pods of app, each with a node, none of the uids in exclude; else None."""
    items = [p for p in pods(ns, f"app={app}") if p["metadata"]["uid"] not in exclude and p["spec"].get("nodeName")]
    return items if len(items) == count else None


def webhook_failed_creates(ns):
    """FailedCreate events of the namespace whose message is a webhook's refusal."""
    events = kubectl_json("-n", ns, "get", "events")["items"]
    return [e for e in events if e.get("reason") == "FailedCreate" and "denied the request" in e.get("message", "")]


def assert_no_denied_pod_runs(ns, image=DENIED_IMAGE):
    """No pod of the namespace runs image; and where a controller's pod
    creation was refused by the webhook, its FailedCreate event names the rule."""
    every = kubectl_json("-n", ns, "get", "pods")["items"]  # terminating ones too: they still run
    running = [p["metadata"]["name"] for p in every if image in images(p)]
    assert running == [], f"pods running {image}: {running}"
    for e in webhook_failed_creates(ns):
        assert "[image-provenance]" in e["message"] or "[gpu-placement]" in e["message"], e


def gone(ns, kind, name):
    r = kubectl("-n", ns, "get", kind, name)
    return not r.ok and "NotFound" in r.out


# ---------------------------------------------------------------- a compliant Deployment


@pytest.fixture
def compliant(dev):
    """examples/good/llm-gpu.yaml's Deployment and PDB, applied by the
    developer, with both pods scheduled on GPU nodes. Its HPA stays out: an
    autoscaler would be the replica floor, and the scale tests need
    spec.replicas to be it."""
    docs = [d for d in load("examples/good/llm-gpu.yaml", dev.ns) if d["kind"] in ("Deployment", "PodDisruptionBudget")]
    r = dev.apply(docs)
    assert r.ok, r
    poll("two llm pods scheduled", lambda: scheduled(dev.ns, "llm", 2), timeout=90)
    return dev


def test_the_compliant_deployments_pods_are_created_and_scheduled_on_gpu_nodes(compliant):
    labels = {n["metadata"]["name"]: n["metadata"]["labels"] for n in kubectl_json("get", "nodes")["items"]}
    placed = scheduled(compliant.ns, "llm", 2)
    assert placed, pods(compliant.ns, "app=llm")
    for p in placed:
        assert images(p) == {COMPLIANT_IMAGE}, images(p)
        assert labels[p["spec"]["nodeName"]].get("kubernetes.azure.com/accelerator") == "nvidia", p["spec"]["nodeName"]
    r = compliant("rollout", "status", "deployment/llm", "--timeout=60s", timeout=90)
    assert r.ok, r
    assert webhook_failed_creates(compliant.ns) == []


# ---------------------------------------------------------------- every pod-template kind, at apply

TEMPLATE_KINDS = ["ReplicaSet", "Job", "CronJob", "DaemonSet", "ReplicationController",
                  "Deployment", "StatefulSet", "Pod"]


@pytest.mark.parametrize("kind", TEMPLATE_KINDS)
def test_every_pod_template_kind_with_the_denied_spec_is_refused_at_apply(dev, kind):
    name = f"rogue-{kind.lower()}"
    r = dev.apply(workload(kind, name))
    refused(r, "image-provenance")
    assert gone(dev.ns, kind, name), f"{kind} {name} exists after its refusal"
    if kind == "CronJob":
        assert kubectl_json("-n", dev.ns, "get", "jobs")["items"] == []
    assert_no_denied_pod_runs(dev.ns)


# ---------------------------------------------------------------- pods the Deployment made, and pods that say so


def test_set_image_on_a_pod_the_deployment_made_is_refused(compliant):
    pod = scheduled(compliant.ns, "llm", 2)[0]["metadata"]["name"]
    r = compliant("set", "image", f"pod/{pod}", f"llm={DENIED_IMAGE}")
    refused(r, "image-provenance")
    assert images(kubectl_json("-n", compliant.ns, "get", "pod", pod)) == {COMPLIANT_IMAGE}
    assert_no_denied_pod_runs(compliant.ns)


@pytest.mark.parametrize("owner_kind", ["Deployment", "ReplicaSet"])
def test_a_pod_whose_owner_references_name_the_real_owner_is_refused(compliant, owner_kind):
    """ownerReferences are the object's own claim: anyone who can read the
    owner's uid can write them. Who made a Pod is the requester, not this."""
    if owner_kind == "Deployment":
        owner = "llm"
    else:
        owner = compliant.json("get", "rs", "-l", "app=llm")["items"][0]["metadata"]["name"]
    r = compliant("get", owner_kind.lower(), owner, "-o", "jsonpath={.metadata.uid}")
    assert r.ok and r.stdout, r
    pod = workload("Pod", "claims-an-owner")
    # Labels the owner's selector does not match, so no controller adopts or culls it.
    pod["metadata"]["ownerReferences"] = [{
        "apiVersion": "apps/v1", "kind": owner_kind, "name": owner, "uid": r.stdout.strip(), "controller": True,
    }]
    r = compliant.apply(pod)
    refused(r, "image-provenance")
    assert gone(compliant.ns, "pod", "claims-an-owner")
    assert_no_denied_pod_runs(compliant.ns)


def test_editing_the_replicasets_template_of_a_paused_deployment_is_refused(compliant):
    r = compliant("rollout", "pause", "deployment/llm")
    assert r.ok, r
    sets = compliant.json("get", "rs", "-l", "app=llm")["items"]
    assert len(sets) == 1, [s["metadata"]["name"] for s in sets]
    rs = sets[0]["metadata"]["name"]
    r = compliant("set", "image", f"rs/{rs}", f"llm={DENIED_IMAGE}")
    refused(r, "image-provenance")
    r = compliant("patch", "rs", rs, "--type", "json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": DENIED_IMAGE}]))
    refused(r, "image-provenance")
    stored = kubectl_json("-n", compliant.ns, "get", "rs", rs)
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == COMPLIANT_IMAGE

    # The ReplicaSet makes its pods again from the template it has: compliant ones.
    old = {p["metadata"]["uid"] for p in pods(compliant.ns, "app=llm")}
    r = compliant("delete", "pods", "-l", "app=llm", "--wait=false")
    assert r.ok, r
    new = poll("two new llm pods scheduled", lambda: scheduled(compliant.ns, "llm", 2, exclude=old), timeout=90)
    for p in new:
        assert images(p) == {COMPLIANT_IMAGE}, images(p)
    assert_no_denied_pod_runs(compliant.ns)


# ---------------------------------------------------------------- GPUs the image does not give away


def shared_gpu_deployment(name="chat"):
    """Time-slicing's renamed resource and an image no one knows as a server."""
    container = server_container(image=UNKNOWN_SERVER_IMAGE, gpu="nvidia.com/gpu.shared")
    spec = {"topologySpreadConstraints": zone_spread(name), "containers": [container]}
    return workload("Deployment", name, spec)


def dra_objects(name="chat-dra"):
    """A ResourceClaimTemplate of device class gpu.nvidia.com (resource.k8s.io/v1,
    GA since 1.34) and a Deployment whose pods claim a device through it."""
    claim_template = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": f"{name}-gpu"},
        "spec": {"spec": {"devices": {"requests": [
            {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}},
        ]}}},
    }
    container = server_container(image=UNKNOWN_SERVER_IMAGE, gpu=None)
    container["resources"]["claims"] = [{"name": "gpu"}]
    spec = {
        "topologySpreadConstraints": zone_spread(name),
        "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": f"{name}-gpu"}],
        "containers": [container],
    }
    return claim_template, workload("Deployment", name, spec)


def test_the_dra_claim_template_shape_is_the_apiservers():
    """The v1 shape used above, as the apiserver explains it (a field
    renamed between betas would make the test's own objects invalid)."""
    r = kubectl("explain", "resourceclaimtemplate.spec.spec.devices.requests", "--api-version=resource.k8s.io/v1")
    assert r.ok, r
    assert "exactly" in r.out and "name" in r.out, r
    r = kubectl("explain", "resourceclaimtemplate.spec.spec.devices.requests.exactly.deviceClassName",
                "--api-version=resource.k8s.io/v1")
    assert r.ok, r


@pytest.fixture(scope="session")
def gpu_device_class():
    """The DeviceClass NVIDIA's DRA driver installs, so that a claim names a class that exists."""
    r = kubectl("apply", "-f", "-", input={
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "gpu.nvidia.com"},
        "spec": {"selectors": [{"cel": {"expression": "device.driver == 'gpu.nvidia.com'"}}]},
    })
    assert r.ok, r


GPU_PLACEMENT_PROBE = "examples/bad/gpu-placement.yaml"  # nvidia.com/gpu without the toleration


@contextlib.contextmanager
def gpu_placement_unrepaired(ns):
    """gpuPlacement with `mutate: false` for the duration, so a GPU pod
    without GPU placement is refused by the rule rather than repaired by the
    mutating webhook; as it was after. In force once the probe, which the
    mutating webhook repairs otherwise, is refused (and admitted again)."""
    before = kubectl_json("get", "wap", "baseline")["spec"]["rules"]["gpuPlacement"].get("mutate")
    probe = only(load(GPU_PLACEMENT_PROBE, ns), "Deployment")

    def set_mutate(value, in_force):
        r = kubectl("patch", "wap", "baseline", "--type", "merge",
                    "-p", json.dumps({"spec": {"rules": {"gpuPlacement": {"mutate": value}}}}))
        assert r.ok, r
        poll(f"gpuPlacement.mutate: {value} in force",
             lambda: in_force(kubectl("apply", "--dry-run=server", "-f", "-", input=probe)), timeout=30, interval=0.1)

    set_mutate(False, lambda r: not r.ok and "[gpu-placement]" in r.out)
    try:
        yield
    finally:
        set_mutate(before, lambda r: r.ok)


def seen_as_a_gpu(r):
    """A server-side dry run's answer for a GPU workload without GPU placement,
    under the baseline as installed: the mutating webhook added the placement
    (and said so), or the rule refused it. Admitted unchanged would mean the
    webhook did not see a GPU at all."""
    if not r.ok:
        refused(r, "gpu-placement")
        return
    pod = json.loads(r.stdout)["spec"]["template"]["spec"]
    assert pod.get("nodeSelector", {}).items() >= GPU_NODE_SELECTOR.items(), f"admitted without GPU placement: {pod}"
    assert GPU_TOLERATION in pod.get("tolerations", []), f"admitted without the GPU toleration: {pod}"
    assert "[gpu-placement]" in r.out, r


def test_a_time_sliced_gpu_with_an_unknown_image_is_seen_as_a_gpu(dev):
    deployment = shared_gpu_deployment()
    seen_as_a_gpu(dev.apply(deployment, "--dry-run=server", "-o", "json"))
    with gpu_placement_unrepaired(dev.ns):
        r = dev.apply(deployment)
        refused(r, "gpu-placement")
        assert gone(dev.ns, "deployment", "chat")
    assert_no_denied_pod_runs(dev.ns, UNKNOWN_SERVER_IMAGE)


def placed_or_refused(r):
    """The answer, once it is no longer an unchanged admission."""
    if not r.ok:
        return r
    pod = json.loads(r.stdout)["spec"]["template"]["spec"]
    return r if pod.get("nodeSelector", {}).items() >= GPU_NODE_SELECTOR.items() else None


def test_a_dra_gpu_claim_with_an_unknown_image_is_seen_as_a_gpu(dev, gpu_device_class):
    """The claim template first, the workload once the webhook's reflector
    holds it (the dry run's answer is the readiness signal)."""
    claim_template, deployment = dra_objects()
    r = dev.apply(claim_template)
    assert r.ok, r
    r = poll("the webhook sees the GPU the claim template asks for",
             lambda: placed_or_refused(dev.apply(deployment, "--dry-run=server", "-o", "json")), timeout=10)
    seen_as_a_gpu(r)
    with gpu_placement_unrepaired(dev.ns):
        r = dev.apply(deployment)
        refused(r, "gpu-placement")
        assert gone(dev.ns, "deployment", "chat-dra")
    assert kubectl_json("-n", dev.ns, "get", "resourceclaims")["items"] == []
    assert_no_denied_pod_runs(dev.ns, UNKNOWN_SERVER_IMAGE)


def test_a_dra_claim_template_and_its_workload_in_one_file_are_refused(dev, gpu_device_class):
    """The developer's file as written: kubectl creates the claim template a
    moment before the Deployment, too soon for any watch to have brought it
    to the webhook. The Deployment must not be admitted as GPU-less for
    that: its pods, made by the replicaset controller, are not judged again."""
    claim_template, deployment = dra_objects("chat-dra-one-file")
    with gpu_placement_unrepaired(dev.ns):
        r = dev.apply([claim_template, deployment])
        refused(r, "gpu-placement")
        assert gone(dev.ns, "deployment", "chat-dra-one-file")
    assert kubectl_json("-n", dev.ns, "get", "resourceclaims")["items"] == []
    assert_no_denied_pod_runs(dev.ns, UNKNOWN_SERVER_IMAGE)


# ---------------------------------------------------------------- replica floors


def test_scaling_below_the_floor_through_the_scale_subresource_is_refused(compliant):
    r = compliant("scale", "deployment/llm", "--replicas=1")
    refused(r, "zone-spread")
    assert kubectl_json("-n", compliant.ns, "get", "deployment", "llm")["spec"]["replicas"] == 2
    # The same through the subresource by patch, as a client other than kubectl scale sends it.
    r = compliant("patch", "deployment", "llm", "--subresource=scale", "--type", "merge", "-p", '{"spec":{"replicas":1}}')
    refused(r, "zone-spread")
    assert kubectl_json("-n", compliant.ns, "get", "deployment", "llm")["spec"]["replicas"] == 2
    # Above the floor it is an ordinary scale.
    r = compliant("scale", "deployment/llm", "--replicas=3")
    assert r.ok, r
    assert kubectl_json("-n", compliant.ns, "get", "deployment", "llm")["spec"]["replicas"] == 3


def test_scaling_a_statefulset_below_the_floor_is_refused(dev):
    docs = load("examples/good/llm-gpu.yaml", dev.ns)
    sts = only(docs, "Deployment")[0]
    sts["kind"] = "StatefulSet"
    sts["spec"]["serviceName"] = "llm"
    r = dev.apply(sts)
    assert r.ok, r
    r = dev("scale", "statefulset/llm", "--replicas=1")
    refused(r, "zone-spread")
    assert kubectl_json("-n", dev.ns, "get", "statefulset", "llm")["spec"]["replicas"] == 2


def low_hpa(ns):
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "llm", "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
        },
    }


@pytest.mark.parametrize("how", ["manifest", "kubectl-autoscale"])
def test_an_autoscaler_below_the_floor_is_refused_at_apply(compliant, how):
    if how == "manifest":
        r = compliant.apply(low_hpa(compliant.ns))
    else:
        r = compliant("autoscale", "deployment/llm", "--min=1", "--max=4", "--cpu=70%")
    refused(r, "autoscaler", "zone-spread")
    assert gone(compliant.ns, "hpa", "llm")
    assert kubectl_json("-n", compliant.ns, "get", "deployment", "llm")["spec"]["replicas"] == 2


# ---------------------------------------------------------------- live safety


@pytest.fixture
def predating(dev):
    """A Deployment that predates the move to Deny: created by an admin under
    Warn, unpatched (the violations the mutating webhook would patch under
    Deny are still in it), its two pods running."""
    with baseline_in("Warn"):
        r = kubectl("apply", "-f", "-", input=load(HERE / "fixtures/legacy-patchable-deployment.yaml", dev.ns))
        assert r.ok, r
    stored = kubectl_json("-n", dev.ns, "get", "deployment", "legacy")
    pod = stored["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in pod and not pod["containers"][0].get("resources"), pod
    poll("two legacy pods scheduled", lambda: scheduled(dev.ns, "legacy", 2), timeout=60)
    poll("the Deployment's rollout observed",
         lambda: (lambda d: d["status"].get("observedGeneration") == d["metadata"]["generation"])(
             kubectl_json("-n", dev.ns, "get", "deployment", "legacy")), timeout=30)
    return dev


def replica_sets(ns, app):
    return {s["metadata"]["name"]: s["spec"]["template"] for s in kubectl_json("-n", ns, "get", "rs", "-l", f"app={app}")["items"]}


def remove_finalizers(ns):
    """As an admin, under Warn if Deny refuses it: the test has said so already."""
    remove = ["-n", ns, "patch", "deployment", "legacy", "--type", "merge", "-p", '{"metadata":{"finalizers":null}}']
    if not kubectl(*remove).ok:
        with baseline_in("Warn"):
            kubectl(*remove)


@pytest.mark.parametrize("change", ["label", "finalizer"])
def test_metadata_changes_leave_a_predating_deployments_template_and_generation_alone(predating, change, request):
    before = kubectl_json("-n", predating.ns, "get", "deployment", "legacy")
    sets_before = replica_sets(predating.ns, "legacy")
    if change == "label":
        r = predating("label", "deployment/legacy", "team=inference")
    else:
        # Taken off again before the namespace goes, or it would hang there.
        request.addfinalizer(lambda: remove_finalizers(predating.ns))
        r = predating("patch", "deployment", "legacy", "--type", "merge",
                      "-p", '{"metadata":{"finalizers":["example.com/hold"]}}')
    assert r.ok, r
    after = kubectl_json("-n", predating.ns, "get", "deployment", "legacy")
    if change == "label":
        assert after["metadata"]["labels"]["team"] == "inference"
    else:
        assert after["metadata"]["finalizers"] == ["example.com/hold"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]
    assert replica_sets(predating.ns, "legacy") == sets_before
    if change == "finalizer":
        # Taking it off is an UPDATE under Deny too, and must go through as the developer.
        r = predating("patch", "deployment", "legacy", "--type", "merge", "-p", '{"metadata":{"finalizers":null}}')
        assert r.ok, r
        after = kubectl_json("-n", predating.ns, "get", "deployment", "legacy")
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert after["spec"]["template"] == before["spec"]["template"]


def test_rollout_restart_of_a_predating_deployment_changes_only_the_restart_annotation(predating):
    before = kubectl_json("-n", predating.ns, "get", "deployment", "legacy")
    r = predating("rollout", "restart", "deployment/legacy")
    assert r.ok, r
    after = kubectl_json("-n", predating.ns, "get", "deployment", "legacy")
    template = copy.deepcopy(after["spec"]["template"])
    annotations = template["metadata"].get("annotations", {})
    assert "kubectl.kubernetes.io/restartedAt" in annotations, template
    del annotations["kubectl.kubernetes.io/restartedAt"]
    if not annotations:
        template["metadata"].pop("annotations", None)
    assert template == before["spec"]["template"], "the template changed beyond the restart annotation"
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    # The new ReplicaSet (the deployment controller's) and its pods (the
    # replicaset controller's) are admitted: the rollout completes.
    r = predating("rollout", "status", "deployment/legacy", "--timeout=90s", timeout=120)
    assert r.ok, r
    assert webhook_failed_creates(predating.ns) == []


def test_a_predating_deployments_pods_are_recreated_when_deleted(predating):
    old = {p["metadata"]["uid"] for p in pods(predating.ns, "app=legacy")}
    r = predating("delete", "pods", "-l", "app=legacy", "--wait=false")
    assert r.ok, r
    poll("two new legacy pods scheduled", lambda: scheduled(predating.ns, "legacy", 2, exclude=old), timeout=60)
    assert webhook_failed_creates(predating.ns) == []


# ---------------------------------------------------------------- controllers' own writes


def compliant_cronjob(name="embed-batch"):
    container = server_container(image=COMPLIANT_IMAGE, name="batch")
    spec = {
        "restartPolicy": "Never",
        "nodeSelector": dict(GPU_NODE_SELECTOR),
        "tolerations": [dict(GPU_TOLERATION)],
        "containers": [container],
    }
    cronjob = workload("CronJob", name, spec)
    cronjob["spec"]["concurrencyPolicy"] = "Forbid"
    return cronjob


def test_a_compliant_cronjobs_jobs_and_their_pods_are_admitted(dev):
    cronjob = compliant_cronjob()
    r = dev.apply(cronjob)
    assert r.ok, r
    assert "Warning: [image-provenance]" not in r.out and "Warning: [gpu-placement]" not in r.out, r

    def jobs():
        items = kubectl_json("-n", dev.ns, "get", "jobs")["items"]
        return [j for j in items if any(o["kind"] == "CronJob" for o in j["metadata"].get("ownerReferences", []))]

    # The cronjob controller runs it at the next minute.
    job = poll("a Job made by the cronjob controller", jobs, timeout=100, interval=1)[0]
    name = job["metadata"]["name"]
    poll(f"a pod of Job {name}", lambda: pods(dev.ns, f"job-name={name}"), timeout=30)
    assert webhook_failed_creates(dev.ns) == []
