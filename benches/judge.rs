//! How long the engine takes to judge one typical GPU Deployment under the
//! built-in baseline, from JSON bytes (as the webhook receives them) to a
//! Decision. Results are recorded in docs/benchmarks.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use waf_admission::context::{Context, PdbRef, ScalerKind, ScalerRef};
use waf_admission::image::ImageRef;
use waf_admission::policy::WellArchitectedPolicy;
use waf_admission::policy::compiled::Policy;
use waf_admission::provenance::cosign::Layout;
use waf_admission::provenance::{Registry, RegistryConfig, Signed};
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let deadline = || Instant::now() + Duration::from_secs(4);
    c.bench_function(
        "webhook: /validate AdmissionReview bytes to response bytes",
        |b| {
            b.iter(|| {
                let r = runtime
                    .block_on(admission::review(
                        Endpoint::Validate,
                        black_box(&body),
                        &state,
                        &metrics,
                        None,
                        deadline(),
                        jiff::Timestamp::now(),
                    ))
                    .expect("valid review");
                black_box(admission::encode(&r).expect("encodes"))
            })
        },
    );

    // The same request under a policy that pins tags and verifies
    // signatures, with the registry's answers already cached: what every
    // request after the first costs. No network: the registry address is
    // unroutable, so a cache miss would show as a timeout, not a figure.
    let mut pinned = object.clone();
    let image = "contoso.azurecr.io/serving/vllm:v0.6.3";
    pinned["spec"]["template"]["spec"]["containers"][0]["image"] = serde_json::json!(image);
    let mut review = review.clone();
    review["request"]["object"] = pinned;
    let body = serde_json::to_vec(&review).expect("json");
    let policy: WellArchitectedPolicy = serde_yaml_ng::from_str(SIGNED_POLICY).expect("policy");
    let set = PolicySet::new(vec![Policy::compile(&policy).expect("compiles")]);
    let state = State::standalone(set.clone());
    let registry = Registry::new(RegistryConfig::default());
    let parsed = ImageRef::parse(image).expect("image");
    let digest = format!("sha256:{}", "ab".repeat(32));
    let keys = set.policies()[0]
        .image_provenance
        .as_ref()
        .and_then(|r| r.settings.fixed_keys())
        .expect("inline keys");
    runtime.block_on(async {
        registry.remember_digest(&parsed, &digest).await;
        registry
            .remember_verdict(
                &parsed,
                &digest,
                &keys,
                Signed::Verified {
                    key: "release".into(),
                    layout: Layout::Legacy,
                },
            )
            .await;
    });
    for (name, endpoint) in [
        (
            "webhook: /validate, tag pinned and signature verified from the cache",
            Endpoint::Validate,
        ),
        (
            "webhook: /mutate, tag pinned and signature verified from the cache",
            Endpoint::Mutate,
        ),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                let r = runtime
                    .block_on(admission::review(
                        endpoint,
                        black_box(&body),
                        &state,
                        &metrics,
                        Some(&registry),
                        deadline(),
                        jiff::Timestamp::now(),
                    ))
                    .expect("valid review");
                black_box(admission::encode(&r).expect("encodes"))
            })
        });
    }
}

/// The baseline's image-provenance, plus pinning and a required signature.
const SIGNED_POLICY: &str = r#"
apiVersion: waf-admission.dev/v1alpha1
kind: WellArchitectedPolicy
metadata: {name: signed}
spec:
  action: Deny
  rules:
    imageProvenance:
      resolveDigests: true
      signatures:
        keys:
          - name: release
            pem: |
              -----BEGIN PUBLIC KEY-----
              MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZo2n56al0yz2J1/jeKuReQiX2CwX
              cO9q10O3PWMdlxEEb97DcL/xSjrVuYZ1RB18lfDVh4fhWiQ8/CK3TSv5zA==
              -----END PUBLIC KEY-----
"#;

criterion_group!(benches, bench, bench_review);
criterion_main!(benches);
