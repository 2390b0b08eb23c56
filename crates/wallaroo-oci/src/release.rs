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
    let archive = read_blob(registry, repo, &layer, MAX_CHART).await?;
    let metadata = match json["config"]["digest"].as_str() {
        Some(d) => {
            let bytes = read_blob(registry, repo, d, 1 << 20).await?;
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        }
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
    images_in_manifests(&String::from_utf8_lossy(&out.stdout)).map_err(err)
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
