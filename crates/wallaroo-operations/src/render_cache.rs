//! What `helm template` told an earlier run, kept so that a plan whose chart, values, helm and
//! Kubernetes version did not change renders nothing (a no-op plan makes no `helm template`
//! call).
//!
//! Entries live in `.wallaroo-cache/` beside the lockfile, one small JSON file each, named by
//! a salted SHA-256 of everything the render reads (the chart's digest, the values with their
//! secrets, the release name and namespace, the Kubernetes version, the helm binary). Only
//! results that hold no secret are kept: the images discovery found, and that the air-gap
//! check passed. Never the rendered manifests (a chart's Secrets are in them). The salt is
//! random, kept beside the entries (0600), so a hash cannot be matched against a guessed
//! value elsewhere. A cache that cannot be read or written is no cache: nothing fails for it.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use wallaroo_oci::sha256;

/// The cache of one workspace.
#[derive(Debug, Clone)]
pub struct RenderCache {
    dir: PathBuf,
}

/// The inputs of one `helm template`, as far as a cache key needs them.
pub struct RenderInputs<'a> {
    pub helm: &'a Path,
    pub chart_digest: &'a str,
    pub release: &'a str,
    pub namespace: Option<&'a str>,
    pub kube_version: Option<&'a str>,
    pub values: Option<&'a serde_json::Value>,
}

impl<'a> RenderInputs<'a> {
    /// The inputs of `render` of the chart whose manifest digest is `chart_digest`.
    pub fn of(render: &'a wallaroo_oci::release::Render<'_>, chart_digest: &'a str) -> Self {
        RenderInputs {
            helm: render.helm,
            chart_digest,
            release: &render.release,
            namespace: render.namespace.as_deref(),
            kube_version: render.kube_version.as_deref(),
            values: render.values.as_ref(),
        }
    }
}

impl RenderCache {
    /// The cache beside the lockfile at `lockfile`.
    pub fn beside(lockfile: &Path) -> RenderCache {
        let dir = lockfile
            .parent()
            .map(|d| d.join(".wallaroo-cache"))
            .unwrap_or_else(|| ".wallaroo-cache".into());
        RenderCache { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The salt, made on first use.
    fn salt(&self) -> Option<String> {
        let path = self.dir.join("salt");
        if let Ok(s) = std::fs::read_to_string(&path)
            && s.trim().len() >= 32
        {
            return Some(s.trim().to_string());
        }
        std::fs::create_dir_all(&self.dir).ok()?;
        // Never committed with the spec, as pytest's and ruff's caches do it.
        let _ = std::fs::write(
            self.dir.join(".gitignore"),
            "# Made by wallaroo: a cache of helm template results; safe to delete.\n*\n",
        );
        let salt = wallaroo_state::new_salt();
        write_private(&path, salt.as_bytes()).ok()?;
        // Another run may have written one first: use whatever is there now.
        std::fs::read_to_string(&path)
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// The key of a render and of what else the result depends on (`extra`).
    pub fn key(&self, inputs: &RenderInputs<'_>, extra: &[&[u8]]) -> Option<String> {
        let helm = helm_identity(inputs.helm);
        let values = inputs.values.map(|v| v.to_string()).unwrap_or_default();
        let parts: Vec<&[u8]> = [
            helm.as_bytes(),
            inputs.chart_digest.as_bytes(),
            inputs.release.as_bytes(),
            inputs.namespace.unwrap_or("").as_bytes(),
            inputs.kube_version.unwrap_or("").as_bytes(),
            values.as_bytes(),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
        self.key_of(&parts)
    }

    /// The salted key of any inputs (each part counted apart from the next), for results
    /// other than renders that are kept here too (the last pull check that passed).
    pub fn key_of(&self, parts: &[&[u8]]) -> Option<String> {
        let salt = self.salt()?;
        let mut hasher = Sha256::new();
        for part in std::iter::once(salt.as_bytes()).chain(parts.iter().copied()) {
            // Length-prefixed, so that no two different inputs run together the same way.
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Some(
            hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }

    fn entry(&self, what: &str, key: &str) -> PathBuf {
        self.dir.join(format!("{what}-{key}.json"))
    }

    pub fn load<T: DeserializeOwned>(&self, what: &str, key: &str) -> Option<T> {
        let bytes = std::fs::read(self.entry(what, key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps `value` under `key`, replacing the other entries of `what` (one render of a
    /// workspace matters at a time).
    pub fn store<T: Serialize>(&self, what: &str, key: &str, value: &T) {
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(value) else {
            return;
        };
        let path = self.entry(what, key);
        if write_private(&path, &bytes).is_err() {
            return;
        }
        let prefix = format!("{what}-");
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p != path && name.starts_with(&prefix) && name.ends_with(".json") {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

impl RenderCache {
    /// The chart `reference` (`host/repo:version`) as an earlier run pulled it, when there is
    /// one whose bytes still match their digests: the chart's pin, as the lockfile pins image
    /// tags (a version pushed again upstream is read again with `--refresh-pins`).
    pub fn chart(&self, reference: &str) -> Option<wallaroo_oci::release::Chart> {
        let name = chart_entry(reference);
        let text = std::fs::read(self.dir.join(format!("{name}.json"))).ok()?;
        let entry: ChartEntry = serde_json::from_slice(&text).ok()?;
        if entry.reference != reference {
            return None;
        }
        let archive = std::fs::read(self.dir.join(format!("{name}.tgz"))).ok()?;
        let manifest = wallaroo_oci::Manifest {
            media_type: entry.media_type,
            digest: entry.digest,
            bytes: entry.manifest.into_bytes(),
        };
        let archive_digest = sha256(&archive);
        let layer_matches = manifest.json()["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| {
                l["mediaType"] == wallaroo_oci::release::CHART_LAYER
                    && l["digest"].as_str() == Some(archive_digest.as_str())
            });
        if sha256(&manifest.bytes) != manifest.digest || !layer_matches {
            return None;
        }
        Some(wallaroo_oci::release::Chart {
            repo: entry.repo,
            version: entry.version,
            manifest,
            metadata: entry.metadata,
            archive,
        })
    }

    /// Keeps `chart`, pulled as `reference`, for [`RenderCache::chart`].
    pub fn store_chart(&self, reference: &str, chart: &wallaroo_oci::release::Chart) {
        let Ok(manifest) = String::from_utf8(chart.manifest.bytes.clone()) else {
            return;
        };
        if std::fs::create_dir_all(&self.dir).is_err() || self.salt().is_none() {
            return;
        }
        let name = chart_entry(reference);
        let entry = ChartEntry {
            reference: reference.to_string(),
            repo: chart.repo.clone(),
            version: chart.version.clone(),
            media_type: chart.manifest.media_type.clone(),
            digest: chart.manifest.digest.clone(),
            manifest,
            metadata: chart.metadata.clone(),
        };
        let Ok(json) = serde_json::to_vec(&entry) else {
            return;
        };
        // The archive first: an entry is whole once its JSON is there.
        let _ = write_private(&self.dir.join(format!("{name}.tgz")), &chart.archive)
            .and_then(|()| write_private(&self.dir.join(format!("{name}.json")), &json));
    }
}

/// A pulled chart as the cache keeps it (its archive beside, in `.tgz`).
#[derive(serde::Serialize, serde::Deserialize)]
struct ChartEntry {
    reference: String,
    repo: String,
    version: String,
    media_type: String,
    digest: String,
    manifest: String,
    metadata: serde_json::Value,
}

/// The file name (without extension) of the chart `reference`.
fn chart_entry(reference: &str) -> String {
    let hex = sha256(reference.as_bytes());
    format!("chart-{}", &hex["sha256:".len().."sha256:".len() + 32])
}

/// The helm binary as a key sees it: its path, size and modification time (a new helm
/// renders anew).
fn helm_identity(helm: &Path) -> String {
    let found = if helm.components().count() > 1 {
        Some(helm.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(helm))
                .find(|p| p.is_file())
        })
    };
    let meta = found.as_ref().and_then(|p| std::fs::metadata(p).ok());
    format!(
        "{}:{}:{:?}",
        found.unwrap_or_else(|| helm.to_path_buf()).display(),
        meta.as_ref().map_or(0, |m| m.len()),
        meta.and_then(|m| m.modified().ok())
    )
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> wallaroo_oci::release::Chart {
        let archive = b"not really a tgz, but bytes with a digest".to_vec();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": "sha256:00", "size": 2},
            "layers": [{"mediaType": wallaroo_oci::release::CHART_LAYER, "digest": sha256(&archive), "size": archive.len()}],
        }))
        .unwrap();
        wallaroo_oci::release::Chart {
            repo: "release/2025-1/wallaroo".into(),
            version: "2025.1.0".into(),
            manifest: wallaroo_oci::Manifest {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: sha256(&manifest),
                bytes: manifest,
            },
            metadata: serde_json::json!({"name": "wallaroo"}),
            archive,
        }
    }

    #[test]
    fn a_kept_chart_comes_back_whole_and_never_when_its_bytes_changed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RenderCache::beside(&dir.path().join("wallaroo.lock"));
        let reference = "vendor.example.com/release/2025-1/wallaroo:2025.1.0";
        assert!(cache.chart(reference).is_none(), "nothing kept yet");
        let pulled = chart();
        cache.store_chart(reference, &pulled);
        let kept = cache.chart(reference).expect("kept");
        assert_eq!(kept.manifest.digest, pulled.manifest.digest);
        assert_eq!(kept.manifest.bytes, pulled.manifest.bytes);
        assert_eq!(kept.archive, pulled.archive);
        assert_eq!(kept.metadata, pulled.metadata);
        assert_eq!((&kept.repo, &kept.version), (&pulled.repo, &pulled.version));
        assert!(
            cache
                .chart("vendor.example.com/release/2025-1/wallaroo:2025.1.1")
                .is_none(),
            "another version is another pin"
        );
        // An archive altered on disk no longer matches the manifest's layer: read again.
        let name = chart_entry(reference);
        std::fs::write(cache.dir().join(format!("{name}.tgz")), b"altered").unwrap();
        assert!(cache.chart(reference).is_none());
        // A manifest altered in the entry no longer matches its digest.
        cache.store_chart(reference, &pulled);
        let json = cache.dir().join(format!("{name}.json"));
        let text = std::fs::read_to_string(&json)
            .unwrap()
            .replace("schemaVersion", "schemaversion");
        std::fs::write(&json, text).unwrap();
        assert!(cache.chart(reference).is_none());
    }

    #[test]
    fn a_key_changes_with_every_input_and_entries_hold_what_was_stored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RenderCache::beside(&dir.path().join("wallaroo.lock"));
        let values = serde_json::json!({"a": 1});
        let inputs = RenderInputs {
            helm: Path::new("helm"),
            chart_digest: "sha256:aa",
            release: "wallaroo",
            namespace: Some("wallaroo"),
            kube_version: Some("v1.33.0"),
            values: Some(&values),
        };
        let key = cache.key(&inputs, &[]).unwrap();
        assert_eq!(cache.key(&inputs, &[]).unwrap(), key, "stable");
        let other = serde_json::json!({"a": 2});
        let changed = [
            RenderInputs {
                chart_digest: "sha256:bb",
                ..inputs
            },
            RenderInputs {
                values: Some(&other),
                ..inputs
            },
            RenderInputs {
                kube_version: Some("v1.34.0"),
                ..inputs
            },
            RenderInputs {
                namespace: None,
                ..inputs
            },
        ];
        for c in &changed {
            assert_ne!(cache.key(c, &[]).unwrap(), key);
        }
        assert_ne!(cache.key(&inputs, &[b"x"]).unwrap(), key);

        assert_eq!(cache.load::<Vec<String>>("images", &key), None);
        cache.store("images", &key, &vec!["a".to_string()]);
        assert_eq!(
            cache.load::<Vec<String>>("images", &key),
            Some(vec!["a".to_string()])
        );
        let other_key = cache.key(&changed[0], &[]).unwrap();
        cache.store("images", &other_key, &vec!["b".to_string()]);
        assert_eq!(
            cache.load::<Vec<String>>("images", &key),
            None,
            "one entry of a kind"
        );
        assert!(
            std::fs::read_to_string(cache.dir().join(".gitignore"))
                .unwrap()
                .contains("\n*\n"),
            "the cache ignores itself in git"
        );
        // A value in the inputs is never in the cache's files, only its salted hash.
        for e in std::fs::read_dir(cache.dir()).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            assert!(!text.contains("v1.33.0"));
        }
    }
}
