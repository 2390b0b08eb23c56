//! Vendor signatures, verified offline against the vendor's cosign public keys before an
//! image is mirrored or bundled.
//!
//! cosign signs an image's digest by pushing a small *simple signing* payload (JSON naming
//! the digest under `critical.image.docker-manifest-digest`) as a layer, with the ECDSA
//! signature of the payload's bytes, base64, in the layer's
//! `dev.cosignproject.cosign/signature` annotation. The layer sits in a manifest found under
//! the tag `sha256-<hex>.sig` of the image's repository (cosign's tag scheme), or in an OCI 1.1
//! artifact whose `subject` is the image (listed by the referrers API or the referrers tag
//! schema's `sha256-<hex>` index). A signature passes when one of the keys verifies it and its
//! payload names the exact digest being copied: a valid signature of another digest (a
//! re-tagged signature) does not pass. The cryptography is `ring`'s ECDSA P-256/SHA-256;
//! keys are read from their PKIX PEM with `x509-parser`.

use base64::Engine;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use x509_parser::prelude::FromDer;

use crate::registry::{ImageSource, Manifest, OciError, read_blob};

/// The annotation cosign puts the signature in.
const SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// cosign's artifact type for a signature pushed as an OCI 1.1 referrer.
const SIG_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// One public key, with the name messages give it (its file).
#[derive(Clone)]
pub struct VerifyKey {
    pub name: String,
    point: Vec<u8>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyKey({})", self.name)
    }
}

impl VerifyKey {
    /// A key from a PEM `PUBLIC KEY` (PKIX) of an ECDSA P-256 key, as `cosign
    /// generate-key-pair` writes `cosign.pub`.
    pub fn from_pem(name: &str, pem: &str) -> Result<VerifyKey, String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| format!("{name}: not a PEM public key ({e})"))?;
        if pem.label != "PUBLIC KEY" {
            return Err(format!(
                "{name}: a PEM `{}`, not a `PUBLIC KEY` (give cosign.pub, never cosign.key)",
                pem.label
            ));
        }
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&pem.contents)
            .map_err(|e| format!("{name}: not a PKIX public key ({e})"))?;
        // id-ecPublicKey with the curve prime256v1.
        let ec = spki.algorithm.algorithm.to_id_string() == "1.2.840.10045.2.1";
        let p256 = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|oid| oid.to_id_string() == "1.2.840.10045.3.1.7");
        if !(ec && p256) {
            return Err(format!(
                "{name}: not an ECDSA P-256 key (cosign's default); other key types are not supported"
            ));
        }
        Ok(VerifyKey {
            name: name.to_string(),
            point: spki.subject_public_key.data.to_vec(),
        })
    }

    pub(crate) fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(payload, signature)
            .is_ok()
    }
}

/// Why an image did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "{image}@{digest} is not signed: no cosign signature under sha256-…sig or among its OCI referrers (list it in `verify {{ unsigned }}` if it is meant to be)"
    )]
    Unsigned { image: String, digest: String },
    #[error("{image}@{digest}: {count} signature(s) found, none verifies with {keys}")]
    BadSignature {
        image: String,
        digest: String,
        count: usize,
        keys: String,
    },
    #[error(
        "{image}@{digest}: the signature that verifies with {key} is for {signed}, not this digest (a signature moved to another image)"
    )]
    OtherDigest {
        image: String,
        digest: String,
        key: String,
        signed: String,
    },
    #[error("{image}@{digest}: reading its signatures: {message}")]
    Read {
        image: String,
        digest: String,
        message: String,
    },
}

/// A signature layer: the payload's digest and the signature.
struct Candidate {
    payload: String,
    signature: Vec<u8>,
}

fn candidates(manifest: &Manifest) -> Vec<Candidate> {
    manifest.json()["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let sig = l["annotations"][SIGNATURE].as_str()?;
            let signature = base64::engine::general_purpose::STANDARD
                .decode(sig.trim())
                .ok()?;
            Some(Candidate {
                payload: l["digest"].as_str()?.to_string(),
                signature,
            })
        })
        .collect()
}

/// The signature manifests of `digest` in `repo`: cosign's `.sig` tag, and referrers whose
/// artifact type is cosign's signature.
async fn signature_manifests(
    src: &dyn ImageSource,
    repo: &str,
    digest: &str,
) -> Result<Vec<Manifest>, OciError> {
    let hex = digest.trim_start_matches("sha256:");
    let mut out = Vec::new();
    if let Some(m) = src.manifest(repo, &format!("sha256-{hex}.sig")).await? {
        out.push(m);
    }
    // OCI 1.1: the referrers API where the source has it, else the tag schema's index.
    let mut referrers: Vec<String> = src.referrers_api(repo, digest).await?.unwrap_or_default();
    if let Some(index) = src.manifest(repo, &format!("sha256-{hex}")).await? {
        for m in index.json()["manifests"].as_array().into_iter().flatten() {
            let is_sig = m["artifactType"].as_str() == Some(SIG_ARTIFACT);
            if let Some(d) = m["digest"].as_str()
                && is_sig
                && !referrers.iter().any(|r| r == d)
            {
                referrers.push(d.to_string());
            }
        }
    }
    for d in referrers {
        if let Some(m) = src.manifest(repo, &d).await? {
            let kind = m.json()["artifactType"].as_str().map(String::from);
            let config = m.json()["config"]["mediaType"].as_str().map(String::from);
            if kind.as_deref() == Some(SIG_ARTIFACT) || config.as_deref() == Some(SIG_ARTIFACT) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// Verifies that `image` (for messages) at `digest` in `repo` of `src` carries a cosign
/// signature one of `keys` verifies, for that digest. The key that did, on success.
pub async fn verify_image(
    src: &dyn ImageSource,
    image: &str,
    repo: &str,
    digest: &str,
    keys: &[VerifyKey],
) -> Result<String, VerifyError> {
    let read = |e: OciError| VerifyError::Read {
        image: image.to_string(),
        digest: digest.to_string(),
        message: e.to_string(),
    };
    let manifests = signature_manifests(src, repo, digest).await.map_err(read)?;
    let found: Vec<Candidate> = manifests.iter().flat_map(candidates).collect();
    if found.is_empty() {
        return Err(VerifyError::Unsigned {
            image: image.into(),
            digest: digest.into(),
        });
    }
    let mut other = None;
    for c in &found {
        let payload = read_blob(src, repo, &c.payload, 1 << 20)
            .await
            .map_err(read)?;
        for key in keys {
            if !key.verifies(&payload, &c.signature) {
                continue;
            }
            let doc: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
            let signed = doc["critical"]["image"]["docker-manifest-digest"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if signed == digest {
                return Ok(key.name.clone());
            }
            other = Some((key.name.clone(), signed));
        }
    }
    Err(match other {
        Some((key, signed)) => VerifyError::OtherDigest {
            image: image.into(),
            digest: digest.into(),
            key,
            signed,
        },
        None => VerifyError::BadSignature {
            image: image.into(),
            digest: digest.into(),
            count: found.len(),
            keys: keys
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_are_not_cosign_public_keys_are_refused_by_name() {
        let private = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n";
        let err = VerifyKey::from_pem("cosign.key", private).unwrap_err();
        assert!(
            err.contains("cosign.key") && err.contains("never cosign.key"),
            "{err}"
        );
        assert!(VerifyKey::from_pem("x.pub", "not pem").is_err());
    }
}
