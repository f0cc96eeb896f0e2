//! How long the engine takes to judge one typical GPU Deployment under the
//! built-in baseline, from JSON bytes (as the webhook receives them) to a
//! Decision. Results are recorded in docs/benchmarks.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use waf_admission::context::{Context, MetricsField, PdbRef, ScalerKind, ScalerRef, Signal};
use waf_admission::image::ImageRef;
use waf_admission::policy::compiled::Policy;
use waf_admission::provenance::Signed;
use waf_admission::provenance::cosign::Layout;
use waf_admission::provenance::registry::{Registry, RegistryConfig};
use waf_admission::state::State;
use waf_admission::webhook::admission::{self, Endpoint};
use waf_admission::webhook::metrics::Metrics;
use waf_admission::workload::Workload;
use waf_admission::{PolicySet, evaluate, judge};

const GPU_DEPLOYMENT: &str =
    include_str!("../tests/fixtures/workloads/compliant-gpu-deployment.yaml");
/// A vLLM Deployment the model-aware rules judge in full: a catalog model,
/// a pinned VM size, a context that fits.
const VLLM_ON_A10: &str =
    include_str!("../tests/fixtures/rules/model-fit/pass-8b-short-context-on-a10.yaml");
/// A KServe InferenceService in its `model:` form and the ServingRuntime it
/// names: read in its own fields, merged with the runtime, then judged.
const INFERENCE_SERVICE: &str = include_str!("../tests/fixtures/ai/inferenceservice/pass-ha.yaml");
const SERVING_RUNTIME: &str =
    include_str!("../tests/fixtures/ai/inferenceservice/servingruntime.yaml");

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
        signals: vec![Signal {
            source: "Pods".into(),
            metric: "vllm:num_requests_waiting".into(),
        }],
        metrics: MetricsField::List,
        own: None,
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
    // The model-aware rules' cost: the same Deployment under the baseline
    // with model-fit and gpu-right-size on (as shipped) and off.
    let vllm: serde_json::Value = serde_yaml_ng::from_str(VLLM_ON_A10).expect("fixture");
    let vllm = Workload::from_value(vllm, "ml")
        .expect("valid")
        .expect("workload");
    let mut off = waf_admission::policy::baseline::policy().expect("baseline");
    off.spec.rules.model_fit.action = Some(waf_admission::policy::Action::Off);
    off.spec.rules.gpu_right_size.action = Some(waf_admission::policy::Action::Off);
    let without = PolicySet::new(vec![Policy::compile(&off).expect("compiles")]);
    let d = judge(&set, &vllm, &ctx, now);
    assert!(d.violations.is_empty(), "{:?}", d.violations);
    c.bench_function("judge: vLLM on a pinned A10, model-aware rules on", |b| {
        b.iter(|| black_box(judge(&set, black_box(&vllm), &ctx, now)))
    });
    c.bench_function("judge: vLLM on a pinned A10, model-aware rules off", |b| {
        b.iter(|| black_box(judge(&without, black_box(&vllm), &ctx, now)))
    });
    // An InferenceService: its predictor read in its own fields, its model
    // container merged with the ServingRuntime it names.
    let mut ai_ctx = context();
    let runtime: serde_json::Value = serde_yaml_ng::from_str(SERVING_RUNTIME).expect("fixture");
    ai_ctx.add_serving_runtime(
        waf_admission::ai::ServingRuntime::from_value(&runtime, "bench").expect("a runtime"),
    );
    let isvc: serde_json::Value = serde_yaml_ng::from_str(INFERENCE_SERVICE).expect("fixture");
    let isvc_json = serde_json::to_vec(&isvc).expect("json");
    let parsed = Workload::from_value(isvc, "ml")
        .expect("valid")
        .expect("workload");
    assert!(!judge(&set, &parsed, &ai_ctx, now).denied());
    c.bench_function(
        "judge: InferenceService with its ServingRuntime from JSON bytes",
        |b| {
            b.iter(|| {
                let text = std::str::from_utf8(black_box(&isvc_json)).expect("utf-8");
                let w = Workload::from_json(text, "ml")
                    .expect("valid")
                    .expect("workload");
                black_box(judge(&set, &w, &ai_ctx, now))
            })
        },
    );
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

    // The same requests when the baseline also pins tags and requires a
    // signature, with the registry's answers already cached: what every
    // request after the first costs. /validate sees the pinned image (the
    // mutating webhook ran first); /mutate the tag, which it pins. Both
    // are measured under the plain baseline too, so the pairs compare.
    let pinned_image = object["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .expect("image")
        .to_owned();
    let tag_image = pinned_image.split('@').next().expect("tag").to_owned();
    let body_with = |image: &str| {
        let mut r = review.clone();
        r["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] =
            serde_json::json!(image);
        serde_json::to_vec(&r).expect("json")
    };
    let mut with_provenance = waf_admission::policy::baseline::policy().expect("baseline");
    let ip = &mut with_provenance.spec.rules.image_provenance;
    ip.resolve_digests = true;
    ip.signatures = Some(serde_yaml_ng::from_str(SIGNATURES).expect("signatures"));
    let set = PolicySet::new(vec![Policy::compile(&with_provenance).expect("compiles")]);
    let provenance_state = State::standalone(set.clone());
    let registry = Registry::new(RegistryConfig::default()).expect("registry client");
    let parsed = ImageRef::parse(&tag_image).expect("image");
    let digest = pinned_image.split('@').nth(1).expect("digest").to_owned();
    let keys = set.policies()[0]
        .rules
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
    let cases = [
        (
            "/validate pinned image, baseline",
            Endpoint::Validate,
            &pinned_image,
            false,
        ),
        (
            "/validate pinned image, baseline + signatures, cached",
            Endpoint::Validate,
            &pinned_image,
            true,
        ),
        ("/mutate tag, baseline", Endpoint::Mutate, &tag_image, false),
        (
            "/mutate tag, baseline + resolveDigests and signatures, cached",
            Endpoint::Mutate,
            &tag_image,
            true,
        ),
    ];
    for (name, endpoint, image, provenance) in cases {
        let body = body_with(image);
        let (state, registry) = if provenance {
            (&provenance_state, Some(&registry))
        } else {
            (&state, None)
        };
        // Once first: a cached answer admits; a miss would not.
        let first = runtime
            .block_on(admission::review(
                endpoint,
                &body,
                state,
                &metrics,
                registry,
                deadline(),
                jiff::Timestamp::now(),
            ))
            .expect("valid review");
        let answer = serde_json::to_value(&first).expect("json");
        assert_eq!(answer["response"]["allowed"], true, "{name}: {answer}");
        c.bench_function(&format!("webhook: {name}"), |b| {
            b.iter(|| {
                let r = runtime
                    .block_on(admission::review(
                        endpoint,
                        black_box(&body),
                        state,
                        &metrics,
                        registry,
                        deadline(),
                        jiff::Timestamp::now(),
                    ))
                    .expect("valid review");
                black_box(admission::encode(&r).expect("encodes"))
            })
        });
    }
}

/// A key nobody signs with: the verdict comes from the cache.
const SIGNATURES: &str = r#"
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
