//! The chart's dashboard and alerts query only what the webhook exports.
//! The real binary is started on loopback, given allowed, denied, patched
//! and malformed reviews and a certificate rotation, and its /metrics is
//! scraped. A family that has no sample prints nothing at all (not even
//! HELP/TYPE), and some only get samples in the cluster (the audit on the
//! Lease holder, unreadable policies): those names are taken from the same
//! `Metrics` type with every family given a sample, and listed below with
//! the reason the binary cannot show them here. Anything else a query names
//! that the binary did not export fails the test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::{Value, json};
use waf_admission::webhook::admission::Verdict;
use waf_admission::webhook::metrics::Metrics;

/// Families that get samples only in the cluster, and why.
const CLUSTER_ONLY: &[(&str, &str)] = &[
    (
        "waf_admission_audit_violations",
        "written by the background audit, which runs on the Lease holder in the cluster",
    ),
    (
        "waf_admission_audit_workloads",
        "written by the background audit, which runs on the Lease holder in the cluster",
    ),
    (
        "waf_admission_unreadable_objects",
        "counted by the reflectors that watch policies and exceptions in the cluster",
    ),
];

/// Labels Prometheus puts on every series of a target.
const TARGET_LABELS: &[&str] = &[
    "namespace",
    "pod",
    "job",
    "instance",
    "service",
    "container",
];

/// Sample names and, for each, the label names seen on it.
type Exported = BTreeMap<String, BTreeSet<String>>;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The sample lines of a text exposition: `name{a="x",b="y"} value`.
fn parse_exposition(text: &str) -> Exported {
    let mut out = Exported::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_owned()).or_default();
        if line[name_end..].starts_with('{') {
            let body = &line[name_end + 1..line.rfind('}').unwrap()];
            let mut rest = body;
            while let Some(eq) = rest.find("=\"") {
                labels.insert(rest[..eq].trim_start_matches(',').to_owned());
                // Values here never hold a quote; skip to the closing one.
                let after = &rest[eq + 2..];
                rest = &after[after.find('"').unwrap() + 1..];
            }
        }
    }
    out
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_owned()
}

/// What the real binary exports after traffic of every kind the standalone
/// webhook can see.
async fn from_the_binary() -> Exported {
    install_crypto();
    let pki = Pki::new("observability");
    let srv = Server::start(&pki, &["--baseline"]);
    let mut h2 = H2::connect(srv.addr, &pki.ca_pem).await.unwrap();
    let doc = |path: &str| yaml_file(path).remove(0);
    let denied = review(
        "CREATE",
        Some(&doc("examples/bad/image-provenance.yaml")),
        false,
    );
    assert_eq!(
        h2.post("/validate", &denied).await.1["response"]["allowed"],
        false
    );
    let allowed = review("CREATE", Some(&doc("examples/good/llm-gpu.yaml")), false);
    assert_eq!(
        h2.post("/validate", &allowed).await.1["response"]["allowed"],
        true
    );
    let fixable = review("CREATE", Some(&doc("examples/bad/zone-spread.yaml")), false);
    let (_, patched) = h2.post("/mutate", &fixable).await;
    assert!(patched["response"]["patch"].is_string(), "{patched}");
    assert_eq!(h2.request("POST", "/validate", b"{".to_vec()).await.0, 400);
    let bad_policy = json!({
        "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
        "metadata": {"name": "typo"}, "spec": {"action": "Sometimes"}});
    let (_, refused) = h2
        .post("/validate", &review("CREATE", Some(&bad_policy), false))
        .await;
    assert_eq!(refused["response"]["allowed"], false, "{refused}");
    assert_eq!(h2.request("GET", "/readyz", Vec::new()).await.0, 200);

    // A rotation: the next handshake loads the new pair.
    let (_, cert, key) = issue("waf-admission rotated");
    std::fs::write(&pki.key, key).unwrap();
    std::fs::write(&pki.cert, cert).unwrap();
    // The rotated leaf is signed by another CA, so this handshake fails
    // verification; the server has reloaded by then.
    let _ = tls_stream(srv.addr, &pki.ca_pem, &[b"h2"]).await;

    let text = scrape(srv.metrics_addr);
    std::fs::remove_dir_all(&pki.dir).ok();
    parse_exposition(&text)
}

/// Every name the `Metrics` type can export, each family given a sample.
fn from_the_registry() -> Exported {
    let m = Metrics::new();
    m.request("validate", 200, 0.001);
    m.violation("zone-spread", "deny");
    m.verdict("validate", Verdict::Denied);
    m.denial("ml");
    m.tls_reload(true);
    m.unreadable("WellArchitectedPolicy", 1);
    m.readiness(true, true);
    m.tls_certificate_expiry(SystemTime::now());
    let summary = serde_json::from_value(json!({"p": {"workloads": 2, "violations": 1}})).unwrap();
    m.audit(&summary, SystemTime::now());
    parse_exposition(&m.encode())
}

/// Metric and label names in a PromQL expression. Strings, ranges and
/// numbers are skipped; a name before `(` is a function or aggregation.
fn names_in(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let (mut metrics, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let mut i = 0;
    let next_non_space = |from: usize| chars[from..].iter().copied().find(|c| !c.is_whitespace());
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '[' {
            i += chars[i..].iter().position(|&c| c == ']').unwrap() + 1;
        } else if c == '{' {
            // Matchers: `label op "value"`, comma separated.
            i += 1;
            while chars[i] != '}' {
                if chars[i] == '"' {
                    i += 1;
                    while chars[i] != '"' {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                    i += 1;
                } else if ident(chars[i]) {
                    let start = i;
                    while ident(chars[i]) {
                        i += 1;
                    }
                    labels.insert(chars[start..i].iter().collect());
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if c == '$' {
            i += 1;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
        } else if ident(c) {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if GROUPING.contains(&word.as_str()) {
                if next_non_space(i) == Some('(') {
                    let close = i + chars[i..].iter().position(|&c| c == ')').unwrap();
                    let list: String = chars[i..close].iter().collect();
                    labels.extend(
                        list.trim_start()
                            .trim_start_matches('(')
                            .split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned),
                    );
                    i = close + 1;
                }
            } else if !KEYWORDS.contains(&word.as_str()) && next_non_space(i) != Some('(') {
                metrics.insert(word);
            }
        } else {
            i += 1;
        }
    }
    (metrics, labels)
}

#[test]
fn the_promql_reader_finds_metrics_and_labels() {
    let (m, l) = names_in(
        r#"histogram_quantile(0.99, sum by (le, endpoint) (rate(a_bucket{namespace=~"$ns", endpoint=~"x|y"}[$__rate_interval]))) > 0.8 * 5
           and on () group_left () max(b > 0) or vector(0) - time() + c offset 5m"#,
    );
    assert_eq!(
        m,
        BTreeSet::from(["a_bucket".into(), "b".into(), "c".into()])
    );
    assert_eq!(
        l,
        BTreeSet::from(["le".into(), "endpoint".into(), "namespace".into()])
    );
}

/// Every query of the dashboard (panels and template variables), by where it is.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = root().join("charts/waf-admission/files/dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            out.push((
                format!("panel {:?}", panel["title"].as_str().unwrap_or("")),
                expr.to_owned(),
            ));
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"]["query"].as_str() {
            // Grafana's label_values(metric, label): the metric is a selector.
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|q| q.split(',').next())
                .unwrap_or(q);
            out.push((
                format!("variable {:?}", var["name"].as_str().unwrap_or("")),
                inner.to_owned(),
            ));
        }
    }
    out
}

/// Every expression of the chart's PrometheusRule, rendered by Helm's SDK.
fn alert_queries() -> Vec<(String, String)> {
    let out = std::process::Command::new("python3")
        .arg(root().join("tests/packaging/render.py"))
        .arg(r#"{"prometheusRule": {"enabled": true}}"#)
        .output()
        .expect("python3 is needed to render the chart (pip install helm-python-sdk pyyaml)");
    assert!(
        out.status.success(),
        "rendering the chart failed (pip install helm-python-sdk pyyaml): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("the chart renders a PrometheusRule with prometheusRule.enabled");
    let mut queries = Vec::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            let what = format!("alert {}", r["alert"].as_str().unwrap());
            queries.push((what, r["expr"].as_str().unwrap().to_owned()));
        }
    }
    queries
}

#[tokio::test]
async fn every_dashboard_and_alert_query_names_a_metric_the_webhook_exports() {
    let binary = from_the_binary().await;
    let registry = from_the_registry();
    for name in binary.keys() {
        assert!(
            registry.contains_key(name),
            "{name} from the binary is not in Metrics"
        );
    }
    let unseen: BTreeSet<&str> = registry
        .keys()
        .filter(|n| !binary.contains_key(*n))
        .map(String::as_str)
        .collect();
    let cluster_only: BTreeSet<&str> = CLUSTER_ONLY.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        unseen, cluster_only,
        "the binary's scrape lacks exactly the families listed as cluster-only, no more"
    );
    for (name, labels) in &registry {
        for l in labels {
            assert!(
                !TARGET_LABELS.contains(&l.as_str()),
                "{name} has a label {l:?}, which Prometheus sets on every target"
            );
        }
    }

    let dashboard = dashboard_queries();
    let alerts = alert_queries();
    assert_eq!(alerts.len(), 5, "{alerts:?}");
    let mut used = BTreeSet::new();
    for (where_, expr) in dashboard.iter().chain(&alerts) {
        let (metrics, labels) = names_in(expr);
        assert!(!metrics.is_empty(), "{where_} queries no metric: {expr}");
        let mut known: BTreeSet<String> = TARGET_LABELS.iter().map(|l| (*l).to_owned()).collect();
        for m in &metrics {
            let exported = if let Some(l) = binary.get(m) {
                l
            } else if let Some((_, why)) = CLUSTER_ONLY.iter().find(|(n, _)| n == m) {
                eprintln!("{where_}: {m} checked against Metrics only: {why}");
                &registry[m]
            } else {
                panic!("{where_} queries {m}, which the webhook does not export: {expr}");
            };
            known.extend(exported.iter().cloned());
            used.insert(m.clone());
        }
        for l in &labels {
            assert!(
                known.contains(l),
                "{where_} uses label {l:?}, which none of {metrics:?} has: {expr}"
            );
        }
    }
    // What the issue asks the dashboard and alerts to show.
    for wanted in [
        "waf_admission_http_requests_total",
        "waf_admission_request_duration_seconds_bucket",
        "waf_admission_violations_total",
        "waf_admission_denials_total",
        "waf_admission_audit_violations",
        "waf_admission_audit_last_run_timestamp_seconds",
        "waf_admission_tls_certificate_expiry_timestamp_seconds",
        "waf_admission_synced",
        "waf_admission_ready",
        // Issue 22: which connection limit turns clients away.
        "waf_admission_connections_refused_total",
    ] {
        assert!(used.contains(wanted), "no query shows {wanted}");
    }
}
