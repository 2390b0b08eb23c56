//! Mirroring one image: every platform of an index, blobs before manifests, digests checked.

use std::collections::BTreeSet;

use crate::registry::{Manifest, OciError, Registry};

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyReport {
    /// The digest of the top manifest (index or image), identical in both registries.
    pub digest: String,
    pub blobs_copied: usize,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
    pub bytes_copied: u64,
}

/// Copies `src_repo:reference` from `src` to `dst_repo:tag` on `dst`. Manifests are pushed
/// byte for byte (so digests are the same), each only after all it refers to is present;
/// a blob whose content does not match its digest stops the copy before its manifest.
/// `mount_from` names repositories of `dst` that may already hold blobs.
pub async fn copy(
    src: &Registry,
    src_repo: &str,
    reference: &str,
    dst: &Registry,
    dst_repo: &str,
    tag: &str,
    mount_from: &[String],
) -> Result<CopyReport, OciError> {
    let top = src
        .manifest(src_repo, reference)
        .await?
        .ok_or_else(|| OciError::Registry {
            registry: src.host().to_string(),
            message: format!("{src_repo}:{reference} does not exist"),
        })?;
    let mut report = CopyReport {
        digest: top.digest.clone(),
        ..CopyReport::default()
    };
    let mut seen = BTreeSet::new();
    if top.is_index() {
        for child in top.json()["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let digest = child["digest"].as_str().unwrap_or_default().to_string();
            let manifest =
                src.manifest(src_repo, &digest)
                    .await?
                    .ok_or_else(|| OciError::Registry {
                        registry: src.host().to_string(),
                        message: format!(
                            "{src_repo}@{digest}, listed in the index, does not exist"
                        ),
                    })?;
            copy_blobs(
                src,
                src_repo,
                &manifest,
                dst,
                dst_repo,
                mount_from,
                &mut seen,
                &mut report,
            )
            .await?;
            dst.put_manifest(dst_repo, &digest, &manifest).await?;
        }
    } else {
        copy_blobs(
            src,
            src_repo,
            &top,
            dst,
            dst_repo,
            mount_from,
            &mut seen,
            &mut report,
        )
        .await?;
    }
    dst.put_manifest(dst_repo, tag, &top).await?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn copy_blobs(
    src: &Registry,
    src_repo: &str,
    manifest: &Manifest,
    dst: &Registry,
    dst_repo: &str,
    mount_from: &[String],
    seen: &mut BTreeSet<String>,
    report: &mut CopyReport,
) -> Result<(), OciError> {
    let json = manifest.json();
    let mut digests: Vec<String> = json["config"]["digest"]
        .as_str()
        .map(String::from)
        .into_iter()
        .collect();
    digests.extend(
        json["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(String::from)),
    );
    for digest in digests {
        if !seen.insert(digest.clone()) {
            continue;
        }
        if dst.has_blob(dst_repo, &digest).await? {
            report.blobs_present += 1;
            continue;
        }
        let mut mounted = false;
        for from in mount_from.iter().filter(|f| f.as_str() != dst_repo) {
            if dst.mount(dst_repo, &digest, from).await? {
                mounted = true;
                break;
            }
        }
        if mounted {
            report.blobs_mounted += 1;
            continue;
        }
        report.bytes_copied += dst.put_blob_from(dst_repo, &digest, src, src_repo).await?;
        report.blobs_copied += 1;
    }
    Ok(())
}
