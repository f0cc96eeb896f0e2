//! The list of rules, and the words every layer uses about them.
//!
//! [`for_each_rule!`] is the one place a rule is listed: its [`RuleId`]
//! variant (also the name of its policy spec type), its module under
//! `src/rules/`, and its id. This module makes `RuleId` from it;
//! `rules/mod.rs` makes the modules, the policy's `rules` object, the
//! compiled rules and the dispatch from the same list. Everything else a
//! rule is (pillar, summary, release, settings, check) is in its own file,
//! as its `impl Rule`. The order here is the order of `RuleId::ALL`, of
//! reports and of the CRD's `rules`.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Calls `$then!` with every rule, one `Variant module "id",` line each.
macro_rules! for_each_rule {
    ($then:ident) => {
        $then! {
            ZoneSpread zone_spread "zone-spread",
            Autoscaler autoscaler "autoscaler",
            Resources resources "resources",
            GpuPlacement gpu_placement "gpu-placement",
            ImageProvenance image_provenance "image-provenance",
            RolloutStrategy rollout_strategy "rollout-strategy",
            SharedMemory shared_memory "shared-memory",
            WorkloadIdentity workload_identity "workload-identity",
            GracefulTermination graceful_termination "graceful-termination",
            ModelLineage model_lineage "model-lineage",
            Probes probes "probes",
            DisruptionBudget disruption_budget "disruption-budget",
            SecretEnv secret_env "secret-env",
            HostIsolation host_isolation "host-isolation",
            ModelFit model_fit "model-fit",
            GpuRightSize gpu_right_size "gpu-right-size",
            AutoscalerMetric autoscaler_metric "autoscaler-metric",
            CostBudget cost_budget "cost-budget",
        }
    };
}
pub(crate) use for_each_rule;

macro_rules! rule_ids {
    ($($variant:ident $module:ident $id:literal,)*) => {
        /// The stable rule ids. They appear in denial messages, JSON output,
        /// metrics and exceptions; renaming one breaks users.
        #[derive(
            Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
        )]
        pub enum RuleId {
            $(#[serde(rename = $id)] $variant,)*
        }

        const COUNT: usize = [$($id),*].len();

        impl RuleId {
            pub const ALL: [RuleId; COUNT] = [$(RuleId::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(RuleId::$variant => $id,)*
                }
            }

            /// The rule's key in a policy's `spec.rules` (`zoneSpread`).
            pub fn key(self) -> &'static str {
                match self {
                    $(RuleId::$variant => {
                        const KEY: &str = stringify!($variant);
                        const LOWER: [u8; KEY.len()] = lower_first(KEY);
                        match std::str::from_utf8(&LOWER) {
                            Ok(key) => key,
                            Err(_) => KEY,
                        }
                    })*
                }
            }
        }
    };
}

for_each_rule!(rule_ids);

/// `ZoneSpread` → `zoneSpread`, at compile time.
const fn lower_first<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out[0] = out[0].to_ascii_lowercase();
    out
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a violation, ordered from mildest to strictest so that
/// "the strictest action wins" is `max()`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum Action {
    Off,
    Audit,
    Warn,
    Deny,
}

impl Action {
    /// The lower-case form used in `check -o json` and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Audit => "audit",
            Action::Warn => "warn",
            Action::Deny => "deny",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Azure Well-Architected Framework pillar a rule serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pillar {
    Reliability,
    Security,
    CostOptimization,
    OperationalExcellence,
    PerformanceEfficiency,
}

impl Pillar {
    pub fn as_str(self) -> &'static str {
        match self {
            Pillar::Reliability => "Reliability",
            Pillar::Security => "Security",
            Pillar::CostOptimization => "Cost Optimization",
            Pillar::OperationalExcellence => "Operational Excellence",
            Pillar::PerformanceEfficiency => "Performance Efficiency",
        }
    }
}

impl fmt::Display for Pillar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keys_and_serde_agree() {
        for rule in RuleId::ALL {
            let json = serde_json::to_value(rule).unwrap();
            assert_eq!(json, rule.as_str(), "{rule:?}");
            let back: RuleId = serde_json::from_value(json).unwrap();
            assert_eq!(back, rule);
            // The key is the id in camelCase.
            let camel: String = rule
                .as_str()
                .split('-')
                .enumerate()
                .map(|(i, w)| {
                    if i == 0 {
                        w.to_owned()
                    } else {
                        w[..1].to_uppercase() + &w[1..]
                    }
                })
                .collect();
            assert_eq!(rule.key(), camel, "{rule:?}");
        }
    }
}
