//! `images`: what a plan mirrors, each with its origin, pin and target; and
//! `image-values.yaml`.

use serde_json::Value;
use wallaroo_model::MirrorImage;

use crate::error::OperationError;
use crate::workspace::Workspace;

/// One image of the list, with where it goes in the private registry (when there is one).
pub struct ImageRow {
    pub image: MirrorImage,
    pub target: Option<String>,
}

/// The images a plan would mirror, found and pinned as a plan finds and pins them.
pub async fn list(ws: &Workspace, refresh_pins: bool) -> Result<Vec<ImageRow>, OperationError> {
    let state = ws.store.load()?;
    let (images, _) = ws.images(state.as_ref(), refresh_pins).await?;
    Ok(images
        .into_iter()
        .map(|image| ImageRow {
            target: ws
                .spec
                .registry
                .as_ref()
                .map(|reg| wallaroo_model::image_target(&ws.spec, reg, &image).1),
            image,
        })
        .collect())
}

/// The chart values that point the release at the private registry (`image-values.yaml`).
pub fn values(ws: &Workspace) -> Value {
    wallaroo_model::image_values(&ws.spec)
}
