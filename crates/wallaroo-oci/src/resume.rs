//! Resumable uploads of large blobs: sent in chunks (PATCH with `Content-Range`), with the
//! upload's location and the bytes the registry confirmed written to a journal file after
//! every chunk. A run killed part way leaves the journal; the next run asks the registry how
//! much it holds (`GET` on the upload location answers with `Range: 0-N`), reads the source
//! from there (`Range: bytes=N+1-`), and sends only the rest. At most one chunk is sent twice.
//!
//! A fresh upload is hashed as it streams, and a mismatch stops it before the final `PUT`, so
//! the registry commits nothing. A resumed upload cannot hash the part sent before the kill;
//! the registry checks the whole against the digest at the final `PUT` and refuses a mismatch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::registry::{BlobStream, ImageSource, OciError, Registry, size_text};

/// Blobs at least this large are uploaded resumably. Chunking costs a request and, in
/// distribution, a saved hash state per chunk: with every blob of the mirror benchmark's
/// release chunked from 64 MiB, the run was 1.19x the floor at 50 ms instead of 1.08x.
pub const RESUMABLE_FROM: u64 = 128 << 20;
/// The chunk of a resumable upload sent in chunks: the most a killed run sends twice where
/// a registry keeps only whole chunks (3% of 1 GiB).
pub const CHUNK: u64 = 32 << 20;
/// How resumable uploads send, unless told otherwise.
pub const CHUNKING: Chunking = Chunking::Chunks(CHUNK);

/// How many times a resumed upload asks again where it stands after a chunk was refused as
/// out of range, before it starts over.
const RANGE_RETRIES: u32 = 3;

/// What [`Registry::put_blob_resumable`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upload {
    /// Bytes sent in this call.
    pub sent: u64,
    /// Where an earlier run's upload was taken up, if it was.
    pub resumed_at: Option<u64>,
    /// Why an earlier run's upload could not be taken up and the blob was sent from the
    /// beginning.
    pub restarted: Option<String>,
}

/// How a run of chunks ended.
enum Chunks {
    /// Every byte is with the registry; finish at `location`.
    Done { location: String, sent: u64 },
    /// The registry refused a chunk's range (416): it holds more, or less, than thought.
    OutOfRange { sent: u64 },
}

/// How a resumable upload sends its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// PATCHes of this many bytes, the location recorded after each.
    Chunks(u64),
    /// One PATCH with every byte left; the upload's location is recorded before it starts,
    /// and a killed run's next run asks the registry how much it holds.
    Whole,
}

impl Chunking {
    /// The bytes of the next request, with `left` bytes to send.
    fn next(self, left: u64) -> u64 {
        match self {
            Chunking::Chunks(n) => n.min(left),
            Chunking::Whole => left,
        }
    }
}

/// Where in-progress uploads are recorded, one file per target blob, and how they send.
#[derive(Debug, Clone)]
pub struct UploadJournal {
    dir: PathBuf,
    chunking: Chunking,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    location: String,
}

impl UploadJournal {
    pub fn new(dir: impl Into<PathBuf>) -> UploadJournal {
        UploadJournal {
            dir: dir.into(),
            chunking: CHUNKING,
        }
    }

    /// The same journal, uploading with `chunking` (the benchmark measures the choices).
    pub fn with_chunking(mut self, chunking: Chunking) -> UploadJournal {
        self.chunking = chunking;
        self
    }

    fn file(&self, host: &str, repo: &str, digest: &str) -> PathBuf {
        let key = format!("{host}/{repo}@{digest}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>();
        self.dir.join(format!("{key}.json"))
    }

    fn load(&self, host: &str, repo: &str, digest: &str) -> Option<Entry> {
        let text = std::fs::read(self.file(host, repo, digest)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn save(&self, host: &str, repo: &str, digest: &str, location: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let entry = Entry {
            location: location.to_string(),
        };
        write_replacing(
            &self.file(host, repo, digest),
            &serde_json::to_vec(&entry).expect("JSON"),
        )
    }

    fn remove(&self, host: &str, repo: &str, digest: &str) {
        let _ = std::fs::remove_file(self.file(host, repo, digest));
    }
}

/// Temp file and rename, so a kill never leaves half an entry.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// The source stream shared by the chunks of one upload.
struct Source {
    stream: BlobStream,
    leftover: Option<bytes::Bytes>,
    hasher: Option<Sha256>,
    failed: Option<String>,
}

/// A stream of the next `limit` bytes of the shared source.
fn take(
    source: Arc<Mutex<Source>>,
    limit: u64,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::unfold((source, limit), |(source, left)| async move {
        if left == 0 {
            return None;
        }
        let mut s = source.lock().await;
        let chunk = match s.leftover.take() {
            Some(c) => c,
            None => match s.stream.next().await {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    s.failed = Some(e.to_string());
                    return Some((Err(e), (source.clone(), 0)));
                }
                None => {
                    s.failed = Some("the source ended early".into());
                    return Some((
                        Err(std::io::Error::other("the source ended early")),
                        (source.clone(), 0),
                    ));
                }
            },
        };
        let chunk = if chunk.len() as u64 > left {
            let rest = chunk.slice(left as usize..);
            s.leftover = Some(rest);
            chunk.slice(..left as usize)
        } else {
            chunk
        };
        if let Some(h) = s.hasher.as_mut() {
            h.update(&chunk);
        }
        let n = chunk.len() as u64;
        drop(s);
        Some((Ok(chunk), (source, left - n)))
    })
}

impl Registry {
    /// What the registry holds of the upload at `location`: the next offset and the location
    /// to send it to, or why not (the upload is gone: finished, cancelled, expired; or the
    /// registry does not tell an upload's status).
    async fn upload_offset(
        &self,
        repo: &str,
        location: &str,
    ) -> Result<Result<(u64, String), String>, OciError> {
        let url = self.url(location);
        let resp = self.send(&Registry::push(repo), |c| c.get(&url)).await?;
        if resp.status() != StatusCode::NO_CONTENT {
            return Ok(Err(format!(
                "{} no longer has the upload the last run left (its status: {}); registries \
                 that check the offset of a resumed upload, such as distribution 2.8, cancel \
                 an upload cut off in the middle of a request",
                self.host(),
                resp.status()
            )));
        }
        let end = resp
            .headers()
            .get("range")
            .and_then(|h| h.to_str().ok())
            .and_then(|r| r.rsplit('-').next())
            .and_then(|n| n.parse::<u64>().ok());
        // The location to go on with: distribution keeps the upload's state (its offset) in
        // the URL, so the one recorded before the kill no longer matches what it holds.
        let next = resp
            .headers()
            .get("location")
            .and_then(|h| h.to_str().ok())
            .unwrap_or(location)
            .to_string();
        Ok(Ok((end.map_or(0, |e| e + 1), next)))
    }

    /// Uploads blob `digest` (`size` bytes) of `src_repo` on `src` into `repo` in chunks,
    /// continuing an upload `journal` recorded if the registry still has it. Returns the
    /// bytes sent in this call.
    ///
    /// A registry may still be writing the last chunk of a killed run when it is asked where
    /// the upload stands (distribution keeps reading the cut-off request's body), so a chunk
    /// sent from that offset can be refused as out of range (416): the upload's status is
    /// asked again and the upload goes on from there, a few times; a registry that still
    /// refuses gets the blob from the beginning, in a new upload.
    pub async fn put_blob_resumable(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        src: &dyn ImageSource,
        src_repo: &str,
        journal: &UploadJournal,
    ) -> Result<Upload, OciError> {
        let host = self.host().to_string();
        let journal_err = |e: std::io::Error| OciError::Registry {
            registry: host.clone(),
            message: format!("upload journal: {e}"),
        };
        let mut report = Upload::default();
        let mut refused = 0;
        let (location, source) = loop {
            let mut resumed = None;
            if refused <= RANGE_RETRIES
                && let Some(entry) = journal.load(&host, repo, digest)
            {
                match self.upload_offset(repo, &entry.location).await? {
                    Ok((offset, location)) => {
                        report.resumed_at = Some(offset);
                        resumed = Some((location, offset));
                    }
                    Err(why) => report.restarted = Some(why),
                }
            }
            let (location, offset) = match resumed {
                Some(r) => r,
                None => {
                    let location = self.start_upload(repo).await?;
                    journal
                        .save(&host, repo, digest, &location)
                        .map_err(journal_err)?;
                    (location, 0)
                }
            };
            let fresh = offset == 0;
            let stream = src.blob_from(src_repo, digest, offset).await?;
            let source = Arc::new(Mutex::new(Source {
                stream,
                leftover: None,
                hasher: fresh.then(Sha256::new),
                failed: None,
            }));
            match self
                .send_chunks(
                    repo, digest, size, location, offset, &source, src, src_repo, journal,
                )
                .await?
            {
                Chunks::Done { location, sent: n } => {
                    report.sent += n;
                    break (location, source);
                }
                Chunks::OutOfRange { sent: n } if !fresh => {
                    report.sent += n;
                    refused += 1;
                    if refused > RANGE_RETRIES {
                        // Start over: a new upload from the first byte.
                        journal.remove(&host, repo, digest);
                        report.restarted = Some(format!(
                            "the registry refused {refused} times to go on at the offset it reported"
                        ));
                    }
                }
                Chunks::OutOfRange { .. } => {
                    journal.remove(&host, repo, digest);
                    return Err(self.err(format!(
                        "PATCH {repo} upload: the registry refused the chunk at the offset it reported"
                    )));
                }
            }
        };
        if let Some(progress) = wallaroo_engine::progress::current() {
            match (&report.restarted, report.resumed_at) {
                (Some(why), _) => progress.note(format!(
                    "blob {digest} ({}) sent again from the start: {why}",
                    size_text(size)
                )),
                (None, Some(at)) => progress.note(format!(
                    "blob {digest} ({}): the last run's upload taken up at {}",
                    size_text(size),
                    size_text(at)
                )),
                (None, None) => {}
            }
        }
        if let Some(h) = source.lock().await.hasher.take() {
            let got = format!(
                "sha256:{}",
                h.finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
            if got != digest {
                journal.remove(&host, repo, digest);
                return Err(OciError::Digest {
                    registry: src.name(),
                    repo: src_repo.into(),
                    digest: digest.into(),
                });
            }
        }
        let url = self.url(&location);
        let sep = if url.contains('?') { '&' } else { '?' };
        let put_url = format!("{url}{sep}digest={digest}");
        let resp = self
            .send(&Registry::push(repo), |c| {
                c.put(&put_url).header("Content-Length", 0)
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            let status = resp.status();
            if status.is_client_error() {
                // The upload cannot be finished (a digest mismatch, an expired session):
                // start over next time.
                journal.remove(&host, repo, digest);
            }
            return Err(OciError::Registry {
                registry: host.clone(),
                message: format!(
                    "finish upload of {digest} to {repo}: {status} {}",
                    resp.text().await.unwrap_or_default()
                ),
            });
        }
        journal.remove(&host, repo, digest);
        Ok(report)
    }

    /// Sends `size - offset` bytes of `source` in chunks from `offset`, recording the
    /// location after each chunk the registry confirmed.
    #[allow(clippy::too_many_arguments)]
    async fn send_chunks(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        mut location: String,
        mut offset: u64,
        source: &Arc<Mutex<Source>>,
        src: &dyn ImageSource,
        src_repo: &str,
        journal: &UploadJournal,
    ) -> Result<Chunks, OciError> {
        let host = self.host().to_string();
        let mut sent = 0;
        while offset < size {
            let n = journal.chunking.next(size - offset);
            let url = self.url(&location);
            wallaroo_profile::request();
            let resp = self
                .authorized(reqwest::Method::PATCH, &url, &Registry::push(repo))
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("{offset}-{}", offset + n - 1))
                .header("Content-Length", n)
                .body(reqwest::Body::wrap_stream(take(source.clone(), n)))
                .send()
                .await;
            if let Some(e) = source.lock().await.failed.take() {
                return Err(OciError::Unavailable {
                    registry: src.name(),
                    message: format!("reading {src_repo}@{digest}: {e}"),
                });
            }
            let resp = resp.map_err(|e| OciError::Unavailable {
                registry: host.clone(),
                message: wallaroo_engine::error_chain(&e),
            })?;
            let status = resp.status();
            if status == StatusCode::RANGE_NOT_SATISFIABLE {
                return Ok(Chunks::OutOfRange { sent });
            }
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                return Err(OciError::Registry {
                    registry: host.clone(),
                    message: format!(
                        "PATCH {repo} upload: {status}: {}",
                        crate::registry::body_limit(Some(n))
                    ),
                });
            }
            if status != StatusCode::ACCEPTED {
                return Err(if status.is_server_error() {
                    OciError::Unavailable {
                        registry: host.clone(),
                        message: format!("PATCH {repo} upload: {status}"),
                    }
                } else {
                    OciError::Registry {
                        registry: host.clone(),
                        message: format!(
                            "PATCH {repo} upload: {status} {}",
                            resp.text().await.unwrap_or_default()
                        ),
                    }
                });
            }
            if let Some(next) = resp.headers().get("location").and_then(|h| h.to_str().ok()) {
                location = next.to_string();
            }
            offset += n;
            sent += n;
            wallaroo_profile::bytes(n);
            journal
                .save(&host, repo, digest, &location)
                .map_err(|e| OciError::Registry {
                    registry: host.clone(),
                    message: format!("upload journal: {e}"),
                })?;
        }
        Ok(Chunks::Done { location, sent })
    }
}
