//! The registry client behind [`super::Facts`]: oci-client for the OCI
//! distribution API (manifest HEAD for digests, manifests, blobs, the
//! referrers API and its tag fallback), behind a bounded cache (moka:
//! entries weighed in bytes, a TTL, shorter for failures) with every call
//! bounded in time. Concurrent lookups of one key share one registry call,
//! and a lookup runs in its own task so that a request that gave up still
//! leaves its answer in the cache for the retry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use moka::Expiry;
use moka::future::Cache;
use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest,
};
use oci_client::secrets::RegistryAuth;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use super::cosign::{self, Layout, Rejected};
use super::credentials::{Auth, DockerConfig};
use super::keys::KeySet;
use super::{Facts, Query, RegistryError, Signed, digest_key, tag_key};
use crate::image::ImageRef;

/// Limits and lifetimes, from `serve`'s flags.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// The longest one lookup (all its registry calls) may take.
    pub timeout: Duration,
    /// Manifests (signature manifests, referrer indexes) larger than this
    /// are refused. Distribution's own limit is 4 MiB.
    pub max_manifest_bytes: usize,
    /// Signature payloads and bundles larger than this are refused.
    pub max_blob_bytes: usize,
    /// How long a tag's digest is trusted; a tag moved in the registry is
    /// seen after at most this long.
    pub digest_ttl: Duration,
    /// How long a verification verdict is kept (a digest never changes; a
    /// signature added or removed is seen after at most this long).
    pub verdict_ttl: Duration,
    /// How long a failure is kept, so a registry that is down is not asked
    /// by every request.
    pub error_ttl: Duration,
    /// The cache's size bound in bytes (keys and answers), both caches.
    pub cache_bytes: u64,
    /// Registries reached over plain HTTP (loopback test registries).
    pub plain_http: Vec<String>,
    /// CA certificates trusted for registry TLS beside the system's roots
    /// (a registry with a private CA): `--registry-ca`.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Credentials for lookups whose policy names no pull secret
    /// (standalone `serve`, `check`): `--registry-credentials`.
    pub credentials: DockerConfig,
    /// At most this many signature candidates are read per digest.
    pub max_signatures: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            timeout: Duration::from_secs(4),
            max_manifest_bytes: 4 << 20,
            max_blob_bytes: 1 << 20,
            digest_ttl: Duration::from_secs(300),
            verdict_ttl: Duration::from_secs(3600),
            error_ttl: Duration::from_secs(10),
            cache_bytes: 8 << 20,
            plain_http: Vec::new(),
            extra_roots: Vec::new(),
            credentials: DockerConfig::default(),
            max_signatures: 16,
        }
    }
}

/// A PEM bundle of CA certificates (`--registry-ca`): at least one.
pub fn read_ca_bundle(path: &std::path::Path) -> crate::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|source| crate::Error::Io {
        path: path.into(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            crate::Error::input(
                path.display().to_string(),
                format!("not a PEM bundle of CA certificates: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(crate::Error::input(
            path.display().to_string(),
            "no CERTIFICATE block found (a PEM bundle of CA certificates is expected)",
        ));
    }
    Ok(certs)
}

/// Credentials as oci-client takes them.
fn oci_auth(auth: &Auth) -> RegistryAuth {
    match auth {
        Auth::Anonymous => RegistryAuth::Anonymous,
        Auth::Basic { username, password } => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
    }
}

/// An oci-client error as the user reads it.
fn registry_error(e: OciDistributionError, registry: &str, reference: &str) -> RegistryError {
    {
        let registry = registry.to_owned();
        match e {
            OciDistributionError::ImageManifestNotFoundError(_) => RegistryError::NotFound {
                reference: reference.to_owned(),
            },
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => {
                RegistryError::Unauthorized { registry }
            }
            OciDistributionError::ServerError { code: 404, .. } => RegistryError::NotFound {
                reference: reference.to_owned(),
            },
            OciDistributionError::ServerError { code: 401, .. } => {
                RegistryError::Unauthorized { registry }
            }
            OciDistributionError::ServerError { code, .. } => {
                RegistryError::Status { registry, code }
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                }) {
                    RegistryError::NotFound {
                        reference: reference.to_owned(),
                    }
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    RegistryError::Unauthorized { registry }
                } else {
                    RegistryError::Protocol {
                        registry,
                        detail: envelope.to_string(),
                    }
                }
            }
            OciDistributionError::RequestError(e) => RegistryError::Unreachable {
                registry,
                detail: causes(&e.without_url()),
            },
            other => RegistryError::Protocol {
                registry,
                detail: other.to_string(),
            },
        }
    }
}

/// Why a request failed, on one line: reqwest's own words ("error sending
/// request", and the URL, which the message names already) carry nothing;
/// the useful part ("Connection refused", "invalid peer certificate:
/// UnknownIssuer") is in the source chain.
fn causes(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// The answers' lifetimes: failures are kept briefly.
struct Lifetimes {
    ok: Duration,
    error: Duration,
}

impl<K, T> Expiry<K, Result<T, RegistryError>> for Lifetimes {
    fn expire_after_create(
        &self,
        _key: &K,
        value: &Result<T, RegistryError>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.is_ok() { self.ok } else { self.error })
    }
}

type Answer<T> = Result<T, RegistryError>;

struct Inner {
    client: oci_client::Client,
    config: RegistryConfig,
    digests: Cache<String, Answer<String>>,
    verdicts: Cache<(String, String), Answer<Signed>>,
}

/// Shared by the webhook's requests; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Registry {
    pub fn new(config: RegistryConfig) -> crate::Result<Registry> {
        // reqwest's rustls takes the process-wide provider: ring, as the
        // webhook's own TLS. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = if config.plain_http.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(config.plain_http.clone())
        };
        // Not `Client::new`: on a bad configuration it falls back to the
        // defaults, which would drop the CA and the timeouts in silence.
        let client = oci_client::Client::try_from(ClientConfig {
            protocol,
            connect_timeout: Some(config.timeout),
            read_timeout: Some(config.timeout),
            // A manifest list is resolved by its own digest, as cosign signs it.
            platform_resolver: None,
            user_agent: concat!("waf-admission/", env!("CARGO_PKG_VERSION")),
            extra_root_certificates: config
                .extra_roots
                .iter()
                .map(|c| oci_client::client::Certificate {
                    encoding: oci_client::client::CertificateEncoding::Der,
                    data: c.to_vec(),
                })
                .collect(),
            ..ClientConfig::default()
        })
        .map_err(|e| crate::Error::input("the registry client", e.to_string()))?;
        let half = config.cache_bytes / 2;
        let weigh = |k: usize, v: usize| u32::try_from(k + v + 64).unwrap_or(u32::MAX);
        let digests = Cache::builder()
            .max_capacity(half)
            .weigher(move |k: &String, v: &Answer<String>| {
                weigh(k.len(), v.as_ref().map_or(128, String::len))
            })
            .expire_after(Lifetimes {
                ok: config.digest_ttl,
                error: config.error_ttl,
            })
            .build();
        let verdicts = Cache::builder()
            .max_capacity(half)
            .weigher(move |k: &(String, String), _v: &Answer<Signed>| {
                weigh(k.0.len() + k.1.len(), 256)
            })
            .expire_after(Lifetimes {
                ok: config.verdict_ttl,
                error: config.error_ttl,
            })
            .build();
        Ok(Registry {
            inner: Arc::new(Inner {
                client,
                config,
                digests,
                verdicts,
            }),
        })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// Entries in both caches (for metrics and tests).
    pub fn cached_entries(&self) -> u64 {
        self.inner.digests.entry_count() + self.inner.verdicts.entry_count()
    }

    /// Puts a digest in the cache as if the registry had answered it
    /// (warming benchmarks; a replica never needs it).
    pub async fn remember_digest(&self, image: &ImageRef, digest: &str) {
        self.inner
            .digests
            .insert(tag_key(image), Ok(digest.to_owned()))
            .await;
    }

    /// Puts a verdict in the cache (see [`Registry::remember_digest`]).
    pub async fn remember_verdict(
        &self,
        image: &ImageRef,
        digest: &str,
        keys: &KeySet,
        verdict: Signed,
    ) {
        self.inner
            .verdicts
            .insert((digest_key(image, digest), keys.id.clone()), Ok(verdict))
            .await;
    }

    /// Answers every query, all before `deadline`: digests first (a tag's
    /// signature is looked up by its digest), then signatures. A lookup
    /// still running at the deadline is answered as a timeout here and
    /// lands in the cache when it ends.
    pub async fn gather(&self, queries: &[Query], deadline: Instant) -> Facts {
        let mut facts = Facts::online();
        let mut tags: Vec<&Query> = queries
            .iter()
            .filter(|q| q.image.digest.is_none() && (q.resolve || q.keys.is_some()))
            .collect();
        tags.sort_by_key(|q| tag_key(&q.image));
        tags.dedup_by_key(|q| tag_key(&q.image));
        let answers = futures::future::join_all(
            tags.iter()
                .map(|q| self.digest(&q.image, &q.auth, deadline)),
        )
        .await;
        for (q, a) in tags.iter().zip(answers) {
            facts.insert_digest(&q.image, a);
        }
        let mut checks: Vec<(&Query, String, Arc<KeySet>)> = Vec::new();
        for q in queries {
            let Some(keys) = &q.keys else { continue };
            let digest = match &q.image.digest {
                Some(d) => d.clone(),
                None => match facts.digest(&q.image) {
                    Some(Ok(d)) => d.clone(),
                    _ => continue,
                },
            };
            if !checks.iter().any(|(c, d, k)| {
                d == &digest
                    && k.id == keys.id
                    && c.image.repository == q.image.repository
                    && c.image.registry == q.image.registry
            }) {
                checks.push((q, digest, keys.clone()));
            }
        }
        let verdicts = futures::future::join_all(
            checks
                .iter()
                .map(|(q, d, k)| self.verify(&q.image, d, k, &q.auth, deadline)),
        )
        .await;
        for ((q, d, k), v) in checks.iter().zip(verdicts) {
            facts.insert_signature(&q.image, d, k, v);
        }
        facts
    }

    /// The digest `image`'s tag points to, from the cache or the registry.
    pub async fn digest(&self, image: &ImageRef, auth: &Auth, deadline: Instant) -> Answer<String> {
        let key = tag_key(image);
        if let Some(hit) = self.inner.digests.get(&key).await {
            return hit;
        }
        let inner = self.inner.clone();
        let registry = image.registry.clone();
        let image = image.clone();
        let auth = self.auth(&image, auth);
        let task = tokio::spawn(async move {
            let lookup = inner.fetch_digest(&image, &auth);
            inner
                .digests
                .get_with(key, inner.bounded(&image.registry, lookup))
                .await
        });
        self.wait(task, &registry, deadline).await
    }

    /// Whether a trusted key signed `digest`, from the cache or the registry.
    pub async fn verify(
        &self,
        image: &ImageRef,
        digest: &str,
        keys: &Arc<KeySet>,
        auth: &Auth,
        deadline: Instant,
    ) -> Answer<Signed> {
        let key = (digest_key(image, digest), keys.id.clone());
        if let Some(hit) = self.inner.verdicts.get(&key).await {
            return hit;
        }
        let inner = self.inner.clone();
        let registry = image.registry.clone();
        let image = image.clone();
        let digest = digest.to_owned();
        let keys = keys.clone();
        let auth = self.auth(&image, auth);
        let task = tokio::spawn(async move {
            let lookup = inner.fetch_verdict(&image, &digest, &keys, &auth);
            inner
                .verdicts
                .get_with(key, inner.bounded(&image.registry, lookup))
                .await
        });
        self.wait(task, &registry, deadline).await
    }

    /// The policy's pull secret, else the credentials file's entry for
    /// the image's registry, else anonymous.
    fn auth(&self, image: &ImageRef, auth: &Auth) -> Auth {
        match auth {
            Auth::Anonymous => self
                .inner
                .config
                .credentials
                .auth_for(&image.registry)
                .unwrap_or_default(),
            given => given.clone(),
        }
    }

    async fn wait<T>(
        &self,
        task: tokio::task::JoinHandle<Answer<T>>,
        registry: &str,
        deadline: Instant,
    ) -> Answer<T> {
        let started = Instant::now();
        match tokio::time::timeout_at(deadline.into(), task).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => Err(RegistryError::Protocol {
                registry: registry.to_owned(),
                detail: format!("the lookup task failed: {e}"),
            }),
            Err(_) => Err(RegistryError::Timeout {
                registry: registry.to_owned(),
                millis: started.elapsed().as_millis(),
            }),
        }
    }
}

impl Inner {
    /// One lookup, cut off at the configured timeout.
    async fn bounded<T>(
        &self,
        registry: &str,
        lookup: impl Future<Output = Answer<T>>,
    ) -> Answer<T> {
        let answer = match tokio::time::timeout(self.config.timeout, lookup).await {
            Ok(answer) => answer,
            Err(_) => Err(RegistryError::Timeout {
                registry: registry.to_owned(),
                millis: self.config.timeout.as_millis(),
            }),
        };
        if let Err(e) = &answer {
            // Once per lookup, not per request: the failure is cached for
            // the error TTL.
            tracing::warn!(registry, error = %e, "registry lookup failed");
        }
        answer
    }

    async fn fetch_digest(&self, image: &ImageRef, auth: &Auth) -> Answer<String> {
        let tag = image.tag.clone().unwrap_or_else(|| "latest".into());
        let reference = Reference::with_tag(image.registry.clone(), image.repository.clone(), tag);
        let shown = tag_key(image);
        let started = Instant::now();
        let digest = self
            .client
            .fetch_manifest_digest(&reference, &oci_auth(auth))
            .await
            .map_err(|e| registry_error(e, &image.registry, &shown))?;
        if !valid_digest(&digest) {
            return Err(RegistryError::Protocol {
                registry: image.registry.clone(),
                detail: format!("answered the digest {digest:?} for {shown}"),
            });
        }
        tracing::debug!(image = %shown, %digest, millis = started.elapsed().as_millis() as u64, "resolved tag");
        Ok(digest)
    }

    async fn fetch_verdict(
        &self,
        image: &ImageRef,
        digest: &str,
        keys: &KeySet,
        auth: &Auth,
    ) -> Answer<Signed> {
        let auth = oci_auth(auth);
        let mut tried = 0usize;
        let mut best: Option<Rejected> = None;
        let note = |r: Rejected, best: &mut Option<Rejected>| {
            if best.as_ref().is_none_or(|b| r.rank() > b.rank()) {
                *best = Some(r);
            }
        };
        // Legacy: the `sha256-<hex>.sig` tag in the same repository.
        let sig_tag = format!("{}.sig", digest.replace(':', "-"));
        let sig_ref =
            Reference::with_tag(image.registry.clone(), image.repository.clone(), sig_tag);
        match self.manifest(image, &sig_ref, &auth, None).await {
            Ok(m) => {
                for layer in m
                    .layers
                    .iter()
                    .filter(|l| l.media_type == cosign::SIMPLE_SIGNING)
                    .take(self.config.max_signatures)
                {
                    tried += 1;
                    let payload = self.blob(image, &sig_ref, layer, &auth).await?;
                    let Some(sig) = layer
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(cosign::SIGNATURE_ANNOTATION))
                    else {
                        note(
                            Rejected::Malformed(format!(
                                "a payload layer without the {} annotation",
                                cosign::SIGNATURE_ANNOTATION
                            )),
                            &mut best,
                        );
                        continue;
                    };
                    match cosign::check_simple_signing(&payload, sig, digest, keys) {
                        Ok(key) => {
                            return Ok(Signed::Verified {
                                key,
                                layout: Layout::Legacy,
                            });
                        }
                        Err(r) => note(r, &mut best),
                    }
                }
            }
            Err(e) if e.not_found() => {}
            Err(e) => return Err(e),
        }
        // Bundles: referrers of the digest (the referrers API, or its
        // `sha256-<hex>` index tag where the registry has none).
        let subject = Reference::with_digest(
            image.registry.clone(),
            image.repository.clone(),
            digest.to_owned(),
        );
        let index = match self.client.pull_referrers(&subject, None).await {
            Ok(i) => i,
            Err(e) => {
                let e = registry_error(e, &image.registry, &digest_key(image, digest));
                if e.not_found() {
                    oci_client::manifest::OciImageIndex {
                        schema_version: 2,
                        media_type: None,
                        manifests: vec![],
                        annotations: None,
                        artifact_type: None,
                    }
                } else {
                    return Err(e);
                }
            }
        };
        // Filter by the layer's media type, not artifactType: some
        // registries record the empty type in the index.
        for entry in index
            .manifests
            .iter()
            .filter(|m| {
                m.artifact_type.as_deref().is_none_or(|t| {
                    t == cosign::BUNDLE_V03 || t == "application/vnd.oci.empty.v1+json"
                })
            })
            .take(self.config.max_signatures)
        {
            let at = Reference::with_digest(
                image.registry.clone(),
                image.repository.clone(),
                entry.digest.clone(),
            );
            let size = usize::try_from(entry.size).unwrap_or(usize::MAX);
            let m = self.manifest(image, &at, &auth, Some(size)).await?;
            for layer in m
                .layers
                .iter()
                .filter(|l| l.media_type == cosign::BUNDLE_V03)
            {
                tried += 1;
                let bundle = self.blob(image, &at, layer, &auth).await?;
                match cosign::check_bundle(&bundle, None, digest, keys) {
                    Ok(key) => {
                        return Ok(Signed::Verified {
                            key,
                            layout: Layout::Bundle,
                        });
                    }
                    Err(r) => note(r, &mut best),
                }
            }
        }
        Ok(match best {
            None => Signed::Unsigned,
            Some(reason) => Signed::Rejected { reason, tried },
        })
    }

    /// An image manifest, refused above the size bound.
    async fn manifest(
        &self,
        image: &ImageRef,
        reference: &Reference,
        auth: &RegistryAuth,
        declared: Option<usize>,
    ) -> Answer<OciImageManifest> {
        let shown = reference.whole();
        let limit = self.config.max_manifest_bytes;
        if let Some(size) = declared.filter(|s| *s > limit) {
            return Err(RegistryError::TooLarge {
                what: "the signature manifest",
                reference: shown,
                size,
                limit,
            });
        }
        let (bytes, _) = self
            .client
            .pull_manifest_raw(
                reference,
                auth,
                &[OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE],
            )
            .await
            .map_err(|e| registry_error(e, &image.registry, &shown))?;
        if bytes.len() > limit {
            return Err(RegistryError::TooLarge {
                what: "the signature manifest",
                reference: shown,
                size: bytes.len(),
                limit,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
            registry: image.registry.clone(),
            detail: format!("{shown} is not an image manifest ({e})"),
        })
    }

    /// A blob, read only up to the size bound and checked against its digest.
    async fn blob(
        &self,
        image: &ImageRef,
        reference: &Reference,
        layer: &OciDescriptor,
        auth: &RegistryAuth,
    ) -> Answer<Vec<u8>> {
        let limit = self.config.max_blob_bytes;
        let shown = format!("{}/{}@{}", image.registry, image.repository, layer.digest);
        let declared = usize::try_from(layer.size).unwrap_or(usize::MAX);
        if declared > limit {
            return Err(RegistryError::TooLarge {
                what: "the signature payload",
                reference: shown,
                size: declared,
                limit,
            });
        }
        // The token for this repository is already held from the manifest pull.
        let _ = auth;
        let mut stream = self
            .client
            .pull_blob_stream(reference, layer)
            .await
            .map_err(|e| registry_error(e, &image.registry, &shown))?;
        let mut out = Vec::with_capacity(declared.min(limit));
        while let Some(chunk) = stream.stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Unreachable {
                registry: image.registry.clone(),
                detail: e.to_string(),
            })?;
            if out.len() + chunk.len() > limit {
                return Err(RegistryError::TooLarge {
                    what: "the signature payload",
                    reference: shown,
                    size: out.len() + chunk.len(),
                    limit,
                });
            }
            out.extend_from_slice(&chunk);
        }
        let got = format!("sha256:{}", hex::encode(Sha256::digest(&out)));
        if !got.eq_ignore_ascii_case(&layer.digest) {
            return Err(RegistryError::Protocol {
                registry: image.registry.clone(),
                detail: format!("the blob {} hashes to {got}", layer.digest),
            });
        }
        Ok(out)
    }
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        || d.strip_prefix("sha512:")
            .is_some_and(|h| h.len() == 128 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_entries_are_matched_by_host() {
        let json = br#"{"auths": {"https://contoso.azurecr.io/v1/": {"auth": "dXNlcjpwYXNz"},
                                  "index.docker.io": {"username": "u", "password": "p"}}}"#;
        assert_eq!(
            Auth::from_docker_config(json, "contoso.azurecr.io").unwrap(),
            Auth::Basic {
                username: "user".into(),
                password: "pass".into()
            }
        );
        assert_eq!(
            Auth::from_docker_config(json, "docker.io").unwrap(),
            Auth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(
            Auth::from_docker_config(json, "other.example").unwrap(),
            Auth::Anonymous
        );
        assert!(
            Auth::from_docker_config(b"\"x\"", "x")
                .unwrap_err()
                .to_string()
                .contains("dockerconfigjson")
        );
        let shown = format!(
            "{:?}",
            Auth::from_docker_config(json, "contoso.azurecr.io").unwrap()
        );
        assert!(!shown.contains("pass"), "{shown}");
    }

    #[test]
    fn a_credentials_file_is_refused_whole_when_an_entry_is_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            br#"{"auths": {"a.example": {"auth": "dXNlcjpwYXNz"},
            "b.example:5000": {"username": "u", "password": "p"}}}"#,
        )
        .unwrap();
        let config = DockerConfig::read(&path).unwrap();
        assert_eq!(format!("{config:?}"), r#"["a.example", "b.example:5000"]"#);
        assert_eq!(
            config.auth_for("B.example:5000").unwrap(),
            Auth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(config.auth_for("c.example").unwrap(), Auth::Anonymous);
        std::fs::write(&path, br#"{"auths": {"a.example": {"auth": "!!"}}}"#).unwrap();
        let e = DockerConfig::read(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: ", path.display())), "{e}");
        assert!(e.contains("the auth of a.example is not base64"), "{e}");
        std::fs::write(&path, br#"{"credsStore": "desktop"}"#).unwrap();
        let e = DockerConfig::read(&path).unwrap_err().to_string();
        assert!(e.contains("no registry under \"auths\""), "{e}");
    }

    #[test]
    fn a_ca_bundle_holds_every_certificate_and_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let ca = || {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.self_signed(&key).unwrap().pem()
        };
        std::fs::write(&path, format!("{}{}", ca(), ca())).unwrap();
        assert_eq!(read_ca_bundle(&path).unwrap().len(), 2);
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = read_ca_bundle(&path).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE block found"), "{e}");
        let e = read_ca_bundle(&dir.path().join("absent.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent.pem"), "{e}");
    }

    #[test]
    fn digests_must_be_well_formed() {
        assert!(valid_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!valid_digest(&format!("sha256:{}", "a".repeat(63))));
        assert!(!valid_digest("md5:abc"));
    }
}
