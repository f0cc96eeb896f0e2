//! `disruption-budget` (Reliability): a replicated model server whose
//! replica floor is at least `minReplicas` has exactly one
//! PodDisruptionBudget selecting its pods, and that budget lets a drain
//! evict at least one pod at the floor. AKS node-image and Kubernetes
//! upgrades drain GPU nodes; without a budget every replica can go at once
//! (each then reloads its model for minutes), and with one that allows
//! nothing the upgrade stalls. Two budgets on one pod make the eviction API
//! refuse it, so drains fail too. AKS: "PDBs for all production workloads".
//!
//! Cluster-aware like `autoscaler`: in `check`, PodDisruptionBudgets in the
//! same input count; in the cluster, the ones that exist (a reflector).
//! `kubectl apply -f dir/` can create the Deployment before its budget,
//! hence Warn in the baseline: the background audit reports the state once
//! both exist. Not patchable: a budget is another object.
//!
//! Percentages round up, as the disruption controller computes them
//! (`GetScaledValueFromIntOrPercent(…, roundUp=true)` for both fields).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::zone_spread::replica_floor;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Edit, Finding, ObjectRef, Outcome, PolicyFacts, Rule, Subject, add, flow_map, pointer, remove,
    two,
};
use crate::context::PdbRef;
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::Workload;
use serde_json::json;
use std::collections::BTreeMap;

/// `disruption-budget` (Reliability): exactly one PodDisruptionBudget
/// selects a replicated model server's pods and lets a node drain evict at
/// least one of them, so AKS upgrades neither take it down nor stall.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisruptionBudget {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Judged only when the replica floor (an autoscaler's minReplicas, else
    /// `spec.replicas`) is at least this.
    #[serde(default = "two")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Require `unhealthyPodEvictionPolicy: AlwaysAllow`, so pods of a model
    /// server that fails to load never block a drain.
    #[serde(default)]
    pub require_always_allow_unhealthy: bool,
    /// PodDisruptionBudgets whose `app.kubernetes.io/managed-by` label or
    /// controller owner kind is listed here are not judged for how many
    /// disruptions they allow (a controller that scales them during drains).
    #[serde(default)]
    pub accept_managed_by: Vec<String>,
}

impl Default for DisruptionBudget {
    fn default() -> Self {
        DisruptionBudget {
            action: None,
            min_replicas: two(),
            require_always_allow_unhealthy: false,
            accept_managed_by: Vec::new(),
        }
    }
}

impl Rule for DisruptionBudget {
    const ID: RuleId = RuleId::DisruptionBudget;
    const PILLAR: Pillar = Pillar::Reliability;
    const SUMMARY: &'static str = "Exactly one PodDisruptionBudget covers a replicated model server and lets a drain evict one pod";
    const SINCE: Release = Release::V0_2;
    const WORKLOAD_LEVEL: bool = true;

    type Settings = Settings;

    fn compile(&self, policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        if spec.min_replicas < 1 {
            problems.push(format!("{at}.minReplicas: must be at least 1"));
        }
        for (i, m) in spec.accept_managed_by.iter().enumerate() {
            if m.trim().is_empty() {
                problems.push(format!("{at}.acceptManagedBy[{i}]: cannot be empty"));
            }
        }
        Settings {
            min_replicas: spec.min_replicas,
            policy_floor: policy.replica_floor,
            require_always_allow_unhealthy: spec.require_always_allow_unhealthy,
            accept_managed_by: spec.accept_managed_by.clone(),
        }
    }

    fn check(on: &Subject, s: &Settings, _mutate: bool) -> Outcome {
        let w = on.workload;
        let scalers = on.scalers;
        let pdbs = on.pdbs;
        let mut out = Outcome::default();
        if !w.holds_replicas() {
            return out;
        }
        // Judged at the replicas the policy asks for where it runs fewer
        // (zone-spread raises them): the budget written now holds then,
        // and fixing the floor never reveals a missing budget later.
        let floor = replica_floor(w, scalers).max(s.policy_floor);
        if floor < s.min_replicas {
            return out;
        }
        let path = w.template_field("labels");
        let who = format!("{} {}", w.kind, w.name);
        let pdb = match pdbs {
            [] => {
                let labels = selector_labels(w);
                let name = w.name.trim_end_matches('*');
                let mut finding = Finding::new(
                    format!(
                        "no PodDisruptionBudget selects the pods of {who}: a node drain (AKS \
                     upgrade) can evict all {floor} replicas at once"
                    ),
                    format!(
                        "add a PodDisruptionBudget {name} in {} with maxUnavailable: 1 and \
                         selector.matchLabels {}",
                        w.namespace,
                        if labels.is_empty() {
                            "<your pod labels>".to_owned()
                        } else {
                            flow_map(&labels)
                        }
                    ),
                    path,
                );
                if !labels.is_empty() {
                    finding = finding.edit(Edit::Create(json!({
                        "apiVersion": "policy/v1",
                        "kind": "PodDisruptionBudget",
                        "metadata": {"name": name, "namespace": w.namespace},
                        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
                    })));
                }
                out.findings.push(finding);
                return out;
            }
            [one] => *one,
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|p| {
                        if p.selects_all() {
                            format!("{} (selector {{}}: every pod in the namespace)", p.name)
                        } else {
                            p.name.clone()
                        }
                    })
                    .collect();
                // Keep the one made for these pods, not one that selects everything.
                let keep = many.iter().position(|p| !p.selects_all()).unwrap_or(0);
                let delete: Vec<&str> = many
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != keep)
                    .map(|(_, p)| p.name.as_str())
                    .collect();
                out.findings.push(Finding::new(
                    format!(
                        "{} PodDisruptionBudgets select the pods of {who} ({}): the eviction API \
                     refuses pods with more than one, so node drains fail",
                        many.len(),
                        names.join(", ")
                    ),
                    format!(
                        "keep {}: kubectl delete poddisruptionbudget {} -n {}",
                        many[keep].name,
                        delete.join(" "),
                        w.namespace
                    ),
                    path,
                ));
                return out;
            }
        };
        let everyone = if pdb.selects_all() {
            " (its selector {} covers every pod in the namespace)"
        } else {
            ""
        };
        let managed = pdb
            .managed_by
            .iter()
            .any(|m| s.accept_managed_by.contains(m));
        let target = format!("PodDisruptionBudget {}/{}", pdb.namespace, pdb.name);
        // maxUnavailable: 1, and no minAvailable (the API takes one of them).
        let mut one_unavailable = vec![add(pointer("/spec/maxUnavailable", &[]), json!(1))];
        if pdb.min_available.is_some() {
            one_unavailable.push(remove(pointer("/spec/minAvailable", &[])));
        }
        let budget_path = if pdb.max_unavailable.is_some() || pdb.min_available.is_none() {
            "/spec/maxUnavailable"
        } else {
            "/spec/minAvailable"
        };
        let on_pdb = |message: String, fix: String, path: &str, ops: Vec<_>| {
            Finding::new(message, fix, path)
                .on(ObjectRef::from(pdb))
                .edit(Edit::Patch(ops))
        };
        match allowed_disruptions(pdb, floor) {
            Err(why) => out.findings.push(on_pdb(
                format!("PodDisruptionBudget {} {why}{everyone}", pdb.name),
                format!("set spec.maxUnavailable: 1 (and no minAvailable) on {target}"),
                budget_path,
                one_unavailable,
            )),
            Ok(allowed) if allowed < 1 && !managed => out.findings.push(on_pdb(
                format!(
                    "PodDisruptionBudget {} allows 0 disruptions at {floor} replicas ({}): AKS \
                 upgrades cannot drain the node{everyone}",
                    pdb.name,
                    describe(pdb)
                ),
                format!("set spec.maxUnavailable: 1 (and no minAvailable) on {target}"),
                budget_path,
                one_unavailable,
            )),
            Ok(_) => {}
        }
        if s.require_always_allow_unhealthy
            && pdb.unhealthy_pod_eviction_policy.as_deref() != Some("AlwaysAllow")
        {
            out.findings.push(on_pdb(
                format!(
                    "PodDisruptionBudget {} keeps unhealthy pods from eviction: a model server that \
                 fails to load blocks node drains",
                    pdb.name
                ),
                format!("set spec.unhealthyPodEvictionPolicy: AlwaysAllow on {target}"),
                "/spec/unhealthyPodEvictionPolicy",
                vec![add(
                    pointer("/spec/unhealthyPodEvictionPolicy", &[]),
                    json!("AlwaysAllow"),
                )],
            ));
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub min_replicas: i32,
    /// The replicas the policy's other rules ask for (see
    /// [`PolicyFacts::replica_floor`]).
    pub policy_floor: i32,
    pub require_always_allow_unhealthy: bool,
    pub accept_managed_by: Vec<String>,
}

/// Why a budget's allowance cannot be worked out; shown after the
/// budget's name.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("sets neither maxUnavailable nor minAvailable: it protects nothing")]
    NoBudget,
    #[error("has {field} {value:?}, neither a number nor a percentage")]
    NotANumber { field: &'static str, value: String },
}

/// How many pods a drain may evict when `floor` pods are healthy.
fn allowed_disruptions(pdb: &PdbRef, floor: i32) -> Result<i32, Unreadable> {
    match (&pdb.max_unavailable, &pdb.min_available) {
        (Some(max), _) => scaled(max, floor, "maxUnavailable"),
        (None, Some(min)) => scaled(min, floor, "minAvailable").map(|m| floor - m),
        (None, None) => Err(Unreadable::NoBudget),
    }
}

/// An int, or a percentage of `total` rounded up.
fn scaled(v: &IntOrString, total: i32, field: &'static str) -> Result<i32, Unreadable> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .filter(|p| *p >= 0)
            .map(|p| ((p * i64::from(total) + 99) / 100) as i32)
            .ok_or_else(|| Unreadable::NotANumber {
                field,
                value: s.clone(),
            }),
    }
}

fn describe(pdb: &PdbRef) -> String {
    let text = |v: &IntOrString| match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    };
    match (&pdb.max_unavailable, &pdb.min_available) {
        (Some(m), _) => format!("maxUnavailable {}", text(m)),
        (None, Some(m)) => format!("minAvailable {}", text(m)),
        (None, None) => "no budget".into(),
    }
}

/// `app=llm,tier=gpu` for `kubectl create pdb --selector`: the workload's
/// `spec.selector.matchLabels`, else its template labels.
/// The labels a new budget selects: the workload's matchLabels, else its
/// pod template's.
fn selector_labels(w: &Workload) -> BTreeMap<String, String> {
    w.selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| w.template_labels.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    fn settings() -> Settings {
        defaults::<DisruptionBudget>()
    }

    fn pdb(name: &str, spec: Value) -> PdbRef {
        PdbRef::from_value(
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": name, "namespace": "ml"}, "spec": spec}),
            "default",
            "pdb",
        )
        .unwrap()
    }

    fn run(d: &Value, pdbs: &[PdbRef]) -> Outcome {
        let w = workload(d);
        let mut selecting: Vec<&PdbRef> = pdbs.iter().filter(|p| p.selects(&w)).collect();
        selecting.sort_by(|a, b| a.name.cmp(&b.name));
        DisruptionBudget::check(&with_pdbs(&w, &selecting), &settings(), false)
    }

    fn one(spec: Value) -> Vec<PdbRef> {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "llm"}});
        vec![pdb("llm", spec)]
    }

    #[test]
    fn no_budget_is_reported_with_the_budget_to_add() {
        let out = run(&gpu_deployment(), &[]);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(
            out.findings[0].message,
            "no PodDisruptionBudget selects the pods of Deployment llm: a node drain (AKS \
             upgrade) can evict all 2 replicas at once"
        );
        assert_eq!(
            out.findings[0].fix,
            "add a PodDisruptionBudget llm in ml with maxUnavailable: 1 and selector.matchLabels \
             {app: llm}"
        );
        assert_eq!(
            out.findings[0].edit,
            Some(Edit::Create(json!({
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "llm", "namespace": "ml"},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "llm"}}},
            })))
        );
        assert_eq!(out.findings[0].path, "/spec/template/metadata/labels");
    }

    #[test]
    fn max_unavailable_one_passes() {
        assert!(run(&gpu_deployment(), &one(json!({"maxUnavailable": 1}))).is_clean());
    }

    #[test]
    fn budgets_that_allow_nothing_are_reported() {
        for spec in [
            json!({"maxUnavailable": 0}),
            json!({"minAvailable": 2}),
            json!({"minAvailable": "100%"}),
            // 51% of 2 rounds up to 2, as the disruption controller rounds.
            json!({"minAvailable": "51%"}),
            json!({"maxUnavailable": "0%"}),
        ] {
            let out = run(&gpu_deployment(), &one(spec.clone()));
            assert_eq!(out.findings.len(), 1, "{spec}");
            assert!(
                out.findings[0]
                    .message
                    .starts_with("PodDisruptionBudget llm allows 0 disruptions at 2 replicas"),
                "{}",
                out.findings[0].message
            );
            assert_eq!(
                out.findings[0].fix,
                "set spec.maxUnavailable: 1 (and no minAvailable) on PodDisruptionBudget ml/llm"
            );
        }
    }

    #[test]
    fn percentages_round_up() {
        // 1% of 2 replicas rounds up to 1 disruption; 50% minAvailable leaves 1.
        for spec in [
            json!({"maxUnavailable": "1%"}),
            json!({"minAvailable": "50%"}),
            json!({"minAvailable": 1}),
        ] {
            assert!(
                run(&gpu_deployment(), &one(spec.clone())).is_clean(),
                "{spec}"
            );
        }
    }

    #[test]
    fn the_floor_is_the_autoscalers_minimum() {
        let w = workload(&gpu_deployment());
        let budgets = one(json!({"minAvailable": 2}));
        let selecting: Vec<&PdbRef> = budgets.iter().collect();
        let hpa = scaler("llm", 3, 6);
        assert!(
            DisruptionBudget::check(
                &Subject {
                    scalers: &[&hpa],
                    pdbs: &selecting,
                    ..on(&w)
                },
                &settings(),
                false
            )
            .is_clean()
        );
    }

    #[test]
    fn a_single_replica_is_judged_at_the_replicas_the_policy_asks_for() {
        let mut d = gpu_deployment();
        d["spec"]["replicas"] = json!(1);
        // The policy's zone-spread asks for 2: the budget is asked for now,
        // not after the replicas are raised.
        let out = run(&d, &[]);
        assert_eq!(out.findings.len(), 1, "{out:?}");
        assert!(out.findings[0].message.contains("all 2 replicas"));
        // A policy that asks for no floor (zone-spread off, scale to zero)
        // leaves a single replica alone.
        let mut s = settings();
        s.policy_floor = 0;
        let w = workload(&d);
        assert!(DisruptionBudget::check(&on(&w), &s, false).is_clean());
        assert!(run(&gpu_pod(), &[]).is_clean());
    }

    #[test]
    fn two_budgets_on_the_same_pods_make_drains_fail() {
        let mut budgets = one(json!({"maxUnavailable": 1}));
        budgets.push(pdb(
            "everything",
            json!({"selector": {}, "maxUnavailable": 1}),
        ));
        let out = run(&gpu_deployment(), &budgets);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0].message.starts_with(
                "2 PodDisruptionBudgets select the pods of Deployment llm (everything (selector {}: \
                 every pod in the namespace), llm)"
            ),
            "{}",
            out.findings[0].message
        );
        assert_eq!(
            out.findings[0].fix,
            "keep llm: kubectl delete poddisruptionbudget everything -n ml"
        );
    }

    #[test]
    fn selectors_use_full_label_selector_semantics() {
        let expr = vec![pdb(
            "llm",
            json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["llm"]}]},
                "maxUnavailable": 1}),
        )];
        assert!(run(&gpu_deployment(), &expr).is_clean());
        let other = vec![pdb(
            "x",
            json!({"selector": {"matchLabels": {"app": "x"}}, "maxUnavailable": 1}),
        )];
        assert_eq!(run(&gpu_deployment(), &other).findings.len(), 1);
        // policy/v1: no selector selects no pods.
        let none = vec![pdb("x", json!({"maxUnavailable": 1}))];
        assert_eq!(run(&gpu_deployment(), &none).findings.len(), 1);
    }

    #[test]
    fn unhealthy_pod_eviction_and_managed_budgets_follow_the_settings() {
        let mut s = settings();
        s.require_always_allow_unhealthy = true;
        let w = workload(&gpu_deployment());
        let budgets = one(json!({"maxUnavailable": 1}));
        let out = DisruptionBudget::check(
            &with_pdbs(&w, &budgets.iter().collect::<Vec<_>>()),
            &s,
            false,
        );
        assert!(
            out.findings[0]
                .message
                .contains("keeps unhealthy pods from eviction")
        );
        let budgets =
            one(json!({"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow"}));
        assert!(
            DisruptionBudget::check(
                &with_pdbs(&w, &budgets.iter().collect::<Vec<_>>()),
                &s,
                false
            )
            .is_clean()
        );

        let managed = [PdbRef::from_value(
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": {"name": "llm", "namespace": "ml",
                        "labels": {"app.kubernetes.io/managed-by": "eviction-autoscaler"}},
                    "spec": {"selector": {"matchLabels": {"app": "llm"}}, "minAvailable": 2}}),
            "default",
            "pdb",
        )
        .unwrap()];
        let refs: Vec<&PdbRef> = managed.iter().collect();
        assert_eq!(
            DisruptionBudget::check(&with_pdbs(&w, &refs), &settings(), false)
                .findings
                .len(),
            1
        );
        let mut s = settings();
        s.accept_managed_by = vec!["eviction-autoscaler".into()];
        assert!(DisruptionBudget::check(&with_pdbs(&w, &refs), &s, false).is_clean());
    }

    #[test]
    fn a_budget_without_numbers_or_with_a_bad_one_is_reported() {
        let out = run(&gpu_deployment(), &one(json!({})));
        assert!(
            out.findings[0]
                .message
                .contains("sets neither maxUnavailable nor minAvailable")
        );
        let out = run(&gpu_deployment(), &one(json!({"maxUnavailable": "one"})));
        assert!(
            out.findings[0]
                .message
                .contains("neither a number nor a percentage")
        );
    }
}
