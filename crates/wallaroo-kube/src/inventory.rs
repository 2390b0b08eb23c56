//! What is running, for `wallaroo init --from-cluster`: the deployed helm releases, the
//! nodes' labels and taints, the Secrets of the release's namespace (names, types, registry
//! logins) and Keycloak's users. Read only. The secret values read here (registry passwords,
//! Keycloak's admin password, TLS keys) stay in memory, only so that a value holding one is
//! recognised as a secret; they are never returned in anything that is shown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, ListParams};
use serde_json::Value;
use wallaroo_engine::ResourceError;

use crate::helm::{HelmRelease, decode_release};
use crate::keycloak::{KeycloakUser, KeycloakUserKind};
use crate::{ClusterConfig, kube_err};

/// The deployed helm releases, in `namespace` or in every namespace, newest revision each.
pub async fn deployed_releases(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<Vec<HelmRelease>, ResourceError> {
    let api: Api<Secret> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let list = api
        .list(&ListParams::default().labels("owner=helm,status=deployed"))
        .await
        .map_err(kube_err("listing helm releases"))?;
    let mut out: Vec<HelmRelease> = Vec::new();
    for s in list.items {
        let Some(data) = s.data.as_ref().and_then(|d| d.get("release")) else {
            continue;
        };
        let name = s.metadata.name.clone().unwrap_or_default();
        let mut release = decode_release(&data.0)
            .map_err(|e| ResourceError::new(format!("helm release Secret {name}: {e}")))?;
        if release.namespace.is_empty() {
            release.namespace = s.metadata.namespace.clone().unwrap_or_default();
        }
        out.retain(|r| {
            !(r.namespace == release.namespace
                && r.name == release.name
                && r.version < release.version)
        });
        if !out
            .iter()
            .any(|r| r.namespace == release.namespace && r.name == release.name)
        {
            out.push(release);
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(out)
}

/// A node's labels and taints (`key=value:Effect`).
#[derive(Debug, Clone)]
pub struct NodeMarks {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<String>,
}

pub async fn node_marks(client: &kube::Client) -> Result<Vec<NodeMarks>, ResourceError> {
    let api: Api<Node> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(kube_err("listing nodes"))?;
    Ok(list
        .items
        .into_iter()
        .map(|n| NodeMarks {
            name: n.metadata.name.unwrap_or_default(),
            labels: n.metadata.labels.unwrap_or_default(),
            taints: n
                .spec
                .and_then(|s| s.taints)
                .unwrap_or_default()
                .iter()
                .map(|t| match t.value.as_deref().unwrap_or("") {
                    "" => format!("{}:{}", t.key, t.effect),
                    v => format!("{}={v}:{}", t.key, t.effect),
                })
                .collect(),
        })
        .collect())
}

/// The Secrets of one namespace as init needs them.
#[derive(Default)]
pub struct NamespaceSecrets {
    /// Name -> type.
    pub types: BTreeMap<String, String>,
    /// Pull secrets: name -> registry host -> username.
    pub pull_logins: BTreeMap<String, BTreeMap<String, String>>,
    /// Secret strings (registry passwords, Keycloak's admin password, TLS keys). Never shown.
    pub secret_strings: BTreeSet<String>,
}

impl std::fmt::Debug for NamespaceSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceSecrets")
            .field("types", &self.types)
            .field("pull_logins", &self.pull_logins)
            .field(
                "secret_strings",
                &format!("({} hidden)", self.secret_strings.len()),
            )
            .finish()
    }
}

/// Too short to be told apart from ordinary text (`admin`, `true`).
const SHORTEST_SECRET: usize = 6;

pub async fn namespace_secrets(
    client: &kube::Client,
    namespace: &str,
) -> Result<NamespaceSecrets, ResourceError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("listing Secrets in {namespace}")))?;
    let mut out = NamespaceSecrets::default();
    for s in list.items {
        let name = s.metadata.name.clone().unwrap_or_default();
        let kind = s.type_.clone().unwrap_or_else(|| "Opaque".into());
        let data = s.data.unwrap_or_default();
        let text = |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        };
        let mut keep = |v: Option<String>| {
            if let Some(v) = v.filter(|v| v.len() >= SHORTEST_SECRET) {
                out.secret_strings.insert(v);
            }
        };
        match kind.as_str() {
            "kubernetes.io/dockerconfigjson" | "kubernetes.io/dockercfg" => {
                let raw = text(".dockerconfigjson").or_else(|| text(".dockercfg"));
                let doc: Value = raw
                    .as_deref()
                    .and_then(|r| serde_json::from_str(r).ok())
                    .unwrap_or(Value::Null);
                let auths = doc.get("auths").unwrap_or(&doc);
                let mut logins = BTreeMap::new();
                for (host, entry) in auths.as_object().into_iter().flatten() {
                    let (user, password) = login_of(entry);
                    keep(password);
                    if let Some(user) = user {
                        logins.insert(host.clone(), user);
                    }
                }
                out.pull_logins.insert(name.clone(), logins);
            }
            "kubernetes.io/tls" => keep(text("tls.key")),
            _ if name == "keycloak-admin-secret" => keep(text("KEYCLOAK_ADMIN_PASSWORD")),
            _ => {}
        }
        out.types.insert(name, kind);
    }
    Ok(out)
}

/// The username and password of one `auths` entry (`username`/`password`, or `auth`, the
/// base64 of `user:password`).
fn login_of(entry: &Value) -> (Option<String>, Option<String>) {
    use base64::Engine as _;
    let user = entry["username"].as_str().map(String::from);
    let password = entry["password"].as_str().map(String::from);
    if user.is_some() {
        return (user, password);
    }
    let decoded = entry["auth"]
        .as_str()
        .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
        None => (None, password),
    }
}

/// Keycloak's users, through the admin API at `keycloak_url` with the credentials in the
/// namespace's `keycloak-admin-secret`.
pub async fn keycloak_users(
    client: &kube::Client,
    namespace: &str,
    keycloak_url: &str,
) -> Result<Vec<KeycloakUser>, ResourceError> {
    let config = ClusterConfig {
        keycloak_url: keycloak_url.to_string(),
        namespace: namespace.to_string(),
        ..ClusterConfig::default()
    };
    KeycloakUserKind::new(client.clone(), Arc::new(config))
        .list_users()
        .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_login_is_read_from_its_fields_or_from_auth() {
        assert_eq!(
            super::login_of(&json!({"username": "u", "password": "p", "auth": "eDp5"})),
            (Some("u".into()), Some("p".into()))
        );
        // `auth` alone: base64 of "robot:s3cret-pw".
        assert_eq!(
            super::login_of(&json!({"auth": "cm9ib3Q6czNjcmV0LXB3"})),
            (Some("robot".into()), Some("s3cret-pw".into()))
        );
    }
}
