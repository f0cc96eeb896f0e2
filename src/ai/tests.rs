use serde_json::json;

use super::merge::{resolve, source_in};
use super::*;
use crate::context::Context;

fn read_one(object: Value) -> Workload {
    Workload::from_value(object, "ml").unwrap().unwrap()
}

fn runtime(name: &str, namespace: Option<&str>, extra: Value) -> ServingRuntime {
    let mut spec = json!({
        "supportedModelFormats": [{"name": "huggingface", "version": "1", "autoSelect": true,
            "priority": 1}],
        "protocolVersions": ["v2", "v1"],
        "containers": [{"name": "kserve-container", "image": "kserve/huggingfaceserver:latest",
            "args": ["--model_name={{.Name}}"],
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                "limits": {"cpu": "1", "memory": "2Gi"}}}],
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    let mut meta = json!({"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    let kind = if namespace.is_some() {
        "ServingRuntime"
    } else {
        "ClusterServingRuntime"
    };
    ServingRuntime::from_value(
        &json!({"apiVersion": "serving.kserve.io/v1alpha1", "kind": kind,
            "metadata": meta, "spec": spec}),
        "runtime",
    )
    .unwrap()
}

fn isvc(predictor: Value) -> Value {
    json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "qwen", "namespace": "ml", "labels": {"team": "a"}},
        "spec": {"predictor": predictor}})
}

fn model(extra: Value) -> Value {
    let mut m = json!({"modelFormat": {"name": "huggingface"},
        "storageUri": "hf://Qwen/Qwen2.5-7B-Instruct",
        "args": ["--backend=vllm"],
        "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "24Gi"}}});
    if let (Some(o), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    m
}

#[test]
fn an_inference_service_is_read_in_its_own_fields() {
    let w = read_one(isvc(json!({"minReplicas": 1, "model": model(json!({})),
        "containers": [{"name": "sidecar", "image": "contoso.azurecr.io/s:1"}]})));
    assert_eq!(w.kind, WorkloadKind::InferenceService);
    assert_eq!(w.replicas, Some(1));
    assert_eq!(w.replicas_path, "/spec/predictor/minReplicas");
    assert_eq!(w.pod_path, "/spec/predictor");
    // The model container first, at its own field; the others after it.
    assert_eq!(w.pod.containers[0].name, "kserve-container");
    assert_eq!(w.container_path(0), "/spec/predictor/model");
    assert_eq!(w.container_path(1), "/spec/predictor/containers/0");
    // The pods carry KServe's labels and the service's own.
    assert_eq!(w.template_labels[ISVC_LABEL], "qwen");
    assert_eq!(w.template_labels["app"], "isvc.qwen-predictor");
    assert_eq!(w.template_labels["team"], "a");
    // Knative by default: no ceiling, the floor minReplicas.
    let sc = w.own_scaler.as_deref().unwrap();
    assert_eq!(sc.kind, ScalerKind::KnativePodAutoscaler);
    assert_eq!((sc.min_replicas, sc.max_replicas), (1, i32::MAX));
    assert_eq!(sc.own, Some("/spec/predictor"));
}

#[test]
fn kserve_standard_mode_makes_an_hpa_fixed_at_its_floor_without_max_replicas() {
    let mut o = isvc(json!({"model": model(json!({}))}));
    o["metadata"]["annotations"] = json!({"serving.kserve.io/deploymentMode": "RawDeployment"});
    let w = read_one(o.clone());
    let sc = w.own_scaler.as_deref().unwrap();
    assert_eq!(sc.kind, ScalerKind::HorizontalPodAutoscaler);
    assert_eq!((sc.min_replicas, sc.max_replicas), (1, 1));
    assert_eq!(sc.signals[0].metric, "cpu");
    // minReplicas 0 still gives one replica under the HPA class.
    o["spec"]["predictor"]["minReplicas"] = json!(0);
    o["spec"]["predictor"]["maxReplicas"] = json!(4);
    let w = read_one(o.clone());
    let sc = w.own_scaler.as_deref().unwrap();
    assert_eq!((sc.min_replicas, sc.max_replicas), (1, 4));
    // KEDA keeps 0; the class `none` makes no autoscaler.
    o["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] = json!("keda");
    let sc = read_one(o.clone()).own_scaler.unwrap();
    assert_eq!((sc.kind, sc.min_replicas), (ScalerKind::ScaledObject, 0));
    o["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] = json!("none");
    assert!(read_one(o).own_scaler.is_none());
}

#[test]
fn the_model_runs_on_the_runtime_it_names_merged_as_kserve_merges_it() {
    let mut ctx = Context::default();
    ctx.add_serving_runtime(runtime(
        "kserve-huggingfaceserver",
        Some("ml"),
        json!({"tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu",
            "effect": "NoSchedule"}], "nodeSelector": {"pool": "gpu"}}),
    ));
    let w = read_one(isvc(
        json!({"model": model(json!({"runtime": "kserve-huggingfaceserver"})),
        "nodeSelector": {"pool": "a100"}}),
    ));
    let merged = resolve(&w, &ctx);
    let c = &merged.pod.containers[0];
    // The GPU request appends -gpu to the Hugging Face server's tag.
    assert_eq!(
        c.image.as_deref(),
        Some("kserve/huggingfaceserver:latest-gpu")
    );
    // Runtime args first, then the model's.
    assert_eq!(
        c.args.as_deref().unwrap(),
        ["--model_name={{.Name}}", "--backend=vllm"]
    );
    // The model's resources over the runtime's, key by key.
    let r = c.resources.as_ref().unwrap();
    assert_eq!(r.limits.as_ref().unwrap()["memory"].0, "24Gi");
    assert_eq!(r.limits.as_ref().unwrap()["cpu"].0, "1");
    assert_eq!(r.requests.as_ref().unwrap()["cpu"].0, "1");
    // What the predictor sets wins; tolerations add up.
    assert_eq!(merged.pod.node_selector.as_ref().unwrap()["pool"], "a100");
    assert_eq!(merged.pod.tolerations.as_ref().unwrap().len(), 1);
    assert_eq!(
        merged.runtime_source.as_deref(),
        Some("ServingRuntime ml/kserve-huggingfaceserver")
    );
    assert!(merged.unjudged.is_empty());
}

#[test]
fn a_digest_is_never_rewritten_and_runtime_version_replaces_the_tag() {
    let m = KserveModel {
        container: json!({}),
        runtime: None,
        format: None,
        format_version: None,
        protocol: "v1".into(),
        runtime_version: Some("v0.15.2".into()),
        multinode: false,
        chosen: None,
    };
    let mut ctx = Context::default();
    ctx.add_serving_runtime(runtime("kserve-huggingfaceserver", None, json!({})));
    let w = read_one(isvc(
        json!({"model": model(json!({"runtimeVersion": "v0.15.2"}))}),
    ));
    let merged = resolve(&w, &ctx);
    assert_eq!(
        merged.pod.containers[0].image.as_deref(),
        Some("kserve/huggingfaceserver:v0.15.2-gpu")
    );
    let pinned = format!("kserve/huggingfaceserver@sha256:{}", "a".repeat(64));
    let mut digest = runtime("pinned", None, json!({}));
    digest.spec["containers"][0]["image"] = json!(pinned);
    let c = super::merge::merge_container(&m, &digest, true).unwrap();
    assert_eq!(c.image.as_deref(), Some(pinned.as_str()));
}

#[test]
fn auto_selection_prefers_the_namespace_then_priority_and_skips_what_cannot_serve() {
    let mut ctx = Context::default();
    let mut low = runtime("low", None, json!({}));
    low.formats[0].3 = Some(1);
    let mut high = runtime("high", None, json!({}));
    high.formats[0].3 = Some(5);
    let mut disabled = runtime("disabled", None, json!({"disabled": true}));
    disabled.formats[0].3 = Some(9);
    let mut v2_only = runtime("v2-only", None, json!({"protocolVersions": ["v2"]}));
    v2_only.formats[0].3 = Some(9);
    for r in [low, high, disabled, v2_only] {
        ctx.add_serving_runtime(r);
    }
    let w = read_one(isvc(json!({"model": model(json!({}))})));
    assert_eq!(
        resolve(&w, &ctx).runtime_source.as_deref(),
        Some("ClusterServingRuntime high")
    );
    // A namespaced runtime comes before any cluster one.
    ctx.add_serving_runtime(runtime("mine", Some("ml"), json!({})));
    assert_eq!(
        resolve(&w, &ctx).runtime_source.as_deref(),
        Some("ServingRuntime ml/mine")
    );
    // One of another namespace never serves it.
    let mut other = Context::default();
    other.add_serving_runtime(runtime("theirs", Some("other"), json!({})));
    let r = resolve(&w, &other);
    assert!(r.runtime_source.is_none());
}

#[test]
fn without_its_runtime_the_rules_it_feeds_give_no_verdict() {
    let w = read_one(isvc(json!({"model": model(json!({"runtime": "missing"}))})));
    let r = resolve(&w, &Context::default());
    let rules: Vec<RuleId> = r.unjudged.iter().map(|(r, _)| *r).collect();
    assert_eq!(rules, RUNTIME_RULES);
    assert!(r.unjudged[0].1.contains("ServingRuntime missing"));
    // A custom container form needs no runtime.
    let w = read_one(isvc(json!({"containers": [{"name": "kserve-container",
        "image": "contoso.azurecr.io/vllm:1"}]})));
    assert!(resolve(&w, &Context::default()).unjudged.is_empty());
}

#[test]
fn a_leader_worker_set_counts_groups_and_judges_both_templates() {
    let template = |image: &str| {
        json!({"metadata": {"labels": {"role": "x"}}, "spec": {"containers": [{"name": "vllm",
            "image": image, "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}})
    };
    let w = read_one(json!({"apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet", "metadata": {"name": "llama"},
        "spec": {"replicas": 3, "leaderWorkerTemplate": {"size": 2,
            "leaderTemplate": template("leader:1"), "workerTemplate": template("worker:1")}}}));
    assert_eq!(w.replicas, Some(3));
    assert_eq!(w.pod_path, "/spec/leaderWorkerTemplate/leaderTemplate/spec");
    assert_eq!(w.template_labels[LWS_LABEL], "llama");
    assert_eq!(w.parts.len(), 1);
    let worker = &w.parts[0];
    assert_eq!(worker.part, Some("worker template"));
    assert_eq!(
        worker.container_path(0),
        "/spec/leaderWorkerTemplate/workerTemplate/spec/containers/0"
    );
    assert!(!worker.holds_replicas());
    assert!(w.holds_replicas());
    // The server spans the group's GPUs: the GPU-count rules stand aside.
    assert!(w.unjudged.iter().any(|(r, _)| *r == RuleId::ModelFit));
    assert!(
        worker
            .unjudged
            .iter()
            .any(|(r, _)| *r == RuleId::GpuRightSize)
    );
}

#[test]
fn a_leader_worker_set_without_a_leader_template_judges_the_worker_template_once() {
    let w = read_one(json!({"apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet", "metadata": {"name": "solo"},
        "spec": {"leaderWorkerTemplate": {"workerTemplate": {"spec": {"containers": [
            {"name": "c", "image": "x"}]}}}}}));
    assert_eq!(w.pod_path, "/spec/leaderWorkerTemplate/workerTemplate/spec");
    assert!(w.parts.is_empty());
    assert!(w.unjudged.is_empty());
}

#[test]
fn kaito_resources_name_their_vm_size_and_a_preset_has_nothing_of_the_users() {
    let ws = read_one(
        json!({"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
        "metadata": {"name": "phi"},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"a": "b"}}},
        "inference": {"preset": {"name": "phi-4-mini-instruct"}}}),
    );
    assert_eq!(
        ws.instance_type,
        Some(("Standard_NC6s_v3".into(), "/resource/instanceType"))
    );
    assert!(ws.pod.containers.is_empty());
    assert!(!ws.holds_replicas());
    let set = read_one(
        json!({"apiVersion": "kaito.sh/v1beta1", "kind": "InferenceSet",
        "metadata": {"name": "phis"},
        "spec": {"replicas": 2, "labelSelector": {"matchLabels": {"a": "b"}},
            "template": {"resource": {"instanceType": "Standard_NC24ads_A100_v4"},
                "inference": {"preset": {"name": "phi-4-mini-instruct"}}}}}),
    );
    assert_eq!(set.replicas, Some(2));
    assert_eq!(
        set.instance_type.as_ref().map(|t| t.1),
        Some("/spec/template/resource/instanceType")
    );
    assert_eq!(set.template_labels[INFERENCESET_LABEL], "phis");
}

#[test]
fn an_llm_inference_service_reads_replicas_or_scaling_and_its_other_templates() {
    let w = read_one(json!({"apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceService", "metadata": {"name": "q"},
        "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-7B-Instruct"},
            "scaling": {"minReplicas": 1, "maxReplicas": 3, "wva": {}},
            "template": {"containers": [{"name": "main", "image": "x:1"}]},
            "prefill": {"template": {"containers": [{"name": "main", "image": "x:1"}]}}}}));
    assert_eq!(w.replicas_path, "/spec/scaling/minReplicas");
    let sc = w.own_scaler.as_deref().unwrap();
    assert_eq!((sc.min_replicas, sc.max_replicas), (1, 3));
    assert_eq!(sc.signals[0].metric, "wva_desired_replicas");
    assert_eq!(w.parts[0].part, Some("prefill template"));
    assert_eq!(w.parts[0].pod_path, "/spec/prefill/template");
    // No template of its own: the image and probes are its config's.
    let inherited = read_one(json!({"apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "LLMInferenceService", "metadata": {"name": "r"},
        "spec": {"model": {"uri": "hf://x/y"}, "replicas": 2}}));
    let rules: Vec<RuleId> = inherited.unjudged.iter().map(|(r, _)| *r).collect();
    assert_eq!(rules, [RuleId::ImageProvenance, RuleId::Probes]);
}

#[test]
fn bad_fields_are_named_never_a_panic() {
    for (object, field) in [
        (isvc(json!("not a predictor")), "spec.predictor"),
        (
            isvc(json!({"minReplicas": "two"})),
            "spec.predictor.minReplicas",
        ),
        (
            isvc(json!({"model": {"resources": {"limits": "x"}}})),
            "spec.predictor.model",
        ),
        (
            json!({"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
                "metadata": {"name": "x"}, "spec": {"leaderWorkerTemplate": {}}}),
            "workerTemplate",
        ),
        (
            json!({"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "x"},
                "inference": {"template": []}}),
            "inference.template",
        ),
    ] {
        let e = Workload::from_value(object, "ml").unwrap_err().to_string();
        assert!(e.contains(field), "{field}: {e}");
    }
}

#[test]
fn an_operators_object_is_judged_through_its_source_only_when_proven() {
    let deployment = |owner_kind: &str, group: &str, uid: &str| {
        read_one(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "qwen-predictor", "ownerReferences": [{"apiVersion":
                format!("{group}/v1beta1"), "kind": owner_kind, "name": "qwen", "uid": uid,
                "controller": true}]},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                "metadata": {"labels": {"a": "b", ISVC_LABEL: "qwen"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]}}}}))
    };
    let mut ctx = Context::default();
    ctx.add_workload(
        WorkloadKind::InferenceService,
        "ml",
        "qwen",
        Some("u1".into()),
    );
    assert!(
        source_in(
            &deployment("InferenceService", "serving.kserve.io", "u1"),
            &ctx
        )
        .is_some()
    );
    // Another object of that name, or one of another kind: nothing proven.
    assert!(
        source_in(
            &deployment("InferenceService", "serving.kserve.io", "u2"),
            &ctx
        )
        .is_none()
    );
    assert!(source_in(&deployment("Workspace", "kaito.sh", "u1"), &ctx).is_none());
    // At admission the requester proves it: the operator, not a user.
    let d = deployment("InferenceService", "serving.kserve.io", "u9");
    let operators = OPERATOR_ACCOUNTS.map(str::to_owned).to_vec();
    assert!(operator_source(&d, OPERATOR_ACCOUNTS[0], &operators).is_some());
    assert!(operator_source(&d, "dev@example.com", &operators).is_none());
    assert!(
        operator_source(
            &d,
            "system:serviceaccount:ml:kserve-controller-manager",
            &operators
        )
        .is_none()
    );
}

#[test]
fn kserve_s_defaulter_writes_only_standard_or_modelmesh_and_never_over_a_named_mode() {
    use super::{default_deployment_mode, deployment_mode};
    let mut bare = json!({"metadata": {"name": "m", "annotations": null}, "spec": {}});
    assert!(!default_deployment_mode(&mut bare, "Knative"));
    assert_eq!(deployment_mode(&bare), "Knative");
    assert!(default_deployment_mode(&mut bare, "Standard"));
    assert_eq!(deployment_mode(&bare), "Standard");
    // Status and annotation win over the configured default.
    let mut running =
        json!({"metadata": {"name": "m"}, "status": {"deploymentMode": "Serverless"}});
    assert!(!default_deployment_mode(&mut running, "ModelMesh"));
    assert_eq!(deployment_mode(&running), "Knative");
}
