//! What needs the cluster's context to judge an AI-serving resource: the
//! ServingRuntime an InferenceService's `model:` runs on, merged as KServe
//! merges it, and whether an operator's object comes from a resource in
//! the input (offline and in the audit).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde_json::Value;

use super::{
    ISVC_LABEL, KSERVE_CONTAINER, KserveModel, LWS_LABEL, RUNTIME_RULES, ServingRuntime, made_from,
};
use crate::context::Context;
use crate::workload::{Owner, Workload, WorkloadKind};

/// The view to judge: an InferenceService's `model:` container merged
/// with the ServingRuntime KServe would use, as KServe merges it (the
/// runtime container under the model's fields, args concatenated, the
/// pod's node selection and tolerations over the runtime's, the tag
/// rewritten). Where no runtime can be found the rules it feeds give no
/// verdict. Every other workload is judged as it is.
pub fn resolve<'a>(w: &'a Workload, ctx: &Context) -> Cow<'a, Workload> {
    let Some(model) = w.kserve.as_deref() else {
        return Cow::Borrowed(w);
    };
    let mut out = w.clone();
    out.kserve = None;
    let Some(runtime) = choose_runtime(model, &w.namespace, ctx) else {
        let why = match &model.runtime {
            Some(name) => format!(
                "its ServingRuntime {name} (which supplies the image, probes and tolerations) is \
                 not known here"
            ),
            None => format!(
                "no known ServingRuntime supports model format {} (it supplies the image, probes \
                 and tolerations)",
                model.format.as_deref().unwrap_or("(none)")
            ),
        };
        out.unjudged
            .extend(RUNTIME_RULES.iter().map(|r| (*r, why.clone())));
        return Cow::Owned(out);
    };
    let gpu = out.pod.containers.first().is_some_and(|c| {
        c.resources.as_ref().is_some_and(|r| {
            r.limits
                .iter()
                .chain(r.requests.iter())
                .flatten()
                .any(|(k, _)| k.ends_with("/gpu"))
        })
    });
    if let Some(c) = merge_container(model, runtime, gpu) {
        out.pod.containers[0] = c;
    }
    merge_pod(&mut out.pod, &runtime.spec);
    out.runtime_source = Some(runtime.display_name());
    Cow::Owned(out)
}

/// The runtime KServe uses: the one status records, else the named one
/// (namespaced first), else the auto-selected one.
fn choose_runtime<'a>(
    model: &KserveModel,
    namespace: &str,
    ctx: &'a Context,
) -> Option<&'a ServingRuntime> {
    let runtimes = ctx.serving_runtimes();
    let named = |cluster: bool, name: &str| {
        runtimes.iter().find(|r| {
            r.name == name
                && match (&r.namespace, cluster) {
                    (Some(ns), false) => ns == namespace,
                    (None, true) => true,
                    _ => false,
                }
        })
    };
    if let Some((cluster, name)) = &model.chosen {
        return named(*cluster, name);
    }
    if let Some(name) = &model.runtime {
        return named(false, name).or_else(|| named(true, name));
    }
    let format = model.format.as_deref()?;
    let version = model.format_version.as_deref();
    let eligible = |r: &&ServingRuntime| {
        !r.disabled
            && !r.multi_model
            && r.protocols.contains(&model.protocol)
            && r.has_worker_spec == model.multinode
            && r.auto_priority(format, version).is_some()
    };
    let best = |cluster: bool| {
        runtimes
            .iter()
            .filter(|r| match &r.namespace {
                Some(ns) => !cluster && ns == namespace,
                None => cluster,
            })
            .filter(eligible)
            .max_by(|a, b| {
                a.auto_priority(format, version)
                    .cmp(&b.auto_priority(format, version))
                    .then_with(|| a.created.cmp(&b.created))
                    .then_with(|| b.name.cmp(&a.name))
            })
    };
    best(false).or_else(|| best(true))
}

/// The model container over the runtime's `kserve-container` (or its
/// first): the model's fields win, `args` are the runtime's then the
/// model's, `env` and `volumeMounts` merge by name. The image's tag is then
/// rewritten as KServe does: never under a digest; `runtimeVersion`
/// replaces it.
pub(super) fn merge_container(
    model: &KserveModel,
    runtime: &ServingRuntime,
    gpu: bool,
) -> Option<Container> {
    let containers = runtime.spec.get("containers")?.as_array()?;
    let base = containers
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(KSERVE_CONTAINER))
        .or_else(|| containers.first())?;
    let mut merged = base.clone();
    let (Some(m), Some(over)) = (merged.as_object_mut(), model.container.as_object()) else {
        return None;
    };
    for (k, v) in over {
        match (k.as_str(), m.get_mut(k)) {
            ("args", Some(Value::Array(base))) => {
                if let Some(extra) = v.as_array() {
                    base.extend(extra.iter().cloned());
                }
            }
            ("env" | "volumeMounts", Some(Value::Array(base))) => {
                let key = if k == "env" { "name" } else { "mountPath" };
                for item in v.as_array().into_iter().flatten() {
                    let id = item.get(key);
                    match base.iter_mut().find(|b| b.get(key) == id) {
                        Some(slot) => *slot = item.clone(),
                        None => base.push(item.clone()),
                    }
                }
            }
            ("resources", Some(Value::Object(base))) => {
                for (part, values) in v.as_object().into_iter().flatten() {
                    match (base.get_mut(part), values.as_object()) {
                        (Some(Value::Object(b)), Some(vals)) => {
                            b.extend(vals.iter().map(|(k, v)| (k.clone(), v.clone())));
                        }
                        _ => {
                            base.insert(part.clone(), values.clone());
                        }
                    }
                }
            }
            _ => {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(image) = m.get("image").and_then(Value::as_str).map(str::to_owned) {
        m.insert(
            "image".into(),
            Value::String(rewrite_tag(&image, model, &runtime.name, gpu)),
        );
    }
    m.insert("name".into(), Value::String(KSERVE_CONTAINER.into()));
    serde_json::from_value(merged).ok()
}

/// KServe's tag rewrite: none under a digest; `runtimeVersion` replaces
/// the tag; a GPU request appends `-gpu` for the Hugging Face, TF Serving
/// and TorchServe servers.
fn rewrite_tag(image: &str, model: &KserveModel, runtime: &str, gpu: bool) -> String {
    if image.contains('@') {
        return image.to_owned();
    }
    let (repo, tag) = match image.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (image, None),
    };
    let mut tag = model.runtime_version.clone().or(tag.map(str::to_owned));
    let gpu_suffixed = ["huggingfaceserver", "tfserving", "torchserve"]
        .iter()
        .any(|s| runtime.contains(s));
    if gpu
        && gpu_suffixed
        && let Some(t) = &mut tag
        && !t.ends_with("-gpu")
    {
        t.push_str("-gpu");
    }
    match tag {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_owned(),
    }
}

/// The predictor's node selection, affinity, tolerations and pull secrets
/// over the runtime's (what the predictor sets wins; tolerations add).
fn merge_pod(pod: &mut PodSpec, runtime: &Value) {
    let read = |k: &str| runtime.get(k).filter(|v| !v.is_null()).cloned();
    if let Some(Ok(sel)) =
        read("nodeSelector").map(serde_json::from_value::<BTreeMap<String, String>>)
    {
        let mine = pod.node_selector.get_or_insert_with(BTreeMap::new);
        for (k, v) in sel {
            mine.entry(k).or_insert(v);
        }
    }
    if pod.affinity.is_none()
        && let Some(Ok(a)) = read("affinity").map(serde_json::from_value)
    {
        pod.affinity = Some(a);
    }
    if let Some(Ok(t)) = read("tolerations").map(serde_json::from_value::<Vec<_>>) {
        let mine = pod.tolerations.get_or_insert_with(Vec::new);
        for tol in t {
            if !mine.contains(&tol) {
                mine.push(tol);
            }
        }
    }
    if let Some(Ok(s)) = read("imagePullSecrets").map(serde_json::from_value::<Vec<_>>) {
        let mine = pod.image_pull_secrets.get_or_insert_with(Vec::new);
        for sec in s {
            if !mine.contains(&sec) {
                mine.push(sec);
            }
        }
    }
}

/// The resource `w` was made from, proven offline or in the audit: its
/// controller makes objects of `w`'s kind, and the resource is in the
/// input with the uid the reference names. A Knative Revision stands for
/// the InferenceService its label names, a leader Pod for the
/// LeaderWorkerSet its label names (both must be in the input by name).
pub fn source_in<'a>(w: &'a Workload, ctx: &Context) -> Option<&'a Owner> {
    let owner = w.controller()?;
    if !made_from(owner, w.kind) {
        return None;
    }
    let by_label = |kind: WorkloadKind, label: &str| {
        let name = w
            .labels
            .get(label)
            .or_else(|| w.template_labels.get(label))?;
        ctx.knows_name(kind, &w.namespace, name).then_some(owner)
    };
    match (owner.kind.as_str(), w.kind) {
        ("Revision", _) => by_label(WorkloadKind::InferenceService, ISVC_LABEL),
        ("Pod", _) => by_label(WorkloadKind::LeaderWorkerSet, LWS_LABEL),
        (kind, _) => {
            let parent = WorkloadKind::ALL
                .into_iter()
                .find(|k| k.as_str() == kind && k.resource().0 == owner.group)?;
            ctx.knows_workload(parent, &w.namespace, &owner.name, &owner.uid)
                .then_some(owner)
        }
    }
}
