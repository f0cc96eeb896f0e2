//! Wording the answer: the warnings, audit annotations and denial message
//! the apiserver shows, kept within its limits, and the refusals' codes.
//! What the user reads is decided here and nowhere else.

use std::collections::HashMap;

use kube::core::admission::AdmissionResponse;
use kube::core::response::StatusSummary;

use super::admission::{Summary, Verdict};
use crate::decision::Decision;
use crate::policy::{Action, RuleId};
use crate::rules::Edit;
use crate::workload::Workload;

/// The apiserver keeps each warning to 256 characters and all of them to 4 KiB.
pub const WARNING_MAX: usize = 256;
pub const WARNINGS_TOTAL_MAX: usize = 4096;
/// Lines of a denial message wrap here, so it reads in a 100-column terminal.
const WRAP: usize = 100;

/// A refusal with the HTTP-style code and reason the apiserver shows.
pub(super) fn refuse(
    response: AdmissionResponse,
    code: u16,
    reason: &str,
    message: String,
) -> AdmissionResponse {
    let mut response = response.deny(message);
    response.result.code = code;
    response.result.reason = reason.into();
    response.result.status = Some(StatusSummary::Failure);
    response
}

pub(super) fn invalid(
    response: AdmissionResponse,
    message: String,
) -> (AdmissionResponse, Summary) {
    (
        refuse(response, 400, "BadRequest", message),
        Summary {
            verdict: Verdict::Invalid,
            rules: "-".into(),
        },
    )
}

pub(super) fn rule_list(d: &Decision) -> String {
    if d.violations.is_empty() {
        return "-".into();
    }
    let mut rules: Vec<&str> = d.violations.iter().map(|v| v.rule.as_str()).collect();
    rules.dedup();
    rules.join(",")
}

/// One warning per rule: `[rule] message. Fix: fix` for a rule that found
/// one thing, `[rule] first; second (+N more)` for a rule that found
/// several (one per container, say), so a workload that breaks many rules
/// still gets a line for each. Every line is within the apiserver's
/// 256-character limit (and its share of the whole, when many rules fire)
/// and all of them within 4 KiB: written to fit rather
/// than cut by the apiserver. A fix that does not fit is not cut: the line
/// says where the whole one is (`full`: the workload's Events, say); with
/// `full` empty the message is kept and a fix that does not fit dropped.
pub fn warnings<'a>(
    items: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
    full: &str,
) -> Vec<String> {
    let mut groups: Vec<(&str, Vec<(&str, &str)>)> = Vec::new();
    for (rule, message, fix) in items {
        match groups.iter_mut().find(|g| g.0 == rule) {
            Some(g) => g.1.push((message, fix)),
            None => groups.push((rule, vec![(message, fix)])),
        }
    }
    let mut out = Vec::new();
    let mut total = 0;
    // Room for the last line that says how many did not fit.
    let reserve = 200;
    // Every rule its share of the whole, when all lines at the apiserver's
    // limit would not fit (18 rules × 256 is more than 4 KiB).
    let max = WARNING_MAX.min((WARNINGS_TOTAL_MAX - reserve) / groups.len().max(1));
    for (i, (rule, group)) in groups.iter().enumerate() {
        let line = rule_warning(rule, group, full, max);
        if total + line.len() > WARNINGS_TOTAL_MAX - reserve {
            out.push(shorten(
                &format!(
                    "[waf-admission] {} more rule(s) not shown: see {full}",
                    groups.len() - i
                ),
                WARNING_MAX,
            ));
            break;
        }
        total += line.len();
        out.push(line);
    }
    out
}

fn rule_warning(rule: &str, group: &[(&str, &str)], full: &str, max: usize) -> String {
    let len = |s: &str| s.chars().count();
    let see = format!(". Fix: see {full}");
    if let [(message, fix)] = group {
        let whole = format!("[{rule}] {message}. Fix: {fix}");
        if len(&whole) <= max {
            return whole;
        }
        let head = format!("[{rule}] {message}");
        if full.is_empty() {
            // The message matters most (why a tag was not pinned, say).
            return shorten(&head, max);
        }
        // The message whole (it says why) and where the fix is; a message
        // longer than a line alone keeps the line (why a registry failed,
        // say: the Events have the fix); else the fix whole and the
        // message shortened before it; else both cut.
        if len(&head) + len(&see) <= max {
            return format!("{head}{see}");
        }
        if len(&head) > max {
            return shorten(&head, max);
        }
        let tail = format!(". Fix: {fix}");
        if len(&tail) <= max / 2 {
            return format!("{}{tail}", shorten(&head, max - len(&tail)));
        }
        let see = shorten(&see, max / 2);
        return format!("{}{see}", shorten(&head, max - len(&see)));
    }
    // A fix shared by every finding (the mutating webhook's note, say) is
    // kept, and the messages fill the room before it; different fixes are
    // where `full` says.
    let shared = group.iter().all(|(_, fix)| *fix == group[0].1);
    let tail = Some(format!(". Fix: {}", group[0].1))
        .filter(|f| shared && len(f) <= max / 2)
        .unwrap_or_else(|| shorten(&see, max / 2));
    // The longest count: " (+NN more)".
    let room = max - 12 - len(&tail);
    let mut line = shorten(&format!("[{rule}] {}", group[0].0), room);
    let mut shown = 1;
    for (message, _) in &group[1..] {
        let longer = format!("{line}; {message}");
        if len(&longer) > room {
            break;
        }
        line = longer;
        shown += 1;
    }
    let hidden = group.len() - shown;
    if hidden > 0 {
        line.push_str(&format!(" (+{hidden} more)"));
    }
    line.push_str(&tail);
    line
}

/// Where a warning's whole fix is, in words that do not assume our CLI:
/// the Events recorded on the workload, which carry every fix (and the
/// objects to add); a dry run records none.
pub(super) fn full_fixes_at(w: &Workload, dry_run: bool, records_events: bool) -> String {
    if dry_run || !records_events {
        "`waf-admission check` on this file".into()
    } else {
        format!(
            "`kubectl describe {} {} -n {}` (Events)",
            w.kind.as_str().to_lowercase(),
            w.name,
            w.namespace
        )
    }
}

/// Cuts at a word boundary, ending with `…`, within `max` characters.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max - 1).collect();
    let at = cut.rfind(' ').filter(|i| *i > max / 2).unwrap_or(cut.len());
    format!("{}…", &cut[..at])
}

pub(super) fn audit_annotations(d: &Decision) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for v in d.with_action(Action::Audit) {
        let entry = out.entry(v.rule.as_str().to_owned()).or_default();
        if !entry.is_empty() {
            entry.push_str("; ");
        }
        entry.push_str(&v.message);
    }
    for value in out.values_mut() {
        *value = shorten(value, 1024);
    }
    out
}

/// One block per violation: `[rule] (Pillar) message`, wrapped at 100
/// columns, then `Fix: …` on its own line so it can be copied whole.
pub fn denial_message(w: &Workload, d: &Decision) -> String {
    let denials: Vec<_> = d.with_action(Action::Deny).collect();
    // Rules, not findings: one rule may find several things.
    let mut rules: Vec<RuleId> = denials.iter().map(|v| v.rule).collect();
    rules.sort();
    rules.dedup();
    let mut out = format!(
        "{} {}/{} violates {} Well-Architected rule{} ({}):",
        w.kind,
        w.namespace,
        w.name,
        rules.len(),
        if rules.len() == 1 { "" } else { "s" },
        {
            let mut policies: Vec<&str> = Vec::new();
            for v in &denials {
                if !policies.contains(&v.policy.as_str()) {
                    policies.push(&v.policy);
                }
            }
            let word = if policies.len() == 1 {
                "policy"
            } else {
                "policies"
            };
            format!("{word} {}", policies.join(", "))
        }
    );
    for v in denials {
        out.push('\n');
        out.push_str(&wrap(&format!(
            "[{}] ({}) {}",
            v.rule,
            v.rule.pillar(),
            v.message
        )));
        // Where in what they applied: an operator's resource names its
        // fields its own way (`/spec/predictor/minReplicas`).
        if v.object.is_none() && !v.path.is_empty() {
            out.push_str("\n  At: ");
            out.push_str(&v.path);
        }
        out.push_str("\n  Fix: ");
        out.push_str(&v.fix);
        if let Some(manifest) = v.edit.as_ref().and_then(Edit::manifest) {
            out.push_str("\n    ---");
            for l in manifest.lines() {
                out.push_str("\n    ");
                out.push_str(l);
            }
        }
    }
    out
}

fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split(' ') {
        let len = word.chars().count();
        if line_len > 0 && line_len + 1 + len > WRAP {
            out.push_str("\n  ");
            line_len = 2;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "`kubectl describe deployment llm -n ml` (Events)";

    #[test]
    fn a_long_fix_is_kept_whole_or_its_place_is_named() {
        let message =
            "container \"llm\" has no livenessProbe: a hung model server is never restarted";
        let short = "add livenessProbe: {httpGet: {path: /health, port: 8000}}";
        let w = warnings([("probes", message, short)].into_iter(), FULL);
        assert!(w[0].ends_with(&format!("Fix: {short}")), "{w:?}");
        let long_message = "m ".repeat(100);
        let w = warnings([("probes", long_message.as_str(), short)].into_iter(), FULL);
        assert!(w[0].ends_with(&format!("Fix: {short}")), "{w:?}");
        assert!(w[0].chars().count() <= WARNING_MAX);
        // A message that says why is kept whole where the fix's place fits.
        let why = "image \"r.example/vllm:v1\" admitted by tag, unpinned: the digest lookup failed: \
            r.example refused the credentials (401 Unauthorized)";
        let long_fix = "f ".repeat(80);
        let w = warnings(
            [("image-provenance", why, long_fix.as_str())].into_iter(),
            FULL,
        );
        assert_eq!(w[0], format!("[image-provenance] {why}. Fix: see {FULL}"));
        let manifest_fix = "add a KEDA ScaledObject llm for Deployment ml/llm on the vLLM queue \
            (vllm:num_requests_waiting, 5 waiting per replica), minReplicaCount 2, maxReplicaCount 4";
        let message = "no HorizontalPodAutoscaler or KEDA ScaledObject targets Deployment llm: it \
            cannot follow load";
        let w = warnings([("autoscaler", message, manifest_fix)].into_iter(), FULL);
        assert!(w[0].chars().count() <= WARNING_MAX, "{w:?}");
        assert!(
            w[0].contains("Fix: see `kubectl describe deployment llm -n ml` (Events)"),
            "{w:?}"
        );
        assert!(!w[0].contains("waf-admission check"), "{w:?}");
    }

    #[test]
    fn warnings_fit_the_apiserver_limits_without_being_cut_by_it() {
        let long = "x ".repeat(400);
        let items: Vec<(&str, &str, &str)> = (0..60)
            .map(|_| ("zone-spread", long.as_str(), "fix it"))
            .collect();
        let w = warnings(items.into_iter(), FULL);
        assert!(w.iter().all(|l| l.chars().count() <= WARNING_MAX), "{w:?}");
        assert!(w.iter().map(|l| l.len()).sum::<usize>() <= WARNINGS_TOTAL_MAX);
        assert!(w.iter().all(|l| l.starts_with('[')));
        assert_eq!(w.len(), 1, "one rule, one warning: {w:?}");
        assert!(w[0].contains("more). Fix: fix it"), "{w:?}");
    }

    #[test]
    fn every_rule_gets_one_warning_within_the_limits_when_all_fire_many_times() {
        let long =
            "container \"a-rather-long-container-name\" has a problem worth a long sentence "
                .repeat(3);
        let items: Vec<(&str, &str, &str)> = crate::policy::RuleId::ALL
            .iter()
            .flat_map(|r| {
                let long = long.as_str();
                (0..8).map(move |_| (r.as_str(), long, "a fix that is long enough to matter here"))
            })
            .collect();
        let w = warnings(items.into_iter(), FULL);
        assert_eq!(w.len(), crate::policy::RuleId::ALL.len(), "{w:#?}");
        for (line, rule) in w.iter().zip(crate::policy::RuleId::ALL) {
            assert!(line.starts_with(&format!("[{rule}] ")), "{line}");
            assert!(line.chars().count() <= WARNING_MAX, "{line}");
        }
        assert!(w.iter().map(|l| l.len()).sum::<usize>() <= WARNINGS_TOTAL_MAX);
    }

    #[test]
    fn several_findings_of_a_rule_share_one_line() {
        let w = warnings(
            [
                (
                    "probes",
                    "container \"a\" has no readinessProbe",
                    "add one to a",
                ),
                (
                    "probes",
                    "container \"b\" has no readinessProbe",
                    "add one to b",
                ),
                (
                    "secret-env",
                    "container \"a\" sets HF_TOKEN to a Hugging Face token",
                    "rotate it",
                ),
            ]
            .into_iter(),
            FULL,
        );
        assert_eq!(
            w,
            [
                "[probes] container \"a\" has no readinessProbe; container \"b\" has no readinessProbe. \
                 Fix: see `kubectl describe deployment llm -n ml` (Events)",
                "[secret-env] container \"a\" sets HF_TOKEN to a Hugging Face token. Fix: rotate it",
            ]
        );
    }

    #[test]
    fn a_short_warning_keeps_its_fix() {
        let w = warnings(
            [("autoscaler", "no HPA", "kubectl autoscale deployment x")].into_iter(),
            FULL,
        );
        assert_eq!(
            w,
            ["[autoscaler] no HPA. Fix: kubectl autoscale deployment x"]
        );
    }

    #[test]
    fn a_denial_names_each_policy_once() {
        let w = Workload::from_value(
            serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "ml"}, "spec": {"containers": []}}),
            "ml",
        )
        .unwrap()
        .unwrap();
        let deny = |rule, policy: &str| crate::decision::Violation {
            rule,
            action: Action::Deny,
            policy: policy.into(),
            message: "m".into(),
            fix: "f".into(),
            path: "/spec".into(),
            fixable: false,
            patched: false,
            existing: false,
            object: None,
            edit: None,
        };
        let d = Decision {
            violations: vec![
                deny(crate::policy::RuleId::ZoneSpread, "a"),
                deny(crate::policy::RuleId::Resources, "b"),
                deny(crate::policy::RuleId::ImageProvenance, "a"),
            ],
            ..Decision::default()
        };
        let first = denial_message(&w, &d).lines().next().unwrap().to_owned();
        assert_eq!(
            first,
            "Pod ml/p violates 3 Well-Architected rules (policies a, b):"
        );
        // Two findings of one rule are one rule violated.
        let d = Decision {
            violations: vec![
                deny(crate::policy::RuleId::Probes, "a"),
                deny(crate::policy::RuleId::Probes, "a"),
            ],
            ..Decision::default()
        };
        let text = denial_message(&w, &d);
        assert!(
            text.starts_with("Pod ml/p violates 1 Well-Architected rule (policy a):"),
            "{text}"
        );
        assert_eq!(text.matches("[probes]").count(), 2, "{text}");
    }

    #[test]
    fn wrapped_lines_stay_within_100_columns() {
        let text = "word ".repeat(80);
        assert!(wrap(text.trim()).lines().all(|l| l.chars().count() <= WRAP));
    }
}
