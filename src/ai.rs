//! The AI-serving resources teams apply, read in their own fields: KServe
//! `InferenceService` and `LLMInferenceService`, `LeaderWorkerSet`, KAITO
//! `Workspace` and `InferenceSet`. Each becomes a [`Workload`] view whose
//! pointers lie inside the resource (`/spec/predictor/...`,
//! `/spec/leaderWorkerTemplate/leaderTemplate/spec/...`,
//! `/resource/instanceType`), so a denial names what the person who ran
//! `kubectl apply` wrote. Field paths, defaults and what each operator
//! makes: `design/ai-resources.md`.
//!
//! - InferenceService: the predictor's inline pod spec, its `model:`
//!   container merged with the ServingRuntime KServe would pick
//!   ([`resolve`]), `minReplicas` as the replica count and the autoscaler
//!   KServe makes from `minReplicas`/`maxReplicas`/`scaleMetric`; the
//!   transformer, explainer and `workerSpec` as further views.
//! - LLMInferenceService: `spec.template`, `spec.replicas` or
//!   `spec.scaling`; `spec.worker` and `spec.prefill` as further views.
//! - LeaderWorkerSet: `spec.replicas` counts groups; the leader template
//!   (the worker template when there is none) carries zone spread, the
//!   worker template is a further view.
//! - Workspace and InferenceSet: `resource.instanceType`, the custom
//!   `inference.template`; preset pods are KAITO's (image, probes,
//!   placement), so a preset has no containers to judge as the user's.
//!
//! The operators' own objects (a Deployment KServe makes, a LeaderWorkerSet's
//! StatefulSets, a Workspace of an InferenceSet) are judged through these
//! ([`made_from`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::rule_list::RuleId;
use crate::scaler::{MetricsField, ScalerKind, ScalerRef, Signal};
use crate::workload::{Owner, SlimMeta, Workload, WorkloadKind, typed_ref};

/// The label KServe puts on an InferenceService's pods and objects.
pub const ISVC_LABEL: &str = "serving.kserve.io/inferenceservice";
/// The label LeaderWorkerSet puts on every pod of a set.
pub const LWS_LABEL: &str = "leaderworkerset.sigs.k8s.io/name";
/// The label KAITO puts on a Workspace's pods.
pub const WORKSPACE_LABEL: &str = "kaito.sh/workspace";
/// The label KAITO puts on the Workspaces (and pods) of an InferenceSet.
pub const INFERENCESET_LABEL: &str = "inferenceset.kaito.sh/created-by";
/// The Azure VM size label a KAITO pod lands on.
const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";

/// The identities the AI operators run as in their upstream installs
/// (namespace and ServiceAccount of each project's own manifests and
/// chart): what `serve --operator-account` trusts by default. A write of
/// theirs of an object made from an AI-serving resource is judged through
/// that resource for workload-level rules.
pub const OPERATOR_ACCOUNTS: [&str; 5] = [
    // KServe config/rbac/service_account.yaml, namespace kserve.
    "system:serviceaccount:kserve:kserve-controller-manager",
    // KServe config/llmisvc (LLMInferenceService's own controller).
    "system:serviceaccount:kserve:llmisvc-controller-manager",
    // Knative Serving's controller makes a Revision's Deployment.
    "system:serviceaccount:knative-serving:controller",
    // LeaderWorkerSet config/default: namespace lws-system, prefix lws-.
    "system:serviceaccount:lws-system:lws-controller-manager",
    // KAITO's chart, installed as its docs do (release kaito-workspace).
    "system:serviceaccount:kaito-workspace:kaito-workspace-sa",
];

/// The main container KServe merges the `model:` spec into.
pub(crate) const KSERVE_CONTAINER: &str = "kserve-container";

/// The rules whose inputs a ServingRuntime supplies (image, probes,
/// tolerations and node selection): no verdict while it is unknown.
pub(crate) const RUNTIME_RULES: [RuleId; 3] = [
    RuleId::ImageProvenance,
    RuleId::Probes,
    RuleId::GpuPlacement,
];

/// The legacy framework forms of a predictor: one container each, like
/// `model:` with the format named by the key.
const FRAMEWORKS: [&str; 10] = [
    "sklearn",
    "xgboost",
    "pytorch",
    "triton",
    "tensorflow",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
];

/// An InferenceService predictor in its `model:` (or framework) form:
/// what KServe merges with a ServingRuntime.
#[derive(Clone, Debug, PartialEq)]
pub struct KserveModel {
    /// The container as written, without KServe's own keys.
    pub container: Value,
    /// `model.runtime`: a ServingRuntime, else a ClusterServingRuntime, of
    /// that name.
    pub runtime: Option<String>,
    /// `model.modelFormat.{name,version}` (or the framework key).
    pub format: Option<String>,
    pub format_version: Option<String>,
    /// `model.protocolVersion` (`v1` unless set).
    pub protocol: String,
    /// `model.runtimeVersion`: replaces the runtime image's tag.
    pub runtime_version: Option<String>,
    /// `spec.predictor.workerSpec` is set.
    pub multinode: bool,
    /// The runtime KServe already chose (`status.servingRuntimeName` or
    /// `status.clusterServingRuntimeName`; true for the cluster kind).
    pub chosen: Option<(bool, String)>,
}

/// A ServingRuntime or ClusterServingRuntime, as far as choosing and
/// merging one goes.
#[derive(Clone, Debug, PartialEq)]
pub struct ServingRuntime {
    /// None: a ClusterServingRuntime.
    pub namespace: Option<String>,
    pub name: String,
    pub disabled: bool,
    pub multi_model: bool,
    /// `supportedModelFormats[]`: (name, version, autoSelect, priority).
    pub formats: Vec<(String, Option<String>, bool, Option<i64>)>,
    /// `protocolVersions` (KServe reads none as `v1`).
    pub protocols: Vec<String>,
    pub has_worker_spec: bool,
    /// `metadata.creationTimestamp` as written (RFC 3339 sorts as text).
    pub created: String,
    /// The runtime's `spec` (containers, nodeSelector, tolerations, …).
    pub spec: Value,
}

impl ServingRuntime {
    /// Reads a ServingRuntime or ClusterServingRuntime.
    pub fn from_value(object: &Value, at: &str) -> Result<ServingRuntime> {
        let cluster = object.get("kind").and_then(Value::as_str) == Some("ClusterServingRuntime");
        let meta = object.get("metadata").cloned().unwrap_or(Value::Null);
        let spec = object.get("spec").cloned().unwrap_or(Value::Null);
        if !spec.is_object() {
            return Err(Error::input(
                at,
                "spec is missing: a runtime needs its containers",
            ));
        }
        let containers = spec.get("containers");
        if !containers.is_some_and(Value::is_array) {
            return Err(Error::input(at, "spec.containers must be a list"));
        }
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let formats = spec
            .get("supportedModelFormats")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| {
                Some((
                    s(f, "name")?,
                    s(f, "version"),
                    f.get("autoSelect").and_then(Value::as_bool) == Some(true),
                    f.get("priority").and_then(Value::as_i64),
                ))
            })
            .collect();
        let protocols = spec
            .get("protocolVersions")
            .and_then(Value::as_array)
            .map(|p| {
                p.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| vec!["v1".to_owned()]);
        Ok(ServingRuntime {
            namespace: if cluster { None } else { s(&meta, "namespace") },
            name: s(&meta, "name").unwrap_or_default(),
            disabled: spec.get("disabled").and_then(Value::as_bool) == Some(true),
            multi_model: spec.get("multiModel").and_then(Value::as_bool) == Some(true),
            formats,
            protocols,
            has_worker_spec: spec.get("workerSpec").is_some_and(|w| !w.is_null()),
            created: s(&meta, "creationTimestamp").unwrap_or_default(),
            spec,
        })
    }

    /// `ServingRuntime ml/x` or `ClusterServingRuntime x`.
    pub fn display_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("ServingRuntime {ns}/{}", self.name),
            None => format!("ClusterServingRuntime {}", self.name),
        }
    }

    /// The highest priority it gives `format` among its auto-selectable
    /// entries that match (name, and version where the model names one).
    pub(crate) fn auto_priority(&self, format: &str, version: Option<&str>) -> Option<i64> {
        self.formats
            .iter()
            .filter(|(n, v, auto, _)| {
                *auto && n == format && (version.is_none() || v.as_deref() == version)
            })
            .map(|(_, _, _, p)| p.unwrap_or(0))
            .max()
    }
}

/// Reads one of the AI-serving kinds.
pub(crate) fn read(
    kind: WorkloadKind,
    object: &Value,
    at: &str,
    default_namespace: &str,
) -> Result<Workload> {
    let meta: SlimMeta = match object.get("metadata") {
        None | Some(Value::Null) => SlimMeta::default(),
        Some(m) => typed_ref(m, at).map_err(|e| prefix(e, "metadata"))?,
    };
    match kind {
        WorkloadKind::InferenceService => inference_service(object, meta, at, default_namespace),
        WorkloadKind::LLMInferenceService => {
            llm_inference_service(object, meta, at, default_namespace)
        }
        WorkloadKind::LeaderWorkerSet => leader_worker_set(object, meta, at, default_namespace),
        WorkloadKind::Workspace | WorkloadKind::InferenceSet => {
            kaito(kind, object, meta, at, default_namespace)
        }
        _ => Err(Error::input(at, "not an AI-serving resource")),
    }
}

/// Names the field an error was found under.
fn prefix(e: Error, field: &str) -> Error {
    match e {
        Error::Input { at, message } => Error::Input {
            at,
            message: match message.strip_prefix("field ") {
                Some(rest) => format!("field {field}.{rest}"),
                None => format!("field {field}: {message}"),
            },
        },
        other => other,
    }
}

/// The value at a pointer, None when absent or null.
fn at_ptr<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    v.pointer(pointer).filter(|x| !x.is_null())
}

fn int_at(v: &Value, pointer: &str, at: &str) -> Result<Option<i32>> {
    match at_ptr(v, pointer) {
        None => Ok(None),
        Some(x) => x
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                Error::input(
                    at,
                    format!(
                        "field {}: expected an integer, found {x}",
                        pointer.trim_start_matches('/').replace('/', ".")
                    ),
                )
            }),
    }
}

fn pod_at(object: &Value, pointer: &str, at: &str) -> Result<Option<PodSpec>> {
    typed_at(object, pointer, at, "a pod spec")
}

fn template_at(object: &Value, pointer: &str, at: &str) -> Result<Option<PodTemplateSpec>> {
    typed_at(object, pointer, at, "a pod template")
}

/// The object at `pointer` read as `what`, None when absent; an error
/// naming the field when it is not one.
fn typed_at<T: serde::de::DeserializeOwned>(
    object: &Value,
    pointer: &str,
    at: &str,
    what: &str,
) -> Result<Option<T>> {
    let field = || pointer.trim_start_matches('/').replace('/', ".");
    match at_ptr(object, pointer) {
        None => Ok(None),
        Some(v) if !v.is_object() => Err(Error::input(
            at,
            format!("field {}: expected {what}, found {v}", field()),
        )),
        Some(v) => typed_ref(v, at).map(Some).map_err(|e| prefix(e, &field())),
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A view of `pod` at `pod_path` with these pod labels.
fn view(
    kind: WorkloadKind,
    meta: SlimMeta,
    pod: PodSpec,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    default_namespace: &str,
    at: &str,
) -> Result<Workload> {
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(pod),
    };
    Workload::assemble(kind, meta, None, None, template, default_namespace, at)
}

/// A further view of the same object: another pod template.
fn part(
    main: &Workload,
    what: &'static str,
    pod: PodSpec,
    pod_path: &'static str,
    template_meta_path: &'static str,
    labels: BTreeMap<String, String>,
) -> Workload {
    let mut p = main.clone();
    p.parts.clear();
    p.part = Some(what);
    p.pod = pod;
    p.pod_path = pod_path;
    p.template_meta_path = template_meta_path;
    p.template_labels = labels;
    p.container_paths.clear();
    p.kserve = None;
    p.own_scaler = None;
    p.unjudged.clear();
    p
}

fn inference_service(
    object: &Value,
    meta: SlimMeta,
    at: &str,
    default_namespace: &str,
) -> Result<Workload> {
    let name = meta.name.clone().unwrap_or_default();
    let Some(predictor) = at_ptr(object, "/spec/predictor").filter(|p| p.is_object()) else {
        return Err(Error::input(
            at,
            "spec.predictor is missing: an InferenceService needs a predictor (KServe refuses \
             one without), so there is nothing to judge",
        ));
    };
    let mut pod = pod_at(object, "/spec/predictor", at)?.unwrap_or_default();
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.extend(string_map(predictor.get("labels")));
    labels.insert(ISVC_LABEL.into(), name.clone());
    labels.insert("component".into(), "predictor".into());
    labels.insert("app".into(), format!("isvc.{name}-predictor"));
    let annotations = string_map(predictor.get("annotations"));
    let multinode = predictor.get("workerSpec").is_some_and(|v| !v.is_null());

    // The model container: `model:` or one of the framework keys.
    let form = std::iter::once("model")
        .chain(FRAMEWORKS)
        .find_map(|k| predictor.get(k).filter(|v| v.is_object()).map(|v| (k, v)));
    let mut kserve = None;
    let mut container_paths = Vec::new();
    if let Some((key, model)) = form {
        let mut container: Container =
            typed_ref(model, at).map_err(|e| prefix(e, &format!("spec.predictor.{key}")))?;
        if container.name.is_empty() {
            container.name = KSERVE_CONTAINER.into();
        }
        let s = |k: &str| model.pointer(k).and_then(Value::as_str).map(str::to_owned);
        let mut raw = model.clone();
        if let Some(m) = raw.as_object_mut() {
            for k in [
                "modelFormat",
                "runtime",
                "runtimeVersion",
                "storageUri",
                "storage",
                "protocolVersion",
            ] {
                m.remove(k);
            }
        }
        let chosen = match (
            s_at(object, "/status/servingRuntimeName"),
            s_at(object, "/status/clusterServingRuntimeName"),
        ) {
            (Some(n), _) => Some((false, n)),
            (None, Some(n)) => Some((true, n)),
            _ => None,
        };
        kserve = Some(Box::new(KserveModel {
            container: raw,
            runtime: s("/runtime"),
            format: if key == "model" {
                s("/modelFormat/name")
            } else {
                Some(key.to_owned())
            },
            format_version: s("/modelFormat/version"),
            protocol: s("/protocolVersion").unwrap_or_else(|| "v1".into()),
            runtime_version: s("/runtimeVersion"),
            multinode,
            chosen,
        }));
        container_paths.push(format!("/spec/predictor/{key}"));
        container_paths
            .extend((0..pod.containers.len()).map(|i| format!("/spec/predictor/containers/{i}")));
        pod.containers.insert(0, container);
    }

    let replicas = int_at(object, "/spec/predictor/minReplicas", at)?;
    let max = int_at(object, "/spec/predictor/maxReplicas", at)?.filter(|m| *m > 0);
    let mut w = view(
        WorkloadKind::InferenceService,
        meta,
        pod,
        labels.clone(),
        annotations,
        default_namespace,
        at,
    )?;
    w.pod_path = "/spec/predictor";
    w.template_meta_path = "/spec/predictor";
    w.replicas = replicas;
    w.replicas_path = "/spec/predictor/minReplicas";
    w.container_paths = container_paths;
    w.kserve = kserve;
    w.own_scaler = isvc_scaler(object, &w, replicas, max)?.map(Box::new);

    for (key, what, path) in [
        ("transformer", "transformer", "/spec/transformer"),
        ("explainer", "explainer", "/spec/explainer"),
    ] {
        if let Some(pod) = pod_at(object, path, at)? {
            let mut l = labels.clone();
            l.insert("component".into(), key.into());
            l.insert("app".into(), format!("isvc.{name}-{key}"));
            w.parts.push(part(&w, what, pod, path, path, l));
        }
    }
    if let Some(pod) = pod_at(object, "/spec/predictor/workerSpec", at)? {
        let mut l = labels;
        l.insert("app".into(), format!("isvc.{name}-predictor-worker"));
        w.parts.push(part(
            &w,
            "workerSpec",
            pod,
            "/spec/predictor/workerSpec",
            "/spec/predictor",
            l,
        ));
    }
    if multinode {
        spans_pods(&mut w, "its head and workerSpec pods");
    }
    Ok(w)
}

/// The model server runs across several pods (tensor and pipeline
/// parallel over a group): what one container sees of the GPUs says
/// nothing of what the server has, so the GPU-count rules stand aside.
fn spans_pods(w: &mut Workload, how: &str) {
    let why = format!(
        "the model server spans {how}: its parallelism is over the GPUs of the whole group, \
         which one pod's request does not show"
    );
    for rule in [RuleId::ModelFit, RuleId::GpuRightSize] {
        w.unjudged.push((rule, why.clone()));
        for p in &mut w.parts {
            p.unjudged.push((rule, why.clone()));
        }
    }
}

fn s_at(v: &Value, pointer: &str) -> Option<String> {
    at_ptr(v, pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// KServe's deployment mode: `status.deploymentMode`, else the
/// annotation, else the mode KServe's defaulter leaves (Knative: it
/// writes the annotation only when the configured default is Standard or
/// ModelMesh, and it runs before any validating webhook, so the webhook
/// and the audit never need KServe's config; `check`, which has no
/// defaulter in front of it, applies [`default_deployment_mode`]).
pub fn deployment_mode(object: &Value) -> &'static str {
    written_mode(object)
        .as_deref()
        .and_then(mode_named)
        .unwrap_or("Knative")
}

/// The mode `status.deploymentMode` or the annotation names, as written.
fn written_mode(object: &Value) -> Option<String> {
    s_at(object, "/status/deploymentMode").or_else(|| {
        s_at(
            object,
            "/metadata/annotations/serving.kserve.io~1deploymentMode",
        )
    })
}

/// A deployment mode KServe knows, in today's names (`Serverless` is
/// `Knative`, `RawDeployment` is `Standard`).
fn mode_named(name: &str) -> Option<&'static str> {
    match name {
        "Serverless" | "Knative" => Some("Knative"),
        "RawDeployment" | "Standard" => Some("Standard"),
        "ModelMesh" => Some("ModelMesh"),
        _ => None,
    }
}

/// KServe's configuration: `deploy.defaultDeploymentMode` is the mode of
/// an InferenceService that names none.
pub const KSERVE_CONFIG: &str = "inferenceservice-config";

const DEPLOYMENT_MODE: &str = "serving.kserve.io/deploymentMode";

/// The default deployment mode in KServe's `inferenceservice-config`
/// ConfigMap, in today's names (`Serverless` is `Knative`,
/// `RawDeployment` is `Standard`); None when it has no `deploy` key. An
/// error, as KServe's own reader gives one, when the key is not JSON or
/// names no mode KServe knows.
pub fn kserve_default_mode(configmap: &Value, at: &str) -> Result<Option<&'static str>> {
    let Some(deploy) = configmap.pointer("/data/deploy") else {
        return Ok(None);
    };
    let text = deploy.as_str().ok_or_else(|| {
        Error::input(
            at,
            format!("data.deploy: expected a JSON string, found {deploy}"),
        )
    })?;
    let config: Value = serde_json::from_str(text)
        .map_err(|e| Error::input(at, format!("data.deploy is not JSON: {e}")))?;
    match config.get("defaultDeploymentMode").and_then(Value::as_str) {
        None | Some("") => Err(Error::input(
            at,
            "data.deploy: defaultDeploymentMode is required (KServe refuses this config)",
        )),
        Some(name) => mode_named(name).map(Some).ok_or_else(|| {
            Error::input(
                at,
                format!(
                    "data.deploy: defaultDeploymentMode {name:?} is not a mode KServe knows \
                     (Knative or Serverless, Standard or RawDeployment, ModelMesh)"
                ),
            )
        }),
    }
}

/// Whether an InferenceService's status or annotation names its mode.
pub fn names_deployment_mode(object: &Value) -> bool {
    written_mode(object).is_some()
}

/// What KServe's defaulter does before any validating webhook sees an
/// InferenceService: with no mode in its status or annotation, it writes
/// the configured default onto the annotation when that is Standard or
/// ModelMesh (Knative it leaves unwritten). True when it wrote one.
pub fn default_deployment_mode(object: &mut Value, default: &str) -> bool {
    if names_deployment_mode(object) || default == "Knative" {
        return false;
    }
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return false;
    };
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if annotations.is_null() {
        *annotations = Value::Object(Default::default());
    }
    match annotations.as_object_mut() {
        Some(a) => {
            a.insert(DEPLOYMENT_MODE.into(), Value::String(default.into()));
            true
        }
        None => false,
    }
}

/// The autoscaler KServe makes from the predictor's own fields.
fn isvc_scaler(
    object: &Value,
    w: &Workload,
    min: Option<i32>,
    max: Option<i32>,
) -> Result<Option<ScalerRef>> {
    let class = s_at(
        object,
        "/metadata/annotations/serving.kserve.io~1autoscalerClass",
    )
    .unwrap_or_else(|| "hpa".into());
    let metric = s_at(object, "/spec/predictor/scaleMetric");
    let listed: Vec<Signal> = at_ptr(object, "/spec/predictor/autoScaling/metrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            let t = m.get("type").and_then(Value::as_str).unwrap_or_default();
            match t {
                "Resource" => Signal {
                    source: "Resource".into(),
                    metric: s_at(m, "/resource/name").unwrap_or_else(|| "cpu".into()),
                },
                "External" => Signal {
                    source: "External".into(),
                    metric: s_at(m, "/external/metric/query")
                        .or_else(|| s_at(m, "/external/metric/backend"))
                        .unwrap_or_else(|| "external".into()),
                },
                other => Signal {
                    source: other.to_owned(),
                    metric: s_at(m, "/podmetric/metric/metricQuery")
                        .or_else(|| s_at(m, "/podmetric/metric/metricNames/0"))
                        .unwrap_or_else(|| other.to_owned()),
                },
            }
        })
        .collect();
    let resource = |name: &str| Signal {
        source: "Resource".into(),
        metric: name.into(),
    };
    let predictor = format!("{}-predictor", w.name);
    let own = |kind, min: i32, max: i32, signals: Vec<Signal>| ScalerRef {
        kind,
        namespace: w.namespace.clone(),
        name: predictor.clone(),
        target_kind: WorkloadKind::InferenceService.as_str().into(),
        target_name: w.name.clone(),
        min_replicas: min,
        max_replicas: max,
        signals,
        metrics: MetricsField::List,
        own: Some("/spec/predictor"),
    };
    Ok(match (deployment_mode(object), class.as_str()) {
        ("ModelMesh", _) | ("Standard", "none" | "external") => None,
        ("Standard", "keda") => {
            let min = min.unwrap_or(1).max(0);
            let signals = if listed.is_empty() {
                vec![resource("cpu")]
            } else {
                listed
            };
            Some(own(
                ScalerKind::ScaledObject,
                min,
                max.unwrap_or(min).max(min),
                signals,
            ))
        }
        ("Standard", _) => {
            // The HPA's floor is never below 1; with maxReplicas unset
            // its ceiling is its floor.
            let min = min.unwrap_or(1).max(1);
            let signals = if !listed.is_empty() {
                listed
            } else {
                vec![resource(metric.as_deref().unwrap_or("cpu"))]
            };
            Some(own(
                ScalerKind::HorizontalPodAutoscaler,
                min,
                max.unwrap_or(min).max(min),
                signals,
            ))
        }
        _ => {
            // Knative's autoscaler: min-scale is minReplicas (0 scales to
            // zero), unset means 1; no max-scale is no ceiling. It scales
            // on requests in flight unless told otherwise.
            let min = min.unwrap_or(1).max(0);
            let signals = vec![match metric.as_deref() {
                Some(m @ ("cpu" | "memory")) => resource(m),
                Some(m) => Signal {
                    source: "Knative".into(),
                    metric: m.into(),
                },
                None => Signal {
                    source: "Knative".into(),
                    metric: "concurrency".into(),
                },
            }];
            Some(own(
                ScalerKind::KnativePodAutoscaler,
                min,
                max.unwrap_or(i32::MAX).max(min),
                signals,
            ))
        }
    })
}

fn llm_inference_service(
    object: &Value,
    meta: SlimMeta,
    at: &str,
    default_namespace: &str,
) -> Result<Workload> {
    let name = meta.name.clone().unwrap_or_default();
    let mut labels = string_map(at_ptr(object, "/spec/labels"));
    labels.insert("app.kubernetes.io/name".into(), name.clone());
    labels.insert(
        "app.kubernetes.io/part-of".into(),
        "llminferenceservice".into(),
    );
    labels.insert(
        "app.kubernetes.io/component".into(),
        "llminferenceservice-workload".into(),
    );
    labels.insert("kserve.io/component".into(), "workload".into());
    let annotations = string_map(at_ptr(object, "/spec/annotations"));
    let template = pod_at(object, "/spec/template", at)?;
    let inherited = template
        .as_ref()
        .is_none_or(|p| p.containers.iter().any(|c| c.image.is_none()));
    let mut w = view(
        WorkloadKind::LLMInferenceService,
        meta,
        template.unwrap_or_default(),
        labels.clone(),
        annotations,
        default_namespace,
        at,
    )?;
    w.pod_path = "/spec/template";
    w.template_meta_path = "/spec";
    w.replicas = int_at(object, "/spec/replicas", at)?;
    if inherited {
        let why = "the image and probes come from the LLMInferenceServiceConfig it inherits \
                   (kserve-config-llm-template, spec.baseRefs), which is not judged here";
        w.unjudged.push((RuleId::ImageProvenance, why.into()));
        w.unjudged.push((RuleId::Probes, why.into()));
    }
    if let Some(scaling) = at_ptr(object, "/spec/scaling") {
        let min = int_at(object, "/spec/scaling/minReplicas", at)?.unwrap_or(1);
        let max = int_at(object, "/spec/scaling/maxReplicas", at)?.unwrap_or(min);
        let keda = scaling.pointer("/wva/keda").is_some_and(|k| !k.is_null())
            || scaling.get("keda").is_some_and(|k| !k.is_null());
        let signals = if scaling.get("wva").is_some_and(|k| !k.is_null()) {
            vec![Signal {
                source: "External".into(),
                metric: "wva_desired_replicas".into(),
            }]
        } else {
            scaling
                .pointer("/keda/triggers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|t| Signal {
                    source: s_at(t, "/type").unwrap_or_default(),
                    metric: s_at(t, "/metadata/query")
                        .or_else(|| s_at(t, "/type"))
                        .unwrap_or_default(),
                })
                .collect()
        };
        let (kind, suffix) = if keda {
            (ScalerKind::ScaledObject, "kserve-keda")
        } else {
            (ScalerKind::HorizontalPodAutoscaler, "kserve-hpa")
        };
        w.replicas_path = "/spec/scaling/minReplicas";
        w.own_scaler = Some(Box::new(ScalerRef {
            kind,
            namespace: w.namespace.clone(),
            name: format!("{name}-{suffix}"),
            target_kind: WorkloadKind::LLMInferenceService.as_str().into(),
            target_name: name.clone(),
            min_replicas: min,
            max_replicas: max,
            signals,
            metrics: MetricsField::List,
            own: Some("/spec/scaling"),
        }));
    }
    let mut prefill_labels = labels.clone();
    prefill_labels.insert(
        "app.kubernetes.io/component".into(),
        "llminferenceservice-workload-prefill".into(),
    );
    for (what, path, l) in [
        ("worker", "/spec/worker", &labels),
        (
            "prefill template",
            "/spec/prefill/template",
            &prefill_labels,
        ),
        ("prefill worker", "/spec/prefill/worker", &prefill_labels),
    ] {
        if let Some(pod) = pod_at(object, path, at)? {
            w.parts.push(part(&w, what, pod, path, "/spec", l.clone()));
        }
    }
    if at_ptr(object, "/spec/worker").is_some() || at_ptr(object, "/spec/prefill/worker").is_some()
    {
        spans_pods(&mut w, "the pods of a LeaderWorkerSet group (spec.worker)");
    }
    Ok(w)
}

fn leader_worker_set(
    object: &Value,
    meta: SlimMeta,
    at: &str,
    default_namespace: &str,
) -> Result<Workload> {
    const LEADER: &str = "/spec/leaderWorkerTemplate/leaderTemplate";
    const WORKER: &str = "/spec/leaderWorkerTemplate/workerTemplate";
    let name = meta.name.clone().unwrap_or_default();
    let worker = template_at(object, WORKER, at)?;
    let leader = template_at(object, LEADER, at)?;
    let labels_of = |t: &PodTemplateSpec, leader: bool| {
        let mut l = t
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        l.insert(LWS_LABEL.into(), name.clone());
        if leader {
            l.insert(
                "leaderworkerset.sigs.k8s.io/worker-index".into(),
                "0".into(),
            );
        }
        l
    };
    let Some(worker) = worker.filter(|t| t.spec.is_some()) else {
        return Err(Error::input(
            at,
            "spec.leaderWorkerTemplate.workerTemplate.spec is missing: a LeaderWorkerSet needs \
             its worker template (the apiserver refuses one without), so there is nothing to judge",
        ));
    };
    // The leader runs the worker template when it has none of its own.
    let (main, main_path, main_meta, rest) = match leader.filter(|t| t.spec.is_some()) {
        Some(l) => (
            l,
            "/spec/leaderWorkerTemplate/leaderTemplate/spec",
            "/spec/leaderWorkerTemplate/leaderTemplate/metadata",
            Some(worker),
        ),
        None => (
            worker,
            "/spec/leaderWorkerTemplate/workerTemplate/spec",
            "/spec/leaderWorkerTemplate/workerTemplate/metadata",
            None,
        ),
    };
    let annotations = main
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    let mut w = view(
        WorkloadKind::LeaderWorkerSet,
        meta,
        main.spec.clone().unwrap_or_default(),
        labels_of(&main, true),
        annotations,
        default_namespace,
        at,
    )?;
    w.pod_path = main_path;
    w.template_meta_path = main_meta;
    w.replicas = int_at(object, "/spec/replicas", at)?;
    if let Some(worker) = rest {
        let labels = labels_of(&worker, false);
        w.parts.push(part(
            &w,
            "worker template",
            worker.spec.unwrap_or_default(),
            "/spec/leaderWorkerTemplate/workerTemplate/spec",
            "/spec/leaderWorkerTemplate/workerTemplate/metadata",
            labels,
        ));
    }
    let size = int_at(object, "/spec/leaderWorkerTemplate/size", at)?.unwrap_or(1);
    if size > 1 {
        spans_pods(&mut w, &format!("the {size} pods of each group"));
    }
    Ok(w)
}

fn kaito(
    kind: WorkloadKind,
    object: &Value,
    meta: SlimMeta,
    at: &str,
    default_namespace: &str,
) -> Result<Workload> {
    let name = meta.name.clone().unwrap_or_default();
    let (root, instance_path, pod_path, meta_path) = if kind == WorkloadKind::Workspace {
        (
            "",
            "/resource/instanceType",
            "/inference/template/spec",
            "/inference/template/metadata",
        )
    } else {
        (
            "/spec/template",
            "/spec/template/resource/instanceType",
            "/spec/template/inference/template/spec",
            "/spec/template/inference/template/metadata",
        )
    };
    let template = template_at(object, &format!("{root}/inference/template"), at)?;
    let instance_type = s_at(object, instance_path);
    let mut labels = template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if kind == WorkloadKind::Workspace {
        labels.insert(WORKSPACE_LABEL.into(), name.clone());
    } else {
        labels.insert(INFERENCESET_LABEL.into(), name.clone());
    }
    let annotations = template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    // A preset's pod is KAITO's own: nothing in it is the user's to judge.
    let mut pod = template.and_then(|t| t.spec).unwrap_or_default();
    // KAITO places the pods on the VM size it asks for (by node affinity
    // of its own): the view selects it, so what reads GPU memory from the
    // size (model-fit) knows the GPU.
    if let Some(t) = &instance_type {
        pod.node_selector
            .get_or_insert_with(BTreeMap::new)
            .insert(INSTANCE_TYPE.into(), t.clone());
    }
    let mut w = view(kind, meta, pod, labels, annotations, default_namespace, at)?;
    w.pod_path = pod_path;
    w.template_meta_path = meta_path;
    w.instance_type = instance_type.map(|t| (t, instance_path));
    if kind == WorkloadKind::InferenceSet {
        w.replicas = int_at(object, "/spec/replicas", at)?;
    }
    Ok(w)
}

/// The AI-serving resource an operator makes this kind of object from:
/// (owner group, owner kind) → the kinds it makes. A LeaderWorkerSet's
/// worker StatefulSets are owned by the leader Pod; a Knative Revision
/// owns the Deployment of an InferenceService in Knative mode.
pub fn made_from(owner: &Owner, child: WorkloadKind) -> bool {
    matches!(
        (owner.group.as_str(), owner.kind.as_str(), child),
        (
            "serving.kserve.io",
            "InferenceService",
            WorkloadKind::Deployment
        ) | (
            "serving.kserve.io",
            "LLMInferenceService",
            WorkloadKind::Deployment | WorkloadKind::LeaderWorkerSet
        ) | (
            "leaderworkerset.x-k8s.io",
            "LeaderWorkerSet",
            WorkloadKind::StatefulSet
        ) | (
            "kaito.sh",
            "Workspace",
            WorkloadKind::StatefulSet | WorkloadKind::Deployment
        ) | ("kaito.sh", "InferenceSet", WorkloadKind::Workspace)
            | ("serving.knative.dev", "Revision", WorkloadKind::Deployment)
            | ("", "Pod", WorkloadKind::StatefulSet)
    )
}

/// The requester is an operator the policy trusts to make objects from
/// AI-serving resources, and the object names one of those as its
/// controller: workload-level rules were judged at the resource.
pub fn operator_source(w: &Workload, username: &str, operators: &[String]) -> Option<Owner> {
    if !operators.iter().any(|o| o == username) {
        return None;
    }
    let owner = w.controller()?;
    made_from(owner, w.kind).then(|| owner.clone())
}

pub mod merge;

#[cfg(test)]
mod tests;
