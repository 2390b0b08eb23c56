//! The pull check's image: a tiny image wallaroo makes and pushes into the private registry
//! so that a plan can prove a node pulls from it before anything of the release is mirrored.
//! One small layer shared by every platform, a config per platform, an OCI index of them:
//! the platforms are the mirror's own (its `images { platforms }` filter, or the common ones
//! with no filter), so a node whose architecture the mirror leaves out fails to pull it just
//! as it would fail to pull the release.
//!
//! The content is fixed, so pushing it again moves nothing and its digest never changes.

use std::io::Write;

use reqwest::StatusCode;
use serde_json::json;

use crate::registry::{Manifest, OciError, Registry, sha256};

/// The repository, under the private registry's namespace.
pub const PROBE_NAME: &str = "wallaroo-pull-check";
/// Its tag (the pod pulls it by digest).
pub const PROBE_TAG: &str = "1";
/// The platforms of the probe when the mirror copies every platform.
pub const COMMON_PLATFORMS: [&str; 4] =
    ["linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x"];

/// The probe's layer: a gzip of a tar holding one small text file, made the same way
/// every time (no timestamps).
fn layer() -> (Vec<u8>, String) {
    let text = b"wallaroo pull check: this image exists to be pulled, not run\n";
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, "wallaroo-pull-check.txt", &text[..])
        .expect("in-memory tar");
    let tar = tar.into_inner().expect("in-memory tar");
    let diff_id = sha256(&tar);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).expect("in-memory gzip");
    (gz.finish().expect("in-memory gzip"), diff_id)
}

/// `os/arch[/variant]` as an OCI platform object; `None` for `all` and malformed entries.
fn platform(p: &str) -> Option<serde_json::Value> {
    let mut parts = p.split('/');
    let (os, arch) = (parts.next()?, parts.next()?);
    let mut v = json!({"os": os, "architecture": arch});
    if let Some(variant) = parts.next() {
        v["variant"] = json!(variant);
    }
    Some(v)
}

/// Pushes the probe into `repo` (e.g. `wallaroo/wallaroo-pull-check`) for `platforms`
/// (`os/arch[/variant]`; `all` means [`COMMON_PLATFORMS`]) and returns `host/repo@digest`.
pub async fn push_probe(
    registry: &Registry,
    repo: &str,
    platforms: &[String],
) -> Result<String, OciError> {
    let mut wanted: Vec<serde_json::Value> = platforms.iter().filter_map(|p| platform(p)).collect();
    if wanted.is_empty() || platforms.iter().any(|p| p == "all") {
        wanted = COMMON_PLATFORMS
            .iter()
            .filter_map(|p| platform(p))
            .collect();
    }
    let (gz, diff_id) = layer();
    let layer_digest = sha256(&gz);
    // Everything is made here first: when the tag already names this exact index (every
    // plan after the first), one HEAD request is all the check costs the registry.
    let mut blobs = vec![(layer_digest.clone(), gz.clone())];
    let mut manifests = Vec::new();
    let mut entries = Vec::new();
    for p in &wanted {
        let mut config = json!({
            "architecture": p["architecture"], "os": p["os"],
            "config": {"Labels": {"dev.wallaroo.purpose": "pull check"}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        if let Some(v) = p.get("variant") {
            config["variant"] = v.clone();
        }
        let config = serde_json::to_vec(&config).expect("JSON");
        let config_digest = sha256(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": gz.len()}],
        }))
        .expect("JSON");
        let manifest = Manifest {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: sha256(&manifest),
            bytes: manifest,
        };
        entries.push(json!({
            "mediaType": manifest.media_type, "digest": manifest.digest,
            "size": manifest.bytes.len(), "platform": p,
        }));
        blobs.push((config_digest, config));
        manifests.push(manifest);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .expect("JSON");
    let index = Manifest {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        digest: sha256(&index),
        bytes: index,
    };
    let reference = format!("{}/{repo}@{}", registry.host(), index.digest);
    if registry.manifest_digest(repo, PROBE_TAG).await?.as_deref() == Some(index.digest.as_str()) {
        return Ok(reference);
    }
    for (digest, bytes) in blobs {
        registry.put_small_blob(repo, &digest, bytes).await?;
    }
    for manifest in &manifests {
        registry
            .put_manifest(repo, &manifest.digest, manifest)
            .await?;
    }
    registry.put_manifest(repo, PROBE_TAG, &index).await?;
    Ok(reference)
}

impl Registry {
    /// Uploads a small blob in one request unless `repo` has it already.
    pub async fn put_small_blob(
        &self,
        repo: &str,
        digest: &str,
        bytes: Vec<u8>,
    ) -> Result<(), OciError> {
        if self.has_blob(repo, digest).await? {
            return Ok(());
        }
        let location = self.start_upload(repo).await?;
        let url = self.url(&location);
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}digest={digest}");
        let put = self
            .send(&Self::push(repo), |c| {
                c.put(&url)
                    .header("Content-Type", "application/octet-stream")
                    .body(bytes.clone())
            })
            .await?;
        if put.status() != StatusCode::CREATED {
            return Err(self.err(format!("upload {digest} to {repo}: {}", put.status())));
        }
        Ok(())
    }
}
