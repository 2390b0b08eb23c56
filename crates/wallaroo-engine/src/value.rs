//! `static_value`: an output whose value the spec itself determines (the dashboard URL).
//! Read-only; it is "read" from the desired attributes.

use async_trait::async_trait;

use crate::resource::{Attrs, ReadRequest, ResourceError, ResourceKind};

pub struct StaticValueKind;

#[async_trait]
impl ResourceKind for StaticValueKind {
    fn name(&self) -> &'static str {
        "static_value"
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        Ok(req.desired.cloned())
    }
}
