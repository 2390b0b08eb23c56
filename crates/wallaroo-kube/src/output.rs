//! `output.NAME` of kind `service_address`: the address a LoadBalancer Service was given
//! (`api-lb-ext`). Read-only; during apply it waits for the address up to a timeout.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use serde_json::json;
use wallaroo_engine::{Attrs, ReadRequest, ResourceError, ResourceKind};

use crate::{ClusterConfig, is_not_found, kube_err, str_attr};

pub struct ServiceAddressKind {
    pub client: kube::Client,
    pub config: std::sync::Arc<ClusterConfig>,
}

impl ServiceAddressKind {
    async fn address(&self, ns: &str, name: &str) -> Result<Option<String>, ResourceError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), ns);
        let svc = match api.get(name).await {
            Ok(s) => s,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(kube_err(format!("reading service {ns}/{name}"))(e)),
        };
        let ingress = svc
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .unwrap_or_default();
        Ok(ingress
            .first()
            .and_then(|i| i.ip.clone().or(i.hostname.clone())))
    }
}

#[async_trait]
impl ResourceKind for ServiceAddressKind {
    fn name(&self) -> &'static str {
        "service_address"
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        let Some(attrs) = req.desired else {
            return Ok(None);
        };
        let (ns, name) = (str_attr(attrs, "namespace")?, str_attr(attrs, "service")?);
        // A refresh reads once; an apply step waits for the address.
        let deadline = Instant::now() + self.config.output_timeout;
        loop {
            if let Some(address) = self.address(ns, name).await? {
                return Ok(Some(Attrs::from([("value".to_string(), json!(address))])));
            }
            if !req.during_apply {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                return Err(ResourceError::new(format!(
                    "service {ns}/{name} got no LoadBalancer address within {:?}",
                    self.config.output_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// `output.NAME` of kind `secret_value`: one key of a Secret (the Keycloak admin's name and
/// password). Read-only; a sensitive one reaches the lockfile only as a hash.
pub struct SecretValueKind {
    pub client: kube::Client,
}

#[async_trait]
impl ResourceKind for SecretValueKind {
    fn name(&self) -> &'static str {
        "secret_value"
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        let Some(attrs) = req.desired else {
            return Ok(None);
        };
        let (ns, name, key) = (
            str_attr(attrs, "namespace")?,
            str_attr(attrs, "secret")?,
            str_attr(attrs, "key")?,
        );
        let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(self.client.clone(), ns);
        let secret = match api.get(name).await {
            Ok(s) => s,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(kube_err(format!("reading secret {ns}/{name}"))(e)),
        };
        Ok(secret
            .data
            .and_then(|d| {
                d.get(key)
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            })
            .map(|v| Attrs::from([("value".to_string(), json!(v))])))
    }
}
