"""Image provenance on the real apiserver: the replicas watch the one Secret
the chart's provenance.secrets names, through a Role that grants just that
name; a policy's key Secret is read from there, never from the workload's
namespace, and a Secret not listed is reported, not read."""

import base64

from conftest import NS, DIR, apply, kubectl, load, only, poll

# A P-256 public key (cosign.pub): nothing is signed with it here; the
# registry below is unreachable, so the verdict shows what was read.
PEM = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZo2n56al0yz2J1/jeKuReQiX2CwX
cO9q10O3PWMdlxEEb97DcL/xSjrVuYZ1RB18lfDVh4fhWiQ8/CK3TSv5zA==
-----END PUBLIC KEY-----
"""
# Nothing listens there: any registry call fails fast.
UNREACHABLE = "127.0.0.1:9"


def test_the_service_account_reads_only_the_listed_secret():
    serve = ["--kubeconfig", str(DIR / "serve.kubeconfig")]
    for args, expect in [
        (["get", "secrets/release-keys", "-n", NS], "yes"),
        (["watch", "secrets/release-keys", "-n", NS], "yes"),
        (["get", "secrets/other", "-n", NS], "no"),
        (["list", "secrets", "-n", NS], "no"),
        (["get", "secrets/release-keys", "-n", "default"], "no"),
    ]:
        r = kubectl(*serve, "auth", "can-i", *args)
        assert r.out.strip() == expect, f"can-i {args}: {r}"


def policy(ns, secret):
    return {
        "apiVersion": "waf-admission.dev/v1alpha1",
        "kind": "WellArchitectedPolicy",
        # Per rule one policy's findings are shown: the strictest action,
        # then the first by name. "a-" sorts before "baseline", which is in
        # Deny by now and would report the registry as not allowed instead.
        "metadata": {"name": f"a-signed-{secret}"},
        "spec": {
            "match": {"workloads": "All", "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
            "action": "Deny",
            "rules": {"imageProvenance": {
                "allowedRegistries": [UNREACHABLE], "requireDigest": False,
                "signatures": {"keys": [{"name": "release", "secretRef": {"name": secret}}]}}},
        },
    }


def test_a_key_secret_is_read_from_the_controllers_namespace_only(ns):
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "release-keys", "namespace": NS},
              "data": {"cosign.pub": base64.b64encode(PEM.encode()).decode()}}
    assert apply(secret).ok
    # The same name in the workload's namespace is never what is read.
    decoy = {**secret, "metadata": {"name": "other", "namespace": ns}}
    assert apply(decoy).ok
    [deployment] = only(load("tests/fixtures/rules/image-provenance/pass-acr-pinned-by-digest.yaml", ns), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = f"{UNREACHABLE}/serving/vllm:v1"
    try:
        assert apply(policy(ns, "release-keys")).ok
        r = poll(
            "the listed key Secret is read and the registry asked",
            lambda: (lambda r: r if not r.ok and "cannot reach" in r.out else None)(apply(deployment, "--dry-run=server")),
            timeout=30,
        )
        said = " ".join(r.out.split())  # denials are wrapped at 100 columns
        assert "[image-provenance]" in said and f"cannot reach {UNREACHABLE}" in said, r
        kubectl("delete", "wap", "a-signed-release-keys")
        assert apply(policy(ns, "other")).ok
        r = poll(
            "a Secret not listed is reported as unreadable",
            lambda: (lambda r: r if not r.ok and "not readable" in r.out else None)(apply(deployment, "--dry-run=server")),
            timeout=30,
        )
        said = " ".join(r.out.split())
        assert 'the key Secret "other" is not readable by waf-admission' in said, r
    finally:
        kubectl("delete", "wap", "a-signed-release-keys", "a-signed-other", "--ignore-not-found")
        kubectl("-n", NS, "delete", "secret", "release-keys", "--ignore-not-found")
