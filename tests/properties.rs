//! Properties of the engine over generated workloads (proptest): Deployments,
//! StatefulSets and Pods with random containers, init containers, GPU
//! requests, resources present or absent, images, replicas, probes, spread
//! constraints and GPU placement, judged with the baseline, the strict
//! sample policy and a policy that turns every rule on with `mutate: true`.
//!
//! (a) every patch the engine emits applies to its object, and the patched
//!     object passes the rules that patched it: what they still report is
//!     only what they said they could not fix, and they patch nothing more;
//! (b) the verdict (the set of (rule, message), the exempted rules and
//!     `allowed`) does not depend on the order of containers, of policies or
//!     of exceptions;
//! (c) `check` (the library behind the CLI) and the webhook's in-process
//!     router give the same verdict and the same patch for the same object
//!     and policy.
//!
//! proptest's default case count (256) per property: the suite runs in a
//! few seconds.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use base64::Engine;
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Value, json};
use tower::ServiceExt;
use waf_admission::check::{self, load::Loaded, load::parse_text};
use waf_admission::context::Exception;
use waf_admission::policy::{Action, WellArchitectedException};
use waf_admission::state::State;
use waf_admission::webhook::{self, App, metrics::Metrics};
use waf_admission::workload::Workload;
use waf_admission::{Context, Decision, Policy, PolicySet, evaluate, judge};

/// proptest's defaults (256 cases), with failing cases kept beside this
/// file (tests/properties.proptest-regressions) and replayed first.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000).unwrap()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The policies of one file, read as `check --policy FILE` reads them.
fn policies(file: &str) -> Vec<Policy> {
    check::load_policies(&[root().join(file)])
        .unwrap_or_else(|e| panic!("{file}: {e:?}"))
        .policies()
        .to_vec()
}

/// (name, set): the baseline, strict, and every rule mutating.
fn sets() -> &'static [(&'static str, PolicySet)] {
    static SETS: OnceLock<Vec<(&'static str, PolicySet)>> = OnceLock::new();
    SETS.get_or_init(|| {
        vec![
            ("baseline", PolicySet::baseline().unwrap()),
            (
                "strict",
                PolicySet::new(policies("manifests/policies/strict.yaml")),
            ),
            (
                "mutate-all",
                PolicySet::new(policies("tests/fixtures/policies/mutate-all.yaml")),
            ),
        ]
    })
}

// ---- generators -------------------------------------------------------

const IMAGES: [&str; 9] = [
    "contoso.azurecr.io/models/vllm-openai:v0.6.3@sha256:4f8c1e1d36ca6a7bb3b5f4b3e6d8f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5",
    "contoso.azurecr.io/models/vllm-openai:v0.6.3",
    "contoso.azurecr.io/models/vllm-openai:latest",
    "mcr.microsoft.com/azureml/embeddings-server:1.4.2@sha256:9a1f3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a",
    "vllm/vllm-openai:v0.11.0",
    "nginx",
    "contoso.azurecr.io.evil.example/vllm:v1@sha256:4f8c1e1d36ca6a7bb3b5f4b3e6d8f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5",
    "nvcr.io/nvidia/tritonserver:25.01-py3",
    "ollama/ollama:latest",
];

fn quantity(options: &'static [&'static str]) -> impl Strategy<Value = Option<&'static str>> {
    proptest::option::of(proptest::sample::select(options))
}

prop_compose! {
    /// One container, named later (names must be unique in a pod).
    fn container()(
        image in proptest::sample::select(&IMAGES[..]),
        cpu_request in quantity(&["100m", "500m", "2"]),
        memory_request in quantity(&["256Mi", "1Gi", "8Gi"]),
        memory_limit in quantity(&["512Mi", "1Gi", "16Gi"]),
        cpu_limit in quantity(&["1", "4"]),
        gpus in prop_oneof![3 => Just(0u8), 1 => 1u8..=4],
        gpu_in_requests in any::<bool>(),
        readiness in any::<bool>(),
        liveness in proptest::option::of(prop_oneof![Just(0), Just(30), Just(900)]),
        secret in prop_oneof![9 => Just(false), 1 => Just(true)],
    ) -> Value {
        let mut requests = serde_json::Map::new();
        let mut limits = serde_json::Map::new();
        if let Some(q) = cpu_request { requests.insert("cpu".into(), json!(q)); }
        if let Some(q) = memory_request { requests.insert("memory".into(), json!(q)); }
        if let Some(q) = memory_limit { limits.insert("memory".into(), json!(q)); }
        if let Some(q) = cpu_limit { limits.insert("cpu".into(), json!(q)); }
        if gpus > 0 {
            limits.insert("nvidia.com/gpu".into(), json!(gpus));
            if gpu_in_requests { requests.insert("nvidia.com/gpu".into(), json!(gpus)); }
        }
        let mut c = json!({"image": image});
        if !requests.is_empty() || !limits.is_empty() {
            let mut r = serde_json::Map::new();
            if !requests.is_empty() { r.insert("requests".into(), Value::Object(requests)); }
            if !limits.is_empty() { r.insert("limits".into(), Value::Object(limits)); }
            c["resources"] = Value::Object(r);
        }
        let probe = |delay: i32| json!({"httpGet": {"path": "/health", "port": 8000}, "initialDelaySeconds": delay});
        if readiness { c["readinessProbe"] = probe(5); }
        if let Some(delay) = liveness { c["livenessProbe"] = probe(delay); }
        if secret {
            c["env"] = json!([{"name": "AZURE_CLIENT_SECRET", "value": "Zx8Q~s3cr3tV4lu3-Not-Real-0123456789ab"}]);
        }
        c
    }
}

/// Everything about a workload but its containers.
#[derive(Clone, Debug)]
struct Shape {
    kind: &'static str,
    replicas: Option<i32>,
    inference_label: bool,
    zone_spread: bool,
    gpu_node_selector: bool,
    gpu_toleration: bool,
}

prop_compose! {
    fn shape()(
        kind in proptest::sample::select(&["Deployment", "StatefulSet", "Pod"][..]),
        replicas in proptest::option::of(0i32..=4),
        inference_label in any::<bool>(),
        zone_spread in any::<bool>(),
        gpu_node_selector in any::<bool>(),
        gpu_toleration in any::<bool>(),
    ) -> Shape {
        Shape { kind, replicas, inference_label, zone_spread, gpu_node_selector, gpu_toleration }
    }
}

/// Containers and init containers, each named once.
fn containers() -> impl Strategy<Value = (Vec<Value>, Vec<Value>)> {
    (
        proptest::collection::vec(container(), 1..=3),
        proptest::collection::vec(container(), 0..=2),
    )
        .prop_map(|(mut main, mut init)| {
            for (i, c) in main.iter_mut().enumerate() {
                c["name"] = json!(format!("server-{i}"));
            }
            for (i, c) in init.iter_mut().enumerate() {
                c["name"] = json!(format!("init-{i}"));
                // An init container's probes are refused by the apiserver.
                let c = c.as_object_mut().unwrap();
                c.remove("readinessProbe");
                c.remove("livenessProbe");
            }
            (main, init)
        })
}

fn workload(shape: &Shape, main: &[Value], init: &[Value]) -> Value {
    let mut labels = json!({"app": "llm"});
    if shape.inference_label {
        labels["waf-admission.dev/workload"] = json!("inference");
    }
    let mut pod = json!({"containers": main});
    if !init.is_empty() {
        pod["initContainers"] = json!(init);
    }
    if shape.zone_spread {
        pod["topologySpreadConstraints"] = json!([{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "llm"}}}]);
    }
    if shape.gpu_node_selector {
        pod["nodeSelector"] = json!({"kubernetes.azure.com/accelerator": "nvidia"});
    }
    if shape.gpu_toleration {
        pod["tolerations"] =
            json!([{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    }
    let metadata = json!({"name": "llm", "namespace": "ml", "labels": labels});
    if shape.kind == "Pod" {
        return json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod});
    }
    let mut spec = json!({
        "selector": {"matchLabels": {"app": "llm"}},
        "template": {"metadata": {"labels": labels}, "spec": pod},
    });
    if let Some(r) = shape.replicas {
        spec["replicas"] = json!(r);
    }
    if shape.kind == "StatefulSet" {
        spec["serviceName"] = json!("llm");
    }
    json!({"apiVersion": "apps/v1", "kind": shape.kind, "metadata": metadata, "spec": spec})
}

fn any_workload() -> impl Strategy<Value = Value> {
    (shape(), containers()).prop_map(|(s, (main, init))| workload(&s, &main, &init))
}

const RULES: [&str; 6] = [
    "image-provenance",
    "resources",
    "zone-spread",
    "probes",
    "secret-env",
    "gpu-placement",
];

prop_compose! {
    /// An exception for the generated workload (`ml/llm`), for some rules,
    /// in force or expired.
    fn exception(n: usize)(
        rules in proptest::sample::subsequence(&RULES[..], 1..=3),
        expired in prop_oneof![3 => Just(false), 1 => Just(true)],
        by_selector in any::<bool>(),
    ) -> Exception {
        let workloads = if by_selector {
            json!({"selector": {"matchLabels": {"app": "llm"}}})
        } else {
            json!({"workloads": [{"kind": "Deployment", "name": "llm"}, {"kind": "StatefulSet", "name": "llm"}, {"kind": "Pod", "name": "llm"}]})
        };
        let mut spec = json!({
            "rules": rules, "reason": format!("exception {n}"),
            "expires": if expired { "2020-01-01T00:00:00Z" } else { "2099-01-01T00:00:00Z" },
        });
        spec.as_object_mut().unwrap().extend(workloads.as_object().unwrap().clone());
        let e: WellArchitectedException = serde_json::from_value(json!({
            "apiVersion": "waf-admission.dev/v1alpha1", "kind": "WellArchitectedException",
            "metadata": {"name": format!("e{n}"), "namespace": "ml"}, "spec": spec,
        })).unwrap();
        Exception::compile(&e, "default").unwrap()
    }
}

// ---- what a verdict is --------------------------------------------------

/// A verdict as users see it: (rule, message) pairs, the rules exempted (and
/// by which exception), and the cluster's `allowed`.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    violations: BTreeSet<(String, String, Action)>,
    exemptions: BTreeSet<(String, String)>,
    allowed: bool,
}

fn verdict(set: &PolicySet, object: &Value, ctx: &Context) -> Verdict {
    let eval = evaluate(set, object, "default", ctx, now())
        .unwrap()
        .expect("a workload");
    Verdict {
        violations: eval
            .decision
            .violations
            .iter()
            .map(|v| (v.rule.to_string(), v.message.clone(), v.action))
            .collect(),
        exemptions: eval
            .decision
            .exemptions
            .iter()
            .map(|e| (e.rule.to_string(), e.exception.clone()))
            .collect(),
        allowed: eval.allowed,
    }
}

fn decide(set: &PolicySet, object: &Value) -> (Workload, Decision) {
    let w = Workload::from_value(object.clone(), "default")
        .unwrap()
        .expect("a workload");
    let d = judge(set, &w, &Context::default(), now());
    (w, d)
}

// ---- (a) patches apply and fix what they say ----------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_patch_applies_and_the_patched_object_passes_the_patched_rules(object in any_workload()) {
        for (name, set) in sets() {
            let (w, before) = decide(set, &object);
            if before.patch.is_empty() {
                continue;
            }
            let mut patched = object.clone();
            let applied = json_patch::patch(&mut patched, &before.patch);
            prop_assert!(applied.is_ok(), "{name}: {applied:?}\n{}", serde_json::to_string(&before.patch).unwrap());
            let (after_w, after) = decide(set, &patched);
            prop_assert_eq!(after_w.kind, w.kind);
            let patched_rules: BTreeSet<_> = before
                .violations
                .iter()
                .filter(|v| v.fixable && v.action == Action::Deny)
                .map(|v| v.rule)
                .collect();
            prop_assert!(!patched_rules.is_empty(), "{name}: a patch with no fixable Deny violation");
            let unfixable: BTreeSet<_> = before
                .violations
                .iter()
                .filter(|v| !v.fixable)
                .map(|v| (v.rule, v.message.clone()))
                .collect();
            for v in after.violations.iter().filter(|v| patched_rules.contains(&v.rule)) {
                prop_assert!(
                    unfixable.contains(&(v.rule, v.message.clone())),
                    "{name}: after the patch [{}] {} (patch {})",
                    v.rule, v.message, serde_json::to_string(&before.patch).unwrap()
                );
            }
            prop_assert!(
                after.patch.is_empty(),
                "{name}: a second patch {} after {}",
                serde_json::to_string(&after.patch).unwrap(),
                serde_json::to_string(&before.patch).unwrap()
            );
        }
    }
}

// ---- (b) order does not matter -----------------------------------------

fn shuffled<T: Clone + std::fmt::Debug>(v: Vec<T>) -> impl Strategy<Value = (Vec<T>, Vec<T>)> {
    (Just(v.clone()), Just(v).prop_shuffle())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn verdicts_do_not_depend_on_the_order_of_containers(
        shape in shape(),
        ((main, main2), (init, init2)) in containers().prop_flat_map(|(m, i)| (shuffled(m), shuffled(i))),
    ) {
        let a = workload(&shape, &main, &init);
        let b = workload(&shape, &main2, &init2);
        for (name, set) in sets() {
            let (va, vb) = (verdict(set, &a, &Context::default()), verdict(set, &b, &Context::default()));
            prop_assert_eq!(va, vb, "{}", name);
        }
    }

    #[test]
    fn verdicts_do_not_depend_on_the_order_of_policies(
        object in any_workload(),
        order in Just(vec![0usize, 1, 2]).prop_shuffle(),
    ) {
        let all: Vec<Policy> = sets().iter().flat_map(|(_, s)| s.policies().to_vec()).collect();
        let forward = PolicySet::new(all.clone());
        let permuted = PolicySet::new(order.iter().map(|&i| all[i].clone()).collect());
        let ctx = Context::default();
        prop_assert_eq!(verdict(&forward, &object, &ctx), verdict(&permuted, &object, &ctx));
    }

    #[test]
    fn verdicts_do_not_depend_on_the_order_of_exceptions(
        object in any_workload(),
        (exceptions, permuted) in (exception(0), exception(1), exception(2))
            .prop_flat_map(|(a, b, c)| shuffled(vec![a, b, c])),
    ) {
        let context = |es: &[Exception]| {
            let mut ctx = Context::default();
            for e in es {
                ctx.add_exception(e.clone());
            }
            ctx
        };
        for (name, set) in sets() {
            prop_assert_eq!(
                verdict(set, &object, &context(&exceptions)),
                verdict(set, &object, &context(&permuted)),
                "{}", name
            );
        }
    }
}

// ---- (c) check and the webhook agree -------------------------------------

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// One router per policy set, in standalone mode as `serve --policy` runs.
fn routers() -> &'static [axum::Router] {
    static ROUTERS: OnceLock<Vec<axum::Router>> = OnceLock::new();
    ROUTERS.get_or_init(|| {
        sets()
            .iter()
            .map(|(_, set)| {
                webhook::router(Arc::new(App {
                    state: Arc::new(State::standalone(set.clone())),
                    metrics: Arc::new(Metrics::new()),
                    registry: None,
                }))
            })
            .collect()
    })
}

fn review(object: &Value) -> Value {
    let (group, resource) = match object["kind"].as_str().unwrap() {
        "Pod" => ("", "pods"),
        "StatefulSet" => ("apps", "statefulsets"),
        _ => ("apps", "deployments"),
    };
    let gvk = json!({"group": group, "version": "v1", "kind": object["kind"]});
    let gvr = json!({"group": group, "version": "v1", "resource": resource});
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "6b2f1e0a-prop", "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": "llm", "namespace": "ml", "operation": "CREATE",
        "userInfo": {"username": "kubernetes-admin"}, "object": object, "dryRun": true}})
}

/// POSTs a review for `object` to `path`; the response part of the answer.
fn call(router: &axum::Router, path: &str, object: &Value) -> Value {
    let body = serde_json::to_vec(&review(object)).unwrap();
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    runtime().block_on(async {
        let resp = router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["response"]["uid"], "6b2f1e0a-prop");
        answer["response"].clone()
    })
}

fn decoded_patch(response: &Value) -> Vec<Value> {
    match response["patch"].as_str() {
        None => Vec::new(),
        Some(b64) => serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap(),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn check_and_the_webhook_give_the_same_verdict(object in any_workload()) {
        for ((name, set), router) in sets().iter().zip(routers()) {
            // check, as the CLI runs it on a file holding the object.
            let mut loaded = Loaded::default();
            parse_text(&serde_json::to_string_pretty(&object).unwrap(), "llm.json", &mut loaded);
            let report = check::run(set, loaded, now());
            prop_assert!(report.errors.is_empty(), "{:?}", report.errors);
            prop_assert_eq!(report.results.len(), 1);
            let result = &report.results[0];

            // The apiserver: /mutate, the patch applied, then /validate.
            let mutated = call(router, "/mutate", &object);
            prop_assert_eq!(mutated["allowed"].as_bool(), Some(true), "{}", name);
            let patch = decoded_patch(&mutated);
            let expected: Vec<Value> = result.patch.iter().map(|op| serde_json::to_value(op).unwrap()).collect();
            prop_assert_eq!(&patch, &expected, "{}: the patch", name);
            let mut patched = object.clone();
            let ops: json_patch::Patch = serde_json::from_value(Value::Array(patch)).unwrap();
            json_patch::patch(&mut patched, &ops).unwrap();
            let validated = call(router, "/validate", &patched);
            prop_assert_eq!(validated["allowed"].as_bool(), Some(result.allowed), "{}: allowed", name);

            // Without the mutating webhook, /validate denies exactly when a
            // Deny violation stands on the object as written.
            let unpatched = call(router, "/validate", &object);
            let denies = result.violations.iter().any(|v| v.action == "deny");
            prop_assert_eq!(unpatched["allowed"].as_bool(), Some(!denies), "{}: unpatched", name);
            if denies {
                let message = unpatched["status"]["message"].as_str().unwrap_or_default();
                for v in result.violations.iter().filter(|v| v.action == "deny") {
                    let rule = format!("[{}]", v.rule);
                    prop_assert!(message.contains(&rule), "{}: {} missing from {}", name, rule, message);
                }
            }
        }
    }
}

#[test]
fn the_policy_sets_hold_what_the_properties_rely_on() {
    let names: Vec<&str> = sets().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["baseline", "strict", "mutate-all"]);
    for (name, set) in sets() {
        assert_eq!(set.policies().len(), 1, "{name}");
    }
    // At least one generated shape is patched, or property (a) tests nothing.
    let shape = Shape {
        kind: "Deployment",
        replicas: Some(1),
        inference_label: true,
        zone_spread: false,
        gpu_node_selector: false,
        gpu_toleration: false,
    };
    let object = workload(&shape, &[json!({"name": "s", "image": IMAGES[0]})], &[]);
    let (_, d) = decide(&sets()[0].1, &object);
    assert!(!d.patch.is_empty());
}
