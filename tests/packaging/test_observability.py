"""The chart's Grafana dashboard and PrometheusRule: off by default, shaped
for Grafana's sidecar and prometheus-operator, and the alert rules checked
and run by promtool (Debian's `prometheus` package ships it). That every
query names a metric the webhook exports is tests/observability.rs."""

import json
import pathlib
import shutil
import subprocess

import helm_python as helm
import pytest
import yaml

from test_chart import CHART, render

ON = {"grafanaDashboard": {"enabled": True}, "prometheusRule": {"enabled": True}}


def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is required to check the alert rules: apt-get install prometheus (Debian ships promtool in it)")
    return path


def rule_groups(values=None):
    docs = render({**ON, **(values or {})})
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert len(rules) == 1
    return rules[0]["spec"]


def test_dashboard_and_alerts_are_off_by_default():
    kinds = {d["kind"] for d in render()}
    assert "PrometheusRule" not in kinds
    assert "ConfigMap" not in kinds


def test_unknown_keys_under_the_new_values_fail_the_render():
    with pytest.raises(helm.HelmError):
        render({"grafanaDashboard": {"enable": True}})
    with pytest.raises(helm.HelmError):
        render({"prometheusRule": {"enabled": True, "severity": "page"}})


def test_the_dashboard_configmap_carries_the_file_and_the_sidecar_label():
    docs = render(ON)
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "waf-admission"
    (key, text), = cm["data"].items()
    assert key.endswith(".json")
    shipped = json.loads((CHART / "files" / "dashboard.json").read_text())
    assert json.loads(text) == shipped
    # Provisioned by the sidecar, so no import-time inputs: the data source
    # is a dashboard variable.
    assert "__inputs" not in shipped
    assert {v["name"] for v in shipped["templating"]["list"]} >= {"datasource", "namespace"}


def test_the_dashboard_can_go_where_grafana_looks_with_its_labels():
    docs = render({"grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                                        "labels": {"grafana_dashboard": "waf"},
                                        "annotations": {"grafana_folder": "Platform"}}})
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "waf"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Platform"}


def test_the_rule_carries_the_labels_a_ruleselector_asks_for():
    docs = render({"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}})
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["namespace"] == "waf-admission"


def test_the_servicemonitor_keeps_the_webhook_endpoint_label():
    docs = render({"serviceMonitor": {"enabled": True}})
    sm = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True


@pytest.mark.parametrize("values", [
    {},
    {"webhook": {"timeoutSeconds": 10, "failurePolicy": "Ignore"}},
    {"auditInterval": "30s"},
    {"auditInterval": "1500ms"},
], ids=["defaults", "timeout-10s-ignore", "audit-30s", "audit-1500ms"])
def test_the_alert_rules_pass_promtool(values, tmp_path):
    tool = promtool()
    path = tmp_path / "rules.yaml"
    spec = rule_groups(values)
    path.write_text(yaml.safe_dump(spec))
    result = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in spec["groups"] for r in g["rules"]}
    assert alerts == {"WafAdmissionLatencyNearTimeout", "WafAdmissionErrors", "WafAdmissionNoReadyReplica",
                      "WafAdmissionCertificateExpiring", "WafAdmissionAuditNotRunning"}


def test_the_thresholds_follow_the_values():
    rules = {r["alert"]: r for r in rule_groups({"webhook": {"timeoutSeconds": 10}, "auditInterval": "30s"})["groups"][0]["rules"]}
    assert rules["WafAdmissionLatencyNearTimeout"]["expr"].split()[-1] == "8"
    audit = rules["WafAdmissionAuditNotRunning"]["expr"]
    assert "[120s]" in audit and audit.split()[-1] == "30"


# promtool's unit tests: series as a replica would export them, and when
# each alert must (and must not) fire. Time starts at 0 (the epoch). The
# annotations are left out here: `promtool check rules` above parses their
# templates, and their text is not what this checks.
ALERT_TESTS = """
evaluation_interval: 1m
tests:
- name: replicas scraped, none ready
  interval: 1m
  input_series:
  - {series: 'waf_admission_ready{namespace="waf-admission", instance="a"}', values: '1x10 0x30'}
  - {series: 'waf_admission_ready{namespace="waf-admission", instance="b"}', values: '1x5 0x35'}
  alert_rule_test:
  - {eval_time: 9m, alertname: WafAdmissionNoReadyReplica, exp_alerts: []}
  - {eval_time: 14m, alertname: WafAdmissionNoReadyReplica, exp_alerts: []}
  - {eval_time: 17m, alertname: WafAdmissionNoReadyReplica, exp_alerts: [{exp_labels: {severity: critical}}]}

- name: no replica scraped at all
  interval: 1m
  input_series:
  - {series: 'waf_admission_ready{namespace="other", instance="c"}', values: '1x40'}
  alert_rule_test:
  - {eval_time: 3m, alertname: WafAdmissionNoReadyReplica, exp_alerts: []}
  - eval_time: 10m
    alertname: WafAdmissionNoReadyReplica
    exp_alerts: [{exp_labels: {severity: critical, namespace: waf-admission}}]

- name: certificate within 7 days of notAfter
  interval: 1m
  input_series:
  # notAfter 7 days and 1 hour after the start
  - {series: 'waf_admission_tls_certificate_expiry_timestamp_seconds{namespace="waf-admission", instance="a"}', values: '608400x180'}
  # no certificate read (0) is not "expired"
  - {series: 'waf_admission_tls_certificate_expiry_timestamp_seconds{namespace="waf-admission", instance="b"}', values: '0x180'}
  alert_rule_test:
  - {eval_time: 65m, alertname: WafAdmissionCertificateExpiring, exp_alerts: []}
  - eval_time: 80m
    alertname: WafAdmissionCertificateExpiring
    exp_alerts: [{exp_labels: {severity: warning, namespace: waf-admission, instance: a}}]

- name: audit never ran on replicas up for three intervals
  interval: 1m
  input_series:
  - {series: 'waf_admission_start_time_seconds{namespace="waf-admission", instance="a"}', values: '0x30'}
  - {series: 'waf_admission_audit_last_run_timestamp_seconds{namespace="waf-admission", instance="a"}', values: '0x30'}
  alert_rule_test:
  - {eval_time: 14m, alertname: WafAdmissionAuditNotRunning, exp_alerts: []}
  - {eval_time: 16m, alertname: WafAdmissionAuditNotRunning, exp_alerts: [{exp_labels: {severity: warning}}]}

- name: audit every interval, and across a change of Lease holder
  interval: 1m
  input_series:
  - {series: 'waf_admission_start_time_seconds{namespace="waf-admission", instance="a"}', values: '0x10 _x50'}
  - {series: 'waf_admission_start_time_seconds{namespace="waf-admission", instance="b"}', values: '0x60'}
  # a runs at 1m and 6m, then its pod is gone; b takes the Lease and runs at 14m, then every 5m
  - {series: 'waf_admission_audit_last_run_timestamp_seconds{namespace="waf-admission", instance="a"}', values: '0 60x4 360x5 _x50'}
  - {series: 'waf_admission_audit_last_run_timestamp_seconds{namespace="waf-admission", instance="b"}', values: '0x13 840x4 1140x4 1440x4 1740x4 2040x4 2340x4 2640x4 2940x4 3240x13'}
  alert_rule_test:
  - {eval_time: 12m, alertname: WafAdmissionAuditNotRunning, exp_alerts: []}
  - {eval_time: 40m, alertname: WafAdmissionAuditNotRunning, exp_alerts: []}
  - {eval_time: 58m, alertname: WafAdmissionAuditNotRunning, exp_alerts: []}

- name: audit stopped after running
  interval: 1m
  input_series:
  - {series: 'waf_admission_start_time_seconds{namespace="waf-admission", instance="a"}', values: '0x40'}
  - {series: 'waf_admission_audit_last_run_timestamp_seconds{namespace="waf-admission", instance="a"}', values: '0 60x39'}
  alert_rule_test:
  - {eval_time: 15m, alertname: WafAdmissionAuditNotRunning, exp_alerts: []}
  - {eval_time: 17m, alertname: WafAdmissionAuditNotRunning, exp_alerts: [{exp_labels: {severity: warning}}]}

- name: p99 near the 5 s timeout
  interval: 1m
  input_series:
  # every request takes between 2.5 and 5 s
  - {series: 'waf_admission_request_duration_seconds_bucket{namespace="waf-admission", endpoint="validate", le="2.5"}', values: '0x40'}
  - {series: 'waf_admission_request_duration_seconds_bucket{namespace="waf-admission", endpoint="validate", le="5.0"}', values: '0+10x40'}
  - {series: 'waf_admission_request_duration_seconds_bucket{namespace="waf-admission", endpoint="validate", le="+Inf"}', values: '0+10x40'}
  # fast
  - {series: 'waf_admission_request_duration_seconds_bucket{namespace="waf-admission", endpoint="mutate", le="0.001"}', values: '0+10x40'}
  - {series: 'waf_admission_request_duration_seconds_bucket{namespace="waf-admission", endpoint="mutate", le="+Inf"}', values: '0+10x40'}
  alert_rule_test:
  - {eval_time: 8m, alertname: WafAdmissionLatencyNearTimeout, exp_alerts: []}
  - {eval_time: 20m, alertname: WafAdmissionLatencyNearTimeout, exp_alerts: [{exp_labels: {severity: warning, endpoint: validate}}]}

- name: one request in ten a 503
  interval: 1m
  input_series:
  - {series: 'waf_admission_http_requests_total{namespace="waf-admission", endpoint="validate", code="200"}', values: '0+90x40'}
  - {series: 'waf_admission_http_requests_total{namespace="waf-admission", endpoint="validate", code="503"}', values: '0+10x40'}
  - {series: 'waf_admission_http_requests_total{namespace="waf-admission", endpoint="mutate", code="200"}', values: '0+90x40'}
  alert_rule_test:
  - {eval_time: 8m, alertname: WafAdmissionErrors, exp_alerts: []}
  - {eval_time: 20m, alertname: WafAdmissionErrors, exp_alerts: [{exp_labels: {severity: warning, endpoint: validate}}]}
"""


def test_the_alerts_fire_when_they_should_and_only_then(tmp_path):
    tool = promtool()
    spec = rule_groups()
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    tests = yaml.safe_load(ALERT_TESTS)
    tests["rule_files"] = ["rules.yaml"]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([tool, "test", "rules", "tests.yaml"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
