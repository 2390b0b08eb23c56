//! One module per subcommand.

pub mod apply;
pub mod bundle;
pub mod completions;
pub mod fmt;
pub mod graph;
pub mod images;
pub mod output;
pub mod plan;
pub mod preflight;
pub mod state;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wallaroo_model::{ImagePin, MirrorImage};
use wallaroo_engine::{Address, DesiredSet, Engine, KindRegistry, Plan};

use wallaroo_spec::model::Method;
use wallaroo_spec::{Spec, VarInputs};
use wallaroo_state::{Lockfile, StateStore};

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
    pub store: StateStore,
    /// The registries images are read from, by host (the spec's source registry first).
    pub sources: BTreeMap<String, Arc<dyn wallaroo_oci::ImageSource>>,
    /// The private registry, when the spec has one.
    pub target: Option<Arc<wallaroo_oci::Registry>>,
    /// The offline bundle the spec reads from (`source { bundle }`), indexed.
    pub bundle: Option<Arc<wallaroo_oci::bundle::Bundle>>,
    /// Leave referrers (signatures, SBOMs) out of the image list.
    exclude_referrers: bool,
    delete_data: bool,
}

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
}

impl Workspace {
    /// The spec, its lockfile and its registries, without connecting anywhere yet.
    /// `delete_data` lets destroy delete a namespace that holds PersistentVolumeClaims.
    pub fn open(global: &Global, delete_data: bool) -> Result<Workspace, Failure> {
        let spec = load_spec(global)?;
        let store = state_store(&spec)?;
        let docker = wallaroo_oci::docker_config::DockerConfig::load_default().map_err(oci)?;
        let mut sources: BTreeMap<String, Arc<dyn wallaroo_oci::ImageSource>> = BTreeMap::new();
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
        let bundle = match spec
            .source
            .as_ref()
            .and_then(|s| s.bundle.as_ref())
            .filter(|_| ours)
        {
            Some(path) => {
                let bundle = Arc::new(
                    wallaroo_oci::bundle::Bundle::open(&spec.resolve_path(path)).map_err(oci)?,
                );
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
        Ok(Workspace {
            spec,
            store,
            sources,
            target,
            bundle,
            delete_data,
            exclude_referrers: global.exclude_referrers,
        })
    }

    /// The images, desired model and engine for a plan.
    pub async fn prepare(
        &self,
        state: Option<&Lockfile>,
        images: Images<'_>,
    ) -> Result<Prepared, Failure> {
        let (images, sources) = match images {
            Images::Saved(plan) => {
                let images = wallaroo_model::plan_images(plan).map_err(|e| {
                    Failure::message(format!("the saved plan's images cannot be read: {e}"))
                })?;
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
        let desired = wallaroo_model::from_spec_with(&self.spec, &images)
            .map_err(|e| Failure::message(e.to_string()))?;
        let mut kinds = cluster_kinds(&self.spec, self.delete_data).await?;
        let mirror = self.target.as_ref().map(|target| {
            // Large uploads in progress are recorded beside the lockfile, so that the
            // next run after a kill resumes them.
            let journal = self
                .spec
                .lockfile_path()
                .parent()
                .map(|d| d.join(".wallaroo-uploads"))
                .unwrap_or_else(|| ".wallaroo-uploads".into());
            Arc::new(wallaroo_oci::ImageKind::new(sources, target.clone()).with_journal(journal))
        });
        if let Some(m) = &mirror {
            kinds.register(m.clone());
        }
        Ok(Prepared {
            images,
            desired,
            engine: Engine::new(kinds),
            mirror,
        })
    }

    /// The images to mirror with their pins, and a registry for every source host.
    pub async fn images(
        &self,
        state: Option<&Lockfile>,
        refresh_pins: bool,
    ) -> Result<
        (
            Vec<MirrorImage>,
            BTreeMap<String, Arc<dyn wallaroo_oci::ImageSource>>,
        ),
        Failure,
    > {
        let mut release = BTreeMap::new();
        let spec = &self.spec;
        if spec.registry.is_some()
            && spec.images.release
            && spec.wallaroo.method == Method::Helm
            && let Some(chart) = wallaroo_model::chart_source(spec)
        {
            let (host, repo, _) = wallaroo_model::split_reference(&chart);
            let vendor = self
                .sources
                .get(&host)
                .expect("the source registry is set up");
            let pulled =
                wallaroo_oci::release::pull_chart(vendor.as_ref(), &repo, &spec.wallaroo.version)
                    .await
                    .map_err(|e| {
                        Failure::message(format!(
                            "cannot read the release's image list from its chart: {e}"
                        ))
                    })?;
            // Rendered for the cluster's Kubernetes version when it can be reached (bundles
            // are often made where it cannot), else for a recent one.
            let asked = match wallaroo_kube::connect().await {
                Ok(client) => {
                    tokio::time::timeout(Duration::from_secs(5), client.apiserver_version())
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .map(|v| v.git_version)
                }
                Err(_) => None,
            };
            let kube_version = asked.or_else(|| Some(RENDER_KUBE_VERSION.to_string()));
            let helm = helm_path();
            let render = wallaroo_oci::release::Render {
                helm: &helm,
                kube_version,
            };
            let found = wallaroo_oci::release::discover(&pulled, Some(&render))
                .await
                .map_err(oci)?;
            for (image, origins) in found {
                let origin = origins
                    .iter()
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                release.insert(image, origin);
            }
        }
        let mut images = match &self.bundle {
            // The bundle's images, as it was made from the spec on the connected side.
            Some(bundle) => bundle
                .manifest
                .images
                .iter()
                .map(|i| MirrorImage {
                    source: i.source.clone(),
                    origin: i.origin.clone(),
                    pin: None,
                })
                .collect(),
            None => wallaroo_model::image_sources(spec, &release),
        };
        let sources = self.sources_for(&images)?;
        // A bundle is the source of truth for its digests: a new bundle is a new release.
        let refresh_pins = refresh_pins || self.bundle.is_some();
        let prior = wallaroo_oci::pins::recorded(
            state
                .into_iter()
                .flat_map(|s| s.resources.values())
                .filter(|r| r.kind == "image")
                .map(|r| &r.attributes),
        );
        let requests: Vec<_> = images
            .iter()
            .map(|i| wallaroo_oci::pins::PinRequest {
                source: i.source.clone(),
                platforms: spec.images.platforms.clone(),
            })
            .collect();
        let pins = wallaroo_oci::pins::resolve_all(&sources, &requests, &prior, refresh_pins)
            .await
            .map_err(oci)?;
        for image in &mut images {
            image.pin = pins.get(&image.source).map(|p| ImagePin {
                source_digest: p.source_digest.clone(),
                digest: p.digest.clone(),
            });
        }
        if !self.exclude_referrers && self.bundle.is_none() {
            let found = self
                .referrers(state, &images, &prior, &pins, &sources, refresh_pins)
                .await?;
            let requests: Vec<_> = found
                .iter()
                .map(|i| wallaroo_oci::pins::PinRequest {
                    source: i.source.clone(),
                    platforms: vec!["all".into()],
                })
                .collect();
            let more = wallaroo_oci::pins::resolve_all(&sources, &requests, &prior, refresh_pins)
                .await
                .map_err(oci)?;
            for mut r in found {
                r.pin = more.get(&r.source).map(|p| ImagePin {
                    source_digest: p.source_digest.clone(),
                    digest: p.digest.clone(),
                });
                images.push(r);
            }
        }
        Ok((images, sources))
    }

    /// The referrers of `images` (signatures, SBOMs, attestations), as images of their own
    /// whose origin names the image they belong to: for a pin kept from the lockfile, those
    /// the lockfile recorded; for a pin resolved now, those the source has.
    async fn referrers(
        &self,
        state: Option<&Lockfile>,
        images: &[MirrorImage],
        prior: &BTreeMap<String, wallaroo_oci::pins::Pin>,
        pins: &BTreeMap<String, wallaroo_oci::pins::Pin>,
        sources: &BTreeMap<String, Arc<dyn wallaroo_oci::ImageSource>>,
        refresh: bool,
    ) -> Result<Vec<MirrorImage>, Failure> {
        let recorded: Vec<(String, String)> = state
            .into_iter()
            .flat_map(|s| s.resources.values())
            .filter(|r| r.kind == "image")
            .filter_map(|r| {
                let origin = r.attributes.get("origin")?.as_str()?;
                let of = origin.strip_prefix(REFERRER_OF)?;
                Some((
                    of.to_string(),
                    r.attributes.get("source")?.as_str()?.to_string(),
                ))
            })
            .collect();
        use futures_util::StreamExt;
        let found: Vec<Result<Vec<MirrorImage>, Failure>> = futures_util::stream::iter(images)
            .map(|image| {
                let recorded = &recorded;
                async move {
                    let Some(pin) = pins.get(&image.source) else {
                        return Ok(Vec::new());
                    };
                    let origin = format!("{REFERRER_OF}{}", image.source);
                    let kept = !refresh && prior.get(&image.source) == Some(pin);
                    let refs: Vec<String> = if kept {
                        recorded
                            .iter()
                            .filter(|(of, _)| *of == image.source)
                            .map(|(_, source)| source.clone())
                            .collect()
                    } else {
                        let (host, repo, _) =
                            wallaroo_model::split_reference(&image.source);
                        let Some(src) = sources.get(&host) else {
                            return Ok(Vec::new());
                        };
                        wallaroo_oci::referrers::discover(src.as_ref(), &repo, &pin.source_digest)
                            .await
                            .map_err(oci)?
                            .into_iter()
                            .map(|r| {
                                let sep = if r.starts_with("sha256:") { '@' } else { ':' };
                                format!("{host}/{repo}{sep}{r}")
                            })
                            .collect()
                    };
                    Ok(refs
                        .into_iter()
                        .map(|source| MirrorImage {
                            source,
                            origin: origin.clone(),
                            pin: None,
                        })
                        .collect())
                }
            })
            .buffered(16)
            .collect()
            .await;
        let mut out = Vec::new();
        for f in found {
            out.extend(f?);
        }
        Ok(out)
    }

    /// The spec's source registries plus one for every other host `images` come from (with
    /// the credentials docker has for it, if any).
    fn sources_for(
        &self,
        images: &[MirrorImage],
    ) -> Result<BTreeMap<String, Arc<dyn wallaroo_oci::ImageSource>>, Failure> {
        let mut sources = self.sources.clone();
        let docker = wallaroo_oci::docker_config::DockerConfig::load_default().map_err(oci)?;
        for image in images {
            let (host, _, _) = wallaroo_model::split_reference(&image.source);
            if let std::collections::btree_map::Entry::Vacant(e) = sources.entry(host) {
                let r = registry(&self.spec, &docker, e.key(), None, None)?;
                e.insert(Arc::new(r));
            }
        }
        Ok(sources)
    }
}

fn oci(e: wallaroo_oci::OciError) -> Failure {
    Failure::message(e.to_string())
}

fn credentials(
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
fn registry(
    spec: &Spec,
    docker: &wallaroo_oci::docker_config::DockerConfig,
    host: &str,
    from_spec: Option<wallaroo_oci::Credentials>,
    ca_file: Option<&std::path::PathBuf>,
) -> Result<wallaroo_oci::Registry, Failure> {
    let credentials = match from_spec {
        Some(c) => Some(c),
        None => docker.credentials(host).map_err(oci)?,
    };
    wallaroo_oci::Registry::new(
        host,
        credentials,
        ca_file.map(|p| spec.resolve_path(p)).as_deref(),
    )
    .map_err(oci)
}

/// How a referrer's origin names its image.
const REFERRER_OF: &str = "referrer of ";

/// The Kubernetes version charts are rendered for when the cluster cannot be asked.
const RENDER_KUBE_VERSION: &str = "v1.33.0";

fn helm_path() -> std::path::PathBuf {
    std::env::var_os("HELM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "helm".into())
}

/// The spec and its desired model without reading the chart, the lockfile or anything live:
/// what `graph` and `validate` show (extra images only).
pub fn offline(global: &Global) -> Result<(Spec, DesiredSet), Failure> {
    let spec = load_spec(global)?;
    let desired =
        wallaroo_model::from_spec(&spec).map_err(|e| Failure::message(e.to_string()))?;
    Ok((spec, desired))
}

/// The cluster's resource kinds (and static values), set up from the spec.
pub async fn cluster_kinds(spec: &Spec, delete_data: bool) -> Result<KindRegistry, Failure> {
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
    // helm talks to the cluster kube-rs found: the first file of KUBECONFIG, when set.
    let kubeconfig = std::env::var("KUBECONFIG").ok().and_then(|k| {
        k.split(':')
            .find(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
    });
    let config = wallaroo_kube::ClusterConfig {
        helm: helm_path(),
        kubeconfig,
        chart_registry: chart_login,
        ca_file: ca_file.map(|p| spec.resolve_path(p)),
        keycloak_url: spec.wallaroo.keycloak_url(),
        namespace: spec.wallaroo.namespace.clone(),
        output_timeout: Duration::from_secs(300),
        delete_data,
        ignore_drift: spec.helm.ignore_drift.clone(),
        kots_binary: spec
            .kots
            .as_ref()
            .map_or("kubectl-kots", |k| k.binary.as_str())
            .into(),
    };
    wallaroo_kube::register(&mut kinds, config)
        .await
        .map_err(|e| Failure::message(e.to_string()))?;
    Ok(kinds)
}

/// Where the spec keeps its lockfile: a local file, or the kubernetes backend.
pub fn state_store(spec: &Spec) -> Result<StateStore, Failure> {
    match spec.state.backend {
        wallaroo_spec::model::StateBackend::Local => Ok(StateStore::new(spec.lockfile_path())),
        wallaroo_spec::model::StateBackend::Kubernetes => kubernetes_store(spec),
    }
}

/// The kubernetes backend the spec's `state` block names (whatever its `backend` says).
pub fn kubernetes_store(spec: &Spec) -> Result<StateStore, Failure> {
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

/// The lockfile of the spec given with -c, without evaluating anything else.
pub fn store_for(global: &Global) -> Result<StateStore, Failure> {
    let spec = load_spec(global)?;
    state_store(&spec)
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
