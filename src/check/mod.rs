//! `waf-admission check`: the engine over files, giving the verdicts the
//! cluster would give. Autoscalers, PodDisruptionBudgets, DRA
//! ResourceClaims and ResourceClaimTemplates, namespaces and exceptions in
//! the input form the context, as the reflectors do in the cluster.

pub mod junit;
pub use crate::load::{self, at_document, load_policies};
pub mod report;
pub mod sarif;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use rayon::prelude::*;
use serde_json::Value;

use crate::context::{
    Context, DeviceClaimRef, Exception, PdbRef, ScalerRef, read_secret, secret_data,
};
use crate::decision::{Evaluation, Fixes, evaluate_with, fixes, registry_queries};
use crate::error::Error;
use crate::placement::NodeRef;
use crate::policy::compiled::PolicySet;
use crate::policy::{API_VERSION, WellArchitectedException};
use crate::prices::{self, PriceTable};
use crate::provenance::{self, Facts, Query};
use crate::workload::{Workload, WorkloadKind, typed};

pub use load::{Document, Loaded, load};
pub use report::{Report, WorkloadResult};

/// Judges every workload in the input, offline: nothing asks a registry.
pub fn run(set: &PolicySet, loaded: Loaded, now: jiff::Timestamp) -> Report {
    run_with(set, loaded, now, None)
}

/// Asks the registry for what a workload's policies need (`check
/// --resolve-digests`).
pub type Gather<'a> = &'a (dyn Fn(&[Query]) -> Facts + Sync);

/// [`run`], with `gather` answering registry queries when given.
pub fn run_with(
    set: &PolicySet,
    loaded: Loaded,
    now: jiff::Timestamp,
    gather: Option<Gather<'_>>,
) -> Report {
    run_priced(set, loaded, now, gather, None)
}

/// [`run_with`], with the VM prices of `--prices` in the context.
pub fn run_priced(
    set: &PolicySet,
    loaded: Loaded,
    now: jiff::Timestamp,
    gather: Option<Gather<'_>>,
    prices: Option<Arc<PriceTable>>,
) -> Report {
    let mut report = Report {
        errors: loaded.errors,
        skipped: loaded.skipped,
        policies: set.policies().iter().map(report::PolicyOut::of).collect(),
        ..Report::default()
    };
    if let Some(note) = prices_note(set, prices.as_deref(), now) {
        report.notes.push(note);
    }
    let mut ctx = Context::default();
    ctx.set_prices(prices);
    let mut workloads = Vec::new();
    let mut others: BTreeMap<String, usize> = BTreeMap::new();
    // Where the autoscalers, budgets and exceptions are, so a finding
    // about one points at its own lines.
    let mut located: Located = BTreeMap::new();
    // Where each named object was first seen: the same object twice in one
    // input is said (kubectl apply keeps the last).
    let mut seen: BTreeMap<(String, String, String), String> = BTreeMap::new();
    // KServe's default deployment mode and where it was read.
    let mut kserve_default: Option<(&'static str, String)> = None;
    for mut doc in loaded.documents {
        let kind = doc
            .value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let key = object_key(&doc.value, &kind);
        if let Some(key) = &key {
            if let Some(first) = seen.get(key) {
                let (kind, namespace, name) = key;
                report.notes.push(format!(
                    "{kind} {namespace}/{name} is in both {first} and {}: kubectl apply keeps the \
                     last; each is judged here",
                    doc.source
                ));
            } else {
                seen.insert(key.clone(), doc.source.clone());
            }
        }
        let api_version = doc
            .value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match (api_version.as_str(), kind.as_str()) {
            ("v1", "Namespace") => {
                match typed::<Namespace>(std::mem::take(&mut doc.value), &doc.source) {
                    Ok(ns) => match ns.metadata.name {
                        Some(n) => ctx.add_namespace(&n, ns.metadata.labels.unwrap_or_default()),
                        None => report
                            .errors
                            .push(Error::input(&doc.source, "Namespace without a name")),
                    },
                    Err(e) => report.errors.push(at_document(&doc, e)),
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
                locate(&mut located, &doc, &key);
                match ScalerRef::from_value(std::mem::take(&mut doc.value), "default", &doc.source)
                {
                    Ok(Some(s)) => ctx.add_scaler(s),
                    Ok(None) => {}
                    Err(e) => report.errors.push(at_document(&doc, e)),
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
                locate(&mut located, &doc, &key);
                match PdbRef::from_value(doc.value, "default", &doc.source) {
                    Ok(p) => ctx.add_pdb(p),
                    Err(e) => report.errors.push(e),
                }
                *others.entry(kind).or_default() += 1;
            }
            // What a pod's DRA claims name: a GPU device class makes it a GPU pod.
            (
                "resource.k8s.io/v1" | "resource.k8s.io/v1beta2" | "resource.k8s.io/v1beta1",
                "ResourceClaim" | "ResourceClaimTemplate",
            ) => {
                match DeviceClaimRef::from_value(
                    std::mem::take(&mut doc.value),
                    "default",
                    &doc.source,
                ) {
                    Ok(c) => ctx.add_device_claim(c),
                    Err(e) => report.errors.push(at_document(&doc, e)),
                }
                *others.entry(kind).or_default() += 1;
            }
            // Where pods can run: the node pools' labels, taints and GPUs.
            ("v1", "Node") => {
                match NodeRef::from_value(std::mem::take(&mut doc.value), &doc.source) {
                    Ok(n) => ctx.add_node(n),
                    Err(e) => report.errors.push(at_document(&doc, e)),
                }
                *others.entry(kind).or_default() += 1;
            }
            // Pull secrets and signing keys that policies name.
            ("v1", "Secret") => {
                match read_secret(std::mem::take(&mut doc.value), &doc.source) {
                    Ok(secret) => match &secret.metadata.name {
                        Some(n) => ctx.add_secret(n, secret_data(&secret)),
                        None => report
                            .errors
                            .push(Error::input(&doc.source, "Secret without a name")),
                    },
                    Err(e) => report.errors.push(at_document(&doc, e)),
                }
                *others.entry(kind).or_default() += 1;
            }
            ("serving.kserve.io/v1alpha1", "ServingRuntime" | "ClusterServingRuntime") => {
                match crate::ai::ServingRuntime::from_value(&doc.value, &doc.source) {
                    Ok(mut r) => {
                        if r.namespace.is_none() && kind == "ServingRuntime" {
                            r.namespace = Some("default".into());
                        }
                        ctx.add_serving_runtime(r);
                    }
                    Err(e) => report.errors.push(at_document(&doc, e)),
                }
                *others.entry(kind).or_default() += 1;
            }
            // KServe's config: the deployment mode of an InferenceService
            // that names none, as KServe's defaulter writes it.
            ("v1", "ConfigMap")
                if doc.value.pointer("/metadata/name").and_then(Value::as_str)
                    == Some(crate::ai::KSERVE_CONFIG) =>
            {
                match crate::ai::kserve_default_mode(&doc.value, &doc.source) {
                    Ok(Some(mode)) => kserve_default = Some((mode, doc.source.clone())),
                    Ok(None) => {}
                    Err(e) => report.errors.push(at_document(&doc, e)),
                }
                *others.entry(kind).or_default() += 1;
            }
            (API_VERSION, "WellArchitectedException") => {
                locate(&mut located, &doc, &key);
                match typed::<WellArchitectedException>(std::mem::take(&mut doc.value), &doc.source)
                    .map_err(|e| at_document(&doc, e))
                    .and_then(|e| Exception::compile(&e, "default"))
                {
                    Ok(e) => ctx.add_exception(e),
                    Err(e) => report.errors.push(Error::input(&doc.source, e.to_string())),
                }
                *others.entry(kind).or_default() += 1;
            }
            _ => {
                // Every workload in the input can prove itself the owner
                // of another one there (a `kubectl get deploy,rs,pods`
                // dump is judged once, through its Deployments).
                if let Some(wk) = WorkloadKind::from_type(&api_version, &kind) {
                    let meta = doc.value.get("metadata");
                    let field = |f: &str| meta.and_then(|m| m.get(f)).and_then(Value::as_str);
                    if let Some(name) = field("name") {
                        ctx.add_workload(
                            wk,
                            field("namespace").unwrap_or("default"),
                            name,
                            field("uid").map(str::to_owned),
                        );
                    }
                }
                workloads.push((doc, kind))
            }
        }
    }
    if let Some(note) = default_kserve_modes(&mut workloads, kserve_default) {
        report.notes.push(note);
    }
    // Every workload is judged on its own against the context the loop
    // above gathered: in parallel, collected back in input order.
    let judged: Vec<Judged> = workloads
        .into_par_iter()
        .map(|(doc, kind)| judge_document(set, &ctx, &located, &doc, kind, now, gather))
        .collect();
    for j in judged {
        match j {
            Judged::Result(r) => report.results.push(*r),
            Judged::Other(kind) => *others.entry(kind).or_default() += 1,
            Judged::Error(e) => report.errors.push(e),
        }
    }
    report.other_objects = others;
    report
}

/// KServe's defaulter runs before any validating webhook and writes the
/// configured deployment mode onto an InferenceService that names none;
/// `check` has no defaulter in front of it, so it does the same here,
/// with the mode of KServe's `inferenceservice-config` in the input, else
/// KServe's shipped default (Knative, written nowhere). Says what it
/// assumed, once.
fn default_kserve_modes(
    workloads: &mut [(Document, String)],
    configured: Option<(&'static str, String)>,
) -> Option<String> {
    let (mode, from) = match &configured {
        Some((mode, source)) => (*mode, Some(source.as_str())),
        None => ("Knative", None),
    };
    let mut unnamed = Vec::new();
    for (doc, kind) in workloads.iter_mut() {
        if kind != "InferenceService" || crate::ai::names_deployment_mode(&doc.value) {
            continue;
        }
        crate::ai::default_deployment_mode(&mut doc.value, mode);
        unnamed.push(doc.source.clone());
    }
    let first = unnamed.first()?;
    let which = match unnamed.len() {
        1 => format!("the InferenceService in {first} names"),
        n => format!("{n} InferenceServices (the first in {first}) name"),
    };
    Some(match from {
        Some(source) => format!(
            "{which} no deployment mode: judged in {mode} mode, the default of KServe's \
             {} in {source}",
            crate::ai::KSERVE_CONFIG
        ),
        None => format!(
            "{which} no deployment mode: judged in Knative mode, KServe's shipped default; \
             give KServe's ConfigMap {} in the input to judge with the cluster's",
            crate::ai::KSERVE_CONFIG
        ),
    })
}

/// Why cost-budget, where a policy turns it on, judges nothing: no table,
/// or one older than the policy allows. The rule itself says nothing then
/// (the webhook has no one to tell); `check` has.
fn prices_note(
    set: &PolicySet,
    prices: Option<&PriceTable>,
    now: jiff::Timestamp,
) -> Option<String> {
    let max_age = set
        .policies()
        .iter()
        .filter_map(|p| p.rules.cost_budget.as_ref())
        .map(|r| r.settings.max_age_days)
        .min()?;
    match prices {
        None => Some(
            "cost-budget is on but no price table was given (--prices FILE): it judged nothing"
                .into(),
        ),
        Some(t) if t.is_stale(now, max_age) => Some(format!(
            "cost-budget judged nothing: the price table of {} ({}) is older than \
             costBudget.maxAgeDays {max_age}; fetch it again with waf-admission prices",
            t.date(),
            t.source
        )),
        Some(_) => None,
    }
}

/// Reads `--prices` files: Retail Prices API pages, tables, or the
/// ConfigMap `waf-admission prices --configmap` writes. An API page is as
/// old as its file.
pub fn read_prices(paths: &[PathBuf]) -> Result<Option<PriceTable>, Vec<Error>> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        let read = std::fs::read_to_string(path).and_then(|text| {
            let modified = std::fs::metadata(path)?.modified()?;
            Ok((text, modified))
        });
        let (text, modified) = match read {
            Ok(r) => r,
            Err(source) => {
                errors.push(Error::Io {
                    path: path.clone(),
                    source,
                });
                continue;
            }
        };
        let written = jiff::Timestamp::try_from(modified).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        match prices::Document::parse(&text, &name) {
            Ok(doc) => docs.push((doc, name, written)),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(prices::combine(docs))
    } else {
        Err(errors)
    }
}

/// What became of one workload document.
enum Judged {
    Result(Box<WorkloadResult>),
    /// Not a kind the engine judges: counted under its kind.
    Other(String),
    Error(Error),
}

/// Documents by (kind, namespace, name), their values dropped.
type Located = BTreeMap<(String, String, String), Document>;

/// (kind, namespace, name) of a named object; no namespace is `default`.
fn object_key(object: &Value, kind: &str) -> Option<(String, String, String)> {
    let field = |f: &str| object.pointer(f).and_then(Value::as_str);
    let name = field("/metadata/name")?;
    let namespace = field("/metadata/namespace").unwrap_or("default");
    Some((kind.to_owned(), namespace.to_owned(), name.to_owned()))
}

fn locate(located: &mut Located, doc: &Document, key: &Option<(String, String, String)>) {
    if let Some(key) = key {
        located.insert(key.clone(), doc.clone_without_value());
    }
}

fn judge_document(
    set: &PolicySet,
    ctx: &Context,
    located: &Located,
    doc: &Document,
    kind: String,
    now: jiff::Timestamp,
    gather: Option<Gather<'_>>,
) -> Judged {
    let facts = match gather {
        Some(gather) => match Workload::from_value_ref(&doc.value, "default") {
            Ok(Some(w)) => gather(&registry_queries(set, &w, ctx, now)),
            _ => Facts::online(),
        },
        None => Facts::offline(provenance::CHECK_OFFLINE),
    };
    match evaluate_with(set, &doc.value, "default", ctx, &facts, now) {
        Ok(Some(eval)) => {
            let fixes = (!eval.decision.violations.is_empty()).then(|| {
                fixes(
                    set,
                    &doc.value,
                    &eval.workload,
                    ctx,
                    &facts,
                    &eval.decision,
                    now,
                )
            });
            let mut result = WorkloadResult::new(doc.source.clone(), fixes, eval);
            result.line = Some(doc.line as u32);
            for v in &mut result.violations {
                // A finding about an autoscaler or a budget is at its line.
                let at = match &mut v.object {
                    None => Some(doc),
                    Some(o) => {
                        let found =
                            located.get(&(o.kind.clone(), o.namespace.clone(), o.name.clone()));
                        o.source = found.map(|d| d.source.clone());
                        found
                    }
                };
                v.line = at.map(|d| d.line_near(&v.path) as u32);
            }
            // An exemption is at its exception's `rules`.
            for e in &mut result.exemptions {
                if let Some((namespace, name)) = e.exception.split_once('/') {
                    let key = (
                        "WellArchitectedException".to_owned(),
                        namespace.to_owned(),
                        name.to_owned(),
                    );
                    if let Some(d) = located.get(&key) {
                        e.source = Some(d.source.clone());
                        e.line = Some(d.line_near("/spec/rules") as u32);
                    }
                }
            }
            Judged::Result(Box::new(result))
        }
        Ok(None) => Judged::Other(kind),
        Err(e) => Judged::Error(at_document(doc, e)),
    }
}

impl WorkloadResult {
    fn new(source: String, fixes: Option<Fixes>, eval: Evaluation) -> WorkloadResult {
        report::result(source, fixes, eval)
    }
}
