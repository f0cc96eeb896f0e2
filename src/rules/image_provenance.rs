//! `image-provenance` (Security): every image, init and ephemeral
//! containers' too, comes from a registry the platform team trusts and is
//! pinned, so that what runs is what was scanned. Never `:latest` or
//! untagged without a digest. WAF: "use trusted registries … pin images".

use super::{Finding, Outcome};
use crate::image::{ImageRef, RegistryPattern};
use crate::policy;
use crate::workload::Workload;

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub allowed: Vec<RegistryPattern>,
    pub require_digest: bool,
}

impl Settings {
    pub fn compile(
        spec: &policy::ImageProvenance,
        at: &str,
        problems: &mut Vec<String>,
    ) -> Settings {
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
        Settings {
            allowed,
            require_digest: spec.require_digest,
        }
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
}

pub fn check(w: &Workload, s: &Settings) -> Outcome {
    let mut out = Outcome::default();
    for c in w.containers() {
        let who = c.describe();
        let path = format!("{}/image", c.path);
        let Some(raw) = c.image.filter(|i| !i.is_empty()) else {
            out.findings.push(Finding {
                message: format!("{who} has no image"),
                fix: format!("set image on {who} to a pinned reference from an allowed registry"),
                path,
                fixable: false,
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
                });
                continue;
            }
        };
        if !s.allows(&image.registry) {
            out.findings.push(Finding {
                message: format!(
                    "{who} image \"{raw}\" comes from {}, which is not an allowed registry ({})",
                    image.registry,
                    s.allowed_list()
                ),
                fix: format!(
                    "import it into your registry (az acr import --name <registry> --source {} \
                     --image {}) and use that reference",
                    image,
                    repo_and_tag(&image)
                ),
                path: path.clone(),
                fixable: false,
            });
        }
        let floating = image.is_latest_or_untagged();
        if floating || (s.require_digest && image.digest.is_none()) {
            let what = match (image.tag.as_deref(), floating) {
                (Some("latest"), true) => "uses the floating tag :latest".to_owned(),
                (None, true) => "has no tag, so it runs whatever :latest is".to_owned(),
                _ => "is not pinned by digest".to_owned(),
            };
            out.findings.push(Finding {
                message: format!("{who} image \"{raw}\" {what}; the image that runs can change under you"),
                fix: format!(
                    "pin it: image: {}{}@sha256:<digest> (az acr manifest show-metadata, or crane digest)",
                    image_without_tag(&image),
                    match image.tag.as_deref() {
                        Some(t) if t != "latest" => format!(":{t}"),
                        _ => ":<version>".into(),
                    }
                ),
                path,
                fixable: false,
            });
        }
    }
    out
}

fn image_without_tag(i: &ImageRef) -> String {
    format!("{}/{}", i.registry, i.repository)
}

fn repo_and_tag(i: &ImageRef) -> String {
    format!(
        "{}:{}",
        i.repository,
        i.tag.as_deref().unwrap_or("<version>")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::*;
    use serde_json::{Value, json};

    const DIGEST: &str = "sha256:4f8c1e1d36ca6a7bb3b5f4b3e6d8f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5";

    fn settings() -> Settings {
        let mut problems = vec![];
        let s = Settings::compile(
            &policy::ImageProvenance::default(),
            "imageProvenance",
            &mut problems,
        );
        assert!(problems.is_empty());
        s
    }

    fn with_image(image: &str) -> Value {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        d
    }

    fn findings(image: &str) -> Vec<String> {
        check(&workload(&with_image(image)), &settings())
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
    fn docker_hub_short_names_are_docker_io() {
        let f = findings("vllm/vllm-openai:v0.6.3");
        assert_eq!(
            f[0],
            "container \"llm\" image \"vllm/vllm-openai:v0.6.3\" comes from docker.io, which is not \
             an allowed registry (*.azurecr.io, mcr.microsoft.com)"
        );
        assert_eq!(
            f[1],
            "container \"llm\" image \"vllm/vllm-openai:v0.6.3\" is not pinned by digest; the image \
             that runs can change under you"
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
        let spec = policy::ImageProvenance {
            require_digest: false,
            ..Default::default()
        };
        let s = Settings::compile(&spec, "p", &mut vec![]);
        let d = with_image("contoso.azurecr.io/llm:latest");
        assert_eq!(check(&workload(&d), &s).findings.len(), 1);
        let d = with_image("contoso.azurecr.io/llm:1.0");
        assert!(check(&workload(&d), &s).is_clean());
    }

    #[test]
    fn init_and_ephemeral_containers_are_checked() {
        let mut d = gpu_deployment();
        d["spec"]["template"]["spec"]["initContainers"] =
            json!([{"name": "fetch", "image": "busybox"}]);
        d["spec"]["template"]["spec"]["ephemeralContainers"] =
            json!([{"name": "debug", "image": "ubuntu:22.04"}]);
        let out = check(&workload(&d), &settings());
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
        let spec = policy::ImageProvenance {
            allowed_registries: vec!["*".into()],
            ..Default::default()
        };
        let s = Settings::compile(&spec, "p", &mut vec![]);
        assert!(check(&workload(&with_image(&format!("nginx@{DIGEST}"))), &s).is_clean());
        assert_eq!(check(&workload(&with_image("nginx")), &s).findings.len(), 1);
    }

    #[test]
    fn refuses_empty_and_malformed_allow_lists() {
        let mut spec = policy::ImageProvenance {
            allowed_registries: vec![],
            ..Default::default()
        };
        let mut problems = vec![];
        Settings::compile(&spec, "p", &mut problems);
        assert_eq!(problems.len(), 1);
        spec.allowed_registries = vec!["https://contoso.azurecr.io".into(), "*azurecr.io".into()];
        let mut problems = vec![];
        Settings::compile(&spec, "p", &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
