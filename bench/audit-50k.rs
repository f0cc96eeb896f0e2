//! The background audit of many Deployments, measured in memory and time:
//! the whole controller (`cluster::run`, exactly as `serve` starts it)
//! against kube's mocked API service (tower-test, as `tests/cluster_mock.rs`
//! drives it), which serves N Deployments shaped as `kubectl apply` leaves
//! them — managedFields with fieldsV1, the last-applied annotation, the
//! apiserver's defaults and a status — in pages of the size the watcher
//! asks for, each page built when asked so the mock holds no copy of the
//! cluster. The audit is done when the ClusterReport is written: the last
//! write of a run (`ReportWriter::write` writes the namespaces' reports
//! first). Peak and current RSS come from /proc/self/status at that point.
//!
//!   cargo run --release --example audit-50k -- 50000
//!
//! Prints one summary line, `audit N deployments: peak rss=… MiB, …`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;
use waf_admission::cluster::texts::Cacheable;
use waf_admission::cluster::{self, ClusterOptions, reports::ReportFormat};
use waf_admission::state::State;
use waf_admission::webhook::metrics::Metrics;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACES: usize = 40;
const REPORTS: &str = "/apis/openreports.io/v1alpha1";

fn namespace(i: usize) -> String {
    format!("team-{:02}", i % NAMESPACES)
}

/// Deployment `i` as the user wrote it: most model serving (vLLM, Triton,
/// TGI images), every tenth a plain web server, every fifth with a GPU;
/// names and images unique so no string is shared between objects.
fn applied(i: usize) -> Value {
    let ns = namespace(i);
    let name = format!("model-{i:05}");
    let (image, component) = match i % 10 {
        0 => (format!("contoso.azurecr.io/web/nginx:1.27.{i}"), "web"),
        1..=4 => (
            format!("contoso{}.azurecr.io/{ns}/vllm-openai:v0.6.{i}", i % 7),
            "inference",
        ),
        5..=7 => (
            format!("nvcr.io/nvidia/tritonserver:24.{:02}-py3-{i}", i % 12),
            "model-server",
        ),
        _ => (
            format!("ghcr.io/huggingface/text-generation-inference:2.{i}"),
            "inference",
        ),
    };
    let gpu = i.is_multiple_of(5);
    let mut limits = json!({"memory": format!("{}Gi", 8 + i % 8)});
    if gpu {
        limits["nvidia.com/gpu"] = json!("1");
    }
    let mut pod = json!({
        "containers": [{
            "name": "server",
            "image": image,
            "args": ["--model", format!("/models/{name}"), "--port", "8000"],
            "env": [
                {"name": "MODEL_ID", "value": format!("org/model-{i}")},
                {"name": "HF_HOME", "value": "/cache"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
            ],
            "ports": [{"name": "http", "containerPort": 8000}],
            "resources": {
                "requests": {"cpu": format!("{}m", 500 + i % 1500), "memory": format!("{}Gi", 4 + i % 4)},
                "limits": limits
            },
            "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 10},
            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]
        }],
        "volumes": [{"name": "cache", "emptyDir": {}}]
    });
    if gpu {
        pod["nodeSelector"] = json!({"kubernetes.azure.com/accelerator": "nvidia"});
        pod["tolerations"] =
            json!([{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    }
    let labels = json!({"app": name, "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": format!("{ns}-serving")});
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": pod}
        }
    })
}

/// fieldsV1 of an object: every key as `f:key`, lists of named items as
/// `k:{"name":…}`, as the apiserver records them.
fn fields_v1(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let inner = match v {
                    Value::Object(_) => {
                        let mut f = fields_v1(v);
                        f.as_object_mut().map(|m| m.insert(".".into(), json!({})));
                        f
                    }
                    Value::Array(items) if items.iter().all(|i| i.get("name").is_some()) => {
                        let mut keyed = serde_json::Map::new();
                        for item in items {
                            let mut f = fields_v1(item);
                            f.as_object_mut().map(|m| m.insert(".".into(), json!({})));
                            let key = json!({"name": item["name"]}).to_string();
                            keyed.insert(format!("k:{key}"), f);
                        }
                        Value::Object(keyed)
                    }
                    _ => json!({}),
                };
                out.insert(format!("f:{k}"), inner);
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

/// Deployment `i` as the apiserver stores it after `kubectl apply`.
fn stored(i: usize) -> Value {
    let mut d = applied(i);
    let last_applied = d.to_string();
    let created = "2026-11-20T08:00:00Z";
    let mut applied_fields = fields_v1(&json!({"metadata": d["metadata"], "spec": d["spec"]}));
    applied_fields["f:metadata"]["f:annotations"] = json!({".": {},
        "f:kubectl.kubernetes.io/last-applied-configuration": {}});
    let status = json!({
        "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
        "readyReplicas": 2, "availableReplicas": 2,
        "conditions": [
            {"type": "Available", "status": "True", "lastUpdateTime": created,
             "lastTransitionTime": created, "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability."},
            {"type": "Progressing", "status": "True", "lastUpdateTime": created,
             "lastTransitionTime": created, "reason": "NewReplicaSetAvailable",
             "message": format!("ReplicaSet \"model-{i:05}-7d9f8c6b5\" has successfully progressed.")}
        ]
    });
    let mut status_fields = fields_v1(&json!({"status": status}));
    status_fields["f:metadata"] = json!({"f:annotations": {".": {},
        "f:deployment.kubernetes.io/revision": {}}});
    let metadata = d["metadata"].as_object_mut().expect("an object");
    metadata.insert(
        "annotations".into(),
        json!({"deployment.kubernetes.io/revision": "1",
            "kubectl.kubernetes.io/last-applied-configuration": format!("{last_applied}\n")}),
    );
    metadata.insert(
        "uid".into(),
        json!(format!("6f1c{i:08x}-3b2a-4c1d-9e8f-{:012x}", i * 7919)),
    );
    metadata.insert("resourceVersion".into(), json!((1000 + i).to_string()));
    metadata.insert("generation".into(), json!(1));
    metadata.insert("creationTimestamp".into(), json!(created));
    metadata.insert(
        "managedFields".into(),
        json!([
            {"manager": "kubectl-client-side-apply", "operation": "Update",
             "apiVersion": "apps/v1", "time": created, "fieldsType": "FieldsV1",
             "fieldsV1": applied_fields},
            {"manager": "kube-controller-manager", "operation": "Update",
             "apiVersion": "apps/v1", "time": created, "fieldsType": "FieldsV1",
             "fieldsV1": status_fields, "subresource": "status"}
        ]),
    );
    // The apiserver's defaults.
    let spec = &mut d["spec"];
    spec["strategy"] = json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}});
    spec["revisionHistoryLimit"] = json!(10);
    spec["progressDeadlineSeconds"] = json!(600);
    let pod = &mut spec["template"]["spec"];
    pod["restartPolicy"] = json!("Always");
    pod["terminationGracePeriodSeconds"] = json!(30);
    pod["dnsPolicy"] = json!("ClusterFirst");
    pod["securityContext"] = json!({});
    pod["schedulerName"] = json!("default-scheduler");
    let c = &mut pod["containers"][0];
    c["terminationMessagePath"] = json!("/dev/termination-log");
    c["terminationMessagePolicy"] = json!("File");
    c["imagePullPolicy"] = json!("IfNotPresent");
    c["ports"][0]["protocol"] = json!("TCP");
    let probe = &mut c["readinessProbe"];
    probe["httpGet"]["scheme"] = json!("HTTP");
    probe["timeoutSeconds"] = json!(1);
    probe["successThreshold"] = json!(1);
    probe["failureThreshold"] = json!(3);
    d["status"] = status;
    d
}

fn list(kind: &str, api_version: &str, items: Value, next: Option<String>) -> Value {
    let mut metadata = json!({"resourceVersion": "999999"});
    if let Some(next) = next {
        metadata["continue"] = json!(next);
    }
    json!({"apiVersion": api_version, "kind": format!("{kind}List"),
        "metadata": metadata, "items": items})
}

fn respond(send: mock::SendResponse<Response<Body>>, status: StatusCode, body: Vec<u8>) {
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("a response");
    send.send_response(response);
}

fn json_body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON")
}

fn not_found() -> Vec<u8> {
    json_body(
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// What the mock saw, up to the ClusterReport write.
#[derive(Default)]
struct Seen {
    deployment_bytes: usize,
    deployment_pages: usize,
    listed_at: Option<Instant>,
    /// VmRSS when the last page was served: the stores nearly full, no
    /// audit run yet.
    listed_rss: f64,
    audit_status: BTreeMap<String, Value>,
    reports_written: usize,
    report_bytes: usize,
    /// Watches stay open: a closed one would make the watcher list again.
    _held: Vec<mock::SendResponse<Response<Body>>>,
}

/// Answers the controller until the audit writes the ClusterReport.
async fn serve(mut handle: mock::Handle<Request<Body>, Response<Body>>, n: usize) -> Seen {
    let policy = json!({"apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedPolicy",
        "metadata": {"name": "inference-baseline", "generation": 1, "resourceVersion": "1", "uid": "p"},
        "spec": {"action": "Warn"}});
    let namespaces: Vec<Value> = (0..NAMESPACES)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace(i), "uid": format!("ns-{i}"), "resourceVersion": "1"}})
        })
        .collect();
    let mut seen = Seen::default();
    let mut held = Vec::new();
    let mut lease: Option<Value> = None;
    loop {
        let (request, send) = handle.next_request().await.expect("the controller asks on");
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        if query.contains("watch=true") {
            held.push(send);
            continue;
        }
        let body = request
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match (&method, path.as_str()) {
            (&Method::GET, "/apis/apps/v1/deployments") => {
                let limit = query_param(&query, "limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(n);
                let from: usize = query_param(&query, "continue")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let to = (from + limit).min(n);
                let items: Vec<Value> = (from..to).map(stored).collect();
                let next = (to < n).then(|| to.to_string());
                let bytes = json_body(&list("Deployment", "apps/v1", Value::Array(items), next));
                seen.deployment_bytes += bytes.len();
                seen.deployment_pages += 1;
                if to == n {
                    seen.listed_at = Some(Instant::now());
                    seen.listed_rss = proc_status_mib("VmRSS");
                }
                respond(send, StatusCode::OK, bytes);
            }
            (&Method::GET, p) if !p.contains("/namespaces/") && !p.ends_with("/status") => {
                let empty = || Value::Array(Vec::new());
                let answer = match p {
                    "/apis/apps/v1/statefulsets" => Some(("StatefulSet", "apps/v1", empty())),
                    "/apis/waf-admission.dev/v1alpha1/wellarchitectedpolicies" => Some((
                        "WellArchitectedPolicy",
                        "waf-admission.dev/v1alpha1",
                        json!([policy]),
                    )),
                    "/apis/waf-admission.dev/v1alpha1/wellarchitectedexceptions" => Some((
                        "WellArchitectedException",
                        "waf-admission.dev/v1alpha1",
                        empty(),
                    )),
                    "/api/v1/namespaces" => Some(("Namespace", "v1", json!(namespaces))),
                    "/apis/autoscaling/v2/horizontalpodautoscalers" => {
                        Some(("HorizontalPodAutoscaler", "autoscaling/v2", empty()))
                    }
                    "/apis/policy/v1/poddisruptionbudgets" => {
                        Some(("PodDisruptionBudget", "policy/v1", empty()))
                    }
                    "/apis/openreports.io/v1alpha1/reports" => {
                        Some(("Report", "openreports.io/v1alpha1", empty()))
                    }
                    "/apis/openreports.io/v1alpha1/clusterreports" => {
                        Some(("ClusterReport", "openreports.io/v1alpha1", empty()))
                    }
                    _ => None,
                };
                match answer {
                    Some((kind, api_version, items)) => respond(
                        send,
                        StatusCode::OK,
                        json_body(&list(kind, api_version, items, None)),
                    ),
                    None if p == REPORTS => respond(
                        send,
                        StatusCode::OK,
                        json_body(&json!({"kind": "APIResourceList", "apiVersion": "v1",
                            "groupVersion": "openreports.io/v1alpha1", "resources": [
                            {"name": "reports", "singularName": "report", "namespaced": true,
                             "kind": "Report", "verbs": ["get", "list", "patch", "delete"]},
                            {"name": "clusterreports", "singularName": "clusterreport",
                             "namespaced": false, "kind": "ClusterReport",
                             "verbs": ["get", "list", "patch", "delete"]}]})),
                    ),
                    // KEDA is not installed.
                    None => respond(send, StatusCode::NOT_FOUND, not_found()),
                }
            }
            (&Method::GET, p) if p.contains("/leases/") => match &lease {
                Some(l) => respond(send, StatusCode::OK, json_body(l)),
                None => respond(send, StatusCode::NOT_FOUND, not_found()),
            },
            (&Method::POST | &Method::PUT, p) if p.contains("/leases") => {
                let mut l = body;
                l["metadata"]["resourceVersion"] = json!("1");
                respond(send, StatusCode::OK, json_body(&l));
                lease = Some(l);
            }
            (&Method::POST, p) if p.ends_with("/events") => {
                respond(send, StatusCode::CREATED, json_body(&body))
            }
            (&Method::PATCH, p) if p.ends_with("/status") => {
                if let Some(audit) = body["status"].get("audit") {
                    seen.audit_status.insert(p.to_owned(), audit.clone());
                }
                respond(send, StatusCode::OK, json_body(&policy));
            }
            (&Method::PATCH, p) if p.starts_with(REPORTS) => {
                let bytes = json_body(&body);
                seen.reports_written += 1;
                seen.report_bytes += bytes.len();
                respond(send, StatusCode::OK, bytes);
                if p.starts_with(&format!("{REPORTS}/clusterreports/")) {
                    seen._held = held;
                    return seen;
                }
            }
            _ => {
                eprintln!("mock: unexpected {method} {path}?{query}");
                respond(send, StatusCode::NOT_FOUND, not_found());
            }
        }
    }
}

/// A field of /proc/self/status in MiB.
fn proc_status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 50_000,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,waf_admission=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let sample = serde_json::to_vec(&stored(1))?.len();
    // What the audit's store keeps of it.
    let one: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(stored(1))?;
    let cached = one.to_cached()?.json.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let seen = runtime.block_on(async {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let state = Arc::new(State::for_cluster(tx));
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let options = ClusterOptions {
            pod_name: "bench-0".into(),
            namespace: "waf-admission".into(),
            lease_name: "waf-admission-controller".into(),
            // Short, so an audit tick that comes before the Lease is held
            // retries soon; the measurement ends at the first run's end.
            audit_interval: Duration::from_secs(1),
            stopping,
            lease_released: Arc::new(tokio::sync::Notify::new()),
            metrics: Arc::new(Metrics::new()),
            reports: ReportFormat::OpenReports,
            secrets: vec![],
            prices_configmap: None,
        };
        let controller = tokio::spawn(cluster::run(client, state, rx, options));
        let seen = serve(handle, n).await;
        // Read while the controller still holds its stores.
        let rss = (proc_status_mib("VmHWM"), proc_status_mib("VmRSS"));
        controller.abort();
        (seen, Instant::now(), rss)
    });
    let (seen, done, (peak, after)) = seen;
    let listed = seen.listed_at.unwrap_or(done);
    for (path, counts) in &seen.audit_status {
        println!("status.audit {path}: {counts}");
    }
    println!(
        "mock served {} Deployments in {} pages, {:.1} MiB of JSON ({sample} bytes for one, {cached} cached); \
         {} reports written, {:.1} MiB",
        n,
        seen.deployment_pages,
        seen.deployment_bytes as f64 / 1048576.0,
        seen.reports_written,
        seen.report_bytes as f64 / 1048576.0,
    );
    println!(
        "audit {n} deployments: peak rss={peak:.0} MiB, after={after:.0} MiB, \
         when listed={:.0} MiB, \
         audit took {:.1} s (listed in {:.1} s)",
        seen.listed_rss,
        (done - listed).as_secs_f64(),
        (listed - start).as_secs_f64(),
    );
    Ok(())
}
