//! Preflight: what must hold before an apply can work, checked together so every failure is
//! listed at once with a hint: the cluster and its version, the nodepools' nodes, helm, the
//! registries with the spec's credentials and CA, the domain (warning), a storage class
//! (warning).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams};
use wallaroo_engine::error_chain;

use crate::Cluster;

/// The oldest helm the Wallaroo guide supports.
pub const MIN_HELM: (u64, u64, u64) = (3, 11, 2);
/// The oldest Kubernetes wallaroo is built against (k8s-openapi v1_33 models 1.33).
pub const MIN_KUBERNETES: (u64, u64) = (1, 29);

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
}

/// One check, what it found, and what to do when it did not pass.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    pub hint: Option<String>,
}

/// A registry to reach with credentials.
#[derive(Debug, Clone)]
pub struct RegistryProbe {
    pub role: &'static str,
    pub host: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// What preflight looks at, taken from the spec by the caller.
#[derive(Debug, Clone)]
pub struct PreflightInput {
    pub helm: PathBuf,
    /// Nodes by nodepool.
    pub nodes: BTreeMap<String, Vec<String>>,
    /// Selectors by nodepool.
    pub selectors: BTreeMap<String, BTreeMap<String, String>>,
    pub registries: Vec<RegistryProbe>,
    /// A host name that must resolve, e.g. `api.wallaroo.example.com`.
    pub host: String,
}

fn check(name: &str, outcome: Outcome, detail: impl Into<String>, hint: Option<&str>) -> Check {
    Check {
        name: name.into(),
        outcome,
        detail: detail.into(),
        hint: hint.map(String::from),
    }
}

/// Runs every check, all at once (behind a slow link to the API server, each question asked
/// one after another cost a round trip). Checks are listed in a fixed order; when the API
/// server cannot be reached, that is the only check reported.
pub async fn run(cluster: &Cluster, input: &PreflightInput) -> Vec<Check> {
    use futures_util::future::join_all;
    let nodes: Api<Node> = Api::all(cluster.client().clone());
    let nodes = &nodes;
    let named = join_all(input.nodes.iter().map(|(pool, names)| async move {
        let found = join_all(names.iter().map(|n| nodes.get_opt(n))).await;
        let missing: Vec<String> = names
            .iter()
            .zip(found)
            .filter(|(_, got)| matches!(got, Ok(None)))
            .map(|(n, _)| n.clone())
            .collect();
        if missing.is_empty() {
            check(
                &format!("nodepool {pool}"),
                Outcome::Pass,
                format!("{} node(s)", names.len()),
                None,
            )
        } else {
            check(
                &format!("nodepool {pool}"),
                Outcome::Fail,
                format!("missing node(s): {}", missing.join(", ")),
                Some("fix the nodepool's `nodes` list, or add the nodes"),
            )
        }
    }));
    let selected = join_all(input.selectors.iter().map(|(pool, selector)| async move {
        let text = crate::selector_text(selector);
        let found = cluster
            .nodes_matching(&text)
            .await
            .map(|l| l.len())
            .unwrap_or(0);
        if found > 0 {
            check(
                &format!("nodepool {pool}"),
                Outcome::Pass,
                format!("{found} node(s) match {text}"),
                None,
            )
        } else {
            check(
                &format!("nodepool {pool}"),
                Outcome::Fail,
                format!("no node matches {text}"),
                Some("label the pool's nodes, or fix `selector`"),
            )
        }
    }));
    let registries = join_all(input.registries.iter().map(registry_check));
    let dns = async {
        let host = input.host.clone();
        let resolves = tokio::task::spawn_blocking(move || {
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 443)).is_ok()
        })
        .await
        .unwrap_or(false);
        if resolves {
            check(
                "DNS",
                Outcome::Pass,
                format!("{} resolves", input.host),
                None,
            )
        } else {
            check(
                "DNS",
                Outcome::Warn,
                format!("{} does not resolve from here", input.host),
                Some("register the domain in the private DNS before users need it"),
            )
        }
    };
    let storage = async {
        let classes: Api<StorageClass> = Api::all(cluster.client().clone());
        match classes.list(&ListParams::default()).await {
            Ok(l) if !l.items.is_empty() => check(
                "storage class",
                Outcome::Pass,
                format!("{} found", l.items.len()),
                None,
            ),
            Ok(_) => check(
                "storage class",
                Outcome::Warn,
                "none found",
                Some("Wallaroo's persistent services need a default StorageClass"),
            ),
            Err(e) => check(
                "storage class",
                Outcome::Warn,
                format!("cannot list: {e}"),
                None,
            ),
        }
    };
    let (version, named, selected, helm, registries, dns, storage) = tokio::join!(
        cluster.version(),
        named,
        selected,
        helm_check(&input.helm),
        registries,
        dns,
        storage
    );

    let mut checks = Vec::new();
    match version {
        Ok(v) => {
            let minor: u64 = v.minor.trim_end_matches('+').parse().unwrap_or(0);
            let major: u64 = v.major.parse().unwrap_or(0);
            let ok = (major, minor) >= MIN_KUBERNETES;
            checks.push(check(
                "Kubernetes version",
                if ok { Outcome::Pass } else { Outcome::Fail },
                v.git_version.clone(),
                (!ok).then_some("Wallaroo needs Kubernetes 1.29 or newer"),
            ));
        }
        Err(e) => {
            checks.push(check(
                "Kubernetes API",
                Outcome::Fail,
                e.to_string(),
                Some("set KUBECONFIG to the target cluster"),
            ));
            return checks;
        }
    }
    checks.extend(named);
    checks.extend(selected);
    checks.push(helm);
    checks.extend(registries);
    checks.push(dns);
    checks.push(storage);
    checks
}

/// Parses `v3.16.4+g...` into (3, 16, 4).
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().trim_start_matches('v').split(['+', '-']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

async fn helm_check(helm: &PathBuf) -> Check {
    let out = tokio::process::Command::new(helm)
        .args(["version", "--template", "{{.Version}}"])
        .stdin(Stdio::null())
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            match parse_version(&v) {
                Some(found) if found >= MIN_HELM => check("helm", Outcome::Pass, v, None),
                _ => check(
                    "helm",
                    Outcome::Fail,
                    format!("{v} is older than 3.11.2"),
                    Some("install helm 3.11.2 or newer, or set HELM"),
                ),
            }
        }
        Ok(o) => check(
            "helm",
            Outcome::Fail,
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Some("set HELM to a working helm"),
        ),
        Err(e) => check(
            "helm",
            Outcome::Fail,
            format!("{}: {e}", helm.display()),
            Some("install helm 3.11.2 or newer, or set HELM"),
        ),
    }
}

async fn registry_check(r: &RegistryProbe) -> Check {
    let name = format!("{} registry {}", r.role, r.host);
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(15));
    if let Some(ca) = &r.ca_file {
        match std::fs::read(ca)
            .map_err(|e| e.to_string())
            .and_then(|pem| reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string()))
        {
            Ok(cert) => builder = builder.tls_certs_only([cert]),
            Err(e) => {
                return check(
                    &name,
                    Outcome::Fail,
                    format!("CA {}: {e}", ca.display()),
                    Some("fix ca_file"),
                );
            }
        }
    }
    let Ok(client) = builder.build() else {
        return check(&name, Outcome::Fail, "cannot build an HTTP client", None);
    };
    let mut req = client.get(format!("https://{}/v2/", r.host));
    if let Some(u) = &r.username {
        req = req.basic_auth(u, r.password.as_deref());
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => check(
            &name,
            Outcome::Pass,
            "reachable, credentials accepted",
            None,
        ),
        // Bearer-token registries answer /v2/ with a challenge; reaching them is what counts here.
        Ok(resp)
            if resp.status() == 401
                && resp
                    .headers()
                    .get("www-authenticate")
                    .is_some_and(|h| h.to_str().unwrap_or("").starts_with("Bearer")) =>
        {
            check(&name, Outcome::Pass, "reachable (token auth)", None)
        }
        Ok(resp) if resp.status() == 401 => check(
            &name,
            Outcome::Fail,
            "credentials refused (401)",
            Some("check the registry's username and password"),
        ),
        Ok(resp) => check(
            &name,
            Outcome::Fail,
            format!("answered {}", resp.status()),
            None,
        ),
        Err(e) => check(
            &name,
            Outcome::Fail,
            error_chain(&e),
            Some("check the host, the network path and ca_file"),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn helm_versions() {
        assert_eq!(super::parse_version("v3.16.4+g7877b45"), Some((3, 16, 4)));
        assert!(super::parse_version("v3.11.1").unwrap() < super::MIN_HELM);
        assert_eq!(super::parse_version("junk"), None);
    }
}
