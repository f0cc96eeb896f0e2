//! AdmissionReview in, AdmissionReview out. Transport problems (a body that
//! is not an AdmissionReview) are kept apart from decisions: the first get
//! an HTTP 4xx, the second a 200 with `allowed` and a message, because an
//! HTTP error makes the apiserver apply failurePolicy instead of our answer.

//!
//! This file is the flow: read ([`super::review`]), prepare, wait for the
//! registry where a policy needs it, finish, word the answer
//! ([`super::answer`]); our own kinds go to [`super::policy_objects`].

use std::borrow::Cow;
use std::time::Instant;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::answer::{audit_annotations, full_fixes_at, invalid, refuse, rule_list};
use super::policy_objects::policy_object;
use super::review::{Objects, read};
use crate::context::ScalerRef;
use crate::decision::{
    Decision, admit_existing, judge_with, patch_only_what_is_new, registry_queries,
};
use crate::metrics::Metrics;
use crate::ownership::core_controller;
use crate::policy::{Action, GROUP};
use crate::provenance::Facts;
use crate::provenance::registry::Registry;
use crate::state::{DecisionEvent, EventReason, Snapshot, State};
use crate::workload::{Workload, WorkloadKind};

pub use super::answer::{WARNING_MAX, WARNINGS_TOTAL_MAX, denial_message, warnings};
pub use super::review::BadRequest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Validate,
    Mutate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// Encodes the answer for the apiserver. kube's AdmissionResponse writes
/// `patch` as a JSON array of bytes; the API's `patch` is a `[]byte`, which
/// Kubernetes' JSON reads and writes as base64, so it is written that way.
pub fn encode(review: &AdmissionReview<DynamicObject>) -> serde_json::Result<Vec<u8>> {
    let patch = review.response.as_ref().and_then(|r| r.patch.as_ref());
    let Some(patch) = patch else {
        return serde_json::to_vec(review);
    };
    use base64::Engine;
    let mut value = serde_json::to_value(review)?;
    value["response"]["patch"] =
        Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
    serde_json::to_vec(&value)
}

/// Answers one AdmissionReview.
pub async fn review(
    endpoint: Endpoint,
    body: &[u8],
    state: &State,
    metrics: &Metrics,
    registry: Option<&Registry>,
    deadline: std::time::Instant,
    now: jiff::Timestamp,
) -> Result<AdmissionReview<DynamicObject>, BadRequest> {
    let started = Instant::now();
    let (request, objects) = read(body)?;
    let lookup = Lookup { registry, deadline };
    let (response, summary) = match prepare(endpoint, &request, objects, state) {
        Prepared::Answered(response, summary) => (response, summary),
        // Boxed: the wait for the cache is the rare road.
        Prepared::Change(change) => {
            Box::pin(change.judge(&request, state, metrics, now, deadline)).await
        }
        Prepared::Judge(mut pending) => {
            // A DRA claim template applied in the same `kubectl apply` as
            // its workload reaches the snapshot a moment after: wait for
            // it (boxed, the rare road), or the claim cannot be told.
            if state.follows_cluster() && pending.snapshot.context.lacks_claims(&pending.workload) {
                pending.snapshot = Box::pin(claims_known(state, &pending.workload, deadline)).await;
            }
            // The one wait of the request path, and only when a governing
            // policy needs the registry. Everything held across it is
            // boxed, so what each request's task carries (and moves from
            // frame to frame) stays small.
            let facts = if pending.snapshot.policies.needs_registry() {
                Box::pin(lookup.facts(&pending.snapshot, &pending.workload, now)).await
            } else {
                Facts::online()
            };
            finish(endpoint, &request, *pending, &facts, state, metrics, now)
        }
    };
    metrics.verdict(endpoint.as_str(), summary.verdict);
    if summary.verdict == Verdict::Denied {
        metrics.denial(request.namespace.as_deref().unwrap_or_default());
    }
    tracing::info!(
        endpoint = endpoint.as_str(),
        uid = %request.uid,
        operation = ?request.operation,
        kind = %request.kind.kind,
        namespace = request.namespace.as_deref().unwrap_or(""),
        name = %request.name,
        dry_run = request.dry_run,
        verdict = summary.verdict.as_str(),
        rules = %summary.rules,
        micros = started.elapsed().as_micros() as u64,
        "admission decision"
    );
    Ok(response.into_review())
}

pub use crate::metrics::Verdict;

/// A decision as the metrics and the decision log see it.
pub(super) struct Summary {
    pub(super) verdict: Verdict,
    pub(super) rules: String,
}

impl Summary {
    pub(super) fn allowed(rules: impl Into<String>) -> Summary {
        Summary {
            verdict: Verdict::Allowed,
            rules: rules.into(),
        }
    }
}

/// The namespace a request's object is judged in: the request's, or
/// `default` for a cluster-scoped request.
fn namespace_of(req: &AdmissionRequest<DynamicObject>) -> &str {
    req.namespace.as_deref().unwrap_or("default")
}

/// Why an object is admitted without being judged, for the decision log.
pub(super) const DELETING: &str = "unjudged: being deleted";
const UNCACHED: &str = "unjudged: the workload it changes is not in the cache";

/// The registry client and the time by which its answers are needed.
#[derive(Clone, Copy)]
struct Lookup<'a> {
    registry: Option<&'a Registry>,
    deadline: std::time::Instant,
}

impl Lookup<'_> {
    /// The registry's answers for `w`, asked for by a governing policy
    /// that needs them ([`review`] asks only then); cached answers cost no
    /// network call.
    async fn facts(&self, snapshot: &Snapshot, w: &Workload, now: jiff::Timestamp) -> Facts {
        let Some(registry) = self.registry else {
            return Facts::offline("this webhook was started without a registry client");
        };
        let queries = registry_queries(&snapshot.policies, w, &snapshot.context, now);
        if queries.is_empty() {
            return Facts::online();
        }
        registry.gather(&queries, self.deadline).await
    }
}

/// What [`prepare`] leaves for judging: the object read and the policies
/// it is judged by.
struct Pending<'a> {
    response: AdmissionResponse,
    workload: Workload,
    old: Option<&'a RawValue>,
    snapshot: std::sync::Arc<Snapshot>,
}

// Returned once and matched at once, never held across the wait: boxing
// the answer would only add an allocation to every request not judged.
#[allow(clippy::large_enum_variant)]
enum Prepared<'a> {
    /// Admitted without judging, or refused as unreadable.
    Answered(AdmissionResponse, Summary),
    Judge(Box<Pending<'a>>),
    /// A change to the workload around the pods: its replicas through the
    /// scale subresource, or an autoscaler that targets it.
    Change(Box<Change>),
}

/// Everything before the registry: reads the object and decides whether
/// there is anything to judge.
fn prepare<'a>(
    endpoint: Endpoint,
    req: &AdmissionRequest<DynamicObject>,
    objects: Objects<'a>,
    state: &State,
) -> Prepared<'a> {
    let response = AdmissionResponse::from(req);
    if matches!(req.operation, Operation::Delete | Operation::Connect) {
        return Prepared::Answered(response, Summary::allowed("-"));
    }
    let subresource = req.sub_resource.as_deref().filter(|s| !s.is_empty());
    let written = WorkloadKind::ALL
        .into_iter()
        .find(|k| k.resource() == (req.resource.group.as_str(), req.resource.resource.as_str()));
    // What a core controller makes from a template judged at apply is not
    // judged again: the requester, authenticated by the apiserver, says
    // who made it (never the object's own ownerReferences).
    if let Some(kind) = written
        && let Some(controller) = core_controller(
            req.user_info.username.as_deref().unwrap_or_default(),
            kind,
            subresource,
        )
    {
        return Prepared::Answered(
            response,
            Summary::allowed(format!("unjudged: written by {controller}")),
        );
    }
    if subresource == Some("scale") {
        return match (endpoint, written) {
            (Endpoint::Validate, Some(kind)) => Change::scale(response, req, kind, objects.new),
            _ => Prepared::Answered(response, Summary::allowed("-")),
        };
    }
    if endpoint == Endpoint::Validate
        && matches!(
            (req.kind.group.as_str(), req.kind.kind.as_str()),
            ("autoscaling", "HorizontalPodAutoscaler") | ("keda.sh", "ScaledObject")
        )
    {
        return Change::autoscaler(response, req, objects, state);
    }
    let namespace = namespace_of(req);
    let typed = match (objects.read, objects.new) {
        (Some(w), _) => Ok(Some(w)),
        (None, None) => return Prepared::Answered(response, Summary::allowed("-")),
        (None, Some(object)) => {
            if req.kind.group == GROUP {
                let (response, summary) = policy_object(endpoint, response, &req.kind.kind, object);
                return Prepared::Answered(response, summary);
            }
            let api_version = req.kind.api_version();
            Workload::from_json_as(object.get(), namespace, &api_version, &req.kind.kind)
        }
    };
    let workload = match typed {
        Ok(Some(w)) => w,
        Ok(None) => return Prepared::Answered(response, Summary::allowed("not a workload kind")),
        Err(e) => {
            let (response, summary) = invalid(
                response,
                format!("waf-admission cannot judge this object: {e}"),
            );
            return Prepared::Answered(response, summary);
        }
    };
    // Removing the last finalizer is an UPDATE of an object being deleted:
    // judging it could only leave it stuck in Terminating.
    if workload.deleting {
        return Prepared::Answered(response, Summary::allowed(DELETING));
    }
    // An operator's write of what it makes from an AI-serving resource
    // (KServe's predictor Deployment, a LeaderWorkerSet's StatefulSet):
    // workload-level rules were judged at that resource. The requester,
    // authenticated by the apiserver, proves it; a user who writes the
    // same ownerReference is judged as before.
    let mut workload = workload;
    workload.source = crate::ai::operator_source(
        &workload,
        req.user_info.username.as_deref().unwrap_or_default(),
        state.operators(),
    );
    Prepared::Judge(Box::new(Pending {
        response,
        workload,
        old: objects.old,
        snapshot: state.load(),
    }))
}

/// Judges the object read by [`prepare`] with the registry's answers.
fn finish(
    endpoint: Endpoint,
    req: &AdmissionRequest<DynamicObject>,
    pending: Pending<'_>,
    facts: &Facts,
    state: &State,
    metrics: &Metrics,
    now: jiff::Timestamp,
) -> (AdmissionResponse, Summary) {
    let Pending {
        response,
        workload,
        old,
        snapshot,
    } = pending;
    let mut decision = judge_with(&snapshot.policies, &workload, &snapshot.context, facts, now);
    let update = req.operation == Operation::Update;
    let namespace = namespace_of(req);
    // A Pod's spec and a Job's pod template are immutable: a patch to
    // them would make the apiserver refuse an UPDATE such as `kubectl
    // label`, so those are never patched.
    if endpoint == Endpoint::Mutate
        && update
        && matches!(workload.kind, WorkloadKind::Pod | WorkloadKind::Job)
    {
        return (response, Summary::allowed(rule_list(&decision)));
    }
    // UPDATE: what the old object already had neither denies (validate)
    // nor is patched (mutate): a label, a finalizer, a scale or a restart
    // of a workload that predates the policy leaves its template as it is.
    let judge_old = match endpoint {
        Endpoint::Validate => decision.denied(),
        Endpoint::Mutate => !decision.patch.is_empty(),
    };
    if update
        && judge_old
        && let Some(old) = old
        && let Ok(Some(old)) = Workload::from_json(old.get(), namespace)
    {
        let before = judge_with(&snapshot.policies, &old, &snapshot.context, facts, now);
        match endpoint {
            Endpoint::Validate => admit_existing(&mut decision, &before, &snapshot.policies),
            Endpoint::Mutate => patch_only_what_is_new(&mut decision, &before),
        }
    }
    let rules = rule_list(&decision);
    match endpoint {
        Endpoint::Validate => validate(response, req, &workload, &decision, state, metrics, rules),
        Endpoint::Mutate => mutate(response, &decision, rules),
    }
}

/// The snapshot once it holds every claim `w` names, or at the deadline
/// (at most [`CACHE_WAIT`] from now), whichever comes first.
async fn claims_known(
    state: &State,
    w: &Workload,
    deadline: std::time::Instant,
) -> std::sync::Arc<Snapshot> {
    let until = deadline.min(std::time::Instant::now() + CACHE_WAIT);
    loop {
        let snapshot = state.load();
        if !snapshot.context.lacks_claims(w) || std::time::Instant::now() >= until {
            return snapshot;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A change to the workload around its pods, judged by the workload-level
/// rules against the workload as the cluster's reflectors hold it: the
/// scale subresource as a change of `spec.replicas`, an autoscaler as a
/// change of the workload's autoscaler. What the change brings is judged;
/// what was there before is not repeated.
struct Change {
    response: AdmissionResponse,
    /// The workload changed: (kind, namespace, name).
    target: (WorkloadKind, String, String),
    /// A scale: `spec.replicas` after it.
    replicas: Option<i32>,
    /// An autoscaler: the context before and after it (None: the
    /// snapshot's).
    before_context: Option<crate::context::Context>,
    after_context: Option<crate::context::Context>,
    /// Wait a moment for a target the cache does not hold yet: an
    /// autoscaler applied in the same `kubectl apply` as its workload
    /// arrives right after the workload was created, before the watch
    /// event has reached this replica.
    wait: bool,
}

/// How long an autoscaler waits for its workload to reach the cache (and
/// never past the request's deadline).
const CACHE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// `spec.replicas` of an `autoscaling/v1` Scale.
#[derive(Deserialize)]
struct Scale {
    #[serde(default)]
    spec: ScaleSpec,
}

#[derive(Deserialize, Default)]
struct ScaleSpec {
    #[serde(default)]
    replicas: Option<i32>,
}

impl Change {
    fn scale<'a>(
        response: AdmissionResponse,
        req: &AdmissionRequest<DynamicObject>,
        kind: WorkloadKind,
        object: Option<&RawValue>,
    ) -> Prepared<'a> {
        let replicas = match object.map(|o| serde_json::from_str::<Scale>(o.get())) {
            Some(Ok(scale)) => scale.spec.replicas.unwrap_or(0),
            Some(Err(e)) => {
                let (response, summary) =
                    invalid(response, format!("request.object is not a Scale: {e}"));
                return Prepared::Answered(response, summary);
            }
            None => return Prepared::Answered(response, Summary::allowed("-")),
        };
        Prepared::Change(Box::new(Change {
            response,
            target: (kind, namespace_of(req).to_owned(), req.name.clone()),
            replicas: Some(replicas),
            before_context: None,
            after_context: None,
            wait: false,
        }))
    }

    fn autoscaler<'a>(
        response: AdmissionResponse,
        req: &AdmissionRequest<DynamicObject>,
        objects: Objects<'_>,
        state: &State,
    ) -> Prepared<'a> {
        let namespace = namespace_of(req);
        let read = |raw: &RawValue| -> Result<Option<ScalerRef>, String> {
            let value: Value = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
            ScalerRef::from_value(value, namespace, "request.object").map_err(|e| e.to_string())
        };
        let after = match objects.new.map(read) {
            Some(Ok(Some(s))) => s,
            Some(Err(e)) => {
                let (response, summary) = invalid(
                    response,
                    format!("waf-admission cannot judge this object: {e}"),
                );
                return Prepared::Answered(response, summary);
            }
            // An HPA that KEDA made for a ScaledObject stands for it.
            Some(Ok(None)) | None => return Prepared::Answered(response, Summary::allowed("-")),
        };
        let old = objects.old.and_then(|o| read(o).ok().flatten());
        let Some(kind) = WorkloadKind::ALL
            .into_iter()
            .find(|k| k.as_str() == after.target_kind)
        else {
            return Prepared::Answered(response, Summary::allowed("not a workload kind"));
        };
        let target = (kind, namespace.to_owned(), after.target_name.clone());
        let snapshot = state.load();
        let mut before_context = snapshot.context.clone();
        before_context.remove_scaler(after.kind, &after.namespace, &after.name);
        if let Some(old) = old {
            before_context.add_scaler(old);
        }
        let mut after_context = snapshot.context.clone();
        after_context.remove_scaler(after.kind, &after.namespace, &after.name);
        after_context.add_scaler(after);
        Prepared::Change(Box::new(Change {
            response,
            target,
            replicas: None,
            before_context: Some(before_context),
            after_context: Some(after_context),
            wait: true,
        }))
    }

    /// The target as the cache holds it, waiting up to [`CACHE_WAIT`] for
    /// it where the change asks to.
    async fn target(&self, state: &State, deadline: std::time::Instant) -> Option<Workload> {
        let (kind, namespace, name) = &self.target;
        let until = deadline.min(std::time::Instant::now() + CACHE_WAIT);
        loop {
            if let Some(text) = state.workload_text(*kind, namespace, name) {
                return Workload::from_json(&text, namespace).ok().flatten();
            }
            if !self.wait || std::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    async fn judge(
        self,
        req: &AdmissionRequest<DynamicObject>,
        state: &State,
        metrics: &Metrics,
        now: jiff::Timestamp,
        deadline: std::time::Instant,
    ) -> (AdmissionResponse, Summary) {
        let Some(before) = self.target(state, deadline).await else {
            return (self.response, Summary::allowed(UNCACHED));
        };
        let mut after = before.clone();
        if let Some(n) = self.replicas {
            after.replicas = Some(n);
        }
        let snapshot = state.load();
        let facts = Facts::online();
        let before_ctx = self.before_context.as_ref().unwrap_or(&snapshot.context);
        let after_ctx = self.after_context.as_ref().unwrap_or(&snapshot.context);
        let old = judge_with(&snapshot.policies, &before, before_ctx, &facts, now);
        let mut new = judge_with(&snapshot.policies, &after, after_ctx, &facts, now);
        new.violations.retain(|v| {
            v.rule.is_workload_level()
                && !old
                    .violations
                    .iter()
                    .any(|o| o.rule == v.rule && o.path == v.path && o.message == v.message)
        });
        new.patch.clear();
        let rules = rule_list(&new);
        validate(self.response, req, &after, &new, state, metrics, rules)
    }
}

fn validate(
    mut response: AdmissionResponse,
    req: &AdmissionRequest<DynamicObject>,
    w: &Workload,
    d: &Decision,
    state: &State,
    metrics: &Metrics,
    rules: String,
) -> (AdmissionResponse, Summary) {
    for v in &d.violations {
        metrics.violation(v.rule.as_str(), v.action.as_str());
    }
    // Worded once, borrowed where nothing is added to the engine's text.
    let worded: Vec<(&str, Cow<'_, str>, Cow<'_, str>)> = d
        .with_action(Action::Warn)
        .map(|v| {
            let message = if v.existing {
                Cow::Owned(format!("already there before this update: {}", v.message))
            } else {
                Cow::Borrowed(v.message.as_str())
            };
            let fix = if v.fixable {
                Cow::Owned(format!("{} (Deny with mutate: true would add it)", v.fix))
            } else {
                Cow::Borrowed(v.fix.as_str())
            };
            (v.rule.as_str(), message, fix)
        })
        .collect();
    let full = full_fixes_at(w, req.dry_run, state.records_events());
    let warnings = warnings(
        worded.iter().map(|(r, m, f)| (*r, m.as_ref(), f.as_ref())),
        &full,
    );
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response.audit_annotations = audit_annotations(d);
    let denied = d.denied();
    if denied {
        response = refuse(response, 403, "Forbidden", denial_message(w, d));
    }
    let strictest = d.violations.iter().map(|v| v.action).max();
    if !req.dry_run && matches!(strictest, Some(Action::Deny | Action::Warn)) {
        let event = |message: String| DecisionEvent {
            api_version: w.kind.api_version().into(),
            kind: w.kind.as_str().into(),
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            action: strictest.unwrap_or(Action::Warn),
            reason: EventReason::PolicyViolation,
            message,
        };
        let standing = || d.violations.iter().filter(|v| v.action >= Action::Warn);
        state.record(event(
            standing()
                .map(|v| format!("[{}] {}. Fix: {}", v.rule, v.message, v.fix))
                .collect::<Vec<_>>()
                .join("\n"),
        ));
        // An object to add, whole, in an Event of its own so that the
        // note's 1 KiB holds it (a ScaledObject is about 400 bytes).
        for v in standing() {
            if let Some(crate::rules::Edit::Create(object)) = &v.edit {
                state.record(event(format!("[{}] {}:\n{object}", v.rule, v.fix)));
            }
        }
    }
    (
        response,
        Summary {
            verdict: if denied {
                Verdict::Denied
            } else {
                Verdict::Allowed
            },
            rules,
        },
    )
}

fn mutate(
    mut response: AdmissionResponse,
    d: &Decision,
    rules: String,
) -> (AdmissionResponse, Summary) {
    // Say what was changed: a user should not find fields they never
    // wrote. And what could not be: an unpinned tag must not pass in
    // silence here while /validate refuses it for a registry failure.
    let changed = d.with_action(Action::Deny).filter(|v| v.fixable).map(|v| {
        (
            v.rule.as_str(),
            v.message.as_str(),
            "added by the waf-admission mutating webhook",
        )
    });
    let not_changed = d
        .unpatched
        .iter()
        .map(|v| (v.rule.as_str(), v.message.as_str(), v.fix.as_str()));
    // Why a patch was not made matters most here; /validate warns or
    // denies the same violation with its fix.
    let notes = warnings(changed.chain(not_changed), "");
    if d.patch.is_empty() {
        if !notes.is_empty() {
            response.warnings = Some(notes);
        }
        return (response, Summary::allowed(rules));
    }
    match response
        .clone()
        .with_patch(json_patch::Patch(d.patch.clone()))
    {
        Ok(patched) => {
            response = patched;
            if !notes.is_empty() {
                response.warnings = Some(notes);
            }
            (
                response,
                Summary {
                    verdict: Verdict::Patched,
                    rules,
                },
            )
        }
        // Serializing a patch of JSON values cannot fail; if it ever does,
        // admit unpatched and let /validate decide.
        Err(e) => {
            tracing::error!(error = %e, "patch did not serialize; answering without a patch");
            (response, Summary::allowed(rules))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_is_written_as_the_lower_case_word_it_always_was() {
        for (verdict, word) in [
            (Verdict::Allowed, "allowed"),
            (Verdict::Denied, "denied"),
            (Verdict::Patched, "patched"),
            (Verdict::Invalid, "invalid"),
            (Verdict::Unavailable, "unavailable"),
        ] {
            assert_eq!(verdict.as_str(), word);
            assert_eq!(verdict.to_string(), word);
            assert_eq!(
                serde_json::to_string(&verdict).unwrap(),
                format!("\"{word}\"")
            );
        }
    }
}
