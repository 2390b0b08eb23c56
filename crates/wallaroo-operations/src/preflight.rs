//! `preflight` (also the start of every plan): what must hold before an apply can work.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub use wallaroo_kube::preflight::{Check, Outcome};
use wallaroo_kube::preflight::{PreflightInput, RegistryProbe};
use wallaroo_kube::pullcheck::{PoolNodes, PullCheckInput};
use wallaroo_spec::Spec;

use crate::error::OperationError;
use crate::workspace::Workspace;

/// How long the pull check waits for every node to pull the probe.
const PULL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the checks of a workspace's spec, the pull check included.
pub async fn checks(ws: &Workspace) -> Result<Vec<Check>, OperationError> {
    checks_on(
        &ws.spec,
        &ws.helm,
        ws.cluster().await?,
        ws.target.as_deref(),
    )
    .await
}

/// [`checks`] through a cluster connection the rest of the operation shares. The pull check
/// runs when `target` (the private registry, to push the probe to) is given and the spec
/// does not turn it off.
pub(crate) async fn checks_on(
    spec: &Spec,
    helm: &Path,
    cluster: &wallaroo_kube::Cluster,
    target: Option<&wallaroo_oci::Registry>,
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
    let (mut checks, pulls) = tokio::join!(
        wallaroo_kube::preflight::run(cluster, &input),
        pull_check(spec, cluster, target)
    );
    checks.extend(pulls);
    Ok(checks)
}

/// Whether plans run the pull check: a private registry to push the probe to (`has_target`),
/// the check on, and nodepools to pull on.
pub(crate) fn pull_check_runs(spec: &Spec, has_target: bool) -> bool {
    has_target && !spec.nodepool.is_empty() && spec.registry.as_ref().is_some_and(|r| r.pull_check)
}

/// The pull check ([`wallaroo_kube::pullcheck`]): pushes the probe into the private
/// registry, then has one node of each pool pull it.
async fn pull_check(
    spec: &Spec,
    cluster: &wallaroo_kube::Cluster,
    target: Option<&wallaroo_oci::Registry>,
) -> Vec<Check> {
    let (Some(registry), Some(target)) = (&spec.registry, target) else {
        return Vec::new();
    };
    if !pull_check_runs(spec, true) {
        return Vec::new();
    }
    let repo = format!(
        "{}/{}",
        registry.namespace.trim_matches('/'),
        wallaroo_oci::probe::PROBE_NAME
    );
    let image = match wallaroo_oci::probe::push_probe(target, &repo, &spec.images.platforms).await {
        Ok(image) => image,
        Err(e) => {
            return vec![Check {
                name: "pull from the private registry".into(),
                outcome: Outcome::Fail,
                detail: format!("cannot push the pull check's image: {e}"),
                hint: Some(
                    "the registry check above says why; or set `registry { pull_check = false }`"
                        .into(),
                ),
            }];
        }
    };
    let pools = spec
        .nodepool
        .iter()
        .map(|(name, pool)| {
            let nodes = if pool.nodes.is_empty() {
                PoolNodes::Selector(wallaroo_kube::selector_text(&pool.selector))
            } else {
                PoolNodes::Names(pool.nodes.clone())
            };
            (name.clone(), nodes)
        })
        .collect();
    let input = PullCheckInput {
        pools,
        image,
        registry: registry.host.clone(),
        pull_secret: wallaroo_model::pull_secret_config(registry),
        pull_secret_name: wallaroo_model::PULL_SECRET.into(),
        namespace: spec.wallaroo.namespace.clone(),
        ca_file: registry
            .ca_file
            .as_ref()
            .map(|p| spec.resolve_path(p).display().to_string()),
        platforms: spec.images.platforms.clone(),
        timeout: PULL_TIMEOUT,
    };
    wallaroo_kube::pullcheck::run(cluster, &input).await
}

impl Workspace {
    /// The vendor's troubleshoot preflights: the `Preflight` specs the release carries and
    /// those the spec names, run with the real `preflight` program. Every analyzer's outcome
    /// is a check; a failing one (or a program that cannot run them) stops the plan, with
    /// [`OperationError::Preflight`].
    pub(crate) async fn vendor_preflights(&self) -> Result<Vec<Check>, OperationError> {
        let t = &self.spec.troubleshoot;
        if !t.preflights {
            return Ok(Vec::new());
        }
        let mut specs = self
            .vendor_preflight_specs
            .lock()
            .expect("specs lock")
            .clone()
            .unwrap_or_default();
        for file in &t.preflight_specs {
            let path = self.spec.resolve_path(file);
            specs.push(std::fs::read_to_string(&path).map_err(|e| {
                OperationError::message(format!(
                    "cannot read the preflight spec {} (troubleshoot {{ preflight_specs }}): {e}",
                    path.display()
                ))
            })?);
        }
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let configured = t
            .preflight_program
            .as_ref()
            .map(|p| self.spec.resolve_path(p));
        let failed = |detail: String, hint: &str| {
            OperationError::Preflight(vec![Check {
                name: "vendor preflight".into(),
                outcome: Outcome::Fail,
                detail,
                hint: Some(hint.into()),
            }])
        };
        // Where the spec and this machine name none, the bundle's own.
        let mut program = wallaroo_kube::troubleshoot::find_program(configured.as_deref());
        if program.is_none()
            && let Some(bundle) = &self.bundle
            && let Some((path, what)) =
                crate::workspace::bundle_tool(&self.spec, bundle, "preflight")?
        {
            self.notes.lock().expect("notes").push(format!(
                "preflight: the bundle's ({what}), at {}",
                path.display()
            ));
            program = Some(path);
        }
        let Some(program) = program else {
            return Err(failed(
                format!(
                    "the release carries {} troubleshoot preflight spec(s), and the `preflight` program is not installed",
                    specs.len()
                ),
                "install troubleshoot's `preflight` (the air-gap guide's `kubectl preflight`), name it with troubleshoot { preflight_program } or WALLAROO_PREFLIGHT, or set troubleshoot { preflights = false }",
            ));
        };
        let checks = wallaroo_kube::troubleshoot::run_preflight(
            &program,
            crate::prepare::helm_kubeconfig().as_deref(),
            &specs,
        )
        .await
        .map_err(|e| failed(e, "the vendor's preflight program could not run its checks"))?;
        // An analyzer's message is the vendor's text, templated from the release's values:
        // no secret of the spec goes on from it.
        let secrets = wallaroo_model::sensitive::secret_strings(&self.spec);
        let scrub = |text: &str| {
            secrets
                .iter()
                .filter(|s| !s.is_empty())
                .fold(text.to_string(), |t, s| {
                    t.replace(s.as_str(), wallaroo_spec::REDACTED)
                })
        };
        let checks: Vec<Check> = checks
            .into_iter()
            .map(|c| Check {
                name: scrub(&c.name),
                detail: scrub(&c.detail),
                ..c
            })
            .collect();
        if checks.iter().any(|c| c.outcome == Outcome::Fail) {
            return Err(OperationError::Preflight(checks));
        }
        Ok(checks)
    }
}
