//! `autoscaler-metric` (Performance Efficiency): the HPA or KEDA
//! ScaledObject of a GPU model server scales on at least one signal that
//! follows inference load: a Pods, Object or External metric, or a KEDA
//! trigger other than cpu and memory (the server's queue, running
//! requests, KV-cache use, latency). CPU and memory do not follow a GPU
//! server's load, and an autoscaling/v2 HPA with no `metrics` scales on
//! 80 % CPU. GPU utilisation (DCGM's duty cycle) sits near 100 % while
//! batching whatever the load, and GPU memory used only grows on servers
//! that preallocate it: both are reported as weak. A server that requests
//! no GPU may scale on CPU. Sources: design/model-aware-rules.md B
//! ([S39]–[S47]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::autoscaler::{QUEUE_THRESHOLD, queue_metric};
use super::{Edit, Finding, ObjectRef, Outcome, PolicyFacts, Rule, Subject, add, pointer};
use crate::context::{MetricsField, ScalerKind, ScalerRef, Signal};
use crate::gpu::GpuResources;
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::Workload;

/// `autoscaler-metric` (Performance Efficiency): a GPU model server's
/// autoscaler scales on a signal that follows inference load.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalerMetric {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub gpus: GpuResources,
    pub prometheus_server: String,
}

impl Rule for AutoscalerMetric {
    const ID: RuleId = RuleId::AutoscalerMetric;
    const PILLAR: Pillar = Pillar::PerformanceEfficiency;
    const SUMMARY: &'static str =
        "A GPU model server's autoscaler scales on a signal that follows inference load";
    const SINCE: Release = Release::V0_3;
    const WORKLOAD_LEVEL: bool = true;

    type Settings = Settings;

    fn compile(&self, policy: &PolicyFacts, _at: &str, _problems: &mut Vec<String>) -> Settings {
        Settings {
            gpus: policy.gpus.clone(),
            prometheus_server: policy.prometheus_server.to_owned(),
        }
    }

    fn check(on: &Subject, s: &Settings, _mutate: bool) -> Outcome {
        let w = on.workload;
        let mut out = Outcome::default();
        if on.scalers.is_empty() || s.gpus.requested_by(w).is_none() {
            return out;
        }
        let follows = |sig: &Signal| strength(sig) == Strength::Load;
        if on.scalers.iter().flat_map(|sc| &sc.signals).any(follows) {
            return out;
        }
        for sc in on.scalers {
            out.findings.push(finding(w, sc, s));
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strength {
    /// CPU or memory.
    Resource,
    /// GPU utilisation or memory: the reason.
    Weak(&'static str),
    Load,
}

fn strength(sig: &Signal) -> Strength {
    if sig.is_resource() {
        return Strength::Resource;
    }
    let m = sig.metric.to_ascii_lowercase();
    if m.contains("gpu_util") || m.contains("dcgm_fi_prof_gr_engine_active") {
        return Strength::Weak(
            "GPU utilisation is a duty cycle: near 100 % while batching, whatever waits",
        );
    }
    if m.contains("fb_used") || m.contains("gpu_memory_used") || m.contains("fb_free") {
        return Strength::Weak(
            "GPU memory used: vLLM and TGI reserve it at start, so it never falls",
        );
    }
    Strength::Load
}

/// What is wrong with one autoscaler, and the signal to add to it.
fn finding(w: &Workload, sc: &ScalerRef, s: &Settings) -> Finding {
    let what = match sc.metrics {
        MetricsField::Defaulted => "has no metrics: it scales on 80 % average CPU".to_owned(),
        _ => {
            let names: Vec<String> = sc
                .signals
                .iter()
                .map(|g| match strength(g) {
                    Strength::Weak(why) => format!("{} ({why})", g.metric),
                    _ => g.metric.clone(),
                })
                .collect();
            format!("scales only on {}", names.join(", "))
        }
    };
    let message = format!(
        "{} {} {what}, which does not follow a GPU model server's load (requests waiting in its \
         queue do)",
        sc.kind, sc.name
    );
    let message = match sc.own {
        Some(_) => message.replacen(&format!("{} {}", sc.kind, sc.name), &sc.describe(), 1),
        None => message,
    };
    let object = ObjectRef::from(sc);
    let Some((server, metric)) = queue_metric(w) else {
        if let Some(fields) = sc.own {
            return Finding::new(
                message,
                format!(
                    "scale on the server's queue or running requests (vLLM \
                     vllm:num_requests_waiting, TGI tgi_queue_size, SGLang sglang:num_queue_reqs) \
                     through {}",
                    if w.kind == crate::workload::WorkloadKind::LLMInferenceService {
                        "spec.scaling.keda.triggers or spec.scaling.wva"
                    } else {
                        "serving.kserve.io/autoscalerClass: keda and an External metric in \
                         spec.predictor.autoScaling.metrics"
                    }
                ),
                fields,
            );
        }
        return Finding::new(
            message,
            format!(
                "scale {} {} on the server's queue or running requests (vLLM \
                 vllm:num_requests_waiting, TGI tgi_queue_size, SGLang sglang:num_queue_reqs): a \
                 KEDA prometheus trigger, or a Pods metric through a Prometheus adapter",
                sc.kind, sc.name
            ),
            "/spec",
        )
        .on(object);
    };
    let query = format!(
        "sum({metric}{{namespace=\"{}\",pod=~\"{}-.*\"}})",
        w.namespace, w.name
    );
    if let Some(fields) = sc.own {
        // KServe's HPA takes only cpu or memory: the queue needs its KEDA
        // class, with an External Prometheus metric.
        let fix = if w.kind == crate::workload::WorkloadKind::LLMInferenceService {
            format!(
                "scale on the {server} queue: set spec.scaling.keda.triggers to [{{type:                  prometheus, metadata: {{serverAddress: {}, query: '{query}', threshold:                  '{QUEUE_THRESHOLD}'}}}}], or use spec.scaling.wva",
                s.prometheus_server
            )
        } else {
            format!(
                "scale on the {server} queue: annotate serving.kserve.io/autoscalerClass: keda and \
                 set spec.predictor.autoScaling.metrics: [{{type: External, external: {{metric: \
                 {{backend: prometheus, serverAddress: {}, query: '{query}'}}, target: {{type: \
                 Value, value: '{QUEUE_THRESHOLD}'}}}}}}]",
                s.prometheus_server
            )
        };
        return Finding::new(message, fix, fields);
    }
    match (sc.kind, sc.metrics) {
        (ScalerKind::KnativePodAutoscaler, _) => Finding::new(
            message,
            "set spec.predictor.scaleMetric: concurrency (Knative scales on requests in flight)"
                .to_owned(),
            "/spec/predictor/scaleMetric",
        ),
        (ScalerKind::ScaledObject, _) => {
            let trigger = json!({
                "type": "prometheus",
                "metadata": {
                    "serverAddress": s.prometheus_server,
                    "query": query,
                    "threshold": QUEUE_THRESHOLD,
                },
            });
            Finding::new(
                message,
                format!(
                    "add to ScaledObject {}/{} spec.triggers: {{type: prometheus, metadata: \
                     {{serverAddress: {}, query: '{query}', threshold: '{QUEUE_THRESHOLD}'}}}} \
                     (the {server} queue)",
                    sc.namespace, sc.name, s.prometheus_server
                ),
                "/spec/triggers",
            )
            .on(object)
            .edit(Edit::Patch(vec![add(
                pointer("/spec/triggers/-", &[]),
                trigger,
            )]))
        }
        (ScalerKind::HorizontalPodAutoscaler, MetricsField::V1) => Finding::new(
            message,
            format!(
                "write HorizontalPodAutoscaler {}/{} as autoscaling/v2 with a Pods metric \
                 {metric} (target averageValue {QUEUE_THRESHOLD}), served by a Prometheus \
                 adapter, or replace it with a KEDA ScaledObject on {query}",
                sc.namespace, sc.name
            ),
            "/spec",
        )
        .on(object),
        (ScalerKind::HorizontalPodAutoscaler, field) => {
            let pods = json!({
                "type": "Pods",
                "pods": {
                    "metric": {"name": metric},
                    "target": {"type": "AverageValue", "averageValue": QUEUE_THRESHOLD},
                },
            });
            let op = match field {
                MetricsField::Defaulted => add(pointer("/spec/metrics", &[]), json!([pods])),
                _ => add(pointer("/spec/metrics/-", &[]), pods),
            };
            Finding::new(
                message,
                format!(
                    "add to HorizontalPodAutoscaler {}/{} spec.metrics: {{type: Pods, pods: \
                     {{metric: {{name: {metric}}}, target: {{type: AverageValue, averageValue: \
                     '{QUEUE_THRESHOLD}'}}}}}} (the {server} queue, served by a Prometheus \
                     adapter), or replace it with a KEDA ScaledObject on {query}",
                    sc.namespace, sc.name
                ),
                "/spec/metrics",
            )
            .on(object)
            .edit(Edit::Patch(vec![op]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ScalerRef;
    use crate::rules::testing::{
        apply, cpu_deployment, defaults, gpu_deployment, with_scalers, workload,
    };
    use serde_json::Value;

    fn hpa(metrics: Value) -> ScalerRef {
        let mut h = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "llm", "namespace": "ml"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
                "minReplicas": 2, "maxReplicas": 4}});
        if !metrics.is_null() {
            h["spec"]["metrics"] = metrics;
        }
        ScalerRef::from_value(h, "ml", "test").unwrap().unwrap()
    }

    fn scaled_object(triggers: Value) -> (Value, ScalerRef) {
        let so = json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "llm", "namespace": "ml"},
            "spec": {"scaleTargetRef": {"name": "llm"}, "minReplicaCount": 2,
                "maxReplicaCount": 4, "triggers": triggers}});
        (
            so.clone(),
            ScalerRef::from_value(so, "ml", "test").unwrap().unwrap(),
        )
    }

    fn vllm() -> Value {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["containers"][0]["args"] =
            json!(["--model", "meta-llama/Llama-3.1-8B-Instruct"]);
        d
    }

    fn findings(d: &Value, sc: &ScalerRef) -> Vec<Finding> {
        let w = workload(d);
        AutoscalerMetric::check(
            &with_scalers(&w, &[sc]),
            &defaults::<AutoscalerMetric>(),
            false,
        )
        .findings
    }

    #[test]
    fn an_hpa_with_no_metrics_scales_on_cpu_and_gets_the_vllm_queue() {
        let f = findings(&vllm(), &hpa(Value::Null));
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "HorizontalPodAutoscaler llm has no metrics: it scales on 80 % average CPU, which does \
             not follow a GPU model server's load (requests waiting in its queue do)"
        );
        let Some(Edit::Patch(ops)) = &f[0].edit else {
            panic!("a patch on the HPA")
        };
        // Applied to the HPA, the HPA passes.
        let mut h = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "llm", "namespace": "ml"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
                "minReplicas": 2, "maxReplicas": 4}});
        h = apply(&h, ops);
        assert_eq!(
            h["spec"]["metrics"][0]["pods"]["metric"]["name"],
            "vllm:num_requests_waiting"
        );
        let fixed = ScalerRef::from_value(h, "ml", "test").unwrap().unwrap();
        assert!(findings(&vllm(), &fixed).is_empty());
    }

    #[test]
    fn cpu_and_memory_only_is_reported_and_a_queue_metric_passes() {
        let cpu_mem = json!([
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}}},
        ]);
        let f = findings(&vllm(), &hpa(cpu_mem));
        assert!(
            f[0].message.contains("scales only on cpu, memory"),
            "{}",
            f[0].message
        );
        let queue = json!([{"type": "Pods", "pods": {"metric": {"name": "vllm:num_requests_waiting"},
            "target": {"type": "AverageValue", "averageValue": "5"}}}]);
        assert!(findings(&vllm(), &hpa(queue)).is_empty());
    }

    #[test]
    fn gpu_utilisation_is_weak() {
        let dcgm = json!([{"type": "External", "external": {"metric": {"name": "DCGM_FI_DEV_GPU_UTIL"},
            "target": {"type": "AverageValue", "averageValue": "80"}}}]);
        let f = findings(&vllm(), &hpa(dcgm));
        assert!(
            f[0].message
                .contains("DCGM_FI_DEV_GPU_UTIL (GPU utilisation is a duty cycle"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn a_scaled_object_on_cpu_gets_a_prometheus_trigger_that_passes() {
        let (so, sc) = scaled_object(json!([{"type": "cpu", "metricType": "Utilization",
            "metadata": {"value": "60"}}]));
        let f = findings(&vllm(), &sc);
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message
                .starts_with("ScaledObject llm scales only on cpu")
        );
        let Some(Edit::Patch(ops)) = &f[0].edit else {
            panic!("a patch on the ScaledObject")
        };
        let fixed = apply(&so, ops);
        assert_eq!(
            fixed["spec"]["triggers"][1]["metadata"]["query"],
            "sum(vllm:num_requests_waiting{namespace=\"ml\",pod=~\"llm-.*\"})"
        );
        let sc = ScalerRef::from_value(fixed, "ml", "test").unwrap().unwrap();
        assert!(findings(&vllm(), &sc).is_empty());
    }

    #[test]
    fn a_cpu_server_may_scale_on_cpu() {
        let mut d = cpu_deployment();
        d["metadata"]["name"] = json!("llm");
        assert!(findings(&d, &hpa(Value::Null)).is_empty());
    }
}
