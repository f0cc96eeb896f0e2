#!/usr/bin/env python3
"""Renders the chart's Grafana dashboard from real metrics and takes a PNG:
docs/dashboard.png.

Grafana is not packaged by Debian, so this draws the panels itself, with the
dashboard's own queries (charts/waf-admission/files/dashboard.json) run by a
real Prometheus against real webhooks:

1. two `waf-admission serve --baseline` replicas on loopback, with a serving
   certificate that expires in 90 days, as cert-manager issues (openssl);
2. Prometheus (Debian's `prometheus`) scraping both every second, with the
   target labels a ServiceMonitor would give (namespace, instance);
3. a few minutes of AdmissionReviews from the repository's examples in
   several namespaces: allowed, denied, patched, malformed;
4. every panel's query sent to Prometheus's HTTP API, Grafana's variables
   replaced ($namespace, $__rate_interval, $__range), drawn as SVG;
5. `chromium --headless --screenshot`.

Standalone replicas run no background audit (that is the Lease holder's, in
the cluster), so the audit panels show "No data", as they would there
before the first run.

    apt-get install -y prometheus chromium openssl
    cargo build
    python3 tools/dashboard-screenshot.py [--seconds 150] [--out docs/dashboard.png]

Every process it starts is on 127.0.0.1 and is stopped before it exits.
"""

import argparse
import copy
import html
import json
import pathlib
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import http.client

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "waf-admission" / "files" / "dashboard.json"
NAMESPACE = "waf-admission"
REPLICAS = ["waf-admission-7c9d4-kx2lp", "waf-admission-7c9d4-q8mzt"]
PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#FADE2A",
           "#96D98D", "#FFB357", "#CA95E5", "#FF7383"]
COLORS = {"green": "#73BF69", "red": "#F2495C", "orange": "#FF9830", "yellow": "#FADE2A"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"{tool} is needed: apt-get install -y prometheus chromium openssl")
    return path


# --- the webhooks -----------------------------------------------------------

def certificate(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    cert, key = tmp / "tls.crt", tmp / "tls.key"
    subprocess.run([need("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "90", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class Webhook:
    def __init__(self, binary: pathlib.Path, cert: pathlib.Path, key: pathlib.Path):
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--baseline", "--log-format", "json", "--addr", "127.0.0.1:0",
             "--metrics-addr", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        self.addr = self.metrics = None
        while self.addr is None or self.metrics is None:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("waf-admission exited before listening")
            entry = json.loads(line)
            message = entry.get("fields", entry).get("message", "")
            addr = entry.get("fields", entry).get("addr")
            if message == "webhook listening":
                self.addr = addr
            elif message == "metrics listening":
                self.metrics = addr
        # Keep reading the decision log so the pipe never fills.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def review(obj: dict, operation: str = "CREATE") -> dict:
    kind = obj["kind"]
    group, resource = {"Pod": ("", "pods"), "StatefulSet": ("apps", "statefulsets")}.get(kind, ("apps", "deployments"))
    gvk = {"group": group, "version": "v1", "kind": kind}
    gvr = {"group": group, "version": "v1", "resource": resource}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"{random.getrandbits(64):016x}", "kind": gvk, "resource": gvr, "requestKind": gvk,
        "requestResource": gvr, "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
        "operation": operation, "userInfo": {"username": "ci", "groups": ["system:authenticated"]},
        "object": obj, "oldObject": None, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}


def workloads() -> dict[str, dict]:
    out = {}
    for path in sorted((ROOT / "examples").glob("*/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in ("Deployment", "StatefulSet"):
                out[f"{path.parent.name}/{path.stem}"] = doc
                break
    return out


def traffic(hooks: list[Webhook], ca: pathlib.Path, seconds: float, stop: threading.Event):
    """Phases of different load and mix, so the panels have a shape."""
    context = ssl.create_default_context(cafile=str(ca))
    conns = [http.client.HTTPSConnection("localhost", int(h.addr.rsplit(":", 1)[1]), context=context)
             for h in hooks]
    examples = workloads()
    good = [v for k, v in examples.items() if k.startswith("good/")]
    bad = [v for k, v in examples.items() if k.startswith("bad/")]
    teams = {"ml-serving": 5, "research": 3, "team-search": 2, "batch": 1}
    start = time.monotonic()
    while not stop.is_set() and time.monotonic() - start < seconds:
        t = (time.monotonic() - start) / seconds
        rate = 12 if t < 0.3 else 40 if t < 0.6 else 20
        bad_share = 0.2 if t < 0.3 else 0.5 if t < 0.6 else 0.3
        ns = random.choices(list(teams), weights=list(teams.values()))[0]
        obj = copy.deepcopy(random.choice(bad if random.random() < bad_share else good))
        obj["metadata"]["namespace"] = ns
        obj["metadata"]["name"] = f"{obj['metadata']['name']}-{random.randrange(1000)}"
        conn = random.choice(conns)
        roll = random.random()
        if roll < 0.03:
            path, body = "/validate", b"{not json"
        else:
            path, body = ("/mutate" if roll < 0.45 else "/validate"), json.dumps(review(obj)).encode()
        conn.request("POST", f"{path}?timeout=5s", body, {"Content-Type": "application/json"})
        conn.getresponse().read()
        time.sleep(random.expovariate(rate))
    for c in conns:
        c.close()


# --- Prometheus --------------------------------------------------------------

class Prometheus:
    def __init__(self, tmp: pathlib.Path, hooks: list[Webhook]):
        self.port = free_port()
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [{
                      "job_name": "waf-admission",
                      "static_configs": [{"targets": [h.metrics], "labels": {"namespace": NAMESPACE, "instance": name}}
                                         for h, name in zip(hooks, REPLICAS)]}]}
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc = subprocess.Popen(
            [need("prometheus"), f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise SystemExit("Prometheus did not become ready")

    def api(self, path: str, **params) -> list:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as r:
            answer = json.load(r)
        if answer["status"] != "success":
            raise SystemExit(f"query failed: {params}: {answer}")
        return answer["data"]["result"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


# --- drawing -----------------------------------------------------------------

def fmt(value: float, unit: str, decimals: int | None = None) -> str:
    if value != value:  # NaN
        return "NaN"
    if decimals is not None and unit == "none":
        return f"{value:.{decimals}f}"
    if unit == "s":
        a = abs(value)
        return f"{value * 1e6:.0f} µs" if a < 1e-3 else f"{value * 1e3:.2f} ms" if a < 1 else f"{value:.2f} s"
    if unit == "reqps":
        return f"{value:.1f} req/s" if value >= 1 or value == 0 else f"{value:.2f} req/s"
    if unit == "dtdurations":
        s = int(value)
        d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
        return f"{d} days {h} h" if d else f"{h} h {m} min" if h else f"{m} min {s % 60} s"
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:.2f}"


def legend(fmt_string: str, metric: dict) -> str:
    out = fmt_string
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    while "{{" in out:
        a = out.index("{{")
        out = out[:a] + out[out.index("}}", a) + 2:]
    return out.strip() or "value"


def threshold_color(panel: dict, value: float) -> str:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    color = "green"
    for s in steps:
        if s["value"] is None or value >= s["value"]:
            color = s["color"]
    return COLORS.get(color, color)


def timeseries_svg(series: list, unit: str, start: float, end: float, w: int, h: int) -> str:
    left, right, top, bottom = 74, 8, 8, 22
    pw, ph = w - left - right, h - top - bottom
    values = [v for s in series for _, v in s["points"] if v == v]
    vmax = max(values, default=1) or 1
    vmax *= 1.1
    x = lambda t: left + (t - start) / (end - start) * pw
    y = lambda v: top + ph - v / vmax * ph
    parts = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        v = vmax * i / 4
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#2c3235"/>')
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" class="axis">{html.escape(fmt(v, unit))}</text>')
    for i in range(5):
        t = start + (end - start) * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{x(t):.1f}" y="{h - 5}" text-anchor="{anchor}" class="axis">'
                     f'{time.strftime("%H:%M:%S", time.gmtime(t))}</text>')
    for s in series:
        pts = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s["points"] if v == v)
        if pts:
            parts.append(f'<polyline fill="none" stroke="{s["color"]}" stroke-width="1.5" points="{pts}"/>')
    parts.append("</svg>")
    return "".join(parts)


def panel_html(panel: dict, prom: Prometheus, start: float, end: float, grid: int) -> str:
    w, h = panel["gridPos"]["w"] * grid - 8, panel["gridPos"]["h"] * 38 - 8
    unit = panel["fieldConfig"]["defaults"].get("unit", "none")
    decimals = panel["fieldConfig"]["defaults"].get("decimals")
    kind = panel["type"]
    span = int(end - start)

    def query(expr: str) -> str:
        return (expr.replace("$namespace", NAMESPACE).replace("$__rate_interval", "20s")
                .replace("$__range", f"{span}s"))

    body = ""
    if kind in ("timeseries", "state-timeline"):
        series = []
        for t in panel["targets"]:
            for r in prom.api("query_range", query=query(t["expr"]), start=start, end=end, step=2):
                series.append({"name": legend(t["legendFormat"], r["metric"]),
                               "points": [(float(a), float(b)) for a, b in r["values"]]})
        series.sort(key=lambda s: s["name"])
        for i, s in enumerate(series):
            s["color"] = PALETTE[i % len(PALETTE)]
        if kind == "timeseries":
            legend_rows = "".join(
                f'<div class="lg"><span class="sw" style="background:{s["color"]}"></span>{html.escape(s["name"])}'
                f'<span class="lv">{html.escape(fmt(s["points"][-1][1], unit))}</span></div>'
                for s in series if s["points"])
            chart_h = h - 30 - 17 * ((len(series) + 1) // 2)
            body = timeseries_svg(series, unit, start, end, w - 16, max(chart_h, 90)) + f'<div class="lgs">{legend_rows}</div>'
        else:
            mappings = panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
            rows = []
            for s in series:
                cells = []
                for (t0, v), (t1, _) in zip(s["points"], s["points"][1:] + [(end, 0)]):
                    m = mappings.get(str(int(v)), {})
                    color = COLORS.get(m.get("color"), "#555")
                    cells.append(f'<div style="flex:{t1 - t0};background:{color}"></div>')
                label = mappings.get(str(int(s["points"][-1][1])), {}).get("text", "")
                rows.append(f'<div class="strow"><div class="stname">{html.escape(s["name"])}</div>'
                            f'<div class="stbar">{"".join(cells)}<span>{html.escape(label)}</span></div></div>')
            body = "".join(rows) or '<div class="nodata">No data</div>'
        if not series:
            body = '<div class="nodata">No data</div>'
    elif kind == "stat":
        r = prom.api("query", query=query(panel["targets"][0]["expr"]), time=end)
        if r:
            v = float(r[0]["value"][1])
            body = (f'<div class="stat" style="background:{threshold_color(panel, v)}">'
                    f'{html.escape(fmt(v, unit, decimals))}</div>')
        else:
            body = '<div class="stat nodatastat">No data</div>'
    elif kind == "bargauge":
        t = panel["targets"][0]
        r = prom.api("query", query=query(t["expr"]), time=end)
        rows = sorted(((legend(t["legendFormat"], x["metric"]), float(x["value"][1])) for x in r),
                      key=lambda kv: -kv[1])
        top = max((v for _, v in rows), default=1) or 1
        bars = "".join(
            f'<div class="bar"><div class="bn">{html.escape(n)}</div><div class="bt">'
            f'<div class="bf" style="width:{v / top * 100:.1f}%"></div></div><div class="bv">{fmt(v, unit, decimals)}</div></div>'
            for n, v in rows)
        body = bars or ('<div class="nodata">No data<br><small>the background audit runs on the Lease holder '
                        'in the cluster; standalone replicas have none</small></div>')
    return (f'<div class="panel" style="grid-column:{panel["gridPos"]["x"] + 1} / span {panel["gridPos"]["w"]};'
            f'grid-row:{panel["gridPos"]["y"] + 1} / span {panel["gridPos"]["h"]}">'
            f'<div class="title">{html.escape(panel["title"])}</div><div class="body">{body}</div></div>')


CSS = """
body{margin:0;background:#111217;color:#ccccdc;font:13px 'DejaVu Sans',sans-serif}
.top{display:flex;gap:18px;align-items:center;padding:10px 16px;border-bottom:1px solid #2c3235}
.top h1{font-size:17px;margin:0;color:#fff;font-weight:500}.var{background:#181b1f;border:1px solid #2c3235;padding:3px 8px;border-radius:2px}
.grid{display:grid;grid-template-columns:repeat(24,1fr);grid-auto-rows:30px;gap:8px;padding:8px}
.panel{background:#181b1f;border:1px solid #2c3235;border-radius:2px;display:flex;flex-direction:column;overflow:hidden}
.title{padding:6px 8px;font-weight:500;color:#fff;font-size:13px}.body{flex:1;padding:0 8px 6px;position:relative}
.axis{fill:#8e8e9e;font-size:10px}
.lgs{display:grid;grid-template-columns:1fr 1fr;column-gap:10px}.lg{font-size:11px;display:flex;align-items:center;gap:5px;height:17px;white-space:nowrap;overflow:hidden}
.sw{width:12px;height:3px;display:inline-block}.lv{margin-left:auto;color:#8e8e9e}
.stat{height:100%;display:flex;align-items:center;justify-content:center;font-size:28px;font-weight:500;color:#111;border-radius:2px}
.nodatastat{background:#22252b;color:#8e8e9e;font-size:18px}
.nodata{color:#8e8e9e;text-align:center;padding-top:60px;font-size:15px}.nodata small{font-size:11px}
.bar{display:flex;align-items:center;gap:8px;margin:7px 0}.bn{width:110px;text-align:right;font-size:12px}
.bt{flex:1;background:#22252b;height:20px}.bf{height:100%;background:linear-gradient(90deg,#FADE2A,#FF9830,#F2495C)}
.bv{width:40px;font-size:13px;color:#fff}
.strow{display:flex;align-items:center;gap:8px;margin:12px 0}.stname{width:170px;font-size:11px;text-align:right}
.stbar{flex:1;display:flex;height:28px;position:relative}.stbar span{position:absolute;left:8px;top:6px;color:#111;font-weight:500}
"""


def page(prom: Prometheus, start: float, end: float) -> str:
    dashboard = json.loads(DASHBOARD.read_text())
    grid = 1600 // 24
    panels = "".join(panel_html(p, prom, start, end, grid) for p in dashboard["panels"])
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(start))
    return (f'<!doctype html><html><head><meta charset="utf-8"><style>{CSS}</style></head><body>'
            f'<div class="top"><h1>{html.escape(dashboard["title"])}</h1>'
            f'<span class="var">Data source: Prometheus</span><span class="var">Namespace: {NAMESPACE}</span>'
            f'<span style="margin-left:auto;color:#8e8e9e">{when} UTC, last {int(end - start)} s · two standalone '
            f'replicas, queries from charts/waf-admission/files/dashboard.json</span></div>'
            f'<div class="grid">{panels}</div></body></html>')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=150, help="how long to send reviews")
    ap.add_argument("--binary", type=pathlib.Path, default=ROOT / "target" / "debug" / "waf-admission")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "dashboard.png")
    ap.add_argument("--html", type=pathlib.Path, help="also keep the page here")
    args = ap.parse_args()
    if not args.binary.exists():
        sys.exit(f"{args.binary} missing: cargo build")
    chromium = need("chromium")
    with tempfile.TemporaryDirectory(prefix="waf-dashboard-") as d:
        tmp = pathlib.Path(d)
        cert, key = certificate(tmp)
        hooks, prom = [], None
        try:
            hooks = [Webhook(args.binary, cert, key) for _ in REPLICAS]
            prom = Prometheus(tmp, hooks)
            time.sleep(3)
            start = time.time()
            stop = threading.Event()
            traffic(hooks, cert, args.seconds, stop)
            time.sleep(3)
            end = time.time()
            html_path = tmp / "dashboard.html"
            html_path.write_text(page(prom, start, end))
            if args.html:
                shutil.copy(html_path, args.html)
        finally:
            if prom:
                prom.stop()
            for h in hooks:
                h.stop()
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--force-device-scale-factor=1", "--window-size=1600,1150",
                        f"--screenshot={args.out}", html_path.as_uri()],
                       check=True, capture_output=True, timeout=120)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
