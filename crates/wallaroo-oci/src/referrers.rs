//! Signatures, SBOMs and attestations attached to an image, found on its source so they can
//! travel with it: cosign's tag scheme (`sha256-<hex>.sig`, `.att`, `.sbom` in the image's
//! repository), the OCI 1.1 referrers tag schema (an index under `sha256-<hex>`), and the
//! referrers API (`GET /v2/<repo>/referrers/<digest>`) where the registry has it. The tags
//! are found in the repository's tag list (one request) where the source can list them.

use crate::registry::{ImageSource, OciError};

/// References (a tag, or a `sha256:` digest) in `repo` of what refers to `digest`.
pub async fn discover(
    src: &dyn ImageSource,
    repo: &str,
    digest: &str,
) -> Result<Vec<String>, OciError> {
    discover_listed(src, repo, digest, src.tag_list(repo)).await
}

/// [`discover`], with the repository's tag list read by `listed` (`None`: the source
/// cannot list tags): a caller that asks for it before the digest is known (the list does
/// not depend on it) saves a round trip.
pub async fn discover_listed(
    src: &dyn ImageSource,
    repo: &str,
    digest: &str,
    listed: impl std::future::Future<Output = Option<Vec<String>>>,
) -> Result<Vec<String>, OciError> {
    let hex = digest.trim_start_matches("sha256:");
    let tags: Vec<String> = [".sig", ".att", ".sbom", ""]
        .iter()
        .map(|s| format!("sha256-{hex}{s}"))
        .collect();
    // The repository's tag list and the API asked at once (on a slow link the round trips
    // add up); where the list cannot be had, each of the four tags is looked up.
    let (listed, api) = futures_util::future::join(listed, src.referrers_api(repo, digest)).await;
    let mut found = Vec::new();
    match listed {
        Some(listed) => found.extend(tags.into_iter().filter(|t| listed.contains(t))),
        None => {
            let looked =
                futures_util::future::join_all(tags.iter().map(|t| src.manifest(repo, t))).await;
            for (tag, m) in tags.into_iter().zip(looked) {
                if m?.is_some() {
                    found.push(tag);
                }
            }
        }
    }
    for d in api?.unwrap_or_default() {
        if !found.contains(&d) {
            found.push(d);
        }
    }
    Ok(found)
}
