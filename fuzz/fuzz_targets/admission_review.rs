//! AdmissionReview bytes → the webhook's answer, for /validate and /mutate.
//!
//! Calls the handler's core (`webhook::admission::review`, then `encode`)
//! rather than the axum router: the router catches panics and answers 500,
//! which would hide from the fuzzer exactly what it is looking for.
//!
//! Input: a body starting with `{` is sent as it is (the whole review is
//! hostile). Anything else is a header byte (operation, dry run, kind,
//! subresource), a byte choosing the policy set, and a manifest text (JSON or YAML, as `check`
//! reads it) whose first object is `request.object` and second, on UPDATE,
//! `oldObject`: a well-formed review around a hostile object.
//!
//! Invariants: no panic; a bad body is an `Err`, never a panic; an answer
//! echoes the request's uid, encodes to an AdmissionReview, carries no
//! patch from /validate, a patch from /mutate that applies to the object,
//! a denial with a message and a 4xx code, and warnings within the
//! apiserver's limits.
#![no_main]

mod common;

use std::sync::OnceLock;

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use waf_admission::state::State;
use waf_admission::webhook::admission::{self, Endpoint, WARNING_MAX, WARNINGS_TOTAL_MAX};
use waf_admission::webhook::metrics::Metrics;

fn states() -> &'static [State] {
    static STATES: OnceLock<Vec<State>> = OnceLock::new();
    STATES.get_or_init(|| {
        common::policy_sets()
            .iter()
            .map(|(_, set)| State::standalone(set.clone()))
            .collect()
    })
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

const KINDS: [(&str, &str, &str, &str); 8] = [
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("", "v1", "Pod", "pods"),
    ("apps", "v1", "ReplicaSet", "replicasets"),
    ("batch", "v1", "Job", "jobs"),
    ("batch", "v1", "CronJob", "cronjobs"),
    (
        "waf-admission.dev",
        "v1alpha1",
        "WellArchitectedPolicy",
        "wellarchitectedpolicies",
    ),
    (
        "waf-admission.dev",
        "v1alpha1",
        "WellArchitectedException",
        "wellarchitectedexceptions",
    ),
];

/// A review around fuzzed objects, and the policy set to judge with.
fn wrap(header: u8, set: u8, text: &str) -> Option<(Vec<u8>, usize)> {
    let mut objects = common::objects(text).into_iter();
    let object = objects.next()?;
    let old = objects.next();
    let operation = ["CREATE", "UPDATE", "DELETE", "CONNECT"][usize::from(header & 3)];
    let dry_run = header & 4 != 0;
    let (group, version, kind, resource) = KINDS[usize::from(header >> 3) % KINDS.len()];
    let ephemeral = header & 0x80 != 0;
    let set = usize::from(set) % states().len();
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("ml")
        .to_owned();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("fuzzed")
        .to_owned();
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    let mut request = json!({
        "uid": "3f2d8a4e-fuzz-uid",
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": name, "namespace": namespace, "operation": operation,
        "userInfo": {"username": "fuzzer", "groups": ["system:authenticated"]},
        "object": object, "dryRun": dry_run,
    });
    if ephemeral {
        request["subResource"] = json!("ephemeralcontainers");
    }
    if operation == "UPDATE" {
        request["oldObject"] = old.unwrap_or(Value::Null);
    }
    let review =
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
    Some((serde_json::to_vec(&review).ok()?, set))
}

fn check(endpoint: Endpoint, body: &[u8], state: &State) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let answer = admission::review(endpoint, body, state, metrics(), None, deadline, common::now());
    let Ok(review) = ready(answer) else {
        return;
    };
    // serde_json skips unknown fields without checking their UTF-8, so a
    // review that was read is not always one `Value` can hold; the uid and
    // the object are then checked only where they can be read back.
    let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let response = review.response.as_ref().expect("an answer has a response");
    if let Some(uid) = sent.pointer("/request/uid").and_then(Value::as_str) {
        assert_eq!(response.uid, uid, "the answer echoes the request's uid");
    }
    let encoded = admission::encode(&review).expect("an answer encodes");
    let back: Value = serde_json::from_slice(&encoded).expect("the encoded answer is JSON");
    assert_eq!(back["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(back["kind"], "AdmissionReview");
    assert_eq!(
        back["response"]["uid"].as_str(),
        Some(response.uid.as_str())
    );

    if !response.allowed {
        assert!(
            !response.result.message.is_empty(),
            "a refusal says why: {encoded:?}"
        );
        assert!(
            (400..500).contains(&response.result.code),
            "a refusal is a 4xx, never a 5xx that triggers failurePolicy: {}",
            response.result.code
        );
    }
    if let Some(warnings) = &response.warnings {
        let total: usize = warnings.iter().map(String::len).sum();
        assert!(total <= WARNINGS_TOTAL_MAX, "warnings total {total} bytes");
        for w in warnings {
            assert!(w.chars().count() <= WARNING_MAX, "warning too long: {w:?}");
        }
    }
    match endpoint {
        Endpoint::Validate => assert!(response.patch.is_none(), "/validate never patches"),
        Endpoint::Mutate => {
            let Some(b64) = back["response"]["patch"].as_str() else {
                return;
            };
            assert!(response.allowed, "/mutate admits what it patches");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("the patch is base64");
            let patch: json_patch::Patch =
                serde_json::from_slice(&bytes).expect("the patch is a JSON Patch");
            let Some(mut object) = sent.pointer("/request/object").cloned() else {
                return;
            };
            json_patch::patch(&mut object, &patch)
                .unwrap_or_else(|e| panic!("the patch applies to request.object: {e}"));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'{') {
        for state in states() {
            check(Endpoint::Validate, data, state);
            check(Endpoint::Mutate, data, state);
        }
        return;
    }
    let [header, set, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Some((body, set)) = wrap(*header, *set, text) else {
        return;
    };
    check(Endpoint::Validate, &body, &states()[set]);
    check(Endpoint::Mutate, &body, &states()[set]);
});

/// The review's answer: no policy here asks a registry, so it never waits.
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the review waited, with no registry to wait on"),
    }
}
