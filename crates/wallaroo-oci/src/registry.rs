//! One registry: requests with Basic or Bearer auth (answering the `WWW-Authenticate`
//! challenge), manifests, blobs and uploads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sha2::{Digest, Sha256};

mod answer;
mod transport;
pub(crate) use transport::backoff;
use transport::retryable_status;

/// Manifest media types wallaroo accepts, indexes first.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// What can go wrong; each names the registry.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("registry {registry} refused the credentials for {what} ({status})")]
    Auth {
        registry: String,
        what: String,
        status: StatusCode,
    },
    /// A chart's contents could not be read or rendered.
    #[error("chart {chart}: {message}")]
    Chart { chart: String, message: String },
    /// The registry could not be reached, or answered 429 or 5xx, after every retry.
    #[error("registry {registry} is unavailable: {message}")]
    Unavailable { registry: String, message: String },
    /// The registry said its storage is full (a full disk, a quota): said once, never
    /// retried, and nothing more is sent to it in this run.
    #[error("registry {registry} is out of space: {message}")]
    OutOfSpace { registry: String, message: String },
    #[error(
        "registry {registry}: blob {digest} of {repo} does not match its digest; nothing of this image was pushed"
    )]
    Digest {
        registry: String,
        repo: String,
        digest: String,
    },
}

impl OciError {
    /// Whether trying the same operation again may succeed (a dropped connection, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, OciError::Unavailable { .. })
    }
}

/// A username and password (or token) for a registry.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The password is never printed.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"(sensitive)")
            .finish()
    }
}

/// A manifest as the registry serves it: its bytes are pushed verbatim, so digests stay.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Manifest {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).unwrap_or(serde_json::Value::Null)
    }

    pub fn is_index(&self) -> bool {
        self.media_type.contains("index") || self.media_type.contains("manifest.list")
    }
}

/// A blob's bytes as they arrive.
pub type BlobStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

/// Where images are read from: a registry, or an offline bundle.
#[async_trait::async_trait]
pub trait ImageSource: Send + Sync {
    /// For messages: the registry's host, or the bundle's path.
    fn name(&self) -> String;
    /// The manifest at `reference` (a tag or a digest) of `repo`, or `None`.
    async fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Manifest>, OciError>;
    /// Blob `digest` of `repo`, streamed (the caller checks the digest).
    async fn blob(&self, repo: &str, digest: &str) -> Result<BlobStream, OciError>;
    /// A blob known to be small (a chart, a config, a signature's payload): as
    /// [`ImageSource::blob`], but a registry reads it where its manifests are read, on the
    /// connection already open, not on one of its own.
    async fn small_blob(&self, repo: &str, digest: &str) -> Result<BlobStream, OciError> {
        self.blob(repo, digest).await
    }
    /// The digests the OCI referrers API lists for `digest`; `None` where the source has no
    /// such API.
    async fn referrers_api(
        &self,
        _repo: &str,
        _digest: &str,
    ) -> Result<Option<Vec<String>>, OciError> {
        Ok(None)
    }
    /// Every tag of `repo`, where the source can list them in one go (`None` where it
    /// cannot, or refuses): one request instead of a lookup per tag asked about.
    async fn tag_list(&self, _repo: &str) -> Option<Vec<String>> {
        None
    }
    /// Whether many lookups at once cost no connection each: a registry that has answered
    /// over HTTP/2, or a source on disk.
    fn multiplexed(&self) -> bool {
        false
    }
    /// The blob from byte `offset` on (resuming an upload). By default the first `offset`
    /// bytes are read and dropped.
    async fn blob_from(
        &self,
        repo: &str,
        digest: &str,
        offset: u64,
    ) -> Result<BlobStream, OciError> {
        let stream = self.blob(repo, digest).await?;
        Ok(skip(stream, offset))
    }
}

/// `stream` without its first `n` bytes.
pub(crate) fn skip(stream: BlobStream, n: u64) -> BlobStream {
    use futures_util::StreamExt;
    if n == 0 {
        return stream;
    }
    let mut left = n;
    Box::pin(stream.filter_map(move |chunk| {
        let out = match chunk {
            Ok(c) if left >= c.len() as u64 => {
                left -= c.len() as u64;
                None
            }
            Ok(c) => {
                let rest = c.slice(left as usize..);
                left = 0;
                Some(Ok(rest))
            }
            Err(e) => Some(Err(e)),
        };
        std::future::ready(out)
    }))
}

#[async_trait::async_trait]
impl ImageSource for Registry {
    fn name(&self) -> String {
        self.host.clone()
    }

    async fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Manifest>, OciError> {
        Registry::manifest(self, repo, reference).await
    }

    async fn blob(&self, repo: &str, digest: &str) -> Result<BlobStream, OciError> {
        self.blob_on(&self.bulk, repo, digest).await
    }

    async fn small_blob(&self, repo: &str, digest: &str) -> Result<BlobStream, OciError> {
        self.blob_on(&self.http, repo, digest).await
    }

    async fn tag_list(&self, repo: &str) -> Option<Vec<String>> {
        self.tags(repo).await.ok()
    }

    fn multiplexed(&self) -> bool {
        self.multiplexed.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn referrers_api(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Option<Vec<String>>, OciError> {
        use std::sync::atomic::Ordering::Relaxed;
        // A registry without the API answers 404 for a manifest it holds (OCI distribution
        // 1.1): asked once, not once per image.
        if self.no_referrers_api.load(Relaxed) {
            return Ok(None);
        }
        let _alone = if self.referrers_answered.load(Relaxed) {
            None
        } else {
            let guard = self.referrers_probe.lock().await;
            if self.no_referrers_api.load(Relaxed) {
                return Ok(None);
            }
            (!self.referrers_answered.load(Relaxed)).then_some(guard)
        };
        let url = self.url(&format!("/v2/{repo}/referrers/{digest}"));
        let resp = self
            .send(&Self::pull(repo), |c| {
                c.get(&url)
                    .header("Accept", "application/vnd.oci.image.index.v1+json")
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            self.no_referrers_api.store(true, Relaxed);
        }
        self.referrers_answered.store(true, Relaxed);
        let is_index = resp
            .headers()
            .get("content-type")
            .and_then(|h| h.to_str().ok())
            .is_some_and(|t| t.contains("image.index"));
        if !resp.status().is_success() || !is_index {
            return Ok(None);
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| self.err(e))?;
        Ok(Some(
            body["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["digest"].as_str().map(String::from))
                .collect(),
        ))
    }

    async fn blob_from(
        &self,
        repo: &str,
        digest: &str,
        offset: u64,
    ) -> Result<BlobStream, OciError> {
        use futures_util::StreamExt;
        let get = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .send_on(&self.bulk, &Self::pull(repo), |c| {
                c.get(&get).header("Range", format!("bytes={offset}-"))
            })
            .await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.err(format!("GET blob {repo}@{digest}: {status}")));
        }
        let stream: BlobStream = Box::pin(
            resp.bytes_stream()
                .map(|r| r.map_err(std::io::Error::other)),
        );
        // A registry that ignores Range sends it all: drop what is not wanted.
        Ok(if status == StatusCode::PARTIAL_CONTENT {
            stream
        } else {
            skip(stream, offset)
        })
    }
}

/// A small blob (a config, a chart) read whole from any source, at most `max` bytes, digest
/// checked.
pub async fn read_blob(
    src: &dyn ImageSource,
    repo: &str,
    digest: &str,
    max: u64,
) -> Result<Vec<u8>, OciError> {
    use futures_util::StreamExt;
    let err = |message: String| OciError::Registry {
        registry: src.name(),
        message,
    };
    let mut stream = src.small_blob(repo, digest).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.map_err(|e| err(format!("blob {repo}@{digest}: {e}")))?);
        if bytes.len() as u64 > max {
            return Err(err(format!(
                "blob {repo}@{digest} is larger than {max} bytes"
            )));
        }
    }
    if sha256(&bytes) != digest {
        return Err(OciError::Digest {
            registry: src.name(),
            repo: repo.into(),
            digest: digest.into(),
        });
    }
    Ok(bytes)
}

/// What [`Registry::remove_image`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// The manifest was deleted, and its tag with it.
    Manifest,
    /// The manifest was deleted, then the tag, which the registry kept apart.
    ManifestAndTag,
    /// Only the tag: another tag still names the manifest.
    Tag,
    /// Nothing: another tag names the manifest and the registry cannot delete a tag alone.
    KeptShared { other: String },
    /// It was not there.
    Gone,
}

/// How long [`Registry::prefetch_manifest_digests`] waits for its answers at most.
const PREFETCH_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Idle connections kept per registry.
const IDLE_CONNECTIONS: usize = 8;

/// A registry reached over HTTPS.
pub struct Registry {
    host: String,
    /// Where the API answers: the host, except Docker Hub's (`docker.io` is served by
    /// `registry-1.docker.io`).
    api_host: String,
    credentials: Option<Credentials>,
    /// Requests without a blob body (manifests, tag lists, referrers, HEADs, upload starts,
    /// mounts): HTTP/2 where the registry offers it, so that a burst of them (a release's
    /// pins and tag lists at once) shares one connection instead of opening one each.
    http: reqwest::Client,
    /// Blob bodies, read or sent: HTTP/1.1, a connection each, so that every transfer has
    /// its own TCP window and one slow stream never holds back another's flow control.
    bulk: reqwest::Client,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, String>>,
    /// Manifests read by digest (or found to have one), by `repo@digest`: content-addressed,
    /// so they never change; a plan's pin resolution and the copy after it share them.
    manifests: Mutex<HashMap<String, Manifest>>,
    /// The registry asked for Basic auth once: send it up front from then on (a streamed
    /// body cannot be sent twice).
    basic: std::sync::atomic::AtomicBool,
    /// The registry's Bearer challenge, once seen: a token for a new scope is asked for
    /// before the request, not after a 401 round trip.
    challenge: Mutex<Option<String>>,
    /// Whether a first request has shown how this registry authenticates. Until one has,
    /// requests go one at a time (`probe`): 32 concurrent first requests would each be
    /// refused and sent again.
    learned: std::sync::atomic::AtomicBool,
    probe: tokio::sync::Mutex<()>,
    /// The registry answered 404 for the referrers of a manifest it holds: it has no API.
    no_referrers_api: std::sync::atomic::AtomicBool,
    /// Whether a referrers request has been answered. Until one has, they go one at a time
    /// (`referrers_probe`): a release's 32 first lookups at once would each learn the same
    /// 404 of a registry without the API.
    referrers_answered: std::sync::atomic::AtomicBool,
    referrers_probe: tokio::sync::Mutex<()>,
    /// The registry has mounted a blob this run asked it to (see
    /// [`Registry::grants_mounts`]).
    mounts_granted: std::sync::atomic::AtomicBool,
    /// The registry has answered a request without a blob body over HTTP/2.
    multiplexed: std::sync::atomic::AtomicBool,
    /// What the registry said when it refused for want of space, once it has.
    full: Mutex<Option<String>>,
    /// What tags held when asked ahead of their reads (see
    /// [`Registry::prefetch_manifest_digests`]), by (`repo`, `tag`); each answers one read.
    prefetched: Mutex<HashMap<(String, String), Option<String>>>,
}

/// What a registry holds of one blob in one repository (see [`Registry::blob_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobState {
    Present,
    Missing,
    /// The registry answered every lookup with a server error (its words): a record it
    /// cannot read, which an upload of the blob rewrites.
    Damaged(String),
}

/// The OCI digest of `bytes` (`sha256:<hex>`).
pub fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

impl Registry {
    /// A registry at `host` (`name[:port]`), trusting `ca_file` when given.
    pub fn new(
        host: &str,
        credentials: Option<Credentials>,
        ca_file: Option<&Path>,
    ) -> Result<Registry, OciError> {
        let err = |m: String| OciError::Registry {
            registry: host.to_string(),
            message: m,
        };
        // Idle connections are kept for reuse up to what a run keeps busy at once; each one
        // holds its TLS state and buffers (a burst of 32 first reads would otherwise keep 32).
        let cert = match ca_file {
            Some(ca) => {
                let pem =
                    std::fs::read(ca).map_err(|e| err(format!("CA {}: {e}", ca.display())))?;
                Some(
                    reqwest::Certificate::from_pem(&pem)
                        .map_err(|e| err(format!("CA {}: {e}", ca.display())))?,
                )
            }
            None => None,
        };
        let client = |bulk: bool| {
            let mut builder = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(300))
                .pool_max_idle_per_host(IDLE_CONNECTIONS);
            if bulk {
                builder = builder.http1_only();
            }
            if let Some(cert) = &cert {
                builder = builder.tls_certs_only([cert.clone()]);
            }
            builder.build().map_err(|e| err(e.to_string()))
        };
        let (http, bulk) = (client(false)?, client(true)?);
        let api_host = match host {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        Ok(Registry {
            host: host.to_string(),
            api_host: api_host.to_string(),
            credentials,
            http,
            bulk,
            tokens: Mutex::new(HashMap::new()),
            manifests: Mutex::new(HashMap::new()),
            basic: std::sync::atomic::AtomicBool::new(false),
            challenge: Mutex::new(None),
            learned: std::sync::atomic::AtomicBool::new(false),
            probe: tokio::sync::Mutex::new(()),
            no_referrers_api: std::sync::atomic::AtomicBool::new(false),
            referrers_answered: std::sync::atomic::AtomicBool::new(false),
            referrers_probe: tokio::sync::Mutex::new(()),
            mounts_granted: std::sync::atomic::AtomicBool::new(false),
            multiplexed: std::sync::atomic::AtomicBool::new(false),
            prefetched: Mutex::new(HashMap::new()),
            full: Mutex::new(None),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    async fn blob_on(
        &self,
        client: &reqwest::Client,
        repo: &str,
        digest: &str,
    ) -> Result<BlobStream, OciError> {
        use futures_util::StreamExt;
        let get = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .send_on(client, &Self::pull(repo), |c| c.get(&get))
            .await?;
        if !resp.status().is_success() {
            return Err(self.err(format!("GET blob {repo}@{digest}: {}", resp.status())));
        }
        Ok(Box::pin(
            resp.bytes_stream()
                .map(|r| r.map_err(std::io::Error::other)),
        ))
    }

    pub(crate) fn err(&self, message: impl std::fmt::Display) -> OciError {
        OciError::Registry {
            registry: self.host.clone(),
            message: message.to_string(),
        }
    }

    fn pull(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }

    pub(crate) fn push(repo: &str) -> String {
        format!("repository:{repo}:pull,push")
    }

    /// The manifest at `reference`, or `None` when there is none.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, OciError> {
        if let Some(m) = self
            .manifests
            .lock()
            .expect("manifest cache")
            .get(&format!("{repo}@{reference}"))
        {
            return Ok(Some(m.clone()));
        }
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(&Self::pull(repo), |c| {
                c.get(&url).header("Accept", MANIFEST_TYPES)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.err(format!(
                "GET manifest {repo}:{reference}: {}",
                resp.status()
            )));
        }
        let media_type = resp
            .headers()
            .get("content-type")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.bytes().await.map_err(|e| self.err(e))?.to_vec();
        wallaroo_profile::bytes(bytes.len() as u64);
        let digest = sha256(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(OciError::Digest {
                registry: self.host.clone(),
                repo: repo.into(),
                digest: reference.into(),
            });
        }
        let manifest = Manifest {
            media_type,
            digest,
            bytes,
        };
        self.manifests
            .lock()
            .expect("manifest cache")
            .insert(format!("{repo}@{}", manifest.digest), manifest.clone());
        Ok(Some(manifest))
    }

    /// The digest of the manifest at `reference` (a HEAD), or `None`.
    pub async fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<String>, OciError> {
        let asked = self
            .prefetched
            .lock()
            .expect("prefetched")
            .remove(&(repo.to_string(), reference.to_string()));
        if let Some(digest) = asked {
            return Ok(digest);
        }
        self.ask_manifest_digest(repo, reference).await
    }

    /// Asks what each (`repo`, `tag`) holds now, all at once, for reads that will want it
    /// shortly (a plan's refresh of its images, asked while the source is still being read):
    /// the next [`Registry::manifest_digest`] of each is answered from here, once; the one
    /// after asks again. Each question is asked once, without retries, and all of them
    /// within [`PREFETCH_WITHIN`]: one that fails or is not answered by then is left to its
    /// read, so a registry that is down costs its reads no more than before.
    pub async fn prefetch_manifest_digests(&self, refs: Vec<(String, String)>) {
        use futures_util::StreamExt;
        let asked = futures_util::stream::iter(refs)
            .map(|(repo, tag)| async move {
                let url = self.url(&format!("/v2/{repo}/manifests/{tag}"));
                let sent = self
                    .send_once(&self.http, &Self::pull(&repo), &|c: &reqwest::Client| {
                        c.head(&url).header("Accept", MANIFEST_TYPES)
                    })
                    .await;
                let digest = match sent {
                    Ok(resp) => self.digest_answer(&repo, &tag, resp).ok(),
                    Err(_) => None,
                };
                ((repo, tag), digest)
            })
            .buffer_unordered(32)
            .for_each(|(key, digest)| {
                if let Some(digest) = digest {
                    self.prefetched
                        .lock()
                        .expect("prefetched")
                        .insert(key, digest);
                }
                std::future::ready(())
            });
        let _ = tokio::time::timeout(PREFETCH_WITHIN, asked).await;
    }

    /// Drops what [`Registry::prefetch_manifest_digests`] asked and no read took: once the
    /// reads it was for are done, a later read asks the registry.
    pub fn forget_prefetched(&self) {
        self.prefetched.lock().expect("prefetched").clear();
    }

    async fn ask_manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<String>, OciError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(&Self::pull(repo), |c| {
                c.head(&url).header("Accept", MANIFEST_TYPES)
            })
            .await?;
        self.digest_answer(repo, reference, resp)
    }

    /// Reads back a manifest just pushed as `repo:reference`: the registry must serve it as
    /// `digest`. A registry whose stored copy of the manifest is damaged (a disk that filled
    /// mid-push can leave its bytes cut short, and a push never rewrites stored bytes) answers
    /// every lookup with 500: named, with the file to delete and the collector to run.
    pub(crate) async fn confirm_manifest(
        &self,
        repo: &str,
        reference: &str,
        digest: &str,
    ) -> Result<(), OciError> {
        match self.ask_manifest_digest(repo, reference).await {
            Ok(Some(found)) if found == digest => Ok(()),
            Ok(found) => Err(self.err(format!(
                "pushed {repo}:{reference} as {digest}, and the registry now answers {} for it",
                found.as_deref().unwrap_or("not found")
            ))),
            Err(OciError::Unavailable { message, .. }) if message.starts_with("answered 500") => {
                let hex = digest.trim_start_matches("sha256:");
                Err(self.err(format!(
                    "cannot read {repo}:{reference} ({digest}) back after pushing it ({message}): its stored copy of the manifest is damaged, as a disk that filled mid-push leaves it, and a push does not rewrite stored bytes. On the registry (distribution): delete `docker/registry/v2/blobs/sha256/{}/{hex}/data` under its storage root (or run `registry garbage-collect CONFIG` after deleting the repository), then apply again",
                    &hex[..hex.len().min(2)],
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// The digest a HEAD of manifest `repo:reference` answered; `None` when not found.
    fn digest_answer(
        &self,
        repo: &str,
        reference: &str,
        resp: Response,
    ) -> Result<Option<String>, OciError> {
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(resp
                .headers()
                .get("docker-content-digest")
                .and_then(|h| h.to_str().ok())
                .map(String::from)),
            s => Err(self.err(format!("HEAD manifest {repo}:{reference}: {s}"))),
        }
    }

    /// The tags of `repo` (empty when the repository does not exist), every page of them
    /// (a registry that pages the list names the next page in a `Link` header).
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, OciError> {
        let mut url = self.url(&format!("/v2/{repo}/tags/list"));
        let mut tags = Vec::new();
        // Bounded: a registry that kept naming pages would otherwise hold the plan forever.
        for _ in 0..1000 {
            let resp = self.send(&Self::pull(repo), |c| c.get(&url)).await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(tags);
            }
            if !resp.status().is_success() {
                return Err(self.err(format!("GET tags of {repo}: {}", resp.status())));
            }
            let next = resp
                .headers()
                .get("link")
                .and_then(|h| h.to_str().ok())
                .and_then(next_page);
            let body: serde_json::Value = resp.json().await.map_err(|e| self.err(e))?;
            tags.extend(
                body["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(String::from)),
            );
            match next {
                Some(n) => url = self.url(&n),
                None => return Ok(tags),
            }
        }
        Err(self.err(format!("GET tags of {repo}: more than 1000 pages")))
    }

    /// Deletes the manifest `digest` of `repo` (and so every tag on it); `false` when it was
    /// already gone. Registries must allow deletes (distribution: `storage.delete.enabled`).
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<bool, OciError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{digest}"));
        let resp = self
            .send(&format!("repository:{repo}:delete,pull,push"), |c| {
                c.delete(&url)
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            StatusCode::METHOD_NOT_ALLOWED => Err(self.err(format!(
                "DELETE manifest {repo}@{digest}: the registry does not allow deletes"
            ))),
            s => Err(self.err(format!("DELETE manifest {repo}@{digest}: {s}"))),
        }
    }

    /// Deletes tag `tag` of `repo` alone (OCI distribution 1.1); `false` where the registry
    /// does not delete tags (distribution answers 400 or 405 `UNSUPPORTED`) or it was gone.
    pub async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, OciError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{tag}"));
        let resp = self
            .send(&format!("repository:{repo}:delete,pull,push"), |c| {
                c.delete(&url)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED => {
                Ok(false)
            }
            s => Err(self.err(format!("DELETE tag {repo}:{tag}: {s}"))),
        }
    }

    /// Removes what `repo:tag` names (manifest `digest`) the way this registry allows:
    /// - another tag still names the manifest: only the tag goes, where tags can be deleted
    ///   alone; elsewhere the manifest is kept (deleting it would take the other tag along);
    /// - otherwise the manifest is deleted, and then the tag too where the registry keeps
    ///   tags apart from manifests (go-containerregistry's registry does).
    pub async fn remove_image(
        &self,
        repo: &str,
        tag: &str,
        digest: &str,
    ) -> Result<Removed, OciError> {
        for other in self.tags(repo).await? {
            if other != tag && self.manifest_digest(repo, &other).await?.as_deref() == Some(digest)
            {
                return Ok(if self.delete_tag(repo, tag).await? {
                    Removed::Tag
                } else {
                    Removed::KeptShared { other }
                });
            }
        }
        if !self.delete_manifest(repo, digest).await? {
            return Ok(Removed::Gone);
        }
        if self.manifest_digest(repo, tag).await?.is_none() {
            return Ok(Removed::Manifest);
        }
        if self.delete_tag(repo, tag).await? && self.manifest_digest(repo, tag).await?.is_none() {
            return Ok(Removed::ManifestAndTag);
        }
        Err(self.err(format!(
            "{repo}:{tag} still resolves after its manifest {digest} was deleted, and the registry does not delete tags"
        )))
    }

    pub async fn has_blob(&self, repo: &str, digest: &str) -> Result<bool, OciError> {
        Ok(self.blob_state(repo, digest).await? == BlobState::Present)
    }

    /// Whether `repo` holds blob `digest`, telling a damaged record from a missing one: a
    /// registry that answers the lookup with a server error every time (distribution's
    /// `invalid checksum digest format` for a link file a full disk cut short) holds a record
    /// it cannot read, which an upload of the blob rewrites. The lookup is tried as often as
    /// any request, so an outage still reads as one.
    pub async fn blob_state(&self, repo: &str, digest: &str) -> Result<BlobState, OciError> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        match self.send(&Self::push(repo), |c| c.head(&url)).await {
            Ok(resp) if resp.status().is_success() => Ok(BlobState::Present),
            // Any other answer reads as absent, as it always did: the upload says what is wrong.
            Ok(_) => Ok(BlobState::Missing),
            // Reachable (it answered), but with 500 to every lookup: its record is damaged. (A
            // 502-504 is a proxy or an outage, not damage, and stays an error.) A HEAD carries
            // no words; one GET of its first byte reads them.
            Err(OciError::Unavailable { message, .. }) if message.starts_with("answered 500") => {
                let get = self
                    .send_once(&self.http, &Self::push(repo), &|c: &reqwest::Client| {
                        c.get(&url).header("Range", "bytes=0-0")
                    })
                    .await;
                Ok(BlobState::Damaged(match get {
                    Ok(resp) if resp.status().is_server_error() => {
                        format!("answered {}", self.answer(resp).await.describe())
                    }
                    _ => message,
                }))
            }
            Err(e) => Err(e),
        }
    }

    /// Mounts a blob from another repository of this registry; false if it declined.
    pub async fn mount(&self, repo: &str, digest: &str, from: &str) -> Result<bool, OciError> {
        let url = self.url(&format!(
            "/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
        ));
        let scope = format!("{} repository:{from}:pull", Self::push(repo));
        let resp = self.send(&scope, |c| c.post(&url)).await?;
        let mounted = resp.status() == StatusCode::CREATED;
        if mounted {
            self.mounts_granted
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(mounted)
    }

    /// Whether this registry has mounted a blob for this client: then a blob it holds is
    /// found by asking to mount it from its own repository (see
    /// [`Registry::put_blob_unless_present`]). A registry that declines mounts answers such
    /// a request as a new upload even when it holds the blob, so until one is granted a blob
    /// is looked for with a HEAD of its own.
    pub fn grants_mounts(&self) -> bool {
        self.mounts_granted
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts an upload session in `repo`; its location.
    pub(crate) async fn start_upload(&self, repo: &str) -> Result<String, OciError> {
        self.refuse_when_full()?;
        let start = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let started = self.send(&Self::push(repo), |c| c.post(&start)).await?;
        if started.status() != StatusCode::ACCEPTED {
            return Err(self
                .refused(&format!("start upload to {repo}"), started)
                .await);
        }
        Ok(started
            .headers()
            .get("location")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string())
    }

    /// A request with the auth already known to work for `scope` (for blob bodies that
    /// cannot be sent twice).
    pub(crate) fn authorized(&self, method: Method, url: &str, scope: &str) -> RequestBuilder {
        self.authorize(self.bulk.request(method, url), scope)
    }

    /// Starts an upload of `digest` in `repo` unless the repository holds it already: one
    /// request that asks to mount the blob from `repo` itself, which a registry grants (201)
    /// only when the blob is there, and otherwise answers as it answers any upload's start
    /// (202, with the session's location). `None` when the blob is there. A registry that
    /// refuses such a mount outright gets a plain start.
    pub(crate) async fn start_upload_unless_present(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Option<String>, OciError> {
        self.refuse_when_full()?;
        let url = self.url(&format!(
            "/v2/{repo}/blobs/uploads/?mount={digest}&from={repo}"
        ));
        let started = self.send(&Self::push(repo), |c| c.post(&url)).await?;
        match started.status() {
            StatusCode::CREATED => {
                self.mounts_granted
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(None)
            }
            StatusCode::ACCEPTED => Ok(Some(
                started
                    .headers()
                    .get("location")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("")
                    .to_string(),
            )),
            _ => self.start_upload(repo).await.map(Some),
        }
    }

    /// Streams blob `digest` from `src_repo` of `src` into `repo` of this registry, never
    /// holding it whole: chunks are hashed as they pass, and a blob whose bytes do not match
    /// its digest is cut off before the upload completes, so the registry keeps nothing of it.
    /// Returns the bytes moved.
    pub async fn put_blob_from(
        &self,
        repo: &str,
        digest: &str,
        src: &dyn ImageSource,
        src_repo: &str,
    ) -> Result<u64, OciError> {
        let location = self.start_upload(repo).await?;
        self.put_blob_at(repo, &location, digest, src, src_repo)
            .await
    }

    /// As [`Registry::put_blob_from`], but the registry is asked first in the same request
    /// that starts the upload (see [`Registry::start_upload_unless_present`]): `None`, and
    /// nothing read from `src`, when `repo` holds the blob already.
    pub async fn put_blob_unless_present(
        &self,
        repo: &str,
        digest: &str,
        src: &dyn ImageSource,
        src_repo: &str,
    ) -> Result<Option<u64>, OciError> {
        let Some(location) = self.start_upload_unless_present(repo, digest).await? else {
            return Ok(None);
        };
        self.put_blob_at(repo, &location, digest, src, src_repo)
            .await
            .map(Some)
    }

    /// Sends the blob into the upload session at `location`, streamed from `src`.
    async fn put_blob_at(
        &self,
        repo: &str,
        location: &str,
        digest: &str,
        src: &dyn ImageSource,
        src_repo: &str,
    ) -> Result<u64, OciError> {
        let stream = src.blob(src_repo, digest).await?;
        let url = self.url(location);
        let sep = if url.contains('?') { '&' } else { '?' };

        let moved = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mismatch = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let body = verified(stream, digest.to_string(), moved.clone(), mismatch.clone());
        wallaroo_profile::request();
        let put = self
            .authorize(
                self.bulk
                    .request(Method::PUT, format!("{url}{sep}digest={digest}")),
                &Self::push(repo),
            )
            .header("Content-Type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await;
        if mismatch.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(OciError::Digest {
                registry: src.name(),
                repo: src_repo.into(),
                digest: digest.into(),
            });
        }
        let put = put.map_err(|e| self.unavailable(&e))?;
        if put.status() != StatusCode::CREATED {
            let status = put.status();
            let what = format!("upload {digest} to {repo}");
            return Err(match self.refused(&what, put).await {
                full @ OciError::OutOfSpace { .. } => full,
                OciError::Registry { message, .. } if retryable_status(status) => {
                    OciError::Unavailable {
                        registry: self.host.clone(),
                        message,
                    }
                }
                OciError::Registry { message, .. } if status == StatusCode::PAYLOAD_TOO_LARGE => {
                    self.err(format!("{message}: {}", body_limit(None)))
                }
                other => other,
            });
        }
        let moved = moved.load(std::sync::atomic::Ordering::Relaxed);
        wallaroo_profile::bytes(moved);
        Ok(moved)
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), OciError> {
        self.refuse_when_full()?;
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(&Self::push(repo), |c| {
                c.put(&url)
                    .header("Content-Type", &manifest.media_type)
                    .body(manifest.bytes.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self
                .refused(&format!("PUT manifest {repo}:{reference}"), resp)
                .await);
        }
        wallaroo_profile::bytes(manifest.bytes.len() as u64);
        Ok(())
    }
}

/// The next page a `Link` header names (`<PATH>; rel="next"`), as a path or URL.
pub(crate) fn next_page(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

/// `bytes` for people: GiB, MiB or KiB with two decimals.
pub fn size_text(bytes: u64) -> String {
    let (unit, name) = match bytes {
        b if b >= 1 << 30 => (1u64 << 30, "GiB"),
        b if b >= 1 << 20 => (1 << 20, "MiB"),
        _ => (1 << 10, "KiB"),
    };
    format!("{:.2} {name}", bytes as f64 / unit as f64)
}

/// What a 413 answer to an upload means, and the way out: something between wallaroo and the
/// registry's storage (most often an ingress or reverse proxy kept at its default, 1m for
/// ingress-nginx) limits request bodies. `request` is the body refused, when known.
pub(crate) fn body_limit(request: Option<u64>) -> String {
    let what = match request {
        Some(n) => format!("a request body of {}", size_text(n)),
        None => "the blob in one request".to_string(),
    };
    format!(
        "the registry, or a proxy or ingress in front of it, refused {what}; lift its body \
         limit where the registry is exposed (ingress-nginx: the annotation \
         `nginx.ingress.kubernetes.io/proxy-body-size: \"0\"`; nginx: `client_max_body_size 0;`; \
         Harbor's chart sets this on its own ingress)"
    )
}

/// Passes chunks through while hashing them; at the end, an error instead of the last
/// `None` when the bytes do not match `digest`.
fn verified(
    source: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    digest: String,
    moved: std::sync::Arc<std::sync::atomic::AtomicU64>,
    mismatch: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    use futures_util::StreamExt;
    let state = (Box::pin(source), Some(Sha256::new()));
    futures_util::stream::unfold(state, move |(mut source, hasher)| {
        let (digest, moved, mismatch) = (digest.clone(), moved.clone(), mismatch.clone());
        async move {
            let mut hasher = hasher?;
            match source.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    moved.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    Some((Ok(chunk), (source, Some(hasher))))
                }
                Some(Err(e)) => Some((Err(e), (source, None))),
                None => {
                    let got = format!(
                        "sha256:{}",
                        hasher
                            .finalize()
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                    );
                    if got == digest {
                        None
                    } else {
                        mismatch.store(true, std::sync::atomic::Ordering::Relaxed);
                        Some((
                            Err(std::io::Error::other(format!(
                                "blob does not match {digest}"
                            ))),
                            (source, None),
                        ))
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use futures_util::StreamExt;

    #[test]
    fn the_next_page_of_a_tag_list_is_read_from_its_link_header() {
        use super::next_page;
        assert_eq!(
            next_page(r#"</v2/r/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/r/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_page(
                r#"<https://h/v2/r/tags/list?last=b>; rel="prev", <https://h/v2/r/tags/list?last=d>; rel = "next""#
            )
            .as_deref(),
            Some("https://h/v2/r/tags/list?last=d")
        );
        assert_eq!(next_page(r#"</v2/r/tags/list?last=b>; rel="prev""#), None);
        assert_eq!(next_page(""), None);
    }

    async fn pass(chunks: &[&'static [u8]], digest: &str) -> (Vec<bool>, bool, u64) {
        let source = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(bytes::Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        );
        let (moved, mismatch) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let out: Vec<bool> =
            super::verified(source, digest.into(), moved.clone(), mismatch.clone())
                .map(|r| r.is_ok())
                .collect()
                .await;
        (
            out,
            mismatch.load(Ordering::Relaxed),
            moved.load(Ordering::Relaxed),
        )
    }

    #[tokio::test]
    async fn streamed_blobs_are_checked_against_their_digest() {
        let good = super::sha256(b"hello world");
        assert_eq!(
            pass(&[b"hello ", b"world"], &good).await,
            (vec![true, true], false, 11)
        );
        let (out, mismatch, _) = pass(&[b"hello ", b"w0rld"], &good).await;
        assert_eq!(
            out,
            vec![true, true, false],
            "the stream ends in an error, so the upload never completes"
        );
        assert!(mismatch);
    }
}
