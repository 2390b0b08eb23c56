//! `init --from-cluster`: the spec of the install that is running. Finds the Wallaroo helm
//! release (or the one named), reads it, the nodes, the namespace's Secrets and Keycloak's
//! users, and hands them to the model's inverse mapping ([`wallaroo_model::inverse`]).

use std::time::Duration;

use wallaroo_kube::HelmRelease;
pub use wallaroo_model::inverse::{Generated, Hints};
use wallaroo_model::inverse::{LiveInstall, LiveNode, LiveUser, spec_from_live};

use crate::error::OperationError;

/// What `init --from-cluster` is asked for.
#[derive(Debug, Clone, Default)]
pub struct FromCluster {
    /// The release's name; found by looking when not given.
    pub release: Option<String>,
    /// Its namespace; every namespace is searched when not given.
    pub namespace: Option<String>,
    /// Only nodes with these labels may join a pool (a cluster shared with another install).
    pub nodes: std::collections::BTreeMap<String, String>,
    /// What the cluster does not know (vendor registry, CAs, Keycloak's URL).
    pub hints: Hints,
}

/// How long Keycloak may take to list its users before init goes on without them.
const KEYCLOAK_TIMEOUT: Duration = Duration::from_secs(30);

/// The spec of the running install, the variables it needs and what could not be mapped.
pub async fn from_cluster(req: &FromCluster) -> Result<(Generated, String), OperationError> {
    let client = wallaroo_kube::connect().await?;
    let releases = wallaroo_kube::inventory::deployed_releases(&client, req.namespace.as_deref())
        .await
        .map_err(|e| OperationError::Message(e.to_string()))?;
    let release = choose(releases, req)?;
    let ns = release.namespace.clone();
    let nodes = wallaroo_kube::inventory::node_marks(&client)
        .await
        .map_err(|e| OperationError::Message(e.to_string()))?;
    let secrets = wallaroo_kube::inventory::namespace_secrets(&client, &ns)
        .await
        .map_err(|e| OperationError::Message(e.to_string()))?;
    let keycloak_url = req
        .hints
        .keycloak_url
        .clone()
        .unwrap_or_else(|| served_keycloak_url(&release));
    let users = if !secrets.types.contains_key("keycloak-admin-secret") {
        Err(format!("there is no keycloak-admin-secret in {ns}"))
    } else {
        match tokio::time::timeout(
            KEYCLOAK_TIMEOUT,
            wallaroo_kube::inventory::keycloak_users(&client, &ns, &keycloak_url),
        )
        .await
        {
            Ok(Ok(users)) => Ok(users
                .into_iter()
                .map(|u| LiveUser {
                    username: u.username,
                    email: u.email,
                    admin: u.admin,
                })
                .collect()),
            Ok(Err(e)) => Err(format!(
                "{e}; pass --keycloak-url if it is served elsewhere"
            )),
            Err(_) => Err(format!(
                "Keycloak at {keycloak_url} did not answer within {} s; pass --keycloak-url",
                KEYCLOAK_TIMEOUT.as_secs()
            )),
        }
    };
    let live = LiveInstall {
        release_name: release.name.clone(),
        namespace: ns.clone(),
        revision: release.version,
        chart_name: release.chart.metadata.name.clone(),
        chart_version: release.chart.metadata.version.clone(),
        config: release.config.clone(),
        chart_defaults: release.chart.values.clone(),
        nodes: nodes
            .into_iter()
            .map(|n| LiveNode {
                in_scope: req.nodes.iter().all(|(k, v)| n.labels.get(k) == Some(v)),
                name: n.name,
                labels: n.labels,
                taints: n.taints,
            })
            .collect(),
        pull_secrets: secrets.pull_logins,
        secrets: secrets.types,
        users,
        known_secrets: secrets.secret_strings,
    };
    let generated = spec_from_live(&live, &req.hints);
    Ok((
        generated,
        format!("{ns}/{} (revision {})", release.name, release.version),
    ))
}

/// The release to read: the one named, else the only one of the `wallaroo` chart.
fn choose(releases: Vec<HelmRelease>, req: &FromCluster) -> Result<HelmRelease, OperationError> {
    let listed = |rs: &[&HelmRelease]| {
        rs.iter()
            .map(|r| {
                format!(
                    "{}/{} (chart {} {})",
                    r.namespace, r.name, r.chart.metadata.name, r.chart.metadata.version
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let where_ = req
        .namespace
        .as_ref()
        .map_or("in any namespace".to_string(), |ns| format!("in {ns}"));
    let all: Vec<&HelmRelease> = releases.iter().collect();
    let matching: Vec<&HelmRelease> = match &req.release {
        Some(name) => all.iter().copied().filter(|r| &r.name == name).collect(),
        None => all
            .iter()
            .copied()
            .filter(|r| r.chart.metadata.name == "wallaroo")
            .collect(),
    };
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(OperationError::Message(format!(
            "no deployed helm release {} {where_}{}; pass --release NAME and --namespace NS",
            req.release
                .as_ref()
                .map_or("of the chart `wallaroo`".to_string(), |n| format!(
                    "named {n}"
                )),
            if all.is_empty() {
                String::new()
            } else {
                format!(" (found: {})", listed(&all))
            }
        ))),
        many => Err(OperationError::Message(format!(
            "{} deployed releases match {where_}: {}; pass --release NAME and --namespace NS",
            many.len(),
            listed(many)
        ))),
    }
}

/// The Keycloak URL the chart serves, `https://{prefix.}keycloak.{domain}/auth`, from the
/// release's values over its chart's defaults.
fn served_keycloak_url(release: &HelmRelease) -> String {
    let value = |k: &str| {
        release
            .config
            .get(k)
            .or_else(|| release.chart.values.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (prefix, domain) = (value("domainPrefix"), value("domainSuffix"));
    match prefix.as_str() {
        "" => format!("https://keycloak.{domain}/auth"),
        p => format!("https://{p}.keycloak.{domain}/auth"),
    }
}
