//! How long the engine takes to judge one typical GPU Deployment under the
//! built-in baseline, from JSON bytes (as the webhook receives them) to a
//! Decision. Results are recorded in docs/benchmarks.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use waf_admission::context::{Context, ScalerKind, ScalerRef};
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
            let v: serde_json::Value = serde_json::from_slice(black_box(&json)).expect("json");
            let w = Workload::from_value(v, "ml")
                .expect("valid")
                .expect("workload");
            black_box(judge(&set, &w, &ctx, now))
        })
    });
    let w = Workload::from_value(value.clone(), "ml")
        .expect("valid")
        .expect("workload");
    c.bench_function("judge: rules only (parsed workload)", |b| {
        b.iter(|| black_box(judge(&set, black_box(&w), &ctx, now)))
    });
    c.bench_function(
        "evaluate: GPU Deployment needing a patch (patch + re-judge)",
        |b| b.iter(|| black_box(evaluate(&set, black_box(&broken), "ml", &ctx, now).expect("ok"))),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
