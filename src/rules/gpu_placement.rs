//! `gpu-placement` (Cost Optimization): a pod that requests a GPU (an
//! extended resource, or a DRA claim of a GPU device class) targets
//! the GPU node pool (nodeSelector, or a required node affinity that says
//! the same) and tolerates its taint; a pod that requests none stays off
//! GPU nodes; and, where the platform team lists them, GPU pods pick only
//! approved VM sizes. WAF: "use GPU nodes only for work that needs them".

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{PodSpec, Toleration};
use serde_json::{Value, json};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Finding, Outcome, PolicyFacts, Rule, Subject, add, flow_map, pointer};
pub use crate::gpu::{GpuResources, GpuUse};
use crate::gpu::{builtin_device_classes, builtin_resource_names};
use crate::placement::required_terms;
use crate::problems::duplicates;
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::WorkloadKind;

pub const INSTANCE_TYPE_LABELS: [&str; 2] = [
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
];

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
    #[serde(default = "builtin_resource_names")]
    pub resource_names: Vec<String>,
    /// DRA device classes (resource.k8s.io/v1 `DeviceClass` names) that are
    /// GPUs: a pod whose `spec.resourceClaims` name a ResourceClaim or a
    /// ResourceClaimTemplate that requests a device of one of these classes
    /// (`exactly.deviceClassName` or a `firstAvailable` entry) is a GPU pod,
    /// as if it requested a GPU resource.
    #[serde(default = "builtin_device_classes")]
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
            resource_names: builtin_resource_names(),
            device_classes: builtin_device_classes(),
            node_selector: default_gpu_node_selector(),
            tolerations: default_gpu_tolerations(),
            allowed_vm_sizes: Vec::new(),
        }
    }
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

impl GpuPlacement {
    /// What this policy counts as a GPU: its resource names and device
    /// classes.
    pub fn gpus(&self) -> GpuResources {
        GpuResources::with_classes(&self.resource_names, &self.device_classes)
    }
}

impl Rule for GpuPlacement {
    const ID: RuleId = RuleId::GpuPlacement;
    const PILLAR: Pillar = Pillar::CostOptimization;
    const SUMMARY: &'static str = "GPU pods land on GPU nodes, and nothing else does";
    const SINCE: Release = Release::V0_1;

    type Settings = Settings;

    fn mutate(&self) -> bool {
        self.mutate
    }

    fn compile(&self, _policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        if spec.resource_names.is_empty() {
            problems.push(format!(
                "{at}.resourceNames: list at least one GPU resource"
            ));
        }
        duplicates(
            spec.resource_names.iter().map(String::as_str),
            &format!("{at}.resourceNames"),
            problems,
        );
        for (i, size) in spec.allowed_vm_sizes.iter().enumerate() {
            if size.trim().is_empty() {
                problems.push(format!(
                    "{at}.allowedVmSizes[{i}]: a VM size cannot be empty"
                ));
            }
        }
        for (i, class) in spec.device_classes.iter().enumerate() {
            if class.trim().is_empty() {
                problems.push(format!(
                    "{at}.deviceClasses[{i}]: a device class name cannot be empty"
                ));
            }
        }
        if spec.node_selector.is_empty() && spec.tolerations.is_empty() {
            problems.push(format!(
                "{at}: give a nodeSelector or tolerations that identify GPU nodes"
            ));
        }
        for (i, t) in spec.tolerations.iter().enumerate() {
            let op = t.operator.as_deref().unwrap_or("Equal");
            if !matches!(op, "Equal" | "Exists") {
                problems.push(format!(
                    "{at}.tolerations[{i}].operator: must be Equal or Exists"
                ));
            }
            if t.key.as_deref().unwrap_or_default().is_empty() {
                problems.push(format!(
                    "{at}.tolerations[{i}].key: name the GPU nodes' taint key"
                ));
            }
        }
        Settings {
            gpus: spec.gpus(),
            node_selector: spec.node_selector.clone(),
            tolerations: spec.tolerations.clone(),
            allowed_vm_sizes: spec.allowed_vm_sizes.iter().cloned().collect(),
        }
    }

    fn check(on: &Subject, s: &Settings, mutate: bool) -> Outcome {
        let w = on.workload;
        let ctx = on.ctx;
        let mut out = Outcome::default();
        // KAITO places its pods itself (node affinity to the nodes it
        // provisions, its own GPU tolerations): only the VM size it asks
        // for is the user's choice.
        if matches!(w.kind, WorkloadKind::Workspace | WorkloadKind::InferenceSet) {
            if let Some((size, path)) = &w.instance_type
                && !s.allowed_vm_sizes.is_empty()
                && !s.allowed_vm_sizes.contains(size)
                && w.part.is_none()
            {
                out.findings.push(Finding::new(
                    format!(
                        "{} {} asks KAITO for VM size {size}, which the policy does not allow \
                         (allowed: {})",
                        w.kind,
                        w.name,
                        join(&s.allowed_vm_sizes.iter().collect::<Vec<_>>())
                    ),
                    format!(
                        "set {}: {}",
                        path.trim_start_matches('/').replace('/', "."),
                        s.allowed_vm_sizes.iter().next().map_or("", String::as_str)
                    ),
                    *path,
                ));
            }
            return out;
        }
        let pod = &w.pod;
        let node_selector = pod.node_selector.clone().unwrap_or_default();
        let selector_path = w.pod_field("nodeSelector");
        let tolerations_path = w.pod_field("tolerations");
        match s.gpus.used_by(w, ctx) {
            Some(gpu) => {
                let who = gpu.describe();
                let missing: BTreeMap<&String, &String> = s
                    .node_selector
                    .iter()
                    .filter(|(k, v)| !selects(pod, &node_selector, k, v))
                    .collect();
                if !missing.is_empty() {
                    let conflicting = missing.keys().any(|k| node_selector.contains_key(*k));
                    out.findings.push(Finding {
                    message: format!(
                        "{who} but the pod does not select GPU nodes {}: it can land on a node pool \
                         the platform team did not size for it",
                        flow_map(missing.iter().map(|(k, v)| (*k, *v)))
                    ),
                    fix: format!(
                        "add to the pod spec: nodeSelector: {}",
                        flow_map(missing.iter().map(|(k, v)| (*k, *v)))
                    ),
                    path: selector_path.clone(),
                    fixable: !conflicting,object: None, edit: None,
});
                    if mutate && !conflicting {
                        if pod.node_selector.is_some() {
                            for (k, v) in &missing {
                                out.patch.push(add(
                                    pointer(&selector_path, &[k.as_str()]),
                                    Value::String((*v).clone()),
                                ));
                            }
                        } else {
                            out.patch
                                .push(add(pointer(&selector_path, &[]), json!(missing)));
                        }
                    }
                }

                let untolerated: Vec<&Toleration> = s
                    .tolerations
                    .iter()
                    .filter(|taint| !tolerated(pod, taint))
                    .collect();
                if !untolerated.is_empty() {
                    out.findings.push(Finding {
                    message: format!(
                        "{who} but the pod does not tolerate the GPU nodes' taint {}: it stays Pending",
                        untolerated.iter().map(|t| taint_text(t)).collect::<Vec<_>>().join(", ")
                    ),
                    fix: format!(
                        "add to the pod spec: tolerations: [{}]",
                        untolerated.iter().map(|t| toleration_flow(t)).collect::<Vec<_>>().join(", ")
                    ),
                    path: tolerations_path.clone(),
                    fixable: true,object: None, edit: None,
});
                    if mutate {
                        if pod.tolerations.is_some() {
                            for t in &untolerated {
                                out.patch.push(add(
                                    pointer(&tolerations_path, &["-"]),
                                    serde_json::to_value(t).unwrap_or_default(),
                                ));
                            }
                        } else {
                            out.patch.push(add(
                                pointer(&tolerations_path, &[]),
                                serde_json::to_value(&untolerated).unwrap_or_default(),
                            ));
                        }
                    }
                }

                if !s.allowed_vm_sizes.is_empty() {
                    let sizes = selected_vm_sizes(pod, &node_selector);
                    let refused: Vec<&String> = sizes
                        .iter()
                        .filter(|size| !s.allowed_vm_sizes.contains(*size))
                        .collect();
                    if !refused.is_empty() {
                        out.findings.push(Finding {
                            message: format!(
                                "{who} on VM size {} that the policy does not allow (allowed: {})",
                                join(&refused),
                                join(&s.allowed_vm_sizes.iter().collect::<Vec<_>>())
                            ),
                            fix: format!(
                                "select an allowed size: nodeSelector: {{{}: {}}}",
                                INSTANCE_TYPE_LABELS[0],
                                s.allowed_vm_sizes.iter().next().map_or("", String::as_str)
                            ),
                            path: selector_path.clone(),
                            fixable: false,
                            object: None,
                            edit: None,
                        });
                    }
                }
            }
            None => {
                let targeted: BTreeMap<&String, &String> = s
                    .node_selector
                    .iter()
                    .filter(|(k, v)| selects(pod, &node_selector, k, v))
                    .collect();
                if !targeted.is_empty() {
                    out.findings.push(Finding {
                    message: format!(
                        "the pod requests no GPU but selects GPU nodes {}: it occupies a GPU node \
                         without using the GPU",
                        flow_map(targeted.iter().map(|(k, v)| (*k, *v)))
                    ),
                    fix: format!(
                        "remove {} from nodeSelector / node affinity, or request the GPU it needs",
                        join(&targeted.keys().collect::<Vec<_>>())
                    ),
                    path: selector_path.clone(),
                    fixable: false,object: None, edit: None,
});
                }
                for taint in &s.tolerations {
                    if let Some(i) = tolerating_index(pod, taint) {
                        out.findings.push(Finding {
                        message: format!(
                            "the pod requests no GPU but tolerates the GPU nodes' taint {}: the \
                             scheduler may put it on a GPU node",
                            taint_text(taint)
                        ),
                        fix: format!("remove tolerations[{i}] from the pod spec"),
                        path: pointer(&tolerations_path, &[&i.to_string()])
                            .as_str()
                            .to_owned(),
                        fixable: false,object: None, edit: None,
});
                    }
                }
                let gpu_sizes: Vec<String> = selected_vm_sizes(pod, &node_selector)
                    .into_iter()
                    .filter(|size| s.allowed_vm_sizes.contains(size))
                    .collect();
                if !gpu_sizes.is_empty() {
                    out.findings.push(Finding {
                        message: format!(
                            "the pod requests no GPU but selects GPU VM size {}",
                            join(&gpu_sizes.iter().collect::<Vec<_>>())
                        ),
                        fix: "select a CPU node pool, or request the GPU it needs".into(),
                        path: selector_path,
                        fixable: false,
                        object: None,
                        edit: None,
                    });
                }
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub gpus: GpuResources,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub allowed_vm_sizes: BTreeSet<String>,
}

/// True when every node the pod can be scheduled on carries `key=value`:
/// through nodeSelector, or through required node affinity where every
/// term (terms are ORed) admits only that value.
fn selects(
    pod: &PodSpec,
    node_selector: &BTreeMap<String, String>,
    key: &str,
    value: &str,
) -> bool {
    if node_selector.get(key).is_some_and(|v| v == value) {
        return true;
    }
    let terms = required_terms(pod);
    !terms.is_empty()
        && terms.iter().all(|term| {
            term.match_expressions.iter().flatten().any(|e| {
                e.key == key
                    && e.operator == "In"
                    && e.values
                        .as_ref()
                        .is_some_and(|vs| !vs.is_empty() && vs.iter().all(|v| v == value))
            })
        })
}

/// The VM sizes the pod pins itself to, by nodeSelector or required affinity.
fn selected_vm_sizes(pod: &PodSpec, node_selector: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut sizes = BTreeSet::new();
    for label in INSTANCE_TYPE_LABELS {
        if let Some(v) = node_selector.get(label) {
            sizes.insert(v.clone());
        }
        for term in required_terms(pod) {
            for e in term.match_expressions.iter().flatten() {
                if e.key == label && e.operator == "In" {
                    sizes.extend(e.values.iter().flatten().cloned());
                }
            }
        }
    }
    sizes
}

/// Kubernetes' ToleratesTaint: the policy's toleration entry stands for the
/// taint the GPU nodes carry.
fn tolerates(t: &Toleration, taint: &Toleration) -> bool {
    let effect_ok = t.effect.as_deref().is_none_or(str::is_empty) || t.effect == taint.effect;
    if !effect_ok {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || Some(key) == taint.key.as_deref(),
        _ => {
            Some(key) == taint.key.as_deref()
                && t.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
    }
}

fn tolerating_index(pod: &PodSpec, taint: &Toleration) -> Option<usize> {
    pod.tolerations
        .iter()
        .flatten()
        .position(|t| tolerates(t, taint))
}

fn tolerated(pod: &PodSpec, taint: &Toleration) -> bool {
    tolerating_index(pod, taint).is_some()
}

fn taint_text(t: &Toleration) -> String {
    format!(
        "{}={}:{}",
        t.key.as_deref().unwrap_or_default(),
        t.value.as_deref().unwrap_or_default(),
        t.effect.as_deref().unwrap_or_default()
    )
}

fn toleration_flow(t: &Toleration) -> String {
    let mut parts = vec![format!("key: {}", t.key.as_deref().unwrap_or_default())];
    parts.push(format!(
        "operator: {}",
        t.operator.as_deref().unwrap_or("Equal")
    ));
    if let Some(v) = &t.value {
        parts.push(format!("value: {v}"));
    }
    if let Some(e) = &t.effect {
        parts.push(format!("effect: {e}"));
    }
    format!("{{{}}}", parts.join(", "))
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::rules::testing::*;

    fn settings_with(f: impl FnOnce(&mut GpuPlacement)) -> Settings {
        let mut spec = GpuPlacement::default();
        f(&mut spec);
        settings_of(&spec)
    }

    fn run(obj: &Value) -> Outcome {
        run_rule::<GpuPlacement>(obj, &settings_with(|_| {}))
    }

    fn pod_spec(d: &mut Value) -> &mut Value {
        &mut d["spec"]["template"]["spec"]
    }

    #[test]
    fn of_two_gpu_containers_the_message_names_the_first_by_name_in_any_order() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)
            .as_object_mut()
            .unwrap()
            .remove("tolerations");
        let mut second = container(&mut d).clone();
        second["name"] = json!("aaa-sidecar");
        let containers = pod_spec(&mut d)["containers"].as_array_mut().unwrap();
        containers.push(second);
        let forward = run(&d);
        pod_spec(&mut d)["containers"]
            .as_array_mut()
            .unwrap()
            .reverse();
        let reversed = run(&d);
        assert!(
            forward.findings[0]
                .message
                .starts_with("container \"aaa-sidecar\""),
            "{}",
            forward.findings[0].message
        );
        assert_eq!(forward.findings[0].message, reversed.findings[0].message);
    }

    #[test]
    fn accepts_gpu_pod_on_gpu_nodes_with_toleration() {
        assert_eq!(run(&gpu_deployment()), Outcome::default());
    }

    #[test]
    fn denies_gpu_pod_without_toleration_and_adds_it() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)
            .as_object_mut()
            .unwrap()
            .remove("tolerations");
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(
            out.findings[0].message,
            "container \"llm\" requests nvidia.com/gpu but the pod does not tolerate the GPU \
             nodes' taint sku=gpu:NoSchedule: it stays Pending"
        );
        let patched = apply(&d, &out.patch);
        assert!(run(&patched).is_clean());
    }

    #[test]
    fn keeps_existing_tolerations_and_node_selector_entries() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)["tolerations"] =
            json!([{"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]);
        pod_spec(&mut d)["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
        let out = run(&d);
        assert_eq!(out.findings.len(), 2);
        let patched = apply(&d, &out.patch);
        let spec = &patched["spec"]["template"]["spec"];
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(spec["tolerations"][0]["key"], "team");
        assert_eq!(
            spec["nodeSelector"],
            json!({"kubernetes.io/os": "linux", "kubernetes.azure.com/accelerator": "nvidia"})
        );
        assert!(run(&patched).is_clean());
    }

    #[test]
    fn patches_a_pod_that_has_no_node_selector_at_all() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)
            .as_object_mut()
            .unwrap()
            .remove("nodeSelector");
        let out = run(&d);
        assert!(
            out.findings[0]
                .message
                .contains("does not select GPU nodes {kubernetes.azure.com/accelerator: nvidia}")
        );
        assert!(run(&apply(&d, &out.patch)).is_clean());
    }

    #[test]
    fn required_node_affinity_is_as_good_as_a_node_selector() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)
            .as_object_mut()
            .unwrap()
            .remove("nodeSelector");
        pod_spec(&mut d)["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.azure.com/accelerator", "operator": "In", "values": ["nvidia"]}]}]}}});
        assert!(run(&d).is_clean());
    }

    #[test]
    fn affinity_that_also_admits_other_nodes_is_not_equivalent() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)
            .as_object_mut()
            .unwrap()
            .remove("nodeSelector");
        pod_spec(&mut d)["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.azure.com/accelerator", "operator": "In", "values": ["nvidia"]}]},
                {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}});
        assert_eq!(run(&d).findings.len(), 1);
    }

    #[test]
    fn a_conflicting_node_selector_value_is_not_overwritten() {
        let mut d = gpu_deployment();
        pod_spec(&mut d)["nodeSelector"] = json!({"kubernetes.azure.com/accelerator": "amd"});
        let out = run(&d);
        assert!(!out.findings[0].fixable);
        assert!(out.patch.is_empty());
    }

    #[test]
    fn gpu_limits_on_init_containers_count_as_gpu_requests() {
        let mut d = cpu_deployment();
        pod_spec(&mut d)["initContainers"] = json!([{"name": "warmup", "image": "x",
            "resources": {"limits": {"nvidia.com/gpu": "1"}}}]);
        let out = run(&d);
        assert_eq!(out.findings.len(), 2);
        assert!(
            out.findings[0]
                .message
                .starts_with("init container \"warmup\" requests nvidia.com/gpu")
        );
    }

    #[test]
    fn mig_slices_are_gpus_through_the_prefix_pattern() {
        let mut d = cpu_deployment();
        pod_spec(&mut d)["containers"][0]["resources"]["limits"] =
            json!({"nvidia.com/mig-1g.10gb": "1"});
        assert_eq!(run(&d).findings.len(), 2);
    }

    #[test]
    fn a_zero_gpu_request_is_no_gpu_request() {
        let mut d = cpu_deployment();
        pod_spec(&mut d)["containers"][0]["resources"]["limits"] = json!({"nvidia.com/gpu": "0"});
        assert!(run(&d).is_clean());
    }

    #[test]
    fn cpu_pods_stay_off_gpu_nodes() {
        let mut d = cpu_deployment();
        pod_spec(&mut d)["nodeSelector"] = json!({"kubernetes.azure.com/accelerator": "nvidia"});
        pod_spec(&mut d)["tolerations"] = json!([{"operator": "Exists"}]);
        let out = run(&d);
        assert_eq!(out.findings.len(), 2, "{:?}", out.findings);
        assert!(
            out.findings[0]
                .message
                .starts_with("the pod requests no GPU but selects GPU nodes")
        );
        assert!(
            out.findings[1]
                .message
                .contains("tolerates the GPU nodes' taint sku=gpu:NoSchedule")
        );
        assert_eq!(out.findings[1].path, "/spec/template/spec/tolerations/0");
        assert!(out.patch.is_empty());
    }

    #[test]
    fn cpu_pods_without_gpu_placement_pass() {
        assert!(run(&cpu_deployment()).is_clean());
    }

    #[test]
    fn restricts_vm_sizes_only_where_the_pod_selects_one() {
        let s = settings_with(|g| g.allowed_vm_sizes = vec!["Standard_NC24ads_A100_v4".into()]);
        let mut d = gpu_deployment();
        assert!(
            GpuPlacement::check(&on(&workload(&d)), &s, true).is_clean(),
            "no size selected is fine"
        );
        pod_spec(&mut d)["nodeSelector"]["node.kubernetes.io/instance-type"] =
            json!("Standard_ND96asr_v4");
        let out = GpuPlacement::check(&on(&workload(&d)), &s, true);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0]
                .message
                .contains("VM size Standard_ND96asr_v4 that the policy does not allow")
        );
        pod_spec(&mut d)["nodeSelector"]["node.kubernetes.io/instance-type"] =
            json!("Standard_NC24ads_A100_v4");
        assert!(GpuPlacement::check(&on(&workload(&d)), &s, true).is_clean());
    }

    #[test]
    fn vm_sizes_in_required_affinity_are_checked_too() {
        let s = settings_with(|g| g.allowed_vm_sizes = vec!["Standard_NC24ads_A100_v4".into()]);
        let mut d = gpu_deployment();
        pod_spec(&mut d)["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "node.kubernetes.io/instance-type",
                "operator": "In", "values": ["Standard_NC24ads_A100_v4", "Standard_NC96ads_A100_v4"]}]}]}}});
        let out = GpuPlacement::check(&on(&workload(&d)), &s, true);
        assert!(out.findings[0].message.contains("Standard_NC96ads_A100_v4"));
    }

    #[test]
    fn toleration_matching_follows_kubernetes() {
        let taint = Toleration {
            key: Some("sku".into()),
            value: Some("gpu".into()),
            effect: Some("NoSchedule".into()),
            operator: Some("Equal".into()),
            toleration_seconds: None,
        };
        let t = |v: Value| -> Toleration { serde_json::from_value(v).unwrap() };
        assert!(tolerates(
            &t(json!({"key": "sku", "operator": "Exists"})),
            &taint
        ));
        assert!(tolerates(&t(json!({"operator": "Exists"})), &taint));
        assert!(tolerates(&t(json!({"key": "sku", "value": "gpu"})), &taint));
        assert!(!tolerates(
            &t(json!({"key": "sku", "value": "cpu"})),
            &taint
        ));
        assert!(!tolerates(
            &t(json!({"key": "sku", "operator": "Exists", "effect": "NoExecute"})),
            &taint
        ));
        assert!(!tolerates(
            &t(json!({"key": "other", "operator": "Exists"})),
            &taint
        ));
    }

    /// The context with one ResourceClaimTemplate `gpu` in `ml`
    /// requesting a device of `class`.
    fn claim_template(class: &str) -> Context {
        let mut ctx = Context::default();
        ctx.add_device_claim(crate::context::DeviceClaimRef {
            source: crate::context::ClaimSource::ResourceClaimTemplate,
            namespace: "ml".into(),
            name: "gpu".into(),
            device_classes: vec![class.into()],
        });
        ctx
    }

    /// The CPU deployment, claiming the template `gpu` through DRA.
    fn claiming_deployment() -> Value {
        let mut d = cpu_deployment();
        pod_spec(&mut d)["resourceClaims"] =
            json!([{"name": "gpu", "resourceClaimTemplateName": "gpu"}]);
        d
    }

    #[test]
    fn a_dra_claim_of_a_gpu_class_must_target_and_tolerate_gpu_nodes_and_is_patched() {
        let d = claiming_deployment();
        let ctx = claim_template("gpu.nvidia.com");
        let s = settings_with(|_| {});
        let out = GpuPlacement::check(&in_context(&workload(&d), &ctx), &s, true);
        assert_eq!(out.findings.len(), 2, "{:?}", out.findings);
        assert!(
            out.findings[0].message.starts_with(
                "the pod claims a GPU through DRA (ResourceClaimTemplate \"gpu\", device class \
                 gpu.nvidia.com) but the pod does not select GPU nodes"
            ),
            "{}",
            out.findings[0].message
        );
        let patched = apply(&d, &out.patch);
        assert!(GpuPlacement::check(&in_context(&workload(&patched), &ctx), &s, true).is_clean());
        // Where it does: not "a pod that requests no GPU" on GPU nodes.
        assert!(
            GpuPlacement::check(
                &in_context(&workload(&patched), &claim_template("mig.nvidia.com")),
                &s,
                true
            )
            .is_clean()
        );
    }

    #[test]
    fn a_dra_claim_of_another_class_or_of_an_unknown_template_is_no_gpu() {
        let d = claiming_deployment();
        let s = settings_with(|_| {});
        for ctx in [claim_template("nic.example.com"), Context::default()] {
            assert!(GpuPlacement::check(&in_context(&workload(&d), &ctx), &s, true).is_clean());
        }
        // A shared ResourceClaim is looked up by its own name and kind.
        let mut d = cpu_deployment();
        pod_spec(&mut d)["resourceClaims"] = json!([{"name": "gpu", "resourceClaimName": "gpu"}]);
        let ctx = claim_template("gpu.nvidia.com");
        assert!(GpuPlacement::check(&in_context(&workload(&d), &ctx), &s, true).is_clean());
    }

    #[test]
    fn device_classes_come_from_the_policy() {
        let d = claiming_deployment();
        let ctx = claim_template("gpu.amd.com");
        assert!(
            GpuPlacement::check(
                &in_context(&workload(&d), &ctx),
                &settings_with(|_| {}),
                true
            )
            .is_clean()
        );
        let s = settings_with(|g| g.device_classes = vec!["gpu.amd.com".into()]);
        let out = GpuPlacement::check(&in_context(&workload(&d), &ctx), &s, true);
        assert_eq!(out.findings.len(), 2);
        assert!(out.findings[0].message.contains("device class gpu.amd.com"));
    }

    #[test]
    fn time_sliced_amd_and_intel_gpus_are_gpus_by_default() {
        for resource in [
            "nvidia.com/gpu.shared",
            "amd.com/gpu",
            "gpu.intel.com/i915",
            "gpu.intel.com/xe",
        ] {
            let mut d = cpu_deployment();
            pod_spec(&mut d)["containers"][0]["resources"]["limits"] = json!({resource: "1"});
            let out = run(&d);
            assert_eq!(out.findings.len(), 2, "{resource}");
            assert!(
                out.findings[0]
                    .message
                    .starts_with(&format!("container \"server\" requests {resource} but")),
                "{}",
                out.findings[0].message
            );
        }
        // Intel's monitoring resource sees every GPU and uses none.
        let mut d = cpu_deployment();
        pod_spec(&mut d)["containers"][0]["resources"]["limits"] =
            json!({"gpu.intel.com/i915_monitoring": "1"});
        assert!(run(&d).is_clean());
    }

    #[test]
    fn refuses_settings_that_cannot_identify_gpu_nodes() {
        let mut spec = GpuPlacement::default();
        spec.node_selector.clear();
        spec.tolerations.clear();
        spec.resource_names.clear();
        spec.device_classes = vec![" ".into()];
        let mut problems = vec![];
        spec.compile(&policy_facts(), "gpuPlacement", &mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[1].starts_with("gpuPlacement.deviceClasses[0]"));
    }
}
