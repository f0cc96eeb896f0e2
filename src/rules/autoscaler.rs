//! `autoscaler` (Performance Efficiency): an HPA (autoscaling/v2) or a KEDA
//! ScaledObject scales the model server with load, from a floor that keeps
//! it available (minReplicas ≥ policy) to a ceiling above that floor. WAF:
//! "scale with demand … autoscaling for inference endpoints". In `check`,
//! an autoscaler in the same input counts; in the cluster, one that exists.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Finding, Outcome, PolicyFacts, Rule, Subject, two};
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};

/// `autoscaler` (Performance Efficiency): an HPA (autoscaling/v2) or KEDA
/// ScaledObject scales the workload with load.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscaler {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The lowest minReplicas accepted on the autoscaler. 0 lets a dev
    /// policy accept scale to zero (KEDA `minReplicaCount: 0`); the
    /// zone-spread floor is `zoneSpread.minReplicas`, set on its own.
    #[serde(default = "two")]
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
}

impl Default for Autoscaler {
    fn default() -> Self {
        Autoscaler {
            action: None,
            min_replicas: two(),
        }
    }
}

impl Rule for Autoscaler {
    const ID: RuleId = RuleId::Autoscaler;
    const PILLAR: Pillar = Pillar::PerformanceEfficiency;
    const SUMMARY: &'static str = "An HPA or KEDA ScaledObject scales the model server with load";
    const SINCE: Release = Release::V0_1;
    const WORKLOAD_LEVEL: bool = true;

    type Settings = Settings;

    fn compile(&self, _policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        // 0 is a dev policy's scale to zero; zone-spread keeps its own floor.
        if spec.min_replicas < 0 {
            problems.push(format!("{at}.minReplicas: must not be negative"));
        }
        Settings {
            min_replicas: spec.min_replicas,
        }
    }

    fn check(on: &Subject, s: &Settings, _mutate: bool) -> Outcome {
        let w = on.workload;
        let scalers = on.scalers;
        let mut out = Outcome::default();
        if !w.kind.is_replicated() {
            return out;
        }
        if scalers.is_empty() {
            let fix = if s.min_replicas == 0 {
                // An HPA cannot go below 1 without an alpha feature gate: KEDA can.
                format!(
                    "a KEDA ScaledObject with scaleTargetRef: {{kind: {}, name: {}}}, \
                 minReplicaCount: 0 and a queue or request-rate trigger (or kubectl autoscale \
                 {} {} -n {} --min=1 --max=2 --cpu-percent=70)",
                    w.kind,
                    w.name,
                    w.kind.as_str().to_lowercase(),
                    w.name,
                    w.namespace
                )
            } else {
                let floor = s.min_replicas;
                format!(
                    "kubectl autoscale {} {} -n {} --min={floor} --max={} --cpu-percent=70 \
                 (or a KEDA ScaledObject on a queue or latency metric)",
                    w.kind.as_str().to_lowercase(),
                    w.name,
                    w.namespace,
                    floor * 2
                )
            };
            out.findings.push(Finding {
            message: format!(
                "no HorizontalPodAutoscaler or KEDA ScaledObject targets {} {}: it cannot follow load",
                w.kind, w.name
            ),
            fix,
            path: "/spec/replicas".into(),
            fixable: false,
        });
            return out;
        }
        for sc in scalers {
            if sc.min_replicas < s.min_replicas {
                out.findings.push(Finding {
                    message: format!(
                        "{} {} has {} {}; the policy needs at least {}",
                        sc.kind,
                        sc.name,
                        sc.kind.min_field(),
                        sc.min_replicas,
                        s.min_replicas
                    ),
                    fix: format!(
                        "set spec.{}: {} on {} {}/{}",
                        sc.kind.min_field(),
                        s.min_replicas,
                        sc.kind,
                        sc.namespace,
                        sc.name
                    ),
                    path: "/spec/replicas".into(),
                    fixable: false,
                });
            }
            if sc.max_replicas <= sc.min_replicas.max(s.min_replicas) {
                out.findings.push(Finding {
                    message: format!(
                        "{} {} has {} {} and {} {}: it has no room to scale",
                        sc.kind,
                        sc.name,
                        sc.kind.min_field(),
                        sc.min_replicas,
                        sc.kind.max_field(),
                        sc.max_replicas
                    ),
                    fix: format!(
                        "set spec.{} above {} on {} {}/{}",
                        sc.kind.max_field(),
                        sc.min_replicas.max(s.min_replicas),
                        sc.kind,
                        sc.namespace,
                        sc.name
                    ),
                    path: "/spec/replicas".into(),
                    fixable: false,
                });
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub min_replicas: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ScalerKind;
    use crate::rules::testing::*;
    use serde_json::json;

    fn settings() -> Settings {
        defaults::<Autoscaler>()
    }

    #[test]
    fn denies_deployment_without_autoscaler_with_a_pasteable_command() {
        let out = Autoscaler::check(&on(&workload(&gpu_deployment())), &settings(), false);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0]
                .message
                .starts_with("no HorizontalPodAutoscaler")
        );
        assert!(
            out.findings[0]
                .fix
                .starts_with("kubectl autoscale deployment llm -n ml --min=2 --max=4")
        );
    }

    #[test]
    fn accepts_hpa_with_floor_and_room() {
        let hpa = scaler("llm", 2, 6);
        assert!(
            Autoscaler::check(
                &with_scalers(&workload(&gpu_deployment()), &[&hpa]),
                &settings(),
                false
            )
            .is_clean()
        );
    }

    #[test]
    fn denies_hpa_floor_below_policy() {
        let hpa = scaler("llm", 1, 6);
        let out = Autoscaler::check(
            &with_scalers(&workload(&gpu_deployment()), &[&hpa]),
            &settings(),
            false,
        );
        assert_eq!(out.findings.len(), 1);
        assert!(out.findings[0].message.contains("minReplicas 1"));
    }

    #[test]
    fn denies_hpa_without_room_to_scale() {
        let hpa = scaler("llm", 2, 2);
        let out = Autoscaler::check(
            &with_scalers(&workload(&gpu_deployment()), &[&hpa]),
            &settings(),
            false,
        );
        assert_eq!(out.findings.len(), 1);
        assert!(out.findings[0].message.contains("no room to scale"));
    }

    #[test]
    fn keda_scale_to_zero_is_reported_with_keda_field_names() {
        let mut so = scaler("llm", 0, 10);
        so.kind = ScalerKind::ScaledObject;
        let out = Autoscaler::check(
            &with_scalers(&workload(&gpu_deployment()), &[&so]),
            &settings(),
            false,
        );
        assert!(
            out.findings[0]
                .message
                .contains("ScaledObject llm has minReplicaCount 0")
        );
        assert!(out.findings[0].fix.contains("spec.minReplicaCount: 2"));
    }

    #[test]
    fn a_scale_to_zero_policy_accepts_keda_min_zero() {
        let mut problems = vec![];
        let s = Autoscaler {
            min_replicas: 0,
            ..Default::default()
        }
        .compile(&policy_facts(), "autoscaler", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let mut so = scaler("llm", 0, 4);
        so.kind = ScalerKind::ScaledObject;
        assert!(
            Autoscaler::check(
                &with_scalers(&workload(&gpu_deployment()), &[&so]),
                &s,
                false
            )
            .is_clean()
        );
        // Zero to zero is no autoscaling at all.
        so.max_replicas = 0;
        let out = Autoscaler::check(
            &with_scalers(&workload(&gpu_deployment()), &[&so]),
            &s,
            false,
        );
        assert!(out.findings[0].message.contains("no room to scale"));
        // With none, the fix is one that can reach zero.
        let out = Autoscaler::check(&on(&workload(&gpu_deployment())), &s, false);
        assert!(
            out.findings[0].fix.starts_with("a KEDA ScaledObject"),
            "{}",
            out.findings[0].fix
        );
        assert!(out.findings[0].fix.contains("minReplicaCount: 0"));
    }

    #[test]
    fn refuses_a_negative_floor() {
        let mut problems = vec![];
        Autoscaler {
            min_replicas: -1,
            ..Default::default()
        }
        .compile(&policy_facts(), "spec.rules.autoscaler", &mut problems);
        assert_eq!(
            problems,
            ["spec.rules.autoscaler.minReplicas: must not be negative"]
        );
    }

    #[test]
    fn bare_pods_need_no_autoscaler() {
        assert!(Autoscaler::check(&on(&workload(&gpu_pod())), &settings(), false).is_clean());
    }

    #[test]
    fn statefulsets_need_one_too() {
        let mut s = gpu_deployment();
        s["kind"] = json!("StatefulSet");
        assert_eq!(
            Autoscaler::check(&on(&workload(&s)), &settings(), false)
                .findings
                .len(),
            1
        );
    }
}
