//! `static_value`: an output whose value the spec itself determines (the dashboard URL).
//! Read-only; it is "read" from the desired attributes.

use async_trait::async_trait;

use crate::address::Address;
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

    async fn create(&self, _: &Address, _: &Attrs) -> Result<Attrs, ResourceError> {
        Err(ResourceError::new("outputs are read, not created"))
    }

    async fn update(&self, _: &Address, _: &Attrs, _: &Attrs) -> Result<Attrs, ResourceError> {
        Err(ResourceError::new("outputs are read, not updated"))
    }

    async fn delete(&self, _: &Address, _: &Attrs) -> Result<(), ResourceError> {
        Ok(())
    }
}
