//! The background audit: every existing Deployment and StatefulSet judged
//! against the policies in force, counted per policy into `status.audit`,
//! like Kyverno's background scan. Runs on the replica that holds the Lease,
//! from reflector stores (never a list per run). Bare Pods are judged at
//! admission but not here: caching every Pod of the cluster costs more
//! memory than a count is worth.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use crate::decision::{Decision, judge_with};
use crate::policy::AuditSummary;
use crate::provenance::{self, Facts};
use crate::state::Snapshot;
use crate::workload::Workload;

/// Judges each object (Deployments and StatefulSets); an object that
/// cannot be judged is logged and left out, never the others.
pub fn judge_all(
    snapshot: &Snapshot,
    objects: impl IntoIterator<Item = Value>,
    now: jiff::Timestamp,
) -> Vec<(Workload, Decision)> {
    let mut out = Vec::new();
    let offline = Facts::offline(provenance::AUDIT_OFFLINE);
    for object in objects {
        let w = match Workload::from_value(object, "default") {
            Ok(Some(w)) => w,
            Ok(None) => continue, // only Deployments and StatefulSets are passed in
            Err(e) => {
                // Came from the API server typed, so this should not happen; say so.
                tracing::warn!(error = %e, "background audit cannot judge a workload");
                continue;
            }
        };
        // Registry-dependent checks are left to admission: reported as not
        // checked here, never a registry call per existing workload.
        let d = judge_with(&snapshot.policies, &w, &snapshot.context, &offline, now);
        out.push((w, d));
    }
    out
}

/// Counts, per policy, the workloads it governs and the violations it owns
/// (the policy whose action won, per rule).
pub fn summarize(
    snapshot: &Snapshot,
    judged: &[(Workload, Decision)],
    now: jiff::Timestamp,
) -> BTreeMap<String, AuditSummary> {
    let mut out: BTreeMap<String, AuditSummary> = snapshot
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
    for (_, d) in judged {
        for name in &d.governed_by {
            if let Some(s) = out.get_mut(name) {
                s.workloads += 1;
            }
        }
        for v in &d.violations {
            if let Some(s) = out.get_mut(&v.policy) {
                s.violations += 1;
                *s.by_rule.entry(v.rule.as_str().to_owned()).or_default() += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::policy::compiled::{Policy, PolicySet};
    use serde_json::json;

    fn deployment(path: &str) -> Value {
        let text =
            std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .next()
            .unwrap()
    }

    #[test]
    fn counts_governed_workloads_and_violations_per_policy_and_rule() {
        let policy: crate::policy::WellArchitectedPolicy = serde_json::from_value(json!({
            "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
            "metadata": {"name": "p"}, "spec": {"rules": {"autoscaler": {"action": "Off"}, "disruptionBudget": {"action": "Off"}}}}))
        .unwrap();
        let snapshot = Snapshot {
            policies: PolicySet::new(vec![Policy::compile(&policy).unwrap()]),
            context: Context::default(),
        };
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let objects = [
            deployment("examples/good/llm-gpu.yaml"),
            deployment("examples/bad/image-provenance.yaml"),
            deployment("examples/bad/resources.yaml"),
            deployment("examples/good/web-frontend.yaml"),
        ];
        let summary = summarize(&snapshot, &judge_all(&snapshot, objects, now), now);
        let p = &summary["p"];
        assert_eq!(p.workloads, 3, "the web frontend is not model serving");
        assert_eq!(p.violations, 3);
        assert_eq!(
            p.by_rule,
            BTreeMap::from([("image-provenance".into(), 2), ("resources".into(), 1)])
        );
        assert_eq!(p.last_run, Some(Time(now)));
    }
}
