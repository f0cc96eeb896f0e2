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
use crate::ownership::judged_through;
use crate::policy::compiled::{Policy, PolicySet};
use crate::policy::{Action, RuleId, Updates, WorkloadScope};
use crate::provenance::{self, Facts, Query};
use crate::rules::{Edit, ObjectRef, Outcome, Subject, image_provenance};
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
    /// The winning policy says `mutate: true` and the rule's patch fixes
    /// it: patched when the action is Deny; under Warn or Audit the
    /// warning says what Deny would add, and nothing is patched.
    pub fixable: bool,
    /// The patch fixes it: set by `evaluate` after judging the patched object.
    pub patched: bool,
    /// UPDATE only: the old object already had it, so it does not deny
    /// (see [`admit_existing`]).
    pub existing: bool,
    /// The object at fault when it is not the workload (its autoscaler or
    /// disruption budget); `path` points into it.
    pub object: Option<ObjectRef>,
    /// The fix as data, where the file can hold it (see [`fixes`]).
    pub edit: Option<Edit>,
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
    /// Which rule wrote each run of `patch`, in order: (rule, operations).
    pub patch_rules: Vec<(RuleId, usize)>,
    /// Patches a rule would have made where it denies, but could not (a
    /// tag's digest the registry did not answer), with why: the mutating
    /// webhook warns them, since it admits the object either way.
    pub unpatched: Vec<Violation>,
    pub exemptions: Vec<Exemption>,
    /// Exceptions that name this workload but have expired (ignored).
    pub expired_exceptions: Vec<String>,
    /// Rules of the governing policies that give no verdict on this
    /// object, and why (an InferenceService whose ServingRuntime is not
    /// known: the image and probes are the runtime's).
    pub unjudged: Vec<(RuleId, String)>,
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

/// Judges one workload. Pure: no I/O, no clock (`now` is passed in).
/// Registry-dependent checks are reported as not checked; see
/// [`judge_with`].
pub fn judge(set: &PolicySet, w: &Workload, ctx: &Context, now: jiff::Timestamp) -> Decision {
    judge_with(set, w, ctx, &Facts::offline(provenance::CHECK_OFFLINE), now)
}

/// What the registry must be asked before judging `w` (empty unless a
/// governing policy resolves digests or verifies signatures, and no
/// exception exempts the workload from image-provenance).
pub fn registry_queries(
    set: &PolicySet,
    w: &Workload,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Vec<Query> {
    let mut out = Vec::new();
    if !set.needs_registry() || judged_through(w, ctx).is_some() {
        return out;
    }
    let detection = inference::detect(w, set.detection_gpus(), ctx);
    let ns_labels = ctx.namespace_labels(&w.namespace);
    let exempt = ctx
        .exceptions_for(w)
        .any(|e| !e.is_expired(now) && e.rules.contains(&RuleId::ImageProvenance));
    if exempt {
        return out;
    }
    for p in set
        .policies()
        .iter()
        .filter(|p| p.scope_covers(w, &ns_labels) && governs(p, &detection))
    {
        if let Some(r) = &p.rules.image_provenance {
            image_provenance::queries(w, &r.settings, ctx, &mut out);
        }
    }
    out
}

/// Judges one workload with the registry's answers in `facts`.
pub fn judge_with(
    set: &PolicySet,
    w: &Workload,
    ctx: &Context,
    facts: &Facts,
    now: jiff::Timestamp,
) -> Decision {
    // An InferenceService's model container as it will run: merged with
    // its ServingRuntime.
    let resolved = crate::ai::merge::resolve(w, ctx);
    let w = &*resolved;
    let detection = inference::detect(w, set.detection_gpus(), ctx);
    let mut d = Decision {
        inference: detection.reason.clone(),
        opted_out: detection.opted_out,
        ..Decision::default()
    };
    if let Some(owner) = judged_through(w, ctx).or_else(|| crate::ai::merge::source_in(w, ctx)) {
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

    let mut scalers = ctx.scalers_for(w);
    match &w.own_scaler {
        Some(own) => scalers.push(own),
        // KServe's `external` class: the team's own autoscaler targets
        // the Deployment KServe makes.
        None if w.kind == crate::workload::WorkloadKind::InferenceService => scalers.extend(
            ctx.scalers_targeting(&w.namespace, "Deployment", &format!("{}-predictor", w.name)),
        ),
        None => {}
    }
    let pdbs = ctx.pdbs_for(w);
    let on = Subject {
        workload: w,
        ctx,
        scalers: &scalers,
        pdbs: &pdbs,
        facts,
        now,
    };
    judge_rules(&mut d, &governing, &exempt, &on);
    // Further pod templates of the same object: pod-level rules hold
    // there too (workload-level ones see `part` and stand aside).
    for part in &w.parts {
        let on = Subject {
            workload: part,
            ctx,
            scalers: &[],
            pdbs: &[],
            facts,
            now,
        };
        judge_rules(&mut d, &governing, &exempt, &on);
    }
    for (rule, why) in &w.unjudged {
        let on = governing.iter().any(|p| p.rules.enabled().contains(rule));
        if on && !d.unjudged.iter().any(|(r, _)| r == rule) {
            d.unjudged.push((*rule, why.clone()));
        }
    }
    // An operator merges these resources into what it runs (a runtime's
    // container under the model's fields): a patch written against the
    // merged view could land on a field the resource does not have, so
    // they are never patched; the fix is given in words.
    if w.kind.is_ai_resource() {
        d.patch.clear();
        d.patch_rules.clear();
        d.unpatched.clear();
        for v in &mut d.violations {
            v.fixable = false;
            if v.object.is_none() && matches!(v.edit, Some(Edit::Patch(_))) {
                v.edit = None;
            }
        }
    }
    d
}

/// Runs every rule of the governing policies on one view and adds what
/// they find to `d`.
fn judge_rules(
    d: &mut Decision,
    governing: &[&Policy],
    exempt: &[(RuleId, &Exception)],
    on: &Subject,
) {
    let w = on.workload;
    for rule in RuleId::ALL {
        if w.unjudged.iter().any(|(r, _)| *r == rule) {
            continue;
        }
        // (policy, action, mutate, outcome) for each policy where the rule found something.
        let mut found: Vec<(&Policy, Action, bool, Outcome)> = Vec::new();
        for p in governing {
            let ran = p.rules.run(rule, on);
            if let Some((action, mutate, outcome)) = ran
                && !outcome.is_clean()
            {
                // The AI-serving kinds came with 0.3: a policy pinned to an
                // earlier rule set holds them at most as Warn.
                let action = if w.kind.is_ai_resource()
                    && p.rule_set.release() < crate::release::Release::V0_3
                {
                    action.min(Action::Warn)
                } else {
                    action
                };
                found.push((p, action, mutate, outcome));
            }
        }
        if found.is_empty() {
            continue;
        }
        if let Some((_, e)) = exempt.iter().find(|(r, _)| *r == rule) {
            let suppressed = found
                .iter()
                .map(|f| f.3.findings.len() + f.3.warnings.len())
                .max()
                .unwrap_or(0);
            let name = e.qualified_name();
            match d
                .exemptions
                .iter_mut()
                .find(|x| x.rule == rule && x.exception == name)
            {
                Some(x) => x.suppressed += suppressed,
                None => d.exemptions.push(Exemption {
                    rule,
                    exception: name,
                    reason: e.reason.clone(),
                    expires: e.expires,
                    suppressed,
                }),
            }
            continue;
        }
        // The strictest action wins; among equals, the first policy by name
        // that patches, else the first by name. Its fix text and its patch
        // go together, and a rule patches only where it denies.
        let strictest = found.iter().map(|f| f.1).max().unwrap_or(Action::Off);
        let mut at_strictest = found.iter().filter(|f| f.1 == strictest);
        let Some((winner, action, mutate, outcome)) = at_strictest
            .clone()
            .find(|f| f.2 && !f.3.patch.is_empty())
            .or_else(|| at_strictest.next())
        else {
            continue;
        };
        let mutates = *mutate && !outcome.patch.is_empty();
        let violation = |f: &crate::rules::Finding, action: Action, fixable: bool| Violation {
            rule,
            action,
            policy: winner.name.clone(),
            message: f.message.clone(),
            fix: f.fix.clone(),
            path: f.path.clone(),
            fixable,
            patched: false,
            existing: false,
            object: f.object.clone(),
            edit: f.edit.clone(),
        };
        d.violations.extend(
            outcome
                .findings
                .iter()
                .map(|f| violation(f, *action, f.fixable && mutates)),
        );
        // Findings that never deny warn at most.
        d.violations.extend(
            outcome
                .warnings
                .iter()
                .map(|f| violation(f, (*action).min(Action::Warn), false)),
        );
        if *mutate && *action == Action::Deny {
            d.unpatched.extend(
                outcome
                    .unpatched
                    .iter()
                    .map(|f| violation(f, *action, false)),
            );
        }
        if mutates && *action == Action::Deny {
            d.patch.extend(outcome.patch.iter().cloned());
            d.patch_rules.push((rule, outcome.patch.len()));
        }
    }
}

/// Every fix of a decision that the file can hold, together: what
/// `check -o json` prints as a result's `fix`. Applied to the input (the
/// patch to the workload, the edits to the objects they name, the new
/// objects added) and judged again, the violations they answer are gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fixes {
    /// RFC 6902 operations on the workload as submitted: every rule's own
    /// patch and every finding's edit, composed into one.
    pub patch: Vec<PatchOperation>,
    /// Operations on other objects of the input (an autoscaler's floor).
    pub edits: Vec<(ObjectRef, Vec<PatchOperation>)>,
    /// Objects to add beside the workload (an autoscaler, a budget).
    pub create: Vec<Value>,
}

impl Fixes {
    pub fn is_empty(&self) -> bool {
        self.patch.is_empty() && self.edits.is_empty() && self.create.is_empty()
    }
}

/// Composes the decision's fixes for `object`, the workload as submitted
/// (`w` read from it, judged in `ctx` with `facts`). Every rule with a
/// violation its patch fixes runs again under the policy whose action won,
/// writing its patch whether or not that policy mutates: only `check`
/// asks, so the webhook's path never pays for it. Each rule writes its
/// operations against the object as submitted, so two may add the same
/// list (`volumes`, `tolerations`): an `add` whose list or map is already
/// there adds its items to it instead, and one that would change nothing
/// is dropped. The result is one patch, the difference between the object
/// and the object fixed.
pub fn fixes(
    set: &PolicySet,
    object: &Value,
    w: &Workload,
    ctx: &Context,
    facts: &Facts,
    d: &Decision,
    now: jiff::Timestamp,
) -> Fixes {
    let mut fixed = object.clone();
    let mut edits: Vec<(ObjectRef, Vec<PatchOperation>)> = Vec::new();
    let mut create: Vec<Value> = Vec::new();
    let scalers = ctx.scalers_for(w);
    let pdbs = ctx.pdbs_for(w);
    let on = Subject {
        workload: w,
        ctx,
        scalers: &scalers,
        pdbs: &pdbs,
        facts,
        now,
    };
    let mut patched: Vec<RuleId> = Vec::new();
    for v in &d.violations {
        if patched.contains(&v.rule) {
            continue;
        }
        patched.push(v.rule);
        let winner = set.policies().iter().find(|p| p.name == v.policy);
        if let Some((_, _, outcome)) = winner.and_then(|p| p.rules.run_patching(v.rule, &on))
            && outcome.findings.iter().any(|f| f.fixable)
        {
            for op in &outcome.patch {
                apply_composing(&mut fixed, object, op);
            }
        }
    }
    for v in &d.violations {
        match (&v.edit, &v.object) {
            (Some(Edit::Patch(ops)), None) => {
                for op in ops {
                    apply_composing(&mut fixed, object, op);
                }
            }
            (Some(Edit::Patch(ops)), Some(target)) => {
                match edits.iter_mut().find(|(o, _)| o == target) {
                    Some((_, have)) => have.extend(
                        ops.iter()
                            .filter(|op| !have.contains(op))
                            .cloned()
                            .collect::<Vec<_>>(),
                    ),
                    None => edits.push((target.clone(), ops.clone())),
                }
            }
            (Some(Edit::Create(new)), _) => {
                if !create.contains(new) {
                    create.push(new.clone());
                }
            }
            (None, _) => {}
        }
    }
    Fixes {
        patch: json_patch::diff(object, &fixed).0,
        edits,
        create,
    }
}

/// Applies one operation; an `add` of a list or map that an earlier fix
/// made (it is not in `original`) adds what that one lacks; an operation
/// that does not apply is left out.
fn apply_composing(doc: &mut Value, original: &Value, op: &PatchOperation) {
    if let PatchOperation::Add(add) = op
        && original.pointer(add.path.as_str()).is_none()
        && let Some(have) = doc.pointer_mut(add.path.as_str())
    {
        match (have, &add.value) {
            (Value::Array(have), Value::Array(items)) => {
                for item in items {
                    if !have.contains(item) {
                        have.push(item.clone());
                    }
                }
                return;
            }
            (Value::Object(have), Value::Object(fields)) => {
                for (k, v) in fields {
                    have.entry(k.clone()).or_insert_with(|| v.clone());
                }
                return;
            }
            _ => {}
        }
    }
    let mut attempt = doc.clone();
    if json_patch::patch(&mut attempt, std::slice::from_ref(op)).is_ok() {
        *doc = attempt;
    }
}

/// UPDATE: a deny violation the old object already had (same rule, path
/// and message) made nothing worse, so it no longer denies; it comes back
/// as a warning marked `existing`. New violations still deny, and so does
/// every violation whose winning policy says `updates: All`.
pub fn admit_existing(new: &mut Decision, old: &Decision, set: &PolicySet) {
    for v in new
        .violations
        .iter_mut()
        .filter(|v| v.action == Action::Deny)
    {
        let strict = set
            .policies()
            .iter()
            .find(|p| p.name == v.policy)
            .is_some_and(|p| p.updates == Updates::All);
        let had = old
            .violations
            .iter()
            .any(|o| o.rule == v.rule && o.path == v.path && o.message == v.message);
        if had && !strict {
            v.action = Action::Warn;
            v.existing = true;
        }
    }
}

/// UPDATE, mutating: a rule's patch is kept only when the update brings a
/// violation of that rule the old object did not have. A label, an
/// annotation, a finalizer, a scale or a restart of a workload that
/// predates the policy changes nothing else in it (a patch would roll out
/// new pods nobody asked for); the violations it already had come back as
/// warnings from the validating webhook.
pub fn patch_only_what_is_new(new: &mut Decision, old: &Decision) {
    let had = |v: &Violation| {
        old.violations
            .iter()
            .any(|o| o.rule == v.rule && o.path == v.path && o.message == v.message)
    };
    let mut patch = Vec::with_capacity(new.patch.len());
    let mut rules = Vec::new();
    let mut at = 0;
    for &(rule, n) in &new.patch_rules {
        let brings = new
            .violations
            .iter()
            .any(|v| v.rule == rule && v.fixable && v.action == Action::Deny && !had(v));
        if brings {
            patch.extend(new.patch[at..at + n].iter().cloned());
            rules.push((rule, n));
        }
        at += n;
    }
    for v in &mut new.violations {
        if !rules.iter().any(|(r, _)| *r == v.rule) {
            v.fixable = false;
        }
    }
    new.patch = patch;
    new.patch_rules = rules;
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
    let facts = Facts::offline(provenance::CHECK_OFFLINE);
    evaluate_with(set, object, default_namespace, ctx, &facts, now)
}

/// [`evaluate`] with the registry's answers.
pub fn evaluate_with(
    set: &PolicySet,
    object: &Value,
    default_namespace: &str,
    ctx: &Context,
    facts: &Facts,
    now: jiff::Timestamp,
) -> Result<Option<Evaluation>> {
    let Some(workload) = Workload::from_value_ref(object, default_namespace)? else {
        return Ok(None);
    };
    let mut decision = judge_with(set, &workload, ctx, facts, now);
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
    let after_workload = Workload::from_value_ref(&patched, default_namespace)?
        .ok_or_else(|| Error::input(workload.display_name(), "patch changed the object's kind"))?;
    let after = judge_with(set, &after_workload, ctx, facts, now);
    for v in &mut decision.violations {
        v.patched = v.fixable
            && v.action == Action::Deny
            && !after
                .violations
                .iter()
                .any(|a| a.rule == v.rule && a.path == v.path && a.message == v.message);
    }
    Ok(Some(Evaluation {
        workload,
        allowed: !after.denied(),
        decision,
        patched: Some(patched),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::WellArchitectedPolicy;
    use crate::rules::testing::*;
    use crate::workload::WorkloadKind;
    use serde_json::json;

    fn set(specs: &[(&str, serde_json::Value)]) -> PolicySet {
        PolicySet::new(
            specs
                .iter()
                .map(|(name, spec)| {
                    let p: WellArchitectedPolicy = serde_json::from_value(json!({
                        "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
                        "metadata": {"name": name}, "spec": spec}))
                    .unwrap();
                    Policy::compile(&p).unwrap()
                })
                .collect(),
        )
    }

    fn now() -> jiff::Timestamp {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    fn decide(set: &PolicySet, obj: &serde_json::Value) -> Decision {
        judge(set, &workload(obj), &Context::default(), now())
    }

    /// The GPU Deployment without its zone constraint: zone-spread patches it.
    fn unspread() -> serde_json::Value {
        let mut d = gpu_deployment();
        remove_pod_field(&mut d, "topologySpreadConstraints");
        d
    }

    #[test]
    fn warn_and_audit_patch_nothing_and_say_what_deny_would_add() {
        let mutating = json!({"zoneSpread": {"mutate": true}, "autoscaler": {"action": "Off"}, "disruptionBudget": {"action": "Off"}});
        for action in ["Warn", "Audit"] {
            let d = decide(
                &set(&[("p", json!({"action": action, "rules": mutating}))]),
                &unspread(),
            );
            assert!(d.patch.is_empty(), "{action}: {:?}", d.patch);
            assert_eq!(d.violations.len(), 1);
            assert!(
                d.violations[0].fixable,
                "the warning can say Deny would patch it"
            );
        }
        let d = decide(
            &set(&[("p", json!({"action": "Deny", "rules": mutating}))]),
            &unspread(),
        );
        assert!(!d.patch.is_empty());
    }

    #[test]
    fn the_fix_and_the_patch_come_from_the_same_policy() {
        // Two Deny policies: "a" does not mutate, "b" does with another skew.
        let s = set(&[
            (
                "a",
                json!({"rules": {"autoscaler": {"action": "Off"}, "disruptionBudget": {"action": "Off"}}}),
            ),
            (
                "b",
                json!({"rules": {"autoscaler": {"action": "Off"}, "disruptionBudget": {"action": "Off"},
                    "zoneSpread": {"mutate": true, "whenUnsatisfiable": "ScheduleAnyway"}}}),
            ),
        ]);
        let d = decide(&s, &unspread());
        assert_eq!(d.violations.len(), 1);
        let v = &d.violations[0];
        assert_eq!(v.policy, "b", "the policy that patches wins among equals");
        assert!(v.fix.contains("ScheduleAnyway"), "{}", v.fix);
        assert!(
            serde_json::to_string(&d.patch)
                .unwrap()
                .contains("ScheduleAnyway")
        );
    }

    #[test]
    fn an_update_denies_only_what_it_brings_unless_the_policy_says_all() {
        for (updates, still_denied) in [("NewViolations", false), ("All", true)] {
            let s = set(&[(
                "p",
                json!({"updates": updates, "rules": {"autoscaler": {"action": "Off"}, "disruptionBudget": {"action": "Off"}}}),
            )]);
            let old = decide(&s, &unspread());
            let mut new = decide(&s, &unspread());
            admit_existing(&mut new, &old, &s);
            assert_eq!(new.denied(), still_denied, "{updates}");
            assert_eq!(new.violations[0].existing, !still_denied);
        }
        // A violation the old object did not have still denies.
        let s = set(&[(
            "p",
            json!({"rules": {"autoscaler": {"action": "Off"}, "disruptionBudget": {"action": "Off"}}}),
        )]);
        let old = decide(&s, &gpu_deployment());
        let mut new = decide(&s, &unspread());
        admit_existing(&mut new, &old, &s);
        assert!(new.denied());
    }

    fn owned_by(kind_of: &str, api_version: &str, owner_kind: &str) -> serde_json::Value {
        let mut p = gpu_pod();
        if kind_of == "ReplicaSet" {
            let d = gpu_deployment();
            p = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": "llm-1", "namespace": "ml"}, "spec": d["spec"].clone()});
        }
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": api_version, "kind": owner_kind,
            "name": "owner", "uid": "u", "controller": true}]);
        p
    }

    #[test]
    fn an_owner_speaks_for_what_it_made_only_where_it_is_there_to_be_judged() {
        let s = set(&[("p", json!({"match": {"kinds": ["Pod", "ReplicaSet"]}}))]);
        let mut ctx = Context::default();
        for kind in [
            WorkloadKind::ReplicaSet,
            WorkloadKind::StatefulSet,
            WorkloadKind::DaemonSet,
            WorkloadKind::Job,
            WorkloadKind::Deployment,
        ] {
            ctx.add_workload(kind, "ml", "owner", Some("u".into()));
        }
        for (api_version, kind) in [
            ("apps/v1", "ReplicaSet"),
            ("apps/v1", "StatefulSet"),
            ("apps/v1", "DaemonSet"),
            ("batch/v1", "Job"),
        ] {
            let pod = workload(&owned_by("Pod", api_version, kind));
            let d = judge(&s, &pod, &ctx, now());
            assert!(
                d.not_governed
                    .as_deref()
                    .is_some_and(|n| n.contains("judged through its owner")),
                "{kind}: {:?}",
                d.not_governed
            );
            // The same claim with no such owner in sight proves nothing.
            let d = judge(&s, &pod, &Context::default(), now());
            assert_eq!(d.governed_by, ["p"], "{kind}: {:?}", d.not_governed);
        }
        let rs = workload(&owned_by("ReplicaSet", "apps/v1", "Deployment"));
        assert!(judge(&s, &rs, &ctx, now()).not_governed.is_some());
        // A Deployment never makes Pods itself; Pods of a RayCluster, an
        // Argo Rollout, a look-alike "Deployment" of another group: nobody
        // else judges them, so they are judged.
        for (api_version, kind) in [
            ("apps/v1", "Deployment"),
            ("ray.io/v1", "RayCluster"),
            ("argoproj.io/v1alpha1", "Rollout"),
            ("kubeflow.org/v1", "PyTorchJob"),
            ("example.com/v1", "Deployment"),
        ] {
            let d = judge(
                &s,
                &workload(&owned_by("Pod", api_version, kind)),
                &ctx,
                now(),
            );
            assert_eq!(d.governed_by, ["p"], "{kind}: {:?}", d.not_governed);
        }
    }

    #[test]
    fn on_update_only_a_rule_the_update_breaks_anew_is_patched() {
        let s = set(&[(
            "p",
            json!({"rules": {"zoneSpread": {"mutate": true},
            "resources": {"mutate": true}}}),
        )]);
        let old = unspread();
        let before = decide(&s, &old);
        assert!(!before.patch.is_empty(), "{before:?}");
        // A label: nothing new, nothing patched, and nothing says it was.
        let mut labelled = old.clone();
        labelled["metadata"]["labels"]["team"] = json!("search");
        let mut d = decide(&s, &labelled);
        patch_only_what_is_new(&mut d, &before);
        assert!(d.patch.is_empty(), "{:?}", d.patch);
        assert!(d.violations.iter().all(|v| !v.fixable));
        // A new container without resources brings a resources violation:
        // that rule is patched, the old zone-spread one is not.
        let mut grown = old.clone();
        grown["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "image": "contoso.azurecr.io/sidecar@sha256:0000000000000000000000000000000000000000000000000000000000000000"}));
        let mut d = decide(&s, &grown);
        patch_only_what_is_new(&mut d, &before);
        assert_eq!(
            d.patch_rules.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
            [RuleId::Resources],
            "{:?}",
            d.patch
        );
        assert!(
            d.patch
                .iter()
                .all(|op| !op.path().to_string().contains("topologySpread"))
        );
    }

    /// A Deployment KAITO made for a Workspace: the user's labels are on
    /// the pod template only.
    fn kaito_deployment() -> serde_json::Value {
        let mut d = unspread();
        d["metadata"]["labels"] = json!({"kaito.sh/workspace": "phi-3"});
        d["spec"]["template"]["metadata"]["labels"]["team"] = json!("search");
        d["metadata"]["ownerReferences"] = json!([{"apiVersion": "kaito.sh/v1beta1",
            "kind": "Workspace", "name": "phi-3", "uid": "u", "controller": true}]);
        d
    }

    #[test]
    fn policy_selectors_match_the_pod_templates_labels_and_owners_can_be_excluded() {
        let s = set(&[(
            "p",
            json!({"match": {"selector": {"matchLabels": {"team": "search"}}}}),
        )]);
        assert_eq!(decide(&s, &kaito_deployment()).governed_by, ["p"]);
        let s = set(&[(
            "p",
            json!({"match": {"excludeOwners": [{"apiGroup": "kaito.sh", "kind": "Workspace"}]}}),
        )]);
        let d = decide(&s, &kaito_deployment());
        assert!(d.governed_by.is_empty(), "{d:?}");
        assert!(!decide(&s, &unspread()).governed_by.is_empty());
    }

    #[test]
    fn exceptions_exempt_by_owner_kind_or_template_labels_within_their_namespace() {
        let s = set(&[(
            "p",
            json!({"rules": {"autoscaler": {"action": "Off"}, "disruptionBudget": {"action": "Off"}}}),
        )]);
        for (namespace, target, exempt) in [
            (
                "ml",
                json!({"owners": [{"apiGroup": "kaito.sh", "kind": "Workspace"}]}),
                true,
            ),
            (
                "ml",
                json!({"selector": {"matchLabels": {"team": "search"}}}),
                true,
            ),
            (
                "other",
                json!({"owners": [{"apiGroup": "kaito.sh", "kind": "Workspace"}]}),
                false,
            ),
            (
                "ml",
                json!({"owners": [{"apiGroup": "serving.kserve.io", "kind": "InferenceService"}]}),
                false,
            ),
        ] {
            let mut spec = json!({"rules": ["zone-spread"], "reason": "operator-managed",
                "expires": "2030-01-01T00:00:00Z"});
            spec.as_object_mut()
                .unwrap()
                .extend(target.as_object().unwrap().clone());
            let e: crate::policy::WellArchitectedException = serde_json::from_value(json!({
                "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedException",
                "metadata": {"name": "e", "namespace": namespace}, "spec": spec}))
            .unwrap();
            let mut ctx = Context::default();
            ctx.add_exception(Exception::compile(&e, "default").unwrap());
            let d = judge(&s, &workload(&kaito_deployment()), &ctx, now());
            assert_eq!(d.violations.is_empty(), exempt, "{namespace} {target}");
        }
    }

    #[test]
    fn owner_groups_with_a_version_are_refused() {
        let p: WellArchitectedPolicy = serde_json::from_value(json!({
            "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
            "metadata": {"name": "p"},
            "spec": {"match": {"excludeOwners": [{"apiGroup": "kaito.sh/v1beta1", "kind": "Workspace"},
                {"apiGroup": "kaito.sh/v1beta1", "kind": "Workspace"}]}}}))
        .unwrap();
        let e = Policy::compile(&p).unwrap_err().to_string();
        assert!(e.contains("spec.match.excludeOwners[0].apiGroup: \"kaito.sh/v1beta1\" has a version; write the group alone (\"kaito.sh\")"), "{e}");
        assert!(
            e.contains(
                "spec.match.excludeOwners[1]: \"kaito.sh/v1beta1/Workspace\" is listed twice"
            ),
            "{e}"
        );
    }
}
