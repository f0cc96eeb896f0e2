//! Autoscalers as the rules see them: an HPA (autoscaling/v2 or v1), a
//! KEDA ScaledObject, or the autoscaler an operator makes from a
//! resource's own fields (KServe's from an InferenceService), with the
//! workload each scales and the signals it scales on.

use std::fmt;

use k8s_openapi::api::autoscaling::{v1, v2};
use serde::Deserialize;

use crate::error::Result;
use crate::workload::{Workload, typed};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalerKind {
    HorizontalPodAutoscaler,
    ScaledObject,
    /// Knative's autoscaler (KPA), which KServe sets up for an
    /// InferenceService in Knative mode.
    KnativePodAutoscaler,
}

impl ScalerKind {
    /// The field that sets the floor, as the user writes it.
    pub fn min_field(self) -> &'static str {
        match self {
            ScalerKind::HorizontalPodAutoscaler | ScalerKind::KnativePodAutoscaler => "minReplicas",
            ScalerKind::ScaledObject => "minReplicaCount",
        }
    }
    pub fn max_field(self) -> &'static str {
        match self {
            ScalerKind::HorizontalPodAutoscaler | ScalerKind::KnativePodAutoscaler => "maxReplicas",
            ScalerKind::ScaledObject => "maxReplicaCount",
        }
    }
}

impl fmt::Display for ScalerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScalerKind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            ScalerKind::ScaledObject => "ScaledObject",
            ScalerKind::KnativePodAutoscaler => "Knative autoscaler",
        })
    }
}

/// An autoscaler and the workload it scales.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalerRef {
    pub kind: ScalerKind,
    pub namespace: String,
    pub name: String,
    pub target_kind: String,
    pub target_name: String,
    pub min_replicas: i32,
    pub max_replicas: i32,
    /// What it scales on, as written (an HPA with no `metrics` scales on
    /// 80 % CPU: one `Resource cpu` signal, and `metrics` is `Defaulted`).
    pub signals: Vec<Signal>,
    pub metrics: MetricsField,
    /// The autoscaler an operator makes from the workload's own fields
    /// (KServe from `spec.predictor` or `spec.scaling`): the pointer of
    /// those fields, where its bounds are set and fixed. None: an object
    /// of its own.
    pub own: Option<&'static str>,
}

/// One thing an autoscaler scales on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    /// The HPA metric type (`Resource`, `ContainerResource`, `Pods`,
    /// `Object`, `External`), or the KEDA trigger type (`cpu`,
    /// `prometheus`, `kafka`, …).
    pub source: String,
    /// The resource (`cpu`), the metric's name, or a KEDA trigger's query
    /// (else its `metricName`, else its type).
    pub metric: String,
}

impl Signal {
    /// CPU or memory: what a GPU model server's load does not follow.
    pub fn is_resource(&self) -> bool {
        matches!(
            self.source.as_str(),
            "Resource" | "ContainerResource" | "cpu" | "memory"
        )
    }
}

/// Where a fix adds a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsField {
    /// An autoscaling/v2 HPA's `spec.metrics` or a ScaledObject's
    /// `spec.triggers`, as a list.
    List,
    /// An autoscaling/v2 HPA without `spec.metrics` (80 % CPU).
    Defaulted,
    /// An autoscaling/v1 HPA: CPU only, by its schema.
    V1,
}

impl ScalerRef {
    /// Reads an HPA (autoscaling/v2 or v1) or a KEDA
    /// ScaledObject. `Ok(None)` for an HPA that KEDA made for a ScaledObject:
    /// the ScaledObject itself stands for it.
    pub fn from_value(
        object: serde_json::Value,
        default_namespace: &str,
        at: &str,
    ) -> Result<Option<ScalerRef>> {
        let kind = object
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        if kind == "ScaledObject" {
            let so: ScaledObject = typed(object, at)?;
            let target = so.spec.scale_target_ref;
            let signals = so
                .spec
                .triggers
                .iter()
                .map(|t| {
                    let meta = |k: &str| {
                        t.metadata
                            .get(k)
                            .and_then(|v| v.as_str())
                            .map(str::to_owned)
                    };
                    Signal {
                        source: t.type_.clone(),
                        metric: meta("query")
                            .or_else(|| meta("metricName"))
                            .unwrap_or_else(|| t.type_.clone()),
                    }
                })
                .collect();
            return Ok(Some(ScalerRef {
                kind: ScalerKind::ScaledObject,
                namespace: so
                    .metadata
                    .namespace
                    .unwrap_or_else(|| default_namespace.into()),
                name: so.metadata.name.unwrap_or_default(),
                target_kind: target.kind.unwrap_or_else(|| "Deployment".into()),
                target_name: target.name,
                // KEDA's own defaults.
                min_replicas: so.spec.min_replica_count.unwrap_or(0),
                max_replicas: so.spec.max_replica_count.unwrap_or(100),
                signals,
                metrics: MetricsField::List,
                own: None,
            }));
        }
        // autoscaling/v1 is still served, and read as itself: its spec has
        // the same target and bounds (and a CPU target the rules ignore).
        let v1 = object.get("apiVersion").and_then(|v| v.as_str()) == Some("autoscaling/v1");
        let cpu = || Signal {
            source: "Resource".into(),
            metric: "cpu".into(),
        };
        let (metadata, target, min_replicas, max_replicas, signals, metrics) = if v1 {
            let hpa: v1::HorizontalPodAutoscaler = typed(object, at)?;
            let spec = hpa.spec;
            let target = spec.scale_target_ref;
            (
                hpa.metadata,
                (target.kind, target.name),
                spec.min_replicas,
                spec.max_replicas,
                vec![cpu()],
                MetricsField::V1,
            )
        } else {
            let hpa: v2::HorizontalPodAutoscaler = typed(object, at)?;
            let spec = hpa.spec;
            let target = spec.scale_target_ref;
            let (signals, metrics) = match spec.metrics.filter(|m| !m.is_empty()) {
                Some(list) => (list.iter().map(hpa_signal).collect(), MetricsField::List),
                // "If not set, the default metric will be set to 80% average CPU utilization."
                None => (vec![cpu()], MetricsField::Defaulted),
            };
            (
                hpa.metadata,
                (target.kind, target.name),
                spec.min_replicas,
                spec.max_replicas,
                signals,
                metrics,
            )
        };
        let owned_by_keda = metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "ScaledObject");
        if owned_by_keda {
            return Ok(None);
        }
        Ok(Some(ScalerRef {
            kind: ScalerKind::HorizontalPodAutoscaler,
            namespace: metadata
                .namespace
                .unwrap_or_else(|| default_namespace.into()),
            name: metadata.name.unwrap_or_default(),
            target_kind: target.0,
            target_name: target.1,
            min_replicas: min_replicas.unwrap_or(1),
            max_replicas,
            signals,
            metrics,
            own: None,
        }))
    }

    /// How a message names it: `HorizontalPodAutoscaler llm`, or `the
    /// HorizontalPodAutoscaler KServe makes from spec.predictor`.
    pub fn describe(&self) -> String {
        match self.own {
            Some(fields) => format!(
                "the {} KServe makes from {}",
                self.kind,
                fields.trim_start_matches('/').replace('/', ".")
            ),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// The field a fix sets, as a message names it: `spec.minReplicas`,
    /// `spec.predictor.minReplicas`.
    pub fn field_name(&self, field: &str) -> String {
        match self.own {
            Some(fields) => format!(
                "{}.{field}",
                fields.trim_start_matches('/').replace('/', ".")
            ),
            None => format!("spec.{field}"),
        }
    }

    pub(crate) fn targets(&self, w: &Workload) -> bool {
        self.namespace == w.namespace
            && self.target_name == w.name
            && self.target_kind == w.kind.as_str()
    }
}

/// An autoscaling/v2 metric as a signal.
fn hpa_signal(m: &v2::MetricSpec) -> Signal {
    let metric = match m.type_.as_str() {
        "Resource" => m.resource.as_ref().map(|r| r.name.clone()),
        "ContainerResource" => m.container_resource.as_ref().map(|r| r.name.clone()),
        "Pods" => m.pods.as_ref().map(|p| p.metric.name.clone()),
        "Object" => m.object.as_ref().map(|o| o.metric.name.clone()),
        "External" => m.external.as_ref().map(|e| e.metric.name.clone()),
        _ => None,
    };
    Signal {
        source: m.type_.clone(),
        metric: metric.unwrap_or_default(),
    }
}

#[derive(Deserialize)]
struct ScaledObject {
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: ScaledObjectSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScaledObjectSpec {
    scale_target_ref: ScaleTargetRef,
    min_replica_count: Option<i32>,
    max_replica_count: Option<i32>,
    #[serde(default)]
    triggers: Vec<Trigger>,
}

#[derive(Deserialize)]
struct Trigger {
    #[serde(rename = "type", default)]
    type_: String,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct ScaleTargetRef {
    name: String,
    kind: Option<String>,
}
