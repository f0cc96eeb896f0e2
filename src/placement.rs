//! Where a pod can run, read as the scheduler reads it: the Nodes its
//! `nodeSelector` and required node affinity admit, the taints it
//! tolerates, and the values it pins a node label to (a VM size, a GPU
//! product). Pure: the Nodes come from the cluster's reflector or from
//! `check`'s input, kept to what placement needs (labels, taints,
//! allocatable).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

use crate::error::Result;
use crate::workload::typed;

/// A Node, kept to what placement reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeRef {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// `status.allocatable`, as written (`nvidia.com/gpu: "1"`).
    pub allocatable: BTreeMap<String, String>,
}

impl NodeRef {
    /// Reads a v1 Node; `at` names it in an error.
    pub fn from_value(object: serde_json::Value, at: &str) -> Result<NodeRef> {
        let node: Node = typed(object, at)?;
        Ok(NodeRef::from(&node))
    }

    /// Whether the pod may be scheduled here: its nodeSelector and required
    /// node affinity admit the node, and it tolerates every NoSchedule and
    /// NoExecute taint.
    pub fn admits(&self, pod: &PodSpec) -> bool {
        selected_by(pod, &self.name, &self.labels) && tolerates_taints(pod, &self.taints)
    }

    /// Whether a topology spread constraint counts this node's domain as
    /// eligible (the scheduler's `matchNodeInclusionPolicies`): its
    /// nodeSelector and required affinity admit it unless
    /// `nodeAffinityPolicy: Ignore` (Honor is the default), and the pod
    /// tolerates its taints only when `nodeTaintsPolicy: Honor` (Ignore is
    /// the default). Resources never count: a node without the pod's GPU
    /// is eligible all the same.
    pub fn counted_by_spread(
        &self,
        pod: &PodSpec,
        honor_affinity: bool,
        honor_taints: bool,
    ) -> bool {
        (!honor_affinity || selected_by(pod, &self.name, &self.labels))
            && (!honor_taints || tolerates_taints(pod, &self.taints))
    }

    /// Its AKS node pool: `kubernetes.azure.com/agentpool`, else `agentpool`.
    pub fn pool(&self) -> Option<&str> {
        POOL_LABELS
            .iter()
            .find_map(|l| self.labels.get(*l))
            .map(String::as_str)
    }

    /// Whether its allocatable holds a non-zero amount of `resource`.
    pub fn has_allocatable(&self, resource: &str) -> bool {
        self.allocatable
            .get(resource)
            .and_then(|v| crate::quantity::Quantity::parse(v).ok())
            .is_some_and(|q| !q.is_zero())
    }
}

/// The labels AKS gives a node's pool name, newest first.
pub const POOL_LABELS: [&str; 2] = ["kubernetes.azure.com/agentpool", "agentpool"];

impl From<&Node> for NodeRef {
    fn from(node: &Node) -> NodeRef {
        NodeRef {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
            allocatable: node
                .status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref())
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
                .unwrap_or_default(),
        }
    }
}

/// Whether `nodeSelector` and required node affinity admit a node with
/// these labels (node affinity's terms are ORed, a term's requirements
/// ANDed; `matchFields` knows `metadata.name`).
pub fn selected_by(pod: &PodSpec, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
    let selector_ok = pod
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let terms = required_terms(pod);
    selector_ok
        && (terms.is_empty()
            || terms.iter().any(|t| {
                // A term with no requirements selects no node.
                let exprs = t.match_expressions.iter().flatten();
                let fields = t.match_fields.iter().flatten();
                (exprs.clone().count() + fields.clone().count()) > 0
                    && exprs
                        .clone()
                        .all(|e| requirement_holds(e, labels.get(&e.key)))
                    && fields.clone().all(|f| {
                        f.key == "metadata.name"
                            && requirement_holds(f, Some(&node_name.to_owned()))
                    })
            }))
}

/// The scheduler's reading of one requirement against a label's value.
fn requirement_holds(e: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = e.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match e.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [bound]) = (value.and_then(|v| number(v)), values) else {
                return false;
            };
            let Some(bound) = number(bound) else {
                return false;
            };
            if e.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// Required node affinity's terms (none: every node).
pub fn required_terms(pod: &PodSpec) -> &[NodeSelectorTerm] {
    pod.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map_or(&[], |r| r.node_selector_terms.as_slice())
}

/// The values the pod pins a node label to: its nodeSelector's, else, when
/// every required affinity term admits only listed values (`In`), all of
/// them. None when some node without such a pin could take the pod.
pub fn pinned_values(pod: &PodSpec, key: &str) -> Option<BTreeSet<String>> {
    if let Some(v) = pod.node_selector.as_ref().and_then(|s| s.get(key)) {
        return Some(BTreeSet::from([v.clone()]));
    }
    let terms = required_terms(pod);
    if terms.is_empty() {
        return None;
    }
    let mut all = BTreeSet::new();
    for term in terms {
        // Within a term the requirements are ANDed: several `In`s on the
        // key admit their intersection.
        let mut admitted: Option<BTreeSet<String>> = None;
        for e in term.match_expressions.iter().flatten() {
            if e.key == key && e.operator == "In" {
                let these: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
                admitted = Some(match admitted {
                    None => these,
                    Some(before) => before.intersection(&these).cloned().collect(),
                });
            }
        }
        all.extend(admitted?);
    }
    Some(all)
}

/// Whether the pod tolerates every taint that keeps pods off a node
/// (NoSchedule, NoExecute; PreferNoSchedule only prefers).
pub fn tolerates_taints(pod: &PodSpec, taints: &[Taint]) -> bool {
    taints
        .iter()
        .filter(|t| t.effect != "PreferNoSchedule")
        .all(|taint| {
            pod.tolerations
                .iter()
                .flatten()
                .any(|t| tolerates(t, taint))
        })
}

/// Kubernetes' ToleratesTaint.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect_ok =
        t.effect.as_deref().is_none_or(str::is_empty) || t.effect.as_deref() == Some(&taint.effect);
    if !effect_ok {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && t.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> PodSpec {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "x"}]);
        serde_json::from_value(spec).unwrap()
    }

    fn node(labels: serde_json::Value, taints: serde_json::Value) -> NodeRef {
        NodeRef::from_value(
            json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "gpu-1", "labels": labels},
                "spec": {"taints": taints},
                "status": {"allocatable": {"nvidia.com/gpu": "1", "cpu": "24"}}}),
            "nodes.yaml#0",
        )
        .unwrap()
    }

    fn gpu_node() -> NodeRef {
        node(
            json!({"kubernetes.azure.com/accelerator": "nvidia",
                "node.kubernetes.io/instance-type": "Standard_NC24ads_A100_v4",
                "nvidia.com/gpu.memory": "81920", "topology.kubernetes.io/zone": "1"}),
            json!([{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]),
        )
    }

    #[test]
    fn a_node_keeps_its_labels_taints_and_allocatable() {
        let n = gpu_node();
        assert_eq!(n.name, "gpu-1");
        assert_eq!(n.allocatable["nvidia.com/gpu"], "1");
        assert_eq!(n.taints[0].key, "sku");
        assert_eq!(n.labels["nvidia.com/gpu.memory"], "81920");
    }

    #[test]
    fn a_node_with_a_bad_shape_is_an_error_naming_where() {
        let e = NodeRef::from_value(
            json!({"apiVersion": "v1", "kind": "Node", "spec": {"taints": "x"}}),
            "n.yaml#2",
        )
        .unwrap_err();
        assert!(e.to_string().contains("n.yaml#2"), "{e}");
    }

    #[test]
    fn a_tainted_gpu_node_admits_only_pods_that_tolerate_it() {
        let n = gpu_node();
        assert!(!n.admits(&pod(json!({}))));
        let tolerating = pod(
            json!({"tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
        );
        assert!(n.admits(&tolerating));
        let exists_any = pod(json!({"tolerations": [{"operator": "Exists"}]}));
        assert!(n.admits(&exists_any));
        let wrong_effect =
            pod(json!({"tolerations": [{"key": "sku", "value": "gpu", "effect": "NoExecute"}]}));
        assert!(!n.admits(&wrong_effect));
    }

    #[test]
    fn selector_and_affinity_are_read_as_the_scheduler_reads_them() {
        let n = gpu_node();
        let tol = json!([{"operator": "Exists"}]);
        let with = |spec: serde_json::Value| {
            let mut spec = spec;
            spec["tolerations"] = tol.clone();
            n.admits(&pod(spec))
        };
        assert!(with(
            json!({"nodeSelector": {"kubernetes.azure.com/accelerator": "nvidia"}})
        ));
        assert!(!with(
            json!({"nodeSelector": {"kubernetes.azure.com/accelerator": "amd"}})
        ));
        let affinity = |exprs: serde_json::Value| {
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}})
        };
        assert!(with(affinity(
            json!([{"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["40000"]}])
        )));
        assert!(!with(affinity(
            json!([{"key": "nvidia.com/gpu.memory", "operator": "Lt", "values": ["40000"]}])
        )));
        assert!(with(affinity(
            json!([{"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["2", "3"]}])
        )));
        assert!(!with(affinity(
            json!([{"key": "spot", "operator": "Exists"}])
        )));
        assert!(with(affinity(
            json!([{"key": "spot", "operator": "DoesNotExist"}])
        )));
        // Terms are ORed; an empty term selects nothing.
        let two_terms = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "spot", "operator": "Exists"}]}, {}]}}}});
        assert!(!with(two_terms));
        let by_name = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu-1"]}]}]}}}});
        assert!(with(by_name));
    }

    #[test]
    fn pinned_values_come_from_the_selector_or_every_term() {
        let sizes =
            |spec: serde_json::Value| pinned_values(&pod(spec), "node.kubernetes.io/instance-type");
        assert_eq!(
            sizes(
                json!({"nodeSelector": {"node.kubernetes.io/instance-type": "Standard_NC24ads_A100_v4"}})
            ),
            Some(BTreeSet::from(["Standard_NC24ads_A100_v4".to_owned()]))
        );
        let terms = |terms: serde_json::Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}});
        let two = sizes(terms(json!([
            {"matchExpressions": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["a"]}]},
            {"matchExpressions": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["b", "c"]}]}
        ])));
        assert_eq!(
            two,
            Some(BTreeSet::from(["a".into(), "b".into(), "c".into()]))
        );
        // A term that does not pin the label lets any size in.
        let open = sizes(terms(json!([
            {"matchExpressions": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["a"]}]},
            {"matchExpressions": [{"key": "kubernetes.azure.com/accelerator", "operator": "In", "values": ["nvidia"]}]}
        ])));
        assert_eq!(open, None);
        assert_eq!(sizes(json!({})), None);
        // Two Ins in one term admit what both list.
        let both = sizes(terms(json!([{"matchExpressions": [
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["a", "b"]},
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["b", "c"]}
        ]}])));
        assert_eq!(both, Some(BTreeSet::from(["b".into()])));
    }

    #[test]
    fn prefer_no_schedule_taints_do_not_keep_a_pod_off() {
        let n = node(
            json!({}),
            json!([{"key": "x", "effect": "PreferNoSchedule"}]),
        );
        assert!(n.admits(&pod(json!({}))));
    }
}
