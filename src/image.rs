//! Container image references, parsed as the container runtime resolves
//! them (the distribution `reference` grammar with Docker's normalisation),
//! and registry allow-list patterns. This decides whether an image comes
//! from a trusted registry, so lookalike hosts must never pass:
//! `contoso.azurecr.io.evil.example` is not under `azurecr.io`.

use std::fmt;
use std::str::FromStr;

/// A parsed image reference, normalised as the runtime resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host, with port if any, lower-case; `docker.io` when the
    /// reference names none.
    pub registry: String,
    /// Repository path; Docker Hub's single names get `library/`.
    pub repository: String,
    /// None when no tag was written (not defaulted to `latest`).
    pub tag: Option<String>,
    /// `algorithm:hex`, e.g. `sha256:…`.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ImageError {
    pub input: String,
    pub reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> ImageError {
    ImageError {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

const DOCKER_HUB: &str = "docker.io";
const NAME_MAX: usize = 255;

impl ImageRef {
    pub fn parse(reference: &str) -> Result<ImageRef, ImageError> {
        if reference.is_empty() {
            return Err(err(reference, "empty"));
        }
        if reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(err(reference, "contains white space"));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => {
                if digest.contains('@') {
                    return Err(err(reference, "more than one @"));
                }
                check_digest(digest).map_err(|r| err(reference, r))?;
                (rest, Some(digest.to_owned()))
            }
            None => (reference, None),
        };
        // A tag follows the last `:` that comes after the last `/`.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            check_tag(t).map_err(|r| err(reference, r))?;
        }
        if name.is_empty() {
            return Err(err(reference, "no repository name"));
        }
        if name.len() > NAME_MAX {
            return Err(err(
                reference,
                format!("name longer than {NAME_MAX} characters"),
            ));
        }
        let (registry, path) = split_registry(name);
        let registry = match registry {
            Some(host) => {
                check_host(host).map_err(|r| err(reference, r))?;
                let host = host.to_ascii_lowercase();
                if host == "index.docker.io" {
                    DOCKER_HUB.to_owned()
                } else {
                    host
                }
            }
            None => DOCKER_HUB.to_owned(),
        };
        check_path(path).map_err(|r| err(reference, r))?;
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        Ok(ImageRef {
            registry,
            repository,
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// `:latest`, or no tag and no digest (which the runtime reads as `:latest`).
    pub fn is_latest_or_untagged(&self) -> bool {
        self.tag.as_deref() == Some("latest") || (self.tag.is_none() && self.digest.is_none())
    }
}

impl FromStr for ImageRef {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first component is a registry only if it contains
/// `.` or `:`, is `localhost`, or has upper-case letters (which a
/// repository cannot have).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// `host[:port]`: DNS labels, an IPv4 address, or `[IPv6]`.
fn check_host(host: &str) -> Result<(), String> {
    let (hostname, port) = if let Some(inner) = host.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("registry {host:?}: unclosed ["))?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("registry {host:?}: not an IPv6 address"))?;
        match after {
            "" => return Ok(()),
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return Err(format!("registry {host:?}: junk after ]")),
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("registry {host:?}: port must be a number"));
    }
    if host.starts_with('[') {
        return Ok(());
    }
    if hostname.is_empty() {
        return Err(format!("registry {host:?}: no host name"));
    }
    for label in hostname.split('.') {
        let ok = !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "registry {host:?}: {label:?} is not a host name label"
            ));
        }
    }
    Ok(())
}

/// Repository path components: lower-case alphanumerics joined by `.`,
/// `_`, `__` or runs of `-`.
fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("no repository name".into());
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err("empty path component (leading, trailing or double /)".into());
        }
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("repository must be lower-case".into());
        }
        let bytes = component.as_bytes();
        if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
            return Err(format!(
                "path component {component:?} must start and end with a letter or digit"
            ));
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_lowercase() || b.is_ascii_digit() {
                i += 1;
                continue;
            }
            // A separator: `.`, `_`, `__`, or a run of `-`.
            let sep_len = match b {
                b'.' => 1,
                b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
                b'_' => 1,
                b'-' => bytes[i..].iter().take_while(|c| **c == b'-').count(),
                _ => return Err(format!("path component {component:?} has {:?}", b as char)),
            };
            i += sep_len;
            if !bytes.get(i).is_some_and(|c| c.is_ascii_alphanumeric()) {
                return Err(format!(
                    "path component {component:?}: separators must sit between letters or digits"
                ));
            }
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    match chars.next() {
        None => Err("empty tag after :".into()),
        Some(first) if !word(first) => {
            Err(format!("tag {tag:?} must start with a letter, digit or _"))
        }
        Some(_) if tag.len() > 128 => Err(format!("tag {tag:?} is longer than 128 characters")),
        Some(_) if !chars.all(|c| word(c) || c == '.' || c == '-') => {
            Err(format!("tag {tag:?} may hold only letters, digits, _ . -"))
        }
        Some(_) => Ok(()),
    }
}

/// `algorithm:hex`; sha256 needs 64 hex digits and sha512 128.
fn check_digest(digest: &str) -> Result<(), String> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("digest {digest:?} is not algorithm:hex"))?;
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|c| {
            c.chars().next().is_some_and(|f| f.is_ascii_alphabetic())
                && c.chars().all(|x| x.is_ascii_alphanumeric())
        });
    if !algorithm_ok {
        return Err(format!("digest algorithm {algorithm:?} is not valid"));
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("digest {digest:?} is not hexadecimal"));
    }
    let want = match algorithm {
        "sha256" => Some(64),
        "sha512" => Some(128),
        _ => None,
    };
    match want {
        Some(n) if hex.len() != n => Err(format!(
            "{algorithm} digest needs {n} hex digits, has {}",
            hex.len()
        )),
        None if hex.len() < 32 => Err(format!("digest {digest:?} is too short")),
        _ if algorithm == "sha256" && hex.bytes().any(|b| b.is_ascii_uppercase()) => {
            Err(format!("sha256 digest {digest:?} must be lower-case"))
        }
        _ => Ok(()),
    }
}

/// An entry of `allowedRegistries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryPattern {
    /// `*`: any registry (to enforce tags and digests only).
    Any,
    /// An exact host, with its port if written: `myreg.example:5000`.
    Exact(String),
    /// `*.azurecr.io`: any host under the domain (never the domain itself).
    Subdomain(String),
}

impl RegistryPattern {
    pub fn parse(pattern: &str) -> Result<RegistryPattern, ImageError> {
        let bad = |reason: &str| err(pattern, format!("not a registry pattern: {reason}"));
        if pattern == "*" {
            return Ok(RegistryPattern::Any);
        }
        if pattern.contains("://") {
            return Err(bad("write the host alone, without a scheme"));
        }
        if pattern.contains('/') || pattern.chars().any(char::is_whitespace) {
            return Err(bad("write the host alone, without a path or spaces"));
        }
        let (wild, host) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if host.contains('*') {
            return Err(bad("`*` only as the whole pattern or as a leading `*.`"));
        }
        if host.is_empty() {
            return Err(bad("no domain after *."));
        }
        check_host(host).map_err(|r| bad(&r))?;
        let host = host.to_ascii_lowercase();
        let host = if host == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            host
        };
        Ok(if wild {
            RegistryPattern::Subdomain(host)
        } else {
            RegistryPattern::Exact(host)
        })
    }

    /// Exact host-and-port semantics: a port is part of a registry's identity.
    pub fn matches(&self, registry: &str) -> bool {
        let registry = registry.to_ascii_lowercase();
        match self {
            RegistryPattern::Any => true,
            RegistryPattern::Exact(host) => registry == *host,
            RegistryPattern::Subdomain(suffix) => registry
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
        }
    }
}

impl fmt::Display for RegistryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryPattern::Any => f.write_str("*"),
            RegistryPattern::Exact(h) => f.write_str(h),
            RegistryPattern::Subdomain(s) => write!(f, "*.{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:4f8c1e1d36ca6a7bb3b5f4b3e6d8f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5";

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (r.registry, r.repository, r.tag, r.digest)
    }

    fn t(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn bare_name_defaults_to_docker_hub_library() {
        assert_eq!(
            parts("nginx"),
            ("docker.io".into(), "library/nginx".into(), None, None)
        );
        assert_eq!(
            parts("nginx:1.25"),
            ("docker.io".into(), "library/nginx".into(), t("1.25"), None)
        );
        assert_eq!(parts("library/nginx").1, "library/nginx");
        assert_eq!(parts("docker.io/nginx").1, "library/nginx");
        assert_eq!(
            parts("index.docker.io/nginx"),
            ("docker.io".into(), "library/nginx".into(), None, None)
        );
    }

    #[test]
    fn user_repositories_on_docker_hub_keep_their_path() {
        assert_eq!(
            parts("user/app:v1"),
            ("docker.io".into(), "user/app".into(), t("v1"), None)
        );
        assert_eq!(parts("vllm/vllm-openai:latest").1, "vllm/vllm-openai");
    }

    #[test]
    fn registries_are_recognised_by_dot_colon_or_localhost() {
        assert_eq!(parts("localhost/app").0, "localhost");
        assert_eq!(
            parts("localhost:5000/app:1"),
            ("localhost:5000".into(), "app".into(), t("1"), None)
        );
        assert_eq!(
            parts(&format!("myreg.example:5000/team/app@{D}")),
            ("myreg.example:5000".into(), "team/app".into(), None, t(D))
        );
        assert_eq!(
            parts(&format!("contoso.azurecr.io/models/llm:v1@{D}")),
            (
                "contoso.azurecr.io".into(),
                "models/llm".into(),
                t("v1"),
                t(D)
            )
        );
        assert_eq!(
            parts("nvcr.io/nvidia/tritonserver:24.05-py3").1,
            "nvidia/tritonserver"
        );
        assert_eq!(
            parts("ghcr.io/huggingface/text-generation-inference:2.0").0,
            "ghcr.io"
        );
        assert_eq!(parts("[::1]:5000/app").0, "[::1]:5000");
        assert_eq!(parts("127.0.0.1:5000/app").0, "127.0.0.1:5000");
        assert_eq!(
            parts("Contoso.AzureCR.io/app").0,
            "contoso.azurecr.io",
            "hosts are case-insensitive"
        );
    }

    #[test]
    fn latest_and_untagged_are_told_apart_from_pinned() {
        assert!(ImageRef::parse("nginx").unwrap().is_latest_or_untagged());
        assert!(
            ImageRef::parse("nginx:latest")
                .unwrap()
                .is_latest_or_untagged()
        );
        assert!(
            !ImageRef::parse(&format!("nginx@{D}"))
                .unwrap()
                .is_latest_or_untagged()
        );
        assert!(
            !ImageRef::parse("nginx:1.27")
                .unwrap()
                .is_latest_or_untagged()
        );
    }

    #[test]
    fn display_is_fully_qualified() {
        assert_eq!(
            ImageRef::parse("nginx:1").unwrap().to_string(),
            "docker.io/library/nginx:1"
        );
        let s = format!("contoso.azurecr.io/a/b:v@{D}");
        assert_eq!(ImageRef::parse(&s).unwrap().to_string(), s);
    }

    #[test]
    fn malformed_references_are_refused_with_the_input_quoted() {
        for bad in [
            "",
            " nginx",
            "nginx ",
            "ngi nx",
            "/nginx",
            "nginx/",
            "a//b",
            "nginx:",
            "nginx@",
            "nginx@sha256:abc",
            "a@b@c",
            "Nginx",
            "contoso.azurecr.io/LLM:v1",
            "nginx:-tag",
            "nginx:tag!",
            "-bad.example/x",
            "bad-.example/x",
            "host:port/x",
            "a..b/x",
            "my_reg.example/x",
            "repo/-x",
            "repo/x-",
            "repo/x..y",
            "[::1/x",
            "[zz]:5/x",
        ] {
            let e = ImageRef::parse(bad).expect_err(bad);
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid image reference {bad:?}")),
                "{e}"
            );
        }
        let long = format!("{}:1", "a".repeat(256));
        assert!(ImageRef::parse(&long).is_err());
        assert!(ImageRef::parse(&format!("x:{}", "t".repeat(129))).is_err());
        assert!(
            ImageRef::parse(&format!("x@sha256:{}", "A".repeat(64))).is_err(),
            "upper-case sha256"
        );
        assert!(ImageRef::parse(&format!("x@sha512:{}", "a".repeat(128))).is_ok());
        assert!(ImageRef::parse(&format!("x@sha256:{}", "a".repeat(63))).is_err());
    }

    #[test]
    fn separators_follow_the_grammar() {
        for ok in ["a_b", "a__b", "a.b", "a-b", "a---b", "a/b.c_d__e-f"] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["a___b", "a.-b", "a_.b", "a..b"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    fn allowed(patterns: &[&str], image: &str) -> bool {
        let r = ImageRef::parse(image).unwrap();
        patterns
            .iter()
            .map(|p| RegistryPattern::parse(p).unwrap())
            .any(|p| p.matches(&r.registry))
    }

    #[test]
    fn lookalike_hosts_never_match_the_allow_list() {
        let list = ["*.azurecr.io", "mcr.microsoft.com"];
        assert!(allowed(&list, "contoso.azurecr.io/x:1"));
        assert!(allowed(&list, "a.b.azurecr.io/x:1"));
        assert!(allowed(&list, "mcr.microsoft.com/x:1"));
        for image in [
            "contosoml.azurecr.io.evil.example/x",
            "evilazurecr.io/x",
            "mcr.microsoft.com.evil.example/x",
            "azurecr.io/x",
            "azurecr.io-fake/x",
            "contoso.azurecr.io:443/x",
            "mcr.microsoft.com:5000/x",
            "x.mcr.microsoft.com/x",
            "azurecr/x",
        ] {
            assert!(!allowed(&list, image), "{image} must not pass");
        }
    }

    #[test]
    fn docker_io_pattern_matches_names_without_registry() {
        for image in [
            "nginx",
            "library/nginx",
            "user/app",
            "index.docker.io/user/app",
        ] {
            assert!(allowed(&["docker.io"], image), "{image}");
            assert!(allowed(&["index.docker.io"], image), "{image}");
        }
        assert!(!allowed(&["docker.io"], "ghcr.io/user/app"));
    }

    #[test]
    fn ports_are_part_of_the_registry() {
        assert!(allowed(&["myreg.example:5000"], "myreg.example:5000/x"));
        assert!(!allowed(&["myreg.example:5000"], "myreg.example/x"));
        assert!(!allowed(&["myreg.example"], "myreg.example:5000/x"));
        assert!(allowed(&["*.corp.example:5000"], "a.corp.example:5000/x"));
        assert!(!allowed(&["*.corp.example:5000"], "a.corp.example/x"));
    }

    #[test]
    fn star_allows_every_registry() {
        assert!(allowed(&["*"], "anything.example:1/x"));
        assert!(allowed(&["*"], "nginx"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "*.",
            "**.x",
            "*foo.com",
            "foo.*.com",
            "https://x.io",
            "x.io/path",
            " x.io",
            "*.*",
            "x.io:port",
        ] {
            assert!(RegistryPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patterns_round_trip_to_what_was_written() {
        for p in [
            "*",
            "*.azurecr.io",
            "mcr.microsoft.com",
            "myreg.example:5000",
        ] {
            assert_eq!(RegistryPattern::parse(p).unwrap().to_string(), p);
        }
    }

    #[test]
    fn subdomain_matching_is_a_dot_suffix_and_exact_is_equality() {
        let hosts = [
            "a.azurecr.io",
            "azurecr.io",
            "xazurecr.io",
            "a.azurecr.io.b",
            "a.b.azurecr.io",
            "azurecr.io.",
            ".azurecr.io",
            "mcr.microsoft.com",
        ];
        let sub = RegistryPattern::parse("*.azurecr.io").unwrap();
        let exact = RegistryPattern::parse("mcr.microsoft.com").unwrap();
        for h in hosts {
            let expected = h.ends_with(".azurecr.io") && h.len() > ".azurecr.io".len();
            assert_eq!(sub.matches(h), expected, "{h}");
            assert_eq!(exact.matches(h), h == "mcr.microsoft.com", "{h}");
        }
    }
}
