//! How long the engine takes to judge one typical GPU Deployment under the
//! built-in baseline, from JSON bytes (as the webhook receives them) to a
//! Decision. Results are recorded in docs/benchmarks.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use waf_admission::context::{Context, PdbRef, ScalerKind, ScalerRef};
use waf_admission::state::State;
use waf_admission::webhook::admission::{self, Endpoint};
use waf_admission::webhook::metrics::Metrics;
use waf_admission::workload::Workload;
use waf_admission::{PolicySet, evaluate, judge};

const GPU_DEPLOYMENT: &str =
    include_str!("../tests/fixtures/workloads/compliant-gpu-deployment.yaml");

fn context() -> Context {
    let mut ctx = Context::default();
    ctx.add_scaler(ScalerRef {
        kind: ScalerKind::HorizontalPodAutoscaler,
        namespace: "ml".into(),
        name: "llm".into(),
        target_kind: "Deployment".into(),
        target_name: "llm".into(),
        min_replicas: 2,
        max_replicas: 6,
    });
    // Its PodDisruptionBudget, so the compliant Deployment passes every rule.
    let pdb = serde_json::json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "llm", "namespace": "ml"},
        "spec": {"selector": {"matchLabels": {"app": "llm"}}, "maxUnavailable": 1}});
    ctx.add_pdb(PdbRef::from_value(pdb, "ml", "bench").expect("a valid budget"));
    ctx
}

fn bench(c: &mut Criterion) {
    let set = PolicySet::baseline().expect("baseline compiles");
    let ctx = context();
    let now = jiff::Timestamp::now();
    let value: serde_json::Value = serde_yaml_ng::from_str(GPU_DEPLOYMENT).expect("fixture");
    let json = serde_json::to_vec(&value).expect("json");
    let mut broken = value.clone();
    let spec = &mut broken["spec"]["template"]["spec"];
    if let Some(m) = spec.as_object_mut() {
        m.remove("tolerations");
        m.remove("topologySpreadConstraints");
    }

    c.bench_function("judge: compliant GPU Deployment from JSON bytes", |b| {
        b.iter(|| {
            let text = std::str::from_utf8(black_box(&json)).expect("utf-8");
            let w = Workload::from_json(text, "ml")
                .expect("valid")
                .expect("workload");
            black_box(judge(&set, &w, &ctx, now))
        })
    });
    let w = Workload::from_value(value.clone(), "ml")
        .expect("valid")
        .expect("workload");
    let d = judge(&set, &w, &ctx, now);
    assert!(
        d.violations.is_empty(),
        "the compliant Deployment must pass every rule: {:?}",
        d.violations
    );
    c.bench_function("judge: rules only (parsed workload)", |b| {
        b.iter(|| black_box(judge(&set, black_box(&w), &ctx, now)))
    });
    c.bench_function(
        "evaluate: GPU Deployment needing a patch (patch + re-judge)",
        |b| b.iter(|| black_box(evaluate(&set, black_box(&broken), "ml", &ctx, now).expect("ok"))),
    );
}

/// The webhook's whole answer without the network: AdmissionReview bytes
/// in, response bytes out (parse, judge, encode, metrics; logging is off
/// here, as no subscriber is installed).
fn bench_review(c: &mut Criterion) {
    let object: serde_json::Value = serde_yaml_ng::from_str(GPU_DEPLOYMENT).expect("fixture");
    let review = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "b5d1c6b2-8f0e-4d7e-9d0c-2b7f3f4c9a11",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "llm", "namespace": "ml", "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin"}, "object": object, "dryRun": false}});
    let body = serde_json::to_vec(&review).expect("json");
    let state = State::standalone(PolicySet::baseline().expect("baseline"));
    let metrics = Metrics::new();
    c.bench_function(
        "webhook: /validate AdmissionReview bytes to response bytes",
        |b| {
            b.iter(|| {
                let r = admission::review(
                    Endpoint::Validate,
                    black_box(&body),
                    &state,
                    &metrics,
                    jiff::Timestamp::now(),
                )
                .expect("valid review");
                black_box(admission::encode(&r).expect("encodes"))
            })
        },
    );
}

criterion_group!(benches, bench, bench_review);
criterion_main!(benches);
