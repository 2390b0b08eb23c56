//! Which images a release has, read from its chart so the list never goes stale: the chart
//! (an OCI artifact) is pulled from the vendor registry, and its image list is the union of
//! the `artifacthub.io/images` annotation, an `images.txt` in the chart, and every `image:`
//! of the manifests `helm template` renders from it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::registry::{ImageSource, Manifest, OciError, read_blob};

/// The media type of a Helm chart's content layer.
pub const CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// Charts larger than this are refused (the Wallaroo chart is well under 1 MiB).
const MAX_CHART: u64 = 64 << 20;

/// A chart pulled from a registry.
#[derive(Debug, Clone)]
pub struct Chart {
    /// `repo:version` in its registry.
    pub repo: String,
    pub version: String,
    pub manifest: Manifest,
    /// The chart's metadata (Chart.yaml as JSON), from the artifact's config.
    pub metadata: Value,
    /// The `.tgz` archive.
    pub archive: Vec<u8>,
}

/// Where an image of the release list was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// The chart's `artifacthub.io/images` annotation.
    Annotation,
    /// An `images.txt` file in the chart.
    ImagesFile,
    /// A manifest rendered by `helm template`.
    Template,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Annotation => "chart annotation",
            Origin::ImagesFile => "chart images.txt",
            Origin::Template => "helm template",
        })
    }
}

/// The release's images, each with where it was found.
pub type ReleaseImages = BTreeMap<String, BTreeSet<Origin>>;

/// Pulls `repo:version` (helm writes `+` in a version as `_` in the tag).
pub async fn pull_chart(
    registry: &dyn ImageSource,
    repo: &str,
    version: &str,
) -> Result<Chart, OciError> {
    let tag = version.replace('+', "_");
    let err = |message: String| OciError::Registry {
        registry: registry.name(),
        message,
    };
    let manifest = registry
        .manifest(repo, &tag)
        .await?
        .ok_or_else(|| err(format!("no chart {repo}:{tag}")))?;
    let json = manifest.json();
    let layer = json["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["mediaType"] == CHART_LAYER)
        .and_then(|l| l["digest"].as_str())
        .ok_or_else(|| {
            err(format!(
                "{repo}:{tag} is not a Helm chart (no {CHART_LAYER} layer)"
            ))
        })?
        .to_string();
    // The archive and the metadata at once: one round trip, not two.
    let config = async {
        match json["config"]["digest"].as_str() {
            Some(d) => Ok::<_, OciError>(Some(read_blob(registry, repo, d, 1 << 20).await?)),
            None => Ok(None),
        }
    };
    let (archive, config) =
        futures_util::future::join(read_blob(registry, repo, &layer, MAX_CHART), config).await;
    let archive = archive?;
    let metadata = match config? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        None => Value::Null,
    };
    Ok(Chart {
        repo: repo.to_string(),
        version: version.to_string(),
        manifest,
        metadata,
        archive,
    })
}

/// The images the chart lists itself: its annotation and its `images.txt`.
pub fn listed_images(chart: &Chart) -> Result<ReleaseImages, OciError> {
    let mut images = ReleaseImages::new();
    let err = |message: String| OciError::Chart {
        chart: format!("{}:{}", chart.repo, chart.version),
        message,
    };
    if let Some(text) = chart.metadata["annotations"]["artifacthub.io/images"].as_str() {
        #[derive(serde::Deserialize)]
        struct Entry {
            image: String,
        }
        let entries: Vec<Entry> = serde_saphyr::from_str(text)
            .map_err(|e| err(format!("the artifacthub.io/images annotation: {e}")))?;
        for e in entries {
            images
                .entry(e.image.trim().to_string())
                .or_default()
                .insert(Origin::Annotation);
        }
    }
    let gz = flate2::read::GzDecoder::new(chart.archive.as_slice());
    let mut tar = tar::Archive::new(gz);
    for entry in tar.entries().map_err(|e| err(e.to_string()))? {
        let mut entry = entry.map_err(|e| err(e.to_string()))?;
        let path = entry.path().map_err(|e| err(e.to_string()))?.into_owned();
        // `<chart>/images.txt`, not a subchart's.
        if path.components().count() == 2 && path.ends_with("images.txt") {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| err(e.to_string()))?;
            for line in text.lines().map(str::trim) {
                if !line.is_empty() && !line.starts_with('#') {
                    images
                        .entry(line.to_string())
                        .or_default()
                        .insert(Origin::ImagesFile);
                }
            }
        }
    }
    Ok(images)
}

/// The documents of the chart's `crds/` directories (its own and its unpacked subcharts'):
/// what helm installs before the first install and never upgrades.
pub fn chart_crds(chart: &Chart) -> Result<Vec<String>, OciError> {
    let err = |m: String| OciError::Chart {
        chart: format!("{}:{}", chart.repo, chart.version),
        message: format!("reading crds/: {m}"),
    };
    let gz = flate2::read::GzDecoder::new(chart.archive.as_slice());
    let mut tar = tar::Archive::new(gz);
    let mut out = Vec::new();
    for entry in tar.entries().map_err(|e| err(e.to_string()))? {
        let mut entry = entry.map_err(|e| err(e.to_string()))?;
        let path = entry.path().map_err(|e| err(e.to_string()))?.into_owned();
        let parts: Vec<String> = path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let in_crds = parts.len() >= 3
            && parts[parts.len() - 2] == "crds"
            && (parts.len() == 3 || parts[parts.len() - 4] == "charts");
        let yaml = parts
            .last()
            .is_some_and(|l| l.ends_with(".yaml") || l.ends_with(".yml") || l.ends_with(".json"));
        if in_crds && yaml {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| err(e.to_string()))?;
            out.push(text);
        }
    }
    Ok(out)
}

/// An object in a chart's (or a subchart's) `values.yaml` that names an image by parts: a
/// `repository`, with a `registry` beside it or not (the Bitnami and most charts' way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageKey {
    /// Where the object is in the release's values: a subchart's keys under its name.
    pub path: Vec<String>,
    pub registry: Option<String>,
    /// Whether the object has a `registry` key at all (charts often leave it null and take a
    /// default registry in their templates).
    pub registry_key: bool,
    pub repository: String,
}

/// The image keys a chart declares, and whether it has `global.imageRegistry`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageKeys {
    pub keys: Vec<ImageKey>,
    pub global_image_registry: bool,
}

/// Reads the image keys of a chart and of its subcharts (unpacked under `charts/`, or packaged
/// there as `.tgz`), from their `values.yaml`.
pub fn image_keys(chart: &Chart) -> Result<ImageKeys, OciError> {
    fn walk(v: &serde_json::Value, at: &mut Vec<String>, keys: &mut Vec<ImageKey>) {
        if let serde_json::Value::Object(m) = v {
            if let Some(repository) = m.get("repository").and_then(|r| r.as_str())
                && !repository.is_empty()
            {
                keys.push(ImageKey {
                    path: at.clone(),
                    registry: m
                        .get("registry")
                        .and_then(|r| r.as_str())
                        .filter(|r| !r.is_empty())
                        .map(String::from),
                    registry_key: m.contains_key("registry"),
                    repository: repository.to_string(),
                });
            }
            for (k, v) in m {
                at.push(k.clone());
                walk(v, at, keys);
                at.pop();
            }
        }
    }
    let mut out = ImageKeys::default();
    each_values_file(chart, &mut |sub, values| {
        if sub.is_empty() {
            out.global_image_registry |= values["global"]
                .as_object()
                .is_some_and(|g| g.contains_key("imageRegistry"));
        }
        walk(&values, &mut sub.to_vec(), &mut out.keys);
    })?;
    Ok(out)
}

/// The chart's default values as the release sees them: its own `values.yaml`, and each
/// subchart's under the subchart's name.
pub fn default_values(chart: &Chart) -> Result<serde_json::Value, OciError> {
    let mut files: Vec<(Vec<String>, serde_json::Value)> = Vec::new();
    each_values_file(chart, &mut |sub, values| files.push((sub.to_vec(), values)))?;
    // A parent's values for a subchart win over the subchart's own, as in helm: parents
    // first, each file under what is already there.
    files.sort_by_key(|(sub, _)| sub.len());
    let mut tree = serde_json::json!({});
    for (sub, values) in files {
        let mut node = &mut tree;
        for seg in &sub {
            if !node.is_object() {
                *node = serde_json::json!({});
            }
            node = node
                .as_object_mut()
                .expect("made an object above")
                .entry(seg.clone())
                .or_insert(serde_json::Value::Null);
        }
        let mut merged = values;
        if node.is_object() {
            wallaroo_engine::json::merge(&mut merged, node);
        }
        *node = merged;
    }
    Ok(tree)
}

/// A `values.yaml` as helm reads it: a key given twice keeps its last value (lws's chart
/// repeats `tag`). Some charts carry more comment lines in a row than the YAML parser
/// buffers while it looks ahead (node-feature-discovery's); those are read again without
/// their whole-line comments, which carry no value.
fn parse_values(body: &[u8]) -> Result<serde_json::Value, serde_saphyr::Error> {
    let options = || {
        serde_saphyr::options! {
            duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
        }
    };
    match serde_saphyr::from_slice_with_options(body, options()) {
        Ok(v) => Ok(v),
        Err(first) => {
            let text = String::from_utf8_lossy(body);
            let bare: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect();
            serde_saphyr::from_str_with_options(&bare, options()).map_err(|_| first)
        }
    }
}

/// Calls `visit` with each `values.yaml` of a chart and its subcharts, and where in the
/// release's values it sits (empty for the chart's own).
fn each_values_file(
    chart: &Chart,
    visit: &mut dyn FnMut(&[String], serde_json::Value),
) -> Result<(), OciError> {
    read_values(&chart.archive, &[], visit).map_err(|message| OciError::Chart {
        chart: format!("{}:{}", chart.repo, chart.version),
        message,
    })
}

fn read_values(
    tgz: &[u8],
    prefix: &[String],
    visit: &mut dyn FnMut(&[String], serde_json::Value),
) -> Result<(), String> {
    let gz = flate2::read::GzDecoder::new(tgz);
    let mut tar = tar::Archive::new(gz);
    for entry in tar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let parts: Vec<String> = path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        // `<chart>/values.yaml`, `<chart>/charts/<sub>/.../values.yaml`, `<chart>/charts/x.tgz`.
        let mut body = Vec::new();
        if parts.len() >= 2 && parts.last().is_some_and(|l| l == "values.yaml") {
            let mut sub = prefix.to_vec();
            let inner = &parts[1..parts.len() - 1];
            if !inner.len().is_multiple_of(2) || inner.chunks(2).any(|c| c[0] != "charts") {
                continue;
            }
            sub.extend(inner.chunks(2).map(|c| c[1].clone()));
            entry.read_to_end(&mut body).map_err(|e| e.to_string())?;
            let values = parse_values(&body).map_err(|e| format!("{}: {e}", path.display()))?;
            visit(&sub, values);
        } else if parts.len() == 3 && parts[1] == "charts" && parts[2].ends_with(".tgz") {
            entry.read_to_end(&mut body).map_err(|e| e.to_string())?;
            // A packaged subchart: its files sit under its own name.
            let name = {
                let gz = flate2::read::GzDecoder::new(body.as_slice());
                let mut t = tar::Archive::new(gz);
                t.entries()
                    .map_err(|e| e.to_string())?
                    .filter_map(Result::ok)
                    .find_map(|e| {
                        e.path().ok().and_then(|p| {
                            p.components()
                                .next()
                                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        })
                    })
            };
            if let Some(name) = name {
                let mut sub = prefix.to_vec();
                sub.push(name);
                read_values(&body, &sub, visit)?;
            }
        }
    }
    Ok(())
}

/// The image keys' values learned from two renders side by side (see
/// [`wallaroo_model::learn`]): `with_defaults` renders the chart's own image keys (the
/// vendor's references), `with_markers` a marker in every candidate key. `target_of` gives the
/// mirrored target of a vendor reference.
pub async fn learn_image_values(
    chart: &Chart,
    with_defaults: &Render<'_>,
    with_markers: &Render<'_>,
    markers: &wallaroo_model::learn::Markers,
    defaults: &serde_json::Value,
    already: &serde_json::Value,
    target_of: &dyn Fn(&str) -> Option<String>,
) -> Result<wallaroo_model::learn::Learned, OciError> {
    let (a, b) = tokio::join!(
        render_manifests(with_defaults, chart),
        render_manifests(with_markers, chart),
    );
    let err = |message: String| OciError::Chart {
        chart: format!("{}:{}", chart.repo, chart.version),
        message,
    };
    let default = observed(&a?).map_err(err)?;
    let marked = observed(&b?).map_err(err)?;
    Ok(wallaroo_model::learn::solve(
        markers, &default, &marked, defaults, already, target_of,
    ))
}

/// Each container's image, and each string of its args, command and env (an operator told
/// its images there), numbered so that two renders pair up.
fn observed(yaml: &str) -> Result<Vec<wallaroo_model::learn::Observed>, String> {
    let mut seen: std::collections::BTreeMap<(String, String, String), usize> = Default::default();
    Ok(rendered_containers(yaml)?
        .into_iter()
        .map(|r| {
            let n = seen
                .entry((r.object.clone(), r.container.clone(), r.field.clone()))
                .or_default();
            *n += 1;
            let (field, reference) = if r.field == "image" {
                (r.field, r.image)
            } else {
                let named = r.image.rsplit('=').next().unwrap_or(&r.image).to_string();
                (format!("{} #{n}", r.field), named)
            };
            wallaroo_model::learn::Observed {
                object: r.object,
                container: r.container,
                field,
                reference,
            }
        })
        .collect())
}

/// Every `image:` string of the containers in rendered manifests (several YAML documents).
pub fn images_in_manifests(yaml: &str) -> Result<BTreeSet<String>, String> {
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "image"
                        && let Some(s) = v.as_str()
                    {
                        out.insert(s.trim().to_string());
                    } else {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(s) => s.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    let docs: Vec<Option<serde_json::Value>> =
        serde_saphyr::from_multiple(yaml).map_err(|e| e.to_string())?;
    for v in docs.iter().flatten() {
        walk(v, &mut out);
    }
    out.retain(|s| !s.is_empty());
    Ok(out)
}

/// One image a rendered object runs or names: in a container's `image`, or in its `args`,
/// `command` or `env` (operators that start pods later are often told their images there).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RenderedImage {
    /// `Kind/name` of the object.
    pub object: String,
    /// The template it came from (`chart/charts/minio/templates/x.yaml`), from helm's
    /// `# Source:` line.
    pub template: Option<String>,
    pub container: String,
    /// `image`, `args`, `command` or `env NAME`.
    pub field: String,
    pub image: String,
}

/// Every container of every object in rendered manifests (pods, workloads, CronJobs: any
/// `containers`, `initContainers` or `ephemeralContainers` list), with its image and the
/// strings of its args, command and env values (all of them: the caller decides which name
/// an image).
pub fn rendered_containers(yaml: &str) -> Result<Vec<RenderedImage>, String> {
    fn walk(
        v: &serde_json::Value,
        object: &str,
        template: &Option<String>,
        out: &mut Vec<RenderedImage>,
    ) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if matches!(
                        k.as_str(),
                        "containers" | "initContainers" | "ephemeralContainers"
                    ) && let Some(list) = v.as_array()
                    {
                        for c in list {
                            let name = c["name"].as_str().unwrap_or("").to_string();
                            let mut push = |field: String, image: &str| {
                                out.push(RenderedImage {
                                    object: object.to_string(),
                                    template: template.clone(),
                                    container: name.clone(),
                                    field,
                                    image: image.trim().to_string(),
                                })
                            };
                            if let Some(i) = c["image"].as_str() {
                                push("image".into(), i);
                            }
                            for field in ["args", "command"] {
                                for a in c[field].as_array().into_iter().flatten() {
                                    if let Some(a) = a.as_str() {
                                        push(field.into(), a);
                                    }
                                }
                            }
                            for e in c["env"].as_array().into_iter().flatten() {
                                if let Some(value) = e["value"].as_str() {
                                    push(
                                        format!("env {}", e["name"].as_str().unwrap_or("")),
                                        value,
                                    );
                                }
                            }
                        }
                    } else {
                        walk(v, object, template, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, object, template, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for doc in split_documents(yaml) {
        let template = doc
            .lines()
            .find_map(|l| l.strip_prefix("# Source: "))
            .map(|s| s.trim().to_string());
        let docs: Vec<Option<serde_json::Value>> =
            serde_saphyr::from_multiple(doc).map_err(|e| e.to_string())?;
        for v in docs.iter().flatten() {
            let object = format!(
                "{}/{}",
                v["kind"].as_str().unwrap_or("?"),
                v["metadata"]["name"].as_str().unwrap_or("?")
            );
            walk(v, &object, &template, &mut out);
        }
    }
    Ok(out)
}

/// The documents of a multi-document YAML stream, as text (each keeps its comments).
fn split_documents(yaml: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in yaml.split_inclusive('\n') {
        if line.trim_end() == "---" {
            docs.push(&yaml[start..at]);
            start = at + line.len();
        }
        at += line.len();
    }
    docs.push(&yaml[start..]);
    docs.into_iter().filter(|d| !d.trim().is_empty()).collect()
}

/// How `helm template` renders: the helm binary, the Kubernetes version to render for (the
/// cluster's; helm's default, 1.20, fails charts that require a newer one), and the values,
/// release name and namespace the release is installed with, so that a chart whose templates
/// `fail` without required values renders, and images behind a setting are found.
#[derive(Debug, Clone)]
pub struct Render<'a> {
    pub helm: &'a Path,
    pub kube_version: Option<String>,
    /// Values to render with, written to a file only this user reads (never a command line).
    pub values: Option<serde_json::Value>,
    /// The release name (`wallaroo` when empty) and namespace.
    pub release: String,
    pub namespace: Option<String>,
    /// Secret strings among the values: replaced by `(sensitive)` in any error helm prints.
    pub redact: Vec<String>,
}

/// The images of the manifests `helm template` renders from the chart.
pub async fn rendered_images(
    render: &Render<'_>,
    chart: &Chart,
) -> Result<BTreeSet<String>, OciError> {
    let yaml = render_manifests(render, chart).await?;
    images_in_manifests(&yaml).map_err(|m| OciError::Chart {
        chart: format!("{}:{}", chart.repo, chart.version),
        message: format!("helm template: {m}"),
    })
}

/// What `helm template` prints for the chart with `render`'s values.
pub async fn render_manifests(render: &Render<'_>, chart: &Chart) -> Result<String, OciError> {
    let helm = render.helm;
    let scrub = |m: String| {
        render
            .redact
            .iter()
            .filter(|s| !s.is_empty())
            .fold(m, |m, s| m.replace(s.as_str(), "(sensitive)"))
    };
    let err = |m: String| OciError::Chart {
        chart: format!("{}:{}", chart.repo, chart.version),
        message: format!("helm template: {}", scrub(m)),
    };
    let dir = tempfile::tempdir().map_err(|e| err(e.to_string()))?;
    let archive = dir.path().join("chart.tgz");
    std::fs::write(&archive, &chart.archive).map_err(|e| err(e.to_string()))?;
    let release = if render.release.is_empty() {
        "wallaroo"
    } else {
        render.release.as_str()
    };
    let mut cmd = tokio::process::Command::new(helm);
    cmd.arg("template").arg(release).arg(&archive);
    if let Some(v) = &render.kube_version {
        cmd.arg("--kube-version").arg(v);
    }
    if let Some(ns) = &render.namespace {
        cmd.arg("--namespace").arg(ns);
    }
    if let Some(values) = &render.values {
        // The temporary directory is the user's alone (0700); the file is 0600 as well.
        let path = dir.path().join("values.json");
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
        let mut f = file.open(&path).map_err(|e| err(e.to_string()))?;
        std::io::Write::write_all(&mut f, values.to_string().as_bytes())
            .map_err(|e| err(e.to_string()))?;
        cmd.arg("--values").arg(&path);
    }
    let out = cmd
        .env("HELM_CACHE_HOME", dir.path().join("cache"))
        .env("HELM_CONFIG_HOME", dir.path().join("config"))
        .output()
        .await
        .map_err(|e| err(format!("cannot run {}: {e}", helm.display())))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The release's image list: what the chart lists, plus what its templates render (skipped
/// when `render` is `None`).
pub async fn discover(
    chart: &Chart,
    render: Option<&Render<'_>>,
) -> Result<ReleaseImages, OciError> {
    let mut images = listed_images(chart)?;
    if let Some(render) = render {
        for image in rendered_images(render, chart).await? {
            images.entry(image).or_default().insert(Origin::Template);
        }
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `helm template` prints for real charts: comment-only and empty documents,
    /// numeric keys (a tcp-services ConfigMap), block scalars, tags, YAML 1.1 words.
    #[test]
    fn images_are_found_in_manifests_as_helm_prints_them() {
        let yaml = r#"---
# Source: chart/templates/empty.yaml
---
# Source: chart/templates/tcp.yaml
apiVersion: v1
kind: ConfigMap
data:
  8080: "default/svc:80"
  on: yes
  script: |
    image: not-a-container-field
---
{kind: Pod, spec: {containers: [{name: a, image: !!str "r.io/init:1 "}, {name: b, image: "r.io/main@sha256:0123", ports: [{containerPort: 8080}]}]}}
---
"#;
        let found = images_in_manifests(yaml).unwrap();
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            ["r.io/init:1", "r.io/main@sha256:0123"]
        );
        let err = images_in_manifests("a: [unclosed").unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn images_are_found_in_rendered_manifests_of_every_shape() {
        let yaml = r#"
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      initContainers:
        - {name: init, image: "reg.example/wallaroo/init:1"}
      containers:
        - name: a
          image: reg.example/wallaroo/a:1
---
# a comment only
---
kind: CronJob
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - image: 'reg.example/wallaroo/b@sha256:abcd'
"#;
        let got: Vec<String> = images_in_manifests(yaml).unwrap().into_iter().collect();
        assert_eq!(
            got,
            [
                "reg.example/wallaroo/a:1",
                "reg.example/wallaroo/b@sha256:abcd",
                "reg.example/wallaroo/init:1"
            ]
        );
        assert!(images_in_manifests("a: [").is_err());
    }

    #[test]
    fn the_annotation_and_the_images_file_are_read() {
        let mut tgz = Vec::new();
        {
            let gz = flate2::write::GzEncoder::new(&mut tgz, flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            for (path, body) in [
                (
                    "wallaroo/images.txt",
                    "# listed\nreg.example/w/x:1\n\nreg.example/w/y:1\n",
                ),
                (
                    "wallaroo/charts/sub/images.txt",
                    "reg.example/w/not-ours:1\n",
                ),
            ] {
                let mut h = tar::Header::new_gnu();
                h.set_size(body.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                tar.append_data(&mut h, path, body.as_bytes()).unwrap();
            }
            tar.into_inner().unwrap().finish().unwrap();
        }
        let chart = Chart {
            repo: "w/chart".into(),
            version: "1".into(),
            manifest: Manifest {
                media_type: String::new(),
                digest: String::new(),
                bytes: Vec::new(),
            },
            metadata: serde_json::json!({"annotations": {"artifacthub.io/images":
                "- name: x\n  image: reg.example/w/x:1\n- name: z\n  image: reg.example/w/z:1\n"}}),
            archive: tgz,
        };
        let images = listed_images(&chart).unwrap();
        let show: Vec<(String, Vec<Origin>)> = images
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect();
        assert_eq!(
            show,
            vec![
                (
                    "reg.example/w/x:1".to_string(),
                    vec![Origin::Annotation, Origin::ImagesFile]
                ),
                ("reg.example/w/y:1".to_string(), vec![Origin::ImagesFile]),
                ("reg.example/w/z:1".to_string(), vec![Origin::Annotation]),
            ]
        );
    }
}
