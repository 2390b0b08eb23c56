//! A small Bearer-token issuer for distribution's `token` auth: the way real vendor
//! registries (and the Replicated proxy) authenticate. The registry answers 401 with a
//! `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge; the client asks
//! this issuer, with Basic credentials, for a token; the issuer returns a JWT (RS256,
//! signed with a key whose certificate the registry trusts) granting the asked scope.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::Error;

/// What the issuer needs.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub signer_cert: PathBuf,
    pub signer_key: PathBuf,
    pub service: String,
    pub username: String,
    pub password: String,
}

pub const ISSUER_NAME: &str = "wallaroo-testenv";

/// Serves tokens over HTTPS until the process is killed.
pub fn serve(listener: TcpListener, issuer: Issuer) -> Result<(), Error> {
    crate::install_crypto_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&issuer.serving_cert)
        .map_err(|e| pem_err(&issuer.serving_cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(&issuer.serving_cert, e))?;
    let key = PrivateKeyDer::from_pem_file(&issuer.serving_key)
        .map_err(|e| pem_err(&issuer.serving_key, e))?;
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| Error::Api {
                what: "token issuer TLS".into(),
                message: e.to_string(),
            })?,
    );
    let signer_der = CertificateDer::from_pem_file(&issuer.signer_cert)
        .map_err(|e| pem_err(&issuer.signer_cert, e))?;
    let x5c = STANDARD.encode(signer_der.as_ref());
    let issuer = Arc::new(issuer);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (config, issuer, x5c) = (config.clone(), issuer.clone(), x5c.clone());
        std::thread::spawn(move || {
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let _ = handle(&mut tls, &issuer, &x5c);
        });
    }
    Ok(())
}

fn pem_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Api {
        what: path.display().to_string(),
        message: e.to_string(),
    }
}

fn handle(
    stream: &mut (impl std::io::Read + Write),
    issuer: &Issuer,
    x5c: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut *stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(v.trim().to_string());
        }
    }
    drop(reader);
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut scopes = Vec::new();
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("scope=") {
            scopes.push(percent_decode(v));
        }
    }
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", issuer.username, issuer.password))
    );
    if authorization.as_deref() != Some(expected.as_str()) {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"wrong username or password"}]}"#;
        write!(
            stream,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return stream.flush();
    }
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let token = match sign(issuer, x5c, &access) {
        Ok(t) => t,
        Err(e) => {
            write!(
                stream,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{e}",
                e.len()
            )?;
            return stream.flush();
        }
    };
    let body = json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// An RS256 JWT, signed by `openssl dgst` with the signer key.
fn sign(issuer: &Issuer, x5c: &str, access: &[serde_json::Value]) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut jti = [0u8; 12];
    getrandom::fill(&mut jti).map_err(|e| e.to_string())?;
    let header = json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let claims = json!({
        "iss": ISSUER_NAME, "sub": issuer.username, "aud": issuer.service,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": URL_SAFE_NO_PAD.encode(jti), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&issuer.signer_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(signing_input.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(out.stdout)
    ))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn scopes_are_percent_decoded() {
        assert_eq!(
            super::percent_decode("repository%3Awallaroo%2Fx%3Apull%2Cpush"),
            "repository:wallaroo/x:pull,push"
        );
        assert_eq!(super::percent_decode("a%2"), "a%2");
    }
}
