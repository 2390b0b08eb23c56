//! `image["PATH"]`: one image mirrored from its source into the private registry.
//!
//! Live is the private registry's manifest under the target tag (a HEAD, whose digest is
//! recorded); desired is the source reference. Not yet: pinning the source digest in the
//! lockfile at the first plan, so that a vendor re-tag shows as a change (issue 5).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use wallaroo_engine::{Address, Attrs, ReadRequest, ResourceError, ResourceKind};

use crate::copy::copy;
use wallaroo_engine::desired::split_reference;

use crate::registry::Registry;

/// The image kind: the registries it reads from by host, and the one it writes to.
pub struct ImageKind {
    pub sources: BTreeMap<String, Arc<Registry>>,
    pub target: Arc<Registry>,
}

fn attr<'a>(attrs: &'a Attrs, key: &str) -> Result<&'a str, ResourceError> {
    attrs
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ResourceError::new(format!("attribute `{key}` is missing")))
}

impl ImageKind {
    fn source(&self, host: &str) -> Result<&Arc<Registry>, ResourceError> {
        self.sources.get(host).ok_or_else(|| {
            ResourceError::new(format!("no source registry `{host}` is configured (the spec's `source` registry is the only one)"))
        })
    }

    fn target_parts(&self, attrs: &Attrs) -> Result<(String, String), ResourceError> {
        let (_, repo, tag) = split_reference(attr(attrs, "target")?);
        Ok((repo, tag))
    }
}

#[async_trait]
impl ResourceKind for ImageKind {
    fn name(&self) -> &'static str {
        "image"
    }

    fn force_new(&self) -> &'static [&'static str] {
        &["target"]
    }

    fn kept_on_removal(&self) -> bool {
        true
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        let Some(attrs) = req.prior.or(req.desired) else {
            return Ok(None);
        };
        let (repo, tag) = self.target_parts(attrs)?;
        let live = self
            .target
            .manifest_digest(&repo, &tag)
            .await
            .map_err(|e| ResourceError::new(e.to_string()))?;
        Ok(live.map(|digest| {
            let mut a = attrs.clone();
            a.insert("digest".into(), json!(digest));
            a
        }))
    }

    async fn create(&self, _: &Address, desired: &Attrs) -> Result<Attrs, ResourceError> {
        let (host, src_repo, reference) = split_reference(attr(desired, "source")?);
        let (dst_repo, tag) = self.target_parts(desired)?;
        let report = copy(
            self.source(&host)?,
            &src_repo,
            &reference,
            &self.target,
            &dst_repo,
            &tag,
            &[],
        )
        .await
        .map_err(|e| ResourceError::new(e.to_string()))?;
        let mut applied = desired.clone();
        applied.insert("digest".into(), json!(report.digest));
        Ok(applied)
    }

    /// Never called: mirrored images are kept (deleting from a registry frees nothing until
    /// its garbage collection runs, and other installs may pull them).
    async fn delete(&self, _: &Address, _: &Attrs) -> Result<(), ResourceError> {
        Ok(())
    }
}
