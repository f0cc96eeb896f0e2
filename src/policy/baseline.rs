//! The built-in baseline policy, embedded in the binary so that `check`
//! works on any folder with no set-up.

use super::WellArchitectedPolicy;
use crate::error::{Error, Result};

pub const BASELINE_YAML: &str = include_str!("baseline.yaml");

/// The baseline as the cluster has it once `kubectl apply` has read the
/// same text (manifests/policies/baseline.yaml): through kubectl's decoder.
pub fn policy() -> Result<WellArchitectedPolicy> {
    let at = "built-in baseline policy";
    let doc = crate::yaml::documents(BASELINE_YAML)
        .next()
        .ok_or_else(|| Error::input(at, "no document"))?
        .map_err(|e| Error::input(at, e.to_string()))?;
    serde_json::from_value(doc.value).map_err(|e| Error::input(at, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{
        Action, DefaultAction, Rules, WellArchitectedPolicySpec, compiled::Policy,
    };

    #[test]
    fn the_baseline_parses_and_compiles() {
        let p = policy().unwrap();
        let compiled = Policy::compile(&p).unwrap();
        assert_eq!(compiled.name, "baseline");
        // It pins the release it ships in: bumping the version means
        // deciding what the baseline's action covers.
        assert_eq!(
            compiled.rule_set,
            crate::policy::release::RuleSet::Pinned(crate::policy::release::Release::CURRENT)
        );
        assert_eq!(compiled.rules.autoscaler.unwrap().action, Action::Warn);
        assert_eq!(compiled.rules.zone_spread.unwrap().action, Action::Deny);
        assert_eq!(
            compiled.rules.rollout_strategy.as_ref().map(|r| r.action),
            Some(Action::Warn)
        );
        assert_eq!(
            compiled.rules.shared_memory.as_ref().map(|r| r.action),
            Some(Action::Warn)
        );
        assert_eq!(
            compiled.rules.workload_identity.as_ref().map(|r| r.action),
            Some(Action::Warn)
        );
        assert!(
            compiled.rules.graceful_termination.is_none(),
            "Off in the baseline"
        );
        assert!(
            compiled.rules.model_lineage.is_none(),
            "Off in the baseline"
        );
        let probes = compiled.rules.probes.unwrap();
        assert_eq!((probes.action, probes.mutate), (Action::Warn, false));
        assert_eq!(
            compiled.rules.disruption_budget.unwrap().action,
            Action::Warn
        );
        assert_eq!(compiled.rules.secret_env.unwrap().action, Action::Warn);
        assert_eq!(compiled.rules.host_isolation.unwrap().action, Action::Warn);
        assert_eq!(compiled.rules.model_fit.unwrap().action, Action::Warn);
        assert_eq!(compiled.rules.gpu_right_size.unwrap().action, Action::Warn);
        assert_eq!(
            compiled.rules.autoscaler_metric.unwrap().action,
            Action::Warn
        );
    }

    #[test]
    fn rule_defaults_are_the_baseline_values() {
        let p = policy().unwrap();
        let defaults = Rules::default();
        // Everything the baseline says beyond the serde defaults is the
        // opt-in to mutation and the rules that warn.
        let mut rules = p.spec.rules.clone();
        rules.zone_spread.mutate = false;
        rules.resources.mutate = false;
        rules.gpu_placement.mutate = false;
        rules.autoscaler.action = None;
        // Newer rules the baseline sets to Warn, where they would take the policy's Deny.
        assert_eq!(rules.rollout_strategy.action.take(), Some(Action::Warn));
        assert_eq!(rules.shared_memory.action.take(), Some(Action::Warn));
        assert_eq!(rules.workload_identity.action.take(), Some(Action::Warn));
        for warns in [
            &mut rules.probes.action,
            &mut rules.disruption_budget.action,
            &mut rules.secret_env.action,
            &mut rules.host_isolation.action,
            &mut rules.model_fit.action,
            &mut rules.gpu_right_size.action,
            &mut rules.autoscaler_metric.action,
        ] {
            assert_eq!(
                *warns,
                Some(crate::policy::Action::Warn),
                "never Deny in the baseline"
            );
            *warns = None;
        }
        assert_eq!(rules, defaults);
        assert_eq!(p.spec.action, DefaultAction::Deny);
        let empty: WellArchitectedPolicySpec = serde_yaml_ng::from_str("{}").unwrap();
        assert_eq!(empty.rules, defaults);
    }
}
