//! `autoscaler` (Performance Efficiency): an HPA (autoscaling/v2) or a KEDA
//! ScaledObject scales the model server with load, from a floor that keeps
//! it available (minReplicas ≥ policy) to a ceiling above that floor. WAF:
//! "scale with demand … autoscaling for inference endpoints". In `check`,
//! an autoscaler in the same input counts; in the cluster, one that exists.

use super::{Finding, Outcome};
use crate::context::ScalerRef;
use crate::policy;
use crate::workload::Workload;

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub min_replicas: i32,
}

impl Settings {
    pub fn compile(spec: &policy::Autoscaler, at: &str, problems: &mut Vec<String>) -> Settings {
        if spec.min_replicas < 1 {
            problems.push(format!("{at}.minReplicas: must be at least 1"));
        }
        Settings {
            min_replicas: spec.min_replicas,
        }
    }
}

pub fn check(w: &Workload, s: &Settings, scalers: &[&ScalerRef]) -> Outcome {
    let mut out = Outcome::default();
    if !w.kind.is_replicated() {
        return out;
    }
    if scalers.is_empty() {
        let floor = s.min_replicas;
        out.findings.push(Finding {
            message: format!(
                "no HorizontalPodAutoscaler or KEDA ScaledObject targets {} {}: it cannot follow load",
                w.kind, w.name
            ),
            fix: format!(
                "kubectl autoscale {} {} -n {} --min={floor} --max={} --cpu-percent=70 \
                 (or a KEDA ScaledObject on a queue or latency metric)",
                w.kind.as_str().to_lowercase(),
                w.name,
                w.namespace,
                floor * 2
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ScalerKind;
    use crate::rules::testing::*;
    use serde_json::json;

    fn settings() -> Settings {
        Settings::compile(&policy::Autoscaler::default(), "autoscaler", &mut vec![])
    }

    #[test]
    fn denies_deployment_without_autoscaler_with_a_pasteable_command() {
        let out = check(&workload(&gpu_deployment()), &settings(), &[]);
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
        assert!(check(&workload(&gpu_deployment()), &settings(), &[&hpa]).is_clean());
    }

    #[test]
    fn denies_hpa_floor_below_policy() {
        let hpa = scaler("llm", 1, 6);
        let out = check(&workload(&gpu_deployment()), &settings(), &[&hpa]);
        assert_eq!(out.findings.len(), 1);
        assert!(out.findings[0].message.contains("minReplicas 1"));
    }

    #[test]
    fn denies_hpa_without_room_to_scale() {
        let hpa = scaler("llm", 2, 2);
        let out = check(&workload(&gpu_deployment()), &settings(), &[&hpa]);
        assert_eq!(out.findings.len(), 1);
        assert!(out.findings[0].message.contains("no room to scale"));
    }

    #[test]
    fn keda_scale_to_zero_is_reported_with_keda_field_names() {
        let mut so = scaler("llm", 0, 10);
        so.kind = ScalerKind::ScaledObject;
        let out = check(&workload(&gpu_deployment()), &settings(), &[&so]);
        assert!(
            out.findings[0]
                .message
                .contains("ScaledObject llm has minReplicaCount 0")
        );
        assert!(out.findings[0].fix.contains("spec.minReplicaCount: 2"));
    }

    #[test]
    fn bare_pods_need_no_autoscaler() {
        assert!(check(&workload(&gpu_pod()), &settings(), &[]).is_clean());
    }

    #[test]
    fn statefulsets_need_one_too() {
        let mut s = gpu_deployment();
        s["kind"] = json!("StatefulSet");
        assert_eq!(check(&workload(&s), &settings(), &[]).findings.len(), 1);
    }
}
