//! The webhook's router called in-process (no socket), for what cannot be
//! provoked from outside: a handler that panics, and the Events channel.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use waf_admission::PolicySet;
use waf_admission::policy::Action;
use waf_admission::state::{Snapshot, State};
use waf_admission::webhook::{self, App, metrics::Metrics};

fn app(state: State) -> Arc<App> {
    Arc::new(App {
        state: Arc::new(state),
        metrics: Arc::new(Metrics::new()),
        registry: None,
    })
}

async fn call(router: &axum::Router, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

async fn boom() -> &'static str {
    panic!("bug in a handler")
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_next_request_is_served() {
    let app = app(State::standalone(PolicySet::baseline().unwrap()));
    let routes = axum::Router::new()
        .route("/boom", get(boom))
        .route("/healthz", get(|| async { "ok" }));
    let router = webhook::with_layers(routes, app.clone());
    let (status, body) = call(&router, "GET", "/boom", Vec::new()).await;
    assert_eq!(status, 500);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "internal error while judging the request\n"
    );
    assert_eq!(call(&router, "GET", "/healthz", Vec::new()).await.0, 200);
    assert!(
        app.metrics
            .encode()
            .contains("endpoint=\"other\",code=\"500\"")
    );
}

/// A webhook as the controller runs it, its Events sent to the receiver.
fn in_cluster() -> (
    Arc<State>,
    axum::Router,
    tokio::sync::mpsc::Receiver<waf_admission::state::DecisionEvent>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let state = Arc::new(State::for_cluster(tx));
    let router = webhook::router(Arc::new(App {
        state: state.clone(),
        metrics: Arc::new(Metrics::new()),
        registry: None,
    }));
    (state, router, rx)
}

#[tokio::test]
async fn denials_become_events_but_dry_runs_do_not() {
    let (state, router, mut rx) = in_cluster();
    // Not ready until the controller says its stores synced, and no
    // verdict either: an empty policy set would admit everything.
    assert_eq!(call(&router, "GET", "/readyz", Vec::new()).await.0, 503);
    let object = common::yaml_file("examples/bad/image-provenance.yaml").remove(0);
    let early = serde_json::to_vec(&common::review("CREATE", Some(&object), false)).unwrap();
    for path in ["/validate", "/mutate"] {
        let (status, body) = call(&router, "POST", path, early.clone()).await;
        assert_eq!(status, 503, "{path}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("not synced"), "{path}: {text}");
    }
    state.store(Snapshot {
        policies: PolicySet::baseline().unwrap(),
        context: Default::default(),
    });
    state.set_synced();
    assert_eq!(call(&router, "GET", "/readyz", Vec::new()).await.0, 200);

    let dry = serde_json::to_vec(&common::review("CREATE", Some(&object), true)).unwrap();
    let (_, body) = call(&router, "POST", "/validate", dry).await;
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    assert!(rx.try_recv().is_err(), "a dry run must have no side effect");

    let real = serde_json::to_vec(&common::review("CREATE", Some(&object), false)).unwrap();
    call(&router, "POST", "/validate", real).await;
    let event = rx.try_recv().expect("an event for the denial");
    assert_eq!(
        (
            event.kind.as_str(),
            event.namespace.as_str(),
            event.name.as_str()
        ),
        ("Deployment", "ml", "ollama")
    );
    assert_eq!(event.action, Action::Deny);
    assert!(
        event
            .message
            .lines()
            .any(|l| l.starts_with("[image-provenance] container \"llm\" image")),
        "{}",
        event.message
    );
}

/// Issue 24: in Warn (the chart's default) every warning carries its fix or
/// says where the whole one is, in words that do not assume our CLI, and
/// the Event there holds the object to add.
#[tokio::test]
async fn warnings_carry_their_fix_or_name_the_event_that_does() {
    let (state, router, mut rx) = in_cluster();
    let spec = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/policies/baseline.yaml"),
    )
    .unwrap()
    .replace("  action: Deny\n", "  action: Warn\n");
    let dir = std::env::temp_dir().join(format!("waf-warn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("warn.yaml"), spec).unwrap();
    let warn = waf_admission::check::load_policies(&[dir.join("warn.yaml")])
        .unwrap()
        .policies()
        .to_vec();
    state.store(Snapshot {
        policies: PolicySet::new(warn),
        context: Default::default(),
    });
    state.set_synced();
    let object = common::yaml_file("tests/fixtures/workloads/vllm-first-try.yaml").remove(0);
    let review = serde_json::to_vec(&common::review("CREATE", Some(&object), false)).unwrap();
    let (_, body) = call(&router, "POST", "/validate", review).await;
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let warnings: Vec<&str> = answer["response"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(warnings.len() >= 5, "{warnings:#?}");
    for w in &warnings {
        assert!(w.chars().count() <= 256, "{w}");
        assert!(w.contains("Fix: "), "a warning without its fix: {w}");
        assert!(!w.contains("waf-admission check"), "assumes the CLI: {w}");
    }
    let autoscaler = warnings
        .iter()
        .find(|w| w.starts_with("[autoscaler]"))
        .unwrap();
    assert!(
        autoscaler.contains("Fix: see `kubectl describe deployment qwen-chat -n ml` (Events)"),
        "{autoscaler}"
    );
    let event = rx.try_recv().expect("an event for the warnings");
    assert_eq!(event.action, Action::Warn);
    assert!(
        event
            .message
            .contains("[autoscaler] no HorizontalPodAutoscaler"),
        "{}",
        event.message
    );
    // Each object to add has an Event of its own, within the API's 1 KiB.
    let mut objects = Vec::new();
    while let Ok(e) = rx.try_recv() {
        assert!(e.message.len() <= 1024, "{}", e.message);
        let json = e.message.split_once(":\n").unwrap().1;
        objects.push(serde_json::from_str::<Value>(json).unwrap());
    }
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ScaledObject", "PodDisruptionBudget"]);
    assert_eq!(objects[0]["spec"]["scaleTargetRef"]["name"], "qwen-chat");
    std::fs::remove_dir_all(&dir).ok();
}

/// Collects what the webhook logs, to look for a credential in it.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_literal_credential_is_never_repeated_and_many_rules_give_one_warning_each() {
    const TOKEN: &str = "hf_QmFkRXhhbXBsZU5vdEFSZWFsVG9rZW5BdEFsbA";
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let state = Arc::new(State::for_cluster(tx));
    state.store(Snapshot {
        policies: PolicySet::baseline().unwrap(),
        context: Default::default(),
    });
    state.set_synced();
    let router = webhook::router(Arc::new(App {
        state,
        metrics: Arc::new(Metrics::new()),
        registry: None,
    }));
    // Breaks every rule that warns in the baseline, several times over:
    // three containers without probes, hostIPC, privileged, a token in env
    // and in args, no autoscaler, no PodDisruptionBudget.
    let mut object =
        common::yaml_file("tests/fixtures/workloads/compliant-gpu-deployment.yaml").remove(0);
    let spec = &mut object["spec"]["template"]["spec"];
    spec["hostIPC"] = true.into();
    let mut c = spec["containers"][0].clone();
    for p in ["readinessProbe", "livenessProbe", "startupProbe"] {
        c.as_object_mut().unwrap().remove(p);
    }
    c["securityContext"] = serde_json::json!({"privileged": true});
    c["env"] = serde_json::json!([{"name": "HF_TOKEN", "value": TOKEN}]);
    c["args"] = serde_json::json!(["--model", "/models/phi-3-mini", "--hf-token", TOKEN]);
    spec["containers"] = serde_json::json!([c.clone(), c.clone(), c]);
    for (i, name) in ["llm", "llm-b", "llm-c"].iter().enumerate() {
        spec["containers"][i]["name"] = (*name).into();
    }

    let mut answers = String::new();
    for endpoint in ["/validate", "/mutate"] {
        let review = serde_json::to_vec(&common::review("CREATE", Some(&object), false)).unwrap();
        let (status, body) = call(&router, "POST", endpoint, review).await;
        assert_eq!(status, 200);
        answers.push_str(&String::from_utf8_lossy(&body));
        let answer: Value = serde_json::from_slice(&body).unwrap();
        if endpoint == "/validate" {
            let warnings: Vec<&str> = answer["response"]["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_str().unwrap())
                .collect();
            let rules: Vec<&str> = warnings
                .iter()
                .map(|w| &w[1..w.find(']').unwrap()])
                .collect();
            assert_eq!(
                rules,
                [
                    "autoscaler",
                    "probes",
                    "disruption-budget",
                    "secret-env",
                    "host-isolation"
                ],
                "one warning per rule: {warnings:#?}"
            );
            assert!(
                warnings.iter().all(|w| w.chars().count() <= 256),
                "{warnings:#?}"
            );
            assert!(warnings.iter().map(|w| w.len()).sum::<usize>() <= 4096);
        }
    }
    let event = rx.try_recv().expect("an event for the warnings");
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("secret-env"),
        "the request was logged: {logged}"
    );
    let fragment = &TOKEN[10..];
    for (what, text) in [
        ("answers", answers.as_str()),
        ("event", event.message.as_str()),
        ("logs", logged.as_str()),
    ] {
        assert!(
            !text.contains(fragment),
            "the token is repeated in the {what}"
        );
    }
    assert!(
        event
            .message
            .contains("sets HF_TOKEN to a Hugging Face token")
    );
}

/// A review as the apiserver writes it (Go writes struct fields in order:
/// `kind` and `namespace` before `object`), or with `object` first.
/// `sent_as`: the object whose type `kind` names.
fn review_text(object: &Value, sent_as: &Value, operation: &str, object_first: bool) -> Vec<u8> {
    let kind = sent_as["kind"].as_str().unwrap_or("Deployment");
    let (group, version) = match sent_as["apiVersion"].as_str().unwrap_or("apps/v1") {
        v if v.contains('/') => v.split_once('/').unwrap(),
        v => ("", v),
    };
    let gvk = serde_json::json!({"group": group, "version": version, "kind": kind});
    let gvr = serde_json::json!({"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())});
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or("ml");
    let mut fields = vec![
        ("uid", serde_json::json!("0f0e0d0c")),
        ("kind", gvk.clone()),
        ("resource", gvr.clone()),
        ("requestKind", gvk),
        ("requestResource", gvr),
        (
            "name",
            serde_json::json!(object["metadata"]["name"].as_str().unwrap_or("unnamed")),
        ),
        ("namespace", serde_json::json!(namespace)),
        ("operation", serde_json::json!(operation)),
        (
            "userInfo",
            serde_json::json!({"username": "kubernetes-admin", "groups": ["system:masters"]}),
        ),
        ("object", object.clone()),
        (
            "oldObject",
            if operation == "UPDATE" {
                object.clone()
            } else {
                Value::Null
            },
        ),
        ("dryRun", serde_json::json!(false)),
        (
            "options",
            serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}),
        ),
    ];
    if object_first {
        let at = fields.iter().position(|(k, _)| *k == "object").unwrap();
        let object = fields.remove(at);
        fields.insert(0, object);
    }
    let request: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{}", serde_json::json!(k), v))
        .collect();
    format!(
        r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{{}}}}}"#,
        request.join(",")
    )
    .into_bytes()
}

/// The webhook reads `request.object` in the same pass as the rest of the
/// review when the fields before it say its type; with `object` first it
/// keeps it as text and reads it after. Every example, the review kubectl
/// apply sends and broken objects get the same answer, byte for byte, on
/// both endpoints.
#[tokio::test]
async fn an_object_read_on_the_way_gets_the_answer_it_gets_read_afterwards() {
    let app = app(State::standalone(PolicySet::baseline().unwrap()));
    let router = webhook::router(app);
    let mut objects = Vec::new();
    for dir in ["examples/good", "examples/bad"] {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut files: Vec<_> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let path = f.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
            objects.extend(common::yaml_file(path.to_str().unwrap()));
        }
    }
    let applied: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/reviews/gpu-deployment-apply.json"
        ))
        .unwrap(),
    )
    .unwrap();
    objects.push(applied["request"]["object"].clone());
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap()
        .clone();
    let broken = |pointer: &str, value: Value| {
        let mut o = deployment.clone();
        *o.pointer_mut(pointer).unwrap() = value;
        o
    };
    objects.push(broken("/spec/replicas", serde_json::json!("two")));
    objects.push(broken(
        "/spec/template/spec/containers",
        serde_json::json!(5),
    ));
    objects.push(broken("/metadata", serde_json::json!(3)));
    // Sent as a Deployment, but says it is a StatefulSet.
    let mut cases: Vec<(Value, Value)> = objects.iter().map(|o| (o.clone(), o.clone())).collect();
    cases.push((
        broken("/kind", serde_json::json!("StatefulSet")),
        deployment.clone(),
    ));

    let mut denied = 0;
    let mut compared = 0;
    for (object, sent_as) in &cases {
        for operation in ["CREATE", "UPDATE"] {
            for path in ["/validate", "/mutate"] {
                let on_the_way = call(
                    &router,
                    "POST",
                    path,
                    review_text(object, sent_as, operation, false),
                )
                .await;
                let afterwards = call(
                    &router,
                    "POST",
                    path,
                    review_text(object, sent_as, operation, true),
                )
                .await;
                assert_eq!(
                    String::from_utf8_lossy(&on_the_way.1),
                    String::from_utf8_lossy(&afterwards.1),
                    "{path} {operation} of {}",
                    object["metadata"]["name"]
                );
                assert_eq!(on_the_way.0, afterwards.0);
                denied += usize::from(
                    String::from_utf8_lossy(&on_the_way.1).contains(r#""allowed":false"#),
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 40, "only {compared} answers compared");
    assert!(denied > 5, "only {denied} denials among them");
}
