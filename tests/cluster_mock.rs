//! The controller against kube's mocked API service (tower-test): it lists
//! and watches what it needs, copes with KEDA being absent and with Nodes
//! it may not list, takes its Lease, turns ready, puts the cluster's
//! policies in force, and writes status.

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

fn forbidden(resource: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": format!("{resource} is forbidden: User \"system:serviceaccount:waf-admission:waf-admission\" cannot list resource \"{resource}\" in API group \"\" at the cluster scope"),
        "details": {"kind": resource}})
}

/// The AI-serving resources' groups, whose CRDs this cluster lacks: the
/// controller looks for them and goes on without.
fn ai_group(path: &str) -> bool {
    ["serving.kserve.io", "leaderworkerset.x-k8s.io", "kaito.sh"]
        .iter()
        .any(|g| path.starts_with(&format!("/apis/{g}")))
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
        "message": "the server could not find the requested resource"})
}

/// The chart's ValidatingWebhookConfiguration, with its default rules
/// (every kind).
fn chart_webhook_configuration() -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
    "metadata": {"name": "waf-admission", "resourceVersion": "1"},
    "webhooks": [{"name": "validate.waf-admission.dev", "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": "waf-admission", "namespace": "waf-admission", "path": "/validate"}},
        "rules": [
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"], "scope": "Namespaced"},
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["pods", "pods/ephemeralcontainers", "replicationcontrollers"], "scope": "Namespaced"},
            {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["jobs", "cronjobs"], "scope": "Namespaced"},
            {"apiGroups": ["serving.kserve.io"], "apiVersions": ["v1beta1", "v1alpha1", "v1alpha2"],
             "operations": ["CREATE", "UPDATE"],
             "resources": ["inferenceservices", "llminferenceservices"], "scope": "Namespaced"},
            {"apiGroups": ["leaderworkerset.x-k8s.io"], "apiVersions": ["v1"],
             "operations": ["CREATE", "UPDATE"], "resources": ["leaderworkersets"], "scope": "Namespaced"},
            {"apiGroups": ["kaito.sh"], "apiVersions": ["v1beta1", "v1alpha1"],
             "operations": ["CREATE", "UPDATE"], "resources": ["workspaces", "inferencesets"],
             "scope": "Namespaced"}
        ]}]})
}

/// What the mock API server saw.
struct Seen {
    status_path: String,
    status_body: Value,
    lease_created: Value,
    requests: Vec<String>,
    /// The mock API server, to go on answering after this point.
    handle: Handle,
    _held_watches: Vec<mock::SendResponse<Response<Body>>>,
}

/// Answers the controller until it writes a policy's Ready condition.
/// WATCH requests are held open; KEDA and the Lease do not exist yet; DRA
/// (resource.k8s.io/v1) is served only with `claim_templates` given; Nodes
/// are listed as `nodes`, or forbidden (as without the chart's RBAC) when
/// None.
async fn serve_until_ready_condition(
    mut handle: Handle,
    policies: Value,
    webhooks: Value,
    claim_templates: Option<Value>,
    nodes: Option<Value>,
) -> Seen {
    let mut held = Vec::new();
    let mut requests = Vec::new();
    let mut lease_created = Value::Null;
    loop {
        let (request, send) = handle
            .next_request()
            .await
            .expect("the controller keeps asking");
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        requests.push(format!("{method} {path}"));
        if query.contains("watch=true") {
            held.push(send);
            continue;
        }
        let lists = [
            (
                "/apis/waf-admission.dev/v1alpha1/wellarchitectedpolicies",
                "WellArchitectedPolicy",
                "waf-admission.dev/v1alpha1",
                policies.clone(),
            ),
            (
                "/apis/waf-admission.dev/v1alpha1/wellarchitectedexceptions",
                "WellArchitectedException",
                "waf-admission.dev/v1alpha1",
                json!([]),
            ),
            ("/api/v1/namespaces", "Namespace", "v1", json!([])),
            (
                "/apis/autoscaling/v2/horizontalpodautoscalers",
                "HorizontalPodAutoscaler",
                "autoscaling/v2",
                json!([]),
            ),
            (
                "/apis/policy/v1/poddisruptionbudgets",
                "PodDisruptionBudget",
                "policy/v1",
                json!([]),
            ),
            (
                "/apis/apps/v1/deployments",
                "Deployment",
                "apps/v1",
                json!([]),
            ),
            (
                "/apis/apps/v1/statefulsets",
                "StatefulSet",
                "apps/v1",
                json!([]),
            ),
            (
                "/apis/apps/v1/daemonsets",
                "DaemonSet",
                "apps/v1",
                json!([]),
            ),
            (
                "/apis/apps/v1/replicasets",
                "ReplicaSet",
                "apps/v1",
                json!([]),
            ),
            ("/apis/batch/v1/jobs", "Job", "batch/v1", json!([])),
            ("/apis/batch/v1/cronjobs", "CronJob", "batch/v1", json!([])),
            ("/api/v1/pods", "Pod", "v1", json!([])),
            (
                "/api/v1/replicationcontrollers",
                "ReplicationController",
                "v1",
                json!([]),
            ),
            (
                "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
                "ValidatingWebhookConfiguration",
                "admissionregistration.k8s.io/v1",
                webhooks.clone(),
            ),
        ];
        if let Some(templates) = &claim_templates
            && method == Method::GET
        {
            let resource = |name: &str, kind: &str| {
                json!({"name": name, "singularName": "", "namespaced": true, "kind": kind,
                    "verbs": ["get", "list", "watch"]})
            };
            let body = match path.as_str() {
                "/apis/resource.k8s.io/v1" => Some(json!({"kind": "APIResourceList",
                    "apiVersion": "v1", "groupVersion": "resource.k8s.io/v1", "resources": [
                        resource("resourceclaims", "ResourceClaim"),
                        resource("resourceclaimtemplates", "ResourceClaimTemplate")]})),
                "/apis/resource.k8s.io/v1/resourceclaims" => {
                    Some(list("ResourceClaim", "resource.k8s.io/v1", json!([])))
                }
                "/apis/resource.k8s.io/v1/resourceclaimtemplates" => Some(list(
                    "ResourceClaimTemplate",
                    "resource.k8s.io/v1",
                    templates.clone(),
                )),
                _ => None,
            };
            if let Some(body) = body {
                respond(send, StatusCode::OK, &body);
                continue;
            }
        }
        if method == Method::GET && path == "/api/v1/nodes" {
            match &nodes {
                Some(items) => respond(send, StatusCode::OK, &list("Node", "v1", items.clone())),
                None => respond(send, StatusCode::FORBIDDEN, &forbidden("nodes")),
            }
            continue;
        }
        if method == Method::GET
            && let Some((_, kind, api_version, items)) = lists.iter().find(|l| l.0 == path)
        {
            respond(
                send,
                StatusCode::OK,
                &list(kind, api_version, items.clone()),
            );
            continue;
        }
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match method {
            Method::GET
                if path.starts_with("/apis/keda.sh")
                    || path.starts_with("/apis/resource.k8s.io")
                    || ai_group(&path)
                    || path.contains("/leases/") =>
            {
                respond(send, StatusCode::NOT_FOUND, &not_found())
            }
            Method::POST if path.ends_with("/leases") => {
                lease_created = body.clone();
                respond(send, StatusCode::CREATED, &body);
            }
            Method::POST if path.ends_with("/events") => respond(send, StatusCode::CREATED, &body),
            Method::PATCH if path.ends_with("/status") => {
                respond(send, StatusCode::OK, &policies[0]);
                // The audit writes status.audit; the Ready condition is what we wait for.
                if body["status"].get("conditions").is_some() {
                    return Seen {
                        status_path: path,
                        status_body: body,
                        lease_created,
                        requests,
                        handle,
                        _held_watches: held,
                    };
                }
            }
            _ => panic!("unexpected request {method} {path}"),
        }
    }
}

fn options(stopping: tokio::sync::watch::Receiver<bool>) -> ClusterOptions {
    ClusterOptions {
        pod_name: "test-0".into(),
        namespace: "waf-admission".into(),
        lease_name: "waf-admission-controller".into(),
        audit_interval: Duration::from_secs(300),
        stopping,
        lease_released: Arc::new(tokio::sync::Notify::new()),
        metrics: Arc::new(waf_admission::webhook::metrics::Metrics::new()),
        reports: waf_admission::cluster::reports::ReportFormat::Off,
        secrets: vec![],
        prices_configmap: None,
    }
}

async fn run_against(policies: Value) -> (Arc<State>, Seen) {
    let (_, stopping) = tokio::sync::watch::channel(false);
    run_with(policies, options(stopping)).await
}

async fn run_with(policies: Value, options: ClusterOptions) -> (Arc<State>, Seen) {
    run_served(
        policies,
        options,
        json!([chart_webhook_configuration()]),
        None,
        Some(json!([])),
    )
    .await
}

async fn run_with_webhooks(
    policies: Value,
    options: ClusterOptions,
    webhooks: Value,
) -> (Arc<State>, Seen) {
    run_served(policies, options, webhooks, None, Some(json!([]))).await
}

async fn run_served(
    policies: Value,
    options: ClusterOptions,
    webhooks: Value,
    claim_templates: Option<Value>,
    nodes: Option<Value>,
) -> (Arc<State>, Seen) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let state = Arc::new(State::for_cluster(tx));
    assert!(!state.is_ready());
    tokio::spawn(cluster::run(client, state.clone(), rx, options));
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        serve_until_ready_condition(handle, policies, webhooks, claim_templates, nodes),
    )
    .await
    .expect("the controller wrote a policy status within 10 s");
    (state, seen)
}

#[tokio::test]
async fn the_controller_syncs_takes_its_lease_applies_policies_and_writes_status() {
    let policies = json!([
        {"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
         "metadata": {"name": "inference-baseline", "generation": 1, "resourceVersion": "1"},
         "spec": {"action": "Warn"}}
    ]);
    let (state, seen) = run_against(policies).await;
    assert_eq!(
        seen.status_path,
        "/apis/waf-admission.dev/v1alpha1/wellarchitectedpolicies/inference-baseline/status"
    );
    assert_eq!(seen.status_body["status"]["observedGeneration"], 1);
    let ready = &seen.status_body["status"]["conditions"][0];
    assert_eq!(
        (
            ready["type"].as_str(),
            ready["status"].as_str(),
            ready["reason"].as_str()
        ),
        (Some("Ready"), Some("True"), Some("Valid"))
    );
    // Status is written only by the Lease holder.
    assert_eq!(
        seen.lease_created["metadata"]["name"],
        "waf-admission-controller"
    );
    assert_eq!(seen.lease_created["spec"]["holderIdentity"], "test-0");
    assert_eq!(seen.lease_created["spec"]["leaseDurationSeconds"], 15);
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
        "poddisruptionbudgets",
        "validatingwebhookconfigurations",
        "keda.sh",
        "POST /apis/coordination.k8s.io/v1/namespaces/waf-admission/leases",
    ] {
        assert!(
            seen.requests.iter().any(|s| s.contains(needed)),
            "never asked for {needed}: {:?}",
            seen.requests
        );
    }
}

/// Where resource.k8s.io/v1 is served, ResourceClaims and
/// ResourceClaimTemplates are watched and the templates reach the
/// snapshot: a Deployment claiming one of class gpu.nvidia.com is a GPU
/// workload. Where it is not (every other test here), the controller still
/// becomes ready.
#[tokio::test]
async fn dra_claim_templates_are_watched_where_served_and_make_gpu_workloads() {
    let policies = json!([
        {"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
         "metadata": {"name": "inference-baseline", "generation": 1, "resourceVersion": "1"},
         "spec": {"action": "Warn"}}
    ]);
    let templates = json!([
        {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
         "metadata": {"name": "one-gpu", "namespace": "ml", "resourceVersion": "1"},
         "spec": {"spec": {"devices": {"requests": [
             {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}}]}}}}
    ]);
    let (_, stopping) = tokio::sync::watch::channel(false);
    let (state, seen) = run_served(
        policies,
        options(stopping),
        json!([chart_webhook_configuration()]),
        Some(templates),
        Some(json!([])),
    )
    .await;
    for needed in [
        "GET /apis/resource.k8s.io/v1/resourceclaims",
        "GET /apis/resource.k8s.io/v1/resourceclaimtemplates",
    ] {
        assert!(
            seen.requests.iter().any(|s| s == needed),
            "never asked for {needed}: {:?}",
            seen.requests
        );
    }
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "ml"},
        "spec": {"selector": {"matchLabels": {"app": "chat"}},
            "template": {"metadata": {"labels": {"app": "chat"}}, "spec": {
                "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}],
                "containers": [{"name": "engine", "image": "contoso.azurecr.io/chat:1"}]}}}});
    let snapshot = state.load();
    let w = waf_admission::workload::Workload::from_value(deployment, "default")
        .unwrap()
        .unwrap();
    let d = waf_admission::judge(
        &snapshot.policies,
        &w,
        &snapshot.context,
        jiff::Timestamp::now(),
    );
    assert_eq!(
        d.inference.as_deref(),
        Some(
            "the pod claims a GPU through DRA (ResourceClaimTemplate \"one-gpu\", device class \
             gpu.nvidia.com)"
        )
    );
}

/// A GPU Node as the API server lists it: what the engine reads (labels,
/// taint, allocatable) and a kubelet's status besides.
fn gpu_node() -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "gpu-1", "resourceVersion": "7",
            "labels": {"nvidia.com/gpu.memory": "24576", "topology.kubernetes.io/zone": "1",
                "node.kubernetes.io/instance-type": "Standard_NC24ads_A100_v4"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
        "status": {"allocatable": {"nvidia.com/gpu": "1", "cpu": "24"},
            "capacity": {"nvidia.com/gpu": "1", "cpu": "24"},
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.7"}]}})
}

/// One policy in Warn, as the node tests need.
fn one_warn_policy() -> serde_json::Value {
    json!([
        {"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
         "metadata": {"name": "inference-baseline", "generation": 1, "resourceVersion": "1"},
         "spec": {"action": "Warn"}}
    ])
}

#[tokio::test]
async fn the_cluster_nodes_reach_the_snapshot_and_are_counted() {
    let (_, stopping) = tokio::sync::watch::channel(false);
    let opts = options(stopping);
    let metrics = opts.metrics.clone();
    let (state, seen) = run_served(
        one_warn_policy(),
        opts,
        json!([chart_webhook_configuration()]),
        None,
        Some(json!([gpu_node()])),
    )
    .await;
    assert!(state.is_ready());
    let snapshot = state.load();
    let nodes = snapshot.context.nodes();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].name, "gpu-1");
    assert_eq!(nodes[0].labels["nvidia.com/gpu.memory"], "24576");
    assert_eq!(nodes[0].taints[0].key, "sku");
    assert_eq!(nodes[0].allocatable["nvidia.com/gpu"], "1");
    assert!(
        metrics.encode().contains("waf_admission_cluster_nodes 1\n"),
        "{}",
        metrics.encode()
    );
    assert!(
        seen.requests.iter().any(|r| r == "GET /api/v1/nodes"),
        "{:?}",
        seen.requests
    );
}

#[tokio::test]
async fn without_rbac_on_nodes_the_controller_turns_ready_and_judges_without_them() {
    let (_, stopping) = tokio::sync::watch::channel(false);
    let opts = options(stopping);
    let metrics = opts.metrics.clone();
    let (state, seen) = run_served(
        one_warn_policy(),
        opts,
        json!([chart_webhook_configuration()]),
        None,
        None,
    )
    .await;
    assert!(state.is_ready(), "ready without the Nodes");
    let snapshot = state.load();
    assert!(snapshot.context.nodes().is_empty());
    assert_eq!(snapshot.policies.policies().len(), 1, "the policy in force");
    assert!(metrics.encode().contains("waf_admission_cluster_nodes 0\n"));
    // Asked once; no watch retrying a list it may not make.
    assert_eq!(
        seen.requests
            .iter()
            .filter(|r| r.contains("/api/v1/nodes"))
            .count(),
        1,
        "{:?}",
        seen.requests
    );
}

#[tokio::test]
async fn a_policy_that_cannot_be_used_is_marked_not_ready_with_the_reason() {
    let policies = json!([
        {"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
         "metadata": {"name": "broken", "generation": 4, "resourceVersion": "1"},
         "spec": {"rules": {"imageProvenance": {"allowedRegistries": []}}}}
    ]);
    let (state, seen) = run_against(policies).await;
    let ready = &seen.status_body["status"]["conditions"][0];
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

#[tokio::test]
async fn a_policy_listing_a_kind_the_webhook_is_not_sent_is_not_ready_and_names_it() {
    let policies = json!([
        {"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
         "metadata": {"name": "jobs-too", "generation": 2, "resourceVersion": "1"},
         "spec": {"action": "Warn", "match": {"kinds": ["Deployment", "Job", "CronJob"]}}}
    ]);
    // A platform team took batch out of the chart's rules.
    let mut configuration = chart_webhook_configuration();
    configuration["webhooks"][0]["rules"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["apiGroups"] != json!(["batch"]));
    let (_, stopping) = tokio::sync::watch::channel(false);
    let (state, seen) =
        run_with_webhooks(policies, options(stopping), json!([configuration])).await;
    let ready = &seen.status_body["status"]["conditions"][0];
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("KindsNotSent"))
    );
    assert_eq!(
        ready["message"],
        "the webhook configuration \"waf-admission\" does not send Job, CronJob: add them to \
         its rules (the chart sends every kind by default)"
    );
    assert_eq!(
        state.load().policies.policies().len(),
        1,
        "still in force for the Deployments it is sent"
    );
}

#[tokio::test]
async fn on_shutdown_the_lease_holder_releases_its_lease() {
    let policies = json!([
        {"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
         "metadata": {"name": "inference-baseline", "generation": 1, "resourceVersion": "1"},
         "spec": {"action": "Warn"}}
    ]);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let opts = options(stopping);
    let released = opts.lease_released.clone();
    let (_state, seen) = run_with(policies, opts).await;
    let mut lease = seen.lease_created.clone();
    lease["metadata"]["resourceVersion"] = json!("7");
    let mut handle = seen.handle;
    stop.send(true).unwrap();
    let put = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (request, send) = handle.next_request().await.expect("asks on");
            let (method, path) = (request.method().clone(), request.uri().path().to_owned());
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match method {
                Method::GET if path.ends_with("/leases/waf-admission-controller") => {
                    respond(send, StatusCode::OK, &lease)
                }
                Method::PUT if path.ends_with("/leases/waf-admission-controller") => {
                    respond(send, StatusCode::OK, &body);
                    return body;
                }
                Method::PATCH if path.ends_with("/status") => {
                    respond(send, StatusCode::OK, &json!({}))
                }
                _ => panic!("unexpected request {method} {path}"),
            }
        }
    })
    .await
    .expect("the Lease was released within 10 s");
    assert!(put["spec"].get("holderIdentity").is_none(), "{put}");
    assert_eq!(put["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(
        put["metadata"]["resourceVersion"], "7",
        "written against the version read, so a new holder's write wins"
    );
    tokio::time::timeout(Duration::from_secs(5), released.notified())
        .await
        .expect("the process is told the Lease is released");
}

#[tokio::test]
async fn a_policy_that_cannot_be_read_is_reported_and_skipped_and_the_others_apply() {
    // "action: 5" cannot be read as a WellArchitectedPolicy: without the
    // deserialize guard the whole list would fail and nothing would sync.
    let policies = json!([
        {"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
         "metadata": {"name": "good", "generation": 1, "resourceVersion": "1", "uid": "a"},
         "spec": {"action": "Warn"}},
        {"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
         "metadata": {"name": "unreadable", "generation": 7, "resourceVersion": "2", "uid": "b"},
         "spec": {"action": 5}}
    ]);
    let metrics = Arc::new(waf_admission::webhook::metrics::Metrics::new());
    let (_, stopping) = tokio::sync::watch::channel(false);
    let mut opts = options(stopping);
    opts.metrics = metrics.clone();
    let (state, seen) = run_with(policies.clone(), opts).await;
    assert!(
        seen.status_path.ends_with("/good/status"),
        "{}",
        seen.status_path
    );
    assert!(
        state.is_ready(),
        "one unreadable policy keeps no replica unready"
    );
    let names: Vec<String> = state
        .load()
        .policies
        .policies()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(names, ["good"]);
    let mut handle = seen.handle;
    let mut status = Value::Null;
    let mut event = Value::Null;
    tokio::time::timeout(Duration::from_secs(10), async {
        while status.is_null() || event.is_null() {
            let (request, send) = handle.next_request().await.expect("asks on");
            let (method, path) = (request.method().clone(), request.uri().path().to_owned());
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match method {
                Method::PATCH if path.ends_with("/unreadable/status") => {
                    status = body;
                    respond(send, StatusCode::OK, &policies[1]);
                }
                Method::PATCH if path.ends_with("/status") => {
                    respond(send, StatusCode::OK, &policies[0])
                }
                Method::POST if path.ends_with("/events") => {
                    if body["reason"] == "Unusable" {
                        event = body.clone();
                    }
                    respond(send, StatusCode::CREATED, &body);
                }
                Method::GET if path.contains("/leases/") || ai_group(&path) => {
                    respond(send, StatusCode::NOT_FOUND, &not_found())
                }
                Method::POST if path.ends_with("/leases") => {
                    respond(send, StatusCode::CREATED, &body)
                }
                _ => panic!("unexpected request {method} {path}"),
            }
        }
    })
    .await
    .expect("the unreadable policy's status and Event within 10 s");
    let ready = &status["status"]["conditions"][0];
    assert_eq!(ready["status"], "False");
    assert_eq!(status["status"]["observedGeneration"], 7);
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.starts_with("refused: cannot be read: "),
        "{message}"
    );
    assert_eq!(event["regarding"]["name"], "unreadable");
    assert_eq!(event["action"], "Skipped");
    let text = metrics.encode();
    assert!(
        text.contains("waf_admission_unreadable_objects{kind=\"WellArchitectedPolicy\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_background_task_that_ends_ends_the_controller_naming_it() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    // An API server that serves nothing: watches back off and retry, KEDA
    // is absent, no task ends by itself.
    tokio::spawn(async move {
        while let Some((_, send)) = handle.next_request().await {
            respond(send, StatusCode::NOT_FOUND, &not_found());
        }
    });
    // The Event publisher's channel closes at once: that task ends.
    let (_, closed) = tokio::sync::mpsc::channel(1);
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let state = Arc::new(State::for_cluster(tx));
    let (_, stopping) = tokio::sync::watch::channel(false);
    let ended = tokio::time::timeout(
        Duration::from_secs(10),
        cluster::run(client, state, closed, options(stopping)),
    )
    .await
    .expect("the controller returns when a task ends");
    assert_eq!(ended, "Event publisher ended");
}

#[tokio::test]
async fn the_lease_holder_exports_its_audit_as_metrics() {
    // The dashboard's audit panels and the audit alert read these; only the
    // cluster path sets them (tests/observability.rs lists them as such).
    let policies = json!([
        {"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
         "metadata": {"name": "inference-baseline", "generation": 1, "resourceVersion": "1"},
         "spec": {"action": "Warn"}}
    ]);
    let (_, stopping) = tokio::sync::watch::channel(false);
    let mut opts = options(stopping);
    opts.audit_interval = Duration::from_millis(50);
    let metrics = opts.metrics.clone();
    let (_state, seen) = run_with(policies, opts).await;
    // The gauges are set when the run has judged, before its status writes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics.encode();
        let ran = !text.contains("waf_admission_audit_last_run_timestamp_seconds 0\n");
        if ran {
            assert!(
                text.contains("waf_admission_audit_workloads{policy=\"inference-baseline\"} 0"),
                "{text}"
            );
            assert!(
                text.contains("waf_admission_audit_violations{policy=\"inference-baseline\"} 0")
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit run exported within 10 s: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(seen);
}
