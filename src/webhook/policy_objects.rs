//! The webhook for our own kinds: a WellArchitectedPolicy or
//! WellArchitectedException that the engine would refuse is refused at
//! `kubectl apply`, with the engine's words.

use kube::core::admission::AdmissionResponse;
use serde_json::Value;
use serde_json::value::RawValue;

use super::admission::{DELETING, Endpoint, Summary, Verdict};
use super::answer::{invalid, refuse};
use crate::context::Exception;
use crate::policy::compiled::Policy;
use crate::policy::{WellArchitectedException, WellArchitectedPolicy};
use crate::workload::typed;

/// `request.object` of our own kinds: a policy or exception being applied
/// is checked as the engine would compile it.
pub(super) fn policy_object(
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
