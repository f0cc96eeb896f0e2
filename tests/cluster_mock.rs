//! The controller against kube's mocked API service (tower-test): it lists
//! and watches what it needs, copes with KEDA being absent, turns ready,
//! puts the cluster's policies in force, and writes each policy's status.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;
use waf_admission::cluster::{self, ClusterOptions};
use waf_admission::state::State;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn list(kind: &str, api_version: &str, items: Value) -> Value {
    json!({"apiVersion": api_version, "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": "1"}, "items": items})
}

fn respond(send: mock::SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    send.send_response(response);
}

/// Answers the controller's requests until it writes a policy status;
/// returns that PATCH's path and body. WATCH requests are held open.
async fn serve_until_status_patch(
    mut handle: Handle,
    policies: Value,
) -> (String, Value, Vec<String>) {
    let mut held = Vec::new();
    let mut seen = Vec::new();
    loop {
        let (request, send) = handle
            .next_request()
            .await
            .expect("the controller keeps asking");
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        seen.push(format!("{} {path}", request.method()));
        if query.contains("watch=true") {
            held.push(send);
            continue;
        }
        match (request.method().clone(), path.as_str()) {
            (Method::GET, "/apis/waf-admission.dev/v1alpha1/wellarchitectedpolicies") => respond(
                send,
                StatusCode::OK,
                &list(
                    "WellArchitectedPolicy",
                    "waf-admission.dev/v1alpha1",
                    policies.clone(),
                ),
            ),
            (Method::GET, "/apis/waf-admission.dev/v1alpha1/wellarchitectedexceptions") => respond(
                send,
                StatusCode::OK,
                &list(
                    "WellArchitectedException",
                    "waf-admission.dev/v1alpha1",
                    json!([]),
                ),
            ),
            (Method::GET, "/api/v1/namespaces") => {
                respond(send, StatusCode::OK, &list("Namespace", "v1", json!([])))
            }
            (Method::GET, "/apis/autoscaling/v2/horizontalpodautoscalers") => respond(
                send,
                StatusCode::OK,
                &list("HorizontalPodAutoscaler", "autoscaling/v2", json!([])),
            ),
            (Method::GET, p) if p.starts_with("/apis/keda.sh") => respond(
                send,
                StatusCode::NOT_FOUND,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "the server could not find the requested resource"}),
            ),
            (Method::PATCH, p) if p.ends_with("/status") => {
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let body: Value = serde_json::from_slice(&body).unwrap();
                respond(send, StatusCode::OK, &policies[0]);
                return (p.to_owned(), body, seen);
            }
            (method, p) => panic!("unexpected request {method} {p}"),
        }
    }
}

#[tokio::test]
async fn the_controller_syncs_turns_ready_applies_policies_and_writes_status() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let state = Arc::new(State::for_cluster(tx));
    assert!(!state.is_ready());
    let policies = json!([
        {"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
         "metadata": {"name": "inference-baseline", "generation": 1, "resourceVersion": "1"},
         "spec": {"action": "Warn"}}
    ]);
    tokio::spawn(cluster::run(
        client,
        state.clone(),
        rx,
        ClusterOptions {
            pod_name: "test-0".into(),
        },
    ));
    let (path, body, seen) = tokio::time::timeout(
        Duration::from_secs(10),
        serve_until_status_patch(handle, policies),
    )
    .await
    .expect("the controller wrote a status within 10 s");

    assert_eq!(
        path,
        "/apis/waf-admission.dev/v1alpha1/wellarchitectedpolicies/inference-baseline/status"
    );
    assert_eq!(body["status"]["observedGeneration"], 1);
    let ready = &body["status"]["conditions"][0];
    assert_eq!(
        (
            ready["type"].as_str(),
            ready["status"].as_str(),
            ready["reason"].as_str()
        ),
        (Some("Ready"), Some("True"), Some("Valid"))
    );
    // The snapshot was stored before the status was written.
    assert!(state.is_ready());
    let snapshot = state.load();
    assert_eq!(snapshot.policies.policies().len(), 1);
    assert_eq!(snapshot.policies.policies()[0].name, "inference-baseline");
    for needed in [
        "wellarchitectedpolicies",
        "wellarchitectedexceptions",
        "/api/v1/namespaces",
        "horizontalpodautoscalers",
        "keda.sh",
    ] {
        assert!(
            seen.iter().any(|s| s.contains(needed)),
            "never asked for {needed}: {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_policy_that_cannot_be_used_is_marked_not_ready_with_the_reason() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let state = Arc::new(State::for_cluster(tx));
    let policies = json!([
        {"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
         "metadata": {"name": "broken", "generation": 4, "resourceVersion": "1"},
         "spec": {"rules": {"imageProvenance": {"allowedRegistries": []}}}}
    ]);
    tokio::spawn(cluster::run(
        client,
        state.clone(),
        rx,
        ClusterOptions {
            pod_name: "test-0".into(),
        },
    ));
    let (_, body, _) = tokio::time::timeout(
        Duration::from_secs(10),
        serve_until_status_patch(handle, policies),
    )
    .await
    .expect("status written");
    let ready = &body["status"]["conditions"][0];
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "Invalid");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("allowedRegistries")
    );
    assert!(
        state.is_ready(),
        "one bad policy does not keep the webhook unready"
    );
    assert!(
        state.load().policies.is_empty(),
        "the refused policy is not in force"
    );
}
