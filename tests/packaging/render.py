"""Prints the chart rendered by Helm's SDK with the values given as JSON, as
one JSON list of objects, for tests written in another language
(tests/observability.rs reads the PrometheusRule from it).

    python3 tests/packaging/render.py '{"prometheusRule": {"enabled": true}}'
"""

import json
import pathlib
import sys

import helm_python as helm
import yaml

CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "waf-admission"


def main() -> None:
    values = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    chart = helm.Chart.load(str(CHART))
    files = chart.render(values, name="waf-admission", namespace="waf-admission", is_install=True)
    docs = []
    for name, text in sorted(files.items()):
        if not name.endswith("NOTES.txt"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    json.dump(docs, sys.stdout)


if __name__ == "__main__":
    main()
