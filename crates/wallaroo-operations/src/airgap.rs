//! The air-gap guarantee: nothing the release runs points outside the private registry.
//!
//! Before a plan is shown, the release is rendered (`helm template`, the chart discovery
//! read) with the values it will be installed with: the spec's, `helm { values }`, the
//! secret values, and the image keys wallaroo points at the private registry
//! ([`wallaroo_model::image_rewrites`]). Every container image of every object (init and
//! ephemeral containers, CronJobs, anything with a `containers` list) must be an image the
//! plan mirrors into the private registry, and no container's `args`, `command` or `env`
//! may name a mirrored image at its vendor. Otherwise the plan stops, naming the object, the
//! container and the image, and the values key that would move it where it can tell.

use std::collections::BTreeSet;

use serde_json::Value;
use wallaroo_engine::DesiredSet;
use wallaroo_oci::release::{ImageKeys, RenderedImage};

use crate::error::OperationError;
use crate::workspace::Workspace;

impl Workspace {
    /// Points the chart's own image keys at the private registry in the release's values
    /// (a plan warning says which and why), then checks the guarantee.
    pub(crate) async fn air_gap(
        &self,
        desired: &mut DesiredSet,
        images: &[wallaroo_model::MirrorImage],
    ) -> Result<(), OperationError> {
        let Some((chart, kube_version)) = self.chart.lock().expect("chart cache").clone() else {
            return Ok(());
        };
        let Some(reg) = &self.spec.registry else {
            return Ok(());
        };
        let keys = wallaroo_oci::release::image_keys(&chart)?;
        let Some(release) = desired
            .resources
            .values()
            .find(|r| r.kind == "helm_release")
        else {
            return Ok(());
        };
        let mut release_values = release.attrs.get("values").cloned().unwrap_or(Value::Null);
        if let Some(secret) = release.attrs.get("secret_values") {
            wallaroo_engine::json::merge(&mut release_values, secret);
        }

        // What each image key does, learned from the chart's own render; the guess by
        // naming convention only where the chart cannot be rendered with markers.
        let mut learned = wallaroo_model::learn::Learned::default();
        let (mut rewrites, why) = if !self.spec.images.rewrite {
            (Value::Null, Vec::new())
        } else {
            match self
                .learn(&chart, kube_version.clone(), &release_values, images)
                .await
            {
                Ok(Some(l)) => {
                    learned = l;
                    (learned.values.clone(), learned.evidence.clone())
                }
                Ok(None) => rewrites(&self.spec, &keys, images),
                Err(e) => {
                    desired.warnings.push(format!(
                        "air gap: the chart's image keys could not be learned by render ({e}); \
                         keys are set by naming convention"
                    ));
                    rewrites(&self.spec, &keys, images)
                }
            }
        };
        // The operator's values win: a key written in `helm { values }` is never rewritten.
        drop_paths_of(&mut rewrites, &self.spec.helm.values);
        // A solution an earlier plan proved by render in place of these: taken at once, so
        // that the render below is the last one (and a no-op plan renders nothing).
        let proved_key = self.render_cache.key(
            &self.release_inputs(&chart.manifest.digest, kube_version.as_deref(), &rewrites),
            &[b"proved/1", release_values.to_string().as_bytes()],
        );
        let mut why = why;
        if let Some(k) = &proved_key
            && let Some(proved) = self.render_cache.load::<Value>("proved", k)
        {
            why = vec![format!(
                "{} (learned by render and proved by render: the first solution the markers gave, {}, put images elsewhere than their targets)",
                leaves_text(&proved),
                leaves_text(&rewrites)
            )];
            rewrites = proved;
        }
        let release = desired
            .resources
            .values_mut()
            .find(|r| r.kind == "helm_release")
            .expect("found above");
        // Kept for the proof by render below: the values before the learned ones.
        let base_values = release.attrs.get("values").cloned().unwrap_or(Value::Null);
        let secret_values = release.attrs.get("secret_values").cloned();
        let learned_by_render = learned.values.as_object().is_some_and(|m| !m.is_empty());
        if let Some(values) = release.attrs.get_mut("values")
            && rewrites.is_object()
        {
            wallaroo_engine::json::merge(values, &rewrites);
        }
        desired.warnings.extend(
            why.into_iter()
                .map(|w| format!("air gap: wallaroo sets {w}")),
        );
        let mut allowed: BTreeSet<String> = self.allow_external.iter().cloned().collect();
        allowed.extend(self.spec.images.allow_external.iter().cloned());
        desired.warnings.extend(
            allowed.iter().map(|a| {
                format!("air gap: {a} may run from outside the private registry (allowed)")
            }),
        );
        let values = with_secret(
            release.attrs.get("values").unwrap_or(&Value::Null),
            release.attrs.get("secret_values"),
        );
        let render = self.release_render(kube_version, values);
        // The same render against the same images passed before: only the images it let
        // through because the registry held them are looked at again.
        let key = self.render_cache.key(
            &crate::render_cache::RenderInputs::of(&render, &chart.manifest.digest),
            &[
                b"airgap/1",
                serde_json::to_string(images).unwrap_or_default().as_bytes(),
                allowed
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
                    .as_bytes(),
                reg.host.as_bytes(),
            ],
        );
        if let (Some(k), Some(target)) = (&key, &self.target)
            && let Some(held) = self.render_cache.load::<Vec<String>>("airgap", k)
            && let Some(kinds) = self.render_cache.load("kinds", k)
            && let Some(rbac) = self.render_cache.load("rbac", k)
            && let Some(specs) = self.render_cache.load::<Vec<String>>("preflights", k)
        {
            let mut all_there = true;
            for image in &held {
                let (_, repo, reference) = wallaroo_model::split_reference(image);
                all_there &= target.manifest_digest(&repo, &reference).await?.is_some();
            }
            if all_there {
                *self.rendered_kinds.lock().expect("kinds lock") = Some(kinds);
                *self.rendered_rbac.lock().expect("rbac lock") = Some(rbac);
                *self.vendor_preflight_specs.lock().expect("specs lock") = Some(specs);
                return Ok(());
            }
        }
        let yaml = wallaroo_oci::release::render_manifests(&render, &chart).await?;
        // The chart's own CRDs are applied by wallaroo before the release: their kind too.
        let crds = wallaroo_oci::release::chart_crds(&chart)?.join("\n---\n");
        let kinds = wallaroo_kube::permissions::rendered_kinds(&format!("{yaml}\n---\n{crds}"));
        *self.rendered_kinds.lock().expect("kinds lock") = Some(kinds.clone());
        *self.rendered_manifest.lock().expect("manifest lock") = Some(yaml.clone());
        let rbac = wallaroo_kube::permissions::grants::rbac_objects(&yaml);
        *self.rendered_rbac.lock().expect("rbac lock") = Some(rbac.clone());
        let specs = wallaroo_kube::troubleshoot::preflight_specs(&yaml);
        *self.vendor_preflight_specs.lock().expect("specs lock") = Some(specs.clone());
        let rendered = wallaroo_oci::release::rendered_containers(&yaml).map_err(|e| {
            OperationError::message(format!("the rendered release cannot be read: {e}"))
        })?;
        let mut mirrored = Mirrored::of(desired, images);
        let mut held = Vec::new();
        // An image in the private registry that this plan does not mirror passes when the
        // registry has it (mirrored earlier, or pushed there by hand).
        if let Some(target) = &self.target {
            let prefix = format!("{}/", reg.host);
            let unknown: Vec<String> = rendered
                .iter()
                .filter(|r| {
                    r.field == "image" && r.image.starts_with(&prefix) && !mirrored.holds(&r.image)
                })
                .map(|r| r.image.clone())
                .collect();
            for image in unknown {
                let (_, repo, reference) = wallaroo_model::split_reference(&image);
                if target.manifest_digest(&repo, &reference).await?.is_some() {
                    held.push(image.clone());
                    mirrored.targets.insert(image);
                }
            }
        }
        let mut problems = check(&reg.host, &rendered, &mirrored, &allowed, &keys, &learned);
        // Learned values are proved, not predicted: the markers cannot show what a template
        // does to a value (trims it, takes a path's base, replaces in it), so when the render
        // with them still puts an image elsewhere, the solutions near them are rendered too.
        if !problems.is_empty() && learned_by_render {
            let mut tried = Vec::new();
            for variant in nearby(&rewrites, &learned.alternatives, &self.spec.helm.values)
                .into_iter()
                .take(PROOF_RENDERS)
            {
                let mut values = base_values.clone();
                wallaroo_engine::json::merge(&mut values, &variant);
                let proof = self.release_render(
                    render.kube_version.clone(),
                    with_secret(&values, secret_values.as_ref()),
                );
                let yaml = wallaroo_oci::release::render_manifests(&proof, &chart).await?;
                let rendered = wallaroo_oci::release::rendered_containers(&yaml).map_err(|e| {
                    OperationError::message(format!("the rendered release cannot be read: {e}"))
                })?;
                let left = check(&reg.host, &rendered, &mirrored, &allowed, &keys, &learned);
                tried.push(format!("{} ({} left)", leaves_text(&variant), left.len()));
                if !left.is_empty() {
                    continue;
                }
                let release = desired
                    .resources
                    .values_mut()
                    .find(|r| r.kind == "helm_release")
                    .expect("found above");
                release.attrs.insert("values".into(), values);
                *self.rendered_manifest.lock().expect("manifest lock") = Some(yaml.clone());
                *self.rendered_kinds.lock().expect("kinds lock") = Some(
                    wallaroo_kube::permissions::rendered_kinds(&format!("{yaml}\n---\n{crds}")),
                );
                *self.rendered_rbac.lock().expect("rbac lock") =
                    Some(wallaroo_kube::permissions::grants::rbac_objects(&yaml));
                *self.vendor_preflight_specs.lock().expect("specs lock") =
                    Some(wallaroo_kube::troubleshoot::preflight_specs(&yaml));
                if let Some(k) = &proved_key {
                    self.render_cache.store("proved", k, &variant);
                }
                desired
                    .warnings
                    .retain(|w| !w.starts_with("air gap: wallaroo sets "));
                desired.warnings.push(format!(
                    "air gap: wallaroo sets {} (learned by render and proved by render: the first solution the markers gave, {}, put {} image(s) elsewhere than their targets; {} render(s) tried, at most {PROOF_RENDERS})",
                    leaves_text(&variant),
                    leaves_text(&rewrites),
                    problems.len(),
                    tried.len()
                ));
                return Ok(());
            }
            problems.push(format!(
                "the values learned by render were proved by render and none fits: {} tried ({}), at most {PROOF_RENDERS}; set the image keys in `helm {{ values }}`",
                tried.len(),
                tried.join("; ")
            ));
        }
        if problems.is_empty() {
            if let Some(k) = &key {
                self.render_cache.store("airgap", k, &held);
                self.render_cache.store("kinds", k, &kinds);
                self.render_cache.store("rbac", k, &rbac);
                // The cache holds no secret: specs that show one are rendered again instead.
                let secrets = wallaroo_model::sensitive::secret_strings(&self.spec);
                if !specs.iter().any(|s| {
                    secrets
                        .iter()
                        .any(|x| !x.is_empty() && s.contains(x.as_str()))
                }) {
                    self.render_cache.store("preflights", k, &specs);
                }
            }
            return Ok(());
        }
        let allowed_note = if allowed.is_empty() {
            String::new()
        } else {
            format!(
                "\nAllowed from outside: {}.",
                allowed.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        Err(OperationError::message(format!(
            "the release would run images from outside the private registry {} (a cluster behind an air gap cannot pull them):\n{}\nPoint each at the private registry with `helm {{ values }}`, or, for one meant to come from elsewhere, allow it with `images {{ allow_external = [...] }}` or --allow-external-image REF.{allowed_note}",
            reg.host,
            problems
                .iter()
                .map(|p| format!("  - {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        )))
    }
}

impl Workspace {
    /// Learns the image keys' values by rendering the chart twice side by side: with the
    /// chart's own image keys (the vendor's references, as discovery read them) and with a
    /// marker in every candidate key the operator did not set. Cached: the same chart, values
    /// and images learn nothing new. `None` when the chart has no candidate key.
    async fn learn(
        &self,
        chart: &wallaroo_oci::release::Chart,
        kube_version: Option<String>,
        release_values: &Value,
        images: &[wallaroo_model::MirrorImage],
    ) -> Result<Option<wallaroo_model::learn::Learned>, OperationError> {
        use wallaroo_model::learn;
        let Some(reg) = &self.spec.registry else {
            return Ok(None);
        };
        let defaults = wallaroo_oci::release::default_values(chart)?;
        let candidates = learn::candidates(&defaults, &self.spec.helm.values);
        if candidates.is_empty() {
            return Ok(None);
        }
        let markers = learn::markers(&candidates);
        let mut marked_values = release_values.clone();
        wallaroo_engine::json::merge(&mut marked_values, &markers.values);
        let default_values = wallaroo_model::render_values(&self.spec);
        let key = self.render_cache.key(
            &self.release_inputs(
                &chart.manifest.digest,
                kube_version.as_deref(),
                &marked_values,
            ),
            &[
                b"learn/2",
                serde_json::to_string(images).unwrap_or_default().as_bytes(),
                default_values.to_string().as_bytes(),
                reg.host.as_bytes(),
                reg.namespace.as_bytes(),
                self.spec.images.path.as_bytes(),
            ],
        );
        if let Some(k) = &key
            && let Some((values, evidence, unsolved, alternatives)) =
                self.render_cache
                    .load::<(Value, Vec<String>, Vec<[String; 5]>, Vec<Value>)>("learn", k)
        {
            return Ok(Some(learn::Learned {
                values,
                evidence,
                alternatives,
                unsolved: unsolved
                    .into_iter()
                    .map(
                        |[object, container, reference, target, why]| learn::Unsolved {
                            object,
                            container,
                            reference,
                            target,
                            why,
                        },
                    )
                    .collect(),
            }));
        }
        let redact: Vec<String> = wallaroo_model::sensitive::secret_strings(&self.spec)
            .into_iter()
            .collect();
        let render = |values: Value| wallaroo_oci::release::Render {
            helm: &self.helm,
            kube_version: kube_version.clone(),
            values: Some(values),
            release: self.spec.wallaroo.release_name.clone(),
            namespace: Some(self.spec.wallaroo.namespace.clone()),
            redact: redact.clone(),
        };
        let targets: std::collections::BTreeMap<(String, String, String), String> = images
            .iter()
            .filter(|i| {
                i.origin != wallaroo_model::CHART_ORIGIN && !i.origin.starts_with("referrer of ")
            })
            .map(|i| {
                (
                    wallaroo_model::split_reference(&i.source),
                    wallaroo_model::image_target(&self.spec, reg, i).1,
                )
            })
            .collect();
        let target_of = |r: &str| -> Option<String> {
            targets.get(&wallaroo_model::split_reference(r)).cloned()
        };
        let learned = wallaroo_oci::release::learn_image_values(
            chart,
            &render(default_values),
            &render(marked_values),
            &markers,
            &defaults,
            release_values,
            &target_of,
        )
        .await?;
        if let Some(k) = &key {
            let unsolved: Vec<[String; 5]> = learned
                .unsolved
                .iter()
                .map(|u| {
                    [
                        u.object.clone(),
                        u.container.clone(),
                        u.reference.clone(),
                        u.target.clone(),
                        u.why.clone(),
                    ]
                })
                .collect();
            self.render_cache.store(
                "learn",
                k,
                &(
                    &learned.values,
                    &learned.evidence,
                    &unsolved,
                    &learned.alternatives,
                ),
            );
        }
        Ok(Some(learned))
    }
}

impl Workspace {
    /// What the render cache keys a render of the release with `values` by.
    pub(crate) fn release_inputs<'a>(
        &'a self,
        chart_digest: &'a str,
        kube_version: Option<&'a str>,
        values: &'a Value,
    ) -> crate::render_cache::RenderInputs<'a> {
        crate::render_cache::RenderInputs {
            helm: &self.helm,
            chart_digest,
            release: &self.spec.wallaroo.release_name,
            namespace: Some(&self.spec.wallaroo.namespace),
            kube_version,
            values: Some(values),
        }
    }

    /// The release's render with `values` (secret values merged in already), for Kubernetes
    /// `kube_version`: the release's name and namespace, every secret string of the spec
    /// scrubbed from what helm may print.
    pub(crate) fn release_render(
        &self,
        kube_version: Option<String>,
        values: Value,
    ) -> wallaroo_oci::release::Render<'_> {
        wallaroo_oci::release::Render {
            helm: &self.helm,
            kube_version,
            values: Some(values),
            release: self.spec.wallaroo.release_name.clone(),
            namespace: Some(self.spec.wallaroo.namespace.clone()),
            redact: wallaroo_model::sensitive::secret_strings(&self.spec)
                .into_iter()
                .collect(),
        }
    }
}

/// `values` with the release's `secret` values merged in: what helm is given.
pub(crate) fn with_secret(values: &Value, secret: Option<&Value>) -> Value {
    let mut v = values.clone();
    if let Some(s) = secret {
        wallaroo_engine::json::merge(&mut v, s);
    }
    v
}

/// How many renders the proof of learned values may take.
const PROOF_RENDERS: usize = 8;

/// The solutions near `chosen` to prove by render, best first: the solver's alternatives (as
/// many images solved by the markers), then `chosen` without one of its keys. Keys the
/// operator set are left out of each.
fn nearby(chosen: &Value, alternatives: &[Value], fixed: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut push = |mut v: Value| {
        drop_paths_of(&mut v, fixed);
        if v != *chosen && !out.contains(&v) {
            out.push(v);
        }
    };
    for a in alternatives {
        push(a.clone());
    }
    for path in leaves(chosen) {
        let mut fewer = chosen.clone();
        wallaroo_model::declared::remove_path(&mut fewer, &path);
        push(fewer);
    }
    out
}

/// The paths of the leaves of a values object.
fn leaves(v: &Value) -> Vec<Vec<String>> {
    fn walk(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v.as_object() {
            Some(m) => {
                for (k, child) in m {
                    at.push(k.clone());
                    walk(child, at, out);
                    at.pop();
                }
            }
            None if !at.is_empty() => out.push(at.clone()),
            None => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// `a.b = "x", c = "y"` (or `nothing` for no values).
fn leaves_text(v: &Value) -> String {
    let all: Vec<String> = leaves(v)
        .into_iter()
        .map(|p| {
            let value = p
                .iter()
                .try_fold(v, |v, k| v.get(k))
                .cloned()
                .unwrap_or(Value::Null);
            format!("{} = {value}", p.join("."))
        })
        .collect();
    if all.is_empty() {
        "nothing".into()
    } else {
        all.join(", ")
    }
}

/// Removes from `values` every leaf `fixed` sets (the operator's own values win).
fn drop_paths_of(values: &mut Value, fixed: &Value) {
    let (Some(v), Some(f)) = (values.as_object_mut(), fixed.as_object()) else {
        return;
    };
    for (k, fv) in f {
        match v.get_mut(k) {
            Some(child) if child.is_object() && fv.is_object() => {
                drop_paths_of(child, fv);
                if child.as_object().is_some_and(|m| m.is_empty()) {
                    v.remove(k);
                }
            }
            Some(_) => {
                v.remove(k);
            }
            None => {}
        }
    }
}

fn rewrites(
    spec: &wallaroo_spec::Spec,
    keys: &ImageKeys,
    images: &[wallaroo_model::MirrorImage],
) -> (Value, Vec<String>) {
    let declared: Vec<wallaroo_model::DeclaredImage> = keys
        .keys
        .iter()
        .map(|k| wallaroo_model::DeclaredImage {
            path: k.path.clone(),
            registry: k.registry.clone(),
            registry_key: k.registry_key,
            repository: k.repository.clone(),
        })
        .collect();
    wallaroo_model::image_rewrites(spec, &declared, keys.global_image_registry, images)
}

/// What the plan puts in the private registry: target references, and by repository the
/// digests they hold (an image may be run by digest).
struct Mirrored {
    targets: BTreeSet<String>,
    by_digest: BTreeSet<String>,
    /// Sources (`host/repo`) of the mirrored images: an `args`/`env` string naming one
    /// points at the vendor.
    sources: BTreeSet<String>,
}

impl Mirrored {
    fn of(desired: &DesiredSet, images: &[wallaroo_model::MirrorImage]) -> Mirrored {
        let mut m = Mirrored {
            targets: BTreeSet::new(),
            by_digest: BTreeSet::new(),
            sources: BTreeSet::new(),
        };
        for r in desired.resources.values().filter(|r| r.kind == "image") {
            let text = |k: &str| r.attrs.get(k).and_then(Value::as_str);
            if let Some(t) = text("target") {
                m.targets.insert(t.to_string());
                let (host, repo, _) = wallaroo_model::split_reference(t);
                for d in [text("digest"), text("source_digest")]
                    .into_iter()
                    .flatten()
                {
                    m.by_digest.insert(format!("{host}/{repo}@{d}"));
                }
            }
        }
        for i in images {
            let (host, repo, _) = wallaroo_model::split_reference(&i.source);
            m.sources.insert(format!("{host}/{repo}"));
        }
        m
    }

    /// Whether `image` (as a manifest names it) is one the plan mirrors.
    fn holds(&self, image: &str) -> bool {
        if self.targets.contains(image) {
            return true;
        }
        // `host/repo:tag@sha256:...` and `host/repo@sha256:...` run the digest.
        if let Some((name, digest)) = image.split_once('@') {
            let (host, repo, _) = wallaroo_model::split_reference(name);
            return self.by_digest.contains(&format!("{host}/{repo}@{digest}"));
        }
        false
    }
}

fn check(
    private: &str,
    rendered: &[RenderedImage],
    mirrored: &Mirrored,
    allowed: &BTreeSet<String>,
    keys: &ImageKeys,
    learned: &wallaroo_model::learn::Learned,
) -> Vec<String> {
    let mut problems = BTreeSet::new();
    for r in rendered {
        if allowed.contains(&r.image) {
            continue;
        }
        let at = format!("{} container {}", r.object, r.container);
        if r.field == "image" {
            if mirrored.holds(&r.image) {
                continue;
            }
            let reason = if r.image.starts_with(&format!("{private}/")) {
                "is in the private registry's name but not an image this plan mirrors".to_string()
            } else {
                "points outside the private registry".to_string()
            };
            // What the render taught about it, when no values could move it.
            let taught = learned
                .unsolved
                .iter()
                .find(|u| u.object == r.object && u.container == r.container)
                .map(|u| format!("; learned by render: {}", u.why))
                .unwrap_or_default();
            problems.insert(format!(
                "{at}: {} {reason}{}{taught}",
                r.image,
                hint(r, keys)
            ));
        } else {
            // An image named in args, command or env: only a mirrored image's vendor name is
            // known to be one.
            let (host, repo, _) =
                wallaroo_model::split_reference(r.image.rsplit('=').next().unwrap_or(&r.image));
            if mirrored.sources.contains(&format!("{host}/{repo}")) && !r.image.contains(private) {
                problems.insert(format!(
                    "{at}: {} names {} at its vendor{}",
                    r.field,
                    r.image,
                    hint(r, keys)
                ));
            }
        }
    }
    problems.into_iter().collect()
}

/// The values key that would move `r`'s image, where the chart tells: a subchart's image key
/// (its template lives under `charts/<name>/`), `global.imageRegistry`, or `imageRegistry`.
fn hint(r: &RenderedImage, keys: &ImageKeys) -> String {
    let sub: Vec<String> = r
        .template
        .as_deref()
        .map(|t| {
            let parts: Vec<&str> = t.split('/').collect();
            parts
                .windows(2)
                .filter(|w| w[0] == "charts")
                .map(|w| w[1].to_string())
                .collect()
        })
        .unwrap_or_default();
    let (_, repo, _) = wallaroo_model::split_reference(&r.image);
    let name = repo.rsplit('/').next().unwrap_or(&repo);
    let key = keys
        .keys
        .iter()
        .filter(|k| k.path.starts_with(&sub))
        .find(|k| k.repository.ends_with(name))
        .map(|k| {
            let path = k.path.join(".");
            if k.registry_key {
                format!("{path}.registry")
            } else {
                format!("{path}.repository")
            }
        });
    match key {
        Some(k) => format!(" (values key `{k}`)"),
        None if keys.global_image_registry => " (values key `global.imageRegistry`)".into(),
        None if sub.is_empty() => {
            " (the chart's own template: `imageRegistry` or a key of its values)".into()
        }
        None => String::new(),
    }
}
