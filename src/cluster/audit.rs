//! The background audit: every existing Deployment and StatefulSet judged
//! against the policies in force, counted per policy into `status.audit`,
//! like Kyverno's background scan. Runs on the replica that holds the Lease,
//! from watched stores that keep each workload as its slimmed JSON text
//! (`texts.rs`; never a list per run). Bare Pods are judged at
//! admission but not here: caching every Pod of the cluster costs more
//! memory than a count is worth.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::reports::Reports;
use super::texts::Cached;
use crate::decision::{Decision, judge_with};
use crate::policy::AuditSummary;
use crate::provenance::{self, Facts};
use crate::state::Snapshot;
use crate::workload::Workload;

/// One audit run, folded as it goes: each workload is judged, counted into
/// its policies' summaries and its namespace's report, and dropped, so a
/// run over many workloads holds one decision at a time and the bounded
/// reports. Objects must come in (namespace, kind, name) order for the
/// reports to list them in the order [`super::reports::build`] gives
/// ([`in_report_order`]).
pub struct Run<'a> {
    snapshot: &'a Snapshot,
    now: jiff::Timestamp,
    offline: Facts,
    summary: BTreeMap<String, AuditSummary>,
    reports: Reports<'a>,
    /// Workloads judged so far.
    pub judged: usize,
}

impl<'a> Run<'a> {
    pub fn new(snapshot: &'a Snapshot, now: jiff::Timestamp) -> Self {
        let summary = snapshot
            .policies
            .policies()
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    AuditSummary {
                        last_run: Some(Time(now)),
                        ..AuditSummary::default()
                    },
                )
            })
            .collect();
        Run {
            snapshot,
            now,
            offline: Facts::offline(provenance::AUDIT_OFFLINE),
            summary,
            reports: Reports::new(&snapshot.policies, now),
            judged: 0,
        }
    }

    /// Judges one cached Deployment or StatefulSet, read from its text in
    /// one pass; one that cannot be judged is logged and left out, never
    /// the others.
    pub fn judge(&mut self, object: &Cached) {
        let kind = object.kind;
        let w = match Workload::from_json_as(
            &object.json,
            &object.namespace,
            kind.api_version(),
            kind.as_str(),
        ) {
            Ok(Some(w)) => w,
            Ok(None) => return, // only workload kinds are cached
            Err(e) => {
                // Came from the API server typed, so this should not happen; say so.
                tracing::warn!(error = %e, "background audit cannot judge a workload");
                return;
            }
        };
        // Registry-dependent checks are left to admission: reported as not
        // checked here, never a registry call per existing workload.
        let snapshot = self.snapshot;
        let d = judge_with(
            &snapshot.policies,
            &w,
            &snapshot.context,
            &self.offline,
            self.now,
        );
        count(&mut self.summary, &d);
        self.reports.add(w.kind, &w.namespace, &w.name, &d);
        self.judged += 1;
    }

    /// Per policy, the workloads it governs and the violations it owns;
    /// and the namespaces' reports, to finish with the policies' own.
    pub fn finish(self) -> (BTreeMap<String, AuditSummary>, Reports<'a>) {
        (self.summary, self.reports)
    }
}

/// The stores' workloads in the order [`Run`] wants them: by namespace,
/// kind and name.
pub fn in_report_order(kinds: Vec<Vec<Arc<Cached>>>) -> Vec<Arc<Cached>> {
    let mut all: Vec<Arc<Cached>> = kinds.into_iter().flatten().collect();
    all.sort_by(|a, b| {
        (a.namespace.as_str(), a.kind, a.name.as_str()).cmp(&(
            b.namespace.as_str(),
            b.kind,
            b.name.as_str(),
        ))
    });
    all
}

/// Counts a decision into the summaries of the policies that govern the
/// workload and of those that own its violations (the policy whose action
/// won, per rule).
fn count(summary: &mut BTreeMap<String, AuditSummary>, d: &Decision) {
    for name in &d.governed_by {
        if let Some(s) = summary.get_mut(name) {
            s.workloads += 1;
        }
    }
    for v in &d.violations {
        if let Some(s) = summary.get_mut(&v.policy) {
            s.violations += 1;
            *s.by_rule.entry(v.rule.as_str().to_owned()).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::snapshot::PolicyReport;
    use crate::cluster::texts::Cacheable;
    use crate::context::Context;
    use crate::policy::compiled::{Policy, PolicySet};
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    fn deployment(path: &str) -> Deployment {
        let text =
            std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .next()
            .unwrap()
    }

    /// As the audit's store keeps it.
    fn cached(d: &Deployment) -> Arc<Cached> {
        Arc::new(d.clone().to_cached().unwrap())
    }

    /// A snapshot of one policy `p` with these `spec.rules`.
    fn snapshot(rules: serde_json::Value) -> Snapshot {
        let policy: crate::policy::WellArchitectedPolicy = serde_json::from_value(json!({
            "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
            "metadata": {"name": "p"}, "spec": {"rules": rules}}))
        .unwrap();
        Snapshot {
            policies: PolicySet::new(vec![Policy::compile(&policy).unwrap()]),
            context: Context::default(),
        }
    }

    #[test]
    fn counts_governed_workloads_and_violations_per_policy_and_rule() {
        let snapshot = snapshot(
            json!({"autoscaler": {"action": "Off"}, "disruptionBudget": {"action": "Off"}}),
        );
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let objects = [
            deployment("examples/good/llm-gpu.yaml"),
            deployment("examples/bad/image-provenance.yaml"),
            deployment("examples/bad/resources.yaml"),
            deployment("examples/good/web-frontend.yaml"),
        ];
        let mut run = Run::new(&snapshot, now);
        for o in &objects {
            run.judge(&cached(o));
        }
        assert_eq!(run.judged, 4);
        let (summary, _) = run.finish();
        let p = &summary["p"];
        assert_eq!(p.workloads, 3, "the web frontend is not model serving");
        // image-provenance finds the registry and the floating tag as one.
        assert_eq!(p.violations, 2);
        assert_eq!(
            p.by_rule,
            BTreeMap::from([("image-provenance".into(), 1), ("resources".into(), 1)])
        );
        assert_eq!(p.last_run, Some(Time(now)));
    }

    #[test]
    fn every_kind_in_the_cache_is_judged_with_the_rules_that_hold_for_it() {
        let snapshot = snapshot(json!({}));
        let now: jiff::Timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
        let bad = deployment("examples/bad/image-provenance.yaml");
        let template = serde_json::to_value(&bad.spec.template).unwrap();
        let meta = json!({"name": "llm", "namespace": "ml"});
        let daemonset: k8s_openapi::api::apps::v1::DaemonSet = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
            "spec": {"selector": bad.spec.selector, "template": template}}))
        .unwrap();
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}))
        .unwrap();
        let cached = vec![
            vec![Arc::new(daemonset.to_cached().unwrap())],
            vec![Arc::new(pod.to_cached().unwrap())],
        ];
        let mut run = Run::new(&snapshot, now);
        for object in in_report_order(cached) {
            run.judge(&object);
        }
        assert_eq!(run.judged, 2);
        let (summary, _) = run.finish();
        let p = &summary["p"];
        assert_eq!(p.workloads, 2);
        // image-provenance holds at both, as at the Deployment they were
        // made from; no replica floor or autoscaler for a DaemonSet or a Pod.
        let mut alone = Run::new(&snapshot, now);
        alone.judge(&Arc::new(bad.clone().to_cached().unwrap()));
        let per_workload = alone.finish().0["p"].by_rule["image-provenance"];
        assert_eq!(
            p.by_rule.get("image-provenance"),
            Some(&(2 * per_workload)),
            "{:?}",
            p.by_rule
        );
        for rule in ["zone-spread", "autoscaler", "disruption-budget"] {
            assert!(!p.by_rule.contains_key(rule), "{rule}: {:?}", p.by_rule);
        }
    }

    #[test]
    fn judging_one_at_a_time_gives_the_reports_judging_all_at_once_gives() {
        let snapshot = snapshot(json!({"autoscaler": {"action": "Warn"}}));
        let now: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let objects = [
            deployment("examples/good/web-frontend.yaml"),
            deployment("examples/bad/resources.yaml"),
            deployment("examples/bad/image-provenance.yaml"),
            deployment("examples/good/llm-gpu.yaml"),
        ];
        let offline = Facts::offline(provenance::AUDIT_OFFLINE);
        let all: Vec<(Workload, Decision)> = objects
            .iter()
            .map(|o| {
                let w = Workload::from_value(serde_json::to_value(o).unwrap(), "default")
                    .unwrap()
                    .unwrap();
                let d = judge_with(&snapshot.policies, &w, &snapshot.context, &offline, now);
                (w, d)
            })
            .collect();
        let policies = [PolicyReport {
            name: "p".into(),
            generation: Some(1),
            problems: None,
            previous_in_force: false,
            kinds_not_sent: None,
            rule_set: None,
        }];
        let expected = super::super::reports::build(&snapshot.policies, &all, &policies, now);
        let stored: Vec<Arc<Cached>> = objects.iter().map(cached).collect();
        let mut run = Run::new(&snapshot, now);
        for object in in_report_order(vec![stored]) {
            run.judge(&object);
        }
        let (_, reports) = run.finish();
        assert_eq!(reports.finish(&policies), expected);
    }
}
