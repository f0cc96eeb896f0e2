//! The two outputs of `check`: the JSON contract (`-o json`, see DESIGN.md)
//! and text for a terminal, grouped by object, coloured only on a TTY.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use json_patch::PatchOperation;
use serde::Serialize;

use crate::decision::{Evaluation, Fixes};
use crate::error::Error;
use crate::policy::Action;
use crate::rules::{Edit, ObjectRef};

#[derive(Debug, Default)]
pub struct Report {
    pub results: Vec<WorkloadResult>,
    pub errors: Vec<Error>,
    pub skipped: Vec<(String, String)>,
    /// What the reader should know about the input: an object defined
    /// twice, say.
    pub notes: Vec<String>,
    /// Objects that are not workloads, by kind (Services, HPAs, …).
    pub other_objects: BTreeMap<String, usize>,
    /// The policies applied and the rule set each pins.
    pub policies: Vec<PolicyOut>,
}

#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub results: &'a [WorkloadResult],
    pub errors: Vec<String>,
    pub skipped: Vec<Skipped<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub notes: &'a [String],
    pub policies: &'a [PolicyOut],
}

/// A policy as `check` applied it: which rule set its action covers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyOut {
    pub name: String,
    /// `0.1`, or `latest (0.2)`.
    pub rule_set: String,
    /// Rules newer than the rule set that set no action of their own: they
    /// ran at most as Warn.
    pub newer_rules: Vec<&'static str>,
}

impl PolicyOut {
    pub fn of(p: &crate::Policy) -> PolicyOut {
        PolicyOut {
            name: p.name.clone(),
            rule_set: p.rule_set.to_string(),
            newer_rules: p.newer_rules.iter().map(|r| r.as_str()).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Skipped<'a> {
    pub source: &'a str,
    pub reason: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadResult {
    pub source: String,
    /// The line where the document starts, where the reader knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub inference: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_reason: Option<String>,
    pub governed_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_governed: Option<String>,
    pub allowed: bool,
    pub violations: Vec<ViolationOut>,
    pub patch: Vec<PatchOperation>,
    /// Every fix the file can hold, composed: see [`FixOut`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<FixOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exemptions: Vec<ExemptionOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expired_exceptions: Vec<String>,
    /// Rules that give no verdict on this object, and why (an
    /// InferenceService whose ServingRuntime is not in the input).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_judged: Vec<NotJudgedOut>,
}

#[derive(Debug, Serialize)]
pub struct NotJudgedOut {
    pub rule: &'static str,
    pub reason: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ViolationOut {
    pub rule: &'static str,
    pub pillar: &'static str,
    pub action: &'static str,
    pub patched: bool,
    /// Under Warn or Audit: a Deny policy with `mutate: true` would patch it.
    #[serde(skip)]
    pub fixable: bool,
    pub message: String,
    pub fix: String,
    pub path: String,
    /// The line of the field at fault (or of its nearest ancestor written
    /// in the file), where the reader knows it: in `object`'s document
    /// when the finding is about another object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub policy: String,
    /// The object at fault when it is not the workload: `path` and `line`
    /// are in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectOut>,
    /// This violation's fix as data: `{"patch": [RFC 6902 operations on
    /// the object at fault]}` or `{"create": {a whole object}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit: Option<Edit>,
}

/// An object other than the workload, and where the input has it.
#[derive(Debug, Serialize)]
pub struct ObjectOut {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `file#document` where the input holds it (absent: not in the input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A result's fixes together, ready to apply: `patch` (RFC 6902, on the
/// workload as submitted), `edits` (RFC 6902 on other objects of the
/// input, named), `create` (whole objects to add). Applied and judged
/// again, every violation with an `edit` is gone; those without one need
/// something outside the file (a digest, a secret, a node pool).
#[derive(Debug, Serialize)]
pub struct FixOut {
    pub patch: Vec<PatchOperation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub edits: Vec<EditOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub create: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct EditOut {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub patch: Vec<PatchOperation>,
}

impl FixOut {
    fn of(f: Fixes) -> Option<FixOut> {
        (!f.is_empty()).then(|| FixOut {
            patch: f.patch,
            edits: f
                .edits
                .into_iter()
                .map(|(o, patch)| EditOut {
                    kind: o.kind,
                    namespace: o.namespace,
                    name: o.name,
                    patch,
                })
                .collect(),
            create: f.create,
        })
    }
}

impl ViolationOut {
    /// Where it is: the source of the object at fault (the workload's,
    /// unless the finding is about another object of the input).
    pub fn source<'a>(&'a self, r: &'a WorkloadResult) -> &'a str {
        self.object
            .as_ref()
            .and_then(|o| o.source.as_deref())
            .unwrap_or(&r.source)
    }

    /// `file:line` (or the file) and, for another object, which one.
    pub fn at(&self, r: &WorkloadResult) -> String {
        let file = super::sarif::file_of(self.source(r));
        let place = match self.line {
            Some(l) => format!("{file}:{l}"),
            None => file.to_owned(),
        };
        match &self.object {
            Some(o) => format!("{place} ({} {}/{})", o.kind, o.namespace, o.name),
            None => place,
        }
    }
}

impl ObjectOut {
    fn of(o: ObjectRef) -> ObjectOut {
        ObjectOut {
            kind: o.kind,
            namespace: o.namespace,
            name: o.name,
            source: None,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExemptionOut {
    pub rule: &'static str,
    /// `namespace/name` of the exception.
    pub exception: String,
    /// Where the input holds the exception, and the line of its `rules`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub reason: String,
    pub expires: String,
    pub suppressed: usize,
}

/// `fixes` are the decision's, composed (see [`crate::decision::fixes`]).
pub(super) fn result(source: String, fixes: Option<Fixes>, eval: Evaluation) -> WorkloadResult {
    let w = eval.workload;
    let d = eval.decision;
    let fix = fixes.and_then(FixOut::of);
    WorkloadResult {
        source,
        line: None,
        kind: w.kind.as_str().to_owned(),
        namespace: w.namespace,
        name: w.name,
        inference: d.inference.is_some() && !d.opted_out,
        inference_reason: d.inference,
        governed_by: d.governed_by,
        not_governed: d.not_governed,
        allowed: eval.allowed,
        violations: d
            .violations
            .into_iter()
            .map(|v| ViolationOut {
                rule: v.rule.as_str(),
                pillar: v.rule.pillar().as_str(),
                action: v.action.as_str(),
                patched: v.patched,
                fixable: v.fixable,
                message: v.message,
                fix: v.fix,
                path: v.path,
                line: None,
                policy: v.policy,
                object: v.object.map(ObjectOut::of),
                edit: v.edit,
            })
            .collect(),
        patch: d.patch,
        fix,
        exemptions: d
            .exemptions
            .into_iter()
            .map(|e| ExemptionOut {
                rule: e.rule.as_str(),
                exception: e.exception,
                source: None,
                line: None,
                reason: e.reason,
                expires: e.expires.to_string(),
                suppressed: e.suppressed,
            })
            .collect(),
        expired_exceptions: d.expired_exceptions,
        not_judged: d
            .unjudged
            .into_iter()
            .map(|(rule, reason)| NotJudgedOut {
                rule: rule.as_str(),
                reason,
            })
            .collect(),
    }
}

impl Report {
    /// 2 for bad input, 1 when something is denied, 0 otherwise.
    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() {
            2
        } else if self.results.iter().any(|r| !r.allowed) {
            1
        } else {
            0
        }
    }

    /// The `-o json` document, fields in the contract's order.
    pub fn to_json(&self) -> JsonReport<'_> {
        JsonReport {
            results: &self.results,
            errors: self.errors.iter().map(ToString::to_string).collect(),
            skipped: self
                .skipped
                .iter()
                .map(|(source, reason)| Skipped { source, reason })
                .collect(),
            notes: &self.notes,
            policies: &self.policies,
        }
    }

    pub fn to_text(&self, colour: bool) -> String {
        let paint = |code: &str, s: &str| {
            if colour {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_owned()
            }
        };
        let mut out = String::new();
        for r in &self.results {
            let title = format!("{} {}/{}", r.kind, r.namespace, r.name);
            let (mark, verdict) = if r.not_governed.is_some() {
                ("-", paint("2", "not governed"))
            } else if !r.allowed {
                ("✗", paint("1;31", "denied"))
            } else if r.violations.iter().any(|v| v.patched) {
                ("~", paint("36", "allowed once patched"))
            } else if r
                .violations
                .iter()
                .any(|v| v.action == Action::Warn.as_str())
            {
                ("!", paint("33", "allowed with warnings"))
            } else {
                ("✓", paint("32", "allowed"))
            };
            let at = match r.line {
                Some(line) => format!("{}, line {line}", r.source),
                None => r.source.clone(),
            };
            let _ = writeln!(out, "{mark} {title}  {verdict}  ({at})");
            if let Some(why) = &r.not_governed {
                let _ = writeln!(out, "    {why}");
            } else if let Some(reason) = &r.inference_reason {
                let _ = writeln!(out, "    model serving: {reason}");
            }
            for v in &r.violations {
                let action = match v.action {
                    "deny" => paint("31", "deny "),
                    "warn" => paint("33", "warn "),
                    _ => paint("2", "audit"),
                };
                let patched = if v.patched {
                    paint("36", "  [patched]")
                } else if v.fixable && v.action != "deny" {
                    // Warn and Audit change nothing: say what Deny would.
                    paint("2", "  [Deny would patch]")
                } else {
                    String::new()
                };
                let line = match (&v.object, v.line) {
                    (Some(o), Some(l)) => format!(
                        "  ({} {}, line {l})",
                        o.kind,
                        o.source.as_deref().unwrap_or(&r.source)
                    ),
                    (Some(o), None) => format!("  ({} {}/{})", o.kind, o.namespace, o.name),
                    (None, Some(l)) => format!("  (line {l})"),
                    (None, None) => String::new(),
                };
                let _ = writeln!(
                    out,
                    "    {action} {} ({}): {}{patched}{line}",
                    v.rule, v.pillar, v.message
                );
                let _ = writeln!(out, "          fix: {}", v.fix);
                if let Some(manifest) = v.edit.as_ref().and_then(Edit::manifest) {
                    let _ = writeln!(out, "            ---");
                    for l in manifest.lines() {
                        let _ = writeln!(out, "            {l}");
                    }
                }
            }
            for e in &r.exemptions {
                let at = match (&e.source, e.line) {
                    (Some(source), Some(line)) => format!("  ({source}, line {line})"),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "    exempt {} by {} until {}: {}{at}",
                    e.rule, e.exception, e.expires, e.reason
                );
            }
            for e in &r.expired_exceptions {
                let _ = writeln!(out, "    ignored exception {e}");
            }
            for n in &r.not_judged {
                let _ = writeln!(out, "    no verdict on {}: {}", n.rule, n.reason);
            }
        }
        for (source, why) in &self.skipped {
            let _ = writeln!(out, "- skipped {source}: {why}");
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        for p in &self.policies {
            let _ = write!(out, "\npolicy {}: rule set {}", p.name, p.rule_set);
            if !p.newer_rules.is_empty() {
                let _ = write!(
                    out,
                    "; newer rules at most warn unless their action is set: {}",
                    p.newer_rules.join(", ")
                );
            }
        }
        if !self.policies.is_empty() {
            out.push('\n');
        }
        let denied = self.results.iter().filter(|r| !r.allowed).count();
        let governed = self
            .results
            .iter()
            .filter(|r| r.not_governed.is_none())
            .count();
        let patched = self.results.iter().filter(|r| !r.patch.is_empty()).count();
        let others: usize = self.other_objects.values().sum();
        let _ = write!(
            out,
            "\n{} workload(s): {governed} governed, {denied} denied, {patched} would be patched",
            self.results.len()
        );
        if others > 0 {
            let kinds: Vec<String> = self
                .other_objects
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            let _ = write!(out, "; other objects: {}", kinds.join(", "));
        }
        out.push('\n');
        out
    }
}
