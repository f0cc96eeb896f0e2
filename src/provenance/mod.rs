//! Image provenance beyond the reference: what the registry says a tag
//! points to, and whether a trusted key signed that digest. The rules stay
//! pure: the webhook (and `check --resolve-digests`) first gathers the
//! registry's answers into [`Facts`] through the bounded cache in
//! [`registry`], then the engine judges with them. Nothing here runs unless
//! a policy asks for it.

pub mod cosign;
pub mod credentials;
pub mod keys;
pub mod registry;

use std::collections::HashMap;
use std::sync::Arc;

use crate::image::ImageRef;
use keys::KeySet;

pub use credentials::{Auth, DockerConfig};

/// Why the registry could not answer. Each is shown to the user and
/// decided by `onRegistryError`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("{registry} did not answer within {millis} ms")]
    Timeout { registry: String, millis: u128 },
    #[error("{registry} refused the credentials (401 Unauthorized)")]
    Unauthorized { registry: String },
    #[error("{reference} is not in the registry (404)")]
    NotFound { reference: String },
    #[error("{registry} answered HTTP {code}")]
    Status { registry: String, code: u16 },
    #[error("{what} is {size} bytes, over the {limit}-byte bound ({reference})")]
    TooLarge {
        what: &'static str,
        reference: String,
        size: usize,
        limit: usize,
    },
    #[error("cannot reach {registry}: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error("{registry}: {detail}")]
    Protocol { registry: String, detail: String },
}

impl RegistryError {
    pub(crate) fn not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }
}

/// The verdict on one digest for one key set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signed {
    /// A signature by `key` covers the digest.
    Verified { key: String, layout: cosign::Layout },
    /// Neither layout holds a signature.
    Unsigned,
    /// Signatures exist; none counts. The most telling reason, and how
    /// many were tried.
    Rejected {
        reason: cosign::Rejected,
        tried: usize,
    },
}

/// One thing to ask a registry, built from a governing policy's settings.
#[derive(Clone, Debug)]
pub struct Query {
    pub image: ImageRef,
    /// Resolve the tag to a digest (also needed to verify a tag's image).
    pub resolve: bool,
    pub keys: Option<Arc<KeySet>>,
    pub auth: Auth,
}

/// Whether the registry was asked at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers were gathered (each may still be a failure).
    Online,
    /// Nobody asked the registry, for this reason (shown to the user).
    Offline(&'static str),
}

/// What the registry answered for one request, keyed as the rules look
/// them up.
#[derive(Clone, Debug)]
pub struct Facts {
    pub mode: Mode,
    /// `registry/repository:tag` → digest.
    digests: HashMap<String, Result<String, RegistryError>>,
    /// (`registry/repository@digest`, key-set id) → verdict.
    signatures: HashMap<(String, String), Result<Signed, RegistryError>>,
}

/// Why `check` has no registry answers.
pub const CHECK_OFFLINE: &str = "check runs offline; pass --resolve-digests to ask the registry";
/// Why the background audit has none.
pub const AUDIT_OFFLINE: &str = "the background audit does not ask registries";

impl Facts {
    pub fn offline(why: &'static str) -> Facts {
        Facts {
            mode: Mode::Offline(why),
            digests: HashMap::new(),
            signatures: HashMap::new(),
        }
    }

    pub fn online() -> Facts {
        Facts {
            mode: Mode::Online,
            digests: HashMap::new(),
            signatures: HashMap::new(),
        }
    }

    pub fn digest(&self, image: &ImageRef) -> Option<&Result<String, RegistryError>> {
        self.digests.get(&tag_key(image))
    }

    pub fn signature(
        &self,
        image: &ImageRef,
        digest: &str,
        keys: &KeySet,
    ) -> Option<&Result<Signed, RegistryError>> {
        self.signatures
            .get(&(digest_key(image, digest), keys.id.clone()))
    }

    pub fn insert_digest(&mut self, image: &ImageRef, answer: Result<String, RegistryError>) {
        self.digests.insert(tag_key(image), answer);
    }

    pub fn insert_signature(
        &mut self,
        image: &ImageRef,
        digest: &str,
        keys: &KeySet,
        answer: Result<Signed, RegistryError>,
    ) {
        self.signatures
            .insert((digest_key(image, digest), keys.id.clone()), answer);
    }
}

/// `registry/repository:tag` (`:latest` when untagged, as the runtime pulls).
pub fn tag_key(image: &ImageRef) -> String {
    format!(
        "{}/{}:{}",
        image.registry,
        image.repository,
        image.tag.as_deref().unwrap_or("latest")
    )
}

/// `registry/repository@digest`.
pub fn digest_key(image: &ImageRef, digest: &str) -> String {
    format!("{}/{}@{}", image.registry, image.repository, digest)
}
