//! AdmissionReview in, AdmissionReview out. Transport problems (a body that
//! is not an AdmissionReview) are kept apart from decisions: the first get
//! an HTTP 4xx, the second a 200 with `allowed` and a message, because an
//! HTTP error makes the apiserver apply failurePolicy instead of our answer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::StatusSummary;
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::metrics::Metrics;
use crate::context::{Exception, ScalerRef};
use crate::decision::{
    Decision, admit_existing, judge_with, patch_only_what_is_new, registry_queries,
};
use crate::ownership::core_controller;
use crate::policy::compiled::Policy;
use crate::policy::{Action, GROUP, WellArchitectedException, WellArchitectedPolicy};
use crate::provenance::{Facts, Registry};
use crate::state::{DecisionEvent, EventReason, Snapshot, State};
use crate::workload::{ReadAs, Workload, WorkloadKind, typed};

/// The apiserver keeps each warning to 256 characters and all of them to 4 KiB.
pub const WARNING_MAX: usize = 256;
pub const WARNINGS_TOTAL_MAX: usize = 4096;
/// Lines of a denial message wrap here, so it reads in a 100-column terminal.
const WRAP: usize = 100;

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

/// The AdmissionReview as it arrives, read in one pass: `R` is
/// [`ReadRequest`] (the object read as it goes) or, when that fails,
/// [`RawRequest`] (the object kept as text).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, R> {
    #[serde(default, borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default = "Option::default")]
    request: Option<R>,
}

/// A [`RawRequest`] whose `request.object` was read into a workload in the
/// same pass as the rest ([`ReadAs`]), when the fields before it say what
/// it is: `kind` a workload type and `namespace`, as the apiserver writes
/// them (Go writes struct fields in order, and both come before `object`),
/// and no `operation` of DELETE or CONNECT before it. Otherwise, or for our
/// own kinds, the object stays text as in `RawRequest`.
struct ReadRequest<'a> {
    raw: RawRequest<'a>,
    read: Option<Workload>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Field {
    Uid,
    Kind,
    Resource,
    SubResource,
    RequestKind,
    RequestResource,
    RequestSubResource,
    Name,
    Namespace,
    Operation,
    UserInfo,
    Object,
    OldObject,
    DryRun,
    #[serde(other)]
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for ReadRequest<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ReadRequestVisitor(std::marker::PhantomData))
    }
}

struct ReadRequestVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for ReadRequestVisitor<'a> {
    type Value = ReadRequest<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an AdmissionRequest")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        use serde::de::Error as _;
        // Each field at most once, as the derived reading of `RawRequest` has it.
        fn once<'de, M: serde::de::MapAccess<'de>, T: Deserialize<'de>>(
            map: &mut M,
            slot: &mut Option<T>,
            name: &'static str,
        ) -> Result<(), M::Error> {
            if slot.is_some() {
                return Err(M::Error::duplicate_field(name));
            }
            *slot = Some(map.next_value()?);
            Ok(())
        }
        let mut uid: Option<String> = None;
        let mut kind: Option<GroupVersionKind> = None;
        let mut resource: Option<GroupVersionResource> = None;
        let mut sub_resource: Option<Option<String>> = None;
        let mut request_kind: Option<Option<GroupVersionKind>> = None;
        let mut request_resource: Option<Option<GroupVersionResource>> = None;
        let mut request_sub_resource: Option<Option<String>> = None;
        let mut name: Option<String> = None;
        let mut namespace: Option<Option<String>> = None;
        let mut operation: Option<Operation> = None;
        let mut user_info: Option<UserInfo> = None;
        let mut object: Option<Option<&'de RawValue>> = None;
        let mut read: Option<Workload> = None;
        let mut old_object: Option<Option<&'de RawValue>> = None;
        let mut dry_run: Option<bool> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Uid => once(&mut map, &mut uid, "uid")?,
                Field::Kind => once(&mut map, &mut kind, "kind")?,
                Field::Resource => once(&mut map, &mut resource, "resource")?,
                Field::SubResource => once(&mut map, &mut sub_resource, "subResource")?,
                Field::RequestKind => once(&mut map, &mut request_kind, "requestKind")?,
                Field::RequestResource => once(&mut map, &mut request_resource, "requestResource")?,
                Field::RequestSubResource => {
                    once(&mut map, &mut request_sub_resource, "requestSubResource")?
                }
                Field::Name => once(&mut map, &mut name, "name")?,
                Field::Namespace => once(&mut map, &mut namespace, "namespace")?,
                Field::Operation => once(&mut map, &mut operation, "operation")?,
                Field::UserInfo => once(&mut map, &mut user_info, "userInfo")?,
                Field::Object => {
                    if object.is_some() || read.is_some() {
                        return Err(M::Error::duplicate_field("object"));
                    }
                    // A DELETE's object is null and a CONNECT's is not a workload.
                    let judged = !matches!(operation, Some(Operation::Delete | Operation::Connect));
                    let seed_for = match (&kind, &namespace) {
                        (Some(k), Some(Some(ns))) if judged && k.group != GROUP => Some((k, ns)),
                        _ => None,
                    };
                    let api_version = seed_for.map(|(k, _)| k.api_version());
                    let seed =
                        seed_for
                            .zip(api_version.as_deref())
                            .and_then(|((k, ns), api_version)| {
                                ReadAs::for_type(api_version, &k.kind, ns)
                            });
                    match seed {
                        Some(seed) => read = Some(map.next_value_seed(seed)?),
                        None => object = Some(map.next_value()?),
                    }
                }
                Field::OldObject => once(&mut map, &mut old_object, "oldObject")?,
                Field::DryRun => once(&mut map, &mut dry_run, "dryRun")?,
                Field::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let raw = RawRequest {
            uid: uid.ok_or_else(|| M::Error::missing_field("uid"))?,
            kind: kind.ok_or_else(|| M::Error::missing_field("kind"))?,
            resource: resource.ok_or_else(|| M::Error::missing_field("resource"))?,
            sub_resource: sub_resource.flatten(),
            request_kind: request_kind.flatten(),
            request_resource: request_resource.flatten(),
            request_sub_resource: request_sub_resource.flatten(),
            name: name.unwrap_or_default(),
            namespace: namespace.flatten(),
            operation: operation.ok_or_else(|| M::Error::missing_field("operation"))?,
            user_info: user_info.ok_or_else(|| M::Error::missing_field("userInfo"))?,
            object: object.flatten(),
            old_object: old_object.flatten(),
            dry_run: dry_run.unwrap_or_default(),
        };
        Ok(ReadRequest { raw, read })
    }
}

/// kube's `AdmissionRequest` with the objects kept as JSON text (borrowed
/// slices of the body: `oldObject` is parsed only for an UPDATE that would
/// be denied); `options` is skipped unparsed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest<'a> {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: UserInfo,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    old_object: Option<&'a RawValue>,
    #[serde(default)]
    dry_run: bool,
}

impl RawRequest<'_> {
    fn into_request(self, api_version: &str, kind: &str) -> AdmissionRequest<DynamicObject> {
        AdmissionRequest {
            types: TypeMeta {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            },
            uid: self.uid,
            kind: self.kind,
            resource: self.resource,
            sub_resource: self.sub_resource,
            request_kind: self.request_kind,
            request_resource: self.request_resource,
            request_sub_resource: self.request_sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: self.user_info,
            object: None,
            old_object: None,
            dry_run: self.dry_run,
            options: None,
        }
    }
}

/// A request body that is not a usable AdmissionReview.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

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

/// The request and its objects, read from the body in one pass over it, no
/// tree: the request's fields go straight into their types,
/// `request.object` into a workload where the fields before it say what it
/// is (or stays JSON text), and `oldObject` is kept as text, read only for
/// an UPDATE that would be denied. A request whose object does not read
/// cleanly on the way is read again with the object kept as text, which
/// words its error.
fn read(body: &[u8]) -> Result<(Box<AdmissionRequest<DynamicObject>>, Objects<'_>), BadRequest> {
    if body.is_empty() {
        return Err(BadRequest(
            "empty body: expected an admission.k8s.io/v1 AdmissionReview".into(),
        ));
    }
    // JSON is UTF-8 (RFC 8259). Read as bytes, serde_json checks every
    // string it reads; checked once here, the strings are read without.
    // A body that is not UTF-8 is read as bytes, as before, so its answer
    // is the same.
    let fast = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    };
    let envelope: Envelope<'_, ReadRequest<'_>> = match fast {
        Ok(envelope) => envelope,
        Err(_) => {
            let slow: Envelope<'_, RawRequest<'_>> = serde_json::from_slice(body)
                .map_err(|e| BadRequest(format!("body is not an AdmissionReview: {e}")))?;
            Envelope {
                api_version: slow.api_version,
                kind: slow.kind,
                request: slow.request.map(|raw| ReadRequest { raw, read: None }),
            }
        }
    };
    let api_version = envelope.api_version.as_deref().unwrap_or_default();
    let kind = envelope.kind.as_deref().unwrap_or_default();
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(BadRequest(format!(
            "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got {api_version:?} {kind:?}"
        )));
    }
    let Some(ReadRequest { raw, read }) = envelope.request else {
        return Err(BadRequest("the AdmissionReview has no request".into()));
    };
    let object = raw.object.filter(|o| o.get() != "null");
    if object.is_some_and(|o| !o.get().starts_with('{')) {
        return Err(BadRequest("request.object is not a JSON object".into()));
    }
    let old_object = raw.old_object.filter(|o| o.get().starts_with('{'));
    let request = Box::new(raw.into_request(api_version, kind));
    let objects = Objects {
        new: object,
        old: old_object,
        read,
    };
    Ok((request, objects))
}

pub use crate::metrics::Verdict;

struct Summary {
    verdict: Verdict,
    rules: String,
}

impl Summary {
    fn allowed(rules: impl Into<String>) -> Summary {
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

/// `request.object` and `request.oldObject`, as JSON text, or the object
/// already read (see [`ReadRequest`]).
struct Objects<'a> {
    new: Option<&'a RawValue>,
    old: Option<&'a RawValue>,
    read: Option<Workload>,
}

/// Why an object is admitted without being judged, for the decision log.
const DELETING: &str = "unjudged: being deleted";
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

/// `request.object` of our own kinds: a policy or exception being applied
/// is checked as the engine would compile it.
fn policy_object(
    endpoint: Endpoint,
    response: AdmissionResponse,
    kind: &str,
    object: &RawValue,
) -> (AdmissionResponse, Summary) {
    match endpoint {
        Endpoint::Validate => match serde_json::from_str::<Value>(object.get()) {
            // A policy on its way out only waits for its finalizers.
            Ok(object) if object.pointer("/metadata/deletionTimestamp").is_some() => {
                (response, Summary::allowed(DELETING))
            }
            Ok(object) => validate_policy_object(response, kind, object),
            Err(e) => invalid(response, format!("request.object: {e}")),
        },
        Endpoint::Mutate => (response, Summary::allowed("-")),
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

/// A refusal with the HTTP-style code and reason the apiserver shows.
fn refuse(
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

fn invalid(response: AdmissionResponse, message: String) -> (AdmissionResponse, Summary) {
    (
        refuse(response, 400, "BadRequest", message),
        Summary {
            verdict: Verdict::Invalid,
            rules: "-".into(),
        },
    )
}

fn rule_list(d: &Decision) -> String {
    if d.violations.is_empty() {
        return "-".into();
    }
    let mut rules: Vec<&str> = d.violations.iter().map(|v| v.rule.as_str()).collect();
    rules.dedup();
    rules.join(",")
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
    let warnings = warnings(worded.iter().map(|(r, m, f)| (*r, m.as_ref(), f.as_ref())));
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
        state.record(DecisionEvent {
            api_version: w.kind.api_version().into(),
            kind: w.kind.as_str().into(),
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            action: strictest.unwrap_or(Action::Warn),
            reason: EventReason::PolicyViolation,
            message: d
                .violations
                .iter()
                .filter(|v| v.action >= Action::Warn)
                .map(|v| format!("[{}] {}. Fix: {}", v.rule, v.message, v.fix))
                .collect::<Vec<_>>()
                .join("\n"),
        });
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
    let notes = warnings(changed.chain(not_changed));
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

/// One warning per rule: `[rule] message. Fix: fix` for a rule that found
/// one thing, `[rule] first; second (+N more: …)` for a rule that found
/// several (one per container, say), so a workload that breaks many rules
/// still gets a line for each. Every line is within the apiserver's
/// 256-character limit and all of them within 4 KiB: written to fit rather
/// than cut by the apiserver.
pub fn warnings<'a>(items: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> Vec<String> {
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
    let reserve = 120;
    for (i, (rule, group)) in groups.iter().enumerate() {
        let line = rule_warning(rule, group);
        if total + line.len() > WARNINGS_TOTAL_MAX - reserve {
            out.push(format!(
                "[waf-admission] {} more rule(s) not shown: run `waf-admission check` on this manifest",
                groups.len() - i
            ));
            break;
        }
        total += line.len();
        out.push(line);
    }
    out
}

fn rule_warning(rule: &str, group: &[(&str, &str)]) -> String {
    let fits = |s: &str| s.chars().count() <= WARNING_MAX;
    if let [(message, fix)] = group {
        let full = format!("[{rule}] {message}. Fix: {fix}");
        return if fits(&full) {
            full
        } else {
            shorten(&format!("[{rule}] {message}"), WARNING_MAX)
        };
    }
    // A fix shared by every finding (the mutating webhook's note, say) is
    // kept, and the messages fill the room before it.
    let shared_fix = group
        .iter()
        .all(|(_, fix)| *fix == group[0].1)
        .then(|| format!(". Fix: {}", group[0].1))
        .filter(|f| f.chars().count() <= WARNING_MAX / 2)
        .unwrap_or_default();
    // The longest tail: " (+NN more: run waf-admission check)".
    let room = WARNING_MAX - 40 - shared_fix.chars().count();
    let mut line = shorten(&format!("[{rule}] {}", group[0].0), room);
    let mut shown = 1;
    for (message, _) in &group[1..] {
        let longer = format!("{line}; {message}");
        if longer.chars().count() > room {
            break;
        }
        line = longer;
        shown += 1;
    }
    let hidden = group.len() - shown;
    if hidden > 0 {
        line.push_str(&format!(" (+{hidden} more: run waf-admission check)"));
    }
    line.push_str(&shared_fix);
    line
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

fn audit_annotations(d: &Decision) -> HashMap<String, String> {
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
    let mut out = format!(
        "{} {}/{} violates {} Well-Architected rule{} ({}):",
        w.kind,
        w.namespace,
        w.name,
        denials.len(),
        if denials.len() == 1 { "" } else { "s" },
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
        out.push_str("\n  Fix: ");
        out.push_str(&v.fix);
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

/// The webhook for the CRDs themselves: a policy or exception that the
/// engine would refuse is refused at `kubectl apply`, with the same words.
fn validate_policy_object(
    response: AdmissionResponse,
    kind: &str,
    object: Value,
) -> (AdmissionResponse, Summary) {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_owned();
    let at = format!("{kind} {name}");
    let result = match kind {
        "WellArchitectedPolicy" => typed::<WellArchitectedPolicy>(object, &at)
            .and_then(|p| Policy::compile(&p))
            .map(|_| ()),
        "WellArchitectedException" => typed::<WellArchitectedException>(object, &at)
            .and_then(|e| Exception::compile(&e, "default"))
            .map(|_| ()),
        _ => Ok(()),
    };
    match result {
        Ok(()) => (response, Summary::allowed("-")),
        Err(e) => (
            refuse(response, 422, "Invalid", e.to_string()),
            Summary {
                verdict: Verdict::Denied,
                rules: "policy".into(),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The review `kubectl apply` sends for a GPU Deployment, as the
    /// apiserver wrote it.
    fn applied() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/reviews/gpu-deployment-apply.json"
        ))
        .unwrap()
    }

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

    #[test]
    fn the_apiservers_review_has_its_object_read_on_the_way() {
        let text = applied();
        let envelope: Envelope<'_, ReadRequest<'_>> = serde_json::from_str(&text).unwrap();
        let request = envelope.request.unwrap();
        let read = request.read.expect("read in the envelope's pass");
        assert!(request.raw.object.is_none(), "not kept as text as well");
        assert_eq!(
            (read.kind, read.name.as_str()),
            (WorkloadKind::Deployment, "llm")
        );
        let slow = Workload::from_json_as(
            &serde_json::to_string(
                &serde_json::from_str::<Value>(&text).unwrap()["request"]["object"],
            )
            .unwrap(),
            "ml",
            "apps/v1",
            "Deployment",
        )
        .unwrap()
        .unwrap();
        assert_eq!(format!("{read:?}"), format!("{slow:?}"));

        // With `object` before `kind`, its type is not known yet: kept as text.
        let mut v: Value = serde_json::from_str(&text).unwrap();
        let request = v["request"].as_object_mut().unwrap();
        let object = request.remove("object").unwrap();
        let rest = serde_json::to_string(request).unwrap();
        let reordered = format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"object":{object},{}}}"#,
            &rest[1..]
        );
        let envelope: Envelope<'_, ReadRequest<'_>> = serde_json::from_str(&reordered).unwrap();
        let request = envelope.request.unwrap();
        assert!(request.read.is_none());
        assert!(request.raw.object.is_some());
    }

    #[test]
    fn an_object_that_does_not_read_fails_the_fast_pass_only() {
        let text = applied().replacen(
            "\"spec\":{\"replicas\":2,",
            "\"spec\":{\"replicas\":\"two\",",
            1,
        );
        assert!(
            text.contains("\"two\""),
            "the fixture's replicas line moved"
        );
        assert!(serde_json::from_str::<Envelope<'_, ReadRequest<'_>>>(&text).is_err());
        let slow: Envelope<'_, RawRequest<'_>> = serde_json::from_str(&text).unwrap();
        assert!(slow.request.unwrap().object.is_some());
    }

    /// The workload [`read`] finds in `body`, as Debug text.
    fn read_workload(body: &[u8]) -> Result<String, BadRequest> {
        let (_, objects) = read(body)?;
        let w = objects.read.expect("read in the envelope's pass");
        Ok(format!("{w:?}"))
    }

    #[test]
    fn a_body_read_as_text_gives_what_it_gave_read_as_bytes() {
        // Non-ASCII in a judged string: read without the per-string check,
        // the same workload as serde_json's reading of the bytes.
        let text = applied().replacen("\"app\":\"llm\"", "\"app\":\"llm-café\"", 1);
        assert!(text.contains("café"), "the fixture's labels moved");
        let as_bytes: Envelope<'_, ReadRequest<'_>> =
            serde_json::from_slice(text.as_bytes()).unwrap();
        let as_text = read_workload(text.as_bytes()).unwrap();
        assert_eq!(
            as_text,
            format!("{:?}", as_bytes.request.unwrap().read.unwrap())
        );
        assert!(as_text.contains("llm-café"));

        // A body that is not UTF-8 is read as bytes, as before: a stray byte
        // in a string that is stepped over (kubectl's last-applied copy)
        // changes nothing, one in a string that is read is refused, named.
        let base = applied();
        let clean = read_workload(base.as_bytes()).unwrap();
        let at = base.find("{\\\"apiVersion").expect("the last-applied copy");
        let mut stray = base.clone().into_bytes();
        stray.insert(at + 1, 0xFF);
        assert!(std::str::from_utf8(&stray).is_err());
        assert_eq!(read_workload(&stray).unwrap(), clean);
        let name = base
            .find("\"name\":\"llm\",\"image\"")
            .expect("the container");
        let mut named = base.into_bytes();
        named.insert(name + 10, 0xFF);
        let err = read(&named).err().expect("refused");
        assert!(err.0.contains("invalid unicode code point"), "{}", err.0);
    }

    #[test]
    fn warnings_fit_the_apiserver_limits_without_being_cut_by_it() {
        let long = "x ".repeat(400);
        let items: Vec<(&str, &str, &str)> = (0..60)
            .map(|_| ("zone-spread", long.as_str(), "fix it"))
            .collect();
        let w = warnings(items.into_iter());
        assert!(w.iter().all(|l| l.chars().count() <= WARNING_MAX), "{w:?}");
        assert!(w.iter().map(|l| l.len()).sum::<usize>() <= WARNINGS_TOTAL_MAX);
        assert!(w.iter().all(|l| l.starts_with('[')));
        assert_eq!(w.len(), 1, "one rule, one warning: {w:?}");
        assert!(w[0].contains("more: run waf-admission check"), "{w:?}");
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
        let w = warnings(items.into_iter());
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
        );
        assert_eq!(
            w,
            [
                "[probes] container \"a\" has no readinessProbe; container \"b\" has no readinessProbe",
                "[secret-env] container \"a\" sets HF_TOKEN to a Hugging Face token. Fix: rotate it",
            ]
        );
    }

    #[test]
    fn a_short_warning_keeps_its_fix() {
        let w = warnings([("autoscaler", "no HPA", "kubectl autoscale deployment x")].into_iter());
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
    }

    #[test]
    fn wrapped_lines_stay_within_100_columns() {
        let text = "word ".repeat(80);
        assert!(wrap(text.trim()).lines().all(|l| l.chars().count() <= WRAP));
    }
}
