//! How much memory one GPU of a container has, and where that figure comes
//! from, in the order issue 25 sets: a MIG resource the container requests;
//! the GPU feature discovery labels the pod pins (`nvidia.com/gpu.memory`
//! in MiB, `nvidia.com/gpu.product`); the VM size it pins
//! (`node.kubernetes.io/instance-type`); else the Nodes it can run on that
//! have GPUs. Where several are possible the largest is taken, so a verdict
//! against it holds on every one; where any of them is unknown there is no
//! figure at all (an unknown one could be larger). Vendor figures in GB are
//! nominal and are read as GiB: never smaller than what the GPU has.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, PodSpec};

use crate::catalog::Catalog;
use crate::context::Context;
use crate::placement::{NodeRef, pinned_values};

/// The GPU memory label of GPU feature discovery, in MiB.
pub const MEMORY_LABEL: &str = "nvidia.com/gpu.memory";
pub const PRODUCT_LABEL: &str = "nvidia.com/gpu.product";
pub const INSTANCE_TYPE_LABELS: [&str; 2] = [
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
];

/// One GPU's memory, as the container will get it.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuMemory {
    /// MiB of one GPU (or of the MIG slice).
    pub mib: u64,
    /// What says so, for messages: `MIG nvidia.com/mig-3g.40gb`,
    /// `Standard_NC24ads_A100_v4: NVIDIA A100 80GB PCIe`, …
    pub source: String,
}

impl GpuMemory {
    pub fn gib(&self) -> f64 {
        self.mib as f64 / 1024.0
    }
}

/// The memory of one GPU the container gets, or None where it cannot be
/// known (nothing pins it, or one of the candidates is unknown).
pub fn gpu_memory(
    pod: &PodSpec,
    container: &Container,
    ctx: &Context,
    catalog: &Catalog,
) -> Option<GpuMemory> {
    if let Some(m) = mig(container, catalog) {
        return Some(m);
    }
    if let Some(values) = pinned_values(pod, MEMORY_LABEL) {
        return largest(values.iter().map(|v| {
            v.parse::<u64>().ok().map(|mib| GpuMemory {
                mib,
                source: format!("{MEMORY_LABEL}={v}"),
            })
        }));
    }
    if let Some(values) = pinned_values(pod, PRODUCT_LABEL) {
        return largest(values.iter().map(|v| product(v, catalog)));
    }
    for label in INSTANCE_TYPE_LABELS {
        if let Some(values) = pinned_values(pod, label) {
            return largest(values.iter().map(|v| vm_size(v, catalog)));
        }
    }
    let nodes: Vec<&NodeRef> = ctx
        .nodes()
        .iter()
        .filter(|n| n.admits(pod) && has_gpus(n))
        .collect();
    if nodes.is_empty() {
        return None;
    }
    let names: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    largest(nodes.iter().map(|n| of_node(n, catalog))).map(|m| GpuMemory {
        source: format!(
            "{} on Node{} {}",
            m.source,
            if names.len() == 1 { "" } else { "s" },
            names.into_iter().collect::<Vec<_>>().join(", ")
        ),
        ..m
    })
}

/// A MIG slice the container requests: its name carries its memory.
fn mig(c: &Container, catalog: &Catalog) -> Option<GpuMemory> {
    let resources = c.resources.as_ref()?;
    let names = resources
        .limits
        .iter()
        .chain(resources.requests.iter())
        .flat_map(|m| m.keys());
    for name in names {
        if name.starts_with("nvidia.com/mig-")
            && let Some(p) = catalog.mig_profile(name)
        {
            return Some(GpuMemory {
                mib: gib_to_mib(p.memory_gb),
                source: format!("MIG {name}"),
            });
        }
    }
    None
}

fn product(label: &str, catalog: &Catalog) -> Option<GpuMemory> {
    catalog.gpu_product(label).map(|p| GpuMemory {
        mib: gib_to_mib(p.memory_gb),
        source: format!("{PRODUCT_LABEL}={label}: {}", p.gpu),
    })
}

fn vm_size(name: &str, catalog: &Catalog) -> Option<GpuMemory> {
    catalog.vm_size(name).map(|s| GpuMemory {
        mib: gib_to_mib(s.memory_per_gpu_gb),
        source: format!("{name}: {}", s.gpu),
    })
}

/// A Node's GPU memory: its GPU feature discovery labels, else its size.
fn of_node(n: &NodeRef, catalog: &Catalog) -> Option<GpuMemory> {
    if let Some(v) = n.labels.get(MEMORY_LABEL) {
        return v.parse::<u64>().ok().map(|mib| GpuMemory {
            mib,
            source: format!("{MEMORY_LABEL}={v}"),
        });
    }
    if let Some(v) = n.labels.get(PRODUCT_LABEL) {
        return product(v, catalog);
    }
    INSTANCE_TYPE_LABELS
        .iter()
        .find_map(|l| n.labels.get(*l))
        .and_then(|v| vm_size(v, catalog))
}

fn has_gpus(n: &NodeRef) -> bool {
    n.allocatable.iter().any(|(name, count)| {
        (name == "nvidia.com/gpu" || name == "amd.com/gpu" || name.starts_with("nvidia.com/mig-"))
            && count.parse::<u64>().is_ok_and(|c| c > 0)
    })
}

/// The largest, or None if any is unknown (or there are none).
fn largest(all: impl Iterator<Item = Option<GpuMemory>>) -> Option<GpuMemory> {
    let mut best: Option<GpuMemory> = None;
    for m in all {
        let m = m?;
        if best.as_ref().is_none_or(|b| m.mib > b.mib) {
            best = Some(m);
        }
    }
    best
}

fn gib_to_mib(gb: f64) -> u64 {
    (gb * 1024.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use serde_json::{Value, json};

    fn pod(spec: Value) -> PodSpec {
        serde_json::from_value(spec).unwrap()
    }

    fn gpu_pod(extra: Value, resource: &str) -> PodSpec {
        let mut spec = json!({"containers": [{"name": "llm", "image": "vllm/vllm-openai:v0.11.0",
            "resources": {"limits": {resource: "1"}}}]});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        pod(spec)
    }

    fn judge(p: &PodSpec, ctx: &Context) -> Option<GpuMemory> {
        gpu_memory(p, &p.containers[0], ctx, catalog::builtin())
    }

    fn selector(key: &str, value: &str) -> Value {
        json!({"nodeSelector": {key: value}})
    }

    #[test]
    fn a_mig_slice_is_its_name() {
        let p = gpu_pod(json!({}), "nvidia.com/mig-3g.40gb");
        let m = judge(&p, &Context::default()).unwrap();
        assert_eq!(m.mib, 40 * 1024);
        assert_eq!(m.source, "MIG nvidia.com/mig-3g.40gb");
    }

    #[test]
    fn the_gpu_memory_label_comes_before_the_vm_size() {
        let mut spec = selector(MEMORY_LABEL, "81920");
        spec["nodeSelector"]["node.kubernetes.io/instance-type"] = json!("Standard_NC4as_T4_v3");
        let m = judge(&gpu_pod(spec, "nvidia.com/gpu"), &Context::default()).unwrap();
        assert_eq!(m.mib, 81920);
        assert_eq!(m.source, "nvidia.com/gpu.memory=81920");
    }

    #[test]
    fn a_vm_size_gives_its_gpus_memory() {
        let p = gpu_pod(
            selector(
                "node.kubernetes.io/instance-type",
                "Standard_NC24ads_A100_v4",
            ),
            "nvidia.com/gpu",
        );
        let m = judge(&p, &Context::default()).unwrap();
        assert_eq!(m.gib(), 80.0);
        assert!(
            m.source == "Standard_NC24ads_A100_v4: NVIDIA A100 80GB PCIe",
            "{}",
            m.source
        );
    }

    #[test]
    fn several_sizes_give_the_largest_and_an_unknown_one_gives_nothing() {
        let terms = |sizes: Value| {
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": sizes}]}]}}}})
        };
        let both = gpu_pod(
            terms(json!(["Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4"])),
            "nvidia.com/gpu",
        );
        assert_eq!(judge(&both, &Context::default()).unwrap().gib(), 80.0);
        let unknown = gpu_pod(
            terms(json!(["Standard_NC4as_T4_v3", "Standard_Made_Up_v9"])),
            "nvidia.com/gpu",
        );
        assert_eq!(judge(&unknown, &Context::default()), None);
    }

    #[test]
    fn nothing_pinned_and_no_nodes_is_unknown() {
        assert_eq!(
            judge(&gpu_pod(json!({}), "nvidia.com/gpu"), &Context::default()),
            None
        );
    }

    #[test]
    fn the_nodes_a_pod_can_use_give_it_when_nothing_is_pinned() {
        let node = |name: &str, labels: Value, gpus: &str, taint: bool| {
            let taints = if taint {
                json!([{"key": "sku", "value": "gpu", "effect": "NoSchedule"}])
            } else {
                json!([])
            };
            NodeRef::from_value(
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
                    "spec": {"taints": taints}, "status": {"allocatable": {"nvidia.com/gpu": gpus}}}),
                name,
            )
            .unwrap()
        };
        let mut ctx = Context::default();
        ctx.add_node(node("gpu-1", json!({MEMORY_LABEL: "24576"}), "1", true));
        ctx.add_node(node(
            "gpu-2",
            json!({"node.kubernetes.io/instance-type": "Standard_NC24ads_A100_v4"}),
            "1",
            true,
        ));
        ctx.add_node(node("cpu-1", json!({}), "0", false));
        let tolerating = json!({"tolerations": [{"key": "sku", "operator": "Exists"}]});
        let m = judge(&gpu_pod(tolerating.clone(), "nvidia.com/gpu"), &ctx).unwrap();
        assert_eq!(m.gib(), 80.0, "the largest of the two GPU nodes");
        assert!(m.source.ends_with("on Nodes gpu-1, gpu-2"), "{}", m.source);
        // Without the toleration no GPU node takes it: nothing to say.
        assert_eq!(judge(&gpu_pod(json!({}), "nvidia.com/gpu"), &ctx), None);
        // A GPU node of unknown memory makes the figure unknown.
        ctx.add_node(node("gpu-3", json!({}), "1", true));
        assert_eq!(judge(&gpu_pod(tolerating, "nvidia.com/gpu"), &ctx), None);
    }
}
