//! Policy reports where platform teams already look: one
//! `openreports.io/v1alpha1` `Report` per namespace with a result per
//! governed workload and rule (what Kubewarden writes and Policy Reporter
//! reads), and one `ClusterReport` for what has no namespace: the policies
//! themselves. `--reports=wgpolicyk8s` writes the older
//! `wgpolicyk8s.io/v1alpha2` `PolicyReport`/`ClusterPolicyReport`, same shape.
//!
//! Building is pure (the audit's decisions in, report bodies out); writing
//! is done by the Lease holder only, with server-side apply under our field
//! manager, and only when the content (everything but timestamps) changed.
//! Reports of namespaces with nothing governed left are deleted. Each report
//! holds at most [`MAX_RESULTS`] results: past that, passes go first, then
//! skips, warnings and failures, and the summary still counts them all.

use std::collections::BTreeMap;
use std::str::FromStr;

use kube::core::GroupVersionKind;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::snapshot::PolicyReport;
use crate::decision::Decision;
use crate::policy::compiled::PolicySet;
use crate::policy::{API_VERSION, Action, RuleId};
use crate::workload::{Workload, WorkloadKind};

/// Every report we write has this name (one per namespace) and label.
pub const NAME: &str = "waf-admission";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "waf-admission");
/// Field manager for server-side apply.
pub const FIELD_MANAGER: &str = "waf-admission";
/// Results per report: at ~600 bytes a result, 1,000 keep a report near
/// 600 KiB, well inside etcd's 1.5 MiB object limit (Kyverno's unbounded
/// reports once filled etcd).
pub const MAX_RESULTS: usize = 1000;
/// Says how many results a report leaves out.
pub const TRUNCATED_ANNOTATION: &str = "waf-admission.dev/results-not-listed";

/// Which report API the audit writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    OpenReports,
    WgPolicyK8s,
    Off,
}

/// A `--reports` value that names no report API.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected openreports, wgpolicyk8s or off")]
pub struct UnknownReportFormat(pub String);

impl FromStr for ReportFormat {
    type Err = UnknownReportFormat;
    fn from_str(s: &str) -> Result<Self, UnknownReportFormat> {
        match s {
            "openreports" => Ok(ReportFormat::OpenReports),
            "wgpolicyk8s" => Ok(ReportFormat::WgPolicyK8s),
            "off" => Ok(ReportFormat::Off),
            other => Err(UnknownReportFormat(other.to_owned())),
        }
    }
}

impl ReportFormat {
    /// (namespaced kind, cluster kind), None when off.
    pub fn kinds(self) -> Option<(GroupVersionKind, GroupVersionKind)> {
        match self {
            ReportFormat::OpenReports => Some((
                GroupVersionKind::gvk("openreports.io", "v1alpha1", "Report"),
                GroupVersionKind::gvk("openreports.io", "v1alpha1", "ClusterReport"),
            )),
            ReportFormat::WgPolicyK8s => Some((
                GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
                GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "ClusterPolicyReport"),
            )),
            ReportFormat::Off => None,
        }
    }
}

/// Counts by result, as the report APIs' `summary` has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub pass: u64,
    pub fail: u64,
    pub warn: u64,
    pub error: u64,
    pub skip: u64,
}

impl Summary {
    fn count(&mut self, result: &str) {
        match result {
            "pass" => self.pass += 1,
            "fail" => self.fail += 1,
            "warn" => self.warn += 1,
            "error" => self.error += 1,
            _ => self.skip += 1,
        }
    }

    fn to_json(self) -> Value {
        json!({"pass": self.pass, "fail": self.fail, "warn": self.warn,
            "error": self.error, "skip": self.skip})
    }
}

/// One listed result, kept as its JSON text: a report holds up to
/// [`MAX_RESULTS`] of them, and as text they take a quarter of what a
/// `Value` tree of them does.
#[derive(Debug)]
pub struct Listed(Box<RawValue>);

impl Listed {
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The result as a JSON tree.
    pub fn value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl PartialEq for Listed {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

/// One report to write: `namespace` None for the cluster report.
#[derive(Debug, PartialEq)]
pub struct ReportDoc {
    pub namespace: Option<String>,
    pub results: Vec<Listed>,
    pub summary: Summary,
    /// Results counted in the summary but not listed (over the bound).
    pub not_listed: usize,
}

/// A report object as it is applied: the results go in as the text they
/// are kept as.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportObject<'a> {
    api_version: String,
    kind: &'a str,
    metadata: Value,
    source: &'a str,
    summary: Value,
    results: Vec<&'a RawValue>,
}

impl ReportDoc {
    /// The object to apply, for the namespaced or the cluster kind, as
    /// JSON text.
    pub fn object(&self, kind: &GroupVersionKind) -> serde_json::Result<Box<RawValue>> {
        let mut metadata = json!({"name": NAME, "labels": {MANAGED_BY.0: MANAGED_BY.1}});
        if let Some(ns) = &self.namespace {
            metadata["namespace"] = json!(ns);
        }
        if self.not_listed > 0 {
            metadata["annotations"] = json!({TRUNCATED_ANNOTATION: self.not_listed.to_string()});
        }
        serde_json::value::to_raw_value(&ReportObject {
            api_version: kind.api_version(),
            kind: &kind.kind,
            metadata,
            source: NAME,
            summary: self.summary.to_json(),
            results: self.results.iter().map(|r| r.0.as_ref()).collect(),
        })
    }

    /// The results as JSON trees.
    pub fn result_values(&self) -> Vec<Value> {
        self.results.iter().map(Listed::value).collect()
    }
}

/// A digest of a report's [`content`]: what the writer keeps of each
/// existing report to compare, instead of the report itself. Map keys are
/// sorted in `Value`'s text, so equal content gives equal digests
/// whatever order the API server wrote the keys in.
pub fn fingerprint(report: &Value) -> [u8; 32] {
    let text = serde_json::to_string(&content(report)).unwrap_or_default();
    Sha256::digest(text.as_bytes()).into()
}

/// What of a report is compared to decide whether to write: results
/// without their timestamps, the summary and the bound annotation.
pub fn content(report: &Value) -> Value {
    let mut results = report["results"].as_array().cloned().unwrap_or_default();
    for r in &mut results {
        if let Some(o) = r.as_object_mut() {
            o.remove("timestamp");
        }
    }
    json!({
        "results": results,
        "summary": report["summary"],
        "notListed": report["metadata"]["annotations"][TRUNCATED_ANNOTATION],
    })
}

fn severity(action: Action) -> &'static str {
    match action {
        Action::Deny => "high",
        Action::Warn => "medium",
        Action::Audit | Action::Off => "low",
    }
}

fn result_of(action: Action) -> &'static str {
    match action {
        Action::Deny => "fail",
        _ => "warn",
    }
}

/// One report per namespace that has governed workloads, from the
/// audit's decisions, and the cluster report of the policies.
pub fn build(
    set: &PolicySet,
    judged: &[(Workload, Decision)],
    policies: &[PolicyReport],
    now: jiff::Timestamp,
) -> Vec<ReportDoc> {
    // A store lists its objects in no set order: sort, so the same audit
    // gives the same report and nothing is rewritten.
    let mut judged: Vec<&(Workload, Decision)> = judged.iter().collect();
    judged.sort_by(|(a, _), (b, _)| {
        (&a.namespace, a.kind, &a.name).cmp(&(&b.namespace, b.kind, &b.name))
    });
    let mut reports = Reports::new(set, now);
    for (w, d) in judged {
        reports.add(w.kind, &w.namespace, &w.name, d);
    }
    reports.finish(policies)
}

/// [`build`] one workload at a time, so an audit of many workloads keeps
/// no decision once it is counted: at most [`MAX_RESULTS`] results per
/// namespace are held. Workloads must come in (namespace, kind, name)
/// order, as `build` sorts them, for the same reports.
pub struct Reports<'a> {
    set: &'a PolicySet,
    timestamp: Value,
    by_namespace: BTreeMap<String, Bounded>,
}

impl<'a> Reports<'a> {
    pub fn new(set: &'a PolicySet, now: jiff::Timestamp) -> Self {
        Reports {
            set,
            timestamp: json!({"seconds": now.as_second(), "nanos": 0}),
            by_namespace: BTreeMap::new(),
        }
    }

    /// The results of one judged workload: per rule, its violations, else
    /// its exemption, else a pass under the first governing policy that
    /// runs the rule.
    pub fn add(&mut self, kind: WorkloadKind, namespace: &str, name: &str, d: &Decision) {
        if d.governed_by.is_empty() {
            return;
        }
        let subject = json!({"apiVersion": kind.api_version(), "kind": kind.as_str(),
            "namespace": namespace, "name": name});
        if !self.by_namespace.contains_key(namespace) {
            self.by_namespace
                .insert(namespace.to_owned(), Bounded::default());
        }
        let Some(results) = self.by_namespace.get_mut(namespace) else {
            return;
        };
        let timestamp = &self.timestamp;
        let base = |policy: &str, rule: RuleId, result: &str| {
            json!({"source": NAME, "policy": policy, "rule": rule.as_str(),
                "category": rule.pillar().as_str(), "timestamp": timestamp,
                "result": result, "scored": true, "resources": [subject]})
        };
        for rule in RuleId::ALL {
            let violations: Vec<_> = d.violations.iter().filter(|v| v.rule == rule).collect();
            for v in &violations {
                let mut r = base(&v.policy, rule, result_of(v.action));
                r["severity"] = json!(severity(v.action));
                r["message"] = json!(v.message);
                r["properties"] =
                    json!({"fix": v.fix, "path": v.path, "action": v.action.as_str()});
                results.push(r);
            }
            if !violations.is_empty() {
                continue;
            }
            if let Some(e) = d.exemptions.iter().find(|e| e.rule == rule) {
                let policy = d.governed_by.first().map_or("", String::as_str);
                let mut r = base(policy, rule, "skip");
                r["message"] = json!(format!(
                    "exempted by WellArchitectedException {}",
                    e.exception
                ));
                r["properties"] = json!({"exception": e.exception, "reason": e.reason,
                    "expires": e.expires.to_string()});
                results.push(r);
                continue;
            }
            let runs = d.governed_by.iter().find(|name| {
                self.set
                    .policies()
                    .iter()
                    .any(|p| &p.name == *name && p.enabled_rules().contains(&rule))
            });
            if let Some(policy) = runs {
                let mut r = base(policy, rule, "pass");
                r["message"] = json!("no violation");
                results.push(r);
            }
        }
    }

    /// The namespaces' reports, then the cluster report of the policies.
    pub fn finish(self, policies: &[PolicyReport]) -> Vec<ReportDoc> {
        let mut out: Vec<ReportDoc> = self
            .by_namespace
            .into_iter()
            .filter(|(_, results)| results.seen > 0)
            .map(|(ns, results)| results.finish(Some(ns)))
            .collect();
        let timestamp = &self.timestamp;
        let mut cluster = Bounded::default();
        for p in policies {
            let (result, message) = match (&p.problems, &p.kinds_not_sent) {
                (None, None) => ("pass", "the policy is in force".to_owned()),
                // In force for the kinds that are sent: a warning, as its
                // Ready condition says.
                (None, Some(missing)) => ("warn", missing.message()),
                (Some(problems), _) => ("error", format!("refused: {}", problems.join("; "))),
            };
            cluster.push(json!({"source": NAME, "policy": p.name, "timestamp": timestamp,
                "result": result, "scored": true, "message": message,
                "resources": [{"apiVersion": API_VERSION, "kind": "WellArchitectedPolicy", "name": p.name}]}));
        }
        if cluster.seen > 0 {
            out.push(cluster.finish(None));
        }
        out
    }
}

/// How telling a result is: failures first, passes last.
fn rank(r: &Value) -> usize {
    match r["result"].as_str() {
        Some("fail") => 0,
        Some("error") => 1,
        Some("warn") => 2,
        Some("skip") => 3,
        _ => 4,
    }
}

/// A report's results as they come: all counted, at most MAX_RESULTS kept,
/// the most telling first (in arrival order within a rank) once there are
/// more than that, in arrival order while there are not.
#[derive(Default)]
struct Bounded {
    summary: Summary,
    /// Results pushed so far.
    seen: usize,
    /// Kept results by rank, each with its arrival number.
    ranked: [Vec<(usize, Listed)>; 5],
    kept: usize,
}

impl Bounded {
    fn push(&mut self, r: Value) {
        self.summary.count(r["result"].as_str().unwrap_or_default());
        let at = self.seen;
        self.seen += 1;
        let rank = rank(&r);
        if self.kept == MAX_RESULTS {
            // Full: the last kept result of the worst rank held makes room,
            // unless this one would come after it.
            let Some(worst) = self.ranked.iter().rposition(|b| !b.is_empty()) else {
                return;
            };
            if rank >= worst {
                return;
            }
            self.ranked[worst].pop();
            self.kept -= 1;
        }
        // A `Value` always writes as JSON; were it not to, the result
        // would be counted and not listed.
        let Ok(text) = serde_json::value::to_raw_value(&r) else {
            return;
        };
        self.ranked[rank].push((at, Listed(text)));
        self.kept += 1;
    }

    fn finish(self, namespace: Option<String>) -> ReportDoc {
        let mut results: Vec<(usize, Listed)> = self.ranked.into_iter().flatten().collect();
        if self.seen <= MAX_RESULTS {
            results.sort_by_key(|(at, _)| *at);
        }
        ReportDoc {
            namespace,
            results: results.into_iter().map(|(_, r)| r).collect(),
            summary: self.summary,
            not_listed: self.seen - self.kept,
        }
    }
}

/// Keeps at most MAX_RESULTS results, the most telling first.
#[cfg(test)]
fn bounded(namespace: Option<String>, results: Vec<Value>) -> ReportDoc {
    let mut b = Bounded::default();
    for r in results {
        b.push(r);
    }
    b.finish(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::decision::judge;
    use crate::policy::WellArchitectedPolicy;
    use crate::policy::compiled::Policy;

    /// The object a report is applied as, read back.
    fn parsed(doc: &ReportDoc, kind: &GroupVersionKind) -> Value {
        serde_json::from_str(doc.object(kind).unwrap().get()).unwrap()
    }

    fn set() -> PolicySet {
        let p: WellArchitectedPolicy = serde_json::from_value(json!({
            "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
            "metadata": {"name": "p"}, "spec": {"rules": {"autoscaler": {"action": "Warn"}}}}))
        .unwrap();
        PolicySet::new(vec![Policy::compile(&p).unwrap()])
    }

    fn judged(set: &PolicySet, files: &[&str]) -> Vec<(Workload, Decision)> {
        let now = "2026-12-01T00:00:00Z".parse().unwrap();
        files
            .iter()
            .map(|f| {
                let text =
                    std::fs::read_to_string(format!("{}/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap();
                let v: Value = serde_yaml_ng::Deserializer::from_str(&text)
                    .map(|d| serde::Deserialize::deserialize(d).unwrap())
                    .next()
                    .unwrap();
                let w = Workload::from_value(v, "default").unwrap().unwrap();
                let d = judge(set, &w, &Context::default(), now);
                (w, d)
            })
            .collect()
    }

    #[test]
    fn one_report_per_namespace_with_a_result_per_workload_and_rule() {
        let s = set();
        let j = judged(
            &s,
            &[
                "examples/good/llm-gpu.yaml",
                "examples/bad/image-provenance.yaml",
                "examples/good/web-frontend.yaml",
            ],
        );
        let policies = [PolicyReport {
            name: "p".into(),
            generation: Some(1),
            problems: None,
            previous_in_force: false,
            kinds_not_sent: None,
            rule_set: None,
        }];
        let docs = build(&s, &j, &policies, "2026-12-01T00:00:00Z".parse().unwrap());
        assert_eq!(docs.len(), 2, "namespace ml and the cluster report");
        let ml = &docs[0];
        assert_eq!(ml.namespace.as_deref(), Some("ml"));
        let listed = ml.result_values();
        let of = |name: &str, rule: &str| -> Vec<&Value> {
            listed
                .iter()
                .filter(|r| r["resources"][0]["name"] == name && r["rule"] == rule)
                .collect()
        };
        assert_eq!(of("ollama", "image-provenance").len(), 1);
        let failed = of("ollama", "image-provenance")[0];
        assert_eq!(failed["result"], "fail");
        assert_eq!(failed["category"], "Security");
        assert_eq!(failed["policy"], "p");
        assert!(
            failed["properties"]["fix"]
                .as_str()
                .unwrap()
                .contains("az acr import")
        );
        assert_eq!(of("llm", "zone-spread")[0]["result"], "pass");
        assert_eq!(
            of("llm", "autoscaler")[0]["result"],
            "warn",
            "no HPA in the input"
        );
        assert!(
            listed.iter().all(|r| r["resources"][0]["name"] != "web"),
            "a workload no policy governs has no result"
        );
        let s2 = ml.summary;
        assert_eq!(
            s2.pass + s2.fail + s2.warn + s2.skip + s2.error,
            ml.results.len() as u64
        );
        assert_eq!(docs[1].namespace, None);
        assert_eq!(docs[1].result_values()[0]["result"], "pass");
        let object = parsed(ml, &ReportFormat::OpenReports.kinds().unwrap().0);
        assert_eq!(object["results"], json!(listed));
        assert_eq!(object["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(object["kind"], "Report");
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "waf-admission"
        );
    }

    #[test]
    fn the_cluster_report_warns_of_a_policy_whose_kinds_are_not_all_sent() {
        use crate::cluster::webhooks::KindsNotSent;
        use crate::workload::WorkloadKind;
        let s = set();
        let policies = [PolicyReport {
            name: "p".into(),
            generation: Some(1),
            problems: None,
            previous_in_force: false,
            kinds_not_sent: Some(KindsNotSent {
                kinds: vec![WorkloadKind::CronJob],
                configurations: vec![],
            }),
            rule_set: None,
        }];
        let docs = build(&s, &[], &policies, "2026-12-01T00:00:00Z".parse().unwrap());
        let cluster = docs[0].result_values();
        assert_eq!(docs[0].namespace, None);
        assert_eq!(cluster[0]["result"], "warn");
        assert!(
            cluster[0]["message"]
                .as_str()
                .unwrap()
                .starts_with("no ValidatingWebhookConfiguration has the webhook"),
            "{}",
            cluster[0]["message"]
        );
    }

    #[test]
    fn the_content_compared_leaves_out_timestamps_only() {
        let s = set();
        let j = judged(&s, &["examples/bad/image-provenance.yaml"]);
        let kind = ReportFormat::WgPolicyK8s.kinds().unwrap().0;
        let a = parsed(
            &build(&s, &j, &[], "2026-12-01T00:00:00Z".parse().unwrap())[0],
            &kind,
        );
        let b = parsed(
            &build(&s, &j, &[], "2026-12-01T00:05:00Z".parse().unwrap())[0],
            &kind,
        );
        assert_ne!(a, b);
        assert_eq!(
            content(&a),
            content(&b),
            "a new run of the same audit writes nothing"
        );
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let fixed = judged(&s, &["examples/good/llm-gpu.yaml"]);
        let c = parsed(
            &build(&s, &fixed, &[], "2026-12-01T00:05:00Z".parse().unwrap())[0],
            &kind,
        );
        assert_ne!(content(&a), content(&c));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn the_fingerprint_does_not_depend_on_the_order_the_api_server_writes_keys_in() {
        let s = set();
        let j = judged(&s, &["examples/bad/image-provenance.yaml"]);
        let kind = ReportFormat::OpenReports.kinds().unwrap().0;
        let ours = build(&s, &j, &[], "2026-12-01T00:00:00Z".parse().unwrap())[0]
            .object(&kind)
            .unwrap();
        // Every object's keys reversed, as another writer might order them.
        fn reversed(v: &Value) -> String {
            match v {
                Value::Object(m) => {
                    let fields: Vec<String> = m
                        .iter()
                        .rev()
                        .map(|(k, v)| format!("{}:{}", json!(k), reversed(v)))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }
                Value::Array(items) => {
                    let items: Vec<String> = items.iter().map(reversed).collect();
                    format!("[{}]", items.join(","))
                }
                other => other.to_string(),
            }
        }
        let ours: Value = serde_json::from_str(ours.get()).unwrap();
        let theirs_text = reversed(&ours);
        assert_ne!(theirs_text, ours.to_string());
        let theirs: Value = serde_json::from_str(&theirs_text).unwrap();
        assert_eq!(fingerprint(&ours), fingerprint(&theirs));
    }

    #[test]
    fn the_order_the_store_lists_workloads_in_changes_nothing() {
        let s = set();
        let files = [
            "examples/bad/image-provenance.yaml",
            "examples/good/llm-gpu.yaml",
        ];
        let mut j = judged(&s, &files);
        let now = "2026-12-01T00:00:00Z".parse().unwrap();
        let a = build(&s, &j, &[], now);
        j.reverse();
        assert_eq!(a, build(&s, &j, &[], now));
    }

    #[test]
    fn past_the_bound_failures_stay_listed_and_the_summary_counts_everything() {
        let pass = json!({"result": "pass"});
        let fail = json!({"result": "fail"});
        let mut results = vec![pass.clone(); MAX_RESULTS];
        results.extend(vec![fail; 10]);
        let doc = bounded(Some("ml".into()), results);
        assert_eq!(doc.results.len(), MAX_RESULTS);
        assert_eq!(doc.not_listed, 10);
        assert!(
            doc.result_values()[..10]
                .iter()
                .all(|r| r["result"] == "fail")
        );
        assert_eq!(doc.summary.pass, MAX_RESULTS as u64);
        assert_eq!(doc.summary.fail, 10);
        let object = parsed(&doc, &ReportFormat::OpenReports.kinds().unwrap().0);
        assert_eq!(
            object["metadata"]["annotations"][TRUNCATED_ANNOTATION],
            "10"
        );
    }

    #[test]
    fn the_bound_keeps_what_sorting_all_results_and_truncating_keeps() {
        let results = ["pass", "fail", "warn", "skip", "error"];
        for n in [10, MAX_RESULTS, MAX_RESULTS + 1, 3 * MAX_RESULTS + 7] {
            let all: Vec<Value> = (0..n)
                .map(|i| json!({"result": results[(i * 7 + i / 3) % 5], "n": i}))
                .collect();
            let mut expected = all.clone();
            if n > MAX_RESULTS {
                expected.sort_by_key(rank);
                expected.truncate(MAX_RESULTS);
            }
            let doc = bounded(None, all);
            assert_eq!(doc.result_values(), expected, "{n} results");
            assert_eq!(doc.not_listed, n.saturating_sub(MAX_RESULTS));
            let s = doc.summary;
            assert_eq!((s.pass + s.fail + s.warn + s.skip + s.error) as usize, n);
        }
    }
}
