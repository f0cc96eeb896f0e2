//! Deployment | StatefulSet | DaemonSet | ReplicaSet | ReplicationController
//! | Job | CronJob | Pod, and the AI-serving resources (KServe
//! InferenceService and LLMInferenceService, LeaderWorkerSet, KAITO
//! Workspace and InferenceSet; see `ai`) → one view of the pod template. Rules see only this view, so a rule is written once for
//! every kind, and each view knows the JSON pointer of its pod spec so that
//! patches land in the right place.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSetSpec, DeploymentSpec, ReplicaSetSpec, StatefulSetSpec};
use k8s_openapi::api::batch::v1::{CronJobSpec, JobSpec};
use k8s_openapi::api::core::v1::{
    PodSpec, PodTemplateSpec, ReplicationControllerSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The kinds whose pod templates the engine can judge.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    Pod,
    ReplicaSet,
    Job,
    CronJob,
    DaemonSet,
    ReplicationController,
    InferenceService,
    LLMInferenceService,
    LeaderWorkerSet,
    Workspace,
    InferenceSet,
}

impl WorkloadKind {
    /// Every kind, in the order the CRD lists them.
    pub const ALL: [WorkloadKind; 13] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::Pod,
        WorkloadKind::ReplicaSet,
        WorkloadKind::Job,
        WorkloadKind::CronJob,
        WorkloadKind::DaemonSet,
        WorkloadKind::ReplicationController,
        WorkloadKind::InferenceService,
        WorkloadKind::LLMInferenceService,
        WorkloadKind::LeaderWorkerSet,
        WorkloadKind::Workspace,
        WorkloadKind::InferenceSet,
    ];

    /// The AI-serving resources: judged in their own fields (see `ai`).
    pub fn is_ai_resource(self) -> bool {
        matches!(
            self,
            WorkloadKind::InferenceService
                | WorkloadKind::LLMInferenceService
                | WorkloadKind::LeaderWorkerSet
                | WorkloadKind::Workspace
                | WorkloadKind::InferenceSet
        )
    }

    /// The kind for an apiVersion/kind pair, if it is a workload the engine
    /// knows. Retired API versions (extensions/v1beta1 …) are not served by
    /// any supported Kubernetes, so they are an input error, not a workload.
    pub fn from_type(api_version: &str, kind: &str) -> Option<WorkloadKind> {
        match (api_version, kind) {
            ("apps/v1", "Deployment") => Some(WorkloadKind::Deployment),
            ("apps/v1", "StatefulSet") => Some(WorkloadKind::StatefulSet),
            ("apps/v1", "ReplicaSet") => Some(WorkloadKind::ReplicaSet),
            ("apps/v1", "DaemonSet") => Some(WorkloadKind::DaemonSet),
            ("v1", "Pod") => Some(WorkloadKind::Pod),
            ("v1", "ReplicationController") => Some(WorkloadKind::ReplicationController),
            ("batch/v1", "Job") => Some(WorkloadKind::Job),
            ("batch/v1", "CronJob") => Some(WorkloadKind::CronJob),
            ("serving.kserve.io/v1beta1", "InferenceService") => {
                Some(WorkloadKind::InferenceService)
            }
            (
                "serving.kserve.io/v1alpha1" | "serving.kserve.io/v1alpha2",
                "LLMInferenceService",
            ) => Some(WorkloadKind::LLMInferenceService),
            ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet") => {
                Some(WorkloadKind::LeaderWorkerSet)
            }
            ("kaito.sh/v1beta1" | "kaito.sh/v1alpha1", "Workspace") => {
                Some(WorkloadKind::Workspace)
            }
            ("kaito.sh/v1beta1" | "kaito.sh/v1alpha1", "InferenceSet") => {
                Some(WorkloadKind::InferenceSet)
            }
            _ => None,
        }
    }

    /// True for a kind name the engine governs under an API version
    /// Kubernetes no longer serves.
    pub fn is_retired_version(api_version: &str, kind: &str) -> bool {
        matches!(
            kind,
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Pod" | "Job" | "CronJob"
        ) && Self::from_type(api_version, kind).is_none()
            && matches!(
                api_version,
                "extensions/v1beta1"
                    | "apps/v1beta1"
                    | "apps/v1beta2"
                    | "batch/v1beta1"
                    | "batch/v2alpha1"
            )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::Pod => "Pod",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::ReplicationController => "ReplicationController",
            WorkloadKind::InferenceService => "InferenceService",
            WorkloadKind::LLMInferenceService => "LLMInferenceService",
            WorkloadKind::LeaderWorkerSet => "LeaderWorkerSet",
            WorkloadKind::Workspace => "Workspace",
            WorkloadKind::InferenceSet => "InferenceSet",
        }
    }

    /// The resource the apiserver names in a webhook rule and a review's
    /// `request.resource`: (group, plural).
    pub fn resource(self) -> (&'static str, &'static str) {
        match self {
            WorkloadKind::Deployment => ("apps", "deployments"),
            WorkloadKind::StatefulSet => ("apps", "statefulsets"),
            WorkloadKind::DaemonSet => ("apps", "daemonsets"),
            WorkloadKind::ReplicaSet => ("apps", "replicasets"),
            WorkloadKind::ReplicationController => ("", "replicationcontrollers"),
            WorkloadKind::Job => ("batch", "jobs"),
            WorkloadKind::CronJob => ("batch", "cronjobs"),
            WorkloadKind::Pod => ("", "pods"),
            WorkloadKind::InferenceService => ("serving.kserve.io", "inferenceservices"),
            WorkloadKind::LLMInferenceService => ("serving.kserve.io", "llminferenceservices"),
            WorkloadKind::LeaderWorkerSet => ("leaderworkerset.x-k8s.io", "leaderworkersets"),
            WorkloadKind::Workspace => ("kaito.sh", "workspaces"),
            WorkloadKind::InferenceSet => ("kaito.sh", "inferencesets"),
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            WorkloadKind::Deployment
            | WorkloadKind::StatefulSet
            | WorkloadKind::ReplicaSet
            | WorkloadKind::DaemonSet => "apps/v1",
            WorkloadKind::Pod | WorkloadKind::ReplicationController => "v1",
            WorkloadKind::Job | WorkloadKind::CronJob => "batch/v1",
            WorkloadKind::InferenceService => "serving.kserve.io/v1beta1",
            WorkloadKind::LLMInferenceService => "serving.kserve.io/v1alpha1",
            WorkloadKind::LeaderWorkerSet => "leaderworkerset.x-k8s.io/v1",
            WorkloadKind::Workspace | WorkloadKind::InferenceSet => "kaito.sh/v1beta1",
        }
    }

    /// Kinds that run several identical pods behind one name: the ones an
    /// autoscaler can scale and a zone outage can take down at once, and
    /// where workload-level rules (replicas, zone spread, autoscaler,
    /// disruption budget) mean something. A DaemonSet runs one pod per
    /// node, a Job runs to completion, a Pod is one pod: none has a
    /// replica count to hold. A KAITO Workspace is one model instance
    /// (its StatefulSet's pods are the nodes of that one instance); a
    /// LeaderWorkerSet's replicas are its groups.
    pub fn is_replicated(self) -> bool {
        matches!(
            self,
            WorkloadKind::Deployment
                | WorkloadKind::StatefulSet
                | WorkloadKind::ReplicaSet
                | WorkloadKind::ReplicationController
                | WorkloadKind::InferenceService
                | WorkloadKind::LLMInferenceService
                | WorkloadKind::LeaderWorkerSet
                | WorkloadKind::InferenceSet
        )
    }

    /// JSON pointer of the pod spec inside the object.
    fn pod_spec_path(self) -> &'static str {
        match self {
            WorkloadKind::Pod => "/spec",
            WorkloadKind::CronJob => "/spec/jobTemplate/spec/template/spec",
            _ => "/spec/template/spec",
        }
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object that owns this one (an entry of `metadata.ownerReferences`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The API group of the owner (`apps`, `kaito.sh`; empty for core).
    pub group: String,
    pub kind: String,
    pub name: String,
    /// The uid the reference names: an owner is proven only by an object
    /// of that uid (see `ownership::judged_through`).
    pub uid: String,
    /// `controller: true`: the owner that manages this object.
    pub controller: bool,
}

impl Owner {
    /// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → ``).
    pub fn group_of(api_version: &str) -> &str {
        api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }
}

/// One workload, as the rules see it.
#[derive(Clone, Debug)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: String,
    /// `metadata.name`, or `generateName` followed by `*` for objects the
    /// apiserver will name.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Every owner reference, the controller among them.
    pub owners: Vec<Owner>,
    /// `metadata.uid`, where the object has one (it is set by the apiserver).
    pub uid: Option<String>,
    /// `metadata.deletionTimestamp` is set: the object is being deleted
    /// and only waits for its finalizers.
    pub deleting: bool,
    /// `spec.replicas` as written (None: omitted, which Kubernetes reads as 1).
    pub replicas: Option<i32>,
    /// `spec.selector` of replicated kinds.
    pub selector: Option<LabelSelector>,
    pub template_labels: BTreeMap<String, String>,
    /// The pod template's annotations (a bare Pod's own).
    pub template_annotations: BTreeMap<String, String>,
    /// How a Deployment or StatefulSet replaces its pods (None: other kinds).
    pub rollout: Option<Rollout>,
    pub pod: PodSpec,
    /// JSON pointer of `pod` inside the object.
    pub pod_path: &'static str,
    /// JSON pointer of the pod template's metadata (empty: the object's own).
    pub template_meta_path: &'static str,
    /// JSON pointer of the replica count (`/spec/replicas`,
    /// `/spec/predictor/minReplicas`).
    pub replicas_path: &'static str,
    /// Pointers of the app containers where they are not
    /// `{pod_path}/containers/{i}`: an InferenceService's model container
    /// sits at `/spec/predictor/model`, its other containers after it.
    pub container_paths: Vec<String>,
    /// Further pod templates of the same object (a LeaderWorkerSet's
    /// workers, an InferenceService's transformer), each a view of its
    /// own: pod-level rules hold there too, workload-level rules once,
    /// here.
    pub parts: Vec<Workload>,
    /// This view is one of [`Workload::parts`]: what it is (`worker
    /// template`).
    pub part: Option<&'static str>,
    /// The autoscaling the resource sets in its own fields (KServe makes
    /// the HPA or KEDA object from them).
    pub own_scaler: Option<Box<crate::scaler::ScalerRef>>,
    /// An AI-serving resource this object was made from (its operator
    /// wrote it, proven by the requester or by the resource being in the
    /// input): workload-level rules were judged there, and hold there.
    pub source: Option<Owner>,
    /// Rules that cannot be judged on this object, and why (the
    /// ServingRuntime that supplies the image and probes is unknown).
    pub unjudged: Vec<(crate::rule_list::RuleId, String)>,
    /// A KAITO resource's VM size (`resource.instanceType`) and its pointer.
    pub instance_type: Option<(String, &'static str)>,
    /// An InferenceService's predictor in its `model:` form: merged with
    /// its ServingRuntime when judged (see `ai::resolve`).
    pub kserve: Option<Box<crate::ai::KserveModel>>,
    /// The ServingRuntime merged into the view (`ServingRuntime ml/x`).
    pub runtime_source: Option<String>,
}

/// How a Deployment (`strategy`) or StatefulSet (`updateStrategy`) rolls
/// out a new template, as written (None: omitted).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rollout {
    /// `RollingUpdate`, `Recreate` (Deployment) or `OnDelete` (StatefulSet).
    pub strategy: Option<String>,
    pub max_unavailable: Option<IntOrString>,
    pub max_surge: Option<IntOrString>,
    pub revision_history_limit: Option<i32>,
}

/// Which list of the pod spec a container sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerRole {
    Init,
    App,
    Ephemeral,
}

impl ContainerRole {
    /// The pod spec field that holds containers of this role.
    pub fn field(self) -> &'static str {
        match self {
            ContainerRole::Init => "initContainers",
            ContainerRole::App => "containers",
            ContainerRole::Ephemeral => "ephemeralContainers",
        }
    }
}

/// One container of any role, with its JSON pointer.
#[derive(Clone, Debug)]
pub struct ContainerView<'a> {
    pub role: ContainerRole,
    pub index: usize,
    pub name: &'a str,
    pub image: Option<&'a str>,
    /// None for ephemeral containers, which cannot have resources.
    pub resources: Option<&'a ResourceRequirements>,
    pub path: String,
}

/// Where an image reference is written: a container's `image`, or an image
/// volume's `reference` (`spec.volumes[].image`: models shipped as OCI
/// artifacts). Everything that reads images reads both.
#[derive(Clone, Debug)]
pub struct ImageView<'a> {
    /// How a message names the holder: `container "llm"`, `volume "weights"`.
    pub who: String,
    /// The reference as written; None or empty when missing.
    pub reference: Option<&'a str>,
    /// The volume's `pullPolicy`, or the container's `imagePullPolicy`.
    pub pull_policy: Option<&'a str>,
    /// JSON pointer to the reference itself.
    pub path: String,
    /// True for an image volume.
    pub volume: bool,
}

impl ContainerView<'_> {
    /// How a message names this container: `container "llm"`,
    /// `init container "fetch-model"`.
    pub fn describe(&self) -> String {
        match self.role {
            ContainerRole::App => format!("container \"{}\"", self.name),
            ContainerRole::Init => format!("init container \"{}\"", self.name),
            ContainerRole::Ephemeral => format!("ephemeral container \"{}\"", self.name),
        }
    }
}

impl Workload {
    /// Whether a label selector of a policy or an exception matches the
    /// workload: by its own labels or by its pod template's, since
    /// operators (KAITO, KServe) put the user's labels only on the pods
    /// they create.
    pub fn selected_by(&self, s: &kube::core::Selector) -> bool {
        use kube::core::SelectorExt;
        s.matches(&self.labels) || s.matches(&self.template_labels)
    }

    /// Reads a workload from a Kubernetes object. `Ok(None)` when the
    /// object is not of a workload kind; an error naming the field when it
    /// is one but does not parse. `default_namespace` is used when the
    /// object names none (the apiserver's request namespace, or `default`).
    pub fn from_value(
        object: serde_json::Value,
        default_namespace: &str,
    ) -> Result<Option<Workload>> {
        Self::from_value_ref(&object, default_namespace)
    }

    /// [`Workload::from_value`] of a borrowed object: nothing of it is cloned.
    pub fn from_value_ref(
        object: &serde_json::Value,
        default_namespace: &str,
    ) -> Result<Option<Workload>> {
        let api_version = object
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let kind = object
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        if WorkloadKind::is_retired_version(&api_version, &kind) {
            return Err(Error::input(
                format!("{kind} {}", object_name(object)),
                format!(
                    "apiVersion {api_version} is no longer served by Kubernetes; use {}",
                    if kind == "CronJob" || kind == "Job" {
                        "batch/v1"
                    } else {
                        "apps/v1"
                    }
                ),
            ));
        }
        let Some(wk) = WorkloadKind::from_type(&api_version, &kind) else {
            return Ok(None);
        };
        let at = format!("{kind} {}", object_name(object));
        Self::from_source(wk, object, &at, default_namespace).map(Some)
    }

    /// [`Workload::from_value`] for an object still in JSON text (the
    /// webhook's `request.object`): read straight into k8s-openapi types
    /// with no intermediate tree. An object that does not read cleanly
    /// takes the `Value` road, so its error names the field just the same.
    pub fn from_json(raw: &str, default_namespace: &str) -> Result<Option<Workload>> {
        if let Some(fast) = Self::from_json_fast(raw, default_namespace) {
            return Ok(fast);
        }
        let object: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| Error::input("the object", format!("not JSON: {e}")))?;
        Self::from_value(object, default_namespace)
    }

    /// [`Workload::from_json`] for an object whose type the caller knows
    /// (the webhook: `request.kind`, as `apps/v1`, `Deployment`): one pass
    /// over the text fewer. An object that turns out to be of another type
    /// than it was sent as, or not to read cleanly, takes the
    /// [`Workload::from_json`] road, so the answer is the same.
    pub fn from_json_as(
        raw: &str,
        default_namespace: &str,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<Workload>> {
        if let Some(seed) = ReadAs::for_type(api_version, kind, default_namespace) {
            use serde::de::DeserializeSeed;
            let mut text = serde_json::Deserializer::from_str(raw);
            if let Ok(w) = seed.deserialize(&mut text)
                && text.end().is_ok()
            {
                return Ok(Some(w));
            }
        }
        Self::from_json(raw, default_namespace)
    }

    fn from_json_fast(raw: &str, default_namespace: &str) -> Option<Option<Workload>> {
        let head: Head<'_> = serde_json::from_str(raw).ok()?;
        if WorkloadKind::is_retired_version(&head.api_version, &head.kind) {
            return None;
        }
        let Some(wk) = WorkloadKind::from_type(&head.api_version, &head.kind) else {
            return Some(None);
        };
        Self::from_source(wk, JsonText(raw), "", default_namespace)
            .ok()
            .map(Some)
    }

    fn from_source(
        wk: WorkloadKind,
        object: impl Source,
        at: &str,
        default_namespace: &str,
    ) -> Result<Workload> {
        if wk.is_ai_resource() {
            let object = object.value(at)?;
            let at = if at.is_empty() {
                format!("{wk} {}", object_name(&object))
            } else {
                at.to_owned()
            };
            return crate::ai::read(wk, &object, &at, default_namespace);
        }
        Ok(match wk {
            WorkloadKind::Deployment => {
                let d: Slim<DeploymentSpec> = object.slim(at)?;
                let spec = d.spec.unwrap_or_default();
                let strategy = spec.strategy.unwrap_or_default();
                let rolling = strategy.rolling_update.unwrap_or_default();
                let rollout = Rollout {
                    strategy: strategy.type_,
                    max_unavailable: rolling.max_unavailable,
                    max_surge: rolling.max_surge,
                    revision_history_limit: spec.revision_history_limit,
                };
                let mut w = Self::assemble(
                    wk,
                    d.metadata,
                    spec.replicas,
                    Some(spec.selector),
                    spec.template,
                    default_namespace,
                    at,
                )?;
                w.rollout = Some(rollout);
                w
            }
            WorkloadKind::StatefulSet => {
                let s: Slim<StatefulSetSpec> = object.slim(at)?;
                let spec = s.spec.unwrap_or_default();
                let strategy = spec.update_strategy.unwrap_or_default();
                let rollout = Rollout {
                    strategy: strategy.type_,
                    max_unavailable: strategy.rolling_update.and_then(|r| r.max_unavailable),
                    max_surge: None,
                    revision_history_limit: spec.revision_history_limit,
                };
                let mut w = Self::assemble(
                    wk,
                    s.metadata,
                    spec.replicas,
                    Some(spec.selector),
                    spec.template,
                    default_namespace,
                    at,
                )?;
                w.rollout = Some(rollout);
                w
            }
            WorkloadKind::ReplicaSet => {
                let r: Slim<ReplicaSetSpec> = object.slim(at)?;
                let spec = r.spec.unwrap_or_default();
                Self::assemble(
                    wk,
                    r.metadata,
                    spec.replicas,
                    Some(spec.selector),
                    spec.template.unwrap_or_default(),
                    default_namespace,
                    at,
                )?
            }
            WorkloadKind::DaemonSet => {
                let d: Slim<DaemonSetSpec> = object.slim(at)?;
                let spec = d.spec.unwrap_or_default();
                Self::assemble(
                    wk,
                    d.metadata,
                    None,
                    Some(spec.selector),
                    spec.template,
                    default_namespace,
                    at,
                )?
            }
            WorkloadKind::ReplicationController => {
                let r: Slim<ReplicationControllerSpec> = object.slim(at)?;
                let spec = r.spec.unwrap_or_default();
                // A ReplicationController selects by a plain map; an
                // omitted selector defaults to the template's labels.
                let mut w = Self::assemble(
                    wk,
                    r.metadata,
                    spec.replicas,
                    None,
                    spec.template.unwrap_or_default(),
                    default_namespace,
                    at,
                )?;
                let labels = spec.selector.unwrap_or_else(|| w.template_labels.clone());
                w.selector = Some(LabelSelector {
                    match_labels: Some(labels),
                    match_expressions: None,
                });
                w
            }
            WorkloadKind::Job => {
                let j: Slim<JobSpec> = object.slim(at)?;
                let spec = j.spec.unwrap_or_default();
                Self::assemble(
                    wk,
                    j.metadata,
                    None,
                    None,
                    spec.template,
                    default_namespace,
                    at,
                )?
            }
            WorkloadKind::CronJob => {
                let c: Slim<CronJobSpec> = object.slim(at)?;
                let template = c
                    .spec
                    .unwrap_or_default()
                    .job_template
                    .spec
                    .map(|s| s.template)
                    .unwrap_or_default();
                Self::assemble(wk, c.metadata, None, None, template, default_namespace, at)?
            }
            WorkloadKind::Pod => {
                let p: Slim<PodSpec> = object.slim(at)?;
                let labels = p.metadata.labels.clone().unwrap_or_default();
                let template = PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        annotations: p.metadata.annotations.clone(),
                        ..Default::default()
                    }),
                    spec: p.spec,
                };
                Self::assemble(wk, p.metadata, None, None, template, default_namespace, at)?
            }
            // Read above, from the whole object.
            WorkloadKind::InferenceService
            | WorkloadKind::LLMInferenceService
            | WorkloadKind::LeaderWorkerSet
            | WorkloadKind::Workspace
            | WorkloadKind::InferenceSet => {
                return Err(Error::input(
                    at,
                    "an AI-serving resource is read whole (ai::read)",
                ));
            }
        })
    }

    /// One view of any kind. A workload without its pod spec is refused:
    /// the apiserver refuses it too, and every patch a rule would emit
    /// points below a field that is not there, so the patch would not
    /// apply (found by fuzz/admission_review).
    pub(crate) fn assemble(
        kind: WorkloadKind,
        meta: SlimMeta,
        replicas: Option<i32>,
        selector: Option<LabelSelector>,
        template: PodTemplateSpec,
        default_namespace: &str,
        at: &str,
    ) -> Result<Workload> {
        let Some(pod) = template.spec else {
            let field = kind
                .pod_spec_path()
                .trim_start_matches('/')
                .replace('/', ".");
            return Err(Error::input(
                at,
                format!(
                    "{field} is missing: a {kind} needs a pod spec with its containers \
                     (the apiserver refuses one without), so there is nothing to judge or patch"
                ),
            ));
        };
        let name = match (meta.name, meta.generate_name) {
            (Some(n), _) if !n.is_empty() => n,
            (_, Some(g)) if !g.is_empty() => format!("{g}*"),
            _ => String::new(),
        };
        let owners = meta
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .map(|o| Owner {
                group: Owner::group_of(&o.api_version).to_owned(),
                kind: o.kind,
                name: o.name,
                uid: o.uid,
                controller: o.controller == Some(true),
            })
            .collect();
        Ok(Workload {
            kind,
            namespace: meta
                .namespace
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| default_namespace.to_owned()),
            name,
            labels: meta.labels.unwrap_or_default(),
            owners,
            uid: meta.uid.filter(|u| !u.is_empty()),
            deleting: meta.deletion_timestamp.is_some(),
            replicas,
            selector,
            template_labels: template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
            template_annotations: template
                .metadata
                .and_then(|m| m.annotations)
                .unwrap_or_default(),
            rollout: None,
            pod,
            pod_path: kind.pod_spec_path(),
            template_meta_path: match kind {
                WorkloadKind::Pod => "/metadata",
                WorkloadKind::CronJob => "/spec/jobTemplate/spec/template/metadata",
                _ => "/spec/template/metadata",
            },
            replicas_path: "/spec/replicas",
            container_paths: Vec::new(),
            parts: Vec::new(),
            part: None,
            own_scaler: None,
            source: None,
            unjudged: Vec::new(),
            instance_type: None,
            kserve: None,
            runtime_source: None,
        })
    }

    /// Whether workload-level rules (replicas and zone spread, autoscaler,
    /// disruption budget, rollout) judge this view: a replicated kind,
    /// not a further template of it, not made by an operator from a
    /// resource judged itself.
    pub fn holds_replicas(&self) -> bool {
        self.kind.is_replicated() && self.part.is_none() && self.source.is_none()
    }

    /// The replica count's field as a message names it: `spec.replicas`,
    /// `spec.predictor.minReplicas`.
    pub fn replicas_field(&self) -> String {
        self.replicas_path.trim_start_matches('/').replace('/', ".")
    }

    /// The pod spec's field as a message names it: `spec.template.spec`,
    /// `spec.predictor`.
    pub fn pod_field_name(&self) -> String {
        self.pod_path.trim_start_matches('/').replace('/', ".")
    }

    /// The pointer of the app container at `index`.
    pub fn container_path(&self, index: usize) -> String {
        match self.container_paths.get(index) {
            Some(p) => p.clone(),
            None => format!("{}/containers/{index}", self.pod_path),
        }
    }

    /// `InferenceService ml/llm`, or `LeaderWorkerSet ml/llm (worker
    /// template)` for a further view.
    pub fn describe_view(&self) -> String {
        match self.part {
            Some(part) => format!("{} ({part})", self.display_name()),
            None => self.display_name(),
        }
    }

    /// The owner that manages this object, if any.
    pub fn controller(&self) -> Option<&Owner> {
        self.owners.iter().find(|o| o.controller)
    }

    /// Every image: each container's (init, app, ephemeral), then each
    /// image volume's.
    pub fn images(&self) -> impl Iterator<Item = ImageView<'_>> {
        let base = self.pod_path;
        let pull = |role: ContainerRole, i: usize| -> Option<&str> {
            match role {
                ContainerRole::Init => self
                    .pod
                    .init_containers
                    .as_ref()?
                    .get(i)?
                    .image_pull_policy
                    .as_deref(),
                ContainerRole::App => self.pod.containers.get(i)?.image_pull_policy.as_deref(),
                ContainerRole::Ephemeral => self
                    .pod
                    .ephemeral_containers
                    .as_ref()?
                    .get(i)?
                    .image_pull_policy
                    .as_deref(),
            }
        };
        let containers = self.containers().map(move |c| ImageView {
            who: c.describe(),
            reference: c.image,
            pull_policy: pull(c.role, c.index),
            path: format!("{}/image", c.path),
            volume: false,
        });
        let volumes = self
            .pod
            .volumes
            .iter()
            .flatten()
            .enumerate()
            .filter_map(move |(i, v)| {
                let image = v.image.as_ref()?;
                Some(ImageView {
                    who: format!("volume \"{}\"", v.name),
                    reference: image.reference.as_deref(),
                    pull_policy: image.pull_policy.as_deref(),
                    path: format!("{base}/volumes/{i}/image/reference"),
                    volume: true,
                })
            });
        containers.chain(volumes)
    }

    /// Every container: init, then app, then ephemeral.
    pub fn containers(&self) -> impl Iterator<Item = ContainerView<'_>> {
        let base = self.pod_path;
        let init = self
            .pod
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(move |(i, c)| ContainerView {
                role: ContainerRole::Init,
                index: i,
                name: &c.name,
                image: c.image.as_deref(),
                resources: c.resources.as_ref(),
                path: format!("{base}/initContainers/{i}"),
            });
        let app = self
            .pod
            .containers
            .iter()
            .enumerate()
            .map(move |(i, c)| ContainerView {
                role: ContainerRole::App,
                index: i,
                name: &c.name,
                image: c.image.as_deref(),
                resources: c.resources.as_ref(),
                path: self.container_path(i),
            });
        let ephemeral = self
            .pod
            .ephemeral_containers
            .iter()
            .flatten()
            .enumerate()
            .map(move |(i, c)| ContainerView {
                role: ContainerRole::Ephemeral,
                index: i,
                name: &c.name,
                image: c.image.as_deref(),
                resources: None,
                path: format!("{base}/ephemeralContainers/{i}"),
            });
        init.chain(app).chain(ephemeral)
    }

    /// Containers that can carry resources (init and app).
    pub fn resourced_containers(&self) -> impl Iterator<Item = ContainerView<'_>> {
        self.containers()
            .filter(|c| c.role != ContainerRole::Ephemeral)
    }

    /// `Deployment ml/llm`
    pub fn display_name(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    /// The pointer to the pod template's metadata field: `/spec/template/metadata/labels`
    /// (a bare Pod's own `/metadata/labels`).
    pub fn template_field(&self, field: &str) -> String {
        format!("{}/{field}", self.template_meta_path)
    }

    /// The pointer to a pod spec field: `/spec/template/spec/nodeSelector`.
    pub fn pod_field(&self, field: &str) -> String {
        format!("{}/{field}", self.pod_path)
    }
}

/// `ml/llm` or `llm` for an error message, before the object is parsed.
fn object_name(object: &serde_json::Value) -> String {
    let meta = object.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("<unnamed>");
    match meta
        .and_then(|m| m.get("namespace"))
        .and_then(|n| n.as_str())
    {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// Where a workload's typed form is read from: a parsed tree, or JSON text.
trait Source {
    fn slim<S: DeserializeOwned>(self, at: &str) -> Result<Slim<S>>;
    /// The whole object as a tree (the AI-serving resources are read
    /// from one; see `ai`).
    fn value(self, at: &str) -> Result<serde_json::Value>;
}

impl Source for &serde_json::Value {
    fn slim<S: DeserializeOwned>(self, at: &str) -> Result<Slim<S>> {
        typed_ref(self, at)
    }
    fn value(self, _at: &str) -> Result<serde_json::Value> {
        Ok(self.clone())
    }
}

/// JSON text on the fast road: errors are not worded here, the caller goes
/// back to the `Value` road for them.
struct JsonText<'a>(&'a str);

impl Source for JsonText<'_> {
    fn slim<S: DeserializeOwned>(self, at: &str) -> Result<Slim<S>> {
        serde_json::from_str(self.0).map_err(|e| Error::input(at, e.to_string()))
    }
    fn value(self, at: &str) -> Result<serde_json::Value> {
        serde_json::from_str(self.0).map_err(|e| Error::input(at, e.to_string()))
    }
}

/// Reads a workload straight out of the document around it, as a
/// [`serde::de::DeserializeSeed`]: the webhook reads `request.object` in the
/// same pass as the rest of the AdmissionReview, as the type `request.kind`
/// (which comes before it) names. The object's own apiVersion and kind
/// must say the same. An object that does not read cleanly fails the whole
/// document, so the caller reads it again the slow way
/// ([`Workload::from_json_as`]), whose answer, and error, are the same.
pub struct ReadAs<'a> {
    pub kind: WorkloadKind,
    pub api_version: &'a str,
    pub kind_name: &'a str,
    pub default_namespace: &'a str,
}

impl ReadAs<'_> {
    /// The seed for a request of this type, if its objects are workloads
    /// the engine reads (retired versions are left to the slow road, which
    /// words their error).
    pub fn for_type<'a>(
        api_version: &'a str,
        kind_name: &'a str,
        default_namespace: &'a str,
    ) -> Option<ReadAs<'a>> {
        if WorkloadKind::is_retired_version(api_version, kind_name) {
            return None;
        }
        let kind = WorkloadKind::from_type(api_version, kind_name)?;
        Some(ReadAs {
            kind,
            api_version,
            kind_name,
            default_namespace,
        })
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for ReadAs<'_> {
    type Value = Workload;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Workload, D::Error> {
        let source = FromDeserializer {
            d,
            api_version: self.api_version,
            kind: self.kind_name,
        };
        Workload::from_source(self.kind, source, "", self.default_namespace)
            .map_err(serde::de::Error::custom)
    }
}

/// A workload read from a deserializer in the middle of a larger document.
struct FromDeserializer<'a, D> {
    d: D,
    api_version: &'a str,
    kind: &'a str,
}

impl<'de, D: serde::Deserializer<'de>> Source for FromDeserializer<'_, D> {
    fn slim<S: DeserializeOwned>(self, at: &str) -> Result<Slim<S>> {
        let slim = Slim::<S>::deserialize(self.d).map_err(|e| Error::input(at, e.to_string()))?;
        if slim.api_version.as_deref().unwrap_or_default() != self.api_version
            || slim.kind.as_deref().unwrap_or_default() != self.kind
        {
            return Err(Error::input(
                at,
                "the object is not of the type it was sent as",
            ));
        }
        Ok(slim)
    }
    fn value(self, at: &str) -> Result<serde_json::Value> {
        let v =
            serde_json::Value::deserialize(self.d).map_err(|e| Error::input(at, e.to_string()))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default();
        if field("apiVersion") != self.api_version || field("kind") != self.kind {
            return Err(Error::input(
                at,
                "the object is not of the type it was sent as",
            ));
        }
        Ok(v)
    }
}

/// A workload object as the engine reads it: the parts of `metadata` it
/// uses and the typed spec. Everything else — `status`, and the
/// `managedFields` and last-applied annotation that make up most of what
/// `kubectl apply` sends — is stepped over without being built. apiVersion
/// and kind are checked before (by [`Head`] or the `Value`), or here
/// ([`ReadAs`]).
#[derive(Deserialize)]
struct Slim<S> {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: SlimMeta,
    /// `null` or absent: None, as k8s-openapi reads it.
    #[serde(default = "Option::default")]
    spec: Option<S>,
}

/// The fields of `metadata` a workload view is built from; each reads as
/// k8s-openapi's `ObjectMeta` reads it (`null` is absent).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SlimMeta {
    pub(crate) name: Option<String>,
    pub(crate) generate_name: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) uid: Option<String>,
    pub(crate) labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "annotations")]
    pub(crate) annotations: Option<BTreeMap<String, String>>,
    pub(crate) owner_references: Option<Vec<OwnerReference>>,
    /// Only whether it is set matters.
    pub(crate) deletion_timestamp: Option<serde::de::IgnoredAny>,
}

/// kubectl's copy of the whole object it last applied: never judged, so
/// not kept.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `metadata.annotations` without [`LAST_APPLIED`], whose value is stepped
/// over unread.
fn annotations<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Annotations;
    impl<'de> serde::de::Visitor<'de> for Annotations {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_none<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(
            self,
            d: D2,
        ) -> std::result::Result<Self::Value, D2::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if key == LAST_APPLIED {
                    map.next_value::<serde::de::IgnoredAny>()?;
                } else {
                    out.insert(key, map.next_value()?);
                }
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(Annotations)
}

/// What is needed of an object to know whether it is a workload.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "apiVersion", default, borrow)]
    api_version: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    kind: std::borrow::Cow<'a, str>,
}

/// Deserializes into a k8s-openapi type, naming the field at fault. The
/// path is tracked only on the second try, when the first has failed: the
/// hot path pays for no bookkeeping.
pub(crate) fn typed<T: DeserializeOwned>(object: serde_json::Value, at: &str) -> Result<T> {
    typed_ref(&object, at)
}

/// [`typed`] reading a borrowed tree (nothing is cloned).
pub(crate) fn typed_ref<T: DeserializeOwned>(object: &serde_json::Value, at: &str) -> Result<T> {
    if let Ok(t) = T::deserialize(object) {
        return Ok(t);
    }
    serde_path_to_error::deserialize(object).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            Error::input(at, inner.to_string())
        } else {
            Error::input(at, format!("field {path}: {inner}"))
        }
    })
}
