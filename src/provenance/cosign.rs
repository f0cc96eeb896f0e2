//! Cosign's signature formats, checked from bytes the registry returned:
//! the legacy simple-signing payload behind a `sha256-<hex>.sig` tag, and
//! Sigstore bundles (v0.3) attached as OCI referrers. Keyed and offline:
//! a signature counts when one trusted key verifies it and what it signs
//! names the image's digest. Transparency-log entries, when present, are
//! not required and not checked.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::keys::KeySet;

/// The layer media type of a legacy cosign signature's payload.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature over the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The media type of a Sigstore bundle, as cosign v3 attaches it.
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// `critical.type` of an image signature payload.
const SIGNATURE_TYPE: &str = "cosign container image signature";
/// DSSE payload type of an in-toto statement.
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// Which layout a signature was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `sha256-<hex>.sig` tag, simple-signing payload.
    Legacy,
    /// Sigstore bundle through the referrers API (or its tag fallback).
    Bundle,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Legacy => "legacy .sig tag",
            Layout::Bundle => "Sigstore bundle",
        }
    }
}

/// Why one signature does not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// No trusted key verifies it: signed by another key, or what it signs
    /// was altered after signing.
    NoTrustedKey,
    /// It verifies, but signs another image.
    OtherDigest(String),
    /// It cannot be read (bad base64, not JSON, wrong type).
    Malformed(String),
}

impl Rejected {
    /// Ordering for the reason a denial gives: the most telling first.
    pub fn rank(&self) -> u8 {
        match self {
            Rejected::OtherDigest(_) => 3,
            Rejected::NoTrustedKey => 2,
            Rejected::Malformed(_) => 1,
        }
    }
}

#[derive(Deserialize)]
struct SimpleSigning {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: CriticalImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct CriticalImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// A legacy signature: `payload` is the simple-signing blob, `signature`
/// the annotation's base64. Returns the verifying key's description.
pub fn check_simple_signing(
    payload: &[u8],
    signature_b64: &str,
    digest: &str,
    keys: &KeySet,
) -> Result<String, Rejected> {
    let signature = STANDARD.decode(signature_b64.trim()).map_err(|e| {
        Rejected::Malformed(format!("the signature annotation is not base64 ({e})"))
    })?;
    let key = keys
        .verifier(payload, &signature)
        .ok_or(Rejected::NoTrustedKey)?;
    let p: SimpleSigning = serde_json::from_slice(payload).map_err(|e| {
        Rejected::Malformed(format!(
            "the payload is not a simple-signing document ({e})"
        ))
    })?;
    if p.critical.kind != SIGNATURE_TYPE {
        return Err(Rejected::Malformed(format!(
            "the payload's critical.type is {:?}, not {SIGNATURE_TYPE:?}",
            p.critical.kind
        )));
    }
    if !p.critical.image.digest.eq_ignore_ascii_case(digest) {
        return Err(Rejected::OtherDigest(p.critical.image.digest));
    }
    Ok(key.describe())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    #[serde(default)]
    message_signature: Option<MessageSignature>,
    #[serde(default)]
    dsse_envelope: Option<Dsse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageSignature {
    message_digest: MessageDigest,
    signature: String,
}

#[derive(Deserialize)]
struct MessageDigest {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Dsse {
    payload: String,
    payload_type: String,
    signatures: Vec<DsseSignature>,
}

#[derive(Deserialize)]
struct DsseSignature {
    sig: String,
}

#[derive(Deserialize)]
struct Statement {
    #[serde(default)]
    subject: Vec<Subject>,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// DSSE's pre-authentication encoding: what the signature covers.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A Sigstore bundle. A `messageSignature` signs a message by its digest;
/// for an image signature the message is the simple-signing payload, so
/// `payload` (when the manifest carries it) must hash to that digest. A
/// DSSE envelope signs an in-toto statement whose subject is the image.
pub fn check_bundle(
    bundle: &[u8],
    payload: Option<&[u8]>,
    digest: &str,
    keys: &KeySet,
) -> Result<String, Rejected> {
    let b: Bundle = serde_json::from_slice(bundle)
        .map_err(|e| Rejected::Malformed(format!("the bundle is not a Sigstore bundle ({e})")))?;
    if !b
        .media_type
        .starts_with("application/vnd.dev.sigstore.bundle")
    {
        return Err(Rejected::Malformed(format!(
            "the bundle's mediaType is {:?}",
            b.media_type
        )));
    }
    if let Some(env) = b.dsse_envelope {
        let body = STANDARD
            .decode(&env.payload)
            .map_err(|e| Rejected::Malformed(format!("the DSSE payload is not base64 ({e})")))?;
        let signed = pae(&env.payload_type, &body);
        let key = env
            .signatures
            .iter()
            .filter_map(|s| STANDARD.decode(&s.sig).ok())
            .find_map(|sig| keys.verifier(&signed, &sig))
            .ok_or(Rejected::NoTrustedKey)?;
        if env.payload_type != IN_TOTO {
            return Err(Rejected::Malformed(format!(
                "the DSSE payloadType is {:?}, not {IN_TOTO:?}",
                env.payload_type
            )));
        }
        let st: Statement = serde_json::from_slice(&body).map_err(|e| {
            Rejected::Malformed(format!(
                "the DSSE payload is not an in-toto statement ({e})"
            ))
        })?;
        let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
        if st.subject.iter().any(|s| {
            s.digest
                .get(alg)
                .is_some_and(|h| h.eq_ignore_ascii_case(hex))
        }) {
            return Ok(key.describe());
        }
        let other = st
            .subject
            .iter()
            .find_map(|s| s.digest.get(alg).map(|h| format!("{alg}:{h}")))
            .unwrap_or_else(|| "no subject".into());
        return Err(Rejected::OtherDigest(other));
    }
    let Some(ms) = b.message_signature else {
        return Err(Rejected::Malformed(
            "the bundle has neither a messageSignature nor a dsseEnvelope".into(),
        ));
    };
    let signature = STANDARD
        .decode(&ms.signature)
        .map_err(|e| Rejected::Malformed(format!("the bundle's signature is not base64 ({e})")))?;
    let Some(payload) = payload else {
        return Err(Rejected::Malformed(
            "a messageSignature bundle without the payload it signs".into(),
        ));
    };
    if ms.message_digest.algorithm != "SHA2_256" {
        return Err(Rejected::Malformed(format!(
            "the bundle's messageDigest uses {}, not SHA2_256",
            ms.message_digest.algorithm
        )));
    }
    let want = STANDARD
        .decode(&ms.message_digest.digest)
        .unwrap_or_default();
    if Sha256::digest(payload).as_slice() != want.as_slice() {
        return Err(Rejected::NoTrustedKey);
    }
    check_simple_signing(payload, &STANDARD.encode(signature), digest, keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::keys::PublicKey;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};

    const DIGEST: &str = "sha256:4f8c1e1d36ca6a7bb3b5f4b3e6d8f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5";

    fn signer() -> (EcdsaKeyPair, KeySet) {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ring_kp = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &kp.serialize_der(),
            &SystemRandom::new(),
        )
        .unwrap();
        let key = PublicKey::from_pem(&kp.public_key_pem(), Some("release")).unwrap();
        (ring_kp, KeySet::new(vec![key]))
    }

    fn payload(digest: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "critical": {"identity": {"docker-reference": "r.example/a"},
                         "image": {"docker-manifest-digest": digest},
                         "type": SIGNATURE_TYPE},
            "optional": null}))
        .unwrap()
    }

    fn sign(k: &EcdsaKeyPair, m: &[u8]) -> String {
        STANDARD.encode(k.sign(&SystemRandom::new(), m).unwrap().as_ref())
    }

    #[test]
    fn simple_signing_accepts_a_trusted_signature_for_the_digest() {
        let (k, keys) = signer();
        let p = payload(DIGEST);
        assert!(
            check_simple_signing(&p, &sign(&k, &p), DIGEST, &keys)
                .unwrap()
                .starts_with("release")
        );
    }

    #[test]
    fn simple_signing_names_each_failure() {
        let (k, keys) = signer();
        let (other, _) = signer();
        let p = payload(DIGEST);
        assert_eq!(
            check_simple_signing(&p, &sign(&other, &p), DIGEST, &keys),
            Err(Rejected::NoTrustedKey)
        );
        let mut tampered = p.clone();
        tampered.extend_from_slice(b" ");
        assert_eq!(
            check_simple_signing(&tampered, &sign(&k, &p), DIGEST, &keys),
            Err(Rejected::NoTrustedKey)
        );
        let elsewhere = payload("sha256:00");
        assert_eq!(
            check_simple_signing(&elsewhere, &sign(&k, &elsewhere), DIGEST, &keys),
            Err(Rejected::OtherDigest("sha256:00".into()))
        );
        assert!(matches!(
            check_simple_signing(&p, "%%", DIGEST, &keys),
            Err(Rejected::Malformed(_))
        ));
    }

    #[test]
    fn dsse_bundles_are_checked_over_the_pae() {
        let (k, keys) = signer();
        let statement = serde_json::to_vec(&serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "r.example/a", "digest": {"sha256": DIGEST.trim_start_matches("sha256:")}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1", "predicate": {}}))
        .unwrap();
        let sig = sign(&k, &pae(IN_TOTO, &statement));
        let bundle = serde_json::to_vec(&serde_json::json!({
            "mediaType": BUNDLE_V03,
            "dsseEnvelope": {"payload": STANDARD.encode(&statement), "payloadType": IN_TOTO,
                             "signatures": [{"sig": sig}]}}))
        .unwrap();
        assert!(check_bundle(&bundle, None, DIGEST, &keys).is_ok());
        let other = "sha256:4f8c1e1d36ca6a7bb3b5f4b3e6d8f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e6";
        assert!(matches!(
            check_bundle(&bundle, None, other, &keys),
            Err(Rejected::OtherDigest(_))
        ));
        let (_, strangers) = signer();
        assert_eq!(
            check_bundle(&bundle, None, DIGEST, &strangers),
            Err(Rejected::NoTrustedKey)
        );
    }
}
