//! Preparing a plan: the images (found and pinned, or a saved plan's), the desired model
//! from the Wallaroo model, and an engine with every resource kind registered. The one place
//! where kinds and the engine are built.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wallaroo_engine::{DesiredSet, Engine, KindRegistry, Plan, PlanOptions};
use wallaroo_model::MirrorImage;
use wallaroo_spec::Spec;
use wallaroo_spec::model::Method;
use wallaroo_state::Lockfile;

use crate::error::OperationError;
use crate::workspace::Workspace;

/// Where a plan's images come from.
pub enum Images<'a> {
    /// A saved plan's, exactly (its pins too).
    Saved(&'a Plan),
    /// The release's chart and the spec, pinned from the lockfile, else resolved now (all of
    /// them with `refresh_pins`).
    Resolve { refresh_pins: bool },
    /// The spec's extras only, unpinned, reading nothing (destroy keeps images anyway).
    Unread,
}

/// What a plan works from: the images to mirror (found, pinned), the desired model, and an
/// engine with every kind.
pub struct Prepared {
    pub images: Vec<MirrorImage>,
    pub desired: DesiredSet,
    pub engine: Engine,
    /// The image kind, for what its copies did.
    pub mirror: Option<Arc<wallaroo_oci::ImageKind>>,
    /// The vendor's troubleshoot preflights, all passed or warned (a failure stops the
    /// plan before this is made).
    pub vendor_checks: Vec<crate::preflight::Check>,
}

impl Workspace {
    /// The images, desired model and engine for a plan.
    ///
    /// `scope` is the plan's mode, `--target` and `--exclude`: checks that only the release
    /// needs (the air-gap render, the vendor's preflights) run only when the release is in
    /// scope. The permission check comes after the plan, for what it changes
    /// ([`Workspace::permissions_for`]).
    pub async fn prepare(
        &self,
        state: Option<&Lockfile>,
        images: Images<'_>,
        scope: &PlanOptions,
    ) -> Result<Prepared, OperationError> {
        self.prepare_with(state, images, scope, Checks::All).await
    }

    /// [`Workspace::prepare`] with only the checks `checks` asks for.
    pub async fn prepare_with(
        &self,
        state: Option<&Lockfile>,
        images: Images<'_>,
        scope: &PlanOptions,
        checks: Checks,
    ) -> Result<Prepared, OperationError> {
        // A signed bundle is checked whole before anything is read from it.
        wallaroo_profile::within("bundle check", self.check_bundle()).await?;
        let resolved = !matches!(images, Images::Unread);
        let (images, sources) = match images {
            Images::Saved(plan) => {
                let images = wallaroo_model::plan_images(plan).map_err(|e| {
                    OperationError::message(format!("the saved plan's images cannot be read: {e}"))
                })?;
                // The chart (kept beside the lockfile since the plan was made): the air-gap
                // check and the API server's rehearsal render it again before apply.
                self.discover_release(false).await?;
                let sources = self.sources_for(&images)?;
                (images, sources)
            }
            Images::Resolve { refresh_pins } => self.images(state, refresh_pins).await?,
            Images::Unread => {
                let images = wallaroo_model::image_sources(&self.spec, &BTreeMap::new());
                let sources = self.sources_for(&images)?;
                (images, sources)
            }
        };
        let mut desired = wallaroo_model::from_spec_with(&self.spec, &images)?;
        let mut vendor_checks = Vec::new();
        let mut kinds = cluster_kinds(
            &self.spec,
            self.delete_data,
            &self.helm,
            self.cluster().await?,
            self.before_upgrade.clone(),
        )
        .await?;
        let signatures = self.signatures()?;
        if resolved && let Some(s) = &signatures {
            wallaroo_profile::within(
                wallaroo_profile::SIGNATURES,
                verify_planned(&mut desired, s, &sources),
            )
            .await;
        }
        desired.warnings.extend(self.take_notes());
        if resolved {
            if checks == Checks::All {
                self.no_shared_nodes().await?;
            }
            let in_scope = Engine::scope(&desired, state, scope)?;
            // A run that leaves the release alone (e.g. `--target image`) needs neither its
            // air-gap render nor the vendor's preflights.
            let release = in_scope.iter().any(|a| {
                desired
                    .resources
                    .get(a)
                    .is_some_and(|r| RELEASE_KINDS.contains(&r.kind.as_str()))
            });
            if release {
                wallaroo_profile::within(
                    "values the chart reads",
                    self.drop_unread_values(&mut desired),
                )
                .await?;
                let checked =
                    wallaroo_profile::within("air-gap check", self.air_gap(&mut desired, &images))
                        .await;
                match checked {
                    Err(e) if checks == Checks::RenderOnly => desired.warnings.push(format!(
                        "the air-gap check did not pass (a plan says why): {e}"
                    )),
                    other => other?,
                }
            }
            if release && checks == Checks::All {
                vendor_checks =
                    wallaroo_profile::within("vendor preflights", self.vendor_preflights()).await?;
            }
        }
        let mirror = self.target.as_ref().map(|target| {
            // Large uploads in progress are recorded beside the lockfile, so that the
            // next run after a kill resumes them.
            let journal = self
                .spec
                .lockfile_path()
                .parent()
                .map(|d| d.join(".wallaroo-uploads"))
                .unwrap_or_else(|| ".wallaroo-uploads".into());
            let kind = wallaroo_oci::ImageKind::new(sources, target.clone())
                .with_journal(journal)
                .with_earlier_images(earlier_images(state, target.host()));
            Arc::new(match signatures {
                Some(s) => kind.with_signatures(s),
                None => kind,
            })
        });
        if let Some(m) = &mirror {
            kinds.register(m.clone());
        }
        Ok(Prepared {
            images,
            desired,
            engine: Engine::new(kinds),
            mirror,
            vendor_checks,
        })
    }
}

/// Which checks [`Workspace::prepare_with`] runs besides rendering the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Every check a plan runs (nodepools, the air-gap guarantee, the vendor's preflights).
    All,
    /// Only the release's render (what `wallaroo rbac` needs): nothing that asks the cluster
    /// to be ready for the install, and an air-gap problem is a warning.
    RenderOnly,
}

/// The kinds that install the release: a plan touching none of them needs no release checks.
const RELEASE_KINDS: &[&str] = &["helm_release", "kots_app"];

/// The cluster's resource kinds (and static values), set up from the spec.
pub async fn cluster_kinds(
    spec: &Spec,
    delete_data: bool,
    helm: &std::path::Path,
    cluster: &wallaroo_kube::Cluster,
    before_upgrade: wallaroo_kube::BeforeUpgrades,
) -> Result<KindRegistry, OperationError> {
    let mut kinds = KindRegistry::new();
    kinds.register(Arc::new(wallaroo_engine::value::StaticValueKind));
    // helm pulls the chart from the private registry when it is mirrored there.
    let mirrored_chart = spec.wallaroo.method == Method::Helm
        && (wallaroo_model::chart_source(spec).is_some()
            || spec.source.as_ref().is_some_and(|s| s.bundle.is_some()));
    let (chart_login, ca_file) = match (&spec.registry, &spec.source) {
        (Some(private), _) if mirrored_chart => (
            private
                .username
                .as_ref()
                .map(|u| wallaroo_kube::RegistryLogin {
                    host: private.host.clone(),
                    username: u.clone(),
                    password: private
                        .password
                        .as_ref()
                        .map(|p| p.expose().to_string())
                        .unwrap_or_default(),
                }),
            private.ca_file.as_ref(),
        ),
        (_, Some(s)) => (
            s.registry.clone().and_then(|host| {
                Some(wallaroo_kube::RegistryLogin {
                    host,
                    username: s.username.clone()?,
                    password: s.password.as_ref()?.expose().to_string(),
                })
            }),
            s.ca_file.as_ref(),
        ),
        _ => (None, None),
    };
    let kubeconfig = helm_kubeconfig();
    let config = wallaroo_kube::ClusterConfig {
        helm: helm.to_path_buf(),
        kubeconfig,
        chart_registry: chart_login,
        ca_file: ca_file.map(|p| spec.resolve_path(p)),
        keycloak_url: spec.wallaroo.keycloak_url(),
        namespace: spec.wallaroo.namespace.clone(),
        output_timeout: Duration::from_secs(300),
        delete_data,
        ignore_drift: spec.helm.ignore_drift.clone(),
        before_upgrade,
        kots_binary: spec
            .kots
            .as_ref()
            .map_or("kubectl-kots", |k| k.binary.as_str())
            .into(),
    };
    wallaroo_kube::register_with(&mut kinds, cluster.clone(), config);
    Ok(kinds)
}

/// Verifies, while planning, the signature of every image that must carry one, so that the
/// plan shows `signature = "verified with KEY"` or why not (`NOT VERIFIED: ...`); apply
/// verifies again right before it copies.
async fn verify_planned(
    desired: &mut wallaroo_engine::DesiredSet,
    signatures: &wallaroo_oci::Signatures,
    sources: &BTreeMap<String, Arc<dyn wallaroo_oci::ImageSource>>,
) {
    use futures_util::StreamExt;
    let todo: Vec<(wallaroo_engine::Address, String, String, String)> = desired
        .resources
        .values()
        .filter(|r| {
            r.kind == "image"
                && r.attrs
                    .get("signature")
                    .and_then(|v| v.as_str())
                    .is_some_and(|v| v.starts_with("must verify"))
        })
        .filter_map(|r| {
            let text = |k: &str| r.attrs.get(k).and_then(|v| v.as_str()).map(String::from);
            Some((
                r.address.clone(),
                text("source")?,
                text("origin").unwrap_or_default(),
                text("source_digest")?,
            ))
        })
        .collect();
    let results: Vec<(wallaroo_engine::Address, String)> = futures_util::stream::iter(todo)
        .map(|(addr, source, origin, digest)| async move {
            let (host, _, _) = wallaroo_model::split_reference(&source);
            let shown = match sources.get(&host) {
                Some(src) => match signatures
                    .check(src.as_ref(), &source, &origin, &digest)
                    .await
                {
                    Ok(Some(key)) => format!("verified with {key}"),
                    Ok(None) => "not checked".to_string(),
                    Err(e) => format!("NOT VERIFIED: {e}"),
                },
                None => format!("NOT VERIFIED: no source registry {host}"),
            };
            (addr, shown)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (addr, shown) in results {
        if let Some(r) = desired.resources.get_mut(&addr) {
            r.attrs.insert("signature".into(), serde_json::json!(shown));
        }
    }
}

impl Workspace {
    /// Refuses a plan in which two nodepools would own one node: a node listed by one pool and
    /// matched by another's selector, or matched by two selectors (names alone are checked by
    /// `validate`).
    async fn no_shared_nodes(&self) -> Result<(), OperationError> {
        let pools: BTreeMap<String, (Vec<String>, BTreeMap<String, String>)> = self
            .spec
            .nodepool
            .iter()
            .map(|(name, p)| (name.clone(), (p.nodes.clone(), p.selector.clone())))
            .collect();
        if pools.len() < 2 || pools.values().all(|(_, s)| s.is_empty()) {
            return Ok(());
        }
        let shared = wallaroo_kube::shared_nodes(self.cluster().await?, &pools)
            .await
            .map_err(|e| OperationError::message(format!("listing nodes: {e}")))?;
        if shared.is_empty() {
            return Ok(());
        }
        Err(OperationError::message(format!(
            "nodes claimed by two nodepools (both would own their labels, and every apply would flip them):\n{}\nNarrow the selectors so that each node is in one pool.",
            shared
                .iter()
                .map(|s| format!(
                    "  - node \"{}\": nodepool \"{}\" and nodepool \"{}\"",
                    s.node, s.pools.0, s.pools.1
                ))
                .collect::<Vec<_>>()
                .join("\n")
        )))
    }
}

/// The kubeconfig helm must be given to talk to the cluster kube-rs found: the first file of
/// `KUBECONFIG`, when set (helm reads only one).
pub(crate) fn helm_kubeconfig() -> Option<std::path::PathBuf> {
    std::env::var("KUBECONFIG").ok().and_then(|k| {
        k.split(':')
            .find(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
    })
}

/// The images the lockfile says earlier runs mirrored into the registry at `host`, as
/// (repository, manifest digest): where a blob this run needs may already be.
fn earlier_images(state: Option<&Lockfile>, host: &str) -> Vec<(String, String)> {
    let Some(state) = state else {
        return Vec::new();
    };
    state
        .resources
        .values()
        .filter(|r| r.kind == "image")
        .filter_map(|r| {
            let target = r.attributes.get("target")?.as_str()?;
            let digest = r.attributes.get("digest")?.as_str()?;
            let (h, repo, _) = wallaroo_model::split_reference(target);
            (h == host).then(|| (repo, digest.to_string()))
        })
        .collect()
}
