//! Fixtures for rule tests: compliant workloads to break one field at a
//! time, and helpers that apply a rule's patch with json-patch.

use json_patch::PatchOperation;
use serde_json::Value;

use super::{Outcome, PolicyFacts, Rule, Subject};
use crate::context::{Context, PdbRef, ScalerKind, ScalerRef};
use crate::gpu::GpuResources;
use crate::provenance::Facts;
use crate::workload::Workload;

/// What compiling reads of a policy besides the rule's spec: the built-in
/// GPUs.
pub fn policy_facts() -> PolicyFacts<'static> {
    static GPUS: std::sync::LazyLock<GpuResources> =
        std::sync::LazyLock::new(GpuResources::builtin);
    PolicyFacts {
        gpus: &GPUS,
        replica_floor: 2,
        prometheus_server: "http://prometheus-operated.monitoring.svc:9090",
        price_region: "",
    }
}

/// A rule's settings compiled from `spec`, failing the test on a problem.
pub fn settings_of<R: Rule>(spec: &R) -> R::Settings {
    let mut problems = vec![];
    let s = spec.compile(&policy_facts(), R::ID.key(), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    s
}

/// A rule's settings from its spec's defaults: the baseline's values.
pub fn defaults<R: Rule>() -> R::Settings {
    settings_of(&R::default())
}

/// When tests judge: the day after [`prices_of`]'s table was made.
pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::constant(1_796_169_600, 0) // 2026-12-02T00:00:00Z
}

/// A price table of one region, dated the day before [`now`].
pub fn prices_of(region: &str, sizes: &[(&str, f64)]) -> crate::prices::PriceTable {
    let mut yaml = format!(
        "schema: {}\ncurrency: USD\nhoursPerMonth: 730\nsource: test\n\
         generatedAt: 2026-12-01T00:00:00Z\nregions:\n  {region}:\n",
        crate::prices::SCHEMA
    );
    for (size, payg) in sizes {
        yaml.push_str(&format!("    {size}: {{payg: {payg}}}\n"));
    }
    crate::prices::PriceTable::parse(&yaml, "test prices").expect("test prices parse")
}

/// The subject of a rule's check: `w` in an empty cluster (no
/// autoscalers, budgets or claims; the registry offline). Tests set the
/// fields they need: `Subject { scalers: &[&hpa], ..on(&w) }`.
pub fn on(w: &Workload) -> Subject<'_> {
    static EMPTY: std::sync::LazyLock<(Context, Facts)> =
        std::sync::LazyLock::new(|| (Context::default(), Facts::offline("offline")));
    Subject {
        workload: w,
        ctx: &EMPTY.0,
        scalers: &[],
        pdbs: &[],
        facts: &EMPTY.1,
        now: now(),
    }
}

/// `w` with the autoscalers that target it.
pub fn with_scalers<'a>(w: &'a Workload, scalers: &'a [&'a ScalerRef]) -> Subject<'a> {
    Subject { scalers, ..on(w) }
}

/// `w` with the PodDisruptionBudgets that select it.
pub fn with_pdbs<'a>(w: &'a Workload, pdbs: &'a [&'a PdbRef]) -> Subject<'a> {
    Subject { pdbs, ..on(w) }
}

/// `w` in a cluster that holds `ctx` (DRA claims, Secrets, namespaces).
pub fn in_context<'a>(w: &'a Workload, ctx: &'a Context) -> Subject<'a> {
    Subject { ctx, ..on(w) }
}

/// Runs a rule on one object, as a policy that lets it patch would, in an
/// empty cluster: no autoscalers, budgets or claims; the registry offline.
pub fn run_rule<R: Rule>(obj: &Value, settings: &R::Settings) -> Outcome {
    R::check(&on(&workload(obj)), settings, true)
}

fn fixture(yaml: &str) -> Value {
    serde_yaml_ng::from_str(yaml).expect("fixture parses")
}

/// A GPU model server that passes every rule of the baseline.
pub fn gpu_deployment() -> Value {
    fixture(include_str!(
        "../../tests/fixtures/workloads/compliant-gpu-deployment.yaml"
    ))
}

/// A CPU model server that passes every rule of the baseline.
pub fn cpu_deployment() -> Value {
    fixture(include_str!(
        "../../tests/fixtures/workloads/compliant-cpu-deployment.yaml"
    ))
}

/// The GPU deployment's pod, bare.
pub fn gpu_pod() -> Value {
    let d = gpu_deployment();
    let mut meta = d["spec"]["template"]["metadata"].clone();
    meta["name"] = "llm-0".into();
    meta["namespace"] = "ml".into();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": meta,
        "spec": d["spec"]["template"]["spec"].clone(),
    })
}

/// The first app container of a Deployment's pod template, to break.
pub fn container(d: &mut Value) -> &mut Value {
    &mut d["spec"]["template"]["spec"]["containers"][0]
}

pub fn workload(obj: &Value) -> Workload {
    Workload::from_value(obj.clone(), "default")
        .expect("fixture is a valid workload")
        .expect("fixture is a workload kind")
}

/// Applies a patch as the apiserver would, failing the test on a bad patch.
pub fn apply(obj: &Value, patch: &[PatchOperation]) -> Value {
    let mut out = obj.clone();
    json_patch::patch(&mut out, patch).expect("patch applies");
    out
}

pub fn remove_pod_field(obj: &mut Value, field: &str) {
    obj["spec"]["template"]["spec"]
        .as_object_mut()
        .expect("pod spec")
        .remove(field);
}

pub fn scaler(target: &str, min: i32, max: i32) -> ScalerRef {
    ScalerRef {
        kind: ScalerKind::HorizontalPodAutoscaler,
        namespace: "ml".into(),
        name: target.into(),
        target_kind: "Deployment".into(),
        target_name: target.into(),
        min_replicas: min,
        max_replicas: max,
        signals: vec![crate::context::Signal {
            source: "Resource".into(),
            metric: "cpu".into(),
        }],
        metrics: crate::context::MetricsField::List,
        own: None,
    }
}
