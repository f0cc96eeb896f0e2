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

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::exception::{
    OwnerKind, WellArchitectedException, WellArchitectedExceptionSpec, WorkloadRef,
};
pub use crate::rule_list::{Action, Pillar, RuleId};
pub use crate::rules::Rules;
pub use crate::rules::gpu_placement::GpuPlacement;
pub use crate::rules::image_provenance::{
    ImageProvenance, OnRegistryError, SecretKeyRef, SignatureKey, Signatures,
};
pub use crate::rules::probes::{ProbeHandler, Probes};
pub use crate::rules::resources::{ResourceDefaults, Resources};
pub use crate::rules::zone_spread::{WhenUnsatisfiable, ZoneSpread};
pub use crate::rules::{
    autoscaler::Autoscaler, autoscaler_metric::AutoscalerMetric,
    disruption_budget::DisruptionBudget, gpu_right_size::GpuRightSize,
    graceful_termination::GracefulTermination, host_isolation::HostIsolation, model_fit::ModelFit,
    model_lineage::ModelLineage, rollout_strategy::RolloutStrategy, secret_env::SecretEnv,
    shared_memory::SharedMemory, workload_identity::WorkloadIdentity,
};
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

impl From<DefaultAction> for Action {
    fn from(a: DefaultAction) -> Self {
        match a {
            DefaultAction::Deny => Action::Deny,
            DefaultAction::Warn => Action::Warn,
            DefaultAction::Audit => Action::Audit,
        }
    }
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
