//! `image["PATH"]`: one image mirrored from its source into the private registry.
//!
//! Desired is the source reference with its pinned digest (`source_digest`, resolved from
//! the tag at the first plan and kept in the lockfile, see [`crate::pins`]) and the digest
//! the target tag must then hold (`digest`: the same, unless a platform filter leaves part
//! of an index out). Live is the target tag's digest (one HEAD). Apply copies the pinned
//! digest, so a vendor re-tag changes nothing until the pins are refreshed.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use wallaroo_engine::{Address, Attrs, ReadRequest, ResourceError, ResourceKind};

use crate::copy::{BlobLedger, CopyOptions, copy};
use wallaroo_model::split_reference;

use crate::registry::{ImageSource, OciError, Registry};

/// The image kind: the registries it reads from by host, and the one it writes to.
pub struct ImageKind {
    pub sources: BTreeMap<String, Arc<dyn ImageSource>>,
    pub target: Arc<Registry>,
    /// Blobs sent during this run, shared by every image copy.
    pub ledger: BlobLedger,
    stats: std::sync::Mutex<MirrorStats>,
    /// Where large uploads are recorded, so that a killed run's next run resumes them.
    pub journal: Option<crate::resume::UploadJournal>,
    /// Signatures required before an image is copied (`verify { ... }`).
    pub verify: Option<Signatures>,
}

/// What `verify { ... }` asks: keys, and the images allowed without a signature.
#[derive(Debug, Clone, Default)]
pub struct Signatures {
    pub keys: Vec<crate::verify::VerifyKey>,
    /// Source references copied without a signature.
    pub unsigned: std::collections::BTreeSet<String>,
}

impl Signatures {
    /// Verifies `source` at `digest` on `src` unless it is allowed unsigned or is itself a
    /// referrer (a signature or an SBOM); the key that verified it, if one did.
    pub async fn check(
        &self,
        src: &dyn ImageSource,
        source: &str,
        origin: &str,
        digest: &str,
    ) -> Result<Option<String>, crate::verify::VerifyError> {
        if self.unsigned.contains(source) || origin.starts_with("referrer of ") {
            return Ok(None);
        }
        let (_, repo, _) = split_reference(source);
        // A tag is resolved to the digest that will be copied: the signature must be for it.
        let digest = if digest.starts_with("sha256:") {
            digest.to_string()
        } else {
            match src.manifest(&repo, digest).await {
                Ok(Some(m)) => m.digest,
                Ok(None) => digest.to_string(),
                Err(e) => {
                    return Err(crate::verify::VerifyError::Read {
                        image: source.into(),
                        digest: digest.into(),
                        message: e.to_string(),
                    });
                }
            }
        };
        crate::verify::verify_image(src, source, &repo, &digest, &self.keys)
            .await
            .map(Some)
    }
}

/// What the copies of one run did, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorStats {
    pub images: usize,
    pub blobs_copied: usize,
    pub bytes_copied: u64,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
}

impl ImageKind {
    pub fn new(
        sources: BTreeMap<String, Arc<dyn ImageSource>>,
        target: Arc<Registry>,
    ) -> ImageKind {
        ImageKind {
            sources,
            target,
            ledger: BlobLedger::default(),
            stats: Default::default(),
            journal: None,
            verify: None,
        }
    }

    /// Copies an image only when its signature verifies (see [`Signatures`]).
    pub fn with_signatures(mut self, signatures: Signatures) -> ImageKind {
        self.verify = Some(signatures);
        self
    }

    /// Mounts blobs that images mirrored by earlier runs hold (repository, manifest digest
    /// in the target, from the lockfile) instead of sending them again.
    pub fn with_earlier_images(mut self, images: Vec<(String, String)>) -> ImageKind {
        self.ledger = BlobLedger::with_earlier(images);
        self
    }

    /// Records large uploads under `dir` (beside the lockfile) so that they resume.
    pub fn with_journal(mut self, dir: impl Into<std::path::PathBuf>) -> ImageKind {
        self.journal = Some(crate::resume::UploadJournal::new(dir));
        self
    }

    /// What the copies of this run did so far.
    pub fn stats(&self) -> MirrorStats {
        *self.stats.lock().expect("stats")
    }
}

fn attr<'a>(attrs: &'a Attrs, key: &str) -> Result<&'a str, ResourceError> {
    attrs
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ResourceError::new(format!("attribute `{key}` is missing")))
}

impl ImageKind {
    fn source(&self, host: &str) -> Result<&Arc<dyn ImageSource>, ResourceError> {
        self.sources.get(host).ok_or_else(|| {
            ResourceError::new(format!("no source registry `{host}` was set up for this plan (a saved plan made with other images?)"))
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

    fn kept_on_removal(&self) -> bool {
        true
    }

    async fn read(&self, req: ReadRequest<'_>) -> Result<Option<Attrs>, ResourceError> {
        let Some(attrs) = req.desired.or(req.prior) else {
            return Ok(None);
        };
        let (repo, tag) = self.target_parts(attrs)?;
        let live = match self.target.manifest_digest(&repo, &tag).await {
            Ok(live) => live,
            // Every lookup answered 500: a record the registry cannot read (a manifest link a
            // full disk cut short). The plan says so as the digest it found, and apply pushes
            // the image again, which rewrites the record.
            Err(OciError::Unavailable { message, .. }) if message.starts_with("answered 500") => {
                let mut a = req.prior.unwrap_or(attrs).clone();
                a.insert(
                    "digest".into(),
                    json!(format!(
                        "unreadable: the registry {message} to every lookup of {repo}:{tag}, so its record is damaged (as a disk that filled mid-push leaves it); apply pushes the image again, which rewrites it"
                    )),
                );
                return Ok(Some(a));
            }
            Err(e) => return Err(ResourceError::new(e.to_string())),
        };
        // The source side is what was copied when the target holds the expected digest;
        // otherwise what the lockfile says was copied, beside what the tag holds now.
        Ok(live.map(|digest| {
            let mut a = if attrs.get("digest") == Some(&json!(digest)) {
                attrs.clone()
            } else {
                req.prior.unwrap_or(attrs).clone()
            };
            a.insert("digest".into(), json!(digest));
            a
        }))
    }

    async fn create(&self, _: &Address, desired: &Attrs) -> Result<Attrs, ResourceError> {
        let (host, src_repo, tag_or_digest) = split_reference(attr(desired, "source")?);
        let reference = desired
            .get("source_digest")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or(tag_or_digest);
        let (dst_repo, tag) = self.target_parts(desired)?;
        let platforms: Vec<String> = desired
            .get("platforms")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default();
        if let Some(signatures) = &self.verify {
            let source = attr(desired, "source")?;
            let origin = desired.get("origin").and_then(Value::as_str).unwrap_or("");
            wallaroo_profile::within(
                wallaroo_profile::SIGNATURES,
                signatures.check(self.source(&host)?.as_ref(), source, origin, &reference),
            )
            .await
            .map_err(|e| ResourceError::new(e.to_string()))?;
        }
        let report = copy(
            self.source(&host)?.as_ref(),
            &src_repo,
            &reference,
            &self.target,
            &dst_repo,
            &tag,
            CopyOptions {
                platforms: &platforms,
                mount_from: &[],
                ledger: Some(&self.ledger),
                journal: self.journal.as_ref(),
            },
        )
        .await
        .map_err(|e| ResourceError::new(e.to_string()))?;
        {
            let mut stats = self.stats.lock().expect("stats");
            stats.images += 1;
            stats.blobs_copied += report.blobs_copied;
            stats.bytes_copied += report.bytes_copied;
            stats.blobs_mounted += report.blobs_mounted;
            stats.blobs_present += report.blobs_present;
        }
        if let Some(want) = desired.get("digest").and_then(Value::as_str)
            && want != report.digest
        {
            return Err(ResourceError::new(format!(
                "copied {reference} but the target holds {}, not the planned {want}",
                report.digest
            )));
        }
        let mut applied = desired.clone();
        applied.insert("digest".into(), json!(report.digest));
        applied.insert("source_digest".into(), json!(report.source_digest));
        Ok(applied)
    }

    /// Called only with `prune` (an image that left the spec or the release) or for
    /// `destroy --include-images`; mirrored images are otherwise kept. Removes the target tag
    /// and the manifest it held, unless another tag of the repository still points at it (a
    /// newer release's, when an image did not change): see [`crate::Registry::remove_image`].
    /// The registry frees the blobs at its next garbage collection.
    async fn delete(&self, _: &Address, prior: &Attrs) -> Result<(), ResourceError> {
        let (repo, tag) = self.target_parts(prior)?;
        let Some(digest) = prior.get("digest").and_then(Value::as_str) else {
            return Ok(());
        };
        self.target
            .remove_image(&repo, &tag, digest)
            .await
            .map(|_| ())
            .map_err(|e| ResourceError::new(e.to_string()))
    }
}
