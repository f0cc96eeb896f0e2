//! `image-provenance` (Security): every image (init and ephemeral
//! containers' too, and image volumes: models shipped as OCI artifacts)
//! comes from a registry the platform team trusts and is pinned, so that
//! what runs is what was scanned. Never `:latest` or untagged without a
//! digest. With `resolveDigests` the mutating webhook pins tags to the
//! digest the registry answers; with `signatures` a trusted key must have
//! signed the digest. WAF: "use trusted registries … pin images … sign".
//!
//! The registry is never asked from here: the caller gathers its answers
//! into [`Facts`] first ([`queries`] says what to ask), then judges.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Finding, Outcome, PolicyFacts, Rule, Subject, replace, yes};
use crate::context::Context;
use crate::image::{ImageRef, RegistryPattern};
use crate::provenance::keys::{KeySet, PublicKey};
use crate::provenance::{Auth, Mode, Query, Signed, cosign};
use crate::release::Release;
use crate::rule_list::{Action, Pillar, RuleId};
use crate::workload::Workload;

/// `image-provenance` (Security): images come from registries the platform
/// team trusts, pinned so that what runs is what was scanned.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageProvenance {
    /// Overrides the policy's action for this rule; `Off` disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Registry hosts images may come from: `myreg.example:5000` (exact,
    /// port included), `*.azurecr.io` (any host under that domain), or `*`
    /// (any registry). An image with no registry is from `docker.io`.
    #[serde(default = "default_registries")]
    pub allowed_registries: Vec<String>,
    /// Require every image to be pinned by digest (`@sha256:…`).
    #[serde(default = "yes")]
    pub require_digest: bool,
    /// Pin `repo:tag` to `repo:tag@sha256:…` as the registry answers
    /// (containers, init and ephemeral containers, image volumes). This is
    /// the rule's mutation: the mutating webhook patches where the rule's
    /// action is Deny. Only registries in `allowedRegistries` are asked.
    #[serde(default)]
    pub resolve_digests: bool,
    /// What a registry failure (unreachable, slow past the deadline, 401,
    /// 404, 5xx, a manifest over the size bound) does: `Deny` the object, or
    /// `Allow` it with a warning.
    #[serde(default)]
    pub on_registry_error: OnRegistryError,
    /// A `kubernetes.io/dockerconfigjson` Secret in the controller's own
    /// namespace with credentials for the registries (never a Secret of
    /// the workload's namespace). The chart grants read access to just the
    /// Secrets listed in `provenance.secrets`. Anonymous when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<String>,
    /// Cosign signatures by key: an image is admitted only when a
    /// signature by one of the keys covers its digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<Signatures>,
}

impl Default for ImageProvenance {
    fn default() -> Self {
        ImageProvenance {
            action: None,
            allowed_registries: default_registries(),
            require_digest: yes(),
            resolve_digests: false,
            on_registry_error: OnRegistryError::default(),
            pull_secret: None,
            signatures: None,
        }
    }
}

/// What a registry failure does to the object being judged.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum OnRegistryError {
    /// Refuse the object: nothing unproven runs (fail closed).
    #[default]
    Deny,
    /// Admit it with a warning naming the failure.
    Allow,
}

/// `imageProvenance.signatures`: cosign signatures made with a key (legacy
/// `sha256-<digest>.sig` tags and Sigstore bundles found through the OCI
/// referrers API). Verified offline: no Rekor, Fulcio or TUF; keyless
/// signatures are not accepted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Signatures {
    /// Public keys (PEM `PUBLIC KEY`, as `cosign generate-key-pair` writes
    /// `cosign.pub`): ECDSA P-256 or P-384, Ed25519, or RSA. A signature by
    /// any one of them is enough.
    #[schemars(length(min = 1))]
    pub keys: Vec<SignatureKey>,
    /// `true`: an image without a valid signature is a violation. `false`:
    /// signatures are checked and a missing or bad one only warns.
    #[serde(default = "yes")]
    pub required: bool,
}

/// One trusted public key, inline or from a Secret in the controller's
/// namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.pem) != has(self.secretRef)",
    "message": "set exactly one of pem and secretRef"
}]))]
pub struct SignatureKey {
    /// How denials name the key; defaults to its fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The PEM public key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    /// A key of a Secret in the controller's namespace holding the PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the controller's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    pub name: String,
    /// The data key; `cosign.pub` when unset.
    #[serde(default = "cosign_pub")]
    pub key: String,
}

fn cosign_pub() -> String {
    "cosign.pub".into()
}

fn default_registries() -> Vec<String> {
    vec!["*.azurecr.io".into(), "mcr.microsoft.com".into()]
}

impl Rule for ImageProvenance {
    const ID: RuleId = RuleId::ImageProvenance;
    const PILLAR: Pillar = Pillar::Security;
    const SUMMARY: &'static str =
        "Images come from registries the platform team trusts, pinned by digest";
    const SINCE: Release = Release::V0_1;

    type Settings = Settings;

    fn mutate(&self) -> bool {
        self.resolve_digests
    }

    fn compile(&self, _policy: &PolicyFacts, at: &str, problems: &mut Vec<String>) -> Settings {
        let spec = self;
        if spec.allowed_registries.is_empty() {
            problems.push(format!(
                "{at}.allowedRegistries: an empty list would refuse every image; use [\"*\"] to allow any registry"
            ));
        }
        let allowed = spec
            .allowed_registries
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match RegistryPattern::parse(p) {
                Ok(p) => Some(p),
                Err(e) => {
                    problems.push(format!("{at}.allowedRegistries[{i}]: {e}"));
                    None
                }
            })
            .collect();
        if spec
            .pull_secret
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            problems.push(format!(
                "{at}.pullSecret: name a Secret, or leave it out for anonymous pulls"
            ));
        }
        let signatures = spec.signatures.as_ref().map(|sig| {
            if sig.keys.is_empty() {
                problems.push(format!(
                    "{at}.signatures.keys: list at least one public key"
                ));
            }
            let mut inline = Vec::new();
            let mut from_secrets = Vec::new();
            for (i, k) in sig.keys.iter().enumerate() {
                match (&k.pem, &k.secret_ref) {
                    (Some(pem), None) => match PublicKey::from_pem(pem, k.name.as_deref()) {
                        Ok(key) => inline.push(key),
                        Err(e) => problems.push(format!("{at}.signatures.keys[{i}].pem: {e}")),
                    },
                    (None, Some(r)) if !r.name.is_empty() && !r.key.is_empty() => {
                        from_secrets.push((k.name.clone(), r.name.clone(), r.key.clone()));
                    }
                    (None, Some(_)) => problems.push(format!(
                        "{at}.signatures.keys[{i}].secretRef: name the Secret and its key"
                    )),
                    _ => problems.push(format!(
                        "{at}.signatures.keys[{i}]: set exactly one of pem and secretRef"
                    )),
                }
            }
            let fixed = from_secrets
                .is_empty()
                .then(|| Arc::new(KeySet::new(inline.clone())));
            SignatureSettings {
                required: sig.required,
                inline,
                from_secrets,
                fixed,
            }
        });
        Settings {
            allowed,
            require_digest: spec.require_digest,
            resolve: spec.resolve_digests,
            on_error: spec.on_registry_error,
            pull_secret: spec.pull_secret.clone(),
            signatures,
        }
    }

    fn check(on: &Subject, s: &Settings, _mutate: bool) -> Outcome {
        let w = on.workload;
        let ctx = on.ctx;
        let facts = on.facts;
        let mut out = Outcome::default();
        let keys = s.key_set(ctx);
        if let Some(Err(problem)) = &keys {
            out.findings.push(Finding {
                message: format!("signatures cannot be checked: {problem}"),
                fix: "fix the policy's imageProvenance.signatures.keys or the Secret it names"
                    .into(),
                path: w.pod_path.to_owned(),
                fixable: false,
                object: None,
                edit: None,
            });
        }
        let keys = keys.and_then(Result::ok);
        for img in w.images() {
            let who = img.who.as_str();
            let path = img.path.clone();
            let Some(raw) = img.reference.filter(|i| !i.is_empty()) else {
                out.findings.push(Finding {
                    message: if img.volume {
                        format!("{who} has no image reference")
                    } else {
                        format!("{who} has no image")
                    },
                    fix: format!(
                        "set the image of {who} to a pinned reference from an allowed registry"
                    ),
                    path,
                    fixable: false,
                    object: None,
                    edit: None,
                });
                continue;
            };
            let image = match ImageRef::parse(raw) {
                Ok(i) => i,
                Err(e) => {
                    out.findings.push(Finding {
                        message: format!("{who}: {e}"),
                        fix: "write the image as registry/repository:tag@sha256:digest".into(),
                        path,
                        fixable: false,
                        object: None,
                        edit: None,
                    });
                    continue;
                }
            };
            let allowed = s.allows(&image.registry);
            let floating = image.is_latest_or_untagged();
            if !allowed {
                // One finding, one fix: the copy in an allowed registry is
                // what must be pinned, so a pin of this reference (refused
                // for its registry) is never offered beside it.
                let pin = floating || (s.require_digest || s.resolve) && image.digest.is_none();
                let also = match (pin, image.tag.as_deref(), floating) {
                    (true, Some("latest"), true) => " and uses the floating tag :latest",
                    (true, None, true) => " and has no tag",
                    (true, _, _) => " and is not pinned by digest",
                    (false, ..) => "",
                };
                out.findings.push(Finding {
                    message: format!(
                        "{who} image \"{raw}\" comes from {}, which is not an allowed registry \
                         ({}){also}",
                        image.registry,
                        s.allowed_list()
                    ),
                    fix: import_fix(s, &image, pin),
                    path: path.clone(),
                    fixable: false,
                    object: None,
                    edit: None,
                });
            }
            let registry_error = |e: &dyn std::fmt::Display, what: &str, out: &mut Outcome| {
                let f = Finding {
                    message: format!("{who} image \"{raw}\": {what}: {e}"),
                    fix: match s.on_error {
                        OnRegistryError::Deny => "check the registry and the pull secret; or set \
                        imageProvenance.onRegistryError: Allow to admit with a warning"
                            .into(),
                        OnRegistryError::Allow => {
                            "admitted unverified (onRegistryError: Allow)".into()
                        }
                    },
                    path: path.clone(),
                    fixable: false,
                    object: None,
                    edit: None,
                };
                match s.on_error {
                    OnRegistryError::Deny => out.findings.push(f),
                    OnRegistryError::Allow => out.warnings.push(f),
                }
            };
            if allowed
                && s.needs_registry()
                && let Err(problem) = s.auth(ctx, &image.registry)
            {
                out.findings.push(Finding {
                    message: format!(
                        "{who} image \"{raw}\": the registry cannot be asked: {problem}"
                    ),
                    fix: "fix imageProvenance.pullSecret or the Secret it names".into(),
                    path: path.clone(),
                    fixable: false,
                    object: None,
                    edit: None,
                });
                continue;
            }
            // The digest: as written, else as the registry answered.
            let mut digest = image.digest.clone();
            let asked = allowed && s.needs_registry() && digest.is_none();
            let mut offline = None;
            let mut failed = None;
            if asked {
                match (&facts.mode, facts.digest(&image)) {
                    (_, Some(Ok(d))) => digest = Some(d.clone()),
                    (_, Some(Err(e))) => failed = Some(e),
                    (Mode::Offline(why), None) => offline = Some(*why),
                    (Mode::Online, None) => {}
                }
            }
            // With resolveDigests, pinning is the webhook's job: a tag is a
            // violation because the webhook pins it. When the registry cannot
            // answer the digest, onRegistryError decides (requireDigest
            // included); only a floating tag stays refused whatever it says.
            let pinnable = s.resolve && image.digest.is_none();
            let unpinned = failed.filter(|_| pinnable);
            if let Some(e) = unpinned {
                // The outcome goes in the message: a long error leaves no room
                // for the fix in a 256-character warning.
                let outcome = match (floating, s.on_error) {
                    (true, _) => "refused: a floating tag must be pinned",
                    (false, OnRegistryError::Deny) => "refused: onRegistryError Deny",
                    (false, OnRegistryError::Allow) => "admitted by tag: onRegistryError Allow",
                };
                out.unpatched.push(Finding {
                message: format!(
                    "{who} image \"{raw}\" was not pinned ({outcome}): the digest lookup failed: {e}"
                ),
                fix: "check the registry and the pull secret, or pin it by digest yourself".into(),
                path: path.clone(),
                fixable: false,object: None, edit: None,
});
            }
            if let (Some(e), false) = (unpinned, floating) {
                let unverified = if s.signatures.is_some() {
                    " and unverified"
                } else {
                    ""
                };
                match s.on_error {
                OnRegistryError::Deny => out.findings.push(Finding {
                    message: format!(
                        "{who} image \"{raw}\": the digest lookup failed, so it cannot be \
                         pinned{}: {e}",
                        if s.signatures.is_some() {
                            " or verified"
                        } else {
                            ""
                        }
                    ),
                    fix: "check the registry and the pull secret, or pin it by digest yourself; \
                          imageProvenance.onRegistryError: Allow would admit it by tag with a \
                          warning"
                        .into(),
                    path: path.clone(),
                    fixable: false,object: None, edit: None,
}),
                OnRegistryError::Allow => out.warnings.push(Finding {
                    message: format!(
                        "{who} image \"{raw}\" admitted by tag, unpinned{unverified}: the digest \
                         lookup failed: {e}"
                    ),
                    fix: "pin it by digest, or fix the registry (onRegistryError: Allow admits a \
                          tag while its lookup fails)"
                        .into(),
                    path: path.clone(),
                    fixable: false,object: None, edit: None,
}),
            }
            } else if let (Some(e), false) = (failed, pinnable) {
                registry_error(e, "cannot resolve its tag to check its signature", &mut out);
            }
            let resolved = if pinnable { digest.as_deref() } else { None };
            let must_pin = floating || (s.require_digest || s.resolve) && image.digest.is_none();
            if allowed && must_pin && (floating || unpinned.is_none()) {
                let what = match (image.tag.as_deref(), floating) {
                    (Some("latest"), true) => "uses the floating tag :latest".to_owned(),
                    (None, true) => "has no tag, so it runs whatever :latest is".to_owned(),
                    _ => "is not pinned by digest".to_owned(),
                };
                let fix = match resolved {
                    Some(d) => {
                        format!("pin it to the digest {} answers: {raw}@{d}", image.registry)
                    }
                    None => format!(
                        "pin it: {}{}@sha256:<digest> (az acr manifest show-metadata, or crane digest){}",
                        image_without_tag(&image),
                        match image.tag.as_deref() {
                            Some(t) if t != "latest" => format!(":{t}"),
                            _ => ":<version>".into(),
                        },
                        match (offline, unpinned) {
                            (Some(why), _) if s.resolve => {
                                format!("; resolveDigests would pin it ({why})")
                            }
                            (_, Some(e)) => format!("; resolveDigests could not: {e}"),
                            _ => String::new(),
                        }
                    ),
                };
                if let Some(d) = resolved {
                    out.patch.push(replace(
                        super::pointer(&path, &[]),
                        serde_json::Value::String(format!("{raw}@{d}")),
                    ));
                }
                out.findings.push(Finding {
                    message: format!(
                        "{who} image \"{raw}\" {what}; the image that runs can change under you"
                    ),
                    fix,
                    path: path.clone(),
                    fixable: resolved.is_some(),
                    object: None,
                    edit: None,
                });
            }
            let (Some(sig), Some(keys)) = (&s.signatures, &keys) else {
                continue;
            };
            if !allowed {
                continue;
            }
            let push = |f: Finding, out: &mut Outcome| {
                if sig.required {
                    out.findings.push(f);
                } else {
                    out.warnings.push(f);
                }
            };
            let Some(digest) = digest else {
                if let Some(why) = offline {
                    out.warnings.push(Finding {
                        message: format!("{who} image \"{raw}\": signature not checked ({why})"),
                        fix: "run check --resolve-digests, or pin the image by digest".into(),
                        path: path.clone(),
                        fixable: false,
                        object: None,
                        edit: None,
                    });
                }
                continue;
            };
            let target = format!("{}/{}@{digest}", image.registry, image.repository);
            let sign = format!("sign it: cosign sign --key <a trusted key> {target}");
            match (&facts.mode, facts.signature(&image, &digest, keys)) {
                (_, Some(Ok(Signed::Verified { .. }))) => {}
                (_, Some(Ok(Signed::Unsigned))) => push(
                    Finding {
                        message: format!(
                            "{who} image \"{raw}\" has no cosign signature for {digest} (no {}.sig \
                         tag, no signature referrer); trusted keys: {}",
                            digest.replace(':', "-"),
                            keys.describe()
                        ),
                        fix: sign,
                        path: path.clone(),
                        fixable: false,
                        object: None,
                        edit: None,
                    },
                    &mut out,
                ),
                (_, Some(Ok(Signed::Rejected { reason, tried }))) => {
                    let why = match reason {
                        cosign::Rejected::NoTrustedKey => format!(
                            "none of its {tried} signature(s) verifies with the trusted keys ({}): \
                         signed by another key, or altered after signing",
                            keys.describe()
                        ),
                        cosign::Rejected::OtherDigest(other) => {
                            format!("its signature is for {other}, not for its digest {digest}")
                        }
                        cosign::Rejected::Malformed(detail) => {
                            format!("its signature cannot be read: {detail}")
                        }
                    };
                    push(
                        Finding {
                            message: format!("{who} image \"{raw}\": {why}"),
                            fix: sign,
                            path: path.clone(),
                            fixable: false,
                            object: None,
                            edit: None,
                        },
                        &mut out,
                    );
                }
                (_, Some(Err(e))) => registry_error(e, "cannot read its signatures", &mut out),
                (Mode::Offline(why), None) => out.warnings.push(Finding {
                    message: format!("{who} image \"{raw}\": signature not checked ({why})"),
                    fix: "run check --resolve-digests".into(),
                    path: path.clone(),
                    fixable: false,
                    object: None,
                    edit: None,
                }),
                (Mode::Online, None) => {}
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub allowed: Vec<RegistryPattern>,
    pub require_digest: bool,
    /// Pin tags to the registry's digest (the rule's mutation).
    pub resolve: bool,
    pub on_error: OnRegistryError,
    pub pull_secret: Option<String>,
    pub signatures: Option<SignatureSettings>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SignatureSettings {
    pub required: bool,
    /// The inline keys, parsed when the policy was compiled.
    inline: Vec<PublicKey>,
    /// Keys kept in Secrets of the controller's namespace: (name, secret, key).
    from_secrets: Vec<(Option<String>, String, String)>,
    /// The key set when every key is inline (no per-request parsing).
    fixed: Option<Arc<KeySet>>,
}

impl Settings {
    /// The key set when every key is inline.
    pub fn fixed_keys(&self) -> Option<Arc<KeySet>> {
        self.signatures.as_ref()?.fixed.clone()
    }

    /// Whether judging needs the registry's answers.
    pub fn needs_registry(&self) -> bool {
        self.resolve || self.signatures.is_some()
    }

    fn allows(&self, registry: &str) -> bool {
        self.allowed.iter().any(|p| p.matches(registry))
    }

    fn allowed_list(&self) -> String {
        self.allowed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The trusted keys, reading Secret-held ones from the context.
    fn key_set(&self, ctx: &Context) -> Option<Result<Arc<KeySet>, String>> {
        let sig = self.signatures.as_ref()?;
        if let Some(fixed) = &sig.fixed {
            return Some(Ok(fixed.clone()));
        }
        let mut keys = sig.inline.clone();
        for (name, secret, key) in &sig.from_secrets {
            let Some(data) = ctx.secret(secret) else {
                return Some(Err(format!(
                    "the key Secret {secret:?} is not readable by waf-admission (it must be in \
                     the controller's namespace and listed in the chart's provenance.secrets)"
                )));
            };
            let Some(pem) = data.get(key) else {
                return Some(Err(format!("the Secret {secret:?} has no key {key:?}")));
            };
            let pem = String::from_utf8_lossy(pem);
            match PublicKey::from_pem(&pem, name.as_deref().or(Some(secret.as_str()))) {
                Ok(k) => keys.push(k),
                Err(e) => return Some(Err(format!("the Secret {secret:?} key {key:?}: {e}"))),
            }
        }
        Some(Ok(Arc::new(KeySet::new(keys))))
    }

    /// Credentials for `registry` from the pull secret.
    fn auth(&self, ctx: &Context, registry: &str) -> Result<Auth, PullSecretError> {
        let Some(name) = &self.pull_secret else {
            return Ok(Auth::Anonymous);
        };
        let secret = || name.clone();
        let data = ctx
            .secret(name)
            .ok_or_else(|| PullSecretError::Unreadable(secret()))?;
        let json = data
            .get(".dockerconfigjson")
            .ok_or_else(|| PullSecretError::NoDockerConfig(secret()))?;
        Auth::from_docker_config(json, registry).map_err(|source| PullSecretError::Invalid {
            secret: secret(),
            source,
        })
    }
}

/// Why the pull secret gives no credentials.
#[derive(Debug, thiserror::Error)]
pub enum PullSecretError {
    #[error(
        "the pull secret {0:?} is not readable by waf-admission (it must be in the \
         controller's namespace and listed in the chart's provenance.secrets)"
    )]
    Unreadable(String),
    #[error("the pull secret {0:?} has no .dockerconfigjson")]
    NoDockerConfig(String),
    #[error("the pull secret {secret:?}: {source}")]
    Invalid {
        secret: String,
        source: crate::provenance::credentials::DockerConfigError,
    },
}

/// What to ask the registry for `w`: only for images from allowed
/// registries (an image from anywhere else is refused anyway, and the
/// webhook never contacts a host the policy does not trust).
pub fn queries(w: &Workload, s: &Settings, ctx: &Context, out: &mut Vec<Query>) {
    if !s.needs_registry() {
        return;
    }
    let keys = match s.key_set(ctx) {
        Some(Ok(k)) => Some(k),
        Some(Err(_)) => return,
        None => None,
    };
    for img in w.images() {
        let Some(image) = img.reference.and_then(|r| ImageRef::parse(r).ok()) else {
            continue;
        };
        if !s.allows(&image.registry) {
            continue;
        }
        let Ok(auth) = s.auth(ctx, &image.registry) else {
            continue;
        };
        out.push(Query {
            resolve: s.resolve && image.digest.is_none(),
            keys: keys.clone(),
            image,
            auth,
        });
    }
}

fn image_without_tag(i: &ImageRef) -> String {
    format!("{}/{}", i.registry, i.repository)
}

/// Registries nobody imports into: public, read-only mirrors.
const READ_ONLY: [&str; 1] = ["mcr.microsoft.com"];

/// Where an image from outside the allow-list should go, and whether the
/// policy allows it: the first allowed Azure Container Registry named in
/// full; else `<registry>.azurecr.io` when `*.azurecr.io` is allowed; else
/// the first other registry named in full; else `<registry>.azurecr.io`,
/// which the policy would have to allow.
fn import_target(s: &Settings) -> (String, bool) {
    let patterns: Vec<String> = s.allowed.iter().map(ToString::to_string).collect();
    let named = || {
        patterns
            .iter()
            .filter(|p| !p.contains('*') && !READ_ONLY.contains(&p.as_str()))
    };
    if let Some(acr) = named().find(|p| p.ends_with(".azurecr.io")) {
        return (acr.clone(), true);
    }
    let any_acr = s.allows("registry.azurecr.io");
    if any_acr {
        return ("<registry>.azurecr.io".into(), true);
    }
    match named().next() {
        Some(host) => (host.clone(), true),
        None => ("<registry>.azurecr.io".into(), false),
    }
}

/// The fix for an image from a registry the policy does not allow: the
/// copy into an allowed one (`az acr import` for an Azure Container
/// Registry, `crane copy` elsewhere; a version, never `latest`), and the
/// reference to write, pinned when the policy wants digests.
fn import_fix(s: &Settings, image: &ImageRef, pin: bool) -> String {
    let (target, allowed) = import_target(s);
    let tag = match image.tag.as_deref() {
        Some(t) if t != "latest" => t,
        _ => "<version>",
    };
    let repo = &image.repository;
    let source = match &image.digest {
        Some(d) => format!("{}/{repo}@{d}", image.registry),
        None => format!("{}/{repo}:{tag}", image.registry),
    };
    let copy = format!("{target}/{repo}:{tag}");
    let (command, digest_of) = match target.strip_suffix(".azurecr.io") {
        Some(acr) => (
            format!("az acr import --name {acr} --source {source} --image {repo}:{tag}"),
            format!("az acr manifest show-metadata {copy} --query digest -o tsv"),
        ),
        None => (
            format!("crane copy {source} {copy}"),
            format!("crane digest {copy}"),
        ),
    };
    let policy = if allowed {
        ""
    } else {
        " (and add it to imageProvenance.allowedRegistries)"
    };
    match (&image.digest, pin) {
        (Some(d), _) => format!("copy it into {target}{policy}: {command}; then use {copy}@{d}"),
        (None, true) => format!(
            "copy it into {target}{policy} and pin the copy: {command}; then use \
             {copy}@sha256:<digest> ({digest_of})"
        ),
        (None, false) => format!("copy it into {target}{policy}: {command}; then use {copy}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::Facts;
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    const DIGEST: &str = "sha256:4f8c1e1d36ca6a7bb3b5f4b3e6d8f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5";

    fn settings() -> Settings {
        defaults::<ImageProvenance>()
    }

    fn with_image(image: &str) -> Value {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        d
    }

    fn run(d: &Value, s: &Settings) -> Outcome {
        run_rule::<ImageProvenance>(d, s)
    }

    fn findings(image: &str) -> Vec<String> {
        run(&with_image(image), &settings())
            .findings
            .into_iter()
            .map(|f| f.message)
            .collect()
    }

    #[test]
    fn accepts_pinned_images_from_allowed_registries() {
        assert!(findings(&format!("contoso.azurecr.io/llm/vllm:v0.6.3@{DIGEST}")).is_empty());
        assert!(findings(&format!("mcr.microsoft.com/aks/kaito/kaito-base@{DIGEST}")).is_empty());
    }

    #[test]
    fn lookalike_hosts_never_pass_the_allow_list() {
        for image in [
            "contosoml.azurecr.io.evil.example/x",
            "evilazurecr.io/x",
            "mcr.microsoft.com.evil.example/x",
            "azurecr.io/x",
            "mcr.microsoft.com:5000/x",
        ] {
            let f = findings(&format!("{image}:1@{DIGEST}"));
            assert_eq!(f.len(), 1, "{image}: {f:?}");
            assert!(
                f[0].contains("which is not an allowed registry"),
                "{image}: {f:?}"
            );
        }
    }

    #[test]
    fn an_image_from_outside_the_allow_list_gets_one_fix_that_leads_to_a_pass() {
        let cases = [
            // The case: Docker Hub, :latest, an *.azurecr.io allow-list.
            (
                "docker.io/vllm/vllm-openai:latest",
                json!({"allowedRegistries": ["*.azurecr.io"], "requireDigest": true}),
            ),
            (
                "vllm/vllm-openai:v0.6.3",
                json!({"allowedRegistries": ["mcr.microsoft.com", "contoso.azurecr.io"]}),
            ),
            (
                "ghcr.io/huggingface/text-generation-inference:3.0",
                json!({"allowedRegistries": ["contoso.azurecr.io"], "requireDigest": false}),
            ),
            (
                &format!("docker.io/ollama/ollama@{DIGEST}"),
                json!({"allowedRegistries": ["*.azurecr.io"]}),
            ),
            // No Azure registry allowed: the copy goes to the one that is.
            (
                "vllm/vllm-openai:v0.6.3",
                json!({"allowedRegistries": ["mcr.microsoft.com", "registry.example:5000"]}),
            ),
        ];
        for (image, spec) in cases {
            let spec: ImageProvenance = serde_json::from_value(spec).unwrap();
            let s = settings_of(&spec);
            let out = run(&with_image(image), &s);
            assert_eq!(out.findings.len(), 1, "{image}: {:?}", out.findings);
            let fix = &out.findings[0].fix;
            assert!(
                fix.contains("az acr import --name contoso --source ")
                    || fix.contains("az acr import --name <registry> --source ")
                    || fix.contains(
                        "crane copy docker.io/vllm/vllm-openai:v0.6.3 registry.example:5000/"
                    ),
                "{fix}"
            );
            assert!(
                !fix.contains("mcr.microsoft.com"),
                "nobody imports into MCR: {fix}"
            );
            // The reference the fix says to write, its placeholders filled
            // as the user would, passes.
            let written = fix
                .rsplit(" use ")
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap()
                .replace("<registry>", "contoso")
                .replace("<version>", "v0.6.3")
                .replace("sha256:<digest>", DIGEST);
            let again = run(&with_image(&written), &s);
            assert!(
                again.is_clean(),
                "{image} → {written}: {:?}",
                again.findings
            );
        }
    }

    #[test]
    fn with_no_registry_to_copy_into_the_fix_says_the_policy_must_allow_one() {
        let spec: ImageProvenance =
            serde_json::from_value(json!({"allowedRegistries": ["mcr.microsoft.com"]})).unwrap();
        let out = run(&with_image("vllm/vllm-openai:v0.6.3"), &settings_of(&spec));
        assert!(
            out.findings[0]
                .fix
                .starts_with("copy it into <registry>.azurecr.io (and add it to imageProvenance.allowedRegistries)"),
            "{:?}",
            out.findings
        );
    }

    #[test]
    fn docker_hub_short_names_are_docker_io() {
        let f = findings("vllm/vllm-openai:v0.6.3");
        assert_eq!(
            f,
            [
                "container \"llm\" image \"vllm/vllm-openai:v0.6.3\" comes from docker.io, which is not \
             an allowed registry (*.azurecr.io, mcr.microsoft.com) and is not pinned by digest"
            ]
        );
    }

    #[test]
    fn latest_and_untagged_are_refused_without_digest() {
        let f = findings("contoso.azurecr.io/llm:latest");
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("uses the floating tag :latest"));
        let f = findings("contoso.azurecr.io/llm");
        assert!(f[0].contains("has no tag"));
    }

    #[test]
    fn latest_pinned_by_digest_is_pinned() {
        assert!(findings(&format!("contoso.azurecr.io/llm:latest@{DIGEST}")).is_empty());
    }

    #[test]
    fn latest_is_refused_even_when_digests_are_not_required() {
        let spec = ImageProvenance {
            require_digest: false,
            ..Default::default()
        };
        let s = spec.compile(&policy_facts(), "p", &mut vec![]);
        let d = with_image("contoso.azurecr.io/llm:latest");
        assert_eq!(run(&d, &s).findings.len(), 1);
        let d = with_image("contoso.azurecr.io/llm:1.0");
        assert!(run(&d, &s).is_clean());
    }

    #[test]
    fn init_and_ephemeral_containers_are_checked() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["initContainers"] =
            json!([{"name": "fetch", "image": "busybox"}]);
        d["spec"]["template"]["spec"]["ephemeralContainers"] =
            json!([{"name": "debug", "image": "ubuntu:22.04"}]);
        let out = run(&d, &settings());
        let paths: Vec<_> = out.findings.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"/spec/template/spec/initContainers/0/image"));
        assert!(paths.contains(&"/spec/template/spec/ephemeralContainers/0/image"));
    }

    #[test]
    fn an_unparseable_image_is_reported() {
        let f = findings("Contoso.azurecr.io/LLM:v1");
        assert_eq!(f.len(), 1);
        assert!(f[0].starts_with("container \"llm\": "), "{f:?}");
    }

    #[test]
    fn star_allows_any_registry_but_keeps_pinning() {
        let spec = ImageProvenance {
            allowed_registries: vec!["*".into()],
            ..Default::default()
        };
        let s = spec.compile(&policy_facts(), "p", &mut vec![]);
        assert!(run(&with_image(&format!("nginx@{DIGEST}")), &s).is_clean());
        assert_eq!(run(&with_image("nginx"), &s).findings.len(), 1);
    }

    /// A P-256 public key nobody signs with.
    const KEY: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZo2n56al0yz2J1/jeKuReQiX2CwX\ncO9q10O3PWMdlxEEb97DcL/xSjrVuYZ1RB18lfDVh4fhWiQ8/CK3TSv5zA==\n-----END PUBLIC KEY-----\n";

    /// Judges `image` with `spec` while the registry is down.
    fn registry_down(spec: Value, image: &str) -> Outcome {
        let mut spec = spec;
        spec["allowedRegistries"] = json!(["contoso.azurecr.io"]);
        let spec: ImageProvenance = serde_json::from_value(spec).unwrap();
        let mut problems = vec![];
        let s = spec.compile(&policy_facts(), "p", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let mut facts = Facts::online();
        let down = Err(crate::provenance::RegistryError::Unreachable {
            registry: "contoso.azurecr.io".into(),
            detail: "Connection refused".into(),
        });
        facts.insert_digest(&ImageRef::parse(image).unwrap(), down);
        ImageProvenance::check(
            &Subject {
                facts: &facts,
                ..on(&workload(&with_image(image)))
            },
            &s,
            false,
        )
    }

    fn messages(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|f| f.message.as_str()).collect()
    }

    #[test]
    fn a_tag_the_registry_cannot_pin_is_denied_for_the_failure_under_deny() {
        let out = registry_down(json!({"resolveDigests": true}), "contoso.azurecr.io/llm:v1");
        assert_eq!(
            messages(&out.findings),
            [
                "container \"llm\" image \"contoso.azurecr.io/llm:v1\": the digest lookup failed, \
              so it cannot be pinned: cannot reach contoso.azurecr.io: Connection refused"
            ]
        );
        assert!(out.warnings.is_empty() && out.patch.is_empty());
        assert_eq!(
            messages(&out.unpatched),
            [
                "container \"llm\" image \"contoso.azurecr.io/llm:v1\" was not pinned (refused: \
              onRegistryError Deny): the digest lookup failed: cannot reach contoso.azurecr.io: \
              Connection refused"
            ]
        );
    }

    #[test]
    fn a_tag_the_registry_cannot_pin_is_admitted_by_tag_under_allow() {
        // requireDigest (on by default) included: with resolveDigests the
        // pin is the webhook's to make, and onRegistryError says what a
        // failed lookup does.
        let out = registry_down(
            json!({"resolveDigests": true, "onRegistryError": "Allow"}),
            "contoso.azurecr.io/llm:v1",
        );
        assert!(out.findings.is_empty(), "{:?}", out.findings);
        assert_eq!(
            messages(&out.warnings),
            [
                "container \"llm\" image \"contoso.azurecr.io/llm:v1\" admitted by tag, unpinned: the \
              digest lookup failed: cannot reach contoso.azurecr.io: Connection refused"
            ]
        );
        assert!(
            out.unpatched[0]
                .message
                .contains("(admitted by tag: onRegistryError Allow)")
        );
        // With signatures, it says the signature went unchecked too.
        let out = registry_down(
            json!({"resolveDigests": true, "onRegistryError": "Allow",
                "signatures": {"keys": [{"pem": KEY}]}}),
            "contoso.azurecr.io/llm:v1",
        );
        assert!(out.findings.is_empty(), "{:?}", out.findings);
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert!(
            out.warnings[0]
                .message
                .contains("admitted by tag, unpinned and unverified")
        );
    }

    #[test]
    fn a_floating_tag_the_registry_cannot_pin_stays_refused_under_allow() {
        let out = registry_down(
            json!({"resolveDigests": true, "onRegistryError": "Allow"}),
            "contoso.azurecr.io/llm:latest",
        );
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        assert!(
            out.findings[0]
                .message
                .contains("uses the floating tag :latest")
        );
        assert!(
            out.findings[0].fix.ends_with(
                "; resolveDigests could not: cannot reach contoso.azurecr.io: Connection refused"
            ),
            "{}",
            out.findings[0].fix
        );
        assert!(
            out.unpatched[0]
                .message
                .contains("(refused: a floating tag must be pinned)")
        );
    }

    #[test]
    fn without_resolve_digests_a_failed_lookup_only_leaves_the_signature_unchecked() {
        let spec = json!({"requireDigest": false, "onRegistryError": "Allow",
            "signatures": {"keys": [{"pem": KEY}]}});
        let out = registry_down(spec.clone(), "contoso.azurecr.io/llm:v1");
        assert!(
            out.findings.is_empty() && out.unpatched.is_empty(),
            "{out:?}"
        );
        assert_eq!(
            messages(&out.warnings),
            [
                "container \"llm\" image \"contoso.azurecr.io/llm:v1\": cannot resolve its tag to \
              check its signature: cannot reach contoso.azurecr.io: Connection refused"
            ]
        );
        let mut deny = spec;
        deny["onRegistryError"] = json!("Deny");
        let out = registry_down(deny, "contoso.azurecr.io/llm:v1");
        assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
        // requireDigest without resolveDigests is the author's to meet:
        // a tag is unpinned whatever the registry says.
        let out = registry_down(
            json!({"onRegistryError": "Allow", "signatures": {"keys": [{"pem": KEY}]}}),
            "contoso.azurecr.io/llm:v1",
        );
        assert_eq!(messages(&out.findings).len(), 1);
        assert!(out.findings[0].message.contains("is not pinned by digest"));
        assert_eq!(out.warnings.len(), 1);
    }

    #[test]
    fn refuses_empty_and_malformed_allow_lists() {
        let mut spec = ImageProvenance {
            allowed_registries: vec![],
            ..Default::default()
        };
        let mut problems = vec![];
        spec.compile(&policy_facts(), "p", &mut problems);
        assert_eq!(problems.len(), 1);
        spec.allowed_registries = vec!["https://contoso.azurecr.io".into(), "*azurecr.io".into()];
        let mut problems = vec![];
        spec.compile(&policy_facts(), "p", &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
