//! `check -o sarif`: SARIF 2.1.0 for code-scanning tabs (GitHub, Azure
//! DevOps). One reporting descriptor per rule id with its pillar and help,
//! one result per violation at its file and line, level by action (deny →
//! error, warn → warning, audit → note); input errors are tool notifications.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Value, json};

use super::report::{Report, ViolationOut, WorkloadResult};
use crate::policy::RuleId;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const INFORMATION_URI: &str = env!("CARGO_PKG_REPOSITORY");

/// `file.yaml#2` → (`file.yaml`, 2). Standard input is `stdin`.
pub(super) fn file_of(source: &str) -> &str {
    let file = source.rsplit_once('#').map_or(source, |(f, _)| f);
    if file == "-" { "stdin" } else { file }
}

fn level(action: &str) -> &'static str {
    match action {
        "deny" => "error",
        "warn" => "warning",
        _ => "note",
    }
}

fn descriptor(rule: RuleId) -> Value {
    let anchor = format!("{INFORMATION_URI}#{}", rule.as_str());
    json!({
        "id": rule.as_str(),
        "name": rule.as_str(),
        "shortDescription": {"text": rule.summary()},
        "fullDescription": {"text": format!("{} ({} pillar of the Azure Well-Architected Framework)", rule.summary(), rule.pillar())},
        "helpUri": anchor,
        "help": {
            "text": format!("{}. Each result carries its fix; see {anchor}.", rule.summary()),
            "markdown": format!("**{}** ({}): {}. Each result carries its fix. [Rule reference]({anchor})", rule.as_str(), rule.pillar(), rule.summary()),
        },
        "defaultConfiguration": {"level": "error"},
        "properties": {"pillar": rule.pillar().as_str(),
            "tags": ["well-architected", "kubernetes", rule.pillar().as_str()]},
    })
}

/// The violation's place: in the object at fault (an autoscaler or budget
/// of the input when the finding is about one), else in the workload.
fn location(r: &WorkloadResult, v: &ViolationOut) -> Value {
    let mut physical = json!({"artifactLocation": {"uri": file_of(v.source(r))}});
    let line = match v.object {
        Some(_) => v.line,
        None => v.line.or(r.line),
    };
    if let Some(line) = line {
        physical["region"] = json!({"startLine": line});
    }
    let (kind, namespace, name) = match &v.object {
        Some(o) => (o.kind.as_str(), o.namespace.as_str(), o.name.as_str()),
        None => (r.kind.as_str(), r.namespace.as_str(), r.name.as_str()),
    };
    json!({
        "physicalLocation": physical,
        "logicalLocations": [{"name": name,
            "fullyQualifiedName": format!("{kind} {namespace}/{name}"),
            "kind": "resource"}],
    })
}

/// Stable across runs and line moves: what is wrong with which object.
fn fingerprint(r: &WorkloadResult, rule: &str, path: &str, message: &str) -> String {
    let mut h = DefaultHasher::new();
    (&r.kind, &r.namespace, &r.name, rule, path, message).hash(&mut h);
    format!("{:016x}", h.finish())
}

pub fn to_sarif(report: &Report) -> Value {
    let rules: Vec<Value> = RuleId::ALL.into_iter().map(descriptor).collect();
    let mut results = Vec::new();
    for r in &report.results {
        for v in &r.violations {
            let index = RuleId::ALL.iter().position(|id| id.as_str() == v.rule);
            let mut result = json!({
                "ruleId": v.rule,
                "level": level(v.action),
                "message": {"text": format!("{} {}/{}: {}. Fix: {}", r.kind, r.namespace, r.name, v.message, v.fix)},
                "locations": [location(r, v)],
                "partialFingerprints": {"wafAdmission/v1": fingerprint(r, v.rule, &v.path, &v.message)},
                "properties": {"pillar": v.pillar, "action": v.action, "policy": v.policy,
                    "path": v.path, "fix": v.fix, "patched": v.patched},
            });
            if let Some(i) = index {
                result["ruleIndex"] = json!(i);
            }
            results.push(result);
        }
    }
    let notifications: Vec<Value> = report
        .errors
        .iter()
        .map(|e| json!({"level": "error", "message": {"text": e.to_string()}}))
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "waf-admission",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }},
            "invocations": [{
                "executionSuccessful": report.errors.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
            // Which rule set each policy applied (a property bag: SARIF
            // has no field of its own for it).
            "properties": {"policies": report.policies},
        }],
    })
}
