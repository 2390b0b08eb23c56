//! Checks of the TLS certificate and key a spec names, before anything is applied: the key
//! belongs to the certificate, the certificate covers the instance's API host name, it is
//! valid now, and a warning when it expires within 30 days.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::signature::KeyPair;
use x509_parser::extensions::GeneralName;

/// How far ahead an expiry is worth a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// Problems that make the pair unusable (errors) and ones worth saying (warnings).
#[derive(Debug, Default, PartialEq)]
pub struct TlsReport {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks a PEM certificate and key for `host` at time `now`.
pub fn check(cert_pem: &str, key_pem: &str, host: &str, now: SystemTime) -> TlsReport {
    let mut report = TlsReport::default();
    let pem = match x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) {
        Ok((_, pem)) => pem,
        Err(e) => {
            report
                .errors
                .push(format!("the certificate is not PEM: {e}"));
            return report;
        }
    };
    let cert = match pem.parse_x509() {
        Ok(c) => c,
        Err(e) => {
            report
                .errors
                .push(format!("the certificate cannot be read: {e}"));
            return report;
        }
    };
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (not_before, not_after) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    if now_secs < not_before {
        report.errors.push(format!(
            "the certificate is not valid before {}",
            cert.validity().not_before
        ));
    } else if now_secs > not_after {
        report.errors.push(format!(
            "the certificate expired on {}",
            cert.validity().not_after
        ));
    } else if not_after - now_secs < EXPIRY_WARNING.as_secs() as i64 {
        report.warnings.push(format!(
            "the TLS certificate expires on {} (in {} days)",
            cert.validity().not_after,
            (not_after - now_secs) / 86_400
        ));
    }

    let names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !names.iter().any(|n| covers(n, host)) {
        report.errors.push(format!(
            "the certificate does not cover {host} (its names: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ));
    }

    match public_key_of(key_pem) {
        Ok(Some(key)) => {
            if key != cert.public_key().subject_public_key.data.as_ref() {
                report.errors.push("the key does not belong to the certificate".into());
            }
        }
        Ok(None) => report.warnings.push(
            "the TLS key is in a format wallaroo cannot check against the certificate (use PKCS#8 or PKCS#1)".into(),
        ),
        Err(e) => report.errors.push(e),
    }
    report
}

/// Whether a certificate name (possibly `*.domain`) covers `host`.
fn covers(name: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    match name.strip_prefix("*.") {
        Some(rest) => host
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
        None => name == host,
    }
}

/// The public key bytes (as a certificate's SubjectPublicKeyInfo holds them) of a PEM
/// private key; `None` for formats we cannot read.
fn public_key_of(key_pem: &str) -> Result<Option<Vec<u8>>, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(key_pem.as_bytes())
        .map_err(|e| format!("the key is not PEM: {e}"))?;
    let der = pem.contents.as_slice();
    let rng = ring::rand::SystemRandom::new();
    let key = match pem.label.as_str() {
        "RSA PRIVATE KEY" => ring::signature::RsaKeyPair::from_der(der)
            .map(|k| k.public_key().as_ref().to_vec())
            .ok(),
        "PRIVATE KEY" => ring::signature::RsaKeyPair::from_pkcs8(der)
            .map(|k| k.public_key().as_ref().to_vec())
            .ok()
            .or_else(|| {
                [
                    &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &ring::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                ]
                .into_iter()
                .find_map(|alg| ring::signature::EcdsaKeyPair::from_pkcs8(alg, der, &rng).ok())
                .map(|k| k.public_key().as_ref().to_vec())
            })
            .or_else(|| {
                ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .ok()
                    .map(|k| k.public_key().as_ref().to_vec())
            }),
        _ => None,
    };
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn examples() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tls")
    }

    fn read(name: &str) -> String {
        std::fs::read_to_string(examples().join(name)).unwrap()
    }

    /// A self-signed pair from the real openssl, valid for `days`.
    fn openssl_pair(days: &str, cn: &str) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                days,
            ])
            .args([
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                &format!("subjectAltName=DNS:{cn}"),
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        (
            std::fs::read_to_string(cert).unwrap(),
            std::fs::read_to_string(key).unwrap(),
        )
    }

    #[test]
    fn the_example_pair_is_good_for_its_domain() {
        let r = check(
            &read("wallaroo.crt"),
            &read("wallaroo.key"),
            "api.wallaroo.example.com",
            SystemTime::now(),
        );
        assert_eq!(r, TlsReport::default());
    }

    #[test]
    fn wrong_host_wrong_key_expired_and_expiring() {
        let cert = read("wallaroo.crt");
        let r = check(
            &cert,
            &read("wallaroo.key"),
            "api.other.example.com",
            SystemTime::now(),
        );
        assert!(
            r.errors[0].contains("does not cover api.other.example.com"),
            "{r:?}"
        );
        assert!(
            !covers("*.wallaroo.example.com", "ml.api.wallaroo.example.com"),
            "a wildcard covers one label"
        );

        let (_, other_key) = openssl_pair("30", "x.example.com");
        let r = check(
            &cert,
            &other_key,
            "api.wallaroo.example.com",
            SystemTime::now(),
        );
        assert_eq!(r.errors, ["the key does not belong to the certificate"]);

        let (soon, soon_key) = openssl_pair("10", "api.example.com");
        let r = check(&soon, &soon_key, "api.example.com", SystemTime::now());
        assert!(
            r.errors.is_empty() && r.warnings[0].contains("expires on"),
            "{r:?}"
        );

        let later = SystemTime::now() + Duration::from_secs(11 * 24 * 3600);
        let r = check(&soon, &soon_key, "api.example.com", later);
        assert!(r.errors[0].contains("expired on"), "{r:?}");
    }
}
