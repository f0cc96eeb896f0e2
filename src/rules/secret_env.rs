//! `secret-env` (Security): no literal credential in a container's `env`
//! values, or (with `scanArgs`) in its `command` and `args`. A key written
//! into a manifest is already in git, in etcd and in every `kubectl get -o
//! yaml`; the fix therefore says to rotate it, not only to move it. WAF:
//! "use managed identities … eliminating the need to store credentials";
//! AKS baseline: Key Vault and the Secrets Store CSI driver.
//!
//! A value counts as a credential when its variable name says so (a known
//! name, or a `_PASSWORD`/`_SECRET`/`_API_KEY`… name with a value that looks
//! like a key), or when the value itself has a credential's shape (storage
//! account keys, SAS, PEM private keys, `hf_…`, `sk-…`, JWTs, …). Names
//! alone are not enough: inference servers are full of token-named knobs
//! (`MAX_TOTAL_TOKENS`, `TOKENIZERS_PARALLELISM`).
//!
//! Invariant: the value is never repeated. Messages say what kind of
//! credential it is and where it is (container, variable, JSON pointer);
//! they go to Events, the JSON report, audit annotations and logs.
//! `valueFrom.secretKeyRef` and `envFrom` pass; a Secret read from a
//! ConfigMap would need ConfigMap reads and is out of scope.

use k8s_openapi::api::core::v1::EnvVar;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::workload_identity::AZURE_CREDENTIAL_NAMES;
use super::{Finding, Outcome, PolicyFacts, Rule, Subject, yes};
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::Workload;

/// Names whose non-empty literal value is a credential, whatever it looks
/// like: these and the Azure ones `workload-identity` knows.
const KNOWN_NAMES: [&str; 9] = [
    "OPENAI_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HUGGINGFACE_TOKEN",
    "NGC_API_KEY",
    "WANDB_API_KEY",
    "VLLM_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "GITHUB_TOKEN",
];

/// Name endings that make a credential-looking value one.
const CREDENTIAL_SUFFIXES: [&str; 6] = [
    "PASSWORD",
    "SECRET",
    "API_KEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "CONNECTION_STRING",
];

/// Command-line flags that take a credential (vLLM `--api-key`, TGI/HF `--hf-token`).
const CREDENTIAL_FLAGS: [(&str, &str); 3] = [
    ("--api-key", "API_KEY"),
    ("--hf-token", "HF_TOKEN"),
    ("--token", "TOKEN"),
];

/// `secret-env` (Security): no literal credential in a container's `env`
/// values, `command` or `args`: it is already in git, etcd and every
/// `kubectl get -o yaml`. The value is never repeated in any output.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretEnv {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Further variable names whose literal value is always a credential
    /// (beside the built-in list: AZURE_CLIENT_SECRET, HF_TOKEN, OPENAI_API_KEY, …).
    #[serde(default)]
    pub extra_names: Vec<String>,
    /// Variable names never judged, whatever their value.
    #[serde(default = "default_allowed_env_names")]
    pub allow_names: Vec<String>,
    /// Also look for credentials in `command` and `args` (`--api-key <literal>`).
    #[serde(default = "yes")]
    pub scan_args: bool,
}

impl Default for SecretEnv {
    fn default() -> Self {
        SecretEnv {
            action: None,
            extra_names: Vec::new(),
            allow_names: default_allowed_env_names(),
            scan_args: yes(),
        }
    }
}
fn default_allowed_env_names() -> Vec<String> {
    vec!["APPLICATIONINSIGHTS_CONNECTION_STRING".into()]
}

impl Rule for SecretEnv {
    const ID: RuleId = RuleId::SecretEnv;
    const PILLAR: Pillar = Pillar::Security;
    const SUMMARY: &'static str = "No literal credentials in env values, command or args";
    const SINCE: Release = Release::V0_2;

    type Settings = Settings;

    fn compile(&self, _policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        for (field, names) in [
            ("extraNames", &spec.extra_names),
            ("allowNames", &spec.allow_names),
        ] {
            for (i, n) in names.iter().enumerate() {
                if n.trim().is_empty() {
                    problems.push(format!(
                        "{at}.{field}[{i}]: a variable name cannot be empty"
                    ));
                }
            }
            crate::problems::duplicates(
                names.iter().map(String::as_str),
                &format!("{at}.{field}"),
                problems,
            );
        }
        Settings {
            extra_names: spec.extra_names.iter().map(|n| n.to_uppercase()).collect(),
            allow_names: spec.allow_names.iter().map(|n| n.to_uppercase()).collect(),
            scan_args: spec.scan_args,
        }
    }

    fn check(on: &Subject, s: &Settings, _mutate: bool) -> Outcome {
        let w = on.workload;
        let mut out = Outcome::default();
        let base = w.pod_path;
        let mut all: Vec<Strings<'_>> = Vec::new();
        for (i, c) in w.pod.init_containers.iter().flatten().enumerate() {
            all.push(Strings {
                who: format!("init container \"{}\"", c.name),
                path: format!("{base}/initContainers/{i}"),
                env: c.env.as_deref().unwrap_or_default(),
                command: c.command.as_deref().unwrap_or_default(),
                args: c.args.as_deref().unwrap_or_default(),
            });
        }
        for (i, c) in w.pod.containers.iter().enumerate() {
            all.push(Strings {
                who: format!("container \"{}\"", c.name),
                path: w.container_path(i),
                env: c.env.as_deref().unwrap_or_default(),
                command: c.command.as_deref().unwrap_or_default(),
                args: c.args.as_deref().unwrap_or_default(),
            });
        }
        for (i, c) in w.pod.ephemeral_containers.iter().flatten().enumerate() {
            all.push(Strings {
                who: format!("ephemeral container \"{}\"", c.name),
                path: format!("{base}/ephemeralContainers/{i}"),
                env: c.env.as_deref().unwrap_or_default(),
                command: c.command.as_deref().unwrap_or_default(),
                args: c.args.as_deref().unwrap_or_default(),
            });
        }
        for c in &all {
            check_env(w, c, s, &mut out);
            if s.scan_args {
                check_args(c, &mut out);
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub extra_names: Vec<String>,
    pub allow_names: Vec<String>,
    pub scan_args: bool,
}

/// One container's strings, whatever its role.
struct Strings<'a> {
    who: String,
    path: String,
    env: &'a [EnvVar],
    command: &'a [String],
    args: &'a [String],
}

fn check_env(w: &Workload, c: &Strings<'_>, s: &Settings, out: &mut Outcome) {
    for (i, var) in c.env.iter().enumerate() {
        let Some(value) = var.value.as_deref() else {
            continue;
        };
        let name = var.name.to_uppercase();
        if value.is_empty() || s.allow_names.contains(&name) {
            continue;
        }
        let Some(kind) = credential_in(value).or_else(|| by_name(&name, value, s)) else {
            continue;
        };
        let secret = secret_name(&w.name, &var.name);
        let azure = if name.starts_with("AZURE_") {
            " (for Azure: Workload Identity needs no key at all)"
        } else {
            ""
        };
        out.findings.push(Finding {
            message: format!("{} sets {} to {kind}", c.who, var.name),
            fix: format!(
                "rotate it, then: kubectl create secret generic {secret} -n {} \
                 --from-literal=value=<new>; env: [{{name: {}, valueFrom: {{secretKeyRef: \
                 {{name: {secret}, key: value}}}}}}]{azure}",
                w.namespace, var.name
            ),
            path: format!("{}/env/{i}/value", c.path),
            fixable: false,
            object: None,
            edit: None,
        });
    }
}

fn check_args(c: &Strings<'_>, out: &mut Outcome) {
    for (field, list) in [("command", c.command), ("args", c.args)] {
        // Shell forms (`sh -c "vllm serve --api-key …"`) hold several words in one string.
        let words: Vec<(usize, &str)> = list
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.split_whitespace().map(move |w| (i, w)))
            .collect();
        let mut reported: Vec<usize> = Vec::new();
        let mut report = |index: usize, what: String, fix: String, out: &mut Outcome| {
            if reported.contains(&index) {
                return;
            }
            reported.push(index);
            out.findings.push(Finding {
                message: format!("{} passes {what} in {field}[{index}]", c.who),
                fix,
                path: format!("{}/{field}/{index}", c.path),
                fixable: false,
                object: None,
                edit: None,
            });
        };
        for (n, (index, word)) in words.iter().enumerate() {
            let word = word.trim_matches(|ch| ch == '"' || ch == '\'');
            for (flag, var) in CREDENTIAL_FLAGS {
                let (value, at) = match word.strip_prefix(flag) {
                    Some("") => match words.get(n + 1) {
                        Some((next_index, next)) => (*next, *next_index),
                        None => continue,
                    },
                    Some(rest) if rest.starts_with('=') => (&rest[1..], *index),
                    _ => continue,
                };
                let value = value.trim_matches(|ch| ch == '"' || ch == '\'');
                if is_literal(value) {
                    report(
                        at,
                        format!("a literal credential to {flag}"),
                        format!(
                            "rotate it, then keep it in a Secret exposed as env ({var} from \
                             valueFrom.secretKeyRef) and pass {flag}=$({var})"
                        ),
                        out,
                    );
                }
            }
            if let Some(kind) = credential_in(word) {
                report(
                    *index,
                    kind.to_owned(),
                    "rotate it, then keep it in a Secret exposed as env (valueFrom.secretKeyRef) \
                     and refer to it as $(VAR)"
                        .to_owned(),
                    out,
                );
            }
        }
    }
}

/// A flag's value written out, not a reference to a variable or another flag.
fn is_literal(value: &str) -> bool {
    !value.is_empty() && !value.starts_with('$') && !value.starts_with('-')
}

/// A credential by its variable's name. A value that refers to another
/// variable (`$(HF_TOKEN)`, `Bearer $(TOKEN)`, which Kubernetes expands)
/// holds no literal key of its own: only its shape (`credential_in`) can
/// still make it one.
fn by_name(name: &str, value: &str, s: &Settings) -> Option<&'static str> {
    if value.contains("$(") {
        return None;
    }
    let known = KNOWN_NAMES.contains(&name)
        || AZURE_CREDENTIAL_NAMES.contains(&name)
        || s.extra_names.iter().any(|n| n == name);
    if known {
        return Some("a literal credential");
    }
    let suffixed = CREDENTIAL_SUFFIXES
        .iter()
        .any(|sfx| name == *sfx || name.ends_with(&format!("_{sfx}")));
    (suffixed && looks_like_a_key(value)).then_some("a literal credential")
}

/// Long enough to be a key, and not a number, a flag, a path or a URL
/// without a password.
fn looks_like_a_key(value: &str) -> bool {
    let v = value.trim();
    v.chars().count() >= 16
        && !v.contains(char::is_whitespace)
        && !v.contains("$(")
        && v.parse::<f64>().is_err()
        && !matches!(v.to_lowercase().as_str(), "true" | "false" | "yes" | "no")
        && !v.starts_with('/')
        && !v.starts_with("./")
        && !v.starts_with("file:")
        && !v.contains("://")
}

/// A token's prefix, how many characters of which class follow it, and its name.
type Shape = (&'static str, usize, fn(char) -> bool, &'static str);

/// What kind of credential a literal holds, by its shape alone; None when
/// it has no credential's shape. Never returns any part of the value.
pub fn credential_in(value: &str) -> Option<&'static str> {
    if value.contains("AccountKey=") {
        return Some("an Azure Storage connection string with its account key");
    }
    if value.contains("SharedAccessKey=") {
        return Some("a connection string with its shared access key");
    }
    if value.contains("SharedAccessSignature=") || (value.contains("sv=") && sas_signature(value)) {
        return Some("a SAS token");
    }
    if value.contains("-----BEGIN") && value.contains("PRIVATE KEY-----") {
        return Some("a PEM private key");
    }
    if url_with_password(value) {
        return Some("a URL with its password");
    }
    fn alnum(c: char) -> bool {
        c.is_ascii_alphanumeric()
    }
    fn key_chars(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '-' || c == '_'
    }
    fn upper_or_digit(c: char) -> bool {
        c.is_ascii_uppercase() || c.is_ascii_digit()
    }
    const SHAPES: [Shape; 10] = [
        ("hf_", 30, alnum, "a Hugging Face token"),
        ("sk-", 20, key_chars, "an API key (sk-…)"),
        ("ghp_", 20, alnum, "a GitHub token"),
        ("gho_", 20, alnum, "a GitHub token"),
        ("ghs_", 20, alnum, "a GitHub token"),
        ("github_pat_", 20, key_chars, "a GitHub token"),
        ("xoxb-", 10, key_chars, "a Slack token"),
        ("xoxp-", 10, key_chars, "a Slack token"),
        ("nvapi-", 20, key_chars, "an NGC API key"),
        ("AKIA", 16, upper_or_digit, "an AWS access key id"),
    ];
    for (prefix, min, chars, kind) in SHAPES {
        if token_after(value, prefix, min, chars) {
            return Some(kind);
        }
    }
    if jwt(value) {
        return Some("a JWT");
    }
    None
}

/// `prefix` at a word start followed by at least `min` characters of `chars`.
fn token_after(value: &str, prefix: &str, min: usize, chars: fn(char) -> bool) -> bool {
    value.match_indices(prefix).any(|(at, _)| {
        let at_word_start = value[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        at_word_start
            && value[at + prefix.len()..]
                .chars()
                .take_while(|c| chars(*c))
                .count()
                >= min
    })
}

fn sas_signature(value: &str) -> bool {
    value.match_indices("sig=").any(|(at, _)| {
        value[at + 4..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '+' | '/' | '='))
            .count()
            >= 16
    })
}

/// `scheme://user:password@host`.
fn url_with_password(value: &str) -> bool {
    value.match_indices("://").any(|(at, _)| {
        let rest = &value[at + 3..];
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority.rsplit_once('@').is_some_and(|(userinfo, _)| {
            userinfo
                .split_once(':')
                .is_some_and(|(u, p)| !u.is_empty() && !p.is_empty() && !p.starts_with("$("))
        })
    })
}

/// `eyJ….eyJ….` (a JSON header and payload, base64url).
fn jwt(value: &str) -> bool {
    let seg = |s: &str| -> usize {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .count()
    };
    value.match_indices("eyJ").any(|(at, _)| {
        let rest = &value[at..];
        let header = seg(rest);
        if header < 10 || !rest[header..].starts_with('.') {
            return false;
        }
        let payload = &rest[header + 1..];
        payload.starts_with("eyJ") && seg(payload) >= 10 && payload[seg(payload)..].starts_with('.')
    })
}

/// A Secret name for the fix: `llm-hf-token`.
fn secret_name(workload: &str, var: &str) -> String {
    let var: String = var
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let workload = workload.trim_end_matches('*');
    let name = format!("{workload}-{}", var.trim_matches('-'));
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    const HF: &str = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";

    fn settings() -> Settings {
        defaults::<SecretEnv>()
    }

    fn with_env(env: Value) -> Value {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["containers"][0]["env"] = env;
        d
    }

    fn run(obj: &serde_json::Value) -> Outcome {
        run_rule::<SecretEnv>(obj, &settings())
    }

    fn never_echoes(out: &Outcome, secret: &str) {
        let fragment = &secret[secret.len() / 2..];
        for f in &out.findings {
            for text in [&f.message, &f.fix, &f.path] {
                assert!(!text.contains(fragment), "value echoed in {text}");
            }
        }
    }

    #[test]
    fn reports_a_literal_hugging_face_token_by_kind_and_never_its_value() {
        let d = with_env(json!([{"name": "HF_TOKEN", "value": HF}]));
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        let f = &out.findings[0];
        assert_eq!(
            f.message,
            "container \"llm\" sets HF_TOKEN to a Hugging Face token"
        );
        assert_eq!(f.path, "/spec/template/spec/containers/0/env/0/value");
        assert!(
            f.fix
                .starts_with("rotate it, then: kubectl create secret generic llm-hf-token -n ml")
        );
        assert!(
            f.fix
                .contains("secretKeyRef: {name: llm-hf-token, key: value}")
        );
        never_echoes(&out, HF);
    }

    #[test]
    fn secret_key_refs_and_references_pass() {
        let d = with_env(json!([
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
            {"name": "HUGGING_FACE_HUB_TOKEN", "value": "$(HF_TOKEN)"},
            {"name": "OPENAI_API_KEY", "value": "Bearer $(OPENAI_KEY)"},
            {"name": "VLLM_API_KEY", "value": ""},
        ]));
        assert!(run(&d).is_clean());
    }

    #[test]
    fn token_count_knobs_are_never_credentials() {
        let d = with_env(json!([
            {"name": "MAX_TOTAL_TOKENS", "value": "8192"},
            {"name": "MAX_INPUT_TOKENS", "value": "4096"},
            {"name": "MAX_BATCH_PREFILL_TOKENS", "value": "16384"},
            {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
            {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"},
            {"name": "MODEL_ID", "value": "meta-llama/Llama-3.1-8B-Instruct"},
            {"name": "DISK_CACHE_DIR", "value": "disk-cache-abcdefghijklmnopqrstuvwxyz"},
            {"name": "TLS_PRIVATE_KEY", "value": "/etc/tls/private/tls.key"},
            {"name": "REDIS_CONNECTION_STRING", "value": "redis://redis.cache.svc:6379/0"},
            {"name": "APPLICATIONINSIGHTS_CONNECTION_STRING",
             "value": "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://x"},
        ]));
        let out = run(&d);
        assert!(out.is_clean(), "{:?}", out.findings);
    }

    #[test]
    fn credential_shapes_are_found_whatever_the_name() {
        let cases = [
            (
                "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=bm90IGEgcmVhbCBrZXk=;EndpointSuffix=core.windows.net",
                "an Azure Storage connection string with its account key",
            ),
            (
                "https://a.blob.core.windows.net/m?sv=2022-11-02&ss=b&sig=abcdefghijklmnop%2Bqrstuvwx%3D",
                "a SAS token",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
                "a PEM private key",
            ),
            (
                "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
                "an API key (sk-…)",
            ),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "a GitHub token"),
            ("AKIAIOSFODNN7EXAMPLE", "an AWS access key id"),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl",
                "a JWT",
            ),
            (
                "postgres://app:s3cr3t@db.example:5432/models",
                "a URL with its password",
            ),
        ];
        for (value, kind) in cases {
            let d = with_env(json!([{"name": "SETTING", "value": value}]));
            let out = run(&d);
            assert_eq!(out.findings.len(), 1, "{kind}");
            assert_eq!(
                out.findings[0].message,
                format!("container \"llm\" sets SETTING to {kind}")
            );
            never_echoes(&out, value);
        }
    }

    #[test]
    fn suffix_names_need_a_key_like_value() {
        let d = with_env(json!([
            {"name": "DB_PASSWORD", "value": "correct-horse-battery-staple"},
            {"name": "FEATURE_SECRET", "value": "true"},
            {"name": "SEARCH_API_KEY", "value": "12345"},
        ]));
        let out = run(&d);
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        assert_eq!(
            out.findings[0].message,
            "container \"llm\" sets DB_PASSWORD to a literal credential"
        );
    }

    #[test]
    fn azure_keys_point_to_workload_identity_and_names_can_be_added_or_allowed() {
        let d = with_env(json!([
            {"name": "AZURE_CLIENT_SECRET", "value": "abc~defghijklmnop"},
            {"name": "MY_VENDOR_LICENCE", "value": "L-1"},
        ]));
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert!(out.findings[0].fix.contains("Workload Identity"));
        let mut s = settings();
        s.extra_names = vec!["MY_VENDOR_LICENCE".into()];
        assert_eq!(
            SecretEnv::check(&on(&workload(&d)), &s, false)
                .findings
                .len(),
            2
        );
        s.allow_names = vec!["AZURE_CLIENT_SECRET".into(), "MY_VENDOR_LICENCE".into()];
        assert!(SecretEnv::check(&on(&workload(&d)), &s, false).is_clean());
    }

    #[test]
    fn literal_flags_in_args_and_shell_commands_are_found() {
        let mut d = gpu_deployment();
        let c = &mut d["spec"]["template"]["spec"]["containers"][0];
        c["args"] = json!(["--model", "/models/phi", "--api-key", "not-so-secret-1234"]);
        c["command"] = json!([
            "/bin/sh",
            "-c",
            format!("huggingface-cli login --token={HF} && vllm serve")
        ]);
        let out = run(&d);
        assert_eq!(out.findings.len(), 2, "{:?}", out.findings);
        assert_eq!(
            out.findings[0].message,
            "container \"llm\" passes a literal credential to --token in command[2]"
        );
        assert_eq!(
            out.findings[1].message,
            "container \"llm\" passes a literal credential to --api-key in args[3]"
        );
        assert_eq!(
            out.findings[1].path,
            "/spec/template/spec/containers/0/args/3"
        );
        assert!(out.findings[1].fix.ends_with("pass --api-key=$(API_KEY)"));
        never_echoes(&out, HF);
        never_echoes(&out, "not-so-secret-1234");
    }

    #[test]
    fn flag_references_pass_and_arg_scanning_can_be_off() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["containers"][0]["args"] = json!([
            "--api-key",
            "$(VLLM_API_KEY)",
            "--max-num-batched-tokens",
            "8192",
            "--token",
            "$HF_TOKEN"
        ]);
        assert!(run(&d).is_clean());
        d["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["--api-key=abcdef"]);
        assert_eq!(run(&d).findings.len(), 1);
        let mut s = settings();
        s.scan_args = false;
        assert!(SecretEnv::check(&on(&workload(&d)), &s, false).is_clean());
    }

    #[test]
    fn init_and_ephemeral_containers_are_read_too() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["initContainers"] =
            json!([{"name": "fetch", "image": "x", "env": [{"name": "HF_TOKEN", "value": HF}]}]);
        let out = run(&d);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0]
                .message
                .starts_with("init container \"fetch\"")
        );
        let mut pod = gpu_pod();
        pod["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "x", "args": [HF]}]);
        let out = run(&pod);
        assert_eq!(
            out.findings[0].message,
            "ephemeral container \"debug\" passes a Hugging Face token in args[0]"
        );
    }

    #[test]
    fn refuses_empty_and_repeated_names() {
        let mut problems = vec![];
        let spec = SecretEnv {
            extra_names: vec!["".into(), "A".into(), "A".into()],
            ..SecretEnv::default()
        };
        spec.compile(&policy_facts(), "secretEnv", &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
