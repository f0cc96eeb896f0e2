//! `rollout-strategy` (Reliability): a rollout of a replicated model server
//! keeps replicas serving while the new ones load the model, and can be
//! rolled back: no `Recreate`, a `maxUnavailable` below the replica count,
//! a revision history for `kubectl rollout undo`. WAF AKS: "use rolling
//! updates (maxSurge, maxUnavailable)"; WAF AI operations: roll back a bad
//! model deployment. Deployments and StatefulSets whose replica floor is at
//! least `minReplicas`; below that, `zone-spread` reports the count.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::zone_spread::replica_floor;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Edit, Finding, Outcome, PolicyFacts, Rule, Subject, add, one, pointer, two, yes};
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::WorkloadKind;
use serde_json::json;

/// `rollout-strategy` (Reliability): a rollout of a replicated model server
/// keeps some replicas serving and can be rolled back: no `Recreate`,
/// `maxUnavailable` below the replica count, a revision history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutStrategy {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Deployments with fewer replicas (an autoscaler's minReplicas counts)
    /// are not judged: `zone-spread` reports the replica count.
    #[serde(default = "two")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// The fewest old ReplicaSets kept (`revisionHistoryLimit`) for
    /// `kubectl rollout undo`.
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub min_revision_history: i32,
    /// Accept `strategy.type: Recreate` (a ReadWriteOnce model volume needs it).
    #[serde(default)]
    pub allow_recreate: bool,
    /// Accept a StatefulSet's `updateStrategy.type: OnDelete` (pods take
    /// a new template only when deleted by hand). `false` reports it.
    #[serde(default = "yes")]
    pub allow_on_delete: bool,
}

impl Default for RolloutStrategy {
    fn default() -> Self {
        RolloutStrategy {
            action: None,
            min_replicas: two(),
            min_revision_history: one(),
            allow_recreate: false,
            allow_on_delete: yes(),
        }
    }
}

impl Rule for RolloutStrategy {
    const ID: RuleId = RuleId::RolloutStrategy;
    const PILLAR: Pillar = Pillar::Reliability;
    const SUMMARY: &'static str = "Replicated model servers roll out without Recreate, keep replicas up and a revision to roll back to";
    const SINCE: Release = Release::V0_2;
    const WORKLOAD_LEVEL: bool = true;

    type Settings = Settings;

    fn compile(&self, _policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        if spec.min_replicas < 1 {
            problems.push(format!("{at}.minReplicas: must be at least 1"));
        }
        if spec.min_revision_history < 0 {
            problems.push(format!("{at}.minRevisionHistory: must not be negative"));
        }
        Settings {
            min_replicas: spec.min_replicas,
            min_revision_history: spec.min_revision_history,
            allow_recreate: spec.allow_recreate,
            allow_on_delete: spec.allow_on_delete,
        }
    }

    fn check(on: &Subject, s: &Settings, _mutate: bool) -> Outcome {
        let w = on.workload;
        let scalers = on.scalers;
        let mut out = Outcome::default();
        let Some(rollout) = &w.rollout else {
            return out;
        };
        if !w.holds_replicas() {
            return out;
        }
        let floor = replica_floor(w, scalers);
        if floor < s.min_replicas {
            return out;
        }
        let (field, recreate) = match w.kind {
            WorkloadKind::StatefulSet => ("updateStrategy", "OnDelete"),
            _ => ("strategy", "Recreate"),
        };
        let strategy = rollout.strategy.as_deref().unwrap_or("RollingUpdate");
        let allowed = match strategy {
            "Recreate" => s.allow_recreate,
            "OnDelete" => s.allow_on_delete,
            _ => true,
        };
        if strategy == recreate && !allowed {
            let (message, fix, to) = if w.kind == WorkloadKind::StatefulSet {
                (
                    format!(
                        "spec.updateStrategy.type is OnDelete: a new template (a new model) reaches \
                     the {floor} replicas only when someone deletes each pod by hand"
                    ),
                    "set spec.updateStrategy: {type: RollingUpdate}".to_owned(),
                    json!({"type": "RollingUpdate"}),
                )
            } else {
                (
                    format!(
                        "spec.strategy.type Recreate stops all {floor} replicas on every rollout \
                     while new ones load the model"
                    ),
                    "spec.strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 0, \
                 maxUnavailable: 1}}; ReadWriteOnce model disk: use Azure Files"
                        .to_owned(),
                    json!({"type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
                )
            };
            out.findings.push(
                Finding::new(message, fix, format!("/spec/{field}/type")).edit(Edit::Patch(vec![
                    add(pointer(&format!("/spec/{field}"), &[]), to),
                ])),
            );
        }

        if strategy == "RollingUpdate" {
            // Kubernetes' defaults: 25% on a Deployment, 1 on a StatefulSet.
            let written = rollout.max_unavailable.as_ref();
            let default = match w.kind {
                WorkloadKind::StatefulSet => IntOrString::Int(1),
                _ => IntOrString::String("25%".into()),
            };
            let max_unavailable = written.unwrap_or(&default);
            if let Some(down) = resolve_down(max_unavailable, floor)
                && down >= floor
            {
                out.findings.push(Finding {
                    message: format!(
                        "spec.{field}.rollingUpdate.maxUnavailable {} lets a rollout take down all \
                     {floor} replicas at once",
                        show(max_unavailable)
                    ),
                    fix: format!(
                        "set spec.{field}.rollingUpdate.maxUnavailable: 1{}",
                        if w.kind == WorkloadKind::Deployment {
                            " (and maxSurge: 0 on a GPU pool with no spare GPU)"
                        } else {
                            ""
                        }
                    ),
                    path: format!("/spec/{field}/rollingUpdate/maxUnavailable"),
                    fixable: false,
                    object: None,
                    edit: None,
                });
            }
        }

        if let Some(limit) = rollout.revision_history_limit
            && limit < s.min_revision_history
        {
            let kept = if w.kind == WorkloadKind::StatefulSet {
                "ControllerRevision"
            } else {
                "ReplicaSet"
            };
            out.findings.push(Finding {
                message: format!(
                    "spec.revisionHistoryLimit {limit} keeps no old {kept}: `kubectl rollout undo` \
                 has no earlier model version to return to"
                ),
                fix: format!(
                    "set spec.revisionHistoryLimit: {} (or remove it: Kubernetes keeps 10)",
                    s.min_revision_history.max(3)
                ),
                path: "/spec/revisionHistoryLimit".into(),
                fixable: false,
                object: None,
                edit: None,
            });
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub min_replicas: i32,
    pub min_revision_history: i32,
    pub allow_recreate: bool,
    pub allow_on_delete: bool,
}

/// How many pods `maxUnavailable` lets go at `replicas`, rounded down as
/// the Deployment controller does. None for a value the apiserver refuses.
fn resolve_down(v: &IntOrString, replicas: i32) -> Option<i32> {
    match v {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
            i32::try_from(percent * i64::from(replicas) / 100).ok()
        }
    }
}

fn show(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::*;
    use serde_json::json;

    fn settings() -> Settings {
        defaults::<RolloutStrategy>()
    }

    fn run(obj: &serde_json::Value) -> Outcome {
        run_rule::<RolloutStrategy>(obj, &settings())
    }

    #[test]
    fn the_default_rolling_update_passes() {
        assert!(run(&gpu_deployment()).is_clean());
    }

    #[test]
    fn recreate_on_a_replicated_model_server_is_reported_with_the_volume_advice() {
        let mut d = gpu_deployment();
        d["spec"]["strategy"] = json!({"type": "Recreate"});
        let out = run(&d);
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        let f = &out.findings[0];
        assert_eq!(f.path, "/spec/strategy/type");
        assert!(f.message.contains("stops all 2 replicas"), "{}", f.message);
        assert!(f.fix.contains("Azure Files"), "{}", f.fix);
    }

    #[test]
    fn recreate_is_accepted_where_the_policy_allows_it() {
        let mut d = gpu_deployment();
        d["spec"]["strategy"] = json!({"type": "Recreate"});
        let s = Settings {
            allow_recreate: true,
            ..settings()
        };
        assert!(RolloutStrategy::check(&on(&workload(&d)), &s, false).is_clean());
    }

    #[test]
    fn a_single_replica_is_left_to_zone_spread() {
        let mut d = gpu_deployment();
        d["spec"]["replicas"] = json!(1);
        d["spec"]["strategy"] = json!({"type": "Recreate"});
        assert!(run(&d).is_clean());
    }

    #[test]
    fn an_autoscaler_floor_counts_as_the_replica_count() {
        let mut d = gpu_deployment();
        d["spec"].as_object_mut().unwrap().remove("replicas");
        d["spec"]["strategy"] = json!({"type": "Recreate"});
        let hpa = scaler("llm", 3, 6);
        let out = RolloutStrategy::check(&with_scalers(&workload(&d), &[&hpa]), &settings(), false);
        assert!(out.findings[0].message.contains("all 3 replicas"));
    }

    #[test]
    fn max_unavailable_of_every_replica_is_reported_as_int_or_percent() {
        for (value, fails) in [
            (json!("100%"), true),
            (json!(2), true),
            (json!(5), true),
            (json!("50%"), false),
            (json!(1), false),
            // 99% of 2 rounds down to 1, as the controller does.
            (json!("99%"), false),
        ] {
            let mut d = gpu_deployment();
            d["spec"]["strategy"] = json!({"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": value.clone()}});
            let out = run(&d);
            assert_eq!(!out.is_clean(), fails, "{value}: {:?}", out.findings);
            if fails {
                assert_eq!(
                    out.findings[0].path,
                    "/spec/strategy/rollingUpdate/maxUnavailable"
                );
                assert!(out.findings[0].fix.contains("maxUnavailable: 1"));
            }
        }
    }

    #[test]
    fn no_revision_history_cannot_be_rolled_back() {
        let mut d = gpu_deployment();
        d["spec"]["revisionHistoryLimit"] = json!(0);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].path, "/spec/revisionHistoryLimit");
        assert!(out.findings[0].message.contains("kubectl rollout undo"));
        d["spec"]["revisionHistoryLimit"] = json!(1);
        assert!(run(&d).is_clean());
    }

    #[test]
    fn statefulsets_are_judged_on_update_strategy() {
        let mut s = gpu_deployment();
        s["kind"] = json!("StatefulSet");
        s["spec"]["serviceName"] = json!("llm");
        assert!(run(&s).is_clean(), "the default of maxUnavailable 1 passes");
        s["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}});
        let out = run(&s);
        assert_eq!(
            out.findings[0].path,
            "/spec/updateStrategy/rollingUpdate/maxUnavailable"
        );
        s["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        assert!(
            run(&s).is_clean(),
            "OnDelete is allowed unless the policy says"
        );
        let strict = Settings {
            allow_on_delete: false,
            ..settings()
        };
        let out = RolloutStrategy::check(&on(&workload(&s)), &strict, false);
        assert_eq!(out.findings[0].path, "/spec/updateStrategy/type");
    }

    #[test]
    fn bare_pods_have_no_rollout() {
        assert!(run(&gpu_pod()).is_clean());
    }

    #[test]
    fn refuses_a_negative_history_floor() {
        let mut problems = vec![];
        RolloutStrategy {
            min_revision_history: -1,
            ..Default::default()
        }
        .compile(&policy_facts(), "spec.rules.rolloutStrategy", &mut problems);
        assert_eq!(
            problems,
            ["spec.rules.rolloutStrategy.minRevisionHistory: must not be negative"]
        );
    }
}
