//! The policy as platform teams write it: `WellArchitectedPolicy` (cluster
//! scoped) and `WellArchitectedException` (namespaced). These types are the
//! CRDs: serde reads them, schemars turns their doc comments into the CRD's
//! OpenAPI schema and `kubectl explain` text. Defaults here are the built-in
//! baseline's values, so `zoneSpread: {}` means what the baseline means.
//!
//! A spec is data; [`compiled::Policy`] is the checked, parsed form the
//! engine runs, and refusing a broken policy happens there.

pub mod baseline;
pub mod compiled;
pub mod crd;
pub mod release;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::workload::WorkloadKind;

pub const GROUP: &str = "waf-admission.dev";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "waf-admission.dev/v1alpha1";

/// Which workloads a policy governs and how strictly.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "waf-admission.dev",
    version = "v1alpha1",
    kind = "WellArchitectedPolicy",
    shortname = "wap",
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Rule Set","type":"string","jsonPath":".status.ruleSet"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Violations","type":"integer","jsonPath":".status.audit.violations"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WellArchitectedPolicySpec {
    /// Which namespaces and workloads this policy governs.
    #[serde(default, rename = "match")]
    pub matches: Match,
    /// The action of every rule that does not set its own: Deny refuses the
    /// object, Warn admits it with a warning, Audit only records it.
    #[serde(default)]
    pub action: DefaultAction,
    /// The release whose rules `action` covers (`0.1`, `0.2`, …), as Pod
    /// Security Admission's `enforce-version` pins its standard: a rule a
    /// later release added runs at most as Warn under this policy unless
    /// its entry in `rules` sets its own `action`. `latest`, or no value:
    /// every rule takes `action`, so an upgrade may start denying on the
    /// rules it brings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(release::RULE_SET_PATTERN))]
    pub rule_set: Option<String>,
    /// Per-rule settings. A rule left out runs with its defaults.
    #[serde(default)]
    pub rules: Rules,
    /// What an UPDATE is denied for. `NewViolations` (the default): only
    /// what the update brings; a violation the old object already had
    /// (same rule, field and message) is admitted with a warning that says
    /// so, so `kubectl label` or a finalizer's removal never fails on an
    /// object created before the policy. `All`: every violation denies.
    #[serde(default)]
    pub updates: Updates,
}

/// How UPDATEs are judged (see `spec.updates`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum Updates {
    #[default]
    NewViolations,
    All,
}

/// A kind of owner, as in `metadata.ownerReferences`: an operator's custom
/// resource (`kaito.sh` `Workspace`, `serving.kserve.io` `InferenceService`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerKind {
    /// The owner's API group, without version (`kaito.sh`); empty for core.
    #[serde(default)]
    pub api_group: String,
    /// The owner's kind (`Workspace`).
    #[schemars(length(min = 1))]
    pub kind: String,
}

impl OwnerKind {
    /// Whether any owner reference of the workload is of this kind.
    pub fn owns(&self, w: &crate::workload::Workload) -> bool {
        w.owners
            .iter()
            .any(|o| o.group == self.api_group && o.kind == self.kind)
    }
}

/// Which objects a policy governs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    /// `Inference` governs only model-serving workloads (see inference
    /// detection in the README); `All` governs every workload of the listed kinds.
    #[serde(default)]
    pub workloads: WorkloadScope,
    /// Kinds governed; every kind by default. Each is a way to a running
    /// pod, so a kind left out is a way around the policy. Pods, ReplicaSets
    /// and Jobs that the core controllers make from a template judged at
    /// apply (the requester is the controller's service account) are not
    /// judged again; any other Pod is, whatever its ownerReferences claim.
    #[serde(default = "default_kinds")]
    #[schemars(length(min = 1))]
    pub kinds: Vec<WorkloadKind>,
    /// Namespaces governed, by their labels (`kubernetes.io/metadata.name`
    /// is always set). Empty or absent: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Workloads governed, by labels: a workload matches when its own
    /// labels or its pod template's labels match (operators such as KAITO
    /// and KServe label only the pods). Absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Workloads not governed: those with an ownerReference of one of these
    /// kinds (every Deployment a KAITO Workspace creates, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_owners: Vec<OwnerKind>,
    /// Whether the label `waf-admission.dev/workload: "false"` takes a
    /// workload out of inference detection. Off by default: a workload
    /// cannot exempt itself unless the platform team allows it.
    #[serde(default)]
    pub allow_opt_out: bool,
}

impl Default for Match {
    fn default() -> Self {
        Match {
            workloads: WorkloadScope::default(),
            kinds: default_kinds(),
            namespace_selector: None,
            selector: None,
            exclude_owners: Vec::new(),
            allow_opt_out: false,
        }
    }
}

/// Every kind: each is a way to a running pod, and a kind left out is a
/// way around the policy.
fn default_kinds() -> Vec<WorkloadKind> {
    WorkloadKind::ALL.to_vec()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum WorkloadScope {
    #[default]
    Inference,
    All,
}

/// A policy's default action (a rule may also be `Off`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum DefaultAction {
    #[default]
    Deny,
    Warn,
    Audit,
}

/// What happens to a violation, ordered from mildest to strictest so that
/// "the strictest action wins" is `max()`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum Action {
    Off,
    Audit,
    Warn,
    Deny,
}

impl Action {
    /// The lower-case form used in `check -o json` and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Audit => "audit",
            Action::Warn => "warn",
            Action::Deny => "deny",
        }
    }
}

impl From<DefaultAction> for Action {
    fn from(a: DefaultAction) -> Self {
        match a {
            DefaultAction::Deny => Action::Deny,
            DefaultAction::Warn => Action::Warn,
            DefaultAction::Audit => Action::Audit,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stable rule ids. They appear in denial messages, JSON output,
/// metrics and exceptions; renaming one breaks users.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RuleId {
    ZoneSpread,
    Autoscaler,
    Resources,
    GpuPlacement,
    ImageProvenance,
    RolloutStrategy,
    SharedMemory,
    WorkloadIdentity,
    GracefulTermination,
    ModelLineage,
    Probes,
    DisruptionBudget,
    SecretEnv,
    HostIsolation,
}

impl RuleId {
    pub const ALL: [RuleId; 14] = [
        RuleId::ZoneSpread,
        RuleId::Autoscaler,
        RuleId::Resources,
        RuleId::GpuPlacement,
        RuleId::ImageProvenance,
        RuleId::RolloutStrategy,
        RuleId::SharedMemory,
        RuleId::WorkloadIdentity,
        RuleId::GracefulTermination,
        RuleId::ModelLineage,
        RuleId::Probes,
        RuleId::DisruptionBudget,
        RuleId::SecretEnv,
        RuleId::HostIsolation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::ZoneSpread => "zone-spread",
            RuleId::Autoscaler => "autoscaler",
            RuleId::Resources => "resources",
            RuleId::GpuPlacement => "gpu-placement",
            RuleId::ImageProvenance => "image-provenance",
            RuleId::RolloutStrategy => "rollout-strategy",
            RuleId::SharedMemory => "shared-memory",
            RuleId::WorkloadIdentity => "workload-identity",
            RuleId::GracefulTermination => "graceful-termination",
            RuleId::ModelLineage => "model-lineage",
            RuleId::Probes => "probes",
            RuleId::DisruptionBudget => "disruption-budget",
            RuleId::SecretEnv => "secret-env",
            RuleId::HostIsolation => "host-isolation",
        }
    }

    /// What the rule holds workloads to, in one sentence (SARIF's rule
    /// descriptions, reports).
    pub fn summary(self) -> &'static str {
        match self {
            RuleId::ZoneSpread => {
                "A replicated model server runs at least two replicas spread across availability zones"
            }
            RuleId::Autoscaler => "An HPA or KEDA ScaledObject scales the model server with load",
            RuleId::Resources => {
                "Every container requests and limits what it needs; a GPU limit equals its request"
            }
            RuleId::GpuPlacement => "GPU pods land on GPU nodes, and nothing else does",
            RuleId::ImageProvenance => {
                "Images come from registries the platform team trusts, pinned by digest"
            }
            RuleId::RolloutStrategy => {
                "Replicated model servers roll out without Recreate, keep replicas up and a revision to roll back to"
            }
            RuleId::SharedMemory => {
                "Multi-GPU and tensor-parallel containers mount a Memory emptyDir at /dev/shm"
            }
            RuleId::WorkloadIdentity => {
                "Pods that use Azure credentials get them through Workload Identity, not stored keys"
            }
            RuleId::GracefulTermination => {
                "The grace period lets in-flight generations finish, after a shorter preStop delay"
            }
            RuleId::ModelLineage => {
                "The pod template names its model version and source, and Hugging Face models are pinned to a revision"
            }
            RuleId::Probes => {
                "Serving containers report readiness, hung ones restart, and no liveness probe kills a model still loading"
            }
            RuleId::DisruptionBudget => {
                "Exactly one PodDisruptionBudget covers a replicated model server and lets a drain evict one pod"
            }
            RuleId::SecretEnv => "No literal credentials in env values, command or args",
            RuleId::HostIsolation => {
                "The pod template meets Pod Security Baseline and reaches no GPU it did not request"
            }
        }
    }

    /// The release that introduced the rule: what a policy's `spec.ruleSet`
    /// is compared with.
    pub fn since(self) -> release::Release {
        match self {
            RuleId::ZoneSpread
            | RuleId::Autoscaler
            | RuleId::Resources
            | RuleId::GpuPlacement
            | RuleId::ImageProvenance => release::Release::V0_1,
            RuleId::RolloutStrategy
            | RuleId::SharedMemory
            | RuleId::WorkloadIdentity
            | RuleId::GracefulTermination
            | RuleId::ModelLineage
            | RuleId::Probes
            | RuleId::DisruptionBudget
            | RuleId::SecretEnv
            | RuleId::HostIsolation => release::Release::V0_2,
        }
    }

    /// Workload-level rules read the workload around the pod (replicas,
    /// autoscalers, disruption budgets, rollout strategy) and hold at the
    /// workload kinds where those mean something; pod-level rules read
    /// only the pod spec and hold at every pod template and every Pod.
    pub fn is_workload_level(self) -> bool {
        matches!(
            self,
            RuleId::ZoneSpread
                | RuleId::Autoscaler
                | RuleId::DisruptionBudget
                | RuleId::RolloutStrategy
        )
    }

    pub fn pillar(self) -> Pillar {
        match self {
            RuleId::ZoneSpread => Pillar::Reliability,
            RuleId::Autoscaler => Pillar::PerformanceEfficiency,
            RuleId::Resources | RuleId::GpuPlacement => Pillar::CostOptimization,
            RuleId::ImageProvenance => Pillar::Security,
            RuleId::RolloutStrategy => Pillar::Reliability,
            RuleId::SharedMemory => Pillar::PerformanceEfficiency,
            RuleId::WorkloadIdentity => Pillar::Security,
            RuleId::GracefulTermination => Pillar::Reliability,
            RuleId::ModelLineage => Pillar::OperationalExcellence,
            RuleId::Probes | RuleId::DisruptionBudget => Pillar::Reliability,
            RuleId::SecretEnv | RuleId::HostIsolation => Pillar::Security,
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Azure Well-Architected Framework pillar a rule serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pillar {
    Reliability,
    Security,
    CostOptimization,
    OperationalExcellence,
    PerformanceEfficiency,
}

impl Pillar {
    pub fn as_str(self) -> &'static str {
        match self {
            Pillar::Reliability => "Reliability",
            Pillar::Security => "Security",
            Pillar::CostOptimization => "Cost Optimization",
            Pillar::OperationalExcellence => "Operational Excellence",
            Pillar::PerformanceEfficiency => "Performance Efficiency",
        }
    }
}

impl fmt::Display for Pillar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of each rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub zone_spread: ZoneSpread,
    #[serde(default)]
    pub autoscaler: Autoscaler,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub gpu_placement: GpuPlacement,
    #[serde(default)]
    pub image_provenance: ImageProvenance,
    #[serde(default)]
    pub rollout_strategy: RolloutStrategy,
    #[serde(default)]
    pub shared_memory: SharedMemory,
    #[serde(default)]
    pub workload_identity: WorkloadIdentity,
    #[serde(default)]
    pub graceful_termination: GracefulTermination,
    #[serde(default)]
    pub model_lineage: ModelLineage,
    #[serde(default)]
    pub probes: Probes,
    #[serde(default)]
    pub disruption_budget: DisruptionBudget,
    #[serde(default)]
    pub secret_env: SecretEnv,
    #[serde(default)]
    pub host_isolation: HostIsolation,
}

impl Rules {
    /// The action a rule's own settings give it, if any: how a policy names
    /// a rule newer than its `spec.ruleSet`. (Whether a rule's key is
    /// present cannot say it: an apiserver that served an older CRD filled
    /// every rule in from the schema's defaults; it never fills `action`.)
    pub fn action_of(&self, rule: RuleId) -> Option<Action> {
        match rule {
            RuleId::ZoneSpread => self.zone_spread.action,
            RuleId::Autoscaler => self.autoscaler.action,
            RuleId::Resources => self.resources.action,
            RuleId::GpuPlacement => self.gpu_placement.action,
            RuleId::ImageProvenance => self.image_provenance.action,
            RuleId::RolloutStrategy => self.rollout_strategy.action,
            RuleId::SharedMemory => self.shared_memory.action,
            RuleId::WorkloadIdentity => self.workload_identity.action,
            RuleId::GracefulTermination => self.graceful_termination.action,
            RuleId::ModelLineage => self.model_lineage.action,
            RuleId::Probes => self.probes.action,
            RuleId::DisruptionBudget => self.disruption_budget.action,
            RuleId::SecretEnv => self.secret_env.action,
            RuleId::HostIsolation => self.host_isolation.action,
        }
    }
}

/// `zone-spread` (Reliability): enough replicas, spread across availability
/// zones, so that losing one zone does not take the model offline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneSpread {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Add the missing topologySpreadConstraint through the mutating webhook.
    #[serde(default)]
    pub mutate: bool,
    /// The largest maxSkew accepted on the zone constraint.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub max_skew: i32,
    /// The fewest replicas accepted (an autoscaler's minReplicas counts).
    #[serde(default = "two")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// DoNotSchedule requires a hard constraint; ScheduleAnyway accepts either.
    /// Also the value the patch writes.
    #[serde(default)]
    pub when_unsatisfiable: WhenUnsatisfiable,
}

impl Default for ZoneSpread {
    fn default() -> Self {
        ZoneSpread {
            action: None,
            mutate: false,
            max_skew: one(),
            min_replicas: two(),
            when_unsatisfiable: WhenUnsatisfiable::default(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum WhenUnsatisfiable {
    #[default]
    DoNotSchedule,
    ScheduleAnyway,
}

impl WhenUnsatisfiable {
    pub fn as_str(self) -> &'static str {
        match self {
            WhenUnsatisfiable::DoNotSchedule => "DoNotSchedule",
            WhenUnsatisfiable::ScheduleAnyway => "ScheduleAnyway",
        }
    }
}

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

/// `resources` (Cost Optimization): every container declares what it needs,
/// so the scheduler can pack nodes and the cluster autoscaler can size them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Fill missing requests and limits from `defaults` through the mutating webhook.
    #[serde(default)]
    pub mutate: bool,
    /// Resource names every container must request.
    #[serde(default = "default_required_requests")]
    pub require_requests: Vec<String>,
    /// Resource names every container must limit.
    #[serde(default = "default_required_limits")]
    pub require_limits: Vec<String>,
    /// Values the patch writes. A missing limit takes the container's request
    /// where it has one, so a patch never makes a limit lower than its request.
    #[serde(default = "default_resource_defaults")]
    pub defaults: ResourceDefaults,
    /// Values the patch writes into a container that requests a GPU.
    /// Absent (the default): none, since `defaults` would starve a model
    /// server (weights, KV cache, tokenizer and runtime need far more), so
    /// its missing sizes are violations the platform team sizes by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_defaults: Option<ResourceDefaults>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            action: None,
            mutate: false,
            require_requests: default_required_requests(),
            require_limits: default_required_limits(),
            defaults: default_resource_defaults(),
            gpu_defaults: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceDefaults {
    #[serde(default)]
    pub requests: BTreeMap<String, Quantity>,
    #[serde(default)]
    pub limits: BTreeMap<String, Quantity>,
}

fn default_required_requests() -> Vec<String> {
    vec!["cpu".into(), "memory".into()]
}

fn default_required_limits() -> Vec<String> {
    vec!["memory".into()]
}

fn default_resource_defaults() -> ResourceDefaults {
    ResourceDefaults {
        requests: BTreeMap::from([
            ("cpu".into(), Quantity("500m".into())),
            ("memory".into(), Quantity("1Gi".into())),
        ]),
        limits: BTreeMap::from([("memory".into(), Quantity("1Gi".into()))]),
    }
}

/// `gpu-placement` (Cost Optimization): GPU pods land on GPU nodes and
/// nothing else does, so expensive GPU nodes are not filled with CPU work.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuPlacement {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Add the nodeSelector and tolerations through the mutating webhook.
    #[serde(default)]
    pub mutate: bool,
    /// Extended resources that are GPUs. A trailing `*` matches a prefix
    /// (`nvidia.com/mig-*`). Time-sliced GPUs renamed by NVIDIA's device
    /// plugin (`renameByDefault`) are `nvidia.com/gpu.shared`.
    #[serde(default = "default_gpu_resources")]
    pub resource_names: Vec<String>,
    /// DRA device classes (resource.k8s.io/v1 `DeviceClass` names) that are
    /// GPUs: a pod whose `spec.resourceClaims` name a ResourceClaim or a
    /// ResourceClaimTemplate that requests a device of one of these classes
    /// (`exactly.deviceClassName` or a `firstAvailable` entry) is a GPU pod,
    /// as if it requested a GPU resource.
    #[serde(default = "default_gpu_device_classes")]
    pub device_classes: Vec<String>,
    /// Node labels that GPU pods must select (by nodeSelector or an
    /// equivalent required node affinity).
    #[serde(default = "default_gpu_node_selector")]
    pub node_selector: BTreeMap<String, String>,
    /// The GPU nodes' taints, written as the tolerations GPU pods need.
    #[serde(default = "default_gpu_tolerations")]
    pub tolerations: Vec<Toleration>,
    /// VM sizes (`node.kubernetes.io/instance-type`) a GPU pod may select.
    /// Empty: any. A pod that selects no size is accepted.
    #[serde(default)]
    pub allowed_vm_sizes: Vec<String>,
}

impl Default for GpuPlacement {
    fn default() -> Self {
        GpuPlacement {
            action: None,
            mutate: false,
            resource_names: default_gpu_resources(),
            device_classes: default_gpu_device_classes(),
            node_selector: default_gpu_node_selector(),
            tolerations: default_gpu_tolerations(),
            allowed_vm_sizes: Vec::new(),
        }
    }
}

/// NVIDIA's device plugin (whole GPUs, time-sliced GPUs renamed
/// `.shared`, MIG slices), AMD's and Intel's (`i915` and `xe` drivers; not
/// their `*_monitoring` resources, which watch every GPU and use none).
fn default_gpu_resources() -> Vec<String> {
    [
        "nvidia.com/gpu",
        "nvidia.com/gpu.shared",
        "nvidia.com/mig-*",
        "amd.com/gpu",
        "gpu.intel.com/i915",
        "gpu.intel.com/xe",
    ]
    .map(String::from)
    .to_vec()
}

/// The device classes NVIDIA's DRA driver installs: whole GPUs and MIG
/// slices.
fn default_gpu_device_classes() -> Vec<String> {
    vec!["gpu.nvidia.com".into(), "mig.nvidia.com".into()]
}

fn default_gpu_node_selector() -> BTreeMap<String, String> {
    BTreeMap::from([("kubernetes.azure.com/accelerator".into(), "nvidia".into())])
}

fn default_gpu_tolerations() -> Vec<Toleration> {
    vec![Toleration {
        key: Some("sku".into()),
        operator: Some("Equal".into()),
        value: Some("gpu".into()),
        effect: Some("NoSchedule".into()),
        toleration_seconds: None,
    }]
}

/// `image-provenance` (Security): images come from registries the platform
/// team trusts, pinned so that what runs is what was scanned.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageProvenance {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Registry hosts images may come from: `myreg.example:5000` (exact,
    /// port included), `*.azurecr.io` (any host under that domain), or `*`
    /// (any registry). An image with no registry is from `docker.io`.
    #[serde(default = "default_registries")]
    pub allowed_registries: Vec<String>,
    /// Require every image to be pinned by digest (`@sha256:…`).
    #[serde(default = "yes")]
    pub require_digest: bool,
    /// Pin `repo:tag` to `repo:tag@sha256:…` as the registry answers
    /// (containers, init and ephemeral containers, image volumes). This is
    /// the rule's mutation: the mutating webhook patches where the rule's
    /// action is Deny. Only registries in `allowedRegistries` are asked.
    #[serde(default)]
    pub resolve_digests: bool,
    /// What a registry failure (unreachable, slow past the deadline, 401,
    /// 404, 5xx, a manifest over the size bound) does: `Deny` the object, or
    /// `Allow` it with a warning.
    #[serde(default)]
    pub on_registry_error: OnRegistryError,
    /// A `kubernetes.io/dockerconfigjson` Secret in the controller's own
    /// namespace with credentials for the registries (never a Secret of
    /// the workload's namespace). The chart grants read access to just the
    /// Secrets listed in `provenance.secrets`. Anonymous when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<String>,
    /// Cosign signatures by key: an image is admitted only when a
    /// signature by one of the keys covers its digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<Signatures>,
}

impl Default for ImageProvenance {
    fn default() -> Self {
        ImageProvenance {
            action: None,
            allowed_registries: default_registries(),
            require_digest: yes(),
            resolve_digests: false,
            on_registry_error: OnRegistryError::default(),
            pull_secret: None,
            signatures: None,
        }
    }
}

/// What a registry failure does to the object being judged.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum OnRegistryError {
    /// Refuse the object: nothing unproven runs (fail closed).
    #[default]
    Deny,
    /// Admit it with a warning naming the failure.
    Allow,
}

/// `imageProvenance.signatures`: cosign signatures made with a key (legacy
/// `sha256-<digest>.sig` tags and Sigstore bundles found through the OCI
/// referrers API). Verified offline: no Rekor, Fulcio or TUF; keyless
/// signatures are not accepted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Signatures {
    /// Public keys (PEM `PUBLIC KEY`, as `cosign generate-key-pair` writes
    /// `cosign.pub`): ECDSA P-256 or P-384, Ed25519, or RSA. A signature by
    /// any one of them is enough.
    #[schemars(length(min = 1))]
    pub keys: Vec<SignatureKey>,
    /// `true`: an image without a valid signature is a violation. `false`:
    /// signatures are checked and a missing or bad one only warns.
    #[serde(default = "yes")]
    pub required: bool,
}

/// One trusted public key, inline or from a Secret in the controller's
/// namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.pem) != has(self.secretRef)",
    "message": "set exactly one of pem and secretRef"
}]))]
pub struct SignatureKey {
    /// How denials name the key; defaults to its fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The PEM public key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    /// A key of a Secret in the controller's namespace holding the PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the controller's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    pub name: String,
    /// The data key; `cosign.pub` when unset.
    #[serde(default = "cosign_pub")]
    pub key: String,
}

fn cosign_pub() -> String {
    "cosign.pub".into()
}

fn default_registries() -> Vec<String> {
    vec!["*.azurecr.io".into(), "mcr.microsoft.com".into()]
}

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

/// `probes` (Reliability): every serving container reports readiness, a
/// hung one is restarted (liveness), and no liveness probe restarts a
/// model server that is still loading its weights.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probes {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Add a startupProbe that copies the liveness probe's handler where
    /// liveness could fire too early, through the mutating webhook.
    #[serde(default)]
    pub mutate: bool,
    /// Require a livenessProbe on every serving container.
    #[serde(default = "yes")]
    pub require_liveness: bool,
    /// Seconds a container may take to start (load its model) before a
    /// liveness probe may restart it: counted from the startupProbe
    /// (`initialDelaySeconds + failureThreshold × periodSeconds`), or from
    /// the liveness probe's own delay when there is no startupProbe.
    #[serde(default = "default_startup_grace")]
    #[schemars(range(min = 0))]
    pub startup_grace_seconds: i32,
    /// The fewest seconds of failed liveness checks
    /// (`failureThreshold × periodSeconds`) before a restart, so a busy
    /// engine that answers slowly is not reloaded. 0: not checked.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_liveness_failure_seconds: i32,
    /// Readiness probe handlers accepted. Leave out `tcpSocket` to require
    /// a probe that asks the server whether the model is ready.
    #[serde(default = "default_probe_handlers")]
    #[schemars(length(min = 1))]
    pub readiness_handlers: Vec<ProbeHandler>,
    /// Containers not judged: a container name (`istio-proxy`), or an image
    /// prefix ending in `*` (`docker.io/istio/proxyv2*`).
    #[serde(default)]
    pub exempt_containers: Vec<String>,
    /// Also judge native sidecars (init containers with `restartPolicy:
    /// Always`), which serve the model server rather than requests.
    #[serde(default)]
    pub include_sidecars: bool,
}

impl Default for Probes {
    fn default() -> Self {
        Probes {
            action: None,
            mutate: false,
            require_liveness: yes(),
            startup_grace_seconds: default_startup_grace(),
            min_liveness_failure_seconds: 0,
            readiness_handlers: default_probe_handlers(),
            exempt_containers: Vec::new(),
            include_sidecars: false,
        }
    }
}

/// How a probe asks the container.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ProbeHandler {
    HttpGet,
    Grpc,
    Exec,
    TcpSocket,
}

impl ProbeHandler {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeHandler::HttpGet => "httpGet",
            ProbeHandler::Grpc => "grpc",
            ProbeHandler::Exec => "exec",
            ProbeHandler::TcpSocket => "tcpSocket",
        }
    }
}

fn default_startup_grace() -> i32 {
    600
}

fn default_probe_handlers() -> Vec<ProbeHandler> {
    vec![
        ProbeHandler::HttpGet,
        ProbeHandler::Grpc,
        ProbeHandler::Exec,
        ProbeHandler::TcpSocket,
    ]
}

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

/// `shared-memory` (Performance Efficiency): a container that spans
/// several GPUs (NCCL, tensor parallelism) mounts a Memory emptyDir at
/// /dev/shm; the container runtime's default of 64 MiB makes it crash or crawl.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedMemory {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Add the emptyDir volume and its /dev/shm mount through the mutating webhook.
    #[serde(default)]
    pub mutate: bool,
    /// The GPU count (of a `gpuPlacement.resourceNames` resource) from which
    /// a container needs shared memory. Tensor parallelism above 1
    /// (`--tensor-parallel-size`, `--num-shard`, `--tp-size`) triggers it too.
    #[serde(default = "two")]
    #[schemars(range(min = 1))]
    pub min_gpus: i32,
    /// The smallest `sizeLimit` accepted on the /dev/shm emptyDir (no
    /// sizeLimit is accepted: the pod's memory limit caps it).
    #[serde(default = "default_min_shm")]
    pub min_size_limit: Quantity,
    /// The `sizeLimit` the patch writes; absent: none (capped by the memory limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_size_limit: Option<Quantity>,
}

impl Default for SharedMemory {
    fn default() -> Self {
        SharedMemory {
            action: None,
            mutate: false,
            min_gpus: two(),
            min_size_limit: default_min_shm(),
            default_size_limit: None,
        }
    }
}

/// `secret-env` (Security): no literal credential in a container's `env`
/// values, `command` or `args`: it is already in git, etcd and every
/// `kubectl get -o yaml`. The value is never repeated in any output.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretEnv {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Further variable names whose literal value is always a credential
    /// (beside the built-in list: AZURE_CLIENT_SECRET, HF_TOKEN, OPENAI_API_KEY, …).
    #[serde(default)]
    pub extra_names: Vec<String>,
    /// Variable names never judged, whatever their value.
    #[serde(default = "default_allowed_env_names")]
    pub allow_names: Vec<String>,
    /// Also look for credentials in `command` and `args` (`--api-key <literal>`).
    #[serde(default = "yes")]
    pub scan_args: bool,
}

impl Default for SecretEnv {
    fn default() -> Self {
        SecretEnv {
            action: None,
            extra_names: Vec::new(),
            allow_names: default_allowed_env_names(),
            scan_args: yes(),
        }
    }
}

fn default_min_shm() -> Quantity {
    Quantity("1Gi".into())
}

/// `workload-identity` (Security): a pod that talks to Azure does so as a
/// Microsoft Entra Workload ID, not with a stored key. Fires only on signs
/// of Azure credentials: such env names (from a Secret or a literal), an
/// `envFrom` Secret whose name says storage or OpenAI, the retired
/// `aadpodidbinding` label, or the Workload ID label itself.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadIdentity {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Copy `azure.workload.identity/use: "true"` from the workload's own
    /// labels to its pod template's (the only labels the Workload ID
    /// webhook reads) through the mutating webhook.
    #[serde(default)]
    pub mutate: bool,
    /// Env variable names that carry an Azure key or secret.
    #[serde(default = "default_azure_credential_names")]
    pub credential_env_names: Vec<String>,
    /// Case-insensitive words that, in the name of a Secret read whole by
    /// `envFrom.secretRef`, mark it as holding Azure keys.
    #[serde(default = "default_azure_secret_words")]
    pub secret_name_patterns: Vec<String>,
}

impl Default for WorkloadIdentity {
    fn default() -> Self {
        WorkloadIdentity {
            action: None,
            mutate: false,
            credential_env_names: default_azure_credential_names(),
            secret_name_patterns: default_azure_secret_words(),
        }
    }
}

fn default_azure_credential_names() -> Vec<String> {
    [
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        "AZURE_STORAGE_KEY",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_OPENAI_API_KEY",
        "AZURE_SEARCH_KEY",
        "AZURE_AI_SEARCH_API_KEY",
    ]
    .map(String::from)
    .to_vec()
}

fn default_azure_secret_words() -> Vec<String> {
    ["storage", "blob", "openai", "keyvault"]
        .map(String::from)
        .to_vec()
}

/// `graceful-termination` (Reliability): pods get long enough after
/// SIGTERM to finish in-flight generations, behind a preStop delay that
/// lets the load balancer drop the endpoint first. Off unless `action` is
/// set: the right values depend on the workload.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GracefulTermination {
    /// This rule's action. Unset: Off (it does not take the policy's action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Raise the grace period and add the preStop sleep through the
    /// mutating webhook (`preStop.sleep` needs Kubernetes 1.30 or later).
    #[serde(default)]
    pub mutate: bool,
    /// The shortest `terminationGracePeriodSeconds` accepted (Kubernetes' default is 30).
    #[serde(default = "default_min_grace")]
    #[schemars(range(min = 1))]
    pub min_grace_period_seconds: i64,
    /// Require a `lifecycle.preStop` hook (sleep or exec) on every serving container.
    #[serde(default = "yes")]
    pub require_pre_stop: bool,
    /// The preStop sleep the patch adds.
    #[serde(default = "default_pre_stop")]
    #[schemars(range(min = 1))]
    pub pre_stop_seconds: i64,
    /// Seconds of the grace period that must remain after a preStop sleep,
    /// for the server itself to drain.
    #[serde(default = "default_min_drain")]
    #[schemars(range(min = 0))]
    pub min_drain_seconds: i64,
}

impl Default for GracefulTermination {
    fn default() -> Self {
        GracefulTermination {
            action: None,
            mutate: false,
            min_grace_period_seconds: default_min_grace(),
            require_pre_stop: yes(),
            pre_stop_seconds: default_pre_stop(),
            min_drain_seconds: default_min_drain(),
        }
    }
}

fn default_allowed_env_names() -> Vec<String> {
    vec!["APPLICATIONINSIGHTS_CONNECTION_STRING".into()]
}

/// `host-isolation` (Security): the pod template meets Pod Security
/// Baseline (no privileged containers, host namespaces, hostPath or
/// hostPort outside the allow-lists, added capabilities, unconfined
/// seccomp or AppArmor, unsafe sysctls), and a container that requests no
/// GPU does not reach the node's GPUs through `NVIDIA_VISIBLE_DEVICES`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostIsolation {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// hostPath prefixes accepted (`/mnt/models`), when every mount of the
    /// volume is `readOnly`.
    #[serde(default)]
    pub allowed_host_paths: Vec<String>,
    /// hostPorts accepted.
    #[serde(default)]
    pub allowed_host_ports: Vec<i32>,
    /// Capabilities accepted beyond Pod Security Baseline's (`IPC_LOCK`
    /// for RDMA over InfiniBand).
    #[serde(default)]
    pub allowed_capabilities: Vec<String>,
    /// Report a container that requests no GPU but sets `NVIDIA_VISIBLE_DEVICES`.
    #[serde(default = "yes")]
    pub flag_nvidia_visible_devices: bool,
}

impl Default for HostIsolation {
    fn default() -> Self {
        HostIsolation {
            action: None,
            allowed_host_paths: Vec::new(),
            allowed_host_ports: Vec::new(),
            allowed_capabilities: Vec::new(),
            flag_nvidia_visible_devices: yes(),
        }
    }
}

fn default_min_grace() -> i64 {
    60
}
fn default_pre_stop() -> i64 {
    10
}
fn default_min_drain() -> i64 {
    15
}

/// `model-lineage` (Operational Excellence): the pod template says which
/// model version it serves and where the model came from, and a Hugging
/// Face model served by vLLM or TGI is pinned to a revision. Off unless
/// `action` is set: the keys are each organisation's own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelLineage {
    /// This rule's action. Unset: Off (it does not take the policy's action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Labels every pod template carries with a non-empty value (never on
    /// `spec.selector`, which is immutable).
    #[serde(default = "default_lineage_labels")]
    pub required_labels: Vec<String>,
    /// Annotations every pod template carries with a non-empty value.
    #[serde(default = "default_lineage_annotations")]
    pub required_annotations: Vec<String>,
    /// Values that do not name a version (compared case-insensitively).
    #[serde(default = "default_floating_versions")]
    pub forbidden_values: Vec<String>,
    /// A Hugging Face model id given to vLLM (`--model`) or TGI
    /// (`--model-id`, `MODEL_ID`) needs a `--revision` (or `REVISION`).
    #[serde(default = "yes")]
    pub require_model_revision: bool,
    /// The revision must be a 40-hex commit id, not a branch or tag.
    #[serde(default)]
    pub require_commit_revision: bool,
    /// Template labels that stand for the required labels: operators such
    /// as KAITO and KServe keep the model's lineage in their own objects.
    #[serde(default = "default_lineage_equivalents")]
    pub equivalent_labels: Vec<String>,
}

impl Default for ModelLineage {
    fn default() -> Self {
        ModelLineage {
            action: None,
            required_labels: default_lineage_labels(),
            required_annotations: default_lineage_annotations(),
            forbidden_values: default_floating_versions(),
            require_model_revision: yes(),
            require_commit_revision: false,
            equivalent_labels: default_lineage_equivalents(),
        }
    }
}

fn default_lineage_labels() -> Vec<String> {
    vec![
        "app.kubernetes.io/version".into(),
        "waf-admission.dev/model-version".into(),
    ]
}

fn default_lineage_annotations() -> Vec<String> {
    vec!["waf-admission.dev/model-source".into()]
}

fn default_floating_versions() -> Vec<String> {
    vec!["latest".into(), "main".into(), "master".into()]
}

fn default_lineage_equivalents() -> Vec<String> {
    vec![
        "kaito.sh/workspace".into(),
        "serving.kserve.io/inferenceservice".into(),
    ]
}

fn one() -> i32 {
    1
}
fn two() -> i32 {
    2
}
fn yes() -> bool {
    true
}

/// What the controller reports about a policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True when the policy is in force, False with the reason when it was refused
    /// (`Invalid`) or when the webhook configuration does not send some of its `match.kinds`
    /// (`KindsNotSent`, naming them: the policy holds for the other kinds only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The rule set in force: the release whose rules `spec.action` covers
    /// (`0.1`), or `latest (0.2)` naming the running release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_set: Option<String>,
    /// Rules newer than the rule set that set no action of their own: they
    /// run at most as Warn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub newer_rules: Vec<String>,
    /// Counts from the last background audit of existing workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSummary>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuditSummary {
    /// Governed workloads judged.
    pub workloads: i64,
    /// Violations found, all rules together.
    pub violations: i64,
    /// Violations per rule id.
    #[serde(default)]
    pub by_rule: BTreeMap<String, i64>,
    /// When the audit last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<Time>,
}

/// Exempts workloads in this namespace from listed rules, for a reason and
/// until a time. There is no annotation a workload can set to exempt itself:
/// exceptions are objects that RBAC can keep in the platform team's hands.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "waf-admission.dev",
    version = "v1alpha1",
    kind = "WellArchitectedException",
    namespaced,
    shortname = "wae",
    printcolumn = r#"{"name":"Rules","type":"string","jsonPath":".spec.rules"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".spec.expires"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
// Checked by the apiserver itself, so it holds even while our webhook is down.
#[x_kube(validation = Rule::new("(has(self.workloads) && size(self.workloads) > 0) || has(self.selector) || (has(self.owners) && size(self.owners) > 0)")
    .message("name the exempted workloads in `workloads`, `selector` or `owners`"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WellArchitectedExceptionSpec {
    /// Workloads exempted, by kind and name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadRef>,
    /// Workloads exempted, by their labels or their pod template's labels.
    /// At least one of `workloads`, `selector` and `owners` must be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Workloads exempted, by the kind of their owner: every Deployment a
    /// KAITO Workspace (`{apiGroup: kaito.sh, kind: Workspace}`) creates in
    /// this namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<OwnerKind>,
    /// The rules the workloads are exempt from.
    #[schemars(length(min = 1))]
    pub rules: Vec<RuleId>,
    /// Why the exemption is needed (shown with every exempted decision).
    #[schemars(length(min = 1))]
    pub reason: String,
    /// When the exception stops applying (RFC 3339).
    pub expires: Time,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadRef {
    /// Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController,
    /// Job, CronJob or Pod.
    pub kind: WorkloadKind,
    /// The workload's metadata.name.
    #[schemars(length(min = 1))]
    pub name: String,
}
