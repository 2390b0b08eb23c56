//! Signing a bundle's index the way `cosign sign-blob` signs a file: an ECDSA P-256 signature
//! over the SHA-256 of its bytes, ASN.1 DER, base64 in a `.sig` file beside it, so that
//! `cosign verify-blob --key cosign.pub --signature INDEX.sig INDEX` checks it too.
//!
//! Keys in the formats cosign uses: its own encrypted private key (`cosign generate-key-pair`:
//! PEM `ENCRYPTED SIGSTORE PRIVATE KEY`, scrypt then NaCl secretbox, the password from
//! `COSIGN_PASSWORD`), or an unencrypted PKCS#8 PEM (`PRIVATE KEY`, what `cosign
//! import-key-pair` takes). Verification uses the public key PEM (`cosign.pub`).

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use serde::Deserialize;

/// A private key to sign with. Its bytes never leave this struct.
pub struct SigningKey {
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

#[derive(Deserialize)]
struct Encrypted {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

mod b64 {
    use base64::Engine;
    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// The body of the PEM block labelled `label` in `pem`.
fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = pem[start..].find(&end)? + start;
    let body: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

impl SigningKey {
    /// Reads a key file's text (`name` is for messages). `password` opens cosign's encrypted
    /// keys (empty when cosign was given none).
    pub fn from_pem(name: &str, pem: &str, password: &str) -> Result<SigningKey, String> {
        let der = if let Some(body) = pem_block(pem, "ENCRYPTED SIGSTORE PRIVATE KEY")
            .or_else(|| pem_block(pem, "ENCRYPTED COSIGN PRIVATE KEY"))
        {
            decrypt(name, &body, password)?
        } else if let Some(der) = pem_block(pem, "PRIVATE KEY") {
            der
        } else {
            return Err(format!(
                "{name} is not a private key in a format cosign uses (an `ENCRYPTED SIGSTORE \
                 PRIVATE KEY` from `cosign generate-key-pair`, or a PKCS#8 `PRIVATE KEY`)"
            ));
        };
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &SystemRandom::new())
                .map_err(|e| format!("{name}: not an ECDSA P-256 private key ({e})"))?;
        Ok(SigningKey { pair })
    }

    /// The base64 signature of `bytes`, as `cosign sign-blob` writes it.
    pub fn sign(&self, bytes: &[u8]) -> Result<String, String> {
        let sig = self
            .pair
            .sign(&SystemRandom::new(), bytes)
            .map_err(|e| format!("signing failed: {e}"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sig.as_ref()))
    }
}

fn decrypt(name: &str, body: &[u8], password: &str) -> Result<Vec<u8>, String> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let e: Encrypted = serde_json::from_slice(body)
        .map_err(|e| format!("{name}: not a cosign encrypted key ({e})"))?;
    if e.kdf.name != "scrypt" || e.cipher.name != "nacl/secretbox" {
        return Err(format!(
            "{name}: encrypted with {} and {}, not scrypt and nacl/secretbox",
            e.kdf.name, e.cipher.name
        ));
    }
    if !e.kdf.params.n.is_power_of_two() || e.cipher.nonce.len() != 24 {
        return Err(format!("{name}: malformed key parameters"));
    }
    let params = scrypt::Params::new(
        e.kdf.params.n.trailing_zeros() as u8,
        e.kdf.params.r,
        e.kdf.params.p,
        32,
    )
    .map_err(|e| format!("{name}: {e}"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password.as_bytes(), &e.kdf.salt, &params, &mut key)
        .map_err(|e| format!("{name}: {e}"))?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    let nonce = crypto_secretbox::Nonce::from_slice(&e.cipher.nonce);
    cipher
        .decrypt(nonce, e.ciphertext.as_slice())
        .map_err(|_| format!("{name}: wrong password (set COSIGN_PASSWORD to the key's password)"))
}

/// Whether `signature` (base64, as in a `.sig` file) is `key`'s over `bytes`.
pub fn verify_blob(key: &crate::verify::VerifyKey, bytes: &[u8], signature: &str) -> bool {
    match base64::engine::general_purpose::STANDARD.decode(signature.trim()) {
        Ok(sig) => key.verifies(bytes, &sig),
        Err(_) => false,
    }
}
