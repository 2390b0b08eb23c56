//! Mirroring one image: the chosen platforms of an index, blobs before manifests, digests
//! checked, blobs shared with other images of the same run sent once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::OnceCell;
use wallaroo_engine::StepProgress;

use crate::registry::{BlobState, BlobStream, ImageSource, Manifest, OciError, Registry};

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyReport {
    /// The digest of the manifest now under the tag: the source's, unless a platform filter
    /// left out part of an index.
    pub digest: String,
    /// The digest of the source's top manifest.
    pub source_digest: String,
    pub blobs_copied: usize,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
    pub bytes_copied: u64,
}

/// Blobs already sent to the target during this run, by digest, with the repository that
/// holds them; images copied concurrently wait for a blob another copy is sending and then
/// mount it instead of sending it again.
pub struct BlobLedger {
    blobs: Mutex<HashMap<String, Arc<OnceCell<String>>>>,
    /// Images an earlier run put in the target, as (repository, manifest digest): where to
    /// look for a blob this run needs in another repository (see [`BlobLedger::with_earlier`]).
    earlier: Vec<(String, String)>,
    /// Their blobs by digest, with a repository that holds each: read from the target's
    /// manifests the first time a blob is missing from the repository being written.
    held: OnceCell<HashMap<String, String>>,
    /// The transfers of blobs smaller than [`LARGE_BLOB`], across every copy of the run.
    small: Gate,
    /// The transfers of blobs of [`LARGE_BLOB`] and more: a gate of their own, so that a
    /// few long streams neither wait behind nor hold up the many short ones.
    large: Gate,
}

/// Blob transfers in flight across every copy of a run, with the reads started ahead of a
/// free one (their round trip to a distant vendor spent while the transfers run).
#[derive(Clone)]
struct Gate {
    transfers: Arc<tokio::sync::Semaphore>,
    ahead: Arc<tokio::sync::Semaphore>,
}

impl Gate {
    fn new(transfers: usize, ahead: usize) -> Gate {
        Gate {
            transfers: Arc::new(tokio::sync::Semaphore::new(transfers)),
            ahead: Arc::new(tokio::sync::Semaphore::new(ahead)),
        }
    }
}

/// Transfers of blobs under [`LARGE_BLOB`] a run keeps in flight at most: the time of a
/// small blob goes to requests and hashing, which more streams do not speed up on a small
/// machine, while each stream holds its connection's buffers (measured on the `release`
/// preset, 40 images: 3 is as fast as 4 or 7 and the smallest in memory).
pub const TRANSFERS_AT_ONCE: usize = 3;

/// Reads of small blobs a run starts ahead of a free transfer: each waits about one blob's
/// time.
pub const READS_AHEAD: usize = 2;

/// Blobs of this size and more (those sent resumably) are long single streams, whose speed
/// over a distant link is bounded by one connection's window: they get transfers of their
/// own, [`LARGE_TRANSFERS_AT_ONCE`] of them (measured on the `large` preset at 50 ms: 3
/// transfers for all blobs took 1.22x the floor, 7 took 1.13x).
pub const LARGE_BLOB: u64 = crate::resume::RESUMABLE_FROM;

/// Transfers of blobs of [`LARGE_BLOB`] and more a run keeps in flight at most.
pub const LARGE_TRANSFERS_AT_ONCE: usize = 4;

impl Default for BlobLedger {
    fn default() -> Self {
        BlobLedger {
            blobs: Mutex::default(),
            earlier: Vec::new(),
            held: OnceCell::new(),
            small: Gate::new(TRANSFERS_AT_ONCE, READS_AHEAD),
            large: Gate::new(LARGE_TRANSFERS_AT_ONCE, 1),
        }
    }
}

impl BlobLedger {
    /// A ledger that also knows the images earlier runs mirrored (repository, manifest
    /// digest, as the lockfile records them): a blob one of them holds is mounted from its
    /// repository instead of sent again, across runs as within one.
    pub fn with_earlier(earlier: Vec<(String, String)>) -> BlobLedger {
        BlobLedger {
            earlier,
            ..BlobLedger::default()
        }
    }

    /// A repository of `dst` other than `repo` that holds `digest`, as the manifests of the
    /// earlier runs' images say (read once per run, a few at a time; an image since removed
    /// from the target is passed over).
    async fn held_elsewhere(&self, dst: &Registry, repo: &str, digest: &str) -> Option<String> {
        if self.earlier.is_empty() {
            return None;
        }
        let held = self
            .held
            .get_or_init(|| async {
                type Read<'a> = std::pin::Pin<
                    Box<dyn std::future::Future<Output = (&'a String, Vec<String>)> + Send + 'a>,
                >;
                let mut held = HashMap::new();
                for some in self.earlier.chunks(8) {
                    let reads: Vec<Read<'_>> = some
                        .iter()
                        .map(|(r, d)| -> Read<'_> {
                            Box::pin(async move { (r, image_blobs(dst, r, d).await) })
                        })
                        .collect();
                    for (r, blobs) in futures_util::future::join_all(reads).await {
                        for b in blobs {
                            held.entry(b).or_insert_with(|| r.clone());
                        }
                    }
                }
                held
            })
            .await;
        held.get(digest).filter(|r| *r != repo).cloned()
    }

    fn cell(&self, digest: &str) -> Arc<OnceCell<String>> {
        self.blobs
            .lock()
            .expect("blob ledger")
            .entry(digest.to_string())
            .or_default()
            .clone()
    }
}

/// How to copy.
#[derive(Clone, Copy, Default)]
pub struct CopyOptions<'a> {
    /// `os/arch[/variant]` entries of an index to keep; empty or `all` keeps every one.
    pub platforms: &'a [String],
    /// Repositories of the target that may already hold blobs (mounted, not sent).
    pub mount_from: &'a [String],
    /// Blobs shared with the other copies of this run.
    pub ledger: Option<&'a BlobLedger>,
    /// Where large uploads are recorded so that a later run resumes them (see
    /// [`crate::resume`]); without it they restart from the beginning.
    pub journal: Option<&'a crate::resume::UploadJournal>,
}

/// The manifest a copy puts under the tag for `top`: `top` itself, or, when `platforms`
/// leaves out some entries of an index, that index without them (a new digest, the same
/// every time for the same input).
pub fn select_platforms(top: &Manifest, platforms: &[String]) -> Manifest {
    if !top.is_index() || platforms.is_empty() || platforms.iter().any(|p| p == "all") {
        return top.clone();
    }
    let mut json = top.json();
    let Some(entries) = json["manifests"].as_array_mut() else {
        return top.clone();
    };
    let before = entries.len();
    entries.retain(|m| {
        let p = &m["platform"];
        let name = format!(
            "{}/{}",
            p["os"].as_str().unwrap_or("unknown"),
            p["architecture"].as_str().unwrap_or("unknown")
        );
        let with_variant = p["variant"]
            .as_str()
            .map(|v| format!("{name}/{v}"))
            .unwrap_or_else(|| name.clone());
        platforms
            .iter()
            .any(|want| *want == name || *want == with_variant)
    });
    if entries.len() == before {
        return top.clone();
    }
    let bytes = serde_json::to_vec(&json).expect("an index serializes");
    Manifest {
        media_type: top.media_type.clone(),
        digest: crate::registry::sha256(&bytes),
        bytes,
    }
}

/// Copies `src_repo:reference` from `src` to `dst_repo:tag` on `dst`. Manifests are pushed
/// byte for byte (so digests are the same), each only after all it refers to is present;
/// a blob whose content does not match its digest stops the copy before its manifest.
///
/// Run as an apply step, the copy counts its bytes in the step's
/// [`wallaroo_engine::progress`] counters: the blobs of each manifest as it is read, bytes
/// as they are sent, blobs found in place or mounted as present.
pub async fn copy(
    src: &dyn ImageSource,
    src_repo: &str,
    reference: &str,
    dst: &Registry,
    dst_repo: &str,
    tag: &str,
    opts: CopyOptions<'_>,
) -> Result<CopyReport, OciError> {
    let source = wallaroo_profile::within(MANIFESTS, src.manifest(src_repo, reference))
        .await?
        .ok_or_else(|| OciError::Registry {
            registry: src.name(),
            message: format!("{src_repo}:{reference} does not exist"),
        })?;
    let top = select_platforms(&source, opts.platforms);
    let mut report = CopyReport {
        digest: top.digest.clone(),
        source_digest: source.digest.clone(),
        ..CopyReport::default()
    };
    let mut seen = BTreeSet::new();
    let mut blobs = Blobs {
        src,
        src_repo,
        dst,
        dst_repo,
        opts,
        seen: &mut seen,
        report: &mut report,
        progress: wallaroo_engine::progress::current(),
    };
    if top.is_index() {
        for child in top.json()["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let digest = child["digest"].as_str().unwrap_or_default().to_string();
            let manifest = wallaroo_profile::within(MANIFESTS, src.manifest(src_repo, &digest))
                .await?
                .ok_or_else(|| OciError::Registry {
                    registry: src.name(),
                    message: format!("{src_repo}@{digest}, listed in the index, does not exist"),
                })?;
            let sent_before = blobs.sent();
            blobs.copy_all(&manifest).await?;
            let again = blobs.sent() == sent_before;
            wallaroo_profile::within(MANIFESTS, async {
                dst.put_manifest(dst_repo, &digest, &manifest).await?;
                if again {
                    dst.confirm_manifest(dst_repo, &digest, &manifest.digest)
                        .await?;
                }
                Ok::<_, OciError>(())
            })
            .await?;
        }
    } else {
        blobs.copy_all(&top).await?;
    }
    // A manifest pushed over blobs the repository held already (an earlier run stopped part
    // way, a damaged record pushed again) is read back: a registry can take it (201) while its
    // stored bytes are damaged. A first copy, which sends blobs, pays no such round trip.
    let again = blobs.sent() == 0;
    wallaroo_profile::within(MANIFESTS, async {
        dst.put_manifest(dst_repo, tag, &top).await?;
        if again {
            dst.confirm_manifest(dst_repo, tag, &top.digest).await?;
        }
        Ok::<_, OciError>(())
    })
    .await?;
    Ok(report)
}

/// The sizes a manifest gives its blobs, by digest.
pub(crate) fn blob_sizes(manifest: &Manifest) -> HashMap<String, u64> {
    let json = manifest.json();
    json["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(Some(&json["config"]))
        .filter_map(|d| Some((d["digest"].as_str()?.to_string(), d["size"].as_u64()?)))
        .collect()
}

/// The blobs of the image `repo@digest` in `registry` (of each platform of an index); none
/// when it cannot be read.
async fn image_blobs(registry: &Registry, repo: &str, digest: &str) -> Vec<String> {
    let Ok(Some(top)) = registry.manifest(repo, digest).await else {
        return Vec::new();
    };
    if !top.is_index() {
        return blob_digests(&top);
    }
    let mut blobs = Vec::new();
    for child in top.json()["manifests"].as_array().into_iter().flatten() {
        if let Some(d) = child["digest"].as_str()
            && let Ok(Some(m)) = registry.manifest(repo, d).await
        {
            blobs.extend(blob_digests(&m));
        }
    }
    blobs
}

/// The blobs a manifest refers to: its config, then its layers.
pub fn blob_digests(manifest: &Manifest) -> Vec<String> {
    let json = manifest.json();
    let mut digests: Vec<String> = json["config"]["digest"]
        .as_str()
        .map(String::from)
        .into_iter()
        .collect();
    digests.extend(
        json["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(String::from)),
    );
    digests
}

/// The profile's phases of a copy (see `wallaroo_profile`).
const MANIFESTS: &str = "manifests";
const BLOBS: &str = "blobs";

/// How often one blob is sent in all when the registry is unavailable part way.
pub(crate) const BLOB_ATTEMPTS: u32 = 3;

/// How many blobs of one image are copied at once.
const BLOBS_AT_ONCE: usize = 4;

/// What happened to one blob.
enum Moved {
    Present,
    Mounted,
    Copied(u64),
}

struct Blobs<'a> {
    src: &'a dyn ImageSource,
    src_repo: &'a str,
    dst: &'a Registry,
    dst_repo: &'a str,
    opts: CopyOptions<'a>,
    seen: &'a mut BTreeSet<String>,
    report: &'a mut CopyReport,
    progress: Option<Arc<StepProgress>>,
}

/// The source as one blob send reads it: each blob stream adds to the step's byte counters
/// (and to `counted`, so that a failed attempt can take its bytes back), and, in a run with
/// a ledger, takes one of the run's transfers once the source has answered (the round trip
/// to a distant vendor is spent while other transfers run, so a transfer never idles waiting
/// for it) and gives it back when the stream is dropped.
struct Metered<'a> {
    inner: &'a dyn ImageSource,
    progress: Option<Arc<StepProgress>>,
    counted: Arc<AtomicU64>,
    /// The run's transfers for a blob of this size, and its reads started ahead of a free
    /// one.
    gate: Option<Gate>,
    /// A place among the reads ahead taken before the read (see [`Metered::reserve`]).
    reserved: std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl Metered<'_> {
    /// Takes the blob's place among the reads ahead now, before its upload is started, so
    /// that an upload session is open only for a blob about to be read.
    async fn reserve(&self) {
        if let Some(gate) = &self.gate {
            let ahead = gate.ahead.clone().acquire_owned().await;
            *self.reserved.lock().expect("reserved") = Some(ahead.expect("never closed"));
        }
    }

    async fn read<'s>(
        &'s self,
        open: impl Future<Output = Result<BlobStream, OciError>> + 's,
    ) -> Result<BlobStream, OciError> {
        use futures_util::StreamExt;
        let (stream, permit) = match &self.gate {
            Some(gate) => {
                let reserved = self.reserved.lock().expect("reserved").take();
                let ahead = match reserved {
                    Some(ahead) => ahead,
                    None => gate
                        .ahead
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("never closed"),
                };
                let stream = open.await?;
                let permit = gate.transfers.clone().acquire_owned().await;
                drop(ahead);
                (stream, Some(permit.expect("never closed")))
            }
            None => (open.await?, None),
        };
        let (progress, counted) = (self.progress.clone(), self.counted.clone());
        Ok(Box::pin(stream.inspect(move |chunk| {
            let _ = &permit;
            if let (Ok(c), Some(progress)) = (chunk, &progress) {
                progress.add_moved(c.len() as u64);
                counted.fetch_add(c.len() as u64, Ordering::Relaxed);
            }
        })))
    }
}

#[async_trait::async_trait]
impl ImageSource for Metered<'_> {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Manifest>, OciError> {
        self.inner.manifest(repo, reference).await
    }
    async fn blob(&self, repo: &str, digest: &str) -> Result<BlobStream, OciError> {
        self.read(self.inner.blob(repo, digest)).await
    }
    async fn referrers_api(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Option<Vec<String>>, OciError> {
        self.inner.referrers_api(repo, digest).await
    }
    async fn blob_from(
        &self,
        repo: &str,
        digest: &str,
        offset: u64,
    ) -> Result<BlobStream, OciError> {
        self.read(self.inner.blob_from(repo, digest, offset)).await
    }
}

impl Blobs<'_> {
    /// Copies the manifest's blobs not yet seen in this copy, a few at a time; the first
    /// failure stops the rest.
    async fn copy_all(&mut self, manifest: &Manifest) -> Result<(), OciError> {
        use futures_util::StreamExt;
        let sizes = blob_sizes(manifest);
        let todo: Vec<(String, u64)> = blob_digests(manifest)
            .into_iter()
            .filter(|d| self.seen.insert(d.clone()))
            .map(|d| {
                let size = sizes.get(&d).copied().unwrap_or(0);
                (d, size)
            })
            .collect();
        if let Some(p) = &self.progress {
            p.add_total(todo.iter().map(|(_, size)| size).sum());
        }
        let this = &*self;
        let mut results = futures_util::stream::iter(todo)
            .map(|(digest, size)| async move {
                wallaroo_profile::within(BLOBS, this.copy_one(&digest, size)).await
            })
            .buffer_unordered(BLOBS_AT_ONCE);
        let mut moved = Vec::new();
        while let Some(r) = results.next().await {
            moved.push(r?);
        }
        drop(results);
        for m in moved {
            match m {
                Moved::Present => self.report.blobs_present += 1,
                Moved::Mounted => self.report.blobs_mounted += 1,
                Moved::Copied(bytes) => {
                    self.report.blobs_copied += 1;
                    self.report.bytes_copied += bytes;
                }
            }
        }
        Ok(())
    }

    /// Blobs this copy sent or mounted so far (not those the repository held).
    fn sent(&self) -> usize {
        self.report.blobs_copied + self.report.blobs_mounted
    }

    async fn copy_one(&self, digest: &str, size: u64) -> Result<Moved, OciError> {
        let moved = self.place(digest, size).await?;
        if let (Some(p), Moved::Present | Moved::Mounted) = (&self.progress, &moved) {
            p.add_present(size);
        }
        Ok(moved)
    }

    async fn place(&self, digest: &str, size: u64) -> Result<Moved, OciError> {
        let (dst, dst_repo) = (self.dst, self.dst_repo);
        // Where the registry grants mounts, a blob sent in one request is looked for by the
        // request that starts its upload (see `attempt`); otherwise, and for a chunked one
        // (its journal and chunks are more to set up), with a HEAD first.
        if !self.asks_on_upload(size) {
            match dst.blob_state(dst_repo, digest).await? {
                BlobState::Present => return Ok(Moved::Present),
                BlobState::Missing => {}
                BlobState::Damaged(said) => return self.repair(digest, size, &said).await,
            }
        }
        for from in self.opts.mount_from.iter().filter(|f| *f != dst_repo) {
            if dst.mount(dst_repo, digest, from).await? {
                return Ok(Moved::Mounted);
            }
        }
        let Some(ledger) = self.opts.ledger else {
            return Ok(match self.send(digest, size).await? {
                0 => Moved::Present,
                sent => Moved::Copied(sent),
            });
        };
        // Mirrored by an earlier run into another repository: mount it from there.
        if let Some(from) = ledger.held_elsewhere(dst, dst_repo, digest).await
            && dst.mount(dst_repo, digest, &from).await?
        {
            return Ok(Moved::Mounted);
        }
        // The first copy of this run to need the blob sends it; the others wait, then mount.
        let cell = ledger.cell(digest);
        let sent = std::sync::atomic::AtomicU64::new(0);
        let holder = cell
            .get_or_try_init(|| async {
                sent.store(
                    self.send(digest, size).await?,
                    std::sync::atomic::Ordering::Relaxed,
                );
                Ok::<_, OciError>(dst_repo.to_string())
            })
            .await?;
        let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
        if holder == dst_repo {
            Ok(if sent > 0 {
                Moved::Copied(sent)
            } else {
                Moved::Present
            })
        } else if dst.mount(dst_repo, digest, holder).await? {
            Ok(Moved::Mounted)
        } else {
            Ok(match self.send(digest, size).await? {
                0 => Moved::Present,
                sent => Moved::Copied(sent),
            })
        }
    }

    /// Uploads a blob whose record in the target the registry cannot read (it `said` so to
    /// every lookup), which rewrites the record, and says so; names the repository, digest
    /// and what to run on the registry when the upload does not mend it.
    async fn repair(&self, digest: &str, size: u64, said: &str) -> Result<Moved, OciError> {
        let (dst, dst_repo) = (self.dst, self.dst_repo);
        if let Some(p) = &self.progress {
            p.note(format!(
                "registry {} {said} to every lookup of blob {digest} in {dst_repo}: its record there is damaged (as a disk that filled mid-upload leaves it); uploading the blob again, which rewrites it",
                dst.host()
            ));
        }
        let sent = match dst
            .put_blob_from(dst_repo, digest, self.src, self.src_repo)
            .await
        {
            Ok(sent) => sent,
            // Out of space, or an outage: not the record's fault, and said as it is.
            Err(e @ OciError::OutOfSpace { .. }) => return Err(e),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => return Err(self.unrepaired(digest, &e.to_string())),
        };
        if let Some(p) = &self.progress {
            p.add_moved(sent);
            p.add_present(size.saturating_sub(sent));
        }
        match dst.blob_state(dst_repo, digest).await? {
            BlobState::Present => Ok(Moved::Copied(sent)),
            BlobState::Missing => Err(self.unrepaired(digest, "the blob is still missing")),
            BlobState::Damaged(said) => Err(self.unrepaired(digest, &said)),
        }
    }

    fn unrepaired(&self, digest: &str, why: &str) -> OciError {
        self.dst.err(format!(
            "blob {digest} of {} is damaged in the registry's storage and uploading it again did not mend it ({why}): on the registry, remove the repository's link for it (distribution: `_layers/sha256/<hex>/link` under the repository) and run its garbage collector (`registry garbage-collect CONFIG`), then apply again",
            self.dst_repo
        ))
    }

    /// Whether a blob of `size` is sent resumably: in chunks, its upload journalled.
    fn chunked(&self, size: u64) -> bool {
        self.opts.journal.is_some() && size >= crate::resume::RESUMABLE_FROM
    }

    /// Whether a blob of `size` is looked for in the target by the request that starts its
    /// upload, not by a HEAD of its own.
    fn asks_on_upload(&self, size: u64) -> bool {
        !self.chunked(size) && self.dst.grants_mounts()
    }

    /// Streams the blob across, again from the start when the connection drops. The step's
    /// counters end with what this run sent as moved and a resumed upload's earlier part as
    /// present.
    async fn send(&self, digest: &str, size: u64) -> Result<u64, OciError> {
        let mut attempt = 1;
        loop {
            let src = Metered {
                inner: self.src,
                progress: self.progress.clone(),
                counted: Arc::new(AtomicU64::new(0)),
                gate: self.opts.ledger.map(|l| {
                    if size >= LARGE_BLOB {
                        l.large.clone()
                    } else {
                        l.small.clone()
                    }
                }),
                reserved: std::sync::Mutex::new(None),
            };
            let sent = self.attempt(&src, digest, size).await;
            if let Some(progress) = &self.progress {
                progress.take_back(src.counted.load(Ordering::Relaxed));
                if let Ok(n) = &sent {
                    progress.add_moved(*n);
                    progress.add_present(size.saturating_sub(*n));
                }
            }
            match sent {
                Err(e) if e.is_transient() && attempt < BLOB_ATTEMPTS => {
                    tokio::time::sleep(crate::registry::backoff(attempt, None)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One try at sending a blob, read from `src`: the bytes sent, 0 when the target
    /// repository turned out to hold it.
    async fn attempt(&self, src: &Metered<'_>, digest: &str, size: u64) -> Result<u64, OciError> {
        match self.opts.journal {
            Some(journal) if self.chunked(size) => self
                .dst
                .put_blob_resumable(self.dst_repo, digest, size, src, self.src_repo, journal)
                .await
                .map(|u| u.sent),
            _ => {
                src.reserve().await;
                if self.asks_on_upload(size) {
                    self.dst
                        .put_blob_unless_present(self.dst_repo, digest, src, self.src_repo)
                        .await
                        .map(Option::unwrap_or_default)
                } else {
                    self.dst
                        .put_blob_from(self.dst_repo, digest, src, self.src_repo)
                        .await
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Manifest {
        let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"os":"linux","architecture":"amd64"}},
{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#.to_vec();
        Manifest {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            digest: crate::registry::sha256(&bytes),
            bytes,
        }
    }

    #[test]
    fn a_platform_filter_keeps_only_the_chosen_entries_of_an_index() {
        let top = index();
        assert_eq!(select_platforms(&top, &[]).digest, top.digest);
        assert_eq!(select_platforms(&top, &["all".into()]).digest, top.digest);
        let both = ["linux/amd64".to_string(), "linux/arm64".to_string()];
        assert_eq!(select_platforms(&top, &both).digest, top.digest);

        let amd = select_platforms(&top, &["linux/amd64".into()]);
        assert_ne!(amd.digest, top.digest);
        let kept = amd.json()["manifests"].as_array().unwrap().clone();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0]["digest"], "sha256:aa");
        assert_eq!(
            select_platforms(&top, &["linux/amd64".into()]).digest,
            amd.digest,
            "the same filter gives the same digest"
        );
        let arm = select_platforms(&top, &["linux/arm64/v8".into()]);
        assert_eq!(arm.json()["manifests"][0]["digest"], "sha256:bb");
    }
}
