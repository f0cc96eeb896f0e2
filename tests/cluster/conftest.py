"""What the suite needs from the cluster up.sh made: kubectl with its
KUBECONFIG, the replicas' control (replica.sh), and bounded polls instead of
sleeps. Run by run.sh; against a cluster already up:

    WAF_CLUSTER_DIR=/tmp/waf-admission-cluster python3 -m pytest tests/cluster
"""

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import time
import uuid

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DIR = pathlib.Path(os.environ.get("WAF_CLUSTER_DIR", "/tmp/waf-admission-cluster"))
NS = "waf-admission"
LEASE = "waf-admission-controller"
MEASUREMENTS = []  # (what, value) printed in pytest's terminal summary


def _env():
    env_file = DIR / "env"
    if not env_file.exists():
        pytest.exit(f"no cluster at {DIR}: run tests/cluster/up.sh first (or tests/cluster/run.sh)", returncode=1)
    values = {}
    for line in env_file.read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value.strip('"')
    return values


ENV = _env() if (DIR / "env").exists() else {}
if ENV:
    os.environ["KUBECONFIG"] = ENV["KUBECONFIG"]
    os.environ["PATH"] = f"{DIR / 'bin'}{os.pathsep}{os.environ['PATH']}"


def pytest_sessionstart(session):
    _env()
    for tool in ("kubectl", "curl"):
        if shutil.which(tool) is None:
            pytest.exit(f"tests/cluster needs {tool}", returncode=1)


def pytest_terminal_summary(terminalreporter):
    if MEASUREMENTS:
        terminalreporter.section("measured")
        for what, value in MEASUREMENTS:
            terminalreporter.write_line(f"{what}: {value}")


def measure(what, value):
    MEASUREMENTS.append((what, value))
    print(f"{what}: {value}")


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.out = proc.stdout + proc.stderr

    @property
    def ok(self):
        return self.rc == 0

    def __repr__(self):
        return f"rc={self.rc}\n{self.out}"


def kubectl(*args, input=None, timeout=60):
    """kubectl ARGS: its status and everything it printed (stdout then stderr)."""
    if isinstance(input, (dict, list)):
        input = yaml.safe_dump_all(input if isinstance(input, list) else [input], sort_keys=False)
    proc = subprocess.run(
        ["kubectl", *args], input=input, capture_output=True, text=True, timeout=timeout
    )
    return Result(proc)


def kubectl_json(*args):
    r = kubectl(*args, "-o", "json")
    assert r.ok, r
    return json.loads(r.stdout)


def poll(what, check, timeout=30, interval=0.2):
    """Calls check() until it returns something truthy; fails naming what after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not so after {timeout}s (last: {last!r})", pytrace=False)
        time.sleep(interval)


def load(path, namespace=None, name=None, mutate=None):
    """The documents of a manifest, moved to namespace (and renamed) when asked."""
    path = pathlib.Path(path)
    if not path.is_absolute():
        path = ROOT / path
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for d in docs:
        meta = d.setdefault("metadata", {})
        if namespace and "namespace" in meta:
            meta["namespace"] = namespace
        if name:
            if meta.get("name") and d["kind"] != "Service":
                meta["name"] = name
            ref = d.get("spec", {}).get("scaleTargetRef")
            if ref:
                ref["name"] = name
        if mutate:
            mutate(d)
    return docs


def only(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def apply(docs, *flags, namespace=None):
    args = ["apply", "-f", "-", *flags]
    if namespace:
        args += ["-n", namespace]
    return kubectl(*args, input=docs)


def replica(action, n):
    proc = subprocess.run(
        ["bash", str(HERE / "replica.sh"), action, str(n)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "WAF_CLUSTER_DIR": str(DIR)},
    )
    assert proc.returncode == 0, f"replica.sh {action} {n}: {proc.stdout}{proc.stderr}"
    return proc.stdout.strip()


def replicas_up():
    for n in (0, 1):
        pid_file = DIR / "pids" / f"serve-{n}"
        if not pid_file.exists():
            replica("start", n)


def lease_holder():
    r = kubectl("-n", NS, "get", "lease", LEASE, "-o", "jsonpath={.spec.holderIdentity}")
    return r.out.strip() if r.ok else ""


@pytest.fixture
def ns():
    """A namespace of its own for the test, deleted (and waited for) after."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    r = kubectl("create", "namespace", name)
    assert r.ok, r
    poll(f"ServiceAccount default in {name}", lambda: kubectl("-n", name, "get", "sa", "default").ok)
    yield name
    kubectl("delete", "namespace", name, "--timeout=90s", timeout=120)


# A probe the policy judges: an image from Docker Hub on :latest, which the
# baseline's image-provenance rule denies under Deny and warns about under Warn.
PROBE = "examples/bad/image-provenance.yaml"


def probe(namespace):
    return apply(only(load(PROBE, namespace), "Deployment"), "--dry-run=server")


def set_policy(patch, in_force, namespace="default", timeout=30):
    """Merge-patches the baseline policy, then polls until in_force(probe result)
    holds; returns the seconds from the patch to the first request judged by it."""
    r = kubectl("patch", "wap", "baseline", "--type", "merge", "-p", json.dumps(patch))
    assert r.ok, r
    start = time.monotonic()
    poll(f"policy patch {patch} in force", lambda: in_force(probe(namespace)), timeout=timeout, interval=0.05)
    return time.monotonic() - start


def denied(r):
    return (not r.ok) and "denied the request" in r.out


def warned(r):
    return r.ok and "Warning: [image-provenance]" in r.out


def baseline_action():
    r = kubectl("get", "wap", "baseline", "-o", "jsonpath={.spec.action}")
    assert r.ok, r
    return r.out.strip()


@contextlib.contextmanager
def baseline_in(action):
    """The baseline in `action` (Warn or Deny) for the duration, back to the
    action it had after (Deny, where the session's `deny` has set it)."""
    in_force = {"Warn": warned, "Deny": denied}
    before = baseline_action()
    assert before in in_force, f"baseline in {before!r}: baseline_in knows Warn and Deny"
    set_policy({"spec": {"action": action}}, in_force[action])
    try:
        yield
    finally:
        set_policy({"spec": {"action": before}}, in_force[before])


def baseline_for_module(action):
    """A module fixture, used by the whole file it is assigned in:

        baseline = baseline_for_module("Warn")

    puts the baseline in `action` before the file's first test and back after
    its last. The suite's earlier files leave it in Deny; a file that judges
    one rule under a policy of its own wants the rest to warn (Warn), and one
    that shows `kubectl apply` refused wants the baseline to deny (Deny)."""

    @pytest.fixture(autouse=True, scope="module")
    def baseline():
        with baseline_in(action):
            yield

    return baseline


@pytest.fixture(scope="session")
def deny():
    """The baseline in Deny, as the kind suite installs it (policy.action=Deny).
    test_install.py checks up.sh's default (Warn) before anything asks for this;
    the cluster is left in Warn again afterwards, as up.sh made it."""
    took = set_policy({"spec": {"action": "Deny"}}, denied)
    measure("policy propagation, baseline Warn -> Deny (patch to first denial)", f"{took:.2f}s")
    yield
    set_policy({"spec": {"action": "Warn"}}, warned)


# ---------------------------------------------------------------- the developer

DEVELOPER = "dev@example.com"


class Developer:
    """kubectl as dev@example.com in one namespace: everything the developer does."""

    def __init__(self, ns):
        self.ns = ns

    def __call__(self, *args, input=None, timeout=60):
        return kubectl("--as", DEVELOPER, "-n", self.ns, *args, input=input, timeout=timeout)

    def apply(self, docs, *flags):
        return self("apply", "-f", "-", *flags, input=docs)

    def json(self, *args):
        r = self(*args, "-o", "json")
        assert r.ok, r
        return json.loads(r.stdout)

    def can_i(self, verb, resource):
        return self("auth", "can-i", verb, resource).stdout.strip()


@pytest.fixture
def dev(ns):
    """The namespace, created by an admin, with `edit` bound to the developer."""
    r = kubectl("-n", ns, "create", "rolebinding", "developer-edit", "--clusterrole=edit", f"--user={DEVELOPER}")
    assert r.ok, r
    d = Developer(ns)
    poll("the developer's RoleBinding in force", lambda: d.can_i("create", "deployments.apps") == "yes", timeout=30)
    # edit and nothing more: the developer can neither switch the webhook
    # off nor change the policy, nor grant themselves more.
    assert d.can_i("patch", "validatingwebhookconfigurations.admissionregistration.k8s.io") == "no"
    assert d.can_i("patch", "wellarchitectedpolicies.waf-admission.dev") == "no"
    assert d.can_i("create", "rolebindings.rbac.authorization.k8s.io") == "no"
    return d
