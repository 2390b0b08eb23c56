//! `preflight` (also the start of every plan): what must hold before an apply can work.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub use wallaroo_kube::preflight::{Check, Outcome};
use wallaroo_kube::preflight::{PreflightInput, RegistryProbe};
use wallaroo_kube::pullcheck::{PoolNodes, PullCheckInput};
use wallaroo_spec::Spec;

use crate::error::OperationError;
use crate::render_cache::RenderCache;
use crate::workspace::Workspace;

/// How long the pull check waits for every node to pull the probe.
const PULL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the checks of a workspace's spec, the pull check included (always, whenever it last
/// passed).
pub async fn checks(ws: &Workspace) -> Result<Vec<Check>, OperationError> {
    let mut checks = checks_on(
        &ws.spec,
        &ws.helm,
        ws.cluster().await?,
        ws.target.as_deref(),
        PullWhen {
            record: &ws.render_cache,
            always: true,
        },
    )
    .await?;
    if ws.target.is_some() {
        checks.push(mirror_size(ws).await);
    }
    Ok(checks)
}

/// What the release's images weigh: the room the private registry's volume needs for a first
/// mirror (an upgrade's plan says what it would send beyond what is there).
async fn mirror_size(ws: &Workspace) -> Check {
    const NAME: &str = "mirror size";
    let state = match ws.store.load() {
        Ok(state) => state,
        Err(e) => {
            return Check {
                name: NAME.into(),
                outcome: Outcome::Warn,
                detail: format!("not weighed: {e}"),
                hint: None,
            };
        }
    };
    match ws.images(state.as_ref(), false).await {
        Ok((images, sources)) => {
            let (weighed, bytes) =
                crate::transfer::release_weight(&images, &sources, &ws.spec.images.platforms).await;
            Check {
                name: NAME.into(),
                outcome: Outcome::Pass,
                detail: format!(
                    "the release's {weighed} image(s) weigh {} in all (each blob once): the private registry's volume needs that much room for a first mirror; a plan says what an upgrade would send",
                    wallaroo_oci::size_text(bytes)
                ),
                hint: None,
            }
        }
        Err(e) => Check {
            name: NAME.into(),
            outcome: Outcome::Warn,
            detail: format!("not weighed: the release's images could not be listed: {e}"),
            hint: None,
        },
    }
}

/// When the pull check runs, and where the last one that passed is recorded.
#[derive(Clone, Copy)]
pub(crate) struct PullWhen<'a> {
    /// Where the last pass is kept (beside the lockfile, with the render cache).
    pub record: &'a RenderCache,
    /// Run it whatever the record says (`wallaroo preflight`); a plan runs it only when it
    /// is due.
    pub always: bool,
}

/// [`checks`] through a cluster connection the rest of the operation shares. The pull check
/// runs when `target` (the private registry, to push the probe to) is given, the spec does
/// not turn it off, and it is due (see [`PullWhen`]).
pub(crate) async fn checks_on(
    spec: &Spec,
    helm: &Path,
    cluster: &wallaroo_kube::Cluster,
    target: Option<&wallaroo_oci::Registry>,
    when: PullWhen<'_>,
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
        pull_check(spec, cluster, target, when)
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
/// registry, then has one node of each pool pull it. A plan skips it while its last pass
/// stands (nothing it depends on changed, younger than `pull_check_max_age`), and when the
/// identity may not create its namespace and pods (a read-only plan: a warning naming what
/// it would need, never a write).
async fn pull_check(
    spec: &Spec,
    cluster: &wallaroo_kube::Cluster,
    target: Option<&wallaroo_oci::Registry>,
    when: PullWhen<'_>,
) -> Vec<Check> {
    const NAME: &str = "pull from the private registry";
    let (Some(registry), Some(target)) = (&spec.registry, target) else {
        return Vec::new();
    };
    if !pull_check_runs(spec, true) {
        return Vec::new();
    }
    let pools: BTreeMap<String, PoolNodes> = spec
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
    let pull_secret = wallaroo_model::pull_secret_config(registry);
    let key = record_key(spec, cluster, when.record, &pools, pull_secret.as_deref()).await;
    let max_age = registry.pull_check_max_age();
    let now = unix_now();
    if !when.always
        && let Some(key) = &key
        && let Some(last) = when.record.load::<PullPassed>(PULL_RECORD, key)
        && now.saturating_sub(last.passed_at) < max_age.as_secs()
    {
        return vec![Check {
            name: NAME.into(),
            outcome: Outcome::Pass,
            detail: format!(
                "passed {} ({} ago); nothing a pull depends on changed since (registry, CA, pull secret, the pools' nodes, platforms), so it runs again after {} or on a change (`wallaroo preflight` runs it now)",
                wallaroo_state::format_utc(last.passed_at),
                age(now.saturating_sub(last.passed_at)),
                registry.pull_check_max_age,
            ),
            hint: None,
        }];
    }
    // A plan must never need more than read rights: an identity that may not create the
    // check's namespace and pods (a drift cron job, a pull request's CI) skips it.
    let needs = wallaroo_kube::permissions::pull_check_needs();
    if let Ok(lacking) = wallaroo_kube::permissions::missing(cluster, &needs).await
        && !lacking.is_empty()
    {
        return vec![Check {
            name: NAME.into(),
            outcome: Outcome::Warn,
            detail: format!(
                "not run: it creates a namespace with a Secret and a pod per pool, and this identity may not {} (a plan that only reads)",
                lacking
                    .iter()
                    .map(|n| format!("{} {}", n.verb, n.resource))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            hint: Some(
                "run `wallaroo preflight` (or a plan) as the identity that applies; its last pass is then kept beside the lockfile"
                    .into(),
            ),
        }];
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
                name: NAME.into(),
                outcome: Outcome::Fail,
                detail: format!("cannot push the pull check's image: {e}"),
                hint: Some(
                    "the registry check above says why; or set `registry { pull_check = false }`"
                        .into(),
                ),
            }];
        }
    };
    let input = PullCheckInput {
        pools,
        image,
        registry: registry.host.clone(),
        pull_secret,
        pull_secret_name: wallaroo_model::desired::pull_secret_name(registry),
        namespace: spec.wallaroo.namespace.clone(),
        ca_file: registry
            .ca_file
            .as_ref()
            .map(|p| spec.resolve_path(p).display().to_string()),
        platforms: spec.images.platforms.clone(),
        timeout: PULL_TIMEOUT,
    };
    let checks = wallaroo_kube::pullcheck::run(cluster, &input).await;
    let passed = !checks.is_empty() && checks.iter().all(|c| c.outcome == Outcome::Pass);
    if passed && let Some(key) = &key {
        when.record
            .store(PULL_RECORD, key, &PullPassed { passed_at: now });
    }
    checks
}

/// The record of the last pull check that passed: when. Its key is a salted hash of what a
/// pull depends on, so a change to any of them finds no record.
#[derive(serde::Serialize, serde::Deserialize)]
struct PullPassed {
    /// Seconds since the Unix epoch.
    passed_at: u64,
}

const PULL_RECORD: &str = "pull-check";

/// The key of what a pull depends on: the registry's host and CA (its bytes), the pull
/// secret, every pool's nodes (by name; a selector's as the API server lists them now) and
/// the platforms. `None` when the record cannot be kept (then the check always runs).
async fn record_key(
    spec: &Spec,
    cluster: &wallaroo_kube::Cluster,
    record: &RenderCache,
    pools: &BTreeMap<String, PoolNodes>,
    pull_secret: Option<&str>,
) -> Option<String> {
    let registry = spec.registry.as_ref()?;
    let ca = match &registry.ca_file {
        Some(p) => std::fs::read(spec.resolve_path(p)).ok()?,
        None => Vec::new(),
    };
    let mut nodes = String::new();
    for (pool, which) in pools {
        let mut names = match which {
            PoolNodes::Names(names) => names.clone(),
            PoolNodes::Selector(s) => cluster
                .nodes_matching(s)
                .await
                .ok()?
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect(),
        };
        names.sort();
        nodes.push_str(&format!("{pool}={};", names.join(",")));
    }
    let platforms = spec.images.platforms.join(",");
    record.key_of(&[
        registry.host.as_bytes(),
        &ca,
        pull_secret.unwrap_or("").as_bytes(),
        nodes.as_bytes(),
        platforms.as_bytes(),
    ])
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `42 s`, `17 min`, `5 h`, `3 days`.
fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 2 * 86400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86400),
    }
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
