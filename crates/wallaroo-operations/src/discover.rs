//! Discovery: the images a release runs, read from its chart (its `artifacthub.io/images`
//! annotation, an `images.txt`, and every `image:` that `helm template` renders), with
//! `images { extra }`, the GPU plugin and the referrers (signatures, SBOMs) of each, pinned
//! to digests from the lockfile or resolved now.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wallaroo_model::{ImagePin, MirrorImage};
use wallaroo_spec::model::Method;
use wallaroo_state::Lockfile;

use crate::error::OperationError;
use crate::workspace::{Workspace, registry};

/// The registries images are read from, by host.
pub type Sources = BTreeMap<String, Arc<dyn wallaroo_oci::ImageSource>>;

/// Images whose pins and tag lists are asked at once: 32 where a source may open a
/// connection for each request (HTTP/1.1), 128 where every source shares one among them
/// (HTTP/2, or a bundle on disk), so that a release of 40 images is asked in one round trip.
fn lookups_at_once(sources: &Sources) -> usize {
    if !sources.is_empty() && sources.values().all(|s| s.multiplexed()) {
        128
    } else {
        32
    }
}

impl Workspace {
    /// The images to mirror with their pins, and a registry for every source host.
    pub async fn images(
        &self,
        state: Option<&Lockfile>,
        refresh_pins: bool,
    ) -> Result<(Vec<MirrorImage>, Sources), OperationError> {
        let spec = &self.spec;
        let release =
            wallaroo_profile::within("discovery and render", self.discover_release(refresh_pins))
                .await?;
        if !release.is_empty() {
            // An exclusion that names nothing is most likely a typo: the image it meant is
            // still mirrored.
            let unmatched: Vec<String> = spec
                .images
                .exclude
                .iter()
                .filter(|x| {
                    !release.keys().any(|source| {
                        let (_, repo, _) = wallaroo_model::split_reference(source);
                        repo == **x || repo.rsplit('/').next() == Some(x.as_str())
                    })
                })
                .map(|x| {
                    format!(
                        "images {{ exclude }} names `{x}`, which is not in the release's image list"
                    )
                })
                .collect();
            self.notes.lock().expect("notes").extend(unmatched);
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
        let with_referrers = !self.exclude_referrers && self.bundle.is_none();
        let recorded = recorded_referrers(state);
        // Each image on its own: its pin, then (as soon as it has one) its referrers and
        // theirs, so that on a slow link the referrer lookups of one image overlap the pins
        // of the others instead of waiting for all of them.
        use futures_util::StreamExt;
        let lookup = &Lookup {
            prior: &prior,
            recorded: &recorded,
            sources: &sources,
            refresh: refresh_pins,
        };
        // What the private registry's tags hold now, asked beside the pins (a distant
        // vendor's round trips) instead of after them: the plan's refresh of the images reads
        // these answers.
        let prefetch = async {
            if let (Some(target), Some(reg)) = (&self.target, &spec.registry) {
                let tags = images
                    .iter()
                    .map(|i| {
                        let (_, target) = wallaroo_model::image_target(spec, reg, i);
                        let (_, repo, tag) = wallaroo_model::split_reference(&target);
                        (repo, tag)
                    })
                    .collect();
                wallaroo_profile::within("refresh", target.prefetch_manifest_digests(tags)).await;
            }
        };
        let pinned = futures_util::stream::iter(images.iter().map(|i| i.source.clone()))
            .map(|source| async move {
                let request = wallaroo_oci::pins::PinRequest {
                    source: source.clone(),
                    platforms: spec.images.platforms.clone(),
                };
                // The repository's tag list (where signatures are found) does not
                // depend on the pin: asked beside it when the referrers will be read
                // from the source (no pin of an earlier run to keep).
                let listing =
                    with_referrers && (refresh_pins || !lookup.prior.contains_key(&source));
                let listed = async {
                    let (host, repo, _) = wallaroo_model::split_reference(&source);
                    match lookup.sources.get(&host) {
                        Some(src) if listing => Some(src.tag_list(&repo).await),
                        _ => None,
                    }
                };
                let (pinned, listed) = futures_util::future::join(
                    wallaroo_profile::within(
                        PINS,
                        wallaroo_oci::pins::resolve_all(
                            lookup.sources,
                            std::slice::from_ref(&request),
                            lookup.prior,
                            refresh_pins,
                        ),
                    ),
                    wallaroo_profile::within(wallaroo_profile::SIGNATURES, listed),
                )
                .await;
                let pin = pinned?.remove(&source);
                let mut referrers = Vec::new();
                if with_referrers && let Some(pin) = &pin {
                    let found = wallaroo_profile::within(
                        wallaroo_profile::SIGNATURES,
                        self.referrers_of(&source, pin, lookup, listed),
                    )
                    .await?;
                    let requests: Vec<_> = found
                        .iter()
                        .map(|i| wallaroo_oci::pins::PinRequest {
                            source: i.source.clone(),
                            platforms: vec!["all".into()],
                        })
                        .collect();
                    let more = wallaroo_profile::within(
                        PINS,
                        wallaroo_oci::pins::resolve_all(
                            lookup.sources,
                            &requests,
                            lookup.prior,
                            refresh_pins,
                        ),
                    )
                    .await?;
                    for mut r in found {
                        r.pin = more.get(&r.source).map(image_pin);
                        referrers.push(r);
                    }
                }
                Ok((pin.as_ref().map(image_pin), referrers))
            })
            .buffered(lookups_at_once(&sources))
            .collect::<Vec<Result<PinnedWithReferrers, OperationError>>>();
        let (done, ()) = futures_util::future::join(pinned, prefetch).await;
        let mut all_referrers = Vec::new();
        for (image, result) in images.iter_mut().zip(done) {
            let (pin, referrers) = result?;
            image.pin = pin;
            all_referrers.extend(referrers);
        }
        images.extend(all_referrers);
        Ok((images, sources))
    }

    /// The release's images found in its chart (by annotation, image list and render), each
    /// with where it was found; none when the spec does not install the chart with helm.
    /// The chart is read from the vendor once and kept beside the lockfile, pinned as image
    /// tags are (`refresh_pins` reads it again).
    pub(crate) async fn discover_release(
        &self,
        refresh_pins: bool,
    ) -> Result<BTreeMap<String, String>, OperationError> {
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
            let reference = format!("{chart}:{}", spec.wallaroo.version);
            let kept = (!refresh_pins && self.bundle.is_none())
                .then(|| self.render_cache.chart(&reference))
                .flatten();
            let pulled = match kept {
                Some(chart) => chart,
                None => {
                    let pulled = wallaroo_oci::release::pull_chart(
                        vendor.as_ref(),
                        &repo,
                        &spec.wallaroo.version,
                    )
                    .await
                    .map_err(|e| {
                        OperationError::message(format!(
                            "cannot read the release's image list from its chart: {e}"
                        ))
                    })?;
                    if self.bundle.is_none() {
                        self.render_cache.store_chart(&reference, &pulled);
                    }
                    pulled
                }
            };
            // Rendered for the cluster's Kubernetes version when it can be reached (bundles
            // are often made where it cannot), else for a recent one.
            let asked = match self.cluster().await {
                Ok(cluster) => tokio::time::timeout(Duration::from_secs(5), cluster.version())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|v| v.git_version.clone()),
                Err(_) => None,
            };
            let kube_version = asked.or_else(|| Some(RENDER_KUBE_VERSION.to_string()));
            let render = wallaroo_oci::release::Render {
                helm: &self.helm,
                kube_version,
                values: Some(wallaroo_model::render_values(spec)),
                release: spec.wallaroo.release_name.clone(),
                namespace: Some(spec.wallaroo.namespace.clone()),
                redact: secret_strings(&wallaroo_model::chart_values(spec).1),
            };
            // The same chart rendered the same way finds the same images: a plan that
            // changed none of it does not call `helm template` again.
            let key = self.render_cache.key(
                &crate::render_cache::RenderInputs {
                    helm: &self.helm,
                    chart_digest: &pulled.manifest.digest,
                    release: &render.release,
                    namespace: render.namespace.as_deref(),
                    kube_version: render.kube_version.as_deref(),
                    values: render.values.as_ref(),
                },
                &[b"discover/1"],
            );
            let cached: Option<BTreeMap<String, String>> = key
                .as_ref()
                .and_then(|k| self.render_cache.load("discover", k));
            match cached {
                Some(found) => release = found,
                None => {
                    // While helm renders, the vendor is asked for the referrers of the chart's
                    // own manifest: a registry without the API says so now, and the images'
                    // lookups after their pins skip it at once.
                    let probe = async {
                        if !self.exclude_referrers && self.bundle.is_none() {
                            let _ = wallaroo_profile::within(
                                wallaroo_profile::SIGNATURES,
                                vendor.referrers_api(&repo, &pulled.manifest.digest),
                            )
                            .await;
                        }
                    };
                    let (found, ()) = futures_util::future::join(
                        wallaroo_oci::release::discover(&pulled, Some(&render)),
                        probe,
                    )
                    .await;
                    let found = found.map_err(|e| match e {
                        wallaroo_oci::OciError::Chart { .. } => {
                            OperationError::message(render_failure(spec, &e.to_string()))
                        }
                        other => other.into(),
                    })?;
                    for (image, origins) in found {
                        let origin = origins
                            .iter()
                            .map(|o| o.to_string())
                            .collect::<Vec<_>>()
                            .join(", ");
                        release.insert(image, origin);
                    }
                    if let Some(k) = &key {
                        self.render_cache.store("discover", k, &release);
                    }
                }
            }
            *self.chart.lock().expect("chart cache") =
                Some((pulled.clone(), render.kube_version.clone()));
        }
        Ok(release)
    }

    /// The referrers of the image `source` pinned at `pin` (signatures, SBOMs,
    /// attestations), as images of their own whose origin names the image they belong to:
    /// for a pin kept from the lockfile, those the lockfile recorded; for a pin resolved now,
    /// those the source has. `listed`: the repository's tag list when it was read already
    /// (`Some(None)`: the source cannot list tags).
    async fn referrers_of(
        &self,
        source: &str,
        pin: &wallaroo_oci::pins::Pin,
        lookup: &Lookup<'_>,
        listed: Option<Option<Vec<String>>>,
    ) -> Result<Vec<MirrorImage>, OperationError> {
        let Lookup {
            prior,
            recorded,
            sources,
            refresh,
        } = *lookup;
        let origin = format!("{REFERRER_OF}{source}");
        let kept = !refresh && prior.get(source) == Some(pin);
        let refs: Vec<String> = if kept {
            recorded
                .iter()
                .filter(|(of, _)| of == source)
                .map(|(_, r)| r.clone())
                .collect()
        } else {
            let (host, repo, _) = wallaroo_model::split_reference(source);
            let Some(src) = sources.get(&host) else {
                return Ok(Vec::new());
            };
            let digest = &pin.source_digest;
            match listed {
                Some(listed) => {
                    wallaroo_oci::referrers::discover_listed(
                        src.as_ref(),
                        &repo,
                        digest,
                        std::future::ready(listed),
                    )
                    .await?
                }
                None => wallaroo_oci::referrers::discover(src.as_ref(), &repo, digest).await?,
            }
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

    /// The spec's source registries plus one for every other host `images` come from (with
    /// the credentials docker has for it, if any).
    pub(crate) fn sources_for(&self, images: &[MirrorImage]) -> Result<Sources, OperationError> {
        let mut sources = self.sources.clone();
        let docker = wallaroo_oci::docker_config::DockerConfig::load_default()?;
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

/// What referrer lookups of a run share: the pins and referrers an earlier run recorded,
/// the sources, and whether pins are resolved again.
struct Lookup<'a> {
    prior: &'a BTreeMap<String, wallaroo_oci::pins::Pin>,
    recorded: &'a [(String, String)],
    sources: &'a Sources,
    refresh: bool,
}

/// The profile's phase of resolving tags to digests (see `wallaroo_profile`).
const PINS: &str = "pins";

/// An image's pin, and its referrers with theirs.
type PinnedWithReferrers = (Option<ImagePin>, Vec<MirrorImage>);

/// The referrers the lockfile recorded, as (the image they belong to, their source).
fn recorded_referrers(state: Option<&Lockfile>) -> Vec<(String, String)> {
    state
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
        .collect()
}

fn image_pin(p: &wallaroo_oci::pins::Pin) -> ImagePin {
    ImagePin {
        source_digest: p.source_digest.clone(),
        digest: p.digest.clone(),
    }
}

/// How a referrer's origin names its image.
const REFERRER_OF: &str = "referrer of ";

/// The Kubernetes version charts are rendered for when the cluster cannot be asked.
const RENDER_KUBE_VERSION: &str = "v1.33.0";

/// Every string inside a JSON value (the secret values), to keep them out of messages.
fn secret_strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().flat_map(secret_strings).collect(),
        serde_json::Value::Object(m) => m.values().flat_map(secret_strings).collect(),
        _ => Vec::new(),
    }
}

/// A chart that would not render with the release's values: helm's own words (chart,
/// template, line), which spec setting feeds each values key it names, and the ways out.
fn render_failure(spec: &wallaroo_spec::Spec, helm_error: &str) -> String {
    let mut out = format!("cannot read the release's image list from its chart: {helm_error}");
    for (key, setting) in wallaroo_model::VALUE_SOURCES {
        if helm_error.contains(key) {
            out.push_str(&format!("\n  `{key}` comes from `{setting}`"));
            if spec.helm.values.get(*key).is_some() {
                out.push_str(", and `helm { values }` sets it too (that value wins)");
            }
        }
    }
    out.push_str(
        "\n  The chart is rendered with the values the release is installed with (the spec's settings and `helm { values }`, which takes any key of the chart): set the value it asks for there, or list the release's images yourself with `images { release = false, extra = [...] }`.",
    );
    out
}
