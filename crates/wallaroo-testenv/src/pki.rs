//! A private CA and the certificates the components serve, made with `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;
use crate::process::run;

/// A TLS server configuration serving the certificate and key at `cert` and `key` (PEM), for
/// the kit's own servers (the fault proxy, the admission webhook).
pub fn server_config(
    cert: &Path,
    key: &Path,
) -> Result<std::sync::Arc<rustls::ServerConfig>, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    crate::install_crypto_provider();
    let pem = |p: &Path, e: &dyn std::fmt::Display| Error::Api {
        what: p.display().to_string(),
        message: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem(cert, &e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, &e))?;
    Ok(std::sync::Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .map_err(|e| pem(cert, &e))?,
    ))
}

/// Files of the generated PKI.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// Makes the CA (once) in `dir`.
    pub fn create(dir: &Path) -> Result<Pki, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let pki = Pki {
            dir: dir.to_path_buf(),
        };
        pki.self_signed("ca", "wallaroo-testenv CA")?;
        Ok(pki)
    }

    /// A serving certificate for `names` (DNS names and IP addresses), signed by the CA.
    pub fn issue(&self, name: &str, names: &[&str]) -> Result<(), Error> {
        if self.cert(name).exists() {
            return Ok(());
        }
        let san: Vec<String> = names
            .iter()
            .map(|n| {
                if n.parse::<std::net::IpAddr>().is_ok() {
                    format!("IP:{n}")
                } else {
                    format!("DNS:{n}")
                }
            })
            .collect();
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\n",
                san.join(",")
            ),
        )
        .map_err(|e| Error::io(&ext, e))?;
        let csr = self.dir.join(format!("{name}.csr"));
        run(
            "openssl (key)",
            Command::new("openssl")
                .args([
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={}", names[0]),
                ])
                .arg("-keyout")
                .arg(self.key(name))
                .arg("-out")
                .arg(&csr),
        )?;
        run(
            "openssl (sign)",
            Command::new("openssl")
                .args(["x509", "-req", "-days", "3650", "-CAcreateserial"])
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(self.ca_cert())
                .arg("-CAkey")
                .arg(self.key("ca"))
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(self.cert(name)),
        )?;
        Ok(())
    }

    /// A self-signed certificate and key (the token signer the registry trusts).
    pub fn self_signed(&self, name: &str, cn: &str) -> Result<(), Error> {
        if self.cert(name).exists() {
            return Ok(());
        }
        run(
            "openssl (self-signed)",
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "3650",
                    "-subj",
                    &format!("/CN={cn}"),
                ])
                .arg("-keyout")
                .arg(self.key(name))
                .arg("-out")
                .arg(self.cert(name)),
        )?;
        Ok(())
    }

    /// An RSA key pair (for service-account tokens and token auth).
    pub fn key_pair(&self, name: &str) -> Result<(), Error> {
        if self.key(name).exists() {
            return Ok(());
        }
        run(
            "openssl (genrsa)",
            Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(self.key(name))
                .arg("2048"),
        )?;
        run(
            "openssl (pubkey)",
            Command::new("openssl")
                .args(["rsa", "-pubout", "-in"])
                .arg(self.key(name))
                .arg("-out")
                .arg(self.dir.join(format!("{name}.pub"))),
        )?;
        Ok(())
    }
}
