//! Rule sets. Every rule records the release that introduced it
//! ([`RuleId::since`]); a policy's `spec.ruleSet` names a release, and
//! its `spec.action` then covers only the rules that release had. A rule a
//! later release adds runs at most as Warn under that policy until the
//! policy gives it an action of its own, so an upgrade never starts denying
//! on its own (Pod Security Admission's `enforce-version`, for this
//! project's rules).

use std::fmt;

pub use crate::release::Release;
use crate::rule_list::{Action, RuleId};

/// What `spec.ruleSet` pins: the rules of a release, or every rule of the
/// running release (`latest`, and no `ruleSet` at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RuleSet {
    #[default]
    Latest,
    Pinned(Release),
}

/// The pattern the CRD's schema holds `spec.ruleSet` to, so the apiserver
/// refuses a typo before the webhook sees it.
pub const RULE_SET_PATTERN: &str = r"^(latest|v?[0-9]{1,6}\.[0-9]{1,6}(\.[0-9]{1,6})?)$";

impl RuleSet {
    /// `latest`, or a release (`0.1`, `v0.2`, `0.2.1`).
    pub fn parse(s: &str) -> Option<RuleSet> {
        if s == "latest" {
            return Some(RuleSet::Latest);
        }
        Release::parse(s).map(RuleSet::Pinned)
    }

    /// The release whose rules the policy's action covers.
    pub fn release(self) -> Release {
        match self {
            RuleSet::Latest => Release::CURRENT,
            RuleSet::Pinned(r) => r,
        }
    }

    /// Whether the policy's action covers `rule` without the policy naming
    /// it: the rule is in the pinned release.
    pub fn covers(self, rule: RuleId) -> bool {
        rule.since() <= self.release()
    }

    /// The action `rule` runs with when its settings do not set one: the
    /// policy's, or at most Warn for a rule newer than the rule set.
    pub fn cap(self, rule: RuleId, action: Action) -> Action {
        if self.covers(rule) {
            action
        } else {
            action.min(Action::Warn)
        }
    }

    /// The rules this binary has that the rule set does not, newest last.
    pub fn newer_rules(self) -> Vec<RuleId> {
        RuleId::ALL
            .into_iter()
            .filter(|r| !self.covers(*r))
            .collect()
    }
}

impl fmt::Display for RuleSet {
    /// As status and `check` show it: `0.1`, or `latest (0.2)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleSet::Latest => write!(f, "latest ({})", Release::CURRENT),
            RuleSet::Pinned(r) => write!(f, "{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_sets_read_latest_or_a_release() {
        assert_eq!(RuleSet::parse("latest"), Some(RuleSet::Latest));
        assert_eq!(RuleSet::parse("Latest"), None);
        assert_eq!(RuleSet::parse("v0.1"), Some(RuleSet::Pinned(Release::V0_1)));
    }

    #[test]
    fn the_current_release_is_the_crates_version() {
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(Release::parse(version), Some(Release::CURRENT));
        // Every rule is in the release that runs it.
        for rule in RuleId::ALL {
            assert!(rule.since() <= Release::CURRENT, "{rule}");
        }
    }

    #[test]
    fn a_pinned_rule_set_caps_newer_rules_at_warn() {
        let pinned = RuleSet::Pinned(Release::V0_1);
        assert_eq!(pinned.cap(RuleId::ZoneSpread, Action::Deny), Action::Deny);
        assert_eq!(pinned.cap(RuleId::Probes, Action::Deny), Action::Warn);
        assert_eq!(pinned.cap(RuleId::Probes, Action::Audit), Action::Audit);
        assert_eq!(
            RuleSet::Latest.cap(RuleId::Probes, Action::Deny),
            Action::Deny
        );
        assert_eq!(
            pinned.newer_rules().len(),
            RuleId::ALL.len() - 5,
            "0.1 had the first five rules"
        );
        assert!(RuleSet::Latest.newer_rules().is_empty());
        // A release this binary does not know yet covers every rule it has.
        assert!(RuleSet::Pinned(Release::new(9, 0)).newer_rules().is_empty());
    }

    #[test]
    fn the_readme_and_the_changelog_give_every_rule_its_release() {
        let readme = include_str!("../../README.md");
        let changelog = include_str!("../../CHANGELOG.md");
        for rule in RuleId::ALL {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{rule}` |")))
                .unwrap_or_else(|| panic!("README's rule table has no row for {rule}"));
            let since = row.split('|').nth(3).map(str::trim);
            assert_eq!(since, Some(rule.since().to_string().as_str()), "{row}");
            // The release's changelog entry names it under Rules.
            let entry = changelog
                .split("\n## [")
                .find(|e| e.starts_with(&format!("{}.", rule.since())))
                .unwrap_or_else(|| panic!("CHANGELOG.md has no entry for {}", rule.since()));
            assert!(
                entry.contains(&format!("- `{rule}` (")),
                "CHANGELOG {}: {rule}",
                rule.since()
            );
        }
    }
}
