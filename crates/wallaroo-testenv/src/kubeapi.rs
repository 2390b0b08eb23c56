//! A small blocking client of the Kubernetes API for setting the environment up (RBAC,
//! nodes, LoadBalancer status). Tests use kube-rs; this only bootstraps.

use std::path::Path;

use reqwest::blocking::{Client, Response};
use serde_json::Value;

use crate::Error;

pub struct KubeApi {
    base: String,
    token: String,
    client: Client,
}

impl KubeApi {
    pub fn new(base: &str, token: &str, ca_file: &Path) -> Result<KubeApi, Error> {
        Ok(KubeApi {
            base: base.trim_end_matches('/').into(),
            token: token.into(),
            client: https_client(ca_file)?,
        })
    }

    fn check(&self, what: &str, r: reqwest::Result<Response>) -> Result<Value, Error> {
        let r = r.map_err(|e| Error::Api {
            what: what.into(),
            message: e.to_string(),
        })?;
        let status = r.status();
        let body: Value = r.json().unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(Error::Api {
                what: what.into(),
                message: format!("{status}: {}", body["message"].as_str().unwrap_or("")),
            });
        }
        Ok(body)
    }

    pub fn get(&self, path: &str) -> Result<Value, Error> {
        self.check(
            &format!("GET {path}"),
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .send(),
        )
    }

    /// Deletes an object (a missing one is fine).
    pub fn delete(&self, path: &str) -> Result<(), Error> {
        let resp = self
            .client
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| Error::Api {
                what: format!("DELETE {path}"),
                message: e.to_string(),
            })?;
        if resp.status().is_success() || resp.status() == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(Error::Api {
                what: format!("DELETE {path}"),
                message: resp.status().to_string(),
            })
        }
    }

    /// A path that answers text (e.g. `/metrics`).
    pub fn get_text(&self, path: &str) -> Result<String, Error> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| Error::Api {
                what: format!("GET {path}"),
                message: e.to_string(),
            })?;
        if !resp.status().is_success() {
            return Err(Error::Api {
                what: format!("GET {path}"),
                message: resp.status().to_string(),
            });
        }
        resp.text().map_err(|e| Error::Api {
            what: format!("GET {path}"),
            message: e.to_string(),
        })
    }

    /// Creates an object; an existing one is left as it is.
    pub fn create(&self, path: &str, body: &Value) -> Result<Value, Error> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send();
        match r {
            Ok(resp) if resp.status() == reqwest::StatusCode::CONFLICT => Ok(Value::Null),
            other => self.check(&format!("POST {path}"), other),
        }
    }

    pub fn merge_patch(&self, path: &str, body: &Value) -> Result<Value, Error> {
        self.check(
            &format!("PATCH {path}"),
            self.client
                .patch(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .header("Content-Type", "application/merge-patch+json")
                .body(body.to_string())
                .send(),
        )
    }

    pub fn ready(&self) -> bool {
        self.client
            .get(format!("{}/readyz", self.base))
            .bearer_auth(&self.token)
            .send()
            .is_ok_and(|r| r.status().is_success())
    }
}

/// A blocking HTTPS client trusting only `ca_file`.
pub fn https_client(ca_file: &Path) -> Result<Client, Error> {
    crate::install_crypto_provider();
    let pem = std::fs::read(ca_file).map_err(|e| Error::io(ca_file, e))?;
    let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| Error::Api {
        what: "CA".into(),
        message: e.to_string(),
    })?;
    Client::builder()
        .tls_certs_only([cert])
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Api {
            what: "HTTP client".into(),
            message: e.to_string(),
        })
}
