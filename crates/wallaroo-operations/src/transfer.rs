//! What a plan's mirroring sends at most: the blobs of every image it creates or changes, read
//! from the source's manifests (one read per image, none for a plan that mirrors nothing), kept
//! in the plan as `transfer` so that an operator can check the private registry's volume before
//! apply fills it, and so that an apply that stopped can say what is left.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::json;
use wallaroo_engine::{Action, DesiredSet, Plan};
use wallaroo_oci::ImageSource;

/// Sets the plan's `transfer` input: `bytes_at_most` (each blob counted once) and, by image
/// address, what that image's blobs weigh. An image whose manifests cannot be read is left out.
pub(crate) async fn set_transfer(
    plan: &mut Plan,
    desired: &DesiredSet,
    sources: &BTreeMap<String, Arc<dyn ImageSource>>,
) {
    let todo: Vec<(String, String, String, String, Vec<String>)> = plan
        .changes
        .iter()
        .filter(|c| c.kind == "image" && matches!(c.action, Action::Create | Action::Update))
        .filter_map(|c| {
            let attrs = &desired.resources.get(&c.address)?.attrs;
            let source = attrs.get("source")?.as_str()?;
            let (host, repo, tag) = wallaroo_model::split_reference(source);
            let reference = attrs
                .get("source_digest")
                .and_then(|v| v.as_str())
                .map(String::from)
                .unwrap_or(tag);
            let platforms = attrs
                .get("platforms")
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .unwrap_or_default();
            Some((c.address.to_string(), host, repo, reference, platforms))
        })
        .collect();
    if todo.is_empty() {
        return;
    }
    let weighed = weigh(todo, sources).await;
    let mut all = BTreeMap::new();
    let mut images = serde_json::Map::new();
    for (address, blobs) in weighed {
        images.insert(address, json!(blobs.values().sum::<u64>()));
        all.extend(blobs);
    }
    plan.inputs.insert(
        "transfer".into(),
        json!({"bytes_at_most": all.values().sum::<u64>(), "images": images}),
    );
}

/// The blobs of each (key, host, repository, reference, platforms), 16 images at a time; an
/// image whose manifests cannot be read is left out.
async fn weigh(
    todo: Vec<(String, String, String, String, Vec<String>)>,
    sources: &BTreeMap<String, Arc<dyn ImageSource>>,
) -> Vec<(String, BTreeMap<String, u64>)> {
    futures_util::stream::iter(todo)
        .map(|(key, host, repo, reference, platforms)| async move {
            let src = sources.get(&host)?;
            let blobs =
                wallaroo_oci::weight::image_blobs(src.as_ref(), &repo, &reference, &platforms)
                    .await
                    .ok()?;
            Some((key, blobs))
        })
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect()
        .await
}

/// What the release's images weigh in all (each blob once), for `wallaroo preflight`: the
/// number of images weighed and the bytes.
pub(crate) async fn release_weight(
    images: &[wallaroo_model::MirrorImage],
    sources: &BTreeMap<String, Arc<dyn ImageSource>>,
    platforms: &[String],
) -> (usize, u64) {
    let todo = images
        .iter()
        .map(|i| {
            let (host, repo, tag) = wallaroo_model::split_reference(&i.source);
            let reference = i
                .pin
                .as_ref()
                .map(|p| p.source_digest.clone())
                .unwrap_or(tag);
            (i.source.clone(), host, repo, reference, platforms.to_vec())
        })
        .collect();
    let weighed = weigh(todo, sources).await;
    let count = weighed.len();
    let all: BTreeMap<String, u64> = weighed.into_iter().flat_map(|(_, b)| b).collect();
    (count, all.values().sum())
}
