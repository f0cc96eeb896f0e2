"""The chart rendered with Helm's SDK (helm-python-sdk), as a platform team's
`helm install` would, and cut to what a control plane without pods needs.

    python3 tests/cluster/render.py pull oci://HOST/charts/waf-admission@sha256:… DEST   # prints the .tgz
    python3 tests/cluster/render.py [OPTIONS] base        # Namespace, CRDs, ServiceAccount, RBAC
    python3 tests/cluster/render.py [OPTIONS] webhooks --url URL --ca-file CA
    python3 tests/cluster/render.py [OPTIONS] policy [--action Warn|Deny]
    python3 tests/cluster/render.py [OPTIONS] workload    # Deployment, Service, HPA, PDB, NetworkPolicy, TLS Secret

OPTIONS: --chart ARCHIVE (the chart pulled from the registry; default the
chart in this repo), --image-repository and --image-digest (the chart's
image.repository and image.digest, as `helm install --set` gives them).
up.sh installs the chart pulled by digest from the loopback registry
ci/publish.sh pushed it to, with the image pushed beside it.

The webhook configurations keep everything the chart sets (failurePolicy,
matchConditions, namespaceSelector, timeouts) except the `service` reference,
replaced by a `url` to the replicas on loopback and the caBundle of the CA
up.sh made, as envtest does. The Deployment, Service, HPA, PDB and
NetworkPolicy (`workload`) are applied as they are: their pods run on kwok's
fake nodes and serve nothing (no kubelet); the replicas that answer the
webhooks are host processes (replica.sh).
"""

import argparse
import base64
import pathlib
import sys

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The chart rendered: this repo's, unless main() is given --chart.
CHART = ROOT / "charts" / "waf-admission"
# Values every part is rendered with (main() adds the image's).
VALUES = {}
NAMESPACE = "waf-admission"
RELEASE = "waf-admission"


def merged(base, extra):
    out = dict(base)
    for k, v in extra.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def objects(values=None):
    """Every object of an install: the CRDs, then each rendered template."""
    chart = helm.Chart.load(str(CHART))
    crds = [yaml.safe_load(c["data"]) for c in sorted(chart.crds, key=lambda c: c["name"])]
    files = chart.render(merged(VALUES, values or {}), name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for name, text in sorted(files.items()):
        if name.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return crds + docs


def namespace():
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}


BASE_KINDS = {"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
WEBHOOK_KINDS = {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
WORKLOAD_KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Secret", "ConfigMap"}


# The cluster has no report API of its own: the chart installs the
# OpenReports CRDs on request, as a platform team without them would.
BASE_VALUES = {"reports": {"installCRDs": True}, "provenance": {"secrets": ["release-keys"]},
               "prices": {"configMap": "waf-gpu-prices"}}


def base(values=None):
    return [namespace()] + [o for o in objects(merged(BASE_VALUES, values or {})) if o["kind"] in BASE_KINDS]


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


def workload():
    return [o for o in objects(BASE_VALUES) if o["kind"] in WORKLOAD_KINDS]


def pull(ref, dest):
    """`helm pull oci://…@sha256:…` into DEST; the archive's path. Plain HTTP
    for a registry on loopback, as the suite's is."""
    host = ref.removeprefix("oci://").split("/")[0]
    plain_http = host.startswith(("127.0.0.1:", "localhost:"))
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    helm.pull(ref, client=helm.RegistryClient(plain_http=plain_http), destination=str(dest), plain_http=plain_http)
    new = sorted(set(dest.iterdir()) - before)
    if len(new) != 1:
        sys.exit(f"helm pull {ref}: expected one archive in {dest}, found {new}")
    return new[0]


def main():
    global CHART
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["pull", "base", "webhooks", "policy", "workload", "all"])
    p.add_argument("args", nargs="*", help="pull: REF DEST")
    p.add_argument("--chart", help="a chart archive or folder (default: charts/waf-admission)")
    p.add_argument("--image-repository")
    p.add_argument("--image-digest")
    p.add_argument("--url")
    p.add_argument("--ca-file")
    p.add_argument("--action", default="Warn", choices=["Warn", "Deny", "Audit"])
    args = p.parse_args()
    if args.part == "pull":
        if len(args.args) != 2:
            p.error("pull needs REF DEST")
        print(pull(*args.args))
        return
    if args.chart:
        CHART = pathlib.Path(args.chart)
    image = {k: v for k, v in (("repository", args.image_repository), ("digest", args.image_digest)) if v}
    if image:
        VALUES["image"] = image
    if args.part == "base":
        docs = base()
    elif args.part == "webhooks":
        if not (args.url and args.ca_file):
            p.error("webhooks needs --url and --ca-file")
        docs = webhooks(args.url, pathlib.Path(args.ca_file).read_bytes())
    elif args.part == "policy":
        docs = policy(args.action)
    elif args.part == "workload":
        docs = workload()
    else:
        docs = [namespace()] + objects()
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
