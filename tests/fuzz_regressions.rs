//! Every input the fuzz targets (fuzz/) found wrong, minimised and kept
//! here, so the normal suite holds the fix. docs/security.md lists them.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use waf_admission::check::{self, load::Loaded, load::parse_text};
use waf_admission::state::State;
use waf_admission::webhook::{self, App, metrics::Metrics};
use waf_admission::workload::Workload;
use waf_admission::{Context, PolicySet, evaluate, judge};

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000).unwrap()
}

fn policy(file: &str) -> PolicySet {
    check::load_policies(&[Path::new(env!("CARGO_MANIFEST_DIR")).join(file)]).unwrap()
}

fn object(yaml: &str) -> Value {
    let mut loaded = Loaded::default();
    parse_text(yaml, "regression.yaml", &mut loaded);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.documents.remove(0).value
}

/// Judges, applies the patch, judges again: the patch must apply, fix what
/// it says it fixes, and leave nothing more to patch.
fn assert_patch_converges(set: &PolicySet, object: &Value) {
    let ctx = Context::default();
    let eval = evaluate(set, object, "default", &ctx, now())
        .unwrap()
        .unwrap();
    assert!(!eval.decision.patch.is_empty(), "the case patches");
    let patched = eval.patched.expect("patched");
    let w = Workload::from_value(patched, "default").unwrap().unwrap();
    let again = judge(set, &w, &ctx, now());
    assert!(
        again.patch.is_empty(),
        "a second patch: {}",
        serde_json::to_string(&again.patch).unwrap()
    );
    for v in eval.decision.violations.iter().filter(|v| v.fixable) {
        assert!(
            v.patched,
            "[{}] {} is not fixed by the patch",
            v.rule, v.message
        );
    }
}

/// fuzz/admission_review: a Deployment whose `spec` holds no pod template.
/// The engine judged a default (empty) pod spec and patched below
/// `/spec/template/spec`, which is not there, so /mutate answered a patch
/// the apiserver cannot apply. Now reading refuses the object: /mutate and
/// /validate answer 400 with the field, and `check` reports an input error.
#[tokio::test]
async fn a_workload_without_its_pod_spec_is_refused_not_patched() {
    let deployment = object(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: chat, namespace: ml, labels: {app: chat}}\n\
         spec:\n  replicas: 1\n  selector: {matchLabels: {app: chat}}\n",
    );
    let set = policy("tests/fixtures/policies/mutate-all.yaml");
    let router = webhook::router(Arc::new(App {
        state: Arc::new(State::standalone(set.clone())),
        metrics: Arc::new(Metrics::new()),
        registry: None,
    }));
    let gvk = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let gvr = json!({"group": "apps", "version": "v1", "resource": "deployments"});
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "regression-1", "kind": gvk, "resource": gvr, "name": "chat", "namespace": "ml",
        "operation": "CREATE", "userInfo": {"username": "dev"}, "object": deployment}});
    for path in ["/mutate", "/validate"] {
        let req = axum::http::Request::builder()
            .method("POST")
            .uri(path)
            .body(Body::from(serde_json::to_vec(&review).unwrap()))
            .unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let answer: Value = serde_json::from_slice(&body).unwrap();
        let r = &answer["response"];
        assert_eq!(r["uid"], "regression-1");
        assert_eq!(r["allowed"], false, "{path}: {r}");
        assert!(r.get("patch").is_none(), "{path}: no patch: {r}");
        assert_eq!(r["status"]["code"], 400, "{path}: {r}");
        let message = r["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("spec.template.spec is missing"),
            "{message}"
        );
    }

    let mut loaded = Loaded::default();
    parse_text(
        &serde_json::to_string(&deployment).unwrap(),
        "chat.json",
        &mut loaded,
    );
    let report = check::run(&set, loaded, now());
    assert_eq!(report.exit_code(), 2);
    assert!(report.results.is_empty());
    let error = report.errors[0].to_string();
    assert!(error.starts_with("chat.json#0"), "{error}");
    assert!(error.contains("spec.template.spec is missing"), "{error}");

    // Every kind: a Pod without spec, a Job without its template's spec.
    for (yaml, field) in [
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
            "spec is missing",
        ),
        (
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {template: {metadata: {labels: {a: b}}}}\n",
            "spec.template.spec is missing",
        ),
        (
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec: {schedule: '* * * * *', jobTemplate: {}}\n",
            "spec.jobTemplate.spec.template.spec is missing",
        ),
    ] {
        let e = Workload::from_value(object(yaml), "ml")
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{e}");
    }
}

/// fuzz/patch_roundtrip: a Deployment whose selector (`app: minio`) is not
/// on its template (`app: imnio`). zone-spread's patch took the selector's
/// labels, so the added constraint selected none of the pods and the next
/// judgement asked to replace it: a patch that never converged. The patch
/// now takes the template's labels when the selector is not on them.
#[test]
fn zone_spread_patches_with_labels_the_pods_carry() {
    let d = object(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: minio, namespace: ml, labels: {app: minio}}\n\
         spec:\n  replicas: 2\n  selector: {matchLabels: {app: minio}}\n  template:\n    metadata: {labels: {app: imnio}}\n\
         \x20   spec:\n      containers:\n      - name: minio\n        image: minio/minio:RELEASE.2023-03-20T20-16-18Z\n\
         \x20       resources: {requests: {cpu: 100m, memory: 256Mi}, limits: {cpu: '1', memory: 1Gi}}\n",
    );
    let set = policy("tests/fixtures/policies/mutate-all.yaml");
    assert_patch_converges(&set, &d);
}

/// fuzz/patch_roundtrip: `periodSeconds: 0` on a startupProbe. probes read
/// it as 0 when judging (the probe "gives up 5 s after start") but as 1
/// when patching, so the raised failureThreshold never satisfied the
/// judgement. The apiserver defaults 0 to 10; both now read it so.
#[test]
fn a_zero_probe_period_is_read_as_the_apiservers_default() {
    let d = object(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: llm, namespace: ml}\n\
         spec:\n  replicas: 2\n  selector: {matchLabels: {app: llm}}\n  template:\n    metadata: {labels: {app: llm}}\n\
         \x20   spec:\n      containers:\n      - name: llm\n\
         \x20       image: contoso.azurecr.io/models/vllm-openai:v0.6.3@sha256:4f8c1e1d36ca6a7bb3b5f4b3e6d8f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5\n\
         \x20       resources: {requests: {cpu: '1', memory: 1Gi}, limits: {memory: 1Gi}}\n\
         \x20       readinessProbe: {httpGet: {path: /health, port: 8000}}\n\
         \x20       livenessProbe: {httpGet: {path: /health, port: 8000}, initialDelaySeconds: 30}\n\
         \x20       startupProbe: {httpGet: {path: /health, port: 8000}, initialDelaySeconds: 5, periodSeconds: 0, failureThreshold: 12}\n",
    );
    let set = policy("tests/fixtures/policies/mutate-all.yaml");
    let eval = evaluate(&set, &d, "default", &Context::default(), now())
        .unwrap()
        .unwrap();
    let probes: Vec<&str> = eval
        .decision
        .violations
        .iter()
        .filter(|v| v.rule.as_str() == "probes")
        .map(|v| v.message.as_str())
        .collect();
    assert!(
        probes
            .iter()
            .any(|m| m.contains("gives up 125 s after start")),
        "5 s + 12 × 10 s: {probes:?}"
    );
    assert_patch_converges(&set, &d);
}

/// fuzz/patch_roundtrip: two containers with one name (the apiserver
/// refuses that, `check` reads it): the first has no resources, which the
/// patch fixes; the second asks for a GPU and has no memory limit, which it
/// cannot. Both violations read `container "llm" has no memory limit`, and
/// `evaluate` marked a violation patched when no violation with the same
/// rule and message was left, so the fixed one was reported unpatched.
/// `evaluate` now compares rule, path and message.
#[test]
fn a_fixed_violation_is_patched_even_when_another_container_shares_its_message() {
    let d = object(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: llm, namespace: ml}\n\
         spec:\n  replicas: 2\n  selector: {matchLabels: {app: llm}}\n  template:\n    metadata: {labels: {app: llm}}\n\
         \x20   spec:\n      nodeSelector: {kubernetes.azure.com/accelerator: nvidia}\n\
         \x20     tolerations: [{key: sku, operator: Equal, value: gpu, effect: NoSchedule}]\n\
         \x20     topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, \
         whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: llm}}}]\n\
         \x20     containers:\n      - {name: llm, image: mcr.microsoft.com/azure-cli:2.67.0}\n\
         \x20     - name: llm\n        image: mcr.microsoft.com/azure-cli:2.67.0\n\
         \x20       resources: {requests: {cpu: '4', memory: 24Gi, nvidia.com/gpu: '1'}, limits: {nvidia.com/gpu: '1'}}\n",
    );
    let set = PolicySet::baseline().unwrap();
    let eval = evaluate(&set, &d, "default", &Context::default(), now())
        .unwrap()
        .unwrap();
    let first = eval
        .decision
        .violations
        .iter()
        .find(|v| {
            v.fixable
                && v.path.starts_with("/spec/template/spec/containers/0")
                && v.message.contains("no memory limit")
        })
        .expect("the first container's missing memory limit, fixable");
    let second = eval
        .decision
        .violations
        .iter()
        .find(|v| {
            v.path.starts_with("/spec/template/spec/containers/1") && v.message == first.message
        })
        .expect("the second container's, with the same message");
    assert!(!second.fixable, "a GPU container's sizes are not defaulted");
    assert!(
        first.patched,
        "[{}] {} at {}",
        first.rule, first.message, first.path
    );
}
