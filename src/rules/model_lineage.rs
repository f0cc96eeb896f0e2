//! `model-lineage` (Operational Excellence): the pod template says which
//! model version it serves (`requiredLabels`, valid label values that are
//! not `latest`/`main`/`master`) and where the model came from
//! (`requiredAnnotations`, e.g. `waf-admission.dev/model-source:
//! hf://org/model@<commit>`), and a Hugging Face model id served by vLLM
//! (`--model`, `vllm serve <id>`) or TGI (`--model-id`, `MODEL_ID`) is
//! pinned with `--revision` (`REVISION`), `$(VAR)` expanded from env. WAF AI
//! operations: "model versions consistent across the SDLC". Template labels
//! only, never `spec.selector` (immutable; changing it breaks the
//! Deployment). Local paths (`/models/phi-3`) have their lineage in the
//! image digest or the annotation and are not judged; neither are Ollama
//! tags, which cannot be pinned. Off in the baseline: the keys are each
//! organisation's own.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Container;

use super::command_line::{flag_value, literal_env, words};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Finding, Outcome, PolicyFacts, Rule, Subject, pointer, yes};
use crate::image::ImageRef;
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};

/// `model-lineage` (Operational Excellence): the pod template says which
/// model version it serves and where the model came from, and a Hugging
/// Face model served by vLLM or TGI is pinned to a revision. Off unless
/// `action` is set: the keys are each organisation's own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelLineage {
    /// This rule's action. Unset: Off (it does not take the policy's action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Labels every pod template carries with a non-empty value (never on
    /// `spec.selector`, which is immutable).
    #[serde(default = "default_lineage_labels")]
    pub required_labels: Vec<String>,
    /// Annotations every pod template carries with a non-empty value.
    #[serde(default = "default_lineage_annotations")]
    pub required_annotations: Vec<String>,
    /// Values that do not name a version (compared case-insensitively).
    #[serde(default = "default_floating_versions")]
    pub forbidden_values: Vec<String>,
    /// A Hugging Face model id given to vLLM (`--model`) or TGI
    /// (`--model-id`, `MODEL_ID`) needs a `--revision` (or `REVISION`).
    #[serde(default = "yes")]
    pub require_model_revision: bool,
    /// The revision must be a 40-hex commit id, not a branch or tag.
    #[serde(default)]
    pub require_commit_revision: bool,
    /// Template labels that stand for the required labels: operators such
    /// as KAITO and KServe keep the model's lineage in their own objects.
    #[serde(default = "default_lineage_equivalents")]
    pub equivalent_labels: Vec<String>,
}

impl Default for ModelLineage {
    fn default() -> Self {
        ModelLineage {
            action: None,
            required_labels: default_lineage_labels(),
            required_annotations: default_lineage_annotations(),
            forbidden_values: default_floating_versions(),
            require_model_revision: yes(),
            require_commit_revision: false,
            equivalent_labels: default_lineage_equivalents(),
        }
    }
}

fn default_lineage_labels() -> Vec<String> {
    vec![
        "app.kubernetes.io/version".into(),
        "waf-admission.dev/model-version".into(),
    ]
}

fn default_lineage_annotations() -> Vec<String> {
    vec!["waf-admission.dev/model-source".into()]
}

fn default_floating_versions() -> Vec<String> {
    vec!["latest".into(), "main".into(), "master".into()]
}

fn default_lineage_equivalents() -> Vec<String> {
    vec![
        "kaito.sh/workspace".into(),
        "serving.kserve.io/inferenceservice".into(),
    ]
}

impl Rule for ModelLineage {
    const ID: RuleId = RuleId::ModelLineage;
    const PILLAR: Pillar = Pillar::OperationalExcellence;
    const SUMMARY: &'static str = "The pod template names its model version and source, and Hugging Face models are pinned to a revision";
    const SINCE: Release = Release::V0_2;
    const OFF_UNLESS_SET: bool = true;

    type Settings = Settings;

    fn compile(&self, _policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        for (field, list) in [
            ("requiredLabels", &spec.required_labels),
            ("requiredAnnotations", &spec.required_annotations),
            ("equivalentLabels", &spec.equivalent_labels),
        ] {
            if list.iter().any(|k| k.trim().is_empty()) {
                problems.push(format!("{at}.{field}: keys cannot be empty"));
            }
        }
        Settings {
            required_labels: spec.required_labels.clone(),
            required_annotations: spec.required_annotations.clone(),
            forbidden_values: spec
                .forbidden_values
                .iter()
                .map(|v| v.to_lowercase())
                .collect(),
            require_model_revision: spec.require_model_revision,
            require_commit_revision: spec.require_commit_revision,
            equivalent_labels: spec.equivalent_labels.clone(),
        }
    }

    fn check(on: &Subject, s: &Settings, _mutate: bool) -> Outcome {
        let w = on.workload;
        let mut out = Outcome::default();
        let labels_path = w.template_field("labels");
        let annotations_path = w.template_field("annotations");
        let by_operator = s
            .equivalent_labels
            .iter()
            .any(|k| w.template_labels.contains_key(k));
        if !by_operator {
            let mut missing = Vec::new();
            for key in &s.required_labels {
                match w.template_labels.get(key) {
                None => missing.push(key.as_str()),
                Some(v) if s.forbidden(v) => out.findings.push(Finding {
                    message: format!(
                        "the pod template's label {key} is \"{v}\", which names no version: \
                         nobody can tell which model a pod serves, nor roll back to it"
                    ),
                    fix: format!("set {key} to the version served, e.g. \"3.1-8b-2024-07\""),
                    path: pointer(&labels_path, &[key]).as_str().to_owned(),
                    fixable: false,object: None, edit: None,
}),
                Some(v) if !valid_label_value(v) => out.findings.push(Finding {
                    message: format!(
                        "the pod template's label {key} is not a valid label value (at most \
                         63 of A-Z a-z 0-9 . _ -, alphanumeric at both ends)"
                    ),
                    fix: format!(
                        "put a short version in {key} and the full model id in the {} annotation",
                        s.required_annotations
                            .first()
                            .map_or("waf-admission.dev/model-source", String::as_str)
                    ),
                    path: pointer(&labels_path, &[key]).as_str().to_owned(),
                    fixable: false,object: None, edit: None,
}),
                Some(_) => {}
            }
            }
            if !missing.is_empty() {
                out.findings.push(Finding {
                    message: format!(
                        "the pod template has no {} label{}: nobody can tell which model version \
                     a pod serves, nor roll back to it",
                        missing.join(", "),
                        if missing.len() == 1 { "" } else { "s" }
                    ),
                    fix: format!(
                        "add to {} (never to spec.selector, which is immutable): {{{}}}",
                        dotted(&labels_path),
                        missing
                            .iter()
                            .map(|k| format!("{k}: \"<version>\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    path: labels_path.clone(),
                    fixable: false,
                    object: None,
                    edit: None,
                });
            }
        }
        let missing: Vec<&str> = s
            .required_annotations
            .iter()
            .filter(|k| {
                w.template_annotations
                    .get(*k)
                    .is_none_or(|v| v.trim().is_empty())
            })
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            out.findings.push(Finding {
            message: format!(
                "the pod template has no {} annotation: where the model came from is not \
                 recorded with the workload",
                missing.join(", ")
            ),
            fix: format!(
                "add to {}: {{{}}}",
                dotted(&annotations_path),
                missing
                    .iter()
                    .map(|k| format!(
                        "{k}: \"azureml://registries/<r>/models/<m>/versions/<v> or hf://<org>/<model>@<commit>\""
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            path: annotations_path,
            fixable: false,object: None, edit: None,
});
        }
        if s.require_model_revision {
            for (i, c) in w.pod.containers.iter().enumerate() {
                if let Some(f) = unpinned_model(c, s, &w.container_path(i)) {
                    out.findings.push(f);
                }
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub required_labels: Vec<String>,
    pub required_annotations: Vec<String>,
    /// Lower case.
    pub forbidden_values: BTreeSet<String>,
    pub require_model_revision: bool,
    pub require_commit_revision: bool,
    pub equivalent_labels: Vec<String>,
}

impl Settings {
    fn forbidden(&self, v: &str) -> bool {
        v.is_empty() || self.forbidden_values.contains(&v.to_lowercase())
    }
}

/// Kubernetes' label value syntax: ≤ 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn valid_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && v.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

fn dotted(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Vllm,
    Tgi,
}

fn server(c: &Container, words: &[String]) -> Option<Server> {
    let repo = c
        .image
        .as_deref()
        .and_then(|i| ImageRef::parse(i).ok())
        .map(|i| i.repository)
        .unwrap_or_default();
    let last = repo.rsplit('/').next().unwrap_or_default();
    let runs = |name: &str| {
        words.iter().any(|w| {
            w == name || w.ends_with(&format!("/{name}")) || w.starts_with(&format!("{name}."))
        })
    };
    if last.contains("vllm") || repo.split('/').any(|p| p == "vllm") || runs("vllm") {
        Some(Server::Vllm)
    } else if last == "text-generation-inference" || runs("text-generation-launcher") {
        Some(Server::Tgi)
    } else {
        None
    }
}

/// `org/name` with Hugging Face's characters: not a path, not a URL.
fn is_hub_id(m: &str) -> bool {
    let mut parts = m.split('/');
    let (Some(org), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    ok(org) && ok(name)
}

fn is_commit(r: &str) -> bool {
    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
}

fn unpinned_model(c: &Container, s: &Settings, cpath: &str) -> Option<Finding> {
    let env = literal_env(c);
    let words = words(c, &env);
    let server = server(c, &words)?;
    let (model, revision) = match server {
        Server::Vllm => {
            let positional = words
                .iter()
                .position(|w| w == "serve")
                .and_then(|i| words.get(i + 1))
                .filter(|m| !m.starts_with('-'))
                .map(String::as_str);
            let model = flag_value(&words, &["--model"])
                .map(|(m, _)| m)
                .or(positional);
            (model, flag_value(&words, &["--revision"]).map(|(r, _)| r))
        }
        // TGI reads every flag from env too (MODEL_ID, REVISION).
        Server::Tgi => (
            flag_value(&words, &["--model-id"])
                .map(|(m, _)| m)
                .or(env.get("MODEL_ID").map(String::as_str)),
            flag_value(&words, &["--revision"])
                .map(|(r, _)| r)
                .or(env.get("REVISION").map(String::as_str)),
        ),
    };
    let on_command_line = model.is_some_and(|m| words.iter().any(|w| w.contains(m)));
    let model = model.filter(|m| is_hub_id(m))?;
    let env_name = (server == Server::Tgi).then_some("REVISION");
    let where_ = match (on_command_line, c.args.is_some()) {
        (false, _) => "env",
        (true, true) => "args",
        (true, false) => "command",
    };
    let who = format!("container \"{}\"", c.name);
    let fix = format!(
        "add --revision <commit sha>{} to {who} (the commit from the model page's history), or \
         serve a copy from your own registry",
        env_name.map_or(String::new(), |e| format!(" (or env {e})"))
    );
    match revision {
        None => Some(Finding {
            message: format!(
                "{who} serves Hugging Face model {model} with no --revision: the weights it \
                 downloads can change under the same name"
            ),
            fix,
            path: format!("{cpath}/{where_}"),
            fixable: false,
            object: None,
            edit: None,
        }),
        Some(r) if s.forbidden(r) || (s.require_commit_revision && !is_commit(r)) => {
            Some(Finding {
                message: format!(
                    "{who} serves Hugging Face model {model} at revision \"{r}\", {}",
                    if s.forbidden(r) {
                        "a moving branch: the weights can change under the same name"
                    } else {
                        "not a commit id (the policy requires 40 hex digits)"
                    }
                ),
                fix,
                path: format!("{cpath}/{where_}"),
                fixable: false,
                object: None,
                edit: None,
            })
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    fn settings() -> Settings {
        defaults::<ModelLineage>()
    }

    fn run(obj: &serde_json::Value) -> Outcome {
        run_rule::<ModelLineage>(obj, &settings())
    }

    const COMMIT: &str = "0e9e39f249a16976918f6564b8830bc894c89659";

    fn with_lineage() -> Value {
        let mut d = gpu_deployment();
        let meta = &mut d["spec"]["template"]["metadata"];
        meta["labels"]["app.kubernetes.io/version"] = json!("0.6.3");
        meta["labels"]["waf-admission.dev/model-version"] = json!("phi-3-mini-4k-2024-07");
        meta["annotations"] = json!({"waf-admission.dev/model-source":
            "azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/15"});
        d
    }

    #[test]
    fn labels_annotation_and_a_local_model_path_pass() {
        assert!(run(&with_lineage()).is_clean());
    }

    #[test]
    fn missing_labels_and_annotation_are_one_finding_each() {
        let out = run(&gpu_deployment());
        let messages: Vec<&str> = out.findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "the pod template has no app.kubernetes.io/version, waf-admission.dev/model-version \
                 labels: nobody can tell which model version a pod serves, nor roll back to it",
                "the pod template has no waf-admission.dev/model-source annotation: where the \
                 model came from is not recorded with the workload",
            ]
        );
        assert_eq!(out.findings[0].path, "/spec/template/metadata/labels");
        assert!(
            out.findings[0]
                .fix
                .starts_with("add to spec.template.metadata.labels (never to spec.selector")
        );
        assert_eq!(out.findings[1].path, "/spec/template/metadata/annotations");
    }

    #[test]
    fn floating_and_invalid_label_values_are_reported() {
        let mut d = with_lineage();
        d["spec"]["template"]["metadata"]["labels"]["waf-admission.dev/model-version"] =
            json!("Latest");
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert!(out.findings[0].message.contains("names no version"));
        assert_eq!(
            out.findings[0].path,
            "/spec/template/metadata/labels/waf-admission.dev~1model-version"
        );
        d["spec"]["template"]["metadata"]["labels"]["waf-admission.dev/model-version"] =
            json!("meta-llama/Llama-3.1-8B-Instruct");
        let out = run(&d);
        assert!(out.findings[0].message.contains("not a valid label value"));
    }

    #[test]
    fn operator_labels_stand_for_the_version_labels() {
        let mut d = with_lineage();
        let labels = d["spec"]["template"]["metadata"]["labels"]
            .as_object_mut()
            .unwrap();
        labels.remove("app.kubernetes.io/version");
        labels.remove("waf-admission.dev/model-version");
        labels.insert("kaito.sh/workspace".into(), json!("phi-3"));
        assert!(run(&d).is_clean());
    }

    #[test]
    fn an_unpinned_hub_model_on_vllm_is_reported_in_every_spelling() {
        for (args, env) in [
            (
                json!(["--model", "microsoft/Phi-3-mini-4k-instruct"]),
                json!([]),
            ),
            (
                json!(["--model=microsoft/Phi-3-mini-4k-instruct"]),
                json!([]),
            ),
            (
                json!(["--model=$(MODEL_ID)"]),
                json!([{"name": "MODEL_ID", "value": "microsoft/Phi-3-mini-4k-instruct"}]),
            ),
            (
                json!(["vllm serve microsoft/Phi-3-mini-4k-instruct --revision main"]),
                json!([]),
            ),
        ] {
            let mut d = with_lineage();
            container(&mut d)["args"] = args.clone();
            container(&mut d)["env"] = env;
            let out = run(&d);
            assert_eq!(out.findings.len(), 1, "{args}");
            assert!(
                out.findings[0].message.starts_with(
                    "container \"llm\" serves Hugging Face model microsoft/Phi-3-mini-4k-instruct"
                ),
                "{args}: {}",
                out.findings[0].message
            );
            assert_eq!(
                out.findings[0].path,
                "/spec/template/spec/containers/0/args"
            );
        }
    }

    #[test]
    fn a_revision_pins_it_and_a_commit_is_required_where_the_policy_says() {
        let mut d = with_lineage();
        container(&mut d)["args"] = json!([
            "--model",
            "microsoft/Phi-3-mini-4k-instruct",
            "--revision",
            "v1.0"
        ]);
        assert!(run(&d).is_clean());
        let strict = Settings {
            require_commit_revision: true,
            ..settings()
        };
        let out = ModelLineage::check(&on(&workload(&d)), &strict, false);
        assert!(out.findings[0].message.contains("not a commit id"));
        container(&mut d)["args"][3] = json!(COMMIT);
        assert!(ModelLineage::check(&on(&workload(&d)), &strict, false).is_clean());
    }

    #[test]
    fn tgi_reads_model_id_and_revision_from_env() {
        let mut d = with_lineage();
        let c = container(&mut d);
        c["image"] = json!("ghcr.io/huggingface/text-generation-inference:2.4.1");
        c.as_object_mut().unwrap().remove("args");
        c["env"] = json!([{"name": "MODEL_ID", "value": "mistralai/Mistral-7B-Instruct-v0.3"}]);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert!(out.findings[0].fix.contains("(or env REVISION)"));
        assert_eq!(out.findings[0].path, "/spec/template/spec/containers/0/env");
        container(&mut d)["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "REVISION", "value": COMMIT}));
        assert!(run(&d).is_clean());
    }

    #[test]
    fn other_servers_and_local_or_remote_paths_are_not_judged() {
        for (image, args) in [
            (
                "contoso.azurecr.io/vllm-openai:v1",
                json!(["--model", "/models/phi"]),
            ),
            (
                "contoso.azurecr.io/vllm-openai:v1",
                json!(["--model", "s3://bucket/phi"]),
            ),
            ("docker.io/ollama/ollama:0.5", json!(["run", "llama3/8b"])),
        ] {
            let mut d = with_lineage();
            container(&mut d)["image"] = json!(image);
            container(&mut d)["args"] = args.clone();
            assert!(run(&d).is_clean(), "{image} {args}");
        }
    }
}
