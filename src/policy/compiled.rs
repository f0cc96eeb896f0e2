//! A policy checked and parsed, ready for the hot path: selectors compiled,
//! quantities and registry patterns parsed, each rule's action resolved.
//! A policy with any problem is refused whole, with every problem listed,
//! so no one ever runs half of a policy they meant to write.

use kube::core::{Selector, SelectorExt};

use super::release::RuleSet;
use super::{Action, OwnerKind, RuleId, Updates, WellArchitectedPolicy, WorkloadScope};
use crate::error::{Error, Result};
use crate::rules::gpu_placement::GpuResources;
use crate::rules::{
    autoscaler, disruption_budget, gpu_placement, graceful_termination, host_isolation,
    image_provenance, model_lineage, probes, resources, rollout_strategy, secret_env,
    shared_memory, workload_identity, zone_spread,
};
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
    pub updates: Updates,
    /// The release whose rules `spec.action` covers.
    pub rule_set: RuleSet,
    /// Rules newer than the rule set that set no action of their own: they
    /// run at most as Warn.
    pub newer_rules: Vec<RuleId>,
    namespace_selector: Option<Selector>,
    selector: Option<Selector>,
    exclude_owners: Vec<OwnerKind>,
    /// What this policy counts as a GPU (its gpuPlacement.resourceNames and
    /// deviceClasses).
    pub gpus: GpuResources,
    pub zone_spread: Option<Enabled<zone_spread::Settings>>,
    pub autoscaler: Option<Enabled<autoscaler::Settings>>,
    pub resources: Option<Enabled<resources::Settings>>,
    pub gpu_placement: Option<Enabled<gpu_placement::Settings>>,
    pub image_provenance: Option<Enabled<image_provenance::Settings>>,
    pub rollout_strategy: Option<Enabled<rollout_strategy::Settings>>,
    pub shared_memory: Option<Enabled<shared_memory::Settings>>,
    pub workload_identity: Option<Enabled<workload_identity::Settings>>,
    pub graceful_termination: Option<Enabled<graceful_termination::Settings>>,
    pub model_lineage: Option<Enabled<model_lineage::Settings>>,
    pub probes: Option<Enabled<probes::Settings>>,
    pub disruption_budget: Option<Enabled<disruption_budget::Settings>>,
    pub secret_env: Option<Enabled<secret_env::Settings>>,
    pub host_isolation: Option<Enabled<host_isolation::Settings>>,
}

/// The rule on, with its own action or else the policy's as the rule set
/// lets it run; None when that is Off.
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

/// Owner kinds must name a kind, once each; a group is written without
/// its version (`kaito.sh`, not `kaito.sh/v1beta1`).
pub(crate) fn owner_kinds(owners: &[OwnerKind], at: &str, problems: &mut Vec<String>) {
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
        owner_kinds(
            &spec.matches.exclude_owners,
            "spec.match.excludeOwners",
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
        let rule_set = match spec.rule_set.as_deref() {
            None => RuleSet::Latest,
            Some(text) => RuleSet::parse(text).unwrap_or_else(|| {
                problems.push(format!(
                    "spec.ruleSet: {text:?} is not a release (0.1, 0.2, …) or latest"
                ));
                RuleSet::Latest
            }),
        };
        let policy_action = Action::from(spec.action);
        // The policy's action, for a rule that does not set its own.
        let default = |rule: RuleId| rule_set.cap(rule, policy_action);
        let at = "spec.rules";
        let gpus = GpuResources::of(&r.gpu_placement);
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
        let rollout = rollout_strategy::Settings::compile(
            &r.rollout_strategy,
            &format!("{at}.rolloutStrategy"),
            &mut problems,
        );
        let shm = shared_memory::Settings::compile(
            &r.shared_memory,
            gpus.clone(),
            &format!("{at}.sharedMemory"),
            &mut problems,
        );
        let wi = workload_identity::Settings::compile(
            &r.workload_identity,
            &format!("{at}.workloadIdentity"),
            &mut problems,
        );
        let grace = graceful_termination::Settings::compile(
            &r.graceful_termination,
            &format!("{at}.gracefulTermination"),
            &mut problems,
        );
        let lineage = model_lineage::Settings::compile(
            &r.model_lineage,
            &format!("{at}.modelLineage"),
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
            updates: spec.updates,
            rule_set,
            newer_rules: rule_set
                .newer_rules()
                .into_iter()
                .filter(|rule| r.action_of(*rule).is_none())
                .collect(),
            namespace_selector,
            selector,
            exclude_owners: spec.matches.exclude_owners.clone(),
            gpus,
            zone_spread: enabled(
                r.zone_spread.action,
                default(RuleId::ZoneSpread),
                r.zone_spread.mutate,
                zs,
            ),
            autoscaler: enabled(r.autoscaler.action, default(RuleId::Autoscaler), false, asc),
            resources: enabled(
                r.resources.action,
                default(RuleId::Resources),
                r.resources.mutate,
                res,
            ),
            gpu_placement: enabled(
                r.gpu_placement.action,
                default(RuleId::GpuPlacement),
                r.gpu_placement.mutate,
                gpu,
            ),
            // Its mutation is resolveDigests: pinning tags to digests.
            image_provenance: enabled(
                r.image_provenance.action,
                default(RuleId::ImageProvenance),
                r.image_provenance.resolve_digests,
                img,
            ),
            rollout_strategy: enabled(
                r.rollout_strategy.action,
                default(RuleId::RolloutStrategy),
                false,
                rollout,
            ),
            shared_memory: enabled(
                r.shared_memory.action,
                default(RuleId::SharedMemory),
                r.shared_memory.mutate,
                shm,
            ),
            workload_identity: enabled(
                r.workload_identity.action,
                default(RuleId::WorkloadIdentity),
                r.workload_identity.mutate,
                wi,
            ),
            // Off unless set: these rules do not take the policy's action.
            graceful_termination: enabled(
                r.graceful_termination.action,
                Action::Off,
                r.graceful_termination.mutate,
                grace,
            ),
            model_lineage: enabled(r.model_lineage.action, Action::Off, false, lineage),
            probes: enabled(
                r.probes.action,
                default(RuleId::Probes),
                r.probes.mutate,
                prb,
            ),
            disruption_budget: enabled(
                r.disruption_budget.action,
                default(RuleId::DisruptionBudget),
                false,
                pdb,
            ),
            secret_env: enabled(r.secret_env.action, default(RuleId::SecretEnv), false, sec),
            host_isolation: enabled(
                r.host_isolation.action,
                default(RuleId::HostIsolation),
                false,
                host,
            ),
        })
    }

    /// The rules this policy runs (not Off).
    pub fn enabled_rules(&self) -> Vec<RuleId> {
        RuleId::ALL
            .into_iter()
            .filter(|rule| match rule {
                RuleId::ZoneSpread => self.zone_spread.is_some(),
                RuleId::Autoscaler => self.autoscaler.is_some(),
                RuleId::Resources => self.resources.is_some(),
                RuleId::GpuPlacement => self.gpu_placement.is_some(),
                RuleId::ImageProvenance => self.image_provenance.is_some(),
                RuleId::RolloutStrategy => self.rollout_strategy.is_some(),
                RuleId::SharedMemory => self.shared_memory.is_some(),
                RuleId::WorkloadIdentity => self.workload_identity.is_some(),
                RuleId::GracefulTermination => self.graceful_termination.is_some(),
                RuleId::ModelLineage => self.model_lineage.is_some(),
                RuleId::Probes => self.probes.is_some(),
                RuleId::DisruptionBudget => self.disruption_budget.is_some(),
                RuleId::SecretEnv => self.secret_env.is_some(),
                RuleId::HostIsolation => self.host_isolation.is_some(),
            })
            .collect()
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
            && self.selector.as_ref().is_none_or(|s| selects(s, w))
            && !self.exclude_owners.iter().any(|o| o.owns(w))
    }
}

/// A label selector of a policy or an exception matches a workload by its
/// own labels or by its pod template's: operators (KAITO, KServe) put the
/// user's labels only on the pods they create.
pub(crate) fn selects(s: &Selector, w: &Workload) -> bool {
    s.matches(&w.labels) || s.matches(&w.template_labels)
}

/// The policies in force, in name order (so ties resolve the same way in
/// every replica and in `check`).
#[derive(Clone, Debug)]
pub struct PolicySet {
    policies: Vec<Policy>,
    detection_gpus: GpuResources,
    /// Some policy resolves digests or verifies signatures.
    needs_registry: bool,
}

impl PolicySet {
    pub fn new(mut policies: Vec<Policy>) -> PolicySet {
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        let mut detection_gpus = GpuResources::builtin();
        for p in &policies {
            detection_gpus.extend_from(&p.gpus);
        }
        let needs_registry = policies.iter().any(|p| {
            p.image_provenance
                .as_ref()
                .is_some_and(|r| r.settings.needs_registry())
        });
        PolicySet {
            policies,
            detection_gpus,
            needs_registry,
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

    /// GPU resource names and DRA device classes that make a workload model
    /// serving.
    pub fn detection_gpus(&self) -> &GpuResources {
        &self.detection_gpus
    }

    /// Whether any request may need the registry's answers.
    pub fn needs_registry(&self) -> bool {
        self.needs_registry
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
    fn a_policy_pinned_to_a_release_denies_only_on_that_releases_rules() {
        let p = Policy::compile(&policy("{action: Deny, ruleSet: '0.1'}")).unwrap();
        assert_eq!(
            p.rule_set,
            RuleSet::Pinned(super::super::release::Release::V0_1)
        );
        // The five rules of 0.1 take the policy's action …
        assert_eq!(p.zone_spread.as_ref().map(|r| r.action), Some(Action::Deny));
        assert_eq!(
            p.image_provenance.as_ref().map(|r| r.action),
            Some(Action::Deny)
        );
        // … the rules 0.2 added run as Warn, and the Off-by-default ones stay Off.
        assert_eq!(p.probes.as_ref().map(|r| r.action), Some(Action::Warn));
        assert_eq!(
            p.host_isolation.as_ref().map(|r| r.action),
            Some(Action::Warn)
        );
        assert!(p.graceful_termination.is_none());
        assert!(p.newer_rules.contains(&RuleId::Probes));
        assert!(!p.newer_rules.contains(&RuleId::ZoneSpread));
        // An Audit policy is never raised to Warn.
        let p = Policy::compile(&policy("{action: Audit, ruleSet: '0.1'}")).unwrap();
        assert_eq!(p.probes.map(|r| r.action), Some(Action::Audit));
    }

    #[test]
    fn a_newer_rule_with_an_action_of_its_own_takes_it() {
        let p = Policy::compile(&policy(
            "{action: Deny, ruleSet: '0.1', rules: {probes: {action: Deny}, secretEnv: {action: Audit}, disruptionBudget: {minReplicas: 3}}}",
        ))
        .unwrap();
        assert_eq!(p.probes.as_ref().map(|r| r.action), Some(Action::Deny));
        assert_eq!(p.secret_env.as_ref().map(|r| r.action), Some(Action::Audit));
        assert_eq!(
            p.disruption_budget.as_ref().map(|r| r.action),
            Some(Action::Warn)
        );
        assert!(!p.newer_rules.contains(&RuleId::Probes));
        assert!(p.newer_rules.contains(&RuleId::DisruptionBudget));
    }

    #[test]
    fn without_a_rule_set_or_with_latest_every_rule_takes_the_action() {
        for spec in ["{action: Deny}", "{action: Deny, ruleSet: latest}"] {
            let p = Policy::compile(&policy(spec)).unwrap();
            assert_eq!(p.rule_set, RuleSet::Latest, "{spec}");
            assert_eq!(p.probes.map(|r| r.action), Some(Action::Deny), "{spec}");
            assert!(p.newer_rules.is_empty(), "{spec}");
        }
    }

    #[test]
    fn a_rule_set_that_is_no_release_is_refused() {
        assert!(
            problems("{ruleSet: '0.1-beta'}")
                .contains(r#"spec.ruleSet: "0.1-beta" is not a release (0.1, 0.2, …) or latest"#),
            "{}",
            problems("{ruleSet: '0.1-beta'}")
        );
    }

    #[test]
    fn off_by_default_rules_stay_off_in_a_deny_policy_until_their_action_is_set() {
        let p = Policy::compile(&policy("{action: Deny}")).unwrap();
        assert!(p.graceful_termination.is_none() && p.model_lineage.is_none());
        assert_eq!(p.rollout_strategy.map(|r| r.action), Some(Action::Deny));
        let p = Policy::compile(&policy(
            "{action: Deny, rules: {gracefulTermination: {action: Warn}, modelLineage: {action: Deny}}}",
        ))
        .unwrap();
        assert_eq!(p.graceful_termination.map(|r| r.action), Some(Action::Warn));
        assert_eq!(p.model_lineage.map(|r| r.action), Some(Action::Deny));
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
