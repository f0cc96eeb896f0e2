//! `WellArchitectedException` (namespaced), the CRD that exempts workloads
//! from rules, and `OwnerKind`, which policies and exceptions both use to
//! name an operator's workloads. Exceptions are cluster context: the engine
//! reads them from `Context`, never from the workload itself.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::problems::duplicates;
use crate::rule_list::RuleId;
use crate::workload::{Workload, WorkloadKind};

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
    pub fn owns(&self, w: &Workload) -> bool {
        w.owners
            .iter()
            .any(|o| o.group == self.api_group && o.kind == self.kind)
    }
}

/// Owner kinds must name a kind, once each; a group is written without
/// its version (`kaito.sh`, not `kaito.sh/v1beta1`).
pub fn owner_kinds(owners: &[OwnerKind], at: &str, problems: &mut Vec<String>) {
    for (i, o) in owners.iter().enumerate() {
        if o.kind.trim().is_empty() {
            problems.push(format!("{at}[{i}].kind: name the owner's kind"));
        }
        if o.api_group.contains('/') {
            problems.push(format!(
                "{at}[{i}].apiGroup: {:?} has a version; write the group alone ({:?})",
                o.api_group,
                o.api_group.split('/').next().unwrap_or_default()
            ));
        }
    }
    let keys: Vec<String> = owners
        .iter()
        .map(|o| format!("{}/{}", o.api_group, o.kind))
        .collect();
    duplicates(keys.iter().map(String::as_str), at, problems);
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
