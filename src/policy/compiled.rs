//! A policy checked and parsed, ready for the hot path: selectors compiled,
//! quantities and registry patterns parsed, each rule's action resolved.
//! A policy with any problem is refused whole, with every problem listed,
//! so no one ever runs half of a policy they meant to write.

use kube::core::{Selector, SelectorExt};

use super::{Action, WellArchitectedPolicy, WorkloadScope};
use crate::error::{Error, Result};
use crate::rules::gpu_placement::GpuResources;
use crate::rules::{autoscaler, gpu_placement, image_provenance, resources, zone_spread};
use crate::rules::{disruption_budget, host_isolation, probes, secret_env};
use crate::workload::{Workload, WorkloadKind};

/// A rule switched on, with its resolved action and settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Enabled<S> {
    pub action: Action,
    pub mutate: bool,
    pub settings: S,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub name: String,
    pub scope: WorkloadScope,
    pub kinds: Vec<WorkloadKind>,
    pub allow_opt_out: bool,
    namespace_selector: Option<Selector>,
    selector: Option<Selector>,
    /// What this policy counts as a GPU (its gpuPlacement.resourceNames).
    pub gpus: GpuResources,
    pub zone_spread: Option<Enabled<zone_spread::Settings>>,
    pub autoscaler: Option<Enabled<autoscaler::Settings>>,
    pub resources: Option<Enabled<resources::Settings>>,
    pub gpu_placement: Option<Enabled<gpu_placement::Settings>>,
    pub image_provenance: Option<Enabled<image_provenance::Settings>>,
    pub probes: Option<Enabled<probes::Settings>>,
    pub disruption_budget: Option<Enabled<disruption_budget::Settings>>,
    pub secret_env: Option<Enabled<secret_env::Settings>>,
    pub host_isolation: Option<Enabled<host_isolation::Settings>>,
}

fn enabled<S>(
    action: Option<Action>,
    default: Action,
    mutate: bool,
    settings: S,
) -> Option<Enabled<S>> {
    let action = action.unwrap_or(default);
    (action != Action::Off).then_some(Enabled {
        action,
        mutate,
        settings,
    })
}

fn compile_selector(
    ls: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    at: &str,
    problems: &mut Vec<String>,
) -> Option<Selector> {
    let ls = ls.clone()?;
    for (i, e) in ls.match_expressions.iter().flatten().enumerate() {
        let has_values = e.values.as_ref().is_some_and(|v| !v.is_empty());
        match e.operator.as_str() {
            "In" | "NotIn" if !has_values => problems.push(format!(
                "{at}.matchExpressions[{i}]: operator {} needs values",
                e.operator
            )),
            "Exists" | "DoesNotExist" if has_values => problems.push(format!(
                "{at}.matchExpressions[{i}]: operator {} takes no values",
                e.operator
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => problems.push(format!(
                "{at}.matchExpressions[{i}].operator: {other:?} is not one of In, NotIn, Exists, DoesNotExist"
            )),
        }
    }
    match Selector::try_from(ls) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(format!("{at}: {e}"));
            None
        }
    }
}

/// A list that names the same thing twice is a typo or a merge gone wrong:
/// say so rather than guess which entry was meant.
pub(crate) fn duplicates<'a>(
    items: impl Iterator<Item = &'a str>,
    at: &str,
    problems: &mut Vec<String>,
) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in items.enumerate() {
        if !seen.insert(item) {
            problems.push(format!("{at}[{i}]: {item:?} is listed twice"));
        }
    }
}

impl Policy {
    pub fn compile(p: &WellArchitectedPolicy) -> Result<Policy> {
        let name = p.metadata.name.clone().unwrap_or_default();
        let spec = &p.spec;
        let mut problems = Vec::new();
        if name.is_empty() {
            problems.push("metadata.name: a policy needs a name".to_owned());
        }
        if spec.matches.kinds.is_empty() {
            problems.push("spec.match.kinds: list at least one kind".to_owned());
        }
        duplicates(
            spec.matches.kinds.iter().map(|k| k.as_str()),
            "spec.match.kinds",
            &mut problems,
        );
        let r = &spec.rules;
        duplicates(
            r.gpu_placement.resource_names.iter().map(String::as_str),
            "spec.rules.gpuPlacement.resourceNames",
            &mut problems,
        );
        duplicates(
            r.resources.require_requests.iter().map(String::as_str),
            "spec.rules.resources.requireRequests",
            &mut problems,
        );
        duplicates(
            r.resources.require_limits.iter().map(String::as_str),
            "spec.rules.resources.requireLimits",
            &mut problems,
        );
        for (i, size) in r.gpu_placement.allowed_vm_sizes.iter().enumerate() {
            if size.trim().is_empty() {
                problems.push(format!(
                    "spec.rules.gpuPlacement.allowedVmSizes[{i}]: a VM size cannot be empty"
                ));
            }
        }
        let namespace_selector = compile_selector(
            &spec.matches.namespace_selector,
            "spec.match.namespaceSelector",
            &mut problems,
        );
        let selector =
            compile_selector(&spec.matches.selector, "spec.match.selector", &mut problems);
        let default = Action::from(spec.action);
        let at = "spec.rules";
        let gpus = GpuResources::new(&r.gpu_placement.resource_names);
        let zs = zone_spread::Settings::compile(
            &r.zone_spread,
            &format!("{at}.zoneSpread"),
            &mut problems,
        );
        let asc = autoscaler::Settings::compile(
            &r.autoscaler,
            &format!("{at}.autoscaler"),
            &mut problems,
        );
        let res = resources::Settings::compile(
            &r.resources,
            gpus.clone(),
            &format!("{at}.resources"),
            &mut problems,
        );
        let gpu = gpu_placement::Settings::compile(
            &r.gpu_placement,
            &format!("{at}.gpuPlacement"),
            &mut problems,
        );
        let img = image_provenance::Settings::compile(
            &r.image_provenance,
            &format!("{at}.imageProvenance"),
            &mut problems,
        );
        let prb = probes::Settings::compile(&r.probes, &format!("{at}.probes"), &mut problems);
        let pdb = disruption_budget::Settings::compile(
            &r.disruption_budget,
            &format!("{at}.disruptionBudget"),
            &mut problems,
        );
        let sec =
            secret_env::Settings::compile(&r.secret_env, &format!("{at}.secretEnv"), &mut problems);
        let host = host_isolation::Settings::compile(
            &r.host_isolation,
            gpus.clone(),
            &format!("{at}.hostIsolation"),
            &mut problems,
        );
        if !problems.is_empty() {
            return Err(Error::Policy {
                kind: "WellArchitectedPolicy",
                name: if name.is_empty() {
                    "<unnamed>".into()
                } else {
                    name
                },
                problems,
            });
        }
        Ok(Policy {
            name,
            scope: spec.matches.workloads,
            kinds: spec.matches.kinds.clone(),
            allow_opt_out: spec.matches.allow_opt_out,
            namespace_selector,
            selector,
            gpus,
            zone_spread: enabled(r.zone_spread.action, default, r.zone_spread.mutate, zs),
            autoscaler: enabled(r.autoscaler.action, default, false, asc),
            resources: enabled(r.resources.action, default, r.resources.mutate, res),
            gpu_placement: enabled(r.gpu_placement.action, default, r.gpu_placement.mutate, gpu),
            image_provenance: enabled(r.image_provenance.action, default, false, img),
            probes: enabled(r.probes.action, default, r.probes.mutate, prb),
            disruption_budget: enabled(r.disruption_budget.action, default, false, pdb),
            secret_env: enabled(r.secret_env.action, default, false, sec),
            host_isolation: enabled(r.host_isolation.action, default, false, host),
        })
    }

    /// Whether the policy's namespace, kind and label scope covers the
    /// workload (inference detection is decided by the caller).
    pub fn scope_covers(
        &self,
        w: &Workload,
        namespace_labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        self.kinds.contains(&w.kind)
            && self
                .namespace_selector
                .as_ref()
                .is_none_or(|s| s.matches(namespace_labels))
            && self.selector.as_ref().is_none_or(|s| s.matches(&w.labels))
    }
}

/// The policies in force, in name order (so ties resolve the same way in
/// every replica and in `check`).
#[derive(Clone, Debug)]
pub struct PolicySet {
    policies: Vec<Policy>,
    detection_gpus: GpuResources,
}

impl PolicySet {
    pub fn new(mut policies: Vec<Policy>) -> PolicySet {
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        let mut detection_gpus = GpuResources::builtin();
        for p in &policies {
            detection_gpus.extend_from(&p.gpus);
        }
        PolicySet {
            policies,
            detection_gpus,
        }
    }

    /// The built-in baseline alone: what `check` uses with no `--policy`.
    pub fn baseline() -> Result<PolicySet> {
        Ok(PolicySet::new(vec![Policy::compile(
            &super::baseline::policy()?,
        )?]))
    }

    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// GPU resource names that make a workload model serving.
    pub fn detection_gpus(&self) -> &GpuResources {
        &self.detection_gpus
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(spec: &str) -> WellArchitectedPolicy {
        serde_yaml_ng::from_str(&format!(
            "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedPolicy\nmetadata: {{name: p}}\nspec: {spec}\n"
        ))
        .unwrap()
    }

    fn problems(spec: &str) -> String {
        Policy::compile(&policy(spec)).unwrap_err().to_string()
    }

    #[test]
    fn refuses_duplicate_entries_naming_the_index() {
        let e = problems(
            "{match: {kinds: [Pod, Pod]}, rules: {resources: {requireRequests: [cpu, cpu]}}}",
        );
        assert!(
            e.contains("spec.match.kinds[1]: \"Pod\" is listed twice"),
            "{e}"
        );
        assert!(
            e.contains("spec.rules.resources.requireRequests[1]: \"cpu\" is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn refuses_bad_operator_quantity_and_empty_allow_lists_together() {
        let e = problems(
            "{match: {namespaceSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}}, \
             rules: {resources: {defaults: {requests: {cpu: lots}}}, \
             imageProvenance: {allowedRegistries: []}, gpuPlacement: {allowedVmSizes: [\"\"]}}}",
        );
        for want in [
            "spec.match.namespaceSelector.matchExpressions[0].operator",
            "spec.rules.resources.defaults.requests.cpu",
            "spec.rules.imageProvenance.allowedRegistries",
            "spec.rules.gpuPlacement.allowedVmSizes[0]",
        ] {
            assert!(e.contains(want), "{want} missing from {e}");
        }
    }
}
