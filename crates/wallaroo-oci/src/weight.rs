//! What an image weighs: the blobs a copy of it sends at most (its config and layers, of each
//! platform the copy keeps), by digest with their sizes, read from its manifests. A plan sums
//! them over the images it creates or changes, so that an operator can check the registry's
//! volume before apply fills it.

use std::collections::BTreeMap;

use crate::copy::{blob_sizes, select_platforms};
use crate::registry::{ImageSource, OciError};

/// The blobs of `repo@reference` on `src` that a copy keeping `platforms` sends at most.
pub async fn image_blobs(
    src: &dyn ImageSource,
    repo: &str,
    reference: &str,
    platforms: &[String],
) -> Result<BTreeMap<String, u64>, OciError> {
    let Some(top) = src.manifest(repo, reference).await? else {
        return Ok(BTreeMap::new());
    };
    let top = select_platforms(&top, platforms);
    if !top.is_index() {
        return Ok(blob_sizes(&top).into_iter().collect());
    }
    let children: Vec<String> = top.json()["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["digest"].as_str().map(String::from))
        .collect();
    let reads = children.iter().map(|d| src.manifest(repo, d));
    let mut blobs = BTreeMap::new();
    for child in futures_util::future::join_all(reads).await {
        if let Some(m) = child? {
            blobs.extend(blob_sizes(&m));
        }
    }
    Ok(blobs)
}
