//! `autoscaler` (Performance Efficiency): an HPA (autoscaling/v2) or a KEDA
//! ScaledObject scales the model server with load, from a floor that keeps
//! it available (minReplicas ≥ policy) to a ceiling above that floor. WAF:
//! "scale with demand … autoscaling for inference endpoints". In `check`,
//! an autoscaler in the same input counts; in the cluster, one that exists.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use serde_json::json;

use super::serving::{Server, launch};
use super::{Edit, Finding, Outcome, PolicyFacts, Rule, Subject, on_scaler, two};
use crate::gpu::GpuResources;
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::{Workload, WorkloadKind};

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
    /// The Prometheus the fix's KEDA ScaledObject reads the model server's
    /// queue from (its trigger's `serverAddress`): set it to the cluster's
    /// (Azure Managed Prometheus through a query proxy, or
    /// kube-prometheus-stack's service).
    #[serde(default = "prometheus_server")]
    pub prometheus_server: String,
}

fn prometheus_server() -> String {
    "http://prometheus-operated.monitoring.svc:9090".into()
}

impl Default for Autoscaler {
    fn default() -> Self {
        Autoscaler {
            action: None,
            min_replicas: two(),
            prometheus_server: prometheus_server(),
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
        let server = &spec.prometheus_server;
        if !(server.starts_with("http://") || server.starts_with("https://")) || server.len() < 10 {
            problems.push(format!(
                "{at}.prometheusServer: {server:?} is not an http:// or https:// address"
            ));
        }
        Settings {
            min_replicas: spec.min_replicas,
            prometheus_server: spec.prometheus_server.clone(),
        }
    }

    fn check(on: &Subject, s: &Settings, _mutate: bool) -> Outcome {
        let w = on.workload;
        let scalers = on.scalers;
        let mut out = Outcome::default();
        if !w.holds_replicas() {
            return out;
        }
        if scalers.is_empty() {
            out.findings.push(missing(w, s));
            return out;
        }
        for sc in scalers {
            if sc.min_replicas < s.min_replicas {
                out.findings.push(on_scaler(
                    sc,
                    sc.kind.min_field(),
                    s.min_replicas,
                    format!(
                        "{} has {} {}; the policy needs at least {}",
                        sc.describe(),
                        sc.kind.min_field(),
                        sc.min_replicas,
                        s.min_replicas
                    ),
                ));
            }
            let floor = sc.min_replicas.max(s.min_replicas);
            if sc.max_replicas <= floor {
                out.findings.push(on_scaler(
                    sc,
                    sc.kind.max_field(),
                    ceiling(floor),
                    format!(
                        "{} has {} {} and {} {}: it has no room to scale",
                        sc.describe(),
                        sc.kind.min_field(),
                        sc.min_replicas,
                        sc.kind.max_field(),
                        sc.max_replicas
                    ),
                ));
            }
        }
        out
    }
}

/// Room above a floor: twice it, and at least one more.
fn ceiling(floor: i32) -> i32 {
    (floor * 2).max(floor + 1).max(2)
}

/// The model server a workload runs (`serving`) and the Prometheus series
/// of the requests waiting in its queue: what follows inference load (CPU
/// and GPU utilisation do not). KServe's Hugging Face server runs vLLM.
pub(crate) fn queue_metric(w: &Workload) -> Option<(Server, &'static str)> {
    w.pod.containers.iter().find_map(|c| {
        let server = launch(c)?.server;
        let metric = match server {
            Server::Vllm | Server::KserveHuggingface => "vllm:num_requests_waiting",
            Server::Tgi => "tgi_queue_size",
            Server::Sglang => "sglang:num_queue_reqs",
            Server::LlamaCpp | Server::Ollama => return None,
        };
        Some((server, metric))
    })
}

/// No autoscaler: the one to add, whole. A model server scales on its
/// queue through KEDA's Prometheus scaler; a server that uses no GPU may
/// scale on CPU; a GPU server we do not know gets the advice without an
/// object, since its queue metric is not in the file.
fn missing(w: &Workload, s: &Settings) -> Finding {
    let floor = s.min_replicas;
    let max = ceiling(floor);
    // KServe makes the autoscaler from the resource's own fields.
    match w.kind {
        WorkloadKind::InferenceService => {
            return Finding::new(
                format!(
                    "InferenceService {} gets no autoscaler (serving.kserve.io/autoscalerClass \
                     none or external, and no HorizontalPodAutoscaler targets Deployment \
                     {}-predictor): it cannot follow load",
                    w.name, w.name
                ),
                format!(
                    "remove the autoscalerClass annotation (KServe then makes an HPA) and set \
                     spec.predictor.minReplicas: {floor}, spec.predictor.maxReplicas: {max}"
                ),
                "/spec/predictor/maxReplicas",
            );
        }
        WorkloadKind::LLMInferenceService => {
            return Finding::new(
                format!(
                    "LLMInferenceService {} runs a fixed spec.replicas and no autoscaler: it \
                     cannot follow load",
                    w.name
                ),
                format!(
                    "replace spec.replicas with spec.scaling: {{minReplicas: {floor}, \
                     maxReplicas: {max}}} and a signal (spec.scaling.wva, or \
                     spec.scaling.keda.triggers on the server's queue)"
                ),
                "/spec/replicas",
            );
        }
        _ => {}
    }
    let message = format!(
        "no HorizontalPodAutoscaler or KEDA ScaledObject targets {} {}: it cannot follow load",
        w.kind, w.name
    );
    let target =
        json!({"apiVersion": w.kind.api_version(), "kind": w.kind.as_str(), "name": w.name});
    // A KAITO preset runs vLLM on the GPUs of the VM size it asks for.
    let kaito = matches!(w.kind, WorkloadKind::Workspace | WorkloadKind::InferenceSet);
    let gpu = kaito || GpuResources::builtin().requested_by(w).is_some();
    let queue = queue_metric(w).or(kaito.then_some((Server::Vllm, "vllm:num_requests_waiting")));
    let finding = |fix: String| Finding::new(message.clone(), fix, w.replicas_path);
    match (queue, gpu) {
        (Some((server, metric)), _) => {
            let query = format!(
                "sum({metric}{{namespace=\"{}\",pod=~\"{}-.*\"}})",
                w.namespace, w.name
            );
            let scaled_object = beside(
                w,
                "keda.sh/v1alpha1",
                "ScaledObject",
                json!({
                    "scaleTargetRef": target,
                    "minReplicaCount": floor,
                    "maxReplicaCount": max,
                    "triggers": [{
                        "type": "prometheus",
                        "metadata": {
                            "serverAddress": s.prometheus_server,
                            "query": query,
                            "threshold": QUEUE_THRESHOLD,
                        },
                    }],
                }),
            );
            finding(format!(
                "add a KEDA ScaledObject {} for {} {}/{} on the {server} queue ({metric}, \
                 {QUEUE_THRESHOLD} waiting per replica), minReplicaCount {floor}, maxReplicaCount {max}",
                w.name, w.kind, w.namespace, w.name
            ))
            .edit(Edit::Create(scaled_object))
        }
        (None, false) => {
            let floor = floor.max(1);
            let hpa = beside(
                w,
                "autoscaling/v2",
                "HorizontalPodAutoscaler",
                json!({
                    "scaleTargetRef": target,
                    "minReplicas": floor,
                    "maxReplicas": ceiling(floor),
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70}}}],
                }),
            );
            finding(format!(
                "add a HorizontalPodAutoscaler {} for {} {}/{} on CPU (it requests no GPU), \
                 minReplicas {floor}, maxReplicas {}",
                w.name,
                w.kind,
                w.namespace,
                w.name,
                ceiling(floor)
            ))
            .edit(Edit::Create(hpa))
        }
        (None, true) => finding(format!(
            "add a KEDA ScaledObject for {} {}/{} with minReplicaCount {floor}, maxReplicaCount \
             {max} and a prometheus trigger on the server's queue (vLLM \
             vllm:num_requests_waiting, TGI tgi_queue_size, SGLang sglang:num_queue_reqs); \
             CPU does not follow a GPU server's load",
            w.kind, w.namespace, w.name
        )),
    }
}

/// An object named as the workload, beside it.
fn beside(
    w: &Workload,
    api_version: &str,
    kind: &str,
    spec: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": w.name, "namespace": w.namespace},
        "spec": spec,
    })
}

/// Requests waiting per replica before KEDA adds one (vLLM's production
/// stack tutorial scales on the same figure).
pub(crate) const QUEUE_THRESHOLD: &str = "5";

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub min_replicas: i32,
    pub prometheus_server: String,
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
        let fix = &out.findings[0].fix;
        assert!(
            fix.starts_with("add a KEDA ScaledObject llm for Deployment ml/llm on the vLLM queue"),
            "{fix}"
        );
        assert!(
            !fix.contains("cpu"),
            "a GPU server never scales on CPU: {fix}"
        );
        let Some(Edit::Create(so)) = &out.findings[0].edit else {
            panic!("no object to add: {:?}", out.findings[0].edit)
        };
        assert_eq!(so["spec"]["minReplicaCount"], 2);
        assert_eq!(so["spec"]["maxReplicaCount"], 4);
        assert_eq!(
            so["spec"]["triggers"][0]["metadata"]["query"],
            "sum(vllm:num_requests_waiting{namespace=\"ml\",pod=~\"llm-.*\"})"
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
            out.findings[0].fix.contains("minReplicaCount 0"),
            "{}",
            out.findings[0].fix
        );
        let Some(Edit::Create(so)) = &out.findings[0].edit else {
            panic!("no ScaledObject to add")
        };
        assert_eq!(so["spec"]["minReplicaCount"], 0);
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
