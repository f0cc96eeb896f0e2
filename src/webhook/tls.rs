//! TLS for the webhook: rustls, TLS 1.2 and 1.3 only, ALPN h2 and
//! http/1.1. The certificate comes from PEM files and is re-read when they
//! change, checked at each new handshake (a `stat` of both files: cheap).
//! That catches cert-manager rotation through a Secret volume, which swaps
//! a `..data` symlink that inotify on the file paths would miss. A new pair
//! that does not parse, or whose key does not match its certificate, is
//! refused with an error logged, and the old pair stays in use. Existing
//! connections are never dropped. The `notAfter` of the certificate in use
//! is exported as a gauge whenever a pair is loaded, so an alert can fire
//! before a rotation that never came lets it expire.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("certificate {} and key {}: {source}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The crypto provider the whole process uses (ring), installed once in
/// `main` and in test set-up, and passed explicitly where rustls asks.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What identifies a version of a file on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

pub(crate) fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&m),
    })
}

/// Reads and checks a certificate chain and key.
pub fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::Read {
        path: cert.into(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::Read {
        path: key.into(),
        source,
    })?;
    certified_key(&cert_pem, &key_pem, provider).map_err(|e| match e {
        PairError::Cert(message) => TlsError::Pem {
            path: cert.into(),
            message,
        },
        PairError::Key(message) => TlsError::Pem {
            path: key.into(),
            message,
        },
        PairError::Mismatch(source) => TlsError::Pair {
            cert: cert.into(),
            key: key.into(),
            source,
        },
    })
}

enum PairError {
    Cert(String),
    Key(String),
    Mismatch(rustls::Error),
}

fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, PairError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| PairError::Cert(format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(PairError::Cert("no CERTIFICATE block found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| PairError::Key(format!("not a PEM private key: {e}")))?;
    CertifiedKey::from_der(chain, key, provider).map_err(PairError::Mismatch)
}

/// When the leaf certificate of `pair` stops being valid; `None` where
/// x509-parser cannot read what rustls accepted (not expected).
fn not_after(pair: &CertifiedKey) -> Option<SystemTime> {
    let leaf = pair.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let seconds = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// Exports the expiry of the pair just put in use.
fn record_expiry(pair: &CertifiedKey, metrics: &Metrics) {
    match not_after(pair) {
        Some(t) => metrics.tls_certificate_expiry(t),
        None => tracing::warn!(
            "cannot read the serving certificate's notAfter; expiry gauge not updated"
        ),
    }
}

/// A certificate resolver that follows its files.
pub struct ReloadingResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// The stamps of the pair in use, or of the last refused pair (so a bad
    /// pair is logged once, not at every handshake).
    seen: Mutex<(Option<Stamp>, Option<Stamp>)>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for ReloadingResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingResolver")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish()
    }
}

impl ReloadingResolver {
    /// Loads the pair; at start-up a bad pair is an error (nothing to fall back on).
    pub fn new(
        cert: PathBuf,
        key: PathBuf,
        provider: Arc<CryptoProvider>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TlsError> {
        let stamps = (stamp(&cert), stamp(&key));
        let pair = load_pair(&cert, &key, &provider)?;
        record_expiry(&pair, &metrics);
        Ok(ReloadingResolver {
            cert_path: cert,
            key_path: key,
            provider,
            current: ArcSwap::from_pointee(pair),
            seen: Mutex::new(stamps),
            metrics,
        })
    }

    /// Reloads if either file changed since the last look.
    pub fn refresh(&self) {
        let now = (stamp(&self.cert_path), stamp(&self.key_path));
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if *seen == now {
            return;
        }
        *seen = now;
        match load_pair(&self.cert_path, &self.key_path, &self.provider) {
            Ok(pair) => {
                record_expiry(&pair, &self.metrics);
                self.current.store(Arc::new(pair));
                self.metrics.tls_reload(true);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                self.metrics.tls_reload(false);
                tracing::error!(error = %e, "new TLS certificate refused; keeping the previous one");
            }
        }
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        Some(self.current.load_full())
    }
}

/// A fixed certificate (`--self-signed`).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A certificate for localhost made at start, for trying the webhook
/// locally. Returns the config and the certificate's PEM, so the caller can
/// tell the user where to find it (`curl --cacert`).
pub fn self_signed(
    provider: Arc<CryptoProvider>,
    metrics: &Metrics,
) -> Result<(rustls::ServerConfig, String), TlsError> {
    let generated = rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    let cert_pem = generated.cert.pem();
    let key_pem = generated.signing_key.serialize_pem();
    let pair = certified_key(cert_pem.as_bytes(), key_pem.as_bytes(), &provider).map_err(|_| {
        TlsError::Config(rustls::Error::General(
            "generated certificate did not load".into(),
        ))
    })?;
    record_expiry(&pair, metrics);
    let config = server_config(provider, Arc::new(Fixed(Arc::new(pair))))?;
    Ok((config, cert_pem))
}

/// TLS 1.2 and 1.3, ALPN h2 then http/1.1 (the apiserver speaks HTTP/2).
pub fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let g = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (g.cert.pem(), g.signing_key.serialize_pem())
    }

    #[test]
    fn a_key_that_does_not_match_its_certificate_is_refused() {
        let (cert, _) = pair("a");
        let (_, other_key) = pair("b");
        let err = certified_key(cert.as_bytes(), other_key.as_bytes(), &provider());
        assert!(matches!(err, Err(PairError::Mismatch(_))));
    }

    #[test]
    fn garbage_is_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("waf-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        let e = load_pair(&cert, &key, &provider()).unwrap_err().to_string();
        assert!(e.starts_with(&cert.display().to_string()), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn expiry_gauge(metrics: &Metrics) -> i64 {
        let text = metrics.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("waf_admission_tls_certificate_expiry_timestamp_seconds "))
            .unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn the_expiry_gauge_follows_the_certificate_in_use() {
        let dir = std::env::temp_dir().join(format!("waf-tls-exp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let write = |days: u64| {
            let k = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params.not_after =
                rcgen::date_time_ymd(2030, 1, 1) + Duration::from_secs(days * 86_400);
            let c = params.self_signed(&k).unwrap();
            std::fs::write(&cert, c.pem()).unwrap();
            std::fs::write(&key, k.serialize_pem()).unwrap();
        };
        // 2030-01-01T00:00:00Z
        const JAN_2030: i64 = 1_893_456_000;
        write(0);
        let metrics = Arc::new(Metrics::new());
        let r =
            ReloadingResolver::new(cert.clone(), key.clone(), provider(), metrics.clone()).unwrap();
        assert_eq!(expiry_gauge(&metrics), JAN_2030);
        write(30);
        r.refresh();
        assert_eq!(expiry_gauge(&metrics), JAN_2030 + 30 * 86_400);
        std::fs::remove_dir_all(dir).unwrap();

        let (_, _) = self_signed(provider(), &metrics).unwrap();
        assert!(
            expiry_gauge(&metrics) > JAN_2030,
            "rcgen's default notAfter is far off"
        );
    }

    #[test]
    fn rotation_swaps_a_good_pair_and_keeps_the_old_one_on_a_bad_pair() {
        let dir = std::env::temp_dir().join(format!("waf-tls-rot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let (c1, k1) = pair("one");
        std::fs::write(&cert, &c1).unwrap();
        std::fs::write(&key, &k1).unwrap();
        let r = ReloadingResolver::new(
            cert.clone(),
            key.clone(),
            provider(),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        let first = r.current.load_full().cert[0].clone();

        // A mismatched pair: refused, the first stays.
        let (c2, k2) = pair("two");
        std::fs::write(&cert, &c2).unwrap();
        r.refresh();
        assert_eq!(r.current.load_full().cert[0], first);

        // The matching key arrives: swapped in.
        std::fs::write(&key, &k2).unwrap();
        r.refresh();
        assert_ne!(r.current.load_full().cert[0], first);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
