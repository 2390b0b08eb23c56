//! The workspace every operation starts from: the spec (with its variables), where its
//! lockfile is kept, and the registries its images come from and go to.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wallaroo_spec::model::Method;
use wallaroo_spec::{Spec, VarInputs};
use wallaroo_state::StateStore;

use crate::error::OperationError;

/// What names a workspace: the spec file and its variables, as a command line gives them.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceOptions {
    /// The spec file.
    pub config: PathBuf,
    /// `NAME=VALUE` variables, in command-line order.
    pub vars: Vec<String>,
    /// Variable files, in command-line order.
    pub var_files: Vec<PathBuf>,
    /// Leave referrers (signatures, SBOMs, attestations) out of the image list.
    pub exclude_referrers: bool,
    /// Let destroy delete a namespace that holds PersistentVolumeClaims.
    pub delete_data: bool,
    /// The helm binary; by default `$HELM`, else `helm` on the PATH.
    pub helm: Option<PathBuf>,
    /// `--allow-external-image`: images the release may run from outside the private
    /// registry (besides `images { allow_external }`).
    pub allow_external: Vec<String>,
}

impl WorkspaceOptions {
    /// The helm binary: the one named, else `$HELM`, else `helm` on the PATH.
    pub fn helm_binary(&self) -> PathBuf {
        self.helm
            .clone()
            .or_else(|| std::env::var_os("HELM").map(PathBuf::from))
            .unwrap_or_else(|| "helm".into())
    }
}

/// Loads the spec the options name, with variables from every source (the command line,
/// variable files and `WALLAROO_VAR_*` in the environment).
pub fn load_spec(options: &WorkspaceOptions) -> Result<Spec, OperationError> {
    let mut inputs = VarInputs {
        env: VarInputs::env_from_process(),
        files: options.var_files.clone(),
        ..Default::default()
    };
    for v in &options.vars {
        inputs
            .cli
            .push(VarInputs::parse_cli(v).map_err(OperationError::Message)?);
    }
    Ok(wallaroo_spec::load(&options.config, &inputs)?)
}

/// What plan, apply and destroy work on.
pub struct Workspace {
    pub spec: Spec,
    pub store: StateStore,
    /// The registries images are read from, by host (the spec's source registry first).
    pub sources: crate::discover::Sources,
    /// The private registry, when the spec has one.
    pub target: Option<Arc<wallaroo_oci::Registry>>,
    /// The offline bundle the spec reads from (`source { bundle }`), indexed.
    pub bundle: Option<Arc<wallaroo_oci::bundle::Bundle>>,
    /// Leave referrers (signatures, SBOMs) out of the image list.
    pub(crate) exclude_referrers: bool,
    pub(crate) delete_data: bool,
    /// The helm binary that renders the chart and installs the release.
    pub helm: PathBuf,
    /// Images allowed to run from outside the private registry (the command line's and the
    /// spec's).
    pub(crate) allow_external: Vec<String>,
    /// The chart discovery read, and the Kubernetes version it rendered for: the air-gap
    /// check renders it again with the final values.
    pub(crate) chart: std::sync::Mutex<Option<(wallaroo_oci::release::Chart, Option<String>)>>,
    /// What discovery noticed that is worth a line in the plan.
    pub(crate) notes: std::sync::Mutex<Vec<String>>,
    /// What earlier renders of the chart found (see [`crate::render_cache`]).
    pub(crate) render_cache: crate::render_cache::RenderCache,
    /// The kinds of the objects the release renders (from the air-gap check's render, or
    /// the cache of it): what apply will ask the API server to create.
    pub(crate) rendered_kinds:
        std::sync::Mutex<Option<Vec<wallaroo_kube::permissions::RenderedKind>>>,
    /// The release's own Roles, ClusterRoles and bindings (from the same render): what
    /// the identity that applies must hold to create them.
    pub(crate) rendered_rbac: std::sync::Mutex<Option<Vec<serde_json::Value>>>,
    /// The release's rendered manifests, when this run rendered them (never written
    /// anywhere: they may hold secret values): what the API server's rehearsal sends.
    pub(crate) rendered_manifest: std::sync::Mutex<Option<String>>,
    /// What the release's next upgrade does first (apply's rehearsal sets it).
    pub(crate) before_upgrade: wallaroo_kube::BeforeUpgrades,
    /// The troubleshoot `Preflight` specs the release carries (from the air-gap check's
    /// render, or the cache of it).
    pub(crate) vendor_preflight_specs: std::sync::Mutex<Option<Vec<String>>>,
    /// Whether the bundle's signature and bytes were checked (once per operation).
    pub(crate) bundle_checked: tokio::sync::OnceCell<()>,
    /// The cluster, connected on first use: one client for the whole operation, and the
    /// reads its steps share (see [`wallaroo_kube::Cluster`]).
    cluster: tokio::sync::OnceCell<wallaroo_kube::Cluster>,
}

impl Workspace {
    /// The spec, its lockfile and its registries, without connecting anywhere yet.
    pub fn open(options: &WorkspaceOptions) -> Result<Workspace, OperationError> {
        let _phase = wallaroo_profile::enter("spec load");
        Workspace::from_spec(load_spec(options)?, options)
    }

    /// A workspace for a spec already loaded (`options.config` and its variables are not
    /// read again).
    pub fn from_spec(spec: Spec, options: &WorkspaceOptions) -> Result<Workspace, OperationError> {
        let store = state_store(&spec)?;
        let docker = wallaroo_oci::docker_config::DockerConfig::load_default()?;
        let mut sources = crate::discover::Sources::new();
        if let Some(source) = &spec.source
            && let Some(host) = &source.registry
        {
            let registry = registry(
                &spec,
                &docker,
                host,
                credentials(&source.username, &source.password),
                source.ca_file.as_ref(),
            )?;
            sources.insert(host.clone(), Arc::new(registry));
        }
        // With the kots method, `bundle` is KOTS's own air-gap bundle, which kots reads.
        let ours = spec.wallaroo.method == Method::Helm;
        let mut notes = Vec::new();
        let bundle = match spec
            .source
            .as_ref()
            .and_then(|s| s.bundle.as_ref())
            .filter(|_| ours)
        {
            Some(path) => {
                let bundle = Arc::new(wallaroo_oci::bundle::Bundle::open(
                    &spec.resolve_path(path),
                )?);
                // The bundle answers for every registry its images came from.
                for image in &bundle.manifest.images {
                    let (host, _, _) = wallaroo_model::split_reference(&image.source);
                    sources.insert(host, bundle.clone());
                }
                Some(bundle)
            }
            None => None,
        };
        let target = match &spec.registry {
            Some(private) => Some(Arc::new(registry(
                &spec,
                &docker,
                &private.host,
                credentials(&private.username, &private.password),
                private.ca_file.as_ref(),
            )?)),
            None => None,
        };
        let helm = match (&options.helm, std::env::var_os("HELM"), &bundle) {
            (Some(h), _, _) => h.clone(),
            (None, Some(h), _) => PathBuf::from(h),
            (None, None, Some(b)) => match bundle_helm(&spec, b)? {
                Some((path, note)) => {
                    notes.push(note);
                    path
                }
                None => "helm".into(),
            },
            (None, None, None) => "helm".into(),
        };
        Ok(Workspace {
            store,
            sources,
            target,
            bundle,
            delete_data: options.delete_data,
            helm,
            exclude_referrers: options.exclude_referrers,
            allow_external: options.allow_external.clone(),
            chart: std::sync::Mutex::new(None),
            notes: std::sync::Mutex::new(notes),
            bundle_checked: tokio::sync::OnceCell::new(),
            render_cache: crate::render_cache::RenderCache::beside(&spec.lockfile_path()),
            rendered_kinds: std::sync::Mutex::new(None),
            rendered_rbac: std::sync::Mutex::new(None),
            rendered_manifest: std::sync::Mutex::new(None),
            before_upgrade: Default::default(),
            vendor_preflight_specs: std::sync::Mutex::new(None),
            cluster: tokio::sync::OnceCell::new(),
            spec,
        })
    }

    /// The cluster of the current kubeconfig, connected once per workspace.
    pub async fn cluster(&self) -> Result<&wallaroo_kube::Cluster, OperationError> {
        self.cluster
            .get_or_try_init(|| async {
                let retry = self.spec.wallaroo.api_retry();
                Ok::<_, OperationError>(
                    wallaroo_kube::Cluster::connect_retrying(retry)
                        .await?
                        .sharing_reads(),
                )
            })
            .await
    }

    /// Drops the private registry's answers asked ahead of a plan's refresh (see
    /// [`wallaroo_oci::Registry::prefetch_manifest_digests`]) that no read took.
    pub(crate) fn forget_prefetched(&self) {
        if let Some(target) = &self.target {
            target.forget_prefetched();
        }
    }

    /// The cluster with nothing read yet: each operation (a plan, an apply, a destroy) reads
    /// the cluster afresh, then shares those reads among its own steps.
    pub(crate) async fn fresh_cluster(&self) -> Result<&wallaroo_kube::Cluster, OperationError> {
        let cluster = self.cluster().await?;
        cluster.forget_reads();
        Ok(cluster)
    }
}

pub(crate) fn credentials(
    user: &Option<String>,
    password: &Option<wallaroo_spec::Secret>,
) -> Option<wallaroo_oci::Credentials> {
    user.as_ref().map(|u| wallaroo_oci::Credentials {
        username: u.clone(),
        password: password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default(),
    })
}

/// A registry with the spec's credentials, else docker's (config.json or a credential helper).
pub(crate) fn registry(
    spec: &Spec,
    docker: &wallaroo_oci::docker_config::DockerConfig,
    host: &str,
    from_spec: Option<wallaroo_oci::Credentials>,
    ca_file: Option<&std::path::PathBuf>,
) -> Result<wallaroo_oci::Registry, OperationError> {
    let credentials = match from_spec {
        Some(c) => Some(c),
        None => docker.credentials(host)?,
    };
    Ok(wallaroo_oci::Registry::new(
        host,
        credentials,
        ca_file.map(|p| spec.resolve_path(p)).as_deref(),
    )?)
}

/// Where the spec keeps its lockfile: a local file, or the kubernetes backend.
pub fn state_store(spec: &Spec) -> Result<StateStore, OperationError> {
    match spec.state.backend {
        wallaroo_spec::model::StateBackend::Local => Ok(StateStore::new(spec.lockfile_path())),
        wallaroo_spec::model::StateBackend::Kubernetes => kubernetes_store(spec),
    }
}

/// The kubernetes backend the spec's `state` block names (whatever its `backend` says).
pub fn kubernetes_store(spec: &Spec) -> Result<StateStore, OperationError> {
    let st = &spec.state;
    let backend = wallaroo_kube::state_backend::KubernetesBackend::connect(
        wallaroo_kube::state_backend::KubernetesBackendConfig {
            namespace: st.namespace.clone().unwrap_or_else(|| "default".into()),
            secret_suffix: st
                .secret_suffix
                .clone()
                .unwrap_or_else(|| "wallaroo".into()),
            lease_duration: Duration::from_secs(st.lock_seconds.unwrap_or(30)),
        },
    )?;
    Ok(StateStore::remote(Arc::new(backend)))
}

/// The lockfile of the spec the options name, without building anything else.
pub fn store_for(options: &WorkspaceOptions) -> Result<StateStore, OperationError> {
    state_store(&load_spec(options)?)
}

/// The helm the bundle carries for this machine, written beside the lockfile (once per
/// digest), when the spec and the environment name none: its path, and the plan's note
/// saying which helm runs. With `source { key }`, the signed index must name that helm.
fn bundle_helm(
    spec: &Spec,
    bundle: &wallaroo_oci::bundle::Bundle,
) -> Result<Option<(PathBuf, String)>, OperationError> {
    Ok(bundle_tool(spec, bundle, "helm")?.map(|(path, what)| {
        let note = format!(
            "helm: the bundle's ({what}), at {}: $HELM names none",
            path.display()
        );
        (path, note)
    }))
}

/// The program `name` the bundle carries for this machine, written beside the lockfile once
/// per digest (and checked against the signed index with `source { key }`): its path, and
/// `version, digest` for messages.
pub(crate) fn bundle_tool(
    spec: &Spec,
    bundle: &wallaroo_oci::bundle::Bundle,
    name: &str,
) -> Result<Option<(PathBuf, String)>, OperationError> {
    let platform = wallaroo_oci::bundle::host_platform();
    let Some(tool) = bundle.tool(name, &platform) else {
        return Ok(None);
    };
    if let Some(key) = spec.source.as_ref().and_then(|s| s.key.as_ref()) {
        bundle.check_tool_signed(name, &platform, &bundle_key(spec, key)?)?;
    }
    let hex = tool.digest.trim_start_matches("sha256:");
    let dir = spec
        .lockfile_path()
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default()
        .join(".wallaroo-tools")
        .join(&hex[..16.min(hex.len())]);
    let path = dir.join(name);
    let whole = std::fs::metadata(&path).is_ok_and(|m| m.len() == tool.size);
    if !whole {
        bundle.extract_tool(tool, &path)?;
    }
    let version = tool
        .version
        .clone()
        .unwrap_or_else(|| "of unknown version".into());
    Ok(Some((path, format!("{version}, {}", tool.digest))))
}

/// The public key of `source { key }`.
fn bundle_key(
    spec: &Spec,
    key: &std::path::Path,
) -> Result<wallaroo_oci::verify::VerifyKey, OperationError> {
    let path = spec.resolve_path(key);
    let pem = std::fs::read_to_string(&path).map_err(|e| {
        OperationError::message(format!(
            "source {{ key }}: cannot read {}: {e}",
            path.display()
        ))
    })?;
    wallaroo_oci::verify::VerifyKey::from_pem(&path.display().to_string(), &pem)
        .map_err(|e| OperationError::message(format!("source {{ key }}: {e}")))
}

impl Workspace {
    /// With `source { key }`: the bundle's index signed by that key, and every byte of the
    /// bundle what the index names, checked once, before anything is read from it to push.
    pub(crate) async fn check_bundle(&self) -> Result<(), OperationError> {
        let (Some(bundle), Some(key)) = (
            &self.bundle,
            self.spec.source.as_ref().and_then(|s| s.key.as_ref()),
        ) else {
            return Ok(());
        };
        self.bundle_checked
            .get_or_try_init(|| async {
                let key = bundle_key(&self.spec, key)?;
                let path = bundle.path().to_path_buf();
                let report = tokio::task::spawn_blocking(move || {
                    wallaroo_oci::bundle::verify_with(&path, Some(&key), None)
                })
                .await
                .expect("verify does not panic")?;
                if !report.problems.is_empty() {
                    return Err(OperationError::message(format!(
                        "the bundle {} is not what its signed index names; nothing was pushed:\n{}",
                        bundle.path().display(),
                        report
                            .problems
                            .iter()
                            .map(|p| format!("  - {p}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    )));
                }
                self.notes.lock().expect("notes").push(format!(
                    "bundle {}: signed by {}, every byte as its index names",
                    bundle.path().display(),
                    report.signed_by.unwrap_or_default()
                ));
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// What discovery noticed that is worth a warning in the plan (each said once).
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().expect("notes"))
    }

    /// The signatures `verify { ... }` requires, with its keys read; `None` without the block.
    pub fn signatures(&self) -> Result<Option<wallaroo_oci::Signatures>, OperationError> {
        let Some(verify) = &self.spec.verify else {
            return Ok(None);
        };
        let mut keys = Vec::new();
        for file in &verify.keys {
            let path = self.spec.resolve_path(file);
            let pem = std::fs::read_to_string(&path).map_err(|e| {
                OperationError::message(format!("verify key {}: {e}", path.display()))
            })?;
            keys.push(
                wallaroo_oci::verify::VerifyKey::from_pem(&file.display().to_string(), &pem)
                    .map_err(OperationError::message)?,
            );
        }
        Ok(Some(wallaroo_oci::Signatures {
            keys,
            unsigned: verify.unsigned.iter().cloned().collect(),
        }))
    }
}
