//! What the engine knows about the cluster beyond the object itself:
//! autoscalers, PodDisruptionBudgets, DRA claims and claim templates,
//! namespace labels and exceptions. `check` builds it from the
//! files it reads; the webhook from its reflector stores. The engine never
//! asks the API server.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceClaimSpec, ResourceClaimTemplate};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};

use crate::error::{Error, Result};
use crate::exception::owner_kinds;
use crate::exception::{OwnerKind, WellArchitectedException, WorkloadRef};
use crate::placement::NodeRef;
use crate::prices::PriceTable;
use crate::rule_list::RuleId;
use crate::workload::{Workload, WorkloadKind, typed};

pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub use crate::scaler::{MetricsField, ScalerKind, ScalerRef, Signal};

/// A PodDisruptionBudget (policy/v1), with its selector compiled.
#[derive(Clone, Debug)]
pub struct PdbRef {
    pub namespace: String,
    pub name: String,
    /// None: `selector` omitted, which selects no pods in policy/v1.
    selector: Option<Selector>,
    pub min_available: Option<IntOrString>,
    pub max_unavailable: Option<IntOrString>,
    pub unhealthy_pod_eviction_policy: Option<String>,
    /// Its `app.kubernetes.io/managed-by` label and controller owner kind.
    pub managed_by: Vec<String>,
}

impl PdbRef {
    pub fn from_value(
        object: serde_json::Value,
        default_namespace: &str,
        at: &str,
    ) -> Result<PdbRef> {
        let pdb: PodDisruptionBudget = typed(object, at)?;
        let spec = pdb.spec.unwrap_or_default();
        let selector = match spec.selector.map(Selector::try_from) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => return Err(Error::input(at, format!("spec.selector: {e}"))),
        };
        let mut managed_by: Vec<String> = pdb
            .metadata
            .labels
            .iter()
            .flatten()
            .filter(|(k, _)| k.as_str() == "app.kubernetes.io/managed-by")
            .map(|(_, v)| v.clone())
            .collect();
        managed_by.extend(
            pdb.metadata
                .owner_references
                .iter()
                .flatten()
                .filter(|o| o.controller == Some(true))
                .map(|o| o.kind.clone()),
        );
        Ok(PdbRef {
            namespace: pdb
                .metadata
                .namespace
                .unwrap_or_else(|| default_namespace.into()),
            name: pdb.metadata.name.unwrap_or_default(),
            selector,
            min_available: spec.min_available,
            max_unavailable: spec.max_unavailable,
            unhealthy_pod_eviction_policy: spec.unhealthy_pod_eviction_policy,
            managed_by,
        })
    }

    /// Whether it selects the workload's pods (its template's labels).
    pub fn selects(&self, w: &Workload) -> bool {
        self.namespace == w.namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&w.template_labels))
    }

    /// `selector: {}`: every pod in the namespace.
    pub fn selects_all(&self) -> bool {
        self.selector.as_ref().is_some_and(|s| s.selects_all())
    }
}

/// Where a pod's DRA claim (`spec.resourceClaims[]`) points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClaimSource {
    /// `resourceClaimName`: a ResourceClaim the pods share.
    ResourceClaim,
    /// `resourceClaimTemplateName`: one ResourceClaim per pod, made from it.
    ResourceClaimTemplate,
}

impl fmt::Display for ClaimSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClaimSource::ResourceClaim => "ResourceClaim",
            ClaimSource::ResourceClaimTemplate => "ResourceClaimTemplate",
        })
    }
}

/// A ResourceClaim or ResourceClaimTemplate (resource.k8s.io), reduced to
/// what says whether it claims a GPU: the device classes it requests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceClaimRef {
    pub source: ClaimSource,
    pub namespace: String,
    pub name: String,
    /// Every class its requests name: `exactly.deviceClassName`, and each
    /// `firstAvailable[].deviceClassName` (any of them may be allocated).
    pub device_classes: Vec<String>,
}

impl DeviceClaimRef {
    pub fn from_claim(c: &ResourceClaim, default_namespace: &str) -> DeviceClaimRef {
        DeviceClaimRef {
            source: ClaimSource::ResourceClaim,
            namespace: c
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.into()),
            name: c.metadata.name.clone().unwrap_or_default(),
            device_classes: device_classes(c.spec.as_ref()),
        }
    }

    pub fn from_template(t: &ResourceClaimTemplate, default_namespace: &str) -> DeviceClaimRef {
        DeviceClaimRef {
            source: ClaimSource::ResourceClaimTemplate,
            namespace: t
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.into()),
            name: t.metadata.name.clone().unwrap_or_default(),
            device_classes: device_classes(t.spec.as_ref().and_then(|s| s.spec.as_ref())),
        }
    }

    /// Reads a ResourceClaim or ResourceClaimTemplate of resource.k8s.io
    /// v1, v1beta2 or v1beta1 (all three served by Kubernetes 1.34). The
    /// betas differ from v1 only where v1beta1 writes `deviceClassName` and
    /// its other fields on the request itself, where v1 puts them under
    /// `exactly`.
    pub fn from_value(
        mut object: serde_json::Value,
        default_namespace: &str,
        at: &str,
    ) -> Result<DeviceClaimRef> {
        let template = object.get("kind").and_then(|k| k.as_str()) == Some("ResourceClaimTemplate");
        let requests = if template {
            "/spec/spec/devices/requests"
        } else {
            "/spec/devices/requests"
        };
        if object.get("apiVersion").and_then(|v| v.as_str()) == Some("resource.k8s.io/v1beta1")
            && let Some(requests) = object.pointer_mut(requests).and_then(|r| r.as_array_mut())
        {
            for request in requests.iter_mut().filter_map(|r| r.as_object_mut()) {
                if request.contains_key("deviceClassName") && !request.contains_key("exactly") {
                    let exactly: serde_json::Map<String, serde_json::Value> = request
                        .iter()
                        .filter(|(k, _)| !matches!(k.as_str(), "name" | "firstAvailable"))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    request.retain(|k, _| matches!(k.as_str(), "name" | "firstAvailable"));
                    request.insert("exactly".into(), exactly.into());
                }
            }
        }
        // k8s-openapi's types check apiVersion; the fields read are the same.
        object["apiVersion"] = "resource.k8s.io/v1".into();
        Ok(if template {
            DeviceClaimRef::from_template(&typed(object, at)?, default_namespace)
        } else {
            DeviceClaimRef::from_claim(&typed(object, at)?, default_namespace)
        })
    }
}

fn device_classes(spec: Option<&ResourceClaimSpec>) -> Vec<String> {
    let mut classes = Vec::new();
    let requests = spec
        .and_then(|s| s.devices.as_ref())
        .and_then(|d| d.requests.as_ref());
    for r in requests.into_iter().flatten() {
        let named = r.exactly.iter().map(|e| &e.device_class_name).chain(
            r.first_available
                .iter()
                .flatten()
                .map(|s| &s.device_class_name),
        );
        for class in named {
            if !classes.contains(class) {
                classes.push(class.clone());
            }
        }
    }
    classes
}

/// A `WellArchitectedException`, checked and ready to match.
#[derive(Clone, Debug)]
pub struct Exception {
    pub namespace: String,
    pub name: String,
    workloads: Vec<WorkloadRef>,
    selector: Option<Selector>,
    owners: Vec<OwnerKind>,
    pub rules: Vec<RuleId>,
    pub reason: String,
    pub expires: jiff::Timestamp,
}

impl Exception {
    /// Refuses an exception that could be misread: no target, no reason,
    /// no rule, or a selector that does not parse.
    pub fn compile(e: &WellArchitectedException, default_namespace: &str) -> Result<Exception> {
        let name = e.metadata.name.clone().unwrap_or_default();
        let namespace = e
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.into());
        let mut problems = Vec::new();
        let selector = match e.spec.selector.clone().map(Selector::try_from) {
            None => None,
            Some(Ok(s)) if s.selects_all() => {
                problems.push("spec.selector: an empty selector would exempt every workload in the namespace; name the workloads".into());
                None
            }
            Some(Ok(s)) => Some(s),
            Some(Err(err)) => {
                problems.push(format!("spec.selector: {err}"));
                None
            }
        };
        if e.spec.workloads.is_empty() && e.spec.selector.is_none() && e.spec.owners.is_empty() {
            problems.push(
                "spec: name the exempted workloads in `workloads`, `selector` or `owners`".into(),
            );
        }
        owner_kinds(&e.spec.owners, "spec.owners", &mut problems);
        if e.spec.workloads.iter().any(|w| w.name.is_empty()) {
            problems.push("spec.workloads: every entry needs a name".into());
        }
        crate::problems::duplicates(
            e.spec.rules.iter().map(|r| r.as_str()),
            "spec.rules",
            &mut problems,
        );
        let workloads: Vec<String> = e
            .spec
            .workloads
            .iter()
            .map(|w| format!("{}/{}", w.kind.as_str(), w.name))
            .collect();
        crate::problems::duplicates(
            workloads.iter().map(String::as_str),
            "spec.workloads",
            &mut problems,
        );
        if e.spec.rules.is_empty() {
            problems.push("spec.rules: list at least one rule id".into());
        }
        if e.spec.reason.trim().is_empty() {
            problems.push("spec.reason: say why the exception is needed".into());
        }
        if !problems.is_empty() {
            return Err(Error::Policy {
                kind: "WellArchitectedException",
                name: format!("{namespace}/{name}"),
                problems,
            });
        }
        Ok(Exception {
            namespace,
            name,
            workloads: e.spec.workloads.clone(),
            selector,
            owners: e.spec.owners.clone(),
            rules: e.spec.rules.clone(),
            reason: e.spec.reason.clone(),
            expires: e.spec.expires.0,
        })
    }

    pub fn applies_to(&self, w: &Workload) -> bool {
        self.namespace == w.namespace
            && (self
                .workloads
                .iter()
                .any(|r| r.kind == w.kind && r.name == w.name)
                || self.selector.as_ref().is_some_and(|s| w.selected_by(s))
                || self.owners.iter().any(|o| o.owns(w)))
    }

    pub fn is_expired(&self, now: jiff::Timestamp) -> bool {
        self.expires <= now
    }

    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Context {
    /// By (namespace, target kind, target name): one probe per request.
    scalers: HashMap<(String, String, String), Vec<ScalerRef>>,
    /// By namespace.
    pdbs: HashMap<String, Vec<PdbRef>>,
    /// ResourceClaims and ResourceClaimTemplates, by (namespace, kind, name).
    device_claims: HashMap<(String, ClaimSource, String), DeviceClaimRef>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Secrets of the controller's own namespace that policies name (pull
    /// secrets, signing keys), by name: their data, decoded.
    secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    exceptions: Vec<Exception>,
    /// Workloads known to exist (`check`'s input, the audit's cache), by
    /// (kind, namespace, name), with their uid where they have one: what
    /// proves an owner (see `ownership::judged_through`). Empty on the
    /// request path, where the requester proves who made an object.
    workloads: HashMap<(WorkloadKind, String, String), Option<String>>,
    /// The Nodes (the cluster's, or Node objects in `check`'s input): where
    /// pods can run. Empty: not known, judged as before.
    nodes: Vec<NodeRef>,
    /// Where each of `nodes` is, by name: a cluster's thousands of Nodes
    /// are added in linear time, not by a scan per Node.
    node_index: HashMap<String, usize>,
    /// VM prices (`check --prices`, the ConfigMap `serve` watches). None:
    /// no table, and no rule says what anything costs.
    prices: Option<Arc<PriceTable>>,
    /// KServe ServingRuntimes and ClusterServingRuntimes: what an
    /// InferenceService's `model:` runs (see `ai::resolve`).
    serving_runtimes: Vec<crate::ai::ServingRuntime>,
}

impl Context {
    /// A ServingRuntime or ClusterServingRuntime; one of the same kind,
    /// namespace and name is replaced.
    pub fn add_serving_runtime(&mut self, r: crate::ai::ServingRuntime) {
        self.serving_runtimes
            .retain(|k| !(k.namespace == r.namespace && k.name == r.name));
        self.serving_runtimes.push(r);
    }

    pub fn serving_runtimes(&self) -> &[crate::ai::ServingRuntime] {
        &self.serving_runtimes
    }

    /// Whether a workload of this kind and name is known, whatever its uid.
    pub fn knows_name(&self, kind: WorkloadKind, namespace: &str, name: &str) -> bool {
        self.workloads
            .contains_key(&(kind, namespace.to_owned(), name.to_owned()))
    }

    /// The price table the cost rules read (whether it is fresh enough is
    /// theirs to judge: they get `now`).
    pub fn set_prices(&mut self, table: Option<Arc<PriceTable>>) {
        self.prices = table;
    }

    pub fn prices(&self) -> Option<&PriceTable> {
        self.prices.as_deref()
    }

    /// A Node; one added before under the same name is replaced, and the
    /// new one counts as added last (a later document in `check`'s input
    /// wins).
    pub fn add_node(&mut self, n: NodeRef) {
        if let Some(at) = self.node_index.remove(&n.name) {
            // Only for a name given twice: the Nodes after it move up one.
            self.nodes.remove(at);
            for i in self.node_index.values_mut() {
                if *i > at {
                    *i -= 1;
                }
            }
        }
        self.node_index.insert(n.name.clone(), self.nodes.len());
        self.nodes.push(n);
    }

    /// Every Node known, in the order added.
    pub fn nodes(&self) -> &[NodeRef] {
        &self.nodes
    }

    /// The Nodes the workload's pods may be scheduled on: selector and
    /// required affinity admit them and their taints are tolerated.
    pub fn nodes_for(&self, w: &Workload) -> Vec<&NodeRef> {
        self.nodes.iter().filter(|n| n.admits(&w.pod)).collect()
    }

    /// A workload that exists beside the one judged: an owner it can
    /// prove.
    pub fn add_workload(
        &mut self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        uid: Option<String>,
    ) {
        self.workloads
            .insert((kind, namespace.to_owned(), name.to_owned()), uid);
    }

    /// Whether a workload of this kind and name is known, with this uid
    /// where both the reference and the object carry one.
    pub fn knows_workload(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> bool {
        match self
            .workloads
            .get(&(kind, namespace.to_owned(), name.to_owned()))
        {
            Some(Some(known)) => uid.is_empty() || known == uid,
            Some(None) => true,
            None => false,
        }
    }

    pub fn add_scaler(&mut self, s: ScalerRef) {
        let key = (
            s.namespace.clone(),
            s.target_kind.clone(),
            s.target_name.clone(),
        );
        self.scalers.entry(key).or_default().push(s);
    }

    /// Takes out an autoscaler by its own kind and name (to judge it as
    /// it is being applied, in place of the version the cluster holds).
    pub fn remove_scaler(&mut self, kind: ScalerKind, namespace: &str, name: &str) {
        for list in self.scalers.values_mut() {
            list.retain(|s| !(s.kind == kind && s.namespace == namespace && s.name == name));
        }
    }

    pub fn add_pdb(&mut self, p: PdbRef) {
        self.pdbs.entry(p.namespace.clone()).or_default().push(p);
    }

    /// The PodDisruptionBudgets that select this workload's pods, by name.
    pub fn pdbs_for(&self, w: &Workload) -> Vec<&PdbRef> {
        let mut found: Vec<&PdbRef> = self
            .pdbs
            .get(&w.namespace)
            .map(|v| v.iter().filter(|p| p.selects(w)).collect())
            .unwrap_or_default();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    pub fn add_device_claim(&mut self, c: DeviceClaimRef) {
        self.device_claims
            .insert((c.namespace.clone(), c.source, c.name.clone()), c);
    }

    /// The ResourceClaim or ResourceClaimTemplate a pod's claim names.
    /// Whether the pod names a ResourceClaim or ResourceClaimTemplate the
    /// context does not hold (yet): what it claims cannot be told.
    pub fn lacks_claims(&self, w: &Workload) -> bool {
        w.pod.resource_claims.iter().flatten().any(|pc| {
            let (source, name) = match (&pc.resource_claim_name, &pc.resource_claim_template_name) {
                (Some(name), _) => (ClaimSource::ResourceClaim, name),
                (None, Some(name)) => (ClaimSource::ResourceClaimTemplate, name),
                (None, None) => return false,
            };
            self.device_claim(&w.namespace, source, name).is_none()
        })
    }

    pub fn device_claim(
        &self,
        namespace: &str,
        source: ClaimSource,
        name: &str,
    ) -> Option<&DeviceClaimRef> {
        self.device_claims
            .get(&(namespace.to_owned(), source, name.to_owned()))
    }

    pub fn add_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.namespaces.insert(name.to_owned(), labels);
    }

    /// A Secret of the controller's namespace that a policy may name.
    pub fn add_secret(&mut self, name: &str, data: BTreeMap<String, Vec<u8>>) {
        self.secrets.insert(name.to_owned(), data);
    }

    pub fn secret(&self, name: &str) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.secrets.get(name)
    }

    /// Exceptions are kept in name order (namespace/name), whatever order
    /// they arrive in (files in `check`, a reflector's store in the
    /// cluster): where two exempt the same rule, the exemption is credited
    /// to the same one everywhere (found by tests/properties.rs).
    pub fn add_exception(&mut self, e: Exception) {
        let at = self.exceptions.partition_point(|x| {
            (x.namespace.as_str(), x.name.as_str()) <= (e.namespace.as_str(), e.name.as_str())
        });
        self.exceptions.insert(at, e);
    }

    /// The autoscalers that target this workload.
    /// The autoscalers that target an object by kind and name.
    pub fn scalers_targeting(&self, namespace: &str, kind: &str, name: &str) -> Vec<&ScalerRef> {
        let key = (namespace.to_owned(), kind.to_owned(), name.to_owned());
        self.scalers
            .get(&key)
            .map(|v| {
                v.iter()
                    .filter(|s| s.namespace == namespace && s.target_name == name)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn scalers_for(&self, w: &Workload) -> Vec<&ScalerRef> {
        let key = (
            w.namespace.clone(),
            w.kind.as_str().to_owned(),
            w.name.clone(),
        );
        self.scalers
            .get(&key)
            .map(|v| v.iter().filter(|s| s.targets(w)).collect())
            .unwrap_or_default()
    }

    /// A namespace's labels; `kubernetes.io/metadata.name` is always there,
    /// as the apiserver sets it on every namespace.
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self.namespaces.get(namespace).cloned().unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.into(), namespace.into());
        labels
    }

    pub fn exceptions_for<'a>(&'a self, w: &'a Workload) -> impl Iterator<Item = &'a Exception> {
        self.exceptions.iter().filter(move |e| e.applies_to(w))
    }
}

/// Reads a Secret as the apiserver does: each `data` value is base64 as Go
/// decodes it, so a value wrapped over lines (the apiserver ignores `\r` and
/// `\n` in it) reads where a strict decoder refuses it.
pub fn read_secret(mut object: serde_json::Value, at: &str) -> Result<Secret> {
    let data = object
        .as_object_mut()
        .and_then(|o| o.remove("data"))
        .unwrap_or(serde_json::Value::Null);
    let mut secret: Secret = typed(object, at)?;
    let data = match data {
        serde_json::Value::Null => None,
        serde_json::Value::Object(map) => {
            let mut decoded = BTreeMap::new();
            for (key, value) in map {
                let bytes = match value {
                    serde_json::Value::Null => Vec::new(),
                    serde_json::Value::String(text) => crate::go_base64::decode(&text)
                        .map_err(|e| Error::input(at, format!("field data.{key}: {e}")))?,
                    other => {
                        return Err(Error::input(
                            at,
                            format!("field data.{key}: {other} is not a base64 string"),
                        ));
                    }
                };
                decoded.insert(key, ByteString(bytes));
            }
            Some(decoded)
        }
        other => {
            return Err(Error::input(
                at,
                format!("field data: {other} is not a map of base64 strings"),
            ));
        }
    };
    secret.data = data;
    Ok(secret)
}

/// A Secret's data as the kubelet would mount it: `data` decoded, with
/// `stringData` (which the apiserver folds into `data`, but a file may
/// still hold) on top.
pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_added_again_replaces_the_earlier_and_counts_as_added_last() {
        let node = |name: &str, zone: &str| NodeRef {
            name: name.into(),
            labels: BTreeMap::from([("topology.kubernetes.io/zone".into(), zone.into())]),
            ..NodeRef::default()
        };
        let mut ctx = Context::default();
        for i in 0..5_000 {
            ctx.add_node(node(&format!("n-{i}"), "1"));
        }
        ctx.add_node(node("n-10", "2"));
        ctx.add_node(node("n-20", "3"));
        let nodes = ctx.nodes();
        assert_eq!(nodes.len(), 5_000);
        assert_eq!(
            nodes[10].name, "n-11",
            "the ones after a replaced Node move up"
        );
        assert_eq!(
            nodes[4_998..]
                .iter()
                .map(|n| (
                    n.name.as_str(),
                    n.labels["topology.kubernetes.io/zone"].as_str()
                ))
                .collect::<Vec<_>>(),
            [("n-10", "2"), ("n-20", "3")]
        );
        // Replaced again after the shift: still one of each name.
        ctx.add_node(node("n-4999", "3"));
        ctx.add_node(node("n-10", "1"));
        let names: std::collections::BTreeSet<&str> =
            ctx.nodes().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names.len(), 5_000);
        assert_eq!(ctx.nodes().last().map(|n| n.name.as_str()), Some("n-10"));
    }

    fn refused(spec: &str) -> String {
        let e: WellArchitectedException = serde_yaml_ng::from_str(&format!(
            "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedException\nmetadata: {{name: e, namespace: ml}}\nspec: {spec}\n"
        ))
        .unwrap();
        Exception::compile(&e, "default").unwrap_err().to_string()
    }

    #[test]
    fn an_autoscaling_v1_hpa_reads_as_v1() {
        let hpa = serde_json::json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h", "namespace": "ml"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
                     "maxReplicas": 4, "targetCPUUtilizationPercentage": 80}
        });
        let s = ScalerRef::from_value(hpa, "default", "hpa.yaml#0")
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                s.namespace.as_str(),
                s.target_kind.as_str(),
                s.target_name.as_str()
            ),
            ("ml", "Deployment", "llm")
        );
        assert_eq!((s.min_replicas, s.max_replicas), (1, 4));
        // A v2-only field is not v1: refused as the apiserver refuses it.
        let v2_in_v1 = serde_json::json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "llm"},
                     "maxReplicas": "four"}
        });
        assert!(ScalerRef::from_value(v2_in_v1, "default", "hpa.yaml#0").is_err());
    }

    #[test]
    fn secret_data_is_base64_as_go_decodes_it() {
        let secret = |data: serde_json::Value| {
            read_secret(
                serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                                   "metadata": {"name": "s"}, "data": data}),
                "s.yaml#0",
            )
        };
        let s = secret(serde_json::json!({"a": "aGVs\nbG8=\n", "b": "aGVs\r\nbG8=", "c": null}))
            .unwrap();
        let data = secret_data(&s);
        assert_eq!(data["a"], b"hello");
        assert_eq!(data["b"], b"hello");
        assert_eq!(data["c"], b"");
        let e = secret(serde_json::json!({"a": "aGVs\tbG8="})).unwrap_err();
        assert!(e.to_string().contains("field data.a: "), "{e}");
        assert!(secret(serde_json::json!({"a": 5})).is_err());
        assert!(secret(serde_json::json!(["a"])).is_err());
    }

    fn claim(yaml: &str) -> DeviceClaimRef {
        let value: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        DeviceClaimRef::from_value(value, "default", "claim.yaml#0").unwrap()
    }

    #[test]
    fn reads_the_device_classes_of_claims_and_templates_in_every_served_version() {
        let template = claim(
            "apiVersion: resource.k8s.io/v1\nkind: ResourceClaimTemplate\n\
             metadata: {name: llm-gpu, namespace: ml}\n\
             spec: {spec: {devices: {requests: [\n\
               {name: gpu, exactly: {deviceClassName: gpu.nvidia.com, count: 2}},\n\
               {name: any, firstAvailable: [{name: big, deviceClassName: mig.nvidia.com},\n\
                 {name: small, deviceClassName: gpu.nvidia.com}]}]}}}\n",
        );
        assert_eq!(
            template,
            DeviceClaimRef {
                source: ClaimSource::ResourceClaimTemplate,
                namespace: "ml".into(),
                name: "llm-gpu".into(),
                device_classes: vec!["gpu.nvidia.com".into(), "mig.nvidia.com".into()],
            }
        );
        // v1beta1 writes the class on the request itself (NVIDIA's DRA
        // driver's own examples still do); no namespace: the default one.
        let beta = claim(
            "apiVersion: resource.k8s.io/v1beta1\nkind: ResourceClaim\nmetadata: {name: shared}\n\
             spec: {devices: {requests: [{name: gpu, deviceClassName: mig.nvidia.com, count: 1}]}}\n",
        );
        assert_eq!(
            (beta.source, beta.namespace.as_str(), beta.device_classes),
            (
                ClaimSource::ResourceClaim,
                "default",
                vec!["mig.nvidia.com".to_owned()]
            )
        );
        let v1beta2 = claim(
            "apiVersion: resource.k8s.io/v1beta2\nkind: ResourceClaim\nmetadata: {name: c, namespace: ml}\n\
             spec: {devices: {requests: [{name: gpu, exactly: {deviceClassName: gpu.nvidia.com}}]}}\n",
        );
        assert_eq!(v1beta2.device_classes, ["gpu.nvidia.com"]);
    }

    #[test]
    fn a_claim_that_does_not_read_is_an_error_naming_the_field() {
        let value: serde_json::Value = serde_yaml_ng::from_str(
            "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: c}\n\
             spec: {devices: {requests: [{name: gpu, exactly: {deviceClassName: 7}}]}}\n",
        )
        .unwrap();
        let e = DeviceClaimRef::from_value(value, "default", "c.yaml#0")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.devices.requests[0].exactly.deviceClassName"),
            "{e}"
        );
    }

    #[test]
    fn exceptions_are_kept_in_name_order_whatever_order_they_arrive_in() {
        let exception = |ns: &str, name: &str| {
            let e: WellArchitectedException = serde_yaml_ng::from_str(&format!(
                "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedException\n\
                 metadata: {{name: {name}, namespace: {ns}}}\nspec: {{workloads: [{{kind: Deployment, name: llm}}], \
                 rules: [autoscaler], reason: r, expires: '2030-01-01T00:00:00Z'}}\n"
            ))
            .unwrap();
            Exception::compile(&e, "default").unwrap()
        };
        let mut ctx = Context::default();
        for (ns, name) in [("ml", "b"), ("dev", "z"), ("ml", "a"), ("ml", "c")] {
            ctx.add_exception(exception(ns, name));
        }
        let names: Vec<String> = ctx.exceptions.iter().map(|e| e.qualified_name()).collect();
        assert_eq!(names, ["dev/z", "ml/a", "ml/b", "ml/c"]);
    }

    #[test]
    fn refuses_exceptions_that_could_be_misread_naming_each_problem() {
        let e = refused(
            "{workloads: [{kind: Deployment, name: llm}, {kind: Deployment, name: llm}], \
             rules: [autoscaler, autoscaler], reason: ' ', expires: '2030-01-01T00:00:00Z'}",
        );
        assert!(e.starts_with("WellArchitectedException ml/e: "), "{e}");
        for want in [
            "spec.workloads[1]: \"Deployment/llm\" is listed twice",
            "spec.rules[1]: \"autoscaler\" is listed twice",
            "spec.reason: say why",
        ] {
            assert!(e.contains(want), "{want} missing from {e}");
        }
        let e = refused(
            "{selector: {}, rules: [autoscaler], reason: r, expires: '2030-01-01T00:00:00Z'}",
        );
        assert!(
            e.contains("an empty selector would exempt every workload"),
            "{e}"
        );
        let e = refused("{rules: [], reason: r, expires: '2030-01-01T00:00:00Z'}");
        assert!(
            e.contains("name the exempted workloads") && e.contains("at least one rule"),
            "{e}"
        );
    }
}
