//! A policy checked and parsed, ready for the hot path: selectors compiled,
//! quantities and registry patterns parsed, each rule's action resolved.
//! A policy with any problem is refused whole, with every problem listed,
//! so no one ever runs half of a policy they meant to write.

use kube::core::{Selector, SelectorExt};

use super::release::RuleSet;
use super::{Action, OwnerKind, RuleId, Updates, WellArchitectedPolicy, WorkloadScope};
use crate::error::{Error, Result};
use crate::exception::owner_kinds;
use crate::gpu::GpuResources;
use crate::problems::duplicates;
pub use crate::rules::Enabled;
use crate::rules::{Compiled, PolicyFacts};
use crate::workload::{Workload, WorkloadKind};

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
    /// Each rule compiled, None where it is Off.
    pub rules: Compiled,
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
        let gpus = r.gpu_placement.gpus();
        // The replicas this policy's own fixes bring a workload to: rules
        // that judge a replicated workload judge it there, so a fix never
        // reveals a violation the first round did not show.
        let on = |rule: RuleId, own: Option<Action>| own.unwrap_or(default(rule)) != Action::Off;
        let replica_floor = [
            on(RuleId::ZoneSpread, r.zone_spread.action).then_some(r.zone_spread.min_replicas),
            on(RuleId::Autoscaler, r.autoscaler.action).then_some(r.autoscaler.min_replicas),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        let facts = PolicyFacts {
            gpus: &gpus,
            replica_floor,
            prometheus_server: &r.autoscaler.prometheus_server,
            price_region: &r.cost_budget.region,
        };
        let rules = Compiled::compile(r, &facts, &default, &mut problems);
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
            rules,
        })
    }

    /// The rules this policy runs (not Off).
    pub fn enabled_rules(&self) -> Vec<RuleId> {
        self.rules.enabled()
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
            && self.selector.as_ref().is_none_or(|s| w.selected_by(s))
            && !self.exclude_owners.iter().any(|o| o.owns(w))
    }
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
            p.rules
                .image_provenance
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
        assert_eq!(
            p.rules.zone_spread.as_ref().map(|r| r.action),
            Some(Action::Deny)
        );
        assert_eq!(
            p.rules.image_provenance.as_ref().map(|r| r.action),
            Some(Action::Deny)
        );
        // … the rules 0.2 added run as Warn, and the Off-by-default ones stay Off.
        assert_eq!(
            p.rules.probes.as_ref().map(|r| r.action),
            Some(Action::Warn)
        );
        assert_eq!(
            p.rules.host_isolation.as_ref().map(|r| r.action),
            Some(Action::Warn)
        );
        assert!(p.rules.graceful_termination.is_none());
        assert!(p.newer_rules.contains(&RuleId::Probes));
        assert!(!p.newer_rules.contains(&RuleId::ZoneSpread));
        // An Audit policy is never raised to Warn.
        let p = Policy::compile(&policy("{action: Audit, ruleSet: '0.1'}")).unwrap();
        assert_eq!(p.rules.probes.map(|r| r.action), Some(Action::Audit));
    }

    #[test]
    fn a_newer_rule_with_an_action_of_its_own_takes_it() {
        let p = Policy::compile(&policy(
            "{action: Deny, ruleSet: '0.1', rules: {probes: {action: Deny}, secretEnv: {action: Audit}, disruptionBudget: {minReplicas: 3}}}",
        ))
        .unwrap();
        assert_eq!(
            p.rules.probes.as_ref().map(|r| r.action),
            Some(Action::Deny)
        );
        assert_eq!(
            p.rules.secret_env.as_ref().map(|r| r.action),
            Some(Action::Audit)
        );
        assert_eq!(
            p.rules.disruption_budget.as_ref().map(|r| r.action),
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
            assert_eq!(
                p.rules.probes.map(|r| r.action),
                Some(Action::Deny),
                "{spec}"
            );
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
        assert!(p.rules.graceful_termination.is_none() && p.rules.model_lineage.is_none());
        assert_eq!(
            p.rules.rollout_strategy.map(|r| r.action),
            Some(Action::Deny)
        );
        let p = Policy::compile(&policy(
            "{action: Deny, rules: {gracefulTermination: {action: Warn}, modelLineage: {action: Deny}}}",
        ))
        .unwrap();
        assert_eq!(
            p.rules.graceful_termination.map(|r| r.action),
            Some(Action::Warn)
        );
        assert_eq!(p.rules.model_lineage.map(|r| r.action), Some(Action::Deny));
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
