//! `workload-identity` (Security): a pod that talks to Azure does so as a
//! Microsoft Entra Workload ID, with no stored key. WAF: "use managed
//! identities … eliminating the need to store credentials". Quiet unless
//! the pod shows Azure credentials: an env name of `credentialEnvNames`
//! (from a Secret or a literal), an `envFrom` Secret whose name holds one of
//! `secretNamePatterns`, the retired AAD Pod Identity label, or the
//! Workload ID label itself — which must then be on the pod template (the
//! Workload ID webhook reads pod labels only), be `"true"`, and come with a
//! ServiceAccount of the workload's own. The Workload ID webhook mutates
//! Pods, so its injected env and token volume are never required here.
//! Literal values are never echoed: `secret-env` reports those too.

use std::collections::BTreeSet;

use serde_json::Value;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Finding, Outcome, PolicyFacts, Rule, Subject, add, pointer};
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::WorkloadKind;

pub const WI_LABEL: &str = "azure.workload.identity/use";
pub const WI_CLIENT_ID: &str = "azure.workload.identity/client-id";
pub const POD_IDENTITY_LABEL: &str = "aadpodidbinding";

/// `workload-identity` (Security): a pod that talks to Azure does so as a
/// Microsoft Entra Workload ID, not with a stored key. Fires only on signs
/// of Azure credentials: such env names (from a Secret or a literal), an
/// `envFrom` Secret whose name says storage or OpenAI, the retired
/// `aadpodidbinding` label, or the Workload ID label itself.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadIdentity {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Copy `azure.workload.identity/use: "true"` from the workload's own
    /// labels to its pod template's (the only labels the Workload ID
    /// webhook reads) through the mutating webhook.
    #[serde(default)]
    pub mutate: bool,
    /// Env variable names that carry an Azure key or secret.
    #[serde(default = "default_azure_credential_names")]
    pub credential_env_names: Vec<String>,
    /// Case-insensitive words that, in the name of a Secret read whole by
    /// `envFrom.secretRef`, mark it as holding Azure keys.
    #[serde(default = "default_azure_secret_words")]
    pub secret_name_patterns: Vec<String>,
}

impl Default for WorkloadIdentity {
    fn default() -> Self {
        WorkloadIdentity {
            action: None,
            mutate: false,
            credential_env_names: default_azure_credential_names(),
            secret_name_patterns: default_azure_secret_words(),
        }
    }
}

/// Azure SDK and service variables that hold a stored credential: what
/// `credentialNames` defaults to, and names `secret-env` knows as
/// credentials whatever their value looks like.
pub const AZURE_CREDENTIAL_NAMES: [&str; 8] = [
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_OPENAI_API_KEY",
    "AZURE_SEARCH_KEY",
    "AZURE_AI_SEARCH_API_KEY",
];

fn default_azure_credential_names() -> Vec<String> {
    AZURE_CREDENTIAL_NAMES.map(String::from).to_vec()
}

fn default_azure_secret_words() -> Vec<String> {
    ["storage", "blob", "openai", "keyvault"]
        .map(String::from)
        .to_vec()
}

impl Rule for WorkloadIdentity {
    const ID: RuleId = RuleId::WorkloadIdentity;
    const PILLAR: Pillar = Pillar::Security;
    const SUMMARY: &'static str =
        "Pods that use Azure credentials get them through Workload Identity, not stored keys";
    const SINCE: Release = Release::V0_2;

    type Settings = Settings;

    fn mutate(&self) -> bool {
        self.mutate
    }

    fn compile(&self, _policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        for (field, list) in [
            ("credentialEnvNames", &spec.credential_env_names),
            ("secretNamePatterns", &spec.secret_name_patterns),
        ] {
            if list.iter().any(|n| n.trim().is_empty()) {
                problems.push(format!("{at}.{field}: entries cannot be empty"));
            }
        }
        Settings {
            credential_env_names: spec.credential_env_names.iter().cloned().collect(),
            secret_name_patterns: spec
                .secret_name_patterns
                .iter()
                .map(|p| p.to_lowercase())
                .collect(),
        }
    }

    fn check(on: &Subject, s: &Settings, mutate: bool) -> Outcome {
        let w = on.workload;
        let mut out = Outcome::default();
        let labels_path = w.template_field("labels");
        let pod = &w.pod;
        let containers = pod
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| {
                (
                    format!("init container \"{}\"", c.name),
                    "initContainers",
                    i,
                    c,
                )
            })
            .chain(
                pod.containers
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("container \"{}\"", c.name), "containers", i, c)),
            );
        for (who, list, i, c) in containers {
            let cpath = if list == "containers" {
                w.container_path(i)
            } else {
                format!("{}/{list}/{i}", w.pod_path)
            };
            for (j, e) in c.env.iter().flatten().enumerate() {
                if !s.credential_env_names.contains(&e.name) {
                    continue;
                }
                let from_secret = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref());
                let message = match (from_secret, e.value.as_deref()) {
                    (Some(r), _) => format!(
                        "{who} reads {} from Secret \"{}\": a stored Azure key",
                        e.name, r.name
                    ),
                    (None, Some(v)) if !v.is_empty() => format!(
                        "{who} sets {} to a literal Azure key in the manifest",
                        e.name
                    ),
                    _ => continue,
                };
                out.findings.push(Finding {
                    message,
                    fix: use_workload_id_fix(&e.name),
                    path: format!("{cpath}/env/{j}"),
                    fixable: false,
                    object: None,
                    edit: None,
                });
            }
            for (j, from) in c.env_from.iter().flatten().enumerate() {
                let Some(secret) = &from.secret_ref else {
                    continue;
                };
                let lower = secret.name.to_lowercase();
                let Some(word) = s
                    .secret_name_patterns
                    .iter()
                    .find(|p| lower.contains(p.as_str()))
                else {
                    continue;
                };
                out.findings.push(Finding {
                message: format!(
                    "{who} loads Secret \"{}\" whole (envFrom), whose name says it holds {word} \
                     keys: a stored Azure credential",
                    secret.name
                ),
                fix: use_workload_id_fix(&format!("the envFrom Secret \"{}\"", secret.name)),
                path: format!("{cpath}/envFrom/{j}"),
                fixable: false,object: None, edit: None,
});
            }
        }

        if w.template_labels.contains_key(POD_IDENTITY_LABEL) {
            out.findings.push(Finding {
                message: format!(
                    "the pod template uses {POD_IDENTITY_LABEL}, the label of the archived AAD Pod \
                 Identity"
                ),
                fix: format!(
                    "label the pod template {WI_LABEL}: \"true\" and run as a ServiceAccount \
                 annotated {WI_CLIENT_ID}"
                ),
                path: pointer(&labels_path, &[POD_IDENTITY_LABEL])
                    .as_str()
                    .to_owned(),
                fixable: false,
                object: None,
                edit: None,
            });
        }

        let on_template = w.template_labels.get(WI_LABEL);
        let on_workload = (w.kind != WorkloadKind::Pod)
            .then(|| w.labels.get(WI_LABEL))
            .flatten();
        match (on_template, on_workload) {
            (None, Some(v)) => {
                // Copied, not moved: the workload's own label does no harm and
                // may be what someone selects Deployments by.
                let fixable = v == "true" && !w.template_labels.is_empty();
                out.findings.push(Finding {
                    message: format!(
                        "{WI_LABEL} is on the {}, not its pod template: the Workload ID webhook \
                     reads pod labels only",
                        w.kind
                    ),
                    fix: format!(
                        "move it to {}: {{{WI_LABEL}: \"true\"}}",
                        labels_path.trim_start_matches('/').replace('/', ".")
                    ),
                    path: pointer("/metadata/labels", &[WI_LABEL]).as_str().to_owned(),
                    fixable,
                    object: None,
                    edit: None,
                });
                if mutate && fixable {
                    out.patch.push(add(
                        pointer(&labels_path, &[WI_LABEL]),
                        Value::String("true".into()),
                    ));
                }
            }
            (Some(v), _) if v != "true" => out.findings.push(Finding {
                message: format!(
                    "the pod template's {WI_LABEL} is \"{v}\": the Workload ID webhook acts on \
                 \"true\" only, so the pods get no identity"
                ),
                fix: format!("set {WI_LABEL}: \"true\" (lower case, quoted), or remove the label"),
                path: pointer(&labels_path, &[WI_LABEL]).as_str().to_owned(),
                fixable: false,
                object: None,
                edit: None,
            }),
            _ => {}
        }

        let uses_wi = on_template.or(on_workload).is_some_and(|v| v == "true");
        let account = pod
            .service_account_name
            .as_deref()
            .or(pod.service_account.as_deref())
            .filter(|a| !a.is_empty());
        if uses_wi && account.is_none_or(|a| a == "default") {
            let sa = if w.name.ends_with('*') || w.name.is_empty() {
                "<name>"
            } else {
                w.name.as_str()
            };
            out.findings.push(Finding {
                message: format!(
                    "the pod uses Workload ID with {}: it needs a ServiceAccount of its own",
                    match account {
                        Some(_) => "serviceAccountName: default",
                        None => "no serviceAccountName",
                    }
                ),
                fix: format!(
                    "kubectl create sa {sa} -n {ns}; kubectl annotate sa {sa} -n {ns} \
                 {WI_CLIENT_ID}=<client-id>; set serviceAccountName: {sa}",
                    ns = w.namespace
                ),
                path: w.pod_field("serviceAccountName"),
                fixable: false,
                object: None,
                edit: None,
            });
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub credential_env_names: BTreeSet<String>,
    /// Lower case.
    pub secret_name_patterns: Vec<String>,
}

fn use_workload_id_fix(drop: &str) -> String {
    format!(
        "use Workload ID: pod label {WI_LABEL}: \"true\", a ServiceAccount with its \
         client-id; drop {drop}, rotate the key"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::*;
    use serde_json::json;

    fn settings() -> Settings {
        defaults::<WorkloadIdentity>()
    }

    fn run(obj: &serde_json::Value) -> Outcome {
        run_rule::<WorkloadIdentity>(obj, &settings())
    }

    /// The compliant deployment with Workload ID set up as it should be.
    fn with_workload_id() -> Value {
        let mut d = gpu_deployment();
        d["spec"]["template"]["metadata"]["labels"][WI_LABEL] = json!("true");
        d["spec"]["template"]["spec"]["serviceAccountName"] = json!("llm");
        d
    }

    #[test]
    fn a_pod_that_shows_no_azure_credential_is_not_judged() {
        let mut d = gpu_deployment();
        container(&mut d)["env"] = json!([
            {"name": "AZURE_CLIENT_ID", "value": "00000000-0000-0000-0000-000000000000"},
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        ]);
        assert!(run(&d).is_clean());
        assert!(run(&with_workload_id()).is_clean());
    }

    #[test]
    fn an_azure_key_from_a_secret_is_reported_naming_the_secret() {
        let mut d = gpu_deployment();
        container(&mut d)["env"] = json!([
            {"name": "MODEL", "value": "phi"},
            {"name": "AZURE_OPENAI_API_KEY",
             "valueFrom": {"secretKeyRef": {"name": "openai", "key": "key"}}},
        ]);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        let f = &out.findings[0];
        assert_eq!(
            f.message,
            "container \"llm\" reads AZURE_OPENAI_API_KEY from Secret \"openai\": a stored Azure \
             key"
        );
        assert_eq!(f.path, "/spec/template/spec/containers/0/env/1");
        assert!(f.fix.contains("rotate the key"), "{}", f.fix);
        assert!(out.patch.is_empty());
    }

    #[test]
    fn a_literal_key_is_reported_without_its_value() {
        let mut d = gpu_deployment();
        let secret = "Zm9vYmFyYmF6cXV4cXV1eA==";
        container(&mut d)["env"] = json!([{"name": "AZURE_STORAGE_KEY", "value": secret}]);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        let f = &out.findings[0];
        assert!(f.message.contains("literal Azure key"), "{}", f.message);
        assert!(!f.message.contains(secret) && !f.fix.contains(secret));
    }

    #[test]
    fn an_env_from_secret_named_for_storage_is_reported() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["initContainers"] = json!([{
            "name": "fetch", "image": "x",
            "envFrom": [{"configMapRef": {"name": "storage"}}, {"secretRef": {"name": "Model-Storage-Creds"}}],
        }]);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(
            out.findings[0].path,
            "/spec/template/spec/initContainers/0/envFrom/1"
        );
        assert!(
            out.findings[0]
                .message
                .starts_with("init container \"fetch\" loads Secret \"Model-Storage-Creds\"")
        );
    }

    #[test]
    fn the_label_on_the_deployment_instead_of_the_template_is_copied_there() {
        let mut d = with_workload_id();
        d["spec"]["template"]["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove(WI_LABEL);
        d["metadata"]["labels"][WI_LABEL] = json!("true");
        let out = run(&d);
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        let f = &out.findings[0];
        assert_eq!(f.path, "/metadata/labels/azure.workload.identity~1use");
        assert_eq!(
            f.fix,
            "move it to spec.template.metadata.labels: {azure.workload.identity/use: \"true\"}"
        );
        assert!(f.fixable);
        let patched = apply(&d, &out.patch);
        assert_eq!(
            patched["spec"]["template"]["metadata"]["labels"][WI_LABEL],
            "true"
        );
        assert!(run(&patched).is_clean(), "{:?}", run(&patched).findings);
        assert!(
            WorkloadIdentity::check(&on(&workload(&d)), &settings(), false)
                .patch
                .is_empty()
        );
    }

    #[test]
    fn a_label_value_other_than_true_is_reported() {
        let mut d = with_workload_id();
        d["spec"]["template"]["metadata"]["labels"][WI_LABEL] = json!("True");
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert!(out.findings[0].message.contains("is \"True\""));
        assert_eq!(
            out.findings[0].path,
            "/spec/template/metadata/labels/azure.workload.identity~1use"
        );
    }

    #[test]
    fn workload_id_with_the_default_service_account_is_reported() {
        for account in [None, Some("default")] {
            let mut d = with_workload_id();
            match account {
                Some(a) => d["spec"]["template"]["spec"]["serviceAccountName"] = json!(a),
                None => remove_pod_field(&mut d, "serviceAccountName"),
            }
            let out = run(&d);
            assert_eq!(out.findings.len(), 1, "{account:?}");
            let f = &out.findings[0];
            assert_eq!(f.path, "/spec/template/spec/serviceAccountName");
            assert!(
                f.fix
                    .starts_with("kubectl create sa llm -n ml; kubectl annotate sa llm"),
                "{}",
                f.fix
            );
        }
    }

    #[test]
    fn the_retired_pod_identity_label_is_reported() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["metadata"]["labels"][POD_IDENTITY_LABEL] = json!("llm-identity");
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(
            out.findings[0].path,
            "/spec/template/metadata/labels/aadpodidbinding"
        );
    }

    #[test]
    fn a_bare_pod_has_one_set_of_labels() {
        let mut p = gpu_pod();
        p["metadata"]["labels"][WI_LABEL] = json!("true");
        p["spec"]["serviceAccountName"] = json!("llm");
        assert!(run(&p).is_clean());
    }
}
