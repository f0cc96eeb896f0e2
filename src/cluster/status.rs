//! A policy's status: observedGeneration and a `Ready` condition saying
//! whether it is in force and, if not, why: refused (`Invalid`), or in
//! force for only some of its kinds because the live webhook configuration
//! does not send the others (`KindsNotSent`). Written only when it differs
//! from what the object already says, so the write converges: a second
//! replica computing the same status writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};

use super::snapshot::PolicyReport;
use crate::policy::PolicyStatus;

/// The merge patch for the status subresource, or None when the object
/// already says it.
pub fn patch(
    current: Option<&PolicyStatus>,
    report: &PolicyReport,
    now: jiff::Timestamp,
) -> Option<Value> {
    let (status, reason, message) = match (&report.problems, &report.kinds_not_sent) {
        (None, None) => ("True", "Valid", "the policy is in force".to_owned()),
        (None, Some(missing)) => ("False", "KindsNotSent", missing.message()),
        (Some(problems), _) => (
            "False",
            "Invalid",
            format!(
                "refused: {}{}",
                problems.join("; "),
                if report.previous_in_force {
                    "; the previous version stays in force"
                } else {
                    ""
                }
            ),
        ),
    };
    let current_ready = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    // A refused policy leaves the rule set of the version still in force.
    let rule_set = report.rule_set.as_ref().map(|(set, newer)| {
        (
            set.to_string(),
            newer
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
    });
    let rule_set_unchanged = rule_set.as_ref().is_none_or(|(set, newer)| {
        current.is_some_and(|s| s.rule_set.as_ref() == Some(set) && &s.newer_rules == newer)
    });
    let unchanged = rule_set_unchanged
        && current.and_then(|s| s.observed_generation) == report.generation
        && current_ready.is_some_and(|c| {
            c.status == status
                && c.reason == reason
                && c.message == message
                && c.observed_generation == report.generation
        });
    if unchanged {
        return None;
    }
    // The transition time moves only when the status flips.
    let since = current_ready
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let condition = Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: report.generation,
        last_transition_time: since,
    };
    let mut status = json!({"observedGeneration": report.generation, "conditions": [condition]});
    if let Some((set, newer)) = rule_set {
        status["ruleSet"] = json!(set);
        // null removes the list from the object (a merge patch).
        status["newerRules"] = if newer.is_empty() {
            Value::Null
        } else {
            json!(newer)
        };
    }
    Some(json!({ "status": status }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(value: Option<Value>) -> Option<PolicyStatus> {
        value.map(|v| serde_json::from_value(v).unwrap())
    }

    fn report(problems: Option<Vec<String>>) -> PolicyReport {
        PolicyReport {
            name: "p".into(),
            generation: Some(3),
            problems,
            previous_in_force: true,
            kinds_not_sent: None,
            rule_set: None,
        }
    }

    #[test]
    fn a_valid_policy_gets_ready_true_then_no_more_writes() {
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let body = patch(None, &report(None), now).unwrap();
        assert_eq!(body["status"]["observedGeneration"], 3);
        let c = &body["status"]["conditions"][0];
        assert_eq!(
            (
                c["type"].as_str(),
                c["status"].as_str(),
                c["reason"].as_str()
            ),
            (Some("Ready"), Some("True"), Some("Valid"))
        );
        // Written back, the same computation asks for nothing.
        let later: jiff::Timestamp = "2026-11-25T11:00:00Z".parse().unwrap();
        assert_eq!(
            patch(
                status(Some(body["status"].clone())).as_ref(),
                &report(None),
                later
            ),
            None
        );
    }

    #[test]
    fn the_rule_set_in_force_and_the_rules_it_caps_are_written_then_converge() {
        use crate::policy::RuleId;
        use crate::policy::release::{Release, RuleSet};
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let mut pinned = report(None);
        pinned.rule_set = Some((
            RuleSet::Pinned(Release::V0_1),
            vec![RuleId::Probes, RuleId::SecretEnv],
        ));
        let body = patch(None, &pinned, now).unwrap();
        assert_eq!(body["status"]["ruleSet"], "0.1");
        assert_eq!(
            body["status"]["newerRules"],
            json!(["probes", "secret-env"])
        );
        let written = status(Some(body["status"].clone()));
        assert_eq!(patch(written.as_ref(), &pinned, now), None);
        // Unpinned: the list goes, and the rule set names the release.
        let mut latest = report(None);
        latest.rule_set = Some((RuleSet::Latest, vec![]));
        let body = patch(written.as_ref(), &latest, now).unwrap();
        assert_eq!(
            body["status"]["ruleSet"],
            format!("latest ({})", Release::CURRENT)
        );
        assert_eq!(body["status"]["newerRules"], Value::Null);
        // Refused: what is in force is left as it is.
        let refused = patch(written.as_ref(), &report(Some(vec!["x".into()])), now).unwrap();
        assert!(refused["status"].get("ruleSet").is_none());
    }

    #[test]
    fn a_refused_policy_says_why_and_that_the_old_version_stays() {
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let body = patch(None, &report(Some(vec!["spec.x: bad".into()])), now).unwrap();
        let c = &body["status"]["conditions"][0];
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "Invalid");
        assert_eq!(
            c["message"],
            "refused: spec.x: bad; the previous version stays in force"
        );
    }

    #[test]
    fn kinds_the_webhook_is_not_sent_make_the_policy_not_ready_until_they_are() {
        use crate::cluster::webhooks::KindsNotSent;
        use crate::workload::WorkloadKind;
        let t0: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-11-25T11:00:00Z".parse().unwrap();
        let mut partial = report(None);
        partial.kinds_not_sent = Some(KindsNotSent {
            kinds: vec![WorkloadKind::Job, WorkloadKind::ReplicaSet],
            configurations: vec!["waf-admission".into()],
        });
        let body = patch(None, &partial, t0).unwrap();
        let c = &body["status"]["conditions"][0];
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("False"), Some("KindsNotSent"))
        );
        assert_eq!(
            c["message"],
            "the webhook configuration \"waf-admission\" does not send Job, ReplicaSet: add \
             them to its rules (the chart sends every kind by default)"
        );
        let written = status(Some(body["status"].clone()));
        assert_eq!(patch(written.as_ref(), &partial, t1), None, "converges");
        // The configuration now sends them: Ready again, from now.
        let sent = patch(written.as_ref(), &report(None), t1).unwrap();
        let c = &sent["status"]["conditions"][0];
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("True"), Some("Valid"))
        );
        assert_eq!(c["lastTransitionTime"], "2026-11-25T11:00:00Z");
        // A refusal says why first: the kinds come after the fix.
        let mut refused = partial.clone();
        refused.problems = Some(vec!["spec.x: bad".into()]);
        let c = &patch(None, &refused, t0).unwrap()["status"]["conditions"][0];
        assert_eq!(c["reason"], "Invalid");
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_flips() {
        let t0: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-11-25T11:00:00Z".parse().unwrap();
        let first = patch(None, &report(None), t0).unwrap();
        let mut newer = report(None);
        newer.generation = Some(4);
        let second = patch(status(Some(first["status"].clone())).as_ref(), &newer, t1).unwrap();
        assert_eq!(
            second["status"]["conditions"][0]["lastTransitionTime"],
            "2026-11-25T10:00:00Z"
        );
        let flipped = patch(
            status(Some(first["status"].clone())).as_ref(),
            &report(Some(vec!["x".into()])),
            t1,
        )
        .unwrap();
        assert_eq!(
            flipped["status"]["conditions"][0]["lastTransitionTime"],
            "2026-11-25T11:00:00Z"
        );
    }
}
