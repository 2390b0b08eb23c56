//! The cluster's resource kinds: the namespace, secrets, nodepool labels and taints, the
//! Wallaroo helm release, Keycloak users and outputs read from Services.
//!
//! Each kind reads live state through kube-rs (the helm release natively from helm's own
//! storage) and writes with server-side apply under the field manager `wallaroo`, or with
//! the real helm binary for the release. It never prints.

mod cluster;
mod daemonset;
mod helm;
pub mod inventory;
mod keycloak;
pub mod kots;
mod namespace;
mod node;
mod output;
pub mod permissions;
pub mod preflight;
pub mod pullcheck;
pub mod rehearse;
pub mod retry;
mod secret;
pub mod state_backend;
pub mod support;
pub mod troubleshoot;

use std::path::PathBuf;
use std::sync::Arc;

use wallaroo_engine::{KindRegistry, ResourceError};

pub use cluster::{Cluster, selector_text};
pub use helm::{HelmRelease, decode_release};
pub use keycloak::KeycloakUser;
pub use node::{SharedNode, shared_nodes};

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "wallaroo";

/// How the kinds reach the cluster and its services.
#[derive(Clone, Default)]
pub struct ClusterConfig {
    /// The helm binary.
    pub helm: PathBuf,
    /// The kubeconfig helm must use: the one the kinds' client was made from (`None`: helm's
    /// own default, which is where kube-rs looks too).
    pub kubeconfig: Option<PathBuf>,
    /// Credentials of the registry the chart is pulled from.
    pub chart_registry: Option<RegistryLogin>,
    /// A CA for that registry.
    pub ca_file: Option<PathBuf>,
    /// Keycloak's base URL, e.g. `https://keycloak.wallaroo.example.com/auth`.
    pub keycloak_url: String,
    /// Namespace of the installation (where `keycloak-admin-secret` is).
    pub namespace: String,
    /// How long an output waits for its address during apply.
    pub output_timeout: std::time::Duration,
    /// Destroy may delete a namespace that holds PersistentVolumeClaims (and so the data).
    pub delete_data: bool,
    /// The KOTS kubectl plugin, for `method = "kots"`.
    pub kots_binary: PathBuf,
    /// `Kind/name:path` rules of fields of the release's objects not compared for drift
    /// (`helm { ignore_drift }`).
    pub ignore_drift: Vec<String>,
    /// What the release's next upgrade does first (the chart's CRDs applied, objects
    /// replaced): set by apply from its rehearsal, taken by the upgrade.
    pub before_upgrade: BeforeUpgrades,
}

/// What the release's next upgrade does first, shared between apply and the release's kind
/// (see [`ClusterConfig::before_upgrade`]).
pub type BeforeUpgrades = std::sync::Arc<std::sync::Mutex<rehearse::BeforeUpgrade>>;

/// A registry login, password kept out of Debug output.
#[derive(Clone)]
pub struct RegistryLogin {
    pub host: String,
    pub username: String,
    pub password: String,
}

/// Why the cluster cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot reach the cluster: {0}. Set KUBECONFIG to a kubeconfig for the target cluster")]
    Connect(String),
}

/// A client for the cluster of the current kubeconfig (`KUBECONFIG`, or in-cluster). Each
/// request it sends counts in the profile's phase of the task that sent it.
pub async fn connect() -> Result<kube::Client, KubeError> {
    connect_retrying(DEFAULT_API_RETRY).await
}

/// How long a request to an API server that cannot answer is tried again, by default.
pub const DEFAULT_API_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// [`connect`], trying requests again for up to `retry` while the API server cannot answer
/// (see [`retry`]).
pub async fn connect_retrying(retry: std::time::Duration) -> Result<kube::Client, KubeError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| KubeError::Connect(e.to_string()))?;
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| KubeError::Connect(e.to_string()))?;
    // The client hands requests to a worker task, but the response future it makes is
    // awaited by the caller: counted there, the request lands in the caller's phase.
    // (A combinator, not an async block: the retry layer's future inside it is Send, which the
    // compiler cannot prove through an async block.)
    let counted = tower::util::MapFutureLayer::new(|fut| {
        futures_util::FutureExt::then(
            futures_util::future::lazy(|_| wallaroo_profile::request()),
            move |_| fut,
        )
    });
    Ok(builder
        .with_layer(&tower::buffer::BufferLayer::new(1024))
        .with_layer(&tower::retry::RetryLayer::new(retry::ApiRetry::within(
            retry,
        )))
        .with_layer(&counted)
        .build())
}

/// Registers every cluster kind, talking through `cluster` (a client, or a [`Cluster`] whose
/// reads the kinds share with the rest of the operation).
pub fn register_with(kinds: &mut KindRegistry, cluster: impl Into<Cluster>, config: ClusterConfig) {
    let cluster = cluster.into();
    let client = cluster.client().clone();
    let config = Arc::new(config);
    kinds
        .register(Arc::new(namespace::NamespaceKind {
            client: client.clone(),
            delete_data: config.delete_data,
        }))
        .register(Arc::new(secret::SecretKind {
            client: client.clone(),
        }))
        .register(Arc::new(node::NodeKind {
            client: client.clone(),
        }))
        .register(Arc::new(node::SelectorKind {
            nodes: node::NodeKind {
                client: client.clone(),
            },
            cluster,
        }))
        .register(Arc::new(helm::HelmReleaseKind {
            client: client.clone(),
            config: config.clone(),
        }))
        .register(Arc::new(keycloak::KeycloakUserKind::new(
            client.clone(),
            config.clone(),
        )))
        .register(Arc::new(daemonset::DaemonSetKind {
            client: client.clone(),
            timeout: std::time::Duration::from_secs(300),
        }))
        .register(Arc::new(output::SecretValueKind {
            client: client.clone(),
        }))
        .register(Arc::new(kots::KotsAppKind {
            binary: config.kots_binary.clone(),
            kubeconfig: config.kubeconfig.clone(),
        }))
        .register(Arc::new(output::ServiceAddressKind { client, config }));
}

/// A kube error as a resource error, naming what was done.
pub(crate) fn kube_err(what: impl std::fmt::Display) -> impl FnOnce(kube::Error) -> ResourceError {
    move |e| ResourceError::new(format!("{what}: {}", short_error(&e)))
}

/// A kube error in a line: the API server's message and code, or the client's error.
pub(crate) fn short_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

pub(crate) fn str_attr<'a>(
    attrs: &'a wallaroo_engine::Attrs,
    key: &str,
) -> Result<&'a str, ResourceError> {
    attrs
        .get(key)
        .and_then(|v| v.as_str())
        .ok_or_else(|| ResourceError::new(format!("attribute `{key}` is missing")))
}

/// Server-side apply of `body` as the field manager `wallaroo`.
pub(crate) async fn apply<K>(
    api: &kube::Api<K>,
    name: &str,
    body: &serde_json::Value,
    what: String,
) -> Result<(), ResourceError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = kube::api::PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &kube::api::Patch::Apply(body))
        .await
        .map_err(kube_err(format!("applying {what}")))?;
    Ok(())
}

/// [`apply`] as a dry run with strict field validation: what the API server answers,
/// storing nothing.
pub(crate) async fn dry_run_apply<K>(
    api: &kube::Api<K>,
    name: &str,
    body: &serde_json::Value,
) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = kube::api::PatchParams::apply(FIELD_MANAGER)
        .force()
        .dry_run()
        .validation_strict();
    api.patch(name, &params, &kube::api::Patch::Apply(body))
        .await
        .map(|_| ())
}

/// Deletes an object; one already gone is fine.
pub(crate) async fn delete_if_present<K>(
    api: &kube::Api<K>,
    name: &str,
    what: String,
) -> Result<(), ResourceError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(kube_err(format!("deleting {what}"))(e)),
    }
}
