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
        assert_eq!(compiled.autoscaler.unwrap().action, Action::Warn);
        assert_eq!(compiled.zone_spread.unwrap().action, Action::Deny);
    }

    #[test]
    fn rule_defaults_are_the_baseline_values() {
        let p = policy().unwrap();
        let defaults = Rules::default();
        // Everything the baseline says beyond the serde defaults is the
        // opt-in to mutation and the autoscaler's Warn.
        let mut rules = p.spec.rules.clone();
        rules.zone_spread.mutate = false;
        rules.resources.mutate = false;
        rules.gpu_placement.mutate = false;
        rules.autoscaler.action = None;
        assert_eq!(rules, defaults);
        assert_eq!(p.spec.action, DefaultAction::Deny);
        let empty: WellArchitectedPolicySpec = serde_yaml_ng::from_str("{}").unwrap();
        assert_eq!(empty.rules, defaults);
    }
}
