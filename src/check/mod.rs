//! `waf-admission check`: the engine over files, giving the verdicts the
//! cluster would give. Autoscalers, PodDisruptionBudgets, namespaces and
//! exceptions in the input form the context, as the reflectors do in the cluster.

pub mod load;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use crate::context::{Context, Exception, PdbRef, ScalerRef};
use crate::decision::{Evaluation, evaluate};
use crate::error::Error;
use crate::policy::compiled::{Policy, PolicySet};
use crate::policy::{API_VERSION, WellArchitectedException, WellArchitectedPolicy};
use crate::workload::typed;

pub use load::{Document, Loaded, load};
pub use report::{Report, WorkloadResult};

/// Reads `--policy` files. Every document must be a WellArchitectedPolicy;
/// one bad policy refuses the whole set (never half-applied). No files:
/// the built-in baseline.
pub fn load_policies(paths: &[PathBuf]) -> Result<PolicySet, Vec<Error>> {
    if paths.is_empty() {
        return PolicySet::baseline().map_err(|e| vec![e]);
    }
    let loaded = load(paths);
    let mut errors = loaded.errors;
    errors.extend(
        loaded
            .skipped
            .into_iter()
            .map(|(at, why)| Error::input(at, format!("{why}; expected a WellArchitectedPolicy"))),
    );
    let mut policies = Vec::new();
    let mut names = BTreeSet::new();
    for doc in loaded.documents {
        let kind = doc
            .value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api_version = doc
            .value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind != "WellArchitectedPolicy" || api_version != API_VERSION {
            errors.push(Error::input(
                &doc.source,
                format!("expected {API_VERSION} WellArchitectedPolicy, found {api_version} {kind}"),
            ));
            continue;
        }
        let policy = typed::<WellArchitectedPolicy>(doc.value, &doc.source)
            .and_then(|p| Policy::compile(&p));
        match policy {
            Ok(p) if !names.insert(p.name.clone()) => errors.push(Error::input(
                &doc.source,
                format!(
                    "a second policy named {:?}; policy names are unique",
                    p.name
                ),
            )),
            Ok(p) => policies.push(p),
            Err(Error::Policy {
                kind,
                name,
                problems,
            }) => errors.push(Error::input(
                &doc.source,
                format!("{kind} {name} refused: {}", problems.join("; ")),
            )),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(PolicySet::new(policies))
    } else {
        Err(errors)
    }
}

/// Judges every workload in the input.
pub fn run(set: &PolicySet, loaded: Loaded, now: jiff::Timestamp) -> Report {
    let mut report = Report {
        errors: loaded.errors,
        skipped: loaded.skipped,
        ..Report::default()
    };
    let mut ctx = Context::default();
    let mut workloads = Vec::new();
    let mut others: BTreeMap<String, usize> = BTreeMap::new();
    for doc in loaded.documents {
        let kind = doc
            .value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let api_version = doc
            .value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match (api_version.as_str(), kind.as_str()) {
            ("v1", "Namespace") => {
                let meta = doc.value.get("metadata");
                let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
                let labels: BTreeMap<String, String> = meta
                    .and_then(|m| m.get("labels"))
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default();
                match name {
                    Some(n) => ctx.add_namespace(n, labels),
                    None => report
                        .errors
                        .push(Error::input(&doc.source, "Namespace without a name")),
                }
                *others.entry(kind).or_default() += 1;
            }
            ("autoscaling/v2beta1" | "autoscaling/v2beta2", "HorizontalPodAutoscaler") => {
                report.errors.push(Error::input(
                    &doc.source,
                    format!(
                        "HorizontalPodAutoscaler: apiVersion {api_version} is no longer served by \
                         Kubernetes (removed in 1.26); use autoscaling/v2"
                    ),
                ));
            }
            ("autoscaling/v2" | "autoscaling/v1", "HorizontalPodAutoscaler")
            | ("keda.sh/v1alpha1", "ScaledObject") => {
                match ScalerRef::from_value(doc.value, "default", &doc.source) {
                    Ok(Some(s)) => ctx.add_scaler(s),
                    Ok(None) => {}
                    Err(e) => report.errors.push(e),
                }
                *others.entry(kind).or_default() += 1;
            }
            ("policy/v1beta1", "PodDisruptionBudget") => {
                report.errors.push(Error::input(
                    &doc.source,
                    "PodDisruptionBudget: apiVersion policy/v1beta1 is no longer served by \
                     Kubernetes (removed in 1.25); use policy/v1",
                ));
            }
            ("policy/v1", "PodDisruptionBudget") => {
                match PdbRef::from_value(doc.value, "default", &doc.source) {
                    Ok(p) => ctx.add_pdb(p),
                    Err(e) => report.errors.push(e),
                }
                *others.entry(kind).or_default() += 1;
            }
            (API_VERSION, "WellArchitectedException") => {
                match typed::<WellArchitectedException>(doc.value, &doc.source)
                    .and_then(|e| Exception::compile(&e, "default"))
                {
                    Ok(e) => ctx.add_exception(e),
                    Err(e) => report.errors.push(Error::input(&doc.source, e.to_string())),
                }
                *others.entry(kind).or_default() += 1;
            }
            _ => workloads.push((doc, kind)),
        }
    }
    for (doc, kind) in workloads {
        match evaluate(set, &doc.value, "default", &ctx, now) {
            Ok(Some(eval)) => report.results.push(WorkloadResult::new(doc.source, eval)),
            Ok(None) => *others.entry(kind).or_default() += 1,
            Err(e) => report.errors.push(Error::input(&doc.source, e.to_string())),
        }
    }
    report.other_objects = others;
    report
}

impl WorkloadResult {
    fn new(source: String, eval: Evaluation) -> WorkloadResult {
        report::result(source, eval)
    }
}
