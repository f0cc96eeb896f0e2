//! What counts as a GPU, and how a pod gets one. Inference detection and
//! the rules both read it, so it sits below both.

use std::collections::BTreeSet;

use crate::context::{ClaimSource, Context, DeviceClaimRef};
use crate::quantity::Quantity;
use crate::workload::{ContainerView, Workload};

/// `gpuPlacement.resourceNames`' default (`prefix*` is a pattern): NVIDIA's
/// device plugin (whole GPUs, time-sliced GPUs renamed `.shared`, MIG
/// slices), AMD's and Intel's (`i915` and `xe` drivers; not their
/// `*_monitoring` resources, which watch every GPU and use none).
pub fn builtin_resource_names() -> Vec<String> {
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
pub fn builtin_device_classes() -> Vec<String> {
    vec!["gpu.nvidia.com".into(), "mig.nvidia.com".into()]
}

/// What is a GPU: extended resource names (exact names and `prefix*`
/// patterns) and DRA device classes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuResources {
    exact: BTreeSet<String>,
    prefixes: BTreeSet<String>,
    device_classes: BTreeSet<String>,
}

/// How a pod gets a GPU.
#[derive(Clone, Debug)]
pub enum GpuUse<'a> {
    /// A container requests (or limits) a GPU extended resource.
    Resource {
        container: ContainerView<'a>,
        resource: String,
    },
    /// The pod claims a device of a GPU class through DRA.
    Claim {
        claim: &'a DeviceClaimRef,
        class: &'a str,
    },
}

impl GpuUse<'_> {
    /// The subject of a message: `container "llm" requests nvidia.com/gpu`.
    pub fn describe(&self) -> String {
        match self {
            GpuUse::Resource {
                container,
                resource,
            } => format!("{} requests {resource}", container.describe()),
            GpuUse::Claim { claim, class } => format!(
                "the pod claims a GPU through DRA ({} \"{}\", device class {class})",
                claim.source, claim.name
            ),
        }
    }
}

impl GpuResources {
    pub fn new(names: &[String]) -> GpuResources {
        let mut g = GpuResources::default();
        g.extend(names);
        g
    }

    /// Resource names and device classes: a policy's `gpuPlacement`.
    pub fn with_classes(names: &[String], classes: &[String]) -> GpuResources {
        let mut g = GpuResources::new(names);
        g.device_classes.extend(classes.iter().cloned());
        g
    }

    /// The GPUs inference detection knows with no policy at all: the
    /// defaults of `gpuPlacement`.
    pub fn builtin() -> GpuResources {
        GpuResources::with_classes(&builtin_resource_names(), &builtin_device_classes())
    }

    pub fn extend(&mut self, names: &[String]) {
        for n in names {
            match n.strip_suffix('*') {
                Some(prefix) => self.prefixes.insert(prefix.to_owned()),
                None => self.exact.insert(n.clone()),
            };
        }
    }

    pub fn extend_from(&mut self, other: &GpuResources) {
        self.exact.extend(other.exact.iter().cloned());
        self.prefixes.extend(other.prefixes.iter().cloned());
        self.device_classes
            .extend(other.device_classes.iter().cloned());
    }

    pub fn matches(&self, resource: &str) -> bool {
        self.exact.contains(resource)
            || self
                .prefixes
                .iter()
                .any(|p| resource.starts_with(p.as_str()))
    }

    /// A container asking for a non-zero amount of a GPU, and the resource
    /// name. Init containers count: they hold the GPU while they run. Of
    /// several, the first by name (names are unique in a pod), so that the
    /// message and the inference reason do not change when the containers
    /// are listed in another order (found by tests/properties.rs).
    pub fn requested_by<'a>(&self, w: &'a Workload) -> Option<(ContainerView<'a>, String)> {
        w.resourced_containers()
            .filter_map(|c| {
                let r = c.resources?;
                let name = r
                    .requests
                    .iter()
                    .chain(r.limits.iter())
                    .flatten()
                    .find(|(name, q)| {
                        self.matches(name) && Quantity::parse(&q.0).map_or(true, |v| !v.is_zero())
                    })
                    .map(|(name, _)| name.clone())?;
                Some((c, name))
            })
            .min_by(|(a, _), (b, _)| a.name.cmp(b.name))
    }

    /// How many GPUs one container gets and the resource it names: the
    /// sum of its GPU resources' limits (requests where it sets no limit;
    /// for extended resources the two are equal). None when it asks for no
    /// GPU, or a count is not a whole number (the apiserver refuses those).
    pub fn count_in(&self, c: &k8s_openapi::api::core::v1::Container) -> Option<(u32, String)> {
        let r = c.resources.as_ref()?;
        let mut names: Vec<&String> = r
            .limits
            .iter()
            .chain(r.requests.iter())
            .flat_map(|m| m.keys())
            .filter(|n| self.matches(n))
            .collect();
        names.sort();
        names.dedup();
        let mut total = 0u32;
        for name in &names {
            let q = r
                .limits
                .as_ref()
                .and_then(|l| l.get(*name))
                .or_else(|| r.requests.as_ref().and_then(|l| l.get(*name)))?;
            total = total.checked_add(q.0.trim().parse::<u32>().ok()?)?;
        }
        (total > 0).then(|| (total, names[0].clone()))
    }

    /// How the pod gets a GPU, if it does: a GPU resource first (as
    /// [`GpuResources::requested_by`]), else a DRA claim of a GPU class.
    pub fn used_by<'a>(&self, w: &'a Workload, ctx: &'a Context) -> Option<GpuUse<'a>> {
        if let Some((container, resource)) = self.requested_by(w) {
            return Some(GpuUse::Resource {
                container,
                resource,
            });
        }
        self.claimed_by(w, ctx)
            .map(|(claim, class)| GpuUse::Claim { claim, class })
    }

    /// The pod's first claim by name (order-independent, as
    /// [`GpuResources::requested_by`]) whose ResourceClaim or
    /// ResourceClaimTemplate, as the context knows it, requests a GPU device
    /// class; and that class. A claim whose object the context does not
    /// hold says nothing.
    pub fn claimed_by<'a>(
        &self,
        w: &'a Workload,
        ctx: &'a Context,
    ) -> Option<(&'a DeviceClaimRef, &'a str)> {
        w.pod
            .resource_claims
            .iter()
            .flatten()
            .filter_map(|pc| {
                let (source, name) =
                    match (&pc.resource_claim_name, &pc.resource_claim_template_name) {
                        (Some(name), _) => (ClaimSource::ResourceClaim, name),
                        (None, Some(name)) => (ClaimSource::ResourceClaimTemplate, name),
                        (None, None) => return None,
                    };
                let claim = ctx.device_claim(&w.namespace, source, name)?;
                let class = claim
                    .device_classes
                    .iter()
                    .find(|c| self.device_classes.contains(*c))?;
                Some((pc.name.as_str(), claim, class.as_str()))
            })
            .min_by(|a, b| a.0.cmp(b.0))
            .map(|(_, claim, class)| (claim, class))
    }
}
