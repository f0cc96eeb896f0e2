//! Trusted public keys, as `cosign generate-key-pair` writes them (PEM
//! `PUBLIC KEY`, SubjectPublicKeyInfo), and signature verification with
//! `ring`, the crypto the TLS stack already uses. Nothing here implements
//! cryptography: x509-parser reads the key's DER, ring verifies.

use std::fmt;

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo};

/// OIDs of the key types cosign makes or accepts.
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

/// One trusted key: how denials name it, and the algorithms its signatures
/// may use.
#[derive(Clone)]
pub struct PublicKey {
    /// The policy's name for it, else its fingerprint.
    pub name: String,
    /// `sha256:` and the first 16 hex digits of the SubjectPublicKeyInfo's
    /// SHA-256, as a stable id.
    pub fingerprint: String,
    kind: KeyKind,
    /// The key bytes ring expects (the SPKI's subjectPublicKey bits).
    bytes: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Rsa,
    Ed25519,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({} {:?} {})",
            self.name, self.kind, self.fingerprint
        )
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint && self.name == other.name
    }
}

/// Why a PEM is not a key signatures can be checked with; the text is
/// what the policy's status shows.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM block ({0})")]
    NotPem(#[source] x509_parser::nom::Err<x509_parser::error::PEMError>),
    #[error("a PEM \"{0}\" block; expected \"PUBLIC KEY\" (cosign.pub)")]
    NotPublicKey(String),
    #[error("not a SubjectPublicKeyInfo ({0})")]
    NotSpki(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("trailing bytes after the SubjectPublicKeyInfo")]
    TrailingBytes,
    #[error("an EC key on curve {0}; P-256 or P-384 only")]
    Curve(String),
    #[error("a key of algorithm {0}; ECDSA, RSA or Ed25519 only")]
    Algorithm(String),
}

impl PublicKey {
    /// Reads one PEM `PUBLIC KEY`. The error says what is wrong with it,
    /// for the policy's status.
    pub fn from_pem(pem: &str, name: Option<&str>) -> Result<PublicKey, KeyError> {
        let (_, block) =
            x509_parser::pem::parse_x509_pem(pem.trim().as_bytes()).map_err(KeyError::NotPem)?;
        if block.label != "PUBLIC KEY" {
            return Err(KeyError::NotPublicKey(block.label));
        }
        let (rest, spki) =
            SubjectPublicKeyInfo::from_der(&block.contents).map_err(KeyError::NotSpki)?;
        if !rest.is_empty() {
            return Err(KeyError::TrailingBytes);
        }
        let alg = spki.algorithm.algorithm.to_id_string();
        let kind = match alg.as_str() {
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                match curve.as_str() {
                    OID_P256 => KeyKind::EcdsaP256,
                    OID_P384 => KeyKind::EcdsaP384,
                    other => return Err(KeyError::Curve(other.to_owned())),
                }
            }
            OID_RSA => KeyKind::Rsa,
            OID_ED25519 => KeyKind::Ed25519,
            other => return Err(KeyError::Algorithm(other.to_owned())),
        };
        let bytes = spki.subject_public_key.data.to_vec();
        let fingerprint = format!(
            "sha256:{}",
            &hex::encode(Sha256::digest(&block.contents))[..16]
        );
        let key = PublicKey {
            name: name
                .map(str::to_owned)
                .unwrap_or_else(|| fingerprint.clone()),
            fingerprint,
            kind,
            bytes,
        };
        Ok(key)
    }

    /// True when `signature` is this key's signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithms: &[&'static dyn VerificationAlgorithm] = match self.kind {
            // cosign writes ASN.1 DER; a raw r||s is accepted too.
            KeyKind::EcdsaP256 => &[
                &signature::ECDSA_P256_SHA256_ASN1,
                &signature::ECDSA_P256_SHA256_FIXED,
            ],
            KeyKind::EcdsaP384 => &[
                &signature::ECDSA_P384_SHA384_ASN1,
                &signature::ECDSA_P384_SHA384_FIXED,
            ],
            KeyKind::Rsa => &[
                &signature::RSA_PKCS1_2048_8192_SHA256,
                &signature::RSA_PSS_2048_8192_SHA256,
            ],
            KeyKind::Ed25519 => &[&signature::ED25519],
        };
        algorithms.iter().any(|alg| {
            UnparsedPublicKey::new(*alg, &self.bytes)
                .verify(message, signature)
                .is_ok()
        })
    }

    /// How a message names it: `release (sha256:0123456789abcdef)`.
    pub fn describe(&self) -> String {
        if self.name == self.fingerprint {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, self.fingerprint)
        }
    }
}

/// The keys one policy trusts, with an id for cache keys.
#[derive(Clone, Debug, PartialEq)]
pub struct KeySet {
    pub keys: Vec<PublicKey>,
    /// The sorted fingerprints joined: equal sets share verdicts.
    pub id: String,
}

impl KeySet {
    pub fn new(keys: Vec<PublicKey>) -> KeySet {
        let mut prints: Vec<&str> = keys.iter().map(|k| k.fingerprint.as_str()).collect();
        prints.sort_unstable();
        prints.dedup();
        let id = prints.join(",");
        KeySet { keys, id }
    }

    /// The key that made `signature` over `message`, if any.
    pub fn verifier(&self, message: &[u8], signature: &[u8]) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.verify(message, signature))
    }

    /// `release (sha256:…), ops (sha256:…)`.
    pub fn describe(&self) -> String {
        self.keys
            .iter()
            .map(PublicKey::describe)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    /// A P-256 key pair made by ring; the PEM of its public half built by
    /// rcgen, as a cosign.pub would read.
    fn p256() -> (EcdsaKeyPair, String) {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = kp.public_key_pem();
        let ring_kp = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &kp.serialize_der(),
            &SystemRandom::new(),
        )
        .unwrap();
        (ring_kp, pem)
    }

    #[test]
    fn verifies_a_p256_signature_and_refuses_others() {
        let (signer, pem) = p256();
        let key = PublicKey::from_pem(&pem, Some("release")).unwrap();
        let sig = signer.sign(&SystemRandom::new(), b"payload").unwrap();
        assert!(key.verify(b"payload", sig.as_ref()));
        assert!(!key.verify(b"payload!", sig.as_ref()), "another message");
        let (_, other_pem) = p256();
        let other = PublicKey::from_pem(&other_pem, None).unwrap();
        assert!(!other.verify(b"payload", sig.as_ref()), "another key");
        assert!(key.describe().starts_with("release (sha256:"));
        assert_eq!(other.describe(), other.fingerprint);
    }

    #[test]
    fn verifies_ed25519() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let signer = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&kp.serialize_der()).unwrap();
        let key = PublicKey::from_pem(&kp.public_key_pem(), None).unwrap();
        let sig = signer.sign(b"m");
        assert!(key.verify(b"m", sig.as_ref()));
        assert_eq!(signer.public_key().as_ref(), key.bytes.as_slice());
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert!(
            PublicKey::from_pem("hello", None)
                .unwrap_err()
                .to_string()
                .contains("not a PEM block")
        );
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let private = kp.serialize_pem();
        let e = PublicKey::from_pem(&private, None).unwrap_err().to_string();
        assert!(e.contains("PRIVATE KEY"), "{e}");
    }

    #[test]
    fn a_key_set_is_named_by_its_fingerprints_in_any_order() {
        let (_, a) = p256();
        let (_, b) = p256();
        let ka = PublicKey::from_pem(&a, None).unwrap();
        let kb = PublicKey::from_pem(&b, None).unwrap();
        assert_eq!(
            KeySet::new(vec![ka.clone(), kb.clone()]).id,
            KeySet::new(vec![kb, ka]).id
        );
    }
}
