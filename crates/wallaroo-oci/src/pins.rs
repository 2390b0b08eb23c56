//! Digest pins: which manifest a source tag meant when it was first planned.
//!
//! A pin is resolved once (a GET of the source manifest), kept in the lockfile as the image
//! resource's `source_digest` and `digest`, and reused by every later plan without asking the
//! vendor again, so a re-tag upstream changes nothing until `--refresh-pins`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use wallaroo_model::split_reference;

use crate::copy::select_platforms;
use crate::registry::{ImageSource, OciError};

/// A resolved source image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The source manifest's digest.
    pub source_digest: String,
    /// What the target tag holds after a copy with the given platforms.
    pub digest: String,
    pub platforms: Vec<String>,
}

/// One image to pin: its source reference and the platforms it is copied with.
#[derive(Debug, Clone)]
pub struct PinRequest {
    pub source: String,
    pub platforms: Vec<String>,
}

/// Resolves `source` (a tag, or a digest) on `registry`.
pub async fn resolve(
    registry: &dyn ImageSource,
    source: &str,
    platforms: &[String],
) -> Result<Pin, OciError> {
    let (_, repo, reference) = split_reference(source);
    let top = registry
        .manifest(&repo, &reference)
        .await?
        .ok_or_else(|| OciError::Registry {
            registry: registry.name(),
            message: format!("{repo}:{reference} does not exist"),
        })?;
    Ok(Pin {
        digest: select_platforms(&top, platforms).digest,
        source_digest: top.digest,
        platforms: platforms.to_vec(),
    })
}

/// The pins for `requests`: `prior` ones where the source and platforms are unchanged (unless
/// `refresh`), the others resolved, 32 at a time (one round trip each, so on a slow link
/// the number in flight is what counts). `registries` are the source registries by
/// host.
pub async fn resolve_all(
    registries: &BTreeMap<String, Arc<dyn ImageSource>>,
    requests: &[PinRequest],
    prior: &BTreeMap<String, Pin>,
    refresh: bool,
) -> Result<BTreeMap<String, Pin>, OciError> {
    let mut pins = BTreeMap::new();
    let mut todo = Vec::new();
    for r in requests {
        match prior.get(&r.source) {
            Some(p) if !refresh && p.platforms == r.platforms => {
                pins.insert(r.source.clone(), p.clone());
            }
            _ => todo.push(r.clone()),
        }
    }
    let resolved: Vec<Result<(String, Pin), OciError>> = futures_util::stream::iter(todo)
        .map(|r| async move {
            let (host, _, _) = split_reference(&r.source);
            let registry = registries.get(&host).ok_or_else(|| OciError::Registry {
                registry: host.clone(),
                message: format!(
                    "no credentials or address are configured to read {}",
                    r.source
                ),
            })?;
            let pin = resolve(registry.as_ref(), &r.source, &r.platforms).await?;
            Ok((r.source, pin))
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in resolved {
        let (source, pin) = r?;
        pins.insert(source, pin);
    }
    Ok(pins)
}

/// The pins recorded in image attributes (the lockfile's `image[...]` resources, or a saved
/// plan's), by source reference.
pub fn recorded<'a>(
    attrs: impl IntoIterator<Item = &'a wallaroo_engine::Attrs>,
) -> BTreeMap<String, Pin> {
    let mut pins = BTreeMap::new();
    for a in attrs {
        let text = |k: &str| {
            a.get(k)
                .and_then(serde_json::Value::as_str)
                .map(String::from)
        };
        if let (Some(source), Some(source_digest), Some(digest)) =
            (text("source"), text("source_digest"), text("digest"))
        {
            let platforms = a
                .get("platforms")
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .unwrap_or_default();
            pins.insert(
                source,
                Pin {
                    source_digest,
                    digest,
                    platforms,
                },
            );
        }
    }
    pins
}
