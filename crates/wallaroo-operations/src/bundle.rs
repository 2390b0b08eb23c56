//! `bundle create|verify|list`: offline bundles of the release's images.

use std::collections::BTreeMap;
use std::path::Path;

use wallaroo_oci::bundle::{Bundle, CreateReport, VerifyReport};

use crate::error::OperationError;
use crate::workspace::Workspace;

/// Writes the bundle of the spec's images (only what the release in `since` lacks, when
/// given) to `out`.
pub async fn create(
    ws: &Workspace,
    out: &Path,
    since: Option<&Path>,
    refresh_pins: bool,
) -> Result<CreateReport, OperationError> {
    if ws.bundle.is_some() {
        return Err(OperationError::message(
            "this spec reads from a bundle (`source { bundle = ... }`); create bundles with a spec that names the vendor registry",
        ));
    }
    let state = ws.store.load()?;
    let (images, sources) = ws.images(state.as_ref(), refresh_pins).await?;
    let mut inputs = Vec::new();
    let signatures = ws.signatures()?;
    for image in &images {
        let (host, _, _) = wallaroo_model::split_reference(&image.source);
        let pin = image.pin.as_ref().expect("images() pins every image");
        // Nothing enters a bundle that the vendor's key does not verify.
        if let Some(s) = &signatures {
            s.check(
                sources[&host].as_ref(),
                &image.source,
                &image.origin,
                &pin.source_digest,
            )
            .await
            .map_err(|e| OperationError::message(e.to_string()))?;
        }
        inputs.push(wallaroo_oci::bundle::BundleInput {
            source: image.source.clone(),
            origin: image.origin.clone(),
            digest: pin.source_digest.clone(),
            from: sources[&host].clone(),
        });
    }
    let skip = match since {
        Some(path) => {
            let previous = wallaroo_state::StateStore::new(path)
                .load()?
                .ok_or_else(|| {
                    OperationError::message(format!("{} does not exist", path.display()))
                })?;
            let pins: BTreeMap<String, String> = wallaroo_oci::pins::recorded(
                previous
                    .resources
                    .values()
                    .filter(|r| r.kind == "image")
                    .map(|r| &r.attributes),
            )
            .into_iter()
            .map(|(source, pin)| (source, pin.source_digest))
            .collect();
            wallaroo_oci::bundle::blobs_of(&sources, &pins).await?
        }
        None => Default::default(),
    };
    Ok(wallaroo_oci::bundle::create(out, &ws.spec.wallaroo.version, &inputs, &skip).await?)
}

/// Re-hashes every blob of a bundle (counting bytes in the caller's
/// [`wallaroo_engine::progress`] counters, when it runs under them).
pub async fn verify(file: &Path) -> Result<VerifyReport, OperationError> {
    let path = file.to_path_buf();
    // The blocking reader counts in the caller's progress counters, when it has them.
    let progress = wallaroo_engine::progress::current();
    Ok(tokio::task::spawn_blocking(move || {
        wallaroo_oci::bundle::verify_counted(&path, progress.as_deref())
    })
    .await
    .expect("verify does not panic")?)
}

/// A bundle's index.
pub fn open(file: &Path) -> Result<Bundle, OperationError> {
    Ok(Bundle::open(file)?)
}
