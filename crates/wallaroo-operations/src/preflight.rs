//! `preflight` (also the start of every plan): what must hold before an apply can work.

use std::collections::BTreeMap;
use std::path::Path;

pub use wallaroo_kube::preflight::{Check, Outcome};
use wallaroo_kube::preflight::{PreflightInput, RegistryProbe};
use wallaroo_spec::Spec;

use crate::error::OperationError;

/// Runs the checks for a spec, with the helm binary the release will be installed with.
pub async fn checks(spec: &Spec, helm: &Path) -> Result<Vec<Check>, OperationError> {
    checks_on(spec, helm, &wallaroo_kube::Cluster::connect().await?).await
}

/// [`checks`] through a cluster connection the rest of the operation shares.
pub(crate) async fn checks_on(
    spec: &Spec,
    helm: &Path,
    cluster: &wallaroo_kube::Cluster,
) -> Result<Vec<Check>, OperationError> {
    let mut nodes = BTreeMap::new();
    let mut selectors = BTreeMap::new();
    for (name, pool) in &spec.nodepool {
        if pool.nodes.is_empty() {
            selectors.insert(name.clone(), pool.selector.clone());
        } else {
            nodes.insert(name.clone(), pool.nodes.clone());
        }
    }
    let mut registries = Vec::new();
    if let Some(r) = &spec.registry {
        registries.push(RegistryProbe {
            role: "private",
            host: r.host.clone(),
            username: r.username.clone(),
            password: r.password.as_ref().map(|p| p.expose().to_string()),
            ca_file: r.ca_file.as_ref().map(|p| spec.resolve_path(p)),
        });
    }
    if let Some(s) = &spec.source
        && let Some(host) = &s.registry
    {
        registries.push(RegistryProbe {
            role: "vendor",
            host: host.clone(),
            username: s.username.clone(),
            password: s.password.as_ref().map(|p| p.expose().to_string()),
            ca_file: s.ca_file.as_ref().map(|p| spec.resolve_path(p)),
        });
    }
    let host = spec.wallaroo.service_host("api");
    let input = PreflightInput {
        helm: helm.to_path_buf(),
        nodes,
        selectors,
        registries,
        host,
    };
    Ok(wallaroo_kube::preflight::run(cluster, &input).await)
}
