//! Is this workload model serving? The answer and its reason go in every
//! result (`inferenceReason`), so a user can see why a rule applied — or
//! why none did.

use crate::context::Context;
use crate::gpu::GpuResources;
use crate::image::ImageRef;
use crate::workload::{Workload, WorkloadKind};

/// The label that declares a workload model-serving (`inference`) or, where
/// a policy allows opting out, not (`false`).
pub const WORKLOAD_LABEL: &str = "waf-admission.dev/workload";

/// Labels that serving frameworks put on their pods: (key, accepted values;
/// empty means any value).
const SERVING_LABELS: &[(&str, &[&str])] = &[
    ("serving.kserve.io/inferenceservice", &[]),
    ("kaito.sh/workspace", &[]),
    (
        "app.kubernetes.io/component",
        &["inference", "model-server", "predictor"],
    ),
];

/// Known model-server images, matched on the repository (registry-agnostic,
/// since teams mirror them into their own registries).
enum ImagePattern {
    /// The last path component is exactly this.
    Name(&'static str),
    /// The repository path contains this sequence of components.
    Path(&'static str),
}

const SERVING_IMAGES: &[(ImagePattern, &str)] = &[
    (ImagePattern::Name("vllm-openai"), "vLLM"),
    (ImagePattern::Path("vllm/vllm"), "vLLM"),
    (ImagePattern::Name("tritonserver"), "NVIDIA Triton"),
    (
        ImagePattern::Name("text-generation-inference"),
        "Hugging Face TGI",
    ),
    (
        ImagePattern::Name("text-embeddings-inference"),
        "Hugging Face TEI",
    ),
    (ImagePattern::Path("ollama/ollama"), "Ollama"),
    (ImagePattern::Path("nim/"), "NVIDIA NIM"),
    (ImagePattern::Name("sklearnserver"), "KServe"),
    (ImagePattern::Name("xgbserver"), "KServe"),
    (ImagePattern::Name("lgbserver"), "KServe"),
    (ImagePattern::Name("pmmlserver"), "KServe"),
    (ImagePattern::Name("paddleserver"), "KServe"),
    (ImagePattern::Name("huggingfaceserver"), "KServe"),
    (ImagePattern::Name("torchserve"), "TorchServe"),
    (
        ImagePattern::Path("tensorflow/serving"),
        "TensorFlow Serving",
    ),
    (ImagePattern::Name("mlserver"), "Seldon MLServer"),
    (
        ImagePattern::Path("openvino/model_server"),
        "OpenVINO Model Server",
    ),
    (ImagePattern::Name("sglang"), "SGLang"),
    (ImagePattern::Name("llama.cpp"), "llama.cpp server"),
    (ImagePattern::Name("localai"), "LocalAI"),
    (ImagePattern::Path("aks/kaito/"), "KAITO"),
];

/// Images under a serving pattern that are operators or tools, not model
/// servers: KAITO's own controller and node provisioner.
const NOT_SERVERS: &[&str] = &["aks/kaito/workspace", "aks/kaito/gpu-provisioner"];

/// The outcome of detection, before any policy's opt-out rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// Why the workload is model serving; None when nothing says so.
    pub reason: Option<String>,
    /// The workload carries `waf-admission.dev/workload: "false"`.
    pub opted_out: bool,
}

/// `ctx` holds the ResourceClaims and ResourceClaimTemplates a pod's DRA
/// claims may name.
pub fn detect(w: &Workload, gpus: &GpuResources, ctx: &Context) -> Detection {
    let label = |key: &str| {
        w.labels
            .get(key)
            .or_else(|| w.template_labels.get(key))
            .map(String::as_str)
    };
    let opted_out = label(WORKLOAD_LABEL) == Some("false");
    Detection {
        reason: reason(w, gpus, ctx, &label),
        opted_out,
    }
}

fn reason<'a>(
    w: &'a Workload,
    gpus: &GpuResources,
    ctx: &Context,
    label: &dyn Fn(&str) -> Option<&'a str>,
) -> Option<String> {
    if label(WORKLOAD_LABEL) == Some("inference") {
        return Some(format!("label {WORKLOAD_LABEL}=inference"));
    }
    // What these resources are for is serving a model.
    match w.kind {
        WorkloadKind::InferenceService | WorkloadKind::LLMInferenceService => {
            return Some(format!("a KServe {}", w.kind));
        }
        WorkloadKind::Workspace | WorkloadKind::InferenceSet => {
            return Some(format!("a KAITO {}", w.kind));
        }
        _ => {}
    }
    if let Some(gpu) = gpus.used_by(w, ctx) {
        return Some(gpu.describe());
    }
    for (key, values) in SERVING_LABELS {
        if let Some(v) = label(key)
            && (values.is_empty() || values.contains(&v))
        {
            return Some(format!("label {key}={v}"));
        }
    }
    w.images().find_map(|c| {
        let image = ImageRef::parse(c.reference?).ok()?;
        let is = |n: &&str| {
            image.repository == *n
                || image
                    .repository
                    .strip_suffix(*n)
                    .is_some_and(|head| head.ends_with('/'))
        };
        if NOT_SERVERS.iter().any(is) {
            return None;
        }
        let (_, server) = SERVING_IMAGES
            .iter()
            .find(|(p, _)| matches(p, &image.repository))?;
        Some(format!(
            "{} {} {server} ({})",
            c.who,
            if c.volume { "mounts" } else { "runs" },
            image.repository
        ))
    })
}

fn matches(p: &ImagePattern, repository: &str) -> bool {
    let components: Vec<&str> = repository.split('/').collect();
    match p {
        ImagePattern::Name(n) => components.last() == Some(n),
        ImagePattern::Path(seq) => {
            // `nim/` names a folder: something must follow it.
            let folder = seq.ends_with('/');
            let wanted: Vec<&str> = seq.trim_end_matches('/').split('/').collect();
            components.windows(wanted.len()).enumerate().any(|(i, w)| {
                w == wanted.as_slice() && (!folder || i + wanted.len() < components.len())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::*;
    use serde_json::json;

    fn detect_json(obj: &serde_json::Value) -> Detection {
        detect(
            &workload(obj),
            &GpuResources::builtin(),
            &Context::default(),
        )
    }

    fn plain() -> serde_json::Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})
    }

    #[test]
    fn an_ordinary_web_server_is_not_inference() {
        assert_eq!(
            detect_json(&plain()),
            Detection {
                reason: None,
                opted_out: false
            }
        );
    }

    #[test]
    fn a_gpu_request_makes_it_inference() {
        assert_eq!(
            detect_json(&gpu_deployment()).reason.as_deref(),
            Some("container \"llm\" requests nvidia.com/gpu")
        );
    }

    #[test]
    fn a_dra_claim_of_a_gpu_class_makes_it_inference_and_says_through_what() {
        use crate::context::DeviceClaimRef;
        let mut d = plain();
        d["metadata"]["namespace"] = json!("ml");
        d["spec"]["template"]["spec"]["resourceClaims"] =
            json!([{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}]);
        let gpus = GpuResources::builtin();
        assert_eq!(
            detect(&workload(&d), &gpus, &Context::default()).reason,
            None,
            "a template the context does not hold says nothing"
        );
        let template: serde_json::Value = serde_yaml_ng::from_str(
            "apiVersion: resource.k8s.io/v1\nkind: ResourceClaimTemplate\n\
             metadata: {name: one-gpu, namespace: ml}\n\
             spec: {spec: {devices: {requests: [{name: gpu, exactly: {deviceClassName: gpu.nvidia.com}}]}}}\n",
        )
        .unwrap();
        let mut ctx = Context::default();
        ctx.add_device_claim(DeviceClaimRef::from_value(template, "default", "t").unwrap());
        assert_eq!(
            detect(&workload(&d), &gpus, &ctx).reason.as_deref(),
            Some(
                "the pod claims a GPU through DRA (ResourceClaimTemplate \"one-gpu\", device \
                 class gpu.nvidia.com)"
            )
        );
        // The same name in another namespace is another template.
        d["metadata"]["namespace"] = json!("shop");
        assert_eq!(detect(&workload(&d), &gpus, &ctx).reason, None);
    }

    #[test]
    fn the_explicit_label_wins_and_says_so() {
        assert_eq!(
            detect_json(&cpu_deployment()).reason.as_deref(),
            Some("label waf-admission.dev/workload=inference")
        );
    }

    #[test]
    fn serving_framework_labels_are_recognised() {
        for (k, v) in [
            ("serving.kserve.io/inferenceservice", "sklearn-iris"),
            ("kaito.sh/workspace", "workspace-phi-3"),
            ("app.kubernetes.io/component", "predictor"),
        ] {
            let mut d = plain();
            d["spec"]["template"]["metadata"]["labels"][k] = json!(v);
            assert_eq!(detect_json(&d).reason, Some(format!("label {k}={v}")));
        }
        let mut d = plain();
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] =
            json!("frontend");
        assert_eq!(detect_json(&d).reason, None);
    }

    #[test]
    fn serving_images_are_recognised_wherever_they_are_mirrored() {
        for (image, server) in [
            ("vllm/vllm-openai:v0.6.3", "vLLM"),
            ("contoso.azurecr.io/mirror/vllm/vllm-openai:v0.6.3", "vLLM"),
            ("nvcr.io/nvidia/tritonserver:24.05-py3", "NVIDIA Triton"),
            (
                "ghcr.io/huggingface/text-generation-inference:2.4",
                "Hugging Face TGI",
            ),
            ("ollama/ollama:0.3.12", "Ollama"),
            ("nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3", "NVIDIA NIM"),
            ("kserve/sklearnserver:v0.14.0", "KServe"),
            (
                "mcr.microsoft.com/aks/kaito/kaito-phi-3-mini-4k-instruct:0.0.2",
                "KAITO",
            ),
        ] {
            let mut d = plain();
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
            let reason = detect_json(&d).reason.unwrap_or_default();
            assert!(reason.contains(server), "{image}: {reason}");
        }
        for image in [
            "nginx:1.27",
            "contoso.azurecr.io/nimbus/api:1",
            "redis:7",
            "mcr.microsoft.com/aks/kaito/workspace:0.4.6",
            "mcr.microsoft.com/aks/kaito/gpu-provisioner:0.3.5",
        ] {
            let mut d = plain();
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
            assert_eq!(detect_json(&d).reason, None, "{image}");
        }
    }

    #[test]
    fn a_serving_image_mounted_as_an_image_volume_is_recognised() {
        let mut d = plain();
        d["spec"]["template"]["spec"]["volumes"] = json!([
            {"name": "cache", "emptyDir": {}},
            {"name": "server", "image": {"reference": "contoso.azurecr.io/vllm/vllm-openai:v0.6.3"}}
        ]);
        let reason = detect_json(&d).reason.expect("detected");
        assert_eq!(
            reason, "volume \"server\" mounts vLLM (vllm/vllm-openai)",
            "{reason}"
        );
    }

    #[test]
    fn the_opt_out_label_is_reported_not_decided_here() {
        let mut d = gpu_deployment();
        d["metadata"]["labels"][WORKLOAD_LABEL] = json!("false");
        let det = detect_json(&d);
        assert!(det.opted_out);
        assert!(det.reason.is_some());
    }
}
