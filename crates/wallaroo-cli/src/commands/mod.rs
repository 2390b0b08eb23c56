//! One module per subcommand.

pub mod apply;
pub mod completions;
pub mod fmt;
pub mod graph;
pub mod output;
pub mod plan;
pub mod preflight;
pub mod state;
pub mod validate;

use std::time::Duration;

use wallaroo_engine::{Address, DesiredSet, Engine, KindRegistry};

use wallaroo_spec::{Spec, VarInputs};
use wallaroo_state::StateStore;

use crate::args::Global;
use crate::report::Failure;

/// Loads the spec named by the global options, with variables from every source.
pub fn load_spec(global: &Global) -> Result<Spec, Failure> {
    let mut inputs = VarInputs {
        env: VarInputs::env_from_process(),
        files: global.var_files.clone(),
        ..Default::default()
    };
    for v in &global.vars {
        inputs
            .cli
            .push(VarInputs::parse_cli(v).map_err(Failure::Message)?);
    }
    Ok(wallaroo_spec::load(&global.config, &inputs)?)
}

/// What plan, apply and destroy work on.
pub struct Workspace {
    pub spec: Spec,
    pub desired: DesiredSet,
    pub store: StateStore,
    pub engine: Engine,
}

impl Workspace {
    /// The spec, its desired model and lockfile, and an engine with every kind, connected
    /// to the cluster of the current kubeconfig.
    /// `delete_data` lets destroy delete a namespace that holds PersistentVolumeClaims.
    pub async fn open(global: &Global, delete_data: bool) -> Result<Workspace, Failure> {
        let (spec, desired, store) = Workspace::offline(global)?;
        let engine = Engine::new(kinds(&spec, delete_data).await?);
        Ok(Workspace {
            spec,
            desired,
            store,
            engine,
        })
    }

    /// The spec, its desired model and lockfile, without connecting anywhere.
    pub fn offline(global: &Global) -> Result<(Spec, DesiredSet, StateStore), Failure> {
        let spec = load_spec(global)?;
        let desired = wallaroo_engine::desired::from_spec(&spec)
            .map_err(|e| Failure::message(e.to_string()))?;
        let store = StateStore::new(spec.lockfile_path());
        Ok((spec, desired, store))
    }
}

/// The resource kinds this build of wallaroo manages, set up from the spec.
pub async fn kinds(spec: &Spec, delete_data: bool) -> Result<KindRegistry, Failure> {
    let mut kinds = KindRegistry::new();
    kinds.register(std::sync::Arc::new(wallaroo_engine::value::StaticValueKind));
    if let Some(image) = image_kind(spec)? {
        kinds.register(std::sync::Arc::new(image));
    }
    let source = spec.source.as_ref();
    let chart_registry = source.and_then(|s| {
        Some(wallaroo_kube::RegistryLogin {
            host: s.registry.clone()?,
            username: s.username.clone()?,
            password: s.password.as_ref()?.expose().to_string(),
        })
    });
    let helm = std::env::var_os("HELM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "helm".into());
    // helm talks to the cluster kube-rs found: the first file of KUBECONFIG, when set.
    let kubeconfig = std::env::var("KUBECONFIG").ok().and_then(|k| {
        k.split(':')
            .find(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
    });
    let config = wallaroo_kube::ClusterConfig {
        helm,
        kubeconfig,
        chart_registry,
        ca_file: source
            .and_then(|s| s.ca_file.as_ref())
            .map(|p| spec.resolve_path(p)),
        keycloak_url: spec.wallaroo.keycloak_url(),
        namespace: spec.wallaroo.namespace.clone(),
        output_timeout: Duration::from_secs(300),
        delete_data,
    };
    wallaroo_kube::register(&mut kinds, config)
        .await
        .map_err(|e| Failure::message(e.to_string()))?;
    Ok(kinds)
}

/// The image kind: it reads from the spec's vendor registry and writes to the private one.
fn image_kind(spec: &Spec) -> Result<Option<wallaroo_oci::ImageKind>, Failure> {
    let Some(private) = &spec.registry else {
        return Ok(None);
    };
    let credentials = |user: &Option<String>, password: &Option<wallaroo_spec::Secret>| {
        user.as_ref().map(|u| wallaroo_oci::Credentials {
            username: u.clone(),
            password: password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default(),
        })
    };
    let oci = |e: wallaroo_oci::OciError| Failure::message(e.to_string());
    let target = wallaroo_oci::Registry::new(
        &private.host,
        credentials(&private.username, &private.password),
        private
            .ca_file
            .as_ref()
            .map(|p| spec.resolve_path(p))
            .as_deref(),
    )
    .map_err(oci)?;
    let mut sources = std::collections::BTreeMap::new();
    if let Some(source) = &spec.source
        && let Some(host) = &source.registry
    {
        let registry = wallaroo_oci::Registry::new(
            host,
            credentials(&source.username, &source.password),
            source
                .ca_file
                .as_ref()
                .map(|p| spec.resolve_path(p))
                .as_deref(),
        )
        .map_err(oci)?;
        sources.insert(host.clone(), std::sync::Arc::new(registry));
    }
    Ok(Some(wallaroo_oci::ImageKind {
        sources,
        target: std::sync::Arc::new(target),
    }))
}

/// The lockfile of the spec given with -c, without evaluating anything else.
pub fn store_for(global: &Global) -> Result<StateStore, Failure> {
    let spec = load_spec(global)?;
    Ok(StateStore::new(spec.lockfile_path()))
}

/// Parses `--target` addresses.
pub fn targets(raw: &[String]) -> Result<Vec<Address>, Failure> {
    raw.iter()
        .map(|t| {
            t.parse()
                .map_err(|e: wallaroo_engine::AddressError| Failure::message(e.to_string()))
        })
        .collect()
}

/// `30s`, `5m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, Failure> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| Failure::message(format!("`{text}` is not a duration; write e.g. 30s, 5m")))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "ms" => return Ok(Duration::from_millis(n)),
        _ => {
            return Err(Failure::message(format!(
                "`{text}` is not a duration; write e.g. 30s, 5m"
            )));
        }
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(super::parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(super::parse_duration("0").unwrap().as_secs(), 0);
        assert!(super::parse_duration("soon").is_err());
    }
}
