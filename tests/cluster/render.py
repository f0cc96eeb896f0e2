"""The chart rendered with Helm's SDK (helm-python-sdk), as a platform team's
`helm install` would, and cut to what a control plane without pods needs.

    python3 tests/cluster/render.py base                  # Namespace, CRDs, ServiceAccount, RBAC
    python3 tests/cluster/render.py webhooks --url URL --ca-file CA
    python3 tests/cluster/render.py policy [--action Warn|Deny]

The webhook configurations keep everything the chart sets (failurePolicy,
matchConditions, namespaceSelector, timeouts) except the `service` reference,
replaced by a `url` to the replicas on loopback and the caBundle of the CA
up.sh made, as envtest does. The Deployment, Service, HPA, PDB and
NetworkPolicy need pods and kube-proxy; the suite still applies them with
--dry-run=server (see objects()).
"""

import argparse
import base64
import pathlib
import sys

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "waf-admission"
NAMESPACE = "waf-admission"
RELEASE = "waf-admission"


def crds():
    return [yaml.safe_load(p.read_text()) for p in sorted((CHART / "crds").glob("*.yaml"))]


def objects(values=None):
    """Every object of an install: the CRDs, then each rendered template."""
    chart = helm.Chart.load(str(CHART))
    files = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for name, text in sorted(files.items()):
        if name.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return crds() + docs


def namespace():
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}


BASE_KINDS = {"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
WEBHOOK_KINDS = {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}


# The cluster has no report API of its own: the chart installs the
# OpenReports CRDs on request, as a platform team without them would.
BASE_VALUES = {"reports": {"installCRDs": True}, "provenance": {"secrets": ["release-keys"]}}


def base(values=None):
    return [namespace()] + [o for o in objects({**BASE_VALUES, **(values or {})}) if o["kind"] in BASE_KINDS]


def webhooks(url, ca_pem, values=None):
    out = []
    for o in objects(values):
        if o["kind"] not in WEBHOOK_KINDS:
            continue
        # cert-manager's injection annotation has no cert-manager to act on here.
        o["metadata"].get("annotations", {}).pop("cert-manager.io/inject-ca-from", None)
        for hook in o["webhooks"]:
            path = hook["clientConfig"]["service"].get("path", "/")
            hook["clientConfig"] = {
                "url": url.rstrip("/") + path,
                "caBundle": base64.b64encode(ca_pem).decode(),
            }
        out.append(o)
    return out


def policy(action="Warn"):
    return [o for o in objects({"policy": {"action": action}}) if o["kind"] == "WellArchitectedPolicy"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["base", "webhooks", "policy", "all"])
    p.add_argument("--url")
    p.add_argument("--ca-file")
    p.add_argument("--action", default="Warn", choices=["Warn", "Deny", "Audit"])
    args = p.parse_args()
    if args.part == "base":
        docs = base()
    elif args.part == "webhooks":
        if not (args.url and args.ca_file):
            p.error("webhooks needs --url and --ca-file")
        docs = webhooks(args.url, pathlib.Path(args.ca_file).read_bytes())
    elif args.part == "policy":
        docs = policy(args.action)
    else:
        docs = [namespace()] + objects()
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
