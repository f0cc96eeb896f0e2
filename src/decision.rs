//! Policies × workload × context → one Decision: which policies govern the
//! workload, what each rule finds, which action wins (the strictest, per
//! rule), what exceptions exempt, and one JSON Patch. `evaluate` then
//! applies the patch and judges again, because `allowed` is the verdict the
//! cluster gives after the mutating webhook ran.

use json_patch::PatchOperation;
use serde_json::Value;

use crate::context::{Context, Exception};
use crate::error::{Error, Result};
use crate::inference::{self, Detection};
use crate::policy::compiled::{Enabled, Policy, PolicySet};
use crate::policy::{Action, RuleId, WorkloadScope};
use crate::rules::{Outcome, autoscaler, gpu_placement, image_provenance, resources, zone_spread};
use crate::rules::{disruption_budget, host_isolation, probes, secret_env};
use crate::workload::Workload;

/// One violation as users see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub rule: RuleId,
    pub action: Action,
    /// The policy whose action won.
    pub policy: String,
    pub message: String,
    pub fix: String,
    pub path: String,
    /// The rule's patch is meant to fix it (when the policy mutates).
    pub fixable: bool,
    /// The patch fixes it: set by `evaluate` after judging the patched object.
    pub patched: bool,
}

/// A rule an exception switched off for this workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exemption {
    pub rule: RuleId,
    pub exception: String,
    pub reason: String,
    pub expires: jiff::Timestamp,
    /// How many violations it hid.
    pub suppressed: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Why the workload counts as model serving (None: it does not).
    pub inference: Option<String>,
    pub opted_out: bool,
    /// Names of the policies that govern it.
    pub governed_by: Vec<String>,
    /// When no policy governs it: why.
    pub not_governed: Option<String>,
    pub violations: Vec<Violation>,
    /// RFC 6902 operations against the object as submitted.
    pub patch: Vec<PatchOperation>,
    pub exemptions: Vec<Exemption>,
    /// Exceptions that name this workload but have expired (ignored).
    pub expired_exceptions: Vec<String>,
}

impl Decision {
    /// True when a deny violation stands (before any patch).
    pub fn denied(&self) -> bool {
        self.violations.iter().any(|v| v.action == Action::Deny)
    }

    pub fn with_action(&self, action: Action) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(move |v| v.action == action)
    }
}

/// Controllers whose pods and ReplicaSets are judged through the owner:
/// judging them again would report every violation twice.
const JUDGED_THROUGH_OWNER: [&str; 6] = [
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
];

/// Judges one workload. Pure: no I/O, no clock (`now` is passed in).
pub fn judge(set: &PolicySet, w: &Workload, ctx: &Context, now: jiff::Timestamp) -> Decision {
    let detection = inference::detect(w, set.detection_gpus());
    let mut d = Decision {
        inference: detection.reason.clone(),
        opted_out: detection.opted_out,
        ..Decision::default()
    };
    if let Some(owner) = &w.controller
        && JUDGED_THROUGH_OWNER.contains(&owner.kind.as_str())
    {
        d.not_governed = Some(format!(
            "managed by {} {}: judged through its owner",
            owner.kind, owner.name
        ));
        return d;
    }
    let ns_labels = ctx.namespace_labels(&w.namespace);
    let in_scope: Vec<&Policy> = set
        .policies()
        .iter()
        .filter(|p| p.scope_covers(w, &ns_labels))
        .collect();
    let governing: Vec<&Policy> = in_scope
        .iter()
        .copied()
        .filter(|p| governs(p, &detection))
        .collect();
    if governing.is_empty() {
        d.not_governed = Some(why_not_governed(set, &in_scope, &detection, w));
        return d;
    }
    d.governed_by = governing.iter().map(|p| p.name.clone()).collect();

    let mut exempt: Vec<(RuleId, &Exception)> = Vec::new();
    for e in ctx.exceptions_for(w) {
        if e.is_expired(now) {
            d.expired_exceptions
                .push(format!("{} (expired {})", e.qualified_name(), e.expires));
        } else {
            exempt.extend(e.rules.iter().map(|r| (*r, e)));
        }
    }

    let scalers = ctx.scalers_for(w);
    let pdbs = ctx.pdbs_for(w);
    for rule in RuleId::ALL {
        // (policy, action, mutate, outcome) for each policy where the rule found something.
        let mut found: Vec<(&Policy, Action, bool, Outcome)> = Vec::new();
        for p in &governing {
            let ran = match rule {
                RuleId::ZoneSpread => {
                    run(&p.zone_spread, |s, m| zone_spread::check(w, s, m, &scalers))
                }
                RuleId::Autoscaler => run(&p.autoscaler, |s, _| autoscaler::check(w, s, &scalers)),
                RuleId::Resources => run(&p.resources, |s, m| resources::check(w, s, m)),
                RuleId::GpuPlacement => run(&p.gpu_placement, |s, m| gpu_placement::check(w, s, m)),
                RuleId::ImageProvenance => {
                    run(&p.image_provenance, |s, _| image_provenance::check(w, s))
                }
                RuleId::Probes => run(&p.probes, |s, m| probes::check(w, s, m)),
                RuleId::DisruptionBudget => run(&p.disruption_budget, |s, _| {
                    disruption_budget::check(w, s, &scalers, &pdbs)
                }),
                RuleId::SecretEnv => run(&p.secret_env, |s, _| secret_env::check(w, s)),
                RuleId::HostIsolation => run(&p.host_isolation, |s, _| host_isolation::check(w, s)),
            };
            if let Some((action, mutate, outcome)) = ran
                && !outcome.is_clean()
            {
                found.push((p, action, mutate, outcome));
            }
        }
        if found.is_empty() {
            continue;
        }
        if let Some((_, e)) = exempt.iter().find(|(r, _)| *r == rule) {
            d.exemptions.push(Exemption {
                rule,
                exception: e.qualified_name(),
                reason: e.reason.clone(),
                expires: e.expires,
                suppressed: found.iter().map(|f| f.3.findings.len()).max().unwrap_or(0),
            });
            continue;
        }
        // The strictest action wins; among equals, the first policy by name.
        let strictest = found.iter().map(|f| f.1).max().unwrap_or(Action::Off);
        let Some((winner, action, _, outcome)) = found.iter().find(|f| f.1 == strictest) else {
            continue;
        };
        let mutating = found
            .iter()
            .filter(|f| f.2 && !f.3.patch.is_empty())
            .max_by_key(|f| f.1);
        d.violations
            .extend(outcome.findings.iter().map(|f| Violation {
                rule,
                action: *action,
                policy: winner.name.clone(),
                message: f.message.clone(),
                fix: f.fix.clone(),
                path: f.path.clone(),
                fixable: f.fixable && mutating.is_some(),
                patched: false,
            }));
        if let Some((_, _, _, o)) = mutating {
            d.patch.extend(o.patch.iter().cloned());
        }
    }
    d
}

fn run<S>(
    rule: &Option<Enabled<S>>,
    check: impl FnOnce(&S, bool) -> Outcome,
) -> Option<(Action, bool, Outcome)> {
    rule.as_ref()
        .map(|r| (r.action, r.mutate, check(&r.settings, r.mutate)))
}

fn governs(p: &Policy, detection: &Detection) -> bool {
    match p.scope {
        WorkloadScope::All => true,
        WorkloadScope::Inference => {
            detection.reason.is_some() && !(detection.opted_out && p.allow_opt_out)
        }
    }
}

fn why_not_governed(
    set: &PolicySet,
    in_scope: &[&Policy],
    det: &Detection,
    w: &Workload,
) -> String {
    if set.is_empty() {
        return "no policy is in force".into();
    }
    if in_scope.is_empty() {
        return format!(
            "no policy covers {} in namespace {} (kinds, namespaceSelector, selector)",
            w.kind, w.namespace
        );
    }
    if det.reason.is_some() && det.opted_out {
        return format!(
            "opted out of inference detection with label {}=false",
            inference::WORKLOAD_LABEL
        );
    }
    "not model serving: no GPU request, serving label or known serving image".into()
}

/// A judged workload with the verdict after the patch.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub workload: Workload,
    pub decision: Decision,
    /// The cluster's verdict: after the mutating webhook's patch.
    pub allowed: bool,
    /// The object with the patch applied (None when there is no patch).
    pub patched: Option<Value>,
}

/// Parses, judges, patches and judges again. `Ok(None)` when the object is
/// not a workload kind.
pub fn evaluate(
    set: &PolicySet,
    object: &Value,
    default_namespace: &str,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<Option<Evaluation>> {
    let Some(workload) = Workload::from_value(object.clone(), default_namespace)? else {
        return Ok(None);
    };
    let mut decision = judge(set, &workload, ctx, now);
    if decision.patch.is_empty() {
        let allowed = !decision.denied();
        return Ok(Some(Evaluation {
            workload,
            decision,
            allowed,
            patched: None,
        }));
    }
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &decision.patch).map_err(|e| {
        Error::input(
            workload.display_name(),
            format!("the engine's own patch did not apply ({e}); please report this"),
        )
    })?;
    let after_workload = Workload::from_value(patched.clone(), default_namespace)?
        .ok_or_else(|| Error::input(workload.display_name(), "patch changed the object's kind"))?;
    let after = judge(set, &after_workload, ctx, now);
    for v in &mut decision.violations {
        v.patched = v.fixable
            && !after
                .violations
                .iter()
                .any(|a| a.rule == v.rule && a.message == v.message);
    }
    Ok(Some(Evaluation {
        workload,
        allowed: !after.denied(),
        decision,
        patched: Some(patched),
    }))
}
