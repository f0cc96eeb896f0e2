//! Container image references, parsed as the container runtime resolves them
//! (the distribution `reference` grammar plus Docker's normalisation), and
//! registry allow-list patterns.
//!
//! This decides whether an image comes from a trusted registry, so the parser
//! refuses anything it cannot attribute to exactly one registry host, and the
//! matcher compares whole host names: `contoso.azurecr.io.evil.example` is not
//! under `azurecr.io`, and `evilazurecr.io` is not either.
//!
//! Where this differs from `distribution/reference` it is stricter, so that
//! nothing we accept is attributed to a different registry by the runtime:
//! an upper-case first component (`Foo/bar`) is refused rather than read as
//! a host; `[...]` must hold a real IPv6 address; and the 255-character limit
//! covers `registry/repository`, not only the repository. Digests with
//! unregistered algorithms follow the looser OCI grammar; the runtime will
//! refuse to pull those, which cannot widen what is allowed.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// Where a reference that names no registry is pulled from.
const DOCKER_HUB: &str = "docker.io";
/// The legacy Docker Hub host, which the runtime treats as [`DOCKER_HUB`].
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// Docker Hub's namespace for single-component ("official") repositories.
const OFFICIAL_PREFIX: &str = "library/";
/// The distribution limit on `registry/repository`, counted after
/// normalisation (as `reference.ParseNormalizedNamed` does).
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Tags are `[\w][\w.-]{0,127}`.
const TAG_LENGTH_MAX: usize = 128;
/// Shortest encoded part of a digest with an unregistered algorithm.
const DIGEST_ENCODED_MIN: usize = 32;

/// A parsed image reference, normalised as the container runtime resolves it,
/// so that policy sees the registry the kubelet will actually pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host, with port if any, lower-case. `docker.io` when the
    /// reference names none.
    pub registry: String,
    /// Repository path; `library/` prefixed for single-component Docker Hub
    /// names (`nginx` -> `library/nginx`).
    pub repository: String,
    /// The tag as written; `None` when no tag was written (not defaulted to
    /// `latest`, so callers can tell "untagged" from "`:latest`").
    pub tag: Option<String>,
    /// The digest as written, e.g. `sha256:<64 hex>`.
    pub digest: Option<String>,
}

/// Why an image reference or a registry pattern was refused. Messages quote
/// the input (Debug-escaped, so control characters cannot forge log lines).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    /// The reference does not follow the grammar the runtime accepts, so we
    /// cannot say which registry it would be pulled from.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// The reference as written.
        input: String,
        /// What is wrong with it.
        reason: ImageProblem,
    },
    /// An allow-list entry that is not `*`, `*.domain` or a registry host;
    /// refusing it beats guessing what the author meant.
    #[error("invalid registry pattern {input:?}: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        input: String,
        /// What is wrong with it.
        reason: ImageProblem,
    },
}

/// What exactly is wrong with a refused reference or pattern: one variant
/// per message, carrying what the message quotes. Strings are quoted with
/// Debug escaping, like the input in [`ImageError`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageProblem {
    /// The reference is the empty string.
    #[error("reference is empty")]
    EmptyReference,
    /// The reference contains whitespace or a control character.
    #[error("reference contains whitespace or control characters")]
    ReferenceWhitespace,
    /// A bare 64-hex string, which the runtime reads as an image ID.
    #[error("a bare 64-character hex string is an image ID, not a repository name")]
    ImageId,
    /// More than one `@`.
    #[error("reference contains more than one '@'")]
    MultipleAt,
    /// An `@` with nothing after it.
    #[error("nothing after '@'; expected a digest such as sha256:<64 hex digits>")]
    MissingDigest,
    /// No repository before the tag or digest (or after the registry).
    #[error("no repository name")]
    NoRepository,
    /// The name starts with `/`.
    #[error("name must not start with '/'")]
    LeadingSlash,
    /// The name ends with `/`.
    #[error("name must not end with '/'")]
    TrailingSlash,
    /// The name contains `//`.
    #[error("name contains an empty path component ('//')")]
    EmptyPathComponent,
    /// `registry/repository`, normalised, is longer than the runtime allows.
    #[error("name {registry}/{repository} is {total} characters, longer than {max}", max = NAME_TOTAL_LENGTH_MAX)]
    NameTooLong {
        /// The normalised registry host.
        registry: String,
        /// The normalised repository path.
        repository: String,
        /// The length of `registry/repository`.
        total: usize,
    },
    /// The pattern is the empty string.
    #[error("pattern is empty; use \"*\" to allow any registry")]
    EmptyPattern,
    /// The pattern contains whitespace or a control character.
    #[error("pattern contains whitespace or control characters")]
    PatternWhitespace,
    /// The pattern has a URL scheme.
    #[error("write the registry host alone, without a scheme such as https://")]
    PatternScheme,
    /// The pattern has a path.
    #[error("write the registry host alone, without a path ('/')")]
    PatternPath,
    /// A `*` other than the whole pattern or a leading `*.`.
    #[error("'*' is allowed only as the whole pattern or as a leading '*.', e.g. *.azurecr.io")]
    MisplacedWildcard,
    /// `*.` with nothing after it.
    #[error("'*.' needs a domain after it, e.g. *.azurecr.io")]
    WildcardWithoutDomain,
    /// `*.` followed by a bracketed IP address.
    #[error("'*.' needs a domain name after it, not an IP address")]
    WildcardAddress,
    /// A registry host with `[` and no `]`.
    #[error("registry {host:?} opens '[' without closing it")]
    UnclosedBracket {
        /// The registry host as written.
        host: String,
    },
    /// A registry host whose brackets hold no IPv6 address.
    #[error("registry {host:?}: {address:?} is not an IPv6 address")]
    NotIpv6 {
        /// The registry host as written.
        host: String,
        /// What the brackets hold.
        address: String,
    },
    /// Something other than `:port` after `]`.
    #[error("registry {host:?} has unexpected characters after ']'")]
    AfterBracket {
        /// The registry host as written.
        host: String,
    },
    /// A port that is empty or not decimal digits.
    #[error("registry {host:?}: port {port:?} must be decimal digits")]
    BadPort {
        /// The registry host as written.
        host: String,
        /// The port as written.
        port: String,
    },
    /// A registry with a port but no host name.
    #[error("registry {host:?} has no host name")]
    NoHostName {
        /// The registry host as written.
        host: String,
    },
    /// A host name label that is empty, has other characters than letters,
    /// digits and `-`, or starts or ends with `-`.
    #[error(
        "registry {host:?}: {label:?} is not a valid host name label \
         (letters, digits and '-', not at either end)"
    )]
    BadHostLabel {
        /// The registry host as written.
        host: String,
        /// The offending label.
        label: String,
    },
    /// Upper-case letters in the repository.
    #[error("repository must be lower-case")]
    UppercaseRepository,
    /// A repository path component that breaks the grammar.
    #[error(
        "repository component {component:?} must be lower-case letters and digits, \
         separated by '.', '_', '__' or '-'"
    )]
    BadRepositoryComponent {
        /// The offending component.
        component: String,
    },
    /// A `:` with nothing after it.
    #[error("nothing after ':'; expected a tag")]
    EmptyTag,
    /// A tag longer than the runtime allows.
    #[error("tag is {length} characters, longer than {max}", max = TAG_LENGTH_MAX)]
    TagTooLong {
        /// The tag's length in bytes.
        length: usize,
    },
    /// A tag that starts with `.` or `-` (or another non-word character).
    #[error("tag {tag:?} must start with a letter, digit or '_'")]
    TagStart {
        /// The tag as written.
        tag: String,
    },
    /// A tag with characters outside `[A-Za-z0-9_.-]`.
    #[error("tag {tag:?} may contain only letters, digits, '_', '.' and '-'")]
    TagCharacters {
        /// The tag as written.
        tag: String,
    },
    /// A digest without `algorithm:`.
    #[error("digest {digest:?} must be algorithm:hex, e.g. sha256:<64 hex digits>")]
    DigestForm {
        /// The digest as written.
        digest: String,
    },
    /// A sha256 or sha512 digest of the wrong length or not lower-case hex.
    #[error("{algorithm} digest must be {length} lower-case hex digits, got {encoded:?}")]
    FixedDigest {
        /// `sha256` or `sha512`.
        algorithm: String,
        /// The number of hex digits that algorithm takes.
        length: usize,
        /// What follows the `:`.
        encoded: String,
    },
    /// An unregistered digest algorithm that breaks the OCI grammar.
    #[error(
        "digest algorithm {algorithm:?} must be lower-case letters and digits, \
         separated by '+', '.', '_' or '-'"
    )]
    DigestAlgorithm {
        /// The algorithm as written.
        algorithm: String,
    },
    /// An unregistered algorithm's encoded part that is too short or has
    /// characters outside `[a-zA-Z0-9=_-]`.
    #[error(
        "digest {digest:?} must have at least {min} characters of \
         [a-zA-Z0-9=_-] after the algorithm",
        min = DIGEST_ENCODED_MIN
    )]
    DigestEncoded {
        /// The digest as written.
        digest: String,
    },
}

impl ImageError {
    fn reference(input: &str, reason: ImageProblem) -> ImageError {
        ImageError::InvalidReference {
            input: input.to_owned(),
            reason,
        }
    }

    fn pattern(input: &str, reason: ImageProblem) -> ImageError {
        ImageError::InvalidPattern {
            input: input.to_owned(),
            reason,
        }
    }
}

impl ImageRef {
    /// Parses `[registry/]repository[:tag][@digest]` the way the runtime
    /// does (`reference.ParseNormalizedNamed`), refusing anything it would
    /// refuse, so that the registry we judge is the registry that is pulled.
    ///
    /// # Errors
    ///
    /// [`ImageError::InvalidReference`] when the reference breaks the grammar.
    pub fn parse(reference: &str) -> Result<ImageRef, ImageError> {
        let fail = |reason: ImageProblem| ImageError::reference(reference, reason);

        if reference.is_empty() {
            return Err(fail(ImageProblem::EmptyReference));
        }
        if reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(fail(ImageProblem::ReferenceWhitespace));
        }
        if is_image_id(reference) {
            return Err(fail(ImageProblem::ImageId));
        }

        let (name_and_tag, digest) = match reference.split_once('@') {
            None => (reference, None),
            Some((_, digest)) if digest.contains('@') => {
                return Err(fail(ImageProblem::MultipleAt));
            }
            Some((_, "")) => {
                return Err(fail(ImageProblem::MissingDigest));
            }
            Some((name_and_tag, digest)) => {
                check_digest(digest).map_err(fail)?;
                (name_and_tag, Some(digest))
            }
        };

        // The tag follows the last ':' that comes after the last '/'; any
        // earlier ':' belongs to the registry's port.
        let (name, tag) = match name_and_tag.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(fail)?;
        }

        if name.is_empty() {
            return Err(fail(ImageProblem::NoRepository));
        }
        if name.starts_with('/') {
            return Err(fail(ImageProblem::LeadingSlash));
        }
        if name.ends_with('/') {
            return Err(fail(ImageProblem::TrailingSlash));
        }
        if name.contains("//") {
            return Err(fail(ImageProblem::EmptyPathComponent));
        }

        let (registry, remainder) = match split_registry(name) {
            (Some(host), remainder) => (normalise_host(host).map_err(&fail)?, remainder),
            (None, remainder) => (DOCKER_HUB.to_owned(), remainder),
        };
        check_repository(remainder).map_err(fail)?;
        let repository = if registry == DOCKER_HUB && !remainder.contains('/') {
            format!("{OFFICIAL_PREFIX}{remainder}")
        } else {
            remainder.to_owned()
        };

        let total = registry.len() + 1 + repository.len();
        if total > NAME_TOTAL_LENGTH_MAX {
            return Err(fail(ImageProblem::NameTooLong {
                registry,
                repository,
                total,
            }));
        }

        Ok(ImageRef {
            registry,
            repository,
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        })
    }

    /// True for `:latest` or no tag (which the runtime pulls as `:latest`)
    /// when no digest pins it: then what runs can change under you. A digest
    /// pins the image whatever the tag says.
    #[must_use]
    pub fn is_latest_or_untagged(&self) -> bool {
        self.digest.is_none() && matches!(self.tag.as_deref(), None | Some("latest"))
    }
}

impl FromStr for ImageRef {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// The fully qualified form `registry/repository[:tag][@digest]`, which
/// parses back to the same [`ImageRef`] and leaves nothing implicit.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// An allow-list entry naming the registries images may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryPattern {
    /// `*`: every registry (for policies that only enforce pinning).
    Any,
    /// One registry host, lower-case, with its port if one was written: a
    /// port is part of a registry's identity, so `myreg.example:5000` and
    /// `myreg.example` are different registries.
    Exact(String),
    /// `*.azurecr.io`, stored as the suffix without `*.` (`azurecr.io`):
    /// any host strictly under that domain, never the domain itself.
    Subdomain(String),
}

impl RegistryPattern {
    /// Parses `*`, `*.domain[:port]` or `host[:port]`. Anything looser (a
    /// scheme, a path, a wildcard elsewhere) is refused rather than guessed
    /// at, since a misread allow-list entry could let in a registry.
    ///
    /// # Errors
    ///
    /// [`ImageError::InvalidPattern`] when the pattern is none of those.
    pub fn parse(pattern: &str) -> Result<RegistryPattern, ImageError> {
        let fail = |reason: ImageProblem| ImageError::pattern(pattern, reason);

        if pattern.is_empty() {
            return Err(fail(ImageProblem::EmptyPattern));
        }
        if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail(ImageProblem::PatternWhitespace));
        }
        if pattern.contains("://") {
            return Err(fail(ImageProblem::PatternScheme));
        }
        if pattern.contains('/') {
            return Err(fail(ImageProblem::PatternPath));
        }
        if pattern == "*" {
            return Ok(RegistryPattern::Any);
        }

        let (wildcard, host) = match pattern.strip_prefix("*.") {
            Some(suffix) => (true, suffix),
            None => (false, pattern),
        };
        if host.contains('*') {
            return Err(fail(ImageProblem::MisplacedWildcard));
        }
        if wildcard {
            if host.is_empty() {
                return Err(fail(ImageProblem::WildcardWithoutDomain));
            }
            if host.starts_with('[') {
                return Err(fail(ImageProblem::WildcardAddress));
            }
            check_host(host).map_err(fail)?;
            // No Docker Hub aliasing here: `*.index.docker.io` names hosts
            // under that domain, not Docker Hub itself.
            Ok(RegistryPattern::Subdomain(host.to_ascii_lowercase()))
        } else {
            Ok(RegistryPattern::Exact(normalise_host(host).map_err(fail)?))
        }
    }

    /// Whether images from `registry_host` (an [`ImageRef::registry`]) are
    /// allowed. Comparison is case-insensitive and on whole host names with
    /// their ports. Strings that are not valid registry hosts never match,
    /// not even `*`, so a caller passing unparsed input fails closed.
    #[must_use]
    pub fn matches(&self, registry_host: &str) -> bool {
        let Ok(host) = normalise_host(registry_host) else {
            return false;
        };
        match self {
            RegistryPattern::Any => true,
            RegistryPattern::Exact(exact) => host == *exact,
            RegistryPattern::Subdomain(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
        }
    }
}

impl FromStr for RegistryPattern {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RegistryPattern::parse(s)
    }
}

/// The written form (lower-cased, `index.docker.io` as `docker.io`), which
/// parses back to the same pattern, so policies can be echoed to users.
impl fmt::Display for RegistryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryPattern::Any => f.write_str("*"),
            RegistryPattern::Exact(host) => f.write_str(host),
            RegistryPattern::Subdomain(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// The runtime refuses a bare 64-hex string as a name: it is an image ID.
fn is_image_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Docker's domain rule: the first component names a registry only if it
/// contains `.` or `:` or is `localhost`; otherwise the whole name is a
/// Docker Hub repository.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first == "localhost" || first.contains(['.', ':']) => {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// Validates `host[:port]` and returns it lower-case, with the legacy
/// Docker Hub host folded into `docker.io`.
fn normalise_host(host: &str) -> Result<String, ImageProblem> {
    check_host(host)?;
    // ASCII-only lower-casing: `check_host` has refused all non-ASCII, and
    // Unicode case folding could turn a lookalike (the Kelvin sign) into `k`.
    let host = host.to_ascii_lowercase();
    if host == LEGACY_DOCKER_HUB {
        Ok(DOCKER_HUB.to_owned())
    } else {
        Ok(host)
    }
}

/// `host[:port]` where host is a domain name (which covers IPv4) or an IPv6
/// address in brackets, and port is decimal digits.
fn check_host(host: &str) -> Result<(), ImageProblem> {
    let port = if let Some(inner) = host.strip_prefix('[') {
        let Some((address, after)) = inner.split_once(']') else {
            return Err(ImageProblem::UnclosedBracket {
                host: host.to_owned(),
            });
        };
        // The grammar allows only hex digits and ':' (no zone, no embedded
        // IPv4); requiring a real address as well refuses nonsense like `[:]`.
        let grammatical =
            !address.is_empty() && address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        if !grammatical || address.parse::<Ipv6Addr>().is_err() {
            return Err(ImageProblem::NotIpv6 {
                host: host.to_owned(),
                address: address.to_owned(),
            });
        }
        match after {
            "" => None,
            after => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => {
                    return Err(ImageProblem::AfterBracket {
                        host: host.to_owned(),
                    });
                }
            },
        }
    } else {
        let (name, port) = match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        check_domain_name(host, name)?;
        port
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ImageProblem::BadPort {
            host: host.to_owned(),
            port: port.to_owned(),
        });
    }
    Ok(())
}

/// Dot-separated labels of ASCII letters, digits and `-`, where no label is
/// empty or starts or ends with `-`.
fn check_domain_name(host: &str, name: &str) -> Result<(), ImageProblem> {
    if name.is_empty() {
        return Err(ImageProblem::NoHostName {
            host: host.to_owned(),
        });
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err(ImageProblem::BadHostLabel {
                host: host.to_owned(),
                label: label.to_owned(),
            });
        }
    }
    Ok(())
}

/// `/`-separated components of lower-case alphanumerics joined by `.`, `_`,
/// `__` or runs of `-`.
fn check_repository(path: &str) -> Result<(), ImageProblem> {
    if path.is_empty() {
        return Err(ImageProblem::NoRepository);
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ImageProblem::UppercaseRepository);
    }
    for component in path.split('/') {
        if !is_path_component(component) {
            return Err(ImageProblem::BadRepositoryComponent {
                component: component.to_owned(),
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_path_component(component: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let mut i = 0;
    loop {
        // A run of alphanumerics, which must not be empty.
        let run = bytes.iter().skip(i).take_while(|b| alnum(b)).count();
        if run == 0 {
            return false;
        }
        i += run;
        // Then either the end, or a separator followed by another run.
        let separator = match bytes.get(i) {
            None => return true,
            Some(b'_') if bytes.get(i + 1) == Some(&b'_') => 2,
            Some(b'.' | b'_') => 1,
            Some(b'-') => bytes.iter().skip(i).take_while(|b| **b == b'-').count(),
            Some(_) => return false,
        };
        i += separator;
    }
}

/// `[\w][\w.-]{0,127}`, with `\w` meaning ASCII `[A-Za-z0-9_]`.
fn check_tag(tag: &str) -> Result<(), ImageProblem> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let Some(&first) = tag.as_bytes().first() else {
        return Err(ImageProblem::EmptyTag);
    };
    if tag.len() > TAG_LENGTH_MAX {
        return Err(ImageProblem::TagTooLong { length: tag.len() });
    }
    if !word(first) {
        return Err(ImageProblem::TagStart {
            tag: tag.to_owned(),
        });
    }
    if !tag.bytes().all(|b| word(b) || b == b'.' || b == b'-') {
        return Err(ImageProblem::TagCharacters {
            tag: tag.to_owned(),
        });
    }
    Ok(())
}

/// `algorithm:encoded`. The registered algorithms have fixed lengths
/// (sha256: 64, sha512: 128 lower-case hex); others follow the OCI grammar
/// `[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}`.
fn check_digest(digest: &str) -> Result<(), ImageProblem> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err(ImageProblem::DigestForm {
            digest: digest.to_owned(),
        });
    };
    let fixed_hex_len = match algorithm {
        "sha256" => Some(64),
        "sha512" => Some(128),
        _ => None,
    };
    if let Some(len) = fixed_hex_len {
        let lower_hex = encoded
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if encoded.len() != len || !lower_hex {
            return Err(ImageProblem::FixedDigest {
                algorithm: algorithm.to_owned(),
                length: len,
                encoded: encoded.to_owned(),
            });
        }
        return Ok(());
    }
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if !algorithm_ok {
        return Err(ImageProblem::DigestAlgorithm {
            algorithm: algorithm.to_owned(),
        });
    }
    let encoded_ok = encoded.len() >= DIGEST_ENCODED_MIN
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
    if !encoded_ok {
        return Err(ImageProblem::DigestEncoded {
            digest: digest.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed sha256 digest.
    const SHA: &str = "sha256:4f8c1e1d36ca6a7bb3b5f4b3e6d8f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5";

    fn parse(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn reason_of(s: &str) -> String {
        match ImageRef::parse(s) {
            Ok(r) => panic!("{s:?} should be refused, parsed as {r:?}"),
            Err(ImageError::InvalidReference { input, reason }) => {
                assert_eq!(input, s);
                reason.to_string()
            }
            Err(other) => panic!("{s:?}: wrong error kind {other:?}"),
        }
    }

    fn pattern(p: &str) -> RegistryPattern {
        RegistryPattern::parse(p).unwrap_or_else(|e| panic!("{p:?} should parse: {e}"))
    }

    /// Whether any of `patterns` allows the registry `image` is pulled from.
    fn allowed(patterns: &[&str], image: &str) -> bool {
        let registry = parse(image).registry;
        patterns.iter().any(|p| pattern(p).matches(&registry))
    }

    /// (input, registry, repository, tag, digest)
    type Row<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

    fn check_table(rows: &[Row<'_>]) {
        for &(input, registry, repository, tag, digest) in rows {
            let want = ImageRef {
                registry: registry.to_owned(),
                repository: repository.to_owned(),
                tag: tag.map(str::to_owned),
                digest: digest.map(str::to_owned),
            };
            assert_eq!(parse(input), want, "{input:?}");
        }
    }

    #[test]
    fn bare_name_defaults_to_docker_hub_library() {
        check_table(&[
            ("nginx", "docker.io", "library/nginx", None, None),
            (
                "nginx:1.25",
                "docker.io",
                "library/nginx",
                Some("1.25"),
                None,
            ),
            (
                "nginx:latest",
                "docker.io",
                "library/nginx",
                Some("latest"),
                None,
            ),
            (
                &format!("nginx@{SHA}"),
                "docker.io",
                "library/nginx",
                None,
                Some(SHA),
            ),
        ]);
    }

    #[test]
    fn docker_hub_names_normalise_to_one_form() {
        check_table(&[
            ("library/nginx", "docker.io", "library/nginx", None, None),
            ("docker.io/nginx", "docker.io", "library/nginx", None, None),
            (
                "docker.io/library/nginx",
                "docker.io",
                "library/nginx",
                None,
                None,
            ),
            (
                "index.docker.io/nginx",
                "docker.io",
                "library/nginx",
                None,
                None,
            ),
            (
                "index.docker.io/user/app",
                "docker.io",
                "user/app",
                None,
                None,
            ),
            ("Docker.IO/nginx", "docker.io", "library/nginx", None, None),
            ("user/app:v1", "docker.io", "user/app", Some("v1"), None),
            (
                "vllm/vllm-openai:latest",
                "docker.io",
                "vllm/vllm-openai",
                Some("latest"),
                None,
            ),
            ("team-a/sub/app", "docker.io", "team-a/sub/app", None, None),
        ]);
    }

    #[test]
    fn first_component_is_a_registry_only_with_dot_colon_or_localhost() {
        check_table(&[
            ("localhost/app", "localhost", "app", None, None),
            (
                "localhost:5000/app:1",
                "localhost:5000",
                "app",
                Some("1"),
                None,
            ),
            (
                &format!("myreg.example:5000/team/app@{SHA}"),
                "myreg.example:5000",
                "team/app",
                None,
                Some(SHA),
            ),
            (
                &format!("contoso.azurecr.io/models/llm:v1@{SHA}"),
                "contoso.azurecr.io",
                "models/llm",
                Some("v1"),
                Some(SHA),
            ),
            (
                "nvcr.io/nvidia/tritonserver:24.05-py3",
                "nvcr.io",
                "nvidia/tritonserver",
                Some("24.05-py3"),
                None,
            ),
            (
                "ghcr.io/huggingface/text-generation-inference:2.0",
                "ghcr.io",
                "huggingface/text-generation-inference",
                Some("2.0"),
                None,
            ),
            ("myreg:5000/app", "myreg:5000", "app", None, None),
            ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", None, None),
            ("[::1]:5000/app", "[::1]:5000", "app", None, None),
            ("[::1]/app:v2", "[::1]", "app", Some("v2"), None),
            (
                "[2001:DB8::1]:443/a/b",
                "[2001:db8::1]:443",
                "a/b",
                None,
                None,
            ),
            // Single-component registry repositories get no `library/`.
            ("ghcr.io/app", "ghcr.io", "app", None, None),
            // No dot, colon or localhost: a Docker Hub namespace.
            ("myreg/app", "docker.io", "myreg/app", None, None),
            ("localhostx/app", "docker.io", "localhostx/app", None, None),
        ]);
    }

    #[test]
    fn host_and_port_without_a_path_is_a_docker_hub_name_and_tag() {
        // With no '/', there is no registry: the ':' introduces a tag.
        check_table(&[
            (
                "localhost:5000",
                "docker.io",
                "library/localhost",
                Some("5000"),
                None,
            ),
            (
                "myreg.example:5000",
                "docker.io",
                "library/myreg.example",
                Some("5000"),
                None,
            ),
            ("localhost", "docker.io", "library/localhost", None, None),
        ]);
    }

    #[test]
    fn registry_host_is_lower_cased() {
        assert_eq!(
            parse("Contoso.AzureCR.io/app").registry,
            "contoso.azurecr.io"
        );
        assert_eq!(
            parse("MCR.microsoft.com:443/x").registry,
            "mcr.microsoft.com:443"
        );
    }

    #[test]
    fn tags_keep_their_case_and_tag_and_digest_can_both_be_present() {
        let r = parse(&format!("ghcr.io/a/b:V1.0_RC-2@{SHA}"));
        assert_eq!(r.tag.as_deref(), Some("V1.0_RC-2"));
        assert_eq!(r.digest.as_deref(), Some(SHA));
    }

    #[test]
    fn malformed_references_are_refused_with_a_reason() {
        let long_tag = format!("x:{}", "t".repeat(129));
        let sha_short = format!("x@sha256:{}", "a".repeat(63));
        let sha_long = format!("x@sha256:{}", "a".repeat(65));
        let sha_upper = format!("x@sha256:{}", "A".repeat(64));
        let sha512_short = format!("x@sha512:{}", "a".repeat(127));
        let two_digests = format!("x@{SHA}@{SHA}");
        let digest_then_tag = format!("x@{SHA}:v1");
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            (" ", "whitespace"),
            (" nginx", "whitespace"),
            ("nginx ", "whitespace"),
            ("ngi nx", "whitespace"),
            ("nginx\t", "whitespace"),
            ("nginx\n", "whitespace"),
            ("ng\u{0}inx", "control"),
            ("/nginx", "start with '/'"),
            ("nginx/", "end with '/'"),
            ("ghcr.io/", "end with '/'"),
            ("a//b", "'//'"),
            ("ghcr.io//b", "'//'"),
            ("nginx:", "nothing after ':'"),
            ("ghcr.io/a:", "nothing after ':'"),
            ("nginx@", "nothing after '@'"),
            ("nginx:1@", "nothing after '@'"),
            ("a@b@c", "more than one '@'"),
            (&two_digests, "more than one '@'"),
            (":tag", "no repository name"),
            (&format!("@{SHA}"), "no repository name"),
            ("Nginx", "lower-case"),
            ("Foo:bar", "lower-case"),
            ("Foo/bar", "lower-case"),
            ("contoso.azurecr.io/LLM:v1", "lower-case"),
            ("nginx:-tag", "must start with"),
            ("nginx:.tag", "must start with"),
            ("nginx:tag!", "may contain only"),
            ("nginx:1.25:extra", "repository component"),
            (&long_tag, "longer than 128"),
            ("nginx@sha256:abc", "64 lower-case hex"),
            (&sha_short, "64 lower-case hex"),
            (&sha_long, "64 lower-case hex"),
            (&sha_upper, "64 lower-case hex"),
            (&sha512_short, "128 lower-case hex"),
            (&digest_then_tag, "64 lower-case hex"),
            ("nginx@latest", "algorithm:hex"),
            ("-bad.example/x", "host name label"),
            ("bad-.example/x", "host name label"),
            ("a..b/x", "host name label"),
            (".example/x", "host name label"),
            ("example./x", "host name label"),
            ("my_reg.example/x", "host name label"),
            ("host:port/x", "decimal digits"),
            ("host:/x", "decimal digits"),
            ("host:5000:1/x", "decimal digits"),
            (":5000/x", "no host name"),
            ("[::1/x", "without closing"),
            ("[zz]:5/x", "not an IPv6 address"),
            ("[]:5/x", "not an IPv6 address"),
            ("[:]/x", "not an IPv6 address"),
            ("[fe80::1%eth0]/x", "not an IPv6 address"),
            ("[::ffff:1.2.3.4]/x", "not an IPv6 address"),
            ("[::1]x/x", "after ']'"),
            ("[::1]:/x", "decimal digits"),
            ("repo/-x", "repository component"),
            ("repo/x-", "repository component"),
            ("repo/x..y", "repository component"),
            ("repo/x___y", "repository component"),
            ("repo/x.-y", "repository component"),
            ("repo/x_.y", "repository component"),
            ("repo/_x", "repository component"),
            ("ghcr.io/a+b", "repository component"),
            ("[::1]:5000", "repository component"),
        ];
        for &(input, want) in cases {
            let reason = reason_of(input);
            assert!(
                reason.contains(want),
                "{input:?}: reason {reason:?} should mention {want:?}"
            );
        }
    }

    #[test]
    fn error_messages_quote_the_offending_input() {
        let e = ImageRef::parse("Foo:bar").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid image reference "Foo:bar": repository must be lower-case"#
        );
        // Control characters are escaped, so they cannot forge log lines.
        let e = ImageRef::parse("a\nb").unwrap_err().to_string();
        assert!(e.starts_with(r#"invalid image reference "a\nb": "#), "{e}");
        let e = RegistryPattern::parse("https://x.io")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(r#"invalid registry pattern "https://x.io": "#),
            "{e}"
        );
    }

    #[test]
    fn non_ascii_lookalikes_are_refused() {
        for input in [
            // KELVIN SIGN lower-cases to ASCII 'k' under Unicode rules.
            "\u{212A}.azurecr.io/x",
            // Cyrillic 'а' in place of Latin 'a'.
            "contoso.\u{0430}zurecr.io/x",
            "ngin\u{0445}",
            "nginx:v\u{0131}",
            // Fullwidth full stop.
            "contoso\u{FF0E}azurecr.io/x",
        ] {
            assert!(ImageRef::parse(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn name_length_limit_counts_the_normalised_name() {
        // "docker.io/library/" is 18 characters.
        let fits = "a".repeat(NAME_TOTAL_LENGTH_MAX - 18);
        assert_eq!(parse(&fits).repository.len(), NAME_TOTAL_LENGTH_MAX - 9 - 1);
        let over = "a".repeat(NAME_TOTAL_LENGTH_MAX - 17);
        assert!(reason_of(&over).contains("longer than 255"));
        // Explicit registry: "ghcr.io/" is 8 characters.
        let fits = format!("ghcr.io/{}", "b".repeat(NAME_TOTAL_LENGTH_MAX - 8));
        assert!(ImageRef::parse(&fits).is_ok());
        let over = format!("ghcr.io/{}", "b".repeat(NAME_TOTAL_LENGTH_MAX - 7));
        assert!(reason_of(&over).contains("longer than 255"));
        // Tag and digest do not count towards the limit.
        let tagged = format!(
            "{}:{}@{SHA}",
            "a".repeat(NAME_TOTAL_LENGTH_MAX - 18),
            "t".repeat(128)
        );
        assert!(ImageRef::parse(&tagged).is_ok());
    }

    #[test]
    fn bare_64_hex_is_an_image_id_not_a_repository() {
        let id = "a".repeat(64);
        assert!(reason_of(&id).contains("image ID"));
        // Anything else around it makes it an ordinary name again.
        assert_eq!(
            parse(&format!("{id}:v1")).repository,
            format!("library/{id}")
        );
        assert_eq!(
            parse(&"a".repeat(63)).repository,
            format!("library/{}", "a".repeat(63))
        );
    }

    #[test]
    fn repository_separators_follow_the_grammar() {
        for ok in [
            "a_b",
            "a__b",
            "a.b",
            "a-b",
            "a---b",
            "a/b.c_d__e-f",
            "0/9",
            "a-b_c.d",
        ] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "a___b", "a.-b", "a_.b", "a..b", "a-", "-a", "a_", ".a", "a/.b", "a/b/",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tag_grammar_allows_word_characters_dots_and_dashes() {
        for ok in [
            "_x",
            "X",
            "v1.2-rc_3",
            "UPPER",
            &"t".repeat(128),
            "1",
            "a..b--c",
        ] {
            assert_eq!(
                parse(&format!("app:{ok}")).tag.as_deref(),
                Some(ok),
                "{ok:?}"
            );
        }
        for bad in [".x", "-x", "a/b", "a+b", "a@", &"t".repeat(129)] {
            assert!(ImageRef::parse(&format!("app:{bad}")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn digests_follow_the_registered_and_generic_grammar() {
        let sha512 = format!("sha512:{}", "0a".repeat(64));
        let generic = [
            format!("blake3:{}", "f".repeat(64)),
            format!("multihash+base58:{}", "Qm".repeat(16)),
            format!("sha256.v2:{}", "A=_-".repeat(8)),
        ];
        for d in std::iter::once(&sha512).chain(&generic) {
            assert_eq!(
                parse(&format!("app@{d}")).digest.as_deref(),
                Some(d.as_str())
            );
        }
        for bad in [
            format!("SHA256:{}", "a".repeat(64)),
            format!("sha256+:{}", "a".repeat(64)),
            format!("+sha:{}", "a".repeat(64)),
            format!(":{}", "a".repeat(64)),
            format!("blake3:{}", "f".repeat(31)),
            format!("blake3:{}", "f/".repeat(32)),
            format!("sha512:{}", "A".repeat(128)),
            "sha256".to_owned(),
        ] {
            assert!(ImageRef::parse(&format!("app@{bad}")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn latest_and_untagged_are_told_apart_from_pinned() {
        for (input, floating) in [
            ("nginx", true),
            ("nginx:latest", true),
            ("ghcr.io/a/b:latest", true),
            (&format!("nginx@{SHA}"), false),
            ("nginx:1.25", false),
            ("nginx:Latest", false),
            // The digest pins it, whatever the tag says.
            (&format!("nginx:latest@{SHA}"), false),
            (&format!("nginx:1.25@{SHA}"), false),
        ] {
            assert_eq!(parse(input).is_latest_or_untagged(), floating, "{input:?}");
        }
    }

    #[test]
    fn display_is_fully_qualified_and_parses_back_unchanged() {
        for (input, shown) in [
            ("nginx", "docker.io/library/nginx".to_owned()),
            ("nginx:1", "docker.io/library/nginx:1".to_owned()),
            ("index.docker.io/u/a", "docker.io/u/a".to_owned()),
            ("[::1]:5000/app", "[::1]:5000/app".to_owned()),
            (
                &format!("Contoso.azurecr.io/a/b:v@{SHA}"),
                format!("contoso.azurecr.io/a/b:v@{SHA}"),
            ),
        ] {
            let r = parse(input);
            assert_eq!(r.to_string(), shown, "{input:?}");
            assert_eq!(parse(&shown), r, "{input:?}");
        }
    }

    #[test]
    fn from_str_is_parse() {
        assert_eq!(
            "user/app:v1".parse::<ImageRef>(),
            ImageRef::parse("user/app:v1")
        );
        assert_eq!("Foo".parse::<ImageRef>(), ImageRef::parse("Foo"));
        assert_eq!(
            "*.a.io".parse::<RegistryPattern>(),
            RegistryPattern::parse("*.a.io")
        );
    }

    #[test]
    fn patterns_parse_to_any_exact_or_subdomain() {
        for (input, want) in [
            ("*", RegistryPattern::Any),
            (
                "*.azurecr.io",
                RegistryPattern::Subdomain("azurecr.io".into()),
            ),
            (
                "*.AzureCR.io",
                RegistryPattern::Subdomain("azurecr.io".into()),
            ),
            (
                "*.corp.example:5000",
                RegistryPattern::Subdomain("corp.example:5000".into()),
            ),
            ("*.io", RegistryPattern::Subdomain("io".into())),
            (
                "mcr.microsoft.com",
                RegistryPattern::Exact("mcr.microsoft.com".into()),
            ),
            (
                "MCR.Microsoft.com",
                RegistryPattern::Exact("mcr.microsoft.com".into()),
            ),
            (
                "myreg.example:5000",
                RegistryPattern::Exact("myreg.example:5000".into()),
            ),
            ("docker.io", RegistryPattern::Exact("docker.io".into())),
            (
                "index.docker.io",
                RegistryPattern::Exact("docker.io".into()),
            ),
            ("localhost", RegistryPattern::Exact("localhost".into())),
            ("[::1]:5000", RegistryPattern::Exact("[::1]:5000".into())),
            (
                "*.index.docker.io",
                RegistryPattern::Subdomain("index.docker.io".into()),
            ),
        ] {
            assert_eq!(pattern(input), want, "{input:?}");
        }
    }

    #[test]
    fn malformed_patterns_are_refused_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            (" ", "whitespace"),
            (" x.io", "whitespace"),
            ("x.io ", "whitespace"),
            ("*. x.io", "whitespace"),
            ("*.", "needs a domain"),
            ("**.x", "'*' is allowed only"),
            ("**", "'*' is allowed only"),
            ("*foo.com", "'*' is allowed only"),
            ("foo.*.com", "'*' is allowed only"),
            ("foo.*", "'*' is allowed only"),
            ("*.*", "'*' is allowed only"),
            ("*.x.*", "'*' is allowed only"),
            ("https://x.io", "scheme"),
            ("http://x.io", "scheme"),
            ("x.io/path", "path"),
            ("x.io/", "path"),
            ("/", "path"),
            ("x.io:port", "decimal digits"),
            ("x.io:", "decimal digits"),
            ("-x.io", "host name label"),
            ("x..io", "host name label"),
            ("x.io.", "host name label"),
            (".x.io", "host name label"),
            ("*..x.io", "host name label"),
            ("*.[::1]", "not an IP address"),
            ("x_y.io", "host name label"),
            ("x.io@sha256", "host name label"),
        ];
        for &(input, want) in cases {
            match RegistryPattern::parse(input) {
                Err(ImageError::InvalidPattern {
                    input: quoted,
                    reason,
                }) => {
                    assert_eq!(quoted, input);
                    let reason = reason.to_string();
                    assert!(
                        reason.contains(want),
                        "{input:?}: reason {reason:?} should mention {want:?}"
                    );
                }
                other => panic!("{input:?} should be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn patterns_display_as_written_and_parse_back() {
        for (input, shown) in [
            ("*", "*"),
            ("*.azurecr.io", "*.azurecr.io"),
            ("*.Corp.Example:5000", "*.corp.example:5000"),
            ("mcr.microsoft.com", "mcr.microsoft.com"),
            ("myreg.example:5000", "myreg.example:5000"),
            ("index.docker.io", "docker.io"),
            ("[::1]:5000", "[::1]:5000"),
        ] {
            let p = pattern(input);
            assert_eq!(p.to_string(), shown, "{input:?}");
            assert_eq!(pattern(shown), p, "{input:?}");
        }
    }

    #[test]
    fn subdomain_pattern_matches_only_hosts_strictly_under_the_domain() {
        let azure = pattern("*.azurecr.io");
        for host in [
            "contoso.azurecr.io",
            "a.b.azurecr.io",
            "CONTOSO.AZURECR.IO",
            "1.azurecr.io",
        ] {
            assert!(azure.matches(host), "{host:?}");
        }
        for host in [
            "azurecr.io",
            "contoso.azurecr.io.evil.example",
            "evilazurecr.io",
            "azurecr.io-fake",
            "contoso.azurecr.io:443",
            "contoso.azurecr.io:5000",
            "azurecr.io.evil.example",
            "contoso-azurecr.io",
            "contosoazurecr.io",
        ] {
            assert!(!azure.matches(host), "{host:?}");
        }
        let with_port = pattern("*.corp.example:5000");
        assert!(with_port.matches("a.corp.example:5000"));
        assert!(!with_port.matches("a.corp.example"));
        assert!(!with_port.matches("a.corp.example:50000"));
        assert!(!with_port.matches("corp.example:5000"));
    }

    #[test]
    fn exact_pattern_matches_only_that_host_and_port() {
        let mcr = pattern("mcr.microsoft.com");
        assert!(mcr.matches("mcr.microsoft.com"));
        assert!(mcr.matches("MCR.Microsoft.COM"));
        for host in [
            "mcr.microsoft.com.evil.example",
            "mcr.microsoft.com:5000",
            "mcr.microsoft.com:443",
            "x.mcr.microsoft.com",
            "evilmcr.microsoft.com",
            "microsoft.com",
        ] {
            assert!(!mcr.matches(host), "{host:?}");
        }
        let ported = pattern("myreg.example:5000");
        assert!(ported.matches("myreg.example:5000"));
        assert!(!ported.matches("myreg.example"));
        assert!(!ported.matches("myreg.example:50000"));
        assert!(!ported.matches("myreg.example:500"));
    }

    #[test]
    fn matches_fails_closed_on_strings_that_are_not_registry_hosts() {
        // Callers should pass `ImageRef::registry`; raw strings that would
        // pass a naive `ends_with` must not.
        for pat in ["*", "*.azurecr.io", "mcr.microsoft.com"] {
            let p = pattern(pat);
            for host in [
                "",
                "evil.example/.azurecr.io",
                "evil.example/mcr.microsoft.com",
                " mcr.microsoft.com",
                "mcr.microsoft.com ",
                "mcr.microsoft.com.",
                "x..azurecr.io",
                ".azurecr.io",
                "\u{212A}.azurecr.io",
            ] {
                assert!(!p.matches(host), "{pat:?} must not match {host:?}");
            }
        }
    }

    #[test]
    fn docker_io_pattern_matches_names_without_a_registry() {
        for image in [
            "nginx",
            "nginx:1.25",
            "library/nginx",
            "user/app",
            "docker.io/user/app",
            "index.docker.io/user/app",
            "localhost:5000",
        ] {
            assert!(allowed(&["docker.io"], image), "{image:?}");
            assert!(allowed(&["index.docker.io"], image), "{image:?}");
        }
        for image in [
            "ghcr.io/user/app",
            "docker.io.evil.example/nginx",
            "docker.io:5000/nginx",
            "registry-1.docker.io/library/nginx",
            "localhost/app",
        ] {
            assert!(!allowed(&["docker.io"], image), "{image:?}");
        }
    }

    #[test]
    fn lookalike_registries_never_pass_the_allow_list() {
        let list = ["*.azurecr.io", "mcr.microsoft.com"];
        for image in [
            "contoso.azurecr.io/x:1",
            "a.b.azurecr.io/x:1",
            "mcr.microsoft.com/x:1",
            "MCR.microsoft.com/x",
        ] {
            assert!(allowed(&list, image), "{image:?} should pass");
        }
        for image in [
            "contosoml.azurecr.io.evil.example/x",
            "evilazurecr.io/x",
            "mcr.microsoft.com.evil.example/x",
            "azurecr.io/x",
            "azurecr.io-fake/x",
            "contoso.azurecr.io:443/x",
            "mcr.microsoft.com:5000/x",
            "x.mcr.microsoft.com/x",
            // Docker Hub repositories that merely look like the hosts.
            "azurecr/x",
            "mcr/microsoft.com",
            "contoso.azurecr.io",
            "mcr.microsoft.com:latest",
        ] {
            assert!(!allowed(&list, image), "{image:?} must not pass");
        }
    }

    #[test]
    fn azurecr_io_fake_is_its_own_registry_and_never_matches() {
        // It contains a dot, so it is a registry host, not a Hub namespace.
        let r = parse("azurecr.io-fake/x");
        assert_eq!(r.registry, "azurecr.io-fake");
        assert_eq!(r.repository, "x");
        for p in ["*.azurecr.io", "azurecr.io", "*.io", "docker.io"] {
            assert!(!pattern(p).matches(&r.registry), "{p:?}");
        }
        assert!(pattern("*.io-fake").matches(&r.registry));
    }

    #[test]
    fn star_matches_every_registry() {
        for image in [
            "nginx",
            "anything.example:1/x",
            "[::1]:5000/app",
            "localhost/a",
        ] {
            assert!(allowed(&["*"], image), "{image:?}");
        }
    }

    #[test]
    fn subdomain_is_a_dot_suffix_and_exact_is_equality_for_generated_hosts() {
        // Deterministic generator: every host of one to four labels drawn
        // from lookalike-prone pieces, with and without ports, in two cases.
        let labels = [
            "a",
            "azurecr",
            "io",
            "evil",
            "azurecr-io",
            "x1",
            "mcr",
            "com",
        ];
        let ports = ["", ":443", ":5000"];
        let mut hosts = Vec::new();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2_000 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let depth = 1 + (seed >> 60) as usize % 4;
            let mut host: Vec<&str> = Vec::new();
            for k in 0..depth {
                host.push(labels[(seed >> (8 * k + 3)) as usize % labels.len()]);
            }
            let port = ports[(seed >> 40) as usize % ports.len()];
            hosts.push(format!("{}{port}", host.join(".")));
        }
        let suffixes = [
            "io",
            "azurecr.io",
            "a.azurecr.io",
            "azurecr.io:443",
            "evil.io",
            "com",
            "mcr.com:5000",
        ];
        for suffix in suffixes {
            let sub = pattern(&format!("*.{suffix}"));
            let exact = pattern(suffix);
            for host in &hosts {
                let upper = host.to_ascii_uppercase();
                let dotted = format!(".{suffix}");
                assert_eq!(
                    sub.matches(host),
                    host.ends_with(&dotted),
                    "*.{suffix} vs {host}"
                );
                assert_eq!(
                    sub.matches(&upper),
                    host.ends_with(&dotted),
                    "*.{suffix} vs {upper}"
                );
                assert_eq!(exact.matches(host), host == suffix, "{suffix} vs {host}");
                assert_eq!(exact.matches(&upper), host == suffix, "{suffix} vs {upper}");
            }
        }
        // The generator really did produce both outcomes.
        let sub = pattern("*.azurecr.io");
        assert!(hosts.iter().any(|h| sub.matches(h)));
        assert!(
            hosts
                .iter()
                .any(|h| !sub.matches(h) && h.contains("azurecr.io"))
        );
        assert!(hosts.iter().any(|h| pattern("io").matches(h)));
    }

    #[test]
    fn arbitrary_input_never_panics_and_accepted_references_are_stable() {
        // Short strings over an alphabet rich in the grammar's delimiters.
        let alphabet = [
            "a",
            "b",
            "A",
            "0",
            "9",
            ".",
            ":",
            "/",
            "@",
            "-",
            "_",
            "__",
            "[",
            "]",
            " ",
            "::1",
            "io",
            "localhost",
            "docker.io",
            "index.docker.io",
            SHA,
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut accepted = 0;
        for _ in 0..50_000 {
            let mut input = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 9) as usize;
            for k in 0..len {
                input.push_str(alphabet[(seed >> (5 * k + 4)) as usize % alphabet.len()]);
            }
            let Ok(r) = ImageRef::parse(&input) else {
                continue;
            };
            accepted += 1;
            // The fully qualified form names the same image.
            assert_eq!(
                ImageRef::parse(&r.to_string()).as_ref(),
                Ok(&r),
                "{input:?}"
            );
            // The registry is always a host an allow-list entry can name.
            assert!(RegistryPattern::Any.matches(&r.registry), "{input:?}");
            assert!(pattern(&r.registry).matches(&r.registry), "{input:?}");
        }
        assert!(
            accepted > 100,
            "only {accepted} generated references parsed"
        );
    }
}
