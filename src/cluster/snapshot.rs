//! Reflector stores → the snapshot the request path reads. Pure: the tests
//! feed it objects, the controller feeds it its stores. A policy that
//! cannot be used is refused and its last good version stays in force;
//! a deleted policy is gone. A policy in force that lists kinds the live
//! webhook configuration does not send is reported as such. Nodes reach
//! the context as `placement::NodeRef`s; the key that decides a rebuild
//! holds a digest of them, not a second copy.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceClaimTemplate};
use kube::ResourceExt;
use kube::core::DynamicObject;

use super::webhooks::{Coverage, KindsNotSent};
use crate::context::{Context, DeviceClaimRef, Exception, PdbRef, ScalerRef, secret_data};
use crate::error::Error;
use crate::placement::NodeRef;
use crate::policy::compiled::{Policy, PolicySet};
use crate::policy::release::RuleSet;
use crate::policy::{RuleId, WellArchitectedException, WellArchitectedPolicy};
use crate::prices::{CONFIGMAP_KEY, PriceTable};
use crate::state::Snapshot;

/// What the stores hold right now.
#[derive(Default)]
pub struct Inputs {
    pub policies: Vec<Arc<WellArchitectedPolicy>>,
    pub exceptions: Vec<Arc<WellArchitectedException>>,
    /// Policies and exceptions the watch delivered that do not read as
    /// their kind (a field of the wrong type, written before a CRD change).
    pub unreadable: Vec<Unreadable>,
    pub namespaces: Vec<Arc<Namespace>>,
    pub hpas: Vec<Arc<HorizontalPodAutoscaler>>,
    pub scaled_objects: Vec<Arc<DynamicObject>>,
    pub pdbs: Vec<Arc<PodDisruptionBudget>>,
    /// DRA claims and claim templates (resource.k8s.io/v1), when served.
    pub resource_claims: Vec<Arc<ResourceClaim>>,
    pub resource_claim_templates: Vec<Arc<ResourceClaimTemplate>>,
    /// The cluster's Nodes, slimmed to what the engine reads (none when the
    /// ServiceAccount may not list them).
    pub nodes: Vec<Arc<Node>>,
    /// The Secrets of the controller's namespace that `--registry-secret`
    /// names (pull secrets, signing keys).
    pub secrets: Vec<Arc<Secret>>,
    /// The cluster's ValidatingWebhookConfigurations: which kinds reach
    /// the webhook (see `webhooks.rs`).
    pub webhooks: Vec<Arc<ValidatingWebhookConfiguration>>,
    /// The price table's ConfigMap, when `--prices-configmap` names one.
    pub prices: Option<PricesInput>,
    /// KServe ServingRuntimes and ClusterServingRuntimes, when served.
    pub serving_runtimes: Vec<Arc<DynamicObject>>,
}

/// A ConfigMap's uid and resourceVersion: what says it changed.
type PricesVersion = (Option<String>, Option<String>);

/// The price table's ConfigMap as the store holds it.
#[derive(Clone, Debug, Default)]
pub struct PricesInput {
    /// `namespace/name`, for logs.
    pub name: String,
    /// None: it does not exist (yet).
    pub configmap: Option<Arc<ConfigMap>>,
}

impl PricesInput {
    /// What says the table changed: the ConfigMap's uid and resourceVersion.
    fn version(&self) -> Option<PricesVersion> {
        self.configmap
            .as_ref()
            .map(|c| (c.uid(), c.resource_version()))
    }

    /// The table, or None with the reason logged: missing, or unreadable.
    fn read(&self) -> Option<Arc<PriceTable>> {
        let name = &self.name;
        let Some(cm) = &self.configmap else {
            tracing::warn!(configmap = %name, "the price table's ConfigMap does not exist (yet): cost-budget judges nothing until it does");
            return None;
        };
        let text = cm.data.as_ref().and_then(|d| d.get(CONFIGMAP_KEY));
        let Some(text) = text else {
            tracing::warn!(configmap = %name, "the price table's ConfigMap has no {CONFIGMAP_KEY}: cost-budget judges nothing");
            return None;
        };
        match PriceTable::parse(text, &format!("ConfigMap {name} {CONFIGMAP_KEY}")) {
            Ok(t) => {
                tracing::info!(configmap = %name, sizes = t.len(), generated_at = %t.generated_at, "price table in force");
                Some(Arc::new(t))
            }
            Err(e) => {
                tracing::warn!(error = %e, "price table unreadable: cost-budget judges nothing");
                None
            }
        }
    }
}

/// An object that could not be decoded, with what is known of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
    pub generation: Option<i64>,
    pub error: String,
}

/// How a policy object fared, for its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyReport {
    pub name: String,
    pub generation: Option<i64>,
    /// None: in force. Some: refused, with every problem.
    pub problems: Option<Vec<String>>,
    /// A refused policy whose previous version is still in force.
    pub previous_in_force: bool,
    /// In force, but some of its `match.kinds` never reach the webhook.
    pub kinds_not_sent: Option<KindsNotSent>,
    /// In force: its rule set, and the newer rules that run at most as Warn.
    pub rule_set: Option<(RuleSet, Vec<RuleId>)>,
}

/// A policy or exception that is skipped, for an Event on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectProblem {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub error: String,
}

/// Everything of the inputs the engine reads. Status, managedFields and
/// resourceVersion are not in it, so an HPA's status churn or our own status
/// writes rebuild nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    /// (uid, namespace, name, generation): the spec changes only with the
    /// generation, and a recreated object has a new uid.
    policies: Vec<Identity>,
    exceptions: Vec<Identity>,
    unreadable: Vec<Unreadable>,
    namespaces: Vec<(String, BTreeMap<String, String>)>,
    scalers: Vec<ScalerRef>,
    /// PodDisruptionBudgets by generation: their status churns too.
    pdbs: Vec<Identity>,
    /// What DRA claims request (their allocation status churns).
    device_claims: Vec<DeviceClaimRef>,
    /// Secrets by resourceVersion (they have no generation).
    secrets: Vec<(String, Option<String>)>,
    /// A digest of the Nodes' names, labels, taints and allocatable: a
    /// cluster's thousands of Nodes are not kept twice.
    nodes: u64,
    /// What the webhook configurations send, not the objects: cert-manager
    /// rewriting a caBundle changes nothing a status says.
    webhooks: Coverage,
    /// The price table's ConfigMap by uid and resourceVersion.
    prices: Option<Option<PricesVersion>>,
    /// ServingRuntimes by generation.
    runtimes: Vec<Identity>,
}

type Identity = (Option<String>, Option<String>, String, Option<i64>);

#[derive(Default)]
pub struct Builder {
    last_good: BTreeMap<String, Policy>,
    /// The price table read from the ConfigMap of this version: read (and
    /// its problems logged) once per change, not per rebuild.
    prices: Option<(Option<PricesVersion>, Option<Arc<PriceTable>>)>,
    key: Option<Key>,
    reports: Vec<PolicyReport>,
    problems: Vec<ObjectProblem>,
}

impl Builder {
    /// Builds the snapshot, whatever changed.
    pub fn build(&mut self, inputs: &Inputs) -> (Snapshot, Vec<PolicyReport>) {
        self.key = None;
        let scalers = scalers(inputs);
        let coverage = Coverage::of(&inputs.webhooks);
        let claims = device_claims(inputs);
        let snapshot = self.assemble(inputs, scalers, claims, &coverage);
        (snapshot, self.reports.clone())
    }

    /// Builds the snapshot when something the engine reads changed since
    /// the last build; `None` otherwise.
    pub fn build_if_changed(&mut self, inputs: &Inputs) -> Option<(Snapshot, Vec<PolicyReport>)> {
        let scalers = scalers(inputs);
        let claims = device_claims(inputs);
        let key = Key::of(inputs, &scalers, &claims);
        if self.key.as_ref() == Some(&key) {
            return None;
        }
        let snapshot = self.assemble(inputs, scalers, claims, &key.webhooks);
        self.key = Some(key);
        Some((snapshot, self.reports.clone()))
    }

    /// The price table of the inputs, read again only when its ConfigMap
    /// changed.
    fn prices_of(&mut self, inputs: &Inputs) -> Option<Arc<PriceTable>> {
        let Some(input) = &inputs.prices else {
            self.prices = None;
            return None;
        };
        let version = input.version();
        match &self.prices {
            Some((seen, table)) if *seen == version => table.clone(),
            _ => {
                let table = input.read();
                self.prices = Some((version, table.clone()));
                table
            }
        }
    }

    /// The policies' reports of the last build.
    pub fn reports(&self) -> &[PolicyReport] {
        &self.reports
    }

    /// The exceptions and policies the last build skipped.
    pub fn object_problems(&self) -> &[ObjectProblem] {
        &self.problems
    }

    fn assemble(
        &mut self,
        inputs: &Inputs,
        scalers: Vec<ScalerRef>,
        claims: Vec<DeviceClaimRef>,
        coverage: &Coverage,
    ) -> Snapshot {
        let mut reports = Vec::new();
        let mut problems = Vec::new();
        // A policy that cannot be read keeps its last good version, as a
        // refused one does; a deleted policy is gone.
        let present: Vec<String> = inputs
            .policies
            .iter()
            .map(|p| p.name_any())
            .chain(
                inputs
                    .unreadable
                    .iter()
                    .filter(|u| u.kind == POLICY)
                    .map(|u| u.name.clone()),
            )
            .collect();
        self.last_good.retain(|name, _| present.contains(name));
        for p in &inputs.policies {
            let name = p.name_any();
            match Policy::compile(p) {
                Ok(compiled) => {
                    let rule_set = Some((compiled.rule_set, compiled.newer_rules.clone()));
                    self.last_good.insert(name.clone(), compiled);
                    let kinds_not_sent = coverage.not_sent(&p.spec.matches.kinds);
                    if let Some(missing) = &kinds_not_sent {
                        tracing::warn!(policy = %name, "in force for part of its kinds: {}", missing.message());
                    }
                    reports.push(PolicyReport {
                        name,
                        generation: p.metadata.generation,
                        problems: None,
                        previous_in_force: false,
                        kinds_not_sent,
                        rule_set,
                    });
                }
                Err(e) => {
                    let problems = match e {
                        Error::Policy { problems, .. } => problems,
                        other => vec![other.to_string()],
                    };
                    tracing::warn!(policy = %name, problems = %problems.join("; "), "policy refused");
                    reports.push(PolicyReport {
                        previous_in_force: self.last_good.contains_key(&name),
                        name,
                        generation: p.metadata.generation,
                        problems: Some(problems),
                        kinds_not_sent: None,
                        rule_set: None,
                    });
                }
            }
        }
        for u in &inputs.unreadable {
            tracing::warn!(kind = u.kind, namespace = u.namespace.as_deref().unwrap_or(""), name = %u.name, error = %u.error, "cannot be read: skipped");
            let error = format!("cannot be read: {}", u.error);
            if u.kind == POLICY {
                reports.push(PolicyReport {
                    previous_in_force: self.last_good.contains_key(&u.name),
                    name: u.name.clone(),
                    generation: u.generation,
                    problems: Some(vec![error.clone()]),
                    kinds_not_sent: None,
                    rule_set: None,
                });
            }
            problems.push(ObjectProblem {
                kind: u.kind,
                namespace: u.namespace.clone(),
                name: u.name.clone(),
                error,
            });
        }
        let mut context = Context::default();
        for secret in &inputs.secrets {
            context.add_secret(&secret.name_any(), secret_data(secret));
        }
        for ns in &inputs.namespaces {
            context.add_namespace(&ns.name_any(), ns.labels().clone());
        }
        for e in &inputs.exceptions {
            match Exception::compile(e, "default") {
                Ok(e) => context.add_exception(e),
                Err(err) => {
                    tracing::warn!(error = %err, "exception refused");
                    problems.push(ObjectProblem {
                        kind: "WellArchitectedException",
                        namespace: e.namespace(),
                        name: e.name_any(),
                        error: err.to_string(),
                    });
                }
            }
        }
        for s in scalers {
            context.add_scaler(s);
        }
        for c in claims {
            context.add_device_claim(c);
        }
        for node in &inputs.nodes {
            context.add_node(NodeRef::from(node.as_ref()));
        }
        for r in &inputs.serving_runtimes {
            let read = serde_json::to_value(r.as_ref())
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    crate::ai::ServingRuntime::from_value(&v, "ServingRuntime")
                        .map_err(|e| e.to_string())
                });
            match read {
                Ok(runtime) => context.add_serving_runtime(runtime),
                Err(err) => {
                    tracing::warn!(error = %err, name = %r.name_any(), "ServingRuntime not understood")
                }
            }
        }
        context.set_prices(self.prices_of(inputs));
        for pdb in &inputs.pdbs {
            let value = serde_json::to_value(pdb.as_ref());
            match value.map(|v| PdbRef::from_value(v, "default", "PodDisruptionBudget")) {
                Ok(Ok(p)) => context.add_pdb(p),
                Ok(Err(err)) => tracing::warn!(error = %err, "PodDisruptionBudget not understood"),
                Err(err) => tracing::warn!(error = %err, "PodDisruptionBudget not understood"),
            }
        }
        self.reports = reports;
        self.problems = problems;
        Snapshot {
            policies: PolicySet::new(self.last_good.values().cloned().collect()),
            context,
        }
    }
}

const POLICY: &str = "WellArchitectedPolicy";

/// The autoscalers of the inputs, in a stable order.
fn scalers(inputs: &Inputs) -> Vec<ScalerRef> {
    let values = inputs
        .hpas
        .iter()
        .map(|h| serde_json::to_value(h.as_ref()))
        .chain(
            inputs
                .scaled_objects
                .iter()
                .map(|s| serde_json::to_value(s.as_ref())),
        );
    let mut out = Vec::new();
    for value in values.flatten() {
        match ScalerRef::from_value(value, "default", "autoscaler") {
            Ok(Some(s)) => out.push(s),
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "autoscaler not understood"),
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.name, a.kind.to_string()).cmp(&(
            &b.namespace,
            &b.name,
            b.kind.to_string(),
        ))
    });
    out
}

/// The DRA claims and claim templates of the inputs, in a stable order.
/// Claims that the resource claim controller made for one pod from a
/// template are left out: no pod names them in `spec.resourceClaims`
/// (it names the template), and there is one per running pod.
fn device_claims(inputs: &Inputs) -> Vec<DeviceClaimRef> {
    let made_for_a_pod = |c: &ResourceClaim| {
        c.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "Pod" && o.controller == Some(true))
    };
    let mut out: Vec<DeviceClaimRef> = inputs
        .resource_claims
        .iter()
        .filter(|c| !made_for_a_pod(c))
        .map(|c| DeviceClaimRef::from_claim(c, "default"))
        .chain(
            inputs
                .resource_claim_templates
                .iter()
                .map(|t| DeviceClaimRef::from_template(t, "default")),
        )
        .collect();
    out.sort();
    out
}

/// What the engine reads of the Nodes (see `NodeRef`), in name order,
/// hashed.
fn nodes_digest(nodes: &[Arc<Node>]) -> u64 {
    let mut sorted: Vec<&Node> = nodes.iter().map(AsRef::as_ref).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut h = DefaultHasher::new();
    // Each list and map is hashed with its length first, so no two
    // different Node lists feed the hasher the same bytes.
    for node in sorted {
        node.metadata.name.hash(&mut h);
        let labels = node.metadata.labels.as_ref();
        h.write_usize(labels.map_or(0, BTreeMap::len));
        for label in labels.into_iter().flatten() {
            label.hash(&mut h);
        }
        let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref());
        let taints = taints.unwrap_or_default();
        h.write_usize(taints.len());
        for t in taints {
            (&t.key, &t.value, &t.effect).hash(&mut h);
            t.time_added.as_ref().map(|at| at.0).hash(&mut h);
        }
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        h.write_usize(allocatable.map_or(0, BTreeMap::len));
        for (resource, quantity) in allocatable.into_iter().flatten() {
            (resource, &quantity.0).hash(&mut h);
        }
    }
    h.finish()
}

impl Key {
    fn of(inputs: &Inputs, scalers: &[ScalerRef], device_claims: &[DeviceClaimRef]) -> Key {
        let mut policies: Vec<_> = inputs
            .policies
            .iter()
            .map(|p| (p.uid(), None, p.name_any(), p.metadata.generation))
            .collect();
        policies.sort();
        let mut exceptions: Vec<_> = inputs
            .exceptions
            .iter()
            .map(|e| (e.uid(), e.namespace(), e.name_any(), e.metadata.generation))
            .collect();
        exceptions.sort();
        let mut unreadable = inputs.unreadable.clone();
        unreadable.sort_by(|a, b| {
            (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name))
        });
        let mut namespaces: Vec<_> = inputs
            .namespaces
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
        namespaces.sort();
        let mut pdbs: Vec<_> = inputs
            .pdbs
            .iter()
            .map(|p| (p.uid(), p.namespace(), p.name_any(), p.metadata.generation))
            .collect();
        pdbs.sort();
        let mut secrets: Vec<_> = inputs
            .secrets
            .iter()
            .map(|s| (s.name_any(), s.resource_version()))
            .collect();
        secrets.sort();
        let mut runtimes: Vec<_> = inputs
            .serving_runtimes
            .iter()
            .map(|r| (r.uid(), r.namespace(), r.name_any(), r.metadata.generation))
            .collect();
        runtimes.sort();
        Key {
            runtimes,
            nodes: nodes_digest(&inputs.nodes),
            policies,
            exceptions,
            unreadable,
            namespaces,
            scalers: scalers.to_vec(),
            pdbs,
            device_claims: device_claims.to_vec(),
            secrets,
            webhooks: Coverage::of(&inputs.webhooks),
            prices: inputs.prices.as_ref().map(PricesInput::version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge;
    use crate::workload::Workload;
    use serde_json::json;

    fn policy(name: &str, generation: i64, spec: serde_json::Value) -> Arc<WellArchitectedPolicy> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
                "metadata": {"name": name, "generation": generation}, "spec": spec,
            }))
            .unwrap(),
        )
    }

    fn llm() -> Workload {
        let text = include_str!("../../tests/fixtures/workloads/compliant-gpu-deployment.yaml");
        let v: serde_json::Value = serde_yaml_ng::from_str(text).unwrap();
        Workload::from_value(v, "ml").unwrap().unwrap()
    }

    fn verdict(snapshot: &Snapshot) -> Vec<(String, String)> {
        let d = judge(
            &snapshot.policies,
            &llm(),
            &snapshot.context,
            jiff::Timestamp::now(),
        );
        d.violations
            .iter()
            .map(|v| (v.rule.as_str().to_owned(), v.action.as_str().to_owned()))
            .collect()
    }

    /// The llm Deployment's PodDisruptionBudget, so that only the rule a
    /// test is about reports anything.
    fn pdb(max_unavailable: i32) -> Arc<PodDisruptionBudget> {
        Arc::new(
            serde_json::from_value(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "llm", "namespace": "ml"},
                "spec": {"selector": {"matchLabels": {"app": "llm"}}, "maxUnavailable": max_unavailable}}))
            .unwrap(),
        )
    }

    fn inputs() -> Inputs {
        Inputs {
            pdbs: vec![pdb(1)],
            ..Inputs::default()
        }
    }

    fn hpa(min: i32) -> Arc<HorizontalPodAutoscaler> {
        Arc::new(
            serde_json::from_value(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "llm", "namespace": "ml"},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
                    "minReplicas": min, "maxReplicas": 6,
                    "metrics": [{"type": "Pods", "pods": {"metric": {"name": "vllm:num_requests_waiting"},
                        "target": {"type": "AverageValue", "averageValue": "5"}}}]}}))
            .unwrap(),
        )
    }

    #[test]
    fn a_policy_added_changed_and_deleted_takes_effect() {
        let mut b = Builder::default();
        let mut inputs = inputs();
        assert!(
            verdict(&b.build(&inputs).0).is_empty(),
            "no policy, nothing judged"
        );

        inputs.policies = vec![policy("p", 1, json!({"action": "Deny"}))];
        assert_eq!(
            verdict(&b.build(&inputs).0),
            [("autoscaler".into(), "deny".into())]
        );

        inputs.policies = vec![policy("p", 2, json!({"action": "Warn"}))];
        assert_eq!(
            verdict(&b.build(&inputs).0),
            [("autoscaler".into(), "warn".into())]
        );

        inputs.policies.clear();
        assert!(verdict(&b.build(&inputs).0).is_empty());
    }

    #[test]
    fn dra_templates_and_shared_claims_reach_the_context_and_their_status_rebuilds_nothing() {
        use crate::context::ClaimSource;
        let claim = |name: &str, owner: Option<&str>, allocated: bool| -> Arc<ResourceClaim> {
            let mut c = json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"name": name, "namespace": "ml"},
                "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}}]}}});
            if let Some(pod) = owner {
                c["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Pod",
                    "name": pod, "uid": "u", "controller": true}]);
            }
            if allocated {
                c["status"] =
                    json!({"reservedFor": [{"resource": "pods", "name": "x", "uid": "u"}]});
            }
            Arc::new(serde_json::from_value(c).unwrap())
        };
        let template: Arc<ResourceClaimTemplate> = Arc::new(
            serde_json::from_value(json!({"apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaimTemplate", "metadata": {"name": "one-gpu", "namespace": "ml"},
                "spec": {"spec": {"devices": {"requests": [{"name": "gpu",
                    "exactly": {"deviceClassName": "mig.nvidia.com"}}]}}}}))
            .unwrap(),
        );
        let mut inputs = Inputs {
            resource_claims: vec![
                claim("shared", None, false),
                claim("llm-0-gpu-x7k2p", Some("llm-0"), true),
            ],
            resource_claim_templates: vec![template],
            ..inputs()
        };
        let mut b = Builder::default();
        let (snapshot, _) = b.build_if_changed(&inputs).unwrap();
        let ctx = &snapshot.context;
        assert!(
            ctx.device_claim("ml", ClaimSource::ResourceClaim, "shared")
                .is_some()
        );
        assert!(
            ctx.device_claim("ml", ClaimSource::ResourceClaimTemplate, "one-gpu")
                .is_some_and(|t| t.device_classes == ["mig.nvidia.com"])
        );
        assert!(
            ctx.device_claim("ml", ClaimSource::ResourceClaim, "llm-0-gpu-x7k2p")
                .is_none(),
            "a claim made for one pod is left out"
        );
        inputs.resource_claims[0] = claim("shared", None, true);
        inputs.resource_claims[1] = claim("llm-1-gpu-q9z4w", Some("llm-1"), true);
        assert!(
            b.build_if_changed(&inputs).is_none(),
            "allocation and per-pod claims rebuild nothing"
        );
    }

    #[test]
    fn nodes_from_the_store_reach_the_context_and_only_what_the_engine_reads_rebuilds() {
        let gpu_node = |name: &str, zone: &str, memory: &str| -> Arc<Node> {
            Arc::new(
                serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": {"nvidia.com/gpu.memory": memory,
                        "kubernetes.azure.com/accelerator": "nvidia",
                        "topology.kubernetes.io/zone": zone}},
                    "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
                    "status": {"allocatable": {"nvidia.com/gpu": "1"}}}))
                .unwrap(),
            )
        };
        let cpu_node: Arc<Node> = Arc::new(
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "cpu-1", "labels": {"topology.kubernetes.io/zone": "1"}},
                "status": {"allocatable": {"cpu": "8"}}}))
            .unwrap(),
        );
        let mut b = Builder::default();
        let mut inputs = Inputs {
            nodes: vec![
                gpu_node("gpu-2", "2", "81920"),
                cpu_node,
                gpu_node("gpu-1", "1", "24576"),
            ],
            ..inputs()
        };
        let sorted = |mut names: Vec<&str>| {
            names.sort_unstable();
            names.join(" ")
        };
        let (snapshot, _) = b.build_if_changed(&inputs).expect("the first build");
        let ctx = &snapshot.context;
        assert_eq!(
            sorted(ctx.nodes().iter().map(|n| n.name.as_str()).collect()),
            "cpu-1 gpu-1 gpu-2"
        );
        let gpu_1 = ctx.nodes().iter().find(|n| n.name == "gpu-1").unwrap();
        assert_eq!(gpu_1.labels["nvidia.com/gpu.memory"], "24576");
        assert_eq!(gpu_1.taints[0].key, "sku");
        assert_eq!(gpu_1.allocatable["nvidia.com/gpu"], "1");
        // The llm Deployment selects the GPU nodes and tolerates their taint.
        let usable = ctx.nodes_for(&llm());
        assert_eq!(
            sorted(usable.iter().map(|n| n.name.as_str()).collect()),
            "gpu-1 gpu-2"
        );

        inputs.nodes.reverse();
        assert!(
            b.build_if_changed(&inputs).is_none(),
            "the same Nodes in another order"
        );
        assert_eq!(inputs.nodes[0].metadata.name.as_deref(), Some("gpu-1"));
        inputs.nodes[0] = gpu_node("gpu-1", "3", "24576");
        let (snapshot, _) = b.build_if_changed(&inputs).expect("a zone changed");
        let gpu_1 = snapshot.context.nodes().iter().find(|n| n.name == "gpu-1");
        assert_eq!(gpu_1.unwrap().labels["topology.kubernetes.io/zone"], "3");
        inputs.nodes.pop();
        let (snapshot, _) = b.build_if_changed(&inputs).expect("a Node gone");
        assert_eq!(snapshot.context.nodes().len(), 2);
    }

    #[test]
    fn an_invalid_change_is_refused_and_the_last_good_version_stays() {
        let mut b = Builder::default();
        let mut inputs = Inputs {
            policies: vec![policy("p", 1, json!({"action": "Deny"}))],
            ..inputs()
        };
        b.build(&inputs);
        inputs.policies = vec![policy(
            "p",
            2,
            json!({"action": "Warn", "rules": {"imageProvenance": {"allowedRegistries": []}}}),
        )];
        let (snapshot, reports) = b.build(&inputs);
        assert_eq!(
            verdict(&snapshot),
            [("autoscaler".into(), "deny".into())],
            "generation 1 still in force"
        );
        assert_eq!(reports.len(), 1);
        assert!(reports[0].previous_in_force);
        assert_eq!(reports[0].generation, Some(2));
        assert!(reports[0].problems.as_ref().unwrap()[0].contains("allowedRegistries"));
    }

    #[test]
    fn a_policy_invalid_from_the_start_is_not_used_and_others_keep_working() {
        let mut b = Builder::default();
        let inputs = Inputs {
            policies: vec![
                policy(
                    "broken",
                    1,
                    json!({"rules": {"resources": {"defaults": {"requests": {"cpu": "lots"}}}}}),
                ),
                policy("good", 1, json!({"action": "Audit"})),
            ],
            ..inputs()
        };
        let (snapshot, reports) = b.build(&inputs);
        assert_eq!(snapshot.policies.policies().len(), 1);
        assert_eq!(verdict(&snapshot), [("autoscaler".into(), "audit".into())]);
        assert!(!reports[0].previous_in_force);
    }

    #[test]
    fn an_hpa_appearing_makes_a_denied_workload_pass() {
        let mut b = Builder::default();
        let mut inputs = Inputs {
            policies: vec![policy("p", 1, json!({}))],
            ..inputs()
        };
        assert_eq!(verdict(&b.build(&inputs).0).len(), 1);
        inputs.hpas = vec![hpa(2)];
        assert!(verdict(&b.build(&inputs).0).is_empty());
        inputs.hpas = vec![hpa(1)];
        assert_eq!(
            verdict(&b.build(&inputs).0).len(),
            2,
            "floor of one: zone-spread and autoscaler"
        );
    }

    #[test]
    fn namespace_labels_feed_namespace_selectors() {
        let mut b = Builder::default();
        let mut inputs = Inputs {
            policies: vec![policy(
                "p",
                1,
                json!({"match": {"namespaceSelector": {"matchLabels": {"env": "prod"}}}}),
            )],
            ..inputs()
        };
        assert!(verdict(&b.build(&inputs).0).is_empty());
        inputs.namespaces = vec![Arc::new(
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "ml", "labels": {"env": "prod"}}}))
            .unwrap(),
        )];
        assert_eq!(verdict(&b.build(&inputs).0).len(), 1);
    }

    #[test]
    fn exceptions_apply_until_they_expire() {
        let mut b = Builder::default();
        let exception = |expires: &str| -> Arc<WellArchitectedException> {
            Arc::new(
                serde_json::from_value(json!({"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedException",
                    "metadata": {"name": "e", "namespace": "ml"},
                    "spec": {"workloads": [{"kind": "Deployment", "name": "llm"}], "rules": ["autoscaler"],
                        "reason": "load test", "expires": expires}}))
                .unwrap(),
            )
        };
        let mut inputs = Inputs {
            policies: vec![policy("p", 1, json!({}))],
            exceptions: vec![exception("2099-01-01T00:00:00Z")],
            ..inputs()
        };
        assert!(verdict(&b.build(&inputs).0).is_empty());
        inputs.exceptions = vec![exception("2020-01-01T00:00:00Z")];
        assert_eq!(verdict(&b.build(&inputs).0).len(), 1);
    }

    #[test]
    fn status_churn_rebuilds_nothing_and_a_spec_change_rebuilds() {
        let mut b = Builder::default();
        let mut inputs = Inputs {
            policies: vec![policy("p", 1, json!({}))],
            hpas: vec![hpa(2)],
            ..Inputs::default()
        };
        assert!(b.build_if_changed(&inputs).is_some(), "the first build");
        assert!(b.build_if_changed(&inputs).is_none(), "nothing changed");
        // The HPA controller writes status every sync; our own status
        // writes change the policy's resourceVersion, never its generation.
        let mut churned = (*hpa(2)).clone();
        churned.status = Some(
            serde_json::from_value(json!({"currentReplicas": 3, "desiredReplicas": 3})).unwrap(),
        );
        churned.metadata.resource_version = Some("42".into());
        inputs.hpas = vec![Arc::new(churned)];
        let mut written = (*inputs.policies[0]).clone();
        written.metadata.resource_version = Some("43".into());
        written.status = Some(Default::default());
        inputs.policies = vec![Arc::new(written)];
        assert!(b.build_if_changed(&inputs).is_none(), "status churn only");
        inputs.hpas = vec![hpa(1)];
        let (snapshot, _) = b.build_if_changed(&inputs).expect("minReplicas changed");
        // The HPA's floor of 1 is now below zone-spread's and the autoscaler's.
        let rules: Vec<String> = verdict(&snapshot).into_iter().map(|(r, _)| r).collect();
        assert!(
            rules.contains(&"zone-spread".to_owned()) && rules.contains(&"autoscaler".to_owned()),
            "{rules:?}"
        );
        inputs.policies = vec![policy("p", 2, json!({"action": "Warn"}))];
        assert!(b.build_if_changed(&inputs).is_some(), "a new generation");
    }

    fn webhook_configuration(resources: &[&str], ca: &str) -> Arc<ValidatingWebhookConfiguration> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "waf-admission"},
                "webhooks": [{"name": "validate.waf-admission.dev", "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "clientConfig": {"url": "https://127.0.0.1:8443/validate", "caBundle": ca},
                    "rules": [{"apiGroups": ["apps", "", "batch"], "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"], "resources": resources,
                        "scope": "Namespaced"}]}]}))
            .unwrap(),
        )
    }

    #[test]
    fn a_policy_listing_kinds_the_webhook_is_not_sent_is_reported_and_a_rule_change_rebuilds() {
        let mut b = Builder::default();
        let mut inputs = Inputs {
            policies: vec![
                policy(
                    "jobs",
                    1,
                    json!({"match": {"kinds": ["Deployment", "Job"]}}),
                ),
                policy(
                    "default",
                    1,
                    json!({"match": {"kinds": ["Deployment", "StatefulSet", "Pod"]}}),
                ),
            ],
            webhooks: vec![webhook_configuration(
                &["deployments", "statefulsets", "pods"],
                "Y2E=",
            )],
            ..inputs()
        };
        let (snapshot, reports) = b.build_if_changed(&inputs).expect("the first build");
        assert_eq!(snapshot.policies.policies().len(), 2, "both in force");
        let missing = reports[0].kinds_not_sent.as_ref().expect("Job is not sent");
        assert_eq!(reports[0].name, "jobs");
        assert_eq!(missing.kinds, [crate::workload::WorkloadKind::Job]);
        assert_eq!(missing.configurations, ["waf-admission"]);
        assert_eq!(
            reports[1].kinds_not_sent, None,
            "Deployments, StatefulSets and Pods are sent"
        );
        // cert-manager rotates the caBundle: nothing a status says changes.
        inputs.webhooks = vec![webhook_configuration(
            &["deployments", "statefulsets", "pods"],
            "bmV3",
        )];
        assert!(b.build_if_changed(&inputs).is_none());
        // Jobs added to the rules: rebuilt, and in force for every kind.
        inputs.webhooks = vec![webhook_configuration(
            &["deployments", "statefulsets", "pods", "jobs"],
            "bmV3",
        )];
        let (_, reports) = b.build_if_changed(&inputs).expect("the rules changed");
        assert!(reports.iter().all(|r| r.kinds_not_sent.is_none()));
        // The configuration deleted: nothing is sent.
        inputs.webhooks = vec![];
        let (_, reports) = b
            .build_if_changed(&inputs)
            .expect("the configuration is gone");
        let missing = reports[1].kinds_not_sent.as_ref().unwrap();
        assert!(missing.configurations.is_empty());
        assert_eq!(missing.kinds.len(), 3);
    }

    #[test]
    fn a_policy_that_cannot_be_read_is_reported_and_skipped_and_others_stay_in_force() {
        let mut b = Builder::default();
        let inputs = Inputs {
            policies: vec![policy("good", 1, json!({"action": "Audit"}))],
            pdbs: vec![pdb(1)],
            unreadable: vec![Unreadable {
                kind: "WellArchitectedPolicy",
                namespace: None,
                name: "typo".into(),
                uid: Some("u".into()),
                generation: Some(3),
                error: "spec.action: unknown variant `deny`".into(),
            }],
            ..Inputs::default()
        };
        let (snapshot, reports) = b.build(&inputs);
        assert_eq!(verdict(&snapshot), [("autoscaler".into(), "audit".into())]);
        let typo = reports.iter().find(|r| r.name == "typo").unwrap();
        assert_eq!(typo.generation, Some(3));
        assert_eq!(
            typo.problems.as_deref(),
            Some(&["cannot be read: spec.action: unknown variant `deny`".to_owned()][..])
        );
        assert_eq!(b.object_problems().len(), 1);
        assert_eq!(b.object_problems()[0].name, "typo");
    }
}

#[cfg(test)]
mod pdb_tests {
    use super::*;
    use crate::judge;
    use crate::workload::Workload;
    use serde_json::json;

    fn rules(snapshot: &Snapshot) -> Vec<String> {
        let text = include_str!("../../tests/fixtures/workloads/compliant-gpu-deployment.yaml");
        let v: serde_json::Value = serde_yaml_ng::from_str(text).unwrap();
        let w = Workload::from_value(v, "ml").unwrap().unwrap();
        judge(
            &snapshot.policies,
            &w,
            &snapshot.context,
            jiff::Timestamp::now(),
        )
        .violations
        .iter()
        .map(|v| format!("{}: {}", v.rule, v.message))
        .collect()
    }

    #[test]
    fn pod_disruption_budgets_from_the_store_reach_the_rule() {
        let mut b = Builder::default();
        let policy: Arc<WellArchitectedPolicy> = Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
                "metadata": {"name": "p"},
                "spec": {"rules": {"autoscaler": {"action": "Off"}}}}))
            .unwrap(),
        );
        let budget = |name: &str, spec: serde_json::Value| -> Arc<PodDisruptionBudget> {
            Arc::new(
                serde_json::from_value(
                    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": {"name": name, "namespace": "ml"}, "spec": spec}),
                )
                .unwrap(),
            )
        };
        let mut inputs = Inputs {
            policies: vec![policy],
            ..Inputs::default()
        };
        let none = rules(&b.build(&inputs).0);
        assert_eq!(none.len(), 1, "{none:?}");
        assert!(none[0].starts_with("disruption-budget: no PodDisruptionBudget"));

        inputs.pdbs = vec![budget(
            "llm",
            json!({"selector": {"matchLabels": {"app": "llm"}}, "maxUnavailable": 1}),
        )];
        assert!(rules(&b.build(&inputs).0).is_empty());

        // In another namespace, or selecting other pods: it does not count.
        inputs.pdbs = vec![budget(
            "other",
            json!({"selector": {"matchLabels": {"app": "other"}}, "maxUnavailable": 1}),
        )];
        assert_eq!(rules(&b.build(&inputs).0).len(), 1);

        inputs.pdbs = vec![budget(
            "llm",
            json!({"selector": {"matchLabels": {"app": "llm"}}, "minAvailable": "100%"}),
        )];
        let blocked = rules(&b.build(&inputs).0);
        assert!(
            blocked[0].contains("allows 0 disruptions at 2 replicas (minAvailable 100%)"),
            "{blocked:?}"
        );
    }

    fn prices_configmap(version: &str, table: &str) -> PricesInput {
        PricesInput {
            name: "waf/waf-gpu-prices".into(),
            configmap: Some(Arc::new(
                serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "waf-gpu-prices", "namespace": "waf", "uid": "u1",
                        "resourceVersion": version},
                    "data": {"prices.yaml": table}}))
                .unwrap(),
            )),
        }
    }

    #[test]
    fn the_price_configmap_reaches_the_context_and_a_bad_one_gives_none() {
        let table = "schema: waf-admission.dev/gpu-prices/v1\ncurrency: USD\nhoursPerMonth: 730\n\
                     source: test\ngeneratedAt: 2026-12-01T00:00:00Z\nregions:\n  eastus:\n    \
                     Standard_NC24ads_A100_v4: {payg: 4.0}\n";
        let mut b = Builder::default();
        let mut inputs = Inputs {
            prices: Some(prices_configmap("1", table)),
            ..Inputs::default()
        };
        let (snapshot, _) = b.build_if_changed(&inputs).unwrap();
        let priced = snapshot.context.prices().unwrap();
        assert_eq!(
            priced
                .price("eastus", "Standard_NC24ads_A100_v4")
                .unwrap()
                .payg,
            4.0
        );
        // Edited into something unreadable: no table, not the old one.
        inputs.prices = Some(prices_configmap("2", "schema: nonsense\n"));
        let (snapshot, _) = b.build_if_changed(&inputs).unwrap();
        assert!(snapshot.context.prices().is_none());
        // Deleted: none.
        inputs.prices = Some(PricesInput {
            name: "waf/waf-gpu-prices".into(),
            configmap: None,
        });
        let (snapshot, _) = b.build_if_changed(&inputs).unwrap();
        assert!(snapshot.context.prices().is_none());
        // Created again: a rebuild with it.
        inputs.prices = Some(prices_configmap("3", table));
        assert!(
            b.build_if_changed(&inputs)
                .unwrap()
                .0
                .context
                .prices()
                .is_some()
        );
        assert!(b.build_if_changed(&inputs).is_none(), "nothing changed");
    }
}
