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
    /// Per-rule settings. A rule left out runs with its defaults.
    #[serde(default)]
    pub rules: Rules,
}

/// Which objects a policy governs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    /// `Inference` governs only model-serving workloads (see inference
    /// detection in the README); `All` governs every workload of the listed kinds.
    #[serde(default)]
    pub workloads: WorkloadScope,
    /// Kinds governed. ReplicaSets, Jobs and CronJobs are judged only when
    /// listed here; a ReplicaSet or Pod owned by a controller is judged through its owner.
    #[serde(default = "default_kinds")]
    #[schemars(length(min = 1))]
    pub kinds: Vec<WorkloadKind>,
    /// Namespaces governed, by their labels (`kubernetes.io/metadata.name`
    /// is always set). Empty or absent: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Workloads governed, by the workload's own labels. Absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
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
            allow_opt_out: false,
        }
    }
}

fn default_kinds() -> Vec<WorkloadKind> {
    vec![
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::Pod,
    ]
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
    Probes,
    DisruptionBudget,
    SecretEnv,
    HostIsolation,
}

impl RuleId {
    pub const ALL: [RuleId; 9] = [
        RuleId::ZoneSpread,
        RuleId::Autoscaler,
        RuleId::Resources,
        RuleId::GpuPlacement,
        RuleId::ImageProvenance,
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
            RuleId::Probes => "probes",
            RuleId::DisruptionBudget => "disruption-budget",
            RuleId::SecretEnv => "secret-env",
            RuleId::HostIsolation => "host-isolation",
        }
    }

    pub fn pillar(self) -> Pillar {
        match self {
            RuleId::ZoneSpread => Pillar::Reliability,
            RuleId::Autoscaler => Pillar::PerformanceEfficiency,
            RuleId::Resources | RuleId::GpuPlacement => Pillar::CostOptimization,
            RuleId::ImageProvenance => Pillar::Security,
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
    pub probes: Probes,
    #[serde(default)]
    pub disruption_budget: DisruptionBudget,
    #[serde(default)]
    pub secret_env: SecretEnv,
    #[serde(default)]
    pub host_isolation: HostIsolation,
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
    /// The lowest minReplicas accepted on the autoscaler.
    #[serde(default = "two")]
    #[schemars(range(min = 1))]
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
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            action: None,
            mutate: false,
            require_requests: default_required_requests(),
            require_limits: default_required_limits(),
            defaults: default_resource_defaults(),
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
    /// (`nvidia.com/mig-*`).
    #[serde(default = "default_gpu_resources")]
    pub resource_names: Vec<String>,
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
            node_selector: default_gpu_node_selector(),
            tolerations: default_gpu_tolerations(),
            allowed_vm_sizes: Vec::new(),
        }
    }
}

fn default_gpu_resources() -> Vec<String> {
    vec!["nvidia.com/gpu".into(), "nvidia.com/mig-*".into()]
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
}

impl Default for ImageProvenance {
    fn default() -> Self {
        ImageProvenance {
            action: None,
            allowed_registries: default_registries(),
            require_digest: yes(),
        }
    }
}

fn default_registries() -> Vec<String> {
    vec!["*.azurecr.io".into(), "mcr.microsoft.com".into()]
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
    /// `Ready` is True when the policy is in force, False with the reason when it was refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
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
#[x_kube(validation = Rule::new("(has(self.workloads) && size(self.workloads) > 0) || has(self.selector)")
    .message("name the exempted workloads in `workloads` or `selector`"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WellArchitectedExceptionSpec {
    /// Workloads exempted, by kind and name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadRef>,
    /// Workloads exempted, by their labels. At least one of `workloads` and
    /// `selector` must be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
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
    /// Deployment, StatefulSet, Pod, ReplicaSet, Job or CronJob.
    pub kind: WorkloadKind,
    /// The workload's metadata.name.
    #[schemars(length(min = 1))]
    pub name: String,
}
