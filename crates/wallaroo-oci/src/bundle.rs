//! Offline bundles: a release's images and chart in one tar file, for networks with no path
//! from the vendor registry to the private one.
//!
//! The archive is an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) plus
//! `wallaroo-bundle.json`, which lists the images with their origins and digests and every
//! blob with its size. It is written as blobs stream in (each checked against its digest on
//! the way) and read in place: [`Bundle`] indexes where each blob sits in the tar and serves
//! manifests and blobs from there, so loading never unpacks to disk. A *delta* bundle leaves
//! out the blobs a previous release already brought (`omitted`); loading one needs them in
//! the private registry already.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::copy::blob_digests;
use crate::registry::{BlobStream, ImageSource, Manifest, OciError, sha256};

/// The `wallaroo-bundle.json` format this version writes and reads.
pub const BUNDLE_FORMAT_VERSION: u32 = 1;
const BUNDLE_FILE: &str = "wallaroo-bundle.json";

/// `wallaroo-bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format_version: u32,
    /// The wallaroo version that wrote it.
    pub wallaroo_version: String,
    /// The release (`wallaroo { version }`) it carries.
    pub release: String,
    pub images: Vec<BundleImage>,
    /// Every blob in the archive (manifests included), with its size.
    pub blobs: BTreeMap<String, u64>,
    /// The manifests among the blobs, with their media types (not every manifest names its
    /// own: Helm's charts do not).
    pub manifests: BTreeMap<String, String>,
    /// Blobs the images need that a delta bundle leaves out: the previous release has them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub omitted: BTreeSet<String>,
}

/// One image of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleImage {
    /// The reference it was read from, e.g. `registry.wallaroo.ai/wallaroo/x:1`.
    pub source: String,
    pub origin: String,
    /// Its top manifest's digest.
    pub digest: String,
}

/// What `create` wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateReport {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub omitted: usize,
}

fn err(path: &Path, message: impl std::fmt::Display) -> OciError {
    OciError::Registry {
        registry: format!("bundle {}", path.display()),
        message: message.to_string(),
    }
}

/// One image to put in a bundle: read `source` at `digest` from `from`.
pub struct BundleInput {
    pub source: String,
    pub origin: String,
    pub digest: String,
    pub from: Arc<dyn ImageSource>,
}

/// Writes a bundle of `images` for release `release` to `out` (through `out.partial`, renamed
/// at the end; a failed or stopped run removes it). Blobs in `skip` are left
/// out and listed as omitted (a delta bundle).
pub async fn create(
    out: &Path,
    release: &str,
    images: &[BundleInput],
    skip: &BTreeSet<String>,
) -> Result<CreateReport, OciError> {
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let mut unfinished = Unfinished(Some(partial.clone()));
    let report = write_all(&partial, release, images, skip).await?;
    tokio::fs::rename(&partial, out)
        .await
        .map_err(|e| err(out, e))?;
    unfinished.0 = None;
    Ok(report)
}

/// The `.partial` archive of a `create` that has not finished: removed when `create` fails or
/// is stopped (its future dropped, as on Ctrl-C), so that no file that looks like a bundle,
/// nor the disk space claimed for one, is left behind.
struct Unfinished(Option<PathBuf>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// The manifests of `images`, top and platform ones, read from their sources.
async fn manifests_of(path: &Path, image: &BundleInput) -> Result<Vec<Manifest>, OciError> {
    let (_, repo, _) = wallaroo_model::split_reference(&image.source);
    let src = image.from.as_ref();
    let top = src.manifest(&repo, &image.digest).await?.ok_or_else(|| {
        err(
            path,
            format!("{}@{} does not exist", image.source, image.digest),
        )
    })?;
    let mut manifests = vec![top.clone()];
    if top.is_index() {
        for child in top.json()["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let d = child["digest"].as_str().unwrap_or_default();
            manifests.push(src.manifest(&repo, d).await?.ok_or_else(|| {
                err(
                    path,
                    format!("{}@{d}, listed in its index, does not exist", image.source),
                )
            })?);
        }
    }
    Ok(manifests)
}

/// How many blobs `create` reads from their sources at once. One TLS stream from a registry
/// reaches about 400-600 MB/s here; several fill the disk.
const CREATE_CONCURRENCY: usize = 4;
/// Bytes of a blob's stream passed on together to be hashed and written (one write call).
const WRITE_BUF: usize = 1 << 20;

/// One file of the archive, in the order it is laid out.
enum Entry {
    /// Written from memory: manifests, wrappers, `index.json`, `oci-layout`, the bundle file.
    Small { name: String, bytes: Vec<u8> },
    /// A layer or config, streamed from `images[image]`'s source.
    Blob {
        digest: String,
        size: u64,
        image: usize,
    },
}

impl Entry {
    fn name(&self) -> String {
        match self {
            Entry::Small { name, .. } => name.clone(),
            Entry::Blob { digest, .. } => blob_path(digest),
        }
    }

    fn size(&self) -> u64 {
        match self {
            Entry::Small { bytes, .. } => bytes.len() as u64,
            Entry::Blob { size, .. } => *size,
        }
    }
}

fn tar_header(name: &str, size: u64) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).expect("short ASCII names");
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    *h.as_bytes()
}

/// What goes into the archive, decided from the images' manifests before a layer is read.
struct Layout {
    /// Its files, in order; the bundle file (listing the rest) last.
    entries: Vec<Entry>,
    manifest: BundleManifest,
    /// The bytes of the layers and configs left out (a delta bundle's, brought before).
    omitted_bytes: u64,
}

/// How many images' manifests `create` reads at once.
const MANIFEST_READS: usize = 8;

async fn lay_out(
    path: &Path,
    release: &str,
    images: &[BundleInput],
    skip: &BTreeSet<String>,
) -> Result<Layout, OciError> {
    let mut manifest = BundleManifest {
        format_version: BUNDLE_FORMAT_VERSION,
        wallaroo_version: env!("CARGO_PKG_VERSION").to_string(),
        release: release.to_string(),
        images: Vec::new(),
        blobs: BTreeMap::new(),
        manifests: BTreeMap::new(),
        omitted: BTreeSet::new(),
    };
    // Each image's manifests (and the OCI wrapper of a docker one, below), several images at
    // once: at a release's 40 images and a far registry, one after another is seconds.
    let read: Vec<(Vec<Manifest>, Option<Vec<u8>>)> =
        futures_util::stream::iter(images.iter().map(|image| async move {
            let (_, repo, _) = wallaroo_model::split_reference(&image.source);
            let manifests = manifests_of(path, image).await?;
            let wrapper = oci_wrapper(image.from.as_ref(), &repo, &manifests[0]).await?;
            Ok::<_, OciError>((manifests, wrapper))
        }))
        .buffered(MANIFEST_READS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut omitted_bytes = 0;
    let mut entries = Vec::new();
    let mut index = Vec::new();
    for (i, (image, (manifests, wrapper))) in images.iter().zip(read).enumerate() {
        let top = manifests[0].clone();
        for m in &manifests {
            if !manifest.blobs.contains_key(&m.digest) {
                entries.push(Entry::Small {
                    name: blob_path(&m.digest),
                    bytes: m.bytes.clone(),
                });
                manifest
                    .blobs
                    .insert(m.digest.clone(), m.bytes.len() as u64);
                manifest
                    .manifests
                    .insert(m.digest.clone(), m.media_type.clone());
            }
            let sizes = crate::copy::blob_sizes(m);
            for digest in blob_digests(m) {
                if manifest.blobs.contains_key(&digest) || manifest.omitted.contains(&digest) {
                    continue;
                }
                let size = *sizes
                    .get(&digest)
                    .ok_or_else(|| err(path, format!("{}: {digest} has no size", image.source)))?;
                if skip.contains(&digest) {
                    manifest.omitted.insert(digest);
                    omitted_bytes += size;
                    continue;
                }
                manifest.blobs.insert(digest.clone(), size);
                entries.push(Entry::Blob {
                    digest,
                    size,
                    image: i,
                });
            }
        }
        // Tools built on containers/image (skopeo, podman, buildah) look an image up in
        // `index.json` only among OCI media types: an image kept with docker v2 media types
        // gets, first, an OCI index of its own that lists its platform manifests unchanged,
        // under the same name. Those tools find that one and copy the platform manifests byte
        // for byte; tools that read any media type (oras, wallaroo) take the last entry of a
        // name, the image itself.
        if let Some(wrapper) = wrapper {
            let digest = sha256(&wrapper);
            index.push(serde_json::json!({
                "mediaType": OCI_INDEX,
                "digest": digest,
                "size": wrapper.len(),
                "annotations": {
                    "org.opencontainers.image.ref.name": image.source,
                    "io.wallaroo.origin": image.origin,
                    "io.wallaroo.wraps": top.digest,
                },
            }));
            if !manifest.blobs.contains_key(&digest) {
                manifest.blobs.insert(digest.clone(), wrapper.len() as u64);
                entries.push(Entry::Small {
                    name: blob_path(&digest),
                    bytes: wrapper,
                });
            }
        }
        index.push(serde_json::json!({
            "mediaType": top.media_type,
            "digest": top.digest,
            "size": top.bytes.len(),
            "annotations": {
                "org.opencontainers.image.ref.name": image.source,
                "io.wallaroo.origin": image.origin,
            },
        }));
        manifest.images.push(BundleImage {
            source: image.source.clone(),
            origin: image.origin.clone(),
            digest: top.digest.clone(),
        });
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": index,
    });
    entries.push(Entry::Small {
        name: "index.json".into(),
        bytes: serde_json::to_vec_pretty(&index).expect("JSON"),
    });
    entries.push(Entry::Small {
        name: "oci-layout".into(),
        bytes: br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    });
    entries.push(Entry::Small {
        name: BUNDLE_FILE.into(),
        bytes: serde_json::to_vec_pretty(&manifest).expect("JSON"),
    });
    Ok(Layout {
        entries,
        manifest,
        omitted_bytes,
    })
}

/// Writes the archive: every entry's place is known from the manifests (a header of 512
/// bytes, the content, padding to 512), so the file gets its whole length at once (the
/// disk's space is claimed before a byte is read: a disk too small fails at the start, not
/// after hours) and [`CREATE_CONCURRENCY`] blobs stream into their places side by side, each
/// checked against its digest and length on the way and never written past its place.
async fn write_all(
    path: &Path,
    release: &str,
    images: &[BundleInput],
    skip: &BTreeSet<String>,
) -> Result<CreateReport, OciError> {
    let Layout {
        entries,
        manifest,
        omitted_bytes,
    } = lay_out(path, release, images, skip).await?;
    let progress = wallaroo_engine::progress::current();
    if let Some(p) = &progress {
        let streamed: u64 = entries
            .iter()
            .filter(|e| matches!(e, Entry::Blob { .. }))
            .map(Entry::size)
            .sum();
        p.add_total(streamed + omitted_bytes);
        p.add_present(omitted_bytes);
    }

    let mut offsets = Vec::with_capacity(entries.len());
    let mut end = 0u64;
    for e in &entries {
        offsets.push(end);
        end += 512 + e.size().div_ceil(512) * 512;
    }
    // Two zero blocks end a tar.
    let length = end + 1024;

    let file = std::fs::File::create(path).map_err(|e| err(path, e))?;
    claim_space(&file, length).map_err(|e| {
        err(
            path,
            format!(
                "cannot set aside {} for the bundle on its disk: {e}",
                crate::registry::size_text(length)
            ),
        )
    })?;
    let file = Arc::new(file);
    {
        use std::os::unix::fs::FileExt;
        let mut headers = Vec::new();
        for (e, at) in entries.iter().zip(&offsets) {
            headers.push((*at, tar_header(&e.name(), e.size()).to_vec()));
            if let Entry::Small { bytes, .. } = e {
                headers.push((at + 512, bytes.clone()));
            }
        }
        let file = file.clone();
        let written = tokio::task::spawn_blocking(move || {
            for (at, bytes) in headers {
                file.write_all_at(&bytes, at)?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .expect("the header writer does not panic");
        written.map_err(|e| err(path, e))?;
    }

    // Largest first, so the longest stream starts at once and the small ones fill in beside it.
    let mut blobs: Vec<(u64, &str, u64, &BundleInput)> = entries
        .iter()
        .zip(&offsets)
        .filter_map(|(e, at)| match e {
            Entry::Blob {
                digest,
                size,
                image,
            } => Some((at + 512, digest.as_str(), *size, &images[*image])),
            Entry::Small { .. } => None,
        })
        .collect();
    blobs.sort_by_key(|b| std::cmp::Reverse(b.2));
    let mut streams = futures_util::stream::iter(blobs.iter().map(|&(at, digest, size, image)| {
        stream_blob(path, at, digest, size, image, progress.clone())
    }))
    .buffer_unordered(CREATE_CONCURRENCY);
    let mut bytes = 0;
    while let Some(done) = streams.next().await {
        bytes += done?;
    }
    drop(streams);

    let synced = tokio::task::spawn_blocking(move || file.sync_all())
        .await
        .expect("fsync does not panic");
    synced.map_err(|e| err(path, e))?;
    Ok(CreateReport {
        images: manifest.images.len(),
        blobs: manifest.blobs.len(),
        bytes,
        omitted: manifest.omitted.len(),
    })
}

/// How many written bytes of a blob `create` lets the kernel hold before asking it to start
/// writing them to the disk.
const WRITE_BACK: u64 = 16 << 20;

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to the disk, without
/// waiting (Linux `sync_file_range`; elsewhere nothing). The archive streams in far faster
/// than the kernel's own write-back starts, so without this most of it would still be in
/// memory at the closing fsync, which would then wait for all of it.
fn start_write_back(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open file descriptor and plain integers; a failure only means the
        // closing fsync has more to do.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Gives `file` its `length`, with the disk space for it where the filesystem can set space
/// aside (Linux `fallocate`); elsewhere, or where the filesystem cannot, only its length.
fn claim_space(file: &std::fs::File, length: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open file descriptor and plain integers.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length as libc::off_t) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(e);
        }
    }
    file.set_len(length)
}

/// Streams blob `digest` of `image` into the archive at `path`, at `at`: the stream's chunks
/// are passed on in batches of about [`WRITE_BUF`] bytes (not copied) to a blocking task that
/// hashes them and writes each batch with one `writev` through a file handle of its own,
/// while the next batch arrives. More bytes than `size`, fewer, or other bytes than `digest`
/// fail the bundle; nothing is ever written past the blob's place. A connection lost part
/// way is taken up again where it stopped, up to the copy's number of attempts.
async fn stream_blob(
    path: &Path,
    at: u64,
    digest: &str,
    size: u64,
    image: &BundleInput,
    progress: Option<Arc<wallaroo_engine::StepProgress>>,
) -> Result<u64, OciError> {
    let (_, repo, _) = wallaroo_model::split_reference(&image.source);
    let mut body = image.from.blob(&repo, digest).await?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| err(path, e))?;
    let (batches, mut to_write) = tokio::sync::mpsc::channel::<Vec<bytes::Bytes>>(2);
    let writer = tokio::task::spawn_blocking(move || {
        use std::io::{Seek, Write};
        file.seek(SeekFrom::Start(at))?;
        let mut hasher = Sha256::new();
        let (mut offset, mut unflushed) = (at, 0);
        while let Some(batch) = to_write.blocking_recv() {
            let mut len = 0;
            for chunk in &batch {
                hasher.update(chunk);
                len += chunk.len();
            }
            let mut slices: Vec<std::io::IoSlice> =
                batch.iter().map(|c| std::io::IoSlice::new(c)).collect();
            let mut rest = &mut slices[..];
            while !rest.is_empty() {
                match file.write_vectored(rest) {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => std::io::IoSlice::advance_slices(&mut rest, n),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            offset += len as u64;
            unflushed += len as u64;
            if unflushed >= WRITE_BACK {
                start_write_back(&file, offset - unflushed, unflushed);
                unflushed = 0;
            }
            if let Some(p) = &progress {
                p.add_moved(len as u64);
            }
        }
        Ok::<_, std::io::Error>(format!("sha256:{}", hex(&hasher.finalize())))
    });
    let mut batch = Vec::new();
    let mut batched = 0;
    let mut received = 0u64;
    let mut read_error = None;
    let mut attempt = 1;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            // A connection lost part way: the blob goes on from the byte where it stopped
            // (a Range request), its hash state kept.
            Err(_) if attempt < crate::copy::BLOB_ATTEMPTS => {
                tokio::time::sleep(crate::registry::backoff(attempt, None)).await;
                attempt += 1;
                match image.from.blob_from(&repo, digest, received).await {
                    Ok(rest) => {
                        body = rest;
                        continue;
                    }
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
            Err(e) => {
                read_error = Some(err(path, format!("{}: {e}", image.source)));
                break;
            }
        };
        received += chunk.len() as u64;
        if received > size {
            break;
        }
        batched += chunk.len();
        batch.push(chunk);
        // A batch is also cut at 512 chunks: `writev` takes at most 1,024.
        if batched >= WRITE_BUF || batch.len() >= 512 {
            batched = 0;
            if batches.send(std::mem::take(&mut batch)).await.is_err() {
                break;
            }
        }
    }
    if !batch.is_empty() && received <= size && read_error.is_none() {
        let _ = batches.send(batch).await;
    }
    drop(batches);
    let hashed = writer.await.expect("the blob writer does not panic");
    if let Some(e) = read_error {
        return Err(e);
    }
    let got = hashed.map_err(|e| err(path, e))?;
    if received != size || got != digest {
        return Err(OciError::Digest {
            registry: image.source.clone(),
            repo: format!("(bundle {})", path.display()),
            digest: digest.to_string(),
        });
    }
    Ok(size)
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// For an image whose top manifest has a docker v2 media type, an OCI index listing its
/// platform manifests as they are: a docker manifest list's entries, or the one docker
/// manifest with the platform its config names. None for OCI images (and anything else).
async fn oci_wrapper(
    src: &dyn ImageSource,
    repo: &str,
    top: &Manifest,
) -> Result<Option<Vec<u8>>, OciError> {
    let entries = match top.media_type.as_str() {
        DOCKER_LIST => top.json()["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        DOCKER_MANIFEST => {
            let config = top.json()["config"]["digest"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let config = crate::registry::read_blob(src, repo, &config, 4 << 20).await?;
            let config: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
            let mut platform = serde_json::json!({
                "architecture": config["architecture"].as_str().unwrap_or("amd64"),
                "os": config["os"].as_str().unwrap_or("linux"),
            });
            if let Some(variant) = config["variant"].as_str() {
                platform["variant"] = variant.into();
            }
            vec![serde_json::json!({
                "mediaType": DOCKER_MANIFEST,
                "digest": top.digest,
                "size": top.bytes.len(),
                "platform": platform,
            })]
        }
        _ => return Ok(None),
    };
    Ok(Some(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        }))
        .expect("JSON"),
    ))
}

/// A bundle opened for reading: where each blob sits in the tar.
pub struct Bundle {
    path: PathBuf,
    pub manifest: BundleManifest,
    /// Blob digest -> (offset of its content, size).
    entries: HashMap<String, (u64, u64)>,
    /// Manifest media types by digest.
    media_types: HashMap<String, String>,
    /// (repository, tag) of each image's source reference -> top manifest digest.
    tags: HashMap<(String, String), String>,
}

impl Bundle {
    /// Indexes the archive at `path` (reading headers only; contents are skipped by seeking).
    pub fn open(path: &Path) -> Result<Bundle, OciError> {
        let file = std::fs::File::open(path).map_err(|e| err(path, e))?;
        let length = file.metadata().map_err(|e| err(path, e))?.len();
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        let mut manifest = None;
        for entry in archive.entries_with_seek().map_err(|e| err(path, e))? {
            let mut entry = entry.map_err(|e| err(path, e))?;
            let name = entry
                .path()
                .map_err(|e| err(path, e))?
                .display()
                .to_string();
            // A copy that stopped part way ends inside an entry (and has lost the bundle
            // file, which comes last): say so, not that it is no bundle.
            let end = entry.raw_file_position() + entry.size();
            if end > length {
                return Err(err(
                    path,
                    format!(
                        "the archive is cut short: it ends at byte {length}, inside {name} (which \
                         ends at byte {end}); copy it again from its source"
                    ),
                ));
            }
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                entries.insert(
                    format!("sha256:{hex}"),
                    (entry.raw_file_position(), entry.size()),
                );
            } else if name == BUNDLE_FILE {
                let mut text = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut text).map_err(|e| err(path, e))?;
                let m: BundleManifest = serde_json::from_slice(&text)
                    .map_err(|e| err(path, format!("{BUNDLE_FILE}: {e}")))?;
                if m.format_version != BUNDLE_FORMAT_VERSION {
                    return Err(err(
                        path,
                        format!(
                            "bundle format {} (this wallaroo reads {BUNDLE_FORMAT_VERSION})",
                            m.format_version
                        ),
                    ));
                }
                manifest = Some(m);
            }
        }
        let manifest = manifest.ok_or_else(|| {
            err(
                path,
                format!("no {BUNDLE_FILE}: not a bundle written by `wallaroo bundle create`"),
            )
        })?;
        let tags = manifest
            .images
            .iter()
            .map(|i| {
                let (_, repo, tag) = wallaroo_model::split_reference(&i.source);
                ((repo, tag), i.digest.clone())
            })
            .collect();
        let media_types = manifest
            .manifests
            .iter()
            .map(|(d, t)| (d.clone(), t.clone()))
            .collect();
        Ok(Bundle {
            path: path.to_path_buf(),
            manifest,
            entries,
            media_types,
            tags,
        })
    }

    fn read_small(&self, file: &mut std::fs::File, digest: &str) -> Result<Vec<u8>, OciError> {
        use std::io::{Read, Seek};
        let (offset, size) = self.entries[digest];
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| err(&self.path, e))?;
        let mut bytes = vec![0u8; size as usize];
        file.read_exact(&mut bytes)
            .map_err(|e| err(&self.path, e))?;
        Ok(bytes)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the archive holds blob `digest`.
    pub fn has(&self, digest: &str) -> bool {
        self.entries.contains_key(digest)
    }
}

#[async_trait::async_trait]
impl ImageSource for Bundle {
    fn name(&self) -> String {
        format!("bundle {}", self.path.display())
    }

    async fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Manifest>, OciError> {
        let digest = if reference.starts_with("sha256:") {
            reference.to_string()
        } else {
            match self.tags.get(&(repo.to_string(), reference.to_string())) {
                Some(d) => d.clone(),
                None => return Ok(None),
            }
        };
        let Some(media_type) = self.media_types.get(&digest) else {
            return Ok(None);
        };
        let mut file = std::fs::File::open(&self.path).map_err(|e| err(&self.path, e))?;
        let bytes = self.read_small(&mut file, &digest)?;
        if sha256(&bytes) != digest {
            return Err(OciError::Digest {
                registry: self.name(),
                repo: repo.into(),
                digest,
            });
        }
        Ok(Some(Manifest {
            media_type: media_type.clone(),
            digest,
            bytes,
        }))
    }

    async fn blob_from(
        &self,
        repo: &str,
        digest: &str,
        offset: u64,
    ) -> Result<BlobStream, OciError> {
        let Some(&(start, size)) = self.entries.get(digest) else {
            return self.blob(repo, digest).await;
        };
        let mut file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| err(&self.path, e))?;
        file.seek(SeekFrom::Start(start + offset.min(size)))
            .await
            .map_err(|e| err(&self.path, e))?;
        Ok(read_stream(file.take(size - offset.min(size))))
    }

    async fn blob(&self, _repo: &str, digest: &str) -> Result<BlobStream, OciError> {
        let Some(&(offset, size)) = self.entries.get(digest) else {
            let why = if self.manifest.omitted.contains(digest) {
                "left out of this delta bundle (the previous release brought it): apply that release's bundle first"
            } else {
                "not in the bundle"
            };
            return Err(err(&self.path, format!("blob {digest} is {why}")));
        };
        let mut file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| err(&self.path, e))?;
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| err(&self.path, e))?;
        Ok(read_stream(file.take(size)))
    }
}

/// Reads `size` bytes of `file` from `at` through `buf` and hashes them: how many there were
/// (fewer where the file ends early) and their `sha256:` digest.
fn hash_region(
    file: &std::fs::File,
    at: u64,
    size: u64,
    buf: &mut [u8],
    progress: Option<&wallaroo_engine::StepProgress>,
) -> std::io::Result<(u64, String)> {
    use std::os::unix::fs::FileExt;
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    while done < size {
        let want = (size - done).min(buf.len() as u64) as usize;
        let n = file.read_at(&mut buf[..want], at + done)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        if let Some(p) = progress {
            p.add_moved(n as u64);
        }
    }
    Ok((done, format!("sha256:{}", hex(&hasher.finalize()))))
}

/// Tells the kernel that `file` will be read front to back (a larger read-ahead).
fn read_sequentially(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open file descriptor and plain integers; only advice.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// A file region as a stream of 256 KiB chunks.
fn read_stream(reader: tokio::io::Take<tokio::fs::File>) -> BlobStream {
    Box::pin(futures_util::stream::unfold(reader, |mut r| async move {
        let mut buf = vec![0u8; 256 << 10];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), r))
            }
            Err(e) => Some((Err(e), r)),
        }
    }))
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub omitted: usize,
    /// Every problem found; empty when the bundle is whole.
    pub problems: Vec<String>,
}

/// Reads the whole archive once, hashing every blob, and checks that every blob the images
/// need is in it (or, in a delta bundle, listed as omitted).
pub fn verify(path: &Path) -> Result<VerifyReport, OciError> {
    verify_counted(path, None)
}

/// At most this many threads read and hash a bundle's blobs in `verify` (one per core, at
/// least two so that one reads while another hashes).
const VERIFY_THREADS: usize = 4;

/// [`verify`], counting the bytes read and checked in `progress` (its total is the bytes the
/// bundle lists).
pub fn verify_counted(
    path: &Path,
    progress: Option<&wallaroo_engine::StepProgress>,
) -> Result<VerifyReport, OciError> {
    let bundle = Bundle::open(path)?;
    if let Some(p) = progress {
        p.add_total(bundle.manifest.blobs.values().sum());
    }
    let mut report = VerifyReport {
        images: bundle.manifest.images.len(),
        omitted: bundle.manifest.omitted.len(),
        ..VerifyReport::default()
    };
    // Every blob in the archive is read where it sits and hashed, several at once (one
    // SHA-256 stream is slower than a disk): largest first, so that the longest starts at
    // once and the rest share the other threads.
    let mut blobs: Vec<(&str, u64, u64)> = bundle
        .entries
        .iter()
        .map(|(digest, &(at, size))| (digest.as_str(), at, size))
        .collect();
    blobs.sort_by_key(|&(digest, _, size)| (std::cmp::Reverse(size), digest));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, VERIFY_THREADS);
    let checked: Vec<Result<(u64, Vec<String>), std::io::Error>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let file = std::fs::File::open(path)?;
                    read_sequentially(&file);
                    let mut buf = vec![0u8; 1 << 20];
                    let (mut bytes, mut problems) = (0u64, Vec::new());
                    while let Some(&(digest, at, size)) =
                        blobs.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let (read, got) = hash_region(&file, at, size, &mut buf, progress)?;
                        bytes += read;
                        if read < size {
                            problems.push(format!(
                                "blob {digest} is cut short: the archive ends after {read} of its {size} bytes"
                            ));
                        } else if got != digest {
                            problems.push(format!("blob {digest} does not match its digest"));
                        }
                    }
                    Ok((bytes, problems))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a verify thread does not panic"))
            .collect()
    });
    let mut problems = Vec::new();
    for result in checked {
        let (bytes, found) = result.map_err(|e| err(path, e))?;
        report.bytes += bytes;
        problems.extend(found);
    }
    problems.sort();
    report.blobs = blobs.len();
    report.problems.extend(problems);
    let mut file = std::fs::File::open(path).map_err(|e| err(path, e))?;
    for (digest, size) in &bundle.manifest.blobs {
        match bundle.entries.get(digest) {
            None => report
                .problems
                .push(format!("blob {digest} is listed but missing")),
            Some((_, s)) if s != size => report
                .problems
                .push(format!("blob {digest} has {s} bytes, {size} listed")),
            _ => {}
        }
    }
    for image in &bundle.manifest.images {
        let mut todo = vec![image.digest.clone()];
        while let Some(d) = todo.pop() {
            if !bundle.has(&d) {
                report
                    .problems
                    .push(format!("{}: manifest {d} is missing", image.source));
                continue;
            }
            let bytes = bundle.read_small(&mut file, &d)?;
            let m = Manifest {
                media_type: bundle.media_types.get(&d).cloned().unwrap_or_default(),
                digest: d.clone(),
                bytes,
            };
            if m.is_index() {
                for child in m.json()["manifests"].as_array().into_iter().flatten() {
                    if let Some(c) = child["digest"].as_str() {
                        todo.push(c.to_string());
                    }
                }
            }
            for b in blob_digests(&m) {
                if !bundle.has(&b) && !bundle.manifest.omitted.contains(&b) {
                    report
                        .problems
                        .push(format!("{}: blob {b} is missing", image.source));
                }
            }
        }
    }
    Ok(report)
}

/// The blobs (manifests, configs, layers) of the images `pins` name (source reference ->
/// top manifest digest), read from `sources` by host: what a previous release brought, for
/// a delta bundle.
pub async fn blobs_of(
    sources: &BTreeMap<String, Arc<dyn ImageSource>>,
    pins: &BTreeMap<String, String>,
) -> Result<BTreeSet<String>, OciError> {
    let mut out = BTreeSet::new();
    for (source, digest) in pins {
        let (host, repo, _) = wallaroo_model::split_reference(source);
        let Some(src) = sources.get(&host) else {
            continue;
        };
        let mut todo = vec![digest.clone()];
        while let Some(d) = todo.pop() {
            let Some(m) = src.manifest(&repo, &d).await? else {
                continue;
            };
            out.insert(d);
            if m.is_index() {
                for child in m.json()["manifests"].as_array().into_iter().flatten() {
                    if let Some(c) = child["digest"].as_str() {
                        todo.push(c.to_string());
                    }
                }
            }
            out.extend(blob_digests(&m));
        }
    }
    Ok(out)
}
